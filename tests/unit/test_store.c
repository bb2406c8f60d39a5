/* test_store: the LMDB store.  Each test gets its own mkdtemp folder; raw
 * LMDB is used only to plant what the store itself would never write
 * (newer schema versions, damaged values), with the store closed, since
 * LMDB forbids opening one environment twice in a process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "store.h"
#include "util.h"

struct fx {
        char dir[64];
        struct store *s;
};

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test_store.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        store_close(f->s);
        assert_int_equal(rm_rf(f->dir, NULL), 0);
        free(f);
        return 0;
}

static struct store *open_ok(struct fx *f)
{
        struct bg_err *err = NULL;
        store_close(f->s);
        f->s = NULL;
        int r = store_open(f->dir, &f->s, &err);
        if (r < 0)
                fail_msg("store_open: %s", bg_err_msg(err));
        return f->s;
}

static struct store_txn *begin(struct store *s, bool write)
{
        struct store_txn *t = NULL;
        struct bg_err *err = NULL;
        if (store_txn_begin(s, write, &t, &err) < 0)
                fail_msg("begin: %s", bg_err_msg(err));
        return t;
}

static void commit(struct store_txn *t)
{
        struct bg_err *err = NULL;
        if (store_txn_commit(t, &err) < 0)
                fail_msg("commit: %s", bg_err_msg(err));
}

/* Records in tests borrow string literals: the store never writes through
 * the strings it is given, hence the (char *) casts. */
static void rec_init(struct store_record *r, const char *name)
{
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", name);
        store_new_id(r->id);
        r->phase = PHASE_RUNNING;
        r->last_exit = -1;
}

static void put_ok(struct store_txn *t, const struct store_record *r)
{
        struct bg_err *err = NULL;
        if (store_record_put(t, r, &err) < 0)
                fail_msg("put: %s", bg_err_msg(err));
}

/* Write key -> val into db of the environment in dir, bypassing the store. */
static void raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val, size_t vlen)
{
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
        assert_int_equal(mdb_env_set_mapsize(env, 1u << 30), 0);
        assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
        MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
}

/* Read key from db of the environment in dir into a heap copy. */
static void *raw_get(const char *dir, const char *db, const char *key, size_t *len)
{
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
        assert_int_equal(mdb_env_set_mapsize(env, 1u << 30), 0);
        assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
        MDB_val k = { strlen(key), (void *)key }, v;
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
        void *p = xmalloc(v.mv_size);
        memcpy(p, v.mv_data, v.mv_size);
        *len = v.mv_size;
        mdb_txn_abort(txn);
        mdb_env_close(env);
        return p;
}

/* ---- environment ---- */

static void test_reopen_keeps_records_allocations_and_events(void **state)
{
        struct fx *f = *state;
        struct store_record r, got;
        char owner[17];
        uint64_t seq;

        struct store_txn *t = begin(open_ok(f), true);
        rec_init(&r, "web");
        r.spec_json = (char *)"{\"image\":\"debian\"}";
        put_ok(t, &r);
        assert_int_equal(store_alloc_claim(t, "tap", "bg1", r.id, NULL), 0);
        json_t *ev = json_pack("{s:s}", "type", "created");
        assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
        json_decref(ev);
        assert_int_equal(seq, 1);
        commit(t);

        t = begin(open_ok(f), false);
        assert_int_equal(store_record_get(t, "web", &got, NULL), 0);
        assert_string_equal(got.id, r.id);
        assert_string_equal(got.spec_json, r.spec_json);
        store_record_release(&got);
        assert_int_equal(store_alloc_get(t, "tap", "bg1", owner, NULL), 0);
        assert_string_equal(owner, r.id);
        assert_int_equal(store_event_last_seq(t, &seq, NULL), 0);
        assert_int_equal(seq, 1);
        store_txn_abort(t);
}

