/*
 * 0915-no-thread.c — no thread to be had for the work a program hands to a
 * thread of its own (es_handoff): it runs in line, and nothing is lost,
 * left unconsumed, applied twice or decided twice.
 *
 * The LD_PRELOAD shim (kill_at_call.c) refuses pthread_create to
 * es_handoff_give while a file exists (as a thread limit or memory would)
 * and says that it did; each case asserts that it did, or it proved nothing.
 *
 * The command service: the offsets of <agg>.commands go to the transaction
 * on a thread of their own (txn.c), started at the first batch; refused, the
 * batch sends them itself after its outcomes and states, and the next batch
 * asks for the thread again.  The service starts with the file in place, so
 * the openings and a first burst of deposits (each sent once, never retried)
 * are all decided without the thread, and the group must then have committed
 * the end of <agg>.commands, still without it (a batch whose offsets were
 * never sent would be consumed again).  The file is then removed and a second
 * burst goes through the thread, then the service is restarted on its store
 * and every deposit of the first burst is retried: each must repeat its first
 * answer.  The check reads the log (deposits.c): every command id has exactly
 * one event, of the version its 200 named, and every balance is the sum of
 * its deposits.
 *
 * The projector: a batch's store write goes to a thread of its own while the
 * next batch is folded (loop.c, pipelined); refused, it is written in line.
 * The projector folds a backlog of cart events with the file in place, then
 * more that arrive while it runs, is stopped, and its store is compared with
 * the independent model of exactly the events below its stored offsets
 * (readtest.h, never the projection's fold); then again with the thread.
 */
#include "cart.h"
#include "deposits.h"
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACCOUNTS 4
#define BURST    24
#define MAX_SENT (3 * BURST)
#define CARTS    3000 /* cart events per step of the projector's case */

#ifndef KILL_AT_CALL_SO
#error "KILL_AT_CALL_SO: the shim's path (tests/CMakeLists.txt)"
#endif

/* The shim's file at @p arm (and where it says it refused: @p refused) in @p dir. */
static void arm_refusal(const char *dir, char *arm, size_t armsz, char *refused, size_t refsz)
{
    snprintf(arm, armsz, "%s/refuse-handoff", dir);
    snprintf(refused, refsz, "%s.refused", arm);
    FILE *f = fopen(arm, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    setenv("ESCQRS_TEST_REFUSE_HANDOFF", arm, 1);
}

/* Post a burst; every deposit must be answered 200. */
static dp_sent_t *burst_all_200(dp_load_t *load, const char *tag)
{
    dp_sent_t *b = dp_burst(load, tag, BURST);
    size_t ok = 0;
    for (size_t i = 0; i < BURST; i++)
        ok += b[i].status == 200;
    printf("\n  %s: %zu of %d answered 200", tag, ok, BURST);
    CU_ASSERT_EQUAL(ok, BURST);
    return b;
}

static void test_offsets_sent_in_line(void)
{
    wt_stack_t st;
    dp_load_t load;
    char arm[600], refused[700];
    wt_stack_init(&st, "account");
    arm_refusal(st.dir, arm, sizeof(arm), refused, sizeof(refused));

    es_test_preload(KILL_AT_CALL_SO); /* dp_start starts the service first */
    dp_start(&load, &st, NULL, 0, ACCOUNTS, MAX_SENT);
    es_test_preload(NULL);
    size_t from = load.nsent;
    dp_sent_t *inline_burst = burst_all_200(&load, "in-line");
    double commits = wt_metric(&st.cs, "escqrs_transaction_commit_seconds_count");
    printf(", %.0f transactions so far, the thread refused: %s", commits,
           access(refused, F_OK) == 0 ? "yes" : "NO");
    CU_ASSERT_FATAL(access(refused, F_OK) == 0); /* else this test proved nothing */
    CU_ASSERT(commits > 0);
    CU_ASSERT(wt_log_line(st.cs.log, "no thread could be created", NULL, NULL, 0));
    /* still without the thread: the in-line batches' own transactions committed their
     * offsets (a later batch's would cover a batch that sent none) */
    char why[512] = "";
    bool at_end = wt_wait_group_at_end(&st, 30, why, sizeof(why));
    printf(", the group at the end of the commands: %s%s", at_end ? "yes" : "NO: ", why);
    CU_ASSERT(at_end);

    unlink(arm); /* the next batch gets its thread */
    unlink(refused);
    burst_all_200(&load, "threaded");
    CU_ASSERT(access(refused, F_OK) != 0);

    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 90);
    dp_sent_t *again = dp_retry(&load, from, BURST);
    size_t same = 0;
    for (size_t i = 0; i < BURST; i++)
        same += again[i].status == 200 && again[i].version == inline_burst[i].version;
    printf("\n  retried after a restart: %zu of %d answered 200 with the first version", same,
           BURST);
    CU_ASSERT_EQUAL(same, BURST);

    dp_check_t c;
    dp_check(&load, &c);
    wt_stack_stop(&st);
    unsetenv("ESCQRS_TEST_REFUSE_HANDOFF");
    printf("\n  RESULT commands=%zu commands_dropped=%zu commands_doubled=%zu "
           "events_missing_or_extra=%zu wrong_version=%zu\n",
           c.commands, c.dropped, c.doubled, c.event_count_off, c.wrong_version);
    dp_free(&load);
}

