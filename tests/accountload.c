/*
 * accountload.c — see accountload.h.  The clients record every answer; the
 * checks read the three topics back (writetest.c) and join them with the
 * answers.  Nothing here uses the code under test to compute what it expects.
 */
#include "accountload.h"

#include "testutil.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXCLIENTS 16
#define MAXCMDS    4000
#define MAXPARTS   64

struct al_load_s {
    wt_stack_t *st;
    int nclients, naccounts;
    al_cmd_t *cmds[MAXCLIENTS];
    atomic_size_t ncmds[MAXCLIENTS];
    atomic_bool stop;
    pthread_t th[MAXCLIENTS];
    bool running;
};

typedef struct {
    al_load_t *l;
    int c;
} client_arg_t;

int64_t al_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *client(void *arg)
{
    client_arg_t *ca = arg;
    al_load_t *l = ca->l;
    int c = ca->c;
    unsigned seed = 1234u + (unsigned)c;
    char path[128], body[64];
    free(ca);
    while (!atomic_load(&l->stop) && atomic_load(&l->ncmds[c]) < MAXCMDS) {
        size_t i = atomic_load(&l->ncmds[c]);
        al_cmd_t *m = &l->cmds[c][i];
        snprintf(m->account, sizeof(m->account), "acct-%d", rand_r(&seed) % l->naccounts);
        m->deposit = rand_r(&seed) % 2;
        m->amount = 50 + rand_r(&seed) % (m->deposit ? 150 : 250);
        snprintf(m->key, sizeof(m->key), "%sc%d-%zu", l->st->prefix, c, i + 1);
        snprintf(path, sizeof(path), "/v1/accounts/%s/%s", m->account,
                 m->deposit ? "deposit" : "withdraw");
        snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)m->amount);
        m->sent_ms = al_now_ms();
        for (m->attempts = 1; m->attempts <= 60; m->attempts++) {
            json_t *j = NULL;
            m->status = wt_post(&l->st->gw, path, body, strlen(body), m->key, NULL, &j);
            m->answered_ms = al_now_ms();
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
        atomic_store(&l->ncmds[c], i + 1); /* published once answered */
    }
    return NULL;
}

al_load_t *al_start(wt_stack_t *st, int clients, int accounts)
{
    al_load_t *l = calloc(1, sizeof(*l));
    l->st = st;
    l->nclients = clients > MAXCLIENTS ? MAXCLIENTS : clients;
    l->naccounts = accounts;
    for (int a = 0; a < accounts; a++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/accounts/acct-%d/open", a);
        CU_ASSERT_EQUAL_FATAL(wt_post(&st->gw, path, "{\"owner\":\"o\"}", 13, NULL, NULL, NULL),
                              200);
    }
    for (int c = 0; c < l->nclients; c++) {
        client_arg_t *ca = malloc(sizeof(*ca));
        ca->l = l;
        ca->c = c;
        l->cmds[c] = calloc(MAXCMDS, sizeof(al_cmd_t));
        pthread_create(&l->th[c], NULL, client, ca);
    }
    l->running = true;
    return l;
}

void al_stop(al_load_t *l)
{
    if (!l->running)
        return;
    atomic_store(&l->stop, true);
    for (int c = 0; c < l->nclients; c++)
        pthread_join(l->th[c], NULL);
    l->running = false;
}

size_t al_accepted_between(al_load_t *l, int64_t from_ms, int64_t to_ms, int64_t *first_ms)
{
    size_t n = 0;
    *first_ms = -1;
    for (int c = 0; c < l->nclients; c++) {
        size_t k = atomic_load(&l->ncmds[c]);
        for (size_t i = 0; i < k; i++) {
            const al_cmd_t *m = &l->cmds[c][i];
            n += m->status == 200 && m->sent_ms >= from_ms && m->answered_ms < to_ms;
            if (m->status == 200 && m->answered_ms >= from_ms &&
                (*first_ms < 0 || m->answered_ms < *first_ms))
                *first_ms = m->answered_ms;
        }
    }
    return n;
}