static void test_open_creates_missing_dir_private(void **state)
{
        struct fx *f = *state;
        struct store *s = NULL;
        struct stat st;
        _cleanup_free_ char *sub = xasprintf("%s/state/db", f->dir);
        assert_int_equal(store_open(sub, &s, NULL), 0);
        assert_int_equal(stat(sub, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        store_close(s);
}

static void test_newer_schema_version_is_refused(void **state)
{
        struct fx *f = *state;
        struct bg_err *err = NULL;
        struct store *s = NULL;
        size_t len;

        open_ok(f);
        store_close(f->s);
        f->s = NULL;
        _cleanup_free_ char *v = raw_get(f->dir, "meta", "schema_version", &len);
        assert_int_equal(len, 1);
        assert_memory_equal(v, "1", 1);

        raw_put(f->dir, "meta", "schema_version", 14, "2", 1);
        assert_true(store_open(f->dir, &s, &err) < 0);
        assert_null(s);
        assert_non_null(strstr(bg_err_msg(err),
                               "state schema version 2 is newer than this bangerd supports (1)"));
        bg_err_free(err);
        err = NULL;

        raw_put(f->dir, "meta", "schema_version", 14, "x1", 2);
        assert_int_equal(store_open(f->dir, &s, &err), -EBADMSG);
        assert_non_null(strstr(bg_err_msg(err), "schema_version"));
        bg_err_free(err);
}

/* ---- records ---- */

static int collect_names(const struct store_record *r, void *arg)
{
        char *buf = arg;
        strcat(buf, r->name);
        strcat(buf, ",");
        return 0;
}

static void test_record_put_get_del_and_foreach_in_name_order(void **state)
{
        struct fx *f = *state;
        struct store_record r, got;
        struct bg_err *err = NULL;
        char names[256] = "";
        const char *order[] = { "web", "api", "db-1", "zz", "db" };

        struct store_txn *t = begin(open_ok(f), true);
        for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
                rec_init(&r, order[i]);
                r.restarts = (uint32_t)i;
                put_ok(t, &r);
        }
        /* Overwrite keeps one record per name. */
        rec_init(&r, "web");
        r.restarts = 42;
        put_ok(t, &r);
        commit(t);

        t = begin(f->s, true);
        assert_int_equal(store_record_foreach(t, collect_names, names, NULL), 0);
        assert_string_equal(names, "api,db,db-1,web,zz,");
        assert_int_equal(store_record_get(t, "web", &got, &err), 0);
        assert_int_equal(got.restarts, 42);
        assert_string_equal(got.id, r.id);
        store_record_release(&got);

        assert_int_equal(store_record_del(t, "db", &err), 0);
        assert_int_equal(store_record_get(t, "db", &got, &err), -ENOENT);
        assert_null(err);
        assert_null(got.spec_json);
        assert_int_equal(store_record_del(t, "db", &err), 0);   /* absent is fine */
        names[0] = '\0';
        assert_int_equal(store_record_foreach(t, collect_names, names, NULL), 0);
        assert_string_equal(names, "api,db-1,web,zz,");
        commit(t);
}

static int stop_after_two(const struct store_record *r, void *arg)
{
        (void)r;
        return ++*(int *)arg == 2 ? 1 : 0;
}

static int fail_cb(const struct store_record *r, void *arg)
{
        (void)r;
        (void)arg;
        return -EINTR;
}

static void test_record_foreach_stops_when_cb_returns_nonzero(void **state)
{
        struct fx *f = *state;
        struct store_record r;
        int n = 0;

        struct store_txn *t = begin(open_ok(f), true);
        for (int i = 0; i < 5; i++) {
                char name[32];
                snprintf(name, sizeof name, "r%d", i);
                rec_init(&r, name);
                put_ok(t, &r);
        }
        assert_int_equal(store_record_foreach(t, stop_after_two, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_int_equal(store_record_foreach(t, fail_cb, NULL, NULL), -EINTR);
        store_txn_abort(t);
}

static void check_same(const struct store_record *a, const struct store_record *b)
{
        assert_string_equal(a->name, b->name);
        assert_string_equal(a->id, b->id);
        assert_int_equal(a->phase, b->phase);
        assert_int_equal(a->flags, b->flags);
        assert_int_equal(a->restarts, b->restarts);
        assert_int_equal(a->failures, b->failures);
        assert_true(a->spec_hash == b->spec_hash);
        assert_true(a->created_ms == b->created_ms);
        assert_true(a->phase_since_ms == b->phase_since_ms);
        assert_true(a->backoff_until_ms == b->backoff_until_ms);
        assert_int_equal(a->last_exit, b->last_exit);
        const char *as[] = { a->spec_json, a->message, a->handles_json };
        const char *bs[] = { b->spec_json, b->message, b->handles_json };
        for (int i = 0; i < 3; i++) {
                if (!as[i] || !bs[i])
                        assert_ptr_equal(as[i], bs[i]);
                else
                        assert_string_equal(as[i], bs[i]);
        }
}

static int check_cb(const struct store_record *r, void *arg)
{
        check_same(r, arg);
        return 0;
}

static void round_trip(struct fx *f, const struct store_record *r)
{
        struct store_record got, copy;
        struct store_txn *t = begin(f->s, true);
        put_ok(t, r);
        commit(t);
        t = begin(f->s, false);
        assert_int_equal(store_record_get(t, r->name, &got, NULL), 0);
        check_same(&got, r);
        store_record_copy(&copy, &got);
        store_record_release(&got);
        check_same(&copy, r);
        store_record_release(&copy);
        assert_int_equal(store_record_foreach(t, check_cb, (void *)r, NULL), 0);
        store_txn_abort(t);
        t = begin(f->s, true);
        assert_int_equal(store_record_del(t, r->name, NULL), 0);
        commit(t);
}

static void test_record_round_trips_every_field(void **state)
{
        struct fx *f = *state;
        struct store_record r;
        char name63[64];

        open_ok(f);
        memset(name63, 'n', 63);
        name63[63] = '\0';
        rec_init(&r, name63);
        r.phase = PHASE_FAILED;
        r.flags = REC_PREPARED | REC_GUEST_EXITED | 0x80000000u;
        r.restarts = UINT32_MAX;
        r.failures = 7;
        r.spec_hash = UINT64_MAX - 1;
        r.created_ms = INT64_MIN;
        r.phase_since_ms = INT64_MAX;
        r.backoff_until_ms = -5;
        r.last_exit = INT32_MIN;
        round_trip(f, &r);                       /* NULL strings */

        r.spec_json = (char *)"";
        r.message = (char *)"";
        r.handles_json = NULL;
        round_trip(f, &r);                       /* empty is not NULL */

        size_t big = 3u << 20;
        char *spec = xmalloc(big + 1);
        for (size_t i = 0; i < big; i++)
                spec[i] = (char)('a' + i % 26);
        spec[big] = '\0';
        rec_init(&r, "w");
        r.phase = PHASE_PENDING;
        r.spec_json = spec;
        r.message = (char *)"failed: \xc3\xa9t\xc3\xa9 \t \"quoted\"";
        r.handles_json = (char *)"{\"pid\":4242,\"tap\":\"bg0a1b\"}";
        round_trip(f, &r);
        free(spec);
}

static void test_record_put_validates_name_id_and_phase(void **state)
{
        struct fx *f = *state;
        struct store_record r;
        struct bg_err *err = NULL;

        struct store_txn *t = begin(open_ok(f), true);
        rec_init(&r, "");
        assert_int_equal(store_record_put(t, &r, &err), -EINVAL);
        assert_non_null(strstr(bg_err_msg(err), "name"));
        bg_err_free(err);
        err = NULL;

        rec_init(&r, "x");
        memset(r.name, 'a', sizeof r.name);      /* 64 chars, unterminated */
        assert_int_equal(store_record_put(t, &r, NULL), -EINVAL);

        const char *bad_ids[] = { "", "0123456789abcde", "0123456789ABCDEF", "0123456789abcdeg" };
        for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
                rec_init(&r, "web");
                snprintf(r.id, sizeof r.id, "%s", bad_ids[i]);
                assert_int_equal(store_record_put(t, &r, &err), -EINVAL);
                assert_non_null(strstr(bg_err_msg(err), "store: put record 'web': invalid id"));
                bg_err_free(err);
                err = NULL;
        }
        rec_init(&r, "web");
        r.phase = PHASE_COUNT;
        assert_int_equal(store_record_put(t, &r, NULL), -EINVAL);
        store_txn_abort(t);

        /* A read txn refuses writes with an error instead of LMDB's EACCES. */
        t = begin(f->s, false);
        rec_init(&r, "web");
        assert_int_equal(store_record_put(t, &r, &err), -EBADF);
        assert_non_null(strstr(bg_err_msg(err), "read-only"));
        bg_err_free(err);
        store_txn_abort(t);
}

static int count_cb(const struct store_record *r, void *arg)
{
        (void)r;
        ++*(int *)arg;
        return 0;
}

static void test_corrupt_record_value_is_an_error_not_a_crash(void **state)
{
        struct fx *f = *state;
        struct store_record r, got;
        struct bg_err *err = NULL;
        size_t len;

        struct store_txn *t = begin(open_ok(f), true);
        rec_init(&r, "good");
        r.spec_json = (char *)"{\"a\":1}";
        r.message = (char *)"hello";
        r.handles_json = (char *)"{}";
        put_ok(t, &r);
        commit(t);
        store_close(f->s);
        f->s = NULL;

        _cleanup_free_ unsigned char *enc = raw_get(f->dir, "sandboxes", "good", &len);
        raw_put(f->dir, "sandboxes", "garbage", 7, "\xde\xad\xbe\xef", 4);

        /* Every truncation, a trailing byte and a set of single-byte flips
         * of a valid value: each must decode to an error or a valid record.
         * The values live in LMDB's map, which ASan does not watch, so the
         * exact error codes are what show the bounds checks work. */
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
        assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "sandboxes", 0, &dbi), 0);
        for (size_t i = 0; i < len + 40; i++) {
                char name[32];
                unsigned char *v = xmalloc(len);
                memcpy(v, enc, len);
                size_t vlen = len;
                if (i < len) {
                        vlen = i;                          /* truncated */
                } else if (i == len) {
                        v = xrealloc(v, len + 1);          /* trailing byte */
                        v[len] = 'x';
                        vlen = len + 1;
                } else {
                        size_t at = (i - len) % len;       /* corrupted byte */
                        v[at] ^= (unsigned char)(0x5a + i);
                }
                snprintf(name, sizeof name, "c%03zu", i);
                MDB_val k = { strlen(name), name }, mv = { vlen, v };
                assert_int_equal(mdb_put(txn, dbi, &k, &mv, 0), 0);
                free(v);
        }
        /* A string length that wraps around the value size. */
        unsigned char *v = xmalloc(len);
        memcpy(v, enc, len);
        memcpy(v + 50, "\xfe\xff\xff\xff", 4);
        MDB_val k = { 4, (void *)"wrap" }, mv = { len, v };
        assert_int_equal(mdb_put(txn, dbi, &k, &mv, 0), 0);
        free(v);
        /* An id that is not hex. */
        v = xmalloc(len);
        memcpy(v, enc, len);
        v[54] = 'G';
        k = (MDB_val){ 5, (void *)"badid" };
        mv = (MDB_val){ len, v };
        assert_int_equal(mdb_put(txn, dbi, &k, &mv, 0), 0);
        free(v);
        /* An embedded NUL in a string. */
        v = xmalloc(len);
        memcpy(v, enc, len);
        v[len - 1] = '\0';                                 /* last byte of handles_json */
        k = (MDB_val){ 3, (void *)"nul" };
        mv = (MDB_val){ len, v };
        assert_int_equal(mdb_put(txn, dbi, &k, &mv, 0), 0);
        free(v);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);

        t = begin(open_ok(f), false);
        assert_int_equal(store_record_get(t, "garbage", &got, &err), -EBADMSG);
        assert_non_null(strstr(bg_err_msg(err), "store: get record 'garbage': corrupt record"));
        assert_null(got.spec_json);
        store_record_release(&got);
        bg_err_free(err);
        err = NULL;

        const char *exact[] = { "wrap", "nul", "badid", "c000", "c049" };
        for (size_t i = 0; i < ARRAY_SIZE(exact); i++) {
                assert_int_equal(store_record_get(t, exact[i], &got, &err), -EBADMSG);
                bg_err_free(err);
                err = NULL;
        }
        for (size_t i = 0; i < len + 40; i++) {
                char name[32];
                snprintf(name, sizeof name, "c%03zu", i);
                int rc = store_record_get(t, name, &got, &err);
                if (i <= len)                      /* truncations and the trailing byte */
                        assert_int_equal(rc, -EBADMSG);
                else
                        assert_true(rc == 0 || rc == -EBADMSG);
                if (rc < 0) {
                        assert_non_null(strstr(bg_err_msg(err), "corrupt record"));
                        assert_null(got.spec_json);
                        bg_err_free(err);
                        err = NULL;
                }
                store_record_release(&got);
        }

        /* A walk stops at the first damaged record with an error naming it. */
        int n = 0;
        assert_int_equal(store_record_foreach(t, count_cb, &n, &err), -EBADMSG);
        assert_non_null(strstr(bg_err_msg(err), "store: list records: 'badid': corrupt record"));
        bg_err_free(err);
        store_txn_abort(t);
}

