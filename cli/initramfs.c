/* initramfs: see initramfs.h.  The /init script below is the whole of
 * the guest's early boot; it keeps to busybox applets and never waits
 * without a limit. */
#include "initramfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "err.h"
#include "kmod.h"
#include "util.h"

#define BUSYBOX_MAX (16u << 20)
#define AGENT_MAX (8u << 20)
#define MODULE_LIST "lib/modules/banger.modules"

/* The guest agent's channel drivers come right after the bus, so /init can
 * start the agent before the disks and the network are even probed. */
static const char *const wanted[] = {
        "virtio_mmio", "virtio_console", "vmw_vsock_virtio_transport", "virtio_pci", "virtio_blk",
        "virtio_net", "button", "evdev", "ext4",
};
static const bool optional[] = { false, false, false, false, false, false, false, false, true };

void initramfs_wanted(const char *const **names, const bool **opt, size_t *n)
{
        *names = wanted;
        *opt = optional;
        *n = ARRAY_SIZE(wanted);
}

static const char init_script[] =
        "#!/bin/busybox sh\n"
        "# banger initramfs: load the guest's drivers, find the root disk, set the\n"
        "# network up from the kernel command line, switch_root.  Never hangs:\n"
        "# any failure prints one line and powers the VM off.\n"
        "export PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"
        "fail() {\n"
        "\techo \"banger-init: $*\"\n"
        "\tsync\n"
        "\tpoweroff -f\n"
        "\texit 1\n"
        "}\n"
        "/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /newroot /tmp\n"
        "/bin/busybox mount -t proc proc /proc || { echo 'banger-init: mount /proc'; /bin/busybox poweroff -f; }\n"
        "/bin/busybox --install -s || { echo 'banger-init: busybox --install'; /bin/busybox poweroff -f; }\n"
        "# when /init started, in microseconds of uptime (the agent reports it)\n"
        "read -r UP _ < /proc/uptime\n"
        "T0=${UP%.*}${UP#*.}0000\n"
        "mount -t sysfs sysfs /sys || fail 'mount /sys'\n"
        "mount -t devtmpfs devtmpfs /dev || fail 'mount /dev'\n"
        "\n"
        "set -f\n"
        "ROOT=/dev/vda WORK= IP= GW= DNS= HOST= INIT=/sbin/init PROBE= AGENT=\n"
        "for arg in $(cat /proc/cmdline); do\n"
        "\tcase \"$arg\" in\n"
        "\troot=*) ROOT=${arg#root=} ;;\n"
        "\tbanger.work=*) WORK=${arg#banger.work=} ;;\n"
        "\tbanger.ip=*) IP=${arg#banger.ip=} ;;\n"
        "\tbanger.gw=*) GW=${arg#banger.gw=} ;;\n"
        "\tbanger.dns=*) DNS=${arg#banger.dns=} ;;\n"
        "\tbanger.hostname=*) HOST=${arg#banger.hostname=} ;;\n"
        "\tbanger.init=*) INIT=${arg#banger.init=} ;;\n"
        "\tbanger.probe=1) PROBE=1 ;;\n"
        "\tbanger.agent=serial) AGENT=--serial ;;\n"
        "\tbanger.agent=vsock:*) AGENT=\"--vsock ${arg#banger.agent=vsock:}\" ;;\n"
        "\tesac\n"
        "done\n"
        "set +f\n"
        "\n"
        "# the guest agent (docs/agent-protocol.md) starts as soon as its channel's\n"
        "# driver is in: it says hello at once, holds requests until it is moved\n"
        "# into the root filesystem below, and lives on after switch_root\n"
        "APID=\n"
        "start_agent() {\n"
        "\t[ -n \"$AGENT\" ] && [ -z \"$APID\" ] || return 0\n"
        "\tif ! mkfifo /run/banger-agent.ack || ! exec 3<>/run/banger-agent.ack; then\n"
        "\t\techo 'banger-init warning: no fifo for the guest agent'\n"
        "\t\tAGENT=\n"
        "\t\treturn 0\n"
        "\tfi\n"
        "\t/bin/banger-agent $AGENT --chroot /newroot --ack /run/banger-agent.ack --init-us \"$T0\" &\n"
        "\tAPID=$!\n"
        "}\n"
        "\n"
        "# dependencies first; a module the kernel already has is skipped\n"
        "while read -r m; do\n"
        "\t[ -n \"$m\" ] || continue\n"
        "\t[ -d \"/sys/module/$m\" ] || insmod \"/lib/modules/$m.ko\" || echo \"banger-init warning: insmod $m failed\"\n"
        "\tcase \"$AGENT:$m\" in\n"
        "\t--serial:virtio_console|--vsock*:vmw_vsock_virtio_transport) [ -n \"$PROBE\" ] || start_agent ;;\n"
        "\tesac\n"
        "done < /" MODULE_LIST "\n"
        "[ -n \"$PROBE\" ] || start_agent   # its driver is built in\n"
        "\n"
        "if [ -n \"$PROBE\" ]; then\n"
        "\techo banger-probe-ok\n"
        "\tpoweroff -f\n"
        "\texit 0\n"
        "fi\n"
        "\n"
        "ip link set lo up\n"
        "if [ -n \"$IP\" ]; then\n"
        "\tn=0\n"
        "\twhile [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done\n"
        "\tip addr add \"$IP\" dev eth0 || fail \"ip addr add $IP dev eth0\"\n"
        "\tip link set eth0 up || fail 'ip link set eth0 up'\n"
        "\tif [ -n \"$GW\" ]; then ip route add default via \"$GW\" || fail \"ip route add default via $GW\"; fi\n"
        "fi\n"
        "if [ -n \"$HOST\" ]; then hostname \"$HOST\" || fail \"hostname $HOST\"; fi\n"
        "\n"
        "# waitdev SPEC: print the block device SPEC names once it exists (10 s)\n"
        "waitdev() {\n"
        "\tn=0\n"
        "\twhile [ $n -lt 100 ]; do\n"
        "\t\tcase \"$1\" in\n"
        "\t\tLABEL=*|UUID=*) d=$(findfs \"$1\" 2>/dev/null) ;;\n"
        "\t\t*) d=$1 ;;\n"
        "\t\tesac\n"
        "\t\tif [ -n \"$d\" ] && [ -b \"$d\" ]; then echo \"$d\"; return 0; fi\n"
        "\t\tusleep 100000\n"
        "\t\tn=$((n + 1))\n"
        "\tdone\n"
        "\treturn 1\n"
        "}\n"
        "dev=$(waitdev \"$ROOT\") || fail \"root device $ROOT did not appear within 10 s\"\n"
        "mount -o rw \"$dev\" /newroot || fail \"mount root device $ROOT\"\n"
        "if [ -n \"$WORK\" ]; then\n"
        "\twdev=$(waitdev \"$WORK\") || fail \"work device $WORK did not appear within 10 s\"\n"
        "\tmkdir -p /newroot/root || fail 'mkdir /root in the root filesystem'\n"
        "\tmount -o rw \"$wdev\" /newroot/root || fail \"mount work device $WORK at /root\"\n"
        "fi\n"
        "if [ -n \"$DNS\" ]; then\n"
        "\trm -f /newroot/etc/resolv.conf\n"
        "\tfor s in $(echo \"$DNS\" | tr , ' '); do echo \"nameserver $s\"; done > /newroot/etc/resolv.conf ||\n"
        "\t\tfail 'write /etc/resolv.conf'\n"
        "fi\n"
        "if [ -n \"$HOST\" ]; then echo \"$HOST\" > /newroot/etc/hostname || fail 'write /etc/hostname'; fi\n"
        "[ -e \"/newroot$INIT\" ] || [ -L \"/newroot$INIT\" ] || fail \"no $INIT in the root filesystem\"\n"
        "mkdir -p /newroot/dev /newroot/proc /newroot/sys\n"
        "mount --move /dev /newroot/dev || fail 'move /dev into the root filesystem'\n"
        "# /proc and /sys move along too (as initramfs-tools does): the agent runs\n"
        "# before the image's init and reads /proc; every init takes them mounted\n"
        "mount --move /sys /newroot/sys || umount /sys\n"
        "mount --move /proc /newroot/proc || umount /proc\n"
        "if [ -n \"$APID\" ]; then\n"
        "\tkill -USR1 \"$APID\" && read -t 5 ok <&3 ||\n"
        "\t\techo 'banger-init warning: the guest agent did not move into the root filesystem'\n"
        "\texec 3<&-\n"
        "fi\n"
        "exec switch_root /newroot \"$INIT\"\n"
        "echo \"banger-init: switch_root to $INIT\"\n"
        "poweroff -f\n";

