/* workspace: which files of a host git repository go into a guest, and
 * copying them.  Shared by `banger vm run PATH` (--dry-run prints the list)
 * and bangerd (spec.workspace, staged onto the work disk), so the CLI's
 * list is exactly what the daemon copies.
 *
 * The list is the git-tracked files of the working tree as they are on disk
 * (a tracked file deleted on disk is skipped), plus, with
 * include_untracked, untracked files git does not ignore.  Ignored files
 * never go.  The repository's .git folder is copied whole, so the guest
 * holds a real repository.  Everything is read with the caller's
 * privileges: bangerd switches its file-system identity to the folder
 * owner first (workdisk.c).
 *
 * Only the repository's own settings count (.gitignore files,
 * .git/info/exclude, .git/config): system and global git config (and the
 * global excludes file) are not read, since the CLI and bangerd have
 * different HOMEs and must agree on the list.  libgit2's ownership check
 * (safe.directory) is off for the same reason: bangerd reads as root with a
 * switched fsuid, so whose folder may be read is the caller's check. */
#ifndef BANGER_WORKSPACE_H
#define BANGER_WORKSPACE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct bg_err;

struct ws_file {
        char *path;        /* relative to the working tree, '/'-separated, no ".." */
        uint64_t size;     /* bytes on disk now (0 for a symlink) */
        mode_t mode;       /* S_IFREG|0644/0755 or S_IFLNK */
        bool untracked;    /* listed only because of include_untracked */
};

struct ws_list {
        char *workdir;     /* absolute working tree, no trailing '/' */
        char *name;        /* basename of workdir: the guest folder /root/NAME */
        struct ws_file *files;   /* sorted by path */
        size_t n;
        uint64_t bytes;          /* sum of files[].size */
        uint64_t git_bytes;      /* size of the .git folder */
};

/* List the workspace at path (a working tree or a folder inside one; the
 * list is always of the whole working tree).  Errors, each naming the path:
 * it does not exist, it is not inside a git repository, the repository is
 * bare, or its .git is a file (linked worktrees and submodules are not
 * supported). */
int workspace_list(const char *path, bool include_untracked, struct ws_list *out, struct bg_err **err);
void ws_list_release(struct ws_list *l);

/* Copy l into a new folder NAME (l->name) under the folder dest_dirfd:
 * every listed file as it is on disk now (symlinks as symlinks, files with
 * their executable bit), then .git whole.  Writes only through dest_dirfd
 * (openat/mkdirat), so the caller's identity needs no path to it.  Fails
 * if NAME already exists. */
int workspace_copy(const struct ws_list *l, int dest_dirfd, struct bg_err **err);

/* In the copy at repo_path (a folder workspace_copy made): create branch
 * `branch` at `from` (NULL: HEAD) and check it out, as `git checkout -b
 * BRANCH FROM` would.  Errors: `from` does not resolve, the branch exists,
 * or the checkout would overwrite changes. */
int workspace_branch(const char *repo_path, const char *branch, const char *from, struct bg_err **err);

#endif
