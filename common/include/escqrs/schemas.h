/**
 * @file schemas.h
 * @brief The schema catalog: every .avsc file of schemas/, compiled into the library.
 *
 * The programs carry their schemas, so they need no path at run time and a
 * binary always registers the schemas it was built with.  The catalog is
 * generated at build time (common/cmake/embed_schemas.cmake); this header
 * depends on Avro C only, so pure modules may use it.
 */
#ifndef ESCQRS_SCHEMAS_H
#define ESCQRS_SCHEMAS_H

#include "escqrs/err.h"

#include <avro.h>
#include <stddef.h>

/**
 * @brief The text of schema @p name (e.g. "cart.events") from schemas/;
 *        NULL when there is no such schema.
 */
const char *es_schema_text(const char *name);

/** @brief Parse schema @p name (see es_schema_text()); caller owns *schema. */
es_err_t es_schema_parse(const char *name, avro_schema_t *schema, char *errstr, size_t errstr_size);

#endif
