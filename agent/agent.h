/* banger-agent internals: what main.c (transport, connections, dispatch),
 * exec.c (processes) and sysinfo.c (stats, hello facts, shutdown) share.
 * The agent is one thread around one poll(); nothing here blocks for
 * long, and every queue is bounded. */
#ifndef BANGER_AGENT_H
#define BANGER_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent_proto.h"

#define AGENT_VERSION "0.1.0"
#define OUTQ_MAX (2u << 20)      /* bytes queued towards the host; past it the connection is dropped */
#define OUTQ_HIGH (256u << 10)   /* past it, process output is not read */
#define STDIN_WINDOW (256u << 10)
#define MAX_SESSIONS 64
#define MAX_WRITES 8
#define AGENT_EXIT_POWEROFF 64   /* --fd mode: exit status for "the host asked to power off" */

struct bytes {
        uint8_t *p;
        size_t off, len, cap;   /* live bytes are p[off .. off+len) */
};

void bytes_add(struct bytes *b, const void *p, size_t n);
void bytes_drop(struct bytes *b, size_t n);
void bytes_free(struct bytes *b);

struct conn {
        int fd;
        bool serial;            /* the virtio-serial port: never closed, only "down" */
        bool down;              /* serial: the host is not connected */
        bool dead;              /* vsock: to be closed */
        bool stalled;           /* the host stopped reading: main() resets it (sessions and all) */
        uint8_t in[AGP_MAX_FRAME];
        size_t in_len;
        struct bytes out;
};

/* Queue a sealed frame on c (dropped when c is gone or the frame did not seal). */
void conn_send(struct conn *c, struct agp_out *o);
/* A frame builder for the one thread (static storage). */
struct agp_out *frame(uint8_t type, uint64_t id);
/* Uptime in microseconds (CLOCK_BOOTTIME). */
uint64_t uptime_us(void);
/* Print one line to stderr (the console), "banger-agent: ...". */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* exec.c */
struct pollfd;
void exec_start(struct conn *c, const struct agp_msg *m);
void exec_input(struct conn *c, const struct agp_msg *m);   /* STDIN, EOF, SIGNAL, WINDOW */
/* Add the fds sessions want polled; returns how many were added. */
size_t exec_pollfds(struct pollfd *p, size_t max, int *timeout_ms);
void exec_ready(const struct pollfd *p, size_t n);
void exec_reap(void);                       /* after SIGCHLD */
void exec_conn_gone(struct conn *c);        /* kill that connection's sessions */
size_t exec_count(void);
extern uint64_t exec_started_total;
extern uint64_t exec_last_activity_us;

/* sysinfo.c */
void stats_reply(struct conn *c, uint64_t id);
extern bool agent_rooted;   /* in the guest's root filesystem: requests are served */
void hello_send(struct conn *c, uint64_t init_us, uint64_t start_us);
void write_chunk(struct conn *c, const struct agp_msg *m);
void write_conn_gone(struct conn *c);
/* Power the guest off: ask init, then force it after a grace period.  Never returns. */
void shutdown_guest(void) __attribute__((noreturn));

#endif
