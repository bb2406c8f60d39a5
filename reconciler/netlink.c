/* netlink: bridge, taps and neighbour entries through libnl-route-3.  See
 * netlink.h for the contracts.
 *
 * Ownership: a bridge is ours when it carries IFLA_IFALIAS "banger"; a tap
 * is ours when its name is bg<12 hex> (the record id's prefix, allocated in
 * the store before the device exists).  Anything else of those names is
 * refused, never adopted or changed.  The bridge gets a fixed MAC when we
 * create it: a bridge without one takes the lowest port MAC, which changes
 * as taps come and go and leaves guests with a stale gateway ARP entry.
 */
#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/ip.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/neighbour.h>

#include "err.h"
#include "util.h"

struct nl_conn {
        struct nl_sock *sk;
        pthread_mutex_t lock;
        char bridge[IFNAMSIZ];
        struct ipam_subnet subnet;
};

/* libnl speaks NLE_* codes; the rest of banger speaks errno. */
static int nle_errno(int nle)
{
        switch (nle < 0 ? -nle : nle) {
        case NLE_EXIST: return EEXIST;
        case NLE_NODEV: return ENODEV;
        case NLE_OBJ_NOTFOUND: return ENOENT;
        case NLE_NOADDR: return EADDRNOTAVAIL;
        case NLE_PERM: return EPERM;
        case NLE_BUSY: return EBUSY;
        case NLE_INVAL: return EINVAL;
        case NLE_RANGE: return ERANGE;
        case NLE_NOMEM: return ENOMEM;
        case NLE_OPNOTSUPP: return EOPNOTSUPP;
        case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
        case NLE_NOACCESS: return EACCES;
        default: return EIO;
        }
}

static int nl_fail(struct bg_err **err, int nle, const char *what, const char *name)
{
        return bg_error(err, nle_errno(nle), "%s %s: %s", what, name, nl_geterror(nle));
}

static void link_putp(struct rtnl_link **l)
{
        if (*l)
                rtnl_link_put(*l);
}
#define _cleanup_link_ _cleanup_(link_putp)

static void addr_putp(struct nl_addr **a)
{
        if (*a)
                nl_addr_put(*a);
}
#define _cleanup_nladdr_ _cleanup_(addr_putp)

static void unlockp(pthread_mutex_t **m)
{
        if (*m)
                pthread_mutex_unlock(*m);
}
#define LOCKED(c) \
        pthread_mutex_t *lock_ __attribute__((cleanup(unlockp))) = &(c)->lock; \
        pthread_mutex_lock(lock_)

int nl_conn_open(const char *bridge, const struct ipam_subnet *subnet, struct nl_conn **out, struct bg_err **err)
{
        char cidr[IPAM_CIDR_SIZE];
        struct ipam_subnet check;

        if (!ipam_bridge_name_valid(bridge))
                return bg_error(err, EINVAL, "invalid bridge name '%s'", bridge ? bridge : "(null)");
        ipam_subnet_format(subnet, cidr);
        if (ipam_subnet_parse(cidr, &check, NULL) < 0)
                return bg_error(err, EINVAL, "netlink: invalid subnet %s", cidr);

        struct nl_sock *sk = nl_socket_alloc();
        if (!sk)
                return bg_error(err, ENOMEM, "netlink: allocate socket");
        int r = nl_connect(sk, NETLINK_ROUTE);
        if (r < 0) {
                nl_socket_free(sk);
                return bg_error(err, nle_errno(r), "netlink: connect: %s", nl_geterror(r));
        }
        int fd = nl_socket_get_fd(sk);
        fcntl(fd, F_SETFD, FD_CLOEXEC);

        struct nl_conn *c = xcalloc(1, sizeof *c);
        c->sk = sk;
        pthread_mutex_init(&c->lock, NULL);
        snprintf(c->bridge, sizeof c->bridge, "%s", bridge);
        c->subnet = *subnet;
        *out = c;
        return 0;
}

