/*
 * offsets.c — applied offsets, high watermarks and lag.
 *
 * `applied` is what the live store holds: the next offset of every
 * partition, as written in the same RocksDB batch as the views (loop.c).
 * It is loaded from the store when the store opens, and published by the
 * live loop only after a batch is written, so a reader that saw offset N
 * applied (min_position) finds the views of every event below N in the
 * store it then reads.  The same offsets are committed to Kafka
 * asynchronously, only so that lag tools and KEDA see progress: nothing
 * reads them back.  At most once every PJ_KAFKA_COMMIT_MS: a commit per
 * batch was a broker request per command at low load (one of the 19 a
 * one-command transaction costs the broker; docs/projector.md); the live
 * loop's tick sends what the last batches left, so Kafka trails the store by
 * about a second.  A loop's first commit, and one every
 * PJ_KAFKA_RECOMMIT_MS, sends every stored offset: a commit lost to a crash
 * is made up at the next start, and one that failed (the coordinator still
 * loading after a broker restart, test 0313) within seconds; nothing else
 * would send offsets that no longer move.
 *
 * High watermarks come from librdkafka's cache (fetch responses carry
 * them); the live loop refreshes them from that cache after every written
 * batch, before it publishes the batch's offsets, and once a second, when
 * it also queries the broker for a partition the cache has none of yet.
 * The published high watermark is never below the applied offset (the
 * records delivered prove the log reaches it; pj_refresh_lag says why the
 * cache can be behind them).  Lag is per partition high - applied,
 * summed; -1 while any high watermark is unknown, so /readyz never calls a
 * projector ready before it knows.
 *
 * Partitioned mode: lag, commits and watermarks count only the partitions
 * this instance owns; the first high watermark seen after an assignment is
 * where the partition becomes current (partitions.c).
 *
 * When the consumer is idle its position may be past the last applied
 * record: transaction markers (and aborted records) are never delivered.
 * That position is stored too, so lag reaches 0 (pj_advance_past_markers).
 */
#include "loop.h"

#include "escqrs/util.h"

#include <stdio.h>

void pj_publish_applied(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    pj_assert_unlocked(&r->mu);
    pj_mutex_lock(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++)
        for (int p = 0; p < r->nparts[t]; p++)
            r->applied[t][p] = l->stored[t][p];
    pthread_cond_broadcast(&r->cv);
    pj_mutex_unlock(&r->mu);
    pj_commit_to_kafka(l);
}

void pj_commit_to_kafka(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    int64_t now = es_mono_ms();
    if (now - l->kafka_commit_ms < PJ_KAFKA_COMMIT_MS)
        return;
    bool all = now - l->kafka_all_ms >= PJ_KAFKA_RECOMMIT_MS; /* heals a commit that failed */
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(16);
    pj_mutex_lock(&r->mu); /* `owned` moves with the assignment (partitions.c) */
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if ((all || l->stored[t][p] != l->in_kafka[t][p]) && l->stored[t][p] > 0 &&
                r->owned[t][p]) {
                rd_kafka_topic_partition_list_add(tl, r->topic[t], p)->offset = l->stored[t][p];
                l->in_kafka[t][p] = l->stored[t][p];
            }
        }
    }
    pj_mutex_unlock(&r->mu);
    if (tl->cnt) {
        rd_kafka_commit(es_consumer_rk(l->cons), tl, 1); /* async: for lag tools only */
        l->kafka_commit_ms = now;
    }
    if (all)
        l->kafka_all_ms = now;
    rd_kafka_topic_partition_list_destroy(tl);
}

/* The high watermark of partition @p p of topic @p t, -1 unknown; @p query: ask when not cached. */
static int64_t high_watermark(pj_loop_t *l, size_t t, int p, bool query)
{
    int64_t lo = -1, hi = -1;
    rd_kafka_t *rk = es_consumer_rk(l->cons);
    rd_kafka_get_watermark_offsets(rk, l->r->topic[t], p, &lo, &hi);
    if (hi < 0 && query)
        rd_kafka_query_watermark_offsets(rk, l->r->topic[t], p, &lo, &hi, PJ_WATERMARK_QUICK_MS);
    return hi;
}

/*
 * Publish partition (@p t, @p p)'s high watermark @p hi (-1: unknown now),
 * never below @p at, the offset its views hold.
 */
