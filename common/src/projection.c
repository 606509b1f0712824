/*
 * projection.c — the pure half of the projection runtime: transactions that
 * read their own writes, in-memory maps, readers and byte codecs.
 *
 * One hash map type (kvmap, open addressing, linear probing) serves three
 * uses: the pending writes of a consumed batch, the writes of the event being
 * folded (a second layer, so a failed fold is dropped without touching the
 * batch), and the in-memory backing of tests and point-in-time folds.  A
 * tombstone (val == NULL) records a delete: in a transaction it hides the
 * base value, in a memory map it means absent.  Ordered output (foreach,
 * scan) sorts at the end instead of keeping a tree: batches are written
 * once and scanned rarely, so O(1) puts matter more.
 */
#include "escqrs/projection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ kvmap */

typedef struct kv_s {
    char *key;
    size_t keylen;
    char *val; /* NULL: tombstone */
    size_t vallen;
} kv_t;

typedef struct kvmap_s {
    kv_t *slots;
    size_t cap; /* power of two */
    size_t used;
} kvmap_t;

static uint64_t kv_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static kv_t *kv_find_slot(kv_t *slots, size_t cap, const void *key, size_t keylen)
{
    size_t i = (size_t)kv_hash(key, keylen) & (cap - 1);
    for (;;) {
        kv_t *s = &slots[i];
        if (!s->key || (s->keylen == keylen && memcmp(s->key, key, keylen) == 0))
            return s;
        i = (i + 1) & (cap - 1);
    }
}

static void kvmap_grow(kvmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    kv_t *ns = es_calloc(ncap, sizeof(*ns));
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key)
            *kv_find_slot(ns, ncap, m->slots[i].key, m->slots[i].keylen) = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
}

static kv_t *kvmap_lookup(const kvmap_t *m, const void *key, size_t keylen)
{
    if (!m->cap)
        return NULL;
    kv_t *s = kv_find_slot(m->slots, m->cap, key, keylen);
    return s->key ? s : NULL;
}

/* Set key to val (NULL: tombstone). */
static void kvmap_set(kvmap_t *m, const void *key, size_t keylen, const void *val, size_t vallen)
{
    if ((m->used + 1) * 4 > m->cap * 3)
        kvmap_grow(m);
    kv_t *s = kv_find_slot(m->slots, m->cap, key, keylen);
    if (!s->key) {
        s->key = es_malloc(keylen ? keylen : 1);
        memcpy(s->key, key, keylen);
        s->keylen = keylen;
        m->used++;
    } else {
        free(s->val);
    }
    if (val) {
        s->val = es_malloc(vallen ? vallen : 1);
        memcpy(s->val, val, vallen);
        s->vallen = vallen;
    } else {
        s->val = NULL;
        s->vallen = 0;
    }
}

static void kvmap_clear(kvmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        free(m->slots[i].val);
    }
    free(m->slots);
    m->slots = NULL;
    m->cap = m->used = 0;
}

/* Empty the map but keep its slot array (the per-event layer is reused). */
static void kvmap_reset(kvmap_t *m)
{
    if (!m->used)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        free(m->slots[i].val);
    }
    memset(m->slots, 0, m->cap * sizeof(*m->slots));
    m->used = 0;
}

/* Move every entry of src into dst (ownership of keys and values moves too). */
static void kvmap_move(kvmap_t *dst, kvmap_t *src)
{
    for (size_t i = 0; i < src->cap; i++) {
        kv_t *s = &src->slots[i];
        if (!s->key)
            continue;
        if ((dst->used + 1) * 4 > dst->cap * 3)
            kvmap_grow(dst);
        kv_t *d = kv_find_slot(dst->slots, dst->cap, s->key, s->keylen);
        if (d->key) {
            free(s->key);
            free(d->val);
        } else {
            d->key = s->key;
            d->keylen = s->keylen;
            dst->used++;
        }
        d->val = s->val;
        d->vallen = s->vallen;
        memset(s, 0, sizeof(*s));
    }
    src->used = 0;
}

static int kv_cmp(const void *a, const void *b)
{
    const kv_t *x = *(kv_t *const *)a, *y = *(kv_t *const *)b;
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->keylen < y->keylen ? -1 : x->keylen > y->keylen;
}

