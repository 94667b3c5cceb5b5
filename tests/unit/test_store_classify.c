/* test_store_classify.c -- store/'s pure parts: AWS error type -> status mapping,
 * status names, option validation (no network). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "store.h"

static void test_known_types(void **state)
{
    (void)state;
    const struct {
        long http;
        const char *type;
        store_status want;
    } cases[] = {
        {400, "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", STORE_ERR_CONDITION},
        {400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", STORE_ERR_THROTTLED},
        {400, "ThrottlingException", STORE_ERR_THROTTLED},
        {400, "com.amazonaws.dynamodb.v20120810#RequestLimitExceeded", STORE_ERR_THROTTLED},
        {400, "com.amazonaws.dynamodb.v20120810#LimitExceededException", STORE_ERR_THROTTLED},
        {400, "com.amazon.coral.validate#ValidationException", STORE_ERR_VALIDATION},
        {400, "com.amazon.coral.service#SerializationException", STORE_ERR_VALIDATION},
        {400, "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", STORE_ERR_NOT_FOUND},
        {400, "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException", STORE_ERR_EXPIRED_ITERATOR},
        {400, "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException", STORE_ERR_TRIMMED},
        {400, "com.amazonaws.dynamodb.v20120810#TransactionCanceledException", STORE_ERR_TRANSACTION},
        {400, "com.amazonaws.dynamodb.v20120810#UnrecognizedClientException", STORE_ERR_AUTH},
        {403, "com.amazon.coral.service#InvalidSignatureException", STORE_ERR_AUTH},
        {400, "AccessDeniedException", STORE_ERR_AUTH},
        {400, "MissingAuthenticationTokenException", STORE_ERR_AUTH},
        {400, "com.amazonaws.dynamodb.v20120810#ResourceInUseException", STORE_ERR_IN_USE},
        {500, "com.amazonaws.dynamodb.v20120810#InternalServerError", STORE_ERR_TRANSIENT},
        {503, "ServiceUnavailable", STORE_ERR_TRANSIENT},
        {400, "TransactionConflictException", STORE_ERR_TRANSIENT},
        /* x-amzn-ErrorType header form: "Type:url" */
        {400, "ValidationException:http://internal.amazon.com/coral/com.amazon.coral.validate/",
         STORE_ERR_VALIDATION},
        /* unknown types fall back on the HTTP status */
        {400, "com.example#SomethingNew", STORE_ERR_VALIDATION},
        {500, "com.example#SomethingNew", STORE_ERR_TRANSIENT},
        {418, "com.example#SomethingNew", STORE_ERR_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        store_status got = store_classify(cases[i].http, cases[i].type);
        if (got != cases[i].want)
            fail_msg("classify(%ld, %s) = %s, want %s", cases[i].http, cases[i].type,
                     store_status_name(got), store_status_name(cases[i].want));
    }
}

static void test_http_only(void **state)
{
    (void)state;
    assert_int_equal(store_classify(200, NULL), STORE_OK);
    assert_int_equal(store_classify(200, ""), STORE_OK);
    assert_int_equal(store_classify(0, NULL), STORE_ERR_TRANSIENT);
    assert_int_equal(store_classify(500, NULL), STORE_ERR_TRANSIENT);
    assert_int_equal(store_classify(502, NULL), STORE_ERR_TRANSIENT);
    assert_int_equal(store_classify(429, NULL), STORE_ERR_THROTTLED);
    assert_int_equal(store_classify(403, NULL), STORE_ERR_AUTH);
    assert_int_equal(store_classify(413, NULL), STORE_ERR_VALIDATION);
    assert_int_equal(store_classify(404, NULL), STORE_ERR_OTHER);
    /* a type the server names wins over a 200 */
    assert_int_equal(store_classify(200, "ResourceNotFoundException"), STORE_ERR_NOT_FOUND);
}

static void test_names(void **state)
{
    (void)state;
    for (int i = 0; i < STORE_STATUS_COUNT; i++) {
        const char *n = store_status_name((store_status)i);
        assert_non_null(n);
        assert_true(strncmp(n, "STORE_", 6) == 0);
        assert_string_not_equal(n, "STORE_?");
    }
    assert_string_equal(store_status_name(STORE_ERR_CONDITION), "STORE_ERR_CONDITION");
    assert_string_equal(store_status_name(STORE_STATUS_COUNT), "STORE_?");
}

static void test_opts_validation(void **state)
{
    (void)state;
    char err[256];
    store_opts o = {.endpoint = "http://127.0.0.1:1", .region = "us-east-1",
                    .access_key_id = "k", .secret_access_key = "s"};
    store *s = store_new(&o, err, sizeof err);
    assert_non_null(s);
    assert_string_equal(store_errstr(s), "");
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.calls, 0);
    store_free(s);
    store_free(NULL);

    store_opts bad = o;
    bad.endpoint = "ftp://x";
    assert_null(store_new(&bad, err, sizeof err));
    assert_non_null(strstr(err, "http or https"));
    bad = o;
    bad.endpoint = "not a url at all";
    assert_null(store_new(&bad, err, sizeof err));
    bad = o;
    bad.secret_access_key = NULL;
    assert_null(store_new(&bad, err, sizeof err));
    bad = o;
    bad.timeout_ms = -5;
    assert_null(store_new(&bad, err, sizeof err));
    bad = o;
    bad.backoff_base_ms = 500;
    bad.backoff_cap_ms = 100;
    assert_null(store_new(&bad, err, sizeof err));
    assert_non_null(strstr(err, "backoff_cap_ms"));
    assert_null(store_new(NULL, err, sizeof err));
}

/* Wrappers refuse bad arguments before any network I/O and count them. */
static void test_wrapper_arguments(void **state)
{
    (void)state;
    char err[256];
    store_opts o = {.endpoint = "http://127.0.0.1:1", .region = "us-east-1",
                    .access_key_id = "k", .secret_access_key = "s",
                    .max_retries = STORE_NO_RETRIES};
    store *s = store_new(&o, err, sizeof err);
    assert_non_null(s);
    cJSON *resp = (cJSON *)1;
    assert_int_equal(store_put_item(s, "t", NULL, NULL, &resp), STORE_ERR_VALIDATION);
    assert_null(resp);
    char *it = (char *)1;
    assert_int_equal(store_get_shard_iterator(s, "arn", "shard", STORE_ITER_AFTER_SEQUENCE,
                                              NULL, &it),
                     STORE_ERR_VALIDATION);
    assert_null(it);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.calls, 2);
    assert_int_equal(st.status[STORE_ERR_VALIDATION], 2);
    assert_int_equal(st.requests, 0);
    store_free(s);
}

/* store_opts_client: the environment's credentials when set and not empty, else "local" */
static void test_opts_client(void **state)
{
    store_opts o;
    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SECRET_ACCESS_KEY", "", 1);
    store_opts_client(&o, "http://127.0.0.1:8000");
    assert_string_equal(o.endpoint, "http://127.0.0.1:8000");
    assert_string_equal(o.region, "us-east-1");
    assert_string_equal(o.access_key_id, "local");
    assert_string_equal(o.secret_access_key, "local");
    assert_null(o.session_token);
    assert_int_equal(o.timeout_ms, 0);
    assert_int_equal(o.max_retries, 0);
    setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SECRET", 1);
    store_opts_client(&o, "http://x");
    assert_string_equal(o.access_key_id, "AKID");
    assert_string_equal(o.secret_access_key, "SECRET");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_types),
        cmocka_unit_test(test_http_only),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_opts_validation),
        cmocka_unit_test(test_wrapper_arguments),
        cmocka_unit_test(test_opts_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
