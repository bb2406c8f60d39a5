/* agents: see agents.h.
 *
 * Threads.  The agents thread owns every connection: it connects, reads
 * and parses what guests send, and writes what is queued for them, all
 * non-blocking under one mutex.  Callers (loop workers, API threads)
 * only queue frames and wait on a condition variable with a deadline;
 * an exec relay runs in its API connection's own thread and waits on an
 * eventfd of its session.
 *
 * Bounds.  A guest's frame is at most AGP_MAX_FRAME; output it sends for
 * a session may not exceed the credit the client granted (itself capped
 * at SESSION_WINDOW_MAX); the frames queued for a client are capped too,
 * and so are the bytes queued for a guest (relays stop reading clients at
 * OUTQ_PAUSE; a guest that lets OUTQ_MAX pile up has stopped reading).
 * A guest that breaks any of these loses its connection, with the reason
 * in the Ready condition, and is reconnected after a backoff.  An exec
 * relay has deadlines of its own (the client's EXEC, the guest's answer)
 * and there are at most EXEC_MAX_PER_SANDBOX of them per sandbox, so a
 * guest that takes requests and never answers holds no API connection
 * for long.
 */
#include "agents.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent_proto.h"
#include "err.h"
#include "log.h"
#include "ownmark.h"
#include "strmap.h"
#include "util.h"

#define MAX_AGENTS_POLL 4096
#define OUTQ_MAX (4u << 20)             /* bytes queued towards one guest */
#define OUTQ_PAUSE (1u << 20)           /* past it, relays stop reading their clients */
#define SESSION_WINDOW_MAX (1u << 20)   /* output credit outstanding per session */
#define SESSION_QUEUE_MAX (SESSION_WINDOW_MAX + (256u << 10))
#define STDIN_CREDIT_MAX (16u << 20)
#define HANDSHAKE_MAX 64
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000
#define STABLE_MS 5000                  /* a connection that lived this long resets the backoff */
#define IDLE_CPU_PERMILLE 50            /* below 5% of one CPU ... */
#define IDLE_NET_BYTES_PER_S 4096       /* ... and this little traffic counts as idle */
#define POLL_ID_BIT (1ull << 62)        /* request ids of the idle poller */
#define EXEC_REQUEST_TIMEOUT_MS 10000  /* the client's EXEC frame */
#define EXEC_MAX_PER_SANDBOX 16
#define STOP_DRAIN_MS 1000              /* bangerd stopping: what a client has that long to read */
#define NOT_LISTENING "the guest agent is not listening on vsock yet"
#define READS_PER_TURN 4
#define POLL_ANSWER_MS 10000            /* an idle poll unanswered this long is given up */

struct obuf {
        uint8_t *p;
        size_t off, len, cap;
};

static void obuf_add(struct obuf *b, const void *p, size_t n)
{
        if (b->off && b->off + b->len + n > b->cap) {
                memmove(b->p, b->p + b->off, b->len);
                b->off = 0;
        }
        if (b->off + b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 16384;
                while (cap < b->off + b->len + n)
                        cap *= 2;
                b->p = xrealloc(b->p, cap);
                b->cap = cap;
        }
        memcpy(b->p + b->off + b->len, p, n);
        b->len += n;
}

static void obuf_drop(struct obuf *b, size_t n)
{
        b->off += n;
        b->len -= n;
        if (!b->len)
                b->off = 0;
}

static void obuf_free(struct obuf *b)
{
        free(b->p);
        memset(b, 0, sizeof *b);
}

struct pending {
        uint64_t id;
        uint8_t want;            /* AGP_STATS or AGP_DONE */
        bool done;
        int err;                 /* 0, or why it failed */
        char msg[256];
        uint8_t *frame;          /* the answer (heap) */
        size_t len;
        struct pending *next;
};

struct agent;

struct session {
        struct agent *ag;        /* NULL once the agent connection is gone */
        uint64_t id;             /* on the agent connection */
        int wake;                /* eventfd the relay polls */
        struct obuf toclient;    /* frames for the client, ids rewritten */
        uint64_t out_granted;    /* output bytes the agent may still send */
        uint64_t in_granted;     /* stdin bytes the client may still send */
        bool started;            /* the guest answered the EXEC (STARTED, or EXIT/ERROR) */
        bool ended;              /* EXIT or ERROR queued, or the agent is gone */
        struct session *next;
};

struct sample {
        bool have;
        uint64_t uptime_ms, busy_ms, net, execs, last_exec;
};

enum conn_state { C_DOWN, C_HANDSHAKE, C_OPEN };

struct agent {
        char name[64];
        char id[17];
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        bool vsock;
        int fd;
        enum conn_state st;
        char hs[HANDSHAKE_MAX];
        size_t hs_len;
        uint8_t *in;             /* AGP_MAX_FRAME bytes */
        size_t in_len;
        struct obuf out;
        bool ready;              /* a hello from the root filesystem (stage 2) */
        bool up;                 /* a hello from the initramfs (stage 1): requests are held */
        int64_t first_hello_us;  /* guest /init start to its first hello, -1: none yet */
        int64_t first_start_us;  /* the agent's start to its first hello */
        char reason[256];        /* why the last connection ended, "" if none */
        bool sticky;             /* reason is the guest's doing (after the transport was up): it stays
                                  * through reconnects until a good hello */
        char why[256];           /* a violation worded for conn_close */
        char logged[256];        /* the last failure logged: a repeat is not logged again */
        bool flapping;           /* connections end the same way right after their hello */
        bool stalled;            /* the guest stopped reading: the agents thread closes it */
        json_t *hello;
        int64_t connected_ms, next_try_ms;
        int64_t waiting_since_ms;   /* tracked, or its last working agent went away */
        unsigned fails;
        uint64_t next_id;
        struct session *sessions;
        struct pending *pending;
        int64_t idle_timeout_ms, idle_since_ms, next_poll_ms;
        uint64_t poll_id;
        int64_t poll_sent_ms;
        bool idle_fired;
        struct sample prev, last;   /* last: the latest stats reply, for rates */
        struct sample before_last;
};

struct agents {
        pthread_mutex_t mu;
        pthread_cond_t cv;       /* a pending answer arrived, or a connection ended */
        pthread_t thread;
        bool thread_started;
        bool stopping;
        int wake;                /* eventfd: queued output or a new agent */
        char *run_vms;           /* run_dir/vms/ */
        struct strmap *by_name;  /* name -> struct agent * */
        uint64_t epoch;          /* bumped whenever an agent is freed */
        struct strmap *relays;   /* name -> exec relays running (a count in the pointer) */
        void (*idle_cb)(const char *name, void *arg);
        void *idle_arg;
        int hello_ms, poll_ms, start_ms;
};

static void wake(int fd)
{
        uint64_t one = 1;
        if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
                log_warn("agents: wake: %s", strerror(errno));
}

static void drain(int fd)
{
        uint64_t v;
        while (read(fd, &v, sizeof v) == (ssize_t)sizeof v)
                ;
}

/* Guest text goes into JSON and log lines: printable ASCII only. */
static void clean_copy(char *out, size_t max, const char *in)
{
        size_t i = 0;
        for (; in[i] && i + 1 < max; i++)
                out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
        out[i] = '\0';
}

/* ---- connections (mu held) ---- */

/* Queue bytes for ag's guest.  A guest that lets OUTQ_MAX pile up has
 * stopped reading: the bytes are dropped and the agents thread closes
 * the connection (not here: callers hold pointers into it). */
