/* disk: see disk.h.
 *
 * Per-VM provisioning must cost the same at 1 GiB and at 64 GiB, and the
 * guest must see the space it asked for in its filesystem, not only in its
 * block device.  Growing an ext4 with resize2fs costs time in proportion to
 * the new size (measured here: ~50 ms at 8 GiB, ~80 ms at 64 GiB), and a
 * qcow2 overlay cannot be resized from the host without nbd.  So the growth
 * is done once per (image, size) and shared:
 *
 *   grown base   IMAGE_DIR/.banger-grown/<image key>-<size>.raw: the image
 *                cloned (reflink, else sparse copy), truncated to size and
 *                grown with resize2fs.  The key hashes the image's device,
 *                inode, size and mtime, so a rebuilt image gets new bases
 *                (and the old ones are removed when the next is built).
 *   per VM       reflink of the grown base (raw, O(extents));
 *                else a qcow2 overlay whose backing file is a hard link to
 *                the grown base next to dest (DEST.base), written here
 *                directly (a header, a refcount table and block, an empty
 *                L1 table: ~0.1 ms, where spawning qemu-img costs 20-30 ms);
 *                else a sparse copy of the grown base (SEEK_DATA/SEEK_HOLE:
 *                cost follows the image's data, not the size).
 * The hard link keeps a VM's backing file alive and unchanged whatever
 * happens to the image or the cache later (rebuilt, removed): an overlay
 * never sees its backing change under it.  The backing name inside the
 * qcow2 is relative, so the VM folder holds everything it needs.
 * When the cache cannot be written (the image's folder is read-only), the
 * base is built in dest's folder for this VM alone: correct, not flat.
 *
 * Every file is built under a temporary name and renamed into place, and
 * removed on failure: a disk either exists whole or not at all.
 */
#include "disk.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "util.h"
#include "vmm.h"

#define GROWN_DIR ".banger-grown"
#define TOOL_TIMEOUT_MS (10 * 60 * 1000)

const char *disk_method_name(enum disk_method m)
{
        switch (m) {
        case DISK_REFLINK: return "reflink";
        case DISK_QCOW2: return "qcow2";
        case DISK_SPARSE_COPY: return "sparse-copy";
        }
        return "unknown";
}

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

/* A new empty file next to path (its name in *tmp), O_RDWR. */
static int make_temp(const char *path, char **tmp, struct bg_err **err)
{
        _cleanup_free_ char *dir = dir_of(path);
        char *t = xasprintf("%s/.%s.tmp-XXXXXX", dir, base_of(path));
        int fd = mkostemp(t, O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                free(t);
                return bg_error(err, e, "create a temp file for '%s': %s", path, strerror(e));
        }
        *tmp = t;
        return fd;
}

static bool reflink_unsupported(int e)
{
        return e == EOPNOTSUPP || e == ENOTTY || e == EXDEV || e == EINVAL || e == ENOSYS || e == EPERM;
}

