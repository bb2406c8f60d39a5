/* workdisk: see workdisk.h.
 *
 * The image is made in three passes over a staging folder next to dest:
 *
 *   as the owner   the staging folder is handed to the folder owner and
 *                  this thread takes their file-system identity
 *                  (setgroups/setfsgid/setfsuid are per thread in the
 *                  kernel), so every read of the user's files (workspace,
 *                  file_sync) is checked against their rights, not root's.
 *                  The owner has no path to the staging folder (the state
 *                  dir is root's, 0700), so every write goes through its
 *                  dirfd: openat/mkdirat, component by component, never
 *                  following a symlink.
 *   the branch     with --branch, libgit2 must read the copied .git, which
 *                  is the user's text (core.worktree, commondir, alternates,
 *                  config includes) and wants paths, not dirfds.  It runs in
 *                  a helper process (this executable again, see
 *                  workdisk_branch_main) chrooted into the staging folder
 *                  and holding only the owner's uid and gid: whatever the
 *                  .git says, it can reach nothing else.
 *   as root        back to root's identity on every path; everything staged
 *                  is lchown'd to 0:0, and banger's own files
 *                  (authorized_keys, the host key) are written, so no user
 *                  file can take their place.
 *   mkfs           the staged bytes size the image; mkfs.ext4 -d copies the
 *                  folder (modes and owners) into a temp file, renamed to
 *                  dest.  The staging folder is always removed, and a
 *                  failure leaves nothing at dest.
 */
#include "workdisk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "spec.h"
#include "sshkey.h"
#include "util.h"
#include "vmm.h"
#include "workspace.h"

#define MIB (1ull << 20)
#define TOOL_TIMEOUT_MS (10 * 60 * 1000)
#define INODE_COST 4096          /* rough ext4 cost of one inode: table entry, dir entry, tail block */
#define MAX_DEPTH 256            /* folders nested deeper than this are refused (one fd per level) */
#define MAX_GROUPS 1024
#define HOST_KEY_MAX (64 * 1024)

/* What the owner pass needs. */
struct stage {
        int fd;                      /* the staging folder */
        const struct workdisk_owner *owner;
        char *home_real;             /* realpath of owner->home, made on first use */
        uint64_t limit;              /* spec disk_size; 0: none */
        uint64_t copied;             /* file bytes copied so far (a lower bound of the total) */
};

static char *dir_of(const char *path)
{
        const char *slash = strrchr(path, '/');
        if (!slash)
                return xstrdup(".");
        if (slash == path)
                return xstrdup("/");
        return xstrndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path)
{
        const char *slash = strrchr(path, '/');
        return slash ? slash + 1 : path;
}

static unsigned long long mib_up(uint64_t bytes) { return (unsigned long long)((bytes + MIB - 1) / MIB); }

static int too_big(uint64_t need, uint64_t limit, bool at_least, struct bg_err **err)
{
        return bg_error(err, EFBIG, "workspace and file_sync need %s%llu MiB, more than disk_size %llu MiB",
                        at_least ? "at least " : "", mib_up(need), (unsigned long long)(limit / MIB));
}

/* ---- file-system identity ---- */

struct fsid {
        bool switched;
        uid_t uid;                   /* what to go back to */
        gid_t gid;
        gid_t *groups;
        int n_groups;
};

/* The owner's groups: their primary group, and the supplementary ones the
 * group database gives them (none when they have no passwd entry). */
static gid_t *owner_groups(const struct workdisk_owner *o, int *n)
{
        gid_t *g = xcalloc(MAX_GROUPS, sizeof *g);
        struct passwd pw, *res = NULL;
        char buf[4096];
        int count = MAX_GROUPS;
        if (getpwuid_r(o->uid, &pw, buf, sizeof buf, &res) == 0 && res &&
            getgrouplist(res->pw_name, o->gid, g, &count) >= 0 && count > 0) {
                *n = count;
                return g;
        }
        g[0] = o->gid;
        *n = 1;
        return g;
}

/* Raw syscalls: glibc's setgroups() changes every thread of the process,
 * the kernel's only the caller's, which is what is wanted here. */
static int thread_setgroups(int n, const gid_t *g) { return (int)syscall(SYS_setgroups, (size_t)n, g); }

/* Back to the saved identity.  A thread left with a user's identity would
 * act with their rights for whatever it does next: that cannot be reported
 * and carried on from, so it ends the process. */
