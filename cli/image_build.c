/* image_build: see image_build.h. */
#include "image_build.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "err.h"
#include "paths.h"
#include "spawn.h"
#include "util.h"

#define MIN_SIZE (16ull << 20)
#define MAX_SIZE (2ull << 40)

static const struct image_recipe *const recipes[] = { &image_recipe_tiny, &image_recipe_debian };

const struct image_recipe *image_recipe_find(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(recipes); i++)
                if (strcmp(recipes[i]->name, name) == 0)
                        return recipes[i];
        return NULL;
}

const char *image_recipe_names(void)
{
        return "tiny, debian-bookworm";
}

int image_parse_size(const char *s, uint64_t *out)
{
        char *end;
        errno = 0;
        if (!*s || *s == '-' || *s == '+')
                return -1;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -1;
        unsigned shift = 0;
        switch (*end) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case 't': case 'T': shift = 40; end++; break;
        default: break;
        }
        if (shift && *end == 'i')
                end++;
        if (*end == 'B' || (shift && *end == 'b'))
                end++;
        if (*end || v > (~0ull >> shift))
                return -1;
        *out = (uint64_t)v << shift;
        return 0;
}

void image_format_size(uint64_t b, char *buf, size_t len)
{
        static const char units[] = "KMGT";
        for (int i = 3; i >= 0; i--) {
                uint64_t u = 1ull << (10 * (i + 1));
                if (b >= u && b % (u / 2) == 0) {   /* whole or half units read well */
                        if (b % u == 0)
                                snprintf(buf, len, "%llu%c", (unsigned long long)(b / u), units[i]);
                        else
                                snprintf(buf, len, "%llu.5%c", (unsigned long long)(b / u), units[i]);
                        return;
                }
        }
        snprintf(buf, len, "%lluB", (unsigned long long)b);
}

/* root/rel, refusing ".." so a rel from elsewhere (ld.so's output) cannot
 * leave the staging folder. */
static int stage_path(const char *root, const char *rel, char **out, struct bg_err **err)
{
        while (*rel == '/')
                rel++;
        if (!*rel || strstr(rel, "..") || strstr(rel, "//"))
                return bg_error(err, EINVAL, "bad staging path '%s'", rel);
        *out = xasprintf("%s/%s", root, rel);
        return 0;
}

static int parent_dir(const char *path, struct bg_err **err)
{
        _cleanup_free_ char *d = xstrdup(path);
        char *slash = strrchr(d, '/');
        if (!slash || slash == d)
                return 0;
        *slash = '\0';
        return mkdir_p(d, 0755, err);
}

