/*
 * kafka.c — producer, consumer and admin wrappers over librdkafka.
 *
 * Why wrappers at all: every escqrs client must get the same deliberate
 * defaults and the same log routing, and topic settings must have one home.
 * Everything else is left to librdkafka, whose handle stays reachable.
 */
#include "escqrs/kafka.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const es_conf_def_t es_kafka_conf_defs[] = {
    {.name = "kafka.bootstrap.servers",
     .type = ES_CONF_STRING,
     .defval = "127.0.0.1:9092",
     .desc = "Kafka brokers to bootstrap from"},
    {.name = "kafka.enable.idempotence",
     .type = ES_CONF_STRING,
     .defval = "true",
     .desc = "Idempotent producer: no duplicates or reordering on retries",
     .role = ES_CONF_ROLE_PRODUCER},
    {.name = "kafka.acks",
     .type = ES_CONF_STRING,
     .defval = "all",
     .desc = "Wait for all in-sync replicas before a write counts",
     .role = ES_CONF_ROLE_PRODUCER},
    {.name = "kafka.partitioner",
     .type = ES_CONF_STRING,
     .defval = "murmur2_random",
     .desc = "Java-compatible partitioner, so every client puts a key in the same partition",
     .role = ES_CONF_ROLE_PRODUCER},
    {.name = "kafka.isolation.level",
     .type = ES_CONF_STRING,
     .defval = "read_committed",
     .desc = "Never read events of aborted or open transactions",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "kafka.enable.auto.commit",
     .type = ES_CONF_STRING,
     .defval = "false",
     .desc = "escqrs commits offsets itself (in transactions or after applying)",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "kafka.auto.offset.reset",
     .type = ES_CONF_STRING,
     .defval = "earliest",
     .desc = "A new reader starts at the beginning of the log",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "aggregate.prefix",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc =
         "Prefix of aggregate names, so topics are <prefix><agg>.commands etc. (tests, tenants)"},
    {.name = "topics.partitions",
     .type = ES_CONF_INT,
     .defval = "3",
     .min = 1,
     .max = 10000,
     .desc = "Partitions of every topic of an aggregate (commands, events, results, DLQ)"},
    {.name = "topics.replication.factor",
     .type = ES_CONF_INT,
     .defval = "1",
     .min = 1,
     .max = 32,
     .desc = "Replicas of every topic (3 in production)"},
    {.name = "topics.min.insync.replicas",
     .type = ES_CONF_INT,
     .defval = "1",
     .min = 1,
     .max = 32,
     .desc = "min.insync.replicas of the commands, events and DLQ topics (2 in production)"},
    {.name = "topics.results.retention.ms",
     .type = ES_CONF_INT,
     .defval = "21600000",
     .min = 60000,
     .max = 604800000,
     .desc = "Retention of <agg>.command-results (outcomes are only waited for briefly)"},
    {.name = NULL},
};

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug */
    es_log_level_t lvl = level <= 3   ? ES_LOG_ERROR
                         : level == 4 ? ES_LOG_WARN
                         : level <= 6 ? ES_LOG_INFO
                                      : ES_LOG_DEBUG;
    es_log(lvl, "rdkafka", "%s: %s", fac, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    es_log_warn("rdkafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

struct build_ctx {
    rd_kafka_conf_t *rkconf;
    char *errstr;
    size_t errstr_size;
    bool failed;
};

static void apply_one(void *opaque, const char *name, const char *value)
{
    struct build_ctx *ctx = opaque;
    char kerr[512];
    if (ctx->failed)
        return;
    if (rd_kafka_conf_set(ctx->rkconf, name, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(ctx->errstr, ctx->errstr_size, "kafka.%s: %s", name, kerr);
        ctx->failed = true;
    }
}

rd_kafka_conf_t *es_kafka_conf_build(const es_conf_t *conf, es_conf_role_t role, char *errstr,
                                     size_t errstr_size)
{
    struct build_ctx ctx = {
        .rkconf = rd_kafka_conf_new(), .errstr = errstr, .errstr_size = errstr_size};
    es_conf_kafka_foreach(conf, role, apply_one, &ctx);
    if (ctx.failed) {
        rd_kafka_conf_destroy(ctx.rkconf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(ctx.rkconf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(ctx.rkconf, kafka_error_cb);
    return ctx.rkconf;
}

es_err_t es_kafka_err(rd_kafka_resp_err_t kerr)
{
    switch (kerr) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return ES_ERR_OK;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
        return ES_ERR_TIMED_OUT;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return ES_ERR_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return ES_ERR_KAFKA_FATAL;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return ES_ERR_NOT_FOUND;
    default:
        return ES_ERR_KAFKA;
    }
}

/* ---------------------------------------------------------------- producer */

struct es_producer_s {
    rd_kafka_t *rk;
    /* Deliveries that failed: rd_kafka_flush() succeeds once the queue is
     * empty, delivered or not, so failures are counted here, for good. */
    atomic_uint failed;
    char first_failure[256]; /* written by the first failure only (failed 0 -> 1) */
};

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    es_producer_t *prod = opaque;
    (void)rk;
    if (!m->err)
        return;
    if (atomic_fetch_add(&prod->failed, 1) == 0)
        snprintf(prod->first_failure, sizeof(prod->first_failure), "delivery to %s [%d]: %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
}

es_producer_t *es_producer_new(const es_conf_t *conf, const char *transactional_id, char *errstr,
                               size_t errstr_size)
{
    es_producer_t *prod = es_calloc(1, sizeof(*prod));
    rd_kafka_conf_t *rkconf = es_kafka_conf_build(conf, ES_CONF_ROLE_PRODUCER, errstr, errstr_size);

    if (!rkconf)
        goto fail;
    if (transactional_id && rd_kafka_conf_set(rkconf, "transactional.id", transactional_id, errstr,
                                              errstr_size) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(rkconf);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(rkconf, producer_dr_cb);
    rd_kafka_conf_set_opaque(rkconf, prod);
    prod->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rkconf, errstr, errstr_size);
    if (!prod->rk) {
        rd_kafka_conf_destroy(rkconf); /* rd_kafka_new keeps it only on success */
        goto fail;
    }
    if (transactional_id) {
        rd_kafka_error_t *kerr = rd_kafka_init_transactions(prod->rk, 30000);
        if (kerr) {
            snprintf(errstr, errstr_size, "init_transactions(%s): %s", transactional_id,
                     rd_kafka_error_string(kerr));
            rd_kafka_error_destroy(kerr);
            goto fail;
        }
    }
    return prod;
fail:
    if (prod->rk)
        rd_kafka_destroy(prod->rk);
    free(prod);
    return NULL;
}

rd_kafka_t *es_producer_rk(es_producer_t *prod)
{
    return prod->rk;
}

es_err_t es_producer_send(es_producer_t *prod, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t valuelen, rd_kafka_headers_t *headers,
                          void *msg_opaque, char *errstr, size_t errstr_size)
{
    for (;;) {
        rd_kafka_resp_err_t kerr;
        if (headers)
            kerr = rd_kafka_producev(
                prod->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                RD_KAFKA_V_VALUE((void *)value, valuelen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        else
            kerr = rd_kafka_producev(prod->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                                     RD_KAFKA_V_VALUE((void *)value, valuelen),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(prod->rk, 100); /* serve delivery reports to make room */
            continue;
        }
        if (kerr) {
            snprintf(errstr, errstr_size, "produce to %s: %s", topic, rd_kafka_err2str(kerr));
            return es_kafka_err(kerr);
        }
        return ES_ERR_OK;
    }
}

es_err_t es_producer_flush(es_producer_t *prod, int timeout_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t kerr = rd_kafka_flush(prod->rk, timeout_ms);
    if (kerr) {
        snprintf(errstr, errstr_size, "flush: %s (%d still queued)", rd_kafka_err2str(kerr),
                 rd_kafka_outq_len(prod->rk));
        return es_kafka_err(kerr);
    }
    unsigned failed = atomic_load(&prod->failed);
    if (failed) {
        snprintf(errstr, errstr_size, "%u record(s) not delivered since start, first: %s", failed,
                 prod->first_failure);
        return ES_ERR_KAFKA;
    }
    return ES_ERR_OK;
}

void es_producer_destroy(es_producer_t *prod)
{
    if (!prod)
        return;
    rd_kafka_flush(prod->rk, 5000);
    rd_kafka_destroy(prod->rk);
    free(prod);
}

/* ---------------------------------------------------------------- consumer */

struct es_consumer_s {
    rd_kafka_t *rk;
};

es_consumer_t *es_consumer_new(const es_conf_t *conf, const char *group_id, char *errstr,
                               size_t errstr_size)
{
    es_consumer_t *cons = es_calloc(1, sizeof(*cons));
    rd_kafka_conf_t *rkconf = es_kafka_conf_build(conf, ES_CONF_ROLE_CONSUMER, errstr, errstr_size);

    if (!rkconf)
        goto fail;
    /* librdkafka needs a group.id for a consumer handle even when it only assigns. */
    if (rd_kafka_conf_set(rkconf, "group.id", group_id ? group_id : "escqrs-unused", errstr,
                          errstr_size) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(rkconf);
        goto fail;
    }
    cons->rk = rd_kafka_new(RD_KAFKA_CONSUMER, rkconf, errstr, errstr_size);
    if (!cons->rk) {
        rd_kafka_conf_destroy(rkconf);
        goto fail;
    }
    rd_kafka_poll_set_consumer(cons->rk);
    return cons;
fail:
    free(cons);
    return NULL;
}

rd_kafka_t *es_consumer_rk(es_consumer_t *cons)
{
    return cons->rk;
}

es_err_t es_consumer_subscribe(es_consumer_t *cons, const char *const *topics, size_t n,
                               char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(tl, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(cons->rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (kerr) {
        snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(kerr));
        return es_kafka_err(kerr);
    }
    return ES_ERR_OK;
}

rd_kafka_message_t *es_consumer_poll(es_consumer_t *cons, int timeout_ms)
{
    return rd_kafka_consumer_poll(cons->rk, timeout_ms);
}

void es_consumer_destroy(es_consumer_t *cons)
{
    if (!cons)
        return;
    rd_kafka_consumer_close(cons->rk);
    rd_kafka_destroy(cons->rk);
    free(cons);
}

/* ------------------------------------------------------------------- admin */

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

    spec_add_str(out, "cleanup.policy", "delete"); /* never compacted: the log is history */
    switch (kind) {
    case ES_TOPIC_COMMANDS:
    case ES_TOPIC_EVENTS:
    case ES_TOPIC_DLQ:
        spec_add(out, "retention.ms", -1);
        spec_add(out, "min.insync.replicas", min_isr);
        break;
    case ES_TOPIC_RESULTS:
        spec_add(out, "retention.ms", es_conf_get_int(conf, "topics.results.retention.ms"));
        break;
    }
}

struct es_admin_s {
    rd_kafka_t *rk;
};

es_admin_t *es_admin_new(const es_conf_t *conf, char *errstr, size_t errstr_size)
{
    es_admin_t *adm = es_calloc(1, sizeof(*adm));
    /* ROLE_ANY: an admin handle needs none of the producer defaults (no PID). */
    rd_kafka_conf_t *rkconf = es_kafka_conf_build(conf, ES_CONF_ROLE_ANY, errstr, errstr_size);
    if (!rkconf)
        goto fail;
    adm->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rkconf, errstr, errstr_size);
    if (!adm->rk) {
        rd_kafka_conf_destroy(rkconf);
        goto fail;
    }
    return adm;
fail:
    free(adm);
    return NULL;
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
    return rd_kafka_queue_poll(q, timeout_ms + 1000);
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
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "create topics: %s", rd_kafka_event_error_string(ev));
        err = es_kafka_err(rd_kafka_event_error(ev));
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(res[i]);
        const char *tname = rd_kafka_topic_result_name(res[i]);
        if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            int have = 0;
            const es_topic_spec_t *spec = NULL;
            for (size_t s = 0; s < n; s++)
                if (!strcmp(specs[s].name, tname))
                    spec = &specs[s];
            err = es_admin_topic_partitions(adm, tname, timeout_ms, &have, errstr, errstr_size);
            if (err)
                goto out;
            if (spec && have != spec->partitions) {
                snprintf(errstr, errstr_size,
                         "topic %s exists with %d partitions, not %d: aggregates need the same "
                         "partition count on every topic",
                         tname, have, spec->partitions);
                err = ES_ERR_STATE;
                goto out;
            }
            es_log_debug("admin", "topic %s exists already", tname);
        } else if (terr) {
            snprintf(errstr, errstr_size, "create topic %s: %s", tname,
                     rd_kafka_topic_result_error_string(res[i]));
            err = es_kafka_err(terr);
            goto out;
        } else {
            es_log_info("admin", "created topic %s", tname);
            /* The controller answered; the broker's metadata may lag a moment.
             * Callers look the topic up next, so wait until it is visible. */
            int have = 0;
            int64_t until = es_mono_ms() + timeout_ms;
            while ((err = es_admin_topic_partitions(adm, tname, timeout_ms, &have, errstr,
                                                    errstr_size)) == ES_ERR_NOT_FOUND &&
                   es_mono_ms() < until)
                usleep(100 * 1000);
            if (err)
                goto out;
        }
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
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(adm->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(adm->rk, 0, rkt, &md, timeout_ms);
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
