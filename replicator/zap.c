/* zap.c -- ZeroMQ authentication handler for the replicator's CURVE server (ZAP,
 * https://rfc.zeromq.org/spec/27/).
 *
 * Owns: a REP socket on inproc://zeromq.zap.01, a thread, and the count of refused
 * handshakes. Invariants: only public keys listed in the config's peers are accepted;
 * every accepted connection's User-Id is "<peer region> <its public key>" (the receiver
 * refuses frames of a connection whose key a reload has replaced since); any other request
 * (other mechanism, unknown key, malformed request) is answered 400 and counted.
 * Threading: the handler thread owns the socket; the count is an atomic read by the
 * main thread; zap_stop() sets the stop flag and joins. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "daemon.h"
#include "log.h"
#include "replicator.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_PARTS 7

struct zap_handler {
    void *sock;
    pthread_mutex_t mu;        /* guards cfg (swapped by zap_set_config on reload) */
    const cfg_region *cfg;
    pthread_t thread;
    atomic_int stop;
    atomic_long refused;
};

static int zap_send(void *sock, const void *data, size_t len, int more) {
    return zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

static void zap_reply(zap_handler *z, const zmq_msg_t *req_id, const char *code, const char *text,
                      const char *user) {
    zap_send(z->sock, "1.0", 3, 1);
    zap_send(z->sock, zmq_msg_data((zmq_msg_t *)req_id), zmq_msg_size((zmq_msg_t *)req_id), 1);
    zap_send(z->sock, code, strlen(code), 1);
    zap_send(z->sock, text, strlen(text), 1);
    zap_send(z->sock, user, strlen(user), 1);
    zap_send(z->sock, "", 0, 0);
}

static void zap_handle(zap_handler *z) {
    zmq_msg_t parts[ZAP_PARTS];
    int n = 0, more = 1;
    char key[41] = "", addr[64] = "";
    const char *user = NULL;
    char region[CFG_REGION_MAX + 1];                  /* copied: a reload frees the config */
    char uid[CFG_REGION_MAX + CFG_Z85_KEY_LEN + 2];  /* the User-Id: region, space, key */

    while (more && n < ZAP_PARTS) {
        zmq_msg_init(&parts[n]);
        if (zmq_msg_recv(&parts[n], z->sock, 0) < 0) {
            zmq_msg_close(&parts[n]);
            goto out;
        }
        more = zmq_msg_more(&parts[n]);
        n++;
    }
    while (more) { /* too many parts: drain */
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        if (zmq_msg_recv(&extra, z->sock, 0) < 0) {
            zmq_msg_close(&extra);
            goto out;
        }
        more = zmq_msg_more(&extra);
        zmq_msg_close(&extra);
        n = ZAP_PARTS + 1;
    }
    if (n < 2) goto out; /* cannot even answer: no request id */
    if (n == ZAP_PARTS && zmq_msg_size(&parts[3]) < sizeof addr) {
        memcpy(addr, zmq_msg_data(&parts[3]), zmq_msg_size(&parts[3]));
        addr[zmq_msg_size(&parts[3])] = '\0';
    }
    if (n == ZAP_PARTS && zmq_msg_size(&parts[5]) == 5 && memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&parts[6]) == 32 && zmq_z85_encode(key, zmq_msg_data(&parts[6]), 32)) {
        pthread_mutex_lock(&z->mu);
        for (size_t i = 0; i < z->cfg->n_peers; i++)
            if (strcmp(z->cfg->peers[i].public_key, key) == 0) {
                snprintf(region, sizeof region, "%s", z->cfg->peers[i].region);
                snprintf(uid, sizeof uid, "%s %s", region, key);
                user = region;
            }
        pthread_mutex_unlock(&z->mu);
    }
    if (user) {
        zap_reply(z, &parts[1], "200", "OK", uid);
        log_info(user, "peer authenticated from %s", addr);
    } else {
        atomic_fetch_add(&z->refused, 1);
        zap_reply(z, &parts[1], "400", "unknown key", "");
        log_warn(NULL, "refused a connection from %s: public key %s is not a configured peer", addr,
                 *key ? key : "(none or not CURVE)");
    }
out:
    for (int i = 0; i < n && i < ZAP_PARTS; i++) zmq_msg_close(&parts[i]);
}

static void *zap_thread(void *arg) {
    zap_handler *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {z->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, 100);
        if (rc < 0) {
            if (errno == ETERM) break;
            continue;
        }
        if (rc > 0) zap_handle(z);
    }
    return NULL;
}

zap_handler *zap_start(void *zctx, const cfg_region *cfg, char *err, size_t errlen) {
    int zero = 0;
    zap_handler *z = calloc(1, sizeof *z);
    if (!z) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    z->cfg = cfg;
    pthread_mutex_init(&z->mu, NULL);
    z->sock = zmq_socket(zctx, ZMQ_REP);
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "ZAP handler: %s", zmq_strerror(errno));
        if (z->sock) zmq_close(z->sock);
        free(z);
        return NULL;
    }
    if (pthread_create(&z->thread, NULL, zap_thread, z) != 0) {
        snprintf(err, errlen, "ZAP handler: cannot start thread");
        zmq_close(z->sock);
        free(z);
        return NULL;
    }
    daemon_name_thread(z->thread, "tern-zap");
    return z;
}

void zap_stop(zap_handler *z) {
    if (!z) return;
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
    zmq_close(z->sock);
    pthread_mutex_destroy(&z->mu);
    free(z);
}

void zap_set_config(zap_handler *z, const cfg_region *cfg) {
    if (!z) return;
    pthread_mutex_lock(&z->mu);
    z->cfg = cfg;
    pthread_mutex_unlock(&z->mu);
}

long zap_take_refused(zap_handler *z) { return z ? atomic_exchange(&z->refused, 0) : 0; }
