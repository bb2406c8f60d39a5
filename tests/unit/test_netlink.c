/* netlink: bridge, taps and neighbours against the real kernel, inside a
 * network namespace this test makes for itself (unshare(CLONE_NEWNET)
 * first thing in main; no namespace, no test).  Each test uses its own
 * bridge name so they do not depend on order.  Checks go through libnl
 * directly rather than through the module under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/ip.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/neighbour.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/neighbour.h>

#include "err.h"
#include "ipam.h"
#include "netlink.h"
#include "util.h"

static struct nl_sock *sk;   /* the test's own view of the kernel */

static struct ipam_subnet subnet(const char *cidr)
{
        struct ipam_subnet s;
        assert_int_equal(ipam_subnet_parse(cidr, &s, NULL), 0);
        return s;
}

static struct nl_conn *open_conn(const char *bridge, const char *cidr)
{
        struct ipam_subnet s = subnet(cidr);
        struct nl_conn *c = NULL;
        struct bg_err *e = NULL;
        if (nl_conn_open(bridge, &s, &c, &e) < 0)
                fail_msg("open: %s", bg_err_msg(e));
        return c;
}

static void ok(int r, struct bg_err *e)
{
        if (r < 0)
                fail_msg("%s", bg_err_msg(e));
        bg_err_free(e);
}

static struct rtnl_link *get_link(const char *name)
{
        struct rtnl_link *l = NULL;
        if (rtnl_link_get_kernel(sk, 0, name, &l) < 0)
                return NULL;
        return l;
}

/* "a.b.c.d/n" addresses of ifindex, space separated, into buf. */
static void addrs_of(int ifindex, char *buf, size_t len)
{
        struct nl_cache *cache;
        buf[0] = '\0';
        assert_int_equal(rtnl_addr_alloc_cache(sk, &cache), 0);
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_addr *a = (struct rtnl_addr *)o;
                if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET)
                        continue;
                char s[64];
                nl_addr2str(rtnl_addr_get_local(a), s, sizeof s);
                size_t n = strlen(buf);
                snprintf(buf + n, len - n, "%s%s", n ? " " : "", s);
        }
        nl_cache_free(cache);
}

static void add_foreign_bridge(const char *name)
{
        struct rtnl_link *l = rtnl_link_bridge_alloc();
        rtnl_link_set_name(l, name);
        assert_int_equal(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL), 0);
        rtnl_link_put(l);
}

static void add_plain_tap(const char *name)
{
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
        assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
        assert_int_equal(ioctl(fd, TUNSETPERSIST, 1UL), 0);
        close(fd);
}

static void test_bridge_ensure_is_idempotent(void **state)
{
        (void)state;
        struct nl_conn *c = open_conn("banger0", "172.16.0.0/24");
        char buf[256];
        for (int i = 0; i < 3; i++)
                ok(nl_bridge_ensure(c, NULL), NULL);
        struct rtnl_link *l = get_link("banger0");
        assert_non_null(l);
        assert_string_equal(rtnl_link_get_type(l), "bridge");
        assert_string_equal(rtnl_link_get_ifalias(l), "banger");
        assert_true(rtnl_link_get_flags(l) & IFF_UP);
        addrs_of(rtnl_link_get_ifindex(l), buf, sizeof buf);
        assert_string_equal(buf, "172.16.0.1/24");
        uint32_t localnet = 0;
        assert_int_equal(rtnl_link_inet_get_conf(l, IPV4_DEVCONF_ROUTE_LOCALNET, &localnet), 0);
        assert_int_equal(localnet, 1);
        uint8_t *mac = nl_addr_get_binary_addr(rtnl_link_get_addr(l));
        assert_int_equal(mac[0], 0x5a);
        rtnl_link_put(l);
        nl_conn_free(c);

        /* a changed subnet moves the gateway address: the bridge is ours */
        c = open_conn("banger0", "10.9.0.0/16");
        ok(nl_bridge_ensure(c, NULL), NULL);
        l = get_link("banger0");
        addrs_of(rtnl_link_get_ifindex(l), buf, sizeof buf);
        assert_string_equal(buf, "10.9.0.1/16");
        rtnl_link_put(l);
        nl_conn_free(c);
}

