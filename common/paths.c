/* paths: see paths.h. */
#include "paths.h"

#include <errno.h>
#include <pwd.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

static char *home_join(const char *xdg_env, const char *fallback, const char *tail)
{
        const char *x = getenv(xdg_env);
        if (x && x[0] == '/')
                return xasprintf("%s/%s", x, tail);
        const char *home = getenv("HOME");
        if (!home || home[0] != '/')
                home = "/root";
        return xasprintf("%s/%s/%s", home, fallback, tail);
}

int paths_init(struct bg_paths *p, const char *root, struct bg_err **err)
{
        memset(p, 0, sizeof *p);
        if (!root || !*root)
                root = getenv("BANGER_ROOT");
        if (root && *root) {
                if (root[0] == '/') {
                        p->root = xstrdup(root);
                } else {
                        char cwd[PATH_MAX];
                        if (!getcwd(cwd, sizeof cwd))
                                return bg_error(err, errno, "getcwd: %s", strerror(errno));
                        p->root = xasprintf("%s/%s", cwd, root);
                }
                size_t n = strlen(p->root);
                while (n > 1 && p->root[n - 1] == '/')
                        p->root[--n] = '\0';
                p->config_dir = xasprintf("%s/config", p->root);
                p->state_dir = xasprintf("%s/state", p->root);
                p->cache_dir = xasprintf("%s/cache", p->root);
                p->run_dir = xasprintf("%s/run", p->root);
                p->ssh_dir = xasprintf("%s/state/ssh", p->root);
        } else {
                p->config_dir = home_join("XDG_CONFIG_HOME", ".config", "banger");
                p->state_dir = xstrdup("/var/lib/banger");
                p->cache_dir = xstrdup("/var/cache/banger");
                p->run_dir = xstrdup("/run/banger");
                p->ssh_dir = home_join("XDG_STATE_HOME", ".local/state", "banger/ssh");
        }
        p->config_file = xasprintf("%s/config.yaml", p->config_dir);
        p->sandboxes_dir = xasprintf("%s/sandboxes", p->config_dir);
        p->socket = xasprintf("%s/bangerd.sock", p->run_dir);
        return 0;
}

char *paths_owner_home(const struct bg_paths *p, unsigned uid)
{
        if (p->root)
                return xasprintf("%s/home", p->root);
        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &res) != 0 || !res || !pw.pw_dir || pw.pw_dir[0] != '/')
                return NULL;
        return xstrdup(pw.pw_dir);
}

void paths_release(struct bg_paths *p)
{
        free(p->root);
        free(p->config_dir);
        free(p->config_file);
        free(p->sandboxes_dir);
        free(p->state_dir);
        free(p->cache_dir);
        free(p->run_dir);
        free(p->socket);
        free(p->ssh_dir);
}