/* CARTS more cart events to @p tp; the projector, when running, must apply them. */
static void produce_carts(rt_topic_t *tp, es_sim_t *sim, es_evgen_t *g)
{
    for (int i = 0; i < CARTS; i++) {
        const char *id;
        avro_value_t *v = es_sim_next(sim, g, 0, &id);
        rt_produce(tp, id, v);
    }
    rt_topic_flush(tp);
}

/* Stop the projector and compare its store with the model; @p want events applied. */
static void stopped_store_matches(rt_proc_t *proc, const char *root, rt_topic_t *tp, size_t want,
                                  const char *when)
{
    CU_ASSERT_EQUAL(rt_proc_stop(proc), 0);
    size_t applied = 0, diffs = rt_compare_store(root, &es_proj_cart_view, tp, &applied);
    printf("\n  %s: %zu of %zu events applied, %zu differences from the model", when, applied, want,
           diffs);
    CU_ASSERT_EQUAL(diffs, 0);
    CU_ASSERT_EQUAL(applied, want);
}

/* A backlog of cart events, then the projector (cart_view, under the shim) started over
 * @p root and more events while it runs; returns once it applied them all. */
static void fold_backlog_and_live(rt_proc_t *proc, const char *root, const char *agg,
                                  rt_topic_t *tp, es_sim_t *sim, es_evgen_t *g)
{
    const char *sets[] = {"batch.max.events=200", "log.level=warn", "projections=cart_view"};
    produce_carts(tp, sim, g);
    es_test_preload(KILL_AT_CALL_SO);
    rt_proc_start(proc, root, agg, sets, 3);
    es_test_preload(NULL);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(proc, 30000));
    produce_carts(tp, sim, g);
    CU_ASSERT_TRUE(rt_wait_projection_at_end(proc, "cart_view", tp, 120));
}

static void test_projector_writes_in_line(void)
{
    char prefix[128], agg[160], root[300], arm[600], refused[700];
    es_conf_t *conf = rt_conf(2);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    rt_proc_t proc = {0};
    es_test_unique("ft0915", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    snprintf(agg, sizeof(agg), "%s.", prefix);
    es_sim_init(&sim, prefix, (uint64_t)getpid() * 2654435761u + 1, 200);
    arm_refusal(root, arm, sizeof(arm), refused, sizeof(refused));

    fold_backlog_and_live(&proc, root, agg, &cart, &sim, g);
    printf("\n  projector, the thread refused: %s", access(refused, F_OK) == 0 ? "yes" : "NO");
    CU_ASSERT_FATAL(access(refused, F_OK) == 0); /* else this case proved nothing */
    stopped_store_matches(&proc, root, &cart, cart.n, "written in line");

    unlink(arm);
    unlink(refused);
    fold_backlog_and_live(&proc, root, agg, &cart, &sim, g);
    CU_ASSERT(access(refused, F_OK) != 0);
    stopped_store_matches(&proc, root, &cart, cart.n, "then with the thread");
    printf("\n");

    unsetenv("ESCQRS_TEST_REFUSE_HANDOFF");
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"command service, no thread for the offsets: sent in line, nothing lost or decided "
         "twice",
         test_offsets_sent_in_line},
        {"projector, no thread for the store write: written in line, the views as the model",
         test_projector_writes_in_line},
        {NULL, NULL},
    };
    return es_test_run("fault-no-thread", cases);
}
