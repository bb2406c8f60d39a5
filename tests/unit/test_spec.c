/* Unit tests for spec.c, spec_json.c and spec_model.c: validation tables,
 * the reader's limits on hostile input, multi-document files, the
 * canonical forms and their round trips, and diff impacts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "spec.h"
#include "util.h"

#define HDR "apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: web\n"

static struct spec_file *parse(const char *text)
{
        struct spec_file *f = NULL;
        assert_int_equal(spec_parse_buffer("t.yaml", text, strlen(text), &f), 0);
        assert_non_null(f);
        return f;
}

/* Parse a one-document text that must be valid; caller frees the spec. */
static struct bg_spec *parse_ok(const char *text)
{
        struct spec_file *f = parse(text);
        for (size_t i = 0; i < f->n_errors; i++)
                print_error("file error: %s\n", f->errors[i].reason);
        for (size_t i = 0; f->n_docs && i < f->docs[0].n_errors; i++)
                print_error("error: %s: %s\n", f->docs[0].errors[i].field, f->docs[0].errors[i].reason);
        assert_true(spec_file_ok(f));
        assert_int_equal(f->n_docs, 1);
        struct bg_spec *s = steal_pointer(&f->docs[0].spec);
        spec_file_free(f);
        return s;
}

static bool has_error(const struct spec_error *v, size_t n, const char *field, const char *reason)
{
        for (size_t i = 0; i < n; i++)
                if ((!field || strcmp(v[i].field, field) == 0) && strstr(v[i].reason, reason))
                        return true;
        return false;
}

static void dump_errors(const struct spec_file *f)
{
        for (size_t i = 0; i < f->n_errors; i++)
                print_error("  file: %s\n", f->errors[i].reason);
        for (size_t d = 0; d < f->n_docs; d++)
                for (size_t i = 0; i < f->docs[d].n_errors; i++)
                        print_error("  doc %zu: %u:%u %s: %s\n", d, f->docs[d].errors[i].line,
                                    f->docs[d].errors[i].column, f->docs[d].errors[i].field,
                                    f->docs[d].errors[i].reason);
}

/* ---- validation tables ---- */

struct bad_case {
        const char *text;
        const char *field;   /* expected field path */
        const char *reason;  /* expected substring of the reason */
        unsigned line, column;
};

