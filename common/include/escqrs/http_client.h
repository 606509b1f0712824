/**
 * @file http_client.h
 * @brief One-call HTTP client requests (libcurl): the registry client, JWKS
 *        fetching and the CLI.
 *
 * A call blocks until the answer or its timeout; whatever status the server
 * answers is an answer (ES_ERR_OK), only no answer is an error.  TLS
 * verification is always on; a CA file, a client certificate and basic or
 * bearer credentials are per call (es_http_client_opts_t).
 */
#ifndef ESCQRS_HTTP_CLIENT_H
#define ESCQRS_HTTP_CLIENT_H

#include "escqrs/err.h"
#include "escqrs/mem.h"

#include <stddef.h>

/**
 * @brief One HTTP client request (libcurl), for the registry client and the CLI.
 * @param body NULL for none; sent with @p content_type.
 * @param status set to the HTTP status of the answer (0 when none came).
 * @returns ES_ERR_OK when an answer came (whatever its status), ES_ERR_HTTP with
 *          curl's reason in @p errstr when none did.
 */
es_err_t es_http_fetch(const char *method, const char *url, const char *content_type,
                       const char *body, int timeout_ms, long *status, es_buf_t *resp, char *errstr,
                       size_t errstr_size);

/** TLS and credentials of a client request (every field may be NULL). */
typedef struct es_http_client_opts_s {
    const char *ca_file;   /**< CA bundle for the server's certificate (NULL: the system's) */
    const char *cert_file; /**< client certificate, PEM (mutual TLS) */
    const char *key_file;  /**< its private key, PEM */
    const char *basic_user, *basic_password; /**< HTTP basic authentication */
    const char *bearer_token;                /**< Authorization: Bearer <token> */
    /** Bytes of the answer's body at most; a longer one fails the request
     *  (ES_ERR_HTTP) as it arrives, before it is all in memory.  0: no limit. */
    size_t max_body;
} es_http_client_opts_t;

/** @brief es_http_fetch_with_headers() with TLS and credentials @p opts (may be NULL). */
es_err_t es_http_fetch_opts(const char *method, const char *url, const char *content_type,
                            const char *const *headers, const char *body, int timeout_ms,
                            const es_http_client_opts_t *opts, long *status, es_buf_t *resp,
                            char *errstr, size_t errstr_size);

/** @brief es_http_fetch() with extra request @p headers ("Name: value", NULL-terminated). */
es_err_t es_http_fetch_with_headers(const char *method, const char *url, const char *content_type,
                                    const char *const *headers, const char *body, int timeout_ms,
                                    long *status, es_buf_t *resp, char *errstr, size_t errstr_size);

/**
 * @brief Where es_http_fetch_sink() delivers the answer's body, piece by
 *        piece, with the answer's HTTP status.  Return @p len to go on,
 *        anything else to abort the transfer (the call then fails).
 */
typedef size_t(es_http_sink_t)(void *opaque, long status, const char *data, size_t len);

/**
 * @brief A GET whose body goes to @p sink as it arrives (a download larger
 *        than memory).  No total deadline: the transfer fails when no byte
 *        came for @p stall_ms.
 * @returns ES_ERR_OK when the whole answer came (whatever its status),
 *          ES_ERR_HTTP with curl's reason otherwise (also when @p sink
 *          aborted: then the sink knows why).
 */
es_err_t es_http_fetch_sink(const char *url, const es_http_client_opts_t *opts, int stall_ms,
                            es_http_sink_t *sink, void *opaque, long *status, char *errstr,
                            size_t errstr_size);

#endif
