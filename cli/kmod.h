/* kmod: the kernel modules of a package, as far as banger's initramfs
 * needs them: each module's name and dependencies (from its own .modinfo
 * section, the data depmod reads: Debian's packages carry no modules.dep,
 * depmod writes it at install time), the names the kernel has built in
 * (modules.builtin), and the load order of a wanted set, dependencies
 * first.
 *
 * The table fills while the package streams past, so a module can be
 * wanted before it is seen: it then sits as a placeholder (seen false)
 * until its entry arrives.  The table owns every string and buffer.
 */
#ifndef BANGER_KMOD_H
#define BANGER_KMOD_H

#include <stdbool.h>
#include <stddef.h>

struct bg_err;
struct strmap;

struct kmod {
        char *name;             /* normalised: '-' becomes '_' */
        char *path;             /* inside the package; NULL while not seen */
        char **deps;
        size_t n_deps;
        unsigned char *data;    /* the uncompressed .ko; NULL while not kept */
        size_t len;
        bool seen;
        bool needed;            /* wanted, or a dependency of a needed module */
        int mark;               /* for kmod_order */
};

struct kmod_set {
        struct kmod *mods;
        size_t n;
        struct strmap *index;   /* name -> position + 1 */
        char **builtin;
        size_t n_builtin;
        bool have_builtin;      /* a modules.builtin was read */
        size_t kept;            /* bytes of module data held */
};

void kmod_set_init(struct kmod_set *s);
void kmod_set_release(struct kmod_set *s);

/* The module name of a package path ("lib/modules/R/kernel/x/virtio_blk.ko.xz"
 * -> "virtio_blk"), or NULL when path is not a module (.ko, .ko.xz,
 * .ko.zst, .ko.gz).  *compressed tells whether it needs decompressing.
 * Caller frees. */
char *kmod_name_of_path(const char *path, bool *compressed);

/* Read name= and depends= from an uncompressed module's .modinfo
 * section.  *name is NULL when the module does not carry one.  Negative
 * with err when ko is not a loadable module (bad ELF, no .modinfo). */
int kmod_modinfo(const unsigned char *ko, size_t len, char **name, char ***deps, size_t *n_deps,
                 struct bg_err **err);

/* The entry for name, or NULL. */
struct kmod *kmod_find(struct kmod_set *s, const char *name);

/* Record a module seen in the package (takes ownership of deps).  If it
 * was wanted already, its dependencies become needed too.  Returns its
 * entry; the caller may then keep its data (kmod_keep). */
struct kmod *kmod_add(struct kmod_set *s, const char *name, const char *path, char **deps, size_t n_deps);

/* Hold data (ownership moves to the table). */
void kmod_keep(struct kmod_set *s, struct kmod *m, unsigned char *data, size_t len);

/* Mark name and, transitively, what it depends on as needed. */
void kmod_want(struct kmod_set *s, const char *name);

/* Read modules.builtin (one "kernel/fs/ext4/ext4.ko" per line). */
void kmod_read_builtin(struct kmod_set *s, const char *text, size_t len);
bool kmod_is_builtin(const struct kmod_set *s, const char *name);

/* The modules to load for wanted (n names; optional[i] true means "if it
 * is a module at all"), dependencies first, built-in ones left out.
 * *out is a heap array of borrowed entries.  Negative with err naming the
 * first module that is neither in the package nor built in, or a
 * dependency cycle. */
int kmod_order(struct kmod_set *s, const char *const *wanted, const bool *optional, size_t n, struct kmod ***out,
               size_t *n_out, struct bg_err **err);

#endif