static const struct bad_case bad_cases[] = {
        { "apiVersion: banger/v2\nkind: Sandbox\nmetadata: {name: a}\n", "apiVersion", "must be \"banger/v1\"", 1, 13 },
        { "apiVersion: 1\nkind: Sandbox\nmetadata: {name: a}\n", "apiVersion", "must be \"banger/v1\"", 1, 13 },
        { "apiVersion: banger/v1\nkind: VM\nmetadata: {name: a}\n", "kind", "must be \"Sandbox\"", 2, 7 },
        { "kind: Sandbox\nmetadata: {name: a}\n", "apiVersion", "required", 1, 1 },
        { "apiVersion: banger/v1\nmetadata: {name: a}\n", "kind", "required", 1, 1 },
        { "apiVersion: banger/v1\nkind: Sandbox\n", "metadata", "required", 1, 1 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {}\n", "metadata.name", "required", 3, 11 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: x\n", "metadata", "must be a mapping", 3, 11 },
        { HDR "x: 1\n", "x", "unknown field", 5, 1 },
        { HDR "  uid: 1\n", "metadata.uid", "unknown field", 5, 3 },
        { HDR "spec:\n  cpu: 1\n", "spec.cpu", "unknown field", 6, 3 },
        { HDR "spec:\n  vcpu: 1\n  vcpu: 2\n", "spec.vcpu", "duplicate key", 7, 3 },
        { HDR "spec: []\n", "spec", "must be a mapping", 5, 7 },
        { HDR "spec:\n", "spec", "must be a mapping", 5, 6 },
        { "- a\n", "", "must be a mapping", 1, 1 },
        { "just text\n", "", "must be a mapping", 1, 1 },
        /* names */
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: Web}\n", "metadata.name", "DNS label", 3, 18 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: a.b}\n", "metadata.name", "DNS label", 0, 0 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web-}\n", "metadata.name", "DNS label", 0, 0 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: ''}\n", "metadata.name", "DNS label", 0, 0 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: 12}\n", "metadata.name", "must be a string", 0, 0 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: true}\n", "metadata.name", "must be a string", 0, 0 },
        { "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: ~}\n", "metadata.name", "must be a string", 0, 0 },
        /* labels */
        { HDR "  labels: {-a: b}\n", "metadata.labels.-a", "invalid label key", 5, 12 },
        { HDR "  labels: {a/: b}\n", "metadata.labels.a/", "invalid label key", 0, 0 },
        { HDR "  labels: {a: b c}\n", "metadata.labels.a", "invalid label value", 5, 15 },
        { HDR "  labels: {a: b/c}\n", "metadata.labels.a", "invalid label value", 0, 0 },
        { HDR "  labels: {a: -b}\n", "metadata.labels.a", "invalid label value", 0, 0 },
        { HDR "  labels: {a: 1}\n", "metadata.labels.a", "must be a string", 0, 0 },
        { HDR "  labels: {a: }\n", "metadata.labels.a", "must be a string", 0, 0 },
        { HDR "  labels: {a: x, a: y}\n", "metadata.labels.a", "duplicate key", 0, 0 },
        { HDR "  labels: {true: x}\n", "metadata.labels", "mapping keys must be strings", 0, 0 },
        { HDR "  labels: [a]\n", "metadata.labels", "must be a mapping", 0, 0 },
        /* enums */
        { HDR "spec: {state: paused}\n", "spec.state", "must be one of: running, stopped", 5, 15 },
        { HDR "spec: {state: Running}\n", "spec.state", "must be one of", 0, 0 },
        { HDR "spec: {hypervisor: kvm}\n", "spec.hypervisor", "must be one of: auto, firecracker, qemu", 0, 0 },
        { HDR "spec: {restart: no}\n", "spec.restart", "must be one of", 0, 0 },
        { HDR "spec: {restart: 1}\n", "spec.restart", "must be a string", 0, 0 },
        /* references */
        { HDR "spec: {image: ''}\n", "spec.image", "must not be empty", 0, 0 },
        { HDR "spec: {image: 5}\n", "spec.image", "must be a string", 0, 0 },
        { HDR "spec: {kernel: ''}\n", "spec.kernel", "must not be empty", 0, 0 },
        /* numbers */
        { HDR "spec: {vcpu: 0}\n", "spec.vcpu", "must be between 1 and 32", 5, 14 },
        { HDR "spec: {vcpu: 33}\n", "spec.vcpu", "must be between 1 and 32", 0, 0 },
        { HDR "spec: {vcpu: -1}\n", "spec.vcpu", "must be between 1 and 32", 0, 0 },
        { HDR "spec: {vcpu: 1.0}\n", "spec.vcpu", "must be an integer", 0, 0 },
        { HDR "spec: {vcpu: '2'}\n", "spec.vcpu", "must be an integer", 0, 0 },
        { HDR "spec: {vcpu: 0x2}\n", "spec.vcpu", "must be an integer", 0, 0 },
        { HDR "spec: {vcpu: 1e1}\n", "spec.vcpu", "must be an integer", 0, 0 },
        { HDR "spec: {vcpu: true}\n", "spec.vcpu", "must be an integer", 0, 0 },
        { HDR "spec: {vcpu: 18446744073709551617}\n", "spec.vcpu", "must be between", 0, 0 },
        { HDR "spec: {vcpu: -18446744073709551617}\n", "spec.vcpu", "must be between", 0, 0 },
        { HDR "spec: {memory_mib: 127}\n", "spec.memory_mib", "must be between 128 and 262144", 0, 0 },
        { HDR "spec: {memory_mib: 262145}\n", "spec.memory_mib", "must be between", 0, 0 },
        /* sizes */
        { HDR "spec: {disk_size: 8GB}\n", "spec.disk_size", "must be a size like 8G or 512M", 5, 19 },
        { HDR "spec: {disk_size: 8g}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 1.5G}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 8}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 0G}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 8T}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 8K}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 10000G}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: 10000000M}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: ' 8G'}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: G}\n", "spec.disk_size", "must be a size like", 0, 0 },
        { HDR "spec: {disk_size: ''}\n", "spec.disk_size", "must be a size like", 0, 0 },
        /* booleans */
        { HDR "spec: {nat: yes}\n", "spec.nat", "must be a boolean", 0, 0 },
        { HDR "spec: {nat: on}\n", "spec.nat", "must be a boolean", 0, 0 },
        { HDR "spec: {nat: 1}\n", "spec.nat", "must be a boolean", 0, 0 },
        { HDR "spec: {nat: 'true'}\n", "spec.nat", "must be a boolean", 0, 0 },
        /* workspace */
        { HDR "spec: {workspace: {}}\n", "spec.workspace.path", "required", 5, 19 },
        { HDR "spec: {workspace: {path: ''}}\n", "spec.workspace.path", "must not be empty", 0, 0 },
        { HDR "spec: {workspace: {path: x, branch: /a}}\n", "spec.workspace.branch", "git branch name", 0, 0 },
        { HDR "spec: {workspace: {path: x, branch: -a}}\n", "spec.workspace.branch", "git branch name", 0, 0 },
        { HDR "spec: {workspace: {path: x, branch: a..b}}\n", "spec.workspace.branch", "git branch name", 0, 0 },
        { HDR "spec: {workspace: {path: x, branch: 'a b'}}\n", "spec.workspace.branch", "git branch name", 0, 0 },
        { HDR "spec: {workspace: {path: x, branch: ''}}\n", "spec.workspace.branch", "git branch name", 0, 0 },
        { HDR "spec: {workspace: {path: x, from: ''}}\n", "spec.workspace.from", "must not be empty", 0, 0 },
        { HDR "spec: {workspace: {path: x, include_untracked: no}}\n", "spec.workspace.include_untracked",
          "must be a boolean", 0, 0 },
        { HDR "spec: {workspace: {path: x, shallow: true}}\n", "spec.workspace.shallow", "unknown field", 0, 0 },
        /* file_sync */
        { HDR "spec: {file_sync: {}}\n", "spec.file_sync", "must be a sequence", 0, 0 },
        { HDR "spec: {file_sync: [x]}\n", "spec.file_sync[0]", "must be a mapping", 0, 0 },
        { HDR "spec: {file_sync: [{guest: ~/a}]}\n", "spec.file_sync[0].host", "required", 5, 20 },
        { HDR "spec: {file_sync: [{host: a}]}\n", "spec.file_sync[0].guest", "required", 0, 0 },
        { HDR "spec: {file_sync: [{host: '', guest: ~/a}]}\n", "spec.file_sync[0].host", "must not be empty", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: /etc/a}]}\n", "spec.file_sync[0].guest",
          "must start with \"~/\" or \"/root/\"", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~a}]}\n", "spec.file_sync[0].guest", "must start with", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: /rootx/a}]}\n", "spec.file_sync[0].guest", "must start with", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/../x}]}\n", "spec.file_sync[0].guest", "'..'", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: /root/a/..}]}\n", "spec.file_sync[0].guest", "'..'", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/a, mode: 0644}]}\n", "spec.file_sync[0].mode",
          "must be a quoted string like \"0644\"", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/a, mode: '644'}]}\n", "spec.file_sync[0].mode",
          "must be an octal mode", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/a, mode: '0800'}]}\n", "spec.file_sync[0].mode",
          "must be an octal mode", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/a, mode: '01777'}]}\n", "spec.file_sync[0].mode",
          "must be an octal mode", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/a, mode: true}]}\n", "spec.file_sync[0].mode",
          "must be a string", 0, 0 },
        { HDR "spec: {file_sync: [{host: a, guest: ~/a}, {host: b, guest: c}]}\n", "spec.file_sync[1].guest",
          "must start with", 0, 0 },
        /* ports */
        { HDR "spec: {ports: 80}\n", "spec.ports", "must be a sequence", 0, 0 },
        { HDR "spec: {ports: [80]}\n", "spec.ports[0]", "must be a mapping", 0, 0 },
        { HDR "spec: {ports: [{host: 1, guest: 1}, {host: 0, guest: 1}]}\n", "spec.ports[1].host",
          "must be between 1 and 65535", 0, 0 },
        { HDR "spec: {ports: [{host: 1, guest: 65536}]}\n", "spec.ports[0].guest", "must be between 1 and 65535", 0, 0 },
        { HDR "spec: {ports: [{host: 1}]}\n", "spec.ports[0].guest", "required", 0, 0 },
        { HDR "spec: {ports: [{guest: 1}]}\n", "spec.ports[0].host", "required", 0, 0 },
        { HDR "spec: {ports: [{host: '80', guest: 80}]}\n", "spec.ports[0].host", "must be an integer", 0, 0 },
        { HDR "spec: {ports: [{host: 80, guest: 80, proto: tcp}]}\n", "spec.ports[0].proto", "unknown field", 0, 0 },
        /* YAML subset */
        { HDR "spec: {vcpu: &a 1, memory_mib: *a}\n", "spec.vcpu", "anchors and aliases are not allowed", 5, 14 },
        { HDR "spec: {vcpu: &a 1, memory_mib: *a}\n", "spec.memory_mib", "anchors and aliases are not allowed", 0, 0 },
        { HDR "spec: &s {vcpu: 1}\n", "spec", "anchors and aliases are not allowed", 0, 0 },
        { HDR "spec: {vcpu: !!int 1}\n", "spec.vcpu", "tags are not allowed", 0, 0 },
        { HDR "spec: !custom {vcpu: 1}\n", "spec", "tags are not allowed", 0, 0 },
        { HDR "spec: {image: ! x}\n", "spec.image", "tags are not allowed", 0, 0 },
        { HDR "spec: {image: \"a\\0b\"}\n", "spec.image", "NUL", 0, 0 },
        { HDR "spec: {? [a]: b}\n", "spec", "mapping keys must be strings", 0, 0 },
};

