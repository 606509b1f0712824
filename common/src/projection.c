/*
 * projection.c — the pure half of the projection runtime: transactions that
 * read their own writes, in-memory maps and readers.
 *
 * One hash map (es_map_t, mem.h) of values serves two uses: the pending writes of a consumed batch
 * (with an undo log per event, so a failed fold is dropped without touching the rest of the
 * batch), and the in-memory backing of tests and point-in-time folds.  A tombstone
 * (val == NULL) records a delete: in a transaction it hides the base value, in a memory map it
 * means absent.  Ordered output (foreach, scan) sorts at the end instead of keeping a tree: batches
 * are written once and scanned rarely, so O(1) puts matter more.
 */
#include "escqrs/projection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- value maps */

/* A stored value; a map entry whose value is NULL is a tombstone. */
typedef struct {
    size_t len;
    char data[];
} val_t;

static val_t *val_new(const void *data, size_t len)
{
    val_t *v = es_malloc(sizeof(*v) + (len ? len : 1));
    v->len = len;
    memcpy(v->data, data, len);
    return v;
}

/* Set key to a copy of val (NULL: tombstone). */
static void vmap_set(es_map_t *m, const void *key, size_t keylen, const void *val, size_t vallen)
{
    es_map_set(m, key, keylen, val ? val_new(val, vallen) : NULL);
}

typedef struct {
    const char *key;
    size_t keylen;
    const val_t *val; /* NULL: tombstone */
} entry_t;

static int entry_cmp(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    return es_bytes_cmp(x->key, x->keylen, y->key, y->keylen);
}

/* Entries (tombstones included) whose key starts with prefix, sorted. */
static entry_t *vmap_sorted(const es_map_t *m, const void *prefix, size_t prefixlen, size_t *n)
{
    entry_t *v = es_malloc((es_map_count(m) ? es_map_count(m) : 1) * sizeof(*v));
    size_t k = 0, pos = 0;
    const void *key;
    size_t keylen;
    void **val;
    while (es_map_next(m, &pos, &key, &keylen, &val))
        if (keylen >= prefixlen && !memcmp(key, prefix, prefixlen))
            v[k++] = (entry_t){key, keylen, *val};
    qsort(v, k, sizeof(*v), entry_cmp);
    *n = k;
    return v;
}

/* --------------------------------------------------------------- readers */

struct es_proj_reader_s {
    es_proj_backend_t be;
};

es_proj_reader_t *es_proj_reader_new(const es_proj_backend_t *backend)
{
    es_proj_reader_t *rd = es_calloc(1, sizeof(*rd));
    rd->be = *backend;
    return rd;
}

void es_proj_reader_destroy(es_proj_reader_t *rd)
{
    free(rd);
}

es_err_t es_proj_reader_get(es_proj_reader_t *rd, const void *key, size_t keylen, es_buf_t *out,
                            char *errstr, size_t errstr_size)
{
    return rd->be.get(rd->be.opaque, key, keylen, out, errstr, errstr_size);
}

es_err_t es_proj_reader_scan(es_proj_reader_t *rd, const void *prefix, size_t prefixlen,
                             bool (*cb)(void *opaque, const char *key, size_t keylen,
                                        const char *val, size_t vallen),
                             void *opaque, char *errstr, size_t errstr_size)
{
    return rd->be.scan(rd->be.opaque, prefix, prefixlen, NULL, 0, cb, opaque, errstr, errstr_size);
}

es_err_t es_proj_reader_scan_from(es_proj_reader_t *rd, const void *prefix, size_t prefixlen,
                                  const void *start, size_t startlen,
                                  bool (*cb)(void *opaque, const char *key, size_t keylen,
                                             const char *val, size_t vallen),
                                  void *opaque, char *errstr, size_t errstr_size)
{
    return rd->be.scan(rd->be.opaque, prefix, prefixlen, start, startlen, cb, opaque, errstr,
                       errstr_size);
}

/* ----------------------------------------------------------- memory maps */

