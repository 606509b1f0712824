/*
 * test_kafka_producer.c — es_producer_flush() reports records that failed
 * delivery (rd_kafka_flush() alone succeeds once its queue is empty, delivered
 * or not).  Client-side error handling, so librdkafka's mock cluster is the
 * broker here: it refuses the produce requests with a non-retriable error.
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

int main(void)
{
    static const es_test_case_t cases[] = {
        {"flush reports records that failed delivery", test_flush_reports_failed_delivery},
        {NULL, NULL},
    };
    return es_test_run("kafka_producer", cases);
}
