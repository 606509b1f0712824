/*
 * http_conns.c — a record per open connection, and the reaper that closes
 * connections whose request does not arrive in time.
 *
 * Slow clients: libmicrohttpd only times out silence, so a client sending
 * a byte every few seconds would hold a connection for ever.  Every
 * connection has a deadline for the request being read (headers and body),
 * counted from its start or from the previous answer; a reaper thread shuts
 * down the socket of one past it (shutdown(2), never close: libmicrohttpd
 * owns the fd and closes it when it sees the end of the stream).  A
 * connection whose request is in (busy) is not reaped: a handler may take
 * its time, and the next request's deadline starts when this one is done.
 *
 * Why the reaper never touches a closed or reused fd: the connection
 * records are removed in libmicrohttpd's CLOSED notification, which it
 * calls before it closes the fd, under the same mutex (srv->conn_mu) the
 * reaper holds while it walks the list.
 */
#include "http_internal.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define REAPER_PERIOD_MS 200 /* how late past its deadline a request may be closed */

static es_log_limit_t limit_reaper;

void http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
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

void http_conn_set_busy(es_http_server_t *srv, conn_t *sock, bool busy)
{
    if (!sock)
        return;
    pthread_mutex_lock(&srv->conn_mu);
    sock->busy = busy;
    if (!busy)
        sock->phase_start_ms = es_mono_ms();
    pthread_mutex_unlock(&srv->conn_mu);
}

/* Shut down the sockets past their deadline (see the top); how many. */
static size_t reap(es_http_server_t *srv)
{
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
    return n;
}

static void *reaper_main(void *arg)
{
    es_http_server_t *srv = arg;
    while (!atomic_load(&srv->reaper_stop)) {
        usleep(REAPER_PERIOD_MS * 1000);
        size_t n = reap(srv);
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

es_err_t http_reaper_start(es_http_server_t *srv, char *errstr, size_t errstr_size)
{
    if (pthread_create(&srv->reaper, NULL, reaper_main, srv)) {
        snprintf(errstr, errstr_size, "cannot start the HTTP deadline thread");
        return ES_ERR_IO;
    }
    srv->reaper_started = true;
    return ES_ERR_OK;
}

void http_reaper_stop(es_http_server_t *srv)
{
    atomic_store(&srv->reaper_stop, true);
    if (srv->reaper_started)
        pthread_join(srv->reaper, NULL);
}

void http_conns_free(es_http_server_t *srv)
{
    pthread_mutex_lock(&srv->conn_mu);
    for (conn_t *c = srv->conns, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    pthread_mutex_unlock(&srv->conn_mu);
}
