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
 * batches (its per-aggregate counter must carry over).
 */
#include "projector.h"
#include "testutil.h"

#include "escqrs/modules.h"

#include <stdio.h>
#include <string.h>

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

/* Entry @p n of @p id as "<offset>/<raw>", or "none". */
static const char *entry(es_proj_reader_t *rd, const char *id, uint64_t n, char *out, size_t outsz)
{
    es_buf_t buf = {0};
    pj_entry_t e;
    char errstr[256];
    if (pj_entry_get(rd, id, n, &buf, &e, errstr, sizeof(errstr)) == ES_ERR_OK)
        snprintf(out, outsz, "%d:%lld@%lld/%.*s", (int)e.partition, (long long)e.offset,
                 (long long)e.timestamp_ms, (int)e.rawlen, e.raw);
    else
        snprintf(out, outsz, "none");
    es_buf_free(&buf);
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
