/* pool.c -- the replicator's apply workers (see replicator.h, pool_*).
 *
 * Owns: replicator.apply_workers threads, each with its own store and Redis handles, its
 * writers (replicator.parallel_puts more store handles and a store_multi, when above 1:
 * a group's single puts go side by side, apply_writers) and its own FIFO queue of jobs;
 * an eventfd that is written whenever a job finishes, so the main thread can wait for
 * results in the same zmq_poll as for frames; the key attribute
 * names of each table (key_cache, read by a thread of its own; pool_check_keys: a change
 * whose keys are not exactly those is refused before it is written).
 * Invariants: a job's queue is chosen by a hash of its key id, so the changes of one key
 * are queued on one worker in the order they were submitted, and written in that order,
 * one at a time (per-key order is what LWW and the echo tokens need); different keys go in
 * parallel. Jobs stream: a worker takes
 * the next job as soon as it is free, so a batch never waits for the slowest change of
 * the batch before it. A worker with a backlog (the head of its queue waited
 * REPL_TXN_AGE_MS) takes the puts at the head of its queue together (distinct keys, at
 * most replicator.group_writes): one Redis round trip, then one transaction from
 * APPLY_GROUP_MIN puts on (apply_puts): one Redis round trip for the group instead of one
 * per APPLY_GROUP_MIN - 1 puts, which lets it catch up with more (on DynamoDB Local the
 * transaction itself costs the store a little more per item than concurrent single puts:
 * docs/lag.md, "Single puts side by side"). Without a backlog it takes at most
 * APPLY_GROUP_MIN - 1 (one Redis round trip, then single puts side by side): on DynamoDB
 * Local a transaction holds the table's write lock for tens of ms under load, and a worker that
 * started them at 5 queued puts never left that mode at 1,000 writes/s (docs/lag.md,
 * "Transactions only for a backlog"). With replicator.transactions 0 there are none: a
 * worker takes up to APPLY_GROUP_MIN - 1 rounds of parallel_puts puts (at most
 * group_writes) whatever its backlog, and writes them all as single puts, parallel_puts at
 * a time, on one precheck.
 * At most replicator.transactions such groups are written at once, by all workers: a
 * worker whose group is large enough for a transaction waits for a slot (in turn, first
 * come first served), then tops its group up from its own queue (which grew meanwhile) and
 * then from the heads of the other workers' queues, up to replicator.group_writes: the
 * puts there of keys no group holds (a worker's queue is free mostly right after its own
 * write). At 600 writes/s about 37% of grouped puts came from other queues; under a deep
 * backlog a group is filled from its own queue alone, as before. Per-key order still
 * holds because a job is taken, by its own worker or by a slot holder, only when no job of
 * its key is in any worker's group (`g`, under mu): a worker whose queue head is in a slot
 * holder's group waits for that group to be written, and the slot holder then wakes the
 * workers it took from (only they can be waiting: all of a key's jobs are in its own
 * worker's queue). A queue's `lent` counts its jobs in other groups: while it is 0, which
 * is always so at low rates, its own worker checks a job against its own group alone.
 * The slot is taken before apply_puts' Redis round trip, so a group whose
 * precheck leaves fewer than APPLY_GROUP_MIN puts (single puts, no transaction) holds it
 * too; a group waiting for a slot has been taken from its queue and is not canceled by
 * pool_cancel_queued (a stop waits for it). DynamoDB Local runs a table's transactions one
 * at a time under a lock, and concurrent ones convoyed: on the 2-core development machine
 * at 600 writes/s, bench/run measured lag p50 at 182 times its copier's with 4 at once
 * and 21 times with one at a time, in turn (docs/lag.md, "The destination store's
 * ceiling").
 * A job's worker keeps its group in `g` from taking it until its write returned; then it
 * clears the group under mu before setting the jobs' `done` flags, because the submitter
 * may free a job once done and other workers read the groups' keys under mu.
 * A job's results are written before its `done` flag (release), and read after it
 * (acquire); the job itself belongs to the submitter, who must not free it
 * before `done` is set.
 * Threading: pool_submit, pool_wait_idle and pool_free are called by one thread (the
 * replicator's main thread); the queues are guarded by `mu`. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "apply.h"
#include "daemon.h"
#include "log.h"
#include "replicator.h"

_Static_assert(APPLY_GROUP_MAX == 100, "config/cfg.c bounds replicator.group_writes to 1..100");
_Static_assert(APPLY_WRITERS_MAX == 16, "config/cfg.c bounds replicator.parallel_puts to 1..16");
_Static_assert(APPLY_GROUP_MIN >= 2, "a worker without a backlog takes APPLY_GROUP_MIN - 1 puts");

typedef struct pool_worker pool_worker;

/* The key attribute names of one replicated table (pool_check_keys). */
typedef struct {
    char *table;                /* owned */
    int known;                  /* described */
    char hash_key[256];
    char range_key[256];        /* "" for a hash-only table */
} pool_schema;

