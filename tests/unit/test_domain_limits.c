/*
 * test_domain_limits.c — money and quantities at the edges of their types,
 * through decide, evolve and the folds, against a model that cannot
 * overflow.
 *
 * Randomised: amounts are drawn from the values that break things (INT64_MAX,
 * values near it, 2^62, INT32_MAX and its neighbours) mixed with ordinary
 * ones.  The model keeps balances, quantities and totals in 128-bit
 * integers, so it says exactly when a value no longer fits; decide must
 * refuse exactly those commands (amount_too_large, quantity_too_large) and
 * accept the others, every accepted command's events must evolve the state
 * and fold into the views to the model's numbers, and events that would
 * overflow (forged, or from a buggy writer) must be refused by evolve and
 * by every fold.  The seed is printed; ESCQRS_TEST_SEED repeats a run.
 */
#include "account.h"
#include "cart.h"
#include "domaintest.h"
#include "eventgen.h"
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 4000

typedef __int128 i128;

static uint64_t rng;
static char errstr[512];

static int64_t pick_amount(void)
{
    static const int64_t edges[] = {1,
                                    2,
                                    INT64_MAX,
                                    INT64_MAX - 1,
                                    INT64_MAX / 2,
                                    INT64_MAX / 2 + 1,
                                    (int64_t)1 << 62,
                                    ((int64_t)1 << 62) + 1,
                                    INT32_MAX,
                                    (int64_t)INT32_MAX + 1};
    uint64_t r = es_sim_rand(&rng);
    switch (r % 4) {
    case 0:
        return edges[(r >> 8) % (sizeof(edges) / sizeof(edges[0]))];
    case 1:
        return 1 + (int64_t)((r >> 8) % 100000);
    case 2:
        return 1 + (int64_t)(es_sim_rand(&rng) >> 1) % INT64_MAX;
    default:
        return INT64_MAX - (int64_t)((r >> 8) % 1000);
    }
}

static int32_t pick_quantity(void)
{
    static const int32_t edges[] = {
        1, 2, 4, INT32_MAX, INT32_MAX - 1, INT32_MAX / 2, INT32_MAX / 2 + 1};
    uint64_t r = es_sim_rand(&rng);
    if (r % 2)
        return edges[(r >> 8) % (sizeof(edges) / sizeof(edges[0]))];
    return 1 + (int32_t)((r >> 8) % 50);
}

static int64_t pick_price(void)
{
    uint64_t r = es_sim_rand(&rng);
    return r % 5 == 0 ? 0 : pick_amount();
}

static int get_json(const es_proj_def_t *def, size_t q, es_proj_memmap_t *m, const char *id,
                    json_t **out)
{
    es_proj_backend_t be = es_proj_memmap_backend(m);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    const char *params[1] = {id};
    es_proj_query_req_t req = {.params = params, .nparams = 1, .query = NULL};
    *out = NULL;
    int st = def->queries[q].handle(rd, &req, out, errstr, sizeof(errstr));
    es_proj_reader_destroy(rd);
    return st;
}

/* -------------------------------------------------------------- accounts */

