/*
 * test_projection_account_balance.c — owner, balance and version per account,
 * and the events the fold refuses (they would go to the DLQ).
 */
#include "eventgen.h"
#include "account.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static char errstr[512];

static const char *noq(void *o, const char *n)
{
    return NULL;
}

static int get(es_proj_memmap_t *m, const char *id, json_t **out)
{
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    const char *params[1] = {id};
    es_proj_query_req_t req = {.params = params, .nparams = 1, .query = noq};
    *out = NULL;
    int st = es_proj_account_balance.queries[0].handle(rd, &req, out, errstr, sizeof(errstr));
    es_proj_reader_destroy(rd);
    return st;
}

static es_err_t fold(es_proj_memmap_t *m, avro_value_t *v)
{
    return es_evgen_fold(&es_proj_account_balance, m, v, errstr, sizeof(errstr));
}

static void test_open_deposit_withdraw(void)
{
    es_evgen_t *g = es_evgen_new("account.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;

    CU_ASSERT_EQUAL(get(m, "acc", &body), 404);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 1, 1, "Deposited", NULL, 5)), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 1, 1, "AccountOpened", "ann", 0)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 2, 1, "Deposited", NULL, 500)), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 3, 1, "Withdrawn", NULL, 120)), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 4, 1, "Withdrawn", NULL, 381)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 3, 1, "Deposited", NULL, 1)), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 4, 1, "AccountOpened", "bob", 0)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL_FATAL(get(m, "acc", &body), 200);
    json_t *want = json_loads("{\"account_id\":\"acc\",\"owner\":\"ann\",\"balance_cents\":380,"
                              "\"version\":3}",
                              0, NULL);
    CU_ASSERT_TRUE(json_equal(body, want));
    json_decref(want);
    json_decref(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

static void test_many_accounts(void)
{
    es_evgen_t *g = es_evgen_new("account.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    int64_t bal[100] = {0}, ver[100] = {0};
    uint64_t rng = 99;
    char id[32];

    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "acc-%d", i);
        CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, id, ++ver[i], 1, "AccountOpened", id, 0)),
                        ES_ERR_OK);
    }
    for (int n = 0; n < 10000; n++) {
        int i = (int)(es_sim_rand(&rng) % 100);
        int64_t amt = 1 + (int64_t)(es_sim_rand(&rng) % 1000);
        bool wd = es_sim_rand(&rng) % 2 && amt <= bal[i];
        snprintf(id, sizeof(id), "acc-%d", i);
        CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, id, ++ver[i], 1, wd ? "Withdrawn" : "Deposited",
                                                 NULL, amt)),
                        ES_ERR_OK);
        bal[i] += wd ? -amt : amt;
    }
    for (int i = 0; i < 100; i++) {
        json_t *body;
        snprintf(id, sizeof(id), "acc-%d", i);
        CU_ASSERT_EQUAL_FATAL(get(m, id, &body), 200);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "balance_cents")), bal[i]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "version")), ver[i]);
        json_decref(body);
    }
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

/*
 * The fold's edges: money of 0 either way is refused, a withdrawal of exactly the
 * balance is not; the stored key is "a/<id>" as the header documents; a stored value
 * that does not decode stops the fold (a store error, not a DLQ event) and answers 500.
 */
static void test_edges_and_corrupt_store(void)
{
    es_evgen_t *g = es_evgen_new("account.events");
    es_proj_memmap_t *m = es_proj_memmap_new();
    json_t *body;
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 1, 1, "AccountOpened", "ann", 0)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 2, 1, "Deposited", NULL, 0)), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 2, 1, "Withdrawn", NULL, 0)), ES_ERR_STATE);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 2, 1, "Deposited", NULL, 10)), ES_ERR_OK);
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "acc", 3, 1, "Withdrawn", NULL, 10)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(get(m, "acc", &body), 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "balance_cents")), 0);
    json_decref(body);

    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_buf_t val = {0};
    CU_ASSERT_EQUAL(es_proj_reader_get(rd, "a/acc", 5, &val, errstr, sizeof(errstr)), ES_ERR_OK);
    es_buf_free(&val);
    es_proj_reader_destroy(rd);

    es_proj_memmap_put(m, "a/bad", 5, "\x00\x00\x00\x09o", 5); /* an owner cut short */
    errstr[0] = '\0';
    CU_ASSERT_EQUAL(fold(m, es_evgen_account(g, "bad", 2, 1, "Deposited", NULL, 1)), ES_ERR_STORE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "corrupt"));
    errstr[0] = '\0';
    CU_ASSERT_EQUAL(get(m, "bad", &body), 500);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "corrupt"));
    CU_ASSERT_PTR_NULL(body);
    es_proj_memmap_destroy(m);
    es_evgen_destroy(g);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"open, deposit, withdraw", test_open_deposit_withdraw},
        {"many accounts", test_many_accounts},
        {"edges and a corrupt stored account", test_edges_and_corrupt_store},
        {NULL, NULL},
    };
    return es_test_run("projection_account_balance", cases);
}
