/*
 * handoff.c — one job at a time on a thread of its own (handoff.h).
 *
 * The hand-over is a flag under a mutex: give sets the job and `go`, the
 * thread runs the job outside the lock and says `done`; wait blocks until
 * `done`.  The mutex is what publishes the job's results to the waiter.
 */
#include "escqrs/handoff.h"

#include "escqrs/mem.h"

#include <pthread.h>
#include <stdlib.h>

struct es_handoff_s {
    bool started;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool go, done, quit;
    es_handoff_job_fn *job;
    void *arg;
};

static void *handoff_main(void *p)
{
    es_handoff_t *h = p;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->go && !h->quit)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!h->go)
            break; /* quit, with nothing in hand */
        pthread_mutex_unlock(&h->mu);
        h->job(h->arg);
        pthread_mutex_lock(&h->mu);
        h->go = false;
        h->done = true;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

es_handoff_t *es_handoff_new(void)
{
    es_handoff_t *h = es_calloc(1, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->done = true; /* nothing in flight */
    return h;
}

bool es_handoff_give(es_handoff_t *h, es_handoff_job_fn *job, void *arg)
{
    if (!h->started && !(h->started = pthread_create(&h->thread, NULL, handoff_main, h) == 0))
        return false;
    pthread_mutex_lock(&h->mu);
    if (!h->done)
        abort(); /* a job in flight: the caller did not wait (a bug, never a state to run on) */
    h->job = job;
    h->arg = arg;
    h->done = false;
    h->go = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return true;
}

void es_handoff_wait(es_handoff_t *h)
{
    pthread_mutex_lock(&h->mu);
    while (!h->done)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

void es_handoff_destroy(es_handoff_t *h)
{
    if (!h)
        return;
    if (h->started) {
        es_handoff_wait(h);
        pthread_mutex_lock(&h->mu);
        h->quit = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
