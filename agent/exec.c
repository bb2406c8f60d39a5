/* exec: processes the host asked for, with their stdio streamed as frames.
 *
 * Flow control is by credit in both directions, so neither side's memory
 * grows with a fast producer: the host grants output bytes (EXEC's WINDOW,
 * then WINDOW frames) and the agent reads a process's pipes only while it
 * has credit; the agent grants stdin bytes (STDIN_WINDOW, refilled as the
 * process reads them).  A process's exit is reported once its output has
 * drained, or after 200 ms in which the pipes could be read (credit and
 * room towards the host) but did not end: something the process left
 * behind keeps them open.  Time spent waiting for credit does not count,
 * so a slow reader never loses output.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

#define EXIT_GRACE_US 200000u
#define CREDIT_MAX (64ull << 20)

struct sess {
        bool used;
        uint64_t id;
        struct conn *c;          /* NULL: its connection is gone, only reaping is left */
        pid_t pid;
        int in_fd, out_fd, err_fd;
        bool tty;
        struct bytes inq;
        bool in_eof;
        uint8_t in_last;         /* the last stdin byte queued ('\n' before any): a TTY's EOF needs a line start */
        uint64_t in_done;        /* stdin bytes written and not yet granted back */
        uint64_t credit;
        bool exited;
        int status;
        uint64_t grace_left;     /* after the exit: us of readable pipes left before EXIT regardless */
        uint64_t room_since;     /* uptime since the pipes could be read, 0: they cannot now */
};

static struct sess sessions[MAX_SESSIONS];
uint64_t exec_started_total;
uint64_t exec_last_activity_us;

