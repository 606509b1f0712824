/**
 * @file projection.h
 * @brief Projection definitions and the pure part of the projection runtime.
 *
 * A team writes a projection as data plus pure functions: a name, the
 * aggregates whose `<agg>.events` topics it reads, the reader schema of each,
 * a fold of one event onto a transaction, and query handlers.  The fold never
 * sees Kafka or RocksDB: it reads current view state and writes changes
 * through an es_proj_txn_t, which the runtime (escqrs-projector) backs with
 * RocksDB and turns into one atomic write batch per consumed batch (together
 * with the next offset of every partition), and which unit tests back with
 * an in-memory map.
 *
 * Reads inside a transaction see the transaction's own writes, so several
 * events of one aggregate in one batch fold correctly.  Each event is folded
 * inside an event scope: a fold that fails leaves nothing behind (the event
 * goes to the DLQ whole, or the projection halts), so a half-applied event
 * can never reach the store.
 *
 * Query handlers read through an es_proj_reader_t, which is either the live
 * store or an in-memory fold (point-in-time `as_of` queries re-fold one
 * aggregate's events into memory and render them with the same handler).
 *
 * View keys must not start with byte 0x00 (reserved by store.h).
 *
 * @remark A transaction belongs to one thread.  Readers are thread-safe when
 *         their backing is (RocksDB is).
 */
#ifndef ESCQRS_PROJECTION_H
#define ESCQRS_PROJECTION_H

#include "escqrs/err.h"
#include "escqrs/record.h"
#include "escqrs/mem.h"

#include <avro.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ events */

/** One event as a fold sees it. */
typedef struct es_proj_event_s {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /**< record timestamp */
    const char *key;      /**< aggregate id (not NUL-terminated) */
    size_t keylen;
    avro_value_t *value; /**< decoded with the projection's reader schema */
} es_proj_event_t;

/* ----------------------------------------------------------------- readers */

typedef struct es_proj_reader_s es_proj_reader_t;

/** @brief Copy of the value of @p key into @p out, or ES_ERR_NOT_FOUND. */
es_err_t es_proj_reader_get(es_proj_reader_t *rd, const void *key, size_t keylen, es_buf_t *out,
                            char *errstr, size_t errstr_size);
/**
 * @brief Call @p cb for every entry whose key starts with @p prefix, in byte
 *        order; @p cb returns false to stop.
 */
es_err_t es_proj_reader_scan(es_proj_reader_t *rd, const void *prefix, size_t prefixlen,
                             bool (*cb)(void *opaque, const char *key, size_t keylen,
                                        const char *val, size_t vallen),
                             void *opaque, char *errstr, size_t errstr_size);
/**
 * @brief es_proj_reader_scan() from key @p start on (keys before it are
 *        skipped, without reading them where the backing can seek): a page
 *        of a long run of keys.  @p start NULL: the prefix's first key.
 */
es_err_t es_proj_reader_scan_from(es_proj_reader_t *rd, const void *prefix, size_t prefixlen,
                                  const void *start, size_t startlen,
                                  bool (*cb)(void *opaque, const char *key, size_t keylen,
                                             const char *val, size_t vallen),
                                  void *opaque, char *errstr, size_t errstr_size);

/** Backing of a reader (the runtime gives a store, tests a memory map). */
typedef struct es_proj_backend_s {
    es_err_t (*get)(void *opaque, const void *key, size_t keylen, es_buf_t *out, char *errstr,
                    size_t errstr_size);
    /* keys under @p prefix from @p start on (NULL: from the prefix's first) */
    es_err_t (*scan)(void *opaque, const void *prefix, size_t prefixlen, const void *start,
                     size_t startlen,
                     bool (*cb)(void *opaque, const char *key, size_t keylen, const char *val,
                                size_t vallen),
                     void *cbopaque, char *errstr, size_t errstr_size);
    void *opaque;
} es_proj_backend_t;

/** @brief A reader over @p backend (copied). */
es_proj_reader_t *es_proj_reader_new(const es_proj_backend_t *backend);
void es_proj_reader_destroy(es_proj_reader_t *rd);

