/* apply.c -- conditional, echo-marked writes of versioned changes (see apply.h).
 *
 * Owns nothing between calls. Per change, in order:
 *   1. one Redis round trip: [GET ll, GET tomb,] the pend token (a put's: SADD; a
 *      delete's: APPLY_LUA_DELTOKEN), EXPIRE pend;
 *   2. precheck (optional): a version <= max(ll, tomb) is lost (or the same), except
 *      a delete whose own version is the tombstone: it is written again (step 3 raised
 *      the tombstone before the DeleteItem, which may have failed);
 *   3. a delete raises the tombstone first (so a late, older put is rejected even if
 *      the item does not exist here);
 *   4. the store write with ConditionExpression
 *        attribute_not_exists(#v) OR #v < :v      (#v = tern:ver)
 *      which holds for items the region never versioned and for older versions (a
 *      repair's, apply_change.over: #w = :w AND #v < :v, the clobbering write still
 *      there, or attribute_not_exists(#k), still no item);
 *   5. the token is settled by the answer (apply_token_settle):
 *      - a put's token is removed only when the write certainly did not happen
 *        (condition failed, refused) and this call added it. After a transient error
 *        it stays: the write may have happened and its echo must still be recognised.
 *        The same holds when the store client retried inside the call: a condition
 *        failure naming our own tern:wid is our earlier attempt (written);
 *      - a delete's token is tentative ("T<version>@<deadline>") until its DeleteItem
 *        has answered (the agent holds a REMOVE whose matching token is tentative), then
 *        confirmed ("D<version>@<deadline>", atomically and only while still pending:
 *        APPLY_LUA_CONFIRM) if an item was removed or may have been, or taken back if
 *        certainly nothing was. The deadline (this host's wall clock, ms) is when the
 *        token was added plus APPLY_DELETE_SEND_MS plus the longest call of the store
 *        handle: the DeleteItem is sent within APPLY_DELETE_SEND_MS or not at all (the
 *        attempt fails), so its REMOVE, if any, was created by the deadline, and the
 *        agent does not take a record created well after it for its echo (agent.h,
 *        AGENT_TOKEN_CLOCK_MARGIN_MS). Adding a tentative token replaces one of the same
 *        version (APPLY_LUA_DELTOKEN): one found means an earlier attempt (before a crash
 *        or a failed watermark save) may have deleted the item, its stream record unread,
 *        so this attempt confirms the token rather than taking it back, and the deadline
 *        moves on to this attempt's. A confirmed token of the same version is left as it
 *        is (the agent may be consuming it). After a transient error it stays tentative:
 *        the retry of the change settles it. A DeleteItem never sent (Redis failed or was
 *        too slow before it) takes its own token back;
 *   6. a repair or a backfill copy (APPLY_TOMBCHECK) reads the tombstone again once
 *      written, and deletes itself again if a newer delete overtook it
 *      (apply_undo_repair).
 * Invariant: every Tern write to the table has its token in pend:T:KID before the
 * write is sent. */
#include "apply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "item.h"
#include "log.h"

const char *apply_result_name(apply_result r) {
    switch (r) {
    case APPLY_WRITTEN: return "written";
    case APPLY_LOST: return "lost";
    case APPLY_SAME: return "same";
    case APPLY_REFUSED: return "refused";
    case APPLY_ERROR: return "error";
    }
    return "?";
}

/* CLOCK_MONOTONIC, ms: the time a delete's Redis steps took (its token's deadline is on
 * the wall clock, lww_wall_ms). */
static long long apply_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *apply_stored_version(const cJSON *item) {
    const char *s = item ? item_get_s(item, ITEM_ATTR_VER) : NULL;
    lww_version v;
    char e[8];
    return s && lww_version_parse(s, &v, e, sizeof e) == 0 ? s : "";
}

int apply_token_parse(const char *tok, apply_token *out) {
    size_t n;
    memset(out, 0, sizeof *out);
    out->deadline = -1;
    if (tok[0] != APPLY_TOKEN_DELETE && tok[0] != APPLY_TOKEN_TENTATIVE) return -1;
    n = strcspn(tok + 1, "/@");
    if (n == 0 || n >= LWW_VERSION_STRLEN) return -1;
    out->kind = tok[0];
    memcpy(out->version, tok + 1, n);
    out->version[n] = '\0';
    if (tok[1 + n] == '/') {
        out->undo = tok + 2 + n;
    } else if (tok[1 + n] == '@') {
        char *end;
        errno = 0;
        out->deadline = strtoll(tok + 2 + n, &end, 10);
        if (errno || end == tok + 2 + n || *end || out->deadline < 0) out->deadline = -1; /* no bound */
    }
    return 0;
}

void apply_token_confirmed(const char *tok, char *out) {
    snprintf(out, APPLY_TOKEN_MAX, "%c%s", APPLY_TOKEN_DELETE, tok + 1); /* (hiredis has no %c) */
}

static void apply_copy_reply(const redisReply *r, char *out) {
    out[0] = '\0';
    if (r && r->type == REDIS_REPLY_STRING && r->len < LWW_VERSION_STRLEN) {
        memcpy(out, r->str, r->len);
        out[r->len] = '\0';
    }
}

