/* initramfs: banger's own initramfs for every imported kernel: a static
 * busybox, the virtio/vsock/ACPI-button modules in load order, and an
 * /init script that finds the root disk, sets the network up from the
 * kernel command line and switch_roots.  Written as a gzip'd newc cpio
 * with libarchive (no cpio binary).
 *
 * /init reads these from /proc/cmdline (the VMM drivers' contract):
 *   root=DEV            root device (default /dev/vda; LABEL=/UUID= work)
 *   banger.work=DEV     optional disk mounted at /root in the new root
 *   banger.ip=A.B.C.D/N banger.gw=A.B.C.D banger.dns=A[,B] banger.hostname=H
 *                       eth0 address, default route, resolv.conf, hostname
 *   banger.init=PATH    what to exec in the new root (default /sbin/init)
 *   banger.probe=1      print "banger-probe-ok" once the modules are in,
 *                       then power off (does this VMM boot Linux at all?)
 *   banger.agent=serial|vsock:PORT  start /bin/banger-agent on that channel
 *                       once its driver is loaded; it moves into the root
 *                       just before switch_root (docs/agent-protocol.md)
 * Any failure prints "banger-init: <what failed>" and powers off at once
 * (the VMMs run with -no-reboot, so the VM ends instead of hanging).
 */
#ifndef BANGER_INITRAMFS_H
#define BANGER_INITRAMFS_H

#include <stdbool.h>
#include <stddef.h>

struct bg_err;
struct kmod;

/* The modules banger's guests need, in the order they should load (each
 * after its dependencies, which kmod_order adds).  optional[i]: include
 * only if the kernel has it as a module (ext4 is usually built in). */
void initramfs_wanted(const char *const **names, const bool **optional, size_t *n);

/* The host's statically linked busybox (caller frees).  Negative with an
 * install hint when there is none. */
int initramfs_busybox(char **path, struct bg_err **err);

/* The banger-agent to put in the initramfs (caller frees): $BANGER_AGENT,
 * else beside this program, else ../lib/banger/.  -ENOENT with a hint. */
int initramfs_agent(char **path, struct bg_err **err);

/* Write the initramfs to path: busybox, banger-agent, /init, and mods
 * (uncompressed, kept in the table) in the given order. */
int initramfs_write(const char *path, const char *busybox, struct kmod *const *mods, size_t n, struct bg_err **err);

#endif
