/*
 * test_module.c — the module loader and registry (modules.h): a good module
 * loads and its aggregate, projection and schema are found by name; a
 * shared object without the entry point, modules built against another SDK
 * major or a newer minor, and names already taken are refused with the
 * exact messages an operator sees, and leave the registry as it was.  The
 * fixture modules are tests/modules/fixture.c built several ways.
 */
#include "escqrs/modules.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static char errstr[8192];
static char want[8192];

static void test_no_entry_point(void)
{
    size_t before = es_modules_count();
    CU_ASSERT_EQUAL(es_modules_load(TEST_MODULE_NOENTRY, NULL, errstr, sizeof(errstr)),
                    ES_ERR_CONF);
    snprintf(want, sizeof(want),
             "module %s: no escqrs_module_v1 entry point: %s: undefined symbol: escqrs_module_v1",
             TEST_MODULE_NOENTRY, TEST_MODULE_NOENTRY);
    ES_ASSERT_STR_EQ(errstr, want);
    CU_ASSERT_EQUAL(es_modules_count(), before);
}

static void test_other_sdk_versions(void)
{
    size_t before = es_modules_count();
    CU_ASSERT_EQUAL(es_modules_load(TEST_MODULE_MAJOR, NULL, errstr, sizeof(errstr)), ES_ERR_CONF);
    snprintf(want, sizeof(want),
             "module %s (test_good) was built against escqrs SDK %d.%d.%d; this program runs "
             "SDK %d.%d.%d",
             TEST_MODULE_MAJOR, ES_SDK_VERSION_MAJOR + 1, ES_SDK_VERSION_MINOR,
             ES_SDK_VERSION_PATCH, ES_SDK_VERSION_MAJOR, ES_SDK_VERSION_MINOR,
             ES_SDK_VERSION_PATCH);
    ES_ASSERT_STR_EQ(errstr, want);

    CU_ASSERT_EQUAL(es_modules_load(TEST_MODULE_MINOR, NULL, errstr, sizeof(errstr)), ES_ERR_CONF);
    snprintf(want, sizeof(want),
             "module %s (test_good) was built against escqrs SDK %d.%d.%d; this program runs "
             "SDK %d.%d.%d",
             TEST_MODULE_MINOR, ES_SDK_VERSION_MAJOR, ES_SDK_VERSION_MINOR + 1,
             ES_SDK_VERSION_PATCH, ES_SDK_VERSION_MAJOR, ES_SDK_VERSION_MINOR,
             ES_SDK_VERSION_PATCH);
    ES_ASSERT_STR_EQ(errstr, want);
    CU_ASSERT_EQUAL(es_modules_count(), before);
    CU_ASSERT_PTR_NULL(es_modules_aggregate("test_thing"));
}

static void test_missing_file(void)
{
    CU_ASSERT_EQUAL(es_modules_load("nope", "/no/such/dir", errstr, sizeof(errstr)), ES_ERR_IO);
    const char *prefix = "module /no/such/dir/escqrs-nope.so: ";
    CU_ASSERT_EQUAL(strncmp(errstr, prefix, strlen(prefix)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "No such file"));
}

