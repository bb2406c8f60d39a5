/* sshkey: see sshkey.h.  The openssh-key-v1 layout (PROTOCOL.key in
 * OpenSSH): "openssh-key-v1\0", string cipher "none", string kdf "none",
 * string kdfoptions "", uint32 1 key, string public blob, then a string
 * holding checkint twice, the key type, pub, priv (seed || pub), the
 * comment and padding 1, 2, 3, ... up to the 8-byte block size.  Strings
 * are a uint32 big-endian length then the bytes. */
#include "sshkey.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "err.h"
#include "util.h"

#define KEY_TYPE "ssh-ed25519"
#define MAGIC "openssh-key-v1"   /* followed by its NUL */
#define PEM_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define PEM_END "-----END OPENSSH PRIVATE KEY-----"

/* Move e into *err (first error wins) and return its code. */
static int pass_err(struct bg_err **err, struct bg_err *e)
{
        int rc = -e->code;
        if (err && !*err)
                *err = e;
        else
                bg_err_free(e);
        return rc;
}

/* A growable byte buffer for the SSH wire encoding. */
struct buf {
        unsigned char *p;
        size_t n, cap;
};

static void buf_put(struct buf *b, const void *d, size_t n)
{
        if (b->n + n > b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 256;
                while (cap < b->n + n)
                        cap *= 2;
                unsigned char *np = xmalloc(cap);
                if (b->n)
                        memcpy(np, b->p, b->n);
                if (b->p) {
                        OPENSSL_cleanse(b->p, b->cap);
                        free(b->p);
                }
                b->p = np;
                b->cap = cap;
        }
        if (n)
                memcpy(b->p + b->n, d, n);
        b->n += n;
}

static void buf_u32(struct buf *b, uint32_t v)
{
        buf_put(b, (unsigned char[4]){ v >> 24, v >> 16, v >> 8, v }, 4);
}

static void buf_str(struct buf *b, const void *d, size_t n)
{
        buf_u32(b, (uint32_t)n);
        buf_put(b, d, n);
}

static void buf_wipe(struct buf *b)
{
        if (b->p) {
                OPENSSL_cleanse(b->p, b->cap);
                free(b->p);
        }
        memset(b, 0, sizeof *b);
}

/* A reader over wire-encoded bytes; every getter fails past the end. */
struct rd {
        const unsigned char *p;
        size_t n;
};

static bool rd_u32(struct rd *r, uint32_t *v)
{
        if (r->n < 4)
                return false;
        *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
        r->p += 4;
        r->n -= 4;
        return true;
}

static bool rd_str(struct rd *r, const unsigned char **d, size_t *n)
{
        uint32_t len;
        if (!rd_u32(r, &len) || len > r->n)
                return false;
        *d = r->p;
        *n = len;
        r->p += len;
        r->n -= len;
        return true;
}

static bool rd_streq(struct rd *r, const char *want)
{
        const unsigned char *d;
        size_t n;
        return rd_str(r, &d, &n) && n == strlen(want) && memcmp(d, want, n) == 0;
}

static void public_blob(const struct sshkey *k, struct buf *b)
{
        buf_str(b, KEY_TYPE, strlen(KEY_TYPE));
        buf_str(b, k->pub, sizeof k->pub);
}

/* Base64 without newlines (heap). */
static char *b64_encode(const unsigned char *d, size_t n)
{
        char *out = xmalloc(4 * ((n + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)out, d, (int)n);
        return out;
}

/* Decode base64, ignoring whitespace; *out heap.  EVP_DecodeBlock counts
 * padding as data, so the '=' are taken off again. */
static bool b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
        char *clean = xmalloc(len + 1);
        size_t n = 0, pad = 0;
        for (size_t i = 0; i < len; i++)
                if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
                        clean[n++] = s[i];
        while (pad < n && pad < 3 && clean[n - 1 - pad] == '=')
                pad++;
        unsigned char *o = xmalloc(n / 4 * 3 + 1);
        int r = n == 0 || n % 4 || pad > 2 || n > INT_MAX ? -1
                : EVP_DecodeBlock(o, (const unsigned char *)clean, (int)n);
        sshkey_wipe_free(clean, len + 1);
        if (r < 0 || (size_t)r < pad) {
                sshkey_wipe_free((char *)o, n / 4 * 3 + 1);
                return false;
        }
        *out = o;
        *outlen = (size_t)r - pad;
        return true;
}

