/* agent_proto: see agent_proto.h.  Builders set a sticky overflow flag
 * instead of failing each put, so a frame is built straight-line and
 * checked once in agp_end(). */
#include "agent_proto.h"

#include <errno.h>
#include <string.h>

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
        for (int i = bytes - 1; i >= 0; i--) {
                p[i] = (uint8_t)v;
                v >>= 8;
        }
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
        uint64_t v = 0;
        for (int i = 0; i < bytes; i++)
                v = v << 8 | p[i];
        return v;
}

void agp_begin(struct agp_out *o, uint8_t t)
{
        o->len = AGP_HDR + 1;
        o->overflow = false;
        o->buf[AGP_HDR] = t;
}

void agp_put_bytes(struct agp_out *o, uint8_t tag, const void *p, size_t n)
{
        if (o->overflow || n > 0xffff || o->len + 3 + n > AGP_MAX_FRAME) {
                o->overflow = true;
                return;
        }
        o->buf[o->len] = tag;
        put_be(o->buf + o->len + 1, n, 2);
        if (n)
                memcpy(o->buf + o->len + 3, p, n);
        o->len += 3 + n;
}

void agp_put_u64(struct agp_out *o, uint8_t tag, uint64_t v)
{
        uint8_t b[8];
        put_be(b, v, 8);
        agp_put_bytes(o, tag, b, 8);
}

void agp_put_str(struct agp_out *o, uint8_t tag, const char *s)
{
        size_t n = strlen(s);
        if (n >= AGP_MAX_STR) {
                o->overflow = true;
                return;
        }
        agp_put_bytes(o, tag, s, n);
}

int agp_end(struct agp_out *o)
{
        if (o->overflow)
                return -EMSGSIZE;
        put_be(o->buf, o->len - AGP_HDR, 4);
        return 0;
}

long agp_frame_size(const uint8_t *p, size_t n)
{
        if (n < AGP_HDR)
                return 0;
        uint64_t body = get_be(p, 4);
        if (body == 0)
                return -EPROTO;
        if (body > AGP_MAX_BODY)
                return -EMSGSIZE;
        return n >= AGP_HDR + body ? (long)(AGP_HDR + body) : 0;
}

int agp_parse(const uint8_t *frame, size_t n, struct agp_msg *m)
{
        long size = agp_frame_size(frame, n);
        if (size < 0)
                return (int)size;
        if (size == 0 || (size_t)size != n)
                return -EPROTO;
        m->type = frame[AGP_HDR];
        if (m->type == 0 || m->type > AGP_TYPE_MAX)
                return -EPROTO;
        m->fields = frame + AGP_HDR + 1;
        m->len = n - AGP_HDR - 1;
        for (size_t pos = 0; pos < m->len;) {
                if (m->len - pos < 3)
                        return -EPROTO;
                size_t flen = (size_t)get_be(m->fields + pos + 1, 2);
                if (m->fields[pos] == 0 || flen > m->len - pos - 3)
                        return -EPROTO;
                pos += 3 + flen;
        }
        return 0;
}

int agp_next(const struct agp_msg *m, size_t *pos, uint8_t *tag, const uint8_t **v, size_t *n)
{
        if (*pos + 3 > m->len)
                return 0;
        size_t flen = (size_t)get_be(m->fields + *pos + 1, 2);
        if (flen > m->len - *pos - 3)
                return 0;   /* agp_parse refuses this; never read past the body */
        *tag = m->fields[*pos];
        *v = m->fields + *pos + 3;
        *n = flen;
        *pos += 3 + flen;
        return 1;
}

int agp_get_bytes(const struct agp_msg *m, uint8_t tag, const uint8_t **p, size_t *n)
{
        size_t pos = 0;
        uint8_t t;
        while (agp_next(m, &pos, &t, p, n))
                if (t == tag)
                        return 0;
        return -ENOENT;
}

int agp_get_u64(const struct agp_msg *m, uint8_t tag, uint64_t *v)
{
        const uint8_t *p;
        size_t n;
        int r = agp_get_bytes(m, tag, &p, &n);
        if (r < 0)
                return r;
        if (n != 8)
                return -EPROTO;
        *v = get_be(p, 8);
        return 0;
}

int agp_str_of(const uint8_t *v, size_t n, char *out, size_t max)
{
        if (max == 0 || n >= max || memchr(v, '\0', n))
                return -EPROTO;
        memcpy(out, v, n);
        out[n] = '\0';
        return 0;
}

int agp_get_str(const struct agp_msg *m, uint8_t tag, char *out, size_t max)
{
        const uint8_t *p;
        size_t n;
        int r = agp_get_bytes(m, tag, &p, &n);
        if (r < 0)
                return r;
        return agp_str_of(p, n, out, max);
}

const char *agp_type_name(unsigned t)
{
        static const char *const names[] = {
                "?", "hello-req", "hello", "exec", "stdin", "eof", "signal", "window", "started",
                "stdout", "stderr", "exit", "error", "stats-req", "stats", "write", "done", "shutdown",
                "resize",
        };
        return t < sizeof names / sizeof names[0] ? names[t] : "?";
}
