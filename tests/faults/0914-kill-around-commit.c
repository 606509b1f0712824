/*
 * 0914-kill-around-commit.c — the command service killed at the two edges of
 * a commit, again and again: between the commit and its store write, and
 * just before the commit; clients that never retry until the end of each
 * round, then retry every command of it.
 *
 * A transaction's events, outcomes, states and consumed offsets are
 * committed to Kafka first, and the RocksDB store learns the batch's new
 * states, remembered outcomes and offsets only in the write after it
 * (txn.c).  A kill in between leaves a store one transaction behind a log
 * that has moved on: the commands are consumed (their offsets committed) and
 * answered, and the next owner must learn what that transaction did from the
 * log, or it decides the next command on an old version (a version twice)
 * or, for a client's retry, decides it again (a deposit twice).
 *
 * Killed just before the commit, the batch's transaction is left open with
 * its events, outcomes and states written: no client may be answered from
 * it (read_committed), the next owner must abort it (its transactional id
 * fences the old one) and decide those commands again, once.
 *
 * The kills are exact, not timed guesses: an LD_PRELOAD shim
 * (kill_at_call.c), armed by a file, kills the service in the first store
 * write, or the first commit, after arming, before the library sees it.
 * Each round: arm, post a burst of deposits at once (each sent once: the
 * first batch is decided and the kill comes at its commit or its store
 * write; its deposits are answered 200 only when the commit went), restart
 * the service on the same store, post every deposit of the burst again with
 * the same key (a retry must repeat the first answer and write nothing),
 * then a few new ones, which must be 200.  The store write under both
 * settings of state.restore (a known store reads the <agg>.state tail, or
 * not), and once with the restart killed too, at its own first store write
 * (the catch-up's, which writes what the lost write held), before a third
 * start.
 *
 * Killed in the middle of a catch-up that computes an empty store's states
 * again from the events (state.restore=false), after its first store write:
 * the restart reads the events from offset 0 again, and the account holds
 * the deposits sent to it, no fewer.
 *
 * And the gauge of baselines still to be written, which each round waits to
 * read 0 before arming, is seen above 0 while the shim holds a cold start's
 * first baseline at its commit, and at 0 once it is let go.
 *
 * The check reads the log (deposits.c): every command id has exactly one
 * event, of the version its 200s named; every account's versions are 1..n
 * and its balance the sum of the deposits, each counted once.
 */
#include "deposits.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS   4
#define BURST    24
#define AFTER_UP 5
#define ACCOUNTS 4
#define MAX_SENT (ROUNDS * (2 * BURST + AFTER_UP))
#define DEATH_S  20 /* the burst's first batch is decided within it */

#ifndef KILL_AT_CALL_SO
#error "KILL_AT_CALL_SO: the shim's path (tests/CMakeLists.txt)"
#endif

/* Where the shim kills: its arming variable, whether that batch was committed, and
 * whether the restart is killed too, at its first store write (its catch-up's). */
typedef struct {
    const char *name, *env;
    bool committed, again_at_restart;
} kill_point_t;

static const kill_point_t AT_STORE_WRITE = {"at the store write", "ESCQRS_TEST_KILL_AT_WRITE", true,
                                            false};
static const kill_point_t AT_STORE_WRITE_TWICE = {
    "at the store write, then at the restart's catch-up", "ESCQRS_TEST_KILL_AT_WRITE", true, true};
static const kill_point_t AT_COMMIT = {"at the commit", "ESCQRS_TEST_KILL_AT_COMMIT", false, false};

