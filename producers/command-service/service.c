/*
 * service.c — the exactly-once command loop of escqrs-command-service.
 *
 * The service is a consumer group on <agg>.commands; the owner of partition
 * p is the single writer of every aggregate in p, so deciding on the state
 * in the local RocksDB store is enough to keep invariants under any
 * concurrency.  The loop polls a batch (the first command, then what
 * arrives within `batch.linger.ms`, at most `batch.max`) and runs it as one
 * Kafka transaction (txn.c: events, outcomes and consumed offsets commit
 * together, the store follows).  Before any partition is decided, the store
 * is caught up to the end of its events (catchup.c), so the store is only
 * ever a cache of the log.
 *
 * Two things the loop itself must get right:
 *
 * - A batch polled across a rebalance (the first poll of every start runs
 *   the assignment) is decided by nobody: every partition still owned is
 *   sought back to its committed offset, so each command is decided by its
 *   current owner from the committed position.  Dropping the batch with the
 *   consumer's position past it would let the next commit move the group
 *   past those commands for good (fault test 0901 lost 270 of 300).
 * - Recovery instead of exit: a fenced or fatal client, a failed abort or a
 *   failed rewind destroys the producer (never abort after a commit of
 *   unknown outcome: KAFKA-17754) and both consumers without waiting for
 *   the broker, waits (doubling back-off), and creates them again: the new
 *   producer's init_transactions fences the old epoch and aborts its open
 *   transaction, the new consumer starts from the committed offsets, and
 *   the store is caught up as at any assignment.  Only an error no retry
 *   can fix (configuration, topics that disagree, a refused schema) stops
 *   the loop, with status 2.
 */
#include "service_int.h"

#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define POLL_FIRST_MS      100 /* wait for the first command of a batch */
#define ABORT_NAP_STEP_MS  100 /* back-off per consecutive aborted transaction... */
#define ABORT_NAP_MAX_STEP 50  /* ...up to this many steps (5 s) */
#define ABORTS_NOT_READY   3   /* consecutive aborts after which /readyz says so */
#define SPACE_CHECK_MS     500 /* how often a nap on a full disk asks for space */

/* Has the store's filesystem its reserve (store.min.free.mb)? */
static bool store_has_room(cs_t *cs)
{
    return es_store_has_room(es_conf_get(cs->conf, "store.path"),
                             (size_t)es_conf_get_int(cs->conf, "store.min.free.mb"));
}

/* Sleep @p ms unless asked to stop; a nap that began on a full disk ends when
 * the space is back (the back-off grows to 30 s, an operator's fix should not
 * wait for it; 0908). */
static void nap(cs_t *cs, int ms)
{
    bool short_of_space = !store_has_room(cs);
    for (int slept = 0; slept < ms && !*cs->stop; slept += CS_NAP_SLICE_MS) {
        if (short_of_space && slept % SPACE_CHECK_MS == 0 && slept && store_has_room(cs))
            return;
        usleep(CS_NAP_SLICE_MS * 1000);
    }
}

/* Errors that time, or another process, can fix: wait and try again. */
static bool transient(es_err_t err)
{
    switch (err) {
    case ES_ERR_KAFKA:
    case ES_ERR_KAFKA_FATAL:
    case ES_ERR_TIMED_OUT:
    case ES_ERR_REGISTRY:
    case ES_ERR_REGISTRY_UNAVAILABLE:
    case ES_ERR_STORE:
    case ES_ERR_IO:
        return true;
    default:
        return false;
    }
}

/* A consumer error of a poll; a fatal consumer marks the clients for re-creation. */
static void poll_error(cs_t *cs, rd_kafka_message_t *m)
{
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        es_log_warn("command-service", "consume: %s", rd_kafka_message_errstr(m));
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        char reason[512];
        rd_kafka_fatal_error(es_consumer_rk(cs->cons), reason, sizeof(reason));
        cs->fatal = true;
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "consumer: %s", reason);
    }
}

/*
 * Poll one batch: the first command, what is already queued, and, under load,
 * what arrives within the linger.  Load is the batch before having held more
 * than one command: a lone client's command is decided at once instead of
 * waiting out batch.linger.ms for company that never comes (issue 17: the
 * linger was 2 of the 8 ms of a single client's p50).
 */
static size_t poll_batch(cs_t *cs, rd_kafka_message_t **msgs)
{
    size_t n = 0;
    int64_t linger_until = 0;
    int linger_ms = cs->last_batch > 1 ? cs->linger_ms : 0;
    rd_kafka_message_t *m = es_consumer_poll(cs->cons, POLL_FIRST_MS);
    while (m) {
        if (m->err) {
            poll_error(cs, m);
            rd_kafka_message_destroy(m);
        } else {
            double age = es_message_age_s(m);
            if (age >= 0)
                es_histogram_observe(cs->h_wait, age);
            msgs[n++] = m;
        }
        if (n == (size_t)cs->batch_max || cs->fatal)
            break;
        /* Linger a little once a batch has begun: fuller transactions under load. */
        if (n && !linger_until)
            linger_until = es_mono_ms() + linger_ms;
        int64_t left = n ? linger_until - es_mono_ms() : 0;
        m = es_consumer_poll(cs->cons, left > 0 ? (int)left : 0);
    }
    if (n)
        cs->last_batch = n;
    return n;
}

/*
 * A rebalance ran inside one of the polls of this batch.  Commands polled
 * before it may be of partitions that are no longer ours; commands of
 * partitions we kept or got were polled past, so the consumer's position is
 * beyond them.  Deciding none of them and seeking every partition we own now
 * back to its committed offset gives each command to its current owner, from
 * the committed position: nothing is skipped, nothing decided twice.
 */
