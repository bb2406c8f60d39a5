/* vmdefaults: fill what a spec left unset, with where each value came from.
 * Order: the spec, then config vm_defaults, then host heuristics (cpus/4
 * capped at 4; RAM/8 capped at 8 GiB; 8 GiB disk), then a built-in floor
 * (1 vCPU, 512 MiB).  `doctor` and `vm run` print the provenance. */
#ifndef BANGER_VMDEFAULTS_H
#define BANGER_VMDEFAULTS_H

#include "config.h"
#include "spec.h"

struct vm_provenance {
        const char *vcpu;        /* "spec", "config", "host", "floor" */
        const char *memory_mib;
        const char *disk_size;
        const char *image;
};

/* Fill spec's unset vcpu, memory_mib, disk_size and image in place. */
void vmdefaults_resolve(const struct bg_config *cfg, struct bg_spec *spec, struct vm_provenance *prov);

#endif
