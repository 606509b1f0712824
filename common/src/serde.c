/*
 * serde.c — Confluent wire format over Avro C, with schema resolution.
 *
 * Decoding is one pass over the body with the writer schema (avro_flat.c):
 * every varint, length, block count, union branch and enum index is checked
 * against the bytes actually present, so hostile input gets a specific error
 * (Debian's Avro C 1.11.1 trusts lengths and can be made to over-read or
 * allocate without bound), and the values land in a reused arena.  When the
 * writer schema is the reader schema that value is the result; otherwise
 * resolve.c copies it onto the reader's generic value (defaults filled in,
 * unknown fields skipped): Avro C 1.11.1's own resolver cannot fill
 * defaults, see resolve.h.  Avro C writes (encoding) with generic values.
 *
 * Per writer schema id its flat reader is compiled once; the reader value,
 * the Avro writer and the encode buffer are reused across calls, so the
 * steady state allocates nothing per record.
 */
#include "escqrs/serde.h"
#include "escqrs/log.h"
#include "avro_flat.h"
#include "resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int id;
    avro_schema_t writer; /* borrowed from the registry, or our reader */
    bool direct;          /* writer == reader: no resolution needed */
    bool owned;           /* writer added by es_serde_add_writer(): ours to release */
    es_flat_t *flat;      /* reads records of this writer schema */
} writer_entry_t;

struct es_serde_s {
    es_registry_t *reg;
    char *subject;
    avro_schema_t reader;
    avro_value_iface_t *reader_iface;
    avro_value_t reader_value;
    es_resolver_t *resolver;
    int schema_id;
    avro_value_t decoded; /* the last record read (a flat value), for writer-schema callers */
    avro_writer_t awriter;
    writer_entry_t *writers;
    size_t nwriters, capwriters;
};

es_serde_t *es_serde_new(es_registry_t *reg, const char *subject, const char *schema_json,
                         bool register_schema, int schema_id, char *errstr, size_t errstr_size)
{
    es_serde_t *serde = NULL;
    es_serde_open(reg, subject, schema_json, register_schema, schema_id, &serde, errstr,
                  errstr_size);
    return serde;
}

es_err_t es_serde_open(es_registry_t *reg, const char *subject, const char *schema_json,
                       bool register_schema, int schema_id, es_serde_t **out, char *errstr,
                       size_t errstr_size)
{
    es_serde_t *serde = es_calloc(1, sizeof(*serde));
    es_err_t err = ES_ERR_SCHEMA;
    *out = NULL;

    serde->reg = reg;
    serde->subject = es_strdup(subject);
    serde->schema_id = schema_id;
    serde->awriter = avro_writer_memory("", 0);
    if (!schema_json) { /* writer-schema mode: every record read with its own schema */
        if (!reg) {
            snprintf(errstr, errstr_size, "%s: writer-schema mode needs a registry", subject);
            err = ES_ERR_INVALID_ARG;
            goto fail;
        }
        serde->schema_id = -1;
        *out = serde;
        return ES_ERR_OK;
    }
    if (avro_schema_from_json_length(schema_json, strlen(schema_json), &serde->reader)) {
        snprintf(errstr, errstr_size, "schema for %s: %s", subject, avro_strerror());
        goto fail;
    }
    if (!(serde->resolver = es_resolver_new(schema_json, errstr, errstr_size)))
        goto fail;
    if (reg) {
        err = register_schema ? es_registry_register(reg, subject, schema_json, &serde->schema_id,
                                                     errstr, errstr_size)
                              : es_registry_lookup(reg, subject, schema_json, &serde->schema_id,
                                                   errstr, errstr_size);
        if (err == ES_ERR_NOT_FOUND && !register_schema) {
            serde->schema_id = -1; /* may still decode what others wrote */
        } else if (err) {
            goto fail;
        }
    }
    err = ES_ERR_SCHEMA;
    serde->reader_iface = avro_generic_class_from_schema(serde->reader);
    if (!serde->reader_iface || avro_generic_value_new(serde->reader_iface, &serde->reader_value)) {
        snprintf(errstr, errstr_size, "schema for %s: %s", subject, avro_strerror());
        goto fail;
    }
    *out = serde;
    return ES_ERR_OK;
fail:
    avro_writer_free(serde->awriter);
    es_resolver_destroy(serde->resolver);
    if (serde->reader_iface)
        avro_value_iface_decref(serde->reader_iface);
    if (serde->reader)
        avro_schema_decref(serde->reader);
    free(serde->subject);
    free(serde);
    return err;
}

