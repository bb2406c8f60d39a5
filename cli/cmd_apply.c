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
#include "wait.h"


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
};

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
                struct wait_target *ws = xcalloc(in->n_docs, sizeof *ws);
                size_t nw = 0;
                for (size_t i = 0; i < in->n_docs; i++) {
                        if (!ts[i].written)
                                continue;
                        const struct bg_spec *s = ts[i].in->doc->spec;
                        ws[nw++] = (struct wait_target){ .name = s->name, .hash = ts[i].in->hash,
                                                         .want_stopped = s->state == SPEC_STATE_STOPPED };
                }
                int w = wait_converged(c, ws, nw, o->timeout);
                wait_targets_release(ws, nw);
                free(ws);
                if (w != EXIT_OK)
                        rc = w;
        }
out:
        for (size_t i = 0; i < in->n_docs; i++)
                json_decref(ts[i].current);
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
