/* ternctl.h -- the internal interface of ternctl, Tern's operator CLI (prefix ctl_).
 *
 * Files:
 *   main.c    global options (--config, --json, --help, --version) and dispatch
 *   core.c    pure helpers (no I/O): checked number parsing, lag percentiles, DynamoDB
 *             sequence-number order, the key-id hash map, heartbeat parsing, formatting.
 *             tests/unit/test_ternctl.c #includes it directly.
 *   ctl.c     the run context: configs, per-region Redis/store handles opened lazily,
 *             the link list, aligned text tables, error reporting
 *   status.c  `status` and `lag` (they read the same link state)
 *   wait.c    `wait-caught-up`
 *   verify.c  `verify`
 *   backfill.c `backfill`
 *   admin.c   `keygen`, `pause`, `resume`
 *
 * Exit codes of every command: CTL_EXIT_OK (0) success / identical / caught up;
 * CTL_EXIT_NEGATIVE (1) the answer is "no" (differences found, timed out);
 * CTL_EXIT_ERROR (2) usage error, bad config, or a region's Redis or store unreachable.
 *
 * What ternctl reads is the Redis key layout of state/state.h (docs/redis-keys.md).
 * Threading: single-threaded except verify's scan callbacks (see verify.c). */
#ifndef TERN_TERNCTL_H
#define TERN_TERNCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cfg.h"
#include "state.h"
#include "store.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_NEGATIVE 1
#define CTL_EXIT_ERROR 2

#define CTL_LAG_WINDOW_MS 60000     /* p50/p99 use lag samples of the last minute */
#define CTL_PENDING_CAP 1000        /* pending log entries are counted up to this many */
#define CTL_CONFIG_MAX 64           /* configs loaded at once */

/* ---------------------------------------------------------------- core.c (pure) */

/* Strict decimal parsing of the whole string (optional '-' for ll; no spaces, no
 * trailing bytes, no overflow). Return 0 and set *out, or -1 (*out untouched). */
int ctl_parse_ll(const char *s, long long *out);
int ctl_parse_ull(const char *s, unsigned long long *out);
/* As ctl_parse_ll, then requires min <= value <= max. */
int ctl_parse_range(const char *s, long long min, long long max, long long *out);
/* A positive, finite number of seconds (decimals allowed) up to 1e7: 0/-1. */
int ctl_parse_seconds(const char *s, double *out);

/* Splits "a,b,c" into a malloc'd array of malloc'd strings (empty items rejected).
 * Returns 0 with *out and *n set (free with ctl_list_free), or -1 (nothing to free). */
int ctl_split_list(const char *csv, char ***out, size_t *n);
void ctl_list_free(char **list, size_t n);

/* Returns 1 if s is a non-empty string of decimal digits, else 0. */
int ctl_seq_valid(const char *s);
/* Orders two DynamoDB Streams sequence numbers (decimal strings of any length):
 * leading zeros ignored, then shorter is smaller, then bytewise. <0, 0, >0. */
int ctl_seq_cmp(const char *a, const char *b);

/* Lag statistics over a window (see docs/lag.md). */
typedef struct {
    size_t n;           /* samples inside the window */
    size_t bad;         /* samples that did not parse ("at_ms lag_ms") */
    long long p50, p99; /* nearest rank; valid only when n > 0 */
    long long max;
} ctl_lag_stats;

/* Nearest-rank percentile: sorts vals[0..n) ascending in place and returns the value
 * of rank ceil(p / 100 * n) (1-based; at least 1). p in (0, 100]. Returns 0 and sets
 * *out, or -1 when n == 0 or p is out of range. */
int ctl_percentile(long long *vals, size_t n, double p, long long *out);

/* Computes p50/p99/max over the samples "at_ms lag_ms" whose at_ms >= now_ms -
 * window_ms. samples[i] may be NULL (skipped as bad). Returns 0, or -1 on allocation
 * failure. */
