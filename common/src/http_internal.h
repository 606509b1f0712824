/*
 * http_internal.h — private to the HTTP server (common/src/http_*.c): the
 * request, connection and server structs, and the calls the files make to
 * each other.  Nothing outside those files includes it.
 *
 * The server is cut by concern, each file with its own design comment:
 *   http_server.c   configuration, set-up and stop
 *   http_events.c   libmicrohttpd's callbacks on the event threads: reading,
 *                   routing, the built-in routes, queueing answers
 *   http_worker.c   the job queue, the handler workers, authorization
 *   http_request.c  the request and response API, the request states
 *   http_conns.c    connection records and the reaper of slow requests
 * Layering (no file calls one above it): http_server.c uses every other;
 * http_events.c uses http_worker.c, http_request.c and http_conns.c;
 * http_worker.c uses http_request.c; http_request.c and http_conns.c use
 * none of the others.
 *
 * Locks: srv->mu guards the request states, the running list, the job
 * queue and the counts (the fields marked below); srv->conn_mu guards the
 * connection list and each conn_t.  No code holds both at once.
 */
#ifndef ESCQRS_HTTP_INTERNAL_H
#define ESCQRS_HTTP_INTERNAL_H

#include "escqrs/http_server.h"
#include "escqrs/trace.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define HTTP_MAX_RESP_HEADERS 8
#define HTTP_ACTION_MAX       512 /* a route's action with its {names} filled in */
#define HTTP_MSG_MAX          512 /* one error message or log line */

typedef enum {
    RQ_READING,  /* headers in, body arriving */
    RQ_RUNNING,  /* queued, in a handler, or deferred: connection suspended */
    RQ_ANSWERED, /* the answer is in resp: resume pending or done */
} rq_state_t;

/* One connection, for the request deadline (libmicrohttpd's socket context). */
typedef struct conn_s {
    struct conn_s *prev, *next; /* srv->conns; guarded by srv->conn_mu, as are the fields */
    int fd;
    int64_t phase_start_ms; /* connection start, or its previous answer */
    bool busy;              /* a request is being handled: its own deadlines apply */
    bool reaped;
} conn_t;

struct es_http_resp_s {
    int status;
    es_buf_t body;
    /* a streamed body instead (es_http_resp_stream), until libmicrohttpd owns it */
    es_http_body_reader_t *stream_read;
    void (*stream_done)(void *opaque);
    void *stream_opaque;
    uint64_t stream_size;
    const char *content_type;
    char *hnames[HTTP_MAX_RESP_HEADERS], *hvalues[HTTP_MAX_RESP_HEADERS];
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
    es_trace_ctx_t trace; /* this server's span: set with the headers, read by everyone */
    int64_t t0_ms;        /* monotonic, when the headers were in (the access log) */
    char action[HTTP_ACTION_MAX];
    es_buf_t body;
    size_t body_seen; /* all bytes received, stored or not */
    bool too_large;
    rq_state_t state; /* guarded by srv->mu */
    bool suspended;   /* guarded by srv->mu */
    bool deferred;
    bool on_event_thread; /* its handler runs on the event thread (a never_waits route) */
    bool to_worker;       /* that handler asked for a worker (es_http_req_to_worker) */
    int refs;             /* guarded by srv->mu */
    es_http_resp_t resp;
    struct es_http_req_s *next_job;
    struct es_http_req_s *prev_run, *next_run; /* srv->running, while RUNNING */
};

struct es_http_server_s {
    es_http_server_conf_t conf;
    struct MHD_Daemon *daemon;
    int port;

    pthread_mutex_t mu; /* request states, the job queue, counts */
    pthread_cond_t cv;  /* jobs queued: the workers wait on it */
    /* the last suspended request ended (stop waits on it); not cv, so that a
     * resume, once per deferred answer, wakes no idle worker */
    pthread_cond_t resumed_cv;
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
    atomic_bool refusing; /* stopping: every new connection is closed at accept */

    es_counter_t *c_timed_out, *c_busy, *c_denied;
    char *tls_cert, *tls_key, *tls_ca; /* PEM contents, kept for libmicrohttpd */
};

/* ---------------------------------------------- http_request.c: states */

/* READING → RUNNING (srv->mu held): the worker's reference is taken. */
void http_req_run(es_http_server_t *srv, es_http_req_t *req);
/* RUNNING → ANSWERED (srv->mu held): the event thread queues resp on resume. */
void http_req_answered(es_http_server_t *srv, es_http_req_t *req);
/* Free what an answer holds and zero it. */
void http_resp_clear(es_http_resp_t *resp);
/* Drop one reference (srv->mu held); the last one frees. */
void http_req_unref(es_http_req_t *req);
/* http_req_unref() under srv->mu: a worker lets go of a request it deferred. */
void http_req_release(es_http_req_t *req);
/* A worker's answer is in req->resp: resume, and drop the worker's reference. */
void http_req_complete(es_http_req_t *req);
/* Open the request's span from its traceparent and tracestate headers (event thread). */
void http_req_trace_start(es_http_req_t *req);

/* ---------------------------------------------- http_worker.c: workers */

/* Queue a RUNNING request for a worker (srv->mu held). */
void http_jobs_push(es_http_server_t *srv, es_http_req_t *req);
/* Authorize and run a RUNNING request's handler, then answer, defer or requeue it (no lock
 * held): a worker's job, or an event thread's for a never_waits route. */
void http_req_handle(es_http_server_t *srv, es_http_req_t *req);
/* Start conf.limits.workers workers; an error names the one that did not start. */
es_err_t http_workers_start(es_http_server_t *srv, char *errstr, size_t errstr_size);
/* Set stopping, answer what is queued 503, join the workers. */
void http_workers_stop(es_http_server_t *srv);

/* ---------------------------------------------- http_events.c: callbacks */

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                       enum MHD_RequestTerminationCode toe);

/* ---------------------------------------------- http_conns.c: deadlines */

void http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);
/* A request is being handled (its own deadlines apply), or done (the next one's starts). */
void http_conn_set_busy(es_http_server_t *srv, conn_t *sock, bool busy);
es_err_t http_reaper_start(es_http_server_t *srv, char *errstr, size_t errstr_size);
void http_reaper_stop(es_http_server_t *srv);
/* Free the connection records left at stop. */
void http_conns_free(es_http_server_t *srv);

#endif
