/* folder: see folder.h.  A file is rewritten from its documents' raw
 * texts joined with "---\n"; one whose YAML did not parse (file-level
 * errors) cannot be split into documents safely, so it is only ever
 * replaced whole when it is DIR/<name>.yaml and names no other sandbox. */
#include "folder.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "input.h"
#include "spec.h"
#include "util.h"

#define FILE_MODE 0644
#define DIR_MODE 0755

int folder_load(struct folder *f, const char *dir, struct bg_err **err)
{
        char **paths;
        size_t n;

        memset(f, 0, sizeof *f);
        f->dir = xstrdup(dir);
        if (input_list_dir(dir, &paths, &n, err) < 0)
                return -EIO;
        f->files = xcalloc(n ? n : 1, sizeof *f->files);
        for (size_t i = 0; i < n; i++) {
                struct spec_file *sf = NULL;
                spec_parse_path(paths[i], &sf);
                if (sf)
                        f->files[f->n_files++] = sf;
        }
        input_free_list(paths, n);
        return 0;
}

void folder_release(struct folder *f)
{
        for (size_t i = 0; i < f->n_files; i++)
                spec_file_free(f->files[i]);
        free(f->files);
        free(f->dir);
        memset(f, 0, sizeof *f);
}

static bool doc_is(const struct spec_doc *d, const char *name)
{
        return d->name && strcmp(d->name, name) == 0;
}

static bool file_claims(const struct spec_file *sf, const char *name)
{
        for (size_t d = 0; d < sf->n_docs; d++)
                if (doc_is(&sf->docs[d], name))
                        return true;
        return false;
}

const struct spec_file **folder_claims(const struct folder *f, const char *name, size_t *n)
{
        const struct spec_file **out = xcalloc(f->n_files ? f->n_files : 1, sizeof *out);
        *n = 0;
        for (size_t i = 0; i < f->n_files; i++)
                if (file_claims(f->files[i], name))
                        out[(*n)++] = f->files[i];
        return out;
}

static struct spec_file *find_file(const struct folder *f, const char *path, size_t *idx)
{
        for (size_t i = 0; i < f->n_files; i++)
                if (strcmp(f->files[i]->path, path) == 0) {
                        if (idx)
                                *idx = i;
                        return f->files[i];
                }
        return NULL;
}

/* Another sandbox's name declared in sf, or NULL. */
static const char *other_name(const struct spec_file *sf, const char *name)
{
        for (size_t d = 0; d < sf->n_docs; d++)
                if (sf->docs[d].name && strcmp(sf->docs[d].name, name) != 0)
                        return sf->docs[d].name;
        return NULL;
}

/* A file can be edited document by document only when its YAML parsed. */
static int check_editable(const struct spec_file *sf, struct bg_err **err)
{
        if (sf->n_errors)
                return bg_error(err, EINVAL, "%s has YAML errors, so banger will not edit it; fix it first",
                                sf->path);
        return 0;
}

int folder_check_put(const struct folder *f, const char *name, char **target, struct bg_err **err)
{
        size_t n;
        _cleanup_free_ const struct spec_file **claims = folder_claims(f, name, &n);
        if (target)
                *target = NULL;
        if (n) {
                for (size_t i = 0; i < n; i++)
                        if (other_name(claims[i], name) && check_editable(claims[i], err) < 0)
                                return -EINVAL;
                if (target)
                        *target = xstrdup(claims[0]->path);
                return 0;
        }
        _cleanup_free_ char *path = xasprintf("%s/%s.yaml", f->dir, name);
        const struct spec_file *sf = find_file(f, path, NULL);
        const char *other = sf ? other_name(sf, name) : NULL;
        if (other)
                return bg_error(err, EEXIST, "%s declares sandbox \"%s\"; not overwriting it with \"%s\"",
                                path, other, name);
        if (target)
                *target = steal_pointer(&path);
        return 0;
}

static void append(char **buf, size_t *len, const char *s)
{
        size_t n = strlen(s);
        *buf = xrealloc(*buf, *len + n + 2);
        memcpy(*buf + *len, s, n);
        *len += n;
        if (n && s[n - 1] != '\n')
                (*buf)[(*len)++] = '\n';
        (*buf)[*len] = '\0';
}

static bool blank(const char *s)
{
        for (; s && *s; s++)
                if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
                        return false;
        return true;
}

/* sf's documents with name's replaced by raw (first one) or dropped (raw
 * NULL, and every later one).  Returns a heap text; *n_docs how many
 * documents it holds. */
static char *rebuild(const struct spec_file *sf, const char *name, const char *raw, size_t *n_docs)
{
        char *buf = xstrdup("");
        size_t len = 0;
        bool replaced = false;
        *n_docs = 0;
        for (size_t d = 0; d < sf->n_docs; d++) {
                const struct spec_doc *doc = &sf->docs[d];
                const char *text = doc->raw;
                if (doc_is(doc, name)) {
                        if (!raw || replaced)
                                continue;
                        text = raw;
                        replaced = true;
                } else if (!doc->name && blank(text)) {
                        continue;   /* an empty document, e.g. after a trailing "---" */
                }
                if (*n_docs)
                        append(&buf, &len, "---\n");
                append(&buf, &len, text ? text : "");
                (*n_docs)++;
        }
        return buf;
}

