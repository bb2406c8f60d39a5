/* driver_firecracker: sandboxes as Firecracker microVMs.
 *
 * Every object is named after the record id (the ownership mark):
 *   STATE/vms/<id>/root.ext4   root disk (reflink or sparse copy of the image)
 *   STATE/vms/<id>/work.ext4   work disk, mounted at /root in the guest
 *   RUN/vms/<id>/fc.sock       the API socket; the VMM's command line holds
 *                              this path, which is how /proc finds our VMMs
 *   RUN/vms/<id>/fc.log        Firecracker's own log (PUT /logger)
 *   RUN/vms/<id>/console.log   the serial console (Firecracker's stdout)
 *   RUN/vms/<id>/vsock.sock    the vsock UDS (the agent's channel)
 *
 * start spawns the VMM in two steps (vmm.h) so its pid and start time are
 * in the store before it runs, then configures it through the API in a
 * fixed order and boots it.  Any refusal kills the VMM: a start either
 * leaves a running VM or nothing running, and Firecracker's fault_message
 * ends the error verbatim so it lands in the sandbox status.  Processes
 * are tracked by pidfd in vmm's epoll set, which is the driver's event fd;
 * a VMM a previous daemon started is adopted on first probe, verified by
 * pid, start time and its API socket path on the command line.
 */
#include "driver_firecracker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "disk.h"
#include "driver.h"
#include "err.h"
#include "fc_api.h"
#include "ipam.h"
#include "log.h"
#include "ownmark.h"
#include "spec.h"
#include "strmap.h"
#include "util.h"
#include "vmm.h"
#include "workdisk.h"
#include "agent_proto.h"

#define SOCKET_WAIT_MS 5000     /* Firecracker's socket is up in ~12 ms */
#define KILL_WAIT_MS 5000
#define SOCK_PATH_MAX 100       /* sun_path is 108; vsock adds "_<port>" for guest-initiated connections */
#define DEFAULT_DISK_SIZE (8ULL << 30)

struct fc {
        struct driver base;
        char *bin;             /* resolved firecracker binary */
        char *state_dir;       /* catalog lives here */
        char *disk_root;       /* STATE/vms */
        char *run_root;        /* RUN/vms */
        char *user_key;        /* driver_env.user_key, or NULL */
        const struct bg_config *cfg;
        const struct workdisk_owner *owner;   /* whose files workspace/file_sync read */
        struct vmm *vmm;
        pthread_mutex_t mu;
};

static struct fc *F(struct driver *d) { return (struct fc *)d; }

static char *vm_disk_dir(struct fc *f, const char *id) { return xasprintf("%s/%s", f->disk_root, id); }
static char *vm_run_dir(struct fc *f, const char *id) { return xasprintf("%s/%s", f->run_root, id); }
static char *disk_file(struct fc *f, const char *id, const char *name)
{
        return xasprintf("%s/%s/%s", f->disk_root, id, name);
}
static char *run_file(struct fc *f, const char *id, const char *name)
{
        return xasprintf("%s/%s/%s", f->run_root, id, name);
}

/* What identifies id's VMM on a command line: its API socket after the
 * flag (a `curl --unix-socket` on the same path is not a VMM). */
static char *vmm_needle(struct fc *f, const char *id)
{
        return xasprintf("--api-sock %s/%s/fc.sock", f->run_root, id);
}

/* The guest's vsock CID, fixed by the id: 3..0xfffffffe (0-2 are reserved,
 * -1 is VMADDR_CID_ANY).  Firecracker's vsock is a host UDS, so CIDs need
 * not be unique across VMs; it is stable so that the agent can rely on it. */
static uint32_t guest_cid(const char *id)
{
        uint64_t v = strtoull(id, NULL, 16);
        return 3 + (uint32_t)((v & 0xffffffffu) % 0xfffffffcu);
}

/* ---- prepare ---- */

