/* replicator.h -- the parts of tern-replicator, composed by main.c.
 *
 * zap (zap.c): the ZeroMQ authentication handler (RFC 27 ZAP) on its own thread.
 *   A CURVE client is accepted only if its public key is a configured peer's; the ZAP
 *   reply's User-Id is that peer's region, which the receiver compares with the
 *   source region every frame claims. Refused handshakes are counted and logged.
 * receiver (receiver.c): decodes frames from the ROUTER socket, rejects and counts bad
 *   ones, and applies batches in order per (source region, table) with the watermark:
 *     prev  > last position taken -> a gap (a lost batch): nothing taken, ack the watermark;
 *     pos  <= watermark           -> a duplicate: skipped;
 *     pos  <= last position taken -> already being applied: skipped;
 *     otherwise                   -> handed to the apply pool (LWW-checked conditional write,
 *                                    apply.h).
 *   With no watermark yet (first contact), the first batch that follows the source's
 *   acknowledged position (version 2 batches carry it; any version 1 batch) has its prev
 *   saved as one first; a first batch after that position is refused (ack 0-0) and the
 *   peer resends from it. A version 2 batch that follows that position above a watermark
 *   that went back (Redis restored) moves the watermark there instead of being a gap.
 *   Changes stream through the pool: a batch is taken as soon as it arrives, while the
 *   batches before it are still being applied. The watermark moves in position order
 *   over finished changes (written, lost their conflict, duplicates); a change that
 *   failed stops it, the changes after it are left to finish and their results ignored
 *   (but a write among them is counted as applied: its resend finds it written, a
 *   duplicate), and the peer resends from the watermark (the conditional writes make that
 *   harmless).
 *   Whenever the watermark moved, it is saved with counters and lag samples in one Redis
 *   round trip, then acknowledged: an ack always means durably applied. With a slow
 *   store the peer thus sees progress change by change, never a whole window late.
 *   A change whose version is more than replicator.max_clock_skew_ms ahead of this
 *   region's clock is held back (not applied, not acknowledged) until it no longer is:
 *   nothing is lost, and a peer with a fast clock cannot win every conflict.
 *   At most REPL_MAX_INFLIGHT changes are in the pool: beyond that no frame is read
 *   (the peers' windows then hold the rest). */
#ifndef TERN_REPLICATOR_H
#define TERN_REPLICATOR_H

#include <stdatomic.h>
#include <stdint.h>

#include "apply.h"
#include "cfg.h"
#include "lww.h"
#include "metrics.h"
#include "wire.h"
#include "state.h"
#include "store.h"

#define REPL_POLL_MS 100          /* main loop wake-up, ms */
#define REPL_HOUSEKEEP_MS 500     /* heartbeat and counter flush period, ms */
/* A worker writes a transaction (apply_puts, from APPLY_GROUP_MIN puts) only when the head
 * of its queue has waited this long, ms; else it takes at most APPLY_GROUP_MIN - 1 puts (or
 * replicator.group_writes), written side by side (replicator.parallel_puts). (A
 * transaction's writer may still take a younger put from another worker's queue.) With
 * replicator.transactions 0 there are no transactions, and no wait. */
#define REPL_TXN_AGE_MS 20
#define REPL_SCHEMA_RETRY_MS 60000 /* a table's DescribeTable that failed is tried again after, ms */
/* A thread counts as stalled when it has not turned, nor begun a store or Redis call, for
 * REPL_STALL_MS plus the longest wait on one call (daemon_wait_max_ms), ms (/healthz, the
 * watchdog during a drain) */
#define REPL_STALL_MS 10000
#define REPL_BIND_WAIT_MS 2000  /* a bind finding its address in use tries again this long, ms (repl_bind) */
#define REPL_DRAIN_TICK_MS 250    /* a drain's wake-up for the watchdog (periods down to 0.5 s), ms */
#define REPL_WARN_EVERY_MS 5000   /* rate limit of repeated warnings, ms */
#define REPL_DRIFT_WARN_MS 1000  /* warn (every REPL_WARN_EVERY_MS) when a peer's versions run ahead by this */
#define REPL_MAX_INFLIGHT 8192   /* changes in the apply pool at most; then no frame is read */
#define REPL_REJECT_LOG_MS 1000   /* at most one log line per rejection reason per this, ms */

typedef struct zap_handler zap_handler;

/* Starts the ZAP thread bound to inproc://zeromq.zap.01 in zctx; it must run before the
 * ROUTER socket binds. NULL + err on failure. zap_stop() joins and frees it. */
zap_handler *zap_start(void *zctx, const cfg_region *cfg, char *err, size_t errlen);
void zap_stop(zap_handler *z);
/* After a reload: the allow-list comes from cfg (borrowed; must outlive its use: the caller
 * frees the old config only after this returns). */
void zap_set_config(zap_handler *z, const cfg_region *cfg);
/* Handshakes refused since the last call (resets the count). */
long zap_take_refused(zap_handler *z);

/* ---- apply pool (pool.c) ----
 * replicator.apply_workers threads apply changes in parallel, each with its own store and
 * Redis handles and its own queue; all changes of one key go to one worker's queue, in the
 * order submitted, and are written in that order (a transaction's writer may take puts
 * from other workers' queues). Jobs stream: no batch waits for the one before it to
 * finish. */
typedef struct apply_pool apply_pool;

/* Grouped writes (two puts or more in one apply_puts) and the puts they held, by the queue
 * they came from: the writer's own, or another worker's (taken by a transaction's writer). */
typedef struct pool_group_counts {
    uint64_t groups;
    uint64_t own;
    uint64_t other;
} pool_group_counts;