void nl_conn_free(struct nl_conn *c)
{
        if (!c)
                return;
        nl_socket_free(c->sk);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* The link named name into *out, or NULL when there is none. */
static int link_get(struct nl_conn *c, const char *name, struct rtnl_link **out, struct bg_err **err)
{
        *out = NULL;
        int r = rtnl_link_get_kernel(c->sk, 0, name, out);
        if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV) {
                *out = NULL;
                return 0;
        }
        if (r < 0)
                return nl_fail(err, r, "look up link", name);
        return 0;
}

static bool is_type(struct rtnl_link *l, const char *type)
{
        const char *t = rtnl_link_get_type(l);
        return t && !strcmp(t, type);
}

static bool is_our_bridge(struct rtnl_link *l)
{
        const char *alias = rtnl_link_get_ifalias(l);
        return is_type(l, "bridge") && alias && !strcmp(alias, NL_BRIDGE_ALIAS);
}

/* The ifindex of our bridge; -ENODEV when missing, -EEXIST when foreign. */
static int our_bridge_index(struct nl_conn *c, int *ifindex, struct bg_err **err)
{
        _cleanup_link_ struct rtnl_link *br = NULL;
        if (link_get(c, c->bridge, &br, err) < 0)
                return -EIO;
        if (!br)
                return bg_error(err, ENODEV, "bridge %s does not exist", c->bridge);
        if (!is_our_bridge(br))
                return bg_error(err, EEXIST, "link %s is not a bridge made by banger", c->bridge);
        *ifindex = rtnl_link_get_ifindex(br);
        return 0;
}

static int bridge_create(struct nl_conn *c, struct bg_err **err)
{
        _cleanup_link_ struct rtnl_link *l = rtnl_link_bridge_alloc();
        if (!l)
                return bg_error(err, ENOMEM, "allocate link");
        uint64_t h = fnv1a64(c->bridge, strlen(c->bridge), FNV1A64_SEED);
        uint8_t mac[6] = { 0x5a, (uint8_t)(h >> 32), (uint8_t)(h >> 24), (uint8_t)(h >> 16),
                           (uint8_t)(h >> 8), (uint8_t)h };   /* 0x5a: local unicast, apart from guests' 0x52 */
        _cleanup_nladdr_ struct nl_addr *a = nl_addr_build(AF_LLC, mac, sizeof mac);
        rtnl_link_set_name(l, c->bridge);
        rtnl_link_set_addr(l, a);
        rtnl_link_set_ifalias(l, NL_BRIDGE_ALIAS);
        int r = rtnl_link_add(c->sk, l, NLM_F_CREATE | NLM_F_EXCL);
        if (r < 0)
                return nl_fail(err, r, "create bridge", c->bridge);
        return 0;
}

/* Bring the bridge's IPv4 addresses to exactly gateway/prefix. */
static int bridge_addresses(struct nl_conn *c, int ifindex, struct bg_err **err)
{
        struct nl_cache *cache = NULL;
        uint32_t gw = ipam_gateway(&c->subnet);
        bool have = false;
        int r = rtnl_addr_alloc_cache(c->sk, &cache);
        if (r < 0)
                return nl_fail(err, r, "list addresses of", c->bridge);
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_addr *ad = (struct rtnl_addr *)o;
                struct nl_addr *local = rtnl_addr_get_local(ad);
                if (rtnl_addr_get_ifindex(ad) != ifindex || rtnl_addr_get_family(ad) != AF_INET || !local ||
                    nl_addr_get_len(local) != 4)
                        continue;
                uint32_t be;
                memcpy(&be, nl_addr_get_binary_addr(local), 4);
                if (ntohl(be) == gw && (unsigned)rtnl_addr_get_prefixlen(ad) == c->subnet.prefix) {
                        have = true;
                        continue;
                }
                r = rtnl_addr_delete(c->sk, ad, 0);
                if (r < 0 && r != -NLE_NOADDR) {
                        nl_cache_free(cache);
                        return nl_fail(err, r, "remove stale address from", c->bridge);
                }
        }
        nl_cache_free(cache);
        if (have)
                return 0;

        struct rtnl_addr *ad = rtnl_addr_alloc();
        uint32_t be = htonl(gw), bc = htonl(ipam_broadcast(&c->subnet));
        _cleanup_nladdr_ struct nl_addr *local = nl_addr_build(AF_INET, &be, 4);
        _cleanup_nladdr_ struct nl_addr *bcast = nl_addr_build(AF_INET, &bc, 4);
        nl_addr_set_prefixlen(local, (int)c->subnet.prefix);
        rtnl_addr_set_ifindex(ad, ifindex);
        rtnl_addr_set_family(ad, AF_INET);
        rtnl_addr_set_local(ad, local);
        rtnl_addr_set_prefixlen(ad, (int)c->subnet.prefix);
        rtnl_addr_set_broadcast(ad, bcast);
        r = rtnl_addr_add(c->sk, ad, NLM_F_CREATE);
        rtnl_addr_put(ad);
        if (r < 0 && r != -NLE_EXIST)
                return nl_fail(err, r, "add gateway address to", c->bridge);
        return 0;
}