int apply_known(state *st, const char *table, const char *kid, char *ll, char *tomb,
                char *err, size_t errlen) {
    char kll[512], ktomb[512];
    redisReply *rep[2];
    if (state_key(st, kll, sizeof kll, STATE_K_LASTLOCAL, table, kid) != 0 ||
        state_key(st, ktomb, sizeof ktomb, STATE_K_TOMB, table, kid) != 0) {
        snprintf(err, errlen, "key name too long");
        return -1;
    }
    state_append(st, "GET %s", kll);
    state_append(st, "GET %s", ktomb);
    if (state_flush_ok(st, rep, 2) != 0) {
        snprintf(err, errlen, "%s", state_errstr(st));
        return -1;
    }
    apply_copy_reply(rep[0], ll);
    apply_copy_reply(rep[1], tomb);
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    return 0;
}

/* Larger of two version texts (either may be ""): bytewise order is version order. */
static const char *apply_max(const char *a, const char *b) { return strcmp(a, b) >= 0 ? a : b; }

static int apply_token_remove(state *st, const char *kpend, const char *token, int own) {
    redisReply *r;
    if (!own) return 0; /* an earlier attempt's token: its write may have happened */
    r = state_cmd(st, "SREM %s %s", kpend, token);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

/* What one attempt's answer says of its write, for the echo token (apply_token_settle). */
typedef enum {
    APPLY_TOK_WRITTEN, /* it wrote, or may have (the store client retried inside the call) */
    APPLY_TOK_NONE     /* this attempt certainly wrote nothing */
} apply_tok_fate;
/* (No answer at all leaves the token as it is: the change is retried, and its retry
 * settles it.) */

/* Lua: confirms a delete's echo token, atomically: "T<version>" (ARGV[1]) becomes
 * "D<version>" (ARGV[2]) only if it is still pending, and the set keeps its TTL (ARGV[3]
 * seconds: removing its last member deleted it with its TTL). An agent that has already
 * spent the token (it waited longer than its hold limit, agent.h) has taken its REMOVE
 * for this echo; a "D" token added then would match a later local delete. */
#define APPLY_LUA_CONFIRM \
    "if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then " \
    "redis.call('SADD', KEYS[1], ARGV[2]) redis.call('EXPIRE', KEYS[1], ARGV[3]) end " \
    "return 1"

/* Lua: adds a delete's tentative token ARGV[1] ("T<version>@<deadline>") in place of a
 * tentative token of the same version ARGV[2] left by an earlier attempt of the change
 * (with or without "@<deadline>"). Returns 1 if there was none (the token is this
 * attempt's own), 0 if one was replaced. */
#define APPLY_LUA_DELTOKEN \
    "local own = 1 " \
    "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do " \
    "if m:sub(1, 1) == 'T' and (m:sub(2) == ARGV[2] or m:sub(2, #ARGV[2] + 2) == ARGV[2] .. '@') then " \
    "redis.call('SREM', KEYS[1], m) own = 0 end end " \
    "redis.call('SADD', KEYS[1], ARGV[1]) " \
    "return own"

/* Settles the echo token of change c after its attempt (apply.c header, step 5). own: this
 * attempt's token was not there before it (a put's SADD, a delete's APPLY_LUA_DELTOKEN).
 * 0, or -1 (Redis failed; the token may stay tentative, which the caller reports as
 * APPLY_ERROR so that the change is retried and settles it). */
static int apply_token_settle(state *st, const apply_change *c, const char *kpend, const char *token, int own,
                              apply_tok_fate fate) {
    char confirmed[APPLY_TOKEN_MAX], ttl[32];
    redisReply *r;
    if (fate == APPLY_TOK_NONE && (own || !c->is_delete)) return apply_token_remove(st, kpend, token, own);
    if (!c->is_delete) return 0; /* written or maybe: a put's echo carries its tern:wid */
    apply_token_confirmed(token, confirmed);
    snprintf(ttl, sizeof ttl, "%ld", c->ttl_s);
    r = state_cmd(st, "EVAL %s 1 %s %s %s %s", APPLY_LUA_CONFIRM, kpend, token, confirmed, ttl);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

/* The store refused the write's condition; item is the stored item (ALL_OLD) or NULL.
 * A put whose own tern:wid is stored was written by an earlier attempt whose answer was
 * lost (its echo is coming). Otherwise a newer or equal version is stored, and this
 * attempt wrote nothing; but when the store client retried inside the call, an earlier
 * try may have written: a put of this very version (stored), or a delete (of an older
 * item, since replaced). The token is settled accordingly. */
static apply_result apply_on_condition(state *st, const apply_change *c, const cJSON *item, const char *wid,
                                       const char *kpend, const char *token, int own_token, int retried,
                                       char *winner, char *err, size_t errlen) {
    const char *stored = item ? item_get_s(item, ITEM_ATTR_VER) : NULL;
    const char *stored_wid = item ? item_get_s(item, ITEM_ATTR_WID) : NULL;
    apply_result res;
    if (!c->is_delete && stored_wid && strcmp(stored_wid, wid) == 0) return APPLY_WRITTEN;
    if (winner && stored) snprintf(winner, LWW_VERSION_STRLEN, "%s", stored);
    res = stored && strcmp(stored, c->version) == 0 ? APPLY_SAME : APPLY_LOST;
    if (apply_token_settle(st, c, kpend, token, own_token,
                           retried && (c->is_delete || res == APPLY_SAME) ? APPLY_TOK_WRITTEN : APPLY_TOK_NONE) != 0) {
        snprintf(err, errlen, "%s", state_errstr(st));
        return APPLY_ERROR;
    }
    return res;
}

static cJSON *apply_condition_values(const char *version) {
    cJSON *vals = cJSON_CreateObject(), *v = cJSON_CreateObject();
    if (!vals || !v || !cJSON_AddStringToObject(v, "S", version)) {
        cJSON_Delete(vals);
        cJSON_Delete(v);
        return NULL;
    }
    cJSON_AddItemToObject(vals, ":v", v);
    return vals;
}

/* The condition of every Tern write: the item was never versioned here, or is older. */
#define APPLY_COND_NEWER "attribute_not_exists(#v) OR #v < :v"
/* A repair's (apply_change.over): the clobbering write is still there, and older ... */
#define APPLY_COND_OVER "#w = :w AND #v < :v"
/* ... or, after a delete, still no item (#k: a key attribute, which every item has). */
#define APPLY_COND_ABSENT "attribute_not_exists(#k)"

/* The condition of c's write: APPLY_COND_NEWER, or a repair's (c->over). */
static const char *apply_cond(const apply_change *c) {
    return !c->over ? APPLY_COND_NEWER : *c->over ? APPLY_COND_OVER : APPLY_COND_ABSENT;
}

/* Builds the PutItem/DeleteItem request, conditional on cond (over #v = tern:ver and :v =
 * the change's version; #w = tern:wid and :w = c->over, and #k = a key attribute, where
 * cond names them: DynamoDB refuses unused names). Returns NULL on allocation failure. */
static cJSON *apply_request(const apply_change *c, const char *wid, const char *cond) {
    cJSON *req = cJSON_CreateObject(), *names = NULL, *vals = NULL, *item = NULL;
    if (!req) return NULL;
    if (!cJSON_AddStringToObject(req, "TableName", c->table)) goto fail;
    if (c->is_delete) {
        cJSON *k = cJSON_Duplicate(c->keys, 1);
        if (!k) goto fail;
        cJSON_AddItemToObject(req, "Key", k);
        if (!cJSON_AddStringToObject(req, "ReturnValues", "ALL_OLD")) goto fail;
    } else {
        item = cJSON_Duplicate(c->image, 1);
        if (!item) goto fail;
        cJSON_AddItemToObject(req, "Item", item);
        if (item_set_s(item, ITEM_ATTR_VER, c->version) != 0 ||
            item_set_s(item, ITEM_ATTR_WID, wid) != 0)
            goto fail;
    }
    if (!cJSON_AddStringToObject(req, "ConditionExpression", cond)) goto fail;
    names = cJSON_AddObjectToObject(req, "ExpressionAttributeNames");
    if (!names) goto fail;
    if (strstr(cond, "#v") && !cJSON_AddStringToObject(names, "#v", ITEM_ATTR_VER)) goto fail;
    if (strstr(cond, "#w") && !cJSON_AddStringToObject(names, "#w", ITEM_ATTR_WID)) goto fail;
    if (strstr(cond, "#k") && (!c->keys || !c->keys->child || !c->keys->child->string ||
                               !cJSON_AddStringToObject(names, "#k", c->keys->child->string)))
        goto fail;
    if (strstr(cond, ":v")) {
        vals = apply_condition_values(c->version);
        if (!vals) goto fail;
        cJSON_AddItemToObject(req, "ExpressionAttributeValues", vals);
        if (strstr(cond, ":w")) {
            cJSON *w = cJSON_CreateObject();
            if (!w || !cJSON_AddStringToObject(w, "S", c->over ? c->over : "")) {
                cJSON_Delete(w);
                goto fail;
            }
            cJSON_AddItemToObject(vals, ":w", w);
        }
    }
    if (!cJSON_AddStringToObject(req, "ReturnValuesOnConditionCheckFailure", "ALL_OLD")) goto fail;
    return req;
fail:
    cJSON_Delete(req);
    return NULL;
}

/* The checks against what the region knows of the key (ll: its last local change, tomb:
 * its last delete), as flags ask. 1 when they decide the change without a write (*res
 * LOST or SAME, winner the known version), 0 when it is to be written.
 *   APPLY_PRECHECK: a version <= max(ll, tomb) is lost (equal: the same), except a delete
 *     whose own version is the tombstone: an earlier attempt raised it and may have failed
 *     before its DeleteItem, so that is no proof the item is gone: delete again.
 *   APPLY_TOMBCHECK: a put older than the tombstone is lost (the condition on tern:ver
 *     cannot see a deleted item's version, so the put would bring the item back). */
static int apply_decide(const apply_change *c, const char *ll, const char *tomb, int flags, char *winner,
                        apply_result *res) {
    const char *known = NULL;
    if (flags & APPLY_PRECHECK) {
        int own_tomb;
        known = apply_max(ll, tomb);
        own_tomb = c->is_delete && strcmp(c->version, known) == 0 && strcmp(ll, c->version) < 0;
        if (!*known || strcmp(c->version, known) > 0 || own_tomb) known = NULL;
    }
    if (!known && (flags & APPLY_TOMBCHECK) && !c->is_delete && strcmp(c->version, tomb) < 0) known = tomb;
    if (!known) return 0;
    if (winner) snprintf(winner, LWW_VERSION_STRLEN, "%s", known);
    *res = strcmp(c->version, known) == 0 ? APPLY_SAME : APPLY_LOST;
    return 1;
}

/* A fresh write id "<region>.<16 hex>" (APPLY_WID_MAX bytes). 0/-1 (err). */
static int apply_new_wid(state *st, char *wid, size_t len, char *err, size_t errlen) {
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -1;
    }
    snprintf(wid, len, "%s.%02x%02x%02x%02x%02x%02x%02x%02x", state_region(st), rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5], rnd[6], rnd[7]);
    return 0;
}

