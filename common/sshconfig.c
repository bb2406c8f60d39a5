/* sshconfig: see sshconfig.h.  The text transforms are pure (and table
 * tested); the file functions add locating, reading, modes and creating
 * or removing what banger made. */
#include "sshconfig.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "sshkey.h"
#include "util.h"

#define MADE_FILE_LINE "# banger created this file; banger ssh-config --uninstall deletes it when nothing else is left"
#define MADE_BOTH_LINE "# banger created this file and ~/.ssh; banger ssh-config --uninstall deletes them when nothing else is left"

char *sshconfig_home(const struct bg_paths *p)
{
        if (p->root)
                return xasprintf("%s/home", p->root);
        const char *h = getenv("HOME");
        if (h && h[0] == '/')
                return xstrdup(h);
        struct passwd *pw = getpwuid(getuid());
        if (pw && pw->pw_dir && pw->pw_dir[0] == '/')
                return xstrdup(pw->pw_dir);
        return xstrdup("/");
}

char *sshconfig_path(const struct bg_paths *p)
{
        return xasprintf("%s/ssh_config", p->config_dir);
}

char *sshconfig_known_hosts(const struct bg_paths *p)
{
        return xasprintf("%s/known_hosts", p->ssh_dir);
}

/* A path as one ssh_config argument: quoted when it holds blanks or '#',
 * '%' doubled where ssh expands tokens.  NULL when it cannot be said. */
static char *config_arg(const char *path, bool tokens, struct bg_err **err)
{
        if (!path || !*path || strpbrk(path, "\"\\\n\r")) {
                bg_error(err, EINVAL, "path '%s' cannot be written in ssh_config", path ? path : "");
                return NULL;
        }
        size_t n = strlen(path), pct = 0;
        for (size_t i = 0; i < n; i++)
                pct += path[i] == '%';
        char *s = xmalloc(n + pct + 3), *o = s;
        bool quote = strpbrk(path, " \t#") != NULL;
        if (quote)
                *o++ = '"';
        for (size_t i = 0; i < n; i++) {
                *o++ = path[i];
                if (tokens && path[i] == '%')
                        *o++ = '%';
        }
        if (quote)
                *o++ = '"';
        *o = '\0';
        return s;
}

char *sshconfig_render(const char *key_path, const char *known_hosts, struct bg_err **err)
{
        _cleanup_free_ char *key = config_arg(key_path, true, err);
        _cleanup_free_ char *kh = key ? config_arg(known_hosts, true, err) : NULL;
        if (!key || !kh)
                return NULL;
        return xasprintf("# banger's SSH settings for sandboxes (ssh NAME.vm); banger rewrites this file.\n"
                         "# Used when ~/.ssh/config includes it: see 'banger ssh-config --help'.\n"
                         "Host *.vm\n"
                         "    User root\n"
                         "    IdentityFile %s\n"
                         "    IdentitiesOnly yes\n"
                         "    UserKnownHostsFile %s\n"
                         /* only banger's pins count, as for `banger vm ssh` */
                         "    GlobalKnownHostsFile /dev/null\n"
                         "    StrictHostKeyChecking yes\n"
                         "    UpdateHostKeys no\n",
                         key, kh);
}

int sshconfig_refresh(const char *path, const char *key_path, const char *known_hosts, bool *changed,
                      struct bg_err **err)
{
        if (changed)
                *changed = false;
        _cleanup_free_ char *want = sshconfig_render(key_path, known_hosts, err);
        if (!want)
                return -EINVAL;
        _cleanup_free_ char *have = NULL;
        size_t len = 0;
        if (read_file_limited(path, SSHCONFIG_MAX_FILE, &have, &len, NULL) == 0 && len == strlen(want) &&
            memcmp(have, want, len) == 0)
                return 0;
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if (mkdir_p(dir, 0700, err) < 0)
                        return bg_error_wrap(err, "ssh_config");
        }
        if (sshkey_write_file(path, want, strlen(want), 0644, true, err) < 0)
                return bg_error_wrap(err, "ssh_config");
        if (changed)
                *changed = true;
        return 0;
}

