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
 * One thread for the loop's life, started at the first batch handed over
 * and ended with the loop: a thread per batch paid RocksDB's per-thread
 * set-up on every write and doubled the projector's CPU per event.  The
 * hand-over is a flag under a mutex: the loop hands a batch (go), the writer
 * writes it outside the lock and says done; the loop waits for done before
 * it hands the next one, so at most one batch is in flight and the writer
 * never touches the loop's other state.
 */
#include "loop.h"

static void *writer_main(void *arg)
{
    pj_writer_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->go && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->go)
            break; /* quit, with nothing in hand */
        pthread_mutex_unlock(&w->mu);
        w->err = es_store_write(w->st, w->batch, w->errstr, sizeof(w->errstr));
        pthread_mutex_lock(&w->mu);
        w->go = false;
        w->done = true;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static bool writer_start(pj_writer_t *w)
{
    if (w->started)
        return true;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->go = w->done = w->quit = false;
    w->started = pthread_create(&w->thread, NULL, writer_main, w) == 0;
    if (!w->started) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    return w->started;
}

bool pj_writer_hand(pj_writer_t *w, es_store_t *st, es_batch_t *batch)
{
    if (!writer_start(w))
        return false;
    pthread_mutex_lock(&w->mu);
    w->st = st;
    w->batch = batch;
    w->done = false;
    w->go = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return true;
}

es_err_t pj_writer_wait(pj_writer_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return w->err;
}

void pj_writer_stop(pj_writer_t *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = false;
}