static bool all_zero(const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/* Copy [off, end) of in to out by read/write, skipping zero blocks. */
static int copy_range_rw(int in, int out, off_t off, off_t end)
{
        enum { BLK = 1 << 16 };
        _cleanup_free_ char *buf = xmalloc(BLK);
        while (off < end) {
                size_t want = (size_t)(end - off) < BLK ? (size_t)(end - off) : BLK;
                ssize_t r = pread(in, buf, want, off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        break;
                if (!all_zero(buf, (size_t)r)) {
                        for (ssize_t done = 0; done < r;) {
                                ssize_t w = pwrite(out, buf + done, (size_t)(r - done), off + done);
                                if (w < 0 && errno == EINTR)
                                        continue;
                                if (w < 0)
                                        return -errno;
                                done += w;
                        }
                }
                off += r;
        }
        return 0;
}

static int copy_range(int in, int out, off_t off, off_t end)
{
        while (off < end) {
                loff_t a = off, b = off;
                ssize_t n = copy_file_range(in, &a, out, &b, (size_t)(end - off), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
                        return copy_range_rw(in, out, off, end);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                off += n;
        }
        return 0;
}

/* Copy in to out keeping holes: only the data extents are copied.  out is
 * empty; it ends len bytes long. */
static int sparse_copy(int in, int out, off_t len)
{
        if (ftruncate(out, len) < 0)
                return -errno;
        off_t off = 0;
        while (off < len) {
                off_t data = lseek(in, off, SEEK_DATA);
                if (data < 0 && errno == ENXIO)
                        break;   /* only a hole is left */
                if (data < 0)   /* no SEEK_DATA here: read it all, skip zeros */
                        return copy_range_rw(in, out, off, len);
                off_t hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0)
                        hole = len;
                if (hole > len)
                        hole = len;
                int r = copy_range(in, out, data, hole);
                if (r < 0)
                        return r;
                off = hole;
        }
        return 0;
}

/* Fill the empty file out with in's content: a reflink when the filesystem
 * can, else a sparse copy.  *reflinked says which. */
static int clone_or_copy(int in, int out, off_t len, bool *reflinked)
{
        *reflinked = false;
        if (ioctl(out, FICLONE, in) == 0) {
                *reflinked = true;
                return 0;
        }
        if (!reflink_unsupported(errno))
                return -errno;
        return sparse_copy(in, out, len);
}

static int resize_ext4(const char *path, struct bg_err **err)
{
        const char *argv[] = { "resize2fs", "-f", path, NULL };
        if (vmm_run_tool(argv, TOOL_TIMEOUT_MS, NULL, NULL, err) < 0)
                return bg_error_wrap(err, "grow the filesystem in '%s'", path);
        return 0;
}

/* Make dest (a temp name the caller renames) as image grown to size. */
static int build_grown(const char *image, int in, off_t isize, const char *tmp, int out, uint64_t size,
                       struct bg_err **err)
{
        bool reflinked;
        int r = clone_or_copy(in, out, isize, &reflinked);
        if (r < 0)
                return bg_error(err, -r, "copy '%s' to '%s': %s", image, tmp, strerror(-r));
        if (ftruncate(out, (off_t)size) < 0)
                return bg_error(err, errno, "grow '%s': %s", tmp, strerror(errno));
        if ((uint64_t)isize < size && resize_ext4(tmp, err) < 0)
                return -EIO;
        if (fsync(out) < 0)
                return bg_error(err, errno, "fsync '%s': %s", tmp, strerror(errno));
        return 0;
}

/* Remove the bases made from an earlier version of the image, and temp
 * files a crashed build left (an hour old: never one being written). */
static void drop_stale(const char *cache, const char *key)
{
        DIR *d = opendir(cache);
        if (!d)
                return;
        struct dirent *de;
        time_t now = time(NULL);
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] != '.' && str_has_suffix(de->d_name, ".raw") && !str_has_prefix(de->d_name, key))
                        unlinkat(dirfd(d), de->d_name, 0);
                else if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp-") &&
                         fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && now - st.st_mtime > 3600)
                        unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
}

/* The grown base for (image, size) in the image's cache folder, built when
 * missing.  *path is heap.  -EACCES/-EROFS/... when the cache cannot be
 * written (the caller builds a private one). */
