/* store_check.c -- store/ against a real DynamoDB Local.
 *
 * usage: store_check ENDPOINT CLOSED_PORT
 *   ENDPOINT     e.g. http://127.0.0.1:8123 (a fresh DynamoDB Local)
 *   CLOSED_PORT  a loopback port nothing listens on
 * Exits 0 after printing "store_check: OK ..." or 1 with the first failure. Uses one
 * stream-enabled table (tern_store_check) and one table without a stream (tern_store_scan). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "store.h"

static int checks;
static store *S;   /* the main handle, for errstr in failure messages */

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        checks++;                                                                   \
        if (!(cond)) {                                                              \
            fprintf(stderr, "store_check: FAIL at %s:%d: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, " [errstr: %s]\n", S ? store_errstr(S) : "-");          \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

#define CHECK_ST(got, want, what)                                                   \
    CHECK((got) == (want), "%s: got %s, want %s", (what), store_status_name(got),   \
          store_status_name(want))

static cJSON *parse(const char *txt)
{
    cJSON *j = cJSON_Parse(txt);
    if (!j) {
        fprintf(stderr, "store_check: bad JSON literal in the test: %s\n", txt);
        exit(1);
    }
    return j;
}

static int cmp_json_str(const void *a, const void *b)
{
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    return strcmp(x->valuestring ? x->valuestring : "", y->valuestring ? y->valuestring : "");
}

static int cmp_json_key(const void *a, const void *b)
{
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* Sorts object members by key, and set members (SS/NS/BS) by value, recursively, in
 * place: two AttributeValue trees holding the same data then print identically. */
static void canonicalize(cJSON *j)
{
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
        return;
    for (cJSON *c = j->child; c; c = c->next)
        canonicalize(c);
    int n = cJSON_GetArraySize(j);
    if (n < 2)
        return;
    int is_set = cJSON_IsArray(j) && j->string &&
                 (!strcmp(j->string, "SS") || !strcmp(j->string, "NS") || !strcmp(j->string, "BS"));
    if (!cJSON_IsObject(j) && !is_set)
        return;
    cJSON **v = malloc((size_t)n * sizeof *v);
    if (!v)
        exit(1);
    int i = 0;
    for (cJSON *c = j->child; c; c = c->next)
        v[i++] = c;
    qsort(v, (size_t)n, sizeof *v, cJSON_IsObject(j) ? cmp_json_key : cmp_json_str);
    for (i = 0; i < n; i++) {
        v[i]->prev = i ? v[i - 1] : v[n - 1];   /* cJSON: child->prev is the last item */
        v[i]->next = i + 1 < n ? v[i + 1] : NULL;
    }
    j->child = v[0];
    free(v);
}

/* Canonical text of j (j untouched); caller frees. */
static char *canon(const cJSON *j)
{
    cJSON *d = cJSON_Duplicate(j, 1);
    if (!d)
        exit(1);
    canonicalize(d);
    char *t = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    if (!t)
        exit(1);
    return t;
}

static int same(const cJSON *a, const cJSON *b)
{
    char *x = canon(a), *y = canon(b);
    int eq = !strcmp(x, y);
    if (!eq)
        fprintf(stderr, "store_check: differ:\n  %s\n  %s\n", x, y);
    free(x);
    free(y);
    return eq;
}

static const char *sval(const cJSON *map, const char *attr)
{
    return cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(map, attr), "S"));
}

static const char *nval(const cJSON *map, const char *attr)
{
    return cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(map, attr), "N"));
}

#define T "tern_store_check"
#define TSCAN "tern_store_scan"
#define SCAN_ITEMS 1500

static const char *ALL_TYPES =
    "{\"PK\":{\"S\":\"all\"},\"SK\":{\"S\":\"types\"},"
    "\"s\":{\"S\":\"h\\u00e9llo \\u2603 \\\"quoted\\\"\"},"
    "\"n\":{\"N\":\"12345678901234567890.123\"},"
    "\"neg\":{\"N\":\"-0.000000000000000000000000000000000001\"},"
    "\"b\":{\"B\":\"AAEC/w==\"},"
    "\"t\":{\"BOOL\":true},\"f\":{\"BOOL\":false},"
    "\"nul\":{\"NULL\":true},"
    "\"l\":{\"L\":[{\"S\":\"x\"},{\"N\":\"1\"},{\"L\":[]},{\"M\":{}},{\"NULL\":true}]},"
    "\"m\":{\"M\":{\"z\":{\"S\":\"last\"},\"a\":{\"N\":\"99\"},\"deep\":{\"M\":{\"k\":{\"BOOL\":false}}}}},"
    "\"ss\":{\"SS\":[\"pear\",\"apple\",\"fig\"]},"
    "\"ns\":{\"NS\":[\"3\",\"1.5\",\"-2\",\"12345678901234567890\"]},"
    "\"bs\":{\"BS\":[\"AQ==\",\"Ag==\",\"/w==\"]}}";

