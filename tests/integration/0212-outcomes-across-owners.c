/*
 * 0212-outcomes-across-owners.c — a partition moves to another command
 * service instance and back to the first, whose store is older: a retry of a
 * command the other instance rejected must get that rejection, not a new
 * decision.
 *
 * Why: a catch-up brought a store up to date from <agg>.events only, and
 * rejected outcomes are in no event; they are in the other owner's outcome
 * records in <agg>.state.  The first owner decided the retry again, on a
 * state that had moved on, and could accept it: one Idempotency-Key, two
 * answers (422, then 200), and a withdrawal the client was told had failed.
 * Rolling restarts of a deployment with more than one replica move
 * partitions this way all the time.
 *
 * Instance A (its own store and transactional id) opens account a1 and
 * deposits 100; A stops and instance B (another store, empty) takes every
 * partition: it refuses a withdrawal of 500 (insufficient funds, 422) and
 * accepts a deposit of 1000.  B stops and A starts again on its old store.
 * The retry of the withdrawal (same key, same body) must answer 422 with the
 * first reason, and a1's events must be versions 1..3, each once (planted, a
 * catch-up of the events only: 200 and a fourth event, the withdrawal).
 */
#include "testutil.h"
#include "writetest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAMPLE_MS 5000
#define WINDOW    "state.commands.remembered=2"

/* Start @p st's command service as instance @p name (with @p extra set too, unless NULL). */
static void launch_owner(wt_stack_t *st, const char *name, const char *extra)
{
    char txid[300];
    snprintf(txid, sizeof(txid), "transactional.id=%sservice-%s", st->prefix, name);
    const char *sets[] = {txid, extra};
    FILE *log = st->cs.log[0] ? fopen(st->cs.log, "w") : NULL; /* the lines below are this run's */
    if (log)
        fclose(log);
    wt_start_service(st, sets, extra ? 2 : 1);
}

/* Start instance @p name and wait until it owns all 3 partitions. */
static void start_owner(wt_stack_t *st, const char *name, const char *extra)
{
    launch_owner(st, name, extra);
    wt_wait_ready(&st->cs, 90);
    bool all = false; /* the other instance's static member holds its share for 10 s */
    for (int i = 0; i < 600 && !all; i++) {
        all = wt_log_line(st->cs.log, "assigned 3 partition(s)", NULL, NULL, 0);
        if (!all)
            usleep(100 * 1000);
    }
    CU_ASSERT_TRUE_FATAL(all);
    wt_wait_ready(&st->cs, 90);
}

static int post(const wt_stack_t *gw, const char *path, const char *body, const char *key,
                char *reason, size_t reasonsz)
{
    json_t *ans = NULL;
    int status = wt_post(&gw->gw, path, body, strlen(body), key, NULL, &ans);
    const char *why = json_string_value(json_object_get(ans, "reason"));
    if (reason)
        snprintf(reason, reasonsz, "%s", why ? why : "");
    json_decref(ans);
    return status;
}

/* Stacks @p a and @p b: the same topics, each instance its own store and log. */
static void two_instances(wt_stack_t *a, wt_stack_t *b)
{
    wt_stack_init(a, "account");
    *b = *a;
    snprintf(b->dir, sizeof(b->dir), "%.500s/b", a->dir);
    mkdir(b->dir, 0755);
    memset(&b->cs, 0, sizeof(b->cs));
}

