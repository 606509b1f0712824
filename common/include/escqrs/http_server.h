/**
 * @file http_server.h
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
 * Trace context (trace.h): every request is a span of the caller's W3C
 * trace (a valid `traceparent` header) or of a new one; every answer
 * carries the span's `traceparent` header, the handler's log lines its
 * trace id, and es_http_req_traceparent() gives it to send downstream.
 *
 * Threads: a few event threads (`http.threads`, epoll) read every
 * connection and answer the built-in routes themselves, so health checks
 * and metrics stay answerable whatever the handlers do.  Route handlers run
 * on a bounded pool of workers (`http.workers`); a handler may block (a
 * projector query waiting for a position) or hand its answer over with
 * es_http_defer() and return at once (the gateway waiting for an outcome).
 * A route whose handler never waits (`never_waits`: it answers or defers
 * at once) runs on the event thread that read the request instead, without
 * the hand-off to a worker; should it find it must wait after all, it calls
 * es_http_req_to_worker() and returns.  Handlers run concurrently and must
 * be thread-safe.
 *
 * Limits against hostile clients (all configurable, `http.*`): connections
 * in all and per client address, and a deadline for a request's headers and
 * body (`http.request.timeout.ms`) after which the connection is closed, so
 * slow or silent clients cannot hold the server.
 */
#ifndef ESCQRS_HTTP_SERVER_H
#define ESCQRS_HTTP_SERVER_H

#include "escqrs/auth.h"
#include "escqrs/conf.h"
#include "escqrs/contract.h"
#include "escqrs/mem.h"
#include "escqrs/err.h"
#include "escqrs/metrics.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ES_HTTP_MAX_PARAMS 8
#define ES_HTTP_PARAM_MAX  256 /**< bytes of one `{...}` segment, NUL included */

typedef struct es_http_req_s es_http_req_t;
typedef struct es_http_resp_s es_http_resp_t;

const char *es_http_req_method(const es_http_req_t *req);
/** @brief The request's path, percent-decoded (as routes match it). */
const char *es_http_req_path(const es_http_req_t *req);
/**
 * @brief The path again as a URL's path, percent-encoded, into @p out: what
 *        to send on when forwarding (an id holding `?`, `#`, `%` or a space
 *        must reach the next server as the same id).
 */
void es_http_req_path_encoded(const es_http_req_t *req, es_buf_t *out);
/** @brief The @p i-th `{...}` segment of the matched route (NULL past the end). */
const char *es_http_req_param(const es_http_req_t *req, size_t i);
/** @brief A query-string argument, URL-decoded, or NULL. */
const char *es_http_req_query(const es_http_req_t *req, const char *name);
/** @brief A request header (case-insensitive name), or NULL. */
/** @brief The request's query arguments again as "a=b&c=d", percent-encoded, into @p out. */
void es_http_req_query_string(const es_http_req_t *req, es_buf_t *out);
const char *es_http_req_header(const es_http_req_t *req, const char *name);
/** @brief Who sent the request (anonymous when authentication is off). */
const es_principal_t *es_http_req_principal(const es_http_req_t *req);
/**
 * @brief The W3C traceparent of this server's span for the request, to send
 *        downstream: the caller's trace id when it sent a valid traceparent
 *        (a new span id), else a new trace.  Every answer carries it in a
 *        `traceparent` header, and every log line of the handler's thread
 *        carries its trace id (log.h) while the handler runs.
 */
const char *es_http_req_traceparent(const es_http_req_t *req);
/** @brief The caller's tracestate when kept (trace.h), "" otherwise. */
const char *es_http_req_tracestate(const es_http_req_t *req);
/** @brief The trace id of es_http_req_traceparent() (32 hex digits). */
const char *es_http_req_trace_id(const es_http_req_t *req);
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
/** Produces a streamed body: up to @p max bytes from @p pos into @p buf; how many, -1 on error. */
typedef ssize_t(es_http_body_reader_t)(void *opaque, uint64_t pos, char *buf, size_t max);

/**
 * @brief Answer with a body of @p size bytes that @p read produces while it
 *        is sent (a download larger than memory), in order, a block at a
 *        time, on the connection's event thread: @p read must not wait on
 *        anything but local files.  A read error closes the connection (the
 *        client sees fewer bytes than Content-Length).  @p done(@p opaque)
 *        is called exactly once: when the body was sent, the client went
 *        away, or the server stopped.
 */
void es_http_resp_stream(es_http_resp_t *resp, int status, const char *content_type, uint64_t size,
                         es_http_body_reader_t *read, void (*done)(void *opaque), void *opaque);
/** @brief Add a response header (copied). */
void es_http_resp_header(es_http_resp_t *resp, const char *name, const char *value);

