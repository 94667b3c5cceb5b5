/* sigv4.h -- AWS Signature Version 4, header form (the Authorization header).
 *
 * Pure functions over OpenSSL's SHA-256 and HMAC: no globals, no I/O, no clock
 * (the caller passes the signing time). Safe to call from any thread.
 *
 * Proven byte for byte (canonical request, string to sign, signature) against AWS's
 * signing test suite in ../shared/testdata/sigv4 by tests/unit/test_sigv4.c.
 *
 * Ownership: every pointer the caller passes in (request, credentials, params) is only
 * read during the call and stays the caller's. Everything sigv4_sign() returns lives in
 * the caller's sigv4_result and is released by sigv4_result_free(). */
#ifndef TERN_SIGV4_H
#define TERN_SIGV4_H

#include <stddef.h>
#include <time.h>

/* One HTTP header, name and value as sent. Names compare case-insensitively. */
typedef struct {
    const char *name;
    const char *value;
} sigv4_header;

typedef struct {
    const char *access_key_id;      /* required */
    const char *secret_access_key;  /* required */
    const char *session_token;      /* NULL or "" when the credentials are not temporary */
} sigv4_credentials;

/* The request to sign. */
typedef struct {
    const char *method;             /* "GET", "POST", ... (as sent) */
    /* Host header value (host[:port]); signed as "host". NULL when headers[] already
     * holds a Host header (it is then signed from there). */
    const char *host;
    /* Path as it goes on the request line, without the query, e.g. "/". Every byte
     * other than unreserved characters and '/' is percent-encoded for the canonical
     * request (AWS's double encoding for non-S3 services); NULL or "" means "/". */
    const char *path;
    /* Query string without the leading '?', percent-encoded or raw; NULL or "" for
     * none. Parameters are decoded, re-encoded and sorted for the canonical request. */
    const char *query;
    const sigv4_header *headers;    /* extra headers to sign (may be NULL if nheaders 0) */
    size_t nheaders;
    const void *body;               /* payload; NULL with body_len 0 for none */
    size_t body_len;
} sigv4_request;

typedef struct {
    const char *region;             /* e.g. "us-east-1" */
    const char *service;            /* e.g. "dynamodb" */
    time_t when;                    /* signing time, seconds since the epoch (UTC) */
    /* 1: remove "." and ".." segments and repeated slashes from the path before
     * encoding (every service except S3). 0: sign the path as given. */
    int normalize_path;
    /* 1: add (and sign) x-amz-content-sha256: <hex sha256 of body>. */
    int content_sha256_header;
    /* 1: add X-Amz-Security-Token to the output headers but leave it out of the
     * signature (some services want that); 0 (normal): sign it. */
    int omit_session_token;
} sigv4_params;

/* The result of one signing. Every field is owned by the result. */
#define SIGV4_MAX_ADDED 4
typedef struct {
    char *canonical_request;        /* as in AWS's header-canonical-request.txt */
    char *string_to_sign;           /* as in header-string-to-sign.txt */
    char signature[65];             /* lowercase hex, as in header-signature.txt */
    char amz_date[17];              /* "YYYYMMDDTHHMMSSZ" */
    char content_sha256[65];        /* hex SHA-256 of the body if content_sha256_header */
    /* Headers the caller must add to the request, in this order: X-Amz-Date,
     * [x-amz-content-sha256], [X-Amz-Security-Token], Authorization. name/value
     * point into storage owned by this result (valid until sigv4_result_free). */
    sigv4_header added[SIGV4_MAX_ADDED];
    size_t nadded;
    char *authorization;            /* the Authorization header value */
    char *storage_;                 /* private */
} sigv4_result;

/* Signs rq. Fills *out (which the caller must later pass to sigv4_result_free, also
 * after a failure: out is always left freeable). Returns 0, or -1 with a reason in
 * err (bad arguments, a header name or value with control characters, allocation or
 * OpenSSL failure). */
int sigv4_sign(const sigv4_request *rq, const sigv4_credentials *cred,
               const sigv4_params *p, sigv4_result *out, char *err, size_t errlen);

/* Frees what sigv4_sign() allocated in r and zeroes it. r itself stays the caller's.
 * NULL-safe; safe to call twice. */
void sigv4_result_free(sigv4_result *r);

/* hex (65 bytes incl. NUL) := lowercase hex SHA-256 of data. Returns 0 or -1. */
int sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

/* Formats when (UTC) as "YYYYMMDDTHHMMSSZ" into buf (at least 17 bytes). Returns 0/-1. */
int sigv4_amz_date(time_t when, char buf[17]);

#endif
