/* agent.h -- the two halves of tern-region-agent, composed by main.c.
 *
 * tailer (thread 1): tails every configured table's stream, classifies each record
 *   (local change or echo of a Tern write), gives local changes a version, and appends
 *   them to the table's Redis change log in the same MULTI/EXEC as the shard checkpoint.
 *   Repairs the table when a Tern write clobbered a newer, not yet read, local write.
 * shipper (thread 2): per peer and table, ships the log after the peer's acknowledged
 *   position in batches over a ZeroMQ DEALER (CURVE), keeps a window of unacknowledged
 *   batches, goes back to the acknowledged position after a timeout, a refusal or a lost
 *   connection, and trims the log below the minimum acknowledgement of all peers.
 * The tailer hands each commit's entries to the shipper in memory (agent_ctx.handoff,
 * logcache.h), so that the shipper sends them without reading them back from Redis; it
 * reads the log from Redis whenever the cache cannot vouch for a position (after a start,
 * a commit whose outcome is unknown, a peer behind the cache).
 * The tailer wakes the shipper through an inproc PAIR socket, one message per commit of
 * local changes naming the table (its index in cfg->tables, a uint32_t), so that only
 * that table's links read the log again; a wake-up that finds the queue full is sent
 * again on the tailer's next turn. The shipper binds it at agent_ctx.notify_ep: a new
 * name for every start of the two threads, because a closed socket's inproc name stays
 * taken until ZeroMQ's reaper gets to it (a reload restarting the threads at once then
 * failed with "Address already in use").
 *
 * Timing (ms unless said): shard polls happen at once while local changes arrive or a
 * backlog is read (a page that is not an echo trickle, AGENT_ECHO_TRICKLE_BYTES), every cfg
 * agent.active_poll_ms for AGENT_ACTIVE_WINDOW_MS after a poll that found local changes,
 * every cfg agent.echo_poll_ms after a trickle of echoes alone (AGENT_ECHO_TRICKLE_BYTES),
 * and every cfg agent.idle_poll_ms when a shard is idle; after a store error a shard waits
 * AGENT_ERROR_BACKOFF_MS; shards are rediscovered, and the table's latest stream checked
 * (a stream disabled and enabled again), every AGENT_DESCRIBE_MS; a batch
 * unacknowledged after agent.ack_timeout_ms is resent from the acknowledged position
 * (the timeout doubles after each timeout in a row without progress, up to 16 times it),
 * and when the connection to the peer drops (ZeroMQ discards what was queued on it: the
 * batches in flight are resent AGENT_BLOCKED_RETRY_MS later or as soon as the peer is
 * connected again, not a timeout later);
 * a peer that refuses sends (not connected) is retried after AGENT_BLOCKED_RETRY_MS; a
 * batch the peer answered without taking it (refused, a gap, its apply failed) is resent
 * at once, and again after AGENT_REFUSAL_RETRY_MS doubling up to AGENT_REFUSAL_RETRY_MAX_MS
 * while the peer refuses without taking anything in between.
 * While Redis is unreachable a link retries its log read after AGENT_ERROR_BACKOFF_MS,
 * and each thread logs a Redis failure at most once per AGENT_WARN_EVERY_MS (plus one
 * line when Redis answers again). */
#ifndef TERN_AGENT_H
#define TERN_AGENT_H

#include <pthread.h>
#include <stdatomic.h>

#include "cfg.h"
#include "logcache.h"
#include "metrics.h"
#include "state.h"

#define AGENT_NOTIFY_PREFIX "inproc://tern-agent-notify-"
#define AGENT_ERROR_BACKOFF_MS 500
#define AGENT_DESCRIBE_MS 10000
/* DescribeStream pages one listing reads at most (100 shards a page on DynamoDB: far more
 * than a stream holds); a store whose paging goes round in a circle stops there, the
 * listing incomplete, and is asked again after AGENT_ERROR_BACKOFF_MS */
#define AGENT_DESCRIBE_MAX_PAGES 1000
#define AGENT_ACTIVE_WINDOW_MS 100 /* a shard stays active this long after local changes */
/* A page without a local change to ship (echoes of replicated writes; also application
 * writes that cannot be shipped, counted invalid), with fewer records than agent.batch_max
 * and under AGENT_ECHO_TRICKLE_BYTES of stream records as read, is a trickle, not a
 * backlog: it is followed by cfg agent.echo_poll_ms of pause (agent.active_poll_ms while
 * the shard is active). Echoes are no one's lag, and each poll costs the store, busy
 * applying them, about 0.5 ms of CPU; polled every 5 ms (and at once after 16 echoes or
 * more), a destination at 1,000 writes/s read pages of 8-16 echoes 60-120 times a second,
 * and replication lag halved while its agent was stopped (docs/lag.md, "Echo polls"). The
 * byte bound keeps a page that GetRecords cut at its 1 MB limit (a few large records) a
 * backlog. */
#define AGENT_ECHO_TRICKLE_BYTES (256 * 1024)
#define AGENT_BLOCKED_RETRY_MS 100
/* Frames in flight per peer and table at most, bytes (besides agent.max_inflight_batches
 * batches): a frame is up to WIRE_MAX_FRAME (8 MiB), so a window of 64 large batches could
 * otherwise hold 512 MiB in the agent's and the peer's queues. A batch is sent while
 * less than this is in flight (one frame may go over it). */