static void test_account_money(void)
{
    dh_t h;
    es_evgen_t *g = es_evgen_new("account.events");
    es_proj_memmap_t *view = es_proj_memmap_new();
    i128 balance = 0;
    int64_t version = 1;
    size_t refused = 0, accepted = 0;
    dh_init(&h, &es_domain_account);
    dh_set_string(dh_command(&h, "OpenAccount"), "owner", "ann");
    CU_ASSERT_PTR_NULL_FATAL(dh_run(&h));
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_account_balance, view,
                                  es_evgen_account(g, "a", 1, 1, "AccountOpened", "ann", 0), errstr,
                                  sizeof(errstr)),
                    ES_ERR_OK);
    for (int i = 0; i < ROUNDS; i++) {
        bool deposit = es_sim_rand(&rng) % 3 != 0;
        int64_t amount = pick_amount();
        dh_set_long(dh_command(&h, deposit ? "Deposit" : "Withdraw"), "amount_cents", amount);
        const char *reason = dh_run(&h);
        const char *want = deposit ? (balance + amount > INT64_MAX ? "amount_too_large" : NULL)
                                   : (amount > balance ? "insufficient_funds" : NULL);
        CU_ASSERT_STRING_EQUAL(reason ? reason : "accepted", want ? want : "accepted");
        if (reason) {
            refused++;
            continue;
        }
        accepted++;
        balance += deposit ? amount : -amount;
        CU_ASSERT_TRUE(((account_state_t *)h.state)->balance_cents == (int64_t)balance);
        CU_ASSERT_EQUAL(dh_event_long(&h, 0, "amount_cents"), amount);
        CU_ASSERT_EQUAL(
            es_evgen_fold(&es_proj_account_balance, view,
                          es_evgen_account(g, "a", ++version, 1,
                                           deposit ? "Deposited" : "Withdrawn", NULL, amount),
                          errstr, sizeof(errstr)),
            ES_ERR_OK);
    }
    json_t *body;
    CU_ASSERT_EQUAL_FATAL(get_json(&es_proj_account_balance, 0, view, "a", &body), 200);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(body, "balance_cents")) == (int64_t)balance);
    json_decref(body);
    printf("\n  account: %zu accepted, %zu refused, final balance %" PRId64 "\n", accepted, refused,
           (int64_t)balance);
    CU_ASSERT_TRUE(refused > 0 && accepted > 0);

    /* a forged deposit past the top is refused by evolve and by the fold */
    account_state_t *st = h.state;
    int64_t room = INT64_MAX - st->balance_cents;
    if (room < INT64_MAX) {
        avro_value_t *ev = es_evgen_account(g, "a", ++version, 1, "Deposited", NULL, room + 1);
        avro_value_t pl;
        const char *type;
        CU_ASSERT_EQUAL(es_record_payload(ev, &pl, &type, errstr, sizeof(errstr)), ES_ERR_OK);
        CU_ASSERT_EQUAL(es_domain_account.evolve(h.state, type, &pl, errstr, sizeof(errstr)),
                        ES_ERR_STATE);
        CU_ASSERT_TRUE(st->balance_cents == (int64_t)balance); /* untouched */
        CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_account_balance, view, ev, errstr, sizeof(errstr)),
                        ES_ERR_STATE);
    }
    es_proj_memmap_destroy(view);
    es_evgen_destroy(g);
    dh_free(&h);
}

/*
 * Evolve @p h's state with one forged event (a record of the events' envelope); the
 * state must stay as it was, byte for byte, when evolve refuses it.
 */
static es_err_t evolve_forged(dh_t *h, avro_value_t *event)
{
    avro_value_t pl;
    const char *t;
    void *before = es_malloc(h->def->state_size);
    memcpy(before, h->state, h->def->state_size);
    CU_ASSERT_EQUAL_FATAL(es_record_payload(event, &pl, &t, errstr, sizeof(errstr)), ES_ERR_OK);
    es_err_t err = h->def->evolve(h->state, t, &pl, errstr, sizeof(errstr));
    if (err)
        CU_ASSERT_EQUAL(memcmp(before, h->state, h->def->state_size), 0);
    free(before);
    return err;
}

/* @p event's payload handed to evolve as a @p type the schema does not have: a decode
 * error that names the type. */
