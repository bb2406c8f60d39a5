/* banger: the user's command.  It validates spec files and writes them into
 * the watched folder, and reads status and events from bangerd's read-only
 * API; it never changes a VM itself.  This file holds the command table,
 * the global options (--root, BANGER_ROOT) and the dispatch; each command
 * lives in its own cmd_*.c with its own option parsing. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "err.h"
#include "kernel_import.h"
#include "util.h"
#include "version.h"

/* Help of the catalog commands, which run in banger-full (cli_full). */
static const char kernel_usage[] =
        "kernel import NAME (--deb FILE | --apt [PACKAGE])\n"
        "       banger kernel list [-o table|json]\n"
        "       banger kernel rm NAME... [--force]";
static const char kernel_summary[] = "import, list and remove guest kernels";
static const char kernel_options[] =
        "  import NAME                make kernel NAME from a Debian kernel package\n"
        "      --deb FILE             from a .deb on disk\n"
        "      --apt [PACKAGE]        from apt (default " KERNEL_APT_DEFAULT ")\n"
        "  list\n"
        "  -o, --output FORMAT        table (default) or json\n"
        "  rm NAME...\n"
        "      --force                remove even when bangerd cannot say whether a sandbox uses it\n";

static const char image_usage[] =
        "image build RECIPE [--name NAME] [--size SIZE]\n"
        "       banger image register NAME --rootfs FILE\n"
        "       banger image list [-o table|json]\n"
        "       banger image rm NAME... [--force]";
static const char image_summary[] = "build, register, list and remove root filesystem images";
static const char image_options[] =
        "  build RECIPE               build an image: tiny (busybox + dropbear, seconds) or\n"
        "                             debian-bookworm (debootstrap, about a minute)\n"
        "      --name NAME            call it NAME (default: the recipe's name)\n"
        "      --size SIZE            filesystem size, like 512M or 2G (tiny 256M, debian-bookworm 2G)\n"
        "  register NAME\n"
        "      --rootfs FILE          an ext4 filesystem image to copy in\n"
        "  list\n"
        "  -o, --output FORMAT        table (default) or json\n"
        "  rm NAME...\n"
        "      --force                remove even when bangerd cannot say whether a sandbox uses it\n";

/* The catalog commands need libarchive: banger-full runs them. */
static int run_kernel(struct cli *cli, int argc, char **argv)
{
        return cli_full.kernel ? cli_full.kernel(cli, argc, argv) : cli_exec_full(cli);
}

static int run_image(struct cli *cli, int argc, char **argv)
{
        return cli_full.image ? cli_full.image(cli, argc, argv) : cli_exec_full(cli);
}

static const struct cli_cmd commands[] = {
        { "apply", cmd_apply,
          "apply -f FILE|DIR|- [--no-wait] [--timeout SECONDS] [--dry-run] [--recreate]",
          "validate sandbox specs, write them to the sandboxes folder and wait until they converge",
          "  -f, --filename FILE|DIR|-  a spec file, a folder of *.yaml/*.yml, or - for stdin (repeatable)\n"
          "      --no-wait              return once the files are written\n"
          "      --timeout SECONDS      how long to wait for convergence (default 120)\n"
          "      --dry-run              validate and show what would be written; contact no daemon\n"
          "      --recreate             allow changes that delete and recreate a sandbox (its disks are lost)\n" },
        { "get", cmd_get,
          "get [NAME] [-o table|json|yaml] [-w|--watch] [-l key=value]",
          "show sandboxes and their status",
          "  -o, --output FORMAT        table (default), json or yaml\n"
          "  -w, --watch                after the listing, print rows again as they change\n"
          "  -l, --selector key=value   only sandboxes with this label\n" },
        { "delete", cmd_delete,
          "delete NAME... [--no-wait] [--timeout SECONDS]",
          "remove sandboxes' specs from the sandboxes folder and wait until they are gone",
          "      --no-wait              return once the files are changed\n"
          "      --timeout SECONDS      how long to wait for deletion (default 120)\n" },
        { "diff", cmd_diff,
          "diff -f FILE|DIR|-",
          "show what apply would change, field by field (exit 1 when something would)",
          "  -f, --filename FILE|DIR|-  a spec file, a folder of *.yaml/*.yml, or - for stdin (repeatable)\n" },
        { "events", cmd_events,
          "events [-f|--follow] [--since SEQ] [--name NAME] [-o json]",
          "print the daemon's events",
          "  -f, --follow               keep printing new events as they happen\n"
          "      --since SEQ            only events after sequence number SEQ\n"
          "      --name NAME            only events of this sandbox\n"
          "  -o, --output json          print the raw JSON lines\n" },
        { "kernel", run_kernel, kernel_usage, kernel_summary, kernel_options },
        { "image", run_image, image_usage, image_summary, image_options },
        { "vm", cmd_vm, vm_usage, vm_summary, vm_options },
        { "doctor", cmd_doctor, "doctor [-o text|json]",
          "what this host offers (hypervisors, KVM, kernels, images) and what bangerd makes of it", NULL },
        { "ssh-config", cmd_sshconfig, "ssh-config [--install|--uninstall]",
          "print, install or remove the Include that lets plain 'ssh NAME.vm' use banger's key",
          "      --install              add the Include at the top of ~/.ssh/config in a marker-fenced block\n"
          "      --uninstall            remove exactly that block again\n" },
        { "version", cmd_version,
          "version",
          "print the client's and the daemon's versions",
          NULL },
};