int sshkey_generate(struct sshkey **out, struct bg_err **err)
{
        EVP_PKEY *pk = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
        if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &pk) <= 0) {
                EVP_PKEY_CTX_free(ctx);
                bg_error(err, EIO, "generate ed25519 key: openssl failed");
                return -EIO;
        }
        EVP_PKEY_CTX_free(ctx);
        struct sshkey *k = xcalloc(1, sizeof *k);
        size_t pl = sizeof k->pub, sl = sizeof k->seed;
        if (EVP_PKEY_get_raw_public_key(pk, k->pub, &pl) <= 0 || pl != sizeof k->pub ||
            EVP_PKEY_get_raw_private_key(pk, k->seed, &sl) <= 0 || sl != sizeof k->seed) {
                EVP_PKEY_free(pk);
                sshkey_free(k);
                bg_error(err, EIO, "generate ed25519 key: cannot read raw key");
                return -EIO;
        }
        EVP_PKEY_free(pk);
        k->has_private = true;
        *out = k;
        return 0;
}

void sshkey_free(struct sshkey *k)
{
        if (!k)
                return;
        OPENSSL_cleanse(k, sizeof *k);
        free(k);
}

void sshkey_wipe_free(char *s, size_t len)
{
        if (!s)
                return;
        OPENSSL_cleanse(s, len);
        free(s);
}

char *sshkey_public_line(const struct sshkey *k, const char *comment)
{
        struct buf b = { 0 };
        public_blob(k, &b);
        _cleanup_free_ char *enc = b64_encode(b.p, b.n);
        buf_wipe(&b);
        if (comment && *comment)
                return xasprintf("%s %s %s", KEY_TYPE, enc, comment);
        return xasprintf("%s %s", KEY_TYPE, enc);
}

char *sshkey_fingerprint(const struct sshkey *k)
{
        struct buf b = { 0 };
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        public_blob(k, &b);
        if (EVP_Digest(b.p, b.n, md, &mdlen, EVP_sha256(), NULL) <= 0)
                abort();   /* SHA-256 of a few bytes cannot fail but for OOM */
        buf_wipe(&b);
        _cleanup_free_ char *enc = b64_encode(md, mdlen);
        size_t n = strlen(enc);
        while (n && enc[n - 1] == '=')
                enc[--n] = '\0';
        return xasprintf("SHA256:%s", enc);
}

char *sshkey_private_openssh(const struct sshkey *k, const char *comment, size_t *len)
{
        struct buf b = { 0 }, inner = { 0 };
        uint32_t check;
        unsigned char priv[2 * SSHKEY_ED25519_LEN];
        if (!comment)
                comment = "";
        random_bytes(&check, sizeof check);
        buf_u32(&inner, check);
        buf_u32(&inner, check);
        buf_str(&inner, KEY_TYPE, strlen(KEY_TYPE));
        buf_str(&inner, k->pub, sizeof k->pub);
        memcpy(priv, k->seed, SSHKEY_ED25519_LEN);
        memcpy(priv + SSHKEY_ED25519_LEN, k->pub, SSHKEY_ED25519_LEN);
        buf_str(&inner, priv, sizeof priv);
        OPENSSL_cleanse(priv, sizeof priv);
        buf_str(&inner, comment, strlen(comment));
        for (unsigned char pad = 1; inner.n % 8; pad++)
                buf_put(&inner, &pad, 1);

        buf_put(&b, MAGIC, sizeof MAGIC);   /* with the NUL */
        buf_str(&b, "none", 4);
        buf_str(&b, "none", 4);
        buf_str(&b, "", 0);
        buf_u32(&b, 1);
        buf_u32(&b, (uint32_t)(8 + strlen(KEY_TYPE) + sizeof k->pub));   /* the public blob's length */
        public_blob(k, &b);
        buf_str(&b, inner.p, inner.n);
        buf_wipe(&inner);

        char *enc = b64_encode(b.p, b.n);
        size_t elen = strlen(enc);
        buf_wipe(&b);
        /* PEM armour, the base64 wrapped at 70 columns as ssh-keygen does. */
        struct buf t = { 0 };
        buf_put(&t, PEM_BEGIN "\n", strlen(PEM_BEGIN) + 1);
        for (size_t i = 0; i < elen; i += 70) {
                buf_put(&t, enc + i, elen - i < 70 ? elen - i : 70);
                buf_put(&t, "\n", 1);
        }
        sshkey_wipe_free(enc, elen);
        buf_put(&t, PEM_END "\n", strlen(PEM_END) + 1);
        buf_put(&t, "", 1);
        *len = t.n - 1;
        return (char *)t.p;
}

