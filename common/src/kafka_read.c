/*
 * kafka_read.c — reading a consumer's assignment to its end, with a limit
 * on how long nothing may happen.
 *
 * Why a limit: a reader that waits for the partition's end (the command
 * service's catch-up, which holds the partition's commands meanwhile)
 * trusts librdkafka's fetcher to deliver records or the end.  After a
 * broker restart the fetcher can stop for good without an error (upstream
 * issue 5153), and the end never comes.  So a reader gives up after a
 * stall and its caller re-creates the client, which starts a fetcher anew.
 * A read_committed reader also waits for ever behind a hanging transaction
 * (one whose markers the broker never wrote): no client can fix that, so
 * the message names the position and the high watermark for the operator.
 * And its end (the last stable offset) is not taken for the end while a
 * transaction is open after it: those records may still commit.
 */
#include "kafka_int.h"
#include "escqrs/log.h"
#include "escqrs/util.h"

#include <inttypes.h>
#include <stdio.h>

/* "<topic> [<p>] at <position>, ..." of @p cons' assignment, for a stall's message. */
static void describe_positions(es_consumer_t *cons, char *buf, size_t bufsz)
{
    rd_kafka_topic_partition_list_t *tl = NULL;
    size_t off = 0;
    buf[0] = '\0';
    if (rd_kafka_assignment(cons->rk, &tl) || !tl)
        return;
    rd_kafka_position(cons->rk, tl);
    for (int i = 0; i < tl->cnt && off < bufsz; i++) {
        int64_t lo = -1, hi = -1; /* the high watermark of the last fetch: records exist up to
                                   * there; asked of the client only, never of the broker, which
                                   * may be what stalled (librdkafka 2.0.2's query waits for it) */
        rd_kafka_get_watermark_offsets(cons->rk, tl->elems[i].topic, tl->elems[i].partition, &lo,
                                       &hi);
        int n = snprintf(buf + off, bufsz - off,
                         "%s%s [%d] at %" PRId64 ", high watermark %" PRId64, i ? ", " : "",
                         tl->elems[i].topic, (int)tl->elems[i].partition, tl->elems[i].offset, hi);
        off += n > 0 ? (size_t)n : 0;
    }
    rd_kafka_topic_partition_list_destroy(tl);
}

/*
 * Whether end-of-partition @p eof stops short of records: a read_committed
 * reader's end is the last stable offset, and records after it up to the
 * high watermark belong to a transaction still open (a previous owner's,
 * committed but its markers not written yet, or a zombie's).  They may yet
 * commit, so that end is not the end: the reader waits on, within its stall
 * limit.  The high watermark is the last fetch's, never asked of the broker.
 */
static bool open_transaction(es_consumer_t *cons, const rd_kafka_message_t *eof)
{
    int64_t lo = -1, hi = -1;
    if (!eof->rkt ||
        rd_kafka_get_watermark_offsets(cons->rk, rd_kafka_topic_name(eof->rkt), eof->partition, &lo,
                                       &hi) ||
        hi <= eof->offset)
        return false;
    es_log_info("kafka",
                "reading %s [%d] to its end: waiting for a transaction still open at offset "
                "%" PRId64 " (high watermark %" PRId64 ")",
                rd_kafka_topic_name(eof->rkt), (int)eof->partition, eof->offset, hi);
    return true;
}

es_err_t es_consumer_next_to_end(es_consumer_t *cons, const volatile sig_atomic_t *stop,
                                 int stall_ms, rd_kafka_message_t **out, char *errstr,
                                 size_t errstr_size)
{
    int64_t since = es_mono_ms();
    *out = NULL;
    for (;;) {
        if (stop && *stop) {
            snprintf(errstr, errstr_size, "stopped while reading to the end");
            return ES_ERR_STATE;
        }
        int64_t waited = es_mono_ms() - since;
        if (waited >= stall_ms) {
            char where[512];
            describe_positions(cons, where, sizeof(where));
            snprintf(errstr, errstr_size,
                     "no record and no end of partition for %" PRId64 " ms (%s): the fetcher "
                     "stalled, or an open transaction holds the last stable offset "
                     "(docs/operations.md, \"A catch-up that stalls\")",
                     waited, *where ? where : "no assignment");
            return ES_ERR_TIMED_OUT;
        }
        int wait = (int)(stall_ms - waited);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons->rk, wait < 500 ? wait : 500);
        if (!m)
            continue;
        if (!m->err) {
            *out = m;
            return ES_ERR_OK;
        }
        rd_kafka_resp_err_t kerr = m->err;
        if (kerr != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            es_log_warn("kafka", "reading %s [%d] to its end: %s",
                        m->rkt ? rd_kafka_topic_name(m->rkt) : "?", (int)m->partition,
                        rd_kafka_message_errstr(m));
        bool end = kerr == RD_KAFKA_RESP_ERR__PARTITION_EOF && !open_transaction(cons, m);
        rd_kafka_message_destroy(m);
        if (end)
            return ES_ERR_OK; /* the end: *out stays NULL */
        if (kerr == RD_KAFKA_RESP_ERR__FATAL) {
            snprintf(errstr, errstr_size, "consumer failed while reading to the end");
            return ES_ERR_KAFKA_FATAL;
        }
    }
}
