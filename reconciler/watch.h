/* watch: inotify on the sandboxes folder.
 *
 * Only *.yaml / *.yml files count (regular files when written and closed,
 * symlinks when created), and never hidden ones (editors' temp and
 * lock files start with '.' or end in '~', '.swp', ...).  Events are read in
 * batches and folded per file name, so a write-then-rename save, or a file
 * moved within the folder, becomes one change per file, never a delete
 * followed by a create.
 */
#ifndef BANGER_WATCH_H
#define BANGER_WATCH_H

#include <stdbool.h>
#include <stddef.h>

struct bg_err;

/* Whether a file name in the folder is a spec file we read. */
bool watch_is_spec_name(const char *name);

/* inotify fd (non-blocking, close-on-exec) watching dir. */
int watch_open(const char *dir, int *fd, struct bg_err **err);

/* Read every pending event from fd (waiting up to settle_ms for the
 * partner of a half-seen rename) and return, in *names (a heap array of
 * heap strings, *n of them), each spec file name that changed, was
 * created, moved or removed; the caller looks at the folder to see which,
 * and must apply the whole batch at once so both sides of a rename land
 * together.  Returns -1 on overflow: the caller must rescan the folder. */
int watch_drain(int fd, const char *dir, int settle_ms, char ***names, size_t *n);

#endif
