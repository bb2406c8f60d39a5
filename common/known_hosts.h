/* known_hosts: banger's own known_hosts file (ssh_dir/known_hosts), where
 * each guest's host key is pinned before the guest first boots.  The
 * user's ~/.ssh/known_hosts is never read or written.
 *
 * Ownership mark.  A known_hosts line is "[marker] patterns keytype key
 * [comment]", and OpenSSH ignores the trailing comment field (see sshd(8),
 * SSH_KNOWN_HOSTS FILE FORMAT).  banger writes exactly one line per sandbox
 * and puts its ownership mark, the record id, in that comment:
 *
 *     web.vm,172.16.0.2 ssh-ed25519 AAAAC3Nza... banger:0123456789abcdef
 *
 * So the file alone says which lines are banger's and whose they are, the
 * same "banger:<id>" mark nftables elements carry; there is no side index
 * that could disagree with the file after a crash.  Any other line (a
 * comment, a blank line, a key the user added by hand, a line whose last
 * field is not exactly "banger:" + 16 lowercase hex) is foreign and is kept
 * byte for byte, in place.  Patterns are plain (not hashed) so that
 * `ssh-keygen -F web.vm -f FILE` and a reader can see them.
 *
 * Every change is a read-modify-write under an exclusive flock on
 * "<file>.lock" (the file itself is replaced by rename, so it cannot carry
 * the lock), written atomically (temp file, fsync, rename) at mode 0600,
 * and skipped when the content would not change.  A missing file is an
 * empty one.  A sandbox's line replaces its old line in place; a new one is
 * appended (a final foreign line without a newline gets one first).
 * Setting a sandbox's entry also drops other banger lines that name the
 * same host (a stale owner of a reused address): one banger key per host.
 */
#ifndef BANGER_KNOWN_HOSTS_H
#define BANGER_KNOWN_HOSTS_H

#include <stddef.h>

struct bg_err;

/* Larger files are refused (EFBIG): 10,000 sandboxes take ~1.5 MB. */
#define KH_MAX_FILE (64u * 1024 * 1024)

struct kh_entry {
        const char *id;       /* record id: 16 lowercase hex (the ownership mark) */
        const char *name;     /* sandbox name (DNS label); pattern "NAME.vm" */
        const char *ip;       /* IPv4 or IPv6 address pattern, or NULL */
        const char *pubkey;   /* "TYPE BASE64 [comment]"; the comment is dropped */
};

/* The line banger writes for e, without newline (heap); NULL when e is
 * invalid (bad id, name, address or key), with the reason in *err. */
char *kh_format(const struct kh_entry *e, struct bg_err **err);

/* Add or replace e's line.  EINVAL for an invalid entry, nothing written. */
int kh_set(const char *path, const struct kh_entry *e, struct bg_err **err);

/* Remove id's lines (deleting a sandbox).  No line, no file: success. */
int kh_remove(const char *path, const char *id, struct bg_err **err);

/* GC: remove the banger lines whose id is not among ids[0..n).  *removed
 * (optional) counts the lines dropped. */
int kh_gc(const char *path, const char *const *ids, size_t n, size_t *removed, struct bg_err **err);

/* Rewrite every banger line from the full list entries[0..n) (the store):
 * foreign lines stay in place, banger lines follow them in list order.
 * Invalid entries fail the whole call (EINVAL) before anything is written. */
int kh_sync(const char *path, const struct kh_entry *entries, size_t n, struct bg_err **err);

/* The key banger pinned for host (a "NAME.vm" or an address): *keytype
 * and *key_b64 (heap) from the first banger line whose patterns hold host
 * exactly.  -ENOENT (no error set) when there is none; foreign lines are
 * never consulted, so a key the user added by hand cannot vouch for a
 * guest. */
int kh_lookup(const char *path, const char *host, char **keytype, char **key_b64, struct bg_err **err);

#endif
