/* pool.c -- the replicator's apply workers (see replicator.h, pool_*).
 *
 * Owns: replicator.apply_workers threads, each with its own store and Redis handles, and
 * the job in hand: a slice of slots (one per change) with the worker each belongs to.
 * Invariants: a slot's worker is chosen by a hash of the change's key id, so the changes
 * of one key are applied by one worker in batch order (per-key order is what LWW and the
 * echo tokens need); different keys go in parallel. pool_run() returns only when every
 * slot of the job has a result.
 * Threading: pool_run() is called by the replicator's main thread; workers touch only their
 * own handles and their own slots; the job is published and collected under `mu`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "daemon.h"
#include "item.h"
#include "log.h"
#include "replicator.h"

typedef struct pool_worker pool_worker;

struct pool_worker {
    apply_pool *p;
    int id;
    pthread_t th;
    store *s;
    state *st;
};

struct apply_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pool_worker *w;
    int n;
    int started;          /* threads running */
    int stop;
    unsigned long gen;    /* job generation */
    int pending;          /* workers still on the job */
    pool_slot *slots;
    size_t n_slots;
    const char *table;
    long ttl_s;
};

static unsigned pool_hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void pool_apply_slot(pool_worker *w, pool_slot *sl) {
    apply_change ac;
    memset(&ac, 0, sizeof ac);
    ac.table = w->p->table;
    ac.is_delete = sl->c->op == WIRE_OP_DELETE;
    ac.keys = sl->c->keys;
    ac.image = sl->c->image;
    ac.version = sl->c->version;
    ac.kid = sl->kid;
    ac.ttl_s = w->p->ttl_s;
    sl->res = apply_one(w->s, w->st, &ac, APPLY_PRECHECK, sl->winner, sl->err, sizeof sl->err);
    sl->done_wall = daemon_wall_ms();
}

static void *pool_thread(void *arg) {
    pool_worker *w = arg;
    apply_pool *p = w->p;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->work, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        for (size_t i = 0; i < p->n_slots; i++)
            if (p->slots[i].worker == w->id) pool_apply_slot(w, &p->slots[i]);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

apply_pool *pool_new(const cfg_region *cfg, char *err, size_t errlen) {
    apply_pool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = (int)cfg->replicator.apply_workers;
    p->w = calloc((size_t)p->n, sizeof *p->w);
    if (!p->w) {
        snprintf(err, errlen, "out of memory");
        pool_free(p);
        return NULL;
    }
    for (int i = 0; i < p->n; i++) {
        p->w[i].p = p;
        p->w[i].id = i;
        if (!(p->w[i].s = daemon_store_new(cfg, err, errlen)) || !(p->w[i].st = daemon_state_new(cfg, err, errlen))) {
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
        p->started++;
    }
    return p;
}

void pool_free(apply_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->w[i].th, NULL);
    for (int i = 0; p->w && i < p->n; i++) {
        store_free(p->w[i].s);
        state_free(p->w[i].st);
    }
    free(p->w);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void pool_run(apply_pool *p, const char *table, long ttl_s, pool_slot *slots, size_t n) {
    if (!n) return;
    for (size_t i = 0; i < n; i++) slots[i].worker = (int)(pool_hash(slots[i].kid) % (unsigned)p->n);
    pthread_mutex_lock(&p->mu);
    p->slots = slots;
    p->n_slots = n;
    p->table = table;
    p->ttl_s = ttl_s;
    p->pending = p->n;
    p->gen++;
    pthread_cond_broadcast(&p->work);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    p->slots = NULL;
    p->n_slots = 0;
    pthread_mutex_unlock(&p->mu);
}

size_t pool_stores(const apply_pool *p, const store **out, size_t max) {
    size_t n = 0;
    for (int i = 0; i < p->n && n < max; i++) out[n++] = p->w[i].s;
    return n;
}
