/* loop: see loop.h.
 *
 * Threads: the main thread (loop_run) owns inotify, the timers and GC; N
 * workers reconcile names.  One mutex guards the index and the work queue;
 * it is never held across a driver call, and a worker never takes it
 * inside a store transaction, so the two cannot deadlock.
 *
 * The queue is the classic level-triggered work queue: a name is either
 * absent, QUEUED, or RUNNING (possibly with AGAIN set when it was marked
 * dirty meanwhile, so it goes round once more).  Retries after a failure
 * or during backoff wait in a small delayed list that the main thread
 * moves back into the queue when due.
 */
#include "loop.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "driver.h"
#include "err.h"
#include "fault.h"
#include "hub.h"
#include "index.h"
#include "log.h"
#include "plan.h"
#include "store.h"
#include "strmap.h"
#include "util.h"
#include "view.h"
#include "vmdefaults.h"
#include "watch.h"

#define Q_QUEUED 1u
#define Q_RUNNING 2u
#define Q_AGAIN 4u

#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 30000
#define STABLE_MS 60000          /* running this long forgets past failures */
#define STOP_TIMEOUT_MS 10000
#define MAX_STEPS 32             /* per reconcile; plan converges in far fewer */

struct delayed {
        char *name;
        int64_t due_mono;
};

struct loop {
        struct loop_config c;
        pthread_mutex_t mu;
        pthread_cond_t work_cv;    /* workers: queue not empty or stopping */
        pthread_cond_t idle_cv;    /* loop_wait_idle: queue drained */
        struct index *ix;
        struct strmap *qstate;     /* name -> (void *)flags */
        char **fifo;               /* ring of queued names (owned) */
        size_t fifo_head, fifo_len, fifo_cap;
        struct delayed *delayed;
        size_t n_delayed;
        unsigned running;          /* names being reconciled */
        bool stopping;
        pthread_t *threads;
        int n_threads;
        int inotify_fd;
};

/* ---- work queue (mu held) ---- */

static void fifo_push(struct loop *l, const char *name)
{
        if (l->fifo_len == l->fifo_cap) {
                size_t cap = l->fifo_cap ? l->fifo_cap * 2 : 64;
                char **n = xcalloc(cap, sizeof *n);
                for (size_t i = 0; i < l->fifo_len; i++)
                        n[i] = l->fifo[(l->fifo_head + i) % l->fifo_cap];
                free(l->fifo);
                l->fifo = n;
                l->fifo_cap = cap;
                l->fifo_head = 0;
        }
        l->fifo[(l->fifo_head + l->fifo_len) % l->fifo_cap] = xstrdup(name);
        l->fifo_len++;
}

static char *fifo_pop(struct loop *l)
{
        char *n = l->fifo[l->fifo_head];
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
        return n;
}

static void enqueue_locked(struct loop *l, const char *name)
{
        uintptr_t f = (uintptr_t)strmap_get(l->qstate, name);
        if (f & Q_QUEUED)
                return;
        if (f & Q_RUNNING) {
                strmap_put(l->qstate, name, (void *)(f | Q_AGAIN));
                return;
        }
        strmap_put(l->qstate, name, (void *)(uintptr_t)Q_QUEUED);
        fifo_push(l, name);
        pthread_cond_signal(&l->work_cv);
}

static void enqueue_cb(const char *name, void *arg)
{
        enqueue_locked(arg, name);
}

static void delay_locked(struct loop *l, const char *name, int64_t due_mono)
{
        for (size_t i = 0; i < l->n_delayed; i++) {
                if (strcmp(l->delayed[i].name, name) == 0) {
                        if (due_mono < l->delayed[i].due_mono)
                                l->delayed[i].due_mono = due_mono;
                        return;
                }
        }
        l->delayed = xreallocarray(l->delayed, l->n_delayed + 1, sizeof *l->delayed);
        l->delayed[l->n_delayed++] = (struct delayed){ xstrdup(name), due_mono };
}

