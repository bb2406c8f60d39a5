/* banger ssh-config: the opt-in `ssh NAME.vm` shortcut (see sshconfig.h).
 * Every mode but --uninstall first refreshes banger's own ssh_config, so
 * the Include it prints or installs points at a current file.  The user's
 * ~/.ssh/config changes only with --install or --uninstall. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "config.h"
#include "err.h"
#include "sshconfig.h"
#include "sshkey.h"
#include "util.h"

static int refresh(struct cli *cli, const char *home, char **include, struct bg_err **err)
{
        struct bg_config cfg;
        if (config_load(cli->paths.config_file, &cfg, err) < 0) {
                config_release(&cfg);
                return -1;
        }
        _cleanup_free_ char *key = NULL;
        int rc = sshkey_user_key_path(cfg.ssh_key_path, home, cli->paths.ssh_dir, &key, err);
        config_release(&cfg);
        if (rc < 0)
                return rc;
        _cleanup_free_ char *path = sshconfig_path(&cli->paths);
        _cleanup_free_ char *kh = sshconfig_known_hosts(&cli->paths);
        if (sshconfig_refresh(path, key, kh, NULL, err) < 0)
                return -1;
        *include = sshconfig_include_line(home, path, err);
        return *include ? 0 : -1;
}

int cmd_sshconfig(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "install", no_argument, NULL, 'i' },
                { "uninstall", no_argument, NULL, 'u' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        bool install = false, uninstall = false;
        int ch;

        cli_getopt_reset(cli, argv);
        while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (ch) {
                case 'i':
                        install = true;
                        break;
                case 'u':
                        uninstall = true;
                        break;
                case 'h':
                        return cli_help(cli);
                default:
                        return cli_usage_error(cli, NULL);
                }
        }
        if (optind < argc)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
        if (install && uninstall)
                return cli_usage_error(cli, "--install and --uninstall exclude each other");

        _cleanup_free_ char *home = sshconfig_home(&cli->paths);
        _cleanup_free_ char *user_config = xasprintf("%s/.ssh/config", home);
        _cleanup_free_ char *include = NULL;
        struct bg_err *err = NULL;
        bool changed = false;
        int rc = 0;

        if (uninstall) {
                rc = sshconfig_uninstall(home, &changed, &err);
                if (rc == 0)
                        fprintf(stderr, changed ? "removed banger's block from %s\n"
                                                : "no banger block in %s: nothing to do\n", user_config);
        } else if ((rc = refresh(cli, home, &include, &err)) == 0) {
                if (install) {
                        rc = sshconfig_install(home, include, &changed, &err);
                        if (rc == 0)
                                fprintf(stderr, changed ? "installed '%s' at the top of %s\n"
                                                        : "'%s' already installed in %s\n",
                                        include, user_config);
                } else {
                        printf("%s\n", include);
                        fprintf(stderr, "put this line at the top of %s (before any Host or Match line),\n"
                                        "or run 'banger ssh-config --install'\n", user_config);
                }
        }
        if (rc < 0) {
                cli_error("ssh-config: %s", bg_err_msg(err));
                bg_err_free(err);
                return EXIT_ERR;
        }
        return EXIT_OK;
}