/* A repair (an APPLY_TOMBCHECK put of c->version) that loses to the newer tombstone
 * `tomb` may be in the table all the same: its tombstone check and its write are two
 * steps, and a delete that raised its tombstone and removed the item between them leaves
 * the repair's put behind it, an item that every peer deleted (a divergence). This
 * deletes the item if it holds exactly the repair's version (condition #v = :v: a newer
 * write, or an item already gone, is left alone), under the echo token
 * "D<tomb>/<repair version>". The agent matches such a token only with the REMOVE of an
 * item stored at exactly the repair's version, and only when no plain delete token fits
 * (then spending it with the plain one): when this delete and the replicator's of the
 * same item race (one removes it, the other finds nothing and takes its token back), a
 * token read before it was taken back can only be left over as this one, which matches
 * nothing but a state written by this very repair. The token is the same text on every
 * attempt: like a delete's, it is taken back only by the attempt that added it, when
 * certainly nothing was deleted.
 * 0, or -1 (err; the caller retries the repair, which comes back here: the tombstone
 * check decides it lost before writing). */
static int apply_undo_repair(store *s, state *st, const apply_change *c, const char *tomb, const char *kpend,
                             char *err, size_t errlen) {
    char token[APPLY_TOKEN_MAX];
    redisReply *rep[2];
    apply_change d = *c;
    cJSON *req, *resp = NULL;
    const cJSON *attrs;
    store_status ss;
    store_stats before, after;
    int deleted, retried, own;

    snprintf(token, sizeof token, "%c%s/%s", APPLY_TOKEN_DELETE, tomb, c->version);
    state_append(st, "SADD %s %s", kpend, token);
    state_append(st, "EXPIRE %s %ld", kpend, c->ttl_s);
    if (state_flush_ok(st, rep, 2) != 0) {
        snprintf(err, errlen, "%s", state_errstr(st));
        return -1;
    }
    own = state_reply_ll(rep[0], 1) != 0;
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    d.is_delete = 1;
    req = apply_request(&d, "", "#v = :v");
    if (!req) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    store_get_stats(s, &before);
    ss = store_call(s, "DeleteItem", req, &resp);
    cJSON_Delete(req);
    store_get_stats(s, &after);
    retried = after.requests - before.requests > 1;
    attrs = ss == STORE_OK && resp ? cJSON_GetObjectItemCaseSensitive(resp, "Attributes") : NULL;
    deleted = attrs && cJSON_IsObject(attrs) && attrs->child;
    cJSON_Delete(resp);
    if (ss != STORE_OK && ss != STORE_ERR_CONDITION) {
        /* the token stays: the delete may have happened */
        snprintf(err, errlen, "DeleteItem (undoing a repair) %s: %s", store_status_name(ss), store_errstr(s));
        return -1;
    }
    if (deleted) {
        log_info(NULL, "table %s: key %s: repair to %s had landed after the newer delete %s: deleted it again",
                 c->table, c->kid, c->version, tomb);
    } else if (!retried && apply_token_remove(st, kpend, token, own) != 0) {
        snprintf(err, errlen, "%s", state_errstr(st));
        return -1;
    }
    return 0;
}