static void test_every_bad_case_names_field_and_reason(void **state)
{
        (void)state;
        size_t failed = 0;
        for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
                const struct bad_case *c = &bad_cases[i];
                struct spec_file *f = parse(c->text);
                bool ok = f->n_errors == 0 && f->n_docs == 1 && f->docs[0].spec == NULL &&
                          has_error(f->docs[0].errors, f->docs[0].n_errors, c->field, c->reason);
                if (ok && c->line) {
                        ok = false;
                        for (size_t k = 0; k < f->docs[0].n_errors; k++) {
                                const struct spec_error *e = &f->docs[0].errors[k];
                                if (strcmp(e->field, c->field) == 0 && strstr(e->reason, c->reason))
                                        ok = e->line == c->line && e->column == c->column;
                        }
                }
                if (!ok) {
                        print_error("case %zu: want %s: %s at %u:%u in:\n%s", i, c->field, c->reason, c->line,
                                    c->column, c->text);
                        dump_errors(f);
                        failed++;
                }
                spec_file_free(f);
        }
        assert_int_equal(failed, 0);
}

static const char *const good_cases[] = {
        HDR,
        HDR "spec: {}\n",
        HDR "  labels: {}\n",
        HDR "  labels: {a: '', b.c/d-e_f: x.y-z_0, Z: Z}\n",
        HDR "spec: {state: stopped, restart: never, hypervisor: qemu}\n",
        HDR "spec: {vcpu: 1, memory_mib: 128, disk_size: 1M}\n",
        HDR "spec: {vcpu: +32, memory_mib: 262144, disk_size: 9999G}\n",
        HDR "spec: {disk_size: 9999999M}\n",
        HDR "spec: {nat: True}\n",
        HDR "spec: {nat: FALSE}\n",
        HDR "spec: {image: 'oci://ghcr.io/a/b:c', kernel: \"6.1\"}\n",
        HDR "spec: {image: yes}\n", /* yes is a string in YAML 1.2 */
        HDR "spec: {workspace: {path: ., branch: a/b.c_d-e, from: v1.0, include_untracked: true}}\n",
        HDR "spec: {file_sync: [{host: a, guest: ~/}, {host: b, guest: /root/x, mode: '0777'}]}\n",
        HDR "spec: {file_sync: [{host: a, guest: ~/a..b}]}\n",
        HDR "spec: {file_sync: []}\n",
        HDR "spec: {ports: [{host: 65535, guest: 1}]}\n",
        "---\n" HDR "...\n",
        "# comment only before\n" HDR "# and after\n",
        "{apiVersion: banger/v1, kind: Sandbox, metadata: {name: x}}",
};

