/* net: a sandbox's place on banger's bridge, for the control loop.
 *
 * Glues the network modules (ipam, netlink, nft) to the store the way the
 * loop needs them: allocations are claimed in the store (pools "tap", "ip",
 * "mac", "hostport") in one committed transaction before any device exists
 * (write-ahead), devices and set elements are then made idempotently from
 * the sandbox's id and spec, and GC removes taps and set elements whose id
 * no record holds.  The allocation is recorded in the sandbox's handles as
 * "net": {"tap","ip","prefix","gw","mac"}, so drivers and the API can read it.
 * Everything acts in bangerd's network namespace.  Calls are safe from any
 * thread (netlink and nft serialise themselves).
 */
#ifndef BANGER_NET_H
#define BANGER_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ipam.h"

struct bg_err;
struct bg_config;
struct bg_spec;
struct store;
struct strmap;
struct net;

#define NET_DEFAULT_BRIDGE "banger0"
#define NET_DEFAULT_SUBNET "172.16.0.0/24"

/* Parse cfg's bridge and subnet (defaults above), then make the bridge and
 * the nft table exist.  A bad subnet or bridge name fails before anything
 * is touched; a foreign link named like the bridge fails with -EEXIST and
 * is left alone.  *out is the caller's, to net_free. */
int net_open(const struct bg_config *cfg, struct net **out, struct bg_err **err);

/* Close the connections (devices stay: VMs outlive bangerd); NULL is a no-op. */
void net_free(struct net *n);

const char *net_bridge(const struct net *n);
const struct ipam_subnet *net_subnet(const struct net *n);
/* The gateway (bridge) address as a dotted quad into buf. */
void net_gateway(const struct net *n, char buf[IPAM_ADDR_SIZE]);

/* Claim id's tap, MAC, address (the one id already holds, else the lowest
 * free one) and one "hostport" per forwarded port of spec, releasing host
 * ports id holds that spec no longer forwards; one write transaction,
 * committed before returning.  Sets handles["net"].  Idempotent.  -ENOSPC
 * for a full subnet, -EEXIST when a name, MAC or host port belongs to
 * another sandbox (the message says which). */
int net_claim(struct net *n, struct store *st, const char *id, const struct bg_spec *spec, json_t *handles,
              struct bg_err **err);

/* Make the tap (attached, up), id's nft elements (nat and ports from spec)
 * and the neighbour entry match handles["net"] and spec.  Idempotent; a
 * missing bridge is re-created.  -EINVAL when handles has no "net". */
int net_setup(struct net *n, const char *id, const struct bg_spec *spec, const json_t *handles,
              struct bg_err **err);

/* Remove id's neighbour entry, nft elements and tap; the allocations stay
 * (the record's forget releases them).  Idempotent; handles may be NULL or
 * lack "net" (the tap name is derived from id). */
int net_teardown(struct net *n, const char *id, const json_t *handles, struct bg_err **err);

/* True in *ok when id's tap exists and is up on the bridge. */
int net_tap_ok(struct net *n, const char *id, bool *ok, struct bg_err **err);

/* The taps on the host, as a set of names (a new strmap, NULL on failure). */
struct strmap *net_tap_set(struct net *n, struct bg_err **err);

/* What GC found before reading the records: taps and nft ids. */
struct net_owned {
        char (*taps)[IPAM_TAP_NAME_SIZE];
        size_t n_taps;
        char (*ids)[IPAM_ID_LEN + 1];
        size_t n_ids;
};

/* List the taps and nft ids on the host into *o (release with
 * net_owned_release).  Call it before reading the records. */
int net_gc_list(struct net *n, struct net_owned *o, struct bg_err **err);

/* Remove the taps and nft elements of o that no id of ids (a set of record
 * ids) claims; *removed counts them.  Bad names are skipped. */
int net_gc_sweep(struct net *n, const struct net_owned *o, const struct strmap *ids, size_t *removed,
                 struct bg_err **err);

void net_owned_release(struct net_owned *o);

/* handles["net"]["ip"] as an address; -ENOENT when absent or bad. */
int net_handles_ip(const json_t *handles, uint32_t *ip);

/* What `banger doctor` shows: bridge, subnet, table, forwarding (a new
 * JSON object; the caller adds what it knows: addresses, DNS). */
json_t *net_doctor(struct net *n);

#endif
