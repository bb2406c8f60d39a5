/* lean: banger without libgit2 and libarchive; what needs them runs in
 * banger-full (see cli_full_parts in cli.h). */
#include "cli.h"

const struct cli_full_parts cli_full = { 0 };
