/* workload.c -- tern-workload: the application side of the failover drill.
 *
 *   tern-workload seed  --endpoint URL --table T [--users N]
 *       writes the single-table e-commerce model (CATEGORY, PRODUCT + REVIEW, USER +
 *       ADDRESS, ORDER + ITEM) with BatchWriteItem; prints the item count.
 *   tern-workload run   --region NAME=URL [--region NAME=URL ...] --table T --out DIR
 *                       [--rate N] [--seconds S] [--control FILE] [--detect-ms MS]
 *                       [--probe-ms MS] [--users N]
 *       writers put new orders (unique keys) and update user profiles (shared keys) in
 *       the current primary region at N writes/s; every acknowledged write is logged to
 *       DIR/acked.log ("wall_ms region op PK SK"). A prober writes a canary to the primary
 *       every MS and times it until readable in every other region: DIR/lag.csv
 *       ("wall_ms,lag_ms,from,to"). The control file steers the writers, re-read every
 *       50 ms: "primary NAME" | "pause" | "dual" (writers alternate regions on shared keys)
 *       | "stop". When writes to the primary fail for --detect-ms, the writers fail over to
 *       the next region by themselves and DIR/events.log records
 *       "wall_ms failover FROM TO first_failure_ms first_success_ms".
 *   tern-workload check --region NAME=URL [...] --table T --acked FILE
 *                       [--from REGION] [--since MS] [--until MS]
 *       reads every acknowledged order put (unique key) in the window and counts those
 *       present in each region: prints JSON {"acked":N,"present":{"region":N..},"missing":[..]}.
 * Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default "local"). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define WL_MAX_REGIONS 4
#define WL_WRITERS 4
#define WL_PROBE_TIMEOUT_MS 120000

typedef struct {
    char name[32];
    char url[256];
} wl_region;

static struct {
    wl_region regions[WL_MAX_REGIONS];
    int n_regions;
    const char *table, *out, *control, *acked_path;
    double rate;
    long seconds, detect_ms, probe_ms, users;
    /* run state */
    atomic_int primary;        /* index into regions */
    atomic_int mode;           /* 0 primary, 1 pause, 2 dual, 3 stop */
    atomic_llong fail_since;   /* wall ms of the first failure of the current outage, 0 none */
    atomic_long seq;
    atomic_long acked, failed;
    pthread_mutex_t log_mu;
    FILE *acked_log, *lag_log, *events;
} W;

enum { MODE_PRIMARY, MODE_PAUSE, MODE_DUAL, MODE_STOP };

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* fast: 1 s per attempt and no retries, so that writers notice a dead region quickly;
 * otherwise the store client's defaults (seeding, checking). */
static store *wl_store(const char *url, int fast) {
    store_opts o;
    char err[256];
    store *s;
    store_opts_client(&o, url);
    if (fast) {
        o.timeout_ms = 1000;
        o.max_retries = STORE_NO_RETRIES; /* the workload decides what a failure means */
    }
    s = store_new(&o, err, sizeof err);
    if (!s) fprintf(stderr, "tern-workload: %s\n", err);
    return s;
}

static cJSON *wl_av(const char *type, const char *v) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, type, v);
    return a;
}

static cJSON *wl_item(const char *pk, const char *sk) {
    cJSON *i = cJSON_CreateObject();
    cJSON_AddItemToObject(i, "PK", wl_av("S", pk));
    cJSON_AddItemToObject(i, "SK", wl_av("S", sk));
    return i;
}

static void wl_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wl_event(const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&W.log_mu);
    fprintf(W.events, "%lld ", wall_ms());
    va_start(ap, fmt);
    vfprintf(W.events, fmt, ap);
    va_end(ap);
    fputc('\n', W.events);
    fflush(W.events);
    pthread_mutex_unlock(&W.log_mu);
}

