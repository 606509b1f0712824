/*
 * gateway.h — what main.c of escqrs-gateway calls; the files behind it are
 * listed in gateway_int.h.
 */
#ifndef ESCQRS_GATEWAY_H
#define ESCQRS_GATEWAY_H

#include "escqrs/conf.h"
#include "escqrs/http_server.h"
#include "escqrs/metrics.h"

typedef struct gw_s gw_t;

/** @brief Producer, serdes and the results reader for the configured aggregates. */
gw_t *gw_new(const es_conf_t *conf, es_metrics_t *metrics, char *errstr, size_t errstr_size);
/** @brief Serve the HTTP API (returns the server; stop it before gw_destroy). */
es_http_server_t *gw_http_start(gw_t *gw, char *errstr, size_t errstr_size);
/** @brief Stop reading and answer every request still waiting (before the server stops). */
void gw_shutdown(gw_t *gw);
/**
 * @brief Has the producer failed for good (a fatal librdkafka error: an
 *        idempotent producer refused its producer id, or that can no longer
 *        keep its order)?  Every command would then be refused until a
 *        restart: /readyz says so, and main() stops (exit 1) for the
 *        orchestrator to start it again.  @p why says what failed.
 */
bool gw_producer_failed(gw_t *gw, char *why, size_t whysz);
void gw_destroy(gw_t *gw);

#endif
