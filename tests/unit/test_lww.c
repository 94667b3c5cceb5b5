/* test_lww.c -- unit tests of conflict/ (versions, HLC, LWW decision). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lww.h"

static const char *const REGIONS[] = {"a", "b", "eu-west-1", "us-east-1", "us-east-10",
                                      "us-east-2", "ap-1", "0", "z-", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"};
#define NREGIONS (sizeof REGIONS / sizeof REGIONS[0])

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so failures reproduce */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static lww_version mkv(uint64_t ms, uint32_t counter, const char *region)
{
    lww_version v;
    memset(&v, 0, sizeof v);
    v.ms = ms;
    v.counter = counter;
    snprintf(v.region, sizeof v.region, "%s", region);
    return v;
}

/* Random valid version, biased so that ties in ms and counter are frequent. */
static lww_version rndv(void)
{
    static const uint64_t ms_pool[] = {0, 1, 1700000000000ULL, 1700000000001ULL, LWW_MS_MAX};
    static const uint32_t c_pool[] = {0, 1, 2, 999998, LWW_COUNTER_MAX};
    uint64_t ms = (rnd() % 2) ? ms_pool[rnd() % 5] : rnd() % (LWW_MS_MAX + 1);
    uint32_t c = (rnd() % 2) ? c_pool[rnd() % 5] : (uint32_t)(rnd() % (LWW_COUNTER_MAX + 1));
    return mkv(ms, c, REGIONS[rnd() % NREGIONS]);
}

static int sgn(int x) { return (x > 0) - (x < 0); }

static void test_region_valid(void **state)
{
    (void)state;
    assert_true(lww_region_valid("us-east-1"));
    assert_true(lww_region_valid("a"));
    assert_true(lww_region_valid("0-9"));
    assert_true(lww_region_valid("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")); /* 31 */
    assert_false(lww_region_valid("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")); /* 32 */
    assert_false(lww_region_valid(""));
    assert_false(lww_region_valid(NULL));
    assert_false(lww_region_valid("US-east-1"));
    assert_false(lww_region_valid("us_east"));
    assert_false(lww_region_valid("us east"));
    assert_false(lww_region_valid("us.east"));
    assert_false(lww_region_valid("r\xc3\xa9gion"));
}

static void test_format(void **state)
{
    (void)state;
    char buf[LWW_VERSION_STRLEN];
    lww_version v = mkv(1700000000123ULL, 42, "us-east-1");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
    assert_string_equal(buf, "1700000000123-000042-us-east-1");
    v = mkv(0, 0, "a");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
    assert_string_equal(buf, "0000000000000-000000-a");
    v = mkv(LWW_MS_MAX, LWW_COUNTER_MAX, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
    assert_string_equal(buf, "9999999999999-999999-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    assert_true(strlen(buf) < LWW_VERSION_STRLEN);

    /* out of range or bad region: refused, buffer emptied */
    v = mkv(LWW_MS_MAX + 1, 0, "a");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), -1);
    assert_string_equal(buf, "");
    v = mkv(1, LWW_COUNTER_MAX + 1, "a");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), -1);
    v = mkv(1, 1, "A");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), -1);
    v = mkv(1, 1, "");
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), -1);
    /* buffer too small */
    v = mkv(1, 1, "us-east-1");
    char small[20];
    assert_int_equal(lww_version_format(&v, small, sizeof small), -1);
    assert_string_equal(small, "");
    assert_int_equal(lww_version_format(&v, buf, 0), -1);
}

static void test_parse_round_trip(void **state)
{
    (void)state;
    char buf[LWW_VERSION_STRLEN], err[128];
    for (int i = 0; i < 20000; i++) {
        lww_version v = rndv(), back;
        assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
        assert_int_equal(lww_version_parse(buf, &back, err, sizeof err), 0);
        assert_int_equal(lww_version_compare(&v, &back), 0);
        assert_true(back.ms == v.ms);
        assert_int_equal(back.counter, v.counter);
        assert_string_equal(back.region, v.region);
    }
}

