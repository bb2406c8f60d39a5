/* nft: table inet banger.  See nft.h for the layout and why it is sets.
 *
 * Writes go through libnftables as one command buffer per change (one
 * buffer is one kernel transaction: all or nothing).  Every value put into
 * a buffer comes from a checked type: the bridge name (ipam_bridge_name_
 * valid: [A-Za-z0-9_.-]), ids (16 lowercase hex), dotted quads we format
 * ourselves and integers; nothing from outside is pasted in as text.
 *
 * Reads (which elements carry which id) bypass libnftables: its listing
 * decodes the whole ruleset into objects and costs ~30 us per element, so
 * we ask the kernel for the four sets' elements over nfnetlink (libnl core)
 * and read only key and comment.
 */
#include "nft.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <nftables/libnftables.h>

#include "err.h"
#include "util.h"

enum { SET_GUESTS, SET_NAT, SET_SERVED, SET_FWD, N_SETS };

static const struct {
        const char *name;
        const char *decl;     /* type clause */
        size_t keylen;        /* bytes of key in the kernel (concat fields pad to 4) */
} sets[N_SETS] = {
        [SET_GUESTS] = { "guests", "type ipv4_addr;", 4 },
        [SET_NAT] = { "nat_guests", "type ipv4_addr;", 4 },
        [SET_SERVED] = { "served", "type ipv4_addr . inet_service;", 8 },
        [SET_FWD] = { "tcp_fwd", "type inet_service : ipv4_addr . inet_service;", 2 },
};

struct nft_conn {
        struct nft_ctx *nft;
        struct nl_sock *sk;        /* NETLINK_NETFILTER, for dumps */
        pthread_mutex_t lock;
        char bridge[16];
        char gw[IPAM_ADDR_SIZE];
        struct ipam_subnet subnet;
};

/* One element of ours, as read back from the kernel. */
struct elem {
        int set;
        uint8_t key[8];
        char id[IPAM_ID_LEN + 1];
};

struct elems {
        struct elem *v;
        size_t n, cap;
};

static void unlockp(pthread_mutex_t **m)
{
        if (*m)
                pthread_mutex_unlock(*m);
}
#define LOCKED(c) \
        pthread_mutex_t *lock_ __attribute__((cleanup(unlockp))) = &(c)->lock; \
        pthread_mutex_lock(lock_)

int nft_conn_open(const char *bridge, const struct ipam_subnet *subnet, struct nft_conn **out,
                  struct bg_err **err)
{
        char cidr[IPAM_CIDR_SIZE];
        struct ipam_subnet check;

        if (!ipam_bridge_name_valid(bridge))
                return bg_error(err, EINVAL, "nft: invalid bridge name '%s'", bridge ? bridge : "(null)");
        ipam_subnet_format(subnet, cidr);
        if (ipam_subnet_parse(cidr, &check, NULL) < 0)
                return bg_error(err, EINVAL, "nft: invalid subnet %s", cidr);

        struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!nft)
                return bg_error(err, ENOMEM, "nft: create libnftables context");
        if (nft_ctx_buffer_output(nft) || nft_ctx_buffer_error(nft)) {
                nft_ctx_free(nft);
                return bg_error(err, ENOMEM, "nft: buffer libnftables output");
        }
        struct nl_sock *sk = nl_socket_alloc();
        int r = sk ? nl_connect(sk, NETLINK_NETFILTER) : -NLE_NOMEM;
        if (r < 0) {
                nl_socket_free(sk);
                nft_ctx_free(nft);
                return bg_error(err, EIO, "nft: connect nfnetlink: %s", nl_geterror(r));
        }
        fcntl(nl_socket_get_fd(sk), F_SETFD, FD_CLOEXEC);
        /* A dump of a thousand elements is a few hundred KiB. */
        nl_socket_set_buffer_size(sk, 1 << 20, 0);
        nl_socket_set_msg_buf_size(sk, 64 << 10);

        struct nft_conn *c = xcalloc(1, sizeof *c);
        c->nft = nft;
        c->sk = sk;
        pthread_mutex_init(&c->lock, NULL);
        snprintf(c->bridge, sizeof c->bridge, "%s", bridge);
        c->subnet = *subnet;
        ipam_addr_format(ipam_gateway(subnet), c->gw);
        *out = c;
        return 0;
}

