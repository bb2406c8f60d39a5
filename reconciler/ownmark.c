/* ownmark: see ownmark.h. */
#include "ownmark.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>

#include "strmap.h"
#include "util.h"

bool ownmark_id_valid(const char *id)
{
        if (!id || strlen(id) != 16)
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

void id_set_init(struct id_set *s)
{
        s->seen = strmap_new();
        s->ids = NULL;
        s->n = 0;
}

void id_set_add(struct id_set *s, const char *id)
{
        if (!ownmark_id_valid(id) || strmap_get(s->seen, id))
                return;
        strmap_put(s->seen, id, (void *)1);
        s->ids = xreallocarray(s->ids, s->n + 1, sizeof *s->ids);
        s->ids[s->n++] = xstrdup(id);
}

int id_set_scan_dir(struct id_set *s, const char *dir, const char *suffix)
{
        DIR *dp = opendir(dir);
        if (!dp)
                return errno == ENOENT ? 0 : -errno;
        size_t want = 16 + strlen(suffix);
        struct dirent *de;
        while ((de = readdir(dp))) {
                if (strlen(de->d_name) != want || !str_has_suffix(de->d_name, suffix))
                        continue;
                char id[17];
                memcpy(id, de->d_name, 16);
                id[16] = '\0';
                id_set_add(s, id);
        }
        closedir(dp);
        return 0;
}

void id_set_take(struct id_set *s, char ***ids, size_t *n)
{
        *ids = s->ids;
        *n = s->n;
        strmap_free(s->seen);
        s->seen = NULL;
        s->ids = NULL;
        s->n = 0;
}
