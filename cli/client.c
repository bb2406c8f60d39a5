/* client: see client.h.
 *
 * HTTP/1.1 over bangerd's Unix socket, answers parsed with http-parser
 * (Node's original parser, the one libgit2 uses).  libcurl did this until
 * it became clear that it loads 33 shared libraries at every start of the
 * CLI (8 of its 17 ms) to talk to one socket of our own daemon; the
 * parser is the hard part of a client and stays a library.
 *
 * One connection is kept for plain requests, so the waits of `apply`,
 * `delete` and `vm run` reuse it; a stream or an upgrade gets its own.
 * A kept connection the daemon closed meanwhile (its 60 s idle timeout)
 * is redialled once, which is safe because plain requests change nothing
 * or, for POST kill/start, nothing twice.  Bodies are size-limited while
 * they arrive, before they are parsed. */
#include "client.h"

#include <errno.h>
#include <http_parser.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "sshexec.h"
#include "util.h"
#include "version.h"

#define BODY_MAX (64u * 1024 * 1024)   /* a whole list of sandboxes */
#define LINE_MAX_BYTES (1024u * 1024)  /* one event */
#define ERRBODY_MAX (64u * 1024)
#define HEADER_VALUE_MAX 256           /* the only header read is X-Banger-Seq */
#define REQUEST_TIMEOUT_MS 30000
#define READ_CHUNK 16384

struct client {
        char *socket;
        int fd;              /* the kept connection, -1 when none */
        uint64_t seq;        /* X-Banger-Seq of the last plain answer */
        bool has_seq;
};

struct buf {
        char *data;
        size_t len, cap, max;
        bool overflow;
};

static bool buf_add(struct buf *b, const char *p, size_t n)
{
        if (b->len + n > b->max) {
                b->overflow = true;
                return false;
        }
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap < b->len + n + 1)
                        cap *= 2;
                b->data = xrealloc(b->data, cap);
                b->cap = cap;
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return true;
}

struct client *client_new(const char *socket_path)
{
        struct client *c = xcalloc(1, sizeof *c);
        c->socket = xstrdup(socket_path);
        c->fd = -1;
        return c;
}

static void drop_conn(struct client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

void client_free(struct client *c)
{
        if (!c)
                return;
        drop_conn(c);
        free(c->socket);
        free(c);
}

char *client_escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = xmalloc(strlen(s) * 3 + 1), *o = out;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~", *p)) {
                        *o++ = (char)*p;
                } else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        }
        *o = '\0';
        return out;
}

/* Nothing answered at all: the daemon is not there, and the user needs
 * the socket path and the reason. */
static int unreachable(const struct client *c, int e, struct bg_err **err)
{
        return bg_error(err, ECONNREFUSED, "cannot reach bangerd at %s: %s (is bangerd running?)", c->socket,
                        strerror(e));
}

static int dial(const struct client *c, int *fd, struct bg_err **err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(c->socket) >= sizeof sa.sun_path)
                return bg_error(err, ENAMETOOLONG, "socket path '%s' is too long", c->socket);
        memcpy(sa.sun_path, c->socket, strlen(c->socket) + 1);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return bg_error(err, errno, "socket: %s", strerror(errno));
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int e = errno;
                close(s);
                return unreachable(c, e, err);
        }
        *fd = s;
        return 0;
}

/* ---- one answer, fed to http-parser as it arrives ---- */

enum body_mode { BODY_KEEP, BODY_LINES };

struct answer {
        http_parser p;
        long status;
        bool headers_done, complete;
        /* the header being read */
        struct buf field, value;
        bool in_value;
        uint64_t seq;
        bool has_seq;
        /* the body */
        enum body_mode mode;
        struct buf body;         /* BODY_KEEP, or an error answer's text */
        struct buf line;         /* BODY_LINES: the line being read */
        client_line_fn fn;
        void *arg;
        int stopped;             /* fn's non-zero value */
        bool too_long;
};

static void header_done(struct answer *a)
{
        if (a->field.data && a->value.data && !a->field.overflow && !a->value.overflow &&
            strcasecmp(a->field.data, "X-Banger-Seq") == 0) {
                char *end;
                errno = 0;
                unsigned long long v = strtoull(a->value.data, &end, 10);
                if (!errno && end != a->value.data && !*end && a->value.data[0] != '-') {
                        a->seq = v;
                        a->has_seq = true;
                }
        }
        a->field.len = a->value.len = 0;
        a->field.overflow = a->value.overflow = false;
        if (a->field.data)
                a->field.data[0] = '\0';
        if (a->value.data)
                a->value.data[0] = '\0';
        a->in_value = false;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
        struct answer *a = p->data;
        if (a->in_value)
                header_done(a);
        buf_add(&a->field, at, n);   /* a name too long for the limit is simply not ours */
        return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
        struct answer *a = p->data;
        a->in_value = true;
        buf_add(&a->value, at, n);
        return 0;
}