static int grown_base(const char *image, const struct stat *ist, int in, uint64_t size, char **path,
                      struct bg_err **err)
{
        _cleanup_free_ char *idir = dir_of(image);
        _cleanup_free_ char *cache = xasprintf("%s/" GROWN_DIR, idir);
        uint64_t id[5] = { (uint64_t)ist->st_dev, (uint64_t)ist->st_ino, (uint64_t)ist->st_size,
                           (uint64_t)ist->st_mtim.tv_sec, (uint64_t)ist->st_mtim.tv_nsec };
        char key[24];
        snprintf(key, sizeof key, "%016llx-", (unsigned long long)fnv1a64(id, sizeof id, FNV1A64_SEED));
        char *final = xasprintf("%s/%s%llu.raw", cache, key, (unsigned long long)size);
        struct stat st;
        if (stat(final, &st) == 0) {
                if (S_ISREG(st.st_mode) && (uint64_t)st.st_size == size) {
                        *path = final;
                        return 0;
                }
                unlink(final);   /* damaged: rebuilt below */
        }
        if (mkdir(cache, 0700) < 0 && errno != EEXIST) {
                int e = errno;
                free(final);
                return -e;
        }
        _cleanup_free_ char *tmp = NULL;
        int out = make_temp(final, &tmp, NULL);
        if (out < 0) {
                free(final);
                return out;
        }
        int r = build_grown(image, in, ist->st_size, tmp, out, size, err);
        close(out);
        if (r == 0) {
                drop_stale(cache, key);
                /* link, not rename: a base a racing builder put there first
                 * stays (same content), and its users keep the same inode. */
                if (link(tmp, final) < 0 && errno != EEXIST)
                        r = bg_error(err, errno, "link '%s': %s", final, strerror(errno));
        }
        unlink(tmp);
        if (r < 0) {
                free(final);
                return r == -EACCES || r == -EROFS ? -EIO : r;   /* a real failure, not "no cache" */
        }
        *path = final;
        return 0;
}

/* ---- qcow2 ---- */

#define QCOW2_CLUSTER_BITS 16
#define QCOW2_CLUSTER (1u << QCOW2_CLUSTER_BITS)

static void be32(unsigned char *p, uint32_t v) { uint32_t b = htobe32(v); memcpy(p, &b, 4); }
static void be64(unsigned char *p, uint64_t v) { uint64_t b = htobe64(v); memcpy(p, &b, 8); }
static void be16(unsigned char *p, uint16_t v) { uint16_t b = htobe16(v); memcpy(p, &b, 2); }

/* Write an empty qcow2 v3 image of virtual size `size` backed by the raw
 * file `backing` (a name relative to the overlay's folder) into the empty
 * file fd.  Layout, one 64 KiB cluster each: 0 header, 1 refcount table,
 * 2 refcount block (16-bit refcounts), 3.. L1 table (all zero: every
 * cluster reads through to the backing file). */
