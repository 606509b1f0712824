/*
 * http_server.c — libmicrohttpd behind es_http_*: event threads, a bounded
 * pool of handler workers, and limits against clients that hold the server.
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
 *                         ends with complete(): state ANSWERED, resume
 *   event thread          is called again for the resumed connection and
 *                         queues the answer.
 *
 * Why suspend and workers rather than a thread per connection: a thread per
 * connection let a thousand idle clients take every thread and fd (select()
 * stops at FD_SETSIZE), health checks included.  Now an idle connection
 * costs an fd and a little memory, and its count is capped in all and per
 * client address.
 *
 * Slow clients: libmicrohttpd only times out silence, so a client sending
 * a byte every few seconds would hold a connection for ever.  Every
 * connection has a deadline for the request being read (headers and body),
 * counted from its start or from the previous answer; a reaper thread shuts
 * down the socket of one past it (shutdown(2), never close: libmicrohttpd
 * owns the fd and closes it when it sees the end of the stream).  The
 * connection records are removed in libmicrohttpd's CLOSED notification,
 * which it calls before it closes the fd, under the same mutex the reaper
 * holds, so the reaper never touches an fd that was closed or reused.
 *
 * Who may call: every route names an action; with authentication on
 * (auth.h) the worker checks the bearer token (401) and the policy (403)
 * before the handler runs, so no handler can forget it; /healthz and
 * /readyz are always open, /metrics needs the action "metrics" unless the
 * listener says it is open (an admin port the network protects).  Refusals
 * and every admin action go to the access log (component "access",
 * rate-limited for refusals).  TLS is libmicrohttpd's (GnuTLS); with a
 * client CA, a client certificate it signed is required (checked with
 * GnuTLS on the first call of every request).
 *
 * Lifetime of a request context: one reference for libmicrohttpd (dropped
 * in the COMPLETED notification) and one for whoever answers (a worker, or
 * the holder of an es_http_deferred_t).  Suspended connections must all be
 * resumed before libmicrohttpd's daemon may stop (it aborts otherwise), so
 * es_http_server_stop() answers what is left and waits for the resumes.
 */
#include "escqrs/http_server.h"
#include "escqrs/log.h"
#include "escqrs/util.h"
#include "escqrs/mem.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REAPER_PERIOD_MS 200
#define STOP_GRACE_MS    5000 /* deferred answers still open at stop get 503 after this */
#define MAX_RESP_HEADERS 8

