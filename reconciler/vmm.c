/* vmm: see vmm.h.
 *
 * Children are forked, not posix_spawn'ed, because the daemon must learn
 * the pid (and persist it) before the VMM runs: the child blocks on a
 * release pipe between fork and exec.  Between fork and exec the child of
 * this multi-threaded daemon calls only async-signal-safe functions;
 * everything it needs (the resolved path, the log fd) is made before the
 * fork.  A second pipe, close-on-exec, reports a failed exec: reading it
 * returns 0 bytes once the exec succeeded.
 *
 * Processes are tracked by pidfd.  For our own children waitid(P_PIDFD)
 * gives the exit status; for adopted ones the pidfd only turns readable on
 * exit and the status is unknown (-1).
 */
#include "vmm.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "strmap.h"
#include "util.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

struct vproc {
        char *id;
        pid_t pid;
        uint64_t start_time;
        int pidfd;           /* -1 once exited */
        int release_fd;      /* write end of the release pipe while HELD */
        int exec_err_fd;     /* read end of the exec error pipe while HELD */
        enum vmm_state state;
        int status;
        bool child;          /* ours: waitid works */
        bool in_epoll;
};

struct vmm {
        pthread_mutex_t mu;
        struct strmap *procs;   /* id -> struct vproc* */
        struct strmap *labels;  /* id -> heap label (vmm_label) */
        int ep;
};

static void close_fd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

int vmm_new(struct vmm **out, struct bg_err **err)
{
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return bg_error(err, errno, "epoll_create1: %s", strerror(errno));
        struct vmm *m = xcalloc(1, sizeof *m);
        pthread_mutex_init(&m->mu, NULL);
        m->procs = strmap_new();
        m->labels = strmap_new();
        m->ep = ep;
        *out = m;
        return 0;
}

static void proc_free(struct vproc *p)
{
        close_fd(&p->pidfd);
        close_fd(&p->release_fd);
        close_fd(&p->exec_err_fd);
        free(p->id);
        free(p);
}

static void free_cb(const char *k, void *v, void *arg)
{
        (void)k;
        (void)arg;
        proc_free(v);
}

static void free_label(const char *k, void *v, void *arg)
{
        (void)k;
        (void)arg;
        free(v);
}

void vmm_label(struct vmm *m, const char *id, const char *label)
{
        pthread_mutex_lock(&m->mu);
        if (!label || !*label) {
                free(strmap_del(m->labels, id));
                pthread_mutex_unlock(&m->mu);
                return;
        }
        const char *old = strmap_get(m->labels, id);
        if (!old || strcmp(old, label) != 0)
                free(strmap_put(m->labels, id, xstrdup(label)));
        pthread_mutex_unlock(&m->mu);
}

void vmm_free(struct vmm *m)
{
        if (!m)
                return;
        /* A child still held never runs: closing its release pipe ends it. */
        strmap_foreach(m->procs, free_cb, NULL);
        strmap_free(m->procs);
        strmap_foreach(m->labels, free_label, NULL);
        strmap_free(m->labels);
        close(m->ep);
        pthread_mutex_destroy(&m->mu);
        free(m);
}

int vmm_event_fd(const struct vmm *m)
{
        return m->ep;
}

static void epoll_drop(struct vmm *m, struct vproc *p)
{
        if (p->in_epoll)
                epoll_ctl(m->ep, EPOLL_CTL_DEL, p->pidfd, NULL);
        p->in_epoll = false;
}

/* Non-blocking: turn p EXITED when its process has ended.  mu held. */
static bool reap(struct vmm *m, struct vproc *p)
{
        if (p->state != VMM_RUNNING && p->state != VMM_HELD)
                return false;
        if (p->pidfd < 0)
                return false;
        int status = -1;
        if (p->child) {
                siginfo_t si;
                memset(&si, 0, sizeof si);
                if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0) {
                        if (errno != ECHILD)
                                return false;
                        p->child = false;   /* reaped elsewhere: fall back to the pidfd */
                } else if (si.si_pid == 0) {
                        return false;
                } else {
                        status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
                }
        }
        if (!p->child) {
                struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
                if (poll(&pfd, 1, 0) <= 0)
                        return false;
        }
        epoll_drop(m, p);
        close_fd(&p->pidfd);
        close_fd(&p->release_fd);
        close_fd(&p->exec_err_fd);
        p->state = VMM_EXITED;
        p->status = status;
        return true;
}

