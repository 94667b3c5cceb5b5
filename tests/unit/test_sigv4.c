/* test_sigv4.c -- sigv4/ against AWS's SigV4 test suite ($TERN_SHARED/testdata/sigv4).
 *
 * For every case folder: parse context.json and request.txt, sign, and compare the
 * canonical request, string to sign and signature byte for byte with the header-*.txt
 * files. Fails if the suite folder is missing or holds no case. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sigv4.h"

static char suite_dir[4096];

static char *slurp(const char *dir, const char *name, size_t *len_out)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1024 + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static int is_case_dir(const char *dir, const char *name)
{
    if (name[0] == '.')
        return 0;
    char path[8192];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/request.txt", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Parsed request.txt; every pointer points into buf. */
typedef struct {
    char *buf;
    char *method, *path, *query;
    sigv4_header hdrs[32];
    size_t nhdrs;
    char *body;
    size_t body_len;
} parsed_req;

static void parse_request(char *text, size_t len, parsed_req *r)
{
    memset(r, 0, sizeof *r);
    r->buf = text;
    char *end = text + len;
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    *nl = '\0';
    if (nl > text && nl[-1] == '\r')
        nl[-1] = '\0';
    /* "METHOD <path, may contain spaces> HTTP/1.1" */
    char *sp1 = strchr(text, ' ');
    char *sp2 = strrchr(text, ' ');
    assert_non_null(sp1);
    assert_true(sp2 > sp1);
    *sp1 = '\0';
    *sp2 = '\0';
    r->method = text;
    r->path = sp1 + 1;
    char *q = strchr(r->path, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    char *line = nl + 1;
    while (line < end) {
        char *e = memchr(line, '\n', (size_t)(end - line));
        char *next = e ? e + 1 : end;
        if (e)
            *e = '\0';
        if (e && e > line && e[-1] == '\r')
            e[-1] = '\0';
        if (*line == '\0') {   /* blank line: body follows */
            r->body = next;
            r->body_len = (size_t)(end - next);
            break;
        }
        if ((*line == ' ' || *line == '\t') && r->nhdrs > 0) {
            /* folded continuation: re-join to the previous value with the newline */
            sigv4_header *prev = &r->hdrs[r->nhdrs - 1];
            char *pv = (char *)prev->value;
            size_t pl = strlen(pv);
            pv[pl] = '\n';   /* the NUL we wrote over the previous '\n' */
            (void)pl;
        } else {
            char *colon = strchr(line, ':');
            assert_non_null(colon);
            *colon = '\0';
            assert_true(r->nhdrs < 32);
            r->hdrs[r->nhdrs].name = line;
            r->hdrs[r->nhdrs].value = colon + 1;
            r->nhdrs++;
        }
        line = next;
    }
}

static void check_case(const char *name)
{
    char dir[8192];
    snprintf(dir, sizeof dir, "%s/%s", suite_dir, name);
    size_t rlen = 0;
    char *ctx_text = slurp(dir, "context.json", NULL);
    char *req_text = slurp(dir, "request.txt", &rlen);
    char *want_cr = slurp(dir, "header-canonical-request.txt", NULL);
    char *want_sts = slurp(dir, "header-string-to-sign.txt", NULL);
    char *want_sig = slurp(dir, "header-signature.txt", NULL);
    if (!ctx_text || !req_text || !want_cr || !want_sts || !want_sig)
        fail_msg("case %s: a file is missing", name);

    cJSON *ctx = cJSON_Parse(ctx_text);
    assert_non_null(ctx);
    cJSON *cr = cJSON_GetObjectItemCaseSensitive(ctx, "credentials");
    sigv4_credentials cred = {
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr, "access_key_id")),
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr, "secret_access_key")),
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr, "token")),
    };
    const char *ts = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ctx, "timestamp"));
    assert_non_null(ts);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec), 6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    sigv4_params p = {
        .region = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ctx, "region")),
        .service = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ctx, "service")),
        .when = timegm(&tm),
        .normalize_path = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ctx, "normalize")),
        .content_sha256_header = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ctx, "sign_body")),
        .omit_session_token =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ctx, "omit_session_token")),
    };

    parsed_req pr;
    parse_request(req_text, rlen, &pr);
    sigv4_request rq = {
        .method = pr.method,
        .host = NULL,
        .path = pr.path,
        .query = pr.query,
        .headers = pr.hdrs,
        .nheaders = pr.nhdrs,
        .body = pr.body,
        .body_len = pr.body_len,
    };
    sigv4_result res;
    char err[256] = "";
    int rc = sigv4_sign(&rq, &cred, &p, &res, err, sizeof err);
    if (rc != 0)
        fail_msg("case %s: sigv4_sign failed: %s", name, err);
    if (strcmp(res.canonical_request, want_cr) != 0)
        fail_msg("case %s: canonical request differs\n--- got\n%s\n--- want\n%s", name,
                 res.canonical_request, want_cr);
    if (strcmp(res.string_to_sign, want_sts) != 0)
        fail_msg("case %s: string to sign differs\n--- got\n%s\n--- want\n%s", name,
                 res.string_to_sign, want_sts);
    if (strcmp(res.signature, want_sig) != 0)
        fail_msg("case %s: signature differs: got %s want %s", name, res.signature, want_sig);

    /* The Authorization header in header-signed-request.txt carries the same signature
     * and signed-header list; check our header value is in it verbatim. */
    char *signed_req = slurp(dir, "header-signed-request.txt", NULL);
    if (signed_req) {
        char line[4096];
        snprintf(line, sizeof line, "Authorization:%s\n", res.authorization);
        if (!strstr(signed_req, line))
            fail_msg("case %s: Authorization header %s not in header-signed-request.txt", name,
                     res.authorization);
        if (cred.session_token && *cred.session_token) {
            snprintf(line, sizeof line, "X-Amz-Security-Token:%s\n", cred.session_token);
            assert_non_null(strstr(signed_req, line));
        }
        free(signed_req);
    }
    /* Added headers: date first, authorization last, token present iff given. */
    assert_true(res.nadded >= 2);
    assert_string_equal(res.added[0].name, "X-Amz-Date");
    assert_string_equal(res.added[res.nadded - 1].name, "Authorization");
    int has_token = 0;
    for (size_t i = 0; i < res.nadded; i++)
        if (!strcmp(res.added[i].name, "X-Amz-Security-Token"))
            has_token = 1;
    assert_int_equal(has_token, cred.session_token && *cred.session_token);

    sigv4_result_free(&res);
    sigv4_result_free(&res);   /* idempotent */
    cJSON_Delete(ctx);
    free(ctx_text);
    free(req_text);
    free(want_cr);
    free(want_sts);
    free(want_sig);
}

