/*
 * test_projection_item_stats.c — per-sku counters and top N, checked against
 * the random workload's own tally of added, removed and checked-out units.
 */
#include "eventgen.h"
#include "cart.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static char errstr[512];

typedef struct {
    const char *top, *by;
} args_t;

static const char *q(void *opaque, const char *name)
{
    args_t *a = opaque;
    if (strcmp(name, "top") == 0)
        return a->top;
    if (strcmp(name, "by") == 0)
        return a->by;
    return NULL;
}

static int top(es_proj_memmap_t *m, const char *n, const char *by, json_t **out)
{
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    args_t a = {n, by};
    es_proj_query_req_t req = {.query = q, .query_opaque = &a};
    *out = NULL;
    int st = es_proj_item_stats.queries[0].handle(rd, &req, out, errstr, sizeof(errstr));
    es_proj_reader_destroy(rd);
    return st;
}

/* Fold one cart event into m with generator g (both in scope); it must end with @p want. */
#define FOLD_AS(want, ...)                                                                         \
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_item_stats, m, es_evgen_cart(g, __VA_ARGS__), errstr,   \
                                  sizeof(errstr)),                                                 \
                    want)
/* ... and it must apply. */
#define FOLD(...) FOLD_AS(ES_ERR_OK, __VA_ARGS__)

static void test_counts_and_checkout(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;
    FOLD("a", 1, 1, "ItemAdded", "x", 3, 10);
    FOLD("a", 2, 1, "ItemAdded", "y", 1, 10);
    FOLD("b", 1, 1, "ItemAdded", "x", 2, 10);
    FOLD("a", 3, 1, "ItemRemoved", "x", 1, 0);
    FOLD("a", 4, 1, "CartCheckedOut", NULL, 0, 30);
    CU_ASSERT_EQUAL_FATAL(top(m, "5", NULL, &body), 200);
    json_t *want = json_loads(
        "{\"by\":\"added\",\"items\":[{\"sku\":\"x\",\"added\":5,\"removed\":1,\"checked_out\":2},"
        "{\"sku\":\"y\",\"added\":1,\"removed\":0,\"checked_out\":1}]}",
        0, NULL);
    CU_ASSERT_TRUE(json_equal(body, want));
    json_decref(body);
    json_decref(want);
    CU_ASSERT_EQUAL_FATAL(top(m, "1", "removed", &body), 200);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(body, "items")), 1);
    json_decref(body);
    CU_ASSERT_EQUAL(top(m, "0", NULL, &body), 400);
    json_decref(body);
    CU_ASSERT_EQUAL(top(m, "3", "price", &body), 400);
    json_decref(body);
    /* removing what the cart never held is refused and changes nothing */
    FOLD_AS(ES_ERR_STATE, "b", 2, 1, "ItemRemoved", "y", 1, 0);
    CU_ASSERT_EQUAL_FATAL(top(m, "5", "removed", &body), 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(
                        json_array_get(json_object_get(body, "items"), 1), "removed")),
                    0);
    json_decref(body);
    /* the stored layout the header documents: "s/<sku>" holds three big-endian u64 */
    static const unsigned char x_counters[24] = {[7] = 5, [15] = 1, [23] = 2};
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_buf_t val = {0};
    CU_ASSERT_EQUAL(es_proj_reader_get(rd, "s/x", 3, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(val.len, sizeof(x_counters));
    CU_ASSERT(val.len == sizeof(x_counters) && !memcmp(val.data, x_counters, val.len));
    es_buf_free(&val);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/* The added, removed and checked-out counts of @p sku as "a/r/c", into @p out. */
static void counts_of(es_proj_memmap_t *m, const char *sku, char *out, size_t outsz)
{
    json_t *body, *row;
    size_t i;
    snprintf(out, outsz, "none");
    CU_ASSERT_EQUAL_FATAL(top(m, "1000", NULL, &body), 200);
    json_array_foreach(json_object_get(body, "items"), i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "sku")), sku) == 0)
            snprintf(out, outsz, "%lld/%lld/%lld",
                     (long long)json_integer_value(json_object_get(row, "added")),
                     (long long)json_integer_value(json_object_get(row, "removed")),
                     (long long)json_integer_value(json_object_get(row, "checked_out")));
    }
    json_decref(body);
}

/*
 * An event written to the topic twice (a dead letter produced again, a mirrored
 * copy), or one of an older version, is refused as cart_view refuses it (a
 * version that does not grow, any event after checkout), so nothing is counted
 * twice: the counts stay those of the events once, with the refused ones between
 * them.
 */
