/*
 * test_inventory_module.c — escqrs-inventory.so as the stock programs see it: dlopen, the
 * entry point ES_MODULE_ENTRY_SYMBOL, and what it returns (the SDK version it
 * was built with, its name, the NULL-terminated lists, schemas that parse
 * and carry the envelope fields the command service and gateway rely on).
 */
#include "invtest.h"

#include <dlfcn.h>
#include <string.h>

static void test_entry_point(void)
{
    void *so = dlopen(INVENTORY_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!so)
        fprintf(stderr, "dlopen: %s\n", dlerror());
    CU_ASSERT_PTR_NOT_NULL_FATAL(so);
    es_module_entry_fn entry = NULL;
    *(void **)&entry = dlsym(so, ES_MODULE_ENTRY_SYMBOL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(entry);
    const es_module_t *m = entry();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->sdk_version, ES_SDK_VERSION);
    INV_ASSERT_STR_EQ(m->name, "inventory");
    CU_ASSERT_PTR_NOT_NULL(m->description);

    CU_ASSERT_PTR_NOT_NULL_FATAL(m->aggregates);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m->aggregates[0]);
    CU_ASSERT_PTR_NULL(m->aggregates[1]);
    const es_aggregate_def_t *a = m->aggregates[0];
    INV_ASSERT_STR_EQ(a->name, "inventory");
    INV_ASSERT_STR_EQ(a->id_field, "item_id");
    INV_ASSERT_STR_EQ(a->collection, "inventory");
    INV_ASSERT_STR_EQ(a->commands_schema, "inventory.commands");
    INV_ASSERT_STR_EQ(a->events_schema, "inventory.events");
    CU_ASSERT_EQUAL(a->ncommands, 4);
    CU_ASSERT_EQUAL(a->state_size, sizeof(inventory_state_t));

    CU_ASSERT_PTR_NOT_NULL_FATAL(m->projections);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m->projections[0]);
    CU_ASSERT_PTR_NULL(m->projections[1]);
    INV_ASSERT_STR_EQ(m->projections[0]->name, "stock_view");
    INV_ASSERT_STR_EQ(m->projections[0]->queries[0].pattern, "/v1/inventory/{id}");

    /* both schemas, each parses and has the envelope of the shipped ones */
    static const char *const cmd_fields[] = {
        "command_id", "item_id",   "issued_at",   "expected_version", "correlation_id",
        "payload",    "principal", "traceparent", "tracestate",       NULL};
    static const char *const ev_fields[] = {
        "event_id", "item_id",   "version",     "occurred_at", "command_id", "correlation_id",
        "payload",  "principal", "traceparent", "tracestate",  NULL};
    size_t n = 0;
    for (const es_module_schema_t *s = m->schemas; s->name; s++, n++) {
        avro_schema_t schema;
        CU_ASSERT_EQUAL_FATAL(avro_schema_from_json_length(s->text, strlen(s->text), &schema), 0);
        bool events = !strcmp(s->name, "inventory.events");
        CU_ASSERT_TRUE(events || !strcmp(s->name, "inventory.commands"));
        const char *const *want = events ? ev_fields : cmd_fields;
        for (size_t i = 0; want[i]; i++) {
            CU_ASSERT_EQUAL(avro_schema_record_field_get_index(schema, want[i]), (int)i);
        }
        CU_ASSERT_EQUAL(avro_typeof(avro_schema_record_field_get(schema, "payload")), AVRO_UNION);
        avro_schema_decref(schema);
    }
    CU_ASSERT_EQUAL(n, 2);
    dlclose(so);
}

int main(void)
{
    static const inv_case_t cases[] = {
        {"entry point of escqrs-inventory.so", test_entry_point},
        {NULL, NULL},
    };
    return inv_test_run("module", cases);
}
