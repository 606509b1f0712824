/**
 * @file store.h
 * @brief RocksDB stores with bounded memory, atomic write batches and offsets.
 *
 * A store is one RocksDB database (an aggregate store or a projection's view).
 * Memory is bounded whatever the data size: every store of a process shares
 * one LRU block cache (index and filter blocks included) and caps its
 * memtables (write_buffer_mb × max 2), so replaying 10 M events keeps RSS flat.
 *
 * Exactly-once rests on es_batch_put_offset(): the next offset of every
 * partition a batch reflects is written in the same atomic batch as the state
 * it produced, and es_store_get_offset() reads it back on start.
 *
 * Keys beginning with byte 0x00 are reserved for escqrs' own records
 * (offsets, metadata); user keys must not start with 0x00.
 *
 * @remark A store may be read and written from several threads (RocksDB is
 *         thread-safe); a batch belongs to one thread.
 */
#ifndef ESCQRS_STORE_H
#define ESCQRS_STORE_H

#include "escqrs/err.h"
#include "escqrs/conf.h"
#include "escqrs/mem.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct es_store_s es_store_t;

/**
 * @brief Declared `store.block.cache.mb`, `store.write.buffer.mb` and `store.sync`;
 *        add to a program's tables.  Each program declares its own `store.path`.
 */
extern const es_conf_def_t es_store_conf_defs[];

/** @brief es_store_opts_t from the keys of es_store_conf_defs. */
struct es_store_opts_s;
void es_store_opts_from_conf(const es_conf_t *conf, struct es_store_opts_s *opts);
typedef struct es_batch_s es_batch_t;
typedef struct es_store_iter_s es_store_iter_t;

typedef struct es_store_opts_s {
    size_t block_cache_mb;  /**< size of the process-wide shared block cache (first open sets it) */
    size_t write_buffer_mb; /**< memtable size; at most 2 memtables per store */
    bool sync;              /**< fsync each write batch (durability on power loss, slower) */
} es_store_opts_t;

/** @brief Open (creating if missing) the store at @p path. */
es_store_t *es_store_open(const char *path, const es_store_opts_t *opts, char *errstr,
                          size_t errstr_size);
/** @brief Close; NULL is a no-op. */
void es_store_close(es_store_t *st);
/** @brief Delete the database files at @p path (the store must be closed). */
es_err_t es_store_destroy_path(const char *path, char *errstr, size_t errstr_size);
const char *es_store_path(const es_store_t *st);

/** @brief Copy of the value of @p key into @p out, or ES_ERR_NOT_FOUND. */
es_err_t es_store_get(es_store_t *st, const void *key, size_t keylen, es_buf_t *out, char *errstr,
                      size_t errstr_size);

/** @brief Apply @p batch atomically (all or nothing). The batch is not cleared. */
es_err_t es_store_write(es_store_t *st, es_batch_t *batch, char *errstr, size_t errstr_size);

/** @brief Next offset to consume for (@p topic, @p partition), or ES_ERR_NOT_FOUND. */
es_err_t es_store_get_offset(es_store_t *st, const char *topic, int32_t partition,
                             int64_t *next_offset, char *errstr, size_t errstr_size);

/** @brief Iterate keys starting with @p prefix in byte order (a consistent snapshot). */
es_store_iter_t *es_store_iter_prefix(es_store_t *st, const void *prefix, size_t prefixlen);
/** @brief Next entry; pointers valid until the next call. @returns false at the end. */
bool es_store_iter_next(es_store_iter_t *it, const char **key, size_t *keylen, const char **val,
                        size_t *vallen);
void es_store_iter_destroy(es_store_iter_t *it);

es_batch_t *es_batch_new(void);
void es_batch_destroy(es_batch_t *batch);
void es_batch_put(es_batch_t *batch, const void *key, size_t keylen, const void *val,
                  size_t vallen);
void es_batch_delete(es_batch_t *batch, const void *key, size_t keylen);
/** @brief Record that the state in this batch reflects @p topic/@p partition up to @p next_offset.
 */
void es_batch_put_offset(es_batch_t *batch, const char *topic, int32_t partition,
                         int64_t next_offset);
void es_batch_clear(es_batch_t *batch);
/** @brief Number of operations in the batch. */
size_t es_batch_count(const es_batch_t *batch);

#endif