static void evolve_unknown_type(dh_t *h, avro_value_t *event, const char *type)
{
    avro_value_t pl;
    const char *t;
    CU_ASSERT_EQUAL_FATAL(es_record_payload(event, &pl, &t, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(h->def->evolve(h->state, type, &pl, errstr, sizeof(errstr)), ES_ERR_DECODE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, type));
}

/* A forged money event of @p amount onto account "f". */
static es_err_t evolve_money(dh_t *h, es_evgen_t *g, const char *type, int64_t amount)
{
    return evolve_forged(h, es_evgen_account(g, "f", 2, 1, type, NULL, amount));
}

/*
 * Forged money events at each edge evolve guards: an amount of 0 or below (either
 * way: a negative withdrawal would be a deposit, INT64_MIN would wrap), a withdrawal
 * one cent past the balance.  Each is refused and leaves the state as it was; the
 * value just inside each edge is accepted.
 */
static void test_forged_account_edges(void)
{
    es_evgen_t *g = es_evgen_new("account.events");
    dh_t h;
    dh_init(&h, &es_domain_account);
    account_state_t *a = h.state;
    dh_set_string(dh_command(&h, "OpenAccount"), "owner", "o");
    CU_ASSERT_PTR_NULL_FATAL(dh_run(&h));
    const int64_t bad[] = {0, -1, INT64_MIN};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(evolve_money(&h, g, "Deposited", bad[i]), ES_ERR_STATE);
        CU_ASSERT_EQUAL(evolve_money(&h, g, "Withdrawn", bad[i]), ES_ERR_STATE);
    }
    CU_ASSERT_EQUAL(evolve_money(&h, g, "Deposited", 10), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve_money(&h, g, "Withdrawn", 11), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_money(&h, g, "Withdrawn", 10), ES_ERR_OK);
    CU_ASSERT_EQUAL(a->balance_cents, 0);
    CU_ASSERT_EQUAL(evolve_money(&h, g, "Withdrawn", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_money(&h, g, "Deposited", INT64_MAX), ES_ERR_OK);
    CU_ASSERT_TRUE(a->balance_cents == INT64_MAX);
    evolve_unknown_type(&h, es_evgen_account(g, "f", 3, 1, "Deposited", NULL, 1), "Interest");
    dh_free(&h);
    es_evgen_destroy(g);
}

/* ----------------------------------------------------------------- carts */

#define SKUS 4

typedef struct {
    i128 qty[SKUS];
    int64_t price[SKUS];
    i128 added[SKUS], removed[SKUS], out[SKUS];
} cart_model_t;

static i128 model_total(const cart_model_t *m)
{
    i128 t = 0;
    for (int s = 0; s < SKUS; s++)
        t += m->qty[s] * m->price[s];
    return t;
}

static const char *stats_query(void *opaque, const char *name)
{
    (void)opaque;
    return !strcmp(name, "top") ? "1000" : !strcmp(name, "by") ? "added" : NULL;
}

/* GET /v1/stats/items: a row per sku whose counters are the model's sums. */
static void check_stats(es_proj_memmap_t *view, const cart_model_t *m)
{
    es_proj_backend_t be = es_proj_memmap_backend(view);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_query_req_t req = {.query = stats_query};
    json_t *body = NULL, *row;
    size_t i, rows = 0;
    CU_ASSERT_EQUAL_FATAL(
        es_proj_item_stats.queries[0].handle(rd, &req, &body, errstr, sizeof(errstr)), 200);
    json_array_foreach(json_object_get(body, "items"), i, row)
    {
        int s = -1;
        sscanf(json_string_value(json_object_get(row, "sku")), "sku%d", &s);
        CU_ASSERT_FATAL(s >= 0 && s < SKUS);
        /* JSON integers are signed 64-bit: counters past INT64_MAX cannot occur here */
        CU_ASSERT_TRUE(json_integer_value(json_object_get(row, "added")) == (int64_t)m->added[s]);
        CU_ASSERT_TRUE(json_integer_value(json_object_get(row, "removed")) ==
                       (int64_t)m->removed[s]);
        CU_ASSERT_TRUE(json_integer_value(json_object_get(row, "checked_out")) ==
                       (int64_t)m->out[s]);
        rows++;
    }
    size_t want = 0;
    for (int s = 0; s < SKUS; s++)
        want += m->added[s] > 0;
    CU_ASSERT_EQUAL(rows, want);
    json_decref(body);
    es_proj_reader_destroy(rd);
}

static void test_cart_quantities_and_totals(void)
{
    size_t refused_q = 0, refused_a = 0, accepted = 0, checkouts = 0;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *cv = es_proj_memmap_new(), *stats = es_proj_memmap_new();
    cart_model_t m = {0};
    for (int round = 0; round < ROUNDS / 20; round++) {
        dh_t h;
        char id[32];
        int64_t version = 0;
        snprintf(id, sizeof(id), "cart-%d", round);
        dh_init(&h, &es_domain_cart);
        memset(m.qty, 0, sizeof(m.qty));
        for (int step = 0; step < 20; step++) {
            int s = (int)(es_sim_rand(&rng) % SKUS);
            char sku[16];
            snprintf(sku, sizeof(sku), "sku%d", s);
            uint64_t kind = es_sim_rand(&rng) % 10;
            if (kind < 7) { /* add */
                int32_t qty = pick_quantity();
                int64_t price = pick_price();
                avro_value_t *c = dh_command(&h, "AddItem");
                dh_set_string(c, "sku", sku);
                dh_set_long(c, "quantity", qty);
                dh_set_long(c, "unit_price_cents", price);
                cart_model_t after = m;
                after.qty[s] += qty;
                after.price[s] = price;
                const char *want = after.qty[s] > INT32_MAX          ? "quantity_too_large"
                                   : model_total(&after) > INT64_MAX ? "amount_too_large"
                                                                     : NULL;
                const char *reason = dh_run(&h);
                CU_ASSERT_STRING_EQUAL(reason ? reason : "accepted", want ? want : "accepted");
                if (reason) {
                    refused_q += !strcmp(reason, "quantity_too_large");
                    refused_a += !strcmp(reason, "amount_too_large");
                    continue;
                }
                accepted++;
                m.qty[s] = after.qty[s];
                m.price[s] = price;
                m.added[s] += qty;
                avro_value_t *ev = es_evgen_cart(g, id, ++version, 1, "ItemAdded", sku, qty, price);
                CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv, ev, errstr, sizeof(errstr)),
                                ES_ERR_OK);
                CU_ASSERT_EQUAL(
                    es_evgen_fold(&es_proj_item_stats, stats, ev, errstr, sizeof(errstr)),
                    ES_ERR_OK);
            } else if (kind < 9 && m.qty[s] > 0) { /* remove some */
                int32_t qty = (int32_t)(1 + (int64_t)(es_sim_rand(&rng) % (uint64_t)m.qty[s]));
                avro_value_t *c = dh_command(&h, "RemoveItem");
                dh_set_string(c, "sku", sku);
                dh_set_long(c, "quantity", qty);
                CU_ASSERT_PTR_NULL(dh_run(&h));
                m.qty[s] -= qty;
                m.removed[s] += qty;
                avro_value_t *ev = es_evgen_cart(g, id, ++version, 1, "ItemRemoved", sku, qty, 0);
                CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv, ev, errstr, sizeof(errstr)),
                                ES_ERR_OK);
                CU_ASSERT_EQUAL(
                    es_evgen_fold(&es_proj_item_stats, stats, ev, errstr, sizeof(errstr)),
                    ES_ERR_OK);
            }
            /* the view's total is the model's, never wrapped */
            json_t *body;
            if (version > 0 && get_json(&es_proj_cart_view, 0, cv, id, &body) == 200) {
                CU_ASSERT_TRUE(json_integer_value(json_object_get(body, "total_cents")) ==
                               (int64_t)model_total(&m));
                json_decref(body);
            }
        }
        i128 total = model_total(&m);
        const char *reason = (dh_command(&h, "Checkout"), dh_run(&h));
        if (version == 0 || total == 0) {
            bool empty = true;
            for (int s = 0; s < SKUS; s++)
                empty &= m.qty[s] == 0;
            if (empty)
                CU_ASSERT_STRING_EQUAL(reason ? reason : "accepted", "cart_empty");
        }
        if (!reason) {
            checkouts++;
            CU_ASSERT_TRUE(total <= INT64_MAX);
            CU_ASSERT_TRUE(dh_event_long(&h, 0, "total_cents") == (int64_t)total);
            avro_value_t *ev =
                es_evgen_cart(g, id, ++version, 1, "CartCheckedOut", NULL, 0, (int64_t)total);
            CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv, ev, errstr, sizeof(errstr)),
                            ES_ERR_OK);
            CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_item_stats, stats, ev, errstr, sizeof(errstr)),
                            ES_ERR_OK);
            for (int s = 0; s < SKUS; s++)
                m.out[s] += m.qty[s];
        }
        dh_free(&h);
    }
    check_stats(stats, &m);
    printf("\n  carts: %zu adds accepted, %zu quantity_too_large, %zu amount_too_large, %zu "
           "checkouts\n",
           accepted, refused_q, refused_a, checkouts);
    CU_ASSERT_TRUE(refused_q > 0 && refused_a > 0 && checkouts > 0);
    es_proj_memmap_destroy(cv);
    es_proj_memmap_destroy(stats);
    es_evgen_destroy(g);
}

