/* util + err: the file helpers against a temp folder (sizes, modes, temp
 * files, symlinks that point out of the tree), the string and hash helpers
 * as tables, and how bg_error / bg_error_wrap compose messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

struct fx {
        char dir[64];
        char outside[64];
};

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/bg-util-XXXXXX");
        snprintf(f->outside, sizeof f->outside, "/tmp/bg-util-out-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_non_null(mkdtemp(f->outside));
        umask(022);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        rm_rf(f->dir, NULL);
        rm_rf(f->outside, NULL);
        free(f);
        return 0;
}

static char *in(const char *dir, const char *name)
{
        return xasprintf("%s/%s", dir, name);
}

static void put(const char *path, const void *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

static bool exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static size_t count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

/* ---- read_file_limited ---- */

static void test_read_exact_content(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *p = in(f->dir, "f");
        static const char data[] = "line one\n\0binary\xff tail";
        put(p, data, sizeof data - 1);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        assert_int_equal(read_file_limited(p, sizeof data - 1, &buf, &len, NULL), 0);
        assert_int_equal(len, sizeof data - 1);
        assert_memory_equal(buf, data, len);
        assert_int_equal(buf[len], '\0');

        /* len is optional; an empty file reads as "". */
        _cleanup_free_ char *e = in(f->dir, "empty");
        put(e, "", 0);
        _cleanup_free_ char *buf2 = NULL;
        assert_int_equal(read_file_limited(e, 0, &buf2, NULL, NULL), 0);
        assert_string_equal(buf2, "");
}

static void test_read_too_big_is_efbig(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *p = in(f->dir, "big");
        put(p, "0123456789", 10);
        char *buf = NULL;
        struct bg_err *e = NULL;
        assert_int_equal(read_file_limited(p, 9, &buf, NULL, &e), -EFBIG);
        assert_null(buf);
        assert_int_equal(e->code, EFBIG);
        assert_non_null(strstr(e->msg, p));
        bg_err_free(e);
        /* Exactly max is fine. */
        assert_int_equal(read_file_limited(p, 10, &buf, NULL, NULL), 0);
        free(buf);
}

static void test_read_proc_file_with_zero_size_is_limited(void **state)
{
        (void)state;
        /* /proc files report st_size 0: the limit must hold while reading. */
        char *buf = NULL;
        assert_int_equal(read_file_limited("/proc/self/status", 8, &buf, NULL, NULL), -EFBIG);
        assert_null(buf);
        size_t len = 0;
        assert_int_equal(read_file_limited("/proc/self/status", 1 << 20, &buf, &len, NULL), 0);
        assert_true(len > 8);
        assert_true(str_has_prefix(buf, "Name:"));
        free(buf);
}

static void test_read_not_regular_fails(void **state)
{
        struct fx *f = *state;
        char *buf = NULL;
        struct bg_err *e = NULL;
        assert_int_equal(read_file_limited(f->dir, 1024, &buf, NULL, &e), -EINVAL);
        assert_non_null(strstr(bg_err_msg(e), "not a regular file"));
        bg_err_free(e);

        e = NULL;
        assert_true(read_file_limited("/dev/null", 1024, &buf, NULL, &e) < 0);
        assert_non_null(e);
        bg_err_free(e);

        e = NULL;
        _cleanup_free_ char *missing = in(f->dir, "missing");
        assert_int_equal(read_file_limited(missing, 1024, &buf, NULL, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "missing"));
        bg_err_free(e);
        assert_null(buf);
}

/* ---- write_file_atomic ---- */

static void test_write_atomic_content_and_mode(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *p = in(f->dir, "out.json");
        static const unsigned modes[] = { 0600, 0640, 0644 };
        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                _cleanup_free_ char *data = xasprintf("round %zu\n", i);
                struct bg_err *e = NULL;
                if (write_file_atomic(p, data, strlen(data), modes[i], &e) < 0)
                        fail_msg("write: %s", bg_err_msg(e));
                struct stat st;
                assert_int_equal(stat(p, &st), 0);
                assert_int_equal(st.st_mode & 07777, modes[i]);
                _cleanup_free_ char *back = NULL;
                assert_int_equal(read_file_limited(p, 100, &back, NULL, NULL), 0);
                assert_string_equal(back, data);
                /* No temp file is left behind. */
                assert_int_equal(count_entries(f->dir), 1);
        }
        /* Zero bytes is a valid content. */
        assert_int_equal(write_file_atomic(p, "", 0, 0600, NULL), 0);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 0);
}