static void arm_shim(const char *arm)
{
    FILE *f = fopen(arm, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
}

/* Whether the service died within DEATH_S with the shim fired (it removes the file);
 * the dead service is reaped. */
static bool killed_by_shim(wt_stack_t *st, const char *arm)
{
    bool died = false;
    for (int i = 0; i < DEATH_S * 10 && !died; i++) {
        died = !wt_proc_alive(&st->cs);
        if (!died)
            usleep(100 * 1000);
    }
    bool fired = access(arm, F_OK) != 0;
    if (died) {
        es_test_child_reaped(st->cs.pid);
        st->cs.pid = 0;
    }
    printf(" service %s, shim %s", died ? "killed" : "ALIVE", fired ? "fired" : "NOT FIRED");
    return died && fired;
}

/* Wait until no store write is still to come: every committed batch's has run (the store
 * step's count catches up with the commits') and no baseline is pending (a cold start's,
 * written between batches once the service is idle).  The shim fires at the first write
 * after arming, and a write still to come would take the kill instead of the burst's.
 * v49 (7 December, the sanitizer build on a loaded machine): the last batch of the 5
 * deposits after a restart was answered before its own store write ran, that write took
 * the next round's kill, and the burst got no answer. */
static void wait_writes_done(wt_stack_t *st)
{
    for (int i = 0; i < 300; i++) {
        double commits = wt_metric(&st->cs, "escqrs_transaction_commit_seconds_count");
        double writes = wt_metric(&st->cs, "escqrs_transaction_step_seconds_count{step=\"store\"}");
        double baselines = wt_metric(&st->cs, "escqrs_command_service_baselines_pending");
        if (commits >= 0 && writes >= 0 && commits == writes && baselines == 0)
            return;
        usleep(100 * 1000);
    }
    CU_FAIL("the store writes did not catch up with the commits and baselines within 30 s");
}

/* Start the command service under the shim (the gateway and the test do not load it). */
static void start_service(wt_stack_t *st, const char *const *sets, size_t nsets)
{
    es_test_preload(KILL_AT_CALL_SO);
    wt_start_service(st, sets, nsets);
    es_test_preload(NULL);
}

static void kill_rounds(const kill_point_t *at, const char *restore)
{
    wt_stack_t st;
    dp_load_t load;
    char arm[600], tag[16];
    const char *sets[] = {restore};
    wt_stack_init(&st, "account");
    snprintf(arm, sizeof(arm), "%s/kill-armed", st.dir);
    setenv(at->env, arm, 1);

    es_test_preload(KILL_AT_CALL_SO); /* dp_start starts the service first */
    dp_start(&load, &st, sets, 1, ACCOUNTS, MAX_SENT);
    es_test_preload(NULL);

    size_t first_200 = 0, retry_200 = 0, after_ok = 0, retries = 0;
    for (int r = 0; r < ROUNDS; r++) {
        wait_writes_done(&st);
        arm_shim(arm);
        snprintf(tag, sizeof(tag), "r%d", r);
        size_t from = load.nsent;
        dp_sent_t *burst = dp_burst(&load, tag, BURST);
        size_t answered = 0, timed_out = 0;
        for (size_t i = 0; i < BURST; i++) {
            answered += burst[i].status == 200;
            timed_out += burst[i].status == 504;
        }
        first_200 += answered;
        printf("\n  round %d (%s, %s): %zu of %d answered 200 before the kill (%zu 504, %zu "
               "other),",
               r, at->name, restore, answered, BURST, timed_out, BURST - answered - timed_out);
        CU_ASSERT_TRUE_FATAL(killed_by_shim(&st, arm));
        /* from an open transaction nothing reaches a client; after a commit that batch's
         * deposits are answered: the first write after arming is the burst's (above) */
        CU_ASSERT(at->committed ? answered > 0 : answered == 0);
        if (at->again_at_restart) { /* its catch-up writes what the killed write lost */
            arm_shim(arm);
            start_service(&st, sets, 1);
            printf("; restarted:");
            CU_ASSERT_TRUE_FATAL(killed_by_shim(&st, arm));
        }

        start_service(&st, sets, 1);
        wt_wait_ready(&st.cs, 90);
        dp_sent_t *again = dp_retry(&load, from, BURST);
        retries += BURST;
        for (size_t i = 0; i < BURST; i++) {
            retry_200 += again[i].status == 200;
            if (again[i].status != 200)
                fprintf(stderr, "round %d: the retry of %s answered %d\n", r, again[i].key,
                        again[i].status);
            else if (burst[i].status == 200 && again[i].version != burst[i].version)
                fprintf(stderr, "round %d: %s answered version %lld, its retry %lld\n", r,
                        burst[i].key, (long long)burst[i].version, (long long)again[i].version);
            CU_ASSERT(burst[i].status != 200 || again[i].version == burst[i].version);
        }
        dp_sent_t *up = dp_burst(&load, tag, AFTER_UP);
        for (size_t i = 0; i < AFTER_UP; i++)
            after_ok += up[i].status == 200;
    }
    dp_check_t c;
    dp_check(&load, &c);
    wt_stack_stop(&st);
    unsetenv(at->env);
    printf(
        "\n  RESULT killed=\"%s\" %s kills=%d answered_before_kill=%zu retries=%zu retries_200=%zu "
        "after_restart_ok=%zu/%d commands_dropped=%zu commands_doubled=%zu "
        "events_missing_or_extra=%zu wrong_version=%zu\n",
        at->name, restore, ROUNDS, first_200, retries, retry_200, after_ok, ROUNDS * AFTER_UP,
        c.dropped, c.doubled, c.event_count_off, c.wrong_version);
    CU_ASSERT_EQUAL(retry_200, retries);
    CU_ASSERT_EQUAL(after_ok, (size_t)ROUNDS * AFTER_UP);
    dp_free(&load);
}

/* Whether the file @p path appears within @p timeout_s. */
static bool appears(const char *path, int timeout_s)
{
    for (int i = 0; i < timeout_s * 100; i++) {
        if (access(path, F_OK) == 0)
            return true;
        usleep(10 * 1000);
    }
    return false;
}

/* The gauge wait_writes_done() relies on, seen above 0: a cold start on new topics owes every
 * owned <agg>.state partition a baseline (state.c), the shim holds the first commit (a
 * baseline's, written at the first idle turn), and /metrics is read meanwhile; released, the
 * baselines are written and the gauge must come down to 0.  A gauge that never left 0 would
 * let the rounds above arm the shim under a baseline still to be written. */
static void test_baselines_pending_counted(void)
{
    wt_stack_t st;
    char hold[600], held[620];
    const char *sets[] = {"state.restore=true"};
    wt_stack_init(&st, "account");
    snprintf(hold, sizeof(hold), "%s/hold-commit", st.dir);
    snprintf(held, sizeof(held), "%s.held", hold);
    arm_shim(hold);
    setenv("ESCQRS_TEST_HOLD_AT_COMMIT", hold, 1);
    start_service(&st, sets, 1);
    bool was_held = appears(held, 60);
    double held_pending = wt_metric(&st.cs, "escqrs_command_service_baselines_pending");
    double baselines_held = wt_metric(&st.cs, "escqrs_command_service_baseline_states_total");
    unlink(hold);
    double pending = -1;
    for (int i = 0; i < 300 && pending != 0; i++) {
        usleep(100 * 1000);
        pending = wt_metric(&st.cs, "escqrs_command_service_baselines_pending");
    }
    double baselines = wt_metric(&st.cs, "escqrs_command_service_baseline_states_total");
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0); /* no gateway was started */
    unsetenv("ESCQRS_TEST_HOLD_AT_COMMIT");
    printf("\n  RESULT held=%s pending_while_held=%g baseline_states_while_held=%g "
           "pending_after=%g baseline_states_after=%g\n",
           was_held ? "yes" : "no", held_pending, baselines_held, pending, baselines);
    CU_ASSERT_TRUE(was_held);
    CU_ASSERT(held_pending >= 1);
    CU_ASSERT_EQUAL(pending, 0);
}