/*
 * Forged cart events (a buggy writer, a hand-produced record): a line that
 * pushes the cart's total past INT64_MAX, or a quantity past INT32_MAX, is
 * refused by the cart view's fold, which leaves the stored cart as it was;
 * evolve refuses the quantity too.
 */
static void test_forged_cart_events(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_proj_memmap_t *cv = es_proj_memmap_new();
    json_t *body;
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv,
                                  es_evgen_cart(g, "f1", 1, 1, "ItemAdded", "a", 1, INT64_MAX),
                                  errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv,
                                  es_evgen_cart(g, "f1", 2, 1, "ItemAdded", "b", 1, 1), errstr,
                                  sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "total"));
    CU_ASSERT_EQUAL_FATAL(get_json(&es_proj_cart_view, 0, cv, "f1", &body), 200);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(body, "total_cents")) == INT64_MAX);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "version")), 1);
    json_decref(body);

    dh_t h;
    dh_init(&h, &es_domain_cart);
    avro_value_t *full = es_evgen_cart(g, "f2", 1, 1, "ItemAdded", "a", INT32_MAX, 0);
    avro_value_t pl;
    const char *type;
    CU_ASSERT_EQUAL(es_record_payload(full, &pl, &type, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_domain_cart.evolve(h.state, type, &pl, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv, full, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_t *more = es_evgen_cart(g, "f2", 2, 1, "ItemAdded", "a", 1, 0);
    CU_ASSERT_EQUAL(es_record_payload(more, &pl, &type, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_domain_cart.evolve(h.state, type, &pl, errstr, sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL(es_evgen_fold(&es_proj_cart_view, cv, more, errstr, sizeof(errstr)),
                    ES_ERR_STATE);
    CU_ASSERT_EQUAL_FATAL(get_json(&es_proj_cart_view, 0, cv, "f2", &body), 200);
    json_t *items = json_object_get(body, "items");
    CU_ASSERT_EQUAL(json_array_size(items), 1);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(json_array_get(items, 0), "quantity")) ==
                   INT32_MAX);
    json_decref(body);
    dh_free(&h);
    es_proj_memmap_destroy(cv);
    es_evgen_destroy(g);
}

/* A forged cart event onto cart "f3" (evolve_forged). */
static es_err_t evolve_cart(dh_t *h, es_evgen_t *g, const char *type, const char *sku, int32_t qty,
                            int64_t price)
{
    return evolve_forged(h, es_evgen_cart(g, "f3", 1, 1, type, sku, qty, price));
}

/*
 * Forged events that decide never emits, at each edge evolve guards: a quantity
 * of 0 or below (added or removed: a negative removal would grow the line, and
 * INT32_MIN would wrap it), a negative price, a sku one byte too long, a new sku
 * into a full cart, more removed than held.  Each is refused and leaves the state
 * as it was; the value just inside each edge is accepted.
 */
static void test_forged_cart_edges(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    dh_t h;
    dh_init(&h, &es_domain_cart);
    cart_state_t *c = h.state;
    char sku[CART_SKU_MAX + 1];
    memset(sku, 'x', CART_SKU_MAX);
    sku[CART_SKU_MAX] = '\0';
    const int32_t bad_qty[] = {0, -1, INT32_MIN};
    for (size_t i = 0; i < sizeof(bad_qty) / sizeof(bad_qty[0]); i++)
        CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", "a", bad_qty[i], 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", "a", 1, -1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", sku, 1, 1), ES_ERR_STATE);
    sku[CART_SKU_MAX - 1] = '\0';
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", sku, 1, 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", "a", 5, 7), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(c->nitems, 2);
    for (size_t i = 0; i < sizeof(bad_qty) / sizeof(bad_qty[0]); i++)
        CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", "a", bad_qty[i], 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", "a", 6, 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", "b", 1, 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", sku, 1, 0), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(c->nitems, 1); /* the line at 0 dropped, "a" moved up */
    ES_ASSERT_STR_EQ(c->items[0].sku, "a");
    CU_ASSERT_EQUAL(c->items[0].quantity, 5);
    CU_ASSERT_EQUAL(c->items[0].unit_price_cents, 7);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", "a", 5, 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(c->nitems, 0);
    char name[16];
    for (int i = 0; i < CART_MAX_ITEMS; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", name, 1, 1), ES_ERR_OK);
    }
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", "one-more", 1, 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemAdded", "s0", 1, 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(c->items[0].quantity, 2);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", "s1", 1, 0), ES_ERR_OK); /* a full cart's */
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "ItemRemoved", "s0", 2, 0), ES_ERR_OK); /* first lines */
    CU_ASSERT_EQUAL_FATAL(c->nitems, CART_MAX_ITEMS - 2);
    for (int i = 0; i < CART_MAX_ITEMS - 2; i++) { /* the others in order, nothing past them */
        snprintf(name, sizeof(name), "s%d", i + 2);
        ES_ASSERT_STR_EQ(c->items[i].sku, name);
        CU_ASSERT_EQUAL(c->items[i].quantity, 1);
    }
    CU_ASSERT_FALSE(c->checked_out);
    CU_ASSERT_EQUAL(evolve_cart(&h, g, "CartCheckedOut", NULL, 0, 2), ES_ERR_OK);
    CU_ASSERT_TRUE(c->checked_out);
    evolve_unknown_type(&h, es_evgen_cart(g, "f3", 2, 1, "CartCheckedOut", NULL, 0, 2), "Discount");
    dh_free(&h);
    es_evgen_destroy(g);
}

