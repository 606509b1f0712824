/*
 * connect.c — everything the command loop needs, each part once: topics,
 * schemas, store, Kafka clients; cs_new() and cs_destroy().
 *
 * Start-up never waits on others before the health endpoints answer: the
 * parts are connected from the loop, and parts already there are kept, so a
 * retry after a registry or broker outage picks up where it stopped.  Only
 * configuration errors, topics whose partition counts disagree and a schema
 * the registry refuses are not worth a retry.
 *
 * The Kafka clients, and why each setting:
 * - the producer is transactional with a stable id (default
 *   <prefix><agg>.command-service-<hostname>), so a restarted pod's
 *   init_transactions fences its predecessor and aborts its open
 *   transaction at once; `transaction.timeout.ms` is short (10 s) so an
 *   abandoned transaction holds read_committed readers back briefly;
 *   delivery reports carry the events' offsets (the outcomes' positions);
 * - the group consumer of <agg>.commands is a static member
 *   (`group.instance.id` = the transactional id): a restarted instance takes
 *   its partitions back at once instead of waiting out the dead member's
 *   session; catching up runs in its rebalance callback; its fetch waits
 *   librdkafka's default 500 ms, since a new command ends the wait at once
 *   (10 ms, until 4 December, cost an idle service 100 empty fetches a
 *   second: docs/write-side.md, "Idle fetches");
 * - the catch-up consumer only assigns, with end-of-partition events, to
 *   read <agg>.state and <agg>.events to their ends (read_committed: the
 *   end is the last stable offset).
 * A key the user sets under `kafka.` always wins over these defaults.
 */
#include "service_int.h"

#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"
#include "escqrs/schemas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REGISTRY_RETRIES 5 /* of one registry request, before the loop's back-off */

/* The layout of the store (overlay.c), recorded in it and checked at open. */
#define STORE_FORMAT "command-service/3"

/*
 * A transaction's records wait in librdkafka's queue until the batch flushes them (the
 * events' flush, then the commit's own flush; a flush does not wait out a linger), so
 * each partition gets one ProduceRequest per flush instead of one per millisecond of
 * deciding: 3 per topic and transaction at 512 clients instead of 5.7-8.5 (the broker's
 * request log), the broker's CPU per command 13 % lower (docs/write-side.md, "Measured",
 * 7 December).  100 ms only bounds a wait for room in a full queue (batch.max far
 * above its default).
 */
static const es_kafka_prop_t producer_defaults[] = {
    {"transaction.timeout.ms", "10000"}, /* an abandoned transaction holds readers 10 s */
    {"linger.ms", "100"},
    {NULL, NULL},
};

/* read_committed whatever kafka.isolation.level says: an aborted transaction's records
 * are no state, no event and no decision (the catch-up, the state tail, the check of
 * lost group offsets), and only such a reader asks for stable committed offsets. */
static const es_kafka_prop_t group_props[] = {
    {"enable.partition.eof", "false"},
    {"isolation.level", "read_committed"},
    {"enable.auto.commit", "false"}, /* offsets move with transactions only */
    {NULL, NULL}};
static const es_kafka_prop_t catchup_props[] = {
    {"enable.partition.eof", "true"}, {"isolation.level", "read_committed"}, {NULL, NULL}};
/* Catching up reads to the end: the last fetch there comes back empty after this wait. */
static const es_kafka_prop_t catchup_defaults[] = {{"fetch.wait.max.ms", "10"}, {NULL, NULL}};

