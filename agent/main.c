/* banger-agent: the guest side of bangerd's agent channel
 * (docs/agent-protocol.md).
 *
 * banger's initramfs starts it as soon as the driver of its channel is
 * loaded (the virtio-serial port org.banger.agent under QEMU, an AF_VSOCK
 * listener under Firecracker), long before the root filesystem is
 * mounted: it says hello at once (stage 1) but holds every request.  When
 * /init has mounted the root at /newroot and moved /dev, /proc and /sys
 * into it, it sends SIGUSR1; the agent chroots into /newroot, answers on
 * the --ack FIFO, says hello again (stage 2: ready) and serves.  It keeps
 * running in the real root after switch_root; the image does not have to
 * carry it.  Without --ack it chroots at once and detaches (the order the
 * first version used).
 *
 * One thread, one poll().  The serial port is a single connection that
 * is "down" while the host is not connected (read() returns 0 then, so it
 * is probed on a short timer instead of polled); vsock gives one
 * connection per host connect.  Every frame in is parsed with
 * agent_proto's checks; a malformed one resets that connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "agent.h"

#define MAX_CONNS 8
#define DOWN_PROBE_MS 20
#define PORT_WAIT_MS 5000

static struct conn *conns[MAX_CONNS];
static int listen_fd = -1;
bool agent_rooted = true;
static bool test_mode;   /* --fd: on a host, in tests; shutdown must never touch the machine */
static uint64_t init_us, start_us;

void say(const char *fmt, ...)
{
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        dprintf(2, "banger-agent: %s\n", line);
}

uint64_t uptime_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *xrealloc(void *p, size_t n)
{
        void *q = realloc(p, n);
        if (!q) {
                say("out of memory");
                abort();
        }
        return q;
}

void bytes_add(struct bytes *b, const void *p, size_t n)
{
        if (b->off && b->off + b->len + n > b->cap) {
                memmove(b->p, b->p + b->off, b->len);
                b->off = 0;
        }
        if (b->off + b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 65536;
                while (cap < b->off + b->len + n)
                        cap *= 2;
                b->p = xrealloc(b->p, cap);
                b->cap = cap;
        }
        memcpy(b->p + b->off + b->len, p, n);
        b->len += n;
}

void bytes_drop(struct bytes *b, size_t n)
{
        b->off += n;
        b->len -= n;
        if (b->len == 0)
                b->off = 0;
}

void bytes_free(struct bytes *b)
{
        free(b->p);
        memset(b, 0, sizeof *b);
}

struct agp_out *frame(uint8_t type, uint64_t id)
{
        static struct agp_out o;
        agp_begin(&o, type);
        if (id)
                agp_put_u64(&o, AGT_ID, id);
        return &o;
}

/* Frames in and out stop once c is dead, down or stalled. */
static bool conn_gone(const struct conn *c)
{
        return c->dead || c->down || c->stalled;
}

static bool conn_live(struct conn *c)
{
        for (size_t i = 0; i < MAX_CONNS; i++)
                if (conns[i] == c)
                        return !conn_gone(c);
        return false;
}

void conn_send(struct conn *c, struct agp_out *o)
{
        if (agp_end(o) < 0) {
                say("dropping a %s frame that does not fit", agp_type_name(o->buf[AGP_HDR]));
                return;
        }
        if (!conn_live(c))
                return;
        if (c->out.len + o->len > OUTQ_MAX) {
                /* The host stopped reading: it will reconnect and ask again.
                 * Only marked here: the caller may be in the middle of a
                 * session of c, so the reset (which ends them) is main()'s. */
                c->stalled = true;
                return;
        }
        bytes_add(&c->out, o->buf, o->len);
}

/* ---- transport ---- */

