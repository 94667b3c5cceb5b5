/* bench.h -- helpers shared by the benchmark clients (lagbench, storebench): not part of
 * the daemons. Header-only: each client is one translation unit. */
#ifndef TERN_BENCH_H
#define TERN_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

/* Monotonic time, microseconds. */
static inline long long bench_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A store handle for endpoint (credentials AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else
 * "local"), or NULL with the reason on stderr, prefixed with who. The caller frees it
 * (store_free). */
static inline store *bench_store(const char *who, const char *endpoint) {
    store_opts o;
    char err[256];
    store *s;
    memset(&o, 0, sizeof o);
    o.endpoint = endpoint;
    o.region = "us-east-1";
    o.access_key_id = getenv("AWS_ACCESS_KEY_ID") ? getenv("AWS_ACCESS_KEY_ID") : "local";
    o.secret_access_key = getenv("AWS_SECRET_ACCESS_KEY") ? getenv("AWS_SECRET_ACCESS_KEY") : "local";
    s = store_new(&o, err, sizeof err);
    if (!s) fprintf(stderr, "%s: %s\n", who, err);
    return s;
}

#endif
