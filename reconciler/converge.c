/* converge: bring one sandbox to its desired state, one planned step at a
 * time.
 *
 * A worker owns a name for the whole call (the queue guarantees one worker
 * per name), so the record it read at the start stays authoritative in
 * memory: it is written back when a step needs its intent recorded (every
 * phase change, a new record, a spec update, deletion) and otherwise once
 * at the end.  Results that are not yet written (a finished prepare, a
 * cleanup) are safe to lose in a crash because every driver step is
 * idempotent and is simply redone.  Anything a driver needs to find its
 * objects again (a VMM's pid and start time) is saved with the phase change
 * that follows the step.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agents.h"
#include "driver.h"
#include "drivers.h"
#include "err.h"
#include "fault.h"
#include "hub.h"
#include "index.h"
#include "known_hosts.h"
#include "log.h"
#include "loop_internal.h"
#include "net.h"
#include "plan.h"
#include "sshkey.h"
#include "store.h"
#include "util.h"
#include "vmdefaults.h"

#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 30000
#define STABLE_MS 60000          /* running this long forgets past failures */
#define STOP_TIMEOUT_MS 10000
#define MAX_STEPS 32             /* per call; plan converges in far fewer */
#define AGENT_ACK_MS 3000        /* the guest agent acknowledges a shutdown request */
#define AGENT_POWEROFF_MS 12000  /* then the guest powers off within this (the agent forces it at 10 s) */

/* ---- events and records ---- */

static void publish(struct loop *l, uint64_t seq)
{
        if (seq)
                hub_publish(l->c.hub, seq);
}

static json_t *event_new(const char *name, const char *id, const char *type, const char *phase, const char *msg)
{
        char t[40];
        format_time_ms(now_wall_ms(), t, sizeof t);
        json_t *ev = json_pack("{s:s, s:s}", "time", t, "type", type);
        if (name)
                json_object_set_new(ev, "name", json_string(name));
        if (id)
                json_object_set_new(ev, "id", json_string(id));
        if (phase)
                json_object_set_new(ev, "phase", json_string(phase));
        json_object_set_new(ev, "message", json_string(msg ? msg : ""));
        return ev;
}

void loop_emit(struct loop *l, const char *name, const char *id, const char *type, const char *phase,
               const char *msg)
{
        struct bg_err *err = NULL;
        struct store_txn *t = NULL;
        uint64_t seq = 0;
        json_t *ev = event_new(name, id, type, phase, msg);
        if (store_txn_begin(l->c.store, true, &t, &err) == 0) {
                if (store_event_append(t, ev, &seq, &err) == 0)
                        store_txn_commit(t, &err);
                else
                        store_txn_abort(t);
        }
        if (err)
                log_error("event not stored: %s", bg_err_msg(err));
        else
                publish(l, seq);
        bg_err_free(err);
        json_decref(ev);
}

int loop_read_record(struct loop *l, const char *name, struct store_record *r, bool *found)
{
        struct store_txn *t = NULL;
        struct bg_err *err = NULL;
        *found = false;
        if (store_txn_begin(l->c.store, false, &t, &err) < 0)
                goto fail;
        int rc = store_record_get(t, name, r, &err);
        store_txn_abort(t);
        if (rc == -ENOENT)
                return 0;
        if (rc < 0)
                goto fail;
        *found = true;
        return 0;
fail:
        log_error("read record name=%s: %s", name, bg_err_msg(err));
        bg_err_free(err);
        return -EIO;
}

/* What one call works with.  rec is authoritative while the call runs. */
struct work {
        struct loop *l;
        const char *name;
        struct store_record rec;
        bool has_rec;
        bool dirty;                 /* rec differs from the store */
        bool unsaved_create;        /* rec is new: its "Pending" event goes out with the first save */
        json_t *handles;            /* rec's driver handles, parsed */
        struct driver *drv;         /* the record's driver; NULL before prepare picks one */
        const char *drv_missing;    /* the record's driver is not one this bangerd runs */
        struct bg_spec *applied;    /* rec's spec resolved for the driver; NULL until needed */
        uint64_t applied_hash;      /* the spec_hash applied belongs to */
        struct desired *d;          /* this step's desired state, NULL: no file claims the name */
        struct bg_spec *want;       /* the desired spec (the record's when the file is invalid) */
        uint64_t want_hash;
        struct driver_probe probe;
        struct net_job *net_job;    /* the network's teardown, running beside a deletion's kill */
};

