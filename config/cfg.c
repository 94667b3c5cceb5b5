/* cfg.c -- the region config loader (prefix cfg_).
 *
 * Owns: parsing one region's JSON config into a cfg_region, and every check on it.
 * Shape: one table (region_keys[], plus peer_keys[] for each element of "peers") with
 * a row per key: dotted JSON path, type, flags (required, secret, file path, unique),
 * bounds (numbers: inclusive range; strings: length; lists: element count), default,
 * validator and offset into the loader's raw struct. A generic pass
 *   1. rejects unknown and duplicate keys and non-object sections (check_keys),
 *   2. converts every row: missing -> default or "missing required key", wrong type,
 *      out of range, bad enum, validator (load_row),
 * and then cross-field rules run in post_*(): credentials, password/password_file,
 * metrics ports, CURVE keys, peers (self, duplicates, keys).
 * The table is also the source of docs/config.md (kept in step by hand).
 *
 * Invariants: the first error wins and is the only one reported (one line,
 * "<file>: <field path>: <reason>"); a secret value (password, key, credential) never
 * appears in an error; every allocation is owned by exactly one of the returned
 * cfg_region or the raw struct, so both failure and success paths free everything.
 * Nothing is logged.
 *
 * Threading: no globals besides const tables; cfg_load reads the environment and uses
 * strerror(), so call it from the main thread at start-up. */
#include "cfg.h"

#include <cJSON.h>
#include <zmq.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CFG_FILE_MAX (1024 * 1024)     /* config file size limit, bytes */
#define CFG_AUX_FILE_MAX (64 * 1024)   /* key / credentials / password file size limit */
#define CFG_PATH_MAX 4095              /* longest file path accepted in the config */
/* Largest batch: DynamoDB GetRecords takes Limit <= 1000 (the agent uses agent.batch_max as
 * its Limit), and wire/ caps a batch at WIRE_MAX_CHANGES (2000). */
#define CFG_BATCH_MAX 1000

_Static_assert(sizeof(cfg_cred_source) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(log_level) == sizeof(int), "enums are stored as int");

/* ---------------------------------------------------------------- loader state */

typedef struct {
    char *region;           /* validated, copied into cfg_peer.region */
    char *endpoint;         /* moved into cfg_peer.endpoint */
    char *public_key;       /* inline Z85 key, "" if absent */
    char *public_key_file;  /* resolved path, "" if absent */
} peer_raw;

/* Everything the table writes. c is the first member, so rows for struct fields use
 * offsetof(raw_cfg, c.<field>); the other members exist only during the load. */
typedef struct {
    cfg_region c;
    char *password_file;    /* "" if absent */
    peer_raw *peers;
    size_t n_peers;
} raw_cfg;

typedef struct {
    const char *file;       /* config path as given, first part of every error */
    char dir[PATH_MAX];     /* absolute directory of the config file */
    char *err;
    size_t errlen;
    int failed;
} loader;

/* Writes "<file>: <field>: <reason>" unless an error is already recorded; returns -1. */
__attribute__((format(printf, 3, 4)))
static int fail(loader *l, const char *field, const char *fmt, ...) {
    if (l->failed) return -1;
    l->failed = 1;
    if (!l->err || l->errlen == 0) return -1;
    int n = snprintf(l->err, l->errlen, "%s: %s: ", l->file, field);
    if (n < 0 || (size_t)n >= l->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = l->err; *p; p++)   /* keep it one line whatever the input held */
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

/* Quotes s for an error message: "..." with non-printables escaped, cut at 64 chars.
 * Returns buf. */
static const char *quote(char *buf, size_t n, const char *s) {
    size_t o = 0, i = 0;
    if (n < 8) { if (n) buf[0] = '\0'; return buf; }
    buf[o++] = '"';
    for (; s[i] && o + 8 < n && i < 64; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { buf[o++] = '\\'; buf[o++] = (char)ch; }
        else if (ch < 0x20 || ch == 0x7f) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", ch);
        else buf[o++] = (char)ch;
    }
    if (s[i]) { buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.'; }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
#define Q(s) quote((char[96]){0}, 96, (s))

/* Describes a JSON value for "got ..." (secret values are not shown). */
static const char *describe(char *buf, size_t n, const cJSON *v, int secret) {
    if (cJSON_IsString(v)) {
        if (secret) snprintf(buf, n, "a string");
        else quote(buf, n, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        if (secret) snprintf(buf, n, "a number");
        else snprintf(buf, n, "%.15g", v->valuedouble);
    } else if (cJSON_IsBool(v)) snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v)) snprintf(buf, n, "null");
    else if (cJSON_IsArray(v)) snprintf(buf, n, "an array");
    else if (cJSON_IsObject(v)) snprintf(buf, n, "an object");
    else snprintf(buf, n, "an invalid value");
    return buf;
}
#define DESC(v, secret) describe((char[96]){0}, 96, (v), (secret))

/* ---------------------------------------------------------------- validators */
/* A validator checks a non-empty string; on failure it writes the whole reason
 * (what was expected, what was given) into why and returns -1. */
typedef int (*cfg_validator)(const char *s, char *why, size_t n);

static int all_of(const char *s, const char *extra, int lower_only) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 (!lower_only && ch >= 'A' && ch <= 'Z') || (ch && strchr(extra, ch));
        if (!ok) return 0;
    }
    return 1;
}

static int v_region(const char *s, char *why, size_t n) {
    size_t len = strlen(s);
    if (len >= 1 && len <= CFG_REGION_MAX && all_of(s, "-", 1)) return 0;
    snprintf(why, n, "expected a region name (1..%d characters of [a-z0-9-]), got %s",
             CFG_REGION_MAX, Q(s));
    return -1;
}

static int v_table(const char *s, char *why, size_t n) {
    size_t len = strlen(s);
    if (len >= 3 && len <= 255 && all_of(s, "_.-", 0)) return 0;
    snprintf(why, n, "expected a DynamoDB table name (3..255 characters of [A-Za-z0-9_.-]), got %s",
             Q(s));
    return -1;
}

static int v_profile(const char *s, char *why, size_t n) {
    size_t len = strlen(s);
    if (len >= 1 && len <= 255 && all_of(s, "_.-+@", 0)) return 0;
    snprintf(why, n, "expected a profile name (1..255 characters of [A-Za-z0-9_.+@-]), got %s", Q(s));
    return -1;
}

/* Host name or IP address as written in an endpoint or redis.host. */
static int host_ok(const char *h, size_t len) {
    if (len == 0 || len > 253) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

/* Parses a decimal port 1..65535 of exactly len digits; returns it or -1. */
static long parse_port(const char *p, size_t len) {
    if (len == 0 || len > 5) return -1;
    for (size_t i = 0; i < len; i++)
        if (p[i] < '0' || p[i] > '9') return -1;
    char tmp[6];
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    char *end;
    errno = 0;
    long v = strtol(tmp, &end, 10);
    if (errno || *end || v < 1 || v > 65535) return -1;
    return v;
}

/* Splits "HOST:PORT..." (HOST may be "[v6]"); host/hostlen exclude brackets. Returns the
 * port, or -1. rest gets what follows the port digits. */
static long split_hostport(const char *s, const char **host, size_t *hostlen, int *bracketed,
                           const char **rest, int allow_wild) {
    const char *colon;
    *bracketed = 0;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        *host = s + 1;
        *hostlen = (size_t)(close - s - 1);
        for (size_t i = 0; i < *hostlen; i++)
            if (!strchr("0123456789abcdefABCDEF:.", (*host)[i])) return -1;
        if (*hostlen < 2) return -1;
        *bracketed = 1;
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (!colon) return -1;
        *host = s;
        *hostlen = (size_t)(colon - s);
        if (!(allow_wild && *hostlen == 1 && s[0] == '*') && !host_ok(s, *hostlen)) return -1;
    }
    const char *p = colon + 1;
    size_t plen = strspn(p, "0123456789");
    *rest = p + plen;
    return parse_port(p, plen);
}

