/* driver_fake: in-process "VMs" for control-loop tests and benchmarks.
 *
 * A fake VM leaves real traces on disk so that crashes, leaks and
 * adoption can be observed exactly as with a real hypervisor:
 *   STATE/fake/<id>/disk   its "disk" (a sparse file), made by prepare
 *   STATE/fake/<id>/console.log  what `vm logs` shows: one line per start
 *   RUN/fake/<id>.vm       its "VMM": "running" or "exited N"; made by
 *                          start, removed by stop; tests may write
 *                          "exited N" into it to simulate a crash
 * Both are named after the record id, the ownership mark GC relies on.
 * Like a real driver's pidfd table, the fake keeps what it knows of its VMs
 * in memory (probe is a hash lookup) and learns of VMs that die behind its
 * back from inotify on RUN/fake, reporting them through drain_events.
 * Every step passes fault points (fault.h) so tests can fail or crash the
 * daemon before, in the middle of, and after each one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "err.h"
#include "fault.h"
#include "spec.h"
#include "ownmark.h"
#include "strmap.h"
#include "util.h"

/* What the fake knows of one VM. */
struct fvm {
        int state;         /* 1 running, 0 exited */
        int status;        /* exit status when exited */
        char name[64];     /* "" until a start or probe names it */
};

struct fake {
        struct driver base;
        char *disk_root;   /* STATE/fake */
        char *vm_root;     /* RUN/fake */
        pthread_mutex_t mu;
        struct strmap *vms;   /* id -> struct fvm*, guarded by mu */
        int ino_fd;           /* inotify on vm_root */
};

static struct fake *F(struct driver *d) { return (struct fake *)d; }

static char *disk_dir(struct fake *f, const char *id) { return xasprintf("%s/%s", f->disk_root, id); }
static char *vm_file(struct fake *f, const char *id) { return xasprintf("%s/%s.vm", f->vm_root, id); }

/* With BANGER_FAKE_AGENT set (tests), a fake VM has a guest agent channel
 * like QEMU's: RUN/vms/<id>/agent.sock, where a test's fake agent listens. */
static char *agent_dir(struct fake *f, const char *id)
{
        size_t n = strlen(f->vm_root) - strlen("/fake");   /* RUN */
        return xasprintf("%.*s/vms/%s", (int)n, f->vm_root, id);
}

#define POINT(action, when, vm) do { \
        if (fault_hit(action "." when, (vm)->name, err) < 0) return -EIO; } while (0)

