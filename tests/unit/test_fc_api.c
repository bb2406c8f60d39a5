/* fc_api: the Firecracker API client against a tiny HTTP/1.1 server on a
 * Unix socket run by the test itself (one thread, one connection at a
 * time, keep-alive).  The server answers with whatever the test scripted
 * and remembers the last request, so the tests check what goes on the wire
 * (method, path, JSON body, headers) and how every kind of answer comes
 * back: 204, a JSON 200, a 400 whose fault_message must reach the error
 * verbatim, a 500 without JSON, an oversized answer, no answer at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "fc_api.h"
#include "util.h"

struct srv {
        char dir[64];
        char sock[100];
        int lfd;
        int stop[2];            /* pipe: closing [1] ends the thread */
        pthread_t thread;
        pthread_mutex_t mu;
        /* scripted answer */
        int status;
        char *body;             /* NULL: empty */
        size_t pad;             /* extra body bytes (oversized answers) */
        bool hang;              /* read the request, never answer */
        /* what came in */
        int accepts;
        int requests;
        char method[16];
        char path[128];
        char *req_body;
        char headers[2048];
};

static bool wait_readable(struct srv *s, int fd)
{
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = s->stop[0], .events = POLLIN } };
        if (poll(p, 2, -1) < 0 || (p[1].revents & (POLLIN | POLLHUP)))
                return false;
        return true;
}

/* Serve requests on one connection until the peer closes it. */
static void serve_conn(struct srv *s, int fd)
{
        char buf[70000];
        size_t n = 0;
        for (;;) {
                char *end;
                while (!(end = memmem(buf, n, "\r\n\r\n", 4))) {
                        if (!wait_readable(s, fd))
                                return;
                        ssize_t r = read(fd, buf + n, sizeof buf - n - 1);
                        if (r <= 0)
                                return;
                        n += (size_t)r;
                }
                size_t hlen = (size_t)(end - buf) + 4, clen = 0;
                buf[n] = '\0';
                char *cl = strcasestr(buf, "\r\nContent-Length:");
                if (cl && cl < end)
                        clen = strtoul(cl + 17, NULL, 10);
                while (n < hlen + clen) {
                        if (!wait_readable(s, fd))
                                return;
                        ssize_t r = read(fd, buf + n, sizeof buf - n - 1);
                        if (r <= 0)
                                return;
                        n += (size_t)r;
                }
                pthread_mutex_lock(&s->mu);
                s->requests++;
                sscanf(buf, "%15s %127s", s->method, s->path);
                snprintf(s->headers, sizeof s->headers, "%.*s", (int)hlen, buf);
                free(s->req_body);
                s->req_body = xstrndup(buf + hlen, clen);
                bool hang = s->hang;
                int status = s->status;
                _cleanup_free_ char *body = xstrdup(s->body ? s->body : "");
                size_t pad = s->pad;
                pthread_mutex_unlock(&s->mu);
                memmove(buf, buf + hlen + clen, n - hlen - clen);
                n -= hlen + clen;
                if (hang) {
                        wait_readable(s, s->stop[0]);
                        return;
                }
                size_t blen = strlen(body) + pad;
                _cleanup_free_ char *head = xasprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                                      "Content-Length: %zu\r\n\r\n", status, blen);
                _cleanup_free_ char *out = xmalloc(strlen(head) + blen + 1);
                memcpy(out, head, strlen(head));
                memcpy(out + strlen(head), body, strlen(body));
                memset(out + strlen(head) + strlen(body), ' ', pad);
                size_t total = strlen(head) + blen, done = 0;
                while (done < total) {
                        ssize_t w = write(fd, out + done, total - done);
                        if (w <= 0)
                                return;
                        done += (size_t)w;
                }
        }
}

static void *srv_main(void *arg)
{
        struct srv *s = arg;
        for (;;) {
                if (!wait_readable(s, s->lfd))
                        return NULL;
                int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                pthread_mutex_lock(&s->mu);
                s->accepts++;
                pthread_mutex_unlock(&s->mu);
                serve_conn(s, fd);
                close(fd);
        }
}

static void srv_answer(struct srv *s, int status, const char *body)
{
        pthread_mutex_lock(&s->mu);
        s->status = status;
        free(s->body);
        s->body = body ? xstrdup(body) : NULL;
        pthread_mutex_unlock(&s->mu);
}

