/*
 * 0203-write-crash.c — kill -9 the command service under load; the log and
 * the clients' answers still agree exactly.
 *
 * Clients send deposits and withdrawals to a few accounts, each command with
 * its own Idempotency-Key, and retry with the same key when the answer is a
 * timeout, 503 or no answer at all, as the contract tells them to.  Meanwhile
 * the command service is killed with SIGKILL twice and restarted, the second
 * time with its RocksDB store deleted (it must rebuild everything from the
 * events topic, idempotency included).  Then a history checker joins the
 * events topic with the answers:
 *  - every command that got a 200 has exactly one event, at the answered
 *    position and version;
 *  - no command id appears in two events; no event belongs to an unknown command;
 *  - no command that got a definite error (4xx) has an event;
 *  - every account's versions are 1..n without gaps and its balance, folded
 *    from the log, never goes below zero.
 */
#include "testutil.h"
#include "writetest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENTS  6
#define ACCOUNTS 4
#define MAXCMDS  4000

typedef struct {
    char key[160];
    char account[16];
    bool deposit;
    int64_t amount;
    int status;
    int attempts;
    int64_t version;
    char position[48];
} cmd_t;

static wt_stack_t st;
static cmd_t cmds[CLIENTS][MAXCMDS];
static size_t ncmds[CLIENTS];
static atomic_bool stop_clients;

static void *client(void *arg)
{
    int c = (int)(intptr_t)arg;
    unsigned seed = 1234u + (unsigned)c;
    char path[128], body[64];
    while (!atomic_load(&stop_clients) && ncmds[c] < MAXCMDS) {
        cmd_t *m = &cmds[c][ncmds[c]++];
        snprintf(m->account, sizeof(m->account), "acct-%d", rand_r(&seed) % ACCOUNTS);
        m->deposit = rand_r(&seed) % 2;
        m->amount = 50 + rand_r(&seed) % (m->deposit ? 150 : 250);
        snprintf(m->key, sizeof(m->key), "%sc%d-%zu", st.prefix, c, ncmds[c]);
        snprintf(path, sizeof(path), "/v1/accounts/%s/%s", m->account,
                 m->deposit ? "deposit" : "withdraw");
        snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)m->amount);
        for (m->attempts = 1; m->attempts <= 60; m->attempts++) {
            json_t *j = NULL;
            m->status = wt_post(&st.gw, path, body, strlen(body), m->key, NULL, &j);
            if (m->status == 200) {
                m->version = json_integer_value(json_object_get(j, "version"));
                snprintf(m->position, sizeof(m->position), "%s",
                         es_test_or_empty(json_string_value(json_object_get(j, "position"))));
            }
            json_decref(j);
            if (m->status != 0 && m->status != 503 && m->status != 504)
                break;
            usleep(200 * 1000); /* outcome unknown: retry with the same key */
        }
    }
    return NULL;
}

static void test_crash_under_load(void)
{
    pthread_t th[CLIENTS];
    const char *gw_sets[] = {"request.timeout.ms=3000"};
    char cmd[700];
    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, gw_sets, 1);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    for (int a = 0; a < ACCOUNTS; a++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/accounts/acct-%d/open", a);
        CU_ASSERT_EQUAL_FATAL(wt_post(&st.gw, path, "{\"owner\":\"o\"}", 13, NULL, NULL, NULL),
                              200);
    }
    for (int c = 0; c < CLIENTS; c++)
        pthread_create(&th[c], NULL, client, (void *)(intptr_t)c);

    sleep(3);
    wt_kill9(&st.cs); /* 1: the store survives */
    usleep(500 * 1000);
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    sleep(3);
    wt_kill9(&st.cs); /* 2: the store is lost too */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/store'", st.dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    sleep(3);
    atomic_store(&stop_clients, true);
    for (int c = 0; c < CLIENTS; c++)
        pthread_join(th[c], NULL);
    wt_stack_stop(&st);

    size_t n = 0, ok = 0, definite = 0, unknown = 0, retried = 0, total = 0;
    wt_event_t *evs = wt_read_events(&st, &n);
    size_t *seen = calloc(n + 1, sizeof(*seen));
    for (int c = 0; c < CLIENTS; c++)
        for (size_t i = 0; i < ncmds[c]; i++) {
            cmd_t *m = &cmds[c][i];
            size_t found = 0, at = 0;
            total++;
            retried += m->attempts > 1;
            for (size_t k = 0; k < n; k++)
                if (!strcmp(evs[k].command_id, m->key)) {
                    found++;
                    seen[k]++;
                    at = k;
                }
            if (m->status == 200) {
                ok++;
                CU_ASSERT_EQUAL(found, 1);
                if (found == 1) {
                    char pos[48];
                    snprintf(pos, sizeof(pos), "%d:%lld", (int)evs[at].partition,
                             (long long)evs[at].offset);
                    ES_ASSERT_STR_EQ(pos, m->position);
                    CU_ASSERT_EQUAL(evs[at].version, m->version);
                    ES_ASSERT_STR_EQ(evs[at].agg_id, m->account);
                    CU_ASSERT_EQUAL(evs[at].amount, m->amount);
                    ES_ASSERT_STR_EQ(evs[at].type, m->deposit ? "Deposited" : "Withdrawn");
                }
            } else if (m->status >= 400 && m->status < 500) {
                definite++;
                CU_ASSERT_EQUAL(m->status, 422);
                if (found != 0)
                    fprintf(stderr, "command %s got %d but has %zu event(s)\n", m->key, m->status,
                            found);
                CU_ASSERT_EQUAL(found, 0);
            } else {
                unknown++;
                CU_ASSERT(found <= 1);
            }
        }
    /* every event belongs to exactly one command: ours, or an account's opening */
    size_t phantoms = 0, opened = 0;
    for (size_t k = 0; k < n; k++) {
        if (!strcmp(evs[k].type, "AccountOpened")) {
            opened++;
            continue;
        }
        if (seen[k] != 1)
            phantoms++;
    }
    CU_ASSERT_EQUAL(phantoms, 0);
    CU_ASSERT_EQUAL(opened, ACCOUNTS);
    for (int a = 0; a < ACCOUNTS; a++) {
        char id[16];
        int64_t version = 0, balance = 0;
        bool gapless = true, never_negative = true;
        snprintf(id, sizeof(id), "acct-%d", a);
        for (size_t k = 0; k < n; k++) {
            if (strcmp(evs[k].agg_id, id))
                continue;
            gapless &= evs[k].version == ++version;
            balance += !strcmp(evs[k].type, "Deposited")   ? evs[k].amount
                       : !strcmp(evs[k].type, "Withdrawn") ? -evs[k].amount
                                                           : 0;
            never_negative &= balance >= 0;
        }
        CU_ASSERT(gapless);
        CU_ASSERT(never_negative);
    }
    printf("\n  %zu commands: %zu ok, %zu rejected, %zu unknown; %zu retried; %zu events\n", total,
           ok, definite, unknown, retried, n);
    CU_ASSERT(ok > 50);
    CU_ASSERT(retried > 0); /* the crashes did hit commands in flight */
    free(seen);
    free(evs);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"kill -9 under load: log and answers agree", test_crash_under_load},
        {NULL, NULL},
    };
    return es_test_run("write-crash", cases);
}
