/* apply_check.c -- apply_puts (apply/) against a real DynamoDB Local and Redis.
 *
 * Creates table tern_apply_check (PK, SK strings; no stream) and checks that a group of
 * puts, written as one transaction (APPLY_GROUP_MIN or more) or one by one (fewer),
 * decides every member exactly as apply_one would:
 *   1. fresh keys: all written, each with its own tern:wid, each token in pend:T:KID: 5
 *      in one transaction, 3 as three PutItems (each with the one token the group added);
 *   2. a member older than what the table holds (unknown to Redis): the transaction is
 *      canceled; that member is lost (the stored version is the winner, its token
 *      removed), the others are written one by one;
 *   3. a member older than the key's last local change in Redis: lost by the precheck,
 *      token removed, nothing sent for it; a member equal to the stored version: same
 *      (the two others go as single puts);
 *   4. large items: APPLY_GROUP_MIN of 350 KB in one transaction; 12 (over 4 MB): refused
 *      as a whole, then written as two halves;
 *   5. apply_one with APPLY_TOMBCHECK (the agent's repairs): a put older than the key's
 *      tombstone is lost and does not bring the deleted item back;
 *   6. a repair lost to the tombstone whose earlier attempt landed after the delete (the
 *      item holds the repair's version) deletes it again under the token "D<tomb>/<repair version>";
 *      an item holding a newer version is left alone;
 *   7. regression, the race itself: a delete whose tombstone is raised between the
 *      repair's tombstone check and its write (made deterministic by stopping the
 *      DynamoDB Local process, DDB_PID, with SIGSTOP while the repair's PutItem is on its
 *      way) does not leave the repaired item behind;
 *   8. a delete's echo token: "T<version>@<deadline>" (tentative; apply.h) while its
 *      DeleteItem is on its way (DynamoDB Local stopped), then "D<version>@<deadline>"
 *      when it removed an item; taken back when it removed nothing; confirmed when an earlier
 *      attempt (crashed) had added the tentative token, whose DeleteItem may have removed
 *      the item, in its place and with the retry's deadline (other tokens of the key
 *      stay); not sent when its Redis steps took over APPLY_DELETE_SEND_MS; not confirmed when
 *      the agent has spent the tentative token meanwhile (its hold limit passed); the
 *      token set keeps its TTL through the confirmation.
 * usage: apply_check ENDPOINT REDIS_PORT DDB_PID
 * Exits 0 after "apply_check: OK", or 1 with the first failure. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "item.h"
#include "state.h"
#include "store.h"

#define TABLE "tern_apply_check"

_Static_assert(APPLY_GROUP_MIN > 3 && APPLY_GROUP_MIN <= 6,
               "cases 1 and 3 put groups of 3 one by one; case 4's group of APPLY_GROUP_MIN stays under "
               "4 MB and its halves of 12 are transactions");

static store *S;
static state *ST;
static int checks;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            fprintf(stderr, "apply_check: FAIL at %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

typedef struct {
    cJSON *keys, *image;
    char *kid;
    char version[LWW_VERSION_STRLEN];
    const char *over; /* a repair's ground (apply_change.over); NULL: none (a replicated change) */
} change;

static void change_init(change *c, const char *pk, const char *ver, size_t payload) {
    char *big = malloc(payload + 1);
    CHECK(big, "out of memory");
    memset(big, 'p', payload);
    big[payload] = '\0';
    c->keys = cJSON_CreateObject();
    cJSON_AddItemToObject(c->keys, "PK", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(c->keys, "PK"), "S", pk);
    cJSON_AddItemToObject(c->keys, "SK", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(c->keys, "SK"), "S", "ITEM");
    c->image = cJSON_Duplicate(c->keys, 1);
    cJSON_AddItemToObject(c->image, "v", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(c->image, "v"), "S", big);
    free(big);
    c->kid = item_key_id(c->keys);
    CHECK(c->kid, "item_key_id");
    snprintf(c->version, sizeof c->version, "%s", ver);
    c->over = NULL;
}

static void change_free(change *c) {
    cJSON_Delete(c->keys);
    cJSON_Delete(c->image);
    free(c->kid);
}

/* n fresh changes of keys "<group>#<i>", versions "<ms>-<i + 1>-us-east-1", small items. */
static void changes_init(change *c, int n, const char *group, int ms) {
    for (int i = 0; i < n; i++) {
        char pk[64], v[LWW_VERSION_STRLEN];
        snprintf(pk, sizeof pk, "%s#%d", group, i);
        snprintf(v, sizeof v, "%013d-%06d-us-east-1", ms, i + 1);
        change_init(&c[i], pk, v, 10);
    }
}

/* The stored item's tern:ver and tern:wid ("" when absent). */
static void stored(const change *c, char *ver, char *wid) {
    cJSON *item = NULL;
    store_status ss = store_get_item(S, TABLE, c->keys, 1, &item);
    const char *v, *w;
    CHECK(ss == STORE_OK, "GetItem: %s", store_errstr(S));
    v = item ? item_get_s(item, ITEM_ATTR_VER) : NULL;
    w = item ? item_get_s(item, ITEM_ATTR_WID) : NULL;
    snprintf(ver, LWW_VERSION_STRLEN, "%s", v ? v : "");
    snprintf(wid, APPLY_WID_MAX, "%s", w ? w : "");
    cJSON_Delete(item);
}

