/*
 * test_projector_history.c — the built-in history and audit folds
 * (consumers/projector/history.c) without a broker: what they store, under
 * which keys, and what they refuse.
 *
 * A module with one aggregate `thing` (collection `things`) is registered in
 * process; its `thing_history` and `thing_commands` definitions fold
 * records built here into an in-memory map, and the entries are read back
 * with the same functions the queries and as_of use.  Adversarial cases: an
 * id that is a prefix of another, versions out of range, keys the layout
 * cannot hold, entries that are not entries, an audit spread over several
 * batches (its per-aggregate counter must carry over).  Pages: versions
 * missing in the middle and at the start (events that went to the DLQ) must
 * be passed over, never taken for the end of the history, over the three
 * backings a page is read from (memory, a RocksDB store, a partition's
 * slice of one).
 */
#include "projector.h"
#include "testutil.h"

#include "escqrs/modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEMA_JSON                                                                                \
    "{\"type\":\"record\",\"name\":\"ThingEvent\",\"fields\":[{\"name\":\"version\",\"type\":"     \
    "\"long\"}]}"
static const char *const schema_json = SCHEMA_JSON;
static const es_module_schema_t schemas[] = {{"thing.events", SCHEMA_JSON}, {NULL, NULL}};

static const es_aggregate_def_t thing = {
    .name = "thing", .collection = "things", .events_schema = "thing.events"};
static const es_aggregate_def_t *const aggregates[] = {&thing, NULL};
static const es_proj_def_t *const no_projections[] = {NULL};

static avro_schema_t schema;
static avro_value_iface_t *iface;

/* Fold one record of @p id at @p version (@p offset) into @p txn in an event scope. */
static es_err_t fold(const es_proj_def_t *def, es_proj_txn_t *txn, const char *id, size_t idlen,
                     int64_t version, int64_t offset)
{
    avro_value_t v, f;
    char raw[64], errstr[256];
    avro_generic_value_new(iface, &v);
    avro_value_get_by_name(&v, "version", &f, NULL);
    avro_value_set_long(&f, version);
    int n = snprintf(raw, sizeof(raw), "raw-%.*s-%lld", (int)(idlen > 8 ? 8 : idlen), id,
                     (long long)offset);
    pj_record_t rec = {.ev = {.topic = "thing.events",
                              .partition = 2,
                              .offset = offset,
                              .timestamp_ms = 1000 + offset,
                              .key = id,
                              .keylen = idlen,
                              .value = &v},
                       .raw = raw,
                       .rawlen = (size_t)n};
    es_proj_txn_begin_event(txn);
    es_err_t err = pj_builtin_fold(def, &rec, txn, errstr, sizeof(errstr));
    if (err)
        es_proj_txn_rollback_event(txn);
    else
        es_proj_txn_commit_event(txn);
    avro_value_decref(&v);
    return err;
}

/* What a one-entry page found: the entry numbered n, if that is the first one. */
typedef struct one_s {
    uint64_t n;
    char *out;
    size_t outsz;
} one_t;

static es_err_t one_cb(void *opaque, uint64_t n, const pj_entry_t *e, char *errstr,
                       size_t errstr_size)
{
    one_t *o = opaque;
    (void)errstr;
    (void)errstr_size;
    if (n == o->n)
        snprintf(o->out, o->outsz, "%d:%lld@%lld/%.*s", (int)e->partition, (long long)e->offset,
                 (long long)e->timestamp_ms, (int)e->rawlen, e->raw);
    return ES_ERR_OK;
}

/* Entry @p n of @p id, read as a page of one that starts at it ("none": no such entry). */
static const char *entry(es_proj_reader_t *rd, const char *id, uint64_t n, char *out, size_t outsz)
{
    one_t o = {.n = n, .out = out, .outsz = outsz};
    uint64_t next = 0;
    char errstr[256];
    snprintf(out, outsz, "none");
    es_err_t err = pj_entry_page(rd, id, n, 1, one_cb, &o, &next, errstr, sizeof(errstr));
    CU_ASSERT(err == ES_ERR_OK || err == ES_ERR_NOT_FOUND);
    return out;
}

static bool count_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    (void)key, (void)keylen, (void)val, (void)vallen;
    (*(int *)opaque)++;
    return true;
}

