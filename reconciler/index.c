/* index: see index.h.  Two maps: file path -> file_entry (its parse and
 * the names it claims) and name -> name_entry (the files claiming it). */
#include "index.h"

#include <string.h>

#include "strmap.h"
#include "util.h"

struct file_entry {
        struct spec_file *parsed;
        uint64_t *hashes;          /* spec_hash of each valid document, computed once */
        char **names;
        size_t n_names;
};

struct name_entry {
        char **files;
        size_t n_files;
};

struct index {
        struct strmap *files;
        struct strmap *names;
};

struct index *index_new(void)
{
        struct index *ix = xcalloc(1, sizeof *ix);
        ix->files = strmap_new();
        ix->names = strmap_new();
        return ix;
}

static void strv_free(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static bool strv_has(char **v, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

static void strv_add(char ***v, size_t *n, const char *s)
{
        *v = xreallocarray(*v, *n + 1, sizeof **v);
        (*v)[(*n)++] = xstrdup(s);
}

static void strv_remove(char **v, size_t *n, const char *s)
{
        for (size_t i = 0; i < *n; i++) {
                if (strcmp(v[i], s) == 0) {
                        free(v[i]);
                        memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof *v);
                        (*n)--;
                        return;
                }
        }
}

static void free_file(const char *k, void *v, void *arg)
{
        (void)k;
        (void)arg;
        struct file_entry *fe = v;
        spec_file_free(fe->parsed);
        free(fe->hashes);
        strv_free(fe->names, fe->n_names);
        free(fe);
}

static void free_name(const char *k, void *v, void *arg)
{
        (void)k;
        (void)arg;
        struct name_entry *ne = v;
        strv_free(ne->files, ne->n_files);
        free(ne);
}

void index_free(struct index *ix)
{
        if (!ix)
                return;
        strmap_foreach(ix->files, free_file, NULL);
        strmap_foreach(ix->names, free_name, NULL);
        strmap_free(ix->files);
        strmap_free(ix->names);
        free(ix);
}

static bool file_has_errors(const struct spec_file *f)
{
        return f && !spec_file_ok(f);
}

static void claim(struct index *ix, const char *name, const char *path)
{
        struct name_entry *ne = strmap_get(ix->names, name);
        if (!ne) {
                ne = xcalloc(1, sizeof *ne);
                strmap_put(ix->names, name, ne);
        }
        if (!strv_has(ne->files, ne->n_files, path))
                strv_add(&ne->files, &ne->n_files, path);
}

static void unclaim(struct index *ix, const char *name, const char *path)
{
        struct name_entry *ne = strmap_get(ix->names, name);
        if (!ne)
                return;
        strv_remove(ne->files, &ne->n_files, path);
        if (ne->n_files == 0) {
                strmap_del(ix->names, name);
                free_name(name, ne, NULL);
        }
}

void index_update_file(struct index *ix, const char *path, struct spec_file *parsed,
                       void (*dirty)(const char *name, void *arg),
                       void (*report)(const char *name, const char *type, const char *message, void *arg),
                       void *arg)
{
        struct file_entry *old = strmap_get(ix->files, path);
        char **names = NULL;
        size_t n_names = 0;

        if (parsed) {
                for (size_t i = 0; i < parsed->n_docs; i++)
                        if (parsed->docs[i].name && spec_name_valid(parsed->docs[i].name) &&
                            !strv_has(names, n_names, parsed->docs[i].name))
                                strv_add(&names, &n_names, parsed->docs[i].name);
                /* A broken file keeps what it claimed: an invalid edit is not a delete. */
                if (old && file_has_errors(parsed))
                        for (size_t i = 0; i < old->n_names; i++)
                                if (!strv_has(names, n_names, old->names[i]))
                                        strv_add(&names, &n_names, old->names[i]);
        }

        if (old) {
                for (size_t i = 0; i < old->n_names; i++) {
                        if (!strv_has(names, n_names, old->names[i]))
                                unclaim(ix, old->names[i], path);
                        dirty(old->names[i], arg);
                }
                strmap_del(ix->files, path);
                free_file(path, old, NULL);
        }
        if (!parsed) {
                strv_free(names, n_names);
                return;
        }

        struct file_entry *fe = xcalloc(1, sizeof *fe);
        fe->parsed = parsed;
        fe->hashes = xcalloc(parsed->n_docs ? parsed->n_docs : 1, sizeof *fe->hashes);
        for (size_t i = 0; i < parsed->n_docs; i++)
                if (parsed->docs[i].spec)
                        fe->hashes[i] = spec_hash(parsed->docs[i].spec);
        fe->names = names;
        fe->n_names = n_names;
        strmap_put(ix->files, path, fe);
        for (size_t i = 0; i < n_names; i++) {
                claim(ix, names[i], path);
                dirty(names[i], arg);
        }

        /* Report problems once, as the file changes. */
        for (size_t i = 0; i < parsed->n_errors; i++) {
                _cleanup_free_ char *m = spec_error_format(&parsed->errors[i]);
                report(NULL, "SpecInvalid", m, arg);
        }
        for (size_t i = 0; i < parsed->n_docs; i++) {
                const struct spec_doc *d = &parsed->docs[i];
                for (size_t j = 0; j < d->n_errors; j++) {
                        _cleanup_free_ char *m = spec_error_format(&d->errors[j]);
                        report(d->name && spec_name_valid(d->name) ? d->name : NULL, "SpecInvalid", m, arg);
                }
        }
        for (size_t i = 0; i < n_names; i++) {
                struct desired *d = index_get(ix, names[i]);
                if (d && d->contested) {
                        _cleanup_free_ char *m = xstrdup(d->errors[0]);
                        report(names[i], "SpecDuplicate", m, arg);
                }
                desired_free(d);
        }
}

static void add_error(struct desired *d, const struct spec_error *e)
{
        d->errors = xreallocarray(d->errors, d->n_errors + 1, sizeof *d->errors);
        d->errors[d->n_errors++] = spec_error_format(e);
}

/* The errors that explain why name has no valid spec in f: its own
 * document's, or, when a broken edit lost the name, every error of f. */
static void add_file_errors(struct desired *d, const struct spec_file *f, const char *name)
{
        for (size_t i = 0; i < f->n_errors; i++)
                add_error(d, &f->errors[i]);
        size_t before = d->n_errors;
        for (size_t i = 0; i < f->n_docs; i++) {
                const struct spec_doc *doc = &f->docs[i];
                if (doc->name && strcmp(doc->name, name) == 0)
                        for (size_t j = 0; j < doc->n_errors; j++)
                                add_error(d, &doc->errors[j]);
        }
        if (d->n_errors == before && f->n_errors == 0)
                for (size_t i = 0; i < f->n_docs; i++)
                        for (size_t j = 0; j < f->docs[i].n_errors; j++)
                                add_error(d, &f->docs[i].errors[j]);
}

struct desired *index_get(const struct index *ix, const char *name)
{
        const struct name_entry *ne = strmap_get(ix->names, name);
        if (!ne)
                return NULL;
        struct desired *d = xcalloc(1, sizeof *d);
        d->name = xstrdup(name);
        for (size_t i = 0; i < ne->n_files; i++)
                strv_add(&d->files, &d->n_files, ne->files[i]);

        const struct spec_doc *only = NULL;
        uint64_t only_hash = 0;
        size_t claims = 0;
        for (size_t i = 0; i < ne->n_files; i++) {
                const struct file_entry *fe = strmap_get(ix->files, ne->files[i]);
                bool found = false;
                for (size_t j = 0; j < fe->parsed->n_docs; j++) {
                        const struct spec_doc *doc = &fe->parsed->docs[j];
                        if (doc->name && strcmp(doc->name, name) == 0) {
                                only = doc;
                                only_hash = fe->hashes[j];
                                claims++;
                                found = true;
                        }
                }
                if (!found)
                        claims++;    /* kept by a broken file */
        }
        if (claims > 1) {
                size_t len = 0;
                for (size_t i = 0; i < ne->n_files; i++)
                        len += strlen(ne->files[i]) + 2;
                char *list = xcalloc(1, len + 1);
                for (size_t i = 0; i < ne->n_files; i++) {
                        if (i)
                                strcat(list, ", ");
                        strcat(list, ne->files[i]);
                }
                d->errors = xcalloc(1, sizeof *d->errors);
                d->errors[0] = xasprintf("name \"%s\" is claimed %zu times, by %s; keeping the last valid spec",
                                         name, claims, list);
                d->n_errors = 1;
                d->contested = true;
                free(list);
                return d;
        }
        const struct file_entry *fe = strmap_get(ix->files, ne->files[0]);
        if (only && only->spec && fe->parsed->n_errors == 0) {
                d->spec = spec_dup(only->spec);
                d->hash = only_hash;
                return d;
        }
        add_file_errors(d, fe->parsed, name);
        return d;
}

void index_peek(const struct index *ix, const char *name, struct desired_peek *out)
{
        memset(out, 0, sizeof *out);
        const struct name_entry *ne = strmap_get(ix->names, name);
        if (!ne)
                return;
        out->claimed = true;
        if (ne->n_files != 1)
                return;
        const struct file_entry *fe = strmap_get(ix->files, ne->files[0]);
        if (fe->parsed->n_errors)
                return;
        const struct spec_doc *only = NULL;
        uint64_t hash = 0;
        for (size_t j = 0; j < fe->parsed->n_docs; j++) {
                const struct spec_doc *doc = &fe->parsed->docs[j];
                if (doc->name && strcmp(doc->name, name) == 0) {
                        if (only)
                                return;   /* claimed twice in one file */
                        only = doc;
                        hash = fe->hashes[j];
                }
        }
        if (!only || !only->spec)
                return;
        out->valid = true;
        out->hash = hash;
        out->state = only->spec->state;
        out->restart = only->spec->restart;
}

void desired_free(struct desired *d)
{
        if (!d)
                return;
        free(d->name);
        spec_free(d->spec);
        strv_free(d->files, d->n_files);
        strv_free(d->errors, d->n_errors);
        free(d);
}

struct name_cb {
        void (*cb)(const char *, void *);
        void *arg;
};

static void call_name(const char *k, void *v, void *arg)
{
        (void)v;
        struct name_cb *c = arg;
        c->cb(k, c->arg);
}

void index_foreach_name(const struct index *ix, void (*cb)(const char *name, void *arg), void *arg)
{
        struct name_cb c = { cb, arg };
        strmap_foreach(ix->names, call_name, &c);
}

void index_foreach_file(const struct index *ix, void (*cb)(const char *path, void *arg), void *arg)
{
        struct name_cb c = { cb, arg };
        strmap_foreach(ix->files, call_name, &c);
}

size_t index_count(const struct index *ix)
{
        return strmap_count(ix->names);
}

struct orphan_cb {
        void (*cb)(const char *, void *);
        void *arg;
};

static void orphan_errors(const char *k, void *v, void *arg)
{
        (void)k;
        const struct file_entry *fe = v;
        struct orphan_cb *c = arg;
        if (fe->n_names)
                return;
        for (size_t i = 0; i < fe->parsed->n_errors; i++) {
                _cleanup_free_ char *m = spec_error_format(&fe->parsed->errors[i]);
                c->cb(m, c->arg);
        }
        for (size_t i = 0; i < fe->parsed->n_docs; i++)
                for (size_t j = 0; j < fe->parsed->docs[i].n_errors; j++) {
                        _cleanup_free_ char *m = spec_error_format(&fe->parsed->docs[i].errors[j]);
                        c->cb(m, c->arg);
                }
}

void index_foreach_orphan_error(const struct index *ix, void (*cb)(const char *msg, void *arg), void *arg)
{
        struct orphan_cb c = { cb, arg };
        strmap_foreach(ix->files, orphan_errors, &c);
}
