/* banger vm exec / vm stats: run a command in a sandbox, or read its
 * counters, through bangerd and the guest agent (no SSH).
 *
 * exec upgrades one API connection (POST /v1/sandboxes/NAME/exec,
 * "Upgrade: banger-exec/1") and then speaks the agent framing on it
 * (common/agent_proto.h, docs/agent-protocol.md): one EXEC frame, then
 * stdin and credit one way, output, credit and the exit status the other.
 * stdout and stderr are written as they arrive, byte for byte, and banger
 * exits with the command's status (128+N for a signal; 127 when the
 * command is not found, 126 when it cannot run).  SIGINT, SIGTERM and
 * SIGHUP sent to banger go on to the command's process group; with -t the
 * terminal's size follows SIGWINCH.  Before the command has started, or at
 * a second SIGINT, banger gives up at once (128+N): the guest may never
 * answer, and bangerd ends the command when the connection goes.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "agent_proto.h"
#include "cli.h"
#include "client.h"
#include "err.h"
#include "spec.h"
#include "util.h"

#define WINDOW (1u << 20)          /* output credit granted to the guest */

static struct termios saved_tio;
static bool tio_saved;
static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
        int e = errno;
        unsigned char b = (unsigned char)sig;
        if (write(sig_pipe[1], &b, 1) < 0) {
                /* full: the signal is already on its way */
        }
        errno = e;
}

/* Signals become frames: the command gets them, not banger. */
static void forward_signals(void)
{
        if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return;
        struct sigaction sa = { .sa_handler = on_signal };
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGWINCH };
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
                sigaction(sigs[i], &sa, NULL);
}

static void put_size(struct agp_out *o)
{
        struct winsize ws;
        if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
                agp_put_u64(o, AGT_ROWS, ws.ws_row);
                agp_put_u64(o, AGT_COLS, ws.ws_col);
        }
}

static void restore_tty(void)
{
        if (tio_saved)
                tcsetattr(0, TCSAFLUSH, &saved_tio);
}

