/*
 * shipped.c — registers the shipped modules linked into this process (see
 * shipped.h).  Idempotent: a second call finds them registered.
 */
#include "shipped.h"
#include "escqrs/module.h"

#include <stdio.h>
#include <stdlib.h>

void es_shipped_modules_register(void)
{
    static const es_module_t *const shipped[] = {&es_module_cart, &es_module_account};
    char errstr[1024];
    for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
        if (es_module_register(shipped[i], errstr, sizeof(errstr))) {
            fprintf(stderr, "%s\n", errstr);
            exit(1);
        }
    }
}
