/* dns: the `.vm` responder.  Two halves:
 *
 * - dns_respond(), a pure function from one query message to one answer.
 *   Every read is checked against the message length; a name is rebuilt
 *   into a 255-byte buffer as it is read, and a compression pointer must
 *   point strictly before the previous one (so it cannot loop) with a hop
 *   limit on top.  The question is echoed uncompressed and the answer names
 *   point back at it.  Nothing is cached: each answer asks the callbacks.
 *
 * - a thread that polls one UDP socket, one TCP listener, at most
 *   DNS_TCP_CONNS connections and an eventfd for stop.  Everything is
 *   non-blocking and each wake-up does bounded work (a burst of UDP
 *   datagrams, one read per ready connection), so no client, however
 *   hostile, can hold the thread.  A TCP connection must finish its next
 *   query within tcp_timeout_ms or it is closed; when all slots are full the
 *   connection that has waited longest makes room for the new one.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "err.h"
#include "log.h"
#include "spec.h"
#include "util.h"

enum { T_A = 1, T_PTR = 12, T_OPT = 41, T_IXFR = 251, T_MAILA = 254, T_ANY = 255 };
enum { C_IN = 1, C_ANY = 255 };
enum {
        RC_NOERROR = 0, RC_FORMERR = 1, RC_SERVFAIL = 2, RC_NXDOMAIN = 3,
        RC_NOTIMP = 4, RC_REFUSED = 5, RC_BADVERS = 16,
};

#define NAME_WIRE_MAX 255       /* RFC 1035 3.1, root label included */
#define NAME_HOPS_MAX 16        /* compression pointers followed per name */
#define EDNS_SIZE_MAX 1232      /* the UDP size we accept and advertise */
#define TCP_QUERY_MAX 4096      /* a longer TCP message closes the connection */
#define RESP_MAX 1024           /* > header + 255-byte question + one record + OPT */
#define UDP_BURST 64            /* datagrams handled per wake-up */

/* A name as read from the wire: uncompressed, ending with the root label. */
struct dname {
        uint8_t wire[NAME_WIRE_MAX];
        size_t len;
        size_t nlabels;                         /* root not counted */
        uint8_t off[NAME_WIRE_MAX / 2 + 1];     /* each label's length byte */
};

struct query {
        struct dname name;
        uint16_t qtype, qclass;
        bool edns;
        uint16_t edns_size;
        uint8_t edns_version;
};

/* What the zones say about a question. */
struct result {
        int rcode;
        bool aa;
        bool has_a, has_ptr;
        uint32_t a;
        char ptr[64];
};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
        put16(p, (uint16_t)(v >> 16));
        put16(p + 2, (uint16_t)v);
}

/* Read the name at m[*pos]; *pos moves past it (past its first pointer when
 * compressed).  -1 on anything malformed: out of bounds, a label type other
 * than 0 (a length byte of 64..191), a name over 255 bytes, a pointer that
 * does not point strictly before the last one, too many pointers. */
static int parse_name(const uint8_t *m, size_t len, size_t *pos, struct dname *n)
{
        size_t p = *pos, limit = *pos, end = 0;
        int hops = 0;
        n->len = 0;
        n->nlabels = 0;
        for (;;) {
                if (p >= len)
                        return -1;
                uint8_t c = m[p];
                if ((c & 0xc0) == 0xc0) {
                        if (p + 1 >= len || ++hops > NAME_HOPS_MAX)
                                return -1;
                        size_t target = (size_t)(c & 0x3f) << 8 | m[p + 1];
                        if (!end)
                                end = p + 2;
                        if (target >= limit)
                                return -1;
                        p = limit = target;
                        continue;
                }
                if (c & 0xc0)
                        return -1;
                size_t need = c ? 1 + (size_t)c + 1 : 1;   /* a label leaves room for the root */
                if (n->len + need > NAME_WIRE_MAX)
                        return -1;
                if (c == 0) {
                        n->wire[n->len++] = 0;
                        break;
                }
                if (p + 1 + c > len)
                        return -1;
                n->off[n->nlabels++] = (uint8_t)n->len;
                memcpy(n->wire + n->len, m + p, 1 + (size_t)c);
                n->len += 1 + (size_t)c;
                p += 1 + (size_t)c;
        }
        *pos = end ? end : p + 1;
        return 0;
}