char *sshconfig_include_line(const char *home, const char *config_path, struct bg_err **err)
{
        /* ssh expands '~' to the passwd entry's home, not $HOME: use the
         * short form only when both mean the same folder. */
        struct passwd *pw = getpwuid(getuid());
        size_t hl = strlen(home);
        const char *shown = config_path;
        _cleanup_free_ char *tilde = NULL;
        if (pw && pw->pw_dir && strcmp(pw->pw_dir, home) == 0 && hl > 1 &&
            strncmp(config_path, home, hl) == 0 && config_path[hl] == '/') {
                tilde = xasprintf("~%s", config_path + hl);
                shown = tilde;
        }
        _cleanup_free_ char *arg = config_arg(shown, false, err);
        if (!arg)
                return NULL;
        return xasprintf("Include %s", arg);
}

/* Line [*ls, *le) of text from off; content end *ce excludes "\n" / "\r\n". */
static bool next_line(const char *text, size_t len, size_t off, size_t *le, size_t *ce)
{
        if (off >= len)
                return false;
        const char *nl = memchr(text + off, '\n', len - off);
        *le = nl ? (size_t)(nl - text) + 1 : len;
        *ce = nl ? (size_t)(nl - text) : len;
        if (*ce > off && text[*ce - 1] == '\r')
                (*ce)--;
        return true;
}

static bool line_is(const char *text, size_t ls, size_t ce, const char *want)
{
        return ce - ls == strlen(want) && memcmp(text + ls, want, ce - ls) == 0;
}

/* The first block at or after from: [*bs, *be) and its made flags.
 * 1 found, 0 none, -EINVAL unterminated. */
static int find_block(const char *text, size_t len, size_t from, size_t *bs, size_t *be, unsigned *made)
{
        size_t off = from, le, ce;
        while (next_line(text, len, off, &le, &ce)) {
                if (!line_is(text, off, ce, SSHCONFIG_BEGIN)) {
                        off = le;
                        continue;
                }
                *bs = off;
                *made = 0;
                off = le;
                while (next_line(text, len, off, &le, &ce)) {
                        if (line_is(text, off, ce, SSHCONFIG_END)) {
                                *be = le;
                                return 1;
                        }
                        if (line_is(text, off, ce, MADE_FILE_LINE))
                                *made |= SSHCONFIG_MADE_FILE;
                        else if (line_is(text, off, ce, MADE_BOTH_LINE))
                                *made |= SSHCONFIG_MADE_FILE | SSHCONFIG_MADE_DIR;
                        off = le;
                }
                return -EINVAL;
        }
        return 0;
}

static char *render_block(const char *include, unsigned made)
{
        const char *note = (made & SSHCONFIG_MADE_DIR) ? MADE_BOTH_LINE "\n"
                         : (made & SSHCONFIG_MADE_FILE) ? MADE_FILE_LINE "\n" : "";
        return xasprintf(SSHCONFIG_BEGIN "\n%s%s\n" SSHCONFIG_END "\n", note, include);
}

int sshconfig_text_install(const char *text, size_t len, const char *include, unsigned made, char **out,
                           size_t *outlen, bool *changed, struct bg_err **err)
{
        if (strchr(include, '\n'))
                return bg_error(err, EINVAL, "include line holds a newline");
        size_t bs = 0, be = 0;
        unsigned had = 0;
        int r = find_block(text, len, 0, &bs, &be, &had);
        if (r < 0)
                return bg_error(err, EINVAL, "'%s' without '%s': fix the file by hand", SSHCONFIG_BEGIN,
                                SSHCONFIG_END);
        if (r == 0)
                bs = be = 0;   /* a new block goes at the very top */
        _cleanup_free_ char *block = render_block(include, r ? had : made);
        size_t bl = strlen(block);
        char *o = xmalloc(len - (be - bs) + bl + 1);
        memcpy(o, text, bs);
        memcpy(o + bs, block, bl);
        memcpy(o + bs + bl, text + be, len - be);
        *outlen = len - (be - bs) + bl;
        o[*outlen] = '\0';
        *changed = *outlen != len || memcmp(o, text, len) != 0;
        *out = o;
        return 0;
}

int sshconfig_text_uninstall(const char *text, size_t len, char **out, size_t *outlen, unsigned *made,
                             bool *found, struct bg_err **err)
{
        char *o = xmalloc(len + 1);
        size_t n = 0, off = 0, bs, be;
        unsigned m;
        int r;
        *made = 0;
        *found = false;
        while ((r = find_block(text, len, off, &bs, &be, &m)) > 0) {
                memcpy(o + n, text + off, bs - off);
                n += bs - off;
                off = be;
                *made |= m;
                *found = true;
        }
        if (r < 0) {
                free(o);
                return bg_error(err, EINVAL, "'%s' without '%s': fix the file by hand", SSHCONFIG_BEGIN,
                                SSHCONFIG_END);
        }
        memcpy(o + n, text + off, len - off);
        n += len - off;
        o[n] = '\0';
        *out = o;
        *outlen = n;
        return 0;
}

