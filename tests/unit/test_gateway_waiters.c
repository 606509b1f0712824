/*
 * test_gateway_waiters.c — the gateway's waiter table (producers/gateway/
 * waiters.c): which requests an outcome answers.
 *
 * The answers go to es_http_deferred_json(), which this test replaces
 * (linked with -Wl,--wrap=es_http_deferred_json), so no HTTP server runs
 * and the interleavings are exact: the replacement records each answer and
 * can register the client's next request at the moment its answer is
 * given, as a client that retries at once does.
 */
#include "gateway_int.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <string.h>

#define MAX_ANSWERS 8

typedef struct {
    es_http_deferred_t *to;
    int status;
    char error[64];
} answer_t;

static answer_t answers[MAX_ANSWERS];
static size_t nanswers;
static gw_t *retry_gw; /* set: the first answer registers the retry below */
static char retry_id[64];
static waiter_t *retry_waiter;
static es_http_deferred_t *const RETRY = (es_http_deferred_t *)"retry";
static gw_agg_t collections[2]; /* only their addresses tell them apart here */
#define ACCOUNTS (&collections[0])
#define LEDGERS  (&collections[1])

void __wrap_es_http_deferred_json(es_http_deferred_t *d, int status, json_t *body);

void __wrap_es_http_deferred_json(es_http_deferred_t *d, int status, json_t *body)
{
    CU_ASSERT_FATAL(nanswers < MAX_ANSWERS);
    answer_t *a = &answers[nanswers++];
    a->to = d;
    a->status = status;
    snprintf(a->error, sizeof(a->error), "%s",
             es_test_or_empty(json_string_value(json_object_get(body, "error"))));
    json_decref(body);
    if (retry_gw) { /* the client has its answer and sends the same key again */
        gw_t *gw = retry_gw;
        retry_gw = NULL;
        retry_waiter = gw_waiter_add(gw, ACCOUNTS, retry_id, "acct-1", 0, RETRY);
    }
}

static void gw_init(gw_t *gw)
{
    memset(gw, 0, sizeof(*gw));
    static const double bounds[] = {0.01, 0.1, 1};
    gw->metrics = es_metrics_new();
    gw->h_latency = es_metrics_histogram(gw->metrics, "t", "t", NULL, bounds, 3);
    gw->timeout_ms = 60000;
    pthread_mutex_init(&gw->mu, NULL);
    nanswers = 0;
    retry_gw = NULL;
    retry_waiter = NULL;
}

static void gw_fini(gw_t *gw)
{
    gw_waiters_finish_all(gw);
    es_metrics_destroy(gw->metrics);
    pthread_mutex_destroy(&gw->mu);
}

static es_outcome_t outcome(const char *id, es_outcome_status_t status)
{
    es_outcome_t o;
    memset(&o, 0, sizeof(o));
    snprintf(o.command_id, sizeof(o.command_id), "%s", id);
    snprintf(o.aggregate_id, sizeof(o.aggregate_id), "%s", "acct-1");
    o.status = status;
    o.version = 6;
    return o;
}

/* What the delivery reports below say of their records (librdkafka's
 * accessor reads its own message struct, which these are not). */
static rd_kafka_msg_status_t delivery_status = RD_KAFKA_MSG_STATUS_PERSISTED;

rd_kafka_msg_status_t __wrap_rd_kafka_message_status(const rd_kafka_message_t *m);

rd_kafka_msg_status_t __wrap_rd_kafka_message_status(const rd_kafka_message_t *m)
{
    (void)m;
    return delivery_status;
}

/* The delivery report of a waiter's command, failed with @p err and
 * @p status: it holds a reference until then. */
static void delivery_report(gw_t *gw, waiter_t *w, rd_kafka_resp_err_t err,
                            rd_kafka_msg_status_t status)
{
    rd_kafka_message_t m;
    memset(&m, 0, sizeof(m));
    m._private = w;
    m.err = err;
    delivery_status = status;
    gw_on_delivery(gw, &m);
}

static void delivered(gw_t *gw, waiter_t *w)
{
    delivery_report(gw, w, RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_MSG_STATUS_PERSISTED);
}

/* The outcome as the results thread hands it out: read, then answered. */
static void outcome_read_from(gw_t *gw, const gw_agg_t *ag, const es_outcome_t *o)
{
    uint64_t seen;
    if (gw_waiter_wanted(gw, o->command_id, &seen))
        gw_waiters_answer(gw, ag, o, seen);
}

static void outcome_read(gw_t *gw, const es_outcome_t *o)
{
    outcome_read_from(gw, ACCOUNTS, o);
}

