/* store.c -- DynamoDB / DynamoDB Streams JSON API client over libcurl.
 *
 * Owns: per handle, one curl easy handle (one persistent keep-alive connection with
 * TCP_NODELAY to the endpoint; kept in a store_multi's cache while the handle's calls go
 * through it), copies of the endpoint and credentials, the response buffer, a sticky error
 * string (the last call's AWS error type and message) and the stats counters. The
 * process-wide libcurl init is done once (pthread_once) and never undone; OpenSSL is told
 * before main not to clean up at exit (store_openssl_init). A store_multi owns a curl
 * multi handle: store_call_many attaches several handles' easy handles to it for each
 * round of attempts, side by side, and takes them off again after the round (their
 * connections stay in the multi handle's cache, up to 2 * STORE_MULTI_MAX, for the next
 * call); retries go in rounds too, after the longest backoff among them.
 *
 * Invariants: every request is signed fresh (SigV4, service "dynamodb", time of the
 * attempt) so a retry after backoff never carries a stale X-Amz-Date; the Host header we
 * send is exactly the one we sign; errstr is "" after STORE_OK; every public function
 * leaves its outputs NULL on failure except where store.h says otherwise
 * (condition/transaction error bodies, batch unprocessed items).
 *
 * Threading: a handle belongs to one thread at a time, and so does a store_multi with the
 * handles it drives; nothing here is shared between handles except libcurl's global
 * state. store_scan_all() makes one handle per segment thread; its only shared state is an
 * atomic stop flag and per-segment result slots. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "log.h"
#include "sigv4.h"

#define STORE_MAX_RESPONSE (64u * 1024u * 1024u)   /* bytes; larger responses fail */
#define BATCH_CHUNK 25                              /* BatchWriteItem's per-call limit */

struct store {
    char *endpoint_url;   /* normalized URL given to curl */
    char *host_header;    /* host[:port], sent and signed */
    char *path;           /* request path, "/" for DynamoDB */
    char *region, *access_key_id, *secret_access_key, *session_token;
    int timeout_ms, max_retries, backoff_base_ms, backoff_cap_ms;
    store_tls verify_tls;
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
    char *resp;           /* response body of the current attempt */
    size_t resp_len, resp_cap;
    int resp_overflow;
    char errstr[1024];
    store_stats st;
    uint64_t rng;
    atomic_llong *beacon; /* see store_set_beacon; NULL: none */
};

static const double lat_bounds[STORE_LAT_BUCKETS] = STORE_LAT_BOUNDS_MS;

/* ---- small helpers ---- */

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

static void set_errstr(store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_errstr(store *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errstr, sizeof s->errstr, fmt, ap);
    va_end(ap);
}

static char *dup_or_null(const char *v, int *ok)
{
    if (!v)
        return NULL;
    char *d = strdup(v);
    if (!d)
        *ok = 0;
    return d;
}

static uint64_t rng_next(store *s)
{
    /* splitmix64 */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)] ms. */
static long backoff_ms(store *s, int attempt)
{
    long ceil_ms = s->backoff_base_ms;
    for (int i = 0; i < attempt && ceil_ms < s->backoff_cap_ms; i++)
        ceil_ms *= 2;
    if (ceil_ms > s->backoff_cap_ms)
        ceil_ms = s->backoff_cap_ms;
    return (long)(rng_next(s) % (uint64_t)(ceil_ms + 1));
}

/* ---- status names and classification ---- */

const char *store_status_name(store_status st)
{
    switch (st) {
    case STORE_OK: return "STORE_OK";
    case STORE_ERR_CONDITION: return "STORE_ERR_CONDITION";
    case STORE_ERR_THROTTLED: return "STORE_ERR_THROTTLED";
    case STORE_ERR_VALIDATION: return "STORE_ERR_VALIDATION";
    case STORE_ERR_NOT_FOUND: return "STORE_ERR_NOT_FOUND";
    case STORE_ERR_EXPIRED_ITERATOR: return "STORE_ERR_EXPIRED_ITERATOR";
    case STORE_ERR_TRIMMED: return "STORE_ERR_TRIMMED";
    case STORE_ERR_TRANSACTION: return "STORE_ERR_TRANSACTION";
    case STORE_ERR_AUTH: return "STORE_ERR_AUTH";
    case STORE_ERR_IN_USE: return "STORE_ERR_IN_USE";
    case STORE_ERR_TRANSIENT: return "STORE_ERR_TRANSIENT";
    case STORE_ERR_OTHER: return "STORE_ERR_OTHER";
    case STORE_STATUS_COUNT: break;
    }
    return "STORE_?";
}

static const struct {
    const char *type;
    store_status st;
} error_types[] = {
    {"ConditionalCheckFailedException", STORE_ERR_CONDITION},
    {"ProvisionedThroughputExceededException", STORE_ERR_THROTTLED},
    {"ThrottlingException", STORE_ERR_THROTTLED},
    {"Throttling", STORE_ERR_THROTTLED},
    {"RequestLimitExceeded", STORE_ERR_THROTTLED},
    {"LimitExceededException", STORE_ERR_THROTTLED},
    {"TooManyRequestsException", STORE_ERR_THROTTLED},
    {"ValidationException", STORE_ERR_VALIDATION},
    {"SerializationException", STORE_ERR_VALIDATION},
    {"InvalidParameterValueException", STORE_ERR_VALIDATION},
    {"InvalidParameterCombination", STORE_ERR_VALIDATION},
    {"MissingParameter", STORE_ERR_VALIDATION},
    {"MissingAction", STORE_ERR_VALIDATION},
    {"InvalidAction", STORE_ERR_VALIDATION},
    {"UnknownOperationException", STORE_ERR_VALIDATION},
    {"IdempotentParameterMismatchException", STORE_ERR_VALIDATION},
    {"ResourceNotFoundException", STORE_ERR_NOT_FOUND},
    {"TableNotFoundException", STORE_ERR_NOT_FOUND},
    {"ExpiredIteratorException", STORE_ERR_EXPIRED_ITERATOR},
    {"TrimmedDataAccessException", STORE_ERR_TRIMMED},
    {"TransactionCanceledException", STORE_ERR_TRANSACTION},
    {"UnrecognizedClientException", STORE_ERR_AUTH},
    {"InvalidSignatureException", STORE_ERR_AUTH},
    {"AccessDeniedException", STORE_ERR_AUTH},
    {"MissingAuthenticationTokenException", STORE_ERR_AUTH},
    {"MissingAuthenticationToken", STORE_ERR_AUTH},
    {"IncompleteSignatureException", STORE_ERR_AUTH},
    {"IncompleteSignature", STORE_ERR_AUTH},
    {"ExpiredTokenException", STORE_ERR_AUTH},
    {"InvalidClientTokenId", STORE_ERR_AUTH},
    {"SignatureDoesNotMatch", STORE_ERR_AUTH},
    {"ResourceInUseException", STORE_ERR_IN_USE},
    {"InternalServerError", STORE_ERR_TRANSIENT},
    {"InternalServerErrorException", STORE_ERR_TRANSIENT},
    {"InternalFailure", STORE_ERR_TRANSIENT},
    {"ServiceUnavailable", STORE_ERR_TRANSIENT},
    {"ServiceUnavailableException", STORE_ERR_TRANSIENT},
    {"RequestTimeout", STORE_ERR_TRANSIENT},
    {"RequestTimeoutException", STORE_ERR_TRANSIENT},
    /* A single-item write that ran into an ongoing transaction: retrying is right. */
    {"TransactionConflictException", STORE_ERR_TRANSIENT},
    {"TransactionInProgressException", STORE_ERR_TRANSIENT},
};

