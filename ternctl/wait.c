/* wait.c -- ternctl wait-caught-up --from R1 --to R2 (definition: docs/lag.md).
 *
 * At the call (T0), per table:
 *   1. the stream head: for every shard of R1's table stream not marked read to its end
 *      in R1's ckpt:T, read the records after the agent's checkpoint (GetRecords,
 *      following NextShardIterator until a call returns no records or the shard ends)
 *      and keep their sequence numbers; the last one is the shard's head at T0;
 *   2. state "stream": wait until R1's ckpt:T[shard] >= head for every shard (sequence
 *      numbers compared as decimal strings, ctl_seq_cmp) -- the agent has read, versioned
 *      and appended to log:T everything the stream held at T0;
 *   3. then take the last entry id of R1's log:T (the target; an empty log means
 *      nothing is pending) and, state "log", wait until R2's wm:R1:T pos >= target.
 * The stream is read only at T0 (never again), Redis is polled every CTL_WAIT_POLL_MS.
 * Redis errors while waiting are retried until the timeout (a restart does not end the
 * wait); errors before the wait starts exit 2.
 * Threading: main thread. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "daemon.h"
#include "ternctl.h"
#include "wire.h"

#define CTL_WAIT_POLL_MS 100
#define CTL_WAIT_MAX_PAGES 200        /* GetRecords calls per shard at T0 (x1000 records) */

typedef struct {
    char *id;
    char **seqs;          /* sequence numbers after the checkpoint at T0 (owned) */
    size_t n_seqs;
    int done;             /* the agent's checkpoint covers the head */
} wshard;

typedef enum {
    WT_STREAM,            /* waiting for R1's agent to read the stream up to the head */
    WT_LOG,               /* waiting for R2 to apply R1's log up to the target */
    WT_DONE               /* caught up */
} wt_state;

typedef struct {
    const char *table;
    char arn[1024];
    wshard *shards;
    size_t n_shards;
    size_t records_at_call;
    char log_at_call[WIRE_POS_STRLEN];   /* "" when the log was empty */
    char target[WIRE_POS_STRLEN];        /* set when entering WT_LOG; "" = empty log */
    wt_state st;
    long long done_ms;                   /* elapsed when it became WT_DONE */
} wtable;

static void ctl_wtable_free(wtable *t) {
    for (size_t i = 0; i < t->n_shards; i++) {
        free(t->shards[i].id);
        ctl_list_free(t->shards[i].seqs, t->shards[i].n_seqs);
    }
    free(t->shards);
}

/* Reads the records after `after` (NULL: TRIM_HORIZON) of one shard. 0/-1 (printed). */
static int ctl_read_head(ctl_ctx *c, int r1, wtable *t, wshard *sh, const char *after) {
    store *s = ctl_streams(c, r1);
    char *iter = NULL;
    store_status ss;
    if (!s) return -1;
    ss = store_get_shard_iterator(s, t->arn, sh->id, after ? STORE_ITER_AFTER_SEQUENCE : STORE_ITER_TRIM_HORIZON,
                                  after, &iter);
    if (ss == STORE_ERR_TRIMMED && after) /* checkpoint past retention: the agent restarts there too */
        ss = store_get_shard_iterator(s, t->arn, sh->id, STORE_ITER_TRIM_HORIZON, NULL, &iter);
    if (ss != STORE_OK) {
        ctl_store_fail(c, r1, "GetShardIterator", ss);
        return -1;
    }
    for (int page = 0; iter && page < CTL_WAIT_MAX_PAGES; page++) {
        cJSON *recs = NULL, *rec;
        char *next = NULL;
        int n;
        ss = store_get_records(s, iter, 1000, &recs, &next);
        free(iter);
        iter = NULL;
        if (ss != STORE_OK) {
            cJSON_Delete(recs);
            free(next);
            ctl_store_fail(c, r1, "GetRecords", ss);
            return -1;
        }
        n = cJSON_GetArraySize(recs);
        cJSON_ArrayForEach(rec, recs) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "dynamodb");
            const cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "SequenceNumber");
            char **ns, *dup;
            if (!cJSON_IsString(seq) || !ctl_seq_valid(seq->valuestring)) continue;
            ns = realloc(sh->seqs, (sh->n_seqs + 1) * sizeof *ns);
            dup = strdup(seq->valuestring);
            if (!ns || !dup) {
                if (ns) sh->seqs = ns;
                free(dup);
                free(next);
                cJSON_Delete(recs);
                ctl_err("out of memory");
                return -1;
            }
            sh->seqs = ns;
            sh->seqs[sh->n_seqs++] = dup;
        }
        cJSON_Delete(recs);
        if (n == 0) {
            free(next);
            break;
        }
        iter = next;
    }
    free(iter);
    return 0;
}

