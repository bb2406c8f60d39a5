/* net_bench: figures for the per-sandbox network objects, run inside a
 * network namespace of its own (unshare(CLONE_NEWNET) first; it never
 * touches the machine's namespace or ruleset).
 *
 *   setup+teardown: tap create+attach, nft elements (nat, 2 port forwards),
 *   permanent neighbour; then the reverse.  Median of 200, once with an
 *   empty bridge and table and once with 1,000 other sandboxes present.
 *   gc pass: list bg* taps + list the ids in table inet banger, with 1,000
 *   sandboxes present and nothing to remove.  Median of 50. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "ipam.h"
#include "netlink.h"
#include "nft.h"
#include "util.h"

#define N_PRESENT 1000
#define N_SETUP   200
#define N_GC      50

static struct nl_conn *nl;
static struct nft_conn *nf;
static struct ipam_subnet subnet;

static double now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void check(int r, struct bg_err *e, const char *what)
{
        if (r < 0) {
                fprintf(stderr, "net_bench: %s: %s\n", what, bg_err_msg(e));
                exit(1);
        }
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
        qsort(v, n, sizeof *v, cmp_double);
        return v[n / 2];
}

static double p90(double *v, size_t n)
{
        qsort(v, n, sizeof *v, cmp_double);
        return v[n * 9 / 10];
}

static void up(unsigned i, const char *id)
{
        struct bg_err *e = NULL;
        char tap[IPAM_TAP_NAME_SIZE];
        uint8_t mac[6];
        uint32_t addr = ipam_gateway(&subnet) + 1 + i;
        const struct nft_port ports[] = { { (uint16_t)(10000 + i), 80 }, { (uint16_t)(30000 + i), 22 } };
        struct nft_sandbox sb = { .id = id, .addr = addr, .nat = true, .ports = ports, .n_ports = 2 };

        check(ipam_tap_name(id, tap, &e), e, "tap name");
        check(ipam_mac(id, mac, &e), e, "mac");
        check(nl_tap_create(nl, tap, (uid_t)-1, &e), e, "tap create");
        check(nft_sandbox_add(nf, &sb, &e), e, "nft add");
        check(nl_neigh_set(nl, addr, mac, &e), e, "neigh set");
}

static void down(unsigned i, const char *id)
{
        struct bg_err *e = NULL;
        char tap[IPAM_TAP_NAME_SIZE];
        check(ipam_tap_name(id, tap, &e), e, "tap name");
        check(nl_neigh_del(nl, ipam_gateway(&subnet) + 1 + i, &e), e, "neigh del");
        check(nft_sandbox_del(nf, id, &e), e, "nft del");
        check(nl_tap_delete(nl, tap, &e), e, "tap delete");
}

static void id_of(unsigned i, char id[IPAM_ID_LEN + 1])
{
        snprintf(id, IPAM_ID_LEN + 1, "%016llx", 0x1000000000000ULL * (i + 1) + i);
}

static void bench_setup(const char *label, unsigned slot)
{
        static double tu[N_SETUP], td[N_SETUP], ts[N_SETUP];
        char id[IPAM_ID_LEN + 1];
        for (unsigned k = 0; k < N_SETUP; k++) {
                snprintf(id, sizeof id, "ffff%012x", k);
                double t0 = now_us();
                up(slot, id);
                double t1 = now_us();
                down(slot, id);
                double t2 = now_us();
                tu[k] = t1 - t0;
                td[k] = t2 - t1;
                ts[k] = t2 - t0;
        }
        printf("per sandbox (%s): setup median %.2f ms (p90 %.2f), teardown median %.2f ms (p90 %.2f), "
               "both median %.2f ms\n",
               label, median(tu, N_SETUP) / 1e3, p90(tu, N_SETUP) / 1e3, median(td, N_SETUP) / 1e3,
               p90(td, N_SETUP) / 1e3, median(ts, N_SETUP) / 1e3);
}

int main(void)
{
        if (unshare(CLONE_NEWNET) < 0) {
                fprintf(stderr, "net_bench: unshare(CLONE_NEWNET): %s (needs root)\n", strerror(errno));
                return 1;
        }
        struct bg_err *e = NULL;
        check(ipam_subnet_parse("172.16.0.0/20", &subnet, &e), e, "subnet");
        check(nl_conn_open("banger0", &subnet, &nl, &e), e, "netlink");
        check(nft_conn_open("banger0", &subnet, &nf, &e), e, "nft");
        check(nl_bridge_ensure(nl, &e), e, "bridge");
        check(nft_table_ensure(nf, &e), e, "table");

        bench_setup("empty", N_PRESENT + 10);

        char id[IPAM_ID_LEN + 1];
        double t0 = now_us();
        for (unsigned i = 0; i < N_PRESENT; i++) {
                id_of(i, id);
                up(i, id);
        }
        printf("created %d sandboxes' taps, rules and neighbours in %.0f ms\n", N_PRESENT, (now_us() - t0) / 1e3);

        bench_setup("1000 present", N_PRESENT + 10);

        static double t[N_GC];
        size_t n_taps = 0, n_ids = 0;
        for (unsigned k = 0; k < N_GC; k++) {
                char (*taps)[IPAM_TAP_NAME_SIZE] = NULL;
                char (*ids)[IPAM_ID_LEN + 1] = NULL;
                double s = now_us();
                check(nl_tap_list(nl, &taps, &n_taps, &e), e, "tap list");
                check(nft_list_ids(nf, &ids, &n_ids, &e), e, "list ids");
                t[k] = now_us() - s;
                free(taps);
                free(ids);
        }
        if (n_taps != N_PRESENT || n_ids != N_PRESENT) {
                fprintf(stderr, "net_bench: listed %zu taps and %zu ids, want %d\n", n_taps, n_ids, N_PRESENT);
                return 1;
        }
        printf("gc pass (list %zu taps + %zu rule ids, nothing to do): median %.2f ms, p90 %.2f ms\n", n_taps, n_ids,
               median(t, N_GC) / 1e3, p90(t, N_GC) / 1e3);

        /* GC with everything stray: one batch per kind of object. */
        char (*taps)[IPAM_TAP_NAME_SIZE] = xreallocarray(NULL, N_PRESENT, sizeof *taps);
        char (*ids)[IPAM_ID_LEN + 1] = xreallocarray(NULL, N_PRESENT, sizeof *ids);
        for (unsigned i = 0; i < N_PRESENT; i++) {
                id_of(i, ids[i]);
                check(ipam_tap_name(ids[i], taps[i], &e), e, "tap name");
        }
        t0 = now_us();
        check(nft_sandbox_del_many(nf, (const char (*)[IPAM_ID_LEN + 1])ids, N_PRESENT, &e), e, "nft del many");
        double t1 = now_us();
        check(nl_tap_delete_many(nl, (const char (*)[IPAM_TAP_NAME_SIZE])taps, N_PRESENT, &e), e, "tap del many");
        double t2 = now_us();
        printf("gc removing %d strays: rules %.0f ms (one transaction), taps %.0f ms (one batch)\n", N_PRESENT,
               (t1 - t0) / 1e3, (t2 - t1) / 1e3);
        char (*left)[IPAM_TAP_NAME_SIZE] = NULL;
        char (*left_ids)[IPAM_ID_LEN + 1] = NULL;
        check(nl_tap_list(nl, &left, &n_taps, &e), e, "tap list");
        check(nft_list_ids(nf, &left_ids, &n_ids, &e), e, "list ids");
        printf("left after gc: %zu taps, %zu rule ids\n", n_taps, n_ids);
        free(left);
        free(left_ids);
        free(taps);
        free(ids);
        nft_conn_free(nf);
        nl_conn_free(nl);
        return 0;
}
