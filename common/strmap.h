/* strmap: a string-keyed hash map (open addressing, linear probing) that
 * owns copies of its keys and borrows its values.  Used for the loop's
 * name and file indexes, which hold up to tens of thousands of entries. */
#ifndef BANGER_STRMAP_H
#define BANGER_STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
/* Frees the map and its keys; values are the caller's (free them first,
 * e.g. with strmap_foreach). */
void strmap_free(struct strmap *m);
/* Value for key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);
/* Insert or replace; returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *value);
/* Remove; returns the value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);
/* Visit every entry (unordered); cb must not modify the map. */
void strmap_foreach(const struct strmap *m, void (*cb)(const char *key, void *value, void *arg), void *arg);

#endif