static void test_retry_registered_while_answering(void)
{
    gw_t gw;
    gw_init(&gw);
    es_http_deferred_t *first = (es_http_deferred_t *)"first";
    snprintf(retry_id, sizeof(retry_id), "key-1");
    waiter_t *w = gw_waiter_add(&gw, ACCOUNTS, "key-1", "acct-1", 0, first);
    delivered(&gw, w);
    retry_gw = &gw; /* answering the first request sends the retry (another body) */
    es_outcome_t accepted = outcome("key-1", ES_OUTCOME_ACCEPTED);
    outcome_read(&gw, &accepted);
    CU_ASSERT_PTR_NOT_NULL_FATAL(retry_waiter);
    /* the first outcome answered the first request only */
    CU_ASSERT_EQUAL_FATAL(nanswers, 1);
    CU_ASSERT_PTR_EQUAL(answers[0].to, first);
    CU_ASSERT_EQUAL(answers[0].status, 200);
    /* the retry's own command record is refused: that is its answer */
    delivered(&gw, retry_waiter);
    es_outcome_t reused = outcome("key-1", ES_OUTCOME_IDEMPOTENCY_KEY_REUSED);
    outcome_read(&gw, &reused);
    CU_ASSERT_EQUAL_FATAL(nanswers, 2);
    CU_ASSERT_PTR_EQUAL(answers[1].to, RETRY);
    CU_ASSERT_EQUAL(answers[1].status, 409);
    CU_ASSERT_STRING_EQUAL(answers[1].error, "idempotency_key_reused");
    gw_fini(&gw);
}

static void test_waiting_before_the_outcome_all_answered(void)
{
    gw_t gw;
    gw_init(&gw);
    es_http_deferred_t *a = (es_http_deferred_t *)"a", *b = (es_http_deferred_t *)"b";
    waiter_t *wa = gw_waiter_add(&gw, ACCOUNTS, "key-2", "acct-1", 0, a);
    waiter_t *wb =
        gw_waiter_add(&gw, ACCOUNTS, "key-2", "acct-1", 0, b); /* the same key, at once */
    delivered(&gw, wa);
    delivered(&gw, wb);
    es_outcome_t accepted = outcome("key-2", ES_OUTCOME_ACCEPTED);
    outcome_read(&gw, &accepted);
    CU_ASSERT_EQUAL_FATAL(nanswers, 2);
    CU_ASSERT_EQUAL(answers[0].status, 200);
    CU_ASSERT_EQUAL(answers[1].status, 200);
    CU_ASSERT(answers[0].to != answers[1].to);
    /* another key's waiter and another aggregate's outcome are not touched */
    waiter_t *wc = gw_waiter_add(&gw, ACCOUNTS, "key-3", "acct-1", 0, a);
    delivered(&gw, wc);
    es_outcome_t other = outcome("key-3", ES_OUTCOME_ACCEPTED);
    snprintf(other.aggregate_id, sizeof(other.aggregate_id), "acct-2");
    outcome_read(&gw, &other);
    CU_ASSERT_EQUAL(nanswers, 2);
    gw_fini(&gw); /* key-3 is answered 504 at the stop */
    CU_ASSERT_EQUAL_FATAL(nanswers, 3);
    CU_ASSERT_EQUAL(answers[2].status, 504);
}

/* An outcome read before a request registered is not that request's answer,
 * even when the results thread hands it out after the registration. */
static void test_outcome_read_before_registration(void)
{
    gw_t gw;
    gw_init(&gw);
    uint64_t seen;
    es_http_deferred_t *early = (es_http_deferred_t *)"early", *late = (es_http_deferred_t *)"late";
    waiter_t *we = gw_waiter_add(&gw, ACCOUNTS, "key-4", "acct-1", 0, early);
    delivered(&gw, we);
    CU_ASSERT_TRUE(gw_waiter_wanted(&gw, "key-4", &seen)); /* read */
    waiter_t *wl = gw_waiter_add(&gw, ACCOUNTS, "key-4", "acct-1", 0, late);
    delivered(&gw, wl);
    es_outcome_t accepted = outcome("key-4", ES_OUTCOME_ACCEPTED);
    gw_waiters_answer(&gw, ACCOUNTS, &accepted, seen); /* handed out */
    CU_ASSERT_EQUAL_FATAL(nanswers, 1);
    CU_ASSERT_PTR_EQUAL(answers[0].to, early);
    gw_fini(&gw);
    CU_ASSERT_EQUAL_FATAL(nanswers, 2);
    CU_ASSERT_PTR_EQUAL(answers[1].to, late);
    CU_ASSERT_EQUAL(answers[1].status, 504);
}

/* One Idempotency-Key and one aggregate id sent to two collections are two
 * commands: each request is answered by its own collection's outcome. */
