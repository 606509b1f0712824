/*
 * schemas.c — the schema catalog: look-ups in the table that
 * common/cmake/embed_schemas.cmake generates from the .avsc files of schemas/.
 */
#include "escqrs/schemas.h"
#include "escqrs/module.h"

#include <stdio.h>
#include <string.h>

extern const es_module_schema_t es_library_schemas[];

const char *es_schema_text(const char *name)
{
    for (const es_module_schema_t *s = es_library_schemas; s->name; s++)
        if (!strcmp(s->name, name))
            return s->text;
    return NULL;
}

es_err_t es_schema_parse(const char *name, avro_schema_t *schema, char *errstr, size_t errstr_size)
{
    const char *text = es_schema_text(name);
    if (!text) {
        snprintf(errstr, errstr_size, "no schema named %s in schemas/", name);
        return ES_ERR_NOT_FOUND;
    }
    if (avro_schema_from_json_length(text, strlen(text), schema)) {
        snprintf(errstr, errstr_size, "schema %s: %s", name, avro_strerror());
        return ES_ERR_SCHEMA;
    }
    return ES_ERR_OK;
}
