/*
 * test_domain_cart.c — every rule of the cart aggregate, decide then evolve.
 */
#include "cart.h"
#include "domaintest.h"
#include "testutil.h"

#include <string.h>

static const char *add(dh_t *h, const char *sku, int64_t qty, int64_t price)
{
    avro_value_t *c = dh_command(h, "AddItem");
    dh_set_string(c, "sku", sku);
    dh_set_long(c, "quantity", qty);
    dh_set_long(c, "unit_price_cents", price);
    return dh_run(h);
}

static const char *removeq(dh_t *h, const char *sku, int64_t qty)
{
    avro_value_t *c = dh_command(h, "RemoveItem");
    dh_set_string(c, "sku", sku);
    dh_set_long(c, "quantity", qty);
    return dh_run(h);
}

static const char *checkout(dh_t *h)
{
    dh_command(h, "Checkout");
    return dh_run(h);
}

static void test_add_remove_checkout(void)
{
    dh_t h;
    dh_init(&h, &es_domain_cart);
    cart_state_t *c = h.state;
    CU_ASSERT_PTR_NULL(add(&h, "A", 2, 250));
    ES_ASSERT_STR_EQ(dh_event_type(&h, 0), "ItemAdded");
    CU_ASSERT_PTR_NULL(add(&h, "B", 1, 1000));
    CU_ASSERT_PTR_NULL(add(&h, "A", 3, 300)); /* same sku: quantities add, newest price */
    CU_ASSERT_EQUAL(c->nitems, 2);
    CU_ASSERT_EQUAL(c->items[0].quantity, 5);
    CU_ASSERT_EQUAL(c->items[0].unit_price_cents, 300);
    CU_ASSERT_PTR_NULL(removeq(&h, "B", 1)); /* removing all of a sku drops it */
    ES_ASSERT_STR_EQ(dh_event_type(&h, 0), "ItemRemoved");
    CU_ASSERT_EQUAL(c->nitems, 1);
    CU_ASSERT_PTR_NULL(removeq(&h, "A", 1));
    CU_ASSERT_EQUAL(c->items[0].quantity, 4);
    CU_ASSERT_PTR_NULL(checkout(&h));
    ES_ASSERT_STR_EQ(dh_event_type(&h, 0), "CartCheckedOut");
    CU_ASSERT_EQUAL(dh_event_long(&h, 0, "total_cents"), 4 * 300);
    CU_ASSERT_TRUE(c->checked_out);
    dh_free(&h);
}

static void test_no_change_after_checkout(void)
{
    dh_t h;
    dh_init(&h, &es_domain_cart);
    CU_ASSERT_PTR_NULL(add(&h, "A", 1, 100));
    CU_ASSERT_PTR_NULL(checkout(&h));
    DH_ASSERT_REJECTED(add(&h, "A", 1, 100), "cart_checked_out");
    DH_ASSERT_REJECTED(removeq(&h, "A", 1), "cart_checked_out");
    DH_ASSERT_REJECTED(checkout(&h), "cart_checked_out");
    dh_free(&h);
}

static void test_cannot_remove_what_is_not_there(void)
{
    dh_t h;
    dh_init(&h, &es_domain_cart);
    DH_ASSERT_REJECTED(removeq(&h, "A", 1), "item_not_in_cart");
    CU_ASSERT_PTR_NULL(add(&h, "A", 2, 100));
    DH_ASSERT_REJECTED(removeq(&h, "A", 3), "item_not_in_cart");
    DH_ASSERT_REJECTED(removeq(&h, "Z", 1), "item_not_in_cart");
    CU_ASSERT_PTR_NULL(removeq(&h, "A", 2));
    DH_ASSERT_REJECTED(removeq(&h, "A", 1), "item_not_in_cart");
    dh_free(&h);
}

static void test_empty_cart_cannot_check_out(void)
{
    dh_t h;
    dh_init(&h, &es_domain_cart);
    DH_ASSERT_REJECTED(checkout(&h), "cart_empty");
    CU_ASSERT_PTR_NULL(add(&h, "A", 1, 100));
    CU_ASSERT_PTR_NULL(removeq(&h, "A", 1));
    DH_ASSERT_REJECTED(checkout(&h), "cart_empty"); /* emptied again */
    dh_free(&h);
}