static void test_same_key_in_two_collections(void)
{
    gw_t gw;
    gw_init(&gw);
    es_http_deferred_t *acc = (es_http_deferred_t *)"accounts",
                       *led = (es_http_deferred_t *)"ledgers";
    waiter_t *wa = gw_waiter_add(&gw, ACCOUNTS, "key-5", "acct-1", 0, acc);
    waiter_t *wl = gw_waiter_add(&gw, LEDGERS, "key-5", "acct-1", 0, led);
    delivered(&gw, wa);
    delivered(&gw, wl);
    es_outcome_t rejected = outcome("key-5", ES_OUTCOME_REJECTED);
    snprintf(rejected.reason, sizeof(rejected.reason), "insufficient_funds");
    outcome_read_from(&gw, LEDGERS, &rejected); /* the ledger's outcome comes first */
    CU_ASSERT_EQUAL_FATAL(nanswers, 1);
    CU_ASSERT_PTR_EQUAL(answers[0].to, led);
    CU_ASSERT_EQUAL(answers[0].status, 422);
    es_outcome_t accepted = outcome("key-5", ES_OUTCOME_ACCEPTED);
    outcome_read_from(&gw, ACCOUNTS, &accepted);
    CU_ASSERT_EQUAL_FATAL(nanswers, 2);
    CU_ASSERT_PTR_EQUAL(answers[1].to, acc);
    CU_ASSERT_EQUAL(answers[1].status, 200);
    gw_fini(&gw);
    CU_ASSERT_EQUAL(nanswers, 2);
}

/* A record surely not written is answered 503 at once; one that may have been
 * written waits on for its outcome: a 503 would have the client send it again. */
static void test_failed_delivery(void)
{
    gw_t gw;
    gw_init(&gw);
    es_http_deferred_t *lost = (es_http_deferred_t *)"lost", *maybe = (es_http_deferred_t *)"maybe";
    waiter_t *wl = gw_waiter_add(&gw, ACCOUNTS, "key-6", "acct-1", 0, lost);
    waiter_t *wm = gw_waiter_add(&gw, ACCOUNTS, "key-7", "acct-1", 0, maybe);
    delivery_report(&gw, wl, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_MSG_STATUS_NOT_PERSISTED);
    CU_ASSERT_EQUAL_FATAL(nanswers, 1);
    CU_ASSERT_PTR_EQUAL(answers[0].to, lost);
    CU_ASSERT_EQUAL(answers[0].status, 503);
    delivery_report(&gw, wm, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
                    RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED);
    CU_ASSERT_EQUAL_FATAL(nanswers, 1); /* still waiting */
    es_outcome_t accepted = outcome("key-7", ES_OUTCOME_ACCEPTED);
    outcome_read(&gw, &accepted); /* it was written after all, and decided */
    CU_ASSERT_EQUAL_FATAL(nanswers, 2);
    CU_ASSERT_PTR_EQUAL(answers[1].to, maybe);
    CU_ASSERT_EQUAL(answers[1].status, 200);
    gw_fini(&gw);
    CU_ASSERT_EQUAL(nanswers, 2);
}

/* A request after the shutdown answered its waiters is answered 503 at once,
 * not left on a table nobody reads any more. */
static void test_request_after_shutdown(void)
{
    gw_t gw;
    gw_init(&gw);
    es_http_deferred_t *late = (es_http_deferred_t *)"late";
    gw_waiters_finish_all(&gw);
    CU_ASSERT_PTR_NULL(gw_waiter_add(&gw, ACCOUNTS, "key-8", "acct-1", 0, late));
    CU_ASSERT_EQUAL_FATAL(nanswers, 1);
    CU_ASSERT_PTR_EQUAL(answers[0].to, late);
    CU_ASSERT_EQUAL(answers[0].status, 503);
    CU_ASSERT_PTR_NULL(gw.oldest);
    gw_fini(&gw);
}

/* A produce that fails after the shutdown answered its waiter: not answered
 * twice, and freed (LeakSanitizer, in the ASan build, says if not). */
static void test_produce_fails_after_shutdown(void)
{
    gw_t gw;
    gw_init(&gw);
    es_http_deferred_t *d = (es_http_deferred_t *)"d";
    waiter_t *w = gw_waiter_add(&gw, ACCOUNTS, "key-9", "acct-1", 0, d);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    gw_waiters_finish_all(&gw); /* the shutdown, between the waiter and the produce */
    CU_ASSERT_EQUAL_FATAL(nanswers, 1);
    CU_ASSERT_EQUAL(answers[0].status, 504);
    gw_waiter_fail(&gw, w, gw_unavailable("queue full"));
    CU_ASSERT_EQUAL(nanswers, 1);
    gw_fini(&gw);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a retry registered while its first answer is given waits for its own outcome",
         test_retry_registered_while_answering},
        {"every request registered before the outcome is answered by it",
         test_waiting_before_the_outcome_all_answered},
        {"an outcome read before a request registered never answers it",
         test_outcome_read_before_registration},
        {"one key and aggregate id in two collections: each answered by its own outcome",
         test_same_key_in_two_collections},
        {"a delivery that may have been written waits for its outcome, not 503",
         test_failed_delivery},
        {"a request after the shutdown is answered 503, not left waiting",
         test_request_after_shutdown},
        {"a produce that fails after the shutdown answered its waiter",
         test_produce_fails_after_shutdown},
        {NULL, NULL},
    };
    return es_test_run("gateway-waiters", cases);
}
