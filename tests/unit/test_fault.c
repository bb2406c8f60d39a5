/* fault: the BANGER_FAULTS grammar (good and bad specs, as tables) and
 * what fault_hit / fault_flag do once configured: counted and endless
 * failures, "@name" scoping, flags, and a crash point in a child process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fault.h"
#include "util.h"

static int reset(void **state)
{
        (void)state;
        assert_int_equal(fault_configure(NULL, NULL), 0);
        return 0;
}

static const char *const good[] = {
        "",
        "fail:prepare.before",
        "fail:prepare.before*1",
        "fail:start.mid*12",
        "crash:create-record.after",
        "die:start",
        "fail:start.after@web",
        "fail:start.after@web*2",
        "die:start@db",
        "fail:prepare.before,die:start,crash:forget.before@x",
        "fail:a.before,,fail:b.before",   /* empty items are skipped */
        "stall:start.before",
        "stall:start.before*1@web",
};

static void test_good_specs_parse(void **state)
{
        (void)state;
        assert_int_equal(fault_configure(NULL, NULL), 0);
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                print_message("spec: '%s'\n", good[i]);
                struct bg_err *e = NULL;
                assert_int_equal(fault_configure(good[i], &e), 0);
                assert_null(e);
        }
}

struct bad_row {
        const char *spec;
        const char *msg_part;
};

static const struct bad_row bad[] = {
        { "boom:prepare.before", "fault kind 'boom'" },
        { "Fail:prepare.before", "want crash, fail, stall or die" },
        { "prepare.before", "want KIND:POINT" },
        { "fail:prepare.before,nocolon", "fault 'nocolon'" },
        { "fail:prepare.before*0", "bad count" },
        { "fail:prepare.before*-1", "bad count" },
        { "fail:prepare.before*x", "bad count" },
        { "fail:prepare.before*", "bad count" },
        { "fail:", "bad point" },
        { "fail:@web", "bad point" },
        { "fail:*2", "bad point" },
        { "fail:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bad point" },   /* 64 */
};

static void test_bad_specs_rejected(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                print_message("spec: '%s'\n", bad[i].spec);
                struct bg_err *e = NULL;
                assert_int_equal(fault_configure(bad[i].spec, &e), -EINVAL);
                assert_non_null(e);
                assert_int_equal(e->code, EINVAL);
                assert_non_null(strstr(e->msg, bad[i].msg_part));
                bg_err_free(e);
        }
}

static void test_count_with_trailing_text_rejected(void **state)
{
        (void)state;
        static const char *const specs[] = {
                "fail:start.mid*1abc", "fail:start.mid*4294967297", "fail:start.mid*2x@web",
        };
        for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
                struct bg_err *e = NULL;
                assert_int_equal(fault_configure(specs[i], &e), -EINVAL);
                assert_non_null(strstr(bg_err_msg(e), "bad count"));
                bg_err_free(e);
        }
        /* A count before the scope keeps the scope. */
        struct bg_err *e = NULL;
        assert_int_equal(fault_configure("fail:start.mid*2@web", &e), 0);
        assert_int_equal(fault_hit("start.mid", "other", &e), 0);
        assert_null(e);
        assert_true(fault_hit("start.mid", "web", &e) < 0);
        bg_err_free(e);
        e = NULL;
        assert_true(fault_hit("start.mid", "web", &e) < 0);
        bg_err_free(e);
        e = NULL;
        assert_int_equal(fault_hit("start.mid", "web", &e), 0);
        fault_configure(NULL, NULL);
}

static void test_stall_sleeps_then_goes_on_as_counted(void **state)
{
        (void)state;
        struct bg_err *e = NULL;
        assert_int_equal(fault_configure("stall:start.before*1@web", &e), 0);
        int64_t t0 = now_mono_ms();
        assert_int_equal(fault_hit("start.before", "db", &e), 0);
        assert_true(now_mono_ms() - t0 < 1000);   /* another sandbox: no stall */
        assert_int_equal(fault_hit("start.before", "web", &e), 0);
        assert_null(e);
        assert_true(now_mono_ms() - t0 >= 2900);
        t0 = now_mono_ms();
        assert_int_equal(fault_hit("start.before", "web", &e), 0);   /* used up */
        assert_true(now_mono_ms() - t0 < 1000);
        fault_configure(NULL, NULL);
}

static char *many_faults(int n)
{
        char *s = xstrdup("");
        for (int i = 0; i < n; i++) {
                char *t = xasprintf("%s%sfail:p%d.before", s, i ? "," : "", i);
                free(s);
                s = t;
        }
        return s;
}

static void test_too_many_faults_rejected(void **state)
{
        (void)state;
        _cleanup_free_ char *ok = many_faults(32);
        assert_int_equal(fault_configure(ok, NULL), 0);
        _cleanup_free_ char *over = many_faults(33);
        struct bg_err *e = NULL;
        assert_int_equal(fault_configure(over, &e), -EINVAL);
        assert_string_equal(bg_err_msg(e), "too many faults");
        bg_err_free(e);
}

