/*
 * test_kafka_consumer.c — es_consumer_next_to_end(): a reader of a
 * partition to its end gets every record in order and then the end, and
 * gives up with a message naming the position when neither comes (a
 * fetcher that stalled must not hold the command service's catch-up for
 * ever); a stop request ends it at once.  es_consumer_rewind() moves nothing
 * when a partition's committed offset cannot be looked up.  es_header_get()
 * gives a record's header whole or not at all.
 * Client-side behaviour, so librdkafka's mock cluster is the broker here:
 * a broker that is down is a fetcher that gets nothing, the same for the
 * reader as a fetcher that stopped by itself.
 */
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/util.h"
#include "testutil.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>

static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};
static const es_kafka_prop_t eof_props[] = {{"enable.partition.eof", "true"}, {NULL, NULL}};

typedef struct {
    es_conf_t *pconf, *cconf;
    es_producer_t *prod;
    rd_kafka_mock_cluster_t *mc;
    es_consumer_t *cons;
} fixture_t;

/* A mock cluster with topic "t" (1 partition) holding @p n records, and a reader of it. */
static void fixture_init(fixture_t *f, int n)
{
    char err[512];
    memset(f, 0, sizeof(*f));
    f->pconf = es_conf_new("test", tables);
    CU_ASSERT_EQUAL_FATAL(
        es_conf_set(f->pconf, "kafka.test.mock.num.brokers", "1", "test", err, sizeof(err)),
        ES_ERR_OK);
    f->prod = es_producer_new(f->pconf, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->prod);
    f->mc = rd_kafka_handle_mock_cluster(es_producer_rk(f->prod));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->mc);
    CU_ASSERT_EQUAL_FATAL(rd_kafka_mock_topic_create(f->mc, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < n; i++) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", i);
        CU_ASSERT_EQUAL(
            es_producer_send(f->prod, "t", "k", 1, v, strlen(v), NULL, NULL, err, sizeof(err)),
            ES_ERR_OK);
    }
    CU_ASSERT_EQUAL_FATAL(es_producer_flush(f->prod, 10000, err, sizeof(err)), ES_ERR_OK);

    f->cconf = es_conf_new("test", tables);
    CU_ASSERT_EQUAL_FATAL(es_conf_set(f->cconf, "kafka.bootstrap.servers",
                                      rd_kafka_mock_cluster_bootstraps(f->mc), "test", err,
                                      sizeof(err)),
                          ES_ERR_OK);
    es_consumer_opts_t opts = {.group_id = "reader", .props = eof_props};
    f->cons = es_consumer_new_opts(f->cconf, &opts, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->cons);
}

static void fixture_assign(fixture_t *f)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, "t", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    CU_ASSERT_EQUAL(rd_kafka_assign(es_consumer_rk(f->cons), tl), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(tl);
}

static void fixture_free(fixture_t *f)
{
    es_consumer_destroy_now(f->cons);
    es_producer_destroy(f->prod);
    es_conf_destroy(f->cconf);
    es_conf_destroy(f->pconf);
}

/* Read the fixture's @p n records in order: offsets 0.. and values "v0", "v1", ... */
static void read_records(fixture_t *f, int n)
{
    char err[1024];
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = NULL;
        CU_ASSERT_EQUAL_FATAL(es_consumer_next_to_end(f->cons, NULL, 20000, &m, err, sizeof(err)),
                              ES_ERR_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        char want[16];
        snprintf(want, sizeof(want), "v%d", i);
        CU_ASSERT_EQUAL(m->offset, i);
        CU_ASSERT(m->len == strlen(want) && memcmp(m->payload, want, m->len) == 0);
        rd_kafka_message_destroy(m);
    }
}

static void test_records_in_order_then_the_end(void)
{
    fixture_t f;
    char err[1024];
    fixture_init(&f, 3);
    fixture_assign(&f);
    read_records(&f, 3);
    rd_kafka_message_t *m = (rd_kafka_message_t *)1;
    CU_ASSERT_EQUAL(es_consumer_next_to_end(f.cons, NULL, 20000, &m, err, sizeof(err)), ES_ERR_OK);
    CU_ASSERT_PTR_NULL(m); /* the end */
    fixture_free(&f);
}

