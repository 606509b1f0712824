/*
 * store_tuning.h — the RocksDB options of a store (store_tuning.c), for store.c.
 */
#ifndef ESCQRS_STORE_TUNING_H
#define ESCQRS_STORE_TUNING_H

#include "escqrs/store.h"

#include <rocksdb/c.h>
#include <stdbool.h>

/**
 * @brief New RocksDB options for a store opened with @p o, and in @p table its
 *        table options (the options point at them: destroy both, after the
 *        database that uses them).  @p vector_memtable: RocksDB's vector
 *        memtable instead of the skip list (a store written blind).
 */
rocksdb_options_t *es_store_rocksdb_options(const es_store_opts_t *o, bool vector_memtable,
                                            rocksdb_block_based_table_options_t **table);

#endif
