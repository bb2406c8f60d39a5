/* banger get: sandboxes and their status, as a table or as the API's own
 * JSON (or that JSON as YAML).  With --watch, the listing is followed by
 * the event stream: each event names a sandbox, whose row is fetched and
 * printed again when it changed, so the output reads like a log of the
 * rows (kubectl get -w). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "output.h"
#include "sandbox.h"
#include "util.h"

enum format { FMT_TABLE, FMT_JSON, FMT_YAML };

#define N_COLS 6
#define PHASE_WIDTH 8   /* the longest phase name */
static const char *const header[N_COLS] = { "NAME", "PHASE", "RESTARTS", "HYPERVISOR", "AGE", "MESSAGE" };

struct get_opts {
        const char *name;
        const char *label;     /* "key=value" or NULL */
        enum format format;
        bool watch;
};

/* One table row of obj; the cells are heap strings. */
static void row_cells(const json_t *obj, int64_t now, char **cells)
{
        const char *name = sbx_str(obj, "metadata.name");
        const char *phase = sbx_str(obj, "status.phase");
        const json_t *restarts = sbx_get(obj, "status.restarts");
        const char *hv = sbx_str(obj, "status.hypervisor");
        const char *msg = sbx_str(obj, "status.message");
        char age[32];

        if (!hv)
                hv = sbx_str(obj, "spec.hypervisor");
        format_age(sbx_str(obj, "metadata.createdAt"), now, age, sizeof age);
        cells[0] = xstrdup(name ? name : "-");
        cells[1] = xstrdup(phase ? phase : "-");
        cells[2] = json_is_integer(restarts) ? xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(restarts))
                                             : xstrdup("-");
        cells[3] = xstrdup(hv ? hv : "-");
        cells[4] = xstrdup(age);
        cells[5] = xstrdup(msg ? msg : "");
        for (char *p = cells[5]; *p; p++)   /* one row, one line */
                if (*p == '\n' || *p == '\r' || *p == '\t')
                        *p = ' ';
}

static void free_cells(char **cells)
{
        for (size_t i = 0; i < N_COLS; i++)
                free(cells[i]);
}

