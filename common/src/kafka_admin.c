/*
 * kafka_admin.c — topic names and settings of the architecture, and the
 * admin client (create topics, read a topic's config or partition count).
 *
 * Why here and nowhere else: an aggregate's topics must agree on their
 * partition count (an event goes to the partition number of its command)
 * and on retention (the log is kept forever, outcomes briefly), so every
 * program that creates or checks topics asks the same functions.  Creating a
 * topic that exists is fine; one that exists with another partition count is
 * an error, never silently accepted.
 */
#include "kafka_int.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How much longer than the request's own timeout an admin result is awaited. */
#define ADMIN_RESULT_GRACE_MS 1000
/* How often <agg>.state rolls a segment (only closed segments are compacted). */
#define ES_STATE_SEGMENT_MS 3600000
/* How often a created topic is looked up until the broker's metadata shows it. */
#define ADMIN_VISIBLE_POLL_MS 100

static void spec_add(es_topic_spec_t *s, const char *name, long long value)
{
    s->config_names[s->nconfigs] = name;
    snprintf(s->config_values[s->nconfigs], sizeof(s->config_values[0]), "%lld", value);
    s->nconfigs++;
}

static void spec_add_str(es_topic_spec_t *s, const char *name, const char *value)
{
    s->config_names[s->nconfigs] = name;
    snprintf(s->config_values[s->nconfigs], sizeof(s->config_values[0]), "%s", value);
    s->nconfigs++;
}

void es_topic_name(const char *agg, es_topic_kind_t kind, const char *projector, char *out,
                   size_t outsz)
{
    switch (kind) {
    case ES_TOPIC_COMMANDS:
        snprintf(out, outsz, "%s.commands", agg);
        break;
    case ES_TOPIC_EVENTS:
        snprintf(out, outsz, "%s.events", agg);
        break;
    case ES_TOPIC_RESULTS:
        snprintf(out, outsz, "%s.command-results", agg);
        break;
    case ES_TOPIC_DLQ:
        snprintf(out, outsz, "%s.events.dlq.%s", agg, projector ? projector : "projector");
        break;
    case ES_TOPIC_STATE:
        snprintf(out, outsz, "%s.state", agg);
        break;
    }
}

void es_topic_spec_for(const es_conf_t *conf, es_topic_kind_t kind, const char *name,
                       es_topic_spec_t *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->partitions = (int)es_conf_get_int(conf, "topics.partitions");
    out->replication_factor = (int)es_conf_get_int(conf, "topics.replication.factor");
    long long min_isr = es_conf_get_int(conf, "topics.min.insync.replicas");

    switch (kind) {
    case ES_TOPIC_COMMANDS:
    case ES_TOPIC_EVENTS:
    case ES_TOPIC_DLQ:
        spec_add_str(out, "cleanup.policy", "delete"); /* never compacted: the log is history */
        spec_add(out, "retention.ms", -1);
        break;
    case ES_TOPIC_RESULTS: /* the command audit (docs/write-side.md): forever by default */
        spec_add_str(out, "cleanup.policy", "delete");
        spec_add(out, "retention.ms", es_conf_get_int(conf, "topics.results.retention.ms"));
        break;
    case ES_TOPIC_STATE:
        /* A changelog, not history: the latest state per aggregate is all a restore
         * reads, so its size follows the live aggregates, not the events.  Compaction
         * only cleans closed segments: roll one at least hourly, and clean once a
         * tenth is superseded, so a restore reads few stale records. */
        spec_add_str(out, "cleanup.policy", "compact");
        spec_add(out, "segment.ms", ES_STATE_SEGMENT_MS);
        spec_add_str(out, "min.cleanable.dirty.ratio", "0.1");
        break;
    }
    spec_add(out, "min.insync.replicas", min_isr);
}

struct es_admin_s {
    rd_kafka_t *rk;
};

