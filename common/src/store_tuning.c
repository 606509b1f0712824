/*
 * store_tuning.c — the RocksDB options of a store: the shared block cache,
 * the compaction style, filters, block sizes and the memtable, each chosen
 * by what the store is for (es_store_opts_t) and measured where it says.
 * store.c opens and reopens stores with them.
 */
#include "store_tuning.h"

#include <pthread.h>

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static rocksdb_cache_t *shared_cache;

static rocksdb_cache_t *get_shared_cache(size_t mb)
{
    pthread_mutex_lock(&cache_lock);
    if (!shared_cache)
        shared_cache = rocksdb_cache_create_lru((mb ? mb : 64) * 1024 * 1024);
    pthread_mutex_unlock(&cache_lock);
    return shared_cache;
}

/*
 * A store whose values are rewritten (a view, an aggregate's state) merges
 * its newest flushed tables into the first level once 8 of them have piled
 * up, not RocksDB's 4: each merge rewrites that level whole (keys spread over
 * all of it), so half as many merges write about 40 % less.  Measured on a
 * cart_view rebuild at 10 M events (docs/projector.md, "Benchmark"):
 * compaction 0.18 -> 0.10 CPU s per million events, 162 -> 97 MB written.
 * A read may look in up to 8 such tables, each behind its Bloom filter.
 */
#define LEVEL0_FILES_TO_COMPACT 8

/*
 * A store whose keys are written once (a history, an audit) never has an old
 * value to drop, so rewriting it level by level buys nothing: merge sorted
 * runs instead (RocksDB's universal compaction), and only when 16 of them
 * have piled up.  The size-amplification trigger (a full merge once the
 * newer runs outgrow the oldest by this much) counts overwritten values,
 * which such a store has almost none of; 1000 % keeps it from rewriting the
 * whole store again and again as it grows.  Measured on cart_history at
 * 10 M events (docs/projector.md, "Benchmark"): 4.0 -> 2.0 CPU s per
 * million events, build 354 k -> 746-766 k events/s.  A store opens with
 * either style whatever the style it was written with.
 */
static void set_write_once_compaction(rocksdb_options_t *opts)
{
    rocksdb_universal_compaction_options_t *u = rocksdb_universal_compaction_options_create();
    rocksdb_universal_compaction_options_set_max_size_amplification_percent(u, 1000);
    rocksdb_options_set_compaction_style(opts, rocksdb_universal_compaction);
    rocksdb_options_set_universal_compaction_options(opts, u); /* copied */
    rocksdb_universal_compaction_options_destroy(u);
    rocksdb_options_set_level0_file_num_compaction_trigger(opts, 16);
}

/*
 * Folds read many keys that do not exist yet (a new cart, a new sku): a
 * Bloom filter per table and over the memtable answers those without
 * searching every level.  Only point reads use them, and every write pays
 * (a hash into the memtable's filter, a filter block built at every flush
 * and merge, cached beside the data), so a store read by ranges only
 * (es_store_opts_t.scans_only: a history) has none, and 16 KiB blocks: a
 * scan reads on past its first block anyway, and each block written costs
 * a compression call (LZ4 clears its 16 KiB table for each), an index entry
 * and a checksum; a point read would decompress four times as much.
 * cart_history at 5 M events (docs/projector.md, "Benchmark"): without
 * filters, rebuild 3.46 -> 2.87 CPU s per million, peak RSS 185 -> 171 MiB;
 * 16 KiB blocks, 4.30 -> 3.71 s in a slow hour.  Either opens the other's.
 */
#define SCAN_BLOCK_SIZE (16 * 1024)

static void set_bloom_filters(rocksdb_options_t *opts, rocksdb_block_based_table_options_t *topts)
{
    rocksdb_block_based_options_set_filter_policy(topts,
                                                  rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(opts, 0.05);
    rocksdb_options_set_memtable_whole_key_filtering(opts, 1);
}

/*
 * A store written blind (es_store_opts_t.blind_writes: a history's rebuild,
 * whose fold never reads) keeps its writes in RocksDB's vector memtable
 * until it is persisted: an insert appends, and the flush thread sorts the
 * whole memtable once, where the skip list searches its levels on every
 * insert (key compares, cache misses: about a fifth of a history rebuild's
 * samples).  cart_history at 10 M events (docs/projector.md, "Benchmark"):
 * rebuild 1.07-1.08 -> 1.15-1.22 of the same run's initial build, peak RSS
 * 20-30 MiB more.  A read still answers, but copies and sorts the memtable,
 * so store.c opens the store again with the skip list once it is persisted.
 * The vector takes no concurrent inserts: one writer at a time, as here.
 */
rocksdb_options_t *es_store_rocksdb_options(const es_store_opts_t *o, bool vector_memtable,
                                            rocksdb_block_based_table_options_t **table)
{
    size_t wbuf = (o->write_buffer_mb ? o->write_buffer_mb : 16) * 1024 * 1024;
    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_block_based_table_options_t *topts = rocksdb_block_based_options_create();
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_write_buffer_size(opts, wbuf);
    rocksdb_options_set_max_write_buffer_number(opts, 2);
    rocksdb_options_set_max_open_files(opts, 256);
    rocksdb_options_set_compression(opts, rocksdb_lz4_compression);
    if (o->write_once)
        set_write_once_compaction(opts);
    else
        rocksdb_options_set_level0_file_num_compaction_trigger(opts, LEVEL0_FILES_TO_COMPACT);
    if (vector_memtable) {
        rocksdb_options_set_memtable_vector_rep(opts);
        rocksdb_options_set_allow_concurrent_memtable_write(opts, 0);
    }
    rocksdb_block_based_options_set_block_cache(topts, get_shared_cache(o->block_cache_mb));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(topts, 1);
    if (o->scans_only)
        rocksdb_block_based_options_set_block_size(topts, SCAN_BLOCK_SIZE);
    else
        set_bloom_filters(opts, topts);
    rocksdb_options_set_block_based_table_factory(opts, topts);
    *table = topts;
    return opts;
}
