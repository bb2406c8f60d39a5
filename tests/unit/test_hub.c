/* hub: a waiter in one thread, a publisher or closer in another.  Timing
 * bounds are loose (seconds) so a slow sanitizer build cannot flake; what
 * is checked is who woke whom and what hub_wait returned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "hub.h"
#include "util.h"

struct later {
        struct hub *h;
        int delay_ms;
        uint64_t seq;       /* 0: close instead of publish */
};

static void sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0)
                ;
}

static void *act_later(void *arg)
{
        struct later *l = arg;
        sleep_ms(l->delay_ms);
        if (l->seq)
                hub_publish(l->h, l->seq);
        else
                hub_close(l->h);
        return NULL;
}

struct waiter {
        struct hub *h;
        uint64_t after;
        uint64_t got;
        bool closed;
};

static void *wait_thread(void *arg)
{
        struct waiter *w = arg;
        w->got = hub_wait(w->h, w->after, 20000, &w->closed);
        return NULL;
}

static void test_publish_wakes_waiter_in_another_thread(void **state)
{
        (void)state;
        struct hub *h = hub_new(4);
        struct later l = { h, 50, 5 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, act_later, &l), 0);
        int64_t t0 = now_mono_ms();
        bool closed = true;
        uint64_t got = hub_wait(h, 4, 20000, &closed);
        int64_t took = now_mono_ms() - t0;
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(got, 5);
        assert_false(closed);
        assert_true(took < 10000);
        hub_free(h);
}

static void test_one_publish_wakes_every_waiter(void **state)
{
        (void)state;
        struct hub *h = hub_new(0);
        struct waiter w[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
                w[i] = (struct waiter){ .h = h, .after = 0, .got = 0, .closed = true };
                assert_int_equal(pthread_create(&t[i], NULL, wait_thread, &w[i]), 0);
        }
        sleep_ms(50);
        int64_t t0 = now_mono_ms();
        hub_publish(h, 9);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].got, 9);
                assert_false(w[i].closed);
        }
        assert_true(now_mono_ms() - t0 < 10000);
        hub_free(h);
}

static void test_wait_times_out_returning_old_seq(void **state)
{
        (void)state;
        struct hub *h = hub_new(3);
        int64_t t0 = now_mono_ms();
        bool closed = true;
        assert_int_equal(hub_wait(h, 3, 120, &closed), 3);
        int64_t took = now_mono_ms() - t0;
        assert_false(closed);
        assert_true(took >= 100);
        assert_true(took < 10000);
        /* A waiter ahead of the hub also just times out. */
        assert_int_equal(hub_wait(h, 10, 10, NULL), 3);
        /* A timeout of seconds plus a fraction still lets a publish wake it. */
        struct later l = { h, 100, 4 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, act_later, &l), 0);
        assert_int_equal(hub_wait(h, 3, 1999, NULL), 4);
        assert_int_equal(pthread_join(t, NULL), 0);
        hub_free(h);
}

static void test_newer_seq_returns_at_once(void **state)
{
        (void)state;
        struct hub *h = hub_new(7);
        int64_t t0 = now_mono_ms();
        bool closed = true;
        assert_int_equal(hub_wait(h, 2, 20000, &closed), 7);
        assert_false(closed);
        assert_int_equal(hub_wait(h, 6, 0, NULL), 7);
        assert_true(now_mono_ms() - t0 < 5000);
        hub_free(h);
}

static void test_publish_never_goes_backwards(void **state)
{
        (void)state;
        struct hub *h = hub_new(0);
        hub_publish(h, 10);
        hub_publish(h, 4);
        assert_int_equal(hub_wait(h, 0, 0, NULL), 10);
        hub_publish(h, 11);
        assert_int_equal(hub_wait(h, 10, 0, NULL), 11);
        hub_free(h);
}

static void test_close_wakes_waiter_and_sets_closed(void **state)
{
        (void)state;
        struct hub *h = hub_new(2);
        struct later l = { h, 50, 0 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, act_later, &l), 0);
        int64_t t0 = now_mono_ms();
        bool closed = false;
        assert_int_equal(hub_wait(h, 2, 20000, &closed), 2);
        assert_true(closed);
        assert_true(now_mono_ms() - t0 < 10000);
        assert_int_equal(pthread_join(t, NULL), 0);

        /* Once closed, waits return at once, still with the latest seq. */
        hub_publish(h, 3);
        closed = false;
        t0 = now_mono_ms();
        assert_int_equal(hub_wait(h, 3, 20000, &closed), 3);
        assert_true(closed);
        assert_true(now_mono_ms() - t0 < 5000);
        hub_free(h);
        hub_free(NULL);
}

static void test_close_wakes_every_waiter(void **state)
{
        (void)state;
        struct hub *h = hub_new(1);
        struct waiter w[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
                w[i] = (struct waiter){ .h = h, .after = 1, .got = 0, .closed = false };
                assert_int_equal(pthread_create(&t[i], NULL, wait_thread, &w[i]), 0);
        }
        sleep_ms(50);
        hub_close(h);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].got, 1);
                assert_true(w[i].closed);
        }
        hub_free(h);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_publish_wakes_waiter_in_another_thread),
                cmocka_unit_test(test_one_publish_wakes_every_waiter),
                cmocka_unit_test(test_wait_times_out_returning_old_seq),
                cmocka_unit_test(test_newer_seq_returns_at_once),
                cmocka_unit_test(test_publish_never_goes_backwards),
                cmocka_unit_test(test_close_wakes_waiter_and_sets_closed),
                cmocka_unit_test(test_close_wakes_every_waiter),
        };
        return cmocka_run_group_tests_name("hub", tests, NULL, NULL);
}
