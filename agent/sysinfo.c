/* sysinfo: what the agent reports about the guest (hello, stats), writing
 * files for the host, and powering the guest off.
 *
 * Stats come from /proc and statvfs("/") and are plain counters; the host
 * turns them into rates.  Files are written to a temporary name beside
 * the target, then renamed, so a cut-off transfer never leaves half a
 * file under the real name.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

void hello_send(struct conn *c, uint64_t init_us, uint64_t start_us)
{
        struct utsname u;
        struct timespec rt, bt;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_BOOTTIME, &bt);
        int64_t boot_ms = ((int64_t)rt.tv_sec - bt.tv_sec) * 1000 + (rt.tv_nsec - bt.tv_nsec) / 1000000;
        struct agp_out *o = frame(AGP_HELLO, 0);
        agp_put_u64(o, AGT_VERSION, AGP_VERSION);
        agp_put_str(o, AGT_AGENT, AGENT_VERSION);
        if (uname(&u) == 0) {
                agp_put_str(o, AGT_KERNEL, u.release);
                agp_put_str(o, AGT_HOSTNAME, u.nodename);
        }
        agp_put_u64(o, AGT_BOOT_MS, (uint64_t)(boot_ms > 0 ? boot_ms : 0));
        if (init_us)
                agp_put_u64(o, AGT_INIT_US, init_us);
        agp_put_u64(o, AGT_START_US, start_us);
        agp_put_u64(o, AGT_NOW_US, uptime_us());
        agp_put_u64(o, AGT_STAGE, agent_rooted ? 2 : 1);
        conn_send(c, o);
}

/* ---- stats ---- */

static size_t slurp(const char *path, char *buf, size_t max)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        size_t n = 0;
        while (n + 1 < max) {
                ssize_t r = read(fd, buf + n, max - 1 - n);
                if (r <= 0)
                        break;
                n += (size_t)r;
        }
        close(fd);
        buf[n] = '\0';
        return n;
}

static uint64_t meminfo(const char *text, const char *key)
{
        const char *p = strstr(text, key);
        return p ? strtoull(p + strlen(key), NULL, 10) * 1024 : 0;
}

/* "vda", "vdb": whole virtio disks, not their partitions. */
static bool whole_disk(const char *name)
{
        size_t n = strlen(name);
        return n >= 3 && (strncmp(name, "vd", 2) == 0 || strncmp(name, "xvd", 3) == 0) &&
               name[n - 1] >= 'a' && name[n - 1] <= 'z';
}

