/* sigv4.c -- AWS Signature Version 4 (header form).
 *
 * Owns: nothing beyond one call. Builds the canonical request (method, canonical path,
 * canonical query, canonical headers, signed header list, payload hash), the string to
 * sign, derives the signing key (HMAC chain date/region/service/"aws4_request") and the
 * signature, and the headers the caller adds to its request.
 *
 * Invariants: output strings are byte-for-byte what AWS's test suite expects; header
 * names are lowercased, values trimmed with inner whitespace runs (including line
 * folds) collapsed to one space; duplicate header names are joined with ',' in their
 * original order; canonical headers and query parameters are sorted bytewise.
 * Secrets never leave the stack frames of sigv4_sign() (the derived key is wiped).
 *
 * Threading: pure functions, no shared state; callable from any thread. */
#include "sigv4.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* ---- a small growable string ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int failed;   /* sticky: an allocation failed */
} sbuf;

static int sb_reserve(sbuf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 128;
    while (ncap < b->len + extra + 1) {
        if (ncap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np) {
        b->failed = 1;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

static void sb_addn(sbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

static void sb_addc(sbuf *b, char c) { sb_addn(b, &c, 1); }

static void sb_free(sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Returns the string (ownership to the caller) or NULL if any step failed. Always
 * NUL-terminated, also when nothing was ever added (the buffer is then fresh). */
static char *sb_take(sbuf *b)
{
    if (b->failed || sb_reserve(b, 0) != 0) {
        sb_free(b);
        return NULL;
    }
    b->p[b->len] = '\0';
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- encoding ---- */

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static void uri_encode(sbuf *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            sb_addc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_addn(b, e, 3);
        }
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into b ('+' stays '+'; a malformed escape stays literal). */
static void uri_decode(sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 && hexval((unsigned char)s[i + 2]) >= 0) {
            char c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            sb_addc(b, c);
            i += 2;
        } else {
            sb_addc(b, s[i]);
        }
    }
}

/* ---- canonical path ---- */

static void canonical_path(sbuf *out, const char *path, int normalize)
{
    if (!path || !*path)
        path = "/";
    if (!normalize) {
        uri_encode(out, path, strlen(path), 1);
        return;
    }
    /* Remove dot segments and empty segments (RFC 3986 5.2.4 plus slash collapsing). */
    size_t n = strlen(path);
    const char **seg = calloc(n + 1, sizeof *seg);
    size_t *seglen = calloc(n + 1, sizeof *seglen);
    if (!seg || !seglen) {
        free(seg);
        free(seglen);
        out->failed = 1;
        return;
    }
    size_t nseg = 0;
    int trailing = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && path[i] == '/')
            i++;
        size_t start = i;
        while (i < n && path[i] != '/')
            i++;
        size_t len = i - start;
        trailing = (i == n) ? (len == 0) : 0;
        if (len == 0)
            continue;
        if (len == 1 && path[start] == '.') {
            trailing = 1;
            continue;
        }
        if (len == 2 && path[start] == '.' && path[start + 1] == '.') {
            if (nseg > 0)
                nseg--;
            trailing = 1;
            continue;
        }
        seg[nseg] = path + start;
        seglen[nseg] = len;
        nseg++;
        if (i == n)
            trailing = 0;
    }
    if (n > 0 && path[n - 1] == '/')
        trailing = 1;
    sb_addc(out, '/');
    for (size_t k = 0; k < nseg; k++) {
        uri_encode(out, seg[k], seglen[k], 0);
        if (k + 1 < nseg || trailing)
            sb_addc(out, '/');
    }
    free(seg);
    free(seglen);
}

/* ---- canonical query ---- */

typedef struct {
    char *k;
    char *v;
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static char *encode_component(const char *s, size_t n)
{
    sbuf dec = {0}, enc = {0};
    uri_decode(&dec, s, n);
    sb_reserve(&dec, 0);
    if (dec.failed) {
        sb_free(&dec);
        return NULL;
    }
    uri_encode(&enc, dec.p ? dec.p : "", dec.len, 0);
    sb_free(&dec);
    sb_reserve(&enc, 0);
    return sb_take(&enc);
}

static int canonical_query(sbuf *out, const char *q)
{
    if (!q || !*q)
        return 0;
    size_t n = strlen(q), cap = 1;
    for (size_t i = 0; i < n; i++)
        if (q[i] == '&')
            cap++;
    qparam *ps = calloc(cap, sizeof *ps);
    if (!ps)
        return -1;
    size_t np = 0;
    int rc = 0;
    const char *p = q, *end = q + n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if (pe > p) {
            const char *eq = memchr(p, '=', (size_t)(pe - p));
            const char *ke = eq ? eq : pe;
            ps[np].k = encode_component(p, (size_t)(ke - p));
            ps[np].v = eq ? encode_component(eq + 1, (size_t)(pe - eq - 1)) : strdup("");
            np++;
            if (!ps[np - 1].k || !ps[np - 1].v) {
                rc = -1;
                break;
            }
        }
        p = pe + 1;
    }
    if (rc == 0) {
        qsort(ps, np, sizeof *ps, qparam_cmp);
        for (size_t i = 0; i < np; i++) {
            if (i)
                sb_addc(out, '&');
            sb_add(out, ps[i].k);
            sb_addc(out, '=');
            sb_add(out, ps[i].v);
        }
    }
    for (size_t i = 0; i < np; i++) {
        free(ps[i].k);
        free(ps[i].v);
    }
    free(ps);
    return rc;
}

/* ---- canonical headers ---- */

typedef struct {
    char *name;    /* lowercased */
    char *value;   /* trimmed, whitespace runs collapsed */
    size_t order;  /* input position, for a stable sort */
} chdr;

static int chdr_cmp(const void *a, const void *b)
{
    const chdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->order > y->order) - (x->order < y->order);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int chdr_set(chdr *h, const char *name, const char *value, size_t order,
                    char *err, size_t errlen)
{
    size_t nl = strlen(name);
    if (nl == 0) {
        seterr(err, errlen, "sigv4: empty header name");
        return -1;
    }
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == ':' || c == 0x7f) {
            seterr(err, errlen, "sigv4: header name \"%s\" has a forbidden character", name);
            return -1;
        }
    }
    for (const char *v = value; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f) {
            seterr(err, errlen, "sigv4: value of header %s has a control character", name);
            return -1;
        }
    }
    h->name = malloc(nl + 1);
    h->value = malloc(strlen(value) + 1);
    h->order = order;
    if (!h->name || !h->value) {
        seterr(err, errlen, "sigv4: out of memory");
        return -1;
    }
    for (size_t i = 0; i <= nl; i++)
        h->name[i] = (char)tolower((unsigned char)name[i]);
    const char *s = value;
    while (*s && is_ws(*s))
        s++;
    size_t o = 0;
    int pending_space = 0;
    for (; *s; s++) {
        if (is_ws(*s)) {
            pending_space = 1;
            continue;
        }
        if (pending_space && o > 0)
            h->value[o++] = ' ';
        pending_space = 0;
        h->value[o++] = *s;
    }
    h->value[o] = '\0';
    return 0;
}

