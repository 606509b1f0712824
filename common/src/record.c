/*
 * record.c — reading fields of Avro records, strictly.
 *
 * Shared by everything that looks inside an envelope: projection folds, the
 * aggregates' decide and evolve, tools.  Strict on purpose: a missing field
 * or a wrong type is an error with the field's name, never a silent zero,
 * so a fold can send the event to the DLQ with a reason a person can act on.
 * ["null", T] unions are read through to their branch.
 */
#include "escqrs/record.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

es_err_t es_record_payload(avro_value_t *value, avro_value_t *payload, const char **type,
                           char *errstr, size_t errstr_size)
{
    avro_value_t u;
    if (avro_value_get_by_name(value, "payload", &u, NULL) != 0) {
        snprintf(errstr, errstr_size, "event has no payload field");
        return ES_ERR_DECODE;
    }
    if (avro_value_get_type(&u) != AVRO_UNION) {
        *payload = u;
    } else if (avro_value_get_current_branch(&u, payload) != 0) {
        snprintf(errstr, errstr_size, "event payload union has no branch: %s", avro_strerror());
        return ES_ERR_DECODE;
    }
    avro_schema_t s = avro_value_get_schema(payload);
    if (!s || !is_avro_record(s)) {
        snprintf(errstr, errstr_size, "event payload is not a record");
        return ES_ERR_DECODE;
    }
    *type = avro_schema_name(s);
    return ES_ERR_OK;
}

static es_err_t get_field(avro_value_t *rec, const char *name, avro_value_t *f, char *errstr,
                          size_t errstr_size)
{
    if (avro_value_get_by_name(rec, name, f, NULL) != 0) {
        snprintf(errstr, errstr_size, "missing field %s", name);
        return ES_ERR_DECODE;
    }
    /* ["null", T] unions: take the branch */
    if (avro_value_get_type(f) == AVRO_UNION) {
        avro_value_t b;
        if (avro_value_get_current_branch(f, &b) != 0) {
            snprintf(errstr, errstr_size, "field %s: empty union", name);
            return ES_ERR_DECODE;
        }
        *f = b;
    }
    return ES_ERR_OK;
}

/* The field @p name when it holds @p type ("a string", ...: @p what in the message). */
static es_err_t typed_field(avro_value_t *rec, const char *name, avro_type_t type, const char *what,
                            avro_value_t *f, char *errstr, size_t errstr_size)
{
    es_err_t err = get_field(rec, name, f, errstr, errstr_size);
    if (!err && avro_value_get_type(f) != type) {
        snprintf(errstr, errstr_size, "field %s is not %s", name, what);
        err = ES_ERR_DECODE;
    }
    return err;
}

es_err_t es_record_string(avro_value_t *rec, const char *name, const char **s, size_t *len,
                          char *errstr, size_t errstr_size)
{
    avro_value_t f;
    size_t sz = 0;
    es_err_t err = typed_field(rec, name, AVRO_STRING, "a string", &f, errstr, errstr_size);
    if (err)
        return err;
    avro_value_get_string(&f, s, &sz);
    if (len)
        *len = sz ? sz - 1 : 0; /* Avro C counts the NUL */
    return ES_ERR_OK;
}

es_err_t es_record_long(avro_value_t *rec, const char *name, int64_t *v, char *errstr,
                        size_t errstr_size)
{
    avro_value_t f;
    int32_t i = 0;
    es_err_t err = get_field(rec, name, &f, errstr, errstr_size);
    if (err)
        return err;
    switch (avro_value_get_type(&f)) {
    case AVRO_INT64:
        avro_value_get_long(&f, v);
        return ES_ERR_OK;
    case AVRO_INT32: /* an int widens to a long */
        avro_value_get_int(&f, &i);
        *v = i;
        return ES_ERR_OK;
    default:
        snprintf(errstr, errstr_size, "field %s is not a long", name);
        return ES_ERR_DECODE;
    }
}

es_err_t es_record_int(avro_value_t *rec, const char *name, int32_t *v, char *errstr,
                       size_t errstr_size)
{
    avro_value_t f;
    es_err_t err = typed_field(rec, name, AVRO_INT32, "an int", &f, errstr, errstr_size);
    if (!err)
        avro_value_get_int(&f, v);
    return err;
}

es_err_t es_principal_set(avro_value_t *rec, const char *subject, const char *client_id)
{
    avro_value_t f, br, field;
    if (avro_value_get_by_name(rec, "principal", &f, NULL))
        return ES_ERR_OK; /* an older schema: nothing to record */
    if (!subject || !*subject)
        return avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br) ? ES_ERR_ENCODE
                                                                             : ES_ERR_OK;
    if (avro_value_set_branch(&f, 1, &br) || avro_value_get_by_name(&br, "subject", &field, NULL) ||
        avro_value_set_string(&field, subject) ||
        avro_value_get_by_name(&br, "client_id", &field, NULL))
        return ES_ERR_ENCODE;
    avro_value_t cb;
    bool has_client = client_id && *client_id;
    if (avro_value_set_branch(&field, has_client ? 1 : 0, &cb) ||
        (has_client ? avro_value_set_string(&cb, client_id) : avro_value_set_null(&cb)))
        return ES_ERR_ENCODE;
    return ES_ERR_OK;
}

/* A string of a ["null", "string"] union, or NULL. */
static const char *opt_str(avro_value_t *u)
{
    avro_value_t br;
    const char *s = NULL;
    size_t len;
    if (avro_value_get_type(u) != AVRO_UNION || avro_value_get_current_branch(u, &br) ||
        avro_value_get_type(&br) != AVRO_STRING || avro_value_get_string(&br, &s, &len))
        return NULL;
    return s;
}

void es_principal_get(avro_value_t *rec, char *subject, size_t subjectsz, char *client_id,
                      size_t clientsz)
{
    avro_value_t f, br, field;
    const char *s = NULL, *c = NULL;
    size_t len;
    if (!avro_value_get_by_name(rec, "principal", &f, NULL) &&
        avro_value_get_type(&f) == AVRO_UNION && !avro_value_get_current_branch(&f, &br) &&
        avro_value_get_type(&br) == AVRO_RECORD) {
        if (!avro_value_get_by_name(&br, "subject", &field, NULL))
            avro_value_get_string(&field, &s, &len);
        if (!avro_value_get_by_name(&br, "client_id", &field, NULL))
            c = opt_str(&field);
    }
    snprintf(subject, subjectsz, "%s", s ? s : "");
    snprintf(client_id, clientsz, "%s", c ? c : "");
}
