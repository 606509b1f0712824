/*
 * test_projection_cart_view.c — the cart_view fold and query, in memory, and
 * the transaction semantics every fold relies on (own writes visible,
 * failed events dropped whole).  A random workload is folded and every cart
 * compared with the workload's own independent model.
 */
#include "eventgen.h"
#include "cart.h"
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char errstr[512];

static const char *no_query(void *opaque, const char *name)
{
    return opaque ? (const char *)opaque : NULL;
}

/* GET /v1/carts/{id} against the map; returns status, *out the body. */
static int get_cart(es_proj_memmap_t *m, const char *id, json_t **out)
{
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    const char *params[1] = {id};
    es_proj_query_req_t req = {.params = params, .nparams = 1, .query = no_query};
    *out = NULL;
    int st = es_proj_cart_view.queries[0].handle(rd, &req, out, errstr, sizeof(errstr));
    es_proj_reader_destroy(rd);
    return st;
}

static void test_add_remove_checkout(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;

    CU_ASSERT_EQUAL(get_cart(m, "c1", &body), 404);
    CU_ASSERT_PTR_NULL(body);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c1", 1, 1000, "ItemAdded", "apple", 2, 150),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c1", 2, 1001, "ItemAdded", "pear", 1, 99),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c1", 3, 1002, "ItemAdded", "apple", 1, 160),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c1", 4, 1003, "ItemRemoved", "pear", 1, 0),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(get_cart(m, "c1", &body), 200);
    json_t *want = json_loads("{\"cart_id\":\"c1\",\"status\":\"open\",\"items\":[{\"sku\":"
                              "\"apple\",\"quantity\":3,\"unit_price_cents\":160}],"
                              "\"total_cents\":480,\"version\":4}",
                              0, NULL);
    CU_ASSERT_TRUE(json_equal(body, want));
    json_decref(body);
    json_decref(want);

    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c1", 5, 1004, "CartCheckedOut", NULL, 0, 480),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(get_cart(m, "c1", &body), 200);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(body, "status")), "checked_out");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "total_cents")), 480);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "version")), 5);
    json_decref(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

static void test_refuses_impossible_events(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;

    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 1, 1, "ItemAdded", "a", 1, 10), errstr,
                                  sizeof(errstr)),
                    ES_ERR_OK);
    /* the same version again: a duplicate must never be applied twice */
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 1, 1, "ItemAdded", "a", 1, 10), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 2, 1, "ItemRemoved", "a", 2, 0), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 2, 1, "ItemRemoved", "zzz", 1, 0), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 2, 1, "ItemAdded", "b", 0, 10), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 2, 1, "ItemRemoved", "a", 0, 0), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 2, 1, "CartCheckedOut", NULL, 0, 10),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "c2", 3, 1, "ItemAdded", "a", 1, 10), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL_FATAL(get_cart(m, "c2", &body), 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "version")), 2);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(body, "items")), 1);
    json_decref(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * A stored cart that does not decode (cut short, or claiming more lines than its
 * bytes can hold) stops the fold with a store error, not a DLQ event, and its query
 * answers 500; the stored key is "c/<id>" as the header documents.
 */
static void test_corrupt_stored_cart(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                  es_evgen_cart(g, "ok", 1, 1, "ItemAdded", "a", 1, 10), errstr,
                                  sizeof(errstr)),
                    ES_ERR_OK);
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_buf_t val = {0};
    CU_ASSERT_EQUAL(es_proj_reader_get(rd, "c/ok", 4, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    es_proj_reader_destroy(rd);

    /* status, version, total, then n: 2^32 - 1 lines claimed, none there (a decoder that
     * believed n would try to allocate them all) */
    static const unsigned char many[24] = {[20] = 0xff, [21] = 0xff, [22] = 0xff, [23] = 0xff};
    const struct {
        const void *bytes;
        size_t len;
    } bad[] = {{many, sizeof(many)}, {val.data, val.len - 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        es_proj_memmap_put(m, "c/bad", 5, bad[i].bytes, bad[i].len);
        errstr[0] = '\0';
        CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                      es_evgen_cart(g, "bad", 2, 1, "ItemAdded", "a", 1, 10),
                                      errstr, sizeof(errstr)),
                        ES_ERR_STORE);
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "corrupt"));
        errstr[0] = '\0';
        CU_ASSERT_EQUAL(get_cart(m, "bad", &body), 500);
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "corrupt"));
        CU_ASSERT_PTR_NULL(body);
    }
    es_buf_free(&val);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * A cart of more lines than the fold keeps on its stack (16), with skus longer
 * than its stack keys (128 bytes) and ids past them too: every line, price and
 * the total as the events say, in the order the lines were first added.
 */
