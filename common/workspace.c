/* workspace: see workspace.h.
 *
 * The list comes from libgit2 (the index for tracked files, git_status for
 * untracked ones) and then from lstat: git decides which paths go, the disk
 * decides what they are now.  The copy writes only through directory fds
 * (mkdirat/openat/symlinkat with O_NOFOLLOW) because bangerd runs it with a
 * switched fsuid that may have no search permission on the destination's
 * ancestors, and so that nothing in the source tree (a symlink, a path from
 * a crafted index) can make it write outside NAME.  Sources are read by
 * absolute path: the caller's identity is the folder owner, who may read
 * them anyway.
 *
 * libgit2 is initialised on first use, once, so no caller has to know this
 * module uses it. */
#include "workspace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "err.h"
#include "util.h"

/* ---- libgit2 plumbing ---- */

static const char *lg2_msg(void)
{
        const git_error *e = git_error_last();
        return e && e->message ? e->message : "unknown libgit2 error";
}

static int lg2_state;
static pthread_once_t lg2_once = PTHREAD_ONCE_INIT;

/* One reference for the life of the process: the options below are global
 * and a refcount that drops to zero (git_libgit2_shutdown) resets them.
 *
 * - No system, XDG or global config: the daemon's HOME is root's, not the
 *   user's (and under a switched fsuid libgit2 fails hard on an unreadable
 *   /root/.gitconfig), so reading only the repository's own config and
 *   ignore files is what keeps the CLI's list equal to the daemon's.
 * - No ownership check: bangerd opens user repositories with euid 0 and a
 *   switched fsuid, which libgit2 1.5 reports as a baffling ENOTFOUND
 *   ("config value 'safe.directory' was not found").  The check guards git
 *   against running a stranger's hooks and fsmonitor; libgit2 runs
 *   neither, and the caller decides whose folder it reads. */
static void lg2_setup(void)
{
        lg2_state = git_libgit2_init();
        if (lg2_state < 0)
                return;
        for (int lv = GIT_CONFIG_LEVEL_PROGRAMDATA; lv <= GIT_CONFIG_LEVEL_GLOBAL; lv++)
                if (git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, lv, "") < 0)
                        lg2_state = -1;
        if (git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0) < 0)
                lg2_state = -1;
}

static int lg2_ready(struct bg_err **err)
{
        pthread_once(&lg2_once, lg2_setup);
        if (lg2_state < 0)
                return bg_error(err, EIO, "workspace: libgit2 init: %s", lg2_msg());
        return 0;
}

static void repo_freep(git_repository **r) { git_repository_free(*r); }
static void index_freep(git_index **i) { git_index_free(*i); }
static void status_freep(git_status_list **s) { git_status_list_free(*s); }
static void object_freep(git_object **o) { git_object_free(*o); }
static void ref_freep(git_reference **r) { git_reference_free(*r); }

/* ---- the list ---- */

/* The index and git_status are trusted to hold working-tree paths, but a
 * crafted index could name "../x", "/etc/x" or ".git/config": any of those
 * would make the copy read or write outside the folders it owns. */
static bool path_is_safe(const char *p)
{
        if (!*p || *p == '/')
                return false;
        for (const char *s = p; *s;) {
                size_t len = strcspn(s, "/");
                if (len == 0 || (len == 1 && s[0] == '.') ||
                    (len == 2 && s[0] == '.' && s[1] == '.') ||
                    (len == 4 && !strncasecmp(s, ".git", 4)))
                        return false;
                s += len;
                if (*s == '/' && !*++s)
                        return false;   /* trailing '/' */
        }
        return true;
}

struct lister {
        struct ws_list *out;
        size_t cap;
        char *good_dir;   /* last parent folder checked to be a real folder */
};

/* git never follows a symlink inside the working tree: once a/ is a symlink,
 * the tracked a/b is gone for git, and reading through it would copy files
 * from outside the tree.  Sets *ok when every leading component of path is
 * a real folder; the last good folder is cached since the index is sorted. */