static void queue_out(struct agents *a, struct agent *ag, const void *p, size_t n)
{
        if (ag->stalled)
                return;
        if (ag->out.len + n > OUTQ_MAX)
                ag->stalled = true;
        else
                obuf_add(&ag->out, p, n);
        wake(a->wake);
}

static void send_frame(struct agents *a, struct agent *ag, struct agp_out *o)
{
        if (agp_end(o) < 0 || ag->st != C_OPEN)
                return;
        queue_out(a, ag, o->buf, o->len);
}

static void session_end(struct session *s)
{
        s->ended = true;
        wake(s->wake);
}

/* Close ag's connection; reason (may be NULL) is kept for the Ready
 * condition.  Waiters and sessions learn of it at once. */
static void conn_close(struct agents *a, struct agent *ag, const char *reason)
{
        enum conn_state st = ag->st;
        /* Log on a change only: a guest that fails the same way on every
         * reconnect (never listens, says hello and then breaks the
         * protocol) is one line, not one per attempt.  A connection that
         * lived STABLE_MS starts afresh, backoff included. */
        if (ag->fd >= 0 && now_mono_ms() - ag->connected_ms >= STABLE_MS) {
                ag->fails = 0;
                ag->logged[0] = '\0';
                ag->flapping = false;
        }
        if (reason && ag->st != C_DOWN) {
                if (strcmp(reason, ag->logged) != 0) {
                        if (strcmp(reason, NOT_LISTENING) == 0)
                                log_info("agent name=%s: %s", ag->name, reason);   /* a guest still booting */
                        else
                                log_warn("agent name=%s: %s", ag->name, reason);
                        snprintf(ag->logged, sizeof ag->logged, "%s", reason);
                        ag->flapping = false;
                } else if (ag->up) {
                        ag->flapping = true;   /* hello, then the same failure again */
                }
        }
        if (ag->fd >= 0)
                close(ag->fd);
        if (ag->up || ag->ready)
                ag->waiting_since_ms = now_mono_ms();
        ag->prev.have = false;   /* idleness is measured afresh on the next connection */
        ag->fd = -1;
        ag->stalled = false;
        ag->st = C_DOWN;
        ag->ready = false;
        ag->up = false;
        ag->in_len = 0;
        ag->hs_len = 0;
        obuf_free(&ag->out);
        snprintf(ag->reason, sizeof ag->reason, "%s", reason ? reason : "");
        ag->sticky = reason && st == C_OPEN;
        int64_t backoff = BACKOFF_MIN_MS;
        for (unsigned i = 0; i < ag->fails && backoff < BACKOFF_MAX_MS; i++)
                backoff *= 2;
        ag->fails++;
        ag->next_try_ms = now_mono_ms() + (backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS);
        ag->poll_id = 0;
        for (struct pending *p = ag->pending; p; p = p->next) {
                if (!p->done) {
                        p->done = true;
                        p->err = ECONNRESET;
                        snprintf(p->msg, sizeof p->msg, "the agent connection closed%s%s", reason ? ": " : "",
                                 reason ? reason : "");
                }
        }
        for (struct session *s = ag->sessions, *next; s; s = next) {
                next = s->next;
                s->ag = NULL;
                s->next = NULL;
                struct agp_out *o = xmalloc(sizeof *o);
                agp_begin(o, AGP_ERROR);
                agp_put_u64(o, AGT_ID, 1);
                agp_put_u64(o, AGT_ERRNO, ECONNRESET);
                char msg[300];
                snprintf(msg, sizeof msg, "the guest agent connection closed%s%s", reason ? ": " : "",
                         reason ? reason : "");
                agp_put_str(o, AGT_MSG, msg);
                if (agp_end(o) == 0 && !s->ended)
                        obuf_add(&s->toclient, o->buf, o->len);
                free(o);
                session_end(s);
        }
        ag->sessions = NULL;
        pthread_cond_broadcast(&a->cv);
}

static void conn_open(struct agents *a, struct agent *ag)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", ag->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                ag->st = C_HANDSHAKE;   /* so conn_close words it */
                char why[200];
                snprintf(why, sizeof why, "cannot connect to the agent channel: %s", strerror(e));
                conn_close(a, ag, why);
                /* not the guest's fault: retry soon */
                ag->fails = 0;
                ag->next_try_ms = now_mono_ms() + 500;
                return;
        }
        ag->fd = fd;
        ag->connected_ms = now_mono_ms();
        if (!ag->sticky)
                ag->reason[0] = '\0';
        if (ag->vsock) {
                char line[32];
                int n = snprintf(line, sizeof line, "CONNECT %u\n", AGP_VSOCK_PORT);
                obuf_add(&ag->out, line, (size_t)n);
                ag->st = C_HANDSHAKE;
                return;
        }
        ag->st = C_OPEN;
        struct agp_out *o = xmalloc(sizeof *o);
        agp_begin(o, AGP_HELLO_REQ);
        send_frame(a, ag, o);
        free(o);
}

/* ---- frames from a guest (mu held) ---- */

static json_t *hello_json(const struct agp_msg *m, char *why, size_t len)
{
        uint64_t version = 0, boot_ms = 0, init_us = 0, start_us = 0, now_us = 0, stage = 2;
        char agent[64], kernel[128], host[128], ca[64], ck[128], ch[128];
        if (agp_get_u64(m, AGT_VERSION, &version) < 0) {
                snprintf(why, len, "the agent's hello has no protocol version");
                return NULL;
        }
        if (version != AGP_VERSION) {
                snprintf(why, len, "the agent speaks protocol version %llu; bangerd speaks %d",
                         (unsigned long long)version, AGP_VERSION);
                return NULL;
        }
        if (agp_get_str(m, AGT_AGENT, agent, sizeof agent) < 0 || agp_get_str(m, AGT_KERNEL, kernel, sizeof kernel) < 0) {
                snprintf(why, len, "the agent's hello lacks its version or kernel, or they are too long");
                return NULL;
        }
        if (agp_get_str(m, AGT_HOSTNAME, host, sizeof host) < 0)
                host[0] = '\0';
        agp_get_u64(m, AGT_BOOT_MS, &boot_ms);
        agp_get_u64(m, AGT_INIT_US, &init_us);
        agp_get_u64(m, AGT_START_US, &start_us);
        agp_get_u64(m, AGT_NOW_US, &now_us);
        agp_get_u64(m, AGT_STAGE, &stage);
        clean_copy(ca, sizeof ca, agent);
        clean_copy(ck, sizeof ck, kernel);
        clean_copy(ch, sizeof ch, host);
        char boot[40] = "";
        if (boot_ms && boot_ms < (uint64_t)INT64_MAX)
                format_time_ms((int64_t)boot_ms, boot, sizeof boot);
        json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "protocol", (json_int_t)version, "version", ca,
                              "kernel", ck, "hostname", ch, "bootTime", boot, "stage",
                              stage == 1 ? "initramfs" : "root");
        /* guest-side timings of this boot (microseconds of guest uptime) */
        if (now_us >= start_us && start_us)
                json_object_set_new(j, "startToHelloUs", json_integer((json_int_t)(now_us - start_us)));
        if (now_us >= init_us && init_us)
                json_object_set_new(j, "initToHelloUs", json_integer((json_int_t)(now_us - init_us)));
        return j;
}

static struct session *session_of(struct agent *ag, uint64_t id)
{
        for (struct session *s = ag->sessions; s; s = s->next)
                if (s->id == id)
                        return s;
        return NULL;
}

