/*
 * shipped.h — the shipped domain modules (examples/cart, examples/account)
 * linked into a test, a fuzz target or a benchmark instead of dlopen'ed:
 * their definitions by symbol (es_domain_cart, es_proj_cart_view, ...) and
 * one call that registers them with the module registry (modules.h), so
 * schema and definition look-ups answer as in the programs.
 */
#ifndef ESCQRS_TEST_SHIPPED_H
#define ESCQRS_TEST_SHIPPED_H

#include "account.h"
#include "cart.h"

/** @brief Register cart and account with es_modules_add(), once; exits 1 on failure. */
void es_shipped_modules_register(void);

#endif
