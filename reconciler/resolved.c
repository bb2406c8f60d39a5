/* resolved: the `~vm` route in systemd-resolved, set with resolvectl.
 *
 * resolvectl is used rather than D-Bus so bangerd needs no sd-bus code for
 * three calls; vmm_run_tool spawns it without a shell, with a timeout and
 * only stdio.  The bridge name and the address are re-checked here (the
 * name must not look like an option), and nothing runs unless resolved is
 * really the resolver of this process's network namespace.
 */
#include "resolved.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "log.h"
#include "util.h"
#include "vmm.h"

#define RESOLVECTL_TIMEOUT_MS 10000

static bool ifname_valid(const char *s)
{
        size_t len = s ? strlen(s) : 0;
        if (len < 1 || len >= IFNAMSIZ || s[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.'))
                        return false;
        }
        return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bool addr_valid(const char *s)
{
        unsigned char buf[sizeof(struct in6_addr)];
        return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* resolved lives in PID 1's network namespace; from any other namespace
 * the bridge it would configure is not ours. */
static bool same_netns_as_init(void)
{
        struct stat self, init;
        if (stat("/proc/self/ns/net", &self) < 0 || stat("/proc/1/ns/net", &init) < 0)
                return false;
        return self.st_dev == init.st_dev && self.st_ino == init.st_ino;
}

bool resolved_active(const char *dir)
{
        struct stat st;
        if (stat(dir ? dir : RESOLVED_DIR, &st) < 0 || !S_ISDIR(st.st_mode))
                return false;
        return same_netns_as_init();
}

int resolved_argv(enum resolved_op op, const char *bridge, const char *addr,
                  const char *argv[RESOLVED_ARGV_MAX])
{
        for (size_t i = 0; i < RESOLVED_ARGV_MAX; i++)
                argv[i] = NULL;
        if (!ifname_valid(bridge))
                return -EINVAL;
        argv[0] = "resolvectl";
        argv[2] = bridge;
        switch (op) {
        case RESOLVED_DNS:
                if (!addr_valid(addr))
                        return -EINVAL;
                argv[1] = "dns";
                argv[3] = addr;
                return 0;
        case RESOLVED_DOMAIN:
                argv[1] = "domain";
                argv[3] = "~vm";
                return 0;
        case RESOLVED_DEFAULT_ROUTE:
                argv[1] = "default-route";
                argv[3] = "false";
                return 0;
        case RESOLVED_REVERT:
                argv[1] = "revert";
                return 0;
        }
        argv[0] = argv[2] = NULL;
        return -EINVAL;
}

static int run(enum resolved_op op, const char *bridge, const char *addr, struct bg_err **err)
{
        const char *argv[RESOLVED_ARGV_MAX];
        if (resolved_argv(op, bridge, addr, argv) < 0)
                return bg_error(err, EINVAL, "resolvectl: bad bridge '%s' or address", bridge);
        _cleanup_free_ char *output = NULL;
        return vmm_run_tool(argv, RESOLVECTL_TIMEOUT_MS, &output, NULL, err);
}

int resolved_route_at(const char *dir, const char *bridge, const char *addr, struct bg_err **err)
{
        const char *argv[RESOLVED_ARGV_MAX];
        if (resolved_argv(RESOLVED_DNS, bridge, addr, argv) < 0)
                return bg_error(err, EINVAL, "route ~vm: bad bridge '%s' or address '%s'",
                                bridge ? bridge : "", addr ? addr : "");
        if (!resolved_active(dir)) {
                log_debug("dns: systemd-resolved not active here, ~vm not routed");
                return RESOLVED_SKIPPED;
        }
        if (if_nametoindex(bridge) == 0)
                return bg_error(err, ENODEV, "route ~vm: no interface '%s'", bridge);
        /* Off the default route first, the server last: a link with a
         * server and no routing domain would take every query of the host. */
        if (run(RESOLVED_DEFAULT_ROUTE, bridge, addr, err) < 0 ||
            run(RESOLVED_DOMAIN, bridge, addr, err) < 0 ||
            run(RESOLVED_DNS, bridge, addr, err) < 0) {
                struct bg_err *e = NULL;
                (void)run(RESOLVED_REVERT, bridge, addr, &e);
                bg_err_free(e);
                return bg_error_wrap(err, "route ~vm to %s on %s", addr, bridge);
        }
        log_info("dns: ~vm routed bridge=%s server=%s", bridge, addr);
        return 0;
}

int resolved_route(const char *bridge, const char *addr, struct bg_err **err)
{
        return resolved_route_at(NULL, bridge, addr, err);
}

int resolved_unroute_at(const char *dir, const char *bridge, struct bg_err **err)
{
        if (!ifname_valid(bridge))
                return bg_error(err, EINVAL, "unroute ~vm: bad bridge '%s'", bridge ? bridge : "");
        if (!resolved_active(dir) || if_nametoindex(bridge) == 0)
                return RESOLVED_SKIPPED;        /* a removed link takes its settings along */
        if (run(RESOLVED_REVERT, bridge, NULL, err) < 0)
                return bg_error_wrap(err, "unroute ~vm on %s", bridge);
        return 0;
}

int resolved_unroute(const char *bridge, struct bg_err **err)
{
        return resolved_unroute_at(NULL, bridge, err);
}
