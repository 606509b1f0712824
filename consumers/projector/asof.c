/*
 * asof.c — point-in-time views of one aggregate (`as_of=` on a query).
 *
 * Decision (see docs/projector.md): no per-aggregate index is kept; the log
 * is re-read.  An aggregate's events all live in one partition (the
 * producers' Java-compatible murmur2 of the id), so the view as of time T is
 * the fold of the records of that partition keyed by the id, from offset 0
 * up to the first offset whose timestamp is after T (Kafka's
 * offsetsForTimes), keeping records whose timestamp is <= T.  The fold runs
 * into an in-memory map and the projection's own query handler renders it,
 * so a point-in-time answer has exactly the shape of a live one.  Events the
 * live view sent to the DLQ are skipped here too.  Cost: one read of the
 * partition prefix per query — fine for audits, and it costs nothing on the
 * hot path (an index would double the writes of every rebuild).
 */
#include "projector.h"

#include "escqrs/log.h"
#include "escqrs/schemas.h"
#include "escqrs/serde.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* org.apache.kafka.common.utils.Utils.murmur2 */
static int32_t murmur2(const uint8_t *data, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)len;
    size_t len4 = len / 4;
    for (size_t i = 0; i < len4; i++) {
        uint32_t k = (uint32_t)data[i * 4] | (uint32_t)data[i * 4 + 1] << 8 |
                     (uint32_t)data[i * 4 + 2] << 16 | (uint32_t)data[i * 4 + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)data[(len & ~(size_t)3) + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[(len & ~(size_t)3) + 1] << 8;
        /* fall through */
    case 1:
        h ^= data[len & ~(size_t)3];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t pj_partition_of(const char *key, size_t keylen, int nparts)
{
    return (int32_t)(((uint32_t)murmur2((const uint8_t *)key, keylen) & 0x7fffffff) %
                     (uint32_t)nparts);
}

static void flush_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    if (val)
        es_proj_memmap_put(opaque, key, keylen, val, vallen);
    else
        es_proj_memmap_delete(opaque, key, keylen);
}

es_err_t pj_fold_as_of(pj_runner_t *r, size_t t, const char *id, int64_t ts_ms,
                       es_proj_memmap_t *map, char *errstr, size_t errstr_size)
{
    size_t idlen = strlen(id);
    int32_t part = pj_partition_of(id, idlen, r->nparts[t]);
    es_consumer_t *c = NULL;
    es_serde_t *serde = NULL;
    rd_kafka_topic_partition_list_t *tl = NULL;
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    char subject[PJ_SUBJECT_MAX];
    int64_t lo = 0, hi = 0, stop;
    es_err_t err;

    snprintf(subject, sizeof(subject), "%s-value", r->topic[t]);
    serde = es_serde_new(r->pj->reg, subject, es_schema_text(r->def->schemas[t]), false, 0, errstr,
                         errstr_size);
    if (!serde) {
        err = ES_ERR_REGISTRY;
        goto out;
    }
    c = es_consumer_new(r->pj->conf, NULL, errstr, errstr_size);
    if (!c) {
        err = ES_ERR_KAFKA;
        goto out;
    }
    rd_kafka_t *rk = es_consumer_rk(c);
    if (rd_kafka_query_watermark_offsets(rk, r->topic[t], part, &lo, &hi, PJ_METADATA_TIMEOUT_MS)) {
        snprintf(errstr, errstr_size, "watermarks of %s/%d", r->topic[t], (int)part);
        err = ES_ERR_KAFKA;
        goto out;
    }
    tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, r->topic[t], part)->offset = ts_ms + 1;
    if (rd_kafka_offsets_for_times(rk, tl, PJ_METADATA_TIMEOUT_MS) || tl->elems[0].err) {
        snprintf(errstr, errstr_size, "offsets for times of %s/%d", r->topic[t], (int)part);
        err = ES_ERR_KAFKA;
        goto out;
    }
    stop = tl->elems[0].offset >= 0 ? tl->elems[0].offset : hi;
    tl->elems[0].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, tl);
    int64_t pos = lo;
    while (pos < stop) {
        rd_kafka_message_t *m = es_consumer_poll(c, PJ_ASOF_POLL_MS);
        if (!m) {
            /* only transaction markers may remain below `stop` */
            rd_kafka_position(rk, tl);
            if (tl->elems[0].offset >= stop)
                break;
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        pos = m->offset + 1;
        rd_kafka_timestamp_type_t tst;
        int64_t ts = rd_kafka_message_timestamp(m, &tst);
        if (m->offset < stop && ts <= ts_ms && m->key_len == idlen &&
            memcmp(m->key, id, idlen) == 0 && m->payload) {
            avro_value_t *v = NULL;
            char ferr[256];
            if (es_serde_decode(serde, m->payload, m->len, &v, ferr, sizeof(ferr)) == ES_ERR_OK)
                pj_fold_record(r, t, m, v, txn, ferr, sizeof(ferr)); /* poison: in the DLQ */
        }
        rd_kafka_message_destroy(m);
    }
    es_proj_txn_foreach(txn, flush_cb, map);
    err = ES_ERR_OK;
out:
    if (tl)
        rd_kafka_topic_partition_list_destroy(tl);
    es_proj_txn_destroy(txn);
    es_proj_reader_destroy(rd);
    es_consumer_destroy(c);
    es_serde_destroy(serde);
    return err;
}
