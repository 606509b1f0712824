/*
 * account_balance.c — each account's owner, balance and version, answering
 * GET /v1/accounts/{id}.
 *
 * One key per account, "a/<account_id>": str owner, u64 balance_cents
 * (two's complement), u64 version.  Like cart_view, the fold refuses events
 * the write side never emits (a second AccountOpened, money moving on an
 * account never opened, a withdrawal below zero, a version that does not
 * grow, a deposit past INT64_MAX cents) so they reach the DLQ rather than
 * the view.
 */
#include "account.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ab_key(es_buf_t *k, const char *id, size_t idlen)
{
    es_buf_set(k, "a/", 2);
    es_buf_append(k, id, idlen);
}

static es_err_t account_balance_fold(int agg_index, const es_proj_event_t *ev, es_proj_txn_t *txn,
                                     char *errstr, size_t errstr_size)
{
    avro_value_t payload;
    const char *type, *id, *owner = "";
    size_t idlen, ownerlen = 0;
    int64_t version, balance = 0, cur_version = 0, amount;
    es_buf_t key = {0}, val = {0}, owner_buf = {0};
    bool exists = false;
    es_err_t err;

    if ((err = es_record_payload(ev->value, &payload, &type, errstr, errstr_size)) ||
        (err = es_record_string(ev->value, "account_id", &id, &idlen, errstr, errstr_size)) ||
        (err = es_record_long(ev->value, "version", &version, errstr, errstr_size)))
        goto out;
    ab_key(&key, id, idlen);
    err = es_proj_get(txn, key.data, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        es_cursor_t cur;
        size_t len;
        es_cursor_init(&cur, val.data, val.len);
        const char *o = es_cursor_str(&cur, &len);
        es_buf_set(&owner_buf, o, len);
        balance = (int64_t)es_cursor_be64(&cur);
        cur_version = (int64_t)es_cursor_be64(&cur);
        if (cur.bad) {
            snprintf(errstr, errstr_size, "stored account %.*s is corrupt", (int)idlen, id);
            err = ES_ERR_STORE;
            goto out;
        }
        owner = owner_buf.data;
        ownerlen = owner_buf.len;
        exists = true;
    } else if (err != ES_ERR_NOT_FOUND) {
        goto out;
    }
    err = ES_ERR_STATE;
    if (version <= cur_version) {
        snprintf(errstr, errstr_size, "account %.*s: event version %lld not after %lld", (int)idlen,
                 id, (long long)version, (long long)cur_version);
        goto out;
    }
    if (strcmp(type, "AccountOpened") == 0) {
        if (exists) {
            snprintf(errstr, errstr_size, "account %.*s opened twice", (int)idlen, id);
            goto out;
        }
        if ((err = es_record_string(&payload, "owner", &owner, &ownerlen, errstr, errstr_size)))
            goto out;
    } else if (strcmp(type, "Deposited") == 0 || strcmp(type, "Withdrawn") == 0) {
        if ((err = es_record_long(&payload, "amount_cents", &amount, errstr, errstr_size)))
            goto out;
        err = ES_ERR_STATE;
        if (!exists || amount <= 0) {
            snprintf(errstr, errstr_size, "%s of %lld on account %.*s (%s)", type,
                     (long long)amount, (int)idlen, id, exists ? "bad amount" : "not open");
            goto out;
        }
        if (type[0] == 'W') {
            if (amount > balance) {
                snprintf(errstr, errstr_size, "Withdrawn %lld from account %.*s holding %lld",
                         (long long)amount, (int)idlen, id, (long long)balance);
                goto out;
            }
            balance -= amount;
        } else if (!es_add_i64(balance, amount, &balance)) {
            snprintf(errstr, errstr_size, "Deposited %lld on account %.*s holding %lld overflows",
                     (long long)amount, (int)idlen, id, (long long)balance);
            goto out;
        }
    } else {
        snprintf(errstr, errstr_size, "unknown account event type %s", type);
        err = ES_ERR_DECODE;
        goto out;
    }
    es_buf_t nv = {0};
    es_buf_put_str(&nv, owner, ownerlen);
    es_buf_put_be64(&nv, (uint64_t)balance);
    es_buf_put_be64(&nv, (uint64_t)version);
    es_proj_put(txn, key.data, key.len, nv.data, nv.len);
    es_buf_free(&nv);
    err = ES_ERR_OK;
out:
    es_buf_free(&key);
    es_buf_free(&val);
    es_buf_free(&owner_buf);
    return err;
}

static int account_balance_get(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body,
                               char *errstr, size_t errstr_size)
{
    const char *id = req->params[0];
    es_buf_t key = {0}, val = {0};
    int status = 500;

    ab_key(&key, id, strlen(id));
    es_err_t err = es_proj_reader_get(rd, key.data, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND) {
        status = 404;
        goto out;
    }
    if (err)
        goto out;
    es_cursor_t cur;
    size_t len;
    es_cursor_init(&cur, val.data, val.len);
    const char *owner = es_cursor_str(&cur, &len);
    int64_t balance = (int64_t)es_cursor_be64(&cur);
    int64_t version = (int64_t)es_cursor_be64(&cur);
    if (cur.bad) {
        snprintf(errstr, errstr_size, "stored account %s is corrupt", id);
        goto out;
    }
    *body = json_pack("{s:s, s:s%, s:I, s:I}", "account_id", id, "owner", owner, len,
                      "balance_cents", (json_int_t)balance, "version", (json_int_t)version);
    status = 200;
out:
    es_buf_free(&key);
    es_buf_free(&val);
    return status;
}

const es_proj_def_t es_proj_account_balance = {
    .name = "account_balance",
    .aggregates = {"account"},
    .schemas = {"account.events"},
    .naggregates = 1,
    .fold = account_balance_fold,
    .queries = {{.pattern = "/v1/accounts/{id}",
                 .handle = account_balance_get,
                 .aggregate_param = 0,
                 .aggregate_index = 0}},
    .nqueries = 1,
};
