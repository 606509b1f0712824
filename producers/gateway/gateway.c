/*
 * gateway.c — the HTTP command API of the write side: set-up, readiness,
 * shutdown.
 *
 * A request becomes a command record on <agg>.commands; the answer is the
 * command's outcome read from <agg>.command-results (request.c), matched to
 * the request by command id in a table of waiters (waiters.c) that the
 * results thread (results.c) fills.  Nothing is stored, so replicas scale
 * freely and a restart loses only the answers in flight (clients retry
 * with the same Idempotency-Key and get the first outcome).
 *
 * Start-up never fails on an absent registry or broker: this file only
 * builds the clients (a bad `kafka.*` key is the one Kafka error that stops
 * the program) and starts the threads; the results thread retries the rest
 * while /readyz says what is missing.  Shutdown answers every request
 * still waiting (504, retry with the same key) before the HTTP server
 * stops.
 */
#include "gateway_int.h"

#include "escqrs/mem.h"
#include "escqrs/modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCER_POLL_MS 100 /* one poll of the producer's delivery reports */

/*
 * A command is sent the moment it is produced (linger.ms 0: a lone client
 * no longer waits out a linger, which librdkafka 2.0.2 rounds up to a whole
 * millisecond wake-up or more), and batching under load comes from keeping
 * one request in flight: what is produced meanwhile goes out together when
 * it returns.  Measured (write-bench, 1 and 512 clients, alternated, 3
 * December): one client's p50 3.9-4.7 -> 2.8-3.1 ms; linger 0 alone cost
 * 5-15 % of the 512-client rate (the broker's CPU per command 0.05-0.08 ->
 * 0.07-0.10 ms, more produce requests), one request in flight won it back
 * (docs/write-side.md, "Measured").  Users' kafka.* keys override both.
 */
static const es_kafka_prop_t producer_defaults[] = {
    {"linger.ms", "0"},
    {"max.in.flight.requests.per.connection", "1"},
    {NULL, NULL},
};

/* The producer's delivery reports: they answer the requests whose command was not written. */
static void *poll_main(void *arg)
{
    gw_t *gw = arg;
    while (!atomic_load(&gw->stop))
        es_producer_poll(gw->prod, PRODUCER_POLL_MS);
    return NULL;
}

bool gw_producer_failed(gw_t *gw, char *why, size_t whysz)
{
    char reason[256] = "";
    rd_kafka_resp_err_t err =
        gw && gw->prod ? rd_kafka_fatal_error(es_producer_rk(gw->prod), reason, sizeof(reason))
                       : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err)
        snprintf(why, whysz, "the Kafka producer failed for good (%s: %s); the gateway stops",
                 rd_kafka_err2name(err), reason);
    return err != RD_KAFKA_RESP_ERR_NO_ERROR;
}

/*
 * Ready while the producer works, the outcomes are read and a broker
 * answers.  A served aggregate without a command service does not make the
 * gateway unready (its commands get 503 at once, the others still work)
 * unless it is the only kind there is: then the gateway can do nothing
 * (docs/operations.md).
 */
static bool gw_ready(void *opaque, char *why, size_t whysz)
{
    gw_t *gw = opaque;
    if (gw_producer_failed(gw, why, whysz))
        return false;
    if (!es_kafka_watch_broker_ok(gw->watch, why, whysz))
        return false;
    if (!atomic_load(&gw->ready)) {
        pthread_mutex_lock(&gw->why_mu);
        snprintf(why, whysz, "%s", gw->not_ready);
        pthread_mutex_unlock(&gw->why_mu);
        return false;
    }
    size_t served = 0;
    for (size_t a = 0; a < gw->naggs; a++)
        served += es_kafka_watch_group(gw->watch, a) != ES_GROUP_EMPTY;
    if (!served) {
        snprintf(why, whysz, "no command service is running for any of the %zu aggregate(s)",
                 gw->naggs);
        return false;
    }
    return true;
}

