/* resolved: point systemd-resolved's `~vm` route at the dns responder on
 * the bridge, and take it back.  It runs `resolvectl` (posix_spawn, no
 * shell) and does nothing at all on hosts without systemd-resolved, or when
 * bangerd runs in another network namespace than PID 1 (a test's namespace,
 * which resolved cannot see).  Settings made this way live as long as the
 * link: a re-created bridge needs resolved_route again.  See
 * docs/dns-routing.md.
 */
#ifndef BANGER_RESOLVED_H
#define BANGER_RESOLVED_H

#include <stdbool.h>

struct bg_err;

#define RESOLVED_DIR "/run/systemd/resolve"
#define RESOLVED_SKIPPED 1      /* returned when there is nothing to route */
#define RESOLVED_ARGV_MAX 6     /* argv slots, the NULL included */

enum resolved_op {
        RESOLVED_DEFAULT_ROUTE, /* resolvectl default-route BRIDGE false */
        RESOLVED_DOMAIN,        /* resolvectl domain BRIDGE ~vm */
        RESOLVED_DNS,           /* resolvectl dns BRIDGE ADDR */
        RESOLVED_REVERT,        /* resolvectl revert BRIDGE */
};

/* True when systemd-resolved runs here (dir, NULL for RESOLVED_DIR, exists)
 * and this process shares PID 1's network namespace. */
bool resolved_active(const char *dir);

/* Fill argv (RESOLVED_ARGV_MAX slots, NULL-terminated) for op.  The strings
 * are literals or bridge and addr themselves.  -EINVAL when bridge is not
 * an interface name (1..15 of [A-Za-z0-9_.-], no leading '-') or addr not
 * an IPv4/IPv6 literal (addr is only read for RESOLVED_DNS). */
int resolved_argv(enum resolved_op op, const char *bridge, const char *addr,
                  const char *argv[RESOLVED_ARGV_MAX]);

/* Make resolved send every `*.vm` question (and nothing else) to addr on
 * bridge.  0 when routed, RESOLVED_SKIPPED when resolved is not active, a
 * negative code when the bridge does not exist (ENODEV) or resolvectl
 * fails (what was set is then reverted).  The link leaves the default
 * route before it gets the server, so other names never go to it. */
int resolved_route(const char *bridge, const char *addr, struct bg_err **err);

/* resolved_route with RESOLVED_DIR replaced by dir (tests). */
int resolved_route_at(const char *dir, const char *bridge, const char *addr, struct bg_err **err);

/* Drop what resolved_route set on bridge (resolvectl revert).  0, or
 * RESOLVED_SKIPPED when resolved is not active or the bridge is gone. */
int resolved_unroute(const char *bridge, struct bg_err **err);

/* resolved_unroute with RESOLVED_DIR replaced by dir (tests). */
int resolved_unroute_at(const char *dir, const char *bridge, struct bg_err **err);

#endif
