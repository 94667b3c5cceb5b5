/* tailer.c -- the stream-reading half of tern-region-agent (see agent.h).
 *
 * Owns: per table, the stream ARN and the shard list with each shard's iterator, last
 * appended sequence number and poll schedule, and its repair notes; the region's hybrid logical clock; a
 * store handle and a Redis handle (this thread's own).
 *
 * Per GetRecords batch of one shard:
 *   1. one Redis round trip reads, for every key in the batch, its last local version
 *      (ll), its tombstone (tomb) and its pending echo tokens (pend);
 *   2. each record is classified in stream order, with an in-memory overlay of those
 *      values so that several records of one key in one batch see each other:
 *      - echo: the record carries a pending token (put: its tern:wid; delete: a "D"
 *        or "T" token naming a version above the removed item's) not yet consumed. It
 *        is not shipped. If the state it overwrote had a higher logical version
 *        (max(stored tern:ver, ll, lt); max(ll, lt) for no item), a Tern write clobbered
 *        a local write we had not read yet: repair it (write the local put of that
 *        version back, its image as shipped, li:T:KID; or the local delete), only over
 *        what the echo left (apply_change.over), unless the key was written again later
 *        in the page (the repair could not apply; that write decides), or a repair put
 *        this agent made since, whose echo is still to come, already wrote that version
 *        (repair notes). A
 *        REMOVE whose matching token is tentative ("T": its DeleteItem has not
 *        answered) is not classified yet: the batch is committed up to it, and the rest
 *        of the page kept and classified again until the token is settled (tailer_hold).
 *        A delete token is never matched with a record created after its DeleteItem can
 *        have been made; it is spent as stale instead (AGENT_TOKEN_CLOCK_MARGIN_MS);
 *      - local: versioned by the clock after observing the overwritten state's version,
 *        so a change made on top of a replicated item wins over it (guarantee 3);
 *   3. one MULTI/EXEC appends the local changes to log:T, stores ll/li/tomb, consumes the
 *      tokens, moves the shard checkpoint and saves the clock. Nothing of a batch is
 *      committed unless all of it is, so after a crash the batch is read again and
 *      classified the same way (tokens are only consumed by the commit). A commit
 *      whose reply was lost may have happened: the shard's checkpoint is re-read from
 *      Redis before the shard is read again, so a batch is never versioned twice.
 * Streams: the stream read is saved in ckpt:T (field "stream"). When the table's stream is
 * disabled and a new one enabled (DescribeTable, every AGENT_DESCRIBE_MS), the old one is
 * read to its end first, then ckpt:T is replaced by the next stream's (ListStreams, by
 * StreamLabel), read from TRIM_HORIZON: a key's changes are versioned in the order they
 * were made. A stream without both images is skipped, loudly.
 * Shard lineage: a shard is read only after its parent was read to its end (or the
 * parent is no longer in the stream). An expired iterator is re-acquired after the
 * checkpoint; TrimmedDataAccessException raises an alarm (log, counter, Redis list) and
 * continues from TRIM_HORIZON: changes may have been lost.
 * Hand-off: each commit's local changes also go to the shipper in memory, with the ids
 * the EXEC returned and the log's last entry before them read in the same transaction
 * (tailer_hand_over, logcache.h); a commit that failed or whose outcome is unknown is
 * counted there without them.
 * Threading: runs on its own thread; talks to the shipper only through the notify
 * socket, the hand-off queue (agent_ctx.handoff, its own lock) and the shared atomics in
 * agent_ctx. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "agent.h"
#include "apply.h"
#include "daemon.h"
#include "item.h"
#include "log.h"
#include "lww.h"
#include "state.h"
#include "store.h"

typedef struct {
    char id[128];
    char parent[128];
    char *iter;            /* current shard iterator (owned) or NULL: acquire one */
    char last_seq[64];     /* last sequence number committed to the log ("" none) */
    int done;              /* read to its end */
    int ckpt_unsure;       /* a commit failed: it may have happened all the same (the
                              reply was lost); reload last_seq from Redis before reading */
    int seen;              /* present in the latest complete DescribeStream (all its pages) */
    int listed;            /* present in the pages of the DescribeStream under way */
    long long next_poll;   /* monotonic ms */
    long long active_at;   /* monotonic ms of the last poll that found local changes */
    /* a page held at a REMOVE whose matching delete token is tentative (AGENT_HOLD_*) */
    cJSON *held_page;      /* its GetRecords response (owned), Records from that record on;
                              NULL: none */
    char held_kid[65];     /* that record's key id */
    int held_backlog;      /* the page was a backlog when read (not a trickle of echoes,
                              tailer_trickle): its rest is followed by the next poll at once */
    /* the tentative token of the latest hold, and when the shard was first held at its
     * delete (monotonic ms): the limit runs per delete, through re-classifications of the
     * page, a failed commit, and retries of the delete (each with a new deadline) */
    char held_token[APPLY_TOKEN_MAX];
    long long held_first;
} shard;

/* A repair put this agent wrote whose own echo it has not read yet: every echo of the key
 * read until then was written before the repair, so a clobber it shows of a state of
 * logical version <= ver is already undone (the repair wrote ver over it, on condition
 * that the stored version was lower). Without this, an agent behind a hot key repaired
 * it again for each such echo: thousands of conditional writes that all came back
 * "same" under contention. In memory only: forgetting one costs a redundant repair. */
typedef struct {
    char kid[65];
    char ver[LWW_VERSION_STRLEN];
} repair_note;

#define TAILER_REPAIR_NOTES 256 /* per table; the oldest is forgotten first */
/* Lua: the id of the last entry of the stream KEYS[1], or nil when it is empty (the
 * hand-off's prev, tailer_hand_over; XREVRANGE itself would return the entry's whole
 * text, an item image, on every commit) */
#define TAILER_LUA_LAST_ID \
    "local d = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) " \
    "if d[1] then return d[1][1] end return false"

typedef struct {
    const char *name;
    char stream_arn[512];    /* the stream being read ("" not chosen yet); saved in ckpt:T */
    char next_arn[512];      /* the table's next stream (the oldest enabled after
                                stream_arn), read once every shard of stream_arn is read
                                to its end ("" none) */
    int stream_unusable;     /* the table's latest stream is disabled or lacks images:
                                logged once per episode */
    int no_stream;           /* the last attempt to choose a stream found no usable one and
                                none saved: the table does not hold up the start (tailer_run) */
    long long no_stream_at;  /* monotonic ms it was last said (AGENT_NO_STREAM_WARN_MS) */
    int stream_skipped;      /* stream_arn lacks images (an intermediate stream): its
                                shards are not read, its changes NOT replicated (logged) */
    shard *shards;
    size_t n_shards;
    long long next_describe; /* monotonic ms */
    repair_note notes[TAILER_REPAIR_NOTES]; /* a ring: n_notes slots used, next at note_next */
    size_t n_notes, note_next;
    size_t n_live;                          /* slots holding a note (an empty kid: served) */
    int wake_pending;                       /* a wake-up of the shipper found the notify
                                               queue full: sent again on the next turn */
} table_tail;

typedef struct {
    agent_ctx *a;
    store *s;              /* table API (DescribeTable, repairs) */
    store *streams;        /* Streams API (store.streams_endpoint) */
    long long published_at; /* monotonic ms of the last store-stats publication */
    state *st;
    lww_clock *clock;
    void *notify;
    table_tail *tables;
    size_t n_tables;
    long ttl_s;
    long long hold_max_ms;            /* hold limit of a tentative delete token (agent.h) */
    log_limit redis_warn;             /* Redis warnings (AGENT_WARN_EVERY_MS) */
    log_limit future_warn;            /* tailer_observe's errors (AGENT_WARN_EVERY_MS) */
} tailer;

/* What the batch knows of one key: values read from Redis plus this batch's changes. */
typedef struct {
    char *kid;                        /* owned */
    char ll[LWW_VERSION_STRLEN];
    char tomb[LWW_VERSION_STRLEN];   /* any delete (also raised by the replicator ahead of its deletes) */
    char lt[LWW_VERSION_STRLEN];     /* this region's last local delete: what a repair may restore */
    int ll_dirty, tomb_dirty;
    redisReply *pend;                 /* SMEMBERS reply (owned) */
    const char **consumed;            /* tokens consumed by this batch (borrowed strings) */
    size_t n_consumed;
    size_t last;                      /* index of the key's last record in the batch */
    const cJSON *li;                  /* the shipped image of this batch's last local put, of
                                         version ll (borrowed from its rec_view), or NULL */
} key_view;

static shard *tailer_find_shard(table_tail *t, const char *id) {
    for (size_t i = 0; i < t->n_shards; i++)
        if (strcmp(t->shards[i].id, id) == 0) return &t->shards[i];
    return NULL;
}

/* Logs a Redis failure at most once per AGENT_WARN_EVERY_MS; the others are counted
 * and reported with the next line. */
static void tailer_redis_warn(tailer *tl, const char *table, const char *what) {
    long skipped;
    if (log_limit_pass(&tl->redis_warn, daemon_mono_ms(), AGENT_WARN_EVERY_MS, &skipped))
        log_warn(NULL, "table %s: %s: %s (%ld more Redis failures since the last warning; retrying)", table,
                 what, state_errstr(tl->st), skipped);
}

/* Re-reads the shard's checkpoint after a commit whose outcome is unknown (the EXEC may
 * have run although its reply was lost), so that a committed batch is not classified
 * and versioned a second time. 0, or -1 if Redis cannot say yet (retry later). */
static int tailer_reload_checkpoint(tailer *tl, table_tail *t, shard *s) {
    char key[512];
    redisReply *r;
    if (state_key(tl->st, key, sizeof key, STATE_K_CKPT, t->name) != 0) return -1;
    r = state_cmd(tl->st, "HGET %s %s", key, s->id);
    if (!r) {
        tailer_redis_warn(tl, t->name, "reading the checkpoint");
        return -1;
    }
    if (r->type == REDIS_REPLY_STRING) {
        const char *v = strncmp(r->str, "END ", 4) == 0 ? r->str + 4 : r->str;
        if (strcmp(v, s->last_seq) != 0)
            log_info(NULL, "table %s shard %s: the last commit did happen: continuing after %s", t->name,
                     s->id, v);
        snprintf(s->last_seq, sizeof s->last_seq, "%s", v);
    }
    freeReplyObject(r);
    s->ckpt_unsure = 0;
    return 0;
}

/* Loads the checkpoint hash of a table into its shards (creating entries as needed), and
 * into saved (its size savedlen) the stream they belong to ("" when ckpt:T predates the
 * field: then they are the table's latest stream's). 0/-1 (logged). */
