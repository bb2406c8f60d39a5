/* nft: table inet banger against the real kernel, inside a network
 * namespace this test makes for itself (unshare(CLONE_NEWNET) first thing
 * in main; no namespace, no test).  What the module wrote is read back
 * through libnftables' own listing, and a foreign table `inet other` must
 * come out byte-for-byte as it went in.  Tests run in order and share the
 * namespace: the first one sees no table at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "err.h"
#include "ipam.h"
#include "nft.h"
#include "util.h"

#define ID_A "0123456789abcdef"
#define ID_B "fedcba9876543210"
#define ID_C "00000000000000cc"

static struct nft_ctx *probe;   /* the test's own libnftables */
static struct nft_conn *conn;
static char *other_before;

/* Output of one nft command, heap string. */
static char *nft_out(const char *cmd)
{
        if (nft_run_cmd_from_buffer(probe, cmd) != 0)
                fail_msg("nft %s: %s", cmd, nft_ctx_get_error_buffer(probe));
        return xstrdup(nft_ctx_get_output_buffer(probe));
}

static int count(const char *hay, const char *needle)
{
        int n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static uint32_t A(const char *s)
{
        uint32_t a;
        assert_int_equal(ipam_addr_parse(s, &a, NULL), 0);
        return a;
}

static void ok(int r, struct bg_err *e)
{
        if (r < 0)
                fail_msg("%s", bg_err_msg(e));
}

static void ok_e(int r, struct bg_err **e)
{
        if (r < 0)
                fail_msg("%s", bg_err_msg(*e));
        bg_err_free(*e);
        *e = NULL;
}

static const struct nft_port ports_a[] = { { 8080, 80 }, { 2222, 22 } };
static const uint16_t served_a[] = { 8000, 9000 };

static struct nft_sandbox sandbox_a(void)
{
        return (struct nft_sandbox){ .id = ID_A, .addr = A("172.16.0.5"), .nat = true, .ports = ports_a,
                                     .n_ports = 2, .served = served_a, .n_served = 2 };
}

static void test_missing_table_lists_nothing_and_deletes_nothing(void **state)
{
        (void)state;
        char (*ids)[IPAM_ID_LEN + 1] = NULL;
        size_t n = 9;
        struct bg_err *e = NULL;
        ok_e(nft_list_ids(conn, &ids, &n, &e), &e);
        assert_int_equal(n, 0);
        free(ids);
        ok_e(nft_sandbox_del(conn, ID_A, &e), &e);
        struct nft_sandbox sb = sandbox_a();
        assert_int_equal(nft_sandbox_add(conn, &sb, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "not set up"));
        bg_err_free(e);
}

static void test_ensure_creates_table_once(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        ok_e(nft_table_ensure(conn, &e), &e);
        _cleanup_free_ char *first = nft_out("list table inet banger");
        ok_e(nft_table_ensure(conn, &e), &e);
        _cleanup_free_ char *second = nft_out("list table inet banger");
        assert_string_equal(first, second);
        static const char *want[] = {
                "chain prerouting", "type nat hook prerouting priority dstnat", "chain output",
                "chain postrouting", "type nat hook postrouting priority srcnat", "chain forward",
                "type filter hook forward priority filter", "chain input", "chain guest_input",
                "map tcp_fwd", "set guests", "set nat_guests", "set served",
                "oifname != \"banger0\" ip saddr @nat_guests masquerade",
                "ip saddr @guests ip daddr 172.16.0.1 udp dport 53 accept",
                "ip saddr @guests ip daddr 172.16.0.1 tcp dport 53 accept",
                "iifname \"banger0\" jump guest_input",
        };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                if (!strstr(second, want[i]))
                        fail_msg("missing '%s' in:\n%s", want[i], second);
        assert_int_equal(count(second, "comment \"banger\""), 17);
}

static void test_sandbox_elements_appear_with_comments(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        struct nft_sandbox sb = sandbox_a();
        ok_e(nft_sandbox_add(conn, &sb, &e), &e);
        _cleanup_free_ char *t = nft_out("list table inet banger");
        static const char *want[] = {
                "172.16.0.5 comment \"banger:" ID_A "\"",
                "172.16.0.5 . 8000 comment \"banger:" ID_A "\"",
                "172.16.0.5 . 9000 comment \"banger:" ID_A "\"",
                "8080 comment \"banger:" ID_A "\" : 172.16.0.5 . 80",
                "2222 comment \"banger:" ID_A "\" : 172.16.0.5 . 22",
        };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                if (!strstr(t, want[i]))
                        fail_msg("missing '%s' in:\n%s", want[i], t);
        assert_int_equal(count(t, "banger:" ID_A), 6);   /* guests, nat, 2 served, 2 forwards */
        bool present = false;
        ok(nft_sandbox_present(conn, ID_A, &present, NULL), NULL);
        assert_true(present);
        ok(nft_sandbox_present(conn, ID_B, &present, NULL), NULL);
        assert_false(present);
}

static void test_adding_twice_replaces_not_duplicates(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        struct nft_sandbox sb = sandbox_a();
        _cleanup_free_ char *before = nft_out("list table inet banger");
        ok_e(nft_sandbox_add(conn, &sb, &e), &e);
        _cleanup_free_ char *after = nft_out("list table inet banger");
        assert_string_equal(before, after);

        /* an edit (no nat, one other forward, nothing served) replaces all */
        const struct nft_port p[] = { { 8443, 443 } };
        struct nft_sandbox edit = { .id = ID_A, .addr = A("172.16.0.5"), .nat = false, .ports = p, .n_ports = 1 };
        ok_e(nft_sandbox_add(conn, &edit, &e), &e);
        _cleanup_free_ char *t = nft_out("list table inet banger");
        assert_int_equal(count(t, "banger:" ID_A), 2);
        assert_non_null(strstr(t, "8443 comment \"banger:" ID_A "\" : 172.16.0.5 . 443"));
        assert_null(strstr(t, "8080 comment"));
        assert_null(strstr(t, ". 8000"));
        ok_e(nft_sandbox_add(conn, &sb, &e), &e);
}

static void test_delete_by_id_removes_exactly_those(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        const struct nft_port pb[] = { { 9090, 90 } };
        struct nft_sandbox b = { .id = ID_B, .addr = A("172.16.0.6"), .nat = true, .ports = pb, .n_ports = 1 };
        struct nft_sandbox c = { .id = ID_C, .addr = A("172.16.0.7") };
        ok_e(nft_sandbox_add(conn, &b, &e), &e);
        ok_e(nft_sandbox_add(conn, &c, &e), &e);
        _cleanup_free_ char *t0 = nft_out("list table inet banger");
        assert_int_equal(count(t0, "banger:" ID_A), 6);
        assert_int_equal(count(t0, "banger:" ID_B), 3);
        assert_int_equal(count(t0, "banger:" ID_C), 1);

        ok_e(nft_sandbox_del(conn, ID_A, &e), &e);
        _cleanup_free_ char *t1 = nft_out("list table inet banger");
        assert_int_equal(count(t1, "banger:" ID_A), 0);
        assert_int_equal(count(t1, "banger:" ID_B), 3);
        assert_int_equal(count(t1, "banger:" ID_C), 1);
        assert_int_equal(count(t1, "comment \"banger\""), 17);
        ok_e(nft_sandbox_del(conn, ID_A, &e), &e);   /* again: nothing to do */
        _cleanup_free_ char *t2 = nft_out("list table inet banger");
        assert_string_equal(t1, t2);
}

static void test_host_port_held_by_another_sandbox_is_refused(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        const struct nft_port p[] = { { 9090, 80 } };
        struct nft_sandbox d = { .id = "000000000000000d", .addr = A("172.16.0.8"), .ports = p, .n_ports = 1 };
        _cleanup_free_ char *before = nft_out("list table inet banger");
        assert_int_equal(nft_sandbox_add(conn, &d, &e), -EADDRINUSE);
        assert_string_equal(bg_err_msg(e), "sandbox 000000000000000d: host port 9090 is already forwarded to sandbox "
                                           ID_B);
        bg_err_free(e);
        _cleanup_free_ char *after = nft_out("list table inet banger");
        assert_string_equal(before, after);
}

static void test_bad_values_are_refused_before_nft(void **state)
{
        (void)state;
        const struct nft_port zero[] = { { 0, 80 } }, dup[] = { { 81, 80 }, { 81, 82 } };
        const uint16_t served0[] = { 0 };
        const struct {
                struct nft_sandbox sb;
                const char *msg;
        } t[] = {
                { { .id = "0123456789ABCDEF", .addr = A("172.16.0.9") }, "invalid sandbox id" },
                { { .id = "0123\" ; flush ruleset", .addr = A("172.16.0.9") }, "invalid sandbox id" },
                { { .id = NULL, .addr = A("172.16.0.9") }, "invalid sandbox id" },
                { { .id = ID_C, .addr = A("172.16.0.1") }, "not a guest address" },
                { { .id = ID_C, .addr = A("172.16.0.255") }, "not a guest address" },
                { { .id = ID_C, .addr = A("10.0.0.5") }, "not a guest address" },
                { { .id = ID_C, .addr = A("172.16.0.9"), .ports = zero, .n_ports = 1 }, "port 0" },
                { { .id = ID_C, .addr = A("172.16.0.9"), .ports = dup, .n_ports = 2 }, "host port 81 forwarded twice" },
                { { .id = ID_C, .addr = A("172.16.0.9"), .ports = NULL, .n_ports = 3 }, "port forwards" },
                { { .id = ID_C, .addr = A("172.16.0.9"), .ports = dup, .n_ports = 65 }, "at most 64" },
                { { .id = ID_C, .addr = A("172.16.0.9"), .served = served0, .n_served = 1 }, "served port 0" },
        };
        _cleanup_free_ char *before = nft_out("list table inet banger");
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                struct bg_err *e = NULL;
                assert_int_equal(nft_sandbox_add(conn, &t[i].sb, &e), -EINVAL);
                if (!strstr(bg_err_msg(e), t[i].msg))
                        fail_msg("case %zu: got '%s', want '%s'", i, bg_err_msg(e), t[i].msg);
                bg_err_free(e);
        }
        assert_int_equal(nft_sandbox_del(conn, "../x", NULL), -EINVAL);
        assert_int_equal(nft_sandbox_add(conn, NULL, NULL), -EINVAL);
        _cleanup_free_ char *after = nft_out("list table inet banger");
        assert_string_equal(before, after);
}

