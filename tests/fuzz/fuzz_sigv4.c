/* fuzz_sigv4.c -- fuzz target for sigv4/ (AWS Signature Version 4).
 *
 * Input: an HTTP request in the text form of AWS's test suite (request.txt):
 *   METHOD SP PATH[?QUERY] SP HTTP/1.1 LF
 *   Name:value LF ...  (a line starting with SP/TAB continues the previous value)
 *   LF body
 * Lines may end in CRLF. Anything that does not fit is still signed as well as it goes
 * (a line without ':' is a header with an empty value; a first line without spaces is
 * the method). The request is signed with three parameter sets (normalized path with a
 * session token; raw path with x-amz-content-sha256; token left out of the signature).
 * Checks: no crash or leak; the result is freeable after failure; signing the same
 * request twice gives identical canonical request, string to sign, signature and
 * headers; a signature is 64 lowercase hex chars that the Authorization value carries. */
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "sigv4.h"

#define SV_MAX_HEADERS 64

typedef struct {
    char *method, *path, *query;
    sigv4_header hdrs[SV_MAX_HEADERS];
    size_t nhdrs;
    const char *body;
    size_t body_len;
    int has_host;
} sv_request;

/* Splits text (modified in place, NUL-terminated, len bytes) into r. */
static void sv_parse(char *text, size_t len, sv_request *r)
{
    memset(r, 0, sizeof *r);
    char *end = text + len;
    char *nl = memchr(text, '\n', len);
    char *line_end = nl ? nl : end;
    *line_end = '\0';
    if (line_end > text && line_end[-1] == '\r')
        line_end[-1] = '\0';
    r->method = text;
    char *sp1 = strchr(text, ' ');
    if (sp1) {
        *sp1 = '\0';
        r->path = sp1 + 1;
        char *sp2 = strrchr(r->path, ' ');
        if (sp2)
            *sp2 = '\0';
        char *q = strchr(r->path, '?');
        if (q) {
            *q = '\0';
            r->query = q + 1;
        }
    }
    char *line = nl ? nl + 1 : end;
    while (line < end) {
        char *e = memchr(line, '\n', (size_t)(end - line));
        char *next = e ? e + 1 : end;
        if (e)
            *e = '\0';
        if (e && e > line && e[-1] == '\r')
            e[-1] = '\0';
        if (*line == '\0') { /* blank line: the body follows */
            r->body = next;
            r->body_len = (size_t)(end - next);
            break;
        }
        if ((*line == ' ' || *line == '\t') && r->nhdrs > 0) {
            /* continuation: re-join with the newline we overwrote (only if adjacent) */
            char *pv = (char *)r->hdrs[r->nhdrs - 1].value;
            size_t pl = strlen(pv);
            if (pv + pl + 1 == line)
                pv[pl] = '\n';
        } else if (r->nhdrs < SV_MAX_HEADERS) {
            char *colon = strchr(line, ':');
            r->hdrs[r->nhdrs].name = line;
            r->hdrs[r->nhdrs].value = colon ? colon + 1 : "";
            if (colon)
                *colon = '\0';
            if (strcasecmp(line, "host") == 0)
                r->has_host = 1;
            r->nhdrs++;
        }
        line = next;
    }
}

static void sv_check_same(const sigv4_result *a, const sigv4_result *b)
{
    if (strcmp(a->canonical_request, b->canonical_request) != 0 ||
        strcmp(a->string_to_sign, b->string_to_sign) != 0 ||
        strcmp(a->signature, b->signature) != 0 || strcmp(a->amz_date, b->amz_date) != 0 ||
        strcmp(a->authorization, b->authorization) != 0 || a->nadded != b->nadded)
        fuzz_fail("signing the same request twice differs");
    for (size_t i = 0; i < a->nadded; i++)
        if (strcmp(a->added[i].name, b->added[i].name) != 0 ||
            strcmp(a->added[i].value, b->added[i].value) != 0)
            fuzz_fail("added header %zu differs between two signings", i);
}

static void sv_check_result(const sigv4_result *r)
{
    if (!r->canonical_request || !r->string_to_sign || !r->authorization)
        fuzz_fail("a successful signing left an output NULL");
    if (strlen(r->signature) != 64 || strspn(r->signature, "0123456789abcdef") != 64)
        fuzz_fail("signature \"%s\" is not 64 lowercase hex chars", r->signature);
    if (!strstr(r->authorization, r->signature))
        fuzz_fail("Authorization does not carry the signature");
    if (r->nadded < 2 || r->nadded > SIGV4_MAX_ADDED)
        fuzz_fail("%zu added headers", r->nadded);
}

int fuzz_sigv4(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    sv_request rq;
    sv_parse(text, size, &rq);
    sigv4_request req = {
        .method = rq.method,
        .host = rq.has_host ? NULL : "example.amazonaws.com",
        .path = rq.path,
        .query = rq.query,
        .headers = rq.hdrs,
        .nheaders = rq.nhdrs,
        .body = rq.body,
        .body_len = rq.body_len,
    };
    sigv4_credentials cred = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                              "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQW"};
    sigv4_params p = {.region = "us-east-1", .service = "service", .when = 1440938160,
                      .normalize_path = 1, .content_sha256_header = 0, .omit_session_token = 0};
    char err[256];
    sigv4_result r1, r2;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    int rc1 = sigv4_sign(&req, &cred, &p, &r1, err, sizeof err);
    int rc2 = sigv4_sign(&req, &cred, &p, &r2, err, sizeof err);
    if (rc1 != rc2)
        fuzz_fail("signing the same request twice returned %d then %d", rc1, rc2);
    if (rc1 == 0) {
        sv_check_result(&r1);
        sv_check_same(&r1, &r2);
    }
    sigv4_result_free(&r1);
    sigv4_result_free(&r2);
    sigv4_result_free(&r2); /* documented safe twice */

    p.normalize_path = 0;
    p.content_sha256_header = 1;
    cred.session_token = NULL;
    if (sigv4_sign(&req, &cred, &p, &r1, err, sizeof err) == 0)
        sv_check_result(&r1);
    sigv4_result_free(&r1);

    p.normalize_path = 1;
    p.omit_session_token = 1;
    cred.session_token = "tok";
    p.when = (time_t)253402300799; /* 9999-12-31T23:59:59Z: the widest amz date */
    if (sigv4_sign(&req, &cred, &p, &r1, err, sizeof err) == 0)
        sv_check_result(&r1);
    sigv4_result_free(&r1);
    free(text);
    return 0;
}

TERN_FUZZ_ENTRY(fuzz_sigv4)
