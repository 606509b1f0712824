/*
 * state.c — the <agg>.state changelog: one record per aggregate a
 * transaction changed, written inside that transaction; read back by a
 * command service whose store is empty instead of <agg>.events.
 *
 * Why it can never disagree with the log: the record (key: the aggregate
 * id; value: AggregateState, schemas/aggregate-state.avsc — the version,
 * the offset of the aggregate's last event, state_encode() bytes and its
 * last outcomes) goes to the aggregate's own partition number in the same
 * Kafka transaction as the events it reflects, so a read_committed reader
 * sees both or neither.  The owner of a partition is its single writer and
 * runs one transaction at a time, so within a partition the records and the
 * events of transaction k all come before those of transaction k+1.  Read
 * to its end, a state partition therefore holds the state of every
 * aggregate as of the last transaction it shows, and the largest events
 * offset among its records is the last event of that transaction: every
 * event after it belongs to a transaction committed later, and every event
 * before it is reflected by some record (a transaction that wrote an event
 * of an aggregate also wrote that aggregate's record).  Aborted
 * transactions are invisible in both topics alike; a zombie owner's
 * transaction is fenced by its offsets' group generation (KIP-447), which
 * is why a baseline sends offsets too although it consumes nothing.
 *
 * "Every aggregate" needs a beginning: records exist only for aggregates
 * changed since the topic existed, so a partition is trusted only once it
 * holds a baseline marker (key 0x01 "baseline", aggregate_id ""), written after the state
 * of every aggregate of the partition as the owner's complete store had it
 * (cs_state_write_baseline()).  A fresh aggregate's baseline is the marker
 * alone; an aggregate older than this topic gets one after its first
 * replay.  Without a marker, a restore applies what it read (true states)
 * and replays the events from offset 0 anyway.
 *
 * Idempotency: every remembered outcome is a record of its own in the same
 * transaction (key: aggregate id 0x00 command id; an AggregateState with
 * no state bytes whose `recent` holds the outcome and its fingerprint), so
 * a client retry after a restore still gets its first answer.  Each
 * aggregate keeps a window of its last `state.commands.remembered`: the
 * owner lists their ids in its store and writes a tombstone for the one a
 * new outcome pushes out, so compaction bounds the topic, and the store
 * forgets it in the same write (cs_idem_forget()), so the store is bounded
 * too: older outcomes are forgotten, with or without a restore
 * (docs/write-side.md, "Known limits").  Every record carries the commands
 * offset its transaction commits (header "commands-offset", catchup.c).
 */
#include "service_int.h"

#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/record.h"
#include "escqrs/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASELINE_CHUNK 5000 /* state records per baseline transaction */
/* The key of a partition's baseline marker: no aggregate id (those are printable
 * ASCII), and not empty (a compacted topic refuses a record without a key). */
#define MARKER_KEY "\001baseline"

/* The next id of an aggregate's list of remembered command ids; false at the end. */
static bool recent_next(es_cursor_t *c, const char **id, size_t *idlen)
{
    if (!c->left)
        return false;
    *id = es_cursor_str(c, idlen);
    return !c->bad;
}

/* Drop the entry at byte @p at (of @p len bytes) from @p a's list. */
static void recent_cut(agg_ent_t *a, size_t at, size_t len)
{
    memmove(a->recent.data + at, a->recent.data + at + len, a->recent.len - at - len);
    a->recent.len -= len;
    a->nrecent--;
}

/* Append @p id to @p a's (@p agg_id's) list, moving it to the end when listed; the
 * oldest past state.commands.remembered leave it and the store (cs_idem_forget()),
 * and go into @p evicted (length-prefixed) unless NULL. */
