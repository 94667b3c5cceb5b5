/* receiver.c -- decodes, checks and applies peers' batches (see replicator.h).
 *
 * Owns: per (source region, table) the watermark (the last applied change-log position
 * of that source's table; loaded from wm:S:T on first sight, "unknown" if absent), and
 * counters not yet saved. Borrowed: the store and Redis handles, the config.
 * Invariants: a change is applied at most once per position (pos <= watermark is a
 * duplicate); the watermark only moves past a change that was written, lost its
 * conflict, or was a duplicate, never past one that failed or was held back; an
 * acknowledgement names the watermark after it was saved.
 * Threading: the replicator's main thread only. */
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

typedef struct {
    char source[LWW_REGION_MAX];
    char table[256];
    int known;                  /* watermark loaded from Redis and present */
    int loaded;                 /* Redis was asked */
    wire_pos wm;
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
    apply_pool *pool;
    store *s;
    state *st;
    source_state *srcs;
    size_t n_srcs;
    rej_count rej[32];
    size_t n_rej;
    long long last_redis_warn;  /* monotonic ms of the last Redis warning (rate limit) */
    long redis_failures;        /* Redis failures not logged since then */
};

/* Logs a Redis failure at most once per REPL_WARN_EVERY_MS (a peer resends its window
 * every ack timeout while Redis is down); the others are counted in the next line. */
