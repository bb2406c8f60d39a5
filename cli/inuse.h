/* inuse: may a catalog entry go?  Only bangerd knows every sandbox (specs
 * in the folder and records of sandboxes still being torn down), so the
 * CLI asks its API (GET /v1/sandboxes) instead of reading the folder. */
#ifndef BANGER_INUSE_H
#define BANGER_INUSE_H

#include <stdbool.h>

struct bg_err;
struct bg_paths;

/* 0 when no sandbox's spec.<field> ("kernel" or "image") is name.  A
 * sandbox without spec.image uses the config's default_image.  -EBUSY
 * with err naming the sandboxes that use it; when bangerd cannot be asked,
 * negative with that reason, unless force (then a warning on stderr and 0). */
int inuse_check(const struct bg_paths *p, const char *field, const char *name, bool force, struct bg_err **err);

#endif