/* The key schemas of the replicated tables, shared by the pool and, while it runs, the
 * loader thread that reads them (key_loader), started with the pool. A change whose
 * table's schema is not known yet goes unchecked, and starts a loader when none runs and
 * the last one failed more than REPL_SCHEMA_RETRY_MS ago: no change, stop or reload ever
 * waits for a DescribeTable. The loader is detached: the last of the pool and the loader to let go
 * frees the cache (refs), so a loader stuck on a hung store never holds up a reload. */
typedef struct {
    pthread_mutex_t mu;
    int refs;                   /* the pool, and a running loader */
    int loading;                /* a loader runs */
    long long retry_at;         /* mono ms: no loader is started before (after a failure) */
    store *s;                   /* the loader's handle */
    pool_schema *t;
    size_t n;
} key_cache;

struct pool_worker {
    apply_pool *p;
    atomic_llong beacon;        /* mono ms: the worker took a group, or began a store or Redis
                                   call (their beacons); read by pool_wait_idle_for */
    pthread_t th;
    pthread_cond_t work;  /* the queue is not empty, a group holding the head's key was
                             written, or stop */
    pool_job *head, *tail;
    pool_job *g[APPLY_GROUP_MAX];  /* the group taken and not yet written (under mu; jobs
                                      from other queues too when it holds a slot) */
    size_t ng;
    size_t lent;          /* jobs of this queue now in other workers' groups (under mu): while
                             0, none of this queue's keys is in another group, and taking from
                             it needs only the check against the taker's own group */
    store *s;
    apply_writers wr;     /* replicator.parallel_puts handles (none when 1) writing a group's
                             single puts side by side, and whether transactions are off */
    state *st;
    store_stats snap;     /* s's and wr's statistics after the worker's last job (under mu): the
                             handle itself is the worker's alone */
};

struct apply_pool {
    pthread_mutex_t mu;
    pthread_cond_t idle;  /* outstanding reached 0 */
    pool_worker *w;
    int n;
    int started;          /* threads running */
    int stop;
    size_t outstanding;   /* jobs submitted and not yet done */
    int efd;              /* eventfd: counts finished jobs not yet taken by pool_take_events */
    size_t group_max;     /* replicator.group_writes */
    size_t single_max;    /* puts a worker without a backlog takes: APPLY_GROUP_MIN - 1, or
                             group_max if fewer (never a transaction); with transactions off
                             (replicator.transactions 0) the most it ever takes: that many
                             rounds of parallel_puts, or group_max if fewer */
    int txn;              /* transactions on (replicator.transactions > 0) */
    /* transaction slots, handed out first come first served: a worker takes a ticket and
     * writes once its ticket is below txn_admitted (replicator.transactions at start, one
     * more per transaction finished); otherwise the worker that just finished one, back
     * first, took the slot again and again while the others waited */
    uint64_t txn_next;          /* next ticket */
    uint64_t txn_admitted;      /* tickets below this may write */
    pthread_cond_t txn_cv;      /* txn_admitted moved (broadcast) */
    pool_group_counts counts;   /* since the last pool_take_group_counts */
    key_cache *keys;            /* the tables' key schemas */
};

