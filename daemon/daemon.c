/* daemon.c -- command line, signals, sd_notify and handle construction shared by the
 * Tern daemons (see daemon.h).
 *
 * Owns: the process-wide stop and reload flags (set from signal handlers).
 * Threading: the flags are atomics; everything else is called from the main thread or
 * (daemon_store_new/daemon_state_new) from any thread, touching no shared state. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "daemon.h"

#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef TERN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define DAEMON_STORE_APIS 2              /* "table", "streams" */
#define DAEMON_STORE_RETRIES 3        /* store retries inside one call (daemons keep loops short) */
#define DAEMON_STORE_BACKOFF_CAP_MS 1000

static atomic_int daemon_stop_flag;
static atomic_int daemon_reload_flag;

int daemon_parse_args(int argc, char **argv, const char *prog, const char *summary, const char **config) {
    *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s --config FILE\n\n%s\n\n"
                   "  --config FILE   the region's config (JSON; see docs/config.md)\n"
                   "  --help          this text\n"
                   "  --version       print the version\n\n"
                   "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the config.\n",
                   prog, summary);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog, TERN_VERSION);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            *config = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            *config = argv[i] + 9;
            continue;
        }
        fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", prog, argv[i]);
        return 2;
    }
    if (!*config) {
        fprintf(stderr, "%s: --config FILE is required (try --help)\n", prog);
        return 2;
    }
    return 0;
}

static void daemon_on_signal(int sig) {
    if (sig == SIGHUP) atomic_store(&daemon_reload_flag, 1);
    else atomic_store(&daemon_stop_flag, 1);
}

void daemon_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = daemon_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int daemon_stop_requested(void) { return atomic_load(&daemon_stop_flag); }
int daemon_reload_requested(void) { return atomic_exchange(&daemon_reload_flag, 0); }

void daemon_notify(const char *fmt, ...) {
#ifdef TERN_HAVE_SYSTEMD
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sd_notify(0, buf);
#else
    (void)fmt;
#endif
}

long daemon_watchdog_ms(void) {
#ifdef TERN_HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0) return (long)(usec / 1000);
#endif
    return 0;
}

static store *daemon_store_at(const cfg_region *cfg, const char *endpoint, char *err, size_t errlen) {
    store_opts o;
    memset(&o, 0, sizeof o);
    o.endpoint = endpoint;
    o.region = cfg->store.signing_region;
    o.access_key_id = cfg->store.access_key_id;
    o.secret_access_key = cfg->store.secret_access_key;
    o.session_token = cfg->store.session_token;
    o.verify_tls = cfg->store.verify_tls ? STORE_TLS_VERIFY : STORE_TLS_NO_VERIFY;
    if (!cfg->store.verify_tls && strncmp(endpoint, "https:", 6) == 0)
        log_warn(NULL, "store.verify_tls is false: the certificate of %s is NOT verified", endpoint);
    o.timeout_ms = (int)cfg->store.timeout_ms;
    o.max_retries = DAEMON_STORE_RETRIES;
    o.backoff_cap_ms = DAEMON_STORE_BACKOFF_CAP_MS;
    return store_new(&o, err, errlen);
}

long long daemon_wait_max_ms(const cfg_region *cfg) {
    /* the options daemon_store_at gives the store: one attempt, then a retry's backoff */
    long long store_ms = cfg->store.timeout_ms + DAEMON_STORE_BACKOFF_CAP_MS,
              redis_ms = state_beacon_gap_max_ms(cfg->redis.timeout_ms);
    return store_ms > redis_ms ? store_ms : redis_ms;
}

cfg_region *daemon_reload_config(const cfg_region *cur, const char *path) {
    char err[1024];
    cfg_region *n = cfg_load(path, err, sizeof err);
    if (!n) {
        log_error(NULL, "reload: %s; keeping the running config", err);
        return NULL;
    }
    if (strcmp(n->region, cur->region) != 0) {
        log_error(NULL, "reload: %s: region: %s differs from the running %s; a region cannot change "
                  "while running (restart the daemon); keeping the running config", path, n->region, cur->region);
    } else if (n->agent.metrics_port != cur->agent.metrics_port ||
               n->replicator.metrics_port != cur->replicator.metrics_port) {
        log_error(NULL, "reload: %s: metrics_port: the metrics ports cannot change while running (restart the "
                  "daemon); keeping the running config", path);
    } else if (n->curve.enabled != cur->curve.enabled) {
        log_error(NULL, "reload: %s: curve.enabled cannot change while running (restart the daemon); keeping the "
                  "running config", path);
    } else {
        return n;
    }
    cfg_free(n);
    return NULL;
}

store *daemon_store_new(const cfg_region *cfg, char *err, size_t errlen) {
    return daemon_store_at(cfg, cfg->store.endpoint, err, errlen);
}