static void check_tables(store_table_info *info)
{
    store_table_spec spec = {.table = T, .hash_key = "PK", .range_key = "SK",
                             .stream_new_and_old = 1};
    CHECK_ST(store_create_table(S, &spec), STORE_OK, "CreateTable " T);
    CHECK_ST(store_wait_table_active(S, T, 30000, info), STORE_OK, "wait ACTIVE " T);
    CHECK(!strcmp(info->hash_key, "PK") && !strcmp(info->range_key, "SK"),
          "key schema %s/%s", info->hash_key, info->range_key);
    CHECK(info->stream_enabled && !strcmp(info->stream_view_type, "NEW_AND_OLD_IMAGES"),
          "stream spec enabled=%d view=%s", info->stream_enabled, info->stream_view_type);
    CHECK(info->latest_stream_arn[0], "no LatestStreamArn");
    CHECK_ST(store_create_table(S, &spec), STORE_ERR_IN_USE, "CreateTable twice");
    CHECK(strstr(store_errstr(S), "ResourceInUseException"), "errstr %s", store_errstr(S));

    store_table_spec scan = {.table = TSCAN, .hash_key = "PK", .hash_type = "N"};
    CHECK_ST(store_create_table(S, &scan), STORE_OK, "CreateTable " TSCAN);
    store_table_info si;
    CHECK_ST(store_wait_table_active(S, TSCAN, 30000, &si), STORE_OK, "wait ACTIVE " TSCAN);
    CHECK(!si.stream_enabled && !si.range_key[0] && !si.latest_stream_arn[0],
          "scan table: stream %d range '%s'", si.stream_enabled, si.range_key);
}

static void check_items(void)
{
    cJSON *item = parse(ALL_TYPES);
    cJSON *key = parse("{\"PK\":{\"S\":\"all\"},\"SK\":{\"S\":\"types\"}}");
    cJSON *resp = NULL, *got = NULL;

    CHECK_ST(store_put_item(S, T, item, NULL, &resp), STORE_OK, "PutItem all types");
    CHECK(resp && !cJSON_GetObjectItemCaseSensitive(resp, "Attributes"), "PutItem response");
    cJSON_Delete(resp);
    CHECK_ST(store_get_item(S, T, key, 1, &got), STORE_OK, "GetItem all types");
    CHECK(got != NULL, "GetItem found nothing");
    CHECK(same(item, got), "GetItem returned the item changed");
    CHECK(!strcmp(nval(got, "n"), "12345678901234567890.123"), "N came back as %s", nval(got, "n"));
    cJSON_Delete(got);

    /* Conditional put on an existing key fails, and brings the old item back. */
    store_write_opts cond = {.condition = "attribute_not_exists(PK)",
                             .return_old_on_condition_fail = 1};
    cJSON *other = parse("{\"PK\":{\"S\":\"all\"},\"SK\":{\"S\":\"types\"},\"x\":{\"S\":\"no\"}}");
    store_status st = store_put_item(S, T, other, &cond, &resp);
    CHECK_ST(st, STORE_ERR_CONDITION, "conditional PutItem");
    CHECK(strstr(store_errstr(S), "ConditionalCheckFailedException"), "errstr %s", store_errstr(S));
    CHECK(resp != NULL, "no error body returned with STORE_ERR_CONDITION");
    cJSON *old = cJSON_GetObjectItemCaseSensitive(resp, "Item");
    CHECK(old && same(item, old), "ReturnValuesOnConditionCheckFailure Item missing or wrong");
    cJSON_Delete(resp);
    cJSON_Delete(other);

    /* Validation: an item without its sort key. */
    cJSON *nosk = parse("{\"PK\":{\"S\":\"x\"}}");
    CHECK_ST(store_put_item(S, T, nosk, NULL, NULL), STORE_ERR_VALIDATION, "PutItem without SK");
    cJSON_Delete(nosk);

    /* UpdateItem with names/values and ALL_NEW. */
    cJSON *names = parse("{\"#s\":\"s\",\"#c\":\"cnt\"}");
    cJSON *values = parse("{\":v\":{\"S\":\"updated\"},\":one\":{\"N\":\"1\"}}");
    store_write_opts up = {.condition = "attribute_exists(PK)", .names = names, .values = values,
                           .return_values = "ALL_NEW"};
    CHECK_ST(store_update_item(S, T, key, "SET #s = :v ADD #c :one", &up, &resp), STORE_OK,
             "UpdateItem");
    cJSON *attrs = cJSON_GetObjectItemCaseSensitive(resp, "Attributes");
    CHECK(attrs && !strcmp(sval(attrs, "s"), "updated") && !strcmp(nval(attrs, "cnt"), "1"),
          "UpdateItem ALL_NEW attributes");
    cJSON_Delete(resp);
    cJSON_Delete(names);
    cJSON_Delete(values);

    /* DeleteItem with ALL_OLD returns the updated item; then it is gone. */
    store_write_opts del = {.return_values = "ALL_OLD"};
    CHECK_ST(store_delete_item(S, T, key, &del, &resp), STORE_OK, "DeleteItem");
    attrs = cJSON_GetObjectItemCaseSensitive(resp, "Attributes");
    CHECK(attrs && !strcmp(sval(attrs, "s"), "updated") &&
              !strcmp(nval(attrs, "n"), "12345678901234567890.123"),
          "DeleteItem ALL_OLD attributes");
    cJSON_Delete(resp);
    CHECK_ST(store_get_item(S, T, key, 1, &got), STORE_OK, "GetItem after delete");
    CHECK(got == NULL, "item still there after DeleteItem");

    /* Put it back (for the stream check: INSERT, MODIFY, REMOVE, INSERT). */
    CHECK_ST(store_put_item(S, T, item, NULL, NULL), STORE_OK, "PutItem again");
    cJSON_Delete(item);
    cJSON_Delete(key);
}

