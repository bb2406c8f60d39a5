/* disk: per-VM disks, shared by the qemu and firecracker drivers.
 *
 * The root disk is never a whole copy of the image: a reflink (FICLONE)
 * where the filesystem can, else a qcow2 overlay (QEMU only), else a sparse
 * copy (SEEK_DATA/SEEK_HOLE; Firecracker on a filesystem without reflink).
 * Its view is grown to disk_size: the image is grown (resize2fs) once per
 * (image, size) into a shared base in IMAGE_DIR/.banger-grown/, so each VM
 * costs the same whatever its size.  A qcow2 disk comes with a companion
 * hard link DEST.base to its backing base, so rebuilding or removing the
 * image never changes what a running VM reads.  The work disk (mounted at
 * /root in the guest) is workdisk.h's.
 */
#ifndef BANGER_DISK_H
#define BANGER_DISK_H

#include <stdbool.h>
#include <stdint.h>

struct bg_err;

enum disk_method { DISK_REFLINK, DISK_QCOW2, DISK_SPARSE_COPY };

const char *disk_method_name(enum disk_method m);   /* "reflink", "qcow2", "sparse-copy" */

/* Make dest from image (an ext4 file), at least `size` bytes as the guest
 * sees it.  allow_qcow2: the consumer reads qcow2 (QEMU).  dest is a raw
 * file for reflink/sparse-copy and a qcow2 file otherwise; *used says which.
 * On failure nothing is left at dest. */
int disk_root_create(const char *image, const char *dest, uint64_t size, bool allow_qcow2,
                     enum disk_method *used, struct bg_err **err);

/* Which root-disk method dir's filesystem gives (for doctor). */
enum disk_method disk_probe_method(const char *dir, bool allow_qcow2);

#endif
