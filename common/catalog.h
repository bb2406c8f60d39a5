/* catalog: the kernels and images banger keeps, by name.
 *
 *   STATE/kernels/NAME/vmlinuz     bzImage (QEMU)
 *                     /vmlinux     uncompressed ELF (Firecracker)
 *                     /initrd.img  banger's initramfs (gzip'd newc cpio)
 *                     /kernel.json {"name","version","source","created"}
 *   STATE/images/NAME/rootfs.ext4  root filesystem image
 *                    /image.json   {"name","recipe","size","created"}
 *
 * The metadata file is written last (atomically): an entry without it is an
 * import or build cut short, never used and removed by the next import.
 * Both the CLI (which imports and builds) and bangerd (which uses) link
 * this; neither talks to the other about it.
 */
#ifndef BANGER_CATALOG_H
#define BANGER_CATALOG_H

#include <jansson.h>
#include <stdbool.h>

struct bg_err;

/* Names: [a-z0-9][a-z0-9._-]{0,62}, no "..". */
bool catalog_name_valid(const char *name);

struct kernel_paths {
        char *dir;
        char *vmlinuz;
        char *vmlinux;
        char *initrd;
        char *meta;
};

/* Paths of kernel NAME; -ENOENT with "kernel 'NAME' is not imported (banger
 * kernel import NAME --apt)" when it is missing or incomplete. */
int catalog_kernel(const char *state_dir, const char *name, struct kernel_paths *out, struct bg_err **err);
void kernel_paths_release(struct kernel_paths *k);

/* Path of image NAME's rootfs; -ENOENT with a hint when missing. */
int catalog_image(const char *state_dir, const char *name, char **rootfs, struct bg_err **err);

/* The folder for a new entry (kind "kernels" or "images"), emptied of any
 * earlier, unfinished attempt.  Refuses (-EEXIST) when a complete entry of
 * that name exists. */
int catalog_begin(const char *state_dir, const char *kind, const char *name, char **dir, struct bg_err **err);
/* Write the metadata file last, atomically: the entry becomes usable. */
int catalog_commit(const char *dir, const char *kind, json_t *meta, struct bg_err **err);
/* Remove an entry whole. */
int catalog_remove(const char *state_dir, const char *kind, const char *name, struct bg_err **err);

/* Every complete entry of kind: a JSON array of their metadata objects. */
json_t *catalog_list(const char *state_dir, const char *kind);

#endif
