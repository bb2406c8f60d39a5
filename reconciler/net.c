/* net: see net.h.
 *
 * The idea: the store is the only memory of who holds what.  A claim reads
 * the pools and writes the allocations in one transaction, so two workers
 * can never pick the same address (LMDB serialises writers), and a crash
 * after the commit leaves allocations that the next claim of the same id
 * finds and keeps, or that the record's forget (or GC) releases.  Devices
 * and set elements are derived from the id and the handles, never
 * remembered here, so setup and teardown can always be redone.
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "fault.h"
#include "log.h"
#include "netlink.h"
#include "nft.h"
#include "spec.h"
#include "store.h"
#include "strmap.h"
#include "util.h"

struct net {
        char bridge[IPAM_TAP_NAME_SIZE + 1];
        struct ipam_subnet subnet;
        struct nl_conn *nl;
        struct nft_conn *nft;
};

int net_open(const struct bg_config *cfg, struct net **out, struct bg_err **err)
{
        const char *bridge = cfg && cfg->bridge ? cfg->bridge : NET_DEFAULT_BRIDGE;
        const char *subnet = cfg && cfg->subnet ? cfg->subnet : NET_DEFAULT_SUBNET;
        struct ipam_subnet s;
        if (ipam_subnet_parse(subnet, &s, err) < 0)
                return bg_error_wrap(err, "config subnet '%s'", subnet);
        if (!ipam_bridge_name_valid(bridge) || strlen(bridge) >= sizeof ((struct net *)0)->bridge)
                return bg_error(err, EINVAL, "config bridge '%s': not a usable interface name", bridge);
        struct net *n = xcalloc(1, sizeof *n);
        snprintf(n->bridge, sizeof n->bridge, "%s", bridge);
        n->subnet = s;
        if (nl_conn_open(bridge, &s, &n->nl, err) < 0 || nl_bridge_ensure(n->nl, err) < 0 ||
            nft_conn_open(bridge, &s, &n->nft, err) < 0 || nft_table_ensure(n->nft, err) < 0) {
                net_free(n);
                return bg_error_wrap(err, "network");
        }
        char cidr[IPAM_CIDR_SIZE];
        ipam_subnet_format(&s, cidr);
        log_info("network ready bridge=%s subnet=%s", bridge, cidr);
        *out = n;
        return 0;
}

void net_free(struct net *n)
{
        if (!n)
                return;
        nl_conn_free(n->nl);
        nft_conn_free(n->nft);
        free(n);
}

const char *net_bridge(const struct net *n)
{
        return n->bridge;
}

const struct ipam_subnet *net_subnet(const struct net *n)
{
        return &n->subnet;
}

void net_gateway(const struct net *n, char buf[IPAM_ADDR_SIZE])
{
        ipam_addr_format(ipam_gateway(&n->subnet), buf);
}

/* ---- claim ---- */

struct pool_scan {
        const char *id;
        uint32_t *used;           /* "ip": other owners' addresses */
        size_t n_used;
        uint32_t mine;            /* "ip": the address id holds, 0 none */
        char **stale;             /* "hostport": id's ports the spec dropped */
        size_t n_stale;
        const struct bg_spec *spec;
};

static int ip_scan_cb(const char *pool, const char *key, const char *owner, void *arg)
{
        (void)pool;
        struct pool_scan *p = arg;
        uint32_t a;
        if (ipam_addr_parse(key, &a, NULL) < 0)
                return 0;
        if (!strcmp(owner, p->id)) {
                if (!p->mine)
                        p->mine = a;
                return 0;
        }
        p->used = xreallocarray(p->used, p->n_used + 1, sizeof *p->used);
        p->used[p->n_used++] = a;
        return 0;
}

static bool spec_forwards(const struct bg_spec *s, unsigned port)
{
        for (size_t i = 0; s && i < s->n_ports; i++)
                if (s->ports[i].host == port)
                        return true;
        return false;
}

