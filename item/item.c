/* item.c -- DynamoDB AttributeValue handling: validation, canonical JSON, key ids,
 * Tern's hidden attributes.
 *
 * Owns: nothing long-lived. Every function works on the caller's cJSON trees; results
 * (canonical strings, projections, key ids) are newly allocated and handed over.
 *
 * Invariants:
 *  - N strings are never converted to binary numbers: they are checked textually and
 *    emitted verbatim, so no precision is ever lost.
 *  - The canonical serializer sorts object keys and set members with a total order
 *    (bytewise, ties by original position), so its output is a pure function of the
 *    item's content for valid items (which have no duplicate names or members).
 *  - All name lookups are case-sensitive (cJSON_GetObjectItem is not, so it is never used).
 *
 * Threading: pure, re-entrant, no globals; callers serialise access to a tree they modify. */
#include "item.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---------------------------------------------------------------- errors, paths */

typedef struct {
    char path[512];   /* attribute path of the value being checked, truncated if long */
    size_t plen;
    char *err;
    size_t errlen;
    int nomem;        /* an allocation failed: the item was not judged */
} vctx;

static void path_push(vctx *c, size_t *saved, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void path_push(vctx *c, size_t *saved, const char *fmt, ...)
{
    *saved = c->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
    va_end(ap);
    if (n > 0) {
        c->plen += (size_t)n;
        if (c->plen >= sizeof c->path)
            c->plen = sizeof c->path - 1;
    }
}

static void path_pop(vctx *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = '\0';
}

static int fail(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(vctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen > 0) {
        int n = snprintf(c->err, c->errlen, "%s: ", c->plen ? c->path : "item");
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int oom(vctx *c)
{
    c->nomem = 1;
    return fail(c, "out of memory");
}

/* ---------------------------------------------------------------- text checks */

/* Returns 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
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
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

static int b64_val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Strict standard base64: groups of 4, '=' padding only at the end, zero pad bits. */
static int base64_valid(const char *s)
{
    size_t len = strlen(s);
    if (len % 4 != 0)
        return 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int last = (i + 4 == len);
        for (int k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)s[i + k];
            v[k] = (ch == '=') ? -2 : b64_val(ch);
            if (v[k] == -1)
                return 0;
        }
        if (v[0] < 0 || v[1] < 0)
            return 0;
        if (v[2] == -2 || v[3] == -2) {
            if (!last)
                return 0;
            if (v[2] == -2) {
                if (v[3] != -2 || (v[1] & 0x0F) != 0)
                    return 0;
            } else if ((v[2] & 0x03) != 0) {
                return 0;
            }
        }
    }
    return 1;
}

/* Checks a DynamoDB number string. Returns 0 if valid, 1 if not a number, 2 if too many
 * significant digits, 3 if out of range. On success writes a normalized form (sign,
 * significant digits, exponent) into norm (for numeric equality of NS members). */
static int number_check(const char *s, char *norm, size_t normlen)
{
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-')
        neg = (*p++ == '-');
    const char *int_start = p;
    while (*p >= '0' && *p <= '9')
        p++;
    size_t int_len = (size_t)(p - int_start);
    const char *frac_start = p, *frac_end = p;
    if (*p == '.') {
        frac_start = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        frac_end = p;
    }
    size_t frac_len = (size_t)(frac_end - frac_start);
    if (int_len + frac_len == 0)
        return 1;
    long long exp = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = 0;
        if (*p == '+' || *p == '-')
            eneg = (*p++ == '-');
        if (!(*p >= '0' && *p <= '9'))
            return 1;
        while (*p >= '0' && *p <= '9') {
            if (exp < 1000000000LL)
                exp = exp * 10 + (*p - '0'); /* saturates: far outside any valid range */
            p++;
        }
        if (eneg)
            exp = -exp;
    }
    if (*p != '\0')
        return 1;

    /* Digits D = int part then fraction; locate first and last non-zero digit. */
    size_t total = int_len + frac_len;
#define DIGIT(i) ((i) < int_len ? int_start[(i)] : frac_start[(i) - int_len])
    size_t first = total, last = 0;
    for (size_t i = 0; i < total; i++) {
        if (DIGIT(i) != '0') {
            if (first == total)
                first = i;
            last = i;
        }
    }
    if (first == total) { /* zero, any sign or exponent */
        if (norm && normlen)
            snprintf(norm, normlen, "0");
        return 0;
    }
    size_t sig = last - first + 1;
    if (sig > ITEM_NUMBER_DIGITS)
        return 2;
    /* value = d1.d2d3... x 10^sci */
    long long sci = (long long)int_len - 1 - (long long)first + exp;
    if (sci < -130 || sci > 125)
        return 3;
    if (norm && normlen) {
        char digits[ITEM_NUMBER_DIGITS + 1];
        for (size_t i = 0; i < sig; i++)
            digits[i] = DIGIT(first + i);
        digits[sig] = '\0';
        snprintf(norm, normlen, "%s%se%lld", neg ? "-" : "", digits, sci);
    }
#undef DIGIT
    return 0;
}

