/*
 * domaintest.c — see domaintest.h.
 */
#include "domaintest.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"

#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

void dh_init(dh_t *h, const es_aggregate_def_t *def)
{
    char errstr[256];
    memset(h, 0, sizeof(*h));
    h->def = def;
    h->state = es_calloc(1, def->state_size);
    h->em = es_emitter_new(def->events_schema, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(h->em);
    CU_ASSERT_EQUAL_FATAL(
        es_schema_parse(def->commands_schema, &h->commands, errstr, sizeof(errstr)), ES_ERR_OK);
    h->iface = avro_generic_class_from_schema(avro_schema_record_field_get(h->commands, "payload"));
    avro_generic_value_new(h->iface, &h->holder);
}

void dh_free(dh_t *h)
{
    avro_value_decref(&h->holder);
    avro_value_iface_decref(h->iface);
    avro_schema_decref(h->commands);
    es_emitter_destroy(h->em);
    free(h->state);
}

avro_value_t *dh_command(dh_t *h, const char *type)
{
    avro_schema_t u = avro_value_get_schema(&h->holder);
    avro_value_reset(&h->holder);
    for (size_t b = 0; b < avro_schema_union_size(u); b++) {
        if (!strcmp(avro_schema_name(avro_schema_union_branch(u, (int)b)), type)) {
            avro_value_set_branch(&h->holder, (int)b, &h->payload);
            h->type = type;
            return &h->payload;
        }
    }
    CU_FAIL_FATAL("no such command type");
    return NULL;
}

void dh_set_string(avro_value_t *rec, const char *field, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_string(&f, v);
}

void dh_set_long(avro_value_t *rec, const char *field, int64_t v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    if (avro_value_get_type(&f) == AVRO_INT32)
        avro_value_set_int(&f, (int32_t)v);
    else
        avro_value_set_long(&f, v);
}

const char *dh_run(dh_t *h)
{
    char errstr[256];
    es_emitter_reset(h->em);
    const char *reason = h->def->decide(h->state, h->type, &h->payload, h->em);
    if (reason) {
        CU_ASSERT_EQUAL(es_emitter_count(h->em), 0); /* a rejection writes no event */
        return reason;
    }
    for (size_t i = 0; i < es_emitter_count(h->em); i++) {
        const char *type;
        avro_value_t *ev = es_emitter_event(h->em, i, &type);
        CU_ASSERT_EQUAL(h->def->evolve(h->state, type, ev, errstr, sizeof(errstr)), ES_ERR_OK);
    }
    /* the state survives the store: encode, decode, same bytes */
    es_buf_t a = {0}, b = {0};
    void *copy = es_calloc(1, h->def->state_size);
    h->def->state_encode(h->state, &a);
    CU_ASSERT_EQUAL(h->def->state_decode(copy, a.data, a.len), ES_ERR_OK);
    h->def->state_encode(copy, &b);
    CU_ASSERT_TRUE(a.len == b.len && !memcmp(a.data, b.data, a.len));
    free(copy);
    es_buf_free(&a);
    es_buf_free(&b);
    return NULL;
}

const char *dh_event_type(dh_t *h, size_t i)
{
    const char *type = "";
    es_emitter_event(h->em, i, &type);
    return type;
}

int64_t dh_event_long(dh_t *h, size_t i, const char *field)
{
    const char *type;
    char errstr[128];
    int64_t v = -1;
    avro_value_t *ev = es_emitter_event(h->em, i, &type);
    if (ev)
        es_record_long(ev, field, &v, errstr, sizeof(errstr));
    return v;
}