static void test_large_cart_long_skus(void)
{
    enum { LINES = 40 };
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    static char sku[LINES][300];
    char id[200];
    int version = 1;
    long long total = 0;
    json_t *body;

    memset(id, 'C', 150);
    snprintf(id + 150, sizeof(id) - 150, "-big");
    for (int i = 0; i < LINES; i++) {
        memset(sku[i], 'L', 200);
        snprintf(i % 10 == 9 ? sku[i] + 200 : sku[i], 100, "big-%02d", i);
        CU_ASSERT_EQUAL(
            es_evgen_fold(&es_proj_cart_view, m,
                          es_evgen_cart(g, id, version++, 1, "ItemAdded", sku[i], i + 2, 100 + i),
                          errstr, sizeof(errstr)),
            ES_ERR_OK);
    }
    for (int i = 0; i < LINES; i += 3) /* one unit off every third line */
        CU_ASSERT_EQUAL(
            es_evgen_fold(&es_proj_cart_view, m,
                          es_evgen_cart(g, id, version++, 1, "ItemRemoved", sku[i], 1, 0), errstr,
                          sizeof(errstr)),
            ES_ERR_OK);
    for (int i = 0; i < LINES; i += 8) /* lines 0, 8, ... 32 go whole */
        CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, m,
                                      es_evgen_cart(g, id, version++, 1, "ItemRemoved", sku[i],
                                                    i + 2 - (i % 3 == 0), 0),
                                      errstr, sizeof(errstr)),
                        ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(get_cart(m, id, &body), 200);
    json_t *items = json_object_get(body, "items");
    size_t k = 0;
    for (int i = 0; i < LINES; i++) {
        if (i % 8 == 0)
            continue;
        long long qty = i + 2 - (i % 3 == 0);
        json_t *it = json_array_get(items, k++);
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(it, "sku")), sku[i]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "quantity")), qty);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "unit_price_cents")), 100 + i);
        total += qty * (100 + i);
    }
    CU_ASSERT_EQUAL(json_array_size(items), k);
    CU_ASSERT_EQUAL(k, LINES - 5);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "total_cents")), total);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "version")), version - 1);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(body, "cart_id")), id);
    json_decref(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/* A transaction over an empty memory base (put the base's keys into m). */
typedef struct {
    es_proj_memmap_t *m;
    es_proj_reader_t *rd;
    es_proj_txn_t *txn;
} txn_fix_t;

static txn_fix_t txn_fix_open(void)
{
    txn_fix_t f = {.m = es_proj_memmap_new()};
    es_proj_backend_t be = es_proj_memmap_backend(f.m);
    f.rd = es_proj_reader_new(&be); /* copies the backend */
    f.txn = es_proj_txn_new(f.rd);
    return f;
}

static void txn_fix_close(txn_fix_t *f)
{
    es_proj_txn_destroy(f->txn);
    es_proj_reader_destroy(f->rd);
    es_proj_memmap_destroy(f->m);
}

static void test_txn_reads_own_writes_and_rolls_back(void)
{
    txn_fix_t f = txn_fix_open();
    es_proj_memmap_put(f.m, "k1", 2, "base", 4);
    es_proj_txn_t *txn = f.txn;
    es_buf_t v = {0};

    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k1", 2, "one", 3);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(v.len, 3);
    es_proj_txn_commit_event(txn);

    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k1", 2, "two", 3);
    es_proj_put(txn, "k2", 2, "x", 1);
    es_proj_txn_rollback_event(txn);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 3 && memcmp(v.data, "one", 3) == 0);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k2", 2, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);

    es_proj_txn_begin_event(txn);
    es_proj_delete(txn, "k1", 2);
    es_proj_txn_commit_event(txn);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 1);
    /* the base is untouched until the runtime writes the batch */
    CU_ASSERT_EQUAL(es_proj_reader_get(f.rd, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 4 && memcmp(v.data, "base", 4) == 0);

    es_buf_free(&v);
    txn_fix_close(&f);
}

