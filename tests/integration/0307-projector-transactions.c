/*
 * 0307-projector-transactions.c — the projector reads events written in
 * Kafka transactions, as the command service writes them.
 *
 * 30 transactions of 150 cart events over 3 partitions; every third one is
 * aborted and holds only "ghost" carts that no committed event touches.  The
 * projector (read_committed) must apply exactly the committed events: its
 * cart_view and item_stats stores answer as the independent model
 * (viewmodel.h) of them and hold no other view, no ghost cart is visible,
 * nothing went to the DLQ (aborted records are not poison), and the stored
 * offsets reach the end of every partition although its last record is a
 * transaction marker (lag 0).  A projector killed with -9 halfway and
 * restarted still ends at the same views.
 */
#include "cart.h"
#include "readtest.h"
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TXNS       30
#define TXN_EVENTS 150

static void produce_transactions(rt_topic_t *cart, es_evgen_t *g, const char *prefix,
                                 size_t *committed, char ghost_id[64])
{
    es_sim_t live, ghost;
    char pfx[200];
    snprintf(pfx, sizeof(pfx), "%s-c", prefix);
    es_sim_init(&live, pfx, 7, 64);
    snprintf(pfx, sizeof(pfx), "%s-ghost", prefix);
    es_sim_init(&ghost, pfx, 11, 64);
    *committed = 0;
    for (int t = 0; t < TXNS; t++) {
        bool commit = t % 3 != 2;
        es_sim_t *sim = commit ? &live : &ghost;
        rt_txn_begin(cart);
        for (int i = 0; i < TXN_EVENTS; i++) {
            const char *id;
            avro_value_t *v = es_sim_next(sim, g, 0, &id);
            rt_produce(cart, id, v);
            if (!commit && !ghost_id[0])
                snprintf(ghost_id, 64, "%s", id);
        }
        rt_txn_end(cart, commit);
        *committed += commit ? TXN_EVENTS : 0;
    }
    es_sim_free(&live);
    es_sim_free(&ghost);
}

static void test_transactions(void)
{
    char prefix[128], agg[200], root[300], pfx[200], path[400], txn_id[200];
    char ghost_id[64] = "";
    es_conf_t *conf = rt_conf(3);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view,item_stats"};
    size_t committed = 0, applied = 0;

    es_test_unique("it0307", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    snprintf(txn_id, sizeof(txn_id), "%s-writer", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    rt_topic_transactional(&cart, conf, txn_id);

    /* a projector already running while the transactions are written, killed halfway */
    rt_proc_start(&proc, root, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    produce_transactions(&cart, g, prefix, &committed, ghost_id);
    rt_proc_kill9(&proc);
    rt_proc_start(&proc, root, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 60000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "item_stats", 60000));

    json_t *b = NULL;
    snprintf(path, sizeof(path), "/v1/carts/%s", ghost_id);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, &b), 404);
    json_decref(b);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/admin/projections", &b), 200);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(b, "projections"), i, p)
    {
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(p, "lag")), 0);
    }
    json_decref(b);
    CU_ASSERT_EQUAL(rt_metric(&proc, "escqrs_projector_dlq_total{projection=\"cart_view\"}"), 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_cart_view, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, committed);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_item_stats, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, committed);
    rt_dlq_rec_t *dlq = NULL;
    CU_ASSERT_EQUAL(rt_dlq_read(conf, agg, "projector", &dlq), 0);
    free(dlq);
    printf("\n  %zu committed and %zu aborted events; applied %zu\n", committed,
           (size_t)TXNS * TXN_EVENTS - committed, applied);

    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"committed transactions are applied once, aborted ones never", test_transactions},
        {NULL, NULL},
    };
    return es_test_run("0307-projector-transactions", cases);
}
