/*
 * shipped.c — registers the shipped modules linked into this process (see
 * shipped.h).  Idempotent: a second call finds them registered.
 */
#include "shipped.h"
#include "escqrs/modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void es_shipped_modules_register(void)
{
    static const es_module_t *const shipped[] = {&es_module_cart, &es_module_account};
    char errstr[1024];
    for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
        bool present = false;
        for (size_t m = 0; m < es_modules_count(); m++)
            present |= es_modules_at(m, NULL) == shipped[i];
        if (!present && es_modules_add(shipped[i], "linked in", errstr, sizeof(errstr))) {
            fprintf(stderr, "%s\n", errstr);
            exit(1);
        }
    }
}
