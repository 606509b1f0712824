/*
 * txn.c — one batch of commands is one Kafka transaction.
 *
 *   begin → decide each command (its events produced to the command's own
 *   partition number) → flush, so the delivery reports give every event's
 *   offset → produce each outcome with the position of its command's last
 *   event → produce the <agg>.state record of every aggregate the batch
 *   changed (state.c) → commit → write the new states, outcomes and next
 *   events-topic offsets in one RocksDB batch.  The consumed offsets, with
 *   the consumer's group metadata, are sent to the transaction on a thread
 *   of their own from the events' flush to before the commit (run_transaction).
 *
 * Why it is exactly once: the events, the outcomes, the states and the
 * consumed offsets commit or abort together, so a command is either decided and answered
 * once, or not at all and consumed again.  The offsets carry the consumer's
 * group generation of the moment (KIP-447), so a zombie owner whose
 * partitions moved cannot commit.  Until the commit, the batch's states
 * live in the overlay, so an abort leaves the store untouched; the consumer
 * is rewound to the committed offsets and the batch decided again from it.
 * A commit whose answer did not arrive is retried, never aborted
 * (KAFKA-17754).  The store is written only after the commit, and a crash
 * before that write costs only a catch-up on the next assignment.
 *
 * What each failure leaves: ES_TXN_ABORT (an abortable Kafka error, a
 * record too large for the producer, a command whose writer schema the
 * registry cannot give now) is aborted and rewound here; ES_TXN_FATAL (fenced or fatal producer, a
 * failed abort or rewind, a store or domain failure) asks the caller to
 * re-create the Kafka clients, never to abort, because a commit's outcome
 * may be unknown.
 */
#include "service_int.h"

#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The next offset to consume of every partition in the batch. */
static rd_kafka_topic_partition_list_t *consumed_offsets(rd_kafka_message_t **msgs, size_t n)
{
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(offsets, topic, msgs[i]->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(offsets, topic, msgs[i]->partition);
        tp->offset = msgs[i]->offset + 1;
    }
    return offsets;
}

/* Record why the batch failed, log it at @p level and return @p rc. */
static es_txn_rc_t fail(cs_t *cs, es_txn_rc_t rc, es_log_level_t level, const char *what,
                        const char *detail)
{
    snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "%s%s", what, detail);
    es_log(level, "command-service", "%s", cs->fatal_reason);
    return rc;
}

/* Decide every command of the batch inside the open transaction. */
static es_txn_rc_t decide_all(cs_t *cs, rd_kafka_message_t **msgs, size_t n)
{
    char errstr[1024];
    for (size_t i = 0; i < n; i++) {
        es_err_t err = cs_decide(cs, msgs[i], errstr, sizeof(errstr));
        if (err == ES_ERR_REGISTRY || err == ES_ERR_REGISTRY_UNAVAILABLE)
            /* a command's writer schema the registry cannot give now: the batch
             * waits for it, aborted and decided again after the back-off (0912) */
            return fail(cs, ES_TXN_ABORT, ES_LOG_WARN, "command: ", errstr);
        int32_t p = msgs[i]->partition;
        if (err == ES_ERR_STATE && p >= 0 && p < cs->nparts && cs->refused[p])
            /* refused (decide.c): aborted, then paused; the other partitions go on */
            return fail(cs, ES_TXN_ABORT, ES_LOG_ERROR, "command: ", errstr);
        if (err) /* store or domain failure: never answer from a broken state */
            return fail(cs, ES_TXN_FATAL, ES_LOG_ERROR, "command: ", errstr);
    }
    return ES_TXN_OK;
}

/* Events first: their offsets become the outcomes' positions. */
static es_txn_rc_t flush_events(cs_t *cs)
{
    char errstr[512];
    if (!cs->nev)
        return ES_TXN_OK;
    es_txn_rc_t rc = es_txn_flush(cs->prod, errstr, sizeof(errstr));
    return rc ? fail(cs, rc, ES_LOG_WARN, "event ", errstr) : ES_TXN_OK;
}

/* Every outcome, with the position of its command's last event. */
static es_txn_rc_t produce_outcomes(cs_t *cs)
{
    char errstr[1024];
    es_buf_t result = {0};
    es_txn_rc_t rc = ES_TXN_OK;
    for (size_t i = 0; i < cs->npend && !rc; i++) {
        pend_t *pd = &cs->pends[i];
        if (pd->last_ev >= 0) {
            snprintf(pd->o.position, sizeof(pd->o.position), "%d:%" PRId64,
                     (int)cs->evs[pd->last_ev].partition, cs->evs[pd->last_ev].offset);
            pd->agg->ev_offset = cs->evs[pd->last_ev].offset; /* commands in order: the last */
            pd->agg->publish = true;
        }
        /* a retry answers the first outcome, with its own request's context */
        const es_outcome_t *o = pd->replay ? &pd->replay->o : &pd->o;
        if (cs_produce_outcome(cs, o, &pd->ctx, &result, errstr, sizeof(errstr))) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "outcome: %s", errstr);
            rc = ES_TXN_ABORT;
        } else if (pd->remember) { /* a new outcome (never a retry's): the same bytes */
            pd->remember->o = pd->o;
            es_buf_set(&pd->remember->result, result.data, result.len);
            if (cs_state_publish_outcome(cs, pd->agg, pd->remember->fp, &pd->o, &result, errstr,
                                         sizeof(errstr))) {
                snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "outcome record: %s", errstr);
                rc = ES_TXN_ABORT;
            }
        }
    }
    es_buf_free(&result);
    return rc;
}