static int write_qcow2(int fd, uint64_t size, const char *backing)
{
        size_t blen = strlen(backing);
        if (blen == 0 || blen > 1023)
                return -ENAMETOOLONG;
        size = (size + 511) & ~(uint64_t)511;
        uint64_t l2_span = (uint64_t)QCOW2_CLUSTER * (QCOW2_CLUSTER / 8);
        uint64_t l1_size = (size + l2_span - 1) / l2_span;
        uint64_t l1_clusters = (l1_size * 8 + QCOW2_CLUSTER - 1) / QCOW2_CLUSTER;
        if (l1_clusters == 0)
                l1_clusters = 1;
        uint64_t n_clusters = 3 + l1_clusters;
        if (n_clusters > QCOW2_CLUSTER / 2)
                return -EFBIG;   /* one refcount block covers 32768 clusters */

        unsigned char hdr[QCOW2_CLUSTER / 16];   /* the header, its extensions and the backing name */
        memset(hdr, 0, sizeof hdr);
        const uint32_t hdr_len = 104, ext_off = 104;
        const uint32_t backing_off = ext_off + 16 + 8;   /* format extension, end marker */
        if (backing_off + blen > sizeof hdr)
                return -ENAMETOOLONG;
        memcpy(hdr, "QFI\xfb", 4);
        be32(hdr + 4, 3);                                  /* version */
        be64(hdr + 8, backing_off);                        /* backing_file_offset */
        be32(hdr + 16, (uint32_t)blen);                    /* backing_file_size */
        be32(hdr + 20, QCOW2_CLUSTER_BITS);
        be64(hdr + 24, size);
        be32(hdr + 32, 0);                                 /* no encryption */
        be32(hdr + 36, (uint32_t)l1_size);
        be64(hdr + 40, 3ull * QCOW2_CLUSTER);              /* l1_table_offset */
        be64(hdr + 48, 1ull * QCOW2_CLUSTER);              /* refcount_table_offset */
        be32(hdr + 56, 1);                                 /* refcount_table_clusters */
        /* nb_snapshots, snapshots_offset, feature bits: 0 */
        be32(hdr + 96, 4);                                 /* refcount_order: 16 bits */
        be32(hdr + 100, hdr_len);
        be32(hdr + ext_off, 0xE2792ACA);                   /* backing file format name */
        be32(hdr + ext_off + 4, 3);
        memcpy(hdr + ext_off + 8, "raw", 3);
        /* end of extensions: 8 zero bytes at ext_off + 16 */
        memcpy(hdr + backing_off, backing, blen);

        unsigned char rt[8], rb[2];
        be64(rt, 2ull * QCOW2_CLUSTER);
        be16(rb, 1);
        if (pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
            pwrite(fd, rt, sizeof rt, QCOW2_CLUSTER) != (ssize_t)sizeof rt)
                return errno ? -errno : -EIO;
        for (uint64_t c = 0; c < n_clusters; c++)
                if (pwrite(fd, rb, sizeof rb, (off_t)(2 * QCOW2_CLUSTER + c * 2)) != (ssize_t)sizeof rb)
                        return errno ? -errno : -EIO;
        if (ftruncate(fd, (off_t)(n_clusters * QCOW2_CLUSTER)) < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

/* ---- root disk ---- */

static char *base_path_for(const char *dest) { return xasprintf("%s.base", dest); }

/* Put a file at final from the temp file tmp (fd out): fsync'd, renamed. */
static int commit(int out, const char *tmp, const char *final, struct bg_err **err)
{
        if (fsync(out) < 0)
                return bg_error(err, errno, "fsync '%s': %s", tmp, strerror(errno));
        if (rename(tmp, final) < 0)
                return bg_error(err, errno, "rename '%s' to '%s': %s", tmp, final, strerror(errno));
        return 0;
}

/* dest.base: a hard link to base, else a copy of it. */
static int place_backing(const char *base, int bfd, off_t blen, const char *dest, struct bg_err **err)
{
        _cleanup_free_ char *bpath = base_path_for(dest);
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int out = make_temp(bpath, &tmp, err);
        if (out < 0)
                return out;
        int r = 0;
        if (unlink(tmp) < 0 || link(base, tmp) < 0) {
                bool ign;
                int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                r = fd < 0 ? -errno : clone_or_copy(bfd, fd, blen, &ign);
                if (r == 0 && fsync(fd) < 0)
                        r = -errno;
                if (fd >= 0)
                        close(fd);
                if (r < 0) {
                        unlink(tmp);
                        return bg_error(err, -r, "copy '%s' to '%s': %s", base, tmp, strerror(-r));
                }
        }
        if (rename(tmp, bpath) < 0) {
                r = bg_error(err, errno, "rename '%s' to '%s': %s", tmp, bpath, strerror(errno));
                unlink(tmp);
        }
        return r;
}

static int make_root(const char *image, const char *dest, uint64_t size, bool allow_qcow2, enum disk_method *used,
                     char **private_base, struct bg_err **err)
{
        _cleanup_close_ int in = open(image, O_RDONLY | O_CLOEXEC);
        struct stat ist;
        if (in < 0)
                return bg_error(err, errno, "open image '%s': %s", image, strerror(errno));
        if (fstat(in, &ist) < 0 || !S_ISREG(ist.st_mode) || ist.st_size == 0)
                return bg_error(err, EINVAL, "image '%s' is not a non-empty regular file", image);
        if (size < (uint64_t)ist.st_size)
                size = (uint64_t)ist.st_size;   /* never shrink a filesystem */
        size &= ~(uint64_t)4095;
        if (size < (uint64_t)ist.st_size)
                size = (uint64_t)ist.st_size;

        /* The base: the image itself when no growth is needed, else the
         * shared grown base, else a private one. */
        _cleanup_free_ char *base = NULL;
        if (size == (uint64_t)ist.st_size) {
                base = xstrdup(image);
        } else {
                int r = grown_base(image, &ist, in, size, &base, err);
                if (r < 0 && r != -EACCES && r != -EROFS && r != -EPERM)
                        return bg_error_wrap(err, "grow image '%s' to %llu bytes", image, (unsigned long long)size);
                if (r < 0) {
                        /* The cache cannot be written: a private base, for this VM alone. */
                        _cleanup_free_ char *pb = xasprintf("%s.grown", dest);
                        _cleanup_free_ char *tmp = NULL;
                        _cleanup_close_ int out = make_temp(pb, &tmp, err);
                        if (out < 0)
                                return out;
                        if (build_grown(image, in, ist.st_size, tmp, out, size, err) < 0) {
                                unlink(tmp);
                                return -EIO;
                        }
                        if (rename(tmp, pb) < 0) {
                                int e = errno;
                                unlink(tmp);
                                return bg_error(err, e, "rename '%s' to '%s': %s", tmp, pb, strerror(e));
                        }
                        base = xstrdup(pb);
                        *private_base = steal_pointer(&pb);
                }
        }
        _cleanup_close_ int bfd = open(base, O_RDONLY | O_CLOEXEC);
        struct stat bst;
        if (bfd < 0 || fstat(bfd, &bst) < 0)
                return bg_error(err, errno, "open '%s': %s", base, strerror(errno));

        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int out = make_temp(dest, &tmp, err);
        if (out < 0)
                return out;
        int r;
        if (ioctl(out, FICLONE, bfd) == 0) {
                *used = DISK_REFLINK;
                r = commit(out, tmp, dest, err);
        } else if (!reflink_unsupported(errno)) {
                r = bg_error(err, errno, "reflink '%s': %s", base, strerror(errno));
        } else if (allow_qcow2) {
                *used = DISK_QCOW2;
                _cleanup_free_ char *bname = xasprintf("%s.base", base_of(dest));
                r = place_backing(base, bfd, bst.st_size, dest, err);
                if (r == 0 && (r = write_qcow2(out, size, bname)) < 0)
                        bg_error(err, -r, "write qcow2 '%s': %s", tmp, strerror(-r));
                if (r == 0)
                        r = commit(out, tmp, dest, err);
        } else {
                *used = DISK_SPARSE_COPY;
                r = sparse_copy(bfd, out, bst.st_size);
                if (r < 0)
                        bg_error(err, -r, "copy '%s' to '%s': %s", base, tmp, strerror(-r));
                else
                        r = commit(out, tmp, dest, err);
        }
        if (r < 0)
                unlink(tmp);
        return r;
}

int disk_root_create(const char *image, const char *dest, uint64_t size, bool allow_qcow2,
                     enum disk_method *used, struct bg_err **err)
{
        _cleanup_free_ char *bpath = base_path_for(dest);
        _cleanup_free_ char *private_base = NULL;
        enum disk_method m = DISK_SPARSE_COPY;
        unlink(dest);
        unlink(bpath);
        int r = make_root(image, dest, size, allow_qcow2, &m, &private_base, err);
        if (private_base)
                unlink(private_base);   /* dest (or dest.base) holds its own link or copy */
        if (r < 0) {
                unlink(dest);
                unlink(bpath);
                return bg_error_wrap(err, "root disk '%s'", dest);
        }
        if (used)
                *used = m;
        return 0;
}

/* ---- probe ---- */

static int tmp_in(const char *dir)
{
        int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
                return fd;
        _cleanup_free_ char *t = xasprintf("%s/.banger-probe-XXXXXX", dir);
        fd = mkostemp(t, O_CLOEXEC);
        if (fd >= 0)
                unlink(t);
        return fd;
}

enum disk_method disk_probe_method(const char *dir, bool allow_qcow2)
{
        enum disk_method fallback = allow_qcow2 ? DISK_QCOW2 : DISK_SPARSE_COPY;
        _cleanup_close_ int a = tmp_in(dir);
        _cleanup_close_ int b = tmp_in(dir);
        if (a < 0 || b < 0)
                return fallback;
        char block[4096];
        memset(block, 'b', sizeof block);
        if (pwrite(a, block, sizeof block, 0) != (ssize_t)sizeof block || fsync(a) < 0)
                return fallback;
        return ioctl(b, FICLONE, a) == 0 ? DISK_REFLINK : fallback;
}
