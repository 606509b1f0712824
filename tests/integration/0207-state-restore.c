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
 *    the same partition; every outcome record holds one outcome, only outcome
 *    records have tombstones, and at most the window of an account's outcome
 *    records is live (plus what a kill may leave outside it: below).
 *
 * And, with one client that sends each command once and retries it once:
 * a retry after the store was lost gets its first answer (test_retry_after_restore),
 * and the store itself remembers the window's outcomes only; the same with
 * state.restore=false (test_retry_after_replay), where the states are computed
 * again from the events: the whole balance can be withdrawn, and no more;
 * and, with the events' first records deleted, the restored states are kept
 * (test_replay_after_records_deleted).
 */
#include "accountload.h"
#include "deposits.h"
#include "testutil.h"
#include "writetest.h"

#include "escqrs/store.h"

#include <jansson.h>

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

/* Is record @p i an outcome record no later record of its key replaced? */
static bool outcome_live(const wt_state_t *sts, size_t nst, size_t i)
{
    if (!sts[i].cmd_id[0] || sts[i].tombstone)
        return false;
    for (size_t j = i + 1; j < nst; j++)
        if (sts[j].partition == sts[i].partition && !strcmp(sts[j].key, sts[i].key) &&
            !strcmp(sts[j].cmd_id, sts[i].cmd_id))
            return false;
    return true;
}

/* The outcome records of aggregate @p id no later record replaced (compaction keeps them). */
static size_t live_outcomes(const wt_state_t *sts, size_t nst, const char *id)
{
    size_t n = 0;
    for (size_t i = 0; i < nst; i++)
        n += !strcmp(sts[i].key, id) && outcome_live(sts, nst, i);
    return n;
}

/* The last state record of every account against its events; a marker per partition;
 * every outcome record one outcome of its key's aggregate, at most the window live. */
static void check_states(wt_stack_t *st)
{
    size_t nst = 0, nev = 0, markers = 0, outcomes = 0, tombstones = 0;
    wt_state_t *sts = wt_read_states(st, &nst);
    wt_event_t *evs = wt_read_events(st, &nev);
    int32_t marked[64] = {0};
    for (size_t i = 0; i < nst; i++) {
        if (sts[i].tombstone) {
            CU_ASSERT(sts[i].cmd_id[0] != '\0'); /* only outcomes are ever deleted */
            tombstones++;
        } else if (sts[i].cmd_id[0]) {
            CU_ASSERT_EQUAL(sts[i].nrecent, 1);
            ES_ASSERT_STR_EQ(sts[i].agg_id, sts[i].key);
            outcomes++;
        } else {
            CU_ASSERT_EQUAL(sts[i].nrecent, 0); /* an aggregate's record: its state only */
        }
        if (!sts[i].tombstone && !sts[i].agg_id[0] && sts[i].partition < 64 &&
            !marked[sts[i].partition]++)
            markers++;
    }
    for (int a = 0; a < ACCOUNTS; a++) {
        char id[24];
        const wt_state_t *last = NULL;
        const wt_event_t *top = NULL;
        snprintf(id, sizeof(id), "acct-%d", a);
        for (size_t i = 0; i < nst; i++)
            if (!strcmp(sts[i].agg_id, id) && !sts[i].cmd_id[0])
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
        /* state.commands.remembered (32), plus what a kill between a commit and its
         * store write can leave outside the next owner's window: that batch's rejected
         * outcomes (docs/write-side.md, "Known limits"); a batch holds at most one
         * command per client.  Without tombstones it would be every outcome. */
        size_t live = live_outcomes(sts, nst, id);
        CU_ASSERT(live >= 1 && live <= 32 + KILLS * CLIENTS);
    }
    printf("  %zu state record(s): %zu outcome record(s), %zu tombstone(s), %zu baseline "
           "marker(s)\n",
           nst, outcomes, tombstones, markers);
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
        if (delete_store[k])
            CU_ASSERT_TRUE(wt_delete_store(&st));
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

#define WINDOW   8  /* state.commands.remembered of the retry test */
#define NRETRIED 13 /* commands of its account: open, 8 deposits, a rejection, 3 deposits */

typedef struct {
    char key[160];
    const char *path;
    const char *body;
    int status;
    char answer[512]; /* version and position, or the rejection's reason */
} first_t;

/* The part of an answer a retry must repeat. */
static void answer_of(json_t *ans, char *out, size_t outsz)
{
    json_t *r = json_object_get(ans, "reason");
    snprintf(out, outsz, "version=%lld position=%s reason=%s",
             (long long)json_integer_value(json_object_get(ans, "version")),
             json_string_value(json_object_get(ans, "position"))
                 ? json_string_value(json_object_get(ans, "position"))
                 : "-",
             json_is_string(r) ? json_string_value(r) : "-");
}

static void send_first(wt_stack_t *st, first_t *c)
{
    json_t *ans = NULL;
    c->status = wt_post(&st->gw, c->path, c->body, strlen(c->body), c->key, NULL, &ans);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ans);
    answer_of(ans, c->answer, sizeof(c->answer));
    json_decref(ans);
}