static void session_unlink(struct agent *ag, struct session *s)
{
        for (struct session **pp = &ag->sessions; *pp; pp = &(*pp)->next) {
                if (*pp == s) {
                        *pp = s->next;
                        s->next = NULL;
                        return;
                }
        }
}

/* Queue for the client the frame it gets for the guest's m: the same type
 * with id 1 and only the fields that type has, each checked (a guest's
 * text reaches the user's terminal: printable ASCII only).  window: the
 * stdin credit a WINDOW actually added.  A violation returns its reason. */
static const char *relay(struct session *s, const struct agp_msg *m, uint64_t window)
{
        struct agp_out *o = xmalloc(sizeof *o);
        agp_begin(o, m->type);
        agp_put_u64(o, AGT_ID, 1);
        const char *bad = NULL;
        uint64_t v = 0;
        const uint8_t *d = NULL;
        size_t n = 0;
        switch (m->type) {
        case AGP_STDOUT:
        case AGP_STDERR:
                agp_get_bytes(m, AGT_DATA, &d, &n);
                agp_put_bytes(o, AGT_DATA, d, n);
                break;
        case AGP_WINDOW:
                agp_put_u64(o, AGT_N, window);
                break;
        case AGP_STARTED:
                if (agp_get_u64(m, AGT_PID, &v) == 0)
                        agp_put_u64(o, AGT_PID, v);
                break;
        case AGP_EXIT:
                if (agp_get_u64(m, AGT_CODE, &v) == 0 && v <= 255)
                        agp_put_u64(o, AGT_CODE, v);
                else if (agp_get_u64(m, AGT_SIGNO, &v) == 0 && v >= 1 && v <= 64)
                        agp_put_u64(o, AGT_SIGNO, v);
                else
                        bad = "guest agent sent an exit without a valid code or signal";
                break;
        case AGP_ERROR: {
                char *msg = xmalloc(AGP_MAX_STR + 1);
                v = EIO;
                agp_get_u64(m, AGT_ERRNO, &v);
                agp_put_u64(o, AGT_ERRNO, v > 0 && v < 4096 ? v : EIO);
                if (agp_get_str(m, AGT_MSG, msg, AGP_MAX_STR + 1) == 0) {
                        clean_copy(msg, AGP_MAX_STR + 1, msg);   /* byte for byte: in place is fine */
                        agp_put_str(o, AGT_MSG, msg);
                }
                free(msg);
                break;
        }
        default:
                bad = "guest agent sent an unexpected frame for an exec session";
        }
        if (!bad && agp_end(o) < 0)
                bad = "guest agent sent a frame that cannot be relayed";
        if (!bad)
                obuf_add(&s->toclient, o->buf, o->len);
        free(o);
        return bad;
}

/* A session frame from the guest; a violation returns its reason. */
static const char *session_frame(struct agent *ag, struct session *s, const struct agp_msg *m)
{
        uint64_t v = 0, added = 0;
        const uint8_t *d;
        size_t n;
        switch (m->type) {
        case AGP_STDOUT:
        case AGP_STDERR:
                if (agp_get_bytes(m, AGT_DATA, &d, &n) < 0 || n > AGP_MAX_DATA)
                        return "guest agent sent an output frame without data or with too much";
                if (n > s->out_granted)
                        return "guest agent sent more output than it was granted";
                s->out_granted -= n;
                break;
        case AGP_WINDOW:
                if (agp_get_u64(m, AGT_N, &v) < 0)
                        return "guest agent sent a window without a size";
                /* the client hears what was added, so both keep one count */
                added = v < STDIN_CREDIT_MAX - s->in_granted ? v : STDIN_CREDIT_MAX - s->in_granted;
                s->in_granted += added;
                break;
        case AGP_STARTED:
        case AGP_EXIT:
        case AGP_ERROR:
                s->started = true;
                break;
        default:
                return "guest agent sent an unexpected frame for an exec session";
        }
        /* After the relay's own ERROR (a deadline, bangerd stopping) the
         * client hears nothing more. */
        if (!s->ended && s->toclient.len > SESSION_QUEUE_MAX)
                return "guest agent floods an exec session";
        const char *bad = s->ended ? NULL : relay(s, m, added);
        if (bad)
                return bad;
        if (m->type == AGP_EXIT || m->type == AGP_ERROR) {
                session_unlink(ag, s);
                s->ag = NULL;
                s->ended = true;
        }
        wake(s->wake);
        return NULL;
}

static void sample_of(const struct agp_msg *m, struct sample *s)
{
        uint64_t u = 0, sy = 0, rx = 0, tx = 0;
        memset(s, 0, sizeof *s);
        s->have = true;
        agp_get_u64(m, AGT_S_UPTIME_MS, &s->uptime_ms);
        agp_get_u64(m, AGT_S_CPU_USER, &u);
        agp_get_u64(m, AGT_S_CPU_SYSTEM, &sy);
        agp_get_u64(m, AGT_S_NET_RX, &rx);
        agp_get_u64(m, AGT_S_NET_TX, &tx);
        agp_get_u64(m, AGT_S_EXECS, &s->execs);
        agp_get_u64(m, AGT_S_LAST_EXEC_MS, &s->last_exec);
        s->busy_ms = u + sy;
        s->net = rx + tx;
}

static void note_sample(struct agent *ag, const struct agp_msg *m)
{
        struct sample s;
        sample_of(m, &s);
        if (!ag->last.have || s.uptime_ms > ag->last.uptime_ms) {
                ag->before_last = ag->last;
                ag->last = s;
        }
}

/* The idle poller's answer: was the guest busy since the last one? */
static void idle_sample(struct agents *a, struct agent *ag, const struct agp_msg *m, bool *fire)
{
        struct sample s;
        sample_of(m, &s);
        int64_t now = now_mono_ms();
        /* The first sample of a connection starts the clock: boot, a
         * reconnect or a guest without a ready agent never count as idle. */
        bool measured = ag->prev.have;
        if (!measured)
                ag->idle_since_ms = now;
        else if (s.uptime_ms > ag->prev.uptime_ms) {
                uint64_t dt = s.uptime_ms - ag->prev.uptime_ms;
                uint64_t busy = s.busy_ms - (s.busy_ms >= ag->prev.busy_ms ? ag->prev.busy_ms : s.busy_ms);
                uint64_t net = s.net - (s.net >= ag->prev.net ? ag->prev.net : s.net);
                bool active = busy * 1000 > dt * IDLE_CPU_PERMILLE || net * 1000 > dt * IDLE_NET_BYTES_PER_S ||
                              s.execs != ag->prev.execs || s.last_exec != ag->prev.last_exec || ag->sessions;
                if (active)
                        ag->idle_since_ms = now;
                log_debug("agent idle poll name=%s busy_ms=%llu dt_ms=%llu net=%llu active=%d idle_s=%lld", ag->name,
                          (unsigned long long)busy, (unsigned long long)dt, (unsigned long long)net, active,
                          (long long)(now - ag->idle_since_ms) / 1000);
        }
        ag->prev = s;
        if (measured && ag->idle_timeout_ms && !ag->idle_fired && now - ag->idle_since_ms >= ag->idle_timeout_ms) {
                ag->idle_fired = true;
                *fire = true;
                log_info("agent name=%s idle for %lld s (idle_timeout)", ag->name,
                         (long long)(now - ag->idle_since_ms) / 1000);
        }
        (void)a;
}

