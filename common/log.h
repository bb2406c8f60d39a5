/* log: leveled, one line per event, "level: message key=value ..." on
 * stderr.  The level is checked before formatting.  Never log secrets. */
#ifndef BANGER_LOG_H
#define BANGER_LOG_H

enum log_level { LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERROR, LOGL_QUIET };

extern enum log_level log_threshold;

/* Parse "debug|info|warn|error|quiet"; returns -1 when unknown. */
int log_level_parse(const char *s);
/* Send lines to syslog (the journal on systemd hosts) instead of stderr. */
void log_use_syslog(const char *ident);
void log_write(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...) do { if ((lvl) >= log_threshold) log_write((lvl), __VA_ARGS__); } while (0)
#define log_debug(...) log_at(LOGL_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOGL_INFO, __VA_ARGS__)
#define log_warn(...) log_at(LOGL_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOGL_ERROR, __VA_ARGS__)

#endif
