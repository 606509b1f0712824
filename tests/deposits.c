/*
 * deposits.c — see deposits.h.
 */
#include "deposits.h"

#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dp_start(dp_load_t *l, wt_stack_t *st, const char *const *cs_sets, size_t ncs, int accounts,
              size_t cap)
{
    const char *gw_sets[] = {"request.timeout.ms=3000"};
    wt_start_service(st, cs_sets, ncs);
    wt_start_gateway(st, gw_sets, 1);
    wt_wait_ready(&st->cs, 60);
    wt_wait_ready(&st->gw, 60);
    memset(l, 0, sizeof(*l));
    l->st = st;
    l->accounts = accounts;
    l->cap = cap;
    l->sent = calloc(cap, sizeof(*l->sent));
    CU_ASSERT_PTR_NOT_NULL_FATAL(l->sent);
    for (int a = 0; a < accounts; a++) {
        char path[64];
        json_t *j = NULL;
        snprintf(path, sizeof(path), "/v1/accounts/acct-%d/open", a);
        int status = wt_post(&st->gw, path, "{\"owner\":\"o\"}", 13, NULL, NULL, &j);
        if (status != 200) {
            char *text = j ? json_dumps(j, 0) : NULL;
            fprintf(stderr, "open acct-%d: %d %s\n", a, status, text ? text : "");
            free(text);
        }
        json_decref(j);
        CU_ASSERT_EQUAL_FATAL(status, 200);
    }
}

typedef struct {
    const wt_stack_t *st;
    dp_sent_t *s;
} send_arg_t;

static void *send_one(void *arg)
{
    send_arg_t *a = arg;
    dp_sent_t *s = a->s;
    char path[96], body[64];
    snprintf(path, sizeof(path), "/v1/accounts/%s/deposit", s->account);
    snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)s->amount);
    json_t *out = NULL;
    double t0 = es_mono_s();
    s->status = wt_post(&a->st->gw, path, body, strlen(body), s->key, NULL, &out); /* once */
    s->seconds = es_mono_s() - t0;
    json_t *v = json_object_get(out, "version");
    s->version = s->status == 200 && json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(out);
    return NULL;
}