/* Derive the public half from the seed, to check a parsed key. */
static bool derive_pub(const unsigned char seed[SSHKEY_ED25519_LEN], unsigned char pub[SSHKEY_ED25519_LEN])
{
        EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, SSHKEY_ED25519_LEN);
        size_t pl = SSHKEY_ED25519_LEN;
        bool ok = pk && EVP_PKEY_get_raw_public_key(pk, pub, &pl) > 0 && pl == SSHKEY_ED25519_LEN;
        EVP_PKEY_free(pk);
        return ok;
}

static int parse_inner(struct rd *r, struct sshkey *k, char **comment, struct bg_err **err)
{
        uint32_t c1, c2;
        const unsigned char *pub, *priv, *cm;
        size_t pubn, privn, cmn;
        if (!rd_u32(r, &c1) || !rd_u32(r, &c2) || c1 != c2)
                return bg_error(err, EINVAL, "bad check bytes (encrypted or corrupt)");
        if (!rd_streq(r, KEY_TYPE))
                return bg_error(err, ENOTSUP, "not an ed25519 key");
        if (!rd_str(r, &pub, &pubn) || pubn != SSHKEY_ED25519_LEN || !rd_str(r, &priv, &privn) ||
            privn != 2 * SSHKEY_ED25519_LEN || !rd_str(r, &cm, &cmn))
                return bg_error(err, EINVAL, "truncated key");
        for (size_t i = 0; i < r->n; i++)
                if (r->p[i] != (unsigned char)(i + 1))
                        return bg_error(err, EINVAL, "bad padding");
        if (memcmp(priv + SSHKEY_ED25519_LEN, pub, SSHKEY_ED25519_LEN) != 0)
                return bg_error(err, EINVAL, "private and public halves differ");
        memcpy(k->seed, priv, SSHKEY_ED25519_LEN);
        memcpy(k->pub, pub, SSHKEY_ED25519_LEN);
        unsigned char derived[SSHKEY_ED25519_LEN];
        if (!derive_pub(k->seed, derived) || memcmp(derived, k->pub, sizeof derived) != 0)
                return bg_error(err, EINVAL, "public key does not match the private key");
        k->has_private = true;
        if (comment)
                *comment = xstrndup((const char *)cm, cmn);
        return 0;
}

/* The outer layer: magic, cipher and kdf "none", one ed25519 key; *inner
 * is the private section. */
static int parse_outer(struct rd r, struct rd *inner, struct bg_err **err)
{
        const unsigned char *d, *pb;
        size_t n, pbn;
        uint32_t nkeys;
        if (r.n < sizeof MAGIC || memcmp(r.p, MAGIC, sizeof MAGIC) != 0)
                return bg_error(err, EINVAL, "bad openssh key magic");
        r.p += sizeof MAGIC;
        r.n -= sizeof MAGIC;
        if (!rd_str(&r, &d, &n))
                return bg_error(err, EINVAL, "truncated key");
        if (n != 4 || memcmp(d, "none", 4) != 0)
                return bg_error(err, ENOTSUP, "encrypted key (banger needs a key without passphrase)");
        if (!rd_streq(&r, "none") || !rd_str(&r, &d, &n) || !rd_u32(&r, &nkeys) || nkeys != 1 ||
            !rd_str(&r, &pb, &pbn) || !rd_str(&r, &d, &n) || r.n != 0 || n % 8 != 0)
                return bg_error(err, EINVAL, "not an unencrypted single-key openssh file");
        struct rd pubr = { pb, pbn };
        if (!rd_streq(&pubr, KEY_TYPE))
                return bg_error(err, ENOTSUP, "not an ed25519 key");
        *inner = (struct rd){ d, n };
        return 0;
}

