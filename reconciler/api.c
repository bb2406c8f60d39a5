/* api: bangerd's read-only REST API on a Unix socket (see docs/api.md).
 *
 * libmicrohttpd runs every connection in its own thread, so an events
 * follow stream may simply block in its content callback: it waits on the
 * hub in short slices and re-reads the store when the hub announces a newer
 * sequence.  Read transactions live only while a batch of events is copied
 * out, never across a wait, so a slow client cannot pin old LMDB pages.
 *
 * We make the listening socket ourselves because MHD only binds TCP, and
 * because the stale-socket check and the 0660 mode must happen before
 * anyone can connect.  Sandbox objects come from the loop through
 * api_source; this module only routes, filters and serialises.
 */
#include "api.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "err.h"
#include "hub.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "version.h"

#define API_CONN_LIMIT 64u
#define API_IDLE_TIMEOUT_S 60u   /* idle keep-alive clients; follow streams are exempt */
#define EVENTS_BATCH 256         /* events copied out per read transaction */
#define FOLLOW_SLICE_MS 1000     /* how often a blocked follow stream looks at shutdown and hangup */
#define EVENTS_WAIT_MAX_MS 60000 /* the longest ?wait= */
#define SEQ_HEADER "X-Banger-Seq"
#define STREAM_BLOCK 32768
#define NAME_MAX_LEN 63

struct api {
        struct MHD_Daemon *mhd;
        int fd;
        char *path;
        dev_t dev;               /* identity of our socket file, so stop never */
        ino_t ino;               /* unlinks one that a later daemon put there */
        const struct api_source *src;
        atomic_bool stopping;
};

/* One request: what the handler needs to answer and log. */
struct req {
        struct api *a;
        struct MHD_Connection *c;
        unsigned status;
        const char *allow;       /* the method a 405 names */
        uint64_t seq;            /* the latest event seq before the request was handled */
};

/* One events response; owned by MHD's response once created. */
struct stream {
        struct api *a;
        struct MHD_Connection *c;
        uint64_t after;          /* highest seq already looked at */
        uint64_t hub_seen;       /* highest seq the hub announced */
        int64_t wait_until;      /* ?wait=: block until this (monotonic ms) for a first event; 0 = no */
        bool follow, closing, done, sent;
        char name[NAME_MAX_LEN + 1];   /* "" = every sandbox */
        char *buf;               /* NDJSON not yet handed to MHD */
        size_t len, off, cap;
};

static bool valid_name(const char *s)
{
        size_t n = strlen(s);
        if (n < 1 || n > NAME_MAX_LEN)
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* Client-supplied text goes into log lines and JSON strings: keep it short,
 * printable ASCII, so it can neither split a log line nor make jansson
 * reject invalid UTF-8. */
static const char *clean(const char *s, char *out, size_t len)
{
        size_t i = 0;
        for (; s && s[i] && i + 1 < len; i++)
                out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        out[i] = '\0';
        return out;
}

/* ---- responses ---- */

static enum MHD_Result reply(struct req *rq, unsigned status, struct MHD_Response *r)
{
        /* Every answer says how far the event log went before it was made:
         * a client that saw this state waits for events after that seq
         * (GET /v1/events?since=SEQ&wait=MS) instead of polling. */
        char seq[24];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)rq->seq);
        MHD_add_response_header(r, SEQ_HEADER, seq);
        rq->status = status;
        enum MHD_Result ret = MHD_queue_response(rq->c, status, r);
        MHD_destroy_response(r);
        return ret;
}

/* Serialise j (reference stolen) as one line of compact JSON. */
static struct MHD_Response *json_response(json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                abort();   /* only on out-of-memory: every value we build is valid */
        char *body = xasprintf("%s\n", s);
        free(s);
        struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
        if (!r)
                abort();
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        return r;
}

static enum MHD_Result send_json(struct req *rq, unsigned status, json_t *j)
{
        return reply(rq, status, json_response(j));
}

