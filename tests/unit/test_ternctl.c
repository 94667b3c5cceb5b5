/* test_ternctl.c -- unit tests of ternctl's pure helpers (ternctl/core.c, included
 * directly: number parsing, lag percentiles and window, DynamoDB sequence-number
 * order, heartbeat parsing, duration formatting, hex, the key-id hash map). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ternctl/core.c"

static void test_parse_ll(void **st) {
    long long v = 7;
    unsigned long long u = 7;
    (void)st;
    assert_int_equal(ctl_parse_ll("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ctl_parse_ll("-42", &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(ctl_parse_ll("9223372036854775807", &v), 0);
    assert_true(v == 9223372036854775807LL);
    v = 7;
    assert_int_equal(ctl_parse_ll("9223372036854775808", &v), -1);
    assert_int_equal(ctl_parse_ll("", &v), -1);
    assert_int_equal(ctl_parse_ll(NULL, &v), -1);
    assert_int_equal(ctl_parse_ll(" 1", &v), -1);
    assert_int_equal(ctl_parse_ll("+1", &v), -1);
    assert_int_equal(ctl_parse_ll("1 ", &v), -1);
    assert_int_equal(ctl_parse_ll("12abc", &v), -1);
    assert_int_equal(ctl_parse_ll("-", &v), -1);
    assert_int_equal(v, 7); /* untouched on error */
    assert_int_equal(ctl_parse_ull("18446744073709551615", &u), 0);
    assert_true(u == 18446744073709551615ULL);
    assert_int_equal(ctl_parse_ull("18446744073709551616", &u), -1);
    assert_int_equal(ctl_parse_ull("-1", &u), -1);
    assert_int_equal(ctl_parse_range("64", 1, 64, &v), 0);
    assert_int_equal(ctl_parse_range("65", 1, 64, &v), -1);
    assert_int_equal(ctl_parse_range("0", 1, 64, &v), -1);
}