/* A repair decided lost by the tombstone before it wrote: an earlier attempt may have
 * landed after the delete (its undo failed). The item is read first (consistent), so
 * that the common case, a repair merely too late, adds no token and no write: the undo
 * runs only when the item holds exactly the repair's version. 0/-1 (err). */
static int apply_undo_if_landed(store *s, state *st, const apply_change *c, const char *tomb, const char *kpend,
                                char *err, size_t errlen) {
    cJSON *item = NULL;
    const char *v;
    int rc = 0;
    store_status ss = store_get_item(s, c->table, c->keys, 1, &item);
    if (ss != STORE_OK) {
        snprintf(err, errlen, "GetItem (a repair lost to a delete) %s: %s", store_status_name(ss), store_errstr(s));
        return -1;
    }
    v = item ? item_get_s(item, ITEM_ATTR_VER) : NULL;
    if (v && strcmp(v, c->version) == 0) rc = apply_undo_repair(s, st, c, tomb, kpend, err, errlen);
    cJSON_Delete(item);
    return rc;
}

/* The tombstone of the key read again after a repair was written: a newer one means a
 * delete ran between the repair's tombstone check and its write, which apply_undo_repair
 * undoes. *res becomes APPLY_LOST (winner the tombstone) then. 0/-1 (err). */
static int apply_recheck_repair(store *s, state *st, const apply_change *c, const char *ktomb, const char *kpend,
                                apply_result *res, char *winner, char *err, size_t errlen) {
    char tomb[LWW_VERSION_STRLEN];
    redisReply *r = state_cmd(st, "GET %s", ktomb);
    if (!r) {
        snprintf(err, errlen, "%s", state_errstr(st));
        return -1;
    }
    apply_copy_reply(r, tomb);
    freeReplyObject(r);
    if (strcmp(c->version, tomb) >= 0) return 0;
    if (apply_undo_repair(s, st, c, tomb, kpend, err, errlen) != 0) return -1;
    *res = APPLY_LOST;
    if (winner) snprintf(winner, LWW_VERSION_STRLEN, "%s", tomb);
    return 0;
}

