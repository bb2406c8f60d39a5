/* sandbox: reading the API's Sandbox objects (docs/api.md): dotted-path
 * lookups, conditions, and the spec they carry as a bg_spec, so `apply`
 * and `diff` compare like with like through spec_diff. */
#ifndef BANGER_SANDBOX_H
#define BANGER_SANDBOX_H

#include <jansson.h>

struct bg_err;
struct bg_spec;

/* The value at a dotted path ("status.phase"), borrowed; NULL if absent. */
json_t *sbx_get(const json_t *obj, const char *path);
/* The string at a dotted path, or NULL when absent or not a string. */
const char *sbx_str(const json_t *obj, const char *path);

/* status.conditions[type]: its "status" ("True"/"False") or NULL when there
 * is no such condition; *message (may be NULL) gets its message or "". */
const char *sbx_condition(const json_t *obj, const char *type, const char **message);

/* The object's spec (metadata.name, metadata.labels, spec) as a bg_spec
 * (caller frees with spec_free).  Negative with err when it has none or
 * it does not read back. */
int sbx_spec(const json_t *obj, struct bg_spec **out, struct bg_err **err);

#endif