__attribute__((format(printf, 3, 4)))
static enum MHD_Result send_error(struct req *rq, unsigned status, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        json_t *j = json_pack("{s:s, s:I, s:s}", "kind", "Error", "code", (json_int_t)status,
                              "message", msg);
        free(msg);
        if (!j)
                abort();
        struct MHD_Response *r = json_response(j);
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rq->allow ? rq->allow : "GET");
        return reply(rq, status, r);
}

/* ---- GET /v1/version, /v1/sandboxes, /v1/sandboxes/{name} ---- */

static enum MHD_Result get_version(struct req *rq)
{
        const struct api_source *src = rq->a->src;
        json_t *j = json_pack("{s:s, s:s, s:s?}", "version", BANGER_VERSION, "api", "banger/v1",
                              "driver", src->driver);
        if (!j)
                abort();
        return send_json(rq, MHD_HTTP_OK, j);
}

static bool has_label(json_t *item, const char *key, const char *val)
{
        json_t *v = json_object_get(json_object_get(json_object_get(item, "metadata"), "labels"), key);
        return json_is_string(v) && strcmp(json_string_value(v), val) == 0;
}

/* A streamed SandboxList: header, then one item per callback, then the
 * footer.  Items that vanished meanwhile or fail the label filter are
 * skipped. */
struct list_stream {
        const struct api_source *src;
        char **names;
        size_t n, next;
        char *key, *val;        /* label filter, NULL for none */
        char *chunk;            /* text not yet sent */
        size_t len, off;
        int stage;              /* 0 header, 1 items, 2 footer, 3 done */
        bool first;
};

static void list_free(void *arg)
{
        struct list_stream *ls = arg;
        for (size_t i = 0; i < ls->n; i++)
                free(ls->names[i]);
        free(ls->names);
        free(ls->key);
        free(ls->chunk);
        free(ls);
}

static void list_set_chunk(struct list_stream *ls, char *text)
{
        free(ls->chunk);
        ls->chunk = text;
        ls->len = strlen(text);
        ls->off = 0;
}

/* Produce the next piece of text; false when everything was produced. */
static bool list_advance(struct list_stream *ls)
{
        while (ls->stage < 3) {
                if (ls->stage == 0) {
                        ls->stage = 1;
                        list_set_chunk(ls, xstrdup("{\"apiVersion\":\"banger/v1\",\"kind\":\"SandboxList\",\"items\":["));
                        return true;
                }
                if (ls->stage == 2) {
                        ls->stage = 3;
                        list_set_chunk(ls, xstrdup("]}\n"));
                        return true;
                }
                if (ls->next == ls->n) {
                        ls->stage = 2;
                        continue;
                }
                json_t *it = ls->src->get_sandbox(ls->src->arg, ls->names[ls->next++]);
                if (!it || (ls->key && !has_label(it, ls->key, ls->val))) {
                        json_decref(it);
                        continue;
                }
                char *s = json_dumps(it, JSON_COMPACT);
                json_decref(it);
                if (!s)
                        abort();
                list_set_chunk(ls, ls->first ? s : xasprintf(",%s", s));
                if (!ls->first)
                        free(s);
                ls->first = false;
                return true;
        }
        return false;
}

static ssize_t list_read(void *arg, uint64_t pos, char *buf, size_t max)
{
        (void)pos;
        struct list_stream *ls = arg;
        size_t out = 0;
        while (out < max) {
                if (ls->off == ls->len && !list_advance(ls))
                        break;
                size_t take = ls->len - ls->off;
                if (take > max - out)
                        take = max - out;
                memcpy(buf + out, ls->chunk + ls->off, take);
                ls->off += take;
                out += take;
        }
        return out ? (ssize_t)out : MHD_CONTENT_READER_END_OF_STREAM;
}

