/* lagbench.c -- end-to-end replication lag and throughput, measured with real clients.
 *
 * Writers PutItem unique keys into the source region's table at a fixed rate, evenly
 * spaced (or as fast as they can with --rate 0); every --probe-every'th acknowledged
 * write is handed to prober threads (--probers, default 1) that read the key back in the
 * destination region (BatchGetItem, ConsistentRead: one request of up to 100 probes per
 * prober every 1 ms, round-robin over those in flight) until it is there. Lag = time the
 * item first reads back in the destination minus the time the source acknowledged the
 * write. Reports p50/p99/max lag, the write rate the source sustained, the replication
 * rate (writes / time until the last write was readable in the destination), this
 * process's own CPU time per acknowledged write (client_cpu_ms_per_write: the writers and
 * probers, and the copier with --baseline), and the load the probes put on the
 * destination (probe_requests_per_s, over the time the probers ran); with --baseline,
 * the records the copier wrote (copied), and with --conditional those it failed to queue
 * or write (copy_errors) and the mean time of its store calls (copy_write_ms). With
 * several probers, the first to wake takes every queued probe: more probers add requests,
 * not coverage.
 *
 * --baseline runs, inside this process, the plain consumer Tern is compared with: it
 * tails the source stream from LATEST with GetRecords in a tight loop (no sleep) and
 * copies every record to the destination with BatchWriteItem (25 per call), the way a
 * minimal SDK-based copier does. Run it with the Tern daemons stopped. --conditional N
 * (with --baseline) makes that copier write each record as a conditional single PutItem or
 * DeleteItem under Tern's version condition, on N threads (cond_enqueue).
 *
 * usage: lagbench --source URL --dest URL --table T [--rate N] [--seconds S]
 *                 [--writers N] [--probers N] [--probe-every K] [--prefix P]
 *                 [--baseline [--conditional N]] [--label NAME]
 * Prints one JSON line with the results. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "store.h"

#define MAX_SAMPLES 200000
#define PROBE_TIMEOUT_MS 20000

typedef struct {
    char key[96];
    long long acked_us;
} probe;

static struct {
    const char *source, *dest, *table, *prefix, *label;
    double rate;
    long seconds, writers, probers, probe_every;
    int baseline;
    long cond_writers;     /* --conditional N: the copier writes each record as a conditional
                              single write, on N threads (0: BatchWriteItem) */
    /* probe queue */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    probe *queue;
    size_t qhead, qtail, qcap;
    int writers_done;
    /* results */
    double *lags;
    size_t nlags;
    double *wlat;          /* PutItem round trips at the source, ms */
    size_t nwlat;
    atomic_long acked, errors, lost_probes, probe_requests;
    size_t queued_max;     /* most probes seen waiting in the queue (none in flight for them) */
    atomic_llong last_visible_us, first_write_us;
    atomic_int stop_consumer;
    long long start_us;    /* the writers' common schedule starts here */
    atomic_long copied;
} B;