struct drained {
        char **ids;
        size_t n;
        char **labels;   /* parallel to ids; NULL entries when unlabelled */
};

void vmm_drain(struct vmm *m, void (*cb)(const char *id, const char *label, void *arg), void *arg)
{
        struct drained d = { NULL, 0, NULL };
        struct epoll_event evs[64];
        pthread_mutex_lock(&m->mu);
        for (;;) {
                int n = epoll_wait(m->ep, evs, (int)ARRAY_SIZE(evs), 0);
                if (n <= 0)
                        break;
                for (int i = 0; i < n; i++) {
                        struct vproc *p = evs[i].data.ptr;
                        if (reap(m, p)) {
                                const char *label = strmap_get(m->labels, p->id);
                                d.ids = xreallocarray(d.ids, d.n + 1, sizeof *d.ids);
                                d.labels = xreallocarray(d.labels, d.n + 1, sizeof *d.labels);
                                d.labels[d.n] = label ? xstrdup(label) : NULL;
                                d.ids[d.n++] = xstrdup(p->id);
                        } else {
                                epoll_drop(m, p);   /* readable yet not reapable: never spin; probes still reap */
                        }
                }
                if (n < (int)ARRAY_SIZE(evs))
                        break;
        }
        pthread_mutex_unlock(&m->mu);
        for (size_t i = 0; i < d.n; i++) {
                if (cb)
                        cb(d.ids[i], d.labels[i], arg);
                free(d.ids[i]);
                free(d.labels[i]);
        }
        free(d.ids);
        free(d.labels);
}

/* ---- /proc ---- */

int vmm_proc_start_time(pid_t pid, uint64_t *start_time)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        _cleanup_free_ char *buf = NULL;
        if (read_file_limited(path, 4096, &buf, NULL, NULL) < 0)
                return -ESRCH;
        /* comm (field 2) may hold spaces and parentheses: count from the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EINVAL;
        p++;
        for (int field = 2; field < 22; field++) {
                p = strchr(p, ' ');
                if (!p)
                        return -EINVAL;
                p++;
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || end == p)
                return -EINVAL;
        *start_time = v;
        return 0;
}

/* pid's command line, arguments joined with spaces; NULL when unreadable
 * or empty (a zombie or a kernel thread). */
static char *proc_cmdline(pid_t pid)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        size_t cap = 65536, n = 0;
        _cleanup_free_ char *buf = xmalloc(cap + 1);
        while (n < cap) {
                ssize_t r = read(fd, buf + n, cap - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                n += (size_t)r;
        }
        if (n == 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (buf[i] == '\0')
                        buf[i] = ' ';
        while (n && buf[n - 1] == ' ')
                n--;
        buf[n] = '\0';
        return steal_pointer(&buf);
}

/* Is pidfd's process pid with this start time and a cmdline holding needle?
 * The pidfd is opened first and checked alive last, so a pid reused in
 * between cannot pass. */
static bool verify(int pidfd, pid_t pid, uint64_t start_time, const char *needle)
{
        uint64_t st;
        if (vmm_proc_start_time(pid, &st) < 0 || st != start_time)
                return false;
        _cleanup_free_ char *cmd = proc_cmdline(pid);
        if (!cmd || (needle && !strstr(cmd, needle)))
                return false;
        return pidfd_send_signal(pidfd, 0, NULL, 0) == 0;
}

int vmm_scan(const char *needle, struct vmm_found **out, size_t *n, struct bg_err **err)
{
        *out = NULL;
        *n = 0;
        DIR *d = opendir("/proc");
        if (!d)
                return bg_error(err, errno, "open /proc: %s", strerror(errno));
        pid_t self = getpid();
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!isdigit((unsigned char)de->d_name[0]))
                        continue;
                pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
                if (pid <= 0 || pid == self)
                        continue;
                char *cmd = proc_cmdline(pid);
                uint64_t st;
                if (!cmd || !strstr(cmd, needle) || vmm_proc_start_time(pid, &st) < 0) {
                        free(cmd);
                        continue;
                }
                *out = xreallocarray(*out, *n + 1, sizeof **out);
                (*out)[(*n)++] = (struct vmm_found){ pid, st, cmd };
        }
        closedir(d);
        return 0;
}