static int tcp_endpoint_ok(const char *s, int allow_wild) {
    if (strncmp(s, "tcp://", 6) != 0) return 0;
    const char *host, *rest;
    size_t hl;
    int br;
    return split_hostport(s + 6, &host, &hl, &br, &rest, allow_wild) > 0 && *rest == '\0';
}

static int v_tcp_endpoint(const char *s, char *why, size_t n) {
    if (tcp_endpoint_ok(s, 0)) return 0;
    snprintf(why, n, "expected a ZeroMQ tcp endpoint \"tcp://HOST:PORT\" (PORT 1..65535), got %s",
             Q(s));
    return -1;
}

static int v_tcp_listen(const char *s, char *why, size_t n) {
    if (tcp_endpoint_ok(s, 1)) return 0;
    snprintf(why, n, "expected a ZeroMQ tcp endpoint \"tcp://HOST:PORT\" (HOST may be \"*\", "
             "PORT 1..65535), got %s", Q(s));
    return -1;
}

static int v_http_url(const char *s, char *why, size_t n) {
    const char *p = NULL;
    if (strncmp(s, "http://", 7) == 0) p = s + 7;
    else if (strncmp(s, "https://", 8) == 0) p = s + 8;
    if (p) {
        size_t hl = strcspn(p, ":/");
        const char *q = p + hl;
        int ok = 1;
        if (*p == '[') {    /* [v6] */
            const char *close = strchr(p, ']');
            ok = close && close - p > 2;
            for (const char *c = p + 1; ok && c < close; c++)
                if (!strchr("0123456789abcdefABCDEF:.", *c)) ok = 0;
            q = ok ? close + 1 : q;
        } else {
            ok = host_ok(p, hl);
        }
        if (ok && *q == ':') {
            size_t pl = strspn(q + 1, "0123456789");
            ok = parse_port(q + 1, pl) > 0;
            q += 1 + pl;
        }
        if (ok && *q && *q != '/') ok = 0;
        for (; ok && *q; q++)
            if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) ok = 0;
        if (ok) return 0;
    }
    snprintf(why, n, "expected an http:// or https:// URL \"http(s)://HOST[:PORT][/PATH]\", got %s",
             Q(s));
    return -1;
}

static int v_host(const char *s, char *why, size_t n) {
    size_t len = strlen(s);
    if (host_ok(s, len)) return 0;
    unsigned char buf[16];
    if (inet_pton(AF_INET6, s, buf) == 1) return 0;
    snprintf(why, n, "expected a host name or IP address, got %s", Q(s));
    return -1;
}

/* ---------------------------------------------------------------- the table */

typedef enum {
    KT_STR,      /* char *; bounds = length when there is no validator */
    KT_BUF,      /* char[max + 1] inside the struct; validator required */
    KT_INT,      /* int, integral JSON number in [min, max] */
    KT_LONG,     /* long, integral JSON number in [min, max] */
    KT_BOOL,     /* int 0/1 from JSON true/false only */
    KT_ENUM,     /* int (an enum) from one of names[] */
    KT_STRLIST,  /* char ** + size_t count; bounds = element count; validator per element */
    KT_OBJLIST   /* array of objects parsed with sub[]; void * + size_t count */
} key_type;

enum {
    K_REQ = 1,      /* must be present */
    K_SECRET = 2,   /* never echo the value */
    K_PATH = 4,     /* file path: resolved against the config file's directory */
    K_UNIQUE = 8    /* KT_STRLIST: elements distinct */
};

typedef struct cfg_key {
    const char *path;          /* dotted path, relative to the object the table reads */
    key_type type;
    unsigned flags;
    long min, max;             /* see key_type */
    long def_n;                /* default of KT_INT/KT_LONG/KT_BOOL */
    const char *def_s;         /* default of KT_STR (NULL = stays NULL) and KT_ENUM (name) */
    const char *what;          /* what is expected, for "missing"/"wrong type" errors */
    cfg_validator validate;
    const char *const *names;  /* KT_ENUM: allowed names, NULL-terminated */
    const int *values;         /* KT_ENUM: value of each name */
    size_t off;                /* offset of the field in the base struct */
    size_t off_n;              /* lists: offset of the count */
    const struct cfg_key *sub; /* KT_OBJLIST: element table */
    size_t n_sub, elem_size;
} cfg_key;

static const char *const cred_names[] = {"env", "file", NULL};
static const int cred_values[] = {CFG_CRED_ENV, CFG_CRED_FILE};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const int level_values[] = {LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG};

#define R(f) offsetof(raw_cfg, f)
#define P(f) offsetof(peer_raw, f)
#define STR(p, fl, lo, hi, def, what_, val, off_) \
    {.path = p, .type = KT_STR, .flags = fl, .min = lo, .max = hi, .def_s = def, .what = what_, \
     .validate = val, .off = off_}
#define NUM(t, p, lo, hi, def, off_) \
    {.path = p, .type = t, .min = lo, .max = hi, .def_n = def, .off = off_}
#define BOOL(p, def, off_) {.path = p, .type = KT_BOOL, .def_n = def, .what = "true or false", .off = off_}
#define ENUM(p, def, nm, vl, off_) \
    {.path = p, .type = KT_ENUM, .def_s = def, .names = nm, .values = vl, .off = off_}

static const cfg_key peer_keys[] = {
    STR("region", K_REQ, 1, CFG_REGION_MAX, NULL, "a region name", v_region, P(region)),
    STR("endpoint", K_REQ, 1, 1024, NULL, "a ZeroMQ tcp endpoint \"tcp://HOST:PORT\"",
        v_tcp_endpoint, P(endpoint)),
    STR("public_key", 0, 0, 1024, "", "a 40-character Z85 CURVE public key", NULL, P(public_key)),
    STR("public_key_file", K_PATH, 0, CFG_PATH_MAX, "", "a file path", NULL, P(public_key_file)),
};

