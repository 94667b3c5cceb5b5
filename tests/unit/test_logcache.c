/* test_logcache.c -- unit tests of logcache/ (the tailer's commits handed to the shipper):
 * chaining, completeness, coverage, trimming, caps, and the queue's order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include "logcache.h"

static wire_pos P(uint64_t ms, uint64_t seq) { return (wire_pos){ms, seq}; }

/* A chunk of table 0 with ids (ms, 0) for ms in ids[0..n), each entry "ver" = "v<ms>" and
 * bytes long; prev_ms 0: prev unknown. */
static logcache_chunk *chunk(uint64_t prev_ms, const uint64_t *ids, size_t n, size_t bytes) {
    logcache_chunk *c = logcache_chunk_new(0);
    assert_non_null(c);
    for (size_t i = 0; i < n; i++) {
        char v[32];
        cJSON *e = cJSON_CreateObject();
        assert_non_null(e);
        snprintf(v, sizeof v, "v%llu", (unsigned long long)ids[i]);
        assert_non_null(cJSON_AddStringToObject(e, "ver", v));
        assert_int_equal(logcache_chunk_add(c, e, bytes), 0);
    }
    for (size_t i = 0; i < n; i++) logcache_chunk_set_id(c, i, P(ids[i], 0));
    if (prev_ms) logcache_chunk_set_prev(c, P(prev_ms, 0));
    return c;
}

/* Pushes c through q into lc (table 0). */
static void deliver(logcache_queue *q, logcache *lc, logcache_chunk *c) {
    logcache *caches[1] = {lc};
    if (c) logcache_queue_push(q, c);
    logcache_queue_take(q, caches);
}

/* logcache_after(pos) must give exactly the ids want[0..n) and at_end; n -1: not covered. */
static void expect_after(const logcache *lc, uint64_t pos_ms, size_t max, long n, const uint64_t *want, int at_end) {
    const logcache_entry *e;
    int end = -1;
    long got = logcache_after(lc, P(pos_ms, 0), max, &e, &end);
    assert_int_equal(got, n);
    for (long i = 0; i < got; i++) {
        char v[32];
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(e[i].change, "ver");
        assert_int_equal(e[i].id.ms, want[i]);
        snprintf(v, sizeof v, "v%llu", (unsigned long long)want[i]);
        assert_string_equal(ver->valuestring, v);
    }
    if (n >= 0) assert_int_equal(end, at_end);
}

/* The fixture of the one-table tests: a queue and its table's cache. */
typedef struct {
    logcache_queue *q;
    logcache *lc;
} fx;

static int fx_setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    if (!f || !(f->q = logcache_queue_new(1)) || !(f->lc = logcache_new())) return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    fx *f = *state;
    logcache_free(f->lc);
    logcache_queue_free(f->q);
    free(f);
    return 0;
}

/* A fresh cache covers nothing; a first chunk with prev unknown covers its own ids only. */
static void test_empty_and_first_chunk(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    const uint64_t a[] = {10, 11, 12};
    assert_non_null(q);
    assert_non_null(lc);
    expect_after(lc, 0, 100, -1, NULL, 0);
    expect_after(lc, 5, 100, -1, NULL, 0);
    deliver(q, lc, chunk(0, a, 3, 10));
    assert_int_equal(logcache_len(lc), 3);
    expect_after(lc, 9, 100, -1, NULL, 0);   /* prev unknown: 9 may not be the entry before 10 */
    expect_after(lc, 10, 100, 2, a + 1, 1);
    expect_after(lc, 10, 1, 1, a + 1, 0);    /* max: not the end yet */
    expect_after(lc, 12, 100, 0, NULL, 1);   /* the log's end: nothing more, known */
    expect_after(lc, 13, 100, -1, NULL, 0);  /* beyond the cache (read Redis) */
    expect_after(lc, 11, 100, 1, a + 2, 1);
}

/* A chunk whose prev is the cache's last is appended; a known prev makes it covered. */
static void test_chaining(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    const uint64_t a[] = {10, 11}, b[] = {20, 21}, all[] = {10, 11, 20, 21};
    deliver(q, lc, chunk(5, a, 2, 10));
    expect_after(lc, 5, 100, 2, a, 1);
    deliver(q, lc, chunk(11, b, 2, 10));
    assert_int_equal(logcache_len(lc), 4);
    expect_after(lc, 5, 100, 4, all, 1);
    expect_after(lc, 11, 100, 2, b, 1);
    expect_after(lc, 15, 100, -1, NULL, 0);  /* not an entry's id */
}

