/* yamlcheck: the problem lists and typed accessors of yamlnode.h, used by
 * the spec and config validators so both report types, unknown fields and
 * missing fields with the same words. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "yamlnode.h"

static void errs_push(struct yn_errs *e, unsigned line, unsigned column, const char *field, char *reason)
{
        if (e->full) {
                free(reason);
                return;
        }
        e->v = xreallocarray(e->v, e->n + 1, sizeof *e->v);
        if (e->n == YN_MAX_ERRORS) {
                free(reason);
                e->v[e->n++] = (struct yn_msg){ 0, 0, xstrdup(""), xstrdup("too many errors") };
                e->full = true;
                return;
        }
        e->v[e->n++] = (struct yn_msg){ line, column, xstrdup(field ? field : ""), reason };
}

void yn_err_at(struct yn_errs *e, unsigned line, unsigned column, const char *field, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *reason = xvasprintf(fmt, ap);
        va_end(ap);
        errs_push(e, line, column, field, reason);
}

void yn_err(struct yn_errs *e, const struct yn_node *at, const char *field, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *reason = xvasprintf(fmt, ap);
        va_end(ap);
        errs_push(e, at ? at->line : 0, at ? at->column : 0, field, reason);
}

static bool msg_before(const struct yn_msg *a, const struct yn_msg *b)
{
        return a->line < b->line || (a->line == b->line && a->column < b->column);
}

void yn_errs_sort(struct yn_errs *e)
{
        /* Insertion sort: stable, and n is at most YN_MAX_ERRORS. */
        size_t n = e->full ? e->n - 1 : e->n;
        for (size_t i = 1; i < n; i++) {
                struct yn_msg m = e->v[i];
                size_t j = i;
                while (j > 0 && msg_before(&m, &e->v[j - 1])) {
                        e->v[j] = e->v[j - 1];
                        j--;
                }
                e->v[j] = m;
        }
}

void yn_errs_release(struct yn_errs *e)
{
        for (size_t i = 0; i < e->n; i++)
                yn_msg_release(&e->v[i]);
        free(e->v);
        e->v = NULL;
        e->n = 0;
        e->full = false;
}

char *yn_errs_join(const struct yn_errs *e)
{
        char *out = xstrdup("");
        for (size_t i = 0; i < e->n; i++) {
                const struct yn_msg *m = &e->v[i];
                char *next = xasprintf("%s%s%s%s%s", out, i ? "; " : "", m->field,
                                       *m->field ? ": " : "", m->reason);
                free(out);
                out = next;
        }
        return out;
}

/* ---- paths ---- */

#define PATH_KEY_MAX 64

static char *clean_key(const char *key)
{
        size_t len = strlen(key);
        bool cut = len > PATH_KEY_MAX;
        if (cut) {
                len = PATH_KEY_MAX;
                /* do not split a UTF-8 sequence */
                while (len > 0 && ((unsigned char)key[len] & 0xc0) == 0x80)
                        len--;
        }
        char *s = xmalloc(len + 4);
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)key[i];
                s[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
        memcpy(s + len, cut ? "..." : "", cut ? 4 : 1);
        return s;
}

char *yn_path(const char *parent, const char *key)
{
        _cleanup_free_ char *k = clean_key(key);
        if (!parent || !*parent)
                return steal_pointer(&k);
        return xasprintf("%s.%s", parent, k);
}

char *yn_path_index(const char *parent, size_t i)
{
        return xasprintf("%s[%zu]", parent ? parent : "", i);
}

/* ---- typed access ---- */

static bool is_scalar(const struct yn_node *n, enum yn_kind k)
{
        return n->type == YN_SCALAR && n->kind == k;
}

const char *yn_want_str(struct yn_errs *e, const struct yn_node *n, const char *path)
{
        if (n->poison)
                return NULL;
        if (!is_scalar(n, YN_STR)) {
                yn_err(e, n, path, "must be a string");
                return NULL;
        }
        return n->str;
}

bool yn_want_bool(struct yn_errs *e, const struct yn_node *n, const char *path, bool *out)
{
        if (n->poison)
                return false;
        if (!is_scalar(n, YN_BOOL)) {
                yn_err(e, n, path, "must be a boolean");
                return false;
        }
        *out = n->b;
        return true;
}

bool yn_want_int(struct yn_errs *e, const struct yn_node *n, const char *path,
                 long long min, long long max, long long *out)
{
        if (n->poison)
                return false;
        if (!is_scalar(n, YN_INT)) {
                yn_err(e, n, path, "must be an integer");
                return false;
        }
        if (n->i < min || n->i > max) {
                yn_err(e, n, path, "must be between %lld and %lld", min, max);
                return false;
        }
        *out = n->i;
        return true;
}

bool yn_want_map(struct yn_errs *e, const struct yn_node *n, const char *path)
{
        if (n->poison)
                return false;
        if (n->type != YN_MAP) {
                yn_err(e, n, path, "must be a mapping");
                return false;
        }
        return true;
}

bool yn_want_seq(struct yn_errs *e, const struct yn_node *n, const char *path)
{
        if (n->poison)
                return false;
        if (n->type != YN_SEQ) {
                yn_err(e, n, path, "must be a sequence");
                return false;
        }
        return true;
}

int yn_want_enum(struct yn_errs *e, const struct yn_node *n, const char *path,
                 const char *const *names, size_t count)
{
        const char *s = yn_want_str(e, n, path);
        if (!s)
                return -1;
        for (size_t i = 0; i < count; i++)
                if (strcmp(s, names[i]) == 0)
                        return (int)i;
        char list[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < count; i++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
                if (w < 0 || (size_t)w >= sizeof list - used)
                        break;
                used += (size_t)w;
        }
        yn_err(e, n, path, "must be one of: %s", list);
        return -1;
}

void yn_fields(struct yn_errs *e, const struct yn_node *map, const char *path,
               const struct yn_field *fields, size_t n_fields, const struct yn_node **vals)
{
        bool unsure = false; /* a poisoned key may be the "missing" one */
        for (size_t f = 0; f < n_fields; f++)
                vals[f] = NULL;
        for (size_t i = 0; i + 1 < map->n; i += 2) {
                const struct yn_node *k = map->kids[i];
                if (k->poison) {
                        unsure = true;
                        continue;
                }
                if (!is_scalar(k, YN_STR)) {
                        yn_err(e, k, path, "mapping keys must be strings");
                        continue;
                }
                _cleanup_free_ char *kp = yn_path(path, k->str);
                size_t f = 0;
                while (f < n_fields && strcmp(fields[f].name, k->str) != 0)
                        f++;
                if (f == n_fields)
                        yn_err(e, k, kp, "unknown field");
                else if (vals[f])
                        yn_err(e, k, kp, "duplicate key");
                else
                        vals[f] = map->kids[i + 1];
        }
        if (unsure)
                return;
        for (size_t f = 0; f < n_fields; f++) {
                if (fields[f].required && !vals[f]) {
                        _cleanup_free_ char *fp = yn_path(path, fields[f].name);
                        yn_err(e, map, fp, "required");
                }
        }
}

const struct yn_node *yn_get(const struct yn_node *map, const char *key)
{
        if (!map || map->type != YN_MAP)
                return NULL;
        for (size_t i = 0; i + 1 < map->n; i += 2) {
                const struct yn_node *k = map->kids[i];
                if (k->type == YN_SCALAR && k->kind == YN_STR && strcmp(k->str, key) == 0)
                        return map->kids[i + 1];
        }
        return NULL;
}