static unsigned pool_hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void pool_apply(pool_worker *w, pool_job *j) {
    apply_change ac;
    memset(&ac, 0, sizeof ac);
    ac.table = j->table;
    ac.is_delete = j->c->op == WIRE_OP_DELETE;
    ac.keys = j->c->keys;
    ac.image = j->c->image;
    ac.version = j->c->version;
    ac.kid = j->kid;
    ac.ttl_s = j->ttl_s;
    j->res = apply_one(w->s, w->st, &ac, APPLY_PRECHECK, j->winner, j->err, sizeof j->err);
    j->done_wall = daemon_wall_ms();
}

/* 1 when a job of j's key is in x's group. Called with mu held. */
static int pool_in_group(const pool_worker *x, const pool_job *j) {
    for (size_t k = 0; k < x->ng; k++)
        if (x->g[k]->khash == j->khash && strcmp(x->g[k]->kid, j->kid) == 0) return 1;
    return 0;
}

/* The worker whose queue holds the jobs of j's key. */
static pool_worker *pool_owner(const apply_pool *p, const pool_job *j) {
    return &p->w[j->khash % (unsigned)p->n];
}

/* 1 when j, at the head of its owner's queue, must wait because a job of its key is in a
 * group: the taker's own (a repeated key), or another worker's. The other groups can hold
 * keys of j's queue only while its owner has jobs lent, so the owner taking from its own
 * queue scans them only then. Called with mu held. */
static int pool_busy(const apply_pool *p, const pool_worker *taker, const pool_job *j) {
    const pool_worker *owner = pool_owner(p, j);
    if (pool_in_group(taker, j)) return 1;
    if (owner == taker && owner->lent == 0) return 0;
    for (int i = 0; i < p->n; i++)
        if (&p->w[i] != taker && pool_in_group(&p->w[i], j)) return 1;
    return 0;
}

/* Moves jobs from the head of `from`'s queue into w's group (w->g[w->ng..]): the head alone
 * when the group is empty, then, while the group is of puts, the puts right behind it of
 * the group's table, up to max in all. Stops at the first job that is a delete, of
 * another table, or of a key in any worker's group (this one's included): per-key order
 * holds because a key's jobs are all in one queue, in order, and none is taken while
 * another of its key is being written. Jobs taken from another queue are counted in its
 * `lent`. Called with mu held. */
static void pool_take(apply_pool *p, pool_worker *w, pool_worker *from, size_t max) {
    while (from->head && w->ng < max && (w->ng == 0 || w->g[0]->c->op == WIRE_OP_PUT)) {
        pool_job *j = from->head;
        if (w->ng > 0 && (j->c->op != WIRE_OP_PUT || strcmp(j->table, w->g[0]->table) != 0)) break;
        if (pool_busy(p, w, j)) break;
        w->g[w->ng++] = j;
        from->head = j->qnext;
        if (!from->head) from->tail = NULL;
        if (from != w) from->lent++;
    }
}

static void key_cache_release(key_cache *kc) {
    int last;
    pthread_mutex_lock(&kc->mu);
    last = --kc->refs == 0;
    pthread_mutex_unlock(&kc->mu);
    if (!last) return;
    for (size_t i = 0; i < kc->n; i++) free(kc->t[i].table);
    free(kc->t);
    store_free(kc->s);
    pthread_mutex_destroy(&kc->mu);
    free(kc);
}

