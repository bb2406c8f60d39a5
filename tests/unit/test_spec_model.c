/* Unit tests for the canonical forms (spec_json.c) and the model helpers
 * (spec_model.c): to_json/from_json/to_yaml round trips, hashing, diff
 * impacts, names and sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "spec.h"
#include "util.h"

#define HDR "apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: web\n"

static struct bg_spec *parse_ok(const char *text)
{
        struct spec_file *f = NULL;
        spec_parse_buffer("t.yaml", text, strlen(text), &f);
        for (size_t i = 0; f->n_docs && i < f->docs[0].n_errors; i++)
                print_error("%s: %s\n", f->docs[0].errors[i].field, f->docs[0].errors[i].reason);
        for (size_t i = 0; i < f->n_errors; i++)
                print_error("%u:%u %s\n", f->errors[i].line, f->errors[i].column, f->errors[i].reason);
        if (!spec_file_ok(f) || f->n_docs != 1)
                print_error("in:\n%s\n", text);
        assert_true(spec_file_ok(f));
        assert_int_equal(f->n_docs, 1);
        struct bg_spec *s = steal_pointer(&f->docs[0].spec);
        spec_file_free(f);
        return s;
}

static const char *const specs[] = {
        HDR,
        HDR "  labels: {team: infra, app.example.com/x: '', \"true\": \"1\"}\n"
            "spec:\n  state: stopped\n  image: \"oci://ghcr.io/a/b:c\"\n  kernel: '6.1'\n"
            "  hypervisor: qemu\n  vcpu: 32\n  memory_mib: 262144\n  disk_size: 1536M\n"
            "  restart: never\n  nat: true\n"
            "  workspace: {path: \"~/src/with space\", branch: a/b, from: HEAD, include_untracked: true}\n"
            "  file_sync: [{host: ~/.gitconfig, guest: ~/.gitconfig}, {host: 'a: b', guest: /root/x, mode: '0755'}]\n"
            "  ports: [{host: 8080, guest: 80}, {host: 1, guest: 65535}]\n",
        /* strings that only survive a YAML round trip when quoted */
        HDR "spec:\n  image: \"null\"\n  kernel: \"123\"\n"
            "  workspace: {path: \"- x #y\", from: \"\\\"q\\\" \\\\ \\t\\u00e9\\u2028\\x7f\\u0085\"}\n"
            "  file_sync: [{host: \"~\", guest: \"~/\\n\"}]\n",
        HDR "spec:\n  image: \"True\"\n  kernel: \"-1\"\n  workspace: {path: \"'\", branch: x.y-ok}\n",
};

static void test_json_round_trip_is_exact(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
                struct bg_spec *s = parse_ok(specs[i]);
                json_t *j = spec_to_json(s);
                struct bg_spec *back = NULL;
                struct bg_err *err = NULL;
                assert_int_equal(spec_from_json(j, &back, &err), 0);
                json_t *j2 = spec_to_json(back);
                assert_true(json_equal(j, j2));
                assert_int_equal(spec_hash(s), spec_hash(back));
                json_decref(j);
                json_decref(j2);
                spec_free(back);
                spec_free(s);
        }
}

static void test_yaml_round_trip_gives_an_equal_spec(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
                struct bg_spec *s = parse_ok(specs[i]);
                char *y = spec_to_yaml(s);
                assert_false(str_has_prefix(y, "---"));
                struct bg_spec *back = parse_ok(y);
                json_t *a = spec_to_json(s), *b = spec_to_json(back);
                if (!json_equal(a, b))
                        print_error("yaml was:\n%s\n", y);
                assert_true(json_equal(a, b));
                /* and writing it again gives the same text */
                char *y2 = spec_to_yaml(back);
                assert_string_equal(y, y2);
                json_decref(a);
                json_decref(b);
                free(y);
                free(y2);
                spec_free(back);
                spec_free(s);
        }
}

