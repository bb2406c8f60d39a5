/* sshconfig: install and uninstall are exact inverses on the text (a table
 * of starting files), installing twice is installing once, and the file
 * functions create only what they record and remove only that.  HOME and
 * the "home" are temp folders: the machine's ~/.ssh is never seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "paths.h"
#include "sshconfig.h"
#include "util.h"

#define INC "Include /x/config/ssh_config"

static char dir[64];
static char home[96];

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof dir, "/tmp/bg-sshcfg-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(home, sizeof home, "%s/home", dir);
        assert_int_equal(mkdir(home, 0755), 0);
        setenv("HOME", home, 1);
        umask(022);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        rm_rf(dir, NULL);
        return 0;
}

static const char *const STARTS[] = {
        "",
        "Host a\n    User x\n",
        "Host a\n    User x",                          /* no final newline */
        "# comment\n\nInclude other\nHost *\n  ServerAliveInterval 30\n",
        "Host a\r\n    User x\r\n",                    /* CRLF */
        "\n",
        "Host b\n# >>> banger >>> not ours\n",          /* marker text that is not a marker line */
};

static void test_install_then_uninstall_gives_back_every_byte(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(STARTS); i++) {
                const char *s = STARTS[i];
                char *a = NULL, *b = NULL, *c = NULL;
                size_t al, bl, cl;
                bool changed = false, found = false;
                unsigned made = 9;
                assert_int_equal(sshconfig_text_install(s, strlen(s), INC, 0, &a, &al, &changed, NULL), 0);
                assert_true(changed);
                assert_true(str_has_prefix(a, SSHCONFIG_BEGIN "\n" INC "\n" SSHCONFIG_END "\n"));
                assert_string_equal(a + al - strlen(s), s);

                /* twice = once */
                assert_int_equal(sshconfig_text_install(a, al, INC, 0, &b, &bl, &changed, NULL), 0);
                assert_false(changed);
                assert_int_equal(bl, al);
                assert_memory_equal(a, b, al);

                assert_int_equal(sshconfig_text_uninstall(b, bl, &c, &cl, &made, &found, NULL), 0);
                assert_true(found);
                assert_int_equal(made, 0);
                assert_int_equal(cl, strlen(s));
                assert_memory_equal(c, s, cl);
                free(a);
                free(b);
                free(c);
        }
}

static void test_install_updates_an_existing_block_in_place(void **state)
{
        (void)state;
        const char *s = "Host a\n" SSHCONFIG_BEGIN "\nInclude /old\n" SSHCONFIG_END "\nHost b\n";
        char *a = NULL;
        size_t al;
        bool changed;
        assert_int_equal(sshconfig_text_install(s, strlen(s), INC, 0, &a, &al, &changed, NULL), 0);
        assert_true(changed);
        assert_string_equal(a, "Host a\n" SSHCONFIG_BEGIN "\n" INC "\n" SSHCONFIG_END "\nHost b\n");
        free(a);
}

static void test_uninstall_without_block_changes_nothing_and_unterminated_is_an_error(void **state)
{
        (void)state;
        const char *s = "Host a\n";
        char *o = NULL;
        size_t ol;
        unsigned made;
        bool found = true;
        assert_int_equal(sshconfig_text_uninstall(s, strlen(s), &o, &ol, &made, &found, NULL), 0);
        assert_false(found);
        assert_string_equal(o, s);
        free(o);

        const char *bad = SSHCONFIG_BEGIN "\nInclude /x\nHost a\n";
        struct bg_err *e = NULL;
        bool changed;
        o = NULL;
        assert_int_equal(sshconfig_text_uninstall(bad, strlen(bad), &o, &ol, &made, &found, &e), -EINVAL);
        bg_err_free(e);
        e = NULL;
        assert_int_equal(sshconfig_text_install(bad, strlen(bad), INC, 0, &o, &ol, &changed, &e), -EINVAL);
        assert_null(o);
        bg_err_free(e);
}