static apply_result apply_write_answer(store *s, state *st, const apply_change *c, const char *wid,
                                       const char *kpend, const char *token, int own_token, store_status ss,
                                       const cJSON *resp, int retried, char *winner, char *err, size_t errlen);

/* c's write was never sent (its request could not be built, or the store was down,
 * apply_group_each): its token is taken back (best effort); APPLY_ERROR, err "out of
 * memory" (the caller may say otherwise). */
static apply_result apply_write_unsent(state *st, const apply_change *c, const char *kpend, const char *token,
                                       int own_token, char *err, size_t errlen) {
    snprintf(err, errlen, "out of memory");
    (void)apply_token_settle(st, c, kpend, token, own_token, APPLY_TOK_NONE);
    return APPLY_ERROR;
}

/* The conditional write of c (PutItem or DeleteItem over apply_cond), once its
 * echo token is in Redis and what the region knows of the key did not decide it; then what
 * the answer means for the token (apply_token_settle): the write certainly did not happen
 * (a newer or equal version stored, a request refused for good, a delete that removed
 * nothing), happened or may have, or got no answer. A delete whose token cannot be settled
 * is APPLY_ERROR: its retry settles it. Returns the change's result; err on
 * APPLY_ERROR/APPLY_REFUSED. */
static apply_result apply_write(store *s, state *st, const apply_change *c, const char *wid, const char *kpend,
                                const char *token, int own_token, char *winner, char *err, size_t errlen) {
    cJSON *req = apply_request(c, wid, apply_cond(c)), *resp = NULL;
    store_status ss;
    store_stats before, after;
    apply_result res;
    if (!req) return apply_write_unsent(st, c, kpend, token, own_token, err, errlen);
    store_get_stats(s, &before);
    ss = store_call(s, c->is_delete ? "DeleteItem" : "PutItem", req, &resp);
    cJSON_Delete(req);
    store_get_stats(s, &after);
    /* the store client retried inside the call: an earlier attempt may have written, and
     * this answer may be about that write (the token must then stay: its echo is coming) */
    res = apply_write_answer(s, st, c, wid, kpend, token, own_token, ss, resp, after.requests - before.requests > 1,
                             winner, err, errlen);
    cJSON_Delete(resp);
    return res;
}

/* What the answer ss (resp: its body, or NULL) to c's conditional write means, for the
 * change and for its token (apply_write). s is the handle that made the call (its
 * errstr); retried: the call took more than one attempt. */
static apply_result apply_write_answer(store *s, state *st, const apply_change *c, const char *wid,
                                       const char *kpend, const char *token, int own_token, store_status ss,
                                       const cJSON *resp, int retried, char *winner, char *err, size_t errlen) {
    apply_result res;
    if (ss == STORE_OK) {
        const cJSON *attrs = resp ? cJSON_GetObjectItemCaseSensitive(resp, "Attributes") : NULL;
        /* a delete that removed nothing has no stream record to carry its token */
        int none = c->is_delete && !(attrs && cJSON_IsObject(attrs) && attrs->child) && !retried;
        res = APPLY_WRITTEN;
        if (apply_token_settle(st, c, kpend, token, own_token, none ? APPLY_TOK_NONE : APPLY_TOK_WRITTEN) != 0) {
            snprintf(err, errlen, "settling the delete's echo token: %s", state_errstr(st));
            res = APPLY_ERROR; /* (a put's token is left as it is: no Redis call to fail) */
        }
    } else if (ss == STORE_ERR_CONDITION) {
        res = apply_on_condition(st, c, resp ? cJSON_GetObjectItemCaseSensitive(resp, "Item") : NULL, wid, kpend,
                                 token, own_token, retried, winner, err, errlen);
    } else {
        snprintf(err, errlen, "%s %s: %s", c->is_delete ? "DeleteItem" : "PutItem",
                 store_status_name(ss), store_errstr(s));
        res = APPLY_ERROR; /* no answer: the token stays as it is, for the retry to settle */
        if (ss == STORE_ERR_VALIDATION) {
            /* refused for good: this attempt wrote nothing (an earlier try inside the call
             * may have), and a token of nothing must not linger */
            res = APPLY_REFUSED;
            if (apply_token_settle(st, c, kpend, token, own_token, retried ? APPLY_TOK_WRITTEN : APPLY_TOK_NONE) != 0)
                res = APPLY_ERROR;
        }
    }
    return res;
}

