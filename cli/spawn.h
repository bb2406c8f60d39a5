/* spawn: run the helper programs the catalog commands need (apt-get,
 * apt-cache, mkfs.ext4, debootstrap, ld.so, busybox) from an argv, never
 * through a shell.  The child gets /dev/null as stdin, LC_ALL=C, and only
 * the fds it is given; its stderr is kept (a bounded tail) so a failure
 * reads as one line: "mkfs.ext4: exited with status 1: <its last error>".
 *
 * Long commands trap SIGINT/SIGTERM/SIGHUP instead of dying at once, so
 * they can remove what they started; spawn_interrupted() tells them to
 * stop, and a child still running gets the signal forwarded.
 */
#ifndef BANGER_SPAWN_H
#define BANGER_SPAWN_H

#include <stdbool.h>
#include <stddef.h>

struct bg_err;

enum spawn_out {
        SPAWN_OUT_NULL,      /* stdout to /dev/null */
        SPAWN_OUT_CAPTURE,   /* stdout into *out (at most 4 MiB) */
        SPAWN_OUT_STDERR,    /* stdout to our stderr (progress) */
};

struct spawn_opts {
        enum spawn_out out;
        bool show_stderr;    /* pass the child's stderr through too (it is still kept for the error) */
        const char *cwd;     /* NULL: ours */
};

/* Run argv[0] (looked up in PATH, then /usr/sbin:/usr/bin:/sbin:/bin) and
 * wait for it.  0 when it exited with status 0 (*out, if asked for, is a
 * heap string the caller frees); negative with err when it could not run,
 * exited non-zero or was killed, or we were interrupted. */
int spawn_run(char *const argv[], const struct spawn_opts *o, char **out, struct bg_err **err);

/* The full path of program name as spawn_run would find it, or NULL.
 * Caller frees. */
char *spawn_which(const char *name);

/* Catch SIGINT, SIGTERM and SIGHUP from now on (idempotent). */
void spawn_trap_signals(void);
/* True once one of those signals arrived. */
bool spawn_interrupted(void);

#endif
