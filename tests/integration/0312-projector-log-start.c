/*
 * 0312-projector-log-start.c — a log that no longer starts at offset 0.
 *
 * A projector with an empty store starts every partition at offset 0 itself
 * (consumer.c, start_offset: not librdkafka's logical "beginning", which a
 * new client resolves up to 500 ms late).  When the log's start has moved
 * (DeleteRecords here; a retention or tiering policy in production), the
 * broker answers "out of range" and the consumer must go on from the log's
 * first record: not halt, not stall, not skip what is there.
 *
 * Two generations of carts over 3 partitions; the first is deleted
 * (DeleteRecords up to the second's first offset in each partition).  A
 * projector on an empty store must reach the end of every partition and
 * hold exactly the independent model (viewmodel.h) of the second
 * generation: none of the deleted carts, nothing sent to the DLQ.
 */
#include "cart.h"
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <sys/stat.h>

#define GENERATION_EVENTS 1500

static void produce_generation(rt_topic_t *cart, es_evgen_t *g, const char *prefix, int seed)
{
    es_sim_t sim;
    es_sim_init(&sim, prefix, seed, 48);
    rt_produce_sim(cart, &sim, g, GENERATION_EVENTS);
    rt_topic_flush(cart);
    es_sim_free(&sim);
}

static void test_log_start_moved(void)
{
    char prefix[128], agg[200], root[300], pfx[200], sim_pfx[200];
    es_conf_t *conf = rt_conf(3);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view,item_stats"};
    size_t applied = 0;

    es_test_unique("it0312", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");

    snprintf(sim_pfx, sizeof(sim_pfx), "%s-old", prefix);
    produce_generation(&cart, g, sim_pfx, 5);
    size_t old_n = cart.n;
    snprintf(sim_pfx, sizeof(sim_pfx), "%s-new", prefix);
    produce_generation(&cart, g, sim_pfx, 9);

    int64_t start[3] = {-1, -1, -1}; /* each partition's first record of the new generation */
    for (size_t i = old_n; i < cart.n; i++) {
        int p = cart.recs[i].partition;
        if (start[p] < 0 || cart.recs[i].offset < start[p])
            start[p] = cart.recs[i].offset;
    }
    for (int p = 0; p < 3; p++) {
        CU_ASSERT_TRUE_FATAL(start[p] > 0); /* every partition holds both generations */
    }
    rt_delete_records(&cart, start);

    rt_proc_start(&proc, root, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 60000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "item_stats", 60000));
    CU_ASSERT_EQUAL(rt_metric(&proc, "escqrs_projector_dlq_total{projection=\"cart_view\"}"), 0);
    CU_ASSERT_EQUAL(rt_metric(&proc, "escqrs_projector_dlq_total{projection=\"item_stats\"}"), 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    /* the views are the model of the records still in the log, and of nothing else */
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_cart_view, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n - old_n);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_item_stats, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n - old_n);
    printf("\n  log starts at %lld / %lld / %lld; %zu events deleted, %zu applied\n",
           (long long)start[0], (long long)start[1], (long long)start[2], old_n, applied);

    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"an empty store starts at the log's first record, wherever it is", test_log_start_moved},
        {NULL, NULL},
    };
    return es_test_run("0312-projector-log-start", cases);
}
