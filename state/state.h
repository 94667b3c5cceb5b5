/* state.h -- Tern's Redis state: one connection with a sticky error, reconnect,
 * pipelining, and the key layout that the daemons write and ternctl reads.
 *
 * Key layout (every key of region R starts with "tern:R:"; docs/redis-keys.md is the
 * reference, and STATE_K_* below are the only place the names are spelled):
 *   log:T          STREAM  the agent's versioned change log of table T; entry field "c" =
 *                          {"op","keys","image","ver"}; trimmed below the minimum peer ack
 *   ckpt:T         HASH    shard id -> last stream sequence number appended to log:T,
 *                          or "END <seq>" once a closed shard has been read to its end;
 *                          field STATE_CKPT_STREAM -> the ARN of the stream of those shards
 *   ack:T          HASH    peer region -> last log:T position ("ms-seq") the peer applied
 *   lost:T         HASH    peer region -> last log:T entry trimmed while the peer, not configured,
 *                          had not acknowledged it (reported when the peer is configured again)
 *   ll:T:KID       STRING  version of the last local change of key KID (TTL = tombstone TTL)
 *   tomb:T:KID     STRING  version of the last delete of key KID (TTL = tombstone TTL); the
 *                          replicator raises it before it deletes
 *   lt:T:KID       STRING  version of this region's last local delete of KID (agent only; the
 *                          state a repair may restore when a replicated put clobbered it)
 *   pend:T:KID     SET     echo tokens of Tern writes to KID not yet seen in the stream
 *   wm:S:T         HASH    replicator watermark for source region S: pos, ver, at_ms, lag_ms
 *   cnt:S:T        HASH    replicator counters for source S: applied, lost, dup, skew, stale
 *   lag:S:T        LIST    recent "at_ms lag_ms" samples for source S (newest first, capped)
 *   acnt:T         HASH    agent counters: local, echo, repaired, invalid, trimmed, shipped:P, resent:P
 *   alarm:trimmed  LIST    "at_ms table shard" entries: data may have been lost (TrimmedDataAccess)
 *   alarm:refused  LIST    "at_ms detail" of peer changes the store refused for good (replicator;
 *                          newest first, at most 1000): those items differ between regions
 *   hlc            STRING  the agent's last issued version (floor for its clock after a restart)
 *   pause:P        STRING  present: shipping to peer P is paused (ternctl pause)
 *   hb:agent, hb:replicator  STRING  heartbeat: "<ms> <pid> <status>", expires after STATE_HEARTBEAT_TTL_S
 *   rej            HASH    replicator counters of rejected input by reason (not per source)
 * KID is item_key_id() of the item's key attributes.
 *
 * Threading: a state handle belongs to one thread at a time. Each daemon thread that
 * talks to Redis opens its own. */
#ifndef TERN_STATE_H
#define TERN_STATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <hiredis/hiredis.h>

#define STATE_HEARTBEAT_TTL_S 10       /* heartbeat keys expire after this many seconds */
#define STATE_LAG_SAMPLES 2000         /* lag:S:T keeps at most this many samples */
#define STATE_RECONNECT_MIN_MS 100     /* reconnect backoff: first wait, doubles ... */
#define STATE_RECONNECT_MAX_MS 2000    /* ... up to this cap (ms) */

#define STATE_K_LOG "log:%s"
#define STATE_K_CKPT "ckpt:%s"
#define STATE_CKPT_STREAM "stream" /* field of ckpt:T (shard ids begin with "shardId-") */
#define STATE_K_ACK "ack:%s"
#define STATE_K_LOST "lost:%s"
#define STATE_K_LASTLOCAL "ll:%s:%s"
#define STATE_K_TOMB "tomb:%s:%s"
#define STATE_K_LOCALTOMB "lt:%s:%s"
#define STATE_K_LASTIMAGE "li:%s:%s"
#define STATE_K_PEND "pend:%s:%s"
#define STATE_K_WM "wm:%s:%s"
#define STATE_K_CNT "cnt:%s:%s"
#define STATE_K_LAG "lag:%s:%s"
#define STATE_K_ACNT "acnt:%s"
#define STATE_K_ALARM_TRIMMED "alarm:trimmed"
#define STATE_K_ALARM_REFUSED "alarm:refused"
#define STATE_K_HLC "hlc"
#define STATE_K_PAUSE "pause:%s"
#define STATE_K_HB "hb:%s"
#define STATE_K_REJ "rej"

