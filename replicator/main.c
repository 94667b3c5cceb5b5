/* main.c -- tern-replicator: receives peers' batches on a ROUTER socket (CURVE server,
 * peers authenticated by zap.c) and applies them with receiver.c.
 *
 * Start-up: config validated first (error: one line, exit 1); Redis and the store are
 * reached; the ZAP handler starts before the socket binds (libzmq lets every client in
 * when no handler is bound); READY=1 once bound.
 * Stop (SIGTERM/SIGINT): the batch in hand is finished and acknowledged, then exit 0.
 * Reload (SIGHUP): a valid new config replaces the running one (repl_reload); a bad one
 * is logged and the old config stays.
 * Threading: main thread (socket, receiver) and the ZAP thread. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cfg.h"
#include "daemon.h"
#include "log.h"
#include "replicator.h"
#include "wire.h"

/* zmq_bind, tried again while the address is in use for up to REPL_BIND_WAIT_MS: a TCP
 * endpoint just unbound (a reload) is closed by ZeroMQ's I/O thread after zmq_unbind has
 * returned. 0, or -1 with errno set. */
static int repl_bind(void *s, const char *endpoint) {
    for (long waited = 0;; waited += 20) {
        if (zmq_bind(s, endpoint) == 0) return 0;
        if (errno != EADDRINUSE || waited >= REPL_BIND_WAIT_MS) return -1;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *repl_socket(void *zctx, const cfg_region *cfg, char *err, size_t errlen) {
    int one = 1, linger = 1000, hb_ivl = 1000, hb_ttl = 3000; /* linger: the last acks leave on stop */
    int64_t maxmsg = (int64_t)WIRE_MAX_FRAME * 2; /* frames above WIRE_MAX_FRAME are counted by the decoder */
    void *s = zmq_socket(zctx, ZMQ_ROUTER);
    if (!s) goto fail;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl) != 0 ||
        zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hb_ttl, sizeof hb_ttl) != 0)
        goto fail;
    if (cfg->curve.enabled) {
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, cfg->curve.secret_key, 41) != 0 ||
            zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "tern", 4) != 0)
            goto fail;
    }
    if (repl_bind(s, cfg->replicator.listen) != 0) {
        snprintf(err, errlen, "replicator.listen %s: %s", cfg->replicator.listen, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
fail:
    snprintf(err, errlen, "ROUTER socket: %s", zmq_strerror(errno));
    if (s) zmq_close(s);
    return NULL;
}

/* /healthz fails when the main loop has not turned, nor a store or Redis call of its
 * begun (their beacons), for REPL_STALL_MS plus the longest wait on one of them
 * (daemon_wait_max_ms) */

static atomic_llong repl_loop_at;  /* monotonic ms of the main loop's last turn or call */
static atomic_llong repl_stall_ms; /* REPL_STALL_MS + daemon_wait_max_ms of the running config */

/* The main thread's new handles report their calls to repl_loop_at; the stall limit
 * follows cfg. */
static void repl_beacons(const cfg_region *cfg, store *s, state *st) {
    store_set_beacon(s, &repl_loop_at);
    state_set_beacon(st, &repl_loop_at);
    atomic_store(&repl_stall_ms, REPL_STALL_MS + daemon_wait_max_ms(cfg));
}

/* receiver_drain's sign of life: the main thread waits for the apply workers, which are
 * still finishing changes. */
static void repl_alive(void) {
    atomic_store(&repl_loop_at, daemon_mono_ms());
    if (daemon_watchdog_ms() > 0) daemon_notify("WATCHDOG=1");
}

static int repl_health(void *ud, char *reason, size_t len) {
    long long age = daemon_mono_ms() - atomic_load(&repl_loop_at);
    (void)ud;
    if (age > atomic_load(&repl_stall_ms)) {
        snprintf(reason, len, "main loop stalled for %lld ms", age);
        return 0;
    }
    return 1;
}

/* SIGHUP: a valid, compatible config replaces the running one between two batches: new
 * store and Redis handles, the ZAP allow-list swapped (peers' keys) before any new socket
 * listens, the socket rebuilt only if the listen endpoint or this region's key changed,
 * the receiver pointed at them. A session opened with a peer key the new config no longer
 * lists stays connected, but its frames are refused from then on (repl_peer_of).
 * On a failure the daemon keeps the old config (0); if even the old apply pool cannot be
 * rebuilt, the new config stays in the running handles and it returns -1: the daemon
 * exits. It returns -1 too, the old config kept, when the new endpoint could not be
 * bound and the old one could not be bound again (listening nowhere). Everything is owned
 * by main's locals passed in. */
typedef struct {
    cfg_region **cfg;
    store **s;
    state **st;
    void *zctx;
    zap_handler **zap;
    void **sock;
    receiver *rcv;
} repl_parts;

static int repl_reload(const char *path, repl_parts *p) {
    char err[1024];
    int rc = 0;
    cfg_region *n, *old = *p->cfg;
    store *ns = NULL;
    state *nst = NULL;
    void *nsock = NULL;
    int rebind, deaf = 0;
    daemon_notify("RELOADING=1");
    n = daemon_reload_config(old, path);
    if (!n) goto done;
    if (!(ns = daemon_store_new(n, err, sizeof err)) || !(nst = daemon_state_new(n, err, sizeof err))) goto fail;
    daemon_check_redis(nst); /* perhaps another Redis */
    receiver_drain(p->rcv, *p->sock, repl_alive); /* what is in the pool is applied, saved and acknowledged */
    if (receiver_reconfigure(p->rcv, n, ns, nst, err, sizeof err) != 0) goto fail; /* old pool kept */
    /* a new socket only when the endpoint or this region's key changed; the old one stops
     * listening first (zmq_unbind; ZeroMQ's I/O thread closes the listener a moment later,
     * so a bind of the same address tries again while it is in use: repl_bind) */
    rebind = strcmp(n->replicator.listen, old->replicator.listen) != 0 ||
             strcmp(n->curve.secret_key, old->curve.secret_key) != 0;
    zap_set_config(*p->zap, n);
    if (rebind) {
        /* unbound by the endpoint ZeroMQ resolved (a "*" in replicator.listen is bound as
         * 0.0.0.0 and cannot be unbound by its own text): the socket's only one */
        char bound[256] = "";
        size_t blen = sizeof bound;
        if (zmq_getsockopt(*p->sock, ZMQ_LAST_ENDPOINT, bound, &blen) != 0 || !*bound ||
            zmq_unbind(*p->sock, bound) != 0) {
            snprintf(err, sizeof err, "unbinding %s: %s", old->replicator.listen,
                     *bound ? zmq_strerror(errno) : "the socket has no bound endpoint");
            goto revert;
        }
        if (!(nsock = repl_socket(p->zctx, n, err, sizeof err))) {
            if (repl_bind(*p->sock, old->replicator.listen) != 0) {
                /* listening nowhere: not a daemon to keep running (peers would wait on it
                 * while it looked healthy); its service manager starts it again */
                size_t len = strlen(err);
                snprintf(err + len, sizeof err - len, "; and cannot listen on %s again: %s",
                         old->replicator.listen, zmq_strerror(errno));
                deaf = 1;
            }
            goto revert;
        }
        zmq_close(*p->sock);
        *p->sock = nsock;
    }
    store_free(*p->s);
    state_free(*p->st);
    cfg_free(old);
    *p->cfg = n;
    *p->s = ns;
    *p->st = nst;
    repl_beacons(n, ns, nst);
    log_set_level(n->log_level);
    log_info(NULL, "reload: config %s applied: listen %s, %zu peer(s), %zu table(s), log level %s", path,
             n->replicator.listen, n->n_peers, n->n_tables, log_level_name(n->log_level));
    goto done;
revert:
    zap_set_config(*p->zap, old);
    {
        char e2[256];
        if (receiver_reconfigure(p->rcv, old, *p->s, *p->st, e2, sizeof e2) != 0) {
            /* the receiver runs on the new config and handles: they become the running ones
             * (freeing them would leave it pointing at freed memory), and the daemon exits for
             * its service manager to start it cleanly */
            log_error(NULL, "reload: %s, and cannot return to the running config's apply pool: %s; exiting",
                      err, e2);
            zap_set_config(*p->zap, n);
            store_free(*p->s);
            state_free(*p->st);
            cfg_free(old);
            *p->cfg = n;
            *p->s = ns;
            *p->st = nst;
            repl_beacons(n, ns, nst);
            rc = -1;
            goto done;
        }
    }
fail:
    if (deaf) {
        log_error(NULL, "reload: %s; exiting", err);
        rc = -1;
    } else {
        log_error(NULL, "reload: %s; keeping the running config", err);
    }
    store_free(ns);
    state_free(nst);
    cfg_free(n);
done:
    if (rc == 0) daemon_notify("READY=1");
    return rc;
}

/* The peer region of a CURVE connection from its ZAP User-Id "<region> <public key>"
 * (zap.c), copied into region (CFG_REGION_MAX + 1): 0 while the running config still lists
 * that key for that region, -1 when not (the key was replaced or the peer removed by a
 * reload since the handshake; region is still filled, for the log). */
static int repl_peer_of(const cfg_region *cfg, const char *uid, char *region) {
    const char *sp = strchr(uid, ' ');
    size_t n = sp ? (size_t)(sp - uid) : strlen(uid);
    const cfg_peer *p;
    snprintf(region, CFG_REGION_MAX + 1, "%.*s", (int)(n <= CFG_REGION_MAX ? n : CFG_REGION_MAX), uid);
    p = sp ? cfg_peer_find(cfg, region) : NULL;
    return p && strcmp(p->public_key, sp + 1) == 0 ? 0 : -1;
}

/* Receives one ROUTER message (routing id + frame) and hands it to the receiver. */
static void repl_recv(void *sock, receiver *rcv, const cfg_region *cfg) {
    zmq_msg_t rid, frame;
    char region[CFG_REGION_MAX + 1];
    const char *peer = NULL; /* the authenticated peer region (CURVE), else NULL */
    zmq_msg_init(&rid);
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&rid, sock, ZMQ_DONTWAIT) < 0) goto out;
    if (!zmq_msg_more(&rid)) {
        receiver_reject(rcv, "parts", NULL, "message without a routing id");
        goto out;
    }
    if (zmq_msg_recv(&frame, sock, 0) < 0) goto out;
    if (cfg->curve.enabled) {
        const char *uid = zmq_msg_gets(&frame, "User-Id");
        if (!uid || !*uid) {
            receiver_reject(rcv, "unauthenticated", NULL, "no authenticated peer on this connection");
            goto drain;
        }
        if (repl_peer_of(cfg, uid, region) != 0) {
            receiver_reject(rcv, "revoked", region, "the connection authenticated with a key that the config no "
                            "longer lists for this peer (replaced or removed by a reload); the peer must connect "
                            "again with its current key");
            goto drain;
        }
        peer = region;
    }
    if (zmq_msg_more(&frame)) {
        receiver_reject(rcv, "parts", peer, "a message of more than one frame");
        goto drain;
    }
    receiver_frame(rcv, sock, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&frame), zmq_msg_size(&frame),
                   peer);
    goto out;
