/*
 * benchkafka.c — see benchkafka.h.
 */
#include "benchkafka.h"

#include "escqrs/kafka.h"
#include "escqrs/schemas.h"

#include <stdio.h>
#include <stdlib.h>

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