static int query_count(const char *pk, const char *prefix, int limit, int *pages, cJSON **first)
{
    char vals[256];
    int has_pre = prefix[0] != '\0';   /* an empty begins_with operand is invalid */
    if (has_pre)
        snprintf(vals, sizeof vals, "{\":pk\":{\"S\":\"%s\"},\":pre\":{\"S\":\"%s\"}}", pk, prefix);
    else
        snprintf(vals, sizeof vals, "{\":pk\":{\"S\":\"%s\"}}", pk);
    cJSON *values = parse(vals);
    cJSON *names = parse(has_pre ? "{\"#p\":\"PK\",\"#s\":\"SK\"}" : "{\"#p\":\"PK\"}");
    cJSON *start = NULL;
    int total = 0;
    *pages = 0;
    for (;;) {
        store_query_opts q = {.table = T,
                              .key_condition = has_pre ? "#p = :pk AND begins_with(#s, :pre)"
                                                       : "#p = :pk",
                              .names = names, .values = values, .exclusive_start_key = start,
                              .limit = limit, .consistent = 1, .descending = first != NULL};
        cJSON *resp = NULL;
        CHECK_ST(store_query(S, &q, &resp), STORE_OK, "Query");
        cJSON_Delete(start);
        (*pages)++;
        cJSON *items = cJSON_GetObjectItemCaseSensitive(resp, "Items");
        if (first && total == 0 && cJSON_GetArraySize(items) > 0)
            *first = cJSON_Duplicate(cJSON_GetArrayItem(items, 0), 1);
        total += cJSON_GetArraySize(items);
        start = cJSON_DetachItemFromObjectCaseSensitive(resp, "LastEvaluatedKey");
        cJSON_Delete(resp);
        if (!start)
            break;
    }
    cJSON_Delete(values);
    cJSON_Delete(names);
    return total;
}

static void check_query_batch_transact(void)
{
    /* BatchWriteItem of 60 items (3 chunks of <= 25). */
    cJSON *reqs = cJSON_CreateArray();
    for (int i = 0; i < 60; i++) {
        char txt[256];
        snprintf(txt, sizeof txt,
                 "{\"PutRequest\":{\"Item\":{\"PK\":{\"S\":\"b\"},\"SK\":{\"S\":\"b%03d\"},"
                 "\"i\":{\"N\":\"%d\"}}}}", i, i);
        cJSON_AddItemToArray(reqs, parse(txt));
    }
    cJSON *unproc = NULL;
    CHECK_ST(store_batch_write(S, T, reqs, &unproc), STORE_OK, "BatchWriteItem 60");
    CHECK(unproc == NULL, "unprocessed items left");
    cJSON_Delete(reqs);
    int pages = 0;
    int n = query_count("b", "b", 0, &pages, NULL);
    CHECK(n == 60, "Query after batch: %d items, want 60", n);
    n = query_count("b", "b0", 7, &pages, NULL);
    CHECK(n == 60 && pages >= 9, "paged Query: %d items in %d pages", n, pages);
    cJSON *first = NULL;
    n = query_count("b", "b05", 0, &pages, &first);
    CHECK(n == 10 && first && !strcmp(sval(first, "SK"), "b059"),
          "descending Query: %d items, first %s", n, first ? sval(first, "SK") : "-");
    cJSON_Delete(first);

    /* Batch delete of 30. */
    reqs = cJSON_CreateArray();
    for (int i = 0; i < 30; i++) {
        char txt[256];
        snprintf(txt, sizeof txt,
                 "{\"DeleteRequest\":{\"Key\":{\"PK\":{\"S\":\"b\"},\"SK\":{\"S\":\"b%03d\"}}}}", i);
        cJSON_AddItemToArray(reqs, parse(txt));
    }
    CHECK_ST(store_batch_write(S, T, reqs, NULL), STORE_OK, "BatchWriteItem deletes");
    cJSON_Delete(reqs);
    n = query_count("b", "b", 0, &pages, NULL);
    CHECK(n == 30, "Query after batch delete: %d items, want 30", n);

    /* TransactWriteItems: two puts and a condition check, all or nothing. */
    cJSON *tx = parse(
        "[{\"Put\":{\"TableName\":\"" T "\",\"Item\":{\"PK\":{\"S\":\"tx\"},\"SK\":{\"S\":\"1\"}}}},"
        " {\"Put\":{\"TableName\":\"" T "\",\"Item\":{\"PK\":{\"S\":\"tx\"},\"SK\":{\"S\":\"2\"}}}},"
        " {\"ConditionCheck\":{\"TableName\":\"" T "\",\"Key\":{\"PK\":{\"S\":\"b\"},\"SK\":{\"S\":\"b059\"}},"
        "   \"ConditionExpression\":\"attribute_exists(PK)\"}}]");
    cJSON *resp = NULL;
    CHECK_ST(store_transact_write(S, tx, "tern-store-check-tx-1", &resp), STORE_OK,
             "TransactWriteItems");
    cJSON_Delete(resp);
    cJSON_Delete(tx);
    n = query_count("tx", "", 0, &pages, NULL);
    CHECK(n == 2, "transaction wrote %d items, want 2", n);

    tx = parse(
        "[{\"Put\":{\"TableName\":\"" T "\",\"Item\":{\"PK\":{\"S\":\"tx\"},\"SK\":{\"S\":\"3\"}}}},"
        " {\"Put\":{\"TableName\":\"" T "\",\"Item\":{\"PK\":{\"S\":\"tx\"},\"SK\":{\"S\":\"1\"}},"
        "   \"ConditionExpression\":\"attribute_not_exists(PK)\"}}]");
    store_status st = store_transact_write(S, tx, NULL, &resp);
    CHECK_ST(st, STORE_ERR_TRANSACTION, "failing TransactWriteItems");
    CHECK(strstr(store_errstr(S), "TransactionCanceledException"), "errstr %s", store_errstr(S));
    cJSON *reasons = cJSON_GetObjectItemCaseSensitive(resp, "CancellationReasons");
    CHECK(cJSON_GetArraySize(reasons) == 2, "CancellationReasons missing (%d)", cJSON_GetArraySize(reasons));
    const char *code = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(reasons, 1), "Code"));
    CHECK(code && !strcmp(code, "ConditionalCheckFailed"), "reason code %s", code ? code : "-");
    cJSON_Delete(resp);
    cJSON_Delete(tx);
    n = query_count("tx", "", 0, &pages, NULL);
    CHECK(n == 2, "cancelled transaction wrote something: %d items", n);
}

