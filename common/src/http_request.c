/*
 * http_request.c — what a route handler sees of a request and builds of its
 * answer (the es_http_req_* and es_http_resp_* calls of http_server.h), the
 * route patterns, and the states a request goes through.
 *
 * States (srv->mu guards them): READING while the event thread takes in the
 * headers and body; RUNNING from the moment it is queued for a worker,
 * through the handler, until its answer is given — by the worker, by the
 * holder of an es_http_deferred_t, or by the server at stop; ANSWERED once
 * the answer is in resp and the connection is resumed so that its event
 * thread queues it.  A request leaves RUNNING exactly once: every way out
 * of it checks the state under the lock, so a deferred answer that comes
 * after the server answered for it at stop is dropped, not sent twice.  (A
 * request answered by its event thread — 404, 413, 503 busy — goes from
 * READING to ANSWERED on that thread alone: no other thread knows it yet.)
 *
 * Lifetime of a request context: one reference for libmicrohttpd (dropped
 * in its COMPLETED notification), one for the worker that runs it (dropped
 * when the handler has returned), and one more for the holder of an
 * es_http_deferred_t (dropped with the answer).  The last reference frees
 * it, so neither a closed connection nor a late answer touches freed
 * memory, and a handler that defers may see its answer given, sent and the
 * connection closed before it returns (the gateway answers 503 itself when
 * a command cannot be queued) without the worker losing the request.
 */
#include "http_internal.h"
#include "escqrs/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ request API */

const char *es_http_req_method(const es_http_req_t *req)
{
    return req->method;
}

const char *es_http_req_path(const es_http_req_t *req)
{
    return req->path;
}

const char *es_http_req_param(const es_http_req_t *req, size_t i)
{
    return i < req->nparams ? req->params[i] : NULL;
}

const char *es_http_req_query(const es_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

#define QUERY_KEEP "-._~:"              /* kept as they are in a query's key or value */
#define PATH_KEEP  "-._~:/@!$&'()*+,;=" /* and in a path: not ?, #, %, a space */

/* @p s with every byte but the unreserved ones and those of @p keep escaped. */
static void percent_encode(es_buf_t *out, const char *s, const char *keep)
{
    static const char digits[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr(keep, c)) {
            es_buf_append(out, s, 1);
        } else {
            char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
            es_buf_append(out, esc, 3);
        }
    }
}

static enum MHD_Result query_arg_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    es_buf_t *out = cls;
    (void)kind;
    if (out->len)
        es_buf_append(out, "&", 1);
    percent_encode(out, key, QUERY_KEEP);
    if (value) {
        es_buf_append(out, "=", 1);
        percent_encode(out, value, QUERY_KEEP);
    }
    return MHD_YES;
}

void es_http_req_query_string(const es_http_req_t *req, es_buf_t *out)
{
    es_buf_clear(out);
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_arg_cb, out);
}

void es_http_req_path_encoded(const es_http_req_t *req, es_buf_t *out)
{
    es_buf_clear(out);
    percent_encode(out, es_http_req_path(req), PATH_KEEP);
}

const char *es_http_req_header(const es_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const es_principal_t *es_http_req_principal(const es_http_req_t *req)
{
    return &req->principal;
}

const char *es_http_req_traceparent(const es_http_req_t *req)
{
    return req->trace.traceparent;
}

const char *es_http_req_tracestate(const es_http_req_t *req)
{
    return req->trace.tracestate;
}

const char *es_http_req_trace_id(const es_http_req_t *req)
{
    return req->trace.trace_id;
}

const char *es_http_req_body(const es_http_req_t *req, size_t *len)
{
    *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

void es_http_resp_text(es_http_resp_t *resp, int status, const char *content_type, const char *text,
                       size_t len)
{
    resp->status = status;
    resp->content_type = content_type;
    es_buf_set(&resp->body, text, len);
}

void es_http_resp_json(es_http_resp_t *resp, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    es_http_resp_text(resp, status, "application/json", text ? text : "null",
                      text ? strlen(text) : 4);
    free(text);
    json_decref(body);
}

void es_http_resp_error(es_http_resp_t *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[HTTP_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    es_http_resp_json(resp, status, es_http_error_body(code, msg));
}

void es_http_resp_header(es_http_resp_t *resp, const char *name, const char *value)
{
    if (resp->nheaders == HTTP_MAX_RESP_HEADERS)
        return;
    resp->hnames[resp->nheaders] = es_strdup(name);
    resp->hvalues[resp->nheaders] = es_strdup(value);
    resp->nheaders++;
}

void es_http_resp_stream(es_http_resp_t *resp, int status, const char *content_type, uint64_t size,
                         es_http_body_reader_t *read, void (*done)(void *opaque), void *opaque)
{
    resp->status = status;
    resp->content_type = content_type;
    resp->stream_read = read;
    resp->stream_done = done;
    resp->stream_opaque = opaque;
    resp->stream_size = size;
}

void http_resp_clear(es_http_resp_t *resp)
{
    if (resp->stream_done) /* never handed to libmicrohttpd */
        resp->stream_done(resp->stream_opaque);
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->hnames[i]);
        free(resp->hvalues[i]);
    }
    es_buf_free(&resp->body);
    memset(resp, 0, sizeof(*resp));
}

bool es_http_route_match(const char *pattern, const char *path, char params[][ES_HTTP_PARAM_MAX],
                         size_t *nparams)
{
    const char *p = pattern, *s = path;
    *nparams = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *pend = strchr(p, '}');
            const char *send = strchr(s, '/');
            size_t len = send ? (size_t)(send - s) : strlen(s);
            if (!pend || len == 0 || len >= ES_HTTP_PARAM_MAX || *nparams == ES_HTTP_MAX_PARAMS)
                return false;
            memcpy(params[*nparams], s, len);
            params[*nparams][len] = '\0';
            (*nparams)++;
            p = pend + 1;
            s += len;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return false;
        }
    }
    return *p == '\0' && *s == '\0';
}