store_status store_classify(long http_status, const char *aws_error_type)
{
    if (aws_error_type && *aws_error_type) {
        const char *t = strrchr(aws_error_type, '#');
        t = t ? t + 1 : aws_error_type;
        size_t tl = strcspn(t, ":");   /* x-amzn-ErrorType may carry ":<url>" */
        for (size_t i = 0; i < sizeof error_types / sizeof error_types[0]; i++)
            if (strlen(error_types[i].type) == tl && !strncmp(error_types[i].type, t, tl))
                return error_types[i].st;
    }
    if (http_status >= 200 && http_status < 300 && !(aws_error_type && *aws_error_type))
        return STORE_OK;
    if (http_status == 0 || http_status >= 500)
        return STORE_ERR_TRANSIENT;
    if (http_status == 429)
        return STORE_ERR_THROTTLED;
    if (http_status == 401 || http_status == 403)
        return STORE_ERR_AUTH;
    if (http_status == 400 || http_status == 413)
        return STORE_ERR_VALIDATION;
    return STORE_ERR_OTHER;
}

/* ---- handle ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;
static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* OpenSSL's first init registers an atexit handler that frees its global state
 * (OPENSSL_cleanup). A thread still in an OpenSSL call when the process exits (the
 * replicator's detached key-schema loader, replicator/pool.c: SigV4 signing, TLS) would
 * then run on freed state and could crash the exit. So the first init, before main,
 * says not to: that state goes with the process. Its result is not checked here: an
 * OpenSSL that cannot init fails curl_global_init, which store_new reports. */
__attribute__((constructor)) static void store_openssl_init(void) {
    (void)OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    store *s = ud;
    size_t n = size * nmemb;
    if (s->resp_len + n + 1 > STORE_MAX_RESPONSE) {
        s->resp_overflow = 1;
        return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (s->resp_len + n + 1 > s->resp_cap) {
        size_t cap = s->resp_cap ? s->resp_cap : 16384;
        while (cap < s->resp_len + n + 1)
            cap *= 2;
        char *p = realloc(s->resp, cap);
        if (!p)
            return 0;
        s->resp = p;
        s->resp_cap = cap;
    }
    memcpy(s->resp + s->resp_len, data, n);
    s->resp_len += n;
    s->resp[s->resp_len] = '\0';
    return n;
}

/* Splits the endpoint into the URL for curl, the Host header and the path. */
static int parse_endpoint(store *s, const char *endpoint, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *url = NULL, *query = NULL;
    int rc = -1;
    if (!u) {
        seterr(err, errlen, "store: out of memory");
        return -1;
    }
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        seterr(err, errlen, "store: endpoint \"%s\" is not a URL (want http://host:port or https://host)",
               endpoint);
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        seterr(err, errlen, "store: endpoint \"%s\": scheme must be http or https", endpoint);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query && *query) {
        seterr(err, errlen, "store: endpoint \"%s\" must not have a query", endpoint);
        goto out;
    }
    CURLUcode pc = curl_url_get(u, CURLUPART_PORT, &port, 0);   /* only if given */
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        seterr(err, errlen, "store: endpoint \"%s\" is not a URL", endpoint);
        goto out;
    }
    size_t hl = strlen(host) + (pc == CURLUE_OK && port ? strlen(port) + 1 : 0) + 1;
    s->host_header = malloc(hl);
    s->path = strdup(path && *path ? path : "/");
    s->endpoint_url = strdup(url);
    if (!s->host_header || !s->path || !s->endpoint_url) {
        seterr(err, errlen, "store: out of memory");
        goto out;
    }
    if (pc == CURLUE_OK && port)
        snprintf(s->host_header, hl, "%s:%s", host, port);
    else
        snprintf(s->host_header, hl, "%s", host);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(url);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

static const char *store_env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

void store_opts_client(store_opts *o, const char *endpoint) {
    memset(o, 0, sizeof *o);
    o->endpoint = endpoint;
    o->region = "us-east-1";
    o->access_key_id = store_env_or("AWS_ACCESS_KEY_ID", "local");
    o->secret_access_key = store_env_or("AWS_SECRET_ACCESS_KEY", "local");
}

store *store_new(const store_opts *o, char *err, size_t errlen)
{
    if (!o || !o->endpoint || !*o->endpoint || !o->region || !*o->region ||
        !o->access_key_id || !*o->access_key_id || !o->secret_access_key ||
        !*o->secret_access_key) {
        seterr(err, errlen, "store: endpoint, region, access_key_id and secret_access_key are required");
        return NULL;
    }
    if (o->timeout_ms < 0 || o->backoff_base_ms < 0 || o->backoff_cap_ms < 0 ||
        o->max_retries < STORE_NO_RETRIES ||
        (o->verify_tls != STORE_TLS_VERIFY && o->verify_tls != STORE_TLS_NO_VERIFY)) {
        seterr(err, errlen, "store: timeout_ms, backoff_base_ms, backoff_cap_ms must be >= 0, "
                            "max_retries >= -1, verify_tls VERIFY or NO_VERIFY");
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        seterr(err, errlen, "store: curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        seterr(err, errlen, "store: out of memory");
        return NULL;
    }
    int ok = 1;
    s->region = dup_or_null(o->region, &ok);
    s->access_key_id = dup_or_null(o->access_key_id, &ok);
    s->secret_access_key = dup_or_null(o->secret_access_key, &ok);
    if (o->session_token && *o->session_token)
        s->session_token = dup_or_null(o->session_token, &ok);
    if (!ok) {
        seterr(err, errlen, "store: out of memory");
        store_free(s);
        return NULL;
    }
    s->timeout_ms = o->timeout_ms ? o->timeout_ms : STORE_DEFAULT_TIMEOUT_MS;
    s->max_retries = o->max_retries == STORE_NO_RETRIES ? 0
                     : o->max_retries ? o->max_retries : STORE_DEFAULT_MAX_RETRIES;
    s->backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : STORE_DEFAULT_BACKOFF_BASE_MS;
    s->backoff_cap_ms = o->backoff_cap_ms ? o->backoff_cap_ms : STORE_DEFAULT_BACKOFF_CAP_MS;
    if (s->backoff_cap_ms < s->backoff_base_ms) {
        seterr(err, errlen, "store: backoff_cap_ms (%d) is below backoff_base_ms (%d)",
               s->backoff_cap_ms, s->backoff_base_ms);
        store_free(s);
        return NULL;
    }
    s->verify_tls = o->verify_tls;
    if (parse_endpoint(s, o->endpoint, err, errlen) != 0) {
        store_free(s);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)s ^
             ((uint64_t)getpid() << 40);

    s->curl = curl_easy_init();
    if (!s->curl) {
        seterr(err, errlen, "store: curl_easy_init failed");
        store_free(s);
        return NULL;
    }
    long connect_ms = s->timeout_ms < 5000 ? s->timeout_ms : 5000;
    CURL *c = s->curl;
    if (curl_easy_setopt(c, CURLOPT_URL, s->endpoint_url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, s->verify_tls == STORE_TLS_VERIFY ? 1L : 0L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, s->verify_tls == STORE_TLS_VERIFY ? 2L : 0L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_USERAGENT, "tern/" TERN_VERSION) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, s) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->curl_err) != CURLE_OK) {
        seterr(err, errlen, "store: curl_easy_setopt failed");
        store_free(s);
        return NULL;
    }
    return s;
}