apply_result apply_one(store *s, state *st, const apply_change *c, int flags,
                       char *winner, char *err, size_t errlen) {
    char kll[512], ktomb[512], kpend[512], token[APPLY_TOKEN_MAX], wid[APPLY_WID_MAX];
    char ll[LWW_VERSION_STRLEN] = "", tomb[LWW_VERSION_STRLEN] = "";
    redisReply *rep[4] = {0};
    size_t n = 0;
    apply_result res = APPLY_ERROR;
    int own_token;   /* the token was not there before: this call may remove it */
    long long t_add = 0; /* a delete's: monotonic ms when its token was made */

    if (winner) winner[0] = '\0';
    if (state_key(st, kll, sizeof kll, STATE_K_LASTLOCAL, c->table, c->kid) != 0 ||
        state_key(st, ktomb, sizeof ktomb, STATE_K_TOMB, c->table, c->kid) != 0 ||
        state_key(st, kpend, sizeof kpend, STATE_K_PEND, c->table, c->kid) != 0) {
        snprintf(err, errlen, "key name too long");
        return APPLY_ERROR;
    }
    if (c->is_delete) { /* a delete writes no tern:wid */
        wid[0] = '\0';
        t_add = apply_mono_ms();
        snprintf(token, sizeof token, "%c%s@%llu", APPLY_TOKEN_TENTATIVE, c->version,
                 (unsigned long long)(lww_wall_ms() + APPLY_DELETE_SEND_MS + (uint64_t)store_call_max_ms(s)));
    } else {
        if (apply_new_wid(st, wid, sizeof wid, err, errlen) != 0) return APPLY_ERROR;
        snprintf(token, sizeof token, "%s", wid);
    }

    /* 1. one round trip: what the region knows of the key, and the echo token */
    if (flags & (APPLY_PRECHECK | APPLY_TOMBCHECK)) {
        state_append(st, "GET %s", kll);
        state_append(st, "GET %s", ktomb);
        n = 2;
    }
    if (c->is_delete) state_append(st, "EVAL %s 1 %s %s %s", APPLY_LUA_DELTOKEN, kpend, token, c->version);
    else state_append(st, "SADD %s %s", kpend, token);
    state_append(st, "EXPIRE %s %ld", kpend, c->ttl_s);
    n += 2;
    if (state_flush_ok(st, rep, n) != 0) { /* no write without its token */
        snprintf(err, errlen, "%s", state_errstr(st));
        return APPLY_ERROR;
    }
    if (flags & (APPLY_PRECHECK | APPLY_TOMBCHECK)) {
        apply_copy_reply(rep[0], ll);
        apply_copy_reply(rep[1], tomb);
    }
    own_token = state_reply_ll(rep[n - 2], 1) != 0;
    for (size_t i = 0; i < n; i++) freeReplyObject(rep[i]);

    /* 2. decided by what the region knows: nothing is written, the token goes (a repair
     * lost to the tombstone: an earlier attempt may have landed after the delete) */
    if (apply_decide(c, ll, tomb, flags, winner, &res)) {
        if (apply_token_settle(st, c, kpend, token, own_token, APPLY_TOK_NONE) != 0) {
            snprintf(err, errlen, "%s", state_errstr(st));
            return APPLY_ERROR;
        }
        if ((flags & APPLY_TOMBCHECK) && !c->is_delete && res == APPLY_LOST && strcmp(c->version, tomb) < 0 &&
            apply_undo_if_landed(s, st, c, tomb, kpend, err, errlen) != 0)
            return APPLY_ERROR;
        return res;
    }

    /* 3. a delete raises the tombstone before touching the table */
    if (c->is_delete) {
        char ttl[32];
        redisReply *r;
        snprintf(ttl, sizeof ttl, "%ld", c->ttl_s);
        r = state_cmd(st, "EVAL %s 1 %s %s %s", APPLY_LUA_SETMAX, ktomb, c->version, ttl);
        if (!r) { /* no DeleteItem sent: settled as such (best effort) */
            snprintf(err, errlen, "%s", state_errstr(st));
            (void)apply_token_settle(st, c, kpend, token, own_token, APPLY_TOK_NONE);
            return APPLY_ERROR;
        }
        freeReplyObject(r);
        if (apply_mono_ms() - t_add > APPLY_DELETE_SEND_MS) { /* past the token's budget */
            snprintf(err, errlen, "Redis took over %d ms before the DeleteItem could be sent; not sent",
                     APPLY_DELETE_SEND_MS);
            (void)apply_token_settle(st, c, kpend, token, own_token, APPLY_TOK_NONE);
            return APPLY_ERROR;
        }
    }

    /* 4. the conditional write, and what its answer means for the token */
    res = apply_write(s, st, c, wid, kpend, token, own_token, winner, err, errlen);
    /* 5. a repair written: was a newer delete made between its check and its write? */
    if (res == APPLY_WRITTEN && (flags & APPLY_TOMBCHECK) && !c->is_delete &&
        apply_recheck_repair(s, st, c, ktomb, kpend, &res, winner, err, errlen) != 0)
        return APPLY_ERROR;
    return res;
}

/* ---- groups of puts: one Redis round trip, then one TransactWriteItems or single puts ---- */

typedef struct {
    char kll[512], ktomb[512], kpend[512];
    char wid[APPLY_WID_MAX];
    int open;            /* passed the precheck, not decided yet */
} apply_slot;

/* The group's members still open are written as single conditional puts, each under the
 * token the group added for it, soon after the group's precheck: a group under
 * APPLY_GROUP_MIN or without transactions (wr->no_txn), one whose transaction could not
 * be built, or one refused as a whole that could not be split (out of memory). Nothing of
 * theirs was written. In rounds of wr->n side by side (store_call_many), or of one on s
 * without wr. Once a whole round got no answer at all (STORE_ERR_TRANSIENT: the store is
 * down or hung), the rest are not sent: they fail as APPLY_ERROR, their tokens taken back,
 * and are retried later, instead of each waiting out its timeouts and retries in turn. */