static void test_canonical_json_fills_defaults_and_omits_unset(void **state)
{
        (void)state;
        struct bg_spec *s = parse_ok(HDR "spec:\n  file_sync: [{host: a, guest: ~/b}]\n  disk_size: 2048M\n");
        json_t *j = spec_to_json(s);
        char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(text,
                            "{\"apiVersion\":\"banger/v1\",\"kind\":\"Sandbox\","
                            "\"metadata\":{\"labels\":{},\"name\":\"web\"},"
                            "\"spec\":{\"disk_size\":\"2G\","
                            "\"file_sync\":[{\"guest\":\"~/b\",\"host\":\"a\",\"mode\":\"0600\"}],"
                            "\"hypervisor\":\"auto\",\"kernel\":\"default\",\"nat\":false,\"ports\":[],"
                            "\"restart\":\"on-failure\",\"state\":\"running\"}}");
        free(text);
        json_decref(j);
        spec_free(s);
}

static void test_same_meaning_hashes_the_same(void **state)
{
        (void)state;
        struct bg_spec *a = parse_ok(HDR "  labels: {a: x, b: y}\nspec: {disk_size: 1G}\n");
        struct bg_spec *b = parse_ok("metadata:\n  labels: {b: y, a: x}\n  name: web\nkind: Sandbox\n"
                                     "apiVersion: banger/v1\n"
                                     "spec: {disk_size: 1024M, state: running, kernel: default, nat: false}\n");
        struct bg_spec *c = parse_ok(HDR "  labels: {a: x, b: y}\nspec: {disk_size: 2G}\n");
        assert_int_equal(spec_hash(a), spec_hash(b));
        assert_int_not_equal(spec_hash(a), spec_hash(c));
        struct bg_spec *d = spec_dup(c);
        assert_int_equal(spec_hash(c), spec_hash(d));
        assert_ptr_not_equal(d->labels, c->labels);
        spec_free(a);
        spec_free(b);
        spec_free(c);
        spec_free(d);
        assert_null(spec_dup(NULL));
        spec_free(NULL);
}

