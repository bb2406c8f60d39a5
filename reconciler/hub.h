/* hub: wakes API readers when the loop commits new events.  The store holds
 * the events; the hub only carries "the latest sequence is now N". */
#ifndef BANGER_HUB_H
#define BANGER_HUB_H

#include <stdbool.h>
#include <stdint.h>

struct hub;

struct hub *hub_new(uint64_t last_seq);
void hub_free(struct hub *h);
/* Announce that events up to seq are committed. */
void hub_publish(struct hub *h, uint64_t seq);
/* Wait until the latest seq is > after, the hub is closed, or timeout_ms
 * passes.  Returns the latest seq; *closed tells whether the hub closed. */
uint64_t hub_wait(struct hub *h, uint64_t after, int timeout_ms, bool *closed);
/* The latest announced seq. */
uint64_t hub_latest(struct hub *h);
/* Wake every waiter for good (daemon shutdown). */
void hub_close(struct hub *h);

#endif
