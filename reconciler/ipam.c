/* ipam: subnet parsing, guest address picking and the names derived from
 * a sandbox id.  Pure: see ipam.h.  The parsers are strict on purpose (no
 * inet_aton shorthand like "10.1" or octal "010.0.0.1"): a config value
 * that could be read two ways is an error, not a guess. */
#include "ipam.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "util.h"

static uint32_t mask_of(unsigned prefix)
{
        return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

/* One decimal number 0..max without sign or leading zero; advances *p. */
static bool parse_dec(const char **p, unsigned max, unsigned *out)
{
        const char *s = *p;
        unsigned v = 0;
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9') {
                v = v * 10 + (unsigned)(s[n] - '0');
                if (++n > 3 || v > max)
                        return false;
        }
        if (n == 0 || (n > 1 && s[0] == '0'))
                return false;
        *p = s + n;
        *out = v;
        return true;
}

static bool parse_quad(const char **p, uint32_t *out)
{
        uint32_t a = 0;
        for (int i = 0; i < 4; i++) {
                unsigned o;
                if (i > 0 && *(*p)++ != '.')
                        return false;
                if (!parse_dec(p, 255, &o))
                        return false;
                a = a << 8 | o;
        }
        *out = a;
        return true;
}

int ipam_addr_parse(const char *s, uint32_t *out, struct bg_err **err)
{
        const char *p = s;
        if (!s || !parse_quad(&p, out) || *p)
                return bg_error(err, EINVAL, "invalid ipv4 address '%s'", s ? s : "(null)");
        return 0;
}

void ipam_addr_format(uint32_t a, char buf[IPAM_ADDR_SIZE])
{
        snprintf(buf, IPAM_ADDR_SIZE, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

int ipam_subnet_parse(const char *cidr, struct ipam_subnet *out, struct bg_err **err)
{
        const char *p = cidr;
        uint32_t net;
        unsigned prefix;

        if (!cidr || !parse_quad(&p, &net) || *p++ != '/' || !parse_dec(&p, 32, &prefix) || *p)
                return bg_error(err, EINVAL, "subnet '%s': not an ipv4 cidr (a.b.c.d/n)",
                                cidr ? cidr : "(null)");
        if (prefix < IPAM_PREFIX_MIN || prefix > IPAM_PREFIX_MAX)
                return bg_error(err, EINVAL, "subnet '%s': prefix /%u outside /%d../%d", cidr, prefix,
                                IPAM_PREFIX_MIN, IPAM_PREFIX_MAX);
        if (net & ~mask_of(prefix)) {
                char fixed[IPAM_ADDR_SIZE];
                ipam_addr_format(net & mask_of(prefix), fixed);
                return bg_error(err, EINVAL, "subnet '%s': host bits set (did you mean %s/%u?)", cidr,
                                fixed, prefix);
        }
        uint8_t first = (uint8_t)(net >> 24);
        if (first == 0 || first == 127 || first >= 224 || (net >> 16) == 0xa9fe)
                return bg_error(err, EINVAL,
                                "subnet '%s': reserved range (this-network, loopback, link-local or multicast)",
                                cidr);
        out->net = net;
        out->prefix = prefix;
        return 0;
}

void ipam_subnet_format(const struct ipam_subnet *s, char buf[IPAM_CIDR_SIZE])
{
        char a[IPAM_ADDR_SIZE];
        ipam_addr_format(s->net, a);
        snprintf(buf, IPAM_CIDR_SIZE, "%s/%u", a, s->prefix);
}

uint32_t ipam_gateway(const struct ipam_subnet *s)
{
        return s->net + 1;
}

uint32_t ipam_broadcast(const struct ipam_subnet *s)
{
        return s->net | ~mask_of(s->prefix);
}

uint32_t ipam_capacity(const struct ipam_subnet *s)
{
        return ipam_broadcast(s) - s->net - 2;   /* all addresses minus network, gateway, broadcast */
}

bool ipam_is_guest_addr(const struct ipam_subnet *s, uint32_t a)
{
        return (a & mask_of(s->prefix)) == s->net && a > ipam_gateway(s) && a < ipam_broadcast(s);
}

static bool is_lower_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool all_lower_hex(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!is_lower_hex(s[i]))
                        return false;
        return true;
}

bool ipam_id_valid(const char *id)
{
        return id && strlen(id) == IPAM_ID_LEN && all_lower_hex(id, IPAM_ID_LEN);
}

bool ipam_tap_name_valid(const char *name)
{
        return name && strlen(name) == 14 && name[0] == 'b' && name[1] == 'g' && all_lower_hex(name + 2, 12);
}

bool ipam_bridge_name_valid(const char *name)
{
        if (!name)
                return false;
        size_t n = strlen(name);
        if (n == 0 || n > 15 || !strcmp(name, ".") || !strcmp(name, ".."))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return false;
        }
        /* GC deletes what looks like a tap; the bridge must never look like one. */
        return !(str_has_prefix(name, "bg") && all_lower_hex(name + 2, n - 2));
}

