/* test_wire.c -- unit tests of wire/ (frames, batches, acks, strict decoding). */
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
#include "lww.h"
#include "wire.h"

static cJSON *parse(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    if (!j)
        fail_msg("test JSON does not parse: %s", json);
    return j;
}

/* Builds a frame: header with the given fields, then body. Caller frees. */
static unsigned char *raw_frame(unsigned version, unsigned type, unsigned reserved,
                                const char *body, size_t *len)
{
    size_t blen = strlen(body);
    unsigned char *f = malloc(WIRE_HEADER_LEN + blen + 1);
    assert_non_null(f);
    memcpy(f, "TERN", 4);
    f[4] = (unsigned char)version;
    f[5] = (unsigned char)type;
    f[6] = (unsigned char)(reserved >> 8);
    f[7] = (unsigned char)reserved;
    f[8] = (unsigned char)(blen >> 24);
    f[9] = (unsigned char)(blen >> 16);
    f[10] = (unsigned char)(blen >> 8);
    f[11] = (unsigned char)blen;
    memcpy(f + WIRE_HEADER_LEN, body, blen);
    *len = WIRE_HEADER_LEN + blen;
    return f;
}

/* Decodes a body as a frame of type and protocol version; frees any message; returns the
 * status. */
static wire_status decode_body_v(unsigned version, unsigned type, const char *body, char *err, size_t errlen)
{
    size_t len;
    unsigned char *f = raw_frame(version, type, 0, body, &len);
    wire_msg m;
    wire_status st = wire_decode(f, len, &m, err, errlen);
    if (st == WIRE_OK)
        wire_msg_free(&m);
    free(f);
    return st;
}

/* The same as a version 1 frame (the body schemas below, without acked). */
static wire_status decode_body(unsigned type, const char *body, char *err, size_t errlen)
{
    return decode_body_v(1, type, body, err, errlen);
}

/* ---------------------------------------------------------------- positions */

static void test_pos(void **state)
{
    (void)state;
    wire_pos p;
    assert_int_equal(wire_pos_parse("1526919030474-0", &p), 0);
    assert_true(p.ms == 1526919030474ULL && p.seq == 0);
    assert_int_equal(wire_pos_parse("0-0", &p), 0);
    assert_int_equal(wire_pos_parse("18446744073709551615-18446744073709551615", &p), 0);
    assert_true(p.ms == UINT64_MAX && p.seq == UINT64_MAX);
    char buf[WIRE_POS_STRLEN];
    assert_int_equal(wire_pos_format(p, buf, sizeof buf), 0);
    assert_string_equal(buf, "18446744073709551615-18446744073709551615");
    char small[5];
    assert_int_equal(wire_pos_format(p, small, sizeof small), -1);
    assert_string_equal(small, "");
    static const char *const bad[] = {
        "", "-", "1", "1-", "-1", "1--1", "1-2-3", "01-0", "1-00", "+1-0", " 1-0", "1-0 ",
        "a-0", "1-b", "18446744073709551616-0", "0-18446744073709551616",
        "99999999999999999999999-0", "1.5-0", "0x1-0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_pos q = {7, 7};
        if (wire_pos_parse(bad[i], &q) != -1)
            fail_msg("accepted position \"%s\"", bad[i]);
        assert_true(q.ms == 7 && q.seq == 7);
    }
    assert_int_equal(wire_pos_parse(NULL, &p), -1);
    wire_pos a = {5, 1}, b = {5, 2}, c = {6, 0};
    assert_true(wire_pos_cmp(a, b) < 0);
    assert_true(wire_pos_cmp(b, a) > 0);
    assert_true(wire_pos_cmp(b, c) < 0);
    assert_int_equal(wire_pos_cmp(a, a), 0);
    assert_string_equal(wire_status_name(WIRE_OK), "ok");
    assert_string_equal(wire_status_name(WIRE_ERR_SCHEMA), "schema");
    assert_string_equal(wire_status_name((wire_status)99), "unknown");
}

/* ---------------------------------------------------------------- round trips */

static const char *const IMAGES[] = {
    "{\"pk\":{\"S\":\"user#1\"},\"sk\":{\"N\":\"1\"},\"s\":{\"S\":\"h\\u00e9llo \\\"w\\\"\\n\"},"
    "\"n\":{\"N\":\"-12.50e+3\"},\"b\":{\"B\":\"AQID\"},\"t\":{\"BOOL\":true},\"f\":{\"BOOL\":false},"
    "\"z\":{\"NULL\":true},\"l\":{\"L\":[{\"S\":\"x\"},{\"N\":\"1.0\"},{\"L\":[]}]},"
    "\"m\":{\"M\":{\"in\":{\"M\":{\"deep\":{\"SS\":[\"a\",\"b\"]}}}}},\"ss\":{\"SS\":[\"b\",\"a\"]},"
    "\"ns\":{\"NS\":[\"3\",\"-1\",\"2.5\"]},\"bs\":{\"BS\":[\"AQ==\",\"Ag==\"]},\"e\":{\"S\":\"\"}}",
    "{\"pk\":{\"S\":\"user#2\"},\"sk\":{\"N\":\"12345678901234567890123456789012345678\"}}",
};

