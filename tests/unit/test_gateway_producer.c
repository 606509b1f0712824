/*
 * test_gateway_producer.c — the gateway tells a producer that failed for
 * good (producers/gateway/gateway.c, gw_producer_failed): /readyz answers
 * not ready with its reason and main() stops, instead of a gateway that
 * says ready while it refuses every command.
 *
 * librdkafka's mock cluster is the broker; the fatal error is the one
 * librdkafka fabricates for tests (rd_kafka_test_fatal_error), as an
 * idempotent producer raises when it can no longer keep its order.  What is
 * not covered here: the /readyz route and main()'s exit, which read this
 * same function (gateway.c, main.c).
 */
#include "gateway_int.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static void test_fatal_producer_is_told(void)
{
    static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};
    char err[512], why[512] = "";
    es_conf_t *c = es_conf_new("test", tables);
    CU_ASSERT_EQUAL_FATAL(
        es_conf_set(c, "kafka.test.mock.num.brokers", "1", "test", err, sizeof(err)), ES_ERR_OK);
    gw_t gw;
    memset(&gw, 0, sizeof(gw));
    CU_ASSERT_FALSE(gw_producer_failed(&gw, why, sizeof(why))); /* no producer yet */
    gw.prod = es_producer_new(c, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(gw.prod);
    CU_ASSERT_FALSE(gw_producer_failed(&gw, why, sizeof(why)));
    CU_ASSERT_EQUAL(rd_kafka_test_fatal_error(es_producer_rk(gw.prod),
                                              RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                              "planted by the test"),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
    CU_ASSERT_TRUE(gw_producer_failed(&gw, why, sizeof(why)));
    printf("\n    %s\n", why);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "OUT_OF_ORDER_SEQUENCE_NUMBER"));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "planted by the test"));
    es_producer_destroy_now(gw.prod);
    es_conf_destroy(c);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a producer that failed for good is told, with its reason", test_fatal_producer_is_told},
        {NULL, NULL},
    };
    return es_test_run("gateway-producer", cases);
}
