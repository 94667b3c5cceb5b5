/* logcache.c -- the change log's newest entries in memory (see logcache.h).
 *
 * Owns: the chunks in a queue, and in each table's cache its entries (an array whose live
 * part is [start, n): trimming moves start, and the array is compacted once more than
 * half of it is dead).
 * Invariants of a cache: the ids of [start, n) ascend and are a contiguous run of log:T
 * (no log entry lies between two of them, nor between prev and the first when
 * prev_known); an empty cache with prev_known stands for the log's end at prev when
 * complete. Complete: the chunk that brought the last entry is the table's last commit
 * counted (took == counted), so the log held nothing after it.
 * Threading: a queue is shared (its mutex guards its list, byte count and commit counts);
 * a cache and a chunk belong to one thread at a time (the tailer makes a chunk, the queue
 * hands it over, the shipper applies it). */
#include "logcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct logcache_chunk {
    logcache_chunk *next;       /* in a queue */
    size_t table;
    unsigned long long count;   /* its table's commit count with it (set when queued) */
    int prev_known;
    wire_pos prev;
    logcache_entry *e;
    size_t n, cap, bytes;
};

struct logcache_queue {
    pthread_mutex_t mu;
    logcache_chunk *head, *tail;
    size_t bytes;               /* of the queued chunks' entries */
    size_t n_tables;
    unsigned long long *counted;/* per table: commits counted so far */
};

struct logcache {
    logcache_entry *e;
    size_t start, n, cap, bytes;
    int prev_known;
    wire_pos prev;
    unsigned long long took;    /* the count of the last chunk applied (0: none) */
    unsigned long long counted; /* the table's count when chunks were last taken */
};

logcache_chunk *logcache_chunk_new(size_t table) {
    logcache_chunk *c = calloc(1, sizeof *c);
    if (c) c->table = table;
    return c;
}

void logcache_chunk_free(logcache_chunk *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) cJSON_Delete(c->e[i].change);
    free(c->e);
    free(c);
}

/* Makes room for one more entry in *e (capacity *cap, n used). 0/-1. */
static int grow(logcache_entry **e, size_t *cap, size_t n) {
    logcache_entry *ne;
    size_t nc;
    if (n < *cap) return 0;
    nc = *cap ? 2 * *cap : 16;
    ne = realloc(*e, nc * sizeof *ne);
    if (!ne) return -1;
    *e = ne;
    *cap = nc;
    return 0;
}

int logcache_chunk_add(logcache_chunk *c, cJSON *change, size_t bytes) {
    if (grow(&c->e, &c->cap, c->n) != 0) {
        cJSON_Delete(change);
        return -1;
    }
    c->e[c->n].id = (wire_pos){0, 0};
    c->e[c->n].change = change;
    c->e[c->n].bytes = bytes;
    c->n++;
    c->bytes += bytes;
    return 0;
}

size_t logcache_chunk_len(const logcache_chunk *c) { return c->n; }

void logcache_chunk_set_id(logcache_chunk *c, size_t i, wire_pos id) {
    if (i < c->n) c->e[i].id = id;
}

void logcache_chunk_set_prev(logcache_chunk *c, wire_pos prev) {
    c->prev = prev;
    c->prev_known = 1;
}

logcache_queue *logcache_queue_new(size_t n_tables) {
    logcache_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->counted = calloc(n_tables ? n_tables : 1, sizeof *q->counted);
    if (!q->counted || pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q->counted);
        free(q);
        return NULL;
    }
    q->n_tables = n_tables;
    return q;
}

void logcache_queue_free(logcache_queue *q) {
    if (!q) return;
    while (q->head) {
        logcache_chunk *c = q->head;
        q->head = c->next;
        logcache_chunk_free(c);
    }
    pthread_mutex_destroy(&q->mu);
    free(q->counted);
    free(q);
}

void logcache_queue_push(logcache_queue *q, logcache_chunk *c) {
    if (!c) return;
    if (c->table >= q->n_tables) { /* not a table of the queue's: never made so */
        logcache_chunk_free(c);
        return;
    }
    pthread_mutex_lock(&q->mu);
    c->count = ++q->counted[c->table];
    if (q->bytes + c->bytes > LOGCACHE_QUEUE_BYTES) { /* the shipper is not taking chunks */
        pthread_mutex_unlock(&q->mu);
        logcache_chunk_free(c);
        return;
    }
    q->bytes += c->bytes;
    c->next = NULL;
    if (q->tail) q->tail->next = c;
    else q->head = c;
    q->tail = c;
    pthread_mutex_unlock(&q->mu);
}

void logcache_queue_mark(logcache_queue *q, size_t table) {
    if (table >= q->n_tables) return;
    pthread_mutex_lock(&q->mu);
    q->counted[table]++;
    pthread_mutex_unlock(&q->mu);
}

