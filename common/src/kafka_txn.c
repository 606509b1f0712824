/*
 * kafka_txn.c — the transactional batch of a consume-transform-produce loop
 * (see kafka.h): begin, flush, send offsets, commit, abort and rewind.
 *
 * The correctness argument each step carries:
 *
 * - Offsets go into the transaction with the consumer's group metadata of
 *   the moment they are sent, never one remembered from earlier: after a
 *   rebalance the generation has moved on, and the broker then refuses the
 *   offsets of a zombie owner (KIP-447), so two owners cannot both commit a
 *   command's outcome.
 * - A commit whose answer did not arrive (a retriable error) is retried,
 *   never aborted: the broker may have committed it, and an abort after
 *   that is KAFKA-17754 (records lost or doubled).  Only the caller may stop
 *   the retries (when the process stops); the open transaction is then left
 *   to the next instance with the same transactional id, whose
 *   init_transactions ends it.
 * - An abortable error is aborted and the consumer sought back to the
 *   committed offsets: the consumer's position is past the batch, and
 *   without the rewind the next commit would move the group past commands
 *   nobody decided.  A failed abort or rewind is fatal, because only new
 *   clients are known to start from the committed offsets.
 * - Delivery failures are judged per transaction (reset at begin): an aborted
 *   transaction's purged records must not condemn the next one.
 */
#include "kafka_int.h"
#include "escqrs/log.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

/* What an error of a transactional call leaves the caller to do; destroys it. */
static es_txn_rc_t txn_fail(const char *what, rd_kafka_error_t *e, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    es_txn_rc_t rc = rd_kafka_error_is_fatal(e) || code == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                         ? ES_TXN_FATAL /* fenced: another instance owns our identity */
                     : rd_kafka_error_txn_requires_abort(e) ? ES_TXN_ABORT
                                                            : ES_TXN_FATAL;
    snprintf(errstr, errstr_size, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return rc;
}

es_txn_rc_t es_txn_begin(es_producer_t *prod, char *errstr, size_t errstr_size)
{
    atomic_store(&prod->txn_err, 0);
    rd_kafka_error_t *e = rd_kafka_begin_transaction(prod->rk);
    return e ? txn_fail("begin_transaction", e, errstr, errstr_size) : ES_TXN_OK;
}

/* rd_kafka_escqrs_txn_add_partitions(), when the librdkafka loaded has it (dlsym). */
typedef rd_kafka_error_t *add_partitions_fn(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
static add_partitions_fn *add_partitions;
static pthread_once_t add_partitions_once = PTHREAD_ONCE_INIT;

static void add_partitions_lookup(void)
{
    *(void **)&add_partitions = dlsym(RTLD_DEFAULT, "rd_kafka_escqrs_txn_add_partitions");
}

bool es_txn_add_partitions(es_producer_t *prod, const rd_kafka_topic_partition_list_t *parts)
{
    pthread_once(&add_partitions_once, add_partitions_lookup);
    if (!add_partitions)
        return false;
    rd_kafka_error_t *e = add_partitions(prod->rk, parts);
    if (!e)
        return true;
    /* not in a transaction: the produce that follows says so, with its own error */
    es_log(ES_LOG_DEBUG, "kafka", "partitions not marked ahead: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return false;
}

es_txn_rc_t es_txn_flush(es_producer_t *prod, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t kerr = rd_kafka_flush(prod->rk, prod->txn_timeout_ms);
    if (!kerr)
        kerr = (rd_kafka_resp_err_t)atomic_load(&prod->txn_err);
    if (!kerr)
        return ES_TXN_OK;
    snprintf(errstr, errstr_size, "delivery: %s", rd_kafka_err2str(kerr));
    return rd_kafka_fatal_error(prod->rk, NULL, 0) ? ES_TXN_FATAL : ES_TXN_ABORT;
}

es_txn_rc_t es_txn_send_offsets(es_producer_t *prod, es_consumer_t *cons,
                                const rd_kafka_topic_partition_list_t *offsets, char *errstr,
                                size_t errstr_size)
{
    /* The group metadata of now: its generation and member id fence a zombie. */
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(cons->rk);
    rd_kafka_error_t *e =
        rd_kafka_send_offsets_to_transaction(prod->rk, offsets, cgmd, prod->txn_timeout_ms);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    return e ? txn_fail("send_offsets_to_transaction", e, errstr, errstr_size) : ES_TXN_OK;
}

es_txn_rc_t es_txn_commit(es_producer_t *prod, es_txn_retry_cb_t *on_retry, void *opaque,
                          char *errstr, size_t errstr_size)
{
    for (int attempt = 1;; attempt++) {
        rd_kafka_error_t *e = rd_kafka_commit_transaction(prod->rk, prod->txn_timeout_ms);
        if (!e)
            return ES_TXN_OK;
        if (!rd_kafka_error_is_retriable(e))
            return txn_fail("commit_transaction", e, errstr, errstr_size);
        /* The answer did not arrive: retry the commit, never abort (KAFKA-17754). */
        es_log_warn("kafka", "commit_transaction (attempt %d): %s; retrying", attempt,
                    rd_kafka_error_string(e));
        bool go_on = !on_retry || on_retry(opaque, attempt, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!go_on) {
            snprintf(errstr, errstr_size, "stopped while a commit was unanswered");
            return ES_TXN_FATAL;
        }
    }
}

es_txn_rc_t es_txn_abort(es_producer_t *prod, es_consumer_t *cons,
                         const rd_kafka_topic_partition_list_t *offsets, char *errstr,
                         size_t errstr_size)
{
    char why[512];
    rd_kafka_error_t *e = rd_kafka_abort_transaction(prod->rk, prod->txn_timeout_ms);
    if (e) {
        txn_fail("abort_transaction", e, errstr, errstr_size);
        return ES_TXN_FATAL; /* whatever its class: only new clients are known-good now */
    }
    if (es_consumer_rewind(cons, offsets, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "cannot rewind to the committed offsets after an abort: %s",
                 why);
        return ES_TXN_FATAL; /* re-created clients start from the committed offsets */
    }
    return ES_TXN_OK;
}
