/* disk: root disks by every method this filesystem allows, checked from
 * the guest's side (the filesystem inside, read with e2fsprogs and
 * qemu-img).  Failures must leave nothing at dest and no temp file beside
 * it.  Work disks are test_workdisk.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "disk.h"
#include "err.h"
#include "util.h"
#include "vmm.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define HELLO "hello from the image\n"

struct fx {
        char root[64];
        char *image;      /* ROOT/images/tiny/rootfs.ext4, 64 MiB ext4 holding /hello */
        char *vmdir;      /* ROOT/vms/x */
};

static char *run(const char *const *argv)
{
        char *out = NULL;
        struct bg_err *e = NULL;
        if (vmm_run_tool(argv, 60000, &out, NULL, &e) < 0)
                fail_msg("%s: %s", argv[0], bg_err_msg(e));
        return out;
}

static void write_all(const char *path, const char *data)
{
        struct bg_err *e = NULL;
        if (write_file_atomic(path, data, strlen(data), 0644, &e) < 0)
                fail_msg("write %s: %s", path, bg_err_msg(e));
}

static void make_image(const char *path, const char *size, const char *content)
{
        _cleanup_free_ char *stage = xasprintf("%s.stage", path);
        _cleanup_free_ char *hello = xasprintf("%s/hello", stage);
        assert_int_equal(mkdir_p(stage, 0755, NULL), 0);
        write_all(hello, content);
        const char *argv[] = { "mkfs.ext4", "-q", "-F", "-b", "4096", "-d", stage, path, size, NULL };
        free(run(argv));
        rm_rf(stage, NULL);
}

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->root, sizeof f->root, "/tmp/bg-disk-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        _cleanup_free_ char *idir = xasprintf("%s/images/tiny", f->root);
        f->vmdir = xasprintf("%s/vms/x", f->root);
        assert_int_equal(mkdir_p(idir, 0755, NULL), 0);
        assert_int_equal(mkdir_p(f->vmdir, 0700, NULL), 0);
        f->image = xasprintf("%s/rootfs.ext4", idir);
        make_image(f->image, "64M", HELLO);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        rm_rf(f->root, NULL);
        free(f->image);
        free(f->vmdir);
        free(f);
        return 0;
}

static bool exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static uint64_t file_size(const char *path)
{
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return (uint64_t)st.st_size;
}

static uint64_t allocated(const char *path)
{
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return (uint64_t)st.st_blocks * 512;
}

/* Does this filesystem reflink?  Decides which method tests expect. */
static bool fs_reflinks(const char *dir)
{
        _cleanup_free_ char *a = xasprintf("%s/.rl-a", dir), *b = xasprintf("%s/.rl-b", dir);
        write_all(a, "x");
        int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        bool ok = ioctl(fb, FICLONE, fa) == 0;
        close(fa);
        close(fb);
        unlink(a);
        unlink(b);
        return ok;
}

/* No temp, staging or half-made file is left in dir. */
static void assert_no_leftovers(const char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".tmp-") || strstr(de->d_name, "staging") || strstr(de->d_name, ".grown"))
                        fail_msg("left over: %s/%s", dir, de->d_name);
        closedir(d);
}

/* Block count * block size of the ext4 in a raw file. */
static uint64_t fs_bytes(const char *raw)
{
        const char *argv[] = { "dumpe2fs", "-h", raw, NULL };
        _cleanup_free_ char *out = run(argv);
        char *bc = strstr(out, "Block count:"), *bs = strstr(out, "Block size:");
        assert_non_null(bc);
        assert_non_null(bs);
        return strtoull(bc + 12, NULL, 10) * strtoull(bs + 11, NULL, 10);
}

static char *debugfs(const char *img, const char *req)
{
        const char *argv[] = { "debugfs", "-R", req, img, NULL };
        return run(argv);
}

static void test_method_names(void **state)
{
        (void)state;
        assert_string_equal(disk_method_name(DISK_REFLINK), "reflink");
        assert_string_equal(disk_method_name(DISK_QCOW2), "qcow2");
        assert_string_equal(disk_method_name(DISK_SPARSE_COPY), "sparse-copy");
}

static void test_probe_method_matches_what_this_filesystem_does(void **state)
{
        struct fx *f = *state;
        bool rl = fs_reflinks(f->vmdir);
        assert_int_equal(disk_probe_method(f->vmdir, true), rl ? DISK_REFLINK : DISK_QCOW2);
        assert_int_equal(disk_probe_method(f->vmdir, false), rl ? DISK_REFLINK : DISK_SPARSE_COPY);
        assert_no_leftovers(f->vmdir);
}

