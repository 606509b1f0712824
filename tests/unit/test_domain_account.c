/*
 * test_domain_account.c — every rule of the account aggregate, decide then evolve.
 */
#include "account.h"
#include "domaintest.h"
#include "testutil.h"

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

int main(void)
{
    static const es_test_case_t cases[] = {
        {"open, deposit, withdraw", test_open_deposit_withdraw},
        {"account must be open", test_must_be_open},
        {"cannot open twice", test_cannot_open_twice},
        {"balance never below zero", test_balance_never_below_zero},
        {NULL, NULL},
    };
    return es_test_run("domain-account", cases);
}
