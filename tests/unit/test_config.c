/* Unit tests for config.c: every key read, every rule refused with
 * "file:line:column: key: reason", a missing file is an empty config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "err.h"
#include "spec.h"
#include "util.h"

static char dir[] = "/tmp/banger-test-config-XXXXXX";

static int setup(void **state)
{
        (void)state;
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        (void)state;
        return rm_rf(dir, NULL);
}

/* Write text to DIR/config.yaml and load it. */
static int load_text(const char *text, struct bg_config *c, struct bg_err **err)
{
        _cleanup_free_ char *path = xasprintf("%s/config.yaml", dir);
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0600, NULL), 0);
        return config_load(path, c, err);
}

static void test_missing_file_is_an_empty_config(void **state)
{
        (void)state;
        struct bg_config c;
        struct bg_err *err = NULL;
        _cleanup_free_ char *path = xasprintf("%s/nope.yaml", dir);
        assert_int_equal(config_load(path, &c, &err), 0);
        assert_null(err);
        assert_null(c.default_image);
        assert_null(c.bridge);
        assert_int_equal(c.vm_defaults.vcpu, 0);
        config_release(&c);
}

static void test_empty_files_are_empty_configs(void **state)
{
        (void)state;
        const char *texts[] = { "", "# only a comment\n", "---\n", "~\n" };
        for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
                struct bg_config c;
                assert_int_equal(load_text(texts[i], &c, NULL), 0);
                assert_null(c.log_level);
                config_release(&c);
        }
}

static void test_every_key_is_read(void **state)
{
        (void)state;
        struct bg_config c;
        struct bg_err *err = NULL;
        int rc = load_text("default_image: debian-bookworm\n"
                           "ssh_key_path: ~/.ssh/banger\n"
                           "firecracker_bin: /usr/local/bin/firecracker\n"
                           "qemu_bin: qemu-system-x86_64\n"
                           "bridge: br-dev0\n"
                           "subnet: 10.20.0.0/16\n"
                           "vm_defaults:\n  vcpu: 4\n  memory_mib: 4096\n  disk_size: 20G\n"
                           "log_level: debug\n"
                           "file_sync:\n"
                           "  - {host: ~/.gitconfig, guest: ~/.gitconfig}\n"
                           "  - {host: /etc/hosts, guest: /root/etc/hosts, mode: '0644'}\n",
                           &c, &err);
        if (rc < 0)
                print_error("%s\n", bg_err_msg(err));
        assert_int_equal(rc, 0);
        assert_string_equal(c.default_image, "debian-bookworm");
        assert_string_equal(c.ssh_key_path, "~/.ssh/banger");
        assert_string_equal(c.firecracker_bin, "/usr/local/bin/firecracker");
        assert_string_equal(c.qemu_bin, "qemu-system-x86_64");
        assert_string_equal(c.bridge, "br-dev0");
        assert_string_equal(c.subnet, "10.20.0.0/16");
        assert_int_equal(c.vm_defaults.vcpu, 4);
        assert_int_equal(c.vm_defaults.memory_mib, 4096);
        assert_int_equal(c.vm_defaults.disk_size, 20ULL << 30);
        assert_string_equal(c.log_level, "debug");
        assert_int_equal(c.n_file_sync, 2);
        assert_string_equal(c.file_sync[0].host, "~/.gitconfig");
        assert_string_equal(c.file_sync[0].guest, "~/.gitconfig");
        assert_int_equal(c.file_sync[0].mode, 0600);
        assert_false(c.file_sync[0].mode_set);
        assert_string_equal(c.file_sync[1].host, "/etc/hosts");
        assert_string_equal(c.file_sync[1].guest, "/root/etc/hosts");
        assert_int_equal(c.file_sync[1].mode, 0644);
        assert_true(c.file_sync[1].mode_set);
        config_release(&c);
        config_release(&c); /* idempotent */
        assert_null(c.file_sync);
        assert_int_equal(c.n_file_sync, 0);

        assert_int_equal(load_text("ssh_key_path: /root/.ssh/id\nsubnet: 172.16.0.0/29\nbridge: a\n"
                                   "vm_defaults: {disk_size: 512M}\n",
                                   &c, NULL),
                         0);
        assert_string_equal(c.ssh_key_path, "/root/.ssh/id");
        assert_int_equal(c.vm_defaults.disk_size, 512ULL << 20);
        config_release(&c);
}

