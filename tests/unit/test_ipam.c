/* ipam: table tests for subnet parsing, address picking and the names and
 * MACs derived from a sandbox id.  Pure module: no namespace needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "err.h"
#include "ipam.h"
#include "util.h"

static uint32_t A(const char *s)
{
        uint32_t a = 0;
        assert_int_equal(ipam_addr_parse(s, &a, NULL), 0);
        return a;
}

static void test_subnet_parse_accepts_valid_cidrs(void **state)
{
        (void)state;
        static const struct { const char *in; const char *gw; const char *bcast; uint32_t cap; } t[] = {
                { "172.16.0.0/24", "172.16.0.1", "172.16.0.255", 253 },
                { "10.200.0.0/16", "10.200.0.1", "10.200.255.255", 65533 },
                { "192.168.77.8/29", "192.168.77.9", "192.168.77.15", 5 },
                { "100.64.12.0/22", "100.64.12.1", "100.64.15.255", 1021 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                struct ipam_subnet s;
                struct bg_err *e = NULL;
                char buf[IPAM_CIDR_SIZE], gw[IPAM_ADDR_SIZE], bc[IPAM_ADDR_SIZE];
                assert_int_equal(ipam_subnet_parse(t[i].in, &s, &e), 0);
                assert_null(e);
                ipam_subnet_format(&s, buf);
                assert_string_equal(buf, t[i].in);
                ipam_addr_format(ipam_gateway(&s), gw);
                ipam_addr_format(ipam_broadcast(&s), bc);
                assert_string_equal(gw, t[i].gw);
                assert_string_equal(bc, t[i].bcast);
                assert_int_equal(ipam_capacity(&s), t[i].cap);
        }
}

static void test_subnet_parse_rejects_nonsense_with_reason(void **state)
{
        (void)state;
        static const struct { const char *in; const char *msg; } t[] = {
                { "", "not an ipv4 cidr" },
                { "172.16.0.0", "not an ipv4 cidr" },
                { "172.16.0.0/", "not an ipv4 cidr" },
                { "172.16.0/24", "not an ipv4 cidr" },
                { "172.16.0.0.0/24", "not an ipv4 cidr" },
                { "172.16.0.256/24", "not an ipv4 cidr" },
                { "172.016.0.0/24", "not an ipv4 cidr" },
                { "172.16.0.0/024", "not an ipv4 cidr" },
                { "172.16.0.0/24 ", "not an ipv4 cidr" },
                { "-1.16.0.0/24", "not an ipv4 cidr" },
                { "172.16.0.0/33", "not an ipv4 cidr" },
                { "fd00::/64", "not an ipv4 cidr" },
                { "172.16.0.0/8", "prefix /8 outside /16../29" },
                { "172.16.0.0/15", "prefix /15 outside" },
                { "172.16.0.0/30", "prefix /30 outside" },
                { "172.16.0.0/32", "prefix /32 outside" },
                { "172.16.0.1/24", "host bits set (did you mean 172.16.0.0/24?)" },
                { "10.0.0.9/29", "host bits set (did you mean 10.0.0.8/29?)" },
                { "127.0.0.0/24", "reserved range" },
                { "0.1.0.0/16", "reserved range" },
                { "169.254.0.0/16", "reserved range" },
                { "224.0.0.0/24", "reserved range" },
                { "255.255.255.0/24", "reserved range" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                struct ipam_subnet s;
                struct bg_err *e = NULL;
                assert_int_equal(ipam_subnet_parse(t[i].in, &s, &e), -EINVAL);
                assert_non_null(e);
                if (!strstr(e->msg, t[i].msg))
                        fail_msg("'%s': got '%s', want '%s'", t[i].in, e->msg, t[i].msg);
                bg_err_free(e);
        }
        assert_int_equal(ipam_subnet_parse(NULL, &(struct ipam_subnet){ 0 }, NULL), -EINVAL);
}

static void test_addr_parse_is_strict(void **state)
{
        (void)state;
        static const char *bad[] = { "1.2.3", "1.2.3.4.", "01.2.3.4", "1.2.3.4/32", "1..3.4", "256.1.1.1",
                                     " 1.2.3.4", "0x1.2.3.4", "1.2.3.-4", "" };
        uint32_t a;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                assert_int_equal(ipam_addr_parse(bad[i], &a, NULL), -EINVAL);
        assert_int_equal(A("0.0.0.0"), 0);
        assert_int_equal(A("255.255.255.255"), 0xffffffffu);
        assert_int_equal(A("172.16.0.2"), 0xac100002u);
}

static void test_guest_addr_excludes_network_gateway_broadcast(void **state)
{
        (void)state;
        struct ipam_subnet s;
        assert_int_equal(ipam_subnet_parse("172.16.0.0/24", &s, NULL), 0);
        static const struct { const char *a; bool ok; } t[] = {
                { "172.16.0.0", false }, { "172.16.0.1", false }, { "172.16.0.2", true },
                { "172.16.0.254", true }, { "172.16.0.255", false }, { "172.16.1.2", false },
                { "172.15.255.254", false }, { "10.0.0.2", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++)
                assert_int_equal(ipam_is_guest_addr(&s, A(t[i].a)), t[i].ok);
}

static void test_names_from_id(void **state)
{
        (void)state;
        char tap[IPAM_TAP_NAME_SIZE], macs[IPAM_MAC_SIZE];
        uint8_t mac[6], back[6];

        assert_int_equal(ipam_tap_name("0123456789abcdef", tap, NULL), 0);
        assert_string_equal(tap, "bg0123456789ab");
        assert_true(strlen(tap) < 16);
        assert_true(ipam_tap_name_valid(tap));
        assert_int_equal(ipam_mac("0123456789abcdef", mac, NULL), 0);
        ipam_mac_format(mac, macs);
        assert_string_equal(macs, "52:01:23:45:67:89");
        assert_int_equal(mac[0] & 1, 0);   /* unicast */
        assert_int_equal(mac[0] & 2, 2);   /* locally administered */
        assert_int_equal(ipam_mac_parse("52:01:23:45:67:89", back, NULL), 0);
        assert_memory_equal(mac, back, 6);
        assert_int_equal(ipam_mac_parse("52:01:23:45:67:8G", back, NULL), -EINVAL);
        assert_int_equal(ipam_mac_parse("52:01:23:45:67:8", back, NULL), -EINVAL);
        assert_int_equal(ipam_mac_parse("52-01-23-45-67-89", back, NULL), -EINVAL);
        assert_int_equal(ipam_mac_parse("AA:BB:CC:DD:EE:FF", back, NULL), 0);

        /* stable: same id, same answers */
        uint8_t again[6];
        assert_int_equal(ipam_mac("0123456789abcdef", again, NULL), 0);
        assert_memory_equal(mac, again, 6);

        static const char *bad_ids[] = { "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
                                         "0123456789abcdeg", "", "../../etc/passwd" };
        for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
                struct bg_err *e = NULL;
                assert_int_equal(ipam_tap_name(bad_ids[i], tap, &e), -EINVAL);
                assert_non_null(strstr(e->msg, "invalid sandbox id"));
                bg_err_free(e);
                assert_int_equal(ipam_mac(bad_ids[i], mac, NULL), -EINVAL);
        }
        assert_int_equal(ipam_tap_name(NULL, tap, NULL), -EINVAL);
}