struct es_proj_memmap_s {
    es_map_t map;
    size_t live;
};

es_proj_memmap_t *es_proj_memmap_new(void)
{
    es_proj_memmap_t *m = es_calloc(1, sizeof(es_proj_memmap_t));
    m->map = (es_map_t)ES_MAP_INIT(free);
    return m;
}

void es_proj_memmap_destroy(es_proj_memmap_t *m)
{
    if (!m)
        return;
    es_map_free(&m->map);
    free(m);
}

void es_proj_memmap_put(es_proj_memmap_t *m, const void *key, size_t keylen, const void *val,
                        size_t vallen)
{
    if (!es_map_get(&m->map, key, keylen, NULL))
        m->live++;
    vmap_set(&m->map, key, keylen, val ? val : "", val ? vallen : 0);
}

void es_proj_memmap_delete(es_proj_memmap_t *m, const void *key, size_t keylen)
{
    if (es_map_get(&m->map, key, keylen, NULL)) {
        m->live--;
        vmap_set(&m->map, key, keylen, NULL, 0);
    }
}

size_t es_proj_memmap_count(const es_proj_memmap_t *m)
{
    return m->live;
}

static es_err_t memmap_get(void *opaque, const void *key, size_t keylen, es_buf_t *out,
                           char *errstr, size_t errstr_size)
{
    es_proj_memmap_t *m = opaque;
    const val_t *v = es_map_get(&m->map, key, keylen, NULL);
    if (!v)
        return ES_ERR_NOT_FOUND;
    es_buf_set(out, v->data, v->len);
    return ES_ERR_OK;
}

static es_err_t memmap_scan(void *opaque, const void *prefix, size_t prefixlen, const void *start,
                            size_t startlen,
                            bool (*cb)(void *, const char *, size_t, const char *, size_t),
                            void *cbopaque, char *errstr, size_t errstr_size)
{
    es_proj_memmap_t *m = opaque;
    size_t n;
    entry_t *v = vmap_sorted(&m->map, prefix, prefixlen, &n);
    for (size_t i = 0; i < n; i++) {
        if (start && es_bytes_cmp(v[i].key, v[i].keylen, start, startlen) < 0)
            continue;
        if (v[i].val && !cb(cbopaque, v[i].key, v[i].keylen, v[i].val->data, v[i].val->len))
            break;
    }
    free(v);
    return ES_ERR_OK;
}

es_proj_backend_t es_proj_memmap_backend(es_proj_memmap_t *m)
{
    es_proj_backend_t be = {.get = memmap_get, .scan = memmap_scan, .opaque = m};
    return be;
}

/* ---------------------------------------------------------- transactions */

/*
 * Keys the base cannot hold.  A store being built from offset 0 (a rebuild's
 * shadow generation, a new projection's first build) holds no view key
 * but the ones its transaction handed it through es_proj_txn_foreach, so a
 * get of any other key is "not found" without reading it.  Such gets are
 * most of a rebuild's store reads (the first event of every cart: 89 % of
 * cart_view's gets that reach RocksDB, at about 0.9 us each through its
 * memtables and every level's Bloom filter), so the transaction keeps a
 * Bloom filter of the keys it handed out: a key it has not seen is absent
 * for sure, a key it may have seen is read as before.  One 64-byte block per
 * key, four bits in it (one cache line per look-up); a fixed 4 MiB, touched
 * page by page as keys arrive.  Past one key per 8 bits the filter would say
 * "maybe" too often to pay for itself, so it is dropped and every get reads
 * the base again: never a wrong answer, only a slower one.  A fold that wrote
 * its first batch without one get of the base (a history: one new key per
 * event, never read back) would only pay for the filter, so it is dropped
 * then too.  Keys starting with 0x00 are the store's own (offsets,
 * metadata): always read.
 */
#define HANDED_BITS     (1u << 25)
#define HANDED_WORDS    (HANDED_BITS / 64)
#define HANDED_BLOCKS   (HANDED_WORDS / 8) /* 512-bit blocks */
#define HANDED_KEYS_MAX (HANDED_BITS / 8)
#define HANDED_PROBES   4

