/*
 * service_int.h — internals of escqrs-command-service shared by its files.
 *
 * Who owns what (read top down; a file calls only files below it):
 *
 *   service.c    the loop: poll a batch, run it, recover (the overall argument)
 *   connect.c    set-up: topics, schemas, store, Kafka clients; cs_new/cs_destroy
 *   txn.c        one batch = one Kafka transaction
 *   decide.c     one command: idempotency, If-Match, decide, produce events
 *   catchup.c    on assignment: the store brought up to the end of the events
 *   overlay.c    the batch's uncommitted states and outcomes; the store codec
 *   readiness.c  what /readyz says
 *
 * Threads: everything runs on the thread of cs_run() (librdkafka calls the
 * rebalance and delivery callbacks from its polls), except cs_ready(), which
 * the HTTP threads call: it reads only `ready` (atomic), the watch and
 * `not_ready` (under why_mu).
 */
#ifndef ESCQRS_COMMAND_SERVICE_INT_H
#define ESCQRS_COMMAND_SERVICE_INT_H

#include "service.h"

#include "escqrs/command.h"
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/mem.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/store.h"

#include <pthread.h>
#include <stdatomic.h>

#define CS_BACKOFF_MIN_MS 500   /* first wait before connecting again */
#define CS_BACKOFF_MAX_MS 30000 /* longest wait between attempts */
#define CS_NAP_SLICE_MS   100   /* a wait checks the stop flag this often */

/* An aggregate's state in the overlay: loaded from the store, then evolved. */
typedef struct agg_ent_s {
    int64_t version;
    bool dirty; /* changed in this batch: written after the commit */
    void *state;
} agg_ent_t;

/* A remembered outcome of a command id. */
typedef struct idem_ent_s {
    uint64_t fp; /* the command's fingerprint; 0 when rebuilt from events */
    bool dirty;
    es_outcome_t o;
} idem_ent_t;

/* Where an event of the batch landed (filled by its delivery report). */
typedef struct evpos_s {
    int32_t partition;
    int64_t offset;
    rd_kafka_resp_err_t err;
} evpos_t;

/* What a command carries from its request into its events and its outcome record. */
typedef struct cmd_ctx_s {
    es_trace_fields_t trace; /* correlation id (never ""), traceparent, tracestate */
    char type[64];           /* the payload record's name: the outcome's command_type */
    bool has_issued_at;
    int64_t issued_at; /* the gateway's issued_at */
} cmd_ctx_t;

/* A decided command of the batch, waiting for its outcome to be produced. */
typedef struct pend_s {
    es_outcome_t o;
    cmd_ctx_t ctx;
    int last_ev;          /* index in evs, -1 when none */
    idem_ent_t *remember; /* entry to complete with the position */
    idem_ent_t *replay;   /* answer with this entry's outcome */
} pend_t;

struct cs_s {
    const es_conf_t *conf;
    const es_aggregate_def_t *def;
    es_metrics_t *metrics;
    char agg[256], t_cmd[256], t_ev[256], t_res[256], group[300], txid[400];
    int batch_max, linger_ms;

    es_registry_t *reg;
    es_serde_t *cmd_serde, *ev_serde, *res_serde;
    avro_value_t ev_value, res_value;
    es_emitter_t *em;
    es_store_t *store;
    es_consumer_t *cons, *catchup;
    es_producer_t *prod;

    es_map_t aggs;  /* store key "s" id → agg_ent_t */
    es_map_t idems; /* store key "i" id 0x00 cmdid → idem_ent_t */
    pend_t *pends;
    evpos_t *evs;
    size_t npend, nev;

    atomic_bool ready;
    atomic_int generation; /* bumped on every rebalance */
    bool fatal;            /* re-create the Kafka clients (service.c) */
    bool have_values, topics_checked;
    char fatal_reason[1200];
    volatile sig_atomic_t *stop;
    es_kafka_watch_t *watch; /* is a broker answering? (readiness) */
    pthread_mutex_t why_mu;  /* guards not_ready */
    char not_ready[1300];    /* why not ready, for /readyz */

    es_counter_t *c_accepted, *c_replayed, *c_conflict, *c_reused, *c_undecodable, *c_aborts,
        *c_recoveries;
    es_histogram_t *h_commit, *h_batch;
    es_gauge_t *g_caught_up;
};

/* readiness.c */
void cs_set_not_ready(cs_t *cs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cs_set_ready(cs_t *cs);

/* overlay.c */
void cs_overlay_init(cs_t *cs);
void cs_overlay_clear(cs_t *cs);
void cs_overlay_free(cs_t *cs);
es_err_t cs_agg_load(cs_t *cs, const char *id, agg_ent_t **out, char *errstr, size_t errstr_size);
es_err_t cs_idem_load(cs_t *cs, const char *agg_id, const char *cmd_id, idem_ent_t **out,
                      char *errstr, size_t errstr_size);
idem_ent_t *cs_idem_insert(cs_t *cs, const char *agg_id, const char *cmd_id, uint64_t fp);
es_err_t cs_overlay_write(cs_t *cs, const int32_t *parts, const int64_t *next_offsets,
                          size_t nparts, char *errstr, size_t errstr_size);

/* catchup.c */
void cs_on_rebalance(void *opaque, bool assign, const rd_kafka_topic_partition_list_t *parts);

/* decide.c */
es_err_t cs_decide(cs_t *cs, rd_kafka_message_t *m, char *errstr, size_t errstr_size);
es_err_t cs_produce_outcome(cs_t *cs, const es_outcome_t *o, const cmd_ctx_t *ctx, char *errstr,
                            size_t errstr_size);
void cs_on_delivery(void *opaque, const rd_kafka_message_t *m);

/* txn.c */
es_txn_rc_t cs_batch_process(cs_t *cs, rd_kafka_message_t **msgs, size_t n);

/* connect.c */
es_err_t cs_connect(cs_t *cs, char *errstr, size_t errstr_size);
void cs_clients_close(cs_t *cs);

#endif
