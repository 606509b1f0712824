/*
 * http_worker.c — the job queue, the workers that run route handlers, and
 * the authorization every handler is run behind.
 *
 * Why suspend and workers rather than a thread per connection: a thread per
 * connection let a thousand idle clients take every thread and fd (select()
 * stops at FD_SETSIZE), health checks included.  Now an idle connection
 * costs an fd and a little memory, and its count is capped in all and per
 * client address.  An event thread suspends the connection of a complete
 * request and queues it here (503 at once when the queue is full); a worker
 * runs the handler, which may block, or defer its answer and return, so a
 * request waiting for an outcome holds no thread.
 *
 * Who may call: every route names an action; with authentication on
 * (auth.h) the worker checks the bearer token (401) and the policy (403)
 * before the handler runs, so no handler can forget it; /healthz and
 * /readyz are always open, /metrics needs the action "metrics" unless the
 * listener says it is open (an admin port the network protects; the event
 * thread answers it then).  Refusals and every admin action go to the
 * access log (component "access", rate-limited for refusals).
 *
 * At stop the workers answer what is still queued 503 and exit; handlers
 * already running finish first.
 */
#include "http_internal.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"

#include <stdio.h>
#include <string.h>

#define ADMIN_ACTION_PREFIX "admin:" /* actions that always go to the access log */

static es_log_limit_t limit_denied = {.burst = 20};

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

/* "-" for an empty name in the access log. */
static const char *or_dash(const char *s)
{
    return s[0] ? s : "-";
}

/* May the caller run this route?  Answers 401 or 403 itself when not, or
 * sets req->to_worker when the check must wait (a JWKS fetch for an unknown
 * key id) and this is an event thread. */
static bool authorized(es_http_server_t *srv, es_http_req_t *req)
{
    char why[HTTP_MSG_MAX];
    const es_auth_t *auth = srv->conf.auth;
    if (!es_auth_enabled(auth)) {
        es_auth_verify(NULL, NULL, true, &req->principal, why, sizeof(why));
        return true;
    }
    es_err_t err = es_auth_verify((es_auth_t *)auth, es_http_req_header(req, "Authorization"),
                                  !req->on_event_thread, &req->principal, why, sizeof(why));
    if (err == ES_ERR_WOULD_BLOCK) {
        req->to_worker = true;
        return false;
    }
    if (err) {
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
                   req->resp.status, req->method, req->path, or_dash(req->action),
                   or_dash(req->principal.subject), or_dash(req->principal.client_id),
                   req->resp.status == 401 ? why : "not permitted");
    return false;
}

/* A RUNNING request no handler will run: the server is stopping. */
static void answer_stopping(es_http_req_t *req)
{
    es_http_resp_error(&req->resp, 503, "unavailable", "the server is stopping");
    http_req_complete(req);
}

bool es_http_req_to_worker(es_http_req_t *req)
{
    if (!req->on_event_thread)
        return false;
    req->to_worker = true;
    return true;
}

/* A request whose never_waits handler must wait after all: queue it for a worker. */
static void requeue(es_http_server_t *srv, es_http_req_t *req)
{
    req->on_event_thread = false;
    req->to_worker = false;
    http_resp_clear(&req->resp); /* the worker runs the handler again from the start */
    pthread_mutex_lock(&srv->mu);
    bool stopping = srv->stopping; /* the workers may be gone: nobody would run it */
    if (!stopping)
        http_jobs_push(srv, req);
    pthread_mutex_unlock(&srv->mu);
    if (stopping)
        answer_stopping(req);
    else
        pthread_cond_signal(&srv->cv);
}

/* The handler runs with the request's trace id on its log lines. */
void http_req_handle(es_http_server_t *srv, es_http_req_t *req)
{
    es_log_trace_set(req->trace.trace_id);
    fill_action(req->route, req, req->action, sizeof(req->action));
    bool allowed = authorized(srv, req);
    if (!allowed && !req->to_worker) {
        http_req_complete(req);
        es_log_trace_set(NULL);
        return;
    }
    if (allowed)
        req->route->handler(srv->conf.opaque, req, &req->resp);
    if (req->to_worker) {
        es_log_trace_set(NULL);
        requeue(srv, req);
        return;
    }
    if (!strncmp(req->action, ADMIN_ACTION_PREFIX, strlen(ADMIN_ACTION_PREFIX)) &&
        !req->deferred) /* every admin action, who, result */
        es_log_info("access", "%d %s %s action=%s sub=%s client=%s", req->resp.status, req->method,
                    req->path, req->action, or_dash(req->principal.subject),
                    or_dash(req->principal.client_id));
    es_log_trace_set(NULL);
    if (req->deferred) {
        http_req_release(req); /* the holder of the es_http_deferred_t completes it */
        return;
    }
    if (!req->resp.status)
        es_http_resp_error(&req->resp, 500, "internal", "handler gave no answer");
    http_req_complete(req);
}

void http_jobs_push(es_http_server_t *srv, es_http_req_t *req)
{
    req->next_job = NULL;
    if (srv->jobs_tail)
        srv->jobs_tail->next_job = req;
    else
        srv->jobs_head = req;
    srv->jobs_tail = req;
    srv->njobs++;
    pthread_cond_signal(&srv->cv);
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
            answer_stopping(req);
        } else {
            http_req_handle(srv, req);
        }
        pthread_mutex_lock(&srv->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

es_err_t http_workers_start(es_http_server_t *srv, char *errstr, size_t errstr_size)
{
    int n = srv->conf.limits.workers;
    srv->workers = es_calloc((size_t)n, sizeof(*srv->workers));
    for (int i = 0; i < n; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv)) {
            snprintf(errstr, errstr_size, "cannot start HTTP worker %d", i);
            return ES_ERR_IO;
        }
        srv->nworkers++;
    }
    return ES_ERR_OK;
}

void http_workers_stop(es_http_server_t *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    srv->nworkers = 0;
}
