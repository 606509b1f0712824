/*
 * test_projection_until.c — where a frozen build stops in a partition
 * (es_proj_until_stop): records up to the freeze time are applied, the first
 * later one or the high watermark captured at the start ends the partition.
 */
#include "escqrs/projection.h"
#include "testutil.h"

#include <stddef.h>

/* Replay one partition's timestamps through the decision like the loop does. */
static int64_t final_offset(const int64_t *ts, size_t n, int64_t until, int64_t high,
                            size_t *applied)
{
    *applied = 0;
    for (size_t o = 0; o < n; o++) {
        int64_t stop = es_proj_until_stop((int64_t)o, ts[o], until, high);
        if (stop >= 0)
            return stop;
        (*applied)++;
    }
    return (int64_t)n >= high ? high : -1; /* -1: still waiting for records */
}

static void test_decision(void)
{
    CU_ASSERT_EQUAL(es_proj_until_stop(0, 100, 100, 5), -1); /* equal time belongs */
    CU_ASSERT_EQUAL(es_proj_until_stop(3, 101, 100, 5), 3);  /* first later record */
    CU_ASSERT_EQUAL(es_proj_until_stop(5, 50, 100, 5), 5);   /* past the start's end */
    CU_ASSERT_EQUAL(es_proj_until_stop(9, 50, 100, 5), 5);
    CU_ASSERT_EQUAL(es_proj_until_stop(2, -1, 100, 5), -1); /* no timestamp: applied */
    CU_ASSERT_EQUAL(es_proj_until_stop(0, 1, 0, 0), 0);     /* empty partition */
}

static void test_partitions(void)
{
    size_t applied;
    const int64_t a[] = {10, 20, 30, 40, 50};
    CU_ASSERT_EQUAL(final_offset(a, 5, 30, 5, &applied), 3);
    CU_ASSERT_EQUAL(applied, 3);
    CU_ASSERT_EQUAL(final_offset(a, 5, 9, 5, &applied), 0);
    CU_ASSERT_EQUAL(applied, 0);
    CU_ASSERT_EQUAL(final_offset(a, 5, 1000, 5, &applied), 5);
    CU_ASSERT_EQUAL(applied, 5);
    /* a record arriving after the start (offset 5) is never part of the view */
    const int64_t b[] = {10, 20, 30, 40, 50, 60};
    CU_ASSERT_EQUAL(final_offset(b, 6, 1000, 5, &applied), 5);
    CU_ASSERT_EQUAL(applied, 5);
    /* after the first later record nothing is considered, even an earlier stamp */
    const int64_t c[] = {10, 99, 20};
    CU_ASSERT_EQUAL(final_offset(c, 3, 50, 3, &applied), 1);
    CU_ASSERT_EQUAL(applied, 1);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"one record", test_decision},
        {"a partition", test_partitions},
        {NULL, NULL},
    };
    return es_test_run("projection_until", cases);
}
