/* loop_bench: figures for the control loop with the fake driver, in
 * process, on a temporary root:
 *   - file written -> first action (record committed), median of 100
 *   - fake-driver creations per second (N specs dropped at once)
 *   - a no-op resync pass (re-check + GC) at 1,000 and 10,000 sandboxes
 * Prints figures; asserts nothing.  Usage: loop_bench [MAX_SANDBOXES]. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "config.h"
#include "driver.h"
#include "drivers.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "util.h"

struct rig {
        char root[64];
        char *sandboxes;
        struct store *store;
        struct drivers ds;
        struct hub *hub;
        struct loop *loop;
        struct bg_config cfg;
        int stop_fd;
        pthread_t thread;
};

static void die(struct bg_err *err)
{
        fprintf(stderr, "loop_bench: %s\n", bg_err_msg(err));
        exit(1);
}

static void *run_loop(void *arg)
{
        struct rig *r = arg;
        struct bg_err *err = NULL;
        if (loop_run(r->loop, r->stop_fd, &err) < 0)
                die(err);
        return NULL;
}

static void rig_up(struct rig *r, int workers)
{
        struct bg_err *err = NULL;
        memset(r, 0, sizeof *r);
        snprintf(r->root, sizeof r->root, "/tmp/banger-bench-XXXXXX");
        if (!mkdtemp(r->root)) {
                perror("mkdtemp");
                exit(1);
        }
        r->sandboxes = xasprintf("%s/config/sandboxes", r->root);
        _cleanup_free_ char *state = xasprintf("%s/state", r->root);
        _cleanup_free_ char *run = xasprintf("%s/run", r->root);
        _cleanup_free_ char *db = xasprintf("%s/state/db", r->root);
        if (mkdir_p(r->sandboxes, 0755, &err) < 0 || mkdir_p(state, 0700, &err) < 0 ||
            driver_fake_new(state, run, &r->ds.v[0], &err) < 0 || store_open(db, &r->store, &err) < 0)
                die(err);
        r->hub = hub_new(0);
        r->stop_fd = eventfd(0, EFD_CLOEXEC);
        r->ds.n = 1;
        r->ds.forced = true;
        struct loop_config lc = { r->sandboxes, &r->cfg, r->store, &r->ds, r->hub, workers, 3600 * 1000 };
        if (loop_new(&lc, &r->loop, &err) < 0)
                die(err);
}

static void rig_start(struct rig *r)
{
        struct bg_err *err = NULL;
        if (loop_start(r->loop, &err) < 0)
                die(err);
        pthread_create(&r->thread, NULL, run_loop, r);
}

static void rig_down(struct rig *r)
{
        uint64_t one = 1;
        if (write(r->stop_fd, &one, sizeof one) < 0)
                perror("write");
        pthread_join(r->thread, NULL);
        loop_free(r->loop);
        hub_close(r->hub);
        hub_free(r->hub);
        store_close(r->store);
        drivers_release(&r->ds);
        close(r->stop_fd);
        rm_rf(r->root, NULL);
        free(r->sandboxes);
}

static void write_spec(struct rig *r, int i)
{
        char body[256], path[512];
        int n = snprintf(body, sizeof body,
                         "apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: s%d\nspec:\n  vcpu: 1\n", i);
        snprintf(path, sizeof path, "%s/s%d.yaml", r->sandboxes, i);
        struct bg_err *err = NULL;
        if (write_file_atomic(path, body, (size_t)n, 0644, &err) < 0)
                die(err);
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

static int64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void bench_first_action(void)
{
        struct rig r;
        rig_up(&r, 4);
        rig_start(&r);
        int64_t lat[100];
        uint64_t seq = 0;
        for (int i = 0; i < 100; i++) {
                loop_wait_idle(r.loop, 10000);
                bool closed;
                seq = hub_wait(r.hub, 0, 0, &closed);
                int64_t t0 = now_us();
                write_spec(&r, i);
                hub_wait(r.hub, seq, 5000, &closed);   /* first event: the record is committed */
                lat[i] = now_us() - t0;
        }
        loop_wait_idle(r.loop, 10000);
        qsort(lat, 100, sizeof lat[0], cmp_i64);
        printf("loop: file written -> first action: median %.2f ms, p90 %.2f ms, max %.2f ms (n=100)\n",
               lat[50] / 1000.0, lat[90] / 1000.0, lat[99] / 1000.0);
        rig_down(&r);
}

static void bench_scale(int n)
{
        struct rig r;
        rig_up(&r, 4);
        for (int i = 0; i < n; i++)
                write_spec(&r, i);
        int64_t t0 = now_us();
        rig_start(&r);
        if (!loop_wait_idle(r.loop, 600000))
                printf("loop: %d sandboxes did not converge in 600 s\n", n);
        double secs = (now_us() - t0) / 1e6;
        printf("loop: %d sandboxes created and started from an empty store: %.2f s (%.0f creations/s)\n", n,
               secs, n / secs);

        int64_t best = INT64_MAX, sum = 0;
        int passes = getenv("LOOP_BENCH_PASSES") ? atoi(getenv("LOOP_BENCH_PASSES")) : 5;
        for (int k = 0; k < passes; k++) {
                int64_t a = now_us();
                loop_resync(r.loop);
                int64_t mid = now_us();
                loop_wait_idle(r.loop, 60000);
                int64_t d = now_us() - a;
                if (getenv("LOOP_BENCH_SPLIT"))
                        printf("  queue+gc %.1f ms, workers %.1f ms\n", (mid - a) / 1000.0, (now_us() - mid) / 1000.0);
                sum += d;
                if (d < best)
                        best = d;
        }
        printf("loop: no-op pass (re-check every name + GC) at %d sandboxes: best %.1f ms, mean %.1f ms\n", n,
               best / 1000.0, sum / passes / 1000.0);
        rig_down(&r);
}

int main(int argc, char **argv)
{
        int max = argc > 1 ? atoi(argv[1]) : 10000;
        log_threshold = LOGL_ERROR;
        if (getenv("LOOP_BENCH_PASSES")) {
                bench_scale(max);
                return 0;
        }
        bench_first_action();
        bench_scale(1000);
        if (max >= 10000)
                bench_scale(10000);
        return 0;
}
