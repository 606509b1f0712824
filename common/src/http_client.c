/*
 * http_client.c — one HTTP request with libcurl (es_http_fetch), for the
 * registry client and the CLI.  A fresh easy handle per call: the callers
 * make few requests, and a handle shared between threads would need a lock
 * around every request.  NOSIGNAL, because daemons have threads.  TLS is
 * libcurl's: a CA bundle, a client certificate and key (mutual TLS), basic
 * or bearer credentials come from es_http_client_opts_t; the credentials
 * never appear in an error message (libcurl's own do not carry them).
 * es_http_fetch_sink() hands the body to its caller as it arrives (a
 * projector checkpoint of many GiB), with a stall limit instead of a total
 * deadline.
 */
#include "escqrs/http_client.h"
#include "escqrs/mem.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The body as it arrives, up to `max` bytes (0: no limit). */
typedef struct {
    es_buf_t *buf;
    size_t max;
    bool over;
} collect_t;

static size_t collect_body(char *p, size_t sz, size_t n, void *ud)
{
    collect_t *col = ud;
    if (col->max && col->buf->len + sz * n > col->max) {
        col->over = true;
        return 0; /* libcurl ends the transfer: CURLE_WRITE_ERROR */
    }
    es_buf_append(col->buf, p, sz * n);
    return sz * n;
}

/* The request's headers; *bearer holds the Authorization line (free it after). */
static struct curl_slist *client_headers(const char *content_type, const char *const *headers,
                                         const es_http_client_opts_t *o, char **bearer)
{
    char ctype[256];
    struct curl_slist *hdrs = NULL;
    if (content_type) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, ctype);
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/vnd.schemaregistry.v1+json, "
                                   "application/json, */*");
    for (size_t i = 0; headers && headers[i]; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    if (o && o->bearer_token && *o->bearer_token) {
        size_t n = strlen(o->bearer_token) + 32;
        *bearer = es_malloc(n);
        snprintf(*bearer, n, "Authorization: Bearer %s", o->bearer_token);
        hdrs = curl_slist_append(hdrs, *bearer);
    }
    return hdrs;
}

/* TLS files and basic credentials of @p o (may be NULL). */
static void client_tls(CURL *c, const es_http_client_opts_t *o)
{
    if (o && o->ca_file && *o->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (o && o->cert_file && *o->cert_file)
        curl_easy_setopt(c, CURLOPT_SSLCERT, o->cert_file);
    if (o && o->key_file && *o->key_file)
        curl_easy_setopt(c, CURLOPT_SSLKEY, o->key_file);
    if (o && o->basic_user && *o->basic_user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, o->basic_user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, o->basic_password ? o->basic_password : "");
    }
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
    return es_http_fetch_opts(method, url, content_type, headers, body, timeout_ms, NULL, status,
                              resp, errstr, errstr_size);
}

es_err_t es_http_fetch_opts(const char *method, const char *url, const char *content_type,
                            const char *const *headers, const char *body, int timeout_ms,
                            const es_http_client_opts_t *o, long *status, es_buf_t *resp,
                            char *errstr, size_t errstr_size)
{
    char curlerr[CURL_ERROR_SIZE] = "";
    char *bearer = NULL;
    pthread_once(&curl_once, curl_init_once);
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = client_headers(content_type, headers, o, &bearer);
    es_buf_clear(resp);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlerr);
    collect_t col = {.buf = resp, .max = o ? o->max_body : 0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &col);
    client_tls(c, o);
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
    free(bearer);
    if (col.over) {
        snprintf(errstr, errstr_size, "%s %s: the answer is larger than %zu bytes", method, url,
                 col.max);
        es_buf_clear(resp);
        return ES_ERR_HTTP;
    }
    if (cres != CURLE_OK) {
        snprintf(errstr, errstr_size, "%s %s: %s", method, url,
                 curlerr[0] ? curlerr : curl_easy_strerror(cres));
        return ES_ERR_HTTP;
    }
    if (!resp->data)
        es_buf_append(resp, "", 0);
    return ES_ERR_OK;
}

/* The answer's status beside each piece of its body, for es_http_fetch_sink(). */
typedef struct sink_ctx_s {
    CURL *c;
    es_http_sink_t *sink;
    void *opaque;
} sink_ctx_t;

static size_t to_sink(char *p, size_t sz, size_t n, void *ud)
{
    sink_ctx_t *ctx = ud;
    long status = 0;
    curl_easy_getinfo(ctx->c, CURLINFO_RESPONSE_CODE, &status);
    return ctx->sink(ctx->opaque, status, p, sz * n);
}

es_err_t es_http_fetch_sink(const char *url, const es_http_client_opts_t *o, int stall_ms,
                            es_http_sink_t *sink, void *opaque, long *status, char *errstr,
                            size_t errstr_size)
{
    char curlerr[CURL_ERROR_SIZE] = "";
    char *bearer = NULL;
    pthread_once(&curl_once, curl_init_once);
    CURL *c = curl_easy_init();
    sink_ctx_t ctx = {.c = c, .sink = sink, .opaque = opaque};
    struct curl_slist *hdrs = client_headers(NULL, NULL, o, &bearer);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlerr);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(stall_ms + 999) / 1000);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
    client_tls(c, o);
    CURLcode cres = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    free(bearer);
    if (cres != CURLE_OK) {
        snprintf(errstr, errstr_size, "GET %s: %s", url,
                 curlerr[0] ? curlerr : curl_easy_strerror(cres));
        return ES_ERR_HTTP;
    }
    return ES_ERR_OK;
}
