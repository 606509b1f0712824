/*
 * cart.h — the cart module's definitions: the shopping-cart aggregate (its
 * state, for tests that look inside) and the projections cart_view and
 * item_stats.  The programs never include this: they find everything through
 * the module's entry point (module.c, entry.c); tests link these sources
 * directly (examples/cart/CMakeLists.txt).
 */
#ifndef ESCQRS_EXAMPLE_CART_H
#define ESCQRS_EXAMPLE_CART_H

#include "escqrs/module.h"

#include <stdbool.h>
#include <stdint.h>

#define CART_MAX_ITEMS 256 /* distinct skus in one cart; more is rejected as cart_full */
#define CART_SKU_MAX   64

typedef struct {
    char sku[CART_SKU_MAX];
    int32_t quantity;
    int64_t unit_price_cents;
} cart_item_t;

typedef struct {
    bool checked_out;
    int nitems;
    cart_item_t items[CART_MAX_ITEMS];
} cart_state_t;

extern const es_aggregate_def_t es_domain_cart;
extern const es_proj_def_t es_proj_cart_view;
extern const es_proj_def_t es_proj_item_stats;

/** The module: aggregate cart, projections cart_view and item_stats, the cart schemas. */
extern const es_module_t es_module_cart;

#endif