static wire_batch make_batch(size_t n)
{
    wire_batch b;
    memset(&b, 0, sizeof b);
    snprintf(b.source, sizeof b.source, "us-east-1");
    snprintf(b.table, sizeof b.table, "orders.v2_prod-1");
    b.sent_ms = 1700000000123ULL;
    b.n = n;
    b.changes = calloc(n, sizeof *b.changes);
    assert_non_null(b.changes);
    for (size_t i = 0; i < n; i++) {
        wire_change *c = &b.changes[i];
        c->pos.ms = 1700000000000ULL + i / 3;
        c->pos.seq = i % 3;
        c->op = (i % 4 == 3) ? WIRE_OP_DELETE : WIRE_OP_PUT;
        c->image = parse(IMAGES[i % 2]);
        const char *names[] = {"pk", "sk"};
        c->keys = item_project(c->image, names, 2);
        assert_non_null(c->keys);
        if (c->op == WIRE_OP_DELETE) {
            cJSON_Delete(c->image);
            c->image = NULL;
        }
        lww_version v = {.ms = 1700000000000ULL + i, .counter = (uint32_t)i};
        snprintf(v.region, sizeof v.region, "us-east-1");
        assert_int_equal(lww_version_format(&v, c->version, sizeof c->version), 0);
    }
    b.first = b.changes[0].pos;
    b.last = b.changes[n - 1].pos;
    return b;
}

static void free_batch(wire_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        cJSON_Delete(b->changes[i].keys);
        cJSON_Delete(b->changes[i].image);
    }
    free(b->changes);
}

static void test_batch_round_trip(void **state)
{
    (void)state;
    size_t sizes[] = {1, 2, 7, WIRE_MAX_CHANGES};
    for (size_t s = 0; s < 2 * sizeof sizes / sizeof sizes[0]; s++) {
        /* version 1 (no acked), then the same sizes as version 2 */
        int v2 = s >= sizeof sizes / sizeof sizes[0];
        wire_batch b = make_batch(sizes[s % (sizeof sizes / sizeof sizes[0])]);
        unsigned char *frame = NULL;
        size_t len = 0;
        char err[256];
        if (v2) {
            b.has_acked = 1;
            b.acked = b.prev;
            if (b.acked.seq) b.acked.seq--;
        }
        if (wire_encode_batch(&b, &frame, &len, err, sizeof err) != 0)
            fail_msg("encode failed: %s", err);
        assert_true(len > WIRE_HEADER_LEN && len <= WIRE_MAX_FRAME);
        assert_memory_equal(frame, v2 ? "TERN\x02\x01\x00\x00" : "TERN\x01\x01\x00\x00", 8);
        uint32_t blen = ((uint32_t)frame[8] << 24) | ((uint32_t)frame[9] << 16) |
                        ((uint32_t)frame[10] << 8) | frame[11];
        assert_int_equal(blen, len - WIRE_HEADER_LEN);
        wire_msg m;
        wire_status st = wire_decode(frame, len, &m, err, sizeof err);
        if (st != WIRE_OK)
            fail_msg("decode failed: %s: %s", wire_status_name(st), err);
        assert_int_equal(m.type, WIRE_BATCH);
        wire_batch *d = &m.u.batch;
        assert_string_equal(d->source, b.source);
        assert_string_equal(d->table, b.table);
        assert_int_equal(wire_pos_cmp(d->prev, b.prev), 0);
        assert_int_equal(d->has_acked, v2);
        assert_int_equal(wire_pos_cmp(d->acked, v2 ? b.acked : (wire_pos){0, 0}), 0);
        assert_int_equal(wire_pos_cmp(d->first, b.first), 0);
        assert_int_equal(wire_pos_cmp(d->last, b.last), 0);
        assert_true(d->sent_ms == b.sent_ms);
        assert_int_equal(d->n, b.n);
        for (size_t i = 0; i < b.n; i++) {
            assert_int_equal(wire_pos_cmp(d->changes[i].pos, b.changes[i].pos), 0);
            assert_int_equal(d->changes[i].op, b.changes[i].op);
            assert_string_equal(d->changes[i].version, b.changes[i].version);
            assert_int_equal(item_equal(d->changes[i].keys, b.changes[i].keys, 0), 1);
            if (b.changes[i].op == WIRE_OP_PUT) {
                assert_int_equal(item_equal(d->changes[i].image, b.changes[i].image, 0), 1);
                /* numbers keep their exact text */
                char *canon = item_canonical(d->changes[i].image, 0);
                assert_non_null(strstr(canon, i % 2 ? "\"12345678901234567890123456789012345678\""
                                                    : "\"-12.50e+3\""));
                free(canon);
            } else {
                assert_null(d->changes[i].image);
            }
        }
        wire_msg_free(&m);
        assert_null(m.u.batch.changes);
        wire_msg_free(&m); /* safe twice */
        free(frame);
        free_batch(&b);
    }
}

