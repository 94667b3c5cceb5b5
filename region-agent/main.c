/* main.c -- tern-region-agent: composes the tailer and shipper threads (agent.h) with
 * the config, logging, signals and service-manager notification (daemon.h).
 *
 * Start-up: the config is validated first (any error: one line naming file, field and
 * reason, exit 1); then the shipper binds the notify socket and connects to peers, the
 * tailer finds each table's stream; READY=1 is sent once both are up.
 * Stop (SIGTERM/SIGINT): the tailer finishes the batch in hand and exits; the shipper
 * waits up to AGENT_DRAIN_MS for outstanding acknowledgements, saves them, exits 0.
 * Reload (SIGHUP): the new config is validated; a bad one (or one changing what cannot
 * change while running: daemon_reload_config) is logged and the old one stays; a good one
 * restarts the tailer and the shipper with it (agent_reload). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "agent.h"
#include "cfg.h"
#include "daemon.h"
#include "log.h"
#include "state.h"

static void *agent_tailer_thread(void *arg) {
    tailer_run(arg);
    return NULL;
}

static void *agent_shipper_thread(void *arg) {
    shipper_run(arg);
    return NULL;
}

/* Both threads turned their loops, or began a call to the store or Redis, within
 * stall_ms, and nothing failed. Called from the main and the metrics threads. */
static int agent_alive(agent_ctx *a, char *reason, size_t len) {
    long long now = daemon_mono_ms(), t = now - atomic_load(&a->tailer_beat), s = now - atomic_load(&a->shipper_beat);
    if (atomic_load(&a->failed)) {
        snprintf(reason, len, "a thread failed (see the log)");
        return 0;
    }
    if (!atomic_load(&a->tailer_ready) || !atomic_load(&a->shipper_ready)) {
        snprintf(reason, len, "starting");
        return 0;
    }
    long long limit = atomic_load(&a->stall_ms);
    if (t > limit || s > limit) {
        snprintf(reason, len, "stalled: tailer loop %lld ms ago, shipper loop %lld ms ago", t, s);
        return 0;
    }
    return 1;
}

static int agent_health(void *ud, char *reason, size_t len) { return agent_alive(ud, reason, len); }

static int agent_metrics(agent_ctx *a, char *err, size_t errlen) {
    static const char *const table_kind[] = {"table", "kind", NULL}, *const peer_table[] = {"peer", "table", NULL};
    static const char *const peer[] = {"peer", NULL}, *const table[] = {"table", NULL};
    static const char *const peer_table_from[] = {"peer", "table", "from", NULL};
    static const char *const peer_reason[] = {"peer", "reason", NULL};
    a->reg = metrics_new();
    if (!a->reg) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->m_changes = metrics_counter_new(a->reg, "tern_agent_changes_total",
                                       "Stream records by kind: local (versioned and shipped), echo (a Tern write, "
                                       "not shipped), repaired, invalid (cannot be shipped)", table_kind, err, errlen);
    a->m_shipped = metrics_counter_new(a->reg, "tern_agent_shipped_changes_total",
                                       "Changes sent to a peer, resends included", peer_table, err, errlen);
    a->m_resent = metrics_counter_new(a->reg, "tern_agent_resent_batches_total",
                                      "Batches sent again after a timeout, a refusal or a dropped connection", peer_table, err, errlen);
    a->m_batches = metrics_counter_new(a->reg, "tern_agent_batches_total",
                                       "Batches sent to a peer, by where their changes were read: memory (the "
                                       "tailer's commits, handed over) or redis (the change log)",
                                       peer_table_from, err, errlen);
    a->m_inflight = metrics_gauge_new(a->reg, "tern_agent_inflight_batches",
                                      "Batches sent to a peer and not yet acknowledged", peer_table, err, errlen);
    a->m_connected = metrics_gauge_new(a->reg, "tern_agent_peer_connected",
                                       "1 if the last send to the peer went through", peer, err, errlen);
    a->m_trimmed = metrics_counter_new(a->reg, "tern_agent_trimmed_alarms_total",
                                       "TrimmedDataAccessException: stream records lost before they were read",
                                       table, err, errlen);
    a->m_rejected = metrics_counter_new(a->reg, "tern_agent_rejected_replies_total",
                                        "Replies of a peer refused, by reason: a decoding failure (as the "
                                        "replicator's rej reasons), source, table or type (an ack not for this "
                                        "region's tables, or not an ack), beyond_log (an ack past the change log)",
                                        peer_reason, err, errlen);
    return a->m_changes && a->m_shipped && a->m_resent && a->m_batches && a->m_inflight && a->m_connected &&
                   a->m_trimmed && a->m_rejected
               ? 0
               : -1;
}

