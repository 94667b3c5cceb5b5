/* receiver.c -- decodes, checks and applies peers' batches (see replicator.h).
 *
 * Owns: per (source region, table) the watermark (the last applied change-log position
 * of that source's table; loaded from wm:S:T on first sight; if absent, the first batch
 * that follows the source's acknowledged position saves its prev as the watermark:
 * receiver_admit), the
 * position of the last change handed to the apply pool (taken), the FIFO of changes in
 * the pool in position order, the routing id of the source's latest frame, and counters
 * and lag samples not yet saved. Each decoded batch is held (reference-counted by its
 * changes in the pool) until its last change is done. Borrowed: the store and Redis
 * handles, the config.
 * Invariants: a change is applied at most once per position (pos <= taken is skipped);
 * the watermark only moves, in position order, past a change that was written, lost its
 * conflict, or was a duplicate, never past one that failed or was held back (or up to
 * the source's acknowledged position when it went back: receiver_admit); an
 * acknowledgement names a watermark that was saved (or 0-0, nothing: a refused first
 * contact).
 * Threading: the replicator's main thread only; the pool's workers touch only the jobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "apply.h"
#include "daemon.h"
#include "item.h"
#include "log.h"
#include "lww.h"
#include "replicator.h"
#include "wire.h"

/* Counters and lag samples of one source and table not yet saved (receiver_save). */
typedef struct {
    long applied, lost, dup, skew, stale;
    char lags[64][48];
    size_t n_lags;
} pending_tally;

/* A decoded batch, kept while any of its changes is in the apply pool. */
typedef struct {
    wire_msg m;
    int refs;
} held_batch;

typedef struct {
    char source[LWW_REGION_MAX];
    char table[256];
    int known;                  /* watermark loaded from Redis and present */
    int loaded;                 /* Redis was asked */
    int bad_wm_logged;          /* the stored watermark does not parse: said once */
    wire_pos wm;                /* applied (in memory; saved when ver is "") */
    wire_pos acked;             /* last watermark acknowledged */
    wire_pos taken;             /* last position handed to the pool (from wm once known) */
    wire_pos recv_seen;         /* highest position in the receive-lag histogram: a change
                                   taken again (after a failed apply) is not counted twice */
    pool_job *head, *tail;      /* changes in the pool, in position order */
    int save_due;               /* wm (ver set) or tally not yet saved */
    int refused;                /* a change failed: refuse at once (receiver_progress) */
    int refuse_again;           /* a refusal was sent below wm: send it again after the ack
                                   of wm, which calls off the peer's pending resend */
    char ver[LWW_VERSION_STRLEN]; /* version of the change that last moved wm; "" once saved */
    long long stats_retry_at;   /* mono ms: a tally Redis refused is not tried again before */
    log_limit redis_warn;       /* this source's Redis warnings (its watermark, counters): a
                                   source whose keys Redis refuses is not re-armed by the
                                   other sources' successes */
    log_limit stale_warn;       /* changes written older than the tombstone TTL (receiver_stale) */
    long long lag;
    pending_tally t;
    unsigned char rid[256];     /* routing id of the source's latest frame (acks go there) */
    size_t rid_len;
    long long last_warn;
    long long last_drift_warn;
} source_state;

typedef struct {
    char reason[48];
    long count;            /* not yet saved to Redis */
    long long last_warn;   /* monotonic ms of the last log line for this reason */
    long suppressed;       /* rejections not logged since that line */
} rej_count;

struct receiver {
    const cfg_region *cfg;
    metrics_family *m_changes, *m_lag, *m_rejected, *m_refused; /* NULL: no metrics */
    metrics_family *m_recv_lag;     /* tern_replicator_receive_lag_ms{source,table} */
    metrics_family *m_groups, *m_grouped;
    apply_pool *pool;
    store *s;
    state *st;
    source_state **srcs;        /* pointers: jobs and callers keep source_state pointers */
    size_t n_srcs;
    size_t inflight;            /* changes in the pool */
    rej_count rej[32];
    size_t n_rej;
    log_limit redis_warn;       /* Redis warnings of no one source (rejection counts, heartbeat) */
    log_limit refused_log;      /* error lines of changes refused for good (each is in alarm:refused) */
};

/* Logs a Redis failure of source s (NULL: of none) at most once per REPL_WARN_EVERY_MS per
 * source (a peer resends its window every ack timeout while Redis is down); the others are
 * counted in the next line. */
static void receiver_redis_warn(receiver *r, source_state *s, const char *what) {
    long skipped;
    if (log_limit_pass(s ? &s->redis_warn : &r->redis_warn, daemon_mono_ms(), REPL_WARN_EVERY_MS, &skipped))
        log_warn(s ? s->source : NULL, "table %s: %s: %s (%ld more Redis failures since the last warning; retrying)",
                 s ? s->table : "-", what, state_errstr(r->st), skipped);
}

receiver *receiver_new(const cfg_region *cfg, store *s, state *st, char *err, size_t errlen) {
    receiver *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->s = s;
    r->st = st;
    r->pool = pool_new(cfg, err, errlen);
    if (!r->pool) {
        free(r);
        return NULL;
    }
    return r;
}

