/* drivers: see drivers.h. */
#include "drivers.h"

#include <errno.h>
#include <string.h>

#include "err.h"
#include "spec.h"

struct driver *drivers_find(const struct drivers *ds, const char *name)
{
        for (size_t i = 0; name && i < ds->n; i++)
                if (strcmp(ds->v[i]->ops->name, name) == 0)
                        return ds->v[i];
        return NULL;
}

int drivers_pick(const struct drivers *ds, const struct bg_spec *spec, struct driver **out, struct bg_err **err)
{
        if (ds->n == 0)
                return bg_error(err, ENODEV, "no hypervisor driver is available");
        struct driver *fc = drivers_find(ds, "firecracker");
        struct driver *qemu = drivers_find(ds, "qemu");
        if (ds->forced) {
                struct driver *only = ds->v[0];
                const char *asked = spec->hypervisor == SPEC_HV_AUTO ? NULL : spec_hypervisor_name(spec->hypervisor);
                if (asked && strcmp(only->ops->name, "fake") != 0 && strcmp(asked, only->ops->name) != 0)
                        return bg_error(err, EINVAL, "spec asks for hypervisor %s but bangerd runs only %s", asked,
                                        only->ops->name);
                *out = only;
                return 0;
        }
        switch (spec->hypervisor) {
        case SPEC_HV_FIRECRACKER:
                if (!fc || !ds->firecracker_usable)
                        return bg_error(err, ENODEV, "hypervisor firecracker is not usable here: %s",
                                        ds->why_not_firecracker[0] ? ds->why_not_firecracker : "no driver");
                *out = fc;
                return 0;
        case SPEC_HV_QEMU:
                if (!qemu)
                        return bg_error(err, ENODEV, "hypervisor qemu is not usable here: qemu-system-x86_64 not found");
                *out = qemu;
                return 0;
        case SPEC_HV_AUTO:
                break;
        }
        if (fc && ds->firecracker_usable)
                *out = fc;
        else if (qemu)
                *out = qemu;
        else
                *out = ds->v[0];
        return 0;
}

void drivers_release(struct drivers *ds)
{
        for (size_t i = 0; i < ds->n; i++)
                ds->v[i]->ops->free(ds->v[i]);
        ds->n = 0;
}
