/*
 * item_stats.c — quantities added, removed and checked out per sku across
 * all carts, answering GET /v1/stats/items?top=N[&by=added|removed|checked_out].
 *
 * Keys:
 *   "s/<sku>"     u64 added, u64 removed, u64 checked_out
 *   "k/<cart_id>" the projection's own copy of each cart it has seen
 *                 (u32 n, n × (str sku, u64 quantity), u64 version, u32
 *                 status: 0 open, 1 checked out), needed because a
 *                 CartCheckedOut event names only the total; a checked-out
 *                 cart keeps its version and status, with no lines.
 *                 Projections never read each other's stores, so item_stats
 *                 keeps what it needs itself.  A copy written before the
 *                 version and status were kept ends after its lines: an open
 *                 cart of version 0.
 * The fold refuses what cart_view refuses for the same cart (cart_event_in_order(),
 * cart_fold.h): a version that does not grow and any event after checkout, so an event
 * written twice to the topic (a replayed dead letter, a mirrored copy) is a
 * poison event in both views instead of counted twice here.
 * Top N scans "s/" (one entry per sku: small next to the event log) keeping
 * the best N; ties are broken by sku so answers are deterministic.  A counter
 * stops at INT64_MAX, not UINT64_MAX: the answer's numbers are JSON integers,
 * which jansson (and most readers) hold as int64, so a larger one would be
 * answered negative.
 */
#include "cart.h"
#include "cart_fold.h"
#include "escqrs/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IS_LINE_MIN_BYTES 12 /* an encoded line: u32 sku length, u64 quantity */
#define IS_TAIL_BYTES     12 /* u64 version, u32 status */
#define IS_CHECKED_OUT    1u
#define IS_COUNTER_MAX    ((uint64_t)INT64_MAX) /* the largest JSON integer the answer holds */

/* A cart as item_stats keeps it; its lines borrow their skus (cart_fold.h). */
typedef struct {
    cart_lines_t lines;
    int64_t version;
    uint32_t status; /* 0 open, IS_CHECKED_OUT */
} is_cart_t;

/* The cart stored in @p b into @p c (initialised); its lines point into @p b. */
static bool is_cart_decode(const es_buf_t *b, is_cart_t *c)
{
    es_cursor_t cur;
    es_cursor_init(&cur, b->data, b->len);
    uint32_t n = es_cursor_be32(&cur);
    if (cur.bad || n > cur.left / IS_LINE_MIN_BYTES)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        cart_line_t *ln = cart_lines_add(&c->lines);
        ln->sku = es_cursor_str(&cur, &ln->skulen);
        ln->qty = (int64_t)es_cursor_be64(&cur);
    }
    if (cur.bad || cur.left == 0) /* cur.left 0: a copy from before versions were kept */
        return !cur.bad;
    c->version = (int64_t)es_cursor_be64(&cur);
    c->status = es_cursor_be32(&cur);
    return !cur.bad && cur.left == 0 && c->version > 0 && c->status <= IS_CHECKED_OUT;
}

static void is_cart_encode(const is_cart_t *c, es_buf_t *b)
{
    size_t size = 4 + IS_TAIL_BYTES; /* n, version, status */
    for (size_t i = 0; i < c->lines.n; i++)
        size += IS_LINE_MIN_BYTES + c->lines.lines[i].skulen;
    es_buf_clear(b);
    es_buf_reserve(b, size); /* one allocation, not one per doubling */
    es_buf_put_be32(b, (uint32_t)c->lines.n);
    for (size_t i = 0; i < c->lines.n; i++) {
        es_buf_put_str(b, c->lines.lines[i].sku, c->lines.lines[i].skulen);
        es_buf_put_be64(b, (uint64_t)c->lines.lines[i].qty);
    }
    es_buf_put_be64(b, (uint64_t)c->version);
    es_buf_put_be32(b, c->status);
}

/* *out = a + b, false past IS_COUNTER_MAX. */
static bool is_counter_add(uint64_t a, uint64_t b, uint64_t *out)
{
    return es_add_u64(a, b, out) && *out <= IS_COUNTER_MAX;
}

