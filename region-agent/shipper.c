/* shipper.c -- the shipping half of tern-region-agent (see agent.h).
 *
 * Owns: one ZeroMQ DEALER per peer (CURVE client unless the config disables CURVE), with
 * a socket monitor read through a PAIR at "<notify_ep>-monitor-<peer index>"; and per
 * (peer, table) a link: the peer's acknowledged log position (durable in ack:T), the
 * highest position sent, and the window of batches in flight (at most
 * agent.max_inflight_batches, and AGENT_INFLIGHT_BYTES of frames).
 *
 * Link states (per peer and table):
 *   idle      -- everything in the log up to now is acknowledged;
 *   shipping  -- batches in flight (at most agent.max_inflight_batches);
 *   blocked   -- the peer is not connected (ZMQ_IMMEDIATE refuses the send): retried
 *                every AGENT_BLOCKED_RETRY_MS, other peers unaffected;
 *   paused    -- ternctl paused the link (pause:P in Redis): nothing is sent.
 * Go-back-N: when the oldest batch in flight is not acknowledged after
 * agent.ack_timeout_ms, or the peer acknowledges less than the batch it just processed
 * (it refused or could not apply it), or the connection to the peer dropped (a socket
 * monitor reports ZMQ_EVENT_DISCONNECTED: ZeroMQ discards the messages queued on a
 * connection it closes, and the answers to what was delivered are lost with it), the link
 * resends from the acknowledged position; after a dropped connection it waits
 * AGENT_BLOCKED_RETRY_MS first (ZeroMQ reports the drop before it has discarded the old
 * connection's queue, where a resend at once would be lost again). An event read after the
 * link is connected again sends back what went out on the new connection too: duplicates.
 * The replicator's watermark makes the resend idempotent.
 * Each batch names the position before its first change (prev), so a replicator can
 * tell a gap (a lost batch) from a duplicate, and (version 2) the link's acknowledged
 * position, so a replicator that has no watermark for this region yet knows where to
 * start.
 * The log is trimmed below the minimum acknowledgement of all configured peers, so a
 * peer that is down keeps everything it has not applied.
 * Changes come from the table's cache of the tailer's commits (logcache.h: the commits are
 * taken from agent_ctx.handoff at every turn, after the wake-ups) when it covers the link's
 * position, else from the log in Redis (XRANGE); the cache is trimmed at the lowest
 * acknowledgement of the peers that are connected and not paused (the others read Redis
 * when they are back), and every AGENT_HOUSEKEEP_MS each link at the cache's end reads the
 * log's end from Redis once (recheck).
 * Threading: its own thread, its own Redis handle; reads agent_ctx atomics; takes the
 * tailer's commits from agent_ctx.handoff (its own lock). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "agent.h"
#include "daemon.h"
#include "log.h"
#include "lww.h"
#include "state.h"
#include "wire.h"

_Static_assert(WIRE_VERSION_MIN == 1 && WIRE_VERSION == 2, "config/cfg.c bounds agent.wire_version to 1..2");

/* Lua: XTRIM KEYS[1] (log:T) MINID ARGV[1]; when that removes entries, every peer in
 * KEYS[2] (ack:T) that is not one of the configured ARGV[2..] and acknowledged less than
 * the highest entry removed is flagged in KEYS[3] (lost:T, field: peer, value: that entry):
 * it lost changes from the log (shipper_check_lost). Returns the entries removed. Redis
 * 6.2 and later ("(" ranges, MINID). */
#define SHIPPER_LUA_TRIM \
    "local d = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1) " \
    "if not d[1] then return 0 end " \
    "local n = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1]) " \
    "local conf = {} " \
    "for i = 2, #ARGV do conf[ARGV[i]] = true end " \
    "local dm, ds = string.match(d[1][1], '^(%d+)-(%d+)$') " \
    "dm, ds = tonumber(dm), tonumber(ds) " \
    "local acks = redis.call('HGETALL', KEYS[2]) " \
    "for i = 1, #acks, 2 do " \
    "  local am, as = string.match(acks[i + 1], '^(%d+)-(%d+)$') " \
    "  if not conf[acks[i]] and am and (tonumber(am) < dm or (tonumber(am) == dm and tonumber(as) < ds)) then " \
    "    redis.call('HSET', KEYS[3], acks[i], d[1][1]) end " \
    "end " \
    "return n"

/* The id of the last entry ever added to the stream KEYS[1] (XINFO STREAM's
 * last-generated-id: entries removed since included), or nil when there is no stream. */
#define SHIPPER_LUA_LAST_GENERATED \
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end " \
    "local info = redis.call('XINFO', 'STREAM', KEYS[1]) " \
    "for i = 1, #info, 2 do if info[i] == 'last-generated-id' then return info[i + 1] end end " \
    "return false"

#define SHIPPER_MAX_BACKOFF 4    /* ack timeout doublings: at most 16 x agent.ack_timeout_ms */

typedef struct {
    wire_pos prev, last;
    long long sent_at;      /* monotonic ms */
    size_t bytes;           /* the frame's size */
} inflight;

typedef struct {
    const char *table;
    wire_pos acked, sent;
    int ack_dirty;          /* acked moved: save it */
    long long progress_at;  /* monotonic ms of the last acknowledgement that moved acked */
    int timeouts;           /* ack timeouts in a row without progress (backoff exponent) */
    int heard;              /* an ack of this link came since the agent started */
    /* Refusals: the replicator answers a frame it does not take (its apply failed, a gap
     * behind a refused batch, a copy of batches it already applied) with its watermark. A
     * refusal is resent at once, unless a go-back (for a refusal or a timeout) happened
     * and the peer has not acknowledged past everything sent before it (goback_upto) yet:
     * then answers to frames sent before it may still come, and the resend waits
     * AGENT_REFUSAL_RETRY_MS, doubling with each refusal go-back up to
     * AGENT_REFUSAL_RETRY_MAX_MS. An acknowledgement that moves acked meanwhile calls it
     * off: the peer is taking batches (the answer was to a copy of one it had applied).
     * Going back at every such answer resent the window every ~40 ms while a peer's apply
     * failed at once, and resent batches again while copies of applied ones were being
     * answered. The replicator sends a refusal again after an acknowledgement that follows
     * it (receiver.c), so a refusal called off that way is not lost. */
    wire_pos goback_upto;
    int refusals;           /* go-backs for a refusal in a row (delay exponent) */
    long long goback_at;    /* monotonic ms of a go-back decided on a refusal; 0: none. Nothing
                               new is sent meanwhile */
    inflight *q;            /* the window: nq of window (agent.max_inflight_batches) slots, oldest first */
    int nq;
    size_t q_bytes;         /* the frames of q[0..nq), bytes */
    int dirty;              /* the log may have more to send */
    int recheck;            /* read the log's end from Redis even where the cache says it
                               holds it (set by housekeeping: an entry added to log:T other
                               than by the tailer, at its end, is found within
                               AGENT_HOUSEKEEP_MS, as before the cache) */
    long long blocked_until;
    /* What this link can have sent: up to sent_max in this run, up to top (the log's last
     * generated id, read when an acknowledgement first passes sent_max: top_known) in an
     * earlier one. An acknowledgement past both names a change this region never logged:
     * refused, or taken only up to sent_max (shipper_ack_check) */
    wire_pos sent_max;      /* the last position this run sent on the link */
    wire_pos top;
    int top_known;
    long long bad_ack_warn; /* monotonic ms of the last such refusal logged */
    long long shipped, acked_n, resent; /* changes, since the last counter flush */
    long long m_shipped_total, m_resent_total, m_shipped_pub, m_resent_pub; /* for metrics */
    long long m_from_memory, m_from_redis, m_memory_pub, m_redis_pub;       /* batches, by source */
} link_state;

