/* view: the API Sandbox object for each combination of desired state
 * (from a real index fed by spec_parse_buffer) and store record (built
 * here): phase, conditions, hashes, and whose spec is shown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "index.h"
#include "spec.h"
#include "store.h"
#include "util.h"
#include "view.h"

#define DOC(name, extra) \
        "apiVersion: banger/v1\n" \
        "kind: Sandbox\n" \
        "metadata:\n" \
        "  name: " name "\n" \
        "  labels: {team: infra}\n" \
        "spec:\n" \
        "  ports:\n" \
        "  - {host: 8080, guest: 80}\n" \
        "  vcpu: 2\n" extra

static void nop_dirty(const char *name, void *arg)
{
        (void)name;
        (void)arg;
}

static void nop_report(const char *name, const char *type, const char *msg, void *arg)
{
        (void)name;
        (void)type;
        (void)msg;
        (void)arg;
}

/* The desired state of name after feeding the given files (NULL-ended
 * path, yaml pairs).  Caller frees. */
static struct desired *desired_of(const char *name, ...)
{
        struct index *ix = index_new();
        va_list ap;
        va_start(ap, name);
        for (;;) {
                const char *path = va_arg(ap, const char *);
                if (!path)
                        break;
                const char *yaml = va_arg(ap, const char *);
                struct spec_file *f = NULL;
                assert_int_equal(spec_parse_buffer(path, yaml, strlen(yaml), &f), 0);
                index_update_file(ix, path, f, nop_dirty, nop_report, NULL);
        }
        va_end(ap);
        struct desired *d = index_get(ix, name);
        assert_non_null(d);
        index_free(ix);
        return d;
}

/* A record that applied spec s (its canonical JSON and hash). */
static void record_of(struct store_record *r, const struct bg_spec *s, enum bg_phase phase)
{
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", s->name);
        snprintf(r->id, sizeof r->id, "0123456789abcdef");
        r->phase = phase;
        r->flags = REC_PREPARED;
        r->restarts = 2;
        r->spec_hash = spec_hash(s);
        r->created_ms = 1700000000123LL;
        r->phase_since_ms = 1700000060000LL;
        r->last_exit = -1;
        json_t *j = spec_to_json(s);
        r->spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
}

static char *hex(uint64_t h)
{
        return xasprintf("%016llx", (unsigned long long)h);
}

static json_t *status_of(json_t *obj)
{
        json_t *st = json_object_get(obj, "status");
        assert_true(json_is_object(st));
        return st;
}

static const char *str_at(json_t *obj, const char *key)
{
        json_t *v = json_object_get(obj, key);
        if (!json_is_string(v))
                fail_msg("%s is not a string", key);
        return json_string_value(v);
}

static json_t *condition(json_t *obj, const char *type)
{
        json_t *conds = json_object_get(status_of(obj), "conditions");
        assert_true(json_is_array(conds));
        size_t i;
        json_t *c;
        json_array_foreach(conds, i, c)
                if (strcmp(str_at(c, "type"), type) == 0)
                        return c;
        fail_msg("no condition %s", type);
        return NULL;
}

static void expect_condition(json_t *obj, const char *type, const char *status, const char *message)
{
        json_t *c = condition(obj, type);
        assert_string_equal(str_at(c, "status"), status);
        if (message)
                assert_string_equal(str_at(c, "message"), message);
}

static void test_desired_only_is_pending(void **state)
{
        (void)state;
        struct desired *d = desired_of("web", "web.yaml", DOC("web", ""), NULL);
        assert_non_null(d->spec);
        json_t *o = view_sandbox("web", d, NULL, "fake");
        assert_non_null(o);

        assert_string_equal(str_at(o, "apiVersion"), SPEC_API_VERSION);
        assert_string_equal(str_at(o, "kind"), SPEC_KIND);
        json_t *meta = json_object_get(o, "metadata");
        assert_string_equal(str_at(meta, "name"), "web");
        assert_null(json_object_get(meta, "id"));
        assert_null(json_object_get(meta, "createdAt"));
        json_t *files = json_object_get(meta, "files");
        assert_int_equal(json_array_size(files), 1);
        assert_string_equal(json_string_value(json_array_get(files, 0)), "web.yaml");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "spec"), "vcpu")), 2);

        json_t *st = status_of(o);
        assert_string_equal(str_at(st, "phase"), "Pending");
        assert_string_equal(str_at(st, "hypervisor"), "fake");
        assert_string_equal(str_at(st, "message"), "");
        assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 0);
        assert_true(json_is_null(json_object_get(st, "lastExit")));
        assert_true(json_is_null(json_object_get(st, "specHash")));
        assert_true(json_is_null(json_object_get(st, "phaseSince")));
        _cleanup_free_ char *want = hex(d->hash);
        assert_string_equal(str_at(st, "desiredHash"), want);
        assert_int_equal(json_array_size(json_object_get(st, "errors")), 0);

        expect_condition(o, "SpecValid", "True", "");
        expect_condition(o, "Converged", "False", "waiting for the control loop");
        json_decref(o);
        desired_free(d);
}