int nl_bridge_ensure(struct nl_conn *c, struct bg_err **err)
{
        LOCKED(c);
        _cleanup_link_ struct rtnl_link *br = NULL;
        if (link_get(c, c->bridge, &br, err) < 0)
                return -EIO;
        if (br && !is_type(br, "bridge"))
                return bg_error(err, EEXIST, "link %s exists and is not a bridge; left untouched", c->bridge);
        if (br && !is_our_bridge(br))
                return bg_error(err, EEXIST,
                                "bridge %s exists but was not made by banger (no alias \"%s\"); left untouched",
                                c->bridge, NL_BRIDGE_ALIAS);
        if (!br) {
                if (bridge_create(c, err) < 0)
                        return -EIO;
                if (link_get(c, c->bridge, &br, err) < 0)
                        return -EIO;
                if (!br)
                        return bg_error(err, ENODEV, "bridge %s vanished after creation", c->bridge);
                if (!is_our_bridge(br)) {
                        /* Kernels that ignore IFLA_IFALIAS on create: mark it now. */
                        _cleanup_link_ struct rtnl_link *ch = rtnl_link_alloc();
                        rtnl_link_set_ifalias(ch, NL_BRIDGE_ALIAS);
                        int r = rtnl_link_change(c->sk, br, ch, 0);
                        if (r < 0)
                                return nl_fail(err, r, "mark bridge", c->bridge);
                }
        }
        /* route_localnet lets 127.0.0.1:port forwards reach a guest (nft
         * masquerades them to the gateway); guest_input drops anything a
         * guest sends to 127/8, so guests gain nothing from it. */
        uint32_t localnet = 0;
        if (!(rtnl_link_get_flags(br) & IFF_UP) ||
            rtnl_link_inet_get_conf(br, IPV4_DEVCONF_ROUTE_LOCALNET, &localnet) < 0 || localnet != 1) {
                _cleanup_link_ struct rtnl_link *ch = rtnl_link_alloc();
                rtnl_link_set_flags(ch, IFF_UP);
                rtnl_link_inet_set_conf(ch, IPV4_DEVCONF_ROUTE_LOCALNET, 1);
                int r = rtnl_link_change(c->sk, br, ch, 0);
                if (r < 0)
                        return nl_fail(err, r, "set up bridge (up, route_localnet)", c->bridge);
        }
        return bridge_addresses(c, rtnl_link_get_ifindex(br), err);
}

static int check_tap(const char *tap, struct bg_err **err)
{
        if (!ipam_tap_name_valid(tap))
                return bg_error(err, EINVAL, "invalid tap name '%s'", tap ? tap : "(null)");
        return 0;
}

/* Make the persistent tap device; the fd only lives for the ioctls, and a
 * failure before TUNSETPERSIST leaves nothing behind when it closes. */
