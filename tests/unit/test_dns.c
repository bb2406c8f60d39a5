/* dns: the responder over real UDP and TCP on 127.0.0.1 port 53 inside a
 * private network namespace this test makes for itself (the machine's own
 * namespace is never touched; without CAP_SYS_ADMIN the socket tests are
 * skipped).  One table of crafted queries runs over both transports; the
 * fuzz loops, truncation and EDNS go through dns_respond() as well.
 * resolved: argv building and the "not active" paths only, never a real
 * resolvectl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "err.h"
#include "resolved.h"
#include "util.h"

#define SUBNET 0xac100000u      /* 172.16.0.0/24 */
#define IP(d) (SUBNET | (d))
#define LONG63 "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefgh"
#define DROP (-1)

enum { UDP, TCP };

static bool netns_ok;
static struct dns_server *srv;

/* ---- the fake sandbox table ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct { char name[64]; uint32_t ip; } tbl[8];

/* Set name's address; 0 removes it.  Callers hold no lock. */
static void tbl_set(const char *name, uint32_t ip)
{
        pthread_mutex_lock(&mu);
        size_t i = 0;
        while (i < ARRAY_SIZE(tbl) - 1 && strcmp(tbl[i].name, name) != 0)
                i++;
        if (strcmp(tbl[i].name, name) != 0)     /* new: the first free slot */
                for (i = 0; tbl[i].name[0]; i++)
                        ;
        snprintf(tbl[i].name, sizeof tbl[i].name, "%s", ip ? name : "");
        tbl[i].ip = ip;
        pthread_mutex_unlock(&mu);
}

/* The callbacks: a name or an address (whichever is set) in the table. */
static int find(const char *name, uint32_t *ip, char *out, size_t size)
{
        int r = -ENOENT;
        pthread_mutex_lock(&mu);
        for (size_t i = 0; i < ARRAY_SIZE(tbl) && r < 0; i++) {
                if (!tbl[i].name[0] || (name ? strcmp(tbl[i].name, name) != 0 : tbl[i].ip != *ip))
                        continue;
                *ip = tbl[i].ip;
                if (out)
                        snprintf(out, size, "%s", tbl[i].name);
                r = 0;
        }
        pthread_mutex_unlock(&mu);
        return r;
}

static int fake_lookup(void *arg, const char *name, uint32_t *ip)
{
        (void)arg;
        return strcmp(name, "broken") == 0 ? -EIO : find(name, ip, NULL, 0);
}

static int fake_reverse(void *arg, uint32_t ip, char *name, size_t size)
{
        (void)arg;
        return find(NULL, &ip, name, size);
}

static const struct dns_config cfg = {
        .lookup = fake_lookup, .reverse = fake_reverse,
        .subnet = SUBNET, .prefix = 24, .tcp_timeout_ms = 300,
};

/* ---- packets ---- */

static size_t put_name(uint8_t *p, const char *name)
{
        size_t n = 0;
        while (*name) {
                const char *dot = strchr(name, '.');
                size_t l = dot ? (size_t)(dot - name) : strlen(name);
                p[n++] = (uint8_t)l;
                memcpy(p + n, name, l);
                n += l;
                name += l + (dot ? 1 : 0);
        }
        p[n++] = 0;
        return n;
}

static size_t query(uint8_t *p, uint16_t id, const char *name, uint16_t type, uint16_t cls)
{
        memset(p, 0, 12);
        p[0] = (uint8_t)(id >> 8);
        p[1] = (uint8_t)id;
        p[2] = 0x01;                    /* RD, as stub resolvers send */
        p[5] = 1;
        size_t n = 12 + put_name(p + 12, name);
        p[n++] = (uint8_t)(type >> 8);
        p[n++] = (uint8_t)type;
        p[n++] = (uint8_t)(cls >> 8);
        p[n++] = (uint8_t)cls;
        return n;
}

/* Append an OPT record (udp size, version) and count it. */
static size_t add_opt(uint8_t *p, size_t n, uint16_t size, uint8_t version)
{
        const uint8_t opt[11] = { 0, 0, 41, (uint8_t)(size >> 8), (uint8_t)size, 0, version, 0, 0, 0, 0 };
        memcpy(p + n, opt, sizeof opt);
        p[11]++;
        return n + sizeof opt;
}