static void recent_add(cs_t *cs, agg_ent_t *a, const char *agg_id, const char *id, size_t idlen,
                       es_buf_t *evicted)
{
    es_cursor_t c;
    const char *eid = NULL;
    size_t eidlen = 0;
    es_cursor_init(&c, a->recent.data, a->recent.len);
    for (size_t at = 0; recent_next(&c, &eid, &eidlen); at = a->recent.len - c.left) {
        if (eidlen == idlen && !memcmp(eid, id, idlen)) {
            recent_cut(a, at, a->recent.len - c.left - at);
            break;
        }
    }
    es_buf_put_str(&a->recent, id, idlen);
    a->nrecent++;
    while (a->nrecent > cs->remember_max) { /* the oldest first */
        es_cursor_init(&c, a->recent.data, a->recent.len);
        recent_next(&c, &eid, &eidlen);
        cs_idem_forget(cs, agg_id, eid, eidlen);
        if (evicted)
            es_buf_put_str(evicted, eid, eidlen);
        recent_cut(a, 0, a->recent.len - c.left);
    }
    a->dirty = true;
}

void cs_state_note_outcome(cs_t *cs, agg_ent_t *a, const char *agg_id, const char *cmd_id)
{
    if (cs->remember_max)
        recent_add(cs, a, agg_id, cmd_id, strlen(cmd_id), NULL);
}

/* One remembered outcome: what an outcome record's `recent` holds. */
typedef struct {
    const char *cmd_id;
    uint64_t fp;
    const es_buf_t *result; /* framed CommandResult */
} remembered_t;

/* The AggregateState value of aggregate @p id into cs->state_value: its state, or
 * (@p item not NULL) the outcome record of @p item with no state bytes. */
static es_err_t state_value(cs_t *cs, const char *id, const agg_ent_t *a, const remembered_t *item,
                            char *errstr, size_t errstr_size)
{
    avro_value_t *v = &cs->state_value, f, arr, it, g;
    es_buf_t st = {0};
    int bad = 0;
    avro_value_reset(v);
    if (a && !item)
        cs->def->state_encode(a->state, &st);
    bad |= avro_value_get_by_name(v, "aggregate_id", &f, NULL) || avro_value_set_string(&f, id);
    bad |= avro_value_get_by_name(v, "version", &f, NULL) ||
           avro_value_set_long(&f, a ? a->version : 0);
    bad |= avro_value_get_by_name(v, "events_offset", &f, NULL) ||
           avro_value_set_long(&f, a ? a->ev_offset : -1);
    bad |= avro_value_get_by_name(v, "state", &f, NULL) ||
           avro_value_set_bytes(&f, st.data ? st.data : "", st.len);
    bad |= avro_value_get_by_name(v, "recent", &arr, NULL);
    if (item && !bad)
        bad |= avro_value_append(&arr, &it, NULL) ||
               avro_value_get_by_name(&it, "command_id", &g, NULL) ||
               avro_value_set_string(&g, item->cmd_id) ||
               avro_value_get_by_name(&it, "fingerprint", &g, NULL) ||
               avro_value_set_long(&g, (int64_t)item->fp) ||
               avro_value_get_by_name(&it, "result", &g, NULL) ||
               avro_value_set_bytes(&g, item->result->data, item->result->len);
    es_buf_free(&st);
    if (bad) {
        snprintf(errstr, errstr_size, "AggregateState of %s: %s", id, avro_strerror());
        return ES_ERR_ENCODE;
    }
    return ES_ERR_OK;
}

/* One <agg>.state record under @p key: cs->state_value encoded into @p buf, or a
 * tombstone (@p tombstone); with the transaction's commands offset (overlay.c). */
static es_err_t state_record(cs_t *cs, const void *key, size_t keylen, int32_t partition,
                             bool tombstone, es_buf_t *buf, es_record_t *rec, char *errstr,
                             size_t errstr_size)
{
    es_err_t err =
        tombstone ? ES_ERR_OK
                  : es_serde_encode(cs->state_serde, &cs->state_value, buf, errstr, errstr_size);
    *rec = (es_record_t){
        .topic = cs->t_state,
        .partition = partition,
        .key = key,
        .keylen = keylen,
        .value = buf->data,
        .valuelen = buf->len,
        .headers = err ? NULL : cs_commands_offset_header(cs, partition),
        .msg_opaque = &cs->state_tag, /* its offset comes back in cs->state_next */
    };
    return err;
}

