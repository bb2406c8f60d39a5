/* sshconfig: the opt-in `ssh NAME.vm` shortcut.
 *
 * banger keeps its own OpenSSH client config at config_dir/ssh_config
 * (~/.config/banger/ssh_config): one `Host *.vm` block with User root,
 * banger's key, banger's known_hosts and StrictHostKeyChecking yes.  It is
 * banger's file, rewritten whenever its content would change.
 *
 * The user's ~/.ssh/config is touched only on request (`banger ssh-config
 * --install` / `--uninstall`), and only inside a marker-fenced block put at
 * the very top of the file (an Include after a Host line would apply only
 * to that Host):
 *
 *     # >>> banger >>>
 *     Include ~/.config/banger/ssh_config
 *     # <<< banger <<<
 *
 * Install prepends the block and leaves every byte after it alone, so
 * uninstall (which cuts the fenced lines out, wherever they are) gives back
 * the file byte for byte, a missing final newline included.  Installing
 * twice is installing once (an existing block is updated in place).  When
 * install had to create the file (and maybe ~/.ssh), the block says so in
 * one more comment line; uninstall then deletes the file if nothing else is
 * left in it, and rmdir()s ~/.ssh if banger made it and it is empty.  So a
 * missing file stays missing, and nothing the user wrote is ever deleted.
 * A symlinked ~/.ssh/config (dotfile managers) is edited at its target.
 *
 * "home" is ROOT/home under --root, so tests never see the real one.
 */
#ifndef BANGER_SSHCONFIG_H
#define BANGER_SSHCONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "paths.h"

struct bg_err;

#define SSHCONFIG_BEGIN "# >>> banger >>>"
#define SSHCONFIG_END "# <<< banger <<<"
/* Larger ~/.ssh/config files are refused (EFBIG). */
#define SSHCONFIG_MAX_FILE (4u * 1024 * 1024)

/* What install created, recorded in the block. */
enum {
        SSHCONFIG_MADE_FILE = 1,
        SSHCONFIG_MADE_DIR = 2,   /* ~/.ssh */
};

/* The home folder: ROOT/home with a root, else $HOME (absolute), else the
 * passwd entry's.  Heap. */
char *sshconfig_home(const struct bg_paths *p);

/* config_dir/ssh_config and ssh_dir/known_hosts (heap). */
char *sshconfig_path(const struct bg_paths *p);
char *sshconfig_known_hosts(const struct bg_paths *p);

/* The text of banger's ssh_config for this key and known_hosts (heap).
 * NULL and EINVAL for a path ssh_config cannot express (quote, newline). */
char *sshconfig_render(const char *key_path, const char *known_hosts, struct bg_err **err);

/* Write banger's ssh_config at path (0644, folder made 0700) if its content
 * differs.  *changed (optional) says whether it was written. */
int sshconfig_refresh(const char *path, const char *key_path, const char *known_hosts, bool *changed,
                      struct bg_err **err);

/* "Include ~/..." when config_path is under home, else the absolute path
 * (heap).  NULL and EINVAL for a path ssh_config cannot express. */
char *sshconfig_include_line(const char *home, const char *config_path, struct bg_err **err);

/* Pure: text with the block (include line, made flags) at its top, or the
 * existing block updated in place.  *out heap (NUL-terminated), *changed
 * whether it differs.  EINVAL for a begin marker without an end marker. */
int sshconfig_text_install(const char *text, size_t len, const char *include, unsigned made, char **out,
                           size_t *outlen, bool *changed, struct bg_err **err);

/* Pure: text without banger's block(s).  *made gets the flags recorded in
 * them, *found whether there was one.  EINVAL for an unterminated block. */
int sshconfig_text_uninstall(const char *text, size_t len, char **out, size_t *outlen, unsigned *made,
                             bool *found, struct bg_err **err);

/* Install the block into home/.ssh/config (creating ~/.ssh 0700 and the
 * file 0600 when missing; an existing file keeps its mode). */
int sshconfig_install(const char *home, const char *include, bool *changed, struct bg_err **err);

/* Remove the block from home/.ssh/config; no file or no block: success
 * with *changed false. */
int sshconfig_uninstall(const char *home, bool *changed, struct bg_err **err);

#endif
