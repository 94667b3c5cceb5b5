/* metrics.c -- the metrics registry and its Prometheus text exposition (see metrics.h).
 *
 * Owns: the registry, its families (a singly linked list, unsorted) and each family's
 * series (a chained hash table keyed by the label values, FNV-1a 64). Rendering sorts
 * copies of the pointer lists, so the output order is stable whatever the creation
 * order.
 * Invariants: a family's name is unique in its registry; a series' label values are
 * unique in its family; families and series are only freed by metrics_free(), so
 * their pointers are stable handles. Histogram buckets hold per-bucket (not
 * cumulative) counts; rendering accumulates them and derives _count from the same
 * reads, so _count equals the +Inf bucket in every scrape.
 * Threading: reg->mu guards the family list and every family's hash table (creation,
 * lookup, rendering). Values are C11 atomics updated without the mutex: counters with
 * fetch_add, gauges and sums as IEEE-754 bits with a compare-exchange loop. A scrape
 * racing with updates sees each value at some instant (no cross-series snapshot). */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TERN_VERSION
#define TERN_VERSION "unknown"
#endif

#define METRICS_SLOTS_MIN 16  /* initial hash slots per family (power of two) */

struct metrics_series {
    metrics_family *fam;
    metrics_series *next;               /* hash chain */
    uint64_t hash;
    char *values[METRICS_LABELS_MAX];   /* fam->n_labels owned strings */
    _Atomic uint64_t val;               /* counter value, or the gauge's double bits */
    _Atomic uint64_t sum_bits;          /* histogram: sum of observations, double bits */
    _Atomic uint64_t buckets[];         /* histogram: n_bounds + 1 counts (last is +Inf) */
};

struct metrics_family {
    metrics_registry *reg;
    metrics_family *next;               /* registry list */
    char *name;
    char *help;
    metrics_type type;
    size_t n_labels;
    char *labels[METRICS_LABELS_MAX];
    size_t n_bounds;                    /* histogram only */
    double bounds[METRICS_BUCKETS_MAX];
    metrics_series **slots;             /* n_slots chains (power of two) */
    size_t n_slots;
    size_t n_series;
};

struct metrics_registry {
    pthread_mutex_t mu;
    metrics_family *families;
};

static void metrics_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void metrics_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- doubles in atomics ------------------------------------------------------------ */

static uint64_t metrics_d2u(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double metrics_u2d(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void metrics_atomic_add_double(_Atomic uint64_t *a, double v) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, metrics_d2u(metrics_u2d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- validation ------------------------------------------------------------------- */

static int metrics_name_valid(const char *s, int colon_ok) {
    size_t n = 0;
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        int digit = c >= '0' && c <= '9';
        if (!(alpha || (digit && p != s))) return 0;
    }
    return n <= METRICS_NAME_MAX;
}

/* 1 when s is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int metrics_utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07;
        else return 0;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* ---- registry --------------------------------------------------------------------- */

static void metrics_family_free(metrics_family *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_slots; i++) {
        metrics_series *s = f->slots[i];
        while (s) {
            metrics_series *next = s->next;
            for (size_t j = 0; j < f->n_labels; j++) free(s->values[j]);
            free(s);
            s = next;
        }
    }
    free(f->slots);
    for (size_t j = 0; j < f->n_labels; j++) free(f->labels[j]);
    free(f->name);
    free(f->help);
    free(f);
}

metrics_registry *metrics_new(void) {
    static const char *const version_label[] = {"version", NULL};
    static const char *const version_value[] = {TERN_VERSION};
    metrics_registry *reg = calloc(1, sizeof *reg);
    metrics_family *bi, *up;
    if (!reg) return NULL;
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return NULL;
    }
    bi = metrics_gauge_new(reg, "tern_build_info", "Tern build information; always 1.", version_label, NULL, 0);
    up = metrics_gauge_new(reg, "tern_up", "1 while the daemon runs.", NULL, NULL, 0);
    if (!bi || !up || metrics_set_with(bi, version_value, 1) != 0 || metrics_set_with(up, NULL, 1) != 0) {
        metrics_free(reg);
        return NULL;
    }
    return reg;
}