/* Label i (0 = leftmost) equals s, ASCII case-insensitively. */
static bool label_is(const struct dname *n, size_t i, const char *s)
{
        const uint8_t *l = n->wire + n->off[i];
        return l[0] == strlen(s) && strncasecmp((const char *)l + 1, s, l[0]) == 0;
}

/* Label i as a canonical decimal octet ("0".."255", no leading zero). */
static int label_octet(const struct dname *n, size_t i)
{
        const uint8_t *l = n->wire + n->off[i];
        if (l[0] < 1 || l[0] > 3 || (l[0] > 1 && l[1] == '0'))
                return -1;
        int v = 0;
        for (size_t k = 1; k <= l[0]; k++) {
                if (l[k] < '0' || l[k] > '9')
                        return -1;
                v = v * 10 + (l[k] - '0');
        }
        return v <= 255 ? v : -1;
}

static uint32_t prefix_mask(unsigned prefix)
{
        return prefix ? ~(uint32_t)0 << (32 - prefix) : 0;
}

static bool in_subnet(const struct dns_config *cfg, uint32_t a)
{
        return (a & prefix_mask(cfg->prefix)) == cfg->subnet;
}

static bool wants(uint16_t qtype, uint16_t type)
{
        return qtype == type || qtype == T_ANY;
}

/* A callback's code as an rcode: -ENOENT is NXDOMAIN, any other failure
 * SERVFAIL (and not authoritative). */
static void callback_failed(struct result *res, int r)
{
        res->rcode = r == -ENOENT ? RC_NXDOMAIN : RC_SERVFAIL;
        res->aa = r == -ENOENT;
}

/* NAME.vm. and vm. itself. */
static void answer_forward(const struct dns_config *cfg, const struct query *q, struct result *res)
{
        const struct dname *n = &q->name;
        res->aa = true;
        if (n->nlabels == 1)
                return;                         /* the apex: no data */
        if (n->nlabels > 2) {
                res->rcode = RC_NXDOMAIN;       /* nothing below a sandbox */
                return;
        }
        const uint8_t *l = n->wire + n->off[0];
        char host[64];
        if (l[0] >= sizeof host) {
                res->rcode = RC_NXDOMAIN;
                return;
        }
        for (size_t k = 0; k < l[0]; k++) {
                uint8_t c = l[1 + k];
                host[k] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
                if (c == 0)
                        host[k] = '.';          /* never valid, never a C string cut */
        }
        host[l[0]] = '\0';
        if (!spec_name_valid(host)) {
                res->rcode = RC_NXDOMAIN;
                return;
        }
        uint32_t a = 0;
        int r = cfg->lookup(cfg->arg, host, &a);
        if (r < 0) {
                callback_failed(res, r);
                return;
        }
        if (!in_subnet(cfg, a)) {
                log_warn("dns: address outside the subnet name=%s", host);
                res->rcode = RC_SERVFAIL;
                res->aa = false;
                return;
        }
        if (wants(q->qtype, T_A)) {
                res->has_a = true;
                res->a = a;
        }
}

/* Names under in-addr.arpa.: ours when their leading octets fall inside the
 * subnet, REFUSED otherwise.  Interior nodes (0.16.172.in-addr.arpa. for a
 * /24) exist with no data; anything deeper than an address does not. */