typedef struct {
    const cfg_peer *peer;
    void *sock;
    void *mon;              /* PAIR: sock's monitor events (ZMQ_EVENT_DISCONNECTED) */
    int paused;
    int connected_logged;   /* 1: last log said connected; 0: said not */
    long long last_warn;
    link_state *links;      /* one per table */
} peer_state;

typedef struct {
    agent_ctx *a;
    state *st;
    void *notify;
    logcache **caches;          /* per table (cfg->tables): the tailer's commits (logcache.h) */
    peer_state *peers;
    size_t n_peers;
    long window;
    log_limit redis_warn;       /* Redis warnings (AGENT_WARN_EVERY_MS) */
} shipper;

/* Logs a Redis failure at most once per AGENT_WARN_EVERY_MS; the others are counted
 * and reported with the next line. */
static void shipper_redis_warn(shipper *sh, const char *peer, const char *what) {
    long skipped;
    if (log_limit_pass(&sh->redis_warn, daemon_mono_ms(), AGENT_WARN_EVERY_MS, &skipped))
        log_warn(peer, "%s: %s (%ld more Redis failures since the last warning; retrying)", what,
                 state_errstr(sh->st), skipped);
}

/* After a Redis success: one line if failures were being rate-limited, once the last
 * warning is AGENT_WARN_EVERY_MS old (a write that keeps failing while reads succeed
 * would otherwise re-arm the warning at every read). */
static void shipper_redis_ok(shipper *sh) {
    if (!sh->redis_warn.at || daemon_mono_ms() - sh->redis_warn.at < AGENT_WARN_EVERY_MS) return;
    log_info(NULL, "Redis answers again");
    sh->redis_warn = (log_limit){0, 0};
}

static peer_state *shipper_peer(shipper *sh, const char *region) {
    for (size_t i = 0; i < sh->n_peers; i++)
        if (strcmp(sh->peers[i].peer->region, region) == 0) return &sh->peers[i];
    return NULL;
}

static link_state *shipper_link(shipper *sh, peer_state *p, const char *table) {
    for (size_t i = 0; i < sh->a->cfg->n_tables; i++)
        if (strcmp(p->links[i].table, table) == 0) return &p->links[i];
    return NULL;
}

static void shipper_go_back(peer_state *p, link_state *l, const char *why) {
    char a[48];
    if (l->nq == 0 && wire_pos_cmp(l->sent, l->acked) == 0) return;
    wire_pos_format(l->acked, a, sizeof a);
    log_info(p->peer->region, "table %s: resending from %s (%s)", l->table, a, why);
    l->resent += l->nq;
    l->m_resent_total += l->nq;
    if (wire_pos_cmp(l->sent, l->goback_upto) > 0) l->goback_upto = l->sent;
    if (l->refusals < 1) l->refusals = 1; /* copies of applied batches are answered too */
    l->sent = l->acked;
    l->goback_at = 0;
    l->nq = 0;
    l->q_bytes = 0;
    l->dirty = 1;
}

/* Counts a reply of peer p refused for reason (tern_agent_rejected_replies_total). */
static void shipper_reject(shipper *sh, peer_state *p, const char *reason) {
    const char *v[] = {p->peer->region, reason, NULL};
    if (sh->a->m_rejected) metrics_inc_with(sh->a->m_rejected, v, 1);
}

/* What of acknowledged position *pos (above l->acked) link l takes. Up to what the link
 * can have sent (l->sent_max, or l->top: the log's last generated id, read the first time
 * an ack passes sent_max) it is taken whole: 1. Past both the ack names no change this
 * region logged:
 *   - one whose time is ahead of this host's clock by more than
 *     replicator.max_clock_skew_ms (no entry of the log can have that id: a faulty peer,
 *     or its Redis another deployment's) is refused: 0;
 *   - any other is taken only up to l->sent_max, the last position this run sent on the
 *     link (*pos lowered; 0 when that is not above l->acked). This region's Redis went
 *     back (restored from an older copy, its last writes lost), and the peer, which had
 *     received the lost entries, answers every resend with its watermark: refused, the
 *     link would go back and resend for ever; taken whole, nothing it lacks is skipped,
 *     but its source cannot be told from a faulty peer's, which can skip no more than
 *     what was sent to it this way.
 * Both are counted (beyond_log) and logged at most every AGENT_WARN_EVERY_MS. 0,
 * uncounted, when the log's last id could not be read (Redis failed): the ack is dropped,
 * and the batches are acknowledged again when resent after the ack timeout. */