int ctl_lag_window(const char *const *samples, size_t n, long long now_ms, long long window_ms,
                   ctl_lag_stats *out);

/* Parses a heartbeat value "<ms> <pid> <status...>" (status may be empty or hold
 * spaces). Returns 0 with *ms, *pid and *status (borrowed from v, "" if none), or -1. */
int ctl_parse_heartbeat(const char *v, long long *ms, long long *pid, const char **status);

/* Formats a duration in ms for people: "850ms", "12.3s", "4m05s", "2h03m", negative
 * values with '-'. Always NUL-terminates (len > 0). */
void ctl_fmt_ms(long long ms, char *buf, size_t len);

/* Display width of UTF-8 text: the number of code points. */
size_t ctl_text_width(const char *s);

/* Decodes exactly 2*n hex digits into out[n]. 0/-1. */
int ctl_hex_decode(const char *hex, uint8_t *out, size_t n);
void ctl_hex_encode(const uint8_t *in, size_t n, char *out /* 2n+1 */);

/* Open-addressing hash map (linear probing) from a 32-byte key id (the binary form of
 * item_key_id's 64 hex chars) to a 32-byte digest. Grows at 70% load. Not locked:
 * callers serialise access. */
typedef struct ctl_kmap ctl_kmap;
ctl_kmap *ctl_kmap_new(size_t expected);
void ctl_kmap_free(ctl_kmap *m);
/* Inserts or replaces. Returns 0 (new key), 1 (replaced), -1 (allocation failure,
 * map unchanged). */
int ctl_kmap_put(ctl_kmap *m, const uint8_t kid[32], const uint8_t digest[32]);
/* Returns the digest stored for kid (borrowed, valid until the next put) or NULL. */
const uint8_t *ctl_kmap_get(const ctl_kmap *m, const uint8_t kid[32]);
size_t ctl_kmap_count(const ctl_kmap *m);
/* Iteration: start with *pos = 0; returns 1 and sets *kid and *digest (borrowed) for each
 * entry, 0 at the end. The map must not change during an iteration. */
int ctl_kmap_next(const ctl_kmap *m, size_t *pos, const uint8_t **kid, const uint8_t **digest);

/* ---------------------------------------------------------------- ctl.c */

typedef struct {
    cfg_region **cfgs;    /* loaded configs, in the order given (or sorted file names) */
    size_t n;
    state **st;           /* per config: Redis handle opened on first use, or NULL */
    store **sto;          /* per config: store handle made on first use, or NULL */
    store **streams;      /* per config: Streams API handle (store.streams_endpoint), lazily */
    int json;             /* --json */
} ctl_ctx;

/* Loads the given config files (n == 0: every config/NAME.json under the current
 * directory, sorted) with cfg_load and checks them with cfg_check_set. On error prints
 * the loader's line and returns -1 (exit 2). */
int ctl_load(ctl_ctx *c, char **paths, size_t n);
void ctl_ctx_free(ctl_ctx *c);
/* Index of region's config, or -1. */
int ctl_find(const ctl_ctx *c, const char *region);
/* 1 if cfg lists table. */
int ctl_has_table(const cfg_region *cfg, const char *table);
/* Takes the link option at argv[*i] -- --from R, --to R, and --table T when table is not
 * NULL -- into *from, *to or *table (argv's strings): 1 with *i moved to its value, or 0
 * when argv[*i] is none of them (or lacks its value). */
int ctl_link_opt(int argc, char **argv, int *i, const char **from, const char **to, const char **table);
/* The link --from FROM --to TO of command cmd: both given, both configs loaded, TO a peer
 * of FROM, and table (unless NULL) in both configs. Their config indexes in *r1, *r2; 0,
 * or -1 after printing why ("cmd: ..."). */
int ctl_find_link(const ctl_ctx *c, const char *cmd, const char *from, const char *to, const char *table, int *r1,
                  int *r2);
/* DescribeTable of table in the n regions regs[]: their key schema in *out (strings in
 * it), which must be the same in all. 0, or -1 after printing why. */