logcache *logcache_new(void) { return calloc(1, sizeof(logcache)); }

void logcache_clear(logcache *lc) {
    for (size_t i = lc->start; i < lc->n; i++) cJSON_Delete(lc->e[i].change);
    lc->start = lc->n = 0;
    lc->bytes = 0;
    lc->prev_known = 0;
    lc->took = 0;
}

void logcache_free(logcache *lc) {
    if (!lc) return;
    logcache_clear(lc);
    free(lc->e);
    free(lc);
}

/* The cache's last id: its last entry's, or prev. 0 when it has none. */
static int cache_last(const logcache *lc, wire_pos *out) {
    if (lc->n > lc->start) {
        *out = lc->e[lc->n - 1].id;
        return 1;
    }
    if (lc->prev_known) *out = lc->prev;
    return lc->prev_known;
}

/* Drops the oldest live entry; prev becomes its id. */
static void drop_oldest(logcache *lc) {
    logcache_entry *x = &lc->e[lc->start++];
    lc->prev = x->id;
    lc->prev_known = 1;
    lc->bytes -= x->bytes;
    cJSON_Delete(x->change);
    x->change = NULL;
}

/* Moves the live part to the front once more than half the array is dead. */
static void compact(logcache *lc) {
    if (lc->start == 0 || lc->start < lc->n - lc->start) return;
    memmove(lc->e, lc->e + lc->start, (lc->n - lc->start) * sizeof *lc->e);
    lc->n -= lc->start;
    lc->start = 0;
}

/* Applies chunk c (taken): appended when it follows the cache's last id, else the cache
 * starts anew from it. An entry that cannot be held (out of memory) ends the cache's run
 * there: it is cleared, and holds nothing until the next chunk. */
static void cache_apply(logcache *lc, logcache_chunk *c) {
    wire_pos last;
    if (!(c->prev_known && cache_last(lc, &last) && wire_pos_cmp(last, c->prev) == 0)) {
        logcache_clear(lc);
        lc->prev = c->prev;
        lc->prev_known = c->prev_known;
    }
    for (size_t i = 0; i < c->n; i++) {
        compact(lc);
        if (grow(&lc->e, &lc->cap, lc->n) != 0) {
            logcache_clear(lc);
            logcache_chunk_free(c); /* frees the entries not moved yet */
            return;
        }
        lc->e[lc->n++] = c->e[i];
        lc->bytes += c->e[i].bytes;
        c->e[i].change = NULL;
    }
    while (lc->bytes > LOGCACHE_MAX_BYTES && lc->n > lc->start) drop_oldest(lc);
    lc->took = c->count;
    logcache_chunk_free(c);
}

void logcache_queue_take(logcache_queue *q, logcache **caches) {
    logcache_chunk *c;
    pthread_mutex_lock(&q->mu);
    c = q->head;
    q->head = q->tail = NULL;
    q->bytes = 0;
    for (size_t t = 0; t < q->n_tables; t++)
        if (caches[t]) caches[t]->counted = q->counted[t];
    pthread_mutex_unlock(&q->mu);
    while (c) {
        logcache_chunk *next = c->next;
        if (caches[c->table]) cache_apply(caches[c->table], c);
        else logcache_chunk_free(c);
        c = next;
    }
}

void logcache_trim(logcache *lc, wire_pos upto) {
    while (lc->n > lc->start && wire_pos_cmp(lc->e[lc->start].id, upto) <= 0) drop_oldest(lc);
    compact(lc);
}

long logcache_after(const logcache *lc, wire_pos pos, size_t max, const logcache_entry **out, int *at_end) {
    size_t lo = lc->start, hi = lc->n, first;
    *out = NULL;
    *at_end = 0;
    if (lc->prev_known && wire_pos_cmp(pos, lc->prev) == 0) {
        first = lc->start;
    } else {
        while (lo < hi) { /* the entry whose id is pos */
            size_t mid = lo + (hi - lo) / 2;
            int c = wire_pos_cmp(lc->e[mid].id, pos);
            if (c == 0) {
                lo = mid;
                break;
            }
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        if (lo >= lc->n || wire_pos_cmp(lc->e[lo].id, pos) != 0) return -1;
        first = lo + 1;
    }
    if (lc->n - first > max) {
        *out = &lc->e[first];
        return (long)max;
    }
    *at_end = lc->took != 0 && lc->took == lc->counted;
    if (lc->n > first) *out = &lc->e[first];
    return (long)(lc->n - first);
}

size_t logcache_len(const logcache *lc) { return lc->n - lc->start; }
size_t logcache_bytes(const logcache *lc) { return lc->bytes; }