typedef struct {
    uint64_t *words; /* NULL: no filter (the base may hold anything) */
    size_t keys;     /* keys added that set a new bit: an estimate of the distinct ones */
    bool asked;      /* a get has come this far: the filter answers reads */
} handed_t;

/* The key's block (its low bits) and one bit of it per probe (9 higher bits each). */
#define HANDED_BLOCK(h)  ((size_t)((h) & (HANDED_BLOCKS - 1)) * 8)
#define HANDED_BIT(h, i) ((unsigned)((h) >> (24 + 9 * (i))) & 511u)

static void handed_drop(handed_t *f)
{
    free(f->words);
    f->words = NULL;
}

static void handed_add(handed_t *f, const char *key, size_t keylen)
{
    uint64_t h = es_map_hash(key, keylen);
    uint64_t *block = f->words + HANDED_BLOCK(h);
    bool new_bit = false;
    for (int i = 0; i < HANDED_PROBES; i++) {
        unsigned b = HANDED_BIT(h, i);
        uint64_t mask = 1ULL << (b & 63);
        new_bit |= !(block[b >> 6] & mask);
        block[b >> 6] |= mask;
    }
    if (new_bit && ++f->keys > HANDED_KEYS_MAX) /* full: read the base again */
        handed_drop(f);
}

/*
 * False only for a key that was never handed to the base (and is not the
 * store's own); @p hash is its es_map_hash, computed once for the batch maps too.
 */
static bool handed_may_hold(handed_t *f, const void *key, size_t keylen, uint64_t hash)
{
    f->asked = true;
    if (!f->words || keylen == 0 || ((const char *)key)[0] == '\0')
        return true;
    uint64_t h = hash;
    const uint64_t *block = f->words + HANDED_BLOCK(h);
    for (int i = 0; i < HANDED_PROBES; i++) {
        unsigned b = HANDED_BIT(h, i);
        if (!(block[b >> 6] & (1ULL << (b & 63))))
            return false;
    }
    return true;
}

/*
 * A transaction writes straight into its batch map.  An event's scope is an
 * undo log: each write in the event records what the key held before it (a
 * value, a tombstone, or nothing), and the replaced value stays alive until
 * the event ends.  A rollback walks the log backwards and puts every key
 * back; a commit only frees the replaced values.  So a get or a put is one
 * hash lookup, and an event costs no copy (a layer of its own moved every
 * write into the batch: two more allocations and hashes per write, and a
 * map to clear per event).  A key written twice in one event has two
 * entries; walked backwards they restore it in order.
 */
typedef struct {
    size_t keyoff, keylen; /* the key, in undo_keys */
    bool existed;          /* the key was in the batch before this write */
    val_t *old;            /* what it held then (NULL: a tombstone, or nothing) */
} undo_t;

/* A batch map this large is given back at the end of its batch, not kept for the next. */
#define TXN_KEEP_SLOTS_MAX 65536

struct es_proj_txn_s {
    es_proj_reader_t *base;
    es_map_t batch;  /* every write of the batch, the current event's included */
    es_map_t sealed; /* the batch before, until it is stored (es_proj_txn_seal) */
    bool in_event;
    undo_t *undo; /* the current event's writes, in order */
    size_t nundo, capundo;
    es_buf_t undo_keys;
    char prefix[ES_PROJ_PREFIX_MAX]; /* before every key (es_proj_txn_set_prefix) */
    size_t prefixlen;
    es_buf_t keybuf; /* prefix + key */
    handed_t handed; /* what the base can hold (es_proj_txn_base_starts_empty) */
};

void es_proj_txn_set_prefix(es_proj_txn_t *txn, const void *prefix, size_t len)
{
    txn->prefixlen = len < ES_PROJ_PREFIX_MAX ? len : ES_PROJ_PREFIX_MAX;
    if (txn->prefixlen)
        memcpy(txn->prefix, prefix, txn->prefixlen);
}

