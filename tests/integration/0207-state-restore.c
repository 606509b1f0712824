/*
 * 0207-state-restore.c — kill -9 the command service under load, three
 * times, deleting its RocksDB store before the first and the third restart:
 * the service restores from <prefix>account.state instead of replaying
 * <prefix>account.events, and the log and the clients' answers still agree
 * exactly (the history checker of 0203, al_check()).
 *
 * Checked, besides al_check() (every command record has exactly one outcome,
 * every 200 exactly one event at its answered position and version, no event
 * twice, versions dense, balances never negative, the group at the end):
 *  - after each restart with an empty store, the service restored state
 *    records (escqrs_command_service_restored_states_total > 0) and caught
 *    up far fewer events than the log held
 *    (escqrs_command_service_catchup_events_total at most a tenth of it): it
 *    did not read <agg>.events from offset 0;
 *  - after each restart it makes progress (commands sent after it accepted);
 *  - once the load stopped, the state topic agrees with the log: every
 *    partition holds a baseline marker, and the last state record of each
 *    account has the version of its last event and that event's offset, in
 *    the same partition.
 */
#include "accountload.h"
#include "testutil.h"
#include "writetest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENTS         6
#define ACCOUNTS        4
#define MIN_PROGRESS    20 /* accepted commands, sent after a restart, before the next kill */
#define AFTER_RESTART_S 6  /* load after each restart: past the gateway's 3 s timeout + a retry */
#define KILLS           3

/* The value of the unlabelled series @p name in a /metrics text (-1: absent). */
static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* After a restart with an empty store: restored from the state topic, not replayed. */
static void check_restored(wt_stack_t *st, int k)
{
    char *raw = NULL;
    size_t nev = 0;
    CU_ASSERT_EQUAL_FATAL(wt_get(&st->cs, "/metrics", &raw), 200);
    double caught = metric(raw, "escqrs_command_service_catchup_events_total");
    double restored = metric(raw, "escqrs_command_service_restored_states_total");
    free(raw);
    free(wt_read_events(st, &nev));
    printf("\n  restart %d with an empty store: %.0f state record(s) restored, %.0f event(s) "
           "caught up, %zu event(s) in the log",
           k + 1, restored, caught, nev);
    CU_ASSERT(nev >= 50);
    CU_ASSERT(restored >= 1);
    CU_ASSERT(caught >= 0 && caught * 10 <= (double)nev);
}

/* The last state record of every account against its events; a marker per partition. */
static void check_states(wt_stack_t *st)
{
    size_t nst = 0, nev = 0, markers = 0;
    wt_state_t *sts = wt_read_states(st, &nst);
    wt_event_t *evs = wt_read_events(st, &nev);
    int32_t marked[64] = {0};
    for (size_t i = 0; i < nst; i++) {
        CU_ASSERT(sts[i].nrecent <= 32);
        if (!sts[i].agg_id[0] && sts[i].partition < 64 && !marked[sts[i].partition]++)
            markers++;
    }
    for (int a = 0; a < ACCOUNTS; a++) {
        char id[24];
        const wt_state_t *last = NULL;
        const wt_event_t *top = NULL;
        snprintf(id, sizeof(id), "acct-%d", a);
        for (size_t i = 0; i < nst; i++)
            if (!strcmp(sts[i].agg_id, id))
                last = &sts[i]; /* partition/offset order: the last is the latest */
        for (size_t i = 0; i < nev; i++)
            if (!strcmp(evs[i].agg_id, id) && (!top || evs[i].version > top->version))
                top = &evs[i];
        CU_ASSERT_PTR_NOT_NULL_FATAL(last);
        CU_ASSERT_PTR_NOT_NULL_FATAL(top);
        ES_ASSERT_STR_EQ(last->key, id);
        CU_ASSERT_EQUAL(last->version, top->version);
        CU_ASSERT_EQUAL(last->events_offset, top->offset);
        CU_ASSERT_EQUAL(last->partition, top->partition);
    }
    printf("  %zu state record(s), %zu baseline marker(s)\n", nst, markers);
    /* every partition an account lives in has its marker (a fresh topic: written at once) */
    for (size_t i = 0; i < nev; i++)
        CU_ASSERT(evs[i].partition < 64 && marked[evs[i].partition] > 0);
    free(sts);
    free(evs);
}

static void test_restore_under_kill(void)
{
    static const bool delete_store[KILLS] = {true, false, true};
    wt_stack_t st;
    const char *gw_sets[] = {"request.timeout.ms=3000"};
    char cmd[700];
    int64_t restarted[KILLS], ready[KILLS], next_stop[KILLS], killed[KILLS];
    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, gw_sets, 1);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    al_load_t *load = al_start(&st, CLIENTS, ACCOUNTS);
    sleep(3);
    for (int k = 0; k < KILLS; k++) {
        killed[k] = al_now_ms();
        wt_kill9(&st.cs);
        if (delete_store[k]) {
            snprintf(cmd, sizeof(cmd), "rm -rf '%s/store'", st.dir);
            CU_ASSERT_EQUAL(system(cmd), 0);
        }
        restarted[k] = al_now_ms();
        wt_start_service(&st, NULL, 0);
        wt_wait_ready(&st.cs, 60);
        ready[k] = al_now_ms();
        if (delete_store[k])
            check_restored(&st, k);
        sleep(AFTER_RESTART_S);
        next_stop[k] = al_now_ms();
    }
    al_stop(load);
    size_t in_flight = 0;
    for (int k = 0; k < KILLS; k++) {
        int64_t first = -1;
        size_t progress = al_accepted_between(load, restarted[k], next_stop[k], &first);
        printf("\n  restart %d (%s): ready after %lld ms; %zu commands sent and accepted in the "
               "%lld ms after it; first 200 at +%lld ms",
               k + 1, delete_store[k] ? "store deleted" : "store kept",
               (long long)(ready[k] - restarted[k]), progress,
               (long long)(next_stop[k] - restarted[k]),
               (long long)(first < 0 ? -1 : first - restarted[k]));
        CU_ASSERT(progress >= MIN_PROGRESS);
        in_flight += al_in_flight_at(load, killed[k]);
    }
    printf("\n");
    size_t ok = al_check(load);
    check_states(&st);
    wt_stack_stop(&st);
    printf("  %zu command(s) in flight at a kill\n", in_flight);
    CU_ASSERT(ok > 50);
    al_free(load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"kill -9 under load, store deleted: restored from the state topic, exactly once",
         test_restore_under_kill},
        {NULL, NULL},
    };
    return es_test_run("state-restore", cases);
}