static int shipper_ack_check(shipper *sh, peer_state *p, link_state *l, wire_pos *pos) {
    char key[512], at[WIRE_POS_STRLEN], top[WIRE_POS_STRLEN], upto[WIRE_POS_STRLEN];
    long long now;
    int future;
    if (wire_pos_cmp(*pos, l->sent_max) <= 0 || (l->top_known && wire_pos_cmp(*pos, l->top) <= 0)) return 1;
    if (!l->top_known) {
        redisReply *r;
        wire_pos last;
        if (state_key(sh->st, key, sizeof key, STATE_K_LOG, l->table) != 0) return 0;
        r = state_cmd(sh->st, "EVAL %s 1 %s", SHIPPER_LUA_LAST_GENERATED, key);
        if (!r) {
            shipper_redis_warn(sh, p->peer->region, "reading the change log's last id");
            return 0;
        }
        shipper_redis_ok(sh);
        if (r->type == REDIS_REPLY_STRING && wire_pos_parse(r->str, &last) == 0) {
            l->top = last;
        } else if (r->type != REDIS_REPLY_NIL) { /* not a stream's id: nothing can be vouched for */
            freeReplyObject(r);
            return 0;
        }
        freeReplyObject(r);
        l->top_known = 1; /* anything after it, this run sends first (sent_max) */
        if (wire_pos_cmp(*pos, l->top) <= 0) return 1;
    }
    shipper_reject(sh, p, "beyond_log");
    future = pos->ms > (uint64_t)daemon_wall_ms() + (uint64_t)sh->a->cfg->replicator.max_clock_skew_ms;
    now = daemon_mono_ms();
    if (now - l->bad_ack_warn >= AGENT_WARN_EVERY_MS) {
        l->bad_ack_warn = now;
        wire_pos_format(*pos, at, sizeof at);
        wire_pos_format(wire_pos_cmp(l->top, l->sent_max) > 0 ? l->top : l->sent_max, top, sizeof top);
        wire_pos_format(l->sent_max, upto, sizeof upto);
        if (future)
            log_error(p->peer->region, "table %s: acknowledgement of %s refused: past the last change this "
                      "region logged (%s) and ahead of this host's clock, so it names no change sent; taken, it "
                      "would skip this peer's changes up to it (a faulty peer, or its Redis another "
                      "deployment's; tern_agent_rejected_replies_total{reason=\"beyond_log\"})", l->table, at, top);
        else
            log_warn(p->peer->region, "table %s: acknowledgement of %s is past the last change this region "
                     "logged (%s): taken only up to what was sent to the peer (%s). This region's Redis went "
                     "back (restored from an older copy?), or the peer is faulty "
                     "(tern_agent_rejected_replies_total{reason=\"beyond_log\"})", l->table, at, top, upto);
    }
    if (future || wire_pos_cmp(l->sent_max, l->acked) <= 0) return 0;
    *pos = l->sent_max;
    return 1;
}

static void shipper_on_ack(shipper *sh, peer_state *p, const wire_ack *ack) {
    link_state *l;
    wire_pos pos = ack->pos; /* what of it is taken (shipper_ack_check) */
    if (strcmp(ack->source, sh->a->cfg->region) != 0) {
        log_warn(p->peer->region, "ack names source %s, not this region: ignored", ack->source);
        shipper_reject(sh, p, "source");
        return;
    }
    l = shipper_link(sh, p, ack->table);
    if (!l) {
        log_warn(p->peer->region, "ack for unknown table %s: ignored", ack->table);
        shipper_reject(sh, p, "table");
        return;
    }
    l->heard = 1;
    if (wire_pos_cmp(ack->pos, l->acked) > 0 && !shipper_ack_check(sh, p, l, &pos)) return;
    if (wire_pos_cmp(pos, l->acked) > 0) {
        int k = 0;
        l->acked = pos;
        l->ack_dirty = 1;
        l->progress_at = daemon_mono_ms();
        l->timeouts = 0;
        l->goback_at = 0;
        if (wire_pos_cmp(pos, l->goback_upto) > 0) l->refusals = 0;
        while (k < l->nq && wire_pos_cmp(l->q[k].last, pos) <= 0) l->q_bytes -= l->q[k++].bytes;
        if (k) {
            memmove(l->q, l->q + k, (size_t)(l->nq - k) * sizeof l->q[0]);
            l->nq -= k;
        }
        /* an ack adds nothing to the log: a link that stopped at a full window kept dirty
         * set, one that read the log to its end has nothing to send (reading it again for
         * every ack was one empty XRANGE per batch) */
        if (wire_pos_cmp(l->sent, l->acked) < 0) { /* peer is ahead of us */
            l->sent = l->acked;
            l->dirty = 1;
        }
    } else if (l->nq > 0 && wire_pos_cmp(pos, l->q[0].last) < 0 && !l->goback_at) {
        /* the peer processed a batch without taking its head: a refusal (see link_state) */
        int n = l->refusals > 0 ? l->refusals - 1 : 0;
        long long delay = l->refusals ? (long long)AGENT_REFUSAL_RETRY_MS << (n < 16 ? n : 16) : 0;
        l->goback_at = daemon_mono_ms() + (delay < AGENT_REFUSAL_RETRY_MAX_MS ? delay : AGENT_REFUSAL_RETRY_MAX_MS);
    }
}

/* Reads p's monitor events: a dropped connection sends every link of p back to its
 * acknowledged position (see the header). An event is two frames: 6 bytes (uint16 event,
 * uint32 value), then the endpoint. */
static void shipper_monitor(shipper *sh, peer_state *p) {
    long long now = daemon_mono_ms();
    for (;;) {
        unsigned char ev[6];
        uint16_t event;
        int more = 0, n = zmq_recv(p->mon, ev, sizeof ev, ZMQ_DONTWAIT);
        size_t ml = sizeof more;
        if (n < 0) return;
        while (zmq_getsockopt(p->mon, ZMQ_RCVMORE, &more, &ml) == 0 && more) { /* the endpoint */
            char skip[256];
            if (zmq_recv(p->mon, skip, sizeof skip, 0) < 0) break;
        }
        if (n != (int)sizeof ev) continue;
        memcpy(&event, ev, sizeof event);
        if (event != ZMQ_EVENT_DISCONNECTED) continue;
        for (size_t j = 0; j < sh->a->cfg->n_tables; j++) {
            link_state *l = &p->links[j];
            if (l->nq == 0) continue;
            shipper_go_back(p, l, "the connection to the peer dropped with batches in flight");
            l->timeouts = 0; /* a timeout's backoff is for a slow peer, not a lost connection */
            l->blocked_until = now + AGENT_BLOCKED_RETRY_MS; /* see the header */
        }
    }
}

static void shipper_recv(shipper *sh, peer_state *p) {
    for (;;) {
        zmq_msg_t m;
        wire_msg wm;
        char err[256];
        wire_status ws;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        ws = wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &wm, err, sizeof err);
        zmq_msg_close(&m);
        if (ws != WIRE_OK) {
            log_warn(p->peer->region, "rejected frame from peer: %s: %s", wire_status_name(ws), err);
            if (ws != WIRE_ERR_NOMEM) shipper_reject(sh, p, wire_status_name(ws)); /* nomem: ours */
            continue;
        }
        if (wm.type == WIRE_ACK) {
            shipper_on_ack(sh, p, &wm.u.ack);
        } else {
            log_warn(p->peer->region, "unexpected frame type %d from peer: ignored", (int)wm.type);
            shipper_reject(sh, p, "type");
        }
        wire_msg_free(&wm);
    }
}

