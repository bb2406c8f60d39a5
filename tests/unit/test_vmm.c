/* vmm: process supervision with `sleep` and `sh` as the "VMM".  The VMM
 * binary is a symlink inside a fake run dir (ROOT/run/vms/<id>/vmm ->
 * sleep), so its command line carries the run dir exactly as QEMU's does.
 * Covers the two-step spawn, exit statuses through the event fd, fd and
 * session hygiene, adoption (right process only), the /proc scan and the
 * verified kill. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"
#include "vmm.h"

#define ID_A "0123456789abcdef"
#define ID_B "fedcba9876543210"

struct fx {
        char root[64];
        struct vmm *m;
        char *sleep_a;   /* ROOT/run/vms/ID_A/vmm -> sleep */
        char *sleep_b;
        char *log;
};

static char *make_vmm_link(const char *root, const char *id)
{
        _cleanup_free_ char *dir = xasprintf("%s/run/vms/%s", root, id);
        assert_int_equal(mkdir_p(dir, 0700, NULL), 0);
        char *link = xasprintf("%s/vmm", dir);
        _cleanup_free_ char *target = vmm_which("sleep");
        assert_non_null(target);
        assert_int_equal(symlink(target, link), 0);
        return link;
}

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->root, sizeof f->root, "/tmp/bg-vmm-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        f->sleep_a = make_vmm_link(f->root, ID_A);
        f->sleep_b = make_vmm_link(f->root, ID_B);
        f->log = xasprintf("%s/vmm.log", f->root);
        struct bg_err *e = NULL;
        if (vmm_new(&f->m, &e) < 0)
                fail_msg("vmm_new: %s", bg_err_msg(e));
        *state = f;
        return 0;
}

static void kill_all_under(const char *root)
{
        struct vmm_found *found = NULL;
        size_t n = 0;
        if (vmm_scan(root, &found, &n, NULL) == 0)
                for (size_t i = 0; i < n; i++)
                        vmm_kill_verified(found[i].pid, found[i].start_time, root, 2000, NULL);
        vmm_found_free(found, n);
}

static int teardown(void **state)
{
        struct fx *f = *state;
        kill_all_under(f->root);
        vmm_free(f->m);
        rm_rf(f->root, NULL);
        free(f->sleep_a);
        free(f->sleep_b);
        free(f->log);
        free(f);
        return 0;
}

static pid_t spawn(struct fx *f, const char *id, const char *const *argv, uint64_t *st)
{
        struct vmm_cmd c = { .argv = argv, .log_path = f->log, .cwd = f->root };
        pid_t pid = 0;
        uint64_t t = 0;
        struct bg_err *e = NULL;
        if (vmm_spawn(f->m, id, &c, &pid, &t, &e) < 0)
                fail_msg("vmm_spawn: %s", bg_err_msg(e));
        if (vmm_release(f->m, id, &e) < 0)
                fail_msg("vmm_release: %s", bg_err_msg(e));
        if (st)
                *st = t;
        return pid;
}

struct seen {
        char ids[8][17];
        char labels[8][64];   /* "" when unlabelled */
        size_t n;
};

static void on_exit_cb(const char *id, const char *label, void *arg)
{
        struct seen *s = arg;
        if (s->n < ARRAY_SIZE(s->ids)) {
                snprintf(s->ids[s->n], sizeof s->ids[0], "%s", id);
                snprintf(s->labels[s->n], sizeof s->labels[0], "%s", label ? label : "");
        }
        s->n++;
}

/* Wait for the event fd, then drain: what the daemon's main loop does. */
static struct seen wait_event(struct fx *f, int timeout_ms)
{
        struct seen s = { .n = 0 };
        int64_t end = now_mono_ms() + timeout_ms;
        while (s.n == 0 && now_mono_ms() < end) {
                struct pollfd p = { .fd = vmm_event_fd(f->m), .events = POLLIN };
                if (poll(&p, 1, (int)(end - now_mono_ms())) > 0)
                        vmm_drain(f->m, on_exit_cb, &s);
        }
        return s;
}

static char *read_log(struct fx *f)
{
        char *buf = NULL;
        assert_int_equal(read_file_limited(f->log, 65536, &buf, NULL, NULL), 0);
        return buf;
}

