/* phase: the lifecycle phases of a sandbox, shared by daemon and CLI. */
#ifndef BANGER_PHASE_H
#define BANGER_PHASE_H

enum bg_phase {
        PHASE_PENDING,    /* record exists, nothing made yet */
        PHASE_CREATING,   /* disks and other objects being made */
        PHASE_STARTING,   /* VMM being started */
        PHASE_RUNNING,
        PHASE_STOPPING,
        PHASE_STOPPED,
        PHASE_DELETING,   /* being torn down; the record goes last */
        PHASE_FAILED,     /* an action failed or the VM died and will not be restarted (yet) */
        PHASE_COUNT
};

const char *phase_name(enum bg_phase p);   /* "Running", ... */
int phase_parse(const char *s);            /* -1 when unknown */

#endif
