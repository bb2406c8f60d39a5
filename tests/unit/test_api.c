/* test_api: the REST API served on a real Unix socket, spoken to with
 * libcurl.  Sandbox objects come from a stub api_source; events come from a
 * real store in a temp folder and a real hub, so follow streams are tested
 * end to end (append + publish from another thread). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "api.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "version.h"

struct fx {
        char dir[64];
        char sock[128];
        struct store *store;
        struct hub *hub;
        struct api_source src;
        struct api *api;
};

static json_t *sandbox(const char *name, const char *team)
{
        return json_pack("{s:s, s:s, s:{s:s, s:{s:s}}}", "apiVersion", "banger/v1", "kind", "Sandbox",
                         "metadata", "name", name, "labels", "team", team);
}

static char **stub_names(void *arg, size_t *n)
{
        (void)arg;
        char **v = xcalloc(3, sizeof *v);
        v[0] = xstrdup("db");
        v[1] = xstrdup("gone");   /* vanished between listing and reading: skipped */
        v[2] = xstrdup("web");
        *n = 3;
        return v;
}

static json_t *stub_get(void *arg, const char *name)
{
        (void)arg;
        if (strcmp(name, "web") == 0)
                return sandbox("web", "infra");
        if (strcmp(name, "db") == 0)
                return sandbox("db", "data");
        return NULL;
}

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/bg-api-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->sock, sizeof f->sock, "%s/bangerd.sock", f->dir);
        char db[128];
        snprintf(db, sizeof db, "%s/db", f->dir);
        struct bg_err *e = NULL;
        if (store_open(db, &f->store, &e) < 0)
                fail_msg("store_open: %s", bg_err_msg(e));
        f->hub = hub_new(0);
        f->src = (struct api_source){ .list_names = stub_names, .get_sandbox = stub_get,
                                      .store = f->store, .hub = f->hub, .driver = "fake" };
        if (api_start(f->sock, &f->src, &f->api, &e) < 0)
                fail_msg("api_start: %s", bg_err_msg(e));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        hub_close(f->hub);   /* the daemon's order: close the hub, then stop the api */
        api_stop(f->api);
        hub_free(f->hub);
        store_close(f->store);
        assert_int_equal(rm_rf(f->dir, NULL), 0);
        free(f);
        return 0;
}

static uint64_t append_event(struct fx *f, const char *name, const char *type)
{
        struct store_txn *t = NULL;
        uint64_t seq = 0;
        assert_int_equal(store_txn_begin(f->store, true, &t, NULL), 0);
        json_t *ev = json_pack("{s:s, s:s, s:s}", "time", "2026-11-23T15:40:00.000Z", "name", name,
                               "type", type);
        assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
        json_decref(ev);
        assert_int_equal(store_txn_commit(t, NULL), 0);
        return seq;
}

/* ---- a tiny HTTP client ---- */

struct resp {
        long status;
        char *body;
        size_t len;
        char ctype[64];
        char allow[64];
        char seq[32];           /* X-Banger-Seq */
};

static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
        struct resp *r = arg;
        r->body = xrealloc(r->body, r->len + sz * n + 1);
        memcpy(r->body + r->len, p, sz * n);
        r->len += sz * n;
        r->body[r->len] = '\0';
        return sz * n;
}

static size_t header(char *p, size_t sz, size_t n, void *arg)
{
        struct resp *r = arg;
        size_t len = sz * n;
        if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0)
                snprintf(r->allow, sizeof r->allow, "%.*s", (int)strcspn(p + 7, "\r\n"), p + 7);
        if (len > 14 && strncasecmp(p, "X-Banger-Seq: ", 14) == 0)
                snprintf(r->seq, sizeof r->seq, "%.*s", (int)strcspn(p + 14, "\r\n"), p + 14);
        return len;
}

static CURL *client(const struct fx *f, const char *sock, const char *path)
{
        char url[512];
        snprintf(url, sizeof url, "http://banger%s", path);
        CURL *c = curl_easy_init();
        assert_non_null(c);
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock ? sock : f->sock);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        return c;
}

/* Perform method on path; body (may be NULL) is sent as the request body. */
static void http(const struct fx *f, const char *sock, const char *method, const char *path,
                 const char *body, struct resp *r)
{
        memset(r, 0, sizeof *r);
        CURL *c = client(f, sock, path);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        CURLcode rc = curl_easy_perform(c);
        if (rc != CURLE_OK)
                fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
        curl_easy_cleanup(c);
}