/* Produce one <agg>.state record under @p key: cs->state_value encoded, or a
 * tombstone (@p tombstone). */
static es_err_t state_put(cs_t *cs, const void *key, size_t keylen, int32_t partition,
                          bool tombstone, char *errstr, size_t errstr_size)
{
    es_buf_t buf = {0};
    es_record_t rec;
    es_err_t err =
        state_record(cs, key, keylen, partition, tombstone, &buf, &rec, errstr, errstr_size);
    if (!err && (err = es_producer_send_record(cs->prod, &rec, ES_SEND_WAIT, errstr, errstr_size)))
        cs_headers_destroy(rec.headers); /* taken on success only */
    es_buf_free(&buf);
    return err;
}

/*
 * Aggregates whose state record was once over the producer's message.max.bytes:
 * librdkafka refuses such a record at once, and every retry of the batch
 * would too, so the partition would wait for good.  Instead the transaction
 * is aborted and the aggregate watched: when the batch is decided again,
 * each of its commands evolves a copy of the state first, and one that would
 * make the record too large is rejected (aggregate_too_large, decide.c), the
 * state as before.  Unwatched aggregates pay nothing.
 *
 * The watch is a set with no eviction: it holds only aggregates whose state
 * reached the limit (each at least 16 KiB in the store already), and with a
 * bound, a batch with more oversized aggregates than the bound pushed its own
 * first ones out, which went over again on the retry and pushed out the next:
 * an abort for ever (it was a ring of 256).
 */
bool cs_state_watched(const cs_t *cs, const char *id)
{
    bool found = false;
    es_map_get(&cs->oversized, id, strlen(id), &found);
    return found;
}

static void state_watch(cs_t *cs, const char *id)
{
    es_map_set(&cs->oversized, id, strlen(id), NULL);
}

bool cs_state_fits(cs_t *cs, const char *id, const agg_ent_t *a)
{
    char errstr[256];
    es_buf_t buf = {0};
    es_record_t rec = {0}; /* its headers too, when state_value() fails */
    agg_ent_t worst = *a;
    worst.ev_offset = INT64_MAX; /* its last event's offset is known after the flush only */
    bool fits = !state_value(cs, id, &worst, NULL, errstr, sizeof(errstr)) &&
                !state_record(cs, id, strlen(id), a->partition, false, &buf, &rec, errstr,
                              sizeof(errstr)) &&
                es_producer_fits(cs->prod, &rec);
    cs_headers_destroy(rec.headers);
    es_buf_free(&buf);
    return fits;
}

/* The <agg>.state record of aggregate @p id itself (key: the id). */
static es_err_t aggregate_send(cs_t *cs, const char *id, const agg_ent_t *a, int32_t partition,
                               char *errstr, size_t errstr_size)
{
    es_buf_t buf = {0};
    es_record_t rec;
    es_err_t err = state_value(cs, id, a, NULL, errstr, errstr_size);
    if (!err)
        err = state_record(cs, id, strlen(id), partition, false, &buf, &rec, errstr, errstr_size);
    if (!err && !es_producer_fits(cs->prod, &rec)) {
        state_watch(cs, id);
        snprintf(errstr, errstr_size,
                 "the state record of %s (%zu bytes) is over message.max.bytes: the batch is "
                 "decided again, the command that grows it that far rejected (aggregate_too_large)",
                 id, es_record_wire_size(&rec));
        cs_headers_destroy(rec.headers);
        err = ES_ERR_INVALID_ARG;
    }
    if (!err && (err = es_producer_send_record(cs->prod, &rec, ES_SEND_WAIT, errstr, errstr_size)))
        cs_headers_destroy(rec.headers); /* taken on success only */
    es_buf_free(&buf);
    return err;
}

