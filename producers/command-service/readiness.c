/*
 * readiness.c — what the command service's /readyz says.
 *
 * Ready means: a broker answers (the watch's own thread asks, so the answer
 * is true even while the loop is stuck in a commit retry or a catch-up), and
 * the loop last reported itself ready — partitions assigned and caught up,
 * or a transaction committed.  After the Kafka clients were re-created
 * for a failure, caught up is not enough: the failure may be one a
 * reconnection does not cure (a stored state that does not decode fails the
 * baseline written right after the catch-up), so the service is ready again
 * only once a turn of its loop has passed with its baselines written and no
 * failure (cs_turn_passed); /readyz used to say 200 for the moment between
 * the catch-up and that baseline, again at every recovery (fault test 0910
 * samples it every 50 ms: 3 of 289 answers were 200).  Anything else sets
 * a reason that /readyz
 * shows (catching up, recovering after a fenced producer, a commit whose
 * answer is being retried), so an operator reads why without the logs.
 * Every commit of the service (a batch's, a baseline's) goes through
 * cs_commit_transaction(), so an unanswered one is said here.
 */
#include "service_int.h"

#include <stdarg.h>
#include <stdio.h>

void cs_set_not_ready(cs_t *cs, const char *fmt, ...)
{
    va_list ap;
    atomic_store(&cs->ready, false);
    pthread_mutex_lock(&cs->why_mu);
    va_start(ap, fmt);
    vsnprintf(cs->not_ready, sizeof(cs->not_ready), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&cs->why_mu);
    es_gauge_set(cs->g_caught_up, 0);
}

void cs_set_ready(cs_t *cs)
{
    atomic_store(&cs->ready, true);
    es_gauge_set(cs->g_caught_up, 1);
}

void cs_caught_up(cs_t *cs)
{
    if (!cs->recovering) {
        cs_set_ready(cs);
        return;
    }
    cs->caught_up = true; /* the failure may come back at the first turn: not ready yet */
    cs_set_not_ready(cs, "caught up, recovering after: %s", cs->fatal_reason);
}

void cs_turn_passed(cs_t *cs)
{
    if (!cs->recovering || !cs->caught_up || cs->fatal || cs->nbaseline)
        return;
    cs->recovering = cs->caught_up = false;
    cs_set_ready(cs);
}

bool cs_ready(cs_t *cs, char *why, size_t whysz)
{
    if (!es_kafka_watch_broker_ok(cs->watch, why, whysz))
        return false;
    if (atomic_load(&cs->ready))
        return true;
    pthread_mutex_lock(&cs->why_mu);
    snprintf(why, whysz, "%s", cs->not_ready);
    pthread_mutex_unlock(&cs->why_mu);
    return false;
}

typedef struct {
    cs_t *cs;
    const char *what;
    bool retried, was_ready; /* was it ready when the first retry said otherwise? */
} retry_ctx_t;

/* A commit's answer did not arrive: say so on /readyz; keep trying unless stopping. */
static bool on_commit_retry(void *opaque, int attempt, const char *why)
{
    retry_ctx_t *r = opaque;
    (void)attempt;
    if (!r->retried)
        r->was_ready = atomic_load(&r->cs->ready);
    r->retried = true;
    cs_set_not_ready(r->cs, "commit of %s not answered: %s", r->what, why);
    return !*r->cs->stop; /* stopping: the next epoch's init_transactions ends it */
}

es_txn_rc_t cs_commit_transaction(cs_t *cs, const char *what, char *errstr, size_t errstr_size)
{
    retry_ctx_t r = {cs, what, false, false};
    es_txn_rc_t rc = es_txn_commit(cs->prod, on_commit_retry, &r, errstr, errstr_size);
    if (!rc && r.retried && r.was_ready)
        cs_set_ready(cs);
    return rc;
}