apply_pool *receiver_pool(receiver *r) { return r->pool; }

static void receiver_free_sources(receiver *r) {
    for (size_t i = 0; i < r->n_srcs; i++) free(r->srcs[i]); /* FIFOs are empty: drained */
    free(r->srcs);
    r->srcs = NULL;
    r->n_srcs = 0;
}

static int receiver_collect(receiver *r, source_state *s);
static void receiver_publish_groups(receiver *r);

/* Waits for the pool and frees every finished change without acknowledging anything. */
static void receiver_discard(receiver *r) {
    pool_wait_idle(r->pool);
    pool_take_events(r->pool);
    for (size_t i = 0; i < r->n_srcs; i++) receiver_collect(r, r->srcs[i]);
}

int receiver_reconfigure(receiver *r, const cfg_region *cfg, store *s, state *st, char *err, size_t errlen) {
    apply_pool *np = pool_new(cfg, err, errlen);
    if (!np) return -1;
    receiver_discard(r); /* the caller drained it: normally nothing is left */
    receiver_publish_groups(r);
    pool_free(r->pool);
    r->pool = np;
    r->cfg = cfg;
    r->s = s;
    r->st = st;
    receiver_free_sources(r);
    return 0;
}

void receiver_free(receiver *r) {
    if (!r) return;
    receiver_discard(r);
    pool_free(r->pool);
    receiver_free_sources(r);
    free(r);
}

int receiver_set_metrics(receiver *r, metrics_registry *reg, char *err, size_t errlen) {
    static const char *const src_tab_res[] = {"source", "table", "result", NULL};
    static const char *const src_tab[] = {"source", "table", NULL};
    static const char *const reason[] = {"reason", NULL}, *const queue[] = {"queue", NULL};
    static const double lag_bounds[] = METRICS_LAG_MS_BOUNDS;
    r->m_changes = metrics_counter_new(reg, "tern_replicator_changes_total",
                                       "Peer changes processed, by result: applied, lost (an older version lost "
                                       "its conflict), duplicate, refused (by the store, or keys not the table's key "
                                       "schema); also skew_held (times held back) and stale (applied past the "
                                       "tombstone TTL)", src_tab_res, err, errlen);
    r->m_lag = metrics_histogram_new(reg, "tern_replicator_lag_ms",
                                     "Apply time here minus the change's version time at its origin, ms",
                                     src_tab, lag_bounds, sizeof lag_bounds / sizeof lag_bounds[0], err, errlen);
    r->m_recv_lag = metrics_histogram_new(reg, "tern_replicator_receive_lag_ms",
                                          "Time a change was taken here (received, before it is applied) minus "
                                          "its version time at its origin, ms: the origin agent's read, commit "
                                          "and send, and the network; tern_replicator_lag_ms minus this is the "
                                          "time to apply it here",
                                          src_tab, lag_bounds, sizeof lag_bounds / sizeof lag_bounds[0], err, errlen);
    r->m_rejected = metrics_counter_new(reg, "tern_replicator_rejected_frames_total",
                                        "Frames or changes rejected, by reason", reason, err, errlen);
    r->m_refused = metrics_counter_new(reg, "tern_replicator_curve_refused_total",
                                       "CURVE handshakes refused: the client key is not a configured peer", NULL, err, errlen);
    r->m_groups = metrics_counter_new(reg, "tern_replicator_grouped_writes_total",
                                      "Groups of puts written together (one Redis round trip; a transaction from 5 puts)",
                                      NULL, err, errlen);
    r->m_grouped = metrics_counter_new(reg, "tern_replicator_grouped_changes_total",
                                       "Puts written in groups, by the apply worker queue they came from: own, or other "
                                       "(taken by a transaction's writer from another worker's queue)", queue, err, errlen);
    return r->m_changes && r->m_lag && r->m_recv_lag && r->m_rejected && r->m_refused && r->m_groups && r->m_grouped ? 0 : -1;
}

/* Adds the apply pool's group counts since the last call to the metrics. */
static void receiver_publish_groups(receiver *r) {
    static const char *const own[] = {"own", NULL}, *const other[] = {"other", NULL};
    pool_group_counts c;
    pool_take_group_counts(r->pool, &c);
    if (!r->m_groups) return;
    if (c.groups) metrics_inc_with(r->m_groups, NULL, c.groups);
    if (c.own) metrics_inc_with(r->m_grouped, own, c.own);
    if (c.other) metrics_inc_with(r->m_grouped, other, c.other);
}

static void receiver_count(receiver *r, const char *source, const char *table, const char *result, long n) {
    const char *v[] = {source, table, result, NULL};
    if (r->m_changes && n > 0) metrics_inc_with(r->m_changes, v, (uint64_t)n);
}

/* The count of reason (added on first use), or NULL: the table is full (cannot happen with
 * the fixed set of reasons). */
static rej_count *receiver_rej_slot(receiver *r, const char *reason) {
    size_t i;
    for (i = 0; i < r->n_rej; i++)
        if (strcmp(r->rej[i].reason, reason) == 0) return &r->rej[i];
    if (r->n_rej == sizeof r->rej / sizeof r->rej[0]) return NULL;
    snprintf(r->rej[i].reason, sizeof r->rej[i].reason, "%s", reason);
    r->n_rej++;
    return &r->rej[i];
}

