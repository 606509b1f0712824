/*
 * 0909-refused-event.c — the broker refuses every attempt at a command's
 * event: the command service backs off instead of spinning, says why on
 * /readyz, and decides the command once the broker takes it.
 *
 * The refusal is real and persistent: the events topic's max.message.bytes
 * is lowered (AlterConfigs) to 200 bytes: room for the broker's transaction
 * markers (about 80), none for an event (about 500), so each transaction's produce
 * fails with MESSAGE_TOO_LARGE, an abortable error; the batch is aborted,
 * rewound and polled again.  The command service used to report a
 * successful abort as a success, which skipped its back-off: it began,
 * failed and aborted the same transaction as fast as the broker answered.
 *
 * One account is opened, then the topic's limit lowered and one deposit sent
 * (once: 504 when its deadline passes).  Over the next 10 s the aborted
 * transactions are counted (escqrs_transactions_aborted_total): at least 1
 * (the fault took) and at most 15 (the back-off adds 100 ms per consecutive
 * abort, so however fast the broker, at most 14 fit in 10 s after the first;
 * without it, one per round of abort, rewind and poll: 20 here); /readyz
 * must be 503 saying transactions abort, /healthz 200.  The limit is
 * restored: the service must be ready again by itself, a second deposit is
 * answered 200, and the history check of tests/deposits.c holds (the first
 * deposit decided exactly once, after all).
 */
#include "deposits.h"
#include "testutil.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW_S        10
#define MAX_ABORTS      15        /* the back-off alone allows at most 14 in 10 s after the first */
#define KAFKA_DEFAULT_B "1048588" /* the broker's default max.message.bytes */

static wt_stack_t st;
static dp_load_t load;

/* Set the events topic's max.message.bytes (a topic of this test only). */
static bool set_max_message_bytes(const char *value)
{
    char topic[200];
    snprintf(topic, sizeof(topic), "%saccount.events", st.prefix);
    return es_test_topic_config(topic, "max.message.bytes", value);
}

static double aborts_so_far(void)
{
    return wt_metric(&st.cs, "escqrs_transactions_aborted_total");
}

static void test_refused_event(void)
{
    wt_stack_init(&st, "account");
    dp_start(&load, &st, NULL, 0, 1, 2);

    CU_ASSERT_TRUE_FATAL(set_max_message_bytes("200"));
    dp_sent_t *refused = dp_burst(&load, "refused", 1);
    printf("\n  deposit while the broker refuses its event: %d after %.1f s\n", refused->status,
           refused->seconds);
    CU_ASSERT_EQUAL(refused->status, 504);
    double a0 = aborts_so_far();
    sleep(WINDOW_S);
    double aborts = aborts_so_far() - a0;
    CU_ASSERT_TRUE(a0 >= 1);
    CU_ASSERT_TRUE(aborts >= 1 && aborts <= MAX_ABORTS);
    bool said = wt_wait_not_ready_because(&st.cs, "aborted in a row", 5);
    CU_ASSERT_TRUE(said);
    CU_ASSERT_EQUAL(wt_get(&st.cs, "/healthz", NULL), 200);
    CU_ASSERT_TRUE(wt_proc_alive(&st.cs));

    CU_ASSERT_TRUE_FATAL(set_max_message_bytes(KAFKA_DEFAULT_B));
    double t0 = es_mono_s();
    wt_wait_ready(&st.cs, 60);
    double ready_s = es_mono_s() - t0;
    dp_sent_t *after = dp_burst(&load, "after", 1);
    CU_ASSERT_EQUAL(after->status, 200);

    dp_check_t c;
    dp_check(&load, &c);
    wt_stack_stop(&st);
    printf("  RESULT aborts_before_window=%.0f aborts_in_%ds=%.0f not_ready_said=%d "
           "ready_after_limit_restored_s=%.1f commands=%zu dropped=%zu doubled=%zu\n",
           a0, WINDOW_S, aborts, said, ready_s, c.commands, c.dropped, c.doubled);
    dp_free(&load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"an event the broker refuses: back-off, /readyz says why, decided once it is taken",
         test_refused_event},
        {NULL, NULL},
    };
    return es_test_run("fault-refused-event", cases);
}
