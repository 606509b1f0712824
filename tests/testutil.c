/*
 * testutil.c — shared test runner and test-stack helpers (see testutil.h).
 */
#include "testutil.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int es_test_run(const char *suite, const es_test_case_t *cases)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    for (const es_test_case_t *c = cases; c->name; c++)
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

const char *es_test_bootstrap(void)
{
    const char *v = getenv("ESCQRS_TEST_BOOTSTRAP");
    return v && *v ? v : "127.0.0.1:19092";
}

const char *es_test_registry(void)
{
    const char *v = getenv("ESCQRS_TEST_REGISTRY");
    return v && *v ? v : "http://127.0.0.1:18081/apis/ccompat/v7";
}

void es_test_unique(const char *prefix, char *out, size_t outsz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, outsz, "%s-%d-%lld%03ld", prefix, (int)getpid(), (long long)ts.tv_sec,
             ts.tv_nsec / 1000000);
}

/* ------------------------------------------------------- string checks */

bool es_test_str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

const char *es_test_or_empty(const char *s)
{
    return s ? s : "";
}

CU_BOOL es_test_assert_str_eq(const char *actual, const char *expected, const char *actual_expr,
                              const char *expected_expr, unsigned line, const char *file,
                              CU_BOOL fatal)
{
    bool ok = actual == expected || es_test_str_eq(actual, expected);
    char cond[1024];
    if (ok) {
        snprintf(cond, sizeof(cond), "ES_ASSERT_STR_EQ(%s, %s)", actual_expr, expected_expr);
    } else {
        snprintf(cond, sizeof(cond), "ES_ASSERT_STR_EQ(%s, %s): got %s%.200s%s, want %s%.200s%s",
                 actual_expr, expected_expr, actual ? "\"" : "", actual ? actual : "NULL",
                 actual ? "\"" : "", expected ? "\"" : "", expected ? expected : "NULL",
                 expected ? "\"" : "");
        fprintf(stderr, "\n    %s:%u: %s\n", file, line, cond);
    }
    /* CUnit copies the condition text into its failure record */
    return CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, line, cond, file, "", fatal);
}
