/*
 * test_stock_view.c — the stock_view projection: folds through the in-memory
 * transaction of projection.h, GET /v1/inventory/{id}'s JSON, the stored
 * layout byte for byte, the events the fold refuses (they would go to the
 * DLQ), int32/int64 edges, and random event streams of many items compared
 * with views an independent model expects.
 */
#include "invtest.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char errstr[512];

static es_err_t fold(es_proj_memmap_t *m, inv_evgen_t *g, const char *item, int64_t version,
                     const char *type, const char *rid, int32_t qty)
{
    return inv_fold(m, inv_event(g, item, version, type, rid, qty), errstr, sizeof(errstr));
}

/* Assert that GET /v1/inventory/@p item answers 200 with exactly @p want (JSON text). */
static void assert_view(es_proj_memmap_t *m, const char *item, const char *want)
{
    json_t *body = NULL, *expected = json_loads(want, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(expected);
    CU_ASSERT_EQUAL(inv_query(m, item, &body), 200);
    if (!json_equal(body, expected)) {
        char *got = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        printf("\n  got  %s\n  want %s\n", got ? got : "(none)", want);
        free(got);
        CU_FAIL("the view differs");
    }
    json_decref(body);
    json_decref(expected);
}

static void test_fold_and_query(void)
{
    inv_evgen_t *g = inv_evgen_new();
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;

    CU_ASSERT_EQUAL(inv_query(m, "sku-1", &body), 404);
    CU_ASSERT_PTR_NULL(body);
    CU_ASSERT_EQUAL(fold(m, g, "sku-1", 1, "Restocked", NULL, 10), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "sku-1", 2, "StockReserved", "o-1", 3), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "sku-1", 3, "StockReserved", "o-2", 4), ES_ERR_OK);
    assert_view(m, "sku-1",
                "{\"item_id\":\"sku-1\",\"on_hand\":10,\"reserved\":7,\"available\":3,"
                "\"reservations\":[{\"reservation_id\":\"o-1\",\"quantity\":3},"
                "{\"reservation_id\":\"o-2\",\"quantity\":4}],\"version\":3}");
    CU_ASSERT_EQUAL(fold(m, g, "sku-1", 4, "ReservationShipped", "o-1", 3), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "sku-1", 5, "ReservationReleased", "o-2", 4), ES_ERR_OK);
    assert_view(m, "sku-1",
                "{\"item_id\":\"sku-1\",\"on_hand\":7,\"reserved\":0,\"available\":7,"
                "\"reservations\":[],\"version\":5}");
    CU_ASSERT_EQUAL(inv_query(m, "sku-2", &body), 404);
    CU_ASSERT_EQUAL(es_proj_memmap_count(m), 1);
    es_proj_memmap_destroy(m);
    inv_evgen_destroy(g);
}

/* The stored value, as the top comment of stock_view.c documents it. */
static void test_stored_layout(void)
{
    inv_evgen_t *g = inv_evgen_new();
    es_proj_memmap_t *m = es_proj_memmap_new();
    CU_ASSERT_EQUAL(fold(m, g, "x", 2, "Restocked", NULL, 9), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "x", 3, "StockReserved", "ab", 5), ES_ERR_OK);
    static const unsigned char want[] = {
        0, 0, 0, 0, 0,   0,   0, 3, /* version */
        0, 0, 0, 9,                 /* on_hand */
        0, 0, 0, 5,                 /* reserved */
        0, 0, 0, 1,                 /* one open reservation */
        0, 0, 0, 2, 'a', 'b',       /* its id */
        0, 0, 0, 5,                 /* its quantity */
    };
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_buf_t val = {0};
    CU_ASSERT_EQUAL_FATAL(be.get(be.opaque, "i/x", 3, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(val.len, sizeof(want));
    CU_ASSERT_TRUE(val.len == sizeof(want) && !memcmp(val.data, want, sizeof(want)));
    es_buf_free(&val);
    es_proj_memmap_destroy(m);
    inv_evgen_destroy(g);
}

static void test_refused_events(void)
{
    inv_evgen_t *g = inv_evgen_new();
    es_proj_memmap_t *m = es_proj_memmap_new();
    const char *before = "{\"item_id\":\"i\",\"on_hand\":5,\"reserved\":2,\"available\":3,"
                         "\"reservations\":[{\"reservation_id\":\"r\",\"quantity\":2}],"
                         "\"version\":2}";

    CU_ASSERT_EQUAL(fold(m, g, "i", 1, "StockReserved", "r", 1), ES_ERR_STATE); /* no stock */
    CU_ASSERT_EQUAL(fold(m, g, "i", 1, "Restocked", NULL, 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_proj_memmap_count(m), 0); /* a refused event leaves nothing */
    CU_ASSERT_EQUAL(fold(m, g, "i", 1, "Restocked", NULL, 5), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "i", 2, "StockReserved", "r", 2), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "i", 2, "Restocked", NULL, 1), ES_ERR_STATE); /* same version */
    CU_ASSERT_EQUAL(fold(m, g, "i", 1, "Restocked", NULL, 1), ES_ERR_STATE); /* older */
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "Restocked", NULL, -1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "Restocked", NULL, INT32_MAX), ES_ERR_STATE); /* overflow */
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "StockReserved", "s", 4), ES_ERR_STATE); /* 3 available */
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "StockReserved", "r", 1), ES_ERR_STATE); /* id is open */
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "StockReserved", "", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "StockReserved", "s", 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "ReservationReleased", "zz", 2), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "ReservationReleased", "r", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "ReservationShipped", "r", 3), ES_ERR_STATE);
    assert_view(m, "i", before);
    CU_ASSERT_EQUAL(fold(m, g, "i", 3, "ReservationShipped", "r", 2), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "i", 4, "ReservationShipped", "r", 2), ES_ERR_STATE); /* twice */
    CU_ASSERT_EQUAL(fold(m, g, "i", 4, "ReservationReleased", "r", 2), ES_ERR_STATE);

    /* a corrupt stored value: the fold stops (ES_ERR_STORE), the query answers 500 */
    es_proj_memmap_put(m, "i/bad", 5, "\x01\x02", 2);
    json_t *body = NULL;
    CU_ASSERT_EQUAL(fold(m, g, "bad", 1, "Restocked", NULL, 1), ES_ERR_STORE);
    CU_ASSERT_EQUAL(inv_query(m, "bad", &body), 500);
    CU_ASSERT_PTR_NULL(body);
    es_proj_memmap_destroy(m);
    inv_evgen_destroy(g);
}

