/* folder: the watched sandboxes folder as the CLI edits it.  The folder is
 * the source of truth, so the CLI changes it the way a careful user would:
 * a document is replaced or removed where it lives (other documents of a
 * multi-document file and the user's comments survive), every write is
 * atomic, and a file that holds other sandboxes is never clobbered. */
#ifndef BANGER_FOLDER_H
#define BANGER_FOLDER_H

#include <stdbool.h>
#include <stddef.h>

struct bg_err;
struct spec_file;

struct folder {
        char *dir;
        struct spec_file **files;   /* every *.yaml and *.yml, sorted by path */
        size_t n_files;
};

/* Parse every spec file of dir (a missing dir is empty). */
int folder_load(struct folder *f, const char *dir, struct bg_err **err);
void folder_release(struct folder *f);

/* The files holding a document named name, in path order: a heap array
 * of borrowed pointers (caller frees the array), *n of them. */
const struct spec_file **folder_claims(const struct folder *f, const char *name, size_t *n);

/* Where folder_put would write name, or an error saying why it would
 * refuse.  *target (may be NULL) gets a heap path. */
int folder_check_put(const struct folder *f, const char *name, char **target, struct bg_err **err);

/* Make raw (one YAML document's text) the only document for name: it
 * replaces the document in the first file that holds it (other files lose
 * theirs), else it becomes DIR/<name>.yaml.  *changed tells whether any
 * file changed.  The folder's view is refreshed after each write. */
int folder_put(struct folder *f, const char *name, const char *raw, bool *changed, struct bg_err **err);

/* Remove every document named name: a file left empty is unlinked, other
 * files are rewritten without it.  *n_files tells how many files changed. */
int folder_remove(struct folder *f, const char *name, size_t *n_files, struct bg_err **err);

/* True when path (after realpath) lies inside the folder. */
bool folder_contains(const struct folder *f, const char *path);

#endif