void vmm_found_free(struct vmm_found *f, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(f[i].cmdline);
        free(f);
}

static int wait_pidfd(int pidfd, int timeout_ms)
{
        int64_t end = now_mono_ms() + timeout_ms;
        for (;;) {
                struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
                int64_t left = end - now_mono_ms();
                int r = poll(&pfd, 1, left > 0 ? (int)left : 0);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r == 0 && left <= 0)
                        return -ETIMEDOUT;
        }
}

int vmm_kill_verified(pid_t pid, uint64_t start_time, const char *needle, int timeout_ms, struct bg_err **err)
{
        _cleanup_close_ int pidfd = pidfd_open(pid, 0);
        if (pidfd < 0)
                return errno == ESRCH ? 0 : bg_error(err, errno, "pidfd_open %d: %s", (int)pid, strerror(errno));
        if (!verify(pidfd, pid, start_time, needle))
                return 0;
        if (pidfd_send_signal(pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
                return bg_error(err, errno, "kill %d: %s", (int)pid, strerror(errno));
        if (wait_pidfd(pidfd, timeout_ms) < 0)
                return bg_error(err, ETIMEDOUT, "process %d still running %d ms after SIGKILL", (int)pid, timeout_ms);
        return 0;   /* a child of ours is reaped by its set, which reports its status */
}

/* ---- spawning ---- */

static bool is_exec_file(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *vmm_which(const char *name)
{
        if (strchr(name, '/'))
                return is_exec_file(name) ? xstrdup(name) : NULL;
        const char *env = getenv("PATH");
        _cleanup_free_ char *path = xasprintf("%s:/usr/sbin:/sbin:/usr/bin:/bin", env && *env ? env : "");
        char *save = NULL;
        for (char *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                char *cand = xasprintf("%s/%s", dir, name);
                if (is_exec_file(cand))
                        return cand;
                free(cand);
        }
        return NULL;
}

static void close_between(int lo, int hi, int max_fd)
{
        if (lo > hi)
                return;
        if (close_range((unsigned)lo, (unsigned)hi, 0) < 0)
                for (int fd = lo; fd <= hi && fd < max_fd; fd++)
                        close(fd);
}

/* The child between fork and exec: async-signal-safe calls only.  Every fd
 * but stdio, the two pipes and keep is closed before it blocks, so it holds
 * no other spawn's release pipe (that would hide the daemon's death). */
static __attribute__((noreturn)) void child_run(const char *path, char *const *argv, const char *cwd, int null_fd,
                                                int log_fd, int release_fd, int exec_err_fd, const int *keep,
                                                size_t n_keep, int max_fd)
{
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int s = 1; s < NSIG; s++)
                sigaction(s, &dfl, NULL);   /* ignored signals would survive exec */
        if (setsid() < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0 ||
            chdir(cwd) < 0)
                _exit(126);
        int fds[VMM_MAX_KEEP_FDS + 2];
        size_t n = 0;
        fds[n++] = release_fd;
        fds[n++] = exec_err_fd;
        for (size_t i = 0; i < n_keep && i < VMM_MAX_KEEP_FDS; i++)
                fds[n++] = keep[i];
        for (size_t i = 1; i < n; i++)   /* insertion sort: no library call */
                for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
                        int t = fds[j];
                        fds[j] = fds[j - 1];
                        fds[j - 1] = t;
                }
        int lo = 3;
        for (size_t i = 0; i < n; i++) {
                if (fds[i] < lo)
                        continue;
                close_between(lo, fds[i] - 1, max_fd);
                lo = fds[i] + 1;
        }
        if (close_range((unsigned)lo, ~0U, 0) < 0)
                for (int fd = lo; fd < max_fd; fd++)
                        close(fd);
        for (size_t i = 0; i < n_keep; i++)
                fcntl(keep[i], F_SETFD, 0);
        char c;
        ssize_t r;
        do
                r = read(release_fd, &c, 1);
        while (r < 0 && errno == EINTR);
        if (r != 1)
                _exit(127);   /* the daemon gave up or died: never run */
        execve(path, argv, environ);
        int e = errno;
        ssize_t w = write(exec_err_fd, &e, sizeof e);
        (void)w;
        _exit(127);
}

int vmm_spawn(struct vmm *m, const char *id, const struct vmm_cmd *cmd, pid_t *pid_out, uint64_t *start_time,
              struct bg_err **err)
{
        if (cmd->n_keep_fds > VMM_MAX_KEEP_FDS)
                return bg_error(err, EINVAL, "too many fds to hand over (%zu)", cmd->n_keep_fds);
        _cleanup_free_ char *path = vmm_which(cmd->argv[0]);
        if (!path)
                return bg_error(err, ENOENT, "'%s' not found", cmd->argv[0]);
        pthread_mutex_lock(&m->mu);
        struct vproc *old = strmap_get(m->procs, id);
        bool live = old && (old->state == VMM_HELD || old->state == VMM_RUNNING) && !reap(m, old);
        pthread_mutex_unlock(&m->mu);
        if (live)
                return bg_error(err, EEXIST, "a vmm for %s is already running", id);

        _cleanup_close_ int log_fd = open(cmd->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (log_fd < 0)
                return bg_error(err, errno, "open '%s': %s", cmd->log_path, strerror(errno));
        _cleanup_close_ int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0)
                return bg_error(err, errno, "open /dev/null: %s", strerror(errno));
        /* The release channel is a socket so that a send to a child that
         * died meanwhile is EPIPE (MSG_NOSIGNAL), never SIGPIPE. */
        int rel[2], xerr[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rel) < 0)
                return bg_error(err, errno, "socketpair: %s", strerror(errno));
        if (pipe2(xerr, O_CLOEXEC) < 0) {
                int e = errno;
                close(rel[0]);
                close(rel[1]);
                return bg_error(err, e, "pipe: %s", strerror(e));
        }
        struct rlimit rl;
        int max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
        pid_t pid = fork();
        if (pid == 0)
                child_run(path, (char *const *)cmd->argv, cmd->cwd ? cmd->cwd : "/", null_fd, log_fd, rel[0],
                          xerr[1], cmd->keep_fds, cmd->n_keep_fds, max_fd);
        int e = errno;
        close(rel[0]);
        close(xerr[1]);
        if (pid < 0) {
                close(rel[1]);
                close(xerr[0]);
                return bg_error(err, e, "fork: %s", strerror(e));
        }
        struct vproc *p = xcalloc(1, sizeof *p);
        p->id = xstrdup(id);
        p->pid = pid;
        p->release_fd = rel[1];
        p->exec_err_fd = xerr[0];
        p->child = true;
        p->state = VMM_HELD;
        p->status = -1;
        p->pidfd = pidfd_open(pid, 0);
        if (p->pidfd < 0 || vmm_proc_start_time(pid, &p->start_time) < 0) {
                e = p->pidfd < 0 ? errno : ESRCH;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                proc_free(p);
                return bg_error(err, e, "track child %d: %s", (int)pid, strerror(e));
        }
        pthread_mutex_lock(&m->mu);
        struct vproc *prev = strmap_put(m->procs, id, p);
        if (prev) {
                epoll_drop(m, prev);
                proc_free(prev);
        }
        pthread_mutex_unlock(&m->mu);
        *pid_out = pid;
        *start_time = p->start_time;
        return 0;
}