static void closefd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void fail(struct conn *c, uint64_t id, int e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(struct conn *c, uint64_t id, int e, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        struct agp_out *o = frame(AGP_ERROR, id);
        agp_put_u64(o, AGT_ERRNO, (uint64_t)e);
        agp_put_str(o, AGT_MSG, msg);
        conn_send(c, o);
}

static struct sess *find(struct conn *c, uint64_t id)
{
        for (size_t i = 0; i < MAX_SESSIONS; i++)
                if (sessions[i].used && sessions[i].c == c && sessions[i].id == id)
                        return &sessions[i];
        return NULL;
}

size_t exec_count(void)
{
        size_t n = 0;
        for (size_t i = 0; i < MAX_SESSIONS; i++)
                n += sessions[i].used && sessions[i].c;
        return n;
}

static void sess_free(struct sess *s)
{
        closefd(&s->in_fd);
        closefd(&s->out_fd);
        closefd(&s->err_fd);
        bytes_free(&s->inq);
        memset(s, 0, sizeof *s);
}

/* The request's strings, checked: argv (1..AGP_MAX_ARGS), env NAME=VALUE. */
struct req {
        char *argv[AGP_MAX_ARGS + 1];
        char *env[AGP_MAX_ARGS + 16];
        size_t argc, envc;
        char cwd[AGP_MAX_STR];
        bool tty;
        uint64_t rows, cols, window;
};

static void req_free(struct req *r)
{
        for (size_t i = 0; i < r->argc; i++)
                free(r->argv[i]);
        for (size_t i = 0; i < r->envc; i++)
                free(r->env[i]);
}

static char *str_dup_checked(const uint8_t *v, size_t n)
{
        if (n >= AGP_MAX_STR || memchr(v, '\0', n))
                return NULL;
        char *s = malloc(n + 1);
        if (!s)
                abort();
        memcpy(s, v, n);
        s[n] = '\0';
        return s;
}

static void env_set(struct req *r, char *kv)
{
        size_t klen = strcspn(kv, "=");
        for (size_t i = 0; i < r->envc; i++) {
                if (strncmp(r->env[i], kv, klen + 1) == 0) {
                        free(r->env[i]);
                        r->env[i] = kv;
                        return;
                }
        }
        r->env[r->envc++] = kv;
}

static const char *req_parse(const struct agp_msg *m, struct req *r)
{
        size_t pos = 0, n;
        uint8_t tag;
        const uint8_t *v;
        static const char *const defaults[] = {
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "USER=root",
                "LOGNAME=root", "SHELL=/bin/sh",
        };
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
                r->env[r->envc++] = strdup(defaults[i]);
        snprintf(r->cwd, sizeof r->cwd, "%s", access("/root", X_OK) == 0 ? "/root" : "/");
        r->window = 65536;
        while (agp_next(m, &pos, &tag, &v, &n)) {
                if (tag == AGT_ARG) {
                        if (r->argc == AGP_MAX_ARGS)
                                return "too many arguments";
                        if (!(r->argv[r->argc] = str_dup_checked(v, n)))
                                return "bad argument";
                        r->argc++;
                } else if (tag == AGT_ENV) {
                        if (r->envc >= AGP_MAX_ARGS)
                                return "too many environment entries";
                        char *kv = str_dup_checked(v, n);
                        if (!kv || !strchr(kv, '=') || kv[0] == '=') {
                                free(kv);
                                return "bad environment entry (want NAME=VALUE)";
                        }
                        env_set(r, kv);
                } else if (tag == AGT_CWD) {
                        if (agp_str_of(v, n, r->cwd, sizeof r->cwd) < 0 || r->cwd[0] != '/')
                                return "bad working directory (want an absolute path)";
                }
        }
        uint64_t t = 0;
        agp_get_u64(m, AGT_TTY, &t);
        r->tty = t == 1;
        agp_get_u64(m, AGT_ROWS, &r->rows);
        agp_get_u64(m, AGT_COLS, &r->cols);
        agp_get_u64(m, AGT_WINDOW, &r->window);
        if (r->window > CREDIT_MAX)
                r->window = CREDIT_MAX;
        if (r->rows > 1000 || r->cols > 1000)
                return "bad terminal size";
        if (r->argc == 0)
                return "no command";
        if (r->tty) {
                bool has_term = false;
                for (size_t i = 0; i < r->envc; i++)
                        has_term = has_term || strncmp(r->env[i], "TERM=", 5) == 0;
                if (!has_term)
                        r->env[r->envc++] = strdup("TERM=xterm-256color");
        }
        r->argv[r->argc] = NULL;
        r->env[r->envc] = NULL;
        return NULL;
}

/* In the child: never returns.  Writes errno to errfd when exec fails. */
static void child(struct req *r, int in, int out, int err, int slave, int errfd)
{
        extern char **environ;
        setsid();
        if (slave >= 0) {
                ioctl(slave, TIOCSCTTY, 0);
                in = out = err = slave;
        }
        int info[2] = { 0, 0 };   /* what failed, errno */
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                goto fail;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        info[0] = 1;
        if (chdir(r->cwd) < 0)
                goto fail;
        info[0] = 2;
        environ = r->env;
        execvp(r->argv[0], r->argv);
fail:
        info[1] = errno;
        if (write(errfd, info, sizeof info) < 0)
                _exit(126);
        _exit(127);
}

/* Without a terminal: posix_spawn, which glibc does with CLONE_VFORK on a
 * stack of its own, so the agent's page tables are not copied for a
 * process that execs at once.  Under TCG that copy is most of what a
 * fork costs.  0 or an errno; *what says which step failed. */
static int spawn_plain(struct req *r, int in, int out, int err, pid_t *pid, int *what)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        sigset_t none, dfl;
        sigemptyset(&none);
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGPIPE);   /* the agent ignores it; the command must not inherit that */
        int rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (!rc)
                rc = posix_spawnattr_setsigmask(&at, &none);
        if (!rc)
                rc = posix_spawnattr_setsigdefault(&at, &dfl);
        if (!rc)
                rc = posix_spawn_file_actions_adddup2(&fa, in, 0);
        if (!rc)
                rc = posix_spawn_file_actions_adddup2(&fa, out, 1);
        if (!rc)
                rc = posix_spawn_file_actions_adddup2(&fa, err, 2);
        if (!rc)
                rc = posix_spawn_file_actions_addchdir_np(&fa, r->cwd);
        *what = 0;
        if (!rc) {
                rc = posix_spawnp(pid, r->argv[0], &fa, &at, r->argv, r->env);
                /* The error does not say whether the chdir or the exec
                 * failed: a working directory we cannot enter is the chdir. */
                struct stat st;
                *what = rc && (stat(r->cwd, &st) < 0 || !S_ISDIR(st.st_mode) || access(r->cwd, X_OK) < 0) ? 1 : 2;
        }
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        return rc;
}