/*
 * A key prefix (partitioned mode's slice of a view): every read and write goes to the
 * prefixed key, the fold never sees the prefix, a prefix past ES_PROJ_PREFIX_MAX bytes is
 * cut there, and a prefix of 0 bytes is none.  Unit-level: until now only integration 0311
 * exercised it.
 */
static void test_txn_key_prefix(void)
{
    static const char slice[] = "\x01\x00\x00\x05", long_prefix[] = "ABCDEFGHIJ";
    es_proj_memmap_t *out = es_proj_memmap_new();
    txn_fix_t f = txn_fix_open();
    es_proj_memmap_put(f.m, "\x01\x00\x00\x05k1", 6, "slice", 5);
    es_proj_memmap_put(f.m, "k1", 2, "plain", 5);
    es_proj_memmap_put(f.m, "ABCDEFGHk1", 10, "cut", 3);
    es_proj_txn_t *txn = f.txn;
    es_buf_t v = {0};

    es_proj_txn_set_prefix(txn, slice, 4);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 5 && memcmp(v.data, "slice", 5) == 0);
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k2", 2, "new", 3);
    es_proj_txn_commit_event(txn);
    es_proj_txn_store_into(txn, out);
    es_proj_backend_t ob = es_proj_memmap_backend(out);
    es_proj_reader_t *ord = es_proj_reader_new(&ob);
    CU_ASSERT_EQUAL(es_proj_reader_get(ord, "\x01\x00\x00\x05k2", 6, &v, errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 3 && memcmp(v.data, "new", 3) == 0);
    CU_ASSERT_EQUAL(es_proj_reader_get(ord, "k2", 2, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);

    es_proj_txn_begin_event(txn); /* a delete goes to the prefixed key too */
    es_proj_delete(txn, "k1", 2);
    es_proj_txn_commit_event(txn);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    es_proj_txn_set_prefix(txn, NULL, 0);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);

    es_proj_txn_set_prefix(txn, long_prefix, 10); /* cut at 8: ABCDEFGH */
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 3 && memcmp(v.data, "cut", 3) == 0);
    es_proj_txn_set_prefix(txn, NULL, 0);
    CU_ASSERT_EQUAL(es_proj_get(txn, "k1", 2, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 5 && memcmp(v.data, "plain", 5) == 0);

    es_buf_free(&v);
    es_proj_reader_destroy(ord);
    es_proj_memmap_destroy(out);
    txn_fix_close(&f);
}

/*
 * An event left open (a fold that returned without commit or rollback) is dropped, never
 * half kept: by the next begin, by a clear, by a seal.  Under the sanitizers a dropped
 * event's replaced values must be freed once, not leaked.
 */
