/* ws_list: freeing a workspace listing (workspace.h).  Apart from
 * workspace.c so that a program that only holds lists, like the lean
 * banger, does not link libgit2 for it. */
#include <stdlib.h>
#include <string.h>

#include "workspace.h"

void ws_list_release(struct ws_list *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->files[i].path);
        free(l->files);
        free(l->workdir);
        free(l->name);
        memset(l, 0, sizeof *l);
}