void exec_start(struct conn *c, const struct agp_msg *m)
{
        uint64_t id = 0;
        if (agp_get_u64(m, AGT_ID, &id) < 0 || id == 0)
        {
                fail(c, 0, EPROTO, "exec without an id");
                return;
        }
        if (find(c, id))
        {
                fail(c, id, EEXIST, "exec id %llu is in use", (unsigned long long)id);
                return;
        }
        struct sess *s = NULL;
        for (size_t i = 0; i < MAX_SESSIONS && !s; i++)
                if (!sessions[i].used)
                        s = &sessions[i];
        if (!s)
        {
                fail(c, id, EAGAIN, "too many processes running (at most %d)", MAX_SESSIONS);
                return;
        }
        struct req *r = calloc(1, sizeof *r);
        if (!r)
                abort();
        const char *bad = req_parse(m, r);
        if (bad) {
                fail(c, id, EINVAL, "%s", bad);
                req_free(r);
                free(r);
                return;
        }
        int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, pex[2] = { -1, -1 };
        int master = -1, slave = -1;
        int rc = pipe2(pex, O_CLOEXEC);
        if (rc == 0 && r->tty) {
                struct winsize ws = { .ws_row = (unsigned short)(r->rows ? r->rows : 24),
                                      .ws_col = (unsigned short)(r->cols ? r->cols : 80) };
                rc = openpty(&master, &slave, NULL, NULL, &ws);
                if (rc == 0) {
                        fcntl(master, F_SETFD, FD_CLOEXEC);
                        fcntl(slave, F_SETFD, FD_CLOEXEC);
                }
        } else if (rc == 0) {
                rc = pipe2(pin, O_CLOEXEC) | pipe2(pout, O_CLOEXEC) | pipe2(perr, O_CLOEXEC);
        }
        static const char *const what[] = { "set up stdio for", "cd to the working directory of", "exec" };
        pid_t pid = -1;
        int e = errno;
        if (rc == 0 && !r->tty) {
                int step;
                int se = spawn_plain(r, pin[0], pout[1], perr[1], &pid, &step);
                if (se) {
                        fail(c, id, se, "%s '%s': %s", what[step], step == 1 ? r->cwd : r->argv[0], strerror(se));
                        closefd(&pin[0]);
                        closefd(&pout[1]);
                        closefd(&perr[1]);
                        goto out_close;
                }
        } else if (rc == 0) {
                pid = fork();
                if (pid == 0)
                        child(r, pin[0], pout[1], perr[1], slave, pex[1]);
                e = errno;
        }
        closefd(&pin[0]);
        closefd(&pout[1]);
        closefd(&perr[1]);
        closefd(&slave);
        closefd(&pex[1]);
        if (pid < 0) {
                fail(c, id, e, "cannot start a process: %s", strerror(e));
                goto out_close;
        }
        int info[2] = { 0, 0 };
        ssize_t got = 0;
        do
                got = r->tty ? read(pex[0], info, sizeof info) : 0;   /* posix_spawn reported already */
        while (got < 0 && errno == EINTR);
        if (got == (ssize_t)sizeof info) {
                waitpid(pid, NULL, 0);
                fail(c, id, info[1], "%s '%s': %s", what[info[0] >= 0 && info[0] <= 2 ? info[0] : 2],
                     info[0] == 1 ? r->cwd : r->argv[0], strerror(info[1]));
                goto out_close;
        }
        memset(s, 0, sizeof *s);
        s->used = true;
        s->id = id;
        s->c = c;
        s->pid = pid;
        s->tty = r->tty;
        s->credit = r->window;
        s->in_last = '\n';
        if (r->tty) {
                /* F_DUPFD_CLOEXEC: a plain dup() would hand the master to
                 * every process started later. */
                s->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
                s->out_fd = master;
                s->err_fd = -1;
                master = -1;
        } else {
                s->in_fd = pin[1];
                s->out_fd = pout[0];
                s->err_fd = perr[0];
                pin[1] = pout[0] = perr[0] = -1;
        }
        fcntl(s->in_fd, F_SETFL, O_NONBLOCK);
        fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
        if (s->err_fd >= 0)
                fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
        exec_started_total++;
        exec_last_activity_us = uptime_us();
        struct agp_out *o = frame(AGP_STARTED, id);
        agp_put_u64(o, AGT_PID, (uint64_t)pid);
        conn_send(c, o);
        o = frame(AGP_WINDOW, id);
        agp_put_u64(o, AGT_N, STDIN_WINDOW);
        conn_send(c, o);
out_close:
        closefd(&pex[0]);
        closefd(&pin[1]);
        closefd(&pout[0]);
        closefd(&perr[0]);
        closefd(&master);
        req_free(r);
        free(r);
}

/* A terminal has no end of input to close: the host's EOF becomes the
 * terminal's EOF character, after what is queued.  In canonical mode it
 * ends a read at a line start with 0 bytes (what a reader sees as the end);
 * after a partial line the first one only hands the line over, so it goes
 * twice.  Without ICANON (the process made the terminal raw) there is no
 * such thing and nothing is sent. */
