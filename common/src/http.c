/*
 * http.c — libmicrohttpd behind es_http_*.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * with the headers, once per body chunk, once more to answer.  The
 * per-request context accumulates the body up to the cap and, past it, only
 * counts bytes so a huge upload is drained without being stored; the answer
 * is built in the final call.  Health, readiness and metrics are answered
 * here so every daemon gets them the same way.
 */
#include "escqrs/http.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct es_http_req_s {
    struct MHD_Connection *conn;
    const char *method, *path;
    char params[ES_HTTP_MAX_PARAMS][128];
    size_t nparams;
    es_buf_t body;
    size_t body_seen; /* all bytes received, stored or not */
    bool too_large;
};

struct es_http_resp_s {
    int status;
    es_buf_t body;
    const char *content_type;
    char *hnames[8], *hvalues[8];
    size_t nheaders;
};

struct es_http_server_s {
    es_http_server_conf_t conf;
    struct MHD_Daemon *daemon;
    int port;
};

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

json_t *es_http_error_body(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "error", code, "message", message);
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
    if (resp->nheaders == sizeof(resp->hnames) / sizeof(resp->hnames[0]))
        return;
    resp->hnames[resp->nheaders] = es_strdup(name);
    resp->hvalues[resp->nheaders] = es_strdup(value);
    resp->nheaders++;
}

bool es_http_route_match(const char *pattern, const char *path, char params[][128], size_t *nparams)
{
    const char *p = pattern, *s = path;
    *nparams = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *pend = strchr(p, '}');
            const char *send = strchr(s, '/');
            size_t len = send ? (size_t)(send - s) : strlen(s);
            if (!pend || len == 0 || len >= 128 || *nparams == ES_HTTP_MAX_PARAMS)
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

static void builtin_routes(es_http_server_t *srv, es_http_req_t *req, es_http_resp_t *resp,
                           bool *handled)
{
    *handled = true;
    if (!strcmp(req->path, "/healthz")) {
        es_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
    } else if (!strcmp(req->path, "/readyz")) {
        char why[256] = "";
        bool ready = !srv->conf.ready || srv->conf.ready(srv->conf.opaque, why, sizeof(why));
        if (ready)
            es_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ready"));
        else
            es_http_resp_json(resp, 503,
                              json_pack("{s:s, s:s}", "status", "not_ready", "reason", why));
    } else if (!strcmp(req->path, "/metrics") && srv->conf.metrics) {
        es_buf_t out = {0};
        es_metrics_render(srv->conf.metrics, &out);
        es_http_resp_text(resp, 200, "text/plain; version=0.0.4", out.data ? out.data : "",
                          out.len);
        es_buf_free(&out);
    } else {
        *handled = false;
    }
}

static void dispatch(es_http_server_t *srv, es_http_req_t *req, es_http_resp_t *resp)
{
    bool handled = false, path_known = false;

    if (req->too_large) {
        es_http_resp_error(resp, 413, "payload_too_large",
                           "request body of %zu bytes exceeds the limit of %zu bytes",
                           req->body_seen, srv->conf.max_body);
        return;
    }
    if (!strcmp(req->method, "GET"))
        builtin_routes(srv, req, resp, &handled);
    if (handled)
        return;
    for (size_t i = 0; i < srv->conf.nroutes; i++) {
        const es_http_route_t *r = &srv->conf.routes[i];
        if (!es_http_route_match(r->pattern, req->path, req->params, &req->nparams))
            continue;
        path_known = true;
        if (strcmp(r->method, req->method))
            continue;
        r->handler(srv->conf.opaque, req, resp);
        if (!resp->status)
            es_http_resp_error(resp, 500, "internal", "handler gave no answer");
        return;
    }
    req->nparams = 0;
    if (path_known)
        es_http_resp_error(resp, 405, "method_not_allowed", "%s is not allowed on %s", req->method,
                           req->path);
    else
        es_http_resp_error(resp, 404, "not_found", "no such resource: %s", req->path);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    es_http_server_t *srv = cls;
    es_http_req_t *req = *con_cls;
    (void)version;

    if (!req) {
        req = es_calloc(1, sizeof(*req));
        req->conn = conn;
        req->method = method;
        req->path = url;
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size) {
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

    es_http_resp_t resp = {0};
    dispatch(srv, req, &resp);
    struct MHD_Response *mresp = MHD_create_response_from_buffer(
        resp.body.len, resp.body.data ? resp.body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(mresp, "Content-Type",
                            resp.content_type ? resp.content_type : "application/json");
    for (size_t i = 0; i < resp.nheaders; i++) {
        MHD_add_response_header(mresp, resp.hnames[i], resp.hvalues[i]);
        free(resp.hnames[i]);
        free(resp.hvalues[i]);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp.status, mresp);
    MHD_destroy_response(mresp);
    es_buf_free(&resp.body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    es_http_req_t *req = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    es_buf_free(&req->body);
    free(req);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    es_log_warn("http", "%s", msg);
}

es_http_server_t *es_http_server_start(const es_http_server_conf_t *conf, char *errstr,
                                       size_t errstr_size)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    const char *colon = strrchr(conf->listen, ':');
    char host[64];
    long port;
    char *end = NULL;

    if (!colon || (size_t)(colon - conf->listen) >= sizeof(host)) {
        snprintf(errstr, errstr_size, "listen address \"%s\" is not host:port", conf->listen);
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
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
        NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(errstr, errstr_size, "cannot listen on %s (in use, or not a local address?)",
                 conf->listen);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : (int)port;
    es_log_info("http", "listening on %s:%d", host, srv->port);
    return srv;
}

int es_http_server_port(const es_http_server_t *srv)
{
    return srv->port;
}

void es_http_server_stop(es_http_server_t *srv)
{
    if (!srv)
        return;
    MHD_stop_daemon(srv->daemon);
    free(srv);
}

/* ------------------------------------------------------------------ client */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t collect_body(char *p, size_t sz, size_t n, void *ud)
{
    es_buf_append(ud, p, sz * n);
    return sz * n;
}

es_err_t es_http_fetch(const char *method, const char *url, const char *content_type,
                       const char *body, int timeout_ms, long *status, es_buf_t *resp, char *errstr,
                       size_t errstr_size)
{
    return es_http_fetch_with_headers(method, url, content_type, NULL, body, timeout_ms, status,
                                      resp, errstr, errstr_size);
}

es_err_t es_http_fetch_with_headers(const char *method, const char *url, const char *content_type,
                                    const char *const *headers, const char *body, int timeout_ms,
                                    long *status, es_buf_t *resp, char *errstr, size_t errstr_size)
{
    char curlerr[CURL_ERROR_SIZE] = "";
    char ctype[256];
    pthread_once(&curl_once, curl_init_once);
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    if (content_type) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, ctype);
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/vnd.schemaregistry.v1+json, "
                                   "application/json, */*");
    for (size_t i = 0; headers && headers[i]; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    es_buf_clear(resp);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    else if (!strcmp(method, "POST") || !strcmp(method, "PUT"))
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    CURLcode cres = curl_easy_perform(c);
    *status = 0;
    if (cres == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (cres != CURLE_OK) {
        snprintf(errstr, errstr_size, "%s %s: %s", method, url,
                 curlerr[0] ? curlerr : curl_easy_strerror(cres));
        return ES_ERR_HTTP;
    }
    if (!resp->data)
        es_buf_append(resp, "", 0);
    return ES_ERR_OK;
}