static void test_from_json_validates_with_the_same_rules(void **state)
{
        (void)state;
        static const struct {
                const char *json;
                const char *msg;
        } cases[] = {
                { "{\"apiVersion\":\"banger/v1\",\"kind\":\"Sandbox\",\"metadata\":{\"name\":\"a\"},"
                  "\"spec\":{\"vcpu\":99}}",
                  "invalid spec: spec.vcpu: must be between 1 and 32" },
                { "{\"apiVersion\":\"banger/v1\",\"kind\":\"Sandbox\",\"metadata\":{\"name\":\"a\"},"
                  "\"spec\":{\"vcpu\":1.5}}",
                  "invalid spec: spec.vcpu: must be an integer" },
                { "{\"apiVersion\":\"banger/v1\",\"kind\":\"Sandbox\",\"metadata\":{\"name\":\"A\",\"x\":1}}",
                  "invalid spec: metadata.x: unknown field; metadata.name: must be a DNS label" },
                { "{\"kind\":\"Sandbox\",\"metadata\":{\"name\":\"a\"},\"spec\":{\"image\":\"a\\u0000b\"}}",
                  "invalid spec: apiVersion: required; spec.image: must be a string" },
                { "{\"apiVersion\":\"banger/v1\",\"kind\":\"Sandbox\",\"metadata\":{\"name\":\"a\"},"
                  "\"spec\":{\"file_sync\":[{\"host\":\"h\",\"guest\":\"~/g\",\"mode\":420}],\"ports\":[{}]}}",
                  "invalid spec: spec.file_sync[0].mode: must be a quoted string like \"0644\"; "
                  "spec.ports[0].host: required; spec.ports[0].guest: required" },
                { "[1]", "invalid spec: a sandbox document must be a mapping" },
                { "{\"a\":[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}", "invalid spec: nesting deeper than 16 levels" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                json_t *j = json_loads(cases[i].json, JSON_ALLOW_NUL, NULL);
                assert_non_null(j);
                struct bg_spec *s = (struct bg_spec *)1;
                struct bg_err *err = NULL;
                assert_true(spec_from_json(j, &s, &err) < 0);
                assert_null(s);
                if (!str_has_prefix(bg_err_msg(err), cases[i].msg))
                        print_error("case %zu: %s\n", i, bg_err_msg(err));
                assert_true(str_has_prefix(bg_err_msg(err), cases[i].msg));
                bg_err_free(err);
                json_decref(j);
        }
        /* a long string from JSON is held to the file reader's bound */
        json_t *j = json_pack("{s:s,s:s,s:{s:s},s:{s:{s:s%}}}", "apiVersion", "banger/v1", "kind", "Sandbox",
                              "metadata", "name", "a", "spec", "workspace", "path",
                              "xxxxxxxx", (size_t)8);
        struct bg_spec *s = NULL;
        assert_int_equal(spec_from_json(j, &s, NULL), 0);
        spec_free(s);
        json_decref(j);
        char *big = xmalloc(SPEC_MAX_SCALAR + 2);
        memset(big, 'x', SPEC_MAX_SCALAR + 1);
        big[SPEC_MAX_SCALAR + 1] = '\0';
        j = json_pack("{s:s,s:s,s:{s:s},s:{s:{s:s}}}", "apiVersion", "banger/v1", "kind", "Sandbox",
                      "metadata", "name", "a", "spec", "workspace", "path", big);
        struct bg_err *err = NULL;
        assert_true(spec_from_json(j, &s, &err) < 0);
        assert_non_null(strstr(bg_err_msg(err), "spec.workspace.path: must be at most 4096 characters"));
        bg_err_free(err);
        json_decref(j);
        free(big);
        assert_true(spec_from_json(NULL, &s, NULL) < 0);
}

/* ---- diff ---- */

struct diff_case {
        const char *b;          /* spec lines appended to HDR for the new side */
        const char *field;      /* the one expected change */
        const char *old_value, *new_value;
        enum spec_impact impact;
};

#define BASE "  labels: {team: infra}\nspec:\n  vcpu: 2\n  image: img\n  disk_size: 8G\n" \
             "  workspace: {path: ~/w}\n  file_sync: [{host: a, guest: ~/a}]\n  ports: [{host: 1, guest: 2}]\n"

static const struct diff_case diff_cases[] = {
        { "  labels: {team: web}\nspec:\n  vcpu: 2\n  image: img\n  disk_size: 8G\n"
          "  workspace: {path: ~/w}\n  file_sync: [{host: a, guest: ~/a}]\n  ports: [{host: 1, guest: 2}]\n",
          "metadata.labels.team", "infra", "web", SPEC_IMPACT_NONE },
        { "  labels: {team: infra, x: y}\nspec:\n  vcpu: 2\n  image: img\n  disk_size: 8G\n"
          "  workspace: {path: ~/w}\n  file_sync: [{host: a, guest: ~/a}]\n  ports: [{host: 1, guest: 2}]\n",
          "metadata.labels.x", NULL, "y", SPEC_IMPACT_NONE },
        { "spec:\n  vcpu: 2\n  image: img\n  disk_size: 8G\n"
          "  workspace: {path: ~/w}\n  file_sync: [{host: a, guest: ~/a}]\n  ports: [{host: 1, guest: 2}]\n",
          "metadata.labels.team", "infra", NULL, SPEC_IMPACT_NONE },
        { BASE "  restart: always\n", "spec.restart", "on-failure", "always", SPEC_IMPACT_NONE },
        { BASE "  idle_timeout: 30m\n", "spec.idle_timeout", NULL, "30m", SPEC_IMPACT_NONE },
        { BASE "  state: stopped\n", "spec.state", "running", "stopped", SPEC_IMPACT_STATE },
        { BASE "  nat: true\n", "spec.nat", "false", "true", SPEC_IMPACT_RESTART },
        { BASE "  memory_mib: 512\n", "spec.memory_mib", NULL, "512", SPEC_IMPACT_RESTART },
        { BASE "  kernel: k2\n", "spec.kernel", "default", "k2", SPEC_IMPACT_RECREATE },
        { BASE "  hypervisor: qemu\n", "spec.hypervisor", "auto", "qemu", SPEC_IMPACT_RECREATE },
};

static void check_one_change(const char *b_text, const char *field, const char *old_v, const char *new_v,
                             enum spec_impact impact)
{
        struct bg_spec *a = parse_ok(HDR BASE);
        struct bg_spec *b = parse_ok(b_text);
        struct spec_change *c = NULL;
        size_t n = 0;
        spec_diff(a, b, &c, &n);
        if (n != 1)
                for (size_t i = 0; i < n; i++)
                        print_error("change %s: %s -> %s\n", c[i].field, c[i].old_value, c[i].new_value);
        assert_int_equal(n, 1);
        assert_string_equal(c[0].field, field);
        if (old_v)
                assert_string_equal(c[0].old_value, old_v);
        else
                assert_null(c[0].old_value);
        if (new_v)
                assert_string_equal(c[0].new_value, new_v);
        else
                assert_null(c[0].new_value);
        assert_int_equal(c[0].impact, impact);
        assert_int_equal(spec_changes_impact(c, n), impact);
        spec_changes_free(c, n);
        spec_free(a);
        spec_free(b);
}

static void test_each_field_change_has_its_impact(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(diff_cases); i++) {
                _cleanup_free_ char *b = xasprintf(HDR "%s", diff_cases[i].b);
                check_one_change(b, diff_cases[i].field, diff_cases[i].old_value, diff_cases[i].new_value,
                                 diff_cases[i].impact);
        }
        /* whole-value fields: replace one line of BASE */
        static const struct {
                const char *from, *to, *field;
                enum spec_impact impact;
        } swaps[] = {
                { "vcpu: 2", "vcpu: 4", "spec.vcpu", SPEC_IMPACT_RESTART },
                { "image: img", "image: img2", "spec.image", SPEC_IMPACT_RECREATE },
                { "disk_size: 8G", "disk_size: 16G", "spec.disk_size", SPEC_IMPACT_RECREATE },
                { "{path: ~/w}", "{path: ~/w, branch: b}", "spec.workspace", SPEC_IMPACT_RECREATE },
                { "guest: ~/a}", "guest: ~/a, mode: '0644'}", "spec.file_sync", SPEC_IMPACT_RECREATE },
                { "guest: 2}", "guest: 3}", "spec.ports", SPEC_IMPACT_RESTART },
        };
        for (size_t i = 0; i < ARRAY_SIZE(swaps); i++) {
                char text[1024];
                const char *base = HDR BASE;
                const char *at = strstr(base, swaps[i].from);
                assert_non_null(at);
                snprintf(text, sizeof text, "%.*s%s%s", (int)(at - base), base, swaps[i].to,
                         at + strlen(swaps[i].from));
                struct bg_spec *a = parse_ok(base), *b = parse_ok(text);
                struct spec_change *c = NULL;
                size_t n = 0;
                spec_diff(a, b, &c, &n);
                assert_int_equal(n, 1);
                assert_string_equal(c[0].field, swaps[i].field);
                assert_int_equal(c[0].impact, swaps[i].impact);
                assert_non_null(c[0].old_value);
                assert_non_null(c[0].new_value);
                spec_changes_free(c, n);
                spec_free(a);
                spec_free(b);
        }
}