static int rewrite_cb(const struct store_record *r, void *arg)
{
        struct store_txn *t = arg;
        struct store_record w;
        store_record_copy(&w, r);
        w.restarts++;
        free(w.message);
        w.message = xstrdup("a much longer message than before, to move bytes around in the page");
        int rc = store_record_put(t, &w, NULL);
        /* r must still read the same after the write under it. */
        assert_true(r->message == NULL || strcmp(r->message, "m") == 0);
        store_record_release(&w);
        if (strcmp(r->name, "b") == 0)
                assert_int_equal(store_record_del(t, "c", NULL), 0);
        return rc;
}

static void test_record_foreach_cb_may_write_the_same_txn(void **state)
{
        struct fx *f = *state;
        struct store_record r, got;
        char names[64] = "";

        struct store_txn *t = begin(open_ok(f), true);
        for (const char *n = "abcd"; *n; n++) {
                char name[2] = { *n, 0 };
                rec_init(&r, name);
                r.message = (char *)"m";
                put_ok(t, &r);
        }
        assert_int_equal(store_record_foreach(t, rewrite_cb, t, NULL), 0);
        assert_int_equal(store_record_foreach(t, collect_names, names, NULL), 0);
        assert_string_equal(names, "a,b,d,");
        commit(t);
        t = begin(f->s, false);
        assert_int_equal(store_record_get(t, "d", &got, NULL), 0);
        assert_int_equal(got.restarts, 1);
        store_record_release(&got);
        store_txn_abort(t);
}

