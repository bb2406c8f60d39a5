/* vmdefaults: see vmdefaults.h. */
#include "vmdefaults.h"

#include <unistd.h>

#include "util.h"

#define DEFAULT_IMAGE "debian-bookworm"

void vmdefaults_resolve(const struct bg_config *cfg, struct bg_spec *spec, struct vm_provenance *prov)
{
        struct vm_provenance p = { "spec", "spec", "spec", "spec" };
        if (!spec->vcpu) {
                long cpus = sysconf(_SC_NPROCESSORS_ONLN);
                unsigned host = cpus > 0 ? (unsigned)(cpus / 4) : 0;
                if (host > 4)
                        host = 4;
                if (cfg && cfg->vm_defaults.vcpu)
                        spec->vcpu = cfg->vm_defaults.vcpu, p.vcpu = "config";
                else if (host >= 1)
                        spec->vcpu = host, p.vcpu = "host";
                else
                        spec->vcpu = 1, p.vcpu = "floor";
        }
        if (!spec->memory_mib) {
                long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
                uint64_t mib = (pages > 0 && psize > 0) ? (uint64_t)pages * (uint64_t)psize / 8 / (1024 * 1024) : 0;
                if (mib > 8192)
                        mib = 8192;
                if (cfg && cfg->vm_defaults.memory_mib)
                        spec->memory_mib = cfg->vm_defaults.memory_mib, p.memory_mib = "config";
                else if (mib >= 512)
                        spec->memory_mib = (unsigned)mib, p.memory_mib = "host";
                else
                        spec->memory_mib = 512, p.memory_mib = "floor";
        }
        if (!spec->disk_size) {
                if (cfg && cfg->vm_defaults.disk_size)
                        spec->disk_size = cfg->vm_defaults.disk_size, p.disk_size = "config";
                else
                        spec->disk_size = 8ULL << 30, p.disk_size = "host";
        }
        if (!spec->image) {
                if (cfg && cfg->default_image)
                        spec->image = xstrdup(cfg->default_image), p.image = "config";
                else
                        spec->image = xstrdup(DEFAULT_IMAGE), p.image = "floor";
        }
        if (prov)
                *prov = p;
}