/* The loader thread: DescribeTable of every table whose schema is not known, then ends. */
static void *key_loader(void *arg) {
    key_cache *kc = arg;
    int failed = 0;
    daemon_name_thread(pthread_self(), "tern-keys"); /* detached: named from inside */
    for (size_t i = 0; i < kc->n; i++) { /* the table names and kc->s are this thread's to read */
        store_table_info ti;
        store_status st;
        int known;
        pthread_mutex_lock(&kc->mu);
        known = kc->t[i].known;
        pthread_mutex_unlock(&kc->mu);
        if (known) continue;
        st = store_describe_table(kc->s, kc->t[i].table, &ti);
        if (st != STORE_OK) { /* every failure is said: one run a minute at most */
            failed = 1;
            log_warn(NULL, "table %s: cannot read its key schema (DescribeTable: %s: %s): peers' keys are not "
                     "checked against it until it can, tried again every %d s", kc->t[i].table,
                     store_status_name(st), store_errstr(kc->s), REPL_SCHEMA_RETRY_MS / 1000);
            continue;
        }
        pthread_mutex_lock(&kc->mu);
        snprintf(kc->t[i].hash_key, sizeof kc->t[i].hash_key, "%s", ti.hash_key);
        snprintf(kc->t[i].range_key, sizeof kc->t[i].range_key, "%s", ti.range_key);
        kc->t[i].known = 1;
        pthread_mutex_unlock(&kc->mu);
    }
    pthread_mutex_lock(&kc->mu);
    kc->loading = 0;
    kc->retry_at = failed ? daemon_mono_ms() + REPL_SCHEMA_RETRY_MS : 0;
    pthread_mutex_unlock(&kc->mu);
    key_cache_release(kc);
    return NULL;
}

/* The cache of cfg's tables, with one reference (the pool's); NULL + err. */
static key_cache *key_cache_new(const cfg_region *cfg, char *err, size_t errlen) {
    key_cache *kc = calloc(1, sizeof *kc);
    if (!kc || !(kc->t = calloc(cfg->n_tables ? cfg->n_tables : 1, sizeof *kc->t))) {
        free(kc);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&kc->mu, NULL);
    kc->refs = 1;
    for (; kc->n < cfg->n_tables; kc->n++)
        if (!(kc->t[kc->n].table = strdup(cfg->tables[kc->n]))) break;
    if (kc->n < cfg->n_tables || !(kc->s = daemon_store_new(cfg, err, errlen))) {
        if (kc->n < cfg->n_tables) snprintf(err, errlen, "out of memory");
        key_cache_release(kc);
        return NULL;
    }
    return kc;
}

/* A table's schema is not known (or the pool starts): starts a loader unless one runs or
 * the last one failed less than REPL_SCHEMA_RETRY_MS ago. Called with kc->mu held. */
static void key_cache_want(key_cache *kc) {
    pthread_t th;
    pthread_attr_t at;
    if (kc->loading || daemon_mono_ms() < kc->retry_at) return;
    if (pthread_attr_init(&at) != 0) return;
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    kc->refs++;
    kc->loading = 1;
    if (pthread_create(&th, &at, key_loader, kc) != 0) {
        kc->refs--;
        kc->loading = 0;
        kc->retry_at = daemon_mono_ms() + REPL_SCHEMA_RETRY_MS;
        log_warn(NULL, "cannot start a thread to read the tables' key schemas: peers' keys are not checked meanwhile");
    }
    pthread_attr_destroy(&at);
}

/* Puts the jobs of g[0..n) whose keys are exactly their table's key attributes (or whose
 * table's are not known yet: key_cache) into ok, and returns how many. The others are
 * refused (APPLY_REFUSED, key_schema set, the reason in err) and must not be written:
 * without the check a peer could send a put whose keys name another attribute besides the
 * key's; the store writes the image (its key is right), but under a key id (item_key_id of
 * keys) that the agent never computes for that item from the stream record, so the echo
 * token, the tombstone and the last-local check all miss: an echo shipped back, a delete
 * undone. */
static size_t pool_check_keys(key_cache *kc, pool_job **g, size_t n, pool_job **ok) {
    size_t m = 0;
    pthread_mutex_lock(&kc->mu);
    for (size_t i = 0; i < n; i++) {
        const pool_schema *ks = NULL;
        const cJSON *k;
        int nk = 0, hash = 0, range = 0;
        for (size_t t = 0; t < kc->n; t++)
            if (strcmp(kc->t[t].table, g[i]->table) == 0) ks = &kc->t[t];
        if (!ks || !ks->known) { /* the receiver takes only configured tables */
            if (ks) key_cache_want(kc);
            ok[m++] = g[i];
            continue;
        }
        cJSON_ArrayForEach(k, g[i]->c->keys) {
            nk++;
            if (k->string && strcmp(k->string, ks->hash_key) == 0) hash++;
            else if (k->string && *ks->range_key && strcmp(k->string, ks->range_key) == 0) range++;
        }
        if (hash == 1 && range == (*ks->range_key ? 1 : 0) && nk == hash + range) {
            ok[m++] = g[i];
            continue;
        }
        g[i]->res = APPLY_REFUSED;
        g[i]->key_schema = 1;
        snprintf(g[i]->err, sizeof g[i]->err, "its keys do not match the table's key schema (%.200s%s%.200s)",
                 ks->hash_key, *ks->range_key ? ", " : "", ks->range_key);
        g[i]->done_wall = daemon_wall_ms();
    }
    pthread_mutex_unlock(&kc->mu);
    return m;
}