static void test_every_good_case_parses_clean(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(good_cases); i++) {
                struct spec_file *f = parse(good_cases[i]);
                if (!spec_file_ok(f) || f->n_docs != 1) {
                        print_error("good case %zu:\n%s", i, good_cases[i]);
                        dump_errors(f);
                }
                assert_true(spec_file_ok(f));
                assert_int_equal(f->n_docs, 1);
                spec_file_free(f);
        }
}

static void test_defaults_and_values_are_read(void **state)
{
        (void)state;
        struct bg_spec *s = parse_ok(HDR);
        assert_string_equal(s->name, "web");
        assert_int_equal(s->state, SPEC_STATE_RUNNING);
        assert_null(s->image);
        assert_string_equal(s->kernel, "default");
        assert_int_equal(s->hypervisor, SPEC_HV_AUTO);
        assert_int_equal(s->restart, SPEC_RESTART_ON_FAILURE);
        assert_int_equal(s->vcpu, 0);
        assert_int_equal(s->disk_size, 0);
        assert_false(s->nat);
        assert_null(s->workspace);
        assert_int_equal(s->n_labels + s->n_file_sync + s->n_ports, 0);
        spec_free(s);

        s = parse_ok(HDR "  labels: {z: '1', a: '2'}\nspec:\n  state: stopped\n  image: img\n  kernel: k\n"
                         "  hypervisor: firecracker\n  vcpu: 4\n  memory_mib: 4096\n  disk_size: 512M\n"
                         "  restart: always\n  nat: true\n  workspace: {path: ~/w, branch: b}\n"
                         "  file_sync: [{host: h, guest: ~/g}, {host: h2, guest: /root/g2, mode: '0755'}]\n"
                         "  ports: [{host: 8080, guest: 80}]\n");
        assert_int_equal(s->n_labels, 2);
        assert_string_equal(s->labels[0].key, "z"); /* file order */
        assert_string_equal(s->labels[1].value, "2");
        assert_int_equal(s->state, SPEC_STATE_STOPPED);
        assert_string_equal(s->image, "img");
        assert_string_equal(s->kernel, "k");
        assert_int_equal(s->hypervisor, SPEC_HV_FIRECRACKER);
        assert_int_equal(s->vcpu, 4);
        assert_int_equal(s->memory_mib, 4096);
        assert_int_equal(s->disk_size, 512ULL << 20);
        assert_int_equal(s->restart, SPEC_RESTART_ALWAYS);
        assert_true(s->nat);
        assert_string_equal(s->workspace->path, "~/w");
        assert_string_equal(s->workspace->branch, "b");
        assert_null(s->workspace->from);
        assert_false(s->workspace->include_untracked);
        assert_int_equal(s->n_file_sync, 2);
        assert_int_equal(s->file_sync[0].mode, 0600);
        assert_false(s->file_sync[0].mode_set);
        assert_int_equal(s->file_sync[1].mode, 0755);
        assert_true(s->file_sync[1].mode_set);
        assert_int_equal(s->ports[0].host, 8080);
        assert_int_equal(s->ports[0].guest, 80);
        spec_free(s);
}

