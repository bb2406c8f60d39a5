/* fault: failure and crash injection for tests of the control loop.
 *
 * Enabled only with the fake driver.  BANGER_FAULTS holds a comma list of
 *   crash:POINT        the daemon kills itself with SIGKILL at POINT
 *   fail:POINT[*N]     the step at POINT fails (N times; forever without *N)
 *   stall:POINT[*N]    the step at POINT sleeps 3 s, then goes on (a slow
 *                      step, for clients that must cope with one)
 *   die:start          fake VMs exit with status 1 right after they start
 * POINT is "<action>.<before|mid|after>", e.g. "prepare.mid", "start.after",
 * "create-record.after", "forget.before".  An optional "@NAME" suffix on
 * POINT limits the fault to one sandbox.  Network points (bangerd
 * --driver fake --network): "net-claim.after", "net-setup.mid" (tap made,
 * no nft elements yet), "net-setup.after" and "net-teardown.mid" (nft
 * elements gone, tap not yet); the two ".mid" ones sit in net.c, which
 * knows ids, not names, so they take no "@NAME".
 */
#ifndef BANGER_FAULT_H
#define BANGER_FAULT_H

#include <stdbool.h>

struct bg_err;

/* Parse spec (NULL or empty: no faults).  Returns -EINVAL on bad syntax. */
int fault_configure(const char *spec, struct bg_err **err);
/* At POINT for sandbox name: crash, fail (returns negative with err set)
 * or return 0. */
int fault_hit(const char *point, const char *name, struct bg_err **err);
/* Whether a bare flag fault (like "die:start") is configured for name. */
bool fault_flag(const char *what, const char *name);

#endif
