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
#include "testutil.h"
#include "writetest.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS      6
#define ACCOUNTS     4
#define MAXCMDS      4000
#define MIN_PROGRESS 20 /* accepted commands, sent after a restart, before the next kill */
/* Load after each restart: longer than the gateway's request.timeout.ms (3 s) plus
 * a retry, so a command the restart left unanswered is retried within the window. */
#define AFTER_RESTART_S 6
#define MAXPARTS        64

typedef struct {
    char key[160];
    char account[16];
    bool deposit;
    int64_t amount;
    int status;
    int attempts;
    int64_t version;
    char position[48];
    char error[48], reason[48];   /* of the last answer, "" when absent */
    int64_t sent_ms, answered_ms; /* first attempt, last answer (monotonic) */
} cmd_t;

static wt_stack_t st;
static cmd_t cmds[CLIENTS][MAXCMDS];
static atomic_size_t ncmds[CLIENTS]; /* read by the main thread while clients run */
static atomic_bool stop_clients;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *client(void *arg)
{
    int c = (int)(intptr_t)arg;
    unsigned seed = 1234u + (unsigned)c;
    char path[128], body[64];
    while (!atomic_load(&stop_clients) && atomic_load(&ncmds[c]) < MAXCMDS) {
        size_t i = atomic_load(&ncmds[c]);
        cmd_t *m = &cmds[c][i];
        snprintf(m->account, sizeof(m->account), "acct-%d", rand_r(&seed) % ACCOUNTS);
        m->deposit = rand_r(&seed) % 2;
        m->amount = 50 + rand_r(&seed) % (m->deposit ? 150 : 250);
        snprintf(m->key, sizeof(m->key), "%sc%d-%zu", st.prefix, c, i + 1);
        snprintf(path, sizeof(path), "/v1/accounts/%s/%s", m->account,
                 m->deposit ? "deposit" : "withdraw");
        snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)m->amount);
        m->sent_ms = mono_ms();
        for (m->attempts = 1; m->attempts <= 60; m->attempts++) {
            json_t *j = NULL;
            m->status = wt_post(&st.gw, path, body, strlen(body), m->key, NULL, &j);
            m->answered_ms = mono_ms();
            snprintf(m->error, sizeof(m->error), "%s",
                     es_test_or_empty(json_string_value(json_object_get(j, "error"))));
            snprintf(m->reason, sizeof(m->reason), "%s",
                     es_test_or_empty(json_string_value(json_object_get(j, "reason"))));
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
        atomic_store(&ncmds[c], i + 1); /* published once answered */
    }
    return NULL;
}

/*
 * Commands first sent at or after @p from_ms and accepted before @p to_ms;
 * *first_ms is when the first answer of any kind came after @p from_ms (-1: none).
 */
static size_t accepted_between(int64_t from_ms, int64_t to_ms, int64_t *first_ms)
{
    size_t n = 0;
    *first_ms = -1;
    for (int c = 0; c < CLIENTS; c++) {
        size_t k = atomic_load(&ncmds[c]);
        for (size_t i = 0; i < k; i++) {
            const cmd_t *m = &cmds[c][i];
            n += m->status == 200 && m->sent_ms >= from_ms && m->answered_ms < to_ms;
            if (m->status == 200 && m->answered_ms >= from_ms &&
                (*first_ms < 0 || m->answered_ms < *first_ms))
                *first_ms = m->answered_ms;
        }
    }
    return n;
}

/* The balance of @p account folded from the log, up to version @p upto (all when < 0). */
static int64_t balance_at(const wt_event_t *evs, size_t n, const char *account, int64_t upto)
{
    int64_t balance = 0;
    for (size_t k = 0; k < n; k++) {
        if (strcmp(evs[k].agg_id, account) != 0 || (upto >= 0 && evs[k].version > upto))
            continue;
        balance += !strcmp(evs[k].type, "Deposited")   ? evs[k].amount
                   : !strcmp(evs[k].type, "Withdrawn") ? -evs[k].amount
                                                       : 0;
    }
    return balance;
}

