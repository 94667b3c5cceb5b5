/* storebench.c -- the write paths of one table store, side by side: how many items a second
 * each way of writing gets through, with the same items (bench's shape: a 128-byte payload
 * and Tern's tern:ver / tern:wid attributes) and the same number of client threads.
 *
 * usage: storebench --endpoint URL --table T --mode MODE [--items N] [--threads N]
 *                   [--seconds S]
 * MODE: put     PutItem
 *       cput    PutItem with Tern's condition (attribute_not_exists(tern:ver) OR tern:ver < :v)
 *       txn     TransactWriteItems of --items such conditional puts (what the replicator
 *               writes under load)
 *       batch   BatchWriteItem of --items puts (at most 25; what the baseline copier writes)
 *       bget    BatchGetItem (ConsistentRead) of --items keys, then 1 ms pause (a prober)
 * Every item is a new key. Prints one JSON line: items/s, requests/s, mean request latency.
 * Not a test: bench/store-ceiling runs it (docs/lag.md, "The destination store's ceiling").
 * Threading: --threads client threads, each with its own store handle; the totals are
 * atomics. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "store.h"

#define MAX_THREADS 64
#define MAX_ITEMS 100

static struct {
    const char *endpoint, *table, *mode;
    long items, threads, seconds;
    atomic_long n_items, n_reqs, n_errors;
    atomic_llong lat_us;
} S;

/* Adds {"<name>": {"<type>": "<value>"}} to o; 0/-1 (out of memory). */
static int add_av(cJSON *o, const char *name, const char *type, const char *value) {
    cJSON *v = cJSON_CreateObject();
    if (!v || !cJSON_AddStringToObject(v, type, value) || !cJSON_AddItemToObject(o, name, v)) {
        cJSON_Delete(v);
        return -1;
    }
    return 0;
}

/* A new item (keys_only: just its key); the caller frees it. NULL: out of memory. */
static cJSON *new_item(long thread, long n, int keys_only) {
    char pk[96], payload[129];
    cJSON *it = cJSON_CreateObject();
    snprintf(pk, sizeof pk, "sb#%ld#%ld#%lld", thread, n, bench_now_us());
    memset(payload, 'x', 128);
    payload[128] = '\0';
    if (!it || add_av(it, "PK", "S", pk) != 0 || add_av(it, "SK", "S", "ITEM") != 0) goto fail;
    if (!keys_only && (add_av(it, "payload", "S", payload) != 0 ||
                       add_av(it, "tern:ver", "S", "1795478835121-000000-us-east-1") != 0 ||
                       add_av(it, "tern:wid", "S", "eu-west-1.0123456789abcdef") != 0))
        goto fail;
    return it;
fail:
    cJSON_Delete(it);
    return NULL;
}

/* Tern's put condition on req (apply.h: a version never overwrites a higher one). */
static int add_condition(cJSON *req) {
    cJSON *names = cJSON_AddObjectToObject(req, "ExpressionAttributeNames");
    cJSON *values = cJSON_AddObjectToObject(req, "ExpressionAttributeValues");
    return names && values && cJSON_AddStringToObject(names, "#v", "tern:ver") &&
                   add_av(values, ":v", "S", "1795478835121-000000-us-east-1") == 0 &&
                   cJSON_AddStringToObject(req, "ConditionExpression", "attribute_not_exists(#v) OR #v < :v")
               ? 0
               : -1;
}

/* One request of the mode into *req (which the caller frees, also on -1) and its operation
 * name (static) into *op; returns the items it carries, or -1 (out of memory). */
static long build(long thread, long *n, cJSON **req, const char **op) {
    const char *m = S.mode;
    cJSON *r = cJSON_CreateObject(), *arr = NULL, *ri, *it;
    long k;
    *req = r;
    if (!r) return -1;
    if (!strcmp(m, "put") || !strcmp(m, "cput")) {
        *op = "PutItem";
        if (!cJSON_AddStringToObject(r, "TableName", S.table) || !(it = new_item(thread, (*n)++, 0))) return -1;
        if (!cJSON_AddItemToObject(r, "Item", it)) {
            cJSON_Delete(it);
            return -1;
        }
        return m[0] == 'c' && add_condition(r) != 0 ? -1 : 1;
    }
    if (!strcmp(m, "txn")) {
        *op = "TransactWriteItems";
        arr = cJSON_AddArrayToObject(r, "TransactItems");
    } else if (!strcmp(m, "batch")) {
        *op = "BatchWriteItem";
        if ((ri = cJSON_AddObjectToObject(r, "RequestItems"))) arr = cJSON_AddArrayToObject(ri, S.table);
    } else { /* bget */
        *op = "BatchGetItem";
        cJSON *t = (ri = cJSON_AddObjectToObject(r, "RequestItems")) ? cJSON_AddObjectToObject(ri, S.table) : NULL;
        if (t && cJSON_AddTrueToObject(t, "ConsistentRead") && cJSON_AddStringToObject(t, "ProjectionExpression", "PK"))
            arr = cJSON_AddArrayToObject(t, "Keys");
    }
    if (!arr) return -1;
    for (k = 0; k < S.items; k++) {
        /* each object is attached to the request as soon as it is made, so *req owns it */
        cJSON *parent = arr, *w, *p = NULL;
        if (strcmp(m, "bget")) {
            w = cJSON_CreateObject();
            if (!w || !cJSON_AddItemToArray(arr, w)) {
                cJSON_Delete(w);
                return -1;
            }
            if (!(p = cJSON_AddObjectToObject(w, m[0] == 't' ? "Put" : "PutRequest"))) return -1;
            if (m[0] == 't' && (!cJSON_AddStringToObject(p, "TableName", S.table) || add_condition(p) != 0)) return -1;
            parent = p;
        }
        if (!(it = new_item(thread, (*n)++, !p))) return -1;
        if (!(p ? cJSON_AddItemToObject(parent, "Item", it) : cJSON_AddItemToArray(parent, it))) {
            cJSON_Delete(it);
            return -1;
        }
    }
    return k;
}

