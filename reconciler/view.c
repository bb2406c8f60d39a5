/* view: see view.h. */
#include "view.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static json_t *condition(const char *type, bool ok, const char *message)
{
        return json_pack("{s:s, s:s, s:s}", "type", type, "status", ok ? "True" : "False",
                         "message", message ? message : "");
}

static json_t *hash_json(uint64_t h)
{
        char buf[17];
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
        return json_string(buf);
}

static json_t *time_json(int64_t ms)
{
        char buf[40];
        format_time_ms(ms, buf, sizeof buf);
        return json_string(buf);
}

json_t *view_sandbox(const char *name, const struct desired *d, const struct store_record *r,
                     const char *hypervisor)
{
        json_t *obj = NULL;
        if (d && d->spec) {
                obj = spec_to_json(d->spec);
        } else if (r && r->spec_json) {
                obj = json_loads(r->spec_json, 0, NULL);
        }
        if (!obj || !json_is_object(obj)) {
                json_decref(obj);
                obj = json_pack("{s:s, s:s, s:{s:s}, s:{}}", "apiVersion", SPEC_API_VERSION, "kind", SPEC_KIND,
                                "metadata", "name", name, "spec");
        }
        json_t *meta = json_object_get(obj, "metadata");
        if (r) {
                json_object_set_new(meta, "id", json_string(r->id));
                json_object_set_new(meta, "createdAt", time_json(r->created_ms));
        }
        json_t *files = json_array();
        for (size_t i = 0; d && i < d->n_files; i++)
                json_array_append_new(files, json_string(d->files[i]));
        json_object_set_new(meta, "files", files);

        json_t *errors = json_array();
        for (size_t i = 0; d && i < d->n_errors; i++)
                json_array_append_new(errors, json_string(d->errors[i]));

        enum bg_phase phase = r ? r->phase : PHASE_PENDING;
        bool valid = !d || d->spec;
        bool want_running = true;
        if (d && d->spec)
                want_running = d->spec->state == SPEC_STATE_RUNNING;
        else if (r && r->spec_json) {
                json_t *st = json_object_get(json_object_get(obj, "spec"), "state");
                want_running = !json_is_string(st) || strcmp(json_string_value(st), "stopped") != 0;
        }
        bool have_desired = d && (d->spec || r);
        uint64_t desired_hash = d && d->spec ? d->hash : (r ? r->spec_hash : 0);
        bool converged = have_desired && r && r->spec_hash == desired_hash &&
                         phase == (want_running ? PHASE_RUNNING : PHASE_STOPPED);
        const char *why = converged ? "" :
                          !d ? "no spec wants this sandbox; deleting" :
                          !r ? (d->spec ? "waiting for the control loop" : "spec is invalid; nothing created") :
                          r->message ? r->message : phase_name(phase);

        json_t *conds = json_array();
        json_array_append_new(conds, condition("SpecValid", valid, valid ? "" : (d->n_errors ? d->errors[0] : "invalid")));
        json_array_append_new(conds, condition("Converged", converged, why));

        json_t *status = json_pack("{s:s, s:s, s:i, s:o, s:s, s:o, s:o, s:o, s:o, s:o}",
                                   "phase", phase_name(phase),
                                   "message", r && r->message ? r->message : "",
                                   "restarts", r ? (json_int_t)r->restarts : 0,
                                   "lastExit", r && r->last_exit >= 0 ? json_integer(r->last_exit) : json_null(),
                                   "hypervisor", hypervisor,
                                   "specHash", r ? hash_json(r->spec_hash) : json_null(),
                                   "desiredHash", have_desired ? hash_json(desired_hash) : json_null(),
                                   "phaseSince", r ? time_json(r->phase_since_ms) : json_null(),
                                   "errors", errors,
                                   "conditions", conds);
        if (r && r->handles_json) {
                /* The network allocation, recorded by the loop in the handles. */
                json_t *h = json_loads(r->handles_json, 0, NULL);
                json_t *net = json_object_get(h, "net");
                const char *keys[] = { "ip", "tap", "mac" };
                for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
                        json_t *v = json_object_get(net, keys[i]);
                        if (json_is_string(v))
                                json_object_set(status, keys[i], v);
                }
                json_decref(h);
        }
        json_object_set_new(obj, "status", status);
        return obj;
}