struct reply {
        uint16_t id, qd, an, ar;
        int rcode, opcode;
        bool aa, tc, ra, opt;
        int ext_rcode;
        uint16_t type;
        uint32_t ttl, a;
        char ptr[256];
};

static size_t skip_name(const uint8_t *r, size_t n, size_t pos)
{
        while (pos < n && r[pos] && (r[pos] & 0xc0) != 0xc0)
                pos += 1 + r[pos];
        return pos < n && (r[pos] & 0xc0) == 0xc0 ? pos + 2 : pos + 1;
}

static void parse_reply(const uint8_t *r, size_t n, struct reply *o)
{
        memset(o, 0, sizeof *o);
        assert_true(n >= 12);
        o->id = (uint16_t)(r[0] << 8 | r[1]);
        assert_true(r[2] & 0x80);
        o->opcode = r[2] >> 3 & 0x0f;
        o->aa = r[2] & 0x04;
        o->tc = r[2] & 0x02;
        o->ra = r[3] & 0x80;
        o->rcode = r[3] & 0x0f;
        o->qd = (uint16_t)(r[4] << 8 | r[5]);
        o->an = (uint16_t)(r[6] << 8 | r[7]);
        o->ar = (uint16_t)(r[10] << 8 | r[11]);
        size_t pos = 12;
        if (o->qd)
                pos = skip_name(r, n, pos) + 4;
        if (o->an) {
                assert_true(pos + 12 <= n);
                assert_int_equal(r[pos], 0xc0);   /* points at the question */
                assert_int_equal(r[pos + 1], 12);
                o->type = (uint16_t)(r[pos + 2] << 8 | r[pos + 3]);
                o->ttl = (uint32_t)r[pos + 6] << 24 | (uint32_t)r[pos + 7] << 16 | r[pos + 8] << 8 | r[pos + 9];
                size_t rdlen = (size_t)(r[pos + 10] << 8 | r[pos + 11]);
                pos += 12;
                assert_true(pos + rdlen <= n);
                if (o->type == 1)
                        o->a = (uint32_t)r[pos] << 24 | (uint32_t)r[pos + 1] << 16 | r[pos + 2] << 8 | r[pos + 3];
                if (o->type == 12) {
                        size_t k = pos, w = 0;
                        while (r[k] && w + r[k] + 2 < sizeof o->ptr) {
                                memcpy(o->ptr + w, r + k + 1, r[k]);
                                w += r[k];
                                o->ptr[w++] = '.';
                                k += 1 + r[k];
                        }
                        o->ptr[w] = '\0';
                }
                pos += rdlen;
        }
        if (o->ar) {
                assert_true(pos + 11 <= n);
                o->opt = r[pos] == 0 && r[pos + 1] == 0 && r[pos + 2] == 41;
                o->ext_rcode = r[pos + 5];
                pos += 11;
        }
        assert_int_equal(pos, n);
}

/* ---- transports ---- */

static struct sockaddr_in server_addr(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(dns_port(srv)) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sa;
}

static bool wait_in(int fd, int ms)
{
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        return poll(&pf, 1, ms) == 1;
}

static int tcp_connect(void)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = server_addr();
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        return fd;
}

/* Read exactly n bytes; false on EOF or 2 s of silence. */
static bool read_full(int fd, uint8_t *p, size_t n)
{
        for (size_t got = 0; got < n;) {
                if (!wait_in(fd, 2000))
                        return false;
                ssize_t r = read(fd, p + got, n - got);
                if (r <= 0)
                        return false;
                got += (size_t)r;
        }
        return true;
}

/* Send q, return the answer's length, or DROP when none came (UDP: 300 ms
 * of silence; TCP: the server closed the connection). */
static ssize_t xfer(int transport, const uint8_t *q, size_t len, uint8_t *resp, size_t cap)
{
        struct sockaddr_in sa = server_addr();
        if (transport == UDP) {
                _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                assert_int_equal(sendto(fd, q, len, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)len);
                if (!wait_in(fd, 300))
                        return DROP;
                return recv(fd, resp, cap, 0);
        }
        _cleanup_close_ int fd = tcp_connect();
        uint8_t buf[2 + 4096];
        buf[0] = (uint8_t)(len >> 8);
        buf[1] = (uint8_t)len;
        memcpy(buf + 2, q, len);
        assert_int_equal(write(fd, buf, len + 2), (ssize_t)len + 2);
        uint8_t hdr[2];
        if (!read_full(fd, hdr, 2))
                return DROP;
        size_t n = (size_t)(hdr[0] << 8 | hdr[1]);
        assert_true(n <= cap);
        assert_true(read_full(fd, resp, n));
        return (ssize_t)n;
}