/* Applies g[0..n) as one group of puts (n >= 2; apply_puts). */
static void pool_apply_group(pool_worker *w, pool_job **g, size_t n) {
    apply_change cs[APPLY_GROUP_MAX];
    apply_outcome out[APPLY_GROUP_MAX];
    long long now;
    memset(cs, 0, n * sizeof cs[0]);
    for (size_t i = 0; i < n; i++) {
        cs[i].table = g[i]->table;
        cs[i].keys = g[i]->c->keys;
        cs[i].image = g[i]->c->image;
        cs[i].version = g[i]->c->version;
        cs[i].kid = g[i]->kid;
        cs[i].ttl_s = g[i]->ttl_s;
    }
    apply_puts(w->s, w->st, &w->wr, cs, n, out);
    now = daemon_wall_ms();
    for (size_t i = 0; i < n; i++) {
        g[i]->res = out[i].res;
        snprintf(g[i]->winner, sizeof g[i]->winner, "%s", out[i].winner);
        snprintf(g[i]->err, sizeof g[i]->err, "%s", out[i].err);
        g[i]->done_wall = now;
    }
}

static void *pool_thread(void *arg) {
    pool_worker *w = arg;
    apply_pool *p = w->p;
    store_stats stats;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        pool_job *ok[APPLY_GROUP_MAX];
        size_t n, m, other = 0;
        long long now;
        int txn;
        uint64_t done;
        /* a head whose key is in a slot holder's group waits for it (pool_busy) */
        while (!w->head || pool_busy(p, w, w->head)) {
            if (p->stop && !w->head) goto out;
            pthread_cond_wait(&w->work, &p->mu);
        }
        /* a transaction only for a backlog: its head waited REPL_TXN_AGE_MS (see replicator.h) */
        now = daemon_mono_ms();
        pool_take(p, w, w,
                  p->txn && now - w->head->queued_at >= REPL_TXN_AGE_MS ? p->group_max : p->single_max);
        atomic_store(&w->beacon, now);
        txn = p->txn && w->ng >= APPLY_GROUP_MIN;
        if (txn) {
            /* a transaction: wait for a slot, then take what queued up meanwhile here */
            uint64_t ticket = p->txn_next++;
            while (ticket >= p->txn_admitted) pthread_cond_wait(&p->txn_cv, &p->mu);
            pool_take(p, w, w, p->group_max);
        }
        /* ... and at the heads of the other queues, from the next worker on (so that no
         * queue is always last) */
        for (int k = 1; txn && k < p->n && w->ng < p->group_max; k++)
            pool_take(p, w, &p->w[(w - p->w + k) % p->n], p->group_max);
        n = w->ng;
        m = pool_check_keys(p->keys, w->g, n, ok);
        pthread_mutex_unlock(&p->mu);
        if (m == 1) pool_apply(w, ok[0]);
        else if (m > 1) pool_apply_group(w, ok, m);
        store_get_stats(w->s, &stats);
        for (size_t k = 0; k < w->wr.n; k++) {
            store_stats hs;
            store_get_stats(w->wr.h[k], &hs);
            store_stats_add(&stats, &hs);
        }
        pthread_mutex_lock(&p->mu);
        if (txn) {
            p->txn_admitted++;
            pthread_cond_broadcast(&p->txn_cv);
        }
        /* the group is written: its keys are free again, and the owners of the jobs it
         * took from other queues may be waiting for them */
        w->ng = 0;
        for (size_t i = 0; i < n; i++) {
            pool_worker *o = pool_owner(p, w->g[i]);
            if (o == w) continue;
            o->lent--;
            pthread_cond_signal(&o->work);
        }
        if (m > 1) { /* the puts written together */
            for (size_t i = 0; i < m; i++) other += pool_owner(p, ok[i]) != w;
            p->counts.groups++;
            p->counts.own += m - other;
            p->counts.other += other;
        }
        for (size_t i = 0; i < n; i++) atomic_store_explicit(&w->g[i]->done, 1, memory_order_release);
        w->snap = stats;
        pthread_mutex_unlock(&p->mu);
        done = n;
        if (write(p->efd, &done, sizeof done) < 0 && errno != EAGAIN)
            log_error(NULL, "apply pool: eventfd write: %s", strerror(errno));
        pthread_mutex_lock(&p->mu);
        p->outstanding -= n;
        if (p->outstanding == 0) pthread_cond_broadcast(&p->idle);
    }
