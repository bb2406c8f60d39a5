/* kmod: see kmod.h. */
#include "kmod.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "strmap.h"
#include "util.h"

void kmod_set_init(struct kmod_set *s)
{
        memset(s, 0, sizeof *s);
        s->index = strmap_new();
}

void kmod_set_release(struct kmod_set *s)
{
        for (size_t i = 0; i < s->n; i++) {
                struct kmod *m = &s->mods[i];
                free(m->name);
                free(m->path);
                for (size_t j = 0; j < m->n_deps; j++)
                        free(m->deps[j]);
                free(m->deps);
                free(m->data);
        }
        free(s->mods);
        for (size_t i = 0; i < s->n_builtin; i++)
                free(s->builtin[i]);
        free(s->builtin);
        strmap_free(s->index);
        memset(s, 0, sizeof *s);
}

static char *normalise(const char *name, size_t len)
{
        char *n = xstrndup(name, len);
        for (char *p = n; *p; p++)
                if (*p == '-')
                        *p = '_';
        return n;
}

char *kmod_name_of_path(const char *path, bool *compressed)
{
        static const char *const exts[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
                if (str_has_suffix(base, exts[i]) && strlen(base) > strlen(exts[i])) {
                        if (compressed)
                                *compressed = i > 0;
                        return normalise(base, strlen(base) - strlen(exts[i]));
                }
        }
        return NULL;
}

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* The .modinfo section of a little-endian ELF64 object. */
static int find_modinfo(const unsigned char *ko, size_t len, const unsigned char **sec, size_t *sec_len)
{
        if (len < 64 || memcmp(ko, "\177ELF", 4) != 0 || ko[4] != 2 || ko[5] != 1)
                return -1;
        uint64_t shoff = le64(ko + 0x28);
        uint16_t shentsize = le16(ko + 0x3a), shnum = le16(ko + 0x3c), shstrndx = le16(ko + 0x3e);
        if (shentsize < 64 || shstrndx >= shnum || shoff > len || (uint64_t)shnum * shentsize > len - shoff)
                return -1;
        const unsigned char *strsh = ko + shoff + (size_t)shstrndx * shentsize;
        uint64_t str_off = le64(strsh + 0x18), str_size = le64(strsh + 0x20);
        if (str_off > len || str_size > len - str_off)
                return -1;
        for (uint16_t i = 0; i < shnum; i++) {
                const unsigned char *sh = ko + shoff + (size_t)i * shentsize;
                uint32_t name = le32(sh);
                uint64_t off = le64(sh + 0x18), size = le64(sh + 0x20);
                if (name >= str_size || str_size - name < sizeof ".modinfo")
                        continue;
                if (memcmp(ko + str_off + name, ".modinfo", sizeof ".modinfo") != 0)
                        continue;
                if (off > len || size > len - off)
                        return -1;
                *sec = ko + off;
                *sec_len = (size_t)size;
                return 0;
        }
        return -1;
}

int kmod_modinfo(const unsigned char *ko, size_t len, char **name, char ***deps, size_t *n_deps,
                 struct bg_err **err)
{
        const unsigned char *sec;
        size_t sec_len;
        *name = NULL;
        *deps = NULL;
        *n_deps = 0;
        if (find_modinfo(ko, len, &sec, &sec_len) < 0)
                return bg_error(err, EINVAL, "not a kernel module (no ELF .modinfo section)");
        const char *p = (const char *)sec, *end = p + sec_len;
        while (p < end) {
                const char *z = memchr(p, '\0', (size_t)(end - p));
                size_t n = z ? (size_t)(z - p) : (size_t)(end - p);
                if (n > 5 && memcmp(p, "name=", 5) == 0 && !*name) {
                        *name = normalise(p + 5, n - 5);
                } else if (n >= 8 && memcmp(p, "depends=", 8) == 0 && !*deps) {
                        const char *d = p + 8, *dend = p + n;
                        while (d < dend) {
                                const char *c = memchr(d, ',', (size_t)(dend - d));
                                size_t dl = c ? (size_t)(c - d) : (size_t)(dend - d);
                                if (dl) {
                                        *deps = xreallocarray(*deps, *n_deps + 1, sizeof **deps);
                                        (*deps)[(*n_deps)++] = normalise(d, dl);
                                }
                                d += dl + 1;
                        }
                }
                p += n + 1;
        }
        return 0;
}

struct kmod *kmod_find(struct kmod_set *s, const char *name)
{
        uintptr_t i = (uintptr_t)strmap_get(s->index, name);
        return i ? &s->mods[i - 1] : NULL;
}