static void test_two_step_spawn_persists_before_exec(void **state)
{
        struct fx *f = *state;
        const char *argv[] = { f->sleep_a, "30", NULL };
        struct vmm_cmd c = { .argv = argv, .log_path = f->log, .cwd = f->root };
        pid_t pid;
        uint64_t st, now_st;
        assert_int_equal(vmm_spawn(f->m, ID_A, &c, &pid, &st, NULL), 0);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_HELD);
        /* Held: the child is still us, not the VMM, but its identity is final. */
        _cleanup_free_ char *cmd_path = xasprintf("/proc/%d/cmdline", (int)pid);
        _cleanup_free_ char *cmd = NULL;
        assert_int_equal(read_file_limited(cmd_path, 4096, &cmd, NULL, NULL), 0);
        assert_null(strstr(cmd, f->sleep_a));
        assert_int_equal(vmm_proc_start_time(pid, &now_st), 0);
        assert_int_equal(now_st, st);
        /* Spawning the same id again is refused while it lives. */
        assert_int_equal(vmm_spawn(f->m, ID_A, &c, &pid, &st, NULL), -EEXIST);
        assert_int_equal(vmm_release(f->m, ID_A, NULL), 0);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_RUNNING);
        free(cmd);
        cmd = NULL;
        for (int i = 0; i < 200; i++) {   /* exec is done when release returns; /proc agrees */
                free(cmd);
                cmd = NULL;
                read_file_limited(cmd_path, 4096, &cmd, NULL, NULL);
                if (cmd && strstr(cmd, f->sleep_a))
                        break;
                usleep(5000);
        }
        assert_non_null(strstr(cmd, f->sleep_a));
        assert_int_equal(vmm_proc_start_time(pid, &now_st), 0);
        assert_int_equal(now_st, st);   /* exec keeps the start time: adoption relies on it */
        assert_int_equal(vmm_pid(f->m, ID_A), pid);
        /* Its own session: it outlives the daemon's terminal and group. */
        assert_int_equal(getsid(pid), pid);
}

static void test_exit_status_arrives_through_the_event_fd(void **state)
{
        struct fx *f = *state;
        const char *argv[] = { "sh", "-c", "exit 3", NULL };
        vmm_label(f->m, ID_A, "web");   /* the drivers' name for the exit report */
        spawn(f, ID_A, argv, NULL);
        struct seen s = wait_event(f, 5000);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.ids[0], ID_A);
        assert_string_equal(s.labels[0], "web");
        int status;
        assert_int_equal(vmm_state(f->m, ID_A, &status), VMM_EXITED);
        assert_int_equal(status, 3);
        /* Drained once: nothing more to report. */
        struct seen again = { .n = 0 };
        vmm_drain(f->m, on_exit_cb, &again);
        assert_int_equal(again.n, 0);
        vmm_forget(f->m, ID_A);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_NONE);
        /* The label outlives the entry (a restart keeps its name) until dropped. */
        spawn(f, ID_A, argv, NULL);
        s = wait_event(f, 5000);
        assert_string_equal(s.labels[0], "web");
        vmm_forget(f->m, ID_A);
        vmm_label(f->m, ID_A, NULL);
        spawn(f, ID_A, argv, NULL);
        s = wait_event(f, 5000);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.labels[0], "");
        vmm_forget(f->m, ID_A);
}

static void test_clean_exit_and_signal_deaths(void **state)
{
        struct fx *f = *state;
        const char *ok[] = { "sh", "-c", "exit 0", NULL };
        spawn(f, ID_A, ok, NULL);
        const char *sl[] = { f->sleep_b, "30", NULL };
        spawn(f, ID_B, sl, NULL);
        assert_int_equal(vmm_signal(f->m, ID_B, SIGTERM, NULL), 0);
        assert_int_equal(vmm_wait(f->m, ID_B, 5000), 0);
        assert_int_equal(vmm_wait(f->m, ID_A, 5000), 0);
        int status;
        assert_int_equal(vmm_state(f->m, ID_A, &status), VMM_EXITED);
        assert_int_equal(status, 0);
        assert_int_equal(vmm_state(f->m, ID_B, &status), VMM_EXITED);
        assert_int_equal(status, 128 + SIGTERM);
        assert_int_equal(vmm_signal(f->m, ID_B, SIGKILL, NULL), -ESRCH);
}