static enum MHD_Result list_sandboxes(struct req *rq)
{
        const struct api_source *src = rq->a->src;
        const char *label = MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, "label");
        char tmp[128];
        struct list_stream *ls = xcalloc(1, sizeof *ls);
        ls->src = src;
        ls->first = true;
        if (label) {
                const char *eq = strchr(label, '=');
                if (!eq || eq == label) {
                        list_free(ls);
                        return send_error(rq, MHD_HTTP_BAD_REQUEST,
                                          "invalid label filter '%s': want key=value",
                                          clean(label, tmp, sizeof tmp));
                }
                /* One copy holds both: "key\0value". */
                ls->key = xstrdup(label);
                ls->key[eq - label] = '\0';
                ls->val = ls->key + (eq - label) + 1;
        }
        ls->names = src->list_names(src->arg, &ls->n);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, list_read, ls,
                                                                   list_free);
        if (!r) {
                list_free(ls);
                abort();
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        return reply(rq, MHD_HTTP_OK, r);
}

static enum MHD_Result get_sandbox(struct req *rq, const char *name)
{
        const struct api_source *src = rq->a->src;
        char tmp[128];
        if (!valid_name(name))
                return send_error(rq, MHD_HTTP_BAD_REQUEST,
                                  "invalid sandbox name '%s': want 1-63 of [a-z0-9-]",
                                  clean(name, tmp, sizeof tmp));
        json_t *sb = src->get_sandbox(src->arg, name);
        if (!sb)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "sandbox \"%s\" not found", name);
        return send_json(rq, MHD_HTTP_OK, sb);
}

/* ---- GET /v1/events ---- */

static void stream_append(struct stream *st, const char *s, size_t n)
{
        if (st->len + n > st->cap) {
                st->cap = (st->len + n) * 2;
                st->buf = xrealloc(st->buf, st->cap);
        }
        memcpy(st->buf + st->len, s, n);
        st->len += n;
}

struct fill_ctx {
        struct stream *st;
        size_t seen;
};

static int fill_one(uint64_t seq, json_t *ev, void *arg)
{
        struct fill_ctx *f = arg;
        struct stream *st = f->st;
        f->seen++;
        /* Filtered-out events still advance the cursor: they are consumed. */
        st->after = seq;
        if (st->name[0]) {
                const char *n = json_string_value(json_object_get(ev, "name"));
                if (!n || strcmp(n, st->name) != 0)
                        return 0;
        }
        char *line = json_dumps(ev, JSON_COMPACT);
        if (!line)
                return 0;   /* unserialisable event: skip it rather than end the stream */
        st->sent = true;
        stream_append(st, line, strlen(line));
        stream_append(st, "\n", 1);
        free(line);
        return 0;
}

/* Copy at most one batch of stored events after st->after into st->buf. */
static int stream_fill(struct stream *st, size_t *seen)
{
        struct store *s = st->a->src->store;
        struct store_txn *t = NULL;
        struct bg_err *e = NULL;
        struct fill_ctx f = { .st = st };
        int r = store_txn_begin(s, false, &t, &e);
        if (r == 0) {
                r = store_event_foreach(t, st->after, EVENTS_BATCH, fill_one, &f, &e);
                store_txn_abort(t);
        }
        if (r < 0)
                log_warn("api: read events: %s", bg_err_msg(e));
        bg_err_free(e);
        *seen = f.seen;
        return r;
}

/* A follow client that went away must not keep its thread (and one of the
 * 64 connection slots) until the next event: look for a hangup between
 * slices.  A client that half-closes after its request is treated as gone;
 * HTTP clients do not do that. */
