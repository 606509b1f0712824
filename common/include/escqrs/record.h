/**
 * @file record.h
 * @brief Reading fields of Avro records (envelopes and their payloads), strictly.
 *
 * A missing field or a value of the wrong type is ES_ERR_DECODE with the
 * field's name in errstr, never a silent default.  A ["null", T] field is
 * read through to its current branch.  Strings are borrowed from the value.
 */
#ifndef ESCQRS_RECORD_H
#define ESCQRS_RECORD_H

#include "escqrs/err.h"

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

/** @brief The `payload` of an envelope: its union branch and that record's name ("ItemAdded"). */
es_err_t es_record_payload(avro_value_t *value, avro_value_t *payload, const char **type,
                           char *errstr, size_t errstr_size);
/** @brief String field @p name of record @p rec (borrowed, NUL-terminated); @p len may be NULL. */
es_err_t es_record_string(avro_value_t *rec, const char *name, const char **s, size_t *len,
                          char *errstr, size_t errstr_size);
/** @brief long field @p name of record @p rec (an int field is widened). */
es_err_t es_record_long(avro_value_t *rec, const char *name, int64_t *v, char *errstr,
                        size_t errstr_size);
/** @brief int field @p name of record @p rec. */
es_err_t es_record_int(avro_value_t *rec, const char *name, int32_t *v, char *errstr,
                       size_t errstr_size);

#endif
