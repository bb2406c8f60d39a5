/* spec: reading spec files and validating Sandbox documents.
 *
 * yamlnode turns the bytes into one bounded tree per document; this file
 * checks each tree field by field, building the bg_spec as it goes and
 * recording every problem rather than stopping at the first, so a user
 * fixes a file in one round.  The same checker serves spec_from_json (the
 * tree then comes from JSON), so the store can never hold a spec the file
 * reader would refuse.  Canonical JSON and YAML output are in spec_json.c;
 * the model helpers and diff in spec_model.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "spec.h"
#include "spec_internal.h"
#include "util.h"

const struct yn_limits spec_yn_limits = {
        .max_docs = SPEC_MAX_DOCS,
        .max_depth = SPEC_MAX_DEPTH,
        .max_scalar = SPEC_MAX_SCALAR,
        .max_nodes = YN_MAX_NODES,
};

/* Indexed by the enums of spec.h. */
static const char *const state_names[] = { "running", "stopped" };
static const char *const hv_names[] = { "auto", "firecracker", "qemu" };
static const char *const restart_names[] = { "on-failure", "always", "never" };

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* ---- field rules ---- */

bool spec_name_valid(const char *name)
{
        size_t len = name ? strlen(name) : 0;
        if (len < 1 || len > 63)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = name[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                if (!ok)
                        return false;
        }
        return name[0] != '-' && name[len - 1] != '-';
}

/* Kubernetes-style label text: alphanumeric ends, extra characters in
 * between, 1..63 bytes.  Keys may hold '/', values may not. */
static bool label_text_valid(const char *s, const char *extra)
{
        size_t len = strlen(s);
        if (len < 1 || len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_alnum(s[i]) && !strchr(extra, s[i]))
                        return false;
        return true;
}

static bool branch_valid(const char *s)
{
        size_t len = strlen(s);
        if (len < 1 || len > 200 || s[0] == '-' || s[0] == '/' || strstr(s, ".."))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_alnum(s[i]) && !strchr("._/-", s[i]))
                        return false;
        return true;
}

/* A ".." component would let a guest path leave the guest's home. */
static bool has_dotdot_component(const char *p)
{
        for (const char *s = p; (s = strstr(s, "..")); s += 2) {
                bool starts = s == p || s[-1] == '/';
                bool ends = s[2] == '\0' || s[2] == '/';
                if (starts && ends)
                        return true;
        }
        return false;
}

static bool mode_valid(const char *s)
{
        if (strlen(s) != 4 || s[0] != '0')
                return false;
        for (int i = 1; i < 4; i++)
                if (s[i] < '0' || s[i] > '7')
                        return false;
        return true;
}

bool spec_check_vcpu(struct yn_errs *e, const struct yn_node *n, const char *path, unsigned *out)
{
        long long v;
        if (!yn_want_int(e, n, path, SPEC_VCPU_MIN, SPEC_VCPU_MAX, &v))
                return false;
        *out = (unsigned)v;
        return true;
}

bool spec_check_memory(struct yn_errs *e, const struct yn_node *n, const char *path, unsigned *out)
{
        long long v;
        if (!yn_want_int(e, n, path, SPEC_MEMORY_MIB_MIN, SPEC_MEMORY_MIB_MAX, &v))
                return false;
        *out = (unsigned)v;
        return true;
}

bool spec_check_disk_size(struct yn_errs *e, const struct yn_node *n, const char *path, uint64_t *out)
{
        if (n->poison)
                return false;
        /* An unquoted 8 is a number here: say what a size looks like. */
        if (n->type != YN_SCALAR || n->kind != YN_STR || spec_size_parse(n->str, out) < 0) {
                yn_err(e, n, path, "must be a size like 8G or 512M");
                return false;
        }
        return true;
}

int spec_duration_parse(const char *s, uint64_t *ms)
{
        uint64_t total = 0;
        int groups = 0;
        uint64_t last_unit = UINT64_MAX;   /* units go d, h, m, s, each at most once */
        while (*s) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                uint64_t v = 0;
                for (; *s >= '0' && *s <= '9'; s++) {
                        v = v * 10 + (uint64_t)(*s - '0');
                        if (v > SPEC_IDLE_MAX_MS)
                                return -EINVAL;
                }
                uint64_t unit = *s == 's' ? 1000 : *s == 'm' ? 60000 : *s == 'h' ? 3600000 : *s == 'd' ? 86400000 : 0;
                if (!unit || unit >= last_unit || ++groups > 4)
                        return -EINVAL;
                last_unit = unit;
                s++;
                total += v * unit;
                if (total > SPEC_IDLE_MAX_MS)
                        return -EINVAL;
        }
        if (!groups || total < SPEC_IDLE_MIN_MS)
                return -EINVAL;
        *ms = total;
        return 0;
}