/* The outcomes the command service's store remembers for @p id ("i" <id> 0x00 <command id>,
 * overlay.c), read from its store while it is stopped. */
static size_t stored_outcomes(const wt_stack_t *st, const char *id)
{
    char path[600], prefix[128], errstr[512];
    es_store_opts_t ro = {.block_cache_mb = 8, .write_buffer_mb = 4, .read_only = true};
    snprintf(path, sizeof(path), "%s/store", st->dir);
    es_store_t *store = es_store_open(path, &ro, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(store);
    size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "i%s", id) + 1; /* and its 0x00 */
    es_store_iter_t *it = es_store_iter_prefix(store, prefix, plen);
    const char *k, *v;
    size_t kl, vl, n = 0;
    while (es_store_iter_next(it, &k, &kl, &v, &vl))
        n++;
    es_store_iter_destroy(it);
    es_store_close(store);
    return n;
}

/*
 * The guarantee of the outcome records, with a client that retries once and
 * never again: a retry after the command service lost its store gets its first
 * answer for every command of the window, the rejection included (decided
 * again, the withdrawal would now be accepted: the deposits after it cover
 * it); no new event; the state topic keeps exactly the window's outcomes
 * live (the ones before it have tombstones); and the states hold the balance.
 * @p restore is the service's state.restore: false must answer the retries
 * alike (it restores the decisions, and computes the states again from the
 * events); until 6 December it replayed the events only, and the rejected
 * withdrawal's retry was accepted (200 at version 13, first 422).
 */
static void retry_after_lost_store(bool restore)
{
    wt_stack_t st;
    char sets_buf[64];
    snprintf(sets_buf, sizeof(sets_buf), "state.commands.remembered=%d", WINDOW);
    const char *sets[] = {sets_buf, restore ? "state.restore=true" : "state.restore=false"};
    first_t c[NRETRIED];
    wt_stack_init(&st, "account");
    wt_start_service(&st, sets, 2);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    for (int i = 0; i < NRETRIED; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        snprintf(c[i].key, sizeof(c[i].key), "%sretry-%d", st.prefix, i);
        c[i].path = i == 0   ? "/v1/accounts/acct-r/open"
                    : i == 9 ? "/v1/accounts/acct-r/withdraw"
                             : "/v1/accounts/acct-r/deposit";
        c[i].body = i == 0   ? "{\"owner\":\"o\"}"
                    : i == 9 ? "{\"amount_cents\":1000}"
                    : i < 9  ? "{\"amount_cents\":1}"
                             : "{\"amount_cents\":1000}";
        send_first(&st, &c[i]);
        CU_ASSERT_EQUAL(c[i].status, i == 9 ? 422 : 200);
    }
    size_t nev_before = 0, nst = 0;
    free(wt_read_events(&st, &nev_before));
    CU_ASSERT_EQUAL(nev_before, NRETRIED - 1);
    wt_state_t *sts = wt_read_states(&st, &nst);
    CU_ASSERT_EQUAL(live_outcomes(sts, nst, "acct-r"), WINDOW);
    for (size_t i = 0; i < nst; i++) /* the live ones are the window's, the last WINDOW sent */
        if (outcome_live(sts, nst, i))
            CU_ASSERT(strtol(strrchr(sts[i].cmd_id, '-') + 1, NULL, 10) >= NRETRIED - WINDOW);
    free(sts);

    /* the store lost, both daemons restarted: nothing in memory answers for them */
    sleep(1); /* the last batch's store write follows its commit */
    wt_kill9(&st.cs);
    wt_kill9(&st.gw);
    CU_ASSERT_EQUAL(stored_outcomes(&st, "acct-r"), WINDOW); /* the store forgot the rest */
    CU_ASSERT_TRUE(wt_delete_store(&st));
    wt_start_service(&st, sets, 2);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    char *text = NULL;
    CU_ASSERT_EQUAL(wt_get(&st.cs, "/metrics", &text), 200);
    CU_ASSERT(metric(text ? text : "", "escqrs_command_service_restored_states_total") >= 1);
    double replayed = metric(text ? text : "", "escqrs_command_service_catchup_events_total");
    printf("\n  RESULT state.restore=%s: %g event(s) read after the restore\n",
           restore ? "true" : "false", replayed);
    if (!restore) /* every event from offset 0, the states computed again */
        CU_ASSERT(replayed >= (double)nev_before);
    free(text);
    for (int i = NRETRIED - WINDOW; i < NRETRIED; i++) {
        first_t again = c[i];
        send_first(&st, &again);
        if (again.status != c[i].status || strcmp(again.answer, c[i].answer))
            fprintf(stderr, "retry of %s: %d %s, first %d %s\n", c[i].key, again.status,
                    again.answer, c[i].status, c[i].answer);
        CU_ASSERT_EQUAL(again.status, c[i].status);
        ES_ASSERT_STR_EQ(again.answer, c[i].answer);
    }
    size_t nev_after = 0;
    free(wt_read_events(&st, &nev_after));
    CU_ASSERT_EQUAL(nev_after, nev_before); /* every retry answered, none decided again */
    dp_assert_balance(&st, "acct-r", 3008); /* 8 deposits of 1, 3 of 1000, the withdrawal refused */
    wt_stack_stop(&st);
}

