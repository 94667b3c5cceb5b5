/* test_item.c -- unit tests of item/ (validation, canonical JSON, key ids, hidden attrs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include "item.h"

static cJSON *parse(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    if (!j)
        fail_msg("test JSON does not parse: %s", json);
    return j;
}

static int valid(const char *json, char *err, size_t errlen)
{
    cJSON *j = parse(json);
    int rc = item_validate(j, err, errlen);
    cJSON_Delete(j);
    return rc;
}

static const char ALL_TYPES[] =
    "{\"s\":{\"S\":\"h\\u00e9llo \\\"q\\\"\\n\"},\"empty\":{\"S\":\"\"},"
    "\"n\":{\"N\":\"-12.50e+3\"},\"i\":{\"N\":\"42\"},"
    "\"b\":{\"B\":\"AQID\"},\"b1\":{\"B\":\"AQ==\"},\"b2\":{\"B\":\"AQI=\"},\"b0\":{\"B\":\"\"},"
    "\"t\":{\"BOOL\":true},\"f\":{\"BOOL\":false},\"nul\":{\"NULL\":true},"
    "\"l\":{\"L\":[{\"S\":\"x\"},{\"N\":\"1\"},{\"L\":[]},{\"M\":{}}]},"
    "\"m\":{\"M\":{\"inner\":{\"M\":{\"deep\":{\"SS\":[\"a\",\"b\"]}}},\"z\":{\"NULL\":true}}},"
    "\"ss\":{\"SS\":[\"b\",\"a\",\"\"]},\"ns\":{\"NS\":[\"3\",\"-1\",\"2.5\"]},"
    "\"bs\":{\"BS\":[\"AQ==\",\"Ag==\"]},\"tern:ver\":{\"S\":\"1700000000000-000000-a\"}}";

static void test_all_types_validate(void **state)
{
    (void)state;
    char err[256] = "x";
    assert_int_equal(valid(ALL_TYPES, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(valid("{}", err, sizeof err), 0);
    cJSON *av = parse("{\"NS\":[\"1\",\"2\"]}");
    assert_int_equal(item_validate_value(av, err, sizeof err), 0);
    cJSON_Delete(av);
    /* err may be NULL */
    assert_int_equal(valid("{\"a\":{\"S\":\"x\"}}", NULL, 0), 0);
    assert_int_equal(valid("{\"a\":{\"X\":\"x\"}}", NULL, 0), -1);
}

static void test_numbers(void **state)
{
    (void)state;
    static const char *const good[] = {
        "0", "-0", "+0", "1", "-1", "+1", "1.5", "-1.5", ".5", "5.", "1e5", "1E5", "1e+5",
        "1e-5", "-1.25E-10", "00012", "0.000", "0e999999999999",
        "12345678901234567890123456789012345678",             /* 38 digits */
        "1234567890123456789012345678901234567.8",            /* 38 digits */
        "0.0000012345678901234567890123456789012345678",      /* 38 significant */
        "12345678901234567890123456789012345678000000",       /* trailing zeros */
        "1E-130", "9.9999999999999999999999999999999999999E+125", "-1E-130", "1E125",
        "100E123", "0.001E-127",
    };
    static const char *const bad[] = {
        "", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1-", "--1", "+-1", " 1", "1 ",
        "0x10", "NaN", "Infinity", "-Infinity", "1,5", "1e5.5", "abc", "1_000",
    };
    static const char *const too_many[] = {
        "123456789012345678901234567890123456789",            /* 39 digits */
        "1.23456789012345678901234567890123456789",
    };
    static const char *const out_of_range[] = {
        "1E126", "10E125", "1E-131", "0.1E-130", "-1E126", "1e999999999999999999",
    };
    char json[256], err[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(json, sizeof json, "{\"n\":{\"N\":\"%s\"}}", good[i]);
        if (valid(json, err, sizeof err) != 0)
            fail_msg("rejected number %s: %s", good[i], err);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json, "{\"n\":{\"N\":\"%s\"}}", bad[i]);
        if (valid(json, err, sizeof err) != -1)
            fail_msg("accepted number \"%s\"", bad[i]);
        assert_string_equal(err, "n: N is not a number");
    }
    for (size_t i = 0; i < sizeof too_many / sizeof too_many[0]; i++) {
        snprintf(json, sizeof json, "{\"n\":{\"N\":\"%s\"}}", too_many[i]);
        assert_int_equal(valid(json, err, sizeof err), -1);
        assert_string_equal(err, "n: N has more than 38 significant digits");
    }
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
        snprintf(json, sizeof json, "{\"n\":{\"N\":\"%s\"}}", out_of_range[i]);
        if (valid(json, err, sizeof err) != -1)
            fail_msg("accepted out-of-range number %s", out_of_range[i]);
        assert_non_null(strstr(err, "out of range"));
    }
}