void es_serde_destroy(es_serde_t *serde)
{
    if (!serde)
        return;
    for (size_t i = 0; i < serde->nwriters; i++) {
        writer_entry_t *w = &serde->writers[i];
        es_flat_destroy(w->flat);
        if (w->owned)
            avro_schema_decref(w->writer);
    }
    free(serde->writers);
    es_resolver_destroy(serde->resolver);
    if (serde->reader) {
        avro_value_decref(&serde->reader_value);
        avro_value_iface_decref(serde->reader_iface);
        avro_schema_decref(serde->reader);
    }
    avro_writer_free(serde->awriter);
    free(serde->subject);
    free(serde);
}

int es_serde_schema_id(const es_serde_t *serde)
{
    return serde->schema_id;
}

avro_schema_t es_serde_schema(const es_serde_t *serde)
{
    return serde->reader;
}

void es_serde_new_value(es_serde_t *serde, avro_value_t *value)
{
    avro_generic_value_new(serde->reader_iface, value);
}

es_err_t es_serde_encode(es_serde_t *serde, avro_value_t *value, es_buf_t *out, char *errstr,
                         size_t errstr_size)
{
    size_t size = 0;
    if (serde->schema_id < 0 || !serde->reader) {
        snprintf(errstr, errstr_size, "%s: schema is not registered; cannot encode",
                 serde->subject);
        return ES_ERR_ENCODE;
    }
    if (avro_value_sizeof(value, &size)) {
        snprintf(errstr, errstr_size, "%s: %s", serde->subject, avro_strerror());
        return ES_ERR_ENCODE;
    }
    es_buf_clear(out);
    es_buf_reserve(out, ES_WIRE_HEADER_SIZE + size);
    uint32_t id = (uint32_t)serde->schema_id;
    uint8_t hdr[ES_WIRE_HEADER_SIZE] = {ES_WIRE_MAGIC, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                                        (uint8_t)(id >> 8), (uint8_t)id};
    memcpy(out->data, hdr, sizeof(hdr));
    avro_writer_memory_set_dest(serde->awriter, out->data + ES_WIRE_HEADER_SIZE, (int64_t)size);
    if (avro_value_write(serde->awriter, value)) {
        snprintf(errstr, errstr_size, "%s: %s", serde->subject, avro_strerror());
        return ES_ERR_ENCODE;
    }
    out->len = ES_WIRE_HEADER_SIZE + size;
    return ES_ERR_OK;
}

es_err_t es_wire_schema_id(const void *data, size_t len, int *schema_id)
{
    const uint8_t *p = data;
    if (len >= 1 && p[0] != ES_WIRE_MAGIC)
        return ES_ERR_BAD_MAGIC;
    if (len < ES_WIRE_HEADER_SIZE)
        return ES_ERR_TRUNCATED;
    *schema_id = (int)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
    return ES_ERR_OK;
}

/* ---------------------------------------------------------------- decode */

static writer_entry_t *writer_add(es_serde_t *serde, int id, avro_schema_t writer, bool owned);