/* ---- allocations ---- */

static int collect_allocs(const char *pool, const char *key, const char *owner, void *arg)
{
        char *buf = arg;
        size_t n = strlen(buf);
        snprintf(buf + n, 1024 - n, "%s/%s=%.4s,", pool, key, owner);
        return 0;
}

static void test_alloc_claim_release_and_foreach(void **state)
{
        struct fx *f = *state;
        struct bg_err *err = NULL;
        char a[17], b[17], owner[17], list[1024] = "";

        memcpy(a, "aaaa000000000001", 17);
        memcpy(b, "bbbb000000000002", 17);
        struct store_txn *t = begin(open_ok(f), true);
        assert_int_equal(store_alloc_claim(t, "tap", "bg1", a, &err), 0);
        assert_int_equal(store_alloc_claim(t, "tap", "bg1", a, &err), 0);     /* same owner: no-op */
        assert_int_equal(store_alloc_claim(t, "tap", "bg1", b, &err), -EEXIST);
        assert_non_null(strstr(bg_err_msg(err), "tap/bg1"));
        assert_non_null(strstr(bg_err_msg(err), "held by aaaa000000000001"));
        bg_err_free(err);
        err = NULL;
        assert_int_equal(store_alloc_claim(t, "tap", "bg2", b, NULL), 0);
        assert_int_equal(store_alloc_claim(t, "ip", "10.0.0.2", a, NULL), 0);
        assert_int_equal(store_alloc_claim(t, "tap2", "x", b, NULL), 0);
        assert_int_equal(store_alloc_claim(t, "ta", "p", b, NULL), 0);
        assert_int_equal(store_alloc_claim(t, "mac", "52:54:00:00:00:01", a, NULL), 0);
        commit(t);

        t = begin(f->s, true);
        assert_int_equal(store_alloc_get(t, "tap", "bg1", owner, NULL), 0);
        assert_string_equal(owner, a);
        assert_int_equal(store_alloc_get(t, "tap", "bg9", owner, &err), -ENOENT);
        assert_null(err);
        assert_int_equal(store_alloc_foreach(t, "tap", collect_allocs, list, NULL), 0);
        assert_string_equal(list, "tap/bg1=aaaa,tap/bg2=bbbb,");
        list[0] = '\0';
        assert_int_equal(store_alloc_foreach(t, "nope", collect_allocs, list, NULL), 0);
        assert_string_equal(list, "");
        assert_int_equal(store_alloc_foreach(t, NULL, collect_allocs, list, NULL), 0);
        assert_string_equal(list, "ip/10.0.0.2=aaaa,mac/52:54:00:00:00:01=aaaa,ta/p=bbbb,"
                                  "tap/bg1=aaaa,tap/bg2=bbbb,tap2/x=bbbb,");

        assert_int_equal(store_alloc_release(t, "tap", "bg2", NULL), 0);
        assert_int_equal(store_alloc_release(t, "tap", "bg2", NULL), 0);       /* absent is fine */
        assert_int_equal(store_alloc_get(t, "tap", "bg2", owner, NULL), -ENOENT);
        assert_int_equal(store_alloc_release_owner(t, a, NULL), 0);
        list[0] = '\0';
        assert_int_equal(store_alloc_foreach(t, NULL, collect_allocs, list, NULL), 0);
        assert_string_equal(list, "ta/p=bbbb,tap2/x=bbbb,");
        assert_int_equal(store_alloc_release_owner(t, b, NULL), 0);
        list[0] = '\0';
        assert_int_equal(store_alloc_foreach(t, NULL, collect_allocs, list, NULL), 0);
        assert_string_equal(list, "");
        commit(t);
}