static int tailer_load_checkpoints(tailer *tl, table_tail *t, char *saved, size_t savedlen) {
    char key[512];
    redisReply *r;
    if (state_key(tl->st, key, sizeof key, STATE_K_CKPT, t->name) != 0) return -1;
    r = state_cmd(tl->st, "HGETALL %s", key);
    if (!r) {
        log_error(NULL, "table %s: cannot read checkpoints: %s", t->name, state_errstr(tl->st));
        return -1;
    }
    *saved = '\0';
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *id = r->element[i]->str, *val = r->element[i + 1]->str;
        shard *sh;
        if (strcmp(id, STATE_CKPT_STREAM) == 0) {
            snprintf(saved, savedlen, "%s", val);
            continue;
        }
        sh = tailer_find_shard(t, id);
        if (!sh) {
            shard *ns = realloc(t->shards, (t->n_shards + 1) * sizeof *ns);
            if (!ns) {
                freeReplyObject(r);
                return -1;
            }
            t->shards = ns;
            sh = &t->shards[t->n_shards++];
            memset(sh, 0, sizeof *sh);
            snprintf(sh->id, sizeof sh->id, "%s", id);
        }
        if (strncmp(val, "END ", 4) == 0) {
            sh->done = 1;
            snprintf(sh->last_seq, sizeof sh->last_seq, "%s", val + 4);
        } else {
            snprintf(sh->last_seq, sizeof sh->last_seq, "%s", val);
        }
    }
    freeReplyObject(r);
    return 0;
}

/* The table's latest stream, into arn: 0 when it is enabled with both images; 1 when
 * the table has no such stream (arn ""; logged as an error when `loud`, or when this
 * starts an episode of it); -1 on a store error (logged: an error when `loud`, else a
 * warning). */
static int tailer_latest_stream(tailer *tl, table_tail *t, char *arn, size_t arnlen, int loud) {
    cJSON *req = cJSON_CreateObject(), *resp = NULL;
    const cJSON *td, *a, *spec, *view;
    char why[160] = "";
    store_status ss;
    *arn = '\0';
    if (!req || !cJSON_AddStringToObject(req, "TableName", t->name)) {
        cJSON_Delete(req);
        return -1;
    }
    ss = store_call(tl->s, "DescribeTable", req, &resp);
    cJSON_Delete(req);
    if (ss != STORE_OK) {
        log_msg(loud ? LOG_LVL_ERROR : LOG_LVL_WARN, NULL, "table %s: DescribeTable: %s: %s", t->name,
                store_status_name(ss), store_errstr(tl->s));
        cJSON_Delete(resp);
        return -1;
    }
    td = cJSON_GetObjectItemCaseSensitive(resp, "Table");
    a = cJSON_GetObjectItemCaseSensitive(td, "LatestStreamArn");
    spec = cJSON_GetObjectItemCaseSensitive(td, "StreamSpecification");
    view = cJSON_GetObjectItemCaseSensitive(spec, "StreamViewType");
    if (!cJSON_IsString(a) || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "StreamEnabled")))
        snprintf(why, sizeof why, "no stream enabled");
    else if (!cJSON_IsString(view) || strcmp(view->valuestring, "NEW_AND_OLD_IMAGES") != 0)
        snprintf(why, sizeof why, "stream view type is %.64s", cJSON_IsString(view) ? view->valuestring : "unknown");
    else
        snprintf(arn, arnlen, "%s", a->valuestring);
    if (*why && (loud || !t->stream_unusable)) {
        if (*t->stream_arn)
            log_error(NULL, "table %s: %s: writes to the table are NOT captured, hence NOT replicated, until a "
                      "stream with StreamViewType NEW_AND_OLD_IMAGES is enabled; stream %s is read to its end",
                      t->name, why, t->stream_arn);
        else
            log_error(NULL, "table %s: %s; Tern needs a stream with StreamViewType NEW_AND_OLD_IMAGES", t->name, why);
    }
    t->stream_unusable = *why != '\0';
    cJSON_Delete(resp);
    return *why ? 1 : 0;
}

/* Saves which stream ckpt:T's checkpoints belong to, deleting those of any other stream
 * in the same transaction. 0/-1 (logged). */
static int tailer_save_stream(tailer *tl, table_tail *t, const char *arn, int drop_old) {
    char key[512];
    redisReply *rep[4] = {NULL, NULL, NULL, NULL};
    int rc;
    if (state_key(tl->st, key, sizeof key, STATE_K_CKPT, t->name) != 0) return -1;
    state_append(tl->st, "MULTI");
    if (drop_old) state_append(tl->st, "DEL %s", key);
    state_append(tl->st, "HSET %s %s %s", key, STATE_CKPT_STREAM, arn);
    state_append(tl->st, "EXEC");
    rc = state_flush_ok(tl->st, rep, drop_old ? 4 : 3);
    for (int i = 0; i < 4; i++) freeReplyObject(rep[i]);
    if (rc != 0) log_warn(NULL, "table %s: cannot save the stream read: %s", t->name, state_errstr(tl->st));
    return rc;
}

/* Refreshes the shard list of a table from DescribeStream (all pages). 0, -1, or -2 when
 * the stream is not found (deleted, or past its retention after being disabled). */
static int tailer_describe_stream(tailer *tl, table_tail *t) {
    char start[128] = "";
    long pages = 0;
    /* `seen` changes only once every page has been read: a shard whose parent is listed on
     * a page not read (an error, throttling) would look orphaned, and be read before the
     * parent's end, versioning a key's newer changes before its older ones */
    for (size_t i = 0; i < t->n_shards; i++) t->shards[i].listed = 0;
    for (;;) {
        cJSON *req = cJSON_CreateObject(), *resp = NULL;
        const cJSON *desc, *shards, *sh, *last, *view;
        store_status ss;
        if (!req || !cJSON_AddStringToObject(req, "StreamArn", t->stream_arn) ||
            (*start && !cJSON_AddStringToObject(req, "ExclusiveStartShardId", start))) {
            cJSON_Delete(req);
            return -1;
        }
        ss = store_call(tl->streams, "DescribeStream", req, &resp);
        cJSON_Delete(req);
        if (ss != STORE_OK) {
            log_warn(NULL, "table %s: DescribeStream: %s: %s", t->name, store_status_name(ss), store_errstr(tl->streams));
            cJSON_Delete(resp);
            return ss == STORE_ERR_NOT_FOUND ? -2 : -1;
        }
        desc = cJSON_GetObjectItemCaseSensitive(resp, "StreamDescription");
        shards = cJSON_GetObjectItemCaseSensitive(desc, "Shards");
        view = cJSON_GetObjectItemCaseSensitive(desc, "StreamViewType");
        if (!*start && cJSON_IsString(view) && strcmp(view->valuestring, "NEW_AND_OLD_IMAGES") != 0 &&
            !t->stream_skipped) {
            /* a stream in between, enabled without both images: nothing of it can be shipped */
            log_error(NULL, "table %s: stream %s has view type %s: the changes it holds are NOT replicated "
                      "(copy them with ternctl backfill); going on with the next stream", t->name, t->stream_arn,
                      view->valuestring);
            t->stream_skipped = 1;
        }
        cJSON_ArrayForEach(sh, shards) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(sh, "ShardId");
            const cJSON *parent = cJSON_GetObjectItemCaseSensitive(sh, "ParentShardId");
            shard *s;
            if (!cJSON_IsString(id)) continue;
            s = tailer_find_shard(t, id->valuestring);
            if (!s) {
                shard *ns = realloc(t->shards, (t->n_shards + 1) * sizeof *ns);
                if (!ns) {
                    cJSON_Delete(resp);
                    return -1;
                }
                t->shards = ns;
                s = &t->shards[t->n_shards++];
                memset(s, 0, sizeof *s);
                snprintf(s->id, sizeof s->id, "%s", id->valuestring);
                log_info(NULL, "table %s: new shard %s", t->name, s->id);
            }
            if (cJSON_IsString(parent)) snprintf(s->parent, sizeof s->parent, "%s", parent->valuestring);
            s->listed = 1;
        }
        last = cJSON_GetObjectItemCaseSensitive(desc, "LastEvaluatedShardId");
        if (cJSON_IsString(last) && *last->valuestring) {
            if (!strcmp(start, last->valuestring) || strlen(last->valuestring) >= sizeof start ||
                ++pages >= AGENT_DESCRIBE_MAX_PAGES) {
                /* a store whose paging goes round would keep this loop (and its liveness
                 * beacon) going for ever; the listing is not complete: tried again later */
                log_warn(NULL, "table %s: DescribeStream: LastEvaluatedShardId %.128s %s: the shard list is "
                         "not complete", t->name, last->valuestring,
                         !strcmp(start, last->valuestring)        ? "repeats the page's start"
                         : strlen(last->valuestring) >= sizeof start ? "is too long"
                                                                     : "after the most pages a listing reads");
                cJSON_Delete(resp);
                return -1;
            }
            snprintf(start, sizeof start, "%s", last->valuestring);
            cJSON_Delete(resp);
            continue;
        }
        cJSON_Delete(resp);
        break;
    }
    for (size_t i = 0; i < t->n_shards; i++) t->shards[i].seen = t->shards[i].listed;
    /* shards gone from the stream (past retention) and done: forget them */
    for (size_t i = 0; i < t->n_shards;) {
        if (!t->shards[i].seen && t->shards[i].done) {
            free(t->shards[i].iter);
            t->shards[i] = t->shards[--t->n_shards];
        } else {
            i++;
        }
    }
    return 0;
}

/* One stream of ListStreams: its ARN and label (StreamLabel: on DynamoDB an ISO 8601
 * time, so labels sort in the order the streams were enabled) */
typedef struct {
    char arn[512];
    char label[128];
} stream_entry;

/* Into next (its size len): the oldest stream of the table enabled after t->stream_arn
 * (ListStreams, all pages; ordered by StreamLabel, the current stream's own label taken
 * from the list, else from its ARN's last part, which is the label on DynamoDB).
 * 0 found, 1 none, -1 error (logged). */
