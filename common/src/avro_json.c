/*
 * avro_json.c — an Avro value as the JSON a person reads (serde.h).
 *
 * Avro's own JSON encoding wraps every union value in an object naming its
 * branch ({"string": "x"}), which is right for round trips and wrong for an
 * API answer: here a union is its current branch's value (null is null),
 * an enum its symbol, bytes and fixed lowercase hex.  Records keep their
 * field order.  Pure: no I/O.
 */
#include "escqrs/serde.h"

#include <stdio.h>

static json_t *hex_json(const void *data, size_t len)
{
    char *s = es_malloc(2 * len + 1);
    es_hex_encode(s, data, len);
    json_t *j = json_stringn(s, 2 * len);
    free(s);
    return j;
}

json_t *es_avro_to_json(avro_value_t *v)
{
    switch (avro_value_get_type(v)) {
    case AVRO_STRING: {
        const char *s = NULL;
        size_t len = 0;
        avro_value_get_string(v, &s, &len);
        /* len counts the NUL; a string that is not UTF-8 becomes its bytes in hex */
        json_t *j = json_stringn(s ? s : "", len ? len - 1 : 0);
        return j ? j : hex_json(s, len ? len - 1 : 0);
    }
    case AVRO_BYTES: {
        const void *b = NULL;
        size_t len = 0;
        avro_value_get_bytes(v, &b, &len);
        return hex_json(b, len);
    }
    case AVRO_FIXED: {
        const void *b = NULL;
        size_t len = 0;
        avro_value_get_fixed(v, &b, &len);
        return hex_json(b, len);
    }
    case AVRO_INT32: {
        int32_t i = 0;
        avro_value_get_int(v, &i);
        return json_integer(i);
    }
    case AVRO_INT64: {
        int64_t i = 0;
        avro_value_get_long(v, &i);
        return json_integer((json_int_t)i);
    }
    case AVRO_FLOAT: {
        float f = 0;
        avro_value_get_float(v, &f);
        return json_real(f);
    }
    case AVRO_DOUBLE: {
        double d = 0;
        avro_value_get_double(v, &d);
        return json_real(d);
    }
    case AVRO_BOOLEAN: {
        int b = 0;
        avro_value_get_boolean(v, &b);
        return json_boolean(b);
    }
    case AVRO_NULL:
        return json_null();
    case AVRO_ENUM: {
        int i = 0;
        avro_value_get_enum(v, &i);
        const char *sym = avro_schema_enum_get(avro_value_get_schema(v), i);
        return sym ? json_string(sym) : json_integer(i);
    }
    case AVRO_UNION: {
        avro_value_t br;
        return avro_value_get_current_branch(v, &br) ? json_null() : es_avro_to_json(&br);
    }
    case AVRO_RECORD:
    case AVRO_MAP: {
        json_t *o = json_object();
        size_t n = 0;
        avro_value_get_size(v, &n);
        for (size_t i = 0; i < n; i++) {
            avro_value_t f;
            const char *name = NULL;
            if (!avro_value_get_by_index(v, i, &f, &name) && name)
                json_object_set_new(o, name, es_avro_to_json(&f));
        }
        return o;
    }
    case AVRO_ARRAY: {
        json_t *a = json_array();
        size_t n = 0;
        avro_value_get_size(v, &n);
        for (size_t i = 0; i < n; i++) {
            avro_value_t e;
            if (!avro_value_get_by_index(v, i, &e, NULL))
                json_array_append_new(a, es_avro_to_json(&e));
        }
        return a;
    }
    default:
        return json_null();
    }
}