static void apply_group_each(store *s, state *st, const apply_writers *wr, const apply_change *cs, size_t n,
                             apply_slot *sl, apply_outcome *out) {
    store *const *hs = wr && wr->n >= 2 ? wr->h : &s;
    size_t per = wr && wr->n >= 2 ? wr->n : 1, i = 0;
    int down = 0;
    while (i < n) {
        size_t idx[APPLY_WRITERS_MAX], k = 0, unanswered = 0;
        cJSON *reqs[APPLY_WRITERS_MAX], *resps[APPLY_WRITERS_MAX];
        store_status sts[APPLY_WRITERS_MAX];
        store_stats before[APPLY_WRITERS_MAX], after;
        for (; i < n && k < per; i++) {
            if (!sl[i].open) continue;
            sl[i].open = 0;
            if (down || !(reqs[k] = apply_request(&cs[i], sl[i].wid, apply_cond(&cs[i])))) {
                out[i].res = apply_write_unsent(st, &cs[i], sl[i].kpend, sl[i].wid, 1, out[i].err, sizeof out[i].err);
                if (down)
                    snprintf(out[i].err, sizeof out[i].err, "not sent: the store did not answer the puts before it");
                continue;
            }
            store_get_stats(hs[k], &before[k]);
            idx[k++] = i;
        }
        if (k == 0) continue;
        if (per == 1)
            sts[0] = store_call(hs[0], "PutItem", reqs[0], &resps[0]);
        else /* a round of one too: a writer's connection lives in wr->m's cache */
            store_call_many(wr->m, hs, k, "PutItem", (const cJSON *const *)reqs, sts, resps);
        for (size_t j = 0; j < k; j++) {
            size_t x = idx[j];
            store_get_stats(hs[j], &after);
            unanswered += sts[j] == STORE_ERR_TRANSIENT;
            /* retried: an earlier attempt inside the call may have written (apply_write) */
            out[x].res = apply_write_answer(hs[j], st, &cs[x], sl[x].wid, sl[x].kpend, sl[x].wid, 1, sts[j], resps[j],
                                            after.requests - before[j].requests > 1, out[x].winner, out[x].err,
                                            sizeof out[x].err);
            cJSON_Delete(reqs[j]);
            cJSON_Delete(resps[j]);
        }
        down = unanswered == k;
    }
}

/* The group's members still open go singly through apply_one, which reads what the region
 * knows of the key again and adds a token of its own: after a canceled transaction, whose
 * remaining members would otherwise be written one after another on a precheck that is
 * older by then (drop_token: nothing of theirs was written, so their group token goes), and
 * after a transaction that got no answer (it may have written them, so the group tokens
 * stay; each finds its version stored, APPLY_SAME, if it happened). */
static void apply_group_singly(store *s, state *st, const apply_change *cs, size_t n, apply_slot *sl,
                               apply_outcome *out, int drop_token) {
    for (size_t i = 0; i < n; i++) {
        if (!sl[i].open) continue;
        if (drop_token && apply_token_remove(st, sl[i].kpend, sl[i].wid, 1) != 0) {
            out[i].res = APPLY_ERROR;
            snprintf(out[i].err, sizeof out[i].err, "%s", state_errstr(st));
            continue;
        }
        out[i].res = apply_one(s, st, &cs[i], APPLY_PRECHECK, out[i].winner, out[i].err, sizeof out[i].err);
    }
}

/* The open members of a transaction the store refused as a whole: their tokens go (the
 * write did not happen) and each half of them is applied again as a group. */
static void apply_group_split(store *s, state *st, const apply_writers *wr, const apply_change *cs, size_t n,
                              apply_slot *sl, apply_outcome *out) {
    apply_change *sub = calloc(n, sizeof *sub);
    apply_outcome *so = calloc(n, sizeof *so);
    size_t *idx = calloc(n, sizeof *idx), m = 0;
    if (!sub || !so || !idx) {
        apply_group_each(s, st, wr, cs, n, sl, out);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!sl[i].open) continue;
        if (apply_token_remove(st, sl[i].kpend, sl[i].wid, 1) != 0) {
            out[i].res = APPLY_ERROR;
            snprintf(out[i].err, sizeof out[i].err, "%s", state_errstr(st));
            sl[i].open = 0;
            continue;
        }
        idx[m] = i;
        sub[m++] = cs[i];
    }
    apply_puts(s, st, wr, sub, m / 2, so);
    apply_puts(s, st, wr, sub + m / 2, m - m / 2, so + m / 2);
    for (size_t k = 0; k < m; k++) {
        out[idx[k]] = so[k];
        sl[idx[k]].open = 0;
    }
done:
    free(sub);
    free(so);
    free(idx);
}