/* ---- the table ---- */

/* rcode (DROP: no answer at all), AA, answer count, its A or PTR data */
struct expect { int rcode; bool aa; uint16_t an; uint32_t a; const char *ptr; };
struct wcase { const char *what, *name; uint16_t type, cls; struct expect e; };

static const struct wcase wcases[] = {
        { "A found", "web.vm", 1, 1, { 0, true, 1, IP(10), NULL } },
        { "A case-insensitive", "WeB.Vm", 1, 1, { 0, true, 1, IP(10), NULL } },
        { "A, 63-byte label", LONG63 ".vm", 1, 1, { 0, true, 1, IP(12), NULL } },
        { "unknown name", "nope.vm", 1, 1, { 3, true, 0, 0, NULL } },
        { "AAAA of a known name", "web.vm", 28, 1, { 0, true, 0, 0, NULL } },
        { "MX of a known name", "web.vm", 15, 1, { 0, true, 0, 0, NULL } },
        { "ANY of a known name", "web.vm", 255, 1, { 0, true, 1, IP(10), NULL } },
        { "class ANY", "web.vm", 1, 255, { 0, true, 1, IP(10), NULL } },
        { "AAAA of an unknown name", "nope.vm", 28, 1, { 3, true, 0, 0, NULL } },
        { "zone apex", "vm", 6, 1, { 0, true, 0, 0, NULL } },
        { "below a sandbox", "x.web.vm", 1, 1, { 3, true, 0, 0, NULL } },
        { "not an RFC 1123 label", "-web.vm", 1, 1, { 3, true, 0, 0, NULL } },
        { "underscore label", "we_b.vm", 1, 1, { 3, true, 0, 0, NULL } },
        { "lookup fails", "broken.vm", 1, 1, { 2, false, 0, 0, NULL } },
        { "lookup outside the subnet", "evil.vm", 1, 1, { 2, false, 0, 0, NULL } },
        { "PTR", "10.0.16.172.in-addr.arpa", 12, 1, { 0, true, 1, 0, "web.vm." } },
        { "PTR upper case", "11.0.16.172.IN-ADDR.ARPA", 12, 1, { 0, true, 1, 0, "db.vm." } },
        { "ANY on a reverse name", "10.0.16.172.in-addr.arpa", 255, 1, { 0, true, 1, 0, "web.vm." } },
        { "A on a reverse name", "10.0.16.172.in-addr.arpa", 1, 1, { 0, true, 0, 0, NULL } },
        { "PTR, free address", "99.0.16.172.in-addr.arpa", 12, 1, { 3, true, 0, 0, NULL } },
        { "PTR, leading zero", "010.0.16.172.in-addr.arpa", 12, 1, { 3, true, 0, 0, NULL } },
        { "PTR, below an address", "x.10.0.16.172.in-addr.arpa", 12, 1, { 3, true, 0, 0, NULL } },
        { "reverse zone apex", "0.16.172.in-addr.arpa", 6, 1, { 0, true, 0, 0, NULL } },
        { "PTR outside the subnet", "10.0.17.172.in-addr.arpa", 12, 1, { 5, false, 0, 0, NULL } },
        { "above the reverse zone", "16.172.in-addr.arpa", 12, 1, { 5, false, 0, 0, NULL } },
        { "octet over 255", "300.0.16.172.in-addr.arpa", 12, 1, { 3, true, 0, 0, NULL } },
        { "other zone", "example.com", 1, 1, { 5, false, 0, 0, NULL } },
        { "lookalike zone", "web.vmx", 1, 1, { 5, false, 0, 0, NULL } },
        { "root", "", 2, 1, { 5, false, 0, 0, NULL } },
        { "class CH", "web.vm", 1, 3, { 5, false, 0, 0, NULL } },
        { "zone transfer", "vm", 252, 1, { 5, false, 0, 0, NULL } },
};

/* Malformed or unusual messages, built by code. */
struct rcase { const char *what; size_t (*build)(uint8_t *p); struct expect e; };