typedef struct {
    const char *region;      /* keys are prefixed "tern:<region>:"; required */
    const char *host;        /* used when unix_socket is NULL or empty */
    int port;
    const char *unix_socket;
    const char *password;    /* AUTH when non-NULL and non-empty; never logged */
    int db;                  /* SELECT when > 0 */
    long timeout_ms;         /* connect and command timeout */
} state_opts;

typedef struct state state;

/* Connects (and AUTHs, SELECTs) now. Returns NULL and fills err on failure, e.g. a
 * wrong password: "redis 127.0.0.1:6380: AUTH failed: WRONGPASS ...". The options'
 * strings are copied; the caller keeps ownership of opts. Free with state_free(). */
state *state_new(const state_opts *opts, char *err, size_t errlen);
void state_free(state *st);

/* Progress beacon: when beacon is not NULL, every command, connection attempt and flush
 * stores the monotonic time (CLOCK_MONOTONIC, ms) into *beacon before it may block (each
 * for at most the connect or command timeout, twice for a command retried on a fresh
 * connection), so that a watchdog on another thread can tell a thread waiting on Redis
 * from a hung one. The caller owns *beacon and keeps it alive while it is set; NULL unsets. */
void state_set_beacon(state *st, atomic_llong *beacon);
/* The longest a handle with timeout_ms goes without touching its beacon, in ms: a connection
 * (connect, AUTH, SELECT) and one command, each up to the timeout. */
long long state_beacon_gap_max_ms(long timeout_ms);

/* The last error, sticky until the next successful command; "" when none. Borrowed. */
const char *state_errstr(const state *st);
/* The region this handle's keys belong to. Borrowed. */
const char *state_region(const state *st);

/* Formats the full key "tern:<region>:<fmt...>" into buf; returns 0, or -1 if it does
 * not fit. */
int state_key(const state *st, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Runs one command (hiredis format). On success returns the reply, which the caller
 * frees with freeReplyObject(). Returns NULL on a connection failure (after one
 * reconnect attempt) or an error reply; both set the sticky error. */
redisReply *state_cmd(state *st, const char *fmt, ...);
redisReply *state_cmdargv(state *st, int argc, const char **argv, const size_t *argvlen);

/* Pipelining: queue commands with state_append*(), then state_flush() reads exactly as
 * many replies as were queued into replies[] (n must equal the count queued) and returns
 * 0, or -1 if the connection failed, in which case every reply slot is NULL and the
 * caller retries the whole (idempotent) operation. Error replies are returned as
 * REDIS_REPLY_ERROR objects, not failures. The caller frees each non-NULL reply. */
int state_append(state *st, const char *fmt, ...);
int state_appendargv(state *st, int argc, const char **argv, const size_t *argvlen);
int state_flush(state *st, redisReply **replies, size_t n);
/* state_flush for replies that must all be real answers: an error reply among them (a
 * key of the wrong type, Redis out of memory or read-only) is a failure too, its text the
 * sticky error, every slot NULL, the connection kept. For reads where "absent" and
 * "error" must not be confused, and writes that must have happened. */
int state_flush_ok(state *st, redisReply **replies, size_t n);
/* 1 when r (one of state_flush's replies) is an error reply or missing, its text then the
 * sticky error ("redis HOST:PORT: ...", as state_cmd's); 0 for a real answer. For
 * pipelines whose replies are judged one by one. */
int state_reply_failed(state *st, const redisReply *r);
/* Number of commands queued since the last flush. */
size_t state_pending(const state *st);

/* Convenience: returns the integer value of a reply (integer or numeric string),
 * or dflt when the reply is NULL, nil or not a number. */
long long state_reply_ll(const redisReply *r, long long dflt);

/* Writes the heartbeat key hb:<who> = "<now_ms> <pid> <status>" with expiry. 0/-1. */
int state_heartbeat(state *st, const char *who, const char *status);

/* Checks the Redis server's settings that Tern's guarantees rest on (docs/operations.md,
 * section 1): `appendonly yes` (else a Redis restart loses the change log, checkpoints,
 * watermarks and echo tokens), `appendfsync always` (else a host crash loses up to a
 * second of them), and no eviction (`maxmemory 0` or `maxmemory-policy noeviction`: else
 * Redis may drop tombstones, echo tokens and versions, which all have TTLs, and a late
 * older put could undo a delete, an echo could be shipped). Returns 1 with what is wrong
 * in msg (caller's buffer of len bytes), 0 when all hold, -1 when they cannot be read
 * (CONFIG refused or renamed, as managed Redis services do; the reason in msg). Allocates
 * nothing the caller frees. */
int state_check_durability(state *st, char *msg, size_t len);

#endif
