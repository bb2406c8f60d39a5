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
#include <time.h>
#include <unistd.h>

#include "agents.h"
#include "config.h"
#include "dns.h"
#include "driver.h"
#include "drivers.h"
#include "err.h"
#include "hub.h"
#include "index.h"
#include "known_hosts.h"
#include "log.h"
#include "net.h"
#include "vmdefaults.h"
#include "plan.h"
#include "store.h"
#include "strmap.h"
#include "util.h"
#include "view.h"
#include "watch.h"
#include "loop_internal.h"

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

void loop_note_driver(struct loop *l, const char *id, struct driver *drv)
{
        pthread_mutex_lock(&l->mu);
        if (drv)
                strmap_put(l->driver_by_id, id, drv);
        else
                strmap_del(l->driver_by_id, id);
        pthread_mutex_unlock(&l->mu);
}

void loop_requeue_after(struct loop *l, const char *name, int64_t wait_ms)
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

static void report_cb(const char *name, const char *type, const char *message, void *arg)
{
        struct loop *l = arg;
        log_warn("%s name=%s %s", type, name ? name : "-", message);
        loop_emit(l, name, NULL, type, NULL, message);
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

                converge(l, name);

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
        struct stat dir;
        uid_t owner = stat(l->c.sandboxes_dir, &dir) == 0 ? dir.st_uid : 0;
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                paths[i] = xasprintf("%s/%s", l->c.sandboxes_dir, fnames[i]);
                if (lstat(paths[i], &st) == 0)
                        spec_parse_path_owned(paths[i], owner, &parsed[i]);
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

struct recheck {
        struct loop *l;
        struct strmap *recorded;   /* names with a record */
        struct strmap *taps;       /* taps on the host (NULL: no network or unknown) */
        int64_t now;
        size_t queued;
};

/* Resync's cheap look at one record: queue it only if the planner would do
 * something.  The worker re-derives everything anyway (level-triggered);
 * this only spares it the thousands of names that are fine. */
static int recheck_record_cb(const struct store_record *r, void *arg)
{
        struct recheck *c = arg;
        struct loop *l = c->l;
        struct desired_peek p;
        strmap_put(c->recorded, r->name, (void *)1);
        pthread_mutex_lock(&l->mu);
        index_peek(l->ix, r->name, &p);
        pthread_mutex_unlock(&l->mu);
        bool check = !p.valid || p.hash != r->spec_hash || r->failures;
        if (!check && c->taps && r->phase == PHASE_RUNNING) {
                /* A running sandbox's tap vanished: converge sets it up again. */
                char tap[IPAM_TAP_NAME_SIZE];
                check = ipam_tap_name(r->id, tap, NULL) == 0 && !strmap_get(c->taps, tap);
        }
        if (!check) {
                /* Known records are probed without their handles (drivers
                 * answer from memory); only unknown ones pay for parsing. */
                pthread_mutex_lock(&l->mu);
                struct driver *drv = strmap_get(l->driver_by_id, r->id);
                pthread_mutex_unlock(&l->mu);
                json_t *h = NULL;
                if (!drv && r->handles_json) {
                        h = json_loads(r->handles_json, 0, NULL);
                        drv = drivers_find(l->c.drivers, json_string_value(json_object_get(h, "driver")));
                        if (drv)
                                loop_note_driver(l, r->id, drv);
                }
                struct driver_vm vm = { .name = r->name, .id = r->id, .handles = h };
                struct driver_probe pr = { VM_ABSENT, -1 };
                if (drv && drv->ops->probe(drv, &vm, &pr, NULL) < 0)
                        check = true;
                json_decref(h);
                struct plan_input in = {
                        .has_desired = true, .want = p.state, .restart = p.restart,
                        .has_record = true, .phase = r->phase, .flags = r->flags, .vm = pr.vm,
                        .now_ms = c->now, .backoff_until_ms = r->backoff_until_ms,
                };
                check = check || plan_next(&in).action != PLAN_NONE;
        }
        if (check) {
                pthread_mutex_lock(&l->mu);
                enqueue_locked(l, r->name);
                pthread_mutex_unlock(&l->mu);
                c->queued++;
        }
        return 0;
}

static void queue_unrecorded(const char *name, void *arg)
{
        struct recheck *c = arg;
        if (!strmap_get(c->recorded, name)) {
                enqueue_locked(c->l, name);
                c->queued++;
        }
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
/* The ids banger lines of known_hosts carry (candidates: kh_remove judges
 * what is banger's).  Read before the records, so that an id found here and
 * in no record belongs to a deleted sandbox, never to one created since. */
static struct strmap *kh_ids(const char *path)
{
        struct strmap *m = strmap_new();
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (read_file_limited(path, KH_MAX_FILE, &text, &len, NULL) < 0)
                return m;
        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                size_t n = strlen(line);
                while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
                        line[--n] = '\0';
                char *last = line + n;
                while (last > line && last[-1] != ' ' && last[-1] != '\t')
                        last--;
                if (last == line || strncmp(last, "banger:", 7) != 0 || strlen(last + 7) != 16)
                        continue;
                bool hex = true;
                for (const char *c = last + 7; *c; c++)
                        hex = hex && ((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
                if (hex)
                        strmap_put(m, last + 7, (void *)1);
        }
        return m;
}

struct kh_stray {
        struct strmap *ids;   /* the records' ids */
        char **v;
        size_t n;
};

static void kh_stray_cb(const char *id, void *value, void *arg)
{
        (void)value;
        struct kh_stray *s = arg;
        if (!strmap_get(s->ids, id)) {
                s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
                s->v[s->n++] = xstrdup(id);
        }
}

/* Drop the known_hosts lines of sandboxes no record claims (a crash between
 * deleting a record and its line). */
static void gc_known_hosts(struct loop *l, struct strmap *pinned, struct strmap *ids)
{
        struct kh_stray s = { ids, NULL, 0 };
        strmap_foreach(pinned, kh_stray_cb, &s);
        _cleanup_free_ char *path = xasprintf("%s/known_hosts", l->c.ssh_dir);
        for (size_t i = 0; i < s.n; i++) {
                struct bg_err *e = NULL;
                if (kh_remove(path, s.v[i], &e) < 0) {
                        log_warn("gc known_hosts: remove id=%s: %s", s.v[i], bg_err_msg(e));
                } else {
                        log_info("gc known_hosts: removed id=%s", s.v[i]);
                        _cleanup_free_ char *m = xasprintf("removed the known_hosts line of %s that no record claims",
                                                           s.v[i]);
                        loop_emit(l, NULL, s.v[i], "GarbageCollected", NULL, m);
                }
                bg_err_free(e);
                free(s.v[i]);
        }
        free(s.v);
}

static void gc_pass(struct loop *l)
{
        struct bg_err *err = NULL;
        struct store_txn *t = NULL;
        struct strmap *ids = strmap_new();
        struct alloc_gc a = { ids, NULL, 0 };
        struct drivers *ds = l->c.drivers;
        char **owned[DRIVERS_MAX] = { 0 };
        size_t n_owned[DRIVERS_MAX] = { 0 };
        bool listed = true;
        struct net_owned net_owned = { 0 };
        struct strmap *pinned = NULL;

        for (size_t d = 0; d < ds->n; d++)
                if (ds->v[d]->ops->list_owned(ds->v[d], &owned[d], &n_owned[d], &err) < 0)
                        listed = false;
        if (listed && l->c.net && net_gc_list(l->c.net, &net_owned, &err) < 0)
                listed = false;
        if (l->c.ssh_dir) {
                _cleanup_free_ char *kh = xasprintf("%s/known_hosts", l->c.ssh_dir);
                pinned = kh_ids(kh);
        }
        if (!listed || store_txn_begin(l->c.store, false, &t, &err) < 0)
                goto out;
        int rc = store_record_foreach(t, collect_id_cb, ids, &err);
        if (rc == 0)
                rc = store_alloc_foreach(t, NULL, stray_alloc_cb, &a, &err);
        store_txn_abort(t);
        if (rc < 0)
                goto out;
        for (size_t d = 0; d < ds->n; d++) {
                struct driver *drv = ds->v[d];
                for (size_t i = 0; i < n_owned[d]; i++) {
                        if (strmap_get(ids, owned[d][i]))
                                continue;
                        struct bg_err *e = NULL;
                        if (drv->ops->remove_owned(drv, owned[d][i], &e) < 0) {
                                log_warn("gc %s: remove id=%s: %s", drv->ops->name, owned[d][i], bg_err_msg(e));
                                bg_err_free(e);
                                continue;
                        }
                        log_info("gc %s: removed stray objects id=%s", drv->ops->name, owned[d][i]);
                        _cleanup_free_ char *m = xasprintf("removed %s objects of %s that no record claims",
                                                           drv->ops->name, owned[d][i]);
                        loop_emit(l, NULL, owned[d][i], "GarbageCollected", NULL, m);
                }
        }
        if (l->c.net) {
                size_t removed = 0;
                struct bg_err *e = NULL;
                if (net_gc_sweep(l->c.net, &net_owned, ids, &removed, &e) < 0)
                        log_warn("gc network: %s", bg_err_msg(e));
                else if (removed)
                        loop_emit(l, NULL, NULL, "GarbageCollected", NULL,
                                  "removed network objects that no record claims");
                bg_err_free(e);
        }
        if (a.n && store_txn_begin(l->c.store, true, &t, &err) == 0) {
                for (size_t i = 0; i + 1 < a.n; i += 2)
                        store_alloc_release(t, a.keys[i], a.keys[i + 1], NULL);
                store_txn_commit(t, &err);
                log_info("gc: released %zu stray allocations", a.n / 2);
        }
        if (pinned)
                gc_known_hosts(l, pinned, ids);
out:
        if (err)
                log_warn("gc: %s", bg_err_msg(err));
        bg_err_free(err);
        for (size_t d = 0; d < ds->n; d++) {
                for (size_t i = 0; i < n_owned[d]; i++)
                        free(owned[d][i]);
                free(owned[d]);
        }
        for (size_t i = 0; i < a.n; i++)
                free(a.keys[i]);
        free(a.keys);
        net_owned_release(&net_owned);
        if (pinned)
                strmap_free(pinned);
        strmap_free(ids);
}

void loop_resync(struct loop *l)
{
        struct store_txn *t = NULL;
        struct bg_err *err = NULL;
        struct recheck c = { l, strmap_new(), NULL, now_wall_ms(), 0 };
        if (l->c.net)
                c.taps = net_tap_set(l->c.net, NULL);
        if (store_txn_begin(l->c.store, false, &t, &err) == 0) {
                store_record_foreach(t, recheck_record_cb, &c, &err);
                store_txn_abort(t);
        }
        pthread_mutex_lock(&l->mu);
        index_foreach_name(l->ix, queue_unrecorded, &c);
        pthread_mutex_unlock(&l->mu);
        strmap_free(c.recorded);
        if (c.taps)
                strmap_free(c.taps);
        if (err)
                log_error("resync: %s", bg_err_msg(err));
        bg_err_free(err);
        log_debug("resync queued=%zu", c.queued);
        gc_pass(l);
}

bool loop_wait_idle(struct loop *l, int timeout_ms)
{
        struct timespec dl = deadline_after_ms(CLOCK_REALTIME, timeout_ms);
        pthread_mutex_lock(&l->mu);
        while (l->fifo_len || l->running)
                if (pthread_cond_timedwait(&l->idle_cv, &l->mu, &dl) == ETIMEDOUT)
                        break;
        bool idle = !l->fifo_len && !l->running;
        pthread_mutex_unlock(&l->mu);
        return idle;
}

/* ---- life cycle ---- */

/* A sandbox's guest has been idle for its spec.idle_timeout: converge
 * stops it. */
static void agent_idle_cb(const char *name, void *arg)
{
        struct loop *l = arg;
        pthread_mutex_lock(&l->mu);
        enqueue_locked(l, name);
        pthread_mutex_unlock(&l->mu);
}

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
        l->start_requests = strmap_new();
        l->driver_by_id = strmap_new();
        l->inotify_fd = -1;
        if (watch_open(c->sandboxes_dir, &l->inotify_fd, err) < 0) {
                loop_free(l);
                return -EIO;
        }
        struct agents_config ac = { .run_dir = c->run_dir, .idle = agent_idle_cb, .arg = l };
        if (c->run_dir && agents_new(&ac, &l->agents, err) < 0) {
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

/* The driver saw a VM change behind our back (a VMM exited). */
static void vm_changed_cb(const char *name, void *arg)
{
        struct loop *l = arg;
        log_debug("vm changed name=%s", name);
        pthread_mutex_lock(&l->mu);
        enqueue_locked(l, name);
        pthread_mutex_unlock(&l->mu);
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
                struct drivers *ds = l->c.drivers;
                struct pollfd pfd[2 + DRIVERS_MAX] = { { .fd = l->inotify_fd, .events = POLLIN },
                                                       { .fd = stop_fd, .events = POLLIN } };
                nfds_t nfds = 2;
                for (size_t d = 0; d < ds->n; d++) {
                        int dfd = ds->v[d]->ops->event_fd ? ds->v[d]->ops->event_fd(ds->v[d]) : -1;
                        pfd[2 + d] = (struct pollfd){ .fd = dfd, .events = POLLIN };   /* -1: ignored by poll */
                        nfds = 3 + d;
                }
                int n = poll(pfd, nfds, wait > 60000 ? 60000 : (int)wait);
                for (size_t d = 0; n > 0 && d < ds->n; d++)
                        if (pfd[2 + d].fd >= 0 && (pfd[2 + d].revents & POLLIN))
                                ds->v[d]->ops->drain_events(ds->v[d], vm_changed_cb, l);
                if (n < 0 && errno != EINTR)
                        return bg_error(err, errno, "poll: %s", strerror(errno));
                if (n > 0 && (pfd[1].revents & POLLIN))
                        return 0;
                if (n > 0 && (pfd[0].revents & POLLIN)) {
                        char **names = NULL;
                        size_t nn = 0;
                        int overflow = watch_drain(l->inotify_fd, l->c.sandboxes_dir, 20, &names, &nn) < 0;
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
        agents_free(l->agents);
        while (l->fifo_len)
                free(fifo_pop(l));
        free(l->fifo);
        for (size_t i = 0; i < l->n_delayed; i++)
                free(l->delayed[i].name);
        free(l->delayed);
        strmap_free(l->qstate);
        strmap_free(l->start_requests);
        strmap_free(l->driver_by_id);
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

/* What status.hypervisor says: the record's driver, else the one the spec
 * would get. */
static const char *hypervisor_of(struct loop *l, const struct desired *d, const struct store_record *r)
{
        struct driver *drv = NULL;
        if (r && r->handles_json) {
                json_t *h = json_loads(r->handles_json, 0, NULL);
                drv = drivers_find(l->c.drivers, json_string_value(json_object_get(h, "driver")));
                json_decref(h);
        }
        if (!drv && d && d->spec && drivers_pick(l->c.drivers, d->spec, &drv, NULL) < 0)
                drv = NULL;
        return drv ? drv->ops->hypervisor(drv) : "";
}

/* The Ready condition: the guest agent said hello on its current
 * connection.  Only running sandboxes with an agent channel have one
 * tracked; the others are not ready, with the phase as the reason. */
static void add_ready(struct loop *l, json_t *obj, const char *name, const struct store_record *r)
{
        json_t *status = json_object_get(obj, "status");
        bool ready = false;
        char *why = NULL;
        json_t *info = NULL;
        if (agents_ready(l->agents, name, &ready, &why, &info) < 0) {
                free(why);
                why = r && r->phase == PHASE_RUNNING ? xstrdup("this sandbox has no guest agent channel")
                                                     : xasprintf("sandbox is %s", phase_name(r ? r->phase
                                                                                              : PHASE_PENDING));
        }
        json_t *conds = json_object_get(status, "conditions");
        json_array_append_new(conds, json_pack("{s:s, s:s, s:s}", "type", "Ready", "status", ready ? "True" : "False",
                                               "message", why));
        if (info)
                json_object_set_new(status, "agent", info);
        free(why);
}

json_t *loop_get_sandbox(void *arg, const char *name)
{
        struct loop *l = arg;
        pthread_mutex_lock(&l->mu);
        struct desired *d = index_get(l->ix, name);
        pthread_mutex_unlock(&l->mu);
        struct store_record r;
        bool found = false;
        loop_read_record(l, name, &r, &found);
        json_t *obj = (d || found) ? view_sandbox(name, d, found ? &r : NULL, hypervisor_of(l, d, found ? &r : NULL))
                                   : NULL;
        if (obj)
                add_ready(l, obj, name, found ? &r : NULL);
        if (found)
                store_record_release(&r);
        desired_free(d);
        return obj;
}

char **loop_list_names(void *arg, size_t *n)
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
        if (c.n)
                qsort(c.v, c.n, sizeof *c.v, cmp_str);
        strmap_free(c.names);
        *n = c.n;
        return c.v;
}

/* The record's driver and handles, for the API's imperative corners. */
static int record_driver(struct loop *l, const char *name, struct store_record *r, json_t **h, struct driver **drv)
{
        bool found = false;
        if (loop_read_record(l, name, r, &found) < 0)
                return -EIO;
        if (!found)
                return -ENOENT;
        *h = r->handles_json ? json_loads(r->handles_json, 0, NULL) : NULL;
        if (!json_is_object(*h)) {
                json_decref(*h);
                *h = json_object();
        }
        *drv = drivers_find(l->c.drivers, json_string_value(json_object_get(*h, "driver")));
        return 0;
}

char *loop_console_path(void *arg, const char *name)
{
        struct loop *l = arg;
        struct store_record r;
        json_t *h = NULL;
        struct driver *drv = NULL;
        if (record_driver(l, name, &r, &h, &drv) < 0)
                return NULL;
        const char *p = json_string_value(json_object_get(h, "console"));
        char *out = p ? xstrdup(p) : NULL;
        json_decref(h);
        store_record_release(&r);
        return out;
}

int loop_kill(void *arg, const char *name, struct bg_err **err)
{
        struct loop *l = arg;
        struct store_record r;
        json_t *h = NULL;
        struct driver *drv = NULL;
        int rc = record_driver(l, name, &r, &h, &drv);
        if (rc < 0)
                return rc == -ENOENT ? rc : bg_error(err, EIO, "cannot read the store");
        if (drv) {
                struct driver_vm vm = { .name = r.name, .id = r.id, .handles = h };
                rc = drv->ops->kill(drv, &vm, err);
        }
        log_info("kill name=%s id=%s rc=%d", name, r.id, rc);
        json_decref(h);
        store_record_release(&r);
        pthread_mutex_lock(&l->mu);
        enqueue_locked(l, name);
        pthread_mutex_unlock(&l->mu);
        return rc;
}

int loop_start_sandbox(void *arg, const char *name, struct bg_err **err)
{
        (void)err;
        struct loop *l = arg;
        struct store_record r;
        bool found = false;
        loop_read_record(l, name, &r, &found);
        if (!found)
                return -ENOENT;
        store_record_release(&r);
        pthread_mutex_lock(&l->mu);
        strmap_put(l->start_requests, name, (void *)1);
        enqueue_locked(l, name);
        pthread_mutex_unlock(&l->mu);
        return 0;
}

bool loop_take_start_request(struct loop *l, const char *name)
{
        pthread_mutex_lock(&l->mu);
        bool asked = strmap_get(l->start_requests, name) != NULL;
        if (asked)
                strmap_del(l->start_requests, name);
        pthread_mutex_unlock(&l->mu);
        return asked;
}

int loop_agent_ready(void *arg, const char *name, char **why)
{
        struct loop *l = arg;
        bool ready = false;
        *why = NULL;
        if (agents_ready(l->agents, name, &ready, why, NULL) < 0) {
                struct store_record r;
                bool found = false;
                loop_read_record(l, name, &r, &found);
                if (!found)
                        return -ENOENT;
                *why = xasprintf("sandbox %s is %s", name, phase_name(r.phase));
                store_record_release(&r);
                return -ENOTCONN;
        }
        return ready ? 0 : -ENOTCONN;
}

int loop_agent_stats(void *arg, const char *name, json_t **out, struct bg_err **err)
{
        struct loop *l = arg;
        return agents_stats(l->agents, name, 5000, out, err);
}

void loop_agent_exec(void *arg, const char *name, int fd, const char *extra, size_t extra_len,
                     const _Atomic bool *stopping)
{
        struct loop *l = arg;
        agents_exec_relay(l->agents, name, fd, extra, extra_len, stopping);
}

static json_t *doctor_network(struct loop *l);

json_t *loop_doctor(void *arg)
{
        struct loop *l = arg;
        json_t *drivers = json_array();
        for (size_t i = 0; i < l->c.drivers->n; i++) {
                struct driver *d = l->c.drivers->v[i];
                json_t *j = d->ops->doctor ? d->ops->doctor(d) : json_object();
                json_object_set_new(j, "name", json_string(d->ops->name));
                json_object_set_new(j, "hypervisor", json_string(d->ops->hypervisor(d)));
                json_array_append_new(drivers, j);
        }
        struct bg_spec empty = { 0 };
        struct vm_provenance prov;
        vmdefaults_resolve(l->c.cfg, &empty, &prov);
        char disk[32];
        spec_size_format(empty.disk_size, disk, sizeof disk);
        json_t *defaults = json_pack("{s:{s:i, s:s}, s:{s:i, s:s}, s:{s:s, s:s}, s:{s:s, s:s}}",
                                     "vcpu", "value", (json_int_t)empty.vcpu, "from", prov.vcpu,
                                     "memory_mib", "value", (json_int_t)empty.memory_mib, "from", prov.memory_mib,
                                     "disk_size", "value", disk, "from", prov.disk_size,
                                     "image", "value", empty.image, "from", prov.image);
        free(empty.image);
        pthread_mutex_lock(&l->mu);
        size_t names = index_count(l->ix);
        pthread_mutex_unlock(&l->mu);
        json_t *out = json_pack("{s:o, s:o, s:b, s:s, s:I}", "drivers", drivers, "vm_defaults", defaults,
                                "firecracker_usable", l->c.drivers->firecracker_usable,
                                "why_not_firecracker", l->c.drivers->why_not_firecracker,
                                "specs", (json_int_t)names);
        if (l->c.net)
                json_object_set_new(out, "network", doctor_network(l));
        return out;
}

/* ---- network: doctor and DNS ---- */

struct net_census {
        size_t addresses;
        bool nat;
};

static int count_ip_cb(const char *pool, const char *key, const char *owner, void *arg)
{
        (void)pool, (void)key, (void)owner;
        ((struct net_census *)arg)->addresses++;
        return 0;
}

static int nat_record_cb(const struct store_record *r, void *arg)
{
        json_t *j = r->spec_json ? json_loads(r->spec_json, 0, NULL) : NULL;
        if (json_is_true(json_object_get(json_object_get(j, "spec"), "nat")))
                ((struct net_census *)arg)->nat = true;
        json_decref(j);
        return 0;
}

static json_t *doctor_network(struct loop *l)
{
        json_t *j = net_doctor(l->c.net);
        struct net_census c = { 0 };
        struct store_txn *t = NULL;
        if (store_txn_begin(l->c.store, false, &t, NULL) == 0) {
                store_alloc_foreach(t, "ip", count_ip_cb, &c, NULL);
                store_record_foreach(t, nat_record_cb, &c, NULL);
                store_txn_abort(t);
        }
        json_object_set_new(j, "addresses_in_use", json_integer((json_int_t)c.addresses));
        json_object_set_new(j, "dns_listening", json_boolean(l->dns != NULL));
        if (l->dns) {
                char gw[IPAM_ADDR_SIZE];
                net_gateway(l->c.net, gw);
                json_object_set_new(j, "dns", json_sprintf("%s:%u", gw, (unsigned)dns_port(l->dns)));
        }
        json_t *fwd = json_object_get(j, "ipv4_forwarding");
        if (c.nat && json_is_false(fwd))
                json_object_set_new(j, "fix", json_string("a sandbox has nat: true but IPv4 forwarding is off; "
                                                          "enable it with: sysctl -w net.ipv4.ip_forward=1"));
        return j;
}

void loop_set_dns(struct loop *l, struct dns_server *dns)
{
        l->dns = dns;
}

int loop_dns_lookup(void *arg, const char *name, uint32_t *ipv4)
{
        struct loop *l = arg;
        struct store_record r;
        bool found = false;
        if (loop_read_record(l, name, &r, &found) < 0)
                return -EIO;
        if (!found)
                return -ENOENT;
        json_t *h = r.handles_json ? json_loads(r.handles_json, 0, NULL) : NULL;
        int rc = net_handles_ip(h, ipv4);
        json_decref(h);
        store_record_release(&r);
        return rc;
}

struct id_name {
        const char *id;
        char *name;
        size_t size;
        bool found;
};

static int id_name_cb(const struct store_record *r, void *arg)
{
        struct id_name *c = arg;
        if (strcmp(r->id, c->id) != 0)
                return 0;
        snprintf(c->name, c->size, "%s", r->name);
        c->found = true;
        return 1;
}

int loop_dns_reverse(void *arg, uint32_t ipv4, char *name, size_t size)
{
        struct loop *l = arg;
        char key[IPAM_ADDR_SIZE], owner[17];
        struct store_txn *t = NULL;
        ipam_addr_format(ipv4, key);
        if (store_txn_begin(l->c.store, false, &t, NULL) < 0)
                return -EIO;
        int rc = store_alloc_get(t, "ip", key, owner, NULL);
        struct id_name c = { owner, name, size, false };
        if (rc == 0)
                rc = store_record_foreach(t, id_name_cb, &c, NULL);
        store_txn_abort(t);
        if (rc < 0)
                return rc == -ENOENT ? rc : -EIO;
        return c.found ? 0 : -ENOENT;
}
