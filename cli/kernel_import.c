/* kernel_import: see kernel_import.h.
 *
 * Reading: one pass over the package's data.tar picks up boot/vmlinuz-*,
 * lib/modules/R/modules.builtin and every module's name and dependencies.
 * Module data is kept for the modules already known to be needed and,
 * within a memory budget, for the others too, since a dependency usually
 * streams past before the module that needs it (net_failover before
 * virtio_net).  Only when that budget ran out and a needed module was
 * dropped is the package read a second time, for those modules alone.
 */
#include "kernel_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bzimage.h"
#include "catalog.h"
#include "err.h"
#include "initramfs.h"
#include "kmod.h"
#include "paths.h"
#include "spawn.h"
#include "unpack.h"
#include "util.h"

#define VMLINUZ_MAX (256u << 20)
#define MODULE_MAX (64u << 20)        /* one module, compressed or not */
#define BUILTIN_MAX (4u << 20)
#define KEEP_BUDGET (192u << 20)      /* module data held while streaming */

struct pkg {
        const char *path;       /* to open */
        const char *file;       /* its name, for messages */
        struct kmod_set mods;
        unsigned char *vmlinuz;
        size_t vmlinuz_len;
        char *vmlinuz_path;
        char *release;          /* lib/modules/<release>/ */
        size_t budget;          /* bytes of module data to hold while streaming */
        bool refill;            /* second pass: only fill needed modules' data */
        size_t missing;         /* modules the second pass still has to fill */
};

/* "lib/modules/R/rest" or "usr/lib/modules/R/rest": R and rest. */
static bool modules_path(const char *path, char **release, const char **rest)
{
        if (str_has_prefix(path, "usr/"))
                path += 4;
        if (!str_has_prefix(path, "lib/modules/"))
                return false;
        const char *r = path + strlen("lib/modules/");
        const char *slash = strchr(r, '/');
        if (!slash || slash == r)
                return false;
        *release = xstrndup(r, (size_t)(slash - r));
        *rest = slash + 1;
        return true;
}

/* The module at the current entry, uncompressed. */
static int read_module(struct archive *tar, const char *path, bool compressed, unsigned char **data, size_t *len,
                       struct bg_err **err)
{
        unsigned char *raw;
        size_t raw_len;
        if (unpack_entry_data(tar, MODULE_MAX, &raw, &raw_len, err) < 0)
                return bg_error_wrap(err, "%s", path);
        if (!compressed) {
                *data = raw;
                *len = raw_len;
                return 0;
        }
        int r = unpack_raw(raw, raw_len, MODULE_MAX, path, data, len, err);
        free(raw);
        return r;
}

static int on_module(struct pkg *k, struct archive *tar, const char *path, bool compressed, struct bg_err **err)
{
        if (k->refill) {
                for (size_t i = 0; i < k->mods.n; i++) {
                        struct kmod *m = &k->mods.mods[i];
                        if (!m->needed || m->data || !m->path || strcmp(m->path, path) != 0)
                                continue;
                        unsigned char *data;
                        size_t len;
                        if (read_module(tar, path, compressed, &data, &len, err) < 0)
                                return -EIO;
                        kmod_keep(&k->mods, m, data, len);
                        return --k->missing == 0 ? 1 : 0;
                }
                return 0;
        }
        unsigned char *data;
        size_t len;
        if (read_module(tar, path, compressed, &data, &len, err) < 0)
                return -EIO;
        char *name = NULL, **deps = NULL;
        size_t n_deps = 0;
        if (kmod_modinfo(data, len, &name, &deps, &n_deps, err) < 0) {
                free(data);
                return bg_error_wrap(err, "%s", path);
        }
        if (!name)
                name = kmod_name_of_path(path, NULL);
        struct kmod *m = kmod_add(&k->mods, name, path, deps, n_deps);
        free(name);
        if (!m->data && (m->needed || k->mods.kept + len <= k->budget))
                kmod_keep(&k->mods, m, data, len);
        else
                free(data);
        return 0;
}

