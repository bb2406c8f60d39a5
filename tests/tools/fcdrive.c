/* fcdrive: drives the Firecracker driver by hand, for tests and the bench.
 *
 *   fcdrive --root DIR [--bin PATH] [--name N] [--id ID] [--vcpu N]
 *           [--memory MIB] [--disk SIZE] [--kernel K] [--image I]
 *           [--timeout MS] OP...
 *
 * Runs each OP in turn in one process against one driver, printing one
 * JSON line per OP: {"op", "rc", "error", "handles", ...}.  DIR holds
 * state/, run/ and harness/<id>.json, the handles as the store would keep
 * them (loaded first, saved after every OP and by the persist hook), so a
 * second fcdrive process sees what a restarted bangerd would.
 *
 * OPs: setup (a fake kernel "default" and a small ext4 image "tiny" in the
 * catalog; setup-no-vmlinux leaves out the uncompressed kernel), prepare,
 * start, probe, stop, kill, cleanup, list, gc (remove_owned of --id),
 * wait-exit (poll the event fd until the VM changes, up to --timeout),
 * bench:N (N creates, timed; see below).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "driver.h"
#include "err.h"
#include "log.h"
#include "spec.h"
#include "util.h"
#include "vmm.h"

struct opts {
        const char *root;
        const char *bin;
        const char *name;
        const char *id;
        const char *kernel;
        const char *image;
        unsigned vcpu;
        unsigned memory;
        const char *disk;
        int timeout_ms;
};

struct h {
        struct opts o;
        char *state, *run, *harness;
        struct bg_config cfg;
        struct driver *d;
        struct bg_spec *spec;
        json_t *handles;
        int persisted;          /* persist calls */
        bool held_at_persist;   /* the VMM had not exec'd yet when its pid was persisted */
};

static char *handles_path(struct h *h, const char *id) { return xasprintf("%s/%s.json", h->harness, id); }

static int save_handles(struct h *h, const char *id, struct bg_err **err)
{
        _cleanup_free_ char *path = handles_path(h, id);
        _cleanup_free_ char *text = json_dumps(h->handles, JSON_COMPACT | JSON_SORT_KEYS);
        return write_file_atomic(path, text, strlen(text), 0600, err);
}

static void load_handles(struct h *h, const char *id)
{
        _cleanup_free_ char *path = handles_path(h, id);
        json_decref(h->handles);
        h->handles = json_load_file(path, 0, NULL);
        if (!json_is_object(h->handles)) {
                json_decref(h->handles);
                h->handles = json_object();
        }
}

/* The store's persist hook: write the handles now, and note whether the
 * VMM is still held before exec (its command line is still ours). */
static int persist(struct driver_vm *vm, struct bg_err **err)
{
        struct h *h = vm->persist_arg;
        h->persisted++;
        pid_t pid = (pid_t)json_integer_value(json_object_get(vm->handles, "pid"));
        _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int)pid);
        h->held_at_persist = false;
        FILE *fp = pid > 0 ? fopen(path, "re") : NULL;
        if (fp) {
                char buf[4096];
                size_t n = fread(buf, 1, sizeof buf - 1, fp);
                fclose(fp);
                buf[n] = '\0';
                for (size_t i = 0; i < n; i++)
                        if (!buf[i])
                                buf[i] = ' ';
                h->held_at_persist = !strstr(buf, "--api-sock");
        }
        return save_handles(h, vm->id, err);
}

static const char *vm_state_name(enum vm_observed v)
{
        switch (v) {
        case VM_ABSENT: return "absent";
        case VM_RUNNING: return "running";
        case VM_EXITED_OK: return "exited-ok";
        case VM_EXITED_FAIL: return "exited-fail";
        }
        return "?";
}

static int make_spec(struct h *h, struct bg_err **err)
{
        _cleanup_free_ char *yaml = xasprintf("apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: %s\n"
                                              "spec:\n  image: %s\n  kernel: %s\n  vcpu: %u\n  memory_mib: %u\n"
                                              "  disk_size: %s\n", h->o.name, h->o.image, h->o.kernel, h->o.vcpu,
                                              h->o.memory, h->o.disk);
        struct spec_file *f = NULL;
        spec_parse_buffer("fcdrive.yaml", yaml, strlen(yaml), &f);
        if (!spec_file_ok(f)) {
                spec_file_free(f);
                return bg_error(err, EINVAL, "bad spec for --name/--vcpu/--memory/--disk");
        }
        h->spec = spec_dup(f->docs[0].spec);
        spec_file_free(f);
        return 0;
}