static void watch(struct vmm *m, struct vproc *p)
{
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = p };
        if (!p->in_epoll && p->pidfd >= 0 && epoll_ctl(m->ep, EPOLL_CTL_ADD, p->pidfd, &ev) == 0)
                p->in_epoll = true;
}

/* Kill a held child and forget it.  mu held. */
static void drop_locked(struct vmm *m, struct vproc *p)
{
        if (p->state == VMM_HELD && p->pidfd >= 0) {
                close_fd(&p->release_fd);   /* the child reads EOF and exits 127 */
                siginfo_t si;
                waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED);
        } else if (p->child && p->pidfd >= 0) {
                siginfo_t si;
                waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG);
        }
        epoll_drop(m, p);
        strmap_del(m->procs, p->id);
        proc_free(p);
}

int vmm_release(struct vmm *m, const char *id, struct bg_err **err)
{
        pthread_mutex_lock(&m->mu);
        struct vproc *p = strmap_get(m->procs, id);
        if (!p || p->state != VMM_HELD) {
                pthread_mutex_unlock(&m->mu);
                return bg_error(err, ESRCH, "no held vmm for %s", id);
        }
        int rfd = p->release_fd, xfd = p->exec_err_fd;
        p->release_fd = p->exec_err_fd = -1;
        pthread_mutex_unlock(&m->mu);

        ssize_t w = send(rfd, "g", 1, MSG_NOSIGNAL);
        close(rfd);
        int code = 0;
        ssize_t r;
        do
                r = read(xfd, &code, sizeof code);   /* 0 bytes: exec happened */
        while (r < 0 && errno == EINTR);
        close(xfd);

        pthread_mutex_lock(&m->mu);
        p = strmap_get(m->procs, id);
        if (p && (w != 1 || r != 0)) {
                int status = -1;
                siginfo_t si;
                memset(&si, 0, sizeof si);
                if (p->pidfd >= 0 && waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED) == 0)
                        status = si.si_status;
                epoll_drop(m, p);
                strmap_del(m->procs, id);
                proc_free(p);
                pthread_mutex_unlock(&m->mu);
                if (r == (ssize_t)sizeof code)
                        return bg_error(err, code, "exec: %s", strerror(code));
                return bg_error(err, ECHILD, "vmm child ended before exec (status %d)", status);
        }
        if (p) {
                p->state = VMM_RUNNING;
                watch(m, p);
        }
        pthread_mutex_unlock(&m->mu);
        return 0;
}

