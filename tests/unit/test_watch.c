/* watch: which names count as spec files, and what one watch_drain() call
 * reports after real file operations in a temp folder.  A drain is
 * compared as the sorted, comma-joined list of names it returned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"
#include "watch.h"

#define SETTLE_MS 100

struct name_row {
        const char *name;
        bool spec;
};

static const struct name_row names[] = {
        { "web.yaml", true },
        { "web.yml", true },
        { "a.b.yaml", true },
        { "x.yaml", true },
        { ".web.yaml", false },         /* hidden */
        { ".web.yaml.swp", false },     /* vim swap */
        { "web.yaml.swp", false },
        { "web.yaml~", false },         /* backup */
        { "#web.yaml#", false },        /* emacs auto-save */
        { ".#web.yaml", false },        /* emacs lock */
        { ".yaml", false },
        { "web.json", false },
        { "web", false },
        { "yaml", false },
        { "web.yaml.tmp", false },
        { "web.YAML", false },
        { "", false },
};

static void test_is_spec_name_table(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                print_message("name: '%s'\n", names[i].name);
                assert_int_equal(watch_is_spec_name(names[i].name), names[i].spec);
        }
}

struct fx {
        char dir[64];
        int fd;
};

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/bg-watch-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        struct bg_err *e = NULL;
        if (watch_open(f->dir, &f->fd, &e) < 0)
                fail_msg("watch_open: %s", bg_err_msg(e));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        close(f->fd);
        rm_rf(f->dir, NULL);
        free(f);
        return 0;
}

static char *path_of(const struct fx *f, const char *name)
{
        return xasprintf("%s/%s", f->dir, name);
}