/* ---- setup: a catalog the driver can use ---- */

static int put(const char *dir, const char *name, const char *text, struct bg_err **err)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
        return write_file_atomic(p, text, strlen(text), 0644, err);
}

static int op_setup(struct h *h, bool vmlinux, struct bg_err **err)
{
        _cleanup_free_ char *kdir = NULL, *idir = NULL;
        json_t *meta = NULL;
        int r = catalog_begin(h->state, "kernels", "default", &kdir, err);
        if (r == -EEXIST) {
                bg_err_free(*err);
                *err = NULL;
        } else if (r < 0 || put(kdir, "vmlinuz", "fake bzImage\n", err) < 0 ||
                   (vmlinux && put(kdir, "vmlinux", "\177ELF fake vmlinux\n", err) < 0) ||
                   put(kdir, "initrd.img", "fake initrd\n", err) < 0 ||
                   catalog_commit(kdir, "kernels", meta = json_pack("{s:s}", "name", "default"), err) < 0) {
                json_decref(meta);
                return -EIO;
        }
        json_decref(meta);
        meta = NULL;
        r = catalog_begin(h->state, "images", "tiny", &idir, err);
        if (r == -EEXIST) {
                bg_err_free(*err);
                *err = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        _cleanup_free_ char *rootfs = xasprintf("%s/rootfs.ext4", idir);
        const char *argv[] = { "mkfs.ext4", "-q", "-F", "-L", "tiny", rootfs, "16M", NULL };
        if (vmm_run_tool(argv, 60000, NULL, NULL, err) < 0 ||
            catalog_commit(idir, "images", meta = json_pack("{s:s}", "name", "tiny"), err) < 0) {
                json_decref(meta);
                return -EIO;
        }
        json_decref(meta);
        _cleanup_free_ char *ssh = xasprintf("%s/ssh", h->state);
        if (mkdir_p(ssh, 0700, err) < 0)
                return -EIO;
        return put(ssh, "id_ed25519.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests fcdrive\n", err);
}

/* ---- bench ---- */

/* Times the double's own start-up from outside: from its exec (the kernel
 * reports IN_OPEN on the script it execs) to the creation of fc.sock (the
 * VMM binds its API socket).  fork, the persist hook and the release
 * before exec stay on banger's side of the line. */
struct stopwatch {
        int ino;
        int stop[2];   /* closing stop[1] ends the watcher */
        const char *script;
        pthread_mutex_t mu;
        bool armed;
        int64_t exec_us, sock_us;
};

static int64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *watch_main(void *arg)
{
        struct stopwatch *s = arg;
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        for (;;) {
                struct pollfd pf[2] = { { .fd = s->ino, .events = POLLIN }, { .fd = s->stop[0], .events = POLLIN } };
                if (poll(pf, 2, -1) < 0 || pf[1].revents)
                        return NULL;
                ssize_t n = read(s->ino, buf, sizeof buf);
                if (n <= 0)
                        return NULL;
                int64_t t = now_us();
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;
                        p += sizeof *ev + ev->len;
                        if (!ev->len)
                                continue;
                        pthread_mutex_lock(&s->mu);
                        if ((ev->mask & IN_OPEN) && s->armed && strcmp(ev->name, s->script) == 0 && !s->exec_us)
                                s->exec_us = t;
                        if (strcmp(ev->name, "fc.sock") == 0 && !s->sock_us)
                                s->sock_us = t;
                        pthread_mutex_unlock(&s->mu);
                }
        }
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The double's own handling time for instance banger-<id>, summed from
 * FC_DOUBLE_LOG ("ms" per request); 0 without the log. */
static double double_request_ms(const char *id)
{
        const char *log = getenv("FC_DOUBLE_LOG");
        FILE *fp = log ? fopen(log, "re") : NULL;
        if (!fp)
                return 0;
        _cleanup_free_ char *want = xasprintf("banger-%s", id);
        double sum = 0;
        char line[8192];
        while (fgets(line, sizeof line, fp)) {
                json_t *j = json_loads(line, 0, NULL);
                if (json_is_string(json_object_get(j, "id")) && strcmp(json_string_value(json_object_get(j, "id")), want) == 0)
                        sum += json_number_value(json_object_get(j, "ms"));
                json_decref(j);
        }
        fclose(fp);
        return sum;
}

static int op_bench(struct h *h, int n, struct bg_err **err)
{
        struct stopwatch sw = { .ino = inotify_init1(IN_CLOEXEC) };
        pthread_mutex_init(&sw.mu, NULL);
        _cleanup_free_ char *bin = xstrdup(h->o.bin ? h->o.bin : "firecracker");
        char *slash = strrchr(bin, '/');
        sw.script = slash ? slash + 1 : bin;
        if (slash) {
                *slash = '\0';
                inotify_add_watch(sw.ino, bin, IN_OPEN);
        }
        pthread_t th;
        if (sw.ino < 0 || pipe2(sw.stop, O_CLOEXEC) < 0 || pthread_create(&th, NULL, watch_main, &sw) != 0)
                return bg_error(err, errno, "inotify: %s", strerror(errno));
        double *prep = xcalloc((size_t)n, sizeof *prep), *start = xcalloc((size_t)n, sizeof *start);
        double *boot = xcalloc((size_t)n, sizeof *boot), *over = xcalloc((size_t)n, sizeof *over);
        double *startover = xcalloc((size_t)n, sizeof *startover), *reqs = xcalloc((size_t)n, sizeof *reqs);
        int r = 0, i;
        for (i = 0; i < n && r == 0; i++) {
                unsigned char raw[8];
                char id[17];
                random_bytes(raw, sizeof raw);
                for (int k = 0; k < 8; k++)
                        snprintf(id + 2 * k, 3, "%02x", raw[k]);
                _cleanup_free_ char *rundir = xasprintf("%s/vms/%s", h->run, id);
                if ((r = mkdir_p(rundir, 0700, err)) < 0)
                        break;
                int wd = inotify_add_watch(sw.ino, rundir, IN_CREATE);
                pthread_mutex_lock(&sw.mu);
                sw.exec_us = sw.sock_us = 0;
                sw.armed = false;
                pthread_mutex_unlock(&sw.mu);
                json_decref(h->handles);
                h->handles = json_object();
                struct driver_vm vm = { .name = h->o.name, .id = id, .spec = h->spec, .handles = h->handles,
                                        .persist = persist, .persist_arg = h };
                int64_t t0 = now_us();
                r = h->d->ops->prepare(h->d, &vm, err);
                int64_t t1 = now_us();
                pthread_mutex_lock(&sw.mu);
                sw.armed = true;
                pthread_mutex_unlock(&sw.mu);
                if (r == 0)
                        r = h->d->ops->start(h->d, &vm, err);
                int64_t t2 = now_us();
                usleep(2000);   /* let the watcher read the last event */
                pthread_mutex_lock(&sw.mu);
                double b = sw.exec_us && sw.sock_us ? (double)(sw.sock_us - sw.exec_us) / 1000 : 0;
                pthread_mutex_unlock(&sw.mu);
                inotify_rm_watch(sw.ino, wd);
                prep[i] = (double)(t1 - t0) / 1000;
                start[i] = (double)(t2 - t1) / 1000;
                boot[i] = b;
                reqs[i] = double_request_ms(id);
                over[i] = prep[i] + start[i] - b - reqs[i];
                startover[i] = start[i] - b - reqs[i];
                h->d->ops->cleanup(h->d, &vm, NULL);
                _cleanup_free_ char *hp = handles_path(h, id);
                unlink(hp);
        }
        close(sw.stop[1]);
        pthread_join(th, NULL);
        close(sw.stop[0]);
        close(sw.ino);
        pthread_mutex_destroy(&sw.mu);
        if (r == 0) {
                printf("{\"op\":\"bench\",\"rc\":0,\"n\":%d,\"median_ms\":{\"prepare\":%.2f,\"start\":%.2f,"
                       "\"double_startup\":%.2f,\"double_requests\":%.2f,\"start_overhead\":%.2f,"
                       "\"overhead\":%.2f}}\n", n, median(prep, n), median(start, n), median(boot, n),
                       median(reqs, n), median(startover, n), median(over, n));
                fprintf(stderr, "fc bench (n=%d, medians): prepare %.2f ms; start %.2f ms, of which the double's "
                                "start-up %.2f ms and request handling %.2f ms -> banger overhead per create "
                                "%.2f ms (start alone %.2f ms)\n", n, median(prep, n), median(start, n),
                        median(boot, n), median(reqs, n), median(over, n), median(startover, n));
        }
        free(prep);
        free(start);
        free(boot);
        free(over);
        free(startover);
        free(reqs);
        return r;
}

/* ---- ops ---- */

static void on_changed(const char *name, void *arg)
{
        json_array_append_new(arg, json_string(name));
}

static int run_op(struct h *h, const char *op, json_t *out, struct bg_err **err)
{
        struct driver *d = h->d;
        struct driver_vm vm = { .name = h->o.name, .id = h->o.id, .spec = h->spec, .handles = h->handles,
                                .persist = persist, .persist_arg = h };
        if (strcmp(op, "prepare") == 0)
                return d->ops->prepare(d, &vm, err);
        if (strcmp(op, "start") == 0) {
                int r = d->ops->start(d, &vm, err);
                json_object_set_new(out, "persisted", json_integer(h->persisted));
                json_object_set_new(out, "held_at_persist", json_boolean(h->held_at_persist));
                return r;
        }
        if (strcmp(op, "stop") == 0)
                return d->ops->stop(d, &vm, h->o.timeout_ms, err);
        if (strcmp(op, "kill") == 0)
                return d->ops->kill(d, &vm, err);
        if (strcmp(op, "cleanup") == 0)
                return d->ops->cleanup(d, &vm, err);
        if (strcmp(op, "gc") == 0)
                return d->ops->remove_owned(d, h->o.id, err);
        if (strcmp(op, "probe") == 0 || strcmp(op, "wait-exit") == 0) {
                struct driver_probe pr;
                if (strcmp(op, "wait-exit") == 0) {
                        /* No probe first: a probe that sees the exit reaps it,
                         * and then there is no event (level-triggered).  A VMM
                         * another process started needs a "probe" op before,
                         * as bangerd's start-up probe adopts it. */
                        json_t *changed = json_array();
                        int64_t end = now_mono_ms() + h->o.timeout_ms;
                        while (json_array_size(changed) == 0 && now_mono_ms() < end) {
                                struct pollfd p = { .fd = d->ops->event_fd(d), .events = POLLIN };
                                if (poll(&p, 1, (int)(end - now_mono_ms())) > 0)
                                        d->ops->drain_events(d, on_changed, changed);
                        }
                        json_object_set_new(out, "changed", changed);
                }
                int r = d->ops->probe(d, &vm, &pr, err);
                json_object_set_new(out, "vm", json_string(vm_state_name(pr.vm)));
                json_object_set_new(out, "exit_status", json_integer(pr.exit_status));
                return r;
        }
        if (strcmp(op, "list") == 0) {
                char **ids = NULL;
                size_t n = 0;
                int r = d->ops->list_owned(d, &ids, &n, err);
                json_t *arr = json_array();
                for (size_t i = 0; i < n; i++) {
                        json_array_append_new(arr, json_string(ids[i]));
                        free(ids[i]);
                }
                free(ids);
                json_object_set_new(out, "ids", arr);
                return r;
        }
        if (strcmp(op, "hypervisor") == 0) {
                json_object_set_new(out, "hypervisor", json_string(d->ops->hypervisor(d)));
                return 0;
        }
        return bg_error(err, EINVAL, "unknown op '%s'", op);
}

static const char usage[] =
        "usage: fcdrive --root DIR [--bin PATH] [--name N] [--id ID] [--vcpu N] [--memory MIB]\n"
        "               [--disk SIZE] [--kernel K] [--image I] [--timeout MS] OP...\n"
        "ops: setup setup-no-vmlinux prepare start probe stop kill cleanup list gc wait-exit\n"
        "     hypervisor bench:N\n";

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "root", required_argument, NULL, 'r' },   { "bin", required_argument, NULL, 'b' },
                { "name", required_argument, NULL, 'n' },   { "id", required_argument, NULL, 'i' },
                { "vcpu", required_argument, NULL, 'c' },   { "memory", required_argument, NULL, 'm' },
                { "disk", required_argument, NULL, 'd' },   { "kernel", required_argument, NULL, 'k' },
                { "image", required_argument, NULL, 'g' },  { "timeout", required_argument, NULL, 't' },
                { NULL, 0, NULL, 0 },
        };
        struct h h = { .o = { .name = "web", .id = "0123456789abcdef", .vcpu = 1, .memory = 256, .disk = "64M",
                              .kernel = "default", .image = "tiny", .timeout_ms = 2000 } };
        int c;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'r': h.o.root = optarg; break;
                case 'b': h.o.bin = optarg; break;
                case 'n': h.o.name = optarg; break;
                case 'i': h.o.id = optarg; break;
                case 'c': h.o.vcpu = (unsigned)atoi(optarg); break;
                case 'm': h.o.memory = (unsigned)atoi(optarg); break;
                case 'd': h.o.disk = optarg; break;
                case 'k': h.o.kernel = optarg; break;
                case 'g': h.o.image = optarg; break;
                case 't': h.o.timeout_ms = atoi(optarg); break;
                default: fputs(usage, stderr); return 2;
                }
        }
        if (!h.o.root || optind >= argc) {
                fputs(usage, stderr);
                return 2;
        }
        log_threshold = getenv("FCDRIVE_DEBUG") ? LOGL_DEBUG : LOGL_WARN;
        h.state = xasprintf("%s/state", h.o.root);
        h.run = xasprintf("%s/run", h.o.root);
        h.harness = xasprintf("%s/harness", h.o.root);
        h.cfg.firecracker_bin = h.o.bin ? xstrdup(h.o.bin) : NULL;
        _cleanup_free_ char *ssh = xasprintf("%s/ssh", h.state);
        _cleanup_free_ char *user_key = xasprintf("%s/id_ed25519", ssh);
        struct driver_env env = { .state_dir = h.state, .run_dir = h.run, .cache_dir = h.o.root, .user_key = user_key,
                                  .cfg = &h.cfg };
        struct bg_err *err = NULL;
        int status = 0;
        if (mkdir_p(h.harness, 0700, &err) < 0 || make_spec(&h, &err) < 0) {
                fprintf(stderr, "fcdrive: %s\n", bg_err_msg(err));
                return 1;
        }
        load_handles(&h, h.o.id);
        for (int i = optind; i < argc; i++) {
                const char *op = argv[i];
                json_t *out = json_pack("{s:s}", "op", op);
                int r;
                if (strcmp(op, "setup") == 0 || strcmp(op, "setup-no-vmlinux") == 0) {
                        r = op_setup(&h, strcmp(op, "setup") == 0, &err);
                } else if (!h.d && (r = driver_firecracker_new(&env, &h.d, &err)) < 0) {
                        ;   /* reported below */
                } else if (str_has_prefix(op, "bench:")) {
                        r = op_bench(&h, atoi(op + 6) > 0 ? atoi(op + 6) : 50, &err);
                        json_decref(out);
                        if (r == 0) {
                                bg_err_free(err);
                                continue;
                        }
                        out = json_pack("{s:s}", "op", op);
                } else {
                        r = run_op(&h, op, out, &err);
                        if (save_handles(&h, h.o.id, r < 0 ? NULL : &err) < 0 && r == 0)
                                r = -EIO;
                }
                json_object_set_new(out, "rc", json_integer(r));
                json_object_set_new(out, "error", err ? json_string(bg_err_msg(err)) : json_null());
                json_object_set(out, "handles", h.handles);
                char *line = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
                printf("%s\n", line);
                fflush(stdout);
                free(line);
                json_decref(out);
                bg_err_free(err);
                err = NULL;
                if (r < 0)
                        status = 1;
        }
        if (h.d)
                h.d->ops->free(h.d);
        json_decref(h.handles);
        spec_free(h.spec);
        config_release(&h.cfg);
        free(h.state);
        free(h.run);
        free(h.harness);
        return status;
}