static void test_raw_root_disk_is_grown_and_its_filesystem_too(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *dest = xasprintf("%s/root.raw", f->vmdir);
        enum disk_method used;
        struct bg_err *e = NULL;
        if (disk_root_create(f->image, dest, 1 * GiB, false, &used, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_int_equal(used, fs_reflinks(f->vmdir) ? DISK_REFLINK : DISK_SPARSE_COPY);
        assert_int_equal(file_size(dest), 1 * GiB);
        assert_true(allocated(dest) < 64 * MiB);          /* sparse: only the image's data */
        assert_int_equal(fs_bytes(dest), 1 * GiB);        /* the guest sees the space */
        _cleanup_free_ char *cat = debugfs(dest, "cat /hello");
        assert_non_null(strstr(cat, HELLO));
        assert_int_equal(fs_bytes(f->image), 64 * MiB);   /* the image itself is untouched */
        assert_no_leftovers(f->vmdir);
}

static void test_sparse_copy_keeps_holes_and_data(void **state)
{
        struct fx *f = *state;
        /* A file with data islands in holes; its own size, so no growth. */
        _cleanup_free_ char *src = xasprintf("%s/islands.img", f->root);
        int fd = open(src, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        const off_t at[] = { 0, 5 * MiB + 4096, 17 * MiB };
        char blk[8192];
        for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
                memset(blk, 'a' + (int)i, sizeof blk);
                assert_int_equal(pwrite(fd, blk, sizeof blk, at[i]), sizeof blk);
        }
        assert_int_equal(ftruncate(fd, 20 * MiB), 0);
        close(fd);
        _cleanup_free_ char *dest = xasprintf("%s/root.raw", f->vmdir);
        enum disk_method used;
        struct bg_err *e = NULL;
        if (disk_root_create(src, dest, 20 * MiB, false, &used, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_int_equal(file_size(dest), 20 * MiB);
        if (used == DISK_SPARSE_COPY)
                assert_true(allocated(dest) <= allocated(src));
        int a = open(src, O_RDONLY | O_CLOEXEC), b = open(dest, O_RDONLY | O_CLOEXEC);
        char x[65536], y[65536];
        for (off_t off = 0; off < (off_t)(20 * MiB); off += (off_t)sizeof x) {
                assert_int_equal(pread(a, x, sizeof x, off), sizeof x);
                assert_int_equal(pread(b, y, sizeof y, off), sizeof y);
                assert_memory_equal(x, y, sizeof x);
        }
        /* The holes are holes: the first data after the first island is the second. */
        off_t next = lseek(b, 1 * MiB, SEEK_DATA);
        assert_true(next >= 5 * (off_t)MiB && next <= 5 * (off_t)MiB + 4096);
        close(a);
        close(b);
}

static void test_qcow2_overlay_has_the_virtual_size_and_the_grown_filesystem(void **state)
{
        struct fx *f = *state;
        if (fs_reflinks(f->vmdir))
                skip();   /* reflink wins on this filesystem; qcow2 is not used */
        _cleanup_free_ char *dest = xasprintf("%s/root.qcow2", f->vmdir);
        _cleanup_free_ char *base = xasprintf("%s.base", dest);
        enum disk_method used;
        struct bg_err *e = NULL;
        if (disk_root_create(f->image, dest, 1 * GiB, true, &used, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_int_equal(used, DISK_QCOW2);
        assert_true(file_size(dest) < 1 * MiB);
        const char *info[] = { "qemu-img", "info", "--output=json", dest, NULL };
        _cleanup_free_ char *out = run(info);
        json_t *j = json_loads(out, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "format")), "qcow2");
        assert_int_equal(json_integer_value(json_object_get(j, "virtual-size")), 1 * GiB);
        assert_string_equal(json_string_value(json_object_get(j, "backing-filename")), "root.qcow2.base");
        assert_string_equal(json_string_value(json_object_get(j, "backing-filename-format")), "raw");
        json_decref(j);
        const char *check[] = { "qemu-img", "check", dest, NULL };
        free(run(check));
        /* What the guest reads: the grown filesystem with the image's files. */
        _cleanup_free_ char *flat = xasprintf("%s/flat.raw", f->root);
        const char *conv[] = { "qemu-img", "convert", "-O", "raw", dest, flat, NULL };
        free(run(conv));
        assert_int_equal(fs_bytes(flat), 1 * GiB);
        _cleanup_free_ char *cat = debugfs(flat, "cat /hello");
        assert_non_null(strstr(cat, HELLO));
        assert_no_leftovers(f->vmdir);
}

static void test_qcow2_sizes_are_flat_and_share_one_base_per_size(void **state)
{
        struct fx *f = *state;
        if (fs_reflinks(f->vmdir))
                skip();
        const uint64_t sizes[] = { 1 * GiB, 64 * GiB, 64 * GiB };
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                _cleanup_free_ char *dest = xasprintf("%s/root%zu.qcow2", f->vmdir, i);
                enum disk_method used;
                struct bg_err *e = NULL;
                if (disk_root_create(f->image, dest, sizes[i], true, &used, &e) < 0)
                        fail_msg("%s", bg_err_msg(e));
                const char *info[] = { "qemu-img", "info", "--output=json", dest, NULL };
                _cleanup_free_ char *out = run(info);
                json_t *j = json_loads(out, 0, NULL);
                assert_int_equal(json_integer_value(json_object_get(j, "virtual-size")), sizes[i]);
                json_decref(j);
        }
        /* Both 64 GiB disks link the same base; the 1 GiB one has its own. */
        _cleanup_free_ char *b1 = xasprintf("%s/root1.qcow2.base", f->vmdir);
        _cleanup_free_ char *b2 = xasprintf("%s/root2.qcow2.base", f->vmdir);
        _cleanup_free_ char *b0 = xasprintf("%s/root0.qcow2.base", f->vmdir);
        struct stat s0, s1, s2;
        assert_int_equal(stat(b0, &s0), 0);
        assert_int_equal(stat(b1, &s1), 0);
        assert_int_equal(stat(b2, &s2), 0);
        assert_int_equal(s1.st_ino, s2.st_ino);
        assert_true(s0.st_ino != s1.st_ino);
        assert_int_equal(s1.st_nlink, 3);   /* the cache entry and two VMs */
        assert_int_equal(fs_bytes(b1), 64 * GiB);
}

static void test_rebuilt_image_gets_a_new_base_and_old_vms_keep_theirs(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *d1 = xasprintf("%s/old.disk", f->vmdir);
        _cleanup_free_ char *d2 = xasprintf("%s/new.disk", f->vmdir);
        enum disk_method used;
        assert_int_equal(disk_root_create(f->image, d1, 256 * MiB, true, &used, NULL), 0);
        _cleanup_free_ char *old_view = xasprintf("%s%s", d1, used == DISK_QCOW2 ? ".base" : "");
        unlink(f->image);
        make_image(f->image, "64M", "rebuilt\n");
        assert_int_equal(disk_root_create(f->image, d2, 256 * MiB, true, &used, NULL), 0);
        _cleanup_free_ char *new_view = xasprintf("%s%s", d2, used == DISK_QCOW2 ? ".base" : "");
        _cleanup_free_ char *c1 = debugfs(old_view, "cat /hello");
        _cleanup_free_ char *c2 = debugfs(new_view, "cat /hello");
        assert_non_null(strstr(c1, HELLO));
        assert_non_null(strstr(c2, "rebuilt"));
        /* The cache holds only the new image's base. */
        _cleanup_free_ char *cache = xasprintf("%s/images/tiny/.banger-grown", f->root);
        DIR *d = opendir(cache);
        assert_non_null(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        assert_int_equal(n, 1);
}

static void test_smaller_size_never_shrinks_the_image(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *dest = xasprintf("%s/root.raw", f->vmdir);
        assert_int_equal(disk_root_create(f->image, dest, 1 * MiB, false, NULL, NULL), 0);
        assert_int_equal(file_size(dest), 64 * MiB);
        assert_int_equal(fs_bytes(dest), 64 * MiB);
}

static void test_failure_leaves_nothing_at_dest(void **state)
{
        struct fx *f = *state;
        /* Not an ext4: growing it fails in resize2fs. */
        _cleanup_free_ char *junk = xasprintf("%s/junk.img", f->root);
        write_all(junk, "this is no filesystem\n");
        for (int q = 0; q < 2; q++) {
                _cleanup_free_ char *dest = xasprintf("%s/root.disk", f->vmdir);
                _cleanup_free_ char *base = xasprintf("%s.base", dest);
                write_all(dest, "stale");   /* an earlier attempt's file goes too */
                struct bg_err *e = NULL;
                assert_true(disk_root_create(junk, dest, 1 * GiB, q, NULL, &e) < 0);
                assert_non_null(strstr(bg_err_msg(e), "resize2fs"));
                bg_err_free(e);
                assert_false(exists(dest));
                assert_false(exists(base));
                e = NULL;
                _cleanup_free_ char *missing = xasprintf("%s/nope.ext4", f->root);
                assert_int_equal(disk_root_create(missing, dest, 1 * GiB, q, NULL, &e), -ENOENT);
                assert_non_null(strstr(bg_err_msg(e), "nope.ext4"));
                bg_err_free(e);
                assert_false(exists(dest));
        }
        assert_no_leftovers(f->vmdir);
        _cleanup_free_ char *cache = xasprintf("%s/.banger-grown", f->root);
        assert_no_leftovers(exists(cache) ? cache : f->root);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_method_names),
                T(test_probe_method_matches_what_this_filesystem_does),
                T(test_raw_root_disk_is_grown_and_its_filesystem_too),
                T(test_sparse_copy_keeps_holes_and_data),
                T(test_qcow2_overlay_has_the_virtual_size_and_the_grown_filesystem),
                T(test_qcow2_sizes_are_flat_and_share_one_base_per_size),
                T(test_rebuilt_image_gets_a_new_base_and_old_vms_keep_theirs),
                T(test_smaller_size_never_shrinks_the_image),
                T(test_failure_leaves_nothing_at_dest),
        };
#undef T
        return cmocka_run_group_tests_name("disk", tests, NULL, NULL);
}