void metrics_free(metrics_registry *reg) {
    metrics_family *f;
    if (!reg) return;
    f = reg->families;
    while (f) {
        metrics_family *next = f->next;
        metrics_family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

static metrics_family *metrics_family_new(metrics_registry *reg, metrics_type type, const char *name,
                                          const char *help, const char *const *labels, const double *bounds,
                                          size_t n_bounds, char *err, size_t errlen) {
    metrics_family *f;
    size_t n_labels = 0;
    if (!reg) {
        metrics_err(err, errlen, "metrics: no registry");
        return NULL;
    }
    if (!metrics_name_valid(name, 1)) {
        metrics_err(err, errlen, "metrics: bad metric name \"%s\": expected [a-zA-Z_:][a-zA-Z0-9_:]*, at most %d bytes",
                    name ? name : "(null)", METRICS_NAME_MAX);
        return NULL;
    }
    for (; labels && labels[n_labels]; n_labels++) {
        const char *l = labels[n_labels];
        if (n_labels >= METRICS_LABELS_MAX) {
            metrics_err(err, errlen, "metrics: %s: more than %d labels", name, METRICS_LABELS_MAX);
            return NULL;
        }
        if (!metrics_name_valid(l, 0) || strncmp(l, "__", 2) == 0) {
            metrics_err(err, errlen, "metrics: %s: bad label name \"%s\": expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with __",
                        name, l);
            return NULL;
        }
        if (type == METRICS_HISTOGRAM && strcmp(l, "le") == 0) {
            metrics_err(err, errlen, "metrics: %s: a histogram may not have the label \"le\"", name);
            return NULL;
        }
        for (size_t j = 0; j < n_labels; j++) {
            if (strcmp(labels[j], l) == 0) {
                metrics_err(err, errlen, "metrics: %s: label \"%s\" given twice", name, l);
                return NULL;
            }
        }
    }
    if (type == METRICS_HISTOGRAM) {
        if (!bounds || n_bounds == 0 || n_bounds > METRICS_BUCKETS_MAX) {
            metrics_err(err, errlen, "metrics: %s: expected 1..%d bucket bounds, got %zu", name, METRICS_BUCKETS_MAX,
                        bounds ? n_bounds : 0);
            return NULL;
        }
        for (size_t i = 0; i < n_bounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
                metrics_err(err, errlen, "metrics: %s: bucket bounds must be finite and strictly increasing (bound %zu)",
                            name, i);
                return NULL;
            }
        }
    }
    f = calloc(1, sizeof *f);
    if (!f) goto oom;
    f->reg = reg;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->n_slots = METRICS_SLOTS_MIN;
    f->slots = calloc(f->n_slots, sizeof *f->slots);
    if (!f->name || !f->help || !f->slots) goto oom;
    for (size_t i = 0; i < n_labels; i++) {
        f->labels[i] = strdup(labels[i]);
        if (!f->labels[i]) goto oom;
        f->n_labels = i + 1;
    }
    if (type == METRICS_HISTOGRAM) {
        memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
        f->n_bounds = n_bounds;
    }
    pthread_mutex_lock(&reg->mu);
    for (metrics_family *g = reg->families; g; g = g->next) {
        if (strcmp(g->name, name) == 0) {
            pthread_mutex_unlock(&reg->mu);
            metrics_family_free(f);
            metrics_err(err, errlen, "metrics: %s: a family of that name is already registered", name);
            return NULL;
        }
    }
    f->next = reg->families;
    reg->families = f;
    pthread_mutex_unlock(&reg->mu);
    return f;
oom:
    metrics_family_free(f);
    metrics_err(err, errlen, "metrics: %s: out of memory", name);
    return NULL;
}

metrics_family *metrics_counter_new(metrics_registry *reg, const char *name, const char *help,
                                    const char *const *labels, char *err, size_t errlen) {
    return metrics_family_new(reg, METRICS_COUNTER, name, help, labels, NULL, 0, err, errlen);
}

metrics_family *metrics_gauge_new(metrics_registry *reg, const char *name, const char *help,
                                  const char *const *labels, char *err, size_t errlen) {
    return metrics_family_new(reg, METRICS_GAUGE, name, help, labels, NULL, 0, err, errlen);
}

metrics_family *metrics_histogram_new(metrics_registry *reg, const char *name, const char *help,
                                      const char *const *labels, const double *bounds, size_t n_bounds,
                                      char *err, size_t errlen) {
    return metrics_family_new(reg, METRICS_HISTOGRAM, name, help, labels, bounds, n_bounds, err, errlen);
}

/* ---- series ----------------------------------------------------------------------- */

static uint64_t metrics_hash(const metrics_family *f, const char *const *values) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < f->n_labels; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++) {
            h ^= *p;
            h *= 1099511628211ULL;
        }
        h ^= 0xFF; /* never a byte of UTF-8: separates ("ab","c") from ("a","bc") */
        h *= 1099511628211ULL;
    }
    return h;
}

