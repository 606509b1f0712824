/*
 * waiters.c — the gateway's table of requests waiting for their outcome.
 *
 * A waiter is registered before its command is produced, so an outcome can
 * never arrive unseen.  A waiting request holds no thread: its answer is
 * deferred (es_http_defer) and given by whoever ends the wait first — the
 * results thread (the outcome, or 504 once the deadline passed), the
 * delivery report (503 when the command was surely not written), or the
 * shutdown (504; a request that comes after it is answered 503 and
 * written nowhere: it used to wait on a table nobody read any more, its
 * delivery report served after the HTTP server was gone).  Each waiter is
 * answered exactly once (`done`, under
 * gw->mu), and freed when both the table and the delivery report have let
 * go of it (`refs`).  Waiters are kept in deadline order, as every one has
 * the same timeout, so expiring them looks only at the oldest.  Answers are
 * given after gw->mu is released: answering takes locks of its own.
 *
 * An outcome answers the waiters of its command id, aggregate id and
 * collection (its results topic): a client may use one key, and one
 * aggregate id, in two collections, and those are two commands.
 *
 * An outcome answers only the waiters registered before it was read: a
 * client that retries the moment it has its answer registers again while
 * that answer's outcome is still being handed out, and the retry — maybe
 * with another body, which its own outcome refuses 409 — must wait for the
 * outcome of its own command record (gw_waiter_wanted() notes how far
 * registration had got, gw_waiters_answer() goes no further).
 */
#include "gateway_int.h"

#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table chains waiters by bucket (a map without removal would not do:
 * waiters come and go, and one command id may have several). */
static size_t bucket_of(const char *id)
{
    return (size_t)(es_map_hash(id, strlen(id)) % GW_NBUCKETS);
}

void gw_count_status(gw_t *gw, int status)
{
    char labels[32];
    snprintf(labels, sizeof(labels), "status=\"%d\"", status);
    es_counter_add(es_metrics_counter(gw->metrics, "escqrs_gateway_requests_total",
                                      "Command requests answered, by HTTP status", labels),
                   1);
}

json_t *gw_unavailable(const char *why)
{
    return json_pack("{s:s, s:s}", "error", "unavailable", "message", why);
}

/* Drop one reference (gw->mu held); the last one frees. */
static void waiter_unref(waiter_t *w)
{
    if (--w->refs > 0)
        return;
    free(w);
}

