/* cli: what every command of `banger` shares: the command table entry,
 * the resolved paths, and the few helpers that keep messages and exit codes
 * uniform (stdout for data, stderr for progress and errors; exit 0 ok,
 * 1 error, 2 usage). */
#ifndef BANGER_CLI_H
#define BANGER_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "paths.h"

#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130   /* ^C, as a shell reports it */

/* Default for --timeout of apply and delete, in seconds. */
#define CLI_DEFAULT_TIMEOUT 120

struct cli;

struct cli_cmd {
        const char *name;
        int (*fn)(struct cli *cli, int argc, char **argv);
        const char *usage;     /* after "banger ": "apply -f FILE|DIR|- [...]" */
        const char *summary;   /* one line */
        const char *options;   /* option lines for --help, or NULL */
};

struct cli {
        struct bg_paths paths;
        const struct cli_cmd *cmd;   /* the command being run */
        char *label;                 /* "banger apply", for getopt's messages */
        char **argv;                 /* the process's own command line, for cli_exec_full */
};

/* Two builds of the CLI.  banger-full has every part (cli/full.c).
 * banger, the one users run, leaves out the parts that need libgit2 or
 * libarchive (kernel and image commands, workspaces: cli/lean.c holds
 * NULLs), because loading those libraries took 6 of the 10 ms every
 * command spent starting; for them it becomes banger-full, which sits
 * beside it, with the same command line (cli_exec_full). */
struct ws_list;
struct bg_err;
struct cli_full_parts {
        int (*kernel)(struct cli *cli, int argc, char **argv);
        int (*image)(struct cli *cli, int argc, char **argv);
        int (*workspace_list)(const char *path, bool include_untracked, struct ws_list *out, struct bg_err **err);
};
extern const struct cli_full_parts cli_full;

/* exec banger-full (beside this executable) with cli->argv; returns
 * EXIT_ERR after saying why only when that cannot be done. */
int cli_exec_full(const struct cli *cli);

int cmd_apply(struct cli *cli, int argc, char **argv);
int cmd_get(struct cli *cli, int argc, char **argv);
int cmd_delete(struct cli *cli, int argc, char **argv);
/* Remove names' documents from the folder and (wait) until the daemon
 * has torn them down; prints "sandbox/NAME deleted" for each to out. */
int cli_delete_names(struct cli *cli, const char *const *names, size_t n, bool wait, int timeout, FILE *out);
/* vm run / vm create / vm ssh (cmd_vmrun.c). */
int vm_run(struct cli *cli, int argc, char **argv);
int vm_create(struct cli *cli, int argc, char **argv);
int vm_ssh(struct cli *cli, int argc, char **argv);
/* vm exec / vm stats through the guest agent (cmd_vmexec.c). */
int vm_exec(struct cli *cli, int argc, char **argv);
int vm_stats(struct cli *cli, int argc, char **argv);
int cmd_diff(struct cli *cli, int argc, char **argv);
int cmd_events(struct cli *cli, int argc, char **argv);
int cmd_version(struct cli *cli, int argc, char **argv);
int cmd_kernel(struct cli *cli, int argc, char **argv);
int cmd_image(struct cli *cli, int argc, char **argv);
int cmd_vm(struct cli *cli, int argc, char **argv);
extern const char vm_usage[], vm_summary[], vm_options[];
int cmd_doctor(struct cli *cli, int argc, char **argv);
int cmd_sshconfig(struct cli *cli, int argc, char **argv);

/* Prepare argv for the command's getopt_long: reset getopt and name the
 * command in getopt's own messages. */
void cli_getopt_reset(struct cli *cli, char **argv);

/* Print the command's --help to stdout; returns EXIT_OK. */
int cli_help(const struct cli *cli);

/* Print "banger CMD: <msg>" and the usage line to stderr; returns
 * EXIT_USAGE.  fmt may be NULL when getopt already said what was wrong. */
int cli_usage_error(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "banger: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse a --timeout value: whole seconds, 1..86400.  -1 when invalid. */
int cli_parse_timeout(const char *s);

#endif
