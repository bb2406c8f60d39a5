/* plan: the pure heart of the control loop.
 *
 * plan_next() looks at one sandbox's desired state and what was observed
 * (its store record and a driver probe) and answers with the single next
 * step that brings them closer.  The loop executes that step, observes
 * again and asks again until the answer is PLAN_NONE (converged) or
 * PLAN_WAIT (backing off).  One step at a time keeps every intermediate
 * state a real, recorded phase, so a crash between any two steps resumes
 * from the record: that is what makes the loop level-triggered.
 *
 * No I/O, no clock, no allocation: tested by a table (tests/unit/test_plan.c).
 */
#ifndef BANGER_PLAN_H
#define BANGER_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"
#include "phase.h"
#include "spec.h"

struct plan_input {
        bool has_desired;            /* a valid desired spec exists (from a file, or the record's when the file is invalid) */
        enum spec_state want;        /* desired spec.state */
        enum spec_restart restart;   /* desired spec.restart */
        bool spec_changed;           /* record's applied spec hash != desired hash */
        enum spec_impact impact;     /* strongest impact of that change */
        bool has_record;
        enum bg_phase phase;         /* record phase */
        uint32_t flags;              /* record REC_* flags */
        enum vm_observed vm;         /* driver probe */
        int64_t now_ms;              /* wall clock */
        int64_t backoff_until_ms;    /* record backoff (wall clock), 0 none */
};

enum plan_action {
        PLAN_NONE,           /* converged: nothing to do */
        PLAN_WAIT,           /* back off until backoff_until_ms, then look again */
        PLAN_CREATE_RECORD,  /* commit a record with a fresh id (write-ahead) */
        PLAN_UPDATE_SPEC,    /* record the desired spec as the applied one */
        PLAN_PREPARE,        /* driver prepare: disks, run dir */
        PLAN_START,          /* driver start */
        PLAN_RESTART,        /* driver start after the VM died; counts a restart */
        PLAN_STOP,           /* driver stop (graceful, then hard) */
        PLAN_CLEANUP,        /* driver cleanup: remove every object of the VM */
        PLAN_FORGET,         /* drop the record and its allocations */
        PLAN_SET_PHASE,      /* only record a phase (adoption, VM gone and policy says stay down) */
};

struct plan_step {
        enum plan_action action;
        enum bg_phase phase;   /* phase committed before the action runs (the intent) */
        bool guest_exited;     /* SET_PHASE: mark that the VM ended by itself and stays down */
        const char *reason;    /* static text for events and logs */
};

struct plan_step plan_next(const struct plan_input *in);

const char *plan_action_name(enum plan_action a);

#endif