static void tty_eof(struct sess *s)
{
        struct termios t;
        int master = s->out_fd >= 0 ? s->out_fd : s->in_fd;
        if (s->in_fd < 0 || master < 0 || tcgetattr(master, &t) < 0 || !(t.c_lflag & ICANON) ||
            t.c_cc[VEOF] == _POSIX_VDISABLE)
                return;
        uint8_t eof[2] = { t.c_cc[VEOF], t.c_cc[VEOF] };
        bool line_start = s->in_last == '\n' || s->in_last == t.c_cc[VEOF] ||
                          (t.c_cc[VEOL] != _POSIX_VDISABLE && s->in_last == t.c_cc[VEOL]);
        bytes_add(&s->inq, eof, line_start ? 1 : 2);
        s->in_last = t.c_cc[VEOF];
}

void exec_input(struct conn *c, const struct agp_msg *m)
{
        uint64_t id = 0, v = 0;
        agp_get_u64(m, AGT_ID, &id);
        struct sess *s = find(c, id);
        if (!s)
                return;   /* a session that just ended: not an error */
        switch (m->type) {
        case AGP_STDIN: {
                const uint8_t *d;
                size_t n;
                if (agp_get_bytes(m, AGT_DATA, &d, &n) < 0 || n > AGP_MAX_DATA || s->in_eof)
                        return;
                if (s->inq.len + n > STDIN_WINDOW) {
                        say("exec %llu: stdin past its window; killing it", (unsigned long long)id);
                        kill(-s->pid, SIGKILL);
                        return;
                }
                if (s->in_fd >= 0 && n) {
                        bytes_add(&s->inq, d, n);
                        s->in_last = d[n - 1];
                }
                return;
        }
        case AGP_EOF:
                if (s->in_eof)
                        return;
                s->in_eof = true;
                if (s->tty)
                        tty_eof(s);
                else if (s->inq.len == 0)
                        closefd(&s->in_fd);
                return;
        case AGP_SIGNAL:
                if (agp_get_u64(m, AGT_SIGNO, &v) == 0 && v >= 1 && v <= 64)
                        kill(-s->pid, (int)v);
                return;
        case AGP_RESIZE: {
                uint64_t rows = 0, cols = 0;
                int master = s->out_fd >= 0 ? s->out_fd : s->in_fd;
                if (s->tty && master >= 0 && agp_get_u64(m, AGT_ROWS, &rows) == 0 &&
                    agp_get_u64(m, AGT_COLS, &cols) == 0 && rows >= 1 && rows <= 1000 && cols >= 1 && cols <= 1000) {
                        struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
                        ioctl(master, TIOCSWINSZ, &ws);   /* the kernel sends SIGWINCH */
                }
                return;
        }
        case AGP_WINDOW:
                if (agp_get_u64(m, AGT_N, &v) == 0) {
                        s->credit += v;
                        if (s->credit > CREDIT_MAX)
                                s->credit = CREDIT_MAX;
                }
                return;
        }
}

/* What each pollfd handed out stands for. */
static struct {
        struct sess *s;
        int which;   /* 0 stdin, 1 stdout, 2 stderr */
} polled[3 * MAX_SESSIONS];

/* May s's output be read now: credit from the host, room in its queue? */
static bool has_room(const struct sess *s)
{
        return s->credit > 0 && s->c->out.len < OUTQ_HIGH && !s->c->down && !s->c->stalled;
}

size_t exec_pollfds(struct pollfd *p, size_t max, int *timeout_ms)
{
        size_t n = 0;
        uint64_t now = uptime_us();
        for (size_t i = 0; i < MAX_SESSIONS; i++) {
                struct sess *s = &sessions[i];
                if (!s->used || !s->c)
                        continue;
                bool room = has_room(s);
                int fds[3] = { s->in_fd, s->out_fd, s->err_fd };
                short ev[3] = { s->inq.len ? POLLOUT : 0, room ? POLLIN : 0, room ? POLLIN : 0 };
                for (int w = 0; w < 3 && n < max; w++) {
                        if (fds[w] < 0 || !ev[w])
                                continue;
                        p[n] = (struct pollfd){ .fd = fds[w], .events = ev[w] };
                        polled[n].s = s;
                        polled[n].which = w;
                        n++;
                }
                if (s->exited && !room && s->room_since) {
                        /* the grace counts only while the pipes can be read */
                        uint64_t used = now - s->room_since;
                        s->grace_left -= used < s->grace_left ? used : s->grace_left;
                        s->room_since = 0;
                } else if (s->exited && room) {
                        if (!s->room_since)
                                s->room_since = now;
                        uint64_t used = now - s->room_since;
                        int ms = used < s->grace_left ? (int)((s->grace_left - used) / 1000) + 1 : 0;
                        if (*timeout_ms < 0 || ms < *timeout_ms)
                                *timeout_ms = ms;
                }
        }
        return n;
}

