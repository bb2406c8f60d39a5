/* view: the API's Sandbox object (docs/api.md), built from a name's
 * desired state (index) and its record (store).  Pure formatting. */
#ifndef BANGER_VIEW_H
#define BANGER_VIEW_H

#include <jansson.h>

#include "index.h"
#include "store.h"

/* d and r may each be NULL (not both).  Returns a new reference. */
json_t *view_sandbox(const char *name, const struct desired *d, const struct store_record *r,
                     const char *hypervisor);

#endif