static void test_foreign_link_with_bridge_name_is_refused_untouched(void **state)
{
        (void)state;
        struct bg_err *e = NULL;

        add_plain_tap("notabr0");
        struct nl_conn *c = open_conn("notabr0", "172.16.0.0/24");
        assert_int_equal(nl_bridge_ensure(c, &e), -EEXIST);
        assert_non_null(strstr(bg_err_msg(e), "not a bridge"));
        bg_err_free(e);
        e = NULL;
        struct rtnl_link *l = get_link("notabr0");
        char buf[256];
        assert_false(rtnl_link_get_flags(l) & IFF_UP);
        assert_null(rtnl_link_get_ifalias(l));
        addrs_of(rtnl_link_get_ifindex(l), buf, sizeof buf);
        assert_string_equal(buf, "");
        rtnl_link_put(l);
        nl_conn_free(c);

        add_foreign_bridge("theirbr");
        c = open_conn("theirbr", "172.16.0.0/24");
        assert_int_equal(nl_bridge_ensure(c, &e), -EEXIST);
        assert_non_null(strstr(bg_err_msg(e), "not made by banger"));
        bg_err_free(e);
        e = NULL;
        l = get_link("theirbr");
        assert_false(rtnl_link_get_flags(l) & IFF_UP);
        assert_null(rtnl_link_get_ifalias(l));
        addrs_of(rtnl_link_get_ifindex(l), buf, sizeof buf);
        assert_string_equal(buf, "");
        rtnl_link_put(l);

        /* nor does anything get attached to it */
        assert_int_equal(nl_tap_create(c, "bg00000000000a", (uid_t)-1, &e), -EEXIST);
        bg_err_free(e);
        assert_null(get_link("bg00000000000a"));
        nl_conn_free(c);
}

static void test_bad_names_are_refused(void **state)
{
        (void)state;
        struct ipam_subnet s = subnet("172.16.0.0/24");
        struct nl_conn *c = NULL;
        assert_int_equal(nl_conn_open("bg0123456789ab", &s, &c, NULL), -EINVAL);
        assert_int_equal(nl_conn_open("x;y", &s, &c, NULL), -EINVAL);
        s.net |= 5;   /* host bits: not a subnet */
        assert_int_equal(nl_conn_open("brx", &s, &c, NULL), -EINVAL);

        c = open_conn("brnames", "172.16.0.0/24");
        static const char *bad[] = { "eth0", "bg0123", "bg0123456789AB", "bg0123456789abc", "lo", "brnames", "" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                assert_int_equal(nl_tap_create(c, bad[i], (uid_t)-1, NULL), -EINVAL);
                assert_int_equal(nl_tap_delete(c, bad[i], NULL), -EINVAL);
        }
        assert_int_equal(nl_tap_delete(c, NULL, NULL), -EINVAL);
        nl_conn_free(c);
}

static int count_named(char (*names)[IPAM_TAP_NAME_SIZE], size_t n, const char *name)
{
        int k = 0;
        for (size_t i = 0; i < n; i++)
                k += !strcmp(names[i], name);
        return k;
}

