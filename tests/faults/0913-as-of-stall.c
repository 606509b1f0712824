/*
 * 0913-as-of-stall.c — the broker freezes (SIGSTOP) while an `as_of` query
 * is reading the aggregate's partition from the log: the query must be
 * answered 503 with the reason while the broker is still frozen, the live
 * view must go on answering meanwhile, and once the broker answers again the
 * same `as_of` must equal the live answer.
 *
 * Why: an `as_of` that the aggregate's history cannot serve re-reads the
 * partition from its start (consumers/projector/asof.c, fold_from_log); it
 * used to poll until it reached its stop offset, so a broker that went away
 * mid-read held the HTTP worker (and the client) for as long as the broker
 * was gone.  Now a read that gets neither a record nor a move of its
 * position for PJ_ASOF_STALL_MS (10 s) answers 503.
 *
 * The broker is the fault profile's own (127.0.0.1:29092); the registry is
 * the test stack's.  To freeze the broker in the middle of a read, the read
 * is made slow and steady: the events are produced in small batches
 * (batch.size 16 KiB) and the projector fetches at most 16 KiB of the
 * partition per request and lets the broker wait its fetch.wait.max.ms for
 * a fetch.min.bytes it never reaches: about 160 KiB a second, so the
 * partition's 2 MB take the read about 12 s.  The broker is frozen 3 s into
 * the query; the test fails (not passes) if the answer came before that.
 */
#include "eventgen.h"
#include "readtest.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BROKER         "127.0.0.1:29092"
#define EVENTS         8000
#define FREEZE_AFTER_S 3
#define FROZEN_MAX_MS  40000 /* the broker stays frozen at most this long */
#define ANSWER_MAX_MS  25000 /* PJ_ASOF_STALL_MS, a poll, the fetch in flight: well within */

static int stack(const char *verb)
{
    return es_test_stack("fault", verb, "kafka");
}

static void stack_down_at_exit(void)
{
    stack("resume"); /* a frozen broker would not stop on SIGTERM */
    stack("down");
}

typedef struct {
    const rt_proc_t *proj;
    char path[400];
    int status;
    json_t *body;
    atomic_llong done_ms; /* 0 until answered */
} asof_query_t;

static void *asof_query(void *arg)
{
    asof_query_t *q = arg;
    q->status = rt_http(q->proj, "GET", q->path, &q->body);
    atomic_store(&q->done_ms, es_mono_ms());
    return NULL;
}

static void test_as_of_stall(void)
{
    char prefix[128], agg[200], store[300];
    rt_proc_t proj = {0};
    rt_topic_t cart;
    es_sim_t sim;
    es_evgen_t *g = es_evgen_new("cart.events");

    setenv("ESCQRS_TEST_BOOTSTRAP", BROKER, 1); /* every helper below uses this broker */
    atexit(stack_down_at_exit);
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);
    es_conf_t *conf = rt_conf(1);
    char err[256];
    CU_ASSERT_EQUAL_FATAL(es_conf_set(conf, "kafka.batch.size", "16384", "test", err, sizeof(err)),
                          ES_ERR_OK);
    es_test_unique("ft0913", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, (uint64_t)getpid() * 2654435761u + 13, 300);
    rt_produce_sim(&cart, &sim, g, EVENTS);
    rt_topic_flush(&cart);

    snprintf(agg, sizeof(agg), "%s.", prefix);
    snprintf(store, sizeof(store), "/tmp/%s-store", prefix);
    const char *sets[] = {"projections=cart_view", /* no history here: as_of reads the log */
                          "kafka.max.partition.fetch.bytes=16384",
                          "kafka.fetch.min.bytes=100000000", "kafka.fetch.wait.max.ms=100",
                          "log.level=info"};
    rt_proc_start(&proj, store, agg, sets, sizeof(sets) / sizeof(sets[0]));
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proj, 60000));
    CU_ASSERT_TRUE_FATAL(rt_wait_applied_to_end(&proj, &cart, 180));

    size_t c0 = 0;
    while (c0 < sim.ncarts && sim.carts[c0].version == 0)
        c0++;
    CU_ASSERT_TRUE_FATAL(c0 < sim.ncarts);
    char live_path[300];
    json_t *live = NULL;
    snprintf(live_path, sizeof(live_path), "/v1/carts/%s", sim.carts[c0].id);
    CU_ASSERT_EQUAL_FATAL(rt_http(&proj, "GET", live_path, &live), 200);

    /* the query reads the partition; the broker freezes in the middle of it */
    asof_query_t q = {.proj = &proj};
    snprintf(q.path, sizeof(q.path), "/v1/carts/%s?as_of=%lld", sim.carts[c0].id,
             (long long)es_now_ms() + 1000);
    int64_t sent_ms = es_mono_ms();
    pthread_t th;
    pthread_create(&th, NULL, asof_query, &q);
    sleep(FREEZE_AFTER_S);
    bool mid_read = atomic_load(&q.done_ms) == 0;
    fprintf(stderr, "the as_of query %s after %d s\n", mid_read ? "still reading" : "answered",
            FREEZE_AFTER_S);
    CU_ASSERT_TRUE(mid_read); /* else the freeze proves nothing: the read was too fast */
    CU_ASSERT_EQUAL_FATAL(stack("pause"), 0);
    int64_t frozen_ms = es_mono_ms();

    /* the live view answers while the broker is frozen; the as_of query is answered too */
    int live_ok = 0, live_asked = 0;
    while (atomic_load(&q.done_ms) == 0 && es_mono_ms() - frozen_ms < FROZEN_MAX_MS) {
        live_ok += rt_http(&proj, "GET", live_path, NULL) == 200;
        live_asked++;
        usleep(500 * 1000);
    }
    int64_t answered_ms = atomic_load(&q.done_ms);
    CU_ASSERT_EQUAL_FATAL(stack("resume"), 0);
    pthread_join(th, NULL);
    const char *msg = json_string_value(json_object_get(q.body, "message"));
    fprintf(stderr, "RESULT as_of answered %d after %lld ms (%lld ms into the freeze): %s\n",
            q.status, (long long)(answered_ms - sent_ms), (long long)(answered_ms - frozen_ms),
            msg ? msg : "(no message)");
    fprintf(stderr, "RESULT live queries during the freeze: %d of %d answered 200\n", live_ok,
            live_asked);
    CU_ASSERT_TRUE(answered_ms > frozen_ms && answered_ms - frozen_ms < ANSWER_MAX_MS);
    CU_ASSERT_EQUAL(q.status, 503);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "not answering") : NULL);
    CU_ASSERT_TRUE(live_asked > 0 && live_ok == live_asked);
    json_decref(q.body);

    /* the broker back: the same query answers as the live view */
    int st = 0;
    json_t *asof = NULL;
    for (int i = 0; i < 12 && st != 200; i++) {
        json_decref(asof);
        asof = NULL;
        st = rt_http(&proj, "GET", q.path, &asof);
        if (st != 200)
            sleep(5);
    }
    CU_ASSERT_EQUAL(st, 200);
    CU_ASSERT_TRUE(json_equal(asof, live));
    json_decref(asof);
    json_decref(live);

    CU_ASSERT_EQUAL(rt_proc_stop(&proj), 0);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a broker frozen in the middle of an as_of read: 503 while frozen, then the answer",
         test_as_of_stall},
        {NULL, NULL},
    };
    return es_test_run("0913-as-of-stall", cases);
}
