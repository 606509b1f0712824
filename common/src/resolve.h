/*
 * resolve.h — internal: Avro schema resolution with defaults (used by serde.c).
 *
 * Debian's Avro C 1.11.1 cannot resolve a writer schema to a reader schema
 * that adds a field with a default ("Reader field x doesn't appear in
 * writer"), and its parser drops `default` altogether.  So records written
 * with another schema are read with their writer schema and then copied into
 * the reader value by this resolver, following the Avro spec's resolution
 * rules: fields matched by name, reader-only fields set from their JSON
 * default, writer-only fields skipped, unions matched by branch type name,
 * enums by symbol, and the numeric promotions int→long→float→double.
 */
#ifndef ESCQRS_RESOLVE_H
#define ESCQRS_RESOLVE_H

#include "escqrs/err.h"

#include <avro.h>
#include <stddef.h>

typedef struct es_resolver_s es_resolver_t;

/** @brief Index the reader schema's JSON text (for field defaults). NULL on bad JSON. */
es_resolver_t *es_resolver_new(const char *reader_schema_json, char *errstr, size_t errstr_size);
void es_resolver_destroy(es_resolver_t *r);

/** @brief Copy @p src (any compatible writer value) into @p dst (a reader value). */
es_err_t es_resolve_copy(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, char *errstr,
                         size_t errstr_size);

#endif