static void test_alloc_validates_pool_key_and_owner(void **state)
{
        struct fx *f = *state;
        struct bg_err *err = NULL;
        char long_part[130], owner[17];
        const char *a = "aaaa000000000001";

        memset(long_part, 'k', 129);
        long_part[129] = '\0';
        struct store_txn *t = begin(open_ok(f), true);
        const char *bad[][2] = { { "", "k" }, { "p", "" }, { "a/b", "k" }, { "p", "a/b" },
                                 { "p", "k\n" }, { "p\x7f", "k" }, { long_part, "k" }, { "p", long_part } };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                assert_int_equal(store_alloc_claim(t, bad[i][0], bad[i][1], a, &err), -EINVAL);
                assert_non_null(err);
                bg_err_free(err);
                err = NULL;
                assert_int_equal(store_alloc_get(t, bad[i][0], bad[i][1], owner, NULL), -EINVAL);
                assert_int_equal(store_alloc_release(t, bad[i][0], bad[i][1], NULL), -EINVAL);
        }
        long_part[128] = '\0';
        assert_int_equal(store_alloc_claim(t, long_part, long_part, a, NULL), 0);
        assert_int_equal(store_alloc_claim(t, "p", "k", "not-an-id", NULL), -EINVAL);
        assert_int_equal(store_alloc_release_owner(t, "short", NULL), -EINVAL);
        store_txn_abort(t);
}