static const cfg_key region_keys[] = {
    {.path = "region", .type = KT_BUF, .flags = K_REQ, .min = 1, .max = CFG_REGION_MAX,
     .what = "a region name (1..31 characters of [a-z0-9-])", .validate = v_region,
     .off = R(c.region)},
    STR("store.endpoint", K_REQ, 1, 2048, NULL, "an http:// or https:// URL", v_http_url,
        R(c.store.endpoint)),
    STR("store.signing_region", 0, 1, CFG_REGION_MAX, NULL, "a region name", v_region,
        R(c.store.signing_region)),
    STR("store.streams_endpoint", 0, 1, 2048, NULL, "an http:// or https:// URL", v_http_url,
        R(c.store.streams_endpoint)),
    BOOL("store.verify_tls", 1, R(c.store.verify_tls)),
    NUM(KT_LONG, "store.timeout_ms", 100, 300000, 5000, R(c.store.timeout_ms)),
    ENUM("store.credentials.source", "env", cred_names, cred_values, R(c.store.cred_source)),
    STR("store.credentials.file", K_PATH, 1, CFG_PATH_MAX, NULL, "a file path", NULL,
        R(c.store.cred_file)),
    STR("store.credentials.profile", 0, 1, 255, NULL, "a profile name", v_profile,
        R(c.store.cred_profile)),
    STR("redis.host", 0, 1, 253, "127.0.0.1", "a host name or IP address", v_host, R(c.redis.host)),
    NUM(KT_INT, "redis.port", 1, 65535, 6379, R(c.redis.port)),
    STR("redis.unix_socket", K_PATH, 0, CFG_PATH_MAX, "", "a socket path", NULL,
        R(c.redis.unix_socket)),
    STR("redis.password", K_SECRET, 0, 4096, "", "a string", NULL, R(c.redis.password)),
    STR("redis.password_file", K_PATH, 0, CFG_PATH_MAX, "", "a file path", NULL, R(password_file)),
    NUM(KT_INT, "redis.db", 0, 255, 0, R(c.redis.db)),
    NUM(KT_LONG, "redis.timeout_ms", 10, 60000, 2000, R(c.redis.timeout_ms)),
    {.path = "tables", .type = KT_STRLIST, .flags = K_REQ | K_UNIQUE, .min = 1, .max = CFG_TABLES_MAX,
     .what = "an array of 1..64 DynamoDB table names", .validate = v_table, .off = R(c.tables),
     .off_n = R(c.n_tables)},
    STR("replicator.listen", K_REQ, 1, 1024, NULL, "a ZeroMQ tcp endpoint \"tcp://HOST:PORT\"",
        v_tcp_listen, R(c.replicator.listen)),
    NUM(KT_LONG, "replicator.tombstone_ttl_s", 86400, 31536000, 172800,
        R(c.replicator.tombstone_ttl_s)),
    NUM(KT_LONG, "replicator.max_clock_skew_ms", 1000, 3600000, 300000,
        R(c.replicator.max_clock_skew_ms)),
    NUM(KT_LONG, "replicator.batch_max", 1, CFG_BATCH_MAX, 500, R(c.replicator.batch_max)),
    NUM(KT_LONG, "replicator.apply_workers", 1, 32, 4, R(c.replicator.apply_workers)),
    NUM(KT_LONG, "replicator.group_writes", 1, 100, 100, R(c.replicator.group_writes)),
    NUM(KT_LONG, "replicator.transactions", 0, 32, 1, R(c.replicator.transactions)),
    NUM(KT_LONG, "replicator.parallel_puts", 1, 16, 4, R(c.replicator.parallel_puts)),
    NUM(KT_INT, "replicator.metrics_port", 1, 65535, 9102, R(c.replicator.metrics_port)),
    /* 0: chosen from store.endpoint in post_poll() */
    NUM(KT_LONG, "agent.idle_poll_ms", 1, 10000, 0, R(c.agent.idle_poll_ms)),
    NUM(KT_LONG, "agent.active_poll_ms", 1, 10000, 0, R(c.agent.active_poll_ms)),
    NUM(KT_LONG, "agent.echo_poll_ms", 1, 10000, 0, R(c.agent.echo_poll_ms)),
    NUM(KT_LONG, "agent.batch_max", 1, CFG_BATCH_MAX, 500, R(c.agent.batch_max)),
    NUM(KT_LONG, "agent.ack_timeout_ms", 10, 600000, 2000, R(c.agent.ack_timeout_ms)),
    NUM(KT_LONG, "agent.max_inflight_batches", 1, CFG_INFLIGHT_MAX, 64, R(c.agent.max_inflight_batches)),
    NUM(KT_LONG, "agent.heartbeat_ms", 10, 60000, 1000, R(c.agent.heartbeat_ms)),
    NUM(KT_INT, "agent.metrics_port", 1, 65535, 9101, R(c.agent.metrics_port)),
    /* wire/wire.h: WIRE_VERSION_MIN..WIRE_VERSION (shipper.c asserts it) */
    NUM(KT_INT, "agent.wire_version", 1, 2, 2, R(c.agent.wire_version)),
    {.path = "peers", .type = KT_OBJLIST, .flags = K_REQ, .min = 0, .max = CFG_PEERS_MAX,
     .what = "an array of 0..16 peer objects", .off = R(peers), .off_n = R(n_peers),
     .sub = peer_keys, .n_sub = sizeof peer_keys / sizeof peer_keys[0], .elem_size = sizeof(peer_raw)},
    BOOL("curve.enabled", 1, R(c.curve.enabled)),
    STR("curve.secret_key_file", K_PATH, 1, CFG_PATH_MAX, NULL, "a file path", NULL,
        R(c.curve.secret_key_file)),
    ENUM("log_level", "info", level_names, level_values, R(c.log_level)),
};
#define N_REGION_KEYS (sizeof region_keys / sizeof region_keys[0])

/* ---------------------------------------------------------------- generic pass */

/* Makes a printable copy of a JSON key name for a field path. */
static void safe_name(char *out, size_t n, const char *name) {
    size_t o = 0;
    for (; *name && o + 1 < n; name++)
        out[o++] = ((unsigned char)*name < 0x20 || (unsigned char)*name == 0x7f) ? '?' : *name;
    out[o] = '\0';
}

/* Length of the next path component of row path after prefix (prefix matched). */
static size_t component_len(const char *rest) { return strcspn(rest, "."); }

static int row_under(const cfg_key *k, const char *prefix, size_t plen) {
    return strncmp(k->path, prefix, plen) == 0 && k->path[plen] != '\0';
}

/* Checks the keys of obj (the object at table path prefix, shown as shown+prefix):
 * no duplicates, no unknown keys, sub-sections are objects; recurses into sections. */
static int check_keys(loader *l, const cJSON *obj, const char *prefix, const char *shown,
                      const cfg_key *tab, size_t n) {
    size_t plen = strlen(prefix);
    for (const cJSON *it = obj->child; it; it = it->next) {
        char name[128], field[512];
        safe_name(name, sizeof name, it->string ? it->string : "");
        snprintf(field, sizeof field, "%s%s%s", shown, prefix, name);
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0)
                return fail(l, field, "duplicate key (each key may appear once)");
        size_t nlen = strlen(it->string);
        int leaf = 0, section = 0;
        for (size_t i = 0; i < n && nlen && !strchr(it->string, '.'); i++) {
            if (!row_under(&tab[i], prefix, plen)) continue;
            const char *rest = tab[i].path + plen;
            if (strncmp(rest, it->string, nlen) != 0) continue;
            if (rest[nlen] == '\0') leaf = 1;
            else if (rest[nlen] == '.') section = 1;
        }
        if (!leaf && !section) {
            char allowed[1024];
            size_t o = 0;
            allowed[0] = '\0';
            for (size_t i = 0; i < n; i++) {
                if (!row_under(&tab[i], prefix, plen)) continue;
                const char *rest = tab[i].path + plen;
                size_t cl = component_len(rest);
                int seen = 0;
                for (size_t j = 0; j < i && !seen; j++)
                    seen = row_under(&tab[j], prefix, plen) &&
                           strncmp(tab[j].path + plen, rest, cl) == 0 &&
                           (tab[j].path[plen + cl] == '\0' || tab[j].path[plen + cl] == '.');
                if (!seen && o + cl + 3 < sizeof allowed)
                    o += (size_t)snprintf(allowed + o, sizeof allowed - o, "%s%.*s", o ? ", " : "",
                                          (int)cl, rest);
            }
            char cont[512], where[520];
            snprintf(cont, sizeof cont, "%s%s", shown, prefix);
            size_t cn = strlen(cont);
            if (cn && cont[cn - 1] == '.') cont[--cn] = '\0';
            if (cn) snprintf(where, sizeof where, "in %s", cont);
            else snprintf(where, sizeof where, "at the top level");
            return fail(l, field, "unknown key; allowed keys %s: %s", where, allowed);
        }
        if (section) {
            if (!cJSON_IsObject(it)) {
                return fail(l, field, "expected an object, got %s", DESC(it, 0));
            }
            char sub[256];
            snprintf(sub, sizeof sub, "%s%s.", prefix, it->string);
            if (check_keys(l, it, sub, shown, tab, n) < 0) return -1;
        }
    }
    return 0;
}

