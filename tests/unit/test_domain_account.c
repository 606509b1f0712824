/*
 * test_domain_account.c — every rule of the account aggregate, decide then evolve.
 */
#include "account.h"
#include "domaintest.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static const char *open_acct(dh_t *h, const char *owner)
{
    dh_set_string(dh_command(h, "OpenAccount"), "owner", owner);
    return dh_run(h);
}

static const char *money(dh_t *h, const char *type, int64_t amount)
{
    dh_set_long(dh_command(h, type), "amount_cents", amount);
    return dh_run(h);
}

static void test_open_deposit_withdraw(void)
{
    dh_t h;
    dh_init(&h, &es_domain_account);
    account_state_t *a = h.state;
    CU_ASSERT_PTR_NULL(open_acct(&h, "Ada"));
    ES_ASSERT_STR_EQ(dh_event_type(&h, 0), "AccountOpened");
    CU_ASSERT_PTR_NULL(money(&h, "Deposit", 1000));
    ES_ASSERT_STR_EQ(dh_event_type(&h, 0), "Deposited");
    CU_ASSERT_PTR_NULL(money(&h, "Withdraw", 400));
    ES_ASSERT_STR_EQ(dh_event_type(&h, 0), "Withdrawn");
    CU_ASSERT_EQUAL(dh_event_long(&h, 0, "amount_cents"), 400);
    CU_ASSERT_EQUAL(a->balance_cents, 600);
    ES_ASSERT_STR_EQ(a->owner, "Ada");
    dh_free(&h);
}

static void test_must_be_open(void)
{
    dh_t h;
    dh_init(&h, &es_domain_account);
    DH_ASSERT_REJECTED(money(&h, "Deposit", 1), "account_not_open");
    DH_ASSERT_REJECTED(money(&h, "Withdraw", 1), "account_not_open");
    dh_free(&h);
}

static void test_cannot_open_twice(void)
{
    dh_t h;
    dh_init(&h, &es_domain_account);
    CU_ASSERT_PTR_NULL(open_acct(&h, "Ada"));
    DH_ASSERT_REJECTED(open_acct(&h, "Bob"), "account_exists");
    ES_ASSERT_STR_EQ(((account_state_t *)h.state)->owner, "Ada");
    dh_free(&h);
}

static void test_balance_never_below_zero(void)
{
    dh_t h;
    dh_init(&h, &es_domain_account);
    account_state_t *a = h.state;
    CU_ASSERT_PTR_NULL(open_acct(&h, "Ada"));
    CU_ASSERT_PTR_NULL(money(&h, "Deposit", 500));
    DH_ASSERT_REJECTED(money(&h, "Withdraw", 501), "insufficient_funds");
    CU_ASSERT_PTR_NULL(money(&h, "Withdraw", 500)); /* exactly the balance is fine */
    CU_ASSERT_EQUAL(a->balance_cents, 0);
    DH_ASSERT_REJECTED(money(&h, "Withdraw", 1), "insufficient_funds");
    DH_ASSERT_REJECTED(money(&h, "Deposit", 0), "invalid_command");
    DH_ASSERT_REJECTED(money(&h, "Withdraw", -5), "invalid_command");
    CU_ASSERT_EQUAL(a->balance_cents, 0);
    dh_free(&h);
}

/* The owner's edges: empty, and one byte past what the state holds, are refused. */
static void test_owner_edges(void)
{
    dh_t h;
    char owner[sizeof(((account_state_t *)0)->owner) + 1];
    dh_init(&h, &es_domain_account);
    DH_ASSERT_REJECTED(open_acct(&h, ""), "invalid_command");
    memset(owner, 'o', sizeof(owner) - 1);
    owner[sizeof(owner) - 1] = '\0';
    DH_ASSERT_REJECTED(open_acct(&h, owner), "invalid_command");
    owner[sizeof(owner) - 2] = '\0';
    CU_ASSERT_PTR_NULL(open_acct(&h, owner));
    ES_ASSERT_STR_EQ(((account_state_t *)h.state)->owner, owner);
    dh_free(&h);
}

/* Decode @p json (a stored state) onto @p h's state. */
static es_err_t decode(dh_t *h, const char *json)
{
    return es_domain_account.state_decode(h->state, json, strlen(json));
}

/*
 * The stored state, encoded and decoded: a round trip replaces the whole state
 * (nothing of a state decoded onto stays), an owner that does not fit, a field of
 * the wrong type or a document that is not JSON is refused.
 */
static void test_state_round_trip(void)
{
    dh_t h, other;
    es_buf_t b = {0};
    char json[512], owner[sizeof(((account_state_t *)0)->owner) + 1];
    dh_init(&h, &es_domain_account);
    dh_init(&other, &es_domain_account);
    CU_ASSERT_PTR_NULL(open_acct(&h, "Ada"));
    CU_ASSERT_PTR_NULL(money(&h, "Deposit", INT64_MAX));
    CU_ASSERT_PTR_NULL(open_acct(&other, "Bartholomew"));
    CU_ASSERT_PTR_NULL(money(&other, "Deposit", 5));
    es_domain_account.state_encode(h.state, &b);
    CU_ASSERT_EQUAL(es_domain_account.state_decode(other.state, b.data, b.len), ES_ERR_OK);
    CU_ASSERT_EQUAL(memcmp(h.state, other.state, sizeof(account_state_t)), 0);

    memset(owner, 'o', sizeof(owner) - 1);
    owner[sizeof(owner) - 1] = '\0';
    snprintf(json, sizeof(json), "{\"open\":true,\"owner\":\"%s\",\"balance_cents\":1}", owner);
    CU_ASSERT_EQUAL(decode(&other, json), ES_ERR_DECODE);
    owner[sizeof(owner) - 2] = '\0';
    snprintf(json, sizeof(json), "{\"open\":true,\"owner\":\"%s\",\"balance_cents\":1}", owner);
    CU_ASSERT_EQUAL(decode(&other, json), ES_ERR_OK);
    CU_ASSERT_EQUAL(((account_state_t *)other.state)->balance_cents, 1);
    CU_ASSERT_EQUAL(decode(&other, "{\"open\":true,\"owner\":\"a\",\"balance_cents\":\"1\"}"),
                    ES_ERR_DECODE);
    CU_ASSERT_EQUAL(decode(&other, "{\"open\":true"), ES_ERR_DECODE);
    es_buf_free(&b);
    dh_free(&other);
    dh_free(&h);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"open, deposit, withdraw", test_open_deposit_withdraw},
        {"account must be open", test_must_be_open},
        {"cannot open twice", test_cannot_open_twice},
        {"balance never below zero", test_balance_never_below_zero},
        {"the owner's edges", test_owner_edges},
        {"the stored state, encoded and decoded", test_state_round_trip},
        {NULL, NULL},
    };
    return es_test_run("domain-account", cases);
}
