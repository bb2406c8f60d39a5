/* ipam: the pure half of banger's network: the subnet, the bridge (gateway)
 * address, and the names a sandbox's network objects get from its id.
 *
 * No I/O and no state: the allocations themselves live in the store
 * (pools "tap", "ip", "mac"), claimed before a device exists (write-ahead);
 * this module only says which address is free next and what a name or MAC
 * must look like, so netlink.c and nft.c can re-check what they are asked
 * to touch.  Addresses are uint32_t in host byte order throughout.
 */
#ifndef BANGER_IPAM_H
#define BANGER_IPAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bg_err;

#define IPAM_ID_LEN        16   /* hex digits of a record id */
#define IPAM_TAP_NAME_SIZE 15   /* "bg" + 12 hex + NUL (IFNAMSIZ is 16) */
#define IPAM_ADDR_SIZE     16   /* "255.255.255.255" + NUL */
#define IPAM_CIDR_SIZE     19   /* "255.255.255.255/32" + NUL */
#define IPAM_MAC_SIZE      18   /* "52:aa:bb:cc:dd:ee" + NUL */
#define IPAM_PREFIX_MIN    16
#define IPAM_PREFIX_MAX    29

struct ipam_subnet {
        uint32_t net;           /* network address, host order */
        unsigned prefix;        /* IPAM_PREFIX_MIN..IPAM_PREFIX_MAX */
};

/* Parse "A.B.C.D/N" (N in 16..29, no host bits set, not in 0/8, 127/8,
 * 169.254/16 or 224/3) into *out; -EINVAL with the reason otherwise. */
int ipam_subnet_parse(const char *cidr, struct ipam_subnet *out, struct bg_err **err);

/* Format s as "A.B.C.D/N" into buf (IPAM_CIDR_SIZE bytes). */
void ipam_subnet_format(const struct ipam_subnet *s, char buf[IPAM_CIDR_SIZE]);

/* The bridge (gateway) address: the first host of s. */
uint32_t ipam_gateway(const struct ipam_subnet *s);

/* The broadcast address (last address) of s. */
uint32_t ipam_broadcast(const struct ipam_subnet *s);

/* True when addr is a guest address of s: inside it, and not the network,
 * gateway or broadcast address. */
bool ipam_is_guest_addr(const struct ipam_subnet *s, uint32_t addr);

/* Number of guest addresses in s (hosts minus the gateway). */
uint32_t ipam_capacity(const struct ipam_subnet *s);

/* Parse a dotted-quad IPv4 address (no leading zeros, no shorthand);
 * -EINVAL otherwise. */
int ipam_addr_parse(const char *s, uint32_t *out, struct bg_err **err);

/* Format addr as a dotted quad into buf (IPAM_ADDR_SIZE bytes). */
void ipam_addr_format(uint32_t addr, char buf[IPAM_ADDR_SIZE]);

/* True when id is a record id: exactly 16 lowercase hex digits. */
bool ipam_id_valid(const char *id);

/* True when name is a banger tap name: ^bg[0-9a-f]{12}$. */
bool ipam_tap_name_valid(const char *name);

/* True when name is usable as the bridge name: 1..15 of [A-Za-z0-9_.-],
 * not "." or "..", and not something a tap name could be (bg + hex). */
bool ipam_bridge_name_valid(const char *name);

/* The tap name of a sandbox: "bg" + the first 12 hex digits of id, into
 * out (IPAM_TAP_NAME_SIZE bytes); -EINVAL when id is not a record id. */
int ipam_tap_name(const char *id, char out[IPAM_TAP_NAME_SIZE], struct bg_err **err);

/* The guest MAC of a sandbox: 52:<first 10 hex digits of id>, locally
 * administered unicast, stable for the id and readable next to the tap name
 * (bg0123456789ab <-> 52:01:23:45:67:89); -EINVAL for a bad id.  Two ids
 * sharing 40 bits clash: claim the MAC in the store like the tap name. */
int ipam_mac(const char *id, uint8_t mac[6], struct bg_err **err);

/* Format a MAC as lowercase "xx:xx:xx:xx:xx:xx" into buf (IPAM_MAC_SIZE). */
void ipam_mac_format(const uint8_t mac[6], char buf[IPAM_MAC_SIZE]);

/* Parse "xx:xx:xx:xx:xx:xx" (either case); -EINVAL otherwise. */
int ipam_mac_parse(const char *s, uint8_t mac[6], struct bg_err **err);

/* Callback for ipam_pick: true when addr is already taken. */
typedef bool (*ipam_in_use_fn)(uint32_t addr, void *arg);

/* Pick a guest address of s that in_use does not report: preferred when it
 * is a free guest address (pass 0 for none), else the lowest free one, into
 * *out.  A full subnet fails with -ENOSPC. */
int ipam_pick(const struct ipam_subnet *s, ipam_in_use_fn in_use, void *arg, uint32_t preferred,
              uint32_t *out, struct bg_err **err);

/* ipam_pick with the taken addresses given as an array (any order, any
 * addresses; outside ones are ignored).  The array is not modified. */
int ipam_pick_from(const struct ipam_subnet *s, const uint32_t *used, size_t n_used, uint32_t preferred,
                   uint32_t *out, struct bg_err **err);

#endif