static const char *guest_frame(struct agents *a, struct agent *ag, const uint8_t *frame, size_t len, bool *fire)
{
        struct agp_msg m;
        if (agp_parse(frame, len, &m) < 0)
                return "guest agent sent a malformed frame";
        uint64_t id = 0;
        agp_get_u64(&m, AGT_ID, &id);
        if (m.type == AGP_HELLO) {
                char why[200];
                json_t *h = hello_json(&m, why, sizeof why);
                if (!h) {
                        /* A protocol violation like any other: the
                         * connection goes (ready with it, and a guest
                         * cannot flood the log with ever new hellos). */
                        clean_copy(ag->why, sizeof ag->why, why);
                        return ag->why;
                }
                json_decref(ag->hello);
                ag->hello = h;
                json_t *first = json_object_get(h, "initToHelloUs");
                if (ag->first_hello_us < 0 && json_is_integer(first)) {
                        ag->first_hello_us = json_integer_value(first);
                        ag->first_start_us = json_integer_value(json_object_get(h, "startToHelloUs"));
                }
                if (ag->first_hello_us >= 0) {
                        json_object_set_new(h, "initToFirstHelloUs", json_integer(ag->first_hello_us));
                        json_object_set_new(h, "startToFirstHelloUs", json_integer(ag->first_start_us));
                }
                ag->up = true;   /* the backoff resets only once the connection proves stable */
                ag->reason[0] = '\0';
                ag->sticky = false;
                if (strcmp(json_string_value(json_object_get(h, "stage")), "initramfs") == 0)
                        return NULL;   /* up, not ready: it holds requests until the root is there */
                if (!ag->ready && !ag->flapping)
                        log_info("agent ready name=%s version=%s kernel=%s", ag->name,
                                 json_string_value(json_object_get(h, "version")),
                                 json_string_value(json_object_get(h, "kernel")));
                ag->ready = true;
                return NULL;
        }
        if (id && id == ag->poll_id && (m.type == AGP_STATS || m.type == AGP_ERROR)) {
                ag->poll_id = 0;
                if (m.type == AGP_STATS) {
                        note_sample(ag, &m);
                        idle_sample(a, ag, &m, fire);
                }
                return NULL;
        }
        for (struct pending *p = ag->pending; p; p = p->next) {
                if (p->id != id || p->done)
                        continue;
                if (m.type != p->want && m.type != AGP_ERROR)
                        return "guest agent answered a request with the wrong frame type";
                p->done = true;
                if (m.type == AGP_ERROR) {
                        uint64_t e = EIO;
                        char msg[256] = "";
                        agp_get_u64(&m, AGT_ERRNO, &e);
                        agp_get_str(&m, AGT_MSG, msg, sizeof msg);
                        p->err = e > 0 && e < 4096 ? (int)e : EIO;
                        clean_copy(p->msg, sizeof p->msg, msg);
                } else {
                        if (m.type == AGP_STATS)
                                note_sample(ag, &m);
                        p->frame = xmalloc(len);
                        memcpy(p->frame, frame, len);
                        p->len = len;
                }
                pthread_cond_broadcast(&a->cv);
                return NULL;
        }
        struct session *s = id ? session_of(ag, id) : NULL;
        if (s)
                return session_frame(ag, s, &m);
        switch (m.type) {
        case AGP_STARTED: case AGP_STDOUT: case AGP_STDERR: case AGP_WINDOW: case AGP_EXIT: case AGP_ERROR:
        case AGP_STATS: case AGP_DONE:
                return NULL;   /* for a request that ended already */
        default:
                return "guest agent sent a request frame";
        }
}

/* Read what ag's guest sent; *fire when its idle timeout expired.  At
 * most READS_PER_TURN reads, so a guest that never stops sending cannot
 * keep the thread from the others: poll() brings it back next turn. */
static void conn_read(struct agents *a, struct agent *ag, bool *fire)
{
        for (int turn = 0; turn < READS_PER_TURN; turn++) {
                if (ag->st == C_HANDSHAKE) {
                        ssize_t n = read(ag->fd, ag->hs + ag->hs_len, sizeof ag->hs - 1 - ag->hs_len);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return;
                        if (n <= 0) {
                                conn_close(a, ag, n == 0 ? NOT_LISTENING : "vsock handshake failed");
                                ag->fails = 0;
                                ag->next_try_ms = now_mono_ms() + 250;   /* booting: retry soon */
                                return;
                        }
                        ag->hs_len += (size_t)n;
                        ag->hs[ag->hs_len] = '\0';
                        char *nl = strchr(ag->hs, '\n');
                        if (!nl) {
                                if (ag->hs_len >= sizeof ag->hs - 1)
                                        conn_close(a, ag, "vsock handshake reply too long");
                                return;
                        }
                        *nl = '\0';
                        if (strncmp(ag->hs, "OK ", 3) != 0) {
                                conn_close(a, ag, "vsock handshake refused");
                                return;
                        }
                        /* bytes after the OK line are the agent's */
                        size_t rest = ag->hs_len - (size_t)(nl + 1 - ag->hs);
                        memcpy(ag->in, nl + 1, rest);
                        ag->in_len = rest;
                        ag->st = C_OPEN;
                        struct agp_out *o = xmalloc(sizeof *o);
                        agp_begin(o, AGP_HELLO_REQ);
                        send_frame(a, ag, o);
                        free(o);
                        if (!rest)
                                continue;
                } else {
                        ssize_t n = read(ag->fd, ag->in + ag->in_len, AGP_MAX_FRAME - ag->in_len);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return;
                        if (n <= 0) {
                                char why[160];
                                snprintf(why, sizeof why, "the guest agent closed the connection%s%s",
                                         n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
                                conn_close(a, ag, why);
                                return;
                        }
                        ag->in_len += (size_t)n;
                }
                size_t off = 0;
                for (;;) {
                        long size = agp_frame_size(ag->in + off, ag->in_len - off);
                        if (size < 0) {
                                char why[160];
                                if (size == -EMSGSIZE) {
                                        const uint8_t *h = ag->in + off;
                                        snprintf(why, sizeof why, "guest agent sent an oversized frame (%lu bytes, "
                                                 "at most %u)", (unsigned long)h[0] << 24 | (unsigned long)h[1] << 16 |
                                                 (unsigned long)h[2] << 8 | h[3], AGP_MAX_BODY);
                                } else {
                                        snprintf(why, sizeof why, "guest agent sent a malformed frame");
                                }
                                conn_close(a, ag, why);
                                return;
                        }
                        if (size == 0)
                                break;
                        const char *bad = guest_frame(a, ag, ag->in + off, (size_t)size, fire);
                        if (bad) {
                                conn_close(a, ag, bad);
                                return;
                        }
                        off += (size_t)size;
                }
                memmove(ag->in, ag->in + off, ag->in_len - off);
                ag->in_len -= off;
        }
}

static void conn_write(struct agents *a, struct agent *ag)
{
        while (ag->out.len) {
                ssize_t n = send(ag->fd, ag->out.p + ag->out.off, ag->out.len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                                char why[160];
                                snprintf(why, sizeof why, "write to the guest agent: %s", strerror(errno));
                                conn_close(a, ag, why);
                        }
                        return;
                }
                obuf_drop(&ag->out, (size_t)n);
        }
}

/* ---- the thread ---- */

struct fired {
        char **names;
        size_t n;
};

