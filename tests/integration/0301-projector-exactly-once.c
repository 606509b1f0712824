/*
 * 0301-projector-exactly-once.c — kill -9 never loses or repeats an event.
 *
 * 24 rounds: start escqrs-projector while more cart and account events
 * arrive in chunks (60 000 in all over four partitions), kill -9 it at a
 * random chunk (often mid-batch, sometimes still starting), then
 * open its stores and compare every view key, byte for byte, with an
 * in-memory fold of exactly the events below the offsets stored in the same
 * store (an event applied twice or lost shows up as a difference; cart_view
 * also refuses a repeated version, which would land in the DLQ).  Finally a
 * clean run must catch up, answer every cart, account and the item stats as
 * the workload's own model says, be ready, and have sent nothing to the DLQ.
 */
#include "projections.h"
#include "readtest.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUNDS         24
#define CART_PER_ROUND 2200
#define ACCT_PER_ROUND 300
#define NACCOUNTS      200
#define PARTITIONS     4

static int64_t acct_bal[NACCOUNTS], acct_ver[NACCOUNTS];

/* kills the projector after a delay, from its own thread, while events flow */
typedef struct {
    rt_proc_t *proc;
    useconds_t delay_us;
    bool after_up; /* count the delay from the first /healthz answer */
    atomic_size_t *produced;
    size_t produced_at_kill;
    bool was_alive;
} killer_t;

static void *killer(void *arg)
{
    killer_t *k = arg;
    if (k->after_up)
        rt_wait_up(k->proc, 30000);
    usleep(k->delay_us);
    k->was_alive = rt_proc_alive(k->proc);
    k->produced_at_kill = atomic_load(k->produced);
    rt_proc_kill9(k->proc);
    return NULL;
}

static void produce_accounts(rt_topic_t *tp, es_evgen_t *g, const char *prefix, uint64_t *rng,
                             int n)
{
    char id[200], owner[64];
    for (int k = 0; k < n; k++) {
        int i = (int)(es_sim_rand(rng) % NACCOUNTS);
        snprintf(id, sizeof(id), "%s-acc-%d", prefix, i);
        if (acct_ver[i] == 0) {
            snprintf(owner, sizeof(owner), "owner-%d", i);
            rt_produce(tp, id,
                       es_evgen_account(g, id, ++acct_ver[i], 0, "AccountOpened", owner, 0));
            continue;
        }
        int64_t amt = 1 + (int64_t)(es_sim_rand(rng) % 500);
        bool wd = es_sim_rand(rng) % 3 == 0 && amt <= acct_bal[i];
        rt_produce(
            tp, id,
            es_evgen_account(g, id, ++acct_ver[i], 0, wd ? "Withdrawn" : "Deposited", NULL, amt));
        acct_bal[i] += wd ? -amt : amt;
    }
}