void spec_duration_format(uint64_t ms, char *buf, size_t len)
{
        static const struct { uint64_t ms; char unit; } units[] = {
                { 86400000, 'd' }, { 3600000, 'h' }, { 60000, 'm' }, { 1000, 's' },
        };
        size_t off = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(units) && off < len; i++) {
                if (ms < units[i].ms)
                        continue;
                int n = snprintf(buf + off, len - off, "%llu%c", (unsigned long long)(ms / units[i].ms), units[i].unit);
                off += n > 0 ? (size_t)n : 0;
                ms %= units[i].ms;
        }
        if (!buf[0])
                snprintf(buf, len, "0s");
}

static bool check_idle_timeout(struct yn_errs *e, const struct yn_node *n, const char *path, uint64_t *out)
{
        if (n->poison)
                return false;
        if (n->type != YN_SCALAR || n->kind != YN_STR || spec_duration_parse(n->str, out) < 0) {
                yn_err(e, n, path, "must be a duration like 30m, 90s or 2h (10s to 30d)");
                return false;
        }
        return true;
}

bool spec_check_ref(struct yn_errs *e, const struct yn_node *n, const char *path, char **out)
{
        const char *s = yn_want_str(e, n, path);
        if (!s)
                return false;
        if (!*s) {
                yn_err(e, n, path, "must not be empty");
                return false;
        }
        if (strlen(s) > SPEC_REF_MAX) {
                yn_err(e, n, path, "must be at most %d characters", SPEC_REF_MAX);
                return false;
        }
        free(*out);
        *out = xstrdup(s);
        return true;
}

/* Files cannot hold longer scalars (the reader refuses them); JSON could,
 * so free-form strings are held to the same bound here. */
static bool check_length(struct yn_errs *e, const struct yn_node *n, const char *path, const char *s)
{
        if (strlen(s) > SPEC_MAX_SCALAR) {
                yn_err(e, n, path, "must be at most %d characters", SPEC_MAX_SCALAR);
                return false;
        }
        return true;
}

static bool check_nonempty(struct yn_errs *e, const struct yn_node *n, const char *path, char **out)
{
        const char *s = yn_want_str(e, n, path);
        if (!s)
                return false;
        if (!*s) {
                yn_err(e, n, path, "must not be empty");
                return false;
        }
        if (!check_length(e, n, path, s))
                return false;
        free(*out);
        *out = xstrdup(s);
        return true;
}

static int check_enum(struct yn_errs *e, const struct yn_node *n, const char *path,
                      const char *const *names, size_t count, int dflt)
{
        int i = yn_want_enum(e, n, path, names, count);
        return i < 0 ? dflt : i;
}

/* ---- documents ---- */

static void check_labels(struct yn_errs *e, const struct yn_node *m, const char *path, struct bg_spec *s)
{
        if (!yn_want_map(e, m, path))
                return;
        size_t pairs = m->n / 2;
        if (pairs > SPEC_MAX_LABELS) {
                yn_err(e, m, path, "at most %d labels", SPEC_MAX_LABELS);
                return;
        }
        s->labels = xcalloc(pairs, sizeof *s->labels);
        for (size_t i = 0; i + 1 < m->n; i += 2) {
                const struct yn_node *k = m->kids[i], *v = m->kids[i + 1];
                if (k->poison)
                        continue;
                if (k->type != YN_SCALAR || k->kind != YN_STR) {
                        yn_err(e, k, path, "mapping keys must be strings");
                        continue;
                }
                _cleanup_free_ char *kp = yn_path(path, k->str);
                bool dup = false;
                for (size_t j = 0; j < s->n_labels; j++)
                        dup |= strcmp(s->labels[j].key, k->str) == 0;
                if (dup) {
                        yn_err(e, k, kp, "duplicate key");
                        continue;
                }
                bool ok = true;
                if (!label_text_valid(k->str, "._/-")) {
                        yn_err(e, k, kp, "invalid label key: letters, digits, '.', '_', '/' and '-', "
                                         "starting and ending with a letter or digit, at most 63 characters");
                        ok = false;
                }
                const char *val = yn_want_str(e, v, kp);
                if (val && *val && !label_text_valid(val, "._-")) {
                        yn_err(e, v, kp, "invalid label value: letters, digits, '.', '_' and '-', "
                                         "starting and ending with a letter or digit, at most 63 characters");
                        val = NULL;
                }
                if (!ok || !val)
                        continue;
                s->labels[s->n_labels].key = xstrdup(k->str);
                s->labels[s->n_labels].value = xstrdup(val);
                s->n_labels++;
        }
}