/* ---- seed ---- */
static int wl_batch_put(store *s, cJSON **items, int n) {
    cJSON *req = cJSON_CreateObject(), *ri = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    store_status st;
    for (int i = 0; i < n; i++) {
        cJSON *w = cJSON_CreateObject(), *p = cJSON_CreateObject();
        cJSON_AddItemToObject(p, "Item", items[i]);
        cJSON_AddItemToObject(w, "PutRequest", p);
        cJSON_AddItemToArray(arr, w);
    }
    cJSON_AddItemToObject(ri, W.table, arr);
    cJSON_AddItemToObject(req, "RequestItems", ri);
    for (int attempt = 0; attempt < 10; attempt++) {
        cJSON *resp = NULL;
        const cJSON *un;
        st = store_call(s, "BatchWriteItem", req, &resp);
        if (st != STORE_OK) {
            fprintf(stderr, "tern-workload: BatchWriteItem: %s: %s\n", store_status_name(st), store_errstr(s));
            cJSON_Delete(resp);
            cJSON_Delete(req);
            return -1;
        }
        un = cJSON_GetObjectItemCaseSensitive(resp, "UnprocessedItems");
        if (!un || !un->child) {
            cJSON_Delete(resp);
            cJSON_Delete(req);
            return 0;
        }
        cJSON_ReplaceItemInObjectCaseSensitive(req, "RequestItems", cJSON_Duplicate(un, 1));
        cJSON_Delete(resp);
        sleep_ms(50 << attempt);
    }
    cJSON_Delete(req);
    return -1;
}

static int cmd_seed(const char *url) {
    store *s = wl_store(url, 0);
    cJSON *buf[25];
    int n = 0;
    long total = 0;
    char pk[64], sk[64], v[64];
#define FLUSH() do { if (n && wl_batch_put(s, buf, n) != 0) return 1; total += n; n = 0; } while (0)
#define ADD(it) do { buf[n++] = (it); if (n == 25) FLUSH(); } while (0)
    if (!s) return 1;
    for (int c = 1; c <= 5; c++) {
        cJSON *it;
        snprintf(pk, sizeof pk, "CATEGORY#%d", c);
        it = wl_item(pk, "DETAILS");
        snprintf(v, sizeof v, "Category %d", c);
        cJSON_AddItemToObject(it, "name", wl_av("S", v));
        ADD(it);
    }
    for (int p = 1; p <= 4 * W.users; p++) {
        cJSON *it;
        snprintf(pk, sizeof pk, "PRODUCT#%d", p);
        it = wl_item(pk, "DETAILS");
        snprintf(v, sizeof v, "Product %d", p);
        cJSON_AddItemToObject(it, "name", wl_av("S", v));
        snprintf(v, sizeof v, "%d.99", 5 + p % 50);
        cJSON_AddItemToObject(it, "price", wl_av("N", v));
        snprintf(v, sizeof v, "CATEGORY#%d", 1 + p % 5);
        cJSON_AddItemToObject(it, "category", wl_av("S", v));
        ADD(it);
        snprintf(sk, sizeof sk, "REVIEW#USER#%d", 1 + p % (int)W.users);
        it = wl_item(pk, sk);
        snprintf(v, sizeof v, "%d", 1 + p % 5);
        cJSON_AddItemToObject(it, "stars", wl_av("N", v));
        ADD(it);
    }
    for (int u = 1; u <= W.users; u++) {
        cJSON *it, *tags;
        snprintf(pk, sizeof pk, "USER#%d", u);
        it = wl_item(pk, "PROFILE");
        snprintf(v, sizeof v, "user%d@example.com", u);
        cJSON_AddItemToObject(it, "email", wl_av("S", v));
        cJSON_AddItemToObject(it, "orders", wl_av("N", "0"));
        tags = cJSON_CreateObject();
        cJSON_AddItemToObject(tags, "SS", cJSON_CreateStringArray((const char *[]){"new", "newsletter"}, 2));
        cJSON_AddItemToObject(it, "tags", tags);
        ADD(it);
        it = wl_item(pk, "ADDRESS#1");
        snprintf(v, sizeof v, "%d Main Street", u);
        cJSON_AddItemToObject(it, "street", wl_av("S", v));
        ADD(it);
        snprintf(pk, sizeof pk, "ORDER#SEED-%d", u);
        it = wl_item(pk, "DETAILS");
        snprintf(v, sizeof v, "USER#%d", u);
        cJSON_AddItemToObject(it, "user", wl_av("S", v));
        cJSON_AddItemToObject(it, "status", wl_av("S", "SHIPPED"));
        ADD(it);
        snprintf(sk, sizeof sk, "ITEM#PRODUCT#%d", 1 + u % (int)(4 * W.users));
        it = wl_item(pk, sk);
        cJSON_AddItemToObject(it, "qty", wl_av("N", "1"));
        ADD(it);
    }
    FLUSH();
    store_free(s);
    printf("%ld\n", total);
    return 0;
#undef ADD
#undef FLUSH
}

