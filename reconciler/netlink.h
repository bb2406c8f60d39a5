/* netlink: the links and neighbours banger owns, through libnl-route-3.
 *
 * A short list of privileged operations on exactly two kinds of object:
 * the configured bridge (marked ours by IFLA_IFALIAS "banger") and taps
 * named bg<12 hex> attached to it.  The connection remembers the bridge
 * name and subnet it was opened with and every call re-checks its
 * arguments against them (tap names, guest addresses), whatever the caller
 * checked before.  Calls on one connection are serialized by a mutex, so
 * workers may share it.  All calls act in the caller's network namespace.
 */
#ifndef BANGER_NETLINK_H
#define BANGER_NETLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ipam.h"

struct bg_err;
struct nl_conn;

#define NL_BRIDGE_ALIAS "banger"

/* Open a rtnetlink connection for bridge (ipam_bridge_name_valid) and
 * subnet into *out; free with nl_conn_free.  -EINVAL for a bad name. */
int nl_conn_open(const char *bridge, const struct ipam_subnet *subnet, struct nl_conn **out, struct bg_err **err);

/* Close and free; NULL is a no-op. */
void nl_conn_free(struct nl_conn *c);

/* Make the bridge exist, be up, carry alias "banger", have route_localnet
 * (for 127.0.0.1 port forwards) and hold exactly the gateway address/prefix
 * (other IPv4 addresses on our bridge are removed).
 * A link of that name that is not a bridge, or a bridge without our alias,
 * fails with -EEXIST and is left untouched.  Idempotent. */
int nl_bridge_ensure(struct nl_conn *c, struct bg_err **err);

/* Create the persistent tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, owned by owner
 * unless (uid_t)-1), attach it to the bridge and set it up.  An existing
 * tun/tap of that name is attached and set up again (idempotent); another
 * kind of link fails with -EEXIST.  The bridge must exist (-ENODEV). */
int nl_tap_create(struct nl_conn *c, const char *tap, uid_t owner, struct bg_err **err);

/* Delete the tap; a missing one is fine.  Only names matching the tap
 * pattern are accepted (-EINVAL). */
int nl_tap_delete(struct nl_conn *c, const char *tap, struct bg_err **err);

/* Delete many taps with one kernel unregister: each link costs the kernel
 * an RCU grace period (~17 ms) when deleted alone, so GC of a thousand
 * strays would take seconds.  The taps are moved to a group that no other
 * link uses and the group is deleted; missing names are fine, bad names
 * fail with -EINVAL before anything changes. */
int nl_tap_delete_many(struct nl_conn *c, const char (*names)[IPAM_TAP_NAME_SIZE], size_t n, struct bg_err **err);

/* True in *exists when a link named tap exists; *up when it is up and
 * attached to the bridge (either pointer may be NULL). */
int nl_tap_probe(struct nl_conn *c, const char *tap, bool *exists, bool *up, struct bg_err **err);

/* List the links named like taps (^bg[0-9a-f]{12}$) into a heap array of
 * IPAM_TAP_NAME_SIZE-byte names (*names, caller frees with free()) and *n. */
int nl_tap_list(struct nl_conn *c, char (**names)[IPAM_TAP_NAME_SIZE], size_t *n, struct bg_err **err);

/* ip neigh replace ADDR lladdr MAC dev BRIDGE nud permanent: spares the
 * host an ARP round while it polls a booting guest.  addr must be a guest
 * address of the subnet (-EINVAL). */
int nl_neigh_set(struct nl_conn *c, uint32_t addr, const uint8_t mac[6], struct bg_err **err);

/* Remove the bridge's neighbour entry for addr; a missing one is fine. */
int nl_neigh_del(struct nl_conn *c, uint32_t addr, struct bg_err **err);

/* Read net.ipv4.ip_forward of the caller's namespace into *on (masquerade
 * needs it; banger reports it rather than flipping a host-wide switch). */
int nl_ipv4_forwarding(bool *on, struct bg_err **err);

#endif
