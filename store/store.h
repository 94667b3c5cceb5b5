/* store.h -- DynamoDB and DynamoDB Streams JSON API client (libcurl, SigV4-signed).
 *
 * One store handle = one persistent HTTP(S) connection (a curl easy handle with
 * keep-alive and TCP_NODELAY) to one endpoint, plus a sticky error string and stats.
 *
 * Threading: a handle is used by ONE thread at a time (no internal locking; that
 * includes store_errstr() and store_get_stats()). Use one handle per thread; handles
 * made from the same store_opts are independent. store_new() may be called from any
 * thread (libcurl's global init is done once, under pthread_once).
 *
 * Requests: POST to the endpoint with
 *   X-Amz-Target: DynamoDB_20120810.<Op>   (DynamoDBStreams_20120810.<Op> for
 *                                          ListStreams, DescribeStream, GetShardIterator,
 *                                          GetRecords)
 *   Content-Type: application/x-amz-json-1.0
 * signed with SigV4 for service "dynamodb" (DynamoDB Local accepts that for streams).
 * Request and response JSON is DynamoDB's own: AttributeValue maps pass through
 * untouched (numbers stay strings).
 *
 * Retries: STORE_ERR_THROTTLED and STORE_ERR_TRANSIENT are retried inside every call,
 * up to max_retries times, sleeping before retry k (k = 0, 1, ...) a uniformly random
 * time in [0, min(backoff_cap_ms, backoff_base_ms * 2^k)] milliseconds ("full
 * jitter"). Every other status returns at once. Each HTTP attempt is bounded by
 * timeout_ms. Worst case duration of one call, roughly:
 *   (max_retries + 1) * timeout_ms + max_retries * backoff_cap_ms.
 *
 * Ownership: functions never take ownership of the caller's arguments (cJSON inputs
 * are only read, strings are copied if kept). Every cJSON ** / char ** output is a new
 * object the caller frees (cJSON_Delete / free); outputs are set to NULL first. */
#ifndef TERN_STORE_H
#define TERN_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Result of every call. */
typedef enum {
    STORE_OK = 0,               /* success */
    STORE_ERR_CONDITION,        /* ConditionalCheckFailedException */
    STORE_ERR_THROTTLED,        /* ProvisionedThroughputExceeded, Throttling, RequestLimitExceeded,
                                   LimitExceeded (retried inside; returned once retries ran out) */
    STORE_ERR_VALIDATION,       /* ValidationException, SerializationException, bad request */
    STORE_ERR_NOT_FOUND,        /* ResourceNotFoundException (table, stream, shard) */
    STORE_ERR_EXPIRED_ITERATOR, /* ExpiredIteratorException: get a new shard iterator */
    STORE_ERR_TRIMMED,          /* TrimmedDataAccessException: records past stream retention */
    STORE_ERR_TRANSACTION,      /* TransactionCanceledException (CancellationReasons in response) */
    STORE_ERR_AUTH,             /* UnrecognizedClient, InvalidSignature, AccessDenied, token issues */
    STORE_ERR_IN_USE,           /* ResourceInUseException (table exists / being changed) */
    STORE_ERR_TRANSIENT,        /* 5xx, InternalServerError, ServiceUnavailable, network or curl
                                   errors, timeouts (retried inside; returned once retries ran out) */
    STORE_ERR_OTHER,            /* anything else (unknown error type, unparsable response) */
    STORE_STATUS_COUNT
} store_status;

/* Static name, e.g. "STORE_ERR_CONDITION"; "STORE_?" for an out-of-range value. */
const char *store_status_name(store_status st);

/* Pure mapping of an HTTP status and an AWS error type to a status. aws_error_type may
 * be NULL, a bare name ("ValidationException") or a qualified "__type"
 * ("com.amazonaws.dynamodb.v20120810#ValidationException"). Known types decide first;
 * otherwise 2xx -> OK, 429 -> THROTTLED, 5xx or 0 (no HTTP response) -> TRANSIENT,
 * 401/403 -> AUTH, 400/413 -> VALIDATION, else OTHER. */
store_status store_classify(long http_status, const char *aws_error_type);

/* TLS verification. The zero value verifies, so a zeroed store_opts is safe. */
typedef enum {
    STORE_TLS_VERIFY = 0,       /* https: verify the certificate chain and host name (default) */
    STORE_TLS_NO_VERIFY = 1     /* https: accept any certificate (tests only) */
} store_tls;

#define STORE_DEFAULT_TIMEOUT_MS 10000   /* per HTTP attempt */
#define STORE_DEFAULT_MAX_RETRIES 6
#define STORE_DEFAULT_BACKOFF_BASE_MS 25
#define STORE_DEFAULT_BACKOFF_CAP_MS 2000
#define STORE_NO_RETRIES (-1)            /* max_retries value meaning "never retry" */

