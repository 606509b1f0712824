/*
 * fixture.c — tiny domain modules for tests/unit/test_module.c, one source
 * built several times (tests/CMakeLists.txt):
 *   FIXTURE_GOOD     module test_good: aggregate test_thing, projection
 *                    test_view, schema test_good.events
 *   FIXTURE_NOENTRY  a shared object without the entry point
 *   FIXTURE_MAJOR    test_good built against the next major SDK version
 *   FIXTURE_MINOR    test_good built against the next minor SDK version
 *   FIXTURE_DUP      module test_dup whose aggregate is named test_thing too
 */
#include "escqrs/module.h"

#include <stddef.h>

#ifdef FIXTURE_NOENTRY
int fixture_not_a_module(void);
int fixture_not_a_module(void)
{
    return 0;
}
#else

#if defined(FIXTURE_MAJOR)
#define FIXTURE_VERSION (ES_SDK_VERSION + (1 << 16))
#elif defined(FIXTURE_MINOR)
#define FIXTURE_VERSION (ES_SDK_VERSION + (1 << 8))
#else
#define FIXTURE_VERSION ES_SDK_VERSION
#endif
#ifdef FIXTURE_DUP
#define FIXTURE_NAME "test_dup"
#else
#define FIXTURE_NAME "test_good"
#endif

static const es_aggregate_def_t thing = {.name = "test_thing"};
static const es_aggregate_def_t *const aggregates[] = {&thing, NULL};
#ifndef FIXTURE_DUP
static const es_proj_def_t view = {.name = "test_view"};
static const es_proj_def_t *const projections[] = {&view, NULL};
#else
static const es_proj_def_t *const projections[] = {NULL};
#endif
static const es_module_schema_t schemas[] = {
#ifndef FIXTURE_DUP
    {"test_good.events", "{\"type\": \"record\", \"name\": \"Thing\", \"fields\": []}"},
#endif
    {NULL, NULL}};

static const es_module_t fixture = {
    .sdk_version = FIXTURE_VERSION,
    .name = FIXTURE_NAME,
    .description = "a test fixture",
    .aggregates = aggregates,
    .projections = projections,
    .schemas = schemas,
};
ES_MODULE_DEFINE(fixture)
#endif
