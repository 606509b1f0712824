/*
 * asof.c — point-in-time views of one aggregate (`as_of=` on a query).
 *
 * An aggregate's events all live in one partition (the producers'
 * Java-compatible murmur2 of the id), so the view as of time T is the fold
 * of the records of that partition keyed by the id, up to the first offset
 * whose timestamp is after T (Kafka's offsetsForTimes, `stop`), keeping
 * records whose timestamp is <= T.  The fold runs into an in-memory map and
 * the projection's own query handler renders it, so a point-in-time answer
 * has exactly the shape of a live one.  Events the live view sent to the
 * DLQ are skipped here too (the fold refuses them again).
 *
 * Where the events come from (docs/projector.md, "as_of"):
 *  - the aggregate's history (history.c), when this projector hosts it and
 *    it has applied the partition up to `stop`: cost proportional to the
 *    aggregate's own events;
 *  - otherwise the log: the partition re-read from its start, cost
 *    proportional to the partition prefix.
 * escqrs_projector_as_of_total{path=...} counts each.
 */
#include "projector.h"

#include "escqrs/log.h"
#include "escqrs/schemas.h"
#include "escqrs/serde.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* librdkafka's murmur2 partitioner is Java's (Utils.murmur2, positive, modulo the count): the
 * producers' default, and the one es_producer_key_partition() gives the command service. */
int32_t pj_partition_of(const char *key, size_t keylen, int nparts)
{
    return rd_kafka_msg_partitioner_murmur2(NULL, key, keylen, nparts, NULL, NULL);
}

/* The partition's low watermark and `stop`: the first offset later than @p ts_ms, else the high. */
static es_err_t stop_offset(rd_kafka_t *rk, const char *topic, int32_t part, int64_t ts_ms,
                            int64_t *lo, int64_t *stop, char *errstr, size_t errstr_size)
{
    int64_t hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic, part, lo, &hi, PJ_METADATA_TIMEOUT_MS)) {
        snprintf(errstr, errstr_size, "watermarks of %s/%d", topic, (int)part);
        return ES_ERR_KAFKA;
    }
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    /* the first record later than ts_ms; INT64_MAX (the largest as_of) is later than all */
    rd_kafka_topic_partition_list_add(tl, topic, part)->offset =
        ts_ms < INT64_MAX ? ts_ms + 1 : INT64_MAX;
    es_err_t err = ES_ERR_OK;
    if (rd_kafka_offsets_for_times(rk, tl, PJ_METADATA_TIMEOUT_MS) || tl->elems[0].err) {
        snprintf(errstr, errstr_size, "offsets for times of %s/%d", topic, (int)part);
        err = ES_ERR_KAFKA;
    } else {
        *stop = tl->elems[0].offset >= 0 ? tl->elems[0].offset : hi;
    }
    rd_kafka_topic_partition_list_destroy(tl);
    return err;
}

/* What a fold of one aggregate's events needs, wherever they come from. */
typedef struct asof_fold_s {
    pj_runner_t *r;
    size_t t;
    es_serde_t *serde; /* the view's reader schema */
    es_proj_txn_t *txn;
    const char *id;
    int64_t ts_ms, stop;
    es_err_t err; /* the registry failed: the answer would be incomplete */
    char errstr[PJ_ERRSTR_MAX];
} asof_fold_t;

/* Fold one record's value if it belongs (before `stop`, not later than T). */
static void fold_one(asof_fold_t *a, int32_t part, int64_t offset, int64_t ts, const void *raw,
                     size_t rawlen)
{
    if (offset >= a->stop || ts > a->ts_ms || !raw)
        return;
    avro_value_t *v = NULL;
    char ferr[256];
    es_err_t err = es_serde_decode(a->serde, raw, rawlen, &v, ferr, sizeof(ferr));
    if (err == ES_ERR_REGISTRY_UNAVAILABLE || err == ES_ERR_REGISTRY) {
        a->err = err;
        snprintf(a->errstr, sizeof(a->errstr), "schema registry: %s", ferr);
        return;
    }
    if (err)
        return; /* poison: in the DLQ */
    pj_record_t rec = {.ev = {.topic = a->r->topic[a->t],
                              .partition = part,
                              .offset = offset,
                              .timestamp_ms = ts,
                              .key = a->id,
                              .keylen = strlen(a->id),
                              .value = v},
                       .raw = raw,
                       .rawlen = rawlen};
    pj_fold_event(a->r, a->t, &rec, a->txn, ferr, sizeof(ferr)); /* refused: in the DLQ */
}

static bool history_entry_cb(void *opaque, const char *key, size_t keylen, const char *val,
                             size_t vallen)
{
    asof_fold_t *a = opaque;
    pj_entry_t e;
    (void)key;
    (void)keylen;
    if (pj_entry_parse(val, vallen, &e)) {
        if (e.offset >= a->stop)
            return false; /* versions follow offsets: the rest is later */
        fold_one(a, e.partition, e.offset, e.timestamp_ms, e.raw, e.rawlen);
    }
    return !a->err;
}

/*
 * From the aggregate's history: false when it cannot answer (not hosted,
 * not started, or it has not applied the partition up to `stop` in time).
 */
