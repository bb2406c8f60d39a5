/* strmap: see strmap.h.  Deletion uses backward-shift so no tombstones
 * pile up under churn. */
#include "strmap.h"

#include <string.h>

#include "util.h"

struct slot {
        char *key;
        void *value;
        uint64_t hash;
};

struct strmap {
        struct slot *slots;
        size_t cap;     /* power of two */
        size_t count;
};

static uint64_t hash_of(const char *k)
{
        return fnv1a64(k, strlen(k), FNV1A64_SEED);
}

struct strmap *strmap_new(void)
{
        struct strmap *m = xcalloc(1, sizeof *m);
        m->cap = 16;
        m->slots = xcalloc(m->cap, sizeof *m->slots);
        return m;
}

void strmap_free(struct strmap *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->cap; i++)
                free(m->slots[i].key);
        free(m->slots);
        free(m);
}

static size_t find(const struct strmap *m, const char *key, uint64_t h)
{
        size_t i = h & (m->cap - 1);
        while (m->slots[i].key) {
                if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
                        return i;
                i = (i + 1) & (m->cap - 1);
        }
        return i;
}

static void grow(struct strmap *m)
{
        struct slot *old = m->slots;
        size_t oldcap = m->cap;
        m->cap *= 2;
        m->slots = xcalloc(m->cap, sizeof *m->slots);
        for (size_t i = 0; i < oldcap; i++) {
                if (!old[i].key)
                        continue;
                size_t j = old[i].hash & (m->cap - 1);
                while (m->slots[j].key)
                        j = (j + 1) & (m->cap - 1);
                m->slots[j] = old[i];
        }
        free(old);
}

void *strmap_get(const struct strmap *m, const char *key)
{
        size_t i = find(m, key, hash_of(key));
        return m->slots[i].key ? m->slots[i].value : NULL;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
        if ((m->count + 1) * 4 > m->cap * 3)
                grow(m);
        uint64_t h = hash_of(key);
        size_t i = find(m, key, h);
        if (m->slots[i].key) {
                void *prev = m->slots[i].value;
                m->slots[i].value = value;
                return prev;
        }
        m->slots[i] = (struct slot){ xstrdup(key), value, h };
        m->count++;
        return NULL;
}

void *strmap_del(struct strmap *m, const char *key)
{
        size_t i = find(m, key, hash_of(key));
        if (!m->slots[i].key)
                return NULL;
        void *v = m->slots[i].value;
        free(m->slots[i].key);
        m->slots[i].key = NULL;
        m->count--;
        /* Backward shift: move later members of the probe run into the hole. */
        size_t j = i;
        for (;;) {
                j = (j + 1) & (m->cap - 1);
                if (!m->slots[j].key)
                        break;
                size_t home = m->slots[j].hash & (m->cap - 1);
                bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
                if (movable) {
                        m->slots[i] = m->slots[j];
                        m->slots[j].key = NULL;
                        i = j;
                }
        }
        return v;
}

size_t strmap_count(const struct strmap *m)
{
        return m->count;
}

void strmap_foreach(const struct strmap *m, void (*cb)(const char *key, void *value, void *arg), void *arg)
{
        for (size_t i = 0; i < m->cap; i++)
                if (m->slots[i].key)
                        cb(m->slots[i].key, m->slots[i].value, arg);
}