static void test_batch_extremes(void **state)
{
    (void)state;
    wire_batch b = make_batch(1);
    b.sent_ms = WIRE_SENT_MS_MAX;
    b.changes[0].pos.ms = UINT64_MAX;
    b.changes[0].pos.seq = UINT64_MAX;
    b.first = b.last = b.changes[0].pos;
    unsigned char *frame;
    size_t len;
    char err[256];
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), 0);
    wire_msg m;
    assert_int_equal(wire_decode(frame, len, &m, err, sizeof err), WIRE_OK);
    assert_true(m.u.batch.sent_ms == WIRE_SENT_MS_MAX);
    assert_true(m.u.batch.first.ms == UINT64_MAX && m.u.batch.last.seq == UINT64_MAX);
    wire_msg_free(&m);
    free(frame);
    b.sent_ms = 0;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), 0);
    assert_int_equal(wire_decode(frame, len, &m, err, sizeof err), WIRE_OK);
    assert_true(m.u.batch.sent_ms == 0);
    wire_msg_free(&m);
    free(frame);
    b.sent_ms = WIRE_SENT_MS_MAX + 1;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_null(frame);
    assert_non_null(strstr(err, "sent_ms"));
    free_batch(&b);
}

static void test_ack_round_trip(void **state)
{
    (void)state;
    wire_ack a;
    memset(&a, 0, sizeof a);
    snprintf(a.source, sizeof a.source, "eu-west-1");
    snprintf(a.table, sizeof a.table, "Orders");
    a.pos.ms = 1526919030474ULL;
    a.pos.seq = 55;
    unsigned char *frame;
    size_t len;
    char err[256];
    assert_int_equal(wire_encode_ack(&a, &frame, &len, err, sizeof err), 0);
    assert_memory_equal(frame, "TERN\x01\x02\x00\x00", 8);
    const char *body = "{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1526919030474-55\"}";
    assert_int_equal(len, WIRE_HEADER_LEN + strlen(body));
    assert_memory_equal(frame + WIRE_HEADER_LEN, body, strlen(body));
    wire_msg m;
    assert_int_equal(wire_decode(frame, len, &m, err, sizeof err), WIRE_OK);
    assert_int_equal(m.type, WIRE_ACK);
    assert_string_equal(m.u.ack.source, "eu-west-1");
    assert_string_equal(m.u.ack.table, "Orders");
    assert_int_equal(wire_pos_cmp(m.u.ack.pos, a.pos), 0);
    wire_msg_free(&m);
    free(frame);

    /* the encoder applies the decoder's rules */
    snprintf(a.source, sizeof a.source, "EU");
    assert_int_equal(wire_encode_ack(&a, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_null(frame);
    assert_non_null(strstr(err, "source"));
    snprintf(a.source, sizeof a.source, "eu-west-1");
    snprintf(a.table, sizeof a.table, "t");
    assert_int_equal(wire_encode_ack(&a, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "table"));
}

/* ---------------------------------------------------------------- header rejections */

static void test_header_rejections(void **state)
{
    (void)state;
    char err[256];
    wire_msg m;
    const char *ack = "{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1-1\"}";
    size_t len;
    unsigned char *f = raw_frame(1, 2, 0, ack, &len);
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_OK);
    wire_msg_free(&m);
    /* truncated header */
    for (size_t l = 0; l < WIRE_HEADER_LEN; l++) {
        assert_int_equal(wire_decode(f, l, &m, err, sizeof err), WIRE_ERR_SHORT);
        assert_non_null(strstr(err, "shorter than the 12-byte header"));
    }
    assert_int_equal(wire_decode(NULL, 100, &m, err, sizeof err), WIRE_ERR_SHORT);
    /* truncated body */
    assert_int_equal(wire_decode(f, len - 1, &m, err, sizeof err), WIRE_ERR_LENGTH);
    assert_string_equal(err, "header says 51 body bytes, frame has 50");
    assert_int_equal(wire_decode(f, WIRE_HEADER_LEN, &m, err, sizeof err), WIRE_ERR_LENGTH);
    free(f);
    /* extra bytes after the body */
    f = raw_frame(1, 2, 0, ack, &len);
    unsigned char *g = malloc(len + 3);
    memcpy(g, f, len);
    memcpy(g + len, "   ", 3);
    assert_int_equal(wire_decode(g, len + 3, &m, err, sizeof err), WIRE_ERR_LENGTH);
    free(g);
    /* bad magic */
    f[0] = 't';
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_MAGIC);
    assert_non_null(strstr(err, "magic"));
    free(f);
    /* unknown version; an ack is the same in versions 1 and 2 */
    f = raw_frame(3, 2, 0, ack, &len);
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_VERSION);
    assert_string_equal(err, "protocol version 3, this build speaks 1..2");
    free(f);
    f = raw_frame(2, 2, 0, ack, &len);
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_OK);
    wire_msg_free(&m);
    free(f);
    f = raw_frame(0, 2, 0, ack, &len);
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_VERSION);
    free(f);
    /* reserved bits */
    f = raw_frame(1, 2, 0x0100, ack, &len);
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_VERSION);
    assert_non_null(strstr(err, "reserved"));
    free(f);
    /* unknown type */
    for (unsigned t = 0; t < 256; t++) {
        if (t == 1 || t == 2)
            continue;
        f = raw_frame(1, t, 0, ack, &len);
        assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_TYPE);
        free(f);
    }
    /* a batch header with an ack body is a schema error, not a crash */
    f = raw_frame(1, 1, 0, ack, &len);
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_SCHEMA);
    free(f);
    /* oversize: declared length, then a real over-size buffer */
    f = raw_frame(1, 2, 0, ack, &len);
    f[8] = 0x00; f[9] = 0x80; f[10] = 0x00; f[11] = 0x00; /* 8 MiB body + header > limit */
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_TOO_BIG);
    f[8] = 0xff; f[9] = 0xff; f[10] = 0xff; f[11] = 0xff;
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_TOO_BIG);
    free(f);
    size_t big = WIRE_MAX_FRAME + 1;
    unsigned char *huge = calloc(1, big);
    assert_non_null(huge);
    memcpy(huge, "TERN\x01\x02\x00\x00", 8);
    uint32_t bl = (uint32_t)(big - WIRE_HEADER_LEN);
    huge[8] = (unsigned char)(bl >> 24); huge[9] = (unsigned char)(bl >> 16);
    huge[10] = (unsigned char)(bl >> 8); huge[11] = (unsigned char)bl;
    assert_int_equal(wire_decode(huge, big, &m, err, sizeof err), WIRE_ERR_TOO_BIG);
    free(huge);
}