static void test_int_edges(void)
{
    inv_evgen_t *g = inv_evgen_new();
    es_proj_memmap_t *m = es_proj_memmap_new();
    char id[32];

    CU_ASSERT_EQUAL(fold(m, g, "e", 1, "Restocked", NULL, INT32_MAX - 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "e", 2, "Restocked", NULL, 2), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "e", 2, "Restocked", NULL, 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "e", 3, "StockReserved", "all", INT32_MAX), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, g, "e", 4, "StockReserved", "one", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "e", INT64_MAX, "ReservationShipped", "all", INT32_MAX),
                    ES_ERR_OK); /* versions are int64: the largest one is fine, once */
    CU_ASSERT_EQUAL(fold(m, g, "e", INT64_MAX, "Restocked", NULL, 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, g, "e", INT64_MIN, "Restocked", NULL, 1), ES_ERR_STATE);
    assert_view(m, "e",
                "{\"item_id\":\"e\",\"on_hand\":0,\"reserved\":0,\"available\":0,"
                "\"reservations\":[],\"version\":9223372036854775807}");
    CU_ASSERT_EQUAL(fold(m, g, "f", 0, "Restocked", NULL, 1),
                    ES_ERR_STATE); /* versions start at 1 */
    CU_ASSERT_EQUAL(fold(m, g, "f", -1, "Restocked", NULL, 1), ES_ERR_STATE);

    /* at most INV_MAX_OPEN open reservations, as on the write side */
    CU_ASSERT_EQUAL(fold(m, g, "g", 1, "Restocked", NULL, 1000), ES_ERR_OK);
    for (int i = 0; i < INV_MAX_OPEN; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        CU_ASSERT_EQUAL(fold(m, g, "g", 2 + i, "StockReserved", id, 1), ES_ERR_OK);
    }
    CU_ASSERT_EQUAL(fold(m, g, "g", 1000, "StockReserved", "extra", 1), ES_ERR_STATE);
    json_t *body;
    CU_ASSERT_EQUAL_FATAL(inv_query(m, "g", &body), 200);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(body, "reservations")), INV_MAX_OPEN);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "available")), 1000 - INV_MAX_OPEN);
    json_decref(body);
    es_proj_memmap_destroy(m);
    inv_evgen_destroy(g);
}

/* -------------------------------------------------- random streams, a model */

#define M_ITEMS 12
#define M_OPEN  INV_MAX_OPEN

/* The model of one item's view: int64 sums, open reservations in order. */
typedef struct {
    char id[16];
    int64_t version, on_hand, reserved;
    char rid[M_OPEN][16];
    int64_t rqty[M_OPEN];
    int n;
} m_item_t;