/* ---- scan ---- */

static atomic_int seen[SCAN_ITEMS];
static atomic_int seen_bad;

static int on_item(const cJSON *item, int segment, void *ud)
{
    (void)segment;
    (void)ud;
    const char *pk = nval(item, "PK");
    char *end = NULL;
    long v = pk ? strtol(pk, &end, 10) : -1;
    const char *data = sval(item, "data");
    if (!pk || *end || v < 0 || v >= SCAN_ITEMS || !data || strlen(data) != 1000)
        atomic_fetch_add(&seen_bad, 1);
    else
        atomic_fetch_add(&seen[v], 1);
    return 0;
}

static int stop_after_one(const cJSON *item, int segment, void *ud)
{
    (void)item;
    (void)segment;
    (void)ud;
    return 1;
}

static void check_all_seen_once(const char *what)
{
    int bad = atomic_load(&seen_bad), missing = 0, dup = 0;
    for (int i = 0; i < SCAN_ITEMS; i++) {
        int c = atomic_load(&seen[i]);
        if (c == 0)
            missing++;
        else if (c > 1)
            dup++;
        atomic_store(&seen[i], 0);
    }
    atomic_store(&seen_bad, 0);
    CHECK(!bad && !missing && !dup, "%s: %d malformed, %d missing, %d seen twice", what, bad,
          missing, dup);
}

static void check_scan(const store_opts *o)
{
    char data[1001];
    memset(data, 'd', 1000);
    data[1000] = '\0';
    cJSON *reqs = cJSON_CreateArray();
    for (int i = 0; i < SCAN_ITEMS; i++) {
        cJSON *r = cJSON_CreateObject(), *put = cJSON_AddObjectToObject(r, "PutRequest");
        cJSON *it = cJSON_AddObjectToObject(put, "Item");
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(it, "PK"), "N", num);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(it, "data"), "S", data);
        cJSON_AddItemToArray(reqs, r);
    }
    CHECK_ST(store_batch_write(S, TSCAN, reqs, NULL), STORE_OK, "BatchWriteItem 1500 x 1 KB");
    cJSON_Delete(reqs);

    /* Page by page on the main handle: more than 1 MB means more than one page. */
    cJSON *start = NULL;
    int pages = 0, total = 0;
    for (;;) {
        store_scan_opts q = {.table = TSCAN, .exclusive_start_key = start};
        cJSON *resp = NULL;
        CHECK_ST(store_scan_page(S, &q, &resp), STORE_OK, "Scan page");
        cJSON_Delete(start);
        pages++;
        cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp, "Items")) {
            on_item(it, 0, NULL);
            total++;
        }
        start = cJSON_DetachItemFromObjectCaseSensitive(resp, "LastEvaluatedKey");
        cJSON_Delete(resp);
        if (!start)
            break;
    }
    CHECK(pages >= 2 && total == SCAN_ITEMS, "paged Scan: %d items in %d pages", total, pages);
    check_all_seen_once("paged Scan");

    char err[512] = "";
    store_status st = store_scan_all(o, TSCAN, 1, 0, on_item, NULL, err, sizeof err);
    CHECK_ST(st, STORE_OK, "scan_all 1 segment");
    check_all_seen_once("scan_all 1 segment");
    st = store_scan_all(o, TSCAN, 4, 1, on_item, NULL, err, sizeof err);
    CHECK(st == STORE_OK, "scan_all 4 segments: %s (%s)", store_status_name(st), err);
    check_all_seen_once("scan_all 4 segments");
    st = store_scan_all(o, TSCAN, 4, 0, stop_after_one, NULL, err, sizeof err);
    CHECK(st == STORE_ERR_OTHER && strstr(err, "stopped by callback"), "scan_all stop: %s (%s)",
          store_status_name(st), err);
    st = store_scan_all(o, "no_such_table", 2, 0, on_item, NULL, err, sizeof err);
    CHECK(st == STORE_ERR_NOT_FOUND && strstr(err, "ResourceNotFoundException"),
          "scan_all missing table: %s (%s)", store_status_name(st), err);
}

/* ---- streams ---- */

