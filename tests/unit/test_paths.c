/* paths: the layout under a root (flag or BANGER_ROOT) and the installed
 * layout driven by HOME and the XDG variables.  Each test sets exactly the
 * environment it depends on; the setup clears the rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "paths.h"
#include "util.h"

static int clear_env(void **state)
{
        (void)state;
        unsetenv("BANGER_ROOT");
        unsetenv("XDG_CONFIG_HOME");
        unsetenv("XDG_STATE_HOME");
        setenv("HOME", "/home/tester", 1);
        return 0;
}

static void init(struct bg_paths *p, const char *root)
{
        struct bg_err *e = NULL;
        if (paths_init(p, root, &e) < 0)
                fail_msg("paths_init: %s", bg_err_msg(e));
        assert_null(e);
}

/* Every path of the root layout under dir. */
static void expect_root_layout(const struct bg_paths *p, const char *dir)
{
        char buf[PATH_MAX + 64];
        assert_non_null(p->root);
        assert_string_equal(p->root, dir);
#define EXPECT(field, tail) do { \
                snprintf(buf, sizeof buf, "%s%s", dir, tail); \
                assert_string_equal(p->field, buf); \
        } while (0)
        EXPECT(config_dir, "/config");
        EXPECT(config_file, "/config/config.yaml");
        EXPECT(sandboxes_dir, "/config/sandboxes");
        EXPECT(state_dir, "/state");
        EXPECT(cache_dir, "/cache");
        EXPECT(run_dir, "/run");
        EXPECT(socket, "/run/bangerd.sock");
        EXPECT(ssh_dir, "/state/ssh");
#undef EXPECT
}

struct root_row {
        const char *root;
        const char *want;
};

static const struct root_row abs_rows[] = {
        { "/tmp/bg-root", "/tmp/bg-root" },
        { "/tmp/bg-root/", "/tmp/bg-root" },
        { "/tmp/bg-root///", "/tmp/bg-root" },
        { "/a", "/a" },
};

static void test_absolute_root(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(abs_rows); i++) {
                print_message("root: %s\n", abs_rows[i].root);
                struct bg_paths p;
                init(&p, abs_rows[i].root);
                expect_root_layout(&p, abs_rows[i].want);
                paths_release(&p);
        }
}

static void test_relative_root_made_absolute(void **state)
{
        (void)state;
        char cwd[PATH_MAX];
        assert_non_null(getcwd(cwd, sizeof cwd));
        static const struct root_row rows[] = {
                { "bg-rel", "/bg-rel" },
                { "bg-rel/", "/bg-rel" },
                { "x/y//", "/x/y" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                print_message("root: %s\n", rows[i].root);
                _cleanup_free_ char *want = xasprintf("%s%s", cwd, rows[i].want);
                struct bg_paths p;
                init(&p, rows[i].root);
                assert_true(p.root[0] == '/');
                expect_root_layout(&p, want);
                paths_release(&p);
        }
}

static void test_banger_root_env(void **state)
{
        (void)state;
        setenv("BANGER_ROOT", "/srv/bg/", 1);
        struct bg_paths p;
        init(&p, NULL);
        expect_root_layout(&p, "/srv/bg");
        paths_release(&p);

        /* An empty flag is no flag. */
        init(&p, "");
        expect_root_layout(&p, "/srv/bg");
        paths_release(&p);

        /* The flag wins over the environment. */
        init(&p, "/flag/root");
        expect_root_layout(&p, "/flag/root");
        paths_release(&p);
}

static void test_empty_banger_root_is_installed_layout(void **state)
{
        (void)state;
        setenv("BANGER_ROOT", "", 1);
        struct bg_paths p;
        init(&p, NULL);
        assert_null(p.root);
        assert_string_equal(p.state_dir, "/var/lib/banger");
        paths_release(&p);
}

struct installed_row {
        const char *what;
        const char *home;              /* NULL: unset */
        const char *xdg_config;        /* NULL: unset */
        const char *xdg_state;         /* NULL: unset */
        const char *config_dir;
        const char *ssh_dir;
};

static const struct installed_row installed[] = {
        { "home only", "/home/tester", NULL, NULL,
          "/home/tester/.config/banger", "/home/tester/.local/state/banger/ssh" },
        { "xdg config", "/home/tester", "/xdg/config", NULL,
          "/xdg/config/banger", "/home/tester/.local/state/banger/ssh" },
        { "xdg both", "/home/tester", "/xdg/config", "/xdg/state",
          "/xdg/config/banger", "/xdg/state/banger/ssh" },
        { "relative xdg ignored", "/home/tester", "rel/config", "rel/state",
          "/home/tester/.config/banger", "/home/tester/.local/state/banger/ssh" },
        { "empty xdg ignored", "/home/tester", "", "",
          "/home/tester/.config/banger", "/home/tester/.local/state/banger/ssh" },
        { "no home", NULL, NULL, NULL,
          "/root/.config/banger", "/root/.local/state/banger/ssh" },
        { "relative home", "home/tester", NULL, NULL,
          "/root/.config/banger", "/root/.local/state/banger/ssh" },
};

static void set_or_unset(const char *name, const char *value)
{
        if (value)
                setenv(name, value, 1);
        else
                unsetenv(name);
}

static void test_installed_layout(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(installed); i++) {
                const struct installed_row *r = &installed[i];
                print_message("env: %s\n", r->what);
                set_or_unset("HOME", r->home);
                set_or_unset("XDG_CONFIG_HOME", r->xdg_config);
                set_or_unset("XDG_STATE_HOME", r->xdg_state);
                struct bg_paths p;
                init(&p, NULL);
                assert_null(p.root);
                assert_string_equal(p.config_dir, r->config_dir);
                _cleanup_free_ char *cfg = xasprintf("%s/config.yaml", r->config_dir);
                _cleanup_free_ char *sbx = xasprintf("%s/sandboxes", r->config_dir);
                assert_string_equal(p.config_file, cfg);
                assert_string_equal(p.sandboxes_dir, sbx);
                assert_string_equal(p.state_dir, "/var/lib/banger");
                assert_string_equal(p.cache_dir, "/var/cache/banger");
                assert_string_equal(p.run_dir, "/run/banger");
                assert_string_equal(p.socket, "/run/banger/bangerd.sock");
                assert_string_equal(p.ssh_dir, r->ssh_dir);
                paths_release(&p);
        }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
        const struct CMUnitTest tests[] = {
                T(test_absolute_root),
                T(test_relative_root_made_absolute),
                T(test_banger_root_env),
                T(test_empty_banger_root_is_installed_layout),
                T(test_installed_layout),
        };
#undef T
        return cmocka_run_group_tests_name("paths", tests, NULL, NULL);
}
