/* sshkey: ed25519 key pairs in OpenSSH's own formats, made with OpenSSL.
 *
 * banger makes two kinds of keys: the user key it logs in with (ssh_dir/
 * id_ed25519 unless config ssh_key_path names another) and one host key
 * per guest, generated on the host and pinned in banger's known_hosts before
 * the guest first boots, so there is never a trust-on-first-use window.
 *
 * Private keys are written in the unencrypted "openssh-key-v1" format that
 * ssh, sshd and ssh-keygen read; public keys as one "ssh-ed25519 AAAA...
 * comment" line.  Files are written atomically (temp file, fsync, rename)
 * with their exact modes: private 0600, public 0644.  banger never
 * overwrites or deletes a key it did not create: the user key is made only
 * when its path is free (an atomic no-replace rename), and an existing key
 * is only read.  Private material is wiped from memory when freed and never
 * appears in an error message.
 */
#ifndef BANGER_SSHKEY_H
#define BANGER_SSHKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct bg_err;

#define SSHKEY_ED25519_LEN 32
/* Larger key files are not keys banger can use. */
#define SSHKEY_MAX_FILE (64 * 1024)

struct sshkey {
        unsigned char pub[SSHKEY_ED25519_LEN];
        unsigned char seed[SSHKEY_ED25519_LEN];   /* the private half; zero when !has_private */
        bool has_private;
};

/* A new random ed25519 pair in *out (free with sshkey_free).  Fails only
 * when OpenSSL does (EIO). */
int sshkey_generate(struct sshkey **out, struct bg_err **err);

/* Wipe and free; NULL is a no-op. */
void sshkey_free(struct sshkey *k);

/* "ssh-ed25519 AAAA... comment" without a newline (heap, caller frees);
 * comment NULL or "" leaves the comment out. */
char *sshkey_public_line(const struct sshkey *k, const char *comment);

/* "SHA256:<base64 without padding>" as ssh-keygen -l prints it (heap). */
char *sshkey_fingerprint(const struct sshkey *k);

/* The private key file text ("-----BEGIN OPENSSH PRIVATE KEY-----" ...,
 * newline terminated; heap, caller frees after wiping it with
 * sshkey_wipe_free).  k must hold the private half; length in *len. */
char *sshkey_private_openssh(const struct sshkey *k, const char *comment, size_t *len);

/* Zero len bytes of s and free it; NULL is a no-op. */
void sshkey_wipe_free(char *s, size_t len);

/* Parse an unencrypted OpenSSH ed25519 private key file's text.  The public
 * half is checked against the seed.  *comment (optional) gets the comment
 * (heap).  EINVAL: not such a key; ENOTSUP: encrypted or another type. */
int sshkey_parse_private(const char *text, size_t len, struct sshkey **out, char **comment,
                         struct bg_err **err);

/* Parse "ssh-ed25519 AAAA... [comment]" (public half only). EINVAL otherwise. */
int sshkey_parse_public(const char *line, struct sshkey **out, struct bg_err **err);

/* sshkey_parse_private on the file at path (at most SSHKEY_MAX_FILE). */
int sshkey_load_private(const char *path, struct sshkey **out, char **comment, struct bg_err **err);

/* Write data to path atomically with exactly mode (umask aside): a temp
 * file beside it, fsync, rename, fsync of the folder.  With replace false
 * an existing path is never touched and the call fails with EEXIST.  The
 * one writer the SSH modules share. */
int sshkey_write_file(const char *path, const void *data, size_t len, mode_t mode, bool replace,
                      struct bg_err **err);

/* Write k's private key to path (0600) and, with pub_too, its public line
 * to path.pub (0644).  replace as for sshkey_write_file.  This is how a
 * guest host key is put on the work disk staging folder. */
int sshkey_write_pair(const struct sshkey *k, const char *path, const char *comment, bool pub_too,
                      bool replace, struct bg_err **err);

/* The user key's path: configured (config ssh_key_path) when set, absolute
 * or "~/..." (against home); else ssh_dir/id_ed25519.  A relative or
 * "~user" path fails with EINVAL.  *out is heap. */
int sshkey_user_key_path(const char *configured, const char *home, const char *ssh_dir, char **out,
                         struct bg_err **err);

/* Make sure the user key at path exists.  Absent: create the parent folder
 * (0700), then path (0600) and path.pub (0644) with a new pair, never
 * replacing a file that appears meanwhile (a concurrent banger's key wins).
 * Present: it must be a readable regular file; path.pub is added only when
 * missing and path is an unencrypted OpenSSH key it can be derived from.
 * A path.pub without path fails with EEXIST: banger will not pair a new
 * private key with a public key it did not make.  *created (optional) says
 * whether this call made the key. */
int sshkey_ensure_user_key(const char *path, bool *created, struct bg_err **err);

/* The public line of the user key at path: path.pub's first line, or
 * derived from an unencrypted private key when path.pub is missing.
 * Anything but a well-formed public key line (sshkey_check_public_line)
 * fails with EINVAL, and none of its text is returned. */
int sshkey_read_public(const char *path, char **line, struct bg_err **err);

/* 0 when line is "TYPE BASE64 [COMMENT]" for an OpenSSH key type, its blob
 * decodes and names the same type, and the comment holds no control
 * character; else -EINVAL. */
int sshkey_check_public_line(const char *line);

#endif