static void test_name_validators(void **state)
{
        (void)state;
        static const struct { const char *n; bool tap; bool bridge; } t[] = {
                { "bg0123456789ab", true, false },
                { "bg0123456789a", false, false },    /* looks like ours: never a bridge */
                { "bg0123456789abc", false, false },
                { "bg0123456789AB", false, true },
                { "bgX123456789ab", false, true },
                { "banger0", false, true },
                { "br-dev.1_x", false, true },
                { "bg", false, false },
                { "", false, false },
                { "a23456789012345", false, true },
                { "a234567890123456", false, false },
                { "eth0;rm", false, false },
                { "a/b", false, false },
                { ".", false, false },
                { "..", false, false },
                { "with space", false, false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                if (ipam_tap_name_valid(t[i].n) != t[i].tap || ipam_bridge_name_valid(t[i].n) != t[i].bridge)
                        fail_msg("'%s': tap %d bridge %d", t[i].n, ipam_tap_name_valid(t[i].n),
                                 ipam_bridge_name_valid(t[i].n));
        }
        assert_false(ipam_tap_name_valid(NULL));
        assert_false(ipam_bridge_name_valid(NULL));
}

static void test_pick_lowest_free_and_preferred(void **state)
{
        (void)state;
        struct ipam_subnet s;
        assert_int_equal(ipam_subnet_parse("172.16.0.0/24", &s, NULL), 0);
        const uint32_t used[] = { A("172.16.0.3"), A("172.16.0.2"), A("10.0.0.4"), A("172.16.0.5") };
        static const struct { const char *preferred; const char *want; } t[] = {
                { NULL, "172.16.0.4" },            /* lowest free, unsorted input */
                { "172.16.0.9", "172.16.0.9" },    /* free preferred wins */
                { "172.16.0.3", "172.16.0.4" },    /* taken preferred ignored */
                { "172.16.0.1", "172.16.0.4" },    /* gateway never */
                { "172.16.0.255", "172.16.0.4" },  /* broadcast never */
                { "172.16.0.0", "172.16.0.4" },    /* network never */
                { "10.0.0.7", "172.16.0.4" },      /* outside never */
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                uint32_t got = 0;
                assert_int_equal(ipam_pick_from(&s, used, ARRAY_SIZE(used), t[i].preferred ? A(t[i].preferred) : 0,
                                                &got, NULL), 0);
                assert_int_equal(got, A(t[i].want));
        }
        uint32_t got = 0;
        assert_int_equal(ipam_pick_from(&s, NULL, 0, 0, &got, NULL), 0);
        assert_int_equal(got, A("172.16.0.2"));
}

static void test_pick_full_subnet_is_clear_error(void **state)
{
        (void)state;
        struct ipam_subnet s;
        assert_int_equal(ipam_subnet_parse("192.168.5.0/29", &s, NULL), 0);
        uint32_t used[5];
        for (int i = 0; i < 5; i++)
                used[i] = A("192.168.5.2") + (uint32_t)i;
        uint32_t got = 0;
        struct bg_err *e = NULL;
        assert_int_equal(ipam_pick_from(&s, used, 4, 0, &got, NULL), 0);
        assert_int_equal(got, A("192.168.5.6"));
        assert_int_equal(ipam_pick_from(&s, used, 5, 0, &got, &e), -ENOSPC);
        assert_string_equal(e->msg, "subnet 192.168.5.0/29 is full (5 guest addresses in use)");
        bg_err_free(e);
}

static bool odd_in_use(uint32_t a, void *arg)
{
        (*(int *)arg)++;
        return a & 1;
}

static void test_pick_callback_and_big_subnet(void **state)
{
        (void)state;
        struct ipam_subnet s;
        int calls = 0;
        uint32_t got;
        assert_int_equal(ipam_subnet_parse("10.1.0.0/16", &s, NULL), 0);
        assert_int_equal(ipam_pick(&s, odd_in_use, &calls, A("10.1.7.3"), &got, NULL), 0);
        assert_int_equal(got, A("10.1.0.2"));
        assert_int_equal(ipam_pick(&s, odd_in_use, &calls, A("10.1.7.4"), &got, NULL), 0);
        assert_int_equal(got, A("10.1.7.4"));

        /* a /16 with everything but the last guest address taken */
        size_t n = ipam_capacity(&s) - 1;
        uint32_t *used = xcalloc(n, sizeof *used);
        for (size_t i = 0; i < n; i++)
                used[i] = A("10.1.0.2") + (uint32_t)i;
        assert_int_equal(ipam_pick_from(&s, used, n, 0, &got, NULL), 0);
        assert_int_equal(got, A("10.1.255.254"));
        free(used);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_subnet_parse_accepts_valid_cidrs),
                cmocka_unit_test(test_subnet_parse_rejects_nonsense_with_reason),
                cmocka_unit_test(test_addr_parse_is_strict),
                cmocka_unit_test(test_guest_addr_excludes_network_gateway_broadcast),
                cmocka_unit_test(test_names_from_id),
                cmocka_unit_test(test_name_validators),
                cmocka_unit_test(test_pick_lowest_free_and_preferred),
                cmocka_unit_test(test_pick_full_subnet_is_clear_error),
                cmocka_unit_test(test_pick_callback_and_big_subnet),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