static void test_duplicates_refused(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    char got[64];
    FOLD("d", 1, 1, "ItemAdded", "x", 3, 10);
    FOLD_AS(ES_ERR_STATE, "d", 1, 1, "ItemAdded", "x", 3, 10); /* the same event again */
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "version 1 not after 1"));
    FOLD("d", 2, 1, "ItemRemoved", "x", 1, 0);
    FOLD_AS(ES_ERR_STATE, "d", 2, 1, "ItemRemoved", "x", 1, 0);
    FOLD_AS(ES_ERR_STATE, "d", 1, 1, "ItemAdded", "x", 3, 10); /* older */
    FOLD("d", 5, 1, "ItemAdded", "x", 1, 10);                  /* a gap is no duplicate */
    counts_of(m, "x", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "4/1/0");
    FOLD("d", 6, 1, "CartCheckedOut", NULL, 0, 30);
    FOLD_AS(ES_ERR_STATE, "d", 6, 1, "CartCheckedOut", NULL, 0, 30);
    FOLD_AS(ES_ERR_STATE, "d", 7, 1, "CartCheckedOut", NULL, 0, 30);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "CartCheckedOut after checkout"));
    FOLD_AS(ES_ERR_STATE, "d", 7, 1, "ItemAdded", "x", 2, 10);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "ItemAdded after checkout"));
    counts_of(m, "x", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "4/1/3");
    /* a cart emptied by its removals keeps its version and no line: n 0, version 2, open */
    FOLD("e", 1, 1, "ItemAdded", "y", 2, 10);
    FOLD("e", 2, 1, "ItemRemoved", "y", 2, 0);
    FOLD_AS(ES_ERR_STATE, "e", 1, 1, "ItemAdded", "y", 2, 10);
    counts_of(m, "y", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "2/2/0");
    static const unsigned char emptied[16] = {[11] = 2};
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_buf_t val = {0};
    CU_ASSERT_EQUAL(es_proj_reader_get(rd, "k/e", 3, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT(val.len == sizeof(emptied) && !memcmp(val.data, emptied, sizeof(emptied)));
    es_buf_free(&val);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * The types' edges: a cart's line may hold INT32_MAX units and no more (as cart_view and
 * the write side say), and a sku's counter stops at INT64_MAX, the largest integer of the
 * JSON answer: the event that would pass either is refused naming the limit and counts
 * nothing, and the answer shows the counter exactly.
 */
static void test_limits(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    char got[96];
    FOLD("l", 1, 1, "ItemAdded", "x", INT32_MAX - 1, 1);
    FOLD("l", 2, 1, "ItemAdded", "x", 1, 1);
    FOLD_AS(ES_ERR_STATE, "l", 3, 1, "ItemAdded", "x", 1, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "the quantity would pass 2147483647"));
    counts_of(m, "x", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "2147483647/0/0");
    /* an added counter two short of INT64_MAX: 1 more fits, 2 more do not */
    static const unsigned char near_top[24] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd};
    es_proj_memmap_put(m, "s/z", 3, near_top, sizeof(near_top));
    FOLD("t", 1, 1, "ItemAdded", "z", 1, 1);
    FOLD_AS(ES_ERR_STATE, "t", 2, 1, "ItemAdded", "z", 2, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "the counters of z pass 9223372036854775807"));
    counts_of(m, "z", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "9223372036854775806/0/0");
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * A store built before item_stats kept versions holds an open cart's copy as its
 * lines alone: it reads as an open cart of version 0 (any version applies), and
 * the next write adds the version and status.
 */