static void test_output_is_appended_to_the_log(void **state)
{
        struct fx *f = *state;
        const char *a1[] = { "sh", "-c", "echo first; echo to-stderr >&2", NULL };
        spawn(f, ID_A, a1, NULL);
        assert_int_equal(vmm_wait(f->m, ID_A, 5000), 0);
        vmm_forget(f->m, ID_A);
        const char *a2[] = { "sh", "-c", "echo second; pwd", NULL };
        spawn(f, ID_A, a2, NULL);
        assert_int_equal(vmm_wait(f->m, ID_A, 5000), 0);
        _cleanup_free_ char *log = read_log(f);
        _cleanup_free_ char *want = xasprintf("first\nto-stderr\nsecond\n%s\n", f->root);
        assert_string_equal(log, want);
        struct stat st;
        assert_int_equal(stat(f->log, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
}

/* The fd numbers pid has open, as "0 1 2 ..." */
/* Wait (up to 5 s) until pid's comm is exactly what (a forked child keeps
 * its parent's comm, "test_vmm", until it execs). */
static void wait_exec(pid_t pid, const char *what)
{
        _cleanup_free_ char *path = xasprintf("/proc/%d/comm", (int)pid);
        int64_t end = now_mono_ms() + 5000;
        while (now_mono_ms() < end) {
                char *comm = NULL;
                if (read_file_limited(path, 256, &comm, NULL, NULL) == 0) {
                        comm[strcspn(comm, "\n")] = '\0';
                        bool done = strcmp(comm, what) == 0;
                        free(comm);
                        if (done)
                                return;
                }
                usleep(2000);
        }
        fail_msg("pid %d never exec'd %s", (int)pid, what);
}

static char *fds_of(pid_t pid)
{
        _cleanup_free_ char *dir = xasprintf("/proc/%d/fd", (int)pid);
        char *out = xstrdup("");
        for (int fd = 0; fd < 1024; fd++) {
                _cleanup_free_ char *p = xasprintf("%s/%d", dir, fd);
                struct stat st;
                if (lstat(p, &st) == 0) {
                        char *n = xasprintf("%s%s%d", out, *out ? " " : "", fd);
                        free(out);
                        out = n;
                }
        }
        return out;
}

static void test_only_the_given_fds_are_inherited(void **state)
{
        struct fx *f = *state;
        int leak = open("/dev/null", O_RDONLY);   /* no O_CLOEXEC: must not reach the VMM */
        int keep = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(leak >= 3 && keep >= 3);
        const char *argv[] = { f->sleep_a, "30", NULL };
        struct vmm_cmd c = { .argv = argv, .log_path = f->log, .keep_fds = &keep, .n_keep_fds = 1 };
        pid_t pid;
        uint64_t st;
        assert_int_equal(vmm_spawn(f->m, ID_A, &c, &pid, &st, NULL), 0);
        assert_int_equal(vmm_release(f->m, ID_A, NULL), 0);
        /* Until the child has exec'd it still holds its close-on-exec
         * release pipe, and sleep(1) briefly opens its locale files while
         * it starts: compare once the fd table has settled (an inherited
         * fd never goes away, so a leak still fails). */
        wait_exec(pid, "vmm");   /* the symlink the VMM runs as */
        _cleanup_free_ char *want = xasprintf("0 1 2 %d", keep);
        char *got = fds_of(pid);
        for (int64_t end = now_mono_ms() + 2000; strcmp(got, want) != 0 && now_mono_ms() < end;) {
                usleep(5000);
                free(got);
                got = fds_of(pid);
        }
        _cleanup_free_ char *got_final = got;
        assert_string_equal(got_final, want);
        close(leak);
        close(keep);
}

static void test_missing_binary_and_failed_exec(void **state)
{
        struct fx *f = *state;
        const char *none[] = { "/nonexistent/qemu-system-x86_64", NULL };
        struct vmm_cmd c = { .argv = none, .log_path = f->log };
        pid_t pid;
        uint64_t st;
        struct bg_err *e = NULL;
        assert_int_equal(vmm_spawn(f->m, ID_A, &c, &pid, &st, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "/nonexistent/qemu-system-x86_64"));
        bg_err_free(e);
        /* Executable but not a program: exec fails after release. */
        _cleanup_free_ char *junk = xasprintf("%s/junk", f->root);
        assert_int_equal(write_file_atomic(junk, "\x7f" "ELFjunk", 7, 0755, NULL), 0);
        const char *bad[] = { junk, NULL };
        c.argv = bad;
        assert_int_equal(vmm_spawn(f->m, ID_A, &c, &pid, &st, NULL), 0);
        e = NULL;
        assert_true(vmm_release(f->m, ID_A, &e) < 0);
        assert_non_null(strstr(bg_err_msg(e), "exec"));
        bg_err_free(e);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_NONE);
        assert_true(kill(pid, 0) < 0);   /* reaped: not even a zombie */
}

static void test_held_child_never_runs_when_abandoned(void **state)
{
        struct fx *f = *state;
        const char *argv[] = { f->sleep_a, "30", NULL };
        struct vmm_cmd c = { .argv = argv, .log_path = f->log };
        pid_t pid;
        uint64_t st;
        assert_int_equal(vmm_spawn(f->m, ID_A, &c, &pid, &st, NULL), 0);
        vmm_forget(f->m, ID_A);   /* e.g. persisting the pid failed */
        assert_true(kill(pid, 0) < 0);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_NONE);
        struct vmm_found *found = NULL;
        size_t n = 0;
        assert_int_equal(vmm_scan(f->sleep_a, &found, &n, NULL), 0);
        assert_int_equal(n, 0);
        vmm_found_free(found, n);
}