static int setup(void **state)
{
        struct srv *s = xcalloc(1, sizeof *s);
        snprintf(s->dir, sizeof s->dir, "/tmp/bg-fcapi-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->sock, sizeof s->sock, "%s/api.sock", s->dir);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", s->sock);
        s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->lfd >= 0);
        assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(s->lfd, 8), 0);
        assert_int_equal(pipe2(s->stop, O_CLOEXEC), 0);
        pthread_mutex_init(&s->mu, NULL);
        s->status = 204;
        assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
        *state = s;
        return 0;
}

static int teardown(void **state)
{
        struct srv *s = *state;
        close(s->stop[1]);
        pthread_join(s->thread, NULL);
        close(s->stop[0]);
        close(s->lfd);
        rm_rf(s->dir, NULL);
        free(s->body);
        free(s->req_body);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return 0;
}

static struct fc_api *client(struct srv *s, int timeout_ms)
{
        struct fc_api *a = NULL;
        assert_int_equal(fc_api_new(s->sock, timeout_ms, &a, NULL), 0);
        return a;
}

static void test_put_sends_method_path_and_json_body(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        struct bg_err *e = NULL;
        int r = fc_api_put(a, "/machine-config", json_pack("{s:i,s:i}", "vcpu_count", 2, "mem_size_mib", 256), &e);
        assert_int_equal(r, 0);
        assert_null(e);
        assert_string_equal(s->method, "PUT");
        assert_string_equal(s->path, "/machine-config");
        json_t *got = json_loads(s->req_body, 0, NULL);
        assert_non_null(got);
        assert_int_equal(json_integer_value(json_object_get(got, "vcpu_count")), 2);
        assert_int_equal(json_integer_value(json_object_get(got, "mem_size_mib")), 256);
        assert_int_equal(json_object_size(got), 2);
        json_decref(got);
        assert_non_null(strcasestr(s->headers, "Content-Type: application/json"));
        assert_null(strcasestr(s->headers, "Expect:"));
        assert_null(strcasestr(s->headers, "chunked"));
        fc_api_free(a);
}

static void test_patch_and_get_answer_json(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        assert_int_equal(fc_api_patch(a, "/vm", json_pack("{s:s}", "state", "Paused"), NULL), 0);
        assert_string_equal(s->method, "PATCH");
        srv_answer(s, 200, "{\"firecracker_version\":\"1.16.1\"}");
        json_t *v = NULL;
        assert_int_equal(fc_api_get(a, "/version", &v, NULL), 0);
        assert_string_equal(s->method, "GET");
        assert_string_equal(s->req_body, "");
        assert_string_equal(json_string_value(json_object_get(v, "firecracker_version")), "1.16.1");
        json_decref(v);
        fc_api_free(a);
}

static void test_400_fault_message_reaches_the_error_verbatim(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        srv_answer(s, 400, "{\"fault_message\":\"The vCPU number is invalid! (\\\"2\\\")\"}");
        struct bg_err *e = NULL;
        int r = fc_api_put(a, "/machine-config", json_pack("{s:i}", "vcpu_count", 3), &e);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(bg_err_msg(e), "PUT /machine-config: 400: The vCPU number is invalid! (\"2\")");
        bg_err_free(e);
        fc_api_free(a);
}

static void test_500_without_json_keeps_the_raw_answer(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        srv_answer(s, 500, "internal\nboom");
        struct bg_err *e = NULL;
        assert_int_equal(fc_api_put(a, "/actions", json_pack("{s:s}", "action_type", "InstanceStart"), &e), -EIO);
        assert_string_equal(bg_err_msg(e), "PUT /actions: 500: internal boom");
        bg_err_free(e);
        fc_api_free(a);
}

static void test_oversized_answer_is_refused(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        srv_answer(s, 200, "{}");
        s->pad = FC_API_MAX_RESPONSE + 1;
        struct bg_err *e = NULL;
        json_t *v = NULL;
        assert_int_equal(fc_api_get(a, "/", &v, &e), -EMSGSIZE);
        assert_null(v);
        assert_non_null(strstr(bg_err_msg(e), "GET /: answer larger than"));
        bg_err_free(e);
        fc_api_free(a);
}