static int parents_are_dirs(struct lister *ls, const char *path, bool *ok, struct bg_err **err)
{
        const char *slash = strrchr(path, '/');
        *ok = true;
        if (!slash)
                return 0;
        _cleanup_free_ char *dir = xstrndup(path, (size_t)(slash - path));
        if (ls->good_dir && !strcmp(ls->good_dir, dir))
                return 0;
        for (char *s = dir;; s++) {
                if (*s && *s != '/')
                        continue;
                char c = *s;
                *s = '\0';
                _cleanup_free_ char *full = xasprintf("%s/%s", ls->out->workdir, dir);
                struct stat st;
                if (lstat(full, &st) < 0) {
                        if (errno != ENOENT && errno != ENOTDIR)
                                return bg_error(err, errno, "workspace '%s': stat '%s': %s",
                                                ls->out->workdir, dir, strerror(errno));
                        *ok = false;
                        return 0;
                }
                if (!S_ISDIR(st.st_mode)) {
                        *ok = false;
                        return 0;
                }
                *s = c;
                if (!c)
                        break;
        }
        free(ls->good_dir);
        ls->good_dir = steal_pointer(&dir);
        return 0;
}

/* Add path as it is on disk now; anything but a regular file or a symlink
 * (gone, a folder, a fifo) is not part of the workspace and is skipped. */
static int add_file(struct lister *ls, const char *path, bool untracked, struct bg_err **err)
{
        if (!path_is_safe(path))
                return bg_error(err, EINVAL, "workspace '%s': unsafe path '%s' in the repository",
                                ls->out->workdir, path);
        bool ok;
        int r = parents_are_dirs(ls, path, &ok, err);
        if (r < 0 || !ok)
                return r;
        _cleanup_free_ char *full = xasprintf("%s/%s", ls->out->workdir, path);
        struct stat st;
        if (lstat(full, &st) < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                return bg_error(err, errno, "workspace '%s': stat '%s': %s",
                                ls->out->workdir, path, strerror(errno));
        }
        if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
                return 0;
        struct ws_list *l = ls->out;
        if (l->n == ls->cap) {
                ls->cap = ls->cap ? 2 * ls->cap : 64;
                l->files = xreallocarray(l->files, ls->cap, sizeof *l->files);
        }
        struct ws_file *f = &l->files[l->n++];
        f->path = xstrdup(path);
        f->untracked = untracked;
        if (S_ISLNK(st.st_mode)) {
                f->mode = S_IFLNK;
                f->size = 0;
        } else {
                f->mode = S_IFREG | ((st.st_mode & 0111) ? 0755 : 0644);
                f->size = (uint64_t)st.st_size;
        }
        return 0;
}

