/*
 * http_events.c — libmicrohttpd's request callbacks, run on the event
 * threads (epoll): reading a request, routing it, answering what needs no
 * handler, handing the rest to a worker, and queueing the answers.
 *
 * Data flow of one request:
 *   event thread (epoll)  reads headers and body into the request context
 *                         (the body up to the cap, then only counted);
 *                         answers /healthz, /readyz, /metrics, 404, 405, 413
 *                         and malformed framing itself;
 *                         otherwise suspends the connection and queues the
 *                         request for a worker (503 when the queue is full)
 *   worker                runs the route handler (it may block), or the
 *                         handler defers and returns; either way the answer
 *                         ends in state ANSWERED and the connection resumes
 *   event thread          is called again for the resumed connection and
 *                         queues the answer; a streamed body
 *                         (es_http_resp_stream: a projector's checkpoint)
 *                         is produced here, a block at a time as the socket
 *                         drains, from local files only.
 * Nothing here waits for a handler (the locks it takes, srv->mu and
 * srv->conn_mu, are only ever held briefly), so health checks and metrics
 * stay answerable whatever the handlers do.
 *
 * Trace context: the request's span is opened as soon as its headers are
 * in (http_req_trace_start: the caller's W3C traceparent continued, or a
 * new trace), so every answer, even a 404 or a 503 of this thread, carries
 * a `traceparent` header, and the access log line (debug) its trace id.
 *
 * TLS is libmicrohttpd's (GnuTLS); with a client CA, a client certificate
 * it signed is required (checked with GnuTLS on the first call of every
 * request, before anything else is read).
 */
#include "http_internal.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define READY_WHY_MAX      1400 /* the ready callback's reason, in the /readyz body */
#define METRICS_TYPE       "text/plain; version=0.0.4"
#define BUSY_RETRY_AFTER_S "1"          /* Retry-After of a 503 when every worker is busy */
#define STREAM_BLOCK       (256 * 1024) /* bytes a streamed body is produced in (es_http_resp_stream) */

/* ---------------------------------------------------------------- routing */

static void metrics_render(es_http_server_t *srv, es_http_resp_t *resp)
{
    es_buf_t out = {0};
    es_metrics_render(srv->conf.metrics, &out);
    es_http_resp_text(resp, 200, METRICS_TYPE, out.data ? out.data : "", out.len);
    es_buf_free(&out);
}

static void builtin_routes(es_http_server_t *srv, es_http_req_t *req, es_http_resp_t *resp,
                           bool *handled)
{
    *handled = true;
    if (!strcmp(req->path, "/healthz")) {
        es_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
    } else if (!strcmp(req->path, "/readyz")) {
        char why[READY_WHY_MAX] = "";
        bool ready = !srv->conf.ready || srv->conf.ready(srv->conf.opaque, why, sizeof(why));
        if (ready)
            es_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ready"));
        else
            es_http_resp_json(resp, 503,
                              json_pack("{s:s, s:s}", "status", "not_ready", "reason", why));
    } else if (!strcmp(req->path, "/metrics") && srv->conf.metrics &&
               (srv->conf.metrics_open || !es_auth_enabled(srv->conf.auth))) {
        metrics_render(srv, resp);
    } else {
        *handled = false;
    }
}

/* /metrics behind the "metrics" action: run by a worker after authorization. */
static void metrics_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    metrics_render(req->srv, resp);
}

/* The length of the longest '/'-separated segment of @p path. */
static size_t longest_segment(const char *path)
{
    size_t longest = 0;
    for (const char *s = path; *s;) {
        size_t n = strcspn(s, "/");
        longest = n > longest ? n : longest;
        s += n + (s[n] == '/');
    }
    return longest;
}

/* Route the request; true when it must go to a worker (req->route set). */
static bool route(es_http_server_t *srv, es_http_req_t *req)
{
    bool handled = false, path_known = false;
    es_http_resp_t *resp = &req->resp;

    if (req->too_large) {
        es_http_resp_error(resp, 413, "payload_too_large",
                           "request body of %zu bytes exceeds the limit of %zu bytes",
                           req->body_seen, srv->conf.max_body);
        return false;
    }
    if (!strcmp(req->method, "GET"))
        builtin_routes(srv, req, resp, &handled);
    if (handled)
        return false;
    static const es_http_route_t metrics_route = {"GET", "/metrics", metrics_handler, "metrics",
                                                  false};
    if (!strcmp(req->method, "GET") && !strcmp(req->path, "/metrics") && srv->conf.metrics) {
        req->route = &metrics_route; /* behind the "metrics" action */
        return true;
    }
    for (size_t i = 0; i < srv->conf.nroutes; i++) {
        const es_http_route_t *r = &srv->conf.routes[i];
        if (!es_http_route_match(r->pattern, req->path, req->params, &req->nparams))
            continue;
        path_known = true;
        if (strcmp(r->method, req->method))
            continue;
        req->route = r;
        return true;
    }
    req->nparams = 0;
    size_t longest = longest_segment(req->path);
    if (path_known)
        es_http_resp_error(resp, 405, "method_not_allowed", "%s is not allowed on %s", req->method,
                           req->path);
    else if (longest >= ES_HTTP_PARAM_MAX) /* no route takes it: say why, not "no such" */
        es_http_resp_error(resp, 414, "uri_too_long",
                           "a path segment of %zu bytes exceeds the limit of %d bytes", longest,
                           ES_HTTP_PARAM_MAX - 1);
    else
        es_http_resp_error(resp, 404, "not_found", "no such resource: %s", req->path);
    return false;
}

