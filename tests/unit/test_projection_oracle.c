/*
 * test_projection_oracle.c — the read-side tests' oracle (tests/viewmodel.c)
 * against the workload's own tally (tests/eventgen.c): two models written
 * apart must agree on every cart and every sku of a random workload, and the
 * oracle's documented edge cases (item order after a line left the cart,
 * latest unit price, refusals) hold.  The integration tests trust the oracle
 * to judge the projector; this is where the oracle itself is judged.  No
 * projection fold is involved.
 */
#include "eventgen.h"
#include "testutil.h"
#include "viewmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned apply_value(vm_t *m, avro_value_t *v)
{
    vm_event_t ev;
    CU_ASSERT_TRUE_FATAL(vm_event_from_value(v, &ev));
    return vm_apply(m, &ev);
}

static void test_agrees_with_workload_tally(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    vm_t *m = vm_new();
    const char *id;
    size_t refused = 0, wrong = 0;
    es_sim_init(&sim, "or", 99, 64);
    for (int i = 0; i < 20000; i++)
        refused += apply_value(m, es_sim_next(&sim, g, i, &id)) != 0;
    CU_ASSERT_EQUAL(refused, 0);
    for (size_t i = 0; i < sim.ncarts; i++) {
        json_t *got = vm_cart_json(m, sim.carts[i].id);
        char *js = es_sim_cart_json(&sim, i);
        json_t *want = sim.carts[i].version ? json_loads(js, 0, NULL) : NULL;
        if (want ? !json_equal(got, want) : got != NULL) {
            if (wrong++ < 3)
                fprintf(stderr, "\n    cart %s: the tally says %s", sim.carts[i].id,
                        want ? js : "404");
        }
        json_decref(got);
        json_decref(want);
        free(js);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    json_t *stats = vm_stats_json(m, "removed", 1000);
    json_t *items = json_object_get(stats, "items");
    CU_ASSERT_EQUAL(json_array_size(items), ES_SIM_SKUS);
    int64_t last = INT64_MAX;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        const char *sku = json_string_value(json_object_get(it, "sku"));
        int k = sku ? (int)strtol(sku + 4, NULL, 10) : 0;
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "added")), sim.stats[k][0]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "removed")), sim.stats[k][1]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it, "checked_out")), sim.stats[k][2]);
        CU_ASSERT_TRUE(json_integer_value(json_object_get(it, "removed")) <= last); /* ranked */
        last = json_integer_value(json_object_get(it, "removed"));
    }
    json_decref(stats);
    vm_destroy(m);
    es_sim_free(&sim);
    es_evgen_destroy(g);
}

static void test_documented_edge_cases(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_evgen_t *ag = es_evgen_new("account.events");
    vm_t *m = vm_new();
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 1, 0, "ItemAdded", "A", 2, 100)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 2, 0, "ItemAdded", "B", 1, 50)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 3, 0, "ItemRemoved", "A", 2, 0)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 4, 0, "ItemAdded", "A", 1, 70)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 5, 0, "ItemAdded", "B", 2, 60)), 0);
    /* A left and came back: after B; B's price is its latest */
    json_t *want = json_loads("{\"cart_id\":\"c\",\"status\":\"open\",\"items\":["
                              "{\"sku\":\"B\",\"quantity\":3,\"unit_price_cents\":60},"
                              "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":70}],"
                              "\"total_cents\":250,\"version\":5}",
                              0, NULL);
    json_t *got = vm_cart_json(m, "c");
    CU_ASSERT_TRUE(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    /* refusals: a version that does not grow, removing more than the cart holds and
     * anything after checkout (both); a negative unit price (cart_view only) */
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 5, 0, "ItemAdded", "C", 1, 1)),
                    VM_REFUSED_CART_VIEW | VM_REFUSED_ITEM_STATS);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 6, 0, "ItemAdded", "C", 1, -1)),
                    VM_REFUSED_CART_VIEW);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 7, 0, "ItemRemoved", "A", 2, 0)),
                    VM_REFUSED_CART_VIEW | VM_REFUSED_ITEM_STATS);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 8, 0, "CartCheckedOut", NULL, 0, 250)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "c", 9, 0, "ItemAdded", "A", 1, 1)),
                    VM_REFUSED_CART_VIEW | VM_REFUSED_ITEM_STATS);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_cart(g, "d", 1, 0, "ItemRemoved", "A", 1, 0)),
                    VM_REFUSED_CART_VIEW | VM_REFUSED_ITEM_STATS);
    CU_ASSERT_PTR_NULL(vm_cart_json(m, "d"));
    /* item_stats: C at version 6 (its price refused by cart_view only) counts; C at
     * version 5 and the A added after checkout count nowhere */
    want = json_loads("{\"by\":\"checked_out\",\"items\":["
                      "{\"sku\":\"B\",\"added\":3,\"removed\":0,\"checked_out\":3},"
                      "{\"sku\":\"A\",\"added\":3,\"removed\":2,\"checked_out\":1},"
                      "{\"sku\":\"C\",\"added\":1,\"removed\":0,\"checked_out\":1}]}",
                      0, NULL);
    got = vm_stats_json(m, "checked_out", 10);
    if (!json_equal(got, want)) {
        char *s = json_dumps(got, JSON_COMPACT);
        fprintf(stderr, "\n    stats: %s", s);
        free(s);
    }
    CU_ASSERT_TRUE(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    CU_ASSERT_EQUAL(apply_value(m, es_evgen_account(ag, "a", 1, 0, "AccountOpened", "Ada", 0)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_account(ag, "a", 2, 0, "Deposited", NULL, 500)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_account(ag, "a", 3, 0, "Withdrawn", NULL, 501)),
                    VM_REFUSED_ACCOUNT_BALANCE);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_account(ag, "a", 3, 0, "Withdrawn", NULL, 120)), 0);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_account(ag, "a", 4, 0, "AccountOpened", "Bob", 0)),
                    VM_REFUSED_ACCOUNT_BALANCE);
    CU_ASSERT_EQUAL(apply_value(m, es_evgen_account(ag, "b", 1, 0, "Deposited", NULL, 5)),
                    VM_REFUSED_ACCOUNT_BALANCE);
    want = json_loads(
        "{\"account_id\":\"a\",\"owner\":\"Ada\",\"balance_cents\":380,\"version\":3}", 0, NULL);
    got = vm_account_json(m, "a");
    CU_ASSERT_TRUE(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    CU_ASSERT_PTR_NULL(vm_account_json(m, "b"));
    vm_destroy(m);
    es_evgen_destroy(g);
    es_evgen_destroy(ag);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"the oracle agrees with the workload's tally", test_agrees_with_workload_tally},
        {"the oracle's documented edge cases", test_documented_edge_cases},
        {NULL, NULL},
    };
    return es_test_run("projection-oracle", cases);
}