struct conv_row {
        const char *what;
        const char *extra;          /* spec lines */
        enum bg_phase phase;
        bool converged;
};

static const struct conv_row conv_rows[] = {
        { "running wanted, running", "", PHASE_RUNNING, true },
        { "stopped wanted, stopped", "  state: stopped\n", PHASE_STOPPED, true },
        { "running wanted, stopped", "", PHASE_STOPPED, false },
        { "stopped wanted, running", "  state: stopped\n", PHASE_RUNNING, false },
        { "running wanted, starting", "", PHASE_STARTING, false },
        { "running wanted, failed", "", PHASE_FAILED, false },
};

static void test_record_converged_table(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(conv_rows); i++) {
                const struct conv_row *row = &conv_rows[i];
                print_message("case: %s\n", row->what);
                char yaml[512];
                snprintf(yaml, sizeof yaml, DOC("web", "%s"), row->extra);
                struct desired *d = desired_of("web", "web.yaml", yaml, NULL);
                assert_non_null(d->spec);
                struct store_record r;
                record_of(&r, d->spec, row->phase);
                assert_true(r.spec_hash == d->hash);

                json_t *o = view_sandbox("web", d, &r, "fake");
                json_t *meta = json_object_get(o, "metadata");
                assert_string_equal(str_at(meta, "id"), "0123456789abcdef");
                assert_string_equal(str_at(meta, "createdAt"), "2023-11-14T22:13:20.123Z");
                json_t *st = status_of(o);
                assert_string_equal(str_at(st, "phase"), phase_name(row->phase));
                assert_string_equal(str_at(st, "phaseSince"), "2023-11-14T22:14:20.000Z");
                assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 2);
                _cleanup_free_ char *want = hex(d->hash);
                assert_string_equal(str_at(st, "specHash"), want);
                assert_string_equal(str_at(st, "desiredHash"), want);
                expect_condition(o, "SpecValid", "True", "");
                expect_condition(o, "Converged", row->converged ? "True" : "False",
                                 row->converged ? "" : phase_name(row->phase));
                json_decref(o);
                store_record_release(&r);
                desired_free(d);
        }
}

static void test_changed_spec_is_not_converged(void **state)
{
        (void)state;
        struct desired *old = desired_of("web", "web.yaml", DOC("web", ""), NULL);
        struct desired *d = desired_of("web", "web.yaml", DOC("web", "  memory_mib: 2048\n"), NULL);
        struct store_record r;
        record_of(&r, old->spec, PHASE_RUNNING);
        r.message = xstrdup("restarting for spec change");
        r.last_exit = 3;

        json_t *o = view_sandbox("web", d, &r, "fake");
        json_t *st = status_of(o);
        _cleanup_free_ char *rec_hash = hex(old->hash);
        _cleanup_free_ char *want_hash = hex(d->hash);
        assert_string_not_equal(rec_hash, want_hash);
        assert_string_equal(str_at(st, "specHash"), rec_hash);
        assert_string_equal(str_at(st, "desiredHash"), want_hash);
        assert_string_equal(str_at(st, "message"), "restarting for spec change");
        assert_int_equal(json_integer_value(json_object_get(st, "lastExit")), 3);
        /* The object shows the desired spec, not the applied one. */
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "spec"), "memory_mib")), 2048);
        expect_condition(o, "Converged", "False", "restarting for spec change");
        json_decref(o);
        store_record_release(&r);
        desired_free(old);
        desired_free(d);
}

static void test_invalid_desired_with_record_shows_record_spec(void **state)
{
        (void)state;
        struct desired *good = desired_of("web", "web.yaml", DOC("web", ""), NULL);
        struct desired *d = desired_of("web", "web.yaml", DOC("web", ""), "web.yaml",
                                       DOC("web", "  vcpu: 0\n  memory_mib: 1\n"), NULL);
        assert_null(d->spec);
        assert_true(d->n_errors >= 2);
        struct store_record r;
        record_of(&r, good->spec, PHASE_RUNNING);

        json_t *o = view_sandbox("web", d, &r, "fake");
        /* The last applied spec, from the record. */
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "spec"), "vcpu")), 2);
        assert_string_equal(str_at(json_object_get(o, "metadata"), "name"), "web");
        assert_string_equal(str_at(json_object_get(o, "metadata"), "id"), "0123456789abcdef");

        json_t *st = status_of(o);
        json_t *errors = json_object_get(st, "errors");
        assert_int_equal(json_array_size(errors), d->n_errors);
        for (size_t i = 0; i < d->n_errors; i++)
                assert_string_equal(json_string_value(json_array_get(errors, i)), d->errors[i]);
        expect_condition(o, "SpecValid", "False", d->errors[0]);
        assert_non_null(strstr(str_at(condition(o, "SpecValid"), "message"), "web.yaml:"));
        /* What the loop keeps running is the record's spec. */
        _cleanup_free_ char *rec_hash = hex(good->hash);
        assert_string_equal(str_at(st, "desiredHash"), rec_hash);
        assert_string_equal(str_at(st, "specHash"), rec_hash);
        json_decref(o);
        store_record_release(&r);
        desired_free(good);
        desired_free(d);
}

