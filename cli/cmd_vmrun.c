/* banger vm run / vm create / vm ssh: the everyday path.
 *
 * vm run writes a spec file like `apply` does (so the sandbox is as
 * declarative as any other: the file is the truth, the daemon converges),
 * waits until it is Running, waits for its SSH server (the host key
 * checked against the pin banger wrote before first boot), then opens a
 * shell or runs a command.  Four shapes:
 *
 *   vm run                       bare: an interactive shell
 *   vm run ./repo                the repo copied to /root/repo, then a shell there
 *   vm run ./repo -- make test   the command runs there; its exit status is ours
 *   vm run --rm ...              the sandbox is deleted when the session ends
 *
 * --rm keeps the sandbox when the first SSH wait times out, so `vm logs`
 * can show why.  Any other failure before the session (a bad image, a
 * workspace the daemon cannot copy) deletes what vm run created: nothing
 * is left behind that the user did not ask for.
 *
 * Progress goes to stderr, so in command mode stdout carries exactly the
 * command's output. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "config.h"
#include "err.h"
#include "folder.h"
#include "sandbox.h"
#include "spec.h"
#include "sshconfig.h"
#include "sshexec.h"
#include "sshkey.h"
#include "util.h"
#include "vmdefaults.h"
#include "wait.h"
#include "workspace.h"

#define RUN_DEFAULT_SSH_TIMEOUT 120

struct run_opts {
        bool create_only;          /* vm create */
        const char *name, *image, *kernel, *branch, *from;
        unsigned vcpu, memory_mib;
        uint64_t disk_size;
        bool nat, include_untracked, dry_run, rm;
        int timeout;               /* until Running, seconds */
        int ssh_timeout;           /* until SSH answers, seconds */
        const char *path;          /* workspace, or NULL */
        char **cmd;                /* after "--", or NULL */
        int n_cmd;
};

/* Phase times for `BANGER_TIMING=1` (bench/vmrun_bench.py). */
static int64_t t_start;
static void timing(const char *phase)
{
        static char line[512];
        const char *on = getenv("BANGER_TIMING");
        if (!on || strcmp(on, "1") != 0)
                return;
        size_t l = strlen(line);
        snprintf(line + l, sizeof line - l, "%s%s=%lld", l ? " " : "", phase,
                 (long long)(now_mono_ms() - t_start));
        if (strcmp(phase, "end") == 0)
                fprintf(stderr, "timing: %s\n", line);
}

static int parse_size_mib(const char *s, unsigned *mib)
{
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (*s >= '0' && *s <= '9' && end && !*end && !errno && v <= SPEC_MEMORY_MIB_MAX) {
                *mib = (unsigned)v;
                return 0;
        }
        uint64_t bytes;
        if (spec_size_parse(s, &bytes) < 0 || bytes % (1u << 20) || bytes / (1u << 20) > SPEC_MEMORY_MIB_MAX)
                return -1;
        *mib = (unsigned)(bytes >> 20);
        return 0;
}