static void check_metadata(struct yn_errs *e, const struct yn_node *m, struct bg_spec *s)
{
        if (!yn_want_map(e, m, "metadata"))
                return;
        static const struct yn_field fields[] = { { "name", true }, { "labels", false } };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        yn_fields(e, m, "metadata", fields, ARRAY_SIZE(fields), v);
        if (v[0]) {
                const char *name = yn_want_str(e, v[0], "metadata.name");
                if (name && !spec_name_valid(name))
                        yn_err(e, v[0], "metadata.name",
                               "must be a DNS label: lowercase letters, digits and '-', "
                               "starting and ending with a letter or digit, at most 63 characters");
                else if (name)
                        s->name = xstrdup(name);
        }
        if (v[1])
                check_labels(e, v[1], "metadata.labels", s);
}

static void check_workspace(struct yn_errs *e, const struct yn_node *m, struct bg_spec *s)
{
        const char *path = "spec.workspace";
        if (!yn_want_map(e, m, path))
                return;
        static const struct yn_field fields[] = {
                { "path", true }, { "branch", false }, { "from", false }, { "include_untracked", false },
        };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        yn_fields(e, m, path, fields, ARRAY_SIZE(fields), v);
        struct spec_workspace *w = xcalloc(1, sizeof *w);
        s->workspace = w;
        if (v[0])
                check_nonempty(e, v[0], "spec.workspace.path", &w->path);
        if (v[1]) {
                const char *b = yn_want_str(e, v[1], "spec.workspace.branch");
                if (b && !branch_valid(b))
                        yn_err(e, v[1], "spec.workspace.branch",
                               "must be a git branch name: letters, digits, '.', '_', '/' and '-', "
                               "not starting with '-' or '/', without '..', at most 200 characters");
                else if (b)
                        w->branch = xstrdup(b);
        }
        if (v[2])
                check_nonempty(e, v[2], "spec.workspace.from", &w->from);
        if (v[3])
                yn_want_bool(e, v[3], "spec.workspace.include_untracked", &w->include_untracked);
}

static void check_sync_entry(struct yn_errs *e, const struct yn_node *m, const char *path,
                             struct spec_file_sync *fs)
{
        static const struct yn_field fields[] = { { "host", true }, { "guest", true }, { "mode", false } };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        if (!yn_want_map(e, m, path))
                return;
        yn_fields(e, m, path, fields, ARRAY_SIZE(fields), v);
        fs->mode = 0600;
        if (v[0]) {
                _cleanup_free_ char *p = yn_path(path, "host");
                check_nonempty(e, v[0], p, &fs->host);
        }
        if (v[1]) {
                _cleanup_free_ char *p = yn_path(path, "guest");
                const char *g = yn_want_str(e, v[1], p);
                if (g && !str_has_prefix(g, "~/") && !str_has_prefix(g, "/root/"))
                        yn_err(e, v[1], p, "must start with \"~/\" or \"/root/\"");
                else if (g && has_dotdot_component(g))
                        yn_err(e, v[1], p, "must not contain '..' components");
                else if (g && check_length(e, v[1], p, g))
                        fs->guest = xstrdup(g);
        }
        if (v[2] && !v[2]->poison) {
                _cleanup_free_ char *p = yn_path(path, "mode");
                const struct yn_node *n = v[2];
                if (n->type == YN_SCALAR && n->kind == YN_INT) {
                        /* an unquoted 0644 reads as the decimal integer 644 */
                        yn_err(e, n, p, "must be a quoted string like \"0644\"");
                } else if (yn_want_str(e, n, p)) {
                        if (!mode_valid(n->str))
                                yn_err(e, n, p, "must be an octal mode like \"0644\"");
                        else {
                                fs->mode = (unsigned)strtoul(n->str, NULL, 8);
                                fs->mode_set = true;
                        }
                }
        }
}