void store_free(store *s)
{
    if (!s)
        return;
    if (s->curl)
        curl_easy_cleanup(s->curl);
    free(s->endpoint_url);
    free(s->host_header);
    free(s->path);
    free(s->region);
    free(s->access_key_id);
    if (s->secret_access_key) {
        memset(s->secret_access_key, 0, strlen(s->secret_access_key));
        free(s->secret_access_key);
    }
    free(s->session_token);
    free(s->resp);
    free(s);
}

const char *store_errstr(const store *s) { return s ? s->errstr : "store: no handle"; }

void store_get_stats(const store *s, store_stats *out)
{
    if (!out)
        return;
    if (!s) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = s->st;
}

void store_stats_add(store_stats *acc, const store_stats *x)
{
    acc->calls += x->calls;
    acc->requests += x->requests;
    acc->retries += x->retries;
    acc->connects += x->connects;
    for (int i = 0; i < STORE_STATUS_COUNT; i++)
        acc->status[i] += x->status[i];
    acc->latency_sum_ms += x->latency_sum_ms;
    acc->latency_count += x->latency_count;
    for (int i = 0; i < STORE_LAT_BUCKETS; i++)
        acc->latency_bucket[i] += x->latency_bucket[i];
}

/* ---- the call ---- */

static int is_streams_op(const char *op)
{
    return !strcmp(op, "ListStreams") || !strcmp(op, "DescribeStream") ||
           !strcmp(op, "GetShardIterator") || !strcmp(op, "GetRecords");
}

static void record_latency(store *s, double ms)
{
    s->st.latency_sum_ms += ms;
    s->st.latency_count++;
    int b = STORE_LAT_BUCKETS - 1;
    for (int i = 0; i < STORE_LAT_BUCKETS - 1; i++) {
        if (ms <= lat_bounds[i]) {
            b = i;
            break;
        }
    }
    s->st.latency_bucket[b]++;
}

/* Appends "name: value" (or "name:" to suppress a curl default when value is "").
 * Returns 0 or -1 (allocation). */
static int add_header(struct curl_slist **hl, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (!line)
        return -1;
    snprintf(line, n, *value ? "%s: %s" : "%s:%s", name, value);
    struct curl_slist *t = curl_slist_append(*hl, line);
    free(line);
    if (!t)
        return -1;
    *hl = t;
    return 0;
}

/* The first half of one HTTP attempt: signs the request and sets it on s->curl, ready to
 * be performed (curl_easy_perform, or a multi handle). *hl receives the header list, which
 * must stay alive until attempt_end. Returns STORE_OK, or the status with errstr set (then
 * nothing is left to free). */
static store_status attempt_begin(store *s, const char *target, const char *payload, size_t plen,
                                  struct curl_slist **hl_out)
{
    *hl_out = NULL;
    if (s->beacon) atomic_store(s->beacon, (long long)now_ms());
    sigv4_header sh[] = {{"Content-Type", "application/x-amz-json-1.0"},
                         {"X-Amz-Target", target}};
    sigv4_request rq = {.method = "POST", .host = s->host_header, .path = s->path,
                        .query = NULL, .headers = sh, .nheaders = 2,
                        .body = payload, .body_len = plen};
    sigv4_credentials cred = {s->access_key_id, s->secret_access_key, s->session_token};
    sigv4_params p = {.region = s->region, .service = "dynamodb", .when = time(NULL),
                      .normalize_path = 1};
    sigv4_result sig;
    char serr[256];
    if (sigv4_sign(&rq, &cred, &p, &sig, serr, sizeof serr) != 0) {
        sigv4_result_free(&sig);
        set_errstr(s, "signing failed: %s", serr);
        return STORE_ERR_OTHER;
    }
    struct curl_slist *hl = NULL;
    int ok = add_header(&hl, "Host", s->host_header) == 0 &&
             add_header(&hl, "Content-Type", "application/x-amz-json-1.0") == 0 &&
             add_header(&hl, "X-Amz-Target", target) == 0 &&
             add_header(&hl, "Expect", "") == 0;   /* no 100-continue round trip */
    for (size_t i = 0; ok && i < sig.nadded; i++)
        ok = add_header(&hl, sig.added[i].name, sig.added[i].value) == 0;
    sigv4_result_free(&sig);
    if (!ok) {
        curl_slist_free_all(hl);
        set_errstr(s, "out of memory building headers");
        return STORE_ERR_OTHER;
    }
    s->resp_len = 0;
    s->resp_overflow = 0;
    if (s->resp)
        s->resp[0] = '\0';
    s->curl_err[0] = '\0';
    CURLcode cc;
    if ((cc = curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, hl)) != CURLE_OK ||
        (cc = curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)plen)) != CURLE_OK ||
        (cc = curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, payload)) != CURLE_OK) {
        (void)curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(hl);
        set_errstr(s, "curl_easy_setopt: %s", curl_easy_strerror(cc));
        return STORE_ERR_OTHER;
    }
    *hl_out = hl;
    return STORE_OK;
}

/* The second half: the transfer ended with cc after ms; frees hl, reads the answer.
 * Returns the status; *body is the parsed body when there is one (success or an AWS error
 * body). Sets errstr on failure. */
static store_status attempt_end(store *s, CURLcode cc, double ms, struct curl_slist *hl, cJSON **body)
{
    *body = NULL;
    record_latency(s, ms);
    s->st.requests++;
    long nconn = 0;
    if (curl_easy_getinfo(s->curl, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
        s->st.connects += (uint64_t)nconn;
    /* Drop the list pointer before freeing it; cannot fail for a NULL list. */
    (void)curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hl);
    if (cc != CURLE_OK) {
        if (s->resp_overflow) {
            set_errstr(s, "response larger than %u bytes", STORE_MAX_RESPONSE);
            return STORE_ERR_OTHER;
        }
        set_errstr(s, "curl: %s%s%s", curl_easy_strerror(cc), s->curl_err[0] ? ": " : "",
                   s->curl_err);
        return STORE_ERR_TRANSIENT;
    }
    long http = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &http);
    cJSON *j = s->resp_len ? cJSON_ParseWithLength(s->resp, s->resp_len) : NULL;
    const char *type = NULL, *msg = NULL;
    if (j && cJSON_IsObject(j)) {
        type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "__type"));
        msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
        if (!msg)
            msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Message"));
    }
    if (http >= 200 && http < 300) {
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            set_errstr(s, "HTTP %ld with a body that is not a JSON object (%zu bytes)", http,
                       s->resp_len);
            return STORE_ERR_OTHER;
        }
        *body = j;
        return STORE_OK;
    }
    store_status st = store_classify(http, type);
    if (st == STORE_OK)   /* e.g. 1xx/3xx with nothing we know: not a success */
        st = STORE_ERR_OTHER;
    const char *bare = type ? strrchr(type, '#') : NULL;
    bare = bare ? bare + 1 : type;
    if (bare)
        set_errstr(s, "%s: %s (HTTP %ld)", bare, msg ? msg : "", http);
    else
        set_errstr(s, "HTTP %ld: %.200s", http, s->resp_len ? s->resp : "(empty body)");
    *body = j;
    return st;
}

/* One HTTP attempt on s's own connection (attempt_begin, perform, attempt_end). */
static store_status attempt(store *s, const char *target, const char *payload, size_t plen,
                            cJSON **body)
{
    struct curl_slist *hl;
    *body = NULL;
    store_status st = attempt_begin(s, target, payload, plen, &hl);
    if (st != STORE_OK)
        return st;
    double t0 = now_ms();
    CURLcode cc = curl_easy_perform(s->curl);
    return attempt_end(s, cc, now_ms() - t0, hl, body);
}

