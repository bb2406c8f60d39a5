/* agent_proto: frames round-trip; truncated, oversized and malformed
 * frames are refused without reading past the bytes given. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent_proto.h"

static struct agp_out *out_new(void)
{
        return calloc(1, sizeof(struct agp_out));
}

static void test_round_trip_of_every_field_kind(void **state)
{
        (void)state;
        struct agp_out *o = out_new();
        agp_begin(o, AGP_EXEC);
        agp_put_u64(o, AGT_ID, 42);
        agp_put_str(o, AGT_ARG, "echo");
        agp_put_str(o, AGT_ARG, "hi there");
        agp_put_bytes(o, AGT_DATA, "\0\1\2", 3);
        assert_int_equal(agp_end(o), 0);
        assert_int_equal(agp_frame_size(o->buf, o->len), (long)o->len);
        struct agp_msg m;
        assert_int_equal(agp_parse(o->buf, o->len, &m), 0);
        assert_int_equal(m.type, AGP_EXEC);
        uint64_t id = 0;
        assert_int_equal(agp_get_u64(&m, AGT_ID, &id), 0);
        assert_int_equal(id, 42);
        char s[16];
        assert_int_equal(agp_get_str(&m, AGT_ARG, s, sizeof s), 0);
        assert_string_equal(s, "echo");
        size_t pos = 0, n, args = 0;
        uint8_t tag;
        const uint8_t *v;
        while (agp_next(&m, &pos, &tag, &v, &n))
                args += tag == AGT_ARG;
        assert_int_equal(args, 2);
        const uint8_t *d;
        assert_int_equal(agp_get_bytes(&m, AGT_DATA, &d, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(d, "\0\1\2", 3);
        assert_int_equal(agp_get_u64(&m, AGT_CWD, &id), -ENOENT);
        free(o);
}

static void test_every_truncation_needs_more_bytes_or_is_refused(void **state)
{
        (void)state;
        struct agp_out *o = out_new();
        agp_begin(o, AGP_HELLO);
        agp_put_u64(o, AGT_VERSION, AGP_VERSION);
        agp_put_str(o, AGT_KERNEL, "6.1.0");
        assert_int_equal(agp_end(o), 0);
        for (size_t n = 0; n < o->len; n++) {
                /* a stream reader waits for more; a parser given a cut frame refuses it */
                uint8_t *cut = malloc(n ? n : 1);
                memcpy(cut, o->buf, n);
                assert_int_equal(agp_frame_size(cut, n), 0);
                struct agp_msg m;
                assert_int_not_equal(agp_parse(cut, n, &m), 0);
                free(cut);
        }
        free(o);
}

static void test_oversized_frame_is_refused_from_its_header(void **state)
{
        (void)state;
        uint8_t h[4] = { 0, 1, 0, 1 };   /* 65537 bytes of body */
        assert_int_equal(agp_frame_size(h, 4), -EMSGSIZE);
        uint8_t h2[4] = { 0xff, 0xff, 0xff, 0xff };
        assert_int_equal(agp_frame_size(h2, 4), -EMSGSIZE);
        uint8_t z[5] = { 0, 0, 0, 0, 1 };
        assert_int_equal(agp_frame_size(z, 5), -EPROTO);
        uint8_t maxh[4] = { 0, 1, 0, 0 };   /* exactly the limit: wait for it */
        assert_int_equal(agp_frame_size(maxh, 4), 0);
}

static void test_builder_refuses_what_does_not_fit(void **state)
{
        (void)state;
        struct agp_out *o = out_new();
        static uint8_t big[AGP_MAX_DATA];
        agp_begin(o, AGP_STDOUT);
        agp_put_bytes(o, AGT_DATA, big, sizeof big);
        agp_put_bytes(o, AGT_DATA, big, sizeof big);   /* 64 KiB + headers: too much */
        assert_int_equal(agp_end(o), -EMSGSIZE);
        agp_begin(o, AGP_STDOUT);
        agp_put_bytes(o, AGT_DATA, big, 0x10000);   /* a field over 16 bits */
        assert_int_equal(agp_end(o), -EMSGSIZE);
        char *s = malloc(AGP_MAX_STR + 1);
        memset(s, 'a', AGP_MAX_STR);
        s[AGP_MAX_STR] = '\0';
        agp_begin(o, AGP_EXEC);
        agp_put_str(o, AGT_ARG, s);
        assert_int_equal(agp_end(o), -EMSGSIZE);
        free(s);
        free(o);
}

