/*
 * 0209-catchup-open-transaction.c — a transaction still open on the events
 * partition when the command service catches up: the service must wait for
 * it, not decide on a store that lacks its events.
 *
 * Why: a read_committed reader's end of partition is the last stable offset.
 * A previous owner's last transaction (committed, its markers not written
 * yet) or a zombie's sits after it; its records may still commit.  The
 * catch-up took that end for the end: the service was ready on a store
 * without those events, decided the next command at a version the log
 * already had, and its next store write moved the stored offset past them
 * for good.
 *
 * The stand-in for the other owner is a transactional producer of the
 * test's own: account a1 is opened and given deposits up to version 5
 * directly, the service decides one deposit (version 6) and stops, the
 * outside producer writes a deposit at version 7 in a transaction and leaves
 * it open, and the service starts again.  Once its catch-up says it waits
 * for the transaction, /readyz must never say 200 (sampled every 100 ms for
 * 8 s, well within catchup.stall.timeout.ms).  The transaction commits; the service must be
 * ready by itself, a deposit with If-Match 7 must be accepted at version 8
 * (a service that missed the outside event answers 409: it holds 6), and
 * a1's events in the log must be versions 1..8, each once.
 */
#include "eventgen.h"
#include "readtest.h"
#include "testutil.h"
#include "writetest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAMPLE_MS 8000

static void produce_opening(rt_topic_t *tp, es_evgen_t *g)
{
    rt_produce(tp, "a1", es_evgen_account(g, "a1", 1, 0, "AccountOpened", "o", 0));
    for (int v = 2; v <= 5; v++)
        rt_produce(tp, "a1", es_evgen_account(g, "a1", v, 0, "Deposited", NULL, 100));
    rt_topic_flush(tp);
}

static void test_open_transaction(void)
{
    wt_stack_t st;
    rt_topic_t tp, outside;
    char agg[200], txn_id[200];
    es_conf_t *conf = rt_conf(3); /* the service's topics.partitions: keys land alike */
    es_evgen_t *g = es_evgen_new("account.events");
    json_t *ans = NULL;

    wt_stack_init(&st, "account");
    snprintf(agg, sizeof(agg), "%saccount", st.prefix);
    rt_topic_init(&tp, conf, agg, "account.events");
    produce_opening(&tp, g);
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 90);
    wt_wait_ready(&st.gw, 90);
    CU_ASSERT_EQUAL(
        wt_post(&st.gw, "/v1/accounts/a1/deposit", "{\"amount_cents\":1}", 18, NULL, "5", &ans),
        200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(ans, "version")), 6);
    json_decref(ans);
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);

    /* another owner's transaction, left open */
    rt_topic_init(&outside, conf, agg, "account.events");
    snprintf(txn_id, sizeof(txn_id), "%soutside", st.prefix);
    rt_topic_transactional(&outside, conf, txn_id);
    rt_txn_begin(&outside);
    rt_produce(&outside, "a1", es_evgen_account(g, "a1", 7, 0, "Deposited", NULL, 100));
    rt_topic_flush(&outside);

    wt_start_service(&st, NULL, 0);
    /* the catch-up has met the transaction (start-up may take seconds under ASan) */
    bool waiting = false;
    for (int i = 0; i < 600 && !waiting; i++) {
        waiting = wt_log_line(st.cs.log, "waiting for a transaction still open", NULL, NULL, 0);
        if (!waiting)
            usleep(100 * 1000);
    }
    CU_ASSERT_TRUE(waiting);
    int asked = 0, ready = wt_count_ready(&st.cs, SAMPLE_MS, &asked);
    printf("\n  RESULT /readyz while a transaction was open on the partition: %d of %d said 200\n",
           ready, asked);
    CU_ASSERT_EQUAL(ready, 0);

    rt_txn_end(&outside, true);
    int64_t committed = es_mono_ms();
    wt_wait_ready(&st.cs, 90);
    printf("  RESULT ready %.1f s after the commit\n", (double)(es_mono_ms() - committed) / 1000.0);
    wt_wait_ready(&st.gw, 90);
    ans = NULL;
    int status =
        wt_post(&st.gw, "/v1/accounts/a1/deposit", "{\"amount_cents\":1}", 18, NULL, "7", &ans);
    printf("  RESULT deposit with If-Match 7: %d, version %lld\n", status,
           (long long)json_integer_value(json_object_get(ans, "version")));
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(ans, "version")), 8);
    json_decref(ans);

    wt_assert_versions(&st, "a1", 8); /* the log: a1 at versions 1..8, each once */

    rt_topic_free(&outside);
    rt_topic_free(&tp);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
    wt_stack_stop(&st);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a transaction open on the events partition holds the catch-up until it commits",
         test_open_transaction},
        {NULL, NULL},
    };
    return es_test_run("0209-catchup-open-transaction", cases);
}
