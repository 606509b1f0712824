/*
 * aggregate.c — the emitter that decide() writes its events into.
 *
 * One value of the event envelope's payload union per event slot is created
 * once and reused for every command, so deciding allocates nothing in the
 * steady state; an event's type is its branch's record name.
 */
#include "escqrs/aggregate.h"
#include "escqrs/schemas.h"

#include <stdio.h>
#include <string.h>

struct es_emitter_s {
    avro_schema_t envelope;
    avro_schema_t payload_union; /* borrowed from envelope */
    avro_value_iface_t *iface;
    avro_value_t slots[ES_AGG_MAX_EVENTS];
    avro_value_t branches[ES_AGG_MAX_EVENTS];
    const char *types[ES_AGG_MAX_EVENTS];
    size_t n;
};

es_emitter_t *es_emitter_new(const char *events_schema, char *errstr, size_t errstr_size)
{
    es_emitter_t *em = es_calloc(1, sizeof(*em));
    if (es_schema_parse(events_schema, &em->envelope, errstr, errstr_size))
        goto fail;
    em->payload_union = avro_schema_record_field_get(em->envelope, "payload");
    if (!em->payload_union || avro_typeof(em->payload_union) != AVRO_UNION) {
        snprintf(errstr, errstr_size, "schema %s has no payload union", events_schema);
        goto fail;
    }
    em->iface = avro_generic_class_from_schema(em->payload_union);
    for (size_t i = 0; i < ES_AGG_MAX_EVENTS; i++)
        avro_generic_value_new(em->iface, &em->slots[i]);
    return em;
fail:
    if (em->envelope)
        avro_schema_decref(em->envelope);
    free(em);
    return NULL;
}

void es_emitter_destroy(es_emitter_t *em)
{
    if (!em)
        return;
    for (size_t i = 0; i < ES_AGG_MAX_EVENTS; i++)
        avro_value_decref(&em->slots[i]);
    avro_value_iface_decref(em->iface);
    avro_schema_decref(em->envelope);
    free(em);
}

void es_emitter_reset(es_emitter_t *em)
{
    em->n = 0;
}

size_t es_emitter_count(const es_emitter_t *em)
{
    return em->n;
}

avro_value_t *es_emitter_event(es_emitter_t *em, size_t i, const char **type)
{
    if (i >= em->n)
        return NULL;
    *type = em->types[i];
    return &em->branches[i];
}

avro_value_t *es_emit(es_emitter_t *em, const char *type)
{
    if (em->n == ES_AGG_MAX_EVENTS)
        return NULL;
    for (size_t b = 0; b < avro_schema_union_size(em->payload_union); b++) {
        avro_schema_t br = avro_schema_union_branch(em->payload_union, (int)b);
        if (strcmp(avro_schema_name(br), type))
            continue;
        avro_value_t *slot = &em->slots[em->n];
        avro_value_reset(slot);
        avro_value_set_branch(slot, (int)b, &em->branches[em->n]);
        em->types[em->n] = avro_schema_name(br);
        return &em->branches[em->n++];
    }
    return NULL;
}