/* One account of over 2 000 events (the catch-up writes every 2 000: catchup.c), so its
 * partition's catch-up writes twice at least, and its events lie on both sides of the first. */
#define CATCHUP_BURSTS 12
#define CATCHUP_BURST  200

/*
 * Killed in the middle of a catch-up that computes the states again (state.restore=false, an
 * empty store): the first store write of the events' catch-up went (states half computed
 * again, the account's from its first 2 000 events of 2 401), the second never came.  That
 * write must carry no events offset, or the restart would take the half-computed state for
 * the one of its version: it would read on from there, pass over every event at or below the
 * restored version, and the account would be left without its last ~400 deposits.  So the
 * restart must catch up from the beginning again, and the account must hold exactly the
 * deposits sent (withdrawing all of it accepted, 1 cent more refused).
 */
static void test_kill_in_catchup_computing_states(void)
{
    wt_stack_t st;
    dp_load_t load;
    char arm[600], caught_up[200];
    const char *sets[] = {"state.restore=false"};
    wt_stack_init(&st, "account");
    snprintf(arm, sizeof(arm), "%s/kill-in-catchup", st.dir);
    setenv("ESCQRS_TEST_KILL_IN_CATCHUP", arm, 1);
    es_test_preload(KILL_AT_CALL_SO);
    dp_start(&load, &st, sets, 1, 1, CATCHUP_BURSTS * CATCHUP_BURST);
    es_test_preload(NULL);
    for (int b = 0; b < CATCHUP_BURSTS; b++)
        dp_burst(&load, "c", CATCHUP_BURST);
    size_t events = load.nsent + 1; /* and the opening */

    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0); /* then its store is lost */
    CU_ASSERT_TRUE_FATAL(wt_delete_store(&st));
    arm_shim(arm);
    start_service(&st, sets, 1);
    printf("\n  %zu events, restarted without its store:", events);
    CU_ASSERT_TRUE_FATAL(killed_by_shim(&st, arm));

    start_service(&st, sets, 1);
    wt_wait_ready(&st.cs, 90);
    snprintf(caught_up, sizeof(caught_up), "]: %zu event(s) from the beginning", events);
    bool from_zero = wt_log_line(st.cs.log, caught_up, NULL, NULL, 0);
    printf("\n  RESULT killed=\"in the catch-up\" events=%zu restart_read_all_again=%s\n", events,
           from_zero ? "yes" : "no");
    CU_ASSERT_TRUE(from_zero);
    dp_check_t c;
    dp_check(&load, &c);
    dp_assert_balances(&load);
    wt_stack_stop(&st);
    unsetenv("ESCQRS_TEST_KILL_IN_CATCHUP");
    dp_free(&load);
}