static int parse_run_opts(struct cli *cli, int argc, char **argv, struct run_opts *o)
{
        enum { O_NAME = 256, O_IMAGE, O_KERNEL, O_VCPU, O_MEMORY, O_DISK, O_NAT, O_UNTRACKED, O_DRY, O_BRANCH,
               O_FROM, O_RM, O_TIMEOUT, O_SSH_TIMEOUT };
        static const struct option opts[] = {
                { "name", required_argument, NULL, O_NAME },
                { "image", required_argument, NULL, O_IMAGE },
                { "kernel", required_argument, NULL, O_KERNEL },
                { "vcpu", required_argument, NULL, O_VCPU },
                { "memory", required_argument, NULL, O_MEMORY },
                { "disk-size", required_argument, NULL, O_DISK },
                { "nat", no_argument, NULL, O_NAT },
                { "include-untracked", no_argument, NULL, O_UNTRACKED },
                { "dry-run", no_argument, NULL, O_DRY },
                { "branch", required_argument, NULL, O_BRANCH },
                { "from", required_argument, NULL, O_FROM },
                { "rm", no_argument, NULL, O_RM },
                { "timeout", required_argument, NULL, O_TIMEOUT },
                { "ssh-timeout", required_argument, NULL, O_SSH_TIMEOUT },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        o->timeout = CLI_DEFAULT_TIMEOUT;
        o->ssh_timeout = RUN_DEFAULT_SSH_TIMEOUT;
        /* "--" ends our options; what follows is the guest command. */
        int split = argc;
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--") == 0) {
                        split = i;
                        break;
                }
        int c;
        char *end;
        while ((c = getopt_long(split, argv, "+h", opts, NULL)) != -1) {
                switch (c) {
                case O_NAME: o->name = optarg; break;
                case O_IMAGE: o->image = optarg; break;
                case O_KERNEL: o->kernel = optarg; break;
                case O_VCPU:
                        errno = 0;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (errno || *end || v < SPEC_VCPU_MIN || v > SPEC_VCPU_MAX)
                                return cli_usage_error(cli, "--vcpu wants %d..%d, not '%s'", SPEC_VCPU_MIN,
                                                       SPEC_VCPU_MAX, optarg);
                        o->vcpu = (unsigned)v;
                        break;
                case O_MEMORY:
                        if (parse_size_mib(optarg, &o->memory_mib) < 0 || o->memory_mib < SPEC_MEMORY_MIB_MIN)
                                return cli_usage_error(cli, "--memory wants MiB (%d..%d) or a size like 2G, not '%s'",
                                                       SPEC_MEMORY_MIB_MIN, SPEC_MEMORY_MIB_MAX, optarg);
                        break;
                case O_DISK:
                        if (spec_size_parse(optarg, &o->disk_size) < 0)
                                return cli_usage_error(cli, "--disk-size wants a size like 8G or 512M, not '%s'",
                                                       optarg);
                        break;
                case O_NAT: o->nat = true; break;
                case O_UNTRACKED: o->include_untracked = true; break;
                case O_DRY: o->dry_run = true; break;
                case O_BRANCH: o->branch = optarg; break;
                case O_FROM: o->from = optarg; break;
                case O_RM: o->rm = true; break;
                case O_TIMEOUT:
                case O_SSH_TIMEOUT: {
                        int t = cli_parse_timeout(optarg);
                        if (t < 0)
                                return cli_usage_error(cli, "--%s wants whole seconds (1-86400), not '%s'",
                                                       c == O_TIMEOUT ? "timeout" : "ssh-timeout", optarg);
                        *(c == O_TIMEOUT ? &o->timeout : &o->ssh_timeout) = t;
                        break;
                }
                case 'h': cli_help(cli); return -1;
                default: return cli_usage_error(cli, NULL);
                }
        }
        if (optind < split)
                o->path = argv[optind++];
        if (optind < split)
                return cli_usage_error(cli, "one PATH at most; put the guest command after --");
        if (split < argc) {
                o->cmd = argv + split + 1;
                o->n_cmd = argc - split - 1;
                if (o->n_cmd == 0)
                        return cli_usage_error(cli, "nothing after --");
        }
        if ((o->branch || o->from) && !o->path)
                return cli_usage_error(cli, "--branch and --from apply only to workspace mode (give a PATH)");
        if (o->from && !o->branch)
                return cli_usage_error(cli, "--from needs --branch");
        if (o->include_untracked && !o->path)
                return cli_usage_error(cli, "--include-untracked applies only to workspace mode (give a PATH)");
        if (o->create_only && (o->rm || o->cmd))
                return cli_usage_error(cli, "vm create does not connect: no --rm, no command");
        if (o->name && !spec_name_valid(o->name))
                return cli_usage_error(cli, "invalid sandbox name '%s' (lowercase letters, digits and '-', 1-63)",
                                       o->name);
        return 0;
}

/* "<repo>-a1b2" or "sandbox-a1b2": a valid label from the workspace name. */
static char *generate_name(const char *base)
{
        char label[48];
        size_t n = 0;
        for (const char *p = base ? base : "sandbox"; *p && n < sizeof label - 1; p++) {
                char ch = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
                bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
                if (ok || (n && label[n - 1] != '-'))
                        label[n++] = ok ? ch : '-';
        }
        while (n && label[n - 1] == '-')
                n--;
        label[n] = '\0';
        unsigned char r[2] = { 0 };
        if (getrandom(r, sizeof r, 0) != sizeof r)
                r[0] = (unsigned char)getpid(), r[1] = (unsigned char)(getpid() >> 8);
        return xasprintf("%s-%02x%02x", n ? label : "sandbox", r[0], r[1]);
}