static bool peer_gone(struct MHD_Connection *c)
{
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
                return false;
        struct pollfd p = { .fd = ci->connect_fd, .events = POLLRDHUP };
        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Block until the hub announces something newer, the hub or the api stops
 * (st->closing), the monotonic deadline passes (0: none), or the client
 * hangs up (-1). */
static int stream_wait(struct stream *st, int64_t deadline)
{
        /* Waiting above hub_seen too keeps us from spinning if the hub ever
         * runs ahead of what the store shows. */
        uint64_t floor = st->after > st->hub_seen ? st->after : st->hub_seen;
        for (;;) {
                if (atomic_load(&st->a->stopping)) {
                        st->closing = true;
                        return 0;
                }
                int slice = FOLLOW_SLICE_MS;
                if (deadline) {
                        int64_t left = deadline - now_mono_ms();
                        if (left <= 0)
                                return 0;
                        if (left < slice)
                                slice = (int)left;
                }
                bool closed = false;
                uint64_t latest = hub_wait(st->a->src->hub, floor, slice, &closed);
                if (latest > st->hub_seen)
                        st->hub_seen = latest;
                if (closed)
                        st->closing = true;
                if (closed || latest > floor)
                        return 0;
                if (peer_gone(st->c))
                        return -1;
        }
}

/* MHD's content callback.  Returning 0 would make MHD call again at once,
 * so it only returns data, end of stream or an error. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
        struct stream *st = cls;
        (void)pos;
        for (;;) {
                if (st->off < st->len) {
                        size_t n = st->len - st->off < max ? st->len - st->off : max;
                        memcpy(out, st->buf + st->off, n);
                        st->off += n;
                        return (ssize_t)n;
                }
                st->off = st->len = 0;
                if (st->done)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                size_t seen;
                if (stream_fill(st, &seen) < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                if (st->len > 0 || seen == EVENTS_BATCH)
                        continue;   /* send what we have, or read the next batch */
                /* Caught up with the store.  After the hub closed we took one
                 * last look (above), so whatever was committed is sent.  A
                 * ?wait= request that has nothing to send yet waits for its
                 * first event, then ends like any other. */
                if (!st->follow && !st->sent && !st->closing && st->wait_until > now_mono_ms()) {
                        if (stream_wait(st, st->wait_until) < 0)
                                return MHD_CONTENT_READER_END_WITH_ERROR;
                        if (st->wait_until <= now_mono_ms())
                                st->wait_until = 0;   /* one last look above, then the end */
                        continue;
                }
                if (!st->follow || st->closing) {
                        st->done = true;
                        continue;
                }
                if (stream_wait(st, 0) < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
        }
}

static void stream_free(void *cls)
{
        struct stream *st = cls;
        free(st->buf);
        free(st);
}

/* Parse a non-negative decimal without sign, spaces or overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
        if (!*s || strspn(s, "0123456789") != strlen(s))
                return false;
        errno = 0;
        unsigned long long v = strtoull(s, NULL, 10);
        if (errno == ERANGE)
                return false;
        *out = v;
        return true;
}

static enum MHD_Result get_events(struct req *rq)
{
        char tmp[128];
        uint64_t since = 0;
        bool follow = false;
        const char *q;

        if ((q = MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, "since")) && !parse_u64(q, &since))
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid since '%s': want a sequence number",
                                  clean(q, tmp, sizeof tmp));
        if ((q = MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, "follow"))) {
                if (strcmp(q, "1") == 0 || strcmp(q, "true") == 0)
                        follow = true;
                else if (*q && strcmp(q, "0") != 0 && strcmp(q, "false") != 0)
                        return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid follow '%s': want 0 or 1",
                                          clean(q, tmp, sizeof tmp));
        }
        uint64_t wait_ms = 0;
        if ((q = MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, "wait")) &&
            (!parse_u64(q, &wait_ms) || wait_ms > EVENTS_WAIT_MAX_MS))
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid wait '%s': want 0-%d milliseconds",
                                  clean(q, tmp, sizeof tmp), EVENTS_WAIT_MAX_MS);
        if (wait_ms && follow)
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "wait and follow do not go together");
        const char *name = MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, "name");
        if (name && !valid_name(name))
                return send_error(rq, MHD_HTTP_BAD_REQUEST,
                                  "invalid sandbox name '%s': want 1-63 of [a-z0-9-]",
                                  clean(name, tmp, sizeof tmp));

        struct stream *st = xcalloc(1, sizeof *st);
        st->a = rq->a;
        st->c = rq->c;
        st->after = since;
        st->follow = follow;
        st->wait_until = wait_ms ? now_mono_ms() + (int64_t)wait_ms : 0;
        if (name)
                snprintf(st->name, sizeof st->name, "%s", name);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                   stream_read, st, stream_free);
        if (!r) {
                stream_free(st);
                return send_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot create response");
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
        /* A follow stream is quiet between events by design; the idle
         * timeout is for keep-alive connections, not for it. */
        if (follow || wait_ms)
                MHD_set_connection_option(rq->c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        return reply(rq, MHD_HTTP_OK, r);
}

