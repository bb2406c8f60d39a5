/* paths: where banger keeps everything, in one place.
 *
 * Installed layout: config and specs under ~/.config/banger (XDG), daemon
 * state /var/lib/banger, cache /var/cache/banger, runtime /run/banger, SSH
 * material ~/.local/state/banger/ssh.  With a root (--root DIR or
 * BANGER_ROOT) every path lives under DIR instead, so tests and experiments
 * run side by side without touching the machine's own paths.
 */
#ifndef BANGER_PATHS_H
#define BANGER_PATHS_H

struct bg_err;

struct bg_paths {
        char *root;           /* absolute root, or NULL for the installed layout */
        char *config_dir;     /* DIR/config */
        char *config_file;    /* DIR/config/config.yaml */
        char *sandboxes_dir;  /* DIR/config/sandboxes */
        char *state_dir;      /* DIR/state (LMDB lives in state_dir/db) */
        char *cache_dir;      /* DIR/cache */
        char *run_dir;        /* DIR/run */
        char *socket;         /* DIR/run/bangerd.sock */
        char *ssh_dir;        /* DIR/state/ssh */
};

/* Fill p from root (flag), else $BANGER_ROOT, else the installed layout.
 * A relative root is made absolute against the current directory. */
int paths_init(struct bg_paths *p, const char *root, struct bg_err **err);
void paths_release(struct bg_paths *p);

/* The home folder "~/" means for files owned by uid (file_sync host
 * paths): DIR/home under a root, so tests and experiments never read the
 * machine's homes; else uid's home from the password database (NULL when
 * it has none). */
char *paths_owner_home(const struct bg_paths *p, unsigned uid);

#endif
