/* known_hosts: see known_hosts.h.  Every operation is "lock, read, split
 * into lines, rebuild, write if different"; the rebuild is the only part
 * that differs between set, remove, gc and sync. */
#include "known_hosts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "err.h"
#include "sshkey.h"
#include "strmap.h"
#include "util.h"

#define MARK "banger:"
#define ID_LEN 16

struct sb {
        char *p;
        size_t n, cap;
};

static void sb_put(struct sb *b, const char *d, size_t n)
{
        if (b->n + n + 1 > b->cap) {
                b->cap = (b->n + n + 1) * 2;
                b->p = xrealloc(b->p, b->cap);
        }
        memcpy(b->p + b->n, d, n);
        b->n += n;
        b->p[b->n] = '\0';
}

/* Terminate the last line before appending one after it. */
static void sb_line(struct sb *b, const char *line)
{
        if (b->n && b->p[b->n - 1] != '\n')
                sb_put(b, "\n", 1);
        sb_put(b, line, strlen(line));
        sb_put(b, "\n", 1);
}

struct line {
        const char *p;
        size_t len;            /* with its newline, if any */
        char id[ID_LEN + 1];   /* owner, "" for a foreign line */
        const char *pat;       /* first field (patterns) of a banger line */
        size_t patlen;
};

static bool id_valid(const char *s, size_t n)
{
        if (n != ID_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool is_ws(char c)
{
        return c == ' ' || c == '\t';
}

/* Fill l->id and the pattern field when the line carries banger's mark as
 * its last of at least four fields. */
static void classify(struct line *l)
{
        const char *s = l->p, *e = l->p + l->len;
        l->id[0] = '\0';
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || is_ws(e[-1])))
                e--;
        while (s < e && is_ws(*s))
                s++;
        if (s == e || *s == '#')
                return;
        size_t fields = 0;
        const char *last = NULL;
        for (const char *q = s; q < e;) {
                while (q < e && is_ws(*q))
                        q++;
                if (q == e)
                        break;
                last = q;
                fields++;
                while (q < e && !is_ws(*q))
                        q++;
        }
        size_t ml = strlen(MARK);
        if (fields < 4 || (size_t)(e - last) != ml + ID_LEN || memcmp(last, MARK, ml) != 0 ||
            !id_valid(last + ml, ID_LEN))
                return;
        memcpy(l->id, last + ml, ID_LEN);
        l->id[ID_LEN] = '\0';
        l->pat = s;
        l->patlen = strcspn(s, " \t");
}

static struct line *split(const char *text, size_t len, size_t *n)
{
        struct line *v = xcalloc(1, sizeof *v);   /* never NULL, even for an empty file */
        size_t cnt = 0;
        for (size_t off = 0; off < len;) {
                const char *nl = memchr(text + off, '\n', len - off);
                size_t l = nl ? (size_t)(nl - (text + off)) + 1 : len - off;
                v = xreallocarray(v, cnt + 1, sizeof *v);
                v[cnt] = (struct line){ .p = text + off, .len = l };
                classify(&v[cnt]);
                cnt++;
                off += l;
        }
        *n = cnt;
        return v;
}