/* ---------------------------------------------------------------- framing */

typedef struct {
    int content_length, transfer_encoding;
    bool chunked;
} framing_t;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    framing_t *f = cls;
    (void)kind;
    if (!strcasecmp(key, "Content-Length")) {
        f->content_length++;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        f->transfer_encoding++;
        f->chunked = value && !strcasecmp(value, "chunked");
    }
    return MHD_YES;
}

/*
 * Framing that HTTP/1.1 says to refuse (RFC 9112 §6.3): several
 * Content-Length headers, Content-Length beside Transfer-Encoding (the
 * request-smuggling pair), or a transfer coding other than chunked.
 */
static bool framing_refused(struct MHD_Connection *conn, es_http_resp_t *resp)
{
    framing_t f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.content_length > 1) {
        es_http_resp_error(resp, 400, "invalid_request", "more than one Content-Length header");
    } else if (f.content_length && f.transfer_encoding) {
        es_http_resp_error(resp, 400, "invalid_request",
                           "Content-Length and Transfer-Encoding together");
    } else if (f.transfer_encoding > 1 || (f.transfer_encoding && !f.chunked)) {
        es_http_resp_error(resp, 501, "not_implemented",
                           "only the chunked transfer coding is supported");
    } else {
        return false;
    }
    return true;
}

/* Mutual TLS: did the client present a certificate our client CA signed? */
static bool client_cert_ok(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    unsigned status = 0;
    if (!ci || !ci->tls_session)
        return false;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509)
        return false;
    return gnutls_certificate_verify_peers2(session, &status) == 0 && status == 0 &&
           gnutls_certificate_get_peers(session, &(unsigned){0}) != NULL;
}

/* -------------------------------------------------------------- callbacks */

/* The body of @p resp for libmicrohttpd: its bytes, or its stream (then owned by the response). */
static struct MHD_Response *response_of(es_http_resp_t *resp)
{
    if (!resp->stream_read)
        return MHD_create_response_from_buffer(
            resp->body.len, resp->body.data ? resp->body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    struct MHD_Response *mresp = MHD_create_response_from_callback(
        resp->stream_size, STREAM_BLOCK, resp->stream_read, resp->stream_opaque, resp->stream_done);
    if (mresp) /* else http_resp_clear() calls stream_done */
        resp->stream_done = NULL;
    return mresp;
}

/*
 * Queue req->resp, with the request's traceparent: every answer says which
 * trace it belongs to, errors of the event thread included.  The access log
 * line (debug) carries the trace id too.
 */
static enum MHD_Result queue_answer(struct MHD_Connection *conn, es_http_req_t *req, bool close)
{
    es_http_resp_t *resp = &req->resp;
    es_log_trace_set(req->trace.trace_id);
    es_log_debug("access", "%d %s %s %lld ms", resp->status, req->method, req->path,
                 (long long)(es_mono_ms() - req->t0_ms));
    es_log_trace_set(NULL);
    struct MHD_Response *mresp = response_of(resp);
    if (!mresp)
        return MHD_NO;
    MHD_add_response_header(mresp, "Content-Type",
                            resp->content_type ? resp->content_type : "application/json");
    for (size_t i = 0; i < resp->nheaders; i++)
        MHD_add_response_header(mresp, resp->hnames[i], resp->hvalues[i]);
    MHD_add_response_header(mresp, "traceparent", req->trace.traceparent);
    if (close)
        MHD_add_response_header(mresp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, mresp);
    MHD_destroy_response(mresp);
    return ret;
}

/* The headers are in: a new request context, or a refusal that closes the connection. */
static enum MHD_Result on_headers(es_http_server_t *srv, struct MHD_Connection *conn,
                                  const char *method, const char *url, void **con_cls)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    es_http_req_t *req = es_calloc(1, sizeof(*req));
    req->srv = srv;
    req->conn = conn;
    req->sock = ci ? ci->socket_context : NULL;
    req->method = method;
    req->path = url;
    req->refs = 1; /* libmicrohttpd's, dropped in http_on_completed */
    req->t0_ms = es_mono_ms();
    http_req_trace_start(req);
    *con_cls = req;
    if (srv->tls_ca && !client_cert_ok(conn))
        es_http_resp_error(&req->resp, 403, "forbidden",
                           "a client certificate signed by the configured CA is required");
    else if (!framing_refused(conn, &req->resp))
        return MHD_YES;
    req->state = RQ_ANSWERED;
    http_conn_set_busy(srv, req->sock, true);
    return queue_answer(conn, req, true);
}

