/* lww.c -- versions, the hybrid logical clock and the last-writer-wins decision.
 *
 * Owns: the version text form (format/parse), the total order on versions, the HLC
 * state of one region (struct lww_clock) and the LWW decision.
 *
 * Invariants:
 *  - A valid version has ms <= LWW_MS_MAX, counter <= LWW_COUNTER_MAX and a region of
 *    1..31 chars of [a-z0-9-]. Fixed-width zero-padded digits plus a region made of
 *    bytes above NUL make strcmp of the text agree with lww_version_compare.
 *  - clock->last is the greatest version the clock produced or observed; its ms and
 *    counter are always in range (observed ones are clamped); lww_clock_now returns a version
 *    strictly greater than clock->last (except when saturated at the top of the range)
 *    and stores it as the new last.
 *
 * Threading: all functions are pure except the clock, whose state is guarded by its
 * own mutex, so a clock may be shared by threads. */
#include "lww.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lww_clock {
    pthread_mutex_t mu;   /* guards last */
    char region[LWW_REGION_MAX];
    lww_version last;     /* greatest version produced or observed */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int lww_region_valid(const char *region)
{
    if (!region)
        return 0;
    size_t n = 0;
    for (const char *p = region; *p; p++, n++) {
        char ch = *p;
        if (n >= LWW_REGION_MAX - 1)
            return 0;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return 0;
    }
    return n >= 1;
}

static int version_valid(const lww_version *v)
{
    return v && v->ms <= LWW_MS_MAX && v->counter <= LWW_COUNTER_MAX &&
           memchr(v->region, '\0', sizeof v->region) != NULL && lww_region_valid(v->region);
}

int lww_version_format(const lww_version *v, char *buf, size_t len)
{
    if (!buf || len == 0)
        return -1;
    buf[0] = '\0';
    if (!version_valid(v))
        return -1;
    int n = snprintf(buf, len, "%013llu-%06u-%s", (unsigned long long)v->ms,
                     (unsigned)v->counter, v->region);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

/* Reads exactly width decimal digits at s into *out; returns 0 or -1. */
static int fixed_digits(const char *s, int width, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < width; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int lww_version_parse(const char *s, lww_version *out, char *err, size_t errlen)
{
    if (!s || !out) {
        set_err(err, errlen, "%s", "no version text");
        return -1;
    }
    size_t len = strlen(s);
    uint64_t ms = 0, counter = 0;
    /* Check digit runs before reading s[13]/s[20], so short input never over-reads. */
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i != 13 || s[13] != '-') {
        set_err(err, errlen, "version \"%.64s\": expected 13 digits of ms then '-'", s);
        return -1;
    }
    size_t j = 14;
    while (j < len && s[j] >= '0' && s[j] <= '9')
        j++;
    if (j != 20 || s[20] != '-') {
        set_err(err, errlen, "version \"%.64s\": expected 6 digits of counter then '-'", s);
        return -1;
    }
    if (fixed_digits(s, 13, &ms) != 0 || fixed_digits(s + 14, 6, &counter) != 0) {
        set_err(err, errlen, "version \"%.64s\": bad digits", s);
        return -1;
    }
    const char *region = s + 21;
    if (!lww_region_valid(region)) {
        set_err(err, errlen,
                "version \"%.64s\": region must be 1..31 chars of [a-z0-9-]", s);
        return -1;
    }
    out->ms = ms;
    out->counter = (uint32_t)counter;
    memset(out->region, 0, sizeof out->region);
    memcpy(out->region, region, strlen(region));
    return 0;
}

int lww_version_compare(const lww_version *a, const lww_version *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->counter != b->counter)
        return a->counter < b->counter ? -1 : 1;
    int c = strncmp(a->region, b->region, LWW_REGION_MAX);
    return (c > 0) - (c < 0);
}

lww_decision lww_decide(const lww_version *incoming, const lww_version *current)
{
    if (!current)
        return LWW_APPLY;
    int c = lww_version_compare(incoming, current);
    if (c > 0)
        return LWW_APPLY;
    if (c < 0)
        return LWW_LOSE;
    return LWW_SAME;
}

const char *lww_decision_name(lww_decision d)
{
    switch (d) {
    case LWW_APPLY: return "apply";
    case LWW_LOSE: return "lose";
    case LWW_SAME: return "same";
    }
    return "unknown";
}

lww_clock *lww_clock_new(const char *region)
{
    if (!lww_region_valid(region))
        return NULL;
    lww_clock *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    memcpy(c->region, region, strlen(region));
    memcpy(c->last.region, region, strlen(region));
    return c;
}

void lww_clock_free(lww_clock *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void lww_clock_now(lww_clock *c, uint64_t wall_ms, lww_version *out)
{
    pthread_mutex_lock(&c->mu);
    if (wall_ms > LWW_MS_MAX)
        wall_ms = LWW_MS_MAX;
    lww_version v;
    memset(&v, 0, sizeof v);
    memcpy(v.region, c->region, sizeof v.region);
    if (wall_ms > c->last.ms) {
        v.ms = wall_ms;
        v.counter = 0;
    } else if (c->last.counter < LWW_COUNTER_MAX) {
        v.ms = c->last.ms;
        v.counter = c->last.counter + 1;
    } else if (c->last.ms < LWW_MS_MAX) {
        v.ms = c->last.ms + 1;
        v.counter = 0;
    } else {
        /* Saturated at the top of the representable range (year 2286). */
        v.ms = LWW_MS_MAX;
        v.counter = LWW_COUNTER_MAX;
    }
    if (lww_version_compare(&v, &c->last) > 0)
        c->last = v;
    *out = v;
    pthread_mutex_unlock(&c->mu);
}

void lww_clock_observe(lww_clock *c, const lww_version *v)
{
    lww_version o = *v;
    if (o.ms > LWW_MS_MAX)
        o.ms = LWW_MS_MAX;
    if (o.counter > LWW_COUNTER_MAX)
        o.counter = LWW_COUNTER_MAX;
    o.region[LWW_REGION_MAX - 1] = '\0';
    pthread_mutex_lock(&c->mu);
    if (lww_version_compare(&o, &c->last) > 0)
        c->last = o;
    pthread_mutex_unlock(&c->mu);
}

void lww_clock_last(const lww_clock *c, lww_version *out)
{
    /* The clock is never defined const (it is heap-allocated), so locking is sound. */
    lww_clock *m = (lww_clock *)c;
    pthread_mutex_lock(&m->mu);
    *out = m->last;
    pthread_mutex_unlock(&m->mu);
}

uint64_t lww_wall_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int lww_ahead(const lww_version *v, uint64_t now_ms, uint64_t bound_ms)
{
    if (now_ms > UINT64_MAX - bound_ms)
        return 0; /* the limit is beyond any representable ms */
    return v->ms > now_ms + bound_ms;
}