/* ---- GET /v1/sandboxes/{name}/logs, POST .../kill, GET /v1/doctor ---- */

/* A serial console log, sent as it is and, with follow, as it grows. */
struct log_stream {
        struct api *a;
        struct MHD_Connection *c;
        char name[64];
        int fd;
        bool follow;
};

static void log_stream_free(void *cls)
{
        struct log_stream *ls = cls;
        if (ls->fd >= 0)
                close(ls->fd);
        free(ls);
}

static ssize_t log_stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
        struct log_stream *ls = cls;
        (void)pos;
        for (int idle = 0;; idle++) {
                ssize_t n = read(ls->fd, out, max);
                if (n > 0)
                        return n;
                if (n < 0 && errno != EINTR)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                if (!ls->follow || atomic_load(&ls->a->stopping))
                        return MHD_CONTENT_READER_END_OF_STREAM;
                if (peer_gone(ls->c))
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                /* Once a second, end when the sandbox is gone. */
                if (idle % 5 == 4) {
                        char *p = ls->a->src->console_path(ls->a->src->arg, ls->name);
                        free(p);
                        if (!p)
                                return MHD_CONTENT_READER_END_OF_STREAM;
                }
                usleep(200 * 1000);
        }
}

static enum MHD_Result get_logs(struct req *rq, const char *name)
{
        const struct api_source *src = rq->a->src;
        char tmp[128];
        if (!valid_name(name))
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid sandbox name '%s'", clean(name, tmp, sizeof tmp));
        if (!src->console_path)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "logs are not available");
        _cleanup_free_ char *path = src->console_path(src->arg, name);
        if (!path)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "sandbox \"%s\" has no console log (not created yet?)", name);
        const char *q = MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, "follow");
        bool follow = q && (strcmp(q, "1") == 0 || strcmp(q, "true") == 0);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && !(errno == ENOENT && follow))
                return send_error(rq, MHD_HTTP_NOT_FOUND, "sandbox \"%s\" has no console log yet", name);
        if (fd < 0)
                fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        struct log_stream *ls = xcalloc(1, sizeof *ls);
        ls->a = rq->a;
        ls->c = rq->c;
        ls->fd = fd;
        ls->follow = follow;
        snprintf(ls->name, sizeof ls->name, "%s", name);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, log_stream_read,
                                                                   ls, log_stream_free);
        if (!r) {
                log_stream_free(ls);
                return send_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot create response");
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
        if (follow)
                MHD_set_connection_option(rq->c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        return reply(rq, MHD_HTTP_OK, r);
}

static enum MHD_Result post_action(struct req *rq, const char *name, bool kill)
{
        const struct api_source *src = rq->a->src;
        char tmp[128];
        if (!valid_name(name))
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid sandbox name '%s'", clean(name, tmp, sizeof tmp));
        struct bg_err *err = NULL;
        int (*fn)(void *, const char *, struct bg_err **) = kill ? src->kill : src->start;
        int rc = fn ? fn(src->arg, name, &err) : -ENOSYS;
        if (rc == -ENOENT) {
                bg_err_free(err);
                return send_error(rq, MHD_HTTP_NOT_FOUND, "sandbox \"%s\" not found", name);
        }
        if (rc < 0) {
                enum MHD_Result ret = send_error(rq, MHD_HTTP_CONFLICT, "%s %s: %s", kill ? "kill" : "start", name,
                                                 bg_err_msg(err));
                bg_err_free(err);
                return ret;
        }
        json_t *j = json_pack("{s:s, s:s}", "kind", "Status", "message", kill ? "killed" : "start requested");
        return send_json(rq, MHD_HTTP_OK, j);
}

/* ---- the guest agent: GET .../stats, POST .../exec (upgraded) ---- */

static enum MHD_Result get_stats(struct req *rq, const char *name)
{
        const struct api_source *src = rq->a->src;
        char tmp[128];
        if (!valid_name(name))
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid sandbox name '%s'", clean(name, tmp, sizeof tmp));
        if (!src->agent_ready || !src->agent_stats)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "no guest agents in this bangerd");
        _cleanup_free_ char *why = NULL;
        int rc = src->agent_ready(src->arg, name, &why);
        if (rc == -ENOENT)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "sandbox \"%s\" not found", name);
        if (rc < 0)
                return send_error(rq, MHD_HTTP_CONFLICT, "the guest agent of %s is not ready: %s", name,
                                  why ? why : "unknown");
        struct bg_err *err = NULL;
        json_t *j = NULL;
        if (src->agent_stats(src->arg, name, &j, &err) < 0) {
                enum MHD_Result ret = send_error(rq, MHD_HTTP_BAD_GATEWAY, "stats %s: %s", name, bg_err_msg(err));
                bg_err_free(err);
                return ret;
        }
        return send_json(rq, MHD_HTTP_OK, j);
}

