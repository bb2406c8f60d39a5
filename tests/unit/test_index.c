/* index: which file claims which name, and what a name's desired state is
 * when files agree, collide or break.  Every spec_file comes from
 * spec_parse_buffer on literal YAML so the index sees exactly what the
 * parser gives the loop.  A recorder collects the dirty and report
 * callbacks so each test can say which names the loop would look at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "index.h"
#include "spec.h"
#include "util.h"

#define DOC(name, extra) \
        "apiVersion: banger/v1\n" \
        "kind: Sandbox\n" \
        "metadata:\n" \
        "  name: " name "\n" \
        "spec:\n" \
        "  vcpu: 2\n" extra

#define WEB DOC("web", "")
#define API DOC("api", "")

struct report {
        char *name;     /* NULL for file-level reports */
        char *type;
        char *msg;
};

struct rec {
        char **dirty;
        size_t n_dirty;
        struct report *reports;
        size_t n_reports;
};

static void on_dirty(const char *name, void *arg)
{
        struct rec *r = arg;
        r->dirty = xreallocarray(r->dirty, r->n_dirty + 1, sizeof *r->dirty);
        r->dirty[r->n_dirty++] = xstrdup(name);
}

static void on_report(const char *name, const char *type, const char *msg, void *arg)
{
        struct rec *r = arg;
        r->reports = xreallocarray(r->reports, r->n_reports + 1, sizeof *r->reports);
        r->reports[r->n_reports++] = (struct report){
                .name = name ? xstrdup(name) : NULL, .type = xstrdup(type), .msg = xstrdup(msg),
        };
}

static void rec_clear(struct rec *r)
{
        for (size_t i = 0; i < r->n_dirty; i++)
                free(r->dirty[i]);
        free(r->dirty);
        for (size_t i = 0; i < r->n_reports; i++) {
                free(r->reports[i].name);
                free(r->reports[i].type);
                free(r->reports[i].msg);
        }
        free(r->reports);
        memset(r, 0, sizeof *r);
}

static bool rec_dirty(const struct rec *r, const char *name)
{
        for (size_t i = 0; i < r->n_dirty; i++)
                if (strcmp(r->dirty[i], name) == 0)
                        return true;
        return false;
}

/* The first report of type about name (name NULL: a file-level report). */
static const struct report *rec_report(const struct rec *r, const char *name, const char *type)
{
        for (size_t i = 0; i < r->n_reports; i++) {
                const struct report *p = &r->reports[i];
                bool same = name ? (p->name && strcmp(p->name, name) == 0) : p->name == NULL;
                if (same && strcmp(p->type, type) == 0)
                        return p;
        }
        return NULL;
}

static struct spec_file *parse_len(const char *path, const char *yaml, size_t len)
{
        struct spec_file *f = NULL;
        assert_int_equal(spec_parse_buffer(path, yaml, len, &f), 0);
        assert_non_null(f);
        return f;
}

static struct spec_file *parse(const char *path, const char *yaml)
{
        return parse_len(path, yaml, strlen(yaml));
}

/* Clears the recorder, then feeds path's new content (NULL: removed). */
static void feed(struct index *ix, struct rec *r, const char *path, const char *yaml)
{
        rec_clear(r);
        index_update_file(ix, path, yaml ? parse(path, yaml) : NULL, on_dirty, on_report, r);
}

static void collect(const char *s, void *arg)
{
        struct rec *r = arg;
        on_dirty(s, r);
}

static void test_valid_file_claims_its_names(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB "---\n" API);

        assert_true(rec_dirty(&r, "web"));
        assert_true(rec_dirty(&r, "api"));
        assert_int_equal(r.n_reports, 0);
        assert_int_equal(index_count(ix), 2);

        struct desired *d = index_get(ix, "web");
        assert_non_null(d);
        assert_string_equal(d->name, "web");
        assert_non_null(d->spec);
        assert_string_equal(d->spec->name, "web");
        assert_int_equal(d->spec->vcpu, 2);
        assert_true(d->hash == spec_hash(d->spec));
        assert_int_equal(d->n_files, 1);
        assert_string_equal(d->files[0], "a.yaml");
        assert_int_equal(d->n_errors, 0);
        desired_free(d);

        d = index_get(ix, "api");
        assert_non_null(d);
        assert_non_null(d->spec);
        assert_string_equal(d->spec->name, "api");
        desired_free(d);

        assert_null(index_get(ix, "db"));

        struct rec seen = { 0 };
        index_foreach_name(ix, collect, &seen);
        assert_int_equal(seen.n_dirty, 2);
        assert_true(rec_dirty(&seen, "web") && rec_dirty(&seen, "api"));
        rec_clear(&seen);
        index_foreach_file(ix, collect, &seen);
        assert_int_equal(seen.n_dirty, 1);
        assert_string_equal(seen.dirty[0], "a.yaml");
        rec_clear(&seen);

        rec_clear(&r);
        index_free(ix);
        index_free(NULL);
        desired_free(NULL);
}