const es_conf_def_t es_http_conf_defs[] = {
    {.name = "http.threads",
     .type = ES_CONF_INT,
     .defval = "2",
     .min = 1,
     .max = 64,
     .desc = "Event threads reading connections (epoll); they also answer /healthz, /readyz "
             "and /metrics"},
    {.name = "http.workers",
     .type = ES_CONF_INT,
     .defval = "16",
     .min = 1,
     .max = 1024,
     .desc = "Threads running route handlers (a handler may wait, e.g. for min_position)"},
    {.name = "http.queue.max",
     .type = ES_CONF_INT,
     .defval = "1024",
     .min = 1,
     .max = 1000000,
     .desc = "Requests waiting for a worker; past it new requests get 503 at once"},
    {.name = "http.max.connections",
     .type = ES_CONF_INT,
     .defval = "10000",
     .min = 16,
     .max = 1000000,
     .desc = "Open connections at most; more are closed at once (the open file limit is raised "
             "to fit, within the hard limit)"},
    {.name = "http.max.connections.per.client",
     .type = ES_CONF_INT,
     .defval = "256",
     .min = 1,
     .max = 1000000,
     .desc = "Open connections at most from one client IP address"},
    {.name = "http.request.timeout.ms",
     .type = ES_CONF_INT,
     .defval = "10000",
     .min = 100,
     .max = 3600000,
     .desc = "A request's headers and body must arrive within this (counted from the "
             "connection's start or its previous answer), else the connection is closed"},
    {.name = "http.tls.cert.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "PEM certificate (chain) of the HTTP listener; empty: plain HTTP"},
    {.name = "http.tls.key.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "PEM private key of http.tls.cert.file"},
    {.name = "http.tls.client.ca.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "PEM CA: when set, clients must present a certificate it signed (mutual TLS)"},
    {.name = "http.idle.timeout.s",
     .type = ES_CONF_INT,
     .defval = "30",
     .min = 1,
     .max = 86400,
     .desc = "A connection that sends and receives nothing this long is closed"},
    {.name = NULL},
};

typedef enum {
    RQ_READING,  /* headers in, body arriving */
    RQ_RUNNING,  /* queued, in a handler, or deferred: connection suspended */
    RQ_ANSWERED, /* the answer is in resp: resume pending or done */
} rq_state_t;

/* One connection, for the request deadline (libmicrohttpd's socket context). */
typedef struct conn_s {
    struct conn_s *prev, *next;
    int fd;
    int64_t phase_start_ms; /* connection start, or its previous answer */
    bool busy;              /* a request is being handled: its own deadlines apply */
    bool reaped;
} conn_t;

struct es_http_resp_s {
    int status;
    es_buf_t body;
    const char *content_type;
    char *hnames[MAX_RESP_HEADERS], *hvalues[MAX_RESP_HEADERS];
    size_t nheaders;
};

struct es_http_req_s {
    es_http_server_t *srv;
    struct MHD_Connection *conn;
    conn_t *sock;
    const char *method, *path;
    char params[ES_HTTP_MAX_PARAMS][ES_HTTP_PARAM_MAX];
    size_t nparams;
    const es_http_route_t *route;
    es_principal_t principal;
    char action[512];
    es_buf_t body;
    size_t body_seen; /* all bytes received, stored or not */
    bool too_large;
    rq_state_t state; /* guarded by srv->mu */
    bool suspended;   /* guarded by srv->mu */
    bool deferred;
    int refs; /* guarded by srv->mu */
    es_http_resp_t resp;
    struct es_http_req_s *next_job;
    struct es_http_req_s *prev_run, *next_run; /* srv->running, while RUNNING */
};

struct es_http_server_s {
    es_http_server_conf_t conf;
    struct MHD_Daemon *daemon;
    int port;

    pthread_mutex_t mu; /* request states, the job queue, counts */
    pthread_cond_t cv;  /* jobs queued; suspended count changed */
    es_http_req_t *jobs_head, *jobs_tail;
    es_http_req_t *running; /* RUNNING requests: queued, in a handler or deferred */
    size_t njobs, nsuspended;
    bool stopping;
    pthread_t *workers;
    int nworkers;

    pthread_mutex_t conn_mu; /* the connection list */
    conn_t *conns;
    pthread_t reaper;
    bool reaper_started;
    atomic_bool reaper_stop;

    es_counter_t *c_timed_out, *c_busy, *c_denied;
    char *tls_cert, *tls_key, *tls_ca; /* PEM contents, kept for libmicrohttpd */
};

static es_log_limit_t limit_mhd, limit_reaper, limit_denied = {.burst = 20};

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

const char *es_http_req_header(const es_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const es_principal_t *es_http_req_principal(const es_http_req_t *req)
{
    return &req->principal;
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
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    es_http_resp_json(resp, status, es_http_error_body(code, msg));
}

void es_http_resp_header(es_http_resp_t *resp, const char *name, const char *value)
{
    if (resp->nheaders == MAX_RESP_HEADERS)
        return;
    resp->hnames[resp->nheaders] = es_strdup(name);
    resp->hvalues[resp->nheaders] = es_strdup(value);
    resp->nheaders++;
}

static void resp_clear(es_http_resp_t *resp)
{
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

/* --------------------------------------------------------- request states */

/* Drop one reference (srv->mu held); the last one frees. */
static void req_unref(es_http_req_t *req)
{
    if (--req->refs > 0)
        return;
    resp_clear(&req->resp);
    es_buf_free(&req->body);
    free(req);
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

/* RUNNING → ANSWERED (srv->mu held): the event thread queues resp on resume. */
static void answered(es_http_server_t *srv, es_http_req_t *req)
{
    req->state = RQ_ANSWERED;
    running_unlink(srv, req);
    MHD_resume_connection(req->conn);
}

/*
 * A worker's answer is in req->resp: resume the connection so its event
 * thread queues it, and drop the worker's reference.
 */
static void complete(es_http_req_t *req)
{
    es_http_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->mu);
    if (req->state == RQ_RUNNING)
        answered(srv, req);
    req_unref(req);
    pthread_mutex_unlock(&srv->mu);
}

es_http_deferred_t *es_http_defer(es_http_req_t *req)
{
    req->deferred = true;
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
        answered(srv, req);
    } else {
        json_decref(body);
    }
    req_unref(req);
    pthread_mutex_unlock(&srv->mu);
}

/* ------------------------------------------------------------------ workers */

/* The route's action with its {names} replaced by the request's parameters. */
static void fill_action(const es_http_route_t *r, const es_http_req_t *req, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (const char *a = r->action; a && *a && o + 1 < outsz;) {
        if (*a != '{') {
            out[o++] = *a++;
            continue;
        }
        const char *close = strchr(a, '}');
        if (!close)
            break;
        /* the index of this {name} among the pattern's names */
        size_t idx = 0, namelen = (size_t)(close - a + 1);
        const char *p = r->pattern;
        bool found = false;
        for (; (p = strchr(p, '{')); p++, idx++)
            if (!strncmp(p, a, namelen)) {
                found = true;
                break;
            }
        const char *v = found ? es_http_req_param(req, idx) : NULL;
        for (; v && *v && o + 1 < outsz; v++)
            out[o++] = *v;
        a = close + 1;
    }
    out[o] = '\0';
}

/* May the caller run this route?  Answers 401 or 403 itself when not. */
static bool authorized(es_http_server_t *srv, es_http_req_t *req)
{
    char why[512];
    const es_auth_t *auth = srv->conf.auth;
    if (!es_auth_enabled(auth)) {
        es_auth_verify(NULL, NULL, &req->principal, why, sizeof(why));
        return true;
    }
    if (es_auth_verify((es_auth_t *)auth, es_http_req_header(req, "Authorization"), &req->principal,
                       why, sizeof(why))) {
        es_http_resp_header(&req->resp, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        es_http_resp_error(&req->resp, 401, "unauthorized", "%s", why);
    } else if (!req->action[0] || !es_auth_allows(auth, &req->principal, req->action)) {
        es_http_resp_error(&req->resp, 403, "forbidden", "%s may not %s", req->principal.subject,
                           req->action[0] ? req->action : "call this route");
    } else {
        return true;
    }
    if (srv->c_denied)
        es_counter_add(srv->c_denied, 1);
    es_log_limited(&limit_denied, ES_LOG_WARN, "access", "%d %s %s action=%s sub=%s client=%s: %s",
                   req->resp.status, req->method, req->path, req->action[0] ? req->action : "-",
                   req->principal.subject[0] ? req->principal.subject : "-",
                   req->principal.client_id[0] ? req->principal.client_id : "-",
                   req->resp.status == 401 ? why : "not permitted");
    return false;
}

static void run_handler(es_http_server_t *srv, es_http_req_t *req)
{
    fill_action(req->route, req, req->action, sizeof(req->action));
    if (!authorized(srv, req)) {
        complete(req);
        return;
    }
    req->route->handler(srv->conf.opaque, req, &req->resp);
    if (!strncmp(req->action, "admin:", 6) && !req->deferred) /* every admin action, who, result */
        es_log_info("access", "%d %s %s action=%s sub=%s client=%s", req->resp.status, req->method,
                    req->path, req->action,
                    req->principal.subject[0] ? req->principal.subject : "-",
                    req->principal.client_id[0] ? req->principal.client_id : "-");
    if (req->deferred)
        return; /* the holder of the es_http_deferred_t completes it */
    if (!req->resp.status)
        es_http_resp_error(&req->resp, 500, "internal", "handler gave no answer");
    complete(req);
}

static void *worker_main(void *arg)
{
    es_http_server_t *srv = arg;
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        while (!srv->jobs_head && !srv->stopping)
            pthread_cond_wait(&srv->cv, &srv->mu);
        es_http_req_t *req = srv->jobs_head;
        if (!req)
            break; /* stopping and nothing left */
        srv->jobs_head = req->next_job;
        if (!srv->jobs_head)
            srv->jobs_tail = NULL;
        srv->njobs--;
        pthread_mutex_unlock(&srv->mu);
        if (srv->stopping) {
            es_http_resp_error(&req->resp, 503, "unavailable", "the server is stopping");
            complete(req);
        } else {
            run_handler(srv, req);
        }
        pthread_mutex_lock(&srv->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* ----------------------------------------------------------- event threads */

static void builtin_routes(es_http_server_t *srv, es_http_req_t *req, es_http_resp_t *resp,
                           bool *handled)
{
    *handled = true;
    if (!strcmp(req->path, "/healthz")) {
        es_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
    } else if (!strcmp(req->path, "/readyz")) {
        char why[1400] = "";
        bool ready = !srv->conf.ready || srv->conf.ready(srv->conf.opaque, why, sizeof(why));
        if (ready)
            es_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ready"));
        else
            es_http_resp_json(resp, 503,
                              json_pack("{s:s, s:s}", "status", "not_ready", "reason", why));
    } else if (!strcmp(req->path, "/metrics") && srv->conf.metrics &&
               (srv->conf.metrics_open || !es_auth_enabled(srv->conf.auth))) {
        es_buf_t out = {0};
        es_metrics_render(srv->conf.metrics, &out);
        es_http_resp_text(resp, 200, "text/plain; version=0.0.4", out.data ? out.data : "",
                          out.len);
        es_buf_free(&out);
    } else {
        *handled = false;
    }
}

static void metrics_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    es_http_server_t *srv = req->srv;
    es_buf_t out = {0};
    (void)opaque;
    es_metrics_render(srv->conf.metrics, &out);
    es_http_resp_text(resp, 200, "text/plain; version=0.0.4", out.data ? out.data : "", out.len);
    es_buf_free(&out);
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
    static const es_http_route_t metrics_route = {"GET", "/metrics", metrics_handler, "metrics"};
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
    if (path_known)
        es_http_resp_error(resp, 405, "method_not_allowed", "%s is not allowed on %s", req->method,
                           req->path);
    else
        es_http_resp_error(resp, 404, "not_found", "no such resource: %s", req->path);
    return false;
}

static enum MHD_Result queue_answer(struct MHD_Connection *conn, es_http_resp_t *resp, bool close)
{
    struct MHD_Response *mresp = MHD_create_response_from_buffer(
        resp->body.len, resp->body.data ? resp->body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(mresp, "Content-Type",
                            resp->content_type ? resp->content_type : "application/json");
    for (size_t i = 0; i < resp->nheaders; i++)
        MHD_add_response_header(mresp, resp->hnames[i], resp->hvalues[i]);
    if (close)
        MHD_add_response_header(mresp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, mresp);
    MHD_destroy_response(mresp);
    return ret;
}

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

static void sock_set_busy(es_http_server_t *srv, conn_t *sock, bool busy)
{
    if (!sock)
        return;
    pthread_mutex_lock(&srv->conn_mu);
    sock->busy = busy;
    if (!busy)
        sock->phase_start_ms = es_mono_ms();
    pthread_mutex_unlock(&srv->conn_mu);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    es_http_server_t *srv = cls;
    es_http_req_t *req = *con_cls;
    (void)version;

    if (!req) { /* headers are in */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        req = es_calloc(1, sizeof(*req));
        req->srv = srv;
        req->conn = conn;
        req->sock = ci ? ci->socket_context : NULL;
        req->method = method;
        req->path = url;
        req->refs = 1; /* libmicrohttpd's, dropped in on_completed */
        *con_cls = req;
        if (srv->tls_ca && !client_cert_ok(conn)) {
            es_http_resp_error(&req->resp, 403, "forbidden",
                               "a client certificate signed by the configured CA is required");
            req->state = RQ_ANSWERED;
            sock_set_busy(srv, req->sock, true);
            return queue_answer(conn, &req->resp, true);
        }
        if (framing_refused(conn, &req->resp)) {
            req->state = RQ_ANSWERED;
            sock_set_busy(srv, req->sock, true);
            return queue_answer(conn, &req->resp, true);
        }
        return MHD_YES;
    }
    if (req->state == RQ_READING && *upload_data_size) {
        req->body_seen += *upload_data_size;
        if (req->body_seen > srv->conf.max_body) {
            req->too_large = true;
            es_buf_free(&req->body);
        } else {
            es_buf_append(&req->body, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->state == RQ_ANSWERED) { /* resumed after a worker's or a deferred answer */
        pthread_mutex_lock(&srv->mu);
        bool was_suspended = req->suspended;
        req->suspended = false;
        if (was_suspended) {
            srv->nsuspended--;
            pthread_cond_broadcast(&srv->cv);
        }
        pthread_mutex_unlock(&srv->mu);
        return queue_answer(conn, &req->resp, false);
    }
    if (req->state != RQ_READING)
        return MHD_YES; /* cannot happen while suspended; be safe */

    /* The whole request is in: the deadline no longer applies to it. */
    sock_set_busy(srv, req->sock, true);
    if (!route(srv, req)) {
        req->state = RQ_ANSWERED;
        return queue_answer(conn, &req->resp, false);
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
        es_http_resp_header(&req->resp, "Retry-After", "1");
        return queue_answer(conn, &req->resp, false);
    }
    req->state = RQ_RUNNING;
    req->refs++; /* the answering party's */
    req->next_run = srv->running;
    if (srv->running)
        srv->running->prev_run = req;
    srv->running = req;
    req->suspended = true;
    srv->nsuspended++;
    MHD_suspend_connection(conn);
    req->next_job = NULL;
    if (srv->jobs_tail)
        srv->jobs_tail->next_job = req;
    else
        srv->jobs_head = req;
    srv->jobs_tail = req;
    srv->njobs++;
    pthread_cond_signal(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    es_http_server_t *srv = cls;
    es_http_req_t *req = *con_cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    sock_set_busy(srv, req->sock, false); /* the next request's deadline starts now */
    pthread_mutex_lock(&srv->mu);
    if (req->suspended) { /* closed before its resume was processed */
        req->suspended = false;
        srv->nsuspended--;
        pthread_cond_broadcast(&srv->cv);
    }
    req_unref(req);
    pthread_mutex_unlock(&srv->mu);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    es_http_server_t *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_t *c = es_calloc(1, sizeof(*c));
        c->fd = ci ? ci->connect_fd : -1;
        c->phase_start_ms = es_mono_ms();
        pthread_mutex_lock(&srv->conn_mu);
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        pthread_mutex_unlock(&srv->conn_mu);
        *socket_context = c;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_t *c = *socket_context;
        pthread_mutex_lock(&srv->conn_mu);
        if (c->prev)
            c->prev->next = c->next;
        else
            srv->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&srv->conn_mu);
        free(c);
        *socket_context = NULL;
    }
}

/* Close connections whose request did not arrive in time (see the top). */
static void *reaper_main(void *arg)
{
    es_http_server_t *srv = arg;
    while (!atomic_load(&srv->reaper_stop)) {
        usleep(REAPER_PERIOD_MS * 1000);
        int64_t now = es_mono_ms();
        size_t n = 0;
        pthread_mutex_lock(&srv->conn_mu);
        for (conn_t *c = srv->conns; c; c = c->next) {
            if (c->busy || c->reaped || c->fd < 0 ||
                now - c->phase_start_ms <= srv->conf.limits.request_timeout_ms)
                continue;
            shutdown(c->fd, SHUT_RDWR);
            c->reaped = true;
            n++;
        }
        pthread_mutex_unlock(&srv->conn_mu);
        if (n) {
            if (srv->c_timed_out)
                es_counter_add(srv->c_timed_out, (double)n);
            es_log_limited(&limit_reaper, ES_LOG_WARN, "http",
                           "closed %zu connection(s) whose request did not arrive within %d ms", n,
                           srv->conf.limits.request_timeout_ms);
        }
    }
    return NULL;
}

__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    /* Many of these are caused by clients (limits reached, resets): never a flood. */
    es_log_limited(&limit_mhd, ES_LOG_WARN, "http", "%s", msg);
}

/* ------------------------------------------------------------------ set-up */

void es_http_server_conf_from(const es_conf_t *conf, es_http_server_conf_t *hc)
{
    hc->listen = es_conf_get(conf, "http.listen");
    hc->limits.threads = (int)es_conf_get_int(conf, "http.threads");
    hc->limits.workers = (int)es_conf_get_int(conf, "http.workers");
    hc->limits.queue_max = (int)es_conf_get_int(conf, "http.queue.max");
    hc->limits.max_connections = (unsigned)es_conf_get_int(conf, "http.max.connections");
    hc->limits.max_per_client = (unsigned)es_conf_get_int(conf, "http.max.connections.per.client");
    hc->limits.request_timeout_ms = (int)es_conf_get_int(conf, "http.request.timeout.ms");
    hc->limits.idle_timeout_s = (int)es_conf_get_int(conf, "http.idle.timeout.s");
    const char *cert = es_conf_get(conf, "http.tls.cert.file");
    const char *key = es_conf_get(conf, "http.tls.key.file");
    const char *ca = es_conf_get(conf, "http.tls.client.ca.file");
    hc->tls_cert_file = cert && *cert ? cert : NULL;
    hc->tls_key_file = key && *key ? key : NULL;
    hc->tls_client_ca_file = ca && *ca ? ca : NULL;
}

/* Zeroes take the declared defaults, so tests and tools need not set them. */
static void limits_default(es_http_limits_t *l)
{
    if (l->threads <= 0)
        l->threads = 2;
    if (l->workers <= 0)
        l->workers = 16;
    if (l->queue_max <= 0)
        l->queue_max = 1024;
    if (!l->max_connections)
        l->max_connections = 10000;
    if (!l->max_per_client)
        l->max_per_client = 256;
    if (l->request_timeout_ms <= 0)
        l->request_timeout_ms = 10000;
    if (l->idle_timeout_s <= 0)
        l->idle_timeout_s = 30;
}

/* Room for the connections: raise the soft open-file limit, within the hard one. */
static void fit_fd_limit(es_http_limits_t *l)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)l->max_connections + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < want) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            rl.rlim_cur = old;
    }
    if (rl.rlim_cur < want) {
        unsigned fit = rl.rlim_cur > 1024 ? (unsigned)(rl.rlim_cur - 1024) : 64;
        es_log_warn("http",
                    "open file limit %llu is too low for http.max.connections=%u: serving at "
                    "most %u connections",
                    (unsigned long long)rl.rlim_cur, l->max_connections, fit);
        l->max_connections = fit;
    }
}

static void stop_workers(es_http_server_t *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    srv->nworkers = 0;
}

es_http_server_t *es_http_server_start(const es_http_server_conf_t *conf, char *errstr,
                                       size_t errstr_size)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    const char *colon = conf->listen ? strrchr(conf->listen, ':') : NULL;
    char host[64];
    long port;
    char *end = NULL;

    if (!colon || (size_t)(colon - conf->listen) >= sizeof(host)) {
        snprintf(errstr, errstr_size, "listen address \"%s\" is not host:port",
                 conf->listen ? conf->listen : "");
        return NULL;
    }
    memcpy(host, conf->listen, (size_t)(colon - conf->listen));
    host[colon - conf->listen] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(errstr, errstr_size, "listen address \"%s\" is not an IPv4 host:port",
                 conf->listen);
        return NULL;
    }
    addr.sin_port = htons((uint16_t)port);

    es_http_server_t *srv = es_calloc(1, sizeof(*srv));
    srv->conf = *conf;
    limits_default(&srv->conf.limits);
    fit_fd_limit(&srv->conf.limits);
    const es_http_limits_t *l = &srv->conf.limits;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    pthread_mutex_init(&srv->conn_mu, NULL);
    if (conf->metrics) {
        srv->c_timed_out =
            es_metrics_counter(conf->metrics, "escqrs_http_connections_timed_out_total",
                               "Connections closed because their request did not arrive within "
                               "http.request.timeout.ms",
                               NULL);
        srv->c_busy = es_metrics_counter(conf->metrics, "escqrs_http_busy_total",
                                         "Requests answered 503 because every worker was busy "
                                         "and the queue full",
                                         NULL);
        srv->c_denied = es_metrics_counter(conf->metrics, "escqrs_http_denied_total",
                                           "Requests refused 401 or 403", NULL);
    }
    srv->workers = es_calloc((size_t)l->workers, sizeof(*srv->workers));
    for (int i = 0; i < l->workers; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv)) {
            snprintf(errstr, errstr_size, "cannot start HTTP worker %d", i);
            goto fail;
        }
        srv->nworkers++;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (conf->tls_cert_file || conf->tls_key_file) {
        srv->tls_cert = conf->tls_cert_file ? es_read_file(conf->tls_cert_file) : NULL;
        srv->tls_key = conf->tls_key_file ? es_read_file(conf->tls_key_file) : NULL;
        if (!srv->tls_cert || !srv->tls_key) {
            snprintf(errstr, errstr_size, "%s: cannot read it",
                     !srv->tls_cert ? "http.tls.cert.file" : "http.tls.key.file");
            goto fail;
        }
        flags |= MHD_USE_TLS;
    }
    if (conf->tls_client_ca_file && !(srv->tls_ca = es_read_file(conf->tls_client_ca_file))) {
        snprintf(errstr, errstr_size, "http.tls.client.ca.file: cannot read it");
        goto fail;
    }
    if (srv->tls_ca && !(flags & MHD_USE_TLS)) {
        snprintf(errstr, errstr_size, "http.tls.client.ca.file needs http.tls.cert.file");
        goto fail;
    }
    struct MHD_OptionItem tls_opts[] = {
        {srv->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, srv->tls_cert},
        {srv->tls_key ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, srv->tls_key},
        {srv->tls_ca ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, srv->tls_ca},
        {MHD_OPTION_END, 0, NULL},
    };
    /* an END before the last entry ends the array early: compact the used ones */
    size_t used = 0;
    for (size_t i = 0; i < 3; i++)
        if (tls_opts[i].option != MHD_OPTION_END)
            tls_opts[used++] = tls_opts[i];
    tls_opts[used] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(l->threads > 1 ? l->threads : 0),
        MHD_OPTION_CONNECTION_LIMIT, l->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        l->max_per_client, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)l->idle_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        srv, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(errstr, errstr_size, "cannot listen on %s (in use, or not a local address?)",
                 conf->listen);
        goto fail;
    }
    if (pthread_create(&srv->reaper, NULL, reaper_main, srv)) {
        snprintf(errstr, errstr_size, "cannot start the HTTP deadline thread");
        goto fail;
    }
    srv->reaper_started = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : (int)port;
    es_log_info("http",
                "listening on %s:%d (%d event thread(s), %d worker(s), at most %u connections, %u "
                "per client, request deadline %d ms)",
                host, srv->port, l->threads, l->workers, l->max_connections, l->max_per_client,
                l->request_timeout_ms);
    return srv;