static void test_txn_open_event_never_half_kept(void)
{
    txn_fix_t f = txn_fix_open();
    es_proj_memmap_put(f.m, "b", 1, "base", 4);
    es_proj_txn_t *txn = f.txn;
    es_buf_t v = {0};

    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "half", 4, "1", 1);
    es_proj_put(txn, "b", 1, "changed", 7);
    es_proj_txn_begin_event(txn); /* the first is dropped */
    es_proj_put(txn, "whole", 5, "2", 1);
    es_proj_txn_commit_event(txn);
    CU_ASSERT_EQUAL(es_proj_get(txn, "half", 4, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(es_proj_get(txn, "b", 1, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == 4 && memcmp(v.data, "base", 4) == 0);
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 1);

    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "whole", 5, "3", 1); /* replaces a committed value, then ... */
    es_proj_txn_clear(txn);               /* ... the batch is cleared with the event open */
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 0);
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "after", 5, "4", 1);
    es_proj_txn_commit_event(txn);
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 1);

    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "sealed-half", 11, "5", 1);
    es_proj_txn_seal(txn); /* the open event is dropped, the committed write sealed */
    CU_ASSERT_EQUAL(es_proj_get(txn, "sealed-half", 11, &v, errstr, sizeof(errstr)),
                    ES_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(es_proj_get(txn, "after", 5, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    es_proj_txn_release_sealed(txn);

    es_buf_free(&v);
    txn_fix_close(&f);
}

/* A random workload: every cart equals the workload's own model. */
/* The transaction against a plain array model: 3 000 keys over a base of 1 000,
 * events of 1-8 writes (puts, deletes, the same key twice, keys only in the
 * base), committed or rolled back at random, with reads inside the event.
 * Enough keys that the batch map grows in the middle of events that are then
 * rolled back.  Afterwards, the batch the runtime would write (foreach) is
 * exactly the model's, and the base was never touched. */
enum { TXN_KEYS = 3000, TXN_BASE = 1000 };
enum { UNTOUCHED = 0, DELETED = -1 }; /* else the value */

static uint64_t txn_rand(uint64_t *x) /* xorshift64 */
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static size_t txn_model_key(char *key, int i)
{
    return (size_t)snprintf(key, 16, "k%d", i);
}

/* What a read of key i must give, by the model. */
static int txn_model_read(const int *state, int i)
{
    if (state[i] == UNTOUCHED)
        return i < TXN_BASE ? 1000000 + i : DELETED;
    return state[i];
}

/* What the foreach callback saw: how many writes, keys handed twice, keys out of byte order. */
static int txn_seen, txn_twice, txn_unsorted;
static bool txn_handed[TXN_KEYS];
static char txn_last[16];
static int *txn_foreach_state;
static void txn_foreach_check(void *opaque, const char *key, size_t keylen, const char *val,
                              size_t vallen)
{
    char num[16] = "";
    memcpy(num, key + 1, keylen - 1 < sizeof(num) - 1 ? keylen - 1 : sizeof(num) - 1);
    int i = (int)strtol(num, NULL, 10);
    txn_seen++;
    txn_twice += txn_handed[i];
    txn_handed[i] = true;
    char cur[sizeof(txn_last)];
    snprintf(cur, sizeof(cur), "%.*s", (int)keylen, key);
    txn_unsorted += txn_seen > 1 && strcmp(txn_last, cur) >= 0; /* bytes, as unsigned char */
    memcpy(txn_last, cur, sizeof(cur));
    if (!val) {
        CU_ASSERT_EQUAL(txn_foreach_state[i], DELETED);
    } else {
        CU_ASSERT_TRUE(vallen == sizeof(int) &&
                       memcmp(val, &txn_foreach_state[i], sizeof(int)) == 0);
    }
}

static void test_txn_against_model(void)
{
    static int state[TXN_KEYS], saved[TXN_KEYS];
    es_proj_memmap_t *m = es_proj_memmap_new();
    char key[16];
    for (int i = 0; i < TXN_BASE; i++) {
        int v = 1000000 + i;
        es_proj_memmap_put(m, key, txn_model_key(key, i), &v, sizeof(v));
    }
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    es_buf_t out = {0};
    uint64_t rng = 7;
    int value = 1, rolled_back = 0, bad_reads = 0;
    for (int event = 0; event < 4000; event++) {
        memcpy(saved, state, sizeof(state));
        es_proj_txn_begin_event(txn);
        int writes = 1 + (int)(txn_rand(&rng) % 8);
        for (int w = 0; w < writes; w++) {
            /* later events reach further: the map grows during events */
            int i = (int)(txn_rand(&rng) %
                          (size_t)(TXN_BASE + event * (TXN_KEYS - TXN_BASE) / 4000 + 1));
            size_t kl = txn_model_key(key, i);
            if (txn_rand(&rng) % 4 == 0) {
                es_proj_delete(txn, key, kl);
                state[i] = DELETED;
            } else {
                int v = value++;
                es_proj_put(txn, key, kl, &v, sizeof(v));
                state[i] = v;
            }
            if (w % 2) { /* the same key again, in the same event */
                int v = value++;
                es_proj_put(txn, key, kl, &v, sizeof(v));
                state[i] = v;
            }
            int j = (int)(txn_rand(&rng) % TXN_KEYS);
            es_err_t err =
                es_proj_get(txn, key, txn_model_key(key, j), &out, errstr, sizeof(errstr));
            int want = txn_model_read(state, j);
            bad_reads += want == DELETED ? err != ES_ERR_NOT_FOUND
                                         : err || out.len != sizeof(int) ||
                                               memcmp(out.data, &want, sizeof(int));
        }
        if (txn_rand(&rng) % 3 == 0) {
            es_proj_txn_rollback_event(txn);
            memcpy(state, saved, sizeof(state));
            rolled_back++;
        } else {
            es_proj_txn_commit_event(txn);
        }
    }
    CU_ASSERT_EQUAL(bad_reads, 0);
    CU_ASSERT_TRUE(rolled_back > 1000);
    for (int i = 0; i < TXN_KEYS; i++) { /* every key reads as the model says */
        es_err_t err = es_proj_get(txn, key, txn_model_key(key, i), &out, errstr, sizeof(errstr));
        int want = txn_model_read(state, i);
        bool right = want == DELETED ? err == ES_ERR_NOT_FOUND
                                     : err == ES_ERR_OK && out.len == sizeof(int) &&
                                           memcmp(out.data, &want, sizeof(int)) == 0;
        CU_ASSERT_TRUE(right);
    }
    int touched = 0;
    for (int i = 0; i < TXN_KEYS; i++)
        touched += state[i] != UNTOUCHED;
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), (size_t)touched);
    /* every write once, in key byte order (the memtables gain from it: docs/projector.md) */
    txn_seen = 0;
    txn_foreach_state = state;
    es_proj_txn_foreach(txn, txn_foreach_check, NULL);
    CU_ASSERT_EQUAL(txn_seen, touched);
    CU_ASSERT_EQUAL(txn_twice, 0);
    CU_ASSERT_EQUAL(txn_unsorted, 0);
    CU_ASSERT_EQUAL(es_proj_memmap_count(m), TXN_BASE); /* the base is untouched */
    /* cleared, the transaction reads the base again and holds nothing */
    es_proj_txn_clear(txn);
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 0);
    int v0 = 1000000;
    CU_ASSERT_EQUAL(es_proj_get(txn, "k0", 2, &out, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(out.len == sizeof(int) && memcmp(out.data, &v0, sizeof(int)) == 0);
    /* an event left open when the transaction goes is dropped, not leaked */
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k0", 2, "x", 1);
    es_proj_txn_destroy(txn);
    es_buf_free(&out);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(m);
}

/* What @p key reads through @p txn: its value as a string, "-" when absent. */
static const char *txn_read(es_proj_txn_t *txn, const char *key, es_buf_t *out)
{
    static char got[32];
    es_err_t err = es_proj_get(txn, key, strlen(key), out, errstr, sizeof(errstr));
    snprintf(got, sizeof(got), "%.*s", err ? 1 : (int)out->len, err ? "-" : out->data);
    return got;
}

static int sealed_seen;
static void count_foreach(void *opaque, const char *key, size_t keylen, const char *val,
                          size_t vallen)
{
    (void)opaque, (void)key, (void)keylen, (void)val, (void)vallen;
    sealed_seen++;
}

/* The batch being stored (sealed) is read under the next batch and over the base, until released.
 */
static void test_txn_sealed_batch(void)
{
    es_proj_memmap_t *m = es_proj_memmap_new();
    es_proj_memmap_put(m, "k1", 2, "base1", 5);
    es_proj_memmap_put(m, "k2", 2, "base2", 5);
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    es_buf_t out = {0};

    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k1", 2, "b1", 2);
    es_proj_delete(txn, "k2", 2);
    es_proj_put(txn, "k3", 2, "b3", 2);
    es_proj_txn_commit_event(txn);
    es_proj_txn_seal(txn);
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 0); /* the next batch starts empty */
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k1", &out), "b1");
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k2", &out), "-"); /* its tombstone hides the base */
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k3", &out), "b3");
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k4", &out), "-");

    /* the next batch reads over the sealed one; a rolled-back event falls back to it */
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k1", 2, "c1", 2);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k1", &out), "c1");
    es_proj_txn_rollback_event(txn);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k1", &out), "b1");
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "k2", 2, "c2", 2);
    es_proj_txn_commit_event(txn);
    sealed_seen = 0;
    es_proj_txn_foreach(txn, count_foreach, NULL); /* only the new batch's writes */
    CU_ASSERT_EQUAL(sealed_seen, 1);

    /* stored: the sealed writes are the store's business now (this base never got them) */
    es_proj_txn_release_sealed(txn);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k1", &out), "base1");
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k2", &out), "c2");
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k3", &out), "-");

    /* sealed again, and destroyed with a sealed batch held: nothing leaks (ASan) */
    es_proj_txn_seal(txn);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "k2", &out), "c2");
    es_proj_txn_destroy(txn);
    es_buf_free(&out);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(m);
}

