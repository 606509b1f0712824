/*
 * test_domain_cart.c — every rule of the cart aggregate, decide then evolve.
 */
#include "cart.h"
#include "domaintest.h"
#include "testutil.h"

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
    for (int i = 0; i < CART_MAX_ITEMS; i++) {
        snprintf(sku, sizeof(sku), "sku-%d", i);
        CU_ASSERT_PTR_NULL(add(&h, sku, 1, 1));
    }
    DH_ASSERT_REJECTED(add(&h, "one-too-many", 1, 1), "cart_full");
    CU_ASSERT_PTR_NULL(add(&h, "sku-0", 1, 1)); /* an existing sku still fits */
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
        {NULL, NULL},
    };
    return es_test_run("domain-cart", cases);
}