es_err_t cs_state_publish_outcome(cs_t *cs, agg_ent_t *a, uint64_t fp, const es_outcome_t *o,
                                  const es_buf_t *result, char *errstr, size_t errstr_size)
{
    char key[2 * ES_ID_MAX + 3];
    es_buf_t evicted = {0};
    es_cursor_t c;
    const char *eid;
    size_t eidlen;
    if (!cs->remember_max)
        return ES_ERR_OK;
    const char *agg_id = o->aggregate_id;
    remembered_t item = {o->command_id, fp, result};
    /* the store key of its remembered outcome without the store's "i" */
    size_t keylen = cs_idem_key(key, agg_id, o->command_id) - 1;
    es_err_t err = state_value(cs, agg_id, a, &item, errstr, errstr_size);
    if (!err)
        err = state_put(cs, key + 1, keylen, a->partition, false, errstr, errstr_size);
    if (!err)
        recent_add(cs, a, agg_id, o->command_id, strlen(o->command_id), &evicted);
    es_cursor_init(&c, evicted.data, evicted.len);
    while (!err && recent_next(&c, &eid, &eidlen)) { /* out of the window: a tombstone */
        char idz[ES_ID_MAX + 1];
        snprintf(idz, sizeof(idz), "%.*s", (int)eidlen, eid);
        keylen = cs_idem_key(key, agg_id, idz) - 1;
        err = state_put(cs, key + 1, keylen, a->partition, true, errstr, errstr_size);
    }
    es_buf_free(&evicted);
    return err;
}

es_err_t cs_state_produce(cs_t *cs, char *errstr, size_t errstr_size)
{
    const void *key;
    size_t keylen, pos = 0;
    void **slot;
    es_err_t err;
    es_err_t oversized = ES_ERR_OK;
    char more[512];
    while (es_map_next(&cs->aggs, &pos, &key, &keylen, &slot)) {
        agg_ent_t *a = *slot;
        char id[ES_ID_MAX + 1];
        if (!a || !a->publish)
            continue;
        snprintf(id, sizeof(id), "%.*s", (int)(keylen - 1), (const char *)key + 1);
        err = aggregate_send(cs, id, a, a->partition, oversized ? more : errstr,
                             oversized ? sizeof(more) : errstr_size);
        if (err == ES_ERR_INVALID_ARG) { /* too large: watch every such aggregate of the batch */
            oversized = err;
            continue;
        }
        if (err)
            return err;
        a->publish = false;
    }
    return oversized; /* the batch aborts, to be decided again (aggregate_send()) */
}

/* The remembered outcomes of a restored record into the overlay (a later record wins). */
static es_err_t apply_recent(cs_t *cs, const char *agg_id, agg_ent_t *a, avro_value_t *arr,
                             char *errstr, size_t errstr_size)
{
    size_t n = 0;
    avro_value_get_size(arr, &n);
    for (size_t i = 0; i < n; i++) {
        avro_value_t item, g, *ov;
        const char *cmd_id;
        const void *res;
        size_t reslen;
        int64_t fp = 0;
        idem_ent_t *e;
        es_err_t err;
        if (avro_value_get_by_index(arr, i, &item, NULL) ||
            (err = es_record_string(&item, "command_id", &cmd_id, NULL, errstr, errstr_size)) ||
            (err = es_record_long(&item, "fingerprint", &fp, errstr, errstr_size)) ||
            avro_value_get_by_name(&item, "result", &g, NULL) ||
            avro_value_get_bytes(&g, &res, &reslen)) {
            snprintf(errstr, errstr_size, "state of %s: a remembered command does not decode",
                     agg_id);
            return ES_ERR_DECODE;
        }
        if (!es_command_id_valid(cmd_id))
            continue;
        cs_state_note_outcome(cs, a, agg_id, cmd_id);
        if ((err = cs_idem_load(cs, agg_id, cmd_id, &e, errstr, errstr_size)))
            return err;
        if (!e)
            e = cs_idem_insert(cs, agg_id, cmd_id, (uint64_t)fp);
        if ((err = es_serde_decode(cs->res_serde, res, reslen, &ov, errstr, errstr_size)) ||
            (err = es_outcome_from_value(ov, &e->o, errstr, errstr_size)))
            return err;
        e->fp = (uint64_t)fp;
        e->dirty = true;
    }
    return ES_ERR_OK;
}