/* A VMM some other process started (a previous daemon): not our child. */
static pid_t orphan(struct fx *f, const char *vmm_path, uint64_t *st)
{
        _cleanup_free_ char *script = xasprintf("%s 30 </dev/null >/dev/null 2>&1 & echo $!", vmm_path);
        const char *argv[] = { "sh", "-c", script, NULL };
        _cleanup_free_ char *out = NULL;
        assert_int_equal(vmm_run_tool(argv, 5000, &out, NULL, NULL), 0);
        pid_t pid = (pid_t)strtol(out, NULL, 10);
        assert_true(pid > 0);
        (void)f;
        for (int i = 0; i < 200; i++) {   /* until the background shell has exec'd */
                _cleanup_free_ char *cmd = NULL;
                _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int)pid);
                if (read_file_limited(path, 4096, &cmd, NULL, NULL) == 0 && strstr(cmd, "vmm"))
                        break;
                usleep(5000);
        }
        assert_int_equal(vmm_proc_start_time(pid, st), 0);
        return pid;
}

static void test_adoption_accepts_only_the_right_process(void **state)
{
        struct fx *f = *state;
        uint64_t st;
        pid_t pid = orphan(f, f->sleep_a, &st);
        _cleanup_free_ char *needle = xasprintf("%s/run/vms/%s/", f->root, ID_A);
        _cleanup_free_ char *other = xasprintf("%s/run/vms/%s/", f->root, ID_B);
        struct bg_err *e = NULL;
        assert_int_equal(vmm_adopt(f->m, ID_A, pid, st + 1, needle, &e), -ESRCH);
        assert_non_null(strstr(bg_err_msg(e), "start time"));
        bg_err_free(e);
        assert_int_equal(vmm_adopt(f->m, ID_A, pid, st, other, NULL), -ESRCH);
        assert_int_equal(vmm_adopt(f->m, ID_A, 999999999, st, needle, NULL), -ESRCH);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_NONE);
        assert_int_equal(vmm_adopt(f->m, ID_A, pid, st, needle, NULL), 0);
        assert_int_equal(vmm_state(f->m, ID_A, NULL), VMM_RUNNING);
        assert_int_equal(vmm_adopt(f->m, ID_A, pid, st, needle, NULL), 0);   /* idempotent */
        /* Its end is heard through the event fd; its status is unknown. */
        assert_int_equal(vmm_signal(f->m, ID_A, SIGKILL, NULL), 0);
        struct seen s = wait_event(f, 5000);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.ids[0], ID_A);
        int status = 0;
        assert_int_equal(vmm_state(f->m, ID_A, &status), VMM_EXITED);
        assert_int_equal(status, -1);
}

static void test_mark_exited_reports_unknown_status(void **state)
{
        struct fx *f = *state;
        vmm_mark_exited(f->m, ID_B);
        int status = 0;
        assert_int_equal(vmm_state(f->m, ID_B, &status), VMM_EXITED);
        assert_int_equal(status, -1);
        vmm_forget(f->m, ID_B);
        assert_int_equal(vmm_state(f->m, ID_B, NULL), VMM_NONE);
}

