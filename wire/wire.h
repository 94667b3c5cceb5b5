/* wire.h -- the region-link frame format (normative description: docs/protocol.md).
 *
 * One ZeroMQ message is one frame: a 12-byte header followed by a UTF-8 JSON body.
 *   offset 0  4 bytes  magic "TERN"
 *   offset 4  u8       protocol version (WIRE_VERSION_MIN..WIRE_VERSION)
 *   offset 5  u8       frame type (wire_type)
 *   offset 6  u16      reserved, 0
 *   offset 8  u32      body length in bytes, big-endian
 *   offset 12 body     JSON, exactly body-length bytes
 * A BATCH carries 1..WIRE_MAX_CHANGES changes of one table from one source region; an
 * ACK tells the source that every change of that table up to a position is durably
 * applied. Decoding is strict: unknown fields, wrong types and rule violations are
 * rejected with a wire_status and an error naming the field ("changes[3].ver: ...").
 * Encoders apply the same rules, so a frame that encodes always decodes.
 *
 * Threading: pure functions, thread-safe; a wire_msg belongs to one thread at a time. */
#ifndef TERN_WIRE_H
#define TERN_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "lww.h"

#define WIRE_VERSION 2     /* the newest version this build speaks: a batch with acked */
#define WIRE_VERSION_MIN 1 /* the oldest version it still decodes (a batch without acked) */
#define WIRE_HEADER_LEN 12
#define WIRE_MAX_FRAME (8u << 20)      /* bytes, header included */
#define WIRE_MAX_CHANGES 2000          /* changes in one batch */
#define WIRE_TABLE_MAX 256             /* table name buffer: 3..255 chars + NUL */
#define WIRE_POS_STRLEN 42             /* buffer for "ms-seq" text incl. NUL */
#define WIRE_SENT_MS_MAX 9007199254740991ULL /* 2^53 - 1: exact as a JSON number */

typedef enum {
    WIRE_BATCH = 1, /* changes from a source region to a peer */
    WIRE_ACK = 2    /* a peer acknowledging applied changes back to the source */
} wire_type;

typedef enum {
    WIRE_OP_PUT = 1,   /* the item now has image (full item, no hidden attributes) */
    WIRE_OP_DELETE = 2 /* the item was deleted */
} wire_op;

/* A change-log position, text "ms-seq" (a Redis stream entry id): two unsigned 64-bit
 * decimals without sign or leading zeros. Ordered by ms, then seq. */
typedef struct {
    uint64_t ms, seq;
} wire_pos;

/* Parses "ms-seq" strictly (digits only, no leading zeros except "0", no overflow,
 * nothing after). Returns 0 and fills *out, or -1 (*out untouched). */
int wire_pos_parse(const char *s, wire_pos *out);

/* Writes "ms-seq" into buf (caller's, len bytes; WIRE_POS_STRLEN always suffices).
 * Returns 0, or -1 (buf set to "" if len > 0) when it does not fit. */
int wire_pos_format(wire_pos p, char *buf, size_t len);

/* Returns <0, 0, >0 comparing ms, then seq. */
int wire_pos_cmp(wire_pos a, wire_pos b);

/* One change. In a decoded batch, keys and image are owned by the batch (freed by
 * wire_msg_free). For encoding they stay the caller's and are only read. */
typedef struct {
    wire_pos pos;                       /* position in the source's change log */
    wire_op op;
    cJSON *keys;                        /* key attributes: non-empty item, no tern:* */
    cJSON *image;                       /* put: the full item, contains keys; delete: NULL */
    char version[LWW_VERSION_STRLEN];   /* lww version text; its region is the source */
} wire_change;

