/* test_log.c -- unit tests of log/ (levels, the rate limit of repeated lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log.h"

static void test_limit(void **state) {
    log_limit l = {0, 0};
    long skipped = -1;
    (void)state;
    assert_int_equal(log_limit_pass(&l, 1000, 5000, &skipped), 1); /* armed: at once */
    assert_int_equal(skipped, 0);
    assert_int_equal(log_limit_pass(&l, 1001, 5000, &skipped), 0);
    assert_int_equal(log_limit_pass(&l, 5999, 5000, &skipped), 0);
    assert_int_equal(log_limit_pass(&l, 6000, 5000, &skipped), 1); /* every_ms later */
    assert_int_equal(skipped, 2);
    assert_int_equal(log_limit_pass(&l, 6001, 5000, &skipped), 0);
    l.at = 0; /* re-armed (a success): the next occurrence is logged at once, with the count */
    assert_int_equal(log_limit_pass(&l, 6002, 5000, &skipped), 1);
    assert_int_equal(skipped, 1);
    assert_int_equal(l.skipped, 0);
}

static void test_levels(void **state) {
    log_level lv;
    (void)state;
    assert_int_equal(log_level_parse("warn", &lv), 0);
    assert_int_equal(lv, LOG_LVL_WARN);
    assert_int_equal(log_level_parse("loud", &lv), -1);
    assert_string_equal(log_level_name(LOG_LVL_DEBUG), "debug");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