/* A base that counts its reads: a memory map standing in for the store. */
typedef struct {
    es_proj_memmap_t *map;
    es_proj_backend_t inner;
    es_proj_reader_t *rd; /* reads through counted_get */
    int reads;
} counted_base_t;

static es_err_t counted_get(void *opaque, const void *key, size_t keylen, es_buf_t *out, char *err,
                            size_t errsz)
{
    counted_base_t *b = opaque;
    b->reads++;
    return b->inner.get(b->inner.opaque, key, keylen, out, err, errsz);
}

/* An empty counted base, and a transaction over it promised that it starts empty. */
static es_proj_txn_t *counted_base_open(counted_base_t *b)
{
    *b = (counted_base_t){.map = es_proj_memmap_new()};
    b->inner = es_proj_memmap_backend(b->map);
    es_proj_backend_t be = {.get = counted_get, .scan = b->inner.scan, .opaque = b};
    b->rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(b->rd);
    es_proj_txn_base_starts_empty(txn);
    return txn;
}

static void counted_base_close(counted_base_t *b)
{
    es_proj_reader_destroy(b->rd);
    es_proj_memmap_destroy(b->map);
}

/* The runtime's batch boundary, done in line: hand the batch to the "store", then forget it. */
static void store_batch(es_proj_txn_t *txn, counted_base_t *b)
{
    es_proj_txn_store_into(txn, b->map);
    es_proj_txn_clear(txn);
}

