/*
 * accountload.h — a write-side workload with a history checker, for tests
 * that break things under load (kill the command service, restart the
 * broker): clients deposit to and withdraw from a few opened accounts
 * through the gateway, each command with its own Idempotency-Key, retrying
 * with the same key on a timeout, 503 or no answer, as the contract tells
 * them to; afterwards the log, the outcomes and the answers must agree
 * exactly (see al_check()).
 */
#ifndef ESCQRS_TEST_ACCOUNTLOAD_H
#define ESCQRS_TEST_ACCOUNTLOAD_H

#include "writetest.h"

#include <stdbool.h>
#include <stdint.h>

/** One client command, its last answer and when. */
typedef struct al_cmd_s {
    char key[200];
    char account[24];
    bool deposit;
    int64_t amount;
    int status;
    int attempts;
    int64_t version;
    char position[48];
    char error[48], reason[48];   /* of the last answer, "" when absent */
    int64_t sent_ms, answered_ms; /* first attempt, last answer (monotonic) */
} al_cmd_t;

typedef struct al_load_s al_load_t;

/** @brief Monotonic milliseconds (the clock of sent_ms and answered_ms). */
int64_t al_now_ms(void);

/**
 * @brief Open @p accounts accounts ("acct-<i>") through @p st's gateway (which
 *        must be ready), then start @p clients clients.
 */
al_load_t *al_start(wt_stack_t *st, int clients, int accounts);
/** @brief Stop the clients after their command in hand. */
void al_stop(al_load_t *l);
/**
 * @brief Commands first sent at or after @p from_ms and accepted before
 *        @p to_ms; *first_ms is when the first 200 came after @p from_ms (-1: none).
 */
size_t al_accepted_between(al_load_t *l, int64_t from_ms, int64_t to_ms, int64_t *first_ms);
/** @brief Commands sent before @p t_ms and answered after it: in flight at a fault. */
size_t al_in_flight_at(al_load_t *l, int64_t t_ms);
/** @brief The balance of every account as folded from the events log, in @p out[accounts]. */
void al_log_balances(al_load_t *l, int64_t *out);

/**
 * @brief The history check, once the load stopped (CUnit assertions):
 *  - the group <prefix>account.command-service has committed the end of
 *    <prefix>account.commands, and every command record has exactly one
 *    outcome (by the `command-id` header; a retried key has as many);
 *  - every 200 has exactly one event, at the answered position and version,
 *    with the command's account, type and amount; no event of an unknown
 *    command; no event for a 4xx; at most one for an unknown outcome;
 *  - the only refusal is 422 insufficient_funds, right by the balance folded
 *    from the log at the version it was decided;
 *  - every account's versions are 1..n and its balance never below zero.
 * Prints the counts; returns how many commands got a 200.
 */
size_t al_check(al_load_t *l);
void al_free(al_load_t *l);

#endif