static struct bg_spec *build_spec(const struct run_opts *o, const char *name, const struct ws_list *ws)
{
        struct bg_spec *s = xcalloc(1, sizeof *s);
        s->name = xstrdup(name);
        s->kernel = xstrdup(o->kernel ? o->kernel : "default");
        s->image = o->image ? xstrdup(o->image) : NULL;
        s->vcpu = o->vcpu;
        s->memory_mib = o->memory_mib;
        s->disk_size = o->disk_size;
        s->nat = o->nat;
        if (ws) {
                s->workspace = xcalloc(1, sizeof *s->workspace);
                s->workspace->path = xstrdup(ws->workdir);
                s->workspace->branch = o->branch ? xstrdup(o->branch) : NULL;
                s->workspace->from = o->from ? xstrdup(o->from) : NULL;
                s->workspace->include_untracked = o->include_untracked;
        }
        return s;
}

static const char *prov_word(const char *p)
{
        return strcmp(p, "spec") == 0 ? "flag" : p;
}

/* "spec: 2 vCPU (host), 2048 MiB RAM (host), 8G disk (host), image tiny (config)" */
static void print_spec_line(const struct bg_spec *resolved, const struct vm_provenance *p)
{
        char disk[32];
        spec_size_format(resolved->disk_size, disk, sizeof disk);
        fprintf(stderr, "spec: %u vCPU (%s), %u MiB RAM (%s), %s disk (%s), image %s (%s), kernel %s\n",
                resolved->vcpu, prov_word(p->vcpu), resolved->memory_mib, prov_word(p->memory_mib), disk,
                prov_word(p->disk_size), resolved->image, prov_word(p->image), resolved->kernel);
}

static void print_dry_run(const struct ws_list *ws)
{
        for (size_t i = 0; i < ws->n; i++)
                printf("%s%s\n", ws->files[i].path, ws->files[i].untracked ? "\t(untracked)" : "");
        fflush(stdout);
        fprintf(stderr, "workspace %s -> /root/%s: %zu files, %llu bytes, plus .git (%llu bytes); nothing created\n",
                ws->workdir, ws->name, ws->n, (unsigned long long)ws->bytes, (unsigned long long)ws->git_bytes);
}

static bool has_tooling_file(const struct ws_list *ws)
{
        for (size_t i = 0; i < ws->n; i++)
                if (strcmp(ws->files[i].path, ".mise.toml") == 0 || strcmp(ws->files[i].path, ".tool-versions") == 0)
                        return true;
        return false;
}

/* Everything vm run and vm create share up to a Running sandbox. */
struct created {
        char *name;
        char *ip;
        struct ws_list ws;
        bool has_ws;
        struct bg_config cfg;
};

static void created_release(struct created *c)
{
        free(c->name);
        free(c->ip);
        if (c->has_ws)
                ws_list_release(&c->ws);
        config_release(&c->cfg);
}

static void on_interrupt(int sig)
{
        (void)sig;
        sshx_interrupted = 1;
}

/* ^C while waiting for SSH or during a command ends them, not banger:
 * --rm still has a sandbox to delete.  No SA_RESTART, so poll() wakes. */
static void catch_interrupts(void)
{
        struct sigaction sa = { .sa_handler = on_interrupt };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
}

/* Remove what vm run wrote after a failure, saying so. */
static void undo_create(struct cli *cli, const char *name)
{
        const char *names[] = { name };
        sshx_interrupted = 0;   /* a ^C that got us here must not cut the clean-up short */
        fprintf(stderr, "banger: removing sandbox/%s\n", name);
        cli_delete_names(cli, names, 1, true, CLI_DEFAULT_TIMEOUT, stderr);
}

/* Returns EXIT_OK with c filled and the sandbox Running, or an exit code
 * (a dry run ends here with EXIT_OK and c->name NULL). */