/*
 * A base built from empty by the transaction alone: a key it never handed out
 * is absent without a read; every key it did hand out is read from the base,
 * whatever happened to it since (the filter may say "maybe", never "no", for
 * those); the store's own keys (0x00 first) are always read.
 */
static void test_txn_base_starts_empty(void)
{
    counted_base_t b;
    es_proj_txn_t *txn = counted_base_open(&b);
    es_buf_t out = {0};
    char key[32];

    es_proj_txn_begin_event(txn);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "c/1", &out), "-");
    CU_ASSERT_EQUAL(b.reads, 0); /* never handed out: no read */
    es_proj_put(txn, "c/1", 3, "v1", 2);
    es_proj_put(txn, "c/2", 3, "v2", 2);
    es_proj_txn_commit_event(txn);
    store_batch(txn, &b);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "c/1", &out), "v1"); /* handed out: read */
    CU_ASSERT_EQUAL(b.reads, 1);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "c/3", &out), "-");
    CU_ASSERT_EQUAL(b.reads, 1);

    /* deleted in a later batch, then written again: each state is read from the base */
    es_proj_txn_begin_event(txn);
    es_proj_delete(txn, "c/2", 3);
    es_proj_txn_commit_event(txn);
    store_batch(txn, &b);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "c/2", &out), "-");
    CU_ASSERT_EQUAL(b.reads, 2);
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "c/2", 3, "w2", 2);
    es_proj_txn_commit_event(txn);
    store_batch(txn, &b);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "c/2", &out), "w2");

    /* the store's own keys are always read, handed out or not */
    es_proj_memmap_put(b.map, "\0off", 4, "7", 1);
    int before = b.reads;
    CU_ASSERT_EQUAL(es_proj_get(txn, "\0off", 4, &out, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(b.reads, before + 1);

    /* many keys over many batches: every one reads back; few absent keys reach the base */
    for (int batch = 0; batch < 20; batch++) {
        es_proj_txn_begin_event(txn);
        for (int i = 0; i < 1000; i++) {
            int len = snprintf(key, sizeof(key), "k/%d", batch * 1000 + i);
            es_proj_put(txn, key, (size_t)len, key, (size_t)len);
        }
        es_proj_txn_commit_event(txn);
        store_batch(txn, &b);
    }
    int missing = 0;
    for (int i = 0; i < 20000; i++) {
        int len = snprintf(key, sizeof(key), "k/%d", i);
        if (es_proj_get(txn, key, (size_t)len, &out, errstr, sizeof(errstr)) ||
            out.len != (size_t)len || memcmp(out.data, key, out.len))
            missing++;
    }
    CU_ASSERT_EQUAL(missing, 0);
    before = b.reads;
    for (int i = 0; i < 20000; i++) {
        int len = snprintf(key, sizeof(key), "absent/%d", i);
        CU_ASSERT_EQUAL(es_proj_get(txn, key, (size_t)len, &out, errstr, sizeof(errstr)),
                        ES_ERR_NOT_FOUND);
    }
    CU_ASSERT(b.reads - before < 200); /* 20 000 keys in 4 MiB: about one false "maybe" in 10^4 */

    /* the promise is the runtime's: a key put behind the transaction's back is not seen */
    es_proj_memmap_put(b.map, "behind", 6, "x", 1);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "behind", &out), "-");
    es_proj_txn_destroy(txn);

    /* a first batch written without a get (a history): the filter is dropped, all reads go on */
    txn = es_proj_txn_new(b.rd);
    es_proj_txn_base_starts_empty(txn);
    es_proj_txn_begin_event(txn);
    es_proj_put(txn, "h/1", 3, "e1", 2);
    es_proj_txn_commit_event(txn);
    store_batch(txn, &b);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "behind", &out), "x");
    es_proj_txn_destroy(txn);

    es_buf_free(&out);
    counted_base_close(&b);
}

