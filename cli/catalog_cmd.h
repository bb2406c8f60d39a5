/* catalog_cmd: what `banger kernel` and `banger image` share. */
#ifndef BANGER_CATALOG_CMD_H
#define BANGER_CATALOG_CMD_H

struct cli;

/* `banger kernel rm` / `banger image rm NAME... [--force]`: kind is
 * "kernel" or "image".  Refused while a sandbox uses the entry (asked of
 * bangerd; --force only overrides an unreachable daemon). */
int catalog_cmd_rm(struct cli *cli, int argc, char **argv, char *label, const char *kind);

#endif
