/* main.c -- tern-region-agent: composes the tailer and shipper threads (agent.h) with
 * the config, logging, signals and service-manager notification (daemon.h).
 *
 * Start-up: the config is validated first (any error: one line naming file, field and
 * reason, exit 1); then the shipper binds the notify socket and connects to peers, the
 * tailer finds each table's stream; READY=1 is sent once both are up.
 * Stop (SIGTERM/SIGINT): the tailer finishes the batch in hand and exits; the shipper
 * waits up to AGENT_DRAIN_MS for outstanding acknowledgements, saves them, exits 0.
 * Reload (SIGHUP): the new config is validated; a bad one is logged and the old one
 * stays; the log level is applied at once. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "agent.h"
#include "cfg.h"
#include "daemon.h"
#include "log.h"

static void *agent_tailer_thread(void *arg) {
    tailer_run(arg);
    return NULL;
}

static void *agent_shipper_thread(void *arg) {
    shipper_run(arg);
    return NULL;
}

static void agent_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void agent_reload(const char *path) {
    char err[1024];
    cfg_region *n;
    daemon_notify("RELOADING=1");
    n = cfg_load(path, err, sizeof err);
    if (!n) {
        log_error(NULL, "reload: %s; keeping the running config", err);
    } else {
        log_set_level(n->log_level);
        log_info(NULL, "reload: config %s is valid; log level %s applied", path, log_level_name(n->log_level));
        cfg_free(n);
    }
    daemon_notify("READY=1");
}

int main(int argc, char **argv) {
    const char *path = NULL;
    char err[1024];
    cfg_region *cfg;
    agent_ctx a;
    pthread_t tt, st;
    int rc, ready = 0, exit_code = 0;
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
    a.zctx = zmq_ctx_new();
    if (!a.zctx) {
        log_error(NULL, "zmq_ctx_new failed");
        cfg_free(cfg);
        return 1;
    }
    log_info(NULL, "tern-region-agent %s starting: %zu table(s), %zu peer(s), config %s", TERN_VERSION,
             cfg->n_tables, cfg->n_peers, path);
    if (pthread_create(&st, NULL, agent_shipper_thread, &a) != 0) {
        log_error(NULL, "cannot start the shipper thread");
        return 1;
    }
    while (!atomic_load(&a.shipper_ready) && !atomic_load(&a.failed)) agent_sleep_ms(5);
    if (pthread_create(&tt, NULL, agent_tailer_thread, &a) != 0) {
        log_error(NULL, "cannot start the tailer thread");
        atomic_store(&a.failed, 1);
        pthread_join(st, NULL);
        return 1;
    }
    wd_ms = daemon_watchdog_ms();
    while (!atomic_load(&a.failed)) {
        long long now = daemon_mono_ms();
        if (daemon_stop_requested()) break;
        if (daemon_reload_requested()) agent_reload(path);
        if (!ready && atomic_load(&a.tailer_ready) && atomic_load(&a.shipper_ready)) {
            ready = 1;
            log_info(NULL, "ready");
            daemon_notify("READY=1\nSTATUS=replicating");
        }
        if (wd_ms > 0 && now - last_wd >= wd_ms / 2) {
            daemon_notify("WATCHDOG=1\nSTATUS=%s", a.status);
            last_wd = now;
        }
        agent_sleep_ms(50);
    }
    if (atomic_load(&a.failed)) exit_code = 1;
    daemon_notify("STOPPING=1");
    log_info(NULL, "stopping: finishing the batch in hand, waiting for acknowledgements");
    atomic_store(&a.stop_reading, 1);
    pthread_join(tt, NULL);
    atomic_store(&a.stop, 1);
    pthread_join(st, NULL);
    zmq_ctx_term(a.zctx);
    log_info(NULL, "stopped");
    cfg_free(cfg);
    return exit_code;
}