static void discard_foreach(void *opaque, const char *key, size_t keylen, const char *val,
                            size_t vallen)
{
    (void)opaque, (void)key, (void)keylen, (void)val, (void)vallen;
}

/*
 * The filter's capacity: past about one distinct key per 8 of its 2^25 bits
 * it is dropped (it counts the keys that set a new bit, a few % short of the
 * distinct ones once it fills), and from then on every get reads the base
 * again (a key put behind the transaction's back, hidden while the filter
 * answered, is found).
 */
static void test_txn_filter_full(void)
{
    counted_base_t b;
    es_proj_txn_t *txn = counted_base_open(&b);
    es_buf_t out = {0};
    char key[32];
    es_proj_memmap_put(b.map, "behind", 6, "x", 1);
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "behind", &out), "-");  /* the filter answers */
    const int keys = (1 << 25) / 8 / 10 * 11, per_batch = 50000; /* 10 % past it */
    for (int k = 0; k < keys; k += per_batch) {
        es_proj_txn_begin_event(txn);
        for (int i = k; i < k + per_batch && i < keys; i++) {
            int len = snprintf(key, sizeof(key), "%d", i);
            es_proj_put(txn, key, (size_t)len, "", 0);
        }
        es_proj_txn_commit_event(txn);
        es_proj_txn_foreach(txn, discard_foreach, NULL);
        es_proj_txn_clear(txn);
    }
    CU_ASSERT_STRING_EQUAL(txn_read(txn, "behind", &out), "x"); /* dropped: read again */
    es_proj_txn_destroy(txn);
    es_buf_free(&out);
    counted_base_close(&b);
}