static int on_headers_complete(http_parser *p)
{
        struct answer *a = p->data;
        if (a->in_value)
                header_done(a);
        a->status = p->status_code;
        a->headers_done = true;
        return 0;
}

static int deliver(struct answer *a)
{
        size_t n = a->line.len;
        while (n && (a->line.data[n - 1] == '\r' || a->line.data[n - 1] == ' '))
                n--;
        int r = 0;
        if (n) {
                a->line.data[n] = '\0';
                json_t *j = json_loadb(a->line.data, n, 0, NULL);
                r = a->fn(a->line.data, j, a->arg);
                json_decref(j);
        }
        a->line.len = 0;
        return r;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
        struct answer *a = p->data;
        bool ok_status = a->status >= 200 && a->status <= 299;
        if (a->mode == BODY_KEEP || !ok_status) {
                /* An error answer's excess is dropped: its message is short. */
                return buf_add(&a->body, at, n) || !ok_status ? 0 : -1;
        }
        for (size_t i = 0; i < n;) {
                const char *nl = memchr(at + i, '\n', n - i);
                size_t take = nl ? (size_t)(nl - (at + i)) : n - i;
                if (!buf_add(&a->line, at + i, take)) {
                        a->too_long = true;
                        return -1;
                }
                i += take;
                if (nl) {
                        i++;
                        int r = deliver(a);
                        if (r) {
                                a->stopped = r;
                                return -1;
                        }
                }
        }
        return 0;
}

static int on_message_complete(http_parser *p)
{
        struct answer *a = p->data;
        a->complete = true;
        return 0;
}

static const http_parser_settings settings = {
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

static void answer_init(struct answer *a, enum body_mode mode)
{
        memset(a, 0, sizeof *a);
        http_parser_init(&a->p, HTTP_RESPONSE);
        a->p.data = a;
        a->mode = mode;
        a->field.max = a->value.max = HEADER_VALUE_MAX;
        a->body.max = mode == BODY_KEEP ? BODY_MAX : ERRBODY_MAX;
        a->line.max = LINE_MAX_BYTES;
}

static void answer_release(struct answer *a)
{
        free(a->field.data);
        free(a->value.data);
        free(a->body.data);
        free(a->line.data);
}

enum read_result { READ_DONE, READ_UPGRADED, READ_FAILED, READ_CLOSED_EARLY };

/* Read and parse until the answer is complete (or, with upgrade, its
 * headers are: *rest then holds the bytes past them).  timeout_ms < 0:
 * none.  READ_CLOSED_EARLY: the peer closed before sending a byte. */
static enum read_result read_answer(int fd, struct answer *a, int timeout_ms, const char *what, bool upgrade,
                                    struct buf *rest, struct bg_err **err)
{
        int64_t deadline = timeout_ms < 0 ? 0 : now_mono_ms() + timeout_ms;
        char chunk[READ_CHUNK];
        bool got_any = false;
        for (;;) {
                int wait = -1;
                if (deadline) {
                        int64_t left = deadline - now_mono_ms();
                        if (left <= 0) {
                                bg_error(err, ETIMEDOUT, "%s: bangerd did not answer within %d s", what,
                                         timeout_ms / 1000);
                                return READ_FAILED;
                        }
                        wait = (int)left;
                }
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int r = poll(&pfd, 1, wait);
                if (r < 0 && errno == EINTR) {
                        if (sshx_interrupted) {
                                bg_error(err, EINTR, "%s: interrupted", what);
                                return READ_FAILED;
                        }
                        continue;
                }
                if (r < 0) {
                        bg_error(err, errno, "%s: poll: %s", what, strerror(errno));
                        return READ_FAILED;
                }
                if (r == 0)
                        continue;   /* the deadline check above ends it */
                ssize_t n = read(fd, chunk, sizeof chunk);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0) {
                        bg_error(err, errno, "%s: read from bangerd: %s", what, strerror(errno));
                        return READ_FAILED;
                }
                if (n == 0 && !got_any)
                        return READ_CLOSED_EARLY;
                got_any = true;
                /* n == 0 tells the parser about the end of the connection. */
                size_t used = http_parser_execute(&a->p, &settings, chunk, (size_t)n);
                if (upgrade && a->p.upgrade && a->headers_done) {
                        if (!buf_add(rest, chunk + used, (size_t)n - used)) {
                                bg_error(err, EMSGSIZE, "%s: too much data right after the upgrade", what);
                                return READ_FAILED;
                        }
                        return READ_UPGRADED;
                }
                if (a->stopped || a->too_long)
                        return READ_FAILED;
                if (a->body.overflow && a->status >= 200 && a->status <= 299) {
                        bg_error(err, EFBIG, "%s: reply larger than %u bytes", what, BODY_MAX);
                        return READ_FAILED;
                }
                if (n == 0 && !a->complete) {
                        bg_error(err, EIO, "%s: bangerd closed the connection mid-answer", what);
                        return READ_FAILED;
                }
                if (HTTP_PARSER_ERRNO(&a->p) != HPE_OK) {
                        bg_error(err, EPROTO, "%s: bad HTTP answer from bangerd: %s", what,
                                 http_errno_description(HTTP_PARSER_ERRNO(&a->p)));
                        return READ_FAILED;
                }
                if (a->complete)
                        return READ_DONE;
        }
}