void receiver_reject(receiver *r, const char *reason, const char *peer, const char *detail) {
    long long now = daemon_mono_ms();
    rej_count *c = receiver_rej_slot(r, reason);
    if (r->m_rejected) {
        const char *v[] = {reason, NULL};
        metrics_inc_with(r->m_rejected, v, 1);
    }
    if (!c) {
        log_warn(peer, "rejected a frame (%s): %s", reason, detail);
        return;
    }
    c->count++;
    /* one line per reason per REPL_REJECT_LOG_MS, saying how many were not logged */
    if (now - c->last_warn >= REPL_REJECT_LOG_MS || log_get_level() >= LOG_LVL_DEBUG) {
        if (c->suppressed)
            log_warn(peer, "rejected a frame (%s): %s (and %ld more like it not logged)", reason, detail,
                     c->suppressed);
        else
            log_warn(peer, "rejected a frame (%s): %s", reason, detail);
        c->last_warn = now;
        c->suppressed = 0;
    } else {
        c->suppressed++;
    }
}

/* Keeps a refused change in Redis (alarm:refused, newest first, capped) for ternctl. */
static void receiver_alarm(receiver *r, const char *detail) {
    char key[256], val[1100];
    redisReply *rep[2];
    state_key(r->st, key, sizeof key, STATE_K_ALARM_REFUSED);
    snprintf(val, sizeof val, "%lld %s", daemon_wall_ms(), detail);
    state_append(r->st, "LPUSH %s %s", key, val);
    state_append(r->st, "LTRIM %s 0 999", key);
    if (state_flush(r->st, rep, 2) == 0) {
        if (state_reply_failed(r->st, rep[0]))
            log_error(NULL, "cannot record the refused change in Redis: %s", state_errstr(r->st));
        freeReplyObject(rep[0]);
        freeReplyObject(rep[1]);
    } else {
        log_error(NULL, "cannot record the refused change in Redis: %s", state_errstr(r->st));
    }
}

static int receiver_table_ok(const receiver *r, const char *table) {
    for (size_t i = 0; i < r->cfg->n_tables; i++)
        if (strcmp(r->cfg->tables[i], table) == 0) return 1;
    return 0;
}

static source_state *receiver_source(receiver *r, const char *source, const char *table) {
    source_state *s, **v;
    for (size_t i = 0; i < r->n_srcs; i++)
        if (strcmp(r->srcs[i]->source, source) == 0 && strcmp(r->srcs[i]->table, table) == 0) return r->srcs[i];
    v = realloc(r->srcs, (r->n_srcs + 1) * sizeof *v);
    if (!v) return NULL;
    r->srcs = v;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->source, sizeof s->source, "%s", source);
    snprintf(s->table, sizeof s->table, "%s", table);
    r->srcs[r->n_srcs++] = s;
    return s;
}

/* Loads the watermark on first use. 0/-1 (Redis down: try again with the next batch). */
static int receiver_load_wm(receiver *r, source_state *s) {
    char key[512];
    redisReply *rep;
    if (s->loaded) return 0;
    state_key(r->st, key, sizeof key, STATE_K_WM, s->source, s->table);
    rep = state_cmd(r->st, "HGET %s pos", key);
    if (!rep) {
        receiver_redis_warn(r, s, "reading the watermark");
        return -1;
    }
    s->redis_warn.at = 0;
    if (rep->type == REDIS_REPLY_STRING && wire_pos_parse(rep->str, &s->wm) != 0) {
        /* not "no watermark": starting over from what the peer offers could skip changes */
        if (!s->bad_wm_logged)
            log_error(s->source, "table %s: the watermark in %s (pos \"%.64s\") is not a stream position; "
                      "nothing from this source is applied until it is fixed or deleted", s->table, key, rep->str);
        s->bad_wm_logged = 1;
        freeReplyObject(rep);
        return -1;
    }
    if (rep->type == REDIS_REPLY_STRING) {
        s->known = 1;
        s->taken = s->wm;
    }
    freeReplyObject(rep);
    s->loaded = 1;
    return 0;
}

/* Acknowledges pos to s's source (its latest routing id); best effort: a lost ack is
 * repeated by the source's resend. */
