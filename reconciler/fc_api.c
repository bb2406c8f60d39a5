/* fc_api: see fc_api.h.
 *
 * One curl easy handle per client: libcurl keeps the connection to the
 * socket alive between requests, and every option that one request sets
 * and another must not inherit (method, body) is set again on each call.
 */
#include "fc_api.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

struct fc_api {
        CURL *curl;
        struct curl_slist *headers;
        char *sock_path;
        int timeout_ms;
        char errbuf[CURL_ERROR_SIZE];
};

struct answer {
        char *buf;
        size_t len;
        bool overflow;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
        curl_init_rc = curl_global_init(CURL_GLOBAL_NOTHING);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
        struct answer *a = arg;
        size_t n = size * nmemb;
        if (a->len + n > FC_API_MAX_RESPONSE) {
                a->overflow = true;
                return 0;   /* makes curl stop with CURLE_WRITE_ERROR */
        }
        a->buf = xrealloc(a->buf, a->len + n + 1);
        memcpy(a->buf + a->len, p, n);
        a->len += n;
        a->buf[a->len] = '\0';
        return n;
}

int fc_api_new(const char *sock_path, int timeout_ms, struct fc_api **out, struct bg_err **err)
{
        pthread_once(&curl_once, curl_init);
        if (curl_init_rc != CURLE_OK)
                return bg_error(err, EIO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
        struct sockaddr_un sa;
        if (strlen(sock_path) >= sizeof sa.sun_path)
                return bg_error(err, ENAMETOOLONG, "api socket path '%s' is too long", sock_path);
        struct fc_api *a = xcalloc(1, sizeof *a);
        a->curl = curl_easy_init();
        if (!a->curl) {
                free(a);
                return bg_error(err, EIO, "libcurl: cannot create a handle");
        }
        a->sock_path = xstrdup(sock_path);
        a->timeout_ms = timeout_ms > 0 ? timeout_ms : FC_API_TIMEOUT_MS;
        a->headers = curl_slist_append(a->headers, "Content-Type: application/json");
        a->headers = curl_slist_append(a->headers, "Accept: application/json");
        a->headers = curl_slist_append(a->headers, "Expect:");   /* no 100-continue round trip */
        CURL *c = a->curl;
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, a->sock_path);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, a->headers);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)a->timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)a->timeout_ms);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->errbuf);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)FC_API_MAX_RESPONSE);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
#endif
        *out = a;
        return 0;
}

void fc_api_free(struct fc_api *a)
{
        if (!a)
                return;
        curl_easy_cleanup(a->curl);
        curl_slist_free_all(a->headers);
        free(a->sock_path);
        free(a);
}

static int transport_error(struct fc_api *a, CURLcode rc, bool overflow, const char *what, struct bg_err **err)
{
        const char *why = a->errbuf[0] ? a->errbuf : curl_easy_strerror(rc);
        if (overflow || rc == CURLE_FILESIZE_EXCEEDED)
                return bg_error(err, EMSGSIZE, "%s: answer larger than %d bytes", what, FC_API_MAX_RESPONSE);
        if (rc == CURLE_OPERATION_TIMEDOUT)
                return bg_error(err, ETIMEDOUT, "%s: no answer within %d ms", what, a->timeout_ms);
        if (rc == CURLE_COULDNT_CONNECT)
                return bg_error(err, ECONNREFUSED, "%s: cannot connect to '%s': %s", what, a->sock_path, why);
        return bg_error(err, EIO, "%s: %s", what, why);
}

/* Firecracker's fault_message, kept verbatim but for control characters
 * (one status line, one log line); the raw answer when there is none. */
