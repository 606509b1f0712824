/*
 * envelope.c — event headers, UUIDs and time for event envelopes.
 *
 * UUIDs come from getrandom(2): event ids must not collide across processes
 * and restarts, which a seeded PRNG would not guarantee.  Headers are built
 * from the envelope value itself where possible, so the headers a router
 * reads cannot disagree with the body an analyst decodes.
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

int es_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outsz)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(msg, &h) || rd_kafka_header_get_last(h, name, &v, &len))
        return -1;
    if (len >= outsz)
        len = outsz - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}
