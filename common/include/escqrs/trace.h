/**
 * @file trace.h
 * @brief W3C Trace Context (level 1) and correlation ids: parse, check, format, new ids.
 *
 * A request is followed from the HTTP call to its command, events and
 * outcome by two values: the W3C `traceparent` (and its companion
 * `tracestate`), and a correlation id (`X-Correlation-Id`, else the command
 * id, Axon's rule).  This module only reads and writes their text; the HTTP
 * server, the gateway and the command service carry them.
 *
 * `traceparent` is "<version>-<trace-id>-<parent-id>-<flags>": 2, 32, 16 and
 * 2 lowercase hex digits.  Invalid per the spec (wrong length or format,
 * uppercase hex, a trace id or parent id of only zeros, version ff) means
 * absent: a receiver ignores it and starts a new trace, and then drops
 * `tracestate` too.  A version above 00 is read as 00 is (its first 55
 * characters, which must be followed by '-' or the end), as the spec's
 * forward-compatibility rule says; what we send is always version 00.
 * `tracestate` is kept only with a valid traceparent and when it is a
 * well-formed list of at most ES_TRACESTATE_MEMBERS_MAX members and
 * ES_TRACESTATE_MAX characters; otherwise it is dropped whole.
 *
 * Layering: includes no escqrs header; no I/O.  New ids come from
 * getrandom(2), never all zeros.  Not an SDK header: a domain module never
 * sees trace context (the runtimes carry it).
 */
#ifndef ESCQRS_TRACE_H
#define ESCQRS_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#define ES_TRACE_ID_LEN           32  /**< hex digits of a trace id */
#define ES_SPAN_ID_LEN            16  /**< hex digits of a span (parent) id */
#define ES_TRACEPARENT_LEN        55  /**< "00-" + 32 + "-" + 16 + "-" + 2 */
#define ES_TRACESTATE_MAX         512 /**< longest tracestate kept (characters) */
#define ES_TRACESTATE_MEMBERS_MAX 32  /**< list members of a tracestate (the spec's limit) */
#define ES_CORRELATION_ID_MAX     128 /**< bytes of an X-Correlation-Id */
#define ES_TRACE_FLAG_SAMPLED     0x01

/** A traceparent, read. */
typedef struct es_traceparent_s {
    char trace_id[ES_TRACE_ID_LEN + 1];
    char parent_id[ES_SPAN_ID_LEN + 1];
    unsigned flags; /**< the trace-flags byte */
} es_traceparent_t;

/**
 * @brief Read a `traceparent` header value.
 * @returns true and fills @p out when @p s is valid by the rules above;
 *          false (and @p out untouched) when it is NULL or invalid.
 */
bool es_traceparent_parse(const char *s, es_traceparent_t *out);

/** @brief "00-<trace_id>-<span_id>-<flags>" into @p out (ES_TRACEPARENT_LEN + 1 bytes). */
void es_traceparent_format(char out[ES_TRACEPARENT_LEN + 1], const char *trace_id,
                           const char *span_id, unsigned flags);

/** @brief Is @p s a `tracestate` to keep (well formed, within the limits)?  NULL: no. */
bool es_tracestate_valid(const char *s);

/** @brief A new random trace id: 32 lowercase hex digits, not all zeros. */
void es_trace_id_new(char out[ES_TRACE_ID_LEN + 1]);
/** @brief A new random span id: 16 lowercase hex digits, not all zeros. */
void es_span_id_new(char out[ES_SPAN_ID_LEN + 1]);

/**
 * @brief A valid correlation id: 1 to ES_CORRELATION_ID_MAX bytes, each
 *        printable ASCII without space (0x21–0x7e).  NULL: no.
 */
bool es_correlation_id_valid(const char *s);

/** The span a server opens for one request, and what it propagates. */
typedef struct es_trace_ctx_s {
    char trace_id[ES_TRACE_ID_LEN + 1];       /**< the caller's, or a new one */
    char span_id[ES_SPAN_ID_LEN + 1];         /**< this span's, always new */
    char traceparent[ES_TRACEPARENT_LEN + 1]; /**< "00-<trace_id>-<span_id>-<flags>" */
    char tracestate[ES_TRACESTATE_MAX + 1];   /**< kept from the caller, or "" */
    bool continued;                           /**< the caller sent a valid traceparent */
} es_trace_ctx_t;

/**
 * @brief Open a span for a request that came with headers @p traceparent and
 *        @p tracestate (either may be NULL).  A valid traceparent is continued
 *        (same trace id and sampled flag, a new span id) with its tracestate
 *        when that is valid; otherwise a new trace starts, sampled (escqrs
 *        records every request in its logs), without tracestate.
 */
void es_trace_ctx_start(es_trace_ctx_t *ctx, const char *traceparent, const char *tracestate);

/**
 * @brief The trace id of a traceparent @p s into @p out; "" when @p s is
 *        NULL or not a valid traceparent.
 */
void es_trace_id_of(const char *s, char out[ES_TRACE_ID_LEN + 1]);

#endif
