/* fuzz_wire.c -- fuzz target for wire/ (region-link frames, docs/protocol.md).
 *
 * Input: one frame as received from a peer. Runs wire_decode; a rejected frame must
 * carry an error string. A decoded message is encoded again (wire_encode_batch /
 * wire_encode_ack must accept it: "a frame that decodes re-encodes"), the new frame must
 * decode, the two messages must be equal (fields, positions, versions, keys and images
 * by canonical comparison), and encoding the second message must give the same bytes. */
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "item.h"
#include "wire.h"

static void wire_check_equal(const wire_msg *a, const wire_msg *b)
{
    if (a->type != b->type)
        fuzz_fail("round trip changed the type");
    if (a->type == WIRE_ACK) {
        const wire_ack *x = &a->u.ack, *y = &b->u.ack;
        if (strcmp(x->source, y->source) || strcmp(x->table, y->table) ||
            wire_pos_cmp(x->pos, y->pos))
            fuzz_fail("ack round trip differs");
        return;
    }
    const wire_batch *x = &a->u.batch, *y = &b->u.batch;
    if (strcmp(x->source, y->source) || strcmp(x->table, y->table) ||
        wire_pos_cmp(x->prev, y->prev) || x->has_acked != y->has_acked ||
        wire_pos_cmp(x->acked, y->acked) || wire_pos_cmp(x->first, y->first) ||
        wire_pos_cmp(x->last, y->last) || x->sent_ms != y->sent_ms || x->n != y->n)
        fuzz_fail("batch header round trip differs");
    for (size_t i = 0; i < x->n; i++) {
        const wire_change *c = &x->changes[i], *d = &y->changes[i];
        if (wire_pos_cmp(c->pos, d->pos) || c->op != d->op || strcmp(c->version, d->version))
            fuzz_fail("changes[%zu] round trip differs", i);
        if (item_equal(c->keys, d->keys, 0) != 1 || item_equal(c->image, d->image, 0) != 1)
            fuzz_fail("changes[%zu] keys/image round trip differs", i);
        if ((c->op == WIRE_OP_PUT) != (c->image != NULL))
            fuzz_fail("changes[%zu]: image presence does not match op", i);
    }
}

/* Encodes m; 0 with a malloc'd frame, or -1 (allocation failure). A rule failure on a
 * decoded message is an invariant violation. */
static int wire_reencode(const wire_msg *m, unsigned char **f, size_t *len)
{
    char err[512];
    int rc = m->type == WIRE_BATCH ? wire_encode_batch(&m->u.batch, f, len, err, sizeof err)
                                   : wire_encode_ack(&m->u.ack, f, len, err, sizeof err);
    if (rc != 0) {
        if (strstr(err, "out of memory"))
            return -1;
        fuzz_fail("a decoded %s does not re-encode: %s",
                  m->type == WIRE_BATCH ? "batch" : "ack", err);
    }
    return 0;
}

int fuzz_wire(const uint8_t *data, size_t size)
{
    char err[512];
    wire_msg m, m2;
    wire_status st = wire_decode(data, size, &m, err, sizeof err);
    if (st != WIRE_OK) {
        if (!err[0])
            fuzz_fail("wire_decode returned %s without an error", wire_status_name(st));
        return 0;
    }
    unsigned char *f1 = NULL, *f2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (wire_reencode(&m, &f1, &l1) == 0) {
        st = wire_decode(f1, l1, &m2, err, sizeof err);
        if (st == WIRE_ERR_NOMEM) {
            free(f1);
            wire_msg_free(&m);
            return 0;
        }
        if (st != WIRE_OK)
            fuzz_fail("a re-encoded frame does not decode: %s: %s", wire_status_name(st), err);
        wire_check_equal(&m, &m2);
        if (wire_reencode(&m2, &f2, &l2) == 0) {
            if (l1 != l2 || memcmp(f1, f2, l1) != 0)
                fuzz_fail("encoding is not a fixpoint (%zu vs %zu bytes)", l1, l2);
            free(f2);
        }
        wire_msg_free(&m2);
        free(f1);
    }
    wire_msg_free(&m);
    return 0;
}

TERN_FUZZ_ENTRY(fuzz_wire)