/* Write rec, plus an event when type != NULL, in one transaction. */
static int save(struct work *w, const char *type, const char *msg, struct bg_err **err)
{
        struct store_txn *t = NULL;
        uint64_t seq = 0;
        struct store_record *r = &w->rec;
        free(r->handles_json);
        r->handles_json = json_object_size(w->handles) ? json_dumps(w->handles, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (store_txn_begin(w->l->c.store, true, &t, err) < 0)
                return -EIO;
        if (store_record_put(t, r, err) < 0)
                goto fail;
        if (w->unsaved_create) {
                json_t *ev = event_new(r->name, r->id, "PhaseChanged", phase_name(PHASE_PENDING), "new sandbox");
                int rc = store_event_append(t, ev, &seq, err);
                json_decref(ev);
                if (rc < 0)
                        goto fail;
        }
        if (type) {
                json_t *ev = event_new(r->name, r->id, type, phase_name(r->phase), msg);
                int rc = store_event_append(t, ev, &seq, err);
                json_decref(ev);
                if (rc < 0)
                        goto fail;
        }
        if (store_txn_commit(t, err) < 0)
                return -EIO;
        w->dirty = false;
        w->unsaved_create = false;
        publish(w->l, seq);
        return 0;
fail:
        store_txn_abort(t);
        return -EIO;
}

static void set_message(struct store_record *r, const char *msg)
{
        free(r->message);
        r->message = msg && *msg ? xstrdup(msg) : NULL;
}

/* Record the phase a step moves into: the intent, committed before the step. */
static int set_phase(struct work *w, enum bg_phase p, const char *why, struct bg_err **err)
{
        struct store_record *r = &w->rec;
        if (r->phase == p)
                return 0;
        log_info("phase name=%s id=%s %s -> %s (%s)", r->name, r->id, phase_name(r->phase), phase_name(p), why);
        r->phase = p;
        r->phase_since_ms = now_wall_ms();
        return save(w, "PhaseChanged", why, err);
}

static int64_t backoff_ms(uint32_t failures)
{
        int64_t ms = BACKOFF_BASE_MS;
        for (uint32_t i = 1; i < failures && ms < BACKOFF_CAP_MS; i++)
                ms *= 2;
        return ms < BACKOFF_CAP_MS ? ms : BACKOFF_CAP_MS;
}

static struct bg_spec *record_spec(const struct store_record *r)
{
        if (!r->spec_json)
                return NULL;
        json_t *j = json_loads(r->spec_json, 0, NULL);
        struct bg_spec *s = NULL;
        struct bg_err *err = NULL;
        if (!j || spec_from_json(j, &s, &err) < 0)
                log_error("record spec unreadable name=%s: %s", r->name, bg_err_msg(err));
        bg_err_free(err);
        json_decref(j);
        return s;
}

/* The record's spec with defaults resolved, parsed once per spec. */
static const struct bg_spec *applied_spec(struct work *w)
{
        if (w->applied && w->applied_hash == w->rec.spec_hash)
                return w->applied;
        spec_free(w->applied);
        w->applied = record_spec(&w->rec);
        w->applied_hash = w->rec.spec_hash;
        if (w->applied)
                vmdefaults_resolve(w->l->c.cfg, w->applied, NULL);
        return w->applied;
}

static int save(struct work *w, const char *type, const char *msg, struct bg_err **err);

/* driver_vm.persist: write the handles now (a VMM about to exec). */
static int persist_handles(struct driver_vm *vm, struct bg_err **err)
{
        return save(vm->persist_arg, NULL, NULL, err);
}

static struct driver_vm vm_of(struct work *w)
{
        return (struct driver_vm){ .name = w->rec.name, .id = w->rec.id, .spec = w->applied,
                                   .handles = w->handles, .persist = persist_handles, .persist_arg = w };
}

static void load(struct work *w)
{
        if (loop_read_record(w->l, w->name, &w->rec, &w->has_rec) < 0)
                return;
        if (!w->has_rec)
                return;
        w->handles = w->rec.handles_json ? json_loads(w->rec.handles_json, 0, NULL) : NULL;
        if (!json_is_object(w->handles)) {
                json_decref(w->handles);
                w->handles = json_object();
        }
        const char *dname = json_string_value(json_object_get(w->handles, "driver"));
        w->drv = drivers_find(w->l->c.drivers, dname);
        if (dname && !w->drv)
                w->drv_missing = dname;
        if (w->drv)
                loop_note_driver(w->l, w->rec.id, w->drv);
}

/* Refresh desired state and probe the VM for the next step. */
static void observe(struct work *w)
{
        struct loop *l = w->l;
        desired_free(w->d);
        spec_free(w->want);
        w->want = NULL;
        pthread_mutex_lock(&l->mu);
        w->d = index_get(l->ix, w->name);
        pthread_mutex_unlock(&l->mu);
        if (w->d && w->d->spec) {
                w->want = spec_dup(w->d->spec);
                w->want_hash = w->d->hash;
        } else if (w->d && w->has_rec) {
                w->want = record_spec(&w->rec);   /* invalid edit: keep the last valid spec */
                w->want_hash = w->rec.spec_hash;
        }
        w->probe = (struct driver_probe){ VM_ABSENT, -1 };
        if (!w->has_rec)
                return;
        if (!w->drv)
                return;
        struct driver_vm vm = vm_of(w);
        struct bg_err *err = NULL;
        if (w->drv->ops->probe(w->drv, &vm, &w->probe, &err) < 0) {
                log_warn("probe name=%s: %s", w->name, bg_err_msg(err));
                w->probe.vm = VM_ABSENT;
        }
        bg_err_free(err);
}

/* ---- steps ---- */

static int do_create_record(struct work *w, struct bg_err **err)
{
        struct store_record *r = &w->rec;
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", w->name);
        store_new_id(r->id);
        r->phase = PHASE_PENDING;
        r->created_ms = r->phase_since_ms = now_wall_ms();
        r->last_exit = -1;
        json_t *j = spec_to_json(w->want);
        r->spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        r->spec_hash = w->want_hash;
        w->has_rec = true;
        json_decref(w->handles);
        w->handles = json_object();
        /* The record is committed together with the next step's intent
         * (Creating): it still exists before anything named after its id,
         * and a creation costs one commit less. */
        w->dirty = true;
        w->unsaved_create = true;
        log_info("created record name=%s id=%s", r->name, r->id);
        return fault_hit("create-record.after", r->name, err);
}

static char *describe_changes(const struct bg_spec *old, const struct bg_spec *new)
{
        struct spec_change *ch = NULL;
        size_t n = 0;
        char *msg = NULL;
        if (old)
                spec_diff(old, new, &ch, &n);
        for (size_t i = 0; i < n && (!msg || strlen(msg) < 400); i++) {
                char *part = xasprintf("%s%s %s -> %s", msg ? msg : "spec changed:", i ? "," : "", ch[i].field,
                                       ch[i].new_value ? ch[i].new_value : "(unset)");
                free(msg);
                msg = part;
        }
        spec_changes_free(ch, n);
        return msg ? msg : xstrdup("spec changed");
}

static int do_update_spec(struct work *w, struct bg_err **err)
{
        struct store_record *r = &w->rec;
        struct bg_spec *old = record_spec(r);
        _cleanup_free_ char *msg = describe_changes(old, w->want);
        spec_free(old);
        json_t *j = spec_to_json(w->want);
        free(r->spec_json);
        r->spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        r->spec_hash = w->want_hash;
        r->flags &= ~REC_GUEST_EXITED;
        r->failures = 0;
        r->backoff_until_ms = 0;
        set_message(r, NULL);
        if (save(w, "SpecChanged", msg, err) < 0)
                return -EIO;
        return fault_hit("update-spec.after", r->name, err);
}

/* ---- the guest's SSH host key ----
 *
 * Made on the host before the guest first boots (state_dir/vms/<id>/
 * ssh_host_ed25519_key, handles "host_key", put on the work disk by the
 * driver) and pinned in banger's known_hosts under the record id, so the
 * first ssh to the guest already checks its key: no trust on first use. */

static char *host_key_dir(struct loop *l, const char *id)
{
        return xasprintf("%s/vms/%s", l->c.state_dir, id);
}

static char *known_hosts_of(struct loop *l)
{
        return xasprintf("%s/known_hosts", l->c.ssh_dir);
}

static int host_key_up(struct work *w, struct bg_err **err)
{
        struct loop *l = w->l;
        if (!l->c.state_dir || !l->c.ssh_dir)
                return 0;
        struct store_record *r = &w->rec;
        _cleanup_free_ char *dir = host_key_dir(l, r->id);
        _cleanup_free_ char *path = xasprintf("%s/ssh_host_ed25519_key", dir);
        _cleanup_free_ char *pub = NULL, *kh = NULL;
        struct sshkey *k = NULL;
        int rc = 0;
        /* Reused when it exists: a work disk made by an earlier, interrupted
         * prepare already holds it. */
        if (access(path, F_OK) == 0) {
                struct bg_err *e = NULL;
                if (sshkey_load_private(path, &k, NULL, &e) < 0) {
                        log_warn("host key name=%s: %s; making a new one", r->name, bg_err_msg(e));
                        k = NULL;
                }
                bg_err_free(e);
        }
        if (!k) {
                if (mkdir_p(dir, 0700, err) < 0 || sshkey_generate(&k, err) < 0 ||
                    sshkey_write_pair(k, path, r->name, false, true, err) < 0) {
                        rc = bg_error_wrap(err, "host key");
                        goto out;
                }
                log_info("host key name=%s id=%s made", r->name, r->id);
        }
        const char *had = json_string_value(json_object_get(w->handles, "host_key"));
        if (!had || strcmp(had, path) != 0) {
                json_object_set_new(w->handles, "host_key", json_string(path));
                w->dirty = true;
                if (save(w, NULL, NULL, err) < 0) {
                        rc = -EIO;
                        goto out;
                }
        }
        json_t *net = json_object_get(w->handles, "net");
        pub = sshkey_public_line(k, NULL);
        kh = known_hosts_of(l);
        struct kh_entry e = {
                .id = r->id,
                .name = r->name,
                .ip = l->c.net && net ? json_string_value(json_object_get(net, "ip")) : NULL,
                .pubkey = pub,
        };
        if (kh_set(kh, &e, err) < 0)
                rc = bg_error_wrap(err, "known_hosts");
out:
        sshkey_free(k);
        return rc;
}

/* The host key file (the drivers' cleanup usually took its folder). */
static void host_key_remove(struct loop *l, const char *id)
{
        if (!l->c.state_dir)
                return;
        _cleanup_free_ char *dir = host_key_dir(l, id);
        _cleanup_free_ char *path = xasprintf("%s/ssh_host_ed25519_key", dir);
        unlink(path);
        rmdir(dir);   /* only when nothing else is left in it */
}

/* After a failed prepare: when the key is all the sandbox's folder holds
 * (the driver made nothing), leave nothing behind; the retry makes a new
 * key.  A folder with disks keeps its key, which those disks may hold. */
static void host_key_drop_if_alone(struct loop *l, const char *id)
{
        if (!l->c.state_dir)
                return;
        _cleanup_free_ char *dir = host_key_dir(l, id);
        DIR *d = opendir(dir);
        if (!d)
                return;
        bool alone = true;
        for (struct dirent *e; (e = readdir(d));)
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                    strcmp(e->d_name, "ssh_host_ed25519_key") != 0)
                        alone = false;
        closedir(d);
        if (alone)
                host_key_remove(l, id);
}

