/* metrics.h -- Tern's Prometheus metrics (prefix metrics_): a thread-safe registry of
 * counters, gauges and histograms, its text exposition (format 0.0.4), and a small
 * HTTP endpoint (libmicrohttpd) serving GET /metrics and GET /healthz.
 *
 * Model:
 *   registry  1..n  families   (name, help, type, 0..METRICS_LABELS_MAX label names)
 *   family    0..n  series     (one per tuple of label values, created on first use)
 * Families and series live as long as the registry: their pointers are stable
 * handles, never freed before metrics_free(). Hot paths should look a series up once
 * (metrics_series_get()) and keep the handle; the *_with() helpers look it up on each call
 * (a hash lookup under the registry mutex).
 *
 * Every registry holds two families from metrics_new() on:
 *   tern_build_info{version="<TERN_VERSION>"} 1   and   tern_up 1
 *
 * Values:
 *   counter    uint64, only ever increases (metrics_inc adds n >= 0).
 *   gauge      double; metrics_set_int() stores an int64 as a double, exact for
 *              |v| <= 2^53 (far beyond any lag in ms or queue length).
 *   histogram  fixed upper bounds given at creation, strictly increasing, finite;
 *              +Inf is implicit (do not pass it). Rendered as cumulative _bucket{le}
 *              series ending in le="+Inf", then _sum and _count; _count always
 *              equals the +Inf bucket in one scrape (both come from the same counts).
 *
 * Names: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; a histogram may not use the
 * label "le". Label values are any UTF-8 (escaped on output); invalid UTF-8 is
 * refused. A family holds at most METRICS_SERIES_MAX series (a guard against
 * unbounded label values): beyond it metrics_series_get() returns NULL.
 *
 * Output order is stable: families sorted by name (byte order), series sorted by
 * their label values (byte order, first label first).
 *
 * Threading: every function may be called from any thread concurrently, except
 * metrics_free() / metrics_server_stop(), which must be the last call on their
 * object (stop the server before freeing the registry it serves). Value updates on a
 * series handle are lock-free C11 atomics; creating families/series and rendering
 * take the registry mutex. */
#ifndef TERN_METRICS_H
#define TERN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_LABELS_MAX 3      /* label names per family */
#define METRICS_BUCKETS_MAX 32    /* histogram bounds per family (+Inf not counted) */
#define METRICS_SERIES_MAX 10000  /* series per family */
#define METRICS_NAME_MAX 128      /* bytes of a metric or label name */

typedef struct metrics_registry metrics_registry;
typedef struct metrics_family metrics_family;   /* owned by its registry */
typedef struct metrics_series metrics_series;   /* owned by its registry */
typedef struct metrics_server metrics_server;

typedef enum {
    METRICS_COUNTER,     /* monotonically increasing uint64 */
    METRICS_GAUGE,       /* double that goes up and down */
    METRICS_HISTOGRAM    /* observations counted into fixed buckets, plus sum and count */
} metrics_type;

/* The lag buckets used by Tern's daemons, in ms (13 bounds; +Inf implicit). */
#define METRICS_LAG_MS_BOUNDS {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

/* ---- registry ---------------------------------------------------------------- */

/* New registry holding tern_build_info and tern_up. NULL on out of memory. The
 * caller frees it with metrics_free(). */
metrics_registry *metrics_new(void);

/* Frees the registry, its families and series (every handle becomes invalid). NULL
 * is fine. No other thread may use it any more (stop its server first). */
void metrics_free(metrics_registry *reg);

/* Registers a family. labels is an array of label names terminated by NULL (NULL
 * itself for no labels), at most METRICS_LABELS_MAX. Returns the family (owned by the
 * registry), or NULL with one line in err: bad name or label, too many labels, a
 * name already registered, or out of memory. Strings are copied. */
metrics_family *metrics_counter_new(metrics_registry *reg, const char *name, const char *help,
                                    const char *const *labels, char *err, size_t errlen);
metrics_family *metrics_gauge_new(metrics_registry *reg, const char *name, const char *help,
                                  const char *const *labels, char *err, size_t errlen);
/* bounds: n_bounds (1..METRICS_BUCKETS_MAX) finite, strictly increasing upper bounds;
 * copied. */
