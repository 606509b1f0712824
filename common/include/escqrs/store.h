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
 * A full disk: RocksDB, as Debian builds it, aborts the process on an
 * assertion when a file writer is used again after a failed write (a WAL
 * append that hit ENOSPC), and its C API cannot resume a database after a
 * background error.  So a store never lets RocksDB run out of space: it
 * opens and writes only while `store.min.free.mb` is free on its
 * filesystem, and answers ES_ERR_NO_SPACE otherwise — writing nothing, so
 * the same batch can be written once space returns.  A store opened
 * read-only writes nothing at all, so reads can be served from a full disk.
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

/** @brief es_store_opts_t from the keys of es_store_conf_defs; every other field zero. */
struct es_store_opts_s;
void es_store_opts_from_conf(const es_conf_t *conf, struct es_store_opts_s *opts);
typedef struct es_batch_s es_batch_t;
typedef struct es_store_iter_s es_store_iter_t;

typedef struct es_store_opts_s {
    size_t block_cache_mb;  /**< size of the process-wide shared block cache (first open sets it) */
    size_t write_buffer_mb; /**< memtable size; at most 2 memtables per store */
    bool sync;              /**< fsync each write batch (durability on power loss, slower) */
    size_t min_free_mb;     /**< refuse to write below this much free space (0: no check) */
    bool read_only;         /**< open for reading only: writes nothing, not even at open */
    /** Keys are written once and seldom overwritten (a history, an audit):
     *  compacted by merging sorted runs (universal), not level by level.
     *  Either way opens a store written with the other. */
    bool write_once;
    /** Read by key ranges only (a history's pages and as_of's index): no
     *  Bloom filters, which serve point reads alone and cost every write,
     *  and 16 KiB blocks.  A point read still answers, searching every
     *  sorted run.  Either way opens a store written with the other. */
    bool scans_only;
    /** The layout of the values this program writes, a name and a version
     *  ("cart_view/1"); NULL: not checked.  See es_store_open_err(). */
    const char *format;
    /** What to do when the format differs, for the error (NULL: a generic remedy). */
    const char *format_remedy;
    /** Writes skip RocksDB's write-ahead log until es_store_persist() (ignored
     *  with sync): for a store nothing reads before it is persisted and whose
     *  writes can all be redone after a crash (a rebuild's shadow).  A kill -9
     *  loses a tail of whole write batches; a clean close flushes. */
    bool wal_off;
    /** With wal_off, and until es_store_persist(): the writer never reads
     *  back what it wrote (a history's fold), so writes go to a memtable that
     *  appends and is sorted at its flush (store_tuning.c says what it saves).  A
     *  read meanwhile answers, at the cost of sorting the memtable. */
    bool blind_writes;
} es_store_opts_t;

/**
 * @brief Open (creating if missing, unless read-only) the store at @p path.
 *
 * Format: with opts->format set, the store's format record (a reserved key)
 * must hold that same string.  A new store gets it; a store written before
 * escqrs recorded formats has none and is taken as the first version (it
 * gets the record when opened for writing).  Any other value is refused:
 * the values would be misread, so the store must be rebuilt from the log.
 * @param out set to the store on ES_ERR_OK.
 * @returns ES_ERR_NO_SPACE when less than opts->min_free_mb is free (nothing
 *          was written), ES_ERR_STORE on a format mismatch (errstr names both
 *          formats and the remedy) and on other failures.
 */
es_err_t es_store_open_err(const char *path, const es_store_opts_t *opts, es_store_t **out,
                           char *errstr, size_t errstr_size);
/** @brief es_store_open_err() for callers that need no reason beyond @p errstr. */
es_store_t *es_store_open(const char *path, const es_store_opts_t *opts, char *errstr,
                          size_t errstr_size);
/** @brief Bytes free for unprivileged writers on the filesystem of @p path (-1 unknown). */
int64_t es_store_free_bytes(const char *path);
/**
 * @brief Whether a store at @p path may write: @p min_free_mb MiB free on its
 *        filesystem (asked through the nearest existing parent), the check a
 *        write makes.  True when it cannot be told or @p min_free_mb is 0.
 */
