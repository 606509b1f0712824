/**
 * @file envelope.h
 * @brief What every event record carries besides its Avro body, and the
 *        request context commands, events and outcomes carry.
 *
 * Kafka headers repeat what routers need without decoding (architecture §3):
 * `event-type` (the payload record's name, e.g. "ItemAdded"), `event-id`,
 * `command-id` and `aggregate-version` (decimal).  Never a header named
 * `__value_schema_id`: the schema id lives in the wire format's header.
 *
 * Request context (docs/wire-format.md): the gateway writes the correlation
 * id and the W3C trace context of a request into its command, as value
 * fields `correlation_id`, `traceparent`, `tracestate` and as headers
 * `correlation-id`, `traceparent`, `tracestate`; the command service copies
 * them into every event and the outcome.  The setters skip a field the
 * record's schema lacks, so an older schema keeps working.
 */
#ifndef ESCQRS_ENVELOPE_H
#define ESCQRS_ENVELOPE_H

#include "escqrs/err.h"
#include "escqrs/trace.h"
#include "escqrs/util.h"

#include <avro.h>
#include <stdbool.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/** @brief The headers of an event record; the caller owns them (or hands them to produce). */
rd_kafka_headers_t *es_event_headers(const char *event_type, const char *event_id,
                                     const char *command_id, int64_t aggregate_version);

/**
 * @brief The headers of an event record, read from the event envelope value
 *        itself (a CartEvent, AccountEvent or any record with string fields
 *        `event_id` and `command_id`, a long `version` and a union `payload`
 *        of records): `event-type` is the payload branch's record name.
 * @param out set to new headers the caller owns (or hands to produce).
 * @returns ES_ERR_INVALID_ARG, with the missing field in errstr, when
 *          @p event is not such a record.
 */
es_err_t es_event_headers_from_value(avro_value_t *event, rd_kafka_headers_t **out, char *errstr,
                                     size_t errstr_size);

/**
 * @brief Copy header @p name of @p msg (its last one) into @p out, NUL-terminated.
 * @returns 0 when found whole; -1 when absent, longer than @p out holds with its NUL,
 *          or holding a NUL byte (@p out is then ""). A value cut to fit could read as
 *          another valid one ("12" of "123"; "5" of "5" and NULs): no value at all is
 *          what a reader of an offset or an id can trust.
 */
int es_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outsz);

/** The request context a command carries into its events and its outcome. */
typedef struct es_trace_fields_s {
    char correlation_id[ES_CORRELATION_ID_MAX + 1]; /**< "" when null */
    char traceparent[ES_TRACEPARENT_LEN + 1];       /**< "" when null */
    char tracestate[ES_TRACESTATE_MAX + 1];         /**< "" when null */
} es_trace_fields_t;

/**
 * @brief Read `correlation_id`, `traceparent` and `tracestate` of record
 *        @p rec; each is "" when null, when the schema has no such field, or
 *        when its value is not valid (trace.h) — a forged record cannot put
 *        a binary or over-long value into a header or a log line.
 */
void es_trace_fields_get(avro_value_t *rec, es_trace_fields_t *out);

/** @brief Set those three fields of @p rec (null when ""); fields its schema lacks are skipped. */
es_err_t es_trace_fields_set(avro_value_t *rec, const es_trace_fields_t *t);

/** @brief Add headers `traceparent`, `tracestate` and `correlation-id` (those not "") to @p h. */
void es_trace_headers_add(rd_kafka_headers_t *h, const es_trace_fields_t *t);

/**
 * @brief Set the ["null", "string"] field @p name of @p rec: null when @p s
 *        is NULL or "".  A record whose schema has no such field (an older
 *        schema) is left as it is.
 */
es_err_t es_opt_string_set(avro_value_t *rec, const char *name, const char *s);

/** @brief Set the ["null", long] field @p name of @p rec: null unless @p present; skipped as above.
 */
es_err_t es_opt_long_set(avro_value_t *rec, const char *name, bool present, int64_t v);

/** @brief The string of the ["null", "string"] field @p name of @p rec (borrowed), or NULL. */
const char *es_opt_string_get(avro_value_t *rec, const char *name);

#endif