struct upgrade {
        struct api *a;
        char name[NAME_MAX_LEN + 1];
};

/* MHD calls this in the connection's own thread (thread per connection),
 * where blocking for the whole session is allowed. */
static void exec_upgraded(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra, size_t extra_len,
                          MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
        (void)c;
        (void)req_cls;
        struct upgrade *u = cls;
        log_info("exec session name=%s", u->name);
        u->a->src->agent_exec(u->a->src->arg, u->name, sock, extra, extra_len, &u->a->stopping);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        free(u);
}

static enum MHD_Result post_exec(struct req *rq, const char *name)
{
        const struct api_source *src = rq->a->src;
        char tmp[128];
        if (!valid_name(name))
                return send_error(rq, MHD_HTTP_BAD_REQUEST, "invalid sandbox name '%s'", clean(name, tmp, sizeof tmp));
        if (!src->agent_ready || !src->agent_exec)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "no guest agents in this bangerd");
        const char *up = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
        if (!up || strcmp(up, "banger-exec/1") != 0)
                return send_error(rq, MHD_HTTP_UPGRADE_REQUIRED, "exec needs 'Upgrade: banger-exec/1'");
        _cleanup_free_ char *why = NULL;
        int rc = src->agent_ready(src->arg, name, &why);
        if (rc == -ENOENT)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "sandbox \"%s\" not found", name);
        if (rc < 0)
                return send_error(rq, MHD_HTTP_CONFLICT, "the guest agent of %s is not ready: %s", name,
                                  why ? why : "unknown");
        struct upgrade *u = xcalloc(1, sizeof *u);
        u->a = rq->a;
        snprintf(u->name, sizeof u->name, "%s", name);
        struct MHD_Response *r = MHD_create_response_for_upgrade(exec_upgraded, u);
        if (!r) {
                free(u);
                return send_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot create response");
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "banger-exec/1");
        return reply(rq, MHD_HTTP_SWITCHING_PROTOCOLS, r);
}

static enum MHD_Result get_doctor(struct req *rq)
{
        const struct api_source *src = rq->a->src;
        json_t *j = src->doctor ? src->doctor(src->arg) : json_object();
        return send_json(rq, MHD_HTTP_OK, j);
}

/* ---- routing ---- */

static bool has_body(struct MHD_Connection *c)
{
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        return te || (cl && strcmp(cl, "0") != 0);
}

