/* cpuload.c -- a steady CPU load: THREADS threads, each waking WAKEUPS times a second and
 * spinning for its share of CORES cores of CPU time (its own thread CPU clock) before
 * sleeping until its next wake-up. bench/copiers runs it beside a copier to ask what that
 * much CPU beside a replicator costs the lag on this machine (docs/lag.md, "What any
 * replicator's CPU costs at 1,000 writes/s"). The default makes about as many wake-ups as
 * Tern's daemons at 1,000 writes/s (about 4,000 a second), but timer-driven, not the
 * hand-offs of a change from thread to thread.
 *
 * usage: cpuload --cores C [--threads N] [--wakeups W]
 *   C: cores of CPU to use in all, 0.01..4 and below N (e.g. 0.3); N: threads, 1..64
 *   (default 4); W: wake-ups a second per thread, 1..100000 (default 1000).
 * Thread i wakes i/N of a period after thread 0 (timer-driven, evenly spread, not in step).
 * On a full machine a thread that falls behind skips ahead: it then uses less than its
 * share, never a burst to catch up.
 * Runs until killed. Owns nothing but its threads; they share only the read-only spin time.
 * Prints nothing; exits 2 on a bad argument, 1 when a thread cannot be started. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long spin_ns, period_ns, start_ns;
static long n_threads;

/* The clock c in ns; 0 if it cannot be read (never for these clocks on Linux: t is zeroed
 * so that a failure is a wrong time, not an uninitialized read). */
static long long clock_ns(clockid_t c) {
    struct timespec t = {0, 0};
    (void)clock_gettime(c, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* arg: the thread's index (0..n_threads - 1), cast to a pointer. */
static void *spinner(void *arg) {
    long long next = start_ns + (long long)(intptr_t)arg * period_ns / n_threads;
    volatile unsigned long sink = 0;
    for (;;) {
        struct timespec ts = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
        long long t0;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        while (clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0 < spin_ns) sink++;
        next += period_ns;
        if (next < clock_ns(CLOCK_MONOTONIC)) next = clock_ns(CLOCK_MONOTONIC); /* behind: no catch-up burst */
    }
    return NULL;
}

/* Parses a number of [lo, hi] from s; 0, or -1 with a message naming opt. */
static int parse_num(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) { /* NaN fails both */
        fprintf(stderr, "cpuload: %s: expected a number from %g to %g, got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    double cores = 0, threads = 4, wakeups = 1000;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (!v) {
            fprintf(stderr, "cpuload: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--cores")) rc = parse_num(a, v, 0.01, 4, &cores);
        else if (!strcmp(a, "--threads")) {
            rc = parse_num(a, v, 1, 64, &threads);
            if (rc == 0 && threads != (double)(long)threads) {
                fprintf(stderr, "cpuload: --threads: expected a whole number, got '%s'\n", v);
                rc = -1;
            }
        }
        else if (!strcmp(a, "--wakeups")) rc = parse_num(a, v, 1, 100000, &wakeups);
        else {
            fprintf(stderr, "cpuload: unknown option %s (usage: cpuload --cores C [--threads N] [--wakeups W])\n", a);
            return 2;
        }
        if (rc != 0) return 2;
    }
    if (cores <= 0) {
        fprintf(stderr, "cpuload: --cores is required\n");
        return 2;
    }
    n_threads = (long)threads;
    period_ns = (long long)(1e9 / wakeups);
    spin_ns = (long long)(cores / (double)n_threads / wakeups * 1e9);
    if (spin_ns >= period_ns) {
        fprintf(stderr, "cpuload: %g cores over %ld threads is a full core each or more: use more threads\n", cores,
                n_threads);
        return 2;
    }
    start_ns = clock_ns(CLOCK_MONOTONIC);
    for (long i = 0; i < n_threads; i++) {
        pthread_t t;
        int e = pthread_create(&t, NULL, spinner, (void *)(intptr_t)i);
        if (e != 0) {
            fprintf(stderr, "cpuload: starting thread %ld: %s\n", i, strerror(e));
            return 1;
        }
        pthread_detach(t);
    }
    for (;;) pause();
}