static void become_root(struct fsid *s)
{
        if (!s->switched)
                return;
        setfsuid(s->uid);
        setfsgid(s->gid);
        if ((uid_t)setfsuid((uid_t)-1) != s->uid || (gid_t)setfsgid((gid_t)-1) != s->gid ||
            thread_setgroups(s->n_groups, s->groups) < 0) {
                log_error("workdisk: cannot restore the thread's file-system identity: %s", strerror(errno));
                abort();
        }
        free(s->groups);
        s->groups = NULL;
        s->switched = false;
}

/* Take the owner's file-system identity on this thread.  Nothing to do
 * when we are not root (we can read only what we may anyway) or the owner
 * is root. */
static int become_owner(const struct workdisk_owner *o, struct fsid *s, struct bg_err **err)
{
        memset(s, 0, sizeof *s);
        if (geteuid() != 0 || o->uid == 0)
                return 0;
        int n = getgroups(0, NULL);
        if (n < 0 || n > MAX_GROUPS)
                return bg_error(err, errno ? errno : E2BIG, "getgroups: %s", strerror(errno ? errno : E2BIG));
        s->groups = xcalloc((size_t)n + 1, sizeof *s->groups);
        if ((s->n_groups = getgroups(n, s->groups)) < 0) {
                int e = errno;
                free(steal_pointer(&s->groups));
                return bg_error(err, e, "getgroups: %s", strerror(e));
        }
        int ng = 0;
        _cleanup_free_ gid_t *g = owner_groups(o, &ng);
        if (thread_setgroups(ng, g) < 0) {
                int e = errno;
                free(steal_pointer(&s->groups));
                return bg_error(err, e, "setgroups for uid %u: %s", (unsigned)o->uid, strerror(e));
        }
        s->switched = true;
        s->gid = (gid_t)setfsgid(o->gid);
        s->uid = (uid_t)setfsuid(o->uid);
        /* setfs[ug]id report the previous value, never an error: ask again. */
        if ((uid_t)setfsuid((uid_t)-1) != o->uid || (gid_t)setfsgid((gid_t)-1) != o->gid) {
                become_root(s);
                return bg_error(err, EPERM, "cannot take the file-system identity of uid %u gid %u",
                                (unsigned)o->uid, (unsigned)o->gid);
        }
        return 0;
}

/* ---- paths ---- */

/* A host path: "~/x" in the owner's home, "~" the home, "/x" as is.
 * Relative paths mean nothing to a daemon: NULL. */
static char *host_path(const char *p, const char *home)
{
        if (p[0] == '/')
                return xstrdup(p);
        if (!home || (strcmp(p, "~") != 0 && !str_has_prefix(p, "~/")))
                return NULL;
        return p[1] ? xasprintf("%s/%s", home, p + 2) : xstrdup(home);
}

/* "~/a//b/" or "/root/a/./b" -> "a/b" (the home itself: "").  NULL when a
 * component is ".." or the prefix is missing (the validator refuses both;
 * this is the second check). */
static char *guest_rel(const char *guest)
{
        const char *p;
        if (str_has_prefix(guest, "~/"))
                p = guest + 2;
        else if (str_has_prefix(guest, "/root/"))
                p = guest + 6;
        else
                return NULL;
        char *out = xcalloc(strlen(p) + 1, 1);
        size_t n = 0;
        while (*p) {
                size_t len = strcspn(p, "/");
                if (len == 2 && p[0] == '.' && p[1] == '.') {
                        free(out);
                        return NULL;
                }
                if (len && !(len == 1 && p[0] == '.')) {
                        if (n)
                                out[n++] = '/';
                        memcpy(out + n, p, len);
                        n += len;
                }
                p += len;
                while (*p == '/')
                        p++;
        }
        return out;
}

/* banger's own files in /root: a copy may never land there. */
static bool reserved(const char *rel)
{
        return strcmp(rel, ".banger") == 0 || str_has_prefix(rel, ".banger/") ||
               strcmp(rel, ".ssh/authorized_keys") == 0;
}

static char *join(const char *a, const char *b) { return *a ? xasprintf("%s/%s", a, b) : xstrdup(b); }

/* The folder rel under dirfd (component by component, each made 0700 when
 * missing), opened without following a symlink anywhere.  Returns an fd or
 * a negative errno; *bad gets the part of rel that failed (heap). */
