/* banger diff: what `apply -f` would change, field by field, against the
 * spec bangerd currently holds, and the action each change implies.
 * Exit status as diff(1): 0 no differences, 1 differences, 2 trouble. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "input.h"
#include "sandbox.h"
#include "spec.h"
#include "util.h"

#define EXIT_DIFF_TROUBLE 2

/* The word for one change's consequence. */
static const char *impact_word(const struct spec_change *c, const struct bg_spec *next)
{
        switch (c->impact) {
        case SPEC_IMPACT_STATE:
                return next->state == SPEC_STATE_STOPPED ? "stop" : "start";
        case SPEC_IMPACT_RESTART:
                return "restart";
        case SPEC_IMPACT_RECREATE:
                return "recreate";
        case SPEC_IMPACT_NONE:
        default:
                return "no action";
        }
}

/* What the loop will do for the whole set of changes.  A stopped
 * sandbox picks up restart-class changes at its next start. */
static const char *action(const struct spec_change *c, size_t n, const struct bg_spec *cur,
                          const struct bg_spec *next)
{
        enum spec_impact worst = spec_changes_impact(c, n);
        bool state_changed = false;
        for (size_t i = 0; i < n; i++)
                if (c[i].impact == SPEC_IMPACT_STATE)
                        state_changed = true;
        if (worst == SPEC_IMPACT_RECREATE)
                return "recreate";
        if (state_changed || cur->state != next->state)
                return next->state == SPEC_STATE_STOPPED ? "stop" : "start";
        if (worst == SPEC_IMPACT_RESTART)
                return next->state == SPEC_STATE_RUNNING ? "restart" : "none";
        return "none";
}

/* Print the difference for one document; returns 0 when none, 1 when
 * there is one, -1 on error (said already). */
static int diff_one(struct client *c, const struct input_doc *d)
{
        const struct bg_spec *next = d->doc->spec;
        json_t *obj = NULL;
        struct bg_err *err = NULL;

        if (client_get_sandbox(c, next->name, &obj, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return -2;
        }
        if (!obj) {
                printf("sandbox/%s: new (create)\n", next->name);
                printf("  action: create%s\n", next->state == SPEC_STATE_STOPPED ? " (stopped)" : "");
                return 1;
        }
        struct bg_spec *cur = NULL;
        if (sbx_spec(obj, &cur, &err) < 0) {
                cli_error("sandbox/%s: %s", next->name, bg_err_msg(err));
                bg_err_free(err);
                json_decref(obj);
                return -1;
        }
        json_decref(obj);

        struct spec_change *ch = NULL;
        size_t n = 0;
        spec_diff(cur, next, &ch, &n);
        int r = 0;
        if (n == 0) {
                printf("sandbox/%s: no changes\n", next->name);
        } else {
                printf("sandbox/%s:\n", next->name);
                for (size_t i = 0; i < n; i++)
                        printf("  %s: %s -> %s (%s)\n", ch[i].field, ch[i].old_value ? ch[i].old_value : "(unset)",
                               ch[i].new_value ? ch[i].new_value : "(unset)", impact_word(&ch[i], next));
                printf("  action: %s\n", action(ch, n, cur, next));
                r = 1;
        }
        spec_changes_free(ch, n);
        spec_free(cur);
        return r;
}

int cmd_diff(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "filename", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        _cleanup_free_ char **sources = xcalloc((size_t)argc + 1, sizeof *sources);
        size_t n_sources = 0;
        int ch;

        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
                switch (ch) {
                case 'f':
                        sources[n_sources++] = optarg;
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind < argc)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
        if (!n_sources)
                return cli_usage_error(cli, "-f FILE|DIR|- is required");

        struct input in;
        size_t problems = input_load(&in, sources, n_sources);
        if (problems) {
                cli_error("%zu problem%s found", problems, problems == 1 ? "" : "s");
                input_release(&in);
                return EXIT_DIFF_TROUBLE;
        }
        struct client *c = client_new(cli->paths.socket);
        int rc = EXIT_OK;
        for (size_t i = 0; i < in.n_docs; i++) {
                int r = diff_one(c, &in.docs[i]);
                if (r == -2) {
                        rc = EXIT_DIFF_TROUBLE;
                        break;
                }
                if (r < 0)
                        rc = EXIT_DIFF_TROUBLE;
                else if (r > 0 && rc == EXIT_OK)
                        rc = 1;
        }
        client_free(c);
        input_release(&in);
        return rc;
}