static int add_tracked(struct lister *ls, git_repository *repo, struct bg_err **err)
{
        _cleanup_(index_freep) git_index *idx = NULL;
        if (git_repository_index(&idx, repo) < 0)
                return bg_error(err, EIO, "workspace '%s': read index: %s", ls->out->workdir, lg2_msg());
        const char *prev = NULL;
        size_t n = git_index_entrycount(idx);
        for (size_t i = 0; i < n; i++) {
                const git_index_entry *e = git_index_get_byindex(idx, i);
                /* A conflicted path has one entry per stage, in a row. */
                if (prev && !strcmp(prev, e->path))
                        continue;
                prev = e->path;
                if (e->mode == GIT_FILEMODE_COMMIT)   /* submodule */
                        continue;
                int r = add_file(ls, e->path, false, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_untracked(struct lister *ls, git_repository *repo, struct bg_err **err)
{
        /* The _INIT macros trip -Wmissing-field-initializers: use the
         * init functions. */
        git_status_options so;
        git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
        so.show = GIT_STATUS_SHOW_WORKDIR_ONLY;
        so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
                   GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
        _cleanup_(status_freep) git_status_list *sl = NULL;
        if (git_status_list_new(&sl, repo, &so) < 0)
                return bg_error(err, EIO, "workspace '%s': status: %s", ls->out->workdir, lg2_msg());
        size_t n = git_status_list_entrycount(sl);
        for (size_t i = 0; i < n; i++) {
                const git_status_entry *e = git_status_byindex(sl, i);
                if (!(e->status & GIT_STATUS_WT_NEW) || !e->index_to_workdir)
                        continue;
                const char *p = e->index_to_workdir->new_file.path;
                /* An untracked nested repository shows as "dir/": it is not
                 * a file of this one. */
                if (str_has_suffix(p, "/"))
                        continue;
                int r = add_file(ls, p, true, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int cmp_file(const void *a, const void *b)
{
        return strcmp(((const struct ws_file *)a)->path, ((const struct ws_file *)b)->path);
}

/* A path is in the list once, tracked if any source says so. */
static void sort_and_dedupe(struct ws_list *l)
{
        if (l->n)
                qsort(l->files, l->n, sizeof *l->files, cmp_file);
        size_t w = 0;
        for (size_t r = 0; r < l->n; r++) {
                if (w && !strcmp(l->files[w - 1].path, l->files[r].path)) {
                        l->files[w - 1].untracked &= l->files[r].untracked;
                        free(l->files[r].path);
                        continue;
                }
                l->files[w++] = l->files[r];
        }
        l->n = w;
        l->bytes = 0;
        for (size_t i = 0; i < l->n; i++)
                l->bytes += l->files[i].size;
}

/* Bytes of the regular files under the folder dirfd (closed here); symlinks
 * are not followed, so a link out of .git is not counted. */
static int tree_size(int dirfd, const char *shown, uint64_t *sum, struct bg_err **err)
{
        DIR *d = fdopendir(dirfd);
        if (!d) {
                int e = errno;
                close(dirfd);
                return bg_error(err, e, "workspace: read '%s': %s", shown, strerror(e));
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;   /* gone meanwhile (a lock file) */
                if (S_ISREG(st.st_mode))
                        *sum += (uint64_t)st.st_size;
                if (!S_ISDIR(st.st_mode))
                        continue;
                int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        continue;
                _cleanup_free_ char *child = xasprintf("%s/%s", shown, de->d_name);
                r = tree_size(sub, child, sum, err);
        }
        closedir(d);
        return r;
}

/* Open the repository holding path and check it has the one layout the
 * copy understands: a working tree with a .git folder in it. */
static int open_workspace_repo(const char *path, git_repository **repo, struct bg_err **err)
{
        int r = git_repository_open_ext(repo, path, 0, NULL);
        if (r == GIT_ENOTFOUND)
                return bg_error(err, EINVAL, "workspace '%s': not a git repository", path);
        if (r < 0)
                return bg_error(err, EIO, "workspace '%s': %s", path, lg2_msg());
        if (git_repository_is_bare(*repo))
                return bg_error(err, EINVAL, "workspace '%s': bare repository (no working tree): not supported", path);
        const char *wd = git_repository_workdir(*repo);
        _cleanup_free_ char *dotgit = xasprintf("%s.git", wd);
        _cleanup_free_ char *want = xasprintf("%s.git/", wd);
        struct stat st;
        if (lstat(dotgit, &st) == 0 && S_ISREG(st.st_mode))
                return bg_error(err, ENOTSUP,
                                "workspace '%s': .git is a file (linked worktree or submodule): not supported", path);
        if (lstat(dotgit, &st) < 0 || !S_ISDIR(st.st_mode) || strcmp(git_repository_path(*repo), want))
                return bg_error(err, ENOTSUP,
                                "workspace '%s': the repository is not a .git folder in the working tree: not supported",
                                path);
        return 0;
}

static int list_repo(const char *path, git_repository *repo, bool include_untracked,
                     struct ws_list *out, struct bg_err **err)
{
        out->workdir = xstrdup(git_repository_workdir(repo));
        size_t len = strlen(out->workdir);
        while (len > 1 && out->workdir[len - 1] == '/')
                out->workdir[--len] = '\0';
        const char *base = strrchr(out->workdir, '/');
        out->name = xstrdup(base ? base + 1 : out->workdir);
        if (!*out->name || !strcmp(out->name, ".."))
                return bg_error(err, EINVAL, "workspace '%s': working tree '%s' has no folder name",
                                path, out->workdir);

        struct lister ls = { .out = out };
        int r = add_tracked(&ls, repo, err);
        if (r == 0 && include_untracked)
                r = add_untracked(&ls, repo, err);
        free(ls.good_dir);
        if (r < 0)
                return r;
        sort_and_dedupe(out);

        _cleanup_free_ char *dotgit = xasprintf("%s/.git", out->workdir);
        int fd = open(dotgit, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return bg_error(err, errno, "workspace: open '%s': %s", dotgit, strerror(errno));
        return tree_size(fd, dotgit, &out->git_bytes, err);
}

int workspace_list(const char *path, bool include_untracked, struct ws_list *out, struct bg_err **err)
{
        memset(out, 0, sizeof *out);
        struct stat st;
        if (stat(path, &st) < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return bg_error(err, ENOENT, "workspace '%s': no such file or directory", path);
                return bg_error(err, errno, "workspace '%s': %s", path, strerror(errno));
        }
        int r = lg2_ready(err);
        if (r < 0)
                return r;
        _cleanup_(repo_freep) git_repository *repo = NULL;
        r = open_workspace_repo(path, &repo, err);
        if (r == 0)
                r = list_repo(path, repo, include_untracked, out, err);
        if (r < 0)
                ws_list_release(out);
        return r;
}

/* ---- the copy ---- */

static int write_all(int fd, const char *buf, size_t len)
{
        while (len) {
                ssize_t w = write(fd, buf, len);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                buf += w;
                len -= (size_t)w;
        }
        return 0;
}

/* Copy the rest of in to out: copy_file_range where the kernel can (same
 * file system: reflinks or an in-kernel copy), read/write where it cannot.
 * Both continue from the current offsets, so falling back midway is safe.
 * Returns 0 or -errno. */
static int copy_data(int in, int out)
{
        _cleanup_free_ char *buf = NULL;
        const size_t bufsz = 64 * 1024;
        for (;;) {
                ssize_t n;
                if (!buf) {
                        n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
                        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
                                buf = xmalloc(bufsz);
                                continue;
                        }
                } else {
                        n = read(in, buf, bufsz);
                        if (n > 0) {
                                int r = write_all(out, buf, (size_t)n);
                                if (r < 0)
                                        return r;
                        }
                }
                if (n == 0)
                        return 0;
                if (n < 0 && errno != EINTR)
                        return -errno;
        }
}

/* Create base in dir from the open regular file src, then give it mode:
 * created 0600 and chmod'ed at the end, so a read-only mode (git objects
 * are 0444) does not stop the write and the umask does not change it. */
static int copy_regular(int src, int dir, const char *base, mode_t mode, const char *shown, struct bg_err **err)
{
        _cleanup_close_ int out = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return bg_error(err, errno, "workspace copy '%s': create: %s", shown, strerror(errno));
        int r = copy_data(src, out);
        if (r < 0)
                return bg_error(err, -r, "workspace copy '%s': %s", shown, strerror(-r));
        if (fchmod(out, mode & 0777) < 0)
                return bg_error(err, errno, "workspace copy '%s': chmod: %s", shown, strerror(errno));
        return 0;
}

/* The error for a source that is not what the list or the walk saw. */
static int source_error(int code, const char *what, const char *shown, struct bg_err **err)
{
        if (code == ENOENT || code == ENOTDIR)
                return bg_error(err, ENOENT, "workspace copy '%s': vanished since it was listed", shown);
        if (code == ELOOP || code == EINVAL || code == EISDIR)
                return bg_error(err, EAGAIN, "workspace copy '%s': changed type since it was listed", shown);
        return bg_error(err, code, "workspace copy '%s': %s: %s", shown, what, strerror(code));
}

/* Open a source that must still be a regular file: fd or -errno, -ELOOP
 * when it is something else now.  O_NONBLOCK so a file replaced by a fifo
 * fails the type check instead of hanging the open. */
static int open_regular(int dirfd, const char *name)
{
        int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        int e = fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : ELOOP;
        if (e) {
                close(fd);
                return -e;
        }
        return fd;
}

/* A symlink's target into buf (PATH_MAX + 1 bytes): 0 or -errno. */
static int read_link(int dirfd, const char *name, char *buf)
{
        ssize_t n = readlinkat(dirfd, name, buf, PATH_MAX + 1);
        if (n < 0)
                return -errno;
        if (n > PATH_MAX)
                return -ENAMETOOLONG;
        buf[n] = '\0';
        return 0;
}

static int make_symlink(const char *target, int dir, const char *base, const char *shown, struct bg_err **err)
{
        if (symlinkat(target, dir, base) < 0)
                return bg_error(err, errno, "workspace copy '%s': symlink: %s", shown, strerror(errno));
        return 0;
}

/* mkdirat + open, refusing to go through anything but a real folder, so a
 * symlink already in the copy can never redirect a write.  A folder this
 * call creates gets exactly mode (no umask); an existing one is kept. */
static int make_dir_at(int dir, const char *name, mode_t mode, const char *shown, int *fd, struct bg_err **err)
{
        *fd = -1;
        bool created = mkdirat(dir, name, 0700) == 0;
        if (!created && errno != EEXIST)
                return bg_error(err, errno, "workspace copy '%s': mkdir: %s", shown, strerror(errno));
        int d = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (d < 0)
                return bg_error(err, ENOTDIR, "workspace copy '%s': not a folder in the copy", shown);
        if (created && fchmod(d, mode) < 0) {
                int e = errno;
                close(d);
                return bg_error(err, e, "workspace copy '%s': chmod: %s", shown, strerror(e));
        }
        *fd = d;
        return 0;
}

/* The folder of the last listed file: the list is sorted, so files of one
 * folder mostly come in a row and share one open. */
struct dest_dir {
        char *rel;
        int fd;
};

static void dest_dir_release(struct dest_dir *d)
{
        free(d->rel);
        if (d->fd >= 0)
                close(d->fd);
        d->rel = NULL;
        d->fd = -1;
}

/* Return in *fd the folder (under root, created as needed) that will hold
 * path; *fd is root or d->fd, owned by the caller. */
static int dest_parent(int root, const char *path, struct dest_dir *d, int *fd, struct bg_err **err)
{
        const char *slash = strrchr(path, '/');
        *fd = root;
        if (!slash)
                return 0;
        size_t len = (size_t)(slash - path);
        if (d->rel && strlen(d->rel) == len && !strncmp(d->rel, path, len)) {
                *fd = d->fd;
                return 0;
        }
        dest_dir_release(d);
        _cleanup_free_ char *rel = xstrndup(path, len);
        int cur = root;
        for (char *s = rel, *comp = rel;; s++) {
                if (*s && *s != '/')
                        continue;
                char c = *s;
                *s = '\0';
                int next;
                int r = make_dir_at(cur, comp, 0755, rel, &next, err);
                if (cur != root)
                        close(cur);
                if (r < 0)
                        return r;
                cur = next;
                *s = c;
                if (!c)
                        break;
                comp = s + 1;
        }
        d->rel = steal_pointer(&rel);
        d->fd = *fd = cur;
        return 0;
}

static int copy_listed(const struct ws_list *l, const struct ws_file *f, int root, struct dest_dir *d,
                       struct bg_err **err)
{
        if (!path_is_safe(f->path))
                return bg_error(err, EINVAL, "workspace copy: unsafe path '%s'", f->path);
        int dir;
        int r = dest_parent(root, f->path, d, &dir, err);
        if (r < 0)
                return r;
        const char *slash = strrchr(f->path, '/');
        const char *base = slash ? slash + 1 : f->path;
        _cleanup_free_ char *src = xasprintf("%s/%s", l->workdir, f->path);
        if (S_ISLNK(f->mode)) {
                char target[PATH_MAX + 1];
                r = read_link(AT_FDCWD, src, target);
                if (r < 0)
                        return source_error(-r, "readlink", f->path, err);
                return make_symlink(target, dir, base, f->path, err);
        }
        _cleanup_close_ int in = open_regular(AT_FDCWD, src);
        if (in < 0)
                return source_error(-in, "open", f->path, err);
        return copy_regular(in, dir, base, f->mode, f->path, err);
}

/* Copy the folder sdir into ddir whole: folders and files with their
 * permission bits, symlinks as symlinks; sockets and fifos are skipped.
 * An entry that vanishes during the walk (a lock file of a running git) is
 * skipped too: .git is copied as it is at that moment. */
static int copy_tree(int sdir, int ddir, const char *shown, struct bg_err **err);

static int copy_tree_dir(int sdir, int ddir, const char *name, mode_t mode, const char *shown,
                         struct bg_err **err)
{
        _cleanup_close_ int s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s < 0)
                return errno == ENOENT ? 0 : bg_error(err, errno, "workspace copy '%s': open: %s", shown, strerror(errno));
        _cleanup_close_ int d = -1;
        int r = make_dir_at(ddir, name, 0700, shown, &d, err);
        if (r == 0)
                r = copy_tree(s, d, shown, err);
        /* Last, so a read-only folder could still be filled. */
        if (r == 0 && fchmod(d, mode & 0777) < 0)
                r = bg_error(err, errno, "workspace copy '%s': chmod: %s", shown, strerror(errno));
        return r;
}

static int copy_tree_entry(int sdir, int ddir, const char *name, const char *shown, struct bg_err **err)
{
        struct stat st;
        if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : bg_error(err, errno, "workspace copy '%s': stat: %s", shown, strerror(errno));
        if (S_ISDIR(st.st_mode))
                return copy_tree_dir(sdir, ddir, name, st.st_mode, shown, err);
        if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX + 1];
                int r = read_link(sdir, name, target);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return source_error(-r, "readlink", shown, err);
                return make_symlink(target, ddir, name, shown, err);
        }
        if (!S_ISREG(st.st_mode))
                return 0;
        _cleanup_close_ int in = open_regular(sdir, name);
        if (in == -ENOENT)
                return 0;
        if (in < 0)
                return source_error(-in, "open", shown, err);
        return copy_regular(in, ddir, name, st.st_mode, shown, err);
}

static int copy_tree(int sdir, int ddir, const char *shown, struct bg_err **err)
{
        int dfd = dup(sdir);
        DIR *dp = dfd < 0 ? NULL : fdopendir(dfd);
        if (!dp) {
                int e = errno;
                if (dfd >= 0)
                        close(dfd);
                return bg_error(err, e, "workspace copy '%s': read: %s", shown, strerror(e));
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (errno = 0, de = readdir(dp))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *child = xasprintf("%s/%s", shown, de->d_name);
                r = copy_tree_entry(sdir, ddir, de->d_name, child, err);
        }
        if (r == 0 && errno)
                r = bg_error(err, errno, "workspace copy '%s': read: %s", shown, strerror(errno));
        closedir(dp);
        return r;
}

static int copy_git_dir(const struct ws_list *l, int root, struct bg_err **err)
{
        _cleanup_free_ char *src = xasprintf("%s/.git", l->workdir);
        _cleanup_close_ int s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (s < 0 || fstat(s, &st) < 0)
                return bg_error(err, errno, "workspace copy '.git': open '%s': %s", src, strerror(errno));
        /* EEXIST here is an error: nothing listed may have made .git. */
        if (mkdirat(root, ".git", 0700) < 0)
                return bg_error(err, errno, "workspace copy '.git': mkdir: %s", strerror(errno));
        _cleanup_close_ int d = openat(root, ".git", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (d < 0)
                return bg_error(err, errno, "workspace copy '.git': open: %s", strerror(errno));
        int r = copy_tree(s, d, ".git", err);
        if (r == 0 && fchmod(d, st.st_mode & 0777) < 0)
                r = bg_error(err, errno, "workspace copy '.git': chmod: %s", strerror(errno));
        return r;
}

int workspace_copy(const struct ws_list *l, int dest_dirfd, struct bg_err **err)
{
        if (!l->name || !*l->name || strchr(l->name, '/') || !strcmp(l->name, ".") || !strcmp(l->name, ".."))
                return bg_error(err, EINVAL, "workspace copy: bad folder name '%s'", l->name ? l->name : "");
        if (mkdirat(dest_dirfd, l->name, 0700) < 0) {
                if (errno == EEXIST)
                        return bg_error(err, EEXIST, "workspace copy: '%s' already exists", l->name);
                return bg_error(err, errno, "workspace copy: mkdir '%s': %s", l->name, strerror(errno));
        }
        _cleanup_close_ int root = openat(dest_dirfd, l->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0 || fchmod(root, 0755) < 0)
                return bg_error(err, errno, "workspace copy: open '%s': %s", l->name, strerror(errno));
        struct dest_dir d = { .fd = -1 };
        int r = 0;
        for (size_t i = 0; r == 0 && i < l->n; i++)
                r = copy_listed(l, &l->files[i], root, &d, err);
        dest_dir_release(&d);
        if (r < 0)
                return r;
        return copy_git_dir(l, root, err);
}

/* ---- the branch ---- */

static int resolve_commit(git_repository *repo, const char *from, git_object **commit, struct bg_err **err)
{
        _cleanup_(object_freep) git_object *obj = NULL;
        if (git_revparse_single(&obj, repo, from ? from : "HEAD") < 0 ||
            git_object_peel(commit, obj, GIT_OBJECT_COMMIT) < 0) {
                if (!from)
                        return bg_error(err, EINVAL, "workspace: HEAD does not name a commit (no commits yet?)");
                return bg_error(err, EINVAL, "workspace: --from '%s' does not name a commit", from);
        }
        return 0;
}

struct conflicts {
        char *first;
        size_t n;
};

static int note_conflict(git_checkout_notify_t why, const char *path, const git_diff_file *baseline,
                         const git_diff_file *target, const git_diff_file *workdir, void *payload)
{
        (void)why, (void)baseline, (void)target, (void)workdir;
        struct conflicts *c = payload;
        if (!c->first)
                c->first = xstrdup(path);
        c->n++;
        return 0;
}

/* Check out commit's tree without touching changes git can carry over;
 * a change it would overwrite fails the whole checkout, before any file
 * is written. */
static int checkout_commit(git_repository *repo, git_object *commit, const char *branch, struct bg_err **err)
{
        struct conflicts c = { 0 };
        git_checkout_options co;
        git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
        co.checkout_strategy = GIT_CHECKOUT_SAFE;
        co.notify_flags = GIT_CHECKOUT_NOTIFY_CONFLICT;
        co.notify_cb = note_conflict;
        co.notify_payload = &c;
        int r = git_checkout_tree(repo, commit, &co);
        if (r == GIT_ECONFLICT || (r < 0 && c.n))
                r = bg_error(err, EBUSY,
                             "workspace: checkout '%s': the working tree has changes that would be overwritten: '%s'%s",
                             branch, c.first ? c.first : "?", c.n > 1 ? " and more" : "");
        else if (r < 0)
                r = bg_error(err, EIO, "workspace: checkout '%s': %s", branch, lg2_msg());
        free(c.first);
        return r;
}

/* HEAD's commit, or false when HEAD has none yet (an unborn branch). */
static bool head_commit(git_repository *repo, git_oid *id)
{
        _cleanup_(object_freep) git_object *obj = NULL;
        _cleanup_(object_freep) git_object *commit = NULL;
        if (git_revparse_single(&obj, repo, "HEAD") < 0 || git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) < 0)
                return false;
        git_oid_cpy(id, git_object_id(commit));
        return true;
}

static int create_branch(git_repository *repo, const char *branch, git_object *commit, git_reference **ref,
                         struct bg_err **err)
{
        int valid = 0;
        if (git_branch_name_is_valid(&valid, branch) < 0 || !valid)
                return bg_error(err, EINVAL, "workspace: invalid branch name '%s'", branch);
        int r = git_branch_create(ref, repo, branch, (const git_commit *)commit, 0);
        if (r == GIT_EEXISTS)
                return bg_error(err, EEXIST, "workspace: branch '%s' already exists", branch);
        if (r < 0)
                return bg_error(err, EIO, "workspace: create branch '%s': %s", branch, lg2_msg());
        return 0;
}

int workspace_branch(const char *repo_path, const char *branch, const char *from, struct bg_err **err)
{
        int r = lg2_ready(err);
        if (r < 0)
                return r;
        _cleanup_(repo_freep) git_repository *repo = NULL;
        if (git_repository_open_ext(&repo, repo_path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0)
                return bg_error(err, EINVAL, "workspace '%s': open repository: %s", repo_path, lg2_msg());
        /* The copy's .git/config and commondir are the user's text: the
         * checkout must land in this copy (not where a core.worktree
         * says), and its refs and index must be this copy's own. */
        _cleanup_free_ char *real = realpath(repo_path, NULL);
        if (!real)
                return bg_error(err, errno, "workspace '%s': %s", repo_path, strerror(errno));
        _cleanup_free_ char *workdir = xasprintf("%s/", real);
        _cleanup_free_ char *gitdir = xasprintf("%s/.git/", real);
        const char *wd = git_repository_workdir(repo), *common = git_repository_commondir(repo);
        if (!wd || strcmp(wd, workdir) != 0)
                return bg_error(err, EINVAL, "workspace '%s': its .git names another working tree (%s)", repo_path,
                                wd ? wd : "none");
        if (!common || strcmp(common, gitdir) != 0 || strcmp(git_repository_path(repo), gitdir) != 0)
                return bg_error(err, EINVAL, "workspace '%s': its .git points elsewhere (commondir %s)", repo_path,
                                common ? common : "?");
        _cleanup_(object_freep) git_object *commit = NULL;
        r = resolve_commit(repo, from, &commit, err);
        if (r < 0)
                return r;
        _cleanup_(ref_freep) git_reference *ref = NULL;
        r = create_branch(repo, branch, commit, &ref, err);
        if (r < 0)
                return r;

        /* Same commit: only HEAD moves, as `git checkout -b` leaves the
         * working tree and the index (uncommitted work) alone. */
        git_oid head;
        if (!head_commit(repo, &head) || !git_oid_equal(&head, git_object_id(commit))) {
                r = checkout_commit(repo, commit, branch, err);
                if (r < 0) {
                        /* As git, which never creates it.  Not git_branch_delete:
                         * in libgit2 1.5 its config clean-up leaks pcre2 match
                         * data, and a new branch has no config to clean. */
                        git_reference_delete(ref);
                        return r;
                }
        }
        if (git_repository_set_head(repo, git_reference_name(ref)) < 0)
                return bg_error(err, EIO, "workspace: switch to '%s': %s", branch, lg2_msg());
        return 0;
}
