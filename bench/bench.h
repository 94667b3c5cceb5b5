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

/* A store handle for endpoint (store_opts_client), or NULL with the reason on stderr,
 * prefixed with who. The caller frees it (store_free). */
static inline store *bench_store(const char *who, const char *endpoint) {
    store_opts o;
    char err[256];
    store *s;
    store_opts_client(&o, endpoint);
    s = store_new(&o, err, sizeof err);
    if (!s) fprintf(stderr, "%s: %s\n", who, err);
    return s;
}

#endif
