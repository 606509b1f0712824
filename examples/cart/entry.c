/*
 * entry.c — the cart module's entry point (the only symbol the shared object
 * exports; module.h).
 */
#include "cart.h"

ES_MODULE_DEFINE(es_module_cart)