static void test_copy_without_version(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    char got[64];
    /* one line: sku "x", quantity 2 */
    es_proj_memmap_put(m, "k/old", 5, "\0\0\0\1\0\0\0\1x\0\0\0\0\0\0\0\2", 17);
    FOLD("old", 9, 1, "ItemRemoved", "x", 1, 0);
    FOLD("old", 10, 1, "CartCheckedOut", NULL, 0, 10);
    counts_of(m, "x", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "0/1/1");
    FOLD_AS(ES_ERR_STATE, "old", 10, 1, "CartCheckedOut", NULL, 0, 10);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/* The skus of top-N's answer, comma-separated, into @p out. */
static void top_skus(es_proj_memmap_t *m, const char *n, char *out, size_t outsz)
{
    json_t *body, *row;
    size_t i;
    out[0] = '\0';
    CU_ASSERT_EQUAL_FATAL(top(m, n, NULL, &body), 200);
    json_array_foreach(json_object_get(body, "items"), i, row)
    {
        size_t used = strlen(out);
        snprintf(out + used, outsz - used, "%s%s", i ? "," : "",
                 json_string_value(json_object_get(row, "sku")));
    }
    json_decref(body);
}

/*
 * Top N over more skus than N, folded in no particular order: the best N by count,
 * ties broken by sku (the answer is deterministic), at every N.  Quantities of 0 are
 * refused; a checked-out cart's own copy ("k/<cart_id>") keeps its version and
 * status only.
 */
static void test_top_ties_and_order(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    char got[64];
    const struct {
        const char *sku;
        int32_t qty;
    } adds[] = {{"d", 5}, {"a", 3}, {"c", 5}, {"b", 3}, {"e", 1}, {"f", 9}};
    for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++)
        FOLD("t", (int64_t)i + 1, 1, "ItemAdded", adds[i].sku, adds[i].qty, 1);
    const char *want[] = {"f", "f,c", "f,c,d", "f,c,d,a", "f,c,d,a,b", "f,c,d,a,b,e"};
    char n[4];
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(n, sizeof(n), "%zu", i + 1);
        top_skus(m, n, got, sizeof(got));
        ES_ASSERT_STR_EQ(got, want[i]);
    }
    top_skus(m, "1000", got, sizeof(got));
    ES_ASSERT_STR_EQ(got, "f,c,d,a,b,e");

    FOLD_AS(ES_ERR_STATE, "t", 7, 1, "ItemAdded", "a", 0, 1);
    FOLD_AS(ES_ERR_STATE, "t", 7, 1, "ItemRemoved", "a", 0, 0);
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_buf_t val = {0};
    CU_ASSERT_EQUAL(es_proj_reader_get(rd, "k/t", 3, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    FOLD("t", 7, 1, "CartCheckedOut", NULL, 0, 26);
    /* the layout the header documents: u32 n 0, u64 version 7, u32 status 1 */
    static const unsigned char closed[16] = {[11] = 7, [15] = 1};
    CU_ASSERT_EQUAL(es_proj_reader_get(rd, "k/t", 3, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT(val.len == sizeof(closed) && !memcmp(val.data, closed, sizeof(closed)));
    es_buf_free(&val);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * Partitioned mode's merge of one sku's counters from two partitions: each counter
 * summed; refused for a cart's own copy ("k/": one partition's), for counters cut
 * short on either side, and for a sum past INT64_MAX (the answer's largest integer).
 */
static void test_merge(void)
{
    static const unsigned char a[24] = {[7] = 1, [15] = 2, [23] = 3};
    static const unsigned char b[24] = {[6] = 1, [15] = 20, [23] = 30}; /* added 256 */
    static const unsigned char sum[24] = {[6] = 1, [7] = 1, [15] = 22, [23] = 33};
    unsigned char top[24] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; /* INT64_MAX */
    const char *pa = (const char *)a, *pb = (const char *)b;
    es_buf_t out = {0};
    CU_ASSERT_TRUE_FATAL(es_proj_item_stats.merge("s/x", 3, pa, 24, pb, 24, &out));
    CU_ASSERT(out.len == sizeof(sum) && !memcmp(out.data, sum, sizeof(sum)));
    CU_ASSERT_TRUE(es_proj_item_stats.merge("s/x", 3, pa, 24, pb, 24, &out)); /* out reused */
    CU_ASSERT(out.len == sizeof(sum) && !memcmp(out.data, sum, sizeof(sum)));
    CU_ASSERT_FALSE(es_proj_item_stats.merge("k/c", 3, pa, 24, pb, 24, &out));
    CU_ASSERT_FALSE(es_proj_item_stats.merge("s", 1, pa, 24, pb, 24, &out));
    CU_ASSERT_FALSE(es_proj_item_stats.merge("s/x", 3, pa, 23, pb, 24, &out));
    CU_ASSERT_FALSE(es_proj_item_stats.merge("s/x", 3, pa, 24, pb, 23, &out));
    CU_ASSERT_FALSE(es_proj_item_stats.merge("s/x", 3, (const char *)top, 24, pa, 24, &out));
    top[7] = 0xfe; /* INT64_MAX - 1, and 1 more: INT64_MAX exactly */
    CU_ASSERT_TRUE(es_proj_item_stats.merge("s/x", 3, (const char *)top, 24, pa, 24, &out));
    CU_ASSERT(out.len == 24 && es_be64_get(out.data) == (uint64_t)INT64_MAX);
    es_buf_free(&out);
}

/* Fold @p event onto a store it finds corrupt: a store error that says so. */
static void fold_on_corrupt(es_proj_memmap_t *m, avro_value_t *event)
{
    errstr[0] = '\0';
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_item_stats, m, event, errstr, sizeof(errstr)),
                    ES_ERR_STORE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "corrupt"));
}

/*
 * A stored value that does not decode stops the fold with a store error, not a DLQ
 * event: an open cart's copy ("k/<cart_id>") claiming 2^32 - 1 lines, or one line
 * whose quantity is cut short; a sku's counters ("s/<sku>") cut short, which the
 * top-N query answers with 500.
 */
static void test_corrupt_store(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;
    static const unsigned char many[4] = {0xff, 0xff, 0xff, 0xff};
    const struct {
        const void *bytes;
        size_t len;
    } bad[] = {
        {many, sizeof(many)},
        {"\x00\x00\x00\x01\x00\x00\x00\x01x\x00\x00\x00\x00\x00\x00\x00", 16},
        /* no lines, then a version and status cut short, or one byte past them */
        {"\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0", 15},
        {"\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\0\0", 17},
        /* status 2, version 0, version negative */
        {"\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\2", 16},
        {"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16},
        {"\0\0\0\0\x80\0\0\0\0\0\0\1\0\0\0\0", 16},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        es_proj_memmap_put(m, "k/bad", 5, bad[i].bytes, bad[i].len);
        fold_on_corrupt(m, es_evgen_cart(g, "bad", 2, 1, "ItemAdded", "x", 1, 1));
    }
    FOLD("ok", 1, 1, "ItemAdded", "x", 1, 1);
    CU_ASSERT_EQUAL(top(m, NULL, NULL, &body), 200);
    json_decref(body);
    es_proj_memmap_put(m, "s/x", 3, "\x00\x00\x00\x00\x00\x00\x00\x01", 8);
    fold_on_corrupt(m, es_evgen_cart(g, "ok", 2, 1, "ItemAdded", "x", 1, 1));
    errstr[0] = '\0';
    CU_ASSERT_EQUAL(top(m, NULL, NULL, &body), 500);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "corrupt"));
    CU_ASSERT_PTR_NULL(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * A cart of more lines than the fold keeps on its stack (16), with skus longer
 * than its stack keys (128 bytes): every count as the events say.
 */
static void test_large_cart_long_skus(void)
{
    enum { LINES = 40 };
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    static char sku[LINES][300];
    int version = 1, found = 0;
    json_t *body;
    for (int i = 0; i < LINES; i++) {
        memset(sku[i], 'L', 200);
        snprintf(i % 10 == 9 ? sku[i] + 200 : sku[i], 100, "big-%02d", i);
        FOLD("big", version++, 1, "ItemAdded", sku[i], i + 1, 10);
    }
    for (int i = 0; i < LINES; i += 3) /* one unit off every third line: line 0 goes */
        FOLD("big", version++, 1, "ItemRemoved", sku[i], 1, 0);
    FOLD("big", version++, 1, "CartCheckedOut", NULL, 0, 0);
    CU_ASSERT_EQUAL_FATAL(top(m, "1000", NULL, &body), 200);
    json_t *items = json_object_get(body, "items");
    CU_ASSERT_EQUAL(json_array_size(items), LINES);
    for (size_t k = 0; k < json_array_size(items); k++) {
        json_t *it = json_array_get(items, k);
        for (int i = 0; i < LINES; i++) {
            if (strcmp(json_string_value(json_object_get(it, "sku")), sku[i]) != 0)
                continue;
            int removed = i % 3 == 0;
            found++;
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "added")), i + 1);
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "removed")), removed);
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "checked_out")),
                            i + 1 - removed);
        }
    }
    CU_ASSERT_EQUAL(found, LINES);
    json_decref(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

static void test_random_workload_matches_tally(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    es_sim_t sim;
    const char *id;
    int failures = 0;
    json_t *body;

    es_sim_init(&sim, "rs", 7, 64);
    for (int i = 0; i < 20000; i++) {
        if (es_evgen_fold(&es_proj_item_stats, m, es_sim_next(&sim, g, i, &id), errstr,
                          sizeof(errstr)))
            failures++;
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_EQUAL_FATAL(top(m, "1000", "checked_out", &body), 200);
    json_t *items = json_object_get(body, "items");
    CU_ASSERT_EQUAL(json_array_size(items), ES_SIM_SKUS);
    uint64_t prev = UINT64_MAX;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        int k = (int)strtol(json_string_value(json_object_get(it, "sku")) + 4, NULL, 10);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "added")), sim.stats[k][0]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "removed")), sim.stats[k][1]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "checked_out")), sim.stats[k][2]);
        uint64_t co = (uint64_t)json_integer_value(json_object_get(it, "checked_out"));
        CU_ASSERT_TRUE(co <= prev);
        prev = co;
    }
    json_decref(body);
    es_sim_free(&sim);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a corrupt store: store error, 500", test_corrupt_store},
        {"top N: ties by sku, more skus than N", test_top_ties_and_order},
        {"partitioned mode: counters merged", test_merge},
        {"counts and checkout", test_counts_and_checkout},
        {"an event written twice is counted once", test_duplicates_refused},
        {"a line at INT32_MAX, counters at INT64_MAX", test_limits},
        {"a copy of a cart from before versions were kept", test_copy_without_version},
        {"a cart of 40 lines, some with skus of 206 bytes", test_large_cart_long_skus},
        {"random workload matches the tally", test_random_workload_matches_tally},
        {NULL, NULL},
    };
    return es_test_run("projection_item_stats", cases);
}
