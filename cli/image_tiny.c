/* image_tiny: the `tiny` recipe.  A root filesystem of a few megabytes
 * that boots to SSH in seconds even under TCG: the host's static busybox
 * (shell, init, acpid, ip), dropbear from dropbear-bin with the shared
 * libraries its ELF interpreter resolves, and a busybox init whose rcS
 * mounts the basics, prepares /root, starts acpid (the ACPI power button,
 * QEMU's system_powerdown, runs a clean poweroff) and dropbear (root, key
 * only; the host key banger put on the work disk, else one made on first
 * use).  rcS ends by printing "banger-tiny: ready" on the console.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "image_build.h"
#include "initramfs.h"
#include "spawn.h"
#include "util.h"

static const char *const dropbear_bins[] = { "/usr/sbin/dropbear", "/usr/bin/dropbearkey", "/usr/bin/dropbearconvert" };

static const struct {
        const char *path;
        unsigned mode;
        const char *text;
} files[] = {
        { "etc/passwd", 0644,
          "root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" },
        /* "*": no password can match, yet the account is not locked (dropbear refuses "!") */
        { "etc/shadow", 0600,
          "root:*:19000:0:99999:7:::\n"
          "nobody:*:19000:0:99999:7:::\n" },
        { "etc/group", 0644, "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n" },
        { "etc/shells", 0644, "/bin/sh\n/bin/ash\n" },
        { "etc/hosts", 0644, "127.0.0.1\tlocalhost\n::1\tlocalhost\n" },
        { "etc/nsswitch.conf", 0644, "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n" },
        { "etc/fstab", 0644, "# the root and work disks are mounted by banger's initramfs; rcS mounts the rest\n" },
        { "etc/profile", 0644,
          "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
          "export PS1='\\h:\\w\\$ '\n" },
        { "etc/banger-release", 0644, "tiny\n" },
        { "etc/inittab", 0644,
          "# banger tiny: busybox init\n"
          "::sysinit:/etc/init.d/rcS\n"
          "::shutdown:/etc/init.d/rcK\n"
          "::ctrlaltdel:/sbin/poweroff\n" },
        { "etc/init.d/rcS", 0755,
          "#!/bin/sh\n"
          "# banger tiny: the first thing init runs\n"
          "export PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"
          "mounted() { grep -q \" $1 \" /proc/mounts 2>/dev/null; }\n"
          "[ -e /proc/mounts ] || mount -t proc proc /proc\n"
          "mounted /sys || mount -t sysfs sysfs /sys\n"
          "mounted /dev || mount -t devtmpfs devtmpfs /dev\n"
          "mkdir -p /dev/pts /dev/shm\n"
          "mounted /dev/pts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts\n"
          "mounted /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp\n"
          "mounted /run || mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run\n"
          "mount -o remount,rw / 2>/dev/null\n"
          "[ \"$(hostname)\" != '(none)' ] || hostname -F /etc/hostname\n"
          "ip link set lo up\n"
          "# /root is the work disk when banger gave one; make sure ssh finds it sane\n"
          "mkdir -p /root/.ssh\n"
          "chmod 700 /root /root/.ssh\n"
          "[ ! -f /root/.ssh/authorized_keys ] || chmod 600 /root/.ssh/authorized_keys\n"
          "acpid\n"
          "mkdir -p /run/dropbear\n"
          "KEY=-R\n"
          "if [ -f /root/.banger/ssh_host_ed25519_key ]; then\n"
          "\tif dropbearconvert openssh dropbear /root/.banger/ssh_host_ed25519_key /run/dropbear/host_key "
          ">/dev/null 2>&1; then\n"
          "\t\tKEY='-r /run/dropbear/host_key'\n"
          "\t\techo 'banger-tiny: host key from /root/.banger/ssh_host_ed25519_key'\n"
          "\telse\n"
          "\t\techo 'banger-tiny: cannot read /root/.banger/ssh_host_ed25519_key; making a host key'\n"
          "\tfi\n"
          "fi\n"
          "dropbear -s -p 22 -P /run/dropbear.pid $KEY || echo 'banger-tiny: dropbear did not start'\n"
          "echo 'banger-tiny: ready'\n" },
        { "etc/init.d/rcK", 0755,
          "#!/bin/sh\n"
          "# banger tiny: what init runs on poweroff; leave the disks clean\n"
          "export PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"
          "echo 'banger-tiny: stopping'\n"
          "[ ! -f /run/dropbear.pid ] || kill \"$(cat /run/dropbear.pid)\" 2>/dev/null\n"
          "killall acpid 2>/dev/null\n"
          "sync\n"
          "umount /root 2>/dev/null || mount -o remount,ro /root 2>/dev/null\n"
          "mount -o remount,ro / 2>/dev/null\n"
          "sync\n" },
        /* busybox acpid maps the power button to the action PWRF/00000080 */
        { "etc/acpi/PWRF/00000080", 0755,
          "#!/bin/sh\n"
          "# the ACPI power button (QEMU system_powerdown)\n"
          "echo 'banger-tiny: power button' > /dev/console\n"
          "exec poweroff\n" },
};