int ipam_tap_name(const char *id, char out[IPAM_TAP_NAME_SIZE], struct bg_err **err)
{
        if (!ipam_id_valid(id))
                return bg_error(err, EINVAL, "invalid sandbox id '%s'", id ? id : "(null)");
        snprintf(out, IPAM_TAP_NAME_SIZE, "bg%.12s", id);
        return 0;
}

static uint8_t hexval(char c)
{
        if (c >= '0' && c <= '9')
                return (uint8_t)(c - '0');
        if (c >= 'a' && c <= 'f')
                return (uint8_t)(c - 'a' + 10);
        return (uint8_t)(c - 'A' + 10);
}

int ipam_mac(const char *id, uint8_t mac[6], struct bg_err **err)
{
        if (!ipam_id_valid(id))
                return bg_error(err, EINVAL, "invalid sandbox id '%s'", id ? id : "(null)");
        mac[0] = 0x52;   /* 0101 0010: locally administered, unicast */
        for (int i = 0; i < 5; i++)
                mac[i + 1] = (uint8_t)(hexval(id[2 * i]) << 4 | hexval(id[2 * i + 1]));
        return 0;
}

void ipam_mac_format(const uint8_t m[6], char buf[IPAM_MAC_SIZE])
{
        snprintf(buf, IPAM_MAC_SIZE, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

int ipam_mac_parse(const char *s, uint8_t mac[6], struct bg_err **err)
{
        if (!s || strlen(s) != 17)
                goto bad;
        for (int i = 0; i < 6; i++) {
                const char *p = s + 3 * i;
                char a = p[0] | 0x20, b = p[1] | 0x20;   /* ascii lower; non-hex stays non-hex */
                if (!is_lower_hex(a) || !is_lower_hex(b) || (i < 5 && p[2] != ':'))
                        goto bad;
                mac[i] = (uint8_t)(hexval(a) << 4 | hexval(b));
        }
        return 0;
bad:
        return bg_error(err, EINVAL, "invalid mac address '%s'", s ? s : "(null)");
}

int ipam_pick(const struct ipam_subnet *s, ipam_in_use_fn in_use, void *arg, uint32_t preferred,
              uint32_t *out, struct bg_err **err)
{
        if (preferred && ipam_is_guest_addr(s, preferred) && !in_use(preferred, arg)) {
                *out = preferred;
                return 0;
        }
        for (uint32_t a = ipam_gateway(s) + 1; a < ipam_broadcast(s); a++) {
                if (!in_use(a, arg)) {
                        *out = a;
                        return 0;
                }
        }
        char c[IPAM_CIDR_SIZE];
        ipam_subnet_format(s, c);
        return bg_error(err, ENOSPC, "subnet %s is full (%u guest addresses in use)", c, ipam_capacity(s));
}

struct bitmap {
        const struct ipam_subnet *s;
        uint8_t *bits;
};

static bool bitmap_in_use(uint32_t a, void *arg)
{
        const struct bitmap *b = arg;
        uint32_t i = a - b->s->net;
        return b->bits[i / 8] & (1u << (i % 8));
}

int ipam_pick_from(const struct ipam_subnet *s, const uint32_t *used, size_t n_used, uint32_t preferred,
                   uint32_t *out, struct bg_err **err)
{
        /* A /16 is 8 KiB of bits: cheaper than sorting and never quadratic. */
        size_t size = ((size_t)ipam_broadcast(s) - s->net + 1) / 8 + 1;
        _cleanup_free_ uint8_t *bits = xcalloc(size, 1);
        struct bitmap b = { s, bits };

        for (size_t i = 0; i < n_used; i++) {
                if ((used[i] & mask_of(s->prefix)) != s->net)
                        continue;
                uint32_t off = used[i] - s->net;
                bits[off / 8] |= (uint8_t)(1u << (off % 8));
        }
        return ipam_pick(s, bitmap_in_use, &b, preferred, out, err);
}
