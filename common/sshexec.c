/* sshexec: libssh2 sessions pinned to banger's known_hosts (sshexec.h). */
#include "sshexec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "known_hosts.h"
#include "util.h"

#define SESSION_TIMEOUT_MS 30000   /* one blocking libssh2 call, once logged in */

volatile sig_atomic_t sshx_interrupted;

struct sshx {
        int fd;
        LIBSSH2_SESSION *session;
};

void strv_free(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

void sshx_close(struct sshx *s)
{
        if (!s)
                return;
        if (s->session) {
                libssh2_session_set_blocking(s->session, 1);
                libssh2_session_set_timeout(s->session, 2000);
                libssh2_session_disconnect(s->session, "bye");
                libssh2_session_free(s->session);
        }
        if (s->fd >= 0)
                close(s->fd);
        free(s);
}

static int tcp_connect(const char *ip, int port, int timeout_ms, int *out, struct bg_err **err)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return bg_error(err, EINVAL, "bad guest address '%s'", ip);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return bg_error(err, errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                int e = errno;
                close(fd);
                return bg_error(err, e, "connect %s:%d: %s", ip, port, strerror(e));
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int r = poll(&p, 1, timeout_ms);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r == 1)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (r != 1 || soerr) {
                int e = r == 0 ? ETIMEDOUT : r < 0 ? errno : soerr;
                close(fd);
                return bg_error(err, e, "connect %s:%d: %s", ip, port, strerror(e));
        }
        /* libssh2 drives the socket in blocking mode unless told otherwise. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        *out = fd;
        return 0;
}

static const char *ssh_errmsg(LIBSSH2_SESSION *s)
{
        char *m = NULL;
        libssh2_session_last_error(s, &m, NULL, 0);
        return m && *m ? m : "unknown error";
}

/* The server's key must equal the pin for the address and for NAME.vm;
 * both are banger's own lines, written together at prepare. */
static int check_host_key(struct sshx *s, const struct ssh_target *t, struct bg_err **err)
{
        size_t len = 0;
        int type = 0;
        const char *blob = libssh2_session_hostkey(s->session, &len, &type);
        if (!blob || len == 0 || len > 8192)
                return bg_error(err, EPROTO, "%s (%s): the server sent no host key", t->name, t->ip);
        _cleanup_free_ char *b64 = xmalloc(4 * ((len + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)blob, (int)len);
        _cleanup_free_ char *vmname = xasprintf("%s.vm", t->name);
        const char *hosts[] = { t->ip, vmname };
        for (size_t i = 0; i < 2; i++) {
                char *ktype = NULL, *pinned = NULL;
                int r = kh_lookup(t->known_hosts, hosts[i], &ktype, &pinned, err);
                if (r == -ENOENT)
                        return bg_error(err, SSHX_EHOSTKEY,
                                        "%s (%s): banger has no pinned host key for %s in %s; refusing to "
                                        "connect (was the sandbox created by this banger?)",
                                        t->name, t->ip, hosts[i], t->known_hosts);
                if (r < 0)
                        return r;
                bool same = strcmp(pinned, b64) == 0;
                free(ktype);
                free(pinned);
                if (!same)
                        return bg_error(err, SSHX_EHOSTKEY,
                                        "%s (%s): the host key does not match the key banger pinned for %s "
                                        "(possible MITM, or the guest's host key was replaced); refusing to "
                                        "connect",
                                        t->name, t->ip, hosts[i]);
        }
        return 0;
}

int sshx_connect(const struct ssh_target *t, int timeout_ms, struct sshx **out, struct bg_err **err)
{
        static bool inited;
        if (!inited) {
                if (libssh2_init(0) != 0)
                        return bg_error(err, EIO, "libssh2 init failed");
                inited = true;
        }
        struct sshx *s = xcalloc(1, sizeof *s);
        s->fd = -1;
        int64_t t0 = now_mono_ms();
        if (tcp_connect(t->ip, t->port, timeout_ms, &s->fd, err) < 0) {
                sshx_close(s);
                return -EHOSTUNREACH;
        }
        int left = timeout_ms - (int)(now_mono_ms() - t0);
        s->session = libssh2_session_init();
        libssh2_session_set_blocking(s->session, 1);
        libssh2_session_set_timeout(s->session, left > 100 ? left : 100);
        /* Ask for the key type banger pins, so the server shows that one. */
        libssh2_session_method_pref(s->session, LIBSSH2_METHOD_HOSTKEY, "ssh-ed25519");
        int rc = -EPROTO;
        if (libssh2_session_handshake(s->session, s->fd) != 0) {
                bg_error(err, EPROTO, "%s (%s): SSH handshake: %s", t->name, t->ip, ssh_errmsg(s->session));
                goto fail;
        }
        if ((rc = check_host_key(s, t, err)) < 0)
                goto fail;
        if (libssh2_userauth_publickey_fromfile(s->session, "root", NULL, t->key, NULL) != 0) {
                rc = bg_error(err, EACCES, "%s (%s): login as root with %s refused: %s", t->name, t->ip, t->key,
                              ssh_errmsg(s->session));
                goto fail;
        }
        /* The connect's own deadline (as little as 100 ms) must not bound
         * the blocking calls of the session (channel open, exec, close). */
        libssh2_session_set_timeout(s->session, SESSION_TIMEOUT_MS);
        *out = s;
        return 0;
fail:
        sshx_close(s);
        return rc;
}

int sshx_wait(const struct ssh_target *t, int timeout_ms, struct sshx **out, struct bg_err **err)
{
        int64_t end = now_mono_ms() + timeout_ms;
        for (;;) {
                struct bg_err *e = NULL;
                if (sshx_interrupted)
                        return bg_error(err, EINTR, "interrupted while waiting for SSH on %s", t->name);
                int64_t left = end - now_mono_ms();
                int r = sshx_connect(t, left < 3000 ? (int)(left > 200 ? left : 200) : 3000, out, &e);
                if (r == 0)
                        return 0;
                if (e && e->code == SSHX_EHOSTKEY) {
                        if (err && !*err)
                                *err = e;
                        else
                                bg_err_free(e);
                        return -SSHX_EHOSTKEY;
                }
                if (now_mono_ms() + 250 >= end) {
                        bg_error(err, ETIMEDOUT, "SSH to %s (%s) not ready after %d s: %s", t->name, t->ip,
                                 timeout_ms / 1000, e ? bg_err_msg(e) : "no answer");
                        bg_err_free(e);
                        return -ETIMEDOUT;
                }
                bg_err_free(e);
                usleep(50 * 1000);   /* a refused connect is cheap; boot time is what we wait on */
        }
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return -1;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static int signal_number(const char *name, size_t len)
{
        static const struct {
                const char *n;
                int sig;
        } sigs[] = { { "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "ILL", SIGILL },
                     { "ABRT", SIGABRT }, { "FPE", SIGFPE },   { "KILL", SIGKILL }, { "SEGV", SIGSEGV },
                     { "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "USR1", SIGUSR1 },
                     { "USR2", SIGUSR2 } };
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
                if (strlen(sigs[i].n) == len && memcmp(sigs[i].n, name, len) == 0)
                        return sigs[i].sig;
        return SIGTERM;
}

/* The stdin side of a running command: bytes read but not yet accepted
 * by the channel wait here, so a slow guest never loses input. */
struct pump_in {
        int fd;             /* -1 once EOF reached and sent */
        char buf[32768];
        size_t len, off;
        bool eof, eof_sent;
};

/* Move what can move without blocking; returns 1 when something moved. */
static int pump_stdin(LIBSSH2_CHANNEL *ch, struct pump_in *in, bool readable)
{
        int moved = 0;
        if (in->fd >= 0 && !in->eof && in->off == in->len && readable) {
                ssize_t r = read(in->fd, in->buf, sizeof in->buf);
                if (r > 0) {
                        in->len = (size_t)r;
                        in->off = 0;
                        moved = 1;
                } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                        in->eof = true;
                }
        }
        while (in->off < in->len) {
                ssize_t w = libssh2_channel_write(ch, in->buf + in->off, in->len - in->off);
                if (w == LIBSSH2_ERROR_EAGAIN)
                        return moved;
                if (w < 0) {   /* the command closed its stdin: drop the rest */
                        in->off = in->len;
                        in->eof = true;
                        break;
                }
                in->off += (size_t)w;
                moved = 1;
        }
        if (in->eof && !in->eof_sent && in->off == in->len) {
                int r = libssh2_channel_send_eof(ch);
                if (r != LIBSSH2_ERROR_EAGAIN) {
                        in->eof_sent = true;
                        in->fd = -1;
                        moved = 1;
                }
        }
        return moved;
}

/* Drain one of the command's output streams into fd; -1 on a channel
 * error, else how many bytes moved (0: nothing ready). */
static ssize_t pump_out(LIBSSH2_CHANNEL *ch, int stream, int fd, bool *fd_ok)
{
        char buf[32768];
        ssize_t total = 0;
        for (;;) {
                ssize_t r = libssh2_channel_read_ex(ch, stream, buf, sizeof buf);
                if (r == LIBSSH2_ERROR_EAGAIN || r == 0)
                        return total;
                if (r < 0)
                        return -1;
                /* A closed stdout (`| head`) stops our copy, not the command. */
                if (*fd_ok && write_all(fd, buf, (size_t)r) < 0)
                        *fd_ok = false;
                total += r;
        }
}

int sshx_exec(struct sshx *s, const char *cmd, int in_fd, int out_fd, int err_fd, int *status,
              struct bg_err **err)
{
        LIBSSH2_CHANNEL *ch = libssh2_channel_open_session(s->session);
        if (!ch)
                return bg_error(err, EPROTO, "SSH: open a channel: %s", ssh_errmsg(s->session));
        if (libssh2_channel_exec(ch, cmd) != 0) {
                bg_error(err, EPROTO, "SSH: run the command: %s", ssh_errmsg(s->session));
                libssh2_channel_free(ch);
                return -EPROTO;
        }
        void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
        libssh2_session_set_blocking(s->session, 0);
        struct pump_in *in = xcalloc(1, sizeof *in);
        in->fd = in_fd;
        in->eof = in_fd < 0;
        bool out_ok = true, err_ok = true;
        int rc = 0;
        for (;;) {
                if (sshx_interrupted) {
                        rc = bg_error(err, EINTR, "interrupted");
                        break;
                }
                ssize_t a = pump_out(ch, 0, out_fd, &out_ok);
                ssize_t b = pump_out(ch, SSH_EXTENDED_DATA_STDERR, err_fd, &err_ok);
                if (a < 0 || b < 0) {
                        rc = bg_error(err, EPROTO, "SSH: the connection broke: %s", ssh_errmsg(s->session));
                        break;
                }
                int moved = pump_stdin(ch, in, false);
                if (libssh2_channel_eof(ch))
                        break;
                if (a || b || moved)
                        continue;
                struct pollfd p[2] = { { .fd = s->fd }, { .fd = -1 } };
                int dir = libssh2_session_block_directions(s->session);
                p[0].events = POLLIN | ((dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) ? POLLOUT : 0);
                if (in->fd >= 0 && !in->eof && in->off == in->len)
                        p[1] = (struct pollfd){ .fd = in->fd, .events = POLLIN };
                if (poll(p, 2, 1000) < 0 && errno != EINTR) {
                        rc = bg_error(err, errno, "poll: %s", strerror(errno));
                        break;
                }
                if (p[1].revents)
                        pump_stdin(ch, in, true);
        }
        free(in);
        libssh2_session_set_blocking(s->session, 1);
        signal(SIGPIPE, old_pipe);
        if (rc == -EINTR) {
                /* Closing the channel hangs up the command's session. */
                libssh2_session_set_timeout(s->session, 2000);
                libssh2_channel_close(ch);
        } else if (rc == 0) {
                libssh2_channel_close(ch);
                libssh2_channel_wait_closed(ch);
                char *sig = NULL;
                size_t siglen = 0;
                libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL, NULL, NULL);
                if (sig && siglen) {
                        *status = 128 + signal_number(sig, siglen);
                } else {
                        *status = libssh2_channel_get_exit_status(ch) & 0xff;
                }
                free(sig);
        }
        libssh2_channel_free(ch);
        return rc;
}

char *sshx_quote(const char *w)
{
        if (*w && strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=./:,@%") ==
                          strlen(w))
                return xstrdup(w);
        size_t n = 2;
        for (const char *p = w; *p; p++)
                n += *p == '\'' ? 4 : 1;
        char *q = xmalloc(n + 1), *o = q;
        *o++ = '\'';
        for (const char *p = w; *p; p++) {
                if (*p == '\'') {
                        memcpy(o, "'\\''", 4);
                        o += 4;
                } else {
                        *o++ = *p;
                }
        }
        *o++ = '\'';
        *o = '\0';
        return q;
}

char *sshx_quote_argv(char *const *argv, int argc)
{
        char *line = xstrdup("");
        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *q = sshx_quote(argv[i]);
                char *next = xasprintf("%s%s%s", line, i ? " " : "", q);
                free(line);
                line = next;
        }
        return line;
}

char **sshx_openssh_argv(const struct ssh_target *t, bool tty, const char *remote)
{
        char **v = xcalloc(32, sizeof *v);
        size_t n = 0;
        v[n++] = xstrdup("ssh");
        v[n++] = xstrdup(tty ? "-t" : "-T");
        v[n++] = xstrdup("-i");
        v[n++] = xstrdup(t->key);
        const char *fixed[] = { "IdentitiesOnly=yes", "StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null",
                                "UpdateHostKeys=no", "PasswordAuthentication=no", "LogLevel=ERROR" };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                v[n++] = xstrdup("-o");
                v[n++] = xstrdup(fixed[i]);
        }
        v[n++] = xstrdup("-o");
        v[n++] = xasprintf("UserKnownHostsFile=%s", t->known_hosts);
        v[n++] = xstrdup("-o");
        v[n++] = xasprintf("HostKeyAlias=%s.vm", t->name);
        v[n++] = xstrdup("-p");
        v[n++] = xasprintf("%d", t->port);
        v[n++] = xasprintf("root@%s", t->ip);
        if (remote) {
                v[n++] = xstrdup("--");
                v[n++] = xstrdup(remote);
        }
        return v;
}
