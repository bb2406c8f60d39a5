/* store: bangerd's state in one LMDB environment (databases and the
 * write-ahead rule are described in store.h).
 *
 * A sandbox record is stored under its name with this value, all integers
 * little-endian and packed (no padding):
 *
 *   off  size  field
 *     0    1   format (REC_FORMAT, 1)
 *     1    1   phase
 *     2    4   flags
 *     6    4   restarts
 *    10    4   failures
 *    14    4   last_exit (int32)
 *    18    8   spec_hash
 *    26    8   created_ms (int64)
 *    34    8   phase_since_ms (int64)
 *    42    8   backoff_until_ms (int64)
 *    50        id, spec_json, message, handles_json: each a u32 length
 *              (0xffffffff for NULL) and that many bytes, no NUL
 *
 * Other values: meta holds decimal text; allocs map "<pool>/<key>" to the
 * 16-char owner id; events map a big-endian u64 seq (so keys sort by
 * number) to compact JSON text with "seq" first.
 *
 * The record value ends exactly after the last string.  Decoding checks every
 * length against the bytes left, so a damaged value is an error (EBADMSG)
 * naming the record, never an overread.  A different layout gets a new
 * format byte; schema_version in meta covers the set of databases and the
 * key formats.
 *
 * Durability: the environment is opened with MDB_NOMETASYNC.  Each commit
 * still fdatasyncs the data pages before the meta page is written, so the
 * file is never corrupt and a killed process (kill -9) loses nothing that
 * committed: the page cache holds it.  Only an OS crash or power loss may
 * roll back the last commit, which the write-ahead rule already tolerates
 * (an object made after it is garbage for the GC pass).  It saves one of
 * the two fsyncs per commit.
 */
#include "store.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "util.h"

/* Sparse: only pages in use take disk space, so be generous; 100k records
 * of a few KiB each stay well below. */
#define STORE_MAP_SIZE ((size_t)(sizeof(size_t) >= 8 ? 4ULL << 30 : 1ULL << 30))

#define REC_FORMAT   1
#define REC_HDR      50
#define REC_NSTR     4
#define REC_NULL     0xffffffffu
/* A runaway message must not fill the map; specs are size-limited long
 * before they get here. */
#define REC_STR_MAX  (16u << 20)

#define ALLOC_PART_MAX 128

struct store {
        MDB_env *env;
        MDB_dbi meta, recs, allocs, events;
};

struct store_txn {
        struct store *s;
        MDB_txn *txn;
        bool write;
};

/* The store whose write txn this thread holds: LMDB's writer lock is not
 * recursive, so a second begin on the same thread would hang forever. */
static _Thread_local const struct store *tls_writer;

static const char *const str_names[REC_NSTR] = { "id", "spec_json", "message", "handles_json" };

/* LMDB codes are errno values or MDB_* (negative); turn them into errno. */
static int mdb_code(int rc)
{
        switch (rc) {
        case MDB_NOTFOUND:      return ENOENT;
        case MDB_KEYEXIST:      return EEXIST;
        case MDB_READERS_FULL:  return EAGAIN;
        case MDB_MAP_FULL: case MDB_TXN_FULL: case MDB_CURSOR_FULL: case MDB_PAGE_FULL:
                return ENOSPC;
        case MDB_BAD_TXN: case MDB_BAD_VALSIZE: case MDB_BAD_DBI:
                return EINVAL;
        }
        return rc > 0 ? rc : EIO;
}

