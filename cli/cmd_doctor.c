/* banger doctor: what this host offers and what bangerd makes of it.
 *
 * Local checks (binaries on PATH and their versions, /dev/kvm, kernels and
 * images in the catalog) work without a daemon; the daemon adds what only
 * it knows (drivers, the acceleration its probe found and why, the disk
 * method, vm_defaults with where each value came from). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog.h"
#include "cli.h"
#include "client.h"
#include "err.h"
#include "util.h"
#include "version.h"

extern char **environ;

/* Absolute path of prog on PATH, or NULL. */
static char *which(const char *prog)
{
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = xstrdup(path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        char *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                char *p = xasprintf("%s/%s", dir, prog);
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

/* First line of `bin --version`, or NULL. */
static char *version_of(const char *bin)
{
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return NULL;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        char *argv[] = { (char *)bin, (char *)"--version", NULL };
        pid_t pid;
        int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        char buf[256] = "";
        size_t n = 0;
        if (rc == 0) {
                ssize_t r;
                while (n < sizeof buf - 1 && (r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0)
                        n += (size_t)r;
                waitpid(pid, NULL, 0);
        }
        close(fds[0]);
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return n ? xstrdup(buf) : NULL;
}

static json_t *binary_info(const char *prog)
{
        _cleanup_free_ char *p = which(prog);
        if (!p)
                return json_pack("{s:b}", "found", 0);
        _cleanup_free_ char *v = version_of(p);
        return json_pack("{s:b, s:s, s:s?}", "found", 1, "path", p, "version", v);
}

static json_t *kvm_info(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
                close(fd);
                return json_pack("{s:b, s:s}", "device", 1, "note",
                                 "opens; bangerd boots a probe guest to tell whether KVM really works");
        }
        return json_pack("{s:b, s:s}", "device", 0, "note",
                         errno == ENOENT ? "no /dev/kvm: guests run under QEMU TCG (software emulation)"
                                         : strerror(errno));
}

static void print_report(const json_t *local, const json_t *daemon, const char *daemon_err)
{
        printf("banger %s\n\nhypervisors\n", BANGER_VERSION);
        const char *progs[] = { "qemu-system-x86_64", "firecracker" };
        for (size_t i = 0; i < ARRAY_SIZE(progs); i++) {
                json_t *b = json_object_get(json_object_get(local, "binaries"), progs[i]);
                if (json_is_true(json_object_get(b, "found")))
                        printf("  %-20s %s (%s)\n", progs[i], json_string_value(json_object_get(b, "path")),
                               json_string_value(json_object_get(b, "version")) ?: "version unknown");
                else
                        printf("  %-20s not found%s\n", progs[i],
                               i == 0 ? " (apt-get install qemu-system-x86)" : " (optional; needs KVM)");
        }
        json_t *kvm = json_object_get(local, "kvm");
        printf("  %-20s %s\n", "kvm", json_string_value(json_object_get(kvm, "note")));

        printf("\nkernels\n");
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(local, "kernels"), i, v)
                printf("  %-20s %s\n", json_string_value(json_object_get(v, "name")),
                       json_string_value(json_object_get(v, "version")) ?: "");
        if (!json_array_size(json_object_get(local, "kernels")))
                printf("  none (banger kernel import default --apt)\n");
        printf("\nimages\n");
        json_array_foreach(json_object_get(local, "images"), i, v)
                printf("  %-20s %s\n", json_string_value(json_object_get(v, "name")),
                       json_string_value(json_object_get(v, "recipe")) ?: "");
        if (!json_array_size(json_object_get(local, "images")))
                printf("  none (banger image build tiny)\n");

        printf("\nbangerd\n");
        if (!daemon) {
                printf("  not reachable: %s\n", daemon_err);
                return;
        }
        json_array_foreach(json_object_get(daemon, "drivers"), i, v) {
                printf("  driver %-13s", json_string_value(json_object_get(v, "name")));
                const char *key;
                json_t *val;
                json_object_foreach(v, key, val) {
                        if (strcmp(key, "name") == 0)
                                continue;
                        if (json_is_string(val))
                                printf(" %s=%s", key, json_string_value(val));
                        else if (json_is_boolean(val) || json_is_integer(val)) {
                                char *t = json_dumps(val, JSON_ENCODE_ANY);
                                printf(" %s=%s", key, t);
                                free(t);
                        }
                }
                printf("\n");
        }
        if (!json_is_true(json_object_get(daemon, "firecracker_usable")))
                printf("  firecracker          not used: %s\n",
                       json_string_value(json_object_get(daemon, "why_not_firecracker")) ?: "");
        printf("\nvm_defaults\n");
        const char *keys[] = { "vcpu", "memory_mib", "disk_size", "image" };
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
                json_t *d = json_object_get(json_object_get(daemon, "vm_defaults"), keys[k]);
                json_t *val = json_object_get(d, "value");
                char *t = json_is_string(val) ? xstrdup(json_string_value(val)) : json_dumps(val, JSON_ENCODE_ANY);
                printf("  %-20s %s (from %s)\n", keys[k], t ? t : "?",
                       json_string_value(json_object_get(d, "from")) ?: "?");
                free(t);
        }
}

int cmd_doctor(struct cli *cli, int argc, char **argv)
{
        static const struct option opts[] = { { "output", required_argument, NULL, 'o' },
                                              { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
        bool json = false;
        int c;
        cli_getopt_reset(cli, argv);
        while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
                if (c == 'o' && (strcmp(optarg, "json") == 0 || strcmp(optarg, "text") == 0))
                        json = strcmp(optarg, "json") == 0;
                else if (c == 'h')
                        return cli_help(cli);
                else if (c == 'o')
                        return cli_usage_error(cli, "-o wants text or json");
                else
                        return EXIT_USAGE;   /* getopt said why */
        }
        if (optind != argc)
                return cli_usage_error(cli, "doctor takes no arguments");

        json_t *local = json_pack("{s:{s:o, s:o}, s:o, s:o, s:o}", "binaries",
                                  "qemu-system-x86_64", binary_info("qemu-system-x86_64"),
                                  "firecracker", binary_info("firecracker"),
                                  "kvm", kvm_info(),
                                  "kernels", catalog_list(cli->paths.state_dir, "kernels"),
                                  "images", catalog_list(cli->paths.state_dir, "images"));
        struct client *cl = client_new(cli->paths.socket);
        json_t *daemon = NULL;
        struct bg_err *err = NULL;
        client_get_ok(cl, "/v1/doctor", &daemon, &err);
        client_free(cl);
        if (json) {
                json_t *all = json_pack("{s:s, s:o, s:o}", "version", BANGER_VERSION, "host", local, "daemon",
                                        daemon ? daemon : json_pack("{s:s}", "error", bg_err_msg(err)));
                char *s = json_dumps(all, JSON_INDENT(2));
                printf("%s\n", s);
                free(s);
                json_decref(all);
        } else {
                print_report(local, daemon, bg_err_msg(err));
                json_decref(local);
                json_decref(daemon);
        }
        bg_err_free(err);
        return EXIT_OK;
}