/* The start of a call: counts it, checks op, and serializes request into *payload (the
 * caller frees it) with op's target in target (128 bytes). Returns STORE_OK, or the
 * call's final status (counted, errstr set). */
static store_status call_begin(store *s, const char *op, const cJSON *request, char *target,
                               char **payload)
{
    *payload = NULL;
    s->errstr[0] = '\0';
    s->st.calls++;
    if (!op || !*op || strlen(op) > 64) {
        set_errstr(s, "bad operation name");
        s->st.status[STORE_ERR_VALIDATION]++;
        return STORE_ERR_VALIDATION;
    }
    snprintf(target, 128, "%s.%s",
             is_streams_op(op) ? "DynamoDBStreams_20120810" : "DynamoDB_20120810", op);
    *payload = request ? cJSON_PrintUnformatted(request) : strdup("{}");
    if (!*payload) {
        set_errstr(s, "out of memory serializing the %s request", op);
        s->st.status[STORE_ERR_OTHER]++;
        return STORE_ERR_OTHER;
    }
    return STORE_OK;
}

/* 1 when an attempt that answered st is tried again: throttled or no answer, and s has
 * retries left after att of them. */
static int call_retries(const store *s, store_status st, int att)
{
    return (st == STORE_ERR_THROTTLED || st == STORE_ERR_TRANSIENT) && att < s->max_retries;
}

/* Before retry att + 1 of a call that answered st: counts it and says so (debug); returns
 * the backoff to wait, ms. */
static long call_retry_backoff(store *s, const char *op, store_status st, int att)
{
    long ms = backoff_ms(s, att);
    log_debug(NULL, "store: %s %s (%s), retry %d/%d in %ld ms", op, store_status_name(st),
              s->errstr, att + 1, s->max_retries, ms);
    s->st.retries++;
    return ms;
}

/* The end of a call whose last attempt answered st with body: counts the status and hands
 * body over as *response (as store_call says), or frees it. Frees payload. */
static store_status call_finish(store *s, char *payload, store_status st, cJSON *body,
                                cJSON **response)
{
    free(payload);
    s->st.status[st]++;
    if (st == STORE_OK || st == STORE_ERR_CONDITION || st == STORE_ERR_TRANSACTION) {
        if (st == STORE_OK)
            s->errstr[0] = '\0';
        if (response)
            *response = body;
        else
            cJSON_Delete(body);
    } else {
        cJSON_Delete(body);
    }
    return st;
}

store_status store_call(store *s, const char *op, const cJSON *request, cJSON **response)
{
    char target[128];
    char *payload;
    cJSON *body = NULL;
    if (response)
        *response = NULL;
    if (!s)
        return STORE_ERR_OTHER;
    store_status st = call_begin(s, op, request, target, &payload);
    if (st != STORE_OK)
        return st;
    size_t plen = strlen(payload);
    st = attempt(s, target, payload, plen, &body);
    for (int att = 0; call_retries(s, st, att); att++) {
        cJSON_Delete(body);
        body = NULL;
        sleep_ms(call_retry_backoff(s, op, st, att));
        st = attempt(s, target, payload, plen, &body);
    }
    return call_finish(s, payload, st, body, response);
}

/* ---- calls side by side ---- */

struct store_multi {
    CURLM *m;
};

store_multi *store_multi_new(char *err, size_t errlen)
{
    store_multi *m = calloc(1, sizeof *m);
    if (!m) {
        seterr(err, errlen, "store: out of memory");
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK || !(m->m = curl_multi_init())) {
        seterr(err, errlen, "store: curl_multi_init failed");
        free(m);
        return NULL;
    }
    /* the connections its calls used stay in its cache for the next call; a bound that does
     * not depend on how many handles happen to be attached */
    if (curl_multi_setopt(m->m, CURLMOPT_MAXCONNECTS, (long)(2 * STORE_MULTI_MAX)) != CURLM_OK) {
        seterr(err, errlen, "store: curl_multi_setopt failed");
        store_multi_free(m);
        return NULL;
    }
    return m;
}

void store_multi_free(store_multi *m)
{
    if (!m)
        return;
    if (m->m)
        curl_multi_cleanup(m->m);
    free(m);
}

/* Performs the attempts of the calls marked go[] (signed, attempt_begin) side by side on
 * m, each ending under its handle's own timeout, and reads each answer (attempt_end) into
 * sts[] and bodies[]. A call that cannot be attached fails as unanswered. (Taking a handle
 * off m fails only for a handle m does not hold or inside one of m's callbacks, neither of
 * which can happen here; if it did, that handle's later calls would fail as unanswered.) */
static void multi_round(store_multi *m, store *const *hs, size_t n, const int *go,
                        struct curl_slist **hl, store_status *sts, cJSON **bodies)
{
    CURLcode cc[STORE_MULTI_MAX];
    double t0 = now_ms(), ms[STORE_MULTI_MAX];
    int state[STORE_MULTI_MAX] = {0}; /* 0 not attached, 1 on the wire, 2 ended, 3 never sent */
    size_t pending = 0;

    for (size_t i = 0; i < n; i++) {
        cc[i] = CURLE_FAILED_INIT;
        ms[i] = 0;
        if (!go[i])
            continue;
        if (curl_multi_add_handle(m->m, hs[i]->curl) != CURLM_OK) {
            state[i] = 3; /* never sent: unanswered, retried as such */
            continue;
        }
        state[i] = 1;
        pending++;
    }
    while (pending > 0) {
        int running = 0, left = 0;
        CURLMcode mc = curl_multi_perform(m->m, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m->m, &left)))
            if (msg->msg == CURLMSG_DONE)
                for (size_t i = 0; i < n; i++)
                    if (state[i] == 1 && hs[i]->curl == msg->easy_handle) {
                        cc[i] = msg->data.result;
                        ms[i] = now_ms() - t0;
                        state[i] = 2;
                        pending--;
                    }
        /* the multi handle failed, or has nothing running yet a transfer has not ended
         * (cannot happen, but must not spin): what is left fails as unanswered */
        if (pending > 0 && (mc != CURLM_OK || running == 0 ||
                            curl_multi_poll(m->m, NULL, 0, 100, NULL) != CURLM_OK))
            pending = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!go[i])
            continue;
        if (state[i] == 1)
            ms[i] = now_ms() - t0;
        int stuck = (state[i] == 1 || state[i] == 2) && curl_multi_remove_handle(m->m, hs[i]->curl) != CURLM_OK;
        sts[i] = attempt_end(hs[i], cc[i], ms[i], hl[i], &bodies[i]);
        if (stuck) /* cannot happen (see above); said in the handle's error if it does */
            set_errstr(hs[i], "store: curl_multi_remove_handle failed: this handle's later calls go unanswered");
        hl[i] = NULL;
    }
}