static size_t b_opcode_status(uint8_t *p) { size_t n = query(p, 1, "web.vm", 1, 1); p[2] |= 2 << 3; return n; }
static size_t b_opcode_update(uint8_t *p) { size_t n = query(p, 1, "vm", 6, 1); p[2] |= 5 << 3; return n; }
static size_t b_qd0(uint8_t *p) { size_t n = query(p, 1, "web.vm", 1, 1); p[5] = 0; return n; }
static size_t b_qd2(uint8_t *p) { size_t n = query(p, 1, "web.vm", 1, 1); p[5] = 2; return n; }
static size_t b_an1(uint8_t *p) { size_t n = query(p, 1, "web.vm", 1, 1); p[7] = 1; return n; }
static size_t b_short_header(uint8_t *p) { query(p, 1, "web.vm", 1, 1); return 5; }
static size_t b_response(uint8_t *p) { size_t n = query(p, 1, "web.vm", 1, 1); p[2] |= 0x80; return n; }
static size_t b_no_type(uint8_t *p) { return query(p, 1, "web.vm", 1, 1) - 3; }
static size_t b_cut_label(uint8_t *p) { query(p, 1, "web.vm", 1, 1); return 12 + 3; }

/* A name of `labels` labels of 63 bytes but the last, of `last` bytes
 * (64 is not a length but label type 01). */
static size_t b_name_len(uint8_t *p, int labels, size_t last)
{
        query(p, 1, "", 1, 1);
        size_t n = 12;
        for (int i = 0; i < labels; i++) {
                size_t l = i < labels - 1 ? 63 : last;
                p[n] = (uint8_t)l;
                memset(p + n + 1, 'a', l);
                n += 1 + l;
        }
        p[n++] = 0;
        memcpy(p + n, "\0\1\0\1", 4);
        return n + 4;
}
static size_t b_name255(uint8_t *p) { return b_name_len(p, 4, 61); }
static size_t b_name256(uint8_t *p) { return b_name_len(p, 4, 62); }
static size_t b_name320(uint8_t *p) { return b_name_len(p, 5, 63); }
static size_t b_label64(uint8_t *p) { return b_name_len(p, 1, 64); }

/* A header, then these bytes as the question. */
static size_t raw(uint8_t *p, const char *q, size_t n)
{
        query(p, 1, "", 1, 1);
        memcpy(p + 12, q, n);
        return 12 + n;
}
#define RAW(s) raw(p, s, sizeof s - 1)
static size_t b_ptr_loop(uint8_t *p) { return RAW("\xc0\x0c\0\1\0\1"); }
static size_t b_ptr_loop2(uint8_t *p) { return RAW("\1a\xc0\x0c\0\1\0\1"); }    /* back to "a" */
static size_t b_ptr_oob(uint8_t *p) { return RAW("\3web\xff\xff\0\1\0\1"); }
static size_t b_ptr_cut(uint8_t *p) { return RAW("\xc0"); }

static size_t b_edns(uint8_t *p) { return add_opt(p, query(p, 1, "web.vm", 1, 1), 4096, 0); }
static size_t b_edns_v1(uint8_t *p) { return add_opt(p, query(p, 1, "web.vm", 1, 1), 4096, 1); }
static size_t b_edns_twice(uint8_t *p) { return add_opt(p, add_opt(p, query(p, 1, "web.vm", 1, 1), 1232, 0), 1232, 0); }
static size_t b_edns_cut(uint8_t *p) { return add_opt(p, query(p, 1, "web.vm", 1, 1), 512, 0) - 1; }
static size_t b_edns_rdlen(uint8_t *p) { size_t n = b_edns(p); p[n - 1] = 9; return n; }   /* no such rdata */
static size_t b_trailing(uint8_t *p) { size_t n = query(p, 1, "web.vm", 1, 1); memset(p + n, 0xee, 7); return n + 7; }