static void sleep_until_us(long long t) {
    long long d = t - bench_now_us();
    if (d > 0) {
        struct timespec ts = {d / 1000000, (d % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static cJSON *key_json(const char *pk) {
    cJSON *k = cJSON_CreateObject(), *a = cJSON_CreateObject(), *b = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "S", pk);
    cJSON_AddStringToObject(b, "S", "ITEM");
    cJSON_AddItemToObject(k, "PK", a);
    cJSON_AddItemToObject(k, "SK", b);
    return k;
}

static void *writer(void *arg) {
    long id = (long)arg;
    store *s = bench_store("lagbench", B.source);
    long long start = B.start_us, end = start + B.seconds * 1000000LL;
    double interval_us = B.rate > 0 ? 1e6 * (double)B.writers / B.rate : 0;
    char pk[96], payload[129];
    memset(payload, 'x', 128);
    payload[128] = '\0';
    if (!s) return NULL;
    for (long n = 0;; n++) {
        /* writer id's turn comes id/writers of an interval after writer 0's: together the
         * writers make one write every interval/writers, a steady load (started in step,
         * they made a burst of --writers writes every interval) */
        long long t = start + (long long)(interval_us * ((double)n + (double)id / (double)B.writers));
        cJSON *req, *item, *v;
        if (interval_us > 0) sleep_until_us(t);
        if (bench_now_us() >= end) break;
        snprintf(pk, sizeof pk, "%s#%ld#%ld", B.prefix, id, n);
        item = key_json(pk);
        v = cJSON_CreateObject();
        cJSON_AddStringToObject(v, "S", payload);
        cJSON_AddItemToObject(item, "payload", v);
        {
            /* the writer's wall clock (ms), for breaking lag down along the pipeline */
            struct timespec ts;
            char ms[32];
            clock_gettime(CLOCK_REALTIME, &ts);
            snprintf(ms, sizeof ms, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
            v = cJSON_CreateObject();
            cJSON_AddStringToObject(v, "N", ms);
            cJSON_AddItemToObject(item, "sent_ms", v);
        }
        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "TableName", B.table);
        cJSON_AddItemToObject(req, "Item", item);
        long long sent = bench_now_us();
        if (store_call(s, "PutItem", req, NULL) == STORE_OK) {
            long long acked = bench_now_us();
            long k = atomic_fetch_add(&B.acked, 1);
            long long zero = 0;
            atomic_compare_exchange_strong(&B.first_write_us, &zero, acked);
            pthread_mutex_lock(&B.mu);
            if (B.nwlat < MAX_SAMPLES) B.wlat[B.nwlat++] = (double)(acked - sent) / 1000.0;
            pthread_mutex_unlock(&B.mu);
            if (k % B.probe_every == 0) {
                pthread_mutex_lock(&B.mu);
                if (B.qtail < B.qcap) {
                    snprintf(B.queue[B.qtail].key, sizeof B.queue[0].key, "%s", pk);
                    B.queue[B.qtail++].acked_us = acked;
                    pthread_cond_signal(&B.cv);
                }
                pthread_mutex_unlock(&B.mu);
            }
        } else {
            atomic_fetch_add(&B.errors, 1);
        }
        cJSON_Delete(req);
    }
    store_free(s);
    return NULL;
}

/* Keys per probe request: one BatchGetItem's worth (DynamoDB's limit). */
#define PROBE_BATCH 100
/* Probes one prober keeps in flight at most; more wait in the queue (and their measured lag
 * grows by the wait: the run then says so, in probes_queued_max). */
#define PROBE_INFLIGHT 8192

/* A prober takes every queued probe into its in-flight set, and every 1 ms reads up to 100 of
 * them back from the destination in one BatchGetItem (ConsistentRead), round-robin: with at
 * most 100 in flight each is read every cycle (1 ms resolution); with more, each every
 * ceil(n / 100) cycles, so the resolution coarsens in proportion to the lag it measures
 * while the load on the destination stays one request per cycle.
 * The load matters: on the 2-core development machine one DynamoDB Local request costs the
 * store about 0.6 ms of CPU whatever it reads, so two probers polling every 1 ms took 0.7 of
 * the machine's 2 cores from the destination store (1.1 cores at 100 keys a request),
 * competing with the very writes they time; the default is now one prober (docs/lag.md).
 * Earlier designs: one GetItem loop per probe, 4 probes at a time: once the lag passed what
 * 4 probers could poll, later probes waited in the queue and the measured lag inflated
 * itself; then up to 100 in flight per prober, the rest queued (the same, past 100). */
static void *prober(void *arg) {
    store *s = bench_store("lagbench", B.dest);
    probe *act = calloc(PROBE_INFLIGHT, sizeof *act);
    size_t na = 0, cursor = 0;
    (void)arg;
    if (!s || !act) {
        store_free(s);
        free(act);
        return NULL;
    }
    for (;;) {
        size_t nread, queued;
        pthread_mutex_lock(&B.mu);
        while (na == 0 && B.qhead == B.qtail && !B.writers_done) pthread_cond_wait(&B.cv, &B.mu);
        if (na == 0 && B.qhead == B.qtail && B.writers_done) {
            pthread_mutex_unlock(&B.mu);
            break;
        }
        while (B.qhead < B.qtail && na < PROBE_INFLIGHT) act[na++] = B.queue[B.qhead++];
        queued = B.qtail - B.qhead;
        if (queued > B.queued_max) B.queued_max = queued;
        pthread_mutex_unlock(&B.mu);
        if (cursor >= na) cursor = 0;
        nread = na < PROBE_BATCH ? na : PROBE_BATCH;
        {
            cJSON *req = cJSON_CreateObject(), *ri = cJSON_CreateObject(), *keys = cJSON_CreateArray(), *resp = NULL;
            const cJSON *items, *it;
            long long t;
            for (size_t i = 0; i < nread; i++) cJSON_AddItemToArray(keys, key_json(act[(cursor + i) % na].key));
            cJSON_AddItemToObject(ri, "Keys", keys);
            cJSON_AddTrueToObject(ri, "ConsistentRead");
            cJSON_AddStringToObject(ri, "ProjectionExpression", "PK");
            cJSON_AddItemToObject(cJSON_AddObjectToObject(req, "RequestItems"), B.table, ri);
            atomic_fetch_add(&B.probe_requests, 1);
            if (store_call(s, "BatchGetItem", req, &resp) == STORE_OK) {
                t = bench_now_us();
                items = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "Responses"), B.table);
                cJSON_ArrayForEach(it, items) {
                    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "PK"), "S");
                    for (size_t i = 0; cJSON_IsString(pk) && i < nread; i++) {
                        probe *p = &act[(cursor + i) % na];
                        if (p->acked_us == 0 || strcmp(p->key, pk->valuestring) != 0) continue;
                        long long prev = atomic_load(&B.last_visible_us);
                        while (t > prev && !atomic_compare_exchange_weak(&B.last_visible_us, &prev, t)) {}
                        pthread_mutex_lock(&B.mu);
                        if (B.nlags < MAX_SAMPLES) B.lags[B.nlags++] = (double)(t - p->acked_us) / 1000.0;
                        pthread_mutex_unlock(&B.mu);
                        p->acked_us = 0; /* found */
                        break;
                    }
                }
            }
            cJSON_Delete(req);
            cJSON_Delete(resp);
        }
        {
            /* drop the found and the timed-out, keeping order; the next cycle starts at the
             * first probe after those just read */
            long long t = bench_now_us();
            size_t k = 0, from = nread < na ? (cursor + nread) % na : 0, next = 0;
            for (size_t i = 0; i < na; i++) {
                if (i == from) next = k;
                if (act[i].acked_us == 0) continue;
                if (t - act[i].acked_us > PROBE_TIMEOUT_MS * 1000LL) {
                    atomic_fetch_add(&B.lost_probes, 1);
                    continue;
                }
                act[k++] = act[i];
            }
            na = k;
            cursor = next;
        }
        if (na) usleep(1000);
    }
    store_free(s);
    free(act);
    return NULL;
}