/* ---------------------------------------------------------------- validation */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int validate_av(vctx *c, const cJSON *av, int depth);

static int check_name(vctx *c, const char *name)
{
    if (!name)
        return fail(c, "member has no name");
    size_t n = strlen(name);
    if (n == 0)
        return fail(c, "name is empty");
    if (n > ITEM_NAME_MAX)
        return fail(c, "name is %zu bytes, longer than %d", n, ITEM_NAME_MAX);
    if (!utf8_valid((const unsigned char *)name, n))
        return fail(c, "name is not valid UTF-8");
    return 0;
}

/* Validates a name -> AV map (the item, or an M's value) whose values are at depth. */
static int validate_map(vctx *c, const cJSON *map, int depth, int top)
{
    if (!cJSON_IsObject(map))
        return fail(c, "%s must be a JSON object", top ? "item" : "M");
    size_t count = 0;
    for (const cJSON *a = map->child; a; a = a->next)
        count++;
    const char **names = NULL;
    if (count > 1) {
        names = cJSON_malloc(count * sizeof *names);
        if (!names)
            return oom(c);
    }
    size_t i = 0;
    int rc = 0;
    for (const cJSON *a = map->child; a && rc == 0; a = a->next) {
        size_t saved;
        if (top)
            path_push(c, &saved, "%.200s", a->string ? a->string : "");
        else
            path_push(c, &saved, ".M.%.200s", a->string ? a->string : "");
        rc = check_name(c, a->string);
        if (rc == 0)
            rc = validate_av(c, a, depth);
        path_pop(c, saved);
        if (names)
            names[i++] = a->string;
    }
    if (rc == 0 && names) {
        qsort(names, count, sizeof *names, cmp_str_ptr);
        for (i = 1; i < count; i++) {
            if (strcmp(names[i - 1], names[i]) == 0) {
                size_t saved;
                path_push(c, &saved, "%s%.200s", top ? "" : ".M.", names[i]);
                rc = fail(c, "duplicate name");
                path_pop(c, saved);
                break;
            }
        }
    }
    cJSON_free(names);
    return rc;
}

typedef enum { SET_S, SET_N, SET_B } set_kind;

/* A copy of s by cJSON's allocator (cJSON_free): validation's scratch memory comes from
 * there, so that a test's failing cJSON hooks reach every allocation of an encode. */
