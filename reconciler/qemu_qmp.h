/* qemu_qmp: a tiny QMP client for the QEMU driver: connect to a VM's
 * qmp.sock, read the greeting, negotiate capabilities, run argument-less
 * commands (query-status, system_powerdown, quit).  Asynchronous events
 * are skipped.  QEMU is a local but not fully trusted peer (the guest
 * drives some of what it says): lines are size-limited and every read has
 * a deadline. */
#ifndef BANGER_QEMU_QMP_H
#define BANGER_QEMU_QMP_H

struct bg_err;

struct qemu_qmp {
        int fd;
        unsigned long n;
        char buf[16384];
};

/* Connect to DIR/qmp.sock (through /proc/self/fd of DIR, so a long path
 * cannot exceed sun_path) and negotiate, within timeout_ms. */
int qemu_qmp_open(const char *dir, int timeout_ms, struct qemu_qmp *c, struct bg_err **err);
/* Run cmd; 0 when QEMU answered "return", -EIO with its "desc" on "error". */
int qemu_qmp_exec(struct qemu_qmp *c, const char *cmd, int timeout_ms, struct bg_err **err);
void qemu_qmp_close(struct qemu_qmp *c);
/* open + exec + close. */
int qemu_qmp_command(const char *dir, const char *cmd, int timeout_ms, struct bg_err **err);

#endif