static int fake_prepare(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct fake *f = F(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "fake: bad id '%s'", vm->id);
        POINT("prepare", "before", vm);
        _cleanup_free_ char *dir = disk_dir(f, vm->id);
        if (mkdir_p(dir, 0700, err) < 0)
                return bg_error_wrap(err, "fake prepare");
        POINT("prepare", "mid", vm);
        _cleanup_free_ char *disk = xasprintf("%s/disk", dir);
        int fd = open(disk, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return bg_error(err, errno, "fake prepare: create '%s': %s", disk, strerror(errno));
        uint64_t size = vm->spec->disk_size ? vm->spec->disk_size : (8ULL << 30);
        int r = ftruncate(fd, (off_t)size);
        int e = errno;
        close(fd);
        if (r < 0)
                return bg_error(err, e, "fake prepare: size '%s': %s", disk, strerror(e));
        json_object_set_new(vm->handles, "disk", json_string(disk));
        POINT("prepare", "after", vm);
        return 0;
}

#define RUNNING_TEXT "running\n"

/* Read the VM file: 1 running, 0 exited (status in *status), -ENOENT absent. */
static int read_vm_file(struct fake *f, const char *id, int *status)
{
        _cleanup_free_ char *path = vm_file(f, id);
        _cleanup_free_ char *buf = NULL;
        if (read_file_limited(path, 256, &buf, NULL, NULL) < 0)
                return -ENOENT;
        if (str_has_prefix(buf, "running"))
                return 1;
        *status = 1;
        if (sscanf(buf, "exited %d", status) != 1)
                *status = 1;
        return 0;
}

/* Record what we know of id (state < 0: gone).  Returns true when that
 * changes what a probe would say.  mu held. */
static bool table_set(struct fake *f, const char *id, int state, int status, const char *name)
{
        struct fvm *v = strmap_get(f->vms, id);
        if (state < 0) {
                free(strmap_del(f->vms, id));
                return v != NULL;
        }
        bool changed = !v || v->state != state || v->status != status;
        if (!v) {
                v = xcalloc(1, sizeof *v);
                strmap_put(f->vms, id, v);
        }
        v->state = state;
        v->status = status;
        if (name && *name)
                snprintf(v->name, sizeof v->name, "%s", name);
        return changed;
}

/* Re-read id's file into the table; the name to report when it changed. */
static bool refresh(struct fake *f, const char *id, char name[64])
{
        int status = -1;
        int state = read_vm_file(f, id, &status);
        pthread_mutex_lock(&f->mu);
        struct fvm *v = strmap_get(f->vms, id);
        snprintf(name, 64, "%s", v ? v->name : "");
        bool changed = table_set(f, id, state < 0 ? -1 : state, status, NULL);
        pthread_mutex_unlock(&f->mu);
        return changed && name[0];
}

/* Write a small file whole: readers (and inotify) never see it half done. */
static int write_small(const char *path, const char *content, struct bg_err **err)
{
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return bg_error(err, errno, "create '%s': %s", tmp, strerror(errno));
        ssize_t n = write(fd, content, strlen(content));
        int e = errno;
        close(fd);
        if (n != (ssize_t)strlen(content) || rename(tmp, path) < 0) {
                e = n < 0 ? e : errno;
                unlink(tmp);
                return bg_error(err, e, "write '%s': %s", path, strerror(e));
        }
        return 0;
}

static int fake_start(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct fake *f = F(d);
        POINT("start", "before", vm);
        _cleanup_free_ char *disk = xasprintf("%s/%s/disk", f->disk_root, vm->id);
        if (access(disk, F_OK) < 0)
                return bg_error(err, ENOENT, "fake start: disk '%s' missing", disk);
        pthread_mutex_lock(&f->mu);
        struct fvm *v = strmap_get(f->vms, vm->id);
        bool running = v && v->state == 1;
        pthread_mutex_unlock(&f->mu);
        if (running)
                return 0;    /* already running: idempotent */
        _cleanup_free_ char *path = vm_file(f, vm->id);
        bool dies = fault_flag("start", vm->name);
        if (write_small(path, dies ? "exited 1\n" : RUNNING_TEXT, err) < 0)
                return bg_error_wrap(err, "fake start");
        pthread_mutex_lock(&f->mu);
        table_set(f, vm->id, dies ? 0 : 1, dies ? 1 : -1, vm->name);
        pthread_mutex_unlock(&f->mu);
        POINT("start", "mid", vm);
        /* A console log, so `banger vm logs` works on fake sandboxes too. */
        _cleanup_free_ char *console = xasprintf("%s/%s/console.log", f->disk_root, vm->id);
        int cfd = open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (cfd >= 0) {
                _cleanup_free_ char *line = xasprintf("fake: %s started (%s)\n", vm->name, dies ? "dies at once" : "running");
                ssize_t w = write(cfd, line, strlen(line));
                (void)w;
                close(cfd);
        }
        json_object_set_new(vm->handles, "console", json_string(console));
        json_object_set_new(vm->handles, "vm", json_string(path));
        json_object_set_new(vm->handles, "started_at", json_integer(now_wall_ms()));
        if (getenv("BANGER_FAKE_AGENT")) {
                _cleanup_free_ char *dir = agent_dir(f, vm->id);
                if (mkdir_p(dir, 0700, err) < 0)
                        return bg_error_wrap(err, "fake start");
                _cleanup_free_ char *sock = xasprintf("%s/agent.sock", dir);
                json_object_set_new(vm->handles, "agent_sock", json_string(sock));
        }
        POINT("start", "after", vm);
        return 0;
}

static int remove_vm(struct fake *f, const char *id, struct bg_err **err)
{
        _cleanup_free_ char *path = vm_file(f, id);
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return bg_error(err, errno, "fake: remove '%s': %s", path, strerror(errno));
        if (unlink(tmp) < 0 && errno != ENOENT)
                return bg_error(err, errno, "fake: remove '%s': %s", tmp, strerror(errno));
        pthread_mutex_lock(&f->mu);
        table_set(f, id, -1, -1, NULL);
        pthread_mutex_unlock(&f->mu);
        _cleanup_free_ char *adir = agent_dir(f, id);
        return rm_rf(adir, err);
}

static int fake_stop(struct driver *d, struct driver_vm *vm, int timeout_ms, struct bg_err **err)
{
        (void)timeout_ms;
        POINT("stop", "before", vm);
        if (remove_vm(F(d), vm->id, err) < 0)
                return -EIO;
        json_object_del(vm->handles, "vm");
        POINT("stop", "after", vm);
        return 0;
}

static int fake_kill(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        POINT("kill", "before", vm);
        if (remove_vm(F(d), vm->id, err) < 0)
                return -EIO;
        json_object_del(vm->handles, "vm");
        POINT("kill", "after", vm);
        return 0;
}

static int fake_probe(struct driver *d, struct driver_vm *vm, struct driver_probe *out, struct bg_err **err)
{
        (void)err;
        struct fake *f = F(d);
        out->exit_status = -1;
        out->vm = VM_ABSENT;
        pthread_mutex_lock(&f->mu);
        struct fvm *v = strmap_get(f->vms, vm->id);
        if (v) {
                if (!v->name[0])   /* adopted at start-up: learn its name for events */
                        snprintf(v->name, sizeof v->name, "%s", vm->name);
                if (v->state == 1) {
                        out->vm = VM_RUNNING;
                } else {
                        out->vm = v->status == 0 ? VM_EXITED_OK : VM_EXITED_FAIL;
                        out->exit_status = v->status;
                }
        }
        pthread_mutex_unlock(&f->mu);
        return 0;
}

static int fake_event_fd(struct driver *d)
{
        return F(d)->ino_fd;
}

static void fake_drain_events(struct driver *d, void (*changed)(const char *name, void *arg), void *arg)
{
        struct fake *f = F(d);
        char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
        for (;;) {
                ssize_t n = read(f->ino_fd, buf, sizeof buf);
                if (n <= 0)
                        return;
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;
                        p += sizeof *ev + ev->len;
                        char id[17], name[64];
                        if (ev->len < 19 || strlen(ev->name) != 19 || !str_has_suffix(ev->name, ".vm"))
                                continue;
                        memcpy(id, ev->name, 16);
                        id[16] = '\0';
                        if (ownmark_id_valid(id) && refresh(f, id, name))
                                changed(name, arg);
                }
        }
}