static void tick_one(const char *name, void *v, void *arg)
{
        (void)name;
        struct agent *ag = v;
        struct agents *a = ((void **)arg)[0];
        int64_t now = now_mono_ms();
        if (ag->st != C_DOWN && ag->stalled) {
                char why[120];
                snprintf(why, sizeof why, "the guest agent stopped reading (%u MiB queued for it)", OUTQ_MAX >> 20);
                conn_close(a, ag, why);
        }
        if (ag->st == C_DOWN && now >= ag->next_try_ms)
                conn_open(a, ag);
        if (ag->poll_id && now - ag->poll_sent_ms >= POLL_ANSWER_MS) {
                log_debug("agent idle poll name=%s: no answer in %d ms", ag->name, POLL_ANSWER_MS);
                ag->poll_id = 0;   /* a late answer is dropped as one for an ended request */
        }
        if (ag->st == C_OPEN && ag->ready && ag->idle_timeout_ms && !ag->poll_id && now >= ag->next_poll_ms) {
                ag->next_poll_ms = now + a->poll_ms;
                ag->poll_sent_ms = now;
                ag->poll_id = POLL_ID_BIT | ++ag->next_id;
                struct agp_out *o = xmalloc(sizeof *o);
                agp_begin(o, AGP_STATS_REQ);
                agp_put_u64(o, AGT_ID, ag->poll_id);
                send_frame(a, ag, o);
                free(o);
        }
}

struct pollset {
        struct pollfd p[MAX_AGENTS_POLL];
        struct agent *ag[MAX_AGENTS_POLL];
        size_t n;
        int64_t next_ms;
};

static void collect(const char *name, void *v, void *arg)
{
        (void)name;
        struct agent *ag = v;
        struct pollset *ps = arg;
        if (ag->st == C_DOWN) {
                if (ag->next_try_ms < ps->next_ms)
                        ps->next_ms = ag->next_try_ms;
                return;
        }
        if (ag->idle_timeout_ms && ag->next_poll_ms < ps->next_ms)
                ps->next_ms = ag->next_poll_ms;
        if (ps->n == MAX_AGENTS_POLL)
                return;
        ps->p[ps->n] = (struct pollfd){ .fd = ag->fd, .events = (short)(POLLIN | (ag->out.len ? POLLOUT : 0)) };
        ps->ag[ps->n++] = ag;
}

static void *thread_main(void *arg)
{
        struct agents *a = arg;
        struct pollset *ps = xcalloc(1, sizeof *ps);
        pthread_mutex_lock(&a->mu);
        while (!a->stopping) {
                void *targ[1] = { a };
                strmap_foreach(a->by_name, tick_one, targ);
                ps->n = 1;
                ps->p[0] = (struct pollfd){ .fd = a->wake, .events = POLLIN };
                ps->next_ms = now_mono_ms() + 1000;
                strmap_foreach(a->by_name, collect, ps);
                int64_t wait = ps->next_ms - now_mono_ms();
                uint64_t epoch = a->epoch;
                pthread_mutex_unlock(&a->mu);
                int r = poll(ps->p, ps->n, wait < 0 ? 0 : (int)(wait > 1000 ? 1000 : wait));
                pthread_mutex_lock(&a->mu);
                if (r < 0 && errno != EINTR) {
                        log_error("agents: poll: %s", strerror(errno));
                        break;
                }
                if (ps->p[0].revents & POLLIN)
                        drain(a->wake);
                struct fired f = { NULL, 0 };
                /* An agent untracked while we polled was freed: then this
                 * round's events are dropped (poll reports them again). */
                for (size_t i = 1; i < ps->n && epoch == a->epoch; i++) {
                        struct agent *ag = ps->ag[i];
                        if (ag->fd != ps->p[i].fd)
                                continue;
                        bool fire = false;
                        if (ps->p[i].revents & (POLLIN | POLLHUP | POLLERR))
                                conn_read(a, ag, &fire);
                        if (ag->st != C_DOWN && ag->out.len)
                                conn_write(a, ag);
                        if (fire) {
                                f.names = xreallocarray(f.names, f.n + 1, sizeof *f.names);
                                f.names[f.n++] = xstrdup(ag->name);
                        }
                }
                if (f.n) {
                        pthread_mutex_unlock(&a->mu);
                        for (size_t i = 0; i < f.n; i++) {
                                if (a->idle_cb)
                                        a->idle_cb(f.names[i], a->idle_arg);
                                free(f.names[i]);
                        }
                        free(f.names);
                        pthread_mutex_lock(&a->mu);
                }
        }
        pthread_mutex_unlock(&a->mu);
        free(ps);
        return NULL;
}

/* ---- life cycle ---- */

static int env_ms(const char *name, int def)
{
        const char *v = getenv(name);
        if (!v || !*v)
                return def;
        long n = strtol(v, NULL, 10);
        return n > 0 && n < 86400000 ? (int)n : def;
}

int agents_new(const struct agents_config *c, struct agents **out, struct bg_err **err)
{
        struct agents *a = xcalloc(1, sizeof *a);
        pthread_mutex_init(&a->mu, NULL);
        pthread_cond_init(&a->cv, NULL);
        a->run_vms = xasprintf("%s/vms/", c->run_dir);
        a->by_name = strmap_new();
        a->relays = strmap_new();
        a->idle_cb = c->idle;
        a->idle_arg = c->arg;
        a->hello_ms = env_ms("BANGER_AGENT_HELLO_MS", 60000);
        a->poll_ms = env_ms("BANGER_AGENT_POLL_MS", 10000);
        a->start_ms = env_ms("BANGER_AGENT_START_MS", 10000);
        a->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->wake < 0) {
                int e = errno;
                agents_free(a);
                return bg_error(err, e, "agents: eventfd: %s", strerror(e));
        }
        int rc = pthread_create(&a->thread, NULL, thread_main, a);
        if (rc != 0) {
                agents_free(a);
                return bg_error(err, rc, "agents: start thread: %s", strerror(rc));
        }
        a->thread_started = true;
        *out = a;
        return 0;
}

static void agent_free(struct agents *a, struct agent *ag)
{
        a->epoch++;
        conn_close(a, ag, NULL);
        /* Waiters hold pointers to their pending entries: they are woken
         * (conn_close marked them done) and free them themselves; the agent
         * keeps none once untracked. */
        for (struct pending *p = ag->pending; p; p = p->next)
                p->done = true;
        json_decref(ag->hello);
        free(ag->in);
        free(ag);
}

static void free_agent_cb(const char *name, void *v, void *arg)
{
        (void)name;
        agent_free(arg, v);
}

void agents_free(struct agents *a)
{
        if (!a)
                return;
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        pthread_mutex_unlock(&a->mu);
        if (a->wake >= 0)
                wake(a->wake);
        if (a->thread_started)
                pthread_join(a->thread, NULL);
        pthread_mutex_lock(&a->mu);
        strmap_foreach(a->by_name, free_agent_cb, a);
        strmap_free(a->by_name);
        a->by_name = NULL;
        strmap_free(a->relays);
        a->relays = NULL;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        if (a->wake >= 0)
                close(a->wake);
        free(a->run_vms);
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
        free(a);
}

/* The channel in handles, re-checked: a socket inside run_dir/vms/<id>/. */
static bool channel_of(struct agents *a, const char *id, const json_t *h, char *path, size_t len, bool *vsock)
{
        const char *p = json_string_value(json_object_get(h, "agent_sock"));
        *vsock = false;
        if (!p) {
                p = json_string_value(json_object_get(h, "vsock_uds"));
                *vsock = p != NULL;
        }
        if (!p || !ownmark_id_valid(id))
                return false;
        size_t rl = strlen(a->run_vms);
        if (strncmp(p, a->run_vms, rl) != 0 || strncmp(p + rl, id, 16) != 0 || p[rl + 16] != '/' ||
            strchr(p + rl + 17, '/') || strlen(p) >= len)
                return false;
        snprintf(path, len, "%s", p);
        return true;
}