out:
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* w's writers (apply_writers): replicator.parallel_puts store handles, with their beacons
 * on w's, and the multi handle that drives them; none when it is 1. 0/-1 (err); what was
 * made is freed by pool_free. */
static int pool_writers_new(pool_worker *w, const cfg_region *cfg, char *err, size_t errlen) {
    size_t n = (size_t)cfg->replicator.parallel_puts; /* the config bounds it to 1..APPLY_WRITERS_MAX */
    w->wr.no_txn = cfg->replicator.transactions == 0;
    if (n < 2) return 0;
    if (!(w->wr.m = store_multi_new(err, errlen))) return -1;
    for (; w->wr.n < n; w->wr.n++) {
        if (!(w->wr.h[w->wr.n] = daemon_store_new(cfg, err, errlen))) return -1;
        store_set_beacon(w->wr.h[w->wr.n], &w->beacon);
    }
    return 0;
}

apply_pool *pool_new(const cfg_region *cfg, char *err, size_t errlen) {
    apply_pool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    {
        pthread_condattr_t ca; /* pool_wait_idle_for: deadlines on the monotonic clock */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->idle, &ca);
        pthread_condattr_destroy(&ca);
    }
    pthread_cond_init(&p->txn_cv, NULL);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        pool_free(p);
        return NULL;
    }
    p->n = (int)cfg->replicator.apply_workers; /* the config bounds it to 1..32 */
    p->group_max = (size_t)cfg->replicator.group_writes; /* the config bounds it to 1..APPLY_GROUP_MAX */
    p->txn = cfg->replicator.transactions > 0;
    {
        /* without transactions, at most APPLY_GROUP_MIN - 1 rounds of parallel_puts a group:
         * the puts of a group are written on one precheck, which must stay recent */
        size_t cap = (APPLY_GROUP_MIN - 1) * (size_t)(p->txn ? 1 : cfg->replicator.parallel_puts);
        p->single_max = p->group_max < cap ? p->group_max : cap;
    }
    p->txn_admitted = (uint64_t)cfg->replicator.transactions;
    p->w = calloc((size_t)p->n, sizeof *p->w);
    if (!p->w) {
        snprintf(err, errlen, "out of memory");
        pool_free(p);
        return NULL;
    }
    for (int i = 0; i < p->n; i++) {
        p->w[i].p = p;
        pthread_cond_init(&p->w[i].work, NULL);
    }
    if (!(p->keys = key_cache_new(cfg, err, errlen))) {
        pool_free(p);
        return NULL;
    }
    pthread_mutex_lock(&p->keys->mu);
    if (p->keys->n) key_cache_want(p->keys); /* read at once, before the first change */
    pthread_mutex_unlock(&p->keys->mu);
    for (int i = 0; i < p->n; i++) {
        if (!(p->w[i].s = daemon_store_new(cfg, err, errlen)) || !(p->w[i].st = daemon_state_new(cfg, err, errlen))) {
            pool_free(p);
            return NULL;
        }
        store_set_beacon(p->w[i].s, &p->w[i].beacon);
        state_set_beacon(p->w[i].st, &p->w[i].beacon);
        if (pool_writers_new(&p->w[i], cfg, err, errlen) != 0) {
            pool_free(p);
            return NULL;
        }
    }
    for (int i = 0; i < p->n; i++) {
        if (pthread_create(&p->w[i].th, NULL, pool_thread, &p->w[i]) != 0) {
            snprintf(err, errlen, "cannot start apply worker %d", i);
            pool_free(p);
            return NULL;
        }
        {
            char name[16];
            snprintf(name, sizeof name, "tern-apply-%d", i % 100);
            daemon_name_thread(p->w[i].th, name);
        }
        p->started++;
    }
    return p;
}