static const struct {
        const char *path;
        unsigned mode;
} dirs[] = {
        { "dev", 0755 }, { "proc", 0555 }, { "sys", 0555 }, { "tmp", 01777 }, { "run", 0755 },
        { "root", 0700 }, { "home", 0755 }, { "mnt", 0755 }, { "var/log", 0755 }, { "etc/dropbear", 0700 },
        { "usr/local/bin", 0755 },
};

/* The ELF interpreter (PT_INTERP) of path, or NULL for a static binary. */
static int elf_interp(const char *path, char **interp, struct bg_err **err)
{
        *interp = NULL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        unsigned char h[64];
        if (fd < 0)
                return bg_error(err, errno, "open %s: %s", path, strerror(errno));
        if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, "\177ELF", 4) != 0 || h[4] != 2)
                return bg_error(err, ENOEXEC, "%s is not a 64-bit ELF program", path);
        uint64_t phoff = 0;
        for (int i = 7; i >= 0; i--)
                phoff = phoff << 8 | h[0x20 + i];
        unsigned phentsize = h[0x36] | h[0x37] << 8, phnum = h[0x38] | h[0x39] << 8;
        for (unsigned i = 0; phentsize >= 56 && i < phnum && i < 256; i++) {
                unsigned char ph[56];
                if (pread(fd, ph, sizeof ph, (off_t)(phoff + (uint64_t)i * phentsize)) != (ssize_t)sizeof ph)
                        break;
                if ((ph[0] | ph[1] << 8 | ph[2] << 16 | (uint32_t)ph[3] << 24) != 3)   /* PT_INTERP */
                        continue;
                uint64_t off = 0, size = 0;
                for (int b = 7; b >= 0; b--) {
                        off = off << 8 | ph[8 + b];
                        size = size << 8 | ph[32 + b];
                }
                if (size < 2 || size > 256)
                        break;
                char buf[257] = { 0 };
                if (pread(fd, buf, (size_t)size, (off_t)off) != (ssize_t)size || buf[0] != '/')
                        break;
                *interp = xstrndup(buf, strnlen(buf, (size_t)size));
                return 0;
        }
        return 0;
}

/* Copy bin's shared libraries (as its ELF interpreter resolves them, the
 * interpreter included) into root at the same paths. */
