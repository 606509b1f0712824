/*
 * overlay.c — the batch's aggregate states and remembered outcomes, in
 * memory until the transaction commits; the store codec.
 *
 * Why an overlay: a batch is decided before it is committed, and an aborted
 * transaction must leave the store as it was, so the batch's next states
 * and outcomes live in two small hash maps (loaded from the store on first
 * use) and reach RocksDB only after the commit, in one atomic write batch
 * together with the next events-topic offset of every partition written.
 * The store therefore never holds a state the log does not: at worst it
 * lags the log (a crash between commit and write), and the catch-up on
 * assignment closes the gap.
 *
 * Store layout: "s" + id → 8-byte big-endian version + state_encode();
 * "i" + id + 0x00 + command id → 8-byte big-endian fingerprint + framed
 * CommandResult (fingerprint 0 when rebuilt from events: the body is not in
 * the log).
 */
#include "service_int.h"

#include "escqrs/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h % CS_NBUCKETS;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be64(const void *data)
{
    const unsigned char *p = data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void cs_overlay_clear(cs_t *cs)
{
    for (size_t b = 0; b < CS_NBUCKETS; b++) {
        for (agg_ent_t *a = cs->aggs[b], *n; a; a = n) {
            n = a->next;
            free(a->state);
            free(a);
        }
        for (idem_ent_t *e = cs->idems[b], *n; e; e = n) {
            n = e->next;
            free(e);
        }
        cs->aggs[b] = NULL;
        cs->idems[b] = NULL;
    }
}

es_err_t cs_agg_load(cs_t *cs, const char *id, agg_ent_t **out, char *errstr, size_t errstr_size)
{
    uint32_t b = hash_bytes(id, strlen(id));
    es_buf_t key = {0}, val = {0};
    es_err_t err;
    for (agg_ent_t *a = cs->aggs[b]; a; a = a->next)
        if (!strcmp(a->id, id)) {
            *out = a;
            return ES_ERR_OK;
        }
    agg_ent_t *a = es_calloc(1, sizeof(*a));
    a->state = es_calloc(1, cs->def->state_size);
    snprintf(a->id, sizeof(a->id), "%s", id);
    es_buf_append(&key, "s", 1);
    es_buf_append(&key, id, strlen(id));
    err = es_store_get(cs->store, key.data, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        if (val.len < 8 || cs->def->state_decode(a->state, val.data + 8, val.len - 8)) {
            snprintf(errstr, errstr_size, "aggregate %s: stored state does not decode", id);
            err = ES_ERR_DECODE;
            goto fail;
        }
        a->version = (int64_t)get_be64(val.data);
    } else if (err != ES_ERR_NOT_FOUND) {
        goto fail;
    }
    es_buf_free(&key);
    es_buf_free(&val);
    a->next = cs->aggs[b];
    cs->aggs[b] = a;
    *out = a;
    return ES_ERR_OK;
fail:
    es_buf_free(&key);
    es_buf_free(&val);
    free(a->state);
    free(a);
    return err;
}

static size_t idem_key(char *out, const char *agg_id, const char *cmd_id)
{
    size_t a = strlen(agg_id), c = strlen(cmd_id);
    out[0] = 'i';
    memcpy(out + 1, agg_id, a);
    out[1 + a] = '\0';
    memcpy(out + 2 + a, cmd_id, c);
    return 2 + a + c;
}

/* The remembered outcome of (agg_id, cmd_id): *out NULL when there is none. */
es_err_t cs_idem_load(cs_t *cs, const char *agg_id, const char *cmd_id, idem_ent_t **out,
                      char *errstr, size_t errstr_size)
{
    char key[2 * ES_ID_MAX + 3];
    size_t keylen = idem_key(key, agg_id, cmd_id);
    uint32_t b = hash_bytes(key, keylen);
    es_buf_t val = {0};
    avro_value_t *v;
    *out = NULL;
    for (idem_ent_t *e = cs->idems[b]; e; e = e->next)
        if (e->keylen == keylen && !memcmp(e->key, key, keylen)) {
            *out = e;
            return ES_ERR_OK;
        }
    es_err_t err = es_store_get(cs->store, key, keylen, &val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        return ES_ERR_OK;
    if (err)
        return err;
    idem_ent_t *e = es_calloc(1, sizeof(*e));
    memcpy(e->key, key, keylen);
    e->keylen = keylen;
    if (val.len < 8 ||
        (err =
             es_serde_decode(cs->res_serde, val.data + 8, val.len - 8, &v, errstr, errstr_size)) ||
        (err = es_outcome_from_value(v, &e->o, errstr, errstr_size))) {
        es_buf_free(&val);
        free(e);
        return err ? err : ES_ERR_DECODE;
    }
    e->fp = get_be64(val.data);
    es_buf_free(&val);
    e->next = cs->idems[b];
    cs->idems[b] = e;
    *out = e;
    return ES_ERR_OK;
}

idem_ent_t *cs_idem_insert(cs_t *cs, const char *agg_id, const char *cmd_id, uint64_t fp)
{
    idem_ent_t *e = es_calloc(1, sizeof(*e));
    e->keylen = idem_key(e->key, agg_id, cmd_id);
    e->fp = fp;
    e->dirty = true;
    uint32_t b = hash_bytes(e->key, e->keylen);
    e->next = cs->idems[b];
    cs->idems[b] = e;
    return e;
}

/* @p be64 (8 bytes, big-endian) then @p val.  */
static void put_record(es_batch_t *batch, const void *key, size_t keylen, uint64_t be64,
                       const es_buf_t *val)
{
    unsigned char be[8];
    es_buf_t rec = {0};
    put_be64(be, be64);
    es_buf_append(&rec, be, 8);
    es_buf_append(&rec, val->data, val->len);
    es_batch_put(batch, key, keylen, rec.data, rec.len);
    es_buf_free(&rec);
}

/* The dirty entries of bucket @p b into @p batch. */
static es_err_t bucket_write(cs_t *cs, size_t b, es_batch_t *batch, es_buf_t *key, es_buf_t *val,
                             char *errstr, size_t errstr_size)
{
    es_err_t err;
    for (agg_ent_t *a = cs->aggs[b]; a; a = a->next) {
        if (!a->dirty)
            continue;
        es_buf_clear(key);
        es_buf_append(key, "s", 1);
        es_buf_append(key, a->id, strlen(a->id));
        cs->def->state_encode(a->state, val);
        put_record(batch, key->data, key->len, (uint64_t)a->version, val);
        a->dirty = false;
    }
    for (idem_ent_t *e = cs->idems[b]; e; e = e->next) {
        if (!e->dirty)
            continue;
        if ((err = es_outcome_to_value(&e->o, &cs->res_value, errstr, errstr_size)) ||
            (err = es_serde_encode(cs->res_serde, &cs->res_value, val, errstr, errstr_size)))
            return err;
        put_record(batch, e->key, e->keylen, e->fp, val);
        e->dirty = false;
    }
    return ES_ERR_OK;
}

/* Write every dirty entry of the overlay plus the next events-topic offsets of
 * partitions @p parts in one atomic batch. */
es_err_t cs_overlay_write(cs_t *cs, const int32_t *parts, const int64_t *next_offsets,
                          size_t nparts, char *errstr, size_t errstr_size)
{
    es_batch_t *batch = es_batch_new();
    es_buf_t key = {0}, val = {0};
    es_err_t err = ES_ERR_OK;
    for (size_t b = 0; b < CS_NBUCKETS && !err; b++)
        err = bucket_write(cs, b, batch, &key, &val, errstr, errstr_size);
    for (size_t i = 0; i < nparts && !err; i++)
        es_batch_put_offset(batch, cs->t_ev, parts[i], next_offsets[i]);
    if (!err)
        err = es_store_write(cs->store, batch, errstr, errstr_size);
    es_batch_destroy(batch);
    es_buf_free(&key);
    es_buf_free(&val);
    return err;
}
