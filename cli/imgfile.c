/* imgfile: see imgfile.h. */
#include "imgfile.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

#define SB_OFFSET 1024
#define SB_BLOCKS_LO 0x04
#define SB_LOG_BLOCK_SIZE 0x18
#define SB_MAGIC 0x38
#define SB_INCOMPAT 0x60
#define SB_BLOCKS_HI 0x150
#define INCOMPAT_64BIT 0x80

static uint32_t le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int imgfile_check_ext4(const char *path, uint64_t *size, struct bg_err **err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return bg_error(err, errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return bg_error(err, EINVAL, "%s: not a regular file", path);
        unsigned char sb[1024];
        if (pread(fd, sb, sizeof sb, SB_OFFSET) != (ssize_t)sizeof sb || sb[SB_MAGIC] != 0x53 ||
            sb[SB_MAGIC + 1] != 0xef)
                return bg_error(err, EINVAL, "%s: not an ext4 filesystem (no superblock magic 0xEF53 at byte 1080)",
                                path);
        uint32_t log = le32(sb + SB_LOG_BLOCK_SIZE);
        if (log > 6)
                return bg_error(err, EINVAL, "%s: ext4 superblock with a bad block size (log %u)", path, log);
        uint64_t bsize = 1024ull << log;
        uint64_t blocks = le32(sb + SB_BLOCKS_LO);
        if (le32(sb + SB_INCOMPAT) & INCOMPAT_64BIT)
                blocks |= (uint64_t)le32(sb + SB_BLOCKS_HI) << 32;
        if (blocks == 0 || blocks > UINT64_MAX / bsize)
                return bg_error(err, EINVAL, "%s: ext4 superblock with a bad block count", path);
        uint64_t want = blocks * bsize;
        if ((uint64_t)st.st_size < want)
                return bg_error(err, EINVAL, "%s: truncated: the filesystem is %llu bytes, the file only %llu", path,
                                (unsigned long long)want, (unsigned long long)st.st_size);
        *size = (uint64_t)st.st_size;
        return 0;
}

static int copy_range(int in, int out, off_t off, off_t end)
{
        while (off < end) {
                off_t o_in = off, o_out = off;
                ssize_t n = copy_file_range(in, &o_in, out, &o_out, (size_t)(end - off), 0);
                if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
                        char buf[1 << 16];
                        size_t want = (size_t)(end - off) < sizeof buf ? (size_t)(end - off) : sizeof buf;
                        n = pread(in, buf, want, off);
                        if (n > 0 && pwrite(out, buf, (size_t)n, off) != n)
                                return -1;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                if (n == 0) {
                        errno = EIO;   /* the source shrank under us */
                        return -1;
                }
                off += n;
        }
        return 0;
}

static int sparse_copy(int in, int out, off_t size)
{
        if (ftruncate(out, size) < 0)
                return -1;
        off_t pos = 0;
        while (pos < size) {
                off_t data = lseek(in, pos, SEEK_DATA);
                if (data < 0) {
                        if (errno == ENXIO)
                                return 0;   /* only a hole is left */
                        if (errno == EINVAL)   /* no SEEK_DATA: copy the rest whole */
                                return copy_range(in, out, pos, size);
                        return -1;
                }
                off_t hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0)
                        hole = size;
                if (hole > size)
                        hole = size;
                if (copy_range(in, out, data, hole) < 0)
                        return -1;
                pos = hole;
        }
        return 0;
}

int imgfile_copy(const char *src, const char *dst, struct bg_err **err)
{
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (in < 0 || fstat(in, &st) < 0)
                return bg_error(err, errno, "%s: %s", src, strerror(errno));
        int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out < 0)
                return bg_error(err, errno, "create %s: %s", dst, strerror(errno));
        int r = 0;
        if (ioctl(out, FICLONE, in) < 0 && sparse_copy(in, out, st.st_size) < 0)
                r = bg_error(err, errno, "copy %s to %s: %s", src, dst, strerror(errno));
        if (r == 0 && fsync(out) < 0)
                r = bg_error(err, errno, "fsync %s: %s", dst, strerror(errno));
        if (close(out) < 0 && r == 0)
                r = bg_error(err, errno, "close %s: %s", dst, strerror(errno));
        if (r < 0)
                unlink(dst);
        return r;
}