/* Checkpoint of a shard from an HGETALL ckpt:T reply: *end = 1 for "END <seq>". */
static const char *ctl_ckpt(const redisReply *h, const char *shard, int *end) {
    const char *v = ctl_hfield(h, shard);
    *end = 0;
    if (v && strncmp(v, "END ", 4) == 0) {
        *end = 1;
        return v + 4;
    }
    return v;
}

/* Stream records read at T0 that the checkpoint does not cover yet. */
static size_t ctl_unread(const wshard *sh, const redisReply *ck) {
    int end;
    const char *v = ctl_ckpt(ck, sh->id, &end);
    size_t n = 0;
    if (end) return 0;
    for (size_t i = 0; i < sh->n_seqs; i++)
        if (!v || !ctl_seq_valid(v) || ctl_seq_cmp(sh->seqs[i], v) > 0) n++;
    return n;
}

static int ctl_wait_setup(ctl_ctx *c, int r1, wtable *t) {
    store *s = ctl_store(c, r1);
    state *st = ctl_state(c, r1);
    store_table_info ti;
    store_status ss;
    cJSON *desc = NULL;
    const cJSON *shards, *sh;
    redisReply *ck = NULL, *r;
    char key[512];
    int rc = -1;

    if (!s || !st) return -1;
    ss = store_describe_table(s, t->table, &ti);
    if (ss != STORE_OK) {
        ctl_store_fail(c, r1, "DescribeTable", ss);
        return -1;
    }
    if (!ti.stream_enabled || !*ti.latest_stream_arn) {
        ctl_err("region %s: table %s has no stream enabled: nothing can be replicated from it",
                c->cfgs[r1]->region, t->table);
        return -1;
    }
    snprintf(t->arn, sizeof t->arn, "%s", ti.latest_stream_arn);
    if (!ctl_streams(c, r1)) return -1;
    ss = store_describe_stream(c->streams[r1], t->arn, &desc);
    if (ss != STORE_OK) {
        ctl_store_fail(c, r1, "DescribeStream", ss);
        return -1;
    }
    state_key(st, key, sizeof key, STATE_K_CKPT, t->table);
    if (ctl_hgetall(c, r1, key, &ck) != 0) goto out;
    shards = cJSON_GetObjectItemCaseSensitive(desc, "Shards");
    t->shards = calloc((size_t)cJSON_GetArraySize(shards) + 1, sizeof *t->shards);
    if (!t->shards) {
        ctl_err("out of memory");
        goto out;
    }
    cJSON_ArrayForEach(sh, shards) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(sh, "ShardId");
        wshard *w;
        int end;
        const char *v;
        if (!cJSON_IsString(id)) continue;
        w = &t->shards[t->n_shards];
        w->id = strdup(id->valuestring);
        if (!w->id) {
            ctl_err("out of memory");
            goto out;
        }
        t->n_shards++;
        v = ctl_ckpt(ck, w->id, &end);
        if (end) {
            w->done = 1;
            continue;
        }
        if (ctl_read_head(c, r1, t, w, v && ctl_seq_valid(v) ? v : NULL) != 0) goto out;
        if (w->n_seqs == 0) w->done = 1;
        t->records_at_call += w->n_seqs;
    }
    state_key(st, key, sizeof key, STATE_K_LOG, t->table);
    r = state_cmd(st, "XREVRANGE %s + - COUNT 1", key);
    if (!r) {
        ctl_redis_fail(c, r1, "XREVRANGE");
        goto out;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements >= 1 && r->element[0]->element[0]->type == REDIS_REPLY_STRING)
        snprintf(t->log_at_call, sizeof t->log_at_call, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
    rc = 0;
out:
    if (ck) freeReplyObject(ck);
    cJSON_Delete(desc);
    return rc;
}

