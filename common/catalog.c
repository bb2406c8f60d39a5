/* catalog: see catalog.h. */
#include "catalog.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

bool catalog_name_valid(const char *name)
{
        size_t n = strlen(name);
        if (n == 0 || n > 63 || strstr(name, ".."))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
                        return false;
        }
        return true;
}

static const char *meta_name(const char *kind)
{
        return strcmp(kind, "kernels") == 0 ? "kernel.json" : "image.json";
}

static bool exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int catalog_kernel(const char *state_dir, const char *name, struct kernel_paths *k, struct bg_err **err)
{
        memset(k, 0, sizeof *k);
        if (!catalog_name_valid(name))
                return bg_error(err, EINVAL, "invalid kernel name '%s'", name);
        k->dir = xasprintf("%s/kernels/%s", state_dir, name);
        k->vmlinuz = xasprintf("%s/vmlinuz", k->dir);
        k->vmlinux = xasprintf("%s/vmlinux", k->dir);
        k->initrd = xasprintf("%s/initrd.img", k->dir);
        k->meta = xasprintf("%s/kernel.json", k->dir);
        if (!exists(k->meta) || !exists(k->vmlinuz) || !exists(k->initrd)) {
                kernel_paths_release(k);
                return bg_error(err, ENOENT, "kernel '%s' is not imported (banger kernel import %s --apt)", name, name);
        }
        return 0;
}

void kernel_paths_release(struct kernel_paths *k)
{
        free(k->dir);
        free(k->vmlinuz);
        free(k->vmlinux);
        free(k->initrd);
        free(k->meta);
        memset(k, 0, sizeof *k);
}

int catalog_image(const char *state_dir, const char *name, char **rootfs, struct bg_err **err)
{
        if (!catalog_name_valid(name))
                return bg_error(err, EINVAL, "invalid image name '%s'", name);
        _cleanup_free_ char *meta = xasprintf("%s/images/%s/image.json", state_dir, name);
        char *path = xasprintf("%s/images/%s/rootfs.ext4", state_dir, name);
        if (!exists(meta) || !exists(path)) {
                free(path);
                return bg_error(err, ENOENT, "image '%s' is not built (banger image build %s)", name, name);
        }
        *rootfs = path;
        return 0;
}

int catalog_begin(const char *state_dir, const char *kind, const char *name, char **dir, struct bg_err **err)
{
        if (!catalog_name_valid(name))
                return bg_error(err, EINVAL, "invalid name '%s': want lowercase letters, digits, '.', '_', '-'", name);
        _cleanup_free_ char *d = xasprintf("%s/%s/%s", state_dir, kind, name);
        _cleanup_free_ char *meta = xasprintf("%s/%s", d, meta_name(kind));
        if (exists(meta))
                return bg_error(err, EEXIST, "%.*s '%s' already exists (remove it first)", (int)strlen(kind) - 1,
                                kind, name);
        if (rm_rf(d, err) < 0 || mkdir_p(d, 0755, err) < 0)
                return -EIO;
        *dir = steal_pointer(&d);
        return 0;
}

int catalog_commit(const char *dir, const char *kind, json_t *meta, struct bg_err **err)
{
        _cleanup_free_ char *path = xasprintf("%s/%s", dir, meta_name(kind));
        _cleanup_free_ char *text = json_dumps(meta, JSON_INDENT(2) | JSON_SORT_KEYS);
        _cleanup_free_ char *line = xasprintf("%s\n", text);
        return write_file_atomic(path, line, strlen(line), 0644, err);
}

int catalog_remove(const char *state_dir, const char *kind, const char *name, struct bg_err **err)
{
        if (!catalog_name_valid(name))
                return bg_error(err, EINVAL, "invalid name '%s'", name);
        _cleanup_free_ char *d = xasprintf("%s/%s/%s", state_dir, kind, name);
        struct stat st;
        if (stat(d, &st) < 0)
                return bg_error(err, ENOENT, "%.*s '%s' not found", (int)strlen(kind) - 1, kind, name);
        return rm_rf(d, err);
}

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *catalog_list(const char *state_dir, const char *kind)
{
        json_t *arr = json_array();
        _cleanup_free_ char *root = xasprintf("%s/%s", state_dir, kind);
        DIR *dp = opendir(root);
        if (!dp)
                return arr;
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(dp))) {
                if (!catalog_name_valid(de->d_name))
                        continue;
                names = xreallocarray(names, n + 1, sizeof *names);
                names[n++] = xstrdup(de->d_name);
        }
        closedir(dp);
        if (n)
                qsort(names, n, sizeof *names, cmp_name);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *meta = xasprintf("%s/%s/%s", root, names[i], meta_name(kind));
                json_t *j = json_load_file(meta, 0, NULL);
                if (json_is_object(j))
                        json_array_append_new(arr, j);
                else
                        json_decref(j);
                free(names[i]);
        }
        free(names);
        return arr;
}
