/**
 * @file mem.h
 * @brief Allocation that never returns NULL, a growable byte buffer, and a
 *        byte hash (FNV-1a, 64 bit) for fingerprints that are not security.
 *
 * Out of memory aborts with a message: there is no NOMEM path to forget.
 */
#ifndef ESCQRS_MEM_H
#define ESCQRS_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *es_malloc(size_t size);
void *es_calloc(size_t nmemb, size_t size);
void *es_realloc(void *ptr, size_t size);
char *es_strdup(const char *s);
char *es_strndup(const char *s, size_t n);

/** @brief A growable byte buffer; zero-initialise (`es_buf_t b = {0};`) to use. */
typedef struct es_buf_s {
    char *data;
    size_t len;
    size_t cap;
} es_buf_t;

/** @brief Make room for at least @p extra more bytes. */
void es_buf_reserve(es_buf_t *b, size_t extra);
/** @brief Replace the contents with a copy of @p len bytes at @p data. */
void es_buf_set(es_buf_t *b, const void *data, size_t len);
void es_buf_append(es_buf_t *b, const void *data, size_t len);
/** @brief Append a printf-formatted string (no NUL counted in len, but data stays terminated). */
void es_buf_appendf(es_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void es_buf_clear(es_buf_t *b);
/** @brief Replace the contents with the whole file at @p path. @returns 0, or -1 (errno set). */
int es_buf_load_file(es_buf_t *b, const char *path);
/** @brief Free the storage; the buffer may be reused afterwards. */
void es_buf_free(es_buf_t *b);
/**
 * @brief Replace @p b with the whole content of file @p path, NUL-terminated
 *        (the NUL not counted in b->len).
 * @returns false (b empty, errno set) when the file cannot be read.
 */
bool es_buf_read_file(es_buf_t *b, const char *path);
/** @brief The whole content of file @p path, NUL-terminated (caller frees), or NULL. */
char *es_read_file(const char *path);

#define ES_FNV1A64_INIT 0xcbf29ce484222325ULL
/** @brief Fold @p len bytes into FNV-1a hash @p h (start from ES_FNV1A64_INIT). */
uint64_t es_fnv1a64(uint64_t h, const void *data, size_t len);

#endif