static int tailer_next_stream(tailer *tl, table_tail *t, char *next, size_t len) {
    char start[512] = "", cur[128] = "";
    stream_entry *all = NULL;
    size_t n = 0;
    const char *tail = strrchr(t->stream_arn, '/');
    int rc = -1;
    *next = '\0';
    for (;;) {
        cJSON *req = cJSON_CreateObject(), *resp = NULL;
        const cJSON *st, *last;
        store_status ss;
        if (!req || !cJSON_AddStringToObject(req, "TableName", t->name) ||
            (*start && !cJSON_AddStringToObject(req, "ExclusiveStartStreamArn", start))) {
            cJSON_Delete(req);
            goto out;
        }
        ss = store_call(tl->streams, "ListStreams", req, &resp);
        cJSON_Delete(req);
        if (ss != STORE_OK) {
            log_warn(NULL, "table %s: ListStreams: %s: %s", t->name, store_status_name(ss), store_errstr(tl->streams));
            cJSON_Delete(resp);
            goto out;
        }
        cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(resp, "Streams")) {
            const cJSON *arn = cJSON_GetObjectItemCaseSensitive(st, "StreamArn");
            const cJSON *label = cJSON_GetObjectItemCaseSensitive(st, "StreamLabel");
            stream_entry *na;
            if (!cJSON_IsString(arn) || !cJSON_IsString(label)) continue;
            na = realloc(all, (n + 1) * sizeof *all);
            if (!na) {
                cJSON_Delete(resp);
                goto out;
            }
            all = na;
            snprintf(all[n].arn, sizeof all[n].arn, "%s", arn->valuestring);
            snprintf(all[n].label, sizeof all[n].label, "%s", label->valuestring);
            if (strcmp(all[n].arn, t->stream_arn) == 0) snprintf(cur, sizeof cur, "%s", all[n].label);
            n++;
        }
        last = cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedStreamArn");
        if (cJSON_IsString(last) && *last->valuestring && strcmp(last->valuestring, start) != 0) {
            snprintf(start, sizeof start, "%s", last->valuestring);
            cJSON_Delete(resp);
            continue;
        }
        cJSON_Delete(resp);
        break;
    }
    if (!*cur) snprintf(cur, sizeof cur, "%.127s", tail ? tail + 1 : t->stream_arn);
    {
        const stream_entry *best = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(all[i].label, cur) > 0 && (!best || strcmp(all[i].label, best->label) < 0)) best = &all[i];
        if (best) snprintf(next, len, "%s", best->arn);
    }
    rc = *next ? 0 : 1;
out:
    free(all);
    return rc;
}

/* Chooses the stream to read at start: the one ckpt:T's checkpoints belong to, then the
 * streams enabled after it, oldest first; with no saved stream, the table's latest, saved.
 * 0, or -1 (logged; retry later). */
static int tailer_open_stream(tailer *tl, table_tail *t) {
    char latest[512], saved[512];
    /* loud until the table is known to have no usable stream: then that was said once */
    int lr = tailer_latest_stream(tl, t, latest, sizeof latest, !t->stream_unusable);
    t->no_stream = 0;
    if (lr < 0 || tailer_load_checkpoints(tl, t, saved, sizeof saved) != 0) return -1;
    if (*saved) {
        snprintf(t->stream_arn, sizeof t->stream_arn, "%s", saved);
        if ((lr != 0 || strcmp(latest, saved) != 0) && tailer_next_stream(tl, t, t->next_arn, sizeof t->next_arn) == 0)
            log_info(NULL, "table %s: reading stream %s, which the checkpoints belong to, to its end before the "
                     "table's next stream %s", t->name, saved, t->next_arn);
        return 0;
    }
    if (lr != 0 || tailer_save_stream(tl, t, latest, 0) != 0) {
        t->no_stream = lr == 1;
        return -1;
    }
    snprintf(t->stream_arn, sizeof t->stream_arn, "%s", latest);
    if (t->no_stream_at) log_info(NULL, "table %s: reading its new stream %s from its start", t->name, latest);
    t->no_stream_at = 0;
    return 0;
}

/* Notes the table's next stream (its stream was disabled and a new one enabled), to be read
 * once the current one is read to its end; streams are read in the order they were
 * enabled, each to its end. */
static void tailer_check_streams(tailer *tl, table_tail *t) {
    char latest[512];
    int lr = tailer_latest_stream(tl, t, latest, sizeof latest, 0);
    if (lr < 0 || *t->next_arn || (lr == 0 && strcmp(latest, t->stream_arn) == 0)) return;
    switch (tailer_next_stream(tl, t, t->next_arn, sizeof t->next_arn)) {
    case 0:
        log_warn(NULL, "table %s: the table has a new stream %s (its stream was disabled and enabled again): reading "
                 "stream %s to its end first", t->name, t->next_arn, t->stream_arn);
        break;
    case 1:
        if (lr == 0) /* every AGENT_DESCRIBE_MS while it lasts */
            log_warn(NULL, "table %s: its latest stream is %s, but ListStreams lists none with a label after the "
                     "label of stream %s, which is read: the new stream is NOT read (its changes are NOT "
                     "replicated) until it is listed so", t->name, latest, t->stream_arn);
        break;
    default:
        break;
    }
}

/* 1 when a shard of the current stream is not read to its end: among those of its latest
 * complete listing when listed_only (checkpoints of shards no longer listed, past
 * retention, do not count), else among every shard known here (also only in ckpt:T). */
static int tailer_unfinished(const table_tail *t, int listed_only) {
    for (size_t i = 0; i < t->n_shards; i++)
        if (!t->shards[i].done && (t->shards[i].seen || !listed_only)) return 1;
    return 0;
}

static void tailer_forget_shards(table_tail *t) {
    for (size_t i = 0; i < t->n_shards; i++) {
        free(t->shards[i].iter);
        cJSON_Delete(t->shards[i].held_page);
    }
    free(t->shards);
    t->shards = NULL;
    t->n_shards = 0;
}

/* Moves on from the current stream, read to its end or gone, to t->next_arn: saves it as
 * the stream of ckpt:T (dropping the old stream's checkpoints in the same transaction)
 * and starts its shards from TRIM_HORIZON. 0, or -1 (retry at the next describe). */
static int tailer_switch_stream(tailer *tl, table_tail *t, int gone) {
    if (!*t->next_arn || tailer_save_stream(tl, t, t->next_arn, 1) != 0) return -1;
    if (gone && !t->stream_skipped && tailer_unfinished(t, 0))
        log_error(NULL, "table %s: stream %s no longer exists (the table was deleted, or the stream was disabled "
                  "more than 24 h ago) and was not read to its end: ITS LAST CHANGES MAY HAVE BEEN LOST and not "
                  "replicated; verify the regions (ternctl verify)", t->name, t->stream_arn);
    log_info(NULL, "table %s: stream %s %s; reading the table's stream %s", t->name, t->stream_arn,
             gone ? "is gone" : t->stream_skipped ? "skipped (no images)" : "read to its end", t->next_arn);
    tailer_forget_shards(t);
    snprintf(t->stream_arn, sizeof t->stream_arn, "%s", t->next_arn);
    t->next_arn[0] = '\0';
    t->stream_skipped = 0;
    return 0;
}

/* Every AGENT_DESCRIBE_MS (at once after a shard's end): a newer stream of the table, the
 * current stream's shards, and the switch to the newer stream once the current one is
 * done. Sets t->next_describe. */
static void tailer_describe(tailer *tl, table_tail *t, long long now) {
    int dr;
    tailer_check_streams(tl, t);
    dr = tailer_describe_stream(tl, t);
    if ((dr == -2 || (dr == 0 && (t->stream_skipped || !tailer_unfinished(t, 1)))) && *t->next_arn &&
        tailer_switch_stream(tl, t, dr == -2) == 0) {
        t->next_describe = 0;
        return;
    }
    /* a stream gone with no newer one to read (the table was deleted, or its stream
     * disabled long ago): look again in a while */
    t->next_describe = now + (dr == -1 ? AGENT_ERROR_BACKOFF_MS : AGENT_DESCRIBE_MS);
}

/* A shard may be read when its parent is read to the end or no longer listed. */
static int tailer_shard_ready(table_tail *t, const shard *s) {
    shard *p;
    if (s->done || !s->seen || t->stream_skipped) return 0;
    if (!*s->parent) return 1;
    p = tailer_find_shard(t, s->parent);
    return !p || p->done || !p->seen;
}

void agent_record_trimmed(agent_ctx *a, state *st, const char *table, const char *where) {
    char key[256], akey[256], val[512];
    redisReply *rep[2];
    if (a->m_trimmed) {
        const char *v[] = {table, NULL};
        metrics_inc_with(a->m_trimmed, v, 1);
    }
    if (state_key(st, key, sizeof key, STATE_K_ALARM_TRIMMED) != 0 ||
        state_key(st, akey, sizeof akey, STATE_K_ACNT, table) != 0)
        return;
    snprintf(val, sizeof val, "%lld %s %s", daemon_wall_ms(), table, where);
    state_append(st, "LPUSH %s %s", key, val);
    state_append(st, "HINCRBY %s trimmed 1", akey);
    if (state_flush(st, rep, 2) == 0) {
        freeReplyObject(rep[0]);
        freeReplyObject(rep[1]);
    } else {
        log_error(NULL, "cannot record the trimmed-data alarm in Redis: %s", state_errstr(st));
    }
}

static void tailer_alarm_trimmed(tailer *tl, table_tail *t, shard *s) {
    log_error(NULL, "table %s shard %s: TrimmedDataAccessException: the stream no longer holds records "
              "after checkpoint %s; continuing from TRIM_HORIZON. CHANGES MAY HAVE BEEN LOST and were "
              "not replicated; verify the regions (ternctl verify)",
              t->name, s->id, *s->last_seq ? s->last_seq : "(none)");
    agent_record_trimmed(tl->a, tl->st, t->name, s->id);
}

/* Gets an iterator for the shard after its checkpoint. 0, or -1 (retry later). */
static int tailer_acquire(tailer *tl, table_tail *t, shard *s) {
    for (int attempt = 0; attempt < 2; attempt++) {
        cJSON *req = cJSON_CreateObject(), *resp = NULL;
        const cJSON *it;
        store_status ss;
        int from_seq = *s->last_seq && attempt == 0;
        if (!req || !cJSON_AddStringToObject(req, "StreamArn", t->stream_arn) ||
            !cJSON_AddStringToObject(req, "ShardId", s->id) ||
            !cJSON_AddStringToObject(req, "ShardIteratorType", from_seq ? "AFTER_SEQUENCE_NUMBER" : "TRIM_HORIZON") ||
            (from_seq && !cJSON_AddStringToObject(req, "SequenceNumber", s->last_seq))) {
            cJSON_Delete(req);
            return -1;
        }
        ss = store_call(tl->streams, "GetShardIterator", req, &resp);
        cJSON_Delete(req);
        if (ss == STORE_ERR_TRIMMED && from_seq) {
            cJSON_Delete(resp);
            tailer_alarm_trimmed(tl, t, s);
            continue;
        }
        if (ss != STORE_OK) {
            log_warn(NULL, "table %s shard %s: GetShardIterator: %s: %s", t->name, s->id,
                     store_status_name(ss), store_errstr(tl->streams));
            cJSON_Delete(resp);
            return -1;
        }
        it = cJSON_GetObjectItemCaseSensitive(resp, "ShardIterator");
        if (!cJSON_IsString(it)) {
            log_warn(NULL, "table %s shard %s: GetShardIterator returned no iterator", t->name, s->id);
            cJSON_Delete(resp);
            return -1;
        }
        free(s->iter);
        s->iter = strdup(it->valuestring);
        cJSON_Delete(resp);
        return s->iter ? 0 : -1;
    }
    return -1;
}

static key_view *tailer_view(key_view *v, size_t n, const char *kid) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].kid, kid) == 0) return &v[i];
    return NULL;
}