/* ---- run ---- */
static void wl_read_control(void) {
    char line[128];
    FILE *f;
    if (!W.control || !(f = fopen(W.control, "r"))) return;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "primary ", 8)) {
            for (int i = 0; i < W.n_regions; i++)
                if (!strcmp(W.regions[i].name, line + 8)) {
                    if (atomic_exchange(&W.primary, i) != i) wl_event("primary %s", line + 8);
                }
            atomic_store(&W.mode, MODE_PRIMARY);
        } else if (!strcmp(line, "pause")) {
            atomic_store(&W.mode, MODE_PAUSE);
        } else if (!strcmp(line, "dual")) {
            atomic_store(&W.mode, MODE_DUAL);
        } else if (!strcmp(line, "stop")) {
            atomic_store(&W.mode, MODE_STOP);
        }
    }
    fclose(f);
}

static void wl_log_ack(const char *region, const char *op, const char *pk, const char *sk) {
    pthread_mutex_lock(&W.log_mu);
    fprintf(W.acked_log, "%lld %s %s %s %s\n", wall_ms(), region, op, pk, sk);
    fflush(W.acked_log); /* the drill reads it while writers run (at-risk accounting) */
    pthread_mutex_unlock(&W.log_mu);
}

static void *wl_writer(void *arg) {
    long id = (long)arg;
    store *st[WL_MAX_REGIONS];
    unsigned seed = (unsigned)(id * 7919 + (long)time(NULL));
    double interval_ms = W.rate > 0 ? 1000.0 * WL_WRITERS / W.rate : 10;
    long long start = wall_ms(), n = 0, end = start + W.seconds * 1000;
    int alt = 0;
    for (int i = 0; i < W.n_regions; i++) st[i] = wl_store(W.regions[i].url, 1);
    for (;;) {
        long long due = start + (long long)(interval_ms * (double)n++), now = wall_ms();
        int mode = atomic_load(&W.mode), r;
        char pk[96], sk[64], v[32];
        cJSON *req;
        const char *op;
        if (due > now) sleep_ms((long)(due - now));
        if (mode == MODE_STOP || (W.seconds > 0 && wall_ms() >= end)) break;
        if (mode == MODE_PAUSE) continue;
        r = mode == MODE_DUAL ? (alt++ % W.n_regions) : atomic_load(&W.primary);
        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "TableName", W.table);
        if (mode != MODE_DUAL && rand_r(&seed) % 10 < 7) {
            cJSON *it;
            long o = atomic_fetch_add(&W.seq, 1);
            snprintf(pk, sizeof pk, "ORDER#%s-%ld", W.regions[r].name, o);
            snprintf(sk, sizeof sk, "DETAILS");
            it = wl_item(pk, sk);
            snprintf(v, sizeof v, "USER#%ld", 1 + (long)(rand_r(&seed) % W.users));
            cJSON_AddItemToObject(it, "user", wl_av("S", v));
            cJSON_AddItemToObject(it, "status", wl_av("S", "PLACED"));
            cJSON_AddItemToObject(req, "Item", it);
            op = "PutItem";
        } else {
            cJSON *vals = cJSON_CreateObject();
            snprintf(pk, sizeof pk, "USER#%ld", 1 + (long)(rand_r(&seed) % W.users));
            snprintf(sk, sizeof sk, "PROFILE");
            cJSON_AddItemToObject(req, "Key", wl_item(pk, sk));
            cJSON_AddStringToObject(req, "UpdateExpression", "SET last_region = :r ADD orders :one");
            cJSON_AddItemToObject(vals, ":r", wl_av("S", W.regions[r].name));
            cJSON_AddItemToObject(vals, ":one", wl_av("N", "1"));
            cJSON_AddItemToObject(req, "ExpressionAttributeValues", vals);
            op = "UpdateItem";
        }
        if (st[r] && store_call(st[r], op, req, NULL) == STORE_OK) {
            long long fs = atomic_exchange(&W.fail_since, 0);
            atomic_fetch_add(&W.acked, 1);
            wl_log_ack(W.regions[r].name, op[0] == 'P' ? "put" : "update", pk, sk);
            if (fs) wl_event("recovered %s after %lld ms", W.regions[r].name, wall_ms() - fs);
        } else {
            long long zero = 0, now2 = wall_ms(), fs;
            atomic_fetch_add(&W.failed, 1);
            atomic_compare_exchange_strong(&W.fail_since, &zero, now2);
            fs = atomic_load(&W.fail_since);
            if (mode == MODE_PRIMARY && fs && now2 - fs >= W.detect_ms && W.n_regions > 1) {
                int expect = r, next = (r + 1) % W.n_regions;
                if (atomic_compare_exchange_strong(&W.primary, &expect, next)) {
                    /* first_success is logged by the "recovered" event of the next ack */
                    wl_event("failover %s %s first_failure_ms %lld detected_ms %lld", W.regions[r].name,
                             W.regions[next].name, fs, now2);
                }
            }
        }
        cJSON_Delete(req);
    }
    for (int i = 0; i < W.n_regions; i++) store_free(st[i]);
    return NULL;
}