/* @p key as stored: behind the prefix, if one is set. */
static const void *txn_key(es_proj_txn_t *txn, const void *key, size_t *keylen)
{
    if (!txn->prefixlen)
        return key;
    es_buf_set(&txn->keybuf, txn->prefix, txn->prefixlen);
    es_buf_append(&txn->keybuf, key, *keylen);
    *keylen = txn->keybuf.len;
    return txn->keybuf.data;
}

es_proj_txn_t *es_proj_txn_new(es_proj_reader_t *base)
{
    es_proj_txn_t *txn = es_calloc(1, sizeof(*txn));
    txn->base = base;
    txn->batch = (es_map_t)ES_MAP_INIT(free);
    txn->sealed = (es_map_t)ES_MAP_INIT(free);
    return txn;
}

/* Forget the event's log; with @p free_old, free the values its writes replaced. */
static void undo_reset(es_proj_txn_t *txn, bool free_old)
{
    if (free_old)
        for (size_t i = 0; i < txn->nundo; i++)
            free(txn->undo[i].old);
    txn->nundo = 0;
    es_buf_clear(&txn->undo_keys);
}

void es_proj_txn_destroy(es_proj_txn_t *txn)
{
    if (!txn)
        return;
    es_proj_txn_rollback_event(txn); /* an event left open: its log owns the replaced values */
    es_map_free(&txn->batch);
    es_map_free(&txn->sealed);
    free(txn->undo);
    es_buf_free(&txn->undo_keys);
    es_buf_free(&txn->keybuf);
    handed_drop(&txn->handed);
    free(txn);
}

void es_proj_txn_base_starts_empty(es_proj_txn_t *txn)
{
    handed_drop(&txn->handed);
    txn->handed = (handed_t){.words = es_calloc(HANDED_WORDS, sizeof(uint64_t))};
}

es_err_t es_proj_get(es_proj_txn_t *txn, const void *key, size_t keylen, es_buf_t *out,
                     char *errstr, size_t errstr_size)
{
    bool found;
    key = txn_key(txn, key, &keylen);
    uint64_t hash = es_map_hash(key, keylen); /* one hash for both maps and the filter */
    const val_t *v = es_map_get_hashed(&txn->batch, key, keylen, hash, &found);
    if (!found && es_map_count(&txn->sealed)) /* written by the batch being stored */
        v = es_map_get_hashed(&txn->sealed, key, keylen, hash, &found);
    if (found) { /* a value, or a tombstone */
        if (!v)
            return ES_ERR_NOT_FOUND;
        es_buf_set(out, v->data, v->len);
        return ES_ERR_OK;
    }
    if (!handed_may_hold(&txn->handed, key, keylen, hash))
        return ES_ERR_NOT_FOUND;
    return es_proj_reader_get(txn->base, key, keylen, out, errstr, errstr_size);
}

/* Set @p key to @p v (NULL: tombstone); in an event, log what it replaces. */
static void txn_set(es_proj_txn_t *txn, const void *key, size_t keylen, val_t *v)
{
    key = txn_key(txn, key, &keylen);
    bool added;
    void **slot = es_map_slot(&txn->batch, key, keylen, &added);
    if (!txn->in_event) {
        free(*slot);
    } else {
        if (txn->nundo == txn->capundo) {
            txn->capundo = txn->capundo ? 2 * txn->capundo : 8;
            txn->undo = es_realloc(txn->undo, txn->capundo * sizeof(*txn->undo));
        }
        txn->undo[txn->nundo++] = (undo_t){
            .keyoff = txn->undo_keys.len, .keylen = keylen, .existed = !added, .old = *slot};
        es_buf_append(&txn->undo_keys, key, keylen);
    }
    *slot = v;
}

void es_proj_put(es_proj_txn_t *txn, const void *key, size_t keylen, const void *val, size_t vallen)
{
    txn_set(txn, key, keylen, val_new(val ? val : "", val ? vallen : 0));
}