typedef struct {
    int insert, modify, remove;
    int insert_all_ok, modify_ok, remove_ok;
    char first_seq[128], second_seq[128], first_shard[256];
} stream_seen;

/* DynamoDB Local (3.3.0) writes an empty map nested in a stream image as {} instead of
 * {"M":{}} (GetItem returns it right). Put the type back so images compare with the
 * item; a no-op on a store that gets it right. */
static void fix_av(cJSON *av)
{
    if (!cJSON_IsObject(av))
        return;
    if (!av->child) {
        cJSON_AddItemToObject(av, "M", cJSON_CreateObject());
        return;
    }
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(av, "M"))
        fix_av(c);
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(av, "L"))
        fix_av(c);
}

static void fix_image(cJSON *img)
{
    cJSON *c;
    cJSON_ArrayForEach(c, img)
        fix_av(c);
}

static void look_at_record(cJSON *rec, stream_seen *sn, const cJSON *all_types)
{
    const char *ev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "eventName"));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "dynamodb");
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(d, "Keys");
    cJSON *ni = cJSON_GetObjectItemCaseSensitive(d, "NewImage");
    cJSON *oi = cJSON_GetObjectItemCaseSensitive(d, "OldImage");
    fix_image(ni);
    fix_image(oi);
    const char *pk = sval(keys, "PK");
    int is_all = pk && !strcmp(pk, "all");
    if (!ev)
        return;
    if (!strcmp(ev, "INSERT")) {
        sn->insert++;
        if (is_all && ni && !oi && same(ni, all_types))
            sn->insert_all_ok++;
    } else if (!strcmp(ev, "MODIFY")) {
        sn->modify++;
        if (is_all && ni && oi && !strcmp(sval(ni, "s"), "updated") && same(oi, all_types))
            sn->modify_ok++;
    } else if (!strcmp(ev, "REMOVE")) {
        sn->remove++;
        if (is_all && oi && !ni && !strcmp(sval(oi, "s"), "updated"))
            sn->remove_ok++;
    }
}

