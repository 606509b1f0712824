/*
 * test_kafka_txn.c — the transactional batch of kafka.h (kafka_txn.c) and
 * es_consumer_rewind(), against librdkafka's mock cluster: records go to the
 * partition asked for and their delivery reports carry it; offsets sent in a
 * transaction are the group's committed offsets after the commit; a failed
 * delivery aborts one transaction and not the next; an abort rewinds the
 * consumer to the committed offsets; a commit whose answer does not arrive
 * is retried, and given up only when the caller says stop; a refused
 * AddOffsetsToTxn waits milliseconds, not retry.backoff.ms, when the
 * coordinator is only busy with the previous commit's markers; partitions
 * marked ahead of their records are registered with the first one's, and a
 * keyed record goes where es_producer_key_partition() says.
 *
 * The mock broker answers TxnOffsetCommit but stores nothing (librdkafka
 * 2.0.2), so offsets committed in a transaction are checked against the
 * real broker (integration tests 0201-0203, fault test 0901); here the
 * group's offsets are committed with a plain OffsetCommit.
 */
#include "escqrs/command.h"
#include "escqrs/kafka.h"
#include "testutil.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>

#define TXN_WAIT_MS    2000 /* each transactional step of these tests */
#define API_ENDTXN     26   /* Kafka protocol ApiKey of EndTxn (the commit's request) */
#define API_ADDOFFSETS 25   /* ApiKey of AddOffsetsToTxn (the offsets' registration) */
#define API_ADDPARTS   24   /* ApiKey of AddPartitionsToTxn (a partition's registration) */
#define MOCK_BROKER    1    /* the id of the mock cluster's one broker */
#define COUNTED        8    /* requests of one kind a test counts */

typedef struct {
    es_producer_t *prod;
    es_consumer_t *cons;
    es_conf_t *pconf, *cconf;
    rd_kafka_mock_cluster_t *mc;
    int delivered;
    int32_t last_partition;
    int64_t last_offset;
} fixture_t;

static es_conf_t *conf_with(const char *key, const char *value)
{
    static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};
    char err[256];
    es_conf_t *c = es_conf_new("test", tables);
    CU_ASSERT_EQUAL_FATAL(es_conf_set(c, key, value, "test", err, sizeof(err)), ES_ERR_OK);
    return c;
}

static void on_delivery(void *opaque, const rd_kafka_message_t *m)
{
    fixture_t *f = opaque;
    if (m->err)
        return;
    f->delivered++;
    f->last_partition = m->partition;
    f->last_offset = m->offset;
}

/* A transactional producer on a fresh mock cluster, its configuration @p key = @p value
 * too (when not NULL), and a group consumer on the same cluster. */
static void setup_with(fixture_t *f, const char *txid, const char *key, const char *value)
{
    char err[512];
    memset(f, 0, sizeof(*f));
    f->pconf = conf_with("kafka.test.mock.num.brokers", "1");
    if (key)
        CU_ASSERT_EQUAL_FATAL(es_conf_set(f->pconf, key, value, "test", err, sizeof(err)),
                              ES_ERR_OK);
    es_producer_opts_t po = {
        .transactional_id = txid,
        .on_delivery = on_delivery,
        .opaque = f,
        .txn_timeout_ms = TXN_WAIT_MS,
    };
    f->prod = es_producer_new_opts(f->pconf, &po, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->prod);
    f->mc = rd_kafka_handle_mock_cluster(es_producer_rk(f->prod));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->mc);
    CU_ASSERT_EQUAL(rd_kafka_mock_topic_create(f->mc, "ev", 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    CU_ASSERT_EQUAL(rd_kafka_mock_topic_create(f->mc, "cmd", 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    CU_ASSERT_EQUAL_FATAL(es_producer_init_transactions(f->prod, err, sizeof(err)), ES_ERR_OK);
    f->cconf = conf_with("kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc));
    f->cons = es_consumer_new(f->cconf, "grp", err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->cons);
}

static void setup(fixture_t *f, const char *txid)
{
    setup_with(f, txid, NULL, NULL);
}

static void teardown(fixture_t *f)
{
    es_consumer_destroy_now(f->cons);
    es_producer_destroy_now(f->prod);
    es_conf_destroy(f->cconf);
    es_conf_destroy(f->pconf);
}

static es_err_t send_keyed(fixture_t *f, const char *topic, int32_t partition, const char *key,
                           size_t keylen)
{
    char err[256];
    es_record_t rec = {.topic = topic,
                       .partition = partition,
                       .key = key,
                       .keylen = keylen,
                       .value = "v",
                       .valuelen = 1};
    return es_producer_send_record(f->prod, &rec, ES_SEND_WAIT, err, sizeof(err));
}

static es_err_t send_to(fixture_t *f, const char *topic, int32_t partition)
{
    return send_keyed(f, topic, partition, "k", 1);
}

/* The group's committed offset of cmd [@p p], or -1000 when unknown. */
static int64_t committed(fixture_t *f, int32_t p)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, "cmd", p);
    int64_t off = -1000;
    if (!rd_kafka_committed(es_consumer_rk(f->cons), tl, TXN_WAIT_MS))
        off = tl->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(tl);
    return off;
}

static rd_kafka_topic_partition_list_t *offsets_of(int32_t p, int64_t next)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, "cmd", p)->offset = next;
    return tl;
}