/* Instance A (with @p extra set, unless NULL) and the gateway up; a1 opened, 100 deposited. */
static void open_a1_on_a(wt_stack_t *a, const char *extra)
{
    start_owner(a, "a", extra);
    wt_start_gateway(a, NULL, 0);
    wt_wait_ready(&a->gw, 90);
    CU_ASSERT_EQUAL(post(a, "/v1/accounts/a1/open", "{\"owner\":\"o\"}", "open-1", NULL, 0), 200);
    CU_ASSERT_EQUAL(
        post(a, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", "deposit-1", NULL, 0), 200);
}

static void test_rejection_survives_a_move(void)
{
    wt_stack_t a, b;
    char first[128] = "", again[128] = "";
    const char *withdraw = "{\"amount_cents\":500}";
    two_instances(&a, &b);

    open_a1_on_a(&a, NULL);
    CU_ASSERT_EQUAL(wt_stop(&a.cs), 0);

    start_owner(&b, "b", NULL);
    int st = post(&a, "/v1/accounts/a1/withdraw", withdraw, "withdraw-1", first, sizeof(first));
    printf("\n  RESULT withdrawal of 500 on instance b: %d %s\n", st, first);
    CU_ASSERT_EQUAL(st, 422);
    CU_ASSERT_EQUAL(
        post(&a, "/v1/accounts/a1/deposit", "{\"amount_cents\":1000}", "deposit-2", NULL, 0), 200);
    CU_ASSERT_EQUAL(wt_stop(&b.cs), 0);

    start_owner(&a, "a", NULL);
    char line[1024] = "";
    CU_ASSERT_TRUE(wt_log_line(a.cs.log, "state tail of", "record(s)", line, sizeof(line)));
    const char *from = strstr(line, "from offset ");
    long long tail_from = from ? strtoll(from + 12, NULL, 10) : -1;
    printf("  RESULT instance a's state tail began at offset %lld\n", tail_from);
    CU_ASSERT(tail_from > 0); /* after its own records: the offset its store kept */
    st = post(&a, "/v1/accounts/a1/withdraw", withdraw, "withdraw-1", again, sizeof(again));
    printf("  RESULT its retry on instance a, back on its older store: %d %s\n", st, again);
    CU_ASSERT_EQUAL(st, 422);
    CU_ASSERT_STRING_EQUAL(again, first);
    wt_assert_versions(&a, "a1", 3);
    wt_stack_stop(&a);
}

/*
 * A reset only the other owner's transactions tell: A opens a1 and deposits
 * (its store keeps the commands offsets it committed); B, on its own store,
 * accepts 20 more deposits, so that the first ones are older than anything
 * a window of 2 outcomes can reach again from the events (8 events a
 * command: 16 versions); the group's offsets are then set back to where A
 * left them (an operator's --to-datetime).  A, back on its old store, finds
 * its own offsets in order, but its state tail reads B's records, whose
 * commands offset is past the group's: refused, nothing decided again
 * (planted, without the check after the tail: 50 of 50 samples said 200,
 * and four of B's deposits were accepted again: 26 events, 22 expected).
 */
static void test_reset_behind_another_owner(void)
{
    wt_stack_t a, b;
    char why[256] = "";
    int64_t left[64], end[64];
    two_instances(&a, &b);
    open_a1_on_a(&a, WINDOW);
    CU_ASSERT_TRUE(wt_wait_group_at_end(&a, 30, why, sizeof(why)));
    CU_ASSERT_EQUAL(wt_stop(&a.cs), 0);
    int parts = wt_command_offsets(&a, left, end, 64);
    CU_ASSERT_FATAL(parts > 0);
    for (int p = 0; p < parts; p++)
        left[p] = left[p] < 0 ? 0 : left[p]; /* a partition no command went to */

    start_owner(&b, "b", WINDOW);
    for (int i = 2; i <= 21; i++) {
        char key[32];
        snprintf(key, sizeof(key), "deposit-%d", i);
        CU_ASSERT_EQUAL(post(&a, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", key, NULL, 0),
                        200);
    }
    CU_ASSERT_TRUE(wt_wait_group_at_end(&b, 30, why, sizeof(why)));
    CU_ASSERT_EQUAL(wt_stop(&b.cs), 0);
    CU_ASSERT_TRUE_FATAL(wt_commit_group_offsets(&a, left, parts, 90));

    launch_owner(&a, "a", WINDOW);
    bool said = wt_wait_not_ready_because(&a.cs, "was moved back", 90);
    printf("\n  RESULT instance a, its offsets in order, B's past the group's: /readyz said "
           "\"was moved back\": %s\n",
           said ? "yes" : "no");
    CU_ASSERT_TRUE(said);
    int asked = 0, ready = wt_count_ready(&a.cs, SAMPLE_MS, &asked);
    printf("  RESULT /readyz meanwhile: %d of %d said 200\n", ready, asked);
    CU_ASSERT_EQUAL(ready, 0);
    wt_assert_versions(&a, "a1", 22); /* nothing decided again */
    wt_stack_stop(&a);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a rejection another owner decided answers a retry after the partition comes back",
         test_rejection_survives_a_move},
        {"a group offset moved back behind another owner's transactions is refused",
         test_reset_behind_another_owner},
        {NULL, NULL},
    };
    return es_test_run("0212-outcomes-across-owners", cases);
}
