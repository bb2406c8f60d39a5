/* spec_internal: what spec.c, spec_json.c, spec_model.c and config.c share
 * beyond the public spec.h: the one validator that turns a node tree (from
 * YAML or JSON) into a bg_spec, and the field checks config reuses so
 * vm_defaults and file_sync follow exactly the spec's rules. Not for use
 * outside common/. */
#ifndef BANGER_SPEC_INTERNAL_H
#define BANGER_SPEC_INTERNAL_H

#include <stdint.h>

#include "spec.h"
#include "yamlnode.h"

/* Limits every spec and config read uses. */
extern const struct yn_limits spec_yn_limits;

/* Validate a document tree, appending every problem to e.  Returns a new
 * spec (caller frees) when the tree added no problem, else NULL. */
struct bg_spec *spec_check_tree(const struct yn_node *root, struct yn_errs *e);

/* metadata.name as text when it is a string, else NULL.  Caller frees. */
char *spec_tree_name(const struct yn_node *root);

/* Field checks shared with config.c; each records its own error and
 * returns false on a bad value (a poisoned node fails silently). */
bool spec_check_vcpu(struct yn_errs *e, const struct yn_node *n, const char *path, unsigned *out);
bool spec_check_memory(struct yn_errs *e, const struct yn_node *n, const char *path, unsigned *out);
bool spec_check_disk_size(struct yn_errs *e, const struct yn_node *n, const char *path, uint64_t *out);
/* A non-empty string of at most 255 bytes (image and kernel references). */
bool spec_check_ref(struct yn_errs *e, const struct yn_node *n, const char *path, char **out);

/* A file_sync sequence at path ("spec.file_sync"; config: "file_sync"): at
 * most SPEC_MAX_FILE_SYNC {host, guest, mode} entries, each checked by
 * the same rules.  *out gets a heap array of *n entries (xcalloc'd, so
 * entries with errors hold NULLs); the caller frees each host and guest
 * and the array, even when errors were recorded. */
void spec_check_file_sync(struct yn_errs *e, const struct yn_node *seq, const char *path,
                          struct spec_file_sync **out, size_t *n);

#define SPEC_REF_MAX 255

/* Canonical JSON of the parts spec_diff compares as wholes (new refs). */
json_t *spec_json_workspace(const struct spec_workspace *w);
json_t *spec_json_file_sync(const struct bg_spec *s);
json_t *spec_json_ports(const struct bg_spec *s);

#endif