static int metrics_same_values(const metrics_family *f, const metrics_series *s, const char *const *values) {
    for (size_t i = 0; i < f->n_labels; i++)
        if (strcmp(s->values[i], values[i]) != 0) return 0;
    return 1;
}

/* Doubles the hash table; keeps the old one on out of memory (chains just grow). */
static void metrics_grow(metrics_family *f) {
    size_t n = f->n_slots * 2;
    metrics_series **slots = calloc(n, sizeof *slots);
    if (!slots) return;
    for (size_t i = 0; i < f->n_slots; i++) {
        metrics_series *s = f->slots[i];
        while (s) {
            metrics_series *next = s->next;
            s->next = slots[s->hash & (n - 1)];
            slots[s->hash & (n - 1)] = s;
            s = next;
        }
    }
    free(f->slots);
    f->slots = slots;
    f->n_slots = n;
}

metrics_series *metrics_series_get(metrics_family *f, const char *const *values) {
    metrics_series *s;
    uint64_t h;
    size_t nb;
    if (!f) return NULL;
    if (f->n_labels > 0 && !values) return NULL;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!values[i]) return NULL;
    h = metrics_hash(f, values);
    pthread_mutex_lock(&f->reg->mu);
    for (s = f->slots[h & (f->n_slots - 1)]; s; s = s->next)
        if (s->hash == h && metrics_same_values(f, s, values)) goto out;
    s = NULL;
    if (f->n_series >= METRICS_SERIES_MAX) goto out;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!metrics_utf8_valid(values[i])) goto out;
    nb = f->type == METRICS_HISTOGRAM ? f->n_bounds + 1 : 0;
    s = calloc(1, sizeof *s + nb * sizeof s->buckets[0]);
    if (!s) goto out;
    s->fam = f;
    s->hash = h;
    for (size_t i = 0; i < f->n_labels; i++) {
        s->values[i] = strdup(values[i]);
        if (!s->values[i]) {
            for (size_t j = 0; j < i; j++) free(s->values[j]);
            free(s);
            s = NULL;
            goto out;
        }
    }
    atomic_init(&s->val, f->type == METRICS_GAUGE ? metrics_d2u(0.0) : 0);
    atomic_init(&s->sum_bits, metrics_d2u(0.0));
    for (size_t i = 0; i < nb; i++) atomic_init(&s->buckets[i], 0);
    if (f->n_series + 1 > f->n_slots - f->n_slots / 4) metrics_grow(f);
    s->next = f->slots[h & (f->n_slots - 1)];
    f->slots[h & (f->n_slots - 1)] = s;
    f->n_series++;
out:
    pthread_mutex_unlock(&f->reg->mu);
    return s;
}

void metrics_inc(metrics_series *s, uint64_t n) {
    if (!s) return;
    if (s->fam->type == METRICS_COUNTER) atomic_fetch_add_explicit(&s->val, n, memory_order_relaxed);
    else if (s->fam->type == METRICS_GAUGE) metrics_atomic_add_double(&s->val, (double)n);
}

void metrics_set(metrics_series *s, double v) {
    if (!s || s->fam->type != METRICS_GAUGE) return;
    atomic_store_explicit(&s->val, metrics_d2u(v), memory_order_relaxed);
}

