/* yamlnode: see yamlnode.h.  The reader keeps one document's tree at a
 * time, so memory is bounded by YN_MAX_NODES whatever the file holds; the
 * validation toolkit lives in yamlcheck.c. */
#include "yamlnode.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util.h"

/* ---- nodes ---- */

void yn_free(struct yn_node *n)
{
        if (!n)
                return;
        for (size_t i = 0; i < n->n; i++)
                yn_free(n->kids[i]);
        free(n->kids);
        free(n->str);
        free(n);
}

static void yn_append(struct yn_node *parent, struct yn_node *kid)
{
        /* Capacity is 4, then doubles whenever n reaches a power of two. */
        size_t n = parent->n;
        if (n == 0 || (n >= 4 && (n & (n - 1)) == 0))
                parent->kids = xreallocarray(parent->kids, n ? n * 2 : 4, sizeof *parent->kids);
        parent->kids[parent->n++] = kid;
}

static bool is_int_text(const char *s)
{
        if (*s == '+' || *s == '-')
                s++;
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* The YAML 1.2 core schema, minus floats and the 0o/0x forms: banger has
 * no float fields, and keeping them strings means "1.5" fails a type check
 * with a clear message instead of becoming a number nobody asked for. */
static void type_plain(struct yn_node *n)
{
        static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
        static const char *const trues[] = { "true", "True", "TRUE" };
        static const char *const falses[] = { "false", "False", "FALSE" };
        n->kind = YN_STR;
        for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
                if (strcmp(n->str, nulls[i]) == 0)
                        n->kind = YN_NULL;
        for (size_t i = 0; i < ARRAY_SIZE(trues); i++)
                if (strcmp(n->str, trues[i]) == 0) {
                        n->kind = YN_BOOL;
                        n->b = true;
                }
        for (size_t i = 0; i < ARRAY_SIZE(falses); i++)
                if (strcmp(n->str, falses[i]) == 0) {
                        n->kind = YN_BOOL;
                        n->b = false;
                }
        if (n->kind == YN_STR && is_int_text(n->str)) {
                n->kind = YN_INT;
                n->i = strtoll(n->str, NULL, 10); /* saturates on ERANGE */
        }
}

enum yn_kind yn_plain_kind(const char *s)
{
        struct yn_node n = { .str = (char *)s };
        type_plain(&n);
        return n.kind;
}

/* ---- the reader ---- */

struct reader {
        const char *buf;          /* after any UTF-8 BOM */
        size_t len;
        const struct yn_limits *lim;
        yn_doc_fn fn;
        void *ctx;
        /* libyaml marks count characters; raw slices need bytes. */
        size_t cur_char, cur_byte;
        size_t n_docs;
        size_t prev_end;          /* byte after the previous document */
        /* the document being read */
        bool in_doc;
        struct yn_doc doc;
        size_t nodes;
        size_t depth;
        struct yn_node **stack;   /* open collections, NULL past the node cap */
};

static size_t byte_at(struct reader *r, size_t char_index)
{
        if (char_index < r->cur_char) {
                r->cur_char = 0;
                r->cur_byte = 0;
        }
        while (r->cur_char < char_index && r->cur_byte < r->len) {
                unsigned char c = (unsigned char)r->buf[r->cur_byte];
                r->cur_byte += c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
                r->cur_char++;
        }
        return r->cur_byte < r->len ? r->cur_byte : r->len;
}

/* A reader error has no mark, only a byte offset: derive line:column. */
static void offset_mark(const char *buf, size_t len, size_t off, unsigned *line, unsigned *col)
{
        unsigned l = 1, c = 1;
        for (size_t i = 0; i < off && i < len; i++) {
                unsigned char ch = (unsigned char)buf[i];
                if (ch == '\n') {
                        l++;
                        c = 1;
                } else if ((ch & 0xc0) != 0x80) {
                        c++;
                }
        }
        *line = l;
        *col = c;
}

static void mark_node(struct yn_node *n, const yaml_mark_t *m)
{
        n->line = (unsigned)m->line + 1;
        n->column = (unsigned)m->column + 1;
}

/* The field path of the node about to be read, from the open
 * collections.  An outer collection's last kid is the open child below it;
 * the innermost one is about to get a new kid: a value names its key, a
 * sequence item its index, and a key is named by its map. */
static char *where(const struct reader *r)
{
        char *path = xstrdup("");
        for (size_t i = 0; i < r->depth; i++) {
                const struct yn_node *c = r->stack[i];
                if (!c)
                        break;
                bool inner = i + 1 == r->depth;
                if (!inner && (!r->stack[i + 1] || c->n == 0))
                        break; /* the child was dropped past the node cap */
                size_t kid = inner ? c->n : c->n - 1; /* index of the node in question */
                char *next = NULL;
                if (c->type == YN_SEQ)
                        next = yn_path_index(path, kid);
                else if (kid % 2 == 1 && c->kids[kid - 1]->type == YN_SCALAR)
                        next = yn_path(path, c->kids[kid - 1]->str);
                else
                        break; /* a key: named by its map */
                free(path);
                path = next;
        }
        return path;
}

static void doc_err(struct reader *r, const yaml_mark_t *m, const char *reason)
{
        _cleanup_free_ char *field = where(r);
        yn_err_at(&r->doc.errs, (unsigned)m->line + 1, (unsigned)m->column + 1, field, "%s", reason);
}

static void doc_reset(struct reader *r)
{
        yn_free(r->doc.root);
        yn_errs_release(&r->doc.errs);
        memset(&r->doc, 0, sizeof r->doc);
        r->nodes = 0;
        r->depth = 0;
        r->in_doc = false;
}

/* Count a new node against the cap; past it the document is truncated and
 * nodes are dropped (but depth is still tracked so the stream stays in
 * step). */
static struct yn_node *new_node(struct reader *r, enum yn_type t, const yaml_mark_t *m)
{
        if (++r->nodes > r->lim->max_nodes) {
                if (!r->doc.truncated) {
                        char why[96];
                        snprintf(why, sizeof why, "document has more than %zu nodes", r->lim->max_nodes);
                        doc_err(r, m, why);
                }
                r->doc.truncated = true;
                return NULL;
        }
        struct yn_node *n = xcalloc(1, sizeof *n);
        n->type = t;
        mark_node(n, m);
        return n;
}

/* Hang n under the open collection; false when it was dropped (freed). */
static bool attach(struct reader *r, struct yn_node *n)
{
        struct yn_node *parent = r->depth ? r->stack[r->depth - 1] : NULL;
        if (r->depth == 0 && !r->doc.root) {
                r->doc.root = n;
                return true;
        }
        if (parent) {
                yn_append(parent, n);
                return true;
        }
        yn_free(n);
        return false;
}

/* Anchors and tags are refused on every node: anchors are the half of the
 * billion-laughs pair that names, tags would let a file override typing. */
static bool check_props(struct reader *r, const yaml_mark_t *m, const yaml_char_t *anchor,
                        const yaml_char_t *tag)
{
        bool ok = true;
        if (anchor) {
                doc_err(r, m, "anchors and aliases are not allowed");
                ok = false;
        }
        if (tag) {
                doc_err(r, m, "tags are not allowed");
                ok = false;
        }
        return ok;
}

static void on_scalar(struct reader *r, const yaml_event_t *ev)
{
        const yaml_mark_t *m = &ev->start_mark;
        bool ok = check_props(r, m, ev->data.scalar.anchor, ev->data.scalar.tag);
        size_t len = ev->data.scalar.length;
        const char *val = (const char *)ev->data.scalar.value;
        if (len > r->lim->max_scalar) {
                char why[96];
                snprintf(why, sizeof why, "scalar longer than %zu bytes", r->lim->max_scalar);
                doc_err(r, m, why);
                ok = false;
        } else if (memchr(val, '\0', len)) {
                /* a "\0" escape: C strings would silently cut the value */
                doc_err(r, m, "strings must not contain NUL characters");
                ok = false;
        }
        struct yn_node *n = new_node(r, YN_SCALAR, m);
        if (!n)
                return;
        if (!ok) {
                n->poison = true;
                n->str = xstrdup("");
                n->kind = YN_NULL;
        } else {
                n->str = xstrndup(val, len);
                n->len = len;
                if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
                        type_plain(n);
                else
                        n->kind = YN_STR;
        }
        attach(r, n);
}

/* Returns false when the stream must stop (too deep). */
static bool on_open(struct reader *r, const yaml_event_t *ev, enum yn_type t,
                    const yaml_char_t *anchor, const yaml_char_t *tag)
{
        const yaml_mark_t *m = &ev->start_mark;
        if (r->depth >= r->lim->max_depth)
                return false;
        bool ok = check_props(r, m, anchor, tag);
        struct yn_node *n = new_node(r, t, m);
        if (n) {
                n->poison = !ok;
                if (!attach(r, n))
                        n = NULL;
        }
        /* A dropped collection's children are dropped too: push NULL. */
        r->stack[r->depth++] = n;
        return true;
}

static void on_doc_start(struct reader *r, const yaml_event_t *ev)
{
        doc_reset(r);
        r->in_doc = true;
        r->doc.line = (unsigned)ev->start_mark.line + 1;
        size_t start;
        if (ev->data.document_start.implicit) {
                /* keep leading comments with the document they precede */
                start = r->prev_end;
        } else {
                /* skip the rest of the "---" line when it holds no content */
                start = byte_at(r, ev->end_mark.index);
                size_t p = start;
                while (p < r->len && (r->buf[p] == ' ' || r->buf[p] == '\t'))
                        p++;
                if (p < r->len && r->buf[p] == '#')
                        while (p < r->len && r->buf[p] != '\n')
                                p++;
                if (p < r->len && r->buf[p] == '\r')
                        p++;
                if (p < r->len && r->buf[p] == '\n')
                        start = p + 1;
                else if (p >= r->len)
                        start = r->len;
        }
        r->doc.raw = r->buf + start;
}

static void on_doc_end(struct reader *r, const yaml_event_t *ev)
{
        size_t end = byte_at(r, ev->start_mark.index);
        if (r->buf + end >= r->doc.raw)
                r->doc.raw_len = (size_t)(r->buf + end - r->doc.raw);
        r->prev_end = byte_at(r, ev->end_mark.index);
        r->fn(&r->doc, r->ctx);
        doc_reset(r);
}

static void stream_error(struct yn_msg *out, unsigned line, unsigned col, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void stream_error(struct yn_msg *out, unsigned line, unsigned col, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        out->reason = xvasprintf(fmt, ap);
        va_end(ap);
        out->field = xstrdup("");
        out->line = line;
        out->column = col;
}

static void parser_error(struct reader *r, const yaml_parser_t *p, struct yn_msg *out)
{
        unsigned line, col;
        if (p->error == YAML_READER_ERROR) {
                offset_mark(r->buf, r->len, p->problem_offset, &line, &col);
        } else {
                line = (unsigned)p->problem_mark.line + 1;
                col = (unsigned)p->problem_mark.column + 1;
        }
        const char *problem = p->problem ? p->problem : "invalid yaml";
        if (p->context)
                stream_error(out, line, col, "%s %s", problem, p->context);
        else
                stream_error(out, line, col, "%s", problem);
}

int yn_parse(const char *buf, size_t len, const struct yn_limits *lim,
             yn_doc_fn fn, void *ctx, struct yn_msg *stream_err)
{
        memset(stream_err, 0, sizeof *stream_err);
        /* libyaml counts a BOM as a column, which shifts the indentation
         * of the first line; drop it before libyaml sees it. */
        if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
                buf += 3;
                len -= 3;
        }
        struct reader r = { .buf = buf, .len = len, .lim = lim, .fn = fn, .ctx = ctx };
        r.stack = xcalloc(lim->max_depth + 1, sizeof *r.stack);

        yaml_parser_t p;
        if (!yaml_parser_initialize(&p))
                abort(); /* only fails on out of memory */
        yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
        yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);

        int rc = 0;
        for (bool done = false; !done;) {
                yaml_event_t ev;
                if (!yaml_parser_parse(&p, &ev)) {
                        parser_error(&r, &p, stream_err);
                        rc = -1;
                        break;
                }
                switch (ev.type) {
                case YAML_DOCUMENT_START_EVENT:
                        if (++r.n_docs > lim->max_docs) {
                                stream_error(stream_err, (unsigned)ev.start_mark.line + 1,
                                             (unsigned)ev.start_mark.column + 1,
                                             "more than %zu documents", lim->max_docs);
                                rc = -1;
                                done = true;
                                break;
                        }
                        on_doc_start(&r, &ev);
                        break;
                case YAML_DOCUMENT_END_EVENT:
                        on_doc_end(&r, &ev);
                        break;
                case YAML_ALIAS_EVENT: {
                        doc_err(&r, &ev.start_mark, "anchors and aliases are not allowed");
                        /* a placeholder keeps key/value pairs in step */
                        struct yn_node *n = new_node(&r, YN_SCALAR, &ev.start_mark);
                        if (n) {
                                n->poison = true;
                                n->str = xstrdup("");
                                attach(&r, n);
                        }
                        break;
                }
                case YAML_SCALAR_EVENT:
                        on_scalar(&r, &ev);
                        break;
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT: {
                        bool seq = ev.type == YAML_SEQUENCE_START_EVENT;
                        bool ok = seq ? on_open(&r, &ev, YN_SEQ, ev.data.sequence_start.anchor,
                                                ev.data.sequence_start.tag)
                                      : on_open(&r, &ev, YN_MAP, ev.data.mapping_start.anchor,
                                                ev.data.mapping_start.tag);
                        if (!ok) {
                                stream_error(stream_err, (unsigned)ev.start_mark.line + 1,
                                             (unsigned)ev.start_mark.column + 1,
                                             "nesting deeper than %zu levels", lim->max_depth);
                                rc = -1;
                                done = true;
                        }
                        break;
                }
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        if (r.depth > 0)
                                r.depth--;
                        break;
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&p);
        doc_reset(&r);
        free(r.stack);
        return rc;
}

void yn_msg_release(struct yn_msg *m)
{
        if (!m)
                return;
        free(m->field);
        free(m->reason);
        m->field = m->reason = NULL;
}

/* ---- JSON ---- */

struct yn_node *yn_from_json(const json_t *j, size_t max_depth)
{
        struct yn_node *n = xcalloc(1, sizeof *n);
        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                if (max_depth == 0)
                        goto too_deep;
                n->type = YN_MAP;
                const char *k;
                json_t *v;
                json_object_foreach((json_t *)j, k, v) {
                        json_t *key = json_string(k);
                        struct yn_node *kn = yn_from_json(key, 0);
                        json_decref(key);
                        struct yn_node *vn = yn_from_json(v, max_depth - 1);
                        if (!vn) {
                                yn_free(kn);
                                goto too_deep;
                        }
                        yn_append(n, kn);
                        yn_append(n, vn);
                }
                return n;
        }
        case JSON_ARRAY: {
                if (max_depth == 0)
                        goto too_deep;
                n->type = YN_SEQ;
                size_t i;
                json_t *v;
                json_array_foreach(j, i, v) {
                        struct yn_node *vn = yn_from_json(v, max_depth - 1);
                        if (!vn)
                                goto too_deep;
                        yn_append(n, vn);
                }
                return n;
        }
        case JSON_STRING:
                n->type = YN_SCALAR;
                n->len = json_string_length(j);
                n->str = xstrndup(json_string_value(j), n->len);
                n->kind = strlen(n->str) == n->len ? YN_STR : YN_OTHER;
                return n;
        case JSON_INTEGER:
                n->type = YN_SCALAR;
                n->kind = YN_INT;
                n->i = (long long)json_integer_value(j);
                n->str = xasprintf("%lld", n->i);
                n->len = strlen(n->str);
                return n;
        case JSON_TRUE:
        case JSON_FALSE:
                n->type = YN_SCALAR;
                n->kind = YN_BOOL;
                n->b = json_is_true(j);
                n->str = xstrdup(n->b ? "true" : "false");
                n->len = strlen(n->str);
                return n;
        case JSON_NULL:
                n->type = YN_SCALAR;
                n->kind = YN_NULL;
                n->str = xstrdup("");
                return n;
        default:
                n->type = YN_SCALAR;
                n->kind = YN_OTHER;
                n->str = xstrdup("");
                return n;
        }
too_deep:
        yn_free(n);
        return NULL;
}