void store_call_many(store_multi *m, store *const *hs, size_t n, const char *op,
                     const cJSON *const *requests, store_status *sts, cJSON **responses)
{
    char target[STORE_MULTI_MAX][128];
    char *payload[STORE_MULTI_MAX] = {0};
    struct curl_slist *hl[STORE_MULTI_MAX] = {0};
    cJSON *body[STORE_MULTI_MAX] = {0};
    int go[STORE_MULTI_MAX] = {0}, live[STORE_MULTI_MAX] = {0};
    int dup = 0;

    for (size_t i = 0; i < n; i++) {
        if (responses)
            responses[i] = NULL;
        sts[i] = STORE_ERR_OTHER;
        for (size_t k = 0; k < i && n <= STORE_MULTI_MAX; k++)
            dup |= hs[k] == hs[i];
    }
    if (!m || n > STORE_MULTI_MAX || dup) {
        /* a caller's mistake: nothing is sent, the calls count as failed */
        for (size_t i = 0; i < n; i++) {
            if (!hs[i])
                continue;
            hs[i]->st.calls++;
            hs[i]->st.status[STORE_ERR_OTHER]++;
            set_errstr(hs[i], "store_call_many: %s", !m ? "no multi handle"
                              : dup ? "a handle given twice" : "more than STORE_MULTI_MAX calls");
        }
        return;
    }
    /* every call begun; those whose first attempt can be signed go in the first round */
    for (size_t i = 0; i < n; i++) {
        if (!hs[i])
            continue;
        sts[i] = call_begin(hs[i], op, requests[i], target[i], &payload[i]);
        if (sts[i] != STORE_OK)
            continue; /* counted and ended by call_begin; nothing to free */
        live[i] = 1;
        sts[i] = attempt_begin(hs[i], target[i], payload[i], strlen(payload[i]), &hl[i]);
        go[i] = sts[i] == STORE_OK;
    }
    /* rounds side by side: each retry round waits for the longest backoff among its calls,
     * so a round of calls to a store that does not answer takes about as long as one
     * call does (store_call_max_ms), not n times as long */
    for (int att = 0;; att++) {
        long wait = 0;
        int again = 0;
        multi_round(m, hs, n, go, hl, sts, body);
        for (size_t i = 0; i < n; i++) {
            go[i] = 0;
            if (!live[i] || !call_retries(hs[i], sts[i], att))
                continue;
            long b = call_retry_backoff(hs[i], op, sts[i], att);
            wait = b > wait ? b : wait;
            go[i] = again = 1;
        }
        if (!again)
            break;
        sleep_ms(wait);
        for (size_t i = 0; i < n; i++) {
            if (!go[i])
                continue;
            cJSON_Delete(body[i]);
            body[i] = NULL;
            sts[i] = attempt_begin(hs[i], target[i], payload[i], strlen(payload[i]), &hl[i]);
            go[i] = sts[i] == STORE_OK;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (live[i]) /* ends the call: the last attempt's answer, whatever it was */
            sts[i] = call_finish(hs[i], payload[i], sts[i], body[i], responses ? &responses[i] : NULL);
}

/* ---- request building ---- */

/* A request under construction; any failed addition marks it bad. */
typedef struct {
    cJSON *o;
    int bad;
} req;

static req req_new(void)
{
    req r = {cJSON_CreateObject(), 0};
    if (!r.o)
        r.bad = 1;
    return r;
}

static void req_str(req *r, cJSON *obj, const char *k, const char *v)
{
    if (!v || r->bad)
        return;
    if (!cJSON_AddStringToObject(obj, k, v))
        r->bad = 1;
}

static void req_num(req *r, cJSON *obj, const char *k, double v)
{
    if (r->bad)
        return;
    if (!cJSON_AddNumberToObject(obj, k, v))
        r->bad = 1;
}

static void req_bool(req *r, cJSON *obj, const char *k, int v)
{
    if (r->bad)
        return;
    if (!cJSON_AddBoolToObject(obj, k, v))
        r->bad = 1;
}

/* Adds a reference to v (object or array): not copied, not freed with the request. */
static void req_ref(req *r, cJSON *obj, const char *k, const cJSON *v)
{
    if (!v || r->bad)
        return;
    cJSON *ref = cJSON_IsArray(v) ? cJSON_CreateArrayReference(v->child)
                                  : cJSON_CreateObjectReference(v->child);
    if (!ref) {
        r->bad = 1;
        return;
    }
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) {
        cJSON_Delete(ref);
        r->bad = 1;
        return;
    }
    if (!cJSON_AddItemToObject(obj, k, ref)) {
        cJSON_Delete(ref);
        r->bad = 1;
    }
}

static cJSON *req_obj(req *r, cJSON *obj, const char *k)
{
    if (r->bad)
        return NULL;
    cJSON *o = cJSON_AddObjectToObject(obj, k);
    if (!o)
        r->bad = 1;
    return o;
}

static cJSON *req_arr(req *r, cJSON *obj, const char *k)
{
    if (r->bad)
        return NULL;
    cJSON *a = cJSON_AddArrayToObject(obj, k);
    if (!a)
        r->bad = 1;
    return a;
}

static store_status local_fail(store *s, store_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static store_status local_fail(store *s, store_status st, const char *fmt, ...)
{
    if (!s)
        return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errstr, sizeof s->errstr, fmt, ap);
    va_end(ap);
    s->st.calls++;
    s->st.status[st]++;
    return st;
}

/* Sends r (consumed) as op. */
static store_status req_send(store *s, req *r, const char *op, cJSON **response)
{
    if (response)
        *response = NULL;
    if (r->bad) {
        cJSON_Delete(r->o);
        return local_fail(s, STORE_ERR_OTHER, "out of memory building the %s request", op);
    }
    store_status st = store_call(s, op, r->o, response);
    cJSON_Delete(r->o);
    r->o = NULL;
    return st;
}

static void add_write_opts(req *r, const store_write_opts *o)
{
    if (!o)
        return;
    req_str(r, r->o, "ConditionExpression", o->condition);
    req_ref(r, r->o, "ExpressionAttributeNames", o->names);
    req_ref(r, r->o, "ExpressionAttributeValues", o->values);
    req_str(r, r->o, "ReturnValues", o->return_values);
    if (o->return_old_on_condition_fail)
        req_str(r, r->o, "ReturnValuesOnConditionCheckFailure", "ALL_OLD");
}

/* ---- table operations ---- */

static int copy_str(char *dst, size_t dstlen, const char *src)
{
    if (!src) {
        dst[0] = '\0';
        return 0;
    }
    size_t n = strlen(src);
    if (n >= dstlen) {
        dst[0] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

store_status store_describe_table(store *s, const char *table, store_table_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!table || !out)
        return local_fail(s, STORE_ERR_VALIDATION, "describe_table: table and out are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", table);
    cJSON *resp = NULL;
    store_status st = req_send(s, &r, "DescribeTable", &resp);
    if (st != STORE_OK)
        return st;
    cJSON *t = cJSON_GetObjectItemCaseSensitive(resp, "Table");
    cJSON *ks = cJSON_GetObjectItemCaseSensitive(t, "KeySchema");
    cJSON *e;
    int bad = 0;
    cJSON_ArrayForEach(e, ks) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "AttributeName"));
        const char *kt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "KeyType"));
        if (!name || !kt)
            continue;
        if (!strcmp(kt, "HASH"))
            bad |= copy_str(out->hash_key, sizeof out->hash_key, name);
        else if (!strcmp(kt, "RANGE"))
            bad |= copy_str(out->range_key, sizeof out->range_key, name);
    }
    bad |= copy_str(out->table_status, sizeof out->table_status,
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "TableStatus")));
    cJSON *ss = cJSON_GetObjectItemCaseSensitive(t, "StreamSpecification");
    out->stream_enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ss, "StreamEnabled"));
    bad |= copy_str(out->stream_view_type, sizeof out->stream_view_type,
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ss, "StreamViewType")));
    bad |= copy_str(out->latest_stream_arn, sizeof out->latest_stream_arn,
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "LatestStreamArn")));
    cJSON_Delete(resp);
    if (bad || !out->hash_key[0]) {
        s->st.status[STORE_OK]--;
        s->st.status[STORE_ERR_OTHER]++;
        set_errstr(s, "DescribeTable %s: response without a key schema or with an oversized field",
                   table);
        return STORE_ERR_OTHER;
    }
    return STORE_OK;
}

