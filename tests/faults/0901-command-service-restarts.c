/*
 * 0901-command-service-restarts.c — commands in flight across ten kill -9
 * restarts of the command service, sent by clients that never retry.
 *
 * A client that does not retry cannot hide a lost command: each command is
 * sent exactly once.  Ten rounds: kill -9 the command service, send 30
 * deposits while it is down (each gets 504: the gateway wrote the command to
 * <agg>.commands and no outcome came), restart it (in round 5 with its
 * RocksDB store deleted), wait until it says it is ready, then send 5 more
 * deposits that must be answered 200 (progress after every restart).
 *
 * Then, once the load stops, the history check against the log itself:
 *  - the command service's group has committed the end of <agg>.commands;
 *  - every command in <agg>.commands has exactly one outcome on
 *    <agg>.command-results, ACCEPTED (a deposit to an open account cannot be
 *    refused), and exactly one Deposited event carrying its amount;
 *  - every account's versions are 1..n and its balance is the sum of every
 *    deposit sent to it, answered or not.
 * Prints the commands dropped (no outcome) and doubled across the restarts.
 */
#include "deposits.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#define ROUNDS      10
#define WHILE_DOWN  30
#define AFTER_UP    5
#define ACCOUNTS    5
#define MAX_SENT    (ROUNDS * (WHILE_DOWN + AFTER_UP))
#define STORE_ROUND 5
/* request.timeout.ms (3 s) and slack for a loaded 2-core machine */
#define DOWN_ANSWER_S 6.0

static wt_stack_t st;
static dp_load_t load;

static void test_restarts_without_retries(void)
{
    char tag[16];
    double ready_s[ROUNDS];
    wt_stack_init(&st, "account");
    dp_start(&load, &st, NULL, 0, ACCOUNTS, MAX_SENT);

    size_t answered_while_down = 0, after_ok = 0, slow_or_wrong_while_down = 0;
    for (int r = 0; r < ROUNDS; r++) {
        wt_kill9(&st.cs);
        snprintf(tag, sizeof(tag), "r%d", r);
        dp_sent_t *down = dp_burst(&load, tag, WHILE_DOWN);
        for (size_t i = 0; i < WHILE_DOWN; i++) {
            answered_while_down += down[i].status == 200;
            /* no outcome can come: the gateway gives up at request.timeout.ms */
            if (down[i].status != 504 || down[i].seconds > DOWN_ANSWER_S)
                fprintf(stderr,
                        "round %d: %s answered %d after %.1f s while the service was down\n", r,
                        down[i].key, down[i].status, down[i].seconds);
            slow_or_wrong_while_down += down[i].status != 504 || down[i].seconds > DOWN_ANSWER_S;
        }
        if (r == STORE_ROUND)
            CU_ASSERT_TRUE(wt_delete_store(&st));
        double t0 = es_mono_s();
        wt_start_service(&st, NULL, 0);
        wt_wait_ready(&st.cs, 90);
        ready_s[r] = es_mono_s() - t0;
        dp_sent_t *up = dp_burst(&load, tag, AFTER_UP);
        for (size_t i = 0; i < AFTER_UP; i++) {
            if (up[i].status != 200)
                fprintf(stderr, "round %d: %s answered %d after the restart\n", r, up[i].key,
                        up[i].status);
            after_ok += up[i].status == 200;
        }
    }
    dp_check_t c;
    dp_check(&load, &c);
    wt_stack_stop(&st);

    double ready_max = 0, ready_sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
        ready_sum += ready_s[r];
        ready_max = ready_s[r] > ready_max ? ready_s[r] : ready_max;
    }
    printf("\n  %d restarts: %zu commands in the log, %zu sent once each (%zu while down, %zu of "
           "them answered 200)\n",
           ROUNDS, c.commands, load.nsent, (size_t)ROUNDS * WHILE_DOWN, answered_while_down);
    printf("  RESULT commands_dropped=%zu commands_doubled=%zu not_accepted=%zu "
           "events_missing_or_extra=%zu after_restart_ok=%zu/%d ready_after_restart_s "
           "mean=%.1f max=%.1f not_504_in_time_while_down=%zu\n",
           c.dropped, c.doubled, c.not_accepted, c.event_count_off, after_ok, ROUNDS * AFTER_UP,
           ready_sum / ROUNDS, ready_max, slow_or_wrong_while_down);
    CU_ASSERT_EQUAL(after_ok, (size_t)ROUNDS * AFTER_UP);
    CU_ASSERT_EQUAL(slow_or_wrong_while_down, 0); /* every one a 504 within the deadline */
    dp_free(&load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"ten kill -9 restarts, clients that never retry: every command decided once",
         test_restarts_without_retries},
        {NULL, NULL},
    };
    return es_test_run("fault-command-service-restarts", cases);
}
