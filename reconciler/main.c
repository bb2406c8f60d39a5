/* bangerd: the daemon.  Wires paths, config, store, driver, control loop
 * and API together, then serves until SIGTERM/SIGINT.  Stopping bangerd
 * never stops VMs: a restarted bangerd adopts what is running. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "dns.h"
#include "driver.h"
#include "drivers.h"
#include "driver_firecracker.h"
#include "err.h"
#include "fault.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "paths.h"
#include "resolved.h"
#include "sshkey.h"
#include "store.h"
#include "util.h"
#include "version.h"
#include "workdisk.h"

static const char usage[] =
        "usage: bangerd [--root DIR] [--foreground] [--driver auto|qemu|firecracker|fake]\n"
        "               [--network] [--workers N] [--resync SECONDS] [--log-level LEVEL]\n"
        "\n"
        "The banger daemon: watches the sandboxes folder and converges every spec.\n"
        "  --root DIR        keep config, specs, state, cache and socket under DIR\n"
        "                    (also BANGER_ROOT)\n"
        "  --foreground      stay attached and log to stderr (default: detach, log to syslog)\n"
        "  --driver NAME     auto (default: Firecracker where usable, else QEMU), qemu,\n"
        "                    firecracker, or fake (the control loop alone, no guests)\n"
        "  --network         with --driver fake, also run the network (tests)\n"
        "  --workers N       sandboxes reconciled in parallel (default 4)\n"
        "  --resync SECONDS  full re-check and garbage collection period (default 10)\n"
        "  --log-level L     debug, info, warn or error (default from config, else info)\n";

struct opts {
        const char *root;
        bool foreground;
        const char *driver;
        bool network;      /* --network: the fake driver with the real network */
        int workers;
        double resync_s;
        const char *log_level;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
        static const struct option longopts[] = {
                { "root", required_argument, NULL, 'r' },
                { "foreground", no_argument, NULL, 'f' },
                { "driver", required_argument, NULL, 'd' },
                { "network", no_argument, NULL, 'n' },
                { "workers", required_argument, NULL, 'w' },
                { "resync", required_argument, NULL, 's' },
                { "log-level", required_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        *o = (struct opts){ .driver = "auto", .workers = 4, .resync_s = 10 };
        int c;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                char *end = NULL;
                switch (c) {
                case 'r': o->root = optarg; break;
                case 'f': o->foreground = true; break;
                case 'd': o->driver = optarg; break;
                case 'n': o->network = true; break;
                case 'w':
                        o->workers = (int)strtol(optarg, &end, 10);
                        if (!*optarg || *end || o->workers < 1 || o->workers > 64) {
                                fprintf(stderr, "bangerd: --workers wants 1..64\n");
                                return 2;
                        }
                        break;
                case 's':
                        o->resync_s = strtod(optarg, &end);
                        if (!*optarg || *end || o->resync_s < 0.05 || o->resync_s > 86400) {
                                fprintf(stderr, "bangerd: --resync wants seconds between 0.05 and 86400\n");
                                return 2;
                        }
                        break;
                case 'l': o->log_level = optarg; break;
                case 'h': fputs(usage, stdout); exit(0);
                case 'V': printf("bangerd %s\n", BANGER_VERSION); exit(0);
                default: fputs(usage, stderr); return 2;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "bangerd: unexpected argument '%s'\n%s", argv[optind], usage);
                return 2;
        }
        return 0;
}

/* The drivers this bangerd runs.  `auto` loads every real one it can:
 * QEMU when its binary is there, Firecracker when its binary and working
 * KVM are; a sandbox then picks by its spec (drivers.h). */
static int make_drivers(const char *name, const struct driver_env *env, struct drivers *ds, struct bg_err **err)
{
        memset(ds, 0, sizeof *ds);
        if (strcmp(name, "fake") == 0) {
                if (fault_configure(getenv("BANGER_FAULTS"), err) < 0)
                        return bg_error_wrap(err, "BANGER_FAULTS");
                ds->forced = true;
                if (driver_fake_new(env->state_dir, env->run_dir, &ds->v[0], err) < 0)
                        return -EIO;
                ds->n = 1;
                snprintf(ds->why_not_firecracker, sizeof ds->why_not_firecracker, "the fake driver is in use");
                return 0;
        }
        bool want_qemu = strcmp(name, "qemu") == 0, want_fc = strcmp(name, "firecracker") == 0;
        bool any = strcmp(name, "auto") == 0;
        if (!want_qemu && !want_fc && !any)
                return bg_error(err, EINVAL, "unknown driver '%s' (want auto, qemu, firecracker or fake)", name);
        ds->forced = !any;
        ds->firecracker_usable = firecracker_usable(env, ds->why_not_firecracker, sizeof ds->why_not_firecracker);
        if (want_fc || (any && ds->firecracker_usable)) {
                if (want_fc && !ds->firecracker_usable)
                        log_warn("firecracker is not usable here: %s", ds->why_not_firecracker);
                if (driver_firecracker_new(env, &ds->v[ds->n], err) < 0)
                        return -EIO;
                ds->n++;
        }
        if (want_qemu || any) {
                struct bg_err *qerr = NULL;
                if (driver_qemu_new(env, &ds->v[ds->n], &qerr) == 0) {
                        ds->n++;
                } else if (want_qemu || ds->n == 0) {
                        *err = qerr;
                        return -ENOENT;
                } else {
                        log_warn("qemu driver not loaded: %s", bg_err_msg(qerr));
                        bg_err_free(qerr);
                }
        }
        return 0;
}