void stats_reply(struct conn *c, uint64_t id)
{
        static char buf[65536];
        struct agp_out *o = frame(AGP_STATS, id);
        long tck = sysconf(_SC_CLK_TCK);
        if (tck <= 0)
                tck = 100;
        agp_put_u64(o, AGT_S_UPTIME_MS, uptime_us() / 1000);
        if (slurp("/proc/stat", buf, sizeof buf)) {
                unsigned long long us = 0, ni = 0, sy = 0, id_ = 0, io = 0, irq = 0, sirq = 0, st = 0;
                if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &us, &ni, &sy, &id_, &io, &irq, &sirq,
                           &st) >= 4) {
                        agp_put_u64(o, AGT_S_CPU_USER, (us + ni) * 1000 / (unsigned long long)tck);
                        agp_put_u64(o, AGT_S_CPU_SYSTEM, (sy + irq + sirq) * 1000 / (unsigned long long)tck);
                        agp_put_u64(o, AGT_S_CPU_IDLE, (id_ + io) * 1000 / (unsigned long long)tck);
                }
                uint64_t cpus = 0;
                for (const char *p = buf; (p = strstr(p, "\ncpu")); p++)
                        cpus++;
                agp_put_u64(o, AGT_S_CPUS, cpus);
        }
        if (slurp("/proc/meminfo", buf, sizeof buf)) {
                agp_put_u64(o, AGT_S_MEM_TOTAL, meminfo(buf, "MemTotal:"));
                agp_put_u64(o, AGT_S_MEM_AVAIL, meminfo(buf, "MemAvailable:"));
        }
        if (slurp("/proc/loadavg", buf, sizeof buf)) {
                double l1, l5, l15;
                unsigned long running = 0;
                if (sscanf(buf, "%lf %lf %lf %lu/", &l1, &l5, &l15, &running) >= 3) {
                        agp_put_u64(o, AGT_S_LOAD1, (uint64_t)(l1 * 100 + 0.5));
                        agp_put_u64(o, AGT_S_LOAD5, (uint64_t)(l5 * 100 + 0.5));
                        agp_put_u64(o, AGT_S_LOAD15, (uint64_t)(l15 * 100 + 0.5));
                        agp_put_u64(o, AGT_S_PROCS, running);
                }
        }
        if (slurp("/proc/diskstats", buf, sizeof buf)) {
                uint64_t rd = 0, wr = 0;
                for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
                        char name[64];
                        unsigned long long f[7];
                        if (sscanf(line, "%*u %*u %63s %llu %llu %llu %llu %llu %llu %llu", name, &f[0], &f[1], &f[2],
                                   &f[3], &f[4], &f[5], &f[6]) == 8 && whole_disk(name)) {
                                rd += f[2] * 512;
                                wr += f[6] * 512;
                        }
                }
                agp_put_u64(o, AGT_S_DISK_READ, rd);
                agp_put_u64(o, AGT_S_DISK_WRITE, wr);
        }
        if (slurp("/proc/net/dev", buf, sizeof buf)) {
                uint64_t rx = 0, tx = 0;
                for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
                        char *colon = strchr(line, ':');
                        if (!colon)
                                continue;
                        *colon = '\0';
                        while (*line == ' ')
                                line++;
                        unsigned long long r, t;
                        if (strcmp(line, "lo") != 0 &&
                            sscanf(colon + 1, "%llu %*u %*u %*u %*u %*u %*u %*u %llu", &r, &t) == 2) {
                                rx += r;
                                tx += t;
                        }
                }
                agp_put_u64(o, AGT_S_NET_RX, rx);
                agp_put_u64(o, AGT_S_NET_TX, tx);
        }
        struct statvfs vfs;
        if (statvfs("/", &vfs) == 0) {
                agp_put_u64(o, AGT_S_ROOT_TOTAL, (uint64_t)vfs.f_blocks * vfs.f_frsize);
                agp_put_u64(o, AGT_S_ROOT_FREE, (uint64_t)vfs.f_bavail * vfs.f_frsize);
        }
        agp_put_u64(o, AGT_S_EXECS, exec_started_total);
        /* running sessions count as activity now */
        agp_put_u64(o, AGT_S_LAST_EXEC_MS, exec_count() ? uptime_us() / 1000 : exec_last_activity_us / 1000);
        conn_send(c, o);
}

/* ---- write a file ---- */

struct wfile {
        bool used;
        struct conn *c;
        uint64_t id;
        int fd;
        char path[AGP_MAX_STR];
        char tmp[AGP_MAX_STR + 32];
};

static struct wfile wfiles[MAX_WRITES];

static void wfile_abort(struct wfile *w)
{
        if (w->fd >= 0)
                close(w->fd);
        unlink(w->tmp);
        memset(w, 0, sizeof *w);
}

static void write_fail(struct conn *c, uint64_t id, int e, const char *what, const char *path)
{
        char msg[AGP_MAX_STR + 64];
        snprintf(msg, sizeof msg, "%s '%.*s': %s", what, 3000, path, strerror(e));
        struct agp_out *o = frame(AGP_ERROR, id);
        agp_put_u64(o, AGT_ERRNO, (uint64_t)e);
        agp_put_str(o, AGT_MSG, msg);
        conn_send(c, o);
}

