/* driver: the small vtable every hypervisor backend implements.
 *
 * Drivers never touch the store; the loop records intent before calling
 * them and records their results after.  Every operation is idempotent:
 * prepare on a prepared VM, stop on a stopped one and cleanup on a missing
 * one succeed and change nothing.  Every object a driver makes is named
 * after the VM's id (its ownership mark), so list_owned() can find strays
 * that no record claims even after a crash.
 */
#ifndef BANGER_DRIVER_H
#define BANGER_DRIVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct bg_err;
struct bg_spec;
struct bg_config;
struct workdisk_owner;

/* What the loop hands a driver for one VM. */
struct driver_vm {
        const char *name;             /* metadata.name */
        const char *id;               /* record id: the ownership mark */
        const struct bg_spec *spec;   /* resolved spec (vcpu/memory/disk filled in); set for
                                         prepare and start, may be NULL for the others */
        json_t *handles;              /* driver-owned JSON object; drivers may add keys.
                                         The loop stores it after each call. */
        /* Commit handles to the store now.  A driver that spawns a VMM calls
         * it between fork and exec, so the VMM's pid and start time are
         * recorded before it runs (write-ahead).  NULL in unit tests. */
        int (*persist)(struct driver_vm *vm, struct bg_err **err);
        void *persist_arg;
};

/* The guest's SSH host key file the loop made before prepare (handles
 * "host_key"), for the work disk; NULL when there is none. */
static inline const char *host_key_of(const struct driver_vm *vm)
{
        return vm->handles ? json_string_value(json_object_get(vm->handles, "host_key")) : NULL;
}

/* What every driver gets at construction. */
struct driver_env {
        const char *state_dir;    /* daemon state: kernels/, images/, vms/<id>/ disks */
        const char *run_dir;      /* runtime: vms/<id>/ sockets, logs, pid files */
        const char *cache_dir;
        const char *user_key;     /* banger's user key (config ssh_key_path or the default): guests
                                   * authorize its public half, read at each prepare */
        const struct bg_config *cfg;   /* qemu_bin, firecracker_bin, ... */
        const struct workdisk_owner *owner;   /* whose files workspace/file_sync read */
};

enum vm_observed {
        VM_ABSENT,        /* no VMM: never started, or stopped by us */
        VM_RUNNING,
        VM_EXITED_OK,     /* the VMM ended by itself with status 0 (guest poweroff) */
        VM_EXITED_FAIL,   /* the VMM ended by itself with a failure or was killed */
};

struct driver_probe {
        enum vm_observed vm;
        int exit_status;      /* for the EXITED states, else -1 */
};

struct driver;

struct driver_ops {
        const char *name;     /* "fake", "qemu", "firecracker" */
        /* Make everything the VM needs before its first start (disks, run dir). */
        int (*prepare)(struct driver *d, struct driver_vm *vm, struct bg_err **err);
        /* Start the VMM; record pid/start time etc. in vm->handles. */
        int (*start)(struct driver *d, struct driver_vm *vm, struct bg_err **err);
        /* Graceful stop within timeout_ms, then hard. */
        int (*stop)(struct driver *d, struct driver_vm *vm, int timeout_ms, struct bg_err **err);
        /* Hard stop now. */
        int (*kill)(struct driver *d, struct driver_vm *vm, struct bg_err **err);
        /* Observe the VMM without changing anything.  Cheap: the resync pass
         * probes every sandbox.  vm->handles may be NULL there (a known VM,
         * answered from the driver's memory); a driver that needs handles to
         * adopt an unknown VM answers VM_ABSENT and the loop probes again
         * with them. */
        int (*probe)(struct driver *d, struct driver_vm *vm, struct driver_probe *out, struct bg_err **err);
        /* Remove every object of the VM (VMM, disks, sockets, run dir). */
        int (*cleanup)(struct driver *d, struct driver_vm *vm, struct bg_err **err);
        /* Ids of every object this driver owns on the host (for GC).
         * *ids is a heap array of heap strings. */
        int (*list_owned)(struct driver *d, char ***ids, size_t *n, struct bg_err **err);
        /* Remove everything owned under id when no record is left (GC). */
        int (*remove_owned)(struct driver *d, const char *id, struct bg_err **err);
        /* Optional: an fd that becomes readable when a VM changes behind the
         * driver's back (a VMM exits); -1 or NULL when none. */
        int (*event_fd)(struct driver *d);
        /* Optional: consume what event_fd announced, calling changed(name)
         * for each sandbox whose probe answer changed. */
        void (*drain_events)(struct driver *d, void (*changed)(const char *name, void *arg), void *arg);
        /* Optional: what `banger doctor` should know (binary, version,
         * acceleration and why, disk method...): a new JSON object. */
        json_t *(*doctor)(struct driver *d);
        /* Hypervisor string for status ("fake", "qemu/tcg", ...). */
        const char *(*hypervisor)(struct driver *d);
        void (*free)(struct driver *d);
};

struct driver {
        const struct driver_ops *ops;
};

/* Driver factories.  state_dir/run_dir are the daemon's paths. */
int driver_fake_new(const char *state_dir, const char *run_dir, struct driver **out, struct bg_err **err);
/* -ENOENT with a clear message when the hypervisor binary is missing. */
int driver_qemu_new(const struct driver_env *env, struct driver **out, struct bg_err **err);
int driver_firecracker_new(const struct driver_env *env, struct driver **out, struct bg_err **err);

#endif