static void add_key_def(req *r, cJSON *defs, cJSON *schema, const char *name, const char *type,
                        const char *kt)
{
    if (r->bad)
        return;
    cJSON *d = cJSON_CreateObject(), *k = cJSON_CreateObject();
    if (!d || !k || !cJSON_AddItemToArray(defs, d)) {
        cJSON_Delete(d);
        cJSON_Delete(k);
        r->bad = 1;
        return;
    }
    if (!cJSON_AddItemToArray(schema, k)) {
        cJSON_Delete(k);
        r->bad = 1;
        return;
    }
    req_str(r, d, "AttributeName", name);
    req_str(r, d, "AttributeType", type ? type : "S");
    req_str(r, k, "AttributeName", name);
    req_str(r, k, "KeyType", kt);
}

store_status store_create_table(store *s, const store_table_spec *spec)
{
    if (!spec || !spec->table || !spec->hash_key)
        return local_fail(s, STORE_ERR_VALIDATION, "create_table: table and hash_key are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", spec->table);
    cJSON *defs = req_arr(&r, r.o, "AttributeDefinitions");
    cJSON *schema = req_arr(&r, r.o, "KeySchema");
    add_key_def(&r, defs, schema, spec->hash_key, spec->hash_type, "HASH");
    if (spec->range_key)
        add_key_def(&r, defs, schema, spec->range_key, spec->range_type, "RANGE");
    req_str(&r, r.o, "BillingMode", "PAY_PER_REQUEST");
    if (spec->stream_new_and_old) {
        cJSON *ss = req_obj(&r, r.o, "StreamSpecification");
        req_bool(&r, ss, "StreamEnabled", 1);
        req_str(&r, ss, "StreamViewType", "NEW_AND_OLD_IMAGES");
    }
    return req_send(s, &r, "CreateTable", NULL);
}

void store_set_beacon(store *s, atomic_llong *beacon) { s->beacon = beacon; }

long long store_call_max_ms(const store *s) {
    return ((long long)s->max_retries + 1) * s->timeout_ms + (long long)s->max_retries * s->backoff_cap_ms;
}

store_status store_wait_table_active(store *s, const char *table, int timeout_ms,
                                     store_table_info *out)
{
    store_table_info tmp, *ti = out ? out : &tmp;
    double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        store_status st = store_describe_table(s, table, ti);
        if (st != STORE_OK && st != STORE_ERR_NOT_FOUND)
            return st;
        if (st == STORE_OK && !strcmp(ti->table_status, "ACTIVE"))
            return STORE_OK;
        if (now_ms() >= deadline)
            return local_fail(s, STORE_ERR_OTHER, "table %s not ACTIVE after %d ms (%s)", table,
                              timeout_ms, st == STORE_OK ? ti->table_status : "not found");
        sleep_ms(100);
    }
}

store_status store_delete_table(store *s, const char *table)
{
    req r = req_new();
    req_str(&r, r.o, "TableName", table);
    return req_send(s, &r, "DeleteTable", NULL);
}

/* ---- item operations ---- */

store_status store_put_item(store *s, const char *table, const cJSON *item,
                            const store_write_opts *o, cJSON **response)
{
    if (response)
        *response = NULL;
    if (!table || !cJSON_IsObject(item))
        return local_fail(s, STORE_ERR_VALIDATION, "put_item: table and an item map are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", table);
    req_ref(&r, r.o, "Item", item);
    add_write_opts(&r, o);
    return req_send(s, &r, "PutItem", response);
}

store_status store_delete_item(store *s, const char *table, const cJSON *key,
                               const store_write_opts *o, cJSON **response)
{
    if (response)
        *response = NULL;
    if (!table || !cJSON_IsObject(key))
        return local_fail(s, STORE_ERR_VALIDATION, "delete_item: table and a key map are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", table);
    req_ref(&r, r.o, "Key", key);
    add_write_opts(&r, o);
    return req_send(s, &r, "DeleteItem", response);
}

store_status store_update_item(store *s, const char *table, const cJSON *key,
                               const char *update_expression, const store_write_opts *o,
                               cJSON **response)
{
    if (response)
        *response = NULL;
    if (!table || !cJSON_IsObject(key) || !update_expression)
        return local_fail(s, STORE_ERR_VALIDATION,
                          "update_item: table, key map and update expression are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", table);
    req_ref(&r, r.o, "Key", key);
    req_str(&r, r.o, "UpdateExpression", update_expression);
    add_write_opts(&r, o);
    return req_send(s, &r, "UpdateItem", response);
}

store_status store_get_item(store *s, const char *table, const cJSON *key, int consistent,
                            cJSON **item)
{
    if (item)
        *item = NULL;
    if (!table || !cJSON_IsObject(key) || !item)
        return local_fail(s, STORE_ERR_VALIDATION, "get_item: table, key map and item are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", table);
    req_ref(&r, r.o, "Key", key);
    if (consistent)
        req_bool(&r, r.o, "ConsistentRead", 1);
    cJSON *resp = NULL;
    store_status st = req_send(s, &r, "GetItem", &resp);
    if (st == STORE_OK)
        *item = cJSON_DetachItemFromObjectCaseSensitive(resp, "Item");
    cJSON_Delete(resp);
    return st;
}

store_status store_query(store *s, const store_query_opts *q, cJSON **response)
{
    if (response)
        *response = NULL;
    if (!q || !q->table || !q->key_condition)
        return local_fail(s, STORE_ERR_VALIDATION, "query: table and key_condition are required");
    req r = req_new();
    req_str(&r, r.o, "TableName", q->table);
    req_str(&r, r.o, "IndexName", q->index);
    req_str(&r, r.o, "KeyConditionExpression", q->key_condition);
    req_str(&r, r.o, "FilterExpression", q->filter);
    req_ref(&r, r.o, "ExpressionAttributeNames", q->names);
    req_ref(&r, r.o, "ExpressionAttributeValues", q->values);
    req_ref(&r, r.o, "ExclusiveStartKey", q->exclusive_start_key);
    if (q->limit > 0)
        req_num(&r, r.o, "Limit", q->limit);
    if (q->consistent)
        req_bool(&r, r.o, "ConsistentRead", 1);
    if (q->descending)
        req_bool(&r, r.o, "ScanIndexForward", 0);
    return req_send(s, &r, "Query", response);
}

store_status store_scan_page(store *s, const store_scan_opts *q, cJSON **response)
{
    if (response)
        *response = NULL;
    if (!q || !q->table)
        return local_fail(s, STORE_ERR_VALIDATION, "scan: table is required");
    req r = req_new();
    req_str(&r, r.o, "TableName", q->table);
    req_ref(&r, r.o, "ExclusiveStartKey", q->exclusive_start_key);
    if (q->limit > 0)
        req_num(&r, r.o, "Limit", q->limit);
    if (q->consistent)
        req_bool(&r, r.o, "ConsistentRead", 1);
    if (q->total_segments > 0) {
        req_num(&r, r.o, "Segment", q->segment);
        req_num(&r, r.o, "TotalSegments", q->total_segments);
    }
    req_str(&r, r.o, "FilterExpression", q->filter);
    req_ref(&r, r.o, "ExpressionAttributeNames", q->names);
    req_ref(&r, r.o, "ExpressionAttributeValues", q->values);
    return req_send(s, &r, "Scan", response);
}

