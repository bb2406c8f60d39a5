/* api: the REST API on a Unix socket (libmicrohttpd + jansson).  It reads,
 * with one imperative exception (kill: an action on a process, not a change
 * of desired state, which only the spec files carry).
 * See docs/api.md for the contract.  The API owns no state: it asks the
 * loop (through api_source) for sandbox objects and reads events from the
 * store, waking on the hub for follow streams. */
#ifndef BANGER_API_H
#define BANGER_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct bg_err;
struct store;
struct hub;
struct api;

struct api_source {
        void *arg;
        /* Every sandbox name, sorted: a heap array of *n heap strings.  The
         * list is streamed one get_sandbox() at a time, so listing 10,000
         * sandboxes never holds them all in memory. */
        char **(*list_names)(void *arg, size_t *n);
        /* One sandbox object (new reference), or NULL when unknown. */
        json_t *(*get_sandbox)(void *arg, const char *name);
        /* Path of name's serial console log (heap), NULL when it has none. */
        char *(*console_path)(void *arg, const char *name);
        /* Kill name's VMM now (POST .../kill); -ENOENT when unknown. */
        int (*kill)(void *arg, const char *name, struct bg_err **err);
        /* Start name again although its guest stopped itself (POST .../start):
         * clears the "stay down" the restart policy or idle_timeout chose.
         * -ENOENT when unknown. */
        int (*start)(void *arg, const char *name, struct bg_err **err);
        /* The daemon's view for `banger doctor`: a new JSON object. */
        json_t *(*doctor)(void *arg);
        /* The guest agent (optional): 0 when name's agent is ready, -ENOENT
         * for an unknown sandbox, -ENOTCONN with *why (heap) otherwise. */
        int (*agent_ready)(void *arg, const char *name, char **why);
        /* GET .../stats: a new JSON object. */
        int (*agent_stats)(void *arg, const char *name, json_t **out, struct bg_err **err);
        /* POST .../exec, once upgraded: run the session on fd until it ends
         * or *stopping; never closes fd. */
        void (*agent_exec)(void *arg, const char *name, int fd, const char *extra, size_t extra_len,
                           const _Atomic bool *stopping);
        struct store *store;   /* events are read from here */
        struct hub *hub;       /* and followed through here */
        const char *driver;    /* for /v1/version */
};

/* Bind socket_path (replacing a stale socket file, refusing a live one),
 * mode 0660, and serve in libmicrohttpd's own threads.  src is borrowed
 * and must outlive the api. */
int api_start(const char *socket_path, const struct api_source *src, struct api **out, struct bg_err **err);
/* Stop serving, end follow streams, remove the socket file. */
void api_stop(struct api *a);

#endif
