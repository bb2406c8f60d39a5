/* banger vm: one sandbox at a time, the way a user thinks of a VM.
 *
 *   vm logs NAME [-f]   its serial console, from the daemon
 *   vm stop NAME        set spec.state: stopped in its spec file, wait
 *   vm start NAME       set spec.state: running in its spec file, wait
 *   vm kill NAME        stop it now: state: stopped, then a hard kill
 *   vm delete NAME...   what `banger delete` does
 *
 * stop and start edit the spec file (keeping its comments), so the file
 * stays the truth and the daemon does the rest. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "folder.h"
#include "sandbox.h"
#include "spec.h"
#include "specedit.h"
#include "util.h"
#include "wait.h"

const char vm_usage[] =
        "vm run [--name N] [--image I] [--kernel K] [--vcpu N] [--memory M] [--disk-size S] [--nat]\n"
        "              [--rm] [--include-untracked] [--branch B [--from REF]] [--dry-run] [PATH] [-- CMD...]\n"
        "       banger vm create [same flags as run, without --rm and CMD] [PATH]\n"
        "       banger vm ssh NAME [-- CMD...]\n"
        "       banger vm exec NAME [-t] [-e K=V] [-w DIR] -- CMD...\n"
        "       banger vm stats NAME [-o json]\n"
        "       banger vm logs NAME [-f]\n"
        "       banger vm stop NAME [--no-wait] [--timeout S]\n"
        "       banger vm start NAME [--no-wait] [--timeout S]\n"
        "       banger vm kill NAME\n"
        "       banger vm delete NAME... [--no-wait] [--timeout S]";
const char vm_summary[] = "run a sandbox and SSH into it; logs, stop, start, kill, delete";
const char vm_options[] =
        "  run [PATH] [-- CMD...]     write a spec, wait until Running and SSH is up, then open a\n"
        "                             shell (or run CMD: its exit status is banger's).  PATH: a git\n"
        "                             working tree copied to /root/<name> (tracked files + .git)\n"
        "      --name NAME            sandbox name (default: <repo>-XXXX or sandbox-XXXX)\n"
        "      --image I / --kernel K image and kernel (default: config default_image, \"default\")\n"
        "      --vcpu N / --memory M / --disk-size S   sizes (default: config vm_defaults, host)\n"
        "      --nat                  outbound network through the host\n"
        "      --rm                   delete the sandbox when the session or command ends\n"
        "      --include-untracked    also copy untracked files git does not ignore\n"
        "      --branch B [--from R]  create and check out branch B (from R, default HEAD) in the copy\n"
        "      --dry-run              print the spec line and the workspace's files; create nothing\n"
        "      --timeout S            wait for Running (default 120); --ssh-timeout S for SSH (120)\n"
        "  create [PATH]              like run, without connecting; prints NAME and address\n"
        "  ssh NAME [-- CMD...]       OpenSSH with banger's key and pinned host key\n"
        "  exec NAME -- CMD...        run CMD through the guest agent (no SSH); stdin, stdout and\n"
        "                             stderr pass through, banger exits with CMD's status\n"
        "  -t, --tty                  on a pseudo-terminal;  -e K=V: environment;  -w DIR: cwd\n"
        "  stats NAME [-o json]       CPU, memory, load, disk and network counters from the agent\n"
        "  logs NAME                  print the serial console\n"
        "  -f, --follow               keep printing as it grows\n"
        "  stop NAME / start NAME     set spec.state in its spec file and wait\n"
        "  kill NAME                  set spec.state: stopped and hard-stop the VM now\n"
        "      --no-wait              return once the file is written\n"
        "      --timeout SECONDS      how long to wait (default 120)\n"
        "  delete NAME...             remove its spec and wait until it is gone\n";

static int error_out(struct bg_err *err)
{
        cli_error("%s", bg_err_msg(err));
        bg_err_free(err);
        return EXIT_ERR;
}

static int print_line(const char *line, json_t *obj, void *arg)
{
        (void)obj;
        (void)arg;
        printf("%s\n", line);
        fflush(stdout);
        return 0;
}

static int vm_logs(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = { { "follow", no_argument, NULL, 'f' },
                                              { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
        bool follow = false;
        int c;
        while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
                if (c == 'f')
                        follow = true;
                else if (c == 'h')
                        return cli_help(cli);
                else
                        return EXIT_USAGE;
        }
        if (optind + 1 != argc)
                return cli_usage_error(cli, "vm logs wants one sandbox name");
        const char *name = argv[optind];
        if (!spec_name_valid(name))
                return cli_usage_error(cli, "invalid sandbox name '%s'", name);
        struct client *cl = client_new(cli->paths.socket);
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/logs%s", name, follow ? "?follow=1" : "");
        struct bg_err *err = NULL;
        int rc = client_stream(cl, path, print_line, NULL, &err);
        client_free(cl);
        return rc < 0 ? error_out(err) : EXIT_OK;
}

struct wait_opts {
        bool no_wait;
        int timeout;
};

static int parse_wait_opts(struct cli *cli, int argc, char **argv, struct wait_opts *o)
{
        enum { OPT_NO_WAIT = 256, OPT_TIMEOUT };
        static const struct option opts[] = { { "no-wait", no_argument, NULL, OPT_NO_WAIT },
                                              { "timeout", required_argument, NULL, OPT_TIMEOUT },
                                              { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
        *o = (struct wait_opts){ .timeout = CLI_DEFAULT_TIMEOUT };
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case OPT_NO_WAIT: o->no_wait = true; break;
                case OPT_TIMEOUT:
                        o->timeout = cli_parse_timeout(optarg);
                        if (o->timeout < 0)
                                return cli_usage_error(cli, "--timeout wants a positive number of seconds");
                        break;
                case 'h': cli_help(cli); return -1;
                default: return EXIT_USAGE;
                }
        }
        return 0;
}

/* Set name's spec.state in its file and wait for the daemon to get there. */
static int set_state(struct cli *cli, const char *name, enum spec_state state, const struct wait_opts *o)
{
        struct folder f = { 0 };
        struct bg_err *err = NULL;
        struct client *cl = NULL;
        _cleanup_free_ char *text = NULL;
        int rc = EXIT_ERR;
        if (!spec_name_valid(name)) {
                cli_error("invalid sandbox name '%s'", name);
                return EXIT_USAGE;
        }
        if (folder_load(&f, cli->paths.sandboxes_dir, &err) < 0) {
                rc = error_out(err);
                goto out;
        }
        size_t n;
        const struct spec_file **claims = folder_claims(&f, name, &n);
        const struct spec_doc *doc = NULL;
        for (size_t i = 0; n == 1 && i < claims[0]->n_docs; i++)
                if (claims[0]->docs[i].name && strcmp(claims[0]->docs[i].name, name) == 0)
                        doc = &claims[0]->docs[i];
        free(claims);
        if (n == 0) {
                cli_error("no spec file in %s claims sandbox \"%s\"", cli->paths.sandboxes_dir, name);
                goto out;
        }
        if (n > 1 || !doc) {
                cli_error("sandbox \"%s\" is claimed by %zu files; fix that first", name, n);
                goto out;
        }
        if (!doc->spec) {
                cli_error("the spec of sandbox \"%s\" is invalid; fix it first (banger get %s)", name, name);
                goto out;
        }
        bool rewritten = false;
        text = specedit_set_state(doc->raw, doc->spec, state, &rewritten);
        if (rewritten && doc->spec->state != state)
                fprintf(stderr, "banger: note: rewrote sandbox/%s's document from its spec (comments dropped)\n",
                        name);
        /* The hash the daemon will report once it applied the edit; taken
         * now, since folder_put reloads the folder (and frees doc). */
        struct bg_spec *want = spec_dup(doc->spec);
        bool already = doc->spec->state == state;
        want->state = state;
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)spec_hash(want));
        spec_free(want);
        doc = NULL;
        bool changed = false;
        /* Already what the file says: leave the file (and its bytes) alone. */
        if (!already && folder_put(&f, name, text, &changed, &err) < 0) {
                rc = error_out(err);
                goto out;
        }
        cl = client_new(cli->paths.socket);
        /* The file already said running: the guest stopped itself (powered
         * off, or idle_timeout) and the daemon keeps it down until asked. */
        bool nudged = false;
        if (already && state == SPEC_STATE_RUNNING) {
                _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/start", name);
                json_t *obj = NULL;
                if (client_get_sandbox(cl, name, &obj, &err) == 0 && obj) {
                        const char *phase = sbx_str(obj, "status.phase");
                        if (phase && strcmp(phase, "Running") != 0) {
                                if (client_post_ok(cl, path, NULL, &err) < 0) {
                                        json_decref(obj);
                                        rc = error_out(err);
                                        goto out;
                                }
                                nudged = true;
                        }
                }
                json_decref(obj);
                bg_err_free(err);
                err = NULL;
        }
        printf("sandbox/%s %s\n", name, changed || nudged ? (state == SPEC_STATE_STOPPED ? "stopping" : "starting")
                                                           : "unchanged");
        fflush(stdout);
        rc = EXIT_OK;
        if (o->no_wait)
                goto out;
        struct wait_target t = { .name = name, .hash = hash, .want_stopped = state == SPEC_STATE_STOPPED };
        rc = wait_converged(cl, &t, 1, o->timeout);
        wait_targets_release(&t, 1);