int sshkey_parse_private(const char *text, size_t len, struct sshkey **out, char **comment,
                         struct bg_err **err)
{
        const char *b = memmem(text, len, PEM_BEGIN, strlen(PEM_BEGIN));
        if (!b)
                return bg_error(err, EINVAL, "not an openssh private key");
        b += strlen(PEM_BEGIN);
        const char *e = memmem(b, len - (size_t)(b - text), PEM_END, strlen(PEM_END));
        if (!e)
                return bg_error(err, EINVAL, "openssh private key without end line");
        unsigned char *raw = NULL;
        size_t rawn = 0;
        if (!b64_decode(b, (size_t)(e - b), &raw, &rawn))
                return bg_error(err, EINVAL, "bad base64 in openssh private key");

        struct sshkey *k = xcalloc(1, sizeof *k);
        struct rd inner;
        int rc = parse_outer((struct rd){ raw, rawn }, &inner, err);
        if (rc == 0)
                rc = parse_inner(&inner, k, comment, err);
        sshkey_wipe_free((char *)raw, rawn);
        if (rc < 0) {
                sshkey_free(k);
                return rc;
        }
        *out = k;
        return 0;
}

int sshkey_parse_public(const char *line, struct sshkey **out, struct bg_err **err)
{
        size_t tl = strlen(KEY_TYPE);
        if (strncmp(line, KEY_TYPE, tl) != 0 || (line[tl] != ' ' && line[tl] != '\t'))
                return bg_error(err, EINVAL, "not an ssh-ed25519 public key line");
        const char *s = line + tl;
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strcspn(s, " \t\r\n");
        unsigned char *raw = NULL;
        size_t rawn = 0;
        if (!n || !b64_decode(s, n, &raw, &rawn))
                return bg_error(err, EINVAL, "bad base64 in public key");
        struct rd r = { raw, rawn };
        const unsigned char *pub;
        size_t pubn;
        bool ok = rd_streq(&r, KEY_TYPE) && rd_str(&r, &pub, &pubn) && pubn == SSHKEY_ED25519_LEN && r.n == 0;
        if (ok) {
                *out = xcalloc(1, sizeof **out);
                memcpy((*out)->pub, pub, SSHKEY_ED25519_LEN);
        }
        free(raw);
        return ok ? 0 : bg_error(err, EINVAL, "malformed ssh-ed25519 public key");
}

int sshkey_load_private(const char *path, struct sshkey **out, char **comment, struct bg_err **err)
{
        char *text = NULL;
        size_t len = 0;
        struct bg_err *e = NULL;
        if (read_file_limited(path, SSHKEY_MAX_FILE, &text, &len, &e) < 0)
                return pass_err(err, e);
        int rc = sshkey_parse_private(text, len, out, comment, err);
        sshkey_wipe_free(text, len);
        if (rc < 0)
                return bg_error_wrap(err, "key '%s'", path);
        return 0;
}

/* Make a rename durable: fsync the folder that holds path (best effort). */
static void fsync_parent(const char *path)
{
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
                (void)fsync(fd);
}