void spec_check_file_sync(struct yn_errs *e, const struct yn_node *seq, const char *path,
                          struct spec_file_sync **out, size_t *n)
{
        if (!yn_want_seq(e, seq, path))
                return;
        if (seq->n > SPEC_MAX_FILE_SYNC) {
                yn_err(e, seq, path, "at most %d entries", SPEC_MAX_FILE_SYNC);
                return;
        }
        *out = xcalloc(seq->n, sizeof **out);
        *n = seq->n;
        for (size_t i = 0; i < seq->n; i++) {
                _cleanup_free_ char *p = yn_path_index(path, i);
                check_sync_entry(e, seq->kids[i], p, &(*out)[i]);
        }
}

static void check_ports(struct yn_errs *e, const struct yn_node *seq, struct bg_spec *s)
{
        const char *path = "spec.ports";
        if (!yn_want_seq(e, seq, path))
                return;
        if (seq->n > SPEC_MAX_PORTS) {
                yn_err(e, seq, path, "at most %d entries", SPEC_MAX_PORTS);
                return;
        }
        s->ports = xcalloc(seq->n, sizeof *s->ports);
        s->n_ports = seq->n;
        static const struct yn_field fields[] = { { "host", true }, { "guest", true } };
        for (size_t i = 0; i < seq->n; i++) {
                _cleanup_free_ char *p = yn_path_index(path, i);
                const struct yn_node *m = seq->kids[i];
                const struct yn_node *v[ARRAY_SIZE(fields)];
                if (!yn_want_map(e, m, p))
                        continue;
                yn_fields(e, m, p, fields, ARRAY_SIZE(fields), v);
                long long x;
                for (size_t f = 0; f < ARRAY_SIZE(fields); f++) {
                        _cleanup_free_ char *fp = yn_path(p, fields[f].name);
                        if (v[f] && yn_want_int(e, v[f], fp, 1, 65535, &x))
                                *(f == 0 ? &s->ports[i].host : &s->ports[i].guest) = (unsigned)x;
                }
        }
}

static void check_spec(struct yn_errs *e, const struct yn_node *m, struct bg_spec *s)
{
        enum { STATE, IMAGE, KERNEL, HV, VCPU, MEM, DISK, RESTART, NAT, WS, SYNC, PORTS, IDLE };
        static const struct yn_field fields[] = {
                [STATE] = { "state", false },   [IMAGE] = { "image", false },
                [KERNEL] = { "kernel", false }, [HV] = { "hypervisor", false },
                [VCPU] = { "vcpu", false },     [MEM] = { "memory_mib", false },
                [DISK] = { "disk_size", false }, [RESTART] = { "restart", false },
                [NAT] = { "nat", false },       [WS] = { "workspace", false },
                [SYNC] = { "file_sync", false }, [PORTS] = { "ports", false },
                [IDLE] = { "idle_timeout", false },
        };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        if (!yn_want_map(e, m, "spec"))
                return;
        yn_fields(e, m, "spec", fields, ARRAY_SIZE(fields), v);
        if (v[STATE])
                s->state = check_enum(e, v[STATE], "spec.state", state_names,
                                      ARRAY_SIZE(state_names), SPEC_STATE_RUNNING);
        if (v[IMAGE])
                spec_check_ref(e, v[IMAGE], "spec.image", &s->image);
        if (v[KERNEL])
                spec_check_ref(e, v[KERNEL], "spec.kernel", &s->kernel);
        if (v[HV])
                s->hypervisor = check_enum(e, v[HV], "spec.hypervisor", hv_names,
                                           ARRAY_SIZE(hv_names), SPEC_HV_AUTO);
        if (v[VCPU])
                spec_check_vcpu(e, v[VCPU], "spec.vcpu", &s->vcpu);
        if (v[MEM])
                spec_check_memory(e, v[MEM], "spec.memory_mib", &s->memory_mib);
        if (v[DISK])
                spec_check_disk_size(e, v[DISK], "spec.disk_size", &s->disk_size);
        if (v[RESTART])
                s->restart = check_enum(e, v[RESTART], "spec.restart", restart_names,
                                        ARRAY_SIZE(restart_names), SPEC_RESTART_ON_FAILURE);
        if (v[NAT])
                yn_want_bool(e, v[NAT], "spec.nat", &s->nat);
        if (v[WS])
                check_workspace(e, v[WS], s);
        if (v[SYNC])
                spec_check_file_sync(e, v[SYNC], "spec.file_sync", &s->file_sync, &s->n_file_sync);
        if (v[PORTS])
                check_ports(e, v[PORTS], s);
        if (v[IDLE])
                check_idle_timeout(e, v[IDLE], "spec.idle_timeout", &s->idle_timeout_ms);
}

