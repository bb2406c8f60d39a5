/* loop_internal: what loop.c (queue, threads, files, GC) and converge.c
 * (one name, one step at a time) share.  Not for other modules. */
#ifndef BANGER_LOOP_INTERNAL_H
#define BANGER_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

struct store_record;
struct driver;

#define Q_QUEUED 1u
#define Q_RUNNING 2u
#define Q_AGAIN 4u

struct delayed {
        char *name;
        int64_t due_mono;
};

struct loop {
        struct loop_config c;
        pthread_mutex_t mu;
        pthread_cond_t work_cv;    /* workers: queue not empty or stopping */
        pthread_cond_t idle_cv;    /* loop_wait_idle: queue drained */
        struct index *ix;          /* guarded by mu */
        struct strmap *qstate;     /* name -> (void *)flags; guarded by mu */
        struct strmap *start_requests;   /* names POST .../start asked for; guarded by mu */
        char **fifo;               /* ring of queued names (owned); guarded by mu */
        size_t fifo_head, fifo_len, fifo_cap;
        struct delayed *delayed;   /* guarded by mu */
        size_t n_delayed;
        unsigned running;          /* names being reconciled; guarded by mu */
        struct strmap *driver_by_id;   /* record id -> its driver, as converge last saw; guarded by mu */
        struct dns_server *dns;    /* set once before loop_start; for doctor */
        struct agents *agents;     /* guest agent connections; NULL without run_dir */
        bool stopping;
        pthread_t *threads;
        int n_threads;
        int inotify_fd;
};

/* converge.c: bring one name to its desired state.  Called by one worker
 * at a time per name; takes mu only briefly, never inside a store txn. */
void converge(struct loop *l, const char *name);

/* converge.c: append one event in its own transaction and wake readers. */
void loop_emit(struct loop *l, const char *name, const char *id, const char *type, const char *phase,
               const char *msg);

/* converge.c: read one record; *found false when absent.  -EIO on store errors (logged). */
int loop_read_record(struct loop *l, const char *name, struct store_record *r, bool *found);
/* True (once) when POST .../start asked to start name again. */
bool loop_take_start_request(struct loop *l, const char *name);

/* loop.c: remember (drv != NULL) or forget which driver a record id uses,
 * so resync can probe without parsing every record's handles. */
void loop_note_driver(struct loop *l, const char *id, struct driver *drv);

/* loop.c: reconcile name again in wait_ms. */
void loop_requeue_after(struct loop *l, const char *name, int64_t wait_ms);

#endif
