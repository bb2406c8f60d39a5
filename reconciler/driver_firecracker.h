/* driver_firecracker: the Firecracker driver (driver_firecracker_new is in
 * driver.h), and the usability check that `hypervisor: auto` and
 * `banger doctor` share. */
#ifndef BANGER_DRIVER_FIRECRACKER_H
#define BANGER_DRIVER_FIRECRACKER_H

#include <stdbool.h>
#include <stddef.h>

struct driver_env;

/* True when this host can run Firecracker VMs: the binary
 * (env->cfg->firecracker_bin, else `firecracker` on PATH) answers
 * --version, and /dev/kvm opens read-write, speaks KVM API 12 and creates
 * a VM with a vCPU.  When false, why (len bytes) says what is missing,
 * e.g. "firecracker binary not found on PATH".  Does not boot a guest (see
 * the note in driver_firecracker.c). */
bool firecracker_usable(const struct driver_env *env, char *why, size_t len);

#endif
