/* speccheck: validate spec files the way banger does.
 *
 *   speccheck FILE...          print every error, exit 1 if any file has one
 *   speccheck --json FILE...   also print the canonical JSON of each valid
 *                              document, one per line
 *
 * The pytest corpus test compares its verdicts with a JSON Schema
 * validator, so this tool is the C side of that contract check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"

static void usage(FILE *to)
{
        fputs("usage: speccheck [--json] FILE...\n", to);
}

int main(int argc, char **argv)
{
        bool json = false;
        int first = 1;
        if (argc > 1 && strcmp(argv[1], "--json") == 0) {
                json = true;
                first = 2;
        } else if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                usage(stdout);
                return 0;
        }
        if (first >= argc) {
                usage(stderr);
                return 2;
        }
        int rc = 0;
        for (int i = first; i < argc; i++) {
                struct spec_file *f = NULL;
                spec_parse_path(argv[i], &f);
                for (size_t k = 0; k < f->n_errors; k++) {
                        char *s = spec_error_format(&f->errors[k]);
                        puts(s);
                        free(s);
                }
                for (size_t d = 0; d < f->n_docs; d++) {
                        const struct spec_doc *doc = &f->docs[d];
                        for (size_t k = 0; k < doc->n_errors; k++) {
                                char *s = spec_error_format(&doc->errors[k]);
                                puts(s);
                                free(s);
                        }
                        if (json && doc->spec) {
                                json_t *j = spec_to_json(doc->spec);
                                char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
                                puts(s ? s : "null");
                                free(s);
                                json_decref(j);
                        }
                }
                if (!spec_file_ok(f))
                        rc = 1;
                spec_file_free(f);
        }
        return rc;
}
