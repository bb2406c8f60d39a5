/* strmap: insert/replace/delete against a reference array, with enough
 * churn to exercise growth and backward-shift deletion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "strmap.h"

#define N 5000

static void count_cb(const char *k, void *v, void *arg)
{
        (void)k;
        (void)v;
        (*(size_t *)arg)++;
}

static void test_churn_matches_reference(void **state)
{
        (void)state;
        static int present[N];
        static int vals[N];
        struct strmap *m = strmap_new();
        char key[32];
        uint32_t x = 12345;
        for (int round = 0; round < 40000; round++) {
                x = x * 1103515245u + 12345u;
                int k = (int)((x >> 8) % N);
                snprintf(key, sizeof key, "name-%d", k);
                if ((x >> 4) % 3 == 0) {
                        void *v = strmap_del(m, key);
                        assert_ptr_equal(v, present[k] ? &vals[k] : NULL);
                        present[k] = 0;
                } else {
                        void *prev = strmap_put(m, key, &vals[k]);
                        assert_ptr_equal(prev, present[k] ? &vals[k] : NULL);
                        present[k] = 1;
                }
        }
        size_t expect = 0;
        for (int k = 0; k < N; k++) {
                snprintf(key, sizeof key, "name-%d", k);
                assert_ptr_equal(strmap_get(m, key), present[k] ? &vals[k] : NULL);
                expect += (size_t)present[k];
        }
        assert_int_equal(strmap_count(m), expect);
        size_t seen = 0;
        strmap_foreach(m, count_cb, &seen);
        assert_int_equal(seen, expect);
        strmap_free(m);
}

static void test_missing_and_empty(void **state)
{
        (void)state;
        struct strmap *m = strmap_new();
        assert_null(strmap_get(m, "x"));
        assert_null(strmap_del(m, "x"));
        int v;
        assert_null(strmap_put(m, "", &v));
        assert_ptr_equal(strmap_get(m, ""), &v);
        strmap_free(m);
        strmap_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_churn_matches_reference),
                cmocka_unit_test(test_missing_and_empty),
        };
        return cmocka_run_group_tests_name("strmap", tests, NULL, NULL);
}
