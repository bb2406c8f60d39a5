/* client: the CLI's side of bangerd's REST API.  HTTP/1.1 over the
 * daemon's Unix socket (answers parsed with http-parser), bodies parsed
 * with jansson, a line reader for the NDJSON event stream, and the
 * upgrade that turns a connection into an exec session.
 *
 * Two kinds of failure reach the caller as bg_err messages ready to print
 * after "banger: ": the daemon cannot be reached at all (one line naming
 * the socket and the reason, code ECONNREFUSED), and the API answered with
 * an error object (its "message"). */
#ifndef BANGER_CLIENT_H
#define BANGER_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bg_err;
struct client;

/* A client for the socket at socket_path (copied).  Never fails. */
struct client *client_new(const char *socket_path);
void client_free(struct client *c);   /* NULL is a no-op */

/* GET path ("/v1/..."): on any HTTP answer return 0 with *status set and
 * *body the parsed JSON (new reference; NULL when the body is not JSON).
 * Negative with err when bangerd cannot be reached or the reply broke off. */
int client_get(struct client *c, const char *path, long *status, json_t **body, struct bg_err **err);

/* Like client_get, but a status other than 2xx is an error carrying the
 * API's message; *body is a new reference on success. */
/* POST with no body (the API's one action, kill); like client_get_ok.
 * body may be NULL. */
int client_post_ok(struct client *c, const char *path, json_t **body, struct bg_err **err);

int client_get_ok(struct client *c, const char *path, json_t **body, struct bg_err **err);

/* GET /v1/sandboxes/NAME (name escaped): 0 with *obj on 200, 0 with *obj
 * NULL on 404, negative otherwise. */
int client_get_sandbox(struct client *c, const char *name, json_t **obj, struct bg_err **err);

/* The X-Banger-Seq of the last answer to client_get and friends: every
 * event up to *seq was committed before bangerd made that answer.  False
 * when the answer had none (a bangerd older than this CLI). */
bool client_last_seq(const struct client *c, uint64_t *seq);

/* Block until bangerd has an event after since, or timeout_ms (at most
 * 60000) passed: GET /v1/events?since=SINCE&wait=MS.  The events
 * themselves are not returned; the caller looks again at what it waits
 * for. */
int client_wait_events(struct client *c, uint64_t since, int timeout_ms, struct bg_err **err);

/* Called for each line of an NDJSON stream; obj is the parsed line
 * (borrowed; NULL when the line is not JSON).  Return 0 to go on, anything
 * else to stop reading. */
typedef int (*client_line_fn)(const char *line, json_t *obj, void *arg);

/* GET path and hand each line to fn as it arrives.  Returns 0 when the
 * server ended the stream, fn's value when fn stopped it, negative with
 * err when bangerd cannot be reached, answered with an error, or the
 * stream broke off. */
int client_stream(struct client *c, const char *path, client_line_fn fn, void *arg, struct bg_err **err);

/* POST path with "Upgrade: protocol" on a connection of its own.  On 101
 * *fd is that connection, now speaking protocol, and rest holds the
 * *rest_len (at most rest_cap) bytes that came right after the answer's
 * headers; on any other answer, the API's error. */
int client_upgrade(struct client *c, const char *path, const char *protocol, int *fd, void *rest,
                   size_t rest_cap, size_t *rest_len, struct bg_err **err);

/* Percent-escape s for a URL path or query part.  Caller frees. */
char *client_escape(const char *s);

#endif
