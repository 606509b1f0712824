/*
 * overlay.c — the batch's aggregate states and remembered outcomes, in
 * memory until the transaction commits; the store codec.
 *
 * Why an overlay: a batch is decided before it is committed, and an aborted
 * transaction must leave the store as it was, so the batch's next states
 * and outcomes live in two hash maps keyed by their store keys (loaded
 * from the store on first use) and reach RocksDB only after the commit, in one atomic write batch
 * together with the next events-topic offset of every partition written.
 * The store therefore never holds a state the log does not: at worst it
 * lags the log (a crash between commit and write), and the catch-up on
 * assignment closes the gap.
 *
 * Pipelined: a committed batch's write goes to a writer thread
 * (common/src/store_writer.c) while the next batch is decided; RocksDB on
 * the main thread was a third of its time at saturation.  Until the write
 * returns, what it puts or deletes is also in `sealed` (key → bytes or a
 * tombstone), and the overlay's loads read that before the store, exactly
 * as they would read the store after the write.  cs_store_settle() waits
 * for it; it runs before the next batch's offsets and commit (txn.c), so a
 * failed write stops the next commit (the clients are re-created and the
 * catch-up replays from the offsets the store holds), and before anything
 * else reads the store: a rebalance's catch-up, a baseline, an idle poll,
 * closing the clients.
 *
 * Store layout: "s" + id → 8-byte big-endian version, 8-byte offset of its
 * last event in <agg>.events (-1: none), 4-byte partition (-1: unknown),
 * 4-byte count and u32-length-prefixed list of the command ids whose
 * outcome records <agg>.state keeps for it (each u32-length-prefixed,
 * oldest first; state.c), then state_encode();
 * "i" + id + 0x00 + command id → 8-byte big-endian fingerprint + framed
 * CommandResult (fingerprint 0 when rebuilt from events: the body is not in
 * the log); "b" + 4-byte partition → the partition of <agg>.state has a
 * baseline (state.c).  The store records this layout as "command-service/3"
 * (connect.c): change that name with the layout, and an old store is
 * refused with the remedy instead of misread.
 */
#include "service_int.h"

#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cs_agg_free(agg_ent_t *a)
{
    if (a) {
        free(a->state);
        es_buf_free(&a->recent);
    }
    free(a);
}

static void agg_free_cb(void *p)
{
    cs_agg_free(p);
}

/* What the batch in flight writes at one key: its bytes, or a delete. */
typedef struct sealed_s {
    bool deleted;
    size_t len;
    unsigned char data[];
} sealed_t;

static void idem_free_cb(void *p)
{
    idem_ent_t *e = p;
    if (e)
        es_buf_free(&e->result);
    free(e);
}

/* The overlay's maps, each entry freed with the map. */
void cs_overlay_init(cs_t *cs)
{
    cs->aggs = (es_map_t)ES_MAP_INIT(agg_free_cb);
    cs->idems = (es_map_t)ES_MAP_INIT(idem_free_cb);
    cs->sealed = (es_map_t)ES_MAP_INIT(free);
    cs->wbatch = es_batch_new();
}

void cs_overlay_clear(cs_t *cs)
{
    es_map_clear(&cs->aggs);
    es_map_clear(&cs->idems);
}

void cs_overlay_free(cs_t *cs)
{
    es_map_free(&cs->aggs);
    es_map_free(&cs->idems);
    es_map_free(&cs->sealed);
    es_store_writer_destroy(cs->writer); /* settled when the clients closed */
    es_batch_destroy(cs->wbatch);
}

/* The value @p key will have once the write in flight is done: the sealed map, then the store. */
static es_err_t stored_get(cs_t *cs, const void *key, size_t keylen, es_buf_t *val, char *errstr,
                           size_t errstr_size)
{
    const sealed_t *s = es_map_get(&cs->sealed, key, keylen, NULL);
    if (!s)
        return es_store_get(cs->store, key, keylen, val, errstr, errstr_size);
    if (s->deleted)
        return ES_ERR_NOT_FOUND;
    es_buf_set(val, s->data, s->len);
    return ES_ERR_OK;
}

/* "s" + id: the store key of an aggregate's state. */
static size_t agg_key(char *out, const char *id)
{
    size_t n = strlen(id);
    out[0] = 's';
    memcpy(out + 1, id, n);
    return 1 + n;
}

es_err_t cs_agg_decode(cs_t *cs, agg_ent_t *a, const void *val, size_t len)
{
    es_cursor_t c;
    size_t rlen;
    es_cursor_init(&c, val, len);
    a->version = (int64_t)es_cursor_be64(&c);
    a->ev_offset = (int64_t)es_cursor_be64(&c);
    a->partition = (int32_t)es_cursor_be32(&c);
    a->nrecent = es_cursor_be32(&c);
    const char *recent = es_cursor_str(&c, &rlen);
    if (c.bad)
        return ES_ERR_DECODE;
    es_buf_set(&a->recent, recent, rlen);
    memset(a->state, 0, cs->def->state_size);
    return cs->def->state_decode(a->state, c.p, c.left) ? ES_ERR_DECODE : ES_ERR_OK;
}