#define AGENT_INFLIGHT_BYTES (64u << 20)
#define AGENT_REFUSAL_RETRY_MS 100
#define AGENT_REFUSAL_RETRY_MAX_MS 5000
/* Hold of a REMOVE record whose matching delete token is tentative (apply.h): the
 * replicator (or this agent's repair) has sent the DeleteItem and not had its answer. The
 * shard's records before it are committed; it and the rest of the page are kept and
 * classified again (Redis only, no stream read) every AGENT_HOLD_POLL_MS for the first
 * AGENT_HOLD_FAST_MS, then every AGENT_HOLD_SLOW_MS, until the token is confirmed (an
 * echo) or taken back (a local delete: the application's, made while the DeleteItem was
 * on its way). The hold limit is the longest a store call can take
 * (store_call_max_ms, 23 s with the defaults) plus AGENT_HOLD_SLACK_MS for the
 * peer's resend of a change whose apply failed without an answer. A token still
 * tentative then belongs to a writer that crashed, or is down, between its write and
 * the answer (its retry settles it); the REMOVE is taken for its echo, as it almost
 * always is, and a warning logged. All in ms. */
#define AGENT_HOLD_POLL_MS 2
#define AGENT_HOLD_FAST_MS 100
#define AGENT_HOLD_SLOW_MS 100
#define AGENT_HOLD_SLACK_MS 5000
/* A delete token "T/D<version>@<deadline>" (apply.h) is not matched with a stream record
 * created (ApproximateCreationDateTime, rounded down: to the second on DynamoDB, to the
 * minute on DynamoDB Local) more than this margin after its deadline (28 s after the token
 * was added with the default store settings): its DeleteItem was made by then if ever,
 * and a key's records are read in order, so the key has no echo of it left to come. The
 * token is then spent as stale (acnt:T stale): its delete removed nothing though its
 * outcome was unknown (the store client retried inside the call, or the writer crashed
 * before the answer), and it would have hidden the key's next local delete. The margin
 * covers the writer's clock running behind the store's (ms); behind by more, an echo
 * could be shipped as a local delete. */
#define AGENT_TOKEN_CLOCK_MARGIN_MS 60000
#define AGENT_HOUSEKEEP_MS 500
#define AGENT_NO_STREAM_WARN_MS 60000 /* a configured table with no usable stream is said
                                         again this often (it is looked at every 2 s) */
#define AGENT_WARN_EVERY_MS 5000 /* rate limit of repeated Redis warnings */
#define AGENT_DRAIN_MS 5000     /* on stop: wait at most this long for outstanding acks */
/* A thread whose loop has not turned, nor a store or Redis call of it begun (their
 * beacons), for AGENT_STALL_MS plus the longest wait on one of them (daemon_wait_max_ms:
 * 8 s with the defaults) is stalled: /healthz fails and the watchdog is no longer fed
 * (systemd restarts the agent WatchdogSec later). A slow or frozen store or Redis is not
 * a stall: restarting the agent would not help, and used to cost its in-flight work. */
#define AGENT_STALL_MS 10000

typedef struct {
    const cfg_region *cfg;
    void *zctx;                 /* shared ZeroMQ context */
    char notify_ep[64];         /* this start's inproc wake-up endpoint (AGENT_NOTIFY_PREFIX + start count) */
    unsigned starts;            /* thread starts so far (main thread only) */
    atomic_int stop_reading;    /* set on SIGTERM: the tailer finishes its batch and exits */
    atomic_int stop;            /* set when the tailer has exited: the shipper drains and exits */
    atomic_int tailer_ready;    /* 1 once every table's stream was found, or the table has none usable */
    atomic_int shipper_ready;   /* 1 once the peer sockets are up */
    atomic_int failed;          /* a thread hit a fatal error */
    logcache_queue *handoff;    /* the tailer's commits for the shipper: made by agent_start
                                   for the running config, freed once both threads joined */
    atomic_llong tailer_beat;   /* monotonic ms of the tailer loop's last turn, or of the
                                   start of its latest store or Redis call (beacons) */
    atomic_llong shipper_beat;  /* monotonic ms of the shipper loop's last turn */
    atomic_llong stall_ms;      /* AGENT_STALL_MS + daemon_wait_max_ms of the running config */
    pthread_mutex_t status_mu;  /* guards status */
    char status[256];           /* one-line status for sd_notify, written by the shipper */
    /* metrics (families owned by the registry, which main owns) */
    metrics_registry *reg;
    metrics_family *m_changes;  /* tern_agent_changes_total{table,kind}: local, echo, repaired, invalid */
    metrics_family *m_shipped;  /* tern_agent_shipped_changes_total{peer,table} */
    metrics_family *m_resent;   /* tern_agent_resent_batches_total{peer,table} */
    metrics_family *m_batches;  /* tern_agent_batches_total{peer,table,from}: memory, redis */
    metrics_family *m_inflight; /* tern_agent_inflight_batches{peer,table} */
    metrics_family *m_connected;/* tern_agent_peer_connected{peer} */
    metrics_family *m_trimmed;  /* tern_agent_trimmed_alarms_total{table} */
    metrics_family *m_rejected; /* tern_agent_rejected_replies_total{peer,reason} */
} agent_ctx;

/* Thread bodies; return 0 on a clean stop, -1 on a fatal error (logged). */
int tailer_run(agent_ctx *a);
/* Records that changes of table may not reach a peer (data trimmed before it was read or
 * shipped; the caller logs why): an entry "<at_ms> <table> <where>" in alarm:trimmed
 * (where: a stream shard id, or "peer:<region>" for the change log), acnt:T trimmed and
 * the trimmed-alarms metric. st is the calling thread's handle. */
void agent_record_trimmed(agent_ctx *a, state *st, const char *table, const char *where);
int shipper_run(agent_ctx *a);

#endif