/* Finds the value at a dotted path under obj, or NULL. */
static const cJSON *lookup(const cJSON *obj, const char *path) {
    char comp[128];
    while (obj && *path) {
        size_t cl = component_len(path);
        if (cl >= sizeof comp || !cJSON_IsObject(obj)) return NULL;
        memcpy(comp, path, cl);
        comp[cl] = '\0';
        obj = cJSON_GetObjectItemCaseSensitive(obj, comp);
        path += cl;
        if (*path == '.') path++;
    }
    return obj;
}

/* Returns a new string: s if absolute, else <config dir>/s. NULL on OOM. */
static char *resolve(const loader *l, const char *s) {
    if (s[0] == '/') return strdup(s);
    size_t n = strlen(l->dir) + 1 + strlen(s) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", l->dir, s);
    return p;
}

static int load_rows(loader *l, const cJSON *obj, const char *shown, const cfg_key *tab,
                     size_t n, void *base);

/* Converts one string (validator or length bounds) into a new allocation in *out. */
static int load_string(loader *l, const cfg_key *k, const char *field, const cJSON *v,
                       char **out) {
    if (!cJSON_IsString(v))
        return fail(l, field, "expected %s, got %s", k->what, DESC(v, k->flags & K_SECRET));
    const char *s = v->valuestring;
    size_t len = strlen(s);
    if (k->validate && (len > 0 || k->min > 0)) {
        char why[512];
        if (k->validate(s, why, sizeof why) < 0) return fail(l, field, "%s", why);
    } else if ((long)len < k->min || (long)len > k->max) {
        if (k->min > 0 && len == 0) return fail(l, field, "expected %s, got an empty string", k->what);
        return fail(l, field, "expected %s of at most %ld characters, got %zu characters", k->what,
                    k->max, len);
    }
    *out = (k->flags & K_PATH) && len ? resolve(l, s) : strdup(s);
    if (!*out) return fail(l, field, "out of memory");
    return 0;
}

static int load_row(loader *l, const cJSON *obj, const char *shown, const cfg_key *k, void *base) {
    char field[512];
    snprintf(field, sizeof field, "%s%s", shown, k->path);
    void *dst = (char *)base + k->off;
    const cJSON *v = lookup(obj, k->path);

    if (!v) {
        if (k->flags & K_REQ) {
            if (k->type == KT_INT || k->type == KT_LONG)
                return fail(l, field, "missing required key (expected an integer in %ld..%ld)",
                            k->min, k->max);
            return fail(l, field, "missing required key (expected %s)", k->what);
        }
        switch (k->type) {
        case KT_STR:
            if (k->def_s && !(*(char **)dst = strdup(k->def_s))) return fail(l, field, "out of memory");
            return 0;
        case KT_INT: { int x = (int)k->def_n; memcpy(dst, &x, sizeof x); return 0; }
        case KT_LONG: *(long *)dst = k->def_n; return 0;
        case KT_BOOL: *(int *)dst = (int)k->def_n; return 0;
        case KT_ENUM:
            for (size_t i = 0; k->names[i]; i++)
                if (strcmp(k->names[i], k->def_s) == 0) { memcpy(dst, &k->values[i], sizeof(int)); return 0; }
            return fail(l, field, "internal error: bad default");
        default: return 0;   /* KT_BUF, lists: only required ones exist */
        }
    }

    switch (k->type) {
    case KT_STR:
        return load_string(l, k, field, v, (char **)dst);
    case KT_BUF: {
        char *s = NULL;
        if (load_string(l, k, field, v, &s) < 0) return -1;
        snprintf((char *)dst, (size_t)k->max + 1, "%s", s);   /* validator bounded the length */
        free(s);
        return 0;
    }
    case KT_INT:
    case KT_LONG: {
        if (!cJSON_IsNumber(v))
            return fail(l, field, "expected an integer in %ld..%ld, got %s", k->min, k->max, DESC(v, 0));
        double d = v->valuedouble;
        if (!isfinite(d) || d != floor(d))
            return fail(l, field, "expected an integer in %ld..%ld, got %s (not an integer)", k->min,
                        k->max, DESC(v, 0));
        if (d < (double)k->min || d > (double)k->max)
            return fail(l, field, "out of range: expected an integer in %ld..%ld, got %s", k->min,
                        k->max, DESC(v, 0));
        if (k->type == KT_INT) { int x = (int)d; memcpy(dst, &x, sizeof x); }
        else *(long *)dst = (long)d;
        return 0;
    }
    case KT_BOOL:
        if (!cJSON_IsBool(v)) return fail(l, field, "expected true or false, got %s", DESC(v, 0));
        *(int *)dst = cJSON_IsTrue(v) ? 1 : 0;
        return 0;
    case KT_ENUM: {
        char allowed[256];
        size_t o = 0;
        for (size_t i = 0; k->names[i]; i++)
            o += (size_t)snprintf(allowed + o, sizeof allowed - o, "%s\"%s\"", i ? ", " : "", k->names[i]);
        if (!cJSON_IsString(v))
            return fail(l, field, "expected one of %s, got %s", allowed, DESC(v, 0));
        for (size_t i = 0; k->names[i]; i++)
            if (strcmp(k->names[i], v->valuestring) == 0) {
                memcpy(dst, &k->values[i], sizeof(int));
                return 0;
            }
        return fail(l, field, "bad value %s; allowed values: %s", DESC(v, 0), allowed);
    }
    case KT_STRLIST: {
        if (!cJSON_IsArray(v)) return fail(l, field, "expected %s, got %s", k->what, DESC(v, 0));
        int cnt = cJSON_GetArraySize(v);
        if (cnt < k->min || cnt > k->max)
            return fail(l, field, "expected %s, got %d element%s", k->what, cnt, cnt == 1 ? "" : "s");
        char ***arr = (char ***)dst;
        size_t *np = (size_t *)((char *)base + k->off_n);
        if (!(*arr = calloc((size_t)cnt + 1, sizeof(char *)))) return fail(l, field, "out of memory");
        size_t i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            char ef[600];
            snprintf(ef, sizeof ef, "%s[%zu]", field, i);
            if (load_string(l, k, ef, e, &(*arr)[i]) < 0) return -1;
            *np = i + 1;
            if (k->flags & K_UNIQUE)
                for (size_t j = 0; j < i; j++)
                    if (strcmp((*arr)[j], (*arr)[i]) == 0)
                        return fail(l, ef, "duplicate %s (also %s[%zu])", Q((*arr)[i]), field, j);
        }
        return 0;
    }
    case KT_OBJLIST: {
        if (!cJSON_IsArray(v)) return fail(l, field, "expected %s, got %s", k->what, DESC(v, 0));
        int cnt = cJSON_GetArraySize(v);
        if (cnt < k->min || cnt > k->max)
            return fail(l, field, "expected %s, got %d element%s", k->what, cnt, cnt == 1 ? "" : "s");
        void **arr = (void **)dst;
        size_t *np = (size_t *)((char *)base + k->off_n);
        if (cnt > 0) {
            if (!(*arr = calloc((size_t)cnt, k->elem_size))) return fail(l, field, "out of memory");
            *np = (size_t)cnt;   /* zeroed elements are safe to free */
        }
        size_t i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            char ef[600];
            snprintf(ef, sizeof ef, "%s[%zu].", field, i);
            if (!cJSON_IsObject(e)) {
                ef[strlen(ef) - 1] = '\0';
                return fail(l, ef, "expected an object, got %s", DESC(e, 0));
            }
            if (check_keys(l, e, "", ef, k->sub, k->n_sub) < 0) return -1;
            if (load_rows(l, e, ef, k->sub, k->n_sub, (char *)*arr + i * k->elem_size) < 0) return -1;
        }
        return 0;
    }
    }
    return fail(l, field, "internal error: bad key type");
}

