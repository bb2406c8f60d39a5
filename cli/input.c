/* input: see input.h.  Parsing and validation are common/spec's; this file
 * only gathers the sources, adds the one cross-document rule (a name is
 * declared once per input) and prints. */
#include "input.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "err.h"
#include "spec.h"
#include "util.h"

#define STDIN_NAME "<stdin>"

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int input_list_dir(const char *dir, char ***paths, size_t *n, struct bg_err **err)
{
        *paths = NULL;
        *n = 0;
        DIR *d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                return bg_error(err, errno, "open folder '%s': %s", dir, strerror(errno));
        }
        char **out = NULL;
        size_t count = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                /* hidden files are editors' and write_file_atomic's temporaries */
                if (de->d_name[0] == '.')
                        continue;
                if (!str_has_suffix(de->d_name, ".yaml") && !str_has_suffix(de->d_name, ".yml"))
                        continue;
                char *p = xasprintf("%s/%s", dir, de->d_name);
                struct stat st;
                if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) {
                        free(p);
                        continue;
                }
                out = xreallocarray(out, count + 1, sizeof *out);
                out[count++] = p;
        }
        closedir(d);
        if (count)
                qsort(out, count, sizeof *out, cmp_str);
        *paths = out;
        *n = count;
        return 0;
}

void input_free_list(char **paths, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
}

static void add_file(struct input *in, struct spec_file *f)
{
        in->files = xreallocarray(in->files, in->n_files + 1, sizeof *in->files);
        in->files[in->n_files++] = f;
}

/* Read stdin, at most SPEC_MAX_FILE_BYTES: spec input is untrusted. */
static int read_stdin(char **out, size_t *len, struct bg_err **err)
{
        size_t cap = 65536, n = 0;
        char *buf = xmalloc(cap + 1);
        for (;;) {
                if (n == cap) {
                        if (cap > SPEC_MAX_FILE_BYTES)
                                break;
                        cap *= 2;
                        buf = xrealloc(buf, cap + 1);
                }
                size_t r = fread(buf + n, 1, cap - n, stdin);
                n += r;
                if (r == 0) {
                        if (ferror(stdin)) {
                                free(buf);
                                return bg_error(err, EIO, "%s: read error", STDIN_NAME);
                        }
                        break;
                }
        }
        if (n > SPEC_MAX_FILE_BYTES) {
                free(buf);
                return bg_error(err, EFBIG, "%s: larger than %d bytes", STDIN_NAME, SPEC_MAX_FILE_BYTES);
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
}

/* Load one source; returns the number of problems it printed. */
static size_t load_source(struct input *in, const char *src, bool *stdin_used)
{
        struct bg_err *err = NULL;
        struct spec_file *f = NULL;

        if (strcmp(src, "-") == 0) {
                if (*stdin_used) {
                        cli_error("-f -: stdin can be read only once");
                        return 1;
                }
                *stdin_used = true;
                char *buf = NULL;
                size_t len = 0;
                if (read_stdin(&buf, &len, &err) < 0) {
                        cli_error("%s", bg_err_msg(err));
                        bg_err_free(err);
                        return 1;
                }
                spec_parse_buffer(STDIN_NAME, buf, len, &f);
                free(buf);
                if (f)
                        add_file(in, f);
                return 0;
        }

        struct stat st;
        if (stat(src, &st) < 0) {
                cli_error("%s: %s", src, strerror(errno));
                return 1;
        }
        if (S_ISDIR(st.st_mode)) {
                char **paths;
                size_t n;
                if (input_list_dir(src, &paths, &n, &err) < 0) {
                        cli_error("%s", bg_err_msg(err));
                        bg_err_free(err);
                        return 1;
                }
                if (n == 0) {
                        cli_error("%s: no *.yaml or *.yml files in this folder", src);
                        return 1;
                }
                for (size_t i = 0; i < n; i++) {
                        f = NULL;
                        spec_parse_path(paths[i], &f);
                        if (f)
                                add_file(in, f);
                }
                input_free_list(paths, n);
                return 0;
        }
        spec_parse_path(src, &f);
        if (f)
                add_file(in, f);
        return 0;
}

static size_t print_errors(const struct spec_error *e, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char *s = spec_error_format(&e[i]);
                fprintf(stderr, "%s\n", s);
                free(s);
        }
        return n;
}

size_t input_load(struct input *in, char *const *sources, size_t n_sources)
{
        size_t problems = 0;
        bool stdin_used = false;

        memset(in, 0, sizeof *in);
        for (size_t i = 0; i < n_sources; i++)
                problems += load_source(in, sources[i], &stdin_used);

        for (size_t i = 0; i < in->n_files; i++) {
                struct spec_file *f = in->files[i];
                problems += print_errors(f->errors, f->n_errors);
                for (size_t d = 0; d < f->n_docs; d++) {
                        struct spec_doc *doc = &f->docs[d];
                        problems += print_errors(doc->errors, doc->n_errors);
                        if (!doc->spec) {
                                if (!doc->n_errors) {   /* never silent */
                                        fprintf(stderr, "%s:%u: invalid document\n", f->path, doc->line);
                                        problems++;
                                }
                                continue;
                        }
                        /* one name, one document: the folder could not hold both */
                        bool dup = false;
                        for (size_t k = 0; k < in->n_docs && !dup; k++) {
                                if (strcmp(in->docs[k].doc->spec->name, doc->spec->name) != 0)
                                        continue;
                                fprintf(stderr, "%s:%u: metadata.name: \"%s\" is also declared at %s:%u\n",
                                        f->path, doc->line, doc->spec->name, in->docs[k].file->path,
                                        in->docs[k].doc->line);
                                problems++;
                                dup = true;
                        }
                        if (dup)
                                continue;
                        in->docs = xreallocarray(in->docs, in->n_docs + 1, sizeof *in->docs);
                        struct input_doc *id = &in->docs[in->n_docs++];
                        id->doc = doc;
                        id->file = f;
                        snprintf(id->hash, sizeof id->hash, "%016llx",
                                 (unsigned long long)spec_hash(doc->spec));
                }
        }
        if (problems == 0 && in->n_docs == 0) {
                cli_error("no sandbox documents in the input");
                problems++;
        }
        return problems;
}

void input_release(struct input *in)
{
        for (size_t i = 0; i < in->n_files; i++)
                spec_file_free(in->files[i]);
        free(in->files);
        free(in->docs);
        memset(in, 0, sizeof *in);
}