static char *vdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = cJSON_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int validate_set(vctx *c, const cJSON *arr, set_kind kind, const char *tname)
{
    if (!cJSON_IsArray(arr))
        return fail(c, "%s must be an array", tname);
    size_t count = (size_t)cJSON_GetArraySize(arr);
    if (count == 0)
        return fail(c, "%s must not be empty", tname);
    /* Uniqueness keys: the string itself, or the normalized number for NS. */
    char **keys = cJSON_malloc(count * sizeof *keys);
    if (!keys)
        return oom(c);
    memset(keys, 0, count * sizeof *keys);
    int rc = 0;
    size_t i = 0;
    for (const cJSON *m = arr->child; m && rc == 0; m = m->next, i++) {
        size_t saved;
        path_push(c, &saved, "[%zu]", i);
        if (!cJSON_IsString(m) || !m->valuestring) {
            rc = fail(c, "%s member must be a string", tname);
        } else if (kind == SET_S) {
            if (!utf8_valid((const unsigned char *)m->valuestring, strlen(m->valuestring)))
                rc = fail(c, "SS member is not valid UTF-8");
            else if (!(keys[i] = vdup(m->valuestring)))
                rc = oom(c);
        } else if (kind == SET_B) {
            if (!base64_valid(m->valuestring))
                rc = fail(c, "BS member is not valid base64");
            else if (!(keys[i] = vdup(m->valuestring)))
                rc = oom(c);
        } else {
            char norm[ITEM_NUMBER_DIGITS + 32];
            int nc = number_check(m->valuestring, norm, sizeof norm);
            if (nc == 1)
                rc = fail(c, "NS member is not a number");
            else if (nc == 2)
                rc = fail(c, "NS member has more than %d significant digits", ITEM_NUMBER_DIGITS);
            else if (nc == 3)
                rc = fail(c, "NS member is out of range (1E-130 .. 9.99E+125)");
            else if (!(keys[i] = vdup(norm)))
                rc = oom(c);
        }
        path_pop(c, saved);
    }
    if (rc == 0) {
        qsort(keys, count, sizeof *keys, cmp_str_ptr);
        for (i = 1; i < count; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                rc = fail(c, "%s has duplicate members", tname);
                break;
            }
        }
    }
    for (i = 0; i < count; i++)
        cJSON_free(keys[i]);
    cJSON_free(keys);
    return rc;
}

static int validate_av(vctx *c, const cJSON *av, int depth)
{
    if (depth > ITEM_MAX_DEPTH)
        return fail(c, "nested deeper than %d levels", ITEM_MAX_DEPTH);
    if (!cJSON_IsObject(av))
        return fail(c, "AttributeValue must be an object like {\"S\":\"..\"}");
    int nkeys = 0;
    for (const cJSON *k = av->child; k; k = k->next)
        nkeys++;
    if (nkeys != 1)
        return fail(c, "AttributeValue must have exactly one type key, has %d", nkeys);
    const cJSON *v = av->child;
    const char *t = v->string ? v->string : "";
    if (strcmp(t, "S") == 0) {
        if (!cJSON_IsString(v) || !v->valuestring)
            return fail(c, "S must be a string");
        if (!utf8_valid((const unsigned char *)v->valuestring, strlen(v->valuestring)))
            return fail(c, "S is not valid UTF-8");
        return 0;
    }
    if (strcmp(t, "N") == 0) {
        if (!cJSON_IsString(v) || !v->valuestring)
            return fail(c, "N must be a string");
        int nc = number_check(v->valuestring, NULL, 0);
        if (nc == 1)
            return fail(c, "N is not a number");
        if (nc == 2)
            return fail(c, "N has more than %d significant digits", ITEM_NUMBER_DIGITS);
        if (nc == 3)
            return fail(c, "N is out of range (1E-130 .. 9.99E+125)");
        return 0;
    }
    if (strcmp(t, "B") == 0) {
        if (!cJSON_IsString(v) || !v->valuestring)
            return fail(c, "B must be a string");
        if (!base64_valid(v->valuestring))
            return fail(c, "B is not valid base64");
        return 0;
    }
    if (strcmp(t, "BOOL") == 0) {
        if (!cJSON_IsBool(v))
            return fail(c, "BOOL must be true or false");
        return 0;
    }
    if (strcmp(t, "NULL") == 0) {
        if (!cJSON_IsTrue(v))
            return fail(c, "NULL must be true");
        return 0;
    }
    if (strcmp(t, "L") == 0) {
        if (!cJSON_IsArray(v))
            return fail(c, "L must be an array");
        size_t i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            size_t saved;
            path_push(c, &saved, "[%zu]", i);
            int rc = validate_av(c, e, depth + 1);
            path_pop(c, saved);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(t, "M") == 0)
        return validate_map(c, v, depth + 1, 0);
    if (strcmp(t, "SS") == 0)
        return validate_set(c, v, SET_S, "SS");
    if (strcmp(t, "NS") == 0)
        return validate_set(c, v, SET_N, "NS");
    if (strcmp(t, "BS") == 0)
        return validate_set(c, v, SET_B, "BS");
    return fail(c, "unknown AttributeValue type \"%.32s\"", t);
}

