/*
 * benchkafka.c — see benchkafka.h.
 */
#include "benchkafka.h"

#include "escqrs/kafka.h"
#include "escqrs/schemas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELETE_TIMEOUT_MS 60000 /* metadata and the DeleteTopics answer */

void bench_die(const char *what, const char *err)
{
    fprintf(stderr, "bench: %s: %s\n", what, err);
    exit(1);
}

const char *bench_env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

es_serde_t *bench_serde(const char *topic, const char *schema, es_registry_t **reg)
{
    char err[512], subject[320];
    *reg = es_registry_new(
        bench_env_or("ESCQRS_TEST_REGISTRY", "http://127.0.0.1:18081/apis/ccompat/v7"), 5000, 3,
        err, sizeof(err));
    if (!*reg)
        bench_die("registry", err);
    snprintf(subject, sizeof(subject), "%s-value", topic);
    es_serde_t *serde =
        es_serde_new(*reg, subject, es_schema_text(schema), true, 0, err, sizeof(err));
    if (!serde)
        bench_die("serde", err);
    return serde;
}

rd_kafka_t *bench_bulk_producer(const es_conf_t *conf,
                                void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *))
{
    char err[512];
    rd_kafka_conf_t *kc = es_kafka_conf_build(conf, ES_CONF_ROLE_PRODUCER, err, sizeof(err));
    if (!kc)
        bench_die("producer conf", err);
    rd_kafka_conf_set(kc, "linger.ms", "50", NULL, 0);
    rd_kafka_conf_set(kc, "batch.size", "1000000", NULL, 0);
    rd_kafka_conf_set(kc, "queue.buffering.max.messages", "1000000", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    if (!rk)
        bench_die("producer", err);
    return rk;
}

void bench_send(rd_kafka_t *rk, const char *topic, const char *key, size_t keylen, const void *val,
                size_t len, rd_kafka_headers_t *h)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_HEADERS(h),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 10);
            continue;
        }
        if (e)
            bench_die("produce", rd_kafka_err2str(e));
        break;
    }
    rd_kafka_poll(rk, 0);
}

void bench_delete_topics(const es_conf_t *conf, const char *prefix)
{
    char err[512];
    if (strncmp(prefix, "bench-", 6) || strlen(prefix) < 8)
        bench_die("delete topics", "the prefix must start with \"bench-\" and name a run");
    rd_kafka_conf_t *kc = es_kafka_conf_build(conf, ES_CONF_ROLE_PRODUCER, err, sizeof(err));
    if (!kc)
        bench_die("admin conf", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    if (!rk)
        bench_die("admin", err);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 1, NULL, &md, DELETE_TIMEOUT_MS);
    if (kerr)
        bench_die("metadata", rd_kafka_err2str(kerr));
    rd_kafka_DeleteTopic_t **del = calloc((size_t)md->topic_cnt + 1, sizeof(*del));
    size_t n = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strncmp(md->topics[i].topic, prefix, strlen(prefix)))
            del[n++] = rd_kafka_DeleteTopic_new(md->topics[i].topic);
    rd_kafka_metadata_destroy(md);
    size_t failed = 0;
    if (n) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_DeleteTopics(rk, del, n, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, DELETE_TIMEOUT_MS + 5000);
        const rd_kafka_DeleteTopics_result_t *res =
            ev ? rd_kafka_event_DeleteTopics_result(ev) : NULL;
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_DeleteTopics_result_topics(res, &cnt) : NULL;
        for (size_t i = 0; i < cnt; i++)
            if (rd_kafka_topic_result_error(tr[i])) {
                fprintf(stderr, "bench: delete %s: %s\n", rd_kafka_topic_result_name(tr[i]),
                        rd_kafka_topic_result_error_string(tr[i]));
                failed++;
            }
        if (!res)
            failed = n;
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_DeleteTopic_destroy_array(del, n);
    }
    free(del);
    rd_kafka_destroy(rk);
    fprintf(stderr, "bench: deleted %zu topic(s) named %s*%s\n", n - failed, prefix,
            failed ? " (some failed, above)" : "");
}