/* Create the topics if asked, and check their partition counts agree. */
static es_err_t check_topics(cs_t *cs, char *errstr, size_t errstr_size)
{
    int pc_cmd = 0, pc_ev = 0, pc_res = 0, pc_state = 0;
    es_admin_t *adm = es_admin_new(cs->conf, errstr, errstr_size);
    es_err_t err = ES_ERR_OK;
    if (!adm)
        return ES_ERR_CONF;
    if (es_conf_get_bool(cs->conf, "topics.create")) {
        es_topic_spec_t specs[4];
        es_topic_spec_for(cs->conf, ES_TOPIC_COMMANDS, cs->t_cmd, &specs[0]);
        es_topic_spec_for(cs->conf, ES_TOPIC_EVENTS, cs->t_ev, &specs[1]);
        es_topic_spec_for(cs->conf, ES_TOPIC_RESULTS, cs->t_res, &specs[2]);
        es_topic_spec_for(cs->conf, ES_TOPIC_STATE, cs->t_state, &specs[3]);
        err = es_admin_create_topics(adm, specs, 4, ES_KAFKA_TIMEOUT_MS, errstr, errstr_size);
    }
    /* Events go to the partition number of their command: the counts must agree. */
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_cmd, ES_KAFKA_TIMEOUT_MS, &pc_cmd, errstr,
                                        errstr_size);
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_ev, ES_KAFKA_TIMEOUT_MS, &pc_ev, errstr,
                                        errstr_size);
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_res, ES_KAFKA_TIMEOUT_MS, &pc_res, errstr,
                                        errstr_size);
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_state, ES_KAFKA_TIMEOUT_MS, &pc_state, errstr,
                                        errstr_size);
    es_admin_destroy(adm);
    if (err == ES_ERR_NOT_FOUND) {
        snprintf(errstr, errstr_size,
                 "topics of %s missing: create them (escqrs topics create %s, or "
                 "topics.create=true)",
                 cs->agg, cs->agg);
        return ES_ERR_CONF;
    }
    if (!err && pc_cmd != pc_ev) {
        snprintf(errstr, errstr_size,
                 "%s has %d partitions but %s has %d: they must be equal (events go to the "
                 "partition number of their command)",
                 cs->t_cmd, pc_cmd, cs->t_ev, pc_ev);
        return ES_ERR_CONF;
    }
    if (!err && pc_state != pc_ev) {
        snprintf(errstr, errstr_size,
                 "%s has %d partitions but %s has %d: they must be equal (a state goes to the "
                 "partition number of its events)",
                 cs->t_state, pc_state, cs->t_ev, pc_ev);
        return ES_ERR_CONF;
    }
    cs->nparts = pc_ev;
    cs->nparts_res = pc_res;
    free(cs->state_next);
    cs->state_next = es_calloc((size_t)(pc_ev > 0 ? pc_ev : 1), sizeof(*cs->state_next));
    free(cs->refused);
    cs->refused = es_calloc((size_t)(pc_ev > 0 ? pc_ev : 1), sizeof(*cs->refused));
    cs_state_offsets_clear(cs);
    return err;
}

/* The registry's schemas of the three topics, and the values built from them. */
static es_err_t open_serdes(cs_t *cs, char *errstr, size_t errstr_size)
{
    struct {
        es_serde_t **serde;
        const char *topic, *schema;
    } want[] = {
        {&cs->cmd_serde, cs->t_cmd, cs->def->commands_schema},
        {&cs->ev_serde, cs->t_ev, cs->def->events_schema},
        {&cs->res_serde, cs->t_res, "command-result"},
        {&cs->state_serde, cs->t_state, "aggregate-state"},
    };
    char subj[300];
    es_err_t err;
    if (!cs->reg &&
        !(cs->reg = es_registry_from_conf(cs->conf, REGISTRY_RETRIES, errstr, errstr_size)))
        return ES_ERR_CONF;
    for (size_t i = 0; i < ES_ARRAY_SIZE(want); i++) {
        if (*want[i].serde)
            continue;
        snprintf(subj, sizeof(subj), "%s-value", want[i].topic);
        if ((err = es_serde_open(cs->reg, subj, es_schema_text(want[i].schema), true, 0,
                                 want[i].serde, errstr, errstr_size)))
            return err;
    }
    if (!cs->em && !(cs->em = es_emitter_new(cs->def->events_schema, errstr, errstr_size)))
        return ES_ERR_SCHEMA;
    es_serde_new_value(cs->ev_serde, &cs->ev_value);
    es_serde_new_value(cs->res_serde, &cs->res_value);
    es_serde_new_value(cs->state_serde, &cs->state_value);
    cs->have_values = true;
    return ES_ERR_OK;
}

