/* wire.c -- encode/decode of region-link frames (docs/protocol.md).
 *
 * Owns: the frame header layout, the BATCH and ACK JSON body schemas and every
 * validation rule on them. A decoded batch owns its keys/image trees (detached from
 * the parsed body) and its changes array.
 *
 * Invariants:
 *  - One rule set: encoders build the JSON tree and run the same tree checks as the
 *    decoder (check_batch/check_ack with out == NULL) before printing, so any frame we
 *    encode decodes.
 *  - The header is checked before the body is touched; the body is checked for UTF-8
 *    and \u0000 before cJSON parses it (cJSON would truncate at an embedded NUL).
 *  - On any decode error nothing allocated survives; *out is zeroed.
 *
 * Threading: pure and re-entrant, no globals. */
#include "wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "item.h"

static const unsigned char MAGIC[4] = {'T', 'E', 'R', 'N'};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *wire_status_name(wire_status s)
{
    switch (s) {
    case WIRE_OK: return "ok";
    case WIRE_ERR_SHORT: return "short";
    case WIRE_ERR_MAGIC: return "magic";
    case WIRE_ERR_VERSION: return "version";
    case WIRE_ERR_TYPE: return "type";
    case WIRE_ERR_TOO_BIG: return "too-big";
    case WIRE_ERR_LENGTH: return "length";
    case WIRE_ERR_JSON: return "json";
    case WIRE_ERR_SCHEMA: return "schema";
    case WIRE_ERR_NOMEM: return "nomem";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- positions */

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int wire_pos_parse(const char *s, wire_pos *out)
{
    if (!s || !out)
        return -1;
    const char *dash = strchr(s, '-');
    if (!dash)
        return -1;
    wire_pos p;
    if (parse_u64(s, (size_t)(dash - s), &p.ms) != 0 ||
        parse_u64(dash + 1, strlen(dash + 1), &p.seq) != 0)
        return -1;
    *out = p;
    return 0;
}

int wire_pos_format(wire_pos p, char *buf, size_t len)
{
    if (!buf || len == 0)
        return -1;
    int n = snprintf(buf, len, "%llu-%llu", (unsigned long long)p.ms, (unsigned long long)p.seq);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

int wire_pos_cmp(wire_pos a, wire_pos b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}

/* ---------------------------------------------------------------- body checks */

/* DynamoDB table names: 3..255 chars of [A-Za-z0-9_.-]. */
static int table_valid(const char *t)
{
    size_t n = strlen(t);
    if (n < 3 || n > WIRE_TABLE_MAX - 1)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* Collects the members of obj into slots by the names in fields[nf]; rejects unknown
 * and duplicate members. where names the object in errors ("body" for the root). */
static wire_status take_fields(const cJSON *obj, const char *const *fields, size_t nf,
                               const cJSON **slots, const char *where, char *err, size_t errlen)
{
    for (size_t i = 0; i < nf; i++)
        slots[i] = NULL;
    if (!cJSON_IsObject(obj)) {
        set_err(err, errlen, "%s%smust be a JSON object", where, *where ? ": " : "");
        return WIRE_ERR_SCHEMA;
    }
    for (const cJSON *m = obj->child; m; m = m->next) {
        const char *name = m->string ? m->string : "";
        size_t i;
        for (i = 0; i < nf; i++)
            if (strcmp(name, fields[i]) == 0)
                break;
        if (i == nf) {
            set_err(err, errlen, "%s%sunknown field \"%.64s\"", where, *where ? ": " : "", name);
            return WIRE_ERR_SCHEMA;
        }
        if (slots[i]) {
            set_err(err, errlen, "%s%sduplicate field \"%s\"", where, *where ? ": " : "", name);
            return WIRE_ERR_SCHEMA;
        }
        slots[i] = m;
    }
    return WIRE_OK;
}

/* The string of a required string field, or NULL with err set. */
static const char *need_string(const cJSON *v, const char *path, char *err, size_t errlen)
{
    if (!v) {
        set_err(err, errlen, "%s: missing", path);
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        set_err(err, errlen, "%s: must be a string", path);
        return NULL;
    }
    return v->valuestring;
}

static wire_status check_source_table(const cJSON *src, const cJSON *tbl, char *err,
                                      size_t errlen)
{
    const char *s = need_string(src, "source", err, errlen);
    if (!s)
        return WIRE_ERR_SCHEMA;
    if (!lww_region_valid(s)) {
        set_err(err, errlen, "source: \"%.64s\" is not a region name (1..31 chars of [a-z0-9-])", s);
        return WIRE_ERR_SCHEMA;
    }
    const char *t = need_string(tbl, "table", err, errlen);
    if (!t)
        return WIRE_ERR_SCHEMA;
    if (!table_valid(t)) {
        set_err(err, errlen, "table: \"%.64s\" is not a DynamoDB table name "
                "(3..255 chars of [A-Za-z0-9_.-])", t);
        return WIRE_ERR_SCHEMA;
    }
    return WIRE_OK;
}

static wire_status check_pos(const cJSON *v, const char *path, wire_pos *out, char *err,
                             size_t errlen)
{
    const char *s = need_string(v, path, err, errlen);
    if (!s)
        return WIRE_ERR_SCHEMA;
    if (wire_pos_parse(s, out) != 0) {
        set_err(err, errlen, "%s: \"%.64s\" is not a position \"ms-seq\"", path, s);
        return WIRE_ERR_SCHEMA;
    }
    return WIRE_OK;
}

static wire_status check_sent_ms(const cJSON *v, uint64_t *out, char *err, size_t errlen)
{
    if (!v) {
        set_err(err, errlen, "sent_ms: missing");
        return WIRE_ERR_SCHEMA;
    }
    if (cJSON_IsRaw(v) && v->valuestring) { /* only from our own encoder */
        if (parse_u64(v->valuestring, strlen(v->valuestring), out) == 0 &&
            *out <= WIRE_SENT_MS_MAX)
            return WIRE_OK;
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (isfinite(d) && d >= 0 && d <= (double)WIRE_SENT_MS_MAX && floor(d) == d) {
            *out = (uint64_t)d;
            return WIRE_OK;
        }
    }
    set_err(err, errlen, "sent_ms: must be an integer 0..%llu", (unsigned long long)WIRE_SENT_MS_MAX);
    return WIRE_ERR_SCHEMA;
}

/* Rejects top-level tern:* attributes. */
static wire_status check_no_hidden(const cJSON *item, const char *path, char *err, size_t errlen)
{
    size_t plen = strlen(ITEM_HIDDEN_PREFIX);
    for (const cJSON *a = item->child; a; a = a->next) {
        if (a->string && strncmp(a->string, ITEM_HIDDEN_PREFIX, plen) == 0) {
            set_err(err, errlen, "%s: hidden attribute \"%.64s\" must not be shipped", path,
                    a->string);
            return WIRE_ERR_SCHEMA;
        }
    }
    return WIRE_OK;
}

static wire_status check_item(const cJSON *item, const char *path, char *err, size_t errlen)
{
    if (!item) {
        set_err(err, errlen, "%s: missing", path);
        return WIRE_ERR_SCHEMA;
    }
    char ierr[384];
    int rc = item_validate(item, ierr, sizeof ierr);
    if (rc != 0) {
        /* item errors start with an attribute path, or "item: " for the whole item */
        if (strncmp(ierr, "item: ", 6) == 0)
            set_err(err, errlen, "%s: %s", path, ierr + 6);
        else
            set_err(err, errlen, "%s.%s", path, ierr);
        return rc == ITEM_VALIDATE_NOMEM ? WIRE_ERR_NOMEM : WIRE_ERR_SCHEMA;
    }
    return check_no_hidden(item, path, err, errlen);
}

/* The image must hold every key attribute with an equal value. */
static wire_status check_image_has_keys(const cJSON *image, const cJSON *keys,
                                        const char *path, char *err, size_t errlen)
{
    for (const cJSON *k = keys->child; k; k = k->next) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(image, k->string);
        if (!a) {
            set_err(err, errlen, "%s: key attribute \"%.64s\" is missing from the image",
                    path, k->string);
            return WIRE_ERR_SCHEMA;
        }
    }
    size_t n = (size_t)cJSON_GetArraySize(keys);
    const char **names = malloc(n * sizeof *names);
    if (!names) {
        set_err(err, errlen, "%s: out of memory", path);
        return WIRE_ERR_NOMEM;
    }
    size_t i = 0;
    for (const cJSON *k = keys->child; k; k = k->next)
        names[i++] = k->string;
    cJSON *proj = item_project(image, names, n);
    free(names);
    if (!proj) {
        set_err(err, errlen, "%s: out of memory", path);
        return WIRE_ERR_NOMEM;
    }
    int eq = item_equal(proj, keys, 0);
    cJSON_Delete(proj);
    if (eq < 0) {
        set_err(err, errlen, "%s: out of memory", path);
        return WIRE_ERR_NOMEM;
    }
    if (eq == 0) {
        set_err(err, errlen, "%s: key attribute values differ from keys", path);
        return WIRE_ERR_SCHEMA;
    }
    return WIRE_OK;
}

enum { CF_POS, CF_OP, CF_KEYS, CF_IMAGE, CF_VER, CF_N };
static const char *const CHANGE_FIELDS[CF_N] = {"pos", "op", "keys", "image", "ver"};

/* Checks changes[i]; fills *pos, *op and *ver. */
static wire_status check_change(const cJSON *ch, size_t i, const char *source, wire_pos *pos,
                                wire_op *op, lww_version *ver, char *err, size_t errlen)
{
    char path[64], fpath[80];
    snprintf(path, sizeof path, "changes[%zu]", i);
    const cJSON *f[CF_N];
    wire_status st = take_fields(ch, CHANGE_FIELDS, CF_N, f, path, err, errlen);
    if (st != WIRE_OK)
        return st;

    snprintf(fpath, sizeof fpath, "%s.pos", path);
    if ((st = check_pos(f[CF_POS], fpath, pos, err, errlen)) != WIRE_OK)
        return st;

    snprintf(fpath, sizeof fpath, "%s.op", path);
    const char *ops = need_string(f[CF_OP], fpath, err, errlen);
    if (!ops)
        return WIRE_ERR_SCHEMA;
    if (strcmp(ops, "put") == 0) {
        *op = WIRE_OP_PUT;
    } else if (strcmp(ops, "delete") == 0) {
        *op = WIRE_OP_DELETE;
    } else {
        set_err(err, errlen, "%s: \"%.32s\" is not \"put\" or \"delete\"", fpath, ops);
        return WIRE_ERR_SCHEMA;
    }

    snprintf(fpath, sizeof fpath, "%s.keys", path);
    if ((st = check_item(f[CF_KEYS], fpath, err, errlen)) != WIRE_OK)
        return st;
    if (!f[CF_KEYS]->child) {
        set_err(err, errlen, "%s: must not be empty", fpath);
        return WIRE_ERR_SCHEMA;
    }

    snprintf(fpath, sizeof fpath, "%s.image", path);
    if (*op == WIRE_OP_PUT) {
        if ((st = check_item(f[CF_IMAGE], fpath, err, errlen)) != WIRE_OK)
            return st;
        if ((st = check_image_has_keys(f[CF_IMAGE], f[CF_KEYS], fpath, err, errlen)) != WIRE_OK)
            return st;
    } else if (f[CF_IMAGE]) {
        set_err(err, errlen, "%s: a delete must not carry an image", fpath);
        return WIRE_ERR_SCHEMA;
    }

    snprintf(fpath, sizeof fpath, "%s.ver", path);
    const char *vs = need_string(f[CF_VER], fpath, err, errlen);
    if (!vs)
        return WIRE_ERR_SCHEMA;
    char verr[160];
    if (lww_version_parse(vs, ver, verr, sizeof verr) != 0) {
        set_err(err, errlen, "%s: %s", fpath, verr);
        return WIRE_ERR_SCHEMA;
    }
    if (strcmp(ver->region, source) != 0) {
        set_err(err, errlen, "%s: region \"%s\" is not the source \"%s\"", fpath, ver->region,
                source);
        return WIRE_ERR_SCHEMA;
    }
    return WIRE_OK;
}

enum { BF_SOURCE, BF_TABLE, BF_PREV, BF_FIRST, BF_LAST, BF_SENT, BF_CHANGES, BF_ACKED, BF_N };
static const char *const BATCH_FIELDS[BF_N] = {"source", "table", "prev", "first", "last",
                                               "sent_ms", "changes", "acked"};

/* Checks a batch body of protocol version `version` (1: no acked; 2: acked required, the
 * last field of BATCH_FIELDS, so version 1 takes the fields before it). With out != NULL
 * (decoding; root is then mutable) it also moves the keys/image trees out of root into
 * out. On error out holds nothing. */
static wire_status check_batch(cJSON *root, int version, wire_batch *out, char *err, size_t errlen)
{
    const cJSON *f[BF_N];
    wire_status st = take_fields(root, BATCH_FIELDS, version >= 2 ? BF_N : BF_ACKED, f, "body", err, errlen);
    wire_pos acked = {0, 0};
    if (st != WIRE_OK)
        return st;
    if ((st = check_source_table(f[BF_SOURCE], f[BF_TABLE], err, errlen)) != WIRE_OK)
        return st;
    const char *source = f[BF_SOURCE]->valuestring;
    wire_pos before, first, last;
    uint64_t sent_ms;
    if ((st = check_pos(f[BF_PREV], "prev", &before, err, errlen)) != WIRE_OK ||
        (st = check_pos(f[BF_FIRST], "first", &first, err, errlen)) != WIRE_OK ||
        (st = check_pos(f[BF_LAST], "last", &last, err, errlen)) != WIRE_OK ||
        (st = check_sent_ms(f[BF_SENT], &sent_ms, err, errlen)) != WIRE_OK)
        return st;
    if (wire_pos_cmp(before, first) >= 0) {
        set_err(err, errlen, "prev: must be before first");
        return WIRE_ERR_SCHEMA;
    }
    if (version >= 2) {
        if ((st = check_pos(f[BF_ACKED], "acked", &acked, err, errlen)) != WIRE_OK)
            return st;
        if (wire_pos_cmp(acked, before) > 0) {
            set_err(err, errlen, "acked: must not be after prev");
            return WIRE_ERR_SCHEMA;
        }
    }
    const cJSON *changes = f[BF_CHANGES];
    if (!changes) {
        set_err(err, errlen, "changes: missing");
        return WIRE_ERR_SCHEMA;
    }
    if (!cJSON_IsArray(changes)) {
        set_err(err, errlen, "changes: must be an array");
        return WIRE_ERR_SCHEMA;
    }
    size_t n = 0;
    for (const cJSON *c = changes->child; c; c = c->next)
        n++;
    if (n < 1 || n > WIRE_MAX_CHANGES) {
        set_err(err, errlen, "changes: %zu changes, must be 1..%d", n, WIRE_MAX_CHANGES);
        return WIRE_ERR_SCHEMA;
    }
    wire_change *wc = NULL;
    if (out) {
        wc = calloc(n, sizeof *wc);
        if (!wc) {
            set_err(err, errlen, "changes: out of memory");
            return WIRE_ERR_NOMEM;
        }
    }
    size_t i = 0;
    wire_pos prev = {0, 0}, pos = {0, 0};
    char ptxt[WIRE_POS_STRLEN], qtxt[WIRE_POS_STRLEN];
    for (const cJSON *c = changes->child; c; c = c->next, i++) {
        wire_op op;
        lww_version ver;
        if ((st = check_change(c, i, source, &pos, &op, &ver, err, errlen)) != WIRE_OK)
            goto fail;
        if (i > 0 && wire_pos_cmp(pos, prev) <= 0) {
            wire_pos_format(pos, ptxt, sizeof ptxt);
            wire_pos_format(prev, qtxt, sizeof qtxt);
            set_err(err, errlen, "changes[%zu].pos: %s is not after changes[%zu].pos %s", i,
                    ptxt, i - 1, qtxt);
            st = WIRE_ERR_SCHEMA;
            goto fail;
        }
        if (i == 0 && wire_pos_cmp(first, pos) != 0) {
            wire_pos_format(first, ptxt, sizeof ptxt);
            wire_pos_format(pos, qtxt, sizeof qtxt);
            set_err(err, errlen, "first: %s is not changes[0].pos %s", ptxt, qtxt);
            st = WIRE_ERR_SCHEMA;
            goto fail;
        }
        if (wc) {
            wc[i].pos = pos;
            wc[i].op = op;
            /* ver parsed, so its text (<= 52 chars) fits */
            snprintf(wc[i].version, sizeof wc[i].version, "%s",
                     cJSON_GetObjectItemCaseSensitive(c, "ver")->valuestring);
        }
        prev = pos;
    }
    if (wire_pos_cmp(last, pos) != 0) {
        wire_pos_format(last, ptxt, sizeof ptxt);
        wire_pos_format(pos, qtxt, sizeof qtxt);
        set_err(err, errlen, "last: %s is not changes[%zu].pos %s", ptxt, n - 1, qtxt);
        st = WIRE_ERR_SCHEMA;
        goto fail;
    }
    if (out) {
        /* All checks passed: move the item trees out of the parsed body. */
        i = 0;
        for (cJSON *c = root->child; c; c = c->next) {
            if (strcmp(c->string, "changes") != 0)
                continue;
            for (cJSON *ch = c->child; ch; ch = ch->next, i++) {
                wc[i].keys = cJSON_DetachItemFromObjectCaseSensitive(ch, "keys");
                if (wc[i].op == WIRE_OP_PUT)
                    wc[i].image = cJSON_DetachItemFromObjectCaseSensitive(ch, "image");
            }
        }
        memset(out, 0, sizeof *out);
        snprintf(out->source, sizeof out->source, "%s", source);
        snprintf(out->table, sizeof out->table, "%s", f[BF_TABLE]->valuestring);
        out->prev = before;
        out->has_acked = version >= 2;
        out->acked = acked;
        out->first = first;
        out->last = last;
        out->sent_ms = sent_ms;
        out->n = n;
        out->changes = wc;
    }
    return WIRE_OK;
fail:
    free(wc); /* no trees were moved yet */
    return st;
}

enum { AF_SOURCE, AF_TABLE, AF_POS, AF_N };
static const char *const ACK_FIELDS[AF_N] = {"source", "table", "pos"};

static wire_status check_ack(const cJSON *root, wire_ack *out, char *err, size_t errlen)
{
    const cJSON *f[AF_N];
    wire_status st = take_fields(root, ACK_FIELDS, AF_N, f, "body", err, errlen);
    if (st != WIRE_OK)
        return st;
    if ((st = check_source_table(f[AF_SOURCE], f[AF_TABLE], err, errlen)) != WIRE_OK)
        return st;
    wire_pos pos;
    if ((st = check_pos(f[AF_POS], "pos", &pos, err, errlen)) != WIRE_OK)
        return st;
    if (out) {
        memset(out, 0, sizeof *out);
        snprintf(out->source, sizeof out->source, "%s", f[AF_SOURCE]->valuestring);
        snprintf(out->table, sizeof out->table, "%s", f[AF_TABLE]->valuestring);
        out->pos = pos;
    }
    return WIRE_OK;
}

/* ---------------------------------------------------------------- decoding */

/* Returns the offset of the first byte that breaks UTF-8 (NUL counts), or len. */
static size_t utf8_bad_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        if (b == 0)
            return i;
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((b & 0xE0) == 0xC0) {
            n = 1; cp = b & 0x1F; min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 2; cp = b & 0x0F; min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 3; cp = b & 0x07; min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

/* Returns the offset of a \u0000 escape inside a JSON string, or len if none. Exact for
 * valid JSON; for invalid JSON the parser reports the error anyway. */
static size_t nul_escape_at(const char *s, size_t len)
{
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        if (!in_str) {
            if (s[i] == '"')
                in_str = 1;
        } else if (s[i] == '\\') {
            if (i + 5 < len && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' &&
                s[i + 4] == '0' && s[i + 5] == '0')
                return i;
            i++; /* skip the escaped character */
        } else if (s[i] == '"') {
            in_str = 0;
        }
    }
    return len;
}

wire_status wire_decode(const void *buf, size_t len, wire_msg *out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out) {
        set_err(err, errlen, "no output message");
        return WIRE_ERR_SCHEMA;
    }
    memset(out, 0, sizeof *out);
    const unsigned char *p = buf;
    if (!p || len < WIRE_HEADER_LEN) {
        set_err(err, errlen, "frame of %zu bytes is shorter than the %d-byte header", p ? len : 0,
                WIRE_HEADER_LEN);
        return WIRE_ERR_SHORT;
    }
    if (memcmp(p, MAGIC, sizeof MAGIC) != 0) {
        set_err(err, errlen, "bad magic %02x%02x%02x%02x, expected \"TERN\"", p[0], p[1], p[2], p[3]);
        return WIRE_ERR_MAGIC;
    }
    if (p[4] < WIRE_VERSION_MIN || p[4] > WIRE_VERSION) {
        set_err(err, errlen, "protocol version %u, this build speaks %d..%d", p[4], WIRE_VERSION_MIN,
                WIRE_VERSION);
        return WIRE_ERR_VERSION;
    }
    if (p[5] != WIRE_BATCH && p[5] != WIRE_ACK) {
        set_err(err, errlen, "unknown frame type %u (1 batch, 2 ack)", p[5]);
        return WIRE_ERR_TYPE;
    }
    unsigned reserved = ((unsigned)p[6] << 8) | p[7];
    if (reserved != 0) {
        set_err(err, errlen, "reserved header field is 0x%04x, must be 0 in version %u", reserved, p[4]);
        return WIRE_ERR_VERSION;
    }
    uint32_t body_len = ((uint32_t)p[8] << 24) | ((uint32_t)p[9] << 16) | ((uint32_t)p[10] << 8) |
                        (uint32_t)p[11];
    if (len > WIRE_MAX_FRAME || body_len > WIRE_MAX_FRAME - WIRE_HEADER_LEN) {
        set_err(err, errlen, "frame of %zu bytes (body length %u) exceeds the limit of %u bytes",
                len, body_len, WIRE_MAX_FRAME);
        return WIRE_ERR_TOO_BIG;
    }
    if ((size_t)body_len != len - WIRE_HEADER_LEN) {
        set_err(err, errlen, "header says %u body bytes, frame has %zu", body_len,
                len - WIRE_HEADER_LEN);
        return WIRE_ERR_LENGTH;
    }
    const char *body = (const char *)p + WIRE_HEADER_LEN;
    size_t bad = utf8_bad_at((const unsigned char *)body, body_len);
    if (bad != body_len) {
        set_err(err, errlen, "body is not UTF-8 text at byte %zu", bad);
        return WIRE_ERR_JSON;
    }
    bad = nul_escape_at(body, body_len);
    if (bad != body_len) {
        set_err(err, errlen, "body has \\u0000 at byte %zu, which cannot be carried", bad);
        return WIRE_ERR_JSON;
    }
    char *text = malloc((size_t)body_len + 1);
    if (!text) {
        set_err(err, errlen, "out of memory for a %u-byte body", body_len);
        return WIRE_ERR_NOMEM;
    }
    memcpy(text, body, body_len);
    text[body_len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        size_t at = (end && end >= text && end <= text + body_len) ? (size_t)(end - text) : 0;
        set_err(err, errlen, "body is not valid JSON (near byte %zu)", at);
        free(text);
        return WIRE_ERR_JSON;
    }
    free(text);
    wire_status st;
    if (p[5] == WIRE_BATCH) {
        st = check_batch(root, p[4], &out->u.batch, err, errlen);
        out->type = WIRE_BATCH;
    } else {
        st = check_ack(root, &out->u.ack, err, errlen);
        out->type = WIRE_ACK;
    }
    cJSON_Delete(root);
    if (st != WIRE_OK)
        memset(out, 0, sizeof *out);
    return st;
}

void wire_msg_free(wire_msg *m)
{
    if (!m)
        return;
    if (m->type == WIRE_BATCH && m->u.batch.changes) {
        for (size_t i = 0; i < m->u.batch.n; i++) {
            cJSON_Delete(m->u.batch.changes[i].keys);
            cJSON_Delete(m->u.batch.changes[i].image);
        }
        free(m->u.batch.changes);
    }
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- encoding */

/* Prints root and frames it. WIRE_OK, or WIRE_ERR_TOO_BIG / WIRE_ERR_NOMEM with err. */
static wire_status frame_body(const cJSON *root, int version, wire_type type, unsigned char **out, size_t *len,
                      char *err, size_t errlen)
{
    char *body = cJSON_PrintUnformatted(root);
    if (!body) {
        set_err(err, errlen, "out of memory printing the body");
        return WIRE_ERR_NOMEM;
    }
    size_t blen = strlen(body);
    if (blen > WIRE_MAX_FRAME - WIRE_HEADER_LEN) {
        set_err(err, errlen, "frame of %zu bytes exceeds WIRE_MAX_FRAME (%u bytes): split the batch",
                blen + WIRE_HEADER_LEN, WIRE_MAX_FRAME);
        free(body);
        return WIRE_ERR_TOO_BIG;
    }
    unsigned char *f = malloc(WIRE_HEADER_LEN + blen);
    if (!f) {
        set_err(err, errlen, "out of memory for a %zu-byte frame", blen + WIRE_HEADER_LEN);
        free(body);
        return WIRE_ERR_NOMEM;
    }
    memcpy(f, MAGIC, sizeof MAGIC);
    f[4] = (unsigned char)version;
    f[5] = (unsigned char)type;
    f[6] = 0;
    f[7] = 0;
    f[8] = (unsigned char)(blen >> 24);
    f[9] = (unsigned char)(blen >> 16);
    f[10] = (unsigned char)(blen >> 8);
    f[11] = (unsigned char)blen;
    memcpy(f + WIRE_HEADER_LEN, body, blen);
    free(body);
    *out = f;
    *len = WIRE_HEADER_LEN + blen;
    return WIRE_OK;
}

static int add_pos(cJSON *obj, const char *name, wire_pos p)
{
    char txt[WIRE_POS_STRLEN];
    wire_pos_format(p, txt, sizeof txt);
    return cJSON_AddStringToObject(obj, name, txt) ? 0 : -1;
}

/* Adds a non-owning reference to item's members under name (item may be NULL: absent). */
static int add_ref(cJSON *obj, const char *name, const cJSON *item)
{
    if (!item)
        return 0;
    if (!cJSON_IsObject(item))
        return cJSON_AddItemToObject(obj, name, cJSON_CreateString("not an object")) ? 0 : -1;
    cJSON *ref = cJSON_CreateObjectReference(item->child);
    if (!ref)
        return -1;
    if (!cJSON_AddItemToObject(obj, name, ref)) {
        cJSON_Delete(ref);
        return -1;
    }
    return 0;
}

wire_status wire_encode_batch(const wire_batch *b, unsigned char **out, size_t *len, char *err,
                              size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !len) {
        set_err(err, errlen, "no output buffer");
        return WIRE_ERR_SCHEMA;
    }
    *out = NULL;
    *len = 0;
    if (!b) {
        set_err(err, errlen, "no batch");
        return WIRE_ERR_SCHEMA;
    }
    if (b->n < 1 || b->n > WIRE_MAX_CHANGES || !b->changes) {
        set_err(err, errlen, "changes: %zu changes, must be 1..%d", b->n, WIRE_MAX_CHANGES);
        return WIRE_ERR_SCHEMA;
    }
    if (b->sent_ms > WIRE_SENT_MS_MAX) {
        set_err(err, errlen, "sent_ms: must be an integer 0..%llu",
                (unsigned long long)WIRE_SENT_MS_MAX);
        return WIRE_ERR_SCHEMA;
    }
    if (!memchr(b->source, '\0', sizeof b->source) || !memchr(b->table, '\0', sizeof b->table)) {
        set_err(err, errlen, "source/table: not NUL-terminated");
        return WIRE_ERR_SCHEMA;
    }
    wire_status rc = WIRE_ERR_SCHEMA;
    char ms[24];
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)b->sent_ms);
    cJSON *root = cJSON_CreateObject(), *changes = NULL;
    if (!root || !cJSON_AddStringToObject(root, "source", b->source) ||
        !cJSON_AddStringToObject(root, "table", b->table) || add_pos(root, "prev", b->prev) ||
        add_pos(root, "first", b->first) ||
        add_pos(root, "last", b->last) || !cJSON_AddRawToObject(root, "sent_ms", ms) ||
        !(changes = cJSON_AddArrayToObject(root, "changes")) ||
        (b->has_acked && add_pos(root, "acked", b->acked)))
        goto nomem;
    for (size_t i = 0; i < b->n; i++) {
        const wire_change *c = &b->changes[i];
        cJSON *ch = cJSON_CreateObject();
        if (!ch)
            goto nomem;
        if (!cJSON_AddItemToArray(changes, ch)) {
            cJSON_Delete(ch);
            goto nomem;
        }
        const char *op = c->op == WIRE_OP_PUT ? "put" : c->op == WIRE_OP_DELETE ? "delete" : "?";
        if (!memchr(c->version, '\0', sizeof c->version)) {
            set_err(err, errlen, "changes[%zu].ver: not NUL-terminated", i);
            goto done;
        }
        if (add_pos(ch, "pos", c->pos) || !cJSON_AddStringToObject(ch, "op", op) ||
            add_ref(ch, "keys", c->keys) || add_ref(ch, "image", c->image) ||
            !cJSON_AddStringToObject(ch, "ver", c->version))
            goto nomem;
    }
    int version = b->has_acked ? 2 : 1;
    rc = check_batch(root, version, NULL, err, errlen);
    if (rc != WIRE_OK)
        goto done;
    rc = frame_body(root, version, WIRE_BATCH, out, len, err, errlen);
    goto done;
nomem:
    set_err(err, errlen, "out of memory building the batch");
    rc = WIRE_ERR_NOMEM;
done:
    cJSON_Delete(root); /* references: the caller's trees are not freed */
    return rc;
}

wire_status wire_encode_ack(const wire_ack *a, unsigned char **out, size_t *len, char *err,
                            size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !len) {
        set_err(err, errlen, "no output buffer");
        return WIRE_ERR_SCHEMA;
    }
    *out = NULL;
    *len = 0;
    if (!a) {
        set_err(err, errlen, "no ack");
        return WIRE_ERR_SCHEMA;
    }
    if (!memchr(a->source, '\0', sizeof a->source) || !memchr(a->table, '\0', sizeof a->table)) {
        set_err(err, errlen, "source/table: not NUL-terminated");
        return WIRE_ERR_SCHEMA;
    }
    wire_status rc = WIRE_ERR_SCHEMA;
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddStringToObject(root, "source", a->source) ||
        !cJSON_AddStringToObject(root, "table", a->table) || add_pos(root, "pos", a->pos)) {
        set_err(err, errlen, "out of memory building the ack");
        rc = WIRE_ERR_NOMEM;
        goto done;
    }
    rc = check_ack(root, NULL, err, errlen);
    if (rc != WIRE_OK)
        goto done;
    rc = frame_body(root, 1, WIRE_ACK, out, len, err, errlen);
done:
    cJSON_Delete(root);
    return rc;
}