store *daemon_streams_new(const cfg_region *cfg, char *err, size_t errlen) {
    return daemon_store_at(cfg, cfg->store.streams_endpoint, err, errlen);
}

state *daemon_state_new(const cfg_region *cfg, char *err, size_t errlen) {
    state_opts o;
    memset(&o, 0, sizeof o);
    o.region = cfg->region;
    o.host = cfg->redis.host;
    o.port = cfg->redis.port;
    o.unix_socket = cfg->redis.unix_socket;
    o.password = cfg->redis.password;
    o.db = cfg->redis.db;
    o.timeout_ms = cfg->redis.timeout_ms;
    return state_new(&o, err, errlen);
}

void daemon_check_redis(state *st) {
    char msg[1024];
    int rc = state_check_durability(st, msg, sizeof msg);
    if (rc > 0)
        log_error(NULL, "Redis is not set up as Tern needs (docs/operations.md, section 1): %s", msg);
    else if (rc < 0)
        log_info(NULL, "cannot check Redis's durability settings (%s): make sure of appendonly yes, "
                 "appendfsync always and maxmemory-policy noeviction (docs/operations.md, section 1)", msg);
}

long long daemon_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void daemon_sleep_ms(long long ms) {
    struct timespec ts;
    if (ms <= 0) return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void daemon_name_thread(pthread_t th, const char *name) {
    int rc = pthread_setname_np(th, name);
    if (rc != 0) log_debug(NULL, "cannot name a thread %s: %s", name, strerror(rc));
}

long long daemon_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- metrics ---- */

static struct {
    metrics_family *requests, *retries, *errors, *lat_sum, *lat_count;
    store_stats last[DAEMON_STORE_APIS];   /* what was published, per api label */
} daemon_m;

metrics_server *daemon_metrics_start(metrics_registry *reg, int port, metrics_health_fn health,
                                     void *ud, char *err, size_t errlen) {
    static const char *const api[] = {"api", NULL}, *const api_type[] = {"api", "type", NULL};
    daemon_m.requests = metrics_counter_new(reg, "tern_store_requests_total",
                                            "HTTP requests to the table store, retries included", api, err, errlen);
    daemon_m.retries = metrics_counter_new(reg, "tern_store_retries_total",
                                           "Store requests retried after throttling or a transient error", api, err, errlen);
    daemon_m.errors = metrics_counter_new(reg, "tern_store_errors_total",
                                          "Store calls that ended in an error, by type", api_type, err, errlen);
    daemon_m.lat_sum = metrics_counter_new(reg, "tern_store_latency_ms_sum",
                                           "Total milliseconds spent in store requests", api, err, errlen);
    daemon_m.lat_count = metrics_counter_new(reg, "tern_store_latency_ms_count",
                                             "Store requests timed (the divisor of tern_store_latency_ms_sum)", api, err, errlen);
    if (!daemon_m.requests || !daemon_m.retries || !daemon_m.errors || !daemon_m.lat_sum || !daemon_m.lat_count)
        return NULL;
    return metrics_serve(reg, "127.0.0.1", port, health, ud, err, errlen);
}

void daemon_metrics_store(metrics_registry *reg, const char *api, const store *s) {
    store_stats one;
    if (!s) return;
    store_get_stats(s, &one);
    daemon_metrics_store_stats(reg, api, &one, 1);
}

void daemon_metrics_store_stats(metrics_registry *reg, const char *api, const store_stats *stats, size_t n) {
    store_stats now, *last;
    const char *labels[3] = {api, NULL, NULL};
    int i = strcmp(api, "streams") == 0;
    (void)reg;
    if (!daemon_m.requests) return;
    memset(&now, 0, sizeof now);
    for (size_t h = 0; h < n; h++) store_stats_add(&now, &stats[h]);
    last = &daemon_m.last[i];
    if (now.requests < last->requests) memset(last, 0, sizeof *last); /* new handles (reload) */
    metrics_inc_with(daemon_m.requests, labels, now.requests - last->requests);
    metrics_inc_with(daemon_m.retries, labels, now.retries - last->retries);
    metrics_inc_with(daemon_m.lat_count, labels, now.latency_count - last->latency_count);
    metrics_inc_with(daemon_m.lat_sum, labels, (uint64_t)(now.latency_sum_ms - last->latency_sum_ms + 0.5));
    for (int k = 1; k < STORE_STATUS_COUNT; k++) {
        if (now.status[k] == last->status[k]) continue;
        labels[1] = store_status_name((store_status)k);
        metrics_inc_with(daemon_m.errors, labels, now.status[k] - last->status[k]);
    }
    /* keep the sum's fraction: publish whole milliseconds, carry the rest */
    now.latency_sum_ms = last->latency_sum_ms + (double)(uint64_t)(now.latency_sum_ms - last->latency_sum_ms + 0.5);
    *last = now;
}