#define mdb_fail(err, rc, fmt, ...) \
        bg_error(err, mdb_code(rc), "store: " fmt ": %s", ##__VA_ARGS__, mdb_strerror(rc))
/* Add context but keep the code r: bg_error_wrap answers -EIO when the
 * caller passed no err. */
#define wrap(r, err, ...) (bg_error_wrap(err, __VA_ARGS__), (r))

static void put_le32(unsigned char *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_le64(unsigned char *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get_le32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_le64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

static MDB_val val_str(const char *s)
{
        return (MDB_val){ .mv_size = strlen(s), .mv_data = (void *)s };
}

static bool valid_name(const char *name, size_t cap)
{
        size_t n = strnlen(name, cap);
        return n >= 1 && n <= 63;
}

static bool valid_hex_id(const char *p, size_t n)
{
        if (n != 16)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
                        return false;
        return true;
}

#define valid_id(id) valid_hex_id(id, strnlen(id, 17))

/* Strict decimal: 1..20 digits, no sign, no overflow. */
static int parse_u64(const MDB_val *v, uint64_t *out)
{
        char buf[24];
        if (v->mv_size == 0 || v->mv_size > 20)
                return -1;
        memcpy(buf, v->mv_data, v->mv_size);
        buf[v->mv_size] = '\0';
        errno = 0;
        *out = strtoull(buf, NULL, 10);
        return strspn(buf, "0123456789") == v->mv_size && errno == 0 ? 0 : -1;
}

static int meta_get_u64(struct store_txn *t, const char *key, uint64_t *out, struct bg_err **err)
{
        MDB_val k = val_str(key), v;
        int rc = mdb_get(t->txn, t->s->meta, &k, &v);
        if (rc == MDB_NOTFOUND)
                return -ENOENT;
        if (rc)
                return bg_error(err, mdb_code(rc), "read meta '%s': %s", key, mdb_strerror(rc));
        if (parse_u64(&v, out) < 0)
                return bg_error(err, EBADMSG, "read meta '%s': corrupt value", key);
        return 0;
}

static int meta_put_u64(struct store_txn *t, const char *key, uint64_t n, struct bg_err **err)
{
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRIu64, n);
        MDB_val k = val_str(key), v = val_str(buf);
        int rc = mdb_put(t->txn, t->s->meta, &k, &v, 0);
        return rc ? bg_error(err, mdb_code(rc), "write meta '%s': %s", key, mdb_strerror(rc)) : 0;
}

static int need_write(struct store_txn *t, const char *what, const char *obj, struct bg_err **err)
{
        if (t->write)
                return 0;
        return bg_error(err, EBADF, "store: %s '%s': read-only transaction", what, obj);
}

/* ---- records ---- */

struct span {
        const char *p;  /* NULL for a NULL string */
        uint32_t len;
};

static size_t span_len(const char *s)
{
        return s ? strlen(s) : 0;
}

/* Decode val (stored under key) into the scalars and id of r, and point
 * str[] at the strings inside val.  Any inconsistency is EBADMSG. */
static int rec_decode(const MDB_val *key, const MDB_val *val, struct store_record *r,
                      struct span str[REC_NSTR], struct bg_err **err)
{
        const unsigned char *p = val->mv_data;
        size_t n = val->mv_size, off = REC_HDR;

        memset(r, 0, sizeof *r);
        if (key->mv_size < 1 || key->mv_size > 63 || memchr(key->mv_data, 0, key->mv_size))
                return bg_error(err, EBADMSG, "corrupt record: bad key of %zu bytes", key->mv_size);
        if (n < REC_HDR)
                return bg_error(err, EBADMSG, "corrupt record: %zu bytes, shorter than the header", n);
        if (p[0] != REC_FORMAT)
                return bg_error(err, EBADMSG, "corrupt record: unknown format %u", p[0]);
        if (p[1] >= PHASE_COUNT)
                return bg_error(err, EBADMSG, "corrupt record: bad phase %u", p[1]);
        memcpy(r->name, key->mv_data, key->mv_size);
        r->phase = (enum bg_phase)p[1];
        r->flags = get_le32(p + 2);
        r->restarts = get_le32(p + 6);
        r->failures = get_le32(p + 10);
        r->last_exit = (int32_t)get_le32(p + 14);
        r->spec_hash = get_le64(p + 18);
        r->created_ms = (int64_t)get_le64(p + 26);
        r->phase_since_ms = (int64_t)get_le64(p + 34);
        r->backoff_until_ms = (int64_t)get_le64(p + 42);

        for (int i = 0; i < REC_NSTR; i++) {
                if (n - off < 4)
                        return bg_error(err, EBADMSG, "corrupt record: truncated before %s", str_names[i]);
                uint32_t len = get_le32(p + off);
                off += 4;
                if (len == REC_NULL) {
                        str[i] = (struct span){ NULL, 0 };
                        continue;
                }
                if (len > n - off)
                        return bg_error(err, EBADMSG, "corrupt record: %s of %" PRIu32
                                        " bytes overruns the value", str_names[i], len);
                /* Strings become C strings: an embedded NUL would silently cut them. */
                if (memchr(p + off, 0, len))
                        return bg_error(err, EBADMSG, "corrupt record: %s contains a nul byte", str_names[i]);
                str[i] = (struct span){ (const char *)p + off, len };
                off += len;
        }
        if (off != n)
                return bg_error(err, EBADMSG, "corrupt record: %zu trailing bytes", n - off);
        if (!str[0].p || !valid_hex_id(str[0].p, str[0].len))
                return bg_error(err, EBADMSG, "corrupt record: bad id");
        memcpy(r->id, str[0].p, 16);
        return 0;
}

/* Give r its strings: heap copies when buf is NULL, else C strings laid
 * out in buf (room for all of them and their NULs). */
static void rec_strings(struct store_record *r, const struct span str[REC_NSTR], char *buf)
{
        char **dst[REC_NSTR - 1] = { &r->spec_json, &r->message, &r->handles_json };
        for (int i = 1; i < REC_NSTR; i++) {
                if (!str[i].p || !buf) {
                        *dst[i - 1] = str[i].p ? xstrndup(str[i].p, str[i].len) : NULL;
                        continue;
                }
                memcpy(buf, str[i].p, str[i].len);
                buf[str[i].len] = '\0';
                *dst[i - 1] = buf;
                buf += str[i].len + 1;
        }
}

static size_t rec_size(const struct store_record *r)
{
        return REC_HDR + REC_NSTR * 4 + 16 + span_len(r->spec_json) + span_len(r->message) +
               span_len(r->handles_json);
}

static unsigned char *put_str(unsigned char *p, const char *s, size_t len)
{
        put_le32(p, s ? (uint32_t)len : REC_NULL);
        if (s)
                memcpy(p + 4, s, len);
        return p + 4 + len;
}

static void rec_encode(const struct store_record *r, unsigned char *p)
{
        p[0] = REC_FORMAT;
        p[1] = (unsigned char)r->phase;
        put_le32(p + 2, r->flags);
        put_le32(p + 6, r->restarts);
        put_le32(p + 10, r->failures);
        put_le32(p + 14, (uint32_t)r->last_exit);
        put_le64(p + 18, r->spec_hash);
        put_le64(p + 26, (uint64_t)r->created_ms);
        put_le64(p + 34, (uint64_t)r->phase_since_ms);
        put_le64(p + 42, (uint64_t)r->backoff_until_ms);
        p = put_str(p + REC_HDR, r->id, 16);
        p = put_str(p, r->spec_json, span_len(r->spec_json));
        p = put_str(p, r->message, span_len(r->message));
        put_str(p, r->handles_json, span_len(r->handles_json));
}

void store_record_release(struct store_record *r)
{
        if (!r)
                return;
        free(r->spec_json);
        free(r->message);
        free(r->handles_json);
        r->spec_json = r->message = r->handles_json = NULL;
}

void store_record_copy(struct store_record *dst, const struct store_record *src)
{
        *dst = *src;
        dst->spec_json = src->spec_json ? xstrdup(src->spec_json) : NULL;
        dst->message = src->message ? xstrdup(src->message) : NULL;
        dst->handles_json = src->handles_json ? xstrdup(src->handles_json) : NULL;
}

/* out is overwritten, and zeroed on every failure so releasing it is safe. */
int store_record_get(struct store_txn *t, const char *name, struct store_record *out, struct bg_err **err)
{
        struct span str[REC_NSTR] = { { 0 } };
        MDB_val k, v;

        memset(out, 0, sizeof *out);
        if (!valid_name(name, 64))
                return bg_error(err, EINVAL, "store: get record '%.64s': invalid name", name);
        k = val_str(name);
        int rc = mdb_get(t->txn, t->s->recs, &k, &v);
        if (rc == MDB_NOTFOUND)
                return -ENOENT;
        if (rc)
                return mdb_fail(err, rc, "get record '%s'", name);
        if ((rc = rec_decode(&k, &v, out, str, err)) < 0) {
                memset(out, 0, sizeof *out);
                return wrap(rc, err, "store: get record '%s'", name);
        }
        rec_strings(out, str, NULL);
        return 0;
}

int store_record_put(struct store_txn *t, const struct store_record *r, struct bg_err **err)
{
        const char *strs[REC_NSTR - 1] = { r->spec_json, r->message, r->handles_json };

        if (!valid_name(r->name, sizeof r->name))
                return bg_error(err, EINVAL, "store: put record '%.63s': name must be 1 to 63 characters",
                                r->name);
        if (need_write(t, "put record", r->name, err) < 0)
                return -EBADF;
        if (!valid_id(r->id))
                return bg_error(err, EINVAL, "store: put record '%s': invalid id '%.16s'", r->name, r->id);
        if ((unsigned)r->phase >= PHASE_COUNT)
                return bg_error(err, EINVAL, "store: put record '%s': invalid phase %d", r->name, (int)r->phase);
        for (int i = 0; i < REC_NSTR - 1; i++)
                if (strs[i] && strlen(strs[i]) > REC_STR_MAX)
                        return bg_error(err, EFBIG, "store: put record '%s': %s longer than %u bytes",
                                        r->name, str_names[i + 1], REC_STR_MAX);

        /* MDB_RESERVE hands back space in the page: encode straight into it. */
        MDB_val k = val_str(r->name), v = { .mv_size = rec_size(r), .mv_data = NULL };
        int rc = mdb_put(t->txn, t->s->recs, &k, &v, MDB_RESERVE);
        if (rc)
                return mdb_fail(err, rc, "put record '%s'", r->name);
        rec_encode(r, v.mv_data);
        return 0;
}

/* Deleting an absent record is not an error: the loop deletes last, after
 * the objects are gone, and may repeat that after a crash. */
int store_record_del(struct store_txn *t, const char *name, struct bg_err **err)
{
        if (!valid_name(name, 64))
                return bg_error(err, EINVAL, "store: delete record '%.64s': invalid name", name);
        if (need_write(t, "delete record", name, err) < 0)
                return -EBADF;
        MDB_val k = val_str(name);
        int rc = mdb_del(t->txn, t->s->recs, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
                return mdb_fail(err, rc, "delete record '%s'", name);
        return 0;
}

/* A corrupt record stops the walk with an error instead of being skipped:
 * a skipped record would make the GC pass treat its objects as garbage.
 * Strings are copied into one reusable buffer rather than pointed at the
 * map, so cb may write through the same (write) txn, and no allocation
 * happens per record.  Returns cb's value when negative, else 0. */
int store_record_foreach(struct store_txn *t, int (*cb)(const struct store_record *r, void *arg),
                         void *arg, struct bg_err **err)
{
        MDB_cursor *c;
        MDB_val k, v;
        _cleanup_free_ char *buf = NULL;
        size_t cap = 0;
        int ret = 0;

        int rc = mdb_cursor_open(t->txn, t->s->recs, &c);
        if (rc)
                return mdb_fail(err, rc, "list records");
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                struct store_record r;
                struct span str[REC_NSTR] = { { 0 } };

                if ((ret = rec_decode(&k, &v, &r, str, err)) < 0) {
                        bg_error_wrap(err, "store: list records: '%.*s'", (int)(k.mv_size > 63 ? 63 : k.mv_size),
                                      (const char *)k.mv_data);
                        break;
                }
                if (v.mv_size + REC_NSTR > cap) {
                        cap = (v.mv_size + REC_NSTR) * 2;
                        free(buf);
                        buf = xmalloc(cap);
                }
                rec_strings(&r, str, buf);
                int cr = cb(&r, arg);
                if (cr) {
                        ret = cr < 0 ? cr : 0;
                        break;
                }
        }
        if (rc && rc != MDB_NOTFOUND && ret == 0)
                ret = mdb_fail(err, rc, "list records");
        mdb_cursor_close(c);
        return ret;
}

/* ---- allocations ---- */

/* pool and key: 1..128 printable ASCII bytes without '/', so the "/" in the
 * stored key splits them unambiguously and the key fits LMDB's 511. */
static bool valid_part(const char *s, size_t n)
{
        if (n < 1 || n > ALLOC_PART_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '/')
                        return false;
        return true;
}

static int alloc_key(const char *what, const char *pool, const char *key, char buf[2 * ALLOC_PART_MAX + 2],
                     MDB_val *k, struct bg_err **err)
{
        if (!valid_part(pool, strnlen(pool, ALLOC_PART_MAX + 1)))
                return bg_error(err, EINVAL, "store: %s: invalid pool '%.*s'", what, ALLOC_PART_MAX, pool);
        if (!valid_part(key, strnlen(key, ALLOC_PART_MAX + 1)))
                return bg_error(err, EINVAL, "store: %s '%s': invalid key '%.*s'", what, pool,
                                ALLOC_PART_MAX, key);
        int n = snprintf(buf, 2 * ALLOC_PART_MAX + 2, "%s/%s", pool, key);
        *k = (MDB_val){ .mv_size = (size_t)n, .mv_data = buf };
        return 0;
}

int store_alloc_claim(struct store_txn *t, const char *pool, const char *key, const char *owner,
                      struct bg_err **err)
{
        char kb[2 * ALLOC_PART_MAX + 2];
        MDB_val k;

        if (alloc_key("claim", pool, key, kb, &k, err) < 0)
                return -EINVAL;
        if (!valid_id(owner))
                return bg_error(err, EINVAL, "store: claim '%s': invalid owner '%.16s'", kb, owner);
        if (need_write(t, "claim", kb, err) < 0)
                return -EBADF;
        MDB_val v = { .mv_size = 16, .mv_data = (void *)owner };
        int rc = mdb_put(t->txn, t->s->allocs, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
                /* v now holds the current owner. */
                if (v.mv_size == 16 && memcmp(v.mv_data, owner, 16) == 0)
                        return 0;
                if (!valid_hex_id(v.mv_data, v.mv_size))
                        return bg_error(err, EBADMSG, "store: claim '%s': corrupt owner", kb);
                return bg_error(err, EEXIST, "store: claim '%s' for %s: held by %.16s", kb, owner,
                                (const char *)v.mv_data);
        }
        if (rc)
                return mdb_fail(err, rc, "claim '%s'", kb);
        return 0;
}

int store_alloc_release(struct store_txn *t, const char *pool, const char *key, struct bg_err **err)
{
        char kb[2 * ALLOC_PART_MAX + 2];
        MDB_val k;

        if (alloc_key("release", pool, key, kb, &k, err) < 0)
                return -EINVAL;
        if (need_write(t, "release", kb, err) < 0)
                return -EBADF;
        int rc = mdb_del(t->txn, t->s->allocs, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
                return mdb_fail(err, rc, "release '%s'", kb);
        return 0;
}

int store_alloc_get(struct store_txn *t, const char *pool, const char *key, char owner[17],
                    struct bg_err **err)
{
        char kb[2 * ALLOC_PART_MAX + 2];
        MDB_val k, v;

        owner[0] = '\0';
        if (alloc_key("get allocation", pool, key, kb, &k, err) < 0)
                return -EINVAL;
        int rc = mdb_get(t->txn, t->s->allocs, &k, &v);
        if (rc == MDB_NOTFOUND)
                return -ENOENT;
        if (rc)
                return mdb_fail(err, rc, "get allocation '%s'", kb);
        if (!valid_hex_id(v.mv_data, v.mv_size))
                return bg_error(err, EBADMSG, "store: get allocation '%s': corrupt owner", kb);
        memcpy(owner, v.mv_data, 16);
        owner[16] = '\0';
        return 0;
}

/* Split a stored allocation into C strings; EBADMSG when it cannot be one
 * that claim wrote. */
static int alloc_split(const MDB_val *k, const MDB_val *v, char pool[ALLOC_PART_MAX + 1],
                       char key[ALLOC_PART_MAX + 1], char owner[17], struct bg_err **err)
{
        const char *p = k->mv_data, *slash = memchr(p, '/', k->mv_size);
        size_t pl = slash ? (size_t)(slash - p) : 0, kl = k->mv_size - pl - 1;

        if (!slash || !valid_part(p, pl) || !valid_part(slash + 1, kl))
                return bg_error(err, EBADMSG, "store: list allocations: corrupt key");
        memcpy(pool, p, pl);
        memcpy(key, slash + 1, kl);
        pool[pl] = key[kl] = '\0';
        if (!valid_hex_id(v->mv_data, v->mv_size))
                return bg_error(err, EBADMSG, "store: list allocations: '%s/%s': corrupt owner", pool, key);
        memcpy(owner, v->mv_data, 16);
        owner[16] = '\0';
        return 0;
}

/* Returns cb's value when negative, else 0. */
int store_alloc_foreach(struct store_txn *t, const char *pool,
                        int (*cb)(const char *pool, const char *key, const char *owner, void *arg),
                        void *arg, struct bg_err **err)
{
        char prefix[ALLOC_PART_MAX + 2], pb[ALLOC_PART_MAX + 1], kb[ALLOC_PART_MAX + 1], ob[17];
        size_t plen = 0;
        MDB_cursor *c;
        MDB_val k, v;
        int rc, ret = 0;

        if (pool) {
                if (!valid_part(pool, strnlen(pool, ALLOC_PART_MAX + 1)))
                        return bg_error(err, EINVAL, "store: list allocations: invalid pool '%.*s'",
                                        ALLOC_PART_MAX, pool);
                plen = (size_t)snprintf(prefix, sizeof prefix, "%s/", pool);
        }
        rc = mdb_cursor_open(t->txn, t->s->allocs, &c);
        if (rc)
                return mdb_fail(err, rc, "list allocations");
        /* Keys sort bytewise, so one pool's keys are contiguous after "pool/". */
        k = (MDB_val){ .mv_size = plen, .mv_data = prefix };
        rc = mdb_cursor_get(c, &k, &v, pool ? MDB_SET_RANGE : MDB_FIRST);
        for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                if (pool && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
                        break;
                if (alloc_split(&k, &v, pb, kb, ob, err) < 0) {
                        ret = -EBADMSG;
                        break;
                }
                int cr = cb(pb, kb, ob, arg);
                if (cr) {
                        ret = cr < 0 ? cr : 0;
                        break;
                }
        }
        if (rc && rc != MDB_NOTFOUND && ret == 0)
                ret = mdb_fail(err, rc, "list allocations");
        mdb_cursor_close(c);
        return ret;
}

int store_alloc_release_owner(struct store_txn *t, const char *owner, struct bg_err **err)
{
        MDB_cursor *c;
        MDB_val k, v;
        int rc;

        if (!valid_id(owner))
                return bg_error(err, EINVAL, "store: release allocations of '%.16s': invalid owner", owner);
        if (need_write(t, "release allocations of", owner, err) < 0)
                return -EBADF;
        rc = mdb_cursor_open(t->txn, t->s->allocs, &c);
        if (rc)
                return mdb_fail(err, rc, "release allocations of %s", owner);
        /* After mdb_cursor_del, MDB_NEXT yields the entry that followed. */
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                if (v.mv_size != 16 || memcmp(v.mv_data, owner, 16) != 0)
                        continue;
                if ((rc = mdb_cursor_del(c, 0)) != 0)
                        break;
        }
        mdb_cursor_close(c);
        if (rc && rc != MDB_NOTFOUND)
                return mdb_fail(err, rc, "release allocations of %s", owner);
        return 0;
}

/* ---- events ---- */

static MDB_val seq_key(uint64_t seq, uint64_t *be)
{
        *be = htobe64(seq);
        return (MDB_val){ .mv_size = sizeof *be, .mv_data = be };
}

/* Next sequence from meta; it outlives dropped events, so a seq is never
 * reused and a client resuming "after N" never misses or repeats one. */
static int next_seq(struct store_txn *t, uint64_t *next, struct bg_err **err)
{
        int r = meta_get_u64(t, "event_seq", next, err);
        if (r == -ENOENT) {
                *next = 1;
                return 0;
        }
        if (r == 0 && *next == 0)
                return bg_error(err, EBADMSG, "read meta 'event_seq': corrupt value");
        return r;
}

int store_event_append(struct store_txn *t, json_t *ev, uint64_t *seq, struct bg_err **err)
{
        uint64_t n, be;
        MDB_stat st;
        const char *name;
        json_t *val;
        int rc;

        if (!json_is_object(ev))
                return bg_error(err, EINVAL, "store: append event: not a json object");
        if (need_write(t, "append event", "events", err) < 0)
                return -EBADF;
        if ((rc = next_seq(t, &n, err)) < 0)
                return wrap(rc, err, "store: append event");

        /* "seq" first so a reader of the raw text sees it at a glance. */
        json_t *o = json_object();
        json_object_set_new(o, "seq", json_integer((json_int_t)n));
        json_object_foreach(ev, name, val)
                if (strcmp(name, "seq") != 0)
                        json_object_set(o, name, val);
        _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!text)
                return bg_error(err, EINVAL, "store: append event %" PRIu64 ": cannot encode json", n);

        MDB_val k = seq_key(n, &be), v = val_str(text);
        rc = mdb_put(t->txn, t->s->events, &k, &v, MDB_APPEND);
        if (rc)
                return mdb_fail(err, rc, "append event %" PRIu64, n);
        if ((rc = meta_put_u64(t, "event_seq", n + 1, err)) < 0)
                return wrap(rc, err, "store: append event %" PRIu64, n);

        rc = mdb_stat(t->txn, t->s->events, &st);
        if (rc == 0 && st.ms_entries > STORE_EVENTS_MAX) {
                /* Normally exactly one: the ring was full before this append. */
                MDB_cursor *c;
                size_t drop = st.ms_entries - STORE_EVENTS_MAX;
                rc = mdb_cursor_open(t->txn, t->s->events, &c);
                if (rc == 0) {
                        while (rc == 0 && drop--) {
                                rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
                                if (rc == 0)
                                        rc = mdb_cursor_del(c, 0);
                        }
                        mdb_cursor_close(c);
                }
        }
        if (rc)
                return mdb_fail(err, rc, "append event %" PRIu64 ": drop oldest", n);
        if (seq)
                *seq = n;
        return 0;
}

/* Returns cb's value when negative, else 0. */
int store_event_foreach(struct store_txn *t, uint64_t after, size_t max,
                        int (*cb)(uint64_t seq, json_t *ev, void *arg), void *arg, struct bg_err **err)
{
        MDB_cursor *c;
        MDB_val k, v;
        uint64_t be;
        size_t count = 0;
        int rc, ret = 0;

        if (after == UINT64_MAX)
                return 0;
        rc = mdb_cursor_open(t->txn, t->s->events, &c);
        if (rc)
                return mdb_fail(err, rc, "read events");
        k = seq_key(after + 1, &be);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                json_error_t je;
                if (k.mv_size != 8) {
                        ret = bg_error(err, EBADMSG, "store: read events: corrupt key");
                        break;
                }
                memcpy(&be, k.mv_data, 8);
                uint64_t seq = be64toh(be);
                json_t *ev = json_loadb(v.mv_data, v.mv_size, 0, &je);
                if (!json_is_object(ev)) {
                        json_decref(ev);
                        ret = bg_error(err, EBADMSG, "store: read event %" PRIu64 ": corrupt json: %s", seq,
                                       ev ? "not an object" : je.text);
                        break;
                }
                int cr = cb(seq, ev, arg);
                json_decref(ev);
                if (cr) {
                        ret = cr < 0 ? cr : 0;
                        break;
                }
                if (max && ++count >= max)
                        break;
        }
        if (rc && rc != MDB_NOTFOUND && ret == 0)
                ret = mdb_fail(err, rc, "read events");
        mdb_cursor_close(c);
        return ret;
}