static int hostport_scan_cb(const char *pool, const char *key, const char *owner, void *arg)
{
        (void)pool;
        struct pool_scan *p = arg;
        if (strcmp(owner, p->id) != 0 || spec_forwards(p->spec, (unsigned)strtoul(key, NULL, 10)))
                return 0;
        p->stale = xreallocarray(p->stale, p->n_stale + 1, sizeof *p->stale);
        p->stale[p->n_stale++] = xstrdup(key);
        return 0;
}

struct name_of {
        const char *id;
        char name[64];
};

static int name_of_cb(const struct store_record *r, void *arg)
{
        struct name_of *o = arg;
        if (strcmp(r->id, o->id) != 0)
                return 0;
        snprintf(o->name, sizeof o->name, "%s", r->name);
        return 1;
}

/* Claim pool/key for id; on a clash say which sandbox holds it. */
static int claim(struct store_txn *t, const char *pool, const char *key, const char *id, const char *what,
                 struct bg_err **err)
{
        struct bg_err *e = NULL;
        int rc = store_alloc_claim(t, pool, key, id, &e);
        if (rc != -EEXIST) {
                if (rc < 0)
                        bg_error(err, -rc, "claim %s %s: %s", what, key, bg_err_msg(e));
                bg_err_free(e);
                return rc;
        }
        bg_err_free(e);
        struct name_of o = { .id = NULL };
        char owner[17] = "";
        if (store_alloc_get(t, pool, key, owner, NULL) == 0) {
                o.id = owner;
                store_record_foreach(t, name_of_cb, &o, NULL);
        }
        if (o.name[0])
                return bg_error(err, EEXIST, "%s %s is already used by sandbox '%s'", what, key, o.name);
        return bg_error(err, EEXIST, "%s %s is already used by sandbox id %s", what, key, owner[0] ? owner : "?");
}

int net_claim(struct net *n, struct store *st, const char *id, const struct bg_spec *spec, json_t *handles,
              struct bg_err **err)
{
        char tap[IPAM_TAP_NAME_SIZE], macs[IPAM_MAC_SIZE], ips[IPAM_ADDR_SIZE], gw[IPAM_ADDR_SIZE];
        uint8_t mac[6];
        if (ipam_tap_name(id, tap, err) < 0 || ipam_mac(id, mac, err) < 0)
                return -EINVAL;
        ipam_mac_format(mac, macs);
        struct store_txn *t = NULL;
        struct pool_scan p = { .id = id, .spec = spec };
        uint32_t ip = 0;
        int rc = store_txn_begin(st, true, &t, err);
        if (rc < 0)
                return rc;
        rc = claim(t, "tap", tap, id, "tap name", err);
        if (rc == 0)
                rc = claim(t, "mac", macs, id, "mac", err);
        if (rc == 0)
                rc = store_alloc_foreach(t, "ip", ip_scan_cb, &p, err);
        if (rc == 0) {
                if (p.mine && ipam_is_guest_addr(&n->subnet, p.mine)) {
                        ip = p.mine;
                } else if ((rc = ipam_pick_from(&n->subnet, p.used, p.n_used, 0, &ip, err)) < 0) {
                        char cidr[IPAM_CIDR_SIZE];
                        ipam_subnet_format(&n->subnet, cidr);
                        if (rc == -ENOSPC)
                                bg_error_wrap(err, "no free address in %s", cidr);
                }
        }
        if (rc == 0) {
                ipam_addr_format(ip, ips);
                rc = claim(t, "ip", ips, id, "address", err);
        }
        if (rc == 0)
                rc = store_alloc_foreach(t, "hostport", hostport_scan_cb, &p, err);
        for (size_t i = 0; rc == 0 && i < p.n_stale; i++)
                rc = store_alloc_release(t, "hostport", p.stale[i], err);
        for (size_t i = 0; rc == 0 && spec && i < spec->n_ports; i++) {
                char key[8];
                snprintf(key, sizeof key, "%u", spec->ports[i].host);
                rc = claim(t, "hostport", key, id, "host port", err);
        }
        if (rc == 0)
                rc = store_txn_commit(t, err);
        else
                store_txn_abort(t);
        free(p.used);
        for (size_t i = 0; i < p.n_stale; i++)
                free(p.stale[i]);
        free(p.stale);
        if (rc < 0)
                return rc;
        net_gateway(n, gw);
        json_object_set_new(handles, "net", json_pack("{s:s, s:s, s:i, s:s, s:s}", "tap", tap, "ip", ips,
                                                      "prefix", (json_int_t)n->subnet.prefix, "gw", gw,
                                                      "mac", macs));
        return 0;
}