static const struct rcase rcases[] = {
        { "opcode STATUS", b_opcode_status, { 4, false, 0, 0, NULL } },
        { "opcode UPDATE", b_opcode_update, { 4, false, 0, 0, NULL } },
        { "QDCOUNT 0", b_qd0, { 1, false, 0, 0, NULL } },
        { "QDCOUNT 2", b_qd2, { 1, false, 0, 0, NULL } },
        { "ANCOUNT 1 in a query", b_an1, { 1, false, 0, 0, NULL } },
        { "truncated header", b_short_header, { DROP, false, 0, 0, NULL } },
        { "a response", b_response, { DROP, false, 0, 0, NULL } },
        { "question without type", b_no_type, { 1, false, 0, 0, NULL } },
        { "label past the end", b_cut_label, { 1, false, 0, 0, NULL } },
        { "label of 64", b_label64, { 1, false, 0, 0, NULL } },
        { "name of 255", b_name255, { 5, false, 0, 0, NULL } },
        { "name of 256", b_name256, { 1, false, 0, 0, NULL } },
        { "name of 320", b_name320, { 1, false, 0, 0, NULL } },
        { "pointer to itself", b_ptr_loop, { 1, false, 0, 0, NULL } },
        { "pointer back into its name", b_ptr_loop2, { 1, false, 0, 0, NULL } },
        { "pointer out of bounds", b_ptr_oob, { 1, false, 0, 0, NULL } },
        { "pointer cut short", b_ptr_cut, { 1, false, 0, 0, NULL } },
        { "EDNS", b_edns, { 0, true, 1, IP(10), NULL } },
        { "EDNS version 1", b_edns_v1, { 0, false, 0, 0, NULL } },
        { "two OPT records", b_edns_twice, { 1, false, 0, 0, NULL } },
        { "OPT cut short", b_edns_cut, { 1, false, 0, 0, NULL } },
        { "OPT rdata past the end", b_edns_rdlen, { 1, false, 0, 0, NULL } },
        { "trailing bytes", b_trailing, { 0, true, 1, IP(10), NULL } },
};

static void check(const char *what, const uint8_t *q, ssize_t got, const uint8_t *resp, const struct expect *e)
{
        if (e->rcode == DROP) {
                if (got != DROP)
                        fail_msg("%s: expected no answer, got %zd bytes", what, got);
                return;
        }
        if (got == DROP)
                fail_msg("%s: no answer", what);
        struct reply r;
        parse_reply(resp, (size_t)got, &r);
        if (r.rcode != e->rcode || r.aa != e->aa || r.an != e->an)
                fail_msg("%s: rcode %d aa %d an %u, want %d %d %u", what, r.rcode, r.aa, r.an,
                         e->rcode, e->aa, e->an);
        assert_int_equal(r.id, (q[0] << 8) | q[1]);
        assert_false(r.ra);
        assert_false(r.tc);
        assert_int_equal(r.opcode, q[2] >> 3 & 0x0f);
        if (e->an) {
                assert_int_equal(r.ttl, DNS_TTL);
                assert_int_equal(r.a, e->a);
                if (e->ptr)
                        assert_string_equal(r.ptr, e->ptr);
        }
}

static void run_table(int transport)
{
        if (!netns_ok)
                skip();
        uint8_t q[1024], resp[2048];
        for (size_t i = 0; i < ARRAY_SIZE(wcases); i++) {
                const struct wcase *c = &wcases[i];
                size_t n = query(q, (uint16_t)(100 + i), c->name, c->type, c->cls);
                check(c->what, q, xfer(transport, q, n, resp, sizeof resp), resp, &c->e);
        }
        for (size_t i = 0; i < ARRAY_SIZE(rcases); i++) {
                const struct rcase *c = &rcases[i];
                size_t n = c->build(q);
                ssize_t got = xfer(transport, q, n, resp, sizeof resp);
                check(c->what, q, got, resp, &c->e);
                if (c->build == b_edns || c->build == b_edns_v1) {
                        struct reply r;
                        parse_reply(resp, (size_t)got, &r);
                        assert_true(r.opt);
                        assert_int_equal(r.ext_rcode, c->build == b_edns ? 0 : 1);   /* BADVERS */
                }
        }
}

static void test_table_over_udp(void **state) { (void)state; run_table(UDP); }
static void test_table_over_tcp(void **state) { (void)state; run_table(TCP); }

static uint32_t ask_a(const char *name, int transport, int *rcode)
{
        uint8_t q[512], resp[1024];
        size_t n = query(q, 7, name, 1, 1);
        ssize_t got = xfer(transport, q, n, resp, sizeof resp);
        assert_true(got > 0);
        struct reply r;
        parse_reply(resp, (size_t)got, &r);
        *rcode = r.rcode;
        return r.a;
}

static void test_removed_name_is_nxdomain_on_next_query(void **state)
{
        (void)state;
        if (!netns_ok)
                skip();
        int rc;
        tbl_set("tmp", IP(20));
        assert_int_equal(ask_a("tmp.vm", UDP, &rc), IP(20));
        assert_int_equal(rc, 0);
        tbl_set("tmp", 0);
        ask_a("tmp.vm", UDP, &rc);
        assert_int_equal(rc, 3);
        ask_a("tmp.vm", TCP, &rc);
        assert_int_equal(rc, 3);
        tbl_set("tmp", IP(21));
        assert_int_equal(ask_a("tmp.vm", TCP, &rc), IP(21));
        tbl_set("tmp", 0);
}

