/* Table tests for plan_next(): explicit rows for the decisions that
 * matter, then every phase x desired state x observed VM x prepared
 * combination driven through a model of the executor, which must converge
 * (or settle in a documented resting state) within a few steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "plan.h"
#include "store.h"

enum want { W_ABSENT, W_RUNNING, W_STOPPED };

struct row {
        const char *what;
        enum want want;
        bool record;
        enum bg_phase phase;
        uint32_t flags;
        enum vm_observed vm;
        enum spec_restart restart;
        bool changed;
        enum spec_impact impact;
        int64_t backoff;        /* relative to now */
        enum plan_action expect;
        enum bg_phase expect_phase;
};

#define P REC_PREPARED
#define ON SPEC_RESTART_ON_FAILURE
#define ALW SPEC_RESTART_ALWAYS
#define NEV SPEC_RESTART_NEVER

static const struct row rows[] = {
        { "new spec gets a record first", W_RUNNING, false, PHASE_PENDING, 0, VM_ABSENT, ON, false, 0, 0, PLAN_CREATE_RECORD, PHASE_PENDING },
        { "nothing wanted, nothing there", W_ABSENT, false, PHASE_PENDING, 0, VM_ABSENT, ON, false, 0, 0, PLAN_NONE, PHASE_PENDING },
        { "pending record prepares", W_RUNNING, true, PHASE_PENDING, 0, VM_ABSENT, ON, false, 0, 0, PLAN_PREPARE, PHASE_CREATING },
        { "crash during prepare retries prepare", W_RUNNING, true, PHASE_CREATING, 0, VM_ABSENT, ON, false, 0, 0, PLAN_PREPARE, PHASE_CREATING },
        { "prepared starts", W_RUNNING, true, PHASE_CREATING, P, VM_ABSENT, ON, false, 0, 0, PLAN_START, PHASE_STARTING },
        { "crash during start retries start", W_RUNNING, true, PHASE_STARTING, P, VM_ABSENT, ON, false, 0, 0, PLAN_START, PHASE_STARTING },
        { "running vm adopted after crash in start", W_RUNNING, true, PHASE_STARTING, P, VM_RUNNING, ON, false, 0, 0, PLAN_SET_PHASE, PHASE_RUNNING },
        { "running is converged", W_RUNNING, true, PHASE_RUNNING, P, VM_RUNNING, ON, false, 0, 0, PLAN_NONE, PHASE_RUNNING },
        { "stopped spec on new sandbox prepares only", W_STOPPED, true, PHASE_PENDING, 0, VM_ABSENT, ON, false, 0, 0, PLAN_PREPARE, PHASE_CREATING },
        { "stopped spec stops running vm", W_STOPPED, true, PHASE_RUNNING, P, VM_RUNNING, ON, false, 0, 0, PLAN_STOP, PHASE_STOPPING },
        { "stopped after crash in stop", W_STOPPED, true, PHASE_STOPPING, P, VM_ABSENT, ON, false, 0, 0, PLAN_SET_PHASE, PHASE_STOPPED },
        { "stopped is converged", W_STOPPED, true, PHASE_STOPPED, P, VM_ABSENT, ON, false, 0, 0, PLAN_NONE, PHASE_STOPPED },
        { "start a stopped one", W_RUNNING, true, PHASE_STOPPED, P, VM_ABSENT, ON, false, 0, 0, PLAN_START, PHASE_STARTING },
        { "deleted spec stops vm first", W_ABSENT, true, PHASE_RUNNING, P, VM_RUNNING, ON, false, 0, 0, PLAN_STOP, PHASE_DELETING },
        { "deleted spec cleans up", W_ABSENT, true, PHASE_STOPPED, P, VM_ABSENT, ON, false, 0, 0, PLAN_CLEANUP, PHASE_DELETING },
        { "deleted spec forgets last", W_ABSENT, true, PHASE_DELETING, 0, VM_ABSENT, ON, false, 0, 0, PLAN_FORGET, PHASE_DELETING },
        { "deletion ignores backoff", W_ABSENT, true, PHASE_FAILED, P, VM_ABSENT, ON, false, 0, 5000, PLAN_CLEANUP, PHASE_DELETING },
        { "started deletion finishes though spec is back", W_RUNNING, true, PHASE_DELETING, P, VM_ABSENT, ON, false, 0, 0, PLAN_CLEANUP, PHASE_DELETING },
        { "crashed vm restarts on-failure", W_RUNNING, true, PHASE_RUNNING, P, VM_EXITED_FAIL, ON, false, 0, 0, PLAN_RESTART, PHASE_STARTING },
        { "vanished vm restarts on-failure", W_RUNNING, true, PHASE_RUNNING, P, VM_ABSENT, ON, false, 0, 0, PLAN_RESTART, PHASE_STARTING },
        { "crashed vm waits for backoff", W_RUNNING, true, PHASE_RUNNING, P, VM_EXITED_FAIL, ON, false, 0, 1000, PLAN_WAIT, PHASE_RUNNING },
        { "clean exit stays down on-failure", W_RUNNING, true, PHASE_RUNNING, P, VM_EXITED_OK, ON, false, 0, 0, PLAN_SET_PHASE, PHASE_STOPPED },
        { "clean exit restarts with always", W_RUNNING, true, PHASE_RUNNING, P, VM_EXITED_OK, ALW, false, 0, 0, PLAN_RESTART, PHASE_STARTING },
        { "crash with never fails", W_RUNNING, true, PHASE_RUNNING, P, VM_EXITED_FAIL, NEV, false, 0, 0, PLAN_SET_PHASE, PHASE_FAILED },
        { "guest exited stays down", W_RUNNING, true, PHASE_FAILED, P | REC_GUEST_EXITED, VM_ABSENT, NEV, false, 0, 0, PLAN_NONE, PHASE_FAILED },
        { "failed action retries after backoff", W_RUNNING, true, PHASE_FAILED, P, VM_ABSENT, ON, false, 0, 0, PLAN_START, PHASE_STARTING },
        { "failed action waits during backoff", W_RUNNING, true, PHASE_FAILED, P, VM_ABSENT, ON, false, 0, 500, PLAN_WAIT, PHASE_FAILED },
        { "failed prepare waits during backoff", W_RUNNING, true, PHASE_FAILED, 0, VM_ABSENT, ON, false, 0, 500, PLAN_WAIT, PHASE_FAILED },
        { "label change only records", W_RUNNING, true, PHASE_RUNNING, P, VM_RUNNING, ON, true, SPEC_IMPACT_NONE, 0, PLAN_UPDATE_SPEC, PHASE_RUNNING },
        { "vcpu change stops running vm", W_RUNNING, true, PHASE_RUNNING, P, VM_RUNNING, ON, true, SPEC_IMPACT_RESTART, 0, PLAN_STOP, PHASE_STOPPING },
        { "vcpu change on stopped vm records", W_RUNNING, true, PHASE_STOPPED, P, VM_ABSENT, ON, true, SPEC_IMPACT_RESTART, 0, PLAN_UPDATE_SPEC, PHASE_STOPPED },
        { "image change stops first", W_RUNNING, true, PHASE_RUNNING, P, VM_RUNNING, ON, true, SPEC_IMPACT_RECREATE, 0, PLAN_STOP, PHASE_STOPPING },
        { "image change cleans old disks", W_RUNNING, true, PHASE_STOPPED, P, VM_ABSENT, ON, true, SPEC_IMPACT_RECREATE, 0, PLAN_CLEANUP, PHASE_PENDING },
        { "image change then records spec", W_RUNNING, true, PHASE_PENDING, 0, VM_ABSENT, ON, true, SPEC_IMPACT_RECREATE, 0, PLAN_UPDATE_SPEC, PHASE_PENDING },
        { "state change records spec", W_STOPPED, true, PHASE_RUNNING, P, VM_RUNNING, ON, true, SPEC_IMPACT_STATE, 0, PLAN_UPDATE_SPEC, PHASE_RUNNING },
};

