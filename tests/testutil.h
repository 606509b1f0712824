/*
 * testutil.h — what every escqrs test shares: a CUnit runner that returns the
 * failure count as the exit code, the addresses of the test stack, and unique
 * names so reruns never collide with earlier data on the broker.
 */
#ifndef ESCQRS_TESTUTIL_H
#define ESCQRS_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stddef.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} es_test_case_t;

/** @brief Run @p cases (ended by {NULL, NULL}) as one suite; returns the exit code. */
int es_test_run(const char *suite, const es_test_case_t *cases);

/** @brief Bootstrap servers of the test stack (ESCQRS_TEST_BOOTSTRAP, default 127.0.0.1:19092). */
const char *es_test_bootstrap(void);
/** @brief ccompat base URL of the test registry (ESCQRS_TEST_REGISTRY). */
const char *es_test_registry(void);
/** @brief "<prefix>-<pid>-<time>": a name no earlier run used. */
void es_test_unique(const char *prefix, char *out, size_t outsz);

#endif