/* Options for store_new(). Strings are copied; the caller keeps its own. Numeric
 * fields left 0 take the defaults above. */
typedef struct {
    const char *endpoint;           /* "http://127.0.0.1:8000" or "https://dynamodb.eu-west-1.amazonaws.com" */
    const char *region;             /* signing region, e.g. "us-east-1" */
    const char *access_key_id;      /* required (any value for DynamoDB Local) */
    const char *secret_access_key;  /* required */
    const char *session_token;      /* NULL or "" unless temporary credentials */
    store_tls verify_tls;           /* default STORE_TLS_VERIFY */
    int timeout_ms;                 /* per HTTP attempt incl. connect; 0 = default */
    int max_retries;                /* retries after the first attempt; 0 = default,
                                       STORE_NO_RETRIES = none */
    int backoff_base_ms;            /* 0 = default */
    int backoff_cap_ms;             /* 0 = default; must be >= base */
} store_opts;

typedef struct store store;

/* Fills *o (the caller's) for a client tool, not a daemon (the daemons take credentials
 * from their config): endpoint (borrowed: store_new copies it), signing region
 * "us-east-1", and the credentials AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set and
 * not empty, else "local" (any value does for DynamoDB Local); every other field 0, the
 * defaults. */
void store_opts_client(store_opts *o, const char *endpoint);

/* Creates a handle (no connection is made until the first call). Returns NULL with a
 * reason in err on bad options (missing endpoint/region/keys, endpoint not http(s),
 * negative numbers) or allocation/curl failure. Free with store_free(). */
store *store_new(const store_opts *o, char *err, size_t errlen);

/* Closes the connection and frees the handle. NULL-safe. */
void store_free(store *s);

/* Progress beacon: when beacon is not NULL, each HTTP attempt of every call stores the
 * monotonic time (CLOCK_MONOTONIC, ms) into *beacon as it starts. A call then goes at
 * most timeout_ms plus one retry's backoff (backoff_cap_ms) without touching it, so a
 * watchdog on another thread can tell a thread waiting on the store from a hung one. The
 * caller owns *beacon and keeps it alive while it is set; NULL unsets. */
void store_set_beacon(store *s, atomic_llong *beacon);

/* The last call's error as "<AWS error type>: <message>" (or a curl/parse reason);
 * "" after a successful call. Owned by the handle, valid until its next call. */
const char *store_errstr(const store *s);
/* The longest one call of s can take, in ms (see "Retries" above): every attempt timing
 * out and every retry's backoff at its cap. 23,000 with the daemons' defaults. */
long long store_call_max_ms(const store *s);

/* Generic call: op is the bare operation name ("PutItem", "GetRecords", ...); request
 * is the JSON body (NULL means {}). On STORE_OK *response is the parsed response body.
 * On STORE_ERR_CONDITION and STORE_ERR_TRANSACTION *response is the parsed error body
 * when there is one (it holds "Item" for ReturnValuesOnConditionCheckFailure and
 * "CancellationReasons" for transactions); on every other error *response is NULL.
 * The caller cJSON_Delete()s *response. response may be NULL to discard it. */
store_status store_call(store *s, const char *op, const cJSON *request, cJSON **response);

/* ---- calls side by side ---- */

/* Most calls one store_call_many makes at once. */
#define STORE_MULTI_MAX 32

/* What lets several handles' calls go out together (a curl multi handle and the
 * connections its calls used, kept open between calls). Owned by one thread, like the
 * handles it drives. NULL with a reason in err on failure; free with store_multi_free. */
typedef struct store_multi store_multi;
store_multi *store_multi_new(char *err, size_t errlen);
/* Closes its connections and frees it. NULL-safe. Free it before the handles it drove. */
void store_multi_free(store_multi *m);

/* Makes n (<= STORE_MULTI_MAX) calls of op at once, requests[i] on handle hs[i] (distinct
 * handles, none NULL; requests[i] NULL means {}): the first attempts go out together, each
 * ending under its handle's own timeout; the throttled or unanswered ones are retried
 * together too, after the longest of their backoffs, up to each handle's retries. So the
 * calls take about as long as the slowest one would alone (at most the largest
 * store_call_max_ms among the handles),
 * and sts[i], responses[i] and hs[i]'s errstr are what store_call(hs[i], op, requests[i],
 * &responses[i]) would have left (statistics too, but for the backoffs waited). The caller
 * cJSON_Delete()s each responses[i] (NULL where none); responses may be NULL to discard
 * them all. With NULL m, n over STORE_MULTI_MAX or a handle given twice nothing is sent:
 * every call fails (STORE_ERR_OTHER, counted, errstr set). Once a handle could not be
 * taken off m again (a curl failure), m is not used any more: the calls go one after
 * another, as store_call. */
