/* fc_api: a small client for Firecracker's REST API on its Unix socket.
 *
 * HTTP/1.1 through libcurl (CURLOPT_UNIX_SOCKET_PATH), JSON bodies with
 * jansson.  One fc_api keeps one connection open across calls, so the
 * dozen configuration requests of a start cost one connect.  Everything
 * that comes back is untrusted: responses are cut at FC_API_MAX_RESPONSE
 * bytes and every call has a deadline.  A 4xx/5xx answer becomes an error
 * whose message ends with Firecracker's fault_message verbatim:
 *   "PUT /machine-config: 400: Invalid vCPU count"
 */
#ifndef BANGER_FC_API_H
#define BANGER_FC_API_H

#include <jansson.h>
#include <stdbool.h>

struct bg_err;
struct fc_api;

#define FC_API_MAX_BODY 51200          /* Firecracker refuses larger request bodies */
#define FC_API_MAX_RESPONSE (64 * 1024)
#define FC_API_TIMEOUT_MS 5000         /* per request, unless set otherwise */

/* A client for the API socket at sock_path (nothing is connected yet).
 * timeout_ms bounds each request (0: FC_API_TIMEOUT_MS).  Free with
 * fc_api_free.  Fails only when libcurl cannot be set up. */
int fc_api_new(const char *sock_path, int timeout_ms, struct fc_api **out, struct bg_err **err);
void fc_api_free(struct fc_api *a);

/* Send METHOD path with body (NULL: no body) and wait for the answer.
 * 2xx: 0, and *resp (when resp != NULL) is the parsed JSON answer or NULL
 * for an empty one (204); the caller owns it.  A 4xx/5xx: -EIO (-EINVAL for
 * 400) with "METHOD path: STATUS: fault_message".  Transport failures
 * (no socket, timeout, oversized answer): -ECONNREFUSED, -ETIMEDOUT,
 * -EMSGSIZE or -EIO with curl's reason. */
int fc_api_call(struct fc_api *a, const char *method, const char *path, const json_t *body, json_t **resp,
                struct bg_err **err);

/* fc_api_call shorthands; put/patch take a reference to body and drop it. */
int fc_api_put(struct fc_api *a, const char *path, json_t *body, struct bg_err **err);
int fc_api_patch(struct fc_api *a, const char *path, json_t *body, struct bg_err **err);
int fc_api_get(struct fc_api *a, const char *path, json_t **resp, struct bg_err **err);

/* Wait until something accepts connections on sock_path, for at most
 * timeout_ms.  alive (may be NULL) is asked between attempts and ends the
 * wait early with -ESRCH when it returns false (the VMM died).
 * -ETIMEDOUT when the deadline passes. */
int fc_api_wait_socket(const char *sock_path, int timeout_ms, bool (*alive)(void *arg), void *arg,
                       struct bg_err **err);

#endif
