/* fuzz_stream_records.c -- fuzz target for the agent's handling of a GetRecords response.
 *
 * Input: a GetRecords response body (JSON). The parsing lives inside region-agent/
 * tailer.c's tailer_process, which needs Redis; this target repeats its pure steps on
 * the parsed JSON, in the same order and with the same module calls:
 *   - Records (an array, else nothing to do);
 *   - per record: dynamodb.Keys/NewImage/OldImage/SequenceNumber and eventName; a record
 *     without a string SequenceNumber, an object Keys, or (unless REMOVE) an object
 *     NewImage stops the batch, as tailer does;
 *   - item_key_id(Keys);
 *   - classification inputs: item_get_s of tern:ver (OldImage, NewImage) and tern:wid
 *     (NewImage), each version text through lww_version_parse (and, when valid, a clock
 *     observe);
 *   - the image a local put ships (tailer_ship_image): cJSON_Duplicate, item_strip_hidden,
 *     item_repair_stream_image, item_validate; and the repair copy of OldImage
 *     (cJSON_Duplicate, item_strip_hidden);
 *   - the change-log entry {"op","keys","image","ver"} (tailer_append_log), printed and
 *     parsed back as the shipper does, and wire_encode_batch of that one change.
 * Checks: nothing crashes or leaks; a shipped image is a valid item with no tern:*
 * attribute; the log entry round-trips. That wire_encode_batch accepts the logged change
 * is only asserted with TERN_FUZZ_SHIP_STRICT=1: tailer does not validate Keys, so today
 * such changes exist (see tests/fuzz/README.md). */
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "item.h"
#include "lww.h"
#include "wire.h"

/* TERN_FUZZ_SHIP_STRICT=1: a logged change that wire_encode_batch refuses is a finding.
 * Off by default: tailer does not validate Keys yet (tests/fuzz/README.md). */
static int sr_strict_ship(void)
{
    const char *v = getenv("TERN_FUZZ_SHIP_STRICT");
    return v && strcmp(v, "1") == 0;
}

/* As apply_stored_version (apply/ is not linked here): a valid version text from an item
 * attribute, or "". */
static const char *sr_item_version(const cJSON *item)
{
    const char *s = item ? item_get_s(item, ITEM_ATTR_VER) : NULL;
    lww_version v;
    char e[8];
    if (!s || lww_version_parse(s, &v, e, sizeof e) != 0)
        return "";
    return s;
}

static void sr_observe(lww_clock *clk, const char *text)
{
    lww_version v;
    char e[8];
    if (text && *text && lww_version_parse(text, &v, e, sizeof e) == 0)
        lww_clock_observe(clk, &v);
}

/* tailer_ship_image. NULL if it cannot be shipped. */
static cJSON *sr_ship_image(const cJSON *newi)
{
    char err[256];
    cJSON *img = cJSON_Duplicate(newi, 1);
    if (!img)
        return NULL;
    item_strip_hidden(img);
    if (item_repair_stream_image(img) < 0) {
        cJSON_Delete(img);
        return NULL;
    }
    if (item_validate(img, err, sizeof err) != 0) {
        cJSON_Delete(img);
        return NULL;
    }
    return img;
}

/* tailer_append_log's entry, printed, parsed back and encoded as the shipper does. */
static void sr_log_and_ship(const cJSON *keys, const cJSON *img, int is_delete, const char *ver)
{
    cJSON *c = cJSON_CreateObject();
    if (!c || !cJSON_AddStringToObject(c, "op", is_delete ? "delete" : "put") ||
        !cJSON_AddItemToObject(c, "keys", cJSON_Duplicate(keys, 1))) {
        cJSON_Delete(c);
        return;
    }
    if (!is_delete) {
        cJSON *dup = cJSON_Duplicate(img, 1);
        if (!dup || !cJSON_AddItemToObject(c, "image", dup)) {
            cJSON_Delete(dup);
            cJSON_Delete(c);
            return;
        }
    }
    if (!cJSON_AddStringToObject(c, "ver", ver)) {
        cJSON_Delete(c);
        return;
    }
    char *json = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    if (!json)
        return;
    cJSON *parsed = cJSON_Parse(json);
    free(json);
    if (!parsed)
        fuzz_fail("a change-log entry does not parse back");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(parsed, "keys");
    const cJSON *pi = cJSON_GetObjectItemCaseSensitive(parsed, "image");
    if (!is_delete && item_equal(pi, img, 0) != 1)
        fuzz_fail("the logged image differs from the shipped image");

    wire_batch b;
    wire_change ch;
    memset(&b, 0, sizeof b);
    memset(&ch, 0, sizeof ch);
    snprintf(b.source, sizeof b.source, "fuzz-region");
    snprintf(b.table, sizeof b.table, "FuzzTable");
    b.prev.ms = 1;
    b.first.ms = b.last.ms = ch.pos.ms = 2;
    b.sent_ms = 3;
    b.n = 1;
    b.changes = &ch;
    ch.op = is_delete ? WIRE_OP_DELETE : WIRE_OP_PUT;
    ch.keys = (cJSON *)pk;
    ch.image = is_delete ? NULL : (cJSON *)pi;
    snprintf(ch.version, sizeof ch.version, "%s", ver);
    unsigned char *frame = NULL;
    size_t flen = 0;
    char err[256];
    if (wire_encode_batch(&b, &frame, &flen, err, sizeof err) == 0) {
        wire_msg m;
        if (wire_decode(frame, flen, &m, err, sizeof err) != WIRE_OK)
            fuzz_fail("an encoded change does not decode: %s", err);
        wire_msg_free(&m);
        free(frame);
    } else if (sr_strict_ship()) {
        /* the shipper would stop at this change-log entry for good */
        fuzz_fail("a change the tailer logs cannot be shipped: %s", err);
    }
    cJSON_Delete(parsed);
}

