/*
 * cart_view.c — a cart's items, quantities, unit prices, total, status and
 * version, answering GET /v1/carts/{id}.
 *
 * One key per cart, "c/<cart_id>", holding a compact big-endian encoding
 * (deterministic, so two folds of the same events are byte-identical):
 *   u32 status (0 open, 1 checked_out), u64 version, u64 total_cents,
 *   u32 n, n × (str sku, u64 quantity, u64 unit_price_cents)
 * Items keep the order they were first added.  The unit price of an item is
 * the one of its latest ItemAdded (what the cart would charge now); the total
 * is recomputed from the items after every event.
 *
 * The fold refuses what the write side never emits — a version that does not
 * grow, a non-positive quantity, removing more than the cart holds, an event
 * after checkout, a quantity past INT32_MAX or a total past INT64_MAX — so a corrupt or duplicated
 * event surfaces as a poison event (DLQ) instead of silently skewing the view.
 */
#include "cart.h"
#include "cart_fold.h"
#include "escqrs/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CV_OPEN           0
#define CV_CHECKED_OUT    1
#define CV_ITEM_MIN_BYTES 20 /* an encoded item: u32 sku length, u64 quantity, u64 price */
#define CV_KEY_PREFIX     "c/"

/* A cart as stored; its lines borrow their skus (cart_fold.h). */
typedef struct {
    uint32_t status; /* CV_OPEN or CV_CHECKED_OUT */
    int64_t version, total;
    cart_lines_t items;
} cv_cart_t;

static void cv_init(cv_cart_t *c)
{
    c->status = CV_OPEN;
    c->version = c->total = 0;
    cart_lines_init(&c->items);
}

/* The cart stored in @p b into @p c (initialised); its lines point into @p b. */
static bool cv_decode(const es_buf_t *b, cv_cart_t *c)
{
    es_cursor_t cur;
    es_cursor_init(&cur, b->data, b->len);
    c->status = es_cursor_be32(&cur);
    c->version = (int64_t)es_cursor_be64(&cur);
    c->total = (int64_t)es_cursor_be64(&cur);
    uint32_t n = es_cursor_be32(&cur);
    if (cur.bad || n > cur.left / CV_ITEM_MIN_BYTES)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        cart_line_t *ln = cart_lines_add(&c->items);
        ln->sku = es_cursor_str(&cur, &ln->skulen);
        ln->qty = (int64_t)es_cursor_be64(&cur);
        ln->price = (int64_t)es_cursor_be64(&cur);
    }
    return !cur.bad;
}

static void cv_encode(const cv_cart_t *c, es_buf_t *b)
{
    size_t size = 24; /* status, version, total, n */
    for (size_t i = 0; i < c->items.n; i++)
        size += CV_ITEM_MIN_BYTES + c->items.lines[i].skulen;
    es_buf_clear(b);
    es_buf_reserve(b, size); /* one allocation, not one per doubling */
    es_buf_put_be32(b, c->status);
    es_buf_put_be64(b, (uint64_t)c->version);
    es_buf_put_be64(b, (uint64_t)c->total);
    es_buf_put_be32(b, (uint32_t)c->items.n);
    for (size_t i = 0; i < c->items.n; i++) {
        const cart_line_t *ln = &c->items.lines[i];
        es_buf_put_str(b, ln->sku, ln->skulen);
        es_buf_put_be64(b, (uint64_t)ln->qty);
        es_buf_put_be64(b, (uint64_t)ln->price);
    }
}