static void receiver_redis_warn(receiver *r, const char *peer, const char *table, const char *what) {
    long long now = daemon_mono_ms();
    if (r->last_redis_warn && now - r->last_redis_warn < REPL_WARN_EVERY_MS) {
        r->redis_failures++;
        return;
    }
    log_warn(peer, "table %s: %s: %s (%ld more Redis failures since the last warning; retrying)", table, what,
             state_errstr(r->st), r->redis_failures);
    r->last_redis_warn = now;
    r->redis_failures = 0;
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

int receiver_reconfigure(receiver *r, const cfg_region *cfg, store *s, state *st, char *err, size_t errlen) {
    apply_pool *np = pool_new(cfg, err, errlen);
    if (!np) return -1;
    pool_free(r->pool);
    r->pool = np;
    r->cfg = cfg;
    r->s = s;
    r->st = st;
    free(r->srcs);
    r->srcs = NULL;
    r->n_srcs = 0;
    return 0;
}

void receiver_free(receiver *r) {
    if (!r) return;
    pool_free(r->pool);
    free(r->srcs);
    free(r);
}

int receiver_set_metrics(receiver *r, metrics_registry *reg, char *err, size_t errlen) {
    static const char *const src_tab_res[] = {"source", "table", "result", NULL};
    static const char *const src_tab[] = {"source", "table", NULL};
    static const char *const reason[] = {"reason", NULL};
    static const double lag_bounds[] = METRICS_LAG_MS_BOUNDS;
    r->m_changes = metrics_counter_new(reg, "tern_replicator_changes_total",
                                       "Peer changes processed, by result: applied, lost (an older version lost "
                                       "its conflict), duplicate, refused (by the store)", src_tab_res, err, errlen);
    r->m_lag = metrics_histogram_new(reg, "tern_replicator_lag_ms",
                                     "Apply time here minus the change's version time at its origin, ms",
                                     src_tab, lag_bounds, sizeof lag_bounds / sizeof lag_bounds[0], err, errlen);
    r->m_rejected = metrics_counter_new(reg, "tern_replicator_rejected_frames_total",
                                        "Frames or changes rejected, by reason", reason, err, errlen);
    r->m_refused = metrics_counter_new(reg, "tern_replicator_curve_refused_total",
                                       "CURVE handshakes refused: the client key is not a configured peer", NULL, err, errlen);
    return r->m_changes && r->m_lag && r->m_rejected && r->m_refused ? 0 : -1;
}

static void receiver_count(receiver *r, const char *source, const char *table, const char *result, long n) {
    const char *v[] = {source, table, result, NULL};
    if (r->m_changes && n > 0) metrics_inc_with(r->m_changes, v, (uint64_t)n);
}

void receiver_reject(receiver *r, const char *reason, const char *peer, const char *detail) {
    size_t i;
    long long now = daemon_mono_ms();
    if (r->m_rejected) {
        const char *v[] = {reason, NULL};
        metrics_inc_with(r->m_rejected, v, 1);
    }
    for (i = 0; i < r->n_rej; i++)
        if (strcmp(r->rej[i].reason, reason) == 0) break;
    if (i == r->n_rej && r->n_rej < sizeof r->rej / sizeof r->rej[0]) {
        snprintf(r->rej[i].reason, sizeof r->rej[i].reason, "%s", reason);
        r->n_rej++;
    }
    if (i == r->n_rej) { /* table of reasons full: cannot happen with the fixed reason set */
        log_warn(peer, "rejected a frame (%s): %s", reason, detail);
        return;
    }
    r->rej[i].count++;
    /* one line per reason per REPL_REJECT_LOG_MS, saying how many were not logged */
    if (now - r->rej[i].last_warn >= REPL_REJECT_LOG_MS || log_get_level() >= LOG_LVL_DEBUG) {
        if (r->rej[i].suppressed)
            log_warn(peer, "rejected a frame (%s): %s (and %ld more like it not logged)", reason, detail,
                     r->rej[i].suppressed);
        else
            log_warn(peer, "rejected a frame (%s): %s", reason, detail);
        r->rej[i].last_warn = now;
        r->rej[i].suppressed = 0;
    } else {
        r->rej[i].suppressed++;
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
    source_state *s;
    for (size_t i = 0; i < r->n_srcs; i++)
        if (strcmp(r->srcs[i].source, source) == 0 && strcmp(r->srcs[i].table, table) == 0) return &r->srcs[i];
    s = realloc(r->srcs, (r->n_srcs + 1) * sizeof *s);
    if (!s) return NULL;
    r->srcs = s;
    s = &r->srcs[r->n_srcs++];
    memset(s, 0, sizeof *s);
    snprintf(s->source, sizeof s->source, "%s", source);
    snprintf(s->table, sizeof s->table, "%s", table);
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
        receiver_redis_warn(r, s->source, s->table, "reading the watermark");
        return -1;
    }
    r->last_redis_warn = 0;
    if (rep->type == REDIS_REPLY_STRING && wire_pos_parse(rep->str, &s->wm) == 0) s->known = 1;
    freeReplyObject(rep);
    s->loaded = 1;
    return 0;
}

static void receiver_ack(receiver *r, void *sock, const void *rid, size_t rid_len, const source_state *s) {
    wire_ack a;
    unsigned char *frame = NULL;
    size_t len = 0;
    char err[256];
    memset(&a, 0, sizeof a);
    snprintf(a.source, sizeof a.source, "%s", s->source);
    snprintf(a.table, sizeof a.table, "%s", s->table);
    a.pos = s->wm;
    if (wire_encode_ack(&a, &frame, &len, err, sizeof err) != 0) {
        log_error(s->source, "cannot encode ack: %s", err);
        return;
    }
    if (zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(sock, frame, len, ZMQ_DONTWAIT) < 0)
        log_debug(s->source, "ack not sent: %s", zmq_strerror(zmq_errno()));
    (void)r;
    free(frame);
}

typedef struct {
    long applied, lost, dup, skew;
    long long lag_sum;
    char lags[64][48];
    size_t n_lags;
} batch_tally;

/* Saves watermark, counters and lag samples in one round trip. 0/-1. */
static int receiver_save(receiver *r, const source_state *s, const char *ver, long long lag, const batch_tally *t) {
    char kwm[512], kcnt[512], klag[512], pos[48], now[32], lagbuf[32];
    size_t n = 0;
    redisReply *rep[80];
    int rc;
    state_key(r->st, kwm, sizeof kwm, STATE_K_WM, s->source, s->table);
    state_key(r->st, kcnt, sizeof kcnt, STATE_K_CNT, s->source, s->table);
    state_key(r->st, klag, sizeof klag, STATE_K_LAG, s->source, s->table);
    wire_pos_format(s->wm, pos, sizeof pos);
    snprintf(now, sizeof now, "%lld", daemon_wall_ms());
    snprintf(lagbuf, sizeof lagbuf, "%lld", lag);
    state_append(r->st, "HSET %s pos %s ver %s at_ms %s lag_ms %s", kwm, pos, ver, now, lagbuf);
    state_append(r->st, "HINCRBY %s applied %ld", kcnt, t->applied);
    state_append(r->st, "HINCRBY %s lost %ld", kcnt, t->lost);
    state_append(r->st, "HINCRBY %s dup %ld", kcnt, t->dup);
    state_append(r->st, "HINCRBY %s skew %ld", kcnt, t->skew);
    n = 5;
    for (size_t i = 0; i < t->n_lags; i++) {
        state_append(r->st, "LPUSH %s %s", klag, t->lags[i]);
        n++;
    }
    state_append(r->st, "LTRIM %s 0 %d", klag, STATE_LAG_SAMPLES - 1);
    n++;
    rc = state_flush(r->st, rep, n);
    for (size_t i = 0; i < n; i++)
        if (rep[i]) freeReplyObject(rep[i]);
    return rc;
}

/* Logs and counts one applied slot; returns 0, or -1 when the change failed (retry). */
static int receiver_result(receiver *r, const wire_batch *b, const pool_slot *sl, batch_tally *t) {
    const wire_change *c = sl->c;
    char *keys;
    switch (sl->res) {
    case APPLY_ERROR:
        log_warn(b->source, "table %s: applying change %s failed, will retry: %s", b->table, c->version, sl->err);
        return -1;
    case APPLY_REFUSED: {
        /* retrying cannot help, and holding it would stall every later change of this
         * source and table: count it, say so loudly, keep it in Redis for ternctl, and
         * move on. The item now differs between regions until someone fixes it. */
        char detail[1024];
        keys = item_canonical(c->keys, 0);
        snprintf(detail, sizeof detail, "table %s: change %s of key %s refused by the store, NOT APPLIED: %s",
                 b->table, c->version, keys ? keys : sl->kid, sl->err);
        free(keys);
        log_error(b->source, "%s", detail);
        receiver_reject(r, "store_refused", b->source, detail);
        receiver_count(r, b->source, b->table, "refused", 1);
        receiver_alarm(r, detail);
        return 0;
    }
    case APPLY_LOST:
        keys = item_canonical(c->keys, 0);
        t->lost++;
        log_info(b->source, "table %s: conflict lost: key %s: incoming %s %s from %s loses to %s held here",
                 b->table, keys ? keys : sl->kid, c->op == WIRE_OP_DELETE ? "delete" : "put", c->version,
                 b->source, *sl->winner ? sl->winner : "a newer version");
        free(keys);
        return 0;
    case APPLY_SAME:
        t->dup++;
        return 0;
    case APPLY_WRITTEN:
        t->applied++;
        return 0;
    }
    return -1;
}

/* Counts a tally in the metrics and clears it. */
static void receiver_count_tally(receiver *r, const wire_batch *b, batch_tally *t) {
    receiver_count(r, b->source, b->table, "applied", t->applied);
    receiver_count(r, b->source, b->table, "lost", t->lost);
    receiver_count(r, b->source, b->table, "duplicate", t->dup);
    receiver_count(r, b->source, b->table, "skew_held", t->skew);
}

static void receiver_batch(receiver *r, void *sock, const void *rid, size_t rid_len, const wire_batch *b) {
    source_state *s = receiver_source(r, b->source, b->table);
    batch_tally t;
    char ver[LWW_VERSION_STRLEN] = "", err[512];
    long long lag = 0, last_ack = daemon_mono_ms(), recv_wall = daemon_wall_ms();
    wire_pos start;
    int progressed = 0, stopped = 0;
    size_t i = 0;
    pool_slot *slots = NULL;

    if (!s) {
        log_error(b->source, "out of memory");
        return;
    }
    if (receiver_load_wm(r, s) != 0) return; /* no ack: the peer resends */
    start = s->wm;
    if (s->known && wire_pos_cmp(b->prev, s->wm) > 0) {
        char p1[48], p2[48];
        wire_pos_format(b->prev, p1, sizeof p1);
        wire_pos_format(s->wm, p2, sizeof p2);
        receiver_reject(r, "gap", b->source, "batch follows a position not yet applied");
        log_info(b->source, "table %s: batch after %s but applied only up to %s: asking for a resend", b->table, p1, p2);
        receiver_ack(r, sock, rid, rid_len, s);
        return;
    }
    memset(&t, 0, sizeof t);
    while (i < b->n && s->known && wire_pos_cmp(b->changes[i].pos, s->wm) <= 0) { /* already applied */
        t.dup++;
        i++;
    }
    slots = calloc(REPL_CHUNK, sizeof *slots);
    if (!slots) {
        log_error(b->source, "out of memory");
        return;
    }
    while (i < b->n && !stopped) {
        size_t n = 0, j;
        long long now_wall = daemon_wall_ms();
        /* a chunk: changes up to the first one held back by the clock-skew bound */
        for (j = i; j < b->n && n < REPL_CHUNK; j++) {
            const wire_change *c = &b->changes[j];
            lww_version v;
            if (lww_version_parse(c->version, &v, err, sizeof err) != 0) { /* the decoder checked it */
                stopped = 1;
                break;
            }
            if (lww_ahead(&v, (uint64_t)now_wall, (uint64_t)r->cfg->replicator.max_clock_skew_ms)) {
                long long now = daemon_mono_ms();
                t.skew++;
                if (now - s->last_warn >= REPL_WARN_EVERY_MS) {
                    log_warn(b->source, "table %s: change version %s is %lld ms ahead of this region's clock "
                             "(bound %ld ms): held back until it is not; check the clocks (NTP)", b->table,
                             c->version, (long long)(v.ms - (uint64_t)now_wall), r->cfg->replicator.max_clock_skew_ms);
                    s->last_warn = now;
                }
                stopped = 1;
                break;
            }
            if (v.ms > (uint64_t)now_wall + REPL_DRIFT_WARN_MS && daemon_mono_ms() - s->last_drift_warn >= REPL_WARN_EVERY_MS) {
                /* within the bound, but a peer whose clock runs ahead wins conflicts it should not */
                log_warn(b->source, "table %s: peer clock about %lld ms ahead of this region's (change %s); "
                         "check NTP on both", b->table, (long long)(v.ms - (uint64_t)now_wall), c->version);
                s->last_drift_warn = daemon_mono_ms();
            }
            memset(&slots[n], 0, sizeof slots[n]);
            slots[n].c = c;
            if (!(slots[n].kid = item_key_id(c->keys))) {
                stopped = 1;
                break;
            }
            n++;
        }
        pool_run(r->pool, b->table, r->cfg->replicator.tombstone_ttl_s, slots, n);
        /* results in batch order: the watermark moves up to the first failure */
        for (size_t k = 0; k < n; k++) {
            lww_version v;
            if (receiver_result(r, b, &slots[k], &t) != 0) {
                stopped = 1;
                for (; k < n; k++) free(slots[k].kid);
                break;
            }
            s->wm = slots[k].c->pos;
            s->known = 1;
            progressed = 1;
            snprintf(ver, sizeof ver, "%s", slots[k].c->version);
            if (lww_version_parse(ver, &v, err, sizeof err) == 0) {
                lag = slots[k].done_wall - (long long)v.ms;
                if (r->m_lag) {
                    const char *lv[] = {b->source, b->table, NULL};
                    metrics_observe_with(r->m_lag, lv, (double)(lag > 0 ? lag : 0));
                }
                if (t.n_lags < sizeof t.lags / sizeof t.lags[0])
                    snprintf(t.lags[t.n_lags++], sizeof t.lags[0], "%lld %lld", slots[k].done_wall, lag);
            }
            free(slots[k].kid);
        }
        i += n;
        if (!stopped && i < b->n && *ver && daemon_mono_ms() - last_ack >= REPL_PROGRESS_ACK_MS) {
            /* a long batch: save and acknowledge the progress so far (replicator.h) */
            if (receiver_save(r, s, ver, lag, &t) != 0) {
                log_warn(b->source, "table %s: saving the watermark failed: %s", b->table, state_errstr(r->st));
                s->wm = start;
                s->loaded = 0;
                free(slots);
                return;
            }
            receiver_count_tally(r, b, &t);
            receiver_ack(r, sock, rid, rid_len, s);
            memset(&t, 0, sizeof t);
            start = s->wm;
            ver[0] = '\0';
            last_ack = daemon_mono_ms();
        }
    }
    free(slots);
    if (log_get_level() >= LOG_LVL_DEBUG && b->n) {
        /* where a batch's time went: the origin's version time to its send, the send to
         * this receipt, the receipt to the last apply (wall clocks of two regions: skew shows) */
        lww_version v0;
        if (lww_version_parse(b->changes[0].version, &v0, err, sizeof err) == 0)
            log_debug(b->source, "table %s: batch of %zu: sent %lld ms after its first version, received %lld ms "
                      "after sending, applied in %lld ms", b->table, b->n, (long long)b->sent_ms - (long long)v0.ms,
                      recv_wall - (long long)b->sent_ms, daemon_wall_ms() - recv_wall);
    }
    receiver_count_tally(r, b, &t);
    if (*ver) {
        if (receiver_save(r, s, ver, lag, &t) != 0) {
            /* not saved: do not acknowledge; reload the watermark before the resend (the
             * conditional writes make re-applying harmless) */
            log_warn(b->source, "table %s: saving the watermark failed: %s", b->table, state_errstr(r->st));
            s->wm = start;
            s->loaded = 0;
            return;
        }
    } else if (t.dup || t.skew) {
        char key[512];
        redisReply *reps[2];
        state_key(r->st, key, sizeof key, STATE_K_CNT, s->source, s->table);
        state_append(r->st, "HINCRBY %s dup %ld", key, t.dup);
        state_append(r->st, "HINCRBY %s skew %ld", key, t.skew);
        if (state_flush(r->st, reps, 2) == 0) {
            freeReplyObject(reps[0]);
            freeReplyObject(reps[1]);
        }
    }
    /* held back or failed before any progress: no ack, the peer resends after its timeout */
    if (stopped && !progressed) return;
    if (s->known) receiver_ack(r, sock, rid, rid_len, s);
}

void receiver_frame(receiver *r, void *sock, const void *rid, size_t rid_len, const void *data, size_t len,
                    const char *user_id) {
    wire_msg m;
    char err[512];
    wire_status ws = wire_decode(data, len, &m, err, sizeof err);
    if (ws != WIRE_OK) {
        receiver_reject(r, wire_status_name(ws), user_id, err);
        return;
    }
    if (m.type != WIRE_BATCH) {
        receiver_reject(r, "type", user_id, "only batches are accepted here");
    } else if (user_id && strcmp(user_id, m.u.batch.source) != 0) {
        snprintf(err, sizeof err, "frame claims source %s but the connection authenticated as %s",
                 m.u.batch.source, user_id);
        receiver_reject(r, "source_mismatch", user_id, err);
    } else if (!cfg_peer_find(r->cfg, m.u.batch.source)) {
        snprintf(err, sizeof err, "source %s is not a configured peer", m.u.batch.source);
        receiver_reject(r, "unknown_source", user_id, err);
    } else if (!receiver_table_ok(r, m.u.batch.table)) {
        snprintf(err, sizeof err, "table %s is not replicated here", m.u.batch.table);
        receiver_reject(r, "unknown_table", m.u.batch.source, err);
    } else {
        receiver_batch(r, sock, rid, rid_len, &m.u.batch);
    }
    wire_msg_free(&m);
}

void receiver_housekeep(receiver *r, long refused, const char *status) {
    char key[256];
    size_t n = 0;
    redisReply *rep[34];
    state_key(r->st, key, sizeof key, STATE_K_REJ);
    for (size_t i = 0; i < r->n_rej; i++) {
        if (!r->rej[i].count) continue;
        state_append(r->st, "HINCRBY %s %s %ld", key, r->rej[i].reason, r->rej[i].count);
        n++;
    }
    if (refused && r->m_refused) metrics_inc_with(r->m_refused, NULL, (uint64_t)refused);
    if (refused) {
        state_append(r->st, "HINCRBY %s curve_refused %ld", key, refused);
        n++;
    }
    if (n && state_flush(r->st, rep, n) == 0) {
        for (size_t i = 0; i < n; i++) freeReplyObject(rep[i]);
        for (size_t i = 0; i < r->n_rej; i++) r->rej[i].count = 0;
    }
    if (state_heartbeat(r->st, "replicator", status) != 0) receiver_redis_warn(r, NULL, "-", "heartbeat");
}