static bool fold_from_history(asof_fold_t *a, int32_t part)
{
    pj_runner_t *h = pj_history_runner(a->r->pj, a->r->def->aggregates[a->t]);
    if (!h || h == a->r || !atomic_load(&h->started) || h->nparts[0] != a->r->nparts[a->t])
        return false;
    if (h->pj->partitioned && pj_partition_here(h, 0, part) != PJ_HERE_OWNED)
        return false; /* its slice here is not current: the log answers */
    if (a->stop > 0 &&
        pj_wait_applied(h, 0, part, a->stop - 1, PJ_ASOF_HISTORY_WAIT_MS) != ES_ERR_OK)
        return false;
    es_buf_t prefix = {0};
    es_buf_set(&prefix, a->id, strlen(a->id));
    es_buf_append(&prefix, "", 1);
    pj_rwlock_rdlock(&h->lock);
    pj_slice_t slice;
    es_proj_backend_t be = h->pj->partitioned ? pj_slice_backend(&slice, pj_runner_live(h), 0, part)
                                              : pj_store_backend(pj_runner_live(h));
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_err_t err = es_proj_reader_scan(rd, prefix.data, prefix.len, history_entry_cb, a, a->errstr,
                                       sizeof(a->errstr));
    es_proj_reader_destroy(rd);
    pj_rwlock_unlock(&h->lock);
    if (h->pj->partitioned)
        pj_slice_done(&slice);
    es_buf_free(&prefix);
    if (err && !a->err)
        a->err = err;
    return true;
}

/* From the log: partition @p part re-read from @p lo up to `stop`. */
static void fold_from_log(asof_fold_t *a, int32_t part, int64_t lo)
{
    size_t idlen = strlen(a->id);
    es_consumer_t *c = es_consumer_new(a->r->pj->conf, NULL, a->errstr, sizeof(a->errstr));
    if (!c) {
        a->err = ES_ERR_KAFKA;
        return;
    }
    rd_kafka_t *rk = es_consumer_rk(c);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, a->r->topic[a->t], part)->offset = pj_start_offset(lo);
    rd_kafka_assign(rk, tl);
    int64_t pos = lo, moved_ms = es_mono_ms();
    while (pos < a->stop && !a->err) {
        rd_kafka_message_t *m = es_consumer_poll(c, PJ_ASOF_POLL_MS);
        if (m && !m->err) {
            moved_ms = es_mono_ms();
            pos = m->offset + 1;
            rd_kafka_timestamp_type_t tst;
            int64_t ts = rd_kafka_message_timestamp(m, &tst);
            if (m->key_len == idlen && memcmp(m->key, a->id, idlen) == 0)
                fold_one(a, m->partition, m->offset, ts, m->payload, m->len);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m)
            rd_kafka_message_destroy(m); /* an error event: no progress either */
        /* only transaction markers may remain below `stop` */
        rd_kafka_position(rk, tl);
        int64_t at = tl->elems[0].offset;
        if (at >= a->stop)
            break;
        if (at > pos) {
            pos = at;
            moved_ms = es_mono_ms();
        } else if (es_mono_ms() - moved_ms >= PJ_ASOF_STALL_MS) {
            /* the broker went away mid-read: say so, do not hold the worker for ever */
            a->err = ES_ERR_TIMED_OUT;
            snprintf(a->errstr, sizeof(a->errstr),
                     "reading %s/%d from the log: nothing for %d ms at offset %lld of %lld "
                     "(the broker is not answering)",
                     a->r->topic[a->t], (int)part, PJ_ASOF_STALL_MS, (long long)pos,
                     (long long)a->stop);
        }
    }
    rd_kafka_topic_partition_list_destroy(tl);
    es_consumer_destroy(c);
}

es_err_t pj_fold_as_of(pj_runner_t *r, size_t t, const char *id, int64_t ts_ms,
                       es_proj_memmap_t *map, char *errstr, size_t errstr_size)
{
    int32_t part = pj_partition_of(id, strlen(id), r->nparts[t]);
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    asof_fold_t a = {.r = r, .t = t, .id = id, .ts_ms = ts_ms, .txn = es_proj_txn_new(rd)};
    char subject[PJ_SUBJECT_MAX];
    int64_t lo = 0;
    rd_kafka_t *rk;

    snprintf(subject, sizeof(subject), "%s-value", r->topic[t]);
    if (!(a.serde = es_serde_new(r->pj->reg, subject, es_schema_text(r->def->schemas[t]), false, 0,
                                 a.errstr, sizeof(a.errstr))))
        a.err = ES_ERR_REGISTRY;
    else if (!(rk = pj_lookup_rk(r->pj, a.errstr, sizeof(a.errstr))))
        a.err = ES_ERR_KAFKA;
    else
        a.err = stop_offset(rk, r->topic[t], part, ts_ms, &lo, &a.stop, a.errstr, sizeof(a.errstr));
    if (!a.err) {
        bool indexed = fold_from_history(&a, part);
        if (!indexed)
            fold_from_log(&a, part, lo);
        es_counter_add(indexed ? r->pj->m_asof_index : r->pj->m_asof_log, 1);
    }
    if (!a.err)
        es_proj_txn_store_into(a.txn, map);
    else
        snprintf(errstr, errstr_size, "%s", a.errstr);
    es_proj_txn_destroy(a.txn);
    es_proj_reader_destroy(rd);
    es_serde_destroy(a.serde);
    return a.err;
}
