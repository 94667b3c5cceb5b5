/* cfg.h -- the region config loader of Tern (prefix cfg_).
 *
 * One JSON file per region (docs/config.md documents every key, its type, default and
 * range). cfg_load() reads the file, validates every key against one table (type,
 * bounds, default, required, validator), resolves relative file paths against the
 * config file's directory, reads the key, credential and password files it names, and
 * returns a read-only cfg_region. Any problem yields NULL and ONE line in err:
 *   <file>: <field path>: <reason, with what was expected / the allowed values>
 * e.g. config/us-east-1.json: peers[1].endpoint: expected a ZeroMQ tcp endpoint
 *      "tcp://HOST:PORT", got "foo"
 * Error lines never contain secret material (secret keys, credentials, passwords):
 * only file names and field paths.
 *
 * cfg_load() does not log anything (the daemons log what they decide from the
 * config, e.g. the plain-TCP warning when curve is disabled).
 *
 * Threading: cfg_load() reads the AWS_* environment variables; call it from the main
 * thread at start-up. A loaded cfg_region is immutable, so any thread may read it
 * concurrently until cfg_free(). */
#ifndef TERN_CFG_H
#define TERN_CFG_H

#include <stddef.h>

#include "log.h"

/* Limits of the config (also enforced by cfg_load). */
#define CFG_REGION_MAX 31        /* region name: 1..31 of [a-z0-9-] */
#define CFG_TABLES_MAX 64        /* tables: 1..64 DynamoDB table names */
#define CFG_PEERS_MAX 16         /* peers: 0..16 */
#define CFG_Z85_KEY_LEN 40       /* CURVE keys as Z85 text */
#define CFG_INFLIGHT_MAX 1024    /* agent.max_inflight_batches: 1..1024 */
/* Stream poll pauses, ms (agent.idle_poll_ms, agent.active_poll_ms, agent.echo_poll_ms
 * defaults) */
#define CFG_IDLE_POLL_MS 5       /* local store, quiet shard */
#define CFG_ACTIVE_POLL_MS 1     /* local store, shard with local writes in the last moment */
#define CFG_ECHO_POLL_MS 25      /* local store, shard whose last page held only echoes */
#define CFG_AWS_POLL_MS 250      /* AWS endpoint: all three */

/* Where the store's AWS credentials come from ("store.credentials.source"). */
typedef enum {
    CFG_CRED_ENV,   /* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, read at load */
    CFG_CRED_FILE   /* AWS shared-credentials INI file, one profile, read at load */
} cfg_cred_source;

/* One peer region this region ships changes to. */
typedef struct {
    char region[CFG_REGION_MAX + 1];
    char *endpoint;                        /* "tcp://HOST:PORT" of the peer's replicator */
    char public_key[CFG_Z85_KEY_LEN + 1];  /* Z85 CURVE public key; "" if curve is off */
} cfg_peer;

/* A loaded region config. Read-only after cfg_load(); every string is owned by the
 * struct and freed by cfg_free(). File paths (cred_file, unix_socket,
 * curve.secret_key_file) are absolute: relative ones in the file are resolved against
 * the config file's directory. Timeouts are in the unit their name says (_ms, _s). */
