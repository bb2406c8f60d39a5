/* spawn: see spawn.h.  posix_spawn with explicit file actions, so the
 * child sees exactly stdin (/dev/null), stdout and stderr; every other fd
 * of ours is O_CLOEXEC. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

extern char **environ;

#define OUT_MAX (4u << 20)
#define TAIL_KEEP 8192
#define FALLBACK_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
        interrupted = sig;
}

void spawn_trap_signals(void)
{
        struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: poll() wakes up */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
}

bool spawn_interrupted(void)
{
        return interrupted != 0;
}

static bool is_exec(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *spawn_which(const char *name)
{
        if (strchr(name, '/'))
                return is_exec(name) ? xstrdup(name) : NULL;
        const char *env = getenv("PATH");
        _cleanup_free_ char *search = xasprintf("%s:%s", env && *env ? env : "", FALLBACK_PATH);
        char *save = NULL;
        for (char *d = strtok_r(search, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                if (!*d)
                        continue;
                char *p = xasprintf("%s/%s", d, name);
                if (is_exec(p))
                        return p;
                free(p);
        }
        return NULL;
}

/* environ with LC_ALL=C, no LANGUAGE, and the sbin folders on PATH (the
 * tools call chroot, mkfs and friends).  The strings are ours to free. */
static char **child_env(void)
{
        size_t n = 0;
        while (environ[n])
                n++;
        char **env = xcalloc(n + 3, sizeof *env);
        size_t k = 0;
        const char *path = getenv("PATH");
        for (size_t i = 0; i < n; i++) {
                if (str_has_prefix(environ[i], "LC_ALL=") || str_has_prefix(environ[i], "LANGUAGE=") ||
                    str_has_prefix(environ[i], "PATH="))
                        continue;
                env[k++] = xstrdup(environ[i]);
        }
        env[k++] = xstrdup("LC_ALL=C");
        env[k++] = path && *path ? xasprintf("PATH=%s:" FALLBACK_PATH, path) : xstrdup("PATH=" FALLBACK_PATH);
        env[k] = NULL;
        return env;
}

static void free_env(char **env)
{
        for (size_t i = 0; env && env[i]; i++)
                free(env[i]);
        free(env);
}

/* The line of the child's stderr worth showing: the last "E: " line (apt
 * puts warnings after its errors), else the last non-empty one. */
static char *last_error_line(const char *tail)
{
        const char *best = NULL, *best_end = NULL, *last = NULL, *last_end = NULL;
        for (const char *p = tail; *p;) {
                const char *e = strchr(p, '\n');
                if (!e)
                        e = p + strlen(p);
                const char *s = p;
                while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
                        s++;
                const char *t = e;
                while (t > s && (t[-1] == ' ' || t[-1] == '\r'))
                        t--;
                if (t > s) {
                        last = s;
                        last_end = t;
                        if (str_has_prefix(s, "E: ")) {
                                best = s;
                                best_end = t;
                        }
                }
                p = *e ? e + 1 : e;
        }
        if (!best) {
                best = last;
                best_end = last_end;
        }
        if (!best)
                return NULL;
        size_t len = (size_t)(best_end - best);
        return xstrndup(best, len > 300 ? 300 : len);
}

struct buf {
        char *data;
        size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
        if (b->len + n + 1 > b->cap) {
                b->cap = (b->len + n + 1) * 2;
                b->data = xrealloc(b->data, b->cap);
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
}

/* Read the child's pipes until both reach EOF.  stdout goes to *out (up
 * to OUT_MAX, the rest is drained), stderr's tail to *tail. */
static void pump(pid_t pid, int out_fd, int err_fd, bool show, struct buf *out, struct buf *tail, bool *too_big)
{
        bool forwarded = false;
        while (out_fd >= 0 || err_fd >= 0) {
                if (interrupted && !forwarded) {
                        kill(pid, SIGTERM);
                        forwarded = true;
                }
                struct pollfd p[2] = { { .fd = out_fd, .events = POLLIN }, { .fd = err_fd, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                char chunk[16384];
                if (out_fd >= 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                        ssize_t n = read(out_fd, chunk, sizeof chunk);
                        if (n <= 0 && !(n < 0 && errno == EINTR)) {
                                close(out_fd);
                                out_fd = -1;
                        } else if (n > 0) {
                                if (out->len + (size_t)n <= OUT_MAX)
                                        buf_add(out, chunk, (size_t)n);
                                else
                                        *too_big = true;
                        }
                }
                if (err_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                        ssize_t n = read(err_fd, chunk, sizeof chunk);
                        if (n <= 0 && !(n < 0 && errno == EINTR)) {
                                close(err_fd);
                                err_fd = -1;
                        } else if (n > 0) {
                                if (show && write(STDERR_FILENO, chunk, (size_t)n) < 0) {
                                        /* our stderr is gone; keep the tail anyway */
                                }
                                buf_add(tail, chunk, (size_t)n);
                                if (tail->len > 2 * TAIL_KEEP) {
                                        memmove(tail->data, tail->data + tail->len - TAIL_KEEP, TAIL_KEEP + 1);
                                        tail->len = TAIL_KEEP;
                                }
                        }
                }
        }
        if (out_fd >= 0)
                close(out_fd);
        if (err_fd >= 0)
                close(err_fd);
}

int spawn_run(char *const argv[], const struct spawn_opts *o, char **out, struct bg_err **err)
{
        static const struct spawn_opts defaults = { .out = SPAWN_OUT_NULL };
        if (!o)
                o = &defaults;
        const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        if (interrupted)
                return bg_error(err, EINTR, "interrupted");
        _cleanup_free_ char *path = spawn_which(argv[0]);
        if (!path)
                return bg_error(err, ENOENT, "%s: command not found", argv[0]);

        int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
        if ((o->out == SPAWN_OUT_CAPTURE && pipe2(outp, O_CLOEXEC) < 0) || pipe2(errp, O_CLOEXEC) < 0) {
                int e = errno;
                if (outp[0] >= 0) {
                        close(outp[0]);
                        close(outp[1]);
                }
                return bg_error(err, e, "pipe: %s", strerror(e));
        }

        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        sigset_t dfl;   /* what we catch or ignore: the child starts with the defaults */
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGINT);
        sigaddset(&dfl, SIGTERM);
        sigaddset(&dfl, SIGHUP);
        sigaddset(&dfl, SIGPIPE);
        sigaddset(&dfl, SIGCHLD);
        posix_spawnattr_setsigdefault(&attr, &dfl);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (o->out == SPAWN_OUT_CAPTURE)
                posix_spawn_file_actions_adddup2(&fa, outp[1], STDOUT_FILENO);
        else if (o->out == SPAWN_OUT_STDERR)
                posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
        else
                posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO);
        if (o->cwd)
                posix_spawn_file_actions_addchdir_np(&fa, o->cwd);

        char **env = child_env();
        pid_t pid;
        int rc = posix_spawn(&pid, path, &fa, &attr, argv, env);
        free_env(env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (outp[1] >= 0)
                close(outp[1]);
        close(errp[1]);
        if (rc != 0) {
                if (outp[0] >= 0)
                        close(outp[0]);
                close(errp[0]);
                return bg_error(err, rc, "%s: cannot run %s: %s", base, path, strerror(rc));
        }

        struct buf obuf = { 0 }, tail = { 0 };
        bool too_big = false;
        buf_add(&obuf, "", 0);
        buf_add(&tail, "", 0);
        pump(pid, outp[0], errp[0], o->show_stderr, &obuf, &tail, &too_big);

        int status;
        while (waitpid(pid, &status, 0) < 0) {
                if (errno != EINTR) {
                        status = -1;
                        break;
                }
                if (interrupted)
                        kill(pid, SIGTERM);
        }
        _cleanup_free_ char *why = last_error_line(tail.data);
        free(tail.data);
        int r = 0;
        if (interrupted)
                r = bg_error(err, EINTR, "interrupted");
        else if (status == -1)
                r = bg_error(err, ECHILD, "%s: lost track of the process", base);
        else if (WIFSIGNALED(status))
                r = bg_error(err, EIO, "%s: killed by signal %d%s%s", base, WTERMSIG(status), why ? ": " : "",
                             why ? why : "");
        else if (WEXITSTATUS(status) != 0)
                r = bg_error(err, EIO, "%s: exited with status %d%s%s", base, WEXITSTATUS(status), why ? ": " : "",
                             why ? why : "");
        else if (too_big)
                r = bg_error(err, EFBIG, "%s: output larger than %u bytes", base, OUT_MAX);
        if (r == 0 && out && o->out == SPAWN_OUT_CAPTURE)
                *out = steal_pointer(&obuf.data);
        free(obuf.data);
        return r;
}