static bool label_valid(const char *s)
{
        size_t n = strlen(s);
        if (n < 1 || n > 63 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static bool ip_valid(const char *s)
{
        unsigned char a[16];
        return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

char *kh_format(const struct kh_entry *e, struct bg_err **err)
{
        if (!e->id || !id_valid(e->id, strlen(e->id))) {
                bg_error(err, EINVAL, "known_hosts entry: bad id '%s'", e->id ? e->id : "");
                return NULL;
        }
        if (!e->name || !label_valid(e->name)) {
                bg_error(err, EINVAL, "known_hosts entry %s: bad name '%s'", e->id, e->name ? e->name : "");
                return NULL;
        }
        if (e->ip && !ip_valid(e->ip)) {
                bg_error(err, EINVAL, "known_hosts entry %s: bad address '%s'", e->id, e->ip);
                return NULL;
        }
        /* "TYPE BASE64": a type token and base64, nothing that could smuggle
         * in a second line, a pattern or an option. */
        const char *k = e->pubkey ? e->pubkey : "";
        size_t tl = strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@.-");
        size_t sp = strspn(k + tl, " \t");
        size_t bl = strspn(k + tl + sp,
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
        char after = k[tl + sp + bl];
        if (!tl || tl > 64 || !sp || bl < 16 || bl > 16384 || (after && !is_ws(after))) {
                bg_error(err, EINVAL, "known_hosts entry %s: bad public key", e->id);
                return NULL;
        }
        if (e->ip)
                return xasprintf("%s.vm,%s %.*s %.*s " MARK "%s", e->name, e->ip, (int)tl, k, (int)bl,
                                 k + tl + sp, e->id);
        return xasprintf("%s.vm %.*s %.*s " MARK "%s", e->name, (int)tl, k, (int)bl, k + tl + sp, e->id);
}

/* Does the comma-separated pattern list pat hold exactly host? */
static bool pat_has(const char *pat, size_t patlen, const char *host)
{
        size_t hl = strlen(host);
        for (size_t i = 0; i < patlen;) {
                size_t j = i;
                while (j < patlen && pat[j] != ',')
                        j++;
                if (j - i == hl && memcmp(pat + i, host, hl) == 0)
                        return true;
                i = j + 1;
        }
        return false;
}

int kh_lookup(const char *path, const char *host, char **keytype, char **key_b64, struct bg_err **err)
{
        char *text = NULL;
        size_t len = 0;
        *keytype = *key_b64 = NULL;
        if (access(path, F_OK) < 0 && errno == ENOENT)
                return -ENOENT;
        if (read_file_limited(path, KH_MAX_FILE, &text, &len, err) < 0)
                return -EIO;
        size_t n = 0;
        struct line *v = split(text, len, &n);
        int rc = -ENOENT;
        for (size_t i = 0; i < n && rc == -ENOENT; i++) {
                if (!v[i].id[0] || !pat_has(v[i].pat, v[i].patlen, host))
                        continue;
                const char *t = v[i].pat + v[i].patlen;
                t += strspn(t, " \t");
                size_t tl = strcspn(t, " \t\n");
                const char *k = t + tl;
                k += strspn(k, " \t");
                size_t kl = strcspn(k, " \t\n");
                *keytype = xstrndup(t, tl);
                *key_b64 = xstrndup(k, kl);
                rc = 0;
        }
        free(v);
        free(text);
        return rc;
}

enum op { OP_SET, OP_REMOVE, OP_GC, OP_SYNC };

struct edit {
        enum op op;
        const struct kh_entry *entry;   /* SET */
        const char *line;               /* SET: the formatted line */
        const char *vmname;             /* SET: "NAME.vm" */
        const char *id;                 /* REMOVE */
        struct strmap *keep;            /* GC: ids to keep */
        char **lines;                   /* SYNC: formatted lines */
        size_t nlines;
        size_t removed;
};

static void rebuild(struct edit *ed, struct line *v, size_t n, struct sb *out)
{
        bool placed = false;
        for (size_t i = 0; i < n; i++) {
                struct line *l = &v[i];
                bool drop = false;
                if (l->id[0]) {
                        switch (ed->op) {
                        case OP_SET:
                                if (strcmp(l->id, ed->entry->id) == 0) {
                                        if (!placed)
                                                sb_line(out, ed->line);
                                        placed = true;
                                        continue;
                                }
                                drop = pat_has(l->pat, l->patlen, ed->vmname) ||
                                       (ed->entry->ip && pat_has(l->pat, l->patlen, ed->entry->ip));
                                break;
                        case OP_REMOVE:
                                drop = strcmp(l->id, ed->id) == 0;
                                break;
                        case OP_GC:
                                drop = !strmap_get(ed->keep, l->id);
                                break;
                        case OP_SYNC:
                                drop = true;
                                break;
                        }
                }
                if (drop) {
                        ed->removed++;
                        continue;
                }
                sb_put(out, l->p, l->len);
        }
        if (ed->op == OP_SET && !placed)
                sb_line(out, ed->line);
        for (size_t i = 0; ed->op == OP_SYNC && i < ed->nlines; i++)
                sb_line(out, ed->lines[i]);
}

static int edit_file(const char *path, struct edit *ed, struct bg_err **err)
{
        _cleanup_free_ char *lockpath = xasprintf("%s.lock", path);
        _cleanup_close_ int lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lfd < 0 && errno == ENOENT) {
                /* No folder yet: nothing to remove, or make it (0700) to add. */
                if (ed->op == OP_REMOVE || ed->op == OP_GC)
                        return 0;
                _cleanup_free_ char *dir = xstrdup(path);
                char *slash = strrchr(dir, '/');
                if (slash && slash != dir) {
                        *slash = '\0';
                        if (mkdir_p(dir, 0700, err) < 0)
                                return bg_error_wrap(err, "known_hosts");
                }
                lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        }
        if (lfd < 0)
                return bg_error(err, errno, "known_hosts lock '%s': %s", lockpath, strerror(errno));
        while (flock(lfd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return bg_error(err, errno, "lock '%s': %s", lockpath, strerror(errno));

        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        bool existed = true;
        struct bg_err *e = NULL;
        if (read_file_limited(path, KH_MAX_FILE, &text, &len, &e) < 0) {
                if (e->code != ENOENT) {
                        int rc = -e->code;
                        if (err && !*err) {
                                *err = e;
                                bg_error_wrap(err, "known_hosts");
                        } else {
                                bg_err_free(e);
                        }
                        return rc;
                }
                bg_err_free(e);
                existed = false;
                text = xstrdup("");
        }
        size_t n = 0;
        _cleanup_free_ struct line *v = split(text, len, &n);
        struct sb out = { 0 };
        sb_put(&out, "", 0);
        rebuild(ed, v, n, &out);
        int rc = 0;
        if (out.n == len && memcmp(out.p, text, len) == 0)
                ;   /* unchanged: no write, no mtime churn */
        else if (!existed && out.n == 0)
                ;   /* a missing file stays missing */
        else if (sshkey_write_file(path, out.p, out.n, 0600, true, err) < 0)
                rc = bg_error_wrap(err, "known_hosts");
        free(out.p);
        return rc;   /* the flock goes with lfd */
}

int kh_set(const char *path, const struct kh_entry *e, struct bg_err **err)
{
        _cleanup_free_ char *line = kh_format(e, err);
        if (!line)
                return -EINVAL;
        _cleanup_free_ char *vmname = xasprintf("%s.vm", e->name);
        struct edit ed = { .op = OP_SET, .entry = e, .line = line, .vmname = vmname };
        return edit_file(path, &ed, err);
}

int kh_remove(const char *path, const char *id, struct bg_err **err)
{
        if (!id || !id_valid(id, strlen(id)))
                return bg_error(err, EINVAL, "known_hosts: bad id '%s'", id ? id : "");
        struct edit ed = { .op = OP_REMOVE, .id = id };
        return edit_file(path, &ed, err);
}

int kh_gc(const char *path, const char *const *ids, size_t n, size_t *removed, struct bg_err **err)
{
        struct edit ed = { .op = OP_GC, .keep = strmap_new() };
        for (size_t i = 0; i < n; i++)
                strmap_put(ed.keep, ids[i], (void *)1);
        int rc = edit_file(path, &ed, err);
        strmap_free(ed.keep);
        if (removed)
                *removed = rc < 0 ? 0 : ed.removed;
        return rc;
}

int kh_sync(const char *path, const struct kh_entry *entries, size_t n, struct bg_err **err)
{
        struct edit ed = { .op = OP_SYNC, .lines = xcalloc(n ? n : 1, sizeof(char *)) };
        struct strmap *seen = strmap_new();
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
                char *l = kh_format(&entries[i], err);
                if (!l)
                        rc = -EINVAL;
                else if (strmap_get(seen, entries[i].id))
                        free(l);   /* one line per sandbox: the first entry wins */
                else {
                        strmap_put(seen, entries[i].id, (void *)1);
                        ed.lines[ed.nlines++] = l;
                }
        }
        if (rc == 0)
                rc = edit_file(path, &ed, err);
        for (size_t i = 0; i < ed.nlines; i++)
                free(ed.lines[i]);
        free(ed.lines);
        strmap_free(seen);
        return rc;
}
