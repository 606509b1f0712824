/*
 * inventory.c — the stock of one warehouse item: restock, reserve, release,
 * ship.
 *
 * Invariants decide() keeps, checked in this order for each command:
 *  - a quantity is > 0 and a reservation id 1 to 63 bytes (invalid_command:
 *    the gateway refuses these with 400 already; decide re-checks so no
 *    caller can bypass it);
 *  - restock: the stock on hand stays at most INT32_MAX pieces
 *    (quantity_too_large: pieces are an int32 on the wire, as for a cart
 *    line, and a sum that does not fit is refused, never wrapped);
 *  - reserve: the id is not one of an open or remembered closed reservation
 *    (reservation_exists), the item has fewer than INV_MAX_OPEN open
 *    reservations (too_many_reservations: the state is a fixed-size struct,
 *    like a cart's 256 skus), and the quantity is at most the available
 *    stock, on hand minus reserved (insufficient_stock) — so the stock
 *    reserved never exceeds the stock on hand, and nothing goes below zero;
 *  - release and ship: only an open reservation, once.  A second release or
 *    ship of a remembered one is already_released or already_shipped; an id
 *    never reserved is reservation_not_found.  Releasing gives the units back
 *    to the available stock; shipping takes them off the stock on hand.
 *
 * Bounded state, and what it costs: the INV_MAX_CLOSED most recently closed
 * reservations are remembered, the oldest forgotten first.  The stock rule
 * does not depend on that memory — only an *open* reservation frees or
 * ships units, so no reservation can ever be released twice — but an id
 * closed longer ago than that answers reservation_not_found instead of
 * already_released, and may be reserved again.  Clients that need ids unique
 * for ever use fresh ids (UUIDs), which is what a shop's order lines are.
 *
 * evolve() checks the same arithmetic and consistency (an event that would
 * break the invariant is ES_ERR_STATE, never a wrapped or negative stock),
 * and state_decode() refuses a stored state that breaks it.  Every sum is
 * made with util.h's checked helpers.  Pure: no I/O.
 */
#include "inventory.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ state */

static int find_open(const inventory_state_t *s, const char *id)
{
    for (int i = 0; i < s->nopen; i++)
        if (!strcmp(s->open[i].id, id))
            return i;
    return -1;
}

static int find_closed(const inventory_state_t *s, const char *id)
{
    for (int i = 0; i < s->nclosed; i++)
        if (!strcmp(s->closed[i].id, id))
            return i;
    return -1;
}

static bool valid_id(const char *id)
{
    return *id && strlen(id) < INV_ID_MAX;
}

/* Move open reservation @p i to the closed ones as @p how, forgetting the oldest when full. */
static void close_reservation(inventory_state_t *s, int i, int how)
{
    if (s->nclosed == INV_MAX_CLOSED) {
        memmove(&s->closed[0], &s->closed[1], (INV_MAX_CLOSED - 1) * sizeof(s->closed[0]));
        s->nclosed--;
    }
    inv_closed_t *c = &s->closed[s->nclosed++];
    memcpy(c->id, s->open[i].id, sizeof(c->id)); /* both NUL-terminated arrays of one size */
    c->how = how;
    memmove(&s->open[i], &s->open[i + 1], (size_t)(s->nopen - i - 1) * sizeof(s->open[0]));
    s->nopen--;
}

/* ----------------------------------------------------------------- decide */

static void set_string(avro_value_t *rec, const char *field, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_string(&f, v);
}

static void set_int(avro_value_t *rec, const char *field, int32_t v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_int(&f, v);
}

/* The reason a release or ship of @p id cannot be done, or NULL (*at: the open reservation). */
static const char *check_close(const inventory_state_t *s, const char *id, int *at)
{
    *at = find_open(s, id);
    if (*at >= 0)
        return NULL;
    int c = find_closed(s, id);
    if (c < 0)
        return "reservation_not_found";
    return s->closed[c].how == INV_SHIPPED ? "already_shipped" : "already_released";
}