static void test_identical_specs_hash_the_same_across_files(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB);
        struct desired *d1 = index_get(ix, "web");
        feed(ix, &r, "a.yaml", NULL);
        feed(ix, &r, "b.yaml", "# moved\n" WEB);
        struct desired *d2 = index_get(ix, "web");
        assert_non_null(d1->spec);
        assert_non_null(d2->spec);
        assert_true(d1->hash == d2->hash);
        assert_string_equal(d2->files[0], "b.yaml");
        desired_free(d1);
        desired_free(d2);
        rec_clear(&r);
        index_free(ix);
}

static void test_two_files_claiming_one_name_are_contested(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB);
        assert_int_equal(r.n_reports, 0);
        feed(ix, &r, "b.yaml", DOC("web", "  memory_mib: 1024\n"));
        assert_true(rec_dirty(&r, "web"));

        struct desired *d = index_get(ix, "web");
        assert_non_null(d);
        assert_null(d->spec);
        assert_int_equal(d->n_files, 2);
        assert_int_equal(d->n_errors, 1);
        assert_non_null(strstr(d->errors[0], "a.yaml"));
        assert_non_null(strstr(d->errors[0], "b.yaml"));
        assert_non_null(strstr(d->errors[0], "\"web\""));

        const struct report *p = rec_report(&r, "web", "SpecDuplicate");
        assert_non_null(p);
        assert_string_equal(p->msg, d->errors[0]);
        desired_free(d);
        assert_int_equal(index_count(ix), 1);

        /* Either file going away settles the name on the other one. */
        feed(ix, &r, "b.yaml", NULL);
        assert_true(rec_dirty(&r, "web"));
        d = index_get(ix, "web");
        assert_non_null(d->spec);
        assert_int_equal(d->spec->memory_mib, 0);
        assert_int_equal(d->n_files, 1);
        assert_string_equal(d->files[0], "a.yaml");
        assert_int_equal(d->n_errors, 0);
        desired_free(d);

        rec_clear(&r);
        index_free(ix);
}

static void test_same_name_twice_in_one_file_is_contested(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB "---\n" DOC("web", "  vcpu: 4\n"));
        struct desired *d = index_get(ix, "web");
        assert_non_null(d);
        assert_null(d->spec);
        assert_true(d->n_errors > 0);
        assert_non_null(strstr(d->errors[0], "a.yaml"));
        assert_int_equal(index_count(ix), 1);
        desired_free(d);
        rec_clear(&r);
        index_free(ix);
}

/* index.h: "report(...) for each name that became invalid or contested". */
static void test_same_name_twice_in_one_file_is_reported(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB "---\n" DOC("web", "  vcpu: 4\n"));
        assert_non_null(rec_report(&r, "web", "SpecDuplicate"));
        rec_clear(&r);
        index_free(ix);
}

/* index_get hands out a copy (spec_dup) of even the barest spec: no
 * ports, labels, file_sync or workspace arrays to copy. */
static void test_bare_spec_can_be_read_back(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web}\n");
        struct desired *d = index_get(ix, "web");
        assert_non_null(d);
        assert_non_null(d->spec);
        assert_int_equal(d->spec->n_ports, 0);
        assert_int_equal(d->spec->n_labels, 0);
        assert_null(d->spec->workspace);
        desired_free(d);
        rec_clear(&r);
        index_free(ix);
}

struct bad_edit {
        const char *what;
        const char *yaml;
        size_t len;     /* 0: strlen(yaml) */
};

static const char garbage[] = "\x01\xff\xfe\x00\x80garbage\x00\x7f";