static uint64_t disk_size_of(const struct driver_vm *vm)
{
        return vm->spec && vm->spec->disk_size ? vm->spec->disk_size : DEFAULT_DISK_SIZE;
}

/* Kernel paths for Firecracker: the uncompressed vmlinux and the initrd. */
static int fc_kernel(struct fc *f, const struct bg_spec *spec, struct kernel_paths *k, struct bg_err **err)
{
        const char *name = spec && spec->kernel ? spec->kernel : "default";
        if (catalog_kernel(f->state_dir, name, k, err) < 0)
                return -ENOENT;
        struct stat st;
        if (stat(k->vmlinux, &st) < 0 || !S_ISREG(st.st_mode)) {
                kernel_paths_release(k);
                return bg_error(err, ENOENT,
                                "kernel '%s' has no vmlinux (firecracker boots the uncompressed elf only; "
                                "re-import it: banger kernel import %s --apt)", name, name);
        }
        return 0;
}

static int fc_prepare(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct fc *f = F(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", vm->id ? vm->id : "");
        if (!vm->spec)
                return bg_error(err, EINVAL, "firecracker: %s has no spec", vm->name);
        const char *image_name = vm->spec->image ? vm->spec->image
                                 : f->cfg && f->cfg->default_image ? f->cfg->default_image : "debian-bookworm";
        if (str_has_prefix(image_name, "oci://"))
                return bg_error(err, ENOTSUP, "firecracker: image '%s': oci images must be imported first",
                                image_name);
        /* Everything the VM needs must exist before anything is made. */
        _cleanup_free_ char *image = NULL;
        if (catalog_image(f->state_dir, image_name, &image, err) < 0)
                return bg_error_wrap(err, "firecracker");
        struct kernel_paths k;
        if (fc_kernel(f, vm->spec, &k, err) < 0)
                return bg_error_wrap(err, "firecracker");
        kernel_paths_release(&k);

        _cleanup_free_ char *dir = vm_disk_dir(f, vm->id);
        _cleanup_free_ char *root = disk_file(f, vm->id, "root.ext4");
        _cleanup_free_ char *work = disk_file(f, vm->id, "work.ext4");
        bool existed = access(dir, F_OK) == 0;
        if (mkdir_p(f->disk_root, 0700, err) < 0 || mkdir_p(dir, 0700, err) < 0)
                return bg_error_wrap(err, "firecracker");
        /* disk.c makes each disk whole or not at all: one that exists is done. */
        uint64_t size = disk_size_of(vm);
        enum disk_method used = DISK_SPARSE_COPY;
        bool made_root = false;
        int r = 0;
        if (access(root, F_OK) < 0) {
                r = disk_root_create(image, root, size, false, &used, err);
                made_root = r == 0;
        }
        if (r == 0 && access(work, F_OK) < 0) {
                struct workdisk_in wi = {
                        .user_key = f->user_key,
                        .host_key_file = host_key_of(vm),
                        .spec = vm->spec,
                        .config_sync = f->cfg ? f->cfg->file_sync : NULL,
                        .n_config_sync = f->cfg ? f->cfg->n_file_sync : 0,
                        .owner = f->owner,
                };
                r = workdisk_create(work, &wi, err);
        }
        if (r < 0) {
                if (made_root)
                        unlink(root);       /* nothing half-made */
                if (!existed)
                        rm_rf(dir, NULL);
                return bg_error_wrap(err, "firecracker");
        }
        json_object_set_new(vm->handles, "root_disk", json_string(root));
        json_object_set_new(vm->handles, "work_disk", json_string(work));
        if (made_root)
                json_object_set_new(vm->handles, "disk_method", json_string(disk_method_name(used)));
        return 0;
}

/* ---- tracking ---- */

static void drop_process_handles(json_t *h)
{
        json_object_del(h, "pid");
        json_object_del(h, "start_time");
}

/* What vmm knows of vm, adopting the VMM the handles name when a previous
 * daemon started it. */
static enum vmm_state track(struct fc *f, struct driver_vm *vm, int *status)
{
        enum vmm_state st = vmm_state(f->vmm, vm->id, status);
        if (st != VMM_NONE)
                return st;
        json_t *jp = json_object_get(vm->handles, "pid");
        json_t *js = json_object_get(vm->handles, "start_time");
        if (!json_is_integer(jp) || !json_is_integer(js))
                return VMM_NONE;
        _cleanup_free_ char *needle = vmm_needle(f, vm->id);
        if (vmm_adopt(f->vmm, vm->id, (pid_t)json_integer_value(jp), (uint64_t)json_integer_value(js), needle,
                      NULL) == 0) {
                log_info("firecracker: adopted vmm name=%s pid=%d", vm->name, (int)json_integer_value(jp));
                return vmm_state(f->vmm, vm->id, status);
        }
        /* It ended while no daemon watched: its status is lost. */
        vmm_mark_exited(f->vmm, vm->id);
        return vmm_state(f->vmm, vm->id, status);
}

/* SIGKILL vm's VMM (tracked or named by handles) and wait for it. */
static int kill_now(struct fc *f, struct driver_vm *vm, struct bg_err **err)
{
        enum vmm_state st = track(f, vm, NULL);
        if (st == VMM_RUNNING) {
                vmm_signal(f->vmm, vm->id, SIGKILL, NULL);
                if (vmm_wait(f->vmm, vm->id, KILL_WAIT_MS) < 0)
                        return bg_error(err, ETIMEDOUT, "firecracker: vmm of %s (pid %d) still runs after sigkill",
                                        vm->name, (int)vmm_pid(f->vmm, vm->id));
        }
        vmm_forget(f->vmm, vm->id);   /* a held child is killed here */
        drop_process_handles(vm->handles);
        return 0;
}

/* ---- start ---- */

/* Files a start creates afresh: a stale API or vsock socket makes
 * Firecracker refuse to start, and its logger neither creates nor truncates
 * its file (it writes from offset 0), so the last run's log is kept as
 * fc.log.1. */
static int fresh_run_dir(struct fc *f, const char *id, struct bg_err **err)
{
        _cleanup_free_ char *dir = vm_run_dir(f, id);
        if (mkdir_p(f->run_root, 0700, err) < 0 || mkdir_p(dir, 0700, err) < 0)
                return -EIO;
        static const char *const stale[] = { "fc.sock", "vsock.sock" };
        for (size_t i = 0; i < ARRAY_SIZE(stale); i++) {
                _cleanup_free_ char *p = run_file(f, id, stale[i]);
                if (unlink(p) < 0 && errno != ENOENT)
                        return bg_error(err, errno, "remove '%s': %s", p, strerror(errno));
        }
        _cleanup_free_ char *log = run_file(f, id, "fc.log");
        _cleanup_free_ char *old = xasprintf("%s.1", log);
        if (rename(log, old) < 0 && errno != ENOENT)
                return bg_error(err, errno, "rename '%s': %s", log, strerror(errno));
        int fd = open(log, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return bg_error(err, errno, "create '%s': %s", log, strerror(errno));
        close(fd);
        return 0;
}

struct alive_arg {
        struct fc *f;
        const char *id;
};

static bool vmm_alive(void *arg)
{
        struct alive_arg *a = arg;
        return vmm_state(a->f->vmm, a->id, NULL) == VMM_RUNNING;
}

/* The network the loop set up (handles.net): the tap and MAC, and the
 * guest's address for the boot arguments.  Re-checked before use: these
 * come from the store.  false when the sandbox has no network. */
struct fc_net {
        const char *tap, *mac, *ip, *gw;
        int prefix;
};

static bool net_of(const struct driver_vm *vm, struct fc_net *n)
{
        json_t *net = json_object_get(vm->handles, "net");
        uint8_t mac[6];
        uint32_t a;
        json_int_t prefix = json_integer_value(json_object_get(net, "prefix"));
        *n = (struct fc_net){
                .tap = json_string_value(json_object_get(net, "tap")),
                .mac = json_string_value(json_object_get(net, "mac")),
                .ip = json_string_value(json_object_get(net, "ip")),
                .gw = json_string_value(json_object_get(net, "gw")),
                .prefix = (int)prefix,
        };
        return n->tap && n->mac && n->ip && n->gw && ipam_tap_name_valid(n->tap) &&
               ipam_mac_parse(n->mac, mac, NULL) == 0 && ipam_addr_parse(n->ip, &a, NULL) == 0 &&
               ipam_addr_parse(n->gw, &a, NULL) == 0 && prefix >= IPAM_PREFIX_MIN && prefix <= IPAM_PREFIX_MAX;
}

/* PUT /network-interfaces/eth0 before InstanceStart (pre-boot only). */
static int configure_network(struct fc_api *api, struct driver_vm *vm, struct bg_err **err)
{
        struct fc_net n;
        if (!net_of(vm, &n))
                return 0;
        return fc_api_put(api, "/network-interfaces/eth0",
                          json_pack("{s:s,s:s,s:s}", "iface_id", "eth0", "host_dev_name", n.tap, "guest_mac", n.mac),
                          err);
}

/* Configure a fresh VMM and boot it; the order is Firecracker's own
 * (logger first so that every later refusal is in fc.log). */
static int configure_and_boot(struct fc *f, struct driver_vm *vm, struct fc_api *api, const struct kernel_paths *k,
                              struct bg_err **err)
{
        const char *id = vm->id;
        _cleanup_free_ char *log = run_file(f, id, "fc.log");
        _cleanup_free_ char *root = disk_file(f, id, "root.ext4");
        _cleanup_free_ char *work = disk_file(f, id, "work.ext4");
        _cleanup_free_ char *vsock = run_file(f, id, "vsock.sock");
        struct fc_net n;
        _cleanup_free_ char *netargs = net_of(vm, &n) ? xasprintf(" banger.ip=%s/%d banger.gw=%s banger.dns=%s",
                                                                  n.ip, n.prefix, n.gw, n.gw)
                                                      : xstrdup("");
        /* pci=off and the i8042 flags are Firecracker's own defaults: its
         * SendCtrlAltDel reaches the guest through the i8042 keyboard. */
        _cleanup_free_ char *args = xasprintf("console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux "
                                              "i8042.dumbkbd root=/dev/vda rw banger.work=/dev/vdb "
                                              "banger.hostname=%s%s banger.agent=vsock:%u", vm->name, netargs,
                                              AGP_VSOCK_PORT);
        if (fc_api_put(api, "/logger", json_pack("{s:s,s:s}", "log_path", log, "level", "Info"), err) < 0 ||
            fc_api_put(api, "/machine-config", json_pack("{s:i,s:i}", "vcpu_count", (int)vm->spec->vcpu,
                                                         "mem_size_mib", (int)vm->spec->memory_mib), err) < 0 ||
            fc_api_put(api, "/boot-source", json_pack("{s:s,s:s,s:s}", "kernel_image_path", k->vmlinux,
                                                      "initrd_path", k->initrd, "boot_args", args), err) < 0 ||
            fc_api_put(api, "/drives/root", json_pack("{s:s,s:s,s:b,s:b}", "drive_id", "root", "path_on_host", root,
                                                      "is_root_device", 1, "is_read_only", 0), err) < 0 ||
            fc_api_put(api, "/drives/work", json_pack("{s:s,s:s,s:b,s:b}", "drive_id", "work", "path_on_host", work,
                                                      "is_root_device", 0, "is_read_only", 0), err) < 0 ||
            fc_api_put(api, "/vsock", json_pack("{s:I,s:s}", "guest_cid", (json_int_t)guest_cid(id), "uds_path",
                                                vsock), err) < 0 ||
            configure_network(api, vm, err) < 0 ||
            fc_api_put(api, "/actions", json_pack("{s:s}", "action_type", "InstanceStart"), err) < 0)
                return -EIO;
        json_object_set_new(vm->handles, "vsock_cid", json_integer(guest_cid(id)));
        json_object_set_new(vm->handles, "vsock_uds", json_string(vsock));
        return 0;
}

static int fc_start(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        struct fc *f = F(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", vm->id ? vm->id : "");
        if (!vm->spec || !spec_name_valid(vm->name))
                return bg_error(err, EINVAL, "firecracker: bad name or no spec");
        vmm_label(f->vmm, vm->id, vm->name);
        enum vmm_state st = track(f, vm, NULL);
        if (st == VMM_RUNNING || st == VMM_HELD)
                return 0;   /* already running: idempotent */
        vmm_forget(f->vmm, vm->id);   /* an exited entry */
        drop_process_handles(vm->handles);

        _cleanup_free_ char *root = disk_file(f, vm->id, "root.ext4");
        _cleanup_free_ char *work = disk_file(f, vm->id, "work.ext4");
        if (access(root, F_OK) < 0 || access(work, F_OK) < 0)
                return bg_error(err, ENOENT, "firecracker: disks of %s are missing (not prepared)", vm->name);
        _cleanup_free_ char *vsock = run_file(f, vm->id, "vsock.sock");
        if (strlen(vsock) > SOCK_PATH_MAX)
                return bg_error(err, ENAMETOOLONG, "firecracker: run folder path too long for unix sockets: %s",
                                vsock);
        struct kernel_paths k;
        if (fc_kernel(f, vm->spec, &k, err) < 0)
                return bg_error_wrap(err, "firecracker");
        if (fresh_run_dir(f, vm->id, err) < 0) {
                kernel_paths_release(&k);
                return bg_error_wrap(err, "firecracker");
        }

        _cleanup_free_ char *sock = run_file(f, vm->id, "fc.sock");
        _cleanup_free_ char *console = run_file(f, vm->id, "console.log");
        _cleanup_free_ char *dir = vm_run_dir(f, vm->id);
        _cleanup_free_ char *instance = xasprintf("banger-%s", vm->id);
        const char *argv[] = { f->bin, "--api-sock", sock, "--id", instance, NULL };
        struct vmm_cmd cmd = { .argv = argv, .log_path = console, .cwd = dir };
        pid_t pid = 0;
        uint64_t start_time = 0;
        struct fc_api *api = NULL;
        int64_t t0 = now_mono_ms(), t_exec = 0, t_sock = 0;
        int r = vmm_spawn(f->vmm, vm->id, &cmd, &pid, &start_time, err);
        if (r < 0)
                goto out;
        json_object_set_new(vm->handles, "pid", json_integer(pid));
        json_object_set_new(vm->handles, "start_time", json_integer((json_int_t)start_time));
        json_object_set_new(vm->handles, "api_sock", json_string(sock));
        json_object_set_new(vm->handles, "console", json_string(console));
        if ((vm->persist && (r = vm->persist(vm, err)) < 0) || (r = vmm_release(f->vmm, vm->id, err)) < 0)
                goto out;
        t_exec = now_mono_ms();
        struct alive_arg alive = { f, vm->id };
        if ((r = fc_api_wait_socket(sock, SOCKET_WAIT_MS, vmm_alive, &alive, err)) < 0 ||
            (r = fc_api_new(sock, FC_API_TIMEOUT_MS, &api, err)) < 0)
                goto out;
        t_sock = now_mono_ms();
        r = configure_and_boot(f, vm, api, &k, err);
out:
        fc_api_free(api);
        kernel_paths_release(&k);
        if (r < 0) {
                kill_now(f, vm, NULL);   /* nothing left running */
                return bg_error_wrap(err, "firecracker");
        }
        int64_t t_end = now_mono_ms();
        log_info("firecracker: vm started name=%s pid=%d spawn_ms=%lld socket_ms=%lld api_ms=%lld ms=%lld", vm->name,
                 (int)pid, (long long)(t_exec - t0), (long long)(t_sock - t_exec), (long long)(t_end - t_sock),
                 (long long)(t_end - t0));
        return 0;
}

/* ---- stop, kill, probe ---- */

static int fc_stop(struct driver *d, struct driver_vm *vm, int timeout_ms, struct bg_err **err)
{
        struct fc *f = F(d);
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", vm->id ? vm->id : "");
        if (track(f, vm, NULL) == VMM_RUNNING) {
                _cleanup_free_ char *sock = run_file(f, vm->id, "fc.sock");
                struct fc_api *api = NULL;
                struct bg_err *e = NULL;
                int wait = timeout_ms > 0 ? timeout_ms : 0;
                if (fc_api_new(sock, wait > 0 && wait < FC_API_TIMEOUT_MS ? wait : FC_API_TIMEOUT_MS, &api, &e) < 0 ||
                    fc_api_put(api, "/actions", json_pack("{s:s}", "action_type", "SendCtrlAltDel"), &e) < 0) {
                        log_warn("firecracker: graceful stop name=%s: %s", vm->name, bg_err_msg(e));
                        wait = 0;
                }
                fc_api_free(api);
                bg_err_free(e);
                if (wait > 0 && vmm_wait(f->vmm, vm->id, wait) == 0)
                        log_info("firecracker: vm stopped name=%s", vm->name);
                else
                        log_info("firecracker: vm killed name=%s graceful_ms=%d", vm->name, wait);
        }
        if (kill_now(f, vm, err) < 0)
                return bg_error_wrap(err, "firecracker stop");
        return 0;
}

static int fc_kill(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", vm->id ? vm->id : "");
        if (kill_now(F(d), vm, err) < 0)
                return bg_error_wrap(err, "firecracker kill");
        return 0;
}

static int fc_probe(struct driver *d, struct driver_vm *vm, struct driver_probe *out, struct bg_err **err)
{
        struct fc *f = F(d);
        out->vm = VM_ABSENT;
        out->exit_status = -1;
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", vm->id ? vm->id : "");
        vmm_label(f->vmm, vm->id, vm->name);
        int status = -1;
        switch (track(f, vm, &status)) {
        case VMM_NONE:
                break;
        case VMM_HELD:
        case VMM_RUNNING:
                out->vm = VM_RUNNING;
                break;
        case VMM_EXITED:
                out->vm = status == 0 ? VM_EXITED_OK : VM_EXITED_FAIL;
                out->exit_status = status;
                break;
        }
        return 0;
}

static int fc_event_fd(struct driver *d)
{
        return vmm_event_fd(F(d)->vmm);
}

struct drain_arg {
        struct fc *f;
        void (*changed)(const char *name, void *arg);
        void *arg;
};

static void on_exit_cb(const char *id, const char *name, void *arg)
{
        struct drain_arg *a = arg;
        log_info("firecracker: vmm exited id=%s name=%s", id, name ? name : "?");
        if (name)
                a->changed(name, a->arg);
}

static void fc_drain_events(struct driver *d, void (*changed)(const char *name, void *arg), void *arg)
{
        struct drain_arg a = { F(d), changed, arg };
        vmm_drain(F(d)->vmm, on_exit_cb, &a);
}

/* ---- cleanup and garbage collection ---- */

/* Kill every VMM of id (tracked, or found in /proc by its socket path),
 * then remove its folders. */
static int remove_all(struct fc *f, struct driver_vm *vm, struct bg_err **err)
{
        if (kill_now(f, vm, err) < 0)
                return -EIO;
        _cleanup_free_ char *needle = vmm_needle(f, vm->id);
        struct vmm_found *found = NULL;
        size_t n = 0;
        if (vmm_scan(needle, &found, &n, err) < 0)
                return -EIO;
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                r = vmm_kill_verified(found[i].pid, found[i].start_time, needle, KILL_WAIT_MS, err);
        vmm_found_free(found, n);
        if (r < 0)
                return r;
        _cleanup_free_ char *run = vm_run_dir(f, vm->id);
        _cleanup_free_ char *disk = vm_disk_dir(f, vm->id);
        if (rm_rf(run, err) < 0 || rm_rf(disk, err) < 0)
                return -EIO;
        vmm_label(f->vmm, vm->id, NULL);
        return 0;
}

static int fc_cleanup(struct driver *d, struct driver_vm *vm, struct bg_err **err)
{
        if (!ownmark_id_valid(vm->id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", vm->id ? vm->id : "");
        if (remove_all(F(d), vm, err) < 0)
                return bg_error_wrap(err, "firecracker cleanup");
        static const char *const keys[] = { "root_disk", "work_disk", "disk_method", "api_sock", "console",
                                            "vsock_cid", "vsock_uds" };
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                json_object_del(vm->handles, keys[i]);
        return 0;
}

/* VMMs whose command line holds --api-sock RUN/vms/<id>/fc.sock. */
static int scan_procs(struct fc *f, struct id_set *s, struct bg_err **err)
{
        _cleanup_free_ char *needle = xasprintf("--api-sock %s/", f->run_root);
        struct vmm_found *found = NULL;
        size_t n = 0;
        if (vmm_scan(needle, &found, &n, err) < 0)
                return -EIO;
        for (size_t i = 0; i < n; i++) {
                const char *p = strstr(found[i].cmdline, needle);
                if (!p)
                        continue;
                p += strlen(needle);
                char id[17];
                snprintf(id, sizeof id, "%s", p);
                if (strlen(p) >= 16 + 8 && strncmp(p + 16, "/fc.sock", 8) == 0)
                        id_set_add(s, id);
        }
        vmm_found_free(found, n);
        return 0;
}

static int fc_list_owned(struct driver *d, char ***ids, size_t *n, struct bg_err **err)
{
        struct fc *f = F(d);
        struct id_set s;
        id_set_init(&s);
        int r = id_set_scan_dir(&s, f->disk_root, "");
        if (r == 0)
                r = id_set_scan_dir(&s, f->run_root, "");
        if (r < 0)
                bg_error(err, -r, "firecracker: list owned objects: %s", strerror(-r));
        else
                r = scan_procs(f, &s, err);
        id_set_take(&s, ids, n);
        return r < 0 ? -EIO : 0;
}

static int fc_remove_owned(struct driver *d, const char *id, struct bg_err **err)
{
        if (!ownmark_id_valid(id))
                return bg_error(err, EINVAL, "firecracker: bad id '%s'", id ? id : "");
        json_t *h = json_object();
        struct driver_vm vm = { .name = id, .id = id, .handles = h };
        int r = remove_all(F(d), &vm, err);
        json_decref(h);
        return r < 0 ? bg_error_wrap(err, "firecracker gc %s", id) : 0;
}

static const char *fc_hypervisor(struct driver *d)
{
        (void)d;
        return "firecracker";
}

static void fc_free(struct driver *d)
{
        struct fc *f = F(d);
        if (!f)
                return;
        vmm_free(f->vmm);   /* never stops a VMM: they outlive the daemon */
        pthread_mutex_destroy(&f->mu);
        free(f->bin);
        free(f->state_dir);
        free(f->disk_root);
        free(f->run_root);
        free(f->user_key);
        free(f);
}

static const struct driver_ops fc_ops = {
        .name = "firecracker",
        .prepare = fc_prepare,
        .start = fc_start,
        .stop = fc_stop,
        .kill = fc_kill,
        .probe = fc_probe,
        .cleanup = fc_cleanup,
        .list_owned = fc_list_owned,
        .remove_owned = fc_remove_owned,
        .event_fd = fc_event_fd,
        .drain_events = fc_drain_events,
        .hypervisor = fc_hypervisor,
        .free = fc_free,
};

/* ---- construction and usability ---- */

/* The firecracker binary: config firecracker_bin, else PATH. */
static int find_binary(const struct driver_env *env, char **out, struct bg_err **err)
{
        const char *want = env->cfg ? env->cfg->firecracker_bin : NULL;
        if (want) {
                if (access(want, X_OK) < 0)
                        return bg_error(err, ENOENT, "firecracker_bin '%s' from config.yaml: %s", want,
                                        strerror(errno));
                *out = xstrdup(want);
                return 0;
        }
        char *p = vmm_which("firecracker");
        if (!p)
                return bg_error(err, ENOENT, "firecracker binary not found on PATH (install it, or set "
                                             "firecracker_bin in config.yaml)");
        *out = p;
        return 0;
}

int driver_firecracker_new(const struct driver_env *env, struct driver **out, struct bg_err **err)
{
        _cleanup_free_ char *bin = NULL;
        if (find_binary(env, &bin, err) < 0)
                return -ENOENT;
        struct fc *f = xcalloc(1, sizeof *f);
        f->base.ops = &fc_ops;
        f->bin = steal_pointer(&bin);
        f->cfg = env->cfg;
        f->owner = env->owner;
        f->state_dir = xstrdup(env->state_dir);
        f->disk_root = xasprintf("%s/vms", env->state_dir);
        f->run_root = xasprintf("%s/vms", env->run_dir);
        pthread_mutex_init(&f->mu, NULL);
        f->user_key = env->user_key ? xstrdup(env->user_key) : NULL;
        if (vmm_new(&f->vmm, err) < 0 || mkdir_p(f->disk_root, 0700, err) < 0 || mkdir_p(f->run_root, 0700, err) < 0) {
                fc_free(&f->base);
                return bg_error_wrap(err, "firecracker driver");
        }
        *out = &f->base;
        return 0;
}

/* A host whose /dev/kvm works for a real-mode test guest may still hang a
 * 64-bit Linux guest (a nested, paravirtual KVM: see notes/platform.md), so
 * the final word is a boot probe of a real kernel under Firecracker; that
 * needs an imported kernel and is left to doctor/start-up.  What is
 * checked here is everything short of a boot. */
static bool kvm_usable(char *why, size_t len)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                snprintf(why, len, "/dev/kvm: %s", strerror(errno));
                return false;
        }
        bool ok = false;
        int api = ioctl(fd, KVM_GET_API_VERSION, 0);
        if (api != KVM_API_VERSION) {
                snprintf(why, len, "/dev/kvm speaks api %d, want %d", api, KVM_API_VERSION);
        } else {
                int vm = ioctl(fd, KVM_CREATE_VM, 0);
                int vcpu = vm >= 0 ? ioctl(vm, KVM_CREATE_VCPU, 0) : -1;
                if (vm < 0 || vcpu < 0)
                        snprintf(why, len, "/dev/kvm cannot create a %s: %s", vm < 0 ? "vm" : "vcpu", strerror(errno));
                else
                        ok = true;
                if (vcpu >= 0)
                        close(vcpu);
                if (vm >= 0)
                        close(vm);
        }
        close(fd);
        return ok;
}

bool firecracker_usable(const struct driver_env *env, char *why, size_t len)
{
        struct bg_err *e = NULL;
        _cleanup_free_ char *bin = NULL;
        if (find_binary(env, &bin, &e) < 0) {
                snprintf(why, len, "%s", bg_err_msg(e));
                bg_err_free(e);
                return false;
        }
        const char *argv[] = { bin, "--version", NULL };
        _cleanup_free_ char *output = NULL;
        if (vmm_run_tool(argv, 5000, &output, NULL, &e) < 0) {
                snprintf(why, len, "%s --version: %s", bin, bg_err_msg(e));
                bg_err_free(e);
                return false;
        }
        return kvm_usable(why, len);
}