static void answer_reverse(const struct dns_config *cfg, const struct query *q, struct result *res)
{
        const struct dname *n = &q->name;
        size_t labels = n->nlabels - 2, count = 0;
        uint32_t a = 0;
        while (count < 4 && count < labels) {
                int o = label_octet(n, labels - 1 - count);
                if (o < 0)
                        break;
                a |= (uint32_t)o << (24 - 8 * count);
                count++;
        }
        if (count * 8 < cfg->prefix || !in_subnet(cfg, a)) {
                res->rcode = RC_REFUSED;
                return;
        }
        res->aa = true;
        if (labels > count) {
                res->rcode = RC_NXDOMAIN;
                return;
        }
        if (count < 4)
                return;
        if (!cfg->reverse) {
                res->rcode = RC_NXDOMAIN;
                return;
        }
        char name[64] = "";
        int r = cfg->reverse(cfg->arg, a, name, sizeof name);
        if (r < 0) {
                callback_failed(res, r);
                return;
        }
        if (!spec_name_valid(name)) {
                log_warn("dns: reverse callback gave an invalid name");
                res->rcode = RC_SERVFAIL;
                res->aa = false;
                return;
        }
        if (wants(q->qtype, T_PTR)) {
                res->has_ptr = true;
                snprintf(res->ptr, sizeof res->ptr, "%s", name);
        }
}

static void answer(const struct dns_config *cfg, const struct query *q, struct result *res)
{
        const struct dname *n = &q->name;
        memset(res, 0, sizeof *res);
        if (q->qclass != C_IN && q->qclass != C_ANY) {
                res->rcode = RC_REFUSED;
        } else if (n->nlabels >= 1 && label_is(n, n->nlabels - 1, "vm")) {
                answer_forward(cfg, q, res);
        } else if (n->nlabels >= 2 && label_is(n, n->nlabels - 1, "arpa") &&
                   label_is(n, n->nlabels - 2, "in-addr")) {
                answer_reverse(cfg, q, res);
        } else {
                res->rcode = RC_REFUSED;
        }
        /* Zone transfers and mail meta-queries are not served, even in zone. */
        if (res->rcode == RC_NOERROR && q->qtype >= T_IXFR && q->qtype <= T_MAILA) {
                memset(res, 0, sizeof *res);
                res->rcode = RC_REFUSED;
        }
}

/* The additional section: tolerated, and an OPT record (at most one, owned
 * by the root) is read for its UDP size and version. */
static int parse_additional(const uint8_t *m, size_t len, size_t pos, unsigned count, struct query *q)
{
        struct dname skip;
        for (unsigned i = 0; i < count; i++) {
                if (parse_name(m, len, &pos, &skip) < 0 || len - pos < 10)
                        return -1;
                uint16_t type = get16(m + pos), rdlen = get16(m + pos + 8);
                if (type == T_OPT) {
                        if (q->edns || skip.len != 1)
                                return -1;
                        q->edns = true;
                        q->edns_size = get16(m + pos + 2);
                        q->edns_version = m[pos + 5];
                }
                pos += 10;
                if (len - pos < rdlen)
                        return -1;
                pos += rdlen;
        }
        return 0;
}

static size_t put_opt(uint8_t *r, size_t n, int rcode)
{
        r[n] = 0;
        put16(r + n + 1, T_OPT);
        put16(r + n + 3, EDNS_SIZE_MAX);
        put32(r + n + 5, (uint32_t)(rcode >> 4) << 24);   /* extended rcode, version 0 */
        put16(r + n + 9, 0);
        put16(r + 10, 1);
        return n + 11;
}

/* The header alone, for answers that carry no question. */
static size_t header_only(uint8_t *out, int rcode)
{
        out[3] = (uint8_t)(out[3] & 0xf0) | (uint8_t)(rcode & 0x0f);
        memset(out + 4, 0, 8);
        return 12;
}