static char *m_json(const m_item_t *it)
{
    json_t *res = json_array();
    for (int i = 0; i < it->n; i++)
        json_array_append_new(res, json_pack("{s:s, s:I}", "reservation_id", it->rid[i], "quantity",
                                             (json_int_t)it->rqty[i]));
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:o, s:I}", "item_id", it->id, "on_hand",
                          (json_int_t)it->on_hand, "reserved", (json_int_t)it->reserved,
                          "available", (json_int_t)(it->on_hand - it->reserved), "reservations",
                          res, "version", (json_int_t)it->version);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static void test_random_streams(void)
{
    static const int32_t edges[] = {INT32_MAX, INT32_MAX - 1, 1 << 30, 0, -1};
    uint64_t rng = inv_seed("random streams");
    inv_evgen_t *g = inv_evgen_new();
    es_proj_memmap_t *m = es_proj_memmap_new();
    m_item_t items[M_ITEMS] = {0};
    unsigned long long seq = 0;
    unsigned long ok = 0, refused = 0;

    for (int i = 0; i < M_ITEMS; i++)
        snprintf(items[i].id, sizeof(items[i].id), "item-%d", i);
    for (int step = 0; step < 30000; step++) {
        m_item_t *it = &items[inv_rand(&rng) % M_ITEMS];
        uint64_t r = inv_rand(&rng) % 100;
        const char *type;
        char rid[16] = "";
        int32_t qty;
        int64_t version = it->version + 1 + (int64_t)(inv_rand(&rng) % 2); /* gaps are fine */
        bool want_ok;
        int k = it->n ? (int)(inv_rand(&rng) % (uint64_t)it->n) : -1;
        if (inv_rand(&rng) % 50 == 0)
            version = it->version - (int64_t)(inv_rand(&rng) % 2); /* a replay: refused */

        if (r < 25) {
            type = "Restocked";
            qty = inv_rand(&rng) % 10 == 0 ? edges[inv_rand(&rng) % ES_ARRAY_SIZE(edges)]
                                           : 1 + (int32_t)(inv_rand(&rng) % 100);
            want_ok = qty > 0 && it->on_hand + qty <= INT32_MAX;
        } else if (r < 60) {
            type = "StockReserved";
            snprintf(rid, sizeof(rid), "r%llu", ++seq);
            if (k >= 0 && inv_rand(&rng) % 10 == 0)
                snprintf(rid, sizeof(rid), "%s", it->rid[k]); /* an open id again: refused */
            int64_t avail = it->on_hand - it->reserved;
            qty = avail > 0 && inv_rand(&rng) % 4 ? 1 + (int32_t)(inv_rand(&rng) % (uint64_t)avail)
                                                  : 1 + (int32_t)(inv_rand(&rng) % 50);
            bool dup = false;
            for (int i = 0; i < it->n; i++)
                dup |= !strcmp(it->rid[i], rid);
            want_ok = !dup && it->n < M_OPEN && it->reserved + qty <= it->on_hand;
        } else {
            type = r < 80 ? "ReservationReleased" : "ReservationShipped";
            if (k < 0 || inv_rand(&rng) % 10 == 0) {
                snprintf(rid, sizeof(rid), "none%llu", ++seq); /* not open: refused */
                qty = 1;
                want_ok = false;
            } else {
                snprintf(rid, sizeof(rid), "%s", it->rid[k]);
                bool wrong = inv_rand(&rng) % 10 == 0; /* another quantity: refused */
                qty = (int32_t)it->rqty[k] + (wrong ? 1 : 0);
                want_ok = !wrong;
            }
        }
        if (version <= it->version)
            want_ok = false;

        es_err_t err = fold(m, g, it->id, version, type, rid, qty);
        if ((err == ES_ERR_OK) != want_ok) {
            printf("\n  step %d: %s %s %s %d v%lld: %s, the model says %s\n", step, it->id, type,
                   rid, qty, (long long)version, err ? errstr : "folded",
                   want_ok ? "fold" : "refuse");
            CU_FAIL("the fold disagrees with the model");
            break;
        }
        if (!want_ok) {
            refused++;
            continue;
        }
        ok++;
        it->version = version;
        if (!strcmp(type, "Restocked")) {
            it->on_hand += qty;
        } else if (!strcmp(type, "StockReserved")) {
            snprintf(it->rid[it->n], sizeof(it->rid[0]), "%s", rid);
            it->rqty[it->n++] = qty;
            it->reserved += qty;
        } else {
            it->reserved -= qty;
            if (type[11] == 'S') /* ReservationShipped */
                it->on_hand -= qty;
            memmove(&it->rid[k], &it->rid[k + 1], (size_t)(it->n - k - 1) * sizeof(it->rid[0]));
            memmove(&it->rqty[k], &it->rqty[k + 1], (size_t)(it->n - k - 1) * sizeof(it->rqty[0]));
            it->n--;
        }
        if (step % 97 == 0 || step > 29900) {
            char *want = m_json(it);
            assert_view(m, it->id, want);
            free(want);
        }
    }
    for (int i = 0; i < M_ITEMS; i++) {
        if (!items[i].version)
            continue;
        char *want = m_json(&items[i]);
        assert_view(m, items[i].id, want);
        free(want);
    }
    printf("  folded %lu, refused %lu\n", ok, refused);
    CU_ASSERT_TRUE(ok > 10000 && refused > 1000);
    es_proj_memmap_destroy(m);
    inv_evgen_destroy(g);
}

int main(void)
{
    static const inv_case_t cases[] = {
        {"fold and query", test_fold_and_query},
        {"stored layout", test_stored_layout},
        {"events the fold refuses", test_refused_events},
        {"int32 and int64 edges, bounded reservations", test_int_edges},
        {"random streams against a model", test_random_streams},
        {NULL, NULL},
    };
    return inv_test_run("stock_view", cases);
}