/* The peer is not connected: the link retries after AGENT_BLOCKED_RETRY_MS. */
static void shipper_blocked(peer_state *p, link_state *l, long long now) {
    l->blocked_until = now + AGENT_BLOCKED_RETRY_MS;
    if (p->connected_logged && now - p->last_warn > 10000) {
        log_warn(p->peer->region, "peer not connected (%s); holding its changes", p->peer->endpoint);
        p->last_warn = now;
        p->connected_logged = 0;
    }
}

/* Fills c (its pos set) from a change-log entry {"op","keys","image","ver"}; c borrows
 * entry's keys and image. 0, or -1 when the entry is not a change. */
static int shipper_change(wire_change *c, const cJSON *entry) {
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(entry, "op");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(entry, "ver");
    if (!cJSON_IsString(op) || !cJSON_IsString(ver)) return -1;
    c->op = strcmp(op->valuestring, "delete") == 0 ? WIRE_OP_DELETE : WIRE_OP_PUT;
    c->keys = cJSON_GetObjectItemCaseSensitive(entry, "keys");
    c->image = c->op == WIRE_OP_PUT ? cJSON_GetObjectItemCaseSensitive(entry, "image") : NULL;
    snprintf(c->version, sizeof c->version, "%s", ver->valuestring);
    return 0;
}

/* The changes after l->sent from the table's cache (logcache.h) into b->changes, up to
 * batch_max. Returns how many (borrowed from the cache); 0 when the cache has nothing after
 * l->sent, with *at_end set when the log has nothing more either (else it may: read
 * Redis); -1 when the cache does not cover l->sent (read Redis). */
static long shipper_from_cache(shipper *sh, link_state *l, logcache *lc, wire_batch *b, int *at_end) {
    const logcache_entry *e;
    long n = logcache_after(lc, l->sent, (size_t)sh->a->cfg->agent.batch_max, &e, at_end);
    if (n <= 0) return n;
    b->changes = calloc((size_t)n, sizeof *b->changes);
    if (!b->changes) return -1;
    for (long i = 0; i < n; i++) {
        b->changes[i].pos = e[i].id;
        if (shipper_change(&b->changes[i], e[i].change) != 0) { /* the tailer made it: never */
            logcache_clear(lc);
            free(b->changes);
            b->changes = NULL;
            return -1;
        }
    }
    return n;
}

/* The changes after l->sent read from the change log in Redis into b->changes, up to
 * batch_max; *parsed (an array of *got entries, the caller frees each and it) owns what
 * they borrow. Returns how many are in b->changes (the entries before the first malformed
 * one), 0 when the log has nothing after l->sent, -1 on error (a Redis failure, out of
 * memory, or a malformed first entry: logged, the link waits). *got: entries read. */
static long shipper_from_redis(shipper *sh, peer_state *p, link_state *l, long long now, wire_batch *b,
                               cJSON ***parsed, size_t *got) {
    const cfg_region *cfg = sh->a->cfg;
    char key[512], start[64], posbuf[48];
    redisReply *r;
    long n = -1;

    *parsed = NULL;
    *got = 0;
    if (state_key(sh->st, key, sizeof key, STATE_K_LOG, l->table) != 0) return -1;
    wire_pos_format(l->sent, posbuf, sizeof posbuf);
    snprintf(start, sizeof start, "(%s", posbuf);
    r = state_cmd(sh->st, "XRANGE %s %s + COUNT %ld", key, start, cfg->agent.batch_max);
    if (!r) {
        char what[300];
        snprintf(what, sizeof what, "table %s: reading the change log", l->table);
        shipper_redis_warn(sh, p->peer->region, what);
        l->blocked_until = now + AGENT_ERROR_BACKOFF_MS;
        return -1;
    }
    shipper_redis_ok(sh);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return 0;
    }
    b->changes = calloc(r->elements, sizeof *b->changes);
    *parsed = calloc(r->elements, sizeof **parsed);
    if (!b->changes || !*parsed) goto out;
    *got = r->elements;
    for (n = 0; (size_t)n < r->elements; n++) {
        redisReply *e = r->element[n], *f;
        wire_change *c = &b->changes[n];
        const char *id = e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                         e->element[0]->type == REDIS_REPLY_STRING ? e->element[0]->str : NULL;
        int ok = id && wire_pos_parse(id, &c->pos) == 0;
        f = ok ? e->element[1] : NULL;
        ok = ok && f->type == REDIS_REPLY_ARRAY && f->elements == 2 && f->element[1]->type == REDIS_REPLY_STRING;
        if (ok) {
            (*parsed)[n] = cJSON_Parse(f->element[1]->str);
            ok = shipper_change(c, (*parsed)[n]) == 0;
        }
        if (ok) continue;
        /* not a change this agent wrote (a bug, or Redis edited by hand): the entries
         * before it go; the link stops at it, said every AGENT_WARN_EVERY_MS, since
         * skipping it could drop a change */
        if (n == 0) {
            log_error(p->peer->region, "table %s: malformed change-log entry after %s (%s), or out of memory "
                      "parsing it: the link to this peer stops here (retried every %d s); check the entry with "
                      "XRANGE %s (%s + COUNT 1: if it is not a change, XDEL removes it and the link goes on; a "
                      "change removed so is NOT replicated)", l->table, posbuf, id ? id : "no id",
                      AGENT_WARN_EVERY_MS / 1000, key, posbuf);
            l->blocked_until = now + AGENT_WARN_EVERY_MS;
            n = -1;
        }
        break;
    }
out:
    freeReplyObject(r);
    return n;
}

/* Sends up to batch_max changes after l->sent as one batch: from the table's cache of
 * the tailer's commits when it covers l->sent (logcache.h), else read from the change log
 * in Redis. Returns 1 if a batch was sent, 0 if nothing to send or the peer is not
 * connected, -1 on error. Clears l->dirty once the log holds nothing more to send (the
 * cache says so, or the read came back empty, or short and all of it was sent): the
 * tailer's next commit notifies, and reading again before then would find nothing. */