/* /dev/vportNpM of the port named name, found through sysfs. */
static int open_serial(const char *devroot)
{
        for (int waited = 0; waited < PORT_WAIT_MS; waited += 20) {
                DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *e;
                while (d && (e = readdir(d))) {
                        if (e->d_name[0] == '.')
                                continue;
                        char p[600], name[64] = "";
                        snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
                        int fd = open(p, O_RDONLY | O_CLOEXEC);
                        if (fd < 0)
                                continue;
                        ssize_t n = read(fd, name, sizeof name - 1);
                        close(fd);
                        if (n <= 0)
                                continue;
                        name[n] = '\0';
                        name[strcspn(name, "\n")] = '\0';
                        if (strcmp(name, AGP_SERIAL_NAME) != 0)
                                continue;
                        snprintf(p, sizeof p, "%s/dev/%s", devroot, e->d_name);
                        closedir(d);
                        fd = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                        if (fd < 0)
                                say("open %s: %s", p, strerror(errno));
                        return fd;
                }
                if (d)
                        closedir(d);
                usleep(20000);
        }
        say("no virtio-serial port named %s", AGP_SERIAL_NAME);
        return -1;
}

static int open_vsock(unsigned port)
{
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                say("vsock socket: %s", strerror(errno));
                return -1;
        }
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 8) < 0) {
                say("vsock port %u: %s", port, strerror(errno));
                close(fd);
                return -1;
        }
        return fd;
}

static struct conn *conn_add(int fd, bool serial)
{
        for (size_t i = 0; i < MAX_CONNS; i++) {
                if (!conns[i]) {
                        struct conn *c = calloc(1, sizeof *c);
                        if (!c)
                                abort();
                        c->fd = fd;
                        c->serial = serial;
                        conns[i] = c;
                        return c;
                }
        }
        close(fd);
        return NULL;
}

static void conn_reset(struct conn *c, const char *why)
{
        if (why)
                say("connection reset: %s", why);
        exec_conn_gone(c);
        write_conn_gone(c);
        bytes_free(&c->out);
        c->in_len = 0;
        c->stalled = false;
        if (c->serial)
                c->down = true;
        else
                c->dead = true;
}

/* ---- frames from the host ---- */

static void dispatch(struct conn *c, const struct agp_msg *m)
{
        uint64_t id = 0;
        agp_get_u64(m, AGT_ID, &id);
        switch (m->type) {
        case AGP_HELLO_REQ:
                hello_send(c, init_us, start_us);
                return;
        case AGP_EXEC:
                exec_start(c, m);
                return;
        case AGP_STDIN:
        case AGP_EOF:
        case AGP_SIGNAL:
        case AGP_WINDOW:
        case AGP_RESIZE:
                exec_input(c, m);
                return;
        case AGP_STATS_REQ:
                stats_reply(c, id);
                return;
        case AGP_WRITE:
                write_chunk(c, m);
                return;
        case AGP_SHUTDOWN: {
                conn_send(c, frame(AGP_DONE, id));
                /* Best effort: let the answer out before the power goes. */
                for (int i = 0; i < 20 && c->out.len; i++) {
                        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len);
                        if (n > 0)
                                bytes_drop(&c->out, (size_t)n);
                        else
                                usleep(5000);
                }
                say("shutdown requested by the host");
                if (test_mode)
                        _exit(AGENT_EXIT_POWEROFF);   /* the test stands in for the power going off */
                shutdown_guest();
        }
        default: {
                struct agp_out *o = frame(AGP_ERROR, id);
                agp_put_u64(o, AGT_ERRNO, EPROTO);
                agp_put_str(o, AGT_MSG, "unexpected frame type");
                conn_send(c, o);
        }
        }
}

/* Run every complete frame in c->in; keep a partial one for later, and
 * every frame but a hello request while the root is not there yet. */
