/* driver_qemu: what the QEMU driver (driver_qemu_new is in driver.h) tells
 * `banger doctor` beyond the vtable. */
#ifndef BANGER_DRIVER_QEMU_H
#define BANGER_DRIVER_QEMU_H

struct driver;

/* The acceleration d uses: *accel is "kvm", "tcg", or "undecided" (/dev/kvm
 * opens but no guest has been probed on it since boot: the first start
 * decides), and *why one line on how that was decided, e.g. "/dev/kvm: No
 * such file or directory" or "kvm probe guest booted".  Both strings are
 * d's and valid until the next start.  -EINVAL when d is not a qemu
 * driver. */
int qemu_accel_info(struct driver *d, const char **accel, const char **why);

#endif