static enum MHD_Result route(struct req *rq, const char *url, const char *method)
{
        static const char sb_prefix[] = "/v1/sandboxes/";
        enum { R_NONE, R_VERSION, R_LIST, R_GET, R_EVENTS, R_LOGS, R_KILL, R_START, R_DOCTOR, R_STATS, R_EXEC } r = R_NONE;
        _cleanup_free_ char *name = NULL;
        char tmp[128];
        const char *want = MHD_HTTP_METHOD_GET;

        if (strcmp(url, "/v1/version") == 0)
                r = R_VERSION;
        else if (strcmp(url, "/v1/sandboxes") == 0)
                r = R_LIST;
        else if (strcmp(url, "/v1/doctor") == 0)
                r = R_DOCTOR;
        else if (strcmp(url, "/v1/events") == 0)
                r = R_EVENTS;
        else if (str_has_prefix(url, sb_prefix)) {
                const char *rest = url + sizeof sb_prefix - 1;
                const char *slash = strchr(rest, '/');
                name = slash ? xstrndup(rest, (size_t)(slash - rest)) : xstrdup(rest);
                if (!slash)
                        r = R_GET;
                else if (strcmp(slash, "/logs") == 0)
                        r = R_LOGS;
                else if (strcmp(slash, "/kill") == 0)
                        r = R_KILL, want = MHD_HTTP_METHOD_POST;
                else if (strcmp(slash, "/start") == 0)
                        r = R_START, want = MHD_HTTP_METHOD_POST;
                else if (strcmp(slash, "/stats") == 0)
                        r = R_STATS;
                else if (strcmp(slash, "/exec") == 0)
                        r = R_EXEC, want = MHD_HTTP_METHOD_POST;
        }

        if (r == R_NONE)
                return send_error(rq, MHD_HTTP_NOT_FOUND, "unknown path '%s'", clean(url, tmp, sizeof tmp));
        if (strcmp(method, want) != 0) {
                rq->allow = want;
                return send_error(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed here",
                                  clean(method, tmp, sizeof tmp));
        }
        /* Nothing here takes input; refusing bodies up front means MHD never
         * buffers one for us. */
        if (has_body(rq->c))
                return send_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "request body not accepted");

        switch (r) {
        case R_VERSION: return get_version(rq);
        case R_LIST:    return list_sandboxes(rq);
        case R_GET:     return get_sandbox(rq, name);
        case R_EVENTS:  return get_events(rq);
        case R_LOGS:    return get_logs(rq, name);
        case R_KILL:    return post_action(rq, name, true);
        case R_START:   return post_action(rq, name, false);
        case R_DOCTOR:  return get_doctor(rq);
        case R_STATS:   return get_stats(rq, name);
        case R_EXEC:    return post_exec(rq, name);
        default:        abort();
        }
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
        struct api *a = cls;
        (void)version;
        (void)upload;
        if (*req_cls) {
                /* We answer on the first call; a body arriving anyway is dropped. */
                *upload_size = 0;
                return MHD_YES;
        }
        *req_cls = a;
        struct req rq = { .a = a, .c = c, .seq = a->src->hub ? hub_latest(a->src->hub) : 0 };
        enum MHD_Result ret = route(&rq, url, method);
        if (log_threshold <= LOGL_DEBUG) {
                char m[16], u[128];
                log_debug("api request method=%s path=%s status=%u", clean(method, m, sizeof m),
                          clean(url, u, sizeof u), rq.status);
        }
        return ret;
}

/* MHD's own messages (mostly client hangups mid-response) are routine for a
 * local API, so they go to debug; real start-up failures surface as the
 * error api_start returns. */
__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        (void)cls;
        if (log_threshold > LOGL_DEBUG)
                return;
        char line[512];
        vsnprintf(line, sizeof line, fmt, ap);
        line[strcspn(line, "\n")] = '\0';
        log_debug("api: mhd: %s", line);
}

/* ---- socket ---- */

/* A socket file left by a daemon that died is replaced; one that answers
 * belongs to a live daemon and is left alone, as is anything not a socket. */
