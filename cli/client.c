/* client: see client.h.  One curl easy handle is kept for plain requests,
 * so the ~100 ms polls of `apply` reuse one connection; a stream gets a
 * handle of its own.  Bodies are size-limited before they are parsed. */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "util.h"
#include "version.h"

#define BODY_MAX (64u * 1024 * 1024)   /* a whole list of sandboxes */
#define LINE_MAX_BYTES (1024u * 1024)  /* one event */
#define ERRBODY_MAX (64u * 1024)
#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 30000L

struct client {
        char *socket;
        CURL *h;
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
        return c;
}

void client_free(struct client *c)
{
        if (!c)
                return;
        if (c->h)
                curl_easy_cleanup(c->h);
        free(c->socket);
        free(c);
}

char *client_escape(const char *s)
{
        char *e = curl_easy_escape(NULL, s, 0);
        if (!e)
                abort();   /* only on out of memory */
        char *out = xstrdup(e);
        curl_free(e);
        return out;
}

static CURL *handle_new(const struct client *c)
{
        CURL *h = curl_easy_init();
        if (!h)
                abort();   /* only on out of memory */
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "banger/" BANGER_VERSION);
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        return h;
}

/* Turn a failed transfer into one message.  Nothing answered at all (no
 * HTTP status): the daemon is not there, and the user needs the socket
 * path and the reason, not curl's vocabulary. */
static int transport_error(const struct client *c, CURL *h, const char *path, CURLcode rc,
                           const char *errbuf, struct bg_err **err)
{
        long status = 0, oserr = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
        const char *reason = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        if (status == 0) {
                if (rc == CURLE_COULDNT_CONNECT && oserr > 0)
                        reason = strerror((int)oserr);
                return bg_error(err, ECONNREFUSED, "cannot reach bangerd at %s: %s (is bangerd running?)",
                                c->socket, reason);
        }
        return bg_error(err, EIO, "GET %s from bangerd at %s: %s", path, c->socket, reason);
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

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
        struct buf *b = arg;
        return buf_add(b, p, size * n) ? size * n : 0;
}

static int request(struct client *c, bool post, const char *path, long *status, json_t **body, struct bg_err **err)
{
        if (!c->h)
                c->h = handle_new(c);
        CURL *h = c->h;
        if (post) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        } else {
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        }
        _cleanup_free_ char *url = xasprintf("http://banger%s", path);
        char errbuf[CURL_ERROR_SIZE] = "";
        struct buf b = { .max = BODY_MAX };

        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        CURLcode rc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);

        int r = 0;
        if (b.overflow) {
                r = bg_error(err, EFBIG, "GET %s: reply larger than %u bytes", path, BODY_MAX);
        } else if (rc != CURLE_OK) {
                r = transport_error(c, h, path, rc, errbuf, err);
        } else {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
                *body = b.len ? json_loadb(b.data, b.len, 0, NULL) : NULL;
        }
        free(b.data);
        if (r < 0) {
                /* a broken connection must not be reused */
                curl_easy_cleanup(c->h);
                c->h = NULL;
        }
        return r;
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

struct stream {
        CURL *h;
        client_line_fn fn;
        void *arg;
        long status;          /* 0 until the first body bytes */
        struct buf line;      /* the line being read */
        struct buf errbody;   /* the body of an error answer */
        int stopped;          /* fn's non-zero value */
        bool too_long;
};

static int deliver(struct stream *s)
{
        size_t n = s->line.len;
        while (n && (s->line.data[n - 1] == '\r' || s->line.data[n - 1] == ' '))
                n--;
        int r = 0;
        if (n) {
                s->line.data[n] = '\0';
                json_t *j = json_loadb(s->line.data, n, 0, NULL);
                r = s->fn(s->line.data, j, s->arg);
                json_decref(j);
        }
        s->line.len = 0;
        return r;
}

static size_t on_stream(char *p, size_t size, size_t n, void *arg)
{
        struct stream *s = arg;
        size_t len = size * n;
        if (s->status == 0)
                curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
        if (s->status < 200 || s->status > 299) {
                buf_add(&s->errbody, p, len);   /* the excess is dropped */
                return len;
        }
        for (size_t i = 0; i < len;) {
                const char *nl = memchr(p + i, '\n', len - i);
                size_t take = nl ? (size_t)(nl - (p + i)) : len - i;
                if (!buf_add(&s->line, p + i, take)) {
                        s->too_long = true;
                        return 0;
                }
                i += take;
                if (nl) {
                        i++;
                        int r = deliver(s);
                        if (r) {
                                s->stopped = r;
                                return 0;
                        }
                }
        }
        return len;
}

int client_stream(struct client *c, const char *path, client_line_fn fn, void *arg, struct bg_err **err)
{
        CURL *h = handle_new(c);
        _cleanup_free_ char *url = xasprintf("http://banger%s", path);
        char errbuf[CURL_ERROR_SIZE] = "";
        struct stream s = {
                .h = h, .fn = fn, .arg = arg,
                .line = { .max = LINE_MAX_BYTES },
                .errbody = { .max = ERRBODY_MAX },
        };

        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        CURLcode rc = curl_easy_perform(h);

        int r = 0;
        if (s.stopped) {
                r = s.stopped;
        } else if (s.too_long) {
                r = bg_error(err, EFBIG, "GET %s: a line longer than %u bytes", path, LINE_MAX_BYTES);
        } else if (rc != CURLE_OK) {
                r = transport_error(c, h, path, rc, errbuf, err);
        } else {
                if (s.status == 0)
                        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s.status);
                if (s.status < 200 || s.status > 299) {
                        json_t *j = s.errbody.len ? json_loadb(s.errbody.data, s.errbody.len, 0, NULL) : NULL;
                        r = api_error(path, s.status, j, err);
                        json_decref(j);
                } else if (s.line.len) {
                        r = deliver(&s);   /* a last line without '\n' */
                }
        }
        free(s.line.data);
        free(s.errbody.data);
        curl_easy_cleanup(h);
        return r;
}