/* A chunk that does not follow the cache's last (a commit the cache did not get came
 * between, or prev unknown) starts the cache anew: nothing before it is vouched for. */
static void test_gap_restarts(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    const uint64_t a[] = {10, 11}, b[] = {30, 31}, c[] = {40};
    deliver(q, lc, chunk(5, a, 2, 10));
    deliver(q, lc, chunk(25, b, 2, 10)); /* 20..25 went to the log without a chunk */
    assert_int_equal(logcache_len(lc), 2);
    expect_after(lc, 11, 100, -1, NULL, 0);
    expect_after(lc, 10, 100, -1, NULL, 0);
    expect_after(lc, 25, 100, 2, b, 1);
    deliver(q, lc, chunk(0, c, 1, 10));      /* prev unknown */
    expect_after(lc, 31, 100, -1, NULL, 0);
    expect_after(lc, 40, 100, 0, NULL, 1);
}

/* A commit counted without a chunk (outcome unknown, or dropped) makes the cache
 * incomplete: its end is no longer the log's, until the next chunk. */
static void test_mark_incomplete(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    const uint64_t a[] = {10, 11}, b[] = {50};
    deliver(q, lc, chunk(5, a, 2, 10));
    expect_after(lc, 11, 100, 0, NULL, 1);
    logcache_queue_mark(q, 0);
    deliver(q, lc, NULL);
    expect_after(lc, 11, 100, 0, NULL, 0);   /* read Redis: the log may go on */
    expect_after(lc, 10, 100, 1, a + 1, 0);
    /* a mark queued before a chunk, taken together: the chunk is the last commit */
    logcache_queue_mark(q, 0);
    deliver(q, lc, chunk(0, b, 1, 10));
    expect_after(lc, 50, 100, 0, NULL, 1);
    /* a mark after a chunk, taken together: incomplete */
    logcache_queue_mark(q, 0);
    deliver(q, lc, NULL);
    expect_after(lc, 50, 100, 0, NULL, 0);
}

/* Trimming drops entries at or below a position; the last trimmed id stays covered. */
static void test_trim(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    const uint64_t a[] = {10, 11, 12, 13};
    deliver(q, lc, chunk(5, a, 4, 10));
    logcache_trim(lc, P(0, 0));
    assert_int_equal(logcache_len(lc), 4);
    logcache_trim(lc, P(11, 0));
    assert_int_equal(logcache_len(lc), 2);
    assert_int_equal(logcache_bytes(lc), 20);
    expect_after(lc, 10, 100, -1, NULL, 0);
    expect_after(lc, 11, 100, 2, a + 2, 1);
    logcache_trim(lc, P(99, 0));
    assert_int_equal(logcache_len(lc), 0);
    expect_after(lc, 13, 100, 0, NULL, 1);   /* the log's end, known */
    {
        const uint64_t b[] = {14};
        deliver(q, lc, chunk(13, b, 1, 10)); /* still chains to the trimmed last */
        expect_after(lc, 13, 100, 1, b, 1);
    }
}

/* Past LOGCACHE_MAX_BYTES the oldest entries go; clear forgets everything. Many chunks
 * exercise the array's compaction. */
static void test_cap_and_clear(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    size_t big = LOGCACHE_MAX_BYTES / 4;
    uint64_t id = 100;
    for (int k = 0; k < 6; k++, id++) {
        deliver(q, lc, chunk(k ? id - 1 : 0, &id, 1, big));
        assert_true(logcache_bytes(lc) <= LOGCACHE_MAX_BYTES);
    }
    assert_int_equal(logcache_len(lc), 4);
    expect_after(lc, 100, 100, -1, NULL, 0);
    {
        const uint64_t want[] = {102, 103, 104, 105};
        expect_after(lc, 101, 100, 4, want, 1); /* the last dropped is prev */
    }
    for (int k = 0; k < 300; k++, id++) {
        deliver(q, lc, chunk(id - 1, &id, 1, 1));
        logcache_trim(lc, P(id - 2, 0));
    }
    assert_int_equal(logcache_len(lc), 2);
    {
        const uint64_t want[] = {id - 1};
        expect_after(lc, id - 2, 100, 1, want, 1);
    }
    logcache_clear(lc);
    assert_int_equal(logcache_len(lc), 0);
    expect_after(lc, id - 1, 100, -1, NULL, 0);
}