fail:
    stop_workers(srv);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    free(srv->workers);
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv->tls_ca);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->conn_mu);
    free(srv);
    return NULL;
}

int es_http_server_port(const es_http_server_t *srv)
{
    return srv->port;
}

/* Wait (bounded) until every suspended connection has been resumed. */
static bool wait_resumed(es_http_server_t *srv, int timeout_ms)
{
    struct timespec dl = es_deadline_in_ms(timeout_ms);
    pthread_mutex_lock(&srv->mu);
    while (srv->nsuspended && pthread_cond_timedwait(&srv->cv, &srv->mu, &dl) == 0)
        ;
    bool done = srv->nsuspended == 0;
    pthread_mutex_unlock(&srv->mu);
    return done;
}

/*
 * The server's own 503 for every request still waiting for a deferred
 * answer (the workers are gone, so every RUNNING request is deferred).  The
 * holder's reference is dropped with it: its handle is void from here on.
 */
static void answer_open_requests(es_http_server_t *srv)
{
    size_t n = 0;
    pthread_mutex_lock(&srv->mu);
    while (srv->running) {
        es_http_req_t *req = srv->running;
        es_http_resp_error(&req->resp, 503, "unavailable", "the server is stopping");
        answered(srv, req);
        req_unref(req); /* the holder's */
        n++;
    }
    pthread_mutex_unlock(&srv->mu);
    if (n)
        es_log_warn("http", "answered %zu deferred request(s) 503 at stop", n);
}

