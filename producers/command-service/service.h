/*
 * service.h — what main.c of escqrs-command-service calls; the files behind
 * it are listed in service_int.h.
 */
#ifndef ESCQRS_COMMAND_SERVICE_H
#define ESCQRS_COMMAND_SERVICE_H

#include "escqrs/aggregate.h"
#include "escqrs/conf.h"
#include "escqrs/metrics.h"

#include <signal.h>
#include <stdbool.h>

typedef struct cs_s cs_t;

/** @brief Connect to the registry, Kafka and the store; create topics if asked. */
cs_t *cs_new(const es_conf_t *conf, const es_aggregate_def_t *def, es_metrics_t *metrics,
             char *errstr, size_t errstr_size);
/**
 * @brief Take commands until *@p stop is set.
 * @returns 0 after a clean stop, 2 when an error no retry can fix stopped
 *          it (configuration, topics whose partition counts disagree, a
 *          schema the registry refuses).  Fenced or fatal Kafka clients and
 *          store failures are recovered from in the process.
 */
int cs_run(cs_t *cs, volatile sig_atomic_t *stop);
/** @brief Ready: partitions assigned and caught up. Thread-safe. */
bool cs_ready(cs_t *cs, char *why, size_t whysz);
void cs_destroy(cs_t *cs);

#endif
