/* client: the CLI's side of bangerd's read-only REST API.  HTTP GET over
 * the daemon's Unix socket with libcurl (URL http://banger/v1/...), bodies
 * parsed with jansson, and a line reader for the NDJSON event stream.
 *
 * Two kinds of failure reach the caller as bg_err messages ready to print
 * after "banger: ": the daemon cannot be reached at all (one line naming
 * the socket and the reason, code ECONNREFUSED), and the API answered with
 * an error object (its "message"). */
#ifndef BANGER_CLIENT_H
#define BANGER_CLIENT_H

#include <jansson.h>

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

/* Called for each line of an NDJSON stream; obj is the parsed line
 * (borrowed; NULL when the line is not JSON).  Return 0 to go on, anything
 * else to stop reading. */
typedef int (*client_line_fn)(const char *line, json_t *obj, void *arg);

/* GET path and hand each line to fn as it arrives.  Returns 0 when the
 * server ended the stream, fn's value when fn stopped it, negative with
 * err when bangerd cannot be reached, answered with an error, or the
 * stream broke off. */
int client_stream(struct client *c, const char *path, client_line_fn fn, void *arg, struct bg_err **err);

/* Percent-escape s for a URL path or query part.  Caller frees. */
char *client_escape(const char *s);

#endif
