/* util: see util.h. */

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "err.h"

static void oom(void)
{
        static const char m[] = "fatal: out of memory\n";
        ssize_t r = write(2, m, sizeof m - 1);
        (void)r;
        abort();
}

void *xmalloc(size_t n)
{
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xcalloc(size_t n, size_t size)
{
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                oom();
        return p;
}

void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xreallocarray(void *p, size_t need, size_t size)
{
        if (size && need > SIZE_MAX / size)
                oom();
        return xrealloc(p, need * size);
}

char *xstrdup(const char *s)
{
        char *d = strdup(s ? s : "");
        if (!d)
                oom();
        return d;
}

char *xstrndup(const char *s, size_t n)
{
        char *d = strndup(s, n);
        if (!d)
                oom();
        return d;
}

char *xvasprintf(const char *fmt, va_list ap)
{
        char *s;
        if (vasprintf(&s, fmt, ap) < 0)
                oom();
        return s;
}

char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *s = xvasprintf(fmt, ap);
        va_end(ap);
        return s;
}

bool str_has_suffix(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

bool str_has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int64_t clock_ms(clockid_t c)
{
        struct timespec ts;
        clock_gettime(c, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
int64_t now_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

struct timespec deadline_after_ms(clockid_t c, int timeout_ms)
{
        struct timespec dl;
        clock_gettime(c, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
        }
        return dl;
}

void format_time_ms(int64_t ms, char *buf, size_t len)
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        char base[32];
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

int read_file_limited(const char *path, size_t max, char **out, size_t *len, struct bg_err **err)
{
        return read_file_owned(path, max, (uid_t)-1, out, len, err);
}

int read_file_owned(const char *path, size_t max, uid_t owner, char **out, size_t *len, struct bg_err **err)
{
        /* O_NONBLOCK: a FIFO planted where a file is expected must not hang us. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return bg_error(err, errno, "open '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return bg_error(err, errno, "stat '%s': %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return bg_error(err, EINVAL, "'%s' is not a regular file", path);
        if (owner != (uid_t)-1 && st.st_uid != owner)
                return bg_error(err, EPERM, "file belongs to uid %u, not to the folder's owner (uid %u)",
                                (unsigned)st.st_uid, (unsigned)owner);
        if ((size_t)st.st_size > max)
                return bg_error(err, EFBIG, "'%s' is larger than %zu bytes", path, max);
        size_t cap = (size_t)st.st_size + 1, n = 0;
        _cleanup_free_ char *buf = xmalloc(cap + 1);
        for (;;) {
                if (n == cap) {
                        if (cap > max)
                                return bg_error(err, EFBIG, "'%s' is larger than %zu bytes", path, max);
                        cap *= 2;
                        buf = xrealloc(buf, cap + 1);
                }
                ssize_t r = read(fd, buf + n, cap - n);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return bg_error(err, errno, "read '%s': %s", path, strerror(errno));
                }
                if (r == 0)
                        break;
                n += (size_t)r;
        }
        if (n > max)
                return bg_error(err, EFBIG, "'%s' is larger than %zu bytes", path, max);
        buf[n] = '\0';
        *out = steal_pointer(&buf);
        if (len)
                *len = n;
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, struct bg_err **err)
{
        _cleanup_free_ char *tmp = NULL;
        const char *slash = strrchr(path, '/');
        if (slash)
                tmp = xasprintf("%.*s/.%s.tmp%d", (int)(slash - path), path, slash + 1, (int)getpid());
        else
                tmp = xasprintf(".%s.tmp%d", path, (int)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return bg_error(err, errno, "create '%s': %s", tmp, strerror(errno));
        const char *p = data;
        size_t left = len;
        while (left) {
                ssize_t w = write(fd, p, left);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = errno;
                        close(fd);
                        unlink(tmp);
                        return bg_error(err, e, "write '%s': %s", tmp, strerror(e));
                }
                p += w;
                left -= (size_t)w;
        }
        if (fsync(fd) < 0 || close(fd) < 0) {
                int e = errno;
                unlink(tmp);
                return bg_error(err, e, "write '%s': %s", tmp, strerror(e));
        }
        if (rename(tmp, path) < 0) {
                int e = errno;
                unlink(tmp);
                return bg_error(err, e, "rename to '%s': %s", path, strerror(e));
        }
        return 0;
}

int mkdir_p(const char *path, unsigned mode, struct bg_err **err)
{
        _cleanup_free_ char *p = xstrdup(path);
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return bg_error(err, errno, "mkdir '%s': %s", p, strerror(errno));
                *s = '/';
        }
        if (mkdir(p, mode) < 0) {
                struct stat st;
                if (errno != EEXIST)
                        return bg_error(err, errno, "mkdir '%s': %s", p, strerror(errno));
                if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                        return bg_error(err, ENOTDIR, "mkdir '%s': exists and is not a folder", p);
        }
        return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
        return (r < 0 && errno != ENOENT) ? -1 : 0;
}

int rm_rf(const char *path, struct bg_err **err)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : bg_error(err, errno, "stat '%s': %s", path, strerror(errno));
        if (!S_ISDIR(st.st_mode)) {
                if (unlink(path) < 0 && errno != ENOENT)
                        return bg_error(err, errno, "remove '%s': %s", path, strerror(errno));
                return 0;
        }
        if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
                return bg_error(err, errno, "remove '%s': %s", path, strerror(errno));
        return 0;
}

uint64_t fnv1a64(const void *data, size_t len, uint64_t h)
{
        const unsigned char *p = data;
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

void random_bytes(void *buf, size_t n)
{
        unsigned char *p = buf;
        while (n) {
                ssize_t r = getrandom(p, n, 0);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        abort();
                }
                p += r;
                n -= (size_t)r;
        }
}
