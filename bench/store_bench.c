/* store_bench: figures for the LMDB store with records shaped like real
 * ones (a ~1 KiB spec, a short message, small driver handles).  What
 * matters for bangerd: the cost of one durable commit (the loop commits
 * before every externally visible action) and the cost of reading every
 * record (each control-loop pass does it).  Runs in a temp folder it
 * removes; finishes in a few seconds on an SSD. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "err.h"
#include "store.h"
#include "util.h"

#define N_RECORDS 10000
#define N_COMMITS 1000
#define N_SCANS   20

static double now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what, struct bg_err *err)
{
        fprintf(stderr, "store_bench: %s: %s\n", what, bg_err_msg(err));
        exit(1);
}

static char spec[1100];

static void make_record(struct store_record *r, int i)
{
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "sandbox-%05d", i);
        store_new_id(r->id);
        r->phase = PHASE_RUNNING;
        r->spec_hash = fnv1a64(spec, strlen(spec), FNV1A64_SEED);
        r->created_ms = r->phase_since_ms = now_wall_ms();
        r->last_exit = -1;
        r->spec_json = spec;
        r->message = (char *)"started in 180 ms";
        r->handles_json = (char *)"{\"pid\":4242,\"tap\":\"bg0a1b2c\",\"api_sock\":\"/run/banger/x.sock\"}";
}

static struct store_txn *begin(struct store *s, bool write)
{
        struct store_txn *t;
        struct bg_err *err = NULL;
        if (store_txn_begin(s, write, &t, &err) < 0)
                die("begin", err);
        return t;
}

static void put_commit(struct store *s, const struct store_record *r)
{
        struct bg_err *err = NULL;
        struct store_txn *t = begin(s, true);
        if (store_record_put(t, r, &err) < 0)
                die("put", err);
        if (store_txn_commit(t, &err) < 0)
                die("commit", err);
}

static int count_cb(const struct store_record *r, void *arg)
{
        /* Touch the strings, as a pass comparing hashes and handles would. */
        *(size_t *)arg += r->spec_json[0] + (r->handles_json ? 1 : 0);
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static off_t file_size(const char *dir)
{
        _cleanup_free_ char *p = xasprintf("%s/data.mdb", dir);
        struct stat st;
        return stat(p, &st) == 0 ? st.st_size : -1;
}

int main(void)
{
        char dir[] = "/tmp/store_bench.XXXXXX";
        struct bg_err *err = NULL;
        struct store *s;
        struct store_record r;
        static double lat[N_COMMITS], scans[N_SCANS];
        double t0;

        memset(spec, 'x', sizeof spec - 1);
        memcpy(spec, "{\"image\":\"debian-12\",\"cpus\":2,\"memory\":\"1G\",\"pad\":\"", 52);
        memcpy(spec + sizeof spec - 3, "\"}", 3);
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        if (store_open(dir, &s, &err) < 0)
                die("open", err);

        t0 = now_us();
        for (int i = 0; i < N_RECORDS; i++) {
                make_record(&r, i);
                put_commit(s, &r);
        }
        double one = now_us() - t0;
        printf("store: put %d records one-txn-each: %.0f ms (%.0f us/commit)\n", N_RECORDS, one / 1e3,
               one / N_RECORDS);

        t0 = now_us();
        struct store_txn *t = begin(s, true);
        for (int i = 0; i < N_RECORDS; i++) {
                make_record(&r, N_RECORDS + i);
                if (store_record_put(t, &r, &err) < 0)
                        die("put", err);
        }
        if (store_txn_commit(t, &err) < 0)
                die("commit", err);
        double batch = now_us() - t0;
        printf("store: put %d records in one txn: %.1f ms (%.2f us/record)\n", N_RECORDS, batch / 1e3,
               batch / N_RECORDS);

        /* Back to 10,000 records for the reads. */
        t = begin(s, true);
        for (int i = 0; i < N_RECORDS; i++) {
                snprintf(r.name, sizeof r.name, "sandbox-%05d", N_RECORDS + i);
                if (store_record_del(t, r.name, &err) < 0)
                        die("del", err);
        }
        if (store_txn_commit(t, &err) < 0)
                die("commit", err);

        size_t sink = 0;
        for (int k = 0; k < N_SCANS; k++) {
                t0 = now_us();
                t = begin(s, false);
                if (store_record_foreach(t, count_cb, &sink, &err) < 0)
                        die("foreach", err);
                store_txn_abort(t);
                scans[k] = now_us() - t0;
        }
        qsort(scans, N_SCANS, sizeof scans[0], cmp_double);
        printf("store: read all %d records via foreach: %.2f ms median of %d (min %.2f, max %.2f)\n",
               N_RECORDS, scans[N_SCANS / 2] / 1e3, N_SCANS, scans[0] / 1e3, scans[N_SCANS - 1] / 1e3);

        t0 = now_us();
        t = begin(s, false);
        for (int i = 0; i < N_RECORDS; i++) {
                struct store_record got;
                snprintf(r.name, sizeof r.name, "sandbox-%05d", i);
                if (store_record_get(t, r.name, &got, &err) < 0)
                        die("get", err);
                store_record_release(&got);
        }
        store_txn_abort(t);
        double gets = now_us() - t0;
        printf("store: get %d records by name (copying strings): %.2f ms (%.2f us/get)\n", N_RECORDS,
               gets / 1e3, gets / N_RECORDS);

        for (int i = 0; i < N_COMMITS; i++) {
                make_record(&r, i * 7 % N_RECORDS);
                r.restarts = (uint32_t)i;
                t0 = now_us();
                put_commit(s, &r);
                lat[i] = now_us() - t0;
        }
        qsort(lat, N_COMMITS, sizeof lat[0], cmp_double);
        printf("store: single-record commit latency: median %.0f us, p99 %.0f us (%d commits)\n",
               lat[N_COMMITS / 2], lat[N_COMMITS * 99 / 100], N_COMMITS);

        json_t *ev = json_pack("{s:s,s:s,s:s}", "type", "phase", "name", "sandbox-00001", "phase", "Running");
        t0 = now_us();
        t = begin(s, true);
        for (int i = 0; i < N_RECORDS; i++)
                if (store_event_append(t, ev, NULL, &err) < 0)
                        die("event", err);
        if (store_txn_commit(t, &err) < 0)
                die("commit", err);
        json_decref(ev);
        double evs = now_us() - t0;
        printf("store: append %d events in one txn: %.1f ms (%.2f us/event)\n", N_RECORDS, evs / 1e3,
               evs / N_RECORDS);

        printf("store: data.mdb size with %d records and %d events: %.1f MiB\n", N_RECORDS, N_RECORDS,
               (double)file_size(dir) / (1 << 20));
        if (sink == 0)
                printf("store: (no records read)\n");

        store_close(s);
        if (rm_rf(dir, &err) < 0)
                die("cleanup", err);
        return 0;
}