struct bad_config {
        const char *text;
        const char *msg;  /* the message after "DIR/config.yaml:" */
};

static const struct bad_config bad_configs[] = {
        { "fleets: []\n", "1:1: fleets: unknown field" },
        { "bridge: a\nbridge: b\n", "2:1: bridge: duplicate key" },
        { "- a\n", "1:1: config must be a mapping" },
        { "default_image: ''\n", "1:16: default_image: must not be empty" },
        { "default_image: 3\n", "1:16: default_image: must be a string" },
        { "ssh_key_path: .ssh/id\n", "1:15: ssh_key_path: must be an absolute path or start with \"~/\"" },
        { "ssh_key_path: ~user/id\n", "1:15: ssh_key_path: must be an absolute path" },
        { "firecracker_bin: ''\n", "1:18: firecracker_bin: must not be empty" },
        { "qemu_bin: [a]\n", "1:11: qemu_bin: must be a string" },
        { "bridge: ''\n", "1:9: bridge: must be an interface name" },
        { "bridge: a23456789012345x\n", "1:9: bridge: must be an interface name" },
        { "bridge: a/b\n", "1:9: bridge: must be an interface name" },
        { "bridge: 'a b'\n", "1:9: bridge: must be an interface name" },
        { "bridge: a:1\n", "1:9: bridge: must be an interface name" },
        { "bridge: ..\n", "1:9: bridge: must be an interface name" },
        { "subnet: 10.0.0.0\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.0.0.0/8\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.0.0.0/30\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.0.0.256/24\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.0.0/24\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.00.0.0/24\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.0.0.0/24x\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 10.0.0.0/024\n", "1:9: subnet: must be an IPv4 network" },
        { "subnet: 172.16.0.1/24\n", "1:9: subnet: host bits must be zero (did you mean 172.16.0.0/24?)" },
        { "vm_defaults: 2\n", "1:14: vm_defaults: must be a mapping" },
        { "vm_defaults: {vcpu: 0}\n", "1:21: vm_defaults.vcpu: must be between 1 and 32" },
        { "vm_defaults: {memory_mib: '1024'}\n", "1:27: vm_defaults.memory_mib: must be an integer" },
        { "vm_defaults: {disk_size: 8GB}\n", "1:26: vm_defaults.disk_size: must be a size like 8G or 512M" },
        { "vm_defaults: {cpus: 2}\n", "1:15: vm_defaults.cpus: unknown field" },
        { "log_level: verbose\n", "1:12: log_level: must be one of: debug, info, warn, error" },
        { "log_level: &l info\n", "1:12: log_level: anchors and aliases are not allowed" },
        { "log_level: !!str info\n", "1:12: log_level: tags are not allowed" },
        { "bridge: a\n---\nbridge: b\n", "3:1: config must be a single document" },
        { "bridge: [a\n", "2:1: did not find expected ',' or ']' while parsing a flow sequence" },
        /* file_sync: the rules of spec.file_sync, named from the top */
        { "file_sync: {}\n", "1:12: file_sync: must be a sequence" },
        { "file_sync: [x]\n", "1:13: file_sync[0]: must be a mapping" },
        { "file_sync: [{guest: ~/a}]\n", "1:13: file_sync[0].host: required" },
        { "file_sync: [{host: a}]\n", "1:13: file_sync[0].guest: required" },
        { "file_sync: [{host: '', guest: ~/a}]\n", "1:20: file_sync[0].host: must not be empty" },
        { "file_sync: [{host: a, guest: /etc/a}]\n",
          "1:30: file_sync[0].guest: must start with \"~/\" or \"/root/\"" },
        { "file_sync: [{host: a, guest: ~/x/../y}]\n", "1:30: file_sync[0].guest: must not contain '..' components" },
        { "file_sync: [{host: a, guest: ~/a, mode: 0644}]\n",
          "1:41: file_sync[0].mode: must be a quoted string like \"0644\"" },
        { "file_sync: [{host: a, guest: ~/a, mode: '0800'}]\n", "1:41: file_sync[0].mode: must be an octal mode" },
        { "file_sync: [{host: a, guest: ~/a, owner: me}]\n", "1:35: file_sync[0].owner: unknown field" },
        { "file_sync:\n  - {host: a, guest: ~/a}\n  - {host: b, guest: c}\n",
          "3:22: file_sync[1].guest: must start with" },
        /* the first problem in file order is the one reported */
        { "log_level: x\nbridge: ''\n", "1:12: log_level: must be one of" },
};