void agents_track(struct agents *a, const char *name, const char *id, const json_t *handles, int64_t idle_timeout_ms)
{
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        bool vsock;
        if (!a || strlen(name) >= 64)
                return;
        if (!channel_of(a, id, handles, path, sizeof path, &vsock)) {
                agents_untrack(a, name);
                return;
        }
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_get(a->by_name, name);
        if (ag && (strcmp(ag->id, id) != 0 || strcmp(ag->path, path) != 0 || ag->vsock != vsock)) {
                strmap_del(a->by_name, name);
                agent_free(a, ag);
                ag = NULL;
        }
        if (!ag) {
                ag = xcalloc(1, sizeof *ag);
                snprintf(ag->name, sizeof ag->name, "%s", name);
                snprintf(ag->id, sizeof ag->id, "%s", id);
                snprintf(ag->path, sizeof ag->path, "%s", path);
                ag->vsock = vsock;
                ag->fd = -1;
                ag->in = xmalloc(AGP_MAX_FRAME);
                ag->first_hello_us = -1;
                ag->connected_ms = now_mono_ms();
                ag->waiting_since_ms = now_mono_ms();
                ag->idle_since_ms = now_mono_ms();
                strmap_put(a->by_name, ag->name, ag);
                log_debug("agent tracked name=%s channel=%s%s", name, path, vsock ? " (vsock)" : "");
                wake(a->wake);
        }
        if (ag->idle_timeout_ms != idle_timeout_ms) {
                ag->idle_timeout_ms = idle_timeout_ms;
                ag->idle_since_ms = now_mono_ms();
                ag->idle_fired = false;
                ag->next_poll_ms = now_mono_ms() + a->poll_ms;
        }
        pthread_mutex_unlock(&a->mu);
}

void agents_untrack(struct agents *a, const char *name)
{
        if (!a)
                return;
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_del(a->by_name, name);
        if (ag) {
                log_debug("agent untracked name=%s", name);
                agent_free(a, ag);
        }
        pthread_mutex_unlock(&a->mu);
}

int agents_ready(struct agents *a, const char *name, bool *ready, char **reason, json_t **info)
{
        *ready = false;
        *reason = NULL;
        if (info)
                *info = NULL;
        if (!a)
                return -ENOENT;
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_get(a->by_name, name);
        if (!ag) {
                pthread_mutex_unlock(&a->mu);
                return -ENOENT;
        }
        *ready = ag->ready;
        /* Since tracked, or since a working agent went: retries (vsock
         * connects every 250 ms) do not restart it. */
        int64_t waited = now_mono_ms() - ag->waiting_since_ms;
        bool booting = !ag->reason[0] || strcmp(ag->reason, NOT_LISTENING) == 0;
        if (ag->ready)
                *reason = xstrdup("");
        else if (ag->up)
                *reason = xstrdup("the guest agent is up; waiting for the guest's root filesystem");
        else if (!booting)
                *reason = xasprintf("%s", ag->reason);
        else if (waited >= a->hello_ms)
                *reason = xasprintf("no hello from the guest agent within %d s (does the guest boot with "
                                    "banger's initramfs?)", a->hello_ms / 1000);
        else if (ag->reason[0])
                *reason = xasprintf("%s", ag->reason);
        else
                *reason = xstrdup("waiting for the guest agent's hello");
        if (info && ag->hello)
                *info = json_deep_copy(ag->hello);
        pthread_mutex_unlock(&a->mu);
        return 0;
}

bool agents_take_idle(struct agents *a, const char *name)
{
        if (!a)
                return false;
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_get(a->by_name, name);
        bool fired = ag && ag->idle_fired;
        pthread_mutex_unlock(&a->mu);
        return fired;
}

/* Send one request of type t to name's agent and wait for want; on
 * success *frame is the answer (heap).  mu is taken here. */
static int request(struct agents *a, const char *name, uint8_t t, uint8_t want, int timeout_ms, uint8_t **frame,
                   size_t *len, struct bg_err **err)
{
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_get(a->by_name, name);
        if (!ag || !ag->ready || ag->st != C_OPEN) {
                pthread_mutex_unlock(&a->mu);
                return bg_error(err, ENOTCONN, "the guest agent of %s is not ready", name);
        }
        struct pending *p = xcalloc(1, sizeof *p);
        p->id = ++ag->next_id;
        p->want = want;
        p->next = ag->pending;
        ag->pending = p;
        struct agp_out *o = xmalloc(sizeof *o);
        agp_begin(o, t);
        agp_put_u64(o, AGT_ID, p->id);
        send_frame(a, ag, o);
        free(o);
        struct timespec dl = deadline_after_ms(CLOCK_REALTIME, timeout_ms);
        while (!p->done)
                if (pthread_cond_timedwait(&a->cv, &a->mu, &dl) == ETIMEDOUT)
                        break;
        /* unlink p if its agent is still there (untrack frees agents, never pendings) */
        struct agent *now = strmap_get(a->by_name, name);
        if (now == ag)
                for (struct pending **pp = &ag->pending; *pp; pp = &(*pp)->next)
                        if (*pp == p) {
                                *pp = p->next;
                                break;
                        }
        int rc = 0;
        if (!p->done)
                rc = bg_error(err, ETIMEDOUT, "the guest agent of %s did not answer within %d ms", name, timeout_ms);
        else if (p->err)
                rc = bg_error(err, p->err, "guest agent of %s: %s", name, p->msg[0] ? p->msg : strerror(p->err));
        else if (!p->frame)
                rc = bg_error(err, ECONNRESET, "the guest agent of %s went away", name);
        pthread_mutex_unlock(&a->mu);
        if (rc == 0) {
                *frame = p->frame;
                *len = p->len;
        } else {
                free(p->frame);
        }
        free(p);
        return rc;
}

static void put_counter(json_t *o, const char *key, const struct agp_msg *m, uint8_t tag)
{
        uint64_t v;
        if (agp_get_u64(m, tag, &v) == 0 && v <= (uint64_t)INT64_MAX)
                json_object_set_new(o, key, json_integer((json_int_t)v));
}

