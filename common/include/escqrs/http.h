/**
 * @file http.h
 * @brief Embedded HTTP server (libmicrohttpd) with a route table and JSON helpers.
 *
 * Every daemon serves its API through this module, and gets `GET /healthz`
 * (process alive), `GET /readyz` (the daemon's ready callback) and
 * `GET /metrics` (Prometheus text of its es_metrics_t) for free.
 *
 * Routes are patterns with `{name}` segments captured in order, e.g.
 * "/v1/carts/{id}/{command}".  Unknown paths answer 404 `not_found`, a known
 * path with another method 405 `method_not_allowed`, and a body over the cap
 * 413 `payload_too_large` (read and discarded, never buffered beyond the cap).
 * Error bodies follow the contract: `{"error": code, "message": text, ...}`.
 *
 * @remark One thread per connection: a handler may block (the gateway waits
 *         for a command's outcome) without stalling other clients.  Handlers
 *         therefore run concurrently and must be thread-safe.
 */
#ifndef ESCQRS_HTTP_H
#define ESCQRS_HTTP_H

#include "escqrs/err.h"
#include "escqrs/metrics.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define ES_HTTP_MAX_PARAMS 8

typedef struct es_http_req_s es_http_req_t;
typedef struct es_http_resp_s es_http_resp_t;

const char *es_http_req_method(const es_http_req_t *req);
const char *es_http_req_path(const es_http_req_t *req);
/** @brief The @p i-th `{...}` segment of the matched route (NULL past the end). */
const char *es_http_req_param(const es_http_req_t *req, size_t i);
/** @brief A query-string argument, URL-decoded, or NULL. */
const char *es_http_req_query(const es_http_req_t *req, const char *name);
/** @brief A request header (case-insensitive name), or NULL. */
const char *es_http_req_header(const es_http_req_t *req, const char *name);
/** @brief The request body (NUL-terminated for convenience) and its length. */
const char *es_http_req_body(const es_http_req_t *req, size_t *len);

/** @brief Answer with @p body as JSON; takes the reference to @p body. */
void es_http_resp_json(es_http_resp_t *resp, int status, json_t *body);
/** @brief Answer with a copy of @p len bytes of @p text. */
void es_http_resp_text(es_http_resp_t *resp, int status, const char *content_type, const char *text,
                       size_t len);
/** @brief Answer `{"error": code, "message": ...}` (printf-style message). */
void es_http_resp_error(es_http_resp_t *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** @brief A new `{"error": code, "message": message}` object to add fields to. */
json_t *es_http_error_body(const char *code, const char *message);
/** @brief Add a response header (copied). */
void es_http_resp_header(es_http_resp_t *resp, const char *name, const char *value);

typedef void(es_http_handler_t)(void *opaque, es_http_req_t *req, es_http_resp_t *resp);

typedef struct es_http_route_s {
    const char *method;  /**< "GET", "POST", ... */
    const char *pattern; /**< "/v1/carts/{id}" */
    es_http_handler_t *handler;
} es_http_route_t;

typedef struct es_http_server_conf_s {
    const char *listen; /**< "host:port"; port 0 picks a free one (see es_http_server_port) */
    size_t max_body;    /**< bytes; larger bodies get 413 */
    const es_http_route_t *routes;
    size_t nroutes;
    void *opaque;          /**< passed to handlers and to ready() */
    es_metrics_t *metrics; /**< rendered at /metrics (may be NULL) */
    /** Ready to serve?  On false, @p why says what is missing (503 at /readyz). */
    bool (*ready)(void *opaque, char *why, size_t whysz);
} es_http_server_conf_t;

typedef struct es_http_server_s es_http_server_t;

/** @brief Start serving in background threads. @p conf is copied. */
es_http_server_t *es_http_server_start(const es_http_server_conf_t *conf, char *errstr,
                                       size_t errstr_size);
/** @brief The port actually bound. */
int es_http_server_port(const es_http_server_t *srv);
/** @brief Stop accepting, wait for handlers, free; NULL is a no-op. */
void es_http_server_stop(es_http_server_t *srv);

/**
 * @brief One HTTP client request (libcurl), for the registry client and the CLI.
 * @param body NULL for none; sent with @p content_type.
 * @param status set to the HTTP status of the answer (0 when none came).
 * @returns ES_ERR_OK when an answer came (whatever its status), ES_ERR_HTTP with
 *          curl's reason in @p errstr when none did.
 */
es_err_t es_http_fetch(const char *method, const char *url, const char *content_type,
                       const char *body, int timeout_ms, long *status, es_buf_t *resp, char *errstr,
                       size_t errstr_size);

/** @brief es_http_fetch() with extra request @p headers ("Name: value", NULL-terminated). */
es_err_t es_http_fetch_with_headers(const char *method, const char *url, const char *content_type,
                                    const char *const *headers, const char *body, int timeout_ms,
                                    long *status, es_buf_t *resp, char *errstr, size_t errstr_size);

/** @brief Pure route matching, exposed for tests: fills @p params on a match. */
bool es_http_route_match(const char *pattern, const char *path, char params[][128],
                         size_t *nparams);

#endif