/* Take @p w off the table and the deadline list (gw->mu held). */
static void waiter_unlink(gw_t *gw, waiter_t *w)
{
    waiter_t **pp = &gw->waiters[bucket_of(w->id)];
    for (; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    if (w->older)
        w->older->newer = w->newer;
    else
        gw->oldest = w->newer;
    if (w->newer)
        w->newer->older = w->older;
    else
        gw->newest = w->older;
    w->older = w->newer = NULL;
}

/* A finished wait, answered after gw->mu is released. */
typedef struct {
    es_http_deferred_t *answer;
    int status;
    json_t *body;
    int64_t t0;
} reply_t;

/* End the wait of @p w (gw->mu held) with @p status and @p body (taken);
 * the table's reference is the caller's to drop. */
static bool waiter_end(gw_t *gw, waiter_t *w, int status, json_t *body, reply_t *out)
{
    if (w->done) {
        json_decref(body);
        return false;
    }
    w->done = true;
    waiter_unlink(gw, w);
    out->answer = w->answer;
    out->status = status;
    out->body = body;
    out->t0 = w->t0;
    return true;
}

/* waiter_end(), dropping the table's reference (which may free @p w). */
static bool waiter_finish(gw_t *gw, waiter_t *w, int status, json_t *body, reply_t *out)
{
    if (!waiter_end(gw, w, status, body, out))
        return false;
    waiter_unref(w); /* the table's reference */
    return true;
}

static void reply(gw_t *gw, reply_t *r)
{
    gw_count_status(gw, r->status);
    es_histogram_observe(gw->h_latency, (double)(es_mono_ms() - r->t0) / 1000.0);
    es_http_deferred_json(r->answer, r->status, r->body);
}

waiter_t *gw_waiter_add(gw_t *gw, const gw_agg_t *ag, const char *cmd_id, const char *agg_id,
                        int64_t t0, es_http_deferred_t *answer)
{
    waiter_t *w = es_calloc(1, sizeof(*w));
    w->ag = ag;
    snprintf(w->id, sizeof(w->id), "%s", cmd_id);
    snprintf(w->agg_id, sizeof(w->agg_id), "%s", agg_id);
    w->refs = 2; /* the table's and the delivery report's */
    w->t0 = t0;
    w->deadline = es_mono_ms() + gw->timeout_ms;
    w->answer = answer;
    pthread_mutex_lock(&gw->mu);
    if (gw->closed) { /* nobody would answer it, or read its delivery report */
        pthread_mutex_unlock(&gw->mu);
        free(w);
        reply_t r = {.answer = answer,
                     .status = 503,
                     .body = gw_unavailable("the gateway is stopping; nothing was written"),
                     .t0 = t0};
        reply(gw, &r);
        return NULL;
    }
    w->seq = ++gw->waiter_seq;
    size_t b = bucket_of(w->id);
    w->next = gw->waiters[b];
    gw->waiters[b] = w;
    w->older = gw->newest;
    if (gw->newest)
        gw->newest->newer = w;
    else
        gw->oldest = w;
    gw->newest = w;
    pthread_mutex_unlock(&gw->mu);
    return w;
}

void gw_waiter_fail(gw_t *gw, waiter_t *w, json_t *body)
{
    reply_t r;
    pthread_mutex_lock(&gw->mu);
    bool answer = waiter_end(gw, w, 503, body, &r);
    if (answer)
        w->refs--;   /* the table's: never the last, the delivery report's is still held */
    waiter_unref(w); /* the delivery report's: none will come (the last reference when the
                      * shutdown answered first; it used to be dropped unfreed) */
    pthread_mutex_unlock(&gw->mu);
    if (answer)
        reply(gw, &r);
}

void gw_on_delivery(void *opaque, const rd_kafka_message_t *m)
{
    gw_t *gw = opaque;
    waiter_t *w = m->_private;
    reply_t r;
    bool answer = false;
    if (!w)
        return;
    /* A record that may have been written (the acknowledgement timed out) may
     * still be decided: its waiter waits on for the outcome or the deadline
     * (504, "may or may not be applied"), never 503 "retry", which would
     * make a client without an Idempotency-Key send the command twice. */
    bool failed = m->err && rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
    pthread_mutex_lock(&gw->mu);
    if (failed && (answer = waiter_end(gw, w, 503, gw_unavailable(rd_kafka_err2str(m->err)), &r)))
        w->refs--;   /* the table's: never the last, the delivery report still holds one */
    waiter_unref(w); /* the delivery report's reference */
    pthread_mutex_unlock(&gw->mu);
    if (answer)
        reply(gw, &r);
}

bool gw_waiter_wanted(gw_t *gw, const char *cmd_id, uint64_t *seen)
{
    bool wanted = false;
    pthread_mutex_lock(&gw->mu);
    *seen = gw->waiter_seq;
    for (waiter_t *w = gw->waiters[bucket_of(cmd_id)]; w && !wanted; w = w->next)
        wanted = !strcmp(w->id, cmd_id);
    pthread_mutex_unlock(&gw->mu);
    return wanted;
}

void gw_waiters_answer(gw_t *gw, const gw_agg_t *ag, const es_outcome_t *o, uint64_t seen)
{
    json_t *body = NULL;
    int status = es_outcome_http(o, &body);
    for (;;) { /* every request waiting for this command (the same key sent twice) */
        reply_t r;
        bool answer = false;
        pthread_mutex_lock(&gw->mu);
        waiter_t *w = gw->waiters[bucket_of(o->command_id)];
        while (w && (w->seq > seen || w->ag != ag || strcmp(w->id, o->command_id) ||
                     strcmp(w->agg_id, o->aggregate_id)))
            w = w->next;
        if (w)
            answer = waiter_finish(gw, w, status, json_deep_copy(body), &r);
        pthread_mutex_unlock(&gw->mu);
        if (!w)
            break;
        if (answer)
            reply(gw, &r);
    }
    json_decref(body);
}

/* Answer 504 with @p message to every waiter whose deadline is at or before @p until. */
static void time_out_oldest(gw_t *gw, int64_t until, const char *message)
{
    for (;;) {
        reply_t r;
        bool answer = false;
        pthread_mutex_lock(&gw->mu);
        waiter_t *w = gw->oldest;
        bool expired = w && w->deadline <= until;
        if (expired) {
            json_t *body = es_http_error_body("timeout", message);
            json_object_set_new(body, "command_id", json_string(w->id));
            answer = waiter_finish(gw, w, 504, body, &r);
        }
        pthread_mutex_unlock(&gw->mu);
        if (!expired)
            break;
        if (answer)
            reply(gw, &r);
    }
}

void gw_waiters_expire(gw_t *gw)
{
    time_out_oldest(gw, es_mono_ms(),
                    "no outcome before the deadline: the command may or may not be applied; "
                    "retry with the same Idempotency-Key");
}

void gw_waiters_finish_all(gw_t *gw)
{
    pthread_mutex_lock(&gw->mu);
    gw->closed = true;
    pthread_mutex_unlock(&gw->mu);
    time_out_oldest(gw, INT64_MAX,
                    "the gateway is stopping: the command may or may not be applied; retry with "
                    "the same Idempotency-Key");
}