static int remove_all(struct fake *f, const char *id, const char *name, struct bg_err **err)
{
        if (!ownmark_id_valid(id))
                return bg_error(err, EINVAL, "fake: bad id '%s'", id);
        if (remove_vm(f, id, err) < 0)
                return -EIO;
        if (fault_hit("cleanup.mid", name, err) < 0)
                return -EIO;
        _cleanup_free_ char *dir = disk_dir(f, id);
        return rm_rf(dir, err);
}

static int fake_cleanup(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        POINT("cleanup", "before", vm);
        if (remove_all(F(d), vm->id, vm->name, err) < 0)
                return bg_error_wrap(err, "fake cleanup");
        json_object_clear(vm->handles);
        POINT("cleanup", "after", vm);
        return 0;
}

static int fake_list_owned(struct driver *d, char ***ids, size_t *n, struct bg_err **err)
{
        struct fake *f = F(d);
        struct id_set set;
        id_set_init(&set);
        int r = id_set_scan_dir(&set, f->disk_root, "");
        if (r == 0)
                r = id_set_scan_dir(&set, f->vm_root, ".vm");
        if (r == 0)
                r = id_set_scan_dir(&set, f->vm_root, ".vm.tmp");   /* a start cut short by a crash */
        id_set_take(&set, ids, n);
        if (r < 0)
                return bg_error(err, -r, "fake: list owned objects: %s", strerror(-r));
        return 0;
}

static int fake_remove_owned(struct driver *d, const char *id, struct bg_err **err)
{
        return remove_all(F(d), id, NULL, err);
}

static const char *fake_hypervisor(struct driver *d)
{
        (void)d;
        return "fake";
}

static void free_fvm(const char *k, void *v, void *arg)
{
        (void)k;
        (void)arg;
        free(v);
}

static void fake_free(struct driver *d)
{
        struct fake *f = F(d);
        if (!f)
                return;
        free(f->disk_root);
        free(f->vm_root);
        if (f->vms) {
                strmap_foreach(f->vms, free_fvm, NULL);
                strmap_free(f->vms);
        }
        if (f->ino_fd >= 0)
                close(f->ino_fd);
        pthread_mutex_destroy(&f->mu);
        free(f);
}

static const struct driver_ops fake_ops = {
        .name = "fake",
        .prepare = fake_prepare,
        .start = fake_start,
        .stop = fake_stop,
        .kill = fake_kill,
        .probe = fake_probe,
        .cleanup = fake_cleanup,
        .list_owned = fake_list_owned,
        .remove_owned = fake_remove_owned,
        .hypervisor = fake_hypervisor,
        .event_fd = fake_event_fd,
        .drain_events = fake_drain_events,
        .free = fake_free,
};

int driver_fake_new(const char *state_dir, const char *run_dir, struct driver **out, struct bg_err **err)
{
        struct fake *f = xcalloc(1, sizeof *f);
        f->base.ops = &fake_ops;
        f->disk_root = xasprintf("%s/fake", state_dir);
        f->vm_root = xasprintf("%s/fake", run_dir);
        f->vms = strmap_new();
        f->ino_fd = -1;
        pthread_mutex_init(&f->mu, NULL);
        if (mkdir_p(f->disk_root, 0700, err) < 0 || mkdir_p(f->vm_root, 0700, err) < 0)
                goto fail;
        f->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (f->ino_fd < 0 || inotify_add_watch(f->ino_fd, f->vm_root, IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE |
                                                                          IN_MOVED_FROM | IN_ONLYDIR) < 0) {
                bg_error(err, errno, "inotify on '%s': %s", f->vm_root, strerror(errno));
                goto fail;
        }
        /* Adopt what runs: VMs outlive the daemon. */
        struct id_set set;
        char **found;
        size_t n_found;
        id_set_init(&set);
        id_set_scan_dir(&set, f->vm_root, ".vm");
        id_set_take(&set, &found, &n_found);
        for (size_t i = 0; i < n_found; i++) {
                char name[64];
                refresh(f, found[i], name);
                free(found[i]);
        }
        free(found);
        *out = &f->base;
        return 0;
fail:
        fake_free(&f->base);
        return bg_error_wrap(err, "fake driver");
}