static void test_parse_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "1700000000123",
        "1700000000123-",
        "1700000000123-000042",
        "1700000000123-000042-",
        "170000000012-000042-us-east-1",      /* 12 ms digits */
        "17000000001234-000042-us-east-1",    /* 14 ms digits (also overflow of 13) */
        "99999999999999999999-000042-us-east-1", /* would overflow u64 */
        "1700000000123-00042-us-east-1",      /* 5 counter digits */
        "1700000000123-0000042-us-east-1",    /* 7 counter digits */
        "1700000000123-1000000-us-east-1",    /* counter overflow */
        "+700000000123-000042-us-east-1",
        "-700000000123-000042-us-east-1",
        " 1700000000123-000042-us-east-1",
        "170000000012x-000042-us-east-1",
        "1700000000123-00004x-us-east-1",
        "1700000000123_000042-us-east-1",
        "1700000000123-000042_us-east-1",
        "1700000000123-000042-US-east-1",
        "1700000000123-000042-us east",
        "1700000000123-000042-us-east-1 ",
        "1700000000123-000042-us-east-1\n",
        "1700000000123-000042-us.east",
        "1700000000123-000042-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", /* 32-char region */
        "1700000000123-000042-r\xc3\xa9gion",
        "１700000000123-000042-a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lww_version v = mkv(7, 7, "keep");
        char err[128] = "";
        if (lww_version_parse(bad[i], &v, err, sizeof err) != -1)
            fail_msg("accepted malformed version \"%s\"", bad[i]);
        assert_true(err[0] != '\0');
        assert_true(v.ms == 7 && v.counter == 7); /* untouched */
        assert_string_equal(v.region, "keep");
    }
    lww_version v;
    assert_int_equal(lww_version_parse(NULL, &v, NULL, 0), -1);
    /* err may be NULL with errlen 0 */
    assert_int_equal(lww_version_parse("x", &v, NULL, 0), -1);
    char err[128];
    assert_int_equal(lww_version_parse("1700000000123-000042-us-east-1", &v, err, sizeof err), 0);
}

static void test_order_properties(void **state)
{
    (void)state;
    for (int i = 0; i < 50000; i++) {
        lww_version a = rndv(), b = rndv(), c = rndv();
        int ab = lww_version_compare(&a, &b), ba = lww_version_compare(&b, &a);
        /* antisymmetry */
        assert_int_equal(sgn(ab), -sgn(ba));
        /* reflexive */
        assert_int_equal(lww_version_compare(&a, &a), 0);
        /* equality means same fields */
        if (ab == 0)
            assert_true(a.ms == b.ms && a.counter == b.counter && strcmp(a.region, b.region) == 0);
        /* transitivity */
        int bc = lww_version_compare(&b, &c), ac = lww_version_compare(&a, &c);
        if (ab <= 0 && bc <= 0)
            assert_true(ac <= 0);
        if (ab >= 0 && bc >= 0)
            assert_true(ac >= 0);
        if (ab < 0 && bc < 0)
            assert_true(ac < 0);
    }
}

static void test_ties_broken_by_region(void **state)
{
    (void)state;
    lww_version e = mkv(1700000000000ULL, 5, "eu-west-1");
    lww_version u = mkv(1700000000000ULL, 5, "us-east-1");
    assert_true(lww_version_compare(&e, &u) < 0);
    assert_true(lww_version_compare(&u, &e) > 0);
    /* prefix region sorts first, as in strcmp */
    lww_version p = mkv(1, 1, "us-east-1"), q = mkv(1, 1, "us-east-10");
    assert_true(lww_version_compare(&p, &q) < 0);
    /* counter dominates region, ms dominates counter */
    lww_version c1 = mkv(1, 6, "a"), c2 = mkv(1, 5, "z");
    assert_true(lww_version_compare(&c1, &c2) > 0);
    lww_version m1 = mkv(2, 0, "a"), m2 = mkv(1, LWW_COUNTER_MAX, "z");
    assert_true(lww_version_compare(&m1, &m2) > 0);
}

static void test_compare_matches_strcmp(void **state)
{
    (void)state;
    char sa[LWW_VERSION_STRLEN], sb[LWW_VERSION_STRLEN];
    for (int i = 0; i < 100000; i++) {
        lww_version a = rndv(), b = rndv();
        assert_int_equal(lww_version_format(&a, sa, sizeof sa), 0);
        assert_int_equal(lww_version_format(&b, sb, sizeof sb), 0);
        int c = lww_version_compare(&a, &b), s = strcmp(sa, sb);
        if (sgn(c) != sgn(s))
            fail_msg("compare(%s, %s) = %d but strcmp = %d", sa, sb, c, s);
    }
}

static void test_decide(void **state)
{
    (void)state;
    lww_version old = mkv(100, 0, "us-east-1"), new = mkv(101, 0, "eu-west-1");
    assert_int_equal(lww_decide(&new, &old), LWW_APPLY);
    assert_int_equal(lww_decide(&old, &new), LWW_LOSE);
    assert_int_equal(lww_decide(&old, &old), LWW_SAME);
    assert_int_equal(lww_decide(&old, NULL), LWW_APPLY);
    assert_string_equal(lww_decision_name(LWW_APPLY), "apply");
    assert_string_equal(lww_decision_name(LWW_LOSE), "lose");
    assert_string_equal(lww_decision_name(LWW_SAME), "same");
    assert_string_equal(lww_decision_name((lww_decision)42), "unknown");
}