/* Entries (tombstones included) whose key starts with prefix, sorted. */
static kv_t **kvmap_sorted(const kvmap_t *m, const void *prefix, size_t prefixlen, size_t *n)
{
    kv_t **v = es_malloc((m->used ? m->used : 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++) {
        kv_t *s = &m->slots[i];
        if (s->key && s->keylen >= prefixlen && memcmp(s->key, prefix, prefixlen) == 0)
            v[k++] = s;
    }
    qsort(v, k, sizeof(*v), kv_cmp);
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
    return rd->be.scan(rd->be.opaque, prefix, prefixlen, cb, opaque, errstr, errstr_size);
}

/* ----------------------------------------------------------- memory maps */

struct es_proj_memmap_s {
    kvmap_t map;
    size_t live;
};

es_proj_memmap_t *es_proj_memmap_new(void)
{
    return es_calloc(1, sizeof(es_proj_memmap_t));
}

void es_proj_memmap_destroy(es_proj_memmap_t *m)
{
    if (!m)
        return;
    kvmap_clear(&m->map);
    free(m);
}

void es_proj_memmap_put(es_proj_memmap_t *m, const void *key, size_t keylen, const void *val,
                        size_t vallen)
{
    kv_t *s = kvmap_lookup(&m->map, key, keylen);
    if (!s || !s->val)
        m->live++;
    kvmap_set(&m->map, key, keylen, val ? val : "", val ? vallen : 0);
}

void es_proj_memmap_delete(es_proj_memmap_t *m, const void *key, size_t keylen)
{
    kv_t *s = kvmap_lookup(&m->map, key, keylen);
    if (s && s->val) {
        m->live--;
        kvmap_set(&m->map, key, keylen, NULL, 0);
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
    kv_t *s = kvmap_lookup(&m->map, key, keylen);
    if (!s || !s->val)
        return ES_ERR_NOT_FOUND;
    es_buf_set(out, s->val, s->vallen);
    return ES_ERR_OK;
}

static es_err_t memmap_scan(void *opaque, const void *prefix, size_t prefixlen,
                            bool (*cb)(void *, const char *, size_t, const char *, size_t),
                            void *cbopaque, char *errstr, size_t errstr_size)
{
    es_proj_memmap_t *m = opaque;
    size_t n;
    kv_t **v = kvmap_sorted(&m->map, prefix, prefixlen, &n);
    for (size_t i = 0; i < n; i++) {
        if (v[i]->val && !cb(cbopaque, v[i]->key, v[i]->keylen, v[i]->val, v[i]->vallen))
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

struct es_proj_txn_s {
    es_proj_reader_t *base;
    kvmap_t batch; /* committed event scopes */
    kvmap_t event; /* the event being folded */
    bool in_event;
};

es_proj_txn_t *es_proj_txn_new(es_proj_reader_t *base)
{
    es_proj_txn_t *txn = es_calloc(1, sizeof(*txn));
    txn->base = base;
    return txn;
}

void es_proj_txn_destroy(es_proj_txn_t *txn)
{
    if (!txn)
        return;
    kvmap_clear(&txn->batch);
    kvmap_clear(&txn->event);
    free(txn);
}

es_err_t es_proj_get(es_proj_txn_t *txn, const void *key, size_t keylen, es_buf_t *out,
                     char *errstr, size_t errstr_size)
{
    kv_t *s = kvmap_lookup(&txn->event, key, keylen);
    if (!s)
        s = kvmap_lookup(&txn->batch, key, keylen);
    if (s) {
        if (!s->val)
            return ES_ERR_NOT_FOUND;
        es_buf_set(out, s->val, s->vallen);
        return ES_ERR_OK;
    }
    return es_proj_reader_get(txn->base, key, keylen, out, errstr, errstr_size);
}

void es_proj_put(es_proj_txn_t *txn, const void *key, size_t keylen, const void *val, size_t vallen)
{
    kvmap_set(txn->in_event ? &txn->event : &txn->batch, key, keylen, val ? val : "",
              val ? vallen : 0);
}

void es_proj_delete(es_proj_txn_t *txn, const void *key, size_t keylen)
{
    kvmap_set(txn->in_event ? &txn->event : &txn->batch, key, keylen, NULL, 0);
}

void es_proj_txn_begin_event(es_proj_txn_t *txn)
{
    kvmap_reset(&txn->event);
    txn->in_event = true;
}

void es_proj_txn_commit_event(es_proj_txn_t *txn)
{
    kvmap_move(&txn->batch, &txn->event);
    txn->in_event = false;
}

void es_proj_txn_rollback_event(es_proj_txn_t *txn)
{
    kvmap_reset(&txn->event);
    txn->in_event = false;
}

void es_proj_txn_foreach(es_proj_txn_t *txn,
                         void (*cb)(void *opaque, const char *key, size_t keylen, const char *val,
                                    size_t vallen),
                         void *opaque)
{
    size_t n;
    kv_t **v = kvmap_sorted(&txn->batch, "", 0, &n);
    for (size_t i = 0; i < n; i++)
        cb(opaque, v[i]->key, v[i]->keylen, v[i]->val, v[i]->vallen);
    free(v);
}

size_t es_proj_txn_count(const es_proj_txn_t *txn)
{
    return txn->batch.used;
}

void es_proj_txn_clear(es_proj_txn_t *txn)
{
    kvmap_clear(&txn->batch); /* a batch's map may be large: give it back */
    kvmap_reset(&txn->event);
    txn->in_event = false;
}

json_t *es_proj_bad_request(const char *msg)
{
    return json_pack("{s:s, s:s}", "error", "invalid_query", "message", msg);
}

/* ---------------------------------------------------------------- codecs */

void es_proj_put_u64(es_buf_t *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (56 - 8 * i));
    es_buf_append(b, x, 8);
}

void es_proj_put_u32(es_buf_t *b, uint32_t v)
{
    unsigned char x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (unsigned char)(v >> (24 - 8 * i));
    es_buf_append(b, x, 4);
}

void es_proj_put_str(es_buf_t *b, const char *s, size_t len)
{
    es_proj_put_u32(b, (uint32_t)len);
    es_buf_append(b, s, len);
}

void es_proj_cursor_init(es_proj_cursor_t *c, const void *data, size_t len)
{
    c->p = data;
    c->left = len;
    c->bad = false;
}

uint64_t es_proj_get_u64(es_proj_cursor_t *c)
{
    if (c->left < 8) {
        c->bad = true;
        c->left = 0;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | c->p[i];
    c->p += 8;
    c->left -= 8;
    return v;
}

uint32_t es_proj_get_u32(es_proj_cursor_t *c)
{
    if (c->left < 4) {
        c->bad = true;
        c->left = 0;
        return 0;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | c->p[i];
    c->p += 4;
    c->left -= 4;
    return v;
}

const char *es_proj_get_str(es_proj_cursor_t *c, size_t *len)
{
    uint32_t n = es_proj_get_u32(c);
    if (c->bad || n > c->left) {
        c->bad = true;
        c->left = 0;
        *len = 0;
        return "";
    }
    const char *s = (const char *)c->p;
    c->p += n;
    c->left -= n;
    *len = n;
    return s;
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
