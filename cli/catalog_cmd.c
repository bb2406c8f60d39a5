/* catalog_cmd: see catalog_cmd.h. */
#include "catalog_cmd.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "cli.h"
#include "err.h"
#include "inuse.h"
#include "output.h"
#include "util.h"

int catalog_cmd_rm(struct cli *cli, int argc, char **argv, char *label, const char *kind)
{
        enum { OPT_FORCE = 256 };
        static const struct option opts[] = {
                { "force", no_argument, NULL, OPT_FORCE },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        bool force = false;
        int ch;
        cli_getopt_reset(cli, argv);
        argv[0] = label;
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case OPT_FORCE:
                        force = true;
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind >= argc)
                return cli_usage_error(cli, "give at least one NAME");

        _cleanup_free_ char *folder = xasprintf("%ss", kind);   /* "kernels", "images" */
        int rc = EXIT_OK;
        for (int i = optind; i < argc; i++) {
                const char *name = argv[i];
                struct bg_err *err = NULL;
                if (!catalog_name_valid(name)) {
                        cli_error("invalid %s name '%s'", kind, name);
                        rc = EXIT_ERR;
                        continue;
                }
                _cleanup_free_ char *dir = xasprintf("%s/%s/%s", cli->paths.state_dir, folder, name);
                if (access(dir, F_OK) < 0) {
                        cli_error("%s '%s' not found", kind, name);
                        rc = EXIT_ERR;
                        continue;
                }
                if (inuse_check(&cli->paths, kind, name, force, &err) < 0 ||
                    catalog_remove(cli->paths.state_dir, folder, name, &err) < 0) {
                        cli_error("%s", bg_err_msg(err));
                        bg_err_free(err);
                        rc = EXIT_ERR;
                        continue;
                }
                printf("%s/%s removed\n", kind, name);
        }
        return rc;
}

int catalog_cmd_list(struct cli *cli, int argc, char **argv, char *label, const char *folder,
                     const char *h1, const char *h2, catalog_row_fn row)
{
        static const struct option opts[] = {
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        bool json = false;
        int ch;
        cli_getopt_reset(cli, argv);
        argv[0] = label;
        while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
                switch (ch) {
                case 'o':
                        if (strcmp(optarg, "json") == 0)
                                json = true;
                        else if (strcmp(optarg, "table") != 0)
                                return cli_usage_error(cli, "-o wants table or json, not '%s'", optarg);
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind < argc)
                return cli_usage_error(cli, "list takes no arguments");

        json_t *list = catalog_list(cli->paths.state_dir, folder);
        if (json) {
                output_json(stdout, list);
                json_decref(list);
                return EXIT_OK;
        }
        struct table t;
        table_init(&t, 4);
        const char *header[] = { "NAME", h1, h2, "AGE" };
        table_add(&t, header);
        int64_t now = now_wall_ms();
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
                char age[32], c1[128] = "", c2[128] = "";
                format_age(json_string_value(json_object_get(e, "created")), now, age, sizeof age);
                row(e, c1, c2, sizeof c1);
                const char *cells[] = { json_string_value(json_object_get(e, "name")), c1, c2, age };
                table_add(&t, cells);
        }
        table_print(stdout, &t);
        table_release(&t);
        json_decref(list);
        return EXIT_OK;
}