void metrics_set_int(metrics_series *s, int64_t v) { metrics_set(s, (double)v); }

void metrics_add(metrics_series *s, double v) {
    if (!s || s->fam->type != METRICS_GAUGE) return;
    metrics_atomic_add_double(&s->val, v);
}

void metrics_observe(metrics_series *s, double v) {
    const metrics_family *f;
    size_t i = 0;
    if (!s || s->fam->type != METRICS_HISTOGRAM || isnan(v)) return;
    f = s->fam;
    while (i < f->n_bounds && v > f->bounds[i]) i++;
    metrics_atomic_add_double(&s->sum_bits, v);
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
}

double metrics_value(const metrics_series *s) {
    uint64_t n = 0;
    if (!s) return 0;
    switch (s->fam->type) {
    case METRICS_COUNTER:
        return (double)atomic_load_explicit(&s->val, memory_order_relaxed);
    case METRICS_GAUGE:
        return metrics_u2d(atomic_load_explicit(&s->val, memory_order_relaxed));
    case METRICS_HISTOGRAM:
        for (size_t i = 0; i <= s->fam->n_bounds; i++) n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        return (double)n;
    }
    return 0;
}

int metrics_inc_with(metrics_family *fam, const char *const *values, uint64_t n) {
    metrics_series *s = metrics_series_get(fam, values);
    if (!s) return -1;
    metrics_inc(s, n);
    return 0;
}

int metrics_set_with(metrics_family *fam, const char *const *values, double v) {
    metrics_series *s = metrics_series_get(fam, values);
    if (!s) return -1;
    metrics_set(s, v);
    return 0;
}

int metrics_observe_with(metrics_family *fam, const char *const *values, double v) {
    metrics_series *s = metrics_series_get(fam, values);
    if (!s) return -1;
    metrics_observe(s, v);
    return 0;
}

/* ---- rendering -------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} metrics_buf;

static void metrics_put(metrics_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (b->len + n + 1 > cap) cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void metrics_puts(metrics_buf *b, const char *s) { metrics_put(b, s, strlen(s)); }

/* HELP text escapes \ and newline; label values also escape ". */
static void metrics_put_escaped(metrics_buf *b, const char *s, int quote) {
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\') rep = "\\\\";
        else if (*s == '\n') rep = "\\n";
        else if (quote && *s == '"') rep = "\\\"";
        if (!rep) continue;
        metrics_put(b, run, (size_t)(s - run));
        metrics_puts(b, rep);
        run = s + 1;
    }
    metrics_put(b, run, (size_t)(s - run));
}