static const struct bad_edit bad_edits[] = {
        { "document made invalid", DOC("web", "  vcpu: 0\n"), 0 },
        { "unknown field", DOC("web", "  colour: blue\n"), 0 },
        { "yaml syntax error", "apiVersion: banger/v1\nkind: Sandbox\nmetadata: [web\n", 0 },
        { "name changed to an invalid one", DOC("Web_Server", ""), 0 },
        { "name removed", "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {}\n", 0 },
        { "name no longer a string", DOC("[1, 2]", ""), 0 },
        { "garbage bytes", garbage, sizeof garbage - 1 },
        { "not a mapping", "- just\n- a list\n", 0 },
};

static void test_invalid_edit_keeps_claimed_names(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(bad_edits); i++) {
                const struct bad_edit *b = &bad_edits[i];
                print_message("edit: %s\n", b->what);
                struct index *ix = index_new();
                struct rec r = { 0 };
                feed(ix, &r, "a.yaml", WEB);

                rec_clear(&r);
                struct spec_file *f = parse_len("a.yaml", b->yaml, b->len ? b->len : strlen(b->yaml));
                assert_false(spec_file_ok(f));
                index_update_file(ix, "a.yaml", f, on_dirty, on_report, &r);
                assert_true(rec_dirty(&r, "web"));
                assert_true(r.n_reports > 0);

                struct desired *d = index_get(ix, "web");
                assert_non_null(d);
                assert_null(d->spec);
                assert_true(d->n_errors > 0);
                for (size_t j = 0; j < d->n_errors; j++)
                        assert_true(str_has_prefix(d->errors[j], "a.yaml"));
                assert_int_equal(d->n_files, 1);
                desired_free(d);
                assert_int_equal(index_count(ix), 1);

                /* A second broken edit still keeps it. */
                feed(ix, &r, "a.yaml", "metadata: [\n");
                d = index_get(ix, "web");
                assert_non_null(d);
                assert_null(d->spec);
                desired_free(d);

                /* Fixing the file brings the spec back. */
                feed(ix, &r, "a.yaml", WEB);
                assert_true(rec_dirty(&r, "web"));
                d = index_get(ix, "web");
                assert_non_null(d);
                assert_non_null(d->spec);
                assert_int_equal(d->n_errors, 0);
                desired_free(d);

                rec_clear(&r);
                index_free(ix);
        }
}

static void test_invalid_doc_reports_spec_invalid_with_name(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", DOC("web", "  vcpu: 0\n"));
        const struct report *p = rec_report(&r, "web", "SpecInvalid");
        assert_non_null(p);
        assert_non_null(strstr(p->msg, "a.yaml:"));
        assert_non_null(strstr(p->msg, "spec.vcpu"));

        struct desired *d = index_get(ix, "web");
        assert_non_null(d);
        assert_null(d->spec);
        assert_int_equal(d->n_errors, 1);
        assert_string_equal(d->errors[0], p->msg);
        desired_free(d);

        /* A syntax error has no name to report against. */
        feed(ix, &r, "b.yaml", "metadata: [\n");
        assert_non_null(rec_report(&r, NULL, "SpecInvalid"));
        rec_clear(&r);
        index_free(ix);
}

static void test_invalid_edit_of_one_doc_leaves_others_valid(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB "---\n" API);
        feed(ix, &r, "a.yaml", WEB "---\n" DOC("api", "  vcpu: 999\n"));
        struct desired *d = index_get(ix, "web");
        assert_non_null(d->spec);
        desired_free(d);
        d = index_get(ix, "api");
        assert_non_null(d);
        assert_null(d->spec);
        assert_non_null(strstr(d->errors[0], "spec.vcpu"));
        desired_free(d);
        rec_clear(&r);
        index_free(ix);
}

static void test_clean_edit_dropping_a_name_unclaims_it(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB "---\n" API);
        feed(ix, &r, "a.yaml", WEB);
        assert_true(rec_dirty(&r, "api"));
        assert_true(rec_dirty(&r, "web"));
        assert_null(index_get(ix, "api"));
        assert_int_equal(index_count(ix), 1);
        struct desired *d = index_get(ix, "web");
        assert_non_null(d->spec);
        desired_free(d);

        /* A broken edit followed by a clean one that drops the name. */
        feed(ix, &r, "a.yaml", "metadata: [\n");
        d = index_get(ix, "web");
        assert_non_null(d);
        desired_free(d);
        feed(ix, &r, "a.yaml", API);
        assert_true(rec_dirty(&r, "web"));
        assert_true(rec_dirty(&r, "api"));
        assert_null(index_get(ix, "web"));
        d = index_get(ix, "api");
        assert_non_null(d->spec);
        desired_free(d);
        rec_clear(&r);
        index_free(ix);
}