static void test_every_bad_config_is_refused_with_its_location(void **state)
{
        (void)state;
        size_t failed = 0;
        for (size_t i = 0; i < ARRAY_SIZE(bad_configs); i++) {
                struct bg_config c;
                struct bg_err *err = NULL;
                _cleanup_free_ char *want = xasprintf("%s/config.yaml:%s", dir, bad_configs[i].msg);
                int rc = load_text(bad_configs[i].text, &c, &err);
                if (rc != -EINVAL || !str_has_prefix(bg_err_msg(err), want)) {
                        print_error("case %zu: rc %d, got '%s'\n  want '%s'\n", i, rc, bg_err_msg(err), want);
                        failed++;
                }
                /* a refused config leaves nothing behind */
                assert_null(c.bridge);
                assert_null(c.log_level);
                bg_err_free(err);
        }
        assert_int_equal(failed, 0);
}

static void test_too_many_file_sync_entries_are_refused(void **state)
{
        (void)state;
        char *text = xstrdup("file_sync:\n");
        for (int i = 0; i <= SPEC_MAX_FILE_SYNC; i++) {
                char *more = xasprintf("%s  - {host: ~/f%d, guest: ~/f%d}\n", text, i, i);
                free(text);
                text = more;
        }
        struct bg_config c;
        struct bg_err *err = NULL;
        assert_int_equal(load_text(text, &c, &err), -EINVAL);
        _cleanup_free_ char *want = xasprintf("%s/config.yaml:2:3: file_sync: at most %d entries", dir,
                                              SPEC_MAX_FILE_SYNC);
        assert_string_equal(bg_err_msg(err), want);
        assert_null(c.file_sync);
        bg_err_free(err);
        free(text);
}

static void test_unreadable_and_oversized_files_are_errors(void **state)
{
        (void)state;
        struct bg_config c;
        struct bg_err *err = NULL;
        assert_int_equal(config_load(dir, &c, &err), -EINVAL);
        assert_non_null(strstr(bg_err_msg(err), "not a regular file"));
        bg_err_free(err);
        err = NULL;

        size_t len = (1 << 20) + 1;
        char *big = xmalloc(len + 1);
        memset(big, '#', len);
        big[len] = '\0';
        assert_int_equal(load_text(big, &c, &err), -EFBIG);
        assert_non_null(strstr(bg_err_msg(err), "file is larger than 1048576 bytes"));
        bg_err_free(err);
        free(big);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_file_is_an_empty_config),
                cmocka_unit_test(test_empty_files_are_empty_configs),
                cmocka_unit_test(test_every_key_is_read),
                cmocka_unit_test(test_every_bad_config_is_refused_with_its_location),
                cmocka_unit_test(test_too_many_file_sync_entries_are_refused),
                cmocka_unit_test(test_unreadable_and_oversized_files_are_errors),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