/* Re-read path into the folder's view after it changed on disk. */
static void refresh(struct folder *f, const char *path)
{
        size_t idx;
        struct spec_file *old = find_file(f, path, &idx);
        struct spec_file *sf = NULL;
        if (access(path, F_OK) == 0)
                spec_parse_path(path, &sf);
        if (old) {
                spec_file_free(old);
                if (sf) {
                        f->files[idx] = sf;
                } else {
                        memmove(&f->files[idx], &f->files[idx + 1], (f->n_files - idx - 1) * sizeof *f->files);
                        f->n_files--;
                }
        } else if (sf) {
                f->files = xreallocarray(f->files, f->n_files + 1, sizeof *f->files);
                f->files[f->n_files++] = sf;
        }
}

/* Write text to path unless it already holds exactly that. */
static int write_if_changed(struct folder *f, const char *path, const char *text, bool *changed,
                            struct bg_err **err)
{
        char *cur = NULL;
        size_t cur_len = 0;
        size_t len = strlen(text);
        if (read_file_limited(path, SPEC_MAX_FILE_BYTES, &cur, &cur_len, NULL) == 0 && cur_len == len &&
            memcmp(cur, text, len) == 0) {
                free(cur);
                return 0;
        }
        free(cur);
        if (mkdir_p(f->dir, DIR_MODE, err) < 0 || write_file_atomic(path, text, len, FILE_MODE, err) < 0)
                return -EIO;
        *changed = true;
        refresh(f, path);
        return 0;
}

/* Drop name's documents from one file: unlink it when nothing is left. */
static int remove_from(struct folder *f, const char *path, const char *name, bool *changed,
                       struct bg_err **err)
{
        const struct spec_file *sf = find_file(f, path, NULL);
        if (!sf)
                return 0;
        if (!other_name(sf, name)) {
                if (unlink(path) < 0 && errno != ENOENT)
                        return bg_error(err, errno, "remove '%s': %s", path, strerror(errno));
                *changed = true;
                refresh(f, path);
                return 0;
        }
        if (check_editable(sf, err) < 0)
                return -EINVAL;
        size_t n_docs;
        _cleanup_free_ char *text = rebuild(sf, name, NULL, &n_docs);
        return write_if_changed(f, path, text, changed, err);
}

int folder_put(struct folder *f, const char *name, const char *raw, bool *changed, struct bg_err **err)
{
        _cleanup_free_ char *target = NULL;
        *changed = false;
        if (folder_check_put(f, name, &target, err) < 0 || !target)
                return -EINVAL;

        const struct spec_file *sf = find_file(f, target, NULL);
        _cleanup_free_ char *text = NULL;
        if (sf && other_name(sf, name)) {
                size_t n_docs;
                text = rebuild(sf, name, raw, &n_docs);
        } else {
                size_t len = 0;
                text = xstrdup("");
                append(&text, &len, raw);
        }
        if (write_if_changed(f, target, text, changed, err) < 0)
                return -EIO;

        /* Only now drop stale copies elsewhere: a moment with two claims
         * keeps the sandbox as it was, a moment with none would delete it. */
        size_t n;
        _cleanup_free_ const struct spec_file **claims = folder_claims(f, name, &n);
        _cleanup_free_ char **others = xcalloc(n ? n : 1, sizeof *others);
        size_t n_others = 0;
        for (size_t i = 0; i < n; i++)
                if (strcmp(claims[i]->path, target) != 0)
                        others[n_others++] = xstrdup(claims[i]->path);
        int r = 0;
        for (size_t i = 0; i < n_others; i++) {
                if (r == 0 && remove_from(f, others[i], name, changed, err) < 0)
                        r = -EIO;
                free(others[i]);
        }
        return r;
}

int folder_remove(struct folder *f, const char *name, size_t *n_files, struct bg_err **err)
{
        size_t n;
        *n_files = 0;
        const struct spec_file **claims = folder_claims(f, name, &n);
        char **paths = xcalloc(n ? n : 1, sizeof *paths);
        for (size_t i = 0; i < n; i++)
                paths[i] = xstrdup(claims[i]->path);
        free(claims);

        int r = 0;
        for (size_t i = 0; i < n; i++) {
                bool changed = false;
                if (r == 0 && remove_from(f, paths[i], name, &changed, err) < 0)
                        r = -EIO;
                if (changed)
                        (*n_files)++;
                free(paths[i]);
        }
        free(paths);
        return r;
}

bool folder_contains(const struct folder *f, const char *path)
{
        char dir[PATH_MAX], p[PATH_MAX];
        if (!realpath(f->dir, dir))
                return false;
        if (!realpath(path, p)) {
                /* a file that is gone: compare its folder */
                _cleanup_free_ char *copy = xstrdup(path);
                char *slash = strrchr(copy, '/');
                if (!slash)
                        return false;
                *slash = '\0';
                if (!realpath(copy, p))
                        return false;
                return strcmp(p, dir) == 0;
        }
        size_t n = strlen(dir);
        return strncmp(p, dir, n) == 0 && p[n] == '/' && !strchr(p + n + 1, '/');
}