static void test_render_quotes_blanks_doubles_percent_and_refuses_quotes(void **state)
{
        (void)state;
        char *t = sshconfig_render("/a b/id_ed25519", "/s/100%/known_hosts", NULL);
        assert_non_null(strstr(t, "Host *.vm\n"));
        assert_non_null(strstr(t, "    User root\n"));
        assert_non_null(strstr(t, "    IdentityFile \"/a b/id_ed25519\"\n"));
        assert_non_null(strstr(t, "    UserKnownHostsFile /s/100%%/known_hosts\n"));
        assert_non_null(strstr(t, "    GlobalKnownHostsFile /dev/null\n"));
        assert_non_null(strstr(t, "    StrictHostKeyChecking yes\n"));
        assert_non_null(strstr(t, "    IdentitiesOnly yes\n"));
        free(t);
        struct bg_err *e = NULL;
        assert_null(sshconfig_render("/a\"b", "/kh", &e));
        assert_int_equal(e->code, EINVAL);
        bg_err_free(e);
        e = NULL;
        assert_null(sshconfig_render("/k", "/kh\nHost *", &e));
        bg_err_free(e);
}

static void test_include_line_uses_tilde_only_for_the_home_ssh_expands(void **state)
{
        (void)state;
        char *l = sshconfig_include_line("/somewhere/home", "/somewhere/home/.config/banger/ssh_config", NULL);
        assert_string_equal(l, "Include /somewhere/home/.config/banger/ssh_config");
        free(l);
        struct passwd *pw = getpwuid(getuid());
        assert_non_null(pw);
        char *cfg = xasprintf("%s/.config/banger/ssh_config", pw->pw_dir);
        l = sshconfig_include_line(pw->pw_dir, cfg, NULL);
        assert_string_equal(l, "Include ~/.config/banger/ssh_config");
        free(l);
        free(cfg);
}

static void test_home_is_root_home_under_a_root_else_HOME(void **state)
{
        (void)state;
        struct bg_paths p;
        assert_int_equal(paths_init(&p, "/r", NULL), 0);
        char *h = sshconfig_home(&p);
        assert_string_equal(h, "/r/home");
        char *c = sshconfig_path(&p), *k = sshconfig_known_hosts(&p);
        assert_string_equal(c, "/r/config/ssh_config");
        assert_string_equal(k, "/r/state/ssh/known_hosts");
        free(c);
        free(k);
        free(h);
        paths_release(&p);
        unsetenv("BANGER_ROOT");
        assert_int_equal(paths_init(&p, NULL, NULL), 0);
        h = sshconfig_home(&p);
        assert_string_equal(h, home);
        free(h);
        paths_release(&p);
}

