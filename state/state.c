/* state.c -- the Redis connection of one daemon thread (see state.h for the key layout).
 *
 * Owns: a hiredis context, copies of the connection options, the sticky error, the
 * count of pipelined commands not yet flushed, and the reconnect backoff.
 * Invariants: ctx is NULL or connected-and-authenticated; when a command fails on the
 * connection the context is dropped and the next command reconnects, no sooner than
 * the backoff (STATE_RECONNECT_MIN_MS doubling to STATE_RECONNECT_MAX_MS) allows.
 * A pipeline interrupted by a failure is discarded whole (state_flush returns -1).
 * Threading: one thread per handle; no globals. */
#include "state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct state {
    redisContext *ctx;
    char *region, *host, *unix_socket, *password;
    int port, db;
    long timeout_ms;
    char err[256];
    size_t queued;        /* commands appended since the last flush */
    int queue_broken;     /* an append failed: the next flush fails */
    long backoff_ms;
    long long next_try_ms;
    atomic_llong *beacon; /* see state_set_beacon; NULL: none */
};

static long long state_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void state_seterr(state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void state_seterr(state *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
}

static const char *state_addr(const state *st, char *buf, size_t len) {
    if (st->unix_socket && *st->unix_socket) snprintf(buf, len, "unix:%s", st->unix_socket);
    else snprintf(buf, len, "%s:%d", st->host, st->port);
    return buf;
}

static void state_drop(state *st) {
    if (st->ctx) redisFree(st->ctx);
    st->ctx = NULL;
}

/* Connects, AUTHs and SELECTs. 0 on success; -1 with st->err set. */
static int state_connect(state *st) {
    char addr[300];
    struct timeval tv = {st->timeout_ms / 1000, (st->timeout_ms % 1000) * 1000};
    redisReply *r;

    state_drop(st);
    if (st->unix_socket && *st->unix_socket) st->ctx = redisConnectUnixWithTimeout(st->unix_socket, tv);
    else st->ctx = redisConnectWithTimeout(st->host, st->port, tv);
    if (!st->ctx) {
        state_seterr(st, "redis %s: out of memory", state_addr(st, addr, sizeof addr));
        return -1;
    }
    if (st->ctx->err) {
        state_seterr(st, "redis %s: %s", state_addr(st, addr, sizeof addr), st->ctx->errstr);
        state_drop(st);
        return -1;
    }
    if (redisSetTimeout(st->ctx, tv) != REDIS_OK) {
        state_seterr(st, "redis %s: cannot set timeout", state_addr(st, addr, sizeof addr));
        state_drop(st);
        return -1;
    }
    if (st->password && *st->password) {
        r = redisCommand(st->ctx, "AUTH %s", st->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            state_seterr(st, "redis %s: AUTH failed: %s", state_addr(st, addr, sizeof addr),
                         r ? r->str : st->ctx->errstr);
            if (r) freeReplyObject(r);
            state_drop(st);
            return -1;
        }
        freeReplyObject(r);
    }
    if (st->db > 0) {
        r = redisCommand(st->ctx, "SELECT %d", st->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            state_seterr(st, "redis %s: SELECT %d failed: %s", state_addr(st, addr, sizeof addr),
                         st->db, r ? r->str : st->ctx->errstr);
            if (r) freeReplyObject(r);
            state_drop(st);
            return -1;
        }
        freeReplyObject(r);
    }
    st->backoff_ms = 0;
    return 0;
}

/* Makes sure a connection exists, honouring the reconnect backoff. 0/-1. */
static int state_ensure(state *st) {
    long long now;
    if (st->beacon) atomic_store(st->beacon, state_now_ms());
    if (st->ctx) return 0;
    now = state_now_ms();
    if (now < st->next_try_ms) return -1; /* keep the sticky error of the last failure */
    if (state_connect(st) == 0) return 0;
    st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : STATE_RECONNECT_MIN_MS;
    if (st->backoff_ms > STATE_RECONNECT_MAX_MS) st->backoff_ms = STATE_RECONNECT_MAX_MS;
    st->next_try_ms = now + st->backoff_ms;
    return -1;
}

static char *state_strdup_opt(const char *s, int *fail) {
    char *d;
    if (!s) return NULL;
    d = strdup(s);
    if (!d) *fail = 1;
    return d;
}

state *state_new(const state_opts *o, char *err, size_t errlen) {
    int fail = 0;
    state *st;
    if (!o || !o->region || !*o->region) {
        snprintf(err, errlen, "redis: no region given");
        return NULL;
    }
    st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "redis: out of memory");
        return NULL;
    }
    st->region = state_strdup_opt(o->region, &fail);
    st->host = state_strdup_opt(o->host ? o->host : "127.0.0.1", &fail);
    st->unix_socket = state_strdup_opt(o->unix_socket, &fail);
    st->password = state_strdup_opt(o->password, &fail);
    st->port = o->port > 0 ? o->port : 6379;
    st->db = o->db;
    st->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 2000;
    if (fail) {
        snprintf(err, errlen, "redis: out of memory");
        state_free(st);
        return NULL;
    }
    if (state_connect(st) != 0) {
        snprintf(err, errlen, "%s", st->err);
        state_free(st);
        return NULL;
    }
    return st;
}

