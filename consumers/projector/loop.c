/*
 * loop.c — the consume loop: fold a batch, commit a batch, tick.
 *
 * Exactly once, in the order pj_loop_run() does it:
 *
 *  1. Start (loop_start): read the DLQ's existing source positions
 *     (dlq.c), then assign every partition at the next offset stored in
 *     this loop's own store, never at Kafka's committed offsets
 *     (consumer.c).  Whatever happened before, the store says exactly
 *     which events its views contain.
 *  2. Fold a batch (fold_batch): wait for the first record only, then take
 *     what is queued up to batch.max.events.  Each record at or past the
 *     partition's next offset is decoded and folded in its own event scope
 *     into one transaction; next[t][p] moves past a record only once it is
 *     handled: folded, or sent to the DLQ.  A record that must stop the
 *     loop (the halting rule in projector.h) or be read again (the registry
 *     is away) leaves next[t][p] before it.  Each touched partition's next
 *     offset goes into the same RocksDB write batch as the view changes.
 *  3. Commit the batch (commit_batch): the DLQ records of the batch are
 *     flushed first (if they cannot be, dlq_failed drops the batch:
 *     it is folded again after a back-off), then the view changes and the
 *     offsets are written as one atomic RocksDB batch (WAL on; store.sync
 *     adds an fsync).  kill -9 before the write: nothing of the batch exists
 *     and it is read again from the stored offsets, and the DLQ send is not
 *     repeated (step 1).  kill -9 after: all of it exists, offsets included.
 *     A full disk makes the same batch wait and be written again, never
 *     half.  Then the batch is published (applied offsets, min_position).
 *  4. Tick: lag, gauges, the Kafka commit for lag tools (live), progress,
 *     hand-over and swap (rebuild), or stop partitions and finish (frozen);
 *     a loop ends at a batch boundary only: a stop, hand-over or cancel never splits one.
 *
 * Pipelined (live and rebuild modes): a full batch is written by the
 * loop's writer thread (writer.c, which says why exactly once holds) while
 * the loop folds the next; the next batch reads it from the transaction's
 * sealed map.  settle() waits for the write, moves l->stored (the offsets
 * the store holds: what modes report and publish), then runs `written` and
 * tick.  Frozen builds, retries, halts and idle batches are written in line.
 *
 * A transient failure in the middle of a batch (retry_later: the registry
 * away) writes what was handled before it, seeks the
 * consumer back to the next offsets and waits with a back-off.
 *
 * The loop knows only the live behaviour (pj_live_ops, in live.c); a
 * rebuild or a frozen build is the same loop with other hooks (loop.h).
 * Nothing a loop needs from outside is required at its start: the broker,
 * the registry and the topics are retried with a back-off (state
 * "starting", said on /readyz), so the process never crash-loops.
 */
#include "loop.h"

#include "escqrs/util.h"
#include "escqrs/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG "projector"

pj_loop_t *pj_loop_new(pj_runner_t *r, const pj_loop_ops_t *ops, es_store_t *st, int generation)
{
    pj_loop_t *l = es_calloc(1, sizeof(*l));
    l->r = r;
    l->ops = ops;
    l->st = st;
    l->generation = generation;
    l->last_tick_ms = l->log_ms = es_now_ms();
    if (ops == &pj_live_ops)
        l->handover = &r->live_stop;
    return l;
}

/* Drop what loop_open() built (to retry or to finish). */
static void loop_reset(pj_loop_t *l)
{
    pj_consumer_close(l);
    pj_dlq_destroy(l->dlq);
    l->dlq = NULL;
}

void pj_loop_free(pj_loop_t *l)
{
    if (!l)
        return;
    pj_writer_stop(&l->writer);
    if (l->queue)
        rd_kafka_queue_destroy(l->queue);
    for (size_t t = 0; t < ES_PROJ_MAX_AGGREGATES; t++)
        free(l->touched[t]);
    free(l->msgs);
    es_batch_destroy(l->batch);
    es_batch_destroy(l->writing.batch);
    if (l->txn)
        es_proj_txn_destroy(l->txn);
    if (l->rd)
        es_proj_reader_destroy(l->rd);
    loop_reset(l);
    free(l);
}

void pj_loop_become_live(pj_loop_t *l)
{
    l->ops = &pj_live_ops;
    l->cancel = NULL;
    l->handover = &l->r->live_stop;
}

