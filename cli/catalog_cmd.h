/* catalog_cmd: what `banger kernel` and `banger image` share. */
#ifndef BANGER_CATALOG_CMD_H
#define BANGER_CATALOG_CMD_H

#include <jansson.h>
#include <stddef.h>

struct cli;

/* `banger kernel rm` / `banger image rm NAME... [--force]`: kind is
 * "kernel" or "image".  Refused while a sandbox uses the entry (asked of
 * bangerd; --force only overrides an unreachable daemon). */
int catalog_cmd_rm(struct cli *cli, int argc, char **argv, char *label, const char *kind);

/* Fills the two middle columns of an entry's list row (NAME and AGE are
 * common); each buffer holds len bytes. */
typedef void (*catalog_row_fn)(const json_t *entry, char *c1, char *c2, size_t len);

/* `banger kernel list` / `banger image list [-o table|json]` over folder
 * ("kernels", "images"); header names the two middle columns. */
int catalog_cmd_list(struct cli *cli, int argc, char **argv, char *label, const char *folder,
                     const char *h1, const char *h2, catalog_row_fn row);

#endif