size_t al_in_flight_at(al_load_t *l, int64_t t_ms)
{
    size_t n = 0;
    for (int c = 0; c < l->nclients; c++) {
        size_t k = atomic_load(&l->ncmds[c]);
        for (size_t i = 0; i < k; i++)
            n += l->cmds[c][i].sent_ms < t_ms && l->cmds[c][i].answered_ms > t_ms;
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

void al_log_balances(al_load_t *l, int64_t *out)
{
    size_t n = 0;
    wt_event_t *evs = wt_read_events(l->st, &n);
    for (int a = 0; a < l->naccounts; a++) {
        char id[16];
        snprintf(id, sizeof(id), "acct-%d", a);
        out[a] = balance_at(evs, n, id, -1);
    }
    free(evs);
}

/* The client command with Idempotency-Key @p key, or NULL. */
static const al_cmd_t *find_cmd(al_load_t *l, const char *key)
{
    for (int c = 0; c < l->nclients; c++)
        for (size_t i = 0; i < atomic_load(&l->ncmds[c]); i++)
            if (!strcmp(l->cmds[c][i].key, key))
                return &l->cmds[c][i];
    return NULL;
}

/*
 * Once the load stopped, the service commits the end of the commands topic
 * (it may still be finishing the last retries: wait up to 30 s).
 */
static void check_committed_offsets(al_load_t *l)
{
    int64_t committed[MAXPARTS], end[MAXPARTS];
    int parts = 0;
    bool equal = false;
    for (int w = 0; w < 60 && !equal; w++) {
        if (w)
            usleep(500 * 1000);
        parts = wt_command_offsets(l->st, committed, end, MAXPARTS);
        equal = parts > 0;
        for (int p = 0; p < parts; p++) {
            if (committed[p] == RD_KAFKA_OFFSET_INVALID && end[p] == 0)
                committed[p] = 0; /* a partition no command went to: nothing to commit */
            equal = equal && committed[p] == end[p];
        }
    }
    for (int p = 0; p < parts; p++) {
        printf("\n  %saccount.commands [%d]: committed %lld, end %lld", l->st->prefix, p,
               (long long)committed[p], (long long)end[p]);
        CU_ASSERT_EQUAL(committed[p], end[p]);
    }
    CU_ASSERT_TRUE(parts > 0);
}

/* Every record of the commands topic has exactly one outcome (by command id). */
static void check_one_outcome_per_command(al_load_t *l)
{
    size_t ncmd = 0, nout = 0, missing = 0, extra = 0, unmatched = 0, body_mismatch = 0;
    wt_command_t *cs = wt_read_commands(l->st, &ncmd);
    wt_outcome_t *os = wt_read_outcomes(l->st, &nout);
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
static void check_rejections(al_load_t *l, const wt_event_t *evs, size_t n)
{
    size_t nout = 0, rejected = 0, wrong = 0;
    wt_outcome_t *os = wt_read_outcomes(l->st, &nout);
    for (size_t i = 0; i < nout; i++) {
        if (strcmp(os[i].status, "REJECTED") != 0)
            continue;
        rejected++;
        const al_cmd_t *m = find_cmd(l, os[i].command_id);
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

size_t al_check(al_load_t *l)
{
    check_committed_offsets(l);
    size_t n = 0, ok = 0, definite = 0, unknown = 0, retried = 0, total = 0;
    wt_event_t *evs = wt_read_events(l->st, &n);
    size_t *seen = calloc(n + 1, sizeof(*seen));
    for (int c = 0; c < l->nclients; c++)
        for (size_t i = 0; i < atomic_load(&l->ncmds[c]); i++) {
            const al_cmd_t *m = &l->cmds[c][i];
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
    CU_ASSERT_EQUAL(opened, (size_t)l->naccounts);
    check_rejections(l, evs, n);
    check_one_outcome_per_command(l);
    for (int a = 0; a < l->naccounts; a++) {
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
    free(seen);
    free(evs);
    return ok;
}

void al_free(al_load_t *l)
{
    if (!l)
        return;
    al_stop(l);
    for (int c = 0; c < l->nclients; c++)
        free(l->cmds[c]);
    free(l);
}
