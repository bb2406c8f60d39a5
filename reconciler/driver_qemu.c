/* driver_qemu: sandboxes as QEMU microvm guests.
 *
 * Every object is named after the record id (the ownership mark):
 *   STATE/vms/<id>/root.disk    root disk: qcow2 overlay or raw (disk.h);
 *                 /root.disk.base  the overlay's backing file (hard link)
 *                 /work.ext4    work disk, mounted at /root in the guest
 *                 /disks.json   {root, format, method, work}: written last,
 *                               the mark of a finished prepare.  The root
 *                               disk's format comes from here, never from
 *                               the file's content (a guest can write a
 *                               qcow2 header into a raw disk).
 *   RUN/vms/<id>/qmp.sock       QMP (QEMU's cwd is this folder, so the
 *                               socket path stays short)
 *                /agent.sock    the guest agent's virtio-serial port (bangerd
 *                               connects; docs/agent-protocol.md)
 *                /console.log   the serial console, appended across starts
 *                /qemu.log      QEMU's own stdout and stderr
 * The console's absolute path is on QEMU's command line: that is how /proc
 * finds our VMMs, and how an adopted pid is checked.
 *
 * Acceleration: KVM only when /dev/kvm opens and a probe guest really boots
 * under it (some hosts have a /dev/kvm whose 64-bit guests hang; see
 * shared/notes/platform.md), else TCG with the clock flags microvm needs
 * there.  The verdict is cached per host boot in RUN/kvm-probe.json.
 *
 * Processes are supervised by vmm.c: spawned in two steps with the handles
 * persisted in between, tracked by pidfd in an epoll set that is the
 * driver's event fd, adopted from the handles after a daemon restart.
 */
#include "driver_qemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "disk.h"
#include "driver.h"
#include "err.h"
#include "ipam.h"
#include "log.h"
#include "ownmark.h"
#include "qemu_accel.h"
#include "qemu_qmp.h"
#include "spec.h"
#include "strmap.h"
#include "util.h"
#include "vmm.h"
#include "workdisk.h"

#define DEFAULT_DISK_SIZE (8ULL << 30)
#define READY_TIMEOUT_MS 15000     /* QEMU answers QMP ~0.1-0.3 s after exec under TCG */
#define QUIT_WAIT_MS 3000
#define KILL_WAIT_MS 5000
#define QMP_TIMEOUT_MS 3000

struct qemu {
        struct driver base;
        char *bin;              /* resolved qemu-system-x86_64 */
        char *state_dir;        /* the catalog lives here */
        char *disk_root;        /* STATE/vms */
        char *run_root;         /* RUN/vms */
        char *probe_cache;      /* RUN/kvm-probe.json */
        char *user_key;         /* driver_env.user_key, or NULL */
        const struct bg_config *cfg;
        const struct workdisk_owner *owner;   /* whose files workspace/file_sync read */
        struct vmm *vmm;
        pthread_mutex_t mu;
        struct qemu_accel accel;
};

static const struct driver_ops qemu_ops;

static struct qemu *Q(struct driver *d) { return (struct qemu *)d; }

static char *disk_dir(struct qemu *q, const char *id) { return xasprintf("%s/%s", q->disk_root, id); }
static char *run_dir(struct qemu *q, const char *id) { return xasprintf("%s/%s", q->run_root, id); }
static char *run_file(struct qemu *q, const char *id, const char *name)
{
        return xasprintf("%s/%s/%s", q->run_root, id, name);
}

/* A path as a QEMU option value: commas doubled. */
static char *qopt(const char *path)
{
        size_t n = strlen(path), extra = 0;
        for (size_t i = 0; i < n; i++)
                extra += path[i] == ',';
        char *out = xmalloc(n + extra + 1), *o = out;
        for (size_t i = 0; i < n; i++) {
                *o++ = path[i];
                if (path[i] == ',')
                        *o++ = ',';
        }
        *o = '\0';
        return out;
}

/* What every VMM of ours has on its command line: RUN/vms/ as QEMU sees it. */
static char *owned_prefix(struct qemu *q)
{
        _cleanup_free_ char *r = qopt(q->run_root);
        return xasprintf("%s/", r);
}

