/* log: see log.h.  One write(2) per line so lines from threads never mix. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

enum log_level log_threshold = LOGL_INFO;
static int use_syslog;

void log_use_syslog(const char *ident)
{
        openlog(ident, LOG_PID, LOG_DAEMON);
        use_syslog = 1;
}

static const char *const names[] = { "debug", "info", "warn", "error", "quiet" };

int log_level_parse(const char *s)
{
        for (int i = 0; i <= LOGL_QUIET; i++)
                if (strcmp(s, names[i]) == 0)
                        return i;
        return -1;
}

void log_write(enum log_level lvl, const char *fmt, ...)
{
        char line[2048];
        int n = snprintf(line, sizeof line, "%s: ", names[lvl]);
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
        size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (use_syslog) {
                static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_ERR };
                syslog(prio[lvl], "%s", line + n);
                return;
        }
        if (len > sizeof line - 2)
                len = sizeof line - 2;
        line[len++] = '\n';
        ssize_t w = write(2, line, len);
        (void)w;
}