void nft_conn_free(struct nft_conn *c)
{
        if (!c)
                return;
        nft_ctx_free(c->nft);
        nl_socket_free(c->sk);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* Run buf as one transaction; the error names what and libnftables' text. */
static int run(struct nft_conn *c, const char *buf, const char *what, struct bg_err **err)
{
        int r = nft_run_cmd_from_buffer(c->nft, buf);
        const char *msg = nft_ctx_get_error_buffer(c->nft);
        nft_ctx_get_output_buffer(c->nft);   /* drain */
        if (r == 0)
                return 0;
        /* First line only: the rest repeats the command with carets. */
        size_t n = msg ? strcspn(msg, "\n") : 0;
        return bg_error(err, EIO, "%s: %.*s", what, (int)n, n ? msg : "nftables error");
}

/* ---- the table ---------------------------------------------------------- */

struct sbuf {
        char *s;
        size_t len, cap;
};

static void __attribute__((format(printf, 2, 3))) put(struct sbuf *b, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *line = xvasprintf(fmt, ap);
        va_end(ap);
        size_t n = strlen(line);
        if (b->len + n + 2 > b->cap) {
                b->cap = (b->len + n + 2) * 2;
                b->s = xrealloc(b->s, b->cap);
        }
        memcpy(b->s + b->len, line, n);
        b->len += n;
        b->s[b->len++] = '\n';
        b->s[b->len] = '\0';
        free(line);
}

int nft_table_ensure(struct nft_conn *c, struct bg_err **err)
{
        static const struct {
                const char *name, *hook;
        } chains[] = {
                { "prerouting", "type nat hook prerouting priority dstnat; policy accept;" },
                { "output", "type nat hook output priority -100; policy accept;" },
                { "postrouting", "type nat hook postrouting priority srcnat; policy accept;" },
                { "forward", "type filter hook forward priority filter; policy accept;" },
                { "input", "type filter hook input priority filter; policy accept;" },
                { "guest_input", NULL },
        };
        const char *br = c->bridge, *gw = c->gw;
        _cleanup_free_ char *text = NULL;
        struct sbuf b = { 0 };

        put(&b, "add table inet " NFT_TABLE);
        for (size_t i = 0; i < N_SETS; i++)
                put(&b, "add %s inet " NFT_TABLE " %s { %s }", i == SET_FWD ? "map" : "set", sets[i].name,
                    sets[i].decl);
        for (size_t i = 0; i < ARRAY_SIZE(chains); i++) {
                if (chains[i].hook)
                        put(&b, "add chain inet " NFT_TABLE " %s { %s }", chains[i].name, chains[i].hook);
                else
                        put(&b, "add chain inet " NFT_TABLE " %s", chains[i].name);
                put(&b, "flush chain inet " NFT_TABLE " %s", chains[i].name);
        }
#define RULE(chain, fmt, ...) put(&b, "add rule inet " NFT_TABLE " " chain " " fmt " comment \"banger\"", __VA_ARGS__)
        /* Port forwards, for packets from outside and from the host itself. */
        RULE("prerouting", "fib daddr type local dnat ip to tcp dport map @%s", sets[SET_FWD].name);
        RULE("output", "fib daddr type local dnat ip to tcp dport map @%s", sets[SET_FWD].name);
        RULE("postrouting", "oifname != \"%s\" ip saddr @%s masquerade", br, sets[SET_NAT].name);
        /* 127.0.0.1:port forwarded to a guest leaves with the gateway's address. */
        RULE("postrouting", "oifname \"%s\" ip saddr 127.0.0.0/8 masquerade", br);
        RULE("forward", "ct state established,related accept%s", "");
        RULE("forward", "iifname \"%s\" oifname \"%s\" accept", br, br);
        RULE("forward", "iifname \"%s\" ip saddr @%s accept", br, sets[SET_NAT].name);
        RULE("forward", "oifname \"%s\" ct status dnat accept", br);
        RULE("forward", "iifname \"%s\" drop", br);
        RULE("forward", "oifname \"%s\" drop", br);
        RULE("input", "iifname \"%s\" jump guest_input", br);
        RULE("guest_input", "ct state established,related accept%s", "");
        RULE("guest_input", "ip saddr @%s ip daddr %s udp dport 53 accept", sets[SET_GUESTS].name, gw);
        RULE("guest_input", "ip saddr @%s ip daddr %s tcp dport 53 accept", sets[SET_GUESTS].name, gw);
        RULE("guest_input", "ip saddr @%s ip daddr %s icmp type echo-request accept", sets[SET_GUESTS].name, gw);
        RULE("guest_input", "ip daddr %s ip saddr . tcp dport @%s accept", gw, sets[SET_SERVED].name);
        RULE("guest_input", "drop%s", "");
#undef RULE
        text = b.s;
        LOCKED(c);
        return run(c, text, "ensure table inet " NFT_TABLE, err);
}

/* ---- reading elements over nfnetlink ------------------------------------ */

/* The "banger:<id>" comment out of libnftnl's userdata TLVs (type 0). */
static bool comment_id(const uint8_t *ud, size_t len, char id[IPAM_ID_LEN + 1])
{
        static const char pfx[] = "banger:";
        for (size_t off = 0; off + 2 <= len;) {
                uint8_t type = ud[off], n = ud[off + 1];
                const char *v = (const char *)ud + off + 2;
                if (off + 2 + n > len)
                        return false;
                if (type == 0 && n == sizeof pfx - 1 + IPAM_ID_LEN + 1 && !memcmp(v, pfx, sizeof pfx - 1) &&
                    v[n - 1] == '\0') {
                        memcpy(id, v + sizeof pfx - 1, IPAM_ID_LEN + 1);
                        return ipam_id_valid(id);
                }
                off += 2 + (size_t)n;
        }
        return false;
}

struct dump {
        int set;
        struct elems *out;
};

static int on_elems(struct nl_msg *msg, void *arg)
{
        struct dump *d = arg;
        struct nlattr *tb[NFTA_SET_ELEM_LIST_MAX + 1];
        struct nlattr *e;
        int rem;

        if (nlmsg_parse(nlmsg_hdr(msg), sizeof(struct nfgenmsg), tb, NFTA_SET_ELEM_LIST_MAX, NULL) < 0 ||
            !tb[NFTA_SET_ELEM_LIST_ELEMENTS])
                return NL_OK;
        nla_for_each_nested(e, tb[NFTA_SET_ELEM_LIST_ELEMENTS], rem) {
                struct nlattr *et[NFTA_SET_ELEM_MAX + 1], *kt[NFTA_DATA_MAX + 1];
                struct elem el = { .set = d->set };
                if (nla_type(e) != NFTA_LIST_ELEM || nla_parse_nested(et, NFTA_SET_ELEM_MAX, e, NULL) < 0 ||
                    !et[NFTA_SET_ELEM_KEY] || !et[NFTA_SET_ELEM_USERDATA] ||
                    nla_parse_nested(kt, NFTA_DATA_MAX, et[NFTA_SET_ELEM_KEY], NULL) < 0 || !kt[NFTA_DATA_VALUE] ||
                    (size_t)nla_len(kt[NFTA_DATA_VALUE]) != sets[d->set].keylen)
                        continue;
                if (!comment_id(nla_data(et[NFTA_SET_ELEM_USERDATA]), (size_t)nla_len(et[NFTA_SET_ELEM_USERDATA]),
                                el.id))
                        continue;   /* not marked as ours: never touched */
                memcpy(el.key, nla_data(kt[NFTA_DATA_VALUE]), sets[d->set].keylen);
                if (d->out->n == d->out->cap) {
                        d->out->cap = d->out->cap ? d->out->cap * 2 : 256;
                        d->out->v = xreallocarray(d->out->v, d->out->cap, sizeof *d->out->v);
                }
                d->out->v[d->out->n++] = el;
        }
        return NL_OK;
}

/* Append the marked elements of every set to out.  *exists is false when
 * the table (or one of its sets) is missing; that is not an error. */
static int read_elems(struct nft_conn *c, struct elems *out, bool *exists, struct bg_err **err)
{
        *exists = true;
        for (int s = 0; s < N_SETS; s++) {
                struct nfgenmsg g = { .nfgen_family = NFPROTO_INET, .version = NFNETLINK_V0 };
                struct nl_msg *msg = nlmsg_alloc_simple(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM, NLM_F_DUMP);
                if (!msg || nlmsg_append(msg, &g, sizeof g, NLMSG_ALIGNTO) < 0 ||
                    nla_put_string(msg, NFTA_SET_ELEM_LIST_TABLE, NFT_TABLE) < 0 ||
                    nla_put_string(msg, NFTA_SET_ELEM_LIST_SET, sets[s].name) < 0) {
                        nlmsg_free(msg);
                        return bg_error(err, ENOMEM, "list set %s: build message", sets[s].name);
                }
                int r = nl_send_auto(c->sk, msg);
                nlmsg_free(msg);
                if (r < 0)
                        return bg_error(err, EIO, "list set %s: send: %s", sets[s].name, nl_geterror(r));
                struct dump d = { s, out };
                struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
                if (!cb)
                        return bg_error(err, ENOMEM, "list set %s: allocate callback", sets[s].name);
                nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_elems, &d);
                r = nl_recvmsgs(c->sk, cb);
                nl_cb_put(cb);
                if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV) {
                        *exists = false;
                        continue;
                }
                if (r < 0)
                        return bg_error(err, EIO, "list set inet %s %s: %s", NFT_TABLE, sets[s].name, nl_geterror(r));
        }
        return 0;
}

