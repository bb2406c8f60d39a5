/* banger kernel: the catalog's kernels (catalog.h).  `import` builds one
 * from a Debian kernel package (kernel_import.h), `list` shows them, `rm`
 * removes one no sandbox uses (inuse.h).  These run on the host as the
 * user who owns the state folder; bangerd only reads the catalog. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "catalog_cmd.h"
#include "cli.h"
#include "err.h"
#include "inuse.h"
#include "kernel_import.h"
#include "output.h"
#include "spawn.h"
#include "util.h"


/* "banger kernel import" in getopt's messages. */
static void sub_getopt_reset(struct cli *cli, char **argv, char *label)
{
        cli_getopt_reset(cli, argv);
        argv[0] = label;
}

static int error_out(struct bg_err *err)
{
        cli_error("%s", bg_err_msg(err));
        bg_err_free(err);
        return EXIT_ERR;
}

static int kernel_import_cmd(struct cli *cli, int argc, char **argv, char *label)
{
        enum { OPT_DEB = 256, OPT_APT };
        static const struct option opts[] = {
                { "deb", required_argument, NULL, OPT_DEB },
                { "apt", optional_argument, NULL, OPT_APT },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const char *deb = NULL, *apt_pkg = NULL, *apt_next = NULL;
        bool apt = false;
        int ch;

        /* "--apt PACKAGE" (with a space): remember the word after a bare
         * --apt, since getopt hands it back as a positional */
        for (int i = 1; i + 1 < argc; i++) {
                if (strcmp(argv[i], "--") == 0)
                        break;
                if (strcmp(argv[i], "--apt") == 0 && argv[i + 1][0] != '-')
                        apt_next = argv[i + 1];
        }
        sub_getopt_reset(cli, argv, label);
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case OPT_DEB:
                        deb = optarg;
                        break;
                case OPT_APT:
                        apt = true;
                        if (optarg)
                                apt_pkg = optarg;
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        const char *name = NULL;
        int n_pos = argc - optind;
        if (n_pos == 1) {
                name = argv[optind];
        } else if (n_pos == 2 && apt && !apt_pkg && apt_next &&
                   (argv[optind] == apt_next || argv[optind + 1] == apt_next)) {
                apt_pkg = apt_next;
                name = argv[optind] == apt_next ? argv[optind + 1] : argv[optind];
        } else {
                return cli_usage_error(cli, n_pos == 0 ? "give the kernel a NAME" : "give exactly one NAME");
        }
        if (!!deb == apt)
                return cli_usage_error(cli, "give one of --deb FILE or --apt [PACKAGE]");
        if (apt_pkg && !*apt_pkg)
                return cli_usage_error(cli, "--apt wants a package name");

        struct kernel_source src = { .deb = deb, .apt = apt ? (apt_pkg ? apt_pkg : KERNEL_APT_DEFAULT) : NULL };
        struct bg_err *err = NULL;
        json_t *meta = NULL;
        spawn_trap_signals();
        int64_t t0 = now_mono_ms();
        if (kernel_import(&cli->paths, name, &src, &meta, &err) < 0)
                return error_out(err);
        fprintf(stderr, "done in %.1f s\n", (double)(now_mono_ms() - t0) / 1000.0);
        printf("kernel/%s imported (%s)\n", name, json_string_value(json_object_get(meta, "version")));
        json_decref(meta);
        return EXIT_OK;
}

static void kernel_row(const json_t *k, char *version, char *source, size_t len)
{
        const char *v = json_string_value(json_object_get(k, "version"));
        const char *src = json_string_value(json_object_get(k, "source"));
        snprintf(version, len, "%s", v ? v : "");
        snprintf(source, len, "%s", src ? src : "");
}

static int kernel_list(struct cli *cli, int argc, char **argv, char *label)
{
        return catalog_cmd_list(cli, argc, argv, label, "kernels", "VERSION", "SOURCE", kernel_row);
}

static int kernel_rm(struct cli *cli, int argc, char **argv, char *label)
{
        return catalog_cmd_rm(cli, argc, argv, label, "kernel");
}

int cmd_kernel(struct cli *cli, int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*fn)(struct cli *, int, char **, char *);
        } subs[] = { { "import", kernel_import_cmd }, { "list", kernel_list }, { "ls", kernel_list },
                     { "rm", kernel_rm } };
        if (argc < 2)
                return cli_usage_error(cli, "give a subcommand: import, list or rm");
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
                return cli_help(cli);
        for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
                if (strcmp(argv[1], subs[i].name) != 0)
                        continue;
                _cleanup_free_ char *label = xasprintf("%s %s", cli->label, argv[1]);
                return subs[i].fn(cli, argc - 1, argv + 1, label);
        }
        return cli_usage_error(cli, "unknown subcommand '%s'", argv[1]);
}