static int create_sandbox(struct cli *cli, const struct run_opts *o, struct created *c)
{
        struct bg_err *err = NULL;
        struct folder f = { 0 };
        struct client *cl = NULL;
        struct bg_spec *spec = NULL, *resolved = NULL;
        char *yaml = NULL, *body = NULL;
        int rc = EXIT_ERR;
        if (config_load(cli->paths.config_file, &c->cfg, &err) < 0)
                goto fail;
        if (o->path) {
                if (cli_full.workspace_list(o->path, o->include_untracked, &c->ws, &err) < 0)
                        goto fail;
                c->has_ws = true;
        }
        c->name = o->name ? xstrdup(o->name) : generate_name(c->has_ws ? c->ws.name : NULL);
        spec = build_spec(o, c->name, c->has_ws ? &c->ws : NULL);
        resolved = spec_dup(spec);
        struct vm_provenance prov;
        vmdefaults_resolve(&c->cfg, resolved, &prov);
        print_spec_line(resolved, &prov);
        if (c->has_ws && c->ws.bytes + c->ws.git_bytes > resolved->disk_size) {
                char disk[32];
                spec_size_format(resolved->disk_size, disk, sizeof disk);
                bg_error(&err, EFBIG, "workspace %s holds %llu MiB (with .git), more than the %s disk; use --disk-size",
                         c->ws.workdir, (unsigned long long)((c->ws.bytes + c->ws.git_bytes) >> 20), disk);
                goto fail;
        }
        if (o->dry_run) {
                if (c->has_ws)
                        print_dry_run(&c->ws);
                else
                        fprintf(stderr, "no workspace; nothing created\n");
                free(c->name);
                c->name = NULL;
                rc = EXIT_OK;
                goto out;
        }
        /* Never take over an existing sandbox: `vm run` makes a new one. */
        cl = client_new(cli->paths.socket);
        json_t *existing = NULL;
        if (client_get_sandbox(cl, c->name, &existing, &err) < 0)
                goto fail;
        if (existing) {
                json_decref(existing);
                bg_error(&err, EEXIST, "sandbox/%s already exists: `banger vm ssh %s`, or pick another --name", c->name,
                         c->name);
                goto fail;
        }
        if (folder_load(&f, cli->paths.sandboxes_dir, &err) < 0 || folder_check_put(&f, c->name, NULL, &err) < 0)
                goto fail;
        char when[32];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        body = spec_to_yaml(spec);
        yaml = xasprintf("# written by `banger vm %s` at %s\n%s", o->create_only ? "create" : "run", when, body);
        bool changed = false;
        /* From here on there is a sandbox to remove if the user gives up. */
        catch_interrupts();
        if (folder_put(&f, c->name, yaml, &changed, &err) < 0)
                goto fail;
        timing("spec-written");
        fprintf(stderr, "sandbox/%s created\n", c->name);
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)spec_hash(spec));
        struct wait_target t = { .name = c->name, .hash = hash };
        int w = wait_converged(cl, &t, 1, o->timeout);
        const char *ip = sbx_str(t.last, "status.ip");
        c->ip = ip ? xstrdup(ip) : NULL;
        wait_targets_release(&t, 1);
        if (w != EXIT_OK) {
                undo_create(cli, c->name);
                rc = w == EXIT_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERR;
                goto out;
        }
        timing("running");
        if (!c->ip) {
                cli_error("sandbox/%s is Running but has no address to connect to (bangerd --driver fake?)",
                          c->name);
                undo_create(cli, c->name);
                goto out;
        }
        rc = EXIT_OK;
        goto out;
fail:
        cli_error("%s", bg_err_msg(err));
        bg_err_free(err);
out:
        free(yaml);
        free(body);
        spec_free(spec);
        spec_free(resolved);
        folder_release(&f);
        client_free(cl);
        return rc;
}