static void test_base64(void **state)
{
    (void)state;
    static const char *const good[] = {"", "AAAA", "AQ==", "AQI=", "AQID", "+/+/", "SGVsbG8gd29ybGQ="};
    static const char *const bad[] = {"A", "AA", "AAA", "AQ=", "A===", "====", "AQ==AQ==",
                                      "AR==", "AQJ=", "AQ-_", "AQ I", "AQ=A", "=AQI", "QQ\n=="};
    char json[256], err[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(json, sizeof json, "{\"b\":{\"B\":\"%s\"}}", good[i]);
        if (valid(json, err, sizeof err) != 0)
            fail_msg("rejected base64 \"%s\": %s", good[i], err);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *item = cJSON_CreateObject(), *av = cJSON_CreateObject();
        cJSON_AddStringToObject(av, "B", bad[i]);
        cJSON_AddItemToObject(item, "b", av);
        if (item_validate(item, err, sizeof err) != -1)
            fail_msg("accepted base64 \"%s\"", bad[i]);
        assert_string_equal(err, "b: B is not valid base64");
        cJSON_Delete(item);
    }
}

/* Each malformed item and the exact error it must produce (path first). */
static const struct {
    const char *json;
    const char *err;
} REJECT[] = {
    {"[]", "item: item must be a JSON object"},
    {"\"x\"", "item: item must be a JSON object"},
    {"{\"a\":\"x\"}", "a: AttributeValue must be an object like {\"S\":\"..\"}"},
    {"{\"a\":{}}", "a: AttributeValue must have exactly one type key, has 0"},
    {"{\"a\":{\"S\":\"x\",\"N\":\"1\"}}", "a: AttributeValue must have exactly one type key, has 2"},
    {"{\"a\":{\"S\":\"x\",\"S\":\"y\"}}", "a: AttributeValue must have exactly one type key, has 2"},
    {"{\"a\":{\"s\":\"x\"}}", "a: unknown AttributeValue type \"s\""},
    {"{\"a\":{\"X\":1}}", "a: unknown AttributeValue type \"X\""},
    {"{\"a\":{\"S\":1}}", "a: S must be a string"},
    {"{\"a\":{\"S\":null}}", "a: S must be a string"},
    {"{\"a\":{\"N\":1}}", "a: N must be a string"},
    {"{\"a\":{\"B\":true}}", "a: B must be a string"},
    {"{\"a\":{\"BOOL\":\"true\"}}", "a: BOOL must be true or false"},
    {"{\"a\":{\"BOOL\":1}}", "a: BOOL must be true or false"},
    {"{\"a\":{\"NULL\":false}}", "a: NULL must be true"},
    {"{\"a\":{\"NULL\":null}}", "a: NULL must be true"},
    {"{\"a\":{\"L\":{}}}", "a: L must be an array"},
    {"{\"a\":{\"L\":[{\"S\":\"x\"},\"y\"]}}", "a[1]: AttributeValue must be an object like {\"S\":\"..\"}"},
    {"{\"a\":{\"M\":[]}}", "a: M must be a JSON object"},
    {"{\"a\":{\"M\":{\"\":{\"S\":\"x\"}}}}", "a.M.: name is empty"},
    {"{\"a\":{\"M\":{\"k\":{\"S\":\"x\"},\"k\":{\"S\":\"y\"}}}}", "a.M.k: duplicate name"},
    {"{\"attrs\":{\"M\":{\"list\":{\"L\":[{\"N\":\"1\"},{\"N\":\"2\"},{\"N\":\"x\"}]}}}}",
     "attrs.M.list[2]: N is not a number"},
    {"{\"a\":{\"SS\":[]}}", "a: SS must not be empty"},
    {"{\"a\":{\"SS\":\"x\"}}", "a: SS must be an array"},
    {"{\"a\":{\"SS\":[\"x\",\"x\"]}}", "a: SS has duplicate members"},
    {"{\"a\":{\"SS\":[\"x\",1]}}", "a[1]: SS member must be a string"},
    {"{\"a\":{\"NS\":[\"1\",\"1.0\"]}}", "a: NS has duplicate members"},
    {"{\"a\":{\"NS\":[\"1\",\"10E-1\"]}}", "a: NS has duplicate members"},
    {"{\"a\":{\"NS\":[\"0\",\"-0.0\"]}}", "a: NS has duplicate members"},
    {"{\"a\":{\"NS\":[\"1\",\"one\"]}}", "a[1]: NS member is not a number"},
    {"{\"a\":{\"NS\":[]}}", "a: NS must not be empty"},
    {"{\"a\":{\"BS\":[\"AQ==\",\"AQ==\"]}}", "a: BS has duplicate members"},
    {"{\"a\":{\"BS\":[\"AQ==\",\"!\"]}}", "a[1]: BS member is not valid base64"},
    {"{\"a\":{\"BS\":[]}}", "a: BS must not be empty"},
    {"{\"\":{\"S\":\"x\"}}", "item: name is empty"},
    {"{\"a\":{\"S\":\"x\"},\"a\":{\"S\":\"y\"}}", "a: duplicate name"},
    {"{\"ok\":{\"S\":\"x\"},\"m\":{\"M\":{\"x\":{\"M\":{\"y\":{\"NULL\":false}}}}}}", "m.M.x.M.y: NULL must be true"},
    {"{\"m\":{\"L\":[{\"L\":[{\"M\":{\"k\":{\"BOOL\":0}}}]}]}}", "m[0][0].M.k: BOOL must be true or false"},
};