static json_t *body_json(const struct resp *r)
{
        json_error_t je;
        json_t *j = json_loads(r->body ? r->body : "", 0, &je);
        if (!j)
                fail_msg("bad json body '%s': %s", r->body ? r->body : "", je.text);
        return j;
}

/* Assert r is the JSON error the contract describes. */
static void assert_error(const struct resp *r, long status, const char *msg_part)
{
        assert_int_equal(r->status, status);
        assert_string_equal(r->ctype, "application/json");
        json_t *j = body_json(r);
        assert_string_equal(json_string_value(json_object_get(j, "kind")), "Error");
        assert_int_equal(json_integer_value(json_object_get(j, "code")), status);
        const char *m = json_string_value(json_object_get(j, "message"));
        assert_non_null(m);
        if (msg_part && !strstr(m, msg_part))
                fail_msg("message '%s' lacks '%s'", m, msg_part);
        json_decref(j);
}

/* ---- sandboxes and version ---- */

static void test_version_reports_version_api_and_driver(void **state)
{
        struct resp r;
        http(*state, NULL, "GET", "/v1/version", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/json");
        json_t *j = body_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "version")), BANGER_VERSION);
        assert_string_equal(json_string_value(json_object_get(j, "api")), "banger/v1");
        assert_string_equal(json_string_value(json_object_get(j, "driver")), "fake");
        json_decref(j);
        free(r.body);
}

static void test_list_wraps_every_sandbox_in_a_sandbox_list(void **state)
{
        struct resp r;
        http(*state, NULL, "GET", "/v1/sandboxes", NULL, &r);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "apiVersion")), "banger/v1");
        assert_string_equal(json_string_value(json_object_get(j, "kind")), "SandboxList");
        json_t *items = json_object_get(j, "items");
        assert_int_equal(json_array_size(items), 2);
        assert_string_equal(json_string_value(json_object_get(
                json_object_get(json_array_get(items, 0), "metadata"), "name")), "db");
        json_decref(j);
        free(r.body);
}

static void test_list_label_filter_keeps_only_matching_sandboxes(void **state)
{
        struct resp r;
        http(*state, NULL, "GET", "/v1/sandboxes?label=team=infra", NULL, &r);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r);
        json_t *items = json_object_get(j, "items");
        assert_int_equal(json_array_size(items), 1);
        assert_string_equal(json_string_value(json_object_get(
                json_object_get(json_array_get(items, 0), "metadata"), "name")), "web");
        json_decref(j);
        free(r.body);

        http(*state, NULL, "GET", "/v1/sandboxes?label=team%3Dnobody", NULL, &r);
        j = body_json(&r);
        assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
        json_decref(j);
        free(r.body);

        http(*state, NULL, "GET", "/v1/sandboxes?label=team", NULL, &r);
        assert_error(&r, 400, "label");
        free(r.body);
}

static void test_get_existing_sandbox_returns_it(void **state)
{
        struct resp r;
        http(*state, NULL, "GET", "/v1/sandboxes/web", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/json");
        json_t *j = body_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "kind")), "Sandbox");
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "name")), "web");
        json_decref(j);
        free(r.body);
}

static void test_get_missing_sandbox_is_404_json_error(void **state)
{
        struct resp r;
        http(*state, NULL, "GET", "/v1/sandboxes/nope", NULL, &r);
        assert_error(&r, 404, "sandbox \"nope\" not found");
        free(r.body);
}

static void test_get_invalid_name_is_400(void **state)
{
        static const char *const bad[] = {
                "/v1/sandboxes/Web", "/v1/sandboxes/a_b", "/v1/sandboxes/",
                "/v1/sandboxes/a%0Ab",
                "/v1/sandboxes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",   /* 64 */
        };
        struct resp r;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                http(*state, NULL, "GET", bad[i], NULL, &r);
                assert_error(&r, 400, "invalid sandbox name");
                free(r.body);
        }
        /* 63 characters is the longest valid name: not found, not invalid. */
        http(*state, NULL, "GET",
             "/v1/sandboxes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL, &r);
        assert_error(&r, 404, "not found");
        free(r.body);
}

