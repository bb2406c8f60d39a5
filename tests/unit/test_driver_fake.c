/* driver_fake: every driver operation against a temp state/run folder,
 * checked through the traces the fake leaves on disk (STATE/fake/<id>/disk,
 * RUN/fake/<id>.vm) and through probe, plus the fault points that tests of
 * the loop rely on.  Every operation must be idempotent: doing it twice is
 * doing it once.  A VM file rewritten behind the driver's back is seen
 * after drain_events, as the loop sees it when event_fd turns readable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "err.h"
#include "fault.h"
#include "spec.h"
#include "util.h"

#define ID_A "0123456789abcdef"
#define ID_B "fedcba9876543210"
#define ID_C "00000000deadbeef"
#define ID_D "1111111111111111"

static const char spec_yaml[] =
        "apiVersion: banger/v1\n"
        "kind: Sandbox\n"
        "metadata:\n"
        "  name: web\n"
        "spec:\n"
        "  vcpu: 1\n"
        "  memory_mib: 256\n"
        "  disk_size: 64M\n";

struct fx {
        char root[64];
        char *state_dir;
        char *run_dir;
        struct spec_file *file;
        struct driver *d;
        struct driver_vm vm;
};

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->root, sizeof f->root, "/tmp/bg-fake-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        f->state_dir = xasprintf("%s/state", f->root);
        f->run_dir = xasprintf("%s/run", f->root);
        assert_int_equal(spec_parse_buffer("web.yaml", spec_yaml, strlen(spec_yaml), &f->file), 0);
        assert_true(spec_file_ok(f->file));
        struct bg_err *e = NULL;
        if (driver_fake_new(f->state_dir, f->run_dir, &f->d, &e) < 0)
                fail_msg("driver_fake_new: %s", bg_err_msg(e));
        f->vm = (struct driver_vm){ .name = "web", .id = ID_A, .spec = f->file->docs[0].spec,
                                    .handles = json_object() };
        assert_int_equal(fault_configure(NULL, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        fault_configure(NULL, NULL);
        f->d->ops->free(f->d);
        json_decref(f->vm.handles);
        spec_file_free(f->file);
        rm_rf(f->root, NULL);
        free(f->state_dir);
        free(f->run_dir);
        free(f);
        return 0;
}

static char *disk_dir(const struct fx *f, const char *id)
{
        return xasprintf("%s/fake/%s", f->state_dir, id);
}

static char *disk_path(const struct fx *f, const char *id)
{
        return xasprintf("%s/fake/%s/disk", f->state_dir, id);
}

static char *vm_path(const struct fx *f, const char *id)
{
        return xasprintf("%s/fake/%s.vm", f->run_dir, id);
}

static bool exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static void put_file(const char *path, const char *content)
{
        struct bg_err *e = NULL;
        if (write_file_atomic(path, content, strlen(content), 0600, &e) < 0)
                fail_msg("write %s: %s", path, bg_err_msg(e));
}

struct changes {
        char names[8][64];
        size_t n;
};

static void on_changed(const char *name, void *arg)
{
        struct changes *c = arg;
        if (c->n < ARRAY_SIZE(c->names))
                snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
        c->n++;
}

/* Let the driver take in what changed behind its back (the loop does this
 * when event_fd is readable); returns how many sandboxes it reported. */
static size_t drain_events(struct fx *f, struct changes *out)
{
        struct changes c = { 0 };
        if (f->d->ops->drain_events)
                f->d->ops->drain_events(f->d, on_changed, &c);
        if (out)
                *out = c;
        return c.n;
}

/* Run one op and require success. */
#define OK(call) do { \
                struct bg_err *e_ = NULL; \
                int r_ = (call); \
                if (r_ < 0) \
                        fail_msg("%s: %d %s", #call, r_, bg_err_msg(e_)); \
                assert_null(e_); \
        } while (0)

static struct driver_probe probe(struct fx *f)
{
        struct driver_probe p = { .vm = VM_RUNNING, .exit_status = 42 };
        OK(f->d->ops->probe(f->d, &f->vm, &p, &e_));
        return p;
}

static void test_names(void **state)
{
        struct fx *f = *state;
        assert_string_equal(f->d->ops->name, "fake");
        assert_string_equal(f->d->ops->hypervisor(f->d), "fake");
}

