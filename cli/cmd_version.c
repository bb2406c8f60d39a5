/* banger version: the client's version, and the daemon's when it answers.
 * A missing daemon is information here, not a failure. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "client.h"
#include "err.h"
#include "version.h"

int cmd_version(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int ch;

        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (ch == 'h')
                        return cli_help(cli);
                return cli_usage_error(cli, NULL);
        }
        if (optind < argc)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);

        printf("client: %s\n", BANGER_VERSION);
        fflush(stdout);

        struct client *c = client_new(cli->paths.socket);
        struct bg_err *err = NULL;
        json_t *v = NULL;
        if (client_get_ok(c, "/v1/version", &v, &err) < 0) {
                printf("daemon: not reachable (%s)\n", bg_err_msg(err));
        } else {
                const char *ver = json_string_value(json_object_get(v, "version"));
                const char *api = json_string_value(json_object_get(v, "api"));
                const char *driver = json_string_value(json_object_get(v, "driver"));
                printf("daemon: %s (api %s, driver %s)\n", ver ? ver : "unknown", api ? api : "unknown",
                       driver ? driver : "unknown");
        }
        json_decref(v);
        bg_err_free(err);
        client_free(c);
        return EXIT_OK;
}