static void test_rejects_with_path(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof REJECT / sizeof REJECT[0]; i++) {
        char err[256] = "";
        if (valid(REJECT[i].json, err, sizeof err) != -1)
            fail_msg("accepted malformed item %s", REJECT[i].json);
        if (strcmp(err, REJECT[i].err) != 0)
            fail_msg("item %s: error \"%s\", expected \"%s\"", REJECT[i].json, err, REJECT[i].err);
    }
    char err[256];
    assert_int_equal(item_validate(NULL, err, sizeof err), -1);
    cJSON *av = parse("{\"N\":\"x\"}");
    assert_int_equal(item_validate_value(av, err, sizeof err), -1);
    assert_string_equal(err, "value: N is not a number");
    cJSON_Delete(av);
    /* a small err buffer is truncated, never overrun */
    char tiny[8];
    assert_int_equal(valid("{\"attrs\":{\"N\":\"x\"}}", tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "attrs: ");
}

static void test_utf8_and_long_names(void **state)
{
    (void)state;
    char err[256];
    cJSON *item = cJSON_CreateObject();
    cJSON *av = cJSON_CreateObject();
    cJSON_AddStringToObject(av, "S", "bad \xff byte");
    cJSON_AddItemToObject(item, "s", av);
    assert_int_equal(item_validate(item, err, sizeof err), -1);
    assert_string_equal(err, "s: S is not valid UTF-8");
    cJSON_Delete(item);

    item = cJSON_CreateObject();
    av = cJSON_CreateObject();
    cJSON_AddStringToObject(av, "S", "x");
    cJSON_AddItemToObject(item, "n\xc0\xaf", av); /* overlong encoding */
    assert_int_equal(item_validate(item, err, sizeof err), -1);
    assert_non_null(strstr(err, "name is not valid UTF-8"));
    cJSON_Delete(item);

    item = cJSON_CreateObject();
    av = cJSON_CreateObject();
    cJSON_AddStringToObject(av, "S", "\xed\xa0\x80"); /* UTF-16 surrogate */
    cJSON_AddItemToObject(item, "s", av);
    assert_int_equal(item_validate(item, err, sizeof err), -1);
    cJSON_Delete(item);

    char *name = malloc(ITEM_NAME_MAX + 2);
    assert_non_null(name);
    memset(name, 'n', ITEM_NAME_MAX);
    name[ITEM_NAME_MAX] = '\0';
    item = cJSON_CreateObject();
    av = cJSON_CreateObject();
    cJSON_AddStringToObject(av, "S", "x");
    cJSON_AddItemToObject(item, name, av);
    assert_int_equal(item_validate(item, err, sizeof err), 0);
    cJSON_Delete(item);
    name[ITEM_NAME_MAX] = 'n';
    name[ITEM_NAME_MAX + 1] = '\0';
    item = cJSON_CreateObject();
    av = cJSON_CreateObject();
    cJSON_AddStringToObject(av, "S", "x");
    cJSON_AddItemToObject(item, name, av);
    assert_int_equal(item_validate(item, err, sizeof err), -1);
    assert_non_null(strstr(err, "name is 65536 bytes, longer than 65535"));
    cJSON_Delete(item);
    free(name);
}