/* home/.ssh/config, and where to write it (a symlink's target). */
struct target {
        char *dir;       /* home/.ssh */
        char *path;      /* home/.ssh/config */
        char *real;      /* what to read and write */
        bool exists, symlink;
        mode_t mode;
};

static void target_release(struct target *t)
{
        free(t->dir);
        free(t->path);
        free(t->real);
}

static int target_open(const char *home, struct target *t, struct bg_err **err)
{
        struct stat st;
        memset(t, 0, sizeof *t);
        t->dir = xasprintf("%s/.ssh", home);
        t->path = xasprintf("%s/config", t->dir);
        t->mode = 0600;
        if (lstat(t->path, &st) < 0) {
                if (errno != ENOENT)
                        return bg_error(err, errno, "'%s': %s", t->path, strerror(errno));
                t->real = xstrdup(t->path);
                return 0;
        }
        t->exists = true;
        t->symlink = S_ISLNK(st.st_mode);
        if (t->symlink) {
                char buf[PATH_MAX];
                if (!realpath(t->path, buf) || stat(buf, &st) < 0)
                        return bg_error(err, errno, "'%s' is a symlink to nowhere usable: %s", t->path,
                                        strerror(errno));
                t->real = xstrdup(buf);
        } else {
                t->real = xstrdup(t->path);
        }
        if (!S_ISREG(st.st_mode))
                return bg_error(err, EINVAL, "'%s' is not a regular file", t->path);
        t->mode = st.st_mode & 07777;
        return 0;
}

int sshconfig_install(const char *home, const char *include, bool *changed, struct bg_err **err)
{
        struct target t;
        char *text = NULL, *out = NULL;
        size_t len = 0, outlen = 0;
        unsigned made = 0;
        int rc;
        struct stat st;

        *changed = false;
        if ((rc = target_open(home, &t, err)) < 0)
                goto done;
        if (t.exists) {
                if ((rc = read_file_limited(t.real, SSHCONFIG_MAX_FILE, &text, &len, err)) < 0)
                        goto done;
        } else {
                text = xstrdup("");
                made = SSHCONFIG_MADE_FILE;
                if (lstat(t.dir, &st) < 0 && errno == ENOENT)
                        made |= SSHCONFIG_MADE_DIR;
                if ((rc = mkdir_p(t.dir, 0700, err)) < 0)
                        goto done;
        }
        if ((rc = sshconfig_text_install(text, len, include, made, &out, &outlen, changed, err)) < 0)
                goto done;
        /* A new file never replaces one that appeared meanwhile. */
        if (*changed)
                rc = sshkey_write_file(t.real, out, outlen, t.mode, t.exists, err);
done:
        if (rc < 0)
                bg_error_wrap(err, "install into '%s'", t.path);
        free(text);
        free(out);
        target_release(&t);
        return rc;
}

int sshconfig_uninstall(const char *home, bool *changed, struct bg_err **err)
{
        struct target t;
        char *text = NULL, *out = NULL;
        size_t len = 0, outlen = 0;
        unsigned made = 0;
        bool found = false;
        int rc;

        *changed = false;
        if ((rc = target_open(home, &t, err)) < 0 || !t.exists)
                goto done;
        if ((rc = read_file_limited(t.real, SSHCONFIG_MAX_FILE, &text, &len, err)) < 0)
                goto done;
        if ((rc = sshconfig_text_uninstall(text, len, &out, &outlen, &made, &found, err)) < 0 || !found)
                goto done;
        *changed = true;
        if ((made & SSHCONFIG_MADE_FILE) && outlen == 0 && !t.symlink) {
                if (unlink(t.path) < 0 && errno != ENOENT) {
                        rc = bg_error(err, errno, "remove '%s': %s", t.path, strerror(errno));
                        goto done;
                }
                if (made & SSHCONFIG_MADE_DIR)
                        (void)rmdir(t.dir);   /* only when empty: never loses a file */
                goto done;
        }
        rc = sshkey_write_file(t.real, out, outlen, t.mode, true, err);
done:
        if (rc < 0)
                bg_error_wrap(err, "uninstall from '%s'", t.path);
        free(text);
        free(out);
        target_release(&t);
        return rc;
}