static void test_json_rejections(void **state)
{
    (void)state;
    char err[256];
    static const char *const bad_json[] = {
        "", " ", "{", "{\"source\":}", "nope", "{\"a\":1}}", "{\"a\":1} x", "[1,2",
        "{\"source\":\"\\ud800\"}",                                  /* lone surrogate */
        "{\"source\":\"a\\u0000b\",\"table\":\"Orders\",\"pos\":\"1-1\"}", /* \u0000 */
        "{\"source\":\"caf\xc3\"}",                                   /* truncated UTF-8 */
        "{\"source\":\"\xff\"}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        wire_status st = decode_body(WIRE_ACK, bad_json[i], err, sizeof err);
        if (st != WIRE_ERR_JSON)
            fail_msg("body %zu: %s (%s), expected json", i, wire_status_name(st), err);
    }
    /* an embedded NUL byte in the body */
    const char body[] = "{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1-1\"}";
    size_t len;
    unsigned char *f = raw_frame(1, 2, 0, body, &len);
    f[WIRE_HEADER_LEN + 12] = '\0';
    wire_msg m;
    assert_int_equal(wire_decode(f, len, &m, err, sizeof err), WIRE_ERR_JSON);
    free(f);
    /* escaped backslash before u0000 is an ordinary string, not a NUL: schema decides */
    assert_int_equal(decode_body(WIRE_ACK, "{\"source\":\"a\\\\u0000\",\"table\":\"Orders\",\"pos\":\"1-1\"}",
                                 err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "source"));
    /* trailing whitespace is fine */
    assert_int_equal(decode_body(WIRE_ACK, "{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1-1\"} \n",
                                 err, sizeof err), WIRE_OK);
}