static void test_kill9_rounds(void)
{
    char prefix[128], agg[160], root[300];
    es_conf_t *conf = rt_conf(PARTITIONS);
    rt_topic_t cart, acct;
    es_evgen_t *cg = es_evgen_new("cart.events"), *ag = es_evgen_new("account.events");
    es_sim_t sim;
    uint64_t rng = (uint64_t)getpid() * 2654435761u + 1;
    rt_proc_t proc = {0};
    /* small fsync'ed batches: many batch boundaries to die at, and a projector
     * slow enough that most kills land while it is still catching up */
    const char *sets[] = {"batch.max.events=10", "store.sync=true", "log.level=warn"};
    int midstream = 0;

    es_test_unique("it0301", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    snprintf(agg, sizeof(agg), "%s.account", prefix);
    rt_topic_init(&acct, conf, agg, "account.events");
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    snprintf(agg, sizeof(agg), "%s.", prefix);
    es_sim_init(&sim, prefix, rng, 200);

    size_t prev_applied[2] = {0, 0};
    for (int round = 0; round < ROUNDS; round++) {
        const char *id;
        /* the projector runs while events arrive in chunks; it dies at a
         * random chunk, sometimes still starting, usually mid-batch */
        rt_proc_start(&proc, root, agg, sets, 3);
        atomic_size_t produced = cart.n;
        /* most kills while it works, one in six while it is starting */
        bool after_up = es_sim_rand(&rng) % 6 != 0;
        killer_t k = {.proc = &proc,
                      .delay_us = (useconds_t)(es_sim_rand(&rng) % (after_up ? 700 : 1500)) * 1000,
                      .after_up = after_up,
                      .produced = &produced};
        pthread_t th;
        pthread_create(&th, NULL, killer, &k);
        for (int chunk = 0; chunk < CART_PER_ROUND / 50; chunk++) {
            for (int i = 0; i < 50; i++) {
                avro_value_t *v = es_sim_next(&sim, cg, 0, &id);
                rt_produce(&cart, id, v);
            }
            if (chunk % 6 == 0)
                produce_accounts(&acct, ag, prefix, &rng, ACCT_PER_ROUND / 7);
            rt_topic_flush(&cart);
            atomic_store(&produced, cart.n);
        }
        pthread_join(th, NULL);
        CU_ASSERT_TRUE(k.was_alive);
        size_t produced_at_kill = k.produced_at_kill;
        rt_topic_flush(&acct);

        size_t applied[3];
        size_t d0 = rt_compare_store(root, &es_proj_cart_view, &cart, &applied[0]);
        size_t d1 = rt_compare_store(root, &es_proj_item_stats, &cart, &applied[1]);
        size_t d2 = rt_compare_store(root, &es_proj_account_balance, &acct, &applied[2]);
        CU_ASSERT_EQUAL(d0, 0);
        CU_ASSERT_EQUAL(d1, 0);
        CU_ASSERT_EQUAL(d2, 0);
        /* a projection made progress in this run and died with work pending */
        bool mid = false;
        for (int p = 0; p < 2; p++) {
            mid |= applied[p] > prev_applied[p] && applied[p] < produced_at_kill;
            prev_applied[p] = applied[p];
        }
        midstream += mid;
        fprintf(stderr,
                "round %2d: killed with cart_view %zu/%zu (%zu at the kill), item_stats %zu, "
                "account_balance %zu/%zu applied; diffs %zu %zu %zu%s\n",
                round, applied[0], cart.n, produced_at_kill, applied[1], applied[2], acct.n, d0, d1,
                d2, mid ? " (mid-stream)" : "");
    }
    fprintf(stderr, "%d of %d kills landed mid-stream\n", midstream, ROUNDS);
    CU_ASSERT_TRUE(midstream >= ROUNDS / 2);

    /* a clean run: caught up, answers as the model says, nothing in the DLQ */
    rt_proc_start(&proc, root, agg, NULL, 0);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 120000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "item_stats", 120000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "account_balance", 120000));
    int wrong = 0;
    for (size_t i = 0; i < sim.ncarts; i++) {
        char path[300];
        json_t *body = NULL;
        snprintf(path, sizeof(path), "/v1/carts/%s", sim.carts[i].id);
        int st = rt_http(&proc, "GET", path, &body);
        if (sim.carts[i].version == 0) {
            wrong += st != 404;
        } else {
            char *js = es_sim_cart_json(&sim, i);
            json_t *want = json_loads(js, 0, NULL);
            if (st != 200 || !json_equal(body, want)) {
                if (wrong < 3)
                    fprintf(stderr, "cart %s: %d, want %s\n", sim.carts[i].id, st, js);
                wrong++;
            }
            json_decref(want);
            free(js);
        }
        json_decref(body);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    for (int i = 0; i < NACCOUNTS; i++) {
        char path[300];
        json_t *body = NULL;
        snprintf(path, sizeof(path), "/v1/accounts/%s-acc-%d", prefix, i);
        int st = rt_http(&proc, "GET", path, &body);
        if (acct_ver[i] == 0) {
            CU_ASSERT_EQUAL(st, 404);
        } else {
            CU_ASSERT_EQUAL(st, 200);
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "balance_cents")),
                            acct_bal[i]);
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "version")), acct_ver[i]);
        }
        json_decref(body);
    }
    json_t *stats = NULL;
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/v1/stats/items?top=1000", &stats), 200);
    json_t *items = json_object_get(stats, "items");
    CU_ASSERT_EQUAL(json_array_size(items), ES_SIM_SKUS);
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        int k = (int)strtol(json_string_value(json_object_get(it, "sku")) + 4, NULL, 10);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "added")), sim.stats[k][0]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "removed")), sim.stats[k][1]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "checked_out")), sim.stats[k][2]);
    }
    json_decref(stats);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/readyz", NULL), 200);
    json_t *m = NULL;
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/admin/projections", &m), 200);
    json_decref(m);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    /* nothing was poison, so nothing may be in the DLQs */
    rt_dlq_rec_t *dlq = NULL;
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    CU_ASSERT_EQUAL(rt_dlq_read(conf, agg, "projector", &dlq), 0);
    free(dlq);
    snprintf(agg, sizeof(agg), "%s.account", prefix);
    CU_ASSERT_EQUAL(rt_dlq_read(conf, agg, "projector", &dlq), 0);
    free(dlq);

    size_t applied;
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_cart_view, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_account_balance, &acct, &applied), 0);
    CU_ASSERT_EQUAL(applied, acct.n);

    es_sim_free(&sim);
    rt_topic_free(&cart);
    rt_topic_free(&acct);
    es_evgen_destroy(cg);
    es_evgen_destroy(ag);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"kill -9 at random moments never loses or repeats an event", test_kill9_rounds},
        {NULL, NULL},
    };
    return es_test_run("0301-projector-exactly-once", cases);
}