out:
        client_free(cl);
        folder_release(&f);
        return rc;
}

static int vm_stop_start(struct cli *cli, int argc, char **argv, enum spec_state state)
{
        struct wait_opts o;
        int r = parse_wait_opts(cli, argc, argv, &o);
        if (r)
                return r < 0 ? EXIT_OK : r;
        if (optind + 1 != argc)
                return cli_usage_error(cli, "give one sandbox name");
        return set_state(cli, argv[optind], state, &o);
}

static int vm_stop(struct cli *cli, int argc, char **argv)
{
        return vm_stop_start(cli, argc, argv, SPEC_STATE_STOPPED);
}

static int vm_start(struct cli *cli, int argc, char **argv)
{
        return vm_stop_start(cli, argc, argv, SPEC_STATE_RUNNING);
}

static int vm_kill(struct cli *cli, int argc, char **argv)
{
        struct wait_opts o;
        int r = parse_wait_opts(cli, argc, argv, &o);
        if (r)
                return r < 0 ? EXIT_OK : r;
        if (optind + 1 != argc)
                return cli_usage_error(cli, "vm kill wants one sandbox name");
        const char *name = argv[optind];
        /* Stopped first, so the kill is not taken for a crash and restarted. */
        struct wait_opts no_wait = { .no_wait = true };
        int rc = set_state(cli, name, SPEC_STATE_STOPPED, &no_wait);
        if (rc != EXIT_OK)
                return rc;
        struct client *cl = client_new(cli->paths.socket);
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/kill", name);
        struct bg_err *err = NULL;
        if (client_post_ok(cl, path, NULL, &err) < 0) {
                client_free(cl);
                return error_out(err);
        }
        printf("sandbox/%s killed\n", name);
        client_free(cl);
        if (o.no_wait)
                return EXIT_OK;
        return set_state(cli, name, SPEC_STATE_STOPPED, &o) == EXIT_OK ? EXIT_OK : EXIT_ERR;
}

static int vm_delete(struct cli *cli, int argc, char **argv)
{
        return cmd_delete(cli, argc, argv);
}

int cmd_vm(struct cli *cli, int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*fn)(struct cli *, int, char **);
        } subs[] = { { "run", vm_run }, { "create", vm_create }, { "ssh", vm_ssh }, { "exec", vm_exec }, { "stats", vm_stats }, { "logs", vm_logs }, { "stop", vm_stop }, { "start", vm_start }, { "kill", vm_kill },
                     { "delete", vm_delete }, { "rm", vm_delete } };
        if (argc < 2)
                return cli_usage_error(cli, "give a subcommand: run, create, ssh, exec, stats, logs, stop, start, kill or delete");
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
                return cli_help(cli);
        for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
                if (strcmp(argv[1], subs[i].name) != 0)
                        continue;
                _cleanup_free_ char *label = xasprintf("%s %s", cli->label, argv[1]);
                cli_getopt_reset(cli, argv + 1);
                argv[1] = label;
                return subs[i].fn(cli, argc - 1, argv + 1);
        }
        return cli_usage_error(cli, "unknown subcommand '%s'", argv[1]);
}