static void test_ack_schema(void **state)
{
    (void)state;
    static const struct { const char *body, *err; } cases[] = {
        {"[]", "body: must be a JSON object"},
        {"\"x\"", "must be a JSON object"},
        {"{\"table\":\"Orders\",\"pos\":\"1-1\"}", "source: missing"},
        {"{\"source\":\"eu-west-1\",\"pos\":\"1-1\"}", "table: missing"},
        {"{\"source\":\"eu-west-1\",\"table\":\"Orders\"}", "pos: missing"},
        {"{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1-1\",\"x\":1}", "unknown field \"x\""},
        {"{\"source\":\"eu-west-1\",\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1-1\"}",
         "duplicate field \"source\""},
        {"{\"Source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1-1\"}", "unknown field \"Source\""},
        {"{\"source\":1,\"table\":\"Orders\",\"pos\":\"1-1\"}", "source: must be a string"},
        {"{\"source\":\"EU\",\"table\":\"Orders\",\"pos\":\"1-1\"}", "source: \"EU\" is not a region name"},
        {"{\"source\":\"eu-west-1\",\"table\":\"ab\",\"pos\":\"1-1\"}", "table: \"ab\" is not a DynamoDB table name"},
        {"{\"source\":\"eu-west-1\",\"table\":\"a b c\",\"pos\":\"1-1\"}", "table: \"a b c\" is not"},
        {"{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":\"1\"}", "pos: \"1\" is not a position"},
        {"{\"source\":\"eu-west-1\",\"table\":\"Orders\",\"pos\":5}", "pos: must be a string"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wire_status st = decode_body(WIRE_ACK, cases[i].body, err, sizeof err);
        if (st != WIRE_ERR_SCHEMA || !strstr(err, cases[i].err))
            fail_msg("ack %s: %s \"%s\", expected schema \"%s\"", cases[i].body,
                     wire_status_name(st), err, cases[i].err);
    }
    /* a 255-char table is fine, 256 is not */
    char body[700], table[300];
    memset(table, 'T', 255);
    table[255] = '\0';
    snprintf(body, sizeof body, "{\"source\":\"eu-west-1\",\"table\":\"%s\",\"pos\":\"1-1\"}", table);
    assert_int_equal(decode_body(WIRE_ACK, body, err, sizeof err), WIRE_OK);
    table[255] = 'T';
    table[256] = '\0';
    snprintf(body, sizeof body, "{\"source\":\"eu-west-1\",\"table\":\"%s\",\"pos\":\"1-1\"}", table);
    assert_int_equal(decode_body(WIRE_ACK, body, err, sizeof err), WIRE_ERR_SCHEMA);
}

/* ---------------------------------------------------------------- batch schema */

#define K "{\"pk\":{\"S\":\"a\"}}"
#define IMG "{\"pk\":{\"S\":\"a\"},\"v\":{\"N\":\"1\"}}"
#define VER "\"1700000000000-000001-us-east-1\""
#define PUT(pos) "{\"pos\":\"" pos "\",\"op\":\"put\",\"keys\":" K ",\"image\":" IMG ",\"ver\":" VER "}"
#define HEAD(first, last) "{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"" first \
    "\",\"last\":\"" last "\",\"sent_ms\":1700000000500,"

static void test_batch_schema(void **state)
{
    (void)state;
    static const struct { const char *body, *err; } cases[] = {
        {HEAD("1-1", "1-1") "\"changes\":[" PUT("1-1") "],\"extra\":true}", "body: unknown field \"extra\""},
        {HEAD("1-1", "1-1") "\"changes\":[" PUT("1-1") "],\"changes\":[]}", "body: duplicate field \"changes\""},
        {"{\"table\":\"Orders\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1,\"changes\":[" PUT("1-1") "]}",
         "source: missing"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"last\":\"1-1\",\"sent_ms\":1,\"changes\":[" PUT("1-1") "]}",
         "first: missing"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"sent_ms\":1,\"changes\":[" PUT("1-1") "]}",
         "last: missing"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"changes\":[" PUT("1-1") "]}",
         "sent_ms: missing"},
        {HEAD("1-1", "1-1") "\"x\":1}", "body: unknown field \"x\""},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1,\"changes\":[" PUT("1-1") "]}",
         "prev: missing"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"1-1\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1,\"changes\":[" PUT("1-1") "]}",
         "prev: must be before first"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1}",
         "changes: missing"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":-1,"
         "\"changes\":[" PUT("1-1") "]}", "sent_ms: must be an integer"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1.5,"
         "\"changes\":[" PUT("1-1") "]}", "sent_ms: must be an integer"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":\"1\","
         "\"changes\":[" PUT("1-1") "]}", "sent_ms: must be an integer"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1e300,"
         "\"changes\":[" PUT("1-1") "]}", "sent_ms: must be an integer"},
        {"{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"0-0\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":9007199254740992,"
         "\"changes\":[" PUT("1-1") "]}", "sent_ms: must be an integer"},
        {HEAD("1-1", "1-1") "\"changes\":[]}", "changes: 0 changes, must be 1..2000"},
        {HEAD("1-1", "1-1") "\"changes\":{}}", "changes: must be an array"},
        {HEAD("x", "1-1") "\"changes\":[" PUT("1-1") "]}", "first: \"x\" is not a position"},
        {HEAD("1-1", "01-1") "\"changes\":[" PUT("1-1") "]}", "last: \"01-1\" is not a position"},
        {HEAD("1-0", "1-1") "\"changes\":[" PUT("1-1") "]}", "first: 1-0 is not changes[0].pos 1-1"},
        {HEAD("1-1", "1-2") "\"changes\":[" PUT("1-1") "]}", "last: 1-2 is not changes[0].pos 1-1"},
        {HEAD("1-1", "1-1") "\"changes\":[" PUT("1-1") "," PUT("1-1") "]}",
         "changes[1].pos: 1-1 is not after changes[0].pos 1-1"},
        {HEAD("2-1", "1-9") "\"changes\":[" PUT("2-1") "," PUT("1-9") "]}",
         "changes[1].pos: 1-9 is not after changes[0].pos 2-1"},
        {HEAD("1-1", "1-1") "\"changes\":[5]}", "changes[0]: must be a JSON object"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"image\":" IMG
         ",\"ver\":" VER ",\"why\":1}]}", "changes[0]: unknown field \"why\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"keys\":" K ",\"image\":" IMG
         ",\"ver\":" VER "}]}", "changes[0]: duplicate field \"keys\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"op\":\"put\",\"keys\":" K ",\"image\":" IMG ",\"ver\":" VER "}]}",
         "changes[0].pos: missing"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"upsert\",\"keys\":" K ",\"image\":" IMG
         ",\"ver\":" VER "}]}", "changes[0].op: \"upsert\" is not \"put\" or \"delete\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"keys\":" K ",\"image\":" IMG ",\"ver\":" VER "}]}",
         "changes[0].op: missing"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"image\":" IMG ",\"ver\":" VER "}]}",
         "changes[0].keys: missing"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":{},\"ver\":" VER "}]}",
         "changes[0].keys: must not be empty"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":[],\"ver\":" VER "}]}",
         "changes[0].keys: item must be a JSON object"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":{\"pk\":{\"N\":\"x\"}},\"ver\":" VER "}]}",
         "changes[0].keys.pk: N is not a number"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":{\"pk\":{\"S\":\"a\"},"
         "\"tern:ver\":{\"S\":\"x\"}},\"ver\":" VER "}]}", "changes[0].keys: hidden attribute \"tern:ver\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"ver\":" VER "}]}",
         "changes[0].image: missing"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"image\":{\"pk\":{\"S\":\"a\"},"
         "\"m\":{\"M\":{\"l\":{\"L\":[{\"BOOL\":1}]}}}},\"ver\":" VER "}]}",
         "changes[0].image.m.M.l[0]: BOOL must be true or false"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"image\":{\"pk\":{\"S\":\"a\"},"
         "\"tern:wid\":{\"S\":\"w\"}},\"ver\":" VER "}]}", "changes[0].image: hidden attribute \"tern:wid\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"image\":{\"v\":{\"S\":\"a\"}},"
         "\"ver\":" VER "}]}", "changes[0].image: key attribute \"pk\" is missing from the image"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"image\":{\"pk\":{\"S\":\"b\"}},"
         "\"ver\":" VER "}]}", "changes[0].image: key attribute values differ from keys"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"put\",\"keys\":" K ",\"image\":{\"pk\":{\"N\":\"1\"}},"
         "\"ver\":" VER "}]}", "changes[0].image: key attribute values differ from keys"}, /* same name, other type */
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":" K ",\"image\":" IMG
         ",\"ver\":" VER "}]}", "changes[0].image: a delete must not carry an image"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":" K "}]}",
         "changes[0].ver: missing"},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":" K
         ",\"ver\":\"1700000000000-1-us-east-1\"}]}", "changes[0].ver: version \"1700000000000-1-us-east-1\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":" K
         ",\"ver\":\"1700000000000-000001-eu-west-1\"}]}",
         "changes[0].ver: region \"eu-west-1\" is not the source \"us-east-1\""},
        {HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":" K ",\"ver\":1}]}",
         "changes[0].ver: must be a string"},
        {HEAD("1-1", "1-2") "\"changes\":[" PUT("1-1") ",{\"pos\":\"1-2\",\"op\":\"put\",\"keys\":" K
         ",\"image\":" IMG ",\"ver\":\"1700000000000-000001-us-east-1x\"}]}",
         "changes[1].ver: region \"us-east-1x\" is not the source"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *expect = cases[i].err;
        wire_status st = decode_body(WIRE_BATCH, cases[i].body, err, sizeof err);
        if (st != WIRE_ERR_SCHEMA || strncmp(err, expect, strlen(expect)) != 0)
            fail_msg("case %zu: %s \"%s\", expected schema \"%s\"", i, wire_status_name(st), err,
                     expect);
    }
    static const char *const ok[] = {
        HEAD("1-1", "1-1") "\"changes\":[" PUT("1-1") "]}",
        HEAD("1-1", "2-0") "\"changes\":[" PUT("1-1") "," PUT("1-2") "," PUT("2-0") "]}",
        /* key attributes in another order, whitespace, sent_ms 0 */
        "{ \"changes\" : [ {\"ver\":" VER ",\"image\":{\"v\":{\"N\":\"1\"},\"sk\":{\"SS\":[\"y\",\"x\"]},"
        "\"pk\":{\"S\":\"a\"}},\"keys\":{\"sk\":{\"SS\":[\"x\",\"y\"]},\"pk\":{\"S\":\"a\"}},\"op\":\"put\","
        "\"pos\":\"0-1\"} ], \"sent_ms\" : 0, \"last\":\"0-1\",\"first\":\"0-1\",\"prev\":\"0-0\",\"table\":\"T.1_-\","
        "\"source\":\"us-east-1\" }",
        HEAD("1-1", "1-1") "\"changes\":[{\"pos\":\"1-1\",\"op\":\"delete\",\"keys\":" K ",\"ver\":" VER "}]}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        wire_status st = decode_body(WIRE_BATCH, ok[i], err, sizeof err);
        if (st != WIRE_OK)
            fail_msg("ok case %zu rejected: %s %s", i, wire_status_name(st), err);
    }
}

