/*
 * 0301-projector-exactly-once.c — kill -9 never loses or repeats an event.
 *
 * 24 rounds: add cart and account events to the log (60 000 in all over
 * four partitions), start escqrs-projector and kill -9 it — in one round out
 * of six blindly (often while starting), otherwise as soon as the admin API
 * shows part of the backlog applied (then 0-3 ms later, anywhere in a
 * batch) — then
 * open its stores and read every view through the projections' query
 * handlers: each must answer as the independent model (viewmodel.h, never a
 * projection's fold) of exactly the events below the offsets stored in the
 * same store, and the stores may hold no other view (an event applied twice
 * or lost, or a view folded wrongly, shows up as a difference; cart_view
 * also refuses a repeated version, which would land in the DLQ).  Finally a
 * clean run must catch up, answer every cart, account and the item stats as
 * the workload's own model says, be ready, and have sent nothing to the DLQ.
 */
#include "account.h"
#include "cart.h"
#include "readtest.h"
#include "testutil.h"

#include <pthread.h>
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

/* Sum of cart_view's applied offsets and high watermarks; false if unknown. */
static bool cart_view_progress(const rt_proc_t *p, int64_t *applied, int64_t *high)
{
    json_t *o = rt_projection(p, "cart_view");
    json_t *parts = json_object_get(o, "partitions");
    bool ok = o != NULL;
    *applied = *high = 0;
    for (size_t k = 0; k < json_array_size(parts); k++) {
        json_t *pp = json_array_get(parts, k);
        *applied += json_integer_value(json_object_get(pp, "applied"));
        json_int_t h = json_integer_value(json_object_get(pp, "high"));
        ok = ok && h >= 0;
        *high += h;
    }
    json_decref(o);
    return ok;
}

/*
 * Kills the projector from its own thread: either blindly after a delay
 * (often while it is still starting), or as soon as the admin API shows it
 * has applied some of the backlog but not all of it — mid-stream by
 * construction, whatever the machine's speed.
 */
typedef struct {
    rt_proc_t *proc;
    bool blind;
    useconds_t delay_us;
    int64_t applied_before;
    bool was_alive;
} killer_t;

static void *killer(void *arg)
{
    killer_t *k = arg;
    if (k->blind) {
        usleep(k->delay_us);
    } else {
        rt_wait_up(k->proc, 30000);
        for (int i = 0; i < 5000; i++) {
            int64_t ap, hi;
            if (cart_view_progress(k->proc, &ap, &hi) && ap > k->applied_before && ap < hi)
                break;
            usleep(1000);
        }
        usleep(k->delay_us); /* land anywhere inside a batch */
    }
    k->was_alive = rt_proc_alive(k->proc);
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
    const char *sets[] = {"batch.max.events=10", "store.sync=true", "log.level=warn",
                          "projections=cart_view,item_stats,account_balance"};
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
        /* the round's events are in the log before the projector starts */
        for (int i = 0; i < CART_PER_ROUND; i++) {
            avro_value_t *v = es_sim_next(&sim, cg, 0, &id);
            rt_produce(&cart, id, v);
        }
        produce_accounts(&acct, ag, prefix, &rng, ACCT_PER_ROUND);
        rt_topic_flush(&cart);
        rt_topic_flush(&acct);
        size_t produced_at_kill = cart.n;

        rt_proc_start(&proc, root, agg, sets, 4);
        killer_t k = {.proc = &proc,
                      .blind = es_sim_rand(&rng) % 6 == 0,
                      .applied_before = (int64_t)prev_applied[0]};
        k.delay_us = (useconds_t)(es_sim_rand(&rng) % (k.blind ? 1500000 : 3000));
        pthread_t th;
        pthread_create(&th, NULL, killer, &k);
        pthread_join(th, NULL);
        CU_ASSERT_TRUE(k.was_alive);

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
    /* The test is worthless if kills only ever land between backlogs.  On a quiet
     * machine 22-24 of 24 land mid-stream; under heavy load (another build on the
     * 2 cores) 9-11 did, and a version that waited for the backlog first got 1.
     * A quarter separates a meaningful run from a vacuous one without flaking. */
    CU_ASSERT_TRUE(midstream >= ROUNDS / 4);

    /* a clean run: caught up, answers as the model says, nothing in the DLQ */
    rt_proc_start(&proc, root, agg, sets + 3, 1); /* the modules' views */
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
