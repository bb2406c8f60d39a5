/* hub: see hub.h.  A mutex, a condition variable on CLOCK_MONOTONIC and a
 * counter. */
#include "hub.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "util.h"

struct hub {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint64_t seq;
        bool closed;
};

struct hub *hub_new(uint64_t last_seq)
{
        struct hub *h = xcalloc(1, sizeof *h);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->cv, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_init(&h->mu, NULL);
        h->seq = last_seq;
        return h;
}

void hub_free(struct hub *h)
{
        if (!h)
                return;
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        free(h);
}

void hub_publish(struct hub *h, uint64_t seq)
{
        pthread_mutex_lock(&h->mu);
        if (seq > h->seq)
                h->seq = seq;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
}

uint64_t hub_wait(struct hub *h, uint64_t after, int timeout_ms, bool *closed)
{
        struct timespec dl = deadline_after_ms(CLOCK_MONOTONIC, timeout_ms);
        pthread_mutex_lock(&h->mu);
        while (h->seq <= after && !h->closed)
                if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
                        break;
        uint64_t s = h->seq;
        if (closed)
                *closed = h->closed;
        pthread_mutex_unlock(&h->mu);
        return s;
}

uint64_t hub_latest(struct hub *h)
{
        pthread_mutex_lock(&h->mu);
        uint64_t s = h->seq;
        pthread_mutex_unlock(&h->mu);
        return s;
}

void hub_close(struct hub *h)
{
        pthread_mutex_lock(&h->mu);
        h->closed = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
}