/* {"d": L(L(...L([])...))} with depth levels of AV */
static cJSON *nested(int depth, int use_map)
{
    cJSON *av = cJSON_CreateObject();
    if (use_map)
        cJSON_AddItemToObject(av, "M", cJSON_CreateObject());
    else
        cJSON_AddItemToObject(av, "L", cJSON_CreateArray());
    for (int d = 1; d < depth; d++) {
        cJSON *outer = cJSON_CreateObject();
        if (use_map) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddItemToObject(m, "k", av);
            cJSON_AddItemToObject(outer, "M", m);
        } else {
            cJSON *l = cJSON_CreateArray();
            cJSON_AddItemToArray(l, av);
            cJSON_AddItemToObject(outer, "L", l);
        }
        av = outer;
    }
    cJSON *item = cJSON_CreateObject();
    cJSON_AddItemToObject(item, "d", av);
    return item;
}

static void test_depth_limit(void **state)
{
    (void)state;
    char err[2048];
    for (int use_map = 0; use_map <= 1; use_map++) {
        cJSON *ok = nested(ITEM_MAX_DEPTH, use_map);
        assert_int_equal(item_validate(ok, err, sizeof err), 0);
        cJSON_Delete(ok);
        cJSON *deep = nested(ITEM_MAX_DEPTH + 1, use_map);
        assert_int_equal(item_validate(deep, err, sizeof err), -1);
        assert_non_null(strstr(err, ": nested deeper than 32 levels"));
        assert_true(strncmp(err, use_map ? "d.M.k.M.k" : "d[0][0]", 7) == 0);
        cJSON_Delete(deep);
    }
    /* very deep (beyond the limit by far) is rejected without trouble */
    cJSON *very = nested(500, 0);
    assert_int_equal(item_validate(very, err, sizeof err), -1);
    char *c = item_canonical(very, 0);
    assert_non_null(c);
    free(c);
    cJSON_Delete(very);
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Shuffles object members at every level and set members, keeping L order. */
static void shuffle(cJSON *node, int is_set)
{
    if (!node)
        return;
    int n = cJSON_GetArraySize(node);
    if ((cJSON_IsObject(node) || is_set) && n > 1) {
        cJSON **v = malloc((size_t)n * sizeof *v);
        assert_non_null(v);
        for (int k = 0; k < n; k++)
            v[k] = cJSON_DetachItemFromArray(node, 0); /* keeps ->string of members */
        for (int k = n - 1; k > 0; k--) {
            int j = (int)(rnd() % (uint64_t)(k + 1));
            cJSON *t = v[k];
            v[k] = v[j];
            v[j] = t;
        }
        for (int k = 0; k < n; k++)
            assert_true(cJSON_AddItemToArray(node, v[k]));
        free(v);
    }
    for (cJSON *ch = node->child; ch; ch = ch->next) {
        int set = ch->string && (strcmp(ch->string, "SS") == 0 || strcmp(ch->string, "NS") == 0 ||
                                 strcmp(ch->string, "BS") == 0);
        shuffle(ch, set);
    }
}

static void test_canonical_order_independent(void **state)
{
    (void)state;
    cJSON *base = parse(ALL_TYPES);
    char *expect = item_canonical(base, 0);
    assert_non_null(expect);
    /* keys sorted bytewise: "b" < "b0" < "b1" ... and "tern:ver" last */
    assert_true(strncmp(expect, "{\"b\":{\"B\":\"AQID\"},\"b0\":", 22) == 0);
    assert_non_null(strstr(expect, "\"ss\":{\"SS\":[\"\",\"a\",\"b\"]}"));
    assert_non_null(strstr(expect, "\"ns\":{\"NS\":[\"-1\",\"2.5\",\"3\"]}"));
    assert_non_null(strstr(expect, "\"l\":{\"L\":[{\"S\":\"x\"},{\"N\":\"1\"},{\"L\":[]},{\"M\":{}}]}"));
    assert_non_null(strstr(expect, "\"s\":{\"S\":\"h\xc3\xa9llo \\\"q\\\"\\n\"}"));
    assert_null(strchr(expect, ' ') == expect ? NULL : strstr(expect, ": "));
    for (int round = 0; round < 200; round++) {
        cJSON *copy = cJSON_Duplicate(base, 1);
        shuffle(copy, 0);
        char *got = item_canonical(copy, 0);
        assert_non_null(got);
        assert_string_equal(got, expect);
        assert_int_equal(item_equal(copy, base, 0), 1);
        free(got);
        cJSON_Delete(copy);
    }
    /* the canonical text parses back to an equal item */
    cJSON *back = parse(expect);
    assert_int_equal(item_equal(back, base, 0), 1);
    cJSON_Delete(back);
    free(expect);
    cJSON_Delete(base);

    /* list order matters */
    cJSON *l1 = parse("{\"l\":{\"L\":[{\"S\":\"a\"},{\"S\":\"b\"}]}}");
    cJSON *l2 = parse("{\"l\":{\"L\":[{\"S\":\"b\"},{\"S\":\"a\"}]}}");
    assert_int_equal(item_equal(l1, l2, 0), 0);
    cJSON_Delete(l1);
    cJSON_Delete(l2);
    /* control characters are escaped */
    cJSON *ctl = parse("{\"c\":{\"S\":\"\\u0001\\t\"}}");
    char *cc = item_canonical(ctl, 0);
    assert_string_equal(cc, "{\"c\":{\"S\":\"\\u0001\\t\"}}");
    free(cc);
    cJSON_Delete(ctl);
    assert_null(item_canonical(NULL, 0));
}

static void test_numbers_keep_exact_string(void **state)
{
    (void)state;
    cJSON *a = parse("{\"n\":{\"N\":\"1.50\"},\"big\":{\"N\":\"12345678901234567890123456789012345678\"},"
                     "\"e\":{\"N\":\"-0.000E+07\"}}");
    char *c = item_canonical(a, 0);
    assert_string_equal(c, "{\"big\":{\"N\":\"12345678901234567890123456789012345678\"},"
                           "\"e\":{\"N\":\"-0.000E+07\"},\"n\":{\"N\":\"1.50\"}}");
    free(c);
    cJSON *b = parse("{\"n\":{\"N\":\"1.5\"},\"big\":{\"N\":\"12345678901234567890123456789012345678\"},"
                     "\"e\":{\"N\":\"-0.000E+07\"}}");
    assert_int_equal(item_equal(a, b, 0), 0); /* textual, as stored */
    cJSON_Delete(a);
    cJSON_Delete(b);
    /* N is never a JSON number; a raw JSON number is not a valid N */
    char err[128];
    assert_int_equal(valid("{\"n\":{\"N\":1.5}}", err, sizeof err), -1);
}

static void test_hidden(void **state)
{
    (void)state;
    cJSON *a = parse("{\"pk\":{\"S\":\"k\"},\"tern:ver\":{\"S\":\"v1\"},\"tern:wid\":{\"S\":\"w\"},"
                     "\"ternary\":{\"S\":\"kept\"},\"m\":{\"M\":{\"tern:x\":{\"S\":\"nested kept\"}}}}");
    cJSON *b = parse("{\"pk\":{\"S\":\"k\"},\"tern:ver\":{\"S\":\"v2\"},"
                     "\"ternary\":{\"S\":\"kept\"},\"m\":{\"M\":{\"tern:x\":{\"S\":\"nested kept\"}}}}");
    assert_int_equal(item_equal(a, b, 0), 0);
    assert_int_equal(item_equal(a, b, 1), 1);
    char *ca = item_canonical(a, 1);
    assert_null(strstr(ca, "tern:ver"));
    assert_null(strstr(ca, "tern:wid"));
    assert_non_null(strstr(ca, "tern:x"));
    free(ca);
    assert_string_equal(item_get_s(a, ITEM_ATTR_VER), "v1");
    item_strip_hidden(a);
    assert_null(cJSON_GetObjectItemCaseSensitive(a, ITEM_ATTR_VER));
    assert_null(cJSON_GetObjectItemCaseSensitive(a, ITEM_ATTR_WID));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(a, "ternary"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(a, "pk"));
    char *s = item_canonical(a, 0);
    assert_string_equal(s, "{\"m\":{\"M\":{\"tern:x\":{\"S\":\"nested kept\"}}},\"pk\":{\"S\":\"k\"},"
                           "\"ternary\":{\"S\":\"kept\"}}");
    free(s);
    item_strip_hidden(NULL);
    cJSON_Delete(a);
    cJSON_Delete(b);
    assert_int_equal(item_equal(NULL, NULL, 0), 1);
    cJSON *e = parse("{}");
    assert_int_equal(item_equal(NULL, e, 0), 0);
    cJSON_Delete(e);
}

static void test_get_set_s(void **state)
{
    (void)state;
    cJSON *a = parse("{\"s\":{\"S\":\"x\"},\"n\":{\"N\":\"1\"},\"two\":{\"S\":\"x\",\"N\":\"1\"}}");
    assert_string_equal(item_get_s(a, "s"), "x");
    assert_null(item_get_s(a, "S"));  /* case-sensitive */
    assert_null(item_get_s(a, "n"));
    assert_null(item_get_s(a, "two"));
    assert_null(item_get_s(a, "missing"));
    assert_null(item_get_s(NULL, "s"));
    assert_int_equal(item_set_s(a, "s", "y"), 0);
    assert_string_equal(item_get_s(a, "s"), "y");
    assert_int_equal(item_set_s(a, ITEM_ATTR_WID, "w-1"), 0);
    assert_string_equal(item_get_s(a, ITEM_ATTR_WID), "w-1");
    assert_int_equal(cJSON_GetArraySize(a), 4);
    char err[128];
    assert_int_equal(item_validate(a, err, sizeof err), -1); /* "two" is still bad */
    assert_int_equal(item_set_s(a, "two", ""), 0);
    assert_int_equal(item_validate(a, err, sizeof err), 0);
    assert_int_equal(item_set_s(NULL, "a", "b"), -1);
    assert_int_equal(item_set_s(a, NULL, "b"), -1);
    assert_int_equal(item_set_s(a, "a", NULL), -1);
    cJSON_Delete(a);
    /* duplicates of the name all replaced by one */
    a = parse("{\"d\":{\"S\":\"1\"},\"d\":{\"S\":\"2\"}}");
    assert_int_equal(item_set_s(a, "d", "3"), 0);
    assert_int_equal(cJSON_GetArraySize(a), 1);
    assert_string_equal(item_get_s(a, "d"), "3");
    cJSON_Delete(a);
}

static void test_project(void **state)
{
    (void)state;
    cJSON *a = parse("{\"pk\":{\"S\":\"k\"},\"sk\":{\"N\":\"7\"},\"x\":{\"L\":[{\"S\":\"deep\"}]}}");
    const char *names[] = {"sk", "pk", "pk"};
    cJSON *p = item_project(a, names, 3);
    assert_non_null(p);
    char *c = item_canonical(p, 0);
    assert_string_equal(c, "{\"pk\":{\"S\":\"k\"},\"sk\":{\"N\":\"7\"}}");
    free(c);
    cJSON_Delete(p);
    const char *xn[] = {"x"};
    p = item_project(a, xn, 1);
    cJSON_Delete(a); /* deep copy survives the source */
    c = item_canonical(p, 0);
    assert_string_equal(c, "{\"x\":{\"L\":[{\"S\":\"deep\"}]}}");
    free(c);
    cJSON_Delete(p);
    a = parse("{\"pk\":{\"S\":\"k\"}}");
    const char *missing[] = {"pk", "PK"};
    assert_null(item_project(a, missing, 2));
    p = item_project(a, NULL, 0);
    assert_non_null(p);
    assert_int_equal(cJSON_GetArraySize(p), 0);
    cJSON_Delete(p);
    cJSON_Delete(a);
}

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static void test_key_id(void **state)
{
    (void)state;
    cJSON *k1 = parse("{\"pk\":{\"S\":\"a\"}}");
    char *id = item_key_id(k1);
    assert_non_null(id);
    assert_true(is_hex64(id));
    /* pinned: SHA-256 of the canonical text {"pk":{"S":"a"}} */
    assert_string_equal(id, "83c10959759d7aeb254f2883a47758a16f6b929c6e9db3e7ed9f8f4c491220be");
    free(id);
    cJSON_Delete(k1);

    cJSON *k2 = parse("{\"sk\":{\"N\":\"42\"},\"pk\":{\"S\":\"user#1\"}}");
    cJSON *k3 = parse("{\"pk\":{\"S\":\"user#1\"},\"sk\":{\"N\":\"42\"}}");
    char *i2 = item_key_id(k2), *i3 = item_key_id(k3);
    assert_string_equal(i2, "ba47c0dbf75bbeeec2ef860b92411708224c7654622accfdb8f3383ee16cd45a");
    assert_string_equal(i2, i3);
    free(i2);
    free(i3);
    cJSON_Delete(k2);
    cJSON_Delete(k3);

    /* different keys, different ids (including type and name changes) */
    static const char *const keys[] = {
        "{\"pk\":{\"S\":\"a\"}}", "{\"pk\":{\"S\":\"b\"}}", "{\"pk\":{\"S\":\"A\"}}",
        "{\"pk\":{\"N\":\"1\"}}", "{\"pk\":{\"S\":\"1\"}}", "{\"pk\":{\"B\":\"AQ==\"}}",
        "{\"PK\":{\"S\":\"a\"}}", "{\"pk\":{\"S\":\"a\"},\"sk\":{\"S\":\"a\"}}",
        "{\"pk\":{\"S\":\"a\"},\"sk\":{\"S\":\"b\"}}", "{\"pk\":{\"S\":\"a \"}}",
    };
    size_t n = sizeof keys / sizeof keys[0];
    char *ids[sizeof keys / sizeof keys[0]];
    for (size_t i = 0; i < n; i++) {
        cJSON *k = parse(keys[i]);
        ids[i] = item_key_id(k);
        assert_non_null(ids[i]);
        assert_true(is_hex64(ids[i]));
        cJSON_Delete(k);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                fail_msg("same key id for %s and %s", keys[i], keys[j]);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    assert_null(item_key_id(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_types_validate),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_rejects_with_path),
        cmocka_unit_test(test_utf8_and_long_names),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_canonical_order_independent),
        cmocka_unit_test(test_numbers_keep_exact_string),
        cmocka_unit_test(test_hidden),
        cmocka_unit_test(test_get_set_s),
        cmocka_unit_test(test_project),
        cmocka_unit_test(test_key_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