static void test_aws_suite(void **state)
{
    (void)state;
    const char *shared = getenv("TERN_SHARED");
    if (!shared || !*shared)
        shared = "/work/main/../shared";
    snprintf(suite_dir, sizeof suite_dir, "%s/testdata/sigv4", shared);
    DIR *d = opendir(suite_dir);
    if (!d)
        fail_msg("SigV4 test suite folder %s is missing", suite_dir);
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_case_dir(suite_dir, de->d_name))
            continue;
        assert_true(n < 512);
        names[n] = strdup(de->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    if (n == 0)
        fail_msg("SigV4 test suite folder %s holds no case", suite_dir);
    qsort(names, n, sizeof names[0], cmpstr);
    for (size_t i = 0; i < n; i++) {
        check_case(names[i]);
        free(names[i]);
    }
    print_message("sigv4: %zu AWS cases passed\n", n);
}

/* The store's convenience path: host given separately, DynamoDB-style headers. */
static void test_host_and_token_headers(void **state)
{
    (void)state;
    sigv4_header h[] = {{"Content-Type", "application/x-amz-json-1.0"},
                        {"X-Amz-Target", "DynamoDB_20120810.ListTables"}};
    sigv4_request rq = {.method = "POST", .host = "127.0.0.1:8000", .path = "/",
                        .headers = h, .nheaders = 2, .body = "{}", .body_len = 2};
    sigv4_credentials c = {"AKID", "SECRET", "TOKEN"};
    sigv4_params p = {.region = "us-east-1", .service = "dynamodb", .when = 1440938160,
                      .normalize_path = 1};
    sigv4_result r;
    char err[128];
    assert_int_equal(sigv4_sign(&rq, &c, &p, &r, err, sizeof err), 0);
    assert_non_null(strstr(r.canonical_request,
                           "content-type:application/x-amz-json-1.0\nhost:127.0.0.1:8000\n"
                           "x-amz-date:20150830T123600Z\nx-amz-security-token:TOKEN\n"
                           "x-amz-target:DynamoDB_20120810.ListTables\n\n"
                           "content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n"));
    assert_int_equal(r.nadded, 3);
    assert_string_equal(r.added[1].value, "TOKEN");
    assert_non_null(strstr(r.authorization, "Credential=AKID/20150830/us-east-1/dynamodb/aws4_request"));
    sigv4_result_free(&r);

    /* A header the signer owns is refused; a control character is refused. */
    sigv4_header bad[] = {{"X-Amz-Date", "x"}};
    rq.headers = bad;
    rq.nheaders = 1;
    assert_int_equal(sigv4_sign(&rq, &c, &p, &r, err, sizeof err), -1);
    sigv4_result_free(&r);
    sigv4_header bad2[] = {{"X-Foo", "a\001b"}};
    rq.headers = bad2;
    assert_int_equal(sigv4_sign(&rq, &c, &p, &r, err, sizeof err), -1);
    sigv4_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_suite),
        cmocka_unit_test(test_host_and_token_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
