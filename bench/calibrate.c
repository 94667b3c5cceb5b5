/* calibrate.c -- how fast this machine is right now, in two numbers that bench/run records
 * beside every run, so that runs made on different days can be told apart from changes in
 * Tern (docs/lag.md, "How fast the machine was"):
 *   spin:    one thread runs a fixed integer loop (CALIB_SPIN_ITERS xorshift steps); the
 *            wall time it took and the CPU time the thread got. A slower or shared CPU
 *            shows in the CPU time; a machine too busy to run the thread, in wall > CPU.
 *   handoff: two threads pass a token back and forth over two eventfds
 *            (CALIB_HANDOFF_ROUNDS round trips, in CALIB_HANDOFF_BATCHES batches); the
 *            median batch's time per round trip, in µs. Every change Tern replicates is
 *            handed from thread to thread and process to process several times, so this is
 *            the cost the lag is most sensitive to (docs/lag.md, "What any replicator's CPU
 *            costs at 1,000 writes/s").
 * Same machine, same moment: the results differ by a few per cent from run to run.
 *
 * usage: calibrate [--label NAME]
 * Prints one JSON line: {"label":NAME,"spin_ms":W,"spin_cpu_ms":C,"handoff_us":H}
 * (label "calibration" by default). Exits 1 if a thread or an eventfd cannot be made, 2 on
 * a bad argument. Owns its two threads and two eventfds: closed after a run that
 * succeeded; after a failed one the process exits with the echoer still blocked on them.
 * The loop's time depends on the build: bench/run uses the release build (build/,
 * RelWithDebInfo); a sanitizer or -O0 build is several times slower. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define CALIB_SPIN_ITERS (1UL << 28)
#define CALIB_HANDOFF_ROUNDS 20000
#define CALIB_HANDOFF_BATCHES 5

/* The clock c in ns (0 if it cannot be read: never for these clocks on Linux). */
static long long clock_ns(clockid_t c) {
    struct timespec t = {0, 0};
    (void)clock_gettime(c, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Runs the fixed loop; *wall_ns and *cpu_ns get its wall and thread CPU time. */
static void spin(long long *wall_ns, long long *cpu_ns) {
    volatile uint64_t sink;
    uint64_t x = 88172645463325252ULL;
    long long w0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (unsigned long i = 0; i < CALIB_SPIN_ITERS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    sink = x;
    (void)sink;
    *cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    *wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
}

/* The two eventfds of the hand-off: ping (main thread to echoer), pong (back). */
static int ping_fd = -1, pong_fd = -1;

/* Blocks until fd is signalled, then consumes it; 0, or -1 on a read error. */
static int wait_fd(int fd) {
    uint64_t v;
    for (;;) {
        ssize_t n = read(fd, &v, sizeof v);
        if (n == (ssize_t)sizeof v) return 0;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

/* Signals fd; 0, or -1 on a write error. */
static int signal_fd(int fd) {
    uint64_t one = 1;
    for (;;) {
        ssize_t n = write(fd, &one, sizeof one);
        if (n == (ssize_t)sizeof one) return 0;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

/* The echoer: answers every ping with a pong, for all the batches' rounds. */
static void *echoer(void *arg) {
    (void)arg;
    for (long i = 0; i < (long)CALIB_HANDOFF_ROUNDS * CALIB_HANDOFF_BATCHES; i++)
        if (wait_fd(ping_fd) != 0 || signal_fd(pong_fd) != 0) return (void *)1;
    return NULL;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* The median batch's µs per round trip into *us; 0, or -1 with the reason on stderr. */
static int handoff(double *us) {
    long long batch[CALIB_HANDOFF_BATCHES];
    pthread_t t;
    void *tr = NULL;
    int e, rc = 0;
    ping_fd = eventfd(0, EFD_CLOEXEC);
    pong_fd = eventfd(0, EFD_CLOEXEC);
    if (ping_fd < 0 || pong_fd < 0) {
        fprintf(stderr, "calibrate: eventfd: %s\n", strerror(errno));
        rc = -1;
        goto out;
    }
    if ((e = pthread_create(&t, NULL, echoer, NULL)) != 0) {
        fprintf(stderr, "calibrate: starting the echoer: %s\n", strerror(e));
        rc = -1;
        goto out;
    }
    for (int b = 0; b < CALIB_HANDOFF_BATCHES && rc == 0; b++) {
        long long t0 = clock_ns(CLOCK_MONOTONIC);
        for (long i = 0; i < CALIB_HANDOFF_ROUNDS; i++) {
            if (signal_fd(ping_fd) != 0 || wait_fd(pong_fd) != 0) {
                fprintf(stderr, "calibrate: eventfd: %s\n", strerror(errno));
                rc = -1; /* the echoer then waits for pings that never come: */
                break;   /* it is not joined (exit ends it) */
            }
        }
        batch[b] = clock_ns(CLOCK_MONOTONIC) - t0;
    }
    if (rc == 0) {
        if ((e = pthread_join(t, &tr)) != 0 || tr != NULL) {
            fprintf(stderr, "calibrate: the echoer failed\n");
            rc = -1;
        } else {
            qsort(batch, CALIB_HANDOFF_BATCHES, sizeof batch[0], cmp_ll);
            *us = (double)batch[CALIB_HANDOFF_BATCHES / 2] / CALIB_HANDOFF_ROUNDS / 1000.0;
        }
    }
out:
    if (rc == 0) { /* a failed run exits with the echoer still blocked on its fd */
        if (ping_fd >= 0) close(ping_fd);
        if (pong_fd >= 0) close(pong_fd);
    }
    return rc;
}

int main(int argc, char **argv) {
    const char *label = "calibration";
    long long wall, cpu;
    double us = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--label") && i + 1 < argc && argv[i + 1][0] &&
            strspn(argv[i + 1], "abcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(argv[i + 1])) {
            label = argv[++i];
        } else {
            fprintf(stderr, "calibrate: usage: calibrate [--label NAME] (NAME: a-z, 0-9, - and _)\n");
            return 2;
        }
    }
    spin(&wall, &cpu);
    if (handoff(&us) != 0) return 1;
    printf("{\"label\":\"%s\",\"spin_ms\":%.1f,\"spin_cpu_ms\":%.1f,\"handoff_us\":%.2f}\n", label,
           (double)wall / 1e6, (double)cpu / 1e6, us);
    return 0;
}