/* ---------------------------------------------------------- trace context */

typedef struct {
    int ntraceparent;
    const char *traceparent;
    es_buf_t tracestate; /* every tracestate header, joined with ',' as the spec says */
    bool tracestate_long;
} trace_headers_t;

static enum MHD_Result collect_trace(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    trace_headers_t *th = cls;
    (void)kind;
    if (!value)
        return MHD_YES;
    if (!strcasecmp(key, "traceparent")) {
        th->ntraceparent++;
        th->traceparent = value;
    } else if (!strcasecmp(key, "tracestate") && !th->tracestate_long) {
        if (th->tracestate.len)
            es_buf_append(&th->tracestate, ",", 1);
        es_buf_append(&th->tracestate, value, strlen(value));
        /* too long already: dropped whole, whatever comes after */
        th->tracestate_long = th->tracestate.len > ES_TRACESTATE_MAX;
    }
    return MHD_YES;
}

void http_req_trace_start(es_http_req_t *req)
{
    trace_headers_t th = {0};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_trace, &th);
    es_buf_append(&th.tracestate, "", 1); /* NUL-terminated */
    /* several traceparent headers cannot be told apart: none is trusted */
    es_trace_ctx_start(&req->trace, th.ntraceparent == 1 ? th.traceparent : NULL,
                       th.tracestate_long ? NULL : (const char *)th.tracestate.data);
    es_buf_free(&th.tracestate);
}

/* --------------------------------------------------------- request states */

void http_req_unref(es_http_req_t *req)
{
    if (--req->refs > 0)
        return;
    http_resp_clear(&req->resp);
    es_buf_free(&req->body);
    free(req);
}

void http_req_release(es_http_req_t *req)
{
    es_http_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->mu);
    http_req_unref(req);
    pthread_mutex_unlock(&srv->mu);
}

void http_req_run(es_http_server_t *srv, es_http_req_t *req)
{
    req->state = RQ_RUNNING;
    req->refs++; /* the worker's */
    req->next_run = srv->running;
    if (srv->running)
        srv->running->prev_run = req;
    srv->running = req;
}

static void running_unlink(es_http_server_t *srv, es_http_req_t *req)
{
    if (req->prev_run)
        req->prev_run->next_run = req->next_run;
    else
        srv->running = req->next_run;
    if (req->next_run)
        req->next_run->prev_run = req->prev_run;
    req->prev_run = req->next_run = NULL;
}

void http_req_answered(es_http_server_t *srv, es_http_req_t *req)
{
    req->state = RQ_ANSWERED;
    running_unlink(srv, req);
    MHD_resume_connection(req->conn);
}

void http_req_complete(es_http_req_t *req)
{
    es_http_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->mu);
    if (req->state == RQ_RUNNING)
        http_req_answered(srv, req);
    http_req_unref(req);
    pthread_mutex_unlock(&srv->mu);
}

es_http_deferred_t *es_http_defer(es_http_req_t *req)
{
    pthread_mutex_lock(&req->srv->mu);
    req->refs++; /* the holder's own: the worker keeps its until the handler returns */
    req->deferred = true;
    pthread_mutex_unlock(&req->srv->mu);
    return (es_http_deferred_t *)req;
}

void es_http_deferred_json(es_http_deferred_t *d, int status, json_t *body)
{
    es_http_req_t *req = (es_http_req_t *)d;
    es_http_server_t *srv = req->srv;
    /* Under the lock: a stopping server may answer a deferred request itself. */
    pthread_mutex_lock(&srv->mu);
    if (req->state == RQ_RUNNING) {
        es_http_resp_json(&req->resp, status, body);
        http_req_answered(srv, req);
    } else {
        json_decref(body);
    }
    http_req_unref(req);
    pthread_mutex_unlock(&srv->mu);
}