static void test_malformed_fields_are_refused(void **state)
{
        (void)state;
        /* a field whose length runs past the body */
        uint8_t f1[] = { 0, 0, 0, 5, AGP_HELLO, AGT_KERNEL, 0, 9, 'x' };
        struct agp_msg m;
        assert_int_equal(agp_parse(f1, sizeof f1, &m), -EPROTO);
        /* a cut field header */
        uint8_t f2[] = { 0, 0, 0, 3, AGP_HELLO, AGT_KERNEL, 0 };
        assert_int_equal(agp_parse(f2, sizeof f2, &m), -EPROTO);
        /* unknown type, type 0 and tag 0 */
        uint8_t f3[] = { 0, 0, 0, 1, 200 };
        assert_int_equal(agp_parse(f3, sizeof f3, &m), -EPROTO);
        uint8_t f4[] = { 0, 0, 0, 1, 0 };
        assert_int_equal(agp_parse(f4, sizeof f4, &m), -EPROTO);
        uint8_t f5[] = { 0, 0, 0, 4, AGP_HELLO, 0, 0, 0 };
        assert_int_equal(agp_parse(f5, sizeof f5, &m), -EPROTO);
        /* a frame followed by garbage is not one frame */
        uint8_t f6[] = { 0, 0, 0, 1, AGP_HELLO, 9 };
        assert_int_equal(agp_parse(f6, sizeof f6, &m), -EPROTO);
        /* an integer of the wrong size, a string with a NUL, a string too long */
        uint8_t f7[] = { 0, 0, 0, 12, AGP_HELLO, AGT_ID, 0, 4, 0, 0, 0, 1, AGT_KERNEL, 0, 1, 0 };
        assert_int_equal(agp_parse(f7, sizeof f7, &m), 0);
        uint64_t v;
        assert_int_equal(agp_get_u64(&m, AGT_ID, &v), -EPROTO);
        char s[8];
        assert_int_equal(agp_get_str(&m, AGT_KERNEL, s, sizeof s), -EPROTO);
        uint8_t f8[] = { 0, 0, 0, 12, AGP_HELLO, AGT_KERNEL, 0, 8, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h' };
        assert_int_equal(agp_parse(f8, sizeof f8, &m), 0);
        assert_int_equal(agp_get_str(&m, AGT_KERNEL, s, sizeof s), -EPROTO);
        char s9[9];
        assert_int_equal(agp_get_str(&m, AGT_KERNEL, s9, sizeof s9), 0);
        assert_string_equal(s9, "abcdefgh");
}

static void test_random_bytes_never_crash_the_parser(void **state)
{
        (void)state;
        uint32_t x = 99;
        uint8_t buf[64];
        for (int round = 0; round < 200000; round++) {
                size_t n = (x >> 3) % sizeof buf;
                for (size_t i = 0; i < n; i++) {
                        x = x * 1103515245u + 12345u;
                        buf[i] = (uint8_t)(x >> 16);
                }
                buf[0] = buf[1] = buf[2] = 0;   /* lengths within reach, so bodies get parsed */
                if (n > 3)
                        buf[3] = (uint8_t)(n - 4);
                struct agp_msg m;
                if (agp_parse(buf, n, &m) == 0) {
                        size_t pos = 0, fl;
                        uint8_t tag;
                        const uint8_t *v;
                        char s[32];
                        uint64_t u;
                        while (agp_next(&m, &pos, &tag, &v, &fl))
                                assert_true(v + fl <= buf + n);
                        agp_get_str(&m, AGT_KERNEL, s, sizeof s);
                        agp_get_u64(&m, AGT_ID, &u);
                }
                x = x * 1103515245u + 12345u;
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_of_every_field_kind),
                cmocka_unit_test(test_every_truncation_needs_more_bytes_or_is_refused),
                cmocka_unit_test(test_oversized_frame_is_refused_from_its_header),
                cmocka_unit_test(test_builder_refuses_what_does_not_fit),
                cmocka_unit_test(test_malformed_fields_are_refused),
                cmocka_unit_test(test_random_bytes_never_crash_the_parser),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
