/* unpack: see unpack.h.  The inner data.tar is opened with read
 * callbacks that pull from the outer archive's current entry, so a 30 MB
 * package never exists unpacked, on disk or in memory. */
#include "unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "spawn.h"
#include "util.h"

#define BLOCK 65536

struct inner {
        struct archive *outer;
        unsigned char buf[BLOCK];
};

static la_ssize_t inner_read(struct archive *a, void *arg, const void **buf)
{
        struct inner *in = arg;
        la_ssize_t n = archive_read_data(in->outer, in->buf, sizeof in->buf);
        if (n < 0)
                archive_set_error(a, EIO, "%s", archive_error_string(in->outer));
        *buf = in->buf;
        return n;
}

static const char *normalise(const char *p)
{
        while (p[0] == '.' && p[1] == '/')
                p += 2;
        while (*p == '/')
                p++;
        return p;
}

static int each_tar_entry(struct archive *outer, const char *member, unpack_deb_fn fn,
                          void *arg, struct bg_err **err)
{
        struct inner *in = xmalloc(sizeof *in);
        in->outer = outer;
        struct archive *tar = archive_read_new();
        archive_read_support_filter_all(tar);
        archive_read_support_format_tar(tar);
        int r = 0;
        if (archive_read_open(tar, in, NULL, inner_read, NULL) != ARCHIVE_OK) {
                r = bg_error(err, EINVAL, "%s: %s", member, archive_error_string(tar));
                goto out;
        }
        for (;;) {
                struct archive_entry *e;
                int h = archive_read_next_header(tar, &e);
                if (h == ARCHIVE_EOF)
                        break;
                if (h < ARCHIVE_WARN) {
                        r = bg_error(err, EINVAL, "%s: %s", member, archive_error_string(tar));
                        goto out;
                }
                if (spawn_interrupted()) {
                        r = bg_error(err, EINTR, "interrupted");
                        goto out;
                }
                const char *path = archive_entry_pathname(e);
                int f = fn(tar, e, normalise(path ? path : ""), arg, err);
                if (f < 0) {
                        r = f;
                        goto out;
                }
                if (f > 0)
                        break;
        }
out:
        archive_read_free(tar);
        free(in);
        return r;
}

int unpack_deb(const char *file, unpack_deb_fn fn, void *arg, struct bg_err **err)
{
        struct archive *a = archive_read_new();
        archive_read_support_format_ar(a);
        int r = 0;
        bool seen_binary = false, seen_data = false;

        if (archive_read_open_filename(a, file, BLOCK) != ARCHIVE_OK) {
                r = bg_error(err, archive_errno(a) > 0 ? archive_errno(a) : EINVAL, "not a Debian package: %s",
                             archive_error_string(a));
                goto out;
        }
        for (;;) {
                struct archive_entry *e;
                int h = archive_read_next_header(a, &e);
                if (h == ARCHIVE_EOF)
                        break;
                if (h < ARCHIVE_WARN) {
                        r = bg_error(err, EINVAL, "not a Debian package: %s", archive_error_string(a));
                        goto out;
                }
                const char *name = archive_entry_pathname(e);
                if (!name)
                        continue;
                if (strcmp(name, "debian-binary") == 0) {
                        char v[16] = { 0 };
                        if (archive_read_data(a, v, sizeof v - 1) < 2 || strncmp(v, "2.", 2) != 0) {
                                r = bg_error(err, EINVAL, "not a Debian package: bad debian-binary");
                                goto out;
                        }
                        seen_binary = true;
                } else if (str_has_prefix(name, "data.tar")) {
                        if (!seen_binary) {
                                r = bg_error(err, EINVAL, "not a Debian package: no debian-binary member");
                                goto out;
                        }
                        seen_data = true;
                        r = each_tar_entry(a, name, fn, arg, err);
                        goto out;
                }
        }
        if (!seen_data)
                r = bg_error(err, EINVAL, "not a Debian package: no data.tar member");
out:
        archive_read_free(a);
        return r;
}

int unpack_entry_data(struct archive *a, size_t max, unsigned char **out, size_t *len, struct bg_err **err)
{
        size_t cap = BLOCK, n = 0;
        unsigned char *buf = xmalloc(cap);
        for (;;) {
                if (n == cap) {
                        if (cap >= max + 1) {
                                free(buf);
                                return bg_error(err, EFBIG, "larger than %zu bytes", max);
                        }
                        cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
                        buf = xrealloc(buf, cap);
                }
                la_ssize_t r = archive_read_data(a, buf + n, cap - n);
                if (r < 0) {
                        free(buf);
                        return bg_error(err, EIO, "%s", archive_error_string(a));
                }
                if (r == 0)
                        break;
                n += (size_t)r;
                if (n > max) {
                        free(buf);
                        return bg_error(err, EFBIG, "larger than %zu bytes", max);
                }
        }
        *out = buf;
        *len = n;
        return 0;
}

static struct archive *raw_open(const void *data, size_t len, const char *what, struct bg_err **err)
{
        struct archive *a = archive_read_new();
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        struct archive_entry *e;
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK || archive_read_next_header(a, &e) != ARCHIVE_OK) {
                bg_error(err, EINVAL, "%s: cannot decompress: %s", what, archive_error_string(a));
                archive_read_free(a);
                return NULL;
        }
        return a;
}

int unpack_raw(const void *data, size_t len, size_t max, const char *what, unsigned char **out, size_t *outlen,
               struct bg_err **err)
{
        struct archive *a = raw_open(data, len, what, err);
        if (!a)
                return -EINVAL;
        int r = unpack_entry_data(a, max, out, outlen, err);
        archive_read_free(a);
        if (r < 0)
                return bg_error_wrap(err, "%s: decompress", what);
        return 0;
}

int unpack_raw_to_fd(const void *data, size_t len, uint64_t max, const char *what, int fd, unsigned char magic[4],
                     uint64_t *written, struct bg_err **err)
{
        struct archive *a = raw_open(data, len, what, err);
        if (!a)
                return -EINVAL;
        unsigned char *buf = xmalloc(1 << 20);
        uint64_t total = 0;
        int r = 0;
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, 1 << 20);
                if (n < 0) {
                        r = bg_error(err, EIO, "%s: decompress: %s", what, archive_error_string(a));
                        break;
                }
                if (n == 0)
                        break;
                if (magic && total < 4)
                        memcpy(magic + total, buf, (size_t)n < 4 - total ? (size_t)n : 4 - total);
                total += (uint64_t)n;
                if (total > max) {
                        r = bg_error(err, EFBIG, "%s: decompresses to more than %llu bytes", what,
                                     (unsigned long long)max);
                        break;
                }
                for (la_ssize_t off = 0; off < n;) {
                        ssize_t w = write(fd, buf + off, (size_t)(n - off));
                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                r = bg_error(err, errno, "write: %s", strerror(errno));
                                goto out;
                        }
                        off += w;
                }
        }
out:
        free(buf);
        archive_read_free(a);
        if (written)
                *written = total;
        return r;
}