static int copy_libraries(const char *root, const char *bin, struct bg_err **err)
{
        _cleanup_free_ char *interp = NULL;
        if (elf_interp(bin, &interp, err) < 0)
                return -ENOEXEC;
        if (!interp)
                return 0;
        char *argv[] = { interp, (char *)"--list", (char *)bin, NULL };
        struct spawn_opts o = { .out = SPAWN_OUT_CAPTURE };
        _cleanup_free_ char *out = NULL;
        if (spawn_run(argv, &o, &out, err) < 0)
                return bg_error_wrap(err, "list the libraries of %s", bin);
        if (stage_copy(root, interp, interp, 0755, err) < 0)
                return -EIO;
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                while (*line == ' ' || *line == '\t')
                        line++;
                char *lib = strstr(line, "=> ");
                lib = lib ? lib + 3 : line;
                if (str_has_prefix(lib, "not found"))
                        return bg_error(err, ENOENT, "%s needs %s, which is not on this host", bin, line);
                if (*lib != '/')
                        continue;   /* linux-vdso.so.1 */
                lib[strcspn(lib, " \t(")] = '\0';
                if (strcmp(lib, interp) != 0 && stage_copy(root, lib, lib, 0, err) < 0)
                        return -EIO;
        }
        return 0;
}

/* /bin/busybox and a symlink to it for every applet at its usual place. */
static int stage_busybox(const char *root, struct bg_err **err)
{
        _cleanup_free_ char *bb = NULL;
        if (initramfs_busybox(&bb, err) < 0)
                return -ENOENT;
        if (stage_copy(root, "bin/busybox", bb, 0755, err) < 0)
                return -EIO;
        char *argv[] = { bb, (char *)"--list-full", NULL };
        struct spawn_opts o = { .out = SPAWN_OUT_CAPTURE };
        _cleanup_free_ char *out = NULL;
        if (spawn_run(argv, &o, &out, err) < 0)
                return bg_error_wrap(err, "list busybox's applets");
        char *save = NULL;
        size_t n = 0;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                /* linuxrc is for old-style initrds, not a root filesystem */
                if (!*line || strcmp(line, "bin/busybox") == 0 || strcmp(line, "linuxrc") == 0 || strchr(line, ' '))
                        continue;
                if (stage_symlink(root, line, "/bin/busybox", err) < 0)
                        return -EIO;
                n++;
        }
        if (n == 0)
                return bg_error(err, EINVAL, "%s --list-full named no applets", bb);
        return 0;
}

static int tiny_stage(const char *root, const char *name, struct bg_err **err)
{
        for (size_t i = 0; i < ARRAY_SIZE(dropbear_bins); i++)
                if (access(dropbear_bins[i], X_OK) < 0)
                        return bg_error(err, ENOENT, "%s is missing (apt-get install dropbear-bin)", dropbear_bins[i]);
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
                if (stage_dir(root, dirs[i].path, dirs[i].mode, err) < 0)
                        return -EIO;
        if (stage_symlink(root, "var/run", "/run", err) < 0 || stage_symlink(root, "var/tmp", "/tmp", err) < 0)
                return -EIO;
        if (stage_busybox(root, err) < 0)
                return -EIO;
        for (size_t i = 0; i < ARRAY_SIZE(dropbear_bins); i++) {
                if (stage_copy(root, dropbear_bins[i], dropbear_bins[i], 0755, err) < 0 ||
                    copy_libraries(root, dropbear_bins[i], err) < 0)
                        return -EIO;
        }
        for (size_t i = 0; i < ARRAY_SIZE(files); i++)
                if (stage_file(root, files[i].path, files[i].text, files[i].mode, err) < 0)
                        return -EIO;
        _cleanup_free_ char *hostname = xasprintf("%s\n", name);
        for (char *c = hostname; *c; c++)   /* image names may hold '_' and '.', host names not */
                if (*c == '_' || *c == '.')
                        *c = '-';
        return stage_file(root, "etc/hostname", hostname, 0644, err);
}

const struct image_recipe image_recipe_tiny = {
        .name = "tiny",
        .summary = "busybox, dropbear and acpid: a few MB, SSH in seconds",
        .default_size = 256ull << 20,
        .stage = tiny_stage,
};
