/* ownmark: the ownership mark every driver object carries, a record id
 * (16 lowercase hex), and the set of ids a GC listing collects.  One
 * definition for all drivers, so they agree on what is banger's. */
#ifndef BANGER_OWNMARK_H
#define BANGER_OWNMARK_H

#include <stdbool.h>
#include <stddef.h>

struct strmap;

/* Exactly 16 lowercase hex characters. */
bool ownmark_id_valid(const char *id);

/* A set of ids in first-seen order; ids is the caller's once taken. */
struct id_set {
        struct strmap *seen;
        char **ids;
        size_t n;
};

void id_set_init(struct id_set *s);
/* Add id when it is a valid mark and new. */
void id_set_add(struct id_set *s, const char *id);
/* Add every entry of dir named "<id><suffix>" ("" for the bare id); a
 * missing dir is empty.  Returns 0 or -errno. */
int id_set_scan_dir(struct id_set *s, const char *dir, const char *suffix);
/* Hand the ids over (*ids heap array of heap strings) and free the rest. */
void id_set_take(struct id_set *s, char ***ids, size_t *n);

#endif