static void test_history(void)
{
    const es_proj_def_t *def = pj_builtin_find("thing_history");
    CU_ASSERT_PTR_NOT_NULL_FATAL(def);
    CU_ASSERT_EQUAL(pj_builtin_kind(def), PJ_BUILTIN_HISTORY);
    ES_ASSERT_STR_EQ(def->queries[0].pattern, "/v1/things/{id}/events");
    es_proj_memmap_t *map = es_proj_memmap_new();
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    char buf[200];

    CU_ASSERT_EQUAL(fold(def, txn, "a", 1, 1, 10), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(def, txn, "ab", 2, 1, 11), ES_ERR_OK); /* "a" is a prefix of "ab" */
    CU_ASSERT_EQUAL(fold(def, txn, "a", 1, 2, 12), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(def, txn, "a", 1, INT64_MAX, 13), ES_ERR_OK);
    /* refused, and nothing of them written */
    CU_ASSERT_EQUAL(fold(def, txn, "a", 1, 0, 14), ES_ERR_DECODE);
    CU_ASSERT_EQUAL(fold(def, txn, "a", 1, -1, 15), ES_ERR_DECODE);
    CU_ASSERT_EQUAL(fold(def, txn, "", 0, 1, 16), ES_ERR_DECODE);
    CU_ASSERT_EQUAL(fold(def, txn, "a\0b", 3, 1, 17), ES_ERR_DECODE);
    char big[600];
    memset(big, 'x', sizeof(big));
    CU_ASSERT_EQUAL(fold(def, txn, big, sizeof(big), 1, 18), ES_ERR_DECODE);
    CU_ASSERT_EQUAL(es_proj_txn_count(txn), 4);
    es_proj_txn_store_into(txn, map);
    es_proj_txn_clear(txn);

    ES_ASSERT_STR_EQ(entry(rd, "a", 1, buf, sizeof(buf)), "2:10@1010/raw-a-10");
    ES_ASSERT_STR_EQ(entry(rd, "a", 2, buf, sizeof(buf)), "2:12@1012/raw-a-12");
    ES_ASSERT_STR_EQ(entry(rd, "a", 3, buf, sizeof(buf)), "none");
    ES_ASSERT_STR_EQ(entry(rd, "a", INT64_MAX, buf, sizeof(buf)), "2:13@1013/raw-a-13");
    ES_ASSERT_STR_EQ(entry(rd, "ab", 1, buf, sizeof(buf)), "2:11@1011/raw-ab-11");
    ES_ASSERT_STR_EQ(entry(rd, "b", 1, buf, sizeof(buf)), "none");
    int n = 0;
    char errstr[256];
    CU_ASSERT_EQUAL(es_proj_reader_scan(rd, "a", 2, count_cb, &n, errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(n, 3); /* a's entries only, not ab's: the 0x00 after the id */

    es_proj_txn_destroy(txn);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(map);
}

static void test_audit(void)
{
    const es_proj_def_t *def = pj_builtin_find("thing_commands");
    CU_ASSERT_PTR_NOT_NULL_FATAL(def);
    CU_ASSERT_EQUAL(pj_builtin_kind(def), PJ_BUILTIN_AUDIT);
    ES_ASSERT_STR_EQ(def->schemas[0], "command-result");
    ES_ASSERT_STR_EQ(def->queries[0].pattern, "/v1/things/{id}/commands");
    es_proj_memmap_t *map = es_proj_memmap_new();
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    char buf[200];

    /* three batches: the per-aggregate count carries over from the store */
    int64_t off = 100;
    for (int batch = 0; batch < 3; batch++) {
        CU_ASSERT_EQUAL(fold(def, txn, "x", 1, 1, off++), ES_ERR_OK);
        if (batch != 1)
            CU_ASSERT_EQUAL(fold(def, txn, "y", 1, 1, off++), ES_ERR_OK);
        CU_ASSERT_EQUAL(fold(def, txn, "", 0, 1, off++), ES_ERR_DECODE);
        es_proj_txn_store_into(txn, map);
        es_proj_txn_clear(txn);
    }
    ES_ASSERT_STR_EQ(entry(rd, "x", 1, buf, sizeof(buf)), "2:100@1100/raw-x-100");
    ES_ASSERT_STR_EQ(entry(rd, "x", 2, buf, sizeof(buf)), "2:103@1103/raw-x-103");
    ES_ASSERT_STR_EQ(entry(rd, "x", 3, buf, sizeof(buf)), "2:105@1105/raw-x-105");
    ES_ASSERT_STR_EQ(entry(rd, "x", 4, buf, sizeof(buf)), "none");
    ES_ASSERT_STR_EQ(entry(rd, "y", 1, buf, sizeof(buf)), "2:101@1101/raw-y-101");
    ES_ASSERT_STR_EQ(entry(rd, "y", 2, buf, sizeof(buf)), "2:106@1106/raw-y-106");
    ES_ASSERT_STR_EQ(entry(rd, "y", 3, buf, sizeof(buf)), "none");
    CU_ASSERT_EQUAL(es_proj_memmap_count(map), 7); /* 5 entries, 2 counters */

    es_proj_txn_destroy(txn);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(map);
}

/* ------------------------------------------------------------------ pages */

#define NUMBERS_MAX 160 /* a page's numbers as text; a page's description fits 200 bytes */

/* Each entry's number appended to the NUMBERS_MAX-byte string at @p opaque, comma-separated. */
static es_err_t page_number_cb(void *opaque, uint64_t n, const pj_entry_t *e, char *errstr,
                               size_t errstr_size)
{
    char *out = opaque;
    size_t len = strlen(out);
    (void)e, (void)errstr, (void)errstr_size;
    snprintf(out + len, NUMBERS_MAX - len, "%s%llu", len ? "," : "", (unsigned long long)n);
    return ES_ERR_OK;
}

/* A page of @p id as "<numbers> next <n>", or "404". */
static const char *page(es_proj_reader_t *rd, const char *id, uint64_t from, size_t limit,
                        char *out)
{
    char numbers[NUMBERS_MAX] = "", errstr[120];
    uint64_t next = 99;
    es_err_t err =
        pj_entry_page(rd, id, from, limit, page_number_cb, numbers, &next, errstr, sizeof(errstr));
    if (err == ES_ERR_NOT_FOUND)
        snprintf(out, 200, "404");
    else if (err)
        snprintf(out, 200, "error %d: %s", (int)err, errstr);
    else
        snprintf(out, 200, "%s next %llu", numbers, (unsigned long long)next);
    return out;
}

static bool copy_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    void **to = opaque; /* {batch, slice prefix or NULL} */
    es_buf_t k = {0};
    if (to[1])
        es_buf_set(&k, to[1], PJ_SLICE_PREFIX_LEN);
    es_buf_append(&k, key, keylen);
    es_batch_put(to[0], k.data, k.len, val, vallen);
    es_buf_free(&k);
    return true;
}

/* The same pages whatever the backing. */
static void check_pages(es_proj_reader_t *rd, const char *backing)
{
    char b[200];
    printf("\n    pages over %s", backing);
    ES_ASSERT_STR_EQ(page(rd, "a", 1, 3, b), "1,2,3 next 5"); /* 4 went to the DLQ */
    ES_ASSERT_STR_EQ(page(rd, "a", 1, 4, b), "1,2,3,5 next 6");
    ES_ASSERT_STR_EQ(page(rd, "a", 4, 2, b), "5,6 next 7");
    ES_ASSERT_STR_EQ(page(rd, "a", 5, 3, b), "5,6,7 next 9");
    ES_ASSERT_STR_EQ(page(rd, "a", 8, 100, b), "9 next 0");
    ES_ASSERT_STR_EQ(page(rd, "a", 1, 1000, b), "1,2,3,5,6,7,9 next 0");
    ES_ASSERT_STR_EQ(page(rd, "a", 10, 5, b), " next 0"); /* past the end: empty, not 404 */
    ES_ASSERT_STR_EQ(page(rd, "a", INT64_MAX, 5, b), " next 0");
    ES_ASSERT_STR_EQ(page(rd, "ab", 1, 100, b), "1 next 0");  /* not a's */
    ES_ASSERT_STR_EQ(page(rd, "c", 1, 100, b), "2,3 next 0"); /* version 1 in the DLQ */
    ES_ASSERT_STR_EQ(page(rd, "c", 1, 1, b), "2 next 3");
    ES_ASSERT_STR_EQ(page(rd, "c", 5, 1, b), " next 0");
    ES_ASSERT_STR_EQ(page(rd, "b", 1, 100, b), "404");
    ES_ASSERT_STR_EQ(page(rd, "b", 7, 100, b), "404");
    ES_ASSERT_STR_EQ(page(rd, "", 1, 100, b), "404");         /* no key can hold it */
    ES_ASSERT_STR_EQ(page(rd, "x", 1, 100, b), "1,2 next 0"); /* the audit's count passed over */
    ES_ASSERT_STR_EQ(page(rd, "x", 2, 100, b), "2 next 0");
}

static void test_pages(void)
{
    const es_proj_def_t *history = pj_builtin_find("thing_history");
    const es_proj_def_t *audit = pj_builtin_find("thing_commands");
    es_proj_memmap_t *map = es_proj_memmap_new();
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    static const int64_t a_versions[] = {1, 2, 3, 5, 6, 7, 9};
    for (size_t i = 0; i < sizeof(a_versions) / sizeof(a_versions[0]); i++)
        CU_ASSERT_EQUAL(fold(history, txn, "a", 1, a_versions[i], 20 + (int64_t)i), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(history, txn, "ab", 2, 1, 30), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(history, txn, "c", 1, 2, 31), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(history, txn, "c", 1, 3, 32), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(audit, txn, "x", 1, 1, 33), ES_ERR_OK); /* seq 1, 2 and the count */
    CU_ASSERT_EQUAL(fold(audit, txn, "x", 1, 1, 34), ES_ERR_OK);
    es_proj_txn_store_into(txn, map);
    es_proj_txn_destroy(txn);
    check_pages(rd, "memory");

    /* a RocksDB store, and a partition's slice of one */
    char dir[] = "/tmp/test_projector_history.XXXXXX", path[64], errstr[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/store", dir);
    static const es_store_opts_t opts = {.block_cache_mb = 8, .write_buffer_mb = 8};
    es_store_t *st = es_store_open(path, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    char slice_prefix[PJ_SLICE_PREFIX_LEN];
    pj_slice_prefix(0, 2, slice_prefix);
    es_batch_t *batch = es_batch_new();
    void *plain[2] = {batch, NULL}, *sliced[2] = {batch, slice_prefix};
    es_proj_reader_scan(rd, "", 0, copy_cb, plain, errstr, sizeof(errstr));
    es_proj_reader_scan(rd, "", 0, copy_cb, sliced, errstr, sizeof(errstr));
    CU_ASSERT_EQUAL_FATAL(es_store_write(st, batch, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(batch);
    es_proj_reader_destroy(rd);

    es_proj_backend_t store_be = pj_store_backend(st);
    rd = es_proj_reader_new(&store_be);
    check_pages(rd, "a store");
    es_proj_reader_destroy(rd);
    pj_slice_t slice;
    es_proj_backend_t slice_be = pj_slice_backend(&slice, st, 0, 2);
    rd = es_proj_reader_new(&slice_be);
    check_pages(rd, "a slice");
    es_proj_reader_destroy(rd);
    pj_slice_done(&slice);

    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(path, errstr, sizeof(errstr)), ES_ERR_OK);
    rmdir(dir);
    es_proj_memmap_destroy(map);
}

static void test_entry_parse(void)
{
    pj_entry_t e;
    CU_ASSERT_FALSE(pj_entry_parse("", 0, &e));
    CU_ASSERT_FALSE(pj_entry_parse("\x01short", 6, &e));
    char v[32] = {0};
    v[0] = 2; /* a format this code does not know */
    CU_ASSERT_FALSE(pj_entry_parse(v, sizeof(v), &e));
    v[0] = 1;
    CU_ASSERT_TRUE(pj_entry_parse(v, 21, &e)); /* header only: an empty value */
    CU_ASSERT_EQUAL(e.rawlen, 0);
    CU_ASSERT_EQUAL(pj_builtin_kind(NULL), PJ_BUILTIN_NONE);
    CU_ASSERT_PTR_NULL(pj_builtin_find("thing_view"));
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"the history keeps each event under its version", test_history},
        {"the audit numbers each aggregate's outcomes across batches", test_audit},
        {"an entry that is not one is refused", test_entry_parse},
        {"a page passes over versions that went to the DLQ", test_pages},
        {NULL, NULL},
    };
    static const es_module_t module = {.sdk_version = ES_SDK_VERSION,
                                       .name = "thing",
                                       .description = "history test",
                                       .aggregates = aggregates,
                                       .projections = no_projections,
                                       .schemas = schemas};
    char errstr[512];
    if (es_modules_add(&module, "test_projector_history", errstr, sizeof(errstr))) {
        fprintf(stderr, "module: %s\n", errstr);
        return 1;
    }
    pj_builtins_define();
    if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema))
        return 1;
    iface = avro_generic_class_from_schema(schema);
    int rc = es_test_run("test_projector_history", cases);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return rc;
}
