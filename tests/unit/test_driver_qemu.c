/* driver_qemu: every operation against a stand-in QEMU (a small Python
 * script that takes QEMU's command line, writes the console, serves QMP on
 * the relative socket and behaves as FAKE_QEMU_MODE says), so the driver's
 * process handling, QMP use, adoption and GC are tested without a guest.
 * Real guests are booted by the e2e suite.  Disks and catalog entries are
 * real (mkfs.ext4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "driver.h"
#include "driver_qemu.h"
#include "err.h"
#include "log.h"
#include "spec.h"
#include "util.h"
#include "vmm.h"

#define ID_A "0123456789abcdef"
#define ID_B "00000000deadbeef"

static const char fake_qemu[] =
        "#!/usr/bin/python3\n"
        "import json, os, socket, sys, time\n"
        "mode = os.environ.get('FAKE_QEMU_MODE', 'ok')\n"
        "args = sys.argv[1:]\n"
        "if mode == 'fail':\n"
        "    sys.stderr.write('qemu-system-x86_64: -drive id=root: Could not open the disk\\n')\n"
        "    sys.exit(1)\n"
        "qmp = args[args.index('-qmp') + 1].split(',')[0][len('unix:'):]\n"
        "con = [a for a in args if a.startswith('file,id=con,')][0]\n"
        "con = [p[5:] for p in con.split(',') if p.startswith('path=')][0]\n"
        "with open(con, 'a') as f: f.write('fake console line\\n')\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(qmp); s.listen(4)\n"
        "if mode == 'exit3': s.settimeout(0.3)\n"
        "while True:\n"
        "    try: c, _ = s.accept()\n"
        "    except socket.timeout: sys.exit(3)\n"
        "    c.sendall(b'{\"QMP\": {\"version\": {}, \"capabilities\": []}}\\r\\n')\n"
        "    for line in c.makefile():\n"
        "        cmd = json.loads(line)['execute']\n"
        "        c.sendall(b'{\"event\": \"NOISE\"}\\r\\n{\"return\": {}}\\r\\n')\n"
        "        if cmd == 'system_powerdown' and mode == 'ok': sys.exit(0)\n"
        "        if cmd == 'quit' and mode != 'stubborn': sys.exit(0)\n"
        "    c.close()\n";

static const char spec_yaml[] =
        "apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: web\n"
        "spec:\n  image: tiny\n  kernel: default\n  vcpu: 1\n  memory_mib: 256\n  disk_size: 1G\n";

struct fx {
        char root[64];
        char *state, *run, *user_key;
        struct bg_config cfg;
        struct driver_env env;
        struct spec_file *file;
        struct driver *d;
        struct driver_vm vm;
        int persisted;
        char *persisted_cmdline;
};

static void put(const char *path, const char *data, unsigned mode)
{
        struct bg_err *e = NULL;
        if (write_file_atomic(path, data, strlen(data), mode, &e) < 0)
                fail_msg("write %s: %s", path, bg_err_msg(e));
}

static int persist_cb(struct driver_vm *vm, struct bg_err **err)
{
        (void)err;
        struct fx *f = vm->persist_arg;
        f->persisted++;
        json_int_t pid = json_integer_value(json_object_get(vm->handles, "pid"));
        _cleanup_free_ char *path = xasprintf("/proc/%lld/cmdline", (long long)pid);
        free(f->persisted_cmdline);
        f->persisted_cmdline = NULL;
        read_file_limited(path, 65536, &f->persisted_cmdline, NULL, NULL);
        return 0;
}

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->root, sizeof f->root, "/tmp/bg-qemu-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        f->state = xasprintf("%s/state", f->root);
        f->run = xasprintf("%s/run", f->root);
        _cleanup_free_ char *kdir = xasprintf("%s/kernels/default", f->state);
        _cleanup_free_ char *idir = xasprintf("%s/images/tiny", f->state);
        assert_int_equal(mkdir_p(kdir, 0755, NULL), 0);
        assert_int_equal(mkdir_p(idir, 0755, NULL), 0);
        const char *kfiles[] = { "vmlinuz", "initrd.img", "kernel.json" };
        for (size_t i = 0; i < ARRAY_SIZE(kfiles); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", kdir, kfiles[i]);
                put(p, "{}", 0644);
        }
        _cleanup_free_ char *rootfs = xasprintf("%s/rootfs.ext4", idir);
        _cleanup_free_ char *meta = xasprintf("%s/image.json", idir);
        const char *mkfs[] = { "mkfs.ext4", "-q", "-F", rootfs, "32M", NULL };
        assert_int_equal(vmm_run_tool(mkfs, 30000, NULL, NULL, NULL), 0);
        put(meta, "{}", 0644);
        _cleanup_free_ char *fq = xasprintf("%s/fake-qemu", f->root);
        put(fq, fake_qemu, 0755);
        f->cfg.qemu_bin = xstrdup(fq);
        f->user_key = xasprintf("%s/id_ed25519", f->root);
        f->env = (struct driver_env){ .state_dir = f->state, .run_dir = f->run, .cache_dir = f->root,
                                      .user_key = f->user_key, .cfg = &f->cfg };
        _cleanup_free_ char *pub = xasprintf("%s.pub", f->user_key);
        put(pub, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey banger\n", 0644);
        assert_int_equal(spec_parse_buffer("web.yaml", spec_yaml, strlen(spec_yaml), &f->file), 0);
        assert_true(spec_file_ok(f->file));
        struct bg_err *e = NULL;
        if (driver_qemu_new(&f->env, &f->d, &e) < 0)
                fail_msg("driver_qemu_new: %s", bg_err_msg(e));
        f->vm = (struct driver_vm){ .name = "web", .id = ID_A, .spec = f->file->docs[0].spec,
                                    .handles = json_object(), .persist = persist_cb, .persist_arg = f };
        setenv("FAKE_QEMU_MODE", "ok", 1);
        *state = f;
        return 0;
}

static void kill_strays(struct fx *f)
{
        struct vmm_found *found = NULL;
        size_t n = 0;
        if (vmm_scan(f->run, &found, &n, NULL) == 0)
                for (size_t i = 0; i < n; i++)
                        vmm_kill_verified(found[i].pid, found[i].start_time, f->run, 2000, NULL);
        vmm_found_free(found, n);
}

static int teardown(void **state)
{
        struct fx *f = *state;
        kill_strays(f);
        if (f->d)
                f->d->ops->free(f->d);
        json_decref(f->vm.handles);
        spec_file_free(f->file);
        rm_rf(f->root, NULL);
        free(f->state);
        free(f->run);
        free(f->user_key);
        free(f->cfg.qemu_bin);
        free(f->persisted_cmdline);
        free(f);
        return 0;
}

#define OK(call) do { \
                struct bg_err *e_ = NULL; \
                if ((call) < 0) \
                        fail_msg("%s: %s", #call, bg_err_msg(e_)); \
        } while (0)

static bool exists(const char *p)
{
        struct stat st;
        return lstat(p, &st) == 0;
}

static enum vm_observed probe(struct fx *f, int *status)
{
        struct driver_probe p;
        OK(f->d->ops->probe(f->d, &f->vm, &p, &e_));
        if (status)
                *status = p.exit_status;
        return p.vm;
}

static size_t owned_processes(struct fx *f)
{
        struct vmm_found *found = NULL;
        size_t n = 0;
        assert_int_equal(vmm_scan(f->run, &found, &n, NULL), 0);
        vmm_found_free(found, n);
        return n;
}

static void test_new_without_the_binary_is_a_clear_error(void **state)
{
        struct fx *f = *state;
        struct bg_config cfg = { .qemu_bin = (char *)"/nonexistent/qemu" };
        struct driver_env env = f->env;
        env.cfg = &cfg;
        struct driver *d = NULL;
        struct bg_err *e = NULL;
        assert_int_equal(driver_qemu_new(&env, &d, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "/nonexistent/qemu"));
        bg_err_free(e);
}

static void test_accel_info_and_hypervisor_agree(void **state)
{
        struct fx *f = *state;
        const char *accel = NULL, *why = NULL;
        assert_int_equal(qemu_accel_info(f->d, &accel, &why), 0);
        assert_true(*why);
        if (access("/dev/kvm", R_OK | W_OK) != 0) {
                assert_string_equal(accel, "tcg");
                assert_non_null(strstr(why, "/dev/kvm"));
                assert_string_equal(f->d->ops->hypervisor(f->d), "qemu/tcg");
        }
        struct driver other = { .ops = NULL };
        assert_int_equal(qemu_accel_info(&other, &accel, &why), -EINVAL);
}

static void test_prepare_without_kernel_or_image_leaves_nothing(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *dir = xasprintf("%s/vms/%s", f->state, ID_A);
        free(f->file->docs[0].spec->kernel);
        f->file->docs[0].spec->kernel = xstrdup("missing");
        struct bg_err *e = NULL;
        assert_int_equal(f->d->ops->prepare(f->d, &f->vm, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "kernel 'missing' is not imported"));
        bg_err_free(e);
        assert_false(exists(dir));
        free(f->file->docs[0].spec->kernel);
        f->file->docs[0].spec->kernel = xstrdup("default");
        free(f->file->docs[0].spec->image);
        f->file->docs[0].spec->image = xstrdup("nope");
        e = NULL;
        assert_int_equal(f->d->ops->prepare(f->d, &f->vm, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "image 'nope'"));
        bg_err_free(e);
        assert_false(exists(dir));
}

static void test_prepare_makes_both_disks_once(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        _cleanup_free_ char *meta = xasprintf("%s/vms/%s/disks.json", f->state, ID_A);
        _cleanup_free_ char *work = xasprintf("%s/vms/%s/work.ext4", f->state, ID_A);
        assert_true(exists(meta));
        _cleanup_free_ char *root = xstrdup(json_string_value(json_object_get(f->vm.handles, "root_disk")));
        assert_true(*root);
        assert_true(exists(root));
        assert_string_equal(json_string_value(json_object_get(f->vm.handles, "work_disk")), work);
        struct stat a, b;
        assert_int_equal(stat(root, &a), 0);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));   /* idempotent: nothing remade */
        assert_int_equal(stat(root, &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        const char *dbg[] = { "debugfs", "-R", "cat /.ssh/authorized_keys", work, NULL };
        _cleanup_free_ char *out = NULL;
        assert_int_equal(vmm_run_tool(dbg, 10000, &out, NULL, NULL), 0);
        assert_non_null(strstr(out, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey banger"));
}

static void test_start_persists_before_exec_and_builds_the_command_line(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        assert_int_equal(f->persisted, 1);
        assert_non_null(f->persisted_cmdline);
        assert_null(strstr(f->persisted_cmdline, "fake-qemu"));   /* not exec'd yet then */
        assert_int_equal(probe(f, NULL), VM_RUNNING);
        json_int_t pid = json_integer_value(json_object_get(f->vm.handles, "pid"));
        assert_true(pid > 0);
        assert_true(json_integer_value(json_object_get(f->vm.handles, "start_time")) > 0);
        _cleanup_free_ char *path = xasprintf("/proc/%lld/cmdline", (long long)pid);
        char *cmd = NULL;
        size_t len = 0;
        assert_int_equal(read_file_limited(path, 65536, &cmd, &len, NULL), 0);
        for (size_t i = 0; i < len; i++)
                if (!cmd[i])
                        cmd[i] = ' ';
        const char *want[] = { "-M microvm,pit=on,pic=on,rtc=on ", "-m 256 ", "-smp 1 ", "-nodefaults ",
                               "-no-reboot ", "root=/dev/vda rw banger.work=/dev/vdb banger.hostname=web banger.agent=serial panic=-1",
                               "-chardev socket,id=agent,path=agent.sock,server=on,wait=off ",
                               "virtserialport,chardev=agent,name=org.banger.agent",
                               "-serial chardev:con ", "-qmp unix:qmp.sock,server=on,wait=off", ",append=on ",
                               "virtio-blk-device,drive=root", "virtio-blk-device,drive=work" };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                if (!strstr(cmd, want[i]))
                        fail_msg("command line lacks '%s': %s", want[i], cmd);
        assert_null(strstr(cmd, "-netdev"));
        if (strstr(cmd, "-accel tcg"))
                assert_non_null(strstr(cmd, "clocksource=jiffies tsc=unstable"));
        free(cmd);
        _cleanup_free_ char *con = xasprintf("%s/vms/%s/console.log", f->run, ID_A);
        _cleanup_free_ char *text = NULL;
        assert_int_equal(read_file_limited(con, 4096, &text, NULL, NULL), 0);
        assert_string_equal(text, "fake console line\n");
        OK(f->d->ops->start(f->d, &f->vm, &e_));   /* idempotent */
        assert_int_equal(f->persisted, 1);
        assert_int_equal(owned_processes(f), 1);
}

static void test_start_failure_shows_qemu_log_and_leaves_nothing_running(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        setenv("FAKE_QEMU_MODE", "fail", 1);
        struct bg_err *e = NULL;
        assert_true(f->d->ops->start(f->d, &f->vm, &e) < 0);
        assert_non_null(strstr(bg_err_msg(e), "qemu exited at start (status 1)"));
        assert_non_null(strstr(bg_err_msg(e), "Could not open the disk"));
        bg_err_free(e);
        assert_int_equal(probe(f, NULL), VM_ABSENT);
        assert_null(json_object_get(f->vm.handles, "pid"));
        assert_int_equal(owned_processes(f), 0);
        /* A later good start works, and its error text does not repeat the old log. */
        setenv("FAKE_QEMU_MODE", "ok", 1);
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        assert_int_equal(probe(f, NULL), VM_RUNNING);
}

static void test_start_without_prepare_fails(void **state)
{
        struct fx *f = *state;
        struct bg_err *e = NULL;
        assert_int_equal(f->d->ops->start(f->d, &f->vm, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "not prepared"));
        bg_err_free(e);
}

static void stop_case(struct fx *f, const char *mode, int64_t max_ms)
{
        setenv("FAKE_QEMU_MODE", mode, 1);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        int64_t t0 = now_mono_ms();
        OK(f->d->ops->stop(f->d, &f->vm, 300, &e_));
        if (now_mono_ms() - t0 > max_ms)
                fail_msg("stop in mode %s took %lld ms", mode, (long long)(now_mono_ms() - t0));
        assert_int_equal(probe(f, NULL), VM_ABSENT);
        assert_null(json_object_get(f->vm.handles, "pid"));
        assert_int_equal(owned_processes(f), 0);
        OK(f->d->ops->stop(f->d, &f->vm, 300, &e_));   /* idempotent */
}

static void test_stop_powerdown_then_quit_then_kill(void **state)
{
        struct fx *f = *state;
        stop_case(f, "ok", 250);          /* the guest powers off at the button */
        stop_case(f, "deaf", 3000);       /* ignores the button: quit */
        stop_case(f, "stubborn", 9000);   /* ignores quit too: SIGKILL */
}

static void test_kill(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        OK(f->d->ops->kill(f->d, &f->vm, &e_));
        assert_int_equal(probe(f, NULL), VM_ABSENT);
        assert_int_equal(owned_processes(f), 0);
        OK(f->d->ops->kill(f->d, &f->vm, &e_));
}

struct changes {
        char name[64];
        int n;
};

static void on_changed(const char *name, void *arg)
{
        struct changes *c = arg;
        snprintf(c->name, sizeof c->name, "%s", name);
        c->n++;
}

static void test_vm_death_is_heard_through_the_event_fd(void **state)
{
        struct fx *f = *state;
        setenv("FAKE_QEMU_MODE", "exit3", 1);
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        struct changes c = { "", 0 };
        int64_t end = now_mono_ms() + 5000;
        while (c.n == 0 && now_mono_ms() < end) {
                struct pollfd p = { .fd = f->d->ops->event_fd(f->d), .events = POLLIN };
                if (poll(&p, 1, 100) > 0)
                        f->d->ops->drain_events(f->d, on_changed, &c);
        }
        assert_int_equal(c.n, 1);
        assert_string_equal(c.name, "web");
        int status;
        assert_int_equal(probe(f, &status), VM_EXITED_FAIL);
        assert_int_equal(status, 3);
        OK(f->d->ops->start(f->d, &f->vm, &e_));   /* a restart after a crash */
        assert_int_equal(f->persisted, 2);
}

static void test_new_driver_adopts_a_running_vm_only_when_it_checks_out(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        f->d->ops->free(f->d);   /* the daemon goes away; the VM stays */
        f->d = NULL;
        assert_int_equal(owned_processes(f), 1);
        OK(driver_qemu_new(&f->env, &f->d, &e_));
        /* Resync probes without handles: unknown means absent until handles come. */
        json_t *h = f->vm.handles;
        f->vm.handles = NULL;
        assert_int_equal(probe(f, NULL), VM_ABSENT);
        f->vm.handles = h;
        /* A wrong start time: never adopted, seen as an exit of unknown status. */
        json_t *bad = json_deep_copy(h);
        json_object_set_new(bad, "start_time", json_integer(json_integer_value(json_object_get(h, "start_time")) + 1));
        struct driver_vm other = f->vm;
        other.id = ID_B;
        other.handles = bad;
        struct driver_probe p;
        OK(f->d->ops->probe(f->d, &other, &p, &e_));
        assert_int_equal(p.vm, VM_EXITED_FAIL);
        assert_int_equal(p.exit_status, -1);
        json_decref(bad);
        /* The right handles: adopted, and stoppable. */
        assert_int_equal(probe(f, NULL), VM_RUNNING);
        setenv("FAKE_QEMU_MODE", "ok", 1);
        OK(f->d->ops->stop(f->d, &f->vm, 2000, &e_));
        assert_int_equal(owned_processes(f), 0);
}

static void test_cleanup_and_gc_remove_everything(void **state)
{
        struct fx *f = *state;
        OK(f->d->ops->prepare(f->d, &f->vm, &e_));
        OK(f->d->ops->start(f->d, &f->vm, &e_));
        /* A stray: a VM of a record that is gone (folders and a live VMM). */
        struct driver_vm stray = f->vm;
        stray.id = ID_B;
        stray.handles = json_object();
        OK(f->d->ops->prepare(f->d, &stray, &e_));
        OK(f->d->ops->start(f->d, &stray, &e_));
        json_decref(stray.handles);
        char **ids = NULL;
        size_t n = 0;
        OK(f->d->ops->list_owned(f->d, &ids, &n, &e_));
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_true(strcmp(ids[i], ID_A) == 0 || strcmp(ids[i], ID_B) == 0);
                free(ids[i]);
        }
        free(ids);
        OK(f->d->ops->remove_owned(f->d, ID_B, &e_));
        assert_int_equal(owned_processes(f), 1);
        OK(f->d->ops->cleanup(f->d, &f->vm, &e_));
        OK(f->d->ops->cleanup(f->d, &f->vm, &e_));   /* idempotent */
        assert_int_equal(owned_processes(f), 0);
        OK(f->d->ops->list_owned(f->d, &ids, &n, &e_));
        assert_int_equal(n, 0);
        free(ids);
        assert_int_equal(probe(f, NULL), VM_ABSENT);
        struct bg_err *e = NULL;
        assert_int_equal(f->d->ops->remove_owned(f->d, "../../etc", &e), -EINVAL);
        bg_err_free(e);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        log_threshold = LOGL_WARN;
        const struct CMUnitTest tests[] = {
                T(test_new_without_the_binary_is_a_clear_error),
                T(test_accel_info_and_hypervisor_agree),
                T(test_prepare_without_kernel_or_image_leaves_nothing),
                T(test_prepare_makes_both_disks_once),
                T(test_start_persists_before_exec_and_builds_the_command_line),
                T(test_start_failure_shows_qemu_log_and_leaves_nothing_running),
                T(test_start_without_prepare_fails),
                T(test_stop_powerdown_then_quit_then_kill),
                T(test_kill),
                T(test_vm_death_is_heard_through_the_event_fd),
                T(test_new_driver_adopts_a_running_vm_only_when_it_checks_out),
                T(test_cleanup_and_gc_remove_everything),
        };
#undef T
        return cmocka_run_group_tests_name("driver_qemu", tests, NULL, NULL);
}