int item_validate(const cJSON *item, char *err, size_t errlen)
{
    vctx c = {.plen = 0, .err = err, .errlen = errlen};
    c.path[0] = '\0';
    if (err && errlen)
        err[0] = '\0';
    if (!item)
        return fail(&c, "no item");
    if (validate_map(&c, item, 1, 1) == 0)
        return 0;
    return c.nomem ? ITEM_VALIDATE_NOMEM : -1;
}

int item_validate_value(const cJSON *av, char *err, size_t errlen)
{
    vctx c = {.plen = 0, .err = err, .errlen = errlen};
    size_t saved;
    c.path[0] = '\0';
    if (err && errlen)
        err[0] = '\0';
    path_push(&c, &saved, "value");
    if (!av)
        return fail(&c, "no value");
    if (validate_av(&c, av, 1) == 0)
        return 0;
    return c.nomem ? ITEM_VALIDATE_NOMEM : -1;
}

/* ---------------------------------------------------------------- canonical JSON */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    const char *run = s;
    for (const char *q = s; *q; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        sb_put(b, run, (size_t)(q - run));
        char esc[8];
        switch (ch) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            sb_str(b, esc);
        }
        run = q + 1;
    }
    sb_str(b, run);
    sb_put(b, "\"", 1);
}

typedef struct {
    const cJSON *node;
    const char *key;   /* sort key: member name or string value */
    size_t idx;        /* original position: total order for equal keys */
} sortent;

static int cmp_sortent(const void *a, const void *b)
{
    const sortent *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Returns the children of node sorted by name (by_value == 0) or by string value
 * (by_value == 1; non-strings sort as ""), skipping top-level hidden names when asked.
 * *n receives the count; returns NULL with *n == 0 for no children; sets b->oom on
 * allocation failure. Caller frees the array. */
static sortent *sorted_children(sbuf *b, const cJSON *node, int by_value, int skip_hidden,
                                size_t *n)
{
    *n = 0;
    size_t count = 0;
    for (const cJSON *ch = node->child; ch; ch = ch->next)
        count++;
    if (count == 0)
        return NULL;
    sortent *v = malloc(count * sizeof *v);
    if (!v) {
        b->oom = 1;
        return NULL;
    }
    size_t i = 0, k = 0;
    for (const cJSON *ch = node->child; ch; ch = ch->next, i++) {
        const char *key;
        if (by_value)
            key = (cJSON_IsString(ch) && ch->valuestring) ? ch->valuestring : "";
        else
            key = ch->string ? ch->string : "";
        if (skip_hidden && !by_value &&
            strncmp(key, ITEM_HIDDEN_PREFIX, strlen(ITEM_HIDDEN_PREFIX)) == 0)
            continue;
        v[k].node = ch;
        v[k].key = key;
        v[k].idx = i;
        k++;
    }
    qsort(v, k, sizeof *v, cmp_sortent);
    *n = k;
    return v;
}

static void ser_generic(sbuf *b, const cJSON *v);
static void ser_av(sbuf *b, const cJSON *av);

static void ser_number(sbuf *b, double d)
{
    char num[64];
    if (!isfinite(d))
        snprintf(num, sizeof num, "null");
    else if (d == floor(d) && fabs(d) < 9007199254740992.0)
        snprintf(num, sizeof num, "%lld", (long long)d);
    else
        snprintf(num, sizeof num, "%.17g", d);
    sb_str(b, num);
}

/* A name -> AV map: sorted keys, values as AVs. */
static void ser_map(sbuf *b, const cJSON *map, int skip_hidden)
{
    if (!cJSON_IsObject(map)) {
        ser_generic(b, map);
        return;
    }
    size_t n;
    sortent *v = sorted_children(b, map, 0, skip_hidden, &n);
    sb_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_put(b, ",", 1);
        sb_json_string(b, v[i].key);
        sb_put(b, ":", 1);
        ser_av(b, v[i].node);
    }
    sb_put(b, "}", 1);
    free(v);
}