/* The nft syntax of an element's key, for delete element. */
static void key_text(const struct elem *e, char *buf, size_t len)
{
        char a[IPAM_ADDR_SIZE];
        uint32_t be;
        uint16_t port;
        memcpy(&be, e->key, 4);
        ipam_addr_format(ntohl(be), a);
        switch (e->set) {
        case SET_SERVED:
                memcpy(&port, e->key + 4, 2);
                snprintf(buf, len, "%s . %u", a, ntohs(port));
                break;
        case SET_FWD:
                memcpy(&port, e->key, 2);
                snprintf(buf, len, "%u", ntohs(port));
                break;
        default:
                snprintf(buf, len, "%s", a);
        }
}

static int cmp_id(const void *a, const void *b)
{
        return memcmp(a, b, IPAM_ID_LEN);
}

/* Delete commands for the elements whose id is in ids (sorted, n). */
static void put_deletes(struct sbuf *b, const struct elems *es, const char (*ids)[IPAM_ID_LEN + 1], size_t n)
{
        for (size_t i = 0; i < es->n; i++) {
                if (!bsearch(es->v[i].id, ids, n, sizeof *ids, cmp_id))
                        continue;
                char k[40];
                key_text(&es->v[i], k, sizeof k);
                put(b, "delete element inet " NFT_TABLE " %s { %s }", sets[es->v[i].set].name, k);
        }
}

