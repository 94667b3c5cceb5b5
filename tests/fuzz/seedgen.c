/* seedgen.c -- writes the wire seed corpus (tests/fuzz/corpus/wire/) with wire_encode_*.
 *
 * Usage: seedgen DIR. Writes batch-*.bin and ack-*.bin: frames produced by the encoders
 * from batches covering every AttributeValue type, puts and deletes, several changes,
 * and the limits (long names, a 31-char region, max sent_ms). Deterministic output; run
 * it again after a protocol change (scripts/fuzz --seeds). Not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "wire.h"

static int write_frame(const char *dir, const char *name, const unsigned char *f, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "wb");
    if (!fp || fwrite(f, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "seedgen: cannot write %s\n", p);
        return -1;
    }
    return 0;
}

typedef struct {
    const char *op, *keys, *image, *ver;
} change_spec;

/* A batch of n changes; a version 2 frame when acked_seq >= 0 (prev ...-5, acked the same
 * ms with seq acked_seq <= 5), else version 1. */
static int batch(const char *dir, const char *name, const char *source, const char *table,
                 unsigned long long sent_ms, const change_spec *cs, size_t n, long long acked_seq)
{
    wire_batch b;
    memset(&b, 0, sizeof b);
    snprintf(b.source, sizeof b.source, "%s", source);
    snprintf(b.table, sizeof b.table, "%s", table);
    b.sent_ms = sent_ms;
    b.n = n;
    b.changes = calloc(n, sizeof *b.changes);
    if (!b.changes)
        return -1;
    b.prev.ms = 1700000000000ULL;
    if (acked_seq >= 0) {
        b.prev.seq = 5;
        b.has_acked = 1;
        b.acked.ms = b.prev.ms;
        b.acked.seq = (unsigned long long)acked_seq;
    }
    for (size_t i = 0; i < n; i++) {
        wire_change *c = &b.changes[i];
        c->pos.ms = 1700000000001ULL + i / 2;
        c->pos.seq = i % 2;
        c->op = strcmp(cs[i].op, "put") == 0 ? WIRE_OP_PUT : WIRE_OP_DELETE;
        c->keys = cJSON_Parse(cs[i].keys);
        c->image = cs[i].image ? cJSON_Parse(cs[i].image) : NULL;
        snprintf(c->version, sizeof c->version, "%s", cs[i].ver);
    }
    b.first = b.changes[0].pos;
    b.last = b.changes[n - 1].pos;
    unsigned char *f = NULL;
    size_t len = 0;
    char err[512];
    int rc = wire_encode_batch(&b, &f, &len, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "seedgen: %s: %s\n", name, err);
    else
        rc = write_frame(dir, name, f, len);
    free(f);
    for (size_t i = 0; i < n; i++) {
        cJSON_Delete(b.changes[i].keys);
        cJSON_Delete(b.changes[i].image);
    }
    free(b.changes);
    return rc;
}

