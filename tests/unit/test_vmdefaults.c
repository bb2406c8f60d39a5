/* vmdefaults: the order spec > config vm_defaults > host heuristics >
 * floor, field by field, with the provenance string each value gets.  The
 * host part is checked against the documented bounds and recomputed from
 * sysconf, since the test cannot choose the machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "config.h"
#include "spec.h"
#include "util.h"
#include "vmdefaults.h"

#define GIB (1ULL << 30)
#define MIB (1ULL << 20)

static struct bg_spec *parse_one(const char *yaml)
{
        struct spec_file *f = NULL;
        assert_int_equal(spec_parse_buffer("t.yaml", yaml, strlen(yaml), &f), 0);
        if (!spec_file_ok(f))
                fail_msg("spec does not parse: %s", yaml);
        struct bg_spec *s = f->docs[0].spec;
        f->docs[0].spec = NULL;
        spec_file_free(f);
        return s;
}

static const char bare_yaml[] =
        "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web}\n";

static const char full_yaml[] =
        "apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web}\n"
        "spec:\n  vcpu: 3\n  memory_mib: 1536\n  disk_size: 2G\n  image: alpine-3.20\n";

static void config_full(struct bg_config *c)
{
        memset(c, 0, sizeof *c);
        c->default_image = xstrdup("ubuntu-noble");
        c->vm_defaults.vcpu = 6;
        c->vm_defaults.memory_mib = 3072;
        c->vm_defaults.disk_size = 20 * GIB;
}

static void test_spec_values_win(void **state)
{
        (void)state;
        struct bg_config cfg;
        config_full(&cfg);
        struct bg_spec *s = parse_one(full_yaml);
        struct vm_provenance p;
        memset(&p, 0, sizeof p);
        vmdefaults_resolve(&cfg, s, &p);
        assert_int_equal(s->vcpu, 3);
        assert_int_equal(s->memory_mib, 1536);
        assert_true(s->disk_size == 2 * GIB);
        assert_string_equal(s->image, "alpine-3.20");
        assert_string_equal(p.vcpu, "spec");
        assert_string_equal(p.memory_mib, "spec");
        assert_string_equal(p.disk_size, "spec");
        assert_string_equal(p.image, "spec");
        spec_free(s);
        config_release(&cfg);
}

static void test_config_defaults_next(void **state)
{
        (void)state;
        struct bg_config cfg;
        config_full(&cfg);
        struct bg_spec *s = parse_one(bare_yaml);
        struct vm_provenance p;
        vmdefaults_resolve(&cfg, s, &p);
        assert_int_equal(s->vcpu, 6);
        assert_int_equal(s->memory_mib, 3072);
        assert_true(s->disk_size == 20 * GIB);
        assert_string_equal(s->image, "ubuntu-noble");
        assert_string_equal(p.vcpu, "config");
        assert_string_equal(p.memory_mib, "config");
        assert_string_equal(p.disk_size, "config");
        assert_string_equal(p.image, "config");
        spec_free(s);
        config_release(&cfg);
}

static void test_mixed_sources_per_field(void **state)
{
        (void)state;
        struct bg_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.vm_defaults.memory_mib = 4096;
        struct bg_spec *s = parse_one("apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web}\n"
                                      "spec:\n  vcpu: 2\n");
        struct vm_provenance p;
        vmdefaults_resolve(&cfg, s, &p);
        assert_int_equal(s->vcpu, 2);
        assert_string_equal(p.vcpu, "spec");
        assert_int_equal(s->memory_mib, 4096);
        assert_string_equal(p.memory_mib, "config");
        assert_true(s->disk_size == 8 * GIB);
        assert_string_equal(p.disk_size, "host");
        assert_string_equal(s->image, "debian-bookworm");
        assert_string_equal(p.image, "floor");
        spec_free(s);
}

/* What the header promises for the host heuristics on this machine. */
static void expect_host_values(const struct bg_spec *s, const struct vm_provenance *p)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned want_vcpu = cpus >= 4 ? (unsigned)(cpus / 4) : 1;
        if (want_vcpu > 4)
                want_vcpu = 4;
        assert_true(s->vcpu >= 1 && s->vcpu <= 4);
        assert_int_equal(s->vcpu, want_vcpu);
        assert_string_equal(p->vcpu, cpus >= 4 ? "host" : "floor");

        uint64_t ram_mib = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / MIB;
        uint64_t want_mem = ram_mib / 8;
        if (want_mem > 8192)
                want_mem = 8192;
        const char *want_prov = want_mem >= 512 ? "host" : "floor";
        if (want_mem < 512)
                want_mem = 512;
        assert_true(s->memory_mib >= 512 && s->memory_mib <= 8192);
        /* Integer rounding of RAM/8 may differ by one MiB. */
        assert_true(s->memory_mib + 1 >= want_mem && s->memory_mib <= want_mem + 1);
        assert_string_equal(p->memory_mib, want_prov);

        assert_true(s->disk_size == 8 * GIB);
        assert_string_equal(p->disk_size, "host");
        assert_string_equal(s->image, "debian-bookworm");
        assert_string_equal(p->image, "floor");
}

static void test_host_heuristics_without_config(void **state)
{
        (void)state;
        struct bg_spec *s = parse_one(bare_yaml);
        struct vm_provenance p;
        vmdefaults_resolve(NULL, s, &p);
        expect_host_values(s, &p);
        spec_free(s);

        /* An empty config is the same as none. */
        struct bg_config cfg;
        memset(&cfg, 0, sizeof cfg);
        s = parse_one(bare_yaml);
        vmdefaults_resolve(&cfg, s, &p);
        expect_host_values(s, &p);
        spec_free(s);
}

static void test_image_from_config_default_image(void **state)
{
        (void)state;
        struct bg_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.default_image = xstrdup("fedora-40");
        struct bg_spec *s = parse_one(bare_yaml);
        struct vm_provenance p;
        vmdefaults_resolve(&cfg, s, &p);
        assert_string_equal(s->image, "fedora-40");
        assert_string_equal(p.image, "config");
        /* The spec owns its copy. */
        assert_ptr_not_equal(s->image, cfg.default_image);
        spec_free(s);
        config_release(&cfg);
}

static void test_resolve_is_idempotent_and_prov_optional(void **state)
{
        (void)state;
        struct bg_spec *s = parse_one(bare_yaml);
        vmdefaults_resolve(NULL, s, NULL);
        uint64_t once = spec_hash(s);
        struct vm_provenance p;
        vmdefaults_resolve(NULL, s, &p);
        assert_true(spec_hash(s) == once);
        /* Resolved values now count as the spec's own. */
        assert_string_equal(p.vcpu, "spec");
        assert_string_equal(p.memory_mib, "spec");
        assert_string_equal(p.disk_size, "spec");
        assert_string_equal(p.image, "spec");
        spec_free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spec_values_win),
                cmocka_unit_test(test_config_defaults_next),
                cmocka_unit_test(test_mixed_sources_per_field),
                cmocka_unit_test(test_host_heuristics_without_config),
                cmocka_unit_test(test_image_from_config_default_image),
                cmocka_unit_test(test_resolve_is_idempotent_and_prov_optional),
        };
        return cmocka_run_group_tests_name("vmdefaults", tests, NULL, NULL);
}
