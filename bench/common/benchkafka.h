/*
 * benchkafka.h — what the benchmarks that write history straight to Kafka
 * share (bench/read/bench_rebuild.c, bench/write/state_history.c): a serde
 * for a topic's events, a producer tuned for bulk loading, a send that waits
 * while the local queue is full, and the clean-up of a run's topics.  Every failure ends the
 * program: a benchmark's set-up has no one to recover for.
 */
#ifndef ESCQRS_BENCH_KAFKA_H
#define ESCQRS_BENCH_KAFKA_H

#include "escqrs/conf.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"

#include <librdkafka/rdkafka.h>

/** @brief Print "bench: @p what: @p err" and exit 1. */
void bench_die(const char *what, const char *err) __attribute__((noreturn));

/** @brief Environment variable @p name, or @p def when unset or empty. */
const char *bench_env_or(const char *name, const char *def);

/**
 * @brief A serde writing schema @p schema (registered) under `<topic>-value` on
 *        the registry of ESCQRS_TEST_REGISTRY; *reg is the registry to destroy.
 */
es_serde_t *bench_serde(const char *topic, const char *schema, es_registry_t **reg);

/** @brief A producer of @p conf for bulk loading (linger 50 ms, 1 MB batches). */
rd_kafka_t *bench_bulk_producer(const es_conf_t *conf,
                                void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *));

/** @brief Produce one record (copied; @p h taken), waiting while the queue is full. */
void bench_send(rd_kafka_t *rk, const char *topic, const char *key, size_t keylen, const void *val,
                size_t len, rd_kafka_headers_t *h);

/**
 * @brief Delete every topic whose name starts with @p prefix, which must
 *        start with "bench-" (a benchmark cleans up only what benchmarks
 *        make); prints how many.  A run's topics would otherwise pile up on
 *        the test broker (thousands slow it down, and its disk fills).
 */
void bench_delete_topics(const es_conf_t *conf, const char *prefix);

#endif