static int tailer_pending(const key_view *v, const char *token) {
    if (!token || !v->pend || v->pend->type != REDIS_REPLY_ARRAY) return 0;
    for (size_t i = 0; i < v->n_consumed; i++)
        if (strcmp(v->consumed[i], token) == 0) return 0;
    for (size_t i = 0; i < v->pend->elements; i++)
        if (strcmp(v->pend->element[i]->str, token) == 0) return 1;
    return 0;
}

/* 1 when tok is a plain delete token with a deadline (apply.h) that cannot be the echo of
 * a record created at created_ms (-1: unknown): its DeleteItem was made, if at all, by the
 * deadline, and created_ms is more than AGENT_TOKEN_CLOCK_MARGIN_MS after it. */
static int tailer_token_stale(const char *tok, long long created_ms) {
    apply_token at;
    if (created_ms < 0 || apply_token_parse(tok, &at) != 0 || at.deadline < 0) return 0;
    return at.deadline <= LLONG_MAX - AGENT_TOKEN_CLOCK_MARGIN_MS && created_ms > at.deadline + AGENT_TOKEN_CLOCK_MARGIN_MS;
}

/* The delete token of a REMOVE record whose deleted item had stored version `stored`
 * ("" none), or NULL: the pending, unconsumed plain token "D<version>" or "T<version>"
 * with the smallest version above `stored` (a Tern delete removes an item stored below
 * its version; of the two tokens of one version, both pending for the moment a tentative
 * one is being confirmed, "D"); only if there is none, an undo token "D<version>/<repair
 * version>" whose repair version is `stored` (an undo removes exactly that state). Plain
 * first: an undo and the delete it completes may race for one item (one removes it, the
 * other finds nothing and takes its token back), and an undo whose DeleteItem failed
 * keeps its token; either way the token left over must be an undo's, which matches only
 * a state of that repair (and is consumed with the first REMOVE of such a state:
 * tailer_consume_undos). A tentative token found here holds the record (tailer_hold). The
 * replicator's deletes of one key happen in version order, so several pending deletes of
 * a key (an agent behind, or several in one batch) are matched in order; SMEMBERS
 * order is arbitrary, and a wrong match would make an echo look older than the item
 * it removed and trigger a false repair. Borrowed. */
static const char *tailer_delete_token(const key_view *v, const char *stored) {
    const char *best[2] = {NULL, NULL}; /* [0] plain, [1] undo */
    char bv[2][LWW_VERSION_STRLEN] = {"", ""};
    if (!v->pend || v->pend->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i < v->pend->elements; i++) {
        const char *tok = v->pend->element[i]->str;
        apply_token at;
        int k;
        if (apply_token_parse(tok, &at) != 0 || strcmp(at.version, stored) <= 0 || !tailer_pending(v, tok)) continue;
        if (at.undo && strcmp(at.undo, stored) != 0) continue;
        k = at.undo != NULL;
        if (!best[k] || strcmp(at.version, bv[k]) < 0 ||
            (strcmp(at.version, bv[k]) == 0 && at.kind == APPLY_TOKEN_DELETE)) {
            best[k] = tok;
            memcpy(bv[k], at.version, sizeof bv[k]);
        }
    }
    return best[0] ? best[0] : best[1];
}

/* A REMOVE of an item stored at `stored` was read: every pending undo token of that
 * repair version is spent with it (a repair lands at most once after the delete that
 * overtakes it, so one REMOVE of its state is all an undo can produce). */
static void tailer_consume_undos(key_view *v, const char *stored) {
    if (!*stored || !v->pend || v->pend->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i < v->pend->elements; i++) {
        const char *tok = v->pend->element[i]->str;
        apply_token at;
        if (apply_token_parse(tok, &at) == 0 && at.undo && strcmp(at.undo, stored) == 0 && tailer_pending(v, tok))
            v->consumed[v->n_consumed++] = tok;
    }
}

/* The clock observes a version read with key kid's records (a stored tern:ver, a key
 * state, an echo), so that a change made on top of it gets a higher one (guarantee 3) --
 * unless it is more than replicator.max_clock_skew_ms ahead of this region's wall clock.
 * Tern never wrote such a version (peers hold back changes that far ahead), so something
 * else did (an application or a copy tool writing tern:ver, data restored from a region
 * whose clock ran ahead). Observed, it would carry every later version of this region
 * that far ahead, for good (the clock is saved): peers would hold back all of its
 * changes. It is not observed, and logged at error (at most one line per
 * AGENT_WARN_EVERY_MS): a change on top of it is versioned below it and loses to it
 * wherever the item carries it. */
static void tailer_observe(tailer *tl, const char *text, const char *kid) {
    lww_version v;
    char e[8];
    long long wall;
    long skipped;
    if (!text || !*text || lww_version_parse(text, &v, e, sizeof e) != 0) return;
    wall = daemon_wall_ms();
    if (!lww_ahead(&v, (uint64_t)wall, (uint64_t)tl->a->cfg->replicator.max_clock_skew_ms)) {
        lww_clock_observe(tl->clock, &v);
        return;
    }
    if (!log_limit_pass(&tl->future_warn, daemon_mono_ms(), AGENT_WARN_EVERY_MS, &skipped)) return;
    log_error(NULL, "key %s: version %s is %lld ms ahead of this region's clock, more than "
              "replicator.max_clock_skew_ms (%ld): Tern applies no version that far ahead, so most likely "
              "something else wrote it; not taken into the clock, so a "
              "change on top of it is versioned below it and loses to it where the item carries it (the "
              "regions may differ on this key: ternctl verify; %ld more such versions not logged)",
              kid, text, (long long)v.ms - wall, tl->a->cfg->replicator.max_clock_skew_ms, skipped);
}

static const char *vmax(const char *a, const char *b) { return strcmp(a, b) >= 0 ? a : b; }

typedef struct {
    const char *seq;
    const cJSON *keys, *newi, *oldi;
    int is_delete;
    long long created_ms;           /* ApproximateCreationDateTime, rounded down, ms; -1: none */
    int local;                      /* classified as a local change, versioned ver */
    char ver[LWW_VERSION_STRLEN];
    cJSON *img;                     /* local put: the image to ship (owned) */
    char *kid;      /* owned */
} rec_view;

/* Spends, with record r of key v, the pending delete tokens of v that are stale for it
 * (tailer_token_stale): r and the key's records after it are not their echoes. Returns
 * how many. */
static long tailer_spend_stale(const table_tail *t, key_view *v, const rec_view *r) {
    long n = 0;
    if (r->created_ms < 0 || !v->pend || v->pend->type != REDIS_REPLY_ARRAY) return 0;
    for (size_t i = 0; i < v->pend->elements; i++) {
        const char *tok = v->pend->element[i]->str;
        if (!tailer_token_stale(tok, r->created_ms) || !tailer_pending(v, tok)) continue;
        log_info(NULL, "table %s: key %s: delete token %s is stale at record %s (created at %lld ms, over %d ms "
                 "after the token's deadline): its delete most likely removed nothing; spent", t->name, r->kid, tok,
                 r->seq, r->created_ms, AGENT_TOKEN_CLOCK_MARGIN_MS);
        v->consumed[v->n_consumed++] = tok;
        n++;
    }
    return n;
}

/* The image a local put ships into r->img (owned by r): the new image without Tern's
 * attributes, repaired of DynamoDB Local's empty-map rendering. 0; 1 (logged) if it cannot
 * be shipped; -1 out of memory (nothing wrong with the record: the batch is read again). */
static int tailer_ship_image(const table_tail *t, rec_view *r) {
    char err[256];
    cJSON *img = cJSON_Duplicate(r->newi, 1);
    if (!img) return -1;
    item_strip_hidden(img);
    if (item_repair_stream_image(img) < 0) {
        cJSON_Delete(img);
        return -1;
    }
    switch (item_validate(img, err, sizeof err)) {
    case 0: break;
    case ITEM_VALIDATE_NOMEM:
        cJSON_Delete(img);
        return -1;
    default:
        log_error(NULL, "table %s: stream record %s has an image Tern cannot ship (%s): NOT REPLICATED",
                  t->name, r->seq, err);
        cJSON_Delete(img);
        return 1;
    }
    r->img = img;
    return 0;
}

/* Whether a local change can cross the wire (the rules of wire_decode): valid, non-empty
 * keys with no tern:* name, and for a put an image holding the same key values. As
 * tailer_ship_image: 0; 1 (logged) if not; -1 out of memory. */
static int tailer_shippable(const table_tail *t, const rec_view *r) {
    char err[256];
    const cJSON *k;
    int rc = item_validate(r->keys, err, sizeof err);
    if (rc == ITEM_VALIDATE_NOMEM) return -1;
    if (rc != 0 || !r->keys->child) {
        log_error(NULL, "table %s: stream record %s has invalid keys (%s): NOT REPLICATED", t->name, r->seq,
                  r->keys->child ? err : "empty");
        return 1;
    }
    for (k = r->keys->child; k; k = k->next) {
        const cJSON *iv;
        char *a = NULL, *b = NULL;
        int same, oom;
        if (strncmp(k->string, ITEM_HIDDEN_PREFIX, strlen(ITEM_HIDDEN_PREFIX)) == 0) {
            log_error(NULL, "table %s: key attribute %s uses Tern's reserved prefix " ITEM_HIDDEN_PREFIX
                      ": record %s NOT REPLICATED", t->name, k->string, r->seq);
            return 1;
        }
        if (r->is_delete) continue;
        iv = cJSON_GetObjectItemCaseSensitive(r->img, k->string);
        a = iv ? cJSON_PrintUnformatted(iv) : NULL;
        b = cJSON_PrintUnformatted(k);
        same = a && b && strcmp(a, b) == 0;
        oom = (iv && !a) || !b;
        free(a);
        free(b);
        if (oom) return -1;
        if (!same) {
            log_error(NULL, "table %s: stream record %s: the new image's %s differs from its key: NOT REPLICATED",
                      t->name, r->seq, k->string);
            return 1;
        }
    }
    return 0;
}

/* Appends one log entry {"op","keys","image","ver"} as an XADD to the pipeline, and adds
 * it to chunk *hand (the hand-off to the shipper, logcache.h; it takes the entry). When
 * the entry cannot be added (out of memory), the chunk is freed and *hand set to NULL:
 * the commit is then handed over without entries (logcache_queue_mark). Returns
 * state_append's result, or -1 when the entry cannot be made (the flush then fails). */
static int tailer_append_log(tailer *tl, const char *logkey, const rec_view *r, const char *ver,
                             logcache_chunk **hand) {
    cJSON *c = cJSON_CreateObject();
    char *json;
    size_t len;
    int rc;
    if (!c || !cJSON_AddStringToObject(c, "op", r->is_delete ? "delete" : "put")) goto fail;
    if (!cJSON_AddItemToObject(c, "keys", cJSON_Duplicate(r->keys, 1))) goto fail;
    if (!r->is_delete) {
        cJSON *img = cJSON_Duplicate(r->img, 1);
        if (!img || !cJSON_AddItemToObject(c, "image", img)) {
            cJSON_Delete(img);
            goto fail;
        }
    }
    if (!cJSON_AddStringToObject(c, "ver", ver)) goto fail;
    json = cJSON_PrintUnformatted(c);
    if (!json) goto fail;
    len = strlen(json);
    rc = state_append(tl->st, "XADD %s * c %s", logkey, json);
    free(json);
    if (*hand && logcache_chunk_add(*hand, c, len) != 0) { /* it freed c */
        logcache_chunk_free(*hand);
        *hand = NULL;
    } else if (!*hand) {
        cJSON_Delete(c);
    }
    return rc;
fail:
    cJSON_Delete(c);
    return -1;
}

