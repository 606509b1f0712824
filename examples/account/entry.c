/*
 * entry.c — the account module's entry point (the only symbol the shared
 * object exports; module.h).
 */
#include "account.h"

ES_MODULE_DEFINE(es_module_account)
