/*
 * test_kafka_producer.c — es_producer_flush() reports records that failed
 * delivery (rd_kafka_flush() alone succeeds once its queue is empty, delivered
 * or not); the one construction path layers properties in the documented
 * order; a send that must not wait answers QUEUE_FULL at once; the size
 * es_producer_fits() counts is the one librdkafka refuses a record by.
 * Client-side behaviour, so librdkafka's mock cluster is the broker here.
 */
#include "escqrs/kafka.h"
#include "testutil.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Send @p rec with a copy of @p hdrs: ES_ERR_OK, or the error (the copy destroyed). */
static es_err_t send_copy(es_producer_t *p, es_record_t rec, const rd_kafka_headers_t *hdrs,
                          char *err, size_t errsz)
{
    rec.headers = hdrs ? rd_kafka_headers_copy(hdrs) : NULL;
    es_err_t e = es_producer_send_record(p, &rec, ES_SEND_NO_WAIT, err, errsz);
    if (e && rec.headers)
        rd_kafka_headers_destroy(rec.headers);
    return e;
}

/*
 * For random keys and headers (names and values across the varint steps at 64
 * and 8192 bytes, null values), the largest value es_producer_fits() allows
 * must be taken by librdkafka and one byte more refused as too large, so the
 * command service's check (decide.c) never passes a record librdkafka then
 * refuses, nor refuses one it would take.
 */
static void test_fits_is_librdkafkas_limit(void)
{
    enum { LIMIT = 20000, ROUNDS = 300 };
    static char bytes[LIMIT + 1], name[200];
    char err[512], limit[16];
    es_conf_t *c = mock_conf();
    snprintf(limit, sizeof(limit), "%d", LIMIT);
    CU_ASSERT_EQUAL_FATAL(
        es_conf_set(c, "kafka.message.max.bytes", limit, "test", err, sizeof(err)), ES_ERR_OK);
    es_producer_t *p = es_producer_new(c, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(es_producer_rk(p));
    rd_kafka_mock_broker_set_down(mc, 1); /* the size is checked before anything is sent */
    memset(bytes, 'x', sizeof(bytes));
    srand(17);
    int agreed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        static const size_t steps[] = {0, 1, 62, 63, 64, 65, 126, 127, 128, 8191, 8192};
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
        int nh = rand() % 6;
        for (int h = 0; h < nh; h++) {
            size_t nlen = 1 + (size_t)rand() % 130, vlen = steps[rand() % 11];
            memset(name, 'a' + h, nlen);
            name[nlen] = '\0';
            rd_kafka_header_add(hdrs, name, -1, rand() % 7 ? bytes : NULL, (ssize_t)vlen);
        }
        es_record_t rec = {.topic = "t", .partition = 0, .key = bytes, .keylen = steps[rand() % 9]};
        rec.headers = hdrs;
        bool any = es_producer_fits(p, &rec);
        size_t most = 0; /* the largest value that fits, found by the check alone */
        for (rec.valuelen = 0; rec.valuelen <= LIMIT && es_producer_fits(p, &rec); rec.valuelen++)
            most = rec.valuelen;
        rec.headers = NULL;
        rec.value = bytes;
        rec.valuelen = most;
        /* headers too large for any value: the empty one must be refused too */
        es_err_t taken = any ? send_copy(p, rec, hdrs, err, sizeof(err)) : ES_ERR_OK;
        rec.valuelen = any ? most + 1 : 0;
        es_err_t refused = send_copy(p, rec, hdrs, err, sizeof(err));
        bool said = strstr(err, "too large") != NULL;
        if (taken == ES_ERR_OK && refused != ES_ERR_OK && said)
            agreed++;
        else
            printf("\n  round %d: %zu-byte key, %d headers: %zu bytes %s, %zu bytes %s (%s)", r,
                   rec.keylen, nh, most, taken ? "refused" : "taken", most + 1,
                   refused ? "refused" : "taken", err);
        rd_kafka_headers_destroy(hdrs);
    }
    CU_ASSERT_EQUAL(agreed, ROUNDS);
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
        {"es_producer_fits() is librdkafka's size limit", test_fits_is_librdkafkas_limit},
        {NULL, NULL},
    };
    return es_test_run("kafka_producer", cases);
}
