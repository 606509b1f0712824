/*
 * 0902-broker-restart.c — kill -9 the Kafka broker under load and start it
 * again: nothing acknowledged is lost or doubled, every program says it is
 * not ready while the broker is gone, and every program is ready again by
 * itself, without a restart.
 *
 * The broker is one of its own (scripts/stack, profile "fault": 127.0.0.1:
 * 29092), so killing it disturbs no other test; the registry is the test
 * stack's.  A command service, a gateway and a projector (account_balance)
 * run against it with health.broker.timeout.ms=3000.  Clients deposit and
 * withdraw (tests/accountload.c: retrying with the same key, as the
 * contract says).  After 4 s the broker gets SIGKILL; within the watch's
 * timeout every /readyz must answer 503; 6 s later the broker starts again
 * and every /readyz must answer 200 again, the processes never having
 * exited.  The load goes on until 20 commands sent after the restart are
 * accepted (60 s at most), then: the full history check of
 * accountload (one outcome per command, one event per 200 at its position,
 * no event for a refusal, the group at the end of the commands topic), and
 * the projector's balances equal a fold of the log.  Prints the seconds to
 * not-ready and to ready-again of each program.
 *
 * Beside it, a gateway of the cart aggregate, whose command service never
 * runs, gets a command every 100 ms from before the kill to the end of the
 * load: each must be refused at once (503) and none written, whatever the
 * gateway could or could not learn of the cluster meanwhile (a broker that
 * has just started answers ListGroups "Coordinator load in progress" for a
 * while; the gateway once took that for "maybe a command service" and wrote
 * the command, which then timed out).
 *
 * When Kafka itself breaks its word the test cannot judge: a one-node broker
 * restarted after kill -9 sometimes finishes the commit that was under way
 * while it is still fenced, logs "Couldn't find leader endpoint for
 * partitions ... likely deleted" and never writes that commit's markers
 * (docs/operations.md, "A catch-up that stalls").  The command service then
 * waits behind the hanging transaction and says so on /readyz, as it must,
 * and no read_committed reader gets past it.  When the broker's log has that
 * line for this run's topics at the end of the load (the programs ready
 * again, or 180 s after the restart, then up to 60 s of load), the test
 * prints it and exits SKIPPED (77), loudly,
 * instead of failing on the broker's fault: whether the command service got
 * ready before its catch-up met the hanging transaction or not (both seen,
 * on Debian's own librdkafka too), the history checks that follow would
 * wait on it (OffsetFetch answers "unstable" while its offsets are pending).
 * Without that line a program not ready again is a failure as before.
 */
#include "accountload.h"
#include "readtest.h"
#include "testutil.h"
#include "writetest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BROKER    "127.0.0.1:29092"
#define CLIENTS   6
#define ACCOUNTS  4
#define AFTER_MIN 20 /* commands sent after the restart that must be accepted */
#define SKIPPED   77 /* ctest's SKIP_RETURN_CODE for this test (tests/CMakeLists.txt) */

static bool skipped; /* the broker dropped a commit's markers: see the comment above */

static int stack(const char *verb)
{
    return es_test_stack("fault", verb, "kafka");
}

static void stack_down_at_exit(void)
{
    stack("down");
}

typedef struct {
    const char *name;
    int port;
    int64_t not_ready_ms, ready_ms; /* -1 until seen */
} probe_t;

static int readyz(int port)
{
    rt_proc_t p = {.port = port};
    return rt_http(&p, "GET", "/readyz", NULL);
}

/* Whether the fault broker's log says it dropped the markers of a commit on @p prefix's
 * topics; the line into @p line. */
static bool dropped_markers(const char *prefix, char *line, size_t linesz)
{
    char path[1024];
    const char *src = getenv("ESCQRS_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/.local/stack/fault/logs/kafka.log", src ? src : ".");
    return wt_log_line(path, "likely deleted", prefix, line, linesz);
}

