/*
 * invtest.h — what the inventory tests share: a CUnit runner, a string
 * assertion, a decide-then-evolve harness (as the command service runs an
 * aggregate, without Kafka or RocksDB), inventory events as Avro envelope
 * values, and one fold through the in-memory transaction of projection.h.
 *
 * Only the SDK's public headers and the module's own schema table are used,
 * so the tests build out of tree like the module.
 */
#ifndef INVTEST_H
#define INVTEST_H

#include "inventory.h"

#include <CUnit/CUnit.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} inv_case_t;

/** @brief Run @p cases (ended by {NULL, NULL}) as one suite; the exit code (0: all passed). */
int inv_test_run(const char *suite, const inv_case_t *cases);

/** @brief Assert that @p actual (may be NULL) equals @p expected, printing both when not. */
#define INV_ASSERT_STR_EQ(actual, expected)                                                        \
    inv_assert_str_eq((actual), (expected), #actual, __LINE__, __FILE__)
void inv_assert_str_eq(const char *actual, const char *expected, const char *expr, unsigned line,
                       const char *file);

/** @brief A seeded xorshift64* step. */
uint64_t inv_rand(uint64_t *state);
/** @brief The seed of a randomised test: INVENTORY_TEST_SEED, else the time; printed. */
uint64_t inv_seed(const char *test);

/** @brief Schema @p name ("inventory.events") parsed from the module's table. */
avro_schema_t inv_schema(const char *name);

/* ------------------------------------------------ decide-then-evolve harness */

typedef struct {
    inventory_state_t *state;
    es_emitter_t *em;
    avro_schema_t commands;
    avro_value_iface_t *iface;
    avro_value_t holder, payload;
    const char *type;
} inv_h_t;

void inv_h_init(inv_h_t *h);
void inv_h_free(inv_h_t *h);
/** @brief Start a command of @p type ("Reserve"); returns its payload record to fill. */
avro_value_t *inv_h_command(inv_h_t *h, const char *type);
void inv_set_string(avro_value_t *rec, const char *field, const char *v);
void inv_set_int(avro_value_t *rec, const char *field, int32_t v);
/**
 * @brief Decide; when accepted, evolve the state with every event and check
 *        that the state survives the store (encode, decode, same bytes).
 * @returns the rejection reason, or NULL when accepted.
 */
const char *inv_h_run(inv_h_t *h);
/** @brief Events of the last command. */
size_t inv_h_nevents(inv_h_t *h);
/** @brief Type of event @p i of the last command ("" past the end). */
const char *inv_h_event_type(inv_h_t *h, size_t i);
/** @brief int field of event @p i (-1 when missing). */
int32_t inv_h_event_int(inv_h_t *h, size_t i, const char *field);
/** @brief string field of event @p i ("" when missing). */
const char *inv_h_event_string(inv_h_t *h, size_t i, const char *field);

/** Assert that @p expr (an inv_h_run result) was rejected with @p reason. */
#define INV_ASSERT_REJECTED(expr, reason)                                                          \
    do {                                                                                           \
        const char *inv_reason_ = (expr);                                                          \
        INV_ASSERT_STR_EQ(inv_reason_ ? inv_reason_ : "(accepted)", reason);                       \
    } while (0)

/* Commands, in one call each. */
const char *inv_restock(inv_h_t *h, int32_t qty);
const char *inv_reserve(inv_h_t *h, const char *rid, int32_t qty);
const char *inv_release(inv_h_t *h, const char *rid);
const char *inv_ship(inv_h_t *h, const char *rid);

/* ----------------------------------------------------- events and folds */

typedef struct inv_evgen_s inv_evgen_t;

inv_evgen_t *inv_evgen_new(void);
void inv_evgen_destroy(inv_evgen_t *g);
/**
 * @brief An InventoryEvent envelope: @p type "Restocked" (qty), "StockReserved",
 *        "ReservationReleased", "ReservationShipped" (rid, qty).  Owned by the
 *        generator, valid until the next call.
 */
avro_value_t *inv_event(inv_evgen_t *g, const char *item_id, int64_t version, const char *type,
                        const char *rid, int32_t qty);
/** @brief The payload record of the last inv_event() (for evolve). */
avro_value_t *inv_event_payload(inv_evgen_t *g);

/** @brief Fold @p value into @p map through stock_view, as one event (dropped on error). */
es_err_t inv_fold(es_proj_memmap_t *map, avro_value_t *value, char *errstr, size_t errstr_size);
/** @brief GET /v1/inventory/{id} on @p map: the status, *body the answer (caller decrefs). */
int inv_query(es_proj_memmap_t *map, const char *id, json_t **body);

#endif