void store_call_many(store_multi *m, store *const *hs, size_t n, const char *op,
                     const cJSON *const *requests, store_status *sts, cJSON **responses);

/* ---- stats (for metrics) ---- */

#define STORE_LAT_BUCKETS 12
/* Upper bounds (ms, inclusive) of the latency buckets; the last bucket is +Inf. */
#define STORE_LAT_BOUNDS_MS {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 0 /* +Inf */}

typedef struct {
    uint64_t calls;                       /* store_call invocations (wrappers count each call) */
    uint64_t requests;                    /* HTTP attempts, including retries */
    uint64_t retries;                     /* attempts after the first, and BatchWrite re-sends */
    uint64_t connects;                    /* new connections opened (keep-alive keeps this low) */
    uint64_t status[STORE_STATUS_COUNT];  /* final status of each call; status[STORE_OK] = successes */
    double latency_sum_ms;                /* over HTTP attempts */
    uint64_t latency_count;
    uint64_t latency_bucket[STORE_LAT_BUCKETS]; /* per attempt, non-cumulative; see bounds */
} store_stats;

/* Copies the handle's counters (cumulative since store_new) into *out. */
void store_get_stats(const store *s, store_stats *out);
/* Adds x's counters to *acc (for the statistics of several handles as one). */
void store_stats_add(store_stats *acc, const store_stats *x);

/* ---- typed wrappers (thin over store_call; same statuses, same errstr) ---- */

/* DescribeTable, reduced to what the daemons need. Fixed buffers: nothing to free. */
typedef struct {
    char hash_key[256];         /* partition key attribute name */
    char range_key[256];        /* sort key attribute name, "" if none */
    char table_status[32];      /* "CREATING", "ACTIVE", ... */
    int stream_enabled;         /* 1 if StreamSpecification.StreamEnabled */
    char stream_view_type[32];  /* "NEW_AND_OLD_IMAGES", ... or "" */
    char latest_stream_arn[1024]; /* LatestStreamArn or "" */
} store_table_info;

store_status store_describe_table(store *s, const char *table, store_table_info *out);

/* CreateTable, on-demand billing. Key types "S", "N" or "B" (NULL = "S"). */
typedef struct {
    const char *table;
    const char *hash_key;
    const char *hash_type;
    const char *range_key;      /* NULL for a hash-only table */
    const char *range_type;
    int stream_new_and_old;     /* 1: StreamSpecification NEW_AND_OLD_IMAGES */
} store_table_spec;

store_status store_create_table(store *s, const store_table_spec *spec);

/* Polls DescribeTable every 100 ms until TableStatus is ACTIVE (fills *out if non-NULL)
 * or timeout_ms passes (STORE_ERR_OTHER, "timed out"). */
store_status store_wait_table_active(store *s, const char *table, int timeout_ms,
                                     store_table_info *out);

store_status store_delete_table(store *s, const char *table);

/* Options shared by PutItem, DeleteItem and UpdateItem. Any field may be NULL/0;
 * the cJSON objects are referenced (not copied, not freed) while the call runs. */
typedef struct {
    const char *condition;          /* ConditionExpression */
    const cJSON *names;             /* ExpressionAttributeNames object */
    const cJSON *values;            /* ExpressionAttributeValues object */
    const char *return_values;      /* ReturnValues: "NONE", "ALL_OLD", "ALL_NEW", ... */
    int return_old_on_condition_fail; /* ReturnValuesOnConditionCheckFailure = ALL_OLD */
} store_write_opts;

/* PutItem of item (an AttributeValue map). o may be NULL. *response (may be NULL): the
 * response body ({"Attributes":...} with ReturnValues) or, on STORE_ERR_CONDITION, the
 * error body ({"Item":...} with return_old_on_condition_fail). Caller frees. */
store_status store_put_item(store *s, const char *table, const cJSON *item,
                            const store_write_opts *o, cJSON **response);

/* DeleteItem of key. As store_put_item. */
store_status store_delete_item(store *s, const char *table, const cJSON *key,
                               const store_write_opts *o, cJSON **response);

/* UpdateItem of key with update_expression ("SET #a = :v"). As store_put_item. */
store_status store_update_item(store *s, const char *table, const cJSON *key,
                               const char *update_expression, const store_write_opts *o,
                               cJSON **response);

/* GetItem. *item = the detached "Item" map (caller frees), or NULL with STORE_OK when
 * the key does not exist. consistent: 1 for ConsistentRead. */
store_status store_get_item(store *s, const char *table, const cJSON *key, int consistent,
                            cJSON **item);

