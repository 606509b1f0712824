/*
 * main.c — escqrs-command-service: decides commands of one aggregate type and
 * publishes their events and outcomes, exactly once (see service.c).
 *
 * Configuration is the table below plus the common and Kafka tables; the
 * aggregate comes from the domain modules loaded at start-up (modules.h).
 * The health endpoints come up first, so an orchestrator sees a live
 * process that says why it is not ready while the broker, the registry or
 * the store are not there yet (service.c retries with a back-off).
 * SIGINT/SIGTERM finish the batch in hand, leave the group and exit 0; a
 * fenced or fatal Kafka client is re-created in the process; only an error
 * no retry can fix (bad configuration, topics that disagree, a schema the
 * registry refuses) exits non-zero (2).
 */
#include "escqrs/http_server.h"
#include "escqrs/kafka.h"
#include "escqrs/store.h"
#include "escqrs/registry.h"
#include "escqrs/log.h"
#include "escqrs/modules.h"
#include "service.h"

#include <signal.h>
#include <stdlib.h>

/* Largest request body: this listener serves only /healthz, /readyz and /metrics. */
#define HEALTH_MAX_BODY 1024

static const es_conf_def_t service_defs[] = {
    {.name = "aggregate",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Aggregate type this service decides for (topics <prefix><aggregate>.*), one of "
             "the loaded modules' aggregates; empty: the first one of the first module"},
    {.name = "http.listen",
     .type = ES_CONF_STRING,
     .defval = "127.0.0.1:8070",
     .desc = "Address of /healthz, /readyz and /metrics (port 0 picks a free port)"},
    {.name = "store.path",
     .type = ES_CONF_STRING,
     .defval = "./data/command-service",
     .min = 1,
     .desc = "RocksDB aggregate store (a cache of the state and events topics: safe to delete)"},
    {.name = "batch.max",
     .type = ES_CONF_INT,
     .defval = "500",
     .min = 1,
     .max = 100000,
     .desc = "Most commands decided in one Kafka transaction"},
    {.name = "batch.linger.ms",
     .type = ES_CONF_INT,
     .defval = "2",
     .min = 0,
     .max = 1000,
     .desc = "Under load (the batch before held more than one command), wait up to this long "
             "for more once a batch has a command; otherwise decide what is queued at once"},
    {.name = "transactional.id",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Kafka transactional.id; empty: <prefix><agg>.command-service-<hostname> (stable "
             "per pod, so a restart fences and aborts its predecessor at once)"},
    {.name = "state.restore",
     .type = ES_CONF_BOOL,
     .defval = "true",
     .desc = "On assignment, restore an empty store from <agg>.state and catch up only the "
             "events after it; false: restore the decisions all the same (remembered outcomes, "
             "rejections included) but compute every state again from <agg>.events from offset "
             "0 (state records are written either way)"},
    {.name = "catchup.stall.timeout.ms",
     .type = ES_CONF_INT,
     .defval = "30000",
     .min = 1000,
     .max = 3600000,
     .desc = "A catch-up that gets neither a record nor the partition's end for this long "
             "gives up and the Kafka clients are re-created (a stalled fetcher would otherwise "
             "keep the partition's commands waiting for ever)"},
    {.name = "state.commands.remembered",
     .type = ES_CONF_INT,
     .defval = "32",
     .min = 0,
     .max = 1000,
     .desc = "Last outcomes of each aggregate remembered, in the store and as records of "
             "<agg>.state (older ones are deleted and get tombstones): a retry of one of them, "
             "after a restore too, gets its first answer; 0: the store keeps every outcome and "
             "<agg>.state none"},
    {.name = "topics.create",
     .type = ES_CONF_BOOL,
     .defval = "false",
     .desc = "Create the aggregate's commands, events, results and state topics at start-up"},
    {.name = NULL},
};

static const es_conf_def_t *const tables[] = {
    es_conf_common_defs,   es_kafka_conf_defs, es_kafka_watch_conf_defs,
    es_registry_conf_defs, es_store_conf_defs, es_http_conf_defs,
    es_modules_conf_defs,  service_defs,       NULL};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static bool ready(void *opaque, char *why, size_t whysz)
{
    return cs_ready(opaque, why, whysz);
}

int main(int argc, char **argv, char **envp)
{
    char errstr[1024];
    es_conf_t *conf = es_conf_load_or_exit("escqrs-command-service", tables, &argc, argv, envp);
    es_metrics_t *metrics = es_metrics_new();
    es_http_server_t *srv = NULL;
    cs_t *cs = NULL;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    es_modules_load_or_exit(conf, "command-service");
    const char *name = es_conf_get(conf, "aggregate");
    const es_aggregate_def_t *def = *name ? es_modules_aggregate(name) : es_modules_aggregate_at(0);
    if (!def) {
        es_log_error("command-service",
                     "aggregate: no aggregate named \"%s\" in the loaded "
                     "modules (%s)",
                     name, es_conf_get(conf, "modules"));
        rc = 2;
        goto out;
    }
    cs = cs_new(conf, def, metrics, errstr, sizeof(errstr));
    if (!cs) {
        es_log_error("command-service", "%s", errstr);
        rc = 2;
        goto out;
    }
    es_http_server_conf_t hc = {
        .max_body = HEALTH_MAX_BODY,
        .opaque = cs,
        .metrics = metrics,
        .ready = ready,
    };
    es_http_server_conf_from(conf, &hc);
    srv = es_http_server_start(&hc, errstr, sizeof(errstr));
    if (!srv) {
        es_log_error("command-service", "http: %s", errstr);
        goto out;
    }
    es_log_info("command-service", "health on port %d", es_http_server_port(srv));
    rc = cs_run(cs, &stop_signal);
    if (stop_signal)
        es_log_info("command-service", "signal %d: stopped", (int)stop_signal);
out:
    es_http_server_stop(srv);
    cs_destroy(cs);
    es_metrics_destroy(metrics);
    es_conf_destroy(conf);
    return rc;
}