void es_http_server_stop(es_http_server_t *srv)
{
    if (!srv)
        return;
    MHD_socket lfd = MHD_quiesce_daemon(srv->daemon); /* accept no more connections */
    stop_workers(srv);                                /* queued requests get 503 */
    if (!wait_resumed(srv, STOP_GRACE_MS)) {
        answer_open_requests(srv);
        if (!wait_resumed(srv, STOP_GRACE_MS))
            es_log_error("http", "%zu connection(s) still suspended at stop", srv->nsuspended);
    }
    atomic_store(&srv->reaper_stop, true);
    if (srv->reaper_started)
        pthread_join(srv->reaper, NULL);
    if (srv->nsuspended == 0) {
        MHD_stop_daemon(srv->daemon); /* it aborts the process with suspended connections */
        if (lfd != MHD_INVALID_SOCKET)
            close(lfd); /* ours since the quiesce, closed only after the stop */
    }
    free(srv->workers);
    pthread_mutex_lock(&srv->conn_mu);
    for (conn_t *c = srv->conns, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    pthread_mutex_unlock(&srv->conn_mu);
    pthread_mutex_destroy(&srv->conn_mu);
    if (srv->nsuspended == 0) {
        pthread_mutex_destroy(&srv->mu);
        pthread_cond_destroy(&srv->cv);
        free(srv->tls_cert);
        free(srv->tls_key);
        free(srv->tls_ca);
        free(srv);
    }
}
