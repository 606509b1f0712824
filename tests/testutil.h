/*
 * testutil.h — what every escqrs test shares: a CUnit runner that returns the
 * failure count as the exit code, the addresses of the test stack, unique
 * names so reruns never collide with earlier data on the broker, and string
 * assertions that survive a missing JSON field.
 */
#ifndef ESCQRS_TESTUTIL_H
#define ESCQRS_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stdbool.h>
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

/* ------------------------------------------------------- string checks */

/**
 * @brief Assert that string @p actual equals @p expected.  Either may be NULL
 *        (json_string_value() of a missing field): NULL equals only NULL, and
 *        a failure names both expressions and prints both values instead of
 *        crashing in strcmp as CU_ASSERT_STRING_EQUAL does.
 */
#define ES_ASSERT_STR_EQ(actual, expected)                                                         \
    es_test_assert_str_eq((actual), (expected), #actual, #expected, __LINE__, __FILE__, CU_FALSE)
/** @brief ES_ASSERT_STR_EQ() that ends the test case when it fails. */
#define ES_ASSERT_STR_EQ_FATAL(actual, expected)                                                   \
    es_test_assert_str_eq((actual), (expected), #actual, #expected, __LINE__, __FILE__, CU_TRUE)

CU_BOOL es_test_assert_str_eq(const char *actual, const char *expected, const char *actual_expr,
                              const char *expected_expr, unsigned line, const char *file,
                              CU_BOOL fatal);

/** @brief @p a and @p b are both non-NULL and equal (for conditions, not assertions). */
bool es_test_str_eq(const char *a, const char *b);
/** @brief @p s, or "" when it is NULL (copying a JSON field that may be missing). */
const char *es_test_or_empty(const char *s);

#endif