/* The transactional producer, its transactions initialised. */
static es_err_t producer_open(cs_t *cs, char *errstr, size_t errstr_size)
{
    es_producer_opts_t po = {
        .transactional_id = cs->txid,
        .defaults = producer_defaults,
        .on_delivery = cs_on_delivery,
        .opaque = cs,
    };
    es_producer_t *prod = es_producer_new_opts(cs->conf, &po, errstr, errstr_size);
    if (!prod)
        return ES_ERR_CONF;
    if (es_producer_init_transactions(prod, errstr, errstr_size)) {
        es_producer_destroy_now(prod);
        return ES_ERR_KAFKA; /* no broker, or it did not answer in time: retry */
    }
    cs->prod = prod;
    return ES_ERR_OK;
}

/* The transactional producer and the two consumers, subscribed. */
static es_err_t clients_open(cs_t *cs, char *errstr, size_t errstr_size)
{
    const es_kafka_prop_t group_defaults[] = {
        {"group.instance.id", cs->txid}, /* static membership */
        {"session.timeout.ms", "10000"}, /* a dead static member is replaced after 10 s */
        {NULL, NULL},
    };
    es_consumer_opts_t catchup = {
        .group_id = "escqrs-catchup-unused",
        .props = catchup_props,
        .defaults = catchup_defaults,
    };
    es_consumer_opts_t group = {
        .group_id = cs->group,
        .props = group_props,
        .defaults = group_defaults,
        .on_rebalance = cs_on_rebalance,
        .opaque = cs,
    };
    const char *topics[] = {cs->t_cmd};
    es_err_t err;
    if ((err = producer_open(cs, errstr, errstr_size)))
        return err;
    if (!(cs->catchup = es_consumer_new_opts(cs->conf, &catchup, errstr, errstr_size)) ||
        !(cs->cons = es_consumer_new_opts(cs->conf, &group, errstr, errstr_size)))
        return ES_ERR_CONF;
    if (es_consumer_subscribe(cs->cons, topics, 1, errstr, errstr_size))
        return ES_ERR_KAFKA;
    cs_set_not_ready(cs, "waiting for partitions of %s (group %s)", cs->t_cmd, cs->group);
    return ES_ERR_OK;
}

/* Tear the Kafka clients down without waiting for a broker that may be gone. */
void cs_clients_close(cs_t *cs)
{
    es_consumer_destroy_now(cs->cons);
    es_consumer_destroy_now(cs->catchup);
    es_producer_destroy_now(cs->prod); /* an open transaction is aborted by the next epoch */
    cs->cons = cs->catchup = NULL;
    cs->prod = NULL;
    cs_overlay_clear(cs);
    /* No revoke runs here (the consumer is not closed): baselines are for partitions
     * owned and caught up, and the next assignment's catch-ups say which. */
    cs->nbaseline = 0;
    cs_refused_forget(cs, NULL); /* the next consumer's assignment checks them again */
}

es_err_t cs_connect(cs_t *cs, char *errstr, size_t errstr_size)
{
    es_err_t err;
    if (!cs->topics_checked) {
        cs_set_not_ready(cs, "checking the topics of %s", cs->agg);
        if ((err = check_topics(cs, errstr, errstr_size)))
            return err;
        cs->topics_checked = true;
    }
    if (!cs->have_values) {
        cs_set_not_ready(cs, "registering the schemas of %s", cs->agg);
        if ((err = open_serdes(cs, errstr, errstr_size)))
            return err;
    }
    if (!cs->store) {
        es_store_opts_t so = {0}; /* fields the configuration does not set stay 0/NULL */
        es_store_opts_from_conf(cs->conf, &so);
        so.format = STORE_FORMAT;
        so.format_remedy = "delete the store directory: it is restored from <agg>.state and "
                           "<agg>.events";
        if (!(cs->store =
                  es_store_open(es_conf_get(cs->conf, "store.path"), &so, errstr, errstr_size)))
            return ES_ERR_STORE;
    }
    cs_set_not_ready(cs, "connecting to Kafka as %s", cs->txid);
    if ((err = clients_open(cs, errstr, errstr_size)))
        return err;
    es_log_info("command-service", "aggregate %s: %s → %s, %s, %s (group %s, transactional.id %s)",
                cs->def->name, cs->t_cmd, cs->t_ev, cs->t_res, cs->t_state, cs->group, cs->txid);
    return ES_ERR_OK;
}