/* What identifies id's VMM on a command line. */
static char *needle_of(struct qemu *q, const char *id)
{
        _cleanup_free_ char *p = owned_prefix(q);
        return xasprintf("%s%s/", p, id);
}

/* The last lines (at most ~1 KiB) of path from offset from on, for errors. */
static char *log_tail(const char *path, off_t from)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return xstrdup("");
        struct stat st;
        if (fstat(fd, &st) < 0)
                return xstrdup("");
        off_t start = st.st_size - 1024 > from ? st.st_size - 1024 : from;
        char buf[1025];
        ssize_t n = pread(fd, buf, 1024, start);
        if (n <= 0)
                return xstrdup("");
        buf[n] = '\0';
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
                buf[--n] = '\0';
        char *s = buf;
        if (start > from && strchr(s, '\n'))
                s = strchr(s, '\n') + 1;   /* drop a partial first line */
        for (char *p = s; *p; p++)
                if (*p == '\n')
                        *p = '|';    /* one line in a status message */
        return xstrdup(s);
}

static off_t file_size_or_zero(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 ? st.st_size : 0;
}

int qemu_accel_info(struct driver *d, const char **accel, const char **why)
{
        if (!d || d->ops != &qemu_ops)
                return -EINVAL;
        struct qemu *q = Q(d);
        *accel = qemu_accel_name(qemu_accel_get(&q->accel, NULL, 0));
        *why = q->accel.why;   /* changes once, from undecided to decided */
        return 0;
}

static const char *qemu_hypervisor(struct driver *d)
{
        enum qemu_accel_kind k = qemu_accel_get(&Q(d)->accel, NULL, 0);
        return k == QEMU_ACCEL_KVM ? "qemu/kvm" : k == QEMU_ACCEL_TCG ? "qemu/tcg" : "qemu";
}

/* What `banger doctor` shows for this driver. */
static json_t *qemu_doctor(struct driver *d)
{
        struct qemu *q = Q(d);
        const char *accel = NULL, *why = NULL;
        qemu_accel_info(d, &accel, &why);
        enum disk_method m = disk_probe_method(q->disk_root, true);
        return json_pack("{s:s, s:s, s:s?, s:s}", "binary", q->bin, "accel", accel, "why", why, "disk_method",
                         disk_method_name(m));
}

/* ---- prepare ---- */

struct disks {
        char *root;
        char *format;   /* "qcow2" | "raw" */
        char *work;
};

static void disks_release(struct disks *d)
{
        free(d->root);
        free(d->format);
        free(d->work);
        memset(d, 0, sizeof *d);
}

/* The finished prepare's disks.json, its files present.  -ENOENT when not. */
static int disks_read(struct qemu *q, const char *id, struct disks *out)
{
        memset(out, 0, sizeof *out);
        _cleanup_free_ char *path = xasprintf("%s/%s/disks.json", q->disk_root, id);
        _cleanup_free_ char *buf = NULL;
        if (read_file_limited(path, 16384, &buf, NULL, NULL) < 0)
                return -ENOENT;
        json_t *j = json_loads(buf, 0, NULL);
        const char *root = json_string_value(json_object_get(j, "root"));
        const char *fmt = json_string_value(json_object_get(j, "format"));
        const char *work = json_string_value(json_object_get(j, "work"));
        int r = -ENOENT;
        if (root && work && fmt && (strcmp(fmt, "qcow2") == 0 || strcmp(fmt, "raw") == 0) &&
            access(root, R_OK) == 0 && access(work, R_OK) == 0) {
                out->root = xstrdup(root);
                out->format = xstrdup(fmt);
                out->work = xstrdup(work);
                r = 0;
        }
        json_decref(j);
        return r;
}

static const char *image_of(struct qemu *q, const struct bg_spec *s)
{
        if (s->image)
                return s->image;
        return q->cfg && q->cfg->default_image ? q->cfg->default_image : "debian-bookworm";
}

/* Build the disks and disks.json.  The kernel and the image are checked
 * first, so a missing one leaves nothing behind; each disk is whole or
 * absent (disk.h), and disks.json comes last. */