es_admin_t *es_admin_new(const es_conf_t *conf, char *errstr, size_t errstr_size)
{
    es_admin_t *adm = es_calloc(1, sizeof(*adm));
    /* ROLE_ANY: an admin handle needs none of the producer defaults (no PID). */
    adm->rk =
        es_kafka_handle_new(conf, ES_CONF_ROLE_ANY, RD_KAFKA_PRODUCER, NULL, errstr, errstr_size);
    if (!adm->rk) {
        free(adm);
        return NULL;
    }
    return adm;
}

void es_admin_destroy(es_admin_t *adm)
{
    if (!adm)
        return;
    rd_kafka_destroy(adm->rk);
    free(adm);
}

/* Runs one admin request on a private queue and waits for its result event. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, int timeout_ms)
{
    return rd_kafka_queue_poll(q, timeout_ms + ADMIN_RESULT_GRACE_MS);
}

/* A topic the controller says exists (created now, or by another client a
 * moment ago: two programs creating the same topics race): the broker's
 * metadata may lag, and callers look the topic up next, so wait until it is
 * visible; *have gets its partition count. */
static es_err_t wait_visible(es_admin_t *adm, const char *tname, int timeout_ms, int *have,
                             char *errstr, size_t errstr_size)
{
    int64_t until = es_mono_ms() + timeout_ms;
    es_err_t err;
    while ((err = es_admin_topic_partitions(adm, tname, timeout_ms, have, errstr, errstr_size)) ==
               ES_ERR_NOT_FOUND &&
           es_mono_ms() < until)
        usleep(ADMIN_VISIBLE_POLL_MS * 1000);
    return err;
}

/* A topic that exists already: fine when its partition count is the spec's. */
static es_err_t check_existing(es_admin_t *adm, const es_topic_spec_t *specs, size_t n,
                               const char *tname, int timeout_ms, char *errstr, size_t errstr_size)
{
    int have = 0;
    const es_topic_spec_t *spec = NULL;
    for (size_t s = 0; s < n; s++)
        if (!strcmp(specs[s].name, tname))
            spec = &specs[s];
    es_err_t err = wait_visible(adm, tname, timeout_ms, &have, errstr, errstr_size);
    if (err)
        return err;
    if (spec && have != spec->partitions) {
        snprintf(errstr, errstr_size,
                 "topic %s exists with %d partitions, not %d: aggregates need the same "
                 "partition count on every topic",
                 tname, have, spec->partitions);
        return ES_ERR_STATE;
    }
    es_log_debug("admin", "topic %s exists already", tname);
    return ES_ERR_OK;
}

/* The result of a CreateTopics request, topic by topic. */
static es_err_t created_topics(es_admin_t *adm, rd_kafka_event_t *ev, const es_topic_spec_t *specs,
                               size_t n, int timeout_ms, char *errstr, size_t errstr_size)
{
    size_t cnt = 0;
    es_err_t err = ES_ERR_OK;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt && !err; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(res[i]);
        const char *tname = rd_kafka_topic_result_name(res[i]);
        if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            err = check_existing(adm, specs, n, tname, timeout_ms, errstr, errstr_size);
        } else if (terr) {
            snprintf(errstr, errstr_size, "create topic %s: %s", tname,
                     rd_kafka_topic_result_error_string(res[i]));
            err = es_kafka_err(terr);
        } else {
            int have = 0;
            es_log_info("admin", "created topic %s", tname);
            err = wait_visible(adm, tname, timeout_ms, &have, errstr, errstr_size);
        }
    }
    return err;
}