static int shipper_send_one(shipper *sh, peer_state *p, link_state *l, long long now) {
    const cfg_region *cfg = sh->a->cfg;
    logcache *lc = sh->caches[l - p->links];
    wire_batch b;
    cJSON **parsed = NULL;
    size_t got = 0;
    unsigned char *frame = NULL;
    size_t flen = 0;
    long n;
    int rc = -1, at_end = 0, cached;
    char err[256];

    {
        /* a peer that is not connected refuses every send (ZMQ_IMMEDIATE): find out before
         * reading and encoding up to batch_max changes for nothing every
         * AGENT_BLOCKED_RETRY_MS, which starved the links to the peers that are up */
        int events = 0;
        size_t elen = sizeof events;
        if (zmq_getsockopt(p->sock, ZMQ_EVENTS, &events, &elen) == 0 && !(events & ZMQ_POLLOUT)) {
            shipper_blocked(p, l, now);
            return 0;
        }
    }
    memset(&b, 0, sizeof b);
    n = shipper_from_cache(sh, l, lc, &b, &at_end);
    /* else the log may hold what the cache lacks */
    cached = n > 0 || (n == 0 && at_end && !l->recheck);
    if (!cached) {
        n = shipper_from_redis(sh, p, l, now, &b, &parsed, &got);
        at_end = n >= 0 && (size_t)n == got && n < cfg->agent.batch_max;
        if (at_end) l->recheck = 0; /* Redis said where the log ends */
    }
    if (n <= 0) {
        if (n == 0) l->dirty = 0;
        rc = n == 0 ? 0 : -1;
        goto out;
    }
    snprintf(b.source, sizeof b.source, "%s", cfg->region);
    snprintf(b.table, sizeof b.table, "%s", l->table);
    b.prev = l->sent;
    /* version 2: what this link holds as acknowledged, where a replicator without a
     * watermark for us must start (shipper_on_ack keeps sent >= acked) */
    b.has_acked = cfg->agent.wire_version >= 2;
    b.acked = l->acked;
    b.sent_ms = (uint64_t)daemon_wall_ms();
    b.n = (size_t)n;
    b.first = b.changes[0].pos;
    for (;;) { /* halve a batch over WIRE_MAX_FRAME until it fits */
        wire_status enc;
        b.last = b.changes[b.n - 1].pos;
        if ((enc = wire_encode_batch(&b, &frame, &flen, err, sizeof err)) == WIRE_OK) break;
        if (enc == WIRE_ERR_NOMEM) { /* nothing wrong with the changes: again later */
            log_warn(p->peer->region, "table %s: encoding a batch: %s; retrying", l->table, err);
            l->blocked_until = now + AGENT_ERROR_BACKOFF_MS;
            goto out;
        }
        if (b.n == 1) {
            /* a change no peer could accept (the tailer screens for these): left in the log it
             * would block this link for good, so it is removed from the log for every peer
             * (and from the cache, which holds nothing until the tailer's next commit) */
            char id[48], key[512];
            redisReply *x;
            wire_pos_format(b.changes[0].pos, id, sizeof id);
            log_error(p->peer->region, "table %s: change-log entry %s cannot be encoded (%s): removed from "
                      "the log, NOT REPLICATED", l->table, id, err);
            if (state_key(sh->st, key, sizeof key, STATE_K_LOG, l->table) == 0 &&
                (x = state_cmd(sh->st, "XDEL %s %s", key, id)))
                freeReplyObject(x);
            logcache_clear(lc);
            goto out;
        }
        b.n /= 2;
    }
    if (zmq_send(p->sock, frame, flen, ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN) {
            shipper_blocked(p, l, now);
            rc = 0;
        } else {
            log_error(p->peer->region, "send: %s", zmq_strerror(errno));
        }
        goto out;
    }
    if (!p->connected_logged) {
        log_info(p->peer->region, "peer connected (%s)", p->peer->endpoint);
        p->connected_logged = 1;
    }
    l->q[l->nq].prev = l->sent;
    l->q[l->nq].last = b.last;
    l->q[l->nq].sent_at = now;
    l->q[l->nq].bytes = flen;
    l->q_bytes += flen;
    l->nq++;
    l->sent = b.last;
    if (wire_pos_cmp(b.last, l->sent_max) > 0) l->sent_max = b.last;
    l->shipped += (long long)b.n;
    l->m_shipped_total += (long long)b.n;
    if (cached) l->m_from_memory++;
    else l->m_from_redis++;
    if (b.n == (size_t)n && at_end && !(cached && l->recheck)) l->dirty = 0;
    rc = 1;
out:
    for (size_t i = 0; parsed && i < got; i++) cJSON_Delete(parsed[i]);
    free(parsed);
    free(b.changes);
    free(frame);
    return rc;
}

/* A wake-up from the tailer, n bytes received into idx: the index of the table it
 * committed to. Marks that table's link of every peer as having more to send; a message
 * of another size or index (never sent) marks every link rather than lose a wake-up. */
static void shipper_wake(shipper *sh, uint32_t idx, int n) {
    size_t first = 0, end = sh->a->cfg->n_tables;
    if (n == (int)sizeof idx && idx < end) {
        first = idx;
        end = (size_t)idx + 1;
    }
    for (size_t i = 0; i < sh->n_peers; i++)
        for (size_t j = first; j < end; j++) sh->peers[i].links[j].dirty = 1;
}

static void shipper_pump(shipper *sh, peer_state *p, link_state *l, long long now) {
    if (l->goback_at && now >= l->goback_at) {
        if (l->refusals) l->refusals++; /* a refusal after a go-back: the delay doubles */
        shipper_go_back(p, l, "peer did not apply the oldest batch in flight");
        l->goback_at = 0;
    }
    /* the peer applies batches in order: it is late only when the oldest batch in flight
     * and the last progress are both older than the timeout (a busy peer that keeps
     * acknowledging is not resent to) */
    if (l->nq > 0) {
        /* the timeout doubles with each timeout in a row without progress (at most
         * SHIPPER_MAX_BACKOFF doublings): a peer slower than the timeout would otherwise
         * get the whole window again every timeout and spend its time on duplicates */
        long long since = l->q[0].sent_at > l->progress_at ? l->q[0].sent_at : l->progress_at;
        long long timeout = sh->a->cfg->agent.ack_timeout_ms << (l->timeouts < SHIPPER_MAX_BACKOFF ? l->timeouts : SHIPPER_MAX_BACKOFF);
        if (now - since > timeout) {
            shipper_go_back(p, l, "acknowledgement timed out");
            l->timeouts++;
            if (l->timeouts == 2 && !l->heard && sh->a->cfg->agent.wire_version >= 2) {
                /* connected (a peer that is down refuses the send) yet silent; once:
                 * timeouts is reset only by an ack, which sets heard */
                log_warn(p->peer->region, "table %s: no acknowledgement since this agent started: the peer's "
                         "replicator rejects or cannot apply its batches (see its log). One of a release before "
                         "wire protocol version 2 rejects them (its log says \"protocol version 2\"): then set "
                         "agent.wire_version to 1 until that region is upgraded", l->table);
            }
        }
    }
    if (p->paused || now < l->blocked_until || l->goback_at) return;
    while (l->dirty && l->nq < sh->window && l->q_bytes < AGENT_INFLIGHT_BYTES)
        if (shipper_send_one(sh, p, l, now) <= 0) return;
}

