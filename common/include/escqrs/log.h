/**
 * @file log.h
 * @brief Logging through a callback; the default sink writes JSON lines.
 *
 * The library never prints: every message goes to the process-wide sink.
 * The default sink writes one JSON object per line to stderr
 * (`{"ts":"...","level":"info","component":"conf","msg":"..."}`), which both
 * people and log shippers can read.  Daemons may install their own sink.
 * A line logged by a thread that works for a traced request also carries
 * `"trace_id":"<32 hex>"` (es_log_trace_set()), so the lines of one request
 * can be joined across daemons.
 *
 * @remark The sink and level are process-wide and may be called from any thread;
 *         a sink must therefore be thread-safe (the default one is).
 */
#ifndef ESCQRS_LOG_H
#define ESCQRS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "escqrs/err.h"

typedef enum {
    ES_LOG_DEBUG = 0,
    ES_LOG_INFO = 1,
    ES_LOG_WARN = 2,
    ES_LOG_ERROR = 3,
} es_log_level_t;

typedef void(es_log_sink_t)(void *opaque, es_log_level_t level, const char *component,
                            const char *msg);

/** @brief Install @p sink (NULL restores the default JSON-lines sink on stderr). */
void es_log_set_sink(es_log_sink_t *sink, void *opaque);
/**
 * @brief @p ms since the epoch as UTC with milliseconds: RFC 3339
 *        ("2026-12-01T05:24:31.123Z"), or with @p compact no ':' or '-'
 *        ("20261201T052431.123Z", for file names).  The log lines' format.
 */
void es_format_utc_ms(int64_t ms, bool compact, char *out, size_t outsz);

/** @brief Whether a message of @p level would be logged (to skip building it). */
bool es_log_enabled(es_log_level_t level);
/** @brief Drop messages below @p level. */
void es_log_set_level(es_log_level_t level);
/** @brief Parse "debug"|"info"|"warn"|"error". */
es_err_t es_log_level_parse(const char *name, es_log_level_t *out);
const char *es_log_level_name(es_log_level_t level);

void es_log(es_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * @brief The trace id the calling thread works for: every line it logs from
 *        now on carries `"trace_id"` with it (the default sink writes it; a
 *        sink of one's own reads es_log_trace_get()).  NULL or "" clears it.
 *        At most 32 characters are kept.
 * @remark Thread-local: set it when a thread starts work for a request and
 *         clear it when the work is done (a pool thread serves many).
 */
void es_log_trace_set(const char *trace_id);
/** @brief The calling thread's trace id, "" when none. */
const char *es_log_trace_get(void);

#define es_log_debug(comp, ...) es_log(ES_LOG_DEBUG, comp, __VA_ARGS__)
#define es_log_info(comp, ...)  es_log(ES_LOG_INFO, comp, __VA_ARGS__)
#define es_log_warn(comp, ...)  es_log(ES_LOG_WARN, comp, __VA_ARGS__)
#define es_log_error(comp, ...) es_log(ES_LOG_ERROR, comp, __VA_ARGS__)

/** @brief Append @p s to @p out as a JSON string body (escaped, without quotes). */
/**
 * A log line limit for messages an outsider can cause at will (refused
 * connections, slow clients, bad credentials): at most `burst` lines per
 * `window_ms`; the lines held back are counted and reported with the next
 * line let through.  Zero-initialise; thread-safe (a spin of atomics).
 */
typedef struct es_log_limit_s {
    int burst;                      /**< lines per window (0: 5) */
    int window_ms;                  /**< (0: 10 000) */
    _Atomic long long window_start; /**< ms, monotonic */
    _Atomic int used, suppressed;
} es_log_limit_t;

/**
 * @brief es_log() through the limit @p lim: at most lim->burst lines per
 *        window; a line let through after suppressed ones says how many.
 */
void es_log_limited(es_log_limit_t *lim, es_log_level_t level, const char *component,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

struct es_buf_s;
void es_json_escape(struct es_buf_s *out, const char *s);

#endif