/* The client command with Idempotency-Key @p key, or NULL. */
static const cmd_t *find_cmd(const char *key)
{
    for (int c = 0; c < CLIENTS; c++)
        for (size_t i = 0; i < atomic_load(&ncmds[c]); i++)
            if (!strcmp(cmds[c][i].key, key))
                return &cmds[c][i];
    return NULL;
}

/*
 * Once the load stopped, the service commits the end of the commands topic
 * (it may still be finishing the last retries: wait up to 30 s).
 */
static void check_committed_offsets(void)
{
    int64_t committed[MAXPARTS], end[MAXPARTS];
    int parts = 0;
    bool equal = false;
    for (int w = 0; w < 60 && !equal; w++) {
        if (w)
            usleep(500 * 1000);
        parts = wt_command_offsets(&st, committed, end, MAXPARTS);
        equal = parts > 0;
        for (int p = 0; p < parts; p++) {
            if (committed[p] == RD_KAFKA_OFFSET_INVALID && end[p] == 0)
                committed[p] = 0; /* a partition no command went to: nothing to commit */
            equal = equal && committed[p] == end[p];
        }
    }
    for (int p = 0; p < parts; p++) {
        printf("\n  %saccount.commands [%d]: committed %lld, end %lld", st.prefix, p,
               (long long)committed[p], (long long)end[p]);
        CU_ASSERT_EQUAL(committed[p], end[p]);
    }
    CU_ASSERT_TRUE(parts > 0);
}

/* Every record of the commands topic has exactly one outcome (by command id). */
static void check_one_outcome_per_command(void)
{
    size_t ncmd = 0, nout = 0, missing = 0, extra = 0, unmatched = 0, body_mismatch = 0;
    wt_command_t *cs = wt_read_commands(&st, &ncmd);
    wt_outcome_t *os = wt_read_outcomes(&st, &nout);
    size_t *used = calloc(nout + 1, sizeof(*used));
    for (size_t i = 0; i < nout; i++)
        body_mismatch += strcmp(os[i].hdr_command, os[i].command_id) != 0;
    for (size_t i = 0; i < ncmd; i++) {
        size_t records = 0, outcomes = 0;
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = strcmp(cs[k].command_id, cs[i].command_id) != 0;
        if (!first)
            continue; /* counted with the first record of its id */
        for (size_t k = i; k < ncmd; k++)
            records += !strcmp(cs[k].command_id, cs[i].command_id);
        for (size_t k = 0; k < nout; k++) {
            if (!strcmp(os[k].hdr_command, cs[i].command_id)) {
                outcomes++;
                used[k]++;
            }
        }
        if (outcomes < records) {
            if (missing < 5)
                fprintf(stderr,
                        "\n  command %s (%s, first at %d:%lld): %zu record(s), %zu outcome(s)",
                        cs[i].command_id, cs[i].type, (int)cs[i].partition, (long long)cs[i].offset,
                        records, outcomes);
            missing += records - outcomes;
        }
        extra += outcomes > records ? outcomes - records : 0;
    }
    for (size_t k = 0; k < nout; k++)
        unmatched += used[k] == 0;
    printf("\n  %zu command records, %zu outcomes: %zu command record(s) without an outcome, "
           "%zu extra outcome(s), %zu outcome(s) of no command",
           ncmd, nout, missing, extra, unmatched);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(extra, 0);
    CU_ASSERT_EQUAL(unmatched, 0);
    CU_ASSERT_EQUAL(body_mismatch, 0);
    free(used);
    free(cs);
    free(os);
}

