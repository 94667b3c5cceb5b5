/* core.c -- ternctl's pure helpers (see ternctl.h): checked number parsing, lag
 * percentiles, DynamoDB sequence-number order, heartbeat parsing, formatting, and the
 * key-id hash map used by verify.
 *
 * Owns nothing global; no I/O. Every function is reentrant; a ctl_kmap belongs to one
 * thread at a time (verify serialises access with a mutex).
 * tests/unit/test_ternctl.c #includes this file, so it must depend on libc only. */
#include "ternctl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int ctl_parse_ll(const char *s, long long *out) {
    char *end;
    long long v;
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9'))) return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) return -1;
    *out = v;
    return 0;
}

int ctl_parse_ull(const char *s, unsigned long long *out) {
    char *end;
    unsigned long long v;
    if (!s || *s < '0' || *s > '9') return -1; /* strtoull would accept "-1" */
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') return -1;
    *out = v;
    return 0;
}

int ctl_parse_range(const char *s, long long min, long long max, long long *out) {
    long long v;
    if (ctl_parse_ll(s, &v) != 0 || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int ctl_parse_seconds(const char *s, double *out) {
    char *end;
    double v;
    if (!s || !*s || !((*s >= '0' && *s <= '9') || *s == '.')) return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v <= 0 || v > 1e7) return -1;
    *out = v;
    return 0;
}

void ctl_list_free(char **list, size_t n) {
    for (size_t i = 0; list && i < n; i++) free(list[i]);
    free(list);
}

int ctl_split_list(const char *csv, char ***out, size_t *n) {
    char **list = NULL;
    size_t cnt = 0;
    const char *p = csv;
    if (!csv || !*csv) return -1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char **nl;
        if (len == 0) goto fail;
        nl = realloc(list, (cnt + 1) * sizeof *nl);
        if (!nl) goto fail;
        list = nl;
        list[cnt] = malloc(len + 1);
        if (!list[cnt]) goto fail;
        memcpy(list[cnt], p, len);
        list[cnt][len] = '\0';
        cnt++;
        if (!comma) break;
        p = comma + 1;
    }
    *out = list;
    *n = cnt;
    return 0;
fail:
    ctl_list_free(list, cnt);
    return -1;
}