static int load_rows(loader *l, const cJSON *obj, const char *shown, const cfg_key *tab,
                     size_t n, void *base) {
    for (size_t i = 0; i < n; i++)
        if (load_row(l, obj, shown, &tab[i], base) < 0) return -1;
    return 0;
}

/* Frees what the table allocated under base (strings, lists, object lists). */
static void free_rows(const cfg_key *tab, size_t n, void *base) {
    for (size_t i = 0; i < n; i++) {
        const cfg_key *k = &tab[i];
        void *dst = (char *)base + k->off;
        if (k->type == KT_STR) {
            free(*(char **)dst);
            *(char **)dst = NULL;
        } else if (k->type == KT_STRLIST) {
            char **arr = *(char ***)dst;
            size_t *np = (size_t *)((char *)base + k->off_n);
            for (size_t j = 0; arr && j < *np; j++) free(arr[j]);
            free(arr);
            *(char ***)dst = NULL;
            *np = 0;
        } else if (k->type == KT_OBJLIST) {
            char *arr = *(char **)dst;
            size_t *np = (size_t *)((char *)base + k->off_n);
            for (size_t j = 0; arr && j < *np; j++) free_rows(k->sub, k->n_sub, arr + j * k->elem_size);
            free(arr);
            *(char **)dst = NULL;
            *np = 0;
        }
    }
}

/* ---------------------------------------------------------------- files */

/* Reads a small regular file into a new NUL-terminated buffer (*out, caller frees;
 * *len without the NUL). private_: refuse group/other-readable files. */
static int read_aux(loader *l, const char *field, const char *path, int private_, char **out,
                    size_t *len) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return fail(l, field, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(l, field, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(l, field, "%s is not a regular file", path);
    }
    if (private_ && (st.st_mode & (S_IRGRP | S_IROTH))) {
        close(fd);
        return fail(l, field, "%s is readable by group or others (mode %04o); chmod 600 it", path,
                    (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > CFG_AUX_FILE_MAX) {
        close(fd);
        return fail(l, field, "%s is too large (%lld bytes; at most %d expected)", path,
                    (long long)st.st_size, CFG_AUX_FILE_MAX);
    }
    char *buf = malloc(CFG_AUX_FILE_MAX + 1);
    if (!buf) { close(fd); return fail(l, field, "out of memory"); }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, CFG_AUX_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            explicit_bzero(buf, n);
            free(buf);
            return fail(l, field, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > CFG_AUX_FILE_MAX) {
            close(fd);
            explicit_bzero(buf, n);
            free(buf);
            return fail(l, field, "%s is too large (at most %d bytes expected)", path, CFG_AUX_FILE_MAX);
        }
    }
    close(fd);
    buf[n] = '\0';
    if (strlen(buf) != n) {
        explicit_bzero(buf, n);
        free(buf);
        return fail(l, field, "%s contains a NUL byte; expected text", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Strips trailing whitespace in place; returns the new length. */
static size_t rstrip(char *s, size_t n) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return n;
}

/* Checks a 40-character Z85 key. */
static int z85_ok(const char *s) {
    uint8_t raw[32];
    if (strlen(s) != CFG_Z85_KEY_LEN) return 0;
    int ok = zmq_z85_decode(raw, s) != NULL;
    explicit_bzero(raw, sizeof raw);
    return ok;
}

/* Reads a key file (one line, a 40-character Z85 key) into out[41]. */
static int read_key_file(loader *l, const char *field, const char *path, int secret, char *out) {
    char *buf;
    size_t n;
    if (read_aux(l, field, path, secret, &buf, &n) < 0) return -1;
    n = rstrip(buf, n);
    int rc = 0;
    if (n != CFG_Z85_KEY_LEN || strpbrk(buf, " \t\r\n"))
        rc = fail(l, field, "%s does not hold one 40-character Z85 key on one line "
                  "(as written by zmq_curve_keypair)", path);
    else if (!z85_ok(buf))
        rc = fail(l, field, "%s does not hold a valid Z85 key (40 characters of the ZeroMQ Z85 "
                  "alphabet expected)", path);
    else
        memcpy(out, buf, CFG_Z85_KEY_LEN + 1);
    explicit_bzero(buf, n);
    free(buf);
    return rc;
}

/* Finds profile in an AWS shared-credentials INI buffer (modified in place). Sets the
 * three value pointers into buf (NULL if absent). Returns 0 if the profile exists. */
static int ini_profile(char *buf, const char *profile, char **akid, char **secret, char **token,
                       char *profiles, size_t plen) {
    int in = 0, found = 0;
    size_t po = 0;
    *akid = *secret = *token = NULL;
    profiles[0] = '\0';
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *s = line;
        line = nl ? nl + 1 : NULL;
        while (*s == ' ' || *s == '\t') s++;
        rstrip(s, strlen(s));
        if (*s == '\0' || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e) { in = 0; continue; }
            *e = '\0';
            char *name = s + 1;
            while (*name == ' ' || *name == '\t') name++;
            rstrip(name, strlen(name));
            in = strcmp(name, profile) == 0;
            found |= in;
            if (po + strlen(name) + 3 < plen)
                po += (size_t)snprintf(profiles + po, plen - po, "%s%s", po ? ", " : "", name);
            continue;
        }
        if (!in) continue;
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = '\0';
        char *val = eq + 1;
        rstrip(s, strlen(s));
        while (*val == ' ' || *val == '\t') val++;
        if (strcasecmp(s, "aws_access_key_id") == 0) *akid = val;
        else if (strcasecmp(s, "aws_secret_access_key") == 0) *secret = val;
        else if (strcasecmp(s, "aws_session_token") == 0) *token = val;
    }
    return found ? 0 : -1;
}

/* ---------------------------------------------------------------- cross-field rules */

/* Whether a table endpoint is AWS's own standard one ("https://dynamodb.R.amazonaws.com"),
 * whose Streams are served on "streams.dynamodb.R.amazonaws.com". */
static int aws_table_endpoint(const char *e) {
    const char *h = strstr(e, "://");
    return h && strncmp(h + 3, "dynamodb.", 9) == 0 && strstr(h + 3, ".amazonaws.com") != NULL;
}

/* Whether an endpoint's host is AWS's (standard, FIPS, dual-stack, China, VPC
 * endpoints): its host ends in .amazonaws.com, .amazonaws.com.cn or .api.aws. */
static int aws_host(const char *e) {
    static const char *const suffixes[] = {".amazonaws.com", ".amazonaws.com.cn", ".api.aws"};
    const char *h = strstr(e, "://"), *end;
    size_t n;
    if (!h) return 0;
    h += 3;
    end = h + strcspn(h, ":/?#");
    n = (size_t)(end - h);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strncasecmp(end - k, suffixes[i], k) == 0) return 1;
    }
    return 0;
}

