/* image_debian: the `debian-bookworm` recipe.  debootstrap (minbase, plus
 * systemd, udev, OpenSSH, iproute2, CA certificates and busybox; and dbus,
 * without which there is no logind to turn the ACPI power button, QEMU's
 * system_powerdown, into a clean poweroff) from the
 * mirror the host's apt uses, then the few changes a sandbox needs: sshd
 * for root by key only with the host key banger puts on the work disk
 * (no host keys baked into the image, so no two sandboxes share one), an
 * fstab without the disks the initramfs mounts, a fresh machine-id per
 * boot, and the kernel's interface names kept (eth0 is what the
 * initramfs configures).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "image_build.h"
#include "spawn.h"
#include "util.h"

#define SUITE "bookworm"
#define FALLBACK_MIRROR "http://deb.debian.org/debian"
#define PACKAGES "systemd-sysv,udev,dbus,openssh-server,iproute2,ca-certificates,busybox"

static const char sshd_conf[] =
        "# banger: root logs in with a key only; the host key comes from the work disk\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "AuthorizedKeysFile /root/.ssh/authorized_keys\n"
        "HostKey /root/.banger/ssh_host_ed25519_key\n";

static const char fstab[] =
        "# banger: the initramfs mounts the root disk and the work disk (/root)\n";

/* The mirror URI in one sources line or deb822 field, or NULL. */
static char *uri_in(const char *line)
{
        while (*line == ' ' || *line == '\t')
                line++;
        const char *u = NULL;
        if (str_has_prefix(line, "URIs:")) {
                u = line + 5;
        } else if (str_has_prefix(line, "deb ") || str_has_prefix(line, "deb\t")) {
                u = line + 4;
                while (*u == ' ' || *u == '\t')
                        u++;
                if (*u == '[') {   /* deb [arch=amd64 signed-by=...] URI */
                        const char *close = strchr(u, ']');
                        if (!close)
                                return NULL;
                        u = close + 1;
                }
        }
        if (!u)
                return NULL;
        while (*u == ' ' || *u == '\t')
                u++;
        size_t n = strcspn(u, " \t\r\n");
        if (n == 0)
                return NULL;
        char *uri = xstrndup(u, n);
        if ((!str_has_prefix(uri, "http://") && !str_has_prefix(uri, "https://")) || strstr(uri, "security")) {
                free(uri);
                return NULL;
        }
        return uri;
}

static char *uri_in_file(const char *path)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        char line[1024];
        char *uri = NULL;
        while (!uri && fgets(line, sizeof line, f))
                uri = uri_in(line);
        fclose(f);
        return uri;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first Debian mirror the host's apt reads (skipping security ones). */
static char *host_mirror(void)
{
        char *uri = NULL;
        DIR *d = opendir("/etc/apt/sources.list.d");
        if (d) {
                char **names = NULL;
                size_t n = 0;
                struct dirent *de;
                while ((de = readdir(d)))
                        if (str_has_suffix(de->d_name, ".sources") || str_has_suffix(de->d_name, ".list")) {
                                names = xreallocarray(names, n + 1, sizeof *names);
                                names[n++] = xasprintf("/etc/apt/sources.list.d/%s", de->d_name);
                        }
                closedir(d);
                if (n)
                        qsort(names, n, sizeof *names, cmp_str);
                for (size_t i = 0; i < n; i++) {
                        if (!uri)
                                uri = uri_in_file(names[i]);
                        free(names[i]);
                }
                free(names);
        }
        if (!uri)
                uri = uri_in_file("/etc/apt/sources.list");
        return uri ? uri : xstrdup(FALLBACK_MIRROR);
}

static int debian_stage(const char *root, const char *name, struct bg_err **err)
{
        _cleanup_free_ char *prog = spawn_which("debootstrap");
        if (!prog)
                return bg_error(err, ENOENT, "debootstrap is not installed (apt-get install debootstrap)");
        _cleanup_free_ char *mirror = host_mirror();
        fprintf(stderr, "debootstrap %s from %s (about a minute)\n", SUITE, mirror);
        char *argv[] = { (char *)"debootstrap", (char *)"--variant=minbase", (char *)"--include=" PACKAGES,
                         (char *)SUITE, (char *)root, mirror, NULL };
        struct spawn_opts o = { .out = SPAWN_OUT_STDERR, .show_stderr = true };
        if (spawn_run(argv, &o, NULL, err) < 0)
                return -EIO;

        _cleanup_free_ char *hostname = xasprintf("%s\n", name);
        for (char *c = hostname; *c; c++)
                if (*c == '_' || *c == '.')
                        *c = '-';
        DIR *d;
        _cleanup_free_ char *ssh = xasprintf("%s/etc/ssh", root);
        if ((d = opendir(ssh))) {   /* no host key may be shared by every sandbox */
                struct dirent *de;
                while ((de = readdir(d)))
                        if (str_has_prefix(de->d_name, "ssh_host_")) {
                                _cleanup_free_ char *rel = xasprintf("etc/ssh/%s", de->d_name);
                                if (stage_remove(root, rel, err) < 0) {
                                        closedir(d);
                                        return -EIO;
                                }
                        }
                closedir(d);
        }
        _cleanup_free_ char *archives = xasprintf("%s/var/cache/apt/archives", root);
        if ((d = opendir(archives))) {
                struct dirent *de;
                while ((de = readdir(d)))
                        if (str_has_suffix(de->d_name, ".deb")) {
                                _cleanup_free_ char *rel = xasprintf("var/cache/apt/archives/%s", de->d_name);
                                stage_remove(root, rel, NULL);
                        }
                closedir(d);
        }
        if (stage_file(root, "etc/ssh/sshd_config.d/banger.conf", sshd_conf, 0644, err) < 0 ||
            stage_file(root, "etc/fstab", fstab, 0644, err) < 0 ||
            stage_file(root, "etc/hostname", hostname, 0644, err) < 0 ||
            stage_file(root, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0644,
                       err) < 0 ||
            /* empty: systemd makes a new one at first boot, so sandboxes differ */
            stage_file(root, "etc/machine-id", "", 0444, err) < 0 ||
            stage_remove(root, "var/lib/dbus/machine-id", err) < 0 ||
            /* debootstrap copied the host's; the initramfs writes the guest's */
            stage_remove(root, "etc/resolv.conf", err) < 0 ||
            /* keep eth0 eth0: the initramfs configured it under that name */
            stage_symlink(root, "etc/systemd/network/99-default.link", "/dev/null", err) < 0 ||
            stage_dir(root, "root", 0700, err) < 0 ||
            stage_file(root, "etc/banger-release", "debian-bookworm\n", 0644, err) < 0)
                return -EIO;
        return 0;
}

const struct image_recipe image_recipe_debian = {
        .name = "debian-bookworm",
        .summary = "Debian 12 minbase with systemd and OpenSSH (debootstrap, about a minute)",
        .default_size = 2ull << 30,
        .stage = debian_stage,
};