/* The conditional copier (--conditional N): the least any copier must do that keeps Tern's
 * rule that a version never overwrites a higher one. Each record becomes one conditional
 * PutItem (or DeleteItem) carrying a version (the record's sequence number, zero-padded, as
 * tern:ver) under Tern's condition, written by one of N threads chosen by a hash of the
 * record's keys, so a key's records are written in stream order. No durable state, no echo
 * handling, no conflicts: a lower bound on what Tern's single-put path costs the stores.
 * Unlike the BatchWriteItem copier, the GetRecords loop does not wait for the writes, so it
 * polls the source more often (compare the destination store's CPU, not the source's).
 * A record that cannot be queued or written is counted in copy_errors: with per-key order
 * kept, a write refused by its condition is one. */
typedef struct cw_job {
    struct cw_job *next;
    cJSON *req;            /* owned */
    const char *op;        /* static */
} cw_job;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv[64];  /* one per thread: its queue is not empty, or stop */
    cw_job *head[64], *tail[64];
    int stop;
    atomic_long errors;     /* records not queued, or not written */
    atomic_llong write_us;  /* time in the writes' store calls, all threads, microseconds */
    atomic_long writes;     /* store calls made */
} CW = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Thread arg's loop: writes its queue's jobs in order until stopped with the queue empty.
 * Without a store handle it still takes its jobs, counting each as an error. */
static void *cond_writer(void *arg) {
    long id = (long)arg;
    store *dst = bench_store("lagbench", B.dest);
    for (;;) {
        cw_job *j;
        pthread_mutex_lock(&CW.mu);
        while (!CW.head[id] && !CW.stop) pthread_cond_wait(&CW.cv[id], &CW.mu);
        j = CW.head[id];
        if (j && !(CW.head[id] = j->next)) CW.tail[id] = NULL;
        pthread_mutex_unlock(&CW.mu);
        if (!j) break; /* stopped, queue empty */
        if (dst) {
            long long t0 = bench_now_us();
            store_status ss = store_call(dst, j->op, j->req, NULL);
            atomic_fetch_add(&CW.write_us, bench_now_us() - t0);
            atomic_fetch_add(&CW.writes, 1);
            if (ss == STORE_OK) atomic_fetch_add(&B.copied, 1);
            else atomic_fetch_add(&CW.errors, 1);
        } else {
            atomic_fetch_add(&CW.errors, 1);
        }
        cJSON_Delete(j->req);
        free(j);
    }
    store_free(dst);
    return NULL;
}