/* Metrics: what each link shipped and resent since the last call, windows, connections. */
static void shipper_publish(shipper *sh) {
    agent_ctx *a = sh->a;
    if (!a->m_shipped) return;
    for (size_t i = 0; i < sh->n_peers; i++) {
        peer_state *p = &sh->peers[i];
        const char *pv[] = {p->peer->region, NULL};
        metrics_set_with(a->m_connected, pv, p->connected_logged ? 1 : 0);
        for (size_t j = 0; j < a->cfg->n_tables; j++) {
            link_state *l = &p->links[j];
            const char *v[] = {p->peer->region, l->table, NULL};
            metrics_inc_with(a->m_shipped, v, (uint64_t)(l->m_shipped_total - l->m_shipped_pub));
            metrics_inc_with(a->m_resent, v, (uint64_t)(l->m_resent_total - l->m_resent_pub));
            metrics_set_with(a->m_inflight, v, l->nq);
            l->m_shipped_pub = l->m_shipped_total;
            l->m_resent_pub = l->m_resent_total;
            if (a->m_batches) {
                const char *vm[] = {p->peer->region, l->table, "memory", NULL};
                const char *vr[] = {p->peer->region, l->table, "redis", NULL};
                metrics_inc_with(a->m_batches, vm, (uint64_t)(l->m_from_memory - l->m_memory_pub));
                metrics_inc_with(a->m_batches, vr, (uint64_t)(l->m_from_redis - l->m_redis_pub));
                l->m_memory_pub = l->m_from_memory;
                l->m_redis_pub = l->m_from_redis;
            }
        }
    }
}

/* 1 when reply r of the housekeeping save is a real answer; else sets *failed. */
static int shipper_saved(shipper *sh, const redisReply *r, int *failed) {
    if (!state_reply_failed(sh->st, r)) return 1;
    *failed = 1;
    return 0;
}

/* Saves acks and counters, reads pause flags, trims logs, heartbeats. */
static void shipper_housekeep(shipper *sh) {
    const cfg_region *cfg = sh->a->cfg;
    char key[512], pos[48];
    redisReply *r;
    size_t queued = 0;
    int nconn = 0;

    /* one pipeline: every peer's pause flag first, then the acks and counters */
    for (size_t i = 0; i < sh->n_peers; i++) {
        state_key(sh->st, key, sizeof key, STATE_K_PAUSE, sh->peers[i].peer->region);
        state_append(sh->st, "EXISTS %s", key);
        queued++;
    }
    for (size_t i = 0; i < sh->n_peers; i++) {
        peer_state *p = &sh->peers[i];
        for (size_t j = 0; j < cfg->n_tables; j++) {
            link_state *l = &p->links[j];
            l->dirty = 1; /* also catches entries whose notification was missed */
            l->recheck = 1;
            state_key(sh->st, key, sizeof key, STATE_K_ACK, l->table);
            if (l->ack_dirty) {
                wire_pos_format(l->acked, pos, sizeof pos);
                state_append(sh->st, "HSET %s %s %s", key, p->peer->region, pos);
                queued++;
            }
            state_key(sh->st, key, sizeof key, STATE_K_ACNT, l->table);
            state_append(sh->st, "HINCRBY %s shipped:%s %lld", key, p->peer->region, l->shipped);
            state_append(sh->st, "HINCRBY %s resent:%s %lld", key, p->peer->region, l->resent);
            queued += 2;
        }
        nconn += p->connected_logged;
    }
    if (queued) {
        redisReply **rep = calloc(queued, sizeof *rep);
        if (!rep) {
            state_flush(sh->st, NULL, 0);
        } else if (state_flush(sh->st, rep, queued) != 0) {
            shipper_redis_warn(sh, NULL, "saving acknowledgements");
        } else {
            /* each reply on its own: an error reply (a key of the wrong type, Redis out
             * of memory) leaves that ack dirty, to be saved again, and that counter
             * unflushed, while what succeeded is done (counters not added twice) */
            int failed = 0;
            size_t k = 0;
            for (size_t i = 0; i < sh->n_peers; i++, k++) { /* a flag not read stays as it was */
                peer_state *p = &sh->peers[i];
                int was = p->paused;
                if (!state_reply_failed(sh->st, rep[k])) p->paused = state_reply_ll(rep[k], 0) > 0;
                if (p->paused != was) log_info(p->peer->region, "shipping %s", p->paused ? "paused" : "resumed");
            }
            for (size_t i = 0; i < sh->n_peers; i++)
                for (size_t j = 0; j < cfg->n_tables; j++) {
                    link_state *l = &sh->peers[i].links[j];
                    if (l->ack_dirty && shipper_saved(sh, rep[k++], &failed)) l->ack_dirty = 0;
                    if (shipper_saved(sh, rep[k++], &failed)) l->shipped = 0;
                    if (shipper_saved(sh, rep[k++], &failed)) l->resent = 0;
                }
            if (failed) shipper_redis_warn(sh, NULL, "saving acknowledgements and counters");
        }
        for (size_t i = 0; rep && i < queued; i++)
            if (rep[i]) freeReplyObject(rep[i]);
        free(rep);
    }
    /* trim each log below the lowest acknowledgement of every peer, saved or not: each is
     * a peer's answer for a watermark it saved, so what is trimmed is applied there (an
     * agent restarted with an older saved ack resends from it; the peer skips what it has);
     * peers in ack:T that are not configured and lose entries are flagged (lost:T) */
    for (size_t j = 0; j < cfg->n_tables && sh->n_peers > 0; j++) {
        wire_pos min = sh->peers[0].links[j].acked;
        const char *argv[7 + CFG_PEERS_MAX];
        char lkey[512], akey[512];
        int argc = 0;
        wire_pos live = {UINT64_MAX, UINT64_MAX}; /* the lowest of the peers that take batches */
        for (size_t i = 0; i < sh->n_peers; i++) {
            const peer_state *p = &sh->peers[i];
            if (wire_pos_cmp(p->links[j].acked, min) < 0) min = p->links[j].acked;
            if (p->connected_logged && !p->paused && wire_pos_cmp(p->links[j].acked, live) < 0)
                live = p->links[j].acked;
        }
        /* no link goes back below its acknowledgement; a peer that is down or paused reads
         * Redis when it is back (a cache held for it would stay at its cap) */
        logcache_trim(sh->caches[j], live);
        if (min.ms == 0 && min.seq == 0) continue;
        state_key(sh->st, key, sizeof key, STATE_K_LOG, cfg->tables[j]);
        state_key(sh->st, akey, sizeof akey, STATE_K_ACK, cfg->tables[j]);
        state_key(sh->st, lkey, sizeof lkey, STATE_K_LOST, cfg->tables[j]);
        wire_pos_format(min, pos, sizeof pos);
        argv[argc++] = "EVAL";
        argv[argc++] = SHIPPER_LUA_TRIM;
        argv[argc++] = "3";
        argv[argc++] = key;
        argv[argc++] = akey;
        argv[argc++] = lkey;
        argv[argc++] = pos;
        for (size_t i = 0; i < sh->n_peers && i < CFG_PEERS_MAX; i++) argv[argc++] = sh->peers[i].peer->region;
        r = state_cmdargv(sh->st, argc, argv, NULL);
        if (!r || state_reply_failed(sh->st, r)) shipper_redis_warn(sh, NULL, "trimming the change log");
        if (r) freeReplyObject(r);
    }
    {
        char status[256];
        if (atomic_load(&sh->a->tailer_ready))
            snprintf(status, sizeof status, "%d/%zu peers connected", nconn, sh->n_peers);
        else
            snprintf(status, sizeof status, "starting");
        pthread_mutex_lock(&sh->a->status_mu);
        memcpy(sh->a->status, status, sizeof status);
        pthread_mutex_unlock(&sh->a->status_mu);
        if (state_heartbeat(sh->st, "agent", status) != 0) shipper_redis_warn(sh, NULL, "heartbeat");
    }
    shipper_publish(sh);
}

