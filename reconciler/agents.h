/* agents: bangerd's side of the guest agents (docs/agent-protocol.md).
 *
 * One thread holds a connection to the agent of every running sandbox the
 * loop tracks, on the channel its driver recorded in the handles
 * ("agent_sock": a Unix socket such as QEMU's virtio-serial chardev;
 * "vsock_uds": Firecracker's vsock socket, after CONNECT/OK).  Everything
 * the guest sends is size-limited and parsed with agent_proto's checks
 * under a non-blocking poll(), so a hostile or dead guest can only get
 * its own connection closed: it never blocks a loop worker or an API
 * thread past their timeouts.  Many requests share one connection,
 * told apart by id.
 *
 * The loop tracks and untracks sandboxes and asks for a graceful
 * shutdown; the API asks for stats and runs exec sessions (a relay between
 * an upgraded API connection and the agent, with end-to-end credit so no
 * side buffers more than a window).  An optional stats poller feeds
 * spec.idle_timeout and calls back when a sandbox has been idle that long.
 */
#ifndef BANGER_AGENTS_H
#define BANGER_AGENTS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bg_err;
struct agents;

struct agents_config {
        const char *run_dir;          /* channels must lie under run_dir/vms/<id>/ */
        /* Called (from the agents thread, no lock held) when a tracked
         * sandbox with an idle timeout has been idle that long. */
        void (*idle)(const char *name, void *arg);
        void *arg;
};

/* Start the agents thread.  Timing knobs for tests come from the
 * environment: BANGER_AGENT_HELLO_MS (how long before a missing hello is
 * reported, default 60000), BANGER_AGENT_POLL_MS (stats poll period
 * for idle timeouts, default 10000) and BANGER_AGENT_START_MS (how long
 * the guest has to answer an exec request, default 10000). */
int agents_new(const struct agents_config *c, struct agents **out, struct bg_err **err);
/* Stop the thread, close every connection, end every session. */
void agents_free(struct agents *a);

/* Keep a connection to name's agent (channel from handles; id is the
 * record id).  Idempotent; a changed id or channel reconnects.
 * idle_timeout_ms 0: no idle tracking. */
void agents_track(struct agents *a, const char *name, const char *id, const json_t *handles,
                  int64_t idle_timeout_ms);
/* Forget name: close its connection, end its sessions. */
void agents_untrack(struct agents *a, const char *name);

/* The Ready condition of name: true once its agent said hello on the
 * current connection.  *reason (heap) says why not, or is "" when ready;
 * *info (new reference, may be NULL) is the hello: version, kernel, boot
 * time.  -ENOENT when name is not tracked. */
int agents_ready(struct agents *a, const char *name, bool *ready, char **reason, json_t **info);

/* Ask name's agent for its counters (JSON, see docs/api.md), waiting at
 * most timeout_ms.  -ENOTCONN when it is not ready, -ETIMEDOUT. */
int agents_stats(struct agents *a, const char *name, int timeout_ms, json_t **out, struct bg_err **err);

/* Ask name's agent to power the guest off; 0 once it acknowledged
 * (within timeout_ms).  The caller then waits for the VMM to end. */
int agents_shutdown(struct agents *a, const char *name, int timeout_ms, struct bg_err **err);

/* True when name's idle timeout has expired (the idle callback was
 * called); the loop then stops it, which untracks it. */
bool agents_take_idle(struct agents *a, const char *name);

/* Run one exec session on fd (an upgraded API connection speaking the
 * agent framing; extra: bytes already read from it) until it ends, the
 * client goes away, or *stopping becomes true (then the client has 1 s to
 * read the ERROR saying so).  Refusals and deadlines (no EXEC, no answer
 * from the guest, more than 16 sessions in one sandbox) are ERROR frames
 * to the client; a guest process still running when the relay ends is
 * killed.  Never closes fd. */
void agents_exec_relay(struct agents *a, const char *name, int fd, const char *extra, size_t extra_len,
                       const atomic_bool *stopping);

#endif
