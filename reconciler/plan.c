/* plan: see plan.h.  Read top to bottom: deletion first, then spec
 * changes, then backoff, then the state the spec asks for. */
#include "plan.h"

#include "store.h"

static struct plan_step step(enum plan_action a, enum bg_phase p, const char *why)
{
        return (struct plan_step){ .action = a, .phase = p, .reason = why };
}

static struct plan_step plan_delete(const struct plan_input *in)
{
        if (in->vm == VM_RUNNING)
                return step(PLAN_STOP, PHASE_DELETING, "stopping for deletion");
        if (in->flags & REC_PREPARED)
                return step(PLAN_CLEANUP, PHASE_DELETING, "removing disks and run files");
        return step(PLAN_FORGET, PHASE_DELETING, "no spec wants this sandbox");
}

/* The VM is gone although the record says it should run. */
static struct plan_step plan_vm_gone(const struct plan_input *in)
{
        bool clean = in->vm == VM_EXITED_OK;
        bool again = in->restart == SPEC_RESTART_ALWAYS ||
                     (in->restart == SPEC_RESTART_ON_FAILURE && !clean);
        if (!again) {
                struct plan_step s = clean ? step(PLAN_SET_PHASE, PHASE_STOPPED, "guest exited cleanly; restart policy keeps it down")
                                           : step(PLAN_SET_PHASE, PHASE_FAILED, "vm exited with a failure; restart policy is never");
                s.guest_exited = true;
                return s;
        }
        if (in->backoff_until_ms > in->now_ms)
                return step(PLAN_WAIT, in->phase, "backing off before restart");
        return step(PLAN_RESTART, PHASE_STARTING, clean ? "vm exited; restart policy always" : "vm died; restarting");
}

struct plan_step plan_next(const struct plan_input *in)
{
        if (!in->has_record)
                return in->has_desired ? step(PLAN_CREATE_RECORD, PHASE_PENDING, "new sandbox")
                                       : step(PLAN_NONE, PHASE_PENDING, "nothing wanted, nothing there");

        /* A started deletion always finishes, even if the spec came back:
         * the new spec then gets a fresh record and id. */
        if (!in->has_desired || in->phase == PHASE_DELETING)
                return plan_delete(in);

        if (in->spec_changed) {
                if (in->impact == SPEC_IMPACT_RECREATE) {
                        if (in->vm == VM_RUNNING)
                                return step(PLAN_STOP, PHASE_STOPPING, "stopping to recreate");
                        if (in->flags & REC_PREPARED)
                                return step(PLAN_CLEANUP, PHASE_PENDING, "removing old disks to recreate");
                        return step(PLAN_UPDATE_SPEC, PHASE_PENDING, "spec changed; recreating");
                }
                if (in->impact == SPEC_IMPACT_RESTART && in->vm == VM_RUNNING)
                        return step(PLAN_STOP, PHASE_STOPPING, "stopping to apply the new spec");
                return step(PLAN_UPDATE_SPEC, in->phase, "spec changed");
        }

        bool backing_off = in->backoff_until_ms > in->now_ms;

        if (!(in->flags & REC_PREPARED)) {
                if (backing_off)
                        return step(PLAN_WAIT, in->phase, "backing off after a failure");
                return step(PLAN_PREPARE, PHASE_CREATING, "creating disks");
        }

        if (in->want == SPEC_STATE_STOPPED) {
                if (in->vm == VM_RUNNING)
                        return step(PLAN_STOP, PHASE_STOPPING, "spec asks for stopped");
                if (in->phase != PHASE_STOPPED)
                        return step(PLAN_SET_PHASE, PHASE_STOPPED, "stopped");
                return step(PLAN_NONE, PHASE_STOPPED, "stopped as wanted");
        }

        /* want running */
        if (in->vm == VM_RUNNING) {
                if (in->phase != PHASE_RUNNING)
                        return step(PLAN_SET_PHASE, PHASE_RUNNING, "vm is running");
                return step(PLAN_NONE, PHASE_RUNNING, "running as wanted");
        }
        if (in->flags & REC_GUEST_EXITED)
                return step(PLAN_NONE, in->phase, "vm ended by itself; `banger vm start` or a spec change starts it again");
        if (in->phase == PHASE_RUNNING || in->vm == VM_EXITED_OK || in->vm == VM_EXITED_FAIL)
                return plan_vm_gone(in);
        if (backing_off)
                return step(PLAN_WAIT, in->phase, "backing off after a failure");
        return step(PLAN_START, PHASE_STARTING, "starting vm");
}

const char *plan_action_name(enum plan_action a)
{
        static const char *const names[] = {
                "none", "wait", "create-record", "update-spec", "prepare", "start",
                "restart", "stop", "cleanup", "forget", "set-phase",
        };
        return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "unknown";
}