int store_event_last_seq(struct store_txn *t, uint64_t *seq, struct bg_err **err)
{
        uint64_t n;
        int r;
        *seq = 0;
        if ((r = next_seq(t, &n, err)) < 0)
                return wrap(r, err, "store: last event");
        *seq = n - 1;
        return 0;
}

/* ---- environment and transactions ---- */

static int open_dbs(struct store *s, const char *dir, struct bg_err **err)
{
        MDB_txn *txn;
        uint64_t ver;
        int r = 0;

        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc)
                return mdb_fail(err, rc, "open '%s'", dir);
        struct store_txn t = { .s = s, .txn = txn, .write = true };
        /* meta first: a newer schema must be refused before anything else
         * is created in its environment. */
        if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0) {
                r = mdb_fail(err, rc, "open '%s': meta", dir);
                goto out;
        }
        r = meta_get_u64(&t, "schema_version", &ver, err);
        if (r == -ENOENT) {
                ver = STORE_SCHEMA_VERSION;
                r = meta_put_u64(&t, "schema_version", ver, err);
        }
        if (r < 0) {
                bg_error_wrap(err, "store: open '%s'", dir);
                goto out;
        }
        if (ver > STORE_SCHEMA_VERSION) {
                r = bg_error(err, EPROTONOSUPPORT,
                             "store: open '%s': state schema version %" PRIu64
                             " is newer than this bangerd supports (%d)", dir, ver, STORE_SCHEMA_VERSION);
                goto out;
        }
        /* Upgrades from older versions go here; version 1 is the first. */
        if (ver < 1) {
                r = bg_error(err, EBADMSG, "store: open '%s': invalid state schema version %" PRIu64, dir, ver);
                goto out;
        }
        if ((rc = mdb_dbi_open(txn, "sandboxes", MDB_CREATE, &s->recs)) != 0 ||
            (rc = mdb_dbi_open(txn, "allocs", MDB_CREATE, &s->allocs)) != 0 ||
            (rc = mdb_dbi_open(txn, "events", MDB_CREATE, &s->events)) != 0) {
                r = mdb_fail(err, rc, "open '%s': databases", dir);
                goto out;
        }
        /* Handles opened in a committed txn stay valid for the environment. */
        rc = mdb_txn_commit(txn);
        return rc ? mdb_fail(err, rc, "open '%s': commit", dir) : 0;