/* Add (added, removed, checked_out) to the counters of one sku; @p val: scratch. */
static es_err_t is_bump(es_proj_txn_t *txn, const char *sku, size_t skulen, int64_t add,
                        int64_t rem, int64_t out_, es_buf_t *val, char *errstr, size_t errstr_size)
{
    cart_key_t key;
    uint64_t c[3] = {0, 0, 0};
    es_err_t err;

    cart_key_set(&key, "s/", sku, skulen);
    err = es_proj_get(txn, key.p, key.len, val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        es_cursor_t cur;
        es_cursor_init(&cur, val->data, val->len);
        for (int i = 0; i < 3; i++)
            c[i] = es_cursor_be64(&cur);
        if (cur.bad) {
            snprintf(errstr, errstr_size, "stored stats of %.*s are corrupt", (int)skulen, sku);
            err = ES_ERR_STORE;
            goto out;
        }
    } else if (err != ES_ERR_NOT_FOUND) {
        goto out;
    }
    if (!is_counter_add(c[0], (uint64_t)add, &c[0]) ||
        !is_counter_add(c[1], (uint64_t)rem, &c[1]) ||
        !is_counter_add(c[2], (uint64_t)out_, &c[2])) {
        snprintf(errstr, errstr_size, "the counters of %.*s pass %llu", (int)skulen, sku,
                 (unsigned long long)IS_COUNTER_MAX);
        err = ES_ERR_STATE;
        goto out;
    }
    es_buf_clear(val);
    for (int i = 0; i < 3; i++)
        es_buf_put_be64(val, c[i]);
    es_proj_put(txn, key.p, key.len, val->data, val->len);
    err = ES_ERR_OK;
out:
    cart_key_free(&key);
    return err;
}

/* ItemAdded or ItemRemoved onto @p cart and the sku's counters. */
static es_err_t is_item(is_cart_t *cart, const char *type, avro_value_t *payload,
                        es_proj_txn_t *txn, es_buf_t *scratch, char *errstr, size_t errstr_size)
{
    bool added = type[4] == 'A';
    const char *sku;
    size_t skulen;
    int32_t qty;
    es_err_t err;
    if ((err = es_record_string(payload, "sku", &sku, &skulen, errstr, errstr_size)) ||
        (err = es_record_int(payload, "quantity", &qty, errstr, errstr_size)))
        return err;
    cart_line_t *ln = cart_lines_find(&cart->lines, sku, skulen);
    if (qty <= 0 || (!added && (!ln || ln->qty < qty))) {
        snprintf(errstr, errstr_size, "%s of %d × %.*s: cart holds %lld", type, qty, (int)skulen,
                 sku, ln ? (long long)ln->qty : 0LL);
        return ES_ERR_STATE;
    }
    if (!ln) {
        ln = cart_lines_add(&cart->lines);
        ln->sku = sku; /* the event's: it outlives the fold */
        ln->skulen = skulen;
    }
    if (added && (!es_add_i64(ln->qty, qty, &ln->qty) || ln->qty > INT32_MAX)) {
        snprintf(errstr, errstr_size, "ItemAdded %d × %.*s: the quantity would pass %d", qty,
                 (int)skulen, sku, INT32_MAX);
        return ES_ERR_STATE;
    }
    if (!added)
        ln->qty -= qty;
    if (ln->qty == 0)
        cart_lines_remove(&cart->lines, ln);
    return is_bump(txn, sku, skulen, added ? qty : 0, added ? 0 : qty, 0, scratch, errstr,
                   errstr_size);
}

static es_err_t item_stats_fold(int agg_index, const es_proj_event_t *ev, es_proj_txn_t *txn,
                                char *errstr, size_t errstr_size)
{
    avro_value_t payload;
    const char *type, *id;
    size_t idlen;
    int64_t version;
    cart_key_t key;
    es_buf_t val = {0}, scratch = {0}; /* the stored cart (its lines point into it), the rest */
    is_cart_t cart = {.version = 0, .status = 0};
    es_err_t err;

    key.p = NULL; /* set below (not the whole struct: its stack bytes need no zeroing) */
    cart_lines_init(&cart.lines);
    if ((err = es_record_payload(ev->value, &payload, &type, errstr, errstr_size)) ||
        (err = es_record_string(ev->value, "cart_id", &id, &idlen, errstr, errstr_size)) ||
        (err = es_record_long(ev->value, "version", &version, errstr, errstr_size)))
        goto out;
    cart_key_set(&key, "k/", id, idlen);
    err = es_proj_get(txn, key.p, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        if (!is_cart_decode(&val, &cart)) {
            snprintf(errstr, errstr_size, "stored cart %.*s is corrupt", (int)idlen, id);
            err = ES_ERR_STORE;
            goto out;
        }
    } else if (err != ES_ERR_NOT_FOUND) {
        goto out;
    }
    if ((err = cart_event_in_order(id, idlen, type, version, cart.version,
                                   cart.status == IS_CHECKED_OUT, errstr, errstr_size)))
        goto out;
    if (strcmp(type, "ItemAdded") == 0 || strcmp(type, "ItemRemoved") == 0) {
        if ((err = is_item(&cart, type, &payload, txn, &scratch, errstr, errstr_size)))
            goto out;
    } else if (strcmp(type, "CartCheckedOut") == 0) {
        for (size_t i = 0; i < cart.lines.n; i++) {
            if ((err = is_bump(txn, cart.lines.lines[i].sku, cart.lines.lines[i].skulen, 0, 0,
                               cart.lines.lines[i].qty, &scratch, errstr, errstr_size)))
                goto out;
        }
        cart.lines.n = 0; /* counted: the copy keeps the version and status only */
        cart.status = IS_CHECKED_OUT;
    } else {
        snprintf(errstr, errstr_size, "unknown cart event type %s", type);
        err = ES_ERR_DECODE;
        goto out;
    }
    cart.version = version;
    is_cart_encode(&cart, &scratch);
    es_proj_put(txn, key.p, key.len, scratch.data, scratch.len);
    err = ES_ERR_OK;
out:
    cart_lines_free(&cart.lines);
    cart_key_free(&key);
    es_buf_free(&val);
    es_buf_free(&scratch);
    return err;
}