es_err_t cs_state_apply(cs_t *cs, const rd_kafka_message_t *m, int64_t *events_offset,
                        bool *is_marker, char *errstr, size_t errstr_size)
{
    avro_value_t *v, f, arr;
    const char *id;
    const void *st;
    size_t stlen;
    int64_t version = 0;
    agg_ent_t *cur;
    es_err_t err;
    if ((err = es_serde_decode(cs->state_serde, m->payload, m->len, &v, errstr, errstr_size)) ||
        (err = es_record_string(v, "aggregate_id", &id, NULL, errstr, errstr_size)) ||
        (err = es_record_long(v, "version", &version, errstr, errstr_size)) ||
        (err = es_record_long(v, "events_offset", events_offset, errstr, errstr_size)))
        return err;
    *is_marker = !*id;
    if (*is_marker)
        return ES_ERR_OK;
    if (!es_command_id_valid(id) || avro_value_get_by_name(v, "state", &f, NULL) ||
        avro_value_get_bytes(&f, &st, &stlen) || avro_value_get_by_name(v, "recent", &arr, NULL)) {
        snprintf(errstr, errstr_size, "state record at %s [%d] @%" PRId64 " does not decode",
                 cs->t_state, m->partition, m->offset);
        return ES_ERR_DECODE;
    }
    if ((err = cs_agg_load(cs, id, &cur, errstr, errstr_size)))
        return err;
    if (m->key && memchr(m->key, '\0', m->key_len)) { /* an outcome record: id 0x00 command id */
        if (cur->partition < 0)
            cur->partition = m->partition; /* no state yet: only outcomes (rejected commands) */
        return apply_recent(cs, id, cur, &arr, errstr, errstr_size);
    }
    if (version < cur->version)
        return ES_ERR_OK; /* the store is ahead (records of one partition only grow) */
    agg_ent_t *a = cs_agg_new(cs);
    if (cs->def->state_decode(a->state, st, stlen)) {
        cs_agg_free(a);
        snprintf(errstr, errstr_size, "state of %s at %s [%d] @%" PRId64 " does not decode", id,
                 cs->t_state, m->partition, m->offset);
        return ES_ERR_DECODE;
    }
    a->version = version;
    a->ev_offset = *events_offset;
    a->partition = m->partition;
    a->dirty = true;
    es_buf_set(&a->recent, cur->recent.data, cur->recent.len); /* its outcome records' ids */
    a->nrecent = cur->nrecent;
    cs_agg_replace(cs, id, a); /* cur is freed here: a takes its place */
    /* a record written before outcome records had their own keys carries them */
    return apply_recent(cs, id, a, &arr, errstr, errstr_size);
}

/* "b" + partition: the store's note that <agg>.state partition p has a baseline. */
static size_t baseline_key(char *out, int32_t p)
{
    out[0] = 'b';
    es_be32_put(out + 1, (uint32_t)p);
    return 5;
}

bool cs_state_has_baseline(cs_t *cs, int32_t p)
{
    char key[5], errstr[256];
    es_buf_t val = {0};
    es_err_t err = es_store_get(cs->store, key, baseline_key(key, p), &val, errstr, sizeof(errstr));
    es_buf_free(&val);
    return err == ES_ERR_OK;
}

void cs_state_baseline_mark(es_batch_t *batch, int32_t p)
{
    char key[5];
    es_batch_put(batch, key, baseline_key(key, p), "1", 1);
}