static void test_write_atomic_failure_leaves_no_temp(void **state)
{
        struct fx *f = *state;
        /* The target is a non-empty folder: the rename fails. */
        _cleanup_free_ char *target = in(f->dir, "busy");
        assert_int_equal(mkdir(target, 0700), 0);
        _cleanup_free_ char *inner = in(target, "x");
        put(inner, "x", 1);
        struct bg_err *e = NULL;
        assert_true(write_file_atomic(target, "data", 4, 0600, &e) < 0);
        assert_non_null(e);
        assert_non_null(strstr(e->msg, "busy"));
        bg_err_free(e);
        assert_int_equal(count_entries(f->dir), 1);

        /* A missing folder fails at create. */
        e = NULL;
        _cleanup_free_ char *deep = in(f->dir, "no/such/file");
        assert_true(write_file_atomic(deep, "data", 4, 0600, &e) < 0);
        assert_int_equal(e->code, ENOENT);
        bg_err_free(e);
}

static void test_write_atomic_replaces_symlink_not_its_target(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *victim = in(f->outside, "victim");
        put(victim, "keep", 4);
        _cleanup_free_ char *link = in(f->dir, "link");
        assert_int_equal(symlink(victim, link), 0);
        assert_int_equal(write_file_atomic(link, "new", 3, 0600, NULL), 0);
        struct stat st;
        assert_int_equal(lstat(link, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        _cleanup_free_ char *back = NULL;
        assert_int_equal(read_file_limited(victim, 100, &back, NULL, NULL), 0);
        assert_string_equal(back, "keep");
}

/* ---- mkdir_p ---- */

static void test_mkdir_p_nested(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *p = in(f->dir, "a/b/c/d");
        struct bg_err *e = NULL;
        assert_int_equal(mkdir_p(p, 0700, &e), 0);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
        /* Again, and with a trailing slash: nothing to do, no error. */
        assert_int_equal(mkdir_p(p, 0700, &e), 0);
        _cleanup_free_ char *slash = in(f->dir, "a/b/c/d/");
        assert_int_equal(mkdir_p(slash, 0700, &e), 0);
        _cleanup_free_ char *dbl = in(f->dir, "x//y");
        assert_int_equal(mkdir_p(dbl, 0755, &e), 0);
        assert_null(e);
        assert_int_equal(stat(dbl, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
}

static void test_mkdir_p_through_a_file_fails(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *file = in(f->dir, "file");
        put(file, "x", 1);
        _cleanup_free_ char *p = in(f->dir, "file/sub/dir");
        struct bg_err *e = NULL;
        assert_int_equal(mkdir_p(p, 0700, &e), -ENOTDIR);
        assert_non_null(strstr(bg_err_msg(e), "mkdir"));
        bg_err_free(e);
}

static void test_mkdir_p_on_existing_file_fails(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *file = in(f->dir, "file");
        put(file, "x", 1);
        struct bg_err *e = NULL;
        assert_true(mkdir_p(file, 0700, &e) < 0);
        assert_non_null(e);
        bg_err_free(e);
}

/* ---- rm_rf ---- */

static void test_rm_rf_nested(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *top = in(f->dir, "tree");
        _cleanup_free_ char *deep = in(f->dir, "tree/a/b/c");
        assert_int_equal(mkdir_p(deep, 0700, NULL), 0);
        static const char *const files[] = { "tree/f", "tree/a/f", "tree/a/b/.hidden", "tree/a/b/c/f" };
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                _cleanup_free_ char *p = in(f->dir, files[i]);
                put(p, "x", 1);
        }
        struct bg_err *e = NULL;
        int r = rm_rf(top, &e);
        assert_int_equal(r, 0);
        assert_null(e);
        assert_false(exists(top));
        assert_int_equal(count_entries(f->dir), 0);
}

static void test_rm_rf_missing_is_ok(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *p = in(f->dir, "not-there");
        struct bg_err *e = NULL;
        assert_int_equal(rm_rf(p, &e), 0);
        assert_null(e);
        _cleanup_free_ char *file = in(f->dir, "plain");
        put(file, "x", 1);
        assert_int_equal(rm_rf(file, &e), 0);
        assert_false(exists(file));
}

static void test_rm_rf_does_not_follow_symlinks_out_of_the_tree(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *victim = in(f->outside, "victim");
        _cleanup_free_ char *vdir = in(f->outside, "vdir");
        _cleanup_free_ char *vdir_file = in(f->outside, "vdir/keep");
        put(victim, "keep", 4);
        assert_int_equal(mkdir(vdir, 0700), 0);
        put(vdir_file, "keep", 4);

        _cleanup_free_ char *top = in(f->dir, "tree");
        _cleanup_free_ char *sub = in(f->dir, "tree/sub");
        assert_int_equal(mkdir_p(sub, 0700, NULL), 0);
        _cleanup_free_ char *l1 = in(f->dir, "tree/to-file");
        _cleanup_free_ char *l2 = in(f->dir, "tree/sub/to-dir");
        _cleanup_free_ char *l3 = in(f->dir, "tree/dangling");
        assert_int_equal(symlink(victim, l1), 0);
        assert_int_equal(symlink(vdir, l2), 0);
        assert_int_equal(symlink("/nonexistent/bg", l3), 0);

        assert_int_equal(rm_rf(top, NULL), 0);
        assert_false(exists(top));
        assert_true(exists(victim));
        assert_true(exists(vdir));
        assert_true(exists(vdir_file));

        /* rm_rf on a symlink to a folder removes the link only. */
        _cleanup_free_ char *l4 = in(f->dir, "link-to-dir");
        assert_int_equal(symlink(vdir, l4), 0);
        assert_int_equal(rm_rf(l4, NULL), 0);
        assert_false(exists(l4));
        assert_true(exists(vdir_file));

        /* Nor does a trailing slash, which makes stat look through the link. */
        assert_int_equal(symlink(vdir, l4), 0);
        _cleanup_free_ char *l4_slash = xasprintf("%s/", l4);
        rm_rf(l4_slash, NULL);
        assert_true(exists(vdir_file));
}

/* ---- strings, hash, time ---- */

struct affix_row {
        const char *s;
        const char *affix;
        bool prefix;
        bool suffix;
};

static const struct affix_row affix_rows[] = {
        { "web.yaml", ".yaml", false, true },
        { "web.yaml", "web", true, false },
        { "web.yaml", "web.yaml", true, true },
        { "web.yaml", "", true, true },
        { "", "", true, true },
        { "", "x", false, false },
        { "yaml", ".yaml", false, false },
        { "ab", "abc", false, false },
        { "running\n", "running", true, false },
        { "aXa", "a", true, true },
};

static void test_str_affixes_table(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(affix_rows); i++) {
                const struct affix_row *r = &affix_rows[i];
                print_message("'%s' / '%s'\n", r->s, r->affix);
                assert_int_equal(str_has_prefix(r->s, r->affix), r->prefix);
                assert_int_equal(str_has_suffix(r->s, r->affix), r->suffix);
        }
}

struct fnv_row {
        const char *data;
        uint64_t hash;
};

static const struct fnv_row fnv_rows[] = {
        { "", 0xcbf29ce484222325ULL },
        { "a", 0xaf63dc4c8601ec8cULL },
        { "foobar", 0x85944171f73967e8ULL },
};

static void test_fnv1a64_known_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(fnv_rows); i++)
                assert_true(fnv1a64(fnv_rows[i].data, strlen(fnv_rows[i].data), FNV1A64_SEED) ==
                            fnv_rows[i].hash);
        /* Chaining equals hashing the concatenation. */
        uint64_t h = fnv1a64("foo", 3, FNV1A64_SEED);
        assert_true(fnv1a64("bar", 3, h) == fnv1a64("foobar", 6, FNV1A64_SEED));
}

