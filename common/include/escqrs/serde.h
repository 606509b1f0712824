/**
 * @file serde.h
 * @brief Avro values in the Confluent wire format, with schema resolution.
 *
 * Wire format: byte 0x00, 4-byte big-endian schema id, Avro binary body.
 * An es_serde_t serves one subject (`<topic>-value`) and one reader schema:
 * encoding writes with the reader schema (registered once at creation when
 * asked), decoding fetches the writer schema by id (cached in the registry
 * client) and resolves it to the reader schema by the Avro spec's rules,
 * so old records replay under new code (added fields take their defaults)
 * and added fields are invisible to old code.  Avro C 1.11.1's resolved
 * writer/reader cannot do the first ("NIY: Default values"), so records of
 * another writer schema are read with that schema and copied onto the
 * reader value (common/src/resolve.c).  Values, resolvers and buffers are
 * reused across calls: no per-record schema parsing.
 *
 * Hostile input (wrong magic, unknown id, truncated body, negative or huge
 * lengths) returns a specific error and never crashes or allocates without
 * bound: lengths are checked against the bytes actually present before Avro
 * C sees them (Debian's Avro C 1.11.1 trusts them).
 *
 * @remark An es_serde_t is not thread-safe; use one per thread.
 */
#ifndef ESCQRS_SERDE_H
#define ESCQRS_SERDE_H

#include "escqrs/err.h"
#include "escqrs/mem.h"
#include "escqrs/registry.h"

#include <avro.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define ES_WIRE_MAGIC       0x00
#define ES_WIRE_HEADER_SIZE 5

typedef struct es_serde_s es_serde_t;

/**
 * @brief Serde for @p subject reading (and writing) with the schema @p schema_json.
 * @param reg may be NULL for a registry-less serde with a fixed @p schema_id
 *        (unit tests, fuzzing): then only records with that id, or an id made
 *        known with es_serde_add_writer(), decode.
 * @param register_schema register the schema under the subject now and encode
 *        with its id; otherwise look the id up (encoding needs it registered).
 * @param schema_json NULL for writer-schema mode (needs @p reg): every record is
 *        decoded with its own writer schema, as export tools want; no encoding.
 * @remark The schema text is registered as given (docs and logical types kept),
 *         which is what analysts' tools will read.
 */
es_serde_t *es_serde_new(es_registry_t *reg, const char *subject, const char *schema_json,
                         bool register_schema, int schema_id, char *errstr, size_t errstr_size);
/**
 * @brief es_serde_new() that says why it failed: ES_ERR_REGISTRY_UNAVAILABLE
 *        (retry later), ES_ERR_INCOMPATIBLE_SCHEMA, ES_ERR_SCHEMA, ...
 * @param out set to the new serde on ES_ERR_OK, NULL otherwise.
 */
es_err_t es_serde_open(es_registry_t *reg, const char *subject, const char *schema_json,
                       bool register_schema, int schema_id, es_serde_t **out, char *errstr,
                       size_t errstr_size);
void es_serde_destroy(es_serde_t *serde);

/**
 * @brief Make writer schema @p writer_json known under @p id without asking the
 *        registry, e.g. for a registry-less serde reading records of several
 *        schema versions (unit tests, fuzzing, replaying a file of records).
 * @returns ES_ERR_INVALID_ARG when @p id is already known, ES_ERR_SCHEMA when
 *          the schema does not parse.
 */
es_err_t es_serde_add_writer(es_serde_t *serde, int id, const char *writer_json, char *errstr,
                             size_t errstr_size);

/** @brief The id this serde encodes with. */
int es_serde_schema_id(const es_serde_t *serde);

/** @brief A fresh value of the reader schema for building a record to encode (not in writer-schema
 * mode). */
void es_serde_new_value(es_serde_t *serde, avro_value_t *value);

/** @brief Encode @p value (of the reader schema) as a framed record into @p out. */
es_err_t es_serde_encode(es_serde_t *serde, avro_value_t *value, es_buf_t *out, char *errstr,
                         size_t errstr_size);

/**
 * @brief Decode a framed record into a value of the reader schema.
 * @param out set to a value owned by the serde, valid until the next decode.
 * @returns ES_ERR_BAD_MAGIC, ES_ERR_UNKNOWN_SCHEMA, ES_ERR_TRUNCATED,
 *          ES_ERR_BAD_LENGTH, ES_ERR_DECODE, ES_ERR_SCHEMA (the writer schema
 *          cannot be resolved to the reader's), ES_ERR_REGISTRY or
 *          ES_ERR_REGISTRY_UNAVAILABLE (writer schema not fetched), or ES_ERR_OK.
 */
es_err_t es_serde_decode(es_serde_t *serde, const void *data, size_t len, avro_value_t **out,
                         char *errstr, size_t errstr_size);

/** @brief The reader schema (borrowed). */
avro_schema_t es_serde_schema(const es_serde_t *serde);

/** @brief Schema id of a framed record without decoding it (ES_ERR_BAD_MAGIC/TRUNCATED). */
es_err_t es_wire_schema_id(const void *data, size_t len, int *schema_id);

/**
 * @brief @p v as plain JSON for people and APIs (avro_json.c): a union is its
 *        current branch's value, an enum its symbol, bytes and fixed hex.
 * @returns a new reference.
 */
json_t *es_avro_to_json(avro_value_t *v);

#endif
