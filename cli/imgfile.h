/* imgfile: root filesystem files brought in from outside (`banger image
 * register`): is it a whole ext4 filesystem, and copying it in as cheaply
 * as the filesystem allows (a reflink, else a copy that keeps holes). */
#ifndef BANGER_IMGFILE_H
#define BANGER_IMGFILE_H

#include <stdint.h>

struct bg_err;

/* Check that path holds an ext4 (or ext2/3) filesystem: the superblock
 * magic 0xEF53 at byte 1080, and a file at least blocks_count * block_size
 * long (a truncated image is refused).  *size gets the file's size. */
int imgfile_check_ext4(const char *path, uint64_t *size, struct bg_err **err);

/* Copy src to the new file dst (mode 0644): FICLONE when src and dst share
 * a filesystem that can, else copy_file_range over src's data extents
 * only, so holes stay holes.  dst is removed on failure. */
int imgfile_copy(const char *src, const char *dst, struct bg_err **err);

#endif
