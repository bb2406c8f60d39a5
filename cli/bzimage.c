/* bzimage: see bzimage.h. */
#include "bzimage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "unpack.h"
#include "util.h"

#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe      /* 0xaa55 */
#define HDR_MAGIC 0x202          /* "HdrS" */
#define HDR_VERSION 0x206
#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define VMLINUX_MAX (1ull << 30)

static uint32_t le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int bzimage_payload(const unsigned char *img, size_t len, size_t *off, size_t *plen, struct bg_err **err)
{
        if (len < 0x250 || img[HDR_BOOT_FLAG] != 0x55 || img[HDR_BOOT_FLAG + 1] != 0xaa ||
            memcmp(img + HDR_MAGIC, "HdrS", 4) != 0)
                return bg_error(err, EINVAL, "not a bzImage (no x86 boot header)");
        unsigned version = img[HDR_VERSION] | img[HDR_VERSION + 1] << 8;
        if (version < 0x208)
                return bg_error(err, EINVAL, "bzImage boot protocol %u.%02u is too old (want 2.08 or later)",
                                version >> 8, version & 0xff);
        size_t sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
        size_t pm = (sects + 1) * 512;
        uint32_t po = le32(img + HDR_PAYLOAD_OFFSET), pl = le32(img + HDR_PAYLOAD_LENGTH);
        if (pl == 0 || pm > len || po > len - pm || pl > len - pm - po)
                return bg_error(err, EINVAL, "bzImage payload (offset %u, length %u) lies outside the file", po, pl);
        *off = pm + po;
        *plen = pl;
        return 0;
}

int bzimage_write_vmlinux(const unsigned char *img, size_t len, const char *path, struct bg_err **err)
{
        size_t off, plen;
        if (bzimage_payload(img, len, &off, &plen, err) < 0)
                return -EINVAL;
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return bg_error(err, errno, "create %s: %s", path, strerror(errno));
        unsigned char magic[4] = { 0 };
        uint64_t size = 0;
        int r = unpack_raw_to_fd(img + off, plen, VMLINUX_MAX, "bzImage payload", fd, magic, &size, err);
        if (r == 0 && memcmp(magic, "\177ELF", 4) != 0)
                r = bg_error(err, EINVAL, "bzImage payload does not decompress to an ELF kernel");
        if (r == 0) {
                /* e_ident[EI_CLASS] = ELFCLASS64 and e_machine = EM_X86_64 (62) */
                unsigned char hdr[20];
                if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
                        r = bg_error(err, EIO, "read back %s: %s", path, strerror(errno));
                else if (hdr[4] != 2 || hdr[18] != 62 || hdr[19] != 0)
                        r = bg_error(err, EINVAL, "bzImage payload is an ELF file, but not an x86-64 kernel");
        }
        if (r == 0 && fsync(fd) < 0)
                r = bg_error(err, errno, "fsync %s: %s", path, strerror(errno));
        if (close(fd) < 0 && r == 0)
                r = bg_error(err, errno, "close %s: %s", path, strerror(errno));
        if (r < 0)
                unlink(path);
        return r;
}