static void test_other_methods_are_405_with_allow_get(void **state)
{
        static const char *const methods[] = { "POST", "PUT", "DELETE", "PATCH" };
        struct resp r;
        for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
                http(*state, NULL, methods[i], "/v1/sandboxes/web", NULL, &r);
                assert_error(&r, 405, methods[i]);
                assert_string_equal(r.allow, "GET");
                free(r.body);
        }
        http(*state, NULL, "POST", "/v1/sandboxes", "{\"kind\":\"Sandbox\"}", &r);
        assert_error(&r, 405, NULL);
        free(r.body);
}

static void test_unknown_path_is_404(void **state)
{
        static const char *const paths[] = { "/", "/v1", "/v2/version", "/v1/sandboxes/web/extra",
                                             "/v1/versions" };
        struct resp r;
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
                http(*state, NULL, "GET", paths[i], NULL, &r);
                assert_error(&r, 404, "unknown path");
                free(r.body);
        }
}

static void test_request_body_is_rejected(void **state)
{
        struct resp r;
        http(*state, NULL, "GET", "/v1/version", "{\"x\":1}", &r);
        assert_error(&r, 413, "body");
        free(r.body);
        /* The server still answers afterwards. */
        http(*state, NULL, "GET", "/v1/version", NULL, &r);
        assert_int_equal(r.status, 200);
        free(r.body);
}

/* ---- events ---- */

/* Split an NDJSON body into seqs; returns how many lines. */
static size_t ndjson_seqs(const char *body, uint64_t *seqs, size_t max)
{
        size_t n = 0;
        const char *p = body ? body : "";
        while (*p) {
                const char *nl = strchr(p, '\n');
                assert_non_null(nl);   /* every line is terminated */
                json_error_t je;
                json_t *j = json_loadb(p, (size_t)(nl - p), 0, &je);
                if (!j)
                        fail_msg("bad ndjson line: %s", je.text);
                assert_true(n < max);
                seqs[n++] = (uint64_t)json_integer_value(json_object_get(j, "seq"));
                json_decref(j);
                p = nl + 1;
        }
        return n;
}

static void test_events_without_follow_return_stored_events_after_since(void **state)
{
        struct fx *f = *state;
        uint64_t s1 = append_event(f, "web", "PhaseChanged");
        uint64_t s2 = append_event(f, "db", "SpecInvalid");
        uint64_t s3 = append_event(f, "web", "Restarted");
        uint64_t seqs[8];
        struct resp r;
        char path[128];

        http(f, NULL, "GET", "/v1/events", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/x-ndjson");
        assert_int_equal(ndjson_seqs(r.body, seqs, 8), 3);
        assert_true(seqs[0] == s1 && seqs[1] == s2 && seqs[2] == s3);
        free(r.body);

        snprintf(path, sizeof path, "/v1/events?since=%llu", (unsigned long long)s1);
        http(f, NULL, "GET", path, NULL, &r);
        assert_int_equal(ndjson_seqs(r.body, seqs, 8), 2);
        assert_true(seqs[0] == s2 && seqs[1] == s3);
        free(r.body);

        snprintf(path, sizeof path, "/v1/events?since=%llu", (unsigned long long)s3);
        http(f, NULL, "GET", path, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        free(r.body);

        http(f, NULL, "GET", "/v1/events?name=web&follow=0", NULL, &r);
        assert_int_equal(ndjson_seqs(r.body, seqs, 8), 2);
        assert_true(seqs[0] == s1 && seqs[1] == s3);
        free(r.body);
}

static void test_events_stream_more_than_one_batch(void **state)
{
        struct fx *f = *state;
        struct store_txn *t = NULL;
        assert_int_equal(store_txn_begin(f->store, true, &t, NULL), 0);
        for (int i = 0; i < 600; i++) {
                json_t *ev = json_pack("{s:s, s:s}", "name", "web", "type", "SpecChanged");
                uint64_t seq;
                assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
                json_decref(ev);
        }
        assert_int_equal(store_txn_commit(t, NULL), 0);
        uint64_t *seqs = xcalloc(700, sizeof *seqs);
        struct resp r;
        http(f, NULL, "GET", "/v1/events", NULL, &r);
        assert_int_equal(ndjson_seqs(r.body, seqs, 700), 600);
        for (size_t i = 1; i < 600; i++)
                assert_true(seqs[i] == seqs[i - 1] + 1);
        free(seqs);
        free(r.body);
}

static void test_events_bad_query_is_400(void **state)
{
        static const char *const bad[] = {
                "/v1/events?since=abc", "/v1/events?since=-1", "/v1/events?since=99999999999999999999999",
                "/v1/events?follow=yes", "/v1/events?name=Web",
                "/v1/events?wait=abc", "/v1/events?wait=-5", "/v1/events?wait=60001",
                "/v1/events?wait=1000&follow=1",
        };
        struct resp r;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                http(*state, NULL, "GET", bad[i], NULL, &r);
                assert_error(&r, 400, strstr(bad[i], "follow=1") ? "do not go together" : "invalid");
                free(r.body);
        }
}

static void test_every_answer_carries_the_latest_seq(void **state)
{
        struct fx *f = *state;
        struct resp r;
        http(f, NULL, "GET", "/v1/sandboxes/web", NULL, &r);
        assert_string_equal(r.seq, "0");
        free(r.body);
        uint64_t seq = append_event(f, "web", "PhaseChanged");
        hub_publish(f->hub, seq);
        char want[32];
        snprintf(want, sizeof want, "%llu", (unsigned long long)seq);
        static const char *const paths[] = { "/v1/sandboxes/web", "/v1/sandboxes/nope", "/v1/sandboxes",
                                             "/v1/events", "/v1/nowhere" };
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
                http(f, NULL, "GET", paths[i], NULL, &r);
                if (strcmp(r.seq, want) != 0)
                        fail_msg("%s: X-Banger-Seq '%s', want '%s'", paths[i], r.seq, want);
                free(r.body);
        }
}