/* Unpin a deleted sandbox.  A failure only warns: the record is gone, and
 * the GC pass drops lines no record claims. */
static void host_key_forget(struct loop *l, const char *id)
{
        host_key_remove(l, id);
        if (!l->c.ssh_dir)
                return;
        _cleanup_free_ char *kh = known_hosts_of(l);
        struct bg_err *e = NULL;
        if (kh_remove(kh, id, &e) < 0)
                log_warn("known_hosts: remove id=%s: %s", id, bg_err_msg(e));
        bg_err_free(e);
}

static int do_forget(struct work *w, struct bg_err **err)
{
        struct store_record *r = &w->rec;
        if (fault_hit("forget.before", r->name, err) < 0)
                return -EIO;
        struct store_txn *t = NULL;
        uint64_t seq = 0;
        if (store_txn_begin(w->l->c.store, true, &t, err) < 0)
                return -EIO;
        json_t *ev = event_new(r->name, r->id, "Deleted", NULL, "sandbox deleted");
        int rc = store_alloc_release_owner(t, r->id, err);
        if (rc == 0)
                rc = store_record_del(t, r->name, err);
        if (rc == 0)
                rc = store_event_append(t, ev, &seq, err);
        json_decref(ev);
        if (rc < 0) {
                store_txn_abort(t);
                return -EIO;
        }
        if (store_txn_commit(t, err) < 0)
                return -EIO;
        publish(w->l, seq);
        log_info("deleted name=%s id=%s", r->name, r->id);
        host_key_forget(w->l, r->id);
        loop_note_driver(w->l, r->id, NULL);
        store_record_release(r);
        w->has_rec = false;
        w->dirty = false;
        return 0;
}