static int on_entry(struct archive *tar, struct archive_entry *e, const char *path, void *arg, struct bg_err **err)
{
        struct pkg *k = arg;
        if (archive_entry_filetype(e) != AE_IFREG)
                return 0;

        if (!k->refill && str_has_prefix(path, "boot/vmlinuz-") && !strchr(path + 5, '/')) {
                if (k->vmlinuz)
                        return bg_error(err, EINVAL, "two kernels in one package (%s and %s)", k->vmlinuz_path,
                                        path);
                if (unpack_entry_data(tar, VMLINUZ_MAX, &k->vmlinuz, &k->vmlinuz_len, err) < 0)
                        return bg_error_wrap(err, "%s", path);
                k->vmlinuz_path = xstrdup(path);
                return 0;
        }

        char *release = NULL;
        const char *rest;
        if (!modules_path(path, &release, &rest))
                return 0;
        if (k->release && strcmp(k->release, release) != 0) {
                int r = bg_error(err, EINVAL, "modules of two kernels in one package (%s and %s)", k->release,
                                 release);
                free(release);
                return r;
        }
        if (!k->release)
                k->release = release;
        else
                free(release);

        if (strcmp(rest, "modules.builtin") == 0) {
                if (k->refill)
                        return 0;
                unsigned char *text;
                size_t len;
                if (unpack_entry_data(tar, BUILTIN_MAX, &text, &len, err) < 0)
                        return bg_error_wrap(err, "%s", path);
                kmod_read_builtin(&k->mods, (const char *)text, len);
                free(text);
                return 0;
        }
        bool compressed;
        _cleanup_free_ char *mname = kmod_name_of_path(rest, &compressed);
        if (!mname)
                return 0;
        return on_module(k, tar, path, compressed, err);
}

static void pkg_release(struct pkg *k)
{
        kmod_set_release(&k->mods);
        free(k->vmlinuz);
        free(k->vmlinuz_path);
        free(k->release);
}

/* Read the package and work out what goes into the initramfs: *order
 * (borrowed entries of k->mods, data present), or an error naming what
 * is missing. */
static int read_package(struct pkg *k, struct kmod ***order, size_t *n_order, struct bg_err **err)
{
        const char *const *wanted;
        const bool *optional;
        size_t n_wanted;
        initramfs_wanted(&wanted, &optional, &n_wanted);
        for (size_t i = 0; i < n_wanted; i++)
                kmod_want(&k->mods, wanted[i]);

        if (unpack_deb(k->path, on_entry, k, err) < 0)
                return bg_error_wrap(err, "%s", k->file);
        if (!k->vmlinuz)
                return bg_error(err, EINVAL, "%s holds no boot/vmlinuz-* (not a kernel package)", k->file);
        size_t off, plen;
        if (bzimage_payload(k->vmlinuz, k->vmlinuz_len, &off, &plen, err) < 0)
                return bg_error_wrap(err, "%s: %s", k->file, k->vmlinuz_path);
        const char *suffix = k->vmlinuz_path + strlen("boot/vmlinuz-");
        if (!k->release)
                k->release = xstrdup(suffix);
        else if (strcmp(k->release, suffix) != 0)
                return bg_error(err, EINVAL, "%s: kernel %s comes with modules for %s", k->file, suffix, k->release);
        if (!k->mods.have_builtin && k->mods.n == 0)
                return bg_error(err, ENOENT, "%s: no lib/modules/%s (the package has no kernel modules)", k->file,
                                k->release);

        if (kmod_order(&k->mods, wanted, optional, n_wanted, order, n_order, err) < 0)
                return bg_error_wrap(err, "%s", k->file);
        k->missing = 0;
        for (size_t i = 0; i < *n_order; i++)
                if (!(*order)[i]->data)
                        k->missing++;
        if (k->missing) {
                fprintf(stderr, "reading %s again for %zu modules\n", k->file, k->missing);
                k->refill = true;
                if (unpack_deb(k->path, on_entry, k, err) < 0)
                        return bg_error_wrap(err, "%s", k->file);
                for (size_t i = 0; i < *n_order; i++)
                        if (!(*order)[i]->data)
                                return bg_error(err, EIO, "%s: module %s vanished on the second read", k->file,
                                                (*order)[i]->name);
        }
        return 0;
}

