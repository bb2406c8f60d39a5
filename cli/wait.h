/* wait: block until sandboxes converge on a spec the CLI just wrote.
 *
 * Converged means the daemon applied exactly that spec (status.specHash ==
 * the local spec_hash) and reached the phase it asks for (Running or
 * Stopped).  A Failed phase on that spec, or a SpecValid=False the daemon
 * reports for it, ends the wait with an error. */
#ifndef BANGER_WAIT_H
#define BANGER_WAIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct client;

struct wait_target {
        const char *name;
        const char *hash;        /* 16 hex: spec_hash of the written spec */
        bool want_stopped;       /* spec.state: stopped */
        /* filled while waiting */
        bool done;
        char *last_phase;
        json_t *last;            /* the last API object seen */
};

/* Until deadline (monotonic ms) at the latest, block until bangerd has an
 * event after seq, the seq an earlier answer carried (client_last_seq):
 * what the caller waits for has then likely changed.  Returns after at
 * most WAIT_SLICE_MS anyway, so that a change no event announces is still
 * seen and ^C is honoured; polls every WAIT_POLL_MS when !have_seq (a
 * bangerd without X-Banger-Seq) or bangerd cannot long-poll. */
#define WAIT_SLICE_MS 250
#define WAIT_POLL_MS 25
void wait_for_change(struct client *c, bool have_seq, uint64_t seq, int64_t deadline);

/* Wait until every target converged, one failed, or timeout seconds pass.
 * Prints why on stderr.  Returns EXIT_OK or EXIT_ERR. */
int wait_converged(struct client *c, struct wait_target *ts, size_t n, int timeout);
void wait_targets_release(struct wait_target *ts, size_t n);

#endif