/* Version 2 batches carry acked (required, not after prev); version 1 batches must not. */
static void test_batch_acked(void **state)
{
    (void)state;
#define HEAD_ACKED(prev, acked) "{\"source\":\"us-east-1\",\"table\":\"Orders\",\"prev\":\"" prev "\",\"acked\":\"" \
    acked "\",\"first\":\"1-1\",\"last\":\"1-1\",\"sent_ms\":1,\"changes\":[" PUT("1-1") "]}"
    static const struct { unsigned version; const char *body, *err; } bad[] = {
        {2, HEAD("1-1", "1-1") "\"changes\":[" PUT("1-1") "]}", "acked: missing"},
        {2, HEAD_ACKED("0-5", "0-6"), "acked: must not be after prev"},
        {2, HEAD_ACKED("0-5", "x"), "acked: \"x\" is not a position"},
        {1, HEAD_ACKED("0-5", "0-5"), "body: unknown field \"acked\""},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_status st = decode_body_v(bad[i].version, WIRE_BATCH, bad[i].body, err, sizeof err);
        if (st != WIRE_ERR_SCHEMA || strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
            fail_msg("case %zu: %s \"%s\", expected schema \"%s\"", i, wire_status_name(st), err, bad[i].err);
    }
    assert_int_equal(decode_body_v(2, WIRE_BATCH, HEAD_ACKED("0-5", "0-5"), err, sizeof err), WIRE_OK);
    assert_int_equal(decode_body_v(2, WIRE_BATCH, HEAD_ACKED("0-5", "0-0"), err, sizeof err), WIRE_OK);
#undef HEAD_ACKED
    /* the encoder applies the same rule */
    wire_batch b = make_batch(1);
    unsigned char *frame = NULL;
    size_t len = 0;
    b.has_acked = 1;
    b.acked = b.first;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_null(frame);
    assert_string_equal(err, "acked: must not be after prev");
    free_batch(&b);
}

static void test_batch_too_many_changes(void **state)
{
    (void)state;
    /* 2001 small changes as raw JSON: rejected by count */
    size_t cap = 2100 * 200, used = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    used += (size_t)snprintf(body + used, cap - used, HEAD("1-1", "1-2001") "\"changes\":[");
    for (int i = 1; i <= WIRE_MAX_CHANGES + 1; i++)
        used += (size_t)snprintf(body + used, cap - used,
                                 "%s{\"pos\":\"1-%d\",\"op\":\"delete\",\"keys\":" K ",\"ver\":" VER "}",
                                 i > 1 ? "," : "", i);
    snprintf(body + used, cap - used, "]}");
    char err[256];
    assert_int_equal(decode_body(WIRE_BATCH, body, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_string_equal(err, "changes: 2001 changes, must be 1..2000");
    free(body);
}

/* ---------------------------------------------------------------- encoder rules */

/* cJSON allocations fail from the (fail_after + 1)th on. */
static long fail_after;
static void *fail_malloc(size_t n)
{
    if (fail_after-- <= 0)
        return NULL;
    return malloc(n);
}

static void test_encode_rejections(void **state)
{
    (void)state;
    char err[256];
    unsigned char *frame = (unsigned char *)"sentinel";
    size_t len = 99;
    wire_batch b = make_batch(3);

    b.n = 0;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_null(frame);
    assert_int_equal(len, 0);
    b.n = 3;

    b.first.seq++;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "first:"));
    b.first.seq--;

    char saved[LWW_VERSION_STRLEN];
    memcpy(saved, b.changes[1].version, sizeof saved);
    snprintf(b.changes[1].version, sizeof b.changes[1].version, "1700000000000-000001-eu-west-1");
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "changes[1].ver: region"));
    memcpy(b.changes[1].version, saved, sizeof saved);

    wire_op op = b.changes[2].op;
    b.changes[2].op = (wire_op)7;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "changes[2].op"));
    b.changes[2].op = op;

    assert_int_equal(item_set_s(b.changes[0].image, ITEM_ATTR_VER, "x"), 0);
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "changes[0].image: hidden attribute \"tern:ver\""));
    item_strip_hidden(b.changes[0].image);

    cJSON *keys = b.changes[0].keys;
    b.changes[0].keys = NULL;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);
    assert_non_null(strstr(err, "changes[0].keys: missing"));
    b.changes[0].keys = keys;

    /* still good, and the caller's trees are intact after all of that */
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), 0);
    free(frame);
    assert_int_equal(wire_encode_batch(NULL, &frame, &len, err, sizeof err), WIRE_ERR_SCHEMA);

    /* out of memory is not a broken rule: the shipper retries instead of dropping the
     * change (it deleted a change from the log when its encoding failed for any reason).
     * Every allocation in turn fails, building and checking alike, until it encodes. */
    {
        cJSON_Hooks fail = {fail_malloc, free};
        wire_ack a;
        int rc, tries;
        memset(&a, 0, sizeof a);
        snprintf(a.source, sizeof a.source, "us-east-1");
        snprintf(a.table, sizeof a.table, "%s", b.table);
        for (int ack = 0; ack < 2; ack++) {
            for (tries = 0; tries < 100000; tries++) {
                fail_after = tries;
                cJSON_InitHooks(&fail);
                rc = ack ? wire_encode_ack(&a, &frame, &len, err, sizeof err)
                         : wire_encode_batch(&b, &frame, &len, err, sizeof err);
                cJSON_InitHooks(NULL);
                if (rc == 0)
                    break;
                if (rc != WIRE_ERR_NOMEM)
                    fail_msg("%s with allocation %d failing: %d (%s), not WIRE_ERR_NOMEM", ack ? "ack" : "batch",
                             tries + 1, rc, err);
                assert_null(frame);
            }
            assert_int_equal(rc, 0);
            assert_true(tries > 3);
            free(frame);
        }
    }
    free_batch(&b);
}