/** An answer given later, from any thread (see es_http_defer()). */
typedef struct es_http_deferred_s es_http_deferred_t;

/**
 * @brief From inside a handler: answer this request later.  The handler
 *        returns without answering; the connection waits, holding no worker,
 *        until es_http_deferred_json() is called, exactly once, from any
 *        thread.  The request (@p req, its params and body) stays valid
 *        until then.
 * @remark Every deferred request must be answered before
 *         es_http_server_stop(); one still open after its grace period is
 *         answered 503 by the server and its handle is void: it must never
 *         be answered after the stop.
 */
es_http_deferred_t *es_http_defer(es_http_req_t *req);
/** @brief Give a deferred answer; takes the reference to @p body; releases @p d. */
void es_http_deferred_json(es_http_deferred_t *d, int status, json_t *body);

/**
 * @brief From inside a `never_waits` handler that finds it must wait (or
 *        block): run this request again, from the start, on a worker.  The
 *        handler returns at once without answering.
 * @return false when the handler already runs on a worker (it may wait).
 */
bool es_http_req_to_worker(es_http_req_t *req);

typedef void(es_http_handler_t)(void *opaque, es_http_req_t *req, es_http_resp_t *resp);

typedef struct es_http_route_s {
    const char *method;  /**< "GET", "POST", ... */
    const char *pattern; /**< "/v1/carts/{id}" */
    es_http_handler_t *handler;
    /** What a caller must be allowed (auth.h), with the pattern's {names}
     *  filled in: "command:{collection}.{command}", "query:carts",
     *  "admin:rebuild".  A route without one is refused when authentication
     *  is on (default deny). */
    const char *action;
    /** The handler neither blocks nor waits: it answers, or defers, at once.
     *  It runs on an event thread (see the top of this file). */
    bool never_waits;
} es_http_route_t;

/** Connection and concurrency limits (es_http_server_conf_from() reads `http.*`). */
typedef struct es_http_limits_s {
    int threads;              /**< event threads (epoll) */
    int workers;              /**< handler threads */
    int queue_max;            /**< requests waiting for a worker before 503 */
    unsigned max_connections; /**< open connections at most; more are closed at once */
    unsigned max_per_client;  /**< per client IP address */
    int request_timeout_ms;   /**< headers and body must arrive within this */
    int idle_timeout_s;       /**< a connection silent this long is closed */
} es_http_limits_t;

typedef struct es_http_server_conf_s {
    const char *listen; /**< "host:port"; port 0 picks a free one (see es_http_server_port) */
    size_t max_body;    /**< bytes; larger bodies get 413 */
    const es_http_route_t *routes;
    size_t nroutes;
    void *opaque;          /**< passed to handlers and to ready() */
    es_metrics_t *metrics; /**< rendered at /metrics (may be NULL) */
    /** Ready to serve?  On false, @p why says what is missing (503 at /readyz).
     *  Called on an event thread: must answer at once. */
    bool (*ready)(void *opaque, char *why, size_t whysz);
    es_http_limits_t limits; /**< zeroes take the defaults of es_http_conf_defs */
    /** Who may call (NULL or auth.mode=none: everyone).  Not owned. */
    const es_auth_t *auth;
    /** /metrics answers without credentials (a listener the network protects,
     *  such as an admin port); otherwise it needs the action "metrics". */
    bool metrics_open;
    /** TLS: PEM certificate and key files (NULL: plain HTTP); a client CA file
     *  makes a client certificate signed by it mandatory (mutual TLS). */
    const char *tls_cert_file, *tls_key_file, *tls_client_ca_file;
} es_http_server_conf_t;

/** @brief The `http.*` limits keys; add to the tables of a program that serves HTTP. */
extern const es_conf_def_t es_http_conf_defs[];

/** @brief Fill @p hc's listen address (key `http.listen`) and limits from @p conf. */
void es_http_server_conf_from(const es_conf_t *conf, es_http_server_conf_t *hc);

typedef struct es_http_server_s es_http_server_t;

/** @brief Start serving in background threads. @p conf is copied. */
es_http_server_t *es_http_server_start(const es_http_server_conf_t *conf, char *errstr,
                                       size_t errstr_size);
/** @brief The port actually bound. */
int es_http_server_port(const es_http_server_t *srv);
/**
 * @brief Stop accepting, let running handlers finish, answer what still
 *        waits 503, free; NULL is a no-op.
 */
void es_http_server_stop(es_http_server_t *srv);

/** @brief Pure route matching, exposed for tests: fills @p params on a match. */
bool es_http_route_match(const char *pattern, const char *path, char params[][ES_HTTP_PARAM_MAX],
                         size_t *nparams);

#endif
