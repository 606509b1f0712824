/*
 * domaintest.h — a harness for aggregate unit tests: build a command payload,
 * decide on it, and on acceptance evolve the state with every emitted event,
 * exactly as the command service does, without Kafka or RocksDB.
 */
#ifndef ESCQRS_DOMAINTEST_H
#define ESCQRS_DOMAINTEST_H

#include "escqrs/aggregate.h"

#include "testutil.h"

#include <CUnit/CUnit.h>

/** Assert that @p expr (a dh_run result) rejected the command with @p reason. */
#define DH_ASSERT_REJECTED(expr, reason)                                                           \
    do {                                                                                           \
        const char *dh_reason_ = (expr);                                                           \
        ES_ASSERT_STR_EQ(dh_reason_ ? dh_reason_ : "(accepted)", reason);                          \
    } while (0)

typedef struct {
    const es_aggregate_def_t *def;
    void *state;
    es_emitter_t *em;
    avro_schema_t commands;
    avro_value_iface_t *iface;
    avro_value_t holder;
    avro_value_t payload;
    const char *type;
} dh_t;

void dh_init(dh_t *h, const es_aggregate_def_t *def);
void dh_free(dh_t *h);
/** @brief Start a command of @p type; returns its payload record to fill. */
avro_value_t *dh_command(dh_t *h, const char *type);
void dh_set_string(avro_value_t *rec, const char *field, const char *v);
void dh_set_long(avro_value_t *rec, const char *field, int64_t v);
/** @brief Decide; when accepted, evolve the state with the events. Returns the reason or NULL. */
const char *dh_run(dh_t *h);
/** @brief Type of event @p i of the last command ("" past the end). */
const char *dh_event_type(dh_t *h, size_t i);
/** @brief long field of event @p i of the last command. */
int64_t dh_event_long(dh_t *h, size_t i, const char *field);

#endif
