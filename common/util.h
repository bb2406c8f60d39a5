/* util: allocation that aborts on out-of-memory, cleanup attributes, and
 * the few string/file/time helpers every module needs.
 *
 * Out of memory is the one failure we do not turn into an error value: a
 * daemon that cannot allocate a few bytes cannot report it either.
 */
#ifndef BANGER_UTIL_H
#define BANGER_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

struct bg_err;

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* Grow an array of `size`-byte items so that it holds at least `need`. */
void *xreallocarray(void *p, size_t need, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hand ownership over: return *pp and set it to NULL. */
static inline void *steal_ptr(void *pp)
{
        void **p = pp;
        void *v = *p;
        *p = NULL;
        return v;
}
#define steal_pointer(pp) steal_ptr(pp)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

bool str_has_suffix(const char *s, const char *suffix);
bool str_has_prefix(const char *s, const char *prefix);

/* Milliseconds on CLOCK_MONOTONIC / CLOCK_REALTIME. */
int64_t now_mono_ms(void);
int64_t now_wall_ms(void);

/* The absolute time timeout_ms from now on clock c, for timed waits. */
struct timespec deadline_after_ms(clockid_t c, int timeout_ms);

/* Format wall-clock ms as RFC 3339 UTC ("2026-11-23T15:40:00.123Z") into buf. */
void format_time_ms(int64_t ms, char *buf, size_t len);

/* Read a whole regular file of at most max bytes into a NUL-terminated heap
 * buffer (*out, length in *len).  Larger files fail with EFBIG. */
int read_file_limited(const char *path, size_t max, char **out, size_t *len, struct bg_err **err);

/* read_file_limited, and the file must belong to uid owner ((uid_t)-1:
 * any owner); another owner fails with EPERM. */
int read_file_owned(const char *path, size_t max, uid_t owner, char **out, size_t *len, struct bg_err **err);

/* Write data to path atomically: a temp file in the same folder, fsync,
 * rename.  mode applies to the new file. */
int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, struct bg_err **err);

/* mkdir -p with mode for created components. */
int mkdir_p(const char *path, unsigned mode, struct bg_err **err);

/* Remove a folder tree (no symlink following); missing is not an error. */
int rm_rf(const char *path, struct bg_err **err);

/* 64-bit FNV-1a. */
uint64_t fnv1a64(const void *data, size_t len, uint64_t seed);
#define FNV1A64_SEED 0xcbf29ce484222325ULL

/* Fill buf with n random bytes from getrandom(2); aborts if it cannot. */
void random_bytes(void *buf, size_t n);

#endif