static void test_all_errors_of_a_document_are_reported_in_order(void **state)
{
        (void)state;
        struct spec_file *f = parse("apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: Bad}\n"
                                    "spec:\n  vcpu: 0\n  memory_mib: x\n  bogus: 1\n  ports: [{host: 0}]\n");
        assert_int_equal(f->n_docs, 1);
        const struct spec_doc *d = &f->docs[0];
        assert_null(d->spec);
        assert_string_equal(d->name, "Bad"); /* readable even though invalid */
        assert_int_equal(d->n_errors, 6);
        for (size_t i = 1; i < d->n_errors; i++)
                assert_true(d->errors[i - 1].line < d->errors[i].line ||
                            (d->errors[i - 1].line == d->errors[i].line &&
                             d->errors[i - 1].column <= d->errors[i].column));
        assert_true(has_error(d->errors, d->n_errors, "metadata.name", "DNS label"));
        assert_true(has_error(d->errors, d->n_errors, "spec.vcpu", "between"));
        assert_true(has_error(d->errors, d->n_errors, "spec.memory_mib", "integer"));
        assert_true(has_error(d->errors, d->n_errors, "spec.bogus", "unknown field"));
        assert_true(has_error(d->errors, d->n_errors, "spec.ports[0].host", "between"));
        assert_true(has_error(d->errors, d->n_errors, "spec.ports[0].guest", "required"));
        spec_file_free(f);
}

static void test_error_format_is_file_line_column_field_reason(void **state)
{
        (void)state;
        struct spec_error e = { (char *)"a.yaml", 3, 7, (char *)"spec.vcpu", (char *)"must be an integer" };
        char *s = spec_error_format(&e);
        assert_string_equal(s, "a.yaml:3:7: spec.vcpu: must be an integer");
        free(s);
        e.field = (char *)"";
        s = spec_error_format(&e);
        assert_string_equal(s, "a.yaml:3:7: must be an integer");
        free(s);
        e.line = 0;
        s = spec_error_format(&e);
        assert_string_equal(s, "a.yaml: must be an integer");
        free(s);
}

/* ---- multi-document files ---- */

static void test_bad_document_does_not_affect_the_others(void **state)
{
        (void)state;
        const char *text = "# fleet\n" HDR "---\n"
                           "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: two}\nspec: {vcpu: 99}\n"
                           "--- # third\napiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: three}\n";
        struct spec_file *f = parse(text);
        assert_int_equal(f->n_errors, 0);
        assert_int_equal(f->n_docs, 3);
        assert_false(spec_file_ok(f));
        assert_non_null(f->docs[0].spec);
        assert_null(f->docs[1].spec);
        assert_non_null(f->docs[2].spec);
        assert_string_equal(f->docs[1].name, "two");
        assert_int_equal(f->docs[1].n_errors, 1);
        assert_int_equal(f->docs[1].errors[0].line, 10);
        assert_string_equal(f->docs[2].spec->name, "three");
        /* raw text: leading comments stay with the first document, no "---" */
        assert_string_equal(f->docs[0].raw, "# fleet\n" HDR);
        assert_string_equal(f->docs[2].raw, "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: three}\n");
        assert_int_equal(f->docs[0].line, 2);
        assert_int_equal(f->docs[1].line, 6);
        assert_int_equal(f->docs[2].line, 11);
        /* and each raw text parses alone to the same spec */
        for (size_t i = 0; i < 3; i += 2) {
                struct bg_spec *s = parse_ok(f->docs[i].raw);
                assert_int_equal(spec_hash(s), spec_hash(f->docs[i].spec));
                spec_free(s);
        }
        spec_file_free(f);
}

static void test_syntax_error_keeps_completed_documents(void **state)
{
        (void)state;
        struct spec_file *f = parse(HDR "---\n" HDR "spec: {vcpu: 1\n");
        assert_int_equal(f->n_docs, 1);
        assert_non_null(f->docs[0].spec);
        assert_int_equal(f->n_errors, 1);
        assert_int_equal(f->errors[0].line, 11);
        assert_true(f->errors[0].column > 0);
        assert_string_equal(f->errors[0].field, "");
        assert_false(spec_file_ok(f));
        spec_file_free(f);

        f = parse("a: b\n  c: d\n");
        assert_int_equal(f->n_docs, 0);
        assert_int_equal(f->n_errors, 1);
        assert_int_equal(f->errors[0].line, 2);
        assert_int_equal(f->errors[0].column, 4);
        assert_string_equal(f->errors[0].reason, "mapping values are not allowed in this context");
        spec_file_free(f);
}