static void test_parse_seconds(void **st) {
    double d = 0;
    (void)st;
    assert_int_equal(ctl_parse_seconds("1", &d), 0);
    assert_true(d == 1.0);
    assert_int_equal(ctl_parse_seconds("0.25", &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(ctl_parse_seconds(".5", &d), 0);
    assert_int_equal(ctl_parse_seconds("0", &d), -1);
    assert_int_equal(ctl_parse_seconds("-1", &d), -1);
    assert_int_equal(ctl_parse_seconds("nan", &d), -1);
    assert_int_equal(ctl_parse_seconds("inf", &d), -1);
    assert_int_equal(ctl_parse_seconds("1e99", &d), -1);
    assert_int_equal(ctl_parse_seconds("2s", &d), -1);
    assert_int_equal(ctl_parse_seconds("", &d), -1);
}

static void test_split_list(void **st) {
    char **l = NULL;
    size_t n = 0;
    (void)st;
    assert_int_equal(ctl_split_list("us-east-1,eu-west-1", &l, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0], "us-east-1");
    assert_string_equal(l[1], "eu-west-1");
    ctl_list_free(l, n);
    assert_int_equal(ctl_split_list("a", &l, &n), 0);
    assert_int_equal(n, 1);
    ctl_list_free(l, n);
    assert_int_equal(ctl_split_list("a,,b", &l, &n), -1);
    assert_int_equal(ctl_split_list("a,", &l, &n), -1);
    assert_int_equal(ctl_split_list(",a", &l, &n), -1);
    assert_int_equal(ctl_split_list("", &l, &n), -1);
}

static void test_seq_cmp(void **st) {
    (void)st;
    assert_int_equal(ctl_seq_cmp("1", "1"), 0);
    assert_true(ctl_seq_cmp("9", "10") < 0);
    assert_true(ctl_seq_cmp("10", "9") > 0);
    /* DynamoDB Local pads with zeros; real DynamoDB does not */
    assert_int_equal(ctl_seq_cmp("000000000000000000049", "49"), 0);
    assert_true(ctl_seq_cmp("000000000000000000049", "000000000000000000050") < 0);
    assert_true(ctl_seq_cmp("000000000000000000100", "99") > 0);
    /* real sequence numbers exceed 64 bits */
    assert_true(ctl_seq_cmp("49589000000000000000000000000000000000000000000000001",
                            "49589000000000000000000000000000000000000000000000002") < 0);
    assert_true(ctl_seq_cmp("111111111111111111111111111111111111", "99999999999999999999999999999999999") > 0);
    assert_int_equal(ctl_seq_cmp("0", "000"), 0);
    assert_true(ctl_seq_cmp("0", "1") < 0);
    assert_true(ctl_seq_valid("000123"));
    assert_false(ctl_seq_valid(""));
    assert_false(ctl_seq_valid("12a"));
    assert_false(ctl_seq_valid("END 12"));
    assert_false(ctl_seq_valid(NULL));
}

static void test_percentile_nearest_rank(void **st) {
    long long v[100], out = -1;
    (void)st;
    assert_int_equal(ctl_percentile(v, 0, 50, &out), -1);
    for (int i = 0; i < 100; i++) v[i] = 100 - i; /* 100..1, unsorted */
    assert_int_equal(ctl_percentile(v, 100, 50, &out), 0);
    assert_int_equal(out, 50);
    assert_int_equal(ctl_percentile(v, 100, 99, &out), 0);
    assert_int_equal(out, 99);
    assert_int_equal(ctl_percentile(v, 100, 100, &out), 0);
    assert_int_equal(out, 100);
    assert_int_equal(ctl_percentile(v, 100, 0, &out), -1);
    assert_int_equal(ctl_percentile(v, 100, 101, &out), -1);
    /* one sample: every percentile is it */
    v[0] = 17;
    assert_int_equal(ctl_percentile(v, 1, 50, &out), 0);
    assert_int_equal(out, 17);
    assert_int_equal(ctl_percentile(v, 1, 99, &out), 0);
    assert_int_equal(out, 17);
    /* nearest rank, not interpolation: {1,2,3,4} p50 = rank 2 = 2; p99 = rank 4 */
    v[0] = 4, v[1] = 1, v[2] = 3, v[3] = 2;
    assert_int_equal(ctl_percentile(v, 4, 50, &out), 0);
    assert_int_equal(out, 2);
    assert_int_equal(ctl_percentile(v, 4, 99, &out), 0);
    assert_int_equal(out, 4);
    /* {10, 20, 30}: p50 = rank ceil(1.5) = 2 */
    v[0] = 30, v[1] = 10, v[2] = 20;
    assert_int_equal(ctl_percentile(v, 3, 50, &out), 0);
    assert_int_equal(out, 20);
    /* negative lags (clock skew) sort correctly */
    v[0] = -5, v[1] = 3;
    assert_int_equal(ctl_percentile(v, 2, 50, &out), 0);
    assert_int_equal(out, -5);
}

static void test_lag_window(void **st) {
    const char *s[] = {"100000 5", "99000 7", "60000 1000", "39999 99999", "garbage", NULL, "50000 -3",
                       "40000 2"};
    ctl_lag_stats ls;
    (void)st;
    /* now 100000, window 60000: at_ms >= 40000 counts */
    assert_int_equal(ctl_lag_window(s, 8, 100000, 60000, &ls), 0);
    assert_int_equal(ls.n, 5);   /* 5, 7, 1000, -3, 2 */
    assert_int_equal(ls.bad, 2); /* "garbage" and NULL */
    assert_int_equal(ls.p50, 5); /* sorted -3 2 5 7 1000: rank 3 */
    assert_int_equal(ls.p99, 1000);
    assert_int_equal(ls.max, 1000);
    /* nothing in the window */
    assert_int_equal(ctl_lag_window(s, 8, 1000000, 60000, &ls), 0);
    assert_int_equal(ls.n, 0);
    assert_int_equal(ctl_lag_window(s, 0, 0, 60000, &ls), 0);
    assert_int_equal(ls.n, 0);
    {
        const char *bad[] = {"1 2 3", " 1 2", "1  2", "1 x", "x 1", "1", ""};
        assert_int_equal(ctl_lag_window(bad, 7, 10, 60000, &ls), 0);
        assert_int_equal(ls.n, 0);
        assert_int_equal(ls.bad, 7);
    }
}

static void test_heartbeat(void **st) {
    long long ms = 0, pid = 0;
    const char *status = NULL;
    (void)st;
    assert_int_equal(ctl_parse_heartbeat("1700000000123 4242 1/2 peers connected", &ms, &pid, &status), 0);
    assert_true(ms == 1700000000123LL);
    assert_int_equal(pid, 4242);
    assert_string_equal(status, "1/2 peers connected");
    assert_int_equal(ctl_parse_heartbeat("5 6", &ms, &pid, &status), 0);
    assert_int_equal(ms, 5);
    assert_int_equal(pid, 6);
    assert_string_equal(status, "");
    assert_int_equal(ctl_parse_heartbeat("5 6 ", &ms, &pid, &status), 0);
    assert_string_equal(status, "");
    assert_int_equal(ctl_parse_heartbeat("5", &ms, &pid, &status), -1);
    assert_int_equal(ctl_parse_heartbeat("x 6 ok", &ms, &pid, &status), -1);
    assert_int_equal(ctl_parse_heartbeat("5 y ok", &ms, &pid, &status), -1);
    assert_int_equal(ctl_parse_heartbeat("", &ms, &pid, &status), -1);
    assert_int_equal(ctl_parse_heartbeat(NULL, &ms, &pid, &status), -1);
}

static void test_fmt_ms(void **st) {
    char b[32];
    (void)st;
    ctl_fmt_ms(0, b, sizeof b);
    assert_string_equal(b, "0ms");
    ctl_fmt_ms(999, b, sizeof b);
    assert_string_equal(b, "999ms");
    ctl_fmt_ms(1000, b, sizeof b);
    assert_string_equal(b, "1.0s");
    ctl_fmt_ms(12345, b, sizeof b);
    assert_string_equal(b, "12.3s");
    ctl_fmt_ms(245000, b, sizeof b);
    assert_string_equal(b, "4m05s");
    ctl_fmt_ms(7380000, b, sizeof b);
    assert_string_equal(b, "2h03m");
    ctl_fmt_ms(-15, b, sizeof b);
    assert_string_equal(b, "-15ms");
    ctl_fmt_ms(-9223372036854775807LL - 1, b, sizeof b); /* no overflow */
    assert_int_equal(b[0], '-');
    {
        /* a short buffer truncates; volatile, or an -O3 build proves the truncation at
         * compile time and -Wformat-truncation fails it */
        volatile size_t four = 4;
        ctl_fmt_ms(12345, b, four);
    }
    assert_string_equal(b, "12.");
    assert_int_equal(ctl_text_width("≥12"), 3);
    assert_int_equal(ctl_text_width(""), 0);
}

static void test_hex(void **st) {
    uint8_t b[4];
    char h[9];
    (void)st;
    assert_int_equal(ctl_hex_decode("00ff10Ab", b, 4), 0);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(b[2], 0x10);
    assert_int_equal(b[3], 0xab);
    ctl_hex_encode(b, 4, h);
    assert_string_equal(h, "00ff10ab");
    assert_int_equal(ctl_hex_decode("00ff10A", b, 4), -1);
    assert_int_equal(ctl_hex_decode("00ff10Ag", b, 4), -1);
    assert_int_equal(ctl_hex_decode("00ff10Ab00", b, 4), -1);
}

static void kid_of(uint32_t i, uint8_t kid[32]) {
    /* deterministic, well spread */
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ULL + 1;
    for (int k = 0; k < 32; k++) {
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ULL;
        kid[k] = (uint8_t)(x >> 56);
    }
}

static void test_kmap(void **st) {
    ctl_kmap *m = ctl_kmap_new(0);
    uint8_t kid[32], dig[32];
    const uint8_t *k, *d;
    size_t pos = 0, seen = 0;
    const uint32_t n = 50000;
    (void)st;
    assert_non_null(m);
    for (uint32_t i = 0; i < n; i++) {
        kid_of(i, kid);
        memset(dig, (int)(i & 0xff), sizeof dig);
        assert_int_equal(ctl_kmap_put(m, kid, dig), 0);
    }
    assert_int_equal(ctl_kmap_count(m), n);
    for (uint32_t i = 0; i < n; i++) {
        kid_of(i, kid);
        d = ctl_kmap_get(m, kid);
        assert_non_null(d);
        assert_int_equal(d[0], (int)(i & 0xff));
        assert_int_equal(d[31], (int)(i & 0xff));
    }
    kid_of(n + 1, kid);
    assert_null(ctl_kmap_get(m, kid));
    /* replace keeps the count */
    kid_of(7, kid);
    memset(dig, 0xEE, sizeof dig);
    assert_int_equal(ctl_kmap_put(m, kid, dig), 1);
    assert_int_equal(ctl_kmap_count(m), n);
    assert_int_equal(ctl_kmap_get(m, kid)[5], 0xEE);
    while (ctl_kmap_next(m, &pos, &k, &d)) seen++;
    assert_int_equal(seen, n);
    ctl_kmap_free(m);
    ctl_kmap_free(NULL);
}

static void test_kmap_collisions(void **st) {
    /* kids that share the first 8 bytes land in one probe chain */
    ctl_kmap *m = ctl_kmap_new(4);
    uint8_t kid[32], dig[32];
    (void)st;
    assert_non_null(m);
    memset(kid, 0x42, sizeof kid);
    for (int i = 0; i < 300; i++) {
        kid[31] = (uint8_t)i;
        kid[30] = (uint8_t)(i >> 8);
        memset(dig, i & 0xff, sizeof dig);
        assert_int_equal(ctl_kmap_put(m, kid, dig), 0);
    }
    for (int i = 0; i < 300; i++) {
        kid[31] = (uint8_t)i;
        kid[30] = (uint8_t)(i >> 8);
        assert_non_null(ctl_kmap_get(m, kid));
        assert_int_equal(ctl_kmap_get(m, kid)[0], i & 0xff);
    }
    assert_int_equal(ctl_kmap_count(m), 300);
    ctl_kmap_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ll),
        cmocka_unit_test(test_parse_seconds),
        cmocka_unit_test(test_split_list),
        cmocka_unit_test(test_seq_cmp),
        cmocka_unit_test(test_percentile_nearest_rank),
        cmocka_unit_test(test_lag_window),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_fmt_ms),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_kmap),
        cmocka_unit_test(test_kmap_collisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
