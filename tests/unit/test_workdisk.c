/* workdisk: the work disk as the guest sees it (read back with debugfs):
 * banger's keys with sshd's modes, file_sync copies and the workspace, all
 * owned by root; and every refusal (outside home, relative, missing,
 * banger's own paths, too large, unreadable by the owner) leaving nothing
 * at dest.  When run as root (as `make unit` does) the owner is nobody
 * (65534), so every read goes through the switched file-system identity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "spec.h"
#include "util.h"
#include "vmm.h"
#include "workdisk.h"

#define MiB (1ULL << 20)
#define HDR "apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: web\n"
#define NOBODY 65534

struct fx {
        char root[64];
        char *home;        /* ROOT/home, the owner's */
        char *outside;     /* ROOT/outside, not in home */
        char *vmdir;       /* ROOT/state/vms/x: root's, 0700, as in bangerd */
        char *dest;        /* VMDIR/work.ext4 */
        struct workdisk_owner owner;
};

static bool as_root(void) { return geteuid() == 0; }

static char *run(const char *const *argv)
{
        char *out = NULL;
        struct bg_err *e = NULL;
        if (vmm_run_tool(argv, 60000, &out, NULL, &e) < 0)
                fail_msg("%s: %s", argv[0], bg_err_msg(e));
        return out;
}

static char *debugfs(const char *img, const char *req)
{
        const char *argv[] = { "debugfs", "-R", req, img, NULL };
        return run(argv);
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

/* Make path (and its folders) hold data with mode, owned by uid. */
static void put_as(const char *path, const char *data, unsigned mode, uid_t uid)
{
        _cleanup_free_ char *tmp = xstrdup(path);
        char *slash = strrchr(tmp, '/');
        *slash = '\0';
        assert_int_equal(mkdir_p(tmp, 0755, NULL), 0);
        struct bg_err *e = NULL;
        if (write_file_atomic(path, data, strlen(data), mode, &e) < 0)
                fail_msg("write %s: %s", path, bg_err_msg(e));
        assert_int_equal(chmod(path, mode), 0);
        if (as_root())
                assert_int_equal(lchown(path, uid, uid), 0);
}

/* A file of the owner's. */
static void put(struct fx *f, const char *rel, const char *data, unsigned mode)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", f->home, rel);
        put_as(p, data, mode, f->owner.uid);
}

static void give(struct fx *f, const char *path)
{
        if (!as_root())
                return;
        _cleanup_free_ char *cmd = xasprintf("chown -R %u:%u '%s'", (unsigned)f->owner.uid,
                                             (unsigned)f->owner.gid, path);
        assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->root, sizeof f->root, "/tmp/bg-workdisk-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        assert_int_equal(chmod(f->root, 0755), 0);   /* nobody must reach its home */
        f->home = xasprintf("%s/home", f->root);
        f->outside = xasprintf("%s/outside", f->root);
        f->vmdir = xasprintf("%s/state/vms/x", f->root);
        f->dest = xasprintf("%s/work.ext4", f->vmdir);
        assert_int_equal(mkdir_p(f->home, 0755, NULL), 0);
        assert_int_equal(mkdir_p(f->outside, 0755, NULL), 0);
        assert_int_equal(mkdir_p(f->vmdir, 0700, NULL), 0);
        _cleanup_free_ char *state_dir = xasprintf("%s/state", f->root);
        assert_int_equal(chmod(state_dir, 0700), 0);
        f->owner.uid = as_root() ? NOBODY : getuid();
        f->owner.gid = as_root() ? NOBODY : getgid();
        f->owner.home = f->home;
        give(f, f->home);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        rm_rf(f->root, NULL);
        free(f->home);
        free(f->outside);
        free(f->vmdir);
        free(f->dest);
        free(f);
        return 0;
}

/* No temp or staging file is left beside dest. */
static void assert_no_leftovers(const char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".tmp-") || strstr(de->d_name, "staging"))
                        fail_msg("left over: %s/%s", dir, de->d_name);
        closedir(d);
}

/* The thread is back to root's identity and groups. */
static void assert_identity_restored(void)
{
        assert_int_equal(setfsuid((uid_t)-1), geteuid());
        assert_int_equal(setfsgid((gid_t)-1), getegid());
        if (as_root()) {
                gid_t g[64];
                int n = getgroups(64, g);
                bool nobody = false;
                for (int i = 0; i < n; i++)
                        nobody |= g[i] == NOBODY;
                assert_false(nobody);
        }
}