static void test_empty_input_and_empty_documents_hold_no_sandbox(void **state)
{
        (void)state;
        const char *texts[] = { "", "# nothing\n", "---\n", "---\n...\n---\n~\n" };
        for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
                struct spec_file *f = parse(texts[i]);
                assert_int_equal(f->n_docs, 0);
                assert_true(spec_file_ok(f));
                spec_file_free(f);
        }
        struct spec_file *f = NULL;
        spec_parse_buffer("n", NULL, 0, &f);
        assert_true(spec_file_ok(f));
        spec_file_free(f);
}

static void test_parse_path_reports_unreadable_files(void **state)
{
        (void)state;
        struct spec_file *f = NULL;
        spec_parse_path("/nonexistent/banger/x.yaml", &f);
        assert_int_equal(f->n_errors, 1);
        assert_string_equal(f->errors[0].file, "/nonexistent/banger/x.yaml");
        assert_string_equal(f->errors[0].reason, "cannot read: no such file or directory");
        assert_false(spec_file_ok(f));
        spec_file_free(f);
        spec_parse_path("/", &f);
        assert_string_equal(f->errors[0].reason, "not a regular file");
        spec_file_free(f);
}


/* ---- limits: hostile input is refused quickly and in bounded memory ---- */

/* Not a benchmark: an unbounded parser takes minutes on these inputs, so
 * a generous ceiling separates "bounded" from "not" even under ASan. */
#define BOUNDED_MS 10000

static struct spec_file *parse_len(const char *buf, size_t len, int64_t *ms)
{
        struct spec_file *f = NULL;
        int64_t t0 = now_mono_ms();
        spec_parse_buffer("t.yaml", buf, len, &f);
        *ms = now_mono_ms() - t0;
        return f;
}

static void test_oversized_file_is_refused_before_parsing(void **state)
{
        (void)state;
        size_t len = SPEC_MAX_FILE_BYTES + 1;
        char *buf = xmalloc(len);
        memset(buf, '#', len);
        int64_t ms;
        struct spec_file *f = parse_len(buf, len, &ms);
        assert_int_equal(f->n_errors, 1);
        assert_string_equal(f->errors[0].reason, "file is larger than 1048576 bytes");
        assert_int_equal(f->n_docs, 0);
        spec_file_free(f);
        free(buf);
}

static void test_deep_nesting_stops_the_stream(void **state)
{
        (void)state;
        /* libyaml's cost grows with the square of flow depth: a megabyte of
         * '[' must be cut off at SPEC_MAX_DEPTH, not parsed. */
        size_t len = SPEC_MAX_FILE_BYTES;
        char *buf = xmalloc(len);
        memset(buf, '[', len);
        int64_t ms;
        struct spec_file *f = parse_len(buf, len, &ms);
        assert_true(ms < BOUNDED_MS);
        assert_int_equal(f->n_errors, 1);
        assert_string_equal(f->errors[0].reason, "nesting deeper than 16 levels");
        assert_int_equal(f->errors[0].line, 1);
        assert_int_equal(f->errors[0].column, SPEC_MAX_DEPTH + 1);
        spec_file_free(f);
        memset(buf, '{', len);
        f = parse_len(buf, len, &ms);
        assert_true(ms < BOUNDED_MS);
        assert_int_equal(f->n_errors, 1);
        spec_file_free(f);
        free(buf);

        /* block nesting too, and exactly SPEC_MAX_DEPTH is still fine */
        char text[4096] = "";
        size_t used = 0;
        for (int d = 0; d < SPEC_MAX_DEPTH; d++)
                used += (size_t)snprintf(text + used, sizeof text - used, "%*sk:\n", 2 * d, "");
        f = parse(text);
        assert_int_equal(f->n_errors, 0);
        assert_int_equal(f->n_docs, 1);
        spec_file_free(f);
        snprintf(text + used, sizeof text - used, "%*sk: v\n", 2 * SPEC_MAX_DEPTH, "");
        f = parse(text);
        assert_int_equal(f->n_errors, 1);
        assert_string_equal(f->errors[0].reason, "nesting deeper than 16 levels");
        spec_file_free(f);
}