static const char *inventory_decide(const void *state, const char *type, avro_value_t *cmd,
                                    es_emitter_t *out)
{
    const inventory_state_t *s = state;
    char errstr[128];
    const char *id = NULL;
    int32_t qty = 0, sum;
    avro_value_t *ev;
    int at;

    if (!strcmp(type, "Restock")) {
        if (es_record_int(cmd, "quantity", &qty, errstr, sizeof(errstr)) || qty <= 0)
            return "invalid_command";
        if (!es_add_i32(s->on_hand, qty, &sum))
            return "quantity_too_large";
        if (!(ev = es_emit(out, "Restocked")))
            return "invalid_command"; /* an events schema without the record: not ours */
        set_int(ev, "quantity", qty);
        return NULL;
    }
    if (!strcmp(type, "Reserve")) {
        if (es_record_string(cmd, "reservation_id", &id, NULL, errstr, sizeof(errstr)) ||
            es_record_int(cmd, "quantity", &qty, errstr, sizeof(errstr)) || qty <= 0 ||
            !valid_id(id))
            return "invalid_command";
        if (find_open(s, id) >= 0 || find_closed(s, id) >= 0)
            return "reservation_exists";
        if (s->nopen == INV_MAX_OPEN)
            return "too_many_reservations";
        if (!es_add_i32(s->reserved, qty, &sum) || sum > s->on_hand)
            return "insufficient_stock";
        if (!(ev = es_emit(out, "StockReserved")))
            return "invalid_command";
        set_string(ev, "reservation_id", id);
        set_int(ev, "quantity", qty);
        return NULL;
    }
    bool release = !strcmp(type, "Release");
    if (!release && strcmp(type, "Ship"))
        return "unknown_command";
    if (es_record_string(cmd, "reservation_id", &id, NULL, errstr, sizeof(errstr)) || !valid_id(id))
        return "invalid_command";
    const char *reason = check_close(s, id, &at);
    if (reason)
        return reason;
    if (!(ev = es_emit(out, release ? "ReservationReleased" : "ReservationShipped")))
        return "invalid_command";
    set_string(ev, "reservation_id", id);
    set_int(ev, "quantity", s->open[at].quantity);
    return NULL;
}

/* ----------------------------------------------------------------- evolve */

static es_err_t inventory_evolve(void *state, const char *type, avro_value_t *ev, char *errstr,
                                 size_t errstr_size)
{
    inventory_state_t *s = state;
    const char *id = NULL;
    int32_t qty = 0, sum;
    es_err_t err;

    if (!strcmp(type, "Restocked")) {
        if ((err = es_record_int(ev, "quantity", &qty, errstr, errstr_size)))
            return err;
        if (qty <= 0 || !es_add_i32(s->on_hand, qty, &sum)) {
            snprintf(errstr, errstr_size, "Restocked %d on a stock of %d does not fit", qty,
                     s->on_hand);
            return ES_ERR_STATE;
        }
        s->on_hand = sum;
        return ES_ERR_OK;
    }
    bool reserved = !strcmp(type, "StockReserved");
    bool released = !strcmp(type, "ReservationReleased");
    bool shipped = !strcmp(type, "ReservationShipped");
    if (!reserved && !released && !shipped) {
        snprintf(errstr, errstr_size, "unknown inventory event %s", type);
        return ES_ERR_DECODE;
    }
    if ((err = es_record_string(ev, "reservation_id", &id, NULL, errstr, errstr_size)) ||
        (err = es_record_int(ev, "quantity", &qty, errstr, errstr_size)))
        return err;
    if (reserved) {
        if (qty <= 0 || !valid_id(id) || find_open(s, id) >= 0 || find_closed(s, id) >= 0 ||
            s->nopen == INV_MAX_OPEN || !es_add_i32(s->reserved, qty, &sum) || sum > s->on_hand) {
            snprintf(errstr, errstr_size,
                     "StockReserved %s of %d does not fit (on hand %d, reserved %d, %d open)", id,
                     qty, s->on_hand, s->reserved, s->nopen);
            return ES_ERR_STATE;
        }
        inv_reservation_t *r = &s->open[s->nopen++];
        snprintf(r->id, sizeof(r->id), "%s", id);
        r->quantity = qty;
        s->reserved = sum;
        return ES_ERR_OK;
    }
    int i = find_open(s, id);
    if (i < 0 || s->open[i].quantity != qty) {
        snprintf(errstr, errstr_size, "%s %s of %d: no such open reservation", type, id, qty);
        return ES_ERR_STATE;
    }
    /* reserved >= qty and on_hand >= reserved hold by the invariant: neither goes below 0 */
    s->reserved -= qty;
    if (shipped)
        s->on_hand -= qty;
    close_reservation(s, i, shipped ? INV_SHIPPED : INV_RELEASED);
    return ES_ERR_OK;
}

/* ------------------------------------------------------------ state codec */

/*
 * Compact JSON, readable in a store dump:
 * {"on_hand":10,"reserved":3,"open":[["r1",3]],"closed":[["r0","shipped"]]}
 */
