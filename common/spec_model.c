/* spec_model: owning, copying and comparing bg_specs, and the size text
 * helpers.  spec_diff compares canonical values (so "1024M" and "1G", or
 * an unset and a "0600" file_sync mode, are no change) and tags each
 * change with what it costs a running sandbox; the plan and `apply`
 * refuse or confirm based on the strongest impact.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"
#include "spec_internal.h"
#include "util.h"

#define MIB ((uint64_t)1024 * 1024)
#define GIB (1024 * MIB)

/* ---- sizes ---- */

int spec_size_parse(const char *s, uint64_t *bytes)
{
        if (!s || s[0] < '1' || s[0] > '9')
                return -1;
        size_t digits = 0;
        uint64_t v = 0;
        while (s[digits] >= '0' && s[digits] <= '9') {
                v = v * 10 + (uint64_t)(s[digits] - '0');
                if (++digits > 7)
                        return -1;
        }
        if ((s[digits] != 'G' && s[digits] != 'M') || s[digits + 1] != '\0')
                return -1;
        if (s[digits] == 'G' && digits <= 4)
                v *= GIB;
        else if (s[digits] == 'M')
                v *= MIB;
        else
                return -1;
        if (bytes)
                *bytes = v;
        return 0;
}

void spec_size_format(uint64_t bytes, char *buf, size_t len)
{
        if (bytes % GIB == 0)
                snprintf(buf, len, "%" PRIu64 "G", bytes / GIB);
        else
                snprintf(buf, len, "%" PRIu64 "M", bytes / MIB);
}

/* ---- lifetime ---- */

static void workspace_free(struct spec_workspace *w)
{
        if (!w)
                return;
        free(w->path);
        free(w->branch);
        free(w->from);
        free(w);
}

void spec_free(struct bg_spec *s)
{
        if (!s)
                return;
        free(s->name);
        for (size_t i = 0; i < s->n_labels; i++) {
                free(s->labels[i].key);
                free(s->labels[i].value);
        }
        free(s->labels);
        free(s->image);
        free(s->kernel);
        workspace_free(s->workspace);
        for (size_t i = 0; i < s->n_file_sync; i++) {
                free(s->file_sync[i].host);
                free(s->file_sync[i].guest);
        }
        free(s->file_sync);
        free(s->ports);
        free(s);
}

static char *dup_or_null(const char *s)
{
        return s ? xstrdup(s) : NULL;
}

struct bg_spec *spec_dup(const struct bg_spec *s)
{
        if (!s)
                return NULL;
        struct bg_spec *d = xmalloc(sizeof *d);
        *d = *s;
        d->name = dup_or_null(s->name);
        d->image = dup_or_null(s->image);
        d->kernel = dup_or_null(s->kernel);
        d->labels = xcalloc(s->n_labels, sizeof *d->labels);
        for (size_t i = 0; i < s->n_labels; i++) {
                d->labels[i].key = xstrdup(s->labels[i].key);
                d->labels[i].value = xstrdup(s->labels[i].value);
        }
        if (s->workspace) {
                d->workspace = xmalloc(sizeof *d->workspace);
                *d->workspace = *s->workspace;
                d->workspace->path = dup_or_null(s->workspace->path);
                d->workspace->branch = dup_or_null(s->workspace->branch);
                d->workspace->from = dup_or_null(s->workspace->from);
        }
        d->file_sync = xcalloc(s->n_file_sync, sizeof *d->file_sync);
        for (size_t i = 0; i < s->n_file_sync; i++) {
                d->file_sync[i] = s->file_sync[i];
                d->file_sync[i].host = dup_or_null(s->file_sync[i].host);
                d->file_sync[i].guest = dup_or_null(s->file_sync[i].guest);
        }
        d->ports = xcalloc(s->n_ports, sizeof *d->ports);
        if (s->n_ports)
                memcpy(d->ports, s->ports, s->n_ports * sizeof *d->ports);
        return d;
}

/* ---- diff ---- */

struct changes {
        struct spec_change *v;
        size_t n;
};

/* Takes ownership of old_v and new_v; records nothing when they are equal. */
static void change(struct changes *c, const char *field, char *old_v, char *new_v, enum spec_impact impact)
{
        if (!old_v && !new_v)
                return;
        if (old_v && new_v && strcmp(old_v, new_v) == 0) {
                free(old_v);
                free(new_v);
                return;
        }
        c->v = xreallocarray(c->v, c->n + 1, sizeof *c->v);
        c->v[c->n++] = (struct spec_change){ xstrdup(field), old_v, new_v, impact };
}

static char *uint_text(uint64_t v)
{
        return v ? xasprintf("%" PRIu64, v) : NULL;
}

static char *size_text(uint64_t v)
{
        char buf[32];
        if (!v)
                return NULL;
        spec_size_format(v, buf, sizeof buf);
        return xstrdup(buf);
}

