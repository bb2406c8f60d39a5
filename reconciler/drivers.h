/* drivers: the hypervisor drivers one bangerd runs, and which one a
 * sandbox gets.
 *
 * A record remembers its driver by name (handles "driver"), so a sandbox
 * stays on the hypervisor that made it; a new sandbox gets one from its
 * spec: `firecracker` and `qemu` ask for that driver, `auto` takes
 * Firecracker when it is usable here (binary and working KVM), else QEMU.
 * `bangerd --driver NAME` runs only that driver: every sandbox uses it,
 * and a spec that names another hypervisor is an error on that sandbox.
 */
#ifndef BANGER_DRIVERS_H
#define BANGER_DRIVERS_H

#include <stdbool.h>
#include <stddef.h>

#include "driver.h"

struct bg_err;
struct bg_spec;

#define DRIVERS_MAX 4

struct drivers {
        struct driver *v[DRIVERS_MAX];
        size_t n;
        bool forced;              /* --driver NAME: one driver for everything */
        bool firecracker_usable;  /* for auto */
        char why_not_firecracker[256];
};

/* The driver called name ("fake", "qemu", "firecracker"), or NULL. */
struct driver *drivers_find(const struct drivers *ds, const char *name);
/* The driver a sandbox with this spec gets. */
int drivers_pick(const struct drivers *ds, const struct bg_spec *spec, struct driver **out, struct bg_err **err);
/* Free every driver. */
void drivers_release(struct drivers *ds);

#endif
