/*
 * main.c — escqrs-gateway: the HTTP command API of the write side (see gateway.c).
 *
 * Configuration is the table below plus the common and Kafka tables; the
 * aggregates come from the domain modules loaded at start-up (modules.h).
 * SIGINT/SIGTERM stop accepting requests, let the ones in flight finish
 * (their outcomes still arrive) and exit 0.
 */
#include "escqrs/http_server.h"
#include "escqrs/kafka.h"
#include "escqrs/registry.h"
#include "escqrs/log.h"
#include "escqrs/modules.h"
#include "gateway.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#define STOP_POLL_MS 100 /* how often the main thread looks at the stop flag */

static const es_conf_def_t gateway_defs[] = {
    {.name = "http.listen",
     .type = ES_CONF_STRING,
     .defval = "127.0.0.1:8080",
     .desc = "Address of the command API (port 0 picks a free port)"},
    {.name = "http.max.body",
     .type = ES_CONF_INT,
     .defval = "16384",
     .min = 64,
     .max = 16777216,
     .desc = "Largest request body in bytes; larger ones get 413 payload_too_large"},
    {.name = "aggregates",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Comma-separated aggregates whose commands this gateway accepts; empty: every "
             "aggregate of the loaded modules"},
    {.name = "request.timeout.ms",
     .type = ES_CONF_INT,
     .defval = "5000",
     .min = 10,
     .max = 600000,
     .desc = "Longest wait for a command's outcome before answering 504 timeout"},
    {.name = "topics.create",
     .type = ES_CONF_BOOL,
     .defval = "false",
     .desc = "Create each aggregate's commands, events and results topics at start-up"},
    {.name = NULL},
};

static const es_conf_def_t *const tables[] = {
    es_conf_common_defs,   es_kafka_conf_defs, es_kafka_watch_conf_defs,
    es_registry_conf_defs, es_http_conf_defs,  es_auth_conf_defs,
    es_modules_conf_defs,  gateway_defs,       NULL};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

int main(int argc, char **argv, char **envp)
{
    char errstr[1024];
    es_conf_t *conf = es_conf_load_or_exit("escqrs-gateway", tables, &argc, argv, envp);
    es_modules_load_or_exit(conf, "gateway");
    es_metrics_t *metrics = es_metrics_new();
    es_http_server_t *srv = NULL;
    gw_t *gw = NULL;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    gw = gw_new(conf, metrics, errstr, sizeof(errstr));
    if (!gw) {
        es_log_error("gateway", "%s", errstr);
        rc = 2; /* configuration: a restart does not help */
        goto out;
    }
    srv = gw_http_start(gw, errstr, sizeof(errstr));
    if (!srv) {
        es_log_error("gateway", "http: %s", errstr);
        goto out;
    }
    es_log_info("gateway", "serving on port %d", es_http_server_port(srv));
    while (!stop_signal && !gw_producer_failed(gw, errstr, sizeof(errstr)))
        usleep(STOP_POLL_MS * 1000); /* the signal may land on any thread: poll the flag */
    if (!stop_signal) {
        es_log_error("gateway", "%s", errstr); /* a restart makes a new producer */
        goto out;
    }
    es_log_info("gateway", "signal %d: stopping", (int)stop_signal);
    rc = 0;
out:
    gw_shutdown(gw);          /* answers the requests still waiting */
    es_http_server_stop(srv); /* waits for the handlers in flight */
    gw_destroy(gw);
    es_metrics_destroy(metrics);
    es_conf_destroy(conf);
    return rc;
}