/* Hands commit `hand` to the shipper (logcache.h). exec is the EXEC's reply array: its
 * first element the log's last id before the commit (TAILER_LUA_LAST_ID, read inside the
 * transaction, so that an entry anyone else added to log:T is never taken to be absent:
 * the chunk then does not chain to the cache; nil for an empty log), then the entries' ids
 * in order. A chunk that
 * cannot be completed (a reply that does not parse: never, from Redis) goes as a commit
 * without entries. Takes hand (NULL: none could be made). */
static void tailer_hand_over(tailer *tl, table_tail *t, logcache_chunk *hand, const redisReply *exec) {
    size_t n = hand ? logcache_chunk_len(hand) : 0, i;
    const redisReply *last = exec->elements > 0 ? exec->element[0] : NULL;
    wire_pos id;
    for (i = 0; i < n && i + 1 < exec->elements; i++) {
        const redisReply *x = exec->element[i + 1];
        if (x->type != REDIS_REPLY_STRING || wire_pos_parse(x->str, &id) != 0) break;
        logcache_chunk_set_id(hand, i, id);
    }
    if (!hand || i < n || !last ||
        (last->type != REDIS_REPLY_NIL && (last->type != REDIS_REPLY_STRING || wire_pos_parse(last->str, &id) != 0))) {
        logcache_chunk_free(hand);
        logcache_queue_mark(tl->a->handoff, (size_t)(t - tl->tables));
        return;
    }
    /* an empty log: no prev (a link's position is then covered only from the chunk's ids) */
    if (last->type == REDIS_REPLY_STRING) logcache_chunk_set_prev(hand, id);
    logcache_queue_push(tl->a->handoff, hand);
}

/* The live note of key kid, or NULL (at once when none is live, as almost always: it
 * is asked for every echo). */
static repair_note *tailer_note_find(table_tail *t, const char *kid) {
    if (!t->n_live) return NULL;
    for (size_t i = 0; i < t->n_notes; i++)
        if (strcmp(t->notes[i].kid, kid) == 0) return &t->notes[i];
    return NULL;
}

/* Remembers that key kid was repaired to version ver (replacing an older note). */
static void tailer_note_repair(table_tail *t, const char *kid, const char *ver) {
    repair_note *n = tailer_note_find(t, kid);
    if (!n) {
        n = &t->notes[t->note_next];
        t->note_next = (t->note_next + 1) % TAILER_REPAIR_NOTES;
        if (t->n_notes < TAILER_REPAIR_NOTES) t->n_notes++;
        if (!n->kid[0]) t->n_live++; /* else the oldest note is forgotten */
    }
    snprintf(n->kid, sizeof n->kid, "%s", kid);
    snprintf(n->ver, sizeof n->ver, "%s", ver);
}

/* An echo of version ver was read for key kid: if it is the noted repair's own, the note
 * has served (its slot is emptied: an empty kid matches no key). Returns the key's note
 * still live after that, or NULL. */
static const repair_note *tailer_note_echo(table_tail *t, const char *kid, const char *ver) {
    repair_note *n = tailer_note_find(t, kid);
    if (n && strcmp(n->ver, ver) == 0) {
        n->kid[0] = '\0';
        t->n_live--;
        return NULL;
    }
    return n;
}

/* li:T:KID's text: {"v": version, "i": image}. NULL when out of memory; the caller frees. */
static char *tailer_image_text(const char *ver, const cJSON *image) {
    cJSON *o = cJSON_CreateObject(), *img = cJSON_Duplicate(image, 1);
    char *txt = NULL;
    if (o && img && cJSON_AddStringToObject(o, "v", ver) && cJSON_AddItemToObject(o, "i", img)) {
        img = NULL;
        txt = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(img);
    cJSON_Delete(o);
    return txt;
}

/* The content of the key's local put of version lv, as shipped: this batch's (v->li), or
 * the one saved in li:T:KID by an earlier batch, into *img (a new copy the caller frees),
 * or NULL when neither is of that version (expired, or never saved: an agent before li
 * existed). -1 when it could not be read (Redis, memory): the batch is to be read again. */
static int tailer_local_image(tailer *tl, const table_tail *t, const key_view *v, const char *lv, cJSON **img) {
    char key[512];
    redisReply *rep;
    cJSON *o;
    const cJSON *ver;
    *img = NULL;
    if (strcmp(v->ll, lv) != 0) return 0; /* li is saved with ll, of ll's version only */
    if (v->li) return (*img = cJSON_Duplicate(v->li, 1)) ? 0 : -1;
    if (state_key(tl->st, key, sizeof key, STATE_K_LASTIMAGE, t->name, v->kid) != 0) return 0;
    if (!(rep = state_cmd(tl->st, "GET %s", key))) return -1;
    if (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        return -1;
    }
    o = rep->type == REDIS_REPLY_STRING ? cJSON_ParseWithLength(rep->str, rep->len) : NULL;
    freeReplyObject(rep);
    ver = o ? cJSON_GetObjectItemCaseSensitive(o, "v") : NULL;
    if (cJSON_IsString(ver) && strcmp(ver->valuestring, lv) == 0 &&
        cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "i")))
        *img = cJSON_DetachItemFromObjectCaseSensitive(o, "i");
    cJSON_Delete(o);
    return 0;
}

/* Repairs key r after an echo clobbered a state whose logical version `lv` is higher: writes
 * back the local put of that version (its content as shipped: tailer_local_image; the
 * echo's old image only when that is not known and carries the version), or the local
 * delete, over what the echo left and nothing newer (apply_change.over). *written: the
 * repair wrote (its echo is coming). 0: repaired, or it stays lost (a newer version, or
 * the key written again since); 1: not made for good (the store refused it, or its content
 * is no longer known; logged); -1: an error (logged; retried). */
static int tailer_repair(tailer *tl, table_tail *t, const rec_view *r, const key_view *v, const char *lv,
                         int restore_delete, int *written) {
    char err[512];
    apply_change c;
    cJSON *img = NULL;
    apply_result res;
    memset(&c, 0, sizeof c);
    c.table = t->name;
    c.keys = r->keys;
    c.kid = r->kid;
    c.version = lv;
    c.ttl_s = tl->ttl_s;
    c.is_delete = restore_delete;
    /* only over what the echo left: a newer write there, one this agent has not read yet
     * above all, must not be undone by restoring an older state */
    c.over = r->is_delete ? "" : item_get_s(r->newi, ITEM_ATTR_WID);
    if (!c.over) return 1; /* cannot happen: r was matched by its tern:wid */
    if (!restore_delete) {
        if (tailer_local_image(tl, t, v, lv, &img) != 0) {
            log_warn(NULL, "table %s: repair of key %s to %s: cannot read its content: %s", t->name, r->kid, lv,
                     state_errstr(tl->st));
            return -1;
        }
        /* without it, the echo's old image only if it is that version's own (a repair's) */
        if (!img && r->oldi && strcmp(apply_stored_version(r->oldi), lv) == 0 &&
            !(img = cJSON_Duplicate(r->oldi, 1)))
            return -1;
        if (!img) { /* li expired, or saved by no agent (an older one) */
            log_warn(NULL, "table %s: key %s: a replicated write had overwritten local version %s before it "
                     "was read, and its content is no longer known: not restored (ternctl verify)", t->name,
                     r->kid, lv);
            return 1;
        }
        item_strip_hidden(img);
        c.image = img;
    }
    /* the repair may come long after the clobbering write (the agent reads behind the
     * table): a newer delete applied since must not be undone (APPLY_TOMBCHECK) */
    res = apply_one(tl->s, tl->st, &c, restore_delete ? 0 : APPLY_TOMBCHECK, NULL, err, sizeof err);
    cJSON_Delete(img);
    *written = res == APPLY_WRITTEN;
    if (res == APPLY_ERROR) {
        log_warn(NULL, "table %s: repair of key %s to %s failed: %s", t->name, r->kid, lv, err);
        return -1;
    }
    if (res == APPLY_REFUSED) { /* for good: retrying would not help */
        log_error(NULL, "table %s: key %s: a replicated write had overwritten local version %s before it was "
                  "read, and the store refused to restore it (%s): this region keeps the replicated item while "
                  "the peers get the local version; the regions differ on this key (ternctl verify)",
                  t->name, r->kid, lv, err);
        return 1;
    }
    log_info(NULL, "table %s: repaired key %s: a replicated write had overwritten local version %s "
             "before it was read; %s (%s, %s)", t->name, r->kid, lv,
             res == APPLY_LOST ? "the key was written again since, or a newer version is known: not restored"
                               : "restored it",
             restore_delete ? "delete" : "put", apply_result_name(res));
    return 0;
}

/* The token matching REMOVE record r of shard s is tentative (apply.h): 1 when the shard
 * is to stop before r, its DeleteItem not answered yet (AGENT_HOLD_*); 0 when it has been
 * held at r for the hold limit (logged): the token is then taken for confirmed. */
static int tailer_hold(const tailer *tl, const table_tail *t, shard *s, const rec_view *r, const char *token) {
    long long now = daemon_mono_ms();
    apply_token cur, prev;
    if (apply_token_parse(token, &cur) != 0 || apply_token_parse(s->held_token, &prev) != 0 ||
        strcmp(cur.version, prev.version) != 0) { /* a new hold: counted in acnt:T held (best effort) */
        char key[512];
        redisReply *rep;
        s->held_first = now;
        if (state_key(tl->st, key, sizeof key, STATE_K_ACNT, t->name) == 0 &&
            (rep = state_cmd(tl->st, "HINCRBY %s held 1", key)))
            freeReplyObject(rep);
    }
    snprintf(s->held_token, sizeof s->held_token, "%s", token); /* a retry's, with its deadline */
    if (now - s->held_first < tl->hold_max_ms) {
        snprintf(s->held_kid, sizeof s->held_kid, "%s", r->kid);
        return 1;
    }
    log_warn(NULL, "table %s shard %s: key %s: delete token %s still tentative after %lld ms (its writer crashed, "
             "is down or cannot reach the store since its DeleteItem): taking record %s for its echo", t->name, s->id,
             r->kid, token, now - s->held_first, r->seq);
    return 0;
}

/* When a held shard is looked at again (AGENT_HOLD_*). */
static long long tailer_hold_next(const shard *s, long long now) {
    return now + (now - s->held_first < AGENT_HOLD_FAST_MS ? AGENT_HOLD_POLL_MS : AGENT_HOLD_SLOW_MS);
}

