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

/**
 * @brief Set the `principal` field (["null", Principal]) of envelope record
 *        @p rec: null when @p subject is NULL or empty, else {subject,
 *        client_id} (client_id null when NULL or empty).  A record without
 *        the field (an older schema) is left as it is.
 */
es_err_t es_principal_set(avro_value_t *rec, const char *subject, const char *client_id);

/**
 * @brief Read the `principal` field of @p rec into @p subject and
 *        @p client_id ("" when null, or when the record has no such field).
 */
void es_principal_get(avro_value_t *rec, char *subject, size_t subjectsz, char *client_id,
                      size_t clientsz);

#endif