void cs_state_need_baseline(cs_t *cs, int32_t p)
{
    for (size_t i = 0; i < cs->nbaseline; i++)
        if (cs->baseline[i] == p)
            return;
    if (!cs->nbaseline)
        cs->baseline_due_ms = es_mono_ms() + CS_BASELINE_DEFER_MS;
    cs->baseline = es_realloc(cs->baseline, (cs->nbaseline + 1) * sizeof(*cs->baseline));
    cs->baseline[cs->nbaseline++] = p;
}

/* The committed offset of commands partition @p p (its low watermark when none): what a
 * baseline transaction sends, only so that a zombie's baseline is fenced. */
static es_err_t fence_offsets(cs_t *cs, int32_t p, rd_kafka_topic_partition_list_t **out,
                              char *errstr, size_t errstr_size)
{
    rd_kafka_t *rk = es_consumer_rk(cs->cons);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, cs->t_cmd, p);
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t kerr = rd_kafka_committed(rk, l, ES_KAFKA_TIMEOUT_MS);
    if (!kerr && tp->offset < 0) {
        kerr = rd_kafka_query_watermark_offsets(rk, cs->t_cmd, p, &lo, &hi, ES_KAFKA_TIMEOUT_MS);
        tp->offset = lo;
    }
    if (kerr || tp->err) {
        snprintf(errstr, errstr_size, "committed offset of %s [%d]: %s", cs->t_cmd, p,
                 rd_kafka_err2str(kerr ? kerr : tp->err));
        rd_kafka_topic_partition_list_destroy(l);
        return ES_ERR_KAFKA;
    }
    *out = l;
    return ES_ERR_OK;
}

/* Send the fencing offsets and commit the baseline transaction in hand. */
static es_txn_rc_t baseline_commit(cs_t *cs, const rd_kafka_topic_partition_list_t *fence,
                                   char *errstr, size_t errstr_size)
{
    es_txn_rc_t rc = es_txn_send_offsets(cs->prod, cs->cons, fence, errstr, errstr_size);
    if (!rc)
        rc = cs_commit_transaction(cs, "a baseline", errstr, errstr_size);
    return rc;
}

/* Every stored aggregate of partition @p p into the open transaction, committing (with
 * the fencing offsets) every BASELINE_CHUNK records; *n counts them. */
static es_txn_rc_t baseline_states(cs_t *cs, int32_t p, int gen,
                                   const rd_kafka_topic_partition_list_t *fence, size_t *n,
                                   char *errstr, size_t errstr_size)
{
    es_store_iter_t *it = es_store_iter_prefix(cs->store, "s", 1);
    agg_ent_t *a = cs_agg_new(cs);
    const char *key, *val;
    size_t keylen, vallen, in_txn = 0;
    es_txn_rc_t rc = ES_TXN_OK;
    bool more = true;
    while (!rc && (more = es_store_iter_next(it, &key, &keylen, &val, &vallen))) {
        char id[ES_ID_MAX + 1];
        snprintf(id, sizeof(id), "%.*s", (int)(keylen - 1), key + 1);
        if (cs_agg_decode(cs, a, val, vallen)) {
            /* a marker must not claim what it skipped; the load path halts on it too */
            snprintf(errstr, errstr_size, "aggregate %s: stored state does not decode", id);
            rc = ES_TXN_FATAL;
        } else if (a->partition != p) {
            continue;
        } else if (aggregate_send(cs, id, a, p, errstr, errstr_size)) {
            rc = ES_TXN_ABORT;
        } else if (++*n, ++in_txn == BASELINE_CHUNK) {
            in_txn = 0;
            if (atomic_load(&cs->generation) != gen) { /* the partition may have moved */
                snprintf(errstr, errstr_size, "a rebalance ran");
                rc = ES_TXN_ABORT;
            } else if (!(rc = baseline_commit(cs, fence, errstr, errstr_size))) {
                rc = es_txn_begin(cs->prod, errstr, errstr_size);
            }
        }
    }
    if (!rc && !more && es_store_iter_status(it, errstr, errstr_size))
        rc = ES_TXN_FATAL; /* a read error ended the scan: not every aggregate is in */
    cs_agg_free(a);
    es_store_iter_destroy(it);
    return rc;
}