/* Frees the hand-off queue, with what is left in it (both threads joined). */
static void agent_handoff_free(agent_ctx *a) {
    logcache_queue_free(a->handoff);
    a->handoff = NULL;
}

/* Starts the shipper (which binds the notify socket) and then the tailer. 0/-1; on -1
 * no thread is left running. */
static int agent_start(agent_ctx *a, pthread_t *tt, pthread_t *st) {
    a->handoff = logcache_queue_new(a->cfg->n_tables);
    if (!a->handoff) {
        log_error(NULL, "out of memory");
        return -1;
    }
    snprintf(a->notify_ep, sizeof a->notify_ep, "%s%u", AGENT_NOTIFY_PREFIX, ++a->starts);
    atomic_store(&a->stop_reading, 0);
    atomic_store(&a->stop, 0);
    atomic_store(&a->tailer_ready, 0);
    atomic_store(&a->shipper_ready, 0);
    atomic_store(&a->tailer_beat, daemon_mono_ms());
    atomic_store(&a->shipper_beat, daemon_mono_ms());
    atomic_store(&a->stall_ms, AGENT_STALL_MS + daemon_wait_max_ms(a->cfg));
    if (pthread_create(st, NULL, agent_shipper_thread, a) != 0) {
        log_error(NULL, "cannot start the shipper thread");
        agent_handoff_free(a);
        return -1;
    }
    daemon_name_thread(*st, "tern-shipper");
    while (!atomic_load(&a->shipper_ready) && !atomic_load(&a->failed)) daemon_sleep_ms(5);
    if (atomic_load(&a->failed)) { /* the shipper logged why and is on its way out */
        pthread_join(*st, NULL);
        agent_handoff_free(a);
        return -1;
    }
    if (pthread_create(tt, NULL, agent_tailer_thread, a) != 0) {
        log_error(NULL, "cannot start the tailer thread");
        atomic_store(&a->failed, 1);
        pthread_join(*st, NULL);
        agent_handoff_free(a);
        return -1;
    }
    daemon_name_thread(*tt, "tern-tailer");
    return 0;
}

/* The tailer finishes the batch in hand; then the shipper drains acknowledgements
 * (at most AGENT_DRAIN_MS) and saves them. */
static void agent_stop(agent_ctx *a, pthread_t tt, pthread_t st) {
    atomic_store(&a->stop_reading, 1);
    pthread_join(tt, NULL);
    atomic_store(&a->stop, 1);
    pthread_join(st, NULL);
    agent_handoff_free(a);
}

/* SIGHUP: a valid, compatible config replaces the running one by a graceful restart of
 * both threads (checkpoints, the change log and acknowledgements are in Redis, so they
 * resume where they were). Returns 1 if the threads were restarted with the new config,
 * 0 if the running config stays, -1 if the threads could not be restarted. */