static void test_format_time_ms(void **state)
{
        (void)state;
        char buf[40];
        format_time_ms(0, buf, sizeof buf);
        assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
        format_time_ms(1700000000123LL, buf, sizeof buf);
        assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
        format_time_ms(1700000000123LL, buf, 11);
        assert_string_equal(buf, "2023-11-14");
}

static void test_clocks_and_random(void **state)
{
        (void)state;
        int64_t a = now_mono_ms(), b = now_mono_ms();
        assert_true(b >= a);
        assert_true(now_wall_ms() > 1600000000000LL);
        unsigned char x[32] = { 0 }, y[32] = { 0 };
        random_bytes(x, sizeof x);
        random_bytes(y, sizeof y);
        assert_memory_not_equal(x, y, sizeof x);
        random_bytes(x, 0);
}

static void test_alloc_helpers(void **state)
{
        (void)state;
        _cleanup_free_ char *a = xstrdup(NULL);
        assert_string_equal(a, "");
        _cleanup_free_ char *b = xstrndup("abcdef", 3);
        assert_string_equal(b, "abc");
        _cleanup_free_ char *c = xasprintf("%s-%d", "x", 42);
        assert_string_equal(c, "x-42");
        int *v = xreallocarray(NULL, 1000, sizeof *v);
        v[999] = 1;
        v = xreallocarray(v, 2000, sizeof *v);
        assert_int_equal(v[999], 1);
        free(v);
        void *z = xcalloc(0, 0);
        assert_non_null(z);
        free(z);
        char *s = xstrdup("moved");
        _cleanup_free_ char *owner = steal_pointer(&s);
        assert_null(s);
        assert_string_equal(owner, "moved");
}

