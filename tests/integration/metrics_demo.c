/* metrics_demo.c -- helper of tests/integration/test_metrics_http.sh: serves a metrics/
 * registry over HTTP the way the daemons do, with a counter, a gauge and a histogram
 * (labels that need escaping included), updated by a worker thread while it serves.
 *
 * usage: metrics_demo PORT SECONDS [healthy|unhealthy] [BIND_ADDR]
 * Prints "serving on PORT" on stdout once the endpoint is up, serves for SECONDS (or
 * until SIGTERM/SIGINT), and exits 0; exits 1 if it cannot serve, 2 on bad usage. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"

static atomic_int demo_stop;

static void demo_on_signal(int sig) {
    (void)sig;
    atomic_store(&demo_stop, 1);
}

typedef struct {
    metrics_family *shipped, *inflight, *lag, *rejected;
} demo_fams;

static void demo_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Keeps every family moving while the script scrapes. */
static void *demo_worker(void *p) {
    demo_fams *f = p;
    metrics_series *ship = metrics_series_get(f->shipped, (const char *[]){"eu-west-1", "orders"});
    metrics_series *lag = metrics_series_get(f->lag, (const char *[]){"eu-west-1"});
    unsigned long i = 0;
    while (!atomic_load(&demo_stop)) {
        metrics_inc(ship, 3);
        metrics_inc_with(f->shipped, (const char *[]){"ap-south-1", "orders"}, 1);
        metrics_set_with(f->inflight, (const char *[]){"eu-west-1"}, (double)(i % 8));
        metrics_observe(lag, (double)(i % 12000));
        metrics_observe_with(f->lag, (const char *[]){"ap-south-1"}, 0.5 + (double)(i % 300));
        i += 37;
        demo_sleep_ms(1);
    }
    return NULL;
}

static int demo_health(void *ud, char *reason, size_t reasonlen) {
    if (*(const int *)ud) return 1;
    snprintf(reason, reasonlen, "demo started unhealthy\nsecond line");
    return 0;
}

static long demo_num(const char *s, long lo, long hi) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return LONG_MIN;
    return v;
}

int main(int argc, char **argv) {
    static const double lag_bounds[] = METRICS_LAG_MS_BOUNDS;
    char err[256];
    demo_fams f;
    metrics_registry *reg;
    metrics_server *srv;
    pthread_t th;
    struct sigaction sa;
    long port, secs;
    int healthy = 1, rc = 1;
    long long waited = 0;

    if (argc < 3 || argc > 5 || (port = demo_num(argv[1], 0, 65535)) == LONG_MIN ||
        (secs = demo_num(argv[2], 1, 3600)) == LONG_MIN ||
        (argc >= 4 && strcmp(argv[3], "healthy") != 0 && strcmp(argv[3], "unhealthy") != 0)) {
        fprintf(stderr, "usage: metrics_demo PORT SECONDS [healthy|unhealthy] [BIND_ADDR]\n");
        return 2;
    }
    if (argc >= 4) healthy = strcmp(argv[3], "healthy") == 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = demo_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    reg = metrics_new();
    if (!reg) {
        fprintf(stderr, "metrics_demo: out of memory\n");
        return 1;
    }
    f.shipped = metrics_counter_new(reg, "tern_changes_shipped_total", "Changes shipped to a peer, by table.",
                                    (const char *[]){"peer", "table", NULL}, err, sizeof err);
    f.inflight = metrics_gauge_new(reg, "tern_inflight_batches", "Unacknowledged batches per peer.",
                                   (const char *[]){"peer", NULL}, err, sizeof err);
    f.lag = metrics_histogram_new(reg, "tern_replication_lag_ms",
                                  "Time from the source write to the local apply, ms.\nSecond help line \\ here.",
                                  (const char *[]){"source_region", NULL}, lag_bounds,
                                  sizeof lag_bounds / sizeof lag_bounds[0], err, sizeof err);
    f.rejected = metrics_counter_new(reg, "tern_messages_rejected_total", "Peer messages rejected, by reason.",
                                     (const char *[]){"reason", NULL}, err, sizeof err);
    if (!f.shipped || !f.inflight || !f.lag || !f.rejected) {
        fprintf(stderr, "metrics_demo: %s\n", err);
        goto out;
    }
    metrics_inc_with(f.rejected, (const char *[]){"bad \"frame\"\\n\nline"}, 2);
    metrics_inc_with(f.rejected, (const char *[]){"unauthenticated"}, 0);
    srv = metrics_serve(reg, argc == 5 ? argv[4] : NULL, (int)port, demo_health, &healthy, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "metrics_demo: %s\n", err);
        goto out;
    }
    if (pthread_create(&th, NULL, demo_worker, &f) != 0) {
        fprintf(stderr, "metrics_demo: cannot start the worker thread\n");
        metrics_server_stop(srv);
        goto out;
    }
    printf("serving on %d\n", metrics_server_port(srv));
    fflush(stdout);
    while (!atomic_load(&demo_stop) && waited < secs * 1000) {
        demo_sleep_ms(50);
        waited += 50;
    }
    atomic_store(&demo_stop, 1);
    pthread_join(th, NULL);
    metrics_server_stop(srv);
    rc = 0;
out:
    metrics_free(reg);
    return rc;
}
