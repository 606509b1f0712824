/*
 * envelope.c — event headers, UUIDs and time for event envelopes.
 *
 * UUIDs come from getrandom(2): event ids must not collide across processes
 * and restarts, which a seeded PRNG would not guarantee.  Headers are built
 * from the envelope value itself where possible, so the headers a router
 * reads cannot disagree with the body an analyst decodes.  The request
 * context (correlation id, traceparent, tracestate) is set through setters
 * that skip a field the schema lacks, as es_principal_set() does: a module
 * whose schemas predate the fields keeps working, it only records less.
 */
#include "escqrs/envelope.h"

#include <stdio.h>
#include <string.h>

rd_kafka_headers_t *es_event_headers(const char *event_type, const char *event_id,
                                     const char *command_id, int64_t aggregate_version)
{
    char ver[24];
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    snprintf(ver, sizeof(ver), "%lld", (long long)aggregate_version);
    rd_kafka_header_add(h, "event-type", -1, event_type, -1);
    rd_kafka_header_add(h, "event-id", -1, event_id, -1);
    rd_kafka_header_add(h, "command-id", -1, command_id, -1);
    rd_kafka_header_add(h, "aggregate-version", -1, ver, -1);
    return h;
}

static const char *envelope_string(avro_value_t *event, const char *field)
{
    avro_value_t f;
    const char *s = NULL;
    size_t sz;
    if (avro_value_get_by_name(event, field, &f, NULL) || avro_value_get_type(&f) != AVRO_STRING ||
        avro_value_get_string(&f, &s, &sz))
        return NULL;
    return s;
}

es_err_t es_event_headers_from_value(avro_value_t *event, rd_kafka_headers_t **out, char *errstr,
                                     size_t errstr_size)
{
    avro_value_t f, branch;
    int64_t version = 0;
    const char *event_id = envelope_string(event, "event_id");
    const char *command_id = envelope_string(event, "command_id");
    const char *missing = !event_id     ? "event_id (string)"
                          : !command_id ? "command_id (string)"
                                        : NULL;
    if (!missing && (avro_value_get_by_name(event, "version", &f, NULL) ||
                     avro_value_get_type(&f) != AVRO_INT64 || avro_value_get_long(&f, &version)))
        missing = "version (long)";
    if (!missing &&
        (avro_value_get_by_name(event, "payload", &f, NULL) ||
         avro_value_get_type(&f) != AVRO_UNION || avro_value_get_current_branch(&f, &branch) ||
         avro_value_get_type(&branch) != AVRO_RECORD))
        missing = "payload (a union of records, with a branch set)";
    if (missing) {
        snprintf(errstr, errstr_size, "event envelope has no %s", missing);
        return ES_ERR_INVALID_ARG;
    }
    *out = es_event_headers(avro_schema_name(avro_value_get_schema(&branch)), event_id, command_id,
                            version);
    return ES_ERR_OK;
}

es_err_t es_opt_string_set(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f, br;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return ES_ERR_OK; /* an older schema: nothing to record */
    bool has = s && *s;
    if (avro_value_set_branch(&f, has ? 1 : 0, &br) ||
        (has ? avro_value_set_string(&br, s) : avro_value_set_null(&br)))
        return ES_ERR_ENCODE;
    return ES_ERR_OK;
}

es_err_t es_opt_long_set(avro_value_t *rec, const char *name, bool present, int64_t v)
{
    avro_value_t f, br;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return ES_ERR_OK;
    if (avro_value_set_branch(&f, present ? 1 : 0, &br) ||
        (present ? avro_value_set_long(&br, v) : avro_value_set_null(&br)))
        return ES_ERR_ENCODE;
    return ES_ERR_OK;
}

const char *es_opt_string_get(avro_value_t *rec, const char *name)
{
    avro_value_t f, br;
    const char *s = NULL;
    size_t len;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_UNION ||
        avro_value_get_current_branch(&f, &br) || avro_value_get_type(&br) != AVRO_STRING ||
        avro_value_get_string(&br, &s, &len))
        return NULL;
    return s;
}

/* @p s into @p out when @p valid says so, else "". */
static void copy_if(char *out, size_t outsz, const char *s, bool valid)
{
    snprintf(out, outsz, "%s", s && valid ? s : "");
}

void es_trace_fields_get(avro_value_t *rec, es_trace_fields_t *out)
{
    const char *c = es_opt_string_get(rec, "correlation_id");
    const char *tp = es_opt_string_get(rec, "traceparent");
    const char *ts = es_opt_string_get(rec, "tracestate");
    es_traceparent_t parsed;
    bool tp_ok = es_traceparent_parse(tp, &parsed);
    copy_if(out->correlation_id, sizeof(out->correlation_id), c, es_correlation_id_valid(c));
    copy_if(out->traceparent, sizeof(out->traceparent), tp, tp_ok);
    copy_if(out->tracestate, sizeof(out->tracestate), ts, tp_ok && es_tracestate_valid(ts));
}

es_err_t es_trace_fields_set(avro_value_t *rec, const es_trace_fields_t *t)
{
    es_err_t err = es_opt_string_set(rec, "correlation_id", t->correlation_id);
    if (!err)
        err = es_opt_string_set(rec, "traceparent", t->traceparent);
    if (!err)
        err = es_opt_string_set(rec, "tracestate", t->tracestate);
    return err;
}

void es_trace_headers_add(rd_kafka_headers_t *h, const es_trace_fields_t *t)
{
    if (t->traceparent[0])
        rd_kafka_header_add(h, "traceparent", -1, t->traceparent, -1);
    if (t->tracestate[0])
        rd_kafka_header_add(h, "tracestate", -1, t->tracestate, -1);
    if (t->correlation_id[0])
        rd_kafka_header_add(h, "correlation-id", -1, t->correlation_id, -1);
}

int es_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outsz)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    if (outsz)
        out[0] = '\0';
    if (rd_kafka_message_headers(msg, &h) || rd_kafka_header_get_last(h, name, &v, &len) ||
        len >= outsz || (len && memchr(v, '\0', len)))
        return -1;
    if (len) /* a header with a NULL value has length 0 */
        memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}