/* Claim the sandbox's network (write-ahead: committed before any device)
 * and make its devices and rules match the applied spec.  Done before every
 * prepare and start, so nat and port changes apply on the restart they
 * cause. */
static int net_up(struct work *w, struct bg_err **err)
{
        struct net *n = w->l->c.net;
        if (!n)
                return 0;
        bool had = json_object_get(w->handles, "net") != NULL;
        if (net_claim(n, w->l->c.store, w->rec.id, w->applied, w->handles, err) < 0)
                return bg_error_wrap(err, "network");
        if (fault_hit("net-claim.after", w->name, err) < 0)
                return -EIO;
        if (!had) {
                w->dirty = true;
                if (save(w, NULL, NULL, err) < 0)
                        return -EIO;
        }
        if (net_setup(n, w->rec.id, w->applied, w->handles, err) < 0)
                return bg_error_wrap(err, "network");
        return fault_hit("net-setup.after", w->name, err);
}

/* A deletion's network teardown runs in a thread beside the VMM's kill
 * and the driver's cleanup: deleting a link waits for the kernel's RCU
 * grace periods (~20 ms here), which is most of what `delete` costs.  The
 * record is still only forgotten after net_down joined it, so the
 * write-ahead order holds; a failed or unfinished job is redone in line
 * by net_down (every step is idempotent). */
