/**
 * @file schemas.h
 * @brief Schemas by name: the library's own (command-result) and those of
 *        every loaded domain module (modules.h), all compiled in.
 *
 * The programs carry their schemas (generated tables: embed_schemas.cmake,
 * escqrs_add_module), so they need no path at run time and a binary always
 * registers the schemas it was built with.  This header depends on Avro C
 * only, so pure code may use it.
 */
#ifndef ESCQRS_SCHEMAS_H
#define ESCQRS_SCHEMAS_H

#include "escqrs/err.h"

#include <avro.h>
#include <stddef.h>

/**
 * @brief The text of schema @p name (e.g. "cart.events"): the library's own
 *        or a loaded module's; NULL when there is no such schema.
 */
const char *es_schema_text(const char *name);

/** @brief Parse schema @p name (see es_schema_text()); caller owns *schema. */
es_err_t es_schema_parse(const char *name, avro_schema_t *schema, char *errstr, size_t errstr_size);

#endif