static void test_rename_dirties_old_and_new_name(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB);
        feed(ix, &r, "a.yaml", API);
        assert_true(rec_dirty(&r, "web"));
        assert_true(rec_dirty(&r, "api"));
        assert_null(index_get(ix, "web"));
        struct desired *d = index_get(ix, "api");
        assert_non_null(d->spec);
        desired_free(d);
        rec_clear(&r);
        index_free(ix);
}

static void test_file_removal_unclaims(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", WEB "---\n" API);
        feed(ix, &r, "a.yaml", NULL);
        assert_true(rec_dirty(&r, "web"));
        assert_true(rec_dirty(&r, "api"));
        assert_int_equal(r.n_reports, 0);
        assert_null(index_get(ix, "web"));
        assert_null(index_get(ix, "api"));
        assert_int_equal(index_count(ix), 0);
        struct rec files = { 0 };
        index_foreach_file(ix, collect, &files);
        assert_int_equal(files.n_dirty, 0);

        /* A broken file also gives its names up when it is removed. */
        feed(ix, &r, "b.yaml", WEB);
        feed(ix, &r, "b.yaml", "metadata: [\n");
        feed(ix, &r, "b.yaml", NULL);
        assert_true(rec_dirty(&r, "web"));
        assert_null(index_get(ix, "web"));
        /* Removing an unknown file is harmless. */
        feed(ix, &r, "never.yaml", NULL);
        assert_int_equal(r.n_dirty, 0);
        rec_clear(&r);
        index_free(ix);
}

static void test_orphan_errors_come_from_files_claiming_nothing(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "good.yaml", WEB);
        feed(ix, &r, "claims.yaml", DOC("api", "  vcpu: 0\n"));   /* broken but names api */
        feed(ix, &r, "syntax.yaml", "metadata: [\n");
        feed(ix, &r, "badname.yaml", DOC("Not_A_Label", ""));

        struct rec orphans = { 0 };
        index_foreach_orphan_error(ix, collect, &orphans);
        bool syntax = false, badname = false;
        for (size_t i = 0; i < orphans.n_dirty; i++) {
                const char *m = orphans.dirty[i];
                assert_null(strstr(m, "good.yaml"));
                assert_null(strstr(m, "claims.yaml"));
                syntax |= str_has_prefix(m, "syntax.yaml");
                badname |= str_has_prefix(m, "badname.yaml") && strstr(m, "metadata.name");
        }
        assert_true(syntax);
        assert_true(badname);
        rec_clear(&orphans);

        /* Once fixed, no orphan errors are left. */
        feed(ix, &r, "syntax.yaml", DOC("db", ""));
        feed(ix, &r, "badname.yaml", NULL);
        index_foreach_orphan_error(ix, collect, &orphans);
        assert_int_equal(orphans.n_dirty, 0);
        rec_clear(&r);
        index_free(ix);
}

static void test_empty_documents_claim_nothing(void **state)
{
        (void)state;
        struct index *ix = index_new();
        struct rec r = { 0 };
        feed(ix, &r, "a.yaml", "---\n" WEB "---\n");
        assert_int_equal(index_count(ix), 1);
        struct desired *d = index_get(ix, "web");
        assert_non_null(d->spec);
        desired_free(d);
        rec_clear(&r);
        index_free(ix);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_file_claims_its_names),
                cmocka_unit_test(test_identical_specs_hash_the_same_across_files),
                cmocka_unit_test(test_two_files_claiming_one_name_are_contested),
                cmocka_unit_test(test_same_name_twice_in_one_file_is_contested),
                cmocka_unit_test(test_same_name_twice_in_one_file_is_reported),
                cmocka_unit_test(test_bare_spec_can_be_read_back),
                cmocka_unit_test(test_invalid_edit_keeps_claimed_names),
                cmocka_unit_test(test_invalid_doc_reports_spec_invalid_with_name),
                cmocka_unit_test(test_invalid_edit_of_one_doc_leaves_others_valid),
                cmocka_unit_test(test_clean_edit_dropping_a_name_unclaims_it),
                cmocka_unit_test(test_rename_dirties_old_and_new_name),
                cmocka_unit_test(test_file_removal_unclaims),
                cmocka_unit_test(test_orphan_errors_come_from_files_claiming_nothing),
                cmocka_unit_test(test_empty_documents_claim_nothing),
        };
        return cmocka_run_group_tests_name("index", tests, NULL, NULL);
}