/* The queue keeps order across tables, hands each table its own chunks, frees what is
 * left, and drops a chunk past LOGCACHE_QUEUE_BYTES (counted: the cache is incomplete). */
static void test_queue(void **state) {
    (void)state;
    logcache_queue *q = logcache_queue_new(2);
    logcache *c0 = logcache_new(), *c1 = logcache_new(), *caches[2] = {c0, c1};
    const uint64_t a[] = {10}, b[] = {11};
    logcache_chunk *x = chunk(10, b, 1, 10);
    /* chunk() makes table 0 chunks: rebuild one for table 1 */
    logcache_chunk *y = logcache_chunk_new(1);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "ver", "v7");
    assert_int_equal(logcache_chunk_add(y, e, 10), 0);
    logcache_chunk_set_id(y, 0, P(7, 0));
    logcache_queue_push(q, chunk(0, a, 1, 10));
    logcache_queue_push(q, y);
    logcache_queue_push(q, x);
    logcache_queue_take(q, caches);
    expect_after(c0, 10, 100, 1, b, 1);
    {
        const logcache_entry *en;
        int end;
        assert_int_equal(logcache_after(c1, P(7, 0), 100, &en, &end), 0);
        assert_int_equal(end, 1);
    }
    /* over the queue's bytes: dropped, and table 0's cache is incomplete */
    {
        const uint64_t big[] = {20}, nxt[] = {21};
        logcache_queue_push(q, chunk(11, big, 1, LOGCACHE_QUEUE_BYTES + 1));
        logcache_queue_take(q, caches);
        expect_after(c0, 11, 100, 0, NULL, 0);
        logcache_queue_push(q, chunk(20, nxt, 1, 10)); /* does not chain to 11: anew */
        logcache_queue_take(q, caches);
        expect_after(c0, 11, 100, -1, NULL, 0);
        expect_after(c0, 20, 100, 1, nxt, 1);
    }
    /* left in the queue: freed with it (ASan checks) */
    logcache_queue_push(q, chunk(21, b, 1, 10));
    logcache_queue_free(q);
    logcache_free(c0);
    logcache_free(c1);
}

/* A chunk whose prev is an entry of the cache but not its last (entries after it were
 * removed from the log, or the tailer's view is off) restarts the cache; so does one whose
 * prev is unknown. Trimming a cache whose prev is unknown makes it known. */
static void test_prev_not_last(void **state) {
    fx *f = *state;
    logcache_queue *q = f->q;
    logcache *lc = f->lc;
    const uint64_t a[] = {10, 11, 12}, b[] = {20};
    deliver(q, lc, chunk(0, a, 3, 10));
    logcache_trim(lc, P(10, 0));             /* prev unknown -> 10 */
    expect_after(lc, 10, 100, 2, a + 1, 1);
    expect_after(lc, 10, 2, 2, a + 1, 1);    /* exactly max left: the end, and known */
    deliver(q, lc, chunk(11, b, 1, 10));     /* 11 is not the last (12) */
    assert_int_equal(logcache_len(lc), 1);
    expect_after(lc, 11, 100, 1, b, 1);
    expect_after(lc, 12, 100, -1, NULL, 0);
}

/* A table without a cache drops its chunks; a chunk for a table the queue does not have
 * is freed (ASan checks both). */
static void test_no_cache(void **state) {
    (void)state;
    logcache_queue *q = logcache_queue_new(1);
    logcache *caches[1] = {NULL};
    const uint64_t a[] = {10};
    logcache_chunk *c = logcache_chunk_new(5);
    cJSON *e = cJSON_CreateObject();
    assert_int_equal(logcache_chunk_add(c, e, 10), 0);
    logcache_queue_push(q, c);
    logcache_queue_mark(q, 5);
    logcache_queue_push(q, chunk(0, a, 1, 10));
    logcache_queue_take(q, caches);
    logcache_queue_free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_and_first_chunk, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chaining, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gap_restarts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mark_incomplete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trim, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cap_and_clear, fx_setup, fx_teardown),
        cmocka_unit_test(test_queue),
        cmocka_unit_test_setup_teardown(test_prev_not_last, fx_setup, fx_teardown),
        cmocka_unit_test(test_no_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