/* Last entry id of R1's log:T into buf ("" if empty). 0/-1 (error text in err). */
static int ctl_log_last(ctl_ctx *c, int r1, const char *table, char *buf, size_t len, char *err, size_t errlen) {
    char key[512];
    redisReply *r;
    state_key(c->st[r1], key, sizeof key, STATE_K_LOG, table);
    r = state_cmd(c->st[r1], "XREVRANGE %s + - COUNT 1", key);
    if (!r) {
        snprintf(err, errlen, "region %s: %s", c->cfgs[r1]->region, state_errstr(c->st[r1]));
        return -1;
    }
    buf[0] = '\0';
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements >= 1 && r->element[0]->element[0]->type == REDIS_REPLY_STRING)
        snprintf(buf, len, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
    return 0;
}

/* R2's watermark for R1's table: 1 = set in *pos (text in buf), 0 = none, -1 = error. */
static int ctl_wm(ctl_ctx *c, int r2, const char *src, const char *table, wire_pos *pos, char *buf, size_t len,
                  char *err, size_t errlen) {
    char key[512];
    redisReply *r;
    int rc = 0;
    state_key(c->st[r2], key, sizeof key, STATE_K_WM, src, table);
    r = state_cmd(c->st[r2], "HGET %s pos", key);
    if (!r) {
        snprintf(err, errlen, "region %s: %s", c->cfgs[r2]->region, state_errstr(c->st[r2]));
        return -1;
    }
    buf[0] = '\0';
    if (r->type == REDIS_REPLY_STRING && wire_pos_parse(r->str, pos) == 0) {
        snprintf(buf, len, "%s", r->str);
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* One poll step of a table. 0, or -1 with err (a Redis error: retried). */
static int ctl_wait_step(ctl_ctx *c, int r1, int r2, wtable *t, long long elapsed, char *err, size_t errlen) {
    char key[512], wmtext[WIRE_POS_STRLEN];
    if (t->st == WT_STREAM) {
        redisReply *ck;
        int all = 1;
        state_key(c->st[r1], key, sizeof key, STATE_K_CKPT, t->table);
        ck = state_cmd(c->st[r1], "HGETALL %s", key);
        if (!ck) {
            snprintf(err, errlen, "region %s: %s", c->cfgs[r1]->region, state_errstr(c->st[r1]));
            return -1;
        }
        for (size_t i = 0; i < t->n_shards; i++) {
            wshard *w = &t->shards[i];
            if (!w->done && ctl_unread(w, ck) == 0) w->done = 1;
            if (!w->done) all = 0;
        }
        /* the agent still reads an older stream of the table (disabled and replaced): its
         * unread records are in there, and the latest stream's heads say nothing of them */
        {
            const char *at = ctl_hfield(ck, STATE_CKPT_STREAM);
            if (at && strcmp(at, t->arn) != 0) all = 0;
        }
        freeReplyObject(ck);
        if (!all) return 0;
        if (ctl_log_last(c, r1, t->table, t->target, sizeof t->target, err, errlen) != 0) return -1;
        t->st = WT_LOG;
    }
    if (t->st == WT_LOG) {
        wire_pos target, wm;
        int h;
        if (!*t->target || wire_pos_parse(t->target, &target) != 0) {
            t->st = WT_DONE; /* empty log: nothing pending */
            t->done_ms = elapsed;
            return 0;
        }
        h = ctl_wm(c, r2, c->cfgs[r1]->region, t->table, &wm, wmtext, sizeof wmtext, err, errlen);
        if (h < 0) return -1;
        if (h == 1 && wire_pos_cmp(wm, target) >= 0) {
            t->st = WT_DONE;
            t->done_ms = elapsed;
        }
    }
    return 0;
}

/* Entries of R1's log in (wm, upto]: *n (capped at CTL_PENDING_CAP). 0/-1. */
static int ctl_log_between(ctl_ctx *c, int r1, const char *table, const char *wm, const char *upto, long long *n,
                           int *capped) {
    char key[512], start[WIRE_POS_STRLEN + 2];
    redisReply *r;
    *n = 0;
    *capped = 0;
    if (!*upto) return 0;
    state_key(c->st[r1], key, sizeof key, STATE_K_LOG, table);
    if (*wm) snprintf(start, sizeof start, "(%s", wm);
    else snprintf(start, sizeof start, "-");
    r = state_cmd(c->st[r1], "XRANGE %s %s %s COUNT %d", key, start, upto, CTL_PENDING_CAP);
    if (!r) return -1;
    if (r->type == REDIS_REPLY_ARRAY) *n = (long long)r->elements;
    *capped = *n >= CTL_PENDING_CAP;
    freeReplyObject(r);
    return 0;
}

/* Prints (or puts in JSON) what is still pending. */
static void ctl_wait_report(ctl_ctx *c, int r1, int r2, wtable *ts, size_t nt, long long elapsed,
                            const char *last_err) {
    cJSON *doc = NULL, *arr = NULL;
    char key[512], *hb_a = NULL, *hb_r = NULL, el[32];
    int paused = -1;
    redisReply *r;
    ctl_fmt_ms(elapsed, el, sizeof el);
    if (c->json) {
        doc = cJSON_CreateObject();
        if (doc) {
            cJSON_AddBoolToObject(doc, "caught_up", 0);
            cJSON_AddStringToObject(doc, "from", c->cfgs[r1]->region);
            cJSON_AddStringToObject(doc, "to", c->cfgs[r2]->region);
            cJSON_AddNumberToObject(doc, "elapsed_ms", (double)elapsed);
            arr = cJSON_AddArrayToObject(doc, "tables");
        }
    } else {
        printf("NOT caught up after %s: %s -> %s; still pending:\n", el, c->cfgs[r1]->region, c->cfgs[r2]->region);
    }
    for (size_t k = 0; k < nt; k++) {
        wtable *t = &ts[k];
        size_t unread = 0;
        long long unapplied = 0;
        int capped = 0, known = 1;
        char upto[WIRE_POS_STRLEN], wmtext[WIRE_POS_STRLEN] = "", err[512];
        wire_pos wm;
        if (t->st == WT_STREAM) {
            state_key(c->st[r1], key, sizeof key, STATE_K_CKPT, t->table);
            r = state_cmd(c->st[r1], "HGETALL %s", key);
            if (r) {
                for (size_t i = 0; i < t->n_shards; i++)
                    if (!t->shards[i].done) unread += ctl_unread(&t->shards[i], r);
                freeReplyObject(r);
            } else {
                known = 0;
            }
        }
        if (t->st == WT_LOG) snprintf(upto, sizeof upto, "%s", t->target);
        else if (t->st == WT_STREAM && ctl_log_last(c, r1, t->table, upto, sizeof upto, err, sizeof err) != 0) known = 0;
        if (t->st != WT_DONE && known) {
            if (ctl_wm(c, r2, c->cfgs[r1]->region, t->table, &wm, wmtext, sizeof wmtext, err, sizeof err) < 0 ||
                ctl_log_between(c, r1, t->table, wmtext, upto, &unapplied, &capped) != 0)
                known = 0;
        }
        if (c->json) {
            cJSON *o = cJSON_CreateObject();
            if (!o) continue;
            cJSON_AddStringToObject(o, "table", t->table);
            cJSON_AddBoolToObject(o, "caught_up", t->st == WT_DONE);
            cJSON_AddStringToObject(o, "state", t->st == WT_DONE ? "done" : t->st == WT_LOG ? "log" : "stream");
            if (known) {
                cJSON_AddNumberToObject(o, "stream_records_unread", (double)unread);
                cJSON_AddNumberToObject(o, "log_entries_unapplied", (double)unapplied);
                cJSON_AddBoolToObject(o, "log_entries_capped", capped);
            } else {
                cJSON_AddNullToObject(o, "stream_records_unread");
                cJSON_AddNullToObject(o, "log_entries_unapplied");
            }
            if (*wmtext) cJSON_AddStringToObject(o, "watermark", wmtext);
            else cJSON_AddNullToObject(o, "watermark");
            cJSON_AddItemToArray(arr, o);
        } else if (t->st == WT_DONE) {
            printf("  table %s: caught up\n", t->table);
        } else if (!known) {
            printf("  table %s: waiting for the %s; cannot count what is left (Redis unreachable)\n", t->table,
                   t->st == WT_STREAM ? "agent to read the stream" : "destination to apply the log");
        } else {
            printf("  table %s: %zu stream record(s) not yet read by %s's agent; %s%lld log entr%s not yet "
                   "applied by %s (applied up to %s)\n",
                   t->table, unread, c->cfgs[r1]->region, capped ? "≥" : "", unapplied, unapplied == 1 ? "y" : "ies",
                   c->cfgs[r2]->region, *wmtext ? wmtext : "nothing");
        }
    }
    /* hints: is anything down or paused? */
    state_key(c->st[r1], key, sizeof key, STATE_K_HB, "agent");
    if ((r = state_cmd(c->st[r1], "GET %s", key))) {
        hb_a = r->type == REDIS_REPLY_STRING ? strdup("up") : strdup("DOWN");
        freeReplyObject(r);
    }
    state_key(c->st[r2], key, sizeof key, STATE_K_HB, "replicator");
    if ((r = state_cmd(c->st[r2], "GET %s", key))) {
        hb_r = r->type == REDIS_REPLY_STRING ? strdup("up") : strdup("DOWN");
        freeReplyObject(r);
    }
    state_key(c->st[r1], key, sizeof key, STATE_K_PAUSE, c->cfgs[r2]->region);
    if ((r = state_cmd(c->st[r1], "EXISTS %s", key))) {
        paused = state_reply_ll(r, 0) > 0;
        freeReplyObject(r);
    }
    if (c->json) {
        if (hb_a) cJSON_AddBoolToObject(doc, "agent_alive", strcmp(hb_a, "up") == 0);
        if (hb_r) cJSON_AddBoolToObject(doc, "replicator_alive", strcmp(hb_r, "up") == 0);
        if (paused >= 0) cJSON_AddBoolToObject(doc, "paused", paused);
        if (*last_err) cJSON_AddStringToObject(doc, "last_error", last_err);
        ctl_json_print(doc);
    } else {
        printf("  %s agent: %s; %s replicator: %s; link %s\n", c->cfgs[r1]->region, hb_a ? hb_a : "unknown",
               c->cfgs[r2]->region, hb_r ? hb_r : "unknown",
               paused < 0 ? "state unknown" : paused ? "PAUSED (ternctl resume)" : "not paused");
        if (*last_err) printf("  last error: %s\n", last_err);
    }
    free(hb_a);
    free(hb_r);
}

int ctl_cmd_wait(ctl_ctx *c, int argc, char **argv) {
    const char *from = NULL, *to = NULL, *table = NULL;
    double timeout_s = 60;
    int r1, r2, rc = CTL_EXIT_ERROR;
    wtable *ts = NULL;
    size_t nt = 0;
    long long t0, elapsed = 0;
    char last_err[512] = "";

    for (int i = 1; i < argc; i++) {
        if (ctl_link_opt(argc, argv, &i, &from, &to, &table)) continue;
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (ctl_parse_seconds(argv[++i], &timeout_s) != 0) {
                ctl_err("wait-caught-up: --timeout must be a positive number of seconds, got '%s'", argv[i]);
                return CTL_EXIT_ERROR;
            }
        } else {
            ctl_err("wait-caught-up: unexpected argument '%s' (usage: ternctl wait-caught-up --from R1 --to R2 "
                    "[--timeout S] [--table T])", argv[i]);
            return CTL_EXIT_ERROR;
        }
    }
    if (ctl_find_link(c, "wait-caught-up", from, to, table, &r1, &r2) != 0) return CTL_EXIT_ERROR;
    if (!ctl_state(c, r1) || !ctl_state(c, r2)) return CTL_EXIT_ERROR;
    ts = calloc(c->cfgs[r1]->n_tables, sizeof *ts);
    if (!ts) {
        ctl_err("out of memory");
        return CTL_EXIT_ERROR;
    }
    t0 = daemon_mono_ms();
    for (size_t i = 0; i < c->cfgs[r1]->n_tables; i++) {
        const char *tn = c->cfgs[r1]->tables[i];
        if ((table && strcmp(tn, table) != 0) || !ctl_has_table(c->cfgs[r2], tn)) continue;
        ts[nt].table = tn;
        nt++;
        if (ctl_wait_setup(c, r1, &ts[nt - 1]) != 0) goto out;
    }
    if (nt == 0) {
        ctl_err("wait-caught-up: %s and %s replicate no table in common", from, to);
        goto out;
    }
    for (;;) {
        int all = 1;
        elapsed = daemon_mono_ms() - t0;
        for (size_t k = 0; k < nt; k++) {
            char err[512];
            if (ts[k].st != WT_DONE && ctl_wait_step(c, r1, r2, &ts[k], elapsed, err, sizeof err) != 0)
                snprintf(last_err, sizeof last_err, "%s", err);
            if (ts[k].st != WT_DONE) all = 0;
        }
        if (all) break;
        if (elapsed >= (long long)(timeout_s * 1000)) {
            ctl_wait_report(c, r1, r2, ts, nt, elapsed, last_err);
            rc = CTL_EXIT_NEGATIVE;
            goto out;
        }
        daemon_sleep_ms(CTL_WAIT_POLL_MS);
    }
    elapsed = daemon_mono_ms() - t0;
    if (c->json) {
        cJSON *doc = cJSON_CreateObject(), *arr;
        if (!doc) goto out;
        cJSON_AddBoolToObject(doc, "caught_up", 1);
        cJSON_AddStringToObject(doc, "from", from);
        cJSON_AddStringToObject(doc, "to", to);
        cJSON_AddNumberToObject(doc, "elapsed_ms", (double)elapsed);
        arr = cJSON_AddArrayToObject(doc, "tables");
        for (size_t k = 0; arr && k < nt; k++) {
            cJSON *o = cJSON_CreateObject();
            if (!o) continue;
            cJSON_AddStringToObject(o, "table", ts[k].table);
            cJSON_AddNumberToObject(o, "stream_records_at_call", (double)ts[k].records_at_call);
            if (*ts[k].log_at_call) cJSON_AddStringToObject(o, "log_last_at_call", ts[k].log_at_call);
            else cJSON_AddNullToObject(o, "log_last_at_call");
            if (*ts[k].target) cJSON_AddStringToObject(o, "log_target", ts[k].target);
            else cJSON_AddNullToObject(o, "log_target");
            cJSON_AddNumberToObject(o, "elapsed_ms", (double)ts[k].done_ms);
            cJSON_AddItemToArray(arr, o);
        }
        if (ctl_json_print(doc) != 0) goto out;
    } else {
        char el[32];
        ctl_fmt_ms(elapsed, el, sizeof el);
        printf("caught up: %s -> %s, %zu table(s), in %s (%lld ms)\n", from, to, nt, el, elapsed);
        for (size_t k = 0; k < nt; k++)
            printf("  table %s: %zu stream record(s) unread at the call; applied through log entry %s\n",
                   ts[k].table, ts[k].records_at_call, *ts[k].target ? ts[k].target : "(log empty)");
    }
    rc = CTL_EXIT_OK;
out:
    for (size_t k = 0; k < nt; k++) ctl_wtable_free(&ts[k]);
    free(ts);
    return rc;
}