/* ---- sandboxes ---------------------------------------------------------- */

static int check_sandbox(struct nft_conn *c, const struct nft_sandbox *sb, struct bg_err **err)
{
        char a[IPAM_ADDR_SIZE];
        if (!sb || !ipam_id_valid(sb->id))
                return bg_error(err, EINVAL, "invalid sandbox id '%s'", sb && sb->id ? sb->id : "(null)");
        ipam_addr_format(sb->addr, a);
        if (!ipam_is_guest_addr(&c->subnet, sb->addr))
                return bg_error(err, EINVAL, "sandbox %s: %s is not a guest address of the subnet", sb->id, a);
        if (sb->n_ports > NFT_MAX_PORTS || (sb->n_ports && !sb->ports))
                return bg_error(err, EINVAL, "sandbox %s: %zu port forwards (at most %d)", sb->id, sb->n_ports,
                                NFT_MAX_PORTS);
        if (sb->n_served > NFT_MAX_PORTS || (sb->n_served && !sb->served))
                return bg_error(err, EINVAL, "sandbox %s: %zu served ports (at most %d)", sb->id, sb->n_served,
                                NFT_MAX_PORTS);
        for (size_t i = 0; i < sb->n_ports; i++) {
                if (!sb->ports[i].host || !sb->ports[i].guest)
                        return bg_error(err, EINVAL, "sandbox %s: port 0 in forward %zu", sb->id, i);
                for (size_t j = 0; j < i; j++)
                        if (sb->ports[j].host == sb->ports[i].host)
                                return bg_error(err, EINVAL, "sandbox %s: host port %u forwarded twice", sb->id,
                                                sb->ports[i].host);
        }
        for (size_t i = 0; i < sb->n_served; i++)
                if (!sb->served[i])
                        return bg_error(err, EINVAL, "sandbox %s: served port 0", sb->id);
        return 0;
}