/* The reported cases, exactly: each must be refused, not wrapped. */
static void test_reported_cases(void)
{
    dh_t h;
    dh_init(&h, &es_domain_account);
    dh_set_string(dh_command(&h, "OpenAccount"), "owner", "o");
    CU_ASSERT_PTR_NULL(dh_run(&h));
    dh_set_long(dh_command(&h, "Deposit"), "amount_cents", INT64_MAX);
    CU_ASSERT_PTR_NULL(dh_run(&h));
    dh_set_long(dh_command(&h, "Deposit"), "amount_cents", INT64_MAX);
    DH_ASSERT_REJECTED(dh_run(&h), "amount_too_large");
    CU_ASSERT_TRUE(((account_state_t *)h.state)->balance_cents == INT64_MAX);
    dh_free(&h);

    struct {
        int32_t qty;
        int64_t price;
        int times;
        const char *second;
    } cases[] = {
        {1, INT64_MAX, 2, "amount_too_large"},   /* total -2 before */
        {4, (int64_t)1 << 62, 1, NULL},          /* checked out for 0 before */
        {INT32_MAX, 1, 2, "quantity_too_large"}, /* wrapped to -2 before */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        dh_init(&h, &es_domain_cart);
        for (int t = 0; t < cases[c].times; t++) {
            avro_value_t *cmd = dh_command(&h, "AddItem");
            dh_set_string(cmd, "sku", "A");
            dh_set_long(cmd, "quantity", cases[c].qty);
            dh_set_long(cmd, "unit_price_cents", cases[c].price);
            const char *reason = dh_run(&h);
            if (t == 0 && cases[c].times == 1) {
                DH_ASSERT_REJECTED(reason, "amount_too_large"); /* 4 × 2^62 does not fit */
            } else if (t == 0) {
                CU_ASSERT_PTR_NULL(reason);
            } else {
                DH_ASSERT_REJECTED(reason, cases[c].second);
            }
        }
        dh_free(&h);
    }
}

int main(void)
{
    const char *env = getenv("ESCQRS_TEST_SEED");
    rng = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("test_domain_limits: seed %" PRIu64 " (ESCQRS_TEST_SEED=%" PRIu64 " repeats it)\n", rng,
           rng);
    static const es_test_case_t cases[] = {
        {"the reported overflows are refused with a reason", test_reported_cases},
        {"account balances at the edge of int64", test_account_money},
        {"forged account events at every edge evolve guards", test_forged_account_edges},
        {"cart quantities and totals at the edge of their types", test_cart_quantities_and_totals},
        {"forged cart events past the edges are refused", test_forged_cart_events},
        {"forged cart events at every edge evolve guards", test_forged_cart_edges},
        {NULL, NULL},
    };
    return es_test_run("domain-limits", cases);
}
