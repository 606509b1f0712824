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
#include "testutil.h"
#include "writetest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS      10
#define WHILE_DOWN  30
#define AFTER_UP    5
#define ACCOUNTS    5
#define MAX_SENT    (ROUNDS * (WHILE_DOWN + AFTER_UP))
#define STORE_ROUND 5
/* request.timeout.ms (3 s) and slack for a loaded 2-core machine */
#define DOWN_ANSWER_S 6.0

typedef struct {
    char key[160];
    char account[16];
    int64_t amount;
    int status;
    double seconds; /* from sending to the answer */
} sent_t;

static wt_stack_t st;
static sent_t sent[MAX_SENT];
static size_t nsent;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *send_one(void *arg)
{
    sent_t *s = arg;
    char path[96], body[64];
    snprintf(path, sizeof(path), "/v1/accounts/%s/deposit", s->account);
    snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)s->amount);
    double t0 = now_s();
    s->status = wt_post(&st.gw, path, body, strlen(body), s->key, NULL, NULL); /* once */
    s->seconds = now_s() - t0;
    return NULL;
}

/* Send @p n deposits at once, each exactly once; returns the first of them. */
static sent_t *send_burst(int round, size_t n)
{
    pthread_t th[WHILE_DOWN];
    sent_t *first = &sent[nsent];
    for (size_t i = 0; i < n; i++) {
        sent_t *s = &sent[nsent++];
        snprintf(s->key, sizeof(s->key), "%sr%d-%zu", st.prefix, round, nsent);
        snprintf(s->account, sizeof(s->account), "acct-%zu", nsent % ACCOUNTS);
        s->amount = 100 + (int64_t)nsent;
        pthread_create(&th[i], NULL, send_one, s);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return first;
}

static void test_restarts_without_retries(void)
{
    const char *gw_sets[] = {"request.timeout.ms=3000"};
    char cmd[700], why[512];
    double ready_s[ROUNDS];
    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, gw_sets, 1);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    for (int a = 0; a < ACCOUNTS; a++) {
        char path[64];
        json_t *j = NULL;
        snprintf(path, sizeof(path), "/v1/accounts/acct-%d/open", a);
        int status = wt_post(&st.gw, path, "{\"owner\":\"o\"}", 13, NULL, NULL, &j);
        if (status != 200) {
            char *text = j ? json_dumps(j, 0) : NULL;
            fprintf(stderr, "open acct-%d: %d %s\n", a, status, text ? text : "");
            free(text);
        }
        json_decref(j);
        CU_ASSERT_EQUAL_FATAL(status, 200);
    }

    size_t answered_while_down = 0, after_ok = 0, slow_or_wrong_while_down = 0;
    for (int r = 0; r < ROUNDS; r++) {
        wt_kill9(&st.cs);
        sent_t *down = send_burst(r, WHILE_DOWN);
        for (size_t i = 0; i < WHILE_DOWN; i++) {
            answered_while_down += down[i].status == 200;
            /* no outcome can come: the gateway gives up at request.timeout.ms */
            if (down[i].status != 504 || down[i].seconds > DOWN_ANSWER_S)
                fprintf(stderr,
                        "round %d: %s answered %d after %.1f s while the service was down\n", r,
                        down[i].key, down[i].status, down[i].seconds);
            slow_or_wrong_while_down += down[i].status != 504 || down[i].seconds > DOWN_ANSWER_S;
        }
        if (r == STORE_ROUND) {
            snprintf(cmd, sizeof(cmd), "rm -rf '%s/store'", st.dir);
            CU_ASSERT_EQUAL(system(cmd), 0);
        }
        double t0 = now_s();
        wt_start_service(&st, NULL, 0);
        wt_wait_ready(&st.cs, 90);
        ready_s[r] = now_s() - t0;
        sent_t *up = send_burst(r, AFTER_UP);
        for (size_t i = 0; i < AFTER_UP; i++) {
            if (up[i].status != 200)
                fprintf(stderr, "round %d: %s answered %d after the restart\n", r, up[i].key,
                        up[i].status);
            after_ok += up[i].status == 200;
        }
    }
    bool at_end = wt_wait_group_at_end(&st, 60, why, sizeof(why));
    if (!at_end)
        fprintf(stderr, "group not at the end of the commands topic: %s\n", why);
    CU_ASSERT(at_end);
    wt_stack_stop(&st);

    size_t ncmd = 0, nout = 0, nev = 0;
    wt_command_t *cmds = wt_read_commands(&st, &ncmd);
    wt_outcome_t *outs = wt_read_outcomes(&st, &nout);
    wt_event_t *evs = wt_read_events(&st, &nev);
    size_t dropped = 0, doubled = 0, not_accepted = 0, missing_event = 0, wrong_event = 0;
    for (size_t i = 0; i < ncmd; i++) {
        size_t o = 0, e = 0;
        for (size_t k = 0; k < nout; k++)
            if (!strcmp(outs[k].command_id, cmds[i].command_id)) {
                o++;
                if (strcmp(outs[k].status, "ACCEPTED")) {
                    fprintf(stderr, "command %s: %s %s\n", cmds[i].command_id, outs[k].status,
                            outs[k].reason);
                    not_accepted++;
                }
            }
        for (size_t k = 0; k < nev; k++)
            e += !strcmp(evs[k].command_id, cmds[i].command_id);
        dropped += o == 0;
        doubled += o > 1;
        missing_event += e != 1;
    }
    /* every deposit sent is in the log once, with its amount */
    for (size_t i = 0; i < nsent; i++) {
        size_t found = 0;
        for (size_t k = 0; k < nev; k++)
            if (!strcmp(evs[k].command_id, sent[i].key)) {
                found++;
                wrong_event += strcmp(evs[k].type, "Deposited") ||
                               evs[k].amount != sent[i].amount ||
                               strcmp(evs[k].agg_id, sent[i].account);
            }
        if (found != 1)
            fprintf(stderr, "deposit %s has %zu event(s)\n", sent[i].key, found);
        missing_event += found != 1;
    }
    for (int a = 0; a < ACCOUNTS; a++) {
        char id[16];
        int64_t version = 0, balance = 0, expected = 0;
        bool gapless = true;
        snprintf(id, sizeof(id), "acct-%d", a);
        for (size_t k = 0; k < nev; k++)
            if (!strcmp(evs[k].agg_id, id)) {
                gapless &= evs[k].version == ++version;
                balance += evs[k].amount;
            }
        for (size_t i = 0; i < nsent; i++)
            if (!strcmp(sent[i].account, id))
                expected += sent[i].amount;
        CU_ASSERT(gapless);
        CU_ASSERT_EQUAL(balance, expected);
    }
    double ready_max = 0, ready_sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
        ready_sum += ready_s[r];
        ready_max = ready_s[r] > ready_max ? ready_s[r] : ready_max;
    }
    printf("\n  %d restarts: %zu commands in the log, %zu sent once each (%zu while down, %zu of "
           "them answered 200)\n",
           ROUNDS, ncmd, nsent, (size_t)ROUNDS * WHILE_DOWN, answered_while_down);
    printf("  RESULT commands_dropped=%zu commands_doubled=%zu not_accepted=%zu "
           "events_missing_or_extra=%zu after_restart_ok=%zu/%d ready_after_restart_s "
           "mean=%.1f max=%.1f not_504_in_time_while_down=%zu\n",
           dropped, doubled, not_accepted, missing_event, after_ok, ROUNDS * AFTER_UP,
           ready_sum / ROUNDS, ready_max, slow_or_wrong_while_down);
    CU_ASSERT_EQUAL(ncmd, nsent + ACCOUNTS);
    CU_ASSERT_EQUAL(dropped, 0);
    CU_ASSERT_EQUAL(doubled, 0);
    CU_ASSERT_EQUAL(not_accepted, 0);
    CU_ASSERT_EQUAL(missing_event, 0);
    CU_ASSERT_EQUAL(wrong_event, 0);
    CU_ASSERT_EQUAL(after_ok, (size_t)ROUNDS * AFTER_UP);
    CU_ASSERT_EQUAL(slow_or_wrong_while_down, 0); /* every one a 504 within the deadline */
    free(cmds);
    free(outs);
    free(evs);
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
