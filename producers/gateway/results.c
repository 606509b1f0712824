/*
 * results.c — the gateway's results thread: get ready, then read every
 * outcome and hand it to the requests waiting for it.
 *
 * Each gateway reads every partition of the results topics itself (manual
 * assignment from the end at start, read_committed so an aborted
 * transaction's outcome is never seen): nothing is stored, so replicas
 * scale freely and a restart loses only the answers in flight (clients
 * retry with the same Idempotency-Key and get the first outcome).  The
 * `command-id` header lets the thread skip, without decoding, the outcomes
 * no request here waits for.
 *
 * Start-up never fails on an absent registry or broker: the schemas, the
 * topics and the assignment are retried here with a back-off while /readyz
 * says what is missing; the gateway answers 503 until this thread is ready.
 */
#include "gateway_int.h"

#include "escqrs/envelope.h"
#include "escqrs/log.h"
#include "escqrs/util.h"
#include "escqrs/schemas.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define METADATA_TIMEOUT_MS 5000 /* results topic metadata and watermarks */
#define RESULTS_POLL_MS     50   /* one poll; waiters are expired between polls */
#define RESULTS_FOLLOW_MS   1000 /* how often the results topics' counts are looked at */

void gw_set_not_ready(gw_t *gw, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&gw->why_mu);
    va_start(ap, fmt);
    vsnprintf(gw->not_ready, sizeof(gw->not_ready), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&gw->why_mu);
}

/* Add every partition of @p ag's results topic to @p tl at its current end. */
static bool add_at_end(gw_t *gw, gw_agg_t *ag, rd_kafka_topic_partition_list_t *tl)
{
    const char *topic = ag->t_res;
    rd_kafka_t *rk = es_consumer_rk(gw->results);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_resp_err_t terr = kerr                               ? kerr
                               : md->topic_cnt != 1               ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                               : md->topics[0].err                ? md->topics[0].err
                               : md->topics[0].partition_cnt == 0 ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                                                                  : RD_KAFKA_RESP_ERR_NO_ERROR;
    bool ok = !terr;
    if (terr)
        gw_set_not_ready(gw, "results topic %s not readable: %s", topic, rd_kafka_err2str(terr));
    for (int p = 0; ok && p < md->topics[0].partition_cnt; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, METADATA_TIMEOUT_MS)) {
            gw_set_not_ready(gw, "end of %s [%d] unknown", topic, p);
            ok = false;
            break;
        }
        rd_kafka_topic_partition_list_add(tl, topic, p)->offset = hi;
    }
    if (ok) {
        ag->res_parts = md->topics[0].partition_cnt;
        es_kafka_watch_topic(gw->watch, topic, ag->res_parts);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    return ok;
}

/* Assign every partition of every results topic from its current end. */
static bool results_assign(gw_t *gw)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(16);
    bool ok = true;
    for (size_t a = 0; a < gw->naggs && ok; a++)
        ok = add_at_end(gw, &gw->aggs[a], tl);
    if (ok && rd_kafka_assign(es_consumer_rk(gw->results), tl))
        ok = false;
    rd_kafka_topic_partition_list_destroy(tl);
    return ok;
}

/*
 * Partitions added to a results topic are read too, from their start: a
 * command service that checks its topics again (after an assignment of a
 * partition it did not know) writes outcomes to them, and a request waits for
 * each.  Adding partitions is still wrong (the command service refuses the
 * commands it then gets in another partition than their aggregate's), but no
 * answer written is missed here.
 */