static int tun_create(const char *tap, uid_t owner, struct bg_err **err)
{
        _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return bg_error(err, errno, "open /dev/net/tun: %s", strerror(errno));
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", tap);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                return bg_error(err, errno, "create tap %s: %s", tap, strerror(errno));
        if (owner != (uid_t)-1 && ioctl(fd, TUNSETOWNER, (unsigned long)owner) < 0)
                return bg_error(err, errno, "set owner of tap %s: %s", tap, strerror(errno));
        if (ioctl(fd, TUNSETPERSIST, 1UL) < 0)
                return bg_error(err, errno, "make tap %s persistent: %s", tap, strerror(errno));
        return 0;
}

int nl_tap_create(struct nl_conn *c, const char *tap, uid_t owner, struct bg_err **err)
{
        if (check_tap(tap, err) < 0)
                return -EINVAL;
        LOCKED(c);
        int br, r;
        if ((r = our_bridge_index(c, &br, err)) < 0)
                return bg_error_wrap(err, "create tap %s", tap);

        _cleanup_link_ struct rtnl_link *l = NULL;
        if (link_get(c, tap, &l, err) < 0)
                return -EIO;
        if (l && !is_type(l, "tun"))
                return bg_error(err, EEXIST, "link %s exists and is not a tap; left untouched", tap);
        if (!l) {
                if (tun_create(tap, owner, err) < 0)
                        return -EIO;
                if (link_get(c, tap, &l, err) < 0)
                        return -EIO;
                if (!l)
                        return bg_error(err, ENODEV, "tap %s vanished after creation", tap);
        }
        if (rtnl_link_get_master(l) == br && (rtnl_link_get_flags(l) & IFF_UP))
                return 0;
        _cleanup_link_ struct rtnl_link *ch = rtnl_link_alloc();
        rtnl_link_set_master(ch, br);
        rtnl_link_set_flags(ch, IFF_UP);
        r = rtnl_link_change(c->sk, l, ch, 0);
        if (r < 0)
                return nl_fail(err, r, "attach tap", tap);
        return 0;
}

int nl_tap_delete(struct nl_conn *c, const char *tap, struct bg_err **err)
{
        if (check_tap(tap, err) < 0)
                return -EINVAL;
        LOCKED(c);
        _cleanup_link_ struct rtnl_link *l = rtnl_link_alloc();
        rtnl_link_set_name(l, tap);
        int r = rtnl_link_delete(c->sk, l);
        if (r < 0 && r != -NLE_NODEV && r != -NLE_OBJ_NOTFOUND)
                return nl_fail(err, r, "delete tap", tap);
        return 0;
}

/* The group doomed taps wait in for their batch delete ("bg" + 0xde1). */
#define DOOM_GROUP 0x62670de1u

struct group_scan {
        int foreign;    /* links in DOOM_GROUP that are not taps by name */
};

static int on_group(struct nl_msg *msg, void *arg)
{
        struct group_scan *g = arg;
        struct nlattr *tb[IFLA_MAX + 1];
        if (nlmsg_parse(nlmsg_hdr(msg), sizeof(struct ifinfomsg), tb, IFLA_MAX, NULL) < 0 || !tb[IFLA_GROUP] ||
            nla_get_u32(tb[IFLA_GROUP]) != DOOM_GROUP)
                return NL_OK;
        if (!tb[IFLA_IFNAME] || !ipam_tap_name_valid(nla_get_string(tb[IFLA_IFNAME])))
                g->foreign++;
        return NL_OK;
}

/* Send one link request and wait for the kernel's answer. */
static int link_request(struct nl_conn *c, int type, int flags, const char *name, uint32_t group,
                        int (*valid)(struct nl_msg *, void *), void *arg)
{
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
        struct nl_msg *msg = nlmsg_alloc_simple(type, flags);
        if (!msg)
                return -NLE_NOMEM;
        int r = nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO);
        if (r == 0 && name)
                r = nla_put_string(msg, IFLA_IFNAME, name);
        if (r == 0 && group)
                r = nla_put_u32(msg, IFLA_GROUP, group);
        if (r == 0 && (flags & NLM_F_DUMP))
                r = nla_put_u32(msg, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        if (r < 0) {
                nlmsg_free(msg);
                return r;
        }
        if (!valid)
                return nl_send_sync(c->sk, msg);   /* frees msg, waits for the ack */
        r = nl_send_auto(c->sk, msg);
        nlmsg_free(msg);
        if (r < 0)
                return r;
        struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
        if (!cb)
                return -NLE_NOMEM;
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, valid, arg);
        r = nl_recvmsgs(c->sk, cb);
        nl_cb_put(cb);
        return r;
}