/* ---------------------------------------------------------------- top N */

typedef struct {
    char *sku;
    uint64_t c[3];
} is_row_t;

typedef struct {
    is_row_t *rows;
    size_t n, top;
    int by;
    bool bad;
} is_top_t;

/* Does a rank before b? */
static bool is_before(const is_row_t *a, const is_row_t *b, int by)
{
    if (a->c[by] != b->c[by])
        return a->c[by] > b->c[by];
    return strcmp(a->sku, b->sku) < 0;
}

static bool is_top_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    is_top_t *t = opaque;
    es_cursor_t cur;
    is_row_t r;
    es_cursor_init(&cur, val, vallen);
    for (int i = 0; i < 3; i++)
        r.c[i] = es_cursor_be64(&cur);
    if (cur.bad) {
        t->bad = true;
        return false;
    }
    r.sku = es_strndup(key + 2, keylen - 2);
    /* insertion into a sorted array of at most `top` rows */
    size_t pos = t->n;
    while (pos > 0 && is_before(&r, &t->rows[pos - 1], t->by))
        pos--;
    if (pos >= t->top) {
        free(r.sku);
        return true;
    }
    if (t->n == t->top) {
        free(t->rows[t->n - 1].sku);
        t->n--;
    }
    memmove(&t->rows[pos + 1], &t->rows[pos], (t->n - pos) * sizeof(r));
    t->rows[pos] = r;
    t->n++;
    return true;
}

static int item_stats_top(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body,
                          char *errstr, size_t errstr_size)
{
    static const char *const bys[3] = {"added", "removed", "checked_out"};
    const char *tops = req->query(req->query_opaque, "top");
    const char *by = req->query(req->query_opaque, "by");
    is_top_t t = {.top = 10, .by = 0};
    int status = 500;

    if (tops) {
        int64_t v;
        if (!es_parse_i64(tops, 1, 1000, &v)) {
            *body = es_proj_bad_request("top must be an integer in 1..1000");
            return 400;
        }
        t.top = (size_t)v;
    }
    if (by) {
        t.by = -1;
        for (int i = 0; i < 3; i++) {
            if (strcmp(by, bys[i]) == 0)
                t.by = i;
        }
        if (t.by < 0) {
            *body = es_proj_bad_request("by must be added, removed or checked_out");
            return 400;
        }
    }
    t.rows = es_calloc(t.top + 1, sizeof(*t.rows));
    if (es_proj_reader_scan(rd, "s/", 2, is_top_cb, &t, errstr, errstr_size))
        goto out;
    if (t.bad) {
        snprintf(errstr, errstr_size, "stored item stats are corrupt");
        goto out;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < t.n; i++)
        json_array_append_new(items, json_pack("{s:s, s:I, s:I, s:I}", "sku", t.rows[i].sku,
                                               "added", (json_int_t)t.rows[i].c[0], "removed",
                                               (json_int_t)t.rows[i].c[1], "checked_out",
                                               (json_int_t)t.rows[i].c[2]));
    *body = json_pack("{s:s, s:o}", "by", bys[t.by], "items", items);
    status = 200;
out:
    for (size_t i = 0; i < t.n; i++)
        free(t.rows[i].sku);
    free(t.rows);
    return status;
}

/* Partitioned mode: the partial counters of one sku from two partitions add up. */
static bool item_stats_merge(const char *key, size_t keylen, const char *a, size_t alen,
                             const char *b, size_t blen, es_buf_t *out)
{
    es_cursor_t ca, cb;
    if (keylen < 2 || memcmp(key, "s/", 2) != 0)
        return false; /* "k/<cart_id>" belongs to one cart, so to one partition */
    es_cursor_init(&ca, a, alen);
    es_cursor_init(&cb, b, blen);
    es_buf_clear(out);
    for (int i = 0; i < 3; i++) {
        uint64_t sum;
        if (!is_counter_add(es_cursor_be64(&ca), es_cursor_be64(&cb), &sum))
            return false;
        es_buf_put_be64(out, sum);
    }
    return !ca.bad && !cb.bad;
}

const es_proj_def_t es_proj_item_stats = {
    .name = "item_stats",
    .aggregates = {"cart"},
    .schemas = {"cart.events"},
    .naggregates = 1,
    .fold = item_stats_fold,
    .queries = {{.pattern = "/v1/stats/items",
                 .handle = item_stats_top,
                 .aggregate_param = -1,
                 .aggregate_index = 0}},
    .nqueries = 1,
    .merge = item_stats_merge,
};