static void test_list_ids_sorted_unique(void **state)
{
        (void)state;
        char (*ids)[IPAM_ID_LEN + 1] = NULL;
        size_t n = 0;
        ok(nft_list_ids(conn, &ids, &n, NULL), NULL);
        assert_int_equal(n, 2);
        assert_string_equal(ids[0], ID_C);
        assert_string_equal(ids[1], ID_B);
        free(ids);

        /* an element someone else put into our set, unmarked, is not ours */
        free(nft_out("add element inet banger guests { 172.16.0.99 comment \"hand-made\" }"));
        ok(nft_list_ids(conn, &ids, &n, NULL), NULL);
        assert_int_equal(n, 2);
        free(ids);
        const char bad[2][IPAM_ID_LEN + 1] = { ID_B, "not-an-id" };
        assert_int_equal(nft_sandbox_del_many(conn, bad, 2, NULL), -EINVAL);
        ok(nft_list_ids(conn, &ids, &n, NULL), NULL);
        assert_int_equal(n, 2);
        free(ids);
        const char gone[3][IPAM_ID_LEN + 1] = { ID_B, "00000000000000ee", ID_C };
        ok(nft_sandbox_del_many(conn, gone, 3, NULL), NULL);
        ok(nft_list_ids(conn, &ids, &n, NULL), NULL);
        assert_int_equal(n, 0);
        free(ids);
        _cleanup_free_ char *t = nft_out("list set inet banger guests");
        assert_non_null(strstr(t, "172.16.0.99"));
}

