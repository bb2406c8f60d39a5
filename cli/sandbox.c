/* sandbox: see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <string.h>

#include "err.h"
#include "spec.h"
#include "util.h"

json_t *sbx_get(const json_t *obj, const char *path)
{
        const json_t *cur = obj;
        const char *p = path;
        while (cur && *p) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                if (!json_is_object(cur))
                        return NULL;
                cur = json_object_getn(cur, p, n);
                p += n;
                if (*p == '.')
                        p++;
        }
        return (json_t *)cur;
}

const char *sbx_str(const json_t *obj, const char *path)
{
        return json_string_value(sbx_get(obj, path));
}

const char *sbx_condition(const json_t *obj, const char *type, const char **message)
{
        const json_t *conds = sbx_get(obj, "status.conditions");
        size_t i;
        json_t *c;
        if (message)
                *message = "";
        json_array_foreach(conds, i, c) {
                const char *t = json_string_value(json_object_get(c, "type"));
                if (!t || strcmp(t, type) != 0)
                        continue;
                const char *m = json_string_value(json_object_get(c, "message"));
                if (message && m)
                        *message = m;
                return json_string_value(json_object_get(c, "status"));
        }
        return NULL;
}

int sbx_spec(const json_t *obj, struct bg_spec **out, struct bg_err **err)
{
        const char *name = sbx_str(obj, "metadata.name");
        json_t *spec = sbx_get(obj, "spec");
        json_t *labels = sbx_get(obj, "metadata.labels");
        *out = NULL;
        if (!name || !json_is_object(spec))
                return bg_error(err, ENODATA, "bangerd reports no spec for \"%s\"", name ? name : "?");

        /* Only what spec_from_json knows: the API's metadata also carries
         * id, files and createdAt. */
        json_t *meta = json_pack("{s:s}", "name", name);
        if (json_is_object(labels))
                json_object_set(meta, "labels", labels);
        json_t *doc = json_pack("{s:s, s:s, s:o, s:O}", "apiVersion", SPEC_API_VERSION, "kind", SPEC_KIND,
                                "metadata", meta, "spec", spec);
        if (!doc)
                abort();   /* only on out of memory */
        int r = spec_from_json(doc, out, err);
        json_decref(doc);
        if (r < 0)
                return bg_error_wrap(err, "read bangerd's spec of \"%s\"", name);
        return 0;
}