void state_free(state *st) {
    if (!st) return;
    state_drop(st);
    free(st->region);
    free(st->host);
    free(st->unix_socket);
    if (st->password) {
        memset(st->password, 0, strlen(st->password));
        free(st->password);
    }
    free(st);
}

void state_set_beacon(state *st, atomic_llong *beacon) { st->beacon = beacon; }
long long state_beacon_gap_max_ms(long timeout_ms) { return 4LL * timeout_ms; }

const char *state_errstr(const state *st) { return st->err; }
const char *state_region(const state *st) { return st->region; }

int state_key(const state *st, char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(buf, len, "tern:%s:", st->region);
    int m;
    if (n < 0 || (size_t)n >= len) return -1;
    va_start(ap, fmt);
    m = vsnprintf(buf + n, len - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
    return 0;
}

int state_reply_failed(state *st, const redisReply *r) {
    char addr[300];
    if (r && r->type != REDIS_REPLY_ERROR) return 0;
    state_seterr(st, "redis %s: %s", state_addr(st, addr, sizeof addr), r && r->str ? r->str : "no reply");
    return 1;
}

/* Turns a NULL or error reply into NULL + sticky error; drops a broken connection. */
static redisReply *state_check(state *st, redisReply *r) {
    char addr[300];
    if (!r) {
        state_seterr(st, "redis %s: %s", state_addr(st, addr, sizeof addr),
                     st->ctx && st->ctx->err ? st->ctx->errstr : "no reply");
        state_drop(st);
        return NULL;
    }
    if (state_reply_failed(st, r)) {
        freeReplyObject(r);
        return NULL;
    }
    st->err[0] = '\0';
    return r;
}

static redisReply *state_vcmd(state *st, const char *fmt, va_list ap) {
    redisReply *r;
    va_list ap2;
    if (st->queued) {
        state_seterr(st, "redis: command issued with %zu pipelined commands unflushed", st->queued);
        return NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (state_ensure(st) != 0) return NULL;
        va_copy(ap2, ap);
        r = redisvCommand(st->ctx, fmt, ap2);
        va_end(ap2);
        if (r || !st->ctx || st->ctx->err == 0) return state_check(st, r);
        state_check(st, NULL); /* connection failed: drop it and try once more */
        st->next_try_ms = 0;
    }
    return NULL;
}

redisReply *state_cmd(state *st, const char *fmt, ...) {
    va_list ap;
    redisReply *r;
    va_start(ap, fmt);
    r = state_vcmd(st, fmt, ap);
    va_end(ap);
    return r;
}

redisReply *state_cmdargv(state *st, int argc, const char **argv, const size_t *argvlen) {
    redisReply *r;
    if (st->queued) {
        state_seterr(st, "redis: command issued with %zu pipelined commands unflushed", st->queued);
        return NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (state_ensure(st) != 0) return NULL;
        r = redisCommandArgv(st->ctx, argc, argv, argvlen);
        if (r || !st->ctx || st->ctx->err == 0) return state_check(st, r);
        state_check(st, NULL);
        st->next_try_ms = 0;
    }
    return NULL;
}

int state_append(state *st, const char *fmt, ...) {
    va_list ap;
    int rc;
    st->queued++;
    if (st->queue_broken || state_ensure(st) != 0) {
        st->queue_broken = 1;
        return -1;
    }
    va_start(ap, fmt);
    rc = redisvAppendCommand(st->ctx, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        state_seterr(st, "redis: cannot queue command (out of memory)");
        st->queue_broken = 1;
        return -1;
    }
    return 0;
}

int state_appendargv(state *st, int argc, const char **argv, const size_t *argvlen) {
    st->queued++;
    if (st->queue_broken || state_ensure(st) != 0) {
        st->queue_broken = 1;
        return -1;
    }
    if (redisAppendCommandArgv(st->ctx, argc, argv, argvlen) != REDIS_OK) {
        state_seterr(st, "redis: cannot queue command (out of memory)");
        st->queue_broken = 1;
        return -1;
    }
    return 0;
}

int state_flush(state *st, redisReply **replies, size_t n) {
    char addr[300];
    size_t got = 0;
    int ok = 1;

    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (st->beacon) atomic_store(st->beacon, state_now_ms());
    if (n != st->queued) {
        state_seterr(st, "redis: flush of %zu replies but %zu commands queued", n, st->queued);
        ok = 0;
    }
    if (st->queue_broken || !st->ctx) ok = 0;
    for (; ok && got < st->queued; got++) {
        void *r = NULL;
        if (redisGetReply(st->ctx, &r) != REDIS_OK || !r) {
            state_seterr(st, "redis %s: %s", state_addr(st, addr, sizeof addr),
                         st->ctx->err ? st->ctx->errstr : "no reply");
            ok = 0;
            break;
        }
        if (got < n) replies[got] = r;
        else freeReplyObject(r);
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++) {
            if (replies[i]) freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        state_drop(st); /* unread replies would be misattributed: start afresh */
    } else {
        st->err[0] = '\0';
    }
    st->queued = 0;
    st->queue_broken = 0;
    return ok ? 0 : -1;
}

size_t state_pending(const state *st) { return st->queued; }

int state_flush_ok(state *st, redisReply **replies, size_t n) {
    size_t bad = n;
    if (state_flush(st, replies, n) != 0) return -1;
    for (size_t i = 0; i < n && bad == n; i++)
        if (state_reply_failed(st, replies[i])) bad = i;
    if (bad == n) return 0;
    for (size_t i = 0; i < n; i++) {
        freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    return -1;
}

long long state_reply_ll(const redisReply *r, long long dflt) {
    char *end;
    long long v;
    if (!r) return dflt;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) return dflt;
    errno = 0;
    v = strtoll(r->str, &end, 10);
    if (errno || end == r->str || *end) return dflt;
    return v;
}

int state_heartbeat(state *st, const char *who, const char *status) {
    char key[256], val[512];
    struct timespec ts;
    redisReply *r;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (state_key(st, key, sizeof key, STATE_K_HB, who) != 0) return -1;
    snprintf(val, sizeof val, "%lld %ld %s", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
             (long)getpid(), status ? status : "");
    r = state_cmd(st, "SET %s %s EX %d", key, val, STATE_HEARTBEAT_TTL_S);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

/* CONFIG GET name's value into val (val_len bytes); 0, or -1 with the reason in msg. */
static int state_config_get(state *st, const char *name, char *val, size_t val_len, char *msg, size_t len) {
    redisReply *r = state_cmd(st, "CONFIG GET %s", name);
    if (!r) {
        snprintf(msg, len, "CONFIG GET %s: %s", name, state_errstr(st));
        return -1;
    }
    /* RESP2: [name, value]; RESP3 would be a map, which this client does not ask for */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(msg, len, "CONFIG GET %s: unexpected reply (no such setting?)", name);
        freeReplyObject(r);
        return -1;
    }
    snprintf(val, val_len, "%s", r->element[1]->str);
    freeReplyObject(r);
    return 0;
}

/* Appends "; " (unless first) and the formatted text to msg (len bytes), at *n; truncates. */
static void state_msg_add(char *msg, size_t len, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void state_msg_add(char *msg, size_t len, size_t *n, const char *fmt, ...) {
    va_list ap;
    int w;
    if (*n >= len) return;
    if (*n && (w = snprintf(msg + *n, len - *n, "; ")) > 0) *n += (size_t)w;
    if (*n >= len) return;
    va_start(ap, fmt);
    w = vsnprintf(msg + *n, len - *n, fmt, ap);
    va_end(ap);
    if (w > 0) *n += (size_t)w;
}

int state_check_durability(state *st, char *msg, size_t len) {
    char aof[16], fsync[16], policy[32], maxmem[32];
    size_t n = 0;
    if (len == 0) return -1;
    msg[0] = '\0';
    if (state_config_get(st, "appendonly", aof, sizeof aof, msg, len) != 0 ||
        state_config_get(st, "appendfsync", fsync, sizeof fsync, msg, len) != 0 ||
        state_config_get(st, "maxmemory-policy", policy, sizeof policy, msg, len) != 0 ||
        state_config_get(st, "maxmemory", maxmem, sizeof maxmem, msg, len) != 0)
        return -1;
    if (strcmp(aof, "yes") != 0)
        state_msg_add(msg, len, &n, "appendonly is %s: a Redis restart loses the change log, checkpoints, "
                      "watermarks and echo tokens (set appendonly yes)", aof);
    else if (strcmp(fsync, "always") != 0)
        state_msg_add(msg, len, &n, "appendfsync is %s: a crash of the host loses up to a second of that "
                      "state (set appendfsync always)", fsync);
    if (strcmp(maxmem, "0") != 0 && strcmp(policy, "noeviction") != 0)
        state_msg_add(msg, len, &n, "maxmemory-policy is %s with maxmemory %s: Redis may evict tombstones, "
                      "echo tokens and versions, and then a late older put can undo a delete and an echo be "
                      "shipped (set maxmemory-policy noeviction)", policy, maxmem);
    return n > 0 ? 1 : 0;
}
