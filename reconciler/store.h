/* store: bangerd's state in LMDB.  The only module that touches LMDB.
 *
 * Databases in one environment (state_dir/db):
 *   meta      "schema_version" -> decimal text; "event_seq" -> next sequence
 *   sandboxes name -> record (compact binary encoding, see store.c)
 *   allocs    "<pool>/<key>" -> owner id   (tap names, IPs, MACs, ...)
 *   events    big-endian u64 seq -> JSON text, bounded ring (oldest dropped)
 *
 * Write-ahead rule: the loop commits a record (with its id) or an
 * allocation before any kernel or driver object named after it is made,
 * and deletes it only after the object is gone.  So after a crash at any
 * instant every object banger owns is claimed by the store or is garbage
 * that the GC pass may remove.
 *
 * Threads: the environment is opened with MDB_NOTLS; any thread may run
 * read transactions; writes are serialised by LMDB itself.
 */
#ifndef BANGER_STORE_H
#define BANGER_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phase.h"

struct bg_err;
struct store;
struct store_txn;

#define STORE_SCHEMA_VERSION 1
#define STORE_EVENTS_MAX 10000     /* events kept; older ones are dropped */

/* Record flags. */
#define REC_PREPARED     0x1u   /* driver prepare() completed: disks etc. exist */
#define REC_GUEST_EXITED 0x2u   /* the VM exited by itself and policy kept it down */

struct store_record {
        char name[64];
        char id[17];               /* 16 lowercase hex chars, unique per creation */
        enum bg_phase phase;
        uint32_t flags;            /* REC_* */
        uint32_t restarts;         /* VM restarts by policy */
        uint32_t failures;         /* consecutive failed actions (backoff) */
        uint64_t spec_hash;        /* hash of spec_json's spec */
        int64_t created_ms;        /* wall clock */
        int64_t phase_since_ms;    /* wall clock of the last phase change */
        int64_t backoff_until_ms;  /* wall clock; 0 = none */
        int32_t last_exit;         /* last VM exit status, -1 unknown */
        char *spec_json;           /* applied spec, canonical JSON text (owned) */
        char *message;             /* last status message or error, NULL when none (owned) */
        char *handles_json;        /* driver handles, JSON object text, NULL when none (owned) */
};

/* Free the owned strings of r (not r itself); zero them. */
void store_record_release(struct store_record *r);
/* Deep copy. */
void store_record_copy(struct store_record *dst, const struct store_record *src);

/* Open (creating) the environment in dir; checks or writes the schema
 * version (a newer version on disk is an error, never silently used). */
int store_open(const char *dir, struct store **out, struct bg_err **err);
void store_close(struct store *s);

/* Transactions.  A write txn must end with commit or abort; a read txn with
 * abort.  Commit always ends the txn, even when it fails (never abort after
 * it).  One write txn per thread at a time (a second one fails -EDEADLK).
 * All operations below take a txn. */
int store_txn_begin(struct store *s, bool write, struct store_txn **out, struct bg_err **err);
int store_txn_commit(struct store_txn *t, struct bg_err **err);
void store_txn_abort(struct store_txn *t);

/* Records.  get returns -ENOENT when absent (without setting err) and
 * always overwrites *out (zeroed on failure, so releasing it is safe); del
 * of an absent record is 0.  A corrupt record is an error (-EBADMSG), never
 * skipped: GC must not mistake its objects for garbage. */
int store_record_get(struct store_txn *t, const char *name, struct store_record *out, struct bg_err **err);
int store_record_put(struct store_txn *t, const struct store_record *r, struct bg_err **err);
int store_record_del(struct store_txn *t, const char *name, struct bg_err **err);
/* Calls cb for every record in name order; cb returns nonzero to stop.
 * The record passed to cb is only valid during the call. */
int store_record_foreach(struct store_txn *t, int (*cb)(const struct store_record *r, void *arg),
                         void *arg, struct bg_err **err);

/* Allocations: claim key in pool for owner.  Claiming a key the same owner
 * holds is a no-op; a key held by another owner fails with -EEXIST. */
int store_alloc_claim(struct store_txn *t, const char *pool, const char *key, const char *owner,
                      struct bg_err **err);
/* Release one key (absent is fine). */
int store_alloc_release(struct store_txn *t, const char *pool, const char *key, struct bg_err **err);
/* Owner of pool/key into owner (17 bytes); -ENOENT when free. */
int store_alloc_get(struct store_txn *t, const char *pool, const char *key, char owner[17],
                    struct bg_err **err);
/* Calls cb for every allocation in pool (pool NULL: all pools). */
int store_alloc_foreach(struct store_txn *t, const char *pool,
                        int (*cb)(const char *pool, const char *key, const char *owner, void *arg),
                        void *arg, struct bg_err **err);
/* Release every allocation of owner, all pools. */
int store_alloc_release_owner(struct store_txn *t, const char *owner, struct bg_err **err);

/* Events.  append assigns the next sequence number (returned in *seq),
 * stores {"seq":N,...ev} and drops the oldest beyond STORE_EVENTS_MAX.
 * ev is borrowed. */
int store_event_append(struct store_txn *t, json_t *ev, uint64_t *seq, struct bg_err **err);
/* Calls cb with each event whose seq > after, oldest first, at most max
 * (0: no limit).  json_t is borrowed for the call. */
int store_event_foreach(struct store_txn *t, uint64_t after, size_t max,
                        int (*cb)(uint64_t seq, json_t *ev, void *arg), void *arg, struct bg_err **err);
/* Highest sequence assigned so far (0 when none). */
int store_event_last_seq(struct store_txn *t, uint64_t *seq, struct bg_err **err);

/* A new random record id (16 hex chars + NUL). */
void store_new_id(char id[17]);

#endif
