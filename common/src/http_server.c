/*
 * http_server.c — libmicrohttpd behind es_http_*: the `http.*` keys, set-up
 * and stop.  The server is cut by concern (http_internal.h lists the files):
 * the event threads' callbacks (http_events.c), the handler workers and
 * authorization (http_worker.c), the request API and states
 * (http_request.c), connection records and the reaper of slow requests
 * (http_conns.c).
 *
 * Set-up: the limits get their declared defaults and the open-file limit is
 * raised to fit the connections; the workers start before the daemon, so a
 * request never waits for a pool that is not there; the reaper starts last.
 *
 * Stop: suspended connections must all be resumed before libmicrohttpd's
 * daemon may stop (it aborts otherwise), so es_http_server_stop() accepts
 * no more connections (closed at accept by the accept policy, not by
 * MHD_quiesce_daemon(): on an epoll daemon with event threads that races
 * with the threads' own removal of the listen socket and aborts the process,
 * a defect of libmicrohttpd 0.9.75 that CI hit), lets the workers finish (what is still queued gets
 * 503), waits a grace period for deferred answers, answers what is left 503
 * itself, and waits for the resumes.  If some connection is still suspended
 * after that, the daemon is not stopped and the server object is not freed
 * (a leak, logged) rather than freed under the daemon's threads.
 */
#include "http_internal.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define STOP_GRACE_MS 5000 /* deferred answers still open at stop get 503 after this */
#define FD_HEADROOM   1024 /* open files beside the connections: stores, Kafka, logs */
#define FD_MIN_CONNS  64   /* connections served when the file limit leaves no room */
#define HOST_MAX      64   /* the host part of http.listen (an IPv4 address) */

/* Declared defaults: the configuration table and limits_default() share them. */
#define DEFAULT_THREADS            2
#define DEFAULT_WORKERS            16
#define DEFAULT_QUEUE_MAX          1024
#define DEFAULT_MAX_CONNECTIONS    10000
#define DEFAULT_MAX_PER_CLIENT     256
#define DEFAULT_REQUEST_TIMEOUT_MS 10000
#define DEFAULT_IDLE_TIMEOUT_S     30
#define STR_(x)                    #x
#define STR(x)                     STR_(x)

const es_conf_def_t es_http_conf_defs[] = {
    {.name = "http.threads",
     .type = ES_CONF_INT,
     .defval = STR(DEFAULT_THREADS),
     .min = 1,
     .max = 64,
     .desc = "Event threads reading connections (epoll); they also answer /healthz, /readyz "
             "and /metrics"},
    {.name = "http.workers",
     .type = ES_CONF_INT,
     .defval = STR(DEFAULT_WORKERS),
     .min = 1,
     .max = 1024,
     .desc = "Threads running route handlers (a handler may wait, e.g. for min_position)"},
    {.name = "http.queue.max",
     .type = ES_CONF_INT,
     .defval = STR(DEFAULT_QUEUE_MAX),
     .min = 1,
     .max = 1000000,
     .desc = "Requests waiting for a worker; past it new requests get 503 at once"},
    {.name = "http.max.connections",
     .type = ES_CONF_INT,
     .defval = STR(DEFAULT_MAX_CONNECTIONS),
     .min = 16,
     .max = 1000000,
     .desc = "Open connections at most; more are closed at once (the open file limit is raised "
             "to fit, within the hard limit)"},
    {.name = "http.max.connections.per.client",
     .type = ES_CONF_INT,
     .defval = STR(DEFAULT_MAX_PER_CLIENT),
     .min = 1,
     .max = 1000000,
     .desc = "Open connections at most from one client IP address"},
    {.name = "http.request.timeout.ms",
     .type = ES_CONF_INT,
     .defval = STR(DEFAULT_REQUEST_TIMEOUT_MS),
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
     .defval = STR(DEFAULT_IDLE_TIMEOUT_S),
     .min = 1,
     .max = 86400,
     .desc = "A connection that sends and receives nothing this long is closed"},
    {.name = NULL},
};

static es_log_limit_t limit_mhd;

