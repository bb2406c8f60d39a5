/* index: what the spec files in the watched folder ask for, by name.
 *
 * Each file maps to the names it claims; each name to the files claiming
 * it.  A name's desired spec is valid only when exactly one document in one
 * file claims it and that document is valid; otherwise the name carries the
 * errors and the loop keeps the last valid spec it applied (the record's).
 *
 * An invalid edit must never look like a deletion: when a file has any
 * error, the names it claimed before stay claimed (with the errors) even
 * if the broken document no longer says them.  Only a file that parses
 * cleanly, or disappears, gives names up.
 *
 * Not thread-safe: the loop serialises access with its mutex.
 */
#ifndef BANGER_INDEX_H
#define BANGER_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

struct index;

/* A copy of one name's desired state, owned by the caller. */
struct desired {
        char *name;
        struct bg_spec *spec;   /* NULL when invalid or contested */
        uint64_t hash;          /* spec_hash(spec) when spec != NULL */
        char **files;           /* files claiming the name */
        size_t n_files;
        char **errors;          /* formatted errors, empty when valid */
        size_t n_errors;
        bool contested;         /* claimed more than once (files or documents) */
};

struct index *index_new(void);
void index_free(struct index *ix);

/* Replace what `path` claims with `parsed` (taken; NULL: the file is gone).
 * Calls dirty(name, arg) for every name whose desired state may have changed,
 * and report(name, message, arg) for each name that became invalid or
 * contested (name NULL for file-level problems with no name). */
void index_update_file(struct index *ix, const char *path, struct spec_file *parsed,
                       void (*dirty)(const char *name, void *arg),
                       void (*report)(const char *name, const char *type, const char *message, void *arg),
                       void *arg);

/* Copy of name's desired state, or NULL when no file claims it. */
struct desired *index_get(const struct index *ix, const char *name);
void desired_free(struct desired *d);

/* A cheap look at name's desired state, no copies: for the resync pass. */
struct desired_peek {
        bool claimed;             /* some file claims the name */
        bool valid;               /* exactly one valid claim: the fields below are set */
        uint64_t hash;
        enum spec_state state;
        enum spec_restart restart;
};
void index_peek(const struct index *ix, const char *name, struct desired_peek *out);

/* Every claimed name. */
void index_foreach_name(const struct index *ix, void (*cb)(const char *name, void *arg), void *arg);
/* Every known file path. */
void index_foreach_file(const struct index *ix, void (*cb)(const char *path, void *arg), void *arg);
size_t index_count(const struct index *ix);
/* File-level errors (formatted) of files that claim no name, for status. */
void index_foreach_orphan_error(const struct index *ix, void (*cb)(const char *msg, void *arg), void *arg);

#endif