static void write_file(const struct fx *f, const char *name, const char *content)
{
        _cleanup_free_ char *p = path_of(f, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        assert_int_equal(close(fd), 0);
}

static void rename_in(const struct fx *f, const char *from, const char *to)
{
        _cleanup_free_ char *a = path_of(f, from);
        _cleanup_free_ char *b = path_of(f, to);
        assert_int_equal(rename(a, b), 0);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One drain, as "a.yaml,b.yaml" (sorted); *rc gets watch_drain's return. */
static char *drain(const struct fx *f, int *rc)
{
        char **v = NULL;
        size_t n = 0;
        int r = watch_drain(f->fd, f->dir, SETTLE_MS, &v, &n);
        if (rc)
                *rc = r;
        else
                assert_int_equal(r, 0);
        if (n)
                qsort(v, n, sizeof *v, cmp_str);
        char *s = xstrdup("");
        for (size_t i = 0; i < n; i++) {
                char *t = xasprintf("%s%s%s", s, i ? "," : "", v[i]);
                free(s);
                s = t;
                free(v[i]);
        }
        free(v);
        return s;
}

static void expect_drain(const struct fx *f, const char *want)
{
        _cleanup_free_ char *got = drain(f, NULL);
        assert_string_equal(got, want);
}

static void test_nothing_pending_gives_nothing(void **state)
{
        expect_drain(*state, "");
}

static void test_several_writes_give_the_name_once(void **state)
{
        struct fx *f = *state;
        write_file(f, "a.yaml", "one\n");
        write_file(f, "a.yaml", "two\n");
        write_file(f, "a.yaml", "three\n");
        expect_drain(f, "a.yaml");
        expect_drain(f, "");
}

static void test_temp_then_rename_gives_only_the_target(void **state)
{
        struct fx *f = *state;
        write_file(f, ".a.yaml.tmp1234", "x\n");
        rename_in(f, ".a.yaml.tmp1234", "a.yaml");
        expect_drain(f, "a.yaml");

        /* The same over an existing file (an editor's save). */
        write_file(f, ".a.yaml.swp", "y\n");
        rename_in(f, ".a.yaml.swp", "a.yaml");
        expect_drain(f, "a.yaml");
}

static void test_rename_within_folder_gives_both_names_in_one_drain(void **state)
{
        struct fx *f = *state;
        write_file(f, "a.yaml", "x\n");
        expect_drain(f, "a.yaml");
        rename_in(f, "a.yaml", "b.yaml");
        expect_drain(f, "a.yaml,b.yaml");
        expect_drain(f, "");
}

static void test_delete_gives_the_name(void **state)
{
        struct fx *f = *state;
        write_file(f, "a.yml", "x\n");
        expect_drain(f, "a.yml");
        _cleanup_free_ char *p = path_of(f, "a.yml");
        assert_int_equal(unlink(p), 0);
        expect_drain(f, "a.yml");
}

static void test_non_spec_files_give_nothing(void **state)
{
        struct fx *f = *state;
        write_file(f, "notes.txt", "x\n");
        write_file(f, "web.json", "{}\n");
        write_file(f, ".hidden.yaml", "x\n");
        write_file(f, "web.yaml~", "x\n");
        write_file(f, "#web.yaml#", "x\n");
        rename_in(f, "notes.txt", "notes.md");
        _cleanup_free_ char *p = path_of(f, "web.json");
        assert_int_equal(unlink(p), 0);
        _cleanup_free_ char *sub = path_of(f, "sub.yaml.d");
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(rmdir(sub), 0);
        expect_drain(f, "");
}

static void test_move_in_and_out_of_folder_gives_the_name(void **state)
{
        struct fx *f = *state;
        char other[64];
        snprintf(other, sizeof other, "/tmp/bg-watch-out-XXXXXX");
        assert_non_null(mkdtemp(other));
        _cleanup_free_ char *outside = xasprintf("%s/in.yaml", other);
        _cleanup_free_ char *inside = path_of(f, "in.yaml");
        int fd = open(outside, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);

        assert_int_equal(rename(outside, inside), 0);
        expect_drain(f, "in.yaml");
        assert_int_equal(rename(inside, outside), 0);
        expect_drain(f, "in.yaml");
        rm_rf(other, NULL);
}

static void test_mixed_batch_is_folded_per_name(void **state)
{
        struct fx *f = *state;
        write_file(f, "a.yaml", "x\n");
        write_file(f, "b.yaml", "x\n");
        write_file(f, "skip.txt", "x\n");
        rename_in(f, "a.yaml", "c.yaml");
        write_file(f, "b.yaml", "y\n");
        _cleanup_free_ char *p = path_of(f, "c.yaml");
        assert_int_equal(unlink(p), 0);
        expect_drain(f, "a.yaml,b.yaml,c.yaml");
}

static void test_removing_the_folder_asks_for_a_rescan(void **state)
{
        struct fx *f = *state;
        write_file(f, "a.yaml", "x\n");
        assert_int_equal(rm_rf(f->dir, NULL), 0);
        int rc = 0;
        free(drain(f, &rc));
        assert_int_equal(rc, -1);
}

static void test_open_missing_folder_fails(void **state)
{
        (void)state;
        int fd = -1;
        struct bg_err *e = NULL;
        assert_true(watch_open("/nonexistent/bg-watch", &fd, &e) < 0);
        assert_int_equal(fd, -1);
        assert_non_null(e);
        assert_non_null(strstr(e->msg, "/nonexistent/bg-watch"));
        bg_err_free(e);
}

static void test_new_symlink_counts_but_open_file_waits_for_close(void **state)
{
        struct fx *f = *state;
        char target[128], link[128], path[128];
        snprintf(target, sizeof target, "%s/.target", f->dir);
        snprintf(link, sizeof link, "%s/link.yaml", f->dir);
        int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        free(drain(f, NULL));
        assert_int_equal(symlink(target, link), 0);
        char *got = drain(f, NULL);
        assert_string_equal(got, "link.yaml");
        free(got);
        snprintf(path, sizeof path, "%s/open.yaml", f->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        got = drain(f, NULL);
        assert_string_equal(got, "");   /* created, still open: not yet */
        free(got);
        close(fd);
        got = drain(f, NULL);
        assert_string_equal(got, "open.yaml");
        free(got);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_new_symlink_counts_but_open_file_waits_for_close, setup, teardown),
                cmocka_unit_test(test_is_spec_name_table),
                cmocka_unit_test(test_open_missing_folder_fails),
                cmocka_unit_test_setup_teardown(test_nothing_pending_gives_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_several_writes_give_the_name_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_temp_then_rename_gives_only_the_target, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rename_within_folder_gives_both_names_in_one_drain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delete_gives_the_name, setup, teardown),
                cmocka_unit_test_setup_teardown(test_non_spec_files_give_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_move_in_and_out_of_folder_gives_the_name, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mixed_batch_is_folded_per_name, setup, teardown),
                cmocka_unit_test_setup_teardown(test_removing_the_folder_asks_for_a_rescan, setup, teardown),
        };
        return cmocka_run_group_tests_name("watch", tests, NULL, NULL);
}
