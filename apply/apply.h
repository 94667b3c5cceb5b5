/* apply.h -- Tern writes: putting a versioned change into the local table so that
 * (1) a version never overwrites a higher one (condition on tern:ver),
 * (2) a change older than what the region knows of the key (its last local change,
 *     its tombstone) is rejected before it is written (guarantee 3), and
 * (3) the agent recognises the write as an echo and does not ship it (guarantee 4):
 *     an echo token is added to Redis pend:T:KID *before* the write and removed by the
 *     writer only when the write certainly did not happen (condition failed).
 *
 * Echo tokens: a put's token is the tern:wid it writes ("<region>.<16 hex>"). A delete's
 * is "T<version>@<deadline>" (tentative) until its DeleteItem has answered, then
 * "D<version>@<deadline>" (confirmed: an item was removed, or may have been), or taken
 * back (nothing removed). The deadline, on the writer's wall clock (ms since the epoch),
 * is when the DeleteItem has been made if it ever is: the token was added, the DeleteItem
 * sent within APPLY_DELETE_SEND_MS after that (or not at all), and the call lasts at most
 * store_call_max_ms. The agent does not classify a REMOVE whose matching token is
 * tentative until the token is settled (agent.h, AGENT_HOLD_*): an application's delete of
 * the key made while the replicator's DeleteItem was on its way (which then finds nothing)
 * was taken for its echo and never shipped. Nor does it take for a token's echo a record
 * created more than AGENT_TOKEN_CLOCK_MARGIN_MS after the deadline: a token confirmed
 * after an unknown outcome that removed nothing would otherwise hide the key's next local
 * delete for the whole TTL. Tokens without "@<deadline>" (written before it existed) have
 * no such bound. (A writer process stopped for longer than that between its last check
 * and the DeleteItem's send breaks the bound, as it breaks the agent's hold limit.) The
 * delete that undoes a repair landed after a newer delete (APPLY_TOMBCHECK) has
 * "D<tombstone version>/<repair version>", matched only with
 * the REMOVE of an item stored at the repair version. Tokens expire with the key after
 * the tombstone TTL when a write's outcome was never seen.
 *
 * Used by tern-replicator (remote changes), tern-region-agent (repairs) and ternctl
 * backfill (copies). Threading: the caller's store and state handles belong to the
 * calling thread. */
#ifndef TERN_APPLY_H
#define TERN_APPLY_H

#include <stddef.h>
#include <cjson/cJSON.h>

#include "lww.h"
#include "state.h"
#include "store.h"

/* Outcome of one change. */
typedef enum {
    APPLY_WRITTEN,   /* the table now holds the change (or, for a delete, no such item) */
    APPLY_LOST,      /* a newer version is known or stored: conflict lost, nothing written */
    APPLY_SAME,      /* exactly this version is already known: a duplicate, nothing written */
    APPLY_REFUSED,   /* the store refused the write for good (ValidationException, e.g. an item
                        over the size limit once Tern's attributes are added, or a key that does
                        not match the table's schema); err has the store's message; retrying
                        cannot help */
    APPLY_ERROR      /* store or Redis failed; err says why; retry the change later */
} apply_result;

const char *apply_result_name(apply_result r);

/* Flags */
#define APPLY_PRECHECK 1   /* compare with the key's last local change and tombstone first */
#define APPLY_TOMBCHECK 2  /* a put older than the key's tombstone is lost (for repairs, which
                              restore the last local version itself and so cannot use the
                              precheck; without it a repair made late undid a newer delete;
                              and, with APPLY_PRECHECK, for ternctl backfill, a writer beside
                              the replicator).
                              The check and the write are two steps: after a write the
                              tombstone is read again, and a repair that a newer delete
                              overtook (or, when lost, an earlier attempt that landed) is
                              deleted again if the item still holds its version; the result
                              is then APPLY_LOST. One Redis GET more per repair written
                              and one GetItem more per repair lost to the tombstone; an
                              undo adds two Redis round trips and a DeleteItem. */

typedef struct {
    const char *table;
    int is_delete;               /* 0: put image; 1: delete */
    const cJSON *keys;           /* the item's key attributes (AttributeValue map) */
    const cJSON *image;          /* put: full new image without tern:* attributes */
    const char *version;         /* lww version text of the change */
    const char *kid;             /* item_key_id(keys) */
    long ttl_s;                  /* tombstone and echo-token TTL, seconds */
    const char *over;            /* NULL, or a repair's ground (apply_one): the write happens only
                                    while the table still holds what the clobbering write left,
                                    the item with this tern:wid ("": no item, the clobbering
                                    write was a delete). Anything else there was written after
                                    it: an application's put the agent has not read yet (it
                                    carries no version Tern could compare), or a later Tern write
                                    whose own echo calls for the repair again; restoring the
                                    older state over it would lose it. (An update keeps the
                                    tern:wid, so it is overwritten; its record, read later,
                                    restores it.) apply_puts keeps it too, put by put. */
} apply_change;

/* Applies one change. On APPLY_LOST/APPLY_SAME, winner (if non-NULL, size
 * LWW_VERSION_STRLEN) receives the known higher version text when one is known ("" if
 * not). err is filled on APPLY_ERROR. The caller keeps ownership of everything. */
