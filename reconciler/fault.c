/* fault: see fault.h.  The table is written once at start-up and then only
 * read, except for the remaining-count of fail faults (atomic). */
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "util.h"

enum fault_kind { FAULT_CRASH, FAULT_FAIL, FAULT_STALL, FAULT_FLAG };

#define STALL_MS 3000

struct fault {
        enum fault_kind kind;
        char point[64];
        char name[64];     /* "" = any sandbox */
        int remaining;     /* fail: -1 forever */
};

static struct fault faults[32];
static int n_faults;

int fault_configure(const char *spec, struct bg_err **err)
{
        n_faults = 0;
        if (!spec || !*spec)
                return 0;
        _cleanup_free_ char *copy = xstrdup(spec);
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (n_faults == (int)ARRAY_SIZE(faults))
                        return bg_error(err, EINVAL, "too many faults");
                struct fault *f = &faults[n_faults];
                memset(f, 0, sizeof *f);
                f->remaining = -1;
                char *colon = strchr(tok, ':');
                if (!colon)
                        return bg_error(err, EINVAL, "fault '%s': want KIND:POINT", tok);
                *colon = '\0';
                char *point = colon + 1;
                if (strcmp(tok, "crash") == 0)
                        f->kind = FAULT_CRASH;
                else if (strcmp(tok, "fail") == 0)
                        f->kind = FAULT_FAIL;
                else if (strcmp(tok, "stall") == 0)
                        f->kind = FAULT_STALL;
                else if (strcmp(tok, "die") == 0)
                        f->kind = FAULT_FLAG;
                else
                        return bg_error(err, EINVAL, "fault kind '%s': want crash, fail, stall or die", tok);
                char *star = strchr(point, '*');
                if (star) {
                        *star = '\0';
                        char *end = NULL;
                        errno = 0;
                        long count = strtol(star + 1, &end, 10);
                        if (errno || end == star + 1 || (*end && *end != '@') || count <= 0 || count > 1000000)
                                return bg_error(err, EINVAL, "fault '%s': bad count", point);
                        f->remaining = (int)count;
                        if (*end == '@')
                                memmove(star, end, strlen(end) + 1);   /* keep the @NAME scope */
                }
                char *at = strchr(point, '@');
                if (at) {
                        *at = '\0';
                        snprintf(f->name, sizeof f->name, "%s", at + 1);
                }
                if (!*point || strlen(point) >= sizeof f->point)
                        return bg_error(err, EINVAL, "fault: bad point '%s'", point);
                snprintf(f->point, sizeof f->point, "%s", point);
                n_faults++;
        }
        return 0;
}

static bool matches(const struct fault *f, const char *point, const char *name)
{
        return strcmp(f->point, point) == 0 && (!f->name[0] || (name && strcmp(f->name, name) == 0));
}

int fault_hit(const char *point, const char *name, struct bg_err **err)
{
        for (int i = 0; i < n_faults; i++) {
                struct fault *f = &faults[i];
                if (f->kind == FAULT_FLAG || !matches(f, point, name))
                        continue;
                if (f->kind == FAULT_CRASH) {
                        log_warn("injected crash point=%s name=%s", point, name ? name : "");
                        kill(getpid(), SIGKILL);
                        pause();
                }
                if (f->remaining == 0)
                        continue;
                if (f->remaining > 0)
                        __atomic_sub_fetch(&f->remaining, 1, __ATOMIC_SEQ_CST);
                if (f->kind == FAULT_STALL) {
                        log_warn("injected stall point=%s name=%s ms=%d", point, name ? name : "", STALL_MS);
                        struct timespec ts = { STALL_MS / 1000, (STALL_MS % 1000) * 1000000L };
                        nanosleep(&ts, NULL);
                        continue;
                }
                return bg_error(err, EIO, "injected failure at %s", point);
        }
        return 0;
}

bool fault_flag(const char *what, const char *name)
{
        for (int i = 0; i < n_faults; i++)
                if (faults[i].kind == FAULT_FLAG && matches(&faults[i], what, name))
                        return true;
        return false;
}