__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[HTTP_MSG_MAX];
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
        l->threads = DEFAULT_THREADS;
    if (l->workers <= 0)
        l->workers = DEFAULT_WORKERS;
    if (l->queue_max <= 0)
        l->queue_max = DEFAULT_QUEUE_MAX;
    if (!l->max_connections)
        l->max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!l->max_per_client)
        l->max_per_client = DEFAULT_MAX_PER_CLIENT;
    if (l->request_timeout_ms <= 0)
        l->request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
    if (l->idle_timeout_s <= 0)
        l->idle_timeout_s = DEFAULT_IDLE_TIMEOUT_S;
}

/* Room for the connections: raise the soft open-file limit, within the hard one. */
static void fit_fd_limit(es_http_limits_t *l)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)l->max_connections + FD_HEADROOM;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < want) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            rl.rlim_cur = old;
    }
    if (rl.rlim_cur < want) {
        unsigned fit =
            rl.rlim_cur > FD_HEADROOM ? (unsigned)(rl.rlim_cur - FD_HEADROOM) : FD_MIN_CONNS;
        es_log_warn("http",
                    "open file limit %llu is too low for http.max.connections=%u: serving at "
                    "most %u connections",
                    (unsigned long long)rl.rlim_cur, l->max_connections, fit);
        l->max_connections = fit;
    }
}

/* "host:port" with an IPv4 host; false with why. */
static bool parse_listen(const char *listen, struct sockaddr_in *addr, char host[HOST_MAX],
                         int64_t *port, char *errstr, size_t errstr_size)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || (size_t)(colon - listen) >= HOST_MAX) {
        snprintf(errstr, errstr_size, "listen address \"%s\" is not host:port",
                 listen ? listen : "");
        return false;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (!es_parse_i64(colon + 1, 0, 65535, port) ||
        inet_pton(AF_INET, host, &addr->sin_addr) != 1) {
        snprintf(errstr, errstr_size, "listen address \"%s\" is not an IPv4 host:port", listen);
        return false;
    }
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)*port);
    return true;
}

static es_http_server_t *srv_new(const es_http_server_conf_t *conf)
{
    es_http_server_t *srv = es_calloc(1, sizeof(*srv));
    srv->conf = *conf;
    limits_default(&srv->conf.limits);
    fit_fd_limit(&srv->conf.limits);
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    pthread_cond_init(&srv->resumed_cv, NULL);
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
    return srv;
}

/* Everything srv_new() and set-up made; the daemon and the threads are stopped. */
static void srv_free(es_http_server_t *srv)
{
    free(srv->workers);
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv->tls_ca);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    pthread_cond_destroy(&srv->resumed_cv);
    pthread_mutex_destroy(&srv->conn_mu);
    free(srv);
}

/* Read the TLS files into srv (libmicrohttpd takes PEM contents) and set MHD_USE_TLS. */
static bool load_tls(es_http_server_t *srv, unsigned *flags, char *errstr, size_t errstr_size)
{
    const es_http_server_conf_t *conf = &srv->conf;
    if (conf->tls_cert_file || conf->tls_key_file) {
        srv->tls_cert = conf->tls_cert_file ? es_read_file(conf->tls_cert_file) : NULL;
        srv->tls_key = conf->tls_key_file ? es_read_file(conf->tls_key_file) : NULL;
        if (!srv->tls_cert || !srv->tls_key) {
            snprintf(errstr, errstr_size, "%s: cannot read it",
                     !srv->tls_cert ? "http.tls.cert.file" : "http.tls.key.file");
            return false;
        }
        *flags |= MHD_USE_TLS;
    }
    if (conf->tls_client_ca_file && !(srv->tls_ca = es_read_file(conf->tls_client_ca_file))) {
        snprintf(errstr, errstr_size, "http.tls.client.ca.file: cannot read it");
        return false;
    }
    if (srv->tls_ca && !(*flags & MHD_USE_TLS)) {
        snprintf(errstr, errstr_size, "http.tls.client.ca.file needs http.tls.cert.file");
        return false;
    }
    return true;
}

/*
 * The listening socket gets libmicrohttpd's default, SO_REUSEADDR (a restart
 * binds at once over connections in TIME_WAIT), never SO_REUSEPORT: with it a
 * second daemon on the same port started silently and the kernel split the
 * connections between the two (test 0201 once talked half to a command
 * service's health listener).  A port in use is an error at start-up.
 */