static int shipper_load_acks(shipper *sh) {
    const cfg_region *cfg = sh->a->cfg;
    char key[512];
    for (size_t j = 0; j < cfg->n_tables; j++) {
        redisReply *r;
        state_key(sh->st, key, sizeof key, STATE_K_ACK, cfg->tables[j]);
        r = state_cmd(sh->st, "HGETALL %s", key);
        if (!r) {
            log_error(NULL, "reading acknowledgements: %s", state_errstr(sh->st));
            return -1;
        }
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
            peer_state *p = shipper_peer(sh, r->element[i]->str);
            wire_pos pos;
            if (!p || wire_pos_parse(r->element[i + 1]->str, &pos) != 0) continue;
            p->links[j].acked = p->links[j].sent = pos;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* At start (and so after each reload): a configured peer flagged in lost:T (the trim
 * removed entries it had not acknowledged while it was not configured here: a region
 * removed from peers and added back) cannot get those changes from the log. Said at error
 * and recorded once (agent_record_trimmed, "peer:<region>"; the flag is then removed);
 * shipping goes on from what is left. 0, or -1 when Redis cannot say (the start fails, as
 * when the acknowledgements cannot be read). */
static int shipper_check_lost(shipper *sh) {
    const cfg_region *cfg = sh->a->cfg;
    char key[512], where[LWW_REGION_MAX + 8], atxt[WIRE_POS_STRLEN];
    for (size_t j = 0; j < cfg->n_tables; j++) {
        redisReply *r, *d;
        state_key(sh->st, key, sizeof key, STATE_K_LOST, cfg->tables[j]);
        r = state_cmd(sh->st, "HGETALL %s", key);
        if (!r || state_reply_failed(sh->st, r)) {
            log_error(NULL, "reading %s: %s", key, state_errstr(sh->st));
            if (r) freeReplyObject(r);
            return -1;
        }
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
            peer_state *p = shipper_peer(sh, r->element[i]->str);
            if (!p) continue; /* still not configured */
            wire_pos_format(p->links[j].acked, atxt, sizeof atxt);
            log_error(p->peer->region, "table %s: the change log was trimmed up to %s while this peer was not "
                      "configured here, past its acknowledged position %s: those changes are NOT replicated to it; "
                      "copy them with ternctl backfill --from %s --to %s (docs/operations.md, section 14)",
                      cfg->tables[j], r->element[i + 1]->str, atxt, cfg->region, p->peer->region);
            snprintf(where, sizeof where, "peer:%s", p->peer->region);
            agent_record_trimmed(sh->a, sh->st, cfg->tables[j], where);
            d = state_cmd(sh->st, "HDEL %s %s", key, p->peer->region);
            if (d) freeReplyObject(d);
        }
        freeReplyObject(r);
    }
    return 0;
}

static int shipper_socket(shipper *sh, peer_state *p, char *err, size_t errlen) {
    const cfg_region *cfg = sh->a->cfg;
    int one = 1, zero = 0, hb_ivl = 1000, hb_ttl = 3000, hwm = 1000;
    char mon[128];
    p->sock = zmq_socket(sh->a->zctx, ZMQ_DEALER);
    if (!p->sock) goto fail;
    /* a new inproc name per start of the threads, as notify_ep's (agent.h) */
    snprintf(mon, sizeof mon, "%s-monitor-%zu", sh->a->notify_ep, (size_t)(p - sh->peers));
    if (zmq_socket_monitor(p->sock, mon, ZMQ_EVENT_DISCONNECTED) != 0) goto fail;
    p->mon = zmq_socket(sh->a->zctx, ZMQ_PAIR);
    if (!p->mon || zmq_setsockopt(p->mon, ZMQ_LINGER, &zero, sizeof zero) != 0 || zmq_connect(p->mon, mon) != 0)
        goto fail;
    if (zmq_setsockopt(p->sock, ZMQ_IMMEDIATE, &one, sizeof one) != 0 ||
        zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(p->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(p->sock, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl) != 0 ||
        zmq_setsockopt(p->sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_ttl, sizeof hb_ttl) != 0)
        goto fail;
    if (cfg->curve.enabled) {
        if (zmq_setsockopt(p->sock, ZMQ_CURVE_SERVERKEY, p->peer->public_key, 41) != 0 ||
            zmq_setsockopt(p->sock, ZMQ_CURVE_PUBLICKEY, cfg->curve.public_key, 41) != 0 ||
            zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, cfg->curve.secret_key, 41) != 0)
            goto fail;
    }
    if (zmq_connect(p->sock, p->peer->endpoint) != 0) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "peer %s socket (%s): %s", p->peer->region, p->peer->endpoint, zmq_strerror(errno));
    return -1;
}

