/* config: reading config.yaml.
 *
 * The file is read by the same bounded reader as spec files and checked
 * with the same toolkit, so its messages look alike; vm_defaults and
 * file_sync reuse the spec's own checks, so a default can never be
 * something a spec could not say.  The first problem (in file order) is returned; the whole config is
 * refused rather than half applied.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "spec_internal.h"
#include "util.h"
#include "yamlnode.h"

static const char *const log_levels[] = { "debug", "info", "warn", "error" };

struct reading {
        struct yn_node *root;   /* the one non-empty document */
        struct yn_errs errs;
};

static void on_doc(struct yn_doc *d, void *ctx)
{
        struct reading *r = ctx;
        for (size_t i = 0; i < d->errs.n; i++) {
                const struct yn_msg *m = &d->errs.v[i];
                yn_err_at(&r->errs, m->line, m->column, m->field, "%s", m->reason);
        }
        if (!d->root || (d->errs.n == 0 && d->root->type == YN_SCALAR && d->root->kind == YN_NULL))
                return;
        if (r->root) {
                yn_err(&r->errs, d->root, "", "config must be a single document");
                return;
        }
        if (d->truncated)
                return;
        r->root = steal_pointer(&d->root);
}

/* Linux dev_valid_name(): what the kernel accepts as an interface name. */
static bool ifname_valid(const char *s)
{
        size_t len = strlen(s);
        if (len < 1 || len > 15 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p == '/' || *p == ':' || *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

/* "a.b.c.d/nn", decimal octets without leading zeros.  Returns 0, -1 when
 * malformed, -2 when host bits are set (then *net is the network). */
static int subnet_parse(const char *s, unsigned *prefix, uint32_t *net)
{
        uint32_t addr = 0;
        const char *p = s;
        for (int i = 0; i < 4; i++) {
                if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
                        return -1;
                unsigned v = 0;
                int digits = 0;
                while (*p >= '0' && *p <= '9' && digits < 4) {
                        v = v * 10 + (unsigned)(*p++ - '0');
                        digits++;
                }
                if (v > 255 || *p != (i < 3 ? '.' : '/'))
                        return -1;
                p++;
                addr = (addr << 8) | v;
        }
        if (*p < '1' || *p > '9' || (p[1] && (p[1] < '0' || p[1] > '9' || p[2])))
                return -1;
        *prefix = (unsigned)strtoul(p, NULL, 10);
        if (*prefix < 16 || *prefix > 29)
                return -1;
        uint32_t mask = ~0U << (32 - *prefix);
        *net = addr & mask;
        return *net == addr ? 0 : -2;
}

static void check_string(struct yn_errs *e, const struct yn_node *n, const char *key, char **out)
{
        const char *s = yn_want_str(e, n, key);
        if (!s)
                return;
        if (!*s) {
                yn_err(e, n, key, "must not be empty");
                return;
        }
        *out = xstrdup(s);
}

static void check_vm_defaults(struct yn_errs *e, const struct yn_node *m, struct bg_config *c)
{
        static const struct yn_field fields[] = { { "vcpu", false }, { "memory_mib", false }, { "disk_size", false } };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        if (!yn_want_map(e, m, "vm_defaults"))
                return;
        yn_fields(e, m, "vm_defaults", fields, ARRAY_SIZE(fields), v);
        if (v[0])
                spec_check_vcpu(e, v[0], "vm_defaults.vcpu", &c->vm_defaults.vcpu);
        if (v[1])
                spec_check_memory(e, v[1], "vm_defaults.memory_mib", &c->vm_defaults.memory_mib);
        if (v[2])
                spec_check_disk_size(e, v[2], "vm_defaults.disk_size", &c->vm_defaults.disk_size);
}

static void check_config(struct yn_errs *e, const struct yn_node *root, struct bg_config *c)
{
        enum { IMAGE, SSH, FC, QEMU, BRIDGE, SUBNET, VMD, LOG, SYNC };
        static const struct yn_field fields[] = {
                [IMAGE] = { "default_image", false }, [SSH] = { "ssh_key_path", false },
                [FC] = { "firecracker_bin", false },  [QEMU] = { "qemu_bin", false },
                [BRIDGE] = { "bridge", false },       [SUBNET] = { "subnet", false },
                [VMD] = { "vm_defaults", false },     [LOG] = { "log_level", false },
                [SYNC] = { "file_sync", false },
        };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        if (root->poison)
                return;
        if (root->type != YN_MAP) {
                yn_err(e, root, "", "config must be a mapping");
                return;
        }
        yn_fields(e, root, "", fields, ARRAY_SIZE(fields), v);
        if (v[IMAGE])
                spec_check_ref(e, v[IMAGE], "default_image", &c->default_image);
        if (v[SSH]) {
                const char *s = yn_want_str(e, v[SSH], "ssh_key_path");
                if (s && s[0] != '/' && !str_has_prefix(s, "~/"))
                        yn_err(e, v[SSH], "ssh_key_path", "must be an absolute path or start with \"~/\"");
                else if (s)
                        c->ssh_key_path = xstrdup(s);
        }
        if (v[FC])
                check_string(e, v[FC], "firecracker_bin", &c->firecracker_bin);
        if (v[QEMU])
                check_string(e, v[QEMU], "qemu_bin", &c->qemu_bin);
        if (v[BRIDGE]) {
                const char *s = yn_want_str(e, v[BRIDGE], "bridge");
                if (s && !ifname_valid(s))
                        yn_err(e, v[BRIDGE], "bridge",
                               "must be an interface name: 1 to 15 characters, no '/', ':' or whitespace");
                else if (s)
                        c->bridge = xstrdup(s);
        }
        if (v[SUBNET]) {
                const char *s = yn_want_str(e, v[SUBNET], "subnet");
                unsigned prefix = 0;
                uint32_t net = 0;
                int r = s ? subnet_parse(s, &prefix, &net) : 0;
                if (r == -1)
                        yn_err(e, v[SUBNET], "subnet",
                               "must be an IPv4 network like 172.16.0.0/24 with a prefix from 16 to 29");
                else if (r == -2)
                        yn_err(e, v[SUBNET], "subnet", "host bits must be zero (did you mean %u.%u.%u.%u/%u?)",
                               net >> 24, (net >> 16) & 255, (net >> 8) & 255, net & 255, prefix);
                else if (s)
                        c->subnet = xstrdup(s);
        }
        if (v[VMD])
                check_vm_defaults(e, v[VMD], c);
        if (v[LOG]) {
                int i = yn_want_enum(e, v[LOG], "log_level", log_levels, ARRAY_SIZE(log_levels));
                if (i >= 0)
                        c->log_level = xstrdup(log_levels[i]);
        }
        if (v[SYNC])
                spec_check_file_sync(e, v[SYNC], "file_sync", &c->file_sync, &c->n_file_sync);
}

int config_load(const char *path, struct bg_config *c, struct bg_err **err)
{
        memset(c, 0, sizeof *c);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct bg_err *rerr = NULL;
        if (read_file_limited(path, SPEC_MAX_FILE_BYTES, &buf, &len, &rerr) < 0) {
                int code = rerr->code;
                bg_err_free(rerr);
                if (code == ENOENT)
                        return 0;
                if (code == EFBIG)
                        return bg_error(err, code, "%s: file is larger than %d bytes", path, SPEC_MAX_FILE_BYTES);
                if (code == EINVAL)
                        return bg_error(err, code, "%s: not a regular file", path);
                return bg_error(err, code, "%s: cannot read: %s", path, strerror(code));
        }

        struct reading r = { 0 };
        struct yn_msg serr;
        if (yn_parse(buf, len, &spec_yn_limits, on_doc, &r, &serr) < 0)
                yn_err_at(&r.errs, serr.line, serr.column, "", "%s", serr.reason);
        yn_msg_release(&serr);
        if (r.root)
                check_config(&r.errs, r.root, c);
        yn_free(r.root);

        if (r.errs.n == 0)
                return 0;
        yn_errs_sort(&r.errs);
        const struct yn_msg *m = &r.errs.v[0];
        _cleanup_free_ char *where = m->line ? xasprintf("%s:%u:%u", path, m->line, m->column) : xstrdup(path);
        int rc = bg_error(err, EINVAL, "%s: %s%s%s", where, m->field, *m->field ? ": " : "", m->reason);
        yn_errs_release(&r.errs);
        config_release(c);
        return rc;
}

void config_release(struct bg_config *c)
{
        if (!c)
                return;
        free(c->default_image);
        free(c->ssh_key_path);
        free(c->firecracker_bin);
        free(c->qemu_bin);
        free(c->bridge);
        free(c->subnet);
        free(c->log_level);
        for (size_t i = 0; i < c->n_file_sync; i++) {
                free(c->file_sync[i].host);
                free(c->file_sync[i].guest);
        }
        free(c->file_sync);
        memset(c, 0, sizeof *c);
}