static void results_follow(gw_t *gw)
{
    for (size_t a = 0; a < gw->naggs; a++) {
        gw_agg_t *ag = &gw->aggs[a];
        int have = es_kafka_watch_topic_partitions(gw->watch, ag->t_res);
        if (have <= ag->res_parts)
            continue;
        rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(have);
        for (int p = ag->res_parts; p < have; p++)
            rd_kafka_topic_partition_list_add(tl, ag->t_res, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_error_t *e = rd_kafka_incremental_assign(es_consumer_rk(gw->results), tl);
        if (e) {
            es_log_error("gateway", "cannot read the partitions added to %s: %s", ag->t_res,
                         rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        } else {
            es_log_warn("gateway", "%s has %d partitions, %d when read first: reading the new ones",
                        ag->t_res, have, ag->res_parts);
            ag->res_parts = have;
        }
        rd_kafka_topic_partition_list_destroy(tl);
    }
}

/* The aggregate whose results topic @p m was read from (NULL: none of ours). */
static const gw_agg_t *agg_of_results(const gw_t *gw, const rd_kafka_message_t *m)
{
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    for (size_t a = 0; a < gw->naggs; a++)
        if (!strcmp(gw->aggs[a].t_res, topic))
            return &gw->aggs[a];
    return NULL;
}

static void results_handle(gw_t *gw, rd_kafka_message_t *m)
{
    char id[ES_ID_MAX + 1], errstr[512], tp[ES_TRACEPARENT_LEN + 1], trace_id[ES_TRACE_ID_LEN + 1];
    avro_value_t *v;
    es_outcome_t o;
    uint64_t seen; /* the waiters registered before this outcome was read */
    /* the cheap skip first: most outcomes are for other gateways' requests */
    if (es_header_get(m, "command-id", id, sizeof(id)) || !gw_waiter_wanted(gw, id, &seen))
        return;
    const gw_agg_t *ag = agg_of_results(gw, m);
    if (!ag)
        return;
    double age = es_message_age_s(m);
    if (age >= 0)
        es_histogram_observe(gw->h_outcome_wait, age);
    if (es_serde_decode(gw->res_serde, m->payload, m->len, &v, errstr, sizeof(errstr)) ||
        es_outcome_from_value(v, &o, errstr, sizeof(errstr))) {
        es_trace_id_of(es_header_get(m, "traceparent", tp, sizeof(tp)) ? NULL : tp, trace_id);
        es_log_trace_set(trace_id); /* the line of the request it fails */
        es_log_warn("gateway", "undecodable outcome for %s: %s", id, errstr);
        es_log_trace_set(NULL);
        return;
    }
    gw_waiters_answer(gw, ag, &o, seen);
}

/* Schemas of every aggregate's commands and of the results (once). */
static es_err_t open_serdes(gw_t *gw, char *errstr, size_t errstr_size)
{
    char subj[300];
    es_err_t err;
    for (size_t a = 0; a < gw->naggs; a++) {
        gw_agg_t *ag = &gw->aggs[a];
        if (ag->cmd_serde)
            continue;
        snprintf(subj, sizeof(subj), "%s-value", ag->t_cmd);
        if ((err = es_serde_open(gw->reg, subj, es_schema_text(ag->def->commands_schema), true, 0,
                                 &ag->cmd_serde, errstr, errstr_size)))
            return err;
        pthread_mutex_lock(&ag->mu);
        es_serde_new_value(ag->cmd_serde, &ag->value);
        ag->have_value = true;
        pthread_mutex_unlock(&ag->mu);
    }
    if (!gw->res_serde) {
        snprintf(subj, sizeof(subj), "%s-value", gw->aggs[0].t_res);
        if ((err = es_serde_open(gw->reg, subj, es_schema_text("command-result"), true, 0,
                                 &gw->res_serde, errstr, errstr_size)))
            return err;
    }
    return ES_ERR_OK;
}

static es_err_t create_topics(gw_t *gw, char *errstr, size_t errstr_size)
{
    es_admin_t *adm = es_admin_new(gw->conf, errstr, errstr_size);
    es_err_t err = adm ? ES_ERR_OK : ES_ERR_CONF;
    for (size_t a = 0; a < gw->naggs && !err; a++) {
        es_topic_spec_t specs[4];
        char t_ev[256], t_state[256];
        es_topic_name(gw->aggs[a].name, ES_TOPIC_EVENTS, NULL, t_ev, sizeof(t_ev));
        es_topic_name(gw->aggs[a].name, ES_TOPIC_STATE, NULL, t_state, sizeof(t_state));
        es_topic_spec_for(gw->conf, ES_TOPIC_COMMANDS, gw->aggs[a].t_cmd, &specs[0]);
        es_topic_spec_for(gw->conf, ES_TOPIC_EVENTS, t_ev, &specs[1]);
        es_topic_spec_for(gw->conf, ES_TOPIC_RESULTS, gw->aggs[a].t_res, &specs[2]);
        es_topic_spec_for(gw->conf, ES_TOPIC_STATE, t_state, &specs[3]);
        err = es_admin_create_topics(adm, specs, 4, ES_KAFKA_TIMEOUT_MS, errstr, errstr_size);
    }
    es_admin_destroy(adm);
    return err;
}

/* Everything before the first command, retried until it works. */
static bool get_ready(gw_t *gw)
{
    char errstr[1024];
    es_err_t err;
    int backoff_ms = GW_BACKOFF_MIN_MS;
    bool topics_done = !es_conf_get_bool(gw->conf, "topics.create");
    while (!atomic_load(&gw->stop)) {
        if ((err = open_serdes(gw, errstr, sizeof(errstr)))) {
            gw_set_not_ready(gw, "schemas: %s", errstr);
        } else if (!topics_done && (err = create_topics(gw, errstr, sizeof(errstr)))) {
            gw_set_not_ready(gw, "topics: %s", errstr);
        } else {
            topics_done = true;
            if (results_assign(gw))
                return true;
        }
        if (err == ES_ERR_INCOMPATIBLE_SCHEMA || err == ES_ERR_SCHEMA || err == ES_ERR_CONF)
            es_log_error("gateway", "%s (needs a fix, not a retry; retrying anyway)", errstr);
        pthread_mutex_lock(&gw->why_mu);
        es_log_warn("gateway", "not ready, retrying in %d ms: %s", backoff_ms, gw->not_ready);
        pthread_mutex_unlock(&gw->why_mu);
        for (int slept = 0; slept < backoff_ms && !atomic_load(&gw->stop); slept += GW_NAP_SLICE_MS)
            rd_kafka_poll(es_consumer_rk(gw->results), GW_NAP_SLICE_MS);
        backoff_ms = es_backoff_next(backoff_ms, GW_BACKOFF_MAX_MS);
    }
    return false;
}

void *gw_results_main(void *arg)
{
    gw_t *gw = arg;
    if (get_ready(gw)) {
        atomic_store(&gw->ready, true);
        es_log_info("gateway", "reading outcomes from %zu results topic(s)", gw->naggs);
    }
    int64_t followed_ms = es_mono_ms();
    while (!atomic_load(&gw->stop)) {
        if (es_mono_ms() - followed_ms >= RESULTS_FOLLOW_MS) {
            results_follow(gw);
            followed_ms = es_mono_ms();
        }
        rd_kafka_message_t *m = es_consumer_poll(gw->results, RESULTS_POLL_MS);
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    es_log_warn("gateway", "results: %s", rd_kafka_message_errstr(m));
            } else {
                results_handle(gw, m);
            }
            rd_kafka_message_destroy(m);
        }
        gw_waiters_expire(gw);
    }
    return NULL;
}
