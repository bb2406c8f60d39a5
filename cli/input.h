/* input: the spec documents that `apply -f` and `diff -f` read, from
 * files, folders (every *.yaml and *.yml, not recursive) and stdin, validated
 * locally before anything is written or asked.  Every problem is printed
 * to stderr as "file:line:column: field: reason", so a user fixes them all
 * in one round. */
#ifndef BANGER_INPUT_H
#define BANGER_INPUT_H

#include <stddef.h>

struct bg_err;
struct spec_doc;
struct spec_file;

struct input_doc {
        const struct spec_doc *doc;    /* borrowed from input.files; doc->spec is valid */
        const struct spec_file *file;
        char hash[17];                 /* spec_hash, 16 lowercase hex */
};

struct input {
        struct spec_file **files;
        size_t n_files;
        struct input_doc *docs;        /* every document, in input order */
        size_t n_docs;
};

/* Read and validate the sources ("-" is stdin, at most once).  Prints every
 * problem to stderr and returns how many there were: 0 means every document
 * is valid, names are unique and there is at least one document. */
size_t input_load(struct input *in, char *const *sources, size_t n_sources);
void input_release(struct input *in);

/* The files of a folder that a spec folder holds: every regular
 * *.yaml and *.yml, not hidden, sorted by name (heap array of heap paths).
 * A missing folder is empty.  Negative with err when it cannot be read. */
int input_list_dir(const char *dir, char ***paths, size_t *n, struct bg_err **err);
void input_free_list(char **paths, size_t n);

#endif
