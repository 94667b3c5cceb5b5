/* item.h -- DynamoDB items and AttributeValues as cJSON trees.
 *
 * An item is a JSON object mapping attribute name -> AttributeValue (AV). An AV is an
 * object with exactly one type key:
 *   {"S":"text"} {"N":"-12.5e3"} {"B":"base64"} {"BOOL":true} {"NULL":true}
 *   {"L":[AV,...]} {"M":{"name":AV,...}} {"SS":["a",..]} {"NS":["1",..]} {"BS":["AQ==",..]}
 * Numbers are always JSON strings and are kept exactly as written (never re-formatted).
 *
 * Validation rules (item_validate):
 *  - names (top-level and M members) are 1..65535 bytes of valid UTF-8, unique;
 *  - S and SS members are valid UTF-8 (empty strings allowed);
 *  - N: optional sign, digits, optional '.' fraction, optional exponent [eE][+-]digits,
 *    at least one mantissa digit; at most 38 significant digits; a non-zero value's
 *    magnitude within DynamoDB's 1E-130 .. 9.99..9E+125;
 *  - B/BS: standard base64 with '=' padding, length a multiple of 4, zero pad bits
 *    (so equal bytes have exactly one text form); empty allowed;
 *  - BOOL is true/false, NULL must be true;
 *  - SS/NS/BS are non-empty arrays of unique members (NS members compared by numeric
 *    value: "1" and "1.0" are duplicates);
 *  - nesting: a top-level attribute's AV is at depth 1, an element of an L or M at
 *    depth d is at d + 1; depth must be <= ITEM_MAX_DEPTH.
 * Error strings start with the attribute path: a top-level attribute by its name, an M
 * member as "<path>.M.<name>", an L element or set member as "<path>[i]", e.g.
 * "attrs.M.list[2]: N is not a number".
 *
 * Canonical form (item_canonical): unformatted JSON with object keys sorted bytewise at
 * every level, SS/NS/BS members sorted bytewise, strings escaped minimally (", \ and
 * control characters), numbers (N strings) exactly as written. Two items are equal
 * exactly when their canonical forms are.
 *
 * Hidden attributes: top-level attributes whose name starts with ITEM_HIDDEN_PREFIX
 * belong to Tern (docs/architecture.md, "Versions and hidden attributes").
 *
 * Threading: all functions are pure and thread-safe; functions that modify an item
 * need exclusive access to that item. All lookups are case-sensitive. */
#ifndef TERN_ITEM_H
#define TERN_ITEM_H

#include <stddef.h>
#include <cjson/cJSON.h>

#define ITEM_HIDDEN_PREFIX "tern:"
#define ITEM_ATTR_VER "tern:ver"   /* S: the lww version text of the item's content */
#define ITEM_ATTR_WID "tern:wid"   /* S: unique id of the Tern write that made this state */
#define ITEM_MAX_DEPTH 32          /* DynamoDB's nesting limit for L and M */
#define ITEM_NAME_MAX 65535        /* bytes in an attribute or map member name */
#define ITEM_NUMBER_DIGITS 38      /* significant digits of an N */

/* Validates item (rules above). Returns 0, -1 with "<path>: <reason>" in err (caller's
 * buffer of errlen bytes; may be NULL if errlen is 0), or ITEM_VALIDATE_NOMEM: out of
 * memory, the item not judged (err says so). Allocates nothing that outlives the call. */
#define ITEM_VALIDATE_NOMEM (-2)
int item_validate(const cJSON *item, char *err, size_t errlen);

/* Validates one AttributeValue; error paths start with "value". Same contract. */
int item_validate_value(const cJSON *av, char *err, size_t errlen);

/* Returns the canonical JSON text of item (see above), leaving out top-level hidden
 * attributes when skip_hidden is non-zero. Deterministic for any cJSON tree, intended
 * for valid items. Returns a malloc'd string the caller frees, or NULL on allocation
 * failure or NULL item. */
char *item_canonical(const cJSON *item, int skip_hidden);

/* Canonical equality: returns 1 if equal, 0 if not, -1 on allocation failure (callers
 * test "== 1"). Two NULLs are equal; NULL and non-NULL are not. Nothing to free. */
int item_equal(const cJSON *a, const cJSON *b, int skip_hidden);

/* Returns a new object holding deep copies of the named top-level attributes (a name
 * listed twice is copied once), or NULL if one is missing or allocation fails. The
 * caller cJSON_Deletes the result; item and names stay the caller's. */
cJSON *item_project(const cJSON *item, const char *const *names, size_t n);

/* Returns the stable id of a key (the key attributes as an item): lowercase hex
 * SHA-256 of item_canonical(keys, 0), 64 chars + NUL, malloc'd (caller frees), or NULL
 * on allocation/digest failure or NULL keys. */
char *item_key_id(const cJSON *keys);

/* Removes (and frees) every top-level attribute whose name starts with
 * ITEM_HIDDEN_PREFIX. NULL or a non-object is a no-op. */
void item_strip_hidden(cJSON *item);

/* Returns the string of attribute name if it is an S AttributeValue, else NULL.
 * Borrowed: valid while item and that attribute are unchanged; do not free. */
const char *item_get_s(const cJSON *item, const char *name);

/* Sets attribute name to {"S": value} (copied), replacing every existing attribute of
 * that name. Returns 0, or -1 (item unchanged) on a non-object item, NULL arguments or
 * allocation failure. */
int item_set_s(cJSON *item, const char *name, const char *value);

/* Repairs a stream image from DynamoDB Local, which renders a nested empty map as {}
 * instead of {"M":{}} (GetItem renders it right): rewrites every empty AttributeValue
 * object at any depth into {"M":{}}. Returns how many were repaired, or -1 on
 * allocation failure. The item stays the caller's. */
int item_repair_stream_image(cJSON *item);

#endif