es_err_t es_admin_create_topics(es_admin_t *adm, const es_topic_spec_t *specs, size_t n,
                                int timeout_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_NewTopic_t **nts = es_calloc(n, sizeof(*nts));
    rd_kafka_queue_t *q = rd_kafka_queue_new(adm->rk);
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(adm->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    es_err_t err = ES_ERR_OK;
    char kerr[256];

    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, kerr, sizeof(kerr));
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, kerr, sizeof(kerr));
    for (size_t i = 0; i < n; i++) {
        nts[i] = rd_kafka_NewTopic_new(specs[i].name, specs[i].partitions,
                                       specs[i].replication_factor, kerr, sizeof(kerr));
        if (!nts[i]) {
            snprintf(errstr, errstr_size, "topic %s: %s", specs[i].name, kerr);
            err = ES_ERR_INVALID_ARG;
            goto out;
        }
        for (size_t c = 0; c < specs[i].nconfigs; c++)
            rd_kafka_NewTopic_set_config(nts[i], specs[i].config_names[c],
                                         specs[i].config_values[c]);
    }
    rd_kafka_CreateTopics(adm->rk, nts, n, opts, q);
    ev = admin_wait(q, timeout_ms);
    if (!ev) {
        snprintf(errstr, errstr_size, "create topics: no answer from the cluster in %d ms",
                 timeout_ms);
        err = ES_ERR_TIMED_OUT;
    } else if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "create topics: %s", rd_kafka_event_error_string(ev));
        err = es_kafka_err(rd_kafka_event_error(ev));
    } else {
        err = created_topics(adm, ev, specs, n, timeout_ms, errstr, errstr_size);
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (size_t i = 0; i < n; i++)
        if (nts[i])
            rd_kafka_NewTopic_destroy(nts[i]);
    free(nts);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    return err;
}

es_err_t es_admin_topic_config(es_admin_t *adm, const char *topic, const char *key, int timeout_ms,
                               char **value, char *errstr, size_t errstr_size)
{
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(adm->rk);
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(adm->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_event_t *ev = NULL;
    es_err_t err = ES_ERR_NOT_FOUND;
    char kerr[256];

    *value = NULL;
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, kerr, sizeof(kerr));
    rd_kafka_DescribeConfigs(adm->rk, &cr, 1, opts, q);
    ev = admin_wait(q, timeout_ms);
    if (!ev) {
        snprintf(errstr, errstr_size, "describe configs of %s: timed out", topic);
        err = ES_ERR_TIMED_OUT;
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "describe configs of %s: %s", topic,
                 rd_kafka_event_error_string(ev));
        err = es_kafka_err(rd_kafka_event_error(ev));
        goto out;
    }
    size_t nres = 0;
    const rd_kafka_ConfigResource_t **res =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        if (rd_kafka_ConfigResource_error(res[i])) {
            snprintf(errstr, errstr_size, "describe configs of %s: %s", topic,
                     rd_kafka_ConfigResource_error_string(res[i]));
            err = es_kafka_err(rd_kafka_ConfigResource_error(res[i]));
            goto out;
        }
        size_t nentries = 0;
        const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res[i], &nentries);
        for (size_t e = 0; e < nentries; e++) {
            if (!strcmp(rd_kafka_ConfigEntry_name(entries[e]), key)) {
                const char *v = rd_kafka_ConfigEntry_value(entries[e]);
                *value = es_strdup(v ? v : "");
                err = ES_ERR_OK;
                goto out;
            }
        }
    }
    snprintf(errstr, errstr_size, "topic %s has no config %s", topic, key);
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    return err;
}

es_err_t es_admin_topic_partitions(es_admin_t *adm, const char *topic, int timeout_ms,
                                   int *partitions, char *errstr, size_t errstr_size)
{
    return es_kafka_topic_partitions(adm->rk, topic, timeout_ms, partitions, errstr, errstr_size);
}

es_err_t es_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                   int *partitions, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    es_err_t err = ES_ERR_OK;

    if (kerr) {
        snprintf(errstr, errstr_size, "metadata for %s: %s", topic, rd_kafka_err2str(kerr));
        err = es_kafka_err(kerr);
    } else if (md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not in metadata");
        err = md->topic_cnt ? es_kafka_err(md->topics[0].err) : ES_ERR_NOT_FOUND;
    } else {
        *partitions = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return err;
}