size_t dns_respond(const struct dns_config *cfg, const uint8_t *m, size_t len,
                   uint8_t *out, size_t cap, bool udp)
{
        if (len < 12 || cap < 12)
                return 0;
        if (m[2] & 0x80)
                return 0;                       /* a response: answering could loop */
        uint8_t r[RESP_MAX];
        memset(r, 0, 12);
        memcpy(r, m, 2);                        /* id */
        r[2] = 0x80 | (m[2] & 0x79);            /* QR, the opcode, RD; AA later */
        if ((m[2] >> 3 & 0x0f) != 0) {
                memcpy(out, r, 12);
                return header_only(out, RC_NOTIMP);
        }
        struct query q = { 0 };
        size_t pos = 12;
        if (get16(m + 4) != 1 || get16(m + 6) != 0 || get16(m + 8) != 0 ||
            parse_name(m, len, &pos, &q.name) < 0 || len - pos < 4) {
                memcpy(out, r, 12);
                return header_only(out, RC_FORMERR);
        }
        q.qtype = get16(m + pos);
        q.qclass = get16(m + pos + 2);
        pos += 4;
        if (parse_additional(m, len, pos, get16(m + 10), &q) < 0 || q.qtype == T_OPT) {
                memcpy(out, r, 12);
                return header_only(out, RC_FORMERR);
        }

        size_t n = 12;
        put16(r + 4, 1);
        memcpy(r + n, q.name.wire, q.name.len);
        n += q.name.len;
        put16(r + n, q.qtype);
        put16(r + n + 2, q.qclass);
        n += 4;
        size_t question_end = n;

        struct result res;
        if (q.edns && q.edns_version != 0) {
                memset(&res, 0, sizeof res);
                res.rcode = RC_BADVERS;
        } else {
                answer(cfg, &q, &res);
        }
        r[2] |= res.aa ? 0x04 : 0;
        r[3] = (uint8_t)(res.rcode & 0x0f);
        if (res.has_a || res.has_ptr) {
                put16(r + n, 0xc00c);           /* the question's name */
                put16(r + n + 2, res.has_a ? T_A : T_PTR);
                put16(r + n + 4, C_IN);
                put32(r + n + 6, DNS_TTL);
                n += 10;
                if (res.has_a) {
                        put16(r + n, 4);
                        put32(r + n + 2, res.a);
                        n += 6;
                } else {
                        size_t l = strlen(res.ptr);
                        put16(r + n, (uint16_t)(l + 5));
                        r[n + 2] = (uint8_t)l;
                        memcpy(r + n + 3, res.ptr, l);
                        memcpy(r + n + 3 + l, "\2vm", 4);   /* and the root label */
                        n += 2 + l + 5;
                }
                put16(r + 6, 1);
        }
        if (q.edns)
                n = put_opt(r, n, res.rcode);

        size_t limit = cap;
        if (udp) {
                size_t client = q.edns ? q.edns_size : DNS_UDP_MAX;
                client = client < DNS_UDP_MAX ? DNS_UDP_MAX : client > EDNS_SIZE_MAX ? EDNS_SIZE_MAX : client;
                limit = client < limit ? client : limit;
        }
        if (n > limit) {
                r[2] |= 0x02;                   /* TC: ask again over TCP */
                put16(r + 6, 0);
                put16(r + 10, 0);
                n = question_end;
                if (q.edns && n + 11 <= limit)
                        n = put_opt(r, n, res.rcode);
                if (n > limit) {
                        memcpy(out, r, 12);
                        return header_only(out, res.rcode);
                }
        }
        memcpy(out, r, n);
        return n;
}

/* ---- the server thread ---- */

struct conn {
        int fd;                                 /* -1: free slot */
        int64_t deadline;
        size_t in_len, out_len, out_off;
        uint8_t in[2 + TCP_QUERY_MAX];
        uint8_t out[2 + RESP_MAX];
};

struct dns_server {
        struct dns_config cfg;
        int udp_fd, tcp_fd, stop_fd;
        uint16_t port;
        pthread_t thread;
        struct conn conns[DNS_TCP_CONNS];
};

static void conn_close(struct conn *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->in_len = c->out_len = c->out_off = 0;
}

/* Write what is pending, then answer buffered queries one by one until
 * the socket would block or no complete query is left.  -1: close it. */
static int conn_pump(struct dns_server *s, struct conn *c)
{
        for (;;) {
                while (c->out_off < c->out_len) {
                        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                                         MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                                return 0;
                        if (w <= 0)
                                return -1;
                        c->out_off += (size_t)w;
                }
                c->out_len = c->out_off = 0;
                if (c->in_len < 2)
                        return 0;
                size_t mlen = get16(c->in);
                if (mlen > TCP_QUERY_MAX)
                        return -1;
                if (c->in_len < 2 + mlen)
                        return 0;
                size_t n = dns_respond(&s->cfg, c->in + 2, mlen, c->out + 2, RESP_MAX, false);
                memmove(c->in, c->in + 2 + mlen, c->in_len - 2 - mlen);
                c->in_len -= 2 + mlen;
                if (n == 0)
                        return -1;              /* nothing to say to a sender of responses */
                put16(c->out, (uint16_t)n);
                c->out_len = 2 + n;
                c->deadline = now_mono_ms() + s->cfg.tcp_timeout_ms;
        }
}

