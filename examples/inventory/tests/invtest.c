/*
 * invtest.c — see invtest.h.
 */
#include "invtest.h"

#include <CUnit/Basic.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int inv_test_run(const char *suite, const inv_case_t *cases)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    for (const inv_case_t *c = cases; c->name; c++)
        CU_add_test(s, c->name, c->fn);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "%s: no test ran\n", suite);
        return 1;
    }
    return failed ? 1 : 0;
}

void inv_assert_str_eq(const char *actual, const char *expected, const char *expr, unsigned line,
                       const char *file)
{
    bool ok = actual && expected ? !strcmp(actual, expected) : actual == expected;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s is \"%s\", expected \"%s\"", expr, actual ? actual : "(null)",
             expected ? expected : "(null)");
    CU_assertImplementation(ok, line, msg, file, "", CU_FALSE);
}

uint64_t inv_rand(uint64_t *state)
{
    uint64_t x = *state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

uint64_t inv_seed(const char *test)
{
    const char *env = getenv("INVENTORY_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    if (!seed)
        seed = 1; /* xorshift stays at 0 */
    printf("\n  %s: seed %llu (INVENTORY_TEST_SEED=%llu repeats it)\n", test,
           (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

avro_schema_t inv_schema(const char *name)
{
    avro_schema_t schema = NULL;
    for (const es_module_schema_t *s = inventory_schemas; s->name; s++)
        if (!strcmp(s->name, name) &&
            avro_schema_from_json_length(s->text, strlen(s->text), &schema))
            schema = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(schema);
    return schema;
}

/* ------------------------------------------------ decide-then-evolve harness */

void inv_h_init(inv_h_t *h)
{
    char errstr[256];
    memset(h, 0, sizeof(*h));
    h->state = es_calloc(1, inventory_aggregate.state_size);
    /* es_emitter_new() finds "inventory.events" among the registered modules' schemas, as
     * in the programs that load the module */
    if (es_module_register(&inventory_module, errstr, sizeof(errstr)))
        fprintf(stderr, "es_module_register: %s\n", errstr);
    h->em = es_emitter_new(inventory_aggregate.events_schema, errstr, sizeof(errstr));
    if (!h->em)
        fprintf(stderr, "es_emitter_new: %s\n", errstr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h->em);
    h->commands = inv_schema(inventory_aggregate.commands_schema);
    h->iface = avro_generic_class_from_schema(avro_schema_record_field_get(h->commands, "payload"));
    avro_generic_value_new(h->iface, &h->holder);
}

void inv_h_free(inv_h_t *h)
{
    avro_value_decref(&h->holder);
    avro_value_iface_decref(h->iface);
    avro_schema_decref(h->commands);
    es_emitter_destroy(h->em);
    free(h->state);
}

avro_value_t *inv_h_command(inv_h_t *h, const char *type)
{
    avro_schema_t u = avro_value_get_schema(&h->holder);
    avro_value_reset(&h->holder);
    for (size_t b = 0; b < avro_schema_union_size(u); b++) {
        if (!strcmp(avro_schema_name(avro_schema_union_branch(u, (int)b)), type)) {
            avro_value_set_branch(&h->holder, (int)b, &h->payload);
            h->type = type;
            return &h->payload;
        }
    }
    CU_FAIL_FATAL("no such command type");
    return NULL;
}

void inv_set_string(avro_value_t *rec, const char *field, const char *v)
{
    avro_value_t f;
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(rec, field, &f, NULL), 0);
    avro_value_set_string(&f, v);
}

void inv_set_int(avro_value_t *rec, const char *field, int32_t v)
{
    avro_value_t f;
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(rec, field, &f, NULL), 0);
    avro_value_set_int(&f, v);
}

const char *inv_h_run(inv_h_t *h)
{
    char errstr[256];
    es_emitter_reset(h->em);
    const char *reason = inventory_aggregate.decide(h->state, h->type, &h->payload, h->em);
    if (reason) {
        CU_ASSERT_EQUAL(es_emitter_count(h->em), 0); /* a rejection writes no event */
        return reason;
    }
    for (size_t i = 0; i < es_emitter_count(h->em); i++) {
        const char *type;
        avro_value_t *ev = es_emitter_event(h->em, i, &type);
        es_err_t err = inventory_aggregate.evolve(h->state, type, ev, errstr, sizeof(errstr));
        if (err)
            fprintf(stderr, "evolve %s: %s\n", type, errstr);
        CU_ASSERT_EQUAL(err, ES_ERR_OK);
    }
    /* the state survives the store: encode, decode, same bytes */
    es_buf_t a = {0}, b = {0};
    void *copy = es_calloc(1, inventory_aggregate.state_size);
    inventory_aggregate.state_encode(h->state, &a);
    CU_ASSERT_EQUAL(inventory_aggregate.state_decode(copy, a.data, a.len), ES_ERR_OK);
    inventory_aggregate.state_encode(copy, &b);
    CU_ASSERT_TRUE(a.len == b.len && !memcmp(a.data, b.data, a.len));
    free(copy);
    es_buf_free(&a);
    es_buf_free(&b);
    return NULL;
}

size_t inv_h_nevents(inv_h_t *h)
{
    return es_emitter_count(h->em);
}

const char *inv_h_event_type(inv_h_t *h, size_t i)
{
    const char *type = "";
    es_emitter_event(h->em, i, &type);
    return type;
}

int32_t inv_h_event_int(inv_h_t *h, size_t i, const char *field)
{
    const char *type;
    char errstr[128];
    int32_t v = -1;
    avro_value_t *ev = es_emitter_event(h->em, i, &type);
    if (ev && es_record_int(ev, field, &v, errstr, sizeof(errstr)))
        v = -1;
    return v;
}

const char *inv_h_event_string(inv_h_t *h, size_t i, const char *field)
{
    const char *type, *s = "";
    char errstr[128];
    avro_value_t *ev = es_emitter_event(h->em, i, &type);
    if (ev && es_record_string(ev, field, &s, NULL, errstr, sizeof(errstr)))
        s = "";
    return s;
}

const char *inv_restock(inv_h_t *h, int32_t qty)
{
    inv_set_int(inv_h_command(h, "Restock"), "quantity", qty);
    return inv_h_run(h);
}

const char *inv_reserve(inv_h_t *h, const char *rid, int32_t qty)
{
    avro_value_t *c = inv_h_command(h, "Reserve");
    inv_set_string(c, "reservation_id", rid);
    inv_set_int(c, "quantity", qty);
    return inv_h_run(h);
}

const char *inv_release(inv_h_t *h, const char *rid)
{
    inv_set_string(inv_h_command(h, "Release"), "reservation_id", rid);
    return inv_h_run(h);
}

const char *inv_ship(inv_h_t *h, const char *rid)
{
    inv_set_string(inv_h_command(h, "Ship"), "reservation_id", rid);
    return inv_h_run(h);
}

/* ----------------------------------------------------- events and folds */

struct inv_evgen_s {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value, payload;
    unsigned long long seq;
};

inv_evgen_t *inv_evgen_new(void)
{
    inv_evgen_t *g = es_calloc(1, sizeof(*g));
    g->schema = inv_schema("inventory.events");
    g->iface = avro_generic_class_from_schema(g->schema);
    avro_generic_value_new(g->iface, &g->value);
    return g;
}

void inv_evgen_destroy(inv_evgen_t *g)
{
    if (!g)
        return;
    avro_value_decref(&g->value);
    avro_value_iface_decref(g->iface);
    avro_schema_decref(g->schema);
    free(g);
}

static void set_long(avro_value_t *rec, const char *field, int64_t v)
{
    avro_value_t f;
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(rec, field, &f, NULL), 0);
    avro_value_set_long(&f, v);
}

avro_value_t *inv_event(inv_evgen_t *g, const char *item_id, int64_t version, const char *type,
                        const char *rid, int32_t qty)
{
    char uuid[64];
    avro_value_t f, b, p;
    snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012llx", ++g->seq);
    avro_value_reset(&g->value);
    inv_set_string(&g->value, "event_id", uuid);
    inv_set_string(&g->value, "item_id", item_id);
    set_long(&g->value, "version", version);
    set_long(&g->value, "occurred_at", 1700000000000LL);
    inv_set_string(&g->value, "command_id", uuid);
    avro_value_get_by_name(&g->value, "correlation_id", &f, NULL);
    avro_value_set_branch(&f, 0, &b);
    avro_value_set_null(&b);
    static const char *const nulls[] = {"principal", "traceparent", "tracestate"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
        avro_value_get_by_name(&g->value, nulls[i], &f, NULL);
        avro_value_set_branch(&f, 0, &b);
        avro_value_set_null(&b);
    }
    avro_value_get_by_name(&g->value, "payload", &p, NULL);
    avro_schema_t u = avro_value_get_schema(&p);
    for (size_t i = 0; i < avro_schema_union_size(u); i++) {
        if (strcmp(avro_schema_name(avro_schema_union_branch(u, (int)i)), type))
            continue;
        avro_value_set_branch(&p, (int)i, &g->payload);
        if (strcmp(type, "Restocked"))
            inv_set_string(&g->payload, "reservation_id", rid);
        inv_set_int(&g->payload, "quantity", qty);
        return &g->value;
    }
    CU_FAIL_FATAL("no such event type");
    return NULL;
}

avro_value_t *inv_event_payload(inv_evgen_t *g)
{
    return &g->payload;
}

es_err_t inv_fold(es_proj_memmap_t *map, avro_value_t *value, char *errstr, size_t errstr_size)
{
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    es_proj_event_t ev = {.topic = "inventory.events", .value = value};
    es_proj_txn_begin_event(txn);
    es_err_t err = inventory_stock_view.fold(0, &ev, txn, errstr, errstr_size);
    if (err)
        es_proj_txn_rollback_event(txn);
    else
        es_proj_txn_commit_event(txn);
    es_proj_txn_store_into(txn, map);
    es_proj_txn_destroy(txn);
    es_proj_reader_destroy(rd);
    return err;
}

static const char *no_query(void *opaque, const char *name)
{
    return NULL;
}

int inv_query(es_proj_memmap_t *map, const char *id, json_t **body)
{
    char errstr[256];
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    const char *params[1] = {id};
    es_proj_query_req_t req = {.params = params, .nparams = 1, .query = no_query};
    *body = NULL;
    int status = inventory_stock_view.queries[0].handle(rd, &req, body, errstr, sizeof(errstr));
    es_proj_reader_destroy(rd);
    return status;
}
