/* inuse: see inuse.h. */
#include "inuse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "err.h"
#include "paths.h"
#include "sandbox.h"
#include "util.h"

#define DEFAULT_IMAGE "debian-bookworm"

int inuse_check(const struct bg_paths *p, const char *field, const char *name, bool force, struct bg_err **err)
{
        struct client *c = client_new(p->socket);
        json_t *body = NULL;
        struct bg_err *e = NULL;
        int r = client_get_ok(c, "/v1/sandboxes", &body, &e);
        client_free(c);
        if (r < 0) {
                if (force) {
                        fprintf(stderr, "warning: not checking whether %s '%s' is in use: %s\n", field, name,
                                bg_err_msg(e));
                        bg_err_free(e);
                        return 0;
                }
                r = bg_error(err, e ? e->code : EIO, "cannot tell whether %s '%s' is in use: %s (--force removes it "
                             "anyway)", field, name, bg_err_msg(e));
                bg_err_free(e);
                return r;
        }

        char *fallback = NULL;
        if (strcmp(field, "image") == 0) {
                struct bg_config cfg;
                if (config_load(p->config_file, &cfg, NULL) == 0) {
                        fallback = xstrdup(cfg.default_image ? cfg.default_image : DEFAULT_IMAGE);
                        config_release(&cfg);
                } else {
                        fallback = xstrdup(DEFAULT_IMAGE);
                }
        }
        _cleanup_free_ char *path = xasprintf("spec.%s", field);
        char *users = NULL;
        size_t n_users = 0, i;
        json_t *item;
        json_array_foreach(json_object_get(body, "items"), i, item) {
                const char *v = sbx_str(item, path);
                if (!v)
                        v = fallback;
                const char *who = sbx_str(item, "metadata.name");
                if (!v || !who || strcmp(v, name) != 0)
                        continue;
                char *u = users ? xasprintf("%s, %s", users, who) : xstrdup(who);
                free(users);
                users = u;
                n_users++;
        }
        r = 0;
        if (n_users)
                r = bg_error(err, EBUSY, "%s '%s' is in use by sandbox%s %s", field, name, n_users > 1 ? "es" : "",
                             users);
        free(users);
        free(fallback);
        json_decref(body);
        return r;
}