/* Stream polling defaults follow the store: on AWS (either endpoint) every GetRecords is
 * billed and more than two readers of a shard are throttled, so both pauses default to
 * CFG_AWS_POLL_MS (4 reads a second per shard, as a Lambda trigger polls); a local store
 * is polled every CFG_IDLE_POLL_MS when quiet and CFG_ACTIVE_POLL_MS while its
 * application writes. An idle pause set in the file is also the active one unless that
 * is set too (who slows polling down to spare a store means it). The active pause may
 * not exceed the idle one. After a page of echoes alone a local store is polled every
 * CFG_ECHO_POLL_MS, or the idle pause when that is longer (an AWS store: the idle pause):
 * echoes are no one's lag, and each poll costs the store that is busy applying them.
 * Runs after streams_endpoint has its default. */
static int post_poll(loader *l, cfg_region *c) {
    int aws = aws_host(c->store.endpoint) || aws_host(c->store.streams_endpoint);
    int idle_set = c->agent.idle_poll_ms != 0;
    if (!idle_set) c->agent.idle_poll_ms = aws ? CFG_AWS_POLL_MS : CFG_IDLE_POLL_MS;
    if (!c->agent.active_poll_ms)
        c->agent.active_poll_ms = aws || idle_set ? c->agent.idle_poll_ms : CFG_ACTIVE_POLL_MS;
    if (!c->agent.echo_poll_ms)
        c->agent.echo_poll_ms = aws || c->agent.idle_poll_ms > CFG_ECHO_POLL_MS ? c->agent.idle_poll_ms
                                                                              : CFG_ECHO_POLL_MS;
    if (c->agent.active_poll_ms > c->agent.idle_poll_ms)
        return fail(l, "agent.active_poll_ms", "%ld is above agent.idle_poll_ms (%ld); expected 1..%ld",
                    c->agent.active_poll_ms, c->agent.idle_poll_ms, c->agent.idle_poll_ms);
    return 0;
}

static int dup_secret(loader *l, const char *field, const char *s, char **out) {
    if (!(*out = strdup(s))) return fail(l, field, "out of memory");
    return 0;
}

static int post_credentials(loader *l, raw_cfg *r) {
    cfg_region *c = &r->c;
    if (c->store.cred_source == CFG_CRED_ENV) {
        if (c->store.cred_file)
            return fail(l, "store.credentials.file", "only allowed with \"source\": \"file\" "
                        "(source is \"env\")");
        if (c->store.cred_profile)
            return fail(l, "store.credentials.profile", "only allowed with \"source\": \"file\" "
                        "(source is \"env\")");
        static const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"};
        for (size_t i = 0; i < 2; i++) {
            const char *v = getenv(vars[i]);
            if (!v || !*v)
                return fail(l, "store.credentials.source", "\"env\" credentials need the "
                            "environment variable %s, which is not set", vars[i]);
        }
        const char *tok = getenv("AWS_SESSION_TOKEN");
        if (dup_secret(l, "store.credentials.source", getenv(vars[0]), &c->store.access_key_id) < 0 ||
            dup_secret(l, "store.credentials.source", getenv(vars[1]), &c->store.secret_access_key) < 0)
            return -1;
        if (tok && *tok && dup_secret(l, "store.credentials.source", tok, &c->store.session_token) < 0)
            return -1;
        return 0;
    }
    if (!c->store.cred_file)
        return fail(l, "store.credentials.file", "missing required key with \"source\": \"file\" "
                    "(expected the path of an AWS shared-credentials file)");
    if (!c->store.cred_profile && !(c->store.cred_profile = strdup("default")))
        return fail(l, "store.credentials.profile", "out of memory");
    char *buf;
    size_t n;
    if (read_aux(l, "store.credentials.file", c->store.cred_file, 1, &buf, &n) < 0) return -1;
    char *akid, *secret, *token, profiles[512];
    int rc = 0;
    if (ini_profile(buf, c->store.cred_profile, &akid, &secret, &token, profiles, sizeof profiles) < 0)
        rc = fail(l, "store.credentials.profile", "profile %s not found in %s (profiles there: %s)",
                  Q(c->store.cred_profile), c->store.cred_file, profiles[0] ? profiles : "none");
    else if (!akid || !*akid)
        rc = fail(l, "store.credentials.file", "profile %s in %s has no aws_access_key_id",
                  Q(c->store.cred_profile), c->store.cred_file);
    else if (!secret || !*secret)
        rc = fail(l, "store.credentials.file", "profile %s in %s has no aws_secret_access_key",
                  Q(c->store.cred_profile), c->store.cred_file);
    else if (dup_secret(l, "store.credentials.file", akid, &c->store.access_key_id) < 0 ||
             dup_secret(l, "store.credentials.file", secret, &c->store.secret_access_key) < 0 ||
             (token && *token &&
              dup_secret(l, "store.credentials.file", token, &c->store.session_token) < 0))
        rc = -1;
    explicit_bzero(buf, n);
    free(buf);
    return rc;
}