/* ---- err ---- */

static void test_bg_error_composes_and_first_wins(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        assert_int_equal(bg_error(&e, ENOENT, "open '%s'", "/x"), -ENOENT);
        assert_int_equal(e->code, ENOENT);
        assert_string_equal(e->msg, "open '/x'");

        /* A second error does not replace the first but returns its own code. */
        assert_int_equal(bg_error(&e, EACCES, "other"), -EACCES);
        assert_int_equal(e->code, ENOENT);
        assert_string_equal(e->msg, "open '/x'");

        /* Context is prefixed as the error travels up. */
        assert_int_equal(bg_error_wrap(&e, "load %s", "web"), -ENOENT);
        assert_int_equal(bg_error_wrap(&e, "apply"), -ENOENT);
        assert_string_equal(bg_err_msg(e), "apply: load web: open '/x'");
        bg_err_free(e);
}

static void test_bg_error_edges(void **state)
{
        (void)state;
        /* No error object: only the code comes back. */
        assert_int_equal(bg_error(NULL, EINVAL, "x"), -EINVAL);
        assert_int_equal(bg_error_wrap(NULL, "ctx"), -EIO);
        struct bg_err *e = NULL;
        assert_int_equal(bg_error_wrap(&e, "ctx"), -EIO);
        assert_null(e);

        /* Codes <= 0 become EIO. */
        assert_int_equal(bg_error(&e, 0, "zero"), -EIO);
        assert_int_equal(e->code, EIO);
        bg_err_free(e);
        e = NULL;
        assert_int_equal(bg_error(&e, -ENOENT, "negative"), -EIO);
        assert_int_equal(e->code, EIO);
        bg_err_free(e);

        /* Format characters in arguments are data, not format. */
        e = NULL;
        bg_error(&e, EINVAL, "bad '%s'", "%s%n");
        bg_error_wrap(&e, "%s", "100%");
        assert_string_equal(e->msg, "100%: bad '%s%n'");
        bg_err_free(e);

        assert_string_equal(bg_err_msg(NULL), "unknown error");
        bg_err_free(NULL);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_read_exact_content),
                T(test_read_too_big_is_efbig),
                cmocka_unit_test(test_read_proc_file_with_zero_size_is_limited),
                T(test_read_not_regular_fails),
                T(test_write_atomic_content_and_mode),
                T(test_write_atomic_failure_leaves_no_temp),
                T(test_write_atomic_replaces_symlink_not_its_target),
                T(test_mkdir_p_nested),
                T(test_mkdir_p_through_a_file_fails),
                T(test_mkdir_p_on_existing_file_fails),
                T(test_rm_rf_nested),
                T(test_rm_rf_missing_is_ok),
                T(test_rm_rf_does_not_follow_symlinks_out_of_the_tree),
                cmocka_unit_test(test_str_affixes_table),
                cmocka_unit_test(test_fnv1a64_known_vectors),
                cmocka_unit_test(test_format_time_ms),
                cmocka_unit_test(test_clocks_and_random),
                cmocka_unit_test(test_alloc_helpers),
                cmocka_unit_test(test_bg_error_composes_and_first_wins),
                cmocka_unit_test(test_bg_error_edges),
        };
#undef T
        return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