agg_ent_t *cs_agg_new(cs_t *cs)
{
    agg_ent_t *a = es_calloc(1, sizeof(*a));
    a->state = es_calloc(1, cs->def->state_size);
    a->ev_offset = -1;
    a->partition = -1;
    return a;
}

es_err_t cs_agg_load(cs_t *cs, const char *id, agg_ent_t **out, char *errstr, size_t errstr_size)
{
    char key[ES_ID_MAX + 2];
    size_t keylen = agg_key(key, id);
    es_buf_t val = {0};
    if ((*out = es_map_get(&cs->aggs, key, keylen, NULL)))
        return ES_ERR_OK;
    agg_ent_t *a = cs_agg_new(cs);
    es_err_t err = stored_get(cs, key, keylen, &val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        if (cs_agg_decode(cs, a, val.data, val.len)) {
            snprintf(errstr, errstr_size, "aggregate %s: stored state does not decode", id);
            err = ES_ERR_DECODE;
            goto fail;
        }
    } else if (err != ES_ERR_NOT_FOUND) {
        goto fail;
    }
    es_buf_free(&val);
    es_map_set(&cs->aggs, key, keylen, a);
    *out = a;
    return ES_ERR_OK;
fail:
    es_buf_free(&val);
    cs_agg_free(a);
    return err;
}

void cs_agg_replace(cs_t *cs, const char *id, agg_ent_t *a)
{
    char key[ES_ID_MAX + 2];
    es_map_set(&cs->aggs, key, agg_key(key, id), a); /* frees the entry it replaces */
}

size_t cs_idem_key(char *out, const char *agg_id, const char *cmd_id)
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
    size_t keylen = cs_idem_key(key, agg_id, cmd_id);
    es_buf_t val = {0};
    avro_value_t *v;
    if ((*out = es_map_get(&cs->idems, key, keylen, NULL))) {
        if ((*out)->forget && !(*out)->o.command_id[0]) /* forgotten, never loaded: none */
            *out = NULL;
        return ES_ERR_OK;
    }
    es_err_t err = stored_get(cs, key, keylen, &val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        return ES_ERR_OK;
    if (err)
        return err;
    idem_ent_t *e = es_calloc(1, sizeof(*e));
    if (val.len < 8 ||
        (err =
             es_serde_decode(cs->res_serde, val.data + 8, val.len - 8, &v, errstr, errstr_size)) ||
        (err = es_outcome_from_value(v, &e->o, errstr, errstr_size))) {
        es_buf_free(&val);
        free(e);
        return err ? err : ES_ERR_DECODE;
    }
    e->fp = es_be64_get(val.data);
    es_buf_free(&val);
    es_map_set(&cs->idems, key, keylen, e);
    *out = e;
    return ES_ERR_OK;
}

/* Only for a command id the overlay and the store do not know (cs_idem_load said so). */
idem_ent_t *cs_idem_insert(cs_t *cs, const char *agg_id, const char *cmd_id, uint64_t fp)
{
    char key[2 * ES_ID_MAX + 3];
    size_t keylen = cs_idem_key(key, agg_id, cmd_id);
    idem_ent_t *e = es_calloc(1, sizeof(*e));
    e->fp = fp;
    e->dirty = true;
    es_map_set(&cs->idems, key, keylen, e);
    return e;
}

/* An entry the batch loaded keeps answering until the batch ends (the store
 * deletes it with the batch); a forgotten id the batch never loaded gets an
 * empty entry, which cs_idem_load() reports as none (and cs_idem_insert()
 * replaces). */
void cs_idem_forget(cs_t *cs, const char *agg_id, const char *cmd_id, size_t cmdlen)
{
    char id[ES_ID_MAX + 1];
    char key[2 * ES_ID_MAX + 3];
    snprintf(id, sizeof(id), "%.*s", (int)cmdlen, cmd_id);
    size_t keylen = cs_idem_key(key, agg_id, id);
    void **slot = es_map_slot(&cs->idems, key, keylen, NULL);
    if (!*slot)
        *slot = es_calloc(1, sizeof(idem_ent_t));
    idem_ent_t *e = *slot;
    e->forget = true;
    e->dirty = true;
}

/* Put (@p val non-NULL) or delete @p key in @p batch; @p seal: in the sealed map too. */
static void batch_set(cs_t *cs, es_batch_t *batch, bool seal, const void *key, size_t keylen,
                      const es_buf_t *val)
{
    if (val)
        es_batch_put(batch, key, keylen, val->data, val->len);
    else
        es_batch_delete(batch, key, keylen);
    if (seal) {
        size_t len = val ? val->len : 0;
        sealed_t *e = es_malloc(sizeof(*e) + len);
        e->deleted = !val;
        e->len = len;
        if (len)
            memcpy(e->data, val->data, len);
        es_map_set(&cs->sealed, key, keylen, e);
    }
}

