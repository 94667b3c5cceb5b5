/* replicator.h -- the parts of tern-replicator, composed by main.c.
 *
 * zap (zap.c): the ZeroMQ authentication handler (RFC 27 ZAP) on its own thread.
 *   A CURVE client is accepted only if its public key is a configured peer's; the ZAP
 *   reply's User-Id is that peer's region, which the receiver compares with the
 *   source region every frame claims. Refused handshakes are counted and logged.
 * receiver (receiver.c): decodes frames from the ROUTER socket, rejects and counts bad
 *   ones, and applies batches in order per (source region, table) with the watermark:
 *     prev  > watermark  -> a gap (a lost batch): nothing applied, ack the watermark;
 *     pos  <= watermark  -> a duplicate: skipped;
 *     otherwise          -> LWW-checked conditional write (apply.h), watermark moves.
 *   A change whose version is more than replicator.max_clock_skew_ms ahead of this
 *   region's clock is held back (not applied, not acknowledged) until it no longer is:
 *   nothing is lost, and a peer with a fast clock cannot win every conflict.
 *   After a batch, the watermark, counters and lag samples are saved in one Redis
 *   round trip, then the batch is acknowledged: an ack always means durably applied.
 *   A batch that takes longer than REPL_PROGRESS_ACK_MS is also saved and acknowledged
 *   part way, every REPL_PROGRESS_ACK_MS: with a slow store, a batch of batch_max
 *   changes can take longer than the peer's ack timeout, and without progress acks
 *   the peer resent its whole window again and again (go-back-N) while the replicator
 *   spent its time decoding duplicates: replication slowed to a crawl. */
#ifndef TERN_REPLICATOR_H
#define TERN_REPLICATOR_H

#include <stdatomic.h>

#include "apply.h"
#include "cfg.h"
#include "lww.h"
#include "metrics.h"
#include "wire.h"
#include "state.h"
#include "store.h"

#define REPL_POLL_MS 100          /* main loop wake-up, ms */
#define REPL_HOUSEKEEP_MS 500     /* heartbeat and counter flush period, ms */
#define REPL_WARN_EVERY_MS 5000   /* rate limit of repeated warnings, ms */
#define REPL_PROGRESS_ACK_MS 250  /* save and acknowledge a long batch part way this often, ms */
#define REPL_DRIFT_WARN_MS 1000  /* warn (every REPL_WARN_EVERY_MS) when a peer's versions run ahead by this */
#define REPL_CHUNK 256           /* changes handed to the apply pool at a time */
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
 * replicator.apply_workers threads apply the changes of a batch in parallel, each with
 * its own store and Redis handles; all changes of one key go to one worker, in order. */
typedef struct apply_pool apply_pool;

typedef struct {
    const wire_change *c;        /* borrowed from the batch */
    char *kid;                   /* item_key_id of c->keys (owned by the caller) */
    int worker;                  /* set by pool_run */
    apply_result res;            /* outputs, set by the worker: */
    char winner[LWW_VERSION_STRLEN];
    char err[512];
    long long done_wall;         /* wall ms when the write returned */
} pool_slot;

/* NULL + err on failure. Free with pool_free (joins the workers). */
apply_pool *pool_new(const cfg_region *cfg, char *err, size_t errlen);
void pool_free(apply_pool *p);
/* Applies slots[0..n) (precheck on) and returns when every slot has a result. */
void pool_run(apply_pool *p, const char *table, long ttl_s, pool_slot *slots, size_t n);
/* The workers' store handles (borrowed), for statistics between pool_run calls. */
size_t pool_stores(const apply_pool *p, const store **out, size_t max);

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
/* Handles one frame from a ROUTER peer; replies go through `sock` to `routing_id`.
 * user_id is the ZAP User-Id (NULL when CURVE is off). */
void receiver_frame(receiver *r, void *sock, const void *routing_id, size_t rid_len,
                    const void *data, size_t len, const char *user_id);
/* Counts a frame rejected outside the decoder (e.g. wrong number of parts). */
void receiver_reject(receiver *r, const char *reason, const char *peer, const char *detail);
/* Registers the receiver's metric families in reg (which must outlive the receiver):
 * tern_replicator_changes_total{source,table,result}, tern_replicator_lag_ms{source,table}
 * (histogram), tern_replicator_rejected_frames_total{reason},
 * tern_replicator_curve_refused_total. 0/-1 (err). */
int receiver_set_metrics(receiver *r, metrics_registry *reg, char *err, size_t errlen);
/* Saves pending rejection counters; writes the heartbeat. */
void receiver_housekeep(receiver *r, long refused, const char *status);

#endif