bool es_store_has_room(const char *path, size_t min_free_mb);
/** @brief Close; NULL is a no-op. */
void es_store_close(es_store_t *st);
/** @brief Delete the database files at @p path (the store must be closed). */
es_err_t es_store_destroy_path(const char *path, char *errstr, size_t errstr_size);
const char *es_store_path(const es_store_t *st);

/** @brief Copy of the value of @p key into @p out, or ES_ERR_NOT_FOUND. */
es_err_t es_store_get(es_store_t *st, const void *key, size_t keylen, es_buf_t *out, char *errstr,
                      size_t errstr_size);

/**
 * @brief Apply @p batch atomically (all or nothing). The batch is not cleared.
 * @returns ES_ERR_NO_SPACE, writing nothing, when less than the store's
 *          min_free_mb is free on its filesystem (retry the same batch later).
 */
es_err_t es_store_write(es_store_t *st, es_batch_t *batch, char *errstr, size_t errstr_size);

/**
 * @brief Everything written so far into the store's files (a flush, waited
 *        for), and the write-ahead log on from now on; nothing to do unless the
 *        store was opened with wal_off.  No write or read may run meanwhile
 *        (a store written blind is opened again).
 */
es_err_t es_store_persist(es_store_t *st, char *errstr, size_t errstr_size);

/** @brief Next offset to consume for (@p topic, @p partition), or ES_ERR_NOT_FOUND. */
es_err_t es_store_get_offset(es_store_t *st, const char *topic, int32_t partition,
                             int64_t *next_offset, char *errstr, size_t errstr_size);

/**
 * @brief Whether the store holds any key but its own (first byte 0x00): a
 *        view's keys.  True when that cannot be read.
 */
bool es_store_holds_view_keys(es_store_t *st);

/** @brief Iterate keys starting with @p prefix in byte order (a consistent snapshot). */
es_store_iter_t *es_store_iter_prefix(es_store_t *st, const void *prefix, size_t prefixlen);
/**
 * @brief Begin at @p key instead of the prefix's first key (keys before it
 *        are skipped; a key below the prefix begins at the prefix).  Before
 *        the first es_store_iter_next() only.
 */
void es_store_iter_start_at(es_store_iter_t *it, const void *key, size_t keylen);
/** @brief Next entry; pointers valid until the next call. @returns false at the end. */
bool es_store_iter_next(es_store_iter_t *it, const char **key, size_t *keylen, const char **val,
                        size_t *vallen);
/**
 * @brief Why es_store_iter_next() returned false: ES_ERR_OK at the end of the
 *        prefix, ES_ERR_STORE (with RocksDB's reason) when a read error ended
 *        the scan early — a caller that promises "every key" must check.
 */
es_err_t es_store_iter_status(es_store_iter_t *it, char *errstr, size_t errstr_size);
void es_store_iter_destroy(es_store_iter_t *it);

/** Fingerprints of a store's contents, from one snapshot (es_store_digest()). */
typedef struct es_store_digest_s {
    uint64_t views;      /**< FNV-1a 64 over every view key and value (first byte not 0x00) */
    int64_t view_keys;   /**< how many */
    uint64_t offsets;    /**< the same over the store's own keys: offsets, the format record */
    int64_t offset_keys; /**< how many */
} es_store_digest_t;

/**
 * @brief Fingerprint every key and value of @p st (FNV-1a 64 over each
 *        key's and value's lengths, then their bytes, in key order), views
 *        and the store's own keys apart.  Equal digests mean byte-identical
 *        stores: the projector's digest endpoint and checkpoints use it.
 * @returns ES_ERR_STORE when RocksDB reports an error while reading (a
 *          block whose checksum fails, for example): no digest then.
 */
es_err_t es_store_digest(es_store_t *st, es_store_digest_t *d, char *errstr, size_t errstr_size);

/**
 * @brief A consistent copy of @p st in directory @p dir (which must not
 *        exist): RocksDB's checkpoint, hard links to the table files when
 *        @p dir is on the same filesystem, after a flush of the memtables.
 *        It holds exactly the writes of the batches done before it began, so
 *        the offsets stored in it describe it (store.h's exactly-once rule).
 *        The copy is an ordinary store: open it with es_store_open_err().
 */
es_err_t es_store_checkpoint(es_store_t *st, const char *dir, char *errstr, size_t errstr_size);

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