static void test_a_stalled_fetcher_gives_up_naming_the_position(void)
{
    fixture_t f;
    char err[1024];
    fixture_init(&f, 2);
    rd_kafka_mock_broker_set_down(f.mc, 1); /* from now on no fetch gets an answer */
    fixture_assign(&f);
    rd_kafka_message_t *m = (rd_kafka_message_t *)1;
    int64_t t0 = es_mono_ms();
    es_err_t e = es_consumer_next_to_end(f.cons, NULL, 1500, &m, err, sizeof(err));
    int64_t took = es_mono_ms() - t0;
    CU_ASSERT_EQUAL(e, ES_ERR_TIMED_OUT);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(took >= 1500 && took < 6000);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stalled"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "t [0] at")); /* the partition and its position */
    fixture_free(&f);
}

static void test_stop_ends_it_at_once(void)
{
    fixture_t f;
    char err[1024];
    volatile sig_atomic_t stop = 1;
    fixture_init(&f, 1);
    fixture_assign(&f);
    rd_kafka_message_t *m = (rd_kafka_message_t *)1;
    int64_t t0 = es_mono_ms();
    CU_ASSERT_EQUAL(es_consumer_next_to_end(f.cons, &stop, 60000, &m, err, sizeof(err)),
                    ES_ERR_STATE);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(es_mono_ms() - t0 < 1000);
    fixture_free(&f);
}

/* es_consumer_rewind: a committed-offset look-up that fails for one partition is an
 * error that names the look-up, never a seek of that partition to the beginning (the
 * command service would decide its commands again).  The mock broker answers an error
 * of a partition alone (the call's own error clear) only for a partition it does not
 * have, so t [5] stands for it; t [0], looked up with it, is not moved either. */