typedef struct pool_job {
    /* inputs, set by the submitter (all borrowed, must outlive the job) */
    const wire_change *c;
    const char *kid;             /* item_key_id of c->keys */
    const char *table;
    long ttl_s;
    /* outputs, valid once done is 1 */
    atomic_int done;
    apply_result res;
    char winner[LWW_VERSION_STRLEN];
    char err[512];
    long long done_wall;         /* wall ms when the write returned */
    int canceled;                /* 1: never started (pool_cancel_queued); res is APPLY_ERROR */
    /* qnext, khash and queued_at are the pool's; the submitter's own bookkeeping follows */
    struct pool_job *qnext;
    unsigned khash;              /* hash of kid: its worker, and a quick key comparison */
    long long queued_at;         /* mono ms: submitted */
    struct pool_job *next;       /* receiver: the source's FIFO in position order */
    void *batch;                 /* receiver: the held batch c points into */
    char *kid_owned;             /* receiver: kid, freed with the job */
    int ignore;                  /* receiver: an earlier change failed: result not used */
    int key_schema;              /* receiver: refused before the pool, its keys not the table's */
} pool_job;

/* NULL + err on failure. Free with pool_free, which waits for every submitted job to
 * finish and joins the workers. */
apply_pool *pool_new(const cfg_region *cfg, char *err, size_t errlen);
void pool_free(apply_pool *p);
/* Queues j on its key's worker; j is the caller's and must stay valid until j->done. */
void pool_submit(apply_pool *p, pool_job *j);
/* Jobs still queued (not started) are marked done with APPLY_ERROR ("stopping") at once;
 * returns how many. Jobs being applied are not touched. */
size_t pool_cancel_queued(apply_pool *p);
/* Blocks until every submitted job is done. */
void pool_wait_idle(apply_pool *p);
/* Waits until every submitted job is done or ms pass; returns the jobs not done yet (0:
 * idle), and in *beacon the latest sign of life of the workers holding jobs (mono ms: one
 * took its jobs, or began a store or Redis call), -1 when none holds any. */
size_t pool_wait_idle_for(apply_pool *p, long ms, long long *beacon);
/* An fd that polls readable when jobs finished since the last pool_take_events. */
int pool_fd(const apply_pool *p);
void pool_take_events(apply_pool *p);
/* Copies of the workers' store statistics (each as of its last job) into out[0..max);
 * returns how many. (The handles themselves are the workers' alone.) */
size_t pool_stats(apply_pool *p, store_stats *out, size_t max);
/* The group counts since the last call, into *out (the caller's); resets them. */
void pool_take_group_counts(apply_pool *p, pool_group_counts *out);

typedef struct receiver receiver;

/* Creates the receiver; the store and Redis handles are borrowed and must outlive it; it
 * starts its own apply pool. */
receiver *receiver_new(const cfg_region *cfg, store *s, state *st, char *err, size_t errlen);
/* The receiver's apply pool (borrowed), for statistics. */
apply_pool *receiver_pool(receiver *r);
void receiver_free(receiver *r);
/* After a reload: the receiver uses the new config and handles (borrowed), restarts its
 * apply pool, and reloads watermarks from Redis as batches arrive. 0, or -1 (err) with
 * the old configuration still in force. */
int receiver_reconfigure(receiver *r, const cfg_region *cfg, store *s, state *st, char *err, size_t errlen);
/* Handles one frame from a ROUTER peer; acknowledgements go through `sock` (borrowed,
 * here or from a later receiver_progress) to the routing id
 * of the source's latest frame. user_id is the ZAP User-Id (NULL when CURVE is off). */
void receiver_frame(receiver *r, void *sock, const void *routing_id, size_t rid_len,
                    const void *data, size_t len, const char *user_id);
/* Takes the apply pool's finished changes: moves watermarks, saves and acknowledges.
 * Call when pool_fd(receiver_pool(r)) polls readable, and from housekeeping (a save that
 * failed is retried). */
void receiver_progress(receiver *r, void *sock);
/* 1 when REPL_MAX_INFLIGHT changes are in the pool: do not read frames. */
int receiver_busy(receiver *r);
/* Stop and reload: changes still queued are dropped (their peer resends them), the ones
 * taken by a worker (being applied, or in a group waiting for a transaction slot) are
 * waited for; then what finished is saved and acknowledged. A store call may last 23 s
 * with the default timeouts, so the wait calls alive() (NULL: none) every
 * REPL_DRAIN_TICK_MS for the service manager's watchdog while the workers holding jobs
 * show life: one of them took its jobs or began a store or Redis call within REPL_STALL_MS
 * plus daemon_wait_max_ms (the rule of /healthz); past that (a worker hung) it stops,
 * with an error, and starts again, with an info line, if a worker shows life again. */
void receiver_drain(receiver *r, void *sock, void (*alive)(void));
/* Counts a frame rejected outside the decoder (e.g. wrong number of parts). */
void receiver_reject(receiver *r, const char *reason, const char *peer, const char *detail);
/* Registers the receiver's metric families in reg (which must outlive the receiver):
 * tern_replicator_changes_total{source,table,result}, tern_replicator_lag_ms{source,table}
 * (histogram), tern_replicator_rejected_frames_total{reason},
 * tern_replicator_curve_refused_total, tern_replicator_grouped_writes_total,
 * tern_replicator_grouped_changes_total{queue}. 0/-1 (err). */
int receiver_set_metrics(receiver *r, metrics_registry *reg, char *err, size_t errlen);
/* Saves pending rejection counters; writes the heartbeat; publishes the apply pool's group
 * counts to the metrics. */
void receiver_housekeep(receiver *r, long refused, const char *status);

#endif
