/* daemon.h -- what both Tern daemons share around their modules: command line,
 * signals, service-manager notification, and building the store/Redis handles from
 * the region config.
 *
 * Signals: SIGTERM/SIGINT request a graceful stop; SIGHUP requests a reload; SIGPIPE is
 * ignored. The flags are async-signal-safe atomics read by the main loops.
 * sd_notify: compiled in when libsystemd was found (TERN_HAVE_SYSTEMD), otherwise the
 * calls do nothing and the daemons run in the foreground all the same. */
#ifndef TERN_DAEMON_H
#define TERN_DAEMON_H

#include <pthread.h>
#include <stddef.h>

#include "cfg.h"
#include "metrics.h"
#include "state.h"
#include "store.h"

/* Parses "--config FILE", "--help", "--version". Returns 0 to run, 1 when it printed
 * help/version (exit 0), 2 on a usage error (message printed; exit 2). *config is
 * borrowed from argv. */
int daemon_parse_args(int argc, char **argv, const char *prog, const char *summary,
                      const char **config);

void daemon_signals_install(void);
int daemon_stop_requested(void);
/* Returns 1 once per SIGHUP received. */
int daemon_reload_requested(void);

/* sd_notify(3) with a printf format (e.g. "READY=1\nSTATUS=%s"); no-op without
 * libsystemd or outside systemd. */
void daemon_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Watchdog period in ms from WATCHDOG_USEC (0 when not under a watchdog). */
long daemon_watchdog_ms(void);

/* SIGHUP: loads path again. Returns the new config (the caller frees it, and the old one
 * once nothing uses it) when it is valid and may replace cur in a running daemon: same
 * region, metrics ports and curve.enabled (everything else -- log level, peers' endpoints
 * and keys, tables, store, Redis, tunables -- is applied by restarting the daemon's
 * pipeline, whose state is durable in Redis). Otherwise logs why at error and returns NULL: the caller
 * keeps running with cur. */
cfg_region *daemon_reload_config(const cfg_region *cur, const char *path);

/* New store / Redis handles for the config's region; NULL + err. Caller frees. */
store *daemon_store_new(const cfg_region *cfg, char *err, size_t errlen);
/* The same for the DynamoDB Streams API (store.streams_endpoint). */
store *daemon_streams_new(const cfg_region *cfg, char *err, size_t errlen);
state *daemon_state_new(const cfg_region *cfg, char *err, size_t errlen);
/* Logs an error naming each Redis setting of st's server that Tern's guarantees need and
 * that is not so (state_check_durability); an info line when they cannot be read (CONFIG
 * refused, Redis not up yet). The daemons call it at start and reload and go on either
 * way. st is borrowed; nothing is allocated for the caller. */
void daemon_check_redis(state *st);
/* The longest a thread waits on one dependency, in ms, with the handles above: one store
 * attempt and a retry's backoff, or state_beacon_gap_max_ms (four times
 * redis.timeout_ms). A watchdog whose threads' handles have beacons
 * (store_set_beacon, state_set_beacon) allows this much on top of its stall limit. */
long long daemon_wait_max_ms(const cfg_region *cfg);

/* Monotonic and wall clocks in ms. */
long long daemon_mono_ms(void);
long long daemon_wall_ms(void);
/* Sleeps ms milliseconds (nothing for ms <= 0), resuming after a signal interrupts it. */
void daemon_sleep_ms(long long ms);

/* Names thread th (name: at most 15 characters, copied), as `top -H`, `ps -L` and
 * /proc/PID/task/TID/comm show it: "tern-tailer", "tern-apply-3". Best effort: a failure
 * is logged at debug and changes nothing else. */
void daemon_name_thread(pthread_t th, const char *name);

/* ---- metrics shared by both daemons ---- */

/* Creates the registry's store families (tern_store_requests_total{api},
 * tern_store_retries_total{api}, tern_store_errors_total{api,type},
 * tern_store_latency_ms_sum{api}/_count{api}) and starts serving /metrics and /healthz
 * on 127.0.0.1:port. Returns the server (stop with metrics_server_stop) or NULL + err.
 * reg stays the caller's. */
metrics_server *daemon_metrics_start(metrics_registry *reg, int port, metrics_health_fn health,
                                     void *ud, char *err, size_t errlen);
/* Adds what a store handle did since the last call for the same api label ("table" or
 * "streams") to the store families. Call from the thread that owns the handle; each api
 * label must be published from one thread only. */
void daemon_metrics_store(metrics_registry *reg, const char *api, const store *s);
/* The same for several handles, from statistics copied (store_get_stats) by the threads
 * that own them: stats[0..n) are summed. */
void daemon_metrics_store_stats(metrics_registry *reg, const char *api, const store_stats *stats, size_t n);

#endif