int nft_sandbox_add(struct nft_conn *c, const struct nft_sandbox *sb, struct bg_err **err)
{
        if (check_sandbox(c, sb, err) < 0)
                return -EINVAL;
        LOCKED(c);
        struct elems es = { 0 };
        bool exists;
        if (read_elems(c, &es, &exists, err) < 0) {
                free(es.v);
                return bg_error_wrap(err, "add rules for sandbox %s", sb->id);
        }
        if (!exists) {
                free(es.v);
                return bg_error(err, ENOENT, "add rules for sandbox %s: table inet %s is not set up", sb->id,
                                NFT_TABLE);
        }
        /* A host port held by another sandbox: name it rather than pass on
         * the kernel's "File exists". */
        for (size_t i = 0; i < es.n; i++) {
                if (es.v[i].set != SET_FWD || !strcmp(es.v[i].id, sb->id))
                        continue;
                uint16_t port;
                memcpy(&port, es.v[i].key, 2);
                for (size_t j = 0; j < sb->n_ports; j++) {
                        if (sb->ports[j].host == ntohs(port)) {
                                int r = bg_error(err, EADDRINUSE,
                                                 "sandbox %s: host port %u is already forwarded to sandbox %s",
                                                 sb->id, sb->ports[j].host, es.v[i].id);
                                free(es.v);
                                return r;
                        }
                }
        }

        struct sbuf b = { 0 };
        char a[IPAM_ADDR_SIZE];
        ipam_addr_format(sb->addr, a);
        put_deletes(&b, &es, (const char (*)[IPAM_ID_LEN + 1])sb->id, 1);   /* checked: 16 chars + NUL */
        free(es.v);
#define ELEM(set, fmt, ...) \
        put(&b, "add element inet " NFT_TABLE " %s { " fmt " }", sets[set].name, __VA_ARGS__)
        ELEM(SET_GUESTS, "%s comment \"banger:%s\"", a, sb->id);
        if (sb->nat)
                ELEM(SET_NAT, "%s comment \"banger:%s\"", a, sb->id);
        for (size_t i = 0; i < sb->n_served; i++)
                ELEM(SET_SERVED, "%s . %u comment \"banger:%s\"", a, sb->served[i], sb->id);
        for (size_t i = 0; i < sb->n_ports; i++)
                ELEM(SET_FWD, "%u comment \"banger:%s\" : %s . %u", sb->ports[i].host, sb->id, a,
                     sb->ports[i].guest);
#undef ELEM
        _cleanup_free_ char *text = b.s;
        char what[64];
        snprintf(what, sizeof what, "add rules for sandbox %s", sb->id);
        return run(c, text, what, err);
}