static void print_main_usage(FILE *out)
{
        fprintf(out, "usage: banger [--root DIR] COMMAND [ARGS]\n\ncommands:\n");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
        fprintf(out, "\nglobal options:\n"
                     "  --root DIR    keep every path under DIR (also $BANGER_ROOT)\n"
                     "  -h, --help    show this help\n"
                     "\nRun 'banger COMMAND --help' for a command's options.\n");
}

static const struct cli_cmd *find_command(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

void cli_getopt_reset(struct cli *cli, char **argv)
{
        optind = 0;   /* GNU: reinitialise, start at argv[1] */
        opterr = 1;
        argv[0] = cli->label;
}

int cli_help(const struct cli *cli)
{
        printf("usage: banger %s\n\n%s\n", cli->cmd->usage, cli->cmd->summary);
        if (cli->cmd->options)
                printf("\noptions:\n%s", cli->cmd->options);
        printf("  -h, --help                 show this help\n");
        return EXIT_OK;
}

int cli_usage_error(const struct cli *cli, const char *fmt, ...)
{
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                fprintf(stderr, "%s: ", cli->label);
                vfprintf(stderr, fmt, ap);
                fputc('\n', stderr);
                va_end(ap);
        }
        fprintf(stderr, "usage: banger %s\n", cli->cmd->usage);
        return EXIT_USAGE;
}

void cli_error(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fputs("banger: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

int cli_exec_full(const struct cli *cli)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) {
                cli_error("%s needs banger-full, and /proc/self/exe cannot be read: %s", cli->label,
                          n < 0 ? strerror(errno) : "empty");
                return EXIT_ERR;
        }
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        _cleanup_free_ char *full = xasprintf("%.*s/banger-full", slash ? (int)(slash - self) : 0, self);
        fflush(stdout);
        fflush(stderr);
        execv(full, cli->argv);
        cli_error("%s needs %s (built and installed beside banger): %s", cli->label, full, strerror(errno));
        return EXIT_ERR;
}

int cli_parse_timeout(const char *s)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 1 || v > 86400)
                return -1;
        return (int)v;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "root", required_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        const char *root = NULL;
        int c;
        char *argv0 = argv[0];

        argv[0] = (char *)"banger";   /* for getopt's messages */
        /* "+": stop at the command name; its options are its own. */
        while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
                switch (c) {
                case 'r':
                        root = optarg;
                        break;
                case 'h':
                        print_main_usage(stdout);
                        return EXIT_OK;
                case 'V':
                        printf("banger %s\n", BANGER_VERSION);
                        return EXIT_OK;
                default:
                        print_main_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                print_main_usage(stderr);
                return EXIT_USAGE;
        }

        const char *name = argv[optind];
        if (strcmp(name, "help") == 0) {
                if (optind + 1 >= argc) {
                        print_main_usage(stdout);
                        return EXIT_OK;
                }
                const struct cli_cmd *h = find_command(argv[optind + 1]);
                if (!h) {
                        cli_error("unknown command '%s'; see 'banger --help'", argv[optind + 1]);
                        return EXIT_USAGE;
                }
                struct cli hc = { .cmd = h };
                return cli_help(&hc);
        }
        const struct cli_cmd *cmd = find_command(name);
        if (!cmd) {
                cli_error("unknown command '%s'; see 'banger --help'", name);
                return EXIT_USAGE;
        }
        if (root && !*root) {
                cli_error("--root needs a folder");
                return EXIT_USAGE;
        }

        struct cli cli = { .cmd = cmd };
        struct bg_err *err = NULL;
        if (paths_init(&cli.paths, root, &err) < 0) {
                cli_error("%s", bg_err_msg(err));
                bg_err_free(err);
                return EXIT_ERR;
        }
        /* Commands permute their argv while parsing it; banger-full gets
         * the command line as it came. */
        char **own = xcalloc((size_t)argc + 1, sizeof *own);
        for (int i = 0; i < argc; i++)
                own[i] = xstrdup(i ? argv[i] : argv0);
        cli.argv = own;
        cli.label = xasprintf("banger %s", cmd->name);

        int rc = cmd->fn(&cli, argc - optind, argv + optind);

        fflush(stdout);
        free(cli.label);
        paths_release(&cli.paths);
        for (int i = 0; i < argc; i++)
                free(own[i]);
        free(own);
        return rc;
}
