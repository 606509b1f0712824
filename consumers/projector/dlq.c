/*
 * dlq.c — dead-letter topics: poison events, sent once.
 *
 * Poison events (undecodable, unknown schema, refused by the fold) go to
 * `<agg>.events.dlq.<projector>` with the original key, value and headers
 * (event-type, event-id, the request context traceparent, tracestate and
 * correlation-id, ...: whoever reads the DLQ can still follow the request),
 * then headers naming where they came from (source-topic, -partition,
 * -offset), why (error, error-message) and who sent them (projection,
 * projector).  Those come last, so a reader taking the last value of a name
 * gets ours even if the original carried the same name.
 *
 * Never twice: a loop starts by reading its DLQ topics up to their high
 * watermarks and remembering the (projection, source position) pairs already
 * there (pj_dlq_load); a send skips those.  The loop flushes the DLQ records
 * of a batch *before* it writes the batch that moves the offsets past them
 * (loop.c), so after a crash either the offsets are behind the poison event
 * (it is folded again and found in the DLQ) or the DLQ record is delivered.
 * A rebuild and a frozen build read the same pairs, so they send nothing the
 * live loop sent.  The DLQ of a topic is shared by the projections reading
 * it: the `projection` header tells their records apart.
 *
 * A failed send or flush is not the end (loop.c): the batch is dropped and
 * folded again after a back-off, so the DLQ forgets what it sent since its
 * last good flush (those records may not be there) and the producer that
 * failed (its failures are counted since its start).  Each loop has its own
 * producer, made at its first poison event, so one loop's failure is never
 * another's.  A record whose delivery failed late may have landed anyway
 * (a timeout after the broker wrote it): it is then in the DLQ once more
 * for each such failure, copies a reader tells apart by their source-*
 * headers.
 */
#include "loop.h"

#include "escqrs/log.h"
#include "escqrs/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "projector"

#define DLQ_KEY_MAX    400 /* "topic/partition/offset" */
#define DLQ_HEADER_MAX 600 /* one header's value */

struct pj_dlq_s {
    pj_runner_t *r;
    es_proj_memmap_t *seen; /* "topic/partition/offset" of records already in the DLQ */
    es_producer_t *prod;    /* made at the first send, dropped when a flush fails */
    char **unflushed;       /* keys put in seen since the last good flush */
    size_t nunflushed, cap;
};

static size_t dlq_key(char *out, size_t outsz, const char *topic, int32_t part, int64_t off)
{
    int n = snprintf(out, outsz, "%s/%d/%lld", topic, (int)part, (long long)off);
    return n < 0 ? 0 : (size_t)n;
}

static const char *header_str(rd_kafka_headers_t *h, const char *name, char *buf, size_t bufsz)
{
    const void *v;
    size_t len;
    if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (len >= bufsz)
        len = bufsz - 1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return buf;
}

/* The DLQ partitions of @p r's topics that exist, each from its beginning. */
static rd_kafka_topic_partition_list_t *dlq_partitions(pj_runner_t *r, rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(8);
    for (size_t t = 0; t < r->ntopics; t++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, r->dlq[t], NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, PJ_METADATA_TIMEOUT_MS) == 0 && md->topic_cnt == 1 &&
            !md->topics[0].err) {
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(tl, r->dlq[t], p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    return tl;
}

/* Every partition of @p tl has been read up to @p highs. */
static bool dlq_read_to_end(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *tl,
                            const int64_t *highs)
{
    bool done = true;
    for (int i = 0; i < tl->cnt; i++) {
        rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pos, tl->elems[i].topic, tl->elems[i].partition);
        rd_kafka_position(rk, pos);
        int64_t o = pos->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(pos);
        if (highs[i] > 0 && o < highs[i])
            done = false;
    }
    return done;
}

/* Remember DLQ record @p m if this projection sent it; true if it did. */
static bool dlq_remember(pj_dlq_t *d, rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    char st[PJ_TOPIC_MAX], sp[32], so[32], pn[128], key[DLQ_KEY_MAX];
    int64_t part, off;
    rd_kafka_message_headers(m, &h);
    /* the DLQ of a topic is shared by the projections reading it */
    if (!header_str(h, "projection", pn, sizeof(pn)) || strcmp(pn, d->r->def->name) != 0 ||
        !header_str(h, "source-topic", st, sizeof(st)) ||
        !header_str(h, "source-partition", sp, sizeof(sp)) ||
        !header_str(h, "source-offset", so, sizeof(so)) || !es_parse_i64(sp, 0, INT32_MAX, &part) ||
        !es_parse_i64(so, 0, INT64_MAX, &off))
        return false;
    size_t kl = dlq_key(key, sizeof(key), st, (int32_t)part, off);
    es_proj_memmap_put(d->seen, key, kl, "", 0);
    return true;
}