/* Queues record rec (a GetRecords entry) as a conditional write for its key's thread;
 * counts it in CW.errors instead when out of memory or malformed. */
static void cond_enqueue(const cJSON *rec) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "dynamodb");
    const cJSON *ni = cJSON_GetObjectItemCaseSensitive(d, "NewImage");
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(d, "Keys");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "SequenceNumber");
    char ver[48], *kj;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    cw_job *j = calloc(1, sizeof *j);
    cJSON *r = cJSON_CreateObject(), *names, *vals, *v, *item;
    if (!j || !r || !cJSON_IsString(seq) || strlen(seq->valuestring) > 40 || !keys ||
        !(kj = cJSON_PrintUnformatted(keys)))
        goto fail;
    for (const char *c = kj; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    free(kj);
    snprintf(ver, sizeof ver, "%40s", seq->valuestring);
    for (char *c = ver; *c == ' '; c++) *c = '0';
    if (!cJSON_AddStringToObject(r, "TableName", B.table)) goto fail;
    names = cJSON_AddObjectToObject(r, "ExpressionAttributeNames");
    vals = cJSON_AddObjectToObject(r, "ExpressionAttributeValues");
    v = cJSON_AddObjectToObject(vals, ":v");
    if (!names || !v || !cJSON_AddStringToObject(names, "#v", "tern:ver") || !cJSON_AddStringToObject(v, "S", ver) ||
        !cJSON_AddStringToObject(r, "ConditionExpression", "attribute_not_exists(#v) OR #v < :v"))
        goto fail;
    if (ni) {
        j->op = "PutItem";
        if (!(item = cJSON_Duplicate(ni, 1)) || !cJSON_AddItemToObject(r, "Item", item)) {
            cJSON_Delete(item);
            goto fail;
        }
        if (!(v = cJSON_AddObjectToObject(item, "tern:ver")) || !cJSON_AddStringToObject(v, "S", ver)) goto fail;
    } else {
        j->op = "DeleteItem";
        if (!(item = cJSON_Duplicate(keys, 1)) || !cJSON_AddItemToObject(r, "Key", item)) {
            cJSON_Delete(item);
            goto fail;
        }
    }
    j->req = r;
    h %= (uint64_t)B.cond_writers;
    pthread_mutex_lock(&CW.mu);
    if (CW.tail[h]) CW.tail[h]->next = j;
    else CW.head[h] = j;
    CW.tail[h] = j;
    pthread_cond_signal(&CW.cv[h]);
    pthread_mutex_unlock(&CW.mu);
    return;
fail:
    atomic_fetch_add(&CW.errors, 1);
    cJSON_Delete(r);
    free(j);
}

/* The baseline: a plain stream copier (tight GetRecords loop, BatchWriteItem; with
 * --conditional, conditional single writes instead: cond_enqueue). */