/* Poll every /readyz until each answered @p want, or @p timeout_ms; record when. */
static void wait_all(probe_t *pr, size_t n, int want, int64_t since, int timeout_ms, bool ready)
{
    for (int64_t t = al_now_ms(); al_now_ms() - t < timeout_ms;) {
        bool all = true;
        for (size_t i = 0; i < n; i++) {
            int64_t *at = ready ? &pr[i].ready_ms : &pr[i].not_ready_ms;
            if (*at < 0 && readyz(pr[i].port) == want)
                *at = al_now_ms() - since;
            all = all && *at >= 0;
        }
        if (all)
            return;
        usleep(200 * 1000);
    }
}

/* The cart gateway with no command service, and its client (see the top). */
typedef struct {
    wt_stack_t st;
    pthread_t thr;
    atomic_bool stop;
    size_t sent, refused; /* refused: 503 */
    int other;            /* the first status that was not 503 */
    char other_error[64];
} orphan_t;

static void *orphan_client(void *arg)
{
    orphan_t *o = arg;
    static const char body[] = "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":1}";
    while (!atomic_load(&o->stop)) {
        char path[64];
        json_t *b = NULL;
        snprintf(path, sizeof(path), "/v1/carts/c-%zu/add-item", o->sent);
        int status = wt_post(&o->st.gw, path, body, sizeof(body) - 1, NULL, NULL, &b);
        o->sent++;
        if (status == 503) {
            o->refused++;
        } else if (!o->other) {
            o->other = status;
            const char *error = json_string_value(json_object_get(b, "error"));
            snprintf(o->other_error, sizeof(o->other_error), "%s",
                     error ? error
                     : b   ? "no error field"
                           : "no JSON");
        }
        json_decref(b);
        usleep(100 * 1000);
    }
    return NULL;
}

static void orphan_start(orphan_t *o, const char *const *sets, size_t nsets)
{
    memset(o, 0, sizeof(*o));
    wt_stack_init(&o->st, "cart");
    wt_start_gateway(&o->st, sets, nsets);
    CU_ASSERT_TRUE_FATAL(wt_wait_not_ready_because(&o->st.gw, "no command service", 90));
    CU_ASSERT_EQUAL_FATAL(pthread_create(&o->thr, NULL, orphan_client, o), 0);
}

static void orphan_check(orphan_t *o)
{
    size_t ncmd = 0;
    atomic_store(&o->stop, true);
    pthread_join(o->thr, NULL);
    CU_ASSERT_EQUAL(wt_stop(&o->st.gw), 0);
    free(wt_read_commands(&o->st, &ncmd));
    printf("\n  RESULT no-command-service gateway: %zu command(s) sent, %zu refused with 503, "
           "%zu written\n",
           o->sent, o->refused, ncmd);
    if (o->other)
        printf("  the first answer that was not 503: %d %s\n", o->other, o->other_error);
    /* 100 ms apart (longer while it asks the cluster), for 30 s or more */
    CU_ASSERT(o->sent >= 20);
    CU_ASSERT_EQUAL(o->refused, o->sent);
    CU_ASSERT_EQUAL(ncmd, 0);
}