static void publish_high(pj_loop_t *l, size_t t, int p, int64_t hi, int64_t at)
{
    pj_runner_t *r = l->r;
    pj_mutex_lock(&r->mu);
    if (hi >= 0) {
        r->high[t][p] = hi;
        if (r->owned_from[t][p] < 0)
            r->owned_from[t][p] = hi;
    } else if (r->high[t][p] >= 0 && r->high[t][p] < at) {
        r->high[t][p] = at; /* a fetch error left the cache unknown: keep what the records prove */
    }
    pj_mutex_unlock(&r->mu);
    if (hi >= 0)
        es_gauge_set(r->m_lag[t][p], (double)(hi - at));
}

int64_t pj_refresh_lag(pj_loop_t *l, bool publish, bool query)
{
    pj_runner_t *r = l->r;
    int64_t total = 0;
    bool unknown = false;
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (pj_partition_here(r, t, p) == PJ_HERE_ELSEWHERE)
                continue;
            int64_t hi = high_watermark(l, t, p, query);
            int64_t at = l->stored[t][p];
            /*
             * The cached watermark can trail the records delivered (seen
             * once in a full test run: applied 27, high 19 until the next
             * fetch; a fetch response's watermark and its records are not
             * read at one instant).  Records below `at` were delivered, so
             * the log reaches at least that far.
             */
            if (hi >= 0 && hi < at)
                hi = at;
            if (hi < 0)
                unknown = true;
            else
                total += hi - at;
            if (publish)
                publish_high(l, t, p, hi, at);
        }
    }
    return unknown ? -1 : total;
}

bool pj_advance_past_markers(pj_loop_t *l, es_batch_t *b)
{
    pj_runner_t *r = l->r;
    bool moved = false;
    rd_kafka_topic_partition_list_t *tl = pj_consumer_positions(l);
    for (int i = 0; i < tl->cnt; i++) {
        size_t t = pj_topic_index(r, tl->elems[i].topic);
        int p = tl->elems[i].partition;
        if (tl->elems[i].offset > l->next[t][p]) {
            l->next[t][p] = tl->elems[i].offset;
            es_batch_put_offset(b, r->topic[t], p, l->next[t][p]);
            moved = true;
        }
    }
    rd_kafka_topic_partition_list_destroy(tl);
    return moved;
}

es_err_t pj_load_applied(pj_runner_t *r, es_store_t *st, char *errstr, size_t errstr_size)
{
    pj_assert_unlocked(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            int64_t off = 0;
            es_err_t err = es_store_get_offset(st, r->topic[t], p, &off, errstr, errstr_size);
            if (err && err != ES_ERR_NOT_FOUND)
                return err;
            pj_mutex_lock(&r->mu);
            r->applied[t][p] = err ? 0 : off;
            pj_mutex_unlock(&r->mu);
        }
    }
    return ES_ERR_OK;
}

es_err_t pj_wait_applied(pj_runner_t *r, size_t t, int32_t part, int64_t offset, int timeout_ms)
{
    struct timespec dl = es_deadline_in_ms(timeout_ms);
    es_err_t err = ES_ERR_OK;
    pj_assert_unlocked(&r->mu);
    pj_mutex_lock(&r->mu);
    while (r->applied[t][part] <= offset) {
        if (pj_cond_timedwait(&r->cv, &r->mu, &dl) != 0) {
            err = r->applied[t][part] > offset ? ES_ERR_OK : ES_ERR_TIMED_OUT;
            break;
        }
    }
    pj_mutex_unlock(&r->mu);
    return err;
}

/* Sum of high - applied; -1 while unknown.  Locks: the caller holds `mu`. */
static int64_t lag_locked(pj_runner_t *r)
{
    pj_assert_locked(&r->mu);
    if (!r->connected)
        return -1;
    int64_t total = 0;
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (!r->owned[t][p])
                continue;
            if (r->high[t][p] < 0)
                return -1;
            if (r->high[t][p] > r->applied[t][p])
                total += r->high[t][p] - r->applied[t][p];
        }
    }
    return total;
}

int64_t pj_runner_lag(pj_runner_t *r)
{
    pj_assert_unlocked(&r->mu);
    pj_mutex_lock(&r->mu);
    int64_t total = lag_locked(r);
    pj_mutex_unlock(&r->mu);
    return total;
}