/* Region A holds x and receives y; region B holds y and receives x. Both must end up
 * holding the same winner. */
static void test_decide_symmetric(void **state)
{
    (void)state;
    for (int i = 0; i < 50000; i++) {
        lww_version x = rndv(), y = rndv();
        lww_decision in_a = lww_decide(&y, &x), in_b = lww_decide(&x, &y);
        const lww_version *win_a = in_a == LWW_APPLY ? &y : &x;
        const lww_version *win_b = in_b == LWW_APPLY ? &x : &y;
        assert_int_equal(lww_version_compare(win_a, win_b), 0);
        if (in_a == LWW_SAME)
            assert_int_equal(in_b, LWW_SAME);
        else
            assert_true((in_a == LWW_APPLY && in_b == LWW_LOSE) ||
                        (in_a == LWW_LOSE && in_b == LWW_APPLY));
    }
}

static void test_clock_new(void **state)
{
    (void)state;
    assert_null(lww_clock_new(NULL));
    assert_null(lww_clock_new(""));
    assert_null(lww_clock_new("Bad"));
    lww_clock_free(NULL);
    lww_clock *c = lww_clock_new("us-east-1");
    assert_non_null(c);
    lww_version last;
    lww_clock_last(c, &last);
    assert_true(last.ms == 0 && last.counter == 0);
    assert_string_equal(last.region, "us-east-1");
    lww_clock_free(c);
}

static void test_clock_monotonic(void **state)
{
    (void)state;
    lww_clock *c = lww_clock_new("us-east-1");
    assert_non_null(c);
    lww_version v, prev;
    lww_clock_now(c, 1000, &v);
    assert_true(v.ms == 1000 && v.counter == 0);
    assert_string_equal(v.region, "us-east-1");
    prev = v;
    lww_clock_now(c, 1000, &v); /* same ms: counter advances */
    assert_true(v.ms == 1000 && v.counter == 1);
    assert_true(lww_version_compare(&v, &prev) > 0);
    prev = v;
    lww_clock_now(c, 500, &v); /* wall clock went backwards */
    assert_true(v.ms == 1000 && v.counter == 2);
    assert_true(lww_version_compare(&v, &prev) > 0);
    prev = v;
    lww_clock_now(c, 2000, &v); /* ms advances: counter resets */
    assert_true(v.ms == 2000 && v.counter == 0);
    assert_true(lww_version_compare(&v, &prev) > 0);

    /* random walk of a jumpy wall clock: always strictly increasing */
    uint64_t wall = 1700000000000ULL;
    for (int i = 0; i < 100000; i++) {
        prev = v;
        int64_t step = (int64_t)(rnd() % 2001) - 1000;
        wall = (uint64_t)((int64_t)wall + step);
        lww_clock_now(c, wall, &v);
        assert_true(lww_version_compare(&v, &prev) > 0);
        assert_true(v.ms >= wall);
        lww_version last;
        lww_clock_last(c, &last);
        assert_int_equal(lww_version_compare(&v, &last), 0);
    }
    lww_clock_free(c);
}

static void test_clock_counter_overflow(void **state)
{
    (void)state;
    lww_clock *c = lww_clock_new("eu-west-1");
    assert_non_null(c);
    lww_version v, prev;
    memset(&prev, 0, sizeof prev);
    for (uint32_t i = 0; i <= LWW_COUNTER_MAX; i++) {
        lww_clock_now(c, 5000, &v);
        assert_true(v.ms == 5000);
        assert_int_equal(v.counter, i);
    }
    lww_clock_now(c, 5000, &v); /* counter would be 1000000 */
    assert_true(v.ms == 5001);
    assert_int_equal(v.counter, 0);
    char buf[LWW_VERSION_STRLEN];
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
    assert_string_equal(buf, "0000000005001-000000-eu-west-1");
    lww_clock_now(c, 5000, &v);
    assert_true(v.ms == 5001 && v.counter == 1);
    lww_clock_free(c);
}

