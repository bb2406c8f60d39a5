/* qemu_accel: see qemu_accel.h. */
#include "qemu_accel.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "util.h"
#include "vmm.h"

#define KVM_PROBE_TIMEOUT_MS 20000

static void read_boot_id(char out[64])
{
        _cleanup_free_ char *b = NULL;
        out[0] = '\0';
        if (read_file_limited("/proc/sys/kernel/random/boot_id", 64, &b, NULL, NULL) == 0)
                snprintf(out, 64, "%.*s", (int)strcspn(b, "\n"), b);
}

/* "cpu MHz" x 1000: what platform.md measured to be right for
 * tsc_early_khz on these hosts. */
static unsigned long host_tsc_khz(void)
{
        FILE *f = fopen("/proc/cpuinfo", "re");
        if (!f)
                return 0;
        char line[256];
        double mhz = 0;
        while (fgets(line, sizeof line, f))
                if (str_has_prefix(line, "cpu MHz") && strchr(line, ':')) {
                        mhz = strtod(strchr(line, ':') + 1, NULL);
                        break;
                }
        fclose(f);
        return mhz > 0 ? (unsigned long)(mhz * 1000.0 + 0.5) : 0;
}

static void set(struct qemu_accel *a, enum qemu_accel_kind k, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set(struct qemu_accel *a, enum qemu_accel_kind k, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(a->why, sizeof a->why, fmt, ap);
        va_end(ap);
        a->kind = k;
}

void qemu_accel_init(struct qemu_accel *a, const char *qemu_bin, const char *cache_path)
{
        memset(a, 0, sizeof *a);
        pthread_mutex_init(&a->mu, NULL);
        a->bin = xstrdup(qemu_bin);
        a->cache = xstrdup(cache_path);
        a->tsc_khz = host_tsc_khz();
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                set(a, QEMU_ACCEL_TCG, "/dev/kvm: %s", strerror(errno));
                return;
        }
        close(fd);
        set(a, QEMU_ACCEL_UNDECIDED, "/dev/kvm opens; no guest probed on it since boot");
        char boot[64];
        read_boot_id(boot);
        _cleanup_free_ char *buf = NULL;
        if (!boot[0] || read_file_limited(a->cache, 4096, &buf, NULL, NULL) < 0)
                return;
        json_t *j = json_loads(buf, 0, NULL);
        const char *b = json_string_value(json_object_get(j, "boot_id"));
        const char *why = json_string_value(json_object_get(j, "why"));
        if (b && strcmp(b, boot) == 0 && why)
                set(a, json_is_true(json_object_get(j, "kvm")) ? QEMU_ACCEL_KVM : QEMU_ACCEL_TCG, "%s (cached)",
                    why);
        json_decref(j);
}

void qemu_accel_release(struct qemu_accel *a)
{
        free(a->bin);
        free(a->cache);
        pthread_mutex_destroy(&a->mu);
}

/* Boot the probe guest under KVM.  mu held. */
static void probe(struct qemu_accel *a, const char *vmlinuz, const char *initrd)
{
        const char *argv[] = { a->bin, "-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "kvm", "-cpu", "host",
                               "-m", "128", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
                               "-no-reboot", "-kernel", vmlinuz, "-initrd", initrd, "-append",
                               "console=ttyS0 banger.probe=1 panic=-1", "-serial", "stdio", NULL };
        _cleanup_free_ char *out = NULL;
        struct bg_err *e = NULL;
        int64_t t0 = now_mono_ms();
        int r = vmm_run_tool(argv, KVM_PROBE_TIMEOUT_MS, &out, NULL, &e);
        if (out && strstr(out, "banger-probe-ok"))
                set(a, QEMU_ACCEL_KVM, "kvm probe guest booted in %lld ms", (long long)(now_mono_ms() - t0));
        else if (r == -ETIMEDOUT)
                set(a, QEMU_ACCEL_TCG, "kvm probe guest did not boot within %d s", KVM_PROBE_TIMEOUT_MS / 1000);
        else
                set(a, QEMU_ACCEL_TCG, "kvm probe guest failed: %s", r < 0 ? bg_err_msg(e) : "no banger-probe-ok");
        bg_err_free(e);
        char boot[64];
        read_boot_id(boot);
        json_t *j = json_pack("{s:s, s:b, s:s}", "boot_id", boot, "kvm", a->kind == QEMU_ACCEL_KVM, "why", a->why);
        char *s = json_dumps(j, JSON_COMPACT);
        if (s && write_file_atomic(a->cache, s, strlen(s), 0644, NULL) < 0)
                log_warn("qemu: cannot cache the kvm probe path=%s", a->cache);
        free(s);
        json_decref(j);
        log_info("qemu acceleration decided accel=%s why=\"%s\"", qemu_accel_name(a->kind), a->why);
}

enum qemu_accel_kind qemu_accel_decide(struct qemu_accel *a, const char *vmlinuz, const char *initrd)
{
        pthread_mutex_lock(&a->mu);
        if (a->kind == QEMU_ACCEL_UNDECIDED)
                probe(a, vmlinuz, initrd);
        enum qemu_accel_kind k = a->kind;
        pthread_mutex_unlock(&a->mu);
        return k;
}

enum qemu_accel_kind qemu_accel_get(struct qemu_accel *a, char *why, size_t len)
{
        pthread_mutex_lock(&a->mu);
        enum qemu_accel_kind k = a->kind;
        if (why && len)
                snprintf(why, len, "%s", a->why);
        pthread_mutex_unlock(&a->mu);
        return k;
}

const char *qemu_accel_name(enum qemu_accel_kind k)
{
        return k == QEMU_ACCEL_KVM ? "kvm" : k == QEMU_ACCEL_TCG ? "tcg" : "undecided";
}

char *qemu_accel_cmdline(const struct qemu_accel *a, enum qemu_accel_kind k)
{
        if (k != QEMU_ACCEL_TCG)
                return xstrdup("");
        /* Under TCG microvm's TSC calibration against the PIT hangs without
         * these; tsc_early_khz must be the host's real rate. */
        if (a->tsc_khz)
                return xasprintf(" clocksource=jiffies tsc=unstable tsc_early_khz=%lu", a->tsc_khz);
        return xstrdup(" clocksource=jiffies tsc=unstable");
}