static void test_rewind_refuses_a_failed_lookup(void)
{
    fixture_t f;
    char err[1024];
    fixture_init(&f, 3);
    fixture_assign(&f);
    read_records(&f, 3);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(tl, "t", 0)->offset = 2;
    CU_ASSERT_EQUAL(rd_kafka_commit(es_consumer_rk(f.cons), tl, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_add(tl, "t", 5);
    CU_ASSERT_EQUAL(es_consumer_rewind(f.cons, tl, err, sizeof(err)), ES_ERR_KAFKA);
    printf("\n  RESULT rewind with a failed look-up: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "committed offset of t [5]"));
    rd_kafka_message_t *m = NULL;
    CU_ASSERT_EQUAL(es_consumer_next_to_end(f.cons, NULL, 20000, &m, err, sizeof(err)), ES_ERR_OK);
    CU_ASSERT_PTR_NULL(m); /* t [0] still at its end */
    if (m)
        rd_kafka_message_destroy(m);
    rd_kafka_topic_partition_list_del(tl, "t", 5);
    CU_ASSERT_EQUAL(es_consumer_rewind(f.cons, tl, err, sizeof(err)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_consumer_next_to_end(f.cons, NULL, 20000, &m, err, sizeof(err)),
                          ES_ERR_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->offset, 2); /* the committed offset */
    rd_kafka_message_destroy(m);
    rd_kafka_topic_partition_list_destroy(tl);
    fixture_free(&f);
}

/* A record produced with CreateTime @p ts_ms (the producer's own clock otherwise). */
static void produce_at(fixture_t *f, int64_t ts_ms)
{
    CU_ASSERT_EQUAL(rd_kafka_producev(es_producer_rk(f->prod), RD_KAFKA_V_TOPIC("t"),
                                      RD_KAFKA_V_VALUE("v", 1),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_END),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* es_message_age_s: a record's age from its CreateTime; one from the future is 0, not negative. */
static void test_message_age(void)
{
    fixture_t f;
    char err[1024];
    fixture_init(&f, 0);
    int64_t now = es_now_ms();
    produce_at(&f, now - 5000);    /* produced 5 s ago */
    produce_at(&f, now + 3600000); /* a producer whose clock is an hour ahead */
    CU_ASSERT_EQUAL_FATAL(es_producer_flush(f.prod, 10000, err, sizeof(err)), ES_ERR_OK);
    fixture_assign(&f);
    double age[2] = {-2, -2};
    for (int i = 0; i < 2; i++) {
        rd_kafka_message_t *m = NULL;
        CU_ASSERT_EQUAL_FATAL(es_consumer_next_to_end(f.cons, NULL, 20000, &m, err, sizeof(err)),
                              ES_ERR_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        age[i] = es_message_age_s(m);
        rd_kafka_message_destroy(m);
    }
    CU_ASSERT(age[0] >= 5.0 && age[0] < 60.0);
    CU_ASSERT_EQUAL(age[1], 0.0);
    fixture_free(&f);
}

/* Produce one record to "t" with header "h" of @p len bytes of @p value (NULL: no header). */
static void produce_with_header(fixture_t *f, const char *value, size_t len)
{
    char err[512];
    rd_kafka_headers_t *h = NULL;
    if (value) {
        h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "h", -1, value, (ssize_t)len);
    }
    CU_ASSERT_EQUAL(es_producer_send(f->prod, "t", "k", 1, "v", 1, h, NULL, err, sizeof(err)),
                    ES_ERR_OK);
}

/*
 * es_header_get gives a value whole or not at all: one longer than the buffer, or with a
 * NUL byte in it, is no value (the command service reads its commands-offset header with
 * it: "12345678" cut to "1234", or "5" and NULs read as 5, would be offsets nobody wrote).
 */
static void test_header_get_whole_values_only(void)
{
    static const struct {
        const char *value; /* NULL: no such header */
        size_t len;
        int rc;
        const char *got;
    } cases[] = {
        {"12345", 5, 0, "12345"}, {"1234567", 7, 0, "1234567"}, /* 7 + NUL: fills the buffer */
        {"12345678", 8, -1, ""},  {"5\0\0\0", 4, -1, ""},       {"\0", 1, -1, ""}, {"", 0, 0, ""},
        {NULL, 0, -1, ""},
    };
    const size_t n = sizeof(cases) / sizeof(cases[0]);
    fixture_t f;
    char err[1024];
    fixture_init(&f, 0);
    for (size_t i = 0; i < n; i++)
        produce_with_header(&f, cases[i].value, cases[i].len);
    CU_ASSERT_EQUAL_FATAL(es_producer_flush(f.prod, 10000, err, sizeof(err)), ES_ERR_OK);
    fixture_assign(&f);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = NULL;
        CU_ASSERT_EQUAL_FATAL(es_consumer_next_to_end(f.cons, NULL, 20000, &m, err, sizeof(err)),
                              ES_ERR_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        char out[8] = "garbage";
        int rc = es_header_get(m, "h", out, sizeof(out));
        if (rc != cases[i].rc || strcmp(out, cases[i].got))
            fprintf(stderr, "case %zu: rc %d, \"%s\"; wanted %d, \"%s\"\n", i, rc, out, cases[i].rc,
                    cases[i].got);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        CU_ASSERT_STRING_EQUAL(out, cases[i].got);
        rd_kafka_message_destroy(m);
    }
    fixture_free(&f);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"records in order, then the end", test_records_in_order_then_the_end},
        {"a stalled fetcher gives up, naming the position",
         test_a_stalled_fetcher_gives_up_naming_the_position},
        {"a stop request ends it at once", test_stop_ends_it_at_once},
        {"a record's age from its CreateTime, 0 from the future", test_message_age},
        {"a failed committed-offset look-up is no rewind to the beginning",
         test_rewind_refuses_a_failed_lookup},
        {"a header's value whole or not at all", test_header_get_whole_values_only},
        {NULL, NULL},
    };
    return es_test_run("kafka_consumer", cases);
}