static void test_equal_meaning_is_no_change_and_impacts_combine(void **state)
{
        (void)state;
        struct bg_spec *a = parse_ok(HDR "spec: {disk_size: 1G, file_sync: [{host: a, guest: ~/a}]}\n");
        struct bg_spec *b = parse_ok(HDR "spec: {disk_size: 1024M, file_sync: [{host: a, guest: ~/a, mode: '0600'}],"
                                         " kernel: default, ports: []}\n");
        struct spec_change *c = (struct spec_change *)1;
        size_t n = 99;
        spec_diff(a, b, &c, &n);
        assert_int_equal(n, 0);
        assert_null(c);
        assert_int_equal(spec_changes_impact(c, n), SPEC_IMPACT_NONE);
        spec_free(b);

        b = parse_ok(HDR "  labels: {x: y}\nspec: {disk_size: 2G, state: stopped, vcpu: 2}\n");
        spec_diff(a, b, &c, &n);
        assert_int_equal(n, 5); /* label, state, vcpu, disk_size, file_sync */
        assert_string_equal(c[0].field, "metadata.labels.x");
        assert_string_equal(c[1].field, "spec.state");
        assert_int_equal(spec_changes_impact(c, n), SPEC_IMPACT_RECREATE);
        spec_changes_free(c, n);
        spec_free(a);
        spec_free(b);

        assert_string_equal(spec_impact_name(SPEC_IMPACT_NONE), "none");
        assert_string_equal(spec_impact_name(SPEC_IMPACT_STATE), "state");
        assert_string_equal(spec_impact_name(SPEC_IMPACT_RESTART), "restart");
        assert_string_equal(spec_impact_name(SPEC_IMPACT_RECREATE), "recreate");
}