int nft_sandbox_del(struct nft_conn *c, const char *id, struct bg_err **err)
{
        if (!ipam_id_valid(id))
                return bg_error(err, EINVAL, "invalid sandbox id '%s'", id ? id : "(null)");
        /* A valid id is exactly 16 chars + NUL: a one-element array. */
        return nft_sandbox_del_many(c, (const char (*)[IPAM_ID_LEN + 1])id, 1, err);
}

int nft_sandbox_del_many(struct nft_conn *c, const char (*ids)[IPAM_ID_LEN + 1], size_t n, struct bg_err **err)
{
        for (size_t i = 0; i < n; i++)
                if (!ipam_id_valid(ids[i]))
                        return bg_error(err, EINVAL, "invalid sandbox id '%.16s'", ids[i]);
        if (n == 0)
                return 0;
        _cleanup_free_ char (*sorted)[IPAM_ID_LEN + 1] = xreallocarray(NULL, n, sizeof *sorted);
        memcpy(sorted, ids, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_id);

        LOCKED(c);
        struct elems es = { 0 };
        bool exists;
        if (read_elems(c, &es, &exists, err) < 0) {
                free(es.v);
                return n == 1 ? bg_error_wrap(err, "delete rules for sandbox %s", ids[0])
                              : bg_error_wrap(err, "delete rules for %zu sandboxes", n);
        }
        struct sbuf b = { 0 };
        put_deletes(&b, &es, (const char (*)[IPAM_ID_LEN + 1])sorted, n);
        free(es.v);
        if (!b.s)
                return 0;
        _cleanup_free_ char *text = b.s;
        char what[64];
        if (n == 1)
                snprintf(what, sizeof what, "delete rules for sandbox %s", ids[0]);
        else
                snprintf(what, sizeof what, "delete rules for %zu sandboxes", n);
        return run(c, text, what, err);
}

int nft_sandbox_present(struct nft_conn *c, const char *id, bool *present, struct bg_err **err)
{
        if (!ipam_id_valid(id))
                return bg_error(err, EINVAL, "invalid sandbox id '%s'", id ? id : "(null)");
        LOCKED(c);
        struct elems es = { 0 };
        bool exists;
        int r = read_elems(c, &es, &exists, err);
        *present = false;
        for (size_t i = 0; r == 0 && i < es.n; i++)
                if (!strcmp(es.v[i].id, id))
                        *present = true;
        free(es.v);
        return r;
}

int nft_table_present(struct nft_conn *c, bool *present, struct bg_err **err)
{
        LOCKED(c);
        struct elems es = { 0 };
        bool exists = false;
        int r = read_elems(c, &es, &exists, err);
        free(es.v);
        *present = r == 0 && exists;
        return r;
}

int nft_list_ids(struct nft_conn *c, char (**ids)[IPAM_ID_LEN + 1], size_t *n, struct bg_err **err)
{
        struct elems es = { 0 };
        bool exists;
        int r;
        {
                LOCKED(c);
                r = read_elems(c, &es, &exists, err);
        }
        if (r < 0) {
                free(es.v);
                return bg_error_wrap(err, "list sandbox ids in table inet %s", NFT_TABLE);
        }
        char (*v)[IPAM_ID_LEN + 1] = xreallocarray(NULL, es.n ? es.n : 1, sizeof *v);
        for (size_t i = 0; i < es.n; i++)
                memcpy(v[i], es.v[i].id, IPAM_ID_LEN + 1);
        free(es.v);
        qsort(v, es.n, sizeof *v, cmp_id);
        size_t k = 0;
        for (size_t i = 0; i < es.n; i++)
                if (k == 0 || memcmp(v[k - 1], v[i], IPAM_ID_LEN))
                        memcpy(v[k++], v[i], IPAM_ID_LEN + 1);
        *ids = v;
        *n = k;
        return 0;
}