static void ser_array(sbuf *b, const cJSON *arr, int sorted, int as_av)
{
    size_t n = 0;
    sortent *v = NULL;
    if (sorted)
        v = sorted_children(b, arr, 1, 0, &n);
    sb_put(b, "[", 1);
    if (sorted) {
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_put(b, ",", 1);
            ser_generic(b, v[i].node);
        }
    } else {
        int first = 1;
        for (const cJSON *e = arr->child; e; e = e->next) {
            if (!first)
                sb_put(b, ",", 1);
            first = 0;
            if (as_av)
                ser_av(b, e);
            else
                ser_generic(b, e);
        }
    }
    sb_put(b, "]", 1);
    free(v);
}

/* An AttributeValue: its type key decides how the payload is serialized. */
static void ser_av(sbuf *b, const cJSON *av)
{
    if (!cJSON_IsObject(av)) {
        ser_generic(b, av);
        return;
    }
    size_t n;
    sortent *v = sorted_children(b, av, 0, 0, &n);
    sb_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        const cJSON *val = v[i].node;
        const char *t = v[i].key;
        if (i)
            sb_put(b, ",", 1);
        sb_json_string(b, t);
        sb_put(b, ":", 1);
        if (strcmp(t, "M") == 0 && cJSON_IsObject(val))
            ser_map(b, val, 0);
        else if (strcmp(t, "L") == 0 && cJSON_IsArray(val))
            ser_array(b, val, 0, 1);
        else if ((strcmp(t, "SS") == 0 || strcmp(t, "NS") == 0 || strcmp(t, "BS") == 0) &&
                 cJSON_IsArray(val))
            ser_array(b, val, 1, 0);
        else
            ser_generic(b, val);
    }
    sb_put(b, "}", 1);
    free(v);
}

/* Any JSON value: objects with sorted keys, arrays in order. */
static void ser_generic(sbuf *b, const cJSON *v)
{
    if (cJSON_IsObject(v)) {
        size_t n;
        sortent *s = sorted_children(b, v, 0, 0, &n);
        sb_put(b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_put(b, ",", 1);
            sb_json_string(b, s[i].key);
            sb_put(b, ":", 1);
            ser_generic(b, s[i].node);
        }
        sb_put(b, "}", 1);
        free(s);
    } else if (cJSON_IsArray(v)) {
        ser_array(b, v, 0, 0);
    } else if (cJSON_IsString(v)) {
        sb_json_string(b, v->valuestring ? v->valuestring : "");
    } else if (cJSON_IsNumber(v)) {
        ser_number(b, v->valuedouble);
    } else if (cJSON_IsTrue(v)) {
        sb_str(b, "true");
    } else if (cJSON_IsFalse(v)) {
        sb_str(b, "false");
    } else {
        sb_str(b, "null"); /* null, raw, invalid */
    }
}

