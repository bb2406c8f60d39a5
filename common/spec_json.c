/* spec_json: the canonical forms of a spec.
 *
 * spec_to_json fills in every static default so that two files meaning
 * the same sandbox give byte-identical compact, key-sorted JSON, which is
 * what spec_hash hashes.  spec_from_json runs the JSON through the very
 * validator files go through.  spec_to_yaml writes the same canonical
 * content as YAML, quoting every string that would not read back as the
 * same string under banger's core-schema typing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "spec.h"
#include "spec_internal.h"
#include "util.h"

/* jansson refuses invalid UTF-8; a validated spec never holds any, but a
 * hand-built one might, and a canonical form must not fail. */
static json_t *jstr(const char *s)
{
        json_t *j = json_string(s ? s : "");
        if (j)
                return j;
        _cleanup_free_ char *c = xstrdup(s);
        for (char *p = c; *p; p++)
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        return json_string(c);
}

static void set(json_t *o, const char *k, json_t *v)
{
        json_object_set_new(o, k, v);
}

static char *mode_text(unsigned mode)
{
        return xasprintf("%04o", mode & 07777);
}

json_t *spec_json_workspace(const struct spec_workspace *w)
{
        if (!w)
                return NULL;
        json_t *o = json_object();
        set(o, "path", jstr(w->path));
        if (w->branch)
                set(o, "branch", jstr(w->branch));
        if (w->from)
                set(o, "from", jstr(w->from));
        set(o, "include_untracked", json_boolean(w->include_untracked));
        return o;
}

json_t *spec_json_file_sync(const struct bg_spec *s)
{
        json_t *a = json_array();
        for (size_t i = 0; i < s->n_file_sync; i++) {
                const struct spec_file_sync *f = &s->file_sync[i];
                json_t *o = json_object();
                set(o, "host", jstr(f->host));
                set(o, "guest", jstr(f->guest));
                _cleanup_free_ char *m = mode_text(f->mode_set ? f->mode : 0600);
                set(o, "mode", jstr(m));
                json_array_append_new(a, o);
        }
        return a;
}

json_t *spec_json_ports(const struct bg_spec *s)
{
        json_t *a = json_array();
        for (size_t i = 0; i < s->n_ports; i++) {
                json_t *o = json_object();
                set(o, "host", json_integer(s->ports[i].host));
                set(o, "guest", json_integer(s->ports[i].guest));
                json_array_append_new(a, o);
        }
        return a;
}

json_t *spec_to_json(const struct bg_spec *s)
{
        json_t *root = json_object();
        set(root, "apiVersion", jstr(SPEC_API_VERSION));
        set(root, "kind", jstr(SPEC_KIND));

        json_t *md = json_object();
        set(md, "name", jstr(s->name));
        json_t *labels = json_object();
        for (size_t i = 0; i < s->n_labels; i++)
                set(labels, s->labels[i].key, jstr(s->labels[i].value));
        set(md, "labels", labels);
        set(root, "metadata", md);

        json_t *sp = json_object();
        set(sp, "state", jstr(spec_state_name(s->state)));
        if (s->image)
                set(sp, "image", jstr(s->image));
        set(sp, "kernel", jstr(s->kernel ? s->kernel : "default"));
        set(sp, "hypervisor", jstr(spec_hypervisor_name(s->hypervisor)));
        if (s->vcpu)
                set(sp, "vcpu", json_integer(s->vcpu));
        if (s->memory_mib)
                set(sp, "memory_mib", json_integer(s->memory_mib));
        if (s->disk_size) {
                char buf[32];
                spec_size_format(s->disk_size, buf, sizeof buf);
                set(sp, "disk_size", jstr(buf));
        }
        set(sp, "restart", jstr(spec_restart_name(s->restart)));
        if (s->idle_timeout_ms) {
                char buf[48];
                spec_duration_format(s->idle_timeout_ms, buf, sizeof buf);
                set(sp, "idle_timeout", jstr(buf));
        }
        set(sp, "nat", json_boolean(s->nat));
        if (s->workspace)
                set(sp, "workspace", spec_json_workspace(s->workspace));
        set(sp, "file_sync", spec_json_file_sync(s));
        set(sp, "ports", spec_json_ports(s));
        set(root, "spec", sp);
        return root;
}

int spec_from_json(const json_t *j, struct bg_spec **out, struct bg_err **err)
{
        *out = NULL;
        if (!j)
                return bg_error(err, EINVAL, "invalid spec: no json");
        struct yn_node *root = yn_from_json(j, SPEC_MAX_DEPTH);
        if (!root)
                return bg_error(err, EINVAL, "invalid spec: nesting deeper than %d levels", SPEC_MAX_DEPTH);
        struct yn_errs e = { 0 };
        struct bg_spec *s = spec_check_tree(root, &e);
        yn_free(root);
        if (!s) {
                _cleanup_free_ char *msg = yn_errs_join(&e);
                yn_errs_release(&e);
                return bg_error(err, EINVAL, "invalid spec: %s", msg);
        }
        yn_errs_release(&e);
        *out = s;
        return 0;
}

uint64_t spec_hash(const struct bg_spec *s)
{
        json_t *j = spec_to_json(s);
        char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        if (!text)
                abort(); /* jansson only fails here on out of memory */
        uint64_t h = fnv1a64(text, strlen(text), FNV1A64_SEED);
        free(text);
        return h;
}

/* ---- YAML ---- */

struct sb {
        char *p;
        size_t n, cap;
};