void es_proj_delete(es_proj_txn_t *txn, const void *key, size_t keylen)
{
    txn_set(txn, key, keylen, NULL);
}

void es_proj_txn_begin_event(es_proj_txn_t *txn)
{
    if (txn->in_event) /* an event left open is dropped, never half-kept */
        es_proj_txn_rollback_event(txn);
    txn->in_event = true;
}

void es_proj_txn_commit_event(es_proj_txn_t *txn)
{
    undo_reset(txn, true);
    txn->in_event = false;
}

void es_proj_txn_rollback_event(es_proj_txn_t *txn)
{
    for (size_t i = txn->nundo; i-- > 0;) {
        const undo_t *u = &txn->undo[i];
        const char *key = txn->undo_keys.data + u->keyoff;
        if (u->existed) {
            void **slot = es_map_slot(&txn->batch, key, u->keylen, NULL);
            free(*slot);
            *slot = u->old;
        } else {
            es_map_remove(&txn->batch, key, u->keylen);
        }
    }
    undo_reset(txn, false); /* the replaced values are back in the map */
    txn->in_event = false;
}

void es_proj_txn_foreach(es_proj_txn_t *txn,
                         void (*cb)(void *opaque, const char *key, size_t keylen, const char *val,
                                    size_t vallen),
                         void *opaque)
{
    size_t n;
    entry_t *v = vmap_sorted(&txn->batch, "", 0, &n);
    if (n && !txn->handed.asked) /* a batch written without reading: the filter would not pay */
        handed_drop(&txn->handed);
    for (size_t i = 0; i < n; i++) {
        if (txn->handed.words)
            handed_add(&txn->handed, v[i].key, v[i].keylen);
        cb(opaque, v[i].key, v[i].keylen, v[i].val ? v[i].val->data : NULL,
           v[i].val ? v[i].val->len : 0);
    }
    free(v);
}

static void memmap_apply_cb(void *opaque, const char *key, size_t keylen, const char *val,
                            size_t vallen)
{
    if (val)
        es_proj_memmap_put(opaque, key, keylen, val, vallen);
    else
        es_proj_memmap_delete(opaque, key, keylen);
}

void es_proj_txn_store_into(es_proj_txn_t *txn, es_proj_memmap_t *m)
{
    es_proj_txn_foreach(txn, memmap_apply_cb, m);
}

size_t es_proj_txn_count(const es_proj_txn_t *txn)
{
    return es_map_count(&txn->batch);
}

/* Empty @p m; an unusually large map is given back, a usual one keeps its slots for reuse. */
static void batch_map_clear(es_map_t *m)
{
    if (m->cap > TXN_KEEP_SLOTS_MAX)
        es_map_free(m);
    else
        es_map_clear(m);
}

void es_proj_txn_clear(es_proj_txn_t *txn)
{
    if (txn->in_event)
        es_proj_txn_rollback_event(txn);
    batch_map_clear(&txn->batch);
}

void es_proj_txn_seal(es_proj_txn_t *txn)
{
    if (txn->in_event)
        es_proj_txn_rollback_event(txn);
    batch_map_clear(&txn->sealed); /* empty already, by the contract: keeps nothing stale */
    es_map_t empty = txn->sealed;  /* its slots serve the next batch */
    txn->sealed = txn->batch;
    txn->batch = empty;
}

void es_proj_txn_release_sealed(es_proj_txn_t *txn)
{
    batch_map_clear(&txn->sealed);
}

json_t *es_proj_bad_request(const char *msg)
{
    return json_pack("{s:s, s:s}", "error", "invalid_query", "message", msg);
}

/* ----------------------------------------------------------- frozen views */

int64_t es_proj_until_stop(int64_t offset, int64_t ts_ms, int64_t until_ms, int64_t high)
{
    if (offset >= high)
        return high; /* arrived after the build began: never part of the view */
    if (ts_ms >= 0 && ts_ms > until_ms)
        return offset;
    return -1;
}
