/* qemu_accel: which acceleration QEMU guests get on this host.
 *
 * KVM only when /dev/kvm opens AND a probe guest really boots under it:
 * some hosts have a /dev/kvm whose 64-bit guests hang (a paravirtual KVM in
 * a VM; shared/notes/platform.md).  The probe boots the sandbox's own
 * kernel and initramfs with banger.probe=1 (the initramfs prints
 * banger-probe-ok and powers off) under a 20 s limit, once per host boot:
 * the verdict and its reason are cached in a JSON file keyed by
 * /proc/sys/kernel/random/boot_id.  Otherwise TCG, with the kernel clock
 * flags microvm needs there (tsc_early_khz from the host's "cpu MHz").
 */
#ifndef BANGER_QEMU_ACCEL_H
#define BANGER_QEMU_ACCEL_H

#include <pthread.h>

enum qemu_accel_kind { QEMU_ACCEL_UNDECIDED, QEMU_ACCEL_TCG, QEMU_ACCEL_KVM };

struct qemu_accel {
        pthread_mutex_t mu;
        enum qemu_accel_kind kind;
        char why[256];
        unsigned long tsc_khz;   /* host TSC kHz, 0 when unknown */
        char *bin;               /* qemu binary for the probe */
        char *cache;             /* the verdict file */
};

/* TCG at once when /dev/kvm does not open; else the verdict cached for this
 * boot in cache_path, else undecided. */
void qemu_accel_init(struct qemu_accel *a, const char *qemu_bin, const char *cache_path);
void qemu_accel_release(struct qemu_accel *a);
/* The verdict, probing with this kernel when undecided (blocks up to 20 s,
 * once; concurrent callers wait for the same probe). */
enum qemu_accel_kind qemu_accel_decide(struct qemu_accel *a, const char *vmlinuz, const char *initrd);
/* The current verdict; why (len bytes, may be NULL) gets the reason. */
enum qemu_accel_kind qemu_accel_get(struct qemu_accel *a, char *why, size_t len);
/* "kvm", "tcg", "undecided". */
const char *qemu_accel_name(enum qemu_accel_kind k);
/* Kernel command line flags for k (" clocksource=jiffies ..." or ""), heap. */
char *qemu_accel_cmdline(const struct qemu_accel *a, enum qemu_accel_kind k);

#endif