static void *run(void *arg) {
    long thread = (long)arg, n = 0;
    store *s;
    long long end;
    if (!(s = bench_store("storebench", S.endpoint))) {
        atomic_fetch_add(&S.n_errors, 1);
        return NULL;
    }
    end = bench_now_us() + S.seconds * 1000000LL;
    while (bench_now_us() < end) {
        cJSON *req = NULL, *resp = NULL;
        const char *op = "";
        long k = build(thread, &n, &req, &op);
        long long t0 = bench_now_us();
        if (k < 0) {
            fprintf(stderr, "storebench: out of memory\n");
            cJSON_Delete(req);
            atomic_fetch_add(&S.n_errors, 1);
            break;
        }
        if (store_call(s, op, req, &resp) == STORE_OK) {
            atomic_fetch_add(&S.lat_us, bench_now_us() - t0);
            atomic_fetch_add(&S.n_items, k);
            atomic_fetch_add(&S.n_reqs, 1);
        } else if (atomic_fetch_add(&S.n_errors, 1) < 5) {
            fprintf(stderr, "storebench: %s: %s\n", op, store_errstr(s));
        }
        cJSON_Delete(req);
        cJSON_Delete(resp);
        if (!strcmp(S.mode, "bget")) usleep(1000);
    }
    store_free(s);
    return NULL;
}

static long argl(const char *name, const char *v, long lo, long hi) {
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "storebench: %s: expected an integer in %ld..%ld, got %s\n", name, lo, hi, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv) {
    pthread_t th[MAX_THREADS];
    long started = 0;
    S.items = 1;
    S.threads = 1;
    S.seconds = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "storebench: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--endpoint")) S.endpoint = v;
        else if (!strcmp(a, "--table")) S.table = v;
        else if (!strcmp(a, "--mode")) S.mode = v;
        else if (!strcmp(a, "--items")) S.items = argl(a, v, 1, MAX_ITEMS);
        else if (!strcmp(a, "--threads")) S.threads = argl(a, v, 1, MAX_THREADS);
        else if (!strcmp(a, "--seconds")) S.seconds = argl(a, v, 1, 3600);
        else {
            fprintf(stderr, "storebench: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!S.endpoint || !S.table || !S.mode ||
        (strcmp(S.mode, "put") && strcmp(S.mode, "cput") && strcmp(S.mode, "txn") && strcmp(S.mode, "batch") &&
         strcmp(S.mode, "bget"))) {
        fprintf(stderr, "usage: storebench --endpoint URL --table T --mode put|cput|txn|batch|bget [--items N] "
                        "[--threads N] [--seconds S]\n");
        return 2;
    }
    if (!strcmp(S.mode, "batch") && S.items > 25) {
        fprintf(stderr, "storebench: --items: BatchWriteItem takes at most 25\n");
        return 2;
    }
    if (S.mode[0] == 'p' || S.mode[0] == 'c') S.items = 1;
    for (long i = 0; i < S.threads; i++, started++)
        if (pthread_create(&th[i], NULL, run, (void *)i) != 0) {
            fprintf(stderr, "storebench: cannot start thread %ld\n", i);
            atomic_fetch_add(&S.n_errors, 1);
            break;
        }
    for (long i = 0; i < started; i++) pthread_join(th[i], NULL);
    long reqs = atomic_load(&S.n_reqs);
    printf("{\"mode\":\"%s\",\"items\":%ld,\"threads\":%ld,\"items_per_s\":%.0f,\"requests_per_s\":%.0f,"
           "\"latency_ms\":%.2f,\"errors\":%ld}\n",
           S.mode, S.items, started, (double)atomic_load(&S.n_items) / (double)S.seconds,
           (double)reqs / (double)S.seconds, reqs ? (double)atomic_load(&S.lat_us) / 1000.0 / (double)reqs : 0.0,
           atomic_load(&S.n_errors));
    return atomic_load(&S.n_errors) && !reqs ? 1 : 0;
}
