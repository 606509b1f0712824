/*
 * eventgen.h — test helper: Avro event values of the contract's schemas
 * (schemas/cart.events.avsc, schemas/account.events.avsc), a random but
 * valid cart/account workload with its own independent model of the
 * expected views, and an in-memory fold through a projection definition.
 */
#ifndef ESCQRS_TEST_EVENTGEN_H
#define ESCQRS_TEST_EVENTGEN_H

#include "escqrs/projection.h"

#include <avro.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct es_evgen_s es_evgen_t;

/** @brief Generator for schema @p name ("cart.events" or "account.events"). */
es_evgen_t *es_evgen_new(const char *name);
void es_evgen_destroy(es_evgen_t *g);
avro_schema_t es_evgen_schema(es_evgen_t *g);

/**
 * @brief A CartEvent; @p type "ItemAdded" (sku, qty, amount=unit price),
 *        "ItemRemoved" (sku, qty) or "CartCheckedOut" (amount=total).
 *        The value is owned by the generator, valid until the next call.
 */
avro_value_t *es_evgen_cart(es_evgen_t *g, const char *cart_id, int64_t version, int64_t ts,
                            const char *type, const char *sku, int32_t qty, int64_t amount);
/** @brief An AccountEvent: "AccountOpened" (owner), "Deposited"/"Withdrawn" (amount). */
avro_value_t *es_evgen_account(es_evgen_t *g, const char *account_id, int64_t version, int64_t ts,
                               const char *type, const char *owner, int64_t amount);

/** @brief Fold @p value into @p map through @p def, as one event (rolled back on error). */
es_err_t es_evgen_fold(const es_proj_def_t *def, es_proj_memmap_t *map, avro_value_t *value,
                       char *errstr, size_t errstr_size);

/* --------------------------------------------------- random cart workload */

#define ES_SIM_SKUS 40

typedef struct es_sim_cart_s {
    char id[96];
    int64_t version;
    int64_t qty[ES_SIM_SKUS];
    int64_t price[ES_SIM_SKUS];
    int order[ES_SIM_SKUS]; /* skus in first-added order */
    int norder;
    bool checked_out;
} es_sim_cart_t;

typedef struct es_sim_s {
    es_sim_cart_t *carts;
    size_t ncarts, cap;
    size_t live[256]; /* indexes of open carts */
    size_t nlive;
    uint64_t rng;
    char prefix[64];
    char last_id[96];              /* id of the cart of the last event (carts may move) */
    int64_t stats[ES_SIM_SKUS][3]; /* added, removed, checked_out */
} es_sim_t;

void es_sim_init(es_sim_t *s, const char *prefix, uint64_t seed, size_t open_carts);
void es_sim_free(es_sim_t *s);
/** @brief The next valid cart event (type, cart, sku, qty, amount); updates the model. */
avro_value_t *es_sim_next(es_sim_t *s, es_evgen_t *g, int64_t ts, const char **cart_id);
/** @brief The expected GET /v1/carts/{id} body of cart @p i of the model. */
char *es_sim_cart_json(const es_sim_t *s, size_t i);
uint64_t es_sim_rand(uint64_t *state);

#endif