int agents_stats(struct agents *a, const char *name, int timeout_ms, json_t **out, struct bg_err **err)
{
        uint8_t *frame = NULL;
        size_t len = 0;
        if (!a)
                return bg_error(err, ENOTCONN, "no guest agents in this bangerd");
        int rc = request(a, name, AGP_STATS_REQ, AGP_STATS, timeout_ms, &frame, &len, err);
        if (rc < 0)
                return rc;
        struct agp_msg m;
        if (agp_parse(frame, len, &m) < 0) {
                free(frame);
                return bg_error(err, EPROTO, "bad stats frame");
        }
        json_t *cpu = json_object(), *mem = json_object(), *disk = json_object(), *net = json_object();
        json_t *j = json_pack("{s:s, s:s}", "kind", "SandboxStats", "name", name);
        put_counter(cpu, "count", &m, AGT_S_CPUS);
        put_counter(cpu, "userMs", &m, AGT_S_CPU_USER);
        put_counter(cpu, "systemMs", &m, AGT_S_CPU_SYSTEM);
        put_counter(cpu, "idleMs", &m, AGT_S_CPU_IDLE);
        put_counter(mem, "totalBytes", &m, AGT_S_MEM_TOTAL);
        put_counter(mem, "availableBytes", &m, AGT_S_MEM_AVAIL);
        put_counter(disk, "readBytes", &m, AGT_S_DISK_READ);
        put_counter(disk, "writeBytes", &m, AGT_S_DISK_WRITE);
        put_counter(disk, "rootTotalBytes", &m, AGT_S_ROOT_TOTAL);
        put_counter(disk, "rootFreeBytes", &m, AGT_S_ROOT_FREE);
        put_counter(net, "rxBytes", &m, AGT_S_NET_RX);
        put_counter(net, "txBytes", &m, AGT_S_NET_TX);
        uint64_t l[3] = { 0, 0, 0 }, up = 0;
        agp_get_u64(&m, AGT_S_LOAD1, &l[0]);
        agp_get_u64(&m, AGT_S_LOAD5, &l[1]);
        agp_get_u64(&m, AGT_S_LOAD15, &l[2]);
        agp_get_u64(&m, AGT_S_UPTIME_MS, &up);
        json_object_set_new(j, "uptimeSeconds", json_real((double)up / 1000.0));
        json_object_set_new(j, "load", json_pack("[f, f, f]", l[0] / 100.0, l[1] / 100.0, l[2] / 100.0));
        json_object_set_new(j, "cpu", cpu);
        json_object_set_new(j, "memory", mem);
        json_object_set_new(j, "disk", disk);
        json_object_set_new(j, "network", net);
        put_counter(j, "processesRunning", &m, AGT_S_PROCS);
        put_counter(j, "execs", &m, AGT_S_EXECS);
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_get(a->by_name, name);
        if (ag && ag->before_last.have && ag->last.uptime_ms > ag->before_last.uptime_ms) {
                /* CPU use between this and the previous sample, as % of one CPU */
                double dt = (double)(ag->last.uptime_ms - ag->before_last.uptime_ms);
                double busy = (double)(ag->last.busy_ms - ag->before_last.busy_ms);
                json_object_set_new(cpu, "usedPercent", json_real(busy > 0 ? 100.0 * busy / dt : 0.0));
        }
        if (ag && ag->idle_timeout_ms)
                json_object_set_new(j, "idleSeconds", json_integer((now_mono_ms() - ag->idle_since_ms) / 1000));
        pthread_mutex_unlock(&a->mu);
        free(frame);
        *out = j;
        return 0;
}

int agents_shutdown(struct agents *a, const char *name, int timeout_ms, struct bg_err **err)
{
        uint8_t *frame = NULL;
        size_t len = 0;
        if (!a)
                return bg_error(err, ENOTCONN, "no guest agents in this bangerd");
        int rc = request(a, name, AGP_SHUTDOWN, AGP_DONE, timeout_ms, &frame, &len, err);
        free(frame);
        return rc;
}

/* ---- exec relay ---- */

struct relay {
        struct agents *a;
        struct session *s;
        int fd;
        uint8_t *in;
        size_t in_len;
        bool forwarded;          /* the EXEC went to the guest */
        bool client_gone;        /* it hung up, or reading or writing it failed */
        const char *why;         /* why the relay ended the session itself (static), for the log */
};

/* End the session with an ERROR frame for the client (mu held); the
 * first ending wins, so there is never a frame after it. */
static void relay_error(struct relay *r, int e, const char *msg)
{
        if (r->s->ended)
                return;
        struct agp_out *o = xmalloc(sizeof *o);
        agp_begin(o, AGP_ERROR);
        agp_put_u64(o, AGT_ID, 1);
        agp_put_u64(o, AGT_ERRNO, (uint64_t)e);
        agp_put_str(o, AGT_MSG, msg);
        if (agp_end(o) == 0)
                obuf_add(&r->s->toclient, o->buf, o->len);
        free(o);
        r->s->ended = true;
}

/* The client's EXEC, forwarded with the session's id (mu held). */
static const char *forward_exec(struct relay *r, struct agent *ag, const struct agp_msg *m)
{
        struct agp_out *o = xmalloc(sizeof *o);
        agp_begin(o, AGP_EXEC);
        agp_put_u64(o, AGT_ID, r->s->id);
        size_t pos = 0, n;
        uint8_t tag;
        const uint8_t *v;
        uint64_t window = 65536;
        agp_get_u64(m, AGT_WINDOW, &window);
        if (window > SESSION_WINDOW_MAX)
                window = SESSION_WINDOW_MAX;
        while (agp_next(m, &pos, &tag, &v, &n))
                if (tag != AGT_ID && tag != AGT_WINDOW)
                        agp_put_bytes(o, tag, v, n);
        agp_put_u64(o, AGT_WINDOW, window);
        r->s->out_granted = window;
        if (agp_end(o) < 0) {
                free(o);
                return "exec request too large";
        }
        queue_out(r->a, ag, o->buf, o->len);
        free(o);
        r->forwarded = true;
        return NULL;
}

/* One frame from the client (mu held); a refusal returns its reason. */
static const char *client_frame(struct relay *r, const struct agp_msg *m, bool first)
{
        struct session *s = r->s;
        struct agent *ag = s->ag;
        if (first != (m->type == AGP_EXEC))
                return first ? "the first frame must be an exec request" : "one exec request per connection";
        if (!ag)
                return NULL;   /* the agent is gone; the error frame is on its way */
        if (first)
                return forward_exec(r, ag, m);
        struct agp_out *o = xmalloc(sizeof *o);
        agp_begin(o, m->type);
        agp_put_u64(o, AGT_ID, s->id);
        const char *bad = NULL;
        uint64_t v = 0;
        const uint8_t *d;
        size_t n;
        switch (m->type) {
        case AGP_STDIN:
                if (agp_get_bytes(m, AGT_DATA, &d, &n) < 0 || n > AGP_MAX_DATA)
                        bad = "stdin frame without data or with too much";
                else if (n > s->in_granted)
                        bad = "stdin past the window the agent granted";
                else {
                        s->in_granted -= n;
                        agp_put_bytes(o, AGT_DATA, d, n);
                }
                break;
        case AGP_EOF:
                break;
        case AGP_SIGNAL:
                if (agp_get_u64(m, AGT_SIGNO, &v) < 0 || v < 1 || v > 64)
                        bad = "bad signal number";
                else
                        agp_put_u64(o, AGT_SIGNO, v);
                break;
        case AGP_RESIZE: {
                uint64_t rows = 0, cols = 0;
                if (agp_get_u64(m, AGT_ROWS, &rows) < 0 || agp_get_u64(m, AGT_COLS, &cols) < 0 || rows < 1 ||
                    rows > 1000 || cols < 1 || cols > 1000) {
                        bad = "bad terminal size";
                } else {
                        agp_put_u64(o, AGT_ROWS, rows);
                        agp_put_u64(o, AGT_COLS, cols);
                }
                break;
        }
        case AGP_WINDOW:
                if (agp_get_u64(m, AGT_N, &v) < 0)
                        bad = "window without a size";
                else {
                        /* outstanding credit stays under SESSION_WINDOW_MAX */
                        uint64_t room = s->out_granted < SESSION_WINDOW_MAX ? SESSION_WINDOW_MAX - s->out_granted : 0;
                        if (v > room)
                                v = room;
                        s->out_granted += v;
                        agp_put_u64(o, AGT_N, v);
                }
                break;
        default:
                bad = "unexpected frame type from the client";
        }
        if (!bad && agp_end(o) == 0 && ag->st == C_OPEN)
                queue_out(r->a, ag, o->buf, o->len);
        free(o);
        return bad;
}

/* Act on the complete frames in r->in.  -1 when the client broke the
 * protocol (an error frame is queued for it then). */