static void test_tcp_two_queries_in_one_write_get_two_answers(void **state)
{
        (void)state;
        if (!netns_ok)
                skip();
        uint8_t buf[512], resp[512];
        size_t a = query(buf + 2, 1, "web.vm", 1, 1);
        buf[0] = 0;
        buf[1] = (uint8_t)a;
        size_t b = query(buf + 4 + a, 2, "db.vm", 1, 1);
        buf[2 + a] = 0;
        buf[3 + a] = (uint8_t)b;
        _cleanup_close_ int fd = tcp_connect();
        assert_int_equal(write(fd, buf, a + b + 4), (ssize_t)(a + b + 4));
        uint32_t want[2] = { IP(10), IP(11) };
        for (int i = 0; i < 2; i++) {
                uint8_t hdr[2];
                assert_true(read_full(fd, hdr, 2));
                size_t n = (size_t)(hdr[0] << 8 | hdr[1]);
                assert_true(read_full(fd, resp, n));
                struct reply r;
                parse_reply(resp, n, &r);
                assert_int_equal(r.id, i + 1);
                assert_int_equal(r.a, want[i]);
        }
}

static void test_tcp_idle_connection_is_closed_after_timeout(void **state)
{
        (void)state;
        if (!netns_ok)
                skip();
        _cleanup_close_ int fd = tcp_connect();
        assert_int_equal(write(fd, "\0", 1), 1);         /* half a length prefix, then silence */
        int64_t t0 = now_mono_ms();
        uint8_t b;
        assert_true(wait_in(fd, 3000));
        assert_int_equal(read(fd, &b, 1), 0);
        assert_true(now_mono_ms() - t0 >= 200);
}

static void test_tcp_oversized_message_closes_connection(void **state)
{
        (void)state;
        if (!netns_ok)
                skip();
        _cleanup_close_ int fd = tcp_connect();
        assert_int_equal(write(fd, "\xff\xff", 2), 2);
        uint8_t b;
        assert_true(wait_in(fd, 2000));
        assert_int_equal(read(fd, &b, 1), 0);
}

static void test_tcp_connection_flood_does_not_lock_out_clients(void **state)
{
        (void)state;
        if (!netns_ok)
                skip();
        int fds[DNS_TCP_CONNS * 2];
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                fds[i] = tcp_connect();
        int rc;
        assert_int_equal(ask_a("web.vm", TCP, &rc), IP(10));
        assert_int_equal(ask_a("web.vm", UDP, &rc), IP(10));
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                close(fds[i]);
}

static uint64_t rng_state;
static uint64_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void seed(void)
{
        random_bytes(&rng_state, sizeof rng_state);
        rng_state |= 1;
        print_message("seed %llu\n", (unsigned long long)rng_state);
}

static void test_udp_garbage_flood_then_still_answers(void **state)
{
        (void)state;
        if (!netns_ok)
                skip();
        seed();
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = server_addr();
        uint8_t p[600], resp[2048];
        for (int i = 0; i < 10000; i++) {
                size_t len = rng() % sizeof p;
                for (size_t k = 0; k < len; k++)
                        p[k] = (uint8_t)rng();
                if (len > 2 && i % 2)
                        p[2] &= 0x7f;           /* half of them look like queries */
                (void)sendto(fd, p, len, 0, (struct sockaddr *)&sa, sizeof sa);
                while (recv(fd, resp, sizeof resp, MSG_DONTWAIT) > 0)
                        ;
        }
        /* Datagrams still queued on either side may crowd the answer out
         * of a socket buffer: ask again, as any client over UDP would. */
        size_t n = query(p, 0xbeef, "web.vm", 1, 1);
        for (int attempt = 0; attempt < 20; attempt++) {
                assert_int_equal(sendto(fd, p, n, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)n);
                while (wait_in(fd, 500)) {
                        ssize_t got = recv(fd, resp, sizeof resp, 0);
                        if (got < 12 || resp[0] != 0xbe || resp[1] != 0xef)
                                continue;
                        struct reply r;
                        parse_reply(resp, (size_t)got, &r);
                        assert_int_equal(r.a, IP(10));
                        return;
                }
        }
        fail_msg("no answer after the flood");
}