static void test_kill_at_store_write_restoring(void)
{
    kill_rounds(&AT_STORE_WRITE, "state.restore=true");
}

static void test_kill_at_store_write_replaying(void)
{
    kill_rounds(&AT_STORE_WRITE, "state.restore=false");
}

static void test_kill_at_store_write_and_catchup(void)
{
    kill_rounds(&AT_STORE_WRITE_TWICE, "state.restore=true");
}

static void test_kill_at_commit(void)
{
    kill_rounds(&AT_COMMIT, "state.restore=true");
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"killed between commit and store write, state.restore=true: nothing decided twice",
         test_kill_at_store_write_restoring},
        {"killed between commit and store write, state.restore=false: nothing decided twice",
         test_kill_at_store_write_replaying},
        {"killed at the store write, then at the restart's catch-up: nothing decided twice",
         test_kill_at_store_write_and_catchup},
        {"killed just before the commit: nothing answered from it, each command decided once",
         test_kill_at_commit},
        {"killed in a catch-up that computes the states again: read again from offset 0",
         test_kill_in_catchup_computing_states},
        {"a cold start's baselines, held at their commit, are counted as pending until written",
         test_baselines_pending_counted},
        {NULL, NULL},
    };
    return es_test_run("fault-kill-around-commit", cases);
}