int sshkey_write_file(const char *path, const void *data, size_t len, mode_t mode, bool replace,
                      struct bg_err **err)
{
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *tmp = slash
                ? xasprintf("%.*s/.%s.tmpXXXXXX", (int)(slash - path), path, slash + 1)
                : xasprintf(".%s.tmpXXXXXX", path);
        /* mkostemp: a fresh name, O_EXCL and mode 0600 until the fchmod, so a
         * private key is never readable by others, not even for a moment. */
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return bg_error(err, errno, "create temp file for '%s': %s", path, strerror(errno));
        int e = 0;
        const char *p = data;
        size_t left = len;
        if (fchmod(fd, mode) < 0)
                e = errno;
        while (!e && left) {
                ssize_t w = write(fd, p, left);
                if (w < 0) {
                        if (errno != EINTR)
                                e = errno;
                        continue;
                }
                p += w;
                left -= (size_t)w;
        }
        if (!e && fsync(fd) < 0)
                e = errno;
        if (close(fd) < 0 && !e)
                e = errno;
        if (e) {
                unlink(tmp);
                return bg_error(err, e, "write '%s': %s", path, strerror(e));
        }
        if (replace) {
                if (rename(tmp, path) < 0)
                        e = errno;
        } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
                e = errno;
                /* Filesystems without RENAME_NOREPLACE: link(2) never replaces either. */
                if (e == EINVAL || e == ENOSYS)
                        e = link(tmp, path) < 0 ? errno : 0;
                unlink(tmp);
        }
        if (e) {
                unlink(tmp);
                if (e == EEXIST)
                        return bg_error(err, EEXIST, "'%s' already exists", path);
                return bg_error(err, e, "rename to '%s': %s", path, strerror(e));
        }
        fsync_parent(path);
        return 0;
}

static int write_pub(const struct sshkey *k, const char *comment, const char *pubpath, bool replace,
                     struct bg_err **err)
{
        _cleanup_free_ char *line = sshkey_public_line(k, comment);
        _cleanup_free_ char *withnl = xasprintf("%s\n", line);
        return sshkey_write_file(pubpath, withnl, strlen(withnl), 0644, replace, err);
}

int sshkey_write_pair(const struct sshkey *k, const char *path, const char *comment, bool pub_too,
                      bool replace, struct bg_err **err)
{
        if (!k->has_private)
                return bg_error(err, EINVAL, "write key '%s': no private half", path);
        size_t len = 0;
        char *text = sshkey_private_openssh(k, comment, &len);
        int rc = sshkey_write_file(path, text, len, 0600, replace, err);
        sshkey_wipe_free(text, len);
        if (rc < 0 || !pub_too)
                return rc;
        _cleanup_free_ char *pubpath = xasprintf("%s.pub", path);
        return write_pub(k, comment, pubpath, replace, err);
}

int sshkey_user_key_path(const char *configured, const char *home, const char *ssh_dir, char **out,
                         struct bg_err **err)
{
        if (!configured || !*configured) {
                *out = xasprintf("%s/id_ed25519", ssh_dir);
                return 0;
        }
        if (configured[0] == '/') {
                *out = xstrdup(configured);
                return 0;
        }
        if (configured[0] == '~' && configured[1] == '/' && configured[2]) {
                if (!home || home[0] != '/')
                        return bg_error(err, EINVAL, "ssh_key_path '%s': no home folder to expand '~'",
                                        configured);
                *out = xasprintf("%s/%s", home, configured + 2);
                return 0;
        }
        return bg_error(err, EINVAL, "ssh_key_path '%s': must be absolute or start with '~/'", configured);
}

/* path.pub for an existing private key, when it is missing and derivable. */
static int complete_pub(const char *path, const char *pubpath, struct bg_err **err)
{
        struct sshkey *k = NULL;
        _cleanup_free_ char *comment = NULL;
        if (sshkey_load_private(path, &k, &comment, NULL) < 0)
                return 0;   /* not our format (encrypted, RSA, ...): read it, never rewrite it */
        struct bg_err *e = NULL;
        int rc = write_pub(k, comment, pubpath, false, &e);
        sshkey_free(k);
        if (rc < 0 && e->code != EEXIST)   /* EEXIST: a concurrent banger wrote it */
                return pass_err(err, e);
        bg_err_free(e);
        return 0;
}