/* Post every one of @p n deposits from @p first at once, each from a thread of its own. */
static void post_all(const dp_load_t *l, dp_sent_t *first, size_t n)
{
    pthread_t *th = calloc(n, sizeof(*th));
    send_arg_t *args = calloc(n, sizeof(*args));
    CU_ASSERT_FATAL(th && args);
    for (size_t i = 0; i < n; i++) {
        args[i] = (send_arg_t){l->st, &first[i]};
        pthread_create(&th[i], NULL, send_one, &args[i]);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(args);
}

dp_sent_t *dp_burst(dp_load_t *l, const char *tag, size_t n)
{
    CU_ASSERT_FATAL(l->nsent + n <= l->cap);
    dp_sent_t *first = &l->sent[l->nsent];
    for (size_t i = 0; i < n; i++) {
        dp_sent_t *s = &l->sent[l->nsent++];
        snprintf(s->key, sizeof(s->key), "%s%s-%zu", l->st->prefix, tag, l->nsent);
        snprintf(s->account, sizeof(s->account), "acct-%zu", l->nsent % (size_t)l->accounts);
        s->amount = 100 + (int64_t)l->nsent;
    }
    post_all(l, first, n);
    return first;
}

dp_sent_t *dp_retry(dp_load_t *l, size_t first, size_t n)
{
    CU_ASSERT_FATAL(first + n <= l->nsent && l->nsent + n <= l->cap);
    dp_sent_t *retries = &l->sent[l->nsent];
    for (size_t i = 0; i < n; i++) {
        dp_sent_t *s = &l->sent[l->nsent++];
        *s = l->sent[first + i];
        s->retry = true;
        s->status = 0;
    }
    post_all(l, retries, n);
    return retries;
}

/* Outcomes and events of each command in the log: a retry is a record of the same id,
 * answered again by an outcome of its own, with no event of its own. */
static void check_commands(const wt_command_t *cmds, size_t ncmd, const wt_outcome_t *outs,
                           size_t nout, const wt_event_t *evs, size_t nev, dp_check_t *c)
{
    for (size_t i = 0; i < ncmd; i++) {
        size_t o = 0, e = 0, same = 0;
        for (size_t k = 0; k < ncmd; k++)
            same += !strcmp(cmds[k].command_id, cmds[i].command_id);
        for (size_t k = 0; k < nout; k++)
            if (!strcmp(outs[k].command_id, cmds[i].command_id)) {
                o++;
                if (strcmp(outs[k].status, "ACCEPTED")) {
                    fprintf(stderr, "command %s: %s %s\n", cmds[i].command_id, outs[k].status,
                            outs[k].reason);
                    c->not_accepted++;
                }
            }
        for (size_t k = 0; k < nev; k++)
            e += !strcmp(evs[k].command_id, cmds[i].command_id);
        c->dropped += o < same;
        c->doubled += o > same;
        c->event_count_off += e != 1;
    }
}

/* Every deposit sent is in the log once, with its account and amount, and at the
 * version its 200 named (a retry's too: the first answer, repeated). */
static void check_deposits(const dp_load_t *l, const wt_event_t *evs, size_t nev, dp_check_t *c)
{
    for (size_t i = 0; i < l->nsent; i++) {
        const dp_sent_t *s = &l->sent[i];
        size_t found = 0;
        for (size_t k = 0; k < nev; k++)
            if (!strcmp(evs[k].command_id, s->key)) {
                found++;
                c->wrong_event += strcmp(evs[k].type, "Deposited") || evs[k].amount != s->amount ||
                                  strcmp(evs[k].agg_id, s->account);
                if (s->version >= 0 && evs[k].version != s->version) {
                    fprintf(stderr, "deposit %s%s answered version %lld, its event is %lld\n",
                            s->key, s->retry ? " (retry)" : "", (long long)s->version,
                            (long long)evs[k].version);
                    c->wrong_version++;
                }
            }
        if (found != 1)
            fprintf(stderr, "deposit %s (answered %d) has %zu event(s)\n", s->key, s->status,
                    found);
        c->event_count_off += found != 1;
    }
}

/* The sum of the deposits sent to account @p id, each once. */
static int64_t sent_to(const dp_load_t *l, const char *id)
{
    int64_t sum = 0;
    for (size_t i = 0; i < l->nsent; i++)
        if (!l->sent[i].retry && !strcmp(l->sent[i].account, id))
            sum += l->sent[i].amount;
    return sum;
}

/* Each account's versions are 1..n and its balance the sum of what was sent to it. */
static void check_balances(const dp_load_t *l, const wt_event_t *evs, size_t nev)
{
    for (int a = 0; a < l->accounts; a++) {
        char id[16];
        int64_t version = 0, balance = 0;
        bool gapless = true;
        snprintf(id, sizeof(id), "acct-%d", a);
        for (size_t k = 0; k < nev; k++)
            if (!strcmp(evs[k].agg_id, id)) {
                gapless &= evs[k].version == ++version;
                balance += evs[k].amount;
            }
        int64_t expected = sent_to(l, id);
        if (!gapless || balance != expected)
            fprintf(stderr, "%s: versions %s, balance %lld, deposits sent %lld\n", id,
                    gapless ? "1..n" : "with a gap", (long long)balance, (long long)expected);
        CU_ASSERT(gapless);
        CU_ASSERT_EQUAL(balance, expected);
    }
}

void dp_check(dp_load_t *l, dp_check_t *c)
{
    char why[512];
    memset(c, 0, sizeof(*c));
    bool at_end = wt_wait_group_at_end(l->st, 60, why, sizeof(why));
    if (!at_end)
        fprintf(stderr, "group not at the end of the commands topic: %s\n", why);
    CU_ASSERT(at_end);
    size_t ncmd = 0, nout = 0, nev = 0;
    wt_command_t *cmds = wt_read_commands(l->st, &ncmd);
    wt_outcome_t *outs = wt_read_outcomes(l->st, &nout);
    wt_event_t *evs = wt_read_events(l->st, &nev);
    c->commands = ncmd;
    check_commands(cmds, ncmd, outs, nout, evs, nev, c);
    check_deposits(l, evs, nev, c);
    check_balances(l, evs, nev);
    CU_ASSERT_EQUAL(ncmd, l->nsent + (size_t)l->accounts);
    CU_ASSERT_EQUAL(c->dropped, 0);
    CU_ASSERT_EQUAL(c->doubled, 0);
    CU_ASSERT_EQUAL(c->not_accepted, 0);
    CU_ASSERT_EQUAL(c->event_count_off, 0);
    CU_ASSERT_EQUAL(c->wrong_event, 0);
    CU_ASSERT_EQUAL(c->wrong_version, 0);
    free(cmds);
    free(outs);
    free(evs);
}

/* Withdraw @p cents from account @p id once, with Idempotency-Key <prefix><id>-<suffix>; the
 * status, and the rejection's reason or the version into @p said. */
static int withdraw(const wt_stack_t *st, const char *id, const char *suffix, int64_t cents,
                    char *said, size_t saidsz)
{
    char path[96], body[64], key[200];
    json_t *out = NULL;
    snprintf(path, sizeof(path), "/v1/accounts/%s/withdraw", id);
    snprintf(body, sizeof(body), "{\"amount_cents\":%lld}", (long long)cents);
    snprintf(key, sizeof(key), "%s%s-%s", st->prefix, id, suffix);
    int status = wt_post(&st->gw, path, body, strlen(body), key, NULL, &out);
    json_t *reason = json_object_get(out, "reason");
    if (json_is_string(reason))
        snprintf(said, saidsz, "reason=%s", json_string_value(reason));
    else
        snprintf(said, saidsz, "version=%lld",
                 (long long)json_integer_value(json_object_get(out, "version")));
    json_decref(out);
    return status;
}

void dp_assert_balance(const wt_stack_t *st, const char *id, int64_t cents)
{
    char all_said[300], more_said[300];
    int all = withdraw(st, id, "all", cents, all_said, sizeof(all_said));
    int more = withdraw(st, id, "more", 1, more_said, sizeof(more_said));
    printf("  RESULT withdrawals of %s's %lld and of 1 more: %d %s, %d %s\n", id, (long long)cents,
           all, all_said, more, more_said);
    CU_ASSERT_EQUAL(all, 200);
    CU_ASSERT_EQUAL(more, 422);
}

void dp_assert_balances(const dp_load_t *l)
{
    for (int a = 0; a < l->accounts; a++) {
        char id[16];
        snprintf(id, sizeof(id), "acct-%d", a);
        dp_assert_balance(l->st, id, sent_to(l, id));
    }
}

void dp_free(dp_load_t *l)
{
    free(l->sent);
    memset(l, 0, sizeof(*l));
}