static void test_clock_saturates(void **state)
{
    (void)state;
    lww_clock *c = lww_clock_new("a");
    assert_non_null(c);
    lww_version v, hi = mkv(LWW_MS_MAX, LWW_COUNTER_MAX - 1, "a");
    lww_clock_observe(c, &hi);
    lww_clock_now(c, 1, &v);
    assert_true(v.ms == LWW_MS_MAX && v.counter == LWW_COUNTER_MAX);
    lww_clock_now(c, UINT64_MAX, &v); /* saturated: stays formatable */
    assert_true(v.ms == LWW_MS_MAX && v.counter == LWW_COUNTER_MAX);
    char buf[LWW_VERSION_STRLEN];
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
    lww_clock_free(c);

    /* an absurd wall clock is clamped into range */
    c = lww_clock_new("b");
    lww_clock_now(c, UINT64_MAX, &v);
    assert_true(v.ms == LWW_MS_MAX && v.counter == 0);
    assert_int_equal(lww_version_format(&v, buf, sizeof buf), 0);
    lww_clock_free(c);

    /* an out-of-range observed version is clamped */
    c = lww_clock_new("b");
    lww_version bogus = mkv(UINT64_MAX, UINT32_MAX, "a");
    lww_clock_observe(c, &bogus);
    lww_clock_last(c, &v);
    assert_true(v.ms == LWW_MS_MAX && v.counter == LWW_COUNTER_MAX);
    lww_clock_free(c);
}

static void test_clock_observe_future(void **state)
{
    (void)state;
    lww_clock *c = lww_clock_new("us-east-1");
    assert_non_null(c);
    lww_version v;
    lww_clock_now(c, 1000, &v);
    /* a remote region whose clock is ahead */
    lww_version remote = mkv(9000, 17, "eu-west-1");
    lww_clock_observe(c, &remote);
    lww_version last;
    lww_clock_last(c, &last);
    assert_int_equal(lww_version_compare(&last, &remote), 0);
    lww_clock_now(c, 1001, &v);
    assert_true(lww_version_compare(&v, &remote) > 0);
    assert_true(v.ms == 9000 && v.counter == 18);
    assert_string_equal(v.region, "us-east-1");
    /* observing an older version changes nothing */
    lww_version older = mkv(10, 0, "zz");
    lww_clock_observe(c, &older);
    lww_version v2;
    lww_clock_now(c, 1002, &v2);
    assert_true(lww_version_compare(&v2, &v) > 0);
    assert_true(v2.ms == 9000 && v2.counter == 19);
    /* remote version with the same ms and counter but a greater region */
    lww_version tie = mkv(9000, 19, "zz");
    lww_clock_observe(c, &tie);
    lww_clock_now(c, 0, &v);
    assert_true(lww_version_compare(&v, &tie) > 0);
    lww_clock_free(c);
}

/* A local overwrite of a replicated item: the replicator observes the incoming version
 * and applies it; the agent then versions the later local write, which must win
 * everywhere (guarantee 3), whatever the two regions' clocks say. */
static void test_clock_on_top_of_replicated(void **state)
{
    (void)state;
    for (int i = 0; i < 2000; i++) {
        lww_clock *a = lww_clock_new("zz-remote"), *b = lww_clock_new("aa-local");
        assert_non_null(a);
        assert_non_null(b);
        uint64_t wa = 1700000000000ULL + rnd() % 100000, wb = 1700000000000ULL + rnd() % 100000;
        lww_version ra, lb;
        lww_clock_now(a, wa, &ra);
        lww_clock_observe(b, &ra); /* B applies A's change */
        lww_clock_now(b, wb, &lb); /* then B's app overwrites it */
        assert_true(lww_version_compare(&lb, &ra) > 0);
        /* both regions decide the same: B's write wins */
        assert_int_equal(lww_decide(&lb, &ra), LWW_APPLY); /* at A */
        assert_int_equal(lww_decide(&ra, &lb), LWW_LOSE);  /* late at B */
        lww_clock_free(a);
        lww_clock_free(b);
    }
}

static void test_ahead(void **state)
{
    (void)state;
    lww_version v = mkv(10000, 0, "a");
    assert_int_equal(lww_ahead(&v, 5000, 5000), 0);
    assert_int_equal(lww_ahead(&v, 5000, 4999), 1);
    assert_int_equal(lww_ahead(&v, 20000, 0), 0);
    assert_int_equal(lww_ahead(&v, UINT64_MAX, UINT64_MAX), 0); /* no overflow */
    assert_int_equal(lww_ahead(&v, 1, UINT64_MAX), 0);
    uint64_t now = lww_wall_ms();
    assert_true(now > 1600000000000ULL); /* after 2020 */
    assert_true(now < LWW_MS_MAX);
    v.ms = now;
    assert_int_equal(lww_ahead(&v, now, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_region_valid),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_order_properties),
        cmocka_unit_test(test_ties_broken_by_region),
        cmocka_unit_test(test_compare_matches_strcmp),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_decide_symmetric),
        cmocka_unit_test(test_clock_new),
        cmocka_unit_test(test_clock_monotonic),
        cmocka_unit_test(test_clock_counter_overflow),
        cmocka_unit_test(test_clock_saturates),
        cmocka_unit_test(test_clock_observe_future),
        cmocka_unit_test(test_clock_on_top_of_replicated),
        cmocka_unit_test(test_ahead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