static char *fault_text(const struct answer *ans)
{
        char *msg = NULL;
        json_t *j = ans->len ? json_loadb(ans->buf, ans->len, 0, NULL) : NULL;
        json_t *fm = json_object_get(j, "fault_message");
        if (json_is_string(fm))
                msg = xstrdup(json_string_value(fm));
        else if (ans->len)
                msg = xstrndup(ans->buf, ans->len > 512 ? 512 : ans->len);
        else
                msg = xstrdup("(no fault_message)");
        json_decref(j);
        for (char *p = msg; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return msg;
}

int fc_api_call(struct fc_api *a, const char *method, const char *path, const json_t *body, json_t **resp,
                struct bg_err **err)
{
        if (resp)
                *resp = NULL;
        _cleanup_free_ char *what = xasprintf("%s %s", method, path);
        _cleanup_free_ char *text = NULL;
        if (body) {
                text = json_dumps(body, JSON_COMPACT);
                if (!text)
                        return bg_error(err, EINVAL, "%s: body cannot be encoded", what);
                if (strlen(text) > FC_API_MAX_BODY)
                        return bg_error(err, EMSGSIZE, "%s: body larger than %d bytes", what, FC_API_MAX_BODY);
        }
        _cleanup_free_ char *url = xasprintf("http://localhost%s", path);
        struct answer ans = { 0 };
        CURL *c = a->curl;
        a->errbuf[0] = '\0';
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &ans);
        if (strcmp(method, "GET") == 0) {
                curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, NULL);
        } else {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, text ? text : "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(text ? strlen(text) : 0));
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        }
        CURLcode rc = curl_easy_perform(c);
        if (rc != CURLE_OK) {
                free(ans.buf);
                return transport_error(a, rc, ans.overflow, what, err);
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status >= 300) {
                _cleanup_free_ char *fault = fault_text(&ans);
                free(ans.buf);
                return bg_error(err, status == 400 ? EINVAL : EIO, "%s: %ld: %s", what, status, fault);
        }
        if (resp && ans.len) {
                json_error_t je;
                *resp = json_loadb(ans.buf, ans.len, 0, &je);
                if (!*resp) {
                        free(ans.buf);
                        return bg_error(err, EPROTO, "%s: answer is not JSON: %s", what, je.text);
                }
        }
        free(ans.buf);
        return 0;
}

int fc_api_put(struct fc_api *a, const char *path, json_t *body, struct bg_err **err)
{
        int r = fc_api_call(a, "PUT", path, body, NULL, err);
        json_decref(body);
        return r;
}

int fc_api_patch(struct fc_api *a, const char *path, json_t *body, struct bg_err **err)
{
        int r = fc_api_call(a, "PATCH", path, body, NULL, err);
        json_decref(body);
        return r;
}

int fc_api_get(struct fc_api *a, const char *path, json_t **resp, struct bg_err **err)
{
        return fc_api_call(a, "GET", path, NULL, resp, err);
}

/* One connect attempt: 0, or the errno. */
static int try_connect(const struct sockaddr_un *sa)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return errno;
        int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
        int e = errno;
        close(fd);
        return r == 0 ? 0 : e;
}

int fc_api_wait_socket(const char *sock_path, int timeout_ms, bool (*alive)(void *arg), void *arg,
                       struct bg_err **err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path) >= (int)sizeof sa.sun_path)
                return bg_error(err, ENAMETOOLONG, "api socket path '%s' is too long", sock_path);
        /* inotify on the folder wakes us when the socket appears, so the
         * wait ends within a millisecond of the VMM binding it. */
        _cleanup_free_ char *dir = xstrdup(sock_path);
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = '\0';
        _cleanup_close_ int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (ino >= 0 && inotify_add_watch(ino, slash ? dir : ".", IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
                close(ino);
                ino = -1;
        }
        int64_t deadline = now_mono_ms() + timeout_ms;
        for (;;) {
                int e = try_connect(&sa);
                if (e == 0)
                        return 0;
                if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN)
                        return bg_error(err, e, "connect '%s': %s", sock_path, strerror(e));
                if (alive && !alive(arg))
                        return bg_error(err, ESRCH, "the vmm exited before its api socket '%s' was ready",
                                        sock_path);
                int64_t left = deadline - now_mono_ms();
                if (left <= 0)
                        return bg_error(err, ETIMEDOUT, "api socket '%s' not ready after %d ms", sock_path,
                                        timeout_ms);
                /* Bound but not yet listening: retry soon.  Absent: sleep
                 * until inotify says something appeared (or 10 ms, to ask
                 * alive() again). */
                int nap = e == ECONNREFUSED || ino < 0 ? 1 : 10;
                struct pollfd p = { .fd = ino, .events = POLLIN };
                poll(&p, ino >= 0 ? 1 : 0, left < nap ? (int)left : nap);
                char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                while (ino >= 0 && read(ino, buf, sizeof buf) > 0)
                        ;
        }
}