/* The baseline marker of partition @p p: the events before offset @p next_ev are covered. */
static es_err_t marker_send(cs_t *cs, int32_t p, int64_t next_ev, char *errstr, size_t errstr_size)
{
    avro_value_t f;
    es_err_t err = state_value(cs, "", NULL, NULL, errstr, errstr_size);
    if (err)
        return err;
    avro_value_get_by_name(&cs->state_value, "events_offset", &f, NULL);
    avro_value_set_long(&f, next_ev);
    return state_put(cs, MARKER_KEY, strlen(MARKER_KEY), p, false, errstr, errstr_size);
}

/* The baseline of state partition @p p: every stored aggregate of p, then the marker. */
static es_txn_rc_t baseline_write(cs_t *cs, int32_t p, int gen, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *fence = NULL;
    size_t n = 0;
    int64_t t0 = es_mono_ms(), next_ev = 0;
    es_txn_rc_t rc;
    es_err_t err = es_store_get_offset(cs->store, cs->t_ev, p, &next_ev, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        next_ev = 0; /* no committed event in the partition */
    else if (err)
        return ES_TXN_FATAL;
    if (fence_offsets(cs, p, &fence, errstr, errstr_size))
        return ES_TXN_FATAL;
    cs_state_offsets_clear(cs);
    cs->txn_offsets = fence; /* the marker's and the states' header */
    if ((rc = es_txn_begin(cs->prod, errstr, errstr_size)))
        goto out;
    rc = baseline_states(cs, p, gen, fence, &n, errstr, errstr_size);
    if (!rc && atomic_load(&cs->generation) != gen) {
        snprintf(errstr, errstr_size, "a rebalance ran");
        rc = ES_TXN_ABORT;
    }
    if (!rc && marker_send(cs, p, next_ev, errstr, errstr_size))
        rc = ES_TXN_ABORT;
    if (!rc)
        rc = baseline_commit(cs, fence, errstr, errstr_size);
    if (rc == ES_TXN_ABORT) {
        char aerr[512];
        if (es_txn_abort(cs->prod, cs->cons, fence, aerr, sizeof(aerr)))
            rc = ES_TXN_FATAL;
    }
    if (!rc) {
        es_counter_add(cs->c_baseline_states, (double)n);
        es_log_info("command-service",
                    "baseline of %s [%d]: %zu state record(s) and the marker (events before "
                    "offset %" PRId64 ") in %" PRId64 " ms",
                    cs->t_state, p, n, next_ev, es_mono_ms() - t0);
    }
out:
    cs->txn_offsets = NULL;
    rd_kafka_topic_partition_list_destroy(fence);
    return rc;
}

es_txn_rc_t cs_state_write_baseline(cs_t *cs)
{
    char errstr[1024];
    int gen = atomic_load(&cs->generation);
    /* one partition per call: a command that arrives meanwhile waits for one
     * baseline transaction, not for every partition's */
    if (cs->nbaseline) {
        int32_t p = cs->baseline[cs->nbaseline - 1];
        es_txn_rc_t rc = baseline_write(cs, p, gen, errstr, sizeof(errstr));
        if (rc) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "baseline of %.200s [%d]: %.900s",
                     cs->t_state, p, errstr);
            es_log_warn("command-service", "%s", cs->fatal_reason);
            return rc; /* the next assignment asks again */
        }
        es_batch_t *batch = es_batch_new();
        cs_state_baseline_mark(batch, p);
        cs_state_put_offsets(cs, batch); /* a catch-up reads the partition from after them */
        es_err_t err = es_store_write(cs->store, batch, errstr, sizeof(errstr));
        es_batch_destroy(batch);
        if (err) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "store: %.1000s", errstr);
            return ES_TXN_FATAL;
        }
        cs->nbaseline--;
    }
    return ES_TXN_OK;
}
