/* agent_proto: the framing bangerd and banger-agent share (docs/agent-protocol.md).
 *
 * A frame is a 4-byte big-endian body length, then the body: one type
 * byte and a run of fields.  A field is a tag byte, a 2-byte big-endian
 * length and that many bytes.  Integers are always 8 bytes (big-endian),
 * strings carry no NUL.  Every limit is checked on both sides: a body is
 * 1..AGP_MAX_BODY bytes, a field lies wholly inside its body, and the
 * typed getters refuse wrong sizes, NULs in strings and oversized values.
 * The same framing runs between the CLI and bangerd on an exec stream.
 *
 * Plain C and libc only: banger-agent is a static binary that links this
 * file and nothing else of banger.
 */
#ifndef BANGER_AGENT_PROTO_H
#define BANGER_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGP_VERSION 1
#define AGP_HDR 4
#define AGP_MAX_BODY 65536u        /* type byte + fields */
#define AGP_MAX_FRAME (AGP_HDR + AGP_MAX_BODY)
#define AGP_MAX_DATA 32768u        /* one chunk of stdin/stdout/stderr/file data */
#define AGP_MAX_STR 4096u          /* one string field (argv element, path, message) */
#define AGP_MAX_ARGS 256u          /* argv and env entries each */
#define AGP_VSOCK_PORT 1024u       /* the agent's AF_VSOCK port (Firecracker) */
#define AGP_SERIAL_NAME "org.banger.agent"

enum agp_type {
        AGP_HELLO_REQ = 1,   /* host: who are you?                    -> HELLO */
        AGP_HELLO = 2,       /* guest: version, agent, kernel, boot time */
        AGP_EXEC = 3,        /* host: ID ARG* ENV* CWD? TTY? ROWS? COLS? WINDOW */
        AGP_STDIN = 4,       /* host: ID DATA */
        AGP_EOF = 5,         /* host: ID (stdin ends) */
        AGP_SIGNAL = 6,      /* host: ID SIGNO */
        AGP_WINDOW = 7,      /* either: ID N (the peer may send N more data bytes for ID) */
        AGP_STARTED = 8,     /* guest: ID PID */
        AGP_STDOUT = 9,      /* guest: ID DATA */
        AGP_STDERR = 10,     /* guest: ID DATA */
        AGP_EXIT = 11,       /* guest: ID CODE | SIGNO */
        AGP_ERROR = 12,      /* guest: ID ERRNO MSG (a request failed) */
        AGP_STATS_REQ = 13,  /* host: ID */
        AGP_STATS = 14,      /* guest: ID and the S_* counters */
        AGP_WRITE = 15,      /* host: ID PATH MODE UID GID DATA LAST (chunks of one file) */
        AGP_DONE = 16,       /* guest: ID (a write or shutdown request succeeded) */
        AGP_SHUTDOWN = 17,   /* host: ID (sync and power off) */
        AGP_RESIZE = 18,     /* host: ID ROWS COLS (an exec's terminal size) */
        AGP_TYPE_MAX = 18,
};

