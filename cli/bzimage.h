/* bzimage: the x86 boot image a distribution ships as vmlinuz, and the
 * uncompressed ELF vmlinux inside it that Firecracker wants.
 *
 * The real-mode setup header (Documentation/arch/x86/boot.rst) says where
 * the compressed kernel sits: payload_offset and payload_length, relative
 * to the protected-mode code that starts after (setup_sects + 1) sectors.
 * The payload is gzip, bzip2, lzma, xz, lzo, lz4 or zstd, with the
 * uncompressed size appended; libarchive's raw reader undoes whichever it
 * is.
 */
#ifndef BANGER_BZIMAGE_H
#define BANGER_BZIMAGE_H

#include <stddef.h>

struct bg_err;

/* Check that img is a bzImage with a payload (boot protocol >= 2.08) and
 * return where the payload lies.  Negative with err saying why not. */
int bzimage_payload(const unsigned char *img, size_t len, size_t *off, size_t *plen, struct bg_err **err);

/* Decompress img's payload into the file at path (created mode 0644) and
 * check that it is an x86-64 ELF image.  The file is removed on failure. */
int bzimage_write_vmlinux(const unsigned char *img, size_t len, const char *path, struct bg_err **err);

#endif