static void test_random_workload_matches_model(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    es_sim_t sim;
    const char *id;
    int failures = 0;

    es_sim_init(&sim, "rc", 42, 50);
    for (int i = 0; i < 20000; i++) {
        avro_value_t *v = es_sim_next(&sim, g, 1000 + i, &id);
        if (es_evgen_fold(&es_proj_cart_view, m, v, errstr, sizeof(errstr)) != ES_ERR_OK) {
            failures++;
            fprintf(stderr, "fold: %s\n", errstr);
        }
    }
    CU_ASSERT_EQUAL(failures, 0);
    size_t touched = 0;
    for (size_t i = 0; i < sim.ncarts; i++)
        touched += sim.carts[i].version > 0;
    CU_ASSERT_EQUAL(es_proj_memmap_count(m), touched);
    CU_ASSERT_TRUE(touched > 1000);
    for (size_t i = 0; i < sim.ncarts; i++) {
        json_t *body = NULL;
        char *js = es_sim_cart_json(&sim, i);
        json_t *want = json_loads(js, 0, NULL);
        int st = get_cart(m, sim.carts[i].id, &body);
        if (sim.carts[i].version == 0) {
            CU_ASSERT_EQUAL(st, 404);
        } else {
            CU_ASSERT_EQUAL(st, 200);
            CU_ASSERT_TRUE(json_equal(body, want));
        }
        json_decref(body);
        json_decref(want);
        free(js);
    }
    es_sim_free(&sim);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"add, remove, checkout", test_add_remove_checkout},
        {"refuses impossible events", test_refuses_impossible_events},
        {"a corrupt stored cart: store error, 500", test_corrupt_stored_cart},
        {"a cart of 40 lines, skus of 206 bytes, an id of 154", test_large_cart_long_skus},
        {"txn reads own writes and rolls back", test_txn_reads_own_writes_and_rolls_back},
        {"txn against a model: rollbacks, rewrites, growth", test_txn_against_model},
        {"txn: the sealed batch is read until it is released", test_txn_sealed_batch},
        {"txn over a base it built from empty: absent keys need no read",
         test_txn_base_starts_empty},
        {"txn: a full key filter is dropped, reads go to the base again", test_txn_filter_full},
        {"txn: a key prefix keeps a slice apart", test_txn_key_prefix},
        {"txn: an event left open is dropped, never half kept",
         test_txn_open_event_never_half_kept},
        {"random workload matches the model", test_random_workload_matches_model},
        {NULL, NULL},
    };
    return es_test_run("projection_cart_view", cases);
}
