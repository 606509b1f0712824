/*
 * store_writer.c — a writer thread: it writes one RocksDB batch while its
 * owner goes on with the next (the projector's loop folds, the command
 * service decides), so the owner's thread never waits for RocksDB's
 * memtable inserts.
 *
 * What stays the owner's: a batch handed over is not in the store yet, so
 * until es_store_writer_wait() returns the owner reads what it wrote from
 * a map of its own (the projector's sealed transaction, the command
 * service's sealed overlay), and makes nothing visible that depends on it.
 *
 * One thread for the writer's life, started at the first batch handed over:
 * a thread per batch paid RocksDB's per-thread set-up on every write and
 * doubled the projector's CPU per event.  The hand-over is a flag under a
 * mutex: the owner hands a batch (go), the thread writes it outside the
 * lock and says done; the owner waits for done before it hands the next
 * one, so at most one batch is in flight and the thread touches nothing
 * else of its owner.
 */
#include "escqrs/store.h"

#include "escqrs/mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct es_store_writer_s {
    bool started;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool go, done, quit; /* under mu; the rest is the thread's between hand and wait */
    es_store_t *st;
    es_batch_t *batch;
    es_err_t err;
    char errstr[1024];
};

static void *writer_main(void *arg)
{
    es_store_writer_t *w = arg;
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

es_store_writer_t *es_store_writer_new(void)
{
    return es_calloc(1, sizeof(es_store_writer_t));
}

static bool writer_start(es_store_writer_t *w)
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

bool es_store_writer_hand(es_store_writer_t *w, es_store_t *st, es_batch_t *batch)
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

es_err_t es_store_writer_wait(es_store_writer_t *w, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    if (w->err)
        snprintf(errstr, errstr_size, "%s", w->errstr);
    return w->err;
}

void es_store_writer_destroy(es_store_writer_t *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->quit = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    free(w);
}