es_http_server_t *gw_http_start(gw_t *gw, char *errstr, size_t errstr_size)
{
    static const es_http_route_t routes[] = {
        /* never waits: it encodes, produces without waiting and defers (request.c) */
        {"POST", "/v1/{collection}/{id}/{command}", gw_command_handler,
         "command:{collection}.{command}", .never_waits = true},
    };
    es_http_server_conf_t hc = {
        .max_body = (size_t)es_conf_get_int(gw->conf, "http.max.body"),
        .routes = routes,
        .nroutes = 1,
        .opaque = gw,
        .metrics = gw->metrics,
        .ready = gw_ready,
        .auth = gw->auth,
    };
    es_http_server_conf_from(gw->conf, &hc);
    return es_http_server_start(&hc, errstr, errstr_size);
}

/* ------------------------------------------------------------------ set-up */

/* Serve aggregate @p def: its topics and its command-service group. */
static bool add_aggregate(gw_t *gw, const es_aggregate_def_t *def, char groups[][GW_GROUP_MAX],
                          char *errstr, size_t errstr_size)
{
    const char *prefix = es_conf_get(gw->conf, "aggregate.prefix");
    if (gw->naggs == GW_MAX_AGGS) {
        snprintf(errstr, errstr_size, "aggregates: at most %d", GW_MAX_AGGS);
        return false;
    }
    gw_agg_t *ag = &gw->aggs[gw->naggs];
    ag->def = def;
    snprintf(ag->name, sizeof(ag->name), "%s%s", prefix ? prefix : "", def->name);
    es_topic_name(ag->name, ES_TOPIC_COMMANDS, NULL, ag->t_cmd, sizeof(ag->t_cmd));
    es_topic_name(ag->name, ES_TOPIC_RESULTS, NULL, ag->t_res, sizeof(ag->t_res));
    snprintf(groups[gw->naggs], GW_GROUP_MAX, "%s.command-service", ag->name);
    pthread_mutex_init(&ag->mu, NULL);
    gw->naggs++;
    return true;
}

/* The aggregates of `aggregates` (empty: every loaded one), and the command-service group of each.
 */
static bool add_aggregates(gw_t *gw, char groups[][GW_GROUP_MAX], char *errstr, size_t errstr_size)
{
    char *list = es_strdup(es_conf_get(gw->conf, "aggregates")), *save = NULL;
    bool ok = true;
    if (!*list)
        for (size_t i = 0; ok && i < es_modules_aggregate_count(); i++)
            ok = add_aggregate(gw, es_modules_aggregate_at(i), groups, errstr, errstr_size);
    for (char *tok = strtok_r(list, ", ", &save); ok && tok; tok = strtok_r(NULL, ", ", &save)) {
        const es_aggregate_def_t *def = es_modules_aggregate(tok);
        if (!def) {
            snprintf(errstr, errstr_size, "aggregates: no aggregate named %s in the loaded modules",
                     tok);
            ok = false;
        } else {
            ok = add_aggregate(gw, def, groups, errstr, errstr_size);
        }
    }
    if (ok && gw->naggs == 0) {
        snprintf(errstr, errstr_size, "aggregates: none configured, and no loaded module has one");
        ok = false;
    }
    free(list);
    return ok;
}

/*
 * The idempotent producer of commands and the results consumer (manual
 * assignment).  The outcomes' fetch waits librdkafka's default 500 ms, as
 * the projector's does: a commit's marker ends the wait at once
 * (read_committed); 10 ms, set here until 4 December, only added 100 empty
 * fetches a second on an idle gateway (docs/write-side.md, "Idle fetches").
 */