/* e_phoff/e_phnum of the ELF at fd: is there a PT_INTERP? 1 yes, 0 no, -1 not ELF64. */
static int has_interp(int fd)
{
        unsigned char h[64];
        if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, "\177ELF", 4) != 0 || h[4] != 2)
                return -1;
        uint64_t phoff = 0;
        for (int i = 7; i >= 0; i--)
                phoff = phoff << 8 | h[0x20 + i];
        unsigned phentsize = h[0x36] | h[0x37] << 8, phnum = h[0x38] | h[0x39] << 8;
        if (phentsize < 56 || phnum > 256)
                return -1;
        for (unsigned i = 0; i < phnum; i++) {
                unsigned char ph[4];
                if (pread(fd, ph, sizeof ph, (off_t)(phoff + (uint64_t)i * phentsize)) != (ssize_t)sizeof ph)
                        return -1;
                if ((ph[0] | ph[1] << 8 | ph[2] << 16 | (uint32_t)ph[3] << 24) == 3)   /* PT_INTERP */
                        return 1;
        }
        return 0;
}

int initramfs_busybox(char **path, struct bg_err **err)
{
        static const char *const candidates[] = { "/bin/busybox", "/usr/bin/busybox" };
        for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
                int fd = open(candidates[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                int interp = has_interp(fd);
                close(fd);
                if (interp == 0) {
                        *path = xstrdup(candidates[i]);
                        return 0;
                }
                return bg_error(err, ENOEXEC, "%s is not a statically linked busybox (apt-get install busybox-static)",
                                candidates[i]);
        }
        return bg_error(err, ENOENT, "no busybox on this host (apt-get install busybox-static)");
}

struct cpio {
        struct archive *a;
        const char *path;
        int64_t ino;
};

static int add(struct cpio *c, const char *name, unsigned mode, const void *data, size_t len, const char *link,
               dev_t rdev, struct bg_err **err)
{
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_mode(e, mode);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_ino64(e, ++c->ino);
        archive_entry_set_nlink(e, S_ISDIR(mode) ? 2 : 1);
        if (link)
                archive_entry_set_symlink(e, link);
        if (rdev)
                archive_entry_set_rdev(e, rdev);
        archive_entry_set_size(e, S_ISREG(mode) ? (la_int64_t)len : 0);
        int r = 0;
        if (archive_write_header(c->a, e) != ARCHIVE_OK)
                r = bg_error(err, EIO, "%s: %s: %s", c->path, name, archive_error_string(c->a));
        else if (S_ISREG(mode) && len && archive_write_data(c->a, data, len) != (la_ssize_t)len)
                r = bg_error(err, EIO, "%s: %s: %s", c->path, name, archive_error_string(c->a));
        archive_entry_free(e);
        return r;
}

int initramfs_agent(char **path, struct bg_err **err)
{
        const char *env = getenv("BANGER_AGENT");
        if (env && *env) {
                if (access(env, X_OK) < 0)
                        return bg_error(err, ENOENT, "BANGER_AGENT '%s' is not an executable file", env);
                *path = xstrdup(env);
                return 0;
        }
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        const char *const rel[] = { "banger-agent", "../lib/banger/banger-agent" };
                        for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
                                char *p = xasprintf("%s/%s", self, rel[i]);
                                if (access(p, X_OK) == 0) {
                                        *path = p;
                                        return 0;
                                }
                                free(p);
                        }
                }
        }
        return bg_error(err, ENOENT, "no banger-agent beside the banger binary or in ../lib/banger "
                        "(build it with make, or set BANGER_AGENT)");
}

