/* phase: see phase.h. */
#include "phase.h"

#include <string.h>

static const char *const names[PHASE_COUNT] = {
        "Pending", "Creating", "Starting", "Running",
        "Stopping", "Stopped", "Deleting", "Failed",
};

const char *phase_name(enum bg_phase p)
{
        return (unsigned)p < PHASE_COUNT ? names[p] : "Unknown";
}

int phase_parse(const char *s)
{
        for (int i = 0; i < PHASE_COUNT; i++)
                if (strcmp(s, names[i]) == 0)
                        return i;
        return -1;
}