static void test_retry_after_restore(void)
{
    retry_after_lost_store(true);
}

static void test_retry_after_replay(void)
{
    retry_after_lost_store(false);
}

/*
 * state.restore=false where the events' log no longer starts at offset 0 (an
 * operator's DeleteRecords): an aggregate whose first events are gone cannot
 * have its state computed again, so the restored state is kept (the log says
 * why) instead of the remaining events evolved onto it a second time.
 */
static void test_replay_after_records_deleted(void)
{
    wt_stack_t st;
    const char *sets[] = {"state.restore=false"};
    char topic[300];
    wt_stack_init(&st, "account");
    wt_start_service(&st, sets, 1);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    for (int i = 0; i < 6; i++) { /* opened, then 5 deposits of 1 */
        first_t c = {.path = i ? "/v1/accounts/acct-d/deposit" : "/v1/accounts/acct-d/open",
                     .body = i ? "{\"amount_cents\":1}" : "{\"owner\":\"o\"}"};
        snprintf(c.key, sizeof(c.key), "%sd-%d", st.prefix, i);
        send_first(&st, &c);
        CU_ASSERT_EQUAL(c.status, 200);
    }
    size_t n = 0;
    int64_t before[64] = {0};
    wt_event_t *ev = wt_read_events(&st, &n);
    int32_t p = -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ev[i].agg_id, "acct-d") && ev[i].version == 3) {
            p = ev[i].partition;
            before[p] = ev[i].offset; /* the open and the first deposit go */
        }
    free(ev);
    CU_ASSERT_FATAL(p >= 0 && p < 64);
    sleep(1); /* the last batch's store write follows its commit */
    wt_kill9(&st.cs);
    CU_ASSERT_TRUE(wt_delete_store(&st));
    snprintf(topic, sizeof(topic), "%s%s.events", st.prefix, st.agg);
    rd_kafka_t *rk = es_test_consumer("0207-delete-records");
    int parts = es_test_partition_count(rk, topic);
    CU_ASSERT_FATAL(parts > p && parts <= 64);
    es_test_delete_records(rk, topic, before, parts);
    rd_kafka_destroy(rk);

    wt_start_service(&st, sets, 1);
    wt_wait_ready(&st.cs, 60);
    bool warned = wt_log_line(st.cs.log, "not 0: the states restored", NULL, NULL, 0);
    printf("\n  RESULT log from offset %lld: said so %s\n", (long long)before[p],
           warned ? "yes" : "no");
    CU_ASSERT_TRUE(warned);
    dp_assert_balance(&st, "acct-d", 5); /* its 5 deposits of 1, not the last 4 again */
    wt_stack_stop(&st);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"kill -9 under load, store deleted: restored from the state topic, exactly once",
         test_restore_under_kill},
        {"a retry after the store was lost gets its first answer, a rejection included",
         test_retry_after_restore},
        {"state.restore=false: the same answers, the states computed again from the events",
         test_retry_after_replay},
        {"state.restore=false on a log that no longer starts at 0: the restored states kept",
         test_replay_after_records_deleted},
        {NULL, NULL},
    };
    return es_test_run("state-restore", cases);
}
