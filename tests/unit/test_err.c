/*
 * test_err.c — the error list yields names and descriptions for every code.
 */
#include "escqrs/err.h"
#include "testutil.h"

#include <string.h>

static void test_names_and_strings(void)
{
    ES_ASSERT_STR_EQ(es_err2name(ES_ERR_OK), "OK");
    ES_ASSERT_STR_EQ(es_err2name(ES_ERR_NOT_FOUND), "NOT_FOUND");
    ES_ASSERT_STR_EQ(es_err2str(ES_ERR_NOT_FOUND), "No such item (an answer, not a failure)");
    ES_ASSERT_STR_EQ(es_err2name((es_err_t)9999), "UNKNOWN");
    ES_ASSERT_STR_EQ(es_err2str((es_err_t)9999), "Unknown error code");
}

static void test_every_code_is_described(void)
{
#define CHECK(name, val, desc)                                                                     \
    CU_ASSERT_EQUAL((int)ES_ERR_##name, val);                                                      \
    ES_ASSERT_STR_EQ(es_err2name(ES_ERR_##name), #name);                                           \
    ES_ASSERT_STR_EQ(es_err2str(ES_ERR_##name), desc);
    ES_ERR_LIST(CHECK)
#undef CHECK
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"names and strings", test_names_and_strings},
        {"every code is described", test_every_code_is_described},
        {NULL, NULL},
    };
    return es_test_run("err", cases);
}