static int clear_stale(const struct sockaddr_un *sa, const char *path, struct bg_err **err)
{
        struct stat st;
        if (lstat(path, &st) < 0) {
                int e = errno;
                if (e == ENOENT)
                        return 0;
                return bg_error(err, e, "stat '%s': %s", path, strerror(e));
        }
        if (!S_ISSOCK(st.st_mode))
                return bg_error(err, EEXIST, "'%s' exists and is not a socket", path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                int e = errno;
                return bg_error(err, e, "socket: %s", strerror(e));
        }
        if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
                return bg_error(err, EADDRINUSE, "another bangerd is listening on %s", path);
        int e = errno;
        if (e != ECONNREFUSED && e != ENOENT)
                return bg_error(err, e, "probe '%s': %s", path, strerror(e));
        if (unlink(path) < 0 && errno != ENOENT) {
                e = errno;
                return bg_error(err, e, "remove stale socket '%s': %s", path, strerror(e));
        }
        log_info("api: removed stale socket path=%s", path);
        return 0;
}

static int listen_unix(const char *path, int *out, struct stat *id, struct bg_err **err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);
        if (n == 0)
                return bg_error(err, EINVAL, "empty socket path");
        if (n >= sizeof sa.sun_path)
                return bg_error(err, ENAMETOOLONG, "socket path '%s' is too long (%zu bytes, at most %zu)",
                                path, n, sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, path, n + 1);
        int r = clear_stale(&sa, path, err);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int e;
        if (fd < 0) {
                e = errno;
                return bg_error(err, e, "socket: %s", strerror(e));
        }
        if (bind(fd, (const struct sockaddr *)&sa, sizeof sa) < 0) {
                e = errno;
                return bg_error(err, e, "bind '%s': %s", path, strerror(e));
        }
        /* Before listen(), so no client can connect under the umask's mode. */
        if (chmod(path, 0660) < 0 || stat(path, id) < 0 || listen(fd, (int)API_CONN_LIMIT) < 0) {
                e = errno;
                unlink(path);
                return bg_error(err, e, "set up '%s': %s", path, strerror(e));
        }
        *out = fd;
        fd = -1;
        return 0;
}

int api_start(const char *socket_path, const struct api_source *src, struct api **out, struct bg_err **err)
{
        struct stat id;
        int fd = -1;
        *out = NULL;
        int r = listen_unix(socket_path, &fd, &id, err);
        if (r < 0)
                return r;

        struct api *a = xcalloc(1, sizeof *a);
        a->fd = fd;
        a->path = xstrdup(socket_path);
        a->dev = id.st_dev;
        a->ino = id.st_ino;
        a->src = src;
        atomic_init(&a->stopping, false);
        /* Thread per connection so follow streams may block; poll() rather
         * than select() because bangerd holds many fds (taps, VM pipes) and
         * select() fails past FD_SETSIZE; ITC so api_stop can quiesce and
         * take the listening fd back. */
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                         MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
        a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, a,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                  MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                  MHD_OPTION_CONNECTION_LIMIT, API_CONN_LIMIT,
                                  MHD_OPTION_CONNECTION_TIMEOUT, API_IDLE_TIMEOUT_S,
                                  MHD_OPTION_END);
        if (!a->mhd) {
                unlink(socket_path);
                close(fd);
                free(a->path);
                free(a);
                return bg_error(err, EIO, "start http server on %s failed", socket_path);
        }
        log_info("api: listening path=%s", socket_path);
        *out = a;
        return 0;
}

void api_stop(struct api *a)
{
        if (!a)
                return;
        atomic_store(&a->stopping, true);
        /* Quiesce first: MHD then hands the listening fd back instead of
         * closing it itself, so the fd is closed exactly once, here. */
        MHD_socket fd = MHD_quiesce_daemon(a->mhd);
        MHD_stop_daemon(a->mhd);
        if (fd != MHD_INVALID_SOCKET)
                close(fd);
        struct stat st;
        if (stat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
                unlink(a->path);
        free(a->path);
        free(a);
}
