/* dns: a small authoritative responder for the zone `vm.` and the reverse
 * zone of the sandbox subnet, so that `ssh web.vm` works on the host.
 *
 * It runs in its own thread, serving UDP and TCP on one address (the bridge
 * address, port 53, in production).  Answers come from two callbacks, called
 * on that thread only, one query at a time: the caller makes them safe
 * against its own threads (they read the store or the index under its lock)
 * and keeps them quick (no I/O that can block).  Nothing is cached here, so
 * a sandbox that goes away is NXDOMAIN on the very next query.  No recursion
 * (RA=0): names outside the two zones get REFUSED.  See docs/dns-routing.md
 * for how the host's resolver is pointed at it.
 */
#ifndef BANGER_DNS_H
#define BANGER_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bg_err;
struct dns_server;

#define DNS_TTL 5                   /* seconds, on every answer */
#define DNS_UDP_MAX 512             /* UDP answer size without EDNS */
#define DNS_TCP_CONNS 16            /* open TCP connections; the oldest is dropped */
#define DNS_TCP_TIMEOUT_MS 5000     /* per connection, to the end of its next query */

/* Addresses are IPv4 in host byte order (172.16.0.10 is 0xac10000a). */
struct dns_config {
        /* name is one lowercase RFC 1123 label ("web" for web.vm.).  Return
         * 0 and set *ipv4 when the sandbox has an address, -ENOENT when it
         * is unknown (NXDOMAIN), another negative code on failure
         * (SERVFAIL).  An address outside the subnet is SERVFAIL too. */
        int (*lookup)(void *arg, const char *name, uint32_t *ipv4);
        /* Write the name (one label, without ".vm") of the sandbox holding
         * ipv4 into name[size]; same returns as lookup.  May be NULL: every
         * reverse name is then NXDOMAIN. */
        int (*reverse)(void *arg, uint32_t ipv4, char *name, size_t size);
        void *arg;
        uint32_t subnet;            /* network address; no host bits */
        unsigned prefix;            /* 8..32 */
        int tcp_timeout_ms;         /* <= 0: DNS_TCP_TIMEOUT_MS */
};

/* Bind UDP and TCP on addr (IPv4 or IPv6 literal) and port (0: any free
 * port, see dns_port) and start the thread; *out is the caller's, to
 * dns_stop.  cfg is copied.  Fails with EINVAL for a bad address, subnet
 * or missing lookup, or with the errno of socket/bind (EADDRINUSE...). */
int dns_start(const char *addr, uint16_t port, const struct dns_config *cfg,
              struct dns_server **out, struct bg_err **err);

/* The port both sockets are bound to. */
uint16_t dns_port(const struct dns_server *s);

/* Stop the thread, close every socket and free s; NULL is a no-op. */
void dns_stop(struct dns_server *s);

/* Answer one query message q[qlen] (the pure core, also used by the tests):
 * write the response into out[cap] (cap >= 12) and return its length, or 0
 * when the message must be dropped (shorter than a header, or a response).
 * Over UDP the answer is also held to 512 bytes, or to what the client's
 * EDNS record allows (at most 1232).  An answer over the limit becomes
 * header + question with TC=1, so the client retries over TCP. */
size_t dns_respond(const struct dns_config *cfg, const uint8_t *q, size_t qlen,
                   uint8_t *out, size_t cap, bool udp);

#endif