static void process_input(struct conn *c)
{
        size_t off = 0;
        for (;;) {
                if (!agent_rooted && c->in_len - off > AGP_HDR && c->in[off + AGP_HDR] != AGP_HELLO_REQ)
                        break;
                long size = agp_frame_size(c->in + off, c->in_len - off);
                if (size < 0) {
                        conn_reset(c, size == -EMSGSIZE ? "oversized frame" : "malformed frame");
                        return;
                }
                if (size == 0)
                        break;
                struct agp_msg m;
                if (agp_parse(c->in + off, (size_t)size, &m) < 0) {
                        conn_reset(c, "malformed frame");
                        return;
                }
                dispatch(c, &m);
                if (conn_gone(c))
                        return;
                off += (size_t)size;
        }
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
}

static void conn_read(struct conn *c)
{
        while (c->in_len < sizeof c->in) {   /* full: held requests wait for the root */
                ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
                if (n == 0) {
                        conn_reset(c, NULL);   /* host went away */
                        return;
                }
                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                conn_reset(c, strerror(errno));
                        return;
                }
                c->in_len += (size_t)n;
                process_input(c);
                if (conn_gone(c))
                        return;
        }
}

static void conn_flush(struct conn *c)
{
        while (c->out.len) {
                ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                conn_reset(c, strerror(errno));
                        return;
                }
                bytes_drop(&c->out, (size_t)n);
        }
}

/* A down serial port: is the host there again?  read() gives 0 while it
 * is not, EAGAIN or data once it is. */
static void serial_probe(struct conn *c)
{
        ssize_t n = read(c->fd, c->in, sizeof c->in);
        if (n == 0 || (n < 0 && errno != EAGAIN))
                return;
        c->down = false;
        c->in_len = n > 0 ? (size_t)n : 0;
        hello_send(c, init_us, start_us);
        process_input(c);
}

/* /init has the root filesystem ready at root: move into it, tell /init,
 * say hello again (now ready) and serve what was held. */
static void enter_root(const char *root, int *ack_fd)
{
        if (!root || *ack_fd < 0)
                return;   /* --ack needs --chroot: not reached */
        if (chroot(root) < 0 || chdir("/") < 0) {
                say("chroot %s: %s", root, strerror(errno));
                return;   /* /init's read times out and says so */
        }
        agent_rooted = true;
        if (write(*ack_fd, "ok\n", 3) < 0)
                say("ack: %s", strerror(errno));
        close(*ack_fd);
        *ack_fd = -1;
        for (size_t i = 0; i < MAX_CONNS; i++) {
                struct conn *c = conns[i];
                if (!c || conn_gone(c))
                        continue;
                hello_send(c, init_us, start_us);
                process_input(c);
        }
}

static void usage(void)
{
        dprintf(2, "usage: banger-agent (--serial | --vsock PORT | --fd N) [--chroot DIR [--ack FIFO]] "
                   "[--init-us N]\n");
        exit(2);
}

