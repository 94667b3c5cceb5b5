/* fuzz_item.c -- fuzz target for item/ (DynamoDB AttributeValue handling).
 *
 * Input: JSON text (an item). Runs item_validate, item_canonical (with and without
 * hidden attributes), item_repair_stream_image, item_strip_hidden, item_get_s/set_s,
 * item_project and item_key_id on it. Checks, for valid items: the canonical text parses
 * back to an item that is valid, has the same canonical text and is item_equal; repair
 * changes nothing (a valid item has no empty AttributeValue); the key id is 64 hex chars
 * and equal for the canonical copy. For any input: nothing crashes or leaks, and an item
 * that repair made valid stays valid under canonical round trip. */
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "item.h"

/* Checks the canonical round trip of a valid item. */
static void item_check_valid(const cJSON *it)
{
    char err[512];
    char *c0 = item_canonical(it, 0);
    if (!c0)
        return; /* allocation failure */
    cJSON *back = cJSON_Parse(c0);
    if (!back)
        fuzz_fail("canonical text does not parse: %.200s", c0);
    if (item_validate(back, err, sizeof err) != 0)
        fuzz_fail("canonical copy is invalid (%s): %.200s", err, c0);
    char *c1 = item_canonical(back, 0);
    if (c1 && strcmp(c0, c1) != 0)
        fuzz_fail("canonical form is not a fixpoint: %.200s vs %.200s", c0, c1);
    if (item_equal(it, back, 0) == 0 || item_equal(it, back, 1) == 0)
        fuzz_fail("item is not equal to its canonical copy");
    char *k0 = item_key_id(it), *k1 = item_key_id(back);
    if (k0) {
        if (strlen(k0) != 64 || strspn(k0, "0123456789abcdef") != 64)
            fuzz_fail("bad key id %s", k0);
        if (k1 && strcmp(k0, k1) != 0)
            fuzz_fail("key id differs for the canonical copy");
    }
    free(k0);
    free(k1);
    free(c1);

    /* repair must leave a valid item alone */
    cJSON *dup = cJSON_Duplicate(it, 1);
    if (dup) {
        int r = item_repair_stream_image(dup);
        if (r > 0)
            fuzz_fail("repair changed %d values of a valid item", r);
        if (r == 0 && item_equal(dup, it, 0) == 0)
            fuzz_fail("repair of a valid item changed it");
        /* strip_hidden leaves a valid item without hidden attributes */
        item_strip_hidden(dup);
        if (item_validate(dup, err, sizeof err) != 0)
            fuzz_fail("strip_hidden made a valid item invalid: %s", err);
        for (const cJSON *a = dup->child; a; a = a->next)
            if (strncmp(a->string, ITEM_HIDDEN_PREFIX, strlen(ITEM_HIDDEN_PREFIX)) == 0)
                fuzz_fail("strip_hidden left %s", a->string);
        if (item_equal(dup, it, 1) == 0)
            fuzz_fail("stripped item differs from the item with hidden attributes skipped");
        /* setting a hidden attribute keeps it valid, and readable */
        if (item_set_s(dup, ITEM_ATTR_WID, "w-1") == 0) {
            const char *w = item_get_s(dup, ITEM_ATTR_WID);
            if (!w || strcmp(w, "w-1") != 0)
                fuzz_fail("item_get_s after item_set_s");
            if (item_validate(dup, err, sizeof err) != 0)
                fuzz_fail("item_set_s made the item invalid: %s", err);
            if (item_equal(dup, it, 1) == 0)
                fuzz_fail("a hidden attribute changed skip_hidden equality");
        }
        cJSON_Delete(dup);
    }

    /* projection on every attribute equals the item */
    size_t n = (size_t)cJSON_GetArraySize(it);
    if (n > 0) {
        const char **names = malloc(n * sizeof *names);
        if (names) {
            size_t i = 0;
            for (const cJSON *a = it->child; a; a = a->next)
                names[i++] = a->string;
            cJSON *proj = item_project(it, names, n);
            if (proj && item_equal(proj, it, 0) == 0)
                fuzz_fail("projection on all attributes differs from the item");
            cJSON_Delete(proj);
            free(names);
        }
    }
    cJSON_Delete(back);
    free(c0);
}

int fuzz_item(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    cJSON *it = cJSON_Parse(text);
    free(text);
    if (!it)
        return 0;
    char err[512];
    int valid = item_validate(it, err, sizeof err) == 0;
    if (!valid && !err[0])
        fuzz_fail("item_validate failed without a reason");
    if (!valid && strlen(err) >= sizeof err)
        fuzz_fail("error not terminated");
    char *c0 = item_canonical(it, 0), *c1 = item_canonical(it, 1);
    char *kid = item_key_id(it);
    free(c0);
    free(c1);
    free(kid);
    (void)item_get_s(it, ITEM_ATTR_VER);
    (void)item_validate_value(it, err, sizeof err);
    if (valid)
        item_check_valid(it);

    /* what the agent does with a stream image: repair, then validate */
    cJSON *img = cJSON_Duplicate(it, 1);
    if (img) {
        item_strip_hidden(img);
        int r = item_repair_stream_image(img);
        if (r >= 0 && item_validate(img, err, sizeof err) == 0)
            item_check_valid(img);
        cJSON_Delete(img);
    }
    cJSON_Delete(it);
    return 0;
}

TERN_FUZZ_ENTRY(fuzz_item)