int sshkey_ensure_user_key(const char *path, bool *created, struct bg_err **err)
{
        _cleanup_free_ char *pubpath = xasprintf("%s.pub", path);
        struct stat st;
        if (created)
                *created = false;
        if (lstat(path, &st) < 0) {
                if (errno != ENOENT)
                        return bg_error(err, errno, "user key '%s': %s", path, strerror(errno));
                if (lstat(pubpath, &st) == 0)
                        return bg_error(err, EEXIST, "user key '%s' is missing but '%s' exists; "
                                        "move it away or restore the private key", path, pubpath);
                _cleanup_free_ char *dir = xstrdup(path);
                char *slash = strrchr(dir, '/');
                if (slash && slash != dir) {
                        *slash = '\0';
                        if (mkdir_p(dir, 0700, err) < 0)
                                return bg_error_wrap(err, "user key '%s'", path);
                }
                struct sshkey *k = NULL;
                if (sshkey_generate(&k, err) < 0)
                        return bg_error_wrap(err, "user key '%s'", path);
                struct bg_err *e = NULL;
                int rc = sshkey_write_pair(k, path, "banger", false, false, &e);
                sshkey_free(k);
                if (rc < 0 && e->code != EEXIST)
                        return pass_err(err, e);
                if (rc == 0 && created)
                        *created = true;
                bg_err_free(e);
                /* Made here or by a concurrent banger: either way, check it below. */
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return bg_error(err, errno, "user key '%s': %s", path, strerror(errno));
        int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        close(fd);
        if (!ok)
                return bg_error(err, EINVAL, "user key '%s' is not a regular file", path);
        if (lstat(pubpath, &st) < 0 && errno == ENOENT)
                return complete_pub(path, pubpath, err);
        return 0;
}

/* Key types an authorized_keys line may carry (OpenSSH's, minus DSA). */
static const char *const public_types[] = {
        "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
};

int sshkey_check_public_line(const char *line)
{
        size_t tl = strcspn(line, " \t");
        bool known = false;
        for (size_t i = 0; i < sizeof public_types / sizeof *public_types && !known; i++)
                known = strlen(public_types[i]) == tl && strncmp(line, public_types[i], tl) == 0;
        if (!known || !line[tl])
                return -EINVAL;
        const char *b = line + tl + strspn(line + tl, " \t");
        size_t bn = strcspn(b, " \t");
        for (const char *c = b + bn; *c; c++)
                if ((unsigned char)*c < 0x20 && *c != '\t')
                        return -EINVAL;   /* a comment with a newline or control byte */
        unsigned char *raw = NULL;
        size_t rawn = 0;
        if (!bn || !b64_decode(b, bn, &raw, &rawn))
                return -EINVAL;
        /* the blob names its own type first: the line's word must match it */
        struct rd r = { raw, rawn };
        const unsigned char *t;
        size_t n;
        bool ok = rd_str(&r, &t, &n) && n == tl && memcmp(t, line, tl) == 0 && r.n > 0;
        free(raw);
        return ok ? 0 : -EINVAL;
}

int sshkey_read_public(const char *path, char **line, struct bg_err **err)
{
        _cleanup_free_ char *pubpath = xasprintf("%s.pub", path);
        char *text = NULL;
        size_t len = 0;
        struct bg_err *e = NULL;
        if (read_file_limited(pubpath, SSHKEY_MAX_FILE, &text, &len, &e) == 0) {
                text[strcspn(text, "\r\n")] = '\0';
                /* Only a real public key line: the path may be configured
                 * by a user and read by root, so nothing else may pass. */
                if (sshkey_check_public_line(text) == 0) {
                        *line = text;
                        return 0;
                }
                free(text);
                return bg_error(err, EINVAL, "'%s' does not hold an OpenSSH public key line", pubpath);
        }
        if (e->code != ENOENT)
                return pass_err(err, e);
        bg_err_free(e);
        struct sshkey *k = NULL;
        _cleanup_free_ char *comment = NULL;
        if (sshkey_load_private(path, &k, &comment, err) < 0)
                return bg_error_wrap(err, "no '%s'", pubpath);
        *line = sshkey_public_line(k, comment);
        sshkey_free(k);
        return 0;
}