static struct kmod *entry(struct kmod_set *s, const char *name)
{
        struct kmod *m = kmod_find(s, name);
        if (m)
                return m;
        s->mods = xreallocarray(s->mods, s->n + 1, sizeof *s->mods);
        m = &s->mods[s->n++];
        memset(m, 0, sizeof *m);
        m->name = xstrdup(name);
        strmap_put(s->index, name, (void *)(uintptr_t)s->n);
        return m;
}

void kmod_want(struct kmod_set *s, const char *name)
{
        struct kmod *m = entry(s, name);
        if (m->needed)
                return;
        m->needed = true;
        /* deps may move the array: copy what we walk */
        size_t n = m->n_deps;
        char **deps = m->deps;
        for (size_t i = 0; i < n; i++)
                kmod_want(s, deps[i]);
}

struct kmod *kmod_add(struct kmod_set *s, const char *name, const char *path, char **deps, size_t n_deps)
{
        struct kmod *m = entry(s, name);
        if (m->seen) {   /* a second copy of the same module: keep the first */
                for (size_t i = 0; i < n_deps; i++)
                        free(deps[i]);
                free(deps);
                return m;
        }
        m->seen = true;
        m->path = xstrdup(path);
        m->deps = deps;
        m->n_deps = n_deps;
        if (m->needed) {
                for (size_t i = 0; i < n_deps; i++)
                        kmod_want(s, deps[i]);
                m = kmod_find(s, name);
        }
        return m;
}

void kmod_keep(struct kmod_set *s, struct kmod *m, unsigned char *data, size_t len)
{
        if (m->data) {
                s->kept -= m->len;
                free(m->data);
        }
        m->data = data;
        m->len = len;
        s->kept += len;
}

void kmod_read_builtin(struct kmod_set *s, const char *text, size_t len)
{
        s->have_builtin = true;
        const char *p = text, *end = text + len;
        while (p < end) {
                const char *e = memchr(p, '\n', (size_t)(end - p));
                size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
                _cleanup_free_ char *line = xstrndup(p, n);
                char *name = kmod_name_of_path(line, NULL);
                if (name) {
                        s->builtin = xreallocarray(s->builtin, s->n_builtin + 1, sizeof *s->builtin);
                        s->builtin[s->n_builtin++] = name;
                }
                p += n + 1;
        }
}

bool kmod_is_builtin(const struct kmod_set *s, const char *name)
{
        for (size_t i = 0; i < s->n_builtin; i++)
                if (strcmp(s->builtin[i], name) == 0)
                        return true;
        return false;
}

enum { UNVISITED, VISITING, DONE };

static int visit(struct kmod_set *s, const char *name, const char *parent, struct kmod ***out, size_t *n_out,
                 struct bg_err **err)
{
        struct kmod *m = kmod_find(s, name);
        if (!m || !m->seen) {
                if (kmod_is_builtin(s, name))
                        return 0;
                if (parent)
                        return bg_error(err, ENOENT, "kernel module '%s' (needed by '%s') is neither in the package "
                                        "nor built in", name, parent);
                return bg_error(err, ENOENT, "kernel module '%s' is neither in the package nor built in%s", name,
                                s->have_builtin ? "" : " (the package has no modules.builtin)");
        }
        if (m->mark == DONE)
                return 0;
        if (m->mark == VISITING)
                return bg_error(err, ELOOP, "kernel modules depend on each other in a cycle through '%s'", name);
        m->mark = VISITING;
        for (size_t i = 0; i < m->n_deps; i++) {
                /* the table does not grow while ordering: m stays valid */
                int r = visit(s, m->deps[i], m->name, out, n_out, err);
                if (r < 0)
                        return r;
        }
        m->mark = DONE;
        *out = xreallocarray(*out, *n_out + 1, sizeof **out);
        (*out)[(*n_out)++] = m;
        return 0;
}

int kmod_order(struct kmod_set *s, const char *const *wanted, const bool *optional, size_t n, struct kmod ***out,
               size_t *n_out, struct bg_err **err)
{
        *out = NULL;
        *n_out = 0;
        for (size_t i = 0; i < s->n; i++)
                s->mods[i].mark = UNVISITED;
        for (size_t i = 0; i < n; i++) {
                struct kmod *m = kmod_find(s, wanted[i]);
                if (optional && optional[i] && (!m || !m->seen))
                        continue;
                int r = visit(s, wanted[i], NULL, out, n_out, err);
                if (r < 0) {
                        free(*out);
                        *out = NULL;
                        *n_out = 0;
                        return r;
                }
        }
        return 0;
}