/* dns_respond directly: random bytes and mutated real queries. */
static void test_respond_fuzz_random_and_mutated(void **state)
{
        (void)state;
        seed();
        uint8_t base[4][600], p[600], out[1300];
        size_t blen[4] = {
                query(base[0], 1, "web.vm", 1, 1),
                query(base[1], 2, "10.0.16.172.in-addr.arpa", 12, 1),
                add_opt(base[2], query(base[2], 3, "db.vm", 255, 1), 1232, 0),
                query(base[3], 4, "nope.example.com", 28, 1),
        };
        for (int i = 0; i < 20000; i++) {
                size_t len;
                if (i < 10000) {
                        len = rng() % sizeof p;
                        for (size_t k = 0; k < len; k++)
                                p[k] = (uint8_t)rng();
                        p[2] = len > 2 ? p[2] & 0x07 : p[2];   /* QUERY, not a response */
                } else {
                        int b = (int)(rng() % 4);
                        len = blen[b];
                        memcpy(p, base[b], len);
                        for (int m = (int)(rng() % 4) + 1; m > 0; m--)
                                p[rng() % len] = (uint8_t)rng();
                        if (rng() % 4 == 0)
                                len = rng() % (len + 1);
                }
                size_t cap = 12 + rng() % (sizeof out - 12);
                bool udp = rng() % 2;
                size_t n = dns_respond(&cfg, p, len, out, cap, udp);
                assert_true(n <= cap);
                assert_true(!udp || n <= 1232);
                if (n) {
                        assert_true(n >= 12);
                        assert_memory_equal(out, p, 2);
                        assert_true(out[2] & 0x80);
                }
        }
}

static void test_answer_over_the_limit_is_truncated(void **state)
{
        (void)state;
        uint8_t q[512], out[512];
        size_t n = query(q, 9, "10.0.16.172.in-addr.arpa", 12, 1);
        size_t full = dns_respond(&cfg, q, n, out, sizeof out, true);
        struct reply r;
        parse_reply(out, full, &r);
        assert_int_equal(r.an, 1);
        assert_false(r.tc);
        size_t cut = dns_respond(&cfg, q, n, out, full - 1, true);
        assert_int_equal(cut, n);               /* header and question */
        parse_reply(out, cut, &r);
        assert_true(r.tc);
        assert_int_equal(r.an, 0);
        assert_int_equal(r.qd, 1);
        assert_int_equal(dns_respond(&cfg, q, n, out, 12, false), 12);   /* header only */
        parse_reply(out, 12, &r);
        assert_true(r.tc);
        assert_int_equal(r.qd, 0);
}

static void test_start_rejects_bad_config(void **state)
{
        (void)state;
        struct dns_server *s = (struct dns_server *)&s;
        struct bg_err *e = NULL;
        struct dns_config c = cfg;
        assert_int_equal(dns_start("not-an-ip", 0, &c, &s, &e), -EINVAL);
        assert_null(s);
        bg_err_free(e);
        e = NULL;
        c.prefix = 33;
        assert_int_equal(dns_start("127.0.0.1", 0, &c, &s, NULL), -EINVAL);
        c.prefix = 16;                  /* 172.16.0.0/16 fine, 172.16.0.1/16 not */
        c.subnet = SUBNET | 1;
        assert_int_equal(dns_start("127.0.0.1", 0, &c, &s, NULL), -EINVAL);
        c = cfg;
        c.lookup = NULL;
        assert_int_equal(dns_start("127.0.0.1", 0, &c, &s, NULL), -EINVAL);
        dns_stop(NULL);
}

/* ---- resolved ---- */

