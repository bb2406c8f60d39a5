/* sshexec: banger's SSH client side, for `vm run`, `vm create` and `vm ssh`.
 *
 * Commands run through libssh2, so the CLI carries stdin, stdout, stderr
 * and the exit status itself; interactive sessions exec OpenSSH (a real
 * terminal, escape sequences, agent forwarding the user may configure).
 * Both trust exactly one thing: the host key banger pinned for the guest
 * in its own known_hosts before the guest first booted (known_hosts.h).
 * There is no trust on first use: a guest without a pin is refused, and a
 * key that differs from the pin is refused as a possible MITM. */
#ifndef BANGER_SSHEXEC_H
#define BANGER_SSHEXEC_H

#include <signal.h>
#include <stdbool.h>

struct bg_err;
struct sshx;

struct ssh_target {
        const char *name;          /* sandbox name: the pin for NAME.vm */
        const char *ip;            /* the guest's address: the pin for it, and where to connect */
        int port;                  /* 22 */
        const char *known_hosts;   /* banger's known_hosts */
        const char *key;           /* banger's user private key */
};

/* Code of a refused host key (the message says "possible MITM"). */
#define SSHX_EHOSTKEY 1000

/* Connect, check the host key against the pins for both the address and
 * NAME.vm, and log in as root with the key.  One attempt within
 * timeout_ms. */
int sshx_connect(const struct ssh_target *t, int timeout_ms, struct sshx **out, struct bg_err **err);

/* sshx_connect until it works or timeout_ms pass: a guest still booting
 * refuses or drops connections.  A refused host key ends the wait at once
 * (code SSHX_EHOSTKEY); on timeout the error says what the last attempt
 * met.  ETIMEDOUT then. */
int sshx_wait(const struct ssh_target *t, int timeout_ms, struct sshx **out, struct bg_err **err);

/* Run cmd (a shell command line) in the guest: in_fd's bytes go to its
 * stdin until EOF (in_fd < 0: none), its stdout and stderr to out_fd and
 * err_fd as they come.  *status gets its exit status, or 128+N when
 * signal N ended it (as a shell reports it). */
int sshx_exec(struct sshx *s, const char *cmd, int in_fd, int out_fd, int err_fd, int *status,
              struct bg_err **err);

void sshx_close(struct sshx *s);   /* NULL is a no-op */

/* Set (from a signal handler) to make sshx_wait and sshx_exec give up at
 * their next turn: they return -EINTR ("interrupted").  The caller's
 * handler must be installed without SA_RESTART so poll() wakes. */
extern volatile sig_atomic_t sshx_interrupted;

/* argv as one shell command line, each word single-quoted when it needs
 * to be (heap). */
char *sshx_quote_argv(char *const *argv, int argc);

/* One word single-quoted for a POSIX shell (heap). */
char *sshx_quote(const char *word);

/* The OpenSSH command line for an interactive session or command (heap
 * NULL-terminated array of heap strings; free with strv_free): banger's
 * key only, banger's known_hosts only, StrictHostKeyChecking=yes, and
 * HostKeyAlias NAME.vm so the pin is checked even by address.  remote may
 * be NULL (a login shell); tty asks for a terminal (-t). */
char **sshx_openssh_argv(const struct ssh_target *t, bool tty, const char *remote);

void strv_free(char **v);

#endif
