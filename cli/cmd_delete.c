/* banger delete: remove sandboxes' documents from the watched folder and
 * wait until bangerd has torn them down (its API answers 404).
 *
 * Which files claim a name is found by parsing the folder, as the daemon
 * does; the API object's metadata.files says the same from the daemon's
 * side and shows claims from outside the folder, which the CLI will not
 * touch: it says so instead of reporting a deletion that cannot happen. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "folder.h"
#include "sandbox.h"
#include "spec.h"
#include "util.h"
#include "wait.h"


struct gone_wait {
        const char *name;
        bool done;
        json_t *last;
};

/* The files bangerd names for obj that lie outside the folder, joined
 * with ", ", or NULL. */
static char *outside_files(const struct folder *f, const json_t *obj)
{
        const json_t *files = sbx_get(obj, "metadata.files");
        char *out = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(files, i, v) {
                const char *p = json_string_value(v);
                if (!p || folder_contains(f, p))
                        continue;
                char *n = out ? xasprintf("%s, %s", out, p) : xstrdup(p);
                free(out);
                out = n;
        }
        return out;
}

/* Remove name's documents.  Returns 0 when the name is on its way out. */
static int delete_one(struct client *c, struct folder *f, const char *name)
{
        json_t *obj = NULL;
        struct bg_err *err = NULL;
        int r = -1;

        if (client_get_sandbox(c, name, &obj, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return -2;   /* no daemon: stop here */
        }
        size_t n;
        _cleanup_free_ const struct spec_file **claims = folder_claims(f, name, &n);
        _cleanup_free_ char *outside = obj ? outside_files(f, obj) : NULL;
        if (outside) {
                cli_error("sandbox/%s is declared in %s, outside %s; remove it there", name, outside, f->dir);
                goto out;
        }
        if (n == 0 && !obj) {
                cli_error("sandbox \"%s\" not found", name);
                goto out;
        }
        size_t changed = 0;
        if (folder_remove(f, name, &changed, &err) < 0) {
                cli_error("sandbox/%s: %s", name, bg_err_msg(err));
                bg_err_free(err);
                goto out;
        }
        r = 0;
out:
        json_decref(obj);
        return r;
}

static int wait_gone(struct client *c, struct gone_wait *ws, size_t n, int timeout, FILE *out)
{
        int64_t deadline = now_mono_ms() + (int64_t)timeout * 1000;
        for (;;) {
                size_t pending = 0;
                bool have_seq = true;
                uint64_t seq = UINT64_MAX;   /* the oldest view this round looked at */
                for (size_t i = 0; i < n; i++) {
                        if (ws[i].done)
                                continue;
                        json_t *obj = NULL;
                        struct bg_err *err = NULL;
                        if (client_get_sandbox(c, ws[i].name, &obj, &err) < 0) {
                                cli_error("%s", bg_err_msg(err));
                                bg_err_free(err);
                                return EXIT_ERR;
                        }
                        uint64_t s;
                        if (!client_last_seq(c, &s))
                                have_seq = false;
                        else if (s < seq)
                                seq = s;
                        json_decref(ws[i].last);
                        ws[i].last = obj;
                        if (!obj) {
                                ws[i].done = true;
                                fprintf(out, "sandbox/%s deleted\n", ws[i].name);
                                fflush(out);
                        } else {
                                pending++;
                        }
                }
                if (!pending)
                        return EXIT_OK;
                if (now_mono_ms() >= deadline)
                        break;
                wait_for_change(c, have_seq, seq, deadline);
        }
        for (size_t i = 0; i < n; i++) {
                if (ws[i].done)
                        continue;
                const char *phase = sbx_str(ws[i].last, "status.phase");
                const char *msg = sbx_str(ws[i].last, "status.message");
                if (msg && *msg)
                        cli_error("timed out after %ds waiting for sandbox/%s to be deleted (phase %s: %s)",
                                  timeout, ws[i].name, phase ? phase : "unknown", msg);
                else
                        cli_error("timed out after %ds waiting for sandbox/%s to be deleted (phase %s)",
                                  timeout, ws[i].name, phase ? phase : "unknown");
        }
        return EXIT_ERR;
}

int cli_delete_names(struct cli *cli, const char *const *names, size_t n, bool wait, int timeout, FILE *out)
{
        struct client *c = client_new(cli->paths.socket);
        struct folder f;
        struct bg_err *err = NULL;
        struct gone_wait *ws = xcalloc(n ? n : 1, sizeof *ws);
        size_t n_wait = 0;
        int rc = EXIT_OK;

        if (folder_load(&f, cli->paths.sandboxes_dir, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                rc = EXIT_ERR;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                int r = delete_one(c, &f, names[i]);
                if (r == -2) {
                        rc = EXIT_ERR;
                        goto out;
                }
                if (r < 0) {
                        rc = EXIT_ERR;
                        continue;
                }
                if (!wait)
                        fprintf(out, "sandbox/%s deleted\n", names[i]);
                else
                        ws[n_wait++].name = names[i];
        }
        fflush(out);
        if (n_wait) {
                int w = wait_gone(c, ws, n_wait, timeout, out);
                if (w != EXIT_OK)
                        rc = w;
        }
out:
        for (size_t i = 0; i < n_wait; i++)
                json_decref(ws[i].last);
        free(ws);
        folder_release(&f);
        client_free(c);
        return rc;
}

int cmd_delete(struct cli *cli, int argc, char **argv)
{
        enum { OPT_NO_WAIT = 256, OPT_TIMEOUT };
        static const struct option opts[] = {
                { "no-wait", no_argument, NULL, OPT_NO_WAIT },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        bool no_wait = false;
        int timeout = CLI_DEFAULT_TIMEOUT;
        int ch;

        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case OPT_NO_WAIT:
                        no_wait = true;
                        break;
                case OPT_TIMEOUT:
                        if ((timeout = cli_parse_timeout(optarg)) < 0)
                                return cli_usage_error(cli, "--timeout wants whole seconds (1-86400), not '%s'", optarg);
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind >= argc)
                return cli_usage_error(cli, "give at least one NAME");
        for (int i = optind; i < argc; i++)
                if (!*argv[i])
                        return cli_usage_error(cli, "NAME is empty");

        return cli_delete_names(cli, (const char *const *)argv + optind, (size_t)(argc - optind), !no_wait,
                                timeout, stdout);
}