static struct bg_spec *parse_spec(const char *spec_body)
{
        _cleanup_free_ char *text = xasprintf(HDR "spec:\n%s", spec_body);
        struct spec_file *sf = NULL;
        spec_parse_buffer("t.yaml", text, strlen(text), &sf);
        for (size_t i = 0; sf->n_docs && i < sf->docs[0].n_errors; i++)
                print_error("%s: %s\n", sf->docs[0].errors[i].field, sf->docs[0].errors[i].reason);
        assert_true(spec_file_ok(sf));
        struct bg_spec *s = steal_pointer(&sf->docs[0].spec);
        spec_file_free(sf);
        return s;
}

/* Build f->dest from spec_body (NULL: no spec) with no keys; returns the
 * result and, on failure, the message in *msg (heap). */
static int build(struct fx *f, const char *spec_body, char **msg)
{
        struct bg_spec *s = spec_body ? parse_spec(spec_body) : NULL;
        struct workdisk_in in = { .spec = s, .owner = &f->owner };
        struct bg_err *e = NULL;
        int r = workdisk_create(f->dest, &in, &e);
        if (msg)
                *msg = r < 0 ? xstrdup(bg_err_msg(e)) : NULL;
        else if (r < 0)
                fail_msg("workdisk_create: %s", bg_err_msg(e));
        bg_err_free(e);
        spec_free(s);
        assert_identity_restored();
        assert_no_leftovers(f->vmdir);
        return r;
}

/* Build must fail with code and a message holding want; nothing at dest. */
static void refused(struct fx *f, const char *spec_body, int code, const char *want)
{
        _cleanup_free_ char *msg = NULL;
        int r = build(f, spec_body, &msg);
        if (r != -code || !msg || !strstr(msg, want))
                fail_msg("want %d '%s', got %d '%s'", -code, want, r, msg ? msg : "(ok)");
        assert_false(exists(f->dest));
}

static void assert_stat(const char *img, const char *path, const char *type, const char *mode)
{
        _cleanup_free_ char *req = xasprintf("stat %s", path);
        _cleanup_free_ char *st = debugfs(img, req);
        _cleanup_free_ char *t = xasprintf("Type: %s", type);
        _cleanup_free_ char *m = xasprintf("Mode:  %s", mode);
        /* root's; a test run by another user cannot chown */
        _cleanup_free_ char *u = strcmp(path, "/") == 0 || as_root()
                                         ? xstrdup("User:     0   Group:     0")
                                         : xasprintf("User: %5u   Group: %5u", getuid(), getgid());
        if (!strstr(st, t) || !strstr(st, m) || !strstr(st, u))
                fail_msg("%s: want %s %s root-owned, got:\n%s", path, type, mode, st);
}

static void assert_cat(const char *img, const char *path, const char *want)
{
        _cleanup_free_ char *req = xasprintf("cat %s", path);
        _cleanup_free_ char *out = debugfs(img, req);
        if (!strstr(out, want))
                fail_msg("%s: want '%s', got '%s'", path, want, out);
}

static bool in_image(const char *img, const char *dir, const char *name)
{
        _cleanup_free_ char *req = xasprintf("ls -l %s", dir);
        _cleanup_free_ char *ls = debugfs(img, req);
        _cleanup_free_ char *needle = xasprintf(" %s\n", name);
        return strstr(ls, needle) != NULL;
}

/* ---- keys ---- */