/* The stored cart under @p key into @p cart; an empty cart when there is none. */
static es_err_t cv_load(es_proj_txn_t *txn, const cart_key_t *key, const char *id, size_t idlen,
                        es_buf_t *val, cv_cart_t *cart, char *errstr, size_t errstr_size)
{
    es_err_t err = es_proj_get(txn, key->p, key->len, val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        return ES_ERR_OK;
    if (err)
        return err;
    if (!cv_decode(val, cart)) {
        snprintf(errstr, errstr_size, "stored cart %.*s is corrupt", (int)idlen, id);
        return ES_ERR_STORE;
    }
    return ES_ERR_OK;
}

/* The sku and quantity of an ItemAdded or ItemRemoved payload. */
static es_err_t cv_sku_qty(avro_value_t *payload, const char **sku, size_t *skulen, int32_t *qty,
                           char *errstr, size_t errstr_size)
{
    es_err_t err = es_record_string(payload, "sku", sku, skulen, errstr, errstr_size);
    return err ? err : es_record_int(payload, "quantity", qty, errstr, errstr_size);
}

static es_err_t cv_item_added(cv_cart_t *cart, avro_value_t *payload, char *errstr,
                              size_t errstr_size)
{
    const char *sku;
    size_t skulen;
    int32_t qty;
    int64_t price;
    es_err_t err;
    if ((err = cv_sku_qty(payload, &sku, &skulen, &qty, errstr, errstr_size)) ||
        (err = es_record_long(payload, "unit_price_cents", &price, errstr, errstr_size)))
        return err;
    if (qty <= 0 || price < 0) {
        snprintf(errstr, errstr_size, "ItemAdded with quantity %d, price %lld", qty,
                 (long long)price);
        return ES_ERR_STATE;
    }
    cart_line_t *it = cart_lines_find(&cart->items, sku, skulen);
    if (!it) {
        it = cart_lines_add(&cart->items);
        it->sku = sku; /* the event's: it outlives the fold */
        it->skulen = skulen;
    }
    if (!es_add_i64(it->qty, qty, &it->qty) || it->qty > INT32_MAX) {
        snprintf(errstr, errstr_size, "ItemAdded %d × %.*s: the quantity would pass %d", qty,
                 (int)skulen, sku, INT32_MAX);
        return ES_ERR_STATE;
    }
    it->price = price;
    return ES_ERR_OK;
}

static es_err_t cv_item_removed(cv_cart_t *cart, avro_value_t *payload, char *errstr,
                                size_t errstr_size)
{
    const char *sku;
    size_t skulen;
    int32_t qty;
    es_err_t err;
    if ((err = cv_sku_qty(payload, &sku, &skulen, &qty, errstr, errstr_size)))
        return err;
    cart_line_t *it = cart_lines_find(&cart->items, sku, skulen);
    if (qty <= 0 || !it || it->qty < qty) {
        snprintf(errstr, errstr_size, "ItemRemoved of %d × %.*s: cart holds %lld", qty, (int)skulen,
                 sku, it ? (long long)it->qty : 0LL);
        return ES_ERR_STATE;
    }
    it->qty -= qty;
    if (it->qty == 0)
        cart_lines_remove(&cart->items, it);
    return ES_ERR_OK;
}

/* The sum of quantity × unit price over the items, refused past INT64_MAX. */
static es_err_t cv_total(cv_cart_t *cart, const char *id, size_t idlen, char *errstr,
                         size_t errstr_size)
{
    cart->total = 0;
    for (size_t i = 0; i < cart->items.n; i++) {
        int64_t line;
        if (!es_mul_i64(cart->items.lines[i].qty, cart->items.lines[i].price, &line) ||
            !es_add_i64(cart->total, line, &cart->total)) {
            snprintf(errstr, errstr_size, "cart %.*s: the total passes %lld cents", (int)idlen, id,
                     (long long)INT64_MAX);
            return ES_ERR_STATE;
        }
    }
    return ES_ERR_OK;
}

/* One event of @p type onto @p cart: items, status (the version and total are the caller's). */
static es_err_t cv_apply(cv_cart_t *cart, const char *type, avro_value_t *payload, char *errstr,
                         size_t errstr_size)
{
    if (strcmp(type, "ItemAdded") == 0)
        return cv_item_added(cart, payload, errstr, errstr_size);
    if (strcmp(type, "ItemRemoved") == 0)
        return cv_item_removed(cart, payload, errstr, errstr_size);
    if (strcmp(type, "CartCheckedOut") == 0) {
        cart->status = CV_CHECKED_OUT;
        return ES_ERR_OK;
    }
    snprintf(errstr, errstr_size, "unknown cart event type %s", type);
    return ES_ERR_DECODE;
}

static es_err_t cart_view_fold(int agg_index, const es_proj_event_t *ev, es_proj_txn_t *txn,
                               char *errstr, size_t errstr_size)
{
    avro_value_t payload;
    const char *type, *id;
    size_t idlen;
    int64_t version;
    cart_key_t key;
    es_buf_t val = {0}, out = {0}; /* the stored cart (its lines point into it), the new one */
    cv_cart_t cart;
    es_err_t err;

    key.p = NULL; /* set below (not the whole struct: its stack bytes need no zeroing) */
    cv_init(&cart);
    if ((err = es_record_payload(ev->value, &payload, &type, errstr, errstr_size)) ||
        (err = es_record_string(ev->value, "cart_id", &id, &idlen, errstr, errstr_size)) ||
        (err = es_record_long(ev->value, "version", &version, errstr, errstr_size)))
        goto out;
    cart_key_set(&key, CV_KEY_PREFIX, id, idlen);
    if ((err = cv_load(txn, &key, id, idlen, &val, &cart, errstr, errstr_size)))
        goto out;
    if ((err = cart_event_in_order(id, idlen, type, version, cart.version,
                                   cart.status == CV_CHECKED_OUT, errstr, errstr_size)) ||
        (err = cv_apply(&cart, type, &payload, errstr, errstr_size)))
        goto out;
    cart.version = version;
    if ((err = cv_total(&cart, id, idlen, errstr, errstr_size)))
        goto out;
    cv_encode(&cart, &out);
    es_proj_put(txn, key.p, key.len, out.data, out.len);
out:
    cart_lines_free(&cart.items);
    cart_key_free(&key);
    es_buf_free(&val);
    es_buf_free(&out);
    return err;
}

static int cart_view_get(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body,
                         char *errstr, size_t errstr_size)
{
    const char *id = req->params[0];
    cart_key_t key;
    es_buf_t val = {0};
    cv_cart_t cart;
    int status = 500;

    cv_init(&cart);
    cart_key_set(&key, CV_KEY_PREFIX, id, strlen(id));
    es_err_t err = es_proj_reader_get(rd, key.p, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND) {
        status = 404;
        goto out;
    }
    if (err)
        goto out;
    if (!cv_decode(&val, &cart)) {
        snprintf(errstr, errstr_size, "stored cart %s is corrupt", id);
        goto out;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < cart.items.n; i++) {
        const cart_line_t *ln = &cart.items.lines[i];
        json_array_append_new(items, json_pack("{s:s%, s:I, s:I}", "sku", ln->sku, ln->skulen,
                                               "quantity", (json_int_t)ln->qty, "unit_price_cents",
                                               (json_int_t)ln->price));
    }
    *body = json_pack("{s:s, s:s, s:o, s:I, s:I}", "cart_id", id, "status",
                      cart.status ? "checked_out" : "open", "items", items, "total_cents",
                      (json_int_t)cart.total, "version", (json_int_t)cart.version);
    status = 200;
out:
    cart_lines_free(&cart.items);
    cart_key_free(&key);
    es_buf_free(&val);
    return status;
}

const es_proj_def_t es_proj_cart_view = {
    .name = "cart_view",
    .aggregates = {"cart"},
    .schemas = {"cart.events"},
    .naggregates = 1,
    .fold = cart_view_fold,
    .queries = {{.pattern = "/v1/carts/{id}",
                 .handle = cart_view_get,
                 .aggregate_param = 0,
                 .aggregate_index = 0}},
    .nqueries = 1,
};
