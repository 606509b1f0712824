/*
 * account.h — the account module's definitions: the account aggregate (its
 * state, for tests that look inside) and the projection account_balance.
 * The programs never include this: they find everything through the
 * module's entry point (module.c, entry.c); tests link these sources
 * directly (examples/account/CMakeLists.txt).
 */
#ifndef ESCQRS_EXAMPLE_ACCOUNT_H
#define ESCQRS_EXAMPLE_ACCOUNT_H

#include "escqrs/module.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool open;
    char owner[128];
    int64_t balance_cents;
} account_state_t;

extern const es_aggregate_def_t es_domain_account;
extern const es_proj_def_t es_proj_account_balance;

/** The module: aggregate account, projection account_balance, the account schemas. */
extern const es_module_t es_module_account;

#endif