/* 1 when the token the held page of s waits for is certainly still tentative and within
 * its hold limit: one SISMEMBER instead of classifying the page again. 0: classify it. */
static int tailer_still_held(tailer *tl, const table_tail *t, const shard *s, long long now) {
    char key[512];
    redisReply *r;
    int held;
    if (now - s->held_first >= tl->hold_max_ms ||
        state_key(tl->st, key, sizeof key, STATE_K_PEND, t->name, s->held_kid) != 0)
        return 0;
    r = state_cmd(tl->st, "SISMEMBER %s %s", key, s->held_token);
    held = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r) freeReplyObject(r);
    return held;
}

/* Classifies, versions and commits one batch of records, up to the first REMOVE whose
 * matching delete token is tentative (tailer_hold): *taken is the number of records
 * committed (all of them unless held there). Returns the number of local changes
 * appended, or -1 (nothing committed; the caller re-reads the batch). */
static int tailer_process(tailer *tl, table_tail *t, shard *s, const cJSON *records, size_t *taken) {
    size_t n = (size_t)cJSON_GetArraySize(records), np = n, nk = 0, nrep = 0, idx = 0;
    rec_view *recs = calloc(n ? n : 1, sizeof *recs);
    key_view *views = calloc(n ? n : 1, sizeof *views);
    redisReply **rep = NULL;
    size_t rep_len = 0;    /* slots in rep */
    logcache_chunk *hand = NULL; /* the commit's entries, for the shipper (logcache.h) */
    int sent = 0;          /* the commit went to Redis: its outcome is to be handed over */
    char logkey[512], ckptkey[512], hlckey[256], acntkey[512], k1[512];
    const cJSON *rec;
    long n_local = 0, n_echo = 0, n_repaired = 0, n_invalid = 0, n_stale = 0;
    int rc = -1;
    lww_version last;
    char lastv[LWW_VERSION_STRLEN];

    *taken = 0;
    if (!recs || !views) goto out;
    if (state_key(tl->st, logkey, sizeof logkey, STATE_K_LOG, t->name) != 0 ||
        state_key(tl->st, ckptkey, sizeof ckptkey, STATE_K_CKPT, t->name) != 0 ||
        state_key(tl->st, hlckey, sizeof hlckey, STATE_K_HLC) != 0 ||
        state_key(tl->st, acntkey, sizeof acntkey, STATE_K_ACNT, t->name) != 0)
        goto out;

    /* parse records and collect distinct keys */
    cJSON_ArrayForEach(rec, records) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "dynamodb");
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(rec, "eventName");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "SequenceNumber");
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(d, "ApproximateCreationDateTime");
        rec_view *r = &recs[idx++];
        /* epoch seconds; ignored unless plausible (before the year 5000) */
        r->created_ms = cJSON_IsNumber(created) && created->valuedouble > 0 && created->valuedouble < 1e11
                            ? (long long)created->valuedouble * 1000 : -1; /* (truncated: floor) */
        r->keys = cJSON_GetObjectItemCaseSensitive(d, "Keys");
        r->newi = cJSON_GetObjectItemCaseSensitive(d, "NewImage");
        r->oldi = cJSON_GetObjectItemCaseSensitive(d, "OldImage");
        r->is_delete = cJSON_IsString(ev) && strcmp(ev->valuestring, "REMOVE") == 0;
        if (!cJSON_IsString(seq) || !cJSON_IsObject(r->keys) || (!r->is_delete && !cJSON_IsObject(r->newi))) {
            log_error(NULL, "table %s shard %s: malformed stream record (no keys, sequence number or new "
                      "image); is the stream view NEW_AND_OLD_IMAGES?", t->name, s->id);
            goto out;
        }
        r->seq = seq->valuestring;
        r->kid = item_key_id(r->keys);
        if (!r->kid) goto out;
        key_view *kv = tailer_view(views, nk, r->kid);
        if (!kv) {
            kv = &views[nk];
            kv->kid = strdup(r->kid);
            if (!kv->kid) goto out;
            nk++;
        }
        kv->last = idx - 1;
    }

    /* 1. what Redis knows of these keys */
    for (size_t i = 0; i < nk; i++) {
        state_key(tl->st, k1, sizeof k1, STATE_K_LASTLOCAL, t->name, views[i].kid);
        state_append(tl->st, "GET %s", k1);
        state_key(tl->st, k1, sizeof k1, STATE_K_TOMB, t->name, views[i].kid);
        state_append(tl->st, "GET %s", k1);
        state_key(tl->st, k1, sizeof k1, STATE_K_PEND, t->name, views[i].kid);
        state_append(tl->st, "SMEMBERS %s", k1);
        state_key(tl->st, k1, sizeof k1, STATE_K_LOCALTOMB, t->name, views[i].kid);
        state_append(tl->st, "GET %s", k1);
    }
    rep = calloc(4 * nk + 1, sizeof *rep);
    if (!rep) goto out;
    rep_len = 4 * nk + 1;
    if (state_flush_ok(tl->st, rep, 4 * nk) != 0) { /* an error read as "nothing known" would ship echoes */
        tailer_redis_warn(tl, t->name, "reading key state");
        goto out;
    }
    for (size_t i = 0; i < nk; i++) {
        redisReply *a = rep[4 * i], *b = rep[4 * i + 1], *c = rep[4 * i + 3];
        if (a->type == REDIS_REPLY_STRING && a->len < LWW_VERSION_STRLEN) memcpy(views[i].ll, a->str, a->len + 1);
        if (b->type == REDIS_REPLY_STRING && b->len < LWW_VERSION_STRLEN) memcpy(views[i].tomb, b->str, b->len + 1);
        if (c->type == REDIS_REPLY_STRING && c->len < LWW_VERSION_STRLEN) memcpy(views[i].lt, c->str, c->len + 1);
        views[i].pend = rep[4 * i + 2];
        rep[4 * i + 2] = NULL;
        /* only pending tokens are consumed, each once */
        views[i].consumed = calloc(views[i].pend->type == REDIS_REPLY_ARRAY && views[i].pend->elements
                                       ? views[i].pend->elements : 1, sizeof *views[i].consumed);
        if (!views[i].consumed) goto out;
        freeReplyObject(a);
        freeReplyObject(b);
        freeReplyObject(c);
        rep[4 * i] = rep[4 * i + 1] = rep[4 * i + 3] = NULL;
    }

    /* 2. classify in stream order (repairs are written here, before the commit is queued) */
    for (size_t i = 0; i < n; i++) {
        rec_view *r = &recs[i];
        key_view *v = tailer_view(views, nk, r->kid);
        const char *old_logical, *token = NULL;
        /* the key's last local change, put (ll) or delete (lt; only a local delete can be
         * restored: the tombstone may already carry a replicated delete still on its way).
         * Not only the old image's: a repair skipped at an earlier echo (written again
         * since) leaves it to this one, whose old image is then that echo's */
        old_logical = vmax(v->ll, v->lt);
        if (r->oldi) old_logical = vmax(apply_stored_version(r->oldi), old_logical);
        /* the clock observes every version the region knows of the key, its tombstone too:
         * a change on top of the key's last delete, local or replicated, is newer than it
         * (guarantee 3). A replicated delete that found no item left no record, so only its
         * tombstone tells: from a clock ahead of this one, a put versioned below it was
         * dropped in the other regions as older than their tombstones, and the regions
         * differed for good */
        tailer_observe(tl, vmax(old_logical, v->tomb), r->kid);
        n_stale += tailer_spend_stale(t, v, r);
        token = r->is_delete ? tailer_delete_token(v, apply_stored_version(r->oldi))
                             : item_get_s(r->newi, ITEM_ATTR_WID);
        if (token && tailer_pending(v, token)) {
            /* an echo of a Tern write: never shipped (guarantee 4) */
            apply_token at;
            const char *echo_ver = r->is_delete && apply_token_parse(token, &at) == 0 ? at.version
                                                                                     : apply_stored_version(r->newi);
            const repair_note *note;
            if (token[0] == APPLY_TOKEN_TENTATIVE && tailer_hold(tl, t, s, r, token)) {
                np = i;
                break;
            }
            v->consumed[v->n_consumed++] = token;
            if (r->is_delete) tailer_consume_undos(v, apply_stored_version(r->oldi));
            tailer_observe(tl, echo_ver, r->kid);
            if (r->is_delete && strcmp(echo_ver, v->tomb) > 0) snprintf(v->tomb, sizeof v->tomb, "%s", echo_ver);
            n_echo++;
            note = tailer_note_echo(t, r->kid, echo_ver);
            if (*old_logical && strcmp(old_logical, echo_ver) > 0) {
                char lv[LWW_VERSION_STRLEN];
                int written = 0;
                snprintf(lv, sizeof lv, "%s", old_logical);
                if (note && strcmp(lv, note->ver) <= 0) {
                    log_debug(NULL, "table %s: key %s: echo %s clobbered %s, already repaired to %s", t->name,
                              r->kid, echo_ver, lv, note->ver);
                    continue;
                }
                if (v->last > i) {
                    /* the key was written again after the echo (a later record of this
                     * page): what the echo left is gone, so the repair could not apply
                     * (apply_change.over); that later write, or the echo of a later Tern
                     * write, decides. An agent behind its stream skips most repairs so. */
                    log_debug(NULL, "table %s: key %s: echo %s clobbered %s, but the key was written again "
                              "since: no repair", t->name, r->kid, echo_ver, lv);
                    continue;
                }
                int del = strcmp(lv, v->lt) == 0 && strcmp(v->lt, v->ll) > 0; /* restore a delete (lv is not "") */
                int rr = tailer_repair(tl, t, r, v, lv, del, &written);
                if (rr < 0) goto out;
                if (rr > 0) continue; /* refused by the store for good (logged): no repair */
                /* a written put certainly has an echo to clear its note (a new tern:wid
                 * changes the item); a delete that found the item gone has none */
                if (written && !del) tailer_note_repair(t, r->kid, lv);
                n_repaired++;
            }
            continue;
        }
        /* a local change */
        {
            int ok = r->is_delete ? 0 : tailer_ship_image(t, r); /* 0 ok, 1 invalid, -1 no memory */
            if (ok == 0) ok = tailer_shippable(t, r);
            if (ok < 0) {
                log_warn(NULL, "table %s shard %s: out of memory classifying record %s; reading the batch again",
                         t->name, s->id, r->seq);
                goto out;
            }
            if (ok > 0) {
                n_invalid++;
                continue;
            }
        }
        {
            lww_version nv;
            lww_clock_now(tl->clock, (uint64_t)daemon_wall_ms(), &nv);
            lww_version_format(&nv, r->ver, sizeof r->ver);
        }
        r->local = 1;
        if (r->is_delete) {
            snprintf(v->tomb, sizeof v->tomb, "%s", r->ver);
            snprintf(v->lt, sizeof v->lt, "%s", r->ver);
            v->tomb_dirty = 1;
        } else {
            snprintf(v->ll, sizeof v->ll, "%s", r->ver);
            v->ll_dirty = 1;
            v->li = r->img; /* what was shipped */
        }
        n_local++;
    }

    if (np == 0) { /* held at its first record: nothing to commit */
        rc = 0;
        goto out;
    }
    state_append(tl->st, "MULTI");
    sent = 1; /* from here the log may get the entries: the shipper is told either way (out:) */
    nrep = 1;
    /* no chunk without peers (nothing would take it from the cache): counted without one */
    hand = n_local && tl->a->cfg->n_peers ? logcache_chunk_new((size_t)(t - tl->tables)) : NULL;
    if (n_local) { /* the log's last id before these: the chunk's prev (tailer_hand_over) */
        state_append(tl->st, "EVAL %s 1 %s", TAILER_LUA_LAST_ID, logkey);
        nrep++;
    }
    for (size_t i = 0; i < np; i++) {
        if (!recs[i].local) continue;
        tailer_append_log(tl, logkey, &recs[i], recs[i].ver, &hand); /* a failure here fails the flush */
        nrep++;
    }

    /* 3. commit: key versions, consumed tokens, checkpoint, clock, counters */
    for (size_t i = 0; i < nk; i++) {
        key_view *v = &views[i];
        if (v->ll_dirty) {
            state_key(tl->st, k1, sizeof k1, STATE_K_LASTLOCAL, t->name, v->kid);
            state_append(tl->st, "SET %s %s EX %ld", k1, v->ll, tl->ttl_s);
            nrep++;
        }
        if (v->li) { /* the content of version ll, for the repairs of later batches */
            char *li = tailer_image_text(v->ll, v->li);
            state_key(tl->st, k1, sizeof k1, STATE_K_LASTIMAGE, t->name, v->kid);
            if (li) state_append(tl->st, "SET %s %s EX %ld", k1, li, tl->ttl_s);
            else state_append(tl->st, "DEL %s", k1); /* out of memory: repairs fall back */
            free(li);
            nrep++;
        }
        if (v->tomb_dirty) {
            char ttl[32];
            snprintf(ttl, sizeof ttl, "%ld", tl->ttl_s);
            state_key(tl->st, k1, sizeof k1, STATE_K_TOMB, t->name, v->kid);
            state_append(tl->st, "EVAL %s 1 %s %s %s", APPLY_LUA_SETMAX, k1, v->tomb, ttl);
            state_key(tl->st, k1, sizeof k1, STATE_K_LOCALTOMB, t->name, v->kid);
            state_append(tl->st, "SET %s %s EX %ld", k1, v->lt, tl->ttl_s);
            nrep += 2;
        }
        if (v->n_consumed) {
            state_key(tl->st, k1, sizeof k1, STATE_K_PEND, t->name, v->kid);
            for (size_t j = 0; j < v->n_consumed; j++) {
                /* a tentative token taken at its hold limit goes with its confirmation,
                 * should its writer confirm it meanwhile (the repairs of this batch take
                 * time): "D" of that version can only be that same delete's */
                if (v->consumed[j][0] == APPLY_TOKEN_TENTATIVE) {
                    char confirmed[APPLY_TOKEN_MAX];
                    apply_token_confirmed(v->consumed[j], confirmed);
                    state_append(tl->st, "SREM %s %s %s", k1, v->consumed[j], confirmed);
                } else {
                    state_append(tl->st, "SREM %s %s", k1, v->consumed[j]);
                }
                nrep++;
            }
        }
    }
    state_append(tl->st, "HSET %s %s %s", ckptkey, s->id, recs[np - 1].seq);
    lww_clock_last(tl->clock, &last);
    lww_version_format(&last, lastv, sizeof lastv);
    state_append(tl->st, "SET %s %s", hlckey, lastv);
    state_append(tl->st, "HINCRBY %s local %ld", acntkey, n_local);
    state_append(tl->st, "HINCRBY %s echo %ld", acntkey, n_echo);
    state_append(tl->st, "HINCRBY %s repaired %ld", acntkey, n_repaired);
    state_append(tl->st, "HINCRBY %s invalid %ld", acntkey, n_invalid);
    state_append(tl->st, "HINCRBY %s stale %ld", acntkey, n_stale);
    state_append(tl->st, "EXEC");
    nrep += 8;
    free(rep);
    rep = calloc(nrep, sizeof *rep);
    rep_len = rep ? nrep : 0;
    if (!rep) {
        state_flush(tl->st, NULL, 0); /* count mismatch: drops the connection and its queue */
        goto out;
    }
    if (state_flush(tl->st, rep, nrep) != 0) {
        tailer_redis_warn(tl, t->name, "Redis commit failed (it may have happened: the checkpoint is re-read)");
        goto out;
    }
    tl->redis_warn.at = 0;
    if (!rep[nrep - 1] || rep[nrep - 1]->type != REDIS_REPLY_ARRAY) {
        log_warn(NULL, "table %s: Redis commit (EXEC) failed: %s", t->name,
                 rep[nrep - 1] && rep[nrep - 1]->type == REDIS_REPLY_ERROR ? rep[nrep - 1]->str : "aborted");
        goto out;
    }
    for (size_t i = 0; i < rep[nrep - 1]->elements; i++) {
        if (rep[nrep - 1]->element[i]->type == REDIS_REPLY_ERROR) {
            log_error(NULL, "table %s: Redis commit: command %zu failed: %s", t->name, i, rep[nrep - 1]->element[i]->str);
            goto out;
        }
    }
    snprintf(s->last_seq, sizeof s->last_seq, "%s", recs[np - 1].seq);
    if (n_local) tailer_hand_over(tl, t, hand, rep[nrep - 1]);
    hand = NULL;
    sent = 0;
    *taken = np;
    rc = (int)n_local;
    if (tl->a->m_changes) {
        const char *kinds[] = {"local", "echo", "repaired", "invalid"};
        long counts[] = {n_local, n_echo, n_repaired, n_invalid};
        for (int k = 0; k < 4; k++) {
            const char *v[] = {t->name, kinds[k], NULL};
            if (counts[k]) metrics_inc_with(tl->a->m_changes, v, (uint64_t)counts[k]);
        }
    }
    log_debug(NULL, "table %s shard %s: %zu records: %ld local, %ld echo, %ld repaired%s", t->name, s->id, np,
              n_local, n_echo, n_repaired, np < n ? " (held at the next: its delete token is tentative)" : "");
    goto out;