bool pj_loop_sleep(const pj_runner_t *r, int ms)
{
    for (int slept = 0; slept < ms; slept += PJ_SLEEP_SLICE_MS) {
        if (atomic_load(&r->pj->stop))
            return true;
        usleep(PJ_SLEEP_SLICE_MS * 1000);
    }
    return atomic_load(&r->pj->stop);
}

static void loop_halt(pj_loop_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A halting failure: the mode says what halts (projector.h); the loop ends. */
static void loop_halt(pj_loop_t *l, const char *fmt, ...)
{
    char msg[PJ_ERRSTR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->halted = true;
    if (l->ops->halt)
        l->ops->halt(l, msg);
}

/* The projector stops, or the loop is cancelled (a frozen view deleted). */
static bool loop_cancelled(const pj_loop_t *l)
{
    return atomic_load(&l->r->pj->stop) || (l->cancel && atomic_load(l->cancel));
}

/* ------------------------------------------------------------ 1. start */

static es_err_t loop_open(pj_loop_t *l)
{
    es_err_t err = pj_dlq_load(l->r, &l->dlq, l->errstr, sizeof(l->errstr));
    if (!err)
        err = pj_consumer_open(l);
    if (!err && l->ops->opened)
        err = l->ops->opened(l);
    return err;
}

/*
 * Kafka or the registry may not be reachable yet (a new topic has no leader
 * for a moment): retry with a back-off instead of dying, so an orchestrator
 * never sees a crash loop; the mode says whether to give up.
 */
static bool loop_start(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    es_proj_backend_t be = pj_store_backend(l->st);
    l->rd = es_proj_reader_new(&be);
    l->txn = es_proj_txn_new(l->rd);
    /* a store built from offset 0 holds only what this loop folds into it: its
     * gets of keys the loop never wrote need no store read (projection.h) */
    if (!es_store_holds_view_keys(l->st))
        es_proj_txn_base_starts_empty(l->txn);
    for (int attempt = 1; loop_open(l); attempt++) {
        loop_reset(l);
        if (loop_cancelled(l))
            return false;
        if (l->ops->start_failed && l->ops->start_failed(l, attempt))
            return false;
        if (attempt == 1 || attempt % PJ_START_LOG_EVERY == 0)
            es_log_warn(LOG, "%s: cannot start yet (attempt %d): %s", r->def->name, attempt,
                        l->errstr);
        usleep((useconds_t)pj_backoff_ms(attempt, PJ_START_BACKOFF_MS) * 1000);
    }
    l->queue = rd_kafka_queue_get_consumer(es_consumer_rk(l->cons));
    for (size_t t = 0; t < r->ntopics; t++)
        l->touched[t] = es_calloc((size_t)r->nparts[t], sizeof(bool));
    if (l->ops->started)
        l->ops->started(l);
    return true;
}

bool pj_loop_give_up(pj_loop_t *l, int attempt, char *error, size_t errorsz)
{
    if (attempt < PJ_SIDE_START_ATTEMPTS)
        return false;
    pj_mutex_lock(&l->r->mu);
    snprintf(error, errorsz, "%s", l->errstr);
    pj_mutex_unlock(&l->r->mu);
    es_log_error(LOG, "%s: %s loop cannot start: %s", l->r->def->name, l->ops->kind, l->errstr);
    return true;
}

/* ------------------------------------------------------- 2. fold a batch */

/* Wait for the first record only, then take what is queued. */
static void consume(pj_loop_t *l, pj_batch_t *b)
{
    int max = l->r->pj->batch_max;
    /* waiting for a full batch would add up to the wait to every read-your-writes
     * query (measured: end-to-end p50 89 ms at 600 commands/s) */
    ssize_t n = rd_kafka_consume_batch_queue(l->queue, PJ_CONSUME_WAIT_MS, l->msgs, 1);
    if (n == 1 && max > 1) {
        ssize_t more = rd_kafka_consume_batch_queue(l->queue, 0, l->msgs + 1, (size_t)max - 1);
        n += more > 0 ? more : 0;
    }
    b->n = n;
    b->start_s = es_mono_s();
}

static es_err_t decode_and_fold(pj_loop_t *l, size_t t, const rd_kafka_message_t *m, char *ferr,
                                size_t ferrsz)
{
    avro_value_t *value = NULL;
    if (!m->payload) {
        snprintf(ferr, ferrsz, "record has no value");
        return ES_ERR_DECODE;
    }
    es_err_t err = es_serde_decode(l->serde[t], m->payload, m->len, &value, ferr, ferrsz);
    if (l->r->pj->partitioned) { /* the partition's slice (partitions.c) */
        char prefix[PJ_SLICE_PREFIX_LEN];
        pj_slice_prefix(t, m->partition, prefix);
        es_proj_txn_set_prefix(l->txn, prefix, sizeof(prefix));
    }
    return err ? err : pj_fold_record(l->r, t, m, value, l->txn, ferr, ferrsz);
}

/* A record that failed: true when it is handled (sent to the DLQ) and its offset moves. */
static bool handle_failure(pj_loop_t *l, size_t t, const rd_kafka_message_t *m, es_err_t err,
                           const char *ferr, pj_batch_t *b)
{
    pj_runner_t *r = l->r;
    bool sent = false;
    if (err == ES_ERR_REGISTRY_UNAVAILABLE || err == ES_ERR_REGISTRY) {
        /* the writer schema cannot be fetched now: not a poison event */
        snprintf(l->errstr, sizeof(l->errstr), "schema registry: %.480s", ferr);
        b->retry = true;
        return false;
    }
    if (err == ES_ERR_STORE) { /* our own store failed, not the event */
        loop_halt(l, "store: %s", ferr);
        return false;
    }
    if (r->pj->halt_on_error) { /* the offset stays before the poison event */
        loop_halt(l, "poison event %s/%d@%lld: %s: %s", r->topic[t], (int)m->partition,
                  (long long)m->offset, es_err2name(err), ferr);
        return false;
    }
    char why[PJ_ERRSTR_MAX / 2];
    if (pj_dlq_send(l->dlq, t, m, err, ferr, &sent, why, sizeof(why))) {
        /* the DLQ cannot take it now: not the event's fault, the batch is folded again */
        snprintf(l->errstr, sizeof(l->errstr), "DLQ send failed, the batch is folded again: %s",
                 why);
        b->retry = b->dlq_failed = true;
        return false;
    }
    if (sent) {
        b->dlq_sent = true;
        b->dlq++;
        es_log_warn(LOG, "%s: poison event %s/%d@%lld to %s: %s: %s", r->def->name, r->topic[t],
                    (int)m->partition, (long long)m->offset, r->dlq[t], es_err2name(err), ferr);
    }
    return true;
}

static void fold_message(pj_loop_t *l, const rd_kafka_message_t *m, pj_batch_t *b)
{
    pj_runner_t *r = l->r;
    if (l->halted || b->retry || m->err) {
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            es_log_warn(LOG, "%s: consume: %s", r->def->name, rd_kafka_message_errstr(m));
        return;
    }
    size_t t = pj_topic_index(r, rd_kafka_topic_name(m->rkt));
    if (t == SIZE_MAX || m->partition >= r->nparts[t] || m->offset < l->next[t][m->partition])
        return; /* not ours, or already applied */
    if (l->ops->admit && !l->ops->admit(l, t, m))
        return;
    char ferr[PJ_ERRSTR_MAX] = "";
    es_err_t err = decode_and_fold(l, t, m, ferr, sizeof(ferr));
    if (err && !handle_failure(l, t, m, err, ferr, b))
        return;
    if (!err)
        b->applied++;
    l->next[t][m->partition] = m->offset + 1;
    l->touched[t][m->partition] = true;
}

static void fold_batch(pj_loop_t *l, pj_batch_t *b)
{
    pj_runner_t *r = l->r;
    consume(l, b);
    for (ssize_t i = 0; i < b->n; i++)
        fold_message(l, l->msgs[i], b);
    /* one offset record per partition touched (not per event: each put is a
     * memtable insert) */
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (l->touched[t][p]) {
                es_batch_put_offset(l->batch, r->topic[t], p, l->next[t][p]);
                l->touched[t][p] = false;
            }
        }
    }
    for (ssize_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy(l->msgs[i]);
    if (b->n <= 0 && !l->halted && l->ops->advance_idle)
        pj_advance_past_markers(l, l->batch);
}

/* ----------------------------------------------------- 3. commit a batch */

static void put_batch_cb(void *opaque, const char *key, size_t keylen, const char *val,
                         size_t vallen)
{
    if (val)
        es_batch_put(opaque, key, keylen, val, vallen);
    else
        es_batch_delete(opaque, key, keylen);
}

/*
 * Write the batch; while the disk is too full, wait and write the same batch
 * again (nothing of it is written meanwhile, so nothing is lost or doubled).
 */
static es_err_t write_batch(pj_loop_t *l, es_batch_t *batch)
{
    bool waited = false;
    es_err_t err;
    while ((err = es_store_write(l->st, batch, l->errstr, sizeof(l->errstr))) == ES_ERR_NO_SPACE) {
        if (!waited && !l->halted && l->ops->waits) /* a halt stays said */
            l->ops->waits(l, PJ_WAITING, true);
        waited = true;
        if (loop_cancelled(l))
            return err;
        usleep(PJ_NO_SPACE_RETRY_MS * 1000);
    }
    if (waited && !err && !l->halted && l->ops->running)
        l->ops->running(l);
    return err;
}

/* Every partition's offset of @p src into @p dst (next, stored, the batch in flight). */
static void copy_offsets(const pj_loop_t *l, int64_t *const *dst, int64_t *const *src)
{
    for (size_t t = 0; t < l->r->ntopics; t++)
        memcpy(dst[t], src[t], (size_t)l->r->nparts[t] * sizeof(int64_t));
}

/*
 * The DLQ records of @p b could not be sent or delivered (refused, or the
 * broker gone past the flush's wait): nothing of the batch is written, its
 * folds and its offset records are dropped and the offsets go back to the
 * stored ones (no batch is in flight: settle() came first), to be folded and
 * sent again.  true: dropped.
 */
static bool dlq_failed(pj_loop_t *l, const pj_batch_t *b)
{
    char why[PJ_ERRSTR_MAX / 2];
    if (!b->dlq_failed) {
        if (!b->dlq_sent || !pj_dlq_flush(l->dlq, why, sizeof(why)))
            return false;
        snprintf(l->errstr, sizeof(l->errstr), "DLQ flush failed, the batch is folded again: %s",
                 why);
    }
    es_log_warn(LOG, "%s: %s", l->r->def->name, l->errstr);
    es_proj_txn_clear(l->txn);
    es_batch_clear(l->batch); /* the offsets fold_batch put: never written ahead of the views */
    copy_offsets(l, l->next, l->stored);
    if (l->ops->dropped)
        l->ops->dropped(l);
    return true;
}

/* The write failed for good: halt, unless the projector is stopping.  Returns true. */
static bool write_failed(pj_loop_t *l, const char *why)
{
    if (!atomic_load(&l->r->pj->stop))
        loop_halt(l, "store write: %s", why);
    return true;
}

/*
 * A batch met a transient failure (the registry is unreachable): what was
 * applied before it is written; seek every partition back to the loop's next
 * offsets so the rest is delivered again, and wait with a back-off.
 */
static void retry_later(pj_loop_t *l)
{
    pj_consumer_rewind(l);
    if (l->ops->waits)
        l->ops->waits(l, PJ_STARTING, l->retries == 0);
    l->retries++;
    pj_loop_sleep(l->r, pj_backoff_ms(l->retries, PJ_RETRY_BACKOFF_MS));
}

/* ---------------------------------------------------------------- 4. tick */

/* After a batch: the mode's step, or its tick when due.  true: the loop ends. */
static bool tick(pj_loop_t *l, const pj_batch_t *b)
{
    if (l->ops->step)
        return l->ops->step(l, b);
    int64_t now = es_now_ms();
    if (b->n > 0 && now - l->last_tick_ms < PJ_TICK_MS)
        return false;
    int64_t events = l->since_tick;
    double dt = (double)(now - l->last_tick_ms) / 1000.0;
    l->since_tick = 0;
    l->last_tick_ms = now;
    return l->ops->tick && l->ops->tick(l, events, dt);
}

/* A batch is in the store: counts, retries, the mode's tick.  true: the loop ends. */
static bool after_batch(pj_loop_t *l, const pj_batch_t *b)
{
    l->since_tick += b->applied + b->dlq;
    if (l->retries && b->n > 0 && !l->halted && l->ops->running) { /* never over HALTED */
        l->retries = 0;
        l->ops->running(l);
    }
    return tick(l, b);
}

/* ----------------------------------------------------------- pipelined */

/* May batch @p b be written while the next one is folded? */
static bool can_pipeline(const pj_loop_t *l, const pj_batch_t *b)
{
    return !l->ops->step && b->n > 0 && !b->retry && !l->halted && es_proj_txn_count(l->txn) > 0;
}

/*
 * Hand batch @p b over, to the writer thread with @p threaded (the loop folds
 * on), else to finish_write() in line.  Nothing is pending.
 */
static void hand_batch(pj_loop_t *l, const pj_batch_t *b, bool threaded)
{
    es_proj_txn_foreach(l->txn, put_batch_cb, l->batch);
    es_proj_txn_seal(l->txn); /* the next folds read it until it is stored */
    es_batch_t *full = l->batch;
    l->batch = l->writing.batch ? l->writing.batch : es_batch_new();
    l->writing.batch = full;
    l->writing.b = *b;
    copy_offsets(l, l->writing.next, l->next);
    l->writing.pending = true;
    l->writing.threaded = threaded && pj_writer_hand(&l->writer, l->st, l->writing.batch);
}

/* The batch handed over is written (or is, in line, now), then visible.  true: it failed. */
static bool finish_write(pj_loop_t *l)
{
    l->writing.pending = false;
    es_err_t err = ES_ERR_NO_SPACE; /* not written yet: in line, below */
    if (l->writing.threaded && (err = pj_writer_wait(&l->writer)) && err != ES_ERR_NO_SPACE)
        snprintf(l->errstr, sizeof(l->errstr), "%s", l->writer.errstr);
    if (err == ES_ERR_NO_SPACE) /* nothing of it was written: wait for space, in line */
        err = write_batch(l, l->writing.batch);
    if (err)
        return write_failed(l, l->errstr);
    es_batch_clear(l->writing.batch);
    es_proj_txn_release_sealed(l->txn);
    copy_offsets(l, l->stored, l->writing.next); /* what the mode may report now */
    pj_batch_t *b = &l->writing.b;
    b->seconds = es_mono_s() - b->start_s; /* until visible */
    if (l->ops->written)
        l->ops->written(l, b);
    return false;
}

/* Views and offsets in one atomic batch, in line.  true: the loop ends. */
static bool commit_batch(pj_loop_t *l, const pj_batch_t *b)
{
    if (es_batch_count(l->batch) == 0 && es_proj_txn_count(l->txn) == 0)
        return false;
    hand_batch(l, b, false);
    return finish_write(l);
}

/* The batch in flight: written, visible, counted and ticked.  true: the loop ends. */
static bool settle(pj_loop_t *l)
{
    return l->writing.pending && (finish_write(l) || after_batch(l, &l->writing.b));
}

/* -------------------------------------------------------------- the loop */

void pj_loop_run(pj_loop_t *l)
{
    l->batch = es_batch_new();
    l->msgs = es_calloc((size_t)l->r->pj->batch_max, sizeof(*l->msgs));
    if (!loop_start(l)) {
        pj_loop_end(l);
        return;
    }
    /* between batches only: a stop, a cancel or a hand-over never splits one */
    while (!loop_cancelled(l) && !l->halted && !(l->handover && atomic_load(l->handover))) {
        /* nothing queued: the batch in flight becomes visible before the loop waits */
        if (l->writing.pending && rd_kafka_queue_length(l->queue) == 0 && settle(l))
            break;
        pj_batch_t b = {0};
        fold_batch(l, &b);
        if (settle(l)) /* the batch before this one is written first */
            break;
        if (dlq_failed(l, &b)) {
            if (!l->halted) /* a halt stays said */
                retry_later(l);
            continue;
        }
        if (can_pipeline(l, &b)) {
            hand_batch(l, &b, true);
            continue;
        }
        if (commit_batch(l, &b))
            break;
        if (b.retry && !l->halted) {
            l->since_tick += b.applied + b.dlq;
            retry_later(l);
            continue;
        }
        if (after_batch(l, &b))
            break;
    }
    settle(l); /* what is in flight is written (or fails) before the loop ends */
    pj_loop_end(l);
}

void pj_loop_end(pj_loop_t *l)
{
    es_log_info(LOG, "%s: %s loop stopped", l->r->def->name, l->ops->kind);
    if (l->ops->finish)
        l->ops->finish(l);
    pj_loop_free(l);
}

static void *loop_thread(void *arg)
{
    pj_loop_run(arg);
    return NULL;
}

bool pj_loop_spawn(pj_loop_t *l, pthread_t *th)
{
    return pthread_create(th, NULL, loop_thread, l) == 0;
}

/* The live and rebuild modes' halt: the runner is HALTED with the reason. */
void pj_loop_halt_runner(pj_loop_t *l, const char *msg)
{
    pj_runner_set_state(l->r, PJ_HALTED, "%s", msg);
}
