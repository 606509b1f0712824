/*
 * stock_view.c — an item's stock on hand, reserved and available, its open
 * reservations and version, answering GET /v1/inventory/{id}.
 *
 * One key per item, "i/<item_id>", holding a compact big-endian encoding
 * (deterministic, so two folds of the same events are byte-identical and a
 * rebuild's digest matches):
 *   u64 version, u32 on_hand, u32 reserved, u32 n, n × (str reservation_id,
 *   u32 quantity)
 * Open reservations keep the order they were made in; a released or shipped
 * one leaves the view (the events topic keeps its history).
 *
 * The fold refuses what the write side never emits — a version that does not
 * grow, a quantity <= 0, a stock on hand past INT32_MAX (checked addition,
 * never wrapped), a reservation beyond the available stock or past
 * INV_MAX_OPEN open ones, an id reserved twice, releasing or shipping a
 * reservation that is not open or with another quantity — so a corrupt or
 * duplicated event surfaces as a poison event (DLQ) instead of skewing the
 * view.  Pure: no I/O.
 */
#include "inventory.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SV_RES_MIN_BYTES 8 /* an encoded reservation: u32 id length, u32 quantity */

typedef struct {
    char *id;
    size_t idlen;
    int32_t qty;
} sv_res_t;

typedef struct {
    int64_t version;
    int32_t on_hand, reserved;
    sv_res_t *res;
    size_t n;
} sv_item_t;

static void sv_free(sv_item_t *it)
{
    for (size_t i = 0; i < it->n; i++)
        free(it->res[i].id);
    free(it->res);
    memset(it, 0, sizeof(*it));
}

/* Decode and check the invariant of a stored item: false when corrupt. */
static bool sv_decode(const es_buf_t *b, sv_item_t *it)
{
    es_cursor_t cur;
    int32_t sum = 0;
    memset(it, 0, sizeof(*it));
    es_cursor_init(&cur, b->data, b->len);
    it->version = (int64_t)es_cursor_be64(&cur);
    uint32_t on_hand = es_cursor_be32(&cur), reserved = es_cursor_be32(&cur);
    uint32_t n = es_cursor_be32(&cur);
    if (cur.bad || on_hand > INT32_MAX || reserved > on_hand || n > INV_MAX_OPEN ||
        n > cur.left / SV_RES_MIN_BYTES)
        return false;
    it->on_hand = (int32_t)on_hand;
    it->reserved = (int32_t)reserved;
    it->res = es_calloc(n ? n : 1, sizeof(*it->res));
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *s = es_cursor_str(&cur, &len);
        uint32_t q = es_cursor_be32(&cur);
        it->res[i].id = es_strndup(s, len);
        it->res[i].idlen = len;
        it->res[i].qty = (int32_t)q;
        it->n++;
        if (q == 0 || q > INT32_MAX || !es_add_i32(sum, (int32_t)q, &sum))
            return false;
    }
    return !cur.bad && cur.left == 0 && sum == it->reserved;
}

static void sv_encode(const sv_item_t *it, es_buf_t *b)
{
    es_buf_clear(b);
    es_buf_put_be64(b, (uint64_t)it->version);
    es_buf_put_be32(b, (uint32_t)it->on_hand);
    es_buf_put_be32(b, (uint32_t)it->reserved);
    es_buf_put_be32(b, (uint32_t)it->n);
    for (size_t i = 0; i < it->n; i++) {
        es_buf_put_str(b, it->res[i].id, it->res[i].idlen);
        es_buf_put_be32(b, (uint32_t)it->res[i].qty);
    }
}

static void sv_key(es_buf_t *k, const char *id, size_t idlen)
{
    es_buf_set(k, "i/", 2);
    es_buf_append(k, id, idlen);
}

static sv_res_t *sv_find(sv_item_t *it, const char *id, size_t len)
{
    for (size_t i = 0; i < it->n; i++)
        if (it->res[i].idlen == len && !memcmp(it->res[i].id, id, len))
            return &it->res[i];
    return NULL;
}

