/* kernel_import: turn a Debian kernel package into a catalog kernel
 * (catalog.h): vmlinuz as shipped, vmlinux decompressed from it, banger's
 * initramfs (initramfs.h) and kernel.json.
 *
 * The package is read once, as a stream (unpack.h), and everything is
 * checked (a bzImage, every needed module present) before the catalog
 * entry is created; a failure after that removes the entry, so a failed
 * import leaves nothing in STATE/kernels/NAME.
 */
#ifndef BANGER_KERNEL_IMPORT_H
#define BANGER_KERNEL_IMPORT_H

#include <jansson.h>

struct bg_err;
struct bg_paths;

#define KERNEL_APT_DEFAULT "linux-image-cloud-amd64"

struct kernel_source {
        const char *deb;   /* a .deb on disk, or NULL */
        const char *apt;   /* a package name to fetch with apt-get, or NULL */
};

/* Import kernel name from src into p's state folder, with progress on
 * stderr.  On success *meta (when non-NULL) is the kernel.json object (new
 * reference).  Negative with err on any failure, nothing left behind. */
int kernel_import(const struct bg_paths *p, const char *name, const struct kernel_source *src, json_t **meta,
                  struct bg_err **err);

#endif