/* Appends events some time after the waiting request went out. */
struct later {
        struct fx *f;
        const char *names[2];   /* NULL-padded */
        uint64_t seqs[2];
};

static void *append_later(void *arg)
{
        struct later *l = arg;
        for (size_t i = 0; i < 2 && l->names[i]; i++) {
                usleep(150 * 1000);
                l->seqs[i] = append_event(l->f, l->names[i], "PhaseChanged");
                hub_publish(l->f->hub, l->seqs[i]);
        }
        return NULL;
}

static void wait_request(struct fx *f, struct later *l, const char *query, struct resp *r)
{
        uint64_t since = append_event(f, "db", "SpecChanged");
        hub_publish(f->hub, since);
        char path[160];
        snprintf(path, sizeof path, "/v1/events?since=%llu&%s", (unsigned long long)since, query);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, append_later, l), 0);
        /* The wait is longer than the client's own 10 s limit: only the
         * event can end this request in time. */
        http(f, NULL, "GET", path, NULL, r);
        pthread_join(th, NULL);
}

static void test_events_wait_answers_when_an_event_comes(void **state)
{
        struct later l = { .f = *state, .names = { "web" } };
        struct resp r;
        uint64_t seqs[4];
        wait_request(l.f, &l, "wait=30000", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(ndjson_seqs(r.body, seqs, 4), 1);
        assert_true(seqs[0] == l.seqs[0]);
        free(r.body);
}

static void test_events_wait_with_name_skips_other_sandboxes_events(void **state)
{
        struct later l = { .f = *state, .names = { "db", "web" } };
        struct resp r;
        uint64_t seqs[4];
        wait_request(l.f, &l, "wait=30000&name=web", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(ndjson_seqs(r.body, seqs, 4), 1);
        assert_true(seqs[0] == l.seqs[1]);
        free(r.body);
}

static void test_events_wait_ends_empty_at_its_deadline(void **state)
{
        struct fx *f = *state;
        uint64_t seq = append_event(f, "web", "PhaseChanged");
        hub_publish(f->hub, seq);
        char path[128];
        snprintf(path, sizeof path, "/v1/events?since=%llu&wait=300", (unsigned long long)seq);
        struct resp r;
        int64_t t0 = now_mono_ms();
        http(f, NULL, "GET", path, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        assert_true(now_mono_ms() - t0 >= 300);   /* it did wait: the deadline is the server's */
        free(r.body);
        /* Stored events after since: answered at once, wait or not. */
        snprintf(path, sizeof path, "/v1/events?since=%llu&wait=30000", (unsigned long long)(seq - 1));
        http(f, NULL, "GET", path, NULL, &r);
        uint64_t seqs[2];
        assert_int_equal(ndjson_seqs(r.body, seqs, 2), 1);
        free(r.body);
}

/* A follow client: counts complete lines, wakes the producer after the
 * first one, and hangs up once it saw the sequence it waits for. */
struct follow {
        struct fx *f;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        char buf[8192];
        size_t len;
        size_t lines;
        uint64_t last_seq;
        uint64_t want_seq;      /* 0: read until the server ends the stream */
        bool close_hub;         /* producer closes the hub instead of appending */
};

static size_t follow_write(char *p, size_t sz, size_t n, void *arg)
{
        struct follow *fl = arg;
        size_t len = sz * n;
        bool stop = false;
        pthread_mutex_lock(&fl->mu);
        assert_true(fl->len + len < sizeof fl->buf);
        memcpy(fl->buf + fl->len, p, len);
        fl->len += len;
        fl->buf[fl->len] = '\0';
        size_t lines = 0;
        const char *line = fl->buf;
        for (const char *nl; (nl = strchr(line, '\n')); line = nl + 1) {
                json_t *j = json_loadb(line, (size_t)(nl - line), 0, NULL);
                assert_non_null(j);
                fl->last_seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
                json_decref(j);
                lines++;
        }
        fl->lines = lines;
        stop = fl->want_seq && fl->last_seq == fl->want_seq;
        pthread_cond_broadcast(&fl->cv);
        pthread_mutex_unlock(&fl->mu);
        return stop ? 0 : len;   /* 0 makes curl abort the transfer */
}

static void *producer(void *arg)
{
        struct follow *fl = arg;
        pthread_mutex_lock(&fl->mu);
        while (fl->lines < 1)
                pthread_cond_wait(&fl->cv, &fl->mu);
        pthread_mutex_unlock(&fl->mu);
        /* The stream has sent the stored event and is now blocked waiting. */
        usleep(200 * 1000);
        if (fl->close_hub) {
                hub_close(fl->f->hub);
        } else {
                uint64_t seq = append_event(fl->f, "web", "PhaseChanged");
                pthread_mutex_lock(&fl->mu);
                fl->want_seq = seq;
                pthread_mutex_unlock(&fl->mu);
                hub_publish(fl->f->hub, seq);
        }
        return NULL;
}

static CURLcode run_follow(struct follow *fl, uint64_t first)
{
        char path[128];
        snprintf(path, sizeof path, "/v1/events?follow=1&since=%llu", (unsigned long long)(first - 1));
        CURL *c = client(fl->f, NULL, path);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, follow_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, fl);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, producer, fl), 0);
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        assert_int_equal(status, 200);
        curl_easy_cleanup(c);
        pthread_join(th, NULL);
        return rc;
}

