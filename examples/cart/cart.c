/*
 * cart.c — the shopping cart aggregate: items added and removed, then checkout.
 *
 * Invariants decide() keeps: nothing changes after checkout
 * (cart_checked_out); only items in the cart, at most as many as it holds,
 * can be removed (item_not_in_cart); an empty cart cannot be checked out
 * (cart_empty).  Adding a sku already in the cart adds to its quantity and
 * takes the newest unit price, as a shop's cart does.  A line's quantity
 * stays within INT32_MAX (quantity_too_large) and the cart's total — the
 * sum of quantity × unit price — within INT64_MAX cents (amount_too_large):
 * both are checked when an item is added, so a checkout total always fits
 * and is never wrapped into the permanent log.  evolve() checks the same
 * arithmetic and refuses what decide() never emits (a quantity of 0 or below,
 * added or removed; a negative price), so a forged event cannot grow a line
 * by "removing" a negative quantity.  Pure: no I/O.
 */
#include "cart.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int find_item(const cart_state_t *c, const char *sku)
{
    for (int i = 0; i < c->nitems; i++)
        if (!strcmp(c->items[i].sku, sku))
            return i;
    return -1;
}

/* The cart's total in cents, false when it does not fit an int64. */
static bool cart_total(const cart_state_t *c, int64_t *total)
{
    int64_t sum = 0, line;
    for (int i = 0; i < c->nitems; i++)
        if (!es_mul_i64(c->items[i].quantity, c->items[i].unit_price_cents, &line) ||
            !es_add_i64(sum, line, &sum))
            return false;
    *total = sum;
    return true;
}

/* The reason adding @p qty × @p sku at @p price would not fit, or NULL. */
static const char *check_add(const cart_state_t *c, const char *sku, int32_t qty, int64_t price)
{
    int i = find_item(c, sku);
    int32_t q = qty;
    int64_t sum = 0, line;
    if (i >= 0 && !es_add_i32(c->items[i].quantity, qty, &q))
        return "quantity_too_large";
    for (int k = 0; k < c->nitems; k++)
        if (k != i && (!es_mul_i64(c->items[k].quantity, c->items[k].unit_price_cents, &line) ||
                       !es_add_i64(sum, line, &sum)))
            return "amount_too_large";
    if (!es_mul_i64(q, price, &line) || !es_add_i64(sum, line, &sum))
        return "amount_too_large";
    return NULL;
}

static const char *cart_decide(const void *state, const char *type, avro_value_t *cmd,
                               es_emitter_t *out)
{
    const cart_state_t *c = state;
    char errstr[128];
    const char *sku = NULL;
    int32_t qty = 0;
    int64_t price = 0;

    if (c->checked_out)
        return "cart_checked_out";
    if (!strcmp(type, "AddItem")) {
        if (es_record_string(cmd, "sku", &sku, NULL, errstr, sizeof(errstr)) ||
            es_record_int(cmd, "quantity", &qty, errstr, sizeof(errstr)) ||
            es_record_long(cmd, "unit_price_cents", &price, errstr, sizeof(errstr)) || qty <= 0 ||
            price < 0 || !*sku || strlen(sku) >= CART_SKU_MAX)
            return "invalid_command";
        if (find_item(c, sku) < 0 && c->nitems == CART_MAX_ITEMS)
            return "cart_full";
        const char *too_large = check_add(c, sku, qty, price);
        if (too_large)
            return too_large;
        avro_value_t *ev = es_emit(out, "ItemAdded");
        avro_value_t f;
        avro_value_get_by_name(ev, "sku", &f, NULL);
        avro_value_set_string(&f, sku);
        avro_value_get_by_name(ev, "quantity", &f, NULL);
        avro_value_set_int(&f, qty);
        avro_value_get_by_name(ev, "unit_price_cents", &f, NULL);
        avro_value_set_long(&f, price);
        return NULL;
    }
    if (!strcmp(type, "RemoveItem")) {
        if (es_record_string(cmd, "sku", &sku, NULL, errstr, sizeof(errstr)) ||
            es_record_int(cmd, "quantity", &qty, errstr, sizeof(errstr)) || qty <= 0)
            return "invalid_command";
        int i = find_item(c, sku);
        if (i < 0 || c->items[i].quantity < qty)
            return "item_not_in_cart";
        avro_value_t *ev = es_emit(out, "ItemRemoved");
        avro_value_t f;
        avro_value_get_by_name(ev, "sku", &f, NULL);
        avro_value_set_string(&f, sku);
        avro_value_get_by_name(ev, "quantity", &f, NULL);
        avro_value_set_int(&f, qty);
        return NULL;
    }
    if (!strcmp(type, "Checkout")) {
        if (c->nitems == 0)
            return "cart_empty";
        int64_t total;
        if (!cart_total(c, &total))
            return "amount_too_large"; /* only a state from before the add-time check */
        avro_value_t *ev = es_emit(out, "CartCheckedOut");
        avro_value_t f;
        avro_value_get_by_name(ev, "total_cents", &f, NULL);
        avro_value_set_long(&f, total);
        return NULL;
    }
    return "unknown_command";
}