int stage_dir(const char *root, const char *rel, unsigned mode, struct bg_err **err)
{
        _cleanup_free_ char *p = NULL;
        if (stage_path(root, rel, &p, err) < 0 || mkdir_p(p, 0755, err) < 0)
                return -EIO;
        if (chmod(p, mode) < 0)
                return bg_error(err, errno, "chmod %s: %s", p, strerror(errno));
        return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
        const char *p = data;
        while (len) {
                ssize_t w = write(fd, p, len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += w;
                len -= (size_t)w;
        }
        return 0;
}

int stage_file(const char *root, const char *rel, const char *text, unsigned mode, struct bg_err **err)
{
        _cleanup_free_ char *p = NULL;
        if (stage_path(root, rel, &p, err) < 0 || parent_dir(p, err) < 0)
                return -EIO;
        unlink(p);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return bg_error(err, errno, "create %s: %s", p, strerror(errno));
        int r = 0;
        if (write_all(fd, text, strlen(text)) < 0 || fchmod(fd, mode) < 0)
                r = bg_error(err, errno, "write %s: %s", p, strerror(errno));
        close(fd);
        return r;
}

int stage_symlink(const char *root, const char *rel, const char *target, struct bg_err **err)
{
        _cleanup_free_ char *p = NULL;
        if (stage_path(root, rel, &p, err) < 0 || parent_dir(p, err) < 0)
                return -EIO;
        unlink(p);
        if (symlink(target, p) < 0)
                return bg_error(err, errno, "symlink %s: %s", p, strerror(errno));
        return 0;
}

int stage_copy(const char *root, const char *rel, const char *host, unsigned mode, struct bg_err **err)
{
        _cleanup_free_ char *p = NULL;
        if (stage_path(root, rel, &p, err) < 0 || parent_dir(p, err) < 0)
                return -EIO;
        _cleanup_close_ int in = open(host, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (in < 0 || fstat(in, &st) < 0)
                return bg_error(err, errno, "open %s: %s", host, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return bg_error(err, EINVAL, "%s is not a regular file", host);
        if (!mode)
                mode = st.st_mode & 07777;
        unlink(p);
        _cleanup_close_ int out = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return bg_error(err, errno, "create %s: %s", p, strerror(errno));
        char buf[1 << 16];
        for (;;) {
                ssize_t n = read(in, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return bg_error(err, errno, "read %s: %s", host, strerror(errno));
                if (n == 0)
                        break;
                if (write_all(out, buf, (size_t)n) < 0)
                        return bg_error(err, errno, "write %s: %s", p, strerror(errno));
        }
        if (fchmod(out, mode) < 0)
                return bg_error(err, errno, "chmod %s: %s", p, strerror(errno));
        return 0;
}

int stage_remove(const char *root, const char *rel, struct bg_err **err)
{
        _cleanup_free_ char *p = NULL;
        if (stage_path(root, rel, &p, err) < 0)
                return -EINVAL;
        return rm_rf(p, err);
}

/* Detach whatever a recipe's tool left mounted under dir (debootstrap
 * mounts /proc and /sys in its target and may die before unmounting), so
 * the folder can go.  Deepest first. */
static void umount_under(const char *dir)
{
        FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return;
        char **found = NULL;
        size_t n = 0, dlen = strlen(dir);
        char line[4096];
        while (fgets(line, sizeof line, f)) {
                char *save = NULL, *field = strtok_r(line, " ", &save);
                for (int i = 0; field && i < 4; i++)
                        field = strtok_r(NULL, " ", &save);
                if (!field || strncmp(field, dir, dlen) != 0 || field[dlen] != '/')
                        continue;
                /* mountinfo escapes space, tab, newline and backslash as \ooo */
                char *w = field;
                for (char *r = field; *r; r++) {
                        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
                                *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                                r += 3;
                        } else {
                                *w++ = *r;
                        }
                }
                *w = '\0';
                found = xreallocarray(found, n + 1, sizeof *found);
                found[n++] = xstrdup(field);
        }
        fclose(f);
        while (n) {
                size_t deepest = 0;
                for (size_t i = 1; i < n; i++)
                        if (strlen(found[i]) > strlen(found[deepest]))
                                deepest = i;
                umount2(found[deepest], MNT_DETACH);
                free(found[deepest]);
                found[deepest] = found[--n];
        }
        free(found);
}

static int mkfs(const char *staging, const char *file, uint64_t size, struct bg_err **err)
{
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return bg_error(err, errno, "create %s: %s", file, strerror(errno));
        if (ftruncate(fd, (off_t)size) < 0) {
                int e = errno;
                close(fd);
                return bg_error(err, e, "size %s: %s", file, strerror(e));
        }
        close(fd);
        _cleanup_free_ char *kib = xasprintf("%lluk", (unsigned long long)(size >> 10));
        char *argv[] = { (char *)"mkfs.ext4", (char *)"-q", (char *)"-F", (char *)"-d", (char *)staging,
                         (char *)file, kib, NULL };
        _cleanup_free_ char *prog = spawn_which("mkfs.ext4");
        if (!prog)
                return bg_error(err, ENOENT, "mkfs.ext4 is not installed (apt-get install e2fsprogs)");
        if (spawn_run(argv, NULL, NULL, err) < 0)
                return bg_error_wrap(err, "make the ext4 filesystem");
        return 0;
}

int image_build(const struct bg_paths *p, const struct image_recipe *r, const char *name, uint64_t size,
                json_t **meta, struct bg_err **err)
{
        if (!catalog_name_valid(name))
                return bg_error(err, EINVAL, "invalid image name '%s': want lowercase letters, digits, '.', '_', "
                                "'-' (at most 63, starting with a letter or digit)", name);
        if (size < MIN_SIZE || size > MAX_SIZE)
                return bg_error(err, EINVAL, "image size must be between 16M and 2T");
        _cleanup_free_ char *existing = xasprintf("%s/images/%s/image.json", p->state_dir, name);
        if (access(existing, F_OK) == 0)
                return bg_error(err, EEXIST, "image '%s' already exists (banger image rm %s first)", name, name);
        if (geteuid() != 0)
                return bg_error(err, EPERM, "building an image needs root (files in it belong to root)");

        char *dir = NULL;
        if (catalog_begin(p->state_dir, "images", name, &dir, err) < 0)
                return -EIO;
        _cleanup_free_ char *staging = xasprintf("%s/staging", dir);
        _cleanup_free_ char *rootfs = xasprintf("%s/rootfs.ext4", dir);
        char sz[32];
        image_format_size(size, sz, sizeof sz);
        int64_t t0 = now_mono_ms();
        int rc = 0;
        if (mkdir(staging, 0755) < 0 || chmod(staging, 0755) < 0) {
                rc = bg_error(err, errno, "mkdir %s: %s", staging, strerror(errno));
                goto out;
        }
        fprintf(stderr, "staging %s (recipe %s)\n", name, r->name);
        if ((rc = r->stage(staging, name, err)) < 0) {
                bg_error_wrap(err, "recipe %s", r->name);
                goto out;
        }
        if (spawn_interrupted()) {
                rc = bg_error(err, EINTR, "interrupted");
                goto out;
        }
        fprintf(stderr, "making rootfs.ext4 (%s) after %.1f s\n", sz, (double)(now_mono_ms() - t0) / 1000.0);
        if ((rc = mkfs(staging, rootfs, size, err)) < 0)
                goto out;
        umount_under(staging);
        if ((rc = rm_rf(staging, err)) < 0)
                goto out;
        char created[64];
        format_time_ms(now_wall_ms(), created, sizeof created);
        json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "name", name, "recipe", r->name, "size", (json_int_t)size,
                              "created", created);
        rc = catalog_commit(dir, "images", m, err);
        if (rc == 0 && meta)
                *meta = json_incref(m);
        json_decref(m);
out:
        if (rc < 0) {
                umount_under(staging);
                rm_rf(dir, NULL);
        }
        free(dir);
        return rc;
}
