/*
 * serde.c — Confluent wire format over Avro C, with schema resolution.
 *
 * Decoding is two passes over the body.  First a bounds-checking walk of the
 * bytes against the writer schema: every varint, length, block count, union
 * branch and enum index is checked against the bytes actually present, so
 * hostile input gets a specific error (Debian's Avro C 1.11.1 trusts lengths
 * and can be made to over-read or allocate without bound).  Then Avro C reads
 * the bytes — directly into the reader value when the writer schema is the
 * reader schema, otherwise into a value of the writer schema that resolve.c
 * copies onto the reader's (defaults filled in, unknown fields skipped):
 * Avro C 1.11.1's own resolver cannot fill defaults, see resolve.h.
 *
 * Per writer schema id its value class and value are built once and reused;
 * the reader value, the Avro reader/writer and the encode buffer are reused
 * across calls, so the steady state allocates nothing per record.
 */
#include "escqrs/serde.h"
#include "escqrs/log.h"
#include "resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_MAX_DEPTH       64
#define ZERO_WIDTH_MAX_ITEMS 65536 /* items that take no bytes (e.g. null) per record */

typedef struct {
    int id;
    avro_schema_t writer; /* borrowed from the registry, or our reader */
    bool direct;          /* writer == reader: no resolution needed */
    bool owned;           /* writer added by es_serde_add_writer(): ours to release */
    avro_value_iface_t *writer_iface;
    avro_value_t writer_value;
} writer_entry_t;

struct es_serde_s {
    es_registry_t *reg;
    char *subject;
    avro_schema_t reader;
    avro_value_iface_t *reader_iface;
    avro_value_t reader_value;
    es_resolver_t *resolver;
    int schema_id;
    avro_reader_t areader;
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
    serde->areader = avro_reader_memory("", 0);
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
    avro_reader_free(serde->areader);
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
        if (!w->direct) {
            avro_value_decref(&w->writer_value);
            avro_value_iface_decref(w->writer_iface);
        }
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
    avro_reader_free(serde->areader);
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

/* ------------------------------------------------- bounds-checking walk */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    uint64_t items;   /* array and map items seen so far in this record */
    const char *what; /* for the error message */
} walk_t;

/* A zigzag varint of at most @p max_bytes (5 for int, 10 for long, as Avro C reads them). */
static es_err_t read_varint_max(walk_t *w, int max_bytes, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 7 * max_bytes; shift += 7) {
        if (w->pos >= w->len) {
            w->what = "varint runs past the end";
            return ES_ERR_TRUNCATED;
        }
        uint8_t b = w->p[w->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return ES_ERR_OK;
        }
    }
    w->what = "varint longer than its type allows";
    return ES_ERR_DECODE;
}

static es_err_t read_varint(walk_t *w, int64_t *out)
{
    return read_varint_max(w, 10, out);
}

static es_err_t skip(walk_t *w, int64_t n)
{
    if (n < 0 || n > INT32_MAX) {
        w->what = "negative or oversized length";
        return ES_ERR_BAD_LENGTH;
    }
    if ((uint64_t)n > w->len - w->pos) {
        w->what = "length runs past the end";
        return ES_ERR_TRUNCATED;
    }
    w->pos += (size_t)n;
    return ES_ERR_OK;
}

static es_err_t walk(walk_t *w, avro_schema_t s, int depth);

/* Arrays and maps: blocks of (count, [byte size], items), ended by a count of 0. */
static es_err_t walk_blocks(walk_t *w, avro_schema_t item, bool is_map, int depth)
{
    es_err_t err;
    for (;;) {
        int64_t count;
        if ((err = read_varint(w, &count)))
            return err;
        if (count == 0)
            return ES_ERR_OK;
        if (count < 0) {
            int64_t bytes;
            if (count == INT64_MIN) {
                w->what = "block count out of range";
                return ES_ERR_BAD_LENGTH;
            }
            count = -count;
            if ((err = read_varint(w, &bytes)))
                return err;
            if (bytes < 0 || (uint64_t)bytes > w->len - w->pos) {
                w->what = "block byte size is negative or runs past the end";
                return bytes < 0 ? ES_ERR_BAD_LENGTH : ES_ERR_TRUNCATED;
            }
        }
        /*
         * Every item takes at least one byte unless its type takes none (null,
         * an empty record), so a record of n bytes holds at most n items plus
         * a bounded number of zero-width ones.  Counting across all blocks
         * keeps many blocks of zero-width items from adding up to an
         * unbounded number of values for Avro C to allocate.
         */
        w->items += (uint64_t)count;
        if (w->items > (uint64_t)w->len + ZERO_WIDTH_MAX_ITEMS) {
            w->what = "more array or map items than the record's bytes can hold";
            return ES_ERR_BAD_LENGTH;
        }
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                int64_t klen;
                if ((err = read_varint(w, &klen)) || (err = skip(w, klen)))
                    return err;
            }
            if ((err = walk(w, item, depth + 1)))
                return err;
        }
    }
}

