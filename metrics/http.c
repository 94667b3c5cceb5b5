/* http.c -- the metrics HTTP endpoint (see metrics.h): GET /metrics and GET /healthz
 * over libmicrohttpd.
 *
 * Owns: one MHD daemon per metrics_server, with its internal polling thread.
 * Invariants: the server only reads the registry (metrics_render takes the registry
 * mutex) and calls the health callback; it never writes anything but responses. Every
 * request is answered on its first callback (no request body is ever read: non-GET
 * requests get 405 at once and MHD closes the connection after it).
 * Timeouts: idle connections close after METRICS_HTTP_CONN_TIMEOUT_S seconds; at most
 * METRICS_HTTP_CONN_MAX connections at once (more are refused by MHD).
 * Threading: the request handler and the MHD logger run on MHD's thread; start and
 * stop run on the caller's thread. libmicrohttpd's own errors go to log/ as warnings. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

#define METRICS_REASON_MAX 256  /* bytes of a /healthz failure reason */

struct metrics_server {
    struct MHD_Daemon *mhd;
    metrics_registry *reg;   /* borrowed */
    metrics_health_fn health;
    void *ud;                /* borrowed */
    int port;
};

static void metrics_mhd_log(void *cls, const char *fmt, va_list ap) {
    char line[512];
    size_t n;
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    log_warn(NULL, "metrics http: %s", line);
}

/* Queues a response with a copied text body and the given content type. */
static enum MHD_Result metrics_reply(struct MHD_Connection *c, unsigned code, const char *ctype, const char *body,
                                     const char *allow) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc;
    if (!r) return MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        (allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result metrics_serve_metrics(metrics_server *srv, struct MHD_Connection *c) {
    char *text = NULL;
    size_t len = 0;
    struct MHD_Response *r;
    enum MHD_Result rc;
    if (metrics_render(srv->reg, &text, &len) != 0)
        return metrics_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                             "out of memory rendering metrics\n", NULL);
    /* MUST_FREE: MHD releases text with free() once sent (or on failure). */
    r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE) != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result metrics_serve_health(metrics_server *srv, struct MHD_Connection *c) {
    char reason[METRICS_REASON_MAX], body[METRICS_REASON_MAX + 32];
    reason[0] = '\0';
    if (!srv->health || srv->health(srv->ud, reason, sizeof reason) == 1)
        return metrics_reply(c, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n", NULL);
    reason[sizeof reason - 1] = '\0';
    for (char *p = reason; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    snprintf(body, sizeof body, "unhealthy: %s\n", reason[0] ? reason : "no reason given");
    return metrics_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body, NULL);
}

static enum MHD_Result metrics_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                          const char *version, const char *upload_data, size_t *upload_data_size,
                                          void **con_cls) {
    metrics_server *srv = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    (void)upload_data_size;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return metrics_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n",
                             "GET, HEAD");
    if (strcmp(url, "/metrics") == 0) return metrics_serve_metrics(srv, c);
    if (strcmp(url, "/healthz") == 0) return metrics_serve_health(srv, c);
    return metrics_reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                         "not found; try /metrics or /healthz\n", NULL);
}

metrics_server *metrics_serve(metrics_registry *reg, const char *bind_addr, int port, metrics_health_fn health,
                              void *ud, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;
    metrics_server *srv;
    int e;

    if (!bind_addr) bind_addr = "127.0.0.1";
    if (!reg) {
        snprintf(err, errlen, "metrics: no registry to serve");
        return NULL;
    }
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "metrics: port %d out of range: expected 0..65535", port);
        return NULL;
    }
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, bind_addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, bind_addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "metrics: bind address \"%s\" is not an IPv4 or IPv6 address", bind_addr);
        return NULL;
    }
    srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "metrics: out of memory");
        return NULL;
    }
    srv->reg = reg;
    srv->health = health;
    srv->ud = ud;
    errno = 0;
    srv->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, metrics_on_request, srv,
                                MHD_OPTION_EXTERNAL_LOGGER, metrics_mhd_log, (void *)srv, /* must come first */
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_HTTP_CONN_MAX,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_HTTP_CONN_TIMEOUT_S,
                                MHD_OPTION_END);
    e = errno;
    if (!srv->mhd) {
        snprintf(err, errlen, "metrics: cannot serve on %s port %d: %s", bind_addr, port,
                 e ? strerror(e) : "libmicrohttpd failed to start");
        free(srv);
        return NULL;
    }
    info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info && info->port ? (int)info->port : port;
    return srv;
}

int metrics_server_port(const metrics_server *srv) { return srv ? srv->port : -1; }

void metrics_server_stop(metrics_server *srv) {
    if (!srv) return;
    MHD_stop_daemon(srv->mhd);
    free(srv);
}