static void test_tap_create_attach_list_delete(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        struct nl_conn *c = open_conn("brtap", "172.20.0.0/24");

        assert_int_equal(nl_tap_create(c, "bg0000000000b1", (uid_t)-1, &e), -ENODEV);
        bg_err_free(e);
        e = NULL;
        assert_null(get_link("bg0000000000b1"));

        ok(nl_bridge_ensure(c, NULL), NULL);
        const char *taps[] = { "bg0000000000b1", "bg0000000000b2", "bg0000000000b3" };
        for (size_t i = 0; i < ARRAY_SIZE(taps); i++) {
                ok(nl_tap_create(c, taps[i], 65534, &e), e);
                e = NULL;
                ok(nl_tap_create(c, taps[i], 65534, &e), e);   /* again: no-op */
                e = NULL;
        }
        struct rtnl_link *br = get_link("brtap");
        for (size_t i = 0; i < ARRAY_SIZE(taps); i++) {
                struct rtnl_link *l = get_link(taps[i]);
                assert_non_null(l);
                assert_string_equal(rtnl_link_get_type(l), "tun");
                assert_int_equal(rtnl_link_get_master(l), rtnl_link_get_ifindex(br));
                assert_true(rtnl_link_get_flags(l) & IFF_UP);
                rtnl_link_put(l);
                bool exists = false, up = false;
                ok(nl_tap_probe(c, taps[i], &exists, &up, NULL), NULL);
                assert_true(exists && up);
        }
        rtnl_link_put(br);

        /* a persistent tap the VMM can open with the flags it wants */
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", taps[0]);
        assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
        close(fd);

        /* a tap that was detached (say by hand) is attached again */
        struct rtnl_link *l = get_link(taps[1]), *ch = rtnl_link_alloc();
        rtnl_link_set_master(ch, 0);
        rtnl_link_unset_flags(ch, IFF_UP);
        assert_int_equal(rtnl_link_change(sk, l, ch, 0), 0);
        rtnl_link_put(ch);
        rtnl_link_put(l);
        bool exists, up;
        ok(nl_tap_probe(c, taps[1], &exists, &up, NULL), NULL);
        assert_true(exists && !up);
        ok(nl_tap_create(c, taps[1], (uid_t)-1, NULL), NULL);
        ok(nl_tap_probe(c, taps[1], &exists, &up, NULL), NULL);
        assert_true(exists && up);

        /* look-alikes are not listed, a non-tap with a tap name is refused */
        add_plain_tap("bgnotours");
        add_foreign_bridge("bg0000000000ff");
        assert_int_equal(nl_tap_create(c, "bg0000000000ff", (uid_t)-1, &e), -EEXIST);
        bg_err_free(e);
        e = NULL;

        char (*names)[IPAM_TAP_NAME_SIZE] = NULL;
        size_t n = 0;
        ok(nl_tap_list(c, &names, &n, NULL), NULL);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < ARRAY_SIZE(taps); i++)
                assert_int_equal(count_named(names, n, taps[i]), 1);
        assert_int_equal(count_named(names, n, "bg0000000000ff"), 1);
        assert_int_equal(count_named(names, n, "bgnotours"), 0);
        free(names);

        for (size_t i = 0; i < ARRAY_SIZE(taps); i++) {
                ok(nl_tap_delete(c, taps[i], NULL), NULL);
                ok(nl_tap_delete(c, taps[i], NULL), NULL);   /* absent is fine */
                assert_null(get_link(taps[i]));
                ok(nl_tap_probe(c, taps[i], &exists, &up, NULL), NULL);
                assert_false(exists || up);
        }
        ok(nl_tap_list(c, &names, &n, NULL), NULL);
        assert_int_equal(n, 1);
        free(names);
        struct rtnl_link *theirs = get_link("bgnotours");   /* never ours: left alone */
        assert_non_null(theirs);
        rtnl_link_put(theirs);
        nl_conn_free(c);
}

static void test_tap_delete_many_in_one_batch(void **state)
{
        (void)state;
        struct nl_conn *c = open_conn("brmany", "172.23.0.0/24");
        ok(nl_bridge_ensure(c, NULL), NULL);
        char names[40][IPAM_TAP_NAME_SIZE];
        for (int i = 0; i < 40; i++) {
                snprintf(names[i], sizeof names[i], "bg%012x", 0xd00 + i);
                if (i < 30)   /* the last ten do not exist: fine */
                        ok(nl_tap_create(c, names[i], (uid_t)-1, NULL), NULL);
        }
        ok(nl_tap_create(c, "bg000000000e01", (uid_t)-1, NULL), NULL);   /* a keeper */
        const char bad[2][IPAM_TAP_NAME_SIZE] = { "bg000000000e01", "eth0" };
        assert_int_equal(nl_tap_delete_many(c, bad, 2, NULL), -EINVAL);
        struct rtnl_link *keep = get_link("bg000000000e01");
        assert_non_null(keep);
        rtnl_link_put(keep);

        ok(nl_tap_delete_many(c, (const char (*)[IPAM_TAP_NAME_SIZE])names, 40, NULL), NULL);
        for (int i = 0; i < 40; i++)
                assert_null(get_link(names[i]));
        keep = get_link("bg000000000e01");
        assert_non_null(keep);
        rtnl_link_put(keep);
        ok(nl_tap_delete_many(c, (const char (*)[IPAM_TAP_NAME_SIZE])names, 40, NULL), NULL);   /* again */
        ok(nl_tap_delete(c, "bg000000000e01", NULL), NULL);
        nl_conn_free(c);
}