int vmm_adopt(struct vmm *m, const char *id, pid_t pid, uint64_t start_time, const char *needle,
              struct bg_err **err)
{
        if (pid <= 0)
                return bg_error(err, ESRCH, "no process to adopt for %s", id);
        int pidfd = pidfd_open(pid, 0);
        if (pidfd < 0)
                return bg_error(err, ESRCH, "process %d for %s is gone", (int)pid, id);
        if (!verify(pidfd, pid, start_time, needle)) {
                close(pidfd);
                return bg_error(err, ESRCH, "process %d is not %s's vmm (start time or command line differ)",
                                (int)pid, id);
        }
        pthread_mutex_lock(&m->mu);
        struct vproc *old = strmap_get(m->procs, id);
        if (old && (old->state == VMM_RUNNING || old->state == VMM_HELD) && !reap(m, old)) {
                bool same = old->pid == pid;
                pthread_mutex_unlock(&m->mu);
                close(pidfd);
                return same ? 0 : bg_error(err, EEXIST, "%s already has vmm %d", id, (int)old->pid);
        }
        if (old)
                drop_locked(m, old);
        struct vproc *p = xcalloc(1, sizeof *p);
        p->id = xstrdup(id);
        p->pid = pid;
        p->start_time = start_time;
        p->pidfd = pidfd;
        p->release_fd = p->exec_err_fd = -1;
        p->state = VMM_RUNNING;
        p->status = -1;
        p->child = false;
        strmap_put(m->procs, id, p);
        watch(m, p);
        pthread_mutex_unlock(&m->mu);
        return 0;
}

void vmm_mark_exited(struct vmm *m, const char *id)
{
        pthread_mutex_lock(&m->mu);
        struct vproc *p = strmap_get(m->procs, id);
        if (!p) {
                p = xcalloc(1, sizeof *p);
                p->id = xstrdup(id);
                p->pidfd = p->release_fd = p->exec_err_fd = -1;
                strmap_put(m->procs, id, p);
        }
        if (p->state != VMM_EXITED) {
                epoll_drop(m, p);
                close_fd(&p->pidfd);
                p->state = VMM_EXITED;
                p->status = -1;
        }
        pthread_mutex_unlock(&m->mu);
}

enum vmm_state vmm_state(struct vmm *m, const char *id, int *status)
{
        pthread_mutex_lock(&m->mu);
        struct vproc *p = strmap_get(m->procs, id);
        enum vmm_state s = VMM_NONE;
        int st = -1;
        if (p) {
                reap(m, p);
                s = p->state;
                st = p->status;
        }
        pthread_mutex_unlock(&m->mu);
        if (status)
                *status = st;
        return s;
}

pid_t vmm_pid(struct vmm *m, const char *id)
{
        pthread_mutex_lock(&m->mu);
        struct vproc *p = strmap_get(m->procs, id);
        pid_t pid = p ? p->pid : 0;
        pthread_mutex_unlock(&m->mu);
        return pid;
}

