/*
 * account.c — the account aggregate: open, deposit, withdraw.
 *
 * Invariants decide() keeps: an account is opened once (account_exists),
 * nothing but opening is accepted before that (account_not_open), the
 * balance never goes below zero (insufficient_funds) and never above
 * INT64_MAX cents (amount_too_large: a deposit that would not fit is
 * refused, never wrapped).  evolve() checks the same arithmetic, so an event
 * that would overflow (forged, or from a buggy writer) is an error, not a
 * wrapped balance.  Because the command
 * service is the single writer of each aggregate's partition, deciding on
 * the current state is enough: parallel withdrawals cannot both pass.
 */
#include "account.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *account_decide(const void *state, const char *type, avro_value_t *cmd,
                                  es_emitter_t *out)
{
    const account_state_t *a = state;
    char errstr[128];
    const char *owner = NULL;
    int64_t amount = 0;
    avro_value_t f, *ev;

    if (!strcmp(type, "OpenAccount")) {
        if (a->open)
            return "account_exists";
        if (es_record_string(cmd, "owner", &owner, NULL, errstr, sizeof(errstr)) || !*owner ||
            strlen(owner) >= sizeof(a->owner))
            return "invalid_command";
        ev = es_emit(out, "AccountOpened");
        avro_value_get_by_name(ev, "owner", &f, NULL);
        avro_value_set_string(&f, owner);
        return NULL;
    }
    bool deposit = !strcmp(type, "Deposit");
    if (!deposit && strcmp(type, "Withdraw"))
        return "unknown_command";
    if (!a->open)
        return "account_not_open";
    if (es_record_long(cmd, "amount_cents", &amount, errstr, sizeof(errstr)) || amount <= 0)
        return "invalid_command";
    if (!deposit && amount > a->balance_cents)
        return "insufficient_funds";
    int64_t after;
    if (deposit && !es_add_i64(a->balance_cents, amount, &after))
        return "amount_too_large";
    ev = es_emit(out, deposit ? "Deposited" : "Withdrawn");
    avro_value_get_by_name(ev, "amount_cents", &f, NULL);
    avro_value_set_long(&f, amount);
    return NULL;
}

static es_err_t account_evolve(void *state, const char *type, avro_value_t *ev, char *errstr,
                               size_t errstr_size)
{
    account_state_t *a = state;
    const char *owner = NULL;
    int64_t amount = 0;
    es_err_t err;

    if (!strcmp(type, "AccountOpened")) {
        if ((err = es_record_string(ev, "owner", &owner, NULL, errstr, errstr_size)))
            return err;
        a->open = true;
        snprintf(a->owner, sizeof(a->owner), "%s", owner);
        return ES_ERR_OK;
    }
    if (strcmp(type, "Deposited") && strcmp(type, "Withdrawn")) {
        snprintf(errstr, errstr_size, "unknown account event %s", type);
        return ES_ERR_DECODE;
    }
    if ((err = es_record_long(ev, "amount_cents", &amount, errstr, errstr_size)))
        return err;
    int64_t after;
    bool fits = !strcmp(type, "Deposited") ? es_add_i64(a->balance_cents, amount, &after)
                                           : es_sub_i64(a->balance_cents, amount, &after);
    if (amount <= 0 || !fits || after < 0) {
        snprintf(errstr, errstr_size, "%s of %lld on a balance of %lld does not fit", type,
                 (long long)amount, (long long)a->balance_cents);
        return ES_ERR_STATE;
    }
    a->balance_cents = after;
    return ES_ERR_OK;
}

static void account_encode(const void *state, es_buf_t *out)
{
    const account_state_t *a = state;
    json_t *j = json_pack("{s:b, s:s, s:I}", "open", a->open, "owner", a->owner, "balance_cents",
                          (json_int_t)a->balance_cents);
    char *s = json_dumps(j, JSON_COMPACT);
    es_buf_set(out, s, strlen(s));
    free(s);
    json_decref(j);
}

static es_err_t account_decode(void *state, const void *data, size_t len)
{
    account_state_t *a = state;
    json_t *j = json_loadb(data, len, 0, NULL);
    int open = 0;
    const char *owner = NULL;
    json_int_t balance = 0;
    memset(a, 0, sizeof(*a));
    if (!j ||
        json_unpack(j, "{s:b, s:s, s:I}", "open", &open, "owner", &owner, "balance_cents",
                    &balance) ||
        strlen(owner) >= sizeof(a->owner)) {
        json_decref(j);
        return ES_ERR_DECODE;
    }
    a->open = open;
    snprintf(a->owner, sizeof(a->owner), "%s", owner);
    a->balance_cents = balance;
    json_decref(j);
    return ES_ERR_OK;
}

static const es_command_def_t account_commands[] = {
    {"open",
     "OpenAccount",
     {{"owner", ES_FIELD_STRING, 1, sizeof(((account_state_t *)0)->owner) - 1}}},
    {"deposit", "Deposit", {{"amount_cents", ES_FIELD_INT, 1, INT64_MAX}}},
    {"withdraw", "Withdraw", {{"amount_cents", ES_FIELD_INT, 1, INT64_MAX}}},
};

const es_aggregate_def_t es_domain_account = {
    .name = "account",
    .id_field = "account_id",
    .commands_schema = "account.commands",
    .events_schema = "account.events",
    .state_size = sizeof(account_state_t),
    .decide = account_decide,
    .evolve = account_evolve,
    .state_encode = account_encode,
    .state_decode = account_decode,
    .collection = "accounts",
    .commands = account_commands,
    .ncommands = sizeof(account_commands) / sizeof(account_commands[0]),
};