void write_chunk(struct conn *c, const struct agp_msg *m)
{
        uint64_t id = 0, last = 0;
        const uint8_t *data = NULL;
        size_t n = 0;
        if (agp_get_u64(m, AGT_ID, &id) < 0 || id == 0)
                return;
        agp_get_u64(m, AGT_LAST, &last);
        if (agp_get_bytes(m, AGT_DATA, &data, &n) < 0)
                n = 0;
        struct wfile *w = NULL;
        for (size_t i = 0; i < MAX_WRITES && !w; i++)
                if (wfiles[i].used && wfiles[i].c == c && wfiles[i].id == id)
                        w = &wfiles[i];
        if (!w) {
                /* the first chunk names the file */
                char path[AGP_MAX_STR];
                uint64_t mode = 0644, uid = 0, gid = 0;
                if (agp_get_str(m, AGT_PATH, path, sizeof path) < 0 || path[0] != '/') {
                        write_fail(c, id, EINVAL, "write", "(no absolute path)");
                        return;
                }
                agp_get_u64(m, AGT_MODE, &mode);
                agp_get_u64(m, AGT_UID, &uid);
                agp_get_u64(m, AGT_GID, &gid);
                if (mode > 07777 || uid > 0xfffffffe || gid > 0xfffffffe) {
                        write_fail(c, id, EINVAL, "write (bad mode or owner)", path);
                        return;
                }
                for (size_t i = 0; i < MAX_WRITES && !w; i++)
                        if (!wfiles[i].used)
                                w = &wfiles[i];
                if (!w) {
                        write_fail(c, id, EBUSY, "write (too many at once)", path);
                        return;
                }
                memset(w, 0, sizeof *w);
                snprintf(w->path, sizeof w->path, "%s", path);
                snprintf(w->tmp, sizeof w->tmp, "%s.banger-%llu", path, (unsigned long long)id);
                w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (w->fd < 0) {
                        write_fail(c, id, errno, "create", path);
                        memset(w, 0, sizeof *w);
                        return;
                }
                w->used = true;
                w->c = c;
                w->id = id;
                if (fchown(w->fd, (uid_t)uid, (gid_t)gid) < 0 || fchmod(w->fd, (mode_t)mode) < 0) {
                        write_fail(c, id, errno, "set owner and mode of", path);
                        wfile_abort(w);
                        return;
                }
        }
        while (n) {
                ssize_t k = write(w->fd, data, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        write_fail(c, id, k < 0 ? errno : EIO, "write", w->path);
                        wfile_abort(w);
                        return;
                }
                data += k;
                n -= (size_t)k;
        }
        if (last == 1) {
                if (fsync(w->fd) < 0 || rename(w->tmp, w->path) < 0) {
                        write_fail(c, id, errno, "finish", w->path);
                        wfile_abort(w);
                        return;
                }
                close(w->fd);
                memset(w, 0, sizeof *w);
                conn_send(c, frame(AGP_DONE, id));
        }
}

void write_conn_gone(struct conn *c)
{
        for (size_t i = 0; i < MAX_WRITES; i++)
                if (wfiles[i].used && wfiles[i].c == c)
                        wfile_abort(&wfiles[i]);
}

/* ---- power off ---- */

/* Whether pid 1 catches or blocks sig (so a kill() is not lost). */
static bool init_takes(int sig)
{
        char buf[4096];
        if (!slurp("/proc/1/status", buf, sizeof buf))
                return true;   /* cannot tell: send it anyway */
        unsigned long long blk = 0, cgt = 0;
        const char *b = strstr(buf, "\nSigBlk:"), *c = strstr(buf, "\nSigCgt:");
        if (!b || !c || sscanf(b, "\nSigBlk: %llx", &blk) != 1 || sscanf(c, "\nSigCgt: %llx", &cgt) != 1)
                return true;
        return ((blk | cgt) >> (sig - 1)) & 1;
}

void shutdown_guest(void)
{
        char comm[64] = "";
        slurp("/proc/1/comm", comm, sizeof comm);
        comm[strcspn(comm, "\n")] = '\0';
        /* Ask init first, so the image's own shutdown runs: systemd powers
         * off on SIGRTMIN+4, busybox init on SIGUSR2. */
        int sig = strcmp(comm, "systemd") == 0 ? SIGRTMIN + 4 : SIGUSR2;
        sync();
        /* The kernel drops a signal pid 1 neither catches nor blocks, and
         * the host may ask just after switch_root, before init has set its
         * handlers up: wait (a bounded while) until it would take it. */
        int i = 0;
        for (; i < 50 && !init_takes(sig); i++)
                usleep(100000);
        kill(1, sig);
        for (; i < 100; i++)
                usleep(100000);
        /* init did not finish within 10 s of the request: do it ourselves. */
        say("init did not power off; forcing it");
        kill(-1, SIGTERM);
        usleep(500000);
        kill(-1, SIGKILL);
        sync();
        umount2("/root", MNT_DETACH);
        mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
        sync();
        reboot(RB_POWER_OFF);
        _exit(0);
}