static void test_broker_restart(void)
{
    wt_stack_t st;
    rt_proc_t proj = {0};
    const char *health[] = {"health.broker.timeout.ms=3000", "health.interval.ms=500",
                            "request.timeout.ms=3000"};
    const char *proj_sets[] = {"projections=account_balance", "health.broker.timeout.ms=3000",
                               "health.interval.ms=500"};
    char store[600], pfx[200];

    setenv("ESCQRS_TEST_BOOTSTRAP", BROKER, 1); /* every helper below uses this broker */
    atexit(stack_down_at_exit);
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);

    wt_stack_init(&st, "account");
    wt_start_service(&st, health, 2);
    wt_start_gateway(&st, health, 3);
    wt_wait_ready(&st.cs, 90);
    wt_wait_ready(&st.gw, 90);
    snprintf(store, sizeof(store), "%s/projector", st.dir);
    snprintf(pfx, sizeof(pfx), "%s", st.prefix);
    rt_proc_start(&proj, store, pfx, proj_sets, 3);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proj, 60000));
    orphan_t orphan;
    orphan_start(&orphan, health, 3);
    al_load_t *load = al_start(&st, CLIENTS, ACCOUNTS);

    probe_t pr[] = {{"command-service", st.cs.port, -1, -1},
                    {"gateway", st.gw.port, -1, -1},
                    {"projector", proj.port, -1, -1}};
    size_t npr = sizeof(pr) / sizeof(pr[0]);
    sleep(4);
    int64_t killed = al_now_ms();
    CU_ASSERT_EQUAL_FATAL(stack("kill"), 0);
    wait_all(pr, npr, 503, killed, 15000, false);
    sleep(6);
    int64_t restarted = al_now_ms();
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);
    int64_t broker_up = al_now_ms() - restarted;
    wait_all(pr, npr, 200, restarted, 180000, true);
    /* load goes on until AFTER_MIN commands sent after the restart are
     * accepted (at most 60 s more): progress, not a fixed sleep, is the test */
    int64_t first = -1;
    for (int i = 0; i < 60 && al_accepted_between(load, restarted, al_now_ms(), &first) < AFTER_MIN;
         i++)
        sleep(1);
    sleep(2);
    al_stop(load);
    orphan_check(&orphan);
    char dropped[1024];
    if (dropped_markers(st.prefix, dropped, sizeof(dropped))) {
        printf("\n  SKIPPED: the broker dropped the markers of a committed transaction on this\n"
               "  run's topics (a hanging transaction no read_committed reader gets past); the\n"
               "  command service %s:\n  %s",
               pr[0].ready_ms < 0 ? "is not ready 180 s after the restart"
                                  : "got ready, and then meets it",
               dropped);
        fflush(stdout);
        al_free(load);
        rt_proc_stop(&proj);
        wt_stack_stop(&st);
        skipped = true;
        return;
    }

    printf("\n  broker down %.1f s, up again %.1f s after its start\n",
           (double)(restarted - killed) / 1000.0, (double)broker_up / 1000.0);
    for (size_t i = 0; i < npr; i++) {
        printf("  RESULT %s not_ready_after_kill_s=%.1f ready_after_broker_start_s=%.1f\n",
               pr[i].name, (double)pr[i].not_ready_ms / 1000.0, (double)pr[i].ready_ms / 1000.0);
        CU_ASSERT(pr[i].not_ready_ms >= 0); /* /readyz told the truth while the broker was gone */
        CU_ASSERT(pr[i].ready_ms >= 0);     /* and recovered without anyone's help */
    }
    CU_ASSERT_TRUE(wt_proc_alive(&st.cs));
    CU_ASSERT_TRUE(wt_proc_alive(&st.gw));
    CU_ASSERT_TRUE(rt_proc_alive(&proj));
    size_t after = al_accepted_between(load, restarted, al_now_ms(), &first);
    printf("  %zu command(s) accepted after the broker came back (first %.1f s after its "
           "start); %zu in flight at the kill\n",
           after, first < 0 ? -1.0 : (double)(first - restarted) / 1000.0,
           al_in_flight_at(load, killed));
    CU_ASSERT(after >= AFTER_MIN);

    size_t ok = al_check(load);
    CU_ASSERT(ok > 20);
    /* the projector's view equals the log, folded here */
    CU_ASSERT_TRUE(rt_wait_caught_up(&proj, "account_balance", 60000));
    int64_t want[ACCOUNTS];
    al_log_balances(load, want);
    size_t differ = 0;
    for (int a = 0; a < ACCOUNTS; a++) {
        char path[64];
        json_t *b = NULL;
        snprintf(path, sizeof(path), "/v1/accounts/acct-%d", a);
        int status = rt_http(&proj, "GET", path, &b);
        int64_t got = json_integer_value(json_object_get(b, "balance_cents"));
        if (status != 200 || got != want[a]) {
            fprintf(stderr, "  acct-%d: projector %d %lld, log %lld\n", a, status, (long long)got,
                    (long long)want[a]);
            differ++;
        }
        json_decref(b);
    }
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&proj), 0);
    wt_stack_stop(&st);
    al_free(load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"broker kill -9 and restart under load", test_broker_restart},
        {NULL, NULL},
    };
    int rc = es_test_run("fault-broker-restart", cases);
    return rc == 0 && skipped ? SKIPPED : rc;
}