/* Number of echo tokens pending for the key, and whether tok is one of them. */
static long tokens(const change *c, const char *tok, int *has) {
    char key[512];
    redisReply *r;
    long n;
    CHECK(state_key(ST, key, sizeof key, STATE_K_PEND, TABLE, c->kid) == 0, "key");
    r = state_cmd(ST, "SMEMBERS %s", key);
    CHECK(r && r->type == REDIS_REPLY_ARRAY, "SMEMBERS: %s", state_errstr(ST));
    n = (long)r->elements;
    *has = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (tok && strcmp(r->element[i]->str, tok) == 0) *has = 1;
    freeReplyObject(r);
    return n;
}

/* 1 when the key has n pending tokens, exactly one of them the delete token
 * "<kind><version>@<deadline>" of c whose deadline is that of an attempt that added it
 * between wall clock lo and hi (ms; apply.h); that token (or, if none, the first pending
 * one) is copied into tok (APPLY_TOKEN_MAX). (SMEMBERS order is arbitrary.) */
static int delete_token(const change *c, char kind, long long lo, long long hi, size_t n, char *tok) {
    char key[512], prefix[APPLY_TOKEN_MAX], *end;
    redisReply *r;
    int found = 0;
    long long dl, budget = APPLY_DELETE_SEND_MS + store_call_max_ms(S);
    CHECK(state_key(ST, key, sizeof key, STATE_K_PEND, TABLE, c->kid) == 0, "key");
    r = state_cmd(ST, "SMEMBERS %s", key);
    CHECK(r && r->type == REDIS_REPLY_ARRAY, "SMEMBERS: %s", state_errstr(ST));
    snprintf(prefix, sizeof prefix, "%c%s@", kind, c->version);
    snprintf(tok, APPLY_TOKEN_MAX, "%s", r->elements ? r->element[0]->str : "(none)");
    for (size_t i = 0; i < r->elements; i++) {
        const char *m = r->element[i]->str;
        if (strncmp(m, prefix, strlen(prefix)) != 0) continue;
        errno = 0;
        dl = strtoll(m + strlen(prefix), &end, 10);
        if (errno || *end || dl < lo + budget || dl > hi + budget) continue;
        snprintf(tok, APPLY_TOKEN_MAX, "%s", m);
        found++;
    }
    found = found == 1 && r->elements == n;
    freeReplyObject(r);
    return found;
}

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs apply_puts over cs (with writers wr, or NULL) and returns the number of store
 * requests it made, on S and on wr's handles. */
static long long run_with(const apply_writers *wr, change *cs, size_t n, apply_outcome *out) {
    apply_change ac[APPLY_GROUP_MAX];
    store_stats a, b;
    memset(ac, 0, sizeof ac);
    for (size_t i = 0; i < n; i++) {
        ac[i].table = TABLE;
        ac[i].keys = cs[i].keys;
        ac[i].image = cs[i].image;
        ac[i].version = cs[i].version;
        ac[i].kid = cs[i].kid;
        ac[i].ttl_s = 3600;
        ac[i].over = cs[i].over;
    }
    long long req = 0;
    for (size_t k = 0; wr && k < wr->n; k++) {
        store_get_stats(wr->h[k], &a);
        req -= (long long)a.requests;
    }
    store_get_stats(S, &a);
    apply_puts(S, ST, wr, ac, n, out);
    store_get_stats(S, &b);
    req += (long long)(b.requests - a.requests);
    for (size_t k = 0; wr && k < wr->n; k++) {
        store_get_stats(wr->h[k], &b);
        req += (long long)b.requests;
    }
    return req;
}

static long long run(change *cs, size_t n, apply_outcome *out) { return run_with(NULL, cs, n, out); }

/* A write straight into the table, as a local application (or an earlier Tern write) did. */
static void put_direct(const change *c, const char *ver, const char *wid) {
    cJSON *item = cJSON_Duplicate(c->image, 1);
    CHECK(item && item_set_s(item, ITEM_ATTR_VER, ver) == 0 && item_set_s(item, ITEM_ATTR_WID, wid) == 0, "item");
    CHECK(store_put_item(S, TABLE, item, NULL, NULL) == STORE_OK, "PutItem: %s", store_errstr(S));
    cJSON_Delete(item);
}

/* Sets the key's tombstone (what a delete does first). */
static void set_tomb(const change *c, const char *ver) {
    char key[512];
    redisReply *r;
    CHECK(state_key(ST, key, sizeof key, STATE_K_TOMB, TABLE, c->kid) == 0, "key");
    r = state_cmd(ST, "SET %s %s", key, ver);
    CHECK(r, "SET: %s", state_errstr(ST));
    freeReplyObject(r);
}

static apply_change repair_of(const change *c) {
    apply_change ac;
    memset(&ac, 0, sizeof ac);
    ac.table = TABLE;
    ac.keys = c->keys;
    ac.image = c->image;
    ac.version = c->version;
    ac.kid = c->kid;
    ac.ttl_s = 3600;
    return ac;
}

/* An apply_one (a repair: APPLY_TOMBCHECK; a delete) running on its own handles (they
 * belong to one thread). */
typedef struct {
    const store_opts *so;
    const state_opts *sto;
    apply_change ac;
    int flags;
    apply_result res;
    char winner[LWW_VERSION_STRLEN], err[256];
} repair_job;