/* ------------------------------------------------------------ memory maps */

/**
 * An ordered in-memory key/value map: the backing of unit tests and of
 * point-in-time folds.  es_proj_memmap_backend() gives its reader backing.
 */
typedef struct es_proj_memmap_s es_proj_memmap_t;

es_proj_memmap_t *es_proj_memmap_new(void);
void es_proj_memmap_destroy(es_proj_memmap_t *m);
void es_proj_memmap_put(es_proj_memmap_t *m, const void *key, size_t keylen, const void *val,
                        size_t vallen);
void es_proj_memmap_delete(es_proj_memmap_t *m, const void *key, size_t keylen);
size_t es_proj_memmap_count(const es_proj_memmap_t *m);
es_proj_backend_t es_proj_memmap_backend(es_proj_memmap_t *m);

/* ------------------------------------------------------------ transactions */

typedef struct es_proj_txn_s es_proj_txn_t;

/** @brief A transaction reading through to @p base (borrowed). */
es_proj_txn_t *es_proj_txn_new(es_proj_reader_t *base);
void es_proj_txn_destroy(es_proj_txn_t *txn);

/**
 * @brief Promise that @p txn's base holds no key yet but the store's own
 *        (first byte 0x00), and that every key that reaches it from now on is
 *        one es_proj_txn_foreach() hands out (a store built from offset 0 by
 *        this transaction alone).  Gets of keys never handed out are then
 *        answered ES_ERR_NOT_FOUND without reading the base (a Bloom filter of
 *        the handed keys, up to 4 MiB; dropped once too full to pay).
 */
void es_proj_txn_base_starts_empty(es_proj_txn_t *txn);

/** @brief Read @p key as the transaction sees it (own writes first). */
es_err_t es_proj_get(es_proj_txn_t *txn, const void *key, size_t keylen, es_buf_t *out,
                     char *errstr, size_t errstr_size);
void es_proj_put(es_proj_txn_t *txn, const void *key, size_t keylen, const void *val,
                 size_t vallen);
void es_proj_delete(es_proj_txn_t *txn, const void *key, size_t keylen);

/** @brief Start an event scope (the runtime does this around each fold). */
void es_proj_txn_begin_event(es_proj_txn_t *txn);
/** @brief Keep the event scope's writes. */
void es_proj_txn_commit_event(es_proj_txn_t *txn);
/** @brief Drop the event scope's writes. */
void es_proj_txn_rollback_event(es_proj_txn_t *txn);

/**
 * @brief Every pending write (committed event scopes), in key byte order;
 *        @p val is NULL for a delete.  Call it between events: an open event's
 *        writes are in the batch already (its undo log only takes them back).
 */
void es_proj_txn_foreach(es_proj_txn_t *txn,
                         void (*cb)(void *opaque, const char *key, size_t keylen, const char *val,
                                    size_t vallen),
                         void *opaque);
/**
 * @brief es_proj_txn_foreach() into @p m: what the runtime does with a store
 *        (a point-in-time fold, tests, benchmarks).
 */
void es_proj_txn_store_into(es_proj_txn_t *txn, es_proj_memmap_t *m);
/** @brief Number of keys written (between events: an open event's new keys count). */
size_t es_proj_txn_count(const es_proj_txn_t *txn);
/** @brief Forget every pending write (after the runtime stored them). */
void es_proj_txn_clear(es_proj_txn_t *txn);
/**
 * @brief The pending writes become the sealed batch, still read by every get,
 *        and the transaction starts an empty batch: the runtime folds the
 *        next batch while the sealed one is being stored.  Call it between
 *        events, after es_proj_txn_foreach(), and only when no batch is sealed.
 */
void es_proj_txn_seal(es_proj_txn_t *txn);
/** @brief Forget the sealed batch (it is in the store now). */
void es_proj_txn_release_sealed(es_proj_txn_t *txn);

#define ES_PROJ_PREFIX_MAX 8

