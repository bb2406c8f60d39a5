/* image_build: root filesystem images for the catalog (catalog.h).  A
 * recipe fills a staging folder; `mkfs.ext4 -d` turns the folder into
 * rootfs.ext4 with no mount and no loop device; image.json is written
 * last.  The staging folder lives inside the catalog entry, so a build cut
 * short leaves one incomplete entry that the next build of that name (or
 * `image rm`) clears, and a failed build removes the entry at once.
 */
#ifndef BANGER_IMAGE_BUILD_H
#define BANGER_IMAGE_BUILD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct bg_err;
struct bg_paths;

struct image_recipe {
        const char *name;
        const char *summary;
        uint64_t default_size;   /* bytes */
        /* Fill the empty folder staging (as root).  name is the image's. */
        int (*stage)(const char *staging, const char *name, struct bg_err **err);
};

extern const struct image_recipe image_recipe_tiny;     /* image_tiny.c */
extern const struct image_recipe image_recipe_debian;   /* image_debian.c */

/* The recipe called name, or NULL. */
const struct image_recipe *image_recipe_find(const char *name);
/* "tiny, debian-bookworm", for messages. */
const char *image_recipe_names(void);

/* Build image name from recipe r at size bytes, progress on stderr.
 * *meta (when non-NULL) gets image.json (new reference).  Negative with
 * err on failure, with nothing left in STATE/images/NAME. */
int image_build(const struct bg_paths *p, const struct image_recipe *r, const char *name, uint64_t size,
                json_t **meta, struct bg_err **err);

/* "2G", "512M", "1536k", "4294967296": bytes (K/M/G/T are binary; an
 * optional trailing "B" or "iB").  -1 when s is not a size. */
int image_parse_size(const char *s, uint64_t *out);
/* bytes as "2G", "512M", "1.5G", "1234567B" into buf. */
void image_format_size(uint64_t bytes, char *buf, size_t len);

/* Staging helpers: rel is a path inside root ("etc/passwd" or "/etc/passwd");
 * parent folders are created (0755). */
int stage_dir(const char *root, const char *rel, unsigned mode, struct bg_err **err);
int stage_file(const char *root, const char *rel, const char *text, unsigned mode, struct bg_err **err);
int stage_symlink(const char *root, const char *rel, const char *target, struct bg_err **err);
/* Copy host file (following symlinks) to rel with mode; mode 0 keeps the host file's. */
int stage_copy(const char *root, const char *rel, const char *host, unsigned mode, struct bg_err **err);
/* Remove rel (a file or a tree); missing is fine. */
int stage_remove(const char *root, const char *rel, struct bg_err **err);

#endif