static void conn_read(struct dns_server *s, struct conn *c)
{
        ssize_t got = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;
        if (got <= 0) {
                conn_close(c);
                return;
        }
        c->in_len += (size_t)got;
        if (conn_pump(s, c) < 0)
                conn_close(c);
}

static void tcp_accept(struct dns_server *s)
{
        int fd = accept4(s->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
                return;
        struct conn *slot = NULL;
        for (size_t i = 0; i < DNS_TCP_CONNS; i++) {
                struct conn *c = &s->conns[i];
                if (c->fd < 0) {
                        slot = c;
                        break;
                }
                if (!slot || c->deadline < slot->deadline)
                        slot = c;
        }
        if (slot->fd >= 0) {
                log_debug("dns: tcp connections full, dropping the oldest");
                conn_close(slot);
        }
        slot->fd = fd;
        slot->deadline = now_mono_ms() + s->cfg.tcp_timeout_ms;
}

static void udp_burst(struct dns_server *s)
{
        for (int i = 0; i < UDP_BURST; i++) {
                uint8_t in[EDNS_SIZE_MAX + 1], out[EDNS_SIZE_MAX];
                struct sockaddr_storage from;
                socklen_t flen = sizeof from;
                ssize_t got = recvfrom(s->udp_fd, in, sizeof in, MSG_DONTWAIT | MSG_TRUNC,
                                       (struct sockaddr *)&from, &flen);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return;                 /* EAGAIN, or an ICMP error: next wake-up */
                if ((size_t)got > sizeof in - 1)
                        continue;               /* larger than any query we answer */
                size_t n = dns_respond(&s->cfg, in, (size_t)got, out, sizeof out, true);
                if (n > 0)
                        (void)sendto(s->udp_fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL,
                                     (struct sockaddr *)&from, flen);
        }
}

static void *serve(void *arg)
{
        struct dns_server *s = arg;
        struct pollfd pf[3 + DNS_TCP_CONNS];
        struct conn *who[3 + DNS_TCP_CONNS];
        for (;;) {
                int64_t now = now_mono_ms(), next = INT64_MAX;
                size_t n = 0;
                pf[n++] = (struct pollfd){ .fd = s->stop_fd, .events = POLLIN };
                pf[n++] = (struct pollfd){ .fd = s->udp_fd, .events = POLLIN };
                pf[n++] = (struct pollfd){ .fd = s->tcp_fd, .events = POLLIN };
                for (size_t i = 0; i < DNS_TCP_CONNS; i++) {
                        struct conn *c = &s->conns[i];
                        if (c->fd < 0)
                                continue;
                        if (c->deadline <= now) {
                                conn_close(c);
                                continue;
                        }
                        next = c->deadline < next ? c->deadline : next;
                        who[n] = c;
                        pf[n++] = (struct pollfd){ .fd = c->fd,
                                                   .events = c->out_len ? POLLOUT : POLLIN };
                }
                int wait = next == INT64_MAX ? -1 : (int)(next - now);
                int pr = poll(pf, n, wait);
                if (pr < 0 && errno != EINTR) {
                        log_error("dns: poll: %s", strerror(errno));
                        return NULL;
                }
                if (pr <= 0)
                        continue;
                if (pf[0].revents)
                        return NULL;
                if (pf[1].revents)
                        udp_burst(s);
                for (size_t i = 3; i < n; i++) {
                        struct conn *c = who[i];
                        if (!pf[i].revents || c->fd != pf[i].fd)
                                continue;
                        if (pf[i].revents & POLLOUT) {
                                if (conn_pump(s, c) < 0)
                                        conn_close(c);
                        } else if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                                conn_read(s, c);
                        }
                }
                if (pf[2].revents)
                        tcp_accept(s);
        }
}