/* The stored item under @p key into @p it; an empty item (version 0) when there is none. */
static es_err_t sv_load(es_proj_txn_t *txn, const es_buf_t *key, const char *id, size_t idlen,
                        es_buf_t *val, sv_item_t *it, char *errstr, size_t errstr_size)
{
    es_err_t err = es_proj_get(txn, key->data, key->len, val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        return ES_ERR_OK;
    if (err)
        return err;
    if (!sv_decode(val, it)) {
        snprintf(errstr, errstr_size, "stored item %.*s is corrupt", (int)idlen, id);
        return ES_ERR_STORE;
    }
    return ES_ERR_OK;
}

static es_err_t sv_restocked(sv_item_t *it, avro_value_t *payload, char *errstr, size_t errstr_size)
{
    int32_t qty, sum;
    es_err_t err = es_record_int(payload, "quantity", &qty, errstr, errstr_size);
    if (err)
        return err;
    if (qty <= 0 || !es_add_i32(it->on_hand, qty, &sum)) {
        snprintf(errstr, errstr_size, "Restocked %d on a stock of %d: not a quantity that fits",
                 qty, it->on_hand);
        return ES_ERR_STATE;
    }
    it->on_hand = sum;
    return ES_ERR_OK;
}

static es_err_t sv_reserved(sv_item_t *it, const char *rid, size_t ridlen, int32_t qty,
                            char *errstr, size_t errstr_size)
{
    int32_t sum;
    if (qty <= 0 || ridlen == 0 || ridlen >= INV_ID_MAX || sv_find(it, rid, ridlen) ||
        it->n == INV_MAX_OPEN || !es_add_i32(it->reserved, qty, &sum) || sum > it->on_hand) {
        snprintf(errstr, errstr_size,
                 "StockReserved %.*s of %d: does not fit (on hand %d, reserved %d, %zu open)",
                 (int)ridlen, rid, qty, it->on_hand, it->reserved, it->n);
        return ES_ERR_STATE;
    }
    it->res = es_realloc(it->res, (it->n + 1) * sizeof(*it->res));
    it->res[it->n].id = es_strndup(rid, ridlen);
    it->res[it->n].idlen = ridlen;
    it->res[it->n].qty = qty;
    it->n++;
    it->reserved = sum;
    return ES_ERR_OK;
}

static es_err_t sv_closed(sv_item_t *it, const char *type, const char *rid, size_t ridlen,
                          int32_t qty, bool shipped, char *errstr, size_t errstr_size)
{
    sv_res_t *r = sv_find(it, rid, ridlen);
    if (!r || r->qty != qty) {
        snprintf(errstr, errstr_size, "%s %.*s of %d: no such open reservation", type, (int)ridlen,
                 rid, qty);
        return ES_ERR_STATE;
    }
    /* reserved >= qty and on_hand >= reserved hold (sv_decode checks them): no underflow */
    it->reserved -= qty;
    if (shipped)
        it->on_hand -= qty;
    size_t at = (size_t)(r - it->res);
    free(r->id);
    memmove(r, r + 1, (it->n - at - 1) * sizeof(*r));
    it->n--;
    return ES_ERR_OK;
}

/* One event of @p type onto @p it (the version is the caller's). */
static es_err_t sv_apply(sv_item_t *it, const char *type, avro_value_t *payload, char *errstr,
                         size_t errstr_size)
{
    const char *rid;
    size_t ridlen;
    int32_t qty;
    es_err_t err;

    if (!strcmp(type, "Restocked"))
        return sv_restocked(it, payload, errstr, errstr_size);
    bool reserved = !strcmp(type, "StockReserved");
    bool released = !strcmp(type, "ReservationReleased");
    bool shipped = !strcmp(type, "ReservationShipped");
    if (!reserved && !released && !shipped) {
        snprintf(errstr, errstr_size, "unknown inventory event type %s", type);
        return ES_ERR_DECODE;
    }
    if ((err = es_record_string(payload, "reservation_id", &rid, &ridlen, errstr, errstr_size)) ||
        (err = es_record_int(payload, "quantity", &qty, errstr, errstr_size)))
        return err;
    if (reserved)
        return sv_reserved(it, rid, ridlen, qty, errstr, errstr_size);
    return sv_closed(it, type, rid, ridlen, qty, shipped, errstr, errstr_size);
}

static es_err_t stock_view_fold(int agg_index, const es_proj_event_t *ev, es_proj_txn_t *txn,
                                char *errstr, size_t errstr_size)
{
    avro_value_t payload;
    const char *type, *id;
    size_t idlen;
    int64_t version;
    es_buf_t key = {0}, val = {0};
    sv_item_t it = {0};
    es_err_t err;

    if ((err = es_record_payload(ev->value, &payload, &type, errstr, errstr_size)) ||
        (err = es_record_string(ev->value, "item_id", &id, &idlen, errstr, errstr_size)) ||
        (err = es_record_long(ev->value, "version", &version, errstr, errstr_size)))
        goto out;
    sv_key(&key, id, idlen);
    if ((err = sv_load(txn, &key, id, idlen, &val, &it, errstr, errstr_size)))
        goto out;
    if (version <= it.version) {
        snprintf(errstr, errstr_size, "item %.*s: event version %lld not after %lld", (int)idlen,
                 id, (long long)version, (long long)it.version);
        err = ES_ERR_STATE;
        goto out;
    }
    if ((err = sv_apply(&it, type, &payload, errstr, errstr_size)))
        goto out;
    it.version = version;
    sv_encode(&it, &val);
    es_proj_put(txn, key.data, key.len, val.data, val.len);
out:
    sv_free(&it);
    es_buf_free(&key);
    es_buf_free(&val);
    return err;
}

static int stock_view_get(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body,
                          char *errstr, size_t errstr_size)
{
    const char *id = req->params[0];
    es_buf_t key = {0}, val = {0};
    sv_item_t it = {0};
    int status = 500;

    sv_key(&key, id, strlen(id));
    es_err_t err = es_proj_reader_get(rd, key.data, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND) {
        status = 404;
        goto out;
    }
    if (err)
        goto out;
    if (!sv_decode(&val, &it)) {
        snprintf(errstr, errstr_size, "stored item %s is corrupt", id);
        goto out;
    }
    json_t *res = json_array();
    for (size_t i = 0; i < it.n; i++)
        json_array_append_new(res, json_pack("{s:s%, s:i}", "reservation_id", it.res[i].id,
                                             it.res[i].idlen, "quantity", it.res[i].qty));
    *body = json_pack("{s:s, s:i, s:i, s:i, s:o, s:I}", "item_id", id, "on_hand", it.on_hand,
                      "reserved", it.reserved, "available", it.on_hand - it.reserved,
                      "reservations", res, "version", (json_int_t)it.version);
    status = 200;
out:
    sv_free(&it);
    es_buf_free(&key);
    es_buf_free(&val);
    return status;
}

const es_proj_def_t inventory_stock_view = {
    .name = "stock_view",
    .aggregates = {"inventory"},
    .schemas = {"inventory.events"},
    .naggregates = 1,
    .fold = stock_view_fold,
    .queries = {{.pattern = "/v1/inventory/{id}",
                 .handle = stock_view_get,
                 .aggregate_param = 0,
                 .aggregate_index = 0}},
    .nqueries = 1,
};
