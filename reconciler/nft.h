/* nft: banger's packet filtering and NAT, all in table `inet banger`.
 *
 * A fixed set of base rules (comment "banger") written by nft_table_ensure
 * reads four sets; a sandbox is a handful of set elements, each with the
 * comment "banger:<id>" (the ownership mark GC looks for):
 *
 *   guests      ipv4_addr                      may reach DNS (udp/tcp 53)
 *                                              and ping on the gateway
 *   nat_guests  ipv4_addr                      forwarded out of any other
 *                                              interface, masqueraded
 *   served      ipv4_addr . inet_service       extra gateway TCP ports the
 *                                              guest may reach
 *   tcp_fwd     inet_service : ipv4_addr . inet_service
 *                                              host port -> guest (DNAT in
 *                                              prerouting and output)
 *
 * Everything else from the bridge to the host or beyond is dropped, and
 * nothing from outside reaches a guest unless a port forward sent it.
 * Why sets rather than per-sandbox rules: packets then cost one hash
 * lookup instead of a walk over thousands of rules, and listing 1,000
 * sandboxes' rules through libnftables took ~600 ms; set elements are
 * read here with a direct nfnetlink dump (about a millisecond).
 *
 * Each change is one nftables transaction: all of a sandbox's elements
 * appear or vanish together.  No other table is ever read or written.
 * The connection re-checks every value it writes (id, addresses inside the
 * subnet, ports) and serializes calls with a mutex.
 */
#ifndef BANGER_NFT_H
#define BANGER_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipam.h"

struct bg_err;
struct nft_conn;

#define NFT_TABLE      "banger"   /* family inet */
#define NFT_MAX_PORTS  64         /* per sandbox, forwards and served each */

struct nft_port {
        uint16_t host;            /* 1..65535, TCP on every host address */
        uint16_t guest;           /* 1..65535 */
};

struct nft_sandbox {
        const char *id;                   /* record id, 16 lowercase hex */
        uint32_t addr;                    /* guest address (host order), inside the subnet */
        bool nat;                         /* outbound through the host */
        const struct nft_port *ports;     /* host -> guest TCP forwards */
        size_t n_ports;
        const uint16_t *served;           /* gateway TCP ports banger serves this guest */
        size_t n_served;
};

/* Open libnftables and an nfnetlink socket for bridge and subnet into *out;
 * free with nft_conn_free.  -EINVAL for a bad bridge name or subnet. */
int nft_conn_open(const char *bridge, const struct ipam_subnet *subnet, struct nft_conn **out,
                  struct bg_err **err);

/* Free; NULL is a no-op. */
void nft_conn_free(struct nft_conn *c);

/* Create table inet banger, its sets and chains if missing, and rewrite the
 * base rules (flush + add of our own chains, one transaction; sandbox
 * elements are kept).  Idempotent; never touches another table. */
int nft_table_ensure(struct nft_conn *c, struct bg_err **err);

/* Replace every element of sb->id with those sb describes, in one
 * transaction.  -EINVAL for a bad value, -EADDRINUSE when a host port is
 * forwarded for another sandbox (message names it). */
int nft_sandbox_add(struct nft_conn *c, const struct nft_sandbox *sb, struct bg_err **err);

/* Delete every element whose comment is "banger:<id>", in one transaction;
 * none is fine.  A missing table is fine too. */
int nft_sandbox_del(struct nft_conn *c, const char *id, struct bg_err **err);

/* nft_sandbox_del for many ids in one read and one transaction (GC).  Bad
 * ids fail with -EINVAL before anything changes. */
int nft_sandbox_del_many(struct nft_conn *c, const char (*ids)[IPAM_ID_LEN + 1], size_t n, struct bg_err **err);

/* True in *present when any element carries id's mark. */
int nft_sandbox_present(struct nft_conn *c, const char *id, bool *present, struct bg_err **err);

/* True in *present when table inet banger exists (for doctor). */
int nft_table_present(struct nft_conn *c, bool *present, struct bg_err **err);

/* The ids that own elements, sorted and unique, as a heap array of 17-byte
 * strings (*ids, free() it) and *n.  A missing table yields none. */
int nft_list_ids(struct nft_conn *c, char (**ids)[IPAM_ID_LEN + 1], size_t *n, struct bg_err **err);

#endif