struct net_job {
        pthread_t thread;
        struct net *net;
        char *id;
        json_t *handles;            /* a copy: cleanup clears the work's */
        int rc;
        struct bg_err *err;
};

static void *net_job_run(void *arg)
{
        struct net_job *j = arg;
        j->rc = net_teardown(j->net, j->id, j->handles, &j->err);
        return NULL;
}

static void net_down_start(struct work *w)
{
        if (!w->l->c.net || w->net_job)
                return;
        struct net_job *j = xcalloc(1, sizeof *j);
        j->net = w->l->c.net;
        j->id = xstrdup(w->rec.id);
        j->handles = json_deep_copy(w->handles);
        if (pthread_create(&j->thread, NULL, net_job_run, j) != 0) {
                json_decref(j->handles);
                free(j->id);
                free(j);
                return;   /* net_down does it in line */
        }
        w->net_job = j;
}

/* Wait for the job; true when it tore the network down. */
static bool net_job_join(struct work *w)
{
        struct net_job *j = w->net_job;
        if (!j)
                return false;
        pthread_join(j->thread, NULL);
        bool ok = j->rc == 0;
        if (!ok)
                log_warn("network cleanup id=%s: %s; trying again", j->id, bg_err_msg(j->err));
        bg_err_free(j->err);
        json_decref(j->handles);
        free(j->id);
        free(j);
        w->net_job = NULL;
        return ok;
}

static int net_down(struct work *w, struct bg_err **err)
{
        if (!w->l->c.net)
                return 0;
        if (net_job_join(w))
                return 0;
        if (net_teardown(w->l->c.net, w->rec.id, w->handles, err) < 0)
                return bg_error_wrap(err, "network cleanup");
        return 0;
}

/* ---- the guest agent ---- */

static int64_t idle_timeout_of(const struct bg_spec *s)
{
        return (int64_t)s->idle_timeout_ms;
}

/* Ask the guest agent to power the guest off and wait until the VMM has
 * ended, up to AGENT_POWEROFF_MS.  True when it did; false leaves the
 * hypervisor's stop to do it (no agent, no answer, or too slow). */