/* ---- events ---- */

struct evs {
        uint64_t seqs[16];
        size_t n;
};

static int collect_events(uint64_t seq, json_t *ev, void *arg)
{
        struct evs *e = arg;
        assert_int_equal(json_integer_value(json_object_get(ev, "seq")), seq);
        e->seqs[e->n++] = seq;
        return 0;
}

static void test_events_append_foreach_and_last_seq(void **state)
{
        struct fx *f = *state;
        struct bg_err *err = NULL;
        uint64_t seq, last;
        struct evs e = { .n = 0 };

        struct store_txn *t = begin(open_ok(f), false);
        assert_int_equal(store_event_last_seq(t, &last, NULL), 0);
        assert_int_equal(last, 0);
        store_txn_abort(t);

        t = begin(f->s, true);
        json_t *ev = json_pack("{s:s, s:i, s:s}", "type", "phase", "seq", 99, "name", "web");
        for (int i = 1; i <= 5; i++) {
                assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
                assert_int_equal(seq, i);
        }
        /* ev is borrowed: untouched, still ours. */
        assert_int_equal(json_integer_value(json_object_get(ev, "seq")), 99);
        assert_int_equal(ev->refcount, 1);
        json_decref(ev);
        json_t *arr = json_array();
        assert_int_equal(store_event_append(t, arr, &seq, &err), -EINVAL);
        json_decref(arr);
        bg_err_free(err);
        commit(t);

        t = begin(f->s, false);
        assert_int_equal(store_event_foreach(t, 2, 0, collect_events, &e, NULL), 0);
        assert_int_equal(e.n, 3);
        assert_int_equal(e.seqs[0], 3);
        assert_int_equal(e.seqs[2], 5);
        e.n = 0;
        assert_int_equal(store_event_foreach(t, 0, 2, collect_events, &e, NULL), 0);
        assert_int_equal(e.n, 2);
        assert_int_equal(e.seqs[1], 2);
        e.n = 0;
        assert_int_equal(store_event_foreach(t, 5, 0, collect_events, &e, NULL), 0);
        assert_int_equal(store_event_foreach(t, UINT64_MAX, 0, collect_events, &e, NULL), 0);
        assert_int_equal(e.n, 0);
        assert_int_equal(store_event_last_seq(t, &last, NULL), 0);
        assert_int_equal(last, 5);
        store_txn_abort(t);
}

static int first_event(uint64_t seq, json_t *ev, void *arg)
{
        (void)ev;
        *(uint64_t *)arg = seq;
        return 1;
}