static void check_streams(const store_table_info *info)
{
    cJSON *streams = NULL;
    CHECK_ST(store_list_streams(S, T, &streams), STORE_OK, "ListStreams");
    CHECK(cJSON_GetArraySize(streams) == 1, "ListStreams: %d streams", cJSON_GetArraySize(streams));
    const char *arn = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(streams, 0), "StreamArn"));
    CHECK(arn && !strcmp(arn, info->latest_stream_arn), "stream ARN %s vs %s", arn ? arn : "-",
          info->latest_stream_arn);
    cJSON_Delete(streams);
    CHECK_ST(store_list_streams(S, NULL, &streams), STORE_OK, "ListStreams (all)");
    CHECK(cJSON_GetArraySize(streams) == 1, "ListStreams all: %d", cJSON_GetArraySize(streams));
    cJSON_Delete(streams);

    cJSON *desc = NULL;
    CHECK_ST(store_describe_stream(S, info->latest_stream_arn, &desc), STORE_OK, "DescribeStream");
    cJSON *shards = cJSON_GetObjectItemCaseSensitive(desc, "Shards");
    CHECK(cJSON_GetArraySize(shards) >= 1, "no shards");
    CHECK(!cJSON_GetObjectItemCaseSensitive(desc, "LastEvaluatedShardId"), "LastEvaluatedShardId kept");
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(desc, "StreamStatus"));
    CHECK(status && !strcmp(status, "ENABLED"), "StreamStatus %s", status ? status : "-");

    cJSON *all_types = parse(ALL_TYPES);
    stream_seen sn;
    memset(&sn, 0, sizeof sn);
    int nrec = 0;
    cJSON *sh;
    cJSON_ArrayForEach(sh, shards) {
        const char *sid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sh, "ShardId"));
        CHECK(sid != NULL, "shard without ShardId");
        char *it = NULL;
        CHECK_ST(store_get_shard_iterator(S, info->latest_stream_arn, sid, STORE_ITER_TRIM_HORIZON,
                                          NULL, &it),
                 STORE_OK, "GetShardIterator TRIM_HORIZON");
        int empty = 0;
        while (it && empty < 3) {
            cJSON *recs = NULL;
            char *next = NULL;
            CHECK_ST(store_get_records(S, it, 100, &recs, &next), STORE_OK, "GetRecords");
            free(it);
            it = next;
            if (cJSON_GetArraySize(recs) == 0)
                empty++;
            cJSON *r;
            cJSON_ArrayForEach(r, recs) {
                const char *seq = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(r, "dynamodb"), "SequenceNumber"));
                if (nrec == 0 && seq) {
                    snprintf(sn.first_seq, sizeof sn.first_seq, "%s", seq);
                    snprintf(sn.first_shard, sizeof sn.first_shard, "%s", sid);
                } else if (nrec == 1 && seq && !strcmp(sid, sn.first_shard)) {
                    snprintf(sn.second_seq, sizeof sn.second_seq, "%s", seq);
                }
                nrec++;
                look_at_record(r, &sn, all_types);
            }
            cJSON_Delete(recs);
        }
        free(it);
    }
    cJSON_Delete(all_types);
    CHECK(sn.insert_all_ok >= 1 && sn.modify_ok == 1 && sn.remove_ok == 1,
          "stream records: %d INSERT (%d of the all-types item intact), %d MODIFY (%d ok), "
          "%d REMOVE (%d ok)", sn.insert, sn.insert_all_ok, sn.modify, sn.modify_ok, sn.remove,
          sn.remove_ok);
    /* INSERT all, MODIFY all, REMOVE all, INSERT all, 60 + 30 batch, 2 tx */
    CHECK(sn.insert == 2 + 60 + 2 && sn.modify == 1 && sn.remove == 1 + 30,
          "stream record counts: %d INSERT, %d MODIFY, %d REMOVE", sn.insert, sn.modify, sn.remove);

    /* AT / AFTER sequence number and LATEST iterators. */
    char *it = NULL;
    cJSON *recs = NULL;
    char *next = NULL;
    CHECK_ST(store_get_shard_iterator(S, info->latest_stream_arn, sn.first_shard,
                                      STORE_ITER_AT_SEQUENCE, sn.first_seq, &it),
             STORE_OK, "GetShardIterator AT_SEQUENCE_NUMBER");
    CHECK_ST(store_get_records(S, it, 1, &recs, &next), STORE_OK, "GetRecords AT");
    const char *seq = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 0), "dynamodb"), "SequenceNumber"));
    CHECK(seq && !strcmp(seq, sn.first_seq), "AT_SEQUENCE_NUMBER gave %s, want %s", seq ? seq : "-",
          sn.first_seq);
    cJSON_Delete(recs);
    free(it);
    free(next);
    CHECK_ST(store_get_shard_iterator(S, info->latest_stream_arn, sn.first_shard,
                                      STORE_ITER_AFTER_SEQUENCE, sn.first_seq, &it),
             STORE_OK, "GetShardIterator AFTER_SEQUENCE_NUMBER");
    CHECK_ST(store_get_records(S, it, 1, &recs, &next), STORE_OK, "GetRecords AFTER");
    seq = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 0), "dynamodb"), "SequenceNumber"));
    CHECK(seq && !strcmp(seq, sn.second_seq), "AFTER_SEQUENCE_NUMBER gave %s, want %s",
          seq ? seq : "-", sn.second_seq);
    cJSON_Delete(recs);
    free(it);
    free(next);
    const char *last_shard = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(shards, cJSON_GetArraySize(shards) - 1), "ShardId"));
    CHECK_ST(store_get_shard_iterator(S, info->latest_stream_arn, last_shard, STORE_ITER_LATEST,
                                      NULL, &it),
             STORE_OK, "GetShardIterator LATEST");
    CHECK_ST(store_get_records(S, it, 0, &recs, &next), STORE_OK, "GetRecords LATEST");
    CHECK(cJSON_GetArraySize(recs) == 0 && next != NULL, "LATEST: %d records, next %s",
          cJSON_GetArraySize(recs), next ? "set" : "NULL");
    cJSON_Delete(recs);
    free(it);
    free(next);

    /* A bad iterator and an unknown stream are clear errors. */
    CHECK(store_get_records(S, "not-an-iterator", 0, &recs, &next) != STORE_OK && !recs && !next,
          "GetRecords with a bad iterator succeeded");
    char bad_arn[1100];
    snprintf(bad_arn, sizeof bad_arn, "%s", info->latest_stream_arn);
    char *slash = strrchr(bad_arn, '/');
    if (slash)
        snprintf(slash + 1, sizeof bad_arn - (size_t)(slash + 1 - bad_arn), "2000-01-01T00:00:00.000");
    cJSON *d2 = NULL;
    CHECK_ST(store_describe_stream(S, bad_arn, &d2), STORE_ERR_NOT_FOUND, "DescribeStream unknown ARN");
    CHECK(d2 == NULL, "description set on error");
    cJSON_Delete(desc);
}

static void check_errors(const store_opts *o, int closed_port)
{
    /* Wrong table. */
    cJSON *key = parse("{\"PK\":{\"S\":\"a\"},\"SK\":{\"S\":\"b\"}}"), *got = NULL;
    CHECK_ST(store_get_item(S, "no_such_table", key, 0, &got), STORE_ERR_NOT_FOUND, "GetItem wrong table");
    CHECK(got == NULL && strstr(store_errstr(S), "ResourceNotFoundException"), "errstr %s",
          store_errstr(S));
    store_table_info ti;
    CHECK_ST(store_describe_table(S, "no_such_table", &ti), STORE_ERR_NOT_FOUND,
             "DescribeTable wrong table");
    /* Generic call, a streams op routed to the streams target. */
    cJSON *resp = NULL;
    CHECK_ST(store_call(S, "ListStreams", NULL, &resp), STORE_OK, "store_call ListStreams");
    CHECK(cJSON_GetObjectItemCaseSensitive(resp, "Streams") != NULL, "ListStreams via store_call");
    cJSON_Delete(resp);
    CHECK(store_errstr(S)[0] == '\0', "errstr not cleared after success: %s", store_errstr(S));

    /* Closed port: transient after its retries. */
    store_opts c = *o;
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", closed_port);
    c.endpoint = ep;
    c.max_retries = 3;
    c.backoff_base_ms = 5;
    c.backoff_cap_ms = 40;
    c.timeout_ms = 2000;
    char err[256];
    store *dead = store_new(&c, err, sizeof err);
    CHECK(dead != NULL, "store_new: %s", err);
    store_status st = store_get_item(dead, T, key, 0, &got);
    CHECK(st == STORE_ERR_TRANSIENT && got == NULL, "closed port: %s (%s)", store_status_name(st),
          store_errstr(dead));
    CHECK(strstr(store_errstr(dead), "curl"), "closed port errstr: %s", store_errstr(dead));
    store_stats ds;
    store_get_stats(dead, &ds);
    CHECK(ds.calls == 1 && ds.requests == 4 && ds.retries == 3 &&
              ds.status[STORE_ERR_TRANSIENT] == 1,
          "closed port stats: calls %llu requests %llu retries %llu",
          (unsigned long long)ds.calls, (unsigned long long)ds.requests,
          (unsigned long long)ds.retries);
    store_free(dead);
    c.max_retries = STORE_NO_RETRIES;
    dead = store_new(&c, err, sizeof err);
    CHECK(dead != NULL, "store_new: %s", err);
    CHECK_ST(store_call(dead, "ListTables", NULL, NULL), STORE_ERR_TRANSIENT, "closed port, no retries");
    store_get_stats(dead, &ds);
    CHECK(ds.requests == 1 && ds.retries == 0, "no-retry stats: %llu requests",
          (unsigned long long)ds.requests);
    store_free(dead);
    cJSON_Delete(key);
}