static es_err_t cart_evolve(void *state, const char *type, avro_value_t *ev, char *errstr,
                            size_t errstr_size)
{
    cart_state_t *c = state;
    const char *sku = NULL;
    int32_t qty = 0;
    int64_t price = 0;
    es_err_t err;

    if (!strcmp(type, "ItemAdded")) {
        if ((err = es_record_string(ev, "sku", &sku, NULL, errstr, errstr_size)) ||
            (err = es_record_int(ev, "quantity", &qty, errstr, errstr_size)) ||
            (err = es_record_long(ev, "unit_price_cents", &price, errstr, errstr_size)))
            return err;
        int i = find_item(c, sku);
        int32_t q = qty;
        if ((i < 0 && (c->nitems == CART_MAX_ITEMS || strlen(sku) >= CART_SKU_MAX)) || qty <= 0 ||
            price < 0 || (i >= 0 && !es_add_i32(c->items[i].quantity, qty, &q))) {
            snprintf(errstr, errstr_size, "ItemAdded %d × %s at %lld does not fit the cart state",
                     qty, sku, (long long)price);
            return ES_ERR_STATE;
        }
        if (i < 0) {
            i = c->nitems++;
            snprintf(c->items[i].sku, sizeof(c->items[i].sku), "%s", sku);
        }
        c->items[i].quantity = q;
        c->items[i].unit_price_cents = price;
        return ES_ERR_OK;
    }
    if (!strcmp(type, "ItemRemoved")) {
        if ((err = es_record_string(ev, "sku", &sku, NULL, errstr, errstr_size)) ||
            (err = es_record_int(ev, "quantity", &qty, errstr, errstr_size)))
            return err;
        int i = find_item(c, sku);
        if (qty <= 0 || i < 0 || c->items[i].quantity < qty) { /* < 0 would grow the line */
            snprintf(errstr, errstr_size, "ItemRemoved %d × %s: not what the cart holds", qty, sku);
            return ES_ERR_STATE;
        }
        c->items[i].quantity -= qty;
        if (c->items[i].quantity == 0) { /* drop it, keeping the others in order */
            memmove(&c->items[i], &c->items[i + 1],
                    (size_t)(c->nitems - i - 1) * sizeof(c->items[0]));
            c->nitems--;
        }
        return ES_ERR_OK;
    }
    if (!strcmp(type, "CartCheckedOut")) {
        c->checked_out = true;
        return ES_ERR_OK;
    }
    snprintf(errstr, errstr_size, "unknown cart event %s", type);
    return ES_ERR_DECODE;
}

static void cart_encode(const void *state, es_buf_t *out)
{
    const cart_state_t *c = state;
    json_t *items = json_array();
    for (int i = 0; i < c->nitems; i++)
        json_array_append_new(items, json_pack("[s, i, I]", c->items[i].sku, c->items[i].quantity,
                                               (json_int_t)c->items[i].unit_price_cents));
    json_t *j = json_pack("{s:b, s:o}", "checked_out", c->checked_out, "items", items);
    char *s = json_dumps(j, JSON_COMPACT);
    es_buf_set(out, s, strlen(s));
    free(s);
    json_decref(j);
}

static es_err_t cart_decode(void *state, const void *data, size_t len)
{
    cart_state_t *c = state;
    json_t *j = json_loadb(data, len, 0, NULL), *items, *it;
    int checked_out = 0;
    size_t i;
    memset(c, 0, sizeof(*c));
    if (!j || json_unpack(j, "{s:b, s:o}", "checked_out", &checked_out, "items", &items) ||
        json_array_size(items) > CART_MAX_ITEMS) {
        json_decref(j);
        return ES_ERR_DECODE;
    }
    c->checked_out = checked_out;
    json_array_foreach(items, i, it)
    {
        const char *sku;
        int qty;
        json_int_t price;
        if (json_unpack(it, "[s, i, I]", &sku, &qty, &price) || strlen(sku) >= CART_SKU_MAX) {
            json_decref(j);
            return ES_ERR_DECODE;
        }
        snprintf(c->items[i].sku, sizeof(c->items[i].sku), "%s", sku);
        c->items[i].quantity = qty;
        c->items[i].unit_price_cents = price;
        c->nitems++;
    }
    json_decref(j);
    return ES_ERR_OK;
}

static const es_command_def_t cart_commands[] = {
    {"add-item",
     "AddItem",
     {{"sku", ES_FIELD_STRING, 1, CART_SKU_MAX - 1},
      {"quantity", ES_FIELD_INT, 1, INT32_MAX},
      {"unit_price_cents", ES_FIELD_INT, 0, INT64_MAX}}},
    {"remove-item",
     "RemoveItem",
     {{"sku", ES_FIELD_STRING, 1, CART_SKU_MAX - 1}, {"quantity", ES_FIELD_INT, 1, INT32_MAX}}},
    {"checkout", "Checkout", {{.name = NULL}}},
};

const es_aggregate_def_t es_domain_cart = {
    .name = "cart",
    .id_field = "cart_id",
    .commands_schema = "cart.commands",
    .events_schema = "cart.events",
    .state_size = sizeof(cart_state_t),
    .decide = cart_decide,
    .evolve = cart_evolve,
    .state_encode = cart_encode,
    .state_decode = cart_decode,
    .collection = "carts",
    .commands = cart_commands,
    .ncommands = sizeof(cart_commands) / sizeof(cart_commands[0]),
};