out:
        mdb_txn_abort(txn);
        return r;
}

int store_open(const char *dir, struct store **out, struct bg_err **err)
{
        int rc, dead;

        *out = NULL;
        if ((rc = mkdir_p(dir, 0700, err)) < 0)
                return wrap(rc, err, "store: open '%s'", dir);
        struct store *s = xcalloc(1, sizeof *s);
        if ((rc = mdb_env_create(&s->env)) != 0) {
                free(s);
                return mdb_fail(err, rc, "open '%s'", dir);
        }
        mdb_env_set_mapsize(s->env, STORE_MAP_SIZE);
        mdb_env_set_maxdbs(s->env, 4);
        /* MDB_NOTLS: read txns belong to the txn object, not the thread, so
         * API threads can share the env.  NOMETASYNC: see the top comment. */
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600);
        if (rc) {
                store_close(s);
                return mdb_fail(err, rc, "open '%s'", dir);
        }
        /* LMDB 0.9 leaves the main data fd inheritable; a VMM child must
         * not get a writable handle on the state. */
        int fd;
        if (mdb_env_get_fd(s->env, &fd) == 0)
                fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
        /* Reader slots of a killed bangerd would pin old pages forever. */
        mdb_reader_check(s->env, &dead);
        if ((rc = open_dbs(s, dir, err)) < 0) {
                store_close(s);
                return rc;
        }
        *out = s;
        return 0;
}