out:
    if (sent && n_local) /* a commit that failed, or whose outcome is unknown */
        logcache_queue_mark(tl->a->handoff, (size_t)(t - tl->tables));
    logcache_chunk_free(hand);
    for (size_t i = 0; rep && i < rep_len; i++)
        if (rep[i]) freeReplyObject(rep[i]);
    free(rep);
    for (size_t i = 0; recs && i < n; i++) {
        free(recs[i].kid);
        cJSON_Delete(recs[i].img);
    }
    for (size_t i = 0; views && i < nk; i++) {
        free(views[i].kid);
        free(views[i].consumed);
        if (views[i].pend) freeReplyObject(views[i].pend);
    }
    free(recs);
    free(views);
    return rc;
}

/* Wakes the shipper's links of table t only: the message is the table's index in
 * cfg->tables (== tl->tables), as a uint32_t in host order (inproc, same process). A full
 * queue (the shipper is behind by thousands of commits) leaves t->wake_pending set, for
 * the tailer loop to send again: no other message may name this table. */
static void tailer_notify(tailer *tl, table_tail *t) {
    uint32_t idx = (uint32_t)(t - tl->tables);
    t->wake_pending = 0;
    if (zmq_send(tl->notify, &idx, sizeof idx, ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN) t->wake_pending = 1;
        else log_warn(NULL, "cannot wake the shipper: %s", zmq_strerror(errno));
    }
}

static void tailer_mark_done(tailer *tl, table_tail *t, shard *s) {
    char key[512], val[96];
    redisReply *r;
    s->done = 1;
    free(s->iter);
    s->iter = NULL;
    t->next_describe = 0; /* children may have appeared */
    if (state_key(tl->st, key, sizeof key, STATE_K_CKPT, t->name) != 0) return;
    snprintf(val, sizeof val, "END %s", s->last_seq);
    r = state_cmd(tl->st, "HSET %s %s %s", key, s->id, val);
    if (r) freeReplyObject(r);
    else log_warn(NULL, "table %s shard %s: cannot save end of shard: %s", t->name, s->id, state_errstr(tl->st));
    log_info(NULL, "table %s shard %s: closed shard read to its end", t->name, s->id);
}

/* 1 when a page of nrec records (none of them local changes) is a trickle of echoes rather
 * than part of a backlog: fewer records than a full page (batch_max), and under
 * AGENT_ECHO_TRICKLE_BYTES by the records' SizeBytes. */
static int tailer_trickle(const cJSON *records, int nrec, long batch_max) {
    const cJSON *r;
    double bytes = 0;
    if (nrec >= batch_max) return 0;
    cJSON_ArrayForEach(r, records) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "dynamodb");
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(d, "SizeBytes");
        if (cJSON_IsNumber(sz)) bytes += sz->valuedouble;
    }
    return bytes < AGENT_ECHO_TRICKLE_BYTES;
}

/* One GetRecords on shard s: its response (the caller frees it), or NULL when there is
 * nothing to process (an error, backed off; an expired iterator or a trimmed stream,
 * handled: the next poll acquires a new iterator). */
static cJSON *tailer_read(tailer *tl, table_tail *t, shard *s, long long now) {
    const cfg_region *cfg = tl->a->cfg;
    cJSON *req, *resp = NULL;
    store_status ss;

    if (s->ckpt_unsure && tailer_reload_checkpoint(tl, t, s) != 0) {
        s->next_poll = now + AGENT_ERROR_BACKOFF_MS;
        return NULL;
    }
    if (!s->iter && tailer_acquire(tl, t, s) != 0) {
        s->next_poll = now + AGENT_ERROR_BACKOFF_MS;
        return NULL;
    }
    req = cJSON_CreateObject();
    if (!req || !cJSON_AddStringToObject(req, "ShardIterator", s->iter) ||
        !cJSON_AddNumberToObject(req, "Limit", (double)cfg->agent.batch_max)) {
        cJSON_Delete(req);
        s->next_poll = now + AGENT_ERROR_BACKOFF_MS;
        return NULL;
    }
    ss = store_call(tl->streams, "GetRecords", req, &resp);
    cJSON_Delete(req);
    if (ss == STORE_ERR_EXPIRED_ITERATOR) {
        log_info(NULL, "table %s shard %s: iterator expired; re-acquiring after %s", t->name, s->id,
                 *s->last_seq ? s->last_seq : "TRIM_HORIZON");
        free(s->iter);
        s->iter = NULL;
        cJSON_Delete(resp);
        return NULL;
    }
    if (ss == STORE_ERR_TRIMMED) {
        tailer_alarm_trimmed(tl, t, s);
        s->last_seq[0] = '\0';
        free(s->iter);
        s->iter = NULL;
        cJSON_Delete(resp);
        return NULL;
    }
    if (ss != STORE_OK) {
        log_warn(NULL, "table %s shard %s: GetRecords: %s: %s", t->name, s->id, store_status_name(ss),
                 store_errstr(tl->streams));
        if (ss == STORE_ERR_NOT_FOUND || ss == STORE_ERR_VALIDATION) {
            free(s->iter);
            s->iter = NULL;
            t->next_describe = 0;
        }
        s->next_poll = now + AGENT_ERROR_BACKOFF_MS;
        cJSON_Delete(resp);
        return NULL;
    }
    return resp;
}