void pool_free(apply_pool *p) {
    if (!p) return;
    pool_wait_idle(p);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    for (int i = 0; i < p->started; i++) pthread_cond_signal(&p->w[i].work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->w[i].th, NULL);
    for (int i = 0; p->w && i < p->n; i++) {
        store_multi_free(p->w[i].wr.m);
        for (size_t k = 0; k < p->w[i].wr.n; k++) store_free(p->w[i].wr.h[k]);
        store_free(p->w[i].s);
        state_free(p->w[i].st);
        pthread_cond_destroy(&p->w[i].work);
    }
    free(p->w);
    if (p->keys) key_cache_release(p->keys);
    if (p->efd >= 0) close(p->efd);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->txn_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void pool_submit(apply_pool *p, pool_job *j) {
    pool_worker *w;
    j->khash = pool_hash(j->kid);
    w = pool_owner(p, j);
    atomic_store_explicit(&j->done, 0, memory_order_relaxed);
    j->qnext = NULL;
    j->queued_at = daemon_mono_ms();
    pthread_mutex_lock(&p->mu);
    if (w->tail) w->tail->qnext = j;
    else w->head = j;
    w->tail = j;
    p->outstanding++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&p->mu);
}

size_t pool_cancel_queued(apply_pool *p) {
    size_t n = 0;
    uint64_t v;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++) {
        pool_worker *w = &p->w[i];
        while (w->head) {
            pool_job *j = w->head;
            w->head = j->qnext;
            j->res = APPLY_ERROR;
            j->canceled = 1;
            snprintf(j->err, sizeof j->err, "not applied: the replicator is stopping or reloading");
            j->done_wall = daemon_wall_ms();
            atomic_store_explicit(&j->done, 1, memory_order_release);
            n++;
        }
        w->tail = NULL;
    }
    p->outstanding -= n;
    if (p->outstanding == 0) pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
    v = n;
    if (n && write(p->efd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_error(NULL, "apply pool: eventfd write: %s", strerror(errno));
    return n;
}

void pool_wait_idle(apply_pool *p) {
    long long beacon;
    while (pool_wait_idle_for(p, 1000, &beacon) > 0) {}
}

size_t pool_wait_idle_for(apply_pool *p, long ms, long long *beacon) {
    struct timespec ts;
    size_t left;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the condition variable's clock (pool_new) */
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (p->outstanding > 0 && p->started > 0)
        if (pthread_cond_timedwait(&p->idle, &p->mu, &ts) == ETIMEDOUT) break;
    left = p->started > 0 ? p->outstanding : 0;
    *beacon = -1;
    for (int i = 0; left && i < p->n; i++)
        if (p->w[i].ng > 0 && atomic_load(&p->w[i].beacon) > *beacon) *beacon = atomic_load(&p->w[i].beacon);
    pthread_mutex_unlock(&p->mu);
    return left;
}

int pool_fd(const apply_pool *p) { return p->efd; }

void pool_take_events(apply_pool *p) {
    uint64_t v;
    while (read(p->efd, &v, sizeof v) == (ssize_t)sizeof v) {}
}

void pool_take_group_counts(apply_pool *p, pool_group_counts *out) {
    pthread_mutex_lock(&p->mu);
    *out = p->counts;
    memset(&p->counts, 0, sizeof p->counts);
    pthread_mutex_unlock(&p->mu);
}

size_t pool_stats(apply_pool *p, store_stats *out, size_t max) {
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n && n < max; i++) out[n++] = p->w[i].snap;
    pthread_mutex_unlock(&p->mu);
    return n;
}