/* The first "  Depends: linux-image-..." of pkg, or NULL. */
static int apt_kernel_dep(const char *pkg, char **dep, struct bg_err **err)
{
        char *argv[] = { (char *)"apt-cache", (char *)"depends", (char *)pkg, NULL };
        struct spawn_opts o = { .out = SPAWN_OUT_CAPTURE };
        _cleanup_free_ char *out = NULL;
        *dep = NULL;
        if (spawn_run(argv, &o, &out, err) < 0)
                return -ENOENT;
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                while (*line == ' ' || *line == '|')
                        line++;
                if (!str_has_prefix(line, "Depends: linux-image-"))
                        continue;
                char *v = line + strlen("Depends: ");
                v[strcspn(v, " \t<>")] = '\0';
                *dep = xstrdup(v);
                break;
        }
        return 0;
}

/* Follow meta packages (linux-image-cloud-amd64 -> linux-image-6.1.0-N-cloud-amd64)
 * to the package that holds a kernel; its version from apt-cache show. */
static int apt_resolve(const char *pkg, char **real, char **version, struct bg_err **err)
{
        char *cur = xstrdup(pkg);
        for (int depth = 0; depth < 4; depth++) {
                char *dep;
                if (apt_kernel_dep(cur, &dep, err) < 0) {
                        free(cur);
                        return bg_error_wrap(err, "resolve %s", pkg);
                }
                if (!dep)
                        break;
                free(cur);
                cur = dep;
        }
        char *argv[] = { (char *)"apt-cache", (char *)"show", (char *)"--no-all-versions", cur, NULL };
        struct spawn_opts o = { .out = SPAWN_OUT_CAPTURE };
        _cleanup_free_ char *out = NULL;
        if (spawn_run(argv, &o, &out, err) < 0) {
                free(cur);
                return bg_error_wrap(err, "resolve %s", pkg);
        }
        char *v = strstr(out, "\nVersion: ");
        if (!v && str_has_prefix(out, "Version: "))
                v = out - 1;
        if (!v) {
                int r = bg_error(err, ENOENT, "resolve %s: apt-cache show %s names no version", pkg, cur);
                free(cur);
                return r;
        }
        v += strlen("\nVersion: ");
        *version = xstrndup(v, strcspn(v, "\n"));
        *real = cur;
        return 0;
}

/* apt-get download pkg=version into a new folder under /var/tmp (owned by
 * _apt so the download runs sandboxed); *deb is the file, *tmp the folder
 * the caller removes. */
static int apt_download(const char *pkg, const char *version, char **tmp, char **deb, struct bg_err **err)
{
        const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
        char *dir = xasprintf("%s/banger-apt-XXXXXX", base);
        if (!mkdtemp(dir)) {
                int e = errno;
                free(dir);
                return bg_error(err, e, "mkdtemp in %s: %s", base, strerror(e));
        }
        *tmp = dir;
        struct passwd *pw = getpwnam("_apt");
        if (pw && chown(dir, pw->pw_uid, 0) < 0) {
                /* apt-get then downloads unsandboxed, and says so */
        }
        _cleanup_free_ char *spec = xasprintf("%s=%s", pkg, version);
        char *argv[] = { (char *)"apt-get", (char *)"download", (char *)"-q", spec, NULL };
        struct spawn_opts o = { .out = SPAWN_OUT_NULL, .cwd = dir };
        if (spawn_run(argv, &o, NULL, err) < 0)
                return bg_error_wrap(err, "download %s", spec);
        DIR *d = opendir(dir);
        struct dirent *de;
        *deb = NULL;
        while (d && (de = readdir(d)))
                if (str_has_suffix(de->d_name, ".deb") && !*deb)
                        *deb = xasprintf("%s/%s", dir, de->d_name);
        if (d)
                closedir(d);
        if (!*deb)
                return bg_error(err, ENOENT, "download %s: apt-get left no .deb", spec);
        return 0;
}

