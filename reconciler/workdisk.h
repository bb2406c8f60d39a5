/* workdisk: the guest's /root, built on the host before first boot.
 *
 * A sandbox's work disk (mounted at /root in the guest) is an ext4 image
 * made with mkfs.ext4 -d from a staging folder holding:
 *   - .ssh/authorized_keys (banger's user key) and .banger/ssh_host_ed25519_key
 *     (the guest's host key, pinned on the host before first boot);
 *   - the workspace (spec.workspace) at NAME/, a real git repository;
 *   - file_sync copies (config file_sync first, then spec.file_sync).
 * Everything taken from the user's files is read with the folder owner's
 * file-system identity (setfsuid/setfsgid on the calling thread), never
 * with root's rights, and host paths of file_sync must stay inside the
 * owner's home.  Every file ends up owned by root in the guest. */
#ifndef BANGER_WORKDISK_H
#define BANGER_WORKDISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bg_err;
struct bg_spec;
struct spec_file_sync;

struct workdisk_owner {
        uid_t uid;             /* the sandboxes folder's owner */
        gid_t gid;
        const char *home;      /* their home ("~/" in host paths); --root: ROOT/home */
};

struct workdisk_in {
        const char *user_key;               /* banger's user key: its public half is authorized; NULL: none */
        const char *host_key_file;          /* NULL: none */
        const struct bg_spec *spec;         /* workspace, file_sync, disk_size */
        const struct spec_file_sync *config_sync;   /* config file_sync, applied first */
        size_t n_config_sync;
        const struct workdisk_owner *owner;
};

/* Build the work disk at dest (whole or absent).  Its size is at least
 * WORKDISK_MIN_SIZE and grows with the staged content; content larger than
 * the sandbox's disk_size is an error that says both sizes.
 * banger's files: .ssh 0700 with authorized_keys 0600, .banger 0700 with
 * ssh_host_ed25519_key 0600 (what sshd's StrictModes accepts).  file_sync:
 * host "~/x" is in owner->home, "/x" as is, relative is refused; after
 * realpath it must stay inside owner->home.  A file gets the entry's mode
 * (0600 unset); a folder is copied whole, files with that mode, folders
 * 0700, symlinks and special files skipped (log_warn).  Guest paths are
 * "~/P" or "/root/P"; P under .banger or equal to .ssh/authorized_keys is
 * refused.  Errors name the entry ("spec.file_sync[1].host '~/x': outside
 * the home folder ...", "config file_sync[0]..."); EACCES when the owner
 * may not read a file.  spec, the config entries and owner may be NULL/0
 * when there is nothing to copy. */
#define WORKDISK_MIN_SIZE (1ull << 30)
int workdisk_create(const char *dest, const struct workdisk_in *in, struct bg_err **err);

/* The --branch helper workdisk_create runs (this executable again, argv[1]
 * "--workspace-branch"): every program that can build a work disk with a
 * branch calls it first thing in main().  Returns -1 when argv is not the
 * helper's; otherwise it never returns. */
int workdisk_branch_main(int argc, char **argv);

#endif