/* ---- crypto ---- */

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int sigv4_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char empty[1] = {0};
    if (!data)
        data = empty;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    to_hex(md, 32, hex);
    return 0;
}

static int hmac256(const void *key, size_t keylen, const void *msg, size_t msglen,
                   unsigned char out[32])
{
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) || outlen != 32)
        return -1;
    return 0;
}

int sigv4_amz_date(time_t when, char buf[17])
{
    struct tm tm;
    if (!gmtime_r(&when, &tm))
        return -1;
    if (strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -1;
    return 0;
}

void sigv4_result_free(sigv4_result *r)
{
    if (!r)
        return;
    free(r->canonical_request);
    free(r->string_to_sign);
    free(r->authorization);
    free(r->storage_);
    memset(r, 0, sizeof *r);
}

int sigv4_sign(const sigv4_request *rq, const sigv4_credentials *cred,
               const sigv4_params *p, sigv4_result *out, char *err, size_t errlen)
{
    if (!out) {
        seterr(err, errlen, "sigv4: no result");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (!rq || !cred || !p || !rq->method || !*rq->method || !cred->access_key_id ||
        !cred->secret_access_key || !p->region || !p->service || !*p->region ||
        !*p->service || (rq->nheaders && !rq->headers) || (rq->body_len && !rq->body)) {
        seterr(err, errlen, "sigv4: missing method, credentials, region, service or headers");
        return -1;
    }
    if (sigv4_amz_date(p->when, out->amz_date) != 0) {
        seterr(err, errlen, "sigv4: signing time out of range");
        return -1;
    }
    const char *token = (cred->session_token && *cred->session_token) ? cred->session_token : NULL;
    char payload_hash[65];
    if (sigv4_sha256_hex(rq->body, rq->body_len, payload_hash) != 0) {
        seterr(err, errlen, "sigv4: SHA-256 failed");
        return -1;
    }
    if (token) {
        out->storage_ = strdup(token);
        if (!out->storage_) {
            seterr(err, errlen, "sigv4: out of memory");
            return -1;
        }
    }

    /* Collect the headers to sign. */
    size_t nh = rq->nheaders + 4, cnt = 0;
    chdr *hs = calloc(nh, sizeof *hs);
    sbuf cr = {0}, sh = {0}, sts = {0}, auth = {0};
    int rc = -1;
    unsigned char k1[32], k2[32], k3[32], ksig[32], sig[32];
    char date8[9];
    memcpy(date8, out->amz_date, 8);
    date8[8] = '\0';
    if (!hs) {
        seterr(err, errlen, "sigv4: out of memory");
        goto done;
    }
#define ADD_HDR(n_, v_)                                                  \
    do {                                                                 \
        size_t at_ = cnt++;                                              \
        if (chdr_set(&hs[at_], (n_), (v_), at_, err, errlen) != 0)       \
            goto done;                                                   \
    } while (0)
    if (rq->host)
        ADD_HDR("host", rq->host);
    for (size_t i = 0; i < rq->nheaders; i++) {
        const sigv4_header *h = &rq->headers[i];
        if (!h->name || !h->value) {
            seterr(err, errlen, "sigv4: header %zu has no name or value", i);
            goto done;
        }
        if (!strcasecmp(h->name, "authorization") || !strcasecmp(h->name, "x-amz-date") ||
            (rq->host && !strcasecmp(h->name, "host"))) {
            seterr(err, errlen, "sigv4: header %s is set by the signer", h->name);
            goto done;
        }
        ADD_HDR(h->name, h->value);
    }
    ADD_HDR("x-amz-date", out->amz_date);
    if (p->content_sha256_header)
        ADD_HDR("x-amz-content-sha256", payload_hash);
    if (token && !p->omit_session_token)
        ADD_HDR("x-amz-security-token", token);
#undef ADD_HDR
    qsort(hs, cnt, sizeof *hs, chdr_cmp);

    /* Canonical request. */
    sb_add(&cr, rq->method);
    sb_addc(&cr, '\n');
    canonical_path(&cr, rq->path, p->normalize_path);
    sb_addc(&cr, '\n');
    if (canonical_query(&cr, rq->query) != 0) {
        seterr(err, errlen, "sigv4: out of memory");
        goto done;
    }
    sb_addc(&cr, '\n');
    for (size_t i = 0; i < cnt; i++) {
        if (i > 0 && !strcmp(hs[i].name, hs[i - 1].name)) {
            sb_addc(&cr, ',');
            sb_add(&cr, hs[i].value);
            continue;
        }
        if (i > 0)
            sb_addc(&cr, '\n');
        sb_add(&cr, hs[i].name);
        sb_addc(&cr, ':');
        sb_add(&cr, hs[i].value);
        if (sh.len)
            sb_addc(&sh, ';');
        sb_add(&sh, hs[i].name);
    }
    sb_add(&cr, "\n\n");
    sb_add(&cr, sh.p ? sh.p : "");
    sb_addc(&cr, '\n');
    sb_add(&cr, payload_hash);
    if (cr.failed || sh.failed) {
        seterr(err, errlen, "sigv4: out of memory");
        goto done;
    }

    /* String to sign. */
    char crhash[65];
    if (sigv4_sha256_hex(cr.p, cr.len, crhash) != 0) {
        seterr(err, errlen, "sigv4: SHA-256 failed");
        goto done;
    }
    sb_add(&sts, "AWS4-HMAC-SHA256\n");
    sb_add(&sts, out->amz_date);
    sb_addc(&sts, '\n');
    sb_add(&sts, date8);
    sb_addc(&sts, '/');
    sb_add(&sts, p->region);
    sb_addc(&sts, '/');
    sb_add(&sts, p->service);
    sb_add(&sts, "/aws4_request\n");
    sb_add(&sts, crhash);
    if (sts.failed) {
        seterr(err, errlen, "sigv4: out of memory");
        goto done;
    }

    /* Signing key and signature. */
    {
        size_t sl = strlen(cred->secret_access_key);
        char *k0 = malloc(sl + 5);
        if (!k0) {
            seterr(err, errlen, "sigv4: out of memory");
            goto done;
        }
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, cred->secret_access_key, sl + 1);
        int hr = hmac256(k0, sl + 4, date8, 8, k1);
        OPENSSL_cleanse(k0, sl + 4);
        free(k0);
        if (hr != 0 || hmac256(k1, 32, p->region, strlen(p->region), k2) != 0 ||
            hmac256(k2, 32, p->service, strlen(p->service), k3) != 0 ||
            hmac256(k3, 32, "aws4_request", 12, ksig) != 0 ||
            hmac256(ksig, 32, sts.p, sts.len, sig) != 0) {
            seterr(err, errlen, "sigv4: HMAC-SHA256 failed");
            goto done;
        }
        to_hex(sig, 32, out->signature);
    }

    /* Authorization and the headers to add. */
    sb_add(&auth, "AWS4-HMAC-SHA256 Credential=");
    sb_add(&auth, cred->access_key_id);
    sb_addc(&auth, '/');
    sb_add(&auth, date8);
    sb_addc(&auth, '/');
    sb_add(&auth, p->region);
    sb_addc(&auth, '/');
    sb_add(&auth, p->service);
    sb_add(&auth, "/aws4_request, SignedHeaders=");
    sb_add(&auth, sh.p ? sh.p : "");
    sb_add(&auth, ", Signature=");
    sb_add(&auth, out->signature);
    out->authorization = sb_take(&auth);
    out->canonical_request = sb_take(&cr);
    out->string_to_sign = sb_take(&sts);
    if (!out->authorization || !out->canonical_request || !out->string_to_sign) {
        seterr(err, errlen, "sigv4: out of memory");
        goto done;
    }
    out->added[out->nadded++] = (sigv4_header){"X-Amz-Date", out->amz_date};
    if (p->content_sha256_header) {
        memcpy(out->content_sha256, payload_hash, sizeof payload_hash);
        out->added[out->nadded++] = (sigv4_header){"x-amz-content-sha256", out->content_sha256};
    }
    if (token)
        out->added[out->nadded++] = (sigv4_header){"X-Amz-Security-Token", out->storage_};
    out->added[out->nadded++] = (sigv4_header){"Authorization", out->authorization};
    rc = 0;

done:
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    OPENSSL_cleanse(ksig, sizeof ksig);
    if (hs) {
        for (size_t i = 0; i < cnt; i++) {
            free(hs[i].name);
            free(hs[i].value);
        }
        free(hs);
    }
    sb_free(&cr);
    sb_free(&sh);
    sb_free(&sts);
    sb_free(&auth);
    if (rc != 0)
        sigv4_result_free(out);
    return rc;
}