static bool clients_open(gw_t *gw, char *errstr, size_t errstr_size)
{
    es_producer_opts_t po = {
        .defaults = producer_defaults,
        .on_delivery = gw_on_delivery,
        .opaque = gw,
    };
    es_consumer_opts_t co = {
        .group_id = "escqrs-gateway-unused",
    };
    return (gw->prod = es_producer_new_opts(gw->conf, &po, errstr, errstr_size)) &&
           (gw->results = es_consumer_new_opts(gw->conf, &co, errstr, errstr_size));
}

static bool threads_start(gw_t *gw, char *errstr, size_t errstr_size)
{
    if (pthread_create(&gw->poll_thr, NULL, poll_main, gw)) {
        snprintf(errstr, errstr_size, "cannot start the producer thread");
        return false;
    }
    if (pthread_create(&gw->res_thr, NULL, gw_results_main, gw)) {
        atomic_store(&gw->stop, true);
        pthread_join(gw->poll_thr, NULL);
        snprintf(errstr, errstr_size, "cannot start the results thread");
        return false;
    }
    gw->threads = true;
    return true;
}

gw_t *gw_new(const es_conf_t *conf, es_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    gw_t *gw = es_calloc(1, sizeof(*gw));
    char group_names[GW_MAX_AGGS][GW_GROUP_MAX];
    const char *groups[GW_MAX_AGGS];

    gw->conf = conf;
    gw->metrics = metrics;
    gw->timeout_ms = (int)es_conf_get_int(conf, "request.timeout.ms");
    pthread_mutex_init(&gw->mu, NULL);
    pthread_mutex_init(&gw->why_mu, NULL);
    gw_set_not_ready(gw, "starting");
    gw->h_latency = es_metrics_histogram(metrics, "escqrs_gateway_request_seconds",
                                         "Time from request to outcome", NULL,
                                         es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    gw->h_outcome_wait = es_metrics_histogram(
        metrics, "escqrs_gateway_outcome_wait_seconds",
        "From an outcome's produce (its record's CreateTime, before its commit) to the gateway "
        "reading it",
        NULL, es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    if (!(gw->reg = es_registry_from_conf(conf, GW_REGISTRY_RETRIES, errstr, errstr_size)) ||
        !add_aggregates(gw, group_names, errstr, errstr_size))
        goto fail;
    for (size_t i = 0; i < gw->naggs; i++)
        groups[i] = group_names[i];
    if (!(gw->watch = es_kafka_watch_start(conf, groups, gw->naggs, errstr, errstr_size)) ||
        !(gw->auth = es_auth_new(conf, errstr, errstr_size)) ||
        !clients_open(gw, errstr, errstr_size) || !threads_start(gw, errstr, errstr_size))
        goto fail;
    return gw;
fail:
    gw_destroy(gw);
    return NULL;
}

void gw_shutdown(gw_t *gw)
{
    if (!gw)
        return;
    atomic_store(&gw->stop, true);
    if (gw->threads) {
        pthread_join(gw->res_thr, NULL);
        pthread_join(gw->poll_thr, NULL);
        gw->threads = false;
    }
    /* Every request still waiting gets its answer before the HTTP server stops. */
    gw_waiters_finish_all(gw);
}

void gw_destroy(gw_t *gw)
{
    if (!gw)
        return;
    gw_shutdown(gw);
    es_producer_destroy(gw->prod); /* the delivery reports release the waiters' last refs */
    es_consumer_destroy(gw->results);
    es_kafka_watch_stop(gw->watch);
    es_auth_destroy(gw->auth);
    for (size_t i = 0; i < gw->naggs; i++) {
        if (gw->aggs[i].have_value)
            avro_value_decref(&gw->aggs[i].value);
        es_serde_destroy(gw->aggs[i].cmd_serde);
        pthread_mutex_destroy(&gw->aggs[i].mu);
    }
    es_serde_destroy(gw->res_serde);
    es_registry_destroy(gw->reg);
    pthread_mutex_destroy(&gw->mu);
    pthread_mutex_destroy(&gw->why_mu);
    free(gw);
}
