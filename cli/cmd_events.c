/* banger events: the daemon's event log, one event a line
 * (TIME  NAME  TYPE  PHASE  MESSAGE), or the raw NDJSON with -o json;
 * with --follow the stream stays open until interrupted. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "output.h"
#include "util.h"

struct events_opts {
        bool follow, json;
        uint64_t since;
        const char *name;
};

static const char *field(const json_t *ev, const char *key)
{
        const char *s = json_string_value(json_object_get(ev, key));
        return s && *s ? s : "-";
}

static int on_line(const char *line, json_t *ev, void *arg)
{
        const struct events_opts *o = arg;
        if (o->json) {
                printf("%s\n", line);
        } else if (ev) {
                /* messages are one line in the table */
                _cleanup_free_ char *msg = xstrdup(json_string_value(json_object_get(ev, "message")) ?: "");
                for (char *p = msg; *p; p++)
                        if (*p == '\n' || *p == '\r' || *p == '\t')
                                *p = ' ';
                _cleanup_free_ char *row = xasprintf("%-24s  %-16s  %-16s  %-9s  %s", field(ev, "time"),
                                                     field(ev, "name"), field(ev, "type"), field(ev, "phase"), msg);
                printf("%s\n", output_rstrip(row));
        }
        if (o->follow)
                fflush(stdout);
        return 0;
}

int cmd_events(struct cli *cli, int argc, char **argv)
{
        enum { OPT_SINCE = 256, OPT_NAME };
        static const struct option opts[] = {
                { "follow", no_argument, NULL, 'f' },
                { "since", required_argument, NULL, OPT_SINCE },
                { "name", required_argument, NULL, OPT_NAME },
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct events_opts o = { 0 };
        int ch;

        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "fo:h", opts, NULL)) != -1) {
                switch (ch) {
                case 'f':
                        o.follow = true;
                        break;
                case OPT_SINCE: {
                        char *end;
                        errno = 0;
                        unsigned long long v = strtoull(optarg, &end, 10);
                        if (errno || end == optarg || *end || optarg[0] == '-')
                                return cli_usage_error(cli, "--since wants a sequence number, not '%s'", optarg);
                        o.since = v;
                        break;
                }
                case OPT_NAME:
                        if (!*optarg)
                                return cli_usage_error(cli, "--name is empty");
                        o.name = optarg;
                        break;
                case 'o':
                        if (strcmp(optarg, "json") == 0)
                                o.json = true;
                        else if (strcmp(optarg, "table") == 0 || strcmp(optarg, "text") == 0)
                                o.json = false;
                        else
                                return cli_usage_error(cli, "-o wants json, not '%s'", optarg);
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind < argc)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);

        _cleanup_free_ char *name = o.name ? client_escape(o.name) : NULL;
        _cleanup_free_ char *path = xasprintf("/v1/events?since=%" PRIu64 "%s%s%s", o.since,
                                              o.follow ? "&follow=1" : "", name ? "&name=" : "", name ? name : "");
        struct client *c = client_new(cli->paths.socket);
        struct bg_err *err = NULL;
        int rc = EXIT_OK;
        if (client_stream(c, path, on_line, &o, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                rc = EXIT_ERR;
        } else if (o.follow) {
                cli_error("bangerd ended the event stream");
                rc = EXIT_ERR;
        }
        bg_err_free(err);
        client_free(c);
        return rc;
}