static int print_object(const json_t *obj, enum format f, bool explicit_start)
{
        struct bg_err *err = NULL;
        if (f == FMT_JSON) {
                output_json(stdout, obj);
                return 0;
        }
        if (output_yaml(stdout, obj, explicit_start, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return -EIO;
        }
        return 0;
}

static bool label_matches(const json_t *obj, const char *label)
{
        if (!label)
                return true;
        const char *eq = strchr(label, '=');
        const json_t *labels = sbx_get(obj, "metadata.labels");
        const char *v = json_string_value(json_object_getn(labels, label, (size_t)(eq - label)));
        return v && strcmp(v, eq + 1) == 0;
}

/* State of a watch: the widths of the first listing, and the last row
 * printed per name (without AGE) so repeated events print nothing new. */
struct watch {
        const struct get_opts *o;
        struct client *c;
        size_t widths[N_COLS];
        bool header_done;
        char **names, **last_rows;
        size_t n;
        uint64_t seq;
        int failed;
};

static bool row_changed(struct watch *w, const char *name, char *const *cells)
{
        _cleanup_free_ char *key = xasprintf("%s|%s|%s|%s", cells[1], cells[2], cells[3], cells[5]);
        for (size_t i = 0; i < w->n; i++) {
                if (strcmp(w->names[i], name) != 0)
                        continue;
                if (strcmp(w->last_rows[i], key) == 0)
                        return false;
                free(w->last_rows[i]);
                w->last_rows[i] = steal_pointer(&key);
                return true;
        }
        w->names = xreallocarray(w->names, w->n + 1, sizeof *w->names);
        w->last_rows = xreallocarray(w->last_rows, w->n + 1, sizeof *w->last_rows);
        w->names[w->n] = xstrdup(name);
        w->last_rows[w->n++] = steal_pointer(&key);
        return true;
}

static void watch_row(struct watch *w, const char *name, const json_t *obj)
{
        char *cells[N_COLS];
        if (obj) {
                row_cells(obj, now_wall_ms(), cells);
        } else {
                const char *gone[N_COLS] = { name, "Deleted", "-", "-", "-", "" };
                for (size_t i = 0; i < N_COLS; i++)
                        cells[i] = xstrdup(gone[i]);
        }
        if (row_changed(w, name, cells)) {
                if (!w->header_done) {
                        for (size_t i = 0; i < N_COLS; i++)
                                if (w->widths[i] < strlen(header[i]))
                                        w->widths[i] = strlen(header[i]);
                        table_print_row(stdout, header, N_COLS, w->widths);
                        w->header_done = true;
                }
                table_print_row(stdout, (const char *const *)cells, N_COLS, w->widths);
        }
        free_cells(cells);
}

static int on_event(const char *line, json_t *ev, void *arg)
{
        struct watch *w = arg;
        (void)line;
        const json_t *seq = json_object_get(ev, "seq");
        const char *name = json_string_value(json_object_get(ev, "name"));
        if (json_is_integer(seq) && (uint64_t)json_integer_value(seq) > w->seq)
                w->seq = (uint64_t)json_integer_value(seq);
        if (!name || !*name || (w->o->name && strcmp(name, w->o->name) != 0))
                return 0;

        json_t *obj = NULL;
        struct bg_err *err = NULL;
        if (client_get_sandbox(w->c, name, &obj, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                w->failed = 1;
                return -1;
        }
        if (obj && !label_matches(obj, w->o->label)) {
                json_decref(obj);
                return 0;
        }
        if (w->o->format == FMT_TABLE) {
                watch_row(w, name, obj);
        } else if (obj && print_object(obj, w->o->format, true) < 0) {
                json_decref(obj);
                w->failed = 1;
                return -1;
        }
        json_decref(obj);
        fflush(stdout);
        return 0;
}

static int on_seq(const char *line, json_t *ev, void *arg)
{
        uint64_t *seq = arg;
        const json_t *s = json_object_get(ev, "seq");
        (void)line;
        if (json_is_integer(s) && (uint64_t)json_integer_value(s) > *seq)
                *seq = (uint64_t)json_integer_value(s);
        return 0;
}

static char *events_path(const struct get_opts *o, uint64_t since, bool follow)
{
        _cleanup_free_ char *name = o->name ? client_escape(o->name) : NULL;
        return xasprintf("/v1/events?since=%" PRIu64 "%s%s%s", since, follow ? "&follow=1" : "",
                         name ? "&name=" : "", name ? name : "");
}

static int run_get(struct cli *cli, const struct get_opts *o)
{
        struct client *c = client_new(cli->paths.socket);
        struct watch w = { .o = o, .c = c };
        struct bg_err *err = NULL;
        json_t *body = NULL;
        int rc = EXIT_ERR;

        /* The last event before the listing: following from there misses
         * nothing, at worst repeats a row. */
        if (o->watch) {
                _cleanup_free_ char *path = events_path(o, 0, false);
                if (client_stream(c, path, on_seq, &w.seq, &err) < 0)
                        goto fail;
        }
        if (o->name) {
                if (client_get_sandbox(c, o->name, &body, &err) < 0)
                        goto fail;
                if (!body) {
                        cli_error("sandbox \"%s\" not found", o->name);
                        goto out;
                }
        } else {
                _cleanup_free_ char *esc = o->label ? client_escape(o->label) : NULL;
                _cleanup_free_ char *path = xasprintf("/v1/sandboxes%s%s", esc ? "?label=" : "", esc ? esc : "");
                if (client_get_ok(c, path, &body, &err) < 0)
                        goto fail;
        }

        if (o->format != FMT_TABLE) {
                if (print_object(body, o->format, o->watch) < 0)
                        goto out;
        } else {
                struct table t;
                const json_t *items = o->name ? NULL : json_object_get(body, "items");
                int64_t now = now_wall_ms();
                table_init(&t, N_COLS);
                table_add(&t, header);
                if (o->name) {
                        char *cells[N_COLS];
                        row_cells(body, now, cells);
                        table_add(&t, (const char *const *)cells);
                        free_cells(cells);
                } else {
                        size_t i;
                        json_t *it;
                        json_array_foreach(items, i, it) {
                                char *cells[N_COLS];
                                row_cells(it, now, cells);
                                table_add(&t, (const char *const *)cells);
                                if (o->watch)
                                        row_changed(&w, cells[0], cells);
                                free_cells(cells);
                        }
                }
                if (o->name && o->watch)
                        row_changed(&w, t.cells[N_COLS], &t.cells[N_COLS]);
                size_t *widths = table_widths(&t);
                if (o->watch && widths[1] < PHASE_WIDTH)   /* rows to come: "Deleting" */
                        widths[1] = PHASE_WIDTH;
                if (t.n_rows > 1) {
                        for (size_t r = 0; r < t.n_rows; r++)
                                table_print_row(stdout, (const char *const *)&t.cells[r * N_COLS], N_COLS, widths);
                        w.header_done = true;
                } else if (!o->watch) {
                        fprintf(stderr, "no sandboxes found\n");
                }
                memcpy(w.widths, widths, sizeof w.widths);
                free(widths);
                table_release(&t);
        }
        fflush(stdout);
        rc = EXIT_OK;
        if (o->watch) {
                _cleanup_free_ char *path = events_path(o, w.seq, true);
                int r = client_stream(c, path, on_event, &w, &err);
                if (r < 0 && !w.failed)
                        goto fail;
                if (r == 0)
                        cli_error("bangerd ended the event stream");
                rc = EXIT_ERR;
        }
        goto out;
fail:
        cli_error("%s", bg_err_msg(err));
        rc = EXIT_ERR;
out:
        for (size_t i = 0; i < w.n; i++) {
                free(w.names[i]);
                free(w.last_rows[i]);
        }
        free(w.names);
        free(w.last_rows);
        bg_err_free(err);
        json_decref(body);
        client_free(c);
        return rc;
}

int cmd_get(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "output", required_argument, NULL, 'o' },
                { "watch", no_argument, NULL, 'w' },
                { "selector", required_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct get_opts o = { .format = FMT_TABLE };
        int ch;

        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "o:wl:h", opts, NULL)) != -1) {
                switch (ch) {
                case 'o':
                        if (strcmp(optarg, "table") == 0 || strcmp(optarg, "wide") == 0)
                                o.format = FMT_TABLE;
                        else if (strcmp(optarg, "json") == 0)
                                o.format = FMT_JSON;
                        else if (strcmp(optarg, "yaml") == 0)
                                o.format = FMT_YAML;
                        else
                                return cli_usage_error(cli, "-o wants table, json or yaml, not '%s'", optarg);
                        break;
                case 'w':
                        o.watch = true;
                        break;
                case 'l': {
                        const char *eq = strchr(optarg, '=');
                        if (!eq || eq == optarg)
                                return cli_usage_error(cli, "-l wants key=value, not '%s'", optarg);
                        o.label = optarg;
                        break;
                }
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind < argc)
                o.name = argv[optind++];
        if (optind < argc)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
        if (o.name && o.label)
                return cli_usage_error(cli, "give a NAME or -l, not both");
        if (o.name && !*o.name)
                return cli_usage_error(cli, "NAME is empty");
        return run_get(cli, &o);
}
