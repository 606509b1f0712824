/*
 * viewmodel.h — the read-side tests' oracle: what cart_view, item_stats and
 * account_balance must answer after a set of contract events, computed by
 * plain code written here from the events' documented meaning, never by a
 * projection's fold.  An expectation built with the fold under test cannot
 * see that fold's bugs (an item_stats that counted removals as additions
 * passed 0304 and 0306 that way).
 *
 * Sources of the semantics, in order: ARCHITECTURE.md §6 and docs/projector.md
 * (the query answers), the header comments of examples/cart/, examples/account/ (item
 * order, unit price, what each projection refuses), and where those are
 * silent the events' meaning (decided below, in viewmodel.c).
 *
 * The model is compared with a projector's store through the projection's
 * own query handlers (the contract's JSON answers), so the encodings of the
 * views stay the projection's business; only item_stats' private copy of
 * each cart ("k/<cart_id>", documented in item_stats.c) is decoded here,
 * because no query shows an open cart's lines or the versions it checks.
 */
#ifndef ESCQRS_TEST_VIEWMODEL_H
#define ESCQRS_TEST_VIEWMODEL_H

#include "escqrs/projection.h"

#include <avro.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    VM_ITEM_ADDED = 1,
    VM_ITEM_REMOVED,
    VM_CART_CHECKED_OUT,
    VM_ACCOUNT_OPENED,
    VM_DEPOSITED,
    VM_WITHDRAWN,
} vm_type_t;

/** One contract event as plain values (what a test produced). */
typedef struct vm_event_s {
    vm_type_t type;
    char id[160]; /**< cart_id or account_id */
    int64_t version;
    char sku[64];     /**< ItemAdded, ItemRemoved */
    int64_t quantity; /**< ItemAdded, ItemRemoved */
    int64_t amount;   /**< unit_price_cents, total_cents or amount_cents */
    char owner[64];   /**< AccountOpened */
} vm_event_t;

/**
 * @brief The plain values of a CartEvent or AccountEvent Avro value (read by
 *        field name with the Avro C value API). false when it is not one.
 */
bool vm_event_from_value(avro_value_t *value, vm_event_t *out);

typedef struct vm_s vm_t;

vm_t *vm_new(void);
void vm_destroy(vm_t *m);

/* Which projections' models refused an event (vm_apply's answer). */
#define VM_REFUSED_CART_VIEW       1u
#define VM_REFUSED_ITEM_STATS      2u
#define VM_REFUSED_ACCOUNT_BALANCE 4u

/**
 * @brief Apply @p ev to the model of every projection that reads its
 *        aggregate; each model refuses (and ignores) what its projection is
 *        documented to refuse.  @returns the VM_REFUSED_* bits, 0 when applied.
 */
unsigned vm_apply(vm_t *m, const vm_event_t *ev);

/** @brief The expected GET /v1/carts/{id} body, or NULL when the cart must be 404. */
json_t *vm_cart_json(const vm_t *m, const char *id);
/** @brief The expected GET /v1/accounts/{id} body, or NULL when the account must be 404. */
json_t *vm_account_json(const vm_t *m, const char *id);
/** @brief The expected GET /v1/stats/items?top=@p top&by=@p by body. */
json_t *vm_stats_json(const vm_t *m, const char *by, size_t top);

/**
 * @brief Compare every view of projection @p def held in @p views (the view
 *        keys of a store, or of a frozen store) with the model: each cart or
 *        account the model has and each item_stats ranking answer exactly as
 *        the model says through @p def's own query handler, and @p views holds
 *        nothing else (no view of an aggregate the model lacks, no stats of an
 *        unknown sku, item_stats' copies of carts equal to the model's: lines,
 *        version and status).  Differences are printed (the first few).  @returns their count.
 */
size_t vm_compare_views(const vm_t *m, const es_proj_def_t *def, es_proj_memmap_t *views);

#endif