static void test_invalid_values_and_full_cart(void)
{
    dh_t h;
    char sku[16];
    dh_init(&h, &es_domain_cart);
    DH_ASSERT_REJECTED(add(&h, "A", 0, 100), "invalid_command");
    DH_ASSERT_REJECTED(add(&h, "A", 1, -1), "invalid_command");
    DH_ASSERT_REJECTED(add(&h, "", 1, 1), "invalid_command");
    char longest[CART_SKU_MAX + 1]; /* the edges: CART_SKU_MAX - 1 bytes fit, CART_SKU_MAX not */
    memset(longest, 'x', CART_SKU_MAX);
    longest[CART_SKU_MAX] = '\0';
    DH_ASSERT_REJECTED(add(&h, longest, 1, 1), "invalid_command");
    DH_ASSERT_REJECTED(removeq(&h, longest, 1), "item_not_in_cart"); /* cannot be in it */
    longest[CART_SKU_MAX - 1] = '\0';
    CU_ASSERT_PTR_NULL(add(&h, longest, 1, 0)); /* a free item: price 0 is a price */
    CU_ASSERT_EQUAL(dh_event_long(&h, 0, "unit_price_cents"), 0);
    DH_ASSERT_REJECTED(removeq(&h, longest, 0), "invalid_command");
    DH_ASSERT_REJECTED(removeq(&h, longest, -1), "invalid_command");
    CU_ASSERT_PTR_NULL(removeq(&h, longest, 1));
    for (int i = 0; i < CART_MAX_ITEMS; i++) {
        snprintf(sku, sizeof(sku), "sku-%d", i);
        CU_ASSERT_PTR_NULL(add(&h, sku, 1, 1));
    }
    DH_ASSERT_REJECTED(add(&h, "one-too-many", 1, 1), "cart_full");
    CU_ASSERT_PTR_NULL(add(&h, "sku-0", 1, 1)); /* an existing sku still fits */
    dh_free(&h);
}

/* Decode @p json (a stored state) onto @p h's state. */
static es_err_t decode(dh_t *h, const char *json)
{
    return es_domain_cart.state_decode(h->state, json, strlen(json));
}

/*
 * The stored state, encoded and decoded: a round trip replaces the whole state
 * (nothing of a state decoded onto stays), a sku that does not fit or a line of
 * the wrong shape is refused, and a state written before the add-time total check
 * (a total past INT64_MAX) cannot be checked out for a wrapped total.
 */
static void test_state_round_trip(void)
{
    dh_t h, other;
    es_buf_t b = {0};
    char json[256], sku[CART_SKU_MAX + 1];
    dh_init(&h, &es_domain_cart);
    dh_init(&other, &es_domain_cart);
    CU_ASSERT_PTR_NULL(add(&h, "A", 2, 250));
    CU_ASSERT_PTR_NULL(add(&h, "B", 1, 1000));
    CU_ASSERT_PTR_NULL(add(&other, "Z", 9, 1));
    CU_ASSERT_PTR_NULL(add(&other, "Y", 9, 1));
    CU_ASSERT_PTR_NULL(add(&other, "X", 9, 1));
    CU_ASSERT_PTR_NULL(checkout(&other));
    es_domain_cart.state_encode(h.state, &b);
    CU_ASSERT_EQUAL(es_domain_cart.state_decode(other.state, b.data, b.len), ES_ERR_OK);
    CU_ASSERT_EQUAL(memcmp(h.state, other.state, sizeof(cart_state_t)), 0);

    memset(sku, 'x', CART_SKU_MAX);
    sku[CART_SKU_MAX] = '\0';
    snprintf(json, sizeof(json), "{\"checked_out\":false,\"items\":[[\"%s\",1,1]]}", sku);
    CU_ASSERT_EQUAL(decode(&other, json), ES_ERR_DECODE);
    sku[CART_SKU_MAX - 1] = '\0';
    snprintf(json, sizeof(json), "{\"checked_out\":false,\"items\":[[\"%s\",1,1]]}", sku);
    CU_ASSERT_EQUAL(decode(&other, json), ES_ERR_OK);
    CU_ASSERT_EQUAL(decode(&other, "{\"checked_out\":false,\"items\":[[\"a\",\"1\",1]]}"),
                    ES_ERR_DECODE);
    CU_ASSERT_EQUAL(decode(&other, "{\"checked_out\":false,\"items\":[[\"a\",1]]}"), ES_ERR_DECODE);

    snprintf(json, sizeof(json), "{\"checked_out\":false,\"items\":[[\"a\",2,%lld]]}",
             (long long)INT64_MAX);
    CU_ASSERT_EQUAL_FATAL(decode(&h, json), ES_ERR_OK);
    DH_ASSERT_REJECTED(checkout(&h), "amount_too_large");
    es_buf_free(&b);
    dh_free(&other);
    dh_free(&h);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"add, remove, checkout", test_add_remove_checkout},
        {"no change after checkout", test_no_change_after_checkout},
        {"cannot remove what is not there", test_cannot_remove_what_is_not_there},
        {"empty cart cannot check out", test_empty_cart_cannot_check_out},
        {"invalid values and a full cart", test_invalid_values_and_full_cart},
        {"the stored state, encoded and decoded", test_state_round_trip},
        {NULL, NULL},
    };
    return es_test_run("domain-cart", cases);
}