struct bg_spec *spec_check_tree(const struct yn_node *root, struct yn_errs *e)
{
        size_t before = e->n;
        if (root->poison)
                return NULL;
        if (root->type != YN_MAP) {
                yn_err(e, root, "", "a sandbox document must be a mapping");
                return NULL;
        }
        static const struct yn_field fields[] = {
                { "apiVersion", true }, { "kind", true }, { "metadata", true }, { "spec", false },
        };
        const struct yn_node *v[ARRAY_SIZE(fields)];
        yn_fields(e, root, "", fields, ARRAY_SIZE(fields), v);

        struct bg_spec *s = xcalloc(1, sizeof *s);
        /* apiVersion and kind are constants: any other value, of any type,
         * gets the one message that says what to write. */
        if (v[0] && !v[0]->poison &&
            (v[0]->type != YN_SCALAR || v[0]->kind != YN_STR || strcmp(v[0]->str, SPEC_API_VERSION) != 0))
                yn_err(e, v[0], "apiVersion", "must be \"%s\"", SPEC_API_VERSION);
        if (v[1] && !v[1]->poison &&
            (v[1]->type != YN_SCALAR || v[1]->kind != YN_STR || strcmp(v[1]->str, SPEC_KIND) != 0))
                yn_err(e, v[1], "kind", "must be \"%s\"", SPEC_KIND);
        if (v[2])
                check_metadata(e, v[2], s);
        if (v[3])
                check_spec(e, v[3], s);
        if (!s->kernel)
                s->kernel = xstrdup("default");
        if (e->n != before) {
                spec_free(s);
                return NULL;
        }
        return s;
}

char *spec_tree_name(const struct yn_node *root)
{
        const struct yn_node *n = yn_get(yn_get(root, "metadata"), "name");
        if (!n || n->type != YN_SCALAR || n->kind != YN_STR)
                return NULL;
        return xstrdup(n->str);
}

/* ---- files ---- */

static void add_error(struct spec_error **v, size_t *n, const char *file, const struct yn_msg *m)
{
        *v = xreallocarray(*v, *n + 1, sizeof **v);
        (*v)[(*n)++] = (struct spec_error){
                .file = xstrdup(file), .line = m->line, .column = m->column,
                .field = xstrdup(m->field ? m->field : ""), .reason = xstrdup(m->reason),
        };
}

static void on_doc(struct yn_doc *d, void *ctx)
{
        struct spec_file *f = ctx;
        /* An empty document ("---" at the end of a file) is no sandbox. */
        if (d->errs.n == 0 && (!d->root || (d->root->type == YN_SCALAR && d->root->kind == YN_NULL)))
                return;
        f->docs = xreallocarray(f->docs, f->n_docs + 1, sizeof *f->docs);
        struct spec_doc *doc = &f->docs[f->n_docs++];
        memset(doc, 0, sizeof *doc);
        doc->line = d->line;
        doc->raw = xstrndup(d->raw ? d->raw : "", d->raw_len);
        doc->name = d->root ? spec_tree_name(d->root) : NULL;

        struct yn_errs e = d->errs;
        memset(&d->errs, 0, sizeof d->errs);
        if (d->root && !d->truncated)
                doc->spec = spec_check_tree(d->root, &e);
        if (e.n) {
                spec_free(doc->spec);
                doc->spec = NULL;
        }
        yn_errs_sort(&e);
        for (size_t i = 0; i < e.n; i++)
                add_error(&doc->errors, &doc->n_errors, f->path, &e.v[i]);
        yn_errs_release(&e);
}

