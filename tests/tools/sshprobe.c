/* sshprobe: banger's libssh2 client (common/sshexec.c) by hand, for tests.
 *
 *   sshprobe NAME IP PORT KNOWN_HOSTS KEY [CMD]
 *
 * Connects with the host key checked against KNOWN_HOSTS's banger pins for
 * IP and NAME.vm, logs in as root with KEY, runs CMD (stdin/stdout/stderr
 * carried) and exits with its status.  Without CMD it stops after the
 * login.  Errors go to stderr; exit 90 for a refused host key, 91 for any
 * other connection failure. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "err.h"
#include "sshexec.h"

int main(int argc, char **argv)
{
        if (argc != 6 && argc != 7) {
                fprintf(stderr, "usage: sshprobe NAME IP PORT KNOWN_HOSTS KEY [CMD]\n");
                return 2;
        }
        struct ssh_target t = { .name = argv[1], .ip = argv[2], .port = atoi(argv[3]), .known_hosts = argv[4],
                                .key = argv[5] };
        struct sshx *s = NULL;
        struct bg_err *err = NULL;
        if (sshx_connect(&t, 5000, &s, &err) < 0) {
                fprintf(stderr, "sshprobe: %s\n", bg_err_msg(err));
                int code = err->code == SSHX_EHOSTKEY ? 90 : 91;
                bg_err_free(err);
                return code;
        }
        int status = 0;
        if (argc == 7 && sshx_exec(s, argv[6], STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, &status, &err) < 0) {
                fprintf(stderr, "sshprobe: %s\n", bg_err_msg(err));
                bg_err_free(err);
                status = 91;
        }
        sshx_close(s);
        return status;
}