static void test_encode_over_size(void **state)
{
    (void)state;
    wire_batch b = make_batch(WIRE_MAX_CHANGES);
    /* ~8 KB per image x 1500 puts > 8 MiB */
    char *big = malloc(8001);
    assert_non_null(big);
    memset(big, 'x', 8000);
    big[8000] = '\0';
    for (size_t i = 0; i < b.n; i++)
        if (b.changes[i].image)
            assert_int_equal(item_set_s(b.changes[i].image, "blob", big), 0);
    free(big);
    unsigned char *frame;
    size_t len;
    char err[256];
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), WIRE_ERR_TOO_BIG);
    assert_null(frame);
    assert_non_null(strstr(err, "exceeds WIRE_MAX_FRAME"));
    /* half of it fits */
    b.n = WIRE_MAX_CHANGES / 2;
    b.last = b.changes[b.n - 1].pos;
    assert_int_equal(wire_encode_batch(&b, &frame, &len, err, sizeof err), 0);
    assert_true(len <= WIRE_MAX_FRAME);
    wire_msg m;
    assert_int_equal(wire_decode(frame, len, &m, err, sizeof err), WIRE_OK);
    wire_msg_free(&m);
    free(frame);
    b.n = WIRE_MAX_CHANGES;
    free_batch(&b);
}

/* ---------------------------------------------------------------- robustness */

static uint64_t rng = 0x243F6A8885A308D3ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fix_length(unsigned char *f, size_t len)
{
    if (len < WIRE_HEADER_LEN)
        return;
    uint32_t bl = (uint32_t)(len - WIRE_HEADER_LEN);
    f[8] = (unsigned char)(bl >> 24);
    f[9] = (unsigned char)(bl >> 16);
    f[10] = (unsigned char)(bl >> 8);
    f[11] = (unsigned char)bl;
}