static void test_good_module(void)
{
    size_t before = es_modules_count(), nschemas = es_modules_schema_count();
    CU_ASSERT_EQUAL_FATAL(es_modules_load(TEST_MODULE_GOOD, NULL, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_modules_count(), before + 1);
    const char *path = NULL;
    const es_module_t *m = es_modules_at(before, &path);
    ES_ASSERT_STR_EQ(m->name, "test_good");
    ES_ASSERT_STR_EQ(path, TEST_MODULE_GOOD);
    const es_aggregate_def_t *a = es_modules_aggregate("test_thing");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_EQUAL(es_modules_aggregate_at(es_modules_aggregate_count() - 1), a);
    const es_proj_def_t *p = es_modules_projection("test_view");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_EQUAL(es_modules_projection_at(es_modules_projection_count() - 1), p);
    CU_ASSERT_EQUAL(es_modules_schema_count(), nschemas + 1);

    /* es_schema_text() and es_schema_parse() see module schemas and the library's own */
    CU_ASSERT_PTR_NOT_NULL(es_schema_text("test_good.events"));
    CU_ASSERT_PTR_NOT_NULL(es_schema_text("command-result"));
    avro_schema_t s = NULL;
    CU_ASSERT_EQUAL(es_schema_parse("test_good.events", &s, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_schema_decref(s);
}

static void test_names_taken(void)
{
    size_t before = es_modules_count();
    CU_ASSERT_EQUAL(es_modules_load(TEST_MODULE_GOOD, NULL, errstr, sizeof(errstr)), ES_ERR_CONF);
    snprintf(want, sizeof(want),
             "module %s (test_good): a module named test_good is already loaded from %s",
             TEST_MODULE_GOOD, TEST_MODULE_GOOD);
    ES_ASSERT_STR_EQ(errstr, want);

    CU_ASSERT_EQUAL(es_modules_load(TEST_MODULE_DUP, NULL, errstr, sizeof(errstr)), ES_ERR_CONF);
    snprintf(want, sizeof(want),
             "module %s (test_dup): aggregate test_thing is already defined by module %s "
             "(test_good)",
             TEST_MODULE_DUP, TEST_MODULE_GOOD);
    ES_ASSERT_STR_EQ(errstr, want);

    /* a schema of the library's own, and a name twice in one module */
    static const es_module_schema_t lib[] = {{"command-result", "{}"}, {NULL, NULL}};
    static const es_proj_def_t v1 = {.name = "twice"}, v2 = {.name = "twice"};
    static const es_proj_def_t *const twice[] = {&v1, &v2, NULL};
    es_module_t m = {.sdk_version = ES_SDK_VERSION, .name = "test_static", .schemas = lib};
    CU_ASSERT_EQUAL(es_modules_add(&m, "linked-in", errstr, sizeof(errstr)), ES_ERR_CONF);
    ES_ASSERT_STR_EQ(errstr, "module linked-in (test_static): schema command-result is already "
                             "defined by libescqrs");
    m.schemas = NULL;
    m.projections = twice;
    CU_ASSERT_EQUAL(es_modules_add(&m, "linked-in", errstr, sizeof(errstr)), ES_ERR_CONF);
    ES_ASSERT_STR_EQ(errstr, "module linked-in (test_static): projection twice is defined twice");
    static const es_aggregate_def_t anon = {.name = NULL};
    static const es_aggregate_def_t *const anons[] = {&anon, NULL};
    m.projections = NULL;
    m.aggregates = anons;
    CU_ASSERT_EQUAL(es_modules_add(&m, "linked-in", errstr, sizeof(errstr)), ES_ERR_CONF);
    ES_ASSERT_STR_EQ(errstr, "module linked-in (test_static): aggregate #1 has no name");
    CU_ASSERT_EQUAL(es_modules_count(), before);
    CU_ASSERT_PTR_NULL(es_modules_projection("twice"));
}

static void test_default_dir(void)
{
    char dir[4096];
    es_modules_default_dir(dir, sizeof(dir));
    CU_ASSERT_EQUAL(dir[0], '/');
    const char *tail = "/lib/escqrs/modules";
    CU_ASSERT_TRUE(strlen(dir) > strlen(tail) && !strcmp(dir + strlen(dir) - strlen(tail), tail));
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a shared object without the entry point is refused", test_no_entry_point},
        {"another SDK major, or a newer minor, is refused", test_other_sdk_versions},
        {"a module file that is not there", test_missing_file},
        {"a good module: its aggregate, projection and schema by name", test_good_module},
        {"a name taken twice, or missing", test_names_taken},
        {"the default directory is escqrs/modules beside libescqrs.so", test_default_dir},
        {NULL, NULL},
    };
    return es_test_run("module", cases);
}