/* The state record of every aggregate the batch changed, beside its events (state.c). */
static es_txn_rc_t produce_states(cs_t *cs)
{
    char errstr[1024];
    if (cs_state_produce(cs, errstr, sizeof(errstr)))
        return fail(cs, ES_TXN_ABORT, ES_LOG_WARN, "state: ", errstr);
    return ES_TXN_OK;
}

static es_txn_rc_t commit(cs_t *cs, size_t n)
{
    char errstr[512], what[64];
    snprintf(what, sizeof(what), "a transaction of %zu command(s)", n);
    es_txn_rc_t rc = cs_commit_transaction(cs, what, errstr, sizeof(errstr));
    if (rc)
        return fail(cs, rc, rc == ES_TXN_FATAL ? ES_LOG_ERROR : ES_LOG_WARN, "", errstr);
    if (!atomic_load(&cs->ready) && !cs->recovering)
        cs_set_ready(cs); /* a batch committed: partitions assigned and caught up (after a
                           * recovery, the end of the turn says: cs_turn_passed) */
    es_histogram_observe(cs->h_batch, (double)n);
    return ES_TXN_OK;
}

/* Committed: the store follows (a crash before this only costs a catch-up).  It keeps
 * the commands offsets the transaction committed too: a group offset found behind them
 * later was moved back (catchup.c, check_group_offsets). */
static es_txn_rc_t write_store(cs_t *cs, const rd_kafka_topic_partition_list_t *offsets)
{
    char errstr[1024];
    /* The next events-topic offset of every partition this batch wrote to. */
    int64_t *next_ev = es_calloc(cs->nev + 1, sizeof(*next_ev));
    int32_t *ev_parts = es_calloc(cs->nev + 1, sizeof(*ev_parts));
    size_t nparts = 0;
    for (size_t i = 0; i < cs->nev; i++) {
        size_t k;
        for (k = 0; k < nparts && ev_parts[k] != cs->evs[i].partition; k++)
            ;
        if (k == nparts) {
            ev_parts[nparts++] = cs->evs[i].partition;
            next_ev[k] = -1;
        }
        if (cs->evs[i].offset + 1 > next_ev[k])
            next_ev[k] = cs->evs[i].offset + 1;
    }
    es_batch_t *batch = es_batch_new();
    cs_state_put_offsets(cs, batch); /* a catch-up reads <agg>.state from after them */
    for (int i = 0; i < offsets->cnt; i++)
        es_batch_put_offset(batch, cs->t_cmd, offsets->elems[i].partition,
                            offsets->elems[i].offset);
    es_err_t err =
        cs_overlay_write_with(cs, batch, ev_parts, next_ev, nparts, errstr, sizeof(errstr));
    es_batch_destroy(batch);
    free(next_ev);
    free(ev_parts);
    return err ? fail(cs, ES_TXN_FATAL, ES_LOG_ERROR, "store: ", errstr) : ES_TXN_OK;
}

/* The time since @p *t0 goes to histogram @p h (a step's, the commit's); @p *t0 moves on. */
static void step_done(es_histogram_t *h, double *t0)
{
    double now = es_mono_s();
    es_histogram_observe(h, now - *t0);
    *t0 = now;
}

static void send_offsets_job(void *arg)
{
    cs_t *cs = arg;
    /* cs->prod, cs->cons and cs->txn_offsets stay as they are until the wait */
    cs->offsets_job.rc =
        es_txn_send_offsets(cs->prod, cs->cons, cs->txn_offsets, cs->offsets_job.errstr,
                            sizeof(cs->offsets_job.errstr));
}

/* Decide, then the events, outcomes and states, each step timed; the offsets are given
 * to their thread once the events are flushed (*@p threaded: they were). */