int ctl_seq_valid(const char *s) {
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

int ctl_seq_cmp(const char *a, const char *b) {
    size_t la, lb;
    int c;
    while (*a == '0' && a[1]) a++;
    while (*b == '0' && b[1]) b++;
    la = strlen(a);
    lb = strlen(b);
    if (la != lb) return la < lb ? -1 : 1;
    c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

static int ctl_ll_cmp(const void *x, const void *y) {
    long long a = *(const long long *)x, b = *(const long long *)y;
    return a < b ? -1 : a > b;
}

int ctl_percentile(long long *vals, size_t n, double p, long long *out) {
    double r;
    size_t rank;
    if (n == 0 || !(p > 0 && p <= 100)) return -1;
    qsort(vals, n, sizeof *vals, ctl_ll_cmp);
    r = ceil(p / 100.0 * (double)n);
    rank = r < 1 ? 1 : (size_t)r;
    if (rank > n) rank = n;
    *out = vals[rank - 1];
    return 0;
}

/* "at_ms lag_ms": two integers separated by one space. 0/-1. */
static int ctl_parse_sample(const char *s, long long *at, long long *lag) {
    char buf[64];
    const char *sp;
    size_t len;
    if (!s) return -1;
    sp = strchr(s, ' ');
    if (!sp) return -1;
    len = (size_t)(sp - s);
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return ctl_parse_ll(buf, at) == 0 && ctl_parse_ll(sp + 1, lag) == 0 ? 0 : -1;
}

int ctl_lag_window(const char *const *samples, size_t n, long long now_ms, long long window_ms,
                   ctl_lag_stats *out) {
    long long *vals = NULL;
    memset(out, 0, sizeof *out);
    if (n == 0) return 0;
    vals = malloc(n * sizeof *vals);
    if (!vals) return -1;
    for (size_t i = 0; i < n; i++) {
        long long at, lag;
        if (ctl_parse_sample(samples[i], &at, &lag) != 0) {
            out->bad++;
            continue;
        }
        if (at < now_ms - window_ms) continue;
        if (out->n == 0 || lag > out->max) out->max = lag;
        vals[out->n++] = lag;
    }
    if (out->n > 0) {
        ctl_percentile(vals, out->n, 50, &out->p50);
        ctl_percentile(vals, out->n, 99, &out->p99);
    }
    free(vals);
    return 0;
}

int ctl_parse_heartbeat(const char *v, long long *ms, long long *pid, const char **status) {
    char a[32], b[32];
    const char *p = v, *sp;
    size_t len;
    if (!v) return -1;
    sp = strchr(p, ' ');
    if (!sp || (len = (size_t)(sp - p)) == 0 || len >= sizeof a) return -1;
    memcpy(a, p, len);
    a[len] = '\0';
    p = sp + 1;
    sp = strchr(p, ' ');
    len = sp ? (size_t)(sp - p) : strlen(p);
    if (len == 0 || len >= sizeof b) return -1;
    memcpy(b, p, len);
    b[len] = '\0';
    if (ctl_parse_ll(a, ms) != 0 || ctl_parse_ll(b, pid) != 0) return -1;
    *status = sp ? sp + 1 : p + len;
    return 0;
}

void ctl_fmt_ms(long long ms, char *buf, size_t len) {
    const char *sign = "";
    unsigned long long u;
    if (len == 0) return;
    if (ms < 0) {
        sign = "-";
        u = (unsigned long long)(-(ms + 1)) + 1;
    } else {
        u = (unsigned long long)ms;
    }
    if (u < 1000)
        snprintf(buf, len, "%s%llums", sign, u);
    else if (u < 60000)
        snprintf(buf, len, "%s%llu.%llus", sign, u / 1000, (u % 1000) / 100);
    else if (u < 3600000ULL)
        snprintf(buf, len, "%s%llum%02llus", sign, u / 60000, (u % 60000) / 1000);
    else
        snprintf(buf, len, "%s%lluh%02llum", sign, u / 3600000ULL, (u % 3600000ULL) / 60000);
}

size_t ctl_text_width(const char *s) {
    size_t w = 0;
    for (; s && *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static int ctl_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ctl_hex_decode(const char *hex, uint8_t *out, size_t n) {
    if (!hex || strlen(hex) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = ctl_hexval(hex[2 * i]), lo = ctl_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void ctl_hex_encode(const uint8_t *in, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- key-id hash map ---- */

typedef struct {
    uint8_t kid[32];
    uint8_t digest[32];
    uint8_t used;
} ctl_kslot;

struct ctl_kmap {
    ctl_kslot *slots;
    size_t cap;          /* power of two */
    size_t count;
};

/* Key ids are SHA-256 output: their first 8 bytes are already uniform. */
static size_t ctl_kmap_hash(const uint8_t kid[32]) {
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) h = h << 8 | kid[i];
    return (size_t)(h ^ (h >> 29));
}

ctl_kmap *ctl_kmap_new(size_t expected) {
    ctl_kmap *m = calloc(1, sizeof *m);
    size_t cap = 64;
    if (!m) return NULL;
    while (cap < expected * 2 && cap < ((size_t)1 << 40)) cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->cap = cap;
    return m;
}

void ctl_kmap_free(ctl_kmap *m) {
    if (!m) return;
    free(m->slots);
    free(m);
}

static ctl_kslot *ctl_kmap_find(ctl_kslot *slots, size_t cap, const uint8_t kid[32]) {
    size_t i = ctl_kmap_hash(kid) & (cap - 1);
    while (slots[i].used && memcmp(slots[i].kid, kid, 32) != 0) i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int ctl_kmap_grow(ctl_kmap *m) {
    size_t ncap = m->cap * 2;
    ctl_kslot *ns;
    if (ncap / 2 != m->cap || ncap > SIZE_MAX / sizeof *ns) return -1;
    ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].used) *ctl_kmap_find(ns, ncap, m->slots[i].kid) = m->slots[i];
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int ctl_kmap_put(ctl_kmap *m, const uint8_t kid[32], const uint8_t digest[32]) {
    ctl_kslot *s = ctl_kmap_find(m->slots, m->cap, kid);
    if (s->used) {
        memcpy(s->digest, digest, 32);
        return 1;
    }
    if ((m->count + 1) * 10 > m->cap * 7) {
        if (ctl_kmap_grow(m) != 0) return -1;
        s = ctl_kmap_find(m->slots, m->cap, kid);
    }
    memcpy(s->kid, kid, 32);
    memcpy(s->digest, digest, 32);
    s->used = 1;
    m->count++;
    return 0;
}

const uint8_t *ctl_kmap_get(const ctl_kmap *m, const uint8_t kid[32]) {
    const ctl_kslot *s = ctl_kmap_find(m->slots, m->cap, kid);
    return s->used ? s->digest : NULL;
}

size_t ctl_kmap_count(const ctl_kmap *m) { return m->count; }

int ctl_kmap_next(const ctl_kmap *m, size_t *pos, const uint8_t **kid, const uint8_t **digest) {
    while (*pos < m->cap) {
        const ctl_kslot *s = &m->slots[(*pos)++];
        if (s->used) {
            *kid = s->kid;
            *digest = s->digest;
            return 1;
        }
    }
    return 0;
}