static int bind_socket(int type, const struct sockaddr *sa, socklen_t salen, const char *addr,
                       uint16_t port, struct bg_err **err)
{
        int fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return bg_error(err, errno, "socket: %s", strerror(errno));
        int one = 1;
        if (type == SOCK_STREAM)
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (sa->sa_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, sa, salen) < 0 || (type == SOCK_STREAM && listen(fd, 64) < 0)) {
                int e = errno;
                close(fd);
                return bg_error(err, e, "bind %s port %u (%s): %s", addr, port,
                                type == SOCK_STREAM ? "tcp" : "udp", strerror(e));
        }
        return fd;
}

int dns_start(const char *addr, uint16_t port, const struct dns_config *cfg,
              struct dns_server **out, struct bg_err **err)
{
        *out = NULL;
        if (!cfg || !cfg->lookup)
                return bg_error(err, EINVAL, "dns: no lookup callback");
        if (cfg->prefix < 8 || cfg->prefix > 32 || (cfg->subnet & ~prefix_mask(cfg->prefix)))
                return bg_error(err, EINVAL, "dns: bad subnet prefix %u", cfg->prefix);
        struct sockaddr_storage ss = { 0 };
        socklen_t salen;
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (addr && inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                salen = sizeof *sin;
        } else if (addr && inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons(port);
                salen = sizeof *sin6;
        } else {
                return bg_error(err, EINVAL, "dns: bad listen address '%s'", addr ? addr : "");
        }

        struct dns_server *s = xcalloc(1, sizeof *s);
        s->cfg = *cfg;
        if (s->cfg.tcp_timeout_ms <= 0)
                s->cfg.tcp_timeout_ms = DNS_TCP_TIMEOUT_MS;
        s->udp_fd = s->tcp_fd = s->stop_fd = -1;
        for (size_t i = 0; i < DNS_TCP_CONNS; i++)
                s->conns[i].fd = -1;
        int r;
        /* With port 0, TCP picks the port and UDP takes the same one. */
        if ((r = bind_socket(SOCK_STREAM, (struct sockaddr *)&ss, salen, addr, port, err)) < 0)
                goto fail;
        s->tcp_fd = r;
        struct sockaddr_storage got;
        socklen_t glen = sizeof got;
        if (getsockname(s->tcp_fd, (struct sockaddr *)&got, &glen) < 0) {
                r = bg_error(err, errno, "getsockname: %s", strerror(errno));
                goto fail;
        }
        s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                                : ((struct sockaddr_in6 *)&got)->sin6_port);
        if (ss.ss_family == AF_INET)
                sin->sin_port = htons(s->port);
        else
                sin6->sin6_port = htons(s->port);
        if ((r = bind_socket(SOCK_DGRAM, (struct sockaddr *)&ss, salen, addr, s->port, err)) < 0)
                goto fail;
        s->udp_fd = r;
        s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->stop_fd < 0) {
                r = bg_error(err, errno, "eventfd: %s", strerror(errno));
                goto fail;
        }
        if ((r = pthread_create(&s->thread, NULL, serve, s)) != 0) {
                r = bg_error(err, r, "dns thread: %s", strerror(r));
                goto fail;
        }
        log_info("dns: serving addr=%s port=%u", addr, s->port);
        *out = s;
        return 0;
fail:
        closep(&s->tcp_fd);
        closep(&s->udp_fd);
        closep(&s->stop_fd);
        free(s);
        return r;
}

uint16_t dns_port(const struct dns_server *s)
{
        return s->port;
}

void dns_stop(struct dns_server *s)
{
        if (!s)
                return;
        uint64_t one = 1;
        while (write(s->stop_fd, &one, sizeof one) < 0 && errno == EINTR)
                ;
        pthread_join(s->thread, NULL);
        for (size_t i = 0; i < DNS_TCP_CONNS; i++)
                conn_close(&s->conns[i]);
        close(s->tcp_fd);
        close(s->udp_fd);
        close(s->stop_fd);
        free(s);
}