int fuzz_stream_records(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    cJSON *resp = cJSON_Parse(text);
    free(text);
    if (!resp)
        return 0;
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(resp, "Records");
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(resp, "NextShardIterator");
    (void)(cJSON_IsString(next) && *next->valuestring);
    int nrec = cJSON_IsArray(records) ? cJSON_GetArraySize(records) : 0;
    lww_clock *clk = lww_clock_new("fuzz-region");
    const cJSON *rec;
    if (nrec <= 0 || !clk)
        goto out;
    uint64_t wall = 1700000000000ULL;
    cJSON_ArrayForEach(rec, records) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "dynamodb");
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(rec, "eventName");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "SequenceNumber");
        const cJSON *keys = cJSON_GetObjectItemCaseSensitive(d, "Keys");
        const cJSON *newi = cJSON_GetObjectItemCaseSensitive(d, "NewImage");
        const cJSON *oldi = cJSON_GetObjectItemCaseSensitive(d, "OldImage");
        int is_delete = cJSON_IsString(ev) && strcmp(ev->valuestring, "REMOVE") == 0;
        if (!cJSON_IsString(seq) || !cJSON_IsObject(keys) || (!is_delete && !cJSON_IsObject(newi)))
            break; /* tailer: malformed stream record, the batch is not processed */
        char *kid = item_key_id(keys);
        if (!kid)
            break;
        if (strlen(kid) != 64)
            fuzz_fail("key id of %zu chars", strlen(kid));

        /* classification inputs */
        const char *old_logical = oldi ? sr_item_version(oldi) : "";
        sr_observe(clk, old_logical);
        const char *wid = is_delete ? NULL : item_get_s(newi, ITEM_ATTR_WID);
        const char *echo_ver = is_delete ? "" : sr_item_version(newi);
        if (wid)
            sr_observe(clk, echo_ver);

        /* the repair copy of the old image */
        if (oldi) {
            cJSON *rimg = cJSON_Duplicate(oldi, 1);
            if (rimg) {
                item_strip_hidden(rimg);
                free(item_canonical(rimg, 0)); /* what apply compares it with */
                cJSON_Delete(rimg);
            }
        }

        /* a local change: version it and ship */
        cJSON *img = NULL;
        if (!is_delete) {
            img = sr_ship_image(newi);
            if (!img) {
                free(kid);
                continue; /* counted invalid, not replicated */
            }
            for (const cJSON *a = img->child; a; a = a->next)
                if (strncmp(a->string, ITEM_HIDDEN_PREFIX, strlen(ITEM_HIDDEN_PREFIX)) == 0)
                    fuzz_fail("a shipped image carries %s", a->string);
        }
        lww_version nv;
        char ver[LWW_VERSION_STRLEN];
        lww_clock_now(clk, wall++, &nv);
        if (lww_version_format(&nv, ver, sizeof ver) != 0)
            fuzz_fail("the clock issued a version that does not format");
        sr_log_and_ship(keys, img, is_delete, ver);
        cJSON_Delete(img);
        free(kid);
    }
out:
    lww_clock_free(clk);
    cJSON_Delete(resp);
    return 0;
}

TERN_FUZZ_ENTRY(fuzz_stream_records)