static int write_entry(const char *dir, struct pkg *k, struct kmod **order, size_t n_order, const char *busybox,
                       struct bg_err **err)
{
        _cleanup_free_ char *vmlinuz = xasprintf("%s/vmlinuz", dir);
        _cleanup_free_ char *vmlinux = xasprintf("%s/vmlinux", dir);
        _cleanup_free_ char *initrd = xasprintf("%s/initrd.img", dir);
        if (write_file_atomic(vmlinuz, k->vmlinuz, k->vmlinuz_len, 0644, err) < 0)
                return -EIO;
        fprintf(stderr, "writing vmlinux (uncompressed %s)\n", k->vmlinuz_path);
        if (bzimage_write_vmlinux(k->vmlinuz, k->vmlinuz_len, vmlinux, err) < 0)
                return bg_error_wrap(err, "%s", k->vmlinuz_path);
        fprintf(stderr, "writing initrd.img (busybox and %zu modules)\n", n_order);
        return initramfs_write(initrd, busybox, order, n_order, err);
}

int kernel_import(const struct bg_paths *p, const char *name, const struct kernel_source *src, json_t **meta,
                  struct bg_err **err)
{
        if (!catalog_name_valid(name))
                return bg_error(err, EINVAL, "invalid kernel name '%s': want lowercase letters, digits, '.', '_', "
                                "'-' (at most 63, starting with a letter or digit)", name);
        _cleanup_free_ char *existing = xasprintf("%s/kernels/%s/kernel.json", p->state_dir, name);
        if (access(existing, F_OK) == 0)
                return bg_error(err, EEXIST, "kernel '%s' already exists (banger kernel rm %s first)", name, name);
        _cleanup_free_ char *busybox = NULL, *agent = NULL;
        if (initramfs_busybox(&busybox, err) < 0 || initramfs_agent(&agent, err) < 0)
                return -ENOENT;

        _cleanup_free_ char *tmp = NULL, *deb = NULL, *source = NULL, *real = NULL, *version = NULL;
        int r;
        if (src->apt) {
                fprintf(stderr, "resolving %s with apt-cache\n", src->apt);
                if ((r = apt_resolve(src->apt, &real, &version, err)) < 0)
                        return r;
                fprintf(stderr, "downloading %s %s\n", real, version);
                r = apt_download(real, version, &tmp, &deb, err);
                source = xasprintf("apt:%s=%s", real, version);
        } else {
                char abs[PATH_MAX];
                if (!realpath(src->deb, abs))
                        return bg_error(err, errno, "%s: %s", src->deb, strerror(errno));
                struct stat st;
                if (stat(abs, &st) < 0 || !S_ISREG(st.st_mode))
                        return bg_error(err, EINVAL, "%s: not a regular file", src->deb);
                deb = xstrdup(abs);
                source = xasprintf("deb:%s", abs);
                r = 0;
        }

        struct pkg k = { .budget = KEEP_BUDGET };
        kmod_set_init(&k.mods);
        /* tests shrink the budget to exercise the second read */
        const char *budget = getenv("BANGER_IMPORT_KEEP_BUDGET");
        if (budget && *budget)
                k.budget = (size_t)strtoull(budget, NULL, 10);
        struct kmod **order = NULL;
        size_t n_order = 0;
        char *dir = NULL;
        if (r < 0)
                goto out;
        k.path = deb;
        k.file = strrchr(deb, '/') ? strrchr(deb, '/') + 1 : deb;
        fprintf(stderr, "reading %s\n", k.file);
        if ((r = read_package(&k, &order, &n_order, err)) < 0)
                goto out;
        if ((r = catalog_begin(p->state_dir, "kernels", name, &dir, err)) < 0)
                goto out;
        r = write_entry(dir, &k, order, n_order, busybox, err);
        if (r == 0 && spawn_interrupted())
                r = bg_error(err, EINTR, "interrupted");
        if (r == 0) {
                char created[64];
                format_time_ms(now_wall_ms(), created, sizeof created);
                json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "version", k.release, "source", source,
                                      "created", created);
                r = catalog_commit(dir, "kernels", m, err);
                if (r == 0 && meta)
                        *meta = json_incref(m);
                json_decref(m);
        }
        if (r < 0)
                rm_rf(dir, NULL);
out:
        free(dir);
        free(order);
        pkg_release(&k);
        if (tmp)
                rm_rf(tmp, NULL);
        return r;
}