static int neigh_state(int ifindex, const char *ip, char *mac, size_t len)
{
        struct nl_cache *cache;
        struct in_addr in;
        assert_int_equal(inet_pton(AF_INET, ip, &in), 1);
        assert_int_equal(rtnl_neigh_alloc_cache(sk, &cache), 0);
        struct nl_addr *dst = nl_addr_build(AF_INET, &in, 4);
        struct rtnl_neigh *n = rtnl_neigh_get(cache, ifindex, dst);
        nl_addr_put(dst);
        int st = -1;
        if (n) {
                st = rtnl_neigh_get_state(n);
                nl_addr2str(rtnl_neigh_get_lladdr(n), mac, len);
                rtnl_neigh_put(n);
        }
        nl_cache_free(cache);
        return st;
}

static void test_neighbour_set_replace_delete(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        struct nl_conn *c = open_conn("brneigh", "172.21.0.0/24");
        ok(nl_bridge_ensure(c, NULL), NULL);
        struct rtnl_link *br = get_link("brneigh");
        int ifindex = rtnl_link_get_ifindex(br);
        rtnl_link_put(br);

        uint32_t ip;
        uint8_t mac[6], mac2[6];
        char got[32];
        ok(ipam_addr_parse("172.21.0.7", &ip, NULL), NULL);
        ok(ipam_mac("0123456789abcdef", mac, NULL), NULL);
        ok(ipam_mac("fedcba9876543210", mac2, NULL), NULL);

        ok(nl_neigh_set(c, ip, mac, NULL), NULL);
        assert_int_equal(neigh_state(ifindex, "172.21.0.7", got, sizeof got), NUD_PERMANENT);
        assert_string_equal(got, "52:01:23:45:67:89");
        ok(nl_neigh_set(c, ip, mac2, NULL), NULL);   /* replace */
        assert_int_equal(neigh_state(ifindex, "172.21.0.7", got, sizeof got), NUD_PERMANENT);
        assert_string_equal(got, "52:fe:dc:ba:98:76");
        ok(nl_neigh_del(c, ip, NULL), NULL);
        assert_int_equal(neigh_state(ifindex, "172.21.0.7", got, sizeof got), -1);
        ok(nl_neigh_del(c, ip, NULL), NULL);   /* absent is fine */

        static const char *outside[] = { "172.21.0.1", "172.21.0.0", "172.21.0.255", "172.22.0.7", "8.8.8.8" };
        for (size_t i = 0; i < ARRAY_SIZE(outside); i++) {
                ok(ipam_addr_parse(outside[i], &ip, NULL), NULL);
                assert_int_equal(nl_neigh_set(c, ip, mac, &e), -EINVAL);
                assert_non_null(strstr(bg_err_msg(e), "not a guest address"));
                bg_err_free(e);
                e = NULL;
                assert_int_equal(nl_neigh_del(c, ip, NULL), -EINVAL);
        }
        uint8_t mcast[6] = { 0x01, 0, 0x5e, 0, 0, 1 }, zero[6] = { 0 };
        ok(ipam_addr_parse("172.21.0.9", &ip, NULL), NULL);
        assert_int_equal(nl_neigh_set(c, ip, mcast, NULL), -EINVAL);
        assert_int_equal(nl_neigh_set(c, ip, zero, NULL), -EINVAL);
        nl_conn_free(c);
}

static void test_ipv4_forwarding_reads_the_namespace(void **state)
{
        (void)state;
        bool on = true;
        ok(nl_ipv4_forwarding(&on, NULL), NULL);
        FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "r");
        assert_non_null(f);
        int v = -1;
        assert_int_equal(fscanf(f, "%d", &v), 1);
        fclose(f);
        assert_int_equal(on, v == 1);
}

int main(void)
{
        /* Never the machine's own namespace: no private namespace, no test. */
        if (unshare(CLONE_NEWNET) < 0) {
                fprintf(stderr, "test_netlink: unshare(CLONE_NEWNET): %s (needs root)\n", strerror(errno));
                return 1;
        }
        sk = nl_socket_alloc();
        if (!sk || nl_connect(sk, NETLINK_ROUTE) < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bridge_ensure_is_idempotent),
                cmocka_unit_test(test_foreign_link_with_bridge_name_is_refused_untouched),
                cmocka_unit_test(test_bad_names_are_refused),
                cmocka_unit_test(test_tap_create_attach_list_delete),
                cmocka_unit_test(test_tap_delete_many_in_one_batch),
                cmocka_unit_test(test_neighbour_set_replace_delete),
                cmocka_unit_test(test_ipv4_forwarding_reads_the_namespace),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        nl_socket_free(sk);
        return r;
}