metrics_family *metrics_histogram_new(metrics_registry *reg, const char *name, const char *help,
                                      const char *const *labels, const double *bounds, size_t n_bounds,
                                      char *err, size_t errlen);

/* ---- series ------------------------------------------------------------------ */

/* The series of fam for these label values (an array of exactly as many strings as
 * the family has labels; NULL for a family without labels), created on first use.
 * Returns a handle owned by the registry, valid until metrics_free(); NULL when a
 * value is NULL or invalid UTF-8, the family is full (METRICS_SERIES_MAX), or out of
 * memory. Values are copied. */
metrics_series *metrics_series_get(metrics_family *fam, const char *const *values);

/* Counter: adds n. Gauge: adds (double)n. Histogram: ignored. NULL s is a no-op. */
void metrics_inc(metrics_series *s, uint64_t n);
/* Gauge: sets / adds v. Other types: ignored. NULL s is a no-op. */
void metrics_set(metrics_series *s, double v);
void metrics_set_int(metrics_series *s, int64_t v);
void metrics_add(metrics_series *s, double v);
/* Histogram: counts v into the first bucket whose bound is >= v (else +Inf) and adds
 * it to the sum. NaN is ignored. Other types: ignored. NULL s is a no-op. */
void metrics_observe(metrics_series *s, double v);

/* Current value, for tests and status lines: counter (as double), gauge, or a
 * histogram's count. 0 for NULL. */
double metrics_value(const metrics_series *s);

/* One-call helpers: metrics_series_get() then the update. 0, or -1 when the series could
 * not be had (see metrics_series_get). */
int metrics_inc_with(metrics_family *fam, const char *const *values, uint64_t n);
int metrics_set_with(metrics_family *fam, const char *const *values, double v);
int metrics_observe_with(metrics_family *fam, const char *const *values, double v);

/* ---- exposition ---------------------------------------------------------------- */

/* Renders every family in the Prometheus text format 0.0.4 into a new NUL-terminated
 * buffer: *out (the caller frees it with free()) and *len (bytes, without the NUL).
 * Families without series are omitted. 0, or -1 on out of memory (*out = NULL). */
int metrics_render(metrics_registry *reg, char **out, size_t *len);

/* The Content-Type of metrics_render()'s output. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- HTTP endpoint -------------------------------------------------------------- */

/* Health check for GET /healthz, called on the server's thread (so it must be
 * thread-safe, e.g. read atomics). Returns 1 when healthy; otherwise 0 with a short
 * reason (one line, no secrets) written into reason (NUL-terminated). */
typedef int (*metrics_health_fn)(void *ud, char *reason, size_t reasonlen);

/* Per-connection limits of the endpoint. */
#define METRICS_HTTP_CONN_MAX 16         /* concurrent connections */
#define METRICS_HTTP_CONN_TIMEOUT_S 10   /* idle connection timeout, s */

/* Starts an HTTP server on its own thread (libmicrohttpd, internal polling thread)
 * bound to bind_addr:port. bind_addr is an IPv4 or IPv6 literal; NULL means
 * "127.0.0.1" (metrics stay local unless asked otherwise). port 0 picks a free port
 * (see metrics_server_port). Routes:
 *   GET|HEAD /metrics  200, METRICS_CONTENT_TYPE, metrics_render(reg)
 *   GET|HEAD /healthz  200 "ok\n" when health is NULL or returns 1;
 *                      503 "unhealthy: <reason>\n" otherwise
 *   other paths        404; other methods 405 with "Allow: GET, HEAD".
 * reg and ud are borrowed and must outlive the server. Returns the server, or NULL
 * with one line in err (bad address, port in use, out of memory). The caller stops
 * it with metrics_server_stop(). */
metrics_server *metrics_serve(metrics_registry *reg, const char *bind_addr, int port,
                              metrics_health_fn health, void *ud, char *err, size_t errlen);

/* The TCP port the server is bound to (useful after port 0); -1 for NULL. */
int metrics_server_port(const metrics_server *srv);

/* Stops the server (closes connections, joins its thread) and frees it. NULL is fine. */
void metrics_server_stop(metrics_server *srv);

#endif