static int open_dir_p(int dirfd, const char *rel, char **bad)
{
        int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        const char *p = rel;
        while (*p) {
                size_t len = strcspn(p, "/");
                _cleanup_free_ char *comp = xstrndup(p, len);
                bool made = mkdirat(fd, comp, 0700) == 0;
                int e = made || errno == EEXIST ? 0 : errno;
                int next = e ? -1 : openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0 && !e)
                        e = errno == ELOOP ? ENOTDIR : errno;
                if (next >= 0 && made && fchmod(next, 0700) < 0)
                        e = errno;
                close(fd);
                if (e) {
                        if (next >= 0)
                                close(next);
                        *bad = xstrndup(rel, (size_t)(p - rel) + len);
                        return -e;
                }
                fd = next;
                p += len;
                while (*p == '/')
                        p++;
        }
        return fd;
}

/* ---- copying as the owner ---- */

/* Copy [off, end) of in to out at the same offsets. */
static int copy_range(int in, int out, off_t off, off_t end)
{
        enum { BLK = 1 << 17 };
        while (off < end) {
                loff_t a = off, b = off;
                ssize_t n = copy_file_range(in, &a, out, &b, (size_t)(end - off), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
                        return -errno;
                if (n < 0)
                        break;   /* no copy_file_range here: read and write */
                if (n == 0)
                        return 0;   /* shrank meanwhile */
                off += n;
        }
        _cleanup_free_ char *buf = off < end ? xmalloc(BLK) : NULL;
        while (off < end) {
                size_t want = (size_t)(end - off) < BLK ? (size_t)(end - off) : BLK;
                ssize_t r = pread(in, buf, want, off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : 0;
                for (ssize_t done = 0; done < r;) {
                        ssize_t w = pwrite(out, buf + done, (size_t)(r - done), off + done);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return -errno;
                        done += w;
                }
                off += r;
        }
        return 0;
}

/* Copy the first len bytes of in (its size when opened) to the empty out,
 * keeping holes: a sparse file stays sparse in staging and in the image. */
static int copy_fd(int in, int out, off_t len)
{
        off_t off = 0;
        while (off < len) {
                off_t data = lseek(in, off, SEEK_DATA), hole = len;
                if (data < 0 && errno == ENXIO)
                        break;   /* only a hole is left */
                if (data < 0)
                        data = off;   /* no SEEK_DATA: copy it all */
                else if ((hole = lseek(in, data, SEEK_HOLE)) < 0 || hole > len)
                        hole = len;
                if (data >= len)
                        break;
                int r = copy_range(in, out, data, hole);
                if (r < 0)
                        return r;
                off = hole;
        }
        return ftruncate(out, len) < 0 ? -errno : 0;
}

/* Copy the open regular file in (read from src, for messages) to name in
 * the staging folder dfd (rel: its place in /root), replacing a file
 * there, with mode. */
static int put_copy(struct stage *st, const char *label, int in, const struct stat *sst, const char *src, int dfd,
                    const char *name, const char *rel, unsigned mode, struct bg_err **err)
{
        if (reserved(rel))
                return bg_error(err, EPERM, "%s: '%s' would replace banger's ~/%s", label, src, rel);
        st->copied += (uint64_t)sst->st_size;
        if (st->limit && st->copied > st->limit)
                return too_big(st->copied, st->limit, true, err);
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
                if (errno == EISDIR)
                        return bg_error(err, EISDIR, "%s: '%s' cannot replace the folder ~/%s", label, src, rel);
                return bg_error(err, errno, "%s: replace ~/%s: %s", label, rel, strerror(errno));
        }
        _cleanup_close_ int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return bg_error(err, errno, "%s: create ~/%s: %s", label, rel, strerror(errno));
        int r = copy_fd(in, out, sst->st_size);
        if (r < 0)
                return bg_error(err, -r, "%s: copy '%s' to ~/%s: %s", label, src, rel, strerror(-r));
        if (fchmod(out, mode) < 0)
                return bg_error(err, errno, "%s: chmod ~/%s: %s", label, rel, strerror(errno));
        return 0;
}

/* Copy the folder src_fd (at src) into the staging folder dst_fd (at rel):
 * files with mode, folders 0700, symlinks and special files skipped. */
static int copy_tree(struct stage *st, const char *label, int src_fd, const char *src, int dst_fd, const char *rel,
                     unsigned mode, int depth, struct bg_err **err)
{
        if (depth > MAX_DEPTH)
                return bg_error(err, ELOOP, "%s: '%s': folders nested more than %d deep", label, src, MAX_DEPTH);
        int dfd = fcntl(src_fd, F_DUPFD_CLOEXEC, 0);
        DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
        if (!d) {
                int e = errno;
                if (dfd >= 0)
                        close(dfd);
                return bg_error(err, e, "%s: read '%s': %s", label, src, strerror(e));
        }
        rewinddir(d);   /* the dup shares src_fd's offset */
        int r = 0;
        struct dirent *de;
        while (r == 0 && (errno = 0, de = readdir(d))) {
                const char *name = de->d_name;
                if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        continue;
                _cleanup_free_ char *spath = xasprintf("%s/%s", src, name);
                _cleanup_free_ char *drel = join(rel, name);
                struct stat sst;
                if (fstatat(src_fd, name, &sst, AT_SYMLINK_NOFOLLOW) < 0) {
                        r = bg_error(err, errno, "%s: '%s': %s", label, spath, strerror(errno));
                        break;
                }
                if (S_ISLNK(sst.st_mode)) {
                        log_warn("file_sync: symlink skipped entry=%s path=%s", label, spath);
                        continue;
                }
                if (!S_ISREG(sst.st_mode) && !S_ISDIR(sst.st_mode)) {
                        log_warn("file_sync: special file skipped entry=%s path=%s", label, spath);
                        continue;
                }
                int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
                _cleanup_close_ int in = openat(src_fd, name, flags | (S_ISDIR(sst.st_mode) ? O_DIRECTORY : 0));
                if (in < 0 || fstat(in, &sst) < 0) {
                        r = bg_error(err, errno, "%s: '%s': %s", label, spath, strerror(errno));
                        break;
                }
                if (S_ISREG(sst.st_mode)) {
                        r = put_copy(st, label, in, &sst, spath, dst_fd, name, drel, mode, err);
                        continue;
                }
                if (!S_ISDIR(sst.st_mode))
                        continue;   /* changed type under us: skip it as above */
                if (reserved(drel)) {
                        r = bg_error(err, EPERM, "%s: '%s' would replace banger's ~/%s", label, spath, drel);
                        break;
                }
                _cleanup_free_ char *bad = NULL;
                int sub = open_dir_p(dst_fd, name, &bad);
                if (sub < 0) {
                        r = bg_error(err, -sub, "%s: make ~/%s: %s", label, drel, strerror(-sub));
                        break;
                }
                r = copy_tree(st, label, in, spath, sub, drel, mode, depth + 1, err);
                close(sub);
        }
        if (r == 0 && errno != 0)
                r = bg_error(err, errno, "%s: read '%s': %s", label, src, strerror(errno));
        closedir(d);
        return r;
}

/* realpath of the owner's home, once (as the owner). */
static int home_real(struct stage *st, struct bg_err **err)
{
        if (st->home_real)
                return 0;
        if (!st->owner->home)
                return bg_error(err, ENOENT, "uid %u has no home folder", (unsigned)st->owner->uid);
        st->home_real = realpath(st->owner->home, NULL);
        if (!st->home_real)
                return bg_error(err, errno, "home folder '%s': %s", st->owner->home, strerror(errno));
        return 0;
}

static bool inside(const char *path, const char *dir)
{
        size_t n = strlen(dir);
        if (n == 1 && dir[0] == '/')
                return true;
        return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* One file_sync entry (label: "spec.file_sync[2]"). */
static int sync_one(struct stage *st, const char *label, const struct spec_file_sync *fs, struct bg_err **err)
{
        unsigned mode = fs->mode_set ? fs->mode & 0777 : 0600;
        _cleanup_free_ char *rel = fs->guest ? guest_rel(fs->guest) : NULL;
        if (!rel)
                return bg_error(err, EINVAL, "%s.guest '%s': must start with \"~/\" or \"/root/\" and have no '..'",
                                label, fs->guest ? fs->guest : "");
        if (reserved(rel))
                return bg_error(err, EPERM, "%s.guest '%s': banger manages ~/%s", label, fs->guest, rel);
        if (!fs->host)
                return bg_error(err, EINVAL, "%s.host: required", label);
        if (home_real(st, err) < 0)
                return bg_error_wrap(err, "%s.host '%s'", label, fs->host);
        _cleanup_free_ char *path = host_path(fs->host, st->owner->home);
        if (!path)
                return bg_error(err, EINVAL, "%s.host '%s': must be absolute or start with \"~/\"", label, fs->host);
        _cleanup_free_ char *real = realpath(path, NULL);
        if (!real && errno == ENOENT)
                return bg_error(err, ENOENT, "%s.host '%s': does not exist", label, fs->host);
        if (!real)
                return bg_error(err, errno, "%s.host '%s': %s", label, fs->host, strerror(errno));
        if (!inside(real, st->home_real))
                return bg_error(err, EPERM, "%s.host '%s': outside the home folder %s (it is %s)", label, fs->host,
                                st->home_real, real);
        _cleanup_close_ int in = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        struct stat sst;
        if (in < 0 || fstat(in, &sst) < 0)
                return bg_error(err, errno, "%s.host '%s': %s", label, fs->host, strerror(errno));
        if (S_ISDIR(sst.st_mode)) {
                _cleanup_free_ char *bad = NULL;
                _cleanup_close_ int dst = open_dir_p(st->fd, rel, &bad);
                if (dst < 0)
                        return bg_error(err, -dst, "%s.guest '%s': make ~/%s: %s", label, fs->guest, bad,
                                        strerror(-dst));
                return copy_tree(st, label, in, real, dst, rel, mode, 1, err);
        }
        if (!S_ISREG(sst.st_mode))
                return bg_error(err, EINVAL, "%s.host '%s': not a regular file or a folder", label, fs->host);
        if (!*rel)
                return bg_error(err, EISDIR, "%s.guest '%s': a file cannot replace the home folder", label,
                                fs->guest);
        _cleanup_free_ char *parent = dir_of(rel);
        _cleanup_free_ char *bad = NULL;
        _cleanup_close_ int dst = open_dir_p(st->fd, strchr(rel, '/') ? parent : "", &bad);
        if (dst < 0)
                return bg_error(err, -dst, "%s.guest '%s': make ~/%s: %s", label, fs->guest, bad, strerror(-dst));
        return put_copy(st, label, in, &sst, real, dst, base_of(rel), rel, mode, err);
}

/* The workspace at NAME/ in staging.  *name gets NAME (heap). */
static int stage_workspace(struct stage *st, const struct spec_workspace *w, char **name, struct bg_err **err)
{
        _cleanup_free_ char *path = w->path ? host_path(w->path, st->owner->home) : NULL;
        if (!path)
                return bg_error(err, EINVAL, "spec.workspace.path '%s': must be absolute or start with \"~/\"%s",
                                w->path ? w->path : "", st->owner->home ? "" : " (and the owner has no home)");
        struct ws_list l;
        memset(&l, 0, sizeof l);
        if (workspace_list(path, w->include_untracked, &l, err) < 0)
                return -EIO;   /* its messages name the workspace */
        int r = 0;
        if (!l.name || !*l.name || reserved(l.name) || strcmp(l.name, ".ssh") == 0)
                r = bg_error(err, EINVAL, "workspace '%s': its folder name '%s' is banger's in /root", path,
                             l.name ? l.name : "");
        else if (st->limit && l.bytes + l.git_bytes > st->limit)
                r = too_big(l.bytes + l.git_bytes, st->limit, true, err);
        else if (workspace_copy(&l, st->fd, err) < 0)
                r = bg_error_wrap(err, "workspace '%s'", path);
        if (r == 0) {
                st->copied += l.bytes + l.git_bytes;
                *name = xstrdup(l.name);
        }
        ws_list_release(&l);
        return r;
}

static int stage_owned(struct stage *st, const struct workdisk_in *in, char **ws_name, struct bg_err **err)
{
        const struct bg_spec *spec = in->spec;
        if (spec && spec->workspace && stage_workspace(st, spec->workspace, ws_name, err) < 0)
                return -EIO;
        for (size_t i = 0; i < in->n_config_sync; i++) {
                char label[48];
                snprintf(label, sizeof label, "config file_sync[%zu]", i);
                if (sync_one(st, label, &in->config_sync[i], err) < 0)
                        return -EIO;
        }
        for (size_t i = 0; spec && i < spec->n_file_sync; i++) {
                char label[48];
                snprintf(label, sizeof label, "spec.file_sync[%zu]", i);
                if (sync_one(st, label, &spec->file_sync[i], err) < 0)
                        return -EIO;
        }
        return 0;
}

/* ---- as root ---- */

struct tally {
        uint64_t bytes;   /* file sizes + INODE_COST per inode */
        uint64_t files;   /* regular files and symlinks */
        uint64_t inodes;
};

/* Walk the staging folder fd: lchown every entry to 0:0 (own) and/or
 * count it (t). */
static int walk(int fd, const char *rel, bool own, struct tally *t, int depth, struct bg_err **err)
{
        if (depth > MAX_DEPTH)
                return bg_error(err, ELOOP, "~/%s: folders nested more than %d deep", rel, MAX_DEPTH);
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
        if (!d) {
                int e = errno;
                if (dfd >= 0)
                        close(dfd);
                return bg_error(err, e, "read staged ~/%s: %s", rel, strerror(e));
        }
        rewinddir(d);   /* the dup shares fd's offset: a walk before this one read it to the end */
        int r = 0;
        struct dirent *de;
        while (r == 0 && (errno = 0, de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_free_ char *crel = join(rel, de->d_name);
                struct stat sst;
                if (fstatat(fd, de->d_name, &sst, AT_SYMLINK_NOFOLLOW) < 0 ||
                    (own && fchownat(fd, de->d_name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)) {
                        r = bg_error(err, errno, "staged ~/%s: %s", crel, strerror(errno));
                        break;
                }
                if (t) {
                        t->inodes++;
                        t->bytes += INODE_COST;
                        if (S_ISREG(sst.st_mode) || S_ISLNK(sst.st_mode)) {
                                t->files++;
                                t->bytes += (uint64_t)sst.st_size;
                        }
                }
                if (!S_ISDIR(sst.st_mode))
                        continue;
                int sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                        r = bg_error(err, errno, "staged ~/%s: %s", crel, strerror(errno));
                        break;
                }
                r = walk(sub, crel, own, t, depth + 1, err);
                close(sub);
        }
        if (r == 0 && errno != 0)
                r = bg_error(err, errno, "read staged ~/%s: %s", rel, strerror(errno));
        closedir(d);
        return r;
}

/* name in dirfd with exactly data and mode, owned by root when we are. */
static int put_file_at(int dirfd, const char *name, const char *shown, const char *data, size_t len, unsigned mode,
                       struct bg_err **err)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return bg_error(err, errno, "create ~/%s: %s", shown, strerror(errno));
        for (size_t done = 0; done < len;) {
                ssize_t w = write(fd, data + done, len - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return bg_error(err, errno, "write ~/%s: %s", shown, strerror(errno));
                done += (size_t)w;
        }
        if (fchmod(fd, mode) < 0 || (geteuid() == 0 && fchown(fd, 0, 0) < 0))
                return bg_error(err, errno, "chmod/chown ~/%s: %s", shown, strerror(errno));
        return 0;
}

/* name in dirfd as a 0700 folder owned by root: made, or taken over when
 * a copy made it (file_sync into ~/.ssh).  Returns an fd. */
static int key_dir(int dirfd, const char *name, struct bg_err **err)
{
        if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
                return bg_error(err, errno, "mkdir ~/%s: %s", name, strerror(errno));
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return bg_error(err, errno == ELOOP ? ENOTDIR : errno, "~/%s: %s", name,
                                strerror(errno == ELOOP ? ENOTDIR : errno));
        if (fchmod(fd, 0700) < 0 || (geteuid() == 0 && fchown(fd, 0, 0) < 0)) {
                int e = errno;
                close(fd);
                return bg_error(err, e, "chmod/chown ~/%s: %s", name, strerror(e));
        }
        return fd;
}

/* banger's files, with the modes sshd's StrictModes accepts: .ssh 0700,
 * authorized_keys 0600; the guest's host key in .banger (0700, key 0600). */
static int stage_keys(int fd, const struct workdisk_in *in, struct bg_err **err)
{
        if (in->host_key_file) {
                char *key = NULL;
                size_t len = 0;
                if (read_file_limited(in->host_key_file, HOST_KEY_MAX, &key, &len, err) < 0)
                        return bg_error_wrap(err, "host key");
                int dir = key_dir(fd, ".banger", err);
                int r = dir < 0 ? dir
                                : put_file_at(dir, "ssh_host_ed25519_key", ".banger/ssh_host_ed25519_key", key, len,
                                              0600, err);
                if (dir >= 0)
                        close(dir);
                explicit_bzero(key, len);
                free(key);
                if (r < 0)
                        return r;
        }
        if (!in->user_key)
                return 0;
        _cleanup_free_ char *line = NULL;
        if (sshkey_read_public(in->user_key, &line, err) < 0)
                return bg_error_wrap(err, "banger's user key");
        _cleanup_free_ char *keys = xasprintf("%s\n", line);
        _cleanup_close_ int dir = key_dir(fd, ".ssh", err);
        if (dir < 0)
                return dir;
        return put_file_at(dir, "authorized_keys", ".ssh/authorized_keys", keys, strlen(keys), 0600, err);
}

/* mkfs.ext4 -d staging into a temp file next to dest, renamed to dest. */
static int make_image(const char *dest, const char *staging, uint64_t size, uint64_t inodes, struct bg_err **err)
{
        _cleanup_free_ char *dir = dir_of(dest);
        _cleanup_free_ char *tmp = xasprintf("%s/.%s.tmp-XXXXXX", dir, base_of(dest));
        _cleanup_close_ int out = mkostemp(tmp, O_CLOEXEC);
        if (out < 0)
                return bg_error(err, errno, "create a temp file for '%s': %s", dest, strerror(errno));
        char sz[32], n[32];
        snprintf(sz, sizeof sz, "%lluk", (unsigned long long)(size / 1024));
        /* mkfs's own count (one inode per 16 KiB) unless the content needs more. */
        uint64_t want = inodes + inodes / 4 + 1024;
        snprintf(n, sizeof n, "%llu", (unsigned long long)(want > size / 16384 ? want : size / 16384));
        const char *argv[] = { "mkfs.ext4", "-q", "-F", "-L", "banger-work", "-N", n, "-d", staging,
                               "-E", "root_owner=0:0", tmp, sz, NULL };
        int r = vmm_run_tool(argv, TOOL_TIMEOUT_MS, NULL, NULL, err);
        if (r == 0 && fsync(out) < 0)
                r = bg_error(err, errno, "fsync '%s': %s", tmp, strerror(errno));
        if (r == 0 && rename(tmp, dest) < 0)
                r = bg_error(err, errno, "rename '%s' to '%s': %s", tmp, dest, strerror(errno));
        if (r < 0)
                unlink(tmp);
        return r;
}

#define BRANCH_FLAG "--workspace-branch"
#define BRANCH_TIMEOUT_MS (5 * 60 * 1000)
#define BRANCH_ERROR "banger-branch-error"

/* Run workdisk_branch_main in a new process of this executable. */
static int branch_in_helper(const char *staging, const char *name, const struct spec_workspace *w,
                            const struct workdisk_owner *o, struct bg_err **err)
{
        char uid[24], gid[24];
        snprintf(uid, sizeof uid, "%u", (unsigned)o->uid);
        snprintf(gid, sizeof gid, "%u", (unsigned)o->gid);
        const char *argv[] = { "/proc/self/exe", BRANCH_FLAG, staging, name, w->branch, w->from ? w->from : "",
                               uid, gid, NULL };
        _cleanup_free_ char *out = NULL;
        int status = -1;
        struct bg_err *e = NULL;
        if (vmm_run_tool(argv, BRANCH_TIMEOUT_MS, &out, &status, &e) == 0)
                return 0;
        /* Its own failure is one line: BRANCH_ERROR CODE MESSAGE. */
        const char *mine = out ? strstr(out, BRANCH_ERROR " ") : NULL;
        int code = 0, at = 0;
        if (status != 1 || !mine || sscanf(mine, BRANCH_ERROR " %d %n", &code, &at) != 1 || code <= 0) {
                int r = bg_error(err, e ? e->code : EIO, "workspace branch: %s", bg_err_msg(e));
                bg_err_free(e);
                return r;
        }
        bg_err_free(e);
        char *msg = (char *)mine + at;
        msg[strcspn(msg, "\n")] = '\0';
        return bg_error(err, code, "%s", msg);
}

int workdisk_branch_main(int argc, char **argv)
{
        if (argc != 8 || strcmp(argv[1], BRANCH_FLAG) != 0)
                return -1;
        const char *staging = argv[2], *name = argv[3], *branch = argv[4], *from = argv[5];
        char *uend = NULL, *gend = NULL;
        unsigned long uid = strtoul(argv[6], &uend, 10), gid = strtoul(argv[7], &gend, 10);
        if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || uend == argv[6] || *uend ||
            gend == argv[7] || *gend) {
                fprintf(stderr, "workspace branch: bad arguments\n");
                _exit(2);
        }
        /* Into the staging folder, then drop root for good: after this,
         * only the copy exists and only the owner's rights apply. */
        if (chdir(staging) < 0 || chroot(".") < 0 || chdir("/") < 0) {
                fprintf(stderr, "workspace branch: chroot %s: %s\n", staging, strerror(errno));
                _exit(1);
        }
        if (geteuid() == 0 && uid != 0 &&
            (setgroups(0, NULL) < 0 || setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0 ||
             setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)) {
                fprintf(stderr, "workspace branch: drop to uid %lu: %s\n", uid, strerror(errno));
                _exit(1);
        }
        _cleanup_free_ char *repo = xasprintf("/%s", name);
        struct bg_err *e = NULL;
        if (workspace_branch(repo, branch, *from ? from : NULL, &e) < 0) {
                fprintf(stderr, BRANCH_ERROR " %d %s\n", e ? e->code : EIO, bg_err_msg(e));
                _exit(1);
        }
        /* _exit: no atexit work (a sanitizer's leak check wants the /proc
         * this chroot does not have). */
        _exit(0);
}

/* Everything between the staging folder and the image; fd is staging's. */
static int build(const char *dest, const char *staging, int fd, const struct workdisk_in *in, struct tally *t,
                 struct bg_err **err)
{
        const struct bg_spec *spec = in->spec;
        bool user_files = spec && (spec->workspace || spec->n_file_sync);
        user_files |= in->n_config_sync > 0;
        struct stage st = { .fd = fd, .owner = in->owner, .limit = spec ? spec->disk_size : 0 };
        _cleanup_free_ char *ws_name = NULL;
        if (user_files) {
                if (!in->owner)
                        return bg_error(err, EINVAL, "workspace and file_sync need the folder owner");
                struct fsid id;
                int r = 0;
                if (geteuid() == 0 && in->owner->uid != 0 && fchown(fd, in->owner->uid, in->owner->gid) < 0)
                        r = bg_error(err, errno, "chown '%s': %s", staging, strerror(errno));
                if (r == 0 && (r = become_owner(in->owner, &id, err)) == 0) {
                        r = stage_owned(&st, in, &ws_name, err);
                        become_root(&id);
                }
                if (r == 0 && ws_name && spec->workspace->branch)
                        r = branch_in_helper(staging, ws_name, spec->workspace, in->owner, err);
                free(st.home_real);
                if (r < 0)
                        return r;
                if (geteuid() == 0 && fchown(fd, 0, 0) < 0)
                        return bg_error(err, errno, "chown '%s': %s", staging, strerror(errno));
                if (geteuid() == 0 && walk(fd, "", true, NULL, 0, err) < 0)
                        return -EIO;
        }
        if (stage_keys(fd, in, err) < 0 || walk(fd, "", false, t, 0, err) < 0)
                return -EIO;
        if (st.limit && t->bytes > st.limit)
                return too_big(t->bytes, st.limit, false, err);
        uint64_t size = t->bytes + t->bytes / 4 + 64 * MIB;
        if (size < WORKDISK_MIN_SIZE)
                size = WORKDISK_MIN_SIZE;
        size = (size + MIB - 1) / MIB * MIB;
        return make_image(dest, staging, size, t->inodes, err);
}

int workdisk_create(const char *dest, const struct workdisk_in *in, struct bg_err **err)
{
        int64_t t0 = now_mono_ms();
        unlink(dest);
        _cleanup_free_ char *dir = dir_of(dest);
        _cleanup_free_ char *staging = xasprintf("%s/.work-staging-XXXXXX", dir);
        if (!mkdtemp(staging))
                return bg_error(err, errno, "work disk '%s': staging folder: %s", dest, strerror(errno));
        int fd = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct tally t = { 0 };
        int r = fd < 0 ? bg_error(err, errno, "open '%s': %s", staging, strerror(errno))
                       : build(dest, staging, fd, in, &t, err);
        if (fd >= 0)
                close(fd);
        rm_rf(staging, NULL);
        if (r < 0) {
                unlink(dest);
                return bg_error_wrap(err, "work disk '%s'", dest);
        }
        log_info("work disk ready path=%s bytes=%llu files=%llu ms=%lld", dest, (unsigned long long)t.bytes,
                 (unsigned long long)t.files, (long long)(now_mono_ms() - t0));
        return 0;
}