static struct plan_input input_of(enum want want, bool record, enum bg_phase phase, uint32_t flags,
                                  enum vm_observed vm, enum spec_restart restart, bool changed,
                                  enum spec_impact impact, int64_t backoff)
{
        return (struct plan_input){
                .has_desired = want != W_ABSENT,
                .want = want == W_STOPPED ? SPEC_STATE_STOPPED : SPEC_STATE_RUNNING,
                .restart = restart,
                .spec_changed = changed,
                .impact = impact,
                .has_record = record,
                .phase = phase,
                .flags = flags,
                .vm = vm,
                .now_ms = 100000,
                .backoff_until_ms = backoff ? 100000 + backoff : 0,
        };
}

static void test_rows(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
                const struct row *r = &rows[i];
                struct plan_input in = input_of(r->want, r->record, r->phase, r->flags, r->vm, r->restart,
                                                r->changed, r->impact, r->backoff);
                struct plan_step s = plan_next(&in);
                if (s.action != r->expect || s.phase != r->expect_phase)
                        fail_msg("row '%s': got %s/%s, want %s/%s", r->what, plan_action_name(s.action),
                                 phase_name(s.phase), plan_action_name(r->expect), phase_name(r->expect_phase));
        }
}

/* A model of what executing a step does to the observed world. */
struct world {
        bool record;
        enum bg_phase phase;
        uint32_t flags;
        enum vm_observed vm;
        bool changed;
};