int nl_tap_delete_many(struct nl_conn *c, const char (*names)[IPAM_TAP_NAME_SIZE], size_t n, struct bg_err **err)
{
        for (size_t i = 0; i < n; i++)
                if (check_tap(names[i], err) < 0)
                        return -EINVAL;
        if (n == 0)
                return 0;
        LOCKED(c);
        struct group_scan g = { 0 };
        int r = link_request(c, RTM_GETLINK, NLM_F_DUMP, NULL, 0, on_group, &g);
        if (r < 0)
                return bg_error(err, nle_errno(r), "delete taps: list links: %s", nl_geterror(r));
        if (g.foreign)
                return bg_error(err, EEXIST, "delete taps: link group %#x is used by %d other link(s)", DOOM_GROUP,
                                g.foreign);
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) {
                r = link_request(c, RTM_SETLINK, 0, names[i], DOOM_GROUP, NULL, NULL);
                if (r == -NLE_NODEV || r == -NLE_OBJ_NOTFOUND)
                        continue;
                if (r < 0)
                        return bg_error(err, nle_errno(r), "delete taps: mark %s: %s", names[i], nl_geterror(r));
                moved++;
        }
        if (!moved)
                return 0;
        r = link_request(c, RTM_DELLINK, 0, NULL, DOOM_GROUP, NULL, NULL);
        if (r < 0 && r != -NLE_NODEV)
                return bg_error(err, nle_errno(r), "delete taps: delete group: %s", nl_geterror(r));
        return 0;
}

int nl_tap_probe(struct nl_conn *c, const char *tap, bool *exists, bool *up, struct bg_err **err)
{
        if (check_tap(tap, err) < 0)
                return -EINVAL;
        LOCKED(c);
        _cleanup_link_ struct rtnl_link *l = NULL;
        _cleanup_link_ struct rtnl_link *br = NULL;
        if (link_get(c, tap, &l, err) < 0 || link_get(c, c->bridge, &br, err) < 0)
                return -EIO;
        if (exists)
                *exists = l != NULL;
        if (up)
                *up = l && br && is_our_bridge(br) && rtnl_link_get_master(l) == rtnl_link_get_ifindex(br) &&
                      (rtnl_link_get_flags(l) & IFF_UP);
        return 0;
}

struct tap_list {
        char (*names)[IPAM_TAP_NAME_SIZE];
        size_t n, cap;
};

static int on_link(struct nl_msg *msg, void *arg)
{
        struct tap_list *tl = arg;
        struct nlattr *tb[IFLA_MAX + 1];
        if (nlmsg_parse(nlmsg_hdr(msg), sizeof(struct ifinfomsg), tb, IFLA_MAX, NULL) < 0 || !tb[IFLA_IFNAME])
                return NL_OK;
        const char *name = nla_get_string(tb[IFLA_IFNAME]);
        if (nla_len(tb[IFLA_IFNAME]) < 1 || name[nla_len(tb[IFLA_IFNAME]) - 1] != '\0' ||
            !ipam_tap_name_valid(name))
                return NL_OK;
        if (tl->n == tl->cap) {
                tl->cap = tl->cap ? tl->cap * 2 : 64;
                tl->names = xreallocarray(tl->names, tl->cap, sizeof *tl->names);
        }
        snprintf(tl->names[tl->n++], IPAM_TAP_NAME_SIZE, "%s", name);
        return NL_OK;
}

