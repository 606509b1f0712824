/*
 * 0915-no-offsets-thread.c — the command service when no thread can be had
 * for a transaction's consumed offsets: they are sent in line, after the
 * outcomes and states, and nothing is lost, left unconsumed or decided twice.
 *
 * The offsets of <agg>.commands go to the transaction on a thread of their
 * own (txn.c, es_handoff), started at the first batch.  When pthread_create
 * refuses it (a thread limit, memory), es_handoff_give says so and the batch
 * sends them itself; the next batch asks for the thread again.  The
 * LD_PRELOAD shim (kill_at_call.c) refuses the thread to es_handoff_give
 * while a file exists and says that it did: the service starts with it in
 * place, so the openings and a first burst of deposits (each sent once, never
 * retried) are all decided without the thread, and the group must then have
 * committed the end of <agg>.commands, still without it.  The file is then removed and
 * a second burst goes through the thread, then the service is restarted on
 * its store and every deposit of the first burst is retried: each must repeat
 * its first answer.  The check reads the log (deposits.c): the group commits
 * the end of <agg>.commands (a batch whose offsets were never sent would be
 * consumed again at the restart), every command id has exactly one event, of
 * the version its 200 named, and every balance is the sum of its deposits.
 */
#include "deposits.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ACCOUNTS 4
#define BURST    24
#define MAX_SENT (3 * BURST)

#ifndef KILL_AT_CALL_SO
#error "KILL_AT_CALL_SO: the shim's path (tests/CMakeLists.txt)"
#endif

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
    snprintf(arm, sizeof(arm), "%s/refuse-handoff", st.dir);
    snprintf(refused, sizeof(refused), "%s.refused", arm);
    FILE *f = fopen(arm, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    setenv("ESCQRS_TEST_REFUSE_HANDOFF", arm, 1);

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

int main(void)
{
    static const es_test_case_t cases[] = {
        {"no thread for the offsets: sent in line, nothing lost or decided twice",
         test_offsets_sent_in_line},
        {NULL, NULL},
    };
    return es_test_run("fault-no-offsets-thread", cases);
}
