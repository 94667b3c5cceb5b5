/* ddbtool.c -- a small DynamoDB client for integration tests and the drill, built on
 * Tern's store client (a real HTTP client against a real DynamoDB Local).
 *
 *   ddbtool put    ENDPOINT TABLE ITEM_JSON
 *   ddbtool put    ENDPOINT TABLE - GAP_MS            one item a line from stdin, each put
 *                  once the one before was acknowledged and GAP_MS after it (a paced
 *                  burst without a process per write)
 *   ddbtool get    ENDPOINT TABLE KEY_JSON            prints the item (canonical), exit 3 if absent
 *   ddbtool delete ENDPOINT TABLE KEY_JSON
 *   ddbtool update ENDPOINT TABLE KEY_JSON EXPR VALUES_JSON
 *   ddbtool count  ENDPOINT TABLE                     prints the number of items
 *   ddbtool wait   ENDPOINT TABLE KEY_JSON ATTR VALUE TIMEOUT_MS
 *                  polls until the S or N attribute ATTR equals VALUE ("-" : until absent);
 *                  prints the elapsed ms; exit 1 on timeout
 *   ddbtool call   ENDPOINT TABLE OPERATION REQUEST_JSON
 *                  any operation (UpdateTable, DescribeStream...): TableName (none when
 *                  TABLE is "-") plus the fields of REQUEST_JSON; prints the response
 *   ddbtool load   ENDPOINT TABLE [--writers N] [--keys K] [--seconds S] [--prefix P]
 *                  [--seed X] [--mix put,update,delete,rmw percentages e.g. 50,20,15,15]
 *                  N threads write random operations on keys P#0..P#K-1 for S seconds;
 *                  rmw = GetItem then PutItem of every attribute read (hidden ones too)
 *                  with one changed. Prints "acked=N put=.. update=.. delete=.. rmw=..".
 * Items use the keys PK (S) and SK (S) (SK = "ITEM").
 * Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "local". */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "item.h"
#include "store.h"

static store *tool_store(const char *endpoint) {
    store_opts o;
    char err[256];
    store *s;
    store_opts_client(&o, endpoint);
    o.timeout_ms = 5000;
    s = store_new(&o, err, sizeof err);
    if (!s) fprintf(stderr, "ddbtool: %s\n", err);
    return s;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static cJSON *parse_or_die(const char *what, const char *json) {
    cJSON *j = cJSON_Parse(json);
    if (!j) {
        fprintf(stderr, "ddbtool: %s is not JSON: %s\n", what, json);
        exit(2);
    }
    return j;
}

static int call(store *s, const char *op, cJSON *req, cJSON **resp) {
    store_status st = store_call(s, op, req, resp);
    if (st != STORE_OK) {
        fprintf(stderr, "ddbtool: %s: %s: %s\n", op, store_status_name(st), store_errstr(s));
        return -1;
    }
    return 0;
}

static cJSON *get_item(store *s, const char *table, const cJSON *key, int *err) {
    cJSON *req = cJSON_CreateObject(), *resp = NULL, *item = NULL;
    cJSON_AddStringToObject(req, "TableName", table);
    cJSON_AddItemToObject(req, "Key", cJSON_Duplicate(key, 1));
    cJSON_AddTrueToObject(req, "ConsistentRead");
    *err = call(s, "GetItem", req, &resp) != 0;
    cJSON_Delete(req);
    if (resp) {
        cJSON *i = cJSON_GetObjectItemCaseSensitive(resp, "Item");
        if (i) item = cJSON_Duplicate(i, 1);
    }
    cJSON_Delete(resp);
    return item;
}

static long parse_long(const char *s, const char *what) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "ddbtool: %s: not a number: %s\n", what, s);
        exit(2);
    }
    return v;
}

/* ---- load ---- */
typedef struct {
    const char *endpoint, *table, *prefix;
    long keys, seconds;
    int mix[4];
    unsigned seed;
    atomic_long acked, n[4], errors;
} load_cfg;

static void rand_key(cJSON *key, const char *prefix, long k) {
    char pk[128];
    snprintf(pk, sizeof pk, "%s#%ld", prefix, k);
    cJSON_AddItemToObject(key, "PK", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(key, "PK"), "S", pk);
    cJSON_AddItemToObject(key, "SK", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(key, "SK"), "S", "ITEM");
}

static void add_s(cJSON *item, const char *name, const char *v) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "S", v);
    if (cJSON_GetObjectItemCaseSensitive(item, name)) cJSON_ReplaceItemInObjectCaseSensitive(item, name, a);
    else cJSON_AddItemToObject(item, name, a);
}