/* A piece of the body: kept up to the cap, then only counted. */
static enum MHD_Result on_body(es_http_server_t *srv, es_http_req_t *req, const char *data,
                               size_t *size)
{
    req->body_seen += *size;
    if (req->body_seen > srv->conf.max_body) {
        req->too_large = true;
        es_buf_free(&req->body);
    } else {
        es_buf_append(&req->body, data, *size);
    }
    *size = 0;
    return MHD_YES;
}

/* Resumed after a worker's or a deferred answer: queue it. */
static enum MHD_Result on_resumed(es_http_server_t *srv, struct MHD_Connection *conn,
                                  es_http_req_t *req)
{
    pthread_mutex_lock(&srv->mu);
    bool was_suspended = req->suspended;
    req->suspended = false;
    if (was_suspended) {
        if (--srv->nsuspended == 0)
            pthread_cond_broadcast(&srv->resumed_cv);
    }
    pthread_mutex_unlock(&srv->mu);
    return queue_answer(conn, req, false);
}

/* The whole request is in: answer it here, or suspend it and run its handler (here for a
 * never_waits route, else on a worker). */
static enum MHD_Result on_request_in(es_http_server_t *srv, struct MHD_Connection *conn,
                                     es_http_req_t *req)
{
    http_conn_set_busy(srv, req->sock, true); /* the deadline no longer applies to it */
    if (!route(srv, req)) {
        req->state = RQ_ANSWERED;
        return queue_answer(conn, req, false);
    }
    pthread_mutex_lock(&srv->mu);
    if (srv->stopping || srv->njobs >= (size_t)srv->conf.limits.queue_max) {
        size_t waiting = srv->njobs;
        bool stopping = srv->stopping;
        pthread_mutex_unlock(&srv->mu);
        if (srv->c_busy)
            es_counter_add(srv->c_busy, 1);
        req->state = RQ_ANSWERED;
        if (stopping)
            es_http_resp_error(&req->resp, 503, "unavailable", "the server is stopping");
        else
            es_http_resp_error(&req->resp, 503, "unavailable",
                               "server busy: %zu requests are waiting; retry shortly", waiting);
        es_http_resp_header(&req->resp, "Retry-After", BUSY_RETRY_AFTER_S);
        return queue_answer(conn, req, false);
    }
    http_req_run(srv, req);
    req->suspended = true;
    srv->nsuspended++;
    MHD_suspend_connection(conn); /* before the handler: its answer resumes it */
    if (req->route->never_waits) {
        pthread_mutex_unlock(&srv->mu);
        req->on_event_thread = true;
        http_req_handle(srv, req);
        return MHD_YES;
    }
    http_jobs_push(srv, req);
    pthread_mutex_unlock(&srv->mu);
    return MHD_YES;
}

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls)
{
    es_http_server_t *srv = cls;
    es_http_req_t *req = *con_cls;
    (void)version;

    if (!req)
        return on_headers(srv, conn, method, url, con_cls);
    if (req->state == RQ_READING && *upload_data_size)
        return on_body(srv, req, upload_data, upload_data_size);
    if (req->state == RQ_ANSWERED)
        return on_resumed(srv, conn, req);
    if (req->state != RQ_READING)
        return MHD_YES; /* cannot happen while suspended; be safe */
    return on_request_in(srv, conn, req);
}

void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
    es_http_server_t *srv = cls;
    es_http_req_t *req = *con_cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    http_conn_set_busy(srv, req->sock, false); /* the next request's deadline starts now */
    pthread_mutex_lock(&srv->mu);
    if (req->suspended) { /* closed before its resume was processed */
        req->suspended = false;
        if (--srv->nsuspended == 0)
            pthread_cond_broadcast(&srv->resumed_cv);
    }
    http_req_unref(req);
    pthread_mutex_unlock(&srv->mu);
    *con_cls = NULL;
}
