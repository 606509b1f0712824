/*
 * test_kafka_producer.c — es_producer_flush() reports records that failed
 * delivery (rd_kafka_flush() alone succeeds once its queue is empty, delivered
 * or not); the one construction path layers properties in the documented
 * order; a send that must not wait answers QUEUE_FULL at once.
 * Client-side behaviour, so librdkafka's mock cluster is the broker here.
 */
#include "escqrs/kafka.h"
#include "testutil.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>

static es_conf_t *mock_conf(void)
{
    static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};
    char err[256];
    es_conf_t *c = es_conf_new("test", tables);
    CU_ASSERT_EQUAL_FATAL(
        es_conf_set(c, "kafka.test.mock.num.brokers", "1", "test", err, sizeof(err)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(
        es_conf_set(c, "kafka.message.timeout.ms", "3000", "test", err, sizeof(err)), ES_ERR_OK);
    return c;
}

static void test_flush_reports_failed_delivery(void)
{
    char err[512];
    es_conf_t *c = mock_conf();
    es_producer_t *p = es_producer_new(c, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(es_producer_rk(p));
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    CU_ASSERT_EQUAL(rd_kafka_mock_topic_create(mc, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

    /* a good record first: flush succeeds */
    CU_ASSERT_EQUAL(es_producer_send(p, "t", "k", 1, "v", 1, NULL, NULL, err, sizeof(err)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_producer_flush(p, 10000, err, sizeof(err)), ES_ERR_OK);

    /* then the broker refuses every produce request for good */
    rd_kafka_mock_push_request_errors(
        mc, 0 /* Produce */, 10, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    CU_ASSERT_EQUAL(es_producer_send(p, "t", "k", 1, "lost", 4, NULL, NULL, err, sizeof(err)),
                    ES_ERR_OK);
    es_err_t e = es_producer_flush(p, 10000, err, sizeof(err));
    CU_ASSERT_NOT_EQUAL(e, ES_ERR_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not delivered"));
    /* and stays failed: a producer that lost a record is not trusted again */
    CU_ASSERT_NOT_EQUAL(es_producer_flush(p, 1000, err, sizeof(err)), ES_ERR_OK);
    es_producer_destroy(p);
    es_conf_destroy(c);
}

/* librdkafka's value of @p name in the handle's configuration. */
static void conf_value(rd_kafka_t *rk, const char *name, char *out, size_t outsz)
{
    size_t sz = outsz;
    out[0] = '\0';
    CU_ASSERT_EQUAL(rd_kafka_conf_get(rd_kafka_conf(rk), name, out, &sz), RD_KAFKA_CONF_OK);
}

static void test_properties_layered(void)
{
    char err[512], v[64];
    es_conf_t *c = mock_conf();
    CU_ASSERT_EQUAL_FATAL(es_conf_set(c, "kafka.linger.ms", "7", "test", err, sizeof(err)),
                          ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_conf_set(c, "kafka.client.id", "user", "test", err, sizeof(err)),
                          ES_ERR_OK);
    static const es_kafka_prop_t defaults[] = {
        {"linger.ms", "1"}, {"batch.num.messages", "123"}, {NULL, NULL}};
    static const es_kafka_prop_t props[] = {{"client.id", "forced"}, {NULL, NULL}};
    es_producer_opts_t po = {.defaults = defaults, .props = props};
    es_producer_t *p = es_producer_new_opts(c, &po, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    conf_value(es_producer_rk(p), "linger.ms", v, sizeof(v));
    ES_ASSERT_STR_EQ(v, "7"); /* the user's key wins over the caller's default */
    conf_value(es_producer_rk(p), "batch.num.messages", v, sizeof(v));
    ES_ASSERT_STR_EQ(v, "123"); /* a default applies where the user set nothing */
    conf_value(es_producer_rk(p), "client.id", v, sizeof(v));
    ES_ASSERT_STR_EQ(v, "forced"); /* a forced property wins over the user */
    conf_value(es_producer_rk(p), "enable.idempotence", v, sizeof(v));
    ES_ASSERT_STR_EQ(v, "true"); /* escqrs' role default */
    es_producer_destroy_now(p);

    es_consumer_t *cons = es_consumer_new(c, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cons);
    conf_value(es_consumer_rk(cons), "group.id", v, sizeof(v));
    ES_ASSERT_STR_EQ(v, "escqrs-unused");
    conf_value(es_consumer_rk(cons), "isolation.level", v, sizeof(v));
    ES_ASSERT_STR_EQ(v, "read_committed");
    es_consumer_destroy_now(cons);
    es_conf_destroy(c);
}

static void test_no_wait_send_sheds_load(void)
{
    char err[512];
    es_conf_t *c = mock_conf();
    CU_ASSERT_EQUAL_FATAL(
        es_conf_set(c, "kafka.queue.buffering.max.messages", "1", "test", err, sizeof(err)),
        ES_ERR_OK);
    es_producer_t *p = es_producer_new(c, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(es_producer_rk(p));
    CU_ASSERT_EQUAL(rd_kafka_mock_topic_create(mc, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_mock_broker_set_down(mc, 1); /* nothing leaves the local queue */
    es_record_t rec = {.topic = "t",
                       .partition = RD_KAFKA_PARTITION_UA,
                       .key = "k",
                       .keylen = 1,
                       .value = "v",
                       .valuelen = 1};
    CU_ASSERT_EQUAL(es_producer_send_record(p, &rec, ES_SEND_NO_WAIT, err, sizeof(err)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_producer_send_record(p, &rec, ES_SEND_NO_WAIT, err, sizeof(err)),
                    ES_ERR_QUEUE_FULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "produce to t"));
    es_producer_destroy_now(p);
    es_conf_destroy(c);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"flush reports records that failed delivery", test_flush_reports_failed_delivery},
        {"caller defaults, user keys and forced properties layer in order",
         test_properties_layered},
        {"a send that must not wait answers QUEUE_FULL at once", test_no_wait_send_sheds_load},
        {NULL, NULL},
    };
    return es_test_run("kafka_producer", cases);
}
