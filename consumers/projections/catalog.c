/*
 * catalog.c — the list of shipped projections.  A team adding a projection
 * adds its definition here; the projector finds it by name.
 */
#include "projections.h"

#include <string.h>

const es_proj_def_t *const es_projections_all[] = {
    &es_proj_cart_view,
    &es_proj_item_stats,
    &es_proj_account_balance,
    NULL,
};

const es_proj_def_t *es_projections_find(const char *name)
{
    for (size_t i = 0; es_projections_all[i]; i++) {
        if (strcmp(es_projections_all[i]->name, name) == 0)
            return es_projections_all[i];
    }
    return NULL;
}