static void test_follow_stream_receives_event_published_later(void **state)
{
        struct follow fl = { .f = *state, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
        uint64_t first = append_event(fl.f, "db", "SpecChanged");
        hub_publish(fl.f->hub, first);
        CURLcode rc = run_follow(&fl, first);
        /* Our write callback hung up after the new line: the stream itself
         * had not ended. */
        assert_int_equal(rc, CURLE_WRITE_ERROR);
        assert_int_equal(fl.lines, 2);
        assert_true(fl.last_seq == first + 1);
}

static void test_follow_stream_ends_when_hub_closes(void **state)
{
        struct follow fl = { .f = *state, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
                             .close_hub = true };
        uint64_t first = append_event(fl.f, "db", "SpecChanged");
        CURLcode rc = run_follow(&fl, first);
        assert_int_equal(rc, CURLE_OK);
        assert_int_equal(fl.lines, 1);
}

static size_t count_threads(void)
{
        size_t n = 0;
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

static size_t hang_up_after_first_line(char *p, size_t sz, size_t n, void *arg)
{
        (void)p;
        (void)sz;
        (void)n;
        (void)arg;
        return 0;
}

static void test_follow_client_hangup_frees_its_thread(void **state)
{
        struct fx *f = *state;
        uint64_t first = append_event(f, "web", "SpecChanged");
        size_t before = count_threads();
        char path[128];
        snprintf(path, sizeof path, "/v1/events?follow=1&since=%llu", (unsigned long long)(first - 1));
        CURL *c = client(f, NULL, path);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hang_up_after_first_line);
        assert_int_equal(curl_easy_perform(c), CURLE_WRITE_ERROR);
        curl_easy_cleanup(c);
        /* No event will come: only the hangup check can end the stream. */
        int64_t deadline = now_mono_ms() + 5000;
        while (count_threads() > before && now_mono_ms() < deadline)
                usleep(50 * 1000);
        assert_true(count_threads() <= before);
}

/* ---- the socket ---- */

static void test_socket_is_0660_and_removed_on_stop(void **state)
{
        struct fx *f = *state;
        struct stat st;
        assert_int_equal(stat(f->sock, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0660);
        hub_close(f->hub);
        api_stop(f->api);
        f->api = NULL;
        assert_int_equal(stat(f->sock, &st), -1);
        assert_int_equal(errno, ENOENT);
}

static void test_stale_socket_file_is_replaced(void **state)
{
        struct fx *f = *state;
        char path[128];
        snprintf(path, sizeof path, "%s/stale.sock", f->dir);
        /* A socket file nobody listens on: what a killed daemon leaves. */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        assert_true(strlen(path) < sizeof sa.sun_path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd);

        struct api *a = NULL;
        struct bg_err *e = NULL;
        if (api_start(path, &f->src, &a, &e) < 0)
                fail_msg("api_start over stale socket: %s", bg_err_msg(e));
        struct resp r;
        http(f, path, "GET", "/v1/version", NULL, &r);
        assert_int_equal(r.status, 200);
        free(r.body);
        api_stop(a);
}

static void test_live_socket_is_refused(void **state)
{
        struct fx *f = *state;
        struct api *a = NULL;
        struct bg_err *e = NULL;
        assert_true(api_start(f->sock, &f->src, &a, &e) < 0);
        assert_null(a);
        char want[256];
        snprintf(want, sizeof want, "another bangerd is listening on %s", f->sock);
        assert_non_null(e);
        assert_string_equal(e->msg, want);
        bg_err_free(e);
        /* The running one is untouched. */
        struct resp r;
        http(f, NULL, "GET", "/v1/version", NULL, &r);
        assert_int_equal(r.status, 200);
        free(r.body);
}

static void test_non_socket_file_is_left_alone(void **state)
{
        struct fx *f = *state;
        char path[128];
        snprintf(path, sizeof path, "%s/plain", f->dir);
        assert_int_equal(write_file_atomic(path, "x", 1, 0600, NULL), 0);
        struct api *a = NULL;
        struct bg_err *e = NULL;
        assert_true(api_start(path, &f->src, &a, &e) < 0);
        assert_non_null(strstr(bg_err_msg(e), "not a socket"));
        bg_err_free(e);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
}

static void test_overlong_socket_path_is_a_clear_error(void **state)
{
        struct fx *f = *state;
        char path[300];
        int n = snprintf(path, sizeof path, "%s/", f->dir);
        memset(path + n, 'x', 150);
        path[n + 150] = '\0';
        struct api *a = NULL;
        struct bg_err *e = NULL;
        assert_int_equal(api_start(path, &f->src, &a, &e), -ENAMETOOLONG);
        assert_null(a);
        assert_non_null(strstr(bg_err_msg(e), "is too long"));
        assert_non_null(strstr(bg_err_msg(e), "at most 107"));
        bg_err_free(e);
}

int main(void)
{
        log_threshold = LOGL_WARN;
        curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_version_reports_version_api_and_driver),
                T(test_list_wraps_every_sandbox_in_a_sandbox_list),
                T(test_list_label_filter_keeps_only_matching_sandboxes),
                T(test_get_existing_sandbox_returns_it),
                T(test_get_missing_sandbox_is_404_json_error),
                T(test_get_invalid_name_is_400),
                T(test_other_methods_are_405_with_allow_get),
                T(test_unknown_path_is_404),
                T(test_request_body_is_rejected),
                T(test_events_without_follow_return_stored_events_after_since),
                T(test_events_stream_more_than_one_batch),
                T(test_events_bad_query_is_400),
                T(test_every_answer_carries_the_latest_seq),
                T(test_events_wait_answers_when_an_event_comes),
                T(test_events_wait_with_name_skips_other_sandboxes_events),
                T(test_events_wait_ends_empty_at_its_deadline),
                T(test_follow_stream_receives_event_published_later),
                T(test_follow_stream_ends_when_hub_closes),
                T(test_follow_client_hangup_frees_its_thread),
                T(test_socket_is_0660_and_removed_on_stop),
                T(test_stale_socket_file_is_replaced),
                T(test_live_socket_is_refused),
                T(test_non_socket_file_is_left_alone),
                T(test_overlong_socket_path_is_a_clear_error),
        };
#undef T
        int rc = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return rc;
}