/**
 * @brief From now on, prefix every key @p txn reads or writes with @p prefix
 *        (at most ES_PROJ_PREFIX_MAX bytes; @p len 0: none).  The runtime's
 *        partitioned mode keeps each partition's slice of a view apart with
 *        it; a fold never sees the prefix.
 */
void es_proj_txn_set_prefix(es_proj_txn_t *txn, const void *prefix, size_t len);

/* ------------------------------------------------------------- definitions */

#define ES_PROJ_MAX_AGGREGATES 4
#define ES_PROJ_MAX_QUERIES    4

/** What a query handler gets. */
typedef struct es_proj_query_req_s {
    const char *const *params; /**< the route's {...} segments */
    size_t nparams;
    const char *(*query)(void *opaque, const char *name); /**< query-string lookup */
    void *query_opaque;
} es_proj_query_req_t;

/** A query route of a projection. */
typedef struct es_proj_query_s {
    const char *pattern; /**< e.g. "/v1/carts/{id}" */
    /**
     * Render the answer from @p rd.  @returns the HTTP status; *body is the
     * JSON answer (for 404 the runtime answers `not_found` when *body is NULL).
     */
    int (*handle)(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body, char *errstr,
                  size_t errstr_size);
    /**
     * Index of the route parameter that is the aggregate id: `as_of`
     * (point-in-time) queries fold it, and in partitioned mode the owner of
     * its partition answers; -1 when the query spans aggregates (merged
     * from every partition's slice).
     */
    int aggregate_param;
    /** Which aggregate (index into es_proj_def_t.aggregates) the id belongs to. */
    int aggregate_index;
} es_proj_query_t;

typedef struct es_proj_def_s {
    const char *name;                               /**< "cart_view" */
    const char *aggregates[ES_PROJ_MAX_AGGREGATES]; /**< "cart": reads `<agg>.events` */
    const char *schemas[ES_PROJ_MAX_AGGREGATES];    /**< reader schema names, "cart.events" */
    size_t naggregates;
    /**
     * Fold one event (of aggregate @p agg_index) onto @p txn.  Pure: no I/O.
     * An error makes the event poison (DLQ or halt); its writes are dropped.
     */
    es_err_t (*fold)(int agg_index, const es_proj_event_t *ev, es_proj_txn_t *txn, char *errstr,
                     size_t errstr_size);
    es_proj_query_t queries[ES_PROJ_MAX_QUERIES];
    size_t nqueries;
    /**
     * Partitioned mode (docs/projector.md): each instance folds some
     * partitions, so a view key that several aggregates write (a counter per
     * sku) has one partial value per partition, and a query spanning
     * aggregates reads them combined.  Set @p out to the combination of
     * partial values @p a and @p b of @p key (pure, associative and
     * commutative); false when they cannot be combined (corrupt, or past the
     * type's range): the query then fails.  NULL: every key belongs to one
     * aggregate, so partitions never share one (a second value of a key is
     * then an error).
     */
    bool (*merge)(const char *key, size_t keylen, const char *a, size_t alen, const char *b,
                  size_t blen, es_buf_t *out);
} es_proj_def_t;

/** @brief `{"error": "invalid_query", "message": msg}` for a 400 from a query handler. */
json_t *es_proj_bad_request(const char *msg);

/* ---------------------------------------------------------- frozen views */

/**
 * @brief Where a frozen build ("a rebuild that stops at a timestamp") stops
 *        in one partition, given its next record.
 *
 * @param offset   the record's offset
 * @param ts_ms    its timestamp (CreateTime, ms since the epoch; < 0 unknown)
 * @param until_ms the freeze time: records with timestamp <= until_ms belong
 * @param high     the partition's high watermark captured when the build began
 * @returns -1 to apply the record and go on, else the partition's final
 *          offset (the record is not applied): @p high for a record at or
 *          past the high watermark, @p offset for the first record later
 *          than @p until_ms.  Records after that one are never considered
 *          (producers' timestamps grow along a partition in practice).  A
 *          record without a timestamp is applied.
 */
int64_t es_proj_until_stop(int64_t offset, int64_t ts_ms, int64_t until_ms, int64_t high);

#endif