typedef struct {
    char source[LWW_REGION_MAX];        /* region whose local changes these are */
    char table[WIRE_TABLE_MAX];         /* DynamoDB table name */
    wire_pos prev;                      /* the log position just before first (0-0 at the
                                           start): a receiver whose watermark is below prev
                                           missed a batch (a gap) and must not apply this one */
    int has_acked;                      /* acked is set: a version 2 frame (0: version 1) */
    wire_pos acked;                     /* the position the sender held as acknowledged by
                                           this receiver when it sent (<= prev): everything
                                           after it must reach the receiver, which is what a
                                           receiver without a watermark starts from */
    wire_pos first, last;               /* == changes[0].pos and changes[n-1].pos */
    uint64_t sent_ms;                   /* sender's wall clock at send, 0..WIRE_SENT_MS_MAX */
    size_t n;                           /* 1..WIRE_MAX_CHANGES */
    wire_change *changes;               /* n changes, positions strictly ascending */
} wire_batch;

typedef struct {
    char source[LWW_REGION_MAX];        /* the region whose changes are acked */
    char table[WIRE_TABLE_MAX];
    wire_pos pos;                       /* everything <= pos is durably applied */
} wire_ack;

typedef enum {
    WIRE_OK = 0,       /* decoded; the caller owns the message */
    WIRE_ERR_SHORT,    /* fewer bytes than the 12-byte header */
    WIRE_ERR_MAGIC,    /* the first 4 bytes are not "TERN" */
    WIRE_ERR_VERSION,  /* protocol version outside WIRE_VERSION_MIN..WIRE_VERSION, or reserved bits are set */
    WIRE_ERR_TYPE,     /* frame type is neither BATCH nor ACK */
    WIRE_ERR_TOO_BIG,  /* frame or declared body length beyond WIRE_MAX_FRAME */
    WIRE_ERR_LENGTH,   /* declared body length differs from the bytes after the header */
    WIRE_ERR_JSON,     /* body is not UTF-8 JSON (or carries \u0000, which Tern cannot hold) */
    WIRE_ERR_SCHEMA,   /* valid JSON that breaks the body schema or a validation rule */
    WIRE_ERR_NOMEM     /* allocation failed; the frame may be fine, retry later */
} wire_status;

/* Static name of s: "ok", "short", "magic", "version", "type", "too-big", "length",
 * "json", "schema", "nomem" ("unknown" otherwise). Never freed. */
const char *wire_status_name(wire_status s);

typedef struct {
    wire_type type;
    union {
        wire_batch batch;  /* type == WIRE_BATCH */
        wire_ack ack;      /* type == WIRE_ACK */
    } u;
} wire_msg;

/* Decodes one frame of len bytes at buf (read only, not retained). On WIRE_OK the
 * caller owns *out and calls wire_msg_free. On error *out is zeroed, holds nothing to
 * free, and err (caller's buffer of errlen bytes; may be NULL if errlen is 0) says what
 * was wrong and where. Never crashes on any input. */
wire_status wire_decode(const void *buf, size_t len, wire_msg *out, char *err, size_t errlen);

/* Frees what a successful wire_decode put in *m (keys, images, the changes array) and
 * zeroes it. Safe on a zeroed message; m itself is the caller's. */
void wire_msg_free(wire_msg *m);

/* Encoders: validate with the decoder's rules, then store a malloc'd frame in *out and
 * its size in *len (the caller frees *out). Return WIRE_OK, or with err set and *out NULL:
 * WIRE_ERR_SCHEMA, a rule broken (e.g. "changes[2].image: ..."); WIRE_ERR_TOO_BIG, the
 * frame over WIRE_MAX_FRAME (split the batch); WIRE_ERR_NOMEM, out of memory, nothing
 * wrong with the input (try again later). The batch/ack stays the caller's.
 * A batch is framed as version 2 when has_acked is set, else as version 1; an ack is
 * always framed as version 1 (its body is the same in both), so a peer that decodes
 * only version 1 still takes this build's acks. */
wire_status wire_encode_batch(const wire_batch *b, unsigned char **out, size_t *len, char *err,
                              size_t errlen);
wire_status wire_encode_ack(const wire_ack *a, unsigned char **out, size_t *len, char *err,
                            size_t errlen);

#endif
