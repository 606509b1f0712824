/*
 * 0203-write-crash.c — kill -9 the command service under load; the log and
 * the clients' answers still agree exactly, and the service keeps working.
 *
 * Clients send deposits and withdrawals to a few accounts (all opened
 * first), each command with its own Idempotency-Key, and retry with the same
 * key when the answer is a timeout, 503 or no answer at all, as the contract
 * tells them to.  Meanwhile the command service is killed with SIGKILL twice
 * and restarted, the second time with its RocksDB store deleted (it must
 * rebuild everything from the events topic, idempotency included).  Checked:
 *  - after each restart the service makes progress: at least MIN_PROGRESS
 *    commands sent after the restart are accepted in the AFTER_RESTART_S
 *    seconds before the next kill (or the end of the load);
 *  - the only definite refusal is 422 `rejected` with reason
 *    `insufficient_funds` (never `account_not_open`: every account is open),
 *    and each rejection was right: the REJECTED outcome on
 *    <prefix>account.command-results names the version it was decided at,
 *    and the account's balance folded from the events log up to that
 *    version is below the withdrawal;
 *  - every command that got a 200 has exactly one event, at the answered
 *    position and version; no command id appears in two events; no event
 *    belongs to an unknown command; no command with a 4xx has an event;
 *  - every account's versions are 1..n without gaps and its balance, folded
 *    from the log, never goes below zero;
 *  - once the load stopped, the group <prefix>account.command-service has
 *    committed the end offsets of <prefix>account.commands, and every record
 *    of the commands topic has exactly one outcome on the results topic
 *    (matched by the `command-id` header; a retried key has as many).
 */
#include "accountload.h"
#include "testutil.h"
#include "writetest.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CLIENTS      6
#define ACCOUNTS     4
#define MIN_PROGRESS 20 /* accepted commands, sent after a restart, before the next kill */
/* Load after each restart: longer than the gateway's request.timeout.ms (3 s) plus
 * a retry, so a command the restart left unanswered is retried within the window. */
#define AFTER_RESTART_S 6

static void test_crash_under_load(void)
{
    wt_stack_t st;
    const char *gw_sets[] = {"request.timeout.ms=3000"};
    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, gw_sets, 1);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    al_load_t *load = al_start(&st, CLIENTS, ACCOUNTS);

    int64_t restarted[2], ready[2], next_stop[2], killed[2];
    sleep(3);
    killed[0] = al_now_ms();
    wt_kill9(&st.cs); /* 1: the store survives */
    usleep(500 * 1000);
    restarted[0] = al_now_ms();
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    ready[0] = al_now_ms();
    sleep(AFTER_RESTART_S);
    next_stop[0] = al_now_ms();
    killed[1] = al_now_ms();
    wt_kill9(&st.cs); /* 2: the store is lost too */
    CU_ASSERT_TRUE(wt_delete_store(&st));
    restarted[1] = al_now_ms();
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    ready[1] = al_now_ms();
    sleep(AFTER_RESTART_S);
    next_stop[1] = al_now_ms();
    al_stop(load);
    for (int k = 0; k < 2; k++) {
        int64_t first = -1;
        size_t progress = al_accepted_between(load, restarted[k], next_stop[k], &first);
        printf("\n  restart %d: ready after %lld ms; %zu commands sent and accepted in the "
               "%lld ms before the %s; first 200 after the restart at +%lld ms",
               k + 1, (long long)(ready[k] - restarted[k]), progress,
               (long long)(next_stop[k] - restarted[k]), k ? "load stopped" : "next kill",
               (long long)(first < 0 ? -1 : first - restarted[k]));
        CU_ASSERT(progress >= MIN_PROGRESS);
    }
    size_t in_flight = al_in_flight_at(load, killed[0]) + al_in_flight_at(load, killed[1]);
    size_t ok = al_check(load);
    wt_stack_stop(&st);
    printf("  %zu command(s) in flight at a kill\n", in_flight);
    CU_ASSERT(ok > 50);
    /* the crashes did hit commands in flight (answered after their retry, or, now
     * that a restarted service decides what waited, at the first attempt) */
    CU_ASSERT(in_flight > 0);
    al_free(load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"kill -9 under load: log and answers agree", test_crash_under_load},
        {NULL, NULL},
    };
    return es_test_run("write-crash", cases);
}