static void *repair_thread(void *arg) {
    repair_job *j = arg;
    char err[256];
    store *s = store_new(j->so, err, sizeof err);
    state *st = state_new(j->sto, err, sizeof err);
    CHECK(s && st, "thread handles: %s", err);
    j->res = apply_one(s, st, &j->ac, j->flags, j->winner, j->err, sizeof j->err);
    state_free(st);
    store_free(s);
    return NULL;
}

int main(int argc, char **argv) {
    store_opts o = {0};
    state_opts so = {0};
    store_table_spec spec = {0};
    char err[256], ver[LWW_VERSION_STRLEN], wid[APPLY_WID_MAX], key[512], *end;
    change c[APPLY_GROUP_MIN];
    apply_outcome out[APPLY_GROUP_MIN];
    long port, ddb_pid;
    int has;

    if (argc != 4) {
        fprintf(stderr, "usage: apply_check ENDPOINT REDIS_PORT DDB_PID\n");
        return 2;
    }
    port = strtol(argv[2], &end, 10);
    if (!*argv[2] || *end || port < 1 || port > 65535) {
        fprintf(stderr, "apply_check: bad port %s\n", argv[2]);
        return 2;
    }
    ddb_pid = strtol(argv[3], &end, 10);
    if (!*argv[3] || *end || ddb_pid < 2) {
        fprintf(stderr, "apply_check: bad pid %s\n", argv[3]);
        return 2;
    }
    o.endpoint = argv[1];
    o.region = "us-east-1";
    o.access_key_id = "local";
    o.secret_access_key = "local";
    o.timeout_ms = 20000;
    S = store_new(&o, err, sizeof err);
    CHECK(S, "store_new: %s", err);
    so.region = "eu-west-1";
    so.host = "127.0.0.1";
    so.port = (int)port;
    so.timeout_ms = 5000;
    ST = state_new(&so, err, sizeof err);
    CHECK(ST, "state_new: %s", err);
    spec.table = TABLE;
    spec.hash_key = "PK";
    spec.range_key = "SK";
    CHECK(store_create_table(S, &spec) == STORE_OK, "CreateTable: %s", store_errstr(S));
    CHECK(store_wait_table_active(S, TABLE, 20000, NULL) == STORE_OK, "table: %s", store_errstr(S));

    /* 1. fresh keys: a group of APPLY_GROUP_MIN in one transaction, one of 3 put by put */
    for (int g = 0; g < 2; g++) {
        int n = g ? 3 : APPLY_GROUP_MIN;
        for (int i = 0; i < n; i++) {
            char pk[16], v[LWW_VERSION_STRLEN];
            snprintf(pk, sizeof pk, "G1%c#%d", g ? 'b' : 'a', i);
            snprintf(v, sizeof v, "0000000001000-%06d-us-east-1", i + 1);
            change_init(&c[i], pk, v, 10);
        }
        CHECK(run(c, (size_t)n, out) == (g ? 3 : 1), "1: a group of %d puts did not take %d store request(s)", n,
              g ? 3 : 1);
        for (int i = 0; i < n; i++) {
            CHECK(out[i].res == APPLY_WRITTEN, "1: member %d of %d: %s (%s)", i, n, apply_result_name(out[i].res),
                  out[i].err);
            stored(&c[i], ver, wid);
            CHECK(strcmp(ver, c[i].version) == 0, "1: member %d of %d stored %s", i, n, ver);
            CHECK(tokens(&c[i], wid, &has) == 1 && has, "1: member %d of %d: its token %s is not the one pending", i,
                  n, wid);
            change_free(&c[i]);
        }
    }

    /* 2. one member older than the table's item: canceled, decided one by one */
    changes_init(c, APPLY_GROUP_MIN, "G2", 2000);
    put_direct(&c[1], "0000000009000-000001-ap-south-1", "ap-south-1.local");
    CHECK(run(c, APPLY_GROUP_MIN, out) == APPLY_GROUP_MIN, "2: not one canceled transaction and %d single puts",
          APPLY_GROUP_MIN - 1);
    for (int i = 0; i < APPLY_GROUP_MIN; i++)
        CHECK(i == 1 || out[i].res == APPLY_WRITTEN, "2: member %d: %s", i, apply_result_name(out[i].res));
    CHECK(out[1].res == APPLY_LOST, "2: the older member: %s", apply_result_name(out[1].res));
    CHECK(strcmp(out[1].winner, "0000000009000-000001-ap-south-1") == 0, "2: winner %s", out[1].winner);
    stored(&c[1], ver, wid);
    CHECK(strcmp(ver, "0000000009000-000001-ap-south-1") == 0, "2: the newer item was overwritten: %s", ver);
    CHECK(tokens(&c[1], NULL, &has) == 0, "2: the lost member's token is still pending");
    for (int i = 0; i < APPLY_GROUP_MIN; i++) {
        if (i == 1) continue;
        stored(&c[i], ver, wid);
        CHECK(strcmp(ver, c[i].version) == 0, "2: member %d stored %s", i, ver);
        CHECK(tokens(&c[i], wid, &has) == 1 && has, "2: member %d: exactly its token pending", i);
    }
    for (int i = 0; i < APPLY_GROUP_MIN; i++) change_free(&c[i]);

    /* 3. the precheck: older than the key's last local change; equal to the stored version */
    change_init(&c[0], "G3#a", "0000000003000-000001-us-east-1", 10);
    change_init(&c[1], "G3#b", "0000000003000-000002-us-east-1", 10);
    change_init(&c[2], "G3#c", "0000000003000-000003-us-east-1", 10);
    CHECK(state_key(ST, key, sizeof key, STATE_K_LASTLOCAL, TABLE, c[0].kid) == 0, "key");
    {
        redisReply *r = state_cmd(ST, "SET %s %s", key, "0000000008000-000001-eu-west-1");
        CHECK(r, "SET: %s", state_errstr(ST));
        freeReplyObject(r);
    }
    put_direct(&c[2], c[2].version, "us-east-1.earlier");
    CHECK(run(c, 3, out) == 2, "3: not two single puts (the precheck loser sent nothing)");
    CHECK(out[0].res == APPLY_LOST && strcmp(out[0].winner, "0000000008000-000001-eu-west-1") == 0,
          "3: precheck: %s winner %s", apply_result_name(out[0].res), out[0].winner);
    CHECK(out[1].res == APPLY_WRITTEN, "3: %s", apply_result_name(out[1].res));
    CHECK(out[2].res == APPLY_SAME, "3: the stored version: %s", apply_result_name(out[2].res));
    stored(&c[0], ver, wid);
    CHECK(!*ver, "3: the precheck loser was written: %s", ver);
    CHECK(tokens(&c[0], NULL, &has) == 0 && tokens(&c[2], NULL, &has) == 0, "3: a loser's token is pending");
    stored(&c[2], ver, wid);
    CHECK(strcmp(wid, "us-east-1.earlier") == 0, "3: the equal version was rewritten (wid %s)", wid);
    for (int i = 0; i < 3; i++) change_free(&c[i]);

    /* 4. large items: a group under 4 MB is one transaction; one over it is refused as a
     * whole and written in halves */
    for (int i = 0; i < APPLY_GROUP_MIN; i++) {
        char pk[16], v[LWW_VERSION_STRLEN];
        snprintf(pk, sizeof pk, "G4#%d", i);
        snprintf(v, sizeof v, "0000000004000-%06d-us-east-1", i + 1);
        change_init(&c[i], pk, v, 350 * 1024);
    }
    /* APPLY_GROUP_MIN x 350 KB (at most 2.1 MB): under the limit */
    CHECK(run(c, APPLY_GROUP_MIN, out) == 1, "4: a group of %d large puts under 4 MB was not one transaction",
          APPLY_GROUP_MIN);
    for (int i = 0; i < APPLY_GROUP_MIN; i++) {
        CHECK(out[i].res == APPLY_WRITTEN, "4: member %d: %s (%s)", i, apply_result_name(out[i].res), out[i].err);
        stored(&c[i], ver, wid);
        CHECK(strcmp(ver, c[i].version) == 0, "4: member %d stored %s", i, ver);
        change_free(&c[i]);
    }
    {
        /* 12 x 350 KB = 4.2 MB: over it */
        change big[12];
        apply_outcome bo[12];
        for (int i = 0; i < 12; i++) {
            char pk[16], v[LWW_VERSION_STRLEN];
            snprintf(pk, sizeof pk, "G5#%d", i);
            snprintf(v, sizeof v, "0000000005000-%06d-us-east-1", i + 1);
            change_init(&big[i], pk, v, 350 * 1024);
        }
        long long req = run(big, 12, bo);
        CHECK(req == 3, "4: %lld store requests, not a refused transaction and its two halves", req);
        for (int i = 0; i < 12; i++) {
            CHECK(bo[i].res == APPLY_WRITTEN, "4: member %d of a group over 4 MB: %s (%s)", i,
                  apply_result_name(bo[i].res), bo[i].err);
            stored(&big[i], ver, wid);
            CHECK(strcmp(ver, big[i].version) == 0, "4: member %d stored %s", i, ver);
            CHECK(tokens(&big[i], NULL, &has) >= 1, "4: member %d: no token pending", i);
            change_free(&big[i]);
        }
    }
    /* 5. regression: a repair (APPLY_TOMBCHECK) of a key deleted by a newer delete since
     * must not bring the item back; one older than the tombstone is written */
    {
        apply_change ac;
        apply_result res;
        char w[LWW_VERSION_STRLEN];
        redisReply *r;
        change_init(&c[0], "G6#a", "0000000006000-000001-eu-west-1", 10);
        CHECK(state_key(ST, key, sizeof key, STATE_K_TOMB, TABLE, c[0].kid) == 0, "key");
        r = state_cmd(ST, "SET %s %s", key, "0000000007000-000001-ap-south-1");
        CHECK(r, "SET: %s", state_errstr(ST));
        freeReplyObject(r);
        memset(&ac, 0, sizeof ac);
        ac.table = TABLE;
        ac.keys = c[0].keys;
        ac.image = c[0].image;
        ac.version = c[0].version;
        ac.kid = c[0].kid;
        ac.ttl_s = 3600;
        res = apply_one(S, ST, &ac, APPLY_TOMBCHECK, w, err, sizeof err);
        CHECK(res == APPLY_LOST && strcmp(w, "0000000007000-000001-ap-south-1") == 0, "5: %s, winner %s",
              apply_result_name(res), w);
        stored(&c[0], ver, wid);
        CHECK(!*ver, "5: a put older than the tombstone brought the item back (%s)", ver);
        CHECK(tokens(&c[0], NULL, &has) == 0, "5: the lost repair's token is pending");
        ac.version = "0000000008000-000001-eu-west-1";
        res = apply_one(S, ST, &ac, APPLY_TOMBCHECK, w, err, sizeof err);
        CHECK(res == APPLY_WRITTEN, "5: a put newer than the tombstone: %s (%s)", apply_result_name(res), err);
        change_free(&c[0]);
    }
    /* 6. a repair lost to the tombstone, whose earlier attempt had landed after the delete */
    {
        apply_change ac;
        apply_result res;
        char w[LWW_VERSION_STRLEN];
        change_init(&c[0], "G7#a", "0000000007000-000001-eu-west-1", 10);
        change_init(&c[1], "G7#b", "0000000007000-000002-eu-west-1", 10);
        for (int i = 0; i < 2; i++) set_tomb(&c[i], "0000000007500-000001-ap-south-1");
        put_direct(&c[0], c[0].version, "eu-west-1.landed");
        put_direct(&c[1], "0000000007900-000001-us-east-1", "us-east-1.newer");
        ac = repair_of(&c[0]);
        res = apply_one(S, ST, &ac, APPLY_TOMBCHECK, w, err, sizeof err);
        CHECK(res == APPLY_LOST && strcmp(w, "0000000007500-000001-ap-south-1") == 0, "6: %s (%s), winner %s",
              apply_result_name(res), err, w);
        stored(&c[0], ver, wid);
        CHECK(!*ver, "6: the repair that landed after the newer delete is still there (%s)", ver);
        CHECK(tokens(&c[0], "D0000000007500-000001-ap-south-1/0000000007000-000001-eu-west-1", &has) == 1 && has,
              "6: the undoing delete's token is not the one token pending");
        ac = repair_of(&c[1]);
        res = apply_one(S, ST, &ac, APPLY_TOMBCHECK, w, err, sizeof err);
        CHECK(res == APPLY_LOST, "6: %s (%s)", apply_result_name(res), err);
        stored(&c[1], ver, wid);
        CHECK(strcmp(ver, "0000000007900-000001-us-east-1") == 0, "6: a newer item was deleted (%s)", ver);
        CHECK(tokens(&c[1], NULL, &has) == 0, "6: a token is pending though nothing was deleted");
        for (int i = 0; i < 2; i++) change_free(&c[i]);
    }
    /* 7. regression: the delete lands between the repair's tombstone check and its write */
    {
        repair_job j;
        pthread_t th;
        struct timespec ts = {0, 5 * 1000 * 1000};
        int waited = 0;
        memset(&j, 0, sizeof j);
        change_init(&c[0], "G8#a", "0000000008000-000001-eu-west-1", 10);
        j.so = &o;
        j.sto = &so;
        j.ac = repair_of(&c[0]);
        j.flags = APPLY_TOMBCHECK;
        /* the item is gone (the newer delete's DeleteItem) but its tombstone is not raised
         * yet as far as the repair's check can tell */
        CHECK(kill((pid_t)ddb_pid, SIGSTOP) == 0, "SIGSTOP DynamoDB Local");
        CHECK(pthread_create(&th, NULL, repair_thread, &j) == 0, "pthread_create");
        while (tokens(&c[0], NULL, &has) == 0 && waited++ < 2000) nanosleep(&ts, NULL);
        CHECK(waited < 2000, "7: the repair never added its token");
        nanosleep(&ts, NULL); /* its PutItem is now on its way to the stopped store */
        set_tomb(&c[0], "0000000008500-000001-ap-south-1");
        CHECK(kill((pid_t)ddb_pid, SIGCONT) == 0, "SIGCONT DynamoDB Local");
        CHECK(pthread_join(th, NULL) == 0, "pthread_join");
        CHECK(j.res == APPLY_LOST && strcmp(j.winner, "0000000008500-000001-ap-south-1") == 0,
              "7: a repair overtaken by a newer delete: %s (%s), winner %s", apply_result_name(j.res), j.err,
              j.winner);
        stored(&c[0], ver, wid);
        CHECK(!*ver, "7: the repair overtaken by a newer delete brought the item back (%s)", ver);
        CHECK(tokens(&c[0], "D0000000008500-000001-ap-south-1/0000000008000-000001-eu-west-1", &has) == 2 && has,
              "7: not exactly the repair's and the undoing delete's tokens pending");
        change_free(&c[0]);
    }
    /* 8. a delete's echo token: tentative until its DeleteItem answers, then confirmed or
     * taken back */
    {
        repair_job j;
        pthread_t th;
        struct timespec ts = {0, 5 * 1000 * 1000};
        int waited = 0;
        apply_change ac;
        apply_result res;
        char tok[APPLY_TOKEN_MAX], pend[512];
        redisReply *r;
        long long t0, t1;
        change_init(&c[0], "G9#a", "0000000009000-000001-eu-west-1", 10);
        change_init(&c[1], "G9#b", "0000000009000-000002-eu-west-1", 10);
        change_init(&c[2], "G9#c", "0000000009000-000003-eu-west-1", 10);
        change_init(&c[3], "G9#d", "0000000009000-000004-eu-west-1", 10);
        change_init(&c[4], "G9#e", "0000000009000-000005-eu-west-1", 10);
        for (int k = 0; k < 4; k += 3) { /* c[0]: confirmed; c[3]: spent by the agent meanwhile */
            put_direct(&c[k], "0000000008900-000001-us-east-1", "us-east-1.older");
            memset(&j, 0, sizeof j);
            j.so = &o;
            j.sto = &so;
            j.ac = repair_of(&c[k]);
            j.ac.is_delete = 1;
            j.flags = APPLY_PRECHECK;
            waited = 0;
            t0 = wall_ms();
            CHECK(kill((pid_t)ddb_pid, SIGSTOP) == 0, "SIGSTOP DynamoDB Local");
            CHECK(pthread_create(&th, NULL, repair_thread, &j) == 0, "pthread_create");
            while (tokens(&c[k], NULL, &has) == 0 && waited++ < 2000) nanosleep(&ts, NULL);
            nanosleep(&ts, NULL); /* its DeleteItem is on its way to the stopped store */
            t1 = wall_ms();
            CHECK(delete_token(&c[k], 'T', t0, t1, 1, tok),
                  "8: the token of a delete on its way is not T%s@<its time> alone: %s", c[k].version, tok);
            if (k == 3) {
                CHECK(state_key(ST, pend, sizeof pend, STATE_K_PEND, TABLE, c[k].kid) == 0, "key");
                r = state_cmd(ST, "SREM %s %s", pend, tok);
                CHECK(r, "SREM: %s", state_errstr(ST));
                freeReplyObject(r);
            }
            CHECK(kill((pid_t)ddb_pid, SIGCONT) == 0, "SIGCONT DynamoDB Local");
            CHECK(pthread_join(th, NULL) == 0, "pthread_join");
            CHECK(j.res == APPLY_WRITTEN, "8: delete: %s (%s)", apply_result_name(j.res), j.err);
            if (k == 0) {
                CHECK(delete_token(&c[k], 'D', t0, t1, 1, tok),
                      "8: the token of a delete that removed the item is not D%s@<its time> alone: %s", c[k].version,
                      tok);
                CHECK(state_key(ST, pend, sizeof pend, STATE_K_PEND, TABLE, c[k].kid) == 0, "key");
                r = state_cmd(ST, "TTL %s", pend);
                CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0 && r->integer <= 3600,
                      "8: the confirmed token's set has no TTL (%lld)", r ? r->integer : -3);
                freeReplyObject(r);
            }
            else
                CHECK(tokens(&c[k], NULL, &has) == 0,
                      "8: a delete confirmed its token after the agent had spent it (a leftover D token)");
        }
        ac = repair_of(&c[1]);
        ac.is_delete = 1;
        res = apply_one(S, ST, &ac, APPLY_PRECHECK, NULL, err, sizeof err);
        CHECK(res == APPLY_WRITTEN, "8: delete of an absent item: %s (%s)", apply_result_name(res), err);
        CHECK(tokens(&c[1], NULL, &has) == 0, "8: a token is pending though the delete removed nothing");
        /* an earlier attempt added the tentative token and crashed before the answer: the
         * retry takes its place, with its own deadline; tokens of other versions (one a
         * prefix of this one's text, one with this one's as prefix), an undo token, a put
         * token, and a confirmed token of the same version (the agent may be consuming it)
         * stay */
        CHECK(state_key(ST, pend, sizeof pend, STATE_K_PEND, TABLE, c[2].kid) == 0, "key");
        snprintf(tok, sizeof tok, "T%.28s@1000", c[2].version); /* (hiredis's format has no precision) */
        r = state_cmd(ST, "SADD %s T%s@1000 %s T%sx@1000 D%s/0000000008000-000001-eu-west-1 "
                          "eu-west-1.0123456789abcdef D%s@1000", pend, c[2].version, tok, c[2].version,
                      c[2].version, c[2].version);
        CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 6, "SADD: %s", state_errstr(ST));
        freeReplyObject(r);
        ac = repair_of(&c[2]);
        ac.is_delete = 1;
        t0 = wall_ms();
        res = apply_one(S, ST, &ac, APPLY_PRECHECK, NULL, err, sizeof err);
        CHECK(res == APPLY_WRITTEN, "8: delete retried: %s (%s)", apply_result_name(res), err);
        CHECK(delete_token(&c[2], 'D', t0, wall_ms(), 6, tok),
              "8: the retry did not confirm, with its own deadline, the token of an earlier attempt that may have "
              "deleted the item, in its place, leaving the 5 others: %s", tok);
        snprintf(tok, sizeof tok, "D%s@1000", c[2].version);
        CHECK(tokens(&c[2], tok, &has) == 6 && has, "8: the retry replaced a confirmed token of its version");
        /* an attempt whose Redis steps outlast APPLY_DELETE_SEND_MS (Redis stopped for
         * longer, within its handle's timeout) sends nothing: its token's deadline would
         * not hold */
        ac = repair_of(&c[4]);
        ac.is_delete = 1;
        put_direct(&c[4], "0000000008900-000001-us-east-1", "us-east-1.older");
        {
            pthread_t th2;
            repair_job j2;
            state_opts slow_so = so;
            struct timespec slow = {APPLY_DELETE_SEND_MS / 1000 + 1, 0};
            long long redis_pid = -1;
            r = state_cmd(ST, "INFO server");
            CHECK(r && r->type == REDIS_REPLY_STRING && strstr(r->str, "process_id:"), "INFO server");
            redis_pid = strtoll(strstr(r->str, "process_id:") + 11, NULL, 10);
            freeReplyObject(r);
            CHECK(redis_pid > 1, "redis-server's pid");
            slow_so.timeout_ms = 30000;
            memset(&j2, 0, sizeof j2);
            j2.so = &o;
            j2.sto = &slow_so;
            j2.ac = ac;
            j2.flags = APPLY_PRECHECK;
            CHECK(kill((pid_t)redis_pid, SIGSTOP) == 0, "SIGSTOP redis-server");
            CHECK(pthread_create(&th2, NULL, repair_thread, &j2) == 0, "pthread_create");
            nanosleep(&slow, NULL);
            CHECK(kill((pid_t)redis_pid, SIGCONT) == 0, "SIGCONT redis-server");
            CHECK(pthread_join(th2, NULL) == 0, "pthread_join");
            CHECK(j2.res == APPLY_ERROR && strstr(j2.err, "before the DeleteItem"),
                  "8: a delete whose Redis steps took over %d ms: %s (%s)", APPLY_DELETE_SEND_MS,
                  apply_result_name(j2.res), j2.err);
            stored(&c[4], ver, wid);
            CHECK(strcmp(wid, "us-east-1.older") == 0, "8: a delete past its token's budget was sent all the same");
        }
        CHECK(tokens(&c[4], NULL, &has) == 0, "8: a delete not sent left its token");
        for (int i = 0; i < 5; i++) change_free(&c[i]);
    }
    /* 10. a repair's ground (apply_change.over): written only over what the clobbering
     * write left; an application's put made since (no tern:ver) is not undone */
    {
        apply_change ac;
        apply_result res;
        char w[LWW_VERSION_STRLEN];
        change r[2];
        changes_init(r, 2, "G10", 10000);
        memset(&ac, 0, sizeof ac);
        ac.table = TABLE;
        ac.keys = r[0].keys;
        ac.image = r[0].image;
        ac.kid = r[0].kid;
        ac.ttl_s = 3600;
        ac.over = "eu-west-1.echo";
        /* the clobbering write is there: restored */
        put_direct(&r[0], "0000000010000-000009-eu-west-1", "eu-west-1.echo");
        ac.version = "0000000010001-000000-us-east-1";
        res = apply_one(S, ST, &ac, 0, w, err, sizeof err);
        stored(&r[0], ver, wid);
        CHECK(res == APPLY_WRITTEN && strcmp(ver, ac.version) == 0, "10: over the echo: %s, stored %s",
              apply_result_name(res), ver);
        /* an application's put since: not restored over it, and no token left */
        CHECK(store_put_item(S, TABLE, r[0].image, NULL, NULL) == STORE_OK, "PutItem: %s", store_errstr(S));
        {
            long pending = tokens(&r[0], NULL, &has);
            ac.version = "0000000010002-000000-us-east-1";
            res = apply_one(S, ST, &ac, 0, w, err, sizeof err);
            stored(&r[0], ver, wid);
            CHECK(res == APPLY_LOST && !*ver, "10: over an application's put: %s, stored %s",
                  apply_result_name(res), ver);
            CHECK(tokens(&r[0], NULL, &has) == pending, "10: the repair not made left its token");
        }
        /* after a delete (over ""): only while there is still no item */
        ac.keys = r[1].keys;
        ac.image = r[1].image;
        ac.kid = r[1].kid;
        ac.over = "";
        ac.version = "0000000010003-000000-us-east-1";
        res = apply_one(S, ST, &ac, 0, w, err, sizeof err);
        stored(&r[1], ver, wid);
        CHECK(res == APPLY_WRITTEN && strcmp(ver, ac.version) == 0, "10: no item: %s, stored %s",
              apply_result_name(res), ver);
        ac.version = "0000000010004-000000-us-east-1";
        res = apply_one(S, ST, &ac, 0, w, err, sizeof err);
        stored(&r[1], ver, wid);
        CHECK(res == APPLY_LOST && strcmp(ver, "0000000010003-000000-us-east-1") == 0,
              "10: an item there: %s, stored %s", apply_result_name(res), ver);
        for (int i = 0; i < 2; i++) change_free(&r[i]);
    }
    /* 9. single puts side by side (apply_writers, no transactions): a group larger than
     * the writers goes in rounds; a member older than the stored item loses to it, a
     * precheck loser sends nothing, and the rest are written under their own tokens */
    {
        apply_writers wr;
        enum { N9 = 7 };
        change g[N9];
        apply_outcome go[N9];
        memset(&wr, 0, sizeof wr);
        wr.m = store_multi_new(err, sizeof err);
        CHECK(wr.m, "store_multi_new: %s", err);
        wr.n = 3;
        wr.no_txn = 1;
        for (size_t k = 0; k < wr.n; k++) {
            wr.h[k] = store_new(&o, err, sizeof err);
            CHECK(wr.h[k], "store_new: %s", err);
        }
        changes_init(g, N9, "G9", 9000);
        put_direct(&g[2], "0000000009999-000001-ap-south-1", "ap-south-1.local");
        CHECK(state_key(ST, key, sizeof key, STATE_K_LASTLOCAL, TABLE, g[5].kid) == 0, "key");
        {
            redisReply *r = state_cmd(ST, "SET %s %s", key, "0000000009999-000002-eu-west-1");
            CHECK(r, "SET: %s", state_errstr(ST));
            freeReplyObject(r);
        }
        /* 6 open members, 3 at a time: two rounds, one request each on every writer, none
         * on S, no transaction */
        {
            store_stats a9[4], b9[4];
            store_get_stats(S, &a9[3]);
            for (size_t k = 0; k < wr.n; k++) store_get_stats(wr.h[k], &a9[k]);
            CHECK(run_with(&wr, g, N9, go) == N9 - 1, "9: not %d single puts", N9 - 1);
            store_get_stats(S, &b9[3]);
            CHECK(b9[3].requests == a9[3].requests, "9: %llu puts went on the main handle, not side by side",
                  (unsigned long long)(b9[3].requests - a9[3].requests));
            for (size_t k = 0; k < wr.n; k++) {
                store_get_stats(wr.h[k], &b9[k]);
                CHECK(b9[k].requests - a9[k].requests == 2, "9: writer %zu made %llu requests, not 2", k,
                      (unsigned long long)(b9[k].requests - a9[k].requests));
            }
        }
        for (int i = 0; i < N9; i++) {
            stored(&g[i], ver, wid);
            if (i == 2) {
                CHECK(go[i].res == APPLY_LOST && strcmp(go[i].winner, "0000000009999-000001-ap-south-1") == 0,
                      "9: the member older than the stored item: %s, winner %s", apply_result_name(go[i].res),
                      go[i].winner);
                CHECK(strcmp(ver, "0000000009999-000001-ap-south-1") == 0, "9: the newer item was overwritten: %s",
                      ver);
                CHECK(tokens(&g[i], NULL, &has) == 0, "9: the lost member's token is pending");
            } else if (i == 5) {
                CHECK(go[i].res == APPLY_LOST && strcmp(go[i].winner, "0000000009999-000002-eu-west-1") == 0,
                      "9: the precheck loser: %s, winner %s", apply_result_name(go[i].res), go[i].winner);
                CHECK(!*ver, "9: the precheck loser was written: %s", ver);
                CHECK(tokens(&g[i], NULL, &has) == 0, "9: the precheck loser's token is pending");
            } else {
                CHECK(go[i].res == APPLY_WRITTEN, "9: member %d: %s (%s)", i, apply_result_name(go[i].res),
                      go[i].err);
                CHECK(strcmp(ver, g[i].version) == 0, "9: member %d stored %s", i, ver);
                CHECK(tokens(&g[i], wid, &has) == 1 && has, "9: member %d: its token %s is not the one pending", i,
                      wid);
            }
        }
        /* the same group again: every member already stored or lost, nothing is written twice */
        CHECK(run_with(&wr, g, N9, go) == N9 - 1, "9: the repeat did not send %d puts", N9 - 1);
        for (int i = 0; i < N9; i++)
            CHECK(i == 2 || i == 5 ? go[i].res == APPLY_LOST : go[i].res == APPLY_SAME, "9: repeat, member %d: %s", i,
                  apply_result_name(go[i].res));
        /* 11. a group keeps each member's own condition: a repair's ground (over) holds in a
         * transaction and in single puts side by side as in apply_one (regression: apply_puts
         * wrote every member under APPLY_COND_NEWER, so a repair in a group would undo an
         * application's put made since the clobbering write) */
        for (int pass = 0; pass < 2; pass++) {
            change r[APPLY_GROUP_MIN];
            apply_outcome ro[APPLY_GROUP_MIN];
            const char *how = pass ? "side by side" : "in a transaction";
            changes_init(r, APPLY_GROUP_MIN, pass ? "G11S" : "G11T", 11000);
            /* member 1: an application's put (no tern:ver) since the clobbering write */
            r[1].over = "eu-west-1.echo";
            CHECK(store_put_item(S, TABLE, r[1].image, NULL, NULL) == STORE_OK, "PutItem: %s", store_errstr(S));
            /* member 3: the clobbering write is still there */
            r[3].over = "eu-west-1.echo";
            put_direct(&r[3], "0000000010999-000001-eu-west-1", "eu-west-1.echo");
            run_with(pass ? &wr : NULL, r, APPLY_GROUP_MIN, ro);
            for (int i = 0; i < APPLY_GROUP_MIN; i++) {
                stored(&r[i], ver, wid);
                if (i == 1) {
                    CHECK(ro[i].res == APPLY_LOST, "11 %s: the repair over an application's put: %s (%s)", how,
                          apply_result_name(ro[i].res), ro[i].err);
                    CHECK(!*ver, "11 %s: the application's put was overwritten: stored %s", how, ver);
                } else {
                    CHECK(ro[i].res == APPLY_WRITTEN, "11 %s: member %d: %s (%s)", how, i,
                          apply_result_name(ro[i].res), ro[i].err);
                    CHECK(strcmp(ver, r[i].version) == 0, "11 %s: member %d stored %s", how, i, ver);
                }
            }
            for (int i = 0; i < APPLY_GROUP_MIN; i++) change_free(&r[i]);
        }
        for (int i = 0; i < N9; i++) change_free(&g[i]);
        store_multi_free(wr.m);
        for (size_t k = 0; k < wr.n; k++) store_free(wr.h[k]);
    }
    state_free(ST);
    store_free(S);
    printf("apply_check: OK (%d checks)\n", checks);
    return 0;
}