static es_txn_rc_t produce_batch(cs_t *cs, rd_kafka_message_t **msgs, size_t n, bool *threaded,
                                 double *t)
{
    es_txn_rc_t rc;
    if ((rc = decide_all(cs, msgs, n)))
        return rc;
    step_done(cs->h_step[CS_STEP_DECIDE], t);
    if ((rc = flush_events(cs)))
        return rc;
    step_done(cs->h_step[CS_STEP_EVENTS], t);
    *threaded = es_handoff_give(cs->offsets_thread, send_offsets_job, cs);
    if (!*threaded && !cs->offsets_unthreaded_said) {
        cs->offsets_unthreaded_said = true;
        es_log_warn("command-service", "no thread could be created for the transactions' "
                                       "offsets: sent after the outcomes and states, in line");
    }
    if ((rc = produce_outcomes(cs)) || (rc = produce_states(cs)))
        return rc;
    step_done(cs->h_step[CS_STEP_OUTCOMES], t);
    return ES_TXN_OK;
}

/*
 * The steps inside the transaction, up to and including the commit.
 *
 * The offsets' thread: send_offsets_to_transaction (AddOffsetsToTxn, then
 * TxnOffsetCommit: two round trips, about a quarter of one client's command)
 * runs on cs->offsets_thread from the events' flush on, while this thread
 * produces the outcomes and the states; librdkafka serves the one
 * transactional call beside the produces.  Not from the begin: a
 * transaction that begins right after the previous commit finds the
 * coordinator still writing that commit's markers, which refuses
 * AddOffsetsToTxn (CONCURRENT_TRANSACTIONS): retried after 100 ms by
 * librdkafka 2.0.2 (bench/results/2026-12-06-1148.md: p99 at 8 clients 113
 * ms), after 2 ms with our fifth fix (scripts/build-librdkafka), and even so
 * from the begin one client's p50 was not lower and 13 % of the
 * transactions at 8 clients were refused (docs/architecture.md, "Measured",
 * item 5).  Once the events are flushed their AddPartitionsToTxn was
 * accepted, so the markers are written (it is retried after 2 ms until then:
 * fix_txn_concurrent); a batch with no event has no such wait, and its
 * refusal costs milliseconds by the fifth fix.
 * The group metadata is read when the call starts: a rebalance since then
 * leaves it behind, and the broker refuses the offsets (ILLEGAL_GENERATION,
 * abortable), the safe direction.  This thread waits for the offsets on
 * every way out, before any commit, abort or re-creation of the clients:
 * nothing else may use the producer's transaction while the call runs.
 * When no thread can be had, the offsets are sent here, after the states.
 */
static es_txn_rc_t run_transaction(cs_t *cs, rd_kafka_message_t **msgs, size_t n)
{
    char errstr[512];
    es_txn_rc_t rc;
    if ((rc = es_txn_begin(cs->prod, errstr, sizeof(errstr)))) {
        fail(cs, rc, ES_LOG_ERROR, "", errstr);
        return ES_TXN_FATAL; /* nothing was produced; but a producer that cannot begin is broken */
    }
    bool threaded = false;
    double t = es_mono_s();
    rc = produce_batch(cs, msgs, n, &threaded, &t);
    if (threaded)
        es_handoff_wait(cs->offsets_thread);
    else if (!rc)
        send_offsets_job(cs);
    es_txn_rc_t offsets_rc = threaded || !rc ? cs->offsets_job.rc : ES_TXN_OK;
    if (offsets_rc > rc) /* the worse of the two decides: fatal, then abort */
        return fail(cs, offsets_rc, offsets_rc == ES_TXN_FATAL ? ES_LOG_ERROR : ES_LOG_WARN, "",
                    cs->offsets_job.errstr);
    if (rc)
        return rc;
    step_done(cs->h_step[CS_STEP_OFFSETS], &t);
    if ((rc = commit(cs, n)))
        return rc;
    step_done(cs->h_commit, &t);
    return ES_TXN_OK;
}

es_txn_rc_t cs_batch_process(cs_t *cs, rd_kafka_message_t **msgs, size_t n)
{
    char errstr[1024];
    rd_kafka_topic_partition_list_t *offsets = consumed_offsets(msgs, n);
    cs->npend = cs->nev = 0;
    cs_state_offsets_clear(cs); /* an aborted transaction's records are no position */
    cs->txn_offsets = offsets;
    es_txn_rc_t rc = run_transaction(cs, msgs, n); /* sends cs->txn_offsets */
    cs->txn_offsets = NULL;
    if (rc == ES_TXN_OK) {
        double t = es_mono_s();
        rc = write_store(cs, offsets);
        step_done(cs->h_step[CS_STEP_STORE], &t);
    } else if (rc == ES_TXN_ABORT) {
        es_counter_add(cs->c_aborts, 1);
        /* ES_TXN_ABORT stays the answer when the abort works: the caller backs off */
        es_txn_rc_t a = es_txn_abort(cs->prod, cs->cons, offsets, errstr, sizeof(errstr));
        if (a)
            rc = fail(cs, a, ES_LOG_ERROR, "", errstr);
    }
    cs_overlay_clear(cs);
    rd_kafka_topic_partition_list_destroy(offsets);
    return rc;
}
