/* wait: see wait.h. */
#include "wait.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "sandbox.h"
#include "sshexec.h"
#include "util.h"

/* A SpecValid=False seen this soon after the write may predate it. */
#define SPEC_VALID_GRACE_MS 2000

static void sleep_ms(int ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

void wait_for_change(struct client *c, bool have_seq, uint64_t seq, int64_t deadline)
{
        int64_t left = deadline - now_mono_ms();
        if (left <= 0)
                return;
        int ms = left < WAIT_SLICE_MS ? (int)left : WAIT_SLICE_MS;
        if (have_seq) {
                struct bg_err *err = NULL;
                int r = client_wait_events(c, seq, ms, &err);
                bg_err_free(err);
                uint64_t s;
                if (r == 0 && client_last_seq(c, &s))
                        return;   /* a bangerd that knows ?wait= (it says X-Banger-Seq) */
        }
        sleep_ms(ms < WAIT_POLL_MS ? ms : WAIT_POLL_MS);
}

/* Look at one sandbox once.  Returns 1 when converged, -1 when it failed
 * (after saying so), 0 to keep waiting. */
static int check_converged(struct wait_target *t, json_t *obj, int64_t since_write_ms)
{
        json_decref(t->last);
        t->last = obj;
        if (!obj)
                return 0;   /* not picked up yet */

        const char *phase = sbx_str(obj, "status.phase");
        const char *spec_hash = sbx_str(obj, "status.specHash");
        const char *desired = sbx_str(obj, "status.desiredHash");
        const char *message = sbx_str(obj, "status.message");
        bool ours = spec_hash && strcmp(spec_hash, t->hash) == 0;

        if (phase && (!t->last_phase || strcmp(phase, t->last_phase) != 0)) {
                free(t->last_phase);
                t->last_phase = xstrdup(phase);
                if (isatty(STDERR_FILENO))
                        fprintf(stderr, "sandbox/%s: %s\n", t->name, phase);
        }
        const char *want = t->want_stopped ? "Stopped" : "Running";
        if (ours && phase && strcmp(phase, want) == 0)
                return 1;
        if (ours && phase && strcmp(phase, "Failed") == 0) {
                cli_error("sandbox/%s failed: %s", t->name, message && *message ? message : "(no message)");
                return -1;
        }
        const char *valid_msg;
        const char *valid = sbx_condition(obj, "SpecValid", &valid_msg);
        bool seen = desired && strcmp(desired, t->hash) == 0;
        if (valid && strcmp(valid, "False") == 0 && (seen || since_write_ms >= SPEC_VALID_GRACE_MS)) {
                cli_error("sandbox/%s: %s", t->name, *valid_msg ? valid_msg : "bangerd finds the spec invalid");
                return -1;
        }
        return 0;
}

static void timeout_message(const struct wait_target *t, int timeout)
{
        if (!t->last) {
                cli_error("timed out after %ds waiting for sandbox/%s (not seen by bangerd yet)", timeout, t->name);
                return;
        }
        const char *phase = sbx_str(t->last, "status.phase");
        const char *message = sbx_str(t->last, "status.message");
        if (message && *message)
                cli_error("timed out after %ds waiting for sandbox/%s (phase %s: %s)", timeout, t->name,
                          phase ? phase : "unknown", message);
        else
                cli_error("timed out after %ds waiting for sandbox/%s (phase %s)", timeout, t->name,
                          phase ? phase : "unknown");
}

int wait_converged(struct client *c, struct wait_target *ts, size_t n, int timeout)
{
        int64_t start = now_mono_ms();
        int64_t deadline = start + (int64_t)timeout * 1000;
        int rc = EXIT_OK;

        for (;;) {
                size_t pending = 0;
                bool have_seq = true;
                uint64_t seq = UINT64_MAX;   /* the oldest view this round looked at */
                for (size_t i = 0; i < n; i++) {
                        struct wait_target *t = &ts[i];
                        if (t->done)
                                continue;
                        json_t *obj = NULL;
                        struct bg_err *err = NULL;
                        if (client_get_sandbox(c, t->name, &obj, &err) < 0) {
                                cli_error("%s", bg_err_msg(err));
                                bg_err_free(err);
                                return EXIT_ERR;
                        }
                        uint64_t s;
                        if (!client_last_seq(c, &s))
                                have_seq = false;
                        else if (s < seq)
                                seq = s;
                        int r = check_converged(t, obj, now_mono_ms() - start);
                        if (r != 0) {
                                t->done = true;
                                if (r < 0)
                                        rc = EXIT_ERR;
                        } else {
                                pending++;
                        }
                }
                if (!pending)
                        return rc;
                if (now_mono_ms() >= deadline) {
                        for (size_t i = 0; i < n; i++)
                                if (!ts[i].done)
                                        timeout_message(&ts[i], timeout);
                        return EXIT_ERR;
                }
                /* A command that catches ^C (vm run) stops waiting and
                 * cleans up; elsewhere ^C ends banger as usual. */
                if (sshx_interrupted) {
                        fprintf(stderr, "banger: interrupted\n");
                        return EXIT_INTERRUPTED;
                }
                wait_for_change(c, have_seq, seq, deadline);
        }
}

void wait_targets_release(struct wait_target *ts, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                json_decref(ts[i].last);
                free(ts[i].last_phase);
                ts[i].last = NULL;
                ts[i].last_phase = NULL;
        }
}