/* Accept policy: once the server stops, a new connection is closed at once. */
static enum MHD_Result http_accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
    (void)addr;
    (void)len;
    const es_http_server_t *srv = cls;
    return atomic_load(&srv->refusing) ? MHD_NO : MHD_YES;
}

static struct MHD_Daemon *start_daemon(es_http_server_t *srv, const struct sockaddr_in *addr,
                                       unsigned flags)
{
    const es_http_limits_t *l = &srv->conf.limits;
    struct MHD_OptionItem tls_opts[] = {
        {srv->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, srv->tls_cert},
        {srv->tls_key ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, srv->tls_key},
        {srv->tls_ca ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, srv->tls_ca},
        {MHD_OPTION_END, 0, NULL},
    };
    /* an END before the last entry ends the array early: compact the used ones */
    size_t used = 0;
    for (size_t i = 0; i + 1 < ES_ARRAY_SIZE(tls_opts); i++)
        if (tls_opts[i].option != MHD_OPTION_END)
            tls_opts[used++] = tls_opts[i];
    tls_opts[used] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(
        flags, 0, http_accept_policy, srv, http_on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, NULL, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(l->threads > 1 ? l->threads : 0), MHD_OPTION_CONNECTION_LIMIT,
        l->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->max_per_client,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)l->idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
        http_on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, http_on_connection, srv,
        MHD_OPTION_END);
}

es_http_server_t *es_http_server_start(const es_http_server_conf_t *conf, char *errstr,
                                       size_t errstr_size)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    char host[HOST_MAX];
    int64_t port;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    if (!parse_listen(conf->listen, &addr, host, &port, errstr, errstr_size))
        return NULL;
    es_http_server_t *srv = srv_new(conf);
    const es_http_limits_t *l = &srv->conf.limits;
    if (http_workers_start(srv, errstr, errstr_size) || !load_tls(srv, &flags, errstr, errstr_size))
        goto fail;
    if (!(srv->daemon = start_daemon(srv, &addr, flags))) {
        snprintf(errstr, errstr_size, "cannot listen on %s (in use, or not a local address?)",
                 conf->listen);
        goto fail;
    }
    if (http_reaper_start(srv, errstr, errstr_size))
        goto fail;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : (int)port;
    es_log_info("http",
                "listening on %s:%d (%d event thread(s), %d worker(s), at most %u connections, %u "
                "per client, request deadline %d ms)",
                host, srv->port, l->threads, l->workers, l->max_connections, l->max_per_client,
                l->request_timeout_ms);
    return srv;
fail:
    http_workers_stop(srv);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    srv_free(srv);
    return NULL;
}

int es_http_server_port(const es_http_server_t *srv)
{
    return srv->port;
}

/* -------------------------------------------------------------------- stop */

/* Wait (bounded) until every suspended connection has been resumed. */
static bool wait_resumed(es_http_server_t *srv, int timeout_ms)
{
    struct timespec dl = es_deadline_in_ms(timeout_ms);
    pthread_mutex_lock(&srv->mu);
    while (srv->nsuspended && pthread_cond_timedwait(&srv->resumed_cv, &srv->mu, &dl) == 0)
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
        http_req_answered(srv, req);
        http_req_unref(req); /* the holder's */
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
    atomic_store(&srv->refusing, true); /* accept no more connections */
    http_workers_stop(srv);             /* queued requests get 503 */
    if (!wait_resumed(srv, STOP_GRACE_MS)) {
        answer_open_requests(srv);
        if (!wait_resumed(srv, STOP_GRACE_MS))
            es_log_error("http", "%zu connection(s) still suspended at stop", srv->nsuspended);
    }
    http_reaper_stop(srv);
    if (srv->nsuspended == 0) {
        MHD_stop_daemon(srv->daemon); /* it aborts the process with suspended connections */
    }
    http_conns_free(srv);
    if (srv->nsuspended == 0) {
        srv_free(srv);
    } else { /* the daemon still runs: srv stays (see the top) */
        free(srv->workers);
        pthread_mutex_destroy(&srv->conn_mu);
    }
}
