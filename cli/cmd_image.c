/* banger image: the catalog's root filesystem images (catalog.h).
 * `build` runs a recipe (image_build.h), `register` brings in an ext4
 * file made elsewhere (imgfile.h), `list` shows them, `rm` removes one no
 * sandbox uses (inuse.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "catalog_cmd.h"
#include "cli.h"
#include "err.h"
#include "image_build.h"
#include "imgfile.h"
#include "inuse.h"
#include "output.h"
#include "spawn.h"
#include "util.h"


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

static int image_build_cmd(struct cli *cli, int argc, char **argv, char *label)
{
        enum { OPT_NAME = 256, OPT_SIZE };
        static const struct option opts[] = {
                { "name", required_argument, NULL, OPT_NAME },
                { "size", required_argument, NULL, OPT_SIZE },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const char *name = NULL;
        uint64_t size = 0;
        int ch;
        sub_getopt_reset(cli, argv, label);
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case OPT_NAME:
                        name = optarg;
                        break;
                case OPT_SIZE:
                        if (image_parse_size(optarg, &size) < 0)
                                return cli_usage_error(cli, "--size wants a size like 512M or 2G, not '%s'", optarg);
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (argc - optind != 1)
                return cli_usage_error(cli, "give exactly one RECIPE (%s)", image_recipe_names());
        const struct image_recipe *r = image_recipe_find(argv[optind]);
        if (!r)
                return cli_usage_error(cli, "unknown recipe '%s' (recipes: %s)", argv[optind], image_recipe_names());
        if (!name)
                name = r->name;
        if (!size)
                size = r->default_size;

        struct bg_err *err = NULL;
        json_t *meta = NULL;
        spawn_trap_signals();
        int64_t t0 = now_mono_ms();
        if (image_build(&cli->paths, r, name, size, &meta, &err) < 0)
                return error_out(err);
        char sz[32];
        image_format_size(size, sz, sizeof sz);
        fprintf(stderr, "done in %.1f s\n", (double)(now_mono_ms() - t0) / 1000.0);
        printf("image/%s built (%s, %s)\n", name, r->name, sz);
        json_decref(meta);
        return EXIT_OK;
}

static int image_register(struct cli *cli, int argc, char **argv, char *label)
{
        enum { OPT_ROOTFS = 256 };
        static const struct option opts[] = {
                { "rootfs", required_argument, NULL, OPT_ROOTFS },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const char *rootfs = NULL;
        int ch;
        sub_getopt_reset(cli, argv, label);
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case OPT_ROOTFS:
                        rootfs = optarg;
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (argc - optind != 1)
                return cli_usage_error(cli, "give exactly one NAME");
        if (!rootfs || !*rootfs)
                return cli_usage_error(cli, "give the filesystem with --rootfs FILE");
        const char *name = argv[optind];

        struct bg_err *err = NULL;
        if (!catalog_name_valid(name)) {
                cli_error("invalid image name '%s': want lowercase letters, digits, '.', '_', '-' (at most 63, "
                          "starting with a letter or digit)", name);
                return EXIT_ERR;
        }
        _cleanup_free_ char *existing = xasprintf("%s/images/%s/image.json", cli->paths.state_dir, name);
        if (access(existing, F_OK) == 0) {
                cli_error("image '%s' already exists (banger image rm %s first)", name, name);
                return EXIT_ERR;
        }
        char abs[PATH_MAX];
        if (!realpath(rootfs, abs)) {
                cli_error("%s: %s", rootfs, strerror(errno));
                return EXIT_ERR;
        }
        uint64_t size;
        if (imgfile_check_ext4(abs, &size, &err) < 0)
                return error_out(err);

        char *dir = NULL;
        if (catalog_begin(cli->paths.state_dir, "images", name, &dir, &err) < 0)
                return error_out(err);
        _cleanup_free_ char *dst = xasprintf("%s/rootfs.ext4", dir);
        int r = imgfile_copy(abs, dst, &err);
        if (r == 0) {
                char created[64];
                format_time_ms(now_wall_ms(), created, sizeof created);
                json_t *m = json_pack("{s:s, s:n, s:s, s:I, s:s}", "name", name, "recipe", "source", abs, "size",
                                      (json_int_t)size, "created", created);
                r = catalog_commit(dir, "images", m, &err);
                json_decref(m);
        }
        if (r < 0)
                rm_rf(dir, NULL);
        free(dir);
        if (r < 0)
                return error_out(err);
        printf("image/%s registered\n", name);
        return EXIT_OK;
}

static void image_row(const json_t *img, char *recipe, char *size, size_t len)
{
        const char *r = json_string_value(json_object_get(img, "recipe"));
        snprintf(recipe, len, "%s", r ? r : "(registered)");
        snprintf(size, len, "-");
        const json_t *sz = json_object_get(img, "size");
        if (json_is_integer(sz) && json_integer_value(sz) >= 0)
                image_format_size((uint64_t)json_integer_value(sz), size, len);
}

static int image_list(struct cli *cli, int argc, char **argv, char *label)
{
        return catalog_cmd_list(cli, argc, argv, label, "images", "RECIPE", "SIZE", image_row);
}

static int image_rm(struct cli *cli, int argc, char **argv, char *label)
{
        return catalog_cmd_rm(cli, argc, argv, label, "image");
}

int cmd_image(struct cli *cli, int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*fn)(struct cli *, int, char **, char *);
        } subs[] = { { "build", image_build_cmd }, { "register", image_register }, { "list", image_list },
                     { "ls", image_list }, { "rm", image_rm } };
        if (argc < 2)
                return cli_usage_error(cli, "give a subcommand: build, register, list or rm");
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