static void *load_thread(void *arg) {
    load_cfg *c = arg;
    store *s = tool_store(c->endpoint);
    unsigned seed = c->seed ^ (unsigned)(uintptr_t)pthread_self();
    long long end = mono_ms() + c->seconds * 1000;
    char val[64];
    if (!s) return NULL;
    while (mono_ms() < end) {
        int r = rand_r(&seed) % 100, op = 0, acc = 0;
        cJSON *key = cJSON_CreateObject(), *req = cJSON_CreateObject(), *resp = NULL;
        const char *opname = "PutItem";
        for (op = 0; op < 4; op++) {
            acc += c->mix[op];
            if (r < acc) break;
        }
        if (op == 4) op = 0;
        rand_key(key, c->prefix, rand_r(&seed) % c->keys);
        snprintf(val, sizeof val, "v%u", (unsigned)rand_r(&seed));
        cJSON_AddStringToObject(req, "TableName", c->table);
        if (op == 0) {
            cJSON *item = cJSON_Duplicate(key, 1);
            add_s(item, "val", val);
            cJSON_AddItemToObject(req, "Item", item);
        } else if (op == 1) {
            cJSON *vals = cJSON_CreateObject(), *v = cJSON_CreateObject(), *one = cJSON_CreateObject();
            opname = "UpdateItem";
            cJSON_AddItemToObject(req, "Key", cJSON_Duplicate(key, 1));
            cJSON_AddStringToObject(req, "UpdateExpression", "SET upd = :v ADD cnt :one");
            cJSON_AddStringToObject(v, "S", val);
            cJSON_AddStringToObject(one, "N", "1");
            cJSON_AddItemToObject(vals, ":v", v);
            cJSON_AddItemToObject(vals, ":one", one);
            cJSON_AddItemToObject(req, "ExpressionAttributeValues", vals);
        } else if (op == 2) {
            opname = "DeleteItem";
            cJSON_AddItemToObject(req, "Key", cJSON_Duplicate(key, 1));
        } else {
            int e = 0;
            cJSON *item = get_item(s, c->table, key, &e);
            if (!item) item = cJSON_Duplicate(key, 1);
            add_s(item, "rmw", val); /* every attribute read, hidden ones included, is written back */
            cJSON_AddItemToObject(req, "Item", item);
        }
        if (store_call(s, opname, req, &resp) == STORE_OK) {
            atomic_fetch_add(&c->acked, 1);
            atomic_fetch_add(&c->n[op], 1);
        } else {
            atomic_fetch_add(&c->errors, 1);
        }
        cJSON_Delete(resp);
        cJSON_Delete(req);
        cJSON_Delete(key);
    }
    store_free(s);
    return NULL;
}