es_err_t pj_dlq_load(pj_runner_t *r, pj_dlq_t **out, char *errstr, size_t errstr_size)
{
    es_consumer_t *c = es_consumer_new(r->pj->conf, NULL, errstr, errstr_size);
    pj_dlq_t *d = es_calloc(1, sizeof(*d));
    es_err_t err = ES_ERR_OK;
    int64_t *highs = NULL;
    int total = 0;

    d->r = r;
    d->seen = es_proj_memmap_new();
    *out = NULL;
    if (!c) {
        pj_dlq_destroy(d);
        return ES_ERR_KAFKA;
    }
    rd_kafka_t *rk = es_consumer_rk(c);
    rd_kafka_topic_partition_list_t *tl = dlq_partitions(r, rk);
    highs = es_calloc((size_t)tl->cnt + 1, sizeof(*highs));
    for (int i = 0; i < tl->cnt; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(rk, tl->elems[i].topic, tl->elems[i].partition, &lo,
                                             &hi, PJ_METADATA_TIMEOUT_MS)) {
            snprintf(errstr, errstr_size, "watermarks of %s", tl->elems[i].topic);
            err = ES_ERR_KAFKA;
            goto out;
        }
        highs[i] = hi;
    }
    if (tl->cnt)
        rd_kafka_assign(rk, tl);
    while (!dlq_read_to_end(rk, tl, highs) && !atomic_load(&r->pj->stop)) {
        rd_kafka_message_t *m = es_consumer_poll(c, PJ_DLQ_POLL_MS);
        if (!m)
            continue;
        if (!m->err && dlq_remember(d, m))
            total++;
        rd_kafka_message_destroy(m);
    }
    es_log_info(LOG, "%s: %d event(s) already in the DLQ", r->def->name, total);
out:
    free(highs);
    rd_kafka_topic_partition_list_destroy(tl);
    es_consumer_destroy(c);
    if (err)
        pj_dlq_destroy(d);
    else
        *out = d;
    return err;
}

/* Forget the keys sent since the last good flush; with @p forget_sent, out of seen too. */
static void unflushed_clear(pj_dlq_t *d, bool forget_sent)
{
    for (size_t i = 0; i < d->nunflushed; i++) {
        if (forget_sent)
            es_proj_memmap_delete(d->seen, d->unflushed[i], strlen(d->unflushed[i]));
        free(d->unflushed[i]);
    }
    d->nunflushed = 0;
}

/* A send or a flush failed: what was sent since the last good flush may not be there. */
static void forget_unflushed(pj_dlq_t *d)
{
    unflushed_clear(d, true);
    es_producer_destroy_now(d->prod);
    d->prod = NULL;
}

void pj_dlq_destroy(pj_dlq_t *d)
{
    if (!d)
        return;
    es_producer_destroy(d->prod); /* what a stop left unflushed is folded again at the start */
    unflushed_clear(d, false);
    free(d->unflushed);
    es_proj_memmap_destroy(d->seen);
    free(d);
}

static void add_header(rd_kafka_headers_t *h, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_header(rd_kafka_headers_t *h, const char *name, const char *fmt, ...)
{
    char buf[DLQ_HEADER_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    rd_kafka_header_add(h, name, -1, buf, n);
}

es_err_t pj_dlq_send(pj_dlq_t *d, size_t t, const rd_kafka_message_t *m, es_err_t why,
                     const char *msg, bool *sent, char *errstr, size_t errstr_size)
{
    pj_runner_t *r = d->r;
    char key[DLQ_KEY_MAX];
    size_t kl = dlq_key(key, sizeof(key), r->topic[t], m->partition, m->offset);
    es_buf_t dummy = {0};
    es_proj_backend_t be = es_proj_memmap_backend(d->seen);
    *sent = false;
    if (be.get(be.opaque, key, kl, &dummy, errstr, errstr_size) == ES_ERR_OK) {
        es_buf_free(&dummy);
        return ES_ERR_OK;
    }
    rd_kafka_headers_t *orig = NULL;
    rd_kafka_headers_t *h = rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR
                                ? rd_kafka_headers_copy(orig) /* the original's, then ours */
                                : rd_kafka_headers_new(8);
    add_header(h, "source-topic", "%s", r->topic[t]);
    add_header(h, "source-partition", "%d", (int)m->partition);
    add_header(h, "source-offset", "%lld", (long long)m->offset);
    add_header(h, "error", "%s", es_err2name(why));
    add_header(h, "error-message", "%s", msg);
    add_header(h, "projection", "%s", r->def->name);
    add_header(h, "projector", "%s", r->pj->name);
    es_err_t err = ES_ERR_OK;
    if (!d->prod && !(d->prod = es_producer_new(r->pj->conf, NULL, errstr, errstr_size)))
        err = ES_ERR_KAFKA;
    if (!err)
        err = es_producer_send(d->prod, r->dlq[t], m->key, m->key_len, m->payload, m->len, h, NULL,
                               errstr, errstr_size);
    if (err) {
        rd_kafka_headers_destroy(h);
        forget_unflushed(d);
        return err;
    }
    es_proj_memmap_put(d->seen, key, kl, "", 0);
    if (d->nunflushed == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->unflushed = es_realloc(d->unflushed, d->cap * sizeof(*d->unflushed));
    }
    d->unflushed[d->nunflushed++] = es_strndup(key, kl);
    *sent = true;
    return ES_ERR_OK;
}

es_err_t pj_dlq_flush(pj_dlq_t *d, char *errstr, size_t errstr_size)
{
    if (!d->prod)
        return ES_ERR_OK;
    es_err_t err = es_producer_flush(d->prod, PJ_DLQ_FLUSH_TIMEOUT_MS, errstr, errstr_size);
    if (err)
        forget_unflushed(d);
    else
        unflushed_clear(d, false);
    return err;
}
