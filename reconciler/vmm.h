/* vmm: supervision of VMM processes (qemu, firecracker), shared by their
 * drivers, plus the one helper that runs short host tools.
 *
 * A VMM is spawned in two steps, so that its pid and start time reach the
 * store before it runs (write-ahead): vmm_spawn() forks a child that sits
 * blocked on a pipe, the driver persists the pid and start time, and
 * vmm_release() lets the child exec.  If the daemon dies in between, the
 * pipe closes and the child exits without ever running the VMM.
 *
 * A VMM outlives the daemon (its own session), so a set tracks both its
 * own children and processes adopted from a previous daemon, by pidfd:
 * a pid alone is never trusted.  Every pidfd sits in an epoll set whose fd
 * is the driver's event fd; vmm_drain() reaps what exited.  Entries are
 * keyed by the VM id.  All functions are thread-safe.
 */
#ifndef BANGER_VMM_H
#define BANGER_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bg_err;
struct vmm;

#define VMM_MAX_KEEP_FDS 32

/* What to run. */
struct vmm_cmd {
        const char *const *argv;   /* argv[0]: a path, or a name looked up in PATH */
        const char *log_path;      /* stdout and stderr are appended here (created 0600) */
        const char *cwd;           /* working folder; NULL: "/" */
        const int *keep_fds;       /* fds the VMM inherits at the same numbers (<= VMM_MAX_KEEP_FDS) */
        size_t n_keep_fds;
};

enum vmm_state {
        VMM_NONE,      /* no entry for this id */
        VMM_HELD,      /* spawned, waiting for vmm_release */
        VMM_RUNNING,
        VMM_EXITED,    /* status in *status: exit code, 128+signal, or -1 (unknown: adopted) */
};

int vmm_new(struct vmm **out, struct bg_err **err);
/* Close every pidfd; never signals a process (VMMs outlive the daemon). */
void vmm_free(struct vmm *m);
/* Readable when a tracked process may have exited; then call vmm_drain. */
int vmm_event_fd(const struct vmm *m);
/* Reap what exited; cb(id, label) for each entry that turned VMM_EXITED
 * (label: what vmm_label set for id, or NULL). */
void vmm_drain(struct vmm *m, void (*cb)(const char *id, const char *label, void *arg), void *arg);
/* Name id's process for vmm_drain's reports (the sandbox name), so drivers
 * need no id -> name map of their own.  It outlives the process entry (a
 * restart keeps it); a NULL label drops it (the sandbox is cleaned up). */
void vmm_label(struct vmm *m, const char *id, const char *label);

/* Step one: fork a child for id, blocked before exec, in a new session, its
 * fds closed but for cmd->keep_fds and stdio (stdin /dev/null, stdout and
 * stderr to cmd->log_path).  -EEXIST when id has a live entry.  -ENOENT
 * when argv[0] is not found.  *pid and *start_time (field 22 of
 * /proc/PID/stat) identify the process for adoption later. */
int vmm_spawn(struct vmm *m, const char *id, const struct vmm_cmd *cmd, pid_t *pid, uint64_t *start_time,
              struct bg_err **err);
/* Step two: let a VMM_HELD child exec.  Fails (and reaps the child, leaving
 * no entry) when exec fails. */
int vmm_release(struct vmm *m, const char *id, struct bg_err **err);

/* Track a process a previous daemon started: accepted only when pid is
 * alive, its start time is start_time and its command line holds
 * cmdline_needle.  -ESRCH when not (the process is gone or another one has
 * the pid).  Its exit status will be unknown (-1). */
int vmm_adopt(struct vmm *m, const char *id, pid_t pid, uint64_t start_time, const char *cmdline_needle,
              struct bg_err **err);
/* Record that id's VMM was seen gone before it could be tracked (status -1),
 * so that probes agree until vmm_forget. */
void vmm_mark_exited(struct vmm *m, const char *id);

/* State of id's entry, reaping it if it has exited.  status may be NULL. */
enum vmm_state vmm_state(struct vmm *m, const char *id, int *status);
/* pid of id's entry, 0 when none. */
pid_t vmm_pid(struct vmm *m, const char *id);
/* Signal id's live process through its pidfd.  -ESRCH when it has none. */
int vmm_signal(struct vmm *m, const char *id, int sig, struct bg_err **err);
/* Wait up to timeout_ms for id's process to exit (0), -ETIMEDOUT if it runs
 * on.  An id with no live process has exited. */
int vmm_wait(struct vmm *m, const char *id, int timeout_ms);
/* Drop id's entry (after a stop we asked for, or a cleanup).  A VMM_HELD
 * child is killed and reaped first; a running process is left alone. */
void vmm_forget(struct vmm *m, const char *id);

/* Start time (field 22 of /proc/PID/stat, clock ticks after boot) of pid. */
int vmm_proc_start_time(pid_t pid, uint64_t *start_time);

/* A process found by vmm_scan. */
struct vmm_found {
        pid_t pid;
        uint64_t start_time;
        char *cmdline;     /* NUL-separated arguments joined with spaces */
};
/* Every process whose command line holds needle.  *out is a heap array
 * (free with vmm_found_free). */
int vmm_scan(const char *needle, struct vmm_found **out, size_t *n, struct bg_err **err);
void vmm_found_free(struct vmm_found *f, size_t n);
/* SIGKILL pid when it still is the process (start time, needle) names, and
 * wait up to timeout_ms for it to end.  0 when it is gone (or was never
 * that process); -ETIMEDOUT when it lingers.  It does not reap: a child
 * tracked by a vmm set is reaped there, which reports its status. */
int vmm_kill_verified(pid_t pid, uint64_t start_time, const char *needle, int timeout_ms, struct bg_err **err);

/* Run a short host tool (mkfs.ext4, resize2fs, a probe VM) to completion,
 * no shell: stdin /dev/null, stdout+stderr captured.  argv[0] is looked up
 * in PATH, then /usr/sbin and /sbin.  *output (may be NULL) gets the last
 * 4 KiB of what it printed (heap).  A tool still running after timeout_ms
 * (<= 0: none) is killed: -ETIMEDOUT.  A non-zero exit is -EIO with the
 * tail of its output in the message.  *status (may be NULL) gets the exit
 * status. */
int vmm_run_tool(const char *const *argv, int timeout_ms, char **output, int *status, struct bg_err **err);

/* Find name in PATH (then /usr/sbin, /sbin): a heap path, or NULL. */
char *vmm_which(const char *name);

#endif