enum agp_tag {
        AGT_ID = 1,          /* u64: request id chosen by the host, never 0 */
        AGT_VERSION = 2,     /* u64: protocol version */
        AGT_AGENT = 3,       /* str: agent version */
        AGT_KERNEL = 4,      /* str: uname release */
        AGT_BOOT_MS = 5,     /* u64: guest wall-clock ms at boot */
        AGT_INIT_US = 6,     /* u64: guest uptime (us) when its /init started */
        AGT_START_US = 7,    /* u64: guest uptime (us) when the agent started */
        AGT_NOW_US = 8,      /* u64: guest uptime (us) as this frame was made */
        AGT_ARG = 9,         /* str, repeated: argv */
        AGT_ENV = 10,        /* str, repeated: NAME=VALUE */
        AGT_CWD = 11,        /* str */
        AGT_TTY = 12,        /* u64: 1 = run on a pseudo-terminal */
        AGT_ROWS = 13,       /* u64 */
        AGT_COLS = 14,       /* u64 */
        AGT_WINDOW = 15,     /* u64: initial credit for output bytes */
        AGT_DATA = 16,       /* bytes: at most AGP_MAX_DATA */
        AGT_N = 17,          /* u64: a byte count */
        AGT_PID = 18,        /* u64 */
        AGT_CODE = 19,       /* u64: exit status 0..255 */
        AGT_SIGNO = 20,      /* u64: signal number 1..64 */
        AGT_ERRNO = 21,      /* u64 */
        AGT_MSG = 22,        /* str */
        AGT_PATH = 23,       /* str: absolute */
        AGT_MODE = 24,       /* u64: 0..07777 */
        AGT_UID = 25,        /* u64 */
        AGT_GID = 26,        /* u64 */
        AGT_LAST = 27,       /* u64: 1 on the last chunk */
        AGT_HOSTNAME = 28,   /* str */
        AGT_STAGE = 29,      /* u64: 1 = up in the initramfs, requests held; 2 (or absent) = in the root */
        /* stats: u64 counters */
        AGT_S_UPTIME_MS = 40,
        AGT_S_CPU_USER = 41,     /* ms of CPU time, summed over CPUs */
        AGT_S_CPU_SYSTEM = 42,
        AGT_S_CPU_IDLE = 43,
        AGT_S_CPUS = 44,
        AGT_S_MEM_TOTAL = 45,    /* bytes */
        AGT_S_MEM_AVAIL = 46,
        AGT_S_LOAD1 = 47,        /* load average x 100 */
        AGT_S_LOAD5 = 48,
        AGT_S_LOAD15 = 49,
        AGT_S_DISK_READ = 50,    /* bytes, all virtio disks */
        AGT_S_DISK_WRITE = 51,
        AGT_S_NET_RX = 52,       /* bytes, all interfaces but lo */
        AGT_S_NET_TX = 53,
        AGT_S_PROCS = 54,        /* processes running */
        AGT_S_ROOT_TOTAL = 55,   /* bytes of the root filesystem */
        AGT_S_ROOT_FREE = 56,
        AGT_S_EXECS = 57,        /* exec sessions started since the agent started */
        AGT_S_LAST_EXEC_MS = 58, /* guest uptime ms of the last exec start or end, 0: none */
};

/* A frame being built: the caller owns it (it is 64 KiB: heap or static). */
struct agp_out {
        uint8_t buf[AGP_MAX_FRAME];
        size_t len;
        bool overflow;
};

/* Start a frame of type t. */
void agp_begin(struct agp_out *o, uint8_t t);
void agp_put_u64(struct agp_out *o, uint8_t tag, uint64_t v);
void agp_put_bytes(struct agp_out *o, uint8_t tag, const void *p, size_t n);
void agp_put_str(struct agp_out *o, uint8_t tag, const char *s);
/* Seal the frame (write its length).  -EMSGSIZE when a put did not fit;
 * the frame must not be sent then. */
int agp_end(struct agp_out *o);

/* Look at the start of a byte stream: the whole frame's size (header
 * included) when a complete frame is there, 0 when more bytes are needed,
 * -EMSGSIZE for a body over AGP_MAX_BODY, -EPROTO for an empty body.  A
 * reader can reject an oversized frame from its first 4 bytes. */
long agp_frame_size(const uint8_t *p, size_t n);

/* A parsed frame: points into the caller's bytes. */
struct agp_msg {
        uint8_t type;
        const uint8_t *fields;
        size_t len;
};

/* Parse one complete frame of n bytes (agp_frame_size() said n): checks
 * the header, the type range and that every field lies inside the body.
 * 0, or -EPROTO / -EMSGSIZE. */
int agp_parse(const uint8_t *frame, size_t n, struct agp_msg *m);

/* Field iteration: *pos starts at 0.  1 with the next field, 0 at the end
 * (agp_parse already validated the layout). */
int agp_next(const struct agp_msg *m, size_t *pos, uint8_t *tag, const uint8_t **v, size_t *n);

/* The first field with tag.  -ENOENT when absent, -EPROTO when malformed
 * (an integer not 8 bytes, a string with a NUL or longer than max-1 bytes). */
int agp_get_u64(const struct agp_msg *m, uint8_t tag, uint64_t *v);
int agp_get_bytes(const struct agp_msg *m, uint8_t tag, const uint8_t **p, size_t *n);
int agp_get_str(const struct agp_msg *m, uint8_t tag, char *out, size_t max);
/* Validate a string field's value (no NUL, at most max-1 bytes) and copy it. */
int agp_str_of(const uint8_t *v, size_t n, char *out, size_t max);

/* The name of a frame type, for logs ("hello", "exec", ...; "?" if unknown). */
const char *agp_type_name(unsigned t);

#endif