static void test_keys_only_disk_holds_banger_keys_with_strict_modes(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *key = xasprintf("%s/id_ed25519", f->root);
        _cleanup_free_ char *keys = xasprintf("%s.pub", key);
        _cleanup_free_ char *hk = xasprintf("%s/ssh_host_ed25519_key", f->root);
        put_as(keys, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey banger\n", 0644, 0);
        put_as(hk, "-----BEGIN OPENSSH PRIVATE KEY-----\nhostkey\n-----END OPENSSH PRIVATE KEY-----\n", 0600, 0);
        struct workdisk_in in = { .user_key = key, .host_key_file = hk, .owner = &f->owner };
        struct bg_err *e = NULL;
        if (workdisk_create(f->dest, &in, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_int_equal(file_size(f->dest), WORKDISK_MIN_SIZE);
        assert_stat(f->dest, "/", "directory", "0755");
        assert_stat(f->dest, "/.ssh", "directory", "0700");
        assert_stat(f->dest, "/.ssh/authorized_keys", "regular", "0600");
        assert_cat(f->dest, "/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey banger");
        assert_stat(f->dest, "/.banger", "directory", "0700");
        assert_stat(f->dest, "/.banger/ssh_host_ed25519_key", "regular", "0600");
        assert_cat(f->dest, "/.banger/ssh_host_ed25519_key", "hostkey");
        _cleanup_free_ char *label = debugfs(f->dest, "stats");
        assert_non_null(strstr(label, "banger-work"));
        assert_no_leftovers(f->vmdir);

        /* a missing key file fails and leaves nothing, not even the old disk */
        _cleanup_free_ char *missing = xasprintf("%s/no-such-key", f->root);
        in.user_key = missing;
        assert_int_equal(workdisk_create(f->dest, &in, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "no-such-key"));
        bg_err_free(e);
        e = NULL;
        assert_false(exists(f->dest));
        assert_no_leftovers(f->vmdir);

        /* a "public key" that is any other file (a configured ssh_key_path
         * aimed at a secret) is refused, and none of it reaches the disk */
        _cleanup_free_ char *other = xasprintf("%s/shadow", f->root);
        _cleanup_free_ char *other_pub = xasprintf("%s.pub", other);
        put_as(other_pub, "root:$6$secret:19000:0:99999:7:::\n", 0600, 0);
        in.user_key = other;
        assert_int_equal(workdisk_create(f->dest, &in, &e), -EINVAL);
        assert_non_null(strstr(bg_err_msg(e), "does not hold an OpenSSH public key line"));
        assert_null(strstr(bg_err_msg(e), "secret"));
        bg_err_free(e);
        e = NULL;
        assert_false(exists(f->dest));
        assert_no_leftovers(f->vmdir);
}

static void test_without_keys_or_content_the_disk_is_empty(void **state)
{
        struct fx *f = *state;
        build(f, NULL, NULL);
        assert_true(in_image(f->dest, "/", "lost+found"));
        assert_false(in_image(f->dest, "/", ".ssh"));
        assert_false(in_image(f->dest, "/", ".banger"));
        /* a spec without workspace or file_sync needs no owner */
        struct bg_spec *s = parse_spec("  vcpu: 2\n");
        struct workdisk_in in = { .spec = s };
        assert_int_equal(workdisk_create(f->dest, &in, NULL), 0);
        spec_free(s);
}

/* ---- file_sync ---- */

static void test_file_sync_copies_files_with_their_mode_owned_by_root(void **state)
{
        struct fx *f = *state;
        put(f, ".gitconfig", "[user]\n\tname = me\n", 0644);
        put(f, "bin/tool", "#!/bin/sh\necho tool\n", 0755);
        _cleanup_free_ char *spec = xasprintf("  file_sync:\n"
                                              "    - {host: ~/.gitconfig, guest: ~/.gitconfig}\n"
                                              "    - {host: %s/bin/tool, guest: /root/a/b/tool, mode: '0755'}\n"
                                              "    - {host: ~/.gitconfig, guest: ~/c//./gitconfig, mode: '0444'}\n",
                                              f->home);
        build(f, spec, NULL);
        assert_stat(f->dest, "/.gitconfig", "regular", "0600");   /* the default, not the host's 0644 */
        assert_cat(f->dest, "/.gitconfig", "name = me");
        assert_stat(f->dest, "/a", "directory", "0700");
        assert_stat(f->dest, "/a/b", "directory", "0700");
        assert_stat(f->dest, "/a/b/tool", "regular", "0755");
        assert_cat(f->dest, "/a/b/tool", "echo tool");
        assert_stat(f->dest, "/c/gitconfig", "regular", "0444");
        assert_int_equal(file_size(f->dest), WORKDISK_MIN_SIZE);
}

static void test_file_sync_copies_a_folder_whole_without_its_symlinks(void **state)
{
        struct fx *f = *state;
        put(f, "dots/vimrc", "set nu\n", 0644);
        put(f, "dots/nvim/init.lua", "-- lua\n", 0600);
        put(f, "dots/nvim/deep/er/x", "x\n", 0755);
        _cleanup_free_ char *link = xasprintf("%s/dots/link", f->home);
        assert_int_equal(symlink("vimrc", link), 0);
        _cleanup_free_ char *dirlink = xasprintf("%s/dots/nvim/up", f->home);
        assert_int_equal(symlink("..", dirlink), 0);
        _cleanup_free_ char *fifo = xasprintf("%s/dots/fifo", f->home);
        assert_int_equal(mkfifo(fifo, 0644), 0);
        give(f, f->home);
        build(f, "  file_sync:\n"
                 "    - {host: ~/dots, guest: ~/.config/dots}\n"
                 "    - {host: ~/dots/, guest: ~/ro, mode: '0444'}\n",
              NULL);
        assert_stat(f->dest, "/.config", "directory", "0700");
        assert_stat(f->dest, "/.config/dots", "directory", "0700");
        assert_stat(f->dest, "/.config/dots/vimrc", "regular", "0600");
        assert_stat(f->dest, "/.config/dots/nvim", "directory", "0700");
        assert_stat(f->dest, "/.config/dots/nvim/init.lua", "regular", "0600");
        assert_stat(f->dest, "/.config/dots/nvim/deep/er/x", "regular", "0600");
        assert_cat(f->dest, "/.config/dots/nvim/deep/er/x", "x");
        assert_false(in_image(f->dest, "/.config/dots", "link"));
        assert_false(in_image(f->dest, "/.config/dots", "fifo"));
        assert_false(in_image(f->dest, "/.config/dots/nvim", "up"));
        assert_stat(f->dest, "/ro/vimrc", "regular", "0444");
        assert_stat(f->dest, "/ro/nvim/init.lua", "regular", "0444");
}

static void test_config_file_sync_comes_first_and_the_spec_wins(void **state)
{
        struct fx *f = *state;
        put(f, "a", "from config\n", 0644);
        put(f, "b", "from spec\n", 0644);
        put(f, "c", "config only\n", 0644);
        struct spec_file_sync cfg[2] = {
                { .host = xstrdup("~/a"), .guest = xstrdup("~/x"), .mode = 0600 },
                { .host = xstrdup("~/c"), .guest = xstrdup("~/y"), .mode = 0640, .mode_set = true },
        };
        struct bg_spec *s = parse_spec("  file_sync: [{host: ~/b, guest: ~/x, mode: '0644'}]\n");
        struct workdisk_in in = { .spec = s, .config_sync = cfg, .n_config_sync = 2, .owner = &f->owner };
        struct bg_err *e = NULL;
        if (workdisk_create(f->dest, &in, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_cat(f->dest, "/x", "from spec");
        assert_stat(f->dest, "/x", "regular", "0644");
        assert_cat(f->dest, "/y", "config only");
        assert_stat(f->dest, "/y", "regular", "0640");

        /* config entries are named as such in errors */
        free(cfg[1].host);
        cfg[1].host = xstrdup("~/nope");
        assert_int_equal(workdisk_create(f->dest, &in, &e), -ENOENT);
        assert_non_null(strstr(bg_err_msg(e), "config file_sync[1].host '~/nope': does not exist"));
        bg_err_free(e);
        assert_false(exists(f->dest));
        for (int i = 0; i < 2; i++) {
                free(cfg[i].host);
                free(cfg[i].guest);
        }
        spec_free(s);
        assert_identity_restored();
}

static void test_host_paths_resolve_inside_home_only(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *secret = xasprintf("%s/secret", f->outside);
        put_as(secret, "outside\n", 0644, 0);
        put(f, "real", "inside\n", 0644);
        _cleanup_free_ char *out_link = xasprintf("%s/link-out", f->home);
        _cleanup_free_ char *in_link = xasprintf("%s/link-in", f->home);
        _cleanup_free_ char *dir_link = xasprintf("%s/dir-out", f->home);
        assert_int_equal(symlink(secret, out_link), 0);
        assert_int_equal(symlink("real", in_link), 0);
        assert_int_equal(symlink(f->outside, dir_link), 0);

        _cleanup_free_ char *abs = xasprintf("  file_sync: [{host: %s, guest: ~/s}]\n", secret);
        refused(f, abs, EPERM, "spec.file_sync[0].host '");
        refused(f, abs, EPERM, "': outside the home folder");
        refused(f, "  file_sync: [{host: ~/link-out, guest: ~/s}]\n", EPERM,
                "spec.file_sync[0].host '~/link-out': outside the home folder");
        refused(f, "  file_sync: [{host: ~/dir-out/secret, guest: ~/s}]\n", EPERM, "outside the home folder");
        refused(f, "  file_sync: [{host: ~/../outside/secret, guest: ~/s}]\n", EPERM, "outside the home folder");
        refused(f, "  file_sync: [{host: ~/dir-out, guest: ~/s}]\n", EPERM, "outside the home folder");

        /* a symlink whose target stays in home is followed */
        build(f, "  file_sync: [{host: ~/link-in, guest: ~/s}]\n", NULL);
        assert_stat(f->dest, "/s", "regular", "0600");
        assert_cat(f->dest, "/s", "inside");
        /* so is an absolute path inside home, and home itself */
        _cleanup_free_ char *whole = xasprintf("  file_sync: [{host: %s/real, guest: ~/r}, {host: '~', guest: ~/h}]\n",
                                               f->home);
        build(f, whole, NULL);
        assert_cat(f->dest, "/r", "inside");
        assert_cat(f->dest, "/h/real", "inside");
        assert_false(in_image(f->dest, "/h", "link-out"));
}

static void test_relative_and_missing_host_paths_are_refused(void **state)
{
        struct fx *f = *state;
        refused(f, "  file_sync: [{host: .gitconfig, guest: ~/g}]\n", EINVAL,
                "work disk '");
        refused(f, "  file_sync: [{host: .gitconfig, guest: ~/g}]\n", EINVAL,
                "spec.file_sync[0].host '.gitconfig': must be absolute or start with \"~/\"");
        refused(f, "  file_sync: [{host: ~user/x, guest: ~/g}]\n", EINVAL, "must be absolute");
        refused(f, "  file_sync: [{host: ~/nope, guest: ~/g}]\n", ENOENT,
                "spec.file_sync[0].host '~/nope': does not exist");
        _cleanup_free_ char *missing = xasprintf("  file_sync: [{host: %s/gone/x, guest: ~/g}]\n", f->home);
        refused(f, missing, ENOENT, "/gone/x': does not exist");
        /* a file cannot become the home folder itself */
        put(f, "f", "f\n", 0644);
        refused(f, "  file_sync: [{host: ~/f, guest: ~/}]\n", EISDIR, "cannot replace the home folder");
}

static void test_guest_paths_banger_manages_are_refused(void **state)
{
        struct fx *f = *state;
        put(f, "k", "ssh-ed25519 AAAA evil\n", 0644);
        put(f, "ssh/authorized_keys", "ssh-ed25519 AAAA evil\n", 0644);
        put(f, "ssh/config", "Host *\n", 0644);
        put(f, "b/.banger/x", "x\n", 0644);
        const char *bad[] = { "~/.banger", "~/.banger/ssh_host_ed25519_key", "/root/.banger/x",
                              "~/.ssh/authorized_keys", "/root/.ssh//authorized_keys", "~/./.banger" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                _cleanup_free_ char *spec = xasprintf("  file_sync: [{host: ~/k, guest: \"%s\"}]\n", bad[i]);
                refused(f, spec, EPERM, "spec.file_sync[0].guest '");
                refused(f, spec, EPERM, "': banger manages ~/");
        }
        /* nor through a folder */
        refused(f, "  file_sync: [{host: ~/ssh, guest: ~/.ssh}]\n", EPERM,
                "would replace banger's ~/.ssh/authorized_keys");
        refused(f, "  file_sync: [{host: ~/b, guest: ~/}]\n", EPERM, "would replace banger's ~/.banger");

        /* the rest of ~/.ssh is the user's, beside banger's key */
        _cleanup_free_ char *key = xasprintf("%s/id", f->root);
        _cleanup_free_ char *keys = xasprintf("%s.pub", key);
        put_as(keys, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey banger\n", 0644, 0);
        struct bg_spec *s = parse_spec("  file_sync: [{host: ~/ssh/config, guest: ~/.ssh/config}]\n");
        struct workdisk_in in = { .user_key = key, .spec = s, .owner = &f->owner };
        struct bg_err *e = NULL;
        if (workdisk_create(f->dest, &in, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_stat(f->dest, "/.ssh", "directory", "0700");
        assert_cat(f->dest, "/.ssh/config", "Host *");
        assert_cat(f->dest, "/.ssh/authorized_keys", "banger");
        spec_free(s);
}

static void test_content_larger_than_disk_size_is_refused_and_leaves_nothing(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *big = xasprintf("%s/big", f->home);
        int fd = open(big, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        char block[4096];
        memset(block, 'x', sizeof block);
        for (int i = 0; i < 768; i++)   /* 3 MiB */
                assert_int_equal(write(fd, block, sizeof block), (ssize_t)sizeof block);
        close(fd);
        give(f, big);
        put_as(f->dest, "stale", 0600, 0);
        refused(f, "  disk_size: 2M\n  file_sync: [{host: ~/big, guest: ~/big}]\n", EFBIG,
                "workspace and file_sync need at least 3 MiB, more than disk_size 2 MiB");
        /* small files whose inodes cost more than disk_size: the final count */
        for (int i = 0; i < 300; i++) {
                _cleanup_free_ char *rel = xasprintf("many/f%d", i);
                put(f, rel, "x", 0644);
        }
        refused(f, "  disk_size: 1M\n  file_sync: [{host: ~/many, guest: ~/many}]\n", EFBIG,
                "workspace and file_sync need 2 MiB, more than disk_size 1 MiB");
        /* and when it fits, it is built */
        build(f, "  disk_size: 4M\n  file_sync: [{host: ~/big, guest: ~/big}]\n", NULL);
        assert_int_equal(file_size(f->dest), WORKDISK_MIN_SIZE);
}

static void test_the_disk_grows_with_its_content(void **state)
{
        struct fx *f = *state;
        /* a sparse 1200 MiB file: its size counts, its holes cost nothing */
        _cleanup_free_ char *big = xasprintf("%s/sparse", f->home);
        int fd = open(big, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "end", 3, (off_t)(1200 * MiB - 3)), 3);
        close(fd);
        give(f, big);
        build(f, "  file_sync: [{host: ~/sparse, guest: ~/sparse}]\n", NULL);
        /* (1200 MiB + 4 KiB) * 5/4 + 64 MiB, rounded up to MiB */
        assert_int_equal(file_size(f->dest), 1565 * MiB);
        _cleanup_free_ char *st = debugfs(f->dest, "stat /sparse");
        assert_non_null(strstr(st, "Size: 1258291200"));
}

/* ---- the owner's rights ---- */

static void test_files_are_read_with_the_owner_rights(void **state)
{
        struct fx *f = *state;
        if (!as_root())
                skip();
        _cleanup_free_ char *closed = xasprintf("%s/root-only", f->home);
        _cleanup_free_ char *group = xasprintf("%s/root-group", f->home);
        _cleanup_free_ char *open_ = xasprintf("%s/root-public", f->home);
        put_as(closed, "root secret\n", 0600, 0);
        put_as(group, "root group secret\n", 0640, 0);
        put_as(open_, "public\n", 0644, 0);
        refused(f, "  file_sync: [{host: ~/root-only, guest: ~/x}]\n", EACCES,
                "spec.file_sync[0].host '~/root-only': Permission denied");
        /* root's own groups do not come along either */
        refused(f, "  file_sync: [{host: ~/root-group, guest: ~/x}]\n", EACCES, "Permission denied");
        build(f, "  file_sync: [{host: ~/root-public, guest: ~/x}]\n", NULL);
        assert_cat(f->dest, "/x", "public");
        assert_stat(f->dest, "/x", "regular", "0600");

        /* inside a folder too */
        _cleanup_free_ char *inner = xasprintf("%s/d/secret", f->home);
        put(f, "d/ok", "ok\n", 0644);
        put_as(inner, "no\n", 0600, 0);
        refused(f, "  file_sync: [{host: ~/d, guest: ~/d}]\n", EACCES, "/d/secret': Permission denied");

        /* a home nobody cannot search */
        _cleanup_free_ char *locked = xasprintf("%s/locked", f->home);
        put(f, "locked/x", "x\n", 0644);
        assert_int_equal(chown(locked, 0, 0), 0);
        assert_int_equal(chmod(locked, 0700), 0);
        refused(f, "  file_sync: [{host: ~/locked/x, guest: ~/x}]\n", EACCES, "Permission denied");
}

/* ---- workspace ---- */

static void git(const char *repo, const char *args)
{
        _cleanup_free_ char *cmd = xasprintf("cd '%s' && GIT_CONFIG_NOSYSTEM=1 HOME='%s' git -c safe.directory='*' -c user.name=t "
                                             "-c user.email=t@t -c init.defaultBranch=main %s >/dev/null 2>&1",
                                             repo, repo, args);
        if (system(cmd) != 0)
                fail_msg("git %s failed in %s", args, repo);
}

static void make_repo(struct fx *f)
{
        put(f, "proj/README", "hello\n", 0644);
        put(f, "proj/src/main.c", "int main(void) { return 0; }\n", 0644);
        put(f, "proj/.gitignore", "*.o\n", 0644);
        _cleanup_free_ char *repo = xasprintf("%s/proj", f->home);
        git(repo, "init -q");
        git(repo, "add -A");
        git(repo, "commit -q -m first");
        put(f, "proj/notes.txt", "untracked\n", 0644);
        put(f, "proj/main.o", "ignored\n", 0644);
        give(f, repo);
}

static void test_workspace_lands_at_its_name_as_a_real_repository(void **state)
{
        struct fx *f = *state;
        make_repo(f);
        build(f, "  workspace: {path: ~/proj}\n  file_sync: [{host: ~/proj/README, guest: ~/proj/COPY}]\n", NULL);
        assert_stat(f->dest, "/proj", "directory", "0755");
        assert_cat(f->dest, "/proj/README", "hello");
        assert_cat(f->dest, "/proj/src/main.c", "int main");
        assert_stat(f->dest, "/proj/README", "regular", "0644");
        assert_stat(f->dest, "/proj/.git", "directory", "0755");
        assert_cat(f->dest, "/proj/.git/HEAD", "ref: refs/heads/main");
        assert_false(in_image(f->dest, "/proj", "notes.txt"));
        assert_false(in_image(f->dest, "/proj", "main.o"));
        assert_cat(f->dest, "/proj/COPY", "hello");   /* file_sync comes after the workspace */
        assert_stat(f->dest, "/proj/.git/config", "regular", "0644");
}

static void test_workspace_branch_and_untracked_files(void **state)
{
        struct fx *f = *state;
        make_repo(f);
        _cleanup_free_ char *spec = xasprintf("  workspace: {path: %s/proj/src, branch: feature/x, "
                                              "include_untracked: true}\n",
                                              f->home);
        build(f, spec, NULL);
        assert_cat(f->dest, "/proj/.git/HEAD", "ref: refs/heads/feature/x");
        assert_cat(f->dest, "/proj/notes.txt", "untracked");
        assert_false(in_image(f->dest, "/proj", "main.o"));
        /* the host repository is left alone */
        _cleanup_free_ char *head = xasprintf("%s/proj/.git/HEAD", f->home);
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(read_file_limited(head, 4096, &text, &len, NULL), 0);
        assert_non_null(strstr(text, "refs/heads/main"));
        free(text);
}

/* The --branch helper, as workdisk_create runs it, on a staged copy whose
 * .git is hostile: it names a working tree elsewhere (a folder anyone may
 * write, so only the helper's confinement can keep the checkout out). */
static int branch_helper(struct fx *f, const char *staging, const char *from)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);   /* a shell's would be the shell */
        assert_true(n > 0);
        self[n] = '\0';
        _cleanup_free_ char *cmd = xasprintf("'%s' --workspace-branch '%s' proj b %s %u %u >/dev/null 2>&1", self,
                                             staging, from, (unsigned)f->owner.uid, (unsigned)f->owner.gid);
        int ws = system(cmd);
        return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128;
}

static void test_the_branch_helper_stays_in_the_copy_whatever_its_git_says(void **state)
{
        struct fx *f = *state;
        make_repo(f);
        _cleanup_free_ char *repo = xasprintf("%s/proj", f->home);
        git(repo, "checkout -q -b other");
        put(f, "proj/evil.txt", "written by the checkout\n", 0644);
        git(repo, "add evil.txt");
        git(repo, "commit -q -m evil");
        git(repo, "checkout -q main");
        give(f, repo);

        _cleanup_free_ char *victim = xasprintf("%s/victim", f->outside);
        assert_int_equal(mkdir(victim, 0777), 0);
        assert_int_equal(chmod(victim, 0777), 0);
        for (int hostile = 0; hostile < 2; hostile++) {
                _cleanup_free_ char *staging = xasprintf("%s/.work-staging-%d", f->vmdir, hostile);
                _cleanup_free_ char *cp = xasprintf("mkdir -p '%s' && cp -a '%s' '%s/' && chown %u:%u '%s'", staging,
                                                    repo, staging, (unsigned)f->owner.uid, (unsigned)f->owner.gid,
                                                    staging);
                assert_int_equal(system(cp), 0);
                if (hostile) {
                        _cleanup_free_ char *cfg = xasprintf("git config -f '%s/proj/.git/config' core.worktree '%s'",
                                                             staging, victim);
                        assert_int_equal(system(cfg), 0);
                }
                int rc = branch_helper(f, staging, "other");
                _cleanup_free_ char *in_copy = xasprintf("%s/proj/evil.txt", staging);
                _cleanup_free_ char *in_victim = xasprintf("%s/evil.txt", victim);
                if (!hostile) {   /* the control: the same checkout does write */
                        assert_int_equal(rc, 0);
                        assert_true(exists(in_copy));
                } else {
                        assert_int_equal(rc, 1);
                        assert_false(exists(in_copy));
                }
                assert_false(exists(in_victim));
                rm_rf(staging, NULL);
        }
}

static void test_workspace_errors_leave_nothing(void **state)
{
        struct fx *f = *state;
        make_repo(f);
        put(f, "plain/x", "x\n", 0644);
        refused(f, "  workspace: {path: proj}\n", EINVAL,
                "spec.workspace.path 'proj': must be absolute or start with \"~/\"");
        refused(f, "  workspace: {path: ~/nope}\n", ENOENT, "nope");
        refused(f, "  workspace: {path: ~/plain}\n", EINVAL, "not a git repository");
        refused(f, "  workspace: {path: ~/proj, branch: main}\n", EEXIST, "already exists");
        refused(f, "  workspace: {path: ~/proj, branch: b, from: nosuch}\n", EINVAL, "nosuch");
        /* untracked 2 MiB: counted from the list, before anything is copied */
        _cleanup_free_ char *big = xasprintf("%s/proj/big.bin", f->home);
        int fd = open(big, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "x", 1, (off_t)(2 * MiB - 1)), 1);
        close(fd);
        give(f, big);
        build(f, "  disk_size: 1M\n  workspace: {path: ~/proj}\n", NULL);
        refused(f, "  disk_size: 1M\n  workspace: {path: ~/proj, include_untracked: true}\n", EFBIG,
                "workspace and file_sync need at least 3 MiB, more than disk_size 1 MiB");
}

int main(int argc, char **argv)
{
        workdisk_branch_main(argc, argv);   /* the --branch helper runs this binary again */
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_keys_only_disk_holds_banger_keys_with_strict_modes),
                T(test_without_keys_or_content_the_disk_is_empty),
                T(test_file_sync_copies_files_with_their_mode_owned_by_root),
                T(test_file_sync_copies_a_folder_whole_without_its_symlinks),
                T(test_config_file_sync_comes_first_and_the_spec_wins),
                T(test_host_paths_resolve_inside_home_only),
                T(test_relative_and_missing_host_paths_are_refused),
                T(test_guest_paths_banger_manages_are_refused),
                T(test_content_larger_than_disk_size_is_refused_and_leaves_nothing),
                T(test_the_disk_grows_with_its_content),
                T(test_files_are_read_with_the_owner_rights),
                T(test_workspace_lands_at_its_name_as_a_real_repository),
                T(test_workspace_branch_and_untracked_files),
                T(test_workspace_errors_leave_nothing),
                T(test_the_branch_helper_stays_in_the_copy_whatever_its_git_says),
        };
#undef T
        return cmocka_run_group_tests_name("workdisk", tests, NULL, NULL);
}