static void apply_step(struct world *w, const struct plan_step *s)
{
        w->phase = s->phase;
        switch (s->action) {
        case PLAN_CREATE_RECORD: w->record = true; w->flags = 0; w->changed = false; break;
        case PLAN_UPDATE_SPEC: w->changed = false; w->flags &= ~REC_GUEST_EXITED; break;
        case PLAN_PREPARE: w->flags |= REC_PREPARED; break;
        case PLAN_START:
        case PLAN_RESTART: w->vm = VM_RUNNING; w->phase = PHASE_RUNNING; break;
        case PLAN_STOP: w->vm = VM_ABSENT; if (s->phase != PHASE_DELETING) w->phase = PHASE_STOPPED; break;
        case PLAN_CLEANUP: w->flags &= ~REC_PREPARED; w->vm = VM_ABSENT; break;
        case PLAN_FORGET: w->record = false; break;
        case PLAN_SET_PHASE: if (s->guest_exited) w->flags |= REC_GUEST_EXITED; break;
        case PLAN_NONE: case PLAN_WAIT: break;
        }
}

static void test_every_state_converges(void **state)
{
        (void)state;
        const enum vm_observed vms[] = { VM_ABSENT, VM_RUNNING, VM_EXITED_OK, VM_EXITED_FAIL };
        const enum spec_restart policies[] = { ON, ALW, NEV };
        const enum spec_impact impacts[] = { SPEC_IMPACT_NONE, SPEC_IMPACT_STATE, SPEC_IMPACT_RESTART, SPEC_IMPACT_RECREATE };
        unsigned cases = 0;
        for (int want = W_ABSENT; want <= W_STOPPED; want++)
        for (int phase = 0; phase < PHASE_COUNT; phase++)
        for (uint32_t flags = 0; flags < 4; flags++)
        for (size_t v = 0; v < 4; v++)
        for (size_t p = 0; p < 3; p++)
        for (int changed = 0; changed < 2; changed++)
        for (size_t im = 0; im < (changed ? 4 : 1); im++) {
                struct world w = { true, (enum bg_phase)phase, flags, vms[v], changed };
                int steps = 0;
                for (;; steps++) {
                        if (steps > 12)
                                fail_msg("no convergence: want=%d phase=%s flags=%u vm=%zu", want, phase_name(phase), flags, v);
                        struct plan_input in = input_of((enum want)want, w.record, w.phase, w.flags, w.vm,
                                                        policies[p], w.changed, impacts[im], 0);
                        struct plan_step s = plan_next(&in);
                        assert_int_not_equal(s.action, PLAN_WAIT);   /* no backoff set */
                        if (want == W_ABSENT)
                                assert_true(s.action == PLAN_NONE || s.phase == PHASE_DELETING);
                        if (want == W_STOPPED && w.phase != PHASE_DELETING)
                                assert_true(s.action != PLAN_START && s.action != PLAN_RESTART);
                        if (s.action == PLAN_NONE)
                                break;
                        apply_step(&w, &s);
                }
                /* Resting states: what the spec asked for, or down by policy. */
                if (want == W_ABSENT) {
                        assert_false(w.record);
                } else if (want == W_STOPPED) {
                        assert_int_equal(w.phase, PHASE_STOPPED);
                        assert_true(w.flags & REC_PREPARED);
                        assert_int_not_equal(w.vm, VM_RUNNING);
                } else if (!(w.flags & REC_GUEST_EXITED)) {
                        assert_int_equal(w.phase, PHASE_RUNNING);
                        assert_int_equal(w.vm, VM_RUNNING);
                }
                cases++;
        }
        assert_true(cases > 1000);
}

static void test_backoff_applies_to_starts_only(void **state)
{
        (void)state;
        for (int phase = 0; phase < PHASE_COUNT; phase++) {
                if (phase == PHASE_DELETING)
                        continue;
                struct plan_input in = input_of(W_RUNNING, true, (enum bg_phase)phase, REC_PREPARED, VM_ABSENT, ON, false, 0, 1000);
                struct plan_step s = plan_next(&in);
                assert_true(s.action == PLAN_WAIT || s.action == PLAN_NONE);
                in = input_of(W_STOPPED, true, (enum bg_phase)phase, REC_PREPARED, VM_RUNNING, ON, false, 0, 1000);
                s = plan_next(&in);
                assert_int_equal(s.action, PLAN_STOP);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rows),
                cmocka_unit_test(test_every_state_converges),
                cmocka_unit_test(test_backoff_applies_to_starts_only),
        };
        return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