static int agent_reload(agent_ctx *a, cfg_region **cfg, const char *path, pthread_t *tt, pthread_t *st) {
    cfg_region *n;
    daemon_notify("RELOADING=1");
    n = daemon_reload_config(*cfg, path);
    if (n) {
        /* the threads would fail on start with an unreachable Redis (a changed password,
         * say): try it before stopping anything */
        char err[512];
        state *probe = daemon_state_new(n, err, sizeof err);
        if (!probe) {
            log_error(NULL, "reload: %s: %s; keeping the running config", path, err);
            cfg_free(n);
            n = NULL;
        }
        state_free(probe);
    }
    if (!n) {
        daemon_notify("READY=1");
        return 0;
    }
    log_info(NULL, "reload: restarting the tailer and the shipper with %s", path);
    agent_stop(a, *tt, *st);
    a->cfg = n;
    cfg_free(*cfg);
    *cfg = n;
    log_set_level(n->log_level);
    if (agent_start(a, tt, st) != 0) {
        log_error(NULL, "reload: cannot restart the tailer and the shipper (see above); exiting for the "
                  "service manager to restart the agent");
        return -1;
    }
    log_info(NULL, "reload: config %s applied: %zu table(s), %zu peer(s), log level %s", path, n->n_tables,
             n->n_peers, log_level_name(n->log_level));
    return 1;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    char err[1024];
    cfg_region *cfg;
    agent_ctx a;
    pthread_t tt, st;
    metrics_server *msrv = NULL;
    int rc, ready = 0, exit_code = 0, starved = 0;
    long wd_ms;
    long long last_wd = 0;

    rc = daemon_parse_args(argc, argv, "tern-region-agent",
                           "Tails the region's DynamoDB Streams and ships each local change to every peer region.",
                           &path);
    if (rc) return rc == 1 ? 0 : 2;
    cfg = cfg_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "tern-region-agent: %s\n", err);
        return 1;
    }
    log_init(cfg->region, cfg->log_level);
    daemon_signals_install();
    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    pthread_mutex_init(&a.status_mu, NULL);
    atomic_store(&a.tailer_beat, daemon_mono_ms());
    atomic_store(&a.shipper_beat, daemon_mono_ms());
    if (agent_metrics(&a, err, sizeof err) != 0 ||
        !(msrv = daemon_metrics_start(a.reg, cfg->agent.metrics_port, agent_health, &a, err, sizeof err))) {
        log_error(NULL, "metrics: %s", err);
        metrics_free(a.reg);
        cfg_free(cfg);
        return 1;
    }
    a.zctx = zmq_ctx_new();
    if (!a.zctx) {
        log_error(NULL, "zmq_ctx_new failed");
        cfg_free(cfg);
        return 1;
    }
    log_info(NULL, "tern-region-agent %s starting: %zu table(s), %zu peer(s), config %s", TERN_VERSION,
             cfg->n_tables, cfg->n_peers, path);
    if (agent_start(&a, &tt, &st) != 0) return 1;
    wd_ms = daemon_watchdog_ms();
    while (!atomic_load(&a.failed)) {
        long long now = daemon_mono_ms();
        if (daemon_stop_requested()) break;
        if (daemon_reload_requested()) {
            int r = agent_reload(&a, &cfg, path, &tt, &st);
            if (r < 0) { /* no thread is running any more */
                metrics_server_stop(msrv);
                metrics_free(a.reg);
                cfg_free(cfg);
                return 1;
            }
            if (r == 1) ready = 0; /* restarted: READY=1 again once both threads are ready */
        }
        if (!ready && atomic_load(&a.tailer_ready) && atomic_load(&a.shipper_ready)) {
            ready = 1;
            log_info(NULL, "ready");
            daemon_notify("READY=1\nSTATUS=replicating");
        }
        if (wd_ms > 0 && now - last_wd >= wd_ms / 2) {
            /* fed only while both threads turn: a hung thread gets the daemon restarted. A
             * check that fails is made again at every turn (50 ms), so that a thread that
             * turns again is fed at once, not half a period later (close to the limit) */
            char why[128], status[256];
            if (!ready || agent_alive(&a, why, sizeof why)) {
                pthread_mutex_lock(&a.status_mu);
                memcpy(status, a.status, sizeof status);
                pthread_mutex_unlock(&a.status_mu);
                daemon_notify("WATCHDOG=1\nSTATUS=%s", status);
                if (starved) log_info(NULL, "feeding the watchdog again");
                starved = 0;
                last_wd = now;
            } else if (!starved) {
                log_error(NULL, "not feeding the watchdog: %s", why);
                starved = 1;
            }
        }
        daemon_sleep_ms(50);
    }
    if (atomic_load(&a.failed)) exit_code = 1;
    daemon_notify("STOPPING=1");
    log_info(NULL, "stopping: finishing the batch in hand, waiting for acknowledgements");
    agent_stop(&a, tt, st);
    zmq_ctx_term(a.zctx);
    metrics_server_stop(msrv);
    metrics_free(a.reg);
    pthread_mutex_destroy(&a.status_mu);
    log_info(NULL, "stopped");
    cfg_free(cfg);
    return exit_code;
}