static int count_events(uint64_t seq, json_t *ev, void *arg)
{
        (void)seq;
        (void)ev;
        ++*(size_t *)arg;
        return 0;
}

static void test_events_ring_drops_oldest_and_seq_continues_after_reopen(void **state)
{
        struct fx *f = *state;
        uint64_t seq, first = 0;
        size_t n = 0;

        open_ok(f);
        json_t *ev = json_pack("{s:s}", "type", "tick");
        for (int batch = 0; batch < 10; batch++) {
                struct store_txn *t = begin(f->s, true);
                for (int i = 0; i < (STORE_EVENTS_MAX + 50) / 10; i++)
                        assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
                commit(t);
        }
        assert_int_equal(seq, STORE_EVENTS_MAX + 50);

        struct store_txn *t = begin(open_ok(f), true);
        assert_int_equal(store_event_foreach(t, 0, 0, first_event, &first, NULL), 0);
        assert_int_equal(first, 51);
        assert_int_equal(store_event_foreach(t, 0, 0, count_events, &n, NULL), 0);
        assert_int_equal(n, STORE_EVENTS_MAX);
        assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
        assert_int_equal(seq, STORE_EVENTS_MAX + 51);
        assert_int_equal(store_event_foreach(t, 0, 0, first_event, &first, NULL), 0);
        assert_int_equal(first, 52);
        commit(t);
        json_decref(ev);
}

static void test_corrupt_event_is_an_error(void **state)
{
        struct fx *f = *state;
        struct bg_err *err = NULL;
        size_t n = 0;
        uint64_t key = htobe64(7);

        open_ok(f);
        store_close(f->s);
        f->s = NULL;
        raw_put(f->dir, "events", &key, 8, "{\"seq\":7,", 9);
        struct store_txn *t = begin(open_ok(f), false);
        assert_int_equal(store_event_foreach(t, 0, 0, count_events, &n, &err), -EBADMSG);
        assert_non_null(strstr(bg_err_msg(err), "store: read event 7: corrupt json"));
        bg_err_free(err);
        store_txn_abort(t);
}

/* ---- transactions ---- */

static void test_abort_discards_writes(void **state)
{
        struct fx *f = *state;
        struct store_record r, got;
        char owner[17];
        uint64_t seq;

        struct store_txn *t = begin(open_ok(f), true);
        rec_init(&r, "web");
        put_ok(t, &r);
        assert_int_equal(store_alloc_claim(t, "tap", "bg1", r.id, NULL), 0);
        json_t *ev = json_object();
        assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
        store_txn_abort(t);

        t = begin(f->s, true);
        assert_int_equal(store_record_get(t, "web", &got, NULL), -ENOENT);
        assert_int_equal(store_alloc_get(t, "tap", "bg1", owner, NULL), -ENOENT);
        assert_int_equal(store_event_last_seq(t, &seq, NULL), 0);
        assert_int_equal(seq, 0);
        assert_int_equal(store_event_append(t, ev, &seq, NULL), 0);
        assert_int_equal(seq, 1);
        json_decref(ev);
        commit(t);
}

static void test_second_write_txn_on_one_thread_is_refused(void **state)
{
        struct fx *f = *state;
        struct store_txn *t2 = NULL;
        struct bg_err *err = NULL;

        struct store_txn *t = begin(open_ok(f), true);
        assert_int_equal(store_txn_begin(f->s, true, &t2, &err), -EDEADLK);
        assert_null(t2);
        bg_err_free(err);
        /* A read txn alongside is fine with MDB_NOTLS. */
        struct store_txn *r = begin(f->s, false);
        store_txn_abort(r);
        commit(t);
        t = begin(f->s, true);
        store_txn_abort(t);
}

/* The threads report failures through mt.bad rather than cmocka asserts,
 * which may only fail on the test's own thread. */
struct mt {
        struct store *s;
        int done, reads, bad;
};

