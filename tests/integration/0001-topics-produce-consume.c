/*
 * 0001-topics-produce-consume.c — the Kafka wrappers against the real broker.
 *
 * Creates an aggregate's topics with the admin wrapper and checks the
 * settings the broker reports (retention.ms=-1 on events, never compacted),
 * produces keyed records through the producer wrapper and consumes them
 * back through the consumer wrapper, checking that each key landed in the
 * partition Java's murmur2 partitioner picks (so a command and its events
 * share a partition number with any Java client).
 */
#include "escqrs/kafka.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NRECORDS 200
#define TIMEOUT  20000

static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};
static char errstr[1024];
static char agg[128];

static es_conf_t *test_conf(void)
{
    es_conf_t *c = es_conf_new("it0001", tables);
    CU_ASSERT_EQUAL(
        es_conf_set(c, "kafka.bootstrap.servers", es_test_bootstrap(), "test", errstr, 1024),
        ES_ERR_OK);
    return c;
}

/* org.apache.kafka.common.utils.Utils.murmur2 */
static int32_t java_murmur2(const uint8_t *data, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    const int r = 24;
    uint32_t h = 0x9747b28c ^ (uint32_t)len;
    size_t len4 = len / 4;
    for (size_t i = 0; i < len4; i++) {
        uint32_t k = (uint32_t)data[i * 4] | (uint32_t)data[i * 4 + 1] << 8 |
                     (uint32_t)data[i * 4 + 2] << 16 | (uint32_t)data[i * 4 + 3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)data[(len & ~3u) + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[(len & ~3u) + 1] << 8;
        /* fall through */
    case 1:
        h ^= data[len & ~3u];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

static void test_create_topics_with_settings(void)
{
    es_conf_t *c = test_conf();
    es_admin_t *adm = es_admin_new(c, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(adm);
    es_topic_spec_t specs[3];
    es_topic_kind_t kinds[3] = {ES_TOPIC_COMMANDS, ES_TOPIC_EVENTS, ES_TOPIC_RESULTS};
    for (int i = 0; i < 3; i++) {
        char name[256];
        es_topic_name(agg, kinds[i], NULL, name, sizeof(name));
        es_topic_spec_for(c, kinds[i], name, &specs[i]);
    }
    es_err_t err = es_admin_create_topics(adm, specs, 3, TIMEOUT, errstr, sizeof(errstr));
    if (err)
        fprintf(stderr, "create: %s\n", errstr);
    CU_ASSERT_EQUAL_FATAL(err, ES_ERR_OK);
    /* idempotent */
    CU_ASSERT_EQUAL(es_admin_create_topics(adm, specs, 3, TIMEOUT, errstr, sizeof(errstr)),
                    ES_ERR_OK);

    char events[256], results[256], *v = NULL;
    es_topic_name(agg, ES_TOPIC_EVENTS, NULL, events, sizeof(events));
    es_topic_name(agg, ES_TOPIC_RESULTS, NULL, results, sizeof(results));
    CU_ASSERT_EQUAL_FATAL(
        es_admin_topic_config(adm, events, "retention.ms", TIMEOUT, &v, errstr, sizeof(errstr)),
        ES_ERR_OK);
    ES_ASSERT_STR_EQ(v, "-1");
    free(v);
    CU_ASSERT_EQUAL_FATAL(
        es_admin_topic_config(adm, events, "cleanup.policy", TIMEOUT, &v, errstr, sizeof(errstr)),
        ES_ERR_OK);
    ES_ASSERT_STR_EQ(v, "delete");
    free(v);
    CU_ASSERT_EQUAL_FATAL(
        es_admin_topic_config(adm, results, "retention.ms", TIMEOUT, &v, errstr, sizeof(errstr)),
        ES_ERR_OK);
    ES_ASSERT_STR_EQ(v, "-1"); /* the command audit is folded from them */
    free(v);
    int parts = 0;
    CU_ASSERT_EQUAL(es_admin_topic_partitions(adm, events, TIMEOUT, &parts, errstr, 1024),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(parts, 3);
    CU_ASSERT_EQUAL(es_admin_topic_partitions(adm, "no-such-topic-escqrs", TIMEOUT, &parts, errstr,
                                              sizeof(errstr)),
                    ES_ERR_NOT_FOUND);

    /* Same name, other partition count: refused, aggregates need equal counts. */
    es_topic_spec_t wrong = specs[1];
    wrong.partitions = 5;
    CU_ASSERT_EQUAL(es_admin_create_topics(adm, &wrong, 1, TIMEOUT, errstr, sizeof(errstr)),
                    ES_ERR_STATE);
    es_admin_destroy(adm);
    es_conf_destroy(c);
}

static void test_produce_consume_partitioning(void)
{
    es_conf_t *c = test_conf();
    char events[256], group[160];
    es_topic_name(agg, ES_TOPIC_EVENTS, NULL, events, sizeof(events));
    es_test_unique("it0001-group", group, sizeof(group));

    es_producer_t *prod = es_producer_new(c, NULL, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(prod);
    for (int i = 0; i < NRECORDS; i++) {
        char key[32], val[64];
        int klen = snprintf(key, sizeof(key), "cart-%d", i % 37);
        int vlen = snprintf(val, sizeof(val), "value-%d", i);
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "event-type", -1, "Test", -1);
        CU_ASSERT_EQUAL(es_producer_send(prod, events, key, (size_t)klen, val, (size_t)vlen, h,
                                         NULL, errstr, sizeof(errstr)),
                        ES_ERR_OK);
    }
    CU_ASSERT_EQUAL(es_producer_flush(prod, TIMEOUT, errstr, sizeof(errstr)), ES_ERR_OK);
    es_producer_destroy(prod);

    es_consumer_t *cons = es_consumer_new(c, group, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cons);
    const char *topics[] = {events};
    CU_ASSERT_EQUAL(es_consumer_subscribe(cons, topics, 1, errstr, sizeof(errstr)), ES_ERR_OK);
    int seen[NRECORDS] = {0}, got = 0, misplaced = 0, with_header = 0;
    for (int polls = 0; got < NRECORDS && polls < 600; polls++) {
        rd_kafka_message_t *m = es_consumer_poll(cons, 100);
        if (!m)
            continue;
        if (!m->err) {
            int idx = -1;
            sscanf((const char *)m->payload, "value-%d", &idx);
            if (idx >= 0 && idx < NRECORDS && !seen[idx]++)
                got++;
            int32_t expect = (java_murmur2(m->key, m->key_len) & 0x7fffffff) % 3;
            if (expect != m->partition)
                misplaced++;
            rd_kafka_headers_t *h = NULL;
            const void *hv;
            size_t hl;
            if (!rd_kafka_message_headers(m, &h) &&
                !rd_kafka_header_get_last(h, "event-type", &hv, &hl) && hl == 4)
                with_header++;
        }
        rd_kafka_message_destroy(m);
    }
    CU_ASSERT_EQUAL(got, NRECORDS);
    CU_ASSERT_EQUAL(misplaced, 0);
    CU_ASSERT_EQUAL(with_header, NRECORDS);
    es_consumer_destroy(cons);
    es_conf_destroy(c);
}

int main(void)
{
    es_test_unique("it0001", agg, sizeof(agg));
    static const es_test_case_t cases[] = {
        {"create topics with the architecture's settings", test_create_topics_with_settings},
        {"produce and consume, Java-compatible partitioning", test_produce_consume_partitioning},
        {NULL, NULL},
    };
    return es_test_run("it0001-topics-produce-consume", cases);
}