static void inventory_encode(const void *state, es_buf_t *out)
{
    const inventory_state_t *s = state;
    json_t *open = json_array(), *closed = json_array();
    for (int i = 0; i < s->nopen; i++)
        json_array_append_new(open, json_pack("[s, i]", s->open[i].id, s->open[i].quantity));
    for (int i = 0; i < s->nclosed; i++)
        json_array_append_new(closed,
                              json_pack("[s, s]", s->closed[i].id,
                                        s->closed[i].how == INV_SHIPPED ? "shipped" : "released"));
    json_t *j = json_pack("{s:i, s:i, s:o, s:o}", "on_hand", s->on_hand, "reserved", s->reserved,
                          "open", open, "closed", closed);
    char *text = json_dumps(j, JSON_COMPACT);
    es_buf_set(out, text, strlen(text));
    free(text);
    json_decref(j);
}

static bool decode_lists(inventory_state_t *s, json_t *open, json_t *closed)
{
    json_t *it;
    size_t i;
    int32_t sum = 0;
    if (!json_is_array(open) || !json_is_array(closed) || json_array_size(open) > INV_MAX_OPEN ||
        json_array_size(closed) > INV_MAX_CLOSED)
        return false;
    json_array_foreach(open, i, it)
    {
        const char *id;
        json_int_t qty;
        if (json_unpack(it, "[s, I]", &id, &qty) || !valid_id(id) || qty <= 0 || qty > INT32_MAX ||
            find_open(s, id) >= 0 || !es_add_i32(sum, (int32_t)qty, &sum))
            return false;
        snprintf(s->open[i].id, sizeof(s->open[i].id), "%s", id);
        s->open[i].quantity = (int32_t)qty;
        s->nopen++;
    }
    json_array_foreach(closed, i, it)
    {
        const char *id, *how;
        if (json_unpack(it, "[s, s]", &id, &how) || !valid_id(id) || find_open(s, id) >= 0 ||
            find_closed(s, id) >= 0 || (strcmp(how, "shipped") && strcmp(how, "released")))
            return false;
        snprintf(s->closed[i].id, sizeof(s->closed[i].id), "%s", id);
        s->closed[i].how = !strcmp(how, "shipped") ? INV_SHIPPED : INV_RELEASED;
        s->nclosed++;
    }
    return sum == s->reserved;
}

static es_err_t inventory_decode(void *state, const void *data, size_t len)
{
    inventory_state_t *s = state;
    json_t *j = json_loadb(data, len, 0, NULL), *open = NULL, *closed = NULL;
    json_int_t on_hand = 0, reserved = 0;
    memset(s, 0, sizeof(*s));
    bool ok = j &&
              !json_unpack(j, "{s:I, s:I, s:o, s:o}", "on_hand", &on_hand, "reserved", &reserved,
                           "open", &open, "closed", &closed) &&
              on_hand >= 0 && on_hand <= INT32_MAX && reserved >= 0 && reserved <= on_hand;
    if (ok) {
        s->on_hand = (int32_t)on_hand;
        s->reserved = (int32_t)reserved;
        ok = decode_lists(s, open, closed);
    }
    json_decref(j);
    if (!ok) {
        memset(s, 0, sizeof(*s));
        return ES_ERR_DECODE;
    }
    return ES_ERR_OK;
}

/* ------------------------------------------------------------- definition */

static const es_command_def_t inventory_commands[] = {
    {"restock", "Restock", {{"quantity", ES_FIELD_INT, 1, INT32_MAX}}},
    {"reserve",
     "Reserve",
     {{"reservation_id", ES_FIELD_STRING, 1, INV_ID_MAX - 1},
      {"quantity", ES_FIELD_INT, 1, INT32_MAX}}},
    {"release", "Release", {{"reservation_id", ES_FIELD_STRING, 1, INV_ID_MAX - 1}}},
    {"ship", "Ship", {{"reservation_id", ES_FIELD_STRING, 1, INV_ID_MAX - 1}}},
};

const es_aggregate_def_t inventory_aggregate = {
    .name = "inventory",
    .id_field = "item_id",
    .commands_schema = "inventory.commands",
    .events_schema = "inventory.events",
    .state_size = sizeof(inventory_state_t),
    .decide = inventory_decide,
    .evolve = inventory_evolve,
    .state_encode = inventory_encode,
    .state_decode = inventory_decode,
    .collection = "inventory",
    .commands = inventory_commands,
    .ncommands = ES_ARRAY_SIZE(inventory_commands),
};