static bool agent_poweroff(struct work *w, struct driver_vm *vm)
{
        struct agents *ag = w->l->agents;
        bool ready = false;
        char *why = NULL;
        if (agents_ready(ag, w->name, &ready, &why, NULL) < 0 || !ready) {
                free(why);
                return false;
        }
        free(why);
        struct bg_err *e = NULL;
        int64_t t0 = now_mono_ms();
        if (agents_shutdown(ag, w->name, AGENT_ACK_MS, &e) < 0) {
                log_warn("graceful stop name=%s: %s; using the hypervisor", w->name, bg_err_msg(e));
                bg_err_free(e);
                return false;
        }
        while (now_mono_ms() - t0 < AGENT_POWEROFF_MS) {
                struct driver_probe p = { VM_ABSENT, -1 };
                if (w->drv->ops->probe(w->drv, vm, &p, NULL) == 0 && p.vm != VM_RUNNING) {
                        log_info("graceful stop name=%s: guest powered off through its agent ms=%lld", w->name,
                                 (long long)(now_mono_ms() - t0));
                        return true;
                }
                struct timespec ts = { 0, 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        log_warn("graceful stop name=%s: guest still running %d ms after its agent's ack; using the hypervisor",
                 w->name, AGENT_POWEROFF_MS);
        return false;
}

/* Keep the agents thread connected to running sandboxes only. */
static void agent_follow(struct work *w)
{
        struct agents *ag = w->l->agents;
        if (!ag)
                return;
        if (w->has_rec && w->rec.phase == PHASE_RUNNING && w->probe.vm == VM_RUNNING) {
                const struct bg_spec *s = applied_spec(w);
                agents_track(ag, w->name, w->rec.id, w->handles, s ? idle_timeout_of(s) : 0);
        } else {
                agents_untrack(ag, w->name);
        }
}

/* The agents thread found the guest idle for its spec.idle_timeout: stop
 * it and keep it down, like a guest that powered itself off, until the
 * spec changes. */
static int idle_stop(struct work *w, struct bg_err **err)
{
        struct store_record *r = &w->rec;
        const struct bg_spec *s = applied_spec(w);
        char d[48];
        spec_duration_format(s ? s->idle_timeout_ms : 0, d, sizeof d);
        _cleanup_free_ char *msg = xasprintf("idle for %s (spec.idle_timeout); stopped until `banger vm start` or a spec change", d);
        if (set_phase(w, PHASE_STOPPING, msg, err) < 0)
                return -EIO;
        struct driver_vm vm = vm_of(w);
        agent_poweroff(w, &vm);
        if (w->drv->ops->stop(w->drv, &vm, STOP_TIMEOUT_MS, err) < 0)
                return bg_error_wrap(err, "stop");
        r->flags |= REC_GUEST_EXITED;
        r->last_exit = 0;
        set_message(r, msg);
        w->dirty = true;
        return set_phase(w, PHASE_STOPPED, msg, err);
}

static int execute(struct work *w, const struct plan_step *s, struct bg_err **err)
{
        struct store_record *r = &w->rec;
        if (s->action == PLAN_CREATE_RECORD)
                return do_create_record(w, err);
        if (set_phase(w, s->phase, s->reason, err) < 0)
                return -EIO;
        if (s->action == PLAN_PREPARE || s->action == PLAN_START || s->action == PLAN_RESTART) {
                if (!applied_spec(w))
                        return bg_error(err, EINVAL, "applied spec of '%s' is unreadable", r->name);
        }
        if (!w->drv && s->action == PLAN_PREPARE) {
                /* The sandbox's hypervisor is chosen once, then remembered. */
                if (drivers_pick(w->l->c.drivers, w->applied, &w->drv, err) < 0)
                        return -EIO;
                json_object_set_new(w->handles, "driver", json_string(w->drv->ops->name));
                loop_note_driver(w->l, r->id, w->drv);
                if (save(w, NULL, NULL, err) < 0)
                        return -EIO;
        }
        struct driver *drv = w->drv;
        bool driver_step = s->action == PLAN_PREPARE || s->action == PLAN_START || s->action == PLAN_RESTART ||
                           s->action == PLAN_STOP || s->action == PLAN_CLEANUP;
        if (driver_step && !drv) {
                /* Nothing was ever made: stop and cleanup have nothing to do. */
                if (s->action == PLAN_STOP || s->action == PLAN_CLEANUP) {
                        if (s->action == PLAN_CLEANUP) {
                                if (net_down(w, err) < 0)
                                        return -EIO;
                                r->flags &= ~REC_PREPARED;
                        }
                        w->dirty = true;
                        return s->action == PLAN_STOP && r->phase != PHASE_DELETING
                                       ? set_phase(w, PHASE_STOPPED, "vm stopped", err) : 0;
                }
                return bg_error(err, EINVAL, "no driver recorded for '%s'", r->name);
        }
        struct driver_vm vm = vm_of(w);

        switch (s->action) {
        case PLAN_UPDATE_SPEC:
                return do_update_spec(w, err);
        case PLAN_PREPARE:
                if (net_up(w, err) < 0 || host_key_up(w, err) < 0)
                        return -EIO;
                if (drv->ops->prepare(drv, &vm, err) < 0) {
                        host_key_drop_if_alone(w->l, r->id);
                        return bg_error_wrap(err, "prepare");
                }
                r->flags |= REC_PREPARED;
                w->dirty = true;
                return 0;
        case PLAN_RESTART:
                r->restarts++;
                r->failures++;
                r->backoff_until_ms = now_wall_ms() + backoff_ms(r->failures);
                if (save(w, "Restarted", s->reason, err) < 0)
                        return -EIO;
                /* fall through */
        case PLAN_START:
                if (net_up(w, err) < 0)
                        return -EIO;
                if (drv->ops->start(drv, &vm, err) < 0)
                        return bg_error_wrap(err, "start");
                r->last_exit = -1;
                r->flags &= ~REC_GUEST_EXITED;
                set_message(r, NULL);
                w->dirty = true;
                return set_phase(w, PHASE_RUNNING, "vm started", err);
        case PLAN_STOP:
                /* A sandbox on its way out loses its disks next: a graceful
                 * shutdown would only make `delete` (and `vm run --rm`)
                 * wait seconds for a guest whose writes are thrown away. */
                if (r->phase == PHASE_DELETING) {
                        net_down_start(w);
                        if (drv->ops->kill(drv, &vm, err) < 0)
                                return bg_error_wrap(err, "kill");
                        w->dirty = true;
                        return 0;
                }
                agent_poweroff(w, &vm);
                if (drv->ops->stop(drv, &vm, STOP_TIMEOUT_MS, err) < 0)
                        return bg_error_wrap(err, "stop");
                w->dirty = true;
                if (r->phase == PHASE_DELETING)
                        return 0;
                return set_phase(w, PHASE_STOPPED, "vm stopped", err);
        case PLAN_CLEANUP:
                if (drv->ops->cleanup(drv, &vm, err) < 0)
                        return bg_error_wrap(err, "cleanup");
                if (net_down(w, err) < 0)
                        return -EIO;
                host_key_remove(w->l, r->id);
                r->flags &= ~REC_PREPARED;
                json_object_clear(w->handles);
                w->drv = NULL;   /* a recreate may move to another hypervisor */
                loop_note_driver(w->l, r->id, NULL);
                w->dirty = true;
                return 0;
        case PLAN_FORGET:
                return do_forget(w, err);
        case PLAN_SET_PHASE:
                if (s->guest_exited) {
                        r->flags |= REC_GUEST_EXITED;
                        r->last_exit = w->probe.exit_status;
                        set_message(r, s->reason);
                        return save(w, NULL, NULL, err);
                }
                return 0;
        case PLAN_NONE:
        case PLAN_WAIT:
        case PLAN_CREATE_RECORD:
                return 0;
        }
        return 0;
}

/* A step failed: count it, back off, say why. */
static void record_failure(struct work *w, const struct plan_step *s, struct bg_err *e)
{
        struct store_record *r = &w->rec;
        log_warn("action failed name=%s action=%s: %s", w->name, plan_action_name(s->action), bg_err_msg(e));
        if (!w->has_rec) {
                loop_requeue_after(w->l, w->name, backoff_ms(1));
                return;
        }
        r->failures++;
        r->backoff_until_ms = now_wall_ms() + backoff_ms(r->failures);
        set_message(r, bg_err_msg(e));
        if (r->phase != PHASE_DELETING) {
                r->phase = PHASE_FAILED;
                r->phase_since_ms = now_wall_ms();
        }
        struct bg_err *err = NULL;
        if (save(w, "ActionFailed", bg_err_msg(e), &err) < 0)
                log_error("record failure name=%s: %s", r->name, bg_err_msg(err));
        bg_err_free(err);
        loop_requeue_after(w->l, w->name, backoff_ms(r->failures));
}

static struct plan_input plan_input_of(struct work *w)
{
        struct plan_input in = {
                .has_desired = w->want != NULL,
                .want = w->want ? w->want->state : SPEC_STATE_RUNNING,
                .restart = w->want ? w->want->restart : SPEC_RESTART_ON_FAILURE,
                .has_record = w->has_rec,
                .phase = w->rec.phase,
                .flags = w->rec.flags,
                .vm = w->probe.vm,
                .now_ms = now_wall_ms(),
                .backoff_until_ms = w->rec.backoff_until_ms,
        };
        if (w->has_rec && w->want && w->rec.spec_hash != w->want_hash) {
                struct bg_spec *old = record_spec(&w->rec);
                struct spec_change *ch = NULL;
                size_t n = 0;
                in.spec_changed = true;
                in.impact = SPEC_IMPACT_RECREATE;   /* unreadable old spec: start over */
                if (old) {
                        spec_diff(old, w->want, &ch, &n);
                        in.impact = spec_changes_impact(ch, n);
                }
                spec_changes_free(ch, n);
                spec_free(old);
        }
        return in;
}

/* A running sandbox whose tap vanished (deleted by hand, or a bangerd
 * restarted in a fresh network namespace) gets its network set up again. */
static void repair_network(struct work *w)
{
        struct net *n = w->l->c.net;
        if (!n || !w->has_rec || w->rec.phase != PHASE_RUNNING || !json_object_get(w->handles, "net"))
                return;
        struct bg_err *err = NULL;
        bool ok = false;
        if (net_tap_ok(n, w->rec.id, &ok, &err) == 0 && !ok) {
                log_warn("network of name=%s id=%s is missing; setting it up again", w->name, w->rec.id);
                if (!applied_spec(w) || net_setup(n, w->rec.id, w->applied, w->handles, &err) < 0)
                        log_error("network repair name=%s: %s", w->name, bg_err_msg(err));
        }
        bg_err_free(err);
}

void converge(struct loop *l, const char *name)
{
        struct work w = { .l = l, .name = name };
        load(&w);
        if (w.drv_missing) {
                /* Acting without its driver could leak or duplicate its VM. */
                _cleanup_free_ char *msg = xasprintf("made by driver %s, which this bangerd does not run; "
                                                     "restart bangerd with that driver to manage it", w.drv_missing);
                if (!w.rec.message || strcmp(w.rec.message, msg) != 0) {
                        set_message(&w.rec, msg);
                        save(&w, "ActionFailed", msg, NULL);
                }
                log_warn("name=%s %s", name, msg);
        }
        repair_network(&w);
        /* `banger vm start` on a sandbox whose guest stopped itself (powered
         * off, or idle_timeout): the spec already says running, so only this
         * request lifts the stay-down. */
        if (loop_take_start_request(l, name) && w.has_rec && (w.rec.flags & REC_GUEST_EXITED)) {
                w.rec.flags &= ~REC_GUEST_EXITED;
                w.rec.failures = 0;
                w.rec.backoff_until_ms = 0;
                set_message(&w.rec, NULL);
                /* A VMM that ended by itself is still reported as exited
                 * until reaped; reap it so the plan sees no VM and starts. */
                struct bg_err *e = NULL;
                struct driver_vm vm = vm_of(&w);
                if (w.drv && w.drv->ops->kill(w.drv, &vm, &e) < 0)
                        log_warn("start request name=%s: %s", name, bg_err_msg(e));
                bg_err_free(e);
                save(&w, "StartRequested", "started again on request", NULL);
        }
        int i;
        for (i = 0; i < MAX_STEPS && !w.drv_missing; i++) {
                observe(&w);
                if (w.has_rec && w.drv && w.rec.phase == PHASE_RUNNING && w.probe.vm == VM_RUNNING &&
                    agents_take_idle(l->agents, name)) {
                        struct bg_err *err = NULL;
                        struct plan_step idle = { .action = PLAN_STOP, .phase = PHASE_STOPPING };
                        if (idle_stop(&w, &err) < 0) {
                                record_failure(&w, &idle, err);
                                bg_err_free(err);
                                break;
                        }
                        continue;
                }
                struct plan_input in = plan_input_of(&w);
                struct plan_step s = plan_next(&in);
                log_debug("plan name=%s phase=%s vm=%d -> %s", name, phase_name(in.phase), (int)in.vm,
                          plan_action_name(s.action));
                if (s.action == PLAN_NONE) {
                        /* A sandbox that has been fine for a while forgets its failures. */
                        struct store_record *r = &w.rec;
                        if (w.has_rec && r->failures && in.now_ms - r->phase_since_ms > STABLE_MS &&
                            (r->phase == PHASE_RUNNING || r->phase == PHASE_STOPPED)) {
                                r->failures = 0;
                                r->backoff_until_ms = 0;
                                w.dirty = true;
                        }
                        break;
                }
                if (s.action == PLAN_WAIT) {
                        loop_requeue_after(l, name, w.rec.backoff_until_ms - in.now_ms);
                        break;
                }
                struct bg_err *err = NULL;
                if (execute(&w, &s, &err) < 0) {
                        record_failure(&w, &s, err);
                        bg_err_free(err);
                        break;
                }
        }
        net_job_join(&w);   /* a deletion that stopped short of its cleanup */
        agent_follow(&w);
        if (i == MAX_STEPS && !w.drv_missing) {
                log_error("reconcile name=%s did not converge in %d steps", name, MAX_STEPS);
                loop_requeue_after(l, name, BACKOFF_CAP_MS);
        }
        if (w.has_rec && w.dirty) {
                struct bg_err *err = NULL;
                if (save(&w, NULL, NULL, &err) < 0)
                        log_error("save name=%s: %s", name, bg_err_msg(err));
                bg_err_free(err);
        }
        desired_free(w.d);
        spec_free(w.want);
        spec_free(w.applied);
        json_decref(w.handles);
        store_record_release(&w.rec);
}
