/*
 * inventory.h — the inventory module: the stock of one warehouse item
 * (aggregate "inventory", id field "item_id", HTTP collection "inventory")
 * and its stock_view projection.
 *
 * Written as a team writes a domain out of tree: it includes only the SDK's
 * pure headers (aggregate.h, projection.h, module.h, util.h) and the module
 * is one es_module_t (module.c).  The state struct is public so the unit
 * tests can look at it; nothing else outside the module needs it.
 */
#ifndef INVENTORY_H
#define INVENTORY_H

#include "escqrs/aggregate.h"
#include "escqrs/module.h"
#include "escqrs/projection.h"

#include <stdbool.h>
#include <stdint.h>

#define INV_MAX_OPEN   256 /* open reservations of one item; more is too_many_reservations */
#define INV_MAX_CLOSED 256 /* closed reservations remembered (the newest), for their answers */
#define INV_ID_MAX     64  /* a reservation id: 1 to INV_ID_MAX - 1 bytes */

/* How a closed reservation ended. */
#define INV_RELEASED 1
#define INV_SHIPPED  2

typedef struct {
    char id[INV_ID_MAX];
    int32_t quantity; /* > 0 */
} inv_reservation_t;

typedef struct {
    char id[INV_ID_MAX];
    int how; /* INV_RELEASED or INV_SHIPPED */
} inv_closed_t;

/*
 * The state of one item.  Invariant (decide keeps it, evolve and
 * state_decode check it): 0 <= reserved <= on_hand <= INT32_MAX, reserved is
 * the sum of the open reservations' quantities, ids are unique among open
 * and remembered closed reservations.
 */
typedef struct {
    int32_t on_hand;  /* units in the warehouse, reserved ones included */
    int32_t reserved; /* units set aside by the open reservations */
    int nopen;
    inv_reservation_t open[INV_MAX_OPEN]; /* in the order they were made */
    int nclosed;
    inv_closed_t closed[INV_MAX_CLOSED]; /* oldest first; the oldest is forgotten when full */
} inventory_state_t;

extern const es_aggregate_def_t inventory_aggregate;
extern const es_proj_def_t inventory_stock_view;
/* The module's schemas: generated from the .avsc files of schemas/ by the build (see
 * CMakeLists.txt). */
extern const es_module_schema_t inventory_schemas[];
/* The module (src/module.c); its unit tests register it with es_module_register(). */
extern const es_module_t inventory_module;

#endif