static void drop_batch_after_rebalance(cs_t *cs, size_t n)
{
    char errstr[512];
    es_log_info("command-service",
                "a rebalance ran while %zu command(s) were polled: deciding them again from the "
                "committed offsets",
                n);
    if (es_consumer_rewind(cs->cons, NULL, errstr, sizeof(errstr))) {
        cs->fatal = true; /* a new consumer starts from the committed offsets */
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason),
                 "cannot rewind to the committed offsets after a rebalance: %s", errstr);
    }
}

/*
 * Re-create every Kafka client after a fatal or fenced client, instead of
 * exiting: a broker restart can fence a static member or leave the producer
 * in a state only a new one leaves (see the top of this file).
 */
static void recover(cs_t *cs, int *backoff_ms)
{
    es_log_error("command-service", "re-creating the Kafka clients in %d ms after: %s", *backoff_ms,
                 cs->fatal_reason);
    cs_set_not_ready(cs, "recovering after: %s", cs->fatal_reason);
    cs->recovering = true;
    cs->caught_up = false;
    es_counter_add(cs->c_recoveries, 1);
    cs_clients_close(cs);
    cs->fatal = false;
    nap(cs, *backoff_ms);
    *backoff_ms = es_backoff_next(*backoff_ms, CS_BACKOFF_MAX_MS);
}

typedef enum { CONNECTED, RETRY_LATER, GIVE_UP } connect_rc_t;

/* Connect what is missing; wait the back-off after an error time can fix. */
static connect_rc_t ensure_connected(cs_t *cs, int *backoff_ms)
{
    char errstr[1024];
    es_err_t err = cs_connect(cs, errstr, sizeof(errstr));
    if (!err)
        return CONNECTED;
    if (!transient(err)) {
        es_log_error("command-service", "%s", errstr);
        return GIVE_UP;
    }
    es_log_warn("command-service", "not ready, retrying in %d ms: %s", *backoff_ms, errstr);
    cs_set_not_ready(cs, "%s", errstr);
    cs_clients_close(cs);
    nap(cs, *backoff_ms);
    *backoff_ms = es_backoff_next(*backoff_ms, CS_BACKOFF_MAX_MS);
    return RETRY_LATER;
}

/* Run one polled batch; @p aborts counts consecutive aborted transactions. */
static void run_batch(cs_t *cs, rd_kafka_message_t **msgs, size_t n, int gen, int *aborts,
                      int *backoff_ms)
{
    if (atomic_load(&cs->generation) != gen) {
        drop_batch_after_rebalance(cs, n);
        return;
    }
    if (cs->fatal)
        return;
    es_txn_rc_t t = cs_batch_process(cs, msgs, n);
    if (t == ES_TXN_FATAL)
        cs->fatal = true;
    else if (t == ES_TXN_OK)
        *backoff_ms = CS_BACKOFF_MIN_MS;
    /* Back off while transactions keep failing (broker trouble, a record the
     * broker refuses), not while they work; say so once it is not a blip. */
    *aborts = t == ES_TXN_ABORT ? *aborts + 1 : 0;
    if (*aborts >= ABORTS_NOT_READY)
        cs_set_not_ready(cs, "%d transactions aborted in a row, the last: %s", *aborts,
                         cs->fatal_reason);
    if (*aborts)
        nap(cs, (*aborts < ABORT_NAP_MAX_STEP ? *aborts : ABORT_NAP_MAX_STEP) * ABORT_NAP_STEP_MS);
}

int cs_run(cs_t *cs, volatile sig_atomic_t *stop)
{
    rd_kafka_message_t **msgs = es_calloc((size_t)cs->batch_max, sizeof(*msgs));
    int rc = 0, aborts = 0, backoff_ms = CS_BACKOFF_MIN_MS;
    bool idle = false, baselining = false;
    cs->stop = stop;
    while (!*stop) {
        connect_rc_t c = cs->prod ? CONNECTED : ensure_connected(cs, &backoff_ms);
        if (c == GIVE_UP) {
            rc = 2;
            break;
        }
        if (c == RETRY_LATER)
            continue;
        if (cs->fatal) {
            recover(cs, &backoff_ms);
            continue;
        }
        /* Between batches, in transactions of their own (state.c), one partition's
         * per turn: begun when no command waits (or after BASELINE_DEFER_MS under a
         * load that never pauses), then one per turn until all are written, so a
         * command waits for one baseline at most and a kill soon after a cold start
         * finds the markers written. */
        if (cs->nbaseline && (idle || baselining || es_mono_ms() >= cs->baseline_due_ms)) {
            es_txn_rc_t t = cs_state_write_baseline(cs);
            baselining = t == ES_TXN_OK && cs->nbaseline;
            if (t == ES_TXN_FATAL) {
                cs->fatal = true;
                continue;
            }
            if (t == ES_TXN_ABORT)
                nap(cs, CS_BACKOFF_MIN_MS); /* aborted: commands go on, it is tried again */
        }
        cs_pause_refused(cs); /* before any poll could give their commands */
        if (cs->fatal)
            continue;
        int gen = atomic_load(&cs->generation);
        size_t n = poll_batch(cs, msgs);
        idle = n == 0;
        if (n)
            run_batch(cs, msgs, n, gen, &aborts, &backoff_ms);
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
        cs_turn_passed(cs);
        /* at the end of a turn: a baseline written and an assignment's new ones counted */
        es_gauge_set(cs->g_baselines_pending, (double)cs->nbaseline);
    }
    atomic_store(&cs->ready, false);
    free(msgs);
    return rc;
}