static int relay_process(struct relay *r, bool *first)
{
        size_t off = 0;
        int rc = 0;
        pthread_mutex_lock(&r->a->mu);
        for (;;) {
                long size = agp_frame_size(r->in + off, r->in_len - off);
                struct agp_msg m;
                const char *bad = NULL;
                if (size == 0)
                        break;
                if (size < 0 || agp_parse(r->in + off, (size_t)size, &m) < 0)
                        bad = "malformed or oversized frame";
                else
                        bad = client_frame(r, &m, *first);
                if (bad) {
                        relay_error(r, EPROTO, bad);
                        r->why = bad;
                        rc = -1;
                        break;
                }
                *first = false;
                off += (size_t)size;
        }
        pthread_mutex_unlock(&r->a->mu);
        memmove(r->in, r->in + off, r->in_len - off);
        r->in_len -= off;
        return rc;
}

/* Read and act on what the client sent.  -1 when it is gone (hung up,
 * or a read failed: ECONNRESET and the like) or broke the protocol. */
static int relay_read(struct relay *r, bool *first)
{
        ssize_t n = read(r->fd, r->in + r->in_len, AGP_MAX_FRAME - r->in_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                r->client_gone = true;
                return -1;
        }
        r->in_len += (size_t)n;
        return relay_process(r, first);
}

/* Count name's relays up (step 1) or down (mu held). */
static void relays_add(struct agents *a, const char *name, int step)
{
        uintptr_t n = (uintptr_t)strmap_get(a->relays, name);
        n = step > 0 ? n + 1 : n - 1;
        if (n)
                strmap_put(a->relays, name, (void *)n);
        else
                strmap_del(a->relays, name);
}

void agents_exec_relay(struct agents *a, const char *name, int fd, const char *extra, size_t extra_len,
                       const atomic_bool *stopping)
{
        struct session *s = xcalloc(1, sizeof *s);
        struct relay r = { .a = a, .s = s, .fd = fd, .in = xmalloc(AGP_MAX_FRAME) };
        char msg[200];
        bool counted = false;
        s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        pthread_mutex_lock(&a->mu);
        struct agent *ag = strmap_get(a->by_name, name);
        if (!ag || !ag->ready || ag->st != C_OPEN || s->wake < 0) {
                relay_error(&r, ENOTCONN, "the guest agent is not ready");
        } else if ((uintptr_t)strmap_get(a->relays, name) >= EXEC_MAX_PER_SANDBOX) {
                /* each one holds an API connection and a process slot in the guest */
                snprintf(msg, sizeof msg, "too many exec sessions in %s (at most %d at once)", name,
                         EXEC_MAX_PER_SANDBOX);
                relay_error(&r, EBUSY, msg);
        } else {
                s->ag = ag;
                s->id = ++ag->next_id;
                s->next = ag->sessions;
                ag->sessions = s;
                relays_add(a, name, 1);
                counted = true;
        }
        pthread_mutex_unlock(&a->mu);
        bool first = true;
        if (extra_len > AGP_MAX_FRAME)
                extra_len = 0;   /* MHD never reads that far ahead; refuse to guess */
        memcpy(r.in, extra, extra_len);
        r.in_len = extra_len;
        /* Deadlines: the client's EXEC; the guest's answer to it (STARTED or
         * ERROR: a guest that takes an EXEC and says nothing must not hold
         * this connection); the client reading what is left once bangerd
         * stops. */
        int64_t exec_deadline = now_mono_ms() + EXEC_REQUEST_TIMEOUT_MS;
        int64_t start_deadline = 0, stop_deadline = 0;
        bool reading = !s->ended;
        if (reading && r.in_len && relay_process(&r, &first) < 0)
                reading = false;   /* what MHD read past the request headers */
        for (;;) {
                int64_t now = now_mono_ms();
                pthread_mutex_lock(&a->mu);
                if (atomic_load(stopping) && !stop_deadline) {
                        relay_error(&r, ESHUTDOWN, "bangerd is stopping");
                        r.why = "bangerd is stopping";
                        stop_deadline = now + STOP_DRAIN_MS;
                        reading = false;
                }
                if (first && !s->ended && now > exec_deadline) {
                        relay_error(&r, ETIMEDOUT, "no exec request within 10 s");
                        reading = false;
                }
                if (r.forwarded && !start_deadline)
                        start_deadline = now + a->start_ms;
                if (r.forwarded && !s->started && !s->ended && now > start_deadline) {
                        snprintf(msg, sizeof msg, "the guest agent did not answer the exec request within %g s",
                                 a->start_ms / 1000.0);
                        relay_error(&r, ETIMEDOUT, msg);
                        r.why = "the guest agent did not answer the exec request";
                        reading = false;
                }
                bool has_out = s->toclient.len > 0;
                bool ended = s->ended;
                bool paused = s->ag && s->ag->out.len > OUTQ_PAUSE;
                pthread_mutex_unlock(&a->mu);
                if (ended && !has_out)
                        break;
                if (stop_deadline && now >= stop_deadline)
                        break;   /* a client that does not read cannot hold up bangerd's stop */
                bool want_in = reading && !paused && !ended;
                struct pollfd p[2] = {
                        { .fd = fd, .events = (short)((want_in ? POLLIN : 0) | (has_out ? POLLOUT : 0)) },
                        { .fd = s->wake, .events = POLLIN },
                };
                int n = poll(p, 2, paused || stop_deadline ? 20 : 500);
                if (n < 0 && errno != EINTR)
                        break;
                if (p[1].revents & POLLIN)
                        drain(s->wake);
                short re = p[0].revents;
                if (re & (POLLERR | POLLNVAL)) {
                        r.client_gone = true;
                        break;
                }
                if ((re & (POLLIN | POLLHUP)) && want_in) {
                        if (relay_read(&r, &first) < 0) {
                                reading = false;
                                if (r.client_gone)
                                        break;
                        }
                } else if (re & POLLHUP) {
                        /* hung up while not read: nobody is left to tell, and
                         * POLLHUP would end every poll() from now on */
                        r.client_gone = true;
                        break;
                }
                if (re & POLLOUT) {
                        pthread_mutex_lock(&a->mu);
                        ssize_t w = send(fd, s->toclient.p + s->toclient.off, s->toclient.len, MSG_NOSIGNAL);
                        if (w > 0)
                                obuf_drop(&s->toclient, (size_t)w);
                        pthread_mutex_unlock(&a->mu);
                        if (w < 0 && errno != EAGAIN && errno != EINTR) {
                                r.client_gone = true;
                                break;
                        }
                }
        }
        pthread_mutex_lock(&a->mu);
        bool killed = false;
        if (s->ag) {
                /* Still attached: the process has not ended (or the guest never
                 * answered).  However the relay ended, end the process too, or
                 * it runs on with nobody to talk to and holds one of the
                 * guest's session slots. */
                struct agent *sag = s->ag;
                if (r.forwarded && sag->st == C_OPEN) {
                        struct agp_out *o = xmalloc(sizeof *o);
                        agp_begin(o, AGP_SIGNAL);
                        agp_put_u64(o, AGT_ID, s->id);
                        agp_put_u64(o, AGT_SIGNO, SIGKILL);
                        send_frame(a, sag, o);
                        free(o);
                        killed = true;
                }
                session_unlink(sag, s);
        }
        if (counted)
                relays_add(a, name, -1);
        pthread_mutex_unlock(&a->mu);
        if (killed)
                log_info("exec name=%s: %s; process killed", name,
                         r.client_gone ? "the client went away" : r.why ? r.why : "the session ended");
        obuf_free(&s->toclient);
        if (s->wake >= 0)
                close(s->wake);
        free(s);
        free(r.in);
}