/* One poll of shard s: a GetRecords, or the page held at a record whose delete token was
 * tentative (s->held_page: classified again without reading the stream), processed. */
static void tailer_poll(tailer *tl, table_tail *t, shard *s, long long now) {
    const cfg_region *cfg = tl->a->cfg;
    cJSON *resp, *records;
    const cJSON *next;
    int nrec, nlocal = 0, held = s->held_page != NULL, backlog = 0;

    if (held && tailer_still_held(tl, t, s, now)) {
        s->next_poll = tailer_hold_next(s, now);
        return;
    }
    resp = held ? s->held_page : tailer_read(tl, t, s, now);
    s->held_page = NULL;
    if (!resp) return;
    records = cJSON_GetObjectItemCaseSensitive(resp, "Records");
    nrec = cJSON_IsArray(records) ? cJSON_GetArraySize(records) : 0;
    if (nrec > 0) {
        size_t taken = 0;
        nlocal = tailer_process(tl, t, s, records, &taken);
        if (nlocal < 0) {
            /* not known to be committed: read the records again after the checkpoint,
             * which is re-read first in case the commit happened */
            free(s->iter);
            s->iter = NULL;
            s->ckpt_unsure = 1;
            s->next_poll = now + AGENT_ERROR_BACKOFF_MS;
            cJSON_Delete(resp);
            return;
        }
        if (nlocal > 0) {
            tailer_notify(tl, t);
            s->active_at = now;
        }
        /* only a page of no local change waits, and its wait is decided on the page as read:
         * a held page's rest is smaller than the page was */
        backlog = nlocal == 0 && (held ? s->held_backlog : !tailer_trickle(records, nrec, cfg->agent.batch_max));
        if (taken < (size_t)nrec) {
            /* held: the page from the held record on is classified again once its token is
             * settled (within ms, normally); its NextShardIterator is used after that */
            for (size_t k = 0; k < taken; k++) cJSON_DeleteItemFromArray(records, 0);
            s->held_page = resp;
            s->held_backlog = backlog;
            s->next_poll = tailer_hold_next(s, now);
            return;
        }
    }
    next = cJSON_GetObjectItemCaseSensitive(resp, "NextShardIterator");
    free(s->iter);
    s->iter = NULL;
    if (cJSON_IsString(next) && *next->valuestring) {
        s->iter = strdup(next->valuestring);
        /* at once while local changes come, or while a backlog is read; a shard whose
         * application has just written is polled every active_poll_ms for
         * AGENT_ACTIVE_WINDOW_MS: its next write is probably close, and each ms of pause is
         * a ms of lag; a trickle of echoes alone waits echo_poll_ms (agent.h) */
        if (nrec > 0 && (nlocal > 0 || backlog))
            s->next_poll = now;
        else if (s->active_at && now - s->active_at < AGENT_ACTIVE_WINDOW_MS)
            s->next_poll = now + cfg->agent.active_poll_ms;
        else s->next_poll = now + (nrec > 0 ? cfg->agent.echo_poll_ms : cfg->agent.idle_poll_ms);
    } else {
        tailer_mark_done(tl, t, s);
    }
    cJSON_Delete(resp);
}

static int tailer_init(tailer *tl, agent_ctx *a, char *err, size_t errlen) {
    char key[256];
    redisReply *r;
    memset(tl, 0, sizeof *tl);
    tl->a = a;
    tl->ttl_s = a->cfg->replicator.tombstone_ttl_s;
    tl->s = daemon_store_new(a->cfg, err, errlen);
    if (!tl->s) return -1;
    tl->hold_max_ms = store_call_max_ms(tl->s) + AGENT_HOLD_SLACK_MS;
    tl->streams = daemon_streams_new(a->cfg, err, errlen);
    if (!tl->streams) return -1;
    tl->st = daemon_state_new(a->cfg, err, errlen);
    if (!tl->st) return -1;
    /* waiting on the store or Redis is not a stall (agent_ctx.stall_ms) */
    store_set_beacon(tl->s, &a->tailer_beat);
    store_set_beacon(tl->streams, &a->tailer_beat);
    state_set_beacon(tl->st, &a->tailer_beat);
    daemon_check_redis(tl->st); /* once per start and reload of the agent: the tailer's */
    tl->clock = lww_clock_new(a->cfg->region);
    if (!tl->clock) {
        snprintf(err, errlen, "cannot create the clock");
        return -1;
    }
    /* never issue a version below one issued before a restart: a start that cannot read
     * the saved clock (Redis down, loading, the key of another type) fails, as the
     * shipper's does without its acknowledgements */
    if (state_key(tl->st, key, sizeof key, STATE_K_HLC) != 0) {
        snprintf(err, errlen, "the saved clock's key name is too long");
        return -1;
    }
    if (!(r = state_cmd(tl->st, "GET %s", key))) {
        snprintf(err, errlen, "cannot read the saved clock %s: %s", key, state_errstr(tl->st));
        return -1;
    }
    {
        lww_version v;
        char e[128] = "";
        if (r->type == REDIS_REPLY_STRING && lww_version_parse(r->str, &v, e, sizeof e) == 0) {
            lww_clock_observe(tl->clock, &v);
            if (lww_ahead(&v, (uint64_t)daemon_wall_ms(), (uint64_t)a->cfg->replicator.max_clock_skew_ms))
                log_error(NULL, "the clock saved in Redis (%s) is %lld ms ahead of this region's wall clock: "
                          "peers hold back this region's changes until their clocks reach it", r->str,
                          (long long)v.ms - daemon_wall_ms());
        } else if (r->type != REDIS_REPLY_NIL) {
            /* each key's own versions are still observed as its records are read */
            log_error(NULL, "the clock saved in Redis (%s) is not a version (%s): starting from this "
                      "region's wall clock", key, r->type == REDIS_REPLY_STRING ? e : "not a string");
        }
        freeReplyObject(r);
    }
    tl->notify = zmq_socket(a->zctx, ZMQ_PAIR);
    if (!tl->notify || zmq_connect(tl->notify, a->notify_ep) != 0) {
        snprintf(err, errlen, "notify socket: %s", zmq_strerror(errno));
        return -1;
    }
    tl->n_tables = a->cfg->n_tables;
    tl->tables = calloc(tl->n_tables, sizeof *tl->tables);
    if (!tl->tables) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < tl->n_tables; i++) tl->tables[i].name = a->cfg->tables[i];
    return 0;
}

static void tailer_cleanup(tailer *tl) {
    for (size_t i = 0; tl->tables && i < tl->n_tables; i++) tailer_forget_shards(&tl->tables[i]);
    free(tl->tables);
    if (tl->notify) zmq_close(tl->notify);
    lww_clock_free(tl->clock);
    state_free(tl->st);
    store_free(tl->streams);
    store_free(tl->s);
}

int tailer_run(agent_ctx *a) {
    tailer tl;
    char err[512];
    int rc = 0, ready_logged = 0;

    if (tailer_init(&tl, a, err, sizeof err) != 0) {
        log_error(NULL, "tailer: %s", err);
        atomic_store(&a->failed, 1);
        tailer_cleanup(&tl);
        return -1;
    }
    while (!atomic_load(&a->stop_reading) && !atomic_load(&a->failed)) {
        long long turn = daemon_mono_ms();
        atomic_store(&a->tailer_beat, turn);
        if (turn - tl.published_at >= AGENT_HOUSEKEEP_MS) {
            daemon_metrics_store(a->reg, "table", tl.s);
            daemon_metrics_store(a->reg, "streams", tl.streams);
            tl.published_at = turn;
        }
        long long now = daemon_mono_ms(), next = now + 50;
        size_t ready = 0;
        for (size_t i = 0; i < tl.n_tables; i++) {
            table_tail *t = &tl.tables[i];
            if (t->wake_pending) tailer_notify(&tl, t);
            if (!*t->stream_arn) {
                if (now >= t->next_describe && tailer_open_stream(&tl, t) == 0) {
                    t->next_describe = 0;
                } else {
                    if (now >= t->next_describe) {
                        t->stream_arn[0] = '\0';
                        t->next_describe = now + AGENT_ERROR_BACKOFF_MS * 4;
                    }
                    /* a table the store describes with no usable stream (logged) does not
                     * hold up the others: the agent is ready without it, keeps looking, and
                     * says so again every AGENT_NO_STREAM_WARN_MS. One it cannot describe
                     * (the store unreachable) or read the checkpoints of does hold it up. */
                    if (t->no_stream) {
                        ready++;
                        if (t->no_stream_at && now - t->no_stream_at >= AGENT_NO_STREAM_WARN_MS)
                            log_error(NULL, "table %s: still no stream with StreamViewType NEW_AND_OLD_IMAGES: "
                                      "its writes are NOT replicated", t->name);
                        if (!t->no_stream_at || now - t->no_stream_at >= AGENT_NO_STREAM_WARN_MS)
                            t->no_stream_at = now;
                    }
                    continue;
                }
            }
            if (now >= t->next_describe) tailer_describe(&tl, t, now);
            ready++;
            for (size_t j = 0; j < t->n_shards && !atomic_load(&a->stop_reading); j++) {
                shard *s = &t->shards[j];
                if (!tailer_shard_ready(t, s)) continue;
                if (s->next_poll <= now) tailer_poll(&tl, t, s, now);
                if (s->next_poll < next) next = s->next_poll;
            }
        }
        if (ready == tl.n_tables && !ready_logged) {
            size_t open = 0;
            for (size_t i = 0; i < tl.n_tables; i++) open += *tl.tables[i].stream_arn != '\0';
            atomic_store(&a->tailer_ready, 1);
            if (open == tl.n_tables) log_info(NULL, "tailing %zu table(s)", tl.n_tables);
            else
                log_warn(NULL, "tailing %zu of %zu table(s); the others have no usable stream (see above) and are "
                         "looked at again every %d ms", open, tl.n_tables, AGENT_ERROR_BACKOFF_MS * 4);
            ready_logged = 1;
        }
        now = daemon_mono_ms();
        if (next > now) daemon_sleep_ms(next - now > 50 ? 50 : next - now);
    }
    tailer_cleanup(&tl);
    return rc;
}