static void test_fuzz_mutations(void **state)
{
    (void)state;
    wire_batch b = make_batch(6);
    unsigned char *base;
    size_t base_len;
    char err[256];
    assert_int_equal(wire_encode_batch(&b, &base, &base_len, err, sizeof err), 0);
    free_batch(&b);
    static const char tokens[] = "{}[]\",:\\-0123456789eE.+tfnu \x80\xc3\xff\x00";
    size_t ok = 0, rejected = 0, by_status[WIRE_ERR_NOMEM + 1] = {0};
    for (int iter = 0; iter < 6000; iter++) {
        size_t cap = base_len + 64;
        unsigned char *f = malloc(cap);
        assert_non_null(f);
        memcpy(f, base, base_len);
        size_t len = base_len;
        int muts = 1 + (int)(rnd() % 8);
        for (int k = 0; k < muts; k++) {
            size_t at = (size_t)(rnd() % len);
            switch (rnd() % 6) {
            case 0: f[at] ^= (unsigned char)(1u << (rnd() % 8)); break;            /* bit flip */
            case 1: f[at] = (unsigned char)rnd(); break;                          /* byte */
            case 2: f[at] = (unsigned char)tokens[rnd() % (sizeof tokens - 1)]; break;
            case 3: len = at + 1; break;                                          /* truncate */
            case 4:                                                               /* delete byte */
                memmove(f + at, f + at + 1, len - at - 1);
                len--;
                break;
            default:                                                              /* insert byte */
                if (len < cap) {
                    memmove(f + at + 1, f + at, len - at);
                    f[at] = (unsigned char)tokens[rnd() % (sizeof tokens - 1)];
                    len++;
                }
            }
            if (len == 0)
                len = 1;
        }
        /* most of the time keep the header consistent so the body reaches the parser */
        if (rnd() % 4 != 0 && len >= WIRE_HEADER_LEN) {
            memcpy(f, "TERN\x01\x01\x00\x00", 8);
            fix_length(f, len);
        }
        /* decode an exact-size copy so ASan catches any over-read */
        unsigned char *exact = malloc(len);
        assert_non_null(exact);
        memcpy(exact, f, len);
        free(f);
        wire_msg m;
        wire_status st = wire_decode(exact, len, &m, err, sizeof err);
        assert_true(st >= WIRE_OK && st <= WIRE_ERR_NOMEM);
        by_status[st]++;
        if (st == WIRE_OK) {
            ok++;
            /* whatever decodes is valid and re-encodes */
            if (m.type == WIRE_BATCH) {
                unsigned char *again;
                size_t alen;
                char eerr[256];
                if (wire_encode_batch(&m.u.batch, &again, &alen, eerr, sizeof eerr) != 0)
                    fail_msg("decoded batch does not re-encode: %s", eerr);
                free(again);
            }
            wire_msg_free(&m);
        } else {
            rejected++;
            assert_true(err[0] != '\0');
            assert_true(st > WIRE_OK && st <= WIRE_ERR_NOMEM);
        }
        free(exact);
    }
    /* the mutations reach every layer: header, parser and schema */
    print_message("fuzz: %zu ok, %zu rejected (short %zu magic %zu version %zu type %zu "
                  "length %zu json %zu schema %zu)\n", ok, rejected, by_status[WIRE_ERR_SHORT],
                  by_status[WIRE_ERR_MAGIC], by_status[WIRE_ERR_VERSION], by_status[WIRE_ERR_TYPE],
                  by_status[WIRE_ERR_LENGTH], by_status[WIRE_ERR_JSON], by_status[WIRE_ERR_SCHEMA]);
    assert_true(rejected > 0);
    assert_true(by_status[WIRE_ERR_JSON] > 0);
    assert_true(by_status[WIRE_ERR_SCHEMA] > 0);
    assert_true(by_status[WIRE_ERR_LENGTH] > 0);
    free(base);

    /* pure garbage, with and without a valid header */
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = (size_t)(rnd() % 300);
        unsigned char *g = malloc(len ? len : 1);
        assert_non_null(g);
        for (size_t i = 0; i < len; i++)
            g[i] = iter % 2 ? (unsigned char)tokens[rnd() % (sizeof tokens - 1)] : (unsigned char)rnd();
        if (iter % 3 == 0 && len >= WIRE_HEADER_LEN) {
            memcpy(g, iter % 2 ? "TERN\x01\x02\x00\x00" : "TERN\x01\x01\x00\x00", 8);
            fix_length(g, len);
        }
        wire_msg m;
        if (wire_decode(g, len, &m, err, sizeof err) == WIRE_OK)
            wire_msg_free(&m);
        free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pos),
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_batch_extremes),
        cmocka_unit_test(test_ack_round_trip),
        cmocka_unit_test(test_header_rejections),
        cmocka_unit_test(test_json_rejections),
        cmocka_unit_test(test_ack_schema),
        cmocka_unit_test(test_batch_schema),
        cmocka_unit_test(test_batch_acked),
        cmocka_unit_test(test_batch_too_many_changes),
        cmocka_unit_test(test_encode_rejections),
        cmocka_unit_test(test_encode_over_size),
        cmocka_unit_test(test_fuzz_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
