/* Golden-file tests over tests/specs: every good file (and every example)
 * parses clean and survives the canonical round trips; every bad file's
 * errors, formatted as `banger` prints them, equal its .err file line for
 * line.  Run from the repository root (as `make unit` does): the paths in
 * the .err files are relative to it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "spec.h"
#include "util.h"

/* Too few files means the test runs from the wrong folder, not success. */
#define MIN_GOOD 12
#define MIN_BAD 30

static size_t list(const char *pattern, glob_t *g)
{
        int rc = glob(pattern, 0, NULL, g);
        if (rc == GLOB_NOMATCH)
                return 0;
        assert_int_equal(rc, 0);
        return g->gl_pathc;
}

static void check_good(const char *path)
{
        struct spec_file *f = NULL;
        spec_parse_path(path, &f);
        if (!spec_file_ok(f)) {
                for (size_t i = 0; i < f->n_errors; i++)
                        print_error("%s: %s\n", path, f->errors[i].reason);
                for (size_t d = 0; d < f->n_docs; d++)
                        for (size_t i = 0; i < f->docs[d].n_errors; i++) {
                                char *s = spec_error_format(&f->docs[d].errors[i]);
                                print_error("%s\n", s);
                                free(s);
                        }
        }
        assert_true(spec_file_ok(f));
        assert_true(f->n_docs > 0);
        for (size_t d = 0; d < f->n_docs; d++) {
                const struct bg_spec *s = f->docs[d].spec;
                assert_string_equal(f->docs[d].name, s->name);
                /* YAML and JSON forms read back to the same canonical spec */
                char *y = spec_to_yaml(s);
                struct spec_file *back = NULL;
                spec_parse_buffer(path, y, strlen(y), &back);
                assert_true(spec_file_ok(back));
                assert_int_equal(back->n_docs, 1);
                assert_int_equal(spec_hash(back->docs[0].spec), spec_hash(s));
                spec_file_free(back);
                free(y);
                json_t *j = spec_to_json(s);
                struct bg_spec *js = NULL;
                assert_int_equal(spec_from_json(j, &js, NULL), 0);
                assert_int_equal(spec_hash(js), spec_hash(s));
                spec_free(js);
                json_decref(j);
                /* the document's own text stands alone */
                struct spec_file *raw = NULL;
                spec_parse_buffer(path, f->docs[d].raw, strlen(f->docs[d].raw), &raw);
                assert_true(spec_file_ok(raw));
                assert_int_equal(raw->n_docs, 1);
                assert_int_equal(spec_hash(raw->docs[0].spec), spec_hash(s));
                spec_file_free(raw);
        }
        spec_file_free(f);
}

static void test_every_good_file_parses_clean(void **state)
{
        (void)state;
        glob_t g;
        size_t n = list("tests/specs/good/*.yaml", &g);
        assert_true(n >= MIN_GOOD);
        for (size_t i = 0; i < n; i++)
                check_good(g.gl_pathv[i]);
        globfree(&g);
}

static void test_every_example_is_valid(void **state)
{
        (void)state;
        glob_t g;
        size_t n = list("examples/sandboxes/*.yaml", &g);
        assert_true(n >= 3);
        for (size_t i = 0; i < n; i++)
                check_good(g.gl_pathv[i]);
        globfree(&g);
}

/* All messages of a file, in the order speccheck prints them. */
static char *format_all(const struct spec_file *f)
{
        char *out = xstrdup("");
        for (size_t i = 0; i < f->n_errors + f->n_docs; i++) {
                const struct spec_error *v = i < f->n_errors ? &f->errors[i] : f->docs[i - f->n_errors].errors;
                size_t n = i < f->n_errors ? 1 : f->docs[i - f->n_errors].n_errors;
                for (size_t k = 0; k < n; k++) {
                        char *line = spec_error_format(&v[k]);
                        char *next = xasprintf("%s%s\n", out, line);
                        free(line);
                        free(out);
                        out = next;
                }
        }
        return out;
}

static void test_every_bad_file_matches_its_err_file(void **state)
{
        (void)state;
        glob_t g;
        size_t n = list("tests/specs/bad/*.yaml", &g);
        assert_true(n >= MIN_BAD);
        size_t failed = 0;
        for (size_t i = 0; i < n; i++) {
                const char *path = g.gl_pathv[i];
                _cleanup_free_ char *err_path = xasprintf("%.*s.err", (int)(strlen(path) - 5), path);
                _cleanup_free_ char *want = NULL;
                struct bg_err *err = NULL;
                if (read_file_limited(err_path, 1 << 20, &want, NULL, &err) < 0) {
                        print_error("%s\n", bg_err_msg(err));
                        bg_err_free(err);
                        failed++;
                        continue;
                }
                struct spec_file *f = NULL;
                spec_parse_path(path, &f);
                _cleanup_free_ char *got = format_all(f);
                if (spec_file_ok(f) || strcmp(got, want) != 0) {
                        print_error("%s: errors differ from %s\n--- want\n%s--- got\n%s", path, err_path, want, got);
                        failed++;
                }
                spec_file_free(f);
        }
        globfree(&g);
        assert_int_equal(failed, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_good_file_parses_clean),
                cmocka_unit_test(test_every_example_is_valid),
                cmocka_unit_test(test_every_bad_file_matches_its_err_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