static void test_long_scalar_is_refused(void **state)
{
        (void)state;
        size_t n = SPEC_MAX_SCALAR + 1;
        char *text = xmalloc(n + 128);
        int w = snprintf(text, 128, HDR "spec: {image: ");
        memset(text + w, 'x', n);
        strcpy(text + w + n, "}\n");
        struct spec_file *f = parse(text);
        assert_int_equal(f->n_docs, 1);
        assert_null(f->docs[0].spec);
        assert_int_equal(f->docs[0].n_errors, 1);
        assert_string_equal(f->docs[0].errors[0].field, "spec.image");
        assert_string_equal(f->docs[0].errors[0].reason, "scalar longer than 4096 bytes");
        spec_file_free(f);
        /* exactly the limit passes the reader (and fails the image rule) */
        memset(text + w, 'x', SPEC_MAX_SCALAR);
        strcpy(text + w + SPEC_MAX_SCALAR, "}\n");
        f = parse(text);
        assert_true(has_error(f->docs[0].errors, f->docs[0].n_errors, "spec.image", "at most 255"));
        spec_file_free(f);
        free(text);
}

static void test_too_many_documents_keeps_the_first_ones(void **state)
{
        (void)state;
        size_t cap = 400 * 80, used = 0;
        char *text = xmalloc(cap);
        for (int i = 0; i < 400; i++)
                used += (size_t)snprintf(text + used, cap - used,
                                         "---\napiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: s%d}\n", i);
        struct spec_file *f = parse(text);
        assert_int_equal(f->n_docs, SPEC_MAX_DOCS);
        assert_int_equal(f->n_errors, 1);
        assert_string_equal(f->errors[0].reason, "more than 256 documents");
        assert_int_equal(f->errors[0].line, 4 * SPEC_MAX_DOCS + 1);
        assert_string_equal(f->docs[SPEC_MAX_DOCS - 1].spec->name, "s255");
        spec_file_free(f);
        free(text);
}

static void test_alias_bomb_is_refused_without_expansion(void **state)
{
        (void)state;
        /* twelve levels of nine: 2.8e11 strings if anything expanded it */
        size_t cap = 8192, used = 0;
        char *text = xmalloc(cap);
        used += (size_t)snprintf(text, cap, HDR "  labels:\n    a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        for (int i = 1; i < 12; i++) {
                used += (size_t)snprintf(text + used, cap - used, "    a%d: &a%d [", i, i);
                for (int k = 0; k < 9; k++)
                        used += (size_t)snprintf(text + used, cap - used, "%s*a%d", k ? "," : "", i - 1);
                used += (size_t)snprintf(text + used, cap - used, "]\n");
        }
        int64_t ms;
        struct spec_file *f = parse_len(text, used, &ms);
        assert_true(ms < BOUNDED_MS);
        assert_int_equal(f->n_docs, 1);
        assert_null(f->docs[0].spec);
        /* every error is the alias rule, and the list is capped */
        assert_true(f->docs[0].n_errors > 10 && f->docs[0].n_errors <= 101);
        for (size_t i = 0; i + 1 < f->docs[0].n_errors; i++)
                assert_string_equal(f->docs[0].errors[i].reason, "anchors and aliases are not allowed");
        assert_string_equal(f->docs[0].errors[f->docs[0].n_errors - 1].reason, "too many errors");
        spec_file_free(f);
        free(text);
}

static void test_node_cap_truncates_a_huge_document(void **state)
{
        (void)state;
        size_t cap = 200000, used = 0;
        char *text = xmalloc(cap);
        used += (size_t)snprintf(text, cap, HDR "spec:\n  ports: [");
        for (int i = 0; i < 20000; i++)
                used += (size_t)snprintf(text + used, cap - used, "%s1", i ? "," : "");
        used += (size_t)snprintf(text + used, cap - used, "]\n---\n" HDR);
        struct spec_file *f = parse(text);
        assert_int_equal(f->n_errors, 0);
        assert_int_equal(f->n_docs, 2);
        assert_null(f->docs[0].spec);
        assert_int_equal(f->docs[0].n_errors, 1);
        assert_string_equal(f->docs[0].errors[0].reason, "document has more than 8192 nodes");
        assert_non_null(f->docs[1].spec); /* the next document is unaffected */
        spec_file_free(f);
        free(text);
}

static void test_control_bytes_and_bad_utf8_are_stream_errors(void **state)
{
        (void)state;
        static const char nul[] = HDR "spec: {image: a\0b}\n";
        struct spec_file *f = NULL;
        spec_parse_buffer("t.yaml", nul, sizeof nul - 1, &f);
        assert_int_equal(f->n_errors, 1);
        assert_string_equal(f->errors[0].reason, "control characters are not allowed");
        assert_int_equal(f->errors[0].line, 5);
        assert_int_equal(f->errors[0].column, 16);
        spec_file_free(f);
        f = parse(HDR "spec: {image: a\xff}\n");
        assert_int_equal(f->n_errors, 1);
        assert_int_equal(f->errors[0].line, 5);
        spec_file_free(f);
        f = parse("\xff\xfe" "a\0:\0");
        assert_int_equal(f->n_errors, 1);
        spec_file_free(f);
}