typedef struct {
    char *path;                            /* the file loaded, as given to cfg_load */
    char region[CFG_REGION_MAX + 1];
    struct {
        char *endpoint;                    /* http(s)://HOST[:PORT][/PATH] */
        char *signing_region;              /* SigV4 region; defaults to region */
        char *streams_endpoint;            /* DynamoDB Streams URL; defaults to
                                              streams.dynamodb.R.amazonaws.com for AWS
                                              endpoints, else the store endpoint */
        int verify_tls;                    /* 1 unless explicitly false */
        cfg_cred_source cred_source;
        char *cred_file;                   /* CFG_CRED_FILE: absolute path; else NULL */
        char *cred_profile;                /* CFG_CRED_FILE: profile name; else NULL */
        char *access_key_id;               /* resolved at load, never NULL */
        char *secret_access_key;           /* resolved at load, never NULL */
        char *session_token;               /* resolved at load, NULL if none */
        long timeout_ms;                   /* per HTTP request */
    } store;
    struct {
        char *host;                        /* TCP host (ignored if unix_socket is set) */
        int port;
        char *unix_socket;                 /* absolute socket path, NULL if TCP */
        char *password;                    /* from password or password_file; NULL if none */
        int db;
        long timeout_ms;                   /* connect and command timeout */
    } redis;
    char **tables;                         /* 1..64 distinct DynamoDB table names */
    size_t n_tables;
    struct {
        char *listen;                      /* ZeroMQ bind endpoint "tcp://HOST:PORT" */
        long tombstone_ttl_s;
        long max_clock_skew_ms;
        long batch_max;
        long apply_workers;                /* changes applied in parallel, per-key order kept (1..32, 4) */
        long group_writes;                 /* puts taken together by a worker with a backlog: one Redis
                                              round trip, one TransactWriteItems from APPLY_GROUP_MIN
                                              (1 = never; 1..100, 100) */
        long transactions;                 /* grouped writes (transactions) in flight at once, of all
                                              workers (0..32, 1; 0: none): DynamoDB Local runs a
                                              table's transactions one at a time */
        long parallel_puts;                /* single conditional puts of a group a worker writes at
                                              once (1..16, 4; APPLY_WRITERS_MAX); 1: one by one */
        int metrics_port;
    } replicator;
    struct {
        long idle_poll_ms;                 /* pause after an empty poll of a quiet shard (CFG_IDLE_POLL_MS,
                                              CFG_AWS_POLL_MS on AWS) */
        long active_poll_ms;               /* the same while the shard's application writes: a poll found
                                              local changes in the last AGENT_ACTIVE_WINDOW_MS
                                              (CFG_ACTIVE_POLL_MS; idle_poll_ms on AWS or when that
                                              is set in the file; <= idle_poll_ms) */
        long echo_poll_ms;                 /* the same after a page of echoes alone, short of a backlog
                                              (a full page or 256 KB): CFG_ECHO_POLL_MS, or
                                              idle_poll_ms when longer; idle_poll_ms on AWS */
        long batch_max;
        long ack_timeout_ms;
        long max_inflight_batches;         /* unacknowledged batches per peer and table, the
                                              shipper's window (1..CFG_INFLIGHT_MAX, default 64) */
        long heartbeat_ms;
        int metrics_port;                  /* differs from replicator.metrics_port */
        int wire_version;                  /* protocol version of the batches it sends (1..2, default
                                              2): 1 only while a peer's replicator predates 2 */
    } agent;
    cfg_peer *peers;                       /* 0..16, distinct regions, none equal to region */
    size_t n_peers;
    struct {
        int enabled;                       /* default 1 */
        char *secret_key_file;             /* absolute path; NULL if curve is off */
        char secret_key[CFG_Z85_KEY_LEN + 1]; /* Z85; "" if curve is off */
        char public_key[CFG_Z85_KEY_LEN + 1]; /* derived from secret_key; "" if off */
    } curve;
    log_level log_level;
} cfg_region;

/* Loads and validates the region config at path. Returns a new cfg_region (the
 * caller frees it with cfg_free), or NULL with one line in err (errlen > 0). */
cfg_region *cfg_load(const char *path, char *err, size_t errlen);

/* Frees c and every string it owns. NULL is fine. */
void cfg_free(cfg_region *c);

/* Checks several loaded configs together (ternctl): no region appears in two files,
 * and for each peer whose region's own file is in the set, the peer's endpoint matches
 * that file's replicator.listen (same port; same host unless the listen host is a
 * wildcard "*" / "0.0.0.0" / "[::]"), both sides agree on curve.enabled, and the
 * peer's public key equals the public key derived from that region's secret key.
 * Returns 0, or -1 with one line in err naming the file and field. Nothing is freed. */
int cfg_check_set(cfg_region *const *cfgs, size_t n, char *err, size_t errlen);

/* Returns the peer entry for region in c, or NULL. The pointer is owned by c. */
const cfg_peer *cfg_peer_find(const cfg_region *c, const char *region);

#endif