static void shipper_cleanup(shipper *sh) {
    for (size_t i = 0; sh->peers && i < sh->n_peers; i++) {
        if (sh->peers[i].sock) {
            (void)zmq_socket_monitor(sh->peers[i].sock, NULL, 0); /* stops the monitor */
            zmq_close(sh->peers[i].sock);
        }
        if (sh->peers[i].mon) zmq_close(sh->peers[i].mon);
        for (size_t j = 0; sh->peers[i].links && j < sh->a->cfg->n_tables; j++) free(sh->peers[i].links[j].q);
        free(sh->peers[i].links);
    }
    free(sh->peers);
    for (size_t j = 0; sh->caches && j < sh->a->cfg->n_tables; j++) logcache_free(sh->caches[j]);
    free(sh->caches);
    if (sh->notify) zmq_close(sh->notify);
    state_free(sh->st);
}

static int shipper_outstanding(const shipper *sh) {
    for (size_t i = 0; i < sh->n_peers; i++)
        for (size_t j = 0; j < sh->a->cfg->n_tables; j++)
            if (sh->peers[i].links[j].nq > 0) return 1;
    return 0;
}

int shipper_run(agent_ctx *a) {
    const cfg_region *cfg = a->cfg;
    shipper sh;
    char err[512];
    zmq_pollitem_t *items = NULL;
    long long last_hk = 0, drain_deadline = 0;

    memset(&sh, 0, sizeof sh);
    sh.a = a;
    sh.window = cfg->agent.max_inflight_batches; /* 1..CFG_INFLIGHT_MAX (config/cfg.c) */
    if (!cfg->curve.enabled)
        log_warn(NULL, "CURVE is disabled by the config: links to peers are plain TCP, unencrypted and unauthenticated");
    sh.st = daemon_state_new(cfg, err, sizeof err);
    if (!sh.st) goto fail;
    state_set_beacon(sh.st, &a->shipper_beat); /* waiting on Redis is not a stall */
    sh.notify = zmq_socket(a->zctx, ZMQ_PAIR);
    if (!sh.notify || zmq_bind(sh.notify, a->notify_ep) != 0) {
        snprintf(err, sizeof err, "notify socket: %s", zmq_strerror(errno));
        goto fail;
    }
    sh.n_peers = cfg->n_peers;
    sh.peers = calloc(sh.n_peers ? sh.n_peers : 1, sizeof *sh.peers);
    sh.caches = calloc(cfg->n_tables ? cfg->n_tables : 1, sizeof *sh.caches);
    items = calloc(2 * sh.n_peers + 1, sizeof *items);
    if (!sh.peers || !sh.caches || !items) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    for (size_t j = 0; j < cfg->n_tables; j++)
        if (!(sh.caches[j] = logcache_new())) {
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
    for (size_t i = 0; i < sh.n_peers; i++) {
        peer_state *p = &sh.peers[i];
        p->peer = &cfg->peers[i];
        p->connected_logged = 1;
        p->links = calloc(cfg->n_tables, sizeof *p->links);
        if (!p->links) {
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        for (size_t j = 0; j < cfg->n_tables; j++) {
            p->links[j].table = cfg->tables[j];
            p->links[j].dirty = 1;
            p->links[j].q = calloc((size_t)sh.window, sizeof *p->links[j].q);
            if (!p->links[j].q) {
                snprintf(err, sizeof err, "out of memory");
                goto fail;
            }
        }
        if (shipper_socket(&sh, p, err, sizeof err) != 0) goto fail;
    }
    if (shipper_load_acks(&sh) != 0) {
        snprintf(err, sizeof err, "cannot load acknowledgements");
        goto fail;
    }
    if (shipper_check_lost(&sh) != 0) {
        snprintf(err, sizeof err, "cannot read which peers lost trimmed changes");
        goto fail;
    }
    shipper_housekeep(&sh); /* pause flags are known before anything is sent */
    atomic_store(&a->shipper_ready, 1);

    for (;;) {
        long long now = daemon_mono_ms();
        int rc;
        atomic_store(&a->shipper_beat, now);
        if (atomic_load(&a->failed)) break;
        if (atomic_load(&a->stop)) {
            if (!drain_deadline) drain_deadline = now + AGENT_DRAIN_MS;
            if (!shipper_outstanding(&sh) || now >= drain_deadline) break;
        }
        items[0].socket = sh.notify;
        items[0].events = ZMQ_POLLIN;
        for (size_t i = 0; i < sh.n_peers; i++) {
            items[i + 1].socket = sh.peers[i].sock;
            items[i + 1].events = ZMQ_POLLIN;
            items[sh.n_peers + i + 1].socket = sh.peers[i].mon;
            items[sh.n_peers + i + 1].events = ZMQ_POLLIN;
        }
        rc = zmq_poll(items, 2 * (int)sh.n_peers + 1, 20);
        if (rc < 0 && errno != EINTR) {
            log_error(NULL, "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            uint32_t idx;
            int n;
            while ((n = zmq_recv(sh.notify, &idx, sizeof idx, ZMQ_DONTWAIT)) >= 0) shipper_wake(&sh, idx, n);
        }
        /* after the wake-ups: a commit is queued before its wake-up is sent */
        logcache_queue_take(a->handoff, sh.caches);
        for (size_t i = 0; rc > 0 && i < sh.n_peers; i++) {
            if (items[i + 1].revents & ZMQ_POLLIN) shipper_recv(&sh, &sh.peers[i]);
            if (items[sh.n_peers + i + 1].revents & ZMQ_POLLIN) shipper_monitor(&sh, &sh.peers[i]);
        }
        now = daemon_mono_ms();
        for (size_t i = 0; i < sh.n_peers; i++)
            for (size_t j = 0; j < cfg->n_tables; j++) shipper_pump(&sh, &sh.peers[i], &sh.peers[i].links[j], now);
        if (now - last_hk >= AGENT_HOUSEKEEP_MS) {
            shipper_housekeep(&sh);
            last_hk = now;
        }
    }
    shipper_housekeep(&sh); /* save the last acknowledgements */
    free(items);
    shipper_cleanup(&sh);
    return 0;
fail:
    log_error(NULL, "shipper: %s", err);
    atomic_store(&a->failed, 1);
    free(items);
    shipper_cleanup(&sh);
    return -1;
}