static void sb_add(struct sb *b, const char *s, size_t len)
{
        if (!b->p || b->n + len + 1 > b->cap) {
                while (b->n + len + 1 > b->cap)
                        b->cap = b->cap ? b->cap * 2 : 512;
                b->p = xrealloc(b->p, b->cap);
        }
        memcpy(b->p + b->n, s, len);
        b->n += len;
        b->p[b->n] = '\0';
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *s = xvasprintf(fmt, ap);
        va_end(ap);
        sb_add(b, s, strlen(s));
}

/* Plain only for a conservative ASCII set that reads back as a string. */
static bool plain_ok(const char *s)
{
        static const char first[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./~";
        static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./~@+-";
        if (!*s || !strchr(first, *s))
                return false;
        for (const char *p = s + 1; *p; p++)
                if (!strchr(rest, *p))
                        return false;
        return yn_plain_kind(s) == YN_STR;
}

/* Decode one UTF-8 sequence at s; returns its length, 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, unsigned *cp)
{
        size_t len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
        if (s[0] < 0xc2 || s[0] > 0xf4)
                return 0;
        unsigned v = s[0] & (0x3f >> (len - 1));
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (s[i] & 0x3f);
        }
        *cp = v;
        return len;
}

/* A YAML double-quoted scalar.  Everything YAML would not take raw, or
 * that libyaml would read as a line break (NEL, LS, PS), is escaped. */
static void sb_quoted(struct sb *b, const char *s)
{
        sb_add(b, "\"", 1);
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                unsigned cp = *p;
                size_t len = 1;
                if (*p >= 0x80 && (!(len = utf8_decode(p, &cp)) || (cp >= 0xd800 && cp <= 0xdfff))) {
                        sb_add(b, "?", 1); /* not UTF-8: cannot be written */
                        p += len ? len : 1;
                        continue;
                }
                if (cp == '"' || cp == '\\')
                        sb_printf(b, "\\%c", (char)cp);
                else if (cp < 0x20 || cp == 0x7f)
                        sb_printf(b, "\\x%02x", cp);
                else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
                         cp == 0xfffe || cp == 0xffff)
                        sb_printf(b, "\\u%04x", cp);
                else
                        sb_add(b, (const char *)p, len);
                p += len;
        }
        sb_add(b, "\"", 1);
}

static void sb_scalar(struct sb *b, const char *s)
{
        if (plain_ok(s))
                sb_add(b, s, strlen(s));
        else
                sb_quoted(b, s);
}

static void sb_kv(struct sb *b, const char *indent, const char *key, const char *val)
{
        sb_printf(b, "%s%s: ", indent, key);
        sb_scalar(b, val);
        sb_add(b, "\n", 1);
}

char *spec_to_yaml(const struct bg_spec *s)
{
        struct sb b = { 0 };
        sb_printf(&b, "apiVersion: %s\nkind: %s\nmetadata:\n", SPEC_API_VERSION, SPEC_KIND);
        sb_kv(&b, "  ", "name", s->name ? s->name : "");
        if (s->n_labels) {
                sb_add(&b, "  labels:\n", 10);
                for (size_t i = 0; i < s->n_labels; i++) {
                        sb_add(&b, "    ", 4);
                        sb_scalar(&b, s->labels[i].key);
                        sb_add(&b, ": ", 2);
                        sb_scalar(&b, s->labels[i].value);
                        sb_add(&b, "\n", 1);
                }
        }
        sb_add(&b, "spec:\n", 6);
        sb_kv(&b, "  ", "state", spec_state_name(s->state));
        if (s->image)
                sb_kv(&b, "  ", "image", s->image);
        sb_kv(&b, "  ", "kernel", s->kernel ? s->kernel : "default");
        sb_kv(&b, "  ", "hypervisor", spec_hypervisor_name(s->hypervisor));
        if (s->vcpu)
                sb_printf(&b, "  vcpu: %u\n", s->vcpu);
        if (s->memory_mib)
                sb_printf(&b, "  memory_mib: %u\n", s->memory_mib);
        if (s->disk_size) {
                char buf[32];
                spec_size_format(s->disk_size, buf, sizeof buf);
                sb_kv(&b, "  ", "disk_size", buf);
        }
        sb_kv(&b, "  ", "restart", spec_restart_name(s->restart));
        if (s->idle_timeout_ms) {
                char buf[48];
                spec_duration_format(s->idle_timeout_ms, buf, sizeof buf);
                sb_kv(&b, "  ", "idle_timeout", buf);
        }
        sb_printf(&b, "  nat: %s\n", s->nat ? "true" : "false");
        if (s->workspace) {
                const struct spec_workspace *w = s->workspace;
                sb_add(&b, "  workspace:\n", 13);
                sb_kv(&b, "    ", "path", w->path ? w->path : "");
                if (w->branch)
                        sb_kv(&b, "    ", "branch", w->branch);
                if (w->from)
                        sb_kv(&b, "    ", "from", w->from);
                sb_printf(&b, "    include_untracked: %s\n", w->include_untracked ? "true" : "false");
        }
        if (s->n_file_sync) {
                sb_add(&b, "  file_sync:\n", 13);
                for (size_t i = 0; i < s->n_file_sync; i++) {
                        const struct spec_file_sync *f = &s->file_sync[i];
                        _cleanup_free_ char *m = mode_text(f->mode_set ? f->mode : 0600);
                        sb_kv(&b, "    - ", "host", f->host ? f->host : "");
                        sb_kv(&b, "      ", "guest", f->guest ? f->guest : "");
                        sb_kv(&b, "      ", "mode", m);
                }
        }
        if (s->n_ports) {
                sb_add(&b, "  ports:\n", 9);
                for (size_t i = 0; i < s->n_ports; i++)
                        sb_printf(&b, "    - host: %u\n      guest: %u\n", s->ports[i].host, s->ports[i].guest);
        }
        return b.p;
}
