/*
 * gateway_int.h — internals of escqrs-gateway shared by its files.
 *
 * Who owns what (read top down; a file calls only files below it):
 *
 *   gateway.c  set-up: aggregates, Kafka clients, threads, readiness; shutdown
 *   request.c  one HTTP request: validate, encode, register a waiter, produce
 *   results.c  the results thread: schemas, topics, assignment, outcomes in
 *   waiters.c  the waiter table: who waits for which command id, and answers
 *
 * Threads: HTTP workers run request.c; the results thread runs results.c
 * and expires waiters; the producer's poll thread runs the delivery
 * reports.  Shared state and its lock: the waiter table and deadline list
 * (gw->mu), an aggregate's command serde and value (ag->mu), the
 * not-ready reason (gw->why_mu); `ready` and `stop` are atomic.  An answer
 * is always given after gw->mu is released (answering takes locks of its
 * own).
 */
#ifndef ESCQRS_GATEWAY_INT_H
#define ESCQRS_GATEWAY_INT_H

#include "gateway.h"

#include "escqrs/aggregate.h"
#include "escqrs/auth.h"
#include "escqrs/command.h"
#include "escqrs/kafka.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"

#include <pthread.h>
#include <stdatomic.h>

#define GW_MAX_AGGS  8
#define GW_NBUCKETS  4096 /* buckets of the waiter table */
#define GW_GROUP_MAX 300  /* "<prefix><agg>.command-service" */

#define GW_BACKOFF_MIN_MS   500   /* first wait before the results thread tries again */
#define GW_BACKOFF_MAX_MS   30000 /* longest wait between attempts */
#define GW_NAP_SLICE_MS     100   /* a wait checks the stop flag this often */
#define GW_REGISTRY_RETRIES 5     /* of one registry request, before the back-off */

typedef struct waiter_s {
    struct waiter_s *next;          /* bucket chain */
    struct waiter_s *older, *newer; /* deadline order */
    const struct gw_agg_s *ag;      /* the collection: one key may be sent to two */
    char id[ES_ID_MAX + 1];
    char agg_id[ES_ID_MAX + 1];
    int refs;         /* the table, and the delivery report until it comes (gw->mu) */
    bool done;        /* answered: off the table */
    int64_t deadline; /* monotonic ms */
    int64_t t0;
    uint64_t seq; /* order of registration (gw->mu): outcomes read before it are not its */
    es_http_deferred_t *answer;
} waiter_t;

typedef struct gw_agg_s {
    const es_aggregate_def_t *def;
    char name[256], t_cmd[256], t_res[256];
    es_serde_t *cmd_serde;
    avro_value_t value;
    bool have_value;
    pthread_mutex_t mu; /* serde and value */
    int res_parts;      /* partitions of t_res read (results thread only) */
} gw_agg_t;

struct gw_s {
    const es_conf_t *conf;
    es_metrics_t *metrics;
    gw_agg_t aggs[GW_MAX_AGGS];
    size_t naggs;
    int timeout_ms;
    es_registry_t *reg;
    es_serde_t *res_serde; /* results thread only */
    es_producer_t *prod;
    es_consumer_t *results;
    es_kafka_watch_t *watch; /* broker reachable? command services there? */
    es_auth_t *auth;         /* who may send which command */
    pthread_t poll_thr, res_thr;
    bool threads;
    atomic_bool stop, ready;
    pthread_mutex_t why_mu;
    char not_ready[1024];

    pthread_mutex_t mu; /* the waiter table and list */
    waiter_t *waiters[GW_NBUCKETS];
    waiter_t *oldest, *newest;
    uint64_t waiter_seq; /* the last waiter's seq */
    bool closed;         /* gw_waiters_finish_all() ran: no waiter is added after it */

    es_histogram_t *h_latency, *h_outcome_wait;
};

/* waiters.c */
void gw_count_status(gw_t *gw, int status);
json_t *gw_unavailable(const char *why);
/* NULL once gw_waiters_finish_all() ran: @p answer is then answered 503. */
waiter_t *gw_waiter_add(gw_t *gw, const gw_agg_t *ag, const char *cmd_id, const char *agg_id,
                        int64_t t0, es_http_deferred_t *answer);
void gw_waiter_fail(gw_t *gw, waiter_t *w, json_t *body);
bool gw_waiter_wanted(gw_t *gw, const char *cmd_id, uint64_t *seen);
void gw_waiters_answer(gw_t *gw, const gw_agg_t *ag, const es_outcome_t *o, uint64_t seen);
void gw_waiters_expire(gw_t *gw);
void gw_waiters_finish_all(gw_t *gw);
void gw_on_delivery(void *opaque, const rd_kafka_message_t *m);

/* results.c */
void gw_set_not_ready(gw_t *gw, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *gw_results_main(void *arg);

/* request.c */
void gw_command_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp);

#endif