static void test_new_makes_both_folders(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *a = xasprintf("%s/fake", f->state_dir);
        _cleanup_free_ char *b = xasprintf("%s/fake", f->run_dir);
        struct stat st;
        assert_int_equal(stat(a, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(stat(b, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
}

static void test_new_fails_when_folder_cannot_be_made(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *file = xasprintf("%s/plain", f->root);
        put_file(file, "x");
        _cleanup_free_ char *under = xasprintf("%s/plain/state", f->root);
        struct driver *d = NULL;
        struct bg_err *e = NULL;
        assert_true(driver_fake_new(under, f->run_dir, &d, &e) < 0);
        assert_null(d);
        assert_non_null(e);
        assert_true(str_has_prefix(e->msg, "fake driver: "));
        bg_err_free(e);
}

static void test_prepare_makes_disk_and_is_idempotent(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *disk = disk_path(f, ID_A);
        for (int i = 0; i < 2; i++) {
                OK(f->d->ops->prepare(f->d, &f->vm, &e_));
                struct stat st;
                assert_int_equal(stat(disk, &st), 0);
                assert_true(S_ISREG(st.st_mode));
                assert_int_equal(st.st_size, 64 << 20);
                assert_string_equal(json_string_value(json_object_get(f->vm.handles, "disk")), disk);
        }
        /* Prepare alone starts nothing. */
        assert_int_equal(probe(f).vm, VM_ABSENT);
}

static void test_start_without_prepare_fails(void **state)
{
        struct fx *f = *state;
        struct bg_err *e = NULL;
        assert_true(f->d->ops->start(f->d, &f->vm, &e) < 0);
        assert_non_null(e);
        assert_non_null(strstr(e->msg, "missing"));
        bg_err_free(e);
        assert_int_equal(probe(f).vm, VM_ABSENT);
}

static void test_start_stop_are_idempotent(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *vm = vm_path(f, ID_A);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        for (int i = 0; i < 2; i++) {
                OK(f->d->ops->start(f->d, &f->vm, &e_));
                struct driver_probe p = probe(f);
                assert_int_equal(p.vm, VM_RUNNING);
                assert_int_equal(p.exit_status, -1);
                assert_true(exists(vm));
        }
        assert_string_equal(json_string_value(json_object_get(f->vm.handles, "vm")), vm);
        assert_true(json_is_integer(json_object_get(f->vm.handles, "started_at")));

        for (int i = 0; i < 2; i++) {
                OK(f->d->ops->stop(f->d, &f->vm, 1000, &e_));
                struct driver_probe p = probe(f);
                assert_int_equal(p.vm, VM_ABSENT);
                assert_int_equal(p.exit_status, -1);
                assert_false(exists(vm));
        }
        assert_null(json_object_get(f->vm.handles, "vm"));

        /* Stopped, it starts again: the disk is still there. */
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        assert_int_equal(probe(f).vm, VM_RUNNING);
        for (int i = 0; i < 2; i++) {
                OK(f->d->ops->kill(f->d, &f->vm, &e_));
                assert_int_equal(probe(f).vm, VM_ABSENT);
        }
}

static void test_cleanup_removes_everything_and_is_idempotent(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *dir = disk_dir(f, ID_A);
        _cleanup_free_ char *vm = vm_path(f, ID_A);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        assert_true(exists(dir) && exists(vm));

        /* Operations other than prepare/start may get no spec. */
        f->vm.spec = NULL;
        for (int i = 0; i < 2; i++) {
                OK(f->d->ops->cleanup(f->d, &f->vm, &e_));
                assert_false(exists(dir));
                assert_false(exists(vm));
                assert_int_equal(json_object_size(f->vm.handles), 0);
                assert_int_equal(probe(f).vm, VM_ABSENT);
        }
        /* Cleanup of a VM that never existed is fine too. */
        f->vm.id = ID_B;
        OK(f->d->ops->cleanup(f->d, &f->vm, &e_));
}

struct probe_row {
        const char *content;    /* NULL: no VM file */
        enum vm_observed vm;
        int status;
};

static const struct probe_row probe_rows[] = {
        { NULL, VM_ABSENT, -1 },
        { "running\n", VM_RUNNING, -1 },
        { "running", VM_RUNNING, -1 },
        { "exited 0\n", VM_EXITED_OK, 0 },
        { "exited 7\n", VM_EXITED_FAIL, 7 },
        { "exited 42\n", VM_EXITED_FAIL, 42 },
        { "exited 137\n", VM_EXITED_FAIL, 137 },
        { "garbage\n\n", VM_EXITED_FAIL, 1 },
        { "", VM_EXITED_FAIL, 1 },
        /* As long as "running\n", but not running. */
        { "exited 0", VM_EXITED_OK, 0 },
        { "exited 1", VM_EXITED_FAIL, 1 },
        { "exited 7", VM_EXITED_FAIL, 7 },
        { "garbage\n", VM_EXITED_FAIL, 1 },
        { NULL, VM_ABSENT, -1 },
};

/* The VM file as a test (or a dying VMM) writes it, seen after the
 * driver drains its events. */
static void run_probe_rows(struct fx *f, const struct probe_row *rows, size_t n)
{
        _cleanup_free_ char *vm = vm_path(f, ID_A);
        for (size_t i = 0; i < n; i++) {
                const struct probe_row *row = &rows[i];
                print_message("vm file: %s\n", row->content ? row->content : "(none)");
                unlink(vm);
                if (row->content)
                        put_file(vm, row->content);
                drain_events(f, NULL);
                struct driver_probe p = probe(f);
                assert_int_equal(p.vm, row->vm);
                assert_int_equal(p.exit_status, row->status);
                /* Probing changes nothing. */
                assert_int_equal(exists(vm), row->content != NULL);
        }
}

static void test_probe_table(void **state)
{
        run_probe_rows(*state, probe_rows, ARRAY_SIZE(probe_rows));
}

static void test_crashed_vm_starts_again(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *vm = vm_path(f, ID_A);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        put_file(vm, "exited 7\n");
        drain_events(f, NULL);
        assert_int_equal(probe(f).vm, VM_EXITED_FAIL);
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        assert_int_equal(probe(f).vm, VM_RUNNING);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_owned as a sorted "id,id" string. */
static char *owned(struct fx *f)
{
        char **ids = NULL;
        size_t n = 0;
        OK(f->d->ops->list_owned(f->d, &ids, &n, &e_));
        if (n)
                qsort(ids, n, sizeof *ids, cmp_str);
        char *s = xstrdup("");
        for (size_t i = 0; i < n; i++) {
                char *t = xasprintf("%s%s%s", s, i ? "," : "", ids[i]);
                free(s);
                s = t;
                free(ids[i]);
        }
        free(ids);
        return s;
}

static void expect_owned(struct fx *f, const char *want)
{
        _cleanup_free_ char *got = owned(f);
        assert_string_equal(got, want);
}

static void test_list_owned_finds_ids_in_both_folders(void **state)
{
        struct fx *f = *state;
        expect_owned(f, "");

        /* A: disk and VM; B: only a VM file; C: only a disk folder. */
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        _cleanup_free_ char *vm_b = vm_path(f, ID_B);
        put_file(vm_b, "running\n");
        _cleanup_free_ char *dir_c = disk_dir(f, ID_C);
        OK(mkdir_p(dir_c, 0700, &e_));

        /* Names that are not ids are not ours. */
        static const char *const junk_disk[] = {
                "notanid", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
                "0123456789abcdeg", ".0123456789abcde", "0123456789abcdef.vm",
        };
        static const char *const junk_run[] = {
                "0123456789abcdef", "0123456789abcde.vm", "0123456789abcdef0.vm",
                "0123456789ABCDEF.vm", "0123456789abcdef.vm.tmp1", "bangerd.sock",
                "zz23456789abcdef.vm",
        };
        for (size_t i = 0; i < ARRAY_SIZE(junk_disk); i++) {
                _cleanup_free_ char *p = xasprintf("%s/fake/%s", f->state_dir, junk_disk[i]);
                OK(mkdir_p(p, 0700, &e_));
        }
        for (size_t i = 0; i < ARRAY_SIZE(junk_run); i++) {
                _cleanup_free_ char *p = xasprintf("%s/fake/%s", f->run_dir, junk_run[i]);
                put_file(p, "running\n");
        }
        expect_owned(f, ID_C "," ID_A "," ID_B);

        /* A start cut short by a crash leaves only its temp file. */
        _cleanup_free_ char *tmp_d = xasprintf("%s/fake/%s.vm.tmp", f->run_dir, ID_D);
        put_file(tmp_d, "running\n");
        expect_owned(f, ID_C "," ID_A "," ID_D "," ID_B);
        OK(f->d->ops->remove_owned(f->d, ID_D, &e_));
        assert_false(exists(tmp_d));
        expect_owned(f, ID_C "," ID_A "," ID_B);

        /* remove_owned takes away both kinds of trace. */
        OK(f->d->ops->remove_owned(f->d, ID_A, &e_));
        _cleanup_free_ char *dir_a = disk_dir(f, ID_A);
        _cleanup_free_ char *vm_a = vm_path(f, ID_A);
        assert_false(exists(dir_a));
        assert_false(exists(vm_a));
        expect_owned(f, ID_C "," ID_B);
        OK(f->d->ops->remove_owned(f->d, ID_B, &e_));
        OK(f->d->ops->remove_owned(f->d, ID_C, &e_));
        OK(f->d->ops->remove_owned(f->d, ID_C, &e_));     /* idempotent */
        expect_owned(f, "");

        /* The junk is left alone. */
        _cleanup_free_ char *j = xasprintf("%s/fake/notanid", f->state_dir);
        assert_true(exists(j));
}

static const char *const bad_ids[] = {
        "", "0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0",
        "../../../../tmp/x", "0123456789abcd/.", "..", "/etc/passwd",
};

static void test_bad_id_rejected(void **state)
{
        struct fx *f = *state;
        /* Something a bad id might point at must survive. */
        _cleanup_free_ char *victim = xasprintf("%s/victim", f->root);
        put_file(victim, "keep");
        for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
                print_message("id: '%s'\n", bad_ids[i]);
                struct bg_err *e = NULL;
                assert_int_equal(f->d->ops->remove_owned(f->d, bad_ids[i], &e), -EINVAL);
                assert_non_null(e);
                assert_non_null(strstr(e->msg, "bad id"));
                bg_err_free(e);

                e = NULL;
                f->vm.id = bad_ids[i];
                assert_int_equal(f->d->ops->prepare(f->d, &f->vm, &e), -EINVAL);
                assert_non_null(strstr(bg_err_msg(e), "bad id"));
                bg_err_free(e);

                e = NULL;
                assert_true(f->d->ops->cleanup(f->d, &f->vm, &e) < 0);
                assert_non_null(strstr(bg_err_msg(e), "bad id"));
                bg_err_free(e);
        }
        assert_true(exists(victim));
        expect_owned(f, "");
}

static bool readable(int fd, int timeout_ms)
{
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        return poll(&pf, 1, timeout_ms) > 0;
}

static void test_vm_dying_behind_the_drivers_back_is_reported(void **state)
{
        struct fx *f = *state;
        assert_non_null(f->d->ops->event_fd);
        assert_non_null(f->d->ops->drain_events);
        int fd = f->d->ops->event_fd(f->d);
        assert_true(fd >= 0);
        _cleanup_free_ char *vm = vm_path(f, ID_A);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        /* Its own start changes nothing a probe says. */
        assert_int_equal(drain_events(f, NULL), 0);
        assert_false(readable(fd, 0));

        put_file(vm, "exited 7\n");
        assert_true(readable(fd, 5000));
        struct changes c;
        assert_int_equal(drain_events(f, &c), 1);
        assert_string_equal(c.names[0], "web");
        assert_false(readable(fd, 0));
        struct driver_probe p = probe(f);
        assert_int_equal(p.vm, VM_EXITED_FAIL);
        assert_int_equal(p.exit_status, 7);
        assert_int_equal(drain_events(f, NULL), 0);

        /* The file vanishing is a change too. */
        assert_int_equal(unlink(vm), 0);
        assert_int_equal(drain_events(f, &c), 1);
        assert_string_equal(c.names[0], "web");
        assert_int_equal(probe(f).vm, VM_ABSENT);

        /* Our own stop is no news. */
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        drain_events(f, NULL);
        OK(f->d->ops->stop(f->d, &f->vm, 1000, &e_));
        assert_int_equal(drain_events(f, NULL), 0);
        assert_int_equal(probe(f).vm, VM_ABSENT);
}

static void test_new_driver_adopts_running_vms(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        _cleanup_free_ char *vm_b = vm_path(f, ID_B);
        put_file(vm_b, "exited 3\n");

        /* A restarted daemon: VMs outlive it. */
        struct driver *d2 = NULL;
        OK(driver_fake_new(f->state_dir, f->run_dir, &d2, &e_));
        struct driver_probe p = { 0 };
        OK(d2->ops->probe(d2, &f->vm, &p, &e_));
        assert_int_equal(p.vm, VM_RUNNING);
        struct driver_vm b = { .name = "db", .id = ID_B, .spec = NULL, .handles = json_object() };
        OK(d2->ops->probe(d2, &b, &p, &e_));
        assert_int_equal(p.vm, VM_EXITED_FAIL);
        assert_int_equal(p.exit_status, 3);
        /* Once probed, its name is known and later changes are reported. */
        put_file(vm_b, "exited 4\n");
        struct changes c = { 0 };
        d2->ops->drain_events(d2, on_changed, &c);
        assert_int_equal(c.n, 1);
        assert_string_equal(c.names[0], "db");
        json_decref(b.handles);
        d2->ops->free(d2);
}

/* ---- fault points ---- */

static void test_fail_once_at_prepare_before(void **state)
{
        struct fx *f = *state;
        OK(fault_configure("fail:prepare.before*1", &e_));
        _cleanup_free_ char *dir = disk_dir(f, ID_A);
        struct bg_err *e = NULL;
        assert_true(f->d->ops->prepare(f->d, &f->vm, &e) < 0);
        assert_non_null(e);
        assert_string_equal(e->msg, "injected failure at prepare.before");
        bg_err_free(e);
        assert_false(exists(dir));

        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        assert_true(exists(dir));
}

static void test_fail_mid_prepare_leaves_partial_state_that_retry_completes(void **state)
{
        struct fx *f = *state;
        OK(fault_configure("fail:prepare.mid*1", &e_));
        _cleanup_free_ char *dir = disk_dir(f, ID_A);
        _cleanup_free_ char *disk = disk_path(f, ID_A);
        struct bg_err *e = NULL;
        assert_true(f->d->ops->prepare(f->d, &f->vm, &e) < 0);
        assert_string_equal(bg_err_msg(e), "injected failure at prepare.mid");
        bg_err_free(e);
        assert_true(exists(dir));
        assert_false(exists(disk));
        /* The half-made VM is still found by GC. */
        expect_owned(f, ID_A);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        assert_true(exists(disk));
}

static void test_die_start_makes_started_vm_exit_failed(void **state)
{
        struct fx *f = *state;
        OK(fault_configure("die:start", &e_));
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        struct driver_probe p = probe(f);
        assert_int_equal(p.vm, VM_EXITED_FAIL);
        assert_int_equal(p.exit_status, 1);
}

static void test_fault_scoped_to_one_name(void **state)
{
        struct fx *f = *state;
        OK(fault_configure("fail:prepare.before@web,die:start@db", &e_));
        struct driver_vm db = { .name = "db", .id = ID_B, .spec = f->vm.spec, .handles = json_object() };

        /* web: prepare fails (no count: every time); db prepares fine. */
        for (int i = 0; i < 2; i++) {
                struct bg_err *e = NULL;
                assert_true(f->d->ops->prepare(f->d, &f->vm, &e) < 0);
                assert_string_equal(bg_err_msg(e), "injected failure at prepare.before");
                bg_err_free(e);
        }
        OK(f->d->ops->prepare(f->d, &db, &e_));

        /* db dies on start; a web VM (with a disk made by hand) would not. */
        OK(f->d->ops->start(f->d, &db, &e_));
        struct driver_probe p = { 0 };
        OK(f->d->ops->probe(f->d, &db, &p, &e_));
        assert_int_equal(p.vm, VM_EXITED_FAIL);

        OK(fault_configure("die:start@db", &e_));
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        assert_int_equal(probe(f).vm, VM_RUNNING);
        json_decref(db.handles);
}

static void test_fail_cleanup_mid_keeps_disk_for_retry(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *dir = disk_dir(f, ID_A);
        _cleanup_free_ char *vm = vm_path(f, ID_A);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        OK(fault_configure("fail:cleanup.mid*1", &e_));
        struct bg_err *e = NULL;
        assert_true(f->d->ops->cleanup(f->d, &f->vm, &e) < 0);
        assert_string_equal(bg_err_msg(e), "fake cleanup: injected failure at cleanup.mid");
        bg_err_free(e);
        assert_false(exists(vm));
        assert_true(exists(dir));
        OK(f->d->ops->cleanup(f->d, &f->vm, &e_));
        assert_false(exists(dir));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_names),
                T(test_new_makes_both_folders),
                T(test_new_fails_when_folder_cannot_be_made),
                T(test_prepare_makes_disk_and_is_idempotent),
                T(test_start_without_prepare_fails),
                T(test_start_stop_are_idempotent),
                T(test_cleanup_removes_everything_and_is_idempotent),
                T(test_probe_table),
                T(test_crashed_vm_starts_again),
                T(test_vm_dying_behind_the_drivers_back_is_reported),
                T(test_new_driver_adopts_running_vms),
                T(test_list_owned_finds_ids_in_both_folders),
                T(test_bad_id_rejected),
                T(test_fail_once_at_prepare_before),
                T(test_fail_mid_prepare_leaves_partial_state_that_retry_completes),
                T(test_die_start_makes_started_vm_exit_failed),
                T(test_fault_scoped_to_one_name),
                T(test_fail_cleanup_mid_keeps_disk_for_retry),
        };
#undef T
        return cmocka_run_group_tests_name("driver_fake", tests, NULL, NULL);
}