static char *slurp(const char *path)
{
        char *s = NULL;
        size_t n = 0;
        struct bg_err *e = NULL;
        if (read_file_limited(path, 1 << 20, &s, &n, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        return s;
}

static mode_t mode_of(const char *path)
{
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return st.st_mode & 07777;
}

static void test_install_creates_ssh_dir_and_file_and_uninstall_removes_exactly_those(void **state)
{
        (void)state;
        char *sshdir = xasprintf("%s/.ssh", home), *cfg = xasprintf("%s/.ssh/config", home);
        bool changed = false;
        struct bg_err *e = NULL;
        if (sshconfig_install(home, INC, &changed, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_true(changed);
        assert_int_equal(mode_of(sshdir), 0700);
        assert_int_equal(mode_of(cfg), 0600);
        assert_int_equal(sshconfig_install(home, INC, &changed, NULL), 0);
        assert_false(changed);
        assert_int_equal(sshconfig_uninstall(home, &changed, NULL), 0);
        assert_true(changed);
        assert_int_equal(access(cfg, F_OK), -1);
        assert_int_equal(access(sshdir, F_OK), -1);
        assert_int_equal(sshconfig_uninstall(home, &changed, NULL), 0);   /* nothing left: fine */
        assert_false(changed);

        /* ~/.ssh existed: only the file goes. */
        assert_int_equal(mkdir(sshdir, 0700), 0);
        assert_int_equal(sshconfig_install(home, INC, &changed, NULL), 0);
        assert_int_equal(sshconfig_uninstall(home, &changed, NULL), 0);
        assert_int_equal(access(cfg, F_OK), -1);
        assert_int_equal(access(sshdir, F_OK), 0);

        /* Created by banger, then the user wrote to it: uninstall keeps their lines. */
        assert_int_equal(sshconfig_install(home, INC, &changed, NULL), 0);
        char *t = slurp(cfg);
        char *more = xasprintf("%sHost mine\n", t);
        assert_int_equal(write_file_atomic(cfg, more, strlen(more), 0600, NULL), 0);
        assert_int_equal(sshconfig_uninstall(home, &changed, NULL), 0);
        char *left = slurp(cfg);
        assert_string_equal(left, "Host mine\n");
        free(left);
        free(more);
        free(t);
        free(cfg);
        free(sshdir);
}

static void test_existing_file_keeps_its_mode_and_a_symlink_is_edited_at_its_target(void **state)
{
        (void)state;
        char *sshdir = xasprintf("%s/.ssh", home), *cfg = xasprintf("%s/.ssh/config", home);
        char *target = xasprintf("%s/dotfiles_config", dir);
        const char *orig = "Host a\n    User x";
        assert_int_equal(mkdir(sshdir, 0700), 0);
        assert_int_equal(write_file_atomic(target, orig, strlen(orig), 0644, NULL), 0);
        assert_int_equal(chmod(target, 0644), 0);
        assert_int_equal(symlink(target, cfg), 0);
        bool changed;
        assert_int_equal(sshconfig_install(home, INC, &changed, NULL), 0);
        struct stat st;
        assert_int_equal(lstat(cfg, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(mode_of(target), 0644);
        char *t = slurp(target);
        assert_true(str_has_prefix(t, SSHCONFIG_BEGIN "\n"));
        assert_int_equal(sshconfig_uninstall(home, &changed, NULL), 0);
        char *back = slurp(target);
        assert_string_equal(back, orig);
        assert_int_equal(lstat(cfg, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        free(back);
        free(t);
        free(target);
        free(cfg);
        free(sshdir);
}

static void test_refresh_writes_only_when_the_content_changes(void **state)
{
        (void)state;
        char *p = xasprintf("%s/config/banger/ssh_config", dir);
        bool changed = false;
        assert_int_equal(sshconfig_refresh(p, "/k/id_ed25519", "/k/known_hosts", &changed, NULL), 0);
        assert_true(changed);
        assert_int_equal(mode_of(p), 0644);
        assert_int_equal(sshconfig_refresh(p, "/k/id_ed25519", "/k/known_hosts", &changed, NULL), 0);
        assert_false(changed);
        assert_int_equal(sshconfig_refresh(p, "/k2/id_ed25519", "/k/known_hosts", &changed, NULL), 0);
        assert_true(changed);
        char *t = slurp(p);
        assert_non_null(strstr(t, "IdentityFile /k2/id_ed25519\n"));
        free(t);
        free(p);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_install_then_uninstall_gives_back_every_byte),
                cmocka_unit_test(test_install_updates_an_existing_block_in_place),
                cmocka_unit_test(test_uninstall_without_block_changes_nothing_and_unterminated_is_an_error),
                cmocka_unit_test(test_render_quotes_blanks_doubles_percent_and_refuses_quotes),
                cmocka_unit_test(test_include_line_uses_tilde_only_for_the_home_ssh_expands),
                T(test_home_is_root_home_under_a_root_else_HOME),
                T(test_install_creates_ssh_dir_and_file_and_uninstall_removes_exactly_those),
                T(test_existing_file_keeps_its_mode_and_a_symlink_is_edited_at_its_target),
                T(test_refresh_writes_only_when_the_content_changes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
