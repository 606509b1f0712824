/**
 * @file metrics.h
 * @brief Counters, gauges and histograms rendered in the Prometheus text format.
 *
 * Metrics are created once at start-up (es_metrics_counter() finds or creates
 * by name and labels under a lock) and then updated lock-free with atomics on
 * the hot path.  es_metrics_render() writes the exposition format served at
 * GET /metrics.
 *
 * @remark Thread-safe.  Handles live as long as the registry.
 */
#ifndef ESCQRS_METRICS_H
#define ESCQRS_METRICS_H

#include "escqrs/mem.h"

#include <stddef.h>
#include <stdint.h>

typedef struct es_metrics_s es_metrics_t;
typedef struct es_metric_s es_counter_t;
typedef struct es_metric_s es_gauge_t;
typedef struct es_metric_s es_histogram_t;

es_metrics_t *es_metrics_new(void);
void es_metrics_destroy(es_metrics_t *m);

/**
 * @param name e.g. "escqrs_commands_total"
 * @param labels NULL or the label set as written, e.g. `reason="cart_empty"`
 */
es_counter_t *es_metrics_counter(es_metrics_t *m, const char *name, const char *help,
                                 const char *labels);
es_gauge_t *es_metrics_gauge(es_metrics_t *m, const char *name, const char *help,
                             const char *labels);
/** @param bounds ascending upper bounds (the +Inf bucket is implicit), copied */
es_histogram_t *es_metrics_histogram(es_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *bounds, size_t nbounds);

void es_counter_add(es_counter_t *c, uint64_t n);
uint64_t es_counter_value(const es_counter_t *c);
void es_gauge_set(es_gauge_t *g, double v);
void es_histogram_observe(es_histogram_t *h, double v);

/** @brief Default latency buckets in seconds (0.5 ms .. 10 s). */
extern const double es_metrics_latency_buckets[];
extern const size_t es_metrics_latency_nbuckets;

/** @brief Append the Prometheus text exposition of every metric to @p out. */
void es_metrics_render(es_metrics_t *m, es_buf_t *out);

#endif