int initramfs_write(const char *path, const char *busybox, struct kmod *const *mods, size_t n, struct bg_err **err)
{
        static const char *const dirs[] = { "bin", "dev", "etc", "lib", "lib/modules", "newroot", "proc",
                                            "root", "run", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin" };
        _cleanup_free_ char *bb = NULL;
        size_t bb_len;
        if (read_file_limited(busybox, BUSYBOX_MAX, &bb, &bb_len, err) < 0)
                return bg_error_wrap(err, "read busybox");
        _cleanup_free_ char *agent_path = NULL, *agent = NULL;
        size_t agent_len;
        if (initramfs_agent(&agent_path, err) < 0)
                return -ENOENT;
        int fd = open(agent_path, O_RDONLY | O_CLOEXEC);
        int interp = fd >= 0 ? has_interp(fd) : -1;
        if (fd >= 0)
                close(fd);
        if (interp != 0)
                return bg_error(err, ENOEXEC, "%s is not a statically linked x86-64 program", agent_path);
        if (read_file_limited(agent_path, AGENT_MAX, &agent, &agent_len, err) < 0)
                return bg_error_wrap(err, "read banger-agent");

        struct cpio c = { .a = archive_write_new(), .path = path };
        int r = 0;
        if (archive_write_set_format_cpio_newc(c.a) != ARCHIVE_OK || archive_write_add_filter_gzip(c.a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(c.a, 1) != ARCHIVE_OK ||
            archive_write_open_filename(c.a, path) != ARCHIVE_OK) {
                r = bg_error(err, EIO, "%s: %s", path, archive_error_string(c.a));
                goto out;
        }
        for (size_t i = 0; i < ARRAY_SIZE(dirs) && r == 0; i++)
                r = add(&c, dirs[i], S_IFDIR | 0755, NULL, 0, NULL, 0, err);
        if (r == 0)   /* the kernel opens it for /init's stdio before anything is mounted */
                r = add(&c, "dev/console", S_IFCHR | 0600, NULL, 0, NULL, makedev(5, 1), err);
        if (r == 0)
                r = add(&c, "bin/busybox", S_IFREG | 0755, bb, bb_len, NULL, 0, err);
        if (r == 0)
                r = add(&c, "bin/sh", S_IFLNK | 0777, NULL, 0, "busybox", 0, err);
        if (r == 0)
                r = add(&c, "bin/banger-agent", S_IFREG | 0755, agent, agent_len, NULL, 0, err);
        if (r == 0)
                r = add(&c, "init", S_IFREG | 0755, init_script, strlen(init_script), NULL, 0, err);

        char *list = xstrdup("");
        for (size_t i = 0; i < n && r == 0; i++) {
                _cleanup_free_ char *name = xasprintf("lib/modules/%s.ko", mods[i]->name);
                r = add(&c, name, S_IFREG | 0644, mods[i]->data, mods[i]->len, NULL, 0, err);
                char *l = xasprintf("%s%s\n", list, mods[i]->name);
                free(list);
                list = l;
        }
        if (r == 0)
                r = add(&c, MODULE_LIST, S_IFREG | 0644, list, strlen(list), NULL, 0, err);
        free(list);
        if (r == 0 && archive_write_close(c.a) != ARCHIVE_OK)
                r = bg_error(err, EIO, "%s: %s", path, archive_error_string(c.a));
out:
        archive_write_free(c.a);
        if (r < 0)
                unlink(path);
        return r;
}