static int ack(const char *dir, const char *name, const char *source, const char *table,
               unsigned long long ms, unsigned long long seq)
{
    wire_ack a;
    memset(&a, 0, sizeof a);
    snprintf(a.source, sizeof a.source, "%s", source);
    snprintf(a.table, sizeof a.table, "%s", table);
    a.pos.ms = ms;
    a.pos.seq = seq;
    unsigned char *f = NULL;
    size_t len = 0;
    char err[256];
    int rc = wire_encode_ack(&a, &f, &len, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "seedgen: %s: %s\n", name, err);
    else
        rc = write_frame(dir, name, f, len);
    free(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seedgen DIR\n");
        return 2;
    }
    const char *d = argv[1];
    const char *V = "1700000000001-000000-us-east-1";
    change_spec put1[] = {{"put", "{\"pk\":{\"S\":\"user#1\"}}",
                           "{\"pk\":{\"S\":\"user#1\"},\"n\":{\"N\":\"12.50\"},\"tags\":{\"SS\":[\"b\",\"a\"]}}", V}};
    change_spec del1[] = {{"delete", "{\"pk\":{\"S\":\"user#2\"},\"sk\":{\"N\":\"7\"}}", NULL,
                           "1700000000001-000003-us-east-1"}};
    change_spec all_types[] = {{"put", "{\"pk\":{\"B\":\"AAEC\"},\"sk\":{\"N\":\"-1.5E+10\"}}",
        "{\"pk\":{\"B\":\"AAEC\"},\"sk\":{\"N\":\"-1.5E+10\"},\"s\":{\"S\":\"h\\u00e9\\n\\\"q\\\"\"},"
        "\"e\":{\"S\":\"\"},\"b\":{\"B\":\"\"},\"t\":{\"BOOL\":true},\"f\":{\"BOOL\":false},"
        "\"z\":{\"NULL\":true},\"ns\":{\"NS\":[\"1\",\"2.5\",\"-3e-130\"]},"
        "\"bs\":{\"BS\":[\"AQ==\",\"AgM=\"]},\"l\":{\"L\":[{\"S\":\"x\"},{\"L\":[]},{\"M\":{}}]},"
        "\"m\":{\"M\":{\"inner\":{\"M\":{\"deep\":{\"L\":[{\"N\":\"0\"}]}}},\"e\":{\"M\":{}}}}}", V}};
    change_spec mixed[] = {
        {"put", "{\"pk\":{\"S\":\"a\"}}", "{\"pk\":{\"S\":\"a\"},\"v\":{\"N\":\"1\"}}",
         "1700000000001-000000-eu-west-1"},
        {"delete", "{\"pk\":{\"S\":\"b\"}}", NULL, "1700000000001-000001-eu-west-1"},
        {"put", "{\"pk\":{\"S\":\"a\"}}", "{\"pk\":{\"S\":\"a\"},\"v\":{\"N\":\"2\"}}",
         "1700000000002-000000-eu-west-1"},
        {"put", "{\"pk\":{\"S\":\"c\"},\"sk\":{\"S\":\"d\"}}",
         "{\"sk\":{\"S\":\"d\"},\"pk\":{\"S\":\"c\"},\"x\":{\"SS\":[\"\\u2603\",\"\xf0\x9f\x98\x80\"]}}",
         "1700000000002-000001-eu-west-1"}};
    change_spec region31[] = {{"put", "{\"k\":{\"N\":\"99999999999999999999999999999999999999\"}}",
        "{\"k\":{\"N\":\"99999999999999999999999999999999999999\"},\"big\":{\"N\":\"9.9999999999999999999999999999999999999E+125\"}}",
        "9999999999999-999999-abcdefghijklmnopqrstuvwxyz-0123"}};
    int rc = 0;
    rc |= batch(d, "batch-put.bin", "us-east-1", "Orders", 1700000000500ULL, put1, 1, -1);
    rc |= batch(d, "batch-delete.bin", "us-east-1", "Orders", 0, del1, 1, -1);
    rc |= batch(d, "batch-all-types.bin", "us-east-1", "demo-ecommerce-freetier", 1700000000500ULL,
                all_types, 1, -1);
    rc |= batch(d, "batch-mixed.bin", "eu-west-1", "t.a_b-c", 1700000000999ULL, mixed, 4, -1);
    rc |= batch(d, "batch-limits.bin", "abcdefghijklmnopqrstuvwxyz-0123",
                "Table.With_Many-Chars0123456789", WIRE_SENT_MS_MAX, region31, 1, -1);
    rc |= batch(d, "batch-acked.bin", "us-east-1", "Orders", 1700000000500ULL, del1, 1, 2);
    rc |= batch(d, "batch-acked-prev.bin", "eu-west-1", "t.a_b-c", 1700000000999ULL, mixed, 4, 5);
    rc |= ack(d, "ack.bin", "us-east-1", "Orders", 1700000000001ULL, 2);
    rc |= ack(d, "ack-zero.bin", "eu-west-1", "abc", 0, 0);
    rc |= ack(d, "ack-max.bin", "a", "demo-ecommerce-freetier", 18446744073709551615ULL,
              18446744073709551615ULL);
    return rc ? 1 : 0;
}