void apply_puts(store *s, state *st, const apply_writers *wr, const apply_change *cs, size_t n,
                apply_outcome *out) {
    apply_slot *sl = calloc(n ? n : 1, sizeof *sl);
    redisReply **rep = calloc(4 * (n ? n : 1), sizeof *rep);
    cJSON *items = NULL, *resp = NULL;
    size_t open = 0;
    store_status ss;
    char token[40];
    unsigned char rnd[16];

    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].res = APPLY_ERROR;
    }
    if (!sl || !rep) {
        for (size_t i = 0; i < n; i++) snprintf(out[i].err, sizeof out[i].err, "out of memory");
        goto done;
    }
    /* 1. one round trip for the whole group: known versions, and each echo token */
    for (size_t i = 0; i < n; i++) {
        const apply_change *c = &cs[i];
        if (state_key(st, sl[i].kll, sizeof sl[i].kll, STATE_K_LASTLOCAL, c->table, c->kid) != 0 ||
            state_key(st, sl[i].ktomb, sizeof sl[i].ktomb, STATE_K_TOMB, c->table, c->kid) != 0 ||
            state_key(st, sl[i].kpend, sizeof sl[i].kpend, STATE_K_PEND, c->table, c->kid) != 0 ||
            apply_new_wid(st, sl[i].wid, sizeof sl[i].wid, out[i].err, sizeof out[i].err) != 0) {
            state_flush(st, NULL, 0); /* drops what was queued */
            for (size_t k = 0; k < n; k++) snprintf(out[k].err, sizeof out[k].err, "key name too long or no randomness");
            goto done;
        }
        state_append(st, "GET %s", sl[i].kll);
        state_append(st, "GET %s", sl[i].ktomb);
        state_append(st, "SADD %s %s", sl[i].kpend, sl[i].wid);
        state_append(st, "EXPIRE %s %ld", sl[i].kpend, c->ttl_s);
    }
    if (state_flush_ok(st, rep, 4 * n) != 0) { /* nothing written: every member retries */
        for (size_t i = 0; i < n; i++) snprintf(out[i].err, sizeof out[i].err, "%s", state_errstr(st));
        goto done;
    }
    /* 2. the precheck (apply_decide); the losers' tokens go in one more round trip */
    for (size_t i = 0; i < n; i++) {
        char ll[LWW_VERSION_STRLEN], tomb[LWW_VERSION_STRLEN];
        apply_copy_reply(rep[4 * i], ll);
        apply_copy_reply(rep[4 * i + 1], tomb);
        if (apply_decide(&cs[i], ll, tomb, APPLY_PRECHECK, out[i].winner, &out[i].res)) {
            state_append(st, "SREM %s %s", sl[i].kpend, sl[i].wid);
        } else {
            sl[i].open = 1;
            open++;
        }
    }
    for (size_t i = 0; i < 4 * n; i++) {
        freeReplyObject(rep[i]);
        rep[i] = NULL;
    }
    if (n - open > 0) {
        if (state_flush(st, rep, n - open) != 0) {
            for (size_t i = 0; i < n; i++) {
                if (sl[i].open) continue;
                out[i].res = APPLY_ERROR;
                snprintf(out[i].err, sizeof out[i].err, "%s", state_errstr(st));
            }
        }
        for (size_t i = 0; i < n - open; i++)
            if (rep[i]) freeReplyObject(rep[i]);
    }
    if (open < APPLY_GROUP_MIN || (wr && wr->no_txn)) { /* cheaper as plain conditional puts */
        apply_group_each(s, st, wr, cs, n, sl, out);
        goto done;
    }
    /* 3. one transaction: every open put with its condition */
    items = cJSON_CreateArray();
    for (size_t i = 0; items && i < n; i++) {
        cJSON *req, *op;
        if (!sl[i].open) continue;
        req = apply_request(&cs[i], sl[i].wid, apply_cond(&cs[i]));
        op = cJSON_CreateObject();
        if (!req || !op) {
            cJSON_Delete(req);
            cJSON_Delete(op);
            cJSON_Delete(items);
            items = NULL;
            break;
        }
        cJSON_AddItemToObject(op, "Put", req);
        cJSON_AddItemToArray(items, op);
    }
    if (!items || getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        apply_group_each(s, st, wr, cs, n, sl, out);
        goto done;
    }
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(token + 2 * i, 3, "%02x", rnd[i]);
    ss = store_transact_write(s, items, token, &resp);
    if (ss == STORE_OK) {
        for (size_t i = 0; i < n; i++)
            if (sl[i].open) {
                out[i].res = APPLY_WRITTEN;
                sl[i].open = 0;
            }
    } else if (ss == STORE_ERR_TRANSACTION) {
        /* canceled: nothing was written. A member whose condition failed has its answer
         * (a newer or equal version is stored, or our own wid from an attempt the client
         * retried); the others go singly. */
        const cJSON *reasons = resp ? cJSON_GetObjectItemCaseSensitive(resp, "CancellationReasons") : NULL;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const cJSON *r, *code;
            if (!sl[i].open) continue;
            r = cJSON_GetArrayItem(reasons, (int)k++);
            code = r ? cJSON_GetObjectItemCaseSensitive(r, "Code") : NULL;
            if (cJSON_IsString(code) && strcmp(code->valuestring, "ConditionalCheckFailed") == 0) {
                out[i].res = apply_on_condition(st, &cs[i], cJSON_GetObjectItemCaseSensitive(r, "Item"), sl[i].wid,
                                                sl[i].kpend, sl[i].wid, 1, 0, out[i].winner, out[i].err,
                                                sizeof out[i].err);
                sl[i].open = 0;
            }
        }
        apply_group_singly(s, st, cs, n, sl, out, 1);
    } else if (ss == STORE_ERR_VALIDATION) {
        /* refused as a whole (over the 4 MB request limit, say): certainly not written;
         * each half goes again (down to single puts, where a bad member is refused alone) */
        log_debug(NULL, "table %s: a transaction of %zu puts refused (%s): splitting it", cs[0].table, open,
                  store_errstr(s));
        apply_group_split(s, st, wr, cs, n, sl, out);
    } else {
        /* no answer: it may have been written, so the tokens stay, and each put alone finds
         * its version stored (APPLY_SAME) if it was */
        log_debug(NULL, "table %s: a transaction of %zu puts: %s: %s; writing them one by one", cs[0].table, open,
                  store_status_name(ss), store_errstr(s));
        apply_group_singly(s, st, cs, n, sl, out, 0);
    }
done:
    cJSON_Delete(items);
    cJSON_Delete(resp);
    free(rep);
    free(sl);
}