static int make_disks(struct qemu *q, struct driver_vm *vm, struct bg_err **err)
{
        struct kernel_paths k;
        if (catalog_kernel(q->state_dir, vm->spec->kernel, &k, err) < 0)
                return -ENOENT;
        kernel_paths_release(&k);
        _cleanup_free_ char *image = NULL;
        if (catalog_image(q->state_dir, image_of(q, vm->spec), &image, err) < 0)
                return -ENOENT;
        _cleanup_free_ char *dir = disk_dir(q, vm->id);
        if (mkdir_p(dir, 0700, err) < 0)
                return -EIO;
        _cleanup_free_ char *root = xasprintf("%s/root.disk", dir);
        _cleanup_free_ char *work = xasprintf("%s/work.ext4", dir);
        _cleanup_free_ char *meta = xasprintf("%s/disks.json", dir);
        uint64_t size = vm->spec->disk_size ? vm->spec->disk_size : DEFAULT_DISK_SIZE;
        struct workdisk_in wi = {
                .user_key = q->user_key,
                .host_key_file = host_key_of(vm),
                .spec = vm->spec,
                .config_sync = q->cfg ? q->cfg->file_sync : NULL,
                .n_config_sync = q->cfg ? q->cfg->n_file_sync : 0,
                .owner = q->owner,
        };
        enum disk_method used;
        int64_t t0 = now_mono_ms();
        /* The work disk first: it holds the user's files, so it is the one
         * most likely to be refused (a file_sync escaping home, a workspace
         * too big), and then nothing at all was made.  Each disk is whole
         * or absent, so a failed root disk leaves only the work disk. */
        if (workdisk_create(work, &wi, err) < 0)
                return -EIO;
        if (disk_root_create(image, root, size, true, &used, err) < 0) {
                unlink(work);
                return -EIO;
        }
        json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "root", root, "format", used == DISK_QCOW2 ? "qcow2" : "raw",
                              "method", disk_method_name(used), "work", work);
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        int r = write_file_atomic(meta, s, strlen(s), 0600, err);
        free(s);
        if (r == 0)
                log_info("qemu disks ready name=%s method=%s ms=%lld", vm->name, disk_method_name(used),
                         (long long)(now_mono_ms() - t0));
        return r;
}

static int qemu_prepare(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct qemu *q = Q(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "qemu: bad id '%s'", vm->id ? vm->id : "");
        if (!vm->spec)
                return bg_error(err, EINVAL, "qemu prepare %s: no spec", vm->name);
        struct disks dk;
        if (disks_read(q, vm->id, &dk) < 0) {   /* else prepared already */
                if (make_disks(q, vm, err) < 0)
                        return bg_error_wrap(err, "prepare %s", vm->name);
                if (disks_read(q, vm->id, &dk) < 0)
                        return bg_error(err, EIO, "prepare %s: disks vanished", vm->name);
        }
        json_object_set_new(vm->handles, "root_disk", json_string(dk.root));
        json_object_set_new(vm->handles, "root_format", json_string(dk.format));
        json_object_set_new(vm->handles, "work_disk", json_string(dk.work));
        disks_release(&dk);
        return 0;
}

/* ---- tracking ---- */

/* id's state, adopting the VMM named in the handles when the table does not
 * know it.  Handles with a pid whose process is gone or is another one
 * mean the VMM ended unseen: an exit with unknown status. */
static enum vmm_state track(struct qemu *q, struct driver_vm *vm, int *status)
{
        enum vmm_state st = vmm_state(q->vmm, vm->id, status);
        if (st != VMM_NONE || !vm->handles)
                return st;
        json_t *jp = json_object_get(vm->handles, "pid"), *js = json_object_get(vm->handles, "start_time");
        if (!json_is_integer(jp) || !json_is_integer(js))
                return VMM_NONE;
        _cleanup_free_ char *needle = needle_of(q, vm->id);
        struct bg_err *e = NULL;
        if (vmm_adopt(q->vmm, vm->id, (pid_t)json_integer_value(jp), (uint64_t)json_integer_value(js), needle,
                      &e) == 0) {
                log_info("qemu vm adopted name=%s pid=%lld", vm->name, (long long)json_integer_value(jp));
        } else {
                log_info("qemu vm gone while unwatched name=%s: %s", vm->name, bg_err_msg(e));
                vmm_mark_exited(q->vmm, vm->id);
        }
        bg_err_free(e);
        return vmm_state(q->vmm, vm->id, status);
}