int spec_parse_buffer(const char *path, const char *buf, size_t len, struct spec_file **out)
{
        struct spec_file *f = xcalloc(1, sizeof *f);
        f->path = xstrdup(path ? path : "-");
        *out = f;
        if (len > SPEC_MAX_FILE_BYTES) {
                struct yn_msg m = { 0, 0, (char *)"", NULL };
                m.reason = xasprintf("file is larger than %d bytes", SPEC_MAX_FILE_BYTES);
                add_error(&f->errors, &f->n_errors, f->path, &m);
                free(m.reason);
                return 0;
        }
        struct yn_msg serr;
        if (yn_parse(buf ? buf : "", buf ? len : 0, &spec_yn_limits, on_doc, f, &serr) < 0)
                add_error(&f->errors, &f->n_errors, f->path, &serr);
        yn_msg_release(&serr);
        return 0;
}

struct spec_file *spec_file_error(const char *path, const char *reason)
{
        struct spec_file *f = xcalloc(1, sizeof *f);
        f->path = xstrdup(path);
        struct yn_msg m = { 0, 0, (char *)"", (char *)reason };
        add_error(&f->errors, &f->n_errors, f->path, &m);
        return f;
}

/* A read error as a file-level spec error. */
static struct spec_file *read_error(const char *path, const struct bg_err *err)
{
        if (err->code == EFBIG) {
                _cleanup_free_ char *r = xasprintf("file is larger than %d bytes", SPEC_MAX_FILE_BYTES);
                return spec_file_error(path, r);
        }
        if (err->code == EINVAL)
                return spec_file_error(path, "not a regular file");
        if (err->code == EPERM)
                return spec_file_error(path, err->msg);
        _cleanup_free_ char *r = xasprintf("cannot read: %s", strerror(err->code));
        /* strerror is capitalised; our messages are not */
        size_t p = strlen("cannot read: ");
        if (r[p] >= 'A' && r[p] <= 'Z')
                r[p] = (char)(r[p] - 'A' + 'a');
        return spec_file_error(path, r);
}

int spec_parse_path(const char *path, struct spec_file **out)
{
        return spec_parse_path_owned(path, (uid_t)-1, out);
}

int spec_parse_path_owned(const char *path, uid_t owner, struct spec_file **out)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct bg_err *err = NULL;
        if (read_file_owned(path, SPEC_MAX_FILE_BYTES, owner, &buf, &len, &err) < 0) {
                *out = read_error(path, err);
                bg_err_free(err);
                return 0;
        }
        return spec_parse_buffer(path, buf, len, out);
}

bool spec_file_ok(const struct spec_file *f)
{
        if (!f || f->n_errors)
                return false;
        for (size_t i = 0; i < f->n_docs; i++)
                if (!f->docs[i].spec || f->docs[i].n_errors)
                        return false;
        return true;
}

static void errors_free(struct spec_error *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].file);
                free(v[i].field);
                free(v[i].reason);
        }
        free(v);
}

void spec_file_free(struct spec_file *f)
{
        if (!f)
                return;
        for (size_t i = 0; i < f->n_docs; i++) {
                struct spec_doc *d = &f->docs[i];
                spec_free(d->spec);
                free(d->name);
                free(d->raw);
                errors_free(d->errors, d->n_errors);
        }
        free(f->docs);
        errors_free(f->errors, f->n_errors);
        free(f->path);
        free(f);
}

char *spec_error_format(const struct spec_error *e)
{
        const char *file = e->file ? e->file : "-";
        _cleanup_free_ char *where = e->line ? xasprintf("%s:%u:%u", file, e->line, e->column)
                                             : xstrdup(file);
        if (e->field && *e->field)
                return xasprintf("%s: %s: %s", where, e->field, e->reason);
        return xasprintf("%s: %s", where, e->reason);
}

const char *spec_state_name(enum spec_state s)
{
        return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

const char *spec_hypervisor_name(enum spec_hypervisor h)
{
        return (unsigned)h < ARRAY_SIZE(hv_names) ? hv_names[h] : "unknown";
}

const char *spec_restart_name(enum spec_restart r)
{
        return (unsigned)r < ARRAY_SIZE(restart_names) ? restart_names[r] : "unknown";
}