/* A dup of id's live pidfd (caller closes), or -1. */
static int live_pidfd(struct vmm *m, const char *id)
{
        pthread_mutex_lock(&m->mu);
        struct vproc *p = strmap_get(m->procs, id);
        int fd = -1;
        if (p && p->pidfd >= 0 && !reap(m, p))
                fd = fcntl(p->pidfd, F_DUPFD_CLOEXEC, 3);
        pthread_mutex_unlock(&m->mu);
        return fd;
}

int vmm_signal(struct vmm *m, const char *id, int sig, struct bg_err **err)
{
        _cleanup_close_ int fd = live_pidfd(m, id);
        if (fd < 0)
                return bg_error(err, ESRCH, "no running vmm for %s", id);
        if (pidfd_send_signal(fd, sig, NULL, 0) < 0 && errno != ESRCH)
                return bg_error(err, errno, "signal %d to vmm of %s: %s", sig, id, strerror(errno));
        return 0;
}

int vmm_wait(struct vmm *m, const char *id, int timeout_ms)
{
        _cleanup_close_ int fd = live_pidfd(m, id);
        if (fd >= 0 && wait_pidfd(fd, timeout_ms) < 0)
                return -ETIMEDOUT;
        vmm_state(m, id, NULL);   /* reap */
        return 0;
}

void vmm_forget(struct vmm *m, const char *id)
{
        pthread_mutex_lock(&m->mu);
        struct vproc *p = strmap_get(m->procs, id);
        if (p)
                drop_locked(m, p);
        pthread_mutex_unlock(&m->mu);
}

/* ---- short tools ---- */

int vmm_run_tool(const char *const *argv, int timeout_ms, char **output, int *status, struct bg_err **err)
{
        if (output)
                *output = NULL;
        if (status)
                *status = -1;
        _cleanup_free_ char *path = vmm_which(argv[0]);
        if (!path)
                return bg_error(err, ENOENT, "'%s' not found", argv[0]);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return bg_error(err, errno, "pipe: %s", strerror(errno));
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        posix_spawnattr_init(&at);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &all);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        pid_t pid;
        int r = posix_spawn(&pid, path, &fa, &at, (char *const *)argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        close(pfd[1]);
        if (r != 0) {
                close(pfd[0]);
                return bg_error(err, r, "run '%s': %s", path, strerror(r));
        }
        /* Keep the last 4 KiB of output: enough for the error at the end. */
        enum { KEEP = 4096 };
        char buf[2 * KEEP + 1];
        size_t n = 0;
        bool timed_out = false;
        int64_t end = timeout_ms > 0 ? now_mono_ms() + timeout_ms : INT64_MAX;
        for (;;) {
                int wait = -1;
                if (timed_out)
                        wait = 2000;   /* killed: give its output a moment to end */
                else if (timeout_ms > 0) {
                        int64_t left = end - now_mono_ms();
                        wait = left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
                }
                struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
                int pr = poll(&pf, 1, wait);
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr < 0 || (pr == 0 && timed_out))
                        break;   /* something it left behind holds the pipe */
                if (pr == 0) {
                        if (now_mono_ms() >= end) {
                                timed_out = true;
                                kill(pid, SIGKILL);
                        }
                        continue;
                }
                if (n + KEEP > sizeof buf - 1) {
                        memmove(buf, buf + n - KEEP, KEEP);
                        n = KEEP;
                }
                ssize_t got = read(pfd[0], buf + n, sizeof buf - 1 - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        break;
                n += (size_t)got;
        }
        close(pfd[0]);
        int ws = 0;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                ;
        buf[n] = '\0';
        const char *tail = n > KEEP ? buf + n - KEEP : buf;
        int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        if (status)
                *status = code;
        if (output)
                *output = xstrdup(tail);
        if (timed_out)
                return bg_error(err, ETIMEDOUT, "%s: still running after %d ms", argv[0], timeout_ms);
        if (code != 0) {
                size_t len = strlen(tail);
                while (len && (tail[len - 1] == '\n' || tail[len - 1] == ' '))
                        len--;
                const char *last = tail + len;   /* at most the last 3 lines */
                for (int lines = 0; last > tail && lines < 3; last--)
                        if (last[-1] == '\n')
                                lines++;
                while (*last == '\n')
                        last++;
                return bg_error(err, EIO, "%s exited with status %d: %.*s", argv[0], code,
                                (int)(len - (size_t)(last - tail)), last);
        }
        return 0;
}