/* send(2) with MSG_NOSIGNAL: a daemon that closed the connection is an
 * error to report, not a SIGPIPE. */
static int send_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static int send_request(int fd, const char *method, const char *path, const char *extra)
{
        _cleanup_free_ char *req = xasprintf("%s %s HTTP/1.1\r\nHost: banger\r\nUser-Agent: banger/%s\r\n"
                                             "Accept: */*\r\n%s%s\r\n",
                                             method, path, BANGER_VERSION,
                                             strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "",
                                             extra ? extra : "");
        int r = send_all(fd, req, strlen(req));
        if (r < 0)
                errno = -r;
        return r;
}

/* The API's error object, or the bare status when the body has none. */
static int api_error(const char *path, long status, const json_t *body, struct bg_err **err)
{
        const char *msg = json_string_value(json_object_get(body, "message"));
        int code = status == 404 ? ENOENT : EIO;
        if (msg && *msg)
                return bg_error(err, code, "%s", msg);
        return bg_error(err, code, "GET %s: HTTP status %ld", path, status);
}

static int error_of(const char *path, const struct answer *a, struct bg_err **err)
{
        json_t *j = a->body.len ? json_loadb(a->body.data, a->body.len, 0, NULL) : NULL;
        int r = api_error(path, a->status, j, err);
        json_decref(j);
        return r;
}

static int request(struct client *c, bool post, const char *path, long *status, json_t **body, struct bg_err **err)
{
        const char *method = post ? "POST" : "GET";
        _cleanup_free_ char *what = xasprintf("%s %s", method, path);
        c->has_seq = false;
        for (int attempt = 0;; attempt++) {
                bool reused = c->fd >= 0;
                if (!reused && dial(c, &c->fd, err) < 0)
                        return -ECONNREFUSED;
                if (send_request(c->fd, method, path, NULL) < 0) {
                        int e = errno;
                        drop_conn(c);
                        if (reused && attempt == 0)
                                continue;   /* the daemon closed the kept connection */
                        return bg_error(err, e, "%s: send to bangerd at %s: %s", what, c->socket, strerror(e));
                }
                struct answer a;
                answer_init(&a, BODY_KEEP);
                enum read_result rr = read_answer(c->fd, &a, REQUEST_TIMEOUT_MS, what, false, NULL, err);
                if (rr == READ_CLOSED_EARLY) {
                        answer_release(&a);
                        drop_conn(c);
                        if (reused && attempt == 0)
                                continue;
                        return bg_error(err, EIO, "%s: bangerd at %s closed the connection without answering",
                                        what, c->socket);
                }
                if (rr != READ_DONE) {
                        answer_release(&a);
                        drop_conn(c);   /* a broken connection must not be reused */
                        return -EIO;
                }
                if (!http_should_keep_alive(&a.p))
                        drop_conn(c);
                *status = a.status;
                *body = a.body.len ? json_loadb(a.body.data, a.body.len, 0, NULL) : NULL;
                c->seq = a.seq;
                c->has_seq = a.has_seq;
                answer_release(&a);
                return 0;
        }
}

int client_get(struct client *c, const char *path, long *status, json_t **body, struct bg_err **err)
{
        return request(c, false, path, status, body, err);
}

int client_post_ok(struct client *c, const char *path, json_t **body, struct bg_err **err)
{
        long status = 0;
        json_t *j = NULL;
        if (request(c, true, path, &status, &j, err) < 0)
                return -EIO;
        if (status < 200 || status > 299) {
                int r = api_error(path, status, j, err);
                json_decref(j);
                return r;
        }
        if (body)
                *body = j;
        else
                json_decref(j);
        return 0;
}

