/*
 * writer.c — a loop's writer thread: it writes one RocksDB batch while the
 * loop folds the next, so the loop never waits for RocksDB (its memtable
 * inserts were a quarter of the loop's time).
 *
 * Why exactly once holds (loop.c, "Pipelined"): a batch is still one write
 * with its offsets.  The next batch's folds read the batch in flight from
 * the transaction's sealed map (es_proj_txn_seal), never from a store that
 * may not hold it yet.  What a batch makes visible (applied offsets for
 * min_position, lag, /readyz, a rebuild's swap, the commit to Kafka) waits
 * until its write returned: settle() in loop.c.  A loop that stops or hands
 * over waits for the write in flight; the batch it folded meanwhile is
 * never written and is read again from the stored offsets.  When nothing
 * is queued the loop settles before it waits for records, so an idle
 * projector publishes at once.
 *
 * One thread for the loop's life (a handoff, handoff.h), started at the
 * first batch handed over and ended with the loop: a thread per batch paid
 * RocksDB's per-thread set-up on every write and doubled the projector's CPU
 * per event.  The loop waits for the write before it hands the next batch,
 * so at most one batch is in flight and the writer never touches the loop's
 * other state.
 */
#include "loop.h"

static void write_job(void *arg)
{
    pj_writer_t *w = arg;
    w->err = es_store_write(w->st, w->batch, w->errstr, sizeof(w->errstr));
}

bool pj_writer_hand(pj_writer_t *w, es_store_t *st, es_batch_t *batch)
{
    if (!w->thread)
        w->thread = es_handoff_new();
    w->st = st;
    w->batch = batch;
    return es_handoff_give(w->thread, write_job, w);
}

es_err_t pj_writer_wait(pj_writer_t *w)
{
    es_handoff_wait(w->thread);
    return w->err;
}

void pj_writer_stop(pj_writer_t *w)
{
    es_handoff_destroy(w->thread);
    w->thread = NULL;
}
