/* unpack: libarchive for the kernel import.  A Debian package is read as
 * a stream (the outer `ar` archive, then its data.tar.{xz,zst,gz,bz2}
 * read straight from the outer entry), never unpacked to disk; and single
 * compressed blobs (a .ko.xz, a bzImage payload) are undone with
 * libarchive's raw format, whatever filter they use.
 *
 * Everything read here is untrusted: sizes are bounded by the caller.
 */
#ifndef BANGER_UNPACK_H
#define BANGER_UNPACK_H

#include <stddef.h>
#include <stdint.h>

struct archive;
struct archive_entry;
struct bg_err;

/* Called for each entry of the package's data.tar; path is normalised
 * ("boot/vmlinuz-6.1.0", no "./").  Read the entry's data with
 * unpack_entry_data() if wanted.  Return 0 to go on, 1 to stop early,
 * negative (with err) to fail. */
typedef int (*unpack_deb_fn)(struct archive *tar, struct archive_entry *e, const char *path, void *arg,
                             struct bg_err **err);

/* Run fn over every entry of the data.tar in the .deb at file.  Negative
 * with err ("not a Debian package: ...", "data.tar.xz: ...": the caller
 * adds the file's name) when it is not a readable package or its data is
 * corrupt; fn's errors come back as they are. */
int unpack_deb(const char *file, unpack_deb_fn fn, void *arg, struct bg_err **err);

/* The current entry's data as a heap buffer (caller frees) of *len bytes;
 * EFBIG when it is larger than max. */
int unpack_entry_data(struct archive *a, size_t max, unsigned char **out, size_t *len, struct bg_err **err);

/* Decompress data (any filter libarchive knows, or none) into a heap
 * buffer of at most max bytes.  what names the data in messages. */
int unpack_raw(const void *data, size_t len, size_t max, const char *what, unsigned char **out, size_t *outlen,
               struct bg_err **err);

/* Decompress data into fd, at most max bytes; the first 4 bytes written
 * go to magic (when non-NULL) and *written gets the size. */
int unpack_raw_to_fd(const void *data, size_t len, uint64_t max, const char *what, int fd, unsigned char magic[4],
                     uint64_t *written, struct bg_err **err);

#endif