/* Shortest of %.15g..%.17g that reads back as v; Prometheus spellings of NaN/Inf. */
static void metrics_fmt_double(char *out, size_t n, double v) {
    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* Writes "name{l1="v1",...,extra="x"} " (the braces only if there is a label). */
static void metrics_put_sample_head(metrics_buf *b, const metrics_family *f, const char *suffix,
                                    const metrics_series *s, const char *le) {
    int first = 1;
    metrics_puts(b, f->name);
    metrics_puts(b, suffix);
    if (f->n_labels == 0 && !le) {
        metrics_puts(b, " ");
        return;
    }
    metrics_puts(b, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (!first) metrics_puts(b, ",");
        first = 0;
        metrics_puts(b, f->labels[i]);
        metrics_puts(b, "=\"");
        metrics_put_escaped(b, s->values[i], 1);
        metrics_puts(b, "\"");
    }
    if (le) {
        if (!first) metrics_puts(b, ",");
        metrics_puts(b, "le=\"");
        metrics_puts(b, le);
        metrics_puts(b, "\"");
    }
    metrics_puts(b, "} ");
}

static void metrics_put_u64(metrics_buf *b, uint64_t v) {
    char num[32];
    snprintf(num, sizeof num, "%llu\n", (unsigned long long)v);
    metrics_puts(b, num);
}

static void metrics_put_double(metrics_buf *b, double v) {
    char num[40];
    metrics_fmt_double(num, sizeof num - 1, v);
    metrics_puts(b, num);
    metrics_puts(b, "\n");
}

static void metrics_render_series(metrics_buf *b, const metrics_family *f, const metrics_series *s) {
    uint64_t cum = 0;
    char le[40];
    switch (f->type) {
    case METRICS_COUNTER:
        metrics_put_sample_head(b, f, "", s, NULL);
        metrics_put_u64(b, atomic_load_explicit(&s->val, memory_order_relaxed));
        break;
    case METRICS_GAUGE:
        metrics_put_sample_head(b, f, "", s, NULL);
        metrics_put_double(b, metrics_u2d(atomic_load_explicit(&s->val, memory_order_relaxed)));
        break;
    case METRICS_HISTOGRAM:
        for (size_t i = 0; i <= f->n_bounds; i++) {
            cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
            if (i < f->n_bounds) metrics_fmt_double(le, sizeof le, f->bounds[i]);
            else snprintf(le, sizeof le, "+Inf");
            metrics_put_sample_head(b, f, "_bucket", s, le);
            metrics_put_u64(b, cum);
        }
        metrics_put_sample_head(b, f, "_sum", s, NULL);
        metrics_put_double(b, metrics_u2d(atomic_load_explicit(&s->sum_bits, memory_order_relaxed)));
        metrics_put_sample_head(b, f, "_count", s, NULL);
        metrics_put_u64(b, cum);
        break;
    }
}

static int metrics_cmp_family(const void *a, const void *b) {
    const metrics_family *x = *(const metrics_family *const *)a, *y = *(const metrics_family *const *)b;
    return strcmp(x->name, y->name);
}

static int metrics_cmp_series(const void *a, const void *b) {
    const metrics_series *x = *(const metrics_series *const *)a, *y = *(const metrics_series *const *)b;
    for (size_t i = 0; i < x->fam->n_labels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c) return c;
    }
    return 0;
}

static const char *metrics_type_name(metrics_type t) {
    switch (t) {
    case METRICS_COUNTER: return "counter";
    case METRICS_GAUGE: return "gauge";
    case METRICS_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

int metrics_render(metrics_registry *reg, char **out, size_t *len) {
    metrics_buf b = {NULL, 0, 0, 0};
    metrics_family **fams = NULL;
    metrics_series **ser = NULL;
    size_t nf = 0, cap_ser = 0;
    *out = NULL;
    *len = 0;
    if (!reg) return -1;
    metrics_put(&b, "", 0); /* an empty registry still yields "" */
    pthread_mutex_lock(&reg->mu);
    for (metrics_family *f = reg->families; f; f = f->next) nf++;
    fams = calloc(nf ? nf : 1, sizeof *fams);
    if (!fams) {
        b.oom = 1;
        goto done;
    }
    nf = 0;
    for (metrics_family *f = reg->families; f; f = f->next) fams[nf++] = f;
    qsort(fams, nf, sizeof *fams, metrics_cmp_family);
    for (size_t i = 0; i < nf && !b.oom; i++) {
        metrics_family *f = fams[i];
        size_t ns = 0;
        if (f->n_series == 0) continue;
        if (f->n_series > cap_ser) {
            metrics_series **p = realloc(ser, f->n_series * sizeof *p);
            if (!p) {
                b.oom = 1;
                break;
            }
            ser = p;
            cap_ser = f->n_series;
        }
        for (size_t j = 0; j < f->n_slots; j++)
            for (metrics_series *s = f->slots[j]; s; s = s->next) ser[ns++] = s;
        qsort(ser, ns, sizeof *ser, metrics_cmp_series);
        metrics_puts(&b, "# HELP ");
        metrics_puts(&b, f->name);
        metrics_puts(&b, " ");
        metrics_put_escaped(&b, f->help, 0);
        metrics_puts(&b, "\n# TYPE ");
        metrics_puts(&b, f->name);
        metrics_puts(&b, " ");
        metrics_puts(&b, metrics_type_name(f->type));
        metrics_puts(&b, "\n");
        for (size_t j = 0; j < ns; j++) metrics_render_series(&b, f, ser[j]);
    }
done:
    pthread_mutex_unlock(&reg->mu);
    free(fams);
    free(ser);
    if (b.oom) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