static int write_all(int fd, const void *p, size_t n)
{
        const uint8_t *b = p;
        while (n) {
                ssize_t w = write(fd, b, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                b += w;
                n -= (size_t)w;
        }
        return 0;
}

static int send_frame(int fd, struct agp_out *o)
{
        if (agp_end(o) < 0)
                return -EMSGSIZE;
        return write_all(fd, o->buf, o->len);
}

struct session {
        int fd;
        uint8_t *in;
        size_t in_len;
        uint64_t stdin_credit;
        bool stdin_open;
        bool started;            /* the guest said STARTED */
        bool interrupted;        /* a SIGINT went to the command already */
        bool done;
        int status;
};

/* One frame from bangerd; sets s->done with s->status at the end.  1 when
 * our stdout is gone.  A failed write to bangerd is not an error here:
 * the next read sees why (an error frame, or the end of the stream). */
static int on_frame(struct session *s, const struct agp_msg *m, struct agp_out *o)
{
        const uint8_t *d;
        size_t n;
        uint64_t v = 0;
        char msg[AGP_MAX_STR];
        switch (m->type) {
        case AGP_STDOUT:
        case AGP_STDERR:
                if (agp_get_bytes(m, AGT_DATA, &d, &n) < 0)
                        return -EPROTO;
                if (write_all(m->type == AGP_STDOUT ? 1 : 2, d, n) < 0 && m->type == AGP_STDOUT)
                        return 1;
                agp_begin(o, AGP_WINDOW);
                agp_put_u64(o, AGT_ID, 1);
                agp_put_u64(o, AGT_N, n);
                send_frame(s->fd, o);
                return 0;
        case AGP_WINDOW:
                if (agp_get_u64(m, AGT_N, &v) == 0)
                        s->stdin_credit += v;
                return 0;
        case AGP_STARTED:
                s->started = true;
                return 0;
        case AGP_EXIT:
                s->done = true;
                if (agp_get_u64(m, AGT_CODE, &v) == 0)
                        s->status = (int)(v & 0xff);
                else if (agp_get_u64(m, AGT_SIGNO, &v) == 0)
                        s->status = 128 + (int)(v & 0x7f);
                else
                        s->status = EXIT_ERR;
                return 0;
        case AGP_ERROR:
                s->done = true;
                agp_get_u64(m, AGT_ERRNO, &v);
                if (agp_get_str(m, AGT_MSG, msg, sizeof msg) < 0)
                        snprintf(msg, sizeof msg, "%s", strerror((int)v));
                restore_tty();
                cli_error("%s", msg);
                s->status = v == ENOENT ? 127 : v == EACCES || v == ENOEXEC ? 126 : EXIT_ERR;
                return 0;
        default:
                return 0;
        }
}

static int run(const char *sock, const char *name, char **cmd, size_t ncmd, char **env, size_t nenv, const char *cwd,
               bool tty)
{
        struct session s = { .fd = -1, .stdin_open = true, .status = EXIT_ERR };
        s.in = xmalloc(AGP_MAX_FRAME);
        struct agp_out *o = xmalloc(sizeof *o);
        struct bg_err *err = NULL;
        int rc = EXIT_ERR;
        struct client *c = client_new(sock);
        _cleanup_free_ char *esc = client_escape(name);
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/exec", esc);
        int up = client_upgrade(c, path, "banger-exec/1", &s.fd, s.in, AGP_MAX_FRAME, &s.in_len, &err);
        client_free(c);
        if (up < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                goto out;
        }
        agp_begin(o, AGP_EXEC);
        agp_put_u64(o, AGT_ID, 1);
        for (size_t i = 0; i < ncmd; i++)
                agp_put_str(o, AGT_ARG, cmd[i]);
        for (size_t i = 0; i < nenv; i++)
                agp_put_str(o, AGT_ENV, env[i]);
        if (cwd)
                agp_put_str(o, AGT_CWD, cwd);
        if (tty) {
                const char *term = getenv("TERM");
                agp_put_u64(o, AGT_TTY, 1);
                put_size(o);
                if (term && strlen(term) < 64) {
                        _cleanup_free_ char *t = xasprintf("TERM=%s", term);
                        agp_put_str(o, AGT_ENV, t);
                }
        }
        agp_put_u64(o, AGT_WINDOW, WINDOW);
        if (send_frame(s.fd, o) < 0) {
                cli_error("exec request too large or not sent (at most %u arguments of %u bytes)", AGP_MAX_ARGS,
                          AGP_MAX_STR - 1);
                goto out;
        }
        forward_signals();
        if (tty && isatty(0) && tcgetattr(0, &saved_tio) == 0) {
                struct termios raw = saved_tio;
                cfmakeraw(&raw);
                tio_saved = tcsetattr(0, TCSAFLUSH, &raw) == 0;
        }
        static uint8_t buf[AGP_MAX_DATA];
        while (!s.done) {
                /* frames already buffered first */
                size_t off = 0;
                for (;;) {
                        long size = agp_frame_size(s.in + off, s.in_len - off);
                        struct agp_msg m;
                        if (size == 0)
                                break;
                        if (size < 0 || agp_parse(s.in + off, (size_t)size, &m) < 0) {
                                restore_tty();
                                cli_error("bad frame from bangerd");
                                goto out;
                        }
                        int r = on_frame(&s, &m, o);
                        off += (size_t)size;
                        if (r == 1) {   /* our stdout is gone: stop the command */
                                s.done = true;
                                s.status = 141;
                                break;
                        }
                        if (r < 0) {
                                restore_tty();
                                cli_error("exec %s: %s", name, strerror(-r));
                                goto out;
                        }
                        if (s.done)
                                break;
                }
                memmove(s.in, s.in + off, s.in_len - off);
                s.in_len -= off;
                if (s.done)
                        break;
                struct pollfd p[3] = { { .fd = s.fd, .events = POLLIN },
                                       { .fd = s.stdin_open && s.stdin_credit ? 0 : -1, .events = POLLIN },
                                       { .fd = sig_pipe[0], .events = POLLIN } };
                if (poll(p, 3, -1) < 0 && errno != EINTR)
                        break;
                unsigned char sig;
                while ((p[2].revents & POLLIN) && read(sig_pipe[0], &sig, 1) == 1) {
                        struct winsize ws;
                        if (sig != SIGWINCH && (!s.started || (sig == SIGINT && s.interrupted))) {
                                /* nothing to forward to yet, or the user insists */
                                rc = 128 + sig;
                                goto out;
                        }
                        s.interrupted = s.interrupted || sig == SIGINT;
                        if (sig == SIGWINCH && (!tty || ioctl(1, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col))
                                continue;
                        agp_begin(o, sig == SIGWINCH ? AGP_RESIZE : AGP_SIGNAL);
                        agp_put_u64(o, AGT_ID, 1);
                        if (sig == SIGWINCH)
                                put_size(o);
                        else
                                agp_put_u64(o, AGT_SIGNO, sig);
                        send_frame(s.fd, o);
                }
                if (p[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
                        size_t want = s.stdin_credit < sizeof buf ? (size_t)s.stdin_credit : sizeof buf;
                        ssize_t n = p[1].revents & POLLNVAL ? 0 : read(0, buf, want);
                        if (n > 0) {
                                s.stdin_credit -= (uint64_t)n;
                                agp_begin(o, AGP_STDIN);
                                agp_put_u64(o, AGT_ID, 1);
                                agp_put_bytes(o, AGT_DATA, buf, (size_t)n);
                                send_frame(s.fd, o);   /* a failure shows on the next read */
                        } else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
                                /* the end, or stdin cannot be read (EIO, EBADF): the same to the command */
                                s.stdin_open = false;
                                agp_begin(o, AGP_EOF);
                                agp_put_u64(o, AGT_ID, 1);
                                send_frame(s.fd, o);
                        }
                        /* EINTR, EAGAIN (stdin shared with a non-blocking reader): poll again */
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
                        ssize_t n = read(s.fd, s.in + s.in_len, AGP_MAX_FRAME - s.in_len);
                        if (n <= 0) {
                                restore_tty();
                                cli_error("exec %s: bangerd closed the connection before the command ended", name);
                                goto out;
                        }
                        s.in_len += (size_t)n;
                }
        }
        rc = s.status;
out:
        restore_tty();
        if (s.fd >= 0)
                close(s.fd);
        free(s.in);
        free(o);
        return rc;
}

/* A closed 0, 1 or 2 would become the next fd opened (the connection to
 * bangerd), and stdin or output would go to the wrong place: fill them
 * with /dev/null (no O_CLOEXEC: they are stdio). */
static void fill_stdio(void)
{
        for (int fd = 0; fd <= 2; fd++) {
                if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
                        continue;
                int n = open("/dev/null", O_RDWR);
                if (n >= 0 && n != fd) {
                        dup2(n, fd);
                        close(n);
                }
        }
}

int vm_exec(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "tty", no_argument, NULL, 't' },
                { "env", required_argument, NULL, 'e' },
                { "workdir", required_argument, NULL, 'w' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        bool tty = false;
        const char *cwd = NULL;
        char **env = NULL;
        size_t nenv = 0;
        int c, rc;
        fill_stdio();
        /* "+": options end at the sandbox name; the command's are its own */
        while ((c = getopt_long(argc, argv, "+te:w:h", opts, NULL)) != -1) {
                switch (c) {
                case 't':
                        tty = true;
                        break;
                case 'e':
                        if (!strchr(optarg, '=') || optarg[0] == '=') {
                                rc = cli_usage_error(cli, "--env wants NAME=VALUE, not '%s'", optarg);
                                goto out;
                        }
                        env = xreallocarray(env, nenv + 1, sizeof *env);
                        env[nenv++] = optarg;
                        break;
                case 'w':
                        if (optarg[0] != '/') {
                                rc = cli_usage_error(cli, "--workdir wants an absolute path");
                                goto out;
                        }
                        cwd = optarg;
                        break;
                case 'h':
                        rc = cli_help(cli);
                        goto out;
                default:
                        rc = EXIT_USAGE;
                        goto out;
                }
        }
        if (optind >= argc) {
                rc = cli_usage_error(cli, "vm exec wants a sandbox name and a command after --");
                goto out;
        }
        const char *name = argv[optind++];
        if (!spec_name_valid(name)) {
                rc = cli_usage_error(cli, "invalid sandbox name '%s'", name);
                goto out;
        }
        if (optind < argc && strcmp(argv[optind], "--") == 0)
                optind++;
        if (optind >= argc) {
                rc = cli_usage_error(cli, "give the command to run after --");
                goto out;
        }
        signal(SIGPIPE, SIG_IGN);
        rc = run(cli->paths.socket, name, argv + optind, (size_t)(argc - optind), env, nenv, cwd, tty);
out:
        free(env);
        return rc;
}

static void human_bytes(json_t *v, char *out, size_t len)
{
        double b = json_is_integer(v) ? (double)json_integer_value(v) : 0;
        const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        int i = 0;
        while (b >= 1024 && i < 4) {
                b /= 1024;
                i++;
        }
        snprintf(out, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

int vm_stats(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = { { "output", required_argument, NULL, 'o' },
                                              { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
        const char *fmt = "text";
        int c;
        while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
                if (c == 'o')
                        fmt = optarg;
                else if (c == 'h')
                        return cli_help(cli);
                else
                        return EXIT_USAGE;
        }
        if (strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0)
                return cli_usage_error(cli, "-o wants text or json");
        if (optind + 1 != argc)
                return cli_usage_error(cli, "vm stats wants one sandbox name");
        const char *name = argv[optind];
        if (!spec_name_valid(name))
                return cli_usage_error(cli, "invalid sandbox name '%s'", name);
        struct client *cl = client_new(cli->paths.socket);
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/stats", name);
        struct bg_err *err = NULL;
        json_t *j = NULL;
        int rc = client_get_ok(cl, path, &j, &err);
        client_free(cl);
        if (rc < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return EXIT_ERR;
        }
        if (strcmp(fmt, "json") == 0) {
                char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", s);
                free(s);
                json_decref(j);
                return EXIT_OK;
        }
        json_t *cpu = json_object_get(j, "cpu"), *mem = json_object_get(j, "memory");
        json_t *disk = json_object_get(j, "disk"), *net = json_object_get(j, "network");
        json_t *load = json_object_get(j, "load");
        char a[32], b[32], d[32], e[32];
        long long up = (long long)json_number_value(json_object_get(j, "uptimeSeconds"));
        printf("%-10s %lldd %02lldh %02lldm %02llds\n", "uptime", up / 86400, up / 3600 % 24, up / 60 % 60, up % 60);
        json_t *pct = json_object_get(cpu, "usedPercent");
        printf("%-10s %lld cpu, user %lld ms, system %lld ms", "cpu",
               (long long)json_integer_value(json_object_get(cpu, "count")),
               (long long)json_integer_value(json_object_get(cpu, "userMs")),
               (long long)json_integer_value(json_object_get(cpu, "systemMs")));
        if (pct)
                printf(", %.1f%% used lately", json_number_value(pct));
        printf("\n");
        json_int_t total = json_integer_value(json_object_get(mem, "totalBytes"));
        json_int_t avail = json_integer_value(json_object_get(mem, "availableBytes"));
        json_t *used = json_integer(total - avail);
        human_bytes(used, a, sizeof a);
        human_bytes(json_object_get(mem, "totalBytes"), b, sizeof b);
        json_decref(used);
        printf("%-10s %s used of %s\n", "memory", a, b);
        printf("%-10s %.2f %.2f %.2f\n", "load", json_number_value(json_array_get(load, 0)),
               json_number_value(json_array_get(load, 1)), json_number_value(json_array_get(load, 2)));
        human_bytes(json_object_get(disk, "readBytes"), a, sizeof a);
        human_bytes(json_object_get(disk, "writeBytes"), b, sizeof b);
        human_bytes(json_object_get(disk, "rootFreeBytes"), d, sizeof d);
        human_bytes(json_object_get(disk, "rootTotalBytes"), e, sizeof e);
        printf("%-10s read %s, written %s; root %s free of %s\n", "disk", a, b, d, e);
        human_bytes(json_object_get(net, "rxBytes"), a, sizeof a);
        human_bytes(json_object_get(net, "txBytes"), b, sizeof b);
        printf("%-10s received %s, sent %s\n", "network", a, b);
        json_decref(j);
        return EXIT_OK;
}