/* store_call_many: calls side by side on their own handles, each with the answer a
 * store_call would give (a put, a failed condition with its old item, a dead endpoint
 * retried alone), and the connections kept for the next round. */
static void check_many(const store_opts *o, int closed_port)
{
    enum { NM = 5 };
    char err[256], ep[64], req[256];
    store *h[NM];
    cJSON *rq[NM], *resp[NM];
    store_status st[NM];
    store_stats hs;
    store_multi *m = store_multi_new(err, sizeof err);
    CHECK(m != NULL, "store_multi_new: %s", err);
    store_opts c = *o;
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", closed_port);
    for (int i = 0; i < NM; i++) {
        if (i == NM - 1) { /* the last one talks to nobody */
            c.endpoint = ep;
            c.max_retries = 2;
            c.backoff_base_ms = 5;
            c.backoff_cap_ms = 20;
        }
        h[i] = store_new(&c, err, sizeof err);
        CHECK(h[i] != NULL, "store_new: %s", err);
    }
    {
        cJSON *old = parse("{\"PK\":{\"S\":\"many\"},\"SK\":{\"S\":\"old\"},\"v\":{\"N\":\"1\"}}");
        CHECK_ST(store_put_item(S, T, old, NULL, NULL), STORE_OK, "PutItem many/old");
        cJSON_Delete(old);
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NM; i++) {
            if (i == 1) /* an item that exists: its condition fails */
                snprintf(req, sizeof req, "{\"TableName\":\"%s\",\"Item\":{\"PK\":{\"S\":\"many\"},"
                         "\"SK\":{\"S\":\"old\"},\"v\":{\"N\":\"2\"}},\"ConditionExpression\":"
                         "\"attribute_not_exists(PK)\",\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\"}", T);
            else
                snprintf(req, sizeof req, "{\"TableName\":\"%s\",\"Item\":{\"PK\":{\"S\":\"many\"},"
                         "\"SK\":{\"S\":\"k%d\"},\"v\":{\"N\":\"%d\"}}}", T, i, round);
            rq[i] = parse(req);
        }
        store_call_many(m, h, NM, "PutItem", (const cJSON *const *)rq, st, resp);
        for (int i = 0; i < NM; i++) {
            if (i == 1) {
                const cJSON *item = resp[i] ? cJSON_GetObjectItemCaseSensitive(resp[i], "Item") : NULL;
                CHECK(st[i] == STORE_ERR_CONDITION && item && nval(item, "v") && !strcmp(nval(item, "v"), "1"),
                      "many: the failed condition: %s, old item %s", store_status_name(st[i]),
                      item ? "present" : "missing");
            } else if (i == NM - 1) {
                CHECK(st[i] == STORE_ERR_TRANSIENT && !resp[i] && strstr(store_errstr(h[i]), "curl"),
                      "many: the dead endpoint: %s (%s)", store_status_name(st[i]), store_errstr(h[i]));
                store_get_stats(h[i], &hs);
                CHECK(hs.calls == (uint64_t)round + 1 && hs.requests == 3 * ((uint64_t)round + 1),
                      "many: the dead endpoint was not retried alone: %llu calls, %llu requests",
                      (unsigned long long)hs.calls, (unsigned long long)hs.requests);
            } else {
                char k[8];
                cJSON *key, *got = NULL;
                CHECK(st[i] == STORE_OK && resp[i] && store_errstr(h[i])[0] == '\0', "many: put %d: %s (%s)", i,
                      store_status_name(st[i]), store_errstr(h[i]));
                snprintf(k, sizeof k, "k%d", i);
                snprintf(req, sizeof req, "{\"PK\":{\"S\":\"many\"},\"SK\":{\"S\":\"%s\"}}", k);
                key = parse(req);
                CHECK_ST(store_get_item(S, T, key, 1, &got), STORE_OK, "GetItem many");
                CHECK(got && nval(got, "v") && strtol(nval(got, "v"), NULL, 10) == round, "many: put %d not stored",
                      i);
                cJSON_Delete(got);
                cJSON_Delete(key);
                store_get_stats(h[i], &hs);
                CHECK(hs.connects == 1, "many: handle %d opened %llu connections in %d rounds", i,
                      (unsigned long long)hs.connects, round + 1);
            }
            cJSON_Delete(rq[i]);
            cJSON_Delete(resp[i]);
        }
    }
    /* side by side, retries too: calls to a server that accepts and never answers, each
     * timing out after 1 s and retried once, end together after about 2 s (one after
     * another they would take 2 s each) */
    {
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        char hung[64];
        store *hh[NM];
        cJSON *none[NM] = {0};
        struct timespec t0, t1;
        CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ls, 16) == 0 &&
                  getsockname(ls, (struct sockaddr *)&sa, &sl) == 0,
              "a listening socket: %s", strerror(errno));
        snprintf(hung, sizeof hung, "http://127.0.0.1:%d", ntohs(sa.sin_port));
        c = *o;
        c.endpoint = hung;
        c.timeout_ms = 1000;
        c.max_retries = 1;
        c.backoff_base_ms = 5;
        c.backoff_cap_ms = 5;
        for (int i = 0; i < NM; i++) {
            hh[i] = store_new(&c, err, sizeof err);
            CHECK(hh[i] != NULL, "store_new: %s", err);
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        store_call_many(m, hh, NM, "ListTables", (const cJSON *const *)none, st, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        for (int i = 0; i < NM; i++) {
            store_get_stats(hh[i], &hs);
            CHECK(st[i] == STORE_ERR_TRANSIENT && hs.requests == 2 && hs.retries == 1,
                  "many: hung server, call %d: %s, %llu requests", i, store_status_name(st[i]),
                  (unsigned long long)hs.requests);
            store_free(hh[i]);
        }
        CHECK(secs >= 1.9 && secs < 3.5, "many: %d calls to a hung server took %.2f s, not about 2 (side by side)",
              NM, secs);
        close(ls);
    }
    /* more than STORE_MULTI_MAX: refused, nothing sent */
    {
        store *many[STORE_MULTI_MAX + 1];
        const cJSON *nreq[STORE_MULTI_MAX + 1] = {0};
        store_status nst[STORE_MULTI_MAX + 1];
        for (int i = 0; i <= STORE_MULTI_MAX; i++) many[i] = h[0];
        store_get_stats(h[0], &hs);
        uint64_t before = hs.requests;
        store_call_many(m, many, STORE_MULTI_MAX + 1, "PutItem", nreq, nst, NULL);
        store_get_stats(h[0], &hs);
        CHECK(nst[0] == STORE_ERR_OTHER && hs.requests == before, "many: over STORE_MULTI_MAX: %s, %llu requests",
              store_status_name(nst[0]), (unsigned long long)(hs.requests - before));
    }
    store_multi_free(m);
    for (int i = 0; i < NM; i++) store_free(h[i]);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: store_check ENDPOINT CLOSED_PORT\n");
        return 2;
    }
    char *end = NULL;
    long closed = strtol(argv[2], &end, 10);
    if (!*argv[2] || *end || closed < 1 || closed > 65535) {
        fprintf(stderr, "store_check: bad port %s\n", argv[2]);
        return 2;
    }
    store_opts o = {.endpoint = argv[1], .region = "us-east-1", .access_key_id = "ternlocal",
                    .secret_access_key = "ternlocalsecret", .session_token = "ternsession",
                    .timeout_ms = 20000};
    char err[256];
    S = store_new(&o, err, sizeof err);
    if (!S) {
        fprintf(stderr, "store_check: store_new: %s\n", err);
        return 1;
    }
    store_table_info info;
    check_tables(&info);
    check_items();
    check_query_batch_transact();
    check_scan(&o);
    check_streams(&info);
    check_errors(&o, (int)closed);
    check_many(&o, (int)closed);

    store_stats st;
    store_get_stats(S, &st);
    uint64_t bucket_sum = 0;
    for (int i = 0; i < STORE_LAT_BUCKETS; i++)
        bucket_sum += st.latency_bucket[i];
    CHECK(st.requests >= st.calls - st.status[STORE_ERR_VALIDATION] && st.latency_count == st.requests &&
              bucket_sum == st.latency_count && st.latency_sum_ms > 0,
          "stats: calls %llu requests %llu latency_count %llu buckets %llu",
          (unsigned long long)st.calls, (unsigned long long)st.requests,
          (unsigned long long)st.latency_count, (unsigned long long)bucket_sum);
    CHECK(st.connects >= 1 && st.connects <= 3, "keep-alive: %llu connections for %llu requests",
          (unsigned long long)st.connects, (unsigned long long)st.requests);
    CHECK(st.status[STORE_ERR_CONDITION] == 1 && st.status[STORE_ERR_TRANSACTION] == 1 &&
              st.status[STORE_ERR_IN_USE] == 1,
          "status counters: condition %llu transaction %llu in_use %llu",
          (unsigned long long)st.status[STORE_ERR_CONDITION],
          (unsigned long long)st.status[STORE_ERR_TRANSACTION],
          (unsigned long long)st.status[STORE_ERR_IN_USE]);
    printf("store_check: OK: %d checks passed; %llu calls, %llu HTTP requests over %llu "
           "connection(s), %llu retries, mean latency %.2f ms\n",
           checks, (unsigned long long)st.calls, (unsigned long long)st.requests,
           (unsigned long long)st.connects,
           (unsigned long long)st.retries,
           st.latency_count ? st.latency_sum_ms / (double)st.latency_count : 0.0);
    store_free(S);
    return 0;
}