/* ---- devices ---- */

int net_handles_ip(const json_t *handles, uint32_t *ip)
{
        const char *s = json_string_value(json_object_get(json_object_get(handles, "net"), "ip"));
        if (!s || ipam_addr_parse(s, ip, NULL) < 0)
                return -ENOENT;
        return 0;
}

int net_setup(struct net *n, const char *id, const struct bg_spec *spec, const json_t *handles,
              struct bg_err **err)
{
        char tap[IPAM_TAP_NAME_SIZE];
        uint8_t mac[6];
        uint32_t ip;
        if (ipam_tap_name(id, tap, err) < 0 || ipam_mac(id, mac, err) < 0)
                return -EINVAL;
        if (net_handles_ip(handles, &ip) < 0)
                return bg_error(err, EINVAL, "network of %s: no address claimed", id);
        struct bg_err *e = NULL;
        int rc = nl_tap_create(n->nl, tap, (uid_t)-1, &e);
        if (rc == -ENODEV) {
                /* The bridge went away behind our back: make it again. */
                bg_err_free(e);
                e = NULL;
                log_warn("bridge %s is missing; re-creating it", n->bridge);
                rc = nl_bridge_ensure(n->nl, &e);
                if (rc == 0)
                        rc = nft_table_ensure(n->nft, &e);
                if (rc == 0)
                        rc = nl_tap_create(n->nl, tap, (uid_t)-1, &e);
        }
        if (rc < 0) {
                bg_error(err, -rc, "%s", bg_err_msg(e));
                bg_err_free(e);
                return rc;
        }
        /* Tests only (fake driver): the tap exists, the rules not yet. */
        if ((rc = fault_hit("net-setup.mid", NULL, err)) < 0)
                return rc;
        struct nft_port ports[NFT_MAX_PORTS];
        size_t np = 0;
        for (size_t i = 0; spec && i < spec->n_ports; i++) {
                if (np == NFT_MAX_PORTS)
                        return bg_error(err, E2BIG, "more than %d port forwards", NFT_MAX_PORTS);
                ports[np++] = (struct nft_port){ (uint16_t)spec->ports[i].host, (uint16_t)spec->ports[i].guest };
        }
        struct nft_sandbox sb = { .id = id, .addr = ip, .nat = spec && spec->nat, .ports = ports, .n_ports = np };
        if ((rc = nft_sandbox_add(n->nft, &sb, err)) < 0)
                return rc;
        return nl_neigh_set(n->nl, ip, mac, err);
}

int net_teardown(struct net *n, const char *id, const json_t *handles, struct bg_err **err)
{
        char tap[IPAM_TAP_NAME_SIZE];
        uint32_t ip;
        if (ipam_tap_name(id, tap, err) < 0)
                return -EINVAL;
        if (net_handles_ip(handles, &ip) == 0 && ipam_is_guest_addr(&n->subnet, ip)) {
                int rc = nl_neigh_del(n->nl, ip, err);
                if (rc < 0)
                        return rc;
        }
        int rc = nft_sandbox_del(n->nft, id, err);
        if (rc < 0)
                return rc;
        /* Tests only (fake driver): the rules are gone, the tap not yet. */
        if ((rc = fault_hit("net-teardown.mid", NULL, err)) < 0)
                return rc;
        return nl_tap_delete(n->nl, tap, err);
}

int net_tap_ok(struct net *n, const char *id, bool *ok, struct bg_err **err)
{
        char tap[IPAM_TAP_NAME_SIZE];
        bool exists = false, up = false;
        *ok = false;
        if (ipam_tap_name(id, tap, err) < 0)
                return -EINVAL;
        int rc = nl_tap_probe(n->nl, tap, &exists, &up, err);
        *ok = rc == 0 && exists && up;
        return rc;
}

