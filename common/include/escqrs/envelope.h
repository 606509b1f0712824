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

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#define ES_UUID_STR_LEN 37 /* 36 characters and a NUL */

/** @brief A random (version 4) UUID in its canonical text form. */
void es_uuid_v4(char out[ES_UUID_STR_LEN]);

/** @brief Milliseconds since the Unix epoch (wall clock). */
int64_t es_now_ms(void);

/** @brief The headers of an event record; the caller owns them (or hands them to produce). */
rd_kafka_headers_t *es_event_headers(const char *event_type, const char *event_id,
                                     const char *command_id, int64_t aggregate_version);

/**
 * @brief Copy header @p name of @p msg into @p out (NUL-terminated, truncated to fit).
 * @returns 0 when found, -1 otherwise.
 */
int es_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outsz);

#endif