static int cmd_load(int argc, char **argv) {
    load_cfg c;
    long writers = 4;
    pthread_t th[256];
    memset(&c, 0, sizeof c);
    c.endpoint = argv[2];
    c.table = argv[3];
    c.prefix = "K";
    c.keys = 50;
    c.seconds = 10;
    c.seed = (unsigned)time(NULL);
    c.mix[0] = 50; c.mix[1] = 20; c.mix[2] = 15; c.mix[3] = 15;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--writers")) writers = parse_long(argv[i + 1], "--writers");
        else if (!strcmp(argv[i], "--keys")) c.keys = parse_long(argv[i + 1], "--keys");
        else if (!strcmp(argv[i], "--seconds")) c.seconds = parse_long(argv[i + 1], "--seconds");
        else if (!strcmp(argv[i], "--prefix")) c.prefix = argv[i + 1];
        else if (!strcmp(argv[i], "--seed")) c.seed = (unsigned)parse_long(argv[i + 1], "--seed");
        else if (!strcmp(argv[i], "--mix")) {
            if (sscanf(argv[i + 1], "%d,%d,%d,%d", &c.mix[0], &c.mix[1], &c.mix[2], &c.mix[3]) != 4) {
                fprintf(stderr, "ddbtool: --mix wants four percentages\n");
                return 2;
            }
        } else {
            fprintf(stderr, "ddbtool: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (writers < 1 || writers > 256 || c.keys < 1) return 2;
    for (long i = 0; i < writers; i++) pthread_create(&th[i], NULL, load_thread, &c);
    for (long i = 0; i < writers; i++) pthread_join(th[i], NULL);
    printf("acked=%ld put=%ld update=%ld delete=%ld rmw=%ld errors=%ld\n", atomic_load(&c.acked),
           atomic_load(&c.n[0]), atomic_load(&c.n[1]), atomic_load(&c.n[2]), atomic_load(&c.n[3]),
           atomic_load(&c.errors));
    return 0;
}

static int attr_equals(const cJSON *item, const char *attr, const char *value) {
    const cJSON *a = item ? cJSON_GetObjectItemCaseSensitive(item, attr) : NULL, *v;
    if (!a) return 0;
    v = cJSON_GetObjectItemCaseSensitive(a, "S");
    if (!v) v = cJSON_GetObjectItemCaseSensitive(a, "N");
    return cJSON_IsString(v) && strcmp(v->valuestring, value) == 0;
}

int main(int argc, char **argv) {
    store *s;
    cJSON *req, *resp = NULL;
    int rc = 0;
    if (argc < 4) {
        fprintf(stderr, "usage: ddbtool put|get|delete|update|count|wait|load|call ENDPOINT TABLE ...\n");
        return 2;
    }
    if (!strcmp(argv[1], "load")) return cmd_load(argc, argv);
    s = tool_store(argv[2]);
    if (!s) return 2;
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "TableName", argv[3]);
    if (!strcmp(argv[1], "put") && argc == 6 && !strcmp(argv[4], "-")) {
        long gap = parse_long(argv[5], "gap");
        char line[65536];
        while (!rc && fgets(line, sizeof line, stdin)) {
            cJSON *one = cJSON_CreateObject();
            if (!one) return 2;
            cJSON_AddStringToObject(one, "TableName", argv[3]);
            cJSON_AddItemToObject(one, "Item", parse_or_die("item", line));
            rc = call(s, "PutItem", one, &resp) ? 1 : 0;
            cJSON_Delete(one);
            cJSON_Delete(resp);
            resp = NULL;
            if (gap > 0) usleep((useconds_t)gap * 1000);
        }
    } else if (!strcmp(argv[1], "put") && argc == 5) {
        cJSON_AddItemToObject(req, "Item", parse_or_die("item", argv[4]));
        rc = call(s, "PutItem", req, &resp) ? 1 : 0;
    } else if (!strcmp(argv[1], "delete") && argc == 5) {
        cJSON_AddItemToObject(req, "Key", parse_or_die("key", argv[4]));
        rc = call(s, "DeleteItem", req, &resp) ? 1 : 0;
    } else if (!strcmp(argv[1], "update") && argc == 7) {
        cJSON_AddItemToObject(req, "Key", parse_or_die("key", argv[4]));
        cJSON_AddStringToObject(req, "UpdateExpression", argv[5]);
        cJSON_AddItemToObject(req, "ExpressionAttributeValues", parse_or_die("values", argv[6]));
        rc = call(s, "UpdateItem", req, &resp) ? 1 : 0;
    } else if (!strcmp(argv[1], "call") && argc == 6) {
        /* any operation: the request is TableName (none for "-") plus the fields of
         * argv[5]; prints the response */
        cJSON *extra = parse_or_die("request", argv[5]), *f;
        if (!strcmp(argv[3], "-")) cJSON_DeleteItemFromObject(req, "TableName");
        while ((f = extra->child) != NULL) {
            cJSON_DetachItemViaPointer(extra, f);
            cJSON_AddItemToObject(req, f->string, f);
        }
        cJSON_Delete(extra);
        rc = call(s, argv[4], req, &resp) ? 1 : 0;
        if (!rc) {
            char *out = cJSON_PrintUnformatted(resp);
            if (out) printf("%s\n", out);
            free(out);
        }
    } else if (!strcmp(argv[1], "get") && argc == 5) {
        cJSON *key = parse_or_die("key", argv[4]);
        int e = 0;
        cJSON *item = get_item(s, argv[3], key, &e);
        cJSON_Delete(key);
        if (e) rc = 1;
        else if (!item) rc = 3;
        else {
            char *c = item_canonical(item, 0);
            printf("%s\n", c);
            free(c);
        }
        cJSON_Delete(item);
    } else if (!strcmp(argv[1], "count") && argc == 4) {
        long total = 0;
        cJSON_AddStringToObject(req, "Select", "COUNT");
        for (;;) {
            const cJSON *lek;
            if (call(s, "Scan", req, &resp) != 0) {
                rc = 1;
                break;
            }
            total += (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(resp, "Count"));
            lek = cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedKey");
            if (!lek) break;
            cJSON_DeleteItemFromObject(req, "ExclusiveStartKey");
            cJSON_AddItemToObject(req, "ExclusiveStartKey", cJSON_Duplicate(lek, 1));
            cJSON_Delete(resp);
            resp = NULL;
        }
        if (!rc) printf("%ld\n", total);
    } else if (!strcmp(argv[1], "wait") && argc == 8) {
        cJSON *key = parse_or_die("key", argv[4]);
        long timeout = parse_long(argv[7], "timeout");
        long long start = mono_ms();
        rc = 1;
        while (mono_ms() - start < timeout) {
            int e = 0;
            cJSON *item = get_item(s, argv[3], key, &e);
            int ok = !strcmp(argv[6], "-") ? (!e && !item) : attr_equals(item, argv[5], argv[6]);
            cJSON_Delete(item);
            if (ok) {
                printf("%lld\n", mono_ms() - start);
                rc = 0;
                break;
            }
            usleep(1000);
        }
        cJSON_Delete(key);
    } else {
        fprintf(stderr, "ddbtool: bad command or arguments\n");
        rc = 2;
    }
    cJSON_Delete(resp);
    cJSON_Delete(req);
    store_free(s);
    return rc;
}
