/* banger apply: validate spec documents locally, write them into the
 * watched folder, and wait until bangerd has converged on them.
 *
 * Nothing is written unless everything can be: every document must be
 * valid, names unique, and no document may change a field that needs the
 * sandbox recreated (image, kernel, hypervisor, disk size, workspace)
 * unless --recreate says the user accepts losing its disks.  The daemon
 * is only read: the write is the file, and convergence is seen through
 * status.specHash reaching the hash of what was written. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "folder.h"
#include "input.h"
#include "sandbox.h"
#include "spec.h"
#include "util.h"

#define POLL_MS 100
/* A SpecValid=False seen this soon after the write may predate it. */
#define SPEC_VALID_GRACE_MS 2000

struct apply_opts {
        char **sources;
        size_t n_sources;
        bool no_wait, dry_run, recreate;
        int timeout;
};

/* What the daemon holds for one document before the write. */
struct target {
        const struct input_doc *in;
        json_t *current;          /* the API object, NULL when new */
        const char *verb;         /* created | configured | unchanged */
        bool written;
        /* while waiting */
        bool done;
        char *last_phase;
        json_t *last;
};

static void sleep_ms(int ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* Refuse a change that would recreate the sandbox, unless allowed.
 * Returns false (after saying why) when the document must not be written. */
static bool check_recreate(const struct target *t, bool allowed)
{
        const char *name = t->in->doc->spec->name;
        struct bg_spec *cur = NULL;
        struct bg_err *err = NULL;
        if (!t->current || allowed)
                return true;
        if (sbx_spec(t->current, &cur, &err) < 0) {
                cli_error("%s: cannot compare with the running sandbox (%s); rerun with --recreate to apply anyway",
                          name, bg_err_msg(err));
                bg_err_free(err);
                return false;
        }
        struct spec_change *ch = NULL;
        size_t n = 0;
        spec_diff(cur, t->in->doc->spec, &ch, &n);
        char *fields = NULL;
        for (size_t i = 0; i < n; i++) {
                if (ch[i].impact != SPEC_IMPACT_RECREATE)
                        continue;
                char *f = fields ? xasprintf("%s, %s", fields, ch[i].field) : xstrdup(ch[i].field);
                free(fields);
                fields = f;
        }
        spec_changes_free(ch, n);
        spec_free(cur);
        if (!fields)
                return true;
        cli_error("%s: changing %s needs the sandbox recreated (its disks are lost); rerun with --recreate",
                  name, fields);
        free(fields);
        return false;
}

/* Look at one sandbox once.  Returns 1 when converged, -1 when it failed
 * (after saying so), 0 to keep waiting. */
static int check_converged(struct target *t, json_t *obj, int64_t since_write_ms)
{
        const struct bg_spec *s = t->in->doc->spec;
        const char *hash = t->in->hash;
        json_decref(t->last);
        t->last = obj;
        if (!obj)
                return 0;   /* not picked up yet */

        const char *phase = sbx_str(obj, "status.phase");
        const char *spec_hash = sbx_str(obj, "status.specHash");
        const char *desired = sbx_str(obj, "status.desiredHash");
        const char *message = sbx_str(obj, "status.message");
        bool ours = spec_hash && strcmp(spec_hash, hash) == 0;

        if (phase && (!t->last_phase || strcmp(phase, t->last_phase) != 0)) {
                free(t->last_phase);
                t->last_phase = xstrdup(phase);
                if (isatty(STDERR_FILENO))
                        fprintf(stderr, "sandbox/%s: %s\n", s->name, phase);
        }
        const char *want = s->state == SPEC_STATE_STOPPED ? "Stopped" : "Running";
        if (ours && phase && strcmp(phase, want) == 0)
                return 1;
        if (ours && phase && strcmp(phase, "Failed") == 0) {
                cli_error("sandbox/%s failed: %s", s->name, message && *message ? message : "(no message)");
                return -1;
        }
        const char *valid_msg;
        const char *valid = sbx_condition(obj, "SpecValid", &valid_msg);
        bool seen = desired && strcmp(desired, hash) == 0;
        if (valid && strcmp(valid, "False") == 0 && (seen || since_write_ms >= SPEC_VALID_GRACE_MS)) {
                cli_error("sandbox/%s: %s", s->name, *valid_msg ? valid_msg : "bangerd finds the spec invalid");
                return -1;
        }
        return 0;
}

static void timeout_message(const struct target *t, int timeout)
{
        const char *name = t->in->doc->spec->name;
        if (!t->last) {
                cli_error("timed out after %ds waiting for sandbox/%s (not seen by bangerd yet)", timeout, name);
                return;
        }
        const char *phase = sbx_str(t->last, "status.phase");
        const char *message = sbx_str(t->last, "status.message");
        if (message && *message)
                cli_error("timed out after %ds waiting for sandbox/%s (phase %s: %s)", timeout, name,
                          phase ? phase : "unknown", message);
        else
                cli_error("timed out after %ds waiting for sandbox/%s (phase %s)", timeout, name,
                          phase ? phase : "unknown");
}

static int wait_all(struct client *c, struct target *ts, size_t n, int timeout)
{
        int64_t start = now_mono_ms();
        int64_t deadline = start + (int64_t)timeout * 1000;
        int rc = EXIT_OK;

        for (;;) {
                size_t pending = 0;
                for (size_t i = 0; i < n; i++) {
                        struct target *t = &ts[i];
                        if (!t->written || t->done)
                                continue;
                        json_t *obj = NULL;
                        struct bg_err *err = NULL;
                        if (client_get_sandbox(c, t->in->doc->spec->name, &obj, &err) < 0) {
                                cli_error("%s", bg_err_msg(err));
                                bg_err_free(err);
                                return EXIT_ERR;
                        }
                        int r = check_converged(t, obj, now_mono_ms() - start);
                        if (r != 0) {
                                t->done = true;
                                if (r < 0)
                                        rc = EXIT_ERR;
                        } else {
                                pending++;
                        }
                }
                if (!pending)
                        return rc;
                if (now_mono_ms() >= deadline) {
                        for (size_t i = 0; i < n; i++)
                                if (ts[i].written && !ts[i].done)
                                        timeout_message(&ts[i], timeout);
                        return EXIT_ERR;
                }
                sleep_ms(POLL_MS);
        }
}

static int apply_docs(struct cli *cli, const struct apply_opts *o, struct input *in)
{
        struct client *c = client_new(cli->paths.socket);
        struct target *ts = xcalloc(in->n_docs, sizeof *ts);
        struct folder folder = { 0 };
        struct bg_err *err = NULL;
        int rc = EXIT_OK;
        size_t refused = 0;

        /* Ask first, write after: a refusal must leave every file as it was. */
        for (size_t i = 0; i < in->n_docs; i++) {
                struct target *t = &ts[i];
                t->in = &in->docs[i];
                if (client_get_sandbox(c, t->in->doc->spec->name, &t->current, &err) < 0) {
                        cli_error("%s", bg_err_msg(err));
                        rc = EXIT_ERR;
                        goto out;
                }
        }
        if (folder_load(&folder, cli->paths.sandboxes_dir, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                rc = EXIT_ERR;
                goto out;
        }
        for (size_t i = 0; i < in->n_docs; i++) {
                if (!check_recreate(&ts[i], o->recreate)) {
                        refused++;
                        continue;
                }
                if (folder_check_put(&folder, ts[i].in->doc->spec->name, NULL, &err) < 0) {
                        cli_error("%s", bg_err_msg(err));
                        bg_err_free(err);
                        err = NULL;
                        refused++;
                }
        }
        if (refused) {
                cli_error("nothing written");
                rc = EXIT_ERR;
                goto out;
        }

        for (size_t i = 0; i < in->n_docs; i++) {
                struct target *t = &ts[i];
                const char *name = t->in->doc->spec->name;
                const char *desired = sbx_str(t->current, "status.desiredHash");
                bool changed;
                if (folder_put(&folder, name, t->in->doc->raw ? t->in->doc->raw : "", &changed, &err) < 0) {
                        cli_error("sandbox/%s: %s", name, bg_err_msg(err));
                        bg_err_free(err);
                        err = NULL;
                        rc = EXIT_ERR;
                        continue;
                }
                t->written = true;
                if (!t->current)
                        t->verb = "created";
                else if (desired && strcmp(desired, t->in->hash) == 0)
                        t->verb = "unchanged";
                else
                        t->verb = "configured";
                printf("sandbox/%s %s\n", name, t->verb);
        }
        fflush(stdout);
        if (!o->no_wait) {
                int w = wait_all(c, ts, in->n_docs, o->timeout);
                if (w != EXIT_OK)
                        rc = w;
        }
out:
        for (size_t i = 0; i < in->n_docs; i++) {
                json_decref(ts[i].current);
                json_decref(ts[i].last);
                free(ts[i].last_phase);
        }
        free(ts);
        bg_err_free(err);
        folder_release(&folder);
        client_free(c);
        return rc;
}

/* Validate against the folder too (reading it is harmless), write nothing. */
static int dry_run(struct cli *cli, const struct input *in)
{
        struct folder folder;
        struct bg_err *err = NULL;
        int rc = EXIT_OK;
        if (folder_load(&folder, cli->paths.sandboxes_dir, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                folder_release(&folder);
                return EXIT_ERR;
        }
        for (size_t i = 0; i < in->n_docs; i++) {
                const char *name = in->docs[i].doc->spec->name;
                if (folder_check_put(&folder, name, NULL, &err) < 0) {
                        cli_error("%s", bg_err_msg(err));
                        bg_err_free(err);
                        err = NULL;
                        rc = EXIT_ERR;
                        continue;
                }
                printf("sandbox/%s valid (dry run)\n", name);
        }
        folder_release(&folder);
        return rc;
}

int cmd_apply(struct cli *cli, int argc, char **argv)
{
        enum { OPT_NO_WAIT = 256, OPT_TIMEOUT, OPT_DRY_RUN, OPT_RECREATE };
        static const struct option opts[] = {
                { "filename", required_argument, NULL, 'f' },
                { "no-wait", no_argument, NULL, OPT_NO_WAIT },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "dry-run", no_argument, NULL, OPT_DRY_RUN },
                { "recreate", no_argument, NULL, OPT_RECREATE },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct apply_opts o = { .timeout = CLI_DEFAULT_TIMEOUT };
        _cleanup_free_ char **sources = xcalloc((size_t)argc + 1, sizeof *sources);
        int ch;

        o.sources = sources;
        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
                switch (ch) {
                case 'f':
                        o.sources[o.n_sources++] = optarg;
                        break;
                case OPT_NO_WAIT:
                        o.no_wait = true;
                        break;
                case OPT_TIMEOUT:
                        if ((o.timeout = cli_parse_timeout(optarg)) < 0)
                                return cli_usage_error(cli, "--timeout wants whole seconds (1-86400), not '%s'", optarg);
                        break;
                case OPT_DRY_RUN:
                        o.dry_run = true;
                        break;
                case OPT_RECREATE:
                        o.recreate = true;
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind < argc)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
        if (!o.n_sources)
                return cli_usage_error(cli, "-f FILE|DIR|- is required");

        struct input in;
        size_t problems = input_load(&in, o.sources, o.n_sources);
        int rc = EXIT_OK;
        if (problems) {
                cli_error("%zu problem%s found; nothing written", problems, problems == 1 ? "" : "s");
                rc = EXIT_ERR;
        } else if (o.dry_run) {
                rc = dry_run(cli, &in);
        } else {
                rc = apply_docs(cli, &o, &in);
        }
        input_release(&in);
        return rc;
}