static void register_metrics(cs_t *cs, es_metrics_t *metrics)
{
    static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000};
    cs->c_accepted = es_metrics_counter(metrics, "escqrs_commands_accepted_total",
                                        "Commands accepted (events written)", NULL);
    cs->c_replayed = es_metrics_counter(metrics, "escqrs_commands_replayed_total",
                                        "Retried commands answered with their first outcome", NULL);
    cs->c_conflict = es_metrics_counter(metrics, "escqrs_commands_version_conflict_total",
                                        "Commands whose If-Match version did not match", NULL);
    cs->c_reused = es_metrics_counter(metrics, "escqrs_commands_idempotency_key_reused_total",
                                      "Idempotency keys reused for a different command", NULL);
    cs->c_undecodable = es_metrics_counter(metrics, "escqrs_commands_undecodable_total",
                                           "Command records that could not be decoded", NULL);
    cs->c_aborts = es_metrics_counter(metrics, "escqrs_transactions_aborted_total",
                                      "Transactions aborted and retried", NULL);
    cs->c_recoveries =
        es_metrics_counter(metrics, "escqrs_command_service_recoveries_total",
                           "Kafka clients re-created after a fatal or fenced client", NULL);
    cs->h_commit = es_metrics_histogram(metrics, "escqrs_transaction_commit_seconds",
                                        "Latency of commit_transaction", NULL,
                                        es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    cs->h_batch = es_metrics_histogram(metrics, "escqrs_batch_commands", "Commands per transaction",
                                       NULL, batch_bounds, ES_ARRAY_SIZE(batch_bounds));
    static const char *const steps[CS_STEP_COUNT] = {"decide", "events_flush", "outcomes_states",
                                                     "offsets", "store"};
    for (int i = 0; i < CS_STEP_COUNT; i++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "step=\"%s\"", steps[i]);
        cs->h_step[i] = es_metrics_histogram(
            metrics, "escqrs_transaction_step_seconds",
            "Time of one step of a transaction (the commit: escqrs_transaction_commit_seconds)",
            labels, es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    }
    cs->h_wait = es_metrics_histogram(
        metrics, "escqrs_command_wait_seconds",
        "From a command's produce (its record's CreateTime) to its batch being polled", NULL,
        es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    cs->c_caught_up_events =
        es_metrics_counter(metrics, "escqrs_command_service_catchup_events_total",
                           "Events of <agg>.events applied to the store on assignment", NULL);
    cs->c_restored_states =
        es_metrics_counter(metrics, "escqrs_command_service_restored_states_total",
                           "Records of <agg>.state applied to an empty store on assignment", NULL);
    cs->c_baseline_states =
        es_metrics_counter(metrics, "escqrs_command_service_baseline_states_total",
                           "State records written by baselines of <agg>.state partitions", NULL);
    cs->g_caught_up = es_metrics_gauge(metrics, "escqrs_command_service_caught_up",
                                       "1 once the assigned partitions are caught up", NULL);
    cs->g_baselines_pending = es_metrics_gauge(
        metrics, "escqrs_command_service_baselines_pending",
        "Owned <agg>.state partitions whose baseline is still to be written", NULL);
    cs->g_refused = es_metrics_gauge(
        metrics, "escqrs_command_service_partitions_refused",
        "Commands partitions refused: the group's offsets lost or moved back, or a command "
        "arriving in another partition than its aggregate's events",
        NULL);
}

/* Topic, group and transactional id names of the aggregate. */
static void name_things(cs_t *cs)
{
    const char *prefix = es_conf_get(cs->conf, "aggregate.prefix");
    const char *txid = es_conf_get(cs->conf, "transactional.id");
    char host[128] = "localhost";
    snprintf(cs->agg, sizeof(cs->agg), "%s%s", prefix ? prefix : "", cs->def->name);
    es_topic_name(cs->agg, ES_TOPIC_COMMANDS, NULL, cs->t_cmd, sizeof(cs->t_cmd));
    es_topic_name(cs->agg, ES_TOPIC_EVENTS, NULL, cs->t_ev, sizeof(cs->t_ev));
    es_topic_name(cs->agg, ES_TOPIC_RESULTS, NULL, cs->t_res, sizeof(cs->t_res));
    es_topic_name(cs->agg, ES_TOPIC_STATE, NULL, cs->t_state, sizeof(cs->t_state));
    snprintf(cs->group, sizeof(cs->group), "%s.command-service", cs->agg);
    if (txid && *txid) {
        snprintf(cs->txid, sizeof(cs->txid), "%s", txid);
    } else {
        gethostname(host, sizeof(host) - 1);
        /* %.100s: a host name longer than that is cut, the id stays unique enough */
        snprintf(cs->txid, sizeof(cs->txid), "%.*s-%.100s", (int)(sizeof(cs->txid) - 102),
                 cs->group, host);
    }
}

/* kafka.message.max.bytes leaves room for the service's own records: an outcome
 * and its <agg>.state copy carry ids, a principal and the trace context (a few
 * KiB at most), and a smaller limit would refuse them on every retry. */
static bool record_limit_ok(const es_conf_t *conf, char *errstr, size_t errstr_size)
{
    const char *v = es_conf_get(conf, "kafka.message.max.bytes");
    int64_t n;
    if (!v || (es_parse_i64(v, 0, INT64_MAX, &n) && n >= CS_RECORD_MIN_BYTES))
        return true; /* librdkafka's default (1000000) or its own range check */
    snprintf(errstr, errstr_size,
             "kafka.message.max.bytes: '%s' is not a number of bytes of at least %d, the "
             "least the command service's outcome records need",
             v, CS_RECORD_MIN_BYTES);
    return false;
}

cs_t *cs_new(const es_conf_t *conf, const es_aggregate_def_t *def, es_metrics_t *metrics,
             char *errstr, size_t errstr_size)
{
    if (!record_limit_ok(conf, errstr, errstr_size))
        return NULL;
    cs_t *cs = es_calloc(1, sizeof(*cs));
    cs->conf = conf;
    cs->def = def;
    cs->metrics = metrics;
    cs_overlay_init(cs);
    pthread_mutex_init(&cs->why_mu, NULL);
    cs->offsets_thread = es_handoff_new();
    snprintf(cs->not_ready, sizeof(cs->not_ready), "starting");
    cs->batch_max = (int)es_conf_get_int(conf, "batch.max");
    cs->linger_ms = (int)es_conf_get_int(conf, "batch.linger.ms");
    cs->remember_max = (size_t)es_conf_get_int(conf, "state.commands.remembered");
    cs->restore_enabled = es_conf_get_bool(conf, "state.restore");
    cs->catchup_stall_ms = (int)es_conf_get_int(conf, "catchup.stall.timeout.ms");
    name_things(cs);
    cs->pends = es_calloc((size_t)cs->batch_max, sizeof(*cs->pends));
    cs->evs = es_calloc((size_t)cs->batch_max * ES_AGG_MAX_EVENTS, sizeof(*cs->evs));
    register_metrics(cs, metrics);
    if (!(cs->watch = es_kafka_watch_start(conf, NULL, 0, errstr, errstr_size))) {
        cs_destroy(cs);
        return NULL;
    }
    return cs;
}

void cs_destroy(cs_t *cs)
{
    if (!cs)
        return;
    es_consumer_destroy(cs->cons); /* a clean stop leaves the group */
    cs->cons = NULL;
    cs_clients_close(cs);
    es_handoff_destroy(cs->offsets_thread); /* idle: every transaction waits for its offsets */
    es_kafka_watch_stop(cs->watch);
    es_store_close(cs->store);
    es_emitter_destroy(cs->em);
    if (cs->have_values) {
        avro_value_decref(&cs->ev_value);
        avro_value_decref(&cs->res_value);
        avro_value_decref(&cs->state_value);
    }
    es_serde_destroy(cs->cmd_serde);
    es_serde_destroy(cs->ev_serde);
    es_serde_destroy(cs->res_serde);
    es_serde_destroy(cs->state_serde);
    es_registry_destroy(cs->reg);
    pthread_mutex_destroy(&cs->why_mu);
    cs_overlay_free(cs);
    free(cs->pends);
    free(cs->evs);
    free(cs->baseline);
    free(cs->state_next);
    free(cs->refused);
    es_map_free(&cs->oversized);
    free(cs);
}
