/*
 * deposits.h — deposits sent exactly once, and the check of the whole log
 * against them, for the write side's fault tests (0901, 0908).
 *
 * A client that never retries cannot hide a lost command behind a retry:
 * every deposit is posted once, from a thread of its own, and its answer is
 * recorded, whatever it is (a test that wants a retry asks for one, dp_retry(),
 * after the fact).  Deposits to an opened account cannot be
 * refused, so afterwards every command in the log must have been accepted
 * exactly once, answered or not.  The check reads the topics back
 * (writetest.c); nothing here uses the code under test to compute what it
 * expects.
 */
#ifndef ESCQRS_TEST_DEPOSITS_H
#define ESCQRS_TEST_DEPOSITS_H

#include "writetest.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** One deposit, sent once, and its answer. */
typedef struct dp_sent_s {
    char key[160]; /* Idempotency-Key, which is the command id */
    char account[32];
    int64_t amount;
    int status;      /* 0 when no answer came */
    int64_t version; /* the aggregate version a 200 named, else -1 */
    double seconds;  /* from sending to the answer */
    bool retry;      /* the same deposit (key, account, amount) posted again */
} dp_sent_t;

typedef struct dp_load_s {
    wt_stack_t *st;
    int accounts; /* "acct-0" ... */
    dp_sent_t *sent;
    size_t nsent, cap;
} dp_load_t;

/**
 * @brief Start @p st's command service (with @p ncs extra `--set`s in
 *        @p cs_sets) and a gateway whose requests give up after 3 s
 *        (request.timeout.ms=3000: a command nobody decides is answered 504
 *        soon), wait until both are ready, open @p accounts accounts (each
 *        must answer 200) and get ready to send at most @p cap deposits.
 *        @p st is wt_stack_init()'s, aggregate "account".
 */
void dp_start(dp_load_t *l, wt_stack_t *st, const char *const *cs_sets, size_t ncs, int accounts,
              size_t cap);
/**
 * @brief Post @p n deposits at once (round robin over the accounts, amounts
 *        100 + their rank), each exactly once; @p tag goes into the keys.
 * @returns the first of them (the next @p n of l->sent).
 */
dp_sent_t *dp_burst(dp_load_t *l, const char *tag, size_t n);

/**
 * @brief Post again, at once, each of the @p n deposits from l->sent[@p first]
 *        (same key, account and amount): a client's retry, recorded after the
 *        others with retry set.  @returns the first retry.
 */
dp_sent_t *dp_retry(dp_load_t *l, size_t first, size_t n);
/** What the check counted (each must be 0 but commands). */
typedef struct dp_check_s {
    size_t commands;        /* records in <agg>.commands */
    size_t dropped;         /* command records without an outcome of their own */
    size_t doubled;         /* outcomes past one per record of their command id */
    size_t not_accepted;    /* outcomes other than ACCEPTED */
    size_t event_count_off; /* commands or deposits without exactly one event */
    size_t wrong_event;     /* a deposit's event of another type, amount or account */
    size_t wrong_version;   /* a 200 naming another version than its event's */
} dp_check_t;

/**
 * @brief The history check, once the deposits are sent and the command
 *        service runs (CUnit assertions): the group commits the end of
 *        <agg>.commands within 60 s,
 *        which holds the openings and every deposit sent, retries included;
 *        every command record has one outcome of its own (a retry's repeats the
 *        first), ACCEPTED, and every command id exactly one event; every
 *        deposit's event is a Deposited of its account and amount, of the
 *        version a 200 named; every account's versions are 1..n and its balance
 *        the sum of the deposits sent to it, each counted once.
 */
void dp_check(dp_load_t *l, dp_check_t *c);
/**
 * @brief Account @p id of @p st holds @p cents in the command service's
 *        state (CUnit assertions): withdrawing them is accepted (200),
 *        withdrawing 1 more is refused (422).  Two commands of their own.
 */
void dp_assert_balance(const wt_stack_t *st, const char *id, int64_t cents);
/**
 * @brief Every account holds the sum of the deposits sent to it
 *        (dp_assert_balance()).  After dp_check(), which counts every
 *        command as a deposit or an opening.
 */
void dp_assert_balances(const dp_load_t *l);
void dp_free(dp_load_t *l);

#endif