static void test_commit_partition_and_offsets(void)
{
    fixture_t f;
    char err[512];
    setup(&f, "txn-commit");
    rd_kafka_topic_partition_list_t *offs = offsets_of(1, 5);

    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(&f, "ev", 2), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(f.delivered, 1);
    CU_ASSERT_EQUAL(f.last_partition, 2); /* the partition asked for, not the partitioner's */
    CU_ASSERT_EQUAL(f.last_offset, 0);
    CU_ASSERT_EQUAL(es_txn_send_offsets(f.prod, f.cons, offs, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);

    rd_kafka_topic_partition_list_destroy(offs);
    teardown(&f);
}

static void test_failed_delivery_aborts_one_transaction(void)
{
    fixture_t f;
    char err[512];
    setup(&f, "txn-abort");
    rd_kafka_topic_partition_list_t *offs = offsets_of(0, 1);
    rd_kafka_assign(es_consumer_rk(f.cons), offs); /* a rewind seeks assigned partitions */

    rd_kafka_mock_push_request_errors(f.mc, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(&f, "ev", 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_ABORT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "delivery"));
    CU_ASSERT_EQUAL(es_txn_abort(f.prod, f.cons, offs, err, sizeof(err)), ES_TXN_OK);

    /* The next transaction is judged on its own deliveries: without the
     * reset at begin, its flush would report the aborted one's failure.
     * (It produces nothing: the mock broker of librdkafka 2.0.2 does not
     * follow the epoch bump after an abort, and refuses the next sequence.) */
    rd_kafka_mock_clear_request_errors(f.mc, 0);
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(es_txn_send_offsets(f.prod, f.cons, offs, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);

    rd_kafka_topic_partition_list_destroy(offs);
    teardown(&f);
}

/* The offset of the next message the consumer returns, or -1 when none came. */
static int64_t next_offset(fixture_t *f)
{
    for (int i = 0; i < 50; i++) {
        rd_kafka_message_t *m = es_consumer_poll(f->cons, 100);
        if (!m)
            continue;
        int64_t off = m->err ? -2 : m->offset;
        rd_kafka_message_destroy(m);
        if (off >= 0)
            return off;
    }
    return -1;
}

static void test_abort_rewinds_to_committed(void)
{
    fixture_t f;
    char err[512];
    setup(&f, "txn-rewind");
    /* three records on cmd [0], offsets 0..2; the group's committed offset is 1 */
    rd_kafka_topic_partition_list_t *offs = offsets_of(0, 1);
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(send_to(&f, "cmd", 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(rd_kafka_commit(es_consumer_rk(f.cons), offs, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    CU_ASSERT_EQUAL(committed(&f, 0), 1);

    rd_kafka_topic_partition_list_t *from0 = offsets_of(0, 0);
    rd_kafka_assign(es_consumer_rk(f.cons), from0);
    CU_ASSERT_EQUAL(next_offset(&f), 0);
    CU_ASSERT_EQUAL(next_offset(&f), 1);
    CU_ASSERT_EQUAL(next_offset(&f), 2);

    /* an aborted batch: the consumer goes back to the committed offset */
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(es_txn_abort(f.prod, f.cons, offs, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(next_offset(&f), 1);
    CU_ASSERT_EQUAL(next_offset(&f), 2);

    /* and the same for every assigned partition (a batch polled across a rebalance) */
    CU_ASSERT_EQUAL(es_consumer_rewind(f.cons, NULL, err, sizeof(err)), ES_ERR_OK);
    CU_ASSERT_EQUAL(next_offset(&f), 1);

    rd_kafka_topic_partition_list_destroy(from0);
    rd_kafka_topic_partition_list_destroy(offs);
    teardown(&f);
}

static bool retry_then(void *opaque, int attempt, const char *why)
{
    int *calls = opaque;
    (void)attempt;
    CU_ASSERT_PTR_NOT_NULL(why);
    return ++*calls < 100; /* go on */
}

static bool stop_now(void *opaque, int attempt, const char *why)
{
    int *calls = opaque;
    (void)attempt;
    (void)why;
    ++*calls;
    return false;
}

/* A transaction with one record, its commit's answer held back by the broker. */
static void begin_slow_commit(fixture_t *f)
{
    char err[512];
    CU_ASSERT_EQUAL(es_txn_begin(f->prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(f, "ev", 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f->prod, err, sizeof(err)), ES_TXN_OK);
    rd_kafka_mock_broker_push_request_error_rtts(f->mc, 1, API_ENDTXN, 1,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 3 * TXN_WAIT_MS);
}

static void test_commit_retried_not_aborted(void)
{
    fixture_t f;
    char err[512];
    int calls = 0;
    setup(&f, "txn-retry");
    begin_slow_commit(&f);
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, retry_then, &calls, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT(calls >= 1); /* the first attempt's answer did not arrive in time */
    teardown(&f);

    calls = 0;
    setup(&f, "txn-stop");
    begin_slow_commit(&f);
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, stop_now, &calls, err, sizeof(err)), ES_TXN_FATAL);
    CU_ASSERT_EQUAL(calls, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unanswered"));
    teardown(&f);
}

/* One transaction's offsets sent while the broker refuses AddOffsetsToTxn @p refusals times
 * with @p refusal, on a producer whose retry.backoff.ms is 5 s. */
static es_txn_rc_t offsets_refused(const char *txid, rd_kafka_resp_err_t refusal, int refusals)
{
    fixture_t f;
    char err[512];
    setup_with(&f, txid, "kafka.retry.backoff.ms", "5000");
    rd_kafka_topic_partition_list_t *offs = offsets_of(1, 5);
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(&f, "ev", 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
    rd_kafka_resp_err_t errs[8];
    CU_ASSERT_FATAL(refusals <= (int)(sizeof(errs) / sizeof(errs[0])));
    for (int i = 0; i < refusals; i++)
        errs[i] = refusal;
    rd_kafka_mock_push_request_errors_array(f.mc, API_ADDOFFSETS, (size_t)refusals, errs);
    es_txn_rc_t rc = es_txn_send_offsets(f.prod, f.cons, offs, err, sizeof(err));
    if (rc == ES_TXN_OK)
        CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);
    rd_kafka_topic_partition_list_destroy(offs);
    teardown(&f);
    return rc;
}

/* scripts/build-librdkafka, fix_txn_offsets_concurrent: CONCURRENT_TRANSACTIONS (the
 * coordinator still writing the previous commit's markers) is retried after 2, 4, 8, 16, 20 ms,
 * not after retry.backoff.ms, so five refusals are over within the transaction's 2 s.  Any
 * other retriable refusal still waits retry.backoff.ms, 5 s here: that call fails, which
 * shows the 5 s were in force (at librdkafka's default 100 ms both would pass). */
static void test_offsets_refused_while_markers_written(void)
{
    CU_ASSERT_EQUAL(offsets_refused("txn-concurrent", RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS, 5),
                    ES_TXN_OK);
    CU_ASSERT_NOT_EQUAL(
        offsets_refused("txn-loading", RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, 1),
        ES_TXN_OK);
}

/* The AddPartitionsToTxn requests of one transaction that writes ev [0], then ev [1], then
 * a record to cmd by its key, each flushed before the next; with @p mark, those three partitions
 * were marked at its begin.  Counted with NO_ERROR entries on the mock broker's error stack: each
 * request takes one.  A transaction before it makes both topics known to the producer (a
 * partition it does not know yet is left to its first record). */
static size_t registrations(const char *txid, bool mark)
{
    fixture_t f;
    char err[512];
    size_t left = 0;
    setup(&f, txid);
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(&f, "ev", 2), ES_ERR_OK);
    CU_ASSERT_EQUAL(send_to(&f, "cmd", 2), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
    rd_kafka_mock_broker_push_request_error_rtts(
        f.mc, MOCK_BROKER, API_ADDPARTS, COUNTED, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
        RD_KAFKA_RESP_ERR_NO_ERROR, 0, RD_KAFKA_RESP_ERR_NO_ERROR, 0, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
        RD_KAFKA_RESP_ERR_NO_ERROR, 0, RD_KAFKA_RESP_ERR_NO_ERROR, 0, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
        RD_KAFKA_RESP_ERR_NO_ERROR, 0);
    int32_t keyed = es_producer_key_partition(f.prod, "k", 1, 3); /* send_to()'s key */
    CU_ASSERT(keyed >= 0 && keyed < 3);
    if (mark) {
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
        rd_kafka_topic_partition_list_add(parts, "ev", 0);
        rd_kafka_topic_partition_list_add(parts, "ev", 1);
        rd_kafka_topic_partition_list_add(parts, "cmd", keyed);
        CU_ASSERT_TRUE(es_txn_add_partitions(f.prod, parts));
        rd_kafka_topic_partition_list_destroy(parts);
    }
    CU_ASSERT_EQUAL(send_to(&f, "ev", 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(&f, "ev", 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(send_to(&f, "cmd", RD_KAFKA_PARTITION_UA), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(f.last_partition, keyed); /* librdkafka's partitioner put it there */
    CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);
    CU_ASSERT_EQUAL(rd_kafka_mock_broker_error_stack_cnt(f.mc, MOCK_BROKER, API_ADDPARTS, &left),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
    teardown(&f);
    return COUNTED - left;
}

/* scripts/build-librdkafka, fix_txn_add_partitions: partitions marked at the begin are
 * registered together with the first record's, in one AddPartitionsToTxn; unmarked, the
 * records after the flush need a registration of their own (at least one more). */
static void test_marked_partitions_registered_at_once(void)
{
    CU_ASSERT_EQUAL(registrations("txn-marked", true), 1);
    CU_ASSERT(registrations("txn-unmarked", false) >= 2);
}

/* A marked partition that no record follows is still registered, and its registration may be
 * answered after the commit sent EndTxn (the mock broker delays that answer by 50 ms):
 * librdkafka asserted that no answer comes then, and aborted the process (fix_txn_add_partitions
 * now ignores it, as it does one after an abort).  The commits go through, the next ones too. */
static void test_marked_partition_without_records(void)
{
    fixture_t f;
    char err[512];
    setup(&f, "txn-marked-empty");
    for (int round = 0; round < 3; round++) {
        CU_ASSERT_EQUAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
        CU_ASSERT_EQUAL(send_to(&f, "ev", 0), ES_ERR_OK); /* makes both topics known... */
        CU_ASSERT_EQUAL(send_to(&f, "cmd", 0), ES_ERR_OK);
        CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
        rd_kafka_mock_broker_push_request_error_rtts(f.mc, MOCK_BROKER, API_ADDPARTS, 1,
                                                     RD_KAFKA_RESP_ERR_NO_ERROR, 50);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, "cmd", 1); /* ...and this one stays empty */
        CU_ASSERT_TRUE(es_txn_add_partitions(f.prod, parts));
        rd_kafka_topic_partition_list_destroy(parts);
        CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);
    }
    teardown(&f);
}

/*
 * Only Java's murmur2 places keys: librdkafka's other partitioners (random, or
 * consistent and fnv1a by another hash) would put an aggregate where the
 * projector's routing (asof.c) and every Java client do not look.
 */
static void test_only_java_partitioners(void)
{
    static const char *const refused[] = {"random", "consistent",   "consistent_random",
                                          "fnv1a",  "fnv1a_random", "murmur2-random"};
    char err[512];
    es_conf_t *conf = conf_with("kafka.test.mock.num.brokers", "1");
    for (size_t i = 0; i < ES_ARRAY_SIZE(refused); i++) {
        CU_ASSERT_EQUAL(es_conf_set(conf, "kafka.partitioner", refused[i], "test", err, 512),
                        ES_ERR_CONF);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "kafka.partitioner"));
    }
    es_conf_destroy(conf);
    fixture_t f;
    setup_with(&f, "txn-murmur2", "kafka.partitioner", "murmur2");
    CU_ASSERT_EQUAL(es_producer_key_partition(f.prod, "k", 1, 3),
                    rd_kafka_msg_partitioner_murmur2(NULL, "k", 1, 3, NULL, NULL));
    teardown(&f);
}

/* Keys of every length from 1 to ES_ID_MAX (an Idempotency-Key's largest, which the
 * command service hashes to mark its outcome's partition): each lands where
 * es_producer_key_partition() said, librdkafka's own placement the oracle, and the keys
 * reach every partition (else a function that named one fixed partition would pass). */
static void test_key_partition_for_every_id_length(void)
{
    fixture_t f;
    char err[512], key[ES_ID_MAX];
    size_t wrong = 0, seen[3] = {0};
    setup(&f, "txn-keys");
    for (size_t len = 1; len <= ES_ID_MAX; len++) {
        if (len % 32 == 1) /* a transaction per 32 keys: each well inside TXN_WAIT_MS */
            CU_ASSERT_EQUAL_FATAL(es_txn_begin(f.prod, err, sizeof(err)), ES_TXN_OK);
        for (size_t i = 0; i < len; i++) /* printable, as an id must be */
            key[i] = (char)('!' + (len * 31 + i * 7) % 94);
        int32_t want = es_producer_key_partition(f.prod, key, len, 3);
        CU_ASSERT_EQUAL(send_keyed(&f, "cmd", RD_KAFKA_PARTITION_UA, key, len), ES_ERR_OK);
        CU_ASSERT_EQUAL(es_txn_flush(f.prod, err, sizeof(err)), ES_TXN_OK);
        if (f.last_partition != want)
            fprintf(stderr, "a key of %zu bytes: placed in %d, named %d\n", len,
                    (int)f.last_partition, (int)want);
        wrong += f.last_partition != want;
        if (f.last_partition >= 0 && f.last_partition < 3)
            seen[f.last_partition]++;
        if (len % 32 == 0)
            CU_ASSERT_EQUAL(es_txn_commit(f.prod, NULL, NULL, err, sizeof(err)), ES_TXN_OK);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    teardown(&f);
}

/* Marking needs an open transaction, as a produce does. */
static void test_marking_outside_a_transaction(void)
{
    fixture_t f;
    setup(&f, "txn-none");
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "ev", 0);
    CU_ASSERT_FALSE(es_txn_add_partitions(f.prod, parts));
    rd_kafka_topic_partition_list_destroy(parts);
    teardown(&f);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a transaction commits records to their partition, and the offsets",
         test_commit_partition_and_offsets},
        {"a failed delivery aborts one transaction, not the next",
         test_failed_delivery_aborts_one_transaction},
        {"an abort rewinds the consumer to the committed offsets", test_abort_rewinds_to_committed},
        {"an unanswered commit is retried, and given up only when told",
         test_commit_retried_not_aborted},
        {"a refused AddOffsetsToTxn waits milliseconds while the markers are written",
         test_offsets_refused_while_markers_written},
        {"partitions marked ahead are registered with the first record's, at once",
         test_marked_partitions_registered_at_once},
        {"no partition is marked outside a transaction", test_marking_outside_a_transaction},
        {"only Java's murmur2 partitioners are taken", test_only_java_partitioners},
        {"a key of every id length goes where es_producer_key_partition says",
         test_key_partition_for_every_id_length},
        {"a marked partition no record follows does not stop the commit",
         test_marked_partition_without_records},
        {NULL, NULL},
    };
    return es_test_run("kafka_txn", cases);
}