static void test_scan_finds_owned_processes_and_kill_is_verified(void **state)
{
        struct fx *f = *state;
        uint64_t st_a, st_b;
        pid_t a = orphan(f, f->sleep_a, &st_a);
        const char *argv[] = { f->sleep_b, "30", NULL };
        pid_t b = spawn(f, ID_B, argv, &st_b);
        for (int i = 0; i < 200; i++) {   /* b has exec'd when its cmdline shows it */
                struct vmm_found *x = NULL;
                size_t nx = 0;
                vmm_scan(f->sleep_b, &x, &nx, NULL);
                vmm_found_free(x, nx);
                if (nx)
                        break;
                usleep(5000);
        }
        _cleanup_free_ char *prefix = xasprintf("%s/run/vms/", f->root);
        struct vmm_found *found = NULL;
        size_t n = 0;
        assert_int_equal(vmm_scan(prefix, &found, &n, NULL), 0);
        assert_int_equal(n, 2);
        bool saw_a = false, saw_b = false;
        for (size_t i = 0; i < n; i++) {
                if (found[i].pid == a) {
                        saw_a = true;
                        assert_int_equal(found[i].start_time, st_a);
                        assert_non_null(strstr(found[i].cmdline, ID_A "/vmm 30"));
                }
                saw_b |= found[i].pid == b;
        }
        assert_true(saw_a && saw_b);
        vmm_found_free(found, n);
        /* A wrong start time or needle never kills. */
        assert_int_equal(vmm_kill_verified(a, st_a + 1, prefix, 1000, NULL), 0);
        assert_int_equal(kill(a, 0), 0);
        assert_int_equal(vmm_kill_verified(a, st_a, "/elsewhere/", 1000, NULL), 0);
        assert_int_equal(kill(a, 0), 0);
        assert_int_equal(vmm_kill_verified(a, st_a, prefix, 5000, NULL), 0);
        assert_int_equal(vmm_kill_verified(b, st_b, prefix, 5000, NULL), 0);
        n = 0;
        found = NULL;
        assert_int_equal(vmm_scan(prefix, &found, &n, NULL), 0);
        assert_int_equal(n, 0);
        vmm_found_free(found, n);
        /* b was our child: the supervisor reports it and leaves no zombie. */
        struct seen s = wait_event(f, 5000);
        assert_int_equal(s.n, 1);
        int status;
        assert_int_equal(vmm_state(f->m, ID_B, &status), VMM_EXITED);
        assert_int_equal(status, 128 + SIGKILL);
}

static void test_run_tool_output_status_and_timeout(void **state)
{
        (void)state;
        const char *ok[] = { "sh", "-c", "echo hi; echo there >&2", NULL };
        _cleanup_free_ char *out = NULL;
        int status = -2;
        assert_int_equal(vmm_run_tool(ok, 5000, &out, &status, NULL), 0);
        assert_string_equal(out, "hi\nthere\n");
        assert_int_equal(status, 0);
        const char *fail[] = { "sh", "-c", "echo one; echo two; echo why >&2; exit 4", NULL };
        struct bg_err *e = NULL;
        assert_int_equal(vmm_run_tool(fail, 5000, NULL, &status, &e), -EIO);
        assert_int_equal(status, 4);
        assert_string_equal(bg_err_msg(e), "sh exited with status 4: one\ntwo\nwhy");
        bg_err_free(e);
        const char *slow[] = { "sleep", "10", NULL };
        int64_t t0 = now_mono_ms();
        e = NULL;
        assert_int_equal(vmm_run_tool(slow, 200, NULL, NULL, &e), -ETIMEDOUT);
        assert_true(now_mono_ms() - t0 < 3000);
        bg_err_free(e);
        const char *none[] = { "no-such-tool-banger", NULL };
        assert_int_equal(vmm_run_tool(none, 1000, NULL, NULL, NULL), -ENOENT);
        /* Lots of output: the tail is kept. */
        const char *lots[] = { "sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line$i; i=$((i+1)); done", NULL };
        _cleanup_free_ char *tail = NULL;
        assert_int_equal(vmm_run_tool(lots, 10000, &tail, NULL, NULL), 0);
        assert_true(strlen(tail) <= 4096);
        assert_non_null(strstr(tail, "line2999\n"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_two_step_spawn_persists_before_exec),
                T(test_exit_status_arrives_through_the_event_fd),
                T(test_clean_exit_and_signal_deaths),
                T(test_output_is_appended_to_the_log),
                T(test_only_the_given_fds_are_inherited),
                T(test_missing_binary_and_failed_exec),
                T(test_held_child_never_runs_when_abandoned),
                T(test_adoption_accepts_only_the_right_process),
                T(test_mark_exited_reports_unknown_status),
                T(test_scan_finds_owned_processes_and_kill_is_verified),
                T(test_run_tool_output_status_and_timeout),
        };
#undef T
        return cmocka_run_group_tests_name("vmm", tests, NULL, NULL);
}