static void test_resolved_argv(void **state)
{
        (void)state;
        const char *argv[RESOLVED_ARGV_MAX];
        assert_int_equal(resolved_argv(RESOLVED_DNS, "banger0", "172.16.0.1", argv), 0);
        const char *dns[] = { "resolvectl", "dns", "banger0", "172.16.0.1", NULL };
        for (size_t i = 0; i < ARRAY_SIZE(dns); i++)
                assert_true(dns[i] ? strcmp(argv[i], dns[i]) == 0 : argv[i] == NULL);
        assert_int_equal(resolved_argv(RESOLVED_DOMAIN, "banger0", NULL, argv), 0);
        assert_string_equal(argv[1], "domain");
        assert_string_equal(argv[3], "~vm");
        assert_null(argv[4]);
        assert_int_equal(resolved_argv(RESOLVED_DEFAULT_ROUTE, "banger0", NULL, argv), 0);
        assert_string_equal(argv[1], "default-route");
        assert_string_equal(argv[3], "false");
        assert_int_equal(resolved_argv(RESOLVED_REVERT, "banger0", NULL, argv), 0);
        assert_string_equal(argv[1], "revert");
        assert_string_equal(argv[2], "banger0");
        assert_null(argv[3]);
        assert_int_equal(resolved_argv(RESOLVED_DNS, "banger0", "fd00::1", argv), 0);

        const char *bad_bridges[] = { "", "-h", "--help", "a b", "a/b", "0123456789abcdef", "..", NULL };
        const char *bad_addrs[] = { "", "172.16.0", "172.16.0.1; rm -rf /", "-x", NULL };
        for (size_t i = 0; i < ARRAY_SIZE(bad_bridges); i++)
                assert_int_equal(resolved_argv(RESOLVED_REVERT, bad_bridges[i], NULL, argv), -EINVAL);
        for (size_t i = 0; i < ARRAY_SIZE(bad_addrs); i++)
                assert_int_equal(resolved_argv(RESOLVED_DNS, "banger0", bad_addrs[i], argv), -EINVAL);
}

static void test_resolved_is_a_no_op_when_not_active(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        assert_false(resolved_active("/nonexistent/banger/resolve"));
        assert_int_equal(resolved_route_at("/nonexistent/banger/resolve", "banger0", "172.16.0.1", &e),
                         RESOLVED_SKIPPED);
        assert_null(e);
        assert_int_equal(resolved_unroute_at("/nonexistent/banger/resolve", "banger0", &e), RESOLVED_SKIPPED);
        assert_null(e);
        /* bad input is refused before anything else */
        assert_int_equal(resolved_route_at("/nonexistent", "-x", "172.16.0.1", &e), -EINVAL);
        assert_non_null(e);
        bg_err_free(e);
        if (netns_ok) {
                /* an existing folder, but another network namespace than PID 1's */
                assert_false(resolved_active("/tmp"));
                assert_int_equal(resolved_route_at("/tmp", "bgnone0", "172.16.0.1", NULL), RESOLVED_SKIPPED);
        }
}

/* ---- set-up ---- */

static void lo_up(void)
{
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return;
        ifr.ifr_flags |= IFF_UP;
        (void)ioctl(fd, SIOCSIFFLAGS, &ifr);
}

static int group_setup(void **state)
{
        (void)state;
        tbl_set("web", IP(10));
        tbl_set("db", IP(11));
        tbl_set(LONG63, IP(12));
        tbl_set("evil", 0x08080808);
        if (!netns_ok)
                return 0;
        struct bg_err *e = NULL;
        if (dns_start("127.0.0.1", 53, &cfg, &srv, &e) < 0) {
                print_error("dns_start: %s\n", bg_err_msg(e));
                bg_err_free(e);
                return -1;
        }
        assert_int_equal(dns_port(srv), 53);
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        dns_stop(srv);
        srv = NULL;
        return 0;
}

int main(void)
{
        /* Before any thread exists: the server thread inherits the namespace. */
        if (unshare(CLONE_NEWNET) == 0) {
                netns_ok = true;
                lo_up();
        } else {
                print_message("no private network namespace (%s): socket tests skipped\n", strerror(errno));
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table_over_udp),
                cmocka_unit_test(test_table_over_tcp),
                cmocka_unit_test(test_removed_name_is_nxdomain_on_next_query),
                cmocka_unit_test(test_tcp_two_queries_in_one_write_get_two_answers),
                cmocka_unit_test(test_tcp_idle_connection_is_closed_after_timeout),
                cmocka_unit_test(test_tcp_oversized_message_closes_connection),
                cmocka_unit_test(test_tcp_connection_flood_does_not_lock_out_clients),
                cmocka_unit_test(test_udp_garbage_flood_then_still_answers),
                cmocka_unit_test(test_respond_fuzz_random_and_mutated),
                cmocka_unit_test(test_answer_over_the_limit_is_truncated),
                cmocka_unit_test(test_start_rejects_bad_config),
                cmocka_unit_test(test_resolved_argv),
                cmocka_unit_test(test_resolved_is_a_no_op_when_not_active),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