static int ssh_target_for(struct cli *cli, const struct bg_config *cfg, const char *name, const char *ip,
                          struct ssh_target *t, char **key, char **kh)
{
        struct bg_err *err = NULL;
        _cleanup_free_ char *home = sshconfig_home(&cli->paths);
        if (sshkey_user_key_path(cfg->ssh_key_path, home, cli->paths.ssh_dir, key, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return -1;
        }
        if (access(*key, R_OK) < 0) {
                cli_error("banger's SSH key %s: %s (bangerd makes it when it starts)", *key, strerror(errno));
                free(*key);
                *key = NULL;
                return -1;
        }
        *kh = xasprintf("%s/known_hosts", cli->paths.ssh_dir);
        *t = (struct ssh_target){ .name = name, .ip = ip, .port = 22, .known_hosts = *kh, .key = *key };
        return 0;
}

/* Best effort, like the original: tooling problems never fail the run. */
static void run_tooling(struct sshx *s, const struct ws_list *ws)
{
        _cleanup_free_ char *log = xasprintf("/root/.cache/banger/vm-run-tooling-%s.log", ws->name);
        _cleanup_free_ char *qname = sshx_quote(ws->name);
        _cleanup_free_ char *qlog = sshx_quote(log);
        _cleanup_free_ char *cmd = xasprintf(
                "mkdir -p /root/.cache/banger && cd /root/%s && "
                "{ if command -v mise >/dev/null 2>&1; then mise trust --yes . && mise install; "
                "else echo 'mise is not installed in this image; skipped'; fi; } >%s 2>&1",
                qname, qlog);
        fprintf(stderr, "tooling: mise install (log: %s)\n", log);
        struct bg_err *err = NULL;
        int status = 0;
        if (sshx_exec(s, cmd, -1, STDERR_FILENO, STDERR_FILENO, &status, &err) < 0) {
                fprintf(stderr, "banger: tooling: %s\n", bg_err_msg(err));
                bg_err_free(err);
        } else if (status) {
                fprintf(stderr, "banger: tooling: mise exited %d; see %s in the guest\n", status, log);
        }
}

/* Interactive: OpenSSH owns the terminal.  Without --rm banger is done,
 * so ssh replaces it; with --rm we wait and delete after. */
static int interactive(const struct ssh_target *t, const struct created *c, bool rm)
{
        _cleanup_free_ char *remote = NULL;
        if (c->has_ws) {
                _cleanup_free_ char *q = sshx_quote(c->ws.name);
                remote = xasprintf("cd /root/%s && exec \"${SHELL:-/bin/sh}\" -l", q);
        }
        char **argv = sshx_openssh_argv(t, isatty(STDIN_FILENO), remote);
        fflush(NULL);
        if (!rm) {
                execvp(argv[0], argv);
                cli_error("cannot run ssh: %s (install openssh-client)", strerror(errno));
                strv_free(argv);
                return EXIT_ERR;
        }
        pid_t pid = fork();
        if (pid == 0) {
                signal(SIGINT, SIG_DFL);
                execvp(argv[0], argv);
                fprintf(stderr, "banger: cannot run ssh: %s (install openssh-client)\n", strerror(errno));
                _exit(127);
        }
        strv_free(argv);
        if (pid < 0) {
                cli_error("fork: %s", strerror(errno));
                return EXIT_ERR;
        }
        /* The session's ^C belongs to the guest, and we must still delete. */
        void (*old)(int) = signal(SIGINT, SIG_IGN);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        signal(SIGINT, old);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The session's exit status; *keep says --rm must not delete (the first
 * SSH wait timed out: the console may tell why). */
static int run_session(struct cli *cli, const struct run_opts *o, struct created *c, bool *keep)
{
        _cleanup_free_ char *key = NULL, *kh = NULL;
        struct ssh_target t;
        struct bg_err *err = NULL;
        struct sshx *s = NULL;
        if (ssh_target_for(cli, &c->cfg, c->name, c->ip, &t, &key, &kh) < 0)
                return EXIT_ERR;
        fprintf(stderr, "waiting for SSH on %s (%s)\n", c->name, c->ip);
        int r = sshx_wait(&t, o->ssh_timeout * 1000, &s, &err);
        if (r < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                if (r == -ETIMEDOUT) {
                        fprintf(stderr, "banger: sandbox/%s kept for inspection: banger vm logs %s\n", c->name,
                                c->name);
                        *keep = true;
                }
                return r == -EINTR ? EXIT_INTERRUPTED : EXIT_ERR;
        }
        timing("ssh-ready");
        if (c->has_ws && has_tooling_file(&c->ws))
                run_tooling(s, &c->ws);
        int status;
        if (!o->cmd) {
                sshx_close(s);
                status = interactive(&t, c, o->rm);
        } else {
                _cleanup_free_ char *line = sshx_quote_argv(o->cmd, o->n_cmd);
                _cleanup_free_ char *qname = c->has_ws ? sshx_quote(c->ws.name) : NULL;
                _cleanup_free_ char *cmd = qname ? xasprintf("cd /root/%s && %s", qname, line) : xstrdup(line);
                int r2 = sshx_exec(s, cmd, STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, &status, &err);
                if (r2 < 0) {
                        cli_error("%s", bg_err_msg(err));
                        bg_err_free(err);
                        /* 130 as a shell reports ^C; 255 as ssh(1) reports a broken connection */
                        status = r2 == -EINTR ? EXIT_INTERRUPTED : 255;
                }
                sshx_close(s);
        }
        timing("command-done");
        return status;
}

static int run_or_create(struct cli *cli, int argc, char **argv, bool create_only)
{
        t_start = now_mono_ms();
        struct run_opts o = { .create_only = create_only };
        int rc = parse_run_opts(cli, argc, argv, &o);
        if (rc)
                return rc < 0 ? EXIT_OK : rc;
        if (o.path && !cli_full.workspace_list)
                return cli_exec_full(cli);   /* a workspace needs libgit2 */
        struct created c = { 0 };
        rc = create_sandbox(cli, &o, &c);
        if (rc != EXIT_OK || !c.name) {
                created_release(&c);
                return rc;
        }
        if (create_only) {
                printf("%s\t%s\n", c.name, c.ip);
                created_release(&c);
                return EXIT_OK;
        }
        bool keep = false;
        int status = run_session(cli, &o, &c, &keep);
        if (o.rm && !keep) {
                const char *names[] = { c.name };
                sshx_interrupted = 0;   /* the ^C was the session's: the deletion still waits */
                fflush(stdout);
                if (cli_delete_names(cli, names, 1, true, CLI_DEFAULT_TIMEOUT, stderr) != EXIT_OK && status == 0)
                        status = EXIT_ERR;
                timing("deleted");
        }
        timing("end");
        created_release(&c);
        return status;
}

int vm_run(struct cli *cli, int argc, char **argv)
{
        return run_or_create(cli, argc, argv, false);
}

int vm_create(struct cli *cli, int argc, char **argv)
{
        return run_or_create(cli, argc, argv, true);
}

/* vm ssh NAME [-- cmd...]: OpenSSH with banger's key and pins. */
int vm_ssh(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
        int split = argc;
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--") == 0) {
                        split = i;
                        break;
                }
        int ch;
        while ((ch = getopt_long(split, argv, "+h", opts, NULL)) != -1)
                if (ch == 'h')
                        return cli_help(cli);
                else
                        return cli_usage_error(cli, NULL);
        if (optind + 1 != split)
                return cli_usage_error(cli, "vm ssh wants one sandbox name");
        const char *name = argv[optind];
        if (!spec_name_valid(name))
                return cli_usage_error(cli, "invalid sandbox name '%s'", name);
        struct bg_err *err = NULL;
        struct client *cl = client_new(cli->paths.socket);
        json_t *obj = NULL;
        int r = client_get_sandbox(cl, name, &obj, &err);
        client_free(cl);
        if (r < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return EXIT_ERR;
        }
        if (!obj) {
                cli_error("sandbox \"%s\" not found", name);
                return EXIT_ERR;
        }
        const char *phase = sbx_str(obj, "status.phase");
        const char *ip = sbx_str(obj, "status.ip");
        if (!phase || strcmp(phase, "Running") != 0 || !ip) {
                cli_error("sandbox/%s is %s, not Running%s", name, phase ? phase : "unknown",
                          phase && strcmp(phase, "Stopped") == 0 ? ": banger vm start first" : "");
                json_decref(obj);
                return EXIT_ERR;
        }
        struct bg_config cfg;
        if (config_load(cli->paths.config_file, &cfg, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                json_decref(obj);
                return EXIT_ERR;
        }
        _cleanup_free_ char *key = NULL, *kh = NULL, *ipc = xstrdup(ip);
        json_decref(obj);
        struct ssh_target t;
        int rc = ssh_target_for(cli, &cfg, name, ipc, &t, &key, &kh);
        config_release(&cfg);
        if (rc < 0)
                return EXIT_ERR;
        _cleanup_free_ char *remote = split < argc ? sshx_quote_argv(argv + split + 1, argc - split - 1) : NULL;
        if (remote && !*remote)
                return cli_usage_error(cli, "nothing after --");
        char **v = sshx_openssh_argv(&t, !remote && isatty(STDIN_FILENO), remote);
        fflush(NULL);
        execvp(v[0], v);
        cli_error("cannot run ssh: %s (install openssh-client)", strerror(errno));
        strv_free(v);
        return EXIT_ERR;
}