/* Answer NAME.vm on the bridge address (threads: after daemon()).  A DNS
 * that cannot start is worth a warning, not a dead daemon.  The host's
 * resolver is pointed at it only for the installed daemon: a --root one
 * (tests, experiments) never touches the host's resolved. */
static struct dns_server *start_dns(struct net *net, struct loop *loop, bool route)
{
        char gw[IPAM_ADDR_SIZE];
        struct bg_err *err = NULL;
        struct dns_server *dns = NULL;
        const struct ipam_subnet *s = net_subnet(net);
        struct dns_config dc = { .lookup = loop_dns_lookup, .reverse = loop_dns_reverse, .arg = loop,
                                 .subnet = s->net, .prefix = s->prefix };
        net_gateway(net, gw);
        if (dns_start(gw, 53, &dc, &dns, &err) < 0) {
                log_warn("dns not started on %s:53: %s", gw, bg_err_msg(err));
                bg_err_free(err);
                return NULL;
        }
        log_info("dns listening addr=%s port=53", gw);
        loop_set_dns(loop, dns);
        if (route && resolved_route(net_bridge(net), gw, &err) < 0)
                log_warn("resolved: %s", bg_err_msg(err));
        bg_err_free(err);
        return dns;
}

/* One bangerd per state folder: a second one would fight the first. */
static int lock_state(const char *state_dir, int *fd, struct bg_err **err)
{
        _cleanup_free_ char *path = xasprintf("%s/bangerd.lock", state_dir);
        int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (f < 0)
                return bg_error(err, errno, "open '%s': %s", path, strerror(errno));
        if (flock(f, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;
                close(f);
                if (e == EWOULDBLOCK)
                        return bg_error(err, e, "another bangerd is using %s", state_dir);
                return bg_error(err, e, "lock '%s': %s", path, strerror(e));
        }
        *fd = f;
        return 0;
}

/* banger's user key (*path, heap): made under ssh_dir when absent, so
 * every guest's authorized_keys can name it; a configured ssh_key_path is
 * only read, with "~/" in the sandboxes folder owner's home, as the CLI
 * and file_sync expand it.  Fails only for a configured path that cannot
 * be resolved. */
static int user_key(const struct bg_config *cfg, const char *ssh_dir, const char *home, char **path,
                    struct bg_err **err)
{
        if (sshkey_user_key_path(cfg->ssh_key_path, home, ssh_dir, path, err) < 0)
                return -1;
        if (cfg->ssh_key_path && *cfg->ssh_key_path) {
                char *line = NULL;
                struct bg_err *e = NULL;
                if (sshkey_read_public(*path, &line, &e) < 0)
                        log_warn("ssh_key_path %s: %s (sandboxes cannot be prepared until it can be read)", *path,
                                 bg_err_msg(e));
                bg_err_free(e);
                free(line);
                return 0;
        }
        /* A key banger cannot make or complete (a public key put there
         * alone, a folder it may not write) only warns: guests still get
         * whatever public key is there, and nothing is replaced. */
        bool created = false;
        struct bg_err *e = NULL;
        if (sshkey_ensure_user_key(*path, &created, &e) < 0)
                log_warn("user key: %s", bg_err_msg(e));
        else if (created)
                log_info("made user key %s", *path);
        bg_err_free(e);
        return 0;
}

int main(int argc, char **argv)
{
        workdisk_branch_main(argc, argv);   /* a --branch helper run: never returns */
        struct opts o;
        int rc = parse_opts(argc, argv, &o);
        if (rc)
                return rc;

        struct bg_err *err = NULL;
        struct bg_paths paths;
        struct bg_config cfg = { 0 };
        struct store *store = NULL;
        struct drivers drivers = { 0 };
        struct hub *hub = NULL;
        struct loop *loop = NULL;
        struct api *api = NULL;
        struct net *net = NULL;
        struct dns_server *dns = NULL;
        int lock_fd = -1, sig_fd = -1;
        _cleanup_free_ char *db = NULL;
        _cleanup_free_ char *owner_home = NULL;
        _cleanup_free_ char *user_key_path = NULL;
        rc = 1;

        if (paths_init(&paths, o.root, &err) < 0)
                goto out;
        if (mkdir_p(paths.state_dir, 0700, &err) < 0 || mkdir_p(paths.run_dir, 0755, &err) < 0 ||
            mkdir_p(paths.cache_dir, 0700, &err) < 0 || mkdir_p(paths.sandboxes_dir, 0755, &err) < 0)
                goto out;
        if (config_load(paths.config_file, &cfg, &err) < 0)
                goto out;
        const char *lvl = o.log_level ? o.log_level : cfg.log_level;
        if (lvl) {
                int l = log_level_parse(lvl);
                if (l < 0) {
                        bg_error(&err, EINVAL, "unknown log level '%s'", lvl);
                        goto out;
                }
                log_threshold = (enum log_level)l;
        }
        if (lock_state(paths.state_dir, &lock_fd, &err) < 0)
                goto out;
        /* workspace and file_sync read the sandboxes folder owner's files
         * with that owner's rights (workdisk.h). */
        struct stat folder;
        if (stat(paths.sandboxes_dir, &folder) < 0) {
                bg_error(&err, errno, "%s: %s", paths.sandboxes_dir, strerror(errno));
                goto out;
        }
        owner_home = paths_owner_home(&paths, folder.st_uid);
        struct workdisk_owner owner = { folder.st_uid, folder.st_gid, owner_home };
        if (user_key(&cfg, paths.ssh_dir, owner_home, &user_key_path, &err) < 0)
                goto out;
        struct driver_env env = {
                .state_dir = paths.state_dir,
                .run_dir = paths.run_dir,
                .cache_dir = paths.cache_dir,
                .user_key = user_key_path,
                .cfg = &cfg,
                .owner = &owner,
        };
        if (make_drivers(o.driver, &env, &drivers, &err) < 0)
                goto out;
        /* Real guests get banger's bridge; the fake driver's tests stay
         * network-free unless --network asks for it (crash injection
         * around the network steps).  A bad subnet or a foreign link named
         * like the bridge stops bangerd here, before anything is changed. */
        if ((strcmp(o.driver, "fake") != 0 || o.network) && net_open(&cfg, &net, &err) < 0)
                goto out;
        db = xasprintf("%s/db", paths.state_dir);
        if (store_open(db, &store, &err) < 0)
                goto out;

        struct store_txn *t = NULL;
        uint64_t last_seq = 0;
        if (store_txn_begin(store, false, &t, &err) < 0)
                goto out;
        store_event_last_seq(t, &last_seq, NULL);
        store_txn_abort(t);
        hub = hub_new(last_seq);

        /* Signals are read from a signalfd by the main loop; block them
         * before any thread starts so every thread inherits the mask. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sig_fd < 0) {
                bg_error(&err, errno, "signalfd: %s", strerror(errno));
                goto out;
        }

        struct loop_config lc = {
                .sandboxes_dir = paths.sandboxes_dir,
                .cfg = &cfg,
                .store = store,
                .drivers = &drivers,
                .hub = hub,
                .net = net,
                .workers = o.workers,
                .resync_ms = (int)(o.resync_s * 1000),
                .state_dir = paths.state_dir,
                .ssh_dir = paths.ssh_dir,
                .run_dir = paths.run_dir,
        };
        if (loop_new(&lc, &loop, &err) < 0)
                goto out;
        struct api_source src = {
                .arg = loop,
                .list_names = loop_list_names,
                .console_path = loop_console_path,
                .kill = loop_kill,
                .start = loop_start_sandbox,
                .doctor = loop_doctor,
                .get_sandbox = loop_get_sandbox,
                .agent_ready = loop_agent_ready,
                .agent_stats = loop_agent_stats,
                .agent_exec = loop_agent_exec,
                .store = store,
                .hub = hub,
                .driver = o.driver,
        };
        /* Detach before the API starts its threads: fork keeps only one. */
        if (!o.foreground) {
                if (daemon(1, 0) < 0) {
                        bg_error(&err, errno, "daemon: %s", strerror(errno));
                        goto out;
                }
                log_use_syslog("bangerd");
        }
        if (net)
                dns = start_dns(net, loop, !o.root);
        if (api_start(paths.socket, &src, &api, &err) < 0)
                goto out;
        log_info("bangerd %s started root=%s driver=%s socket=%s", BANGER_VERSION,
                 paths.root ? paths.root : "(installed)", o.driver, paths.socket);
        if (loop_start(loop, &err) < 0)
                goto out;
        if (loop_run(loop, sig_fd, &err) < 0)
                goto out;
        log_info("bangerd stopping; vms keep running");
        rc = 0;
out:
        if (err) {
                fprintf(stderr, "bangerd: %s\n", bg_err_msg(err));
                bg_err_free(err);
        }
        if (hub)
                hub_close(hub);
        if (api)
                api_stop(api);
        dns_stop(dns);
        loop_free(loop);
        net_free(net);
        hub_free(hub);
        store_close(store);
        drivers_release(&drivers);
        config_release(&cfg);
        paths_release(&paths);
        if (sig_fd >= 0)
                close(sig_fd);
        if (lock_fd >= 0)
                close(lock_fd);
        return rc;
}