/* ---- parallel scan ---- */

typedef struct {
    const store_opts *opts;
    const char *table;
    int segment, segments, consistent;
    store_item_cb cb;
    void *ud;
    atomic_int *stop;
    store_status st;
    char err[512];
} scan_seg;

static void *scan_thread(void *arg)
{
    scan_seg *g = arg;
    store *s = store_new(g->opts, g->err, sizeof g->err);
    if (!s) {
        g->st = STORE_ERR_OTHER;
        atomic_store(g->stop, 1);
        return NULL;
    }
    cJSON *start = NULL;
    g->st = STORE_OK;
    while (!atomic_load(g->stop)) {
        store_scan_opts q = {.table = g->table, .exclusive_start_key = start,
                             .consistent = g->consistent,
                             .segment = g->segment,
                             .total_segments = g->segments > 1 ? g->segments : 0};
        cJSON *resp = NULL;
        store_status st = store_scan_page(s, &q, &resp);
        cJSON_Delete(start);
        start = NULL;
        if (st != STORE_OK) {
            g->st = st;
            snprintf(g->err, sizeof g->err, "segment %d: %.400s", g->segment, store_errstr(s));
            atomic_store(g->stop, 1);
            break;
        }
        cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp, "Items")) {
            if (g->cb(it, g->segment, g->ud) != 0) {
                g->st = STORE_ERR_OTHER;
                snprintf(g->err, sizeof g->err, "segment %d: stopped by callback", g->segment);
                atomic_store(g->stop, 1);
                break;
            }
        }
        start = cJSON_DetachItemFromObjectCaseSensitive(resp, "LastEvaluatedKey");
        cJSON_Delete(resp);
        if (g->st != STORE_OK || !start || cJSON_IsNull(start))
            break;
    }
    cJSON_Delete(start);
    store_free(s);
    return NULL;
}

store_status store_scan_all(const store_opts *o, const char *table, int segments,
                            int consistent, store_item_cb cb, void *ud,
                            char *err, size_t errlen)
{
    if (!o || !table || !cb || segments < 1 || segments > 64) {
        seterr(err, errlen, "scan_all: options, table and callback are required; segments 1..64");
        return STORE_ERR_VALIDATION;
    }
    scan_seg *g = calloc((size_t)segments, sizeof *g);
    pthread_t *th = calloc((size_t)segments, sizeof *th);
    int *started = calloc((size_t)segments, sizeof *started);
    if (!g || !th || !started) {
        free(g);
        free(th);
        free(started);
        seterr(err, errlen, "scan_all: out of memory");
        return STORE_ERR_OTHER;
    }
    atomic_int stop = 0;
    store_status res = STORE_OK;
    for (int i = 0; i < segments; i++) {
        g[i] = (scan_seg){.opts = o, .table = table, .segment = i, .segments = segments,
                          .consistent = consistent, .cb = cb, .ud = ud, .stop = &stop,
                          .st = STORE_OK};
        int prc = pthread_create(&th[i], NULL, scan_thread, &g[i]);
        if (prc != 0) {
            atomic_store(&stop, 1);
            res = STORE_ERR_OTHER;
            seterr(err, errlen, "scan_all: pthread_create: %s", strerror(prc));
            break;
        }
        started[i] = 1;
    }
    for (int i = 0; i < segments; i++) {
        if (!started[i])
            continue;
        int jrc = pthread_join(th[i], NULL);
        if (jrc != 0 && res == STORE_OK) {
            res = STORE_ERR_OTHER;
            seterr(err, errlen, "scan_all: pthread_join: %s", strerror(jrc));
        }
        if (res == STORE_OK && g[i].st != STORE_OK) {
            res = g[i].st;
            seterr(err, errlen, "%s", g[i].err);
        }
    }
    free(g);
    free(th);
    free(started);
    return res;
}

/* ---- batch and transactions ---- */

/* Appends duplicates of arr's elements [from, to) to *acc (created on demand). */
static int append_dups(cJSON **acc, const cJSON *arr, int from, int to)
{
    if (!*acc && !(*acc = cJSON_CreateArray()))
        return -1;
    for (int i = from; i < to; i++) {
        cJSON *d = cJSON_Duplicate(cJSON_GetArrayItem(arr, i), 1);
        if (!d || !cJSON_AddItemToArray(*acc, d)) {
            cJSON_Delete(d);
            return -1;
        }
    }
    return 0;
}

store_status store_batch_write(store *s, const char *table, const cJSON *requests,
                               cJSON **unprocessed)
{
    if (unprocessed)
        *unprocessed = NULL;
    if (!table || !cJSON_IsArray(requests))
        return local_fail(s, STORE_ERR_VALIDATION, "batch_write: table and a request array are required");
    int n = cJSON_GetArraySize(requests);
    cJSON *left = NULL;   /* requests not written, for the caller */
    store_status res = STORE_OK;
    for (int from = 0; from < n && res == STORE_OK; from += BATCH_CHUNK) {
        int to = from + BATCH_CHUNK < n ? from + BATCH_CHUNK : n;
        /* Build this chunk: references to the caller's requests. */
        req r = req_new();
        cJSON *ri = req_obj(&r, r.o, "RequestItems");
        cJSON *arr = req_arr(&r, ri, table);
        for (int i = from; i < to && !r.bad; i++) {
            cJSON *ref = cJSON_CreateObjectReference(cJSON_GetArrayItem(requests, i)->child);
            if (!ref || !cJSON_AddItemToArray(arr, ref)) {
                cJSON_Delete(ref);
                r.bad = 1;
            }
        }
        cJSON *pending = NULL;   /* UnprocessedItems array, owned */
        for (int att = 0;; att++) {
            cJSON *resp = NULL;
            store_status st = req_send(s, &r, "BatchWriteItem", &resp);
            if (st != STORE_OK) {
                cJSON_Delete(resp);
                res = st;
                if (pending) {
                    if (!left && !(left = cJSON_CreateArray()))
                        break;
                    cJSON *e;
                    while ((e = cJSON_DetachItemFromArray(pending, 0)) != NULL)
                        if (!cJSON_AddItemToArray(left, e))
                            cJSON_Delete(e);
                } else {
                    append_dups(&left, requests, from, to);
                }
                break;
            }
            cJSON_Delete(pending);
            pending = cJSON_DetachItemFromObjectCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(resp, "UnprocessedItems"), table);
            cJSON_Delete(resp);
            if (!pending || cJSON_GetArraySize(pending) == 0)
                break;
            if (att >= s->max_retries) {
                res = STORE_ERR_THROTTLED;
                set_errstr(s, "BatchWriteItem: %d items still unprocessed after %d retries",
                           cJSON_GetArraySize(pending), s->max_retries);
                if (!left && !(left = cJSON_CreateArray()))
                    break;
                cJSON *e;
                while ((e = cJSON_DetachItemFromArray(pending, 0)) != NULL)
                    if (!cJSON_AddItemToArray(left, e))
                        cJSON_Delete(e);
                s->st.status[STORE_OK]--;
                s->st.status[STORE_ERR_THROTTLED]++;
                break;
            }
            s->st.retries++;
            sleep_ms(backoff_ms(s, att));
            r = req_new();
            ri = req_obj(&r, r.o, "RequestItems");
            req_ref(&r, ri, table, pending);
        }
        cJSON_Delete(pending);
        if (res != STORE_OK && to < n)
            append_dups(&left, requests, to, n);
    }
    if (left && cJSON_GetArraySize(left) == 0) {
        cJSON_Delete(left);
        left = NULL;
    }
    if (unprocessed)
        *unprocessed = left;
    else
        cJSON_Delete(left);
    return res;
}

