/*
 * overlay.c — the batch's aggregate states and remembered outcomes, in
 * memory until the transaction commits; the store codec.
 *
 * Why an overlay: a batch is decided before it is committed, and an aborted
 * transaction must leave the store as it was, so the batch's next states
 * and outcomes live in two hash maps keyed by their store keys (loaded
 * from the store on first use) and reach RocksDB only after the commit, in one atomic write batch
 * together with the next events-topic offset of every partition written and
 * the offset after its last <agg>.state record there (where the next
 * catch-up's state tail starts: catchup.c; an older store without it reads
 * the partition's state records from the beginning once, so the layout name
 * stays).
 * The store therefore never holds a state the log does not: at worst it
 * lags the log (a crash between commit and write), and the catch-up on
 * assignment closes the gap.
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
 *
 * Also here, with the state records' offsets: the commands offset each state
 * record carries in its header, what the transaction commits for the group
 * there (catchup.c compares the last one read with the group's offset).
 */
#include "service_int.h"

#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <errno.h>
#include <inttypes.h>
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
    es_err_t err = es_store_get(cs->store, key, keylen, &val, errstr, errstr_size);
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
    es_err_t err = es_store_get(cs->store, key, keylen, &val, errstr, errstr_size);
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

/* @p be64 (8 bytes, big-endian) then @p val. */
static void put_record(es_batch_t *batch, const void *key, size_t keylen, uint64_t be64,
                       const es_buf_t *val)
{
    unsigned char be[8];
    es_buf_t rec = {0};
    es_be64_put(be, be64);
    es_buf_append(&rec, be, 8);
    es_buf_append(&rec, val->data, val->len);
    es_batch_put(batch, key, keylen, rec.data, rec.len);
    es_buf_free(&rec);
}

/* The dirty entries of the overlay into @p batch. */
static es_err_t dirty_write(cs_t *cs, es_batch_t *batch, es_buf_t *val, char *errstr,
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
        es_batch_put(batch, key, keylen, val->data, val->len);
        a->dirty = false;
    }
    pos = 0;
    while (es_map_next(&cs->idems, &pos, &key, &keylen, &slot)) {
        idem_ent_t *e = *slot;
        if (!e->dirty)
            continue;
        if (e->forget) {
            es_batch_delete(batch, key, keylen);
            e->dirty = false;
            continue;
        }
        if (e->result.len) { /* the bytes <agg>.command-results has */
            put_record(batch, key, keylen, e->fp, &e->result);
            e->dirty = false;
            continue;
        }
        if ((err = es_outcome_to_value(&e->o, &cs->res_value, errstr, errstr_size)) ||
            (err = es_serde_encode(cs->res_serde, &cs->res_value, val, errstr, errstr_size)))
            return err;
        put_record(batch, key, keylen, e->fp, val);
        e->dirty = false;
    }
    return ES_ERR_OK;
}

/* The commands offset a state record carries (service_int.h, CS_COMMANDS_OFFSET_HEADER). */
rd_kafka_headers_t *cs_commands_offset_header(const cs_t *cs, int32_t p)
{
    const rd_kafka_topic_partition_list_t *l = cs->txn_offsets;
    for (int i = 0; l && i < l->cnt; i++) {
        if (l->elems[i].partition != p || l->elems[i].offset < 0)
            continue;
        char v[24];
        int n = snprintf(v, sizeof(v), "%" PRId64, l->elems[i].offset);
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, CS_COMMANDS_OFFSET_HEADER, -1, v, n);
        return h;
    }
    return NULL;
}

void cs_headers_destroy(rd_kafka_headers_t *h)
{
    if (h)
        rd_kafka_headers_destroy(h);
}

int64_t cs_commands_offset_of(const rd_kafka_message_t *m)
{
    char text[32], *end = NULL;
    if (es_header_get(m, CS_COMMANDS_OFFSET_HEADER, text, sizeof(text)) || !text[0])
        return -1;
    errno = 0;
    long long off = strtoll(text, &end, 10);
    return !*end && !errno && off >= 0 ? (int64_t)off : -1;
}

/* The state records' offsets ride with the store write that follows their commit. */
void cs_state_put_offsets(cs_t *cs, es_batch_t *batch)
{
    /* with state.restore=false no catch-up reads the tail: an offset moved on then
     * would skip another owner's records once it is true again */
    for (int32_t p = 0; p < cs->nparts && cs->restore_enabled; p++)
        if (cs->state_next[p] >= 0)
            es_batch_put_offset(batch, cs->t_state, p, cs->state_next[p]);
    cs_state_offsets_clear(cs);
}

void cs_state_offsets_clear(cs_t *cs)
{
    for (int32_t p = 0; p < cs->nparts; p++)
        cs->state_next[p] = -1;
}

es_err_t cs_overlay_write_with(cs_t *cs, es_batch_t *batch, const int32_t *parts,
                               const int64_t *next_offsets, size_t nparts, char *errstr,
                               size_t errstr_size)
{
    es_buf_t val = {0};
    es_err_t err = dirty_write(cs, batch, &val, errstr, errstr_size);
    for (size_t i = 0; i < nparts && !err; i++)
        es_batch_put_offset(batch, cs->t_ev, parts[i], next_offsets[i]);
    if (!err)
        err = es_store_write(cs->store, batch, errstr, errstr_size);
    es_buf_free(&val);
    return err;
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