int ctl_key_schema(ctl_ctx *c, const int *regs, size_t n, const char *table, store_table_info *out);
/* The region's Redis handle (opened now if needed); NULL after printing an error
 * naming the region and address. Borrowed from c. */
state *ctl_state(ctl_ctx *c, int i);
/* The region's store handle; NULL after printing an error. Borrowed from c. The
 * handle makes no connection until its first call. */
store *ctl_store(ctl_ctx *c, int i);
/* The Streams API handle of config i (borrowed; NULL after printing an error). */
store *ctl_streams(ctl_ctx *c, int i);
/* store_opts for region i (strings borrowed from the config; for store_scan_all). */
void ctl_store_opts(const ctl_ctx *c, int i, store_opts *o);
/* "host:port" or the unix socket path of region i's Redis (no password). */
void ctl_redis_addr(const ctl_ctx *c, int i, char *buf, size_t len);
/* Prints "ternctl: region R: redis ADDR: <state error>" to stderr. */
void ctl_redis_fail(ctl_ctx *c, int i, const char *what);
/* Prints "ternctl: region R: store ENDPOINT: <op>: <status>: <error>" to stderr. */
void ctl_store_fail(ctl_ctx *c, int i, const char *op, store_status ss);

/* Prints a formatted error line "ternctl: ..." to stderr. */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Redis helpers on region i. Each returns 0, or -1 after ctl_redis_fail. */
/* GET: *out is a malloc'd string or NULL when absent. */
int ctl_get(ctl_ctx *c, int i, const char *key, char **out);
/* HGETALL: the reply (array of field/value pairs) in *out; caller freeReplyObject()s. */
int ctl_hgetall(ctl_ctx *c, int i, const char *key, redisReply **out);
/* Field of an HGETALL reply (borrowed) or NULL. */
const char *ctl_hfield(const redisReply *h, const char *field);
/* Field parsed as an integer: 0 and *out, or -1 if absent or not a number. */
int ctl_hfield_ll(const redisReply *h, const char *field, long long *out);

/* One replication link: table T shipped from region src to region dst. */
typedef struct {
    int src, dst;            /* config indexes; dst is -1 when dst's config is not loaded */
    const char *src_name, *dst_name, *table; /* borrowed from the configs */
} ctl_link;

/* Every (source, peer, table) of the loaded configs, in config order; when both
 * configs are loaded only tables both list. table_filter (NULL: all) keeps one table.
 * *out is malloc'd (caller frees). Returns 0 or -1 (out of memory). */
int ctl_links(const ctl_ctx *c, const char *table_filter, ctl_link **out, size_t *n);

/* Aligned text table. Cells are copied. */
typedef struct ctl_table ctl_table;
ctl_table *ctl_table_new(size_t ncols);
void ctl_table_free(ctl_table *t);
/* Adds a row of ncols cells (NULL cells print as "-"). 0/-1. */
int ctl_table_row(ctl_table *t, const char *const *cells);
/* Prints rows with columns padded to their widest cell, two spaces apart. */
void ctl_table_print(const ctl_table *t, FILE *f);

/* Prints a cJSON document to stdout (formatted) followed by a newline; frees it. 0/-1. */
int ctl_json_print(void *cjson_doc);

/* ---------------------------------------------------------------- commands
 * argv[0] is the command name; each returns an exit code. */
int ctl_cmd_status(ctl_ctx *c, int argc, char **argv);
int ctl_cmd_lag(ctl_ctx *c, int argc, char **argv);
int ctl_cmd_wait(ctl_ctx *c, int argc, char **argv);
int ctl_cmd_verify(ctl_ctx *c, int argc, char **argv);
int ctl_cmd_backfill(ctl_ctx *c, int argc, char **argv);
int ctl_cmd_pause(ctl_ctx *c, int argc, char **argv, int pause);
/* keygen needs no config. */
int ctl_cmd_keygen(int json, int argc, char **argv);

#endif