int client_get_ok(struct client *c, const char *path, json_t **body, struct bg_err **err)
{
        long status = 0;
        json_t *j = NULL;
        if (client_get(c, path, &status, &j, err) < 0)
                return -EIO;
        if (status < 200 || status > 299) {
                int r = api_error(path, status, j, err);
                json_decref(j);
                return r;
        }
        if (!j)
                return bg_error(err, EPROTO, "GET %s: reply is not JSON", path);
        *body = j;
        return 0;
}

int client_get_sandbox(struct client *c, const char *name, json_t **obj, struct bg_err **err)
{
        _cleanup_free_ char *esc = client_escape(name);
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", esc);
        long status = 0;
        json_t *j = NULL;
        *obj = NULL;
        if (client_get(c, path, &status, &j, err) < 0)
                return -EIO;
        if (status == 404) {
                json_decref(j);
                return 0;
        }
        if (status < 200 || status > 299) {
                int r = api_error(path, status, j, err);
                json_decref(j);
                return r;
        }
        if (!json_is_object(j)) {
                json_decref(j);
                return bg_error(err, EPROTO, "GET %s: reply is not a JSON object", path);
        }
        *obj = j;
        return 0;
}

bool client_last_seq(const struct client *c, uint64_t *seq)
{
        *seq = c->seq;
        return c->has_seq;
}

int client_wait_events(struct client *c, uint64_t since, int timeout_ms, struct bg_err **err)
{
        _cleanup_free_ char *path = xasprintf("/v1/events?since=%llu&wait=%d", (unsigned long long)since,
                                              timeout_ms < 0 ? 0 : timeout_ms);
        long status = 0;
        json_t *j = NULL;
        if (client_get(c, path, &status, &j, err) < 0)
                return -EIO;
        int r = 0;
        if (status < 200 || status > 299)
                r = api_error(path, status, j, err);
        json_decref(j);
        return r;
}

int client_stream(struct client *c, const char *path, client_line_fn fn, void *arg, struct bg_err **err)
{
        _cleanup_free_ char *what = xasprintf("GET %s", path);
        _cleanup_close_ int fd = -1;
        if (dial(c, &fd, err) < 0)
                return -ECONNREFUSED;
        if (send_request(fd, "GET", path, NULL) < 0)
                return bg_error(err, errno, "%s: send to bangerd at %s: %s", what, c->socket, strerror(errno));
        struct answer a;
        answer_init(&a, BODY_LINES);
        a.fn = fn;
        a.arg = arg;
        enum read_result rr = read_answer(fd, &a, -1, what, false, NULL, err);
        int r = 0;
        if (a.stopped)
                r = a.stopped;
        else if (a.too_long)
                r = bg_error(err, EFBIG, "%s: a line longer than %u bytes", what, LINE_MAX_BYTES);
        else if (rr == READ_CLOSED_EARLY)
                r = bg_error(err, EIO, "%s: bangerd at %s closed the connection without answering", what,
                             c->socket);
        else if (rr != READ_DONE)
                r = -EIO;
        else if (a.status < 200 || a.status > 299)
                r = error_of(path, &a, err);
        else if (a.line.len)
                r = deliver(&a);   /* a last line without '\n' */
        answer_release(&a);
        return r;
}

int client_upgrade(struct client *c, const char *path, const char *protocol, int *fd, void *rest,
                   size_t rest_cap, size_t *rest_len, struct bg_err **err)
{
        _cleanup_free_ char *what = xasprintf("POST %s", path);
        _cleanup_free_ char *extra = xasprintf("Connection: Upgrade\r\nUpgrade: %s\r\n", protocol);
        _cleanup_close_ int s = -1;
        if (dial(c, &s, err) < 0)
                return -ECONNREFUSED;
        if (send_request(s, "POST", path, extra) < 0)
                return bg_error(err, errno, "%s: send to bangerd at %s: %s", what, c->socket, strerror(errno));
        struct answer a;
        answer_init(&a, BODY_KEEP);
        a.body.max = ERRBODY_MAX;
        struct buf left = { .max = rest_cap };
        enum read_result rr = read_answer(s, &a, REQUEST_TIMEOUT_MS, what, true, &left, err);
        int r = 0;
        if (rr == READ_UPGRADED && a.status == 101) {
                memcpy(rest, left.data ? left.data : "", left.len);
                *rest_len = left.len;
                *fd = s;
                s = -1;
        } else if (rr == READ_DONE) {
                r = a.status == 101 ? bg_error(err, EPROTO, "%s: bangerd switched protocols without an upgrade",
                                               what)
                                    : error_of(path, &a, err);
        } else if (rr == READ_CLOSED_EARLY) {
                r = bg_error(err, EIO, "%s: bangerd closed the connection before answering", what);
        } else {
                r = -EIO;
        }
        free(left.data);
        answer_release(&a);
        return r;
}