int main(int argc, char **argv)
{
        start_us = uptime_us();
        const char *root = NULL;
        bool serial = false;
        unsigned vport = 0;
        int test_fd = -1;   /* --fd: a connected socket (tests); the agent ends with it */
        const char *ack = NULL;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--serial") == 0)
                        serial = true;
                else if (strcmp(argv[i], "--vsock") == 0 && i + 1 < argc)
                        vport = (unsigned)strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
                        test_fd = atoi(argv[++i]);
                else if (strcmp(argv[i], "--chroot") == 0 && i + 1 < argc)
                        root = argv[++i];
                else if (strcmp(argv[i], "--ack") == 0 && i + 1 < argc)
                        ack = argv[++i];
                else if (strcmp(argv[i], "--init-us") == 0 && i + 1 < argc)
                        init_us = strtoull(argv[++i], NULL, 10);
                else
                        usage();
        }
        if ((!serial && !vport && test_fd < 0) || (ack && !root))
                usage();
        test_mode = test_fd >= 0;
        if (test_mode && getpid() == 1)
                usage();
        signal(SIGPIPE, SIG_IGN);
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

        int fd = test_fd;
        if (test_fd >= 0) {
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                fcntl(fd, F_SETFL, O_NONBLOCK);
        } else if (serial) {
                /* early: /dev is still the initramfs's; else it was moved */
                char devroot[256];
                snprintf(devroot, sizeof devroot, "%s", root && !ack ? root : "");
                fd = open_serial(devroot);
        } else {
                fd = open_vsock(vport);
        }
        if (fd < 0)
                return 1;
        int ack_fd = -1;
        if (ack) {
                ack_fd = open(ack, O_RDWR | O_NONBLOCK | O_CLOEXEC);
                if (ack_fd < 0) {
                        say("open %s: %s", ack, strerror(errno));
                        return 1;
                }
                agent_rooted = false;
        }
        if (root && !ack && (chroot(root) < 0 || chdir("/") < 0)) {
                say("chroot %s: %s", root, strerror(errno));
                return 1;
        }
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0)
                dup2(null, 0);
        if (root && !ack) {
                /* Detach: the caller (/init) goes on to switch_root once
                 * the channel is open and the agent is in the new root. */
                pid_t pid = fork();
                if (pid < 0) {
                        say("fork: %s", strerror(errno));
                        return 1;
                }
                if (pid > 0)
                        _exit(0);
        }
        setsid();
        if (test_fd >= 0) {
                hello_send(conn_add(fd, false), init_us, start_us);
        } else if (serial) {
                struct conn *c = conn_add(fd, true);
                c->down = true;
                serial_probe(c);
        } else {
                listen_fd = fd;
        }

        struct pollfd p[2 + MAX_CONNS + 3 * MAX_SESSIONS];
        struct conn *pc[MAX_CONNS];
        for (;;) {
                size_t n = 0, nc = 0;
                int timeout = -1;
                p[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
                p[n++] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
                for (size_t i = 0; i < MAX_CONNS; i++) {
                        struct conn *c = conns[i];
                        if (!c)
                                continue;
                        if (c->stalled)
                                conn_reset(c, "the host is not reading");
                        if (c->dead) {
                                close(c->fd);
                                bytes_free(&c->out);
                                free(c);
                                conns[i] = NULL;
                                if (test_fd >= 0)
                                        return 0;
                                continue;
                        }
                        if (c->down) {
                                timeout = DOWN_PROBE_MS;
                                continue;
                        }
                        pc[nc++] = c;
                        p[n++] = (struct pollfd){ .fd = c->fd,
                                                  .events = (short)((c->in_len < sizeof c->in ? POLLIN : 0) |
                                                                    (c->out.len ? POLLOUT : 0)) };
                }
                size_t first_exec = n;
                n += exec_pollfds(p + n, sizeof p / sizeof p[0] - n, &timeout);
                int r = poll(p, n, timeout);
                if (r < 0 && errno != EINTR) {
                        say("poll: %s", strerror(errno));
                        return 1;
                }
                if (p[0].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                                if (si.ssi_signo == SIGUSR1 && !agent_rooted)
                                        enter_root(root, &ack_fd);
                }
                exec_reap();
                if (listen_fd >= 0 && (p[1].revents & POLLIN)) {
                        int cfd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                        if (cfd >= 0) {
                                struct conn *c = conn_add(cfd, false);
                                if (c)
                                        hello_send(c, init_us, start_us);
                        }
                }
                for (size_t i = 0; i < nc; i++) {
                        short re = p[2 + i].revents;
                        if (re & (POLLIN | POLLHUP | POLLERR))
                                conn_read(pc[i]);
                }
                exec_ready(p + first_exec, n - first_exec);
                for (size_t i = 0; i < MAX_CONNS; i++) {
                        struct conn *c = conns[i];
                        if (!c)
                                continue;
                        if (c->down)
                                serial_probe(c);
                        if (!conn_gone(c))
                                conn_flush(c);
                }
        }
}
