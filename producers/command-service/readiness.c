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
 * answer is being retried), so an operator reads why without the logs.  A
 * partition refused at its assignment or for a command in another partition
 * than its aggregate's (cs_refuse_partition) keeps /readyz at 503 while the
 * others are decided; an assignment past the partition count the topics were
 * checked with (cs_partitions_known) re-creates the clients after checking
 * them again.
 * Every commit of the service (a batch's, a baseline's) goes through
 * cs_commit_transaction(), so an unanswered one is said here.
 */
#include "service_int.h"

#include "escqrs/log.h"

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
    es_gauge_set(cs->g_caught_up, atomic_load(&cs->nrefused) ? 0 : 1); /* a refused one is not */
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
    int refused = atomic_load(&cs->nrefused);
    if (!refused && atomic_load(&cs->ready))
        return true;
    pthread_mutex_lock(&cs->why_mu);
    if (refused)
        snprintf(why, whysz, "%d partition(s) refused, the others decided: %s", refused,
                 cs->refused_why);
    else
        snprintf(why, whysz, "%s", cs->not_ready);
    pthread_mutex_unlock(&cs->why_mu);
    return false;
}

/*
 * A refused partition stays assigned here, paused.  Until 6 December a refusal
 * re-created the Kafka clients with each back-off: nothing was decided on any
 * partition, and with several instances the refused partition moved to the
 * next one, which refused it too, so the group rebalanced every few seconds
 * until the operator's remedy.  The remedy (docs/write-side.md) stops every
 * instance anyway, and the next assignment checks the partition again.
 */
void cs_refuse_partition(cs_t *cs, int32_t p, const char *why)
{
    es_log_error("command-service", "%s [%d] refused, not decided until the next assignment: %s",
                 cs->t_cmd, (int)p, why);
    if (p < 0 || p >= cs->nparts || cs->refused[p])
        return;
    pthread_mutex_lock(&cs->why_mu);
    snprintf(cs->refused_why, sizeof(cs->refused_why), "%s", why);
    pthread_mutex_unlock(&cs->why_mu);
    cs->refused[p] = true;
    cs->pause_due = true;
    es_gauge_set(cs->g_refused, atomic_fetch_add(&cs->nrefused, 1) + 1);
}

void cs_pause_refused(cs_t *cs)
{
    if (!cs->pause_due || !cs->cons)
        return;
    cs->pause_due = false;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    for (int32_t p = 0; p < cs->nparts; p++)
        if (cs->refused[p])
            rd_kafka_topic_partition_list_add(l, cs->t_cmd, p);
    rd_kafka_resp_err_t err = rd_kafka_pause_partitions(es_consumer_rk(cs->cons), l);
    for (int i = 0; i < l->cnt && !err; i++)
        err = l->elems[i].err;
    if (err) { /* its commands could be decided: only new clients are safe */
        cs->fatal = true;
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason),
                 "cannot pause the refused partitions of %s: %s", cs->t_cmd, rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/*
 * librdkafka 2.0.2 keeps an application's pause of a partition across its
 * revocation (an unassignment clears only its own pause), so a revoked refused
 * partition is resumed here: assigned again later, and let through by that
 * assignment's check, it would otherwise never be fetched.  It is being
 * revoked, so nothing fetched meanwhile is polled (the generation moved on).
 */
void cs_refused_forget(cs_t *cs, const rd_kafka_topic_partition_list_t *parts)
{
    if (!atomic_load(&cs->nrefused)) /* the usual revoke: nothing refused, nothing to resume */
        return;
    rd_kafka_topic_partition_list_t *resume = rd_kafka_topic_partition_list_new(1);
    for (int32_t p = 0; p < cs->nparts; p++) {
        if (!cs->refused[p] || (parts && !rd_kafka_topic_partition_list_find(parts, cs->t_cmd, p)))
            continue;
        cs->refused[p] = false;
        es_gauge_set(cs->g_refused, atomic_fetch_sub(&cs->nrefused, 1) - 1);
        rd_kafka_topic_partition_list_add(resume, cs->t_cmd, p);
    }
    if (resume->cnt && parts && cs->cons)
        rd_kafka_resume_partitions(es_consumer_rk(cs->cons), resume);
    rd_kafka_topic_partition_list_destroy(resume);
    if (!atomic_load(&cs->nrefused))
        cs->pause_due = false;
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

bool cs_partitions_known(cs_t *cs, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt && !cs->fatal; i++) {
        if (parts->elems[i].partition < cs->nparts)
            continue;
        cs->fatal = true; /* the clients are re-created, after check_topics() */
        cs->topics_checked = false;
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason),
                 "assigned %s [%d], but the topics had %d partitions when checked: checking them "
                 "again",
                 cs->t_cmd, (int)parts->elems[i].partition, cs->nparts);
    }
    return !cs->fatal;
}