/* Every REJECTED outcome is insufficient_funds, and right by the log's balance. */
static void check_rejections(const wt_event_t *evs, size_t n)
{
    size_t nout = 0, rejected = 0, wrong = 0;
    wt_outcome_t *os = wt_read_outcomes(&st, &nout);
    for (size_t i = 0; i < nout; i++) {
        if (strcmp(os[i].status, "REJECTED") != 0)
            continue;
        rejected++;
        const cmd_t *m = find_cmd(os[i].command_id);
        ES_ASSERT_STR_EQ(os[i].reason, "insufficient_funds");
        CU_ASSERT_PTR_NOT_NULL(m);
        if (!m)
            continue;
        CU_ASSERT_FALSE(m->deposit);
        int64_t bal = balance_at(evs, n, m->account, os[i].actual_version);
        if (bal >= m->amount && wrong++ < 5)
            fprintf(stderr, "\n  %s: withdrawal of %lld refused at version %lld, balance %lld",
                    m->key, (long long)m->amount, (long long)os[i].actual_version, (long long)bal);
    }
    printf("\n  %zu rejected outcome(s) checked against the log", rejected);
    CU_ASSERT_EQUAL(wrong, 0);
    free(os);
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

    int64_t restarted[2], ready[2], next_stop[2], killed[2];
    sleep(3);
    killed[0] = mono_ms();
    wt_kill9(&st.cs); /* 1: the store survives */
    usleep(500 * 1000);
    restarted[0] = mono_ms();
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    ready[0] = mono_ms();
    sleep(AFTER_RESTART_S);
    next_stop[0] = mono_ms();
    killed[1] = mono_ms();
    wt_kill9(&st.cs); /* 2: the store is lost too */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/store'", st.dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    restarted[1] = mono_ms();
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    ready[1] = mono_ms();
    sleep(AFTER_RESTART_S);
    next_stop[1] = mono_ms();
    atomic_store(&stop_clients, true);
    for (int c = 0; c < CLIENTS; c++)
        pthread_join(th[c], NULL);
    for (int k = 0; k < 2; k++) {
        int64_t first = -1;
        size_t progress = accepted_between(restarted[k], next_stop[k], &first);
        printf("\n  restart %d: ready after %lld ms; %zu commands sent and accepted in the "
               "%lld ms before the %s; first 200 after the restart at +%lld ms",
               k + 1, (long long)(ready[k] - restarted[k]), progress,
               (long long)(next_stop[k] - restarted[k]), k ? "load stopped" : "next kill",
               (long long)(first < 0 ? -1 : first - restarted[k]));
        CU_ASSERT(progress >= MIN_PROGRESS);
    }
    check_committed_offsets();
    wt_stack_stop(&st);

    size_t n = 0, ok = 0, definite = 0, unknown = 0, retried = 0, total = 0, in_flight = 0;
    wt_event_t *evs = wt_read_events(&st, &n);
    size_t *seen = calloc(n + 1, sizeof(*seen));
    for (int c = 0; c < CLIENTS; c++)
        for (size_t i = 0; i < atomic_load(&ncmds[c]); i++) {
            cmd_t *m = &cmds[c][i];
            size_t found = 0, at = 0;
            total++;
            retried += m->attempts > 1;
            for (int k = 0; k < 2; k++) /* sent before a kill, answered after it */
                in_flight += m->sent_ms < killed[k] && m->answered_ms > killed[k];
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
                /* the only legitimate refusal here: every account is open */
                if (m->status != 422 || strcmp(m->reason, "insufficient_funds") != 0)
                    fprintf(stderr, "\n  command %s: %d %s %s", m->key, m->status, m->error,
                            m->reason);
                CU_ASSERT_EQUAL(m->status, 422);
                ES_ASSERT_STR_EQ(m->error, "rejected");
                ES_ASSERT_STR_EQ(m->reason, "insufficient_funds");
                CU_ASSERT_FALSE(m->deposit);
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
    check_rejections(evs, n);
    check_one_outcome_per_command();
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
    printf("\n  %zu commands: %zu ok, %zu rejected, %zu unknown; %zu in flight at a kill, %zu "
           "retried; %zu events\n",
           total, ok, definite, unknown, in_flight, retried, n);
    CU_ASSERT(ok > 50);
    /* the crashes did hit commands in flight (answered after their retry, or, now
     * that a restarted service decides what waited, at the first attempt) */
    CU_ASSERT(in_flight > 0);
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