char *item_canonical(const cJSON *item, int skip_hidden)
{
    if (!item)
        return NULL;
    sbuf b = {0};
    ser_map(&b, item, skip_hidden);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int item_equal(const cJSON *a, const cJSON *b, int skip_hidden)
{
    if (!a || !b)
        return !a && !b;
    char *ca = item_canonical(a, skip_hidden);
    char *cb = item_canonical(b, skip_hidden);
    int rc = (ca && cb) ? strcmp(ca, cb) == 0 : -1;
    free(ca);
    free(cb);
    return rc;
}

/* ---------------------------------------------------------------- helpers */

cJSON *item_project(const cJSON *item, const char *const *names, size_t n)
{
    if (!cJSON_IsObject(item) || (n > 0 && !names))
        return NULL;
    cJSON *out = cJSON_CreateObject();
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            goto fail;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, names[i]);
        if (!a)
            goto fail;
        if (cJSON_GetObjectItemCaseSensitive(out, names[i]))
            continue;
        cJSON *dup = cJSON_Duplicate(a, 1);
        if (!dup)
            goto fail;
        if (!cJSON_AddItemToObject(out, names[i], dup)) {
            cJSON_Delete(dup);
            goto fail;
        }
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

char *item_key_id(const cJSON *keys)
{
    char *canon = item_canonical(keys, 0);
    if (!canon)
        return NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL);
    free(canon);
    if (ok != 1 || mdlen != 32)
        return NULL;
    char *hex = malloc(65);
    if (!hex)
        return NULL;
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0F];
    }
    hex[64] = '\0';
    return hex;
}

void item_strip_hidden(cJSON *item)
{
    if (!cJSON_IsObject(item))
        return;
    size_t plen = strlen(ITEM_HIDDEN_PREFIX);
    cJSON *a = item->child;
    while (a) {
        cJSON *next = a->next;
        if (a->string && strncmp(a->string, ITEM_HIDDEN_PREFIX, plen) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(item, a));
        a = next;
    }
}

const char *item_get_s(const cJSON *item, const char *name)
{
    if (!cJSON_IsObject(item) || !name)
        return NULL;
    const cJSON *av = cJSON_GetObjectItemCaseSensitive(item, name);
    if (!cJSON_IsObject(av) || !av->child || av->child->next)
        return NULL;
    const cJSON *s = av->child;
    if (!s->string || strcmp(s->string, "S") != 0 || !cJSON_IsString(s))
        return NULL;
    return s->valuestring;
}

int item_set_s(cJSON *item, const char *name, const char *value)
{
    if (!cJSON_IsObject(item) || !name || !value)
        return -1;
    cJSON *av = cJSON_CreateObject();
    if (!av)
        return -1;
    if (!cJSON_AddStringToObject(av, "S", value) || !cJSON_AddItemToObject(item, name, av)) {
        cJSON_Delete(av);
        return -1;
    }
    /* The new attribute is attached last; drop every older one of the same name. */
    cJSON *a = item->child;
    while (a && a != av) {
        cJSON *next = a->next;
        if (a->string && strcmp(a->string, name) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(item, a));
        a = next;
    }
    return 0;
}

/* DynamoDB Local's stream images render an empty map nested in an item as {} instead of
 * {"M":{}} (GetItem renders it right). Walks M and L values and rewrites such {} values. */
static int item_repair_value(cJSON *av, int depth) {
    int n = 0;
    cJSON *inner;
    if (!cJSON_IsObject(av) || depth > ITEM_MAX_DEPTH) return 0;
    if (!av->child) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToObject(av, "M", m)) {
            cJSON_Delete(m);
            return -1;
        }
        return 1;
    }
    if ((inner = cJSON_GetObjectItemCaseSensitive(av, "M")) && cJSON_IsObject(inner)) {
        for (cJSON *c = inner->child; c; c = c->next) {
            int r = item_repair_value(c, depth + 1);
            if (r < 0) return -1;
            n += r;
        }
    } else if ((inner = cJSON_GetObjectItemCaseSensitive(av, "L")) && cJSON_IsArray(inner)) {
        for (cJSON *c = inner->child; c; c = c->next) {
            int r = item_repair_value(c, depth + 1);
            if (r < 0) return -1;
            n += r;
        }
    }
    return n;
}

int item_repair_stream_image(cJSON *item) {
    int n = 0;
    if (!cJSON_IsObject(item)) return 0;
    for (cJSON *c = item->child; c; c = c->next) {
        int r = item_repair_value(c, 1);
        if (r < 0) return -1;
        n += r;
    }
    return n;
}