static void *wl_prober(void *arg) {
    store *st[WL_MAX_REGIONS];
    long n = 0;
    (void)arg;
    for (int i = 0; i < W.n_regions; i++) st[i] = wl_store(W.regions[i].url, 1);
    while (atomic_load(&W.mode) != MODE_STOP) {
        int p = atomic_load(&W.primary);
        char pk[64];
        cJSON *req = cJSON_CreateObject(), *it;
        long long t0;
        sleep_ms(W.probe_ms);
        if (atomic_load(&W.mode) == MODE_PAUSE) {
            cJSON_Delete(req);
            continue;
        }
        snprintf(pk, sizeof pk, "CANARY#%s#%ld", W.regions[p].name, n++);
        it = wl_item(pk, "PROBE");
        cJSON_AddStringToObject(req, "TableName", W.table);
        cJSON_AddItemToObject(req, "Item", it);
        if (store_call(st[p], "PutItem", req, NULL) != STORE_OK) {
            cJSON_Delete(req);
            continue;
        }
        t0 = wall_ms();
        cJSON_DeleteItemFromObject(req, "Item");
        cJSON_AddItemToObject(req, "Key", wl_item(pk, "PROBE"));
        cJSON_AddTrueToObject(req, "ConsistentRead");
        for (int r = 0; r < W.n_regions; r++) {
            if (r == p) continue;
            while (atomic_load(&W.mode) != MODE_STOP) {
                cJSON *resp = NULL;
                int found = store_call(st[r], "GetItem", req, &resp) == STORE_OK &&
                            cJSON_GetObjectItemCaseSensitive(resp, "Item");
                cJSON_Delete(resp);
                if (found) {
                    pthread_mutex_lock(&W.log_mu);
                    fprintf(W.lag_log, "%lld,%lld,%s,%s\n", t0, wall_ms() - t0, W.regions[p].name, W.regions[r].name);
                    fflush(W.lag_log);
                    pthread_mutex_unlock(&W.log_mu);
                    break;
                }
                if (wall_ms() - t0 > WL_PROBE_TIMEOUT_MS) break;
                sleep_ms(1);
            }
        }
        cJSON_Delete(req);
    }
    for (int i = 0; i < W.n_regions; i++) store_free(st[i]);
    return NULL;
}

static FILE *wl_open(const char *name) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", W.out, name);
    f = fopen(path, "a");
    if (!f) fprintf(stderr, "tern-workload: %s: %s\n", path, strerror(errno));
    return f;
}

static int cmd_run(void) {
    pthread_t w[WL_WRITERS], p;
    long long start;
    mkdir(W.out, 0755);
    if (!(W.acked_log = wl_open("acked.log")) || !(W.lag_log = wl_open("lag.csv")) || !(W.events = wl_open("events.log")))
        return 1;
    pthread_mutex_init(&W.log_mu, NULL);
    wl_read_control();
    start = wall_ms();
    wl_event("workload start rate %.0f", W.rate);
    for (long i = 0; i < WL_WRITERS; i++) pthread_create(&w[i], NULL, wl_writer, (void *)i);
    pthread_create(&p, NULL, wl_prober, NULL);
    while (atomic_load(&W.mode) != MODE_STOP && (W.seconds <= 0 || wall_ms() - start < W.seconds * 1000)) {
        sleep_ms(50);
        wl_read_control();
    }
    atomic_store(&W.mode, MODE_STOP);
    for (long i = 0; i < WL_WRITERS; i++) pthread_join(w[i], NULL);
    pthread_join(p, NULL);
    wl_event("workload stop acked %ld failed %ld", atomic_load(&W.acked), atomic_load(&W.failed));
    fclose(W.acked_log);
    fclose(W.lag_log);
    fclose(W.events);
    printf("{\"acked\":%ld,\"failed\":%ld}\n", atomic_load(&W.acked), atomic_load(&W.failed));
    return 0;
}