static void receiver_ack(void *sock, const source_state *s, wire_pos pos) {
    wire_ack a;
    unsigned char *frame = NULL;
    size_t len = 0;
    char err[256];
    memset(&a, 0, sizeof a);
    snprintf(a.source, sizeof a.source, "%s", s->source);
    snprintf(a.table, sizeof a.table, "%s", s->table);
    a.pos = pos;
    if (wire_encode_ack(&a, &frame, &len, err, sizeof err) != 0) {
        log_error(s->source, "cannot encode ack: %s", err);
        return;
    }
    if (zmq_send(sock, s->rid, s->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(sock, frame, len, ZMQ_DONTWAIT) < 0)
        log_debug(s->source, "ack not sent: %s", zmq_strerror(zmq_errno()));
    free(frame);
}

/* Saves the watermark (when a change moved it), counters and lag samples in one round
 * trip, each judged by its own reply: what was saved is counted in the metrics and
 * cleared (a retry does not add it twice); what was refused (an error reply: Redis out
 * of memory, a key of the wrong type) stays for the next save, save_due kept, with a
 * warning. Returns -1 when the watermark itself was not saved (the ack waits: it would
 * let the peer trim what this region has not recorded), else 0. */
static int receiver_save(receiver *r, source_state *s) {
    char kwm[512], kcnt[512], klag[512], pos[48], now[32], lagbuf[32];
    size_t n = 0;
    redisReply *rep[80];
    pending_tally *t = &s->t;
    state_key(r->st, kwm, sizeof kwm, STATE_K_WM, s->source, s->table);
    state_key(r->st, kcnt, sizeof kcnt, STATE_K_CNT, s->source, s->table);
    state_key(r->st, klag, sizeof klag, STATE_K_LAG, s->source, s->table);
    if (*s->ver) {
        wire_pos_format(s->wm, pos, sizeof pos);
        snprintf(now, sizeof now, "%lld", daemon_wall_ms());
        snprintf(lagbuf, sizeof lagbuf, "%lld", s->lag);
        state_append(r->st, "HSET %s pos %s ver %s at_ms %s lag_ms %s", kwm, pos, s->ver, now, lagbuf);
        n++;
    }
    state_append(r->st, "HINCRBY %s applied %ld", kcnt, t->applied);
    state_append(r->st, "HINCRBY %s lost %ld", kcnt, t->lost);
    state_append(r->st, "HINCRBY %s dup %ld", kcnt, t->dup);
    state_append(r->st, "HINCRBY %s skew %ld", kcnt, t->skew);
    state_append(r->st, "HINCRBY %s stale %ld", kcnt, t->stale);
    n += 5;
    if (t->n_lags) { /* one LPUSH for every sample (up to 64) */
        const char *argv[2 + sizeof t->lags / sizeof t->lags[0]];
        int argc = 0;
        argv[argc++] = "LPUSH";
        argv[argc++] = klag;
        for (size_t i = 0; i < t->n_lags; i++) argv[argc++] = t->lags[i];
        state_appendargv(r->st, argc, argv, NULL);
        n++;
    }
    state_append(r->st, "LTRIM %s 0 %d", klag, STATE_LAG_SAMPLES - 1);
    n++;
    if (state_flush(r->st, rep, n) != 0) {
        receiver_redis_warn(r, s, "saving the watermark (the acknowledgement waits)");
        return -1;
    }
    {
        size_t c = *s->ver ? 1 : 0; /* the first counter's reply */
        long *field[] = {&t->applied, &t->lost, &t->dup, &t->skew, &t->stale};
        static const char *const name[] = {"applied", "lost", "duplicate", "skew_held", "stale"};
        int wm_failed = *s->ver && state_reply_failed(r->st, rep[0]), stats_failed = 0;
        for (size_t k = 0; k < 5; k++) {
            if (state_reply_failed(r->st, rep[c + k])) {
                stats_failed = 1;
                continue;
            }
            receiver_count(r, s->source, s->table, name[k], *field[k]);
            *field[k] = 0;
        }
        if (t->n_lags) { /* the samples stay if Redis refused them */
            if (state_reply_failed(r->st, rep[c + 5])) stats_failed = 1;
            else t->n_lags = 0;
        }
        for (size_t i = 0; i < n; i++) freeReplyObject(rep[i]);
        if (wm_failed) {
            receiver_redis_warn(r, s, "saving the watermark (the acknowledgement waits)");
            return -1;
        }
        if (stats_failed) {
            receiver_redis_warn(r, s, "saving counters or lag samples (kept for the next save)");
            s->stats_retry_at = daemon_mono_ms() + REPL_HOUSEKEEP_MS;
            s->ver[0] = '\0';
            return 0; /* save_due stays: they go again with a later save */
        }
    }
    s->redis_warn.at = 0;
    s->ver[0] = '\0';
    s->save_due = 0;
    return 0;
}

/* Logs and counts one finished change; returns 0, or -1 when it failed (retry). */
static int receiver_result(receiver *r, source_state *s, const pool_job *j) {
    const wire_change *c = j->c;
    char *keys;
    switch (j->res) {
    case APPLY_ERROR:
        if (!j->canceled) /* canceled: drain() said so once */
            log_warn(s->source, "table %s: applying change %s failed, will retry: %s", s->table, c->version, j->err);
        return -1;
    case APPLY_REFUSED: {
        /* retrying cannot help, and holding it would stall every later change of this
         * source and table: count it, say so loudly, keep it in Redis for ternctl, and
         * move on. The item now differs between regions until someone fixes it. */
        char detail[1024];
        long skipped;
        keys = item_canonical(c->keys, 0);
        snprintf(detail, sizeof detail, "table %s: change %s of key %s refused by %s, NOT APPLIED: %s",
                 s->table, c->version, keys ? keys : j->kid, j->key_schema ? "this replicator" : "the store", j->err);
        free(keys);
        if (log_limit_pass(&r->refused_log, daemon_mono_ms(), REPL_REJECT_LOG_MS, &skipped))
            log_error(s->source, "%s (%ld more refused changes not logged since the last line)", detail, skipped);
        receiver_reject(r, j->key_schema ? "key_schema" : "store_refused", s->source, detail);
        receiver_count(r, s->source, s->table, "refused", 1);
        receiver_alarm(r, detail);
        return 0;
    }
    case APPLY_LOST:
        keys = item_canonical(c->keys, 0);
        s->t.lost++;
        log_info(s->source, "table %s: conflict lost: key %s: incoming %s %s from %s loses to %s held here",
                 s->table, keys ? keys : j->kid, c->op == WIRE_OP_DELETE ? "delete" : "put", c->version,
                 s->source, *j->winner ? j->winner : "a newer version");
        free(keys);
        return 0;
    case APPLY_SAME:
        s->t.dup++;
        return 0;
    case APPLY_WRITTEN:
        s->t.applied++;
        return 0;
    }
    return -1;
}

/* If j was written lag ms after its version time, more than the tombstone TTL (a peer cut
 * off, or whose agent was stopped, for that long), counts and reports it. What this region
 * knew of the key's history up to the TTL ago (its tombstone, its last local version,
 * ll/tomb) has expired, so the change may have undone a delete or overwritten a local
 * write made here after its version: LWW holds for a delay up to the TTL only. It is
 * applied all the same (skipping it would lose an item created at its origin during the
 * outage, the likelier case), counted as "stale" in cnt:S:T (ternctl status raises an
 * alarm) and logged at error, once per REPL_WARN_EVERY_MS per source and table. */
static void receiver_stale(receiver *r, source_state *s, const pool_job *j, long long lag) {
    long skipped;
    if (j->res != APPLY_WRITTEN || lag <= r->cfg->replicator.tombstone_ttl_s * 1000LL) return;
    s->t.stale++;
    if (log_limit_pass(&s->stale_warn, daemon_mono_ms(), REPL_WARN_EVERY_MS, &skipped)) {
        char *keys = item_canonical(j->c->keys, 0);
        log_error(s->source, "table %s: %s %s of key %s applied %lld s after its version time, past the tombstone TTL "
                  "(replicator.tombstone_ttl_s = %ld s): a delete or local write of the key made here before it "
                  "expired may have been undone, and the regions may differ; run ternctl verify "
                  "(%ld more such changes since the last line)", s->table,
                  j->c->op == WIRE_OP_DELETE ? "delete" : "put", j->c->version, keys ? keys : j->kid,
                  lag / 1000, r->cfg->replicator.tombstone_ttl_s, skipped);
        free(keys);
    }
}

static void receiver_release(receiver *r, pool_job *j) {
    held_batch *hb = j->batch;
    if (hb && --hb->refs == 0) {
        wire_msg_free(&hb->m);
        free(hb);
    }
    free(j->kid_owned);
    free(j);
    r->inflight--;
}

/* Pops the finished head of s's FIFO in order; moves the watermark. Returns 1 if the
 * watermark moved. */
static int receiver_collect(receiver *r, source_state *s) {
    int moved = 0;
    while (s->head && atomic_load_explicit(&s->head->done, memory_order_acquire)) {
        pool_job *j = s->head;
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        if (!j->ignore) {
            if (receiver_result(r, s, j) != 0) {
                /* the watermark stops here; what follows finishes unused and the peer,
                 * refused at once (receiver_progress), resends from the watermark */
                for (pool_job *k = s->head; k; k = k->next) k->ignore = 1;
                s->taken = s->wm;
                s->refused = 1;
            } else {
                lww_version v;
                char err[128];
                s->wm = j->c->pos;
                s->known = 1;
                moved = 1;
                snprintf(s->ver, sizeof s->ver, "%s", j->c->version);
                if (lww_version_parse(s->ver, &v, err, sizeof err) == 0) {
                    s->lag = j->done_wall - (long long)v.ms;
                    receiver_stale(r, s, j, s->lag);
                    if (r->m_lag) {
                        const char *lv[] = {s->source, s->table, NULL};
                        metrics_observe_with(r->m_lag, lv, (double)(s->lag > 0 ? s->lag : 0));
                    }
                    if (s->t.n_lags < sizeof s->t.lags / sizeof s->t.lags[0])
                        snprintf(s->t.lags[s->t.n_lags++], sizeof s->t.lags[0], "%lld %lld", j->done_wall, s->lag);
                }
            }
        }
        else if (j->res == APPLY_WRITTEN) {
            /* written past a change that failed or was canceled (a stop): the watermark
             * stays before it, and its resend will find it written (a duplicate), so the
             * write is counted now or never */
            lww_version v;
            char err[128];
            s->t.applied++;
            s->save_due = 1;
            if (lww_version_parse(j->c->version, &v, err, sizeof err) == 0)
                receiver_stale(r, s, j, j->done_wall - (long long)v.ms);
        }
        receiver_release(r, j);
    }
    if (moved) s->save_due = 1;
    return moved;
}

/* Answers the peer with a durable position that does not move its acknowledgement: the
 * last one acknowledged (durable since it was sent), else the watermark loaded from Redis
 * and not moved since; the peer goes back to it (a refusal, region-agent/shipper.c).
 * Nothing while neither exists (0-0 means something else at first contact). */
static void receiver_refuse(void *sock, source_state *s) {
    wire_pos pos = s->acked;
    if (wire_pos_cmp(pos, (wire_pos){0, 0}) == 0 && s->known && !*s->ver) pos = s->wm;
    if (!sock || !s->rid_len || wire_pos_cmp(pos, (wire_pos){0, 0}) == 0) return;
    receiver_ack(sock, s, pos);
    s->refuse_again = wire_pos_cmp(s->wm, pos) > 0;
}

/* Saves what is due; then acknowledges the watermark if it moved since the last ack, or
 * if force (an answer to a frame of duplicates, or to a gap: the peer goes back to it).
 * When the save fails, a forced answer is a refusal (receiver_refuse), so that the peer
 * resends after its refusal delay, not its ack timeout. */
static void receiver_flush(receiver *r, void *sock, source_state *s, int force) {
    /* a tally alone that Redis refused goes again from housekeeping, not on every event */
    if (s->save_due && (*s->ver || daemon_mono_ms() >= s->stats_retry_at) && receiver_save(r, s) != 0) {
        if (force) receiver_refuse(sock, s);
        return;
    }
    if (!sock || !s->known || !s->rid_len) return;
    if (force || wire_pos_cmp(s->wm, s->acked) != 0) {
        receiver_ack(sock, s, s->wm);
        if (s->refuse_again) receiver_ack(sock, s, s->wm);
        s->refuse_again = 0;
        s->acked = s->wm;
    }
}

void receiver_progress(receiver *r, void *sock) {
    pool_take_events(r->pool);
    for (size_t i = 0; i < r->n_srcs; i++) {
        source_state *s = r->srcs[i];
        receiver_collect(r, s);
        receiver_flush(r, sock, s, 0);
        if (s->refused) { /* answered at once: the peer's refusal delay, not its ack timeout */
            s->refused = 0;
            receiver_refuse(sock, s);
        }
    }
}

int receiver_busy(receiver *r) { return r->inflight >= REPL_MAX_INFLIGHT; }

void receiver_drain(receiver *r, void *sock, void (*alive)(void)) {
    size_t n = pool_cancel_queued(r->pool), left; /* with a slow store, thousands could be queued */
    long long beacon, limit = REPL_STALL_MS + daemon_wait_max_ms(r->cfg);
    int said = 0, stalled = 0;
    if (n) log_info(NULL, "%zu queued changes left for their peers to resend", n);
    while ((left = pool_wait_idle_for(r->pool, REPL_DRAIN_TICK_MS, &beacon)) > 0) {
        long long age = beacon < 0 ? 0 : daemon_mono_ms() - beacon;
        if (age <= limit) {
            if (stalled) log_info(NULL, "the apply workers show life again: telling the service manager so again");
            stalled = 0;
            if (alive) alive();
        } else if (!stalled) {
            log_error(NULL, "the apply workers holding %zu change(s) have shown no life for %lld ms: no longer "
                      "telling the service manager that this daemon lives", left, age);
            stalled = 1;
        }
        if (!said) log_info(NULL, "waiting for %zu change(s) being applied", left);
        said = 1;
    }
    receiver_progress(r, sock);
}

/* Saves pos as the watermark before anything is taken after it, and takes it as the
 * in-memory watermark. first: no watermark was known, written with HSETNX and read back
 * (another writer may have been first). 0/-1 (Redis down or an error reply: the peer
 * resends). */
static int receiver_start_at(receiver *r, source_state *s, wire_pos pos, int first) {
    char key[512], txt[48];
    redisReply *rep;
    state_key(r->st, key, sizeof key, STATE_K_WM, s->source, s->table);
    wire_pos_format(pos, txt, sizeof txt);
    rep = state_cmd(r->st, first ? "HSETNX %s pos %s" : "HSET %s pos %s", key, txt);
    if (!rep) {
        receiver_redis_warn(r, s, "saving the watermark");
        return -1;
    }
    freeReplyObject(rep);
    if (first) {
        s->loaded = 0;
        if (receiver_load_wm(r, s) != 0 || !s->known) return -1;
    } else {
        s->wm = s->taken = pos;
        s->ver[0] = '\0'; /* the version of the change at pos is not known */
    }
    s->acked = s->wm;
    return 0;
}

/* Whether batch b can be taken after what this region holds of its source. 0: take it
 * (its changes at or below taken are skipped); 1: refused, and acknowledged so that the
 * source resends; -1: Redis failed (no ack: the source resends on its timeout).
 * A version 2 batch carries acked, the position the source holds as acknowledged by this
 * region, so everything after it must be applied here:
 *  - no watermark (first contact: the first batch ever, or Redis lost the key): a batch
 *    that follows acked (or any version 1 batch: its prev is the start of the log or a
 *    resend after the last ack) starts the watermark at its prev, saved before anything
 *    is taken, so that a failed change, or a batch lost on the way, is caught as a gap
 *    from then on. A batch after acked follows batches this region never recorded (taken
 *    by a run that died before saving anything, or in flight before this one): refused
 *    with an ack of 0-0 (nothing held), below the source's oldest batch in flight, so it
 *    resends from acked;
 *  - prev after taken: a gap (a lost batch), refused with an ack of the watermark;
 *    except a batch that follows acked when nothing of the source is in progress: this
 *    region acknowledged acked once, so it had applied everything up to it, and its
 *    watermark went back (Redis restored from an older copy). The watermark moves to
 *    acked; without this, every resend from there was a gap and the link stopped. */
static int receiver_admit(receiver *r, void *sock, source_state *s, const wire_batch *b) {
    int follows_ack = b->has_acked && wire_pos_cmp(b->prev, b->acked) == 0; /* acked <= prev (decoder) */
    char p1[48], p2[48]; /* positions as text, formatted only for the log lines (not per batch) */
    if (!s->known) {
        wire_pos_format(b->prev, p1, sizeof p1);
        if (b->has_acked && !follows_ack) {
            wire_pos_format(b->acked, p2, sizeof p2);
            receiver_reject(r, "gap", b->source, "first batch does not follow the source's acknowledged position");
            log_info(b->source, "table %s: first contact with a batch after %s, but the source holds only %s as "
                     "acknowledged: asking for a resend from there", b->table, p1, p2);
            if (sock && s->rid_len) receiver_ack(sock, s, (wire_pos){0, 0});
            return 1;
        }
        if (receiver_start_at(r, s, b->prev, 1) != 0) return -1;
        log_info(s->source, "table %s: first contact: replicating after position %s", s->table, p1);
        /* HSETNX may have found another writer's watermark: checked as any other */
    }
    if (wire_pos_cmp(b->prev, s->taken) <= 0) return 0;
    wire_pos_format(b->prev, p1, sizeof p1);
    wire_pos_format(s->taken, p2, sizeof p2);
    if (follows_ack && !s->head && wire_pos_cmp(s->taken, s->wm) == 0) {
        if (receiver_start_at(r, s, b->acked, 0) != 0) return -1;
        log_warn(s->source, "table %s: the watermark %s is behind %s, which this region once acknowledged: its "
                 "Redis lost or rolled back the watermark; continuing from %s (if the table was restored too, run "
                 "ternctl verify)", s->table, p2, p1, p1);
        return 0;
    }
    receiver_reject(r, "gap", b->source, "batch follows a position not yet received");
    log_info(b->source, "table %s: batch after %s but received only up to %s: asking for a resend", b->table, p1, p2);
    receiver_flush(r, sock, s, 1);
    return 1;
}

/* Hands the batch's new changes to the pool. b points into hb, which is freed here unless
 * a change in the pool holds it. */
static void receiver_batch(receiver *r, void *sock, const void *rid, size_t rid_len, held_batch *hb) {
    const wire_batch *b = &hb->m.u.batch;
    source_state *s = receiver_source(r, b->source, b->table);
    char err[512];
    size_t i = 0, taken = 0;
    int held = 0;

    if (!s) {
        log_error(b->source, "out of memory");
        goto out;
    }
    if (rid_len <= sizeof s->rid) {
        memcpy(s->rid, rid, rid_len);
        s->rid_len = rid_len;
    }
    if (receiver_load_wm(r, s) != 0) goto out; /* no ack: the peer resends */
    if (receiver_admit(r, sock, s, b) != 0) goto out;
    if (log_get_level() >= LOG_LVL_DEBUG && b->n) {
        /* where a change's time goes before it reaches the pool (wall clocks of two
         * regions: skew shows) */
        lww_version v0;
        if (lww_version_parse(b->changes[0].version, &v0, err, sizeof err) == 0)
            log_debug(b->source, "table %s: batch of %zu (protocol version %d): sent %lld ms after its first "
                      "version, received %lld ms after sending; %zu changes in the pool", b->table, b->n,
                      b->has_acked ? 2 : 1,
                      (long long)b->sent_ms - (long long)v0.ms, daemon_wall_ms() - (long long)b->sent_ms,
                      r->inflight);
    }
    for (; i < b->n && wire_pos_cmp(b->changes[i].pos, s->taken) <= 0; i++) /* had them */
        if (wire_pos_cmp(b->changes[i].pos, s->wm) <= 0) s->t.dup++;
    for (; i < b->n; i++) {
        const wire_change *c = &b->changes[i];
        long long now_wall = daemon_wall_ms();
        lww_version v;
        pool_job *j;
        if (lww_version_parse(c->version, &v, err, sizeof err) != 0) break; /* the decoder checked it */
        if (lww_ahead(&v, (uint64_t)now_wall, (uint64_t)r->cfg->replicator.max_clock_skew_ms)) {
            long long now = daemon_mono_ms();
            s->t.skew++;
            s->save_due = 1;
            if (now - s->last_warn >= REPL_WARN_EVERY_MS) {
                log_warn(b->source, "table %s: change version %s is %lld ms ahead of this region's clock "
                         "(bound %ld ms): held back until it is not; check the clocks (NTP)", b->table,
                         c->version, (long long)(v.ms - (uint64_t)now_wall), r->cfg->replicator.max_clock_skew_ms);
                s->last_warn = now;
            }
            held = 1;
            break;
        }
        if (v.ms > (uint64_t)now_wall + REPL_DRIFT_WARN_MS && daemon_mono_ms() - s->last_drift_warn >= REPL_WARN_EVERY_MS) {
            /* within the bound, but a peer whose clock runs ahead wins conflicts it should not */
            log_warn(b->source, "table %s: peer clock about %lld ms ahead of this region's (change %s); "
                     "check NTP on both", b->table, (long long)(v.ms - (uint64_t)now_wall), c->version);
            s->last_drift_warn = daemon_mono_ms();
        }
        j = calloc(1, sizeof *j);
        if (!j || !(j->kid_owned = item_key_id(c->keys))) {
            free(j);
            log_error(b->source, "out of memory");
            break;
        }
        j->c = c;
        j->kid = j->kid_owned;
        j->table = b->table;
        j->ttl_s = r->cfg->replicator.tombstone_ttl_s;
        j->batch = hb;
        hb->refs++;
        if (s->tail) s->tail->next = j;
        else s->head = j;
        s->tail = j;
        r->inflight++;
        s->taken = c->pos;
        taken++;
        if (r->m_recv_lag && wire_pos_cmp(c->pos, s->recv_seen) > 0) {
            const char *lv[] = {b->source, b->table, NULL};
            long long lag = now_wall - (long long)v.ms;
            metrics_observe_with(r->m_recv_lag, lv, (double)(lag > 0 ? lag : 0));
            s->recv_seen = c->pos;
        }
        pool_submit(r->pool, j);
    }
    if (!taken && !s->head && !held) {
        /* nothing new and nothing in the pool: duplicates are answered at once with the
         * watermark. (A change held back is not: the peer resends after its timeout.) */
        s->save_due = s->save_due || s->t.dup > 0;
        receiver_flush(r, sock, s, 1);
    }
out:
    if (hb->refs == 0) {
        wire_msg_free(&hb->m);
        free(hb);
    }
}

void receiver_frame(receiver *r, void *sock, const void *rid, size_t rid_len, const void *data, size_t len,
                    const char *user_id) {
    held_batch *hb = calloc(1, sizeof *hb);
    wire_msg *mp;
    char err[512];
    wire_status ws;
    if (!hb) {
        log_error(user_id, "out of memory");
        return;
    }
    mp = &hb->m;
    ws = wire_decode(data, len, mp, err, sizeof err);
    if (ws != WIRE_OK) {
        receiver_reject(r, wire_status_name(ws), user_id, err);
        free(hb);
        return;
    }
    if (mp->type != WIRE_BATCH) {
        receiver_reject(r, "type", user_id, "only batches are accepted here");
    } else if (user_id && strcmp(user_id, mp->u.batch.source) != 0) {
        snprintf(err, sizeof err, "frame claims source %s but the connection authenticated as %s",
                 mp->u.batch.source, user_id);
        receiver_reject(r, "source_mismatch", user_id, err);
    } else if (!cfg_peer_find(r->cfg, mp->u.batch.source)) {
        snprintf(err, sizeof err, "source %s is not a configured peer", mp->u.batch.source);
        receiver_reject(r, "unknown_source", user_id, err);
    } else if (!receiver_table_ok(r, mp->u.batch.table)) {
        snprintf(err, sizeof err, "table %s is not replicated here", mp->u.batch.table);
        receiver_reject(r, "unknown_table", mp->u.batch.source, err);
    } else {
        receiver_batch(r, sock, rid, rid_len, hb); /* takes hb */
        return;
    }
    wire_msg_free(mp);
    free(hb);
}

void receiver_housekeep(receiver *r, long refused, const char *status) {
    char key[256];
    size_t n = 0;
    int failed = 0;
    redisReply *rep[34];
    receiver_publish_groups(r);
    if (refused) { /* CURVE handshakes refused by ZAP: one more reason, counted here */
        rej_count *c = receiver_rej_slot(r, "curve_refused");
        if (r->m_refused) metrics_inc_with(r->m_refused, NULL, (uint64_t)refused);
        if (c) c->count += refused;
    }
    state_key(r->st, key, sizeof key, STATE_K_REJ);
    for (size_t i = 0; i < r->n_rej; i++) {
        if (!r->rej[i].count) continue;
        state_append(r->st, "HINCRBY %s %s %ld", key, r->rej[i].reason, r->rej[i].count);
        n++;
    }
    /* each count is cleared once its HINCRBY has answered; one answered with an error (a
     * key of the wrong type, Redis out of memory) is kept for the next pass, and said */
    if (n && state_flush(r->st, rep, n) == 0) {
        size_t k = 0;
        for (size_t i = 0; i < r->n_rej; i++) {
            if (!r->rej[i].count) continue;
            if (state_reply_failed(r->st, rep[k++])) failed = 1;
            else r->rej[i].count = 0;
        }
        for (size_t i = 0; i < n; i++) freeReplyObject(rep[i]);
    } else if (n) {
        failed = 1;
    }
    if (failed) receiver_redis_warn(r, NULL, "saving rejection counts (kept for the next try)");
    if (state_heartbeat(r->st, "replicator", status) != 0) receiver_redis_warn(r, NULL, "heartbeat");
    else if (!failed) r->redis_warn.at = 0; /* all saved: the next failure is a new episode */
}