static void *consumer(void *arg) {
    store *src = bench_store("lagbench", B.source), *dst = bench_store("lagbench", B.dest);
    cJSON *req, *resp = NULL;
    char *iter = NULL, *arn = NULL;
    (void)arg;
    if (!src || !dst) return NULL;
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "TableName", B.table);
    if (store_call(src, "DescribeTable", req, &resp) == STORE_OK) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "Table"), "LatestStreamArn");
        if (cJSON_IsString(a)) arn = strdup(a->valuestring);
    }
    cJSON_Delete(req);
    cJSON_Delete(resp);
    resp = NULL;
    if (!arn) {
        fprintf(stderr, "lagbench: baseline: no stream\n");
        return NULL;
    }
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "StreamArn", arn);
    if (store_call(src, "DescribeStream", req, &resp) == STORE_OK) {
        const cJSON *shards = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "StreamDescription"), "Shards");
        const cJSON *last = NULL, *sh;
        cJSON_ArrayForEach(sh, shards) last = sh; /* the open shard is the newest */
        if (last) {
            cJSON *r2 = cJSON_CreateObject(), *resp2 = NULL;
            cJSON_AddStringToObject(r2, "StreamArn", arn);
            cJSON_AddStringToObject(r2, "ShardId", cJSON_GetObjectItemCaseSensitive(last, "ShardId")->valuestring);
            cJSON_AddStringToObject(r2, "ShardIteratorType", "LATEST");
            if (store_call(src, "GetShardIterator", r2, &resp2) == STORE_OK)
                iter = strdup(cJSON_GetObjectItemCaseSensitive(resp2, "ShardIterator")->valuestring);
            cJSON_Delete(r2);
            cJSON_Delete(resp2);
        }
    }
    cJSON_Delete(req);
    cJSON_Delete(resp);
    while (iter && !atomic_load(&B.stop_consumer)) {
        cJSON *r = cJSON_CreateObject(), *rr = NULL;
        const cJSON *recs, *rec, *next;
        cJSON *writes = cJSON_CreateArray();
        int n = 0;
        cJSON_AddStringToObject(r, "ShardIterator", iter);
        if (store_call(src, "GetRecords", r, &rr) != STORE_OK) {
            cJSON_Delete(r);
            cJSON_Delete(writes);
            break;
        }
        recs = cJSON_GetObjectItemCaseSensitive(rr, "Records");
        if (B.cond_writers) {
            cJSON_ArrayForEach(rec, recs) cond_enqueue(rec);
            recs = NULL;
        }
        cJSON_ArrayForEach(rec, recs) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "dynamodb");
            const cJSON *ni = cJSON_GetObjectItemCaseSensitive(d, "NewImage");
            cJSON *w = cJSON_CreateObject(), *body = cJSON_CreateObject();
            if (ni) {
                cJSON_AddItemToObject(body, "Item", cJSON_Duplicate(ni, 1));
                cJSON_AddItemToObject(w, "PutRequest", body);
            } else {
                cJSON_AddItemToObject(body, "Key", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(d, "Keys"), 1));
                cJSON_AddItemToObject(w, "DeleteRequest", body);
            }
            cJSON_AddItemToArray(writes, w);
            if (++n == 25 || !rec->next) {
                cJSON *bw = cJSON_CreateObject(), *items = cJSON_CreateObject();
                cJSON_AddItemToObject(items, B.table, writes);
                cJSON_AddItemToObject(bw, "RequestItems", items);
                if (store_call(dst, "BatchWriteItem", bw, NULL) == STORE_OK) atomic_fetch_add(&B.copied, n);
                cJSON_Delete(bw);
                writes = cJSON_CreateArray();
                n = 0;
            }
        }
        cJSON_Delete(writes);
        next = cJSON_GetObjectItemCaseSensitive(rr, "NextShardIterator");
        free(iter);
        iter = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
        cJSON_Delete(r);
        cJSON_Delete(rr);
    }
    free(iter);
    free(arn);
    store_free(src);
    store_free(dst);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p) {
    size_t rank;
    if (!n) return -1;
    rank = (size_t)(p * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1];
}

