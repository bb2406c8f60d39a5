/* disk_bench: what per-VM disk provisioning costs at 1, 8 and 64 GiB.
 *
 * The image is a 512 MiB ext4 holding 96 MiB of incompressible data (a
 * small distro's worth).  For each size and method the first VM pays for
 * the shared grown base (clone + resize2fs, once per image and size); the
 * figure that matters is the per-VM cost after that, which must not grow
 * with the size.  Also the work disk (mkfs.ext4 -d).  Runs in a temp
 * folder under $TMPDIR (default /var/tmp: a real disk, not tmpfs) that it
 * removes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "disk.h"
#include "err.h"
#include "util.h"
#include "vmm.h"
#include "workdisk.h"

#define N_VMS 15

static double now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, struct bg_err *err)
{
        fprintf(stderr, "disk_bench: %s: %s\n", what, bg_err_msg(err));
        exit(1);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void make_image(const char *root, const char *image)
{
        struct bg_err *err = NULL;
        _cleanup_free_ char *stage = xasprintf("%s/stage", root);
        _cleanup_free_ char *blob = xasprintf("%s/blob", stage);
        if (mkdir_p(stage, 0755, &err) < 0)
                die("mkdir", err);
        size_t len = 96u << 20;
        char *data = xmalloc(len);
        random_bytes(data, len);
        if (write_file_atomic(blob, data, len, 0644, &err) < 0)
                die("write blob", err);
        free(data);
        const char *argv[] = { "mkfs.ext4", "-q", "-F", "-d", stage, image, "512M", NULL };
        if (vmm_run_tool(argv, 120000, NULL, NULL, &err) < 0)
                die("mkfs", err);
        rm_rf(stage, NULL);
}

static void bench_root(const char *root, const char *image, uint64_t size, bool qcow2)
{
        char label[16];
        snprintf(label, sizeof label, "%lluG", (unsigned long long)(size >> 30));
        double t[N_VMS];
        enum disk_method used = DISK_SPARSE_COPY;
        uint64_t alloc = 0;
        for (int i = 0; i < N_VMS; i++) {
                struct bg_err *err = NULL;
                _cleanup_free_ char *dir = xasprintf("%s/vms/%s-%d-%d", root, label, qcow2, i);
                _cleanup_free_ char *dest = xasprintf("%s/root", dir);
                if (mkdir_p(dir, 0700, &err) < 0)
                        die("mkdir", err);
                double t0 = now_ms();
                if (disk_root_create(image, dest, size, qcow2, &used, &err) < 0)
                        die("disk_root_create", err);
                t[i] = now_ms() - t0;
                struct stat st;
                if (i == 1 && stat(dest, &st) == 0)
                        alloc = (uint64_t)st.st_blocks * 512;
        }
        double first = t[0];
        qsort(t + 1, N_VMS - 1, sizeof t[0], cmp_double);
        printf("root  %-11s size=%-4s first_vm=%7.1f ms  per_vm: median=%6.2f ms  max=%6.2f ms  "
               "per_vm_bytes=%llu KiB\n",
               disk_method_name(used), label, first, t[1 + (N_VMS - 1) / 2], t[N_VMS - 1],
               (unsigned long long)(alloc >> 10));
}

static void bench_work(const char *root, const char *key)
{
        double t[5];
        for (int i = 0; i < 5; i++) {
                struct bg_err *err = NULL;
                _cleanup_free_ char *dest = xasprintf("%s/work-%d.ext4", root, i);
                double t0 = now_ms();
                struct workdisk_in in = { .user_key = key };
                if (workdisk_create(dest, &in, &err) < 0)
                        die("workdisk_create", err);
                t[i] = now_ms() - t0;
        }
        qsort(t, 5, sizeof t[0], cmp_double);
        printf("work  mkfs.ext4 -d size=1G    median=%6.1f ms  max=%6.1f ms\n", t[2], t[4]);
}

int main(void)
{
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *root = xasprintf("%s/bg-disk-bench-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        _cleanup_free_ char *idir = xasprintf("%s/images/bench", root);
        _cleanup_free_ char *image = xasprintf("%s/rootfs.ext4", idir);
        _cleanup_free_ char *key = xasprintf("%s/id", root);
        _cleanup_free_ char *keys = xasprintf("%s.pub", key);
        struct bg_err *err = NULL;
        if (mkdir_p(idir, 0755, &err) < 0)
                die("mkdir", err);
        make_image(root, image);
        const char *k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBen bench\n";
        if (write_file_atomic(keys, k, strlen(k), 0644, &err) < 0)
                die("write keys", err);
        printf("disk_bench: image 512 MiB ext4 with 96 MiB of data; %d VMs per row; this filesystem: %s\n",
               N_VMS, disk_method_name(disk_probe_method(root, true)));
        const uint64_t sizes[] = { 1ULL << 30, 8ULL << 30, 64ULL << 30 };
        for (int q = 1; q >= 0; q--)
                for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
                        bench_root(root, image, sizes[i], q);
        bench_work(root, key);
        rm_rf(root, NULL);
        return 0;
}