static void test_no_answer_times_out(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 200);
        s->hang = true;
        struct bg_err *e = NULL;
        int64_t t0 = now_mono_ms();
        assert_int_equal(fc_api_get(a, "/", NULL, &e), -ETIMEDOUT);
        int64_t took = now_mono_ms() - t0;
        assert_true(took >= 150 && took < 2000);
        assert_non_null(strstr(bg_err_msg(e), "no answer within 200 ms"));
        bg_err_free(e);
        fc_api_free(a);
}

static void test_body_over_firecracker_limit_is_not_sent(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        char *big = xmalloc(FC_API_MAX_BODY + 1);
        memset(big, 'x', FC_API_MAX_BODY);
        big[FC_API_MAX_BODY] = '\0';
        struct bg_err *e = NULL;
        assert_int_equal(fc_api_put(a, "/mmds", json_pack("{s:s}", "k", big), &e), -EMSGSIZE);
        assert_int_equal(s->requests, 0);
        bg_err_free(e);
        free(big);
        fc_api_free(a);
}

static void test_one_connection_serves_every_call(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        for (int i = 0; i < 5; i++)
                assert_int_equal(fc_api_put(a, "/logger", json_pack("{s:s}", "log_path", "/x"), NULL), 0);
        assert_int_equal(s->requests, 5);
        assert_int_equal(s->accepts, 1);
        fc_api_free(a);
}

static void test_missing_socket_is_connection_refused(void **state)
{
        struct srv *s = *state;
        _cleanup_free_ char *path = xasprintf("%s/nothing.sock", s->dir);
        struct fc_api *a = NULL;
        assert_int_equal(fc_api_new(path, 500, &a, NULL), 0);
        struct bg_err *e = NULL;
        assert_int_equal(fc_api_get(a, "/", NULL, &e), -ECONNREFUSED);
        assert_non_null(strstr(bg_err_msg(e), "GET /: cannot connect to"));
        bg_err_free(e);
        fc_api_free(a);
}

static void test_control_characters_in_fault_become_spaces(void **state)
{
        struct srv *s = *state;
        struct fc_api *a = client(s, 0);
        srv_answer(s, 400, "{\"fault_message\":\"line1\\nline2\\u001b[31m\"}");
        struct bg_err *e = NULL;
        fc_api_put(a, "/boot-source", json_object(), &e);
        assert_string_equal(bg_err_msg(e), "PUT /boot-source: 400: line1 line2 [31m");
        bg_err_free(e);
        fc_api_free(a);
}

static bool never_alive(void *arg)
{
        (void)arg;
        return false;
}

static void test_wait_socket(void **state)
{
        struct srv *s = *state;
        assert_int_equal(fc_api_wait_socket(s->sock, 100, NULL, NULL, NULL), 0);
        _cleanup_free_ char *path = xasprintf("%s/later.sock", s->dir);
        struct bg_err *e = NULL;
        int64_t t0 = now_mono_ms();
        assert_int_equal(fc_api_wait_socket(path, 100, NULL, NULL, &e), -ETIMEDOUT);
        assert_true(now_mono_ms() - t0 >= 100);
        bg_err_free(e);
        e = NULL;
        assert_int_equal(fc_api_wait_socket(path, 5000, never_alive, NULL, &e), -ESRCH);
        assert_non_null(strstr(bg_err_msg(e), "exited before its api socket"));
        bg_err_free(e);
}

static void test_socket_path_too_long_is_refused(void **state)
{
        (void)state;
        char path[200];
        memset(path, 'a', sizeof path - 1);
        path[0] = '/';
        path[sizeof path - 1] = '\0';
        struct fc_api *a = NULL;
        assert_int_equal(fc_api_new(path, 0, &a, NULL), -ENAMETOOLONG);
        assert_int_equal(fc_api_wait_socket(path, 10, NULL, NULL, NULL), -ENAMETOOLONG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_put_sends_method_path_and_json_body, setup, teardown),
                cmocka_unit_test_setup_teardown(test_patch_and_get_answer_json, setup, teardown),
                cmocka_unit_test_setup_teardown(test_400_fault_message_reaches_the_error_verbatim, setup, teardown),
                cmocka_unit_test_setup_teardown(test_500_without_json_keeps_the_raw_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversized_answer_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_answer_times_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_body_over_firecracker_limit_is_not_sent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_one_connection_serves_every_call, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_socket_is_connection_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_control_characters_in_fault_become_spaces, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wait_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_path_too_long_is_refused, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
