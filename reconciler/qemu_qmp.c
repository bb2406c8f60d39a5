/* qemu_qmp: see qemu_qmp.h.  QMP is one JSON object per line. */
#include "qemu_qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

/* The next message that is not an event; *out is a new reference. */
static int qmp_read(struct qemu_qmp *c, int timeout_ms, json_t **out)
{
        int64_t end = now_mono_ms() + timeout_ms;
        for (;;) {
                char *nl = memchr(c->buf, '\n', c->n);
                if (nl) {
                        size_t len = (size_t)(nl - c->buf) + 1;
                        json_t *j = json_loadb(c->buf, len, 0, NULL);
                        memmove(c->buf, c->buf + len, c->n - len);
                        c->n -= len;
                        if (j && !json_object_get(j, "event")) {
                                *out = j;
                                return 0;
                        }
                        json_decref(j);
                        continue;
                }
                if (c->n == sizeof c->buf)
                        return -EMSGSIZE;
                int64_t left = end - now_mono_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int r = poll(&p, 1, (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -ETIMEDOUT;
                ssize_t got = read(c->fd, c->buf + c->n, sizeof c->buf - c->n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        return got < 0 ? -errno : -ECONNRESET;
                c->n += (size_t)got;
        }
}

int qemu_qmp_exec(struct qemu_qmp *c, const char *cmd, int timeout_ms, struct bg_err **err)
{
        _cleanup_free_ char *msg = xasprintf("{\"execute\":\"%s\"}\n", cmd);
        if (send(c->fd, msg, strlen(msg), MSG_NOSIGNAL) != (ssize_t)strlen(msg))
                return bg_error(err, errno, "qmp %s: send: %s", cmd, strerror(errno));
        json_t *j = NULL;
        int r = qmp_read(c, timeout_ms, &j);
        if (r < 0)
                return bg_error(err, -r, "qmp %s: %s", cmd, strerror(-r));
        json_t *e = json_object_get(j, "error");
        if (e) {
                const char *desc = json_string_value(json_object_get(e, "desc"));
                r = bg_error(err, EIO, "qmp %s: %s", cmd, desc ? desc : "error");
        }
        json_decref(j);
        return r;
}

void qemu_qmp_close(struct qemu_qmp *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

int qemu_qmp_open(const char *dir, int timeout_ms, struct qemu_qmp *c, struct bg_err **err)
{
        c->n = 0;
        c->fd = -1;
        _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return bg_error(err, errno, "open '%s': %s", dir, strerror(errno));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/qmp.sock", dfd);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return bg_error(err, errno, "socket: %s", strerror(errno));
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int e = errno;
                qemu_qmp_close(c);
                return bg_error(err, e, "qmp connect '%s/qmp.sock': %s", dir, strerror(e));
        }
        json_t *greet = NULL;
        int r = qmp_read(c, timeout_ms, &greet);
        bool ok = r == 0 && json_object_get(greet, "QMP");
        json_decref(greet);
        if (!ok) {
                qemu_qmp_close(c);
                return bg_error(err, r < 0 ? -r : EPROTO, "qmp greeting: %s", r < 0 ? strerror(-r) : "not qmp");
        }
        if (qemu_qmp_exec(c, "qmp_capabilities", timeout_ms, err) < 0) {
                qemu_qmp_close(c);
                return -EPROTO;
        }
        return 0;
}

int qemu_qmp_command(const char *dir, const char *cmd, int timeout_ms, struct bg_err **err)
{
        struct qemu_qmp c;
        if (qemu_qmp_open(dir, timeout_ms, &c, err) < 0)
                return -EIO;
        int r = qemu_qmp_exec(&c, cmd, timeout_ms, err);
        qemu_qmp_close(&c);
        return r;
}