/* @p be64 (8 bytes, big-endian) then @p val. */
static void put_record(cs_t *cs, es_batch_t *batch, bool seal, const void *key, size_t keylen,
                       uint64_t be64, const es_buf_t *val)
{
    unsigned char be[8];
    es_buf_t rec = {0};
    es_be64_put(be, be64);
    es_buf_append(&rec, be, 8);
    es_buf_append(&rec, val->data, val->len);
    batch_set(cs, batch, seal, key, keylen, &rec);
    es_buf_free(&rec);
}

/* The dirty entries of the overlay into @p batch (@p seal: and the sealed map). */
static es_err_t dirty_write(cs_t *cs, es_batch_t *batch, bool seal, es_buf_t *val, char *errstr,
                            size_t errstr_size)
{
    const void *key;
    size_t keylen, pos = 0;
    void **slot;
    es_err_t err;
    while (es_map_next(&cs->aggs, &pos, &key, &keylen, &slot)) {
        agg_ent_t *a = *slot;
        if (!a->dirty)
            continue;
        es_buf_clear(val);
        es_buf_put_be64(val, (uint64_t)a->version);
        es_buf_put_be64(val, (uint64_t)a->ev_offset);
        es_buf_put_be32(val, (uint32_t)a->partition);
        es_buf_put_be32(val, (uint32_t)a->nrecent);
        es_buf_put_str(val, a->recent.data, a->recent.len);
        es_buf_t st = {0};
        cs->def->state_encode(a->state, &st);
        es_buf_append(val, st.data, st.len);
        es_buf_free(&st);
        batch_set(cs, batch, seal, key, keylen, val);
        a->dirty = false;
    }
    pos = 0;
    while (es_map_next(&cs->idems, &pos, &key, &keylen, &slot)) {
        idem_ent_t *e = *slot;
        if (!e->dirty)
            continue;
        if (e->forget) {
            batch_set(cs, batch, seal, key, keylen, NULL);
            e->dirty = false;
            continue;
        }
        if (e->result.len) { /* the bytes <agg>.command-results has */
            put_record(cs, batch, seal, key, keylen, e->fp, &e->result);
            e->dirty = false;
            continue;
        }
        if ((err = es_outcome_to_value(&e->o, &cs->res_value, errstr, errstr_size)) ||
            (err = es_serde_encode(cs->res_serde, &cs->res_value, val, errstr, errstr_size)))
            return err;
        put_record(cs, batch, seal, key, keylen, e->fp, val);
        e->dirty = false;
    }
    return ES_ERR_OK;
}

/* Every dirty entry and the next events-topic offsets of @p parts into @p batch. */
static es_err_t overlay_batch(cs_t *cs, es_batch_t *batch, bool seal, const int32_t *parts,
                              const int64_t *next_offsets, size_t nparts, char *errstr,
                              size_t errstr_size)
{
    es_buf_t val = {0};
    es_err_t err = dirty_write(cs, batch, seal, &val, errstr, errstr_size);
    for (size_t i = 0; i < nparts && !err; i++)
        es_batch_put_offset(batch, cs->t_ev, parts[i], next_offsets[i]);
    es_buf_free(&val);
    return err;
}

es_err_t cs_overlay_write_with(cs_t *cs, es_batch_t *batch, const int32_t *parts,
                               const int64_t *next_offsets, size_t nparts, char *errstr,
                               size_t errstr_size)
{
    es_err_t err =
        overlay_batch(cs, batch, false, parts, next_offsets, nparts, errstr, errstr_size);
    return err ? err : es_store_write(cs->store, batch, errstr, errstr_size);
}

es_err_t cs_overlay_write(cs_t *cs, const int32_t *parts, const int64_t *next_offsets,
                          size_t nparts, char *errstr, size_t errstr_size)
{
    es_batch_t *batch = es_batch_new();
    es_err_t err =
        cs_overlay_write_with(cs, batch, parts, next_offsets, nparts, errstr, errstr_size);
    es_batch_destroy(batch);
    return err;
}

es_err_t cs_overlay_hand(cs_t *cs, const int32_t *parts, const int64_t *next_offsets, size_t nparts,
                         char *errstr, size_t errstr_size)
{
    es_err_t err =
        overlay_batch(cs, cs->wbatch, true, parts, next_offsets, nparts, errstr, errstr_size);
    if (!cs->writer)
        cs->writer = es_store_writer_new();
    if (!err && es_store_writer_hand(cs->writer, cs->store, cs->wbatch)) {
        cs->writing = true;
        return ES_ERR_OK;
    }
    if (!err) /* no thread to be had: in line */
        err = es_store_write(cs->store, cs->wbatch, errstr, errstr_size);
    es_batch_clear(cs->wbatch);
    es_map_clear(&cs->sealed);
    return err;
}

es_err_t cs_store_settle(cs_t *cs, char *errstr, size_t errstr_size)
{
    if (!cs->writing)
        return ES_ERR_OK;
    cs->writing = false;
    es_err_t err = es_store_writer_wait(cs->writer, errstr, errstr_size);
    es_batch_clear(cs->wbatch);
    es_map_clear(&cs->sealed);
    return err;
}