void store_close(struct store *s)
{
        if (!s)
                return;
        if (s->env)
                mdb_env_close(s->env);
        free(s);
}

int store_txn_begin(struct store *s, bool write, struct store_txn **out, struct bg_err **err)
{
        MDB_txn *txn;

        *out = NULL;
        if (write && tls_writer == s)
                return bg_error(err, EDEADLK, "store: begin write txn: this thread already holds one");
        int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
        if (rc)
                return mdb_fail(err, rc, "begin %s txn", write ? "write" : "read");
        struct store_txn *t = xmalloc(sizeof *t);
        *t = (struct store_txn){ .s = s, .txn = txn, .write = write };
        if (write)
                tls_writer = s;
        *out = t;
        return 0;
}

/* Ends t whatever the outcome (LMDB frees a txn whose commit failed), so
 * the caller must not abort it afterwards. */
int store_txn_commit(struct store_txn *t, struct bg_err **err)
{
        if (!t)
                return bg_error(err, EINVAL, "store: commit: no transaction");
        int rc = mdb_txn_commit(t->txn);
        if (t->write)
                tls_writer = NULL;
        free(t);
        return rc ? mdb_fail(err, rc, "commit") : 0;
}

void store_txn_abort(struct store_txn *t)
{
        if (!t)
                return;
        mdb_txn_abort(t->txn);
        if (t->write)
                tls_writer = NULL;
        free(t);
}

void store_new_id(char id[17])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char b[8];

        random_bytes(b, sizeof b);
        for (int i = 0; i < 8; i++) {
                id[2 * i] = hex[b[i] >> 4];
                id[2 * i + 1] = hex[b[i] & 15];
        }
        id[16] = '\0';
}
