/* test_metrics.c -- metrics/ registry and Prometheus text exposition: the exact output of
 * each type, label and help escaping, number spellings, stable ordering, histogram
 * cumulativity, the validation errors, series identity, the cardinality guard, and a
 * concurrency smoke test (threads updating while another renders). The HTTP endpoint
 * is covered by tests/integration/test_metrics_http.sh. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

#define BUILD_INFO                                               \
    "# HELP tern_build_info Tern build information; always 1.\n" \
    "# TYPE tern_build_info gauge\n"                             \
    "tern_build_info{version=\"" TERN_VERSION "\"} 1\n"
#define UP "# HELP tern_up 1 while the daemon runs.\n# TYPE tern_up gauge\ntern_up 1\n"
#define BUILTINS BUILD_INFO UP

/* Renders reg; the caller frees the text. */
static char *render(metrics_registry *reg) {
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(reg, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_builtins_only(void **st) {
    (void)st;
    metrics_registry *reg = metrics_new();
    char *t;
    assert_non_null(reg);
    t = render(reg);
    assert_string_equal(t, BUILTINS);
    free(t);
    metrics_free(reg);
}

static void test_counter_format_and_order(void **st) {
    (void)st;
    char err[256];
    metrics_registry *reg = metrics_new();
    metrics_family *c = metrics_counter_new(reg, "tern_changes_shipped_total", "Changes shipped to a peer.",
                                            (const char *[]){"peer", "table", NULL}, err, sizeof err);
    metrics_family *empty = metrics_counter_new(reg, "aaa_unused_total", "No series: not rendered.", NULL, err,
                                                sizeof err);
    char *t;
    assert_non_null(c);
    assert_non_null(empty);
    /* created out of order: the output is sorted by label values */
    assert_int_equal(metrics_inc_with(c, (const char *[]){"us-east-1", "t2"}, 3), 0);
    assert_int_equal(metrics_inc_with(c, (const char *[]){"eu-west-1", "t9"}, 1), 0);
    assert_int_equal(metrics_inc_with(c, (const char *[]){"eu-west-1", "t1"}, 18446744073709551615ULL), 0);
    metrics_inc(metrics_series_get(c, (const char *[]){"us-east-1", "t2"}), 4);
    t = render(reg);
    assert_string_equal(t, BUILD_INFO
                        "# HELP tern_changes_shipped_total Changes shipped to a peer.\n"
                        "# TYPE tern_changes_shipped_total counter\n"
                        "tern_changes_shipped_total{peer=\"eu-west-1\",table=\"t1\"} 18446744073709551615\n"
                        "tern_changes_shipped_total{peer=\"eu-west-1\",table=\"t9\"} 1\n"
                        "tern_changes_shipped_total{peer=\"us-east-1\",table=\"t2\"} 7\n" UP);
    free(t);
    metrics_free(reg);
}

static void test_families_sorted_by_name(void **st) {
    (void)st;
    char err[256];
    metrics_registry *reg = metrics_new();
    metrics_family *z = metrics_gauge_new(reg, "zz_last", "z", NULL, err, sizeof err);
    metrics_family *a = metrics_gauge_new(reg, "a_first", "a", NULL, err, sizeof err);
    metrics_family *m = metrics_gauge_new(reg, "tern_middle", "m", NULL, err, sizeof err);
    char *t;
    metrics_set_with(z, NULL, 1);
    metrics_set_with(a, NULL, 2);
    metrics_set_with(m, NULL, 3);
    t = render(reg);
    assert_string_equal(t, "# HELP a_first a\n# TYPE a_first gauge\na_first 2\n" BUILD_INFO
                           "# HELP tern_middle m\n# TYPE tern_middle gauge\ntern_middle 3\n" UP
                           "# HELP zz_last z\n# TYPE zz_last gauge\nzz_last 1\n");
    free(t);
    metrics_free(reg);
}

static void test_gauge_values(void **st) {
    (void)st;
    char err[256];
    metrics_registry *reg = metrics_new();
    metrics_family *g = metrics_gauge_new(reg, "g", "Gauge.", (const char *[]){"k", NULL}, err, sizeof err);
    char *t;
    assert_non_null(g);
    metrics_set_with(g, (const char *[]){"a"}, 0.1);
    metrics_set_with(g, (const char *[]){"b"}, -2.5);
    metrics_set_with(g, (const char *[]){"c"}, 1e21);
    metrics_set_with(g, (const char *[]){"d"}, NAN);
    metrics_set_with(g, (const char *[]){"e"}, INFINITY);
    metrics_set_with(g, (const char *[]){"f"}, -INFINITY);
    metrics_set_int(metrics_series_get(g, (const char *[]){"g"}), -9007199254740992LL);
    metrics_set_with(g, (const char *[]){"h"}, 5);
    metrics_add(metrics_series_get(g, (const char *[]){"h"}), -7.5);
    metrics_inc(metrics_series_get(g, (const char *[]){"i"}), 2);
    metrics_set_with(g, (const char *[]){"j"}, 1.0 / 3.0);
    t = render(reg);
    assert_non_null(strstr(t, "# HELP g Gauge.\n# TYPE g gauge\n"
                              "g{k=\"a\"} 0.1\n"
                              "g{k=\"b\"} -2.5\n"
                              "g{k=\"c\"} 1e+21\n"
                              "g{k=\"d\"} NaN\n"
                              "g{k=\"e\"} +Inf\n"
                              "g{k=\"f\"} -Inf\n"
                              "g{k=\"g\"} -9007199254740992\n"
                              "g{k=\"h\"} -2.5\n"
                              "g{k=\"i\"} 2\n"
                              "g{k=\"j\"} 0.3333333333333333\n"));
    assert_true(metrics_value(metrics_series_get(g, (const char *[]){"h"})) == -2.5);
    free(t);
    metrics_free(reg);
}

static void test_histogram_cumulative(void **st) {
    (void)st;
    char err[256];
    static const double b[] = {1, 2.5, 10};
    metrics_registry *reg = metrics_new();
    metrics_family *h = metrics_histogram_new(reg, "tern_lag_ms", "Lag, ms.", (const char *[]){"source_region", NULL},
                                              b, 3, err, sizeof err);
    metrics_family *h0 = metrics_histogram_new(reg, "tern_nolabel", "No labels.", NULL, b, 1, err, sizeof err);
    metrics_series *s;
    char *t;
    assert_non_null(h);
    assert_non_null(h0);
    s = metrics_series_get(h, (const char *[]){"eu-west-1"});
    assert_non_null(s);
    /* a value equal to a bound falls into that bucket (le = "less or equal") */
    metrics_observe(s, 0.5);
    metrics_observe(s, 1);
    metrics_observe(s, 2.5);
    metrics_observe(s, 3);
    metrics_observe(s, 100);
    metrics_observe(s, NAN); /* ignored */
    metrics_observe_with(h0, NULL, 7);
    t = render(reg);
    assert_non_null(strstr(t, "# HELP tern_lag_ms Lag, ms.\n# TYPE tern_lag_ms histogram\n"
                              "tern_lag_ms_bucket{source_region=\"eu-west-1\",le=\"1\"} 2\n"
                              "tern_lag_ms_bucket{source_region=\"eu-west-1\",le=\"2.5\"} 3\n"
                              "tern_lag_ms_bucket{source_region=\"eu-west-1\",le=\"10\"} 4\n"
                              "tern_lag_ms_bucket{source_region=\"eu-west-1\",le=\"+Inf\"} 5\n"
                              "tern_lag_ms_sum{source_region=\"eu-west-1\"} 107\n"
                              "tern_lag_ms_count{source_region=\"eu-west-1\"} 5\n"));
    assert_non_null(strstr(t, "# TYPE tern_nolabel histogram\n"
                              "tern_nolabel_bucket{le=\"1\"} 0\n"
                              "tern_nolabel_bucket{le=\"+Inf\"} 1\n"
                              "tern_nolabel_sum 7\n"
                              "tern_nolabel_count 1\n"));
    assert_true(metrics_value(s) == 5);
    free(t);
    metrics_free(reg);
}

static void test_lag_bounds_macro(void **st) {
    (void)st;
    char err[256];
    static const double b[] = METRICS_LAG_MS_BOUNDS;
    metrics_registry *reg = metrics_new();
    metrics_family *h =
        metrics_histogram_new(reg, "lag_ms", "l", NULL, b, sizeof b / sizeof b[0], err, sizeof err);
    char *t;
    assert_non_null(h);
    for (int i = 0; i < 20000; i += 7) metrics_observe_with(h, NULL, i);
    t = render(reg);
    /* every bucket present, nondecreasing, +Inf equal to _count */
    {
        const char *p = t;
        unsigned long long prev = 0, v = 0;
        int n = 0;
        while ((p = strstr(p, "lag_ms_bucket{le=\"")) != NULL) {
            const char *sp = strchr(p, ' ');
            v = strtoull(sp + 1, NULL, 10);
            assert_true(v >= prev);
            prev = v;
            p = sp;
            n++;
        }
        assert_int_equal(n, 14);
        assert_non_null(strstr(t, "lag_ms_bucket{le=\"10000\"} 1429\n"));
        assert_non_null(strstr(t, "lag_ms_bucket{le=\"+Inf\"} 2858\n"));
        assert_non_null(strstr(t, "lag_ms_count 2858\n"));
    }
    free(t);
    metrics_free(reg);
}

static void test_escaping(void **st) {
    (void)st;
    char err[256];
    metrics_registry *reg = metrics_new();
    metrics_family *c = metrics_counter_new(reg, "esc_total", "Help with \\ backslash,\nnewline and \"quotes\".",
                                            (const char *[]){"reason", NULL}, err, sizeof err);
    char *t;
    assert_non_null(c);
    assert_int_equal(metrics_inc_with(c, (const char *[]){"a\\b \"q\"\nline2 é"}, 1), 0);
    t = render(reg);
    assert_non_null(strstr(t, "# HELP esc_total Help with \\\\ backslash,\\nnewline and \"quotes\".\n"
                              "# TYPE esc_total counter\n"
                              "esc_total{reason=\"a\\\\b \\\"q\\\"\\nline2 é\"} 1\n"));
    free(t);
    metrics_free(reg);
}

static void test_validation(void **st) {
    (void)st;
    char err[256];
    static const double good[] = {1, 2}, unsorted[] = {2, 1}, inf[] = {1, INFINITY};
    metrics_registry *reg = metrics_new();
    metrics_family *c;
    assert_null(metrics_counter_new(reg, "1abc", "", NULL, err, sizeof err));
    assert_non_null(strstr(err, "bad metric name"));
    assert_null(metrics_counter_new(reg, "a-b", "", NULL, err, sizeof err));
    assert_null(metrics_counter_new(reg, "", "", NULL, err, sizeof err));
    assert_null(metrics_counter_new(reg, "ok", "", (const char *[]){"a:b", NULL}, err, sizeof err));
    assert_non_null(strstr(err, "bad label name"));
    assert_null(metrics_counter_new(reg, "ok", "", (const char *[]){"__x", NULL}, err, sizeof err));
    assert_null(metrics_counter_new(reg, "ok", "", (const char *[]){"a", "a", NULL}, err, sizeof err));
    assert_non_null(strstr(err, "twice"));
    assert_null(metrics_counter_new(reg, "ok", "", (const char *[]){"a", "b", "c", "d", NULL}, err, sizeof err));
    assert_non_null(strstr(err, "more than 3 labels"));
    assert_null(metrics_histogram_new(reg, "h", "", (const char *[]){"le", NULL}, good, 2, err, sizeof err));
    assert_non_null(strstr(err, "\"le\""));
    assert_null(metrics_histogram_new(reg, "h", "", NULL, unsorted, 2, err, sizeof err));
    assert_non_null(strstr(err, "strictly increasing"));
    assert_null(metrics_histogram_new(reg, "h", "", NULL, inf, 2, err, sizeof err));
    assert_null(metrics_histogram_new(reg, "h", "", NULL, good, 0, err, sizeof err));
    assert_null(metrics_gauge_new(reg, "tern_up", "", NULL, err, sizeof err));
    assert_non_null(strstr(err, "already registered"));
    c = metrics_counter_new(reg, "ns:ok_total", "", (const char *[]){"a", NULL}, err, sizeof err);
    assert_non_null(c);
    assert_null(metrics_series_get(c, NULL));
    assert_null(metrics_series_get(c, (const char *[]){NULL}));
    assert_null(metrics_series_get(c, (const char *[]){"\xC3\x28"}));     /* bad continuation */
    assert_null(metrics_series_get(c, (const char *[]){"\xC0\xAF"}));     /* overlong */
    assert_null(metrics_series_get(c, (const char *[]){"\xED\xA0\x80"})); /* surrogate */
    assert_int_equal(metrics_inc_with(c, (const char *[]){"\xFF"}, 1), -1);
    assert_non_null(metrics_series_get(c, (const char *[]){"\xF0\x9F\x98\x80"}));
    /* updates of the wrong type are ignored, NULL handles are no-ops */
    metrics_set(metrics_series_get(c, (const char *[]){"x"}), 5);
    metrics_observe(metrics_series_get(c, (const char *[]){"x"}), 5);
    assert_true(metrics_value(metrics_series_get(c, (const char *[]){"x"})) == 0);
    metrics_inc(NULL, 1);
    metrics_set(NULL, 1);
    metrics_observe(NULL, 1);
    assert_true(metrics_value(NULL) == 0);
    metrics_free(reg);
    metrics_free(NULL);
}

static void test_series_identity_and_growth(void **st) {
    (void)st;
    char err[256], a[16], b[16];
    metrics_registry *reg = metrics_new();
    metrics_family *c = metrics_counter_new(reg, "c_total", "", (const char *[]){"x", "y", NULL}, err, sizeof err);
    metrics_series *s1 = metrics_series_get(c, (const char *[]){"ab", "c"});
    metrics_series *s2 = metrics_series_get(c, (const char *[]){"a", "bc"});
    char *t, *p;
    assert_non_null(s1);
    assert_non_null(s2);
    assert_ptr_not_equal(s1, s2);
    assert_ptr_equal(s1, metrics_series_get(c, (const char *[]){"ab", "c"}));
    for (int i = 0; i < 2000; i++) {
        snprintf(a, sizeof a, "r%04d", i);
        snprintf(b, sizeof b, "%d", i % 7);
        assert_int_equal(metrics_inc_with(c, (const char *[]){a, b}, (uint64_t)i), 0);
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(a, sizeof a, "r%04d", i);
        snprintf(b, sizeof b, "%d", i % 7);
        assert_true(metrics_value(metrics_series_get(c, (const char *[]){a, b})) == (double)i);
    }
    t = render(reg);
    /* sorted: r0000 .. r1999 in order */
    p = strstr(t, "c_total{x=\"r0000\",y=\"0\"} 0\n");
    assert_non_null(p);
    for (int i = 1; i < 2000; i++) {
        char line[64];
        char *q;
        snprintf(line, sizeof line, "c_total{x=\"r%04d\",y=\"%d\"} %d\n", i, i % 7, i);
        q = strstr(t, line);
        assert_non_null(q);
        assert_true(q > p);
        p = q;
    }
    free(t);
    metrics_free(reg);
}

static void test_series_cap(void **st) {
    (void)st;
    char err[256], v[16];
    metrics_registry *reg = metrics_new();
    metrics_family *g = metrics_gauge_new(reg, "many", "", (const char *[]){"i", NULL}, err, sizeof err);
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_non_null(metrics_series_get(g, (const char *[]){v}));
    }
    assert_null(metrics_series_get(g, (const char *[]){"one-too-many"}));
    assert_non_null(metrics_series_get(g, (const char *[]){"42"})); /* existing ones still found */
    metrics_free(reg);
}

/* ---- concurrency smoke -------------------------------------------------------------- */

#define CONC_THREADS 4
#define CONC_ITERS 50000

typedef struct {
    metrics_family *c, *g, *h;
    metrics_series *shared;
    int id;
} conc_arg;

static void *conc_worker(void *p) {
    conc_arg *a = p;
    char mine[16];
    snprintf(mine, sizeof mine, "w%d", a->id);
    for (int i = 0; i < CONC_ITERS; i++) {
        metrics_inc(a->shared, 1);
        metrics_inc_with(a->c, (const char *[]){mine}, 2);
        metrics_add(metrics_series_get(a->g, NULL), 0.5);
        metrics_observe_with(a->h, (const char *[]){i % 2 ? "odd" : "even"}, (double)(i % 20));
    }
    return NULL;
}

static void *conc_scraper(void *p) {
    metrics_registry *reg = p;
    for (int i = 0; i < 50; i++) {
        char *t = NULL;
        size_t len;
        if (metrics_render(reg, &t, &len) != 0) return (void *)1;
        free(t);
    }
    return NULL;
}

static void test_concurrency(void **st) {
    (void)st;
    char err[256];
    static const double b[] = {5, 10};
    metrics_registry *reg = metrics_new();
    conc_arg args[CONC_THREADS];
    pthread_t th[CONC_THREADS], scr;
    void *scr_rc = NULL;
    metrics_family *c = metrics_counter_new(reg, "conc_total", "", (const char *[]){"w", NULL}, err, sizeof err);
    metrics_family *g = metrics_gauge_new(reg, "conc_gauge", "", NULL, err, sizeof err);
    metrics_family *h = metrics_histogram_new(reg, "conc_hist", "", (const char *[]){"p", NULL}, b, 2, err, sizeof err);
    metrics_series *shared = metrics_series_get(c, (const char *[]){"shared"});
    char *t;
    assert_non_null(shared);
    assert_int_equal(pthread_create(&scr, NULL, conc_scraper, reg), 0);
    for (int i = 0; i < CONC_THREADS; i++) {
        args[i] = (conc_arg){c, g, h, shared, i};
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++) pthread_join(th[i], NULL);
    pthread_join(scr, &scr_rc);
    assert_null(scr_rc);
    assert_true(metrics_value(shared) == (double)CONC_THREADS * CONC_ITERS);
    for (int i = 0; i < CONC_THREADS; i++) {
        char w[16];
        snprintf(w, sizeof w, "w%d", i);
        assert_true(metrics_value(metrics_series_get(c, (const char *[]){w})) == 2.0 * CONC_ITERS);
    }
    assert_true(metrics_value(metrics_series_get(g, NULL)) == 0.5 * CONC_THREADS * CONC_ITERS);
    assert_true(metrics_value(metrics_series_get(h, (const char *[]){"odd"})) == CONC_THREADS * CONC_ITERS / 2.0);
    t = render(reg);
    /* per thread, even i: i%20 in {0,2,..,18}: 3 of 10 values <= 5, 6 of 10 <= 10 */
    assert_non_null(strstr(t, "conc_hist_bucket{p=\"even\",le=\"5\"} 30000\n"
                              "conc_hist_bucket{p=\"even\",le=\"10\"} 60000\n"
                              "conc_hist_bucket{p=\"even\",le=\"+Inf\"} 100000\n"
                              "conc_hist_sum{p=\"even\"} 900000\n"
                              "conc_hist_count{p=\"even\"} 100000\n"));
    free(t);
    metrics_free(reg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_only),
        cmocka_unit_test(test_counter_format_and_order),
        cmocka_unit_test(test_families_sorted_by_name),
        cmocka_unit_test(test_gauge_values),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_lag_bounds_macro),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_series_identity_and_growth),
        cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