store_status store_transact_write(store *s, const cJSON *transact_items, const char *token,
                                  cJSON **response)
{
    if (response)
        *response = NULL;
    if (!cJSON_IsArray(transact_items))
        return local_fail(s, STORE_ERR_VALIDATION, "transact_write: TransactItems array required");
    req r = req_new();
    req_ref(&r, r.o, "TransactItems", transact_items);
    req_str(&r, r.o, "ClientRequestToken", token);
    return req_send(s, &r, "TransactWriteItems", response);
}

/* ---- streams ---- */

store_status store_list_streams(store *s, const char *table, cJSON **streams)
{
    if (streams)
        *streams = NULL;
    if (!streams)
        return local_fail(s, STORE_ERR_VALIDATION, "list_streams: streams is required");
    cJSON *all = cJSON_CreateArray();
    if (!all)
        return local_fail(s, STORE_ERR_OTHER, "list_streams: out of memory");
    char *last = NULL;
    store_status st;
    for (;;) {
        req r = req_new();
        req_str(&r, r.o, "TableName", table);
        req_str(&r, r.o, "ExclusiveStartStreamArn", last);
        cJSON *resp = NULL;
        st = req_send(s, &r, "ListStreams", &resp);
        free(last);
        last = NULL;
        if (st != STORE_OK) {
            cJSON_Delete(resp);
            break;
        }
        cJSON *arr = cJSON_GetObjectItemCaseSensitive(resp, "Streams"), *e;
        while (arr && (e = cJSON_DetachItemFromArray(arr, 0)) != NULL)
            if (!cJSON_AddItemToArray(all, e))
                cJSON_Delete(e);   /* only fails on NULL arguments */
        const char *next = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedStreamArn"));
        if (next && !(last = strdup(next))) {
            cJSON_Delete(resp);
            st = local_fail(s, STORE_ERR_OTHER, "list_streams: out of memory");
            break;
        }
        cJSON_Delete(resp);
        if (!last)
            break;
    }
    if (st != STORE_OK) {
        cJSON_Delete(all);
        return st;
    }
    *streams = all;
    return STORE_OK;
}

store_status store_describe_stream(store *s, const char *stream_arn, cJSON **description)
{
    if (description)
        *description = NULL;
    if (!stream_arn || !description)
        return local_fail(s, STORE_ERR_VALIDATION, "describe_stream: stream_arn and description are required");
    cJSON *desc = NULL, *shards = NULL;
    char *last = NULL;
    store_status st;
    for (;;) {
        req r = req_new();
        req_str(&r, r.o, "StreamArn", stream_arn);
        req_str(&r, r.o, "ExclusiveStartShardId", last);
        cJSON *resp = NULL;
        st = req_send(s, &r, "DescribeStream", &resp);
        free(last);
        last = NULL;
        if (st != STORE_OK) {
            cJSON_Delete(resp);
            break;
        }
        cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(resp, "StreamDescription");
        cJSON_Delete(resp);
        if (!cJSON_IsObject(d)) {
            cJSON_Delete(d);
            st = local_fail(s, STORE_ERR_OTHER, "DescribeStream: no StreamDescription");
            break;
        }
        const char *next = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "LastEvaluatedShardId"));
        if (next && !(last = strdup(next))) {
            cJSON_Delete(d);
            st = local_fail(s, STORE_ERR_OTHER, "describe_stream: out of memory");
            break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(d, "LastEvaluatedShardId");
        if (!desc) {
            desc = d;
            shards = cJSON_GetObjectItemCaseSensitive(desc, "Shards");
            if (!shards) {
                shards = cJSON_AddArrayToObject(desc, "Shards");
                if (!shards) {
                    st = local_fail(s, STORE_ERR_OTHER, "describe_stream: out of memory");
                    break;
                }
            }
        } else {
            cJSON *more = cJSON_GetObjectItemCaseSensitive(d, "Shards"), *e;
            while (more && (e = cJSON_DetachItemFromArray(more, 0)) != NULL)
                if (!cJSON_AddItemToArray(shards, e))
                    cJSON_Delete(e);   /* only fails on NULL arguments */
            cJSON_Delete(d);
        }
        if (!last)
            break;
    }
    free(last);
    if (st != STORE_OK) {
        cJSON_Delete(desc);
        return st;
    }
    *description = desc;
    return STORE_OK;
}

store_status store_get_shard_iterator(store *s, const char *stream_arn, const char *shard_id,
                                      store_iter_type type, const char *sequence_number,
                                      char **iterator)
{
    if (iterator)
        *iterator = NULL;
    static const char *const names[] = {"TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER",
                                        "AFTER_SEQUENCE_NUMBER"};
    if (!stream_arn || !shard_id || !iterator || (int)type < 0 || (int)type > 3 ||
        ((type == STORE_ITER_AT_SEQUENCE || type == STORE_ITER_AFTER_SEQUENCE) && !sequence_number))
        return local_fail(s, STORE_ERR_VALIDATION,
                          "get_shard_iterator: stream, shard, iterator and (for AT/AFTER) a "
                          "sequence number are required");
    req r = req_new();
    req_str(&r, r.o, "StreamArn", stream_arn);
    req_str(&r, r.o, "ShardId", shard_id);
    req_str(&r, r.o, "ShardIteratorType", names[type]);
    if (type == STORE_ITER_AT_SEQUENCE || type == STORE_ITER_AFTER_SEQUENCE)
        req_str(&r, r.o, "SequenceNumber", sequence_number);
    cJSON *resp = NULL;
    store_status st = req_send(s, &r, "GetShardIterator", &resp);
    if (st == STORE_OK) {
        const char *it = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp, "ShardIterator"));
        if (!it || !(*iterator = strdup(it))) {
            s->st.status[STORE_OK]--;
            s->st.status[STORE_ERR_OTHER]++;
            set_errstr(s, "GetShardIterator: %s", it ? "out of memory" : "no ShardIterator in response");
            st = STORE_ERR_OTHER;
        }
    }
    cJSON_Delete(resp);
    return st;
}

store_status store_get_records(store *s, const char *iterator, int limit, cJSON **records,
                               char **next_iterator)
{
    if (records)
        *records = NULL;
    if (next_iterator)
        *next_iterator = NULL;
    if (!iterator || !records || !next_iterator)
        return local_fail(s, STORE_ERR_VALIDATION, "get_records: iterator, records and next_iterator are required");
    req r = req_new();
    req_str(&r, r.o, "ShardIterator", iterator);
    if (limit > 0)
        req_num(&r, r.o, "Limit", limit);
    cJSON *resp = NULL;
    store_status st = req_send(s, &r, "GetRecords", &resp);
    if (st != STORE_OK) {
        cJSON_Delete(resp);
        return st;
    }
    cJSON *recs = cJSON_DetachItemFromObjectCaseSensitive(resp, "Records");
    if (!recs)
        recs = cJSON_CreateArray();
    const char *next = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp, "NextShardIterator"));
    char *nx = next ? strdup(next) : NULL;
    cJSON_Delete(resp);
    if (!cJSON_IsArray(recs) || (next && !nx)) {
        cJSON_Delete(recs);
        free(nx);
        s->st.status[STORE_OK]--;
        s->st.status[STORE_ERR_OTHER]++;
        set_errstr(s, "GetRecords: bad Records in response or out of memory");
        return STORE_ERR_OTHER;
    }
    *records = recs;
    *next_iterator = nx;
    return STORE_OK;
}