static void test_longest_point_accepted(void **state)
{
        (void)state;
        char point[64];
        memset(point, 'a', 63);
        point[63] = '\0';
        _cleanup_free_ char *spec = xasprintf("fail:%s", point);
        assert_int_equal(fault_configure(spec, NULL), 0);
        assert_true(fault_hit(point, "web", NULL) < 0);
}

/* fault_hit as 0 (nothing) or 1 (failed, with the expected message). */
static int hit(const char *point, const char *name)
{
        struct bg_err *e = NULL;
        int r = fault_hit(point, name, &e);
        if (r == 0) {
                assert_null(e);
                return 0;
        }
        assert_int_equal(r, -EIO);
        _cleanup_free_ char *want = xasprintf("injected failure at %s", point);
        assert_string_equal(bg_err_msg(e), want);
        bg_err_free(e);
        return 1;
}

static void test_nothing_configured_hits_nothing(void **state)
{
        (void)state;
        assert_int_equal(hit("prepare.before", "web"), 0);
        assert_int_equal(hit("prepare.before", NULL), 0);
        assert_false(fault_flag("start", "web"));
}

static void test_counted_failure_runs_out(void **state)
{
        (void)state;
        assert_int_equal(fault_configure("fail:prepare.before*2", NULL), 0);
        assert_int_equal(hit("prepare.mid", "web"), 0);
        assert_int_equal(hit("prepare.before", "web"), 1);
        assert_int_equal(hit("prepare.before", "db"), 1);
        assert_int_equal(hit("prepare.before", "web"), 0);
        assert_int_equal(hit("prepare.before", "web"), 0);
}

static void test_uncounted_failure_is_forever(void **state)
{
        (void)state;
        assert_int_equal(fault_configure("fail:start.after", NULL), 0);
        for (int i = 0; i < 100; i++)
                assert_int_equal(hit("start.after", "web"), 1);
        /* An unscoped fault also hits steps with no sandbox name (GC). */
        assert_int_equal(hit("start.after", NULL), 1);
        /* Points match whole, not by prefix. */
        assert_int_equal(hit("start.afterwards", "web"), 0);
        assert_int_equal(hit("start", "web"), 0);
}

static void test_scoped_fault_hits_only_its_name(void **state)
{
        (void)state;
        assert_int_equal(fault_configure("fail:start.mid@web*1,die:start@db", NULL), 0);
        assert_int_equal(hit("start.mid", "db"), 0);
        assert_int_equal(hit("start.mid", NULL), 0);
        assert_int_equal(hit("start.mid", "webb"), 0);
        assert_int_equal(hit("start.mid", "web"), 1);
        assert_int_equal(hit("start.mid", "web"), 0);

        assert_true(fault_flag("start", "db"));
        assert_false(fault_flag("start", "web"));
        assert_false(fault_flag("start", NULL));
}

static void test_flag_is_not_a_failure(void **state)
{
        (void)state;
        assert_int_equal(fault_configure("die:start", NULL), 0);
        assert_true(fault_flag("start", "web"));
        assert_true(fault_flag("start", NULL));
        assert_false(fault_flag("stop", "web"));
        assert_int_equal(hit("start", "web"), 0);
}

static void test_failure_is_not_a_flag(void **state)
{
        (void)state;
        assert_int_equal(fault_configure("fail:start", NULL), 0);
        assert_false(fault_flag("start", "web"));
}

static void test_reconfigure_replaces(void **state)
{
        (void)state;
        assert_int_equal(fault_configure("fail:prepare.before,die:start", NULL), 0);
        assert_int_equal(fault_configure("fail:stop.before", NULL), 0);
        assert_int_equal(hit("prepare.before", "web"), 0);
        assert_false(fault_flag("start", "web"));
        assert_int_equal(hit("stop.before", "web"), 1);
        assert_int_equal(fault_configure("", NULL), 0);
        assert_int_equal(hit("stop.before", "web"), 0);
}

static void test_crash_point_kills_the_process(void **state)
{
        (void)state;
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (fault_configure("crash:prepare.mid@web", NULL) < 0)
                        _exit(3);
                if (fault_hit("prepare.mid", "db", NULL) != 0)   /* other names pass */
                        _exit(4);
                fault_hit("prepare.mid", "web", NULL);
                _exit(5);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGKILL);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, reset, reset)
        const struct CMUnitTest tests[] = {
                T(test_good_specs_parse),
                T(test_bad_specs_rejected),
                T(test_count_with_trailing_text_rejected),
                T(test_stall_sleeps_then_goes_on_as_counted),
                T(test_too_many_faults_rejected),
                T(test_longest_point_accepted),
                T(test_nothing_configured_hits_nothing),
                T(test_counted_failure_runs_out),
                T(test_uncounted_failure_is_forever),
                T(test_scoped_fault_hits_only_its_name),
                T(test_flag_is_not_a_failure),
                T(test_failure_is_not_a_flag),
                T(test_reconfigure_replaces),
                T(test_crash_point_kills_the_process),
        };
#undef T
        return cmocka_run_group_tests_name("fault", tests, NULL, NULL);
}