static void test_foreign_table_is_untouched(void **state)
{
        (void)state;
        ok(nft_table_ensure(conn, NULL), NULL);
        _cleanup_free_ char *after = nft_out("list table inet other");
        assert_string_equal(other_before, after);
}

int main(void)
{
        /* Never the machine's own namespace or ruleset. */
        if (unshare(CLONE_NEWNET) < 0) {
                fprintf(stderr, "test_nft: unshare(CLONE_NEWNET): %s (needs root)\n", strerror(errno));
                return 1;
        }
        probe = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!probe || nft_ctx_buffer_output(probe) || nft_ctx_buffer_error(probe))
                return 1;
        if (nft_run_cmd_from_buffer(probe,
                                    "table inet other {\n"
                                    " set s { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 } }\n"
                                    " chain input { type filter hook input priority 10; policy accept;\n"
                                    "  tcp dport 22 counter accept comment \"theirs\"\n"
                                    "  ip saddr @s drop\n }\n"
                                    " chain postrouting { type nat hook postrouting priority 50;\n"
                                    "  oifname \"eth9\" masquerade\n }\n"
                                    "}\n") != 0) {
                fprintf(stderr, "test_nft: foreign table: %s\n", nft_ctx_get_error_buffer(probe));
                return 1;
        }
        nft_run_cmd_from_buffer(probe, "list table inet other");
        other_before = xstrdup(nft_ctx_get_output_buffer(probe));

        struct ipam_subnet s;
        struct bg_err *e = NULL;
        if (ipam_subnet_parse("172.16.0.0/24", &s, &e) < 0 || nft_conn_open("banger0", &s, &conn, &e) < 0) {
                fprintf(stderr, "test_nft: %s\n", bg_err_msg(e));
                return 1;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_table_lists_nothing_and_deletes_nothing),
                cmocka_unit_test(test_ensure_creates_table_once),
                cmocka_unit_test(test_sandbox_elements_appear_with_comments),
                cmocka_unit_test(test_adding_twice_replaces_not_duplicates),
                cmocka_unit_test(test_delete_by_id_removes_exactly_those),
                cmocka_unit_test(test_host_port_held_by_another_sandbox_is_refused),
                cmocka_unit_test(test_bad_values_are_refused_before_nft),
                cmocka_unit_test(test_list_ids_sorted_unique),
                cmocka_unit_test(test_foreign_table_is_untouched),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        nft_conn_free(conn);
        nft_ctx_free(probe);
        free(other_before);
        return r;
}
