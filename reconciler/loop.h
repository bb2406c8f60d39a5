/* loop: the control loop.  The only actor in bangerd.
 *
 * Events (inotify on the sandboxes folder, the resync timer, start-up)
 * only mark names dirty.  Worker threads take dirty names one at a time
 * per name, several names in parallel, and reconcile each: read desired
 * (index) and observed (store record + driver probe), ask plan_next() for
 * the next step, record intent, execute, record the result, repeat until
 * converged.  A periodic resync re-checks every name and runs a garbage
 * collection pass that removes driver objects and allocations no record
 * claims.  See docs/architecture.md.
 */
#ifndef BANGER_LOOP_H
#define BANGER_LOOP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bg_err;
struct bg_config;
struct dns_server;
struct drivers;
struct hub;
struct loop;
struct net;
struct store;

struct loop_config {
        const char *sandboxes_dir;
        const struct bg_config *cfg;
        struct store *store;
        struct drivers *drivers;   /* borrowed; see drivers.h */
        struct hub *hub;
        struct net *net;           /* borrowed; NULL: no networking (fake driver) */
        int workers;          /* worker threads, >= 1 */
        int resync_ms;        /* full re-check and GC period */
        const char *state_dir;     /* guest host keys live in state_dir/vms/<id>/; NULL: none */
        const char *ssh_dir;       /* banger's known_hosts is ssh_dir/known_hosts; NULL: none */
        const char *run_dir;       /* guest agent channels live under run_dir/vms/; NULL: no agents */
};

int loop_new(const struct loop_config *c, struct loop **out, struct bg_err **err);
/* Stops workers (finishing their current step) and frees. */
void loop_free(struct loop *l);

/* Scan the folder, queue every name, run a GC pass, start the workers. */
int loop_start(struct loop *l, struct bg_err **err);
/* Serve until stop_fd is readable (a signalfd or eventfd): inotify,
 * resync timer, delayed retries.  Returns 0 on a clean stop. */
int loop_run(struct loop *l, int stop_fd, struct bg_err **err);

/* Queue every known name (desired and recorded) and run GC now. */
void loop_resync(struct loop *l);
/* Block until no name is queued or being reconciled, or timeout_ms passes.
 * Returns true when idle. */
bool loop_wait_idle(struct loop *l, int timeout_ms);

/* For the API (api_source callbacks): new JSON values. */
char **loop_list_names(void *loop, size_t *n);
char *loop_console_path(void *loop, const char *name);
int loop_kill(void *loop, const char *name, struct bg_err **err);
/* api_source.start: ask converge to start name again although its guest
 * stopped itself (the request is taken by the next converge of name). */
int loop_start_sandbox(void *loop, const char *name, struct bg_err **err);
json_t *loop_doctor(void *loop);
json_t *loop_get_sandbox(void *loop, const char *name);
/* The guest agent (agents.h): stats, and exec sessions on an upgraded
 * API connection.  ready: 0, or -ENOENT (no such sandbox) / -ENOTCONN
 * (its agent is not ready; *why says why, heap). */
int loop_agent_ready(void *loop, const char *name, char **why);
int loop_agent_stats(void *loop, const char *name, json_t **out, struct bg_err **err);
void loop_agent_exec(void *loop, const char *name, int fd, const char *extra, size_t extra_len,
                     const _Atomic bool *stopping);

/* For dns.c (struct dns_config callbacks, arg = the loop): the address in
 * NAME's handles, and the name holding an address; read from the store. */
int loop_dns_lookup(void *loop, const char *name, uint32_t *ipv4);
int loop_dns_reverse(void *loop, uint32_t ipv4, char *name, size_t size);
/* The running DNS server, for doctor (NULL: none; borrowed). */
void loop_set_dns(struct loop *l, struct dns_server *dns);

#endif
