/**
 * @file envelope.h
 * @brief What every event record carries besides its Avro body.
 *
 * Kafka headers repeat what routers need without decoding (architecture §3):
 * `event-type` (the payload record's name, e.g. "ItemAdded"), `event-id`,
 * `command-id` and `aggregate-version` (decimal).  Never a header named
 * `__value_schema_id`: the schema id lives in the wire format's header.
 */
#ifndef ESCQRS_ENVELOPE_H
#define ESCQRS_ENVELOPE_H

#include "escqrs/err.h"
#include "escqrs/util.h"

#include <avro.h>
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
 * @brief Copy header @p name of @p msg into @p out (NUL-terminated, truncated to fit).
 * @returns 0 when found, -1 otherwise.
 */
int es_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outsz);

#endif
