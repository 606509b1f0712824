/**
 * @file projections.h
 * @brief The shipped projections: cart_view, item_stats, account_balance.
 *
 * Each is an es_proj_def_t (see escqrs/projection.h): pure folds and query
 * handlers, no I/O.  escqrs-projector hosts the ones named in its
 * `projections` configuration key.
 */
#ifndef ESCQRS_PROJECTIONS_H
#define ESCQRS_PROJECTIONS_H

#include "escqrs/projection.h"

extern const es_proj_def_t es_proj_cart_view;
extern const es_proj_def_t es_proj_item_stats;
extern const es_proj_def_t es_proj_account_balance;

/** @brief Every shipped projection, NULL-terminated. */
extern const es_proj_def_t *const es_projections_all[];

/** @brief The shipped projection named @p name, or NULL. */
const es_proj_def_t *es_projections_find(const char *name);

#endif
