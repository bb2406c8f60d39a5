/* watch: see watch.h. */
#include "watch.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

bool watch_is_spec_name(const char *name)
{
        if (!name[0] || name[0] == '.' || name[0] == '#')
                return false;
        return str_has_suffix(name, ".yaml") || str_has_suffix(name, ".yml");
}

int watch_open(const char *dir, int *fd, struct bg_err **err)
{
        int f = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (f < 0)
                return bg_error(err, errno, "inotify_init1: %s", strerror(errno));
        if (inotify_add_watch(f, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                                              IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0) {
                int e = errno;
                close(f);
                return bg_error(err, e, "watch '%s': %s", dir, strerror(e));
        }
        *fd = f;
        return 0;
}

struct pending {
        char **names;
        size_t n;
};

static void add_name(struct pending *p, const char *name)
{
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->names[i], name) == 0)
                        return;
        p->names = xreallocarray(p->names, p->n + 1, sizeof *p->names);
        p->names[p->n++] = xstrdup(name);
}

int watch_drain(int fd, const char *dir, int settle_ms, char ***names, size_t *n_names)
{
        char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
        struct pending p = { 0 };
        int overflow = 0;
        uint32_t open_cookie = 0;   /* a MOVED_FROM whose MOVED_TO we have not seen yet */

        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        /* Give a half-seen rename a moment to complete, once. */
                        if (open_cookie && settle_ms > 0) {
                                struct pollfd pf = { .fd = fd, .events = POLLIN };
                                open_cookie = 0;
                                if (poll(&pf, 1, settle_ms) > 0)
                                        continue;
                        }
                        break;
                }
                for (char *ptr = buf; ptr < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)ptr;
                        ptr += sizeof *ev + ev->len;
                        if (ev->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF)) {
                                overflow = 1;
                                continue;
                        }
                        if (ev->mask & IN_MOVED_FROM)
                                open_cookie = ev->cookie;
                        else if ((ev->mask & IN_MOVED_TO) && ev->cookie == open_cookie)
                                open_cookie = 0;
                        if (!ev->len || !watch_is_spec_name(ev->name))
                                continue;
                        /* A new regular file is read when it is closed; a new
                         * symlink never is, so it counts when it appears. */
                        if ((ev->mask & (IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)) ==
                            IN_CREATE) {
                                struct stat st;
                                _cleanup_free_ char *path = xasprintf("%s/%s", dir, ev->name);
                                if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode))
                                        continue;
                        }
                        add_name(&p, ev->name);
                }
        }
        *names = p.names;
        *n_names = p.n;
        return overflow ? -1 : 0;
}
