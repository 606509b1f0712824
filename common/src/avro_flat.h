/*
 * avro_flat.h — internal: Avro binary read in one checked pass into flat,
 * read-only values (used by serde.c).
 *
 * A schema is compiled once; each read checks every length, count, branch
 * and enum index against the bytes present and lays the values out in an
 * arena the reader reuses from record to record.  The values implement Avro
 * C's value interface for reading (types, getters, sizes, children by index
 * and by name, union branches, grab_* for avro_value_copy), so code written
 * against avro_value_t reads them unchanged; setters answer EINVAL.
 * avro_flat.c compiles and reads; avro_flat_value.c is the interface.
 */
#ifndef ESCQRS_AVRO_FLAT_H
#define ESCQRS_AVRO_FLAT_H

#include "escqrs/err.h"

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

typedef struct es_flat_s es_flat_t;

/* A schema position, compiled once (avro_flat.c). */
typedef struct flat_node_s flat_node_t;
struct flat_node_s {
    avro_type_t type;
    avro_schema_t schema; /* borrowed */
    flat_node_t **kids; /* record fields, union branches, array/map items (kids[0]), link target */
    const char **names; /* record field names, borrowed from the schema */
    size_t n;           /* fields, branches, enum symbols, fixed size */
};

/* A value read from a record, in the reader's arena (avro_flat.c). */
typedef struct flat_val_s flat_val_t;
struct flat_val_s {
    const flat_node_t *node; /* never a link */
    union {
        int32_t i; /* int, boolean, enum */
        int64_t l;
        float f;
        double d;
        struct {
            const char *p; /* NUL after the last byte */
            size_t n;      /* without the NUL */
        } s;               /* string, bytes, fixed */
        struct {
            flat_val_t *kids;
            const char **keys; /* map keys */
            size_t n, cap;
        } c; /* record, array, map */
        struct {
            flat_val_t *branch;
            int disc;
        } u;
    } v;
};

/** @brief Point @p out at @p v through the read-only interface (avro_flat_value.c). */
void es_flat_value_set(avro_value_t *out, const flat_val_t *v);

/** @brief A reader of records of @p schema (borrowed: it must outlive the reader). */
es_flat_t *es_flat_new(avro_schema_t schema);
void es_flat_destroy(es_flat_t *f);

/**
 * @brief Read one value from the Avro binary @p buf of @p len bytes.
 * @param out the value, valid until the next read or the reader's destroy.
 * @param what set on error to what was wrong ("length runs past the end", ...).
 * @param pos set to the bytes read (on error: where the fault was found);
 *        bytes after the value are the caller's to refuse.
 * @returns ES_ERR_TRUNCATED, ES_ERR_BAD_LENGTH, ES_ERR_DECODE or ES_ERR_OK.
 */
es_err_t es_flat_read(es_flat_t *f, const void *buf, size_t len, avro_value_t *out,
                      const char **what, size_t *pos);

/**
 * @brief The bytes @p f's arena holds now (its chunks' capacity): after a read,
 *        at least the 4 KiB it starts with, at most 1 MiB more than the last
 *        record needed (a reset keeps at most that), whatever came before.
 */
size_t es_flat_held(const es_flat_t *f);

#endif
