/*
 * log.c — the process-wide log sink.
 *
 * Formatting happens once into a stack buffer, then the sink is called; the
 * default sink serialises lines with a mutex so concurrent threads never
 * interleave half lines on stderr.  The trace id is thread-local: a sink is
 * called on the thread that logs, so it reads the trace of the work that
 * thread is doing, with no argument to thread through every call.
 */
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/trace.h"
#include "escqrs/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static es_log_sink_t *cur_sink;
static void *cur_opaque;
static atomic_int cur_level = ES_LOG_INFO;
static _Thread_local char cur_trace[ES_TRACE_ID_LEN + 1];

void es_json_escape(es_buf_t *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            es_buf_append(out, "\\\"", 2);
            break;
        case '\\':
            es_buf_append(out, "\\\\", 2);
            break;
        case '\n':
            es_buf_append(out, "\\n", 2);
            break;
        case '\r':
            es_buf_append(out, "\\r", 2);
            break;
        case '\t':
            es_buf_append(out, "\\t", 2);
            break;
        default:
            if (*p < 0x20)
                es_buf_appendf(out, "\\u%04x", *p);
            else
                es_buf_append(out, p, 1);
        }
    }
}

void es_format_utc_ms(int64_t ms, bool compact, char *out, size_t outsz)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = compact ? strftime(out, outsz, "%Y%m%dT%H%M%S", &tm)
                       : strftime(out, outsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outsz - n, ".%03dZ", (int)(ms % 1000));
}

static void default_sink(void *opaque, es_log_level_t level, const char *component, const char *msg)
{
    (void)opaque;
    struct timeval tv;
    char ts[40];
    es_buf_t line = {0};

    gettimeofday(&tv, NULL);
    es_format_utc_ms((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, false, ts, sizeof(ts));
    es_buf_appendf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
                   es_log_level_name(level));
    es_json_escape(&line, component);
    if (cur_trace[0]) {
        es_buf_append(&line, "\",\"trace_id\":\"", 14);
        es_json_escape(&line, cur_trace);
    }
    es_buf_append(&line, "\",\"msg\":\"", 9);
    es_json_escape(&line, msg);
    es_buf_append(&line, "\"}\n", 3);
    fwrite(line.data, 1, line.len, stderr);
    es_buf_free(&line);
}

void es_log_set_sink(es_log_sink_t *sink, void *opaque)
{
    pthread_mutex_lock(&sink_lock);
    cur_sink = sink;
    cur_opaque = opaque;
    pthread_mutex_unlock(&sink_lock);
}

void es_log_trace_set(const char *trace_id)
{
    snprintf(cur_trace, sizeof(cur_trace), "%s", trace_id ? trace_id : "");
}

const char *es_log_trace_get(void)
{
    return cur_trace;
}

bool es_log_enabled(es_log_level_t level)
{
    return (int)level >= atomic_load(&cur_level);
}

void es_log_set_level(es_log_level_t level)
{
    atomic_store(&cur_level, (int)level);
}

es_err_t es_log_level_parse(const char *name, es_log_level_t *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (!strcasecmp(name, level_names[i])) {
            *out = (es_log_level_t)i;
            return ES_ERR_OK;
        }
    }
    return ES_ERR_INVALID_ARG;
}

const char *es_log_level_name(es_log_level_t level)
{
    if ((int)level < 0 || (size_t)level >= sizeof(level_names) / sizeof(level_names[0]))
        return "unknown";
    return level_names[level];
}

static void emit(es_log_level_t level, const char *component, const char *msg)
{
    /* The lock also serialises the default sink's writes. */
    pthread_mutex_lock(&sink_lock);
    if (cur_sink)
        cur_sink(cur_opaque, level, component, msg);
    else
        default_sink(NULL, level, component, msg);
    pthread_mutex_unlock(&sink_lock);
}

void es_log(es_log_level_t level, const char *component, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if ((int)level < atomic_load(&cur_level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, component, msg);
}

void es_log_limited(es_log_limit_t *lim, es_log_level_t level, const char *component,
                    const char *fmt, ...)
{
    char msg[2048];
    size_t len;
    va_list ap;
    int burst = lim->burst > 0 ? lim->burst : 5;
    long long window = lim->window_ms > 0 ? lim->window_ms : 10000;
    long long now = es_mono_ms(), start = atomic_load(&lim->window_start);

    if ((int)level < atomic_load(&cur_level))
        return;
    if (now - start >= window && atomic_compare_exchange_strong(&lim->window_start, &start, now))
        atomic_store(&lim->used, 0); /* a new window (one thread wins the reset) */
    if (atomic_fetch_add(&lim->used, 1) >= burst) {
        atomic_fetch_add(&lim->suppressed, 1);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int held = atomic_exchange(&lim->suppressed, 0);
    len = strlen(msg);
    if (held && len < sizeof(msg))
        snprintf(msg + len, sizeof(msg) - len, " (%d similar line(s) suppressed)", held);
    emit(level, component, msg);
}