static void drop_process_handles(struct driver_vm *vm)
{
        if (!vm->handles)
                return;
        json_object_del(vm->handles, "pid");
        json_object_del(vm->handles, "start_time");
}

/* SIGKILL id's VMM and wait for it to end. */
static int kill_now(struct qemu *q, struct driver_vm *vm, struct bg_err **err)
{
        if (vmm_signal(q->vmm, vm->id, SIGKILL, NULL) == 0 && vmm_wait(q->vmm, vm->id, KILL_WAIT_MS) < 0)
                return bg_error(err, ETIMEDOUT, "vmm of %s (pid %d) still running after SIGKILL", vm->name,
                                (int)vmm_pid(q->vmm, vm->id));
        return 0;
}

/* ---- start ---- */

struct argv_b {
        char **v;
        size_t n;
};

static void arg(struct argv_b *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(struct argv_b *a, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        a->v = xreallocarray(a->v, a->n + 2, sizeof *a->v);
        a->v[a->n++] = xvasprintf(fmt, ap);
        a->v[a->n] = NULL;
        va_end(ap);
}

static void argv_free(struct argv_b *a)
{
        for (size_t i = 0; i < a->n; i++)
                free(a->v[i]);
        free(a->v);
}

static void build_argv(struct qemu *q, struct driver_vm *vm, enum qemu_accel_kind acc, const struct kernel_paths *k,
                       const struct disks *dk, struct argv_b *a)
{
        const struct bg_spec *s = vm->spec;
        _cleanup_free_ char *console = run_file(q, vm->id, "console.log");
        _cleanup_free_ char *con = qopt(console), *root = qopt(dk->root), *work = qopt(dk->work);
        _cleanup_free_ char *clock = qemu_accel_cmdline(&q->accel, acc);
        arg(a, "%s", q->bin);
        arg(a, "-name");
        arg(a, "banger-%s", vm->id);
        arg(a, "-M");
        arg(a, "microvm,pit=on,pic=on,rtc=on");
        arg(a, "-accel");
        arg(a, "%s", acc == QEMU_ACCEL_KVM ? "kvm" : "tcg");
        arg(a, "-cpu");
        arg(a, "%s", acc == QEMU_ACCEL_KVM ? "host" : "max");
        arg(a, "-m");
        arg(a, "%u", s->memory_mib ? s->memory_mib : 256);
        arg(a, "-smp");
        arg(a, "%u", s->vcpu ? s->vcpu : 1);
        arg(a, "-nodefaults");
        arg(a, "-no-user-config");
        arg(a, "-display");
        arg(a, "none");
        arg(a, "-no-reboot");
        arg(a, "-kernel");
        arg(a, "%s", k->vmlinuz);
        arg(a, "-initrd");
        arg(a, "%s", k->initrd);
        /* The network the loop set up for this sandbox (handles.net): the
         * tap is persistent and already on the bridge; QEMU attaches to it
         * by name, and the guest's /init reads its address from banger.*. */
        json_t *net = json_object_get(vm->handles, "net");
        const char *tap = json_string_value(json_object_get(net, "tap"));
        const char *mac = json_string_value(json_object_get(net, "mac"));
        const char *ip = json_string_value(json_object_get(net, "ip"));
        const char *gw = json_string_value(json_object_get(net, "gw"));
        json_int_t prefix = json_integer_value(json_object_get(net, "prefix"));
        uint8_t macb[6];
        uint32_t addr;
        /* Re-checked: these go into QEMU's option syntax and the kernel line. */
        bool with_net = tap && mac && ip && gw && ipam_tap_name_valid(tap) && ipam_mac_parse(mac, macb, NULL) == 0 &&
                        ipam_addr_parse(ip, &addr, NULL) == 0 && ipam_addr_parse(gw, &addr, NULL) == 0 &&
                        prefix >= IPAM_PREFIX_MIN && prefix <= IPAM_PREFIX_MAX;
        _cleanup_free_ char *netargs = with_net ? xasprintf(" banger.ip=%s/%d banger.gw=%s banger.dns=%s", ip,
                                                            (int)prefix, gw, gw)
                                                : xstrdup("");
        arg(a, "-append");
        arg(a, "console=ttyS0%s root=/dev/vda rw banger.work=/dev/vdb banger.hostname=%s%s banger.agent=serial "
            "panic=-1", clock, vm->name, netargs);
        arg(a, "-drive");
        arg(a, "file=%s,format=%s,if=none,id=root,discard=unmap", root, dk->format);
        arg(a, "-device");
        arg(a, "virtio-blk-device,drive=root,serial=banger-root");
        arg(a, "-drive");
        arg(a, "file=%s,format=raw,if=none,id=work,discard=unmap", work);
        arg(a, "-device");
        arg(a, "virtio-blk-device,drive=work,serial=banger-work");
        arg(a, "-chardev");
        arg(a, "file,id=con,path=%s,append=on", con);
        arg(a, "-serial");
        arg(a, "chardev:con");
        arg(a, "-qmp");
        arg(a, "unix:qmp.sock,server=on,wait=off");   /* relative: cwd is the run dir */
        /* The guest agent's channel (docs/agent-protocol.md): a virtio-serial
         * port the guest finds by name, on a socket bangerd connects to. */
        arg(a, "-device");
        arg(a, "virtio-serial-device");
        arg(a, "-chardev");
        arg(a, "socket,id=agent,path=agent.sock,server=on,wait=off");
        arg(a, "-device");
        arg(a, "virtserialport,chardev=agent,name=org.banger.agent");
        if (with_net) {
                arg(a, "-netdev");
                arg(a, "tap,id=n0,ifname=%s,script=no,downscript=no", tap);
                arg(a, "-device");
                arg(a, "virtio-net-device,netdev=n0,mac=%s", mac);
        }
}

/* Wait until QEMU answers QMP (it parsed its arguments, opened its disks
 * and built the machine), or exits. */
static int wait_ready(struct qemu *q, struct driver_vm *vm, const char *log, off_t log_from, struct bg_err **err)
{
        _cleanup_free_ char *dir = run_dir(q, vm->id);
        int64_t end = now_mono_ms() + READY_TIMEOUT_MS;
        for (;;) {
                int status;
                if (vmm_state(q->vmm, vm->id, &status) != VMM_RUNNING) {
                        _cleanup_free_ char *tail = log_tail(log, log_from);
                        return bg_error(err, EIO, "qemu exited at start (status %d): %s", status,
                                        *tail ? tail : "(no output)");
                }
                struct qemu_qmp c;
                if (qemu_qmp_open(dir, 500, &c, NULL) == 0) {
                        int r = qemu_qmp_exec(&c, "query-status", QMP_TIMEOUT_MS, NULL);
                        qemu_qmp_close(&c);
                        if (r == 0)
                                return 0;
                }
                if (now_mono_ms() > end)
                        return bg_error(err, ETIMEDOUT, "qemu did not answer on qmp within %d ms",
                                        READY_TIMEOUT_MS);
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

static int qemu_start(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct qemu *q = Q(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "qemu: bad id '%s'", vm->id ? vm->id : "");
        if (!vm->spec)
                return bg_error(err, EINVAL, "qemu start %s: no spec", vm->name);
        vmm_label(q->vmm, vm->id, vm->name);
        enum vmm_state st = track(q, vm, NULL);
        if (st == VMM_RUNNING || st == VMM_HELD)
                return 0;   /* idempotent */
        vmm_forget(q->vmm, vm->id);   /* an exited entry */
        struct disks dk;
        if (disks_read(q, vm->id, &dk) < 0)
                return bg_error(err, ENOENT, "start %s: disks are not prepared", vm->name);
        struct kernel_paths k;
        if (catalog_kernel(q->state_dir, vm->spec->kernel, &k, err) < 0) {
                disks_release(&dk);
                return bg_error_wrap(err, "start %s", vm->name);
        }
        _cleanup_free_ char *dir = run_dir(q, vm->id);
        _cleanup_free_ char *log = run_file(q, vm->id, "qemu.log");
        _cleanup_free_ char *sock = run_file(q, vm->id, "qmp.sock");
        _cleanup_free_ char *agent = run_file(q, vm->id, "agent.sock");
        _cleanup_free_ char *console = run_file(q, vm->id, "console.log");
        struct argv_b a = { NULL, 0 };
        int r = mkdir_p(dir, 0700, err);
        if (r < 0)
                goto out;
        unlink(sock);
        unlink(agent);
        enum qemu_accel_kind acc = qemu_accel_decide(&q->accel, k.vmlinuz, k.initrd);
        build_argv(q, vm, acc, &k, &dk, &a);
        off_t log_from = file_size_or_zero(log);
        struct vmm_cmd cmd = { .argv = (const char *const *)a.v, .log_path = log, .cwd = dir };
        pid_t pid;
        uint64_t start_time;
        r = vmm_spawn(q->vmm, vm->id, &cmd, &pid, &start_time, err);
        if (r < 0)
                goto out;
        json_object_set_new(vm->handles, "pid", json_integer(pid));
        json_object_set_new(vm->handles, "start_time", json_integer((json_int_t)start_time));
        json_object_set_new(vm->handles, "accel", json_string(qemu_accel_name(acc)));
        json_object_set_new(vm->handles, "run_dir", json_string(dir));
        json_object_set_new(vm->handles, "qmp", json_string(sock));
        json_object_set_new(vm->handles, "agent_sock", json_string(agent));
        json_object_set_new(vm->handles, "console", json_string(console));
        json_object_set_new(vm->handles, "log", json_string(log));
        /* Write-ahead: the store knows the pid before QEMU runs. */
        if (vm->persist && (r = vm->persist(vm, err)) < 0) {
                vmm_forget(q->vmm, vm->id);   /* the held child never runs */
                drop_process_handles(vm);
                goto out;
        }
        int64_t t0 = now_mono_ms();
        r = vmm_release(q->vmm, vm->id, err);
        if (r == 0)
                r = wait_ready(q, vm, log, log_from, err);
        if (r < 0) {
                kill_now(q, vm, NULL);
                vmm_forget(q->vmm, vm->id);
                drop_process_handles(vm);
                goto out;
        }
        log_info("qemu vm started name=%s pid=%d accel=%s ms=%lld", vm->name, (int)pid,
                 qemu_accel_name(acc), (long long)(now_mono_ms() - t0));
out:
        argv_free(&a);
        kernel_paths_release(&k);
        disks_release(&dk);
        return r < 0 ? bg_error_wrap(err, "start %s", vm->name) : 0;
}

/* ---- stop, kill, probe ---- */

static int qmp_command(struct qemu *q, const char *id, const char *cmd)
{
        _cleanup_free_ char *dir = run_dir(q, id);
        return qemu_qmp_command(dir, cmd, QMP_TIMEOUT_MS, NULL);
}

static int qemu_stop(struct driver *d, struct driver_vm *vm, int timeout_ms, struct bg_err **err)
{
        struct qemu *q = Q(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "qemu: bad id '%s'", vm->id ? vm->id : "");
        enum vmm_state st = track(q, vm, NULL);
        if (st == VMM_RUNNING) {
                /* The guest powers off if it handles the ACPI button... */
                if (qmp_command(q, vm->id, "system_powerdown") < 0 || vmm_wait(q->vmm, vm->id, timeout_ms) < 0) {
                        /* ...else QEMU quits at once, else it is killed. */
                        if (qmp_command(q, vm->id, "quit") < 0 ||
                            vmm_wait(q->vmm, vm->id, QUIT_WAIT_MS) < 0) {
                                if (kill_now(q, vm, err) < 0)
                                        return bg_error_wrap(err, "stop %s", vm->name);
                        }
                }
        } else if (st == VMM_HELD && kill_now(q, vm, err) < 0) {
                return bg_error_wrap(err, "stop %s", vm->name);
        }
        vmm_forget(q->vmm, vm->id);
        drop_process_handles(vm);
        _cleanup_free_ char *sock = run_file(q, vm->id, "qmp.sock");
        _cleanup_free_ char *agent = run_file(q, vm->id, "agent.sock");
        unlink(sock);
        unlink(agent);
        return 0;
}

static int qemu_kill(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct qemu *q = Q(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "qemu: bad id '%s'", vm->id ? vm->id : "");
        track(q, vm, NULL);
        int64_t t0 = now_mono_ms();
        if (kill_now(q, vm, err) < 0)
                return bg_error_wrap(err, "kill %s", vm->name);
        vmm_forget(q->vmm, vm->id);
        drop_process_handles(vm);
        log_debug("qemu vm killed name=%s ms=%lld", vm->name, (long long)(now_mono_ms() - t0));
        return 0;
}

static int qemu_probe(struct driver *d, struct driver_vm *vm, struct driver_probe *out, struct bg_err **err)
{
        (void)err;
        struct qemu *q = Q(d);
        out->vm = VM_ABSENT;
        out->exit_status = -1;
        if (!ownmark_id_valid(vm->id))
                return 0;
        vmm_label(q->vmm, vm->id, vm->name);
        int status = -1;
        switch (track(q, vm, &status)) {
        case VMM_NONE:
                break;
        case VMM_HELD:
        case VMM_RUNNING:
                out->vm = VM_RUNNING;
                break;
        case VMM_EXITED:
                out->vm = status == 0 ? VM_EXITED_OK : VM_EXITED_FAIL;
                out->exit_status = status;
                break;
        }
        return 0;
}

/* ---- cleanup and GC ---- */

/* Kill every VMM whose command line names id's run dir (verified), then
 * remove both folders. */
static int remove_all(struct qemu *q, struct driver_vm *vm, struct bg_err **err)
{
        if (kill_now(q, vm, err) < 0)
                return -EIO;
        _cleanup_free_ char *needle = needle_of(q, vm->id);
        struct vmm_found *found = NULL;
        size_t n = 0;
        int r = vmm_scan(needle, &found, &n, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = vmm_kill_verified(found[i].pid, found[i].start_time, needle, KILL_WAIT_MS, err);
        vmm_found_free(found, n);
        if (r < 0)
                return r;
        vmm_forget(q->vmm, vm->id);
        _cleanup_free_ char *rd = run_dir(q, vm->id);
        _cleanup_free_ char *dd = disk_dir(q, vm->id);
        if (rm_rf(rd, err) < 0 || rm_rf(dd, err) < 0)
                return -EIO;
        vmm_label(q->vmm, vm->id, NULL);
        return 0;
}

static int qemu_cleanup(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct qemu *q = Q(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "qemu: bad id '%s'", vm->id ? vm->id : "");
        track(q, vm, NULL);
        int64_t t0 = now_mono_ms();
        if (remove_all(q, vm, err) < 0)
                return bg_error_wrap(err, "cleanup %s", vm->name);
        log_debug("qemu vm removed name=%s ms=%lld", vm->name, (long long)(now_mono_ms() - t0));
        if (vm->handles) {
                const char *keys[] = { "pid", "start_time", "accel", "run_dir", "qmp", "console", "log",
                                       "root_disk", "root_format", "work_disk", "agent_sock" };
                for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                        json_object_del(vm->handles, keys[i]);
        }
        return 0;
}

static int qemu_list_owned(struct driver *d, char ***ids, size_t *n, struct bg_err **err)
{
        struct qemu *q = Q(d);
        struct id_set s;
        id_set_init(&s);
        int r = id_set_scan_dir(&s, q->disk_root, "");
        if (r == 0)
                r = id_set_scan_dir(&s, q->run_root, "");
        if (r < 0) {
                bg_error(err, -r, "qemu: list owned objects: %s", strerror(-r));
        } else {
                _cleanup_free_ char *prefix = owned_prefix(q);
                struct vmm_found *found = NULL;
                size_t nf = 0;
                r = vmm_scan(prefix, &found, &nf, err);
                for (size_t i = 0; i < nf; i++) {
                        const char *p = strstr(found[i].cmdline, prefix) + strlen(prefix);
                        char id[17];
                        if (strlen(p) > 16 && p[16] == '/') {
                                memcpy(id, p, 16);
                                id[16] = '\0';
                                id_set_add(&s, id);
                        }
                }
                vmm_found_free(found, nf);
        }
        id_set_take(&s, ids, n);
        return r < 0 ? -EIO : 0;
}

static int qemu_remove_owned(struct driver *d, const char *id, struct bg_err **err)
{
        if (!ownmark_id_valid(id))
                return bg_error(err, EINVAL, "qemu: bad id '%s'", id ? id : "");
        struct driver_vm vm = { .name = id, .id = id };
        return remove_all(Q(d), &vm, err) < 0 ? bg_error_wrap(err, "qemu gc %s", id) : 0;
}

/* ---- events and life cycle ---- */

static int qemu_event_fd(struct driver *d)
{
        return vmm_event_fd(Q(d)->vmm);
}

struct drain_ctx {
        struct qemu *q;
        void (*changed)(const char *name, void *arg);
        void *arg;
};

static void on_exit_cb(const char *id, const char *name, void *arg)
{
        (void)id;
        struct drain_ctx *c = arg;
        if (name)
                c->changed(name, c->arg);
}

static void qemu_drain_events(struct driver *d, void (*changed)(const char *name, void *arg), void *arg)
{
        struct drain_ctx c = { Q(d), changed, arg };
        vmm_drain(Q(d)->vmm, on_exit_cb, &c);
}

static void qemu_free(struct driver *d)
{
        struct qemu *q = Q(d);
        if (!q)
                return;
        vmm_free(q->vmm);   /* VMMs keep running: the next bangerd adopts them */
        free(q->bin);
        free(q->state_dir);
        free(q->disk_root);
        free(q->run_root);
        free(q->probe_cache);
        free(q->user_key);
        pthread_mutex_destroy(&q->mu);
        if (q->accel.bin)
                qemu_accel_release(&q->accel);
        free(q);
}

static const struct driver_ops qemu_ops = {
        .name = "qemu",
        .prepare = qemu_prepare,
        .start = qemu_start,
        .stop = qemu_stop,
        .kill = qemu_kill,
        .probe = qemu_probe,
        .cleanup = qemu_cleanup,
        .list_owned = qemu_list_owned,
        .remove_owned = qemu_remove_owned,
        .event_fd = qemu_event_fd,
        .drain_events = qemu_drain_events,
        .hypervisor = qemu_hypervisor,
        .doctor = qemu_doctor,
        .free = qemu_free,
};

int driver_qemu_new(const struct driver_env *env, struct driver **out, struct bg_err **err)
{
        const char *want = env->cfg && env->cfg->qemu_bin ? env->cfg->qemu_bin : "qemu-system-x86_64";
        char *bin = vmm_which(want);
        if (!bin) {
                if (env->cfg && env->cfg->qemu_bin)
                        return bg_error(err, ENOENT, "qemu_bin '%s' from config.yaml not found", want);
                return bg_error(err, ENOENT,
                                "qemu-system-x86_64 not found (apt-get install qemu-system-x86, or set qemu_bin)");
        }
        struct qemu *q = xcalloc(1, sizeof *q);
        q->base.ops = &qemu_ops;
        q->bin = bin;
        q->cfg = env->cfg;
        q->owner = env->owner;
        q->state_dir = xstrdup(env->state_dir);
        q->disk_root = xasprintf("%s/vms", env->state_dir);
        q->run_root = xasprintf("%s/vms", env->run_dir);
        q->probe_cache = xasprintf("%s/kvm-probe.json", env->run_dir);
        q->user_key = env->user_key ? xstrdup(env->user_key) : NULL;
        pthread_mutex_init(&q->mu, NULL);
        if (mkdir_p(q->disk_root, 0700, err) < 0 || mkdir_p(q->run_root, 0700, err) < 0 ||
            vmm_new(&q->vmm, err) < 0) {
                qemu_free(&q->base);
                return bg_error_wrap(err, "qemu driver");
        }
        qemu_accel_init(&q->accel, q->bin, q->probe_cache);
        log_info("qemu driver bin=%s accel=%s why=\"%s\"", q->bin, qemu_accel_name(q->accel.kind), q->accel.why);
        *out = &q->base;
        return 0;
}