static int post_redis(loader *l, raw_cfg *r) {
    cfg_region *c = &r->c;
    if (c->redis.unix_socket && !*c->redis.unix_socket) {
        free(c->redis.unix_socket);
        c->redis.unix_socket = NULL;
    }
    if (c->redis.unix_socket &&
        strlen(c->redis.unix_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail(l, "redis.unix_socket", "%s is too long for a unix socket path (at most %zu "
                    "characters)", c->redis.unix_socket,
                    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    int has_pw = c->redis.password && *c->redis.password;
    if (!has_pw && c->redis.password) {
        free(c->redis.password);
        c->redis.password = NULL;
    }
    if (r->password_file && *r->password_file) {
        if (has_pw)
            return fail(l, "redis.password_file", "redis.password and redis.password_file are "
                        "mutually exclusive; set one of them");
        char *buf;
        size_t n;
        if (read_aux(l, "redis.password_file", r->password_file, 1, &buf, &n) < 0) return -1;
        size_t m = rstrip(buf, n);
        int rc = 0;
        if (m == 0)
            rc = fail(l, "redis.password_file", "%s is empty; expected the password on one line",
                      r->password_file);
        else if (strpbrk(buf, "\r\n"))
            rc = fail(l, "redis.password_file", "%s holds more than one line; expected the password "
                      "on one line", r->password_file);
        else
            rc = dup_secret(l, "redis.password_file", buf, &c->redis.password);
        explicit_bzero(buf, n);
        free(buf);
        return rc;
    }
    return 0;
}

static int post_curve(loader *l, raw_cfg *r) {
    cfg_region *c = &r->c;
    if (!c->curve.enabled) {
        free(c->curve.secret_key_file);   /* ignored when curve is off */
        c->curve.secret_key_file = NULL;
        return 0;
    }
    if (!c->curve.secret_key_file)
        return fail(l, "curve.secret_key_file", "missing required key while curve.enabled is true "
                    "(expected the path of this region's Z85 secret key file)");
    if (read_key_file(l, "curve.secret_key_file", c->curve.secret_key_file, 1, c->curve.secret_key) < 0)
        return -1;
    if (zmq_curve_public(c->curve.public_key, c->curve.secret_key) != 0)
        return fail(l, "curve.secret_key_file", "cannot derive the public key from %s: %s "
                    "(libzmq built without CURVE?)", c->curve.secret_key_file, zmq_strerror(errno));
    return 0;
}

static int post_peers(loader *l, raw_cfg *r) {
    cfg_region *c = &r->c;
    if (r->n_peers == 0) return 0;
    if (!(c->peers = calloc(r->n_peers, sizeof(cfg_peer)))) return fail(l, "peers", "out of memory");
    for (size_t i = 0; i < r->n_peers; i++) {
        peer_raw *p = &r->peers[i];
        cfg_peer *o = &c->peers[i];
        char f[64];
        snprintf(f, sizeof f, "peers[%zu].region", i);
        if (strcmp(p->region, c->region) == 0)
            return fail(l, f, "%s is this file's own region; a region cannot be its own peer",
                        Q(p->region));
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->peers[j].region, p->region) == 0)
                return fail(l, f, "duplicate peer region %s (also peers[%zu])", Q(p->region), j);
        snprintf(f, sizeof f, "peers[%zu].endpoint", i);
        if (strcmp(p->endpoint, c->replicator.listen) == 0)
            return fail(l, f, "%s is this region's own replicator.listen", Q(p->endpoint));
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->peers[j].endpoint, p->endpoint) == 0)
                return fail(l, f, "duplicate peer endpoint %s (also peers[%zu])", Q(p->endpoint), j);
        snprintf(o->region, sizeof o->region, "%s", p->region);
        o->endpoint = p->endpoint;   /* moved */
        p->endpoint = NULL;
        c->n_peers = i + 1;

        if (!c->curve.enabled) continue;   /* keys are optional and ignored */
        int has_inline = *p->public_key != '\0', has_file = *p->public_key_file != '\0';
        if (has_inline && has_file) {
            snprintf(f, sizeof f, "peers[%zu].public_key_file", i);
            return fail(l, f, "public_key and public_key_file are mutually exclusive; set one of them");
        }
        if (!has_inline && !has_file) {
            snprintf(f, sizeof f, "peers[%zu].public_key", i);
            return fail(l, f, "missing required key while curve.enabled is true (expected "
                        "public_key, a 40-character Z85 key, or public_key_file)");
        }
        if (has_inline) {
            snprintf(f, sizeof f, "peers[%zu].public_key", i);
            if (!z85_ok(p->public_key))
                return fail(l, f, "expected a 40-character Z85 CURVE public key, got %s",
                            Q(p->public_key));
            memcpy(o->public_key, p->public_key, CFG_Z85_KEY_LEN + 1);
        } else {
            snprintf(f, sizeof f, "peers[%zu].public_key_file", i);
            if (read_key_file(l, f, p->public_key_file, 0, o->public_key) < 0) return -1;
        }
        if (strcmp(o->public_key, c->curve.public_key) == 0)
            return fail(l, f, "is this region's own public key (derived from curve.secret_key_file); "
                        "expected the peer's");
        /* the replicator knows a peer by its key (zap.c): with two peers on one key, every
         * frame of one of them would be refused as coming from the other */
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->peers[j].public_key, o->public_key) == 0)
                return fail(l, f, "is also the public key of peers[%zu] (%s); each peer region has "
                            "its own keypair (ternctl keygen REGION)", j, Q(c->peers[j].region));
    }
    return 0;
}

