/*
 * 0202-write-concurrency.c — parallel withdrawals from one account never
 * overdraw it.
 *
 * 16 clients withdraw in parallel, 20 times each, amounts that add up to far
 * more than the balance.  Afterwards: every answer is 200 or 422
 * insufficient_funds; the events topic holds exactly one Withdrawn per 200
 * (and none for a 422), the account's versions are 1..n without gaps, the
 * running balance folded from the log never goes below zero and ends at
 * deposits − the accepted withdrawals, which is below every rejected amount
 * (so nothing was refused that fit).  The service's own state agrees: the
 * final balance can be withdrawn exactly, and then not a cent more.
 */
#include "testutil.h"
#include "writetest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENTS 16
#define EACH    20
#define DEPOSIT 20000

typedef struct {
    char key[160];
    int64_t amount;
    int status;
    char reason[64];
} ans_t;

static wt_stack_t st;
static ans_t answers[CLIENTS][EACH];

static void *client(void *arg)
{
    int c = (int)(intptr_t)arg;
    char body[64];
    for (int i = 0; i < EACH; i++) {
        ans_t *a = &answers[c][i];
        json_t *j = NULL;
        a->amount = 100 + 37 * c + i; /* all different, 100..674 */
        snprintf(a->key, sizeof(a->key), "%sw-%d-%d", st.prefix, c, i);
        snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)a->amount);
        a->status =
            wt_post(&st.gw, "/v1/accounts/shared/withdraw", body, strlen(body), a->key, NULL, &j);
        const char *r = json_string_value(json_object_get(j, "reason"));
        snprintf(a->reason, sizeof(a->reason), "%s", r ? r : "");
        json_decref(j);
    }
    return NULL;
}

static int post(const char *path, const char *body)
{
    return wt_post(&st.gw, path, body, strlen(body), NULL, NULL, NULL);
}

static void test_parallel_withdrawals(void)
{
    pthread_t th[CLIENTS];
    char body[64];
    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);

    CU_ASSERT_EQUAL_FATAL(post("/v1/accounts/shared/open", "{\"owner\":\"many\"}"), 200);
    snprintf(body, sizeof(body), "{\"amount_cents\":%d}", DEPOSIT);
    CU_ASSERT_EQUAL_FATAL(post("/v1/accounts/shared/deposit", body), 200);

    for (int c = 0; c < CLIENTS; c++)
        pthread_create(&th[c], NULL, client, (void *)(intptr_t)c);
    for (int c = 0; c < CLIENTS; c++)
        pthread_join(th[c], NULL);

    int64_t accepted_sum = 0, min_rejected = INT64_MAX;
    size_t accepted = 0, rejected = 0;
    for (int c = 0; c < CLIENTS; c++)
        for (int i = 0; i < EACH; i++) {
            ans_t *a = &answers[c][i];
            if (a->status == 200) {
                accepted++;
                accepted_sum += a->amount;
            } else {
                CU_ASSERT_EQUAL(a->status, 422);
                ES_ASSERT_STR_EQ(a->reason, "insufficient_funds");
                rejected++;
                if (a->amount < min_rejected)
                    min_rejected = a->amount;
            }
        }
    printf("\n  %zu withdrawals accepted (%lld cents), %zu rejected\n", accepted,
           (long long)accepted_sum, rejected);
    CU_ASSERT(accepted > 0 && rejected > 0);
    int64_t final = DEPOSIT - accepted_sum;
    CU_ASSERT(final >= 0);
    CU_ASSERT(final < min_rejected); /* nothing refused that fitted at the end */

    /* the service agrees: exactly the final balance, then nothing */
    if (final > 0) {
        snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long) final + 1);
        CU_ASSERT_EQUAL(post("/v1/accounts/shared/withdraw", body), 422);
        snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long) final);
        CU_ASSERT_EQUAL(post("/v1/accounts/shared/withdraw", body), 200);
    }
    CU_ASSERT_EQUAL(post("/v1/accounts/shared/withdraw", "{\"amount_cents\":1}"), 422);
    wt_stack_stop(&st);

    /* the log */
    size_t n = 0;
    wt_event_t *evs = wt_read_events(&st, &n);
    int64_t balance = 0, version = 0;
    size_t withdrawn = 0;
    bool never_negative = true, gapless = true;
    for (size_t k = 0; k < n; k++) {
        ES_ASSERT_STR_EQ(evs[k].agg_id, "shared");
        gapless &= evs[k].version == ++version;
        if (!strcmp(evs[k].type, "Deposited"))
            balance += evs[k].amount;
        if (!strcmp(evs[k].type, "Withdrawn")) {
            balance -= evs[k].amount;
            withdrawn++;
        }
        never_negative &= balance >= 0;
    }
    CU_ASSERT(gapless);
    CU_ASSERT(never_negative);
    CU_ASSERT_EQUAL(balance, 0);
    CU_ASSERT_EQUAL(withdrawn, accepted + (final > 0 ? 1 : 0));
    CU_ASSERT_EQUAL(n, 2 + withdrawn);
    for (int c = 0; c < CLIENTS; c++)
        for (int i = 0; i < EACH; i++) {
            size_t found = 0;
            for (size_t k = 0; k < n; k++)
                if (!strcmp(evs[k].command_id, answers[c][i].key)) {
                    found++;
                    CU_ASSERT_EQUAL(evs[k].amount, answers[c][i].amount);
                }
            CU_ASSERT_EQUAL(found, answers[c][i].status == 200 ? 1u : 0u);
        }
    free(evs);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"parallel withdrawals never overdraw", test_parallel_withdrawals},
        {NULL, NULL},
    };
    return es_test_run("write-concurrency", cases);
}
