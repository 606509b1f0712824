/**
 * @file registry.h
 * @brief Confluent-compatible schema registry client (libcurl), with caches.
 *
 * Speaks the Confluent REST API (Apicurio Registry's /apis/ccompat/v7 locally),
 * so the same subjects and ids serve Python confluent-kafka, Kafka Connect and
 * Spark.  Schemas by id and ids by (subject, schema) are cached in memory for
 * the life of the client: the hot path never does HTTP.  Transient failures
 * (connection refused, 5xx, timeouts) are retried with exponential backoff;
 * the registry's own error message is passed on in errstr.
 *
 * @remark A client is thread-safe: caches are guarded by a mutex and each
 *         request uses its own curl easy handle.
 */
#ifndef ESCQRS_REGISTRY_H
#define ESCQRS_REGISTRY_H

#include "escqrs/err.h"
#include "escqrs/conf.h"

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>

/** Room for a subject: a Kafka topic name (at most 249 bytes), "-value" and NUL. */
#define ES_SUBJECT_MAX 256

typedef struct es_registry_s es_registry_t;

/** @brief Declared `registry.url` and `registry.timeout.ms`; add to a program's tables. */
extern const es_conf_def_t es_registry_conf_defs[];

/**
 * @param base_url e.g. "http://127.0.0.1:8081/apis/ccompat/v7" (no trailing slash needed)
 * @param timeout_ms per HTTP request
 * @param retries extra attempts for transient failures
 */
es_registry_t *es_registry_new(const char *base_url, int timeout_ms, int retries, char *errstr,
                               size_t errstr_size);
/**
 * @brief es_registry_new() from the `registry.*` keys of @p conf: URL,
 *        timeout, TLS (CA, client certificate) and credentials (basic or
 *        bearer).  The way every program makes its registry client.
 */
es_registry_t *es_registry_from_conf(const es_conf_t *conf, int retries, char *errstr,
                                     size_t errstr_size);
void es_registry_destroy(es_registry_t *reg);

/** @brief Register @p schema_json under @p subject (idempotent); *id is its global id. */
es_err_t es_registry_register(es_registry_t *reg, const char *subject, const char *schema_json,
                              int *id, char *errstr, size_t errstr_size);

/** @brief Id of @p schema_json if registered under @p subject, else ES_ERR_NOT_FOUND. */
es_err_t es_registry_lookup(es_registry_t *reg, const char *subject, const char *schema_json,
                            int *id, char *errstr, size_t errstr_size);

/**
 * @brief The parsed writer schema with global id @p id (fetched once, cached).
 * @returns ES_ERR_UNKNOWN_SCHEMA when the registry does not know the id.
 * @remark *schema is borrowed: owned by the client, valid until it is destroyed.
 */
es_err_t es_registry_schema_by_id(es_registry_t *reg, int id, avro_schema_t *schema, char *errstr,
                                  size_t errstr_size);

/** @brief Set the subject's compatibility level, e.g. "BACKWARD_TRANSITIVE". */
es_err_t es_registry_set_compatibility(es_registry_t *reg, const char *subject, const char *level,
                                       char *errstr, size_t errstr_size);

/** @brief How many versions are registered under @p subject (0 when it is unknown). */
es_err_t es_registry_version_count(es_registry_t *reg, const char *subject, size_t *count,
                                   char *errstr, size_t errstr_size);

/**
 * @brief The subject's compatibility level (the registry's global one when the
 *        subject has none of its own), e.g. "BACKWARD_TRANSITIVE", into @p level.
 * @returns ES_ERR_NOT_FOUND when the registry reports no level at all.
 */
es_err_t es_registry_get_compatibility(es_registry_t *reg, const char *subject, char *level,
                                       size_t level_size, char *errstr, size_t errstr_size);

/**
 * @brief Ask whether @p schema_json is compatible with every registered version
 *        of @p subject under the subject's level.  Registers nothing.
 * @returns ES_ERR_OK (compatible, or no version registered yet),
 *          ES_ERR_INCOMPATIBLE_SCHEMA with the registry's reasons in errstr.
 * @remark The answer is only as strict as the subject's level: under NONE
 *         everything is compatible (see es_registry_get_compatibility()).
 *         Apicurio's Confluent API gives no reasons; they are then taken from
 *         Apicurio's native API with a dry run, which registers nothing.
 */
es_err_t es_registry_check_compatible(es_registry_t *reg, const char *subject,
                                      const char *schema_json, char *errstr, size_t errstr_size);

#endif
