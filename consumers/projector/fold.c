/*
 * fold.c — how a record reaches a projection's fold.
 *
 * A fold is pure (projection.h): it reads view state through an
 * es_proj_txn_t and writes into it.  The runtime backs the transaction's
 * reads with a store (the live, shadow or frozen one, through
 * pj_store_backend) or with an in-memory map (as_of), and folds each event
 * in its own scope: an event the fold refuses leaves nothing behind, so it
 * can go to the DLQ (or halt the loop) with the batch's other events intact.
 * The live loop and as_of fold through the same function, so an as_of
 * answer has exactly the semantics of the live view.
 */
#include "projector.h"

#include "escqrs/envelope.h"
#include "escqrs/log.h"
#include "escqrs/trace.h"

static es_err_t st_get(void *opaque, const void *key, size_t keylen, es_buf_t *out, char *errstr,
                       size_t errstr_size)
{
    return es_store_get(opaque, key, keylen, out, errstr, errstr_size);
}

es_err_t pj_store_scan(es_store_t *st, const void *prefix, size_t prefixlen, const void *start,
                       size_t startlen, size_t strip,
                       bool (*cb)(void *, const char *, size_t, const char *, size_t),
                       void *cbopaque, char *errstr, size_t errstr_size)
{
    es_store_iter_t *it = es_store_iter_prefix(st, prefix, prefixlen);
    if (start)
        es_store_iter_start_at(it, start, startlen);
    const char *k, *v;
    size_t kl, vl;
    bool more;
    while ((more = es_store_iter_next(it, &k, &kl, &v, &vl)) &&
           cb(cbopaque, k + strip, kl - strip, v, vl))
        ;
    /* an iterator also stops at a block it cannot read: not the end of the keys */
    es_err_t err = more ? ES_ERR_OK : es_store_iter_status(it, errstr, errstr_size);
    es_store_iter_destroy(it);
    return err;
}

static es_err_t st_scan(void *opaque, const void *prefix, size_t prefixlen, const void *start,
                        size_t startlen,
                        bool (*cb)(void *, const char *, size_t, const char *, size_t),
                        void *cbopaque, char *errstr, size_t errstr_size)
{
    return pj_store_scan(opaque, prefix, prefixlen, start, startlen, 0, cb, cbopaque, errstr,
                         errstr_size);
}

es_proj_backend_t pj_store_backend(es_store_t *st)
{
    es_proj_backend_t be = {.get = st_get, .scan = st_scan, .opaque = st};
    return be;
}

es_err_t pj_fold_record(pj_runner_t *r, size_t t, const rd_kafka_message_t *m, avro_value_t *value,
                        es_proj_txn_t *txn, char *errstr, size_t errstr_size)
{
    rd_kafka_timestamp_type_t tstype;
    pj_record_t rec = {.ev = {.topic = r->topic[t],
                              .partition = m->partition,
                              .offset = m->offset,
                              .timestamp_ms = rd_kafka_message_timestamp(m, &tstype),
                              .key = m->key,
                              .keylen = m->key_len,
                              .value = value},
                       .raw = m->payload,
                       .rawlen = m->len};
    es_err_t err = pj_fold_event(r, t, &rec, txn, errstr, errstr_size);
    if (es_log_enabled(ES_LOG_DEBUG)) { /* one line per event, under the event's trace id */
        char tp[ES_TRACEPARENT_LEN + 8] = "", tid[ES_TRACE_ID_LEN + 1];
        es_header_get(m, "traceparent", tp, sizeof(tp));
        es_trace_id_of(tp, tid);
        es_log_trace_set(tid);
        es_log_debug("projector", "%s: %s %s/%d@%lld (key %.*s)", r->def->name,
                     err ? "refused" : "folded", r->topic[t], (int)m->partition,
                     (long long)m->offset, (int)(m->key_len > 200 ? 200 : m->key_len),
                     m->key ? (const char *)m->key : "");
        es_log_trace_set(NULL);
    }
    return err;
}

es_err_t pj_fold_event(pj_runner_t *r, size_t t, const pj_record_t *rec, es_proj_txn_t *txn,
                       char *errstr, size_t errstr_size)
{
    es_proj_txn_begin_event(txn);
    es_err_t err = r->def->fold ? r->def->fold((int)t, &rec->ev, txn, errstr, errstr_size)
                                : pj_builtin_fold(r->def, rec, txn, errstr, errstr_size);
    if (err)
        es_proj_txn_rollback_event(txn);
    else
        es_proj_txn_commit_event(txn);
    return err;
}