apply_result apply_one(store *s, state *st, const apply_change *c, int flags,
                       char *winner, char *err, size_t errlen);

/* Size of a write id "<region>.<16 hex>" with its NUL. */
#define APPLY_WID_MAX (LWW_REGION_MAX + 20)
/* First character of a delete's echo token: confirmed, and tentative (its DeleteItem has
 * not answered yet). Region names are lower case, so no put token starts with either. */
#define APPLY_TOKEN_DELETE 'D'
#define APPLY_TOKEN_TENTATIVE 'T'
/* Size of an echo token with its NUL (the longest: "D<version>/<version>"; a delete's
 * "D<version>@<deadline>" is shorter). */
#define APPLY_TOKEN_MAX (2 * LWW_VERSION_STRLEN + 1)
/* The longest a delete's Redis steps (its token, the tombstone) may take before its
 * DeleteItem is sent, ms; past it the attempt fails without sending (part of the token's
 * deadline). */
#define APPLY_DELETE_SEND_MS 5000
/* The version a Tern write stored in item (its tern:ver), if it is a valid version text,
 * else "" (applications may write anything there). Borrowed from item. */
const char *apply_stored_version(const cJSON *item);
/* A delete's echo token taken apart (apply_token_parse). */
typedef struct {
    char kind;                        /* APPLY_TOKEN_DELETE or APPLY_TOKEN_TENTATIVE */
    char version[LWW_VERSION_STRLEN]; /* the delete's version */
    long long deadline;               /* wall ms (apply.h, echo tokens), or -1: none (a token
                                         written before deadlines, or an undo token) */
    const char *undo;                 /* an undo token's repair version (points into the
                                         token), else NULL */
} apply_token;
/* 0 when tok is a delete token ("T/D<version>[@<deadline>]", "D<version>/<repair version>"),
 * taken apart into *out (a deadline that does not parse is none); -1 when not (a put's
 * tern:wid). */
int apply_token_parse(const char *tok, apply_token *out);
/* The confirmed form ("D...") of tentative token tok ("T...") into out (APPLY_TOKEN_MAX). */
void apply_token_confirmed(const char *tok, char *out);
/* Largest group apply_puts takes (TransactWriteItems' limit). */
#define APPLY_GROUP_MAX 100
/* Fewest puts apply_puts writes in one TransactWriteItems; fewer go as single conditional
 * PutItems. On DynamoDB Local (warm, full JIT) a transaction costs the store about 0.8 ms of
 * CPU plus 0.2 ms per item, a conditional PutItem about 0.4 ms: below 4 or 5 items the
 * transaction costs more. */
#define APPLY_GROUP_MIN 5

typedef struct {
    apply_result res;
    char winner[LWW_VERSION_STRLEN]; /* as apply_one's winner */
    char err[256];                   /* on APPLY_ERROR / APPLY_REFUSED */
} apply_outcome;

/* Most single puts of a group written at once (apply_writers). */
#define APPLY_WRITERS_MAX 16
_Static_assert(APPLY_WRITERS_MAX <= STORE_MULTI_MAX, "store_call_many makes at most STORE_MULTI_MAX calls");

/* What apply_puts writes a group's single puts with, side by side: n store handles (to
 * the same table store as apply_puts' s) and the multi handle that drives them, all owned
 * by the caller and used by the calling thread only. */
typedef struct {
    store_multi *m;
    store *h[APPLY_WRITERS_MAX];
    size_t n;     /* handles in h (<= APPLY_WRITERS_MAX): the most puts written at once */
    int no_txn;   /* 1: never a TransactWriteItems; every group goes as single puts */
} apply_writers;

/* Applies n (<= APPLY_GROUP_MAX) puts of distinct keys with the semantics of apply_one
 * with APPLY_PRECHECK: one Redis round trip reads the known versions and adds every echo
 * token, the precheck drops the losers, and the rest are written, each with its own
 * condition: together in one TransactWriteItems when at least APPLY_GROUP_MIN and wr
 * allows transactions (wr NULL does), else as single conditional PutItems: wr->n at a
 * time side by side (store_call_many), or one by one on s without wr; once a round got
 * no answer at all, the rest are not sent (APPLY_ERROR, retried later). A canceled
 * transaction wrote nothing: members whose condition failed get their answer from the
 * stored item, the others are applied one by one (apply_one). A
 * transaction the store refuses as a whole (over its 4 MB request limit) is split in
 * halves, recursively; one that gets no answer is followed by single puts (which find its
 * writes if it happened). out[i] is the outcome of cs[i]. On AWS a transactional write
 * costs two write units per item (replicator.group_writes). */
void apply_puts(store *s, state *st, const apply_writers *wr, const apply_change *cs, size_t n,
                apply_outcome *out);

/* Reads the key's last local change version and tombstone version (either "" when
 * absent) into ll and tomb (each LWW_VERSION_STRLEN bytes). 0/-1 (err). */
int apply_known(state *st, const char *table, const char *kid, char *ll, char *tomb,
                char *err, size_t errlen);

/* Lua: SET KEYS[1] ARGV[1] EX ARGV[2] unless it holds a bytewise-greater version. */
#define APPLY_LUA_SETMAX \
    "local c = redis.call('GET', KEYS[1]) " \
    "if (not c) or c < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end " \
    "return 1"

#endif