static es_err_t writer_for(es_serde_t *serde, int id, writer_entry_t **out, char *errstr,
                           size_t errstr_size)
{
    for (size_t i = 0; i < serde->nwriters; i++) {
        if (serde->writers[i].id == id) {
            *out = &serde->writers[i];
            return ES_ERR_OK;
        }
    }
    avro_schema_t writer = NULL;
    if (id == serde->schema_id && id >= 0) { /* -1 means "not registered", never a record's id */
        writer = serde->reader;
    } else if (!serde->reg) {
        snprintf(errstr, errstr_size, "schema id %d is unknown (expected %d)", id,
                 serde->schema_id);
        return ES_ERR_UNKNOWN_SCHEMA;
    } else {
        /* ES_ERR_UNKNOWN_SCHEMA when the registry does not know the id */
        es_err_t err = es_registry_schema_by_id(serde->reg, id, &writer, errstr, errstr_size);
        if (err)
            return err;
    }
    *out = writer_add(serde, id, writer, false);
    return ES_ERR_OK;
}

static writer_entry_t *writer_add(es_serde_t *serde, int id, avro_schema_t writer, bool owned)
{
    writer_entry_t w = {.id = id, .writer = writer, .owned = owned};
    w.direct =
        serde->reader && (writer == serde->reader || avro_schema_equal(writer, serde->reader));
    w.flat = es_flat_new(writer);
    if (serde->nwriters == serde->capwriters) {
        serde->capwriters = serde->capwriters ? serde->capwriters * 2 : 4;
        serde->writers = es_realloc(serde->writers, serde->capwriters * sizeof(*serde->writers));
    }
    serde->writers[serde->nwriters] = w;
    return &serde->writers[serde->nwriters++];
}

es_err_t es_serde_add_writer(es_serde_t *serde, int id, const char *writer_json, char *errstr,
                             size_t errstr_size)
{
    avro_schema_t writer = NULL;
    for (size_t i = 0; i < serde->nwriters; i++) {
        if (serde->writers[i].id == id) {
            snprintf(errstr, errstr_size, "%s: schema id %d is already known", serde->subject, id);
            return ES_ERR_INVALID_ARG;
        }
    }
    if (avro_schema_from_json_length(writer_json, strlen(writer_json), &writer)) {
        snprintf(errstr, errstr_size, "%s: writer schema %d: %s", serde->subject, id,
                 avro_strerror());
        return ES_ERR_SCHEMA;
    }
    writer_add(serde, id, writer, true);
    return ES_ERR_OK;
}

es_err_t es_serde_decode(es_serde_t *serde, const void *data, size_t len, avro_value_t **out,
                         char *errstr, size_t errstr_size)
{
    int id = 0;
    writer_entry_t *w = NULL;
    es_err_t err = es_wire_schema_id(data, len, &id);

    if (err == ES_ERR_BAD_MAGIC) {
        snprintf(errstr, errstr_size, "first byte is 0x%02x, not the wire format's 0x00",
                 ((const uint8_t *)data)[0]);
        return err;
    }
    if (err) {
        snprintf(errstr, errstr_size, "record of %zu bytes is shorter than the 5-byte header", len);
        return err;
    }
    if ((err = writer_for(serde, id, &w, errstr, errstr_size)))
        return err;

    const char *what = NULL;
    size_t pos = 0, body = len - ES_WIRE_HEADER_SIZE;
    err = es_flat_read(w->flat, (const uint8_t *)data + ES_WIRE_HEADER_SIZE, body, &serde->decoded,
                       &what, &pos);
    if (err) {
        snprintf(errstr, errstr_size, "schema id %d: %s at body byte %zu", id, what, pos);
        return err;
    }
    if (pos != body) {
        snprintf(errstr, errstr_size, "schema id %d: %zu trailing bytes after the record", id,
                 body - pos);
        return ES_ERR_DECODE;
    }
    if (w->direct || !serde->reader) { /* the reader's own schema, or writer-schema mode */
        *out = &serde->decoded;
        return ES_ERR_OK;
    }
    char detail[256];
    avro_value_reset(&serde->reader_value);
    if ((err = es_resolve_copy(serde->resolver, &serde->decoded, &serde->reader_value, detail,
                               sizeof(detail)))) {
        snprintf(errstr, errstr_size, "schema id %d: %s", id, detail);
        return err;
    }
    *out = &serde->reader_value;
    return ES_ERR_OK;
}