static es_err_t walk(walk_t *w, avro_schema_t s, int depth)
{
    int64_t v;
    es_err_t err;
    if (depth > WALK_MAX_DEPTH) {
        w->what = "nesting too deep";
        return ES_ERR_DECODE;
    }
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return ES_ERR_OK;
    case AVRO_BOOLEAN:
        return skip(w, 1);
    case AVRO_INT32:
        if ((err = read_varint_max(w, 5, &v)))
            return err;
        if (v < INT32_MIN || v > INT32_MAX) {
            w->what = "int out of range";
            return ES_ERR_DECODE;
        }
        return ES_ERR_OK;
    case AVRO_INT64:
        return read_varint(w, &v);
    case AVRO_FLOAT:
        return skip(w, 4);
    case AVRO_DOUBLE:
        return skip(w, 8);
    case AVRO_STRING:
    case AVRO_BYTES:
        if ((err = read_varint(w, &v)))
            return err;
        return skip(w, v);
    case AVRO_FIXED:
        return skip(w, avro_schema_fixed_size(s));
    case AVRO_ENUM:
        if ((err = read_varint(w, &v)))
            return err;
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(s)) {
            w->what = "enum index out of range";
            return ES_ERR_DECODE;
        }
        return ES_ERR_OK;
    case AVRO_UNION:
        if ((err = read_varint(w, &v)))
            return err;
        if (v < 0 || (size_t)v >= avro_schema_union_size(s)) {
            w->what = "union branch out of range";
            return ES_ERR_DECODE;
        }
        return walk(w, avro_schema_union_branch(s, (int)v), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            if ((err = walk(w, avro_schema_record_field_get_by_index(s, (int)i), depth + 1)))
                return err;
        return ES_ERR_OK;
    case AVRO_ARRAY:
        return walk_blocks(w, avro_schema_array_items(s), false, depth);
    case AVRO_MAP:
        return walk_blocks(w, avro_schema_map_values(s), true, depth);
    case AVRO_LINK:
        return walk(w, avro_schema_link_target(s), depth + 1);
    default:
        w->what = "unsupported schema type";
        return ES_ERR_DECODE;
    }
}

/* ---------------------------------------------------------------- decode */

static es_err_t writer_add(es_serde_t *serde, int id, avro_schema_t writer, bool owned,
                           writer_entry_t **out, char *errstr, size_t errstr_size);

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
    return writer_add(serde, id, writer, false, out, errstr, errstr_size);
}

static es_err_t writer_add(es_serde_t *serde, int id, avro_schema_t writer, bool owned,
                           writer_entry_t **out, char *errstr, size_t errstr_size)
{
    writer_entry_t w = {.id = id, .writer = writer, .owned = owned};
    w.direct =
        serde->reader && (writer == serde->reader || avro_schema_equal(writer, serde->reader));
    if (!w.direct) {
        w.writer_iface = avro_generic_class_from_schema(writer);
        if (!w.writer_iface || avro_generic_value_new(w.writer_iface, &w.writer_value)) {
            snprintf(errstr, errstr_size, "%s: writer schema %d: %s", serde->subject, id,
                     avro_strerror());
            if (w.writer_iface)
                avro_value_iface_decref(w.writer_iface);
            return ES_ERR_SCHEMA;
        }
    }
    if (serde->nwriters == serde->capwriters) {
        serde->capwriters = serde->capwriters ? serde->capwriters * 2 : 4;
        serde->writers = es_realloc(serde->writers, serde->capwriters * sizeof(*serde->writers));
    }
    serde->writers[serde->nwriters] = w;
    *out = &serde->writers[serde->nwriters++];
    return ES_ERR_OK;
}

es_err_t es_serde_add_writer(es_serde_t *serde, int id, const char *writer_json, char *errstr,
                             size_t errstr_size)
{
    avro_schema_t writer = NULL;
    writer_entry_t *w = NULL;
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
    es_err_t err = writer_add(serde, id, writer, true, &w, errstr, errstr_size);
    if (err)
        avro_schema_decref(writer);
    return err;
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

    walk_t walker = {.p = (const uint8_t *)data + ES_WIRE_HEADER_SIZE,
                     .len = len - ES_WIRE_HEADER_SIZE};
    if ((err = walk(&walker, w->writer, 0))) {
        snprintf(errstr, errstr_size, "schema id %d: %s at body byte %zu", id, walker.what,
                 walker.pos);
        return err;
    }
    if (walker.pos != walker.len) {
        snprintf(errstr, errstr_size, "schema id %d: %zu trailing bytes after the record", id,
                 walker.len - walker.pos);
        return ES_ERR_DECODE;
    }

    avro_value_t *target = w->direct ? &serde->reader_value : &w->writer_value;
    if (serde->reader)
        avro_value_reset(&serde->reader_value);
    if (!w->direct)
        avro_value_reset(&w->writer_value);
    avro_reader_memory_set_source(serde->areader, (const char *)walker.p, (int64_t)walker.len);
    if (avro_value_read(serde->areader, target)) {
        snprintf(errstr, errstr_size, "schema id %d: %s", id, avro_strerror());
        return ES_ERR_DECODE;
    }
    if (!serde->reader) { /* writer-schema mode */
        *out = &w->writer_value;
        return ES_ERR_OK;
    }
    if (!w->direct) {
        char detail[256];
        if ((err = es_resolve_copy(serde->resolver, &w->writer_value, &serde->reader_value, detail,
                                   sizeof(detail)))) {
            snprintf(errstr, errstr_size, "schema id %d: %s", id, detail);
            return err;
        }
    }
    *out = &serde->reader_value;
    return ES_ERR_OK;
}