static long argl(const char *s, const char *name) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0) {
        fprintf(stderr, "lagbench: %s: not a non-negative integer: %s\n", name, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    pthread_t w[64], p[64], c, cw[64];
    long long t0, t_end, t_probed;
    B.table = "bench";
    B.prefix = "B";
    B.label = "tern";
    B.rate = 1000;
    B.seconds = 10;
    B.writers = 8;
    B.probers = 1;
    B.probe_every = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--baseline")) { B.baseline = 1; continue; }
        if (!v) { fprintf(stderr, "lagbench: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--source")) B.source = v;
        else if (!strcmp(a, "--dest")) B.dest = v;
        else if (!strcmp(a, "--table")) B.table = v;
        else if (!strcmp(a, "--prefix")) B.prefix = v;
        else if (!strcmp(a, "--label")) B.label = v;
        else if (!strcmp(a, "--rate")) B.rate = (double)argl(v, a);
        else if (!strcmp(a, "--seconds")) B.seconds = argl(v, a);
        else if (!strcmp(a, "--writers")) B.writers = argl(v, a);
        else if (!strcmp(a, "--probers")) B.probers = argl(v, a);
        else if (!strcmp(a, "--probe-every")) B.probe_every = argl(v, a);
        else if (!strcmp(a, "--conditional")) B.cond_writers = argl(v, a);
        else { fprintf(stderr, "lagbench: unknown option %s\n", a); return 2; }
        i++;
    }
    if (!B.source || !B.dest || B.writers < 1 || B.writers > 64 || B.probers < 1 || B.probers > 64 || B.probe_every < 1 ||
        B.cond_writers > 64 || (B.cond_writers && !B.baseline)) {
        fprintf(stderr, "usage: lagbench --source URL --dest URL [--table T] [--rate N] [--seconds S] ...\n");
        return 2;
    }
    pthread_mutex_init(&B.mu, NULL);
    pthread_cond_init(&B.cv, NULL);
    B.qcap = MAX_SAMPLES;
    B.queue = calloc(B.qcap, sizeof *B.queue);
    B.lags = calloc(MAX_SAMPLES, sizeof *B.lags);
    B.wlat = calloc(MAX_SAMPLES, sizeof *B.wlat);
    if (!B.queue || !B.lags || !B.wlat) return 1;
    for (long i = 0; i < B.cond_writers; i++) {
        if (pthread_cond_init(&CW.cv[i], NULL) != 0 || pthread_create(&cw[i], NULL, cond_writer, (void *)i) != 0) {
            fprintf(stderr, "lagbench: cannot start conditional writer %ld\n", i);
            return 1;
        }
    }
    if (B.baseline) {
        pthread_create(&c, NULL, consumer, NULL);
        usleep(500000); /* let it reach LATEST before writes start */
    }
    t0 = bench_now_us();
    for (long i = 0; i < B.probers; i++) pthread_create(&p[i], NULL, prober, NULL);
    B.start_us = bench_now_us() + 50000; /* after every writer thread is up, even on a busy box */
    for (long i = 0; i < B.writers; i++) pthread_create(&w[i], NULL, writer, (void *)i);
    for (long i = 0; i < B.writers; i++) pthread_join(w[i], NULL);
    t_end = bench_now_us();
    pthread_mutex_lock(&B.mu);
    B.writers_done = 1;
    pthread_cond_broadcast(&B.cv);
    pthread_mutex_unlock(&B.mu);
    for (long i = 0; i < B.probers; i++) pthread_join(p[i], NULL);
    t_probed = bench_now_us(); /* the probers ran until the last probe was found */
    if (B.baseline) {
        atomic_store(&B.stop_consumer, 1);
        pthread_join(c, NULL);
    }
    pthread_mutex_lock(&CW.mu);
    CW.stop = 1;
    for (long i = 0; i < B.cond_writers; i++) pthread_cond_signal(&CW.cv[i]);
    pthread_mutex_unlock(&CW.mu);
    for (long i = 0; i < B.cond_writers; i++) pthread_join(cw[i], NULL);
    qsort(B.lags, B.nlags, sizeof *B.lags, cmp_double);
    qsort(B.wlat, B.nwlat, sizeof *B.wlat, cmp_double);
    {
        double secs = (double)(t_end - t0) / 1e6, cpu_ms = -1;
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
        long long first = atomic_load(&B.first_write_us), last = atomic_load(&B.last_visible_us);
        double repl_secs = last > first ? (double)(last - first) / 1e6 : 0;
        printf("{\"label\":\"%s\",\"target_rate\":%.0f,\"seconds\":%.1f,\"acked\":%ld,\"errors\":%ld,"
               "\"write_rate\":%.1f,\"replication_rate\":%.1f,\"samples\":%zu,\"lost_probes\":%ld,"
               "\"lag_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
               "\"source_put_ms\":{\"p50\":%.2f,\"p99\":%.2f},\"client_cpu_ms_per_write\":%.3f,"
               "\"probe_requests_per_s\":%.0f,\"probes_queued_max\":%zu,\"copied\":%ld,\"copy_errors\":%ld,\"copy_write_ms\":%.2f}\n",
               B.label, B.rate, secs, atomic_load(&B.acked), atomic_load(&B.errors),
               (double)atomic_load(&B.acked) / secs,
               repl_secs > 0 ? (double)atomic_load(&B.acked) / repl_secs : 0, B.nlags,
               atomic_load(&B.lost_probes), pct(B.lags, B.nlags, 0.50), pct(B.lags, B.nlags, 0.90),
               pct(B.lags, B.nlags, 0.99), B.nlags ? B.lags[B.nlags - 1] : -1, pct(B.wlat, B.nwlat, 0.50),
               pct(B.wlat, B.nwlat, 0.99),
               cpu_ms >= 0 && atomic_load(&B.acked) > 0 ? cpu_ms / (double)atomic_load(&B.acked) : -1.0,
               t_probed > t0 ? (double)atomic_load(&B.probe_requests) / ((double)(t_probed - t0) / 1e6) : 0.0,
               B.queued_max, atomic_load(&B.copied), atomic_load(&CW.errors),
               atomic_load(&CW.writes) ? (double)atomic_load(&CW.write_us) / 1e3 / (double)atomic_load(&CW.writes) : -1.0);
    }
    free(B.queue);
    free(B.lags);
    free(B.wlat);
    return 0; /* lost probes are a result (in the JSON), not a failure of the run */
}