/* Query, one page. *response (caller frees) holds Items, Count, LastEvaluatedKey. */
typedef struct {
    const char *table;
    const char *index;              /* IndexName or NULL */
    const char *key_condition;      /* KeyConditionExpression (required) */
    const char *filter;             /* FilterExpression or NULL */
    const cJSON *names;             /* ExpressionAttributeNames or NULL */
    const cJSON *values;            /* ExpressionAttributeValues or NULL */
    const cJSON *exclusive_start_key; /* from the previous page's LastEvaluatedKey, or NULL */
    int limit;                      /* 0 = no Limit */
    int consistent;
    int descending;                 /* 1: ScanIndexForward false */
} store_query_opts;

store_status store_query(store *s, const store_query_opts *q, cJSON **response);

/* Scan, one page. *response (caller frees) holds Items, Count, LastEvaluatedKey
 * (absent on the last page). */
typedef struct {
    const char *table;
    const cJSON *exclusive_start_key; /* or NULL for the first page */
    int limit;                      /* 0 = no Limit */
    int consistent;
    int segment, total_segments;    /* total_segments 0 = not a parallel scan */
    const char *filter;             /* FilterExpression or NULL */
    const cJSON *names, *values;
} store_scan_opts;

store_status store_scan_page(store *s, const store_scan_opts *q, cJSON **response);

/* Called once per item by store_scan_all, from the segment's thread: callbacks of
 * different segments run CONCURRENTLY, so it must be thread-safe. item is only valid
 * during the call (copy what you keep). Return 0 to go on, non-zero to stop the scan. */
typedef int (*store_item_cb)(const cJSON *item, int segment, void *ud);

/* Scans a whole table in `segments` parallel segments (1..64), each in its own thread
 * with its own handle made from o, following LastEvaluatedKey to the end. Returns
 * STORE_OK when every segment finished; else the first failing segment's status with
 * its errstr in err (a callback stop gives STORE_ERR_OTHER, "stopped by callback").
 * Stats of the segment handles are discarded. */
store_status store_scan_all(const store_opts *o, const char *table, int segments,
                            int consistent, store_item_cb cb, void *ud,
                            char *err, size_t errlen);

/* BatchWriteItem to one table. requests: an array of {"PutRequest":{"Item":...}} and
 * {"DeleteRequest":{"Key":...}} of any length; sent 25 at a time. UnprocessedItems are
 * re-sent with the handle's backoff, up to max_retries times per chunk; if some remain
 * the call returns STORE_ERR_THROTTLED, and *unprocessed (if non-NULL) gets an array of
 * the requests not written (caller frees; NULL when all were written). On another
 * error the requests of later chunks are not sent and are put in *unprocessed too. */
store_status store_batch_write(store *s, const char *table, const cJSON *requests,
                               cJSON **unprocessed);

/* TransactWriteItems. transact_items: the TransactItems array (<= 100). token: a
 * ClientRequestToken for idempotent retry, or NULL. *response (may be NULL; caller
 * frees): the body; on STORE_ERR_TRANSACTION the error body with CancellationReasons. */
store_status store_transact_write(store *s, const cJSON *transact_items, const char *token,
                                  cJSON **response);

/* ---- DynamoDB Streams ---- */

/* ListStreams, all pages. table may be NULL for every stream. *streams (caller frees):
 * an array of {"StreamArn","TableName","StreamLabel"}. */
store_status store_list_streams(store *s, const char *table, cJSON **streams);

/* DescribeStream, all pages: *description (caller frees) is the StreamDescription with
 * "Shards" holding every shard across pages (LastEvaluatedShardId removed). */
store_status store_describe_stream(store *s, const char *stream_arn, cJSON **description);

typedef enum {
    STORE_ITER_TRIM_HORIZON,        /* oldest record still in the shard */
    STORE_ITER_LATEST,              /* just after the newest record */
    STORE_ITER_AT_SEQUENCE,         /* at sequence_number */
    STORE_ITER_AFTER_SEQUENCE       /* just after sequence_number */
} store_iter_type;

/* GetShardIterator. sequence_number is required for AT/AFTER, ignored otherwise.
 * *iterator: a malloc'd string, caller free()s. */
store_status store_get_shard_iterator(store *s, const char *stream_arn, const char *shard_id,
                                      store_iter_type type, const char *sequence_number,
                                      char **iterator);

/* GetRecords. limit 0 = server default (1000). *records (caller frees): the Records
 * array (possibly empty). *next_iterator: malloc'd NextShardIterator, caller free()s;
 * NULL when the shard is closed and fully read. */
store_status store_get_records(store *s, const char *iterator, int limit, cJSON **records,
                               char **next_iterator);

#endif