drain:
    while (zmq_msg_more(&frame)) {
        zmq_msg_close(&frame);
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, sock, 0) < 0) goto out;
    }
out:
    zmq_msg_close(&rid);
    zmq_msg_close(&frame);
}

int main(int argc, char **argv) {
    const char *path = NULL;
    char err[1024], status[128];
    cfg_region *cfg;
    void *zctx = NULL, *sock = NULL;
    zap_handler *zap = NULL;
    store *s = NULL;
    state *st = NULL;
    receiver *rcv = NULL;
    metrics_registry *reg = NULL;
    metrics_server *msrv = NULL;
    int rc, exit_code = 1;
    long wd_ms;
    long long last_hk = 0, last_wd = 0;

    rc = daemon_parse_args(argc, argv, "tern-replicator",
                           "Receives peer regions' changes and applies the last writer's version to the local table.",
                           &path);
    if (rc) return rc == 1 ? 0 : 2;
    cfg = cfg_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "tern-replicator: %s\n", err);
        return 1;
    }
    log_init(cfg->region, cfg->log_level);
    daemon_signals_install();
    log_info(NULL, "tern-replicator %s starting: listen %s, %zu peer(s), config %s", TERN_VERSION,
             cfg->replicator.listen, cfg->n_peers, path);
    if (!cfg->curve.enabled)
        log_warn(NULL, "CURVE is disabled by the config: peers are not authenticated and links are not encrypted");
    s = daemon_store_new(cfg, err, sizeof err);
    if (!s) goto fail;
    st = daemon_state_new(cfg, err, sizeof err);
    if (!st) goto fail;
    daemon_check_redis(st);
    rcv = receiver_new(cfg, s, st, err, sizeof err);
    if (!rcv) goto fail;
    repl_beacons(cfg, s, st);
    atomic_store(&repl_loop_at, daemon_mono_ms());
    reg = metrics_new();
    if (!reg || receiver_set_metrics(rcv, reg, err, sizeof err) != 0) goto fail;
    msrv = daemon_metrics_start(reg, cfg->replicator.metrics_port, repl_health, NULL, err, sizeof err);
    if (!msrv) goto fail;
    zctx = zmq_ctx_new();
    if (!zctx) {
        snprintf(err, sizeof err, "zmq_ctx_new failed");
        goto fail;
    }
    if (cfg->curve.enabled && !(zap = zap_start(zctx, cfg, err, sizeof err))) goto fail;
    sock = repl_socket(zctx, cfg, err, sizeof err);
    if (!sock) goto fail;
    log_info(NULL, "ready");
    daemon_notify("READY=1\nSTATUS=listening on %s", cfg->replicator.listen);
    wd_ms = daemon_watchdog_ms();
    while (!daemon_stop_requested()) {
        /* frames (unless the apply pool is full) and the pool's finished changes */
        zmq_pollitem_t it[2] = {{sock, 0, receiver_busy(rcv) ? 0 : ZMQ_POLLIN, 0},
                                {NULL, pool_fd(receiver_pool(rcv)), ZMQ_POLLIN, 0}};
        long long now;
        int n = zmq_poll(it, 2, REPL_POLL_MS);
        if (n < 0 && errno != EINTR) {
            log_error(NULL, "zmq_poll: %s", zmq_strerror(errno));
            goto out;
        }
        if (n > 0 && (it[1].revents & ZMQ_POLLIN)) receiver_progress(rcv, sock);
        if (n > 0 && (it[0].revents & ZMQ_POLLIN)) repl_recv(sock, rcv, cfg);
        if (daemon_reload_requested()) {
            repl_parts parts = {&cfg, &s, &st, zctx, &zap, &sock, rcv};
            if (repl_reload(path, &parts) != 0) goto out; /* exit_code stays 1 */
        }
        now = daemon_mono_ms();
        atomic_store(&repl_loop_at, now);
        if (now - last_hk >= REPL_HOUSEKEEP_MS) {
            store_stats hs[33];
            size_t nh = pool_stats(receiver_pool(rcv), hs, 32);
            store_get_stats(s, &hs[nh++]); /* the main thread's own handle */
            daemon_metrics_store_stats(reg, "table", hs, nh);
            snprintf(status, sizeof status, "listening on %s", cfg->replicator.listen);
            receiver_progress(rcv, sock); /* also retries a save that failed */
            receiver_housekeep(rcv, zap_take_refused(zap), status);
            last_hk = now;
        }
        if (wd_ms > 0 && now - last_wd >= wd_ms / 2) {
            daemon_notify("WATCHDOG=1");
            last_wd = now;
        }
    }
    daemon_notify("STOPPING=1");
    receiver_drain(rcv, sock, repl_alive); /* changes in the pool are finished, saved and acknowledged */
    receiver_housekeep(rcv, zap_take_refused(zap), "stopping");
    log_info(NULL, "stopped");
    exit_code = 0;
    goto out;
fail:
    log_error(NULL, "%s", err);
out:
    metrics_server_stop(msrv);
    if (sock) zmq_close(sock);
    zap_stop(zap);
    if (zctx) zmq_ctx_term(zctx);
    receiver_free(rcv);
    metrics_free(reg);
    state_free(st);
    store_free(s);
    cfg_free(cfg);
    return exit_code;
}