static void test_contested_desired_with_record(void **state)
{
        (void)state;
        struct desired *good = desired_of("web", "a.yaml", DOC("web", ""), NULL);
        struct desired *d = desired_of("web", "a.yaml", DOC("web", ""), "b.yaml", DOC("web", ""), NULL);
        assert_null(d->spec);
        struct store_record r;
        record_of(&r, good->spec, PHASE_RUNNING);
        json_t *o = view_sandbox("web", d, &r, "fake");
        json_t *files = json_object_get(json_object_get(o, "metadata"), "files");
        assert_int_equal(json_array_size(files), 2);
        json_t *c = condition(o, "SpecValid");
        assert_string_equal(str_at(c, "status"), "False");
        assert_non_null(strstr(str_at(c, "message"), "a.yaml"));
        assert_non_null(strstr(str_at(c, "message"), "b.yaml"));
        json_decref(o);
        store_record_release(&r);
        desired_free(good);
        desired_free(d);
}

static void test_invalid_desired_without_record(void **state)
{
        (void)state;
        struct desired *d = desired_of("web", "web.yaml", DOC("web", "  vcpu: 0\n"), NULL);
        assert_null(d->spec);
        json_t *o = view_sandbox("web", d, NULL, "fake");
        assert_string_equal(str_at(o, "apiVersion"), SPEC_API_VERSION);
        assert_string_equal(str_at(json_object_get(o, "metadata"), "name"), "web");
        assert_true(json_is_object(json_object_get(o, "spec")));
        json_t *st = status_of(o);
        assert_string_equal(str_at(st, "phase"), "Pending");
        assert_true(json_is_null(json_object_get(st, "desiredHash")));
        assert_true(json_is_null(json_object_get(st, "specHash")));
        expect_condition(o, "SpecValid", "False", d->errors[0]);
        expect_condition(o, "Converged", "False", "spec is invalid; nothing created");
        json_decref(o);
        desired_free(d);
}

static void test_record_only_is_being_deleted(void **state)
{
        (void)state;
        struct desired *good = desired_of("web", "web.yaml", DOC("web", ""), NULL);
        struct store_record r;
        record_of(&r, good->spec, PHASE_DELETING);
        desired_free(good);

        json_t *o = view_sandbox("web", NULL, &r, "qemu/tcg");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "spec"), "vcpu")), 2);
        json_t *meta = json_object_get(o, "metadata");
        assert_string_equal(str_at(meta, "id"), "0123456789abcdef");
        assert_int_equal(json_array_size(json_object_get(meta, "files")), 0);
        json_t *st = status_of(o);
        assert_string_equal(str_at(st, "phase"), "Deleting");
        assert_string_equal(str_at(st, "hypervisor"), "qemu/tcg");
        assert_true(json_is_null(json_object_get(st, "desiredHash")));
        assert_true(json_is_string(json_object_get(st, "specHash")));
        expect_condition(o, "SpecValid", "True", "");
        json_t *c = condition(o, "Converged");
        assert_string_equal(str_at(c, "status"), "False");
        assert_non_null(strstr(str_at(c, "message"), "deleting"));

        /* Even a running record with nothing wanting it is not converged. */
        r.phase = PHASE_RUNNING;
        json_decref(o);
        o = view_sandbox("web", NULL, &r, "fake");
        expect_condition(o, "Converged", "False", "no spec wants this sandbox; deleting");
        json_decref(o);
        store_record_release(&r);
}

static void test_record_with_unreadable_spec_json(void **state)
{
        (void)state;
        struct store_record r;
        memset(&r, 0, sizeof r);
        snprintf(r.name, sizeof r.name, "web");
        snprintf(r.id, sizeof r.id, "fedcba9876543210");
        r.phase = PHASE_FAILED;
        r.last_exit = -1;
        static const char *const bad_json[] = { NULL, "not json", "[1,2]", "\"text\"" };
        for (size_t i = 0; i < ARRAY_SIZE(bad_json); i++) {
                r.spec_json = bad_json[i] ? xstrdup(bad_json[i]) : NULL;
                json_t *o = view_sandbox("web", NULL, &r, "fake");
                assert_non_null(o);
                assert_string_equal(str_at(json_object_get(o, "metadata"), "name"), "web");
                assert_string_equal(str_at(json_object_get(o, "metadata"), "id"), "fedcba9876543210");
                assert_string_equal(str_at(status_of(o), "phase"), "Failed");
                json_decref(o);
                free(r.spec_json);
                r.spec_json = NULL;
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_desired_only_is_pending),
                cmocka_unit_test(test_record_converged_table),
                cmocka_unit_test(test_changed_spec_is_not_converged),
                cmocka_unit_test(test_invalid_desired_with_record_shows_record_spec),
                cmocka_unit_test(test_contested_desired_with_record),
                cmocka_unit_test(test_invalid_desired_without_record),
                cmocka_unit_test(test_record_only_is_being_deleted),
                cmocka_unit_test(test_record_with_unreadable_spec_json),
        };
        return cmocka_run_group_tests_name("view", tests, NULL, NULL);
}