/* ---- helpers ---- */

static void test_names_sizes_and_enum_names(void **state)
{
        (void)state;
        const char *good_names[] = { "a", "web", "a-b", "0", "9lives",
                                     "a23456789012345678901234567890123456789012345678901234567890123" };
        const char *bad_names[] = { "", "-a", "a-", "A", "a_b", "a.b", "a b", "é",
                                    "a234567890123456789012345678901234567890123456789012345678901234" };
        for (size_t i = 0; i < ARRAY_SIZE(good_names); i++)
                assert_true(spec_name_valid(good_names[i]));
        for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++)
                assert_false(spec_name_valid(bad_names[i]));
        assert_false(spec_name_valid(NULL));

        static const struct {
                const char *text;
                uint64_t bytes;
        } sizes[] = {
                { "1M", 1ULL << 20 }, { "512M", 512ULL << 20 }, { "9999999M", 9999999ULL << 20 },
                { "1G", 1ULL << 30 }, { "8G", 8ULL << 30 },     { "9999G", 9999ULL << 30 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                uint64_t b = 0;
                assert_int_equal(spec_size_parse(sizes[i].text, &b), 0);
                assert_int_equal(b, sizes[i].bytes);
                char buf[32];
                spec_size_format(b, buf, sizeof buf);
                assert_string_equal(buf, sizes[i].text);
        }
        const char *bad_sizes[] = { "", "0G", "0M", "08G", "8", "8g", "8m", "8GB", "8GiB", "1.5G", "8T", "8K",
                                    "10000G", "10000000M", "-1G", "+1G", " 8G", "8G ", "G", "M", "8GG" };
        for (size_t i = 0; i < ARRAY_SIZE(bad_sizes); i++)
                assert_int_equal(spec_size_parse(bad_sizes[i], NULL), -1);
        assert_int_equal(spec_size_parse(NULL, NULL), -1);
        char buf[32];
        spec_size_format(1536ULL << 20, buf, sizeof buf);
        assert_string_equal(buf, "1536M");
        spec_size_format(1024ULL << 20, buf, sizeof buf);
        assert_string_equal(buf, "1G");

        assert_string_equal(spec_state_name(SPEC_STATE_STOPPED), "stopped");
        assert_string_equal(spec_hypervisor_name(SPEC_HV_FIRECRACKER), "firecracker");
        assert_string_equal(spec_restart_name(SPEC_RESTART_ON_FAILURE), "on-failure");
        assert_string_equal(spec_restart_name((enum spec_restart)42), "unknown");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_round_trip_is_exact),
                cmocka_unit_test(test_yaml_round_trip_gives_an_equal_spec),
                cmocka_unit_test(test_canonical_json_fills_defaults_and_omits_unset),
                cmocka_unit_test(test_same_meaning_hashes_the_same),
                cmocka_unit_test(test_from_json_validates_with_the_same_rules),
                cmocka_unit_test(test_each_field_change_has_its_impact),
                cmocka_unit_test(test_equal_meaning_is_no_change_and_impacts_combine),
                cmocka_unit_test(test_names_sizes_and_enum_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