static int post_checks(loader *l, raw_cfg *r) {
    cfg_region *c = &r->c;
    if (!c->store.signing_region && !(c->store.signing_region = strdup(c->region)))
        return fail(l, "store.signing_region", "out of memory");
    if (!c->store.streams_endpoint) {
        /* AWS serves Streams on streams.dynamodb.REGION.amazonaws.com; other stores
         * (DynamoDB Local, Alternator) on the table endpoint itself */
        const char *e = c->store.endpoint, *h = strstr(e, "://");
        char buf[2100];
        if (aws_table_endpoint(e))
            snprintf(buf, sizeof buf, "%.*sstreams.%s", (int)(h + 3 - e), e, h + 3);
        else
            snprintf(buf, sizeof buf, "%s", e);
        if (!(c->store.streams_endpoint = strdup(buf)))
            return fail(l, "store.streams_endpoint", "out of memory");
    }
    if (post_poll(l, c) < 0) return -1;
    if (c->agent.metrics_port == c->replicator.metrics_port)
        return fail(l, "agent.metrics_port", "%d is also replicator.metrics_port; the two daemons "
                    "need different metrics ports", c->agent.metrics_port);
    if (post_credentials(l, r) < 0 || post_redis(l, r) < 0 || post_curve(l, r) < 0 ||
        post_peers(l, r) < 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- load */

/* Reads the config file into a NUL-terminated buffer. */
static char *read_config(loader *l) {
    int fd = open(l->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        fail(l, "(file)", "cannot read: %s", strerror(e));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        fail(l, "(file)", "not a regular file");
        return NULL;
    }
    if (st.st_size > CFG_FILE_MAX) {
        close(fd);
        fail(l, "(file)", "too large (%lld bytes; at most %d expected)", (long long)st.st_size,
             CFG_FILE_MAX);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { close(fd); fail(l, "(file)", "out of memory"); return NULL; }
    for (;;) {
        ssize_t rr = read(fd, buf + n, cap - n);
        if (rr < 0 && errno == EINTR) continue;
        if (rr < 0) {
            int e = errno;
            close(fd);
            free(buf);
            fail(l, "(file)", "cannot read: %s", strerror(e));
            return NULL;
        }
        if (rr == 0) break;
        n += (size_t)rr;
        if (n == cap) {   /* grew since fstat */
            close(fd);
            free(buf);
            fail(l, "(file)", "changed while being read");
            return NULL;
        }
    }
    close(fd);
    buf[n] = '\0';
    if (strlen(buf) != n) {
        size_t at = strlen(buf), line = 1, col = 1;
        for (size_t i = 0; i < at; i++) { if (buf[i] == '\n') { line++; col = 1; } else col++; }
        free(buf);
        char where[64];
        snprintf(where, sizeof where, "line %zu, column %zu", line, col);
        fail(l, where, "NUL byte in the file; expected JSON text");
        return NULL;
    }
    return buf;
}

static cJSON *parse_json(loader *l, const char *buf) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (root) return root;
    size_t at = end && end >= buf ? (size_t)(end - buf) : 0, len = strlen(buf);
    if (at > len) at = len;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at; i++) { if (buf[i] == '\n') { line++; col = 1; } else col++; }
    char where[64];
    snprintf(where, sizeof where, "line %zu, column %zu", line, col);
    size_t k = 0;
    while (k < len && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\n' || buf[k] == '\r')) k++;
    if (k == len) {
        fail(l, where, "invalid JSON: the file is empty; expected a JSON object");
    } else if (at >= len) {
        fail(l, where, "invalid JSON: unexpected end of file (unclosed object, array or string?)");
    } else {
        char near[32];
        snprintf(near, sizeof near, "%.20s", buf + at);
        near[strcspn(near, "\r\n")] = '\0';
        fail(l, where, "invalid JSON near %s", Q(near));
    }
    return NULL;
}

cfg_region *cfg_load(const char *path, char *err, size_t errlen) {
    loader l = {.file = path ? path : "(null)", .err = err, .errlen = errlen};
    if (err && errlen) err[0] = '\0';
    if (!path || !*path) {
        fail(&l, "(file)", "no config file given");
        return NULL;
    }
    cfg_region *out = calloc(1, sizeof *out);
    if (!out) { fail(&l, "(file)", "out of memory"); return NULL; }

    /* Absolute directory of the config file, for relative paths in it. */
    char *copy = strdup(path);
    if (!copy) { free(out); fail(&l, "(file)", "out of memory"); return NULL; }
    char *slash = strrchr(copy, '/');
    const char *dir = slash ? (slash == copy ? "/" : (*slash = '\0', copy)) : ".";
    if (!realpath(dir, l.dir)) snprintf(l.dir, sizeof l.dir, "%s", dir);
    free(copy);

    raw_cfg r;
    memset(&r, 0, sizeof r);
    char *buf = read_config(&l);
    cJSON *root = buf ? parse_json(&l, buf) : NULL;
    if (root && !cJSON_IsObject(root)) /* its type only: a file given by mistake (a key or
                                           secret file holding one JSON string) is not echoed */
        fail(&l, "(top level)", "expected a JSON object, got %s", DESC(root, 1));
    if (!l.failed && check_keys(&l, root, "", "", region_keys, N_REGION_KEYS) == 0 &&
        load_rows(&l, root, "", region_keys, N_REGION_KEYS, &r) == 0 && post_checks(&l, &r) == 0 &&
        !(r.c.path = strdup(path)))
        fail(&l, "(file)", "out of memory");
    cJSON_Delete(root);
    free(buf);

    *out = r.c;                      /* out owns every cfg_region field from here on */
    memset(&r.c, 0, sizeof r.c);
    free_rows(region_keys, N_REGION_KEYS, &r);   /* frees the raw-only members */
    if (l.failed) {
        cfg_free(out);
        return NULL;
    }
    return out;
}

/* Frees and wipes a secret string. */
static void free_secret(char *s) {
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

void cfg_free(cfg_region *c) {
    if (!c) return;
    free(c->path);
    free(c->store.endpoint);
    free(c->store.signing_region);
    free(c->store.streams_endpoint);
    free(c->store.cred_file);
    free(c->store.cred_profile);
    free_secret(c->store.access_key_id);
    free_secret(c->store.secret_access_key);
    free_secret(c->store.session_token);
    free(c->redis.host);
    free(c->redis.unix_socket);
    free_secret(c->redis.password);
    for (size_t i = 0; c->tables && i < c->n_tables; i++) free(c->tables[i]);
    free(c->tables);
    free(c->replicator.listen);
    for (size_t i = 0; c->peers && i < c->n_peers; i++) free(c->peers[i].endpoint);
    free(c->peers);
    free(c->curve.secret_key_file);
    explicit_bzero(c->curve.secret_key, sizeof c->curve.secret_key);
    free(c);
}

const cfg_peer *cfg_peer_find(const cfg_region *c, const char *region) {
    if (!c || !region) return NULL;
    for (size_t i = 0; i < c->n_peers; i++)
        if (strcmp(c->peers[i].region, region) == 0) return &c->peers[i];
    return NULL;
}

/* ---------------------------------------------------------------- sets of files */

__attribute__((format(printf, 5, 6)))
static int set_fail(char *err, size_t errlen, const char *file, const char *field, const char *fmt,
                    ...) {
    loader l = {.file = file, .err = err, .errlen = errlen};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(&l, field, "%s", msg);
}

static int is_ip_literal(const char *h) {
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int is_wildcard(const char *h) {
    return strcmp(h, "*") == 0 || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0;
}

/* Splits a validated "tcp://HOST:PORT" into host (brackets removed) and port. */
static long endpoint_parts(const char *ep, char *host, size_t n) {
    const char *h, *rest;
    size_t hl;
    int br;
    host[0] = '\0';
    if (!ep || strncmp(ep, "tcp://", 6) != 0) return -1;
    long port = split_hostport(ep + 6, &h, &hl, &br, &rest, 1);
    if (port < 0 || hl >= n) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    return port;
}

int cfg_check_set(cfg_region *const *cfgs, size_t n, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfgs[i]->region, cfgs[j]->region) == 0)
                return set_fail(err, errlen, cfgs[i]->path, "region",
                                "%s is also the region of %s; each region has one config file",
                                Q(cfgs[i]->region), cfgs[j]->path);
    for (size_t i = 0; i < n; i++) {
        const cfg_region *c = cfgs[i];
        for (size_t k = 0; k < c->n_peers; k++) {
            const cfg_peer *p = &c->peers[k];
            const cfg_region *d = NULL;
            for (size_t j = 0; j < n && !d; j++)
                if (j != i && strcmp(cfgs[j]->region, p->region) == 0) d = cfgs[j];
            if (!d) continue;
            char f[64], ph[256], lh[256];
            snprintf(f, sizeof f, "peers[%zu].endpoint", k);
            long pp = endpoint_parts(p->endpoint, ph, sizeof ph);
            long lp = endpoint_parts(d->replicator.listen, lh, sizeof lh);
            int host_mismatch = strcmp(ph, lh) != 0 && !is_wildcard(lh) && is_ip_literal(ph) &&
                                is_ip_literal(lh);
            if (pp != lp || host_mismatch)
                return set_fail(err, errlen, c->path, f,
                                "%s does not match replicator.listen %s in %s (region %s)",
                                Q(p->endpoint), Q(d->replicator.listen), d->path, p->region);
            if (c->curve.enabled != d->curve.enabled)
                return set_fail(err, errlen, c->path, "curve.enabled",
                                "%s here but %s in %s (peer %s); both ends of a link must agree",
                                c->curve.enabled ? "true" : "false", d->curve.enabled ? "true" : "false",
                                d->path, p->region);
            if (c->curve.enabled && strcmp(p->public_key, d->curve.public_key) != 0) {
                snprintf(f, sizeof f, "peers[%zu].public_key", k);
                return set_fail(err, errlen, c->path, f,
                                "%s does not match the public key of %s's curve.secret_key_file in "
                                "%s (expected \"%s\")", Q(p->public_key), p->region, d->path,
                                d->curve.public_key);
            }
        }
    }
    return 0;
}