static void requeue_after(struct loop *l, const char *name, int64_t wait_ms)
{
        pthread_mutex_lock(&l->mu);
        delay_locked(l, name, now_mono_ms() + (wait_ms > 0 ? wait_ms : 0));
        pthread_mutex_unlock(&l->mu);
}

/* Move due delayed names into the queue; return ms until the next one. */
static int64_t promote_delayed(struct loop *l)
{
        int64_t now = now_mono_ms(), next = INT64_MAX;
        pthread_mutex_lock(&l->mu);
        for (size_t i = 0; i < l->n_delayed;) {
                if (l->delayed[i].due_mono <= now) {
                        enqueue_locked(l, l->delayed[i].name);
                        free(l->delayed[i].name);
                        l->delayed[i] = l->delayed[--l->n_delayed];
                        continue;
                }
                if (l->delayed[i].due_mono - now < next)
                        next = l->delayed[i].due_mono - now;
                i++;
        }
        pthread_mutex_unlock(&l->mu);
        return next;
}

/* ---- events ---- */

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

/* Append one event in its own transaction. */
static void emit(struct loop *l, const char *name, const char *id, const char *type, const char *phase,
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

static void report_cb(const char *name, const char *type, const char *message, void *arg)
{
        struct loop *l = arg;
        log_warn("%s name=%s %s", type, name ? name : "-", message);
        emit(l, name, NULL, type, NULL, message);
}

/* Write r, plus an event when type != NULL, in one transaction. */
static int save(struct loop *l, const struct store_record *r, const char *type, const char *msg,
                struct bg_err **err)
{
        struct store_txn *t = NULL;
        uint64_t seq = 0;
        if (store_txn_begin(l->c.store, true, &t, err) < 0)
                return -EIO;
        if (store_record_put(t, r, err) < 0)
                goto fail;
        if (type) {
                json_t *ev = event_new(r->name, r->id, type, phase_name(r->phase), msg);
                int rc = store_event_append(t, ev, &seq, err);
                json_decref(ev);
                if (rc < 0)
                        goto fail;
        }
        if (store_txn_commit(t, err) < 0)
                return -EIO;
        publish(l, seq);
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

static int set_phase(struct loop *l, struct store_record *r, enum bg_phase p, const char *why, struct bg_err **err)
{
        if (r->phase == p)
                return 0;
        log_info("phase name=%s id=%s %s -> %s (%s)", r->name, r->id, phase_name(r->phase), phase_name(p), why);
        r->phase = p;
        r->phase_since_ms = now_wall_ms();
        return save(l, r, "PhaseChanged", why, err);
}

/* ---- reconcile one name ---- */

static int64_t backoff_ms(uint32_t failures)
{
        int64_t ms = BACKOFF_BASE_MS;
        for (uint32_t i = 1; i < failures && ms < BACKOFF_CAP_MS; i++)
                ms *= 2;
        return ms < BACKOFF_CAP_MS ? ms : BACKOFF_CAP_MS;
}

static int read_record(struct loop *l, const char *name, struct store_record *r, bool *found)
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

/* Everything one reconcile step needs, gathered without holding locks. */
struct observed {
        struct desired *d;          /* NULL: no file claims the name */
        struct store_record rec;
        bool has_rec;
        struct bg_spec *want;       /* desired spec (file's, or applied when the file is invalid) */
        uint64_t want_hash;
        struct bg_spec *applied;    /* record's spec, resolved for the driver */
        json_t *handles;
        struct driver_vm vm;
        struct driver_probe probe;
};

static void observed_release(struct observed *o)
{
        desired_free(o->d);
        store_record_release(&o->rec);
        spec_free(o->want);
        spec_free(o->applied);
        json_decref(o->handles);
        memset(o, 0, sizeof *o);
}

static int observe(struct loop *l, const char *name, struct observed *o)
{
        memset(o, 0, sizeof *o);
        pthread_mutex_lock(&l->mu);
        o->d = index_get(l->ix, name);
        pthread_mutex_unlock(&l->mu);
        if (read_record(l, name, &o->rec, &o->has_rec) < 0)
                return -EIO;
        if (o->d && o->d->spec) {
                o->want = spec_dup(o->d->spec);
                o->want_hash = o->d->hash;
        } else if (o->d && o->has_rec) {
                o->want = record_spec(&o->rec);   /* invalid edit: keep the last valid spec */
                o->want_hash = o->rec.spec_hash;
        }
        o->probe = (struct driver_probe){ VM_ABSENT, -1 };
        if (!o->has_rec)
                return 0;
        o->applied = record_spec(&o->rec);
        if (o->applied)
                vmdefaults_resolve(l->c.cfg, o->applied, NULL);
        o->handles = o->rec.handles_json ? json_loads(o->rec.handles_json, 0, NULL) : NULL;
        if (!json_is_object(o->handles)) {
                json_decref(o->handles);
                o->handles = json_object();
        }
        o->vm = (struct driver_vm){ o->rec.name, o->rec.id, o->applied, o->handles };
        struct bg_err *err = NULL;
        if (l->c.driver->ops->probe(l->c.driver, &o->vm, &o->probe, &err) < 0) {
                log_warn("probe name=%s: %s", name, bg_err_msg(err));
                o->probe.vm = VM_ABSENT;
        }
        bg_err_free(err);
        return 0;
}

static void store_handles(struct observed *o)
{
        free(o->rec.handles_json);
        o->rec.handles_json = json_object_size(o->handles) ? json_dumps(o->handles, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

static int do_create_record(struct loop *l, struct observed *o, struct bg_err **err)
{
        struct store_record *r = &o->rec;
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", o->d->name);
        store_new_id(r->id);
        r->phase = PHASE_PENDING;
        r->created_ms = r->phase_since_ms = now_wall_ms();
        r->last_exit = -1;
        json_t *j = spec_to_json(o->want);
        r->spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        r->spec_hash = o->want_hash;
        o->has_rec = true;
        if (save(l, r, "PhaseChanged", "new sandbox", err) < 0)
                return -EIO;
        log_info("created record name=%s id=%s", r->name, r->id);
        return fault_hit("create-record.after", r->name, err);
}

static int do_update_spec(struct loop *l, struct observed *o, struct bg_err **err)
{
        struct store_record *r = &o->rec;
        _cleanup_free_ char *msg = NULL;
        struct spec_change *ch = NULL;
        size_t n = 0;
        struct bg_spec *old = record_spec(r);
        if (old)
                spec_diff(old, o->want, &ch, &n);
        size_t len = 0;
        for (size_t i = 0; i < n && len < 400; i++) {
                char *part = xasprintf("%s%s %s -> %s", msg ? msg : "spec changed:", i ? "," : "", ch[i].field,
                                       ch[i].new_value ? ch[i].new_value : "(unset)");
                free(msg);
                msg = part;
                len = strlen(msg);
        }
        spec_changes_free(ch, n);
        spec_free(old);
        json_t *j = spec_to_json(o->want);
        free(r->spec_json);
        r->spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        r->spec_hash = o->want_hash;
        r->flags &= ~REC_GUEST_EXITED;
        r->failures = 0;
        r->backoff_until_ms = 0;
        set_message(r, NULL);
        if (save(l, r, "SpecChanged", msg ? msg : "spec changed", err) < 0)
                return -EIO;
        return fault_hit("update-spec.after", r->name, err);
}

static int execute(struct loop *l, struct observed *o, const struct plan_step *s, struct bg_err **err)
{
        struct driver *drv = l->c.driver;
        struct store_record *r = &o->rec;
        if (s->action == PLAN_CREATE_RECORD)
                return do_create_record(l, o, err);
        if (set_phase(l, r, s->phase, s->reason, err) < 0)
                return -EIO;
        if ((s->action == PLAN_PREPARE || s->action == PLAN_START || s->action == PLAN_RESTART) && !o->applied)
                return bg_error(err, EINVAL, "applied spec of '%s' is unreadable", r->name);

        switch (s->action) {
        case PLAN_UPDATE_SPEC:
                return do_update_spec(l, o, err);
        case PLAN_PREPARE:
                if (drv->ops->prepare(drv, &o->vm, err) < 0)
                        return bg_error_wrap(err, "prepare");
                r->flags |= REC_PREPARED;
                store_handles(o);
                return save(l, r, NULL, NULL, err);
        case PLAN_RESTART:
                r->restarts++;
                r->failures++;
                r->backoff_until_ms = now_wall_ms() + backoff_ms(r->failures);
                if (save(l, r, "Restarted", s->reason, err) < 0)
                        return -EIO;
                /* fall through */
        case PLAN_START:
                if (drv->ops->start(drv, &o->vm, err) < 0)
                        return bg_error_wrap(err, "start");
                store_handles(o);
                r->last_exit = -1;
                r->flags &= ~REC_GUEST_EXITED;
                set_message(r, NULL);
                return set_phase(l, r, PHASE_RUNNING, "vm started", err);
        case PLAN_STOP:
                if (drv->ops->stop(drv, &o->vm, STOP_TIMEOUT_MS, err) < 0)
                        return bg_error_wrap(err, "stop");
                store_handles(o);
                if (r->phase == PHASE_DELETING)
                        return save(l, r, NULL, NULL, err);
                return set_phase(l, r, PHASE_STOPPED, "vm stopped", err);
        case PLAN_CLEANUP:
                if (drv->ops->cleanup(drv, &o->vm, err) < 0)
                        return bg_error_wrap(err, "cleanup");
                r->flags &= ~REC_PREPARED;
                json_object_clear(o->handles);
                store_handles(o);
                return save(l, r, NULL, NULL, err);
        case PLAN_FORGET: {
                if (fault_hit("forget.before", r->name, err) < 0)
                        return -EIO;
                struct store_txn *t = NULL;
                uint64_t seq = 0;
                if (store_txn_begin(l->c.store, true, &t, err) < 0)
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
                publish(l, seq);
                log_info("deleted name=%s id=%s", r->name, r->id);
                o->has_rec = false;
                return 0;
        }
        case PLAN_SET_PHASE:
                if (s->guest_exited) {
                        r->flags |= REC_GUEST_EXITED;
                        r->last_exit = o->probe.exit_status;
                        set_message(r, s->reason);
                        return save(l, r, NULL, NULL, err);
                }
                return 0;
        case PLAN_NONE:
        case PLAN_WAIT:
        case PLAN_CREATE_RECORD:
                return 0;
        }
        return 0;
}

/* An action failed: count it, back off, say why. */
static void record_failure(struct loop *l, struct observed *o, const struct plan_step *s, struct bg_err *e)
{
        struct store_record *r = &o->rec;
        log_warn("action failed name=%s action=%s: %s", r->name, plan_action_name(s->action), bg_err_msg(e));
        if (!o->has_rec) {
                requeue_after(l, o->d ? o->d->name : r->name, backoff_ms(1));
                return;
        }
        /* Re-read: the failed action may have committed part of its work. */
        struct store_record fresh;
        bool found = false;
        if (read_record(l, r->name, &fresh, &found) == 0 && found) {
                store_record_release(r);
                *r = fresh;
        }
        r->failures++;
        r->backoff_until_ms = now_wall_ms() + backoff_ms(r->failures);
        set_message(r, bg_err_msg(e));
        if (r->phase != PHASE_DELETING) {
                r->phase = PHASE_FAILED;
                r->phase_since_ms = now_wall_ms();
        }
        struct bg_err *err = NULL;
        if (save(l, r, "ActionFailed", bg_err_msg(e), &err) < 0)
                log_error("record failure name=%s: %s", r->name, bg_err_msg(err));
        bg_err_free(err);
        requeue_after(l, r->name, backoff_ms(r->failures));
}

static void reconcile(struct loop *l, const char *name)
{
        for (int i = 0; i < MAX_STEPS; i++) {
                struct observed o;
                if (observe(l, name, &o) < 0) {
                        observed_release(&o);
                        requeue_after(l, name, backoff_ms(3));
                        return;
                }
                struct plan_input in = {
                        .has_desired = o.want != NULL,
                        .want = o.want ? o.want->state : SPEC_STATE_RUNNING,
                        .restart = o.want ? o.want->restart : SPEC_RESTART_ON_FAILURE,
                        .has_record = o.has_rec,
                        .phase = o.rec.phase,
                        .flags = o.rec.flags,
                        .vm = o.probe.vm,
                        .now_ms = now_wall_ms(),
                        .backoff_until_ms = o.rec.backoff_until_ms,
                };
                if (o.has_rec && o.want && o.rec.spec_hash != o.want_hash) {
                        struct bg_spec *old = record_spec(&o.rec);
                        struct spec_change *ch = NULL;
                        size_t n = 0;
                        in.spec_changed = true;
                        in.impact = SPEC_IMPACT_RECREATE;
                        if (old) {
                                spec_diff(old, o.want, &ch, &n);
                                in.impact = spec_changes_impact(ch, n);
                        }
                        spec_changes_free(ch, n);
                        spec_free(old);
                }
                struct plan_step s = plan_next(&in);
                log_debug("plan name=%s phase=%s vm=%d -> %s", name, phase_name(in.phase), (int)in.vm,
                          plan_action_name(s.action));
                if (s.action == PLAN_NONE) {
                        /* A sandbox that has been fine for a while forgets its failures. */
                        if (o.has_rec && o.rec.failures && in.now_ms - o.rec.phase_since_ms > STABLE_MS &&
                            (o.rec.phase == PHASE_RUNNING || o.rec.phase == PHASE_STOPPED)) {
                                o.rec.failures = 0;
                                o.rec.backoff_until_ms = 0;
                                save(l, &o.rec, NULL, NULL, NULL);
                        }
                        observed_release(&o);
                        return;
                }
                if (s.action == PLAN_WAIT) {
                        requeue_after(l, name, o.rec.backoff_until_ms - in.now_ms);
                        observed_release(&o);
                        return;
                }
                struct bg_err *err = NULL;
                if (execute(l, &o, &s, &err) < 0) {
                        record_failure(l, &o, &s, err);
                        bg_err_free(err);
                        observed_release(&o);
                        return;
                }
                observed_release(&o);
        }
        log_error("reconcile name=%s did not converge in %d steps", name, MAX_STEPS);
        requeue_after(l, name, BACKOFF_CAP_MS);
}

static void *worker(void *arg)
{
        struct loop *l = arg;
        pthread_mutex_lock(&l->mu);
        for (;;) {
                while (!l->stopping && l->fifo_len == 0)
                        pthread_cond_wait(&l->work_cv, &l->mu);
                if (l->stopping)
                        break;
                char *name = fifo_pop(l);
                strmap_put(l->qstate, name, (void *)(uintptr_t)Q_RUNNING);
                l->running++;
                pthread_mutex_unlock(&l->mu);

                reconcile(l, name);

                pthread_mutex_lock(&l->mu);
                l->running--;
                uintptr_t f = (uintptr_t)strmap_del(l->qstate, name);
                if (f & Q_AGAIN)
                        enqueue_locked(l, name);
                if (l->fifo_len == 0 && l->running == 0)
                        pthread_cond_broadcast(&l->idle_cv);
                free(name);
        }
        pthread_mutex_unlock(&l->mu);
        return NULL;
}

/* ---- files ---- */

/* Re-read a batch of files of the folder (forgetting those that are
 * gone), then apply them to the index under one lock: both sides of a
 * rename land together, so no worker ever sees the name unclaimed. */
static void files_changed(struct loop *l, char **fnames, size_t n)
{
        struct spec_file **parsed = xcalloc(n, sizeof *parsed);
        char **paths = xcalloc(n, sizeof *paths);
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                paths[i] = xasprintf("%s/%s", l->c.sandboxes_dir, fnames[i]);
                if (stat(paths[i], &st) == 0)
                        spec_parse_path(paths[i], &parsed[i]);
                log_debug("file %s path=%s", parsed[i] ? "changed" : "removed", paths[i]);
        }
        pthread_mutex_lock(&l->mu);
        for (size_t i = 0; i < n; i++)
                if (!parsed[i])
                        index_update_file(l->ix, paths[i], NULL, enqueue_cb, report_cb, l);
        for (size_t i = 0; i < n; i++)
                if (parsed[i])
                        index_update_file(l->ix, paths[i], parsed[i], enqueue_cb, report_cb, l);
        pthread_mutex_unlock(&l->mu);
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
        free(parsed);
}

struct gone_ctx {
        struct loop *l;
        char **gone;
        size_t n;
};

static void collect_gone(const char *path, void *arg)
{
        struct gone_ctx *g = arg;
        struct stat st;
        if (stat(path, &st) == 0)
                return;
        g->gone = xreallocarray(g->gone, g->n + 1, sizeof *g->gone);
        g->gone[g->n++] = xstrdup(path);
}

/* Read the whole folder: at start-up and after an inotify overflow. */
static void rescan(struct loop *l)
{
        char **names = NULL;
        size_t n = 0;
        DIR *dp = opendir(l->c.sandboxes_dir);
        if (dp) {
                struct dirent *de;
                while ((de = readdir(dp)))
                        if (watch_is_spec_name(de->d_name)) {
                                names = xreallocarray(names, n + 1, sizeof *names);
                                names[n++] = xstrdup(de->d_name);
                        }
                closedir(dp);
        }
        files_changed(l, names, n);
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        struct gone_ctx g = { l, NULL, 0 };
        pthread_mutex_lock(&l->mu);
        index_foreach_file(l->ix, collect_gone, &g);
        for (size_t i = 0; i < g.n; i++) {
                index_update_file(l->ix, g.gone[i], NULL, enqueue_cb, report_cb, l);
                free(g.gone[i]);
        }
        pthread_mutex_unlock(&l->mu);
        free(g.gone);
}

/* ---- resync and garbage collection ---- */

static int enqueue_record_cb(const struct store_record *r, void *arg)
{
        enqueue_locked(arg, r->name);
        return 0;
}

static int collect_id_cb(const struct store_record *r, void *arg)
{
        strmap_put(arg, r->id, (void *)1);
        return 0;
}

struct alloc_gc {
        struct strmap *ids;
        char **keys;   /* "pool\0key" pairs to release */
        size_t n;
};

static int stray_alloc_cb(const char *pool, const char *key, const char *owner, void *arg)
{
        struct alloc_gc *a = arg;
        if (strmap_get(a->ids, owner))
                return 0;
        a->keys = xreallocarray(a->keys, a->n + 2, sizeof *a->keys);
        a->keys[a->n++] = xstrdup(pool);
        a->keys[a->n++] = xstrdup(key);
        return 0;
}

/* Remove what no record claims.  Objects are listed before records are
 * read: every object's record was committed before the object was made
 * (write-ahead), so a live sandbox's objects always find their record. */
static void gc_pass(struct loop *l)
{
        struct driver *drv = l->c.driver;
        struct bg_err *err = NULL;
        char **owned = NULL;
        size_t n_owned = 0;
        struct store_txn *t = NULL;
        struct strmap *ids = strmap_new();
        struct alloc_gc a = { ids, NULL, 0 };

        if (drv->ops->list_owned(drv, &owned, &n_owned, &err) < 0)
                goto out;
        if (store_txn_begin(l->c.store, false, &t, &err) < 0)
                goto out;
        int rc = store_record_foreach(t, collect_id_cb, ids, &err);
        if (rc == 0)
                rc = store_alloc_foreach(t, NULL, stray_alloc_cb, &a, &err);
        store_txn_abort(t);
        if (rc < 0)
                goto out;
        for (size_t i = 0; i < n_owned; i++) {
                if (strmap_get(ids, owned[i]))
                        continue;
                if (drv->ops->remove_owned(drv, owned[i], &err) < 0) {
                        log_warn("gc: remove id=%s: %s", owned[i], bg_err_msg(err));
                        bg_err_free(err);
                        err = NULL;
                        continue;
                }
                log_info("gc: removed stray objects id=%s", owned[i]);
                _cleanup_free_ char *m = xasprintf("removed objects of %s that no record claims", owned[i]);
                emit(l, NULL, owned[i], "GarbageCollected", NULL, m);
        }
        if (a.n && store_txn_begin(l->c.store, true, &t, &err) == 0) {
                for (size_t i = 0; i + 1 < a.n; i += 2)
                        store_alloc_release(t, a.keys[i], a.keys[i + 1], NULL);
                store_txn_commit(t, &err);
                log_info("gc: released %zu stray allocations", a.n / 2);
        }
out:
        if (err)
                log_warn("gc: %s", bg_err_msg(err));
        bg_err_free(err);
        for (size_t i = 0; i < n_owned; i++)
                free(owned[i]);
        free(owned);
        for (size_t i = 0; i < a.n; i++)
                free(a.keys[i]);
        free(a.keys);
        strmap_free(ids);
}

void loop_resync(struct loop *l)
{
        struct store_txn *t = NULL;
        struct bg_err *err = NULL;
        pthread_mutex_lock(&l->mu);
        index_foreach_name(l->ix, enqueue_cb, l);
        if (store_txn_begin(l->c.store, false, &t, &err) == 0) {
                store_record_foreach(t, enqueue_record_cb, l, &err);
                store_txn_abort(t);
        }
        pthread_mutex_unlock(&l->mu);
        if (err)
                log_error("resync: %s", bg_err_msg(err));
        bg_err_free(err);
        gc_pass(l);
}

bool loop_wait_idle(struct loop *l, int timeout_ms)
{
        int64_t deadline = now_mono_ms() + timeout_ms;
        pthread_mutex_lock(&l->mu);
        while (l->fifo_len || l->running) {
                int64_t left = deadline - now_mono_ms();
                if (left <= 0)
                        break;
                pthread_mutex_unlock(&l->mu);
                usleep(left > 2 ? 2000 : 1000);
                pthread_mutex_lock(&l->mu);
        }
        bool idle = !l->fifo_len && !l->running;
        pthread_mutex_unlock(&l->mu);
        return idle;
}

/* ---- life cycle ---- */

int loop_new(const struct loop_config *c, struct loop **out, struct bg_err **err)
{
        if (mkdir_p(c->sandboxes_dir, 0755, err) < 0)
                return bg_error_wrap(err, "sandboxes folder");
        struct loop *l = xcalloc(1, sizeof *l);
        l->c = *c;
        if (l->c.workers < 1)
                l->c.workers = 1;
        if (l->c.resync_ms < 50)
                l->c.resync_ms = 50;
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->work_cv, NULL);
        pthread_cond_init(&l->idle_cv, NULL);
        l->ix = index_new();
        l->qstate = strmap_new();
        l->inotify_fd = -1;
        if (watch_open(c->sandboxes_dir, &l->inotify_fd, err) < 0) {
                loop_free(l);
                return -EIO;
        }
        *out = l;
        return 0;
}

int loop_start(struct loop *l, struct bg_err **err)
{
        rescan(l);
        loop_resync(l);
        l->threads = xcalloc((size_t)l->c.workers, sizeof *l->threads);
        for (int i = 0; i < l->c.workers; i++) {
                int rc = pthread_create(&l->threads[i], NULL, worker, l);
                if (rc != 0)
                        return bg_error(err, rc, "start worker: %s", strerror(rc));
                l->n_threads++;
        }
        log_info("loop started workers=%d names=%zu resync_ms=%d", l->c.workers, index_count(l->ix), l->c.resync_ms);
        return 0;
}

int loop_run(struct loop *l, int stop_fd, struct bg_err **err)
{
        int64_t next_resync = now_mono_ms() + l->c.resync_ms;
        for (;;) {
                int64_t wait = promote_delayed(l);
                int64_t to_resync = next_resync - now_mono_ms();
                if (to_resync < wait)
                        wait = to_resync;
                if (wait < 0)
                        wait = 0;
                struct pollfd pfd[2] = { { .fd = l->inotify_fd, .events = POLLIN }, { .fd = stop_fd, .events = POLLIN } };
                int n = poll(pfd, 2, wait > 60000 ? 60000 : (int)wait);
                if (n < 0 && errno != EINTR)
                        return bg_error(err, errno, "poll: %s", strerror(errno));
                if (n > 0 && (pfd[1].revents & POLLIN))
                        return 0;
                if (n > 0 && (pfd[0].revents & POLLIN)) {
                        char **names = NULL;
                        size_t nn = 0;
                        int overflow = watch_drain(l->inotify_fd, 20, &names, &nn) < 0;
                        files_changed(l, names, nn);
                        for (size_t i = 0; i < nn; i++)
                                free(names[i]);
                        free(names);
                        if (overflow) {
                                log_warn("inotify overflow; rescanning %s", l->c.sandboxes_dir);
                                rescan(l);
                        }
                }
                if (now_mono_ms() >= next_resync) {
                        loop_resync(l);
                        next_resync = now_mono_ms() + l->c.resync_ms;
                }
        }
}

void loop_free(struct loop *l)
{
        if (!l)
                return;
        pthread_mutex_lock(&l->mu);
        l->stopping = true;
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
        for (int i = 0; i < l->n_threads; i++)
                pthread_join(l->threads[i], NULL);
        free(l->threads);
        while (l->fifo_len)
                free(fifo_pop(l));
        free(l->fifo);
        for (size_t i = 0; i < l->n_delayed; i++)
                free(l->delayed[i].name);
        free(l->delayed);
        strmap_free(l->qstate);
        index_free(l->ix);
        if (l->inotify_fd >= 0)
                close(l->inotify_fd);
        pthread_cond_destroy(&l->work_cv);
        pthread_cond_destroy(&l->idle_cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
}

/* ---- API views ---- */

struct list_ctx {
        struct strmap *names;
        char **v;
        size_t n;
};

static void add_list_name(const char *name, void *arg)
{
        struct list_ctx *c = arg;
        if (strmap_get(c->names, name))
                return;
        strmap_put(c->names, name, (void *)1);
        c->v = xreallocarray(c->v, c->n + 1, sizeof *c->v);
        c->v[c->n++] = xstrdup(name);
}

static int add_record_name(const struct store_record *r, void *arg)
{
        add_list_name(r->name, arg);
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *loop_get_sandbox(void *arg, const char *name)
{
        struct loop *l = arg;
        pthread_mutex_lock(&l->mu);
        struct desired *d = index_get(l->ix, name);
        pthread_mutex_unlock(&l->mu);
        struct store_record r;
        bool found = false;
        read_record(l, name, &r, &found);
        json_t *obj = (d || found) ? view_sandbox(name, d, found ? &r : NULL, l->c.driver->ops->hypervisor(l->c.driver)) : NULL;
        if (found)
                store_record_release(&r);
        desired_free(d);
        return obj;
}

json_t *loop_list_sandboxes(void *arg)
{
        struct loop *l = arg;
        struct list_ctx c = { strmap_new(), NULL, 0 };
        struct store_txn *t = NULL;
        pthread_mutex_lock(&l->mu);
        index_foreach_name(l->ix, add_list_name, &c);
        pthread_mutex_unlock(&l->mu);
        if (store_txn_begin(l->c.store, false, &t, NULL) == 0) {
                store_record_foreach(t, add_record_name, &c, NULL);
                store_txn_abort(t);
        }
        qsort(c.v, c.n, sizeof *c.v, cmp_str);
        json_t *arr = json_array();
        for (size_t i = 0; i < c.n; i++) {
                json_t *o = loop_get_sandbox(l, c.v[i]);
                if (o)
                        json_array_append_new(arr, o);
                free(c.v[i]);
        }
        free(c.v);
        strmap_free(c.names);
        return arr;
}
