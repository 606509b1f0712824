/*
 * domains.h — the aggregates escqrs ships: a shopping cart and an account.
 *
 * Each is one es_aggregate_def_t (see escqrs/aggregate.h) with pure decide and
 * evolve functions; the command service looks them up by name.
 */
#ifndef ESCQRS_DOMAINS_H
#define ESCQRS_DOMAINS_H

#include "escqrs/aggregate.h"

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

typedef struct {
    bool open;
    char owner[128];
    int64_t balance_cents;
} account_state_t;

extern const es_aggregate_def_t es_domain_cart;
extern const es_aggregate_def_t es_domain_account;

/** @brief The shipped aggregate named @p name ("cart", "account"), or NULL. */
const es_aggregate_def_t *es_domain_find(const char *name);

#endif