/* xorshift: reproducible bytes without touching the global rand state */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void test_random_and_mutated_input_never_crashes(void **state)
{
        (void)state;
        static const char alphabet[] = "ab:- \n\t[]{},&*!|>'\"#%@`?~0123456789.\\\0\xc3\xa9\xff";
        char buf[512];
        for (int round = 0; round < 3000; round++) {
                size_t len = next_rand() % sizeof buf;
                for (size_t i = 0; i < len; i++)
                        buf[i] = round % 2 ? (char)next_rand()
                                           : alphabet[next_rand() % (sizeof alphabet - 1)];
                struct spec_file *f = NULL;
                spec_parse_buffer("fuzz", buf, len, &f);
                assert_non_null(f);
                for (size_t d = 0; d < f->n_docs; d++)
                        assert_true(f->docs[d].spec || f->docs[d].n_errors > 0);
                spec_file_free(f);
        }
        /* mutations of a full valid spec reach deeper into validation */
        static const char base[] = HDR "  labels: {a: b}\nspec:\n  state: stopped\n  vcpu: 2\n"
                                   "  disk_size: 8G\n  workspace: {path: ~/w, branch: b}\n"
                                   "  file_sync: [{host: a, guest: ~/b, mode: '0644'}]\n"
                                   "  ports: [{host: 1, guest: 2}]\n";
        for (int round = 0; round < 3000; round++) {
                memcpy(buf, base, sizeof base);
                for (int k = 0; k < 1 + round % 4; k++)
                        buf[next_rand() % (sizeof base - 1)] = alphabet[next_rand() % (sizeof alphabet - 1)];
                struct spec_file *f = NULL;
                spec_parse_buffer("fuzz", buf, sizeof base - 1, &f);
                for (size_t d = 0; d < f->n_docs; d++) {
                        if (!f->docs[d].spec)
                                continue;
                        /* whatever validates must survive the canonical forms */
                        char *y = spec_to_yaml(f->docs[d].spec);
                        struct bg_spec *back = parse_ok(y);
                        assert_int_equal(spec_hash(back), spec_hash(f->docs[d].spec));
                        spec_free(back);
                        free(y);
                }
                spec_file_free(f);
        }
}

static void test_idle_timeout_durations_parse_and_normalise(void **state)
{
        (void)state;
        static const struct { const char *in; uint64_t ms; const char *canon; } good[] = {
                { "10s", 10000, "10s" }, { "30m", 1800000, "30m" }, { "90m", 5400000, "1h30m" },
                { "1h30m", 5400000, "1h30m" }, { "2h", 7200000, "2h" }, { "1d2h3m4s", 93784000, "1d2h3m4s" },
                { "30d", 30ull * 86400000, "30d" },
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                uint64_t ms = 0;
                char buf[48];
                assert_int_equal(spec_duration_parse(good[i].in, &ms), 0);
                assert_int_equal(ms, good[i].ms);
                spec_duration_format(ms, buf, sizeof buf);
                assert_string_equal(buf, good[i].canon);
        }
        static const char *const bad[] = { "", "30", "m", "9s", "31d", "1m1h", "1h1h", "1.5h", "-1m", "30 m",
                                           "30M", "99999999999999999999s", "1h 30m" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                uint64_t ms = 0;
                assert_int_equal(spec_duration_parse(bad[i], &ms), -EINVAL);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_bad_case_names_field_and_reason),
                cmocka_unit_test(test_every_good_case_parses_clean),
                cmocka_unit_test(test_defaults_and_values_are_read),
                cmocka_unit_test(test_all_errors_of_a_document_are_reported_in_order),
                cmocka_unit_test(test_error_format_is_file_line_column_field_reason),
                cmocka_unit_test(test_bad_document_does_not_affect_the_others),
                cmocka_unit_test(test_syntax_error_keeps_completed_documents),
                cmocka_unit_test(test_empty_input_and_empty_documents_hold_no_sandbox),
                cmocka_unit_test(test_parse_path_reports_unreadable_files),
                cmocka_unit_test(test_oversized_file_is_refused_before_parsing),
                cmocka_unit_test(test_deep_nesting_stops_the_stream),
                cmocka_unit_test(test_long_scalar_is_refused),
                cmocka_unit_test(test_too_many_documents_keeps_the_first_ones),
                cmocka_unit_test(test_alias_bomb_is_refused_without_expansion),
                cmocka_unit_test(test_node_cap_truncates_a_huge_document),
                cmocka_unit_test(test_control_bytes_and_bad_utf8_are_stream_errors),
                cmocka_unit_test(test_random_and_mutated_input_never_crashes),
                cmocka_unit_test(test_idle_timeout_durations_parse_and_normalise),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