int nl_tap_list(struct nl_conn *c, char (**names)[IPAM_TAP_NAME_SIZE], size_t *n, struct bg_err **err)
{
        /* A raw dump without stats: libnl's link cache would build a full
         * object (and every stats counter) per link, which is most of the
         * cost with a thousand taps. */
        struct tap_list tl = { 0 };
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
        LOCKED(c);
        struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETLINK, NLM_F_DUMP);
        if (!msg)
                return bg_error(err, ENOMEM, "list taps: allocate message");
        if (nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 ||
            nla_put_u32(msg, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS) < 0) {
                nlmsg_free(msg);
                return bg_error(err, ENOMEM, "list taps: build message");
        }
        int r = nl_send_auto(c->sk, msg);
        nlmsg_free(msg);
        if (r < 0)
                return bg_error(err, nle_errno(r), "list taps: send: %s", nl_geterror(r));
        struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
        if (!cb)
                return bg_error(err, ENOMEM, "list taps: allocate callback");
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_link, &tl);
        r = nl_recvmsgs(c->sk, cb);
        nl_cb_put(cb);
        if (r < 0) {
                free(tl.names);
                return bg_error(err, nle_errno(r), "list taps: %s", nl_geterror(r));
        }
        *names = tl.names;
        *n = tl.n;
        return 0;
}

static int neigh_op(struct nl_conn *c, uint32_t addr, const uint8_t *mac, struct bg_err **err)
{
        char a[IPAM_ADDR_SIZE];
        ipam_addr_format(addr, a);
        if (!ipam_is_guest_addr(&c->subnet, addr))
                return bg_error(err, EINVAL, "neighbour %s: not a guest address of the subnet", a);
        if (mac && ((mac[0] & 1) || !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5])))
                return bg_error(err, EINVAL, "neighbour %s: mac is not a unicast address", a);
        LOCKED(c);
        int br, r;
        if (our_bridge_index(c, &br, err) < 0)
                return bg_error_wrap(err, "neighbour %s", a);

        uint32_t be = htonl(addr);
        struct rtnl_neigh *n = rtnl_neigh_alloc();
        _cleanup_nladdr_ struct nl_addr *dst = nl_addr_build(AF_INET, &be, 4);
        _cleanup_nladdr_ struct nl_addr *ll = mac ? nl_addr_build(AF_LLC, mac, 6) : NULL;
        rtnl_neigh_set_ifindex(n, br);
        rtnl_neigh_set_family(n, AF_INET);
        rtnl_neigh_set_dst(n, dst);
        if (mac) {
                rtnl_neigh_set_lladdr(n, ll);
                rtnl_neigh_set_state(n, NUD_PERMANENT);
                r = rtnl_neigh_add(c->sk, n, NLM_F_CREATE | NLM_F_REPLACE);
        } else {
                r = rtnl_neigh_delete(c->sk, n, 0);
                if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NOADDR || r == -NLE_NODEV)
                        r = 0;
        }
        rtnl_neigh_put(n);
        if (r < 0)
                return bg_error(err, nle_errno(r), "%s neighbour %s on %s: %s", mac ? "set" : "remove", a,
                                c->bridge, nl_geterror(r));
        return 0;
}

int nl_neigh_set(struct nl_conn *c, uint32_t addr, const uint8_t mac[6], struct bg_err **err)
{
        if (!mac)
                return bg_error(err, EINVAL, "neighbour: no mac");
        return neigh_op(c, addr, mac, err);
}

int nl_neigh_del(struct nl_conn *c, uint32_t addr, struct bg_err **err)
{
        return neigh_op(c, addr, NULL, err);
}

int nl_ipv4_forwarding(bool *on, struct bg_err **err)
{
        char buf[8] = { 0 };
        _cleanup_close_ int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return bg_error(err, errno, "read net.ipv4.ip_forward: %s", strerror(errno));
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 1 || (buf[0] != '0' && buf[0] != '1'))
                return bg_error(err, EIO, "read net.ipv4.ip_forward: unexpected content");
        *on = buf[0] == '1';
        return 0;
}