/* ---- check ---- */
static int cmd_check(const char *from, long long since, long long until) {
    FILE *f = fopen(W.acked_path, "r");
    char line[512], region[64], op[16], pk[128], sk[64];
    long long t;
    long acked = 0, present[WL_MAX_REGIONS] = {0}, shown = 0;
    store *st[WL_MAX_REGIONS];
    if (!f) {
        fprintf(stderr, "tern-workload: %s: %s\n", W.acked_path, strerror(errno));
        return 2;
    }
    for (int i = 0; i < W.n_regions; i++) st[i] = wl_store(W.regions[i].url, 0);
    printf("{\"missing\":[");
    while (fgets(line, sizeof line, f)) {
        cJSON *req;
        int all = 1;
        if (sscanf(line, "%lld %63s %15s %127s %63s", &t, region, op, pk, sk) != 5) continue;
        if (strcmp(op, "put") || (from && strcmp(region, from)) || t < since || (until && t > until)) continue;
        acked++;
        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "TableName", W.table);
        cJSON_AddItemToObject(req, "Key", wl_item(pk, sk));
        cJSON_AddTrueToObject(req, "ConsistentRead");
        for (int r = 0; r < W.n_regions; r++) {
            cJSON *resp = NULL;
            int found = 0;
            for (int attempt = 0; attempt < 3 && !found; attempt++) {
                store_status s2 = store_call(st[r], "GetItem", req, &resp);
                if (s2 == STORE_OK) {
                    found = cJSON_GetObjectItemCaseSensitive(resp, "Item") != NULL;
                    cJSON_Delete(resp);
                    resp = NULL;
                    break;
                }
                cJSON_Delete(resp);
                resp = NULL;
                sleep_ms(100);
            }
            if (found) present[r]++;
            else all = 0;
        }
        if (!all && shown++ < 20) printf("%s\"%s\"", shown > 1 ? "," : "", pk);
        cJSON_Delete(req);
    }
    fclose(f);
    printf("],\"acked\":%ld,\"present\":{", acked);
    for (int r = 0; r < W.n_regions; r++) printf("%s\"%s\":%ld", r ? "," : "", W.regions[r].name, present[r]);
    printf("}}\n");
    for (int i = 0; i < W.n_regions; i++) store_free(st[i]);
    return 0;
}

static long wl_num(const char *s, const char *what) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0) {
        fprintf(stderr, "tern-workload: %s: not a non-negative integer: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *cmd, *endpoint = NULL, *from = NULL;
    long long since = 0, until = 0;
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: tern-workload seed|run|check [options] (see the comment in workload/workload.c)\n");
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    W.rate = 100;
    W.seconds = 0;
    W.detect_ms = 2000;
    W.probe_ms = 100;
    W.users = 50;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tern-workload: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--endpoint")) endpoint = v;
        else if (!strcmp(a, "--table")) W.table = v;
        else if (!strcmp(a, "--out")) W.out = v;
        else if (!strcmp(a, "--control")) W.control = v;
        else if (!strcmp(a, "--acked")) W.acked_path = v;
        else if (!strcmp(a, "--from")) from = v;
        else if (!strcmp(a, "--rate")) W.rate = (double)wl_num(v, a);
        else if (!strcmp(a, "--seconds")) W.seconds = wl_num(v, a);
        else if (!strcmp(a, "--detect-ms")) W.detect_ms = wl_num(v, a);
        else if (!strcmp(a, "--probe-ms")) W.probe_ms = wl_num(v, a);
        else if (!strcmp(a, "--users")) W.users = wl_num(v, a) ? wl_num(v, a) : 1;
        else if (!strcmp(a, "--since")) since = wl_num(v, a);
        else if (!strcmp(a, "--until")) until = wl_num(v, a);
        else if (!strcmp(a, "--region")) {
            const char *eq = strchr(v, '=');
            if (!eq || W.n_regions == WL_MAX_REGIONS || (size_t)(eq - v) >= sizeof W.regions[0].name) {
                fprintf(stderr, "tern-workload: --region wants NAME=URL (at most %d)\n", WL_MAX_REGIONS);
                return 2;
            }
            snprintf(W.regions[W.n_regions].name, sizeof W.regions[0].name, "%.*s", (int)(eq - v), v);
            snprintf(W.regions[W.n_regions].url, sizeof W.regions[0].url, "%s", eq + 1);
            W.n_regions++;
        } else {
            fprintf(stderr, "tern-workload: unknown option %s\n", a);
            return 2;
        }
    }
    if (!W.table) {
        fprintf(stderr, "tern-workload: --table is required\n");
        return 2;
    }
    if (!strcmp(cmd, "seed") && endpoint) return cmd_seed(endpoint);
    if (!strcmp(cmd, "run") && W.n_regions && W.out) return cmd_run();
    if (!strcmp(cmd, "check") && W.n_regions && W.acked_path) return cmd_check(from, since, until);
    fprintf(stderr, "tern-workload: bad command or missing options (see --help)\n");
    return 2;
}
