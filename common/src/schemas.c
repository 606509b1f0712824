/*
 * schemas.c — schemas by name: the library's own (command-result) and those
 * of every loaded module, both held by the module registry (module.c), and
 * parsed with Avro C.
 */
#include "escqrs/schemas.h"
#include "escqrs/modules.h"

#include <stdio.h>
#include <string.h>

const char *es_schema_text(const char *name)
{
    return es_modules_schema_text(name);
}

es_err_t es_schema_parse(const char *name, avro_schema_t *schema, char *errstr, size_t errstr_size)
{
    const char *text = es_schema_text(name);
    if (!text) {
        snprintf(errstr, errstr_size,
                 "no schema named %s (neither libescqrs nor a loaded module has it)", name);
        return ES_ERR_NOT_FOUND;
    }
    if (avro_schema_from_json_length(text, strlen(text), schema)) {
        snprintf(errstr, errstr_size, "schema %s: %s", name, avro_strerror());
        return ES_ERR_SCHEMA;
    }
    return ES_ERR_OK;
}