static void *writer(void *arg)
{
        struct mt *m = arg;
        for (int i = 0; i < 200; i++) {
                struct store_record r;
                struct store_txn *t;
                char name[32];
                snprintf(name, sizeof name, "vm%03d", i);
                rec_init(&r, name);
                r.spec_json = (char *)"{\"cpus\":2}";
                if (store_txn_begin(m->s, true, &t, NULL) < 0) {
                        __atomic_store_n(&m->bad, 1, __ATOMIC_RELAXED);
                        break;
                }
                if (store_record_put(t, &r, NULL) < 0)
                        __atomic_store_n(&m->bad, 1, __ATOMIC_RELAXED);
                if (store_txn_commit(t, NULL) < 0)
                        __atomic_store_n(&m->bad, 1, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&m->done, 1, __ATOMIC_RELEASE);
        return NULL;
}

static int check_spec(const struct store_record *r, void *arg)
{
        if (!r->spec_json || strcmp(r->spec_json, "{\"cpus\":2}") != 0)
                ++*(int *)arg;
        return 0;
}

static void *reader(void *arg)
{
        struct mt *m = arg;
        int last = 0, iter = 0;
        /* At least a few passes even if the writer is already done. */
        while (iter++ < 5 || !__atomic_load_n(&m->done, __ATOMIC_ACQUIRE)) {
                int n1 = 0, n2 = 0, wrong = 0;
                struct store_txn *t;
                if (store_txn_begin(m->s, false, &t, NULL) < 0) {
                        __atomic_store_n(&m->bad, 1, __ATOMIC_RELAXED);
                        break;
                }
                int r = store_record_foreach(t, count_cb, &n1, NULL);
                sched_yield();
                r |= store_record_foreach(t, check_spec, &wrong, NULL);
                r |= store_record_foreach(t, count_cb, &n2, NULL);
                store_txn_abort(t);
                /* A read txn is a snapshot; commits only ever add records. */
                if (r || wrong || n1 != n2 || n1 < last)
                        __atomic_store_n(&m->bad, 1, __ATOMIC_RELAXED);
                last = n1;
                __atomic_add_fetch(&m->reads, 1, __ATOMIC_RELAXED);
        }
        return NULL;
}

static void test_two_threads_read_while_one_writes(void **state)
{
        struct fx *f = *state;
        struct mt m = { .s = open_ok(f) };
        pthread_t w, r1, r2;
        int n = 0;

        assert_int_equal(pthread_create(&r1, NULL, reader, &m), 0);
        assert_int_equal(pthread_create(&r2, NULL, reader, &m), 0);
        assert_int_equal(pthread_create(&w, NULL, writer, &m), 0);
        pthread_join(w, NULL);
        pthread_join(r1, NULL);
        pthread_join(r2, NULL);
        assert_int_equal(m.bad, 0);
        assert_true(m.reads >= 10);
        struct store_txn *t = begin(f->s, false);
        assert_int_equal(store_record_foreach(t, count_cb, &n, NULL), 0);
        assert_int_equal(n, 200);
        store_txn_abort(t);
}

/* A read txn begun on one thread may end on another (MDB_NOTLS). */
static void *abort_txn(void *arg)
{
        store_txn_abort(arg);
        return NULL;
}

static void test_read_txn_may_end_on_another_thread(void **state)
{
        struct fx *f = *state;
        pthread_t th;
        struct store_txn *t = begin(open_ok(f), false);
        assert_int_equal(pthread_create(&th, NULL, abort_txn, t), 0);
        pthread_join(th, NULL);
        t = begin(f->s, false);
        store_txn_abort(t);
}

static void test_new_id_is_16_lowercase_hex(void **state)
{
        (void)state;
        char a[17], b[17];
        store_new_id(a);
        store_new_id(b);
        assert_int_equal(strlen(a), 16);
        assert_int_equal(strspn(a, "0123456789abcdef"), 16);
        assert_string_not_equal(a, b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(test_reopen_keeps_records_allocations_and_events),
                T(test_open_creates_missing_dir_private),
                T(test_newer_schema_version_is_refused),
                T(test_record_put_get_del_and_foreach_in_name_order),
                T(test_record_foreach_stops_when_cb_returns_nonzero),
                T(test_record_round_trips_every_field),
                T(test_record_put_validates_name_id_and_phase),
                T(test_corrupt_record_value_is_an_error_not_a_crash),
                T(test_record_foreach_cb_may_write_the_same_txn),
                T(test_alloc_claim_release_and_foreach),
                T(test_alloc_validates_pool_key_and_owner),
                T(test_events_append_foreach_and_last_seq),
                T(test_events_ring_drops_oldest_and_seq_continues_after_reopen),
                T(test_corrupt_event_is_an_error),
                T(test_abort_discards_writes),
                T(test_second_write_txn_on_one_thread_is_refused),
                T(test_two_threads_read_while_one_writes),
                T(test_read_txn_may_end_on_another_thread),
                T(test_new_id_is_16_lowercase_hex),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