struct strmap *net_tap_set(struct net *n, struct bg_err **err)
{
        char (*taps)[IPAM_TAP_NAME_SIZE] = NULL;
        size_t nt = 0;
        if (nl_tap_list(n->nl, &taps, &nt, err) < 0)
                return NULL;
        struct strmap *m = strmap_new();
        for (size_t i = 0; i < nt; i++)
                strmap_put(m, taps[i], (void *)1);
        free(taps);
        return m;
}

/* ---- garbage collection ---- */

int net_gc_list(struct net *n, struct net_owned *o, struct bg_err **err)
{
        memset(o, 0, sizeof *o);
        if (nl_tap_list(n->nl, &o->taps, &o->n_taps, err) < 0 || nft_list_ids(n->nft, &o->ids, &o->n_ids, err) < 0) {
                net_owned_release(o);
                return -EIO;
        }
        return 0;
}

void net_owned_release(struct net_owned *o)
{
        free(o->taps);
        free(o->ids);
        memset(o, 0, sizeof *o);
}

static void add_tap_of_id(const char *id, void *value, void *arg)
{
        (void)value;
        char tap[IPAM_TAP_NAME_SIZE];
        if (ipam_tap_name(id, tap, NULL) == 0)
                strmap_put(arg, tap, (void *)1);
}

int net_gc_sweep(struct net *n, const struct net_owned *o, const struct strmap *ids, size_t *removed,
                 struct bg_err **err)
{
        *removed = 0;
        struct strmap *claimed = strmap_new();
        strmap_foreach(ids, add_tap_of_id, claimed);
        char (*taps)[IPAM_TAP_NAME_SIZE] = xreallocarray(NULL, o->n_taps + 1, sizeof *taps);
        char (*sids)[IPAM_ID_LEN + 1] = xreallocarray(NULL, o->n_ids + 1, sizeof *sids);
        size_t nt = 0, ni = 0;
        for (size_t i = 0; i < o->n_taps; i++)
                if (ipam_tap_name_valid(o->taps[i]) && !strmap_get(claimed, o->taps[i]))
                        memcpy(taps[nt++], o->taps[i], IPAM_TAP_NAME_SIZE);
        for (size_t i = 0; i < o->n_ids; i++)
                if (ipam_id_valid(o->ids[i]) && !strmap_get(ids, o->ids[i]))
                        memcpy(sids[ni++], o->ids[i], IPAM_ID_LEN + 1);
        strmap_free(claimed);
        int rc = 0;
        if (ni && nft_sandbox_del_many(n->nft, (const char (*)[IPAM_ID_LEN + 1])sids, ni, err) < 0)
                rc = -EIO;
        else
                *removed += ni;
        if (rc == 0 && nt && nl_tap_delete_many(n->nl, (const char (*)[IPAM_TAP_NAME_SIZE])taps, nt, err) < 0)
                rc = -EIO;
        else if (rc == 0)
                *removed += nt;
        for (size_t i = 0; i < nt && rc == 0; i++)
                log_info("gc network: removed stray tap %s", taps[i]);
        for (size_t i = 0; i < ni && rc == 0; i++)
                log_info("gc network: removed stray rules id=%s", sids[i]);
        free(taps);
        free(sids);
        return rc;
}

/* ---- doctor ---- */

json_t *net_doctor(struct net *n)
{
        char cidr[IPAM_CIDR_SIZE], gw[IPAM_ADDR_SIZE];
        ipam_subnet_format(&n->subnet, cidr);
        net_gateway(n, gw);
        bool table = false, fwd = false;
        struct bg_err *e = NULL;
        nft_table_present(n->nft, &table, &e);
        bg_err_free(e);
        e = NULL;
        int frc = nl_ipv4_forwarding(&fwd, &e);
        bg_err_free(e);
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:b}", "bridge", n->bridge, "subnet", cidr, "gateway", gw,
                              "capacity", (json_int_t)ipam_capacity(&n->subnet), "nft_table", table);
        json_object_set_new(j, "ipv4_forwarding", frc == 0 ? json_boolean(fwd) : json_null());
        return j;
}
