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

/* Poll until every target converged, one failed, or timeout seconds pass.
 * Prints why on stderr.  Returns EXIT_OK or EXIT_ERR. */
int wait_converged(struct client *c, struct wait_target *ts, size_t n, int timeout);
void wait_targets_release(struct wait_target *ts, size_t n);

#endif