static void finish(struct sess *s)
{
        struct agp_out *o = frame(AGP_EXIT, s->id);
        if (WIFSIGNALED(s->status))
                agp_put_u64(o, AGT_SIGNO, (uint64_t)WTERMSIG(s->status));
        else
                agp_put_u64(o, AGT_CODE, (uint64_t)WEXITSTATUS(s->status));
        conn_send(s->c, o);
        exec_last_activity_us = uptime_us();
        sess_free(s);
}

static void pump_out(struct sess *s, int which)
{
        static uint8_t buf[AGP_MAX_DATA];
        int *fd = which == 1 ? &s->out_fd : &s->err_fd;
        size_t want = s->credit < sizeof buf ? (size_t)s->credit : sizeof buf;
        if (want == 0)
                return;
        ssize_t n = read(*fd, buf, want);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {   /* EOF, or EIO from a pty whose other side closed */
                closefd(fd);
                if (s->tty)
                        closefd(&s->in_fd);
                return;
        }
        s->credit -= (uint64_t)n;
        struct agp_out *o = frame(which == 1 ? AGP_STDOUT : AGP_STDERR, s->id);
        agp_put_bytes(o, AGT_DATA, buf, (size_t)n);
        conn_send(s->c, o);
}

static void pump_in(struct sess *s)
{
        ssize_t n = write(s->in_fd, s->inq.p + s->inq.off, s->inq.len);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                /* EPIPE: the process closed its stdin; the rest is dropped */
                bytes_free(&s->inq);
                closefd(&s->in_fd);
                return;
        }
        bytes_drop(&s->inq, (size_t)n);
        s->in_done += (uint64_t)n;
        if (s->in_done >= 32768 || s->inq.len == 0) {
                struct agp_out *o = frame(AGP_WINDOW, s->id);
                agp_put_u64(o, AGT_N, s->in_done);
                conn_send(s->c, o);
                s->in_done = 0;
        }
        if (s->inq.len == 0 && s->in_eof && !s->tty)
                closefd(&s->in_fd);
}

void exec_ready(const struct pollfd *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                struct sess *s = polled[i].s;
                if (!p[i].revents || !s->used || !s->c)
                        continue;
                if (polled[i].which == 0) {
                        if (s->in_fd >= 0)
                                pump_in(s);
                } else {
                        int fd = polled[i].which == 1 ? s->out_fd : s->err_fd;
                        if (fd >= 0)
                                pump_out(s, polled[i].which);
                }
        }
        uint64_t now = uptime_us();
        for (size_t i = 0; i < MAX_SESSIONS; i++) {
                struct sess *s = &sessions[i];
                if (s->used && s->c && s->exited &&
                    ((s->out_fd < 0 && s->err_fd < 0) || (s->room_since && now - s->room_since >= s->grace_left)))
                        finish(s);
        }
}

void exec_reap(void)
{
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        return;
                for (size_t i = 0; i < MAX_SESSIONS; i++) {
                        struct sess *s = &sessions[i];
                        if (!s->used || s->pid != pid)
                                continue;
                        if (!s->c) {
                                sess_free(s);   /* orphaned: nobody to tell */
                                break;
                        }
                        s->exited = true;
                        s->status = status;
                        s->grace_left = EXIT_GRACE_US;
                        s->room_since = 0;   /* exec_pollfds starts the clock when the pipes can be read */
                        if (!s->tty || s->in_eof)
                                closefd(&s->in_fd);
                        break;
                }
        }
}

void exec_conn_gone(struct conn *c)
{
        for (size_t i = 0; i < MAX_SESSIONS; i++) {
                struct sess *s = &sessions[i];
                if (!s->used || s->c != c)
                        continue;
                if (s->exited) {
                        sess_free(s);
                        continue;
                }
                kill(-s->pid, SIGKILL);
                closefd(&s->in_fd);
                closefd(&s->out_fd);
                closefd(&s->err_fd);
                bytes_free(&s->inq);
                s->c = NULL;   /* reaped later */
        }
}