/* Compact JSON text, NULL for an absent part or an empty list. */
static char *json_text(json_t *j)
{
        char *s = NULL;
        if (j && !(json_is_array(j) && json_array_size(j) == 0))
                s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        return s;
}

static const char *label_get(const struct bg_spec *s, const char *key)
{
        for (size_t i = 0; i < s->n_labels; i++)
                if (strcmp(s->labels[i].key, key) == 0)
                        return s->labels[i].value;
        return NULL;
}

static void diff_labels(struct changes *c, const struct bg_spec *a, const struct bg_spec *b)
{
        for (size_t i = 0; i < a->n_labels; i++) {
                char *f = yn_path("metadata.labels", a->labels[i].key);
                change(c, f, xstrdup(a->labels[i].value), dup_or_null(label_get(b, a->labels[i].key)),
                       SPEC_IMPACT_NONE);
                free(f);
        }
        for (size_t i = 0; i < b->n_labels; i++) {
                if (label_get(a, b->labels[i].key))
                        continue;
                char *f = yn_path("metadata.labels", b->labels[i].key);
                change(c, f, NULL, xstrdup(b->labels[i].value), SPEC_IMPACT_NONE);
                free(f);
        }
}

/* "30m", or NULL when unset (0). */
static char *duration_text(uint64_t ms)
{
        if (!ms)
                return NULL;
        char buf[48];
        spec_duration_format(ms, buf, sizeof buf);
        return xstrdup(buf);
}

void spec_diff(const struct bg_spec *a, const struct bg_spec *b, struct spec_change **out, size_t *n)
{
        struct changes c = { 0 };
        /* A different name is a different sandbox: never edit in place. */
        change(&c, "metadata.name", dup_or_null(a->name), dup_or_null(b->name), SPEC_IMPACT_RECREATE);
        diff_labels(&c, a, b);
        change(&c, "spec.state", xstrdup(spec_state_name(a->state)), xstrdup(spec_state_name(b->state)),
               SPEC_IMPACT_STATE);
        change(&c, "spec.image", dup_or_null(a->image), dup_or_null(b->image), SPEC_IMPACT_RECREATE);
        change(&c, "spec.kernel", dup_or_null(a->kernel ? a->kernel : "default"),
               dup_or_null(b->kernel ? b->kernel : "default"), SPEC_IMPACT_RECREATE);
        change(&c, "spec.hypervisor", xstrdup(spec_hypervisor_name(a->hypervisor)),
               xstrdup(spec_hypervisor_name(b->hypervisor)), SPEC_IMPACT_RECREATE);
        change(&c, "spec.vcpu", uint_text(a->vcpu), uint_text(b->vcpu), SPEC_IMPACT_RESTART);
        change(&c, "spec.memory_mib", uint_text(a->memory_mib), uint_text(b->memory_mib), SPEC_IMPACT_RESTART);
        change(&c, "spec.disk_size", size_text(a->disk_size), size_text(b->disk_size), SPEC_IMPACT_RECREATE);
        change(&c, "spec.restart", xstrdup(spec_restart_name(a->restart)), xstrdup(spec_restart_name(b->restart)),
               SPEC_IMPACT_NONE);
        change(&c, "spec.nat", xstrdup(a->nat ? "true" : "false"), xstrdup(b->nat ? "true" : "false"),
               SPEC_IMPACT_RESTART);
        change(&c, "spec.workspace", json_text(spec_json_workspace(a->workspace)),
               json_text(spec_json_workspace(b->workspace)), SPEC_IMPACT_RECREATE);
        /* file_sync, like the workspace, is the work disk's initial content:
         * a restart would change nothing. */
        change(&c, "spec.file_sync", json_text(spec_json_file_sync(a)), json_text(spec_json_file_sync(b)),
               SPEC_IMPACT_RECREATE);
        change(&c, "spec.ports", json_text(spec_json_ports(a)), json_text(spec_json_ports(b)),
               SPEC_IMPACT_RESTART);
        /* Read by the idle poller from the applied spec: nothing to redo. */
        change(&c, "spec.idle_timeout", duration_text(a->idle_timeout_ms), duration_text(b->idle_timeout_ms),
               SPEC_IMPACT_NONE);
        *out = c.v;
        *n = c.n;
}

void spec_changes_free(struct spec_change *c, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(c[i].field);
                free(c[i].old_value);
                free(c[i].new_value);
        }
        free(c);
}

enum spec_impact spec_changes_impact(const struct spec_change *c, size_t n)
{
        enum spec_impact max = SPEC_IMPACT_NONE;
        for (size_t i = 0; i < n; i++)
                if (c[i].impact > max)
                        max = c[i].impact;
        return max;
}

const char *spec_impact_name(enum spec_impact i)
{
        switch (i) {
        case SPEC_IMPACT_NONE:
                return "none";
        case SPEC_IMPACT_STATE:
                return "state";
        case SPEC_IMPACT_RESTART:
                return "restart";
        case SPEC_IMPACT_RECREATE:
                return "recreate";
        }
        return "unknown";
}
