/*
 * service_int.h — internals of escqrs-command-service shared by its files.
 *
 * Who owns what (read top down; a file calls only files below it):
 *
 *   service.c    the loop: poll a batch, run it, recover (the overall argument)
 *   connect.c    set-up: topics, schemas, store, Kafka clients; cs_new/cs_destroy
 *   txn.c        one batch = one Kafka transaction
 *   decide.c     one command: idempotency, If-Match, decide, produce events
 *   catchup.c    on assignment: the store restored from <agg>.state, then
 *                brought up to the end of the events
 *   state.c      the <agg>.state record: written in each transaction, read
 *                back by a restore, the baseline of a partition
 *   overlay.c    the batch's uncommitted states and outcomes; the store codec
 *   readiness.c  what /readyz says
 *
 * Threads: everything runs on the thread of cs_run() (librdkafka calls the
 * rebalance and delivery callbacks from its polls), except cs_ready(), which
 * the HTTP threads call: it reads only `ready` and `nrefused` (atomics),
 * the watch, and `not_ready` and `refused_why` (under why_mu).
 */
#ifndef ESCQRS_COMMAND_SERVICE_INT_H
#define ESCQRS_COMMAND_SERVICE_INT_H

#include "service.h"

#include "escqrs/command.h"
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/handoff.h"
#include "escqrs/mem.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/store.h"

#include <pthread.h>
#include <stdatomic.h>

#define CS_BACKOFF_MIN_MS    500   /* first wait before connecting again */
#define CS_BACKOFF_MAX_MS    30000 /* longest wait between attempts */
#define CS_NAP_SLICE_MS      100   /* a wait checks the stop flag this often */
#define CS_BASELINE_DEFER_MS 10000 /* a baseline waits for an idle poll at most this long */
#define CS_RECORD_MIN_BYTES  16384 /* the least kafka.message.max.bytes it runs with */

/* The steps of a transaction timed apart (txn.c), beside its commit's own histogram. */
typedef enum {
    CS_STEP_DECIDE,   /* deciding every command, its events produced */
    CS_STEP_EVENTS,   /* the events' flush: their offsets known */
    CS_STEP_OUTCOMES, /* producing the outcomes and the states */
    CS_STEP_OFFSETS,  /* the wait for the consumed offsets (sent since the flush) */
    CS_STEP_STORE,    /* the store write after the commit */
    CS_STEP_COUNT
} cs_step_t;

/* An aggregate's state in the overlay: loaded from the store, then evolved. */
typedef struct agg_ent_s {
    int64_t version;
    int64_t ev_offset; /* offset of its last event in <agg>.events; -1: none */
    int32_t partition; /* its partition number; -1 before anything was written */
    bool dirty;        /* changed in this batch: written after the commit */
    bool publish;      /* its <agg>.state record goes into this batch's transaction */
    void *state;
    es_buf_t recent; /* ids of its remembered outcomes' records (state.c), oldest first */
    size_t nrecent;
} agg_ent_t;

/* A remembered outcome of a command id. */
typedef struct idem_ent_s {
    uint64_t fp; /* the command's fingerprint; 0 when rebuilt from events */
    bool dirty;
    es_outcome_t o;
    es_buf_t result; /* its framed CommandResult as produced; empty: encoded from o */
    bool forget;     /* out of its aggregate's window: the store deletes it (o may be empty) */
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
    agg_ent_t *agg;       /* the command's aggregate (NULL: not loaded) */
    idem_ent_t *remember; /* entry to complete with the position */
    idem_ent_t *replay;   /* answer with this entry's outcome */
} pend_t;

struct cs_s {
    const es_conf_t *conf;
    const es_aggregate_def_t *def;
    es_metrics_t *metrics;
    char agg[256], t_cmd[256], t_ev[256], t_res[256], t_state[256], group[300], txid[400];
    int batch_max, linger_ms;
    size_t last_batch;    /* commands in the batch before: > 1 means load, so linger */
    size_t remember_max;  /* outcome records per aggregate kept in <agg>.state */
    bool restore_enabled; /* state.restore: restore an empty store from <agg>.state */
    int catchup_stall_ms; /* catchup.stall.timeout.ms: a catch-up without progress gives up */

    es_registry_t *reg;
    es_serde_t *cmd_serde, *ev_serde, *res_serde, *state_serde;
    avro_value_t ev_value, res_value, state_value;
    es_emitter_t *em;
    es_store_t *store;
    es_consumer_t *cons, *catchup;
    es_producer_t *prod;

    es_map_t aggs;  /* store key "s" id → agg_ent_t */
    es_map_t idems; /* store key "i" id 0x00 cmdid → idem_ent_t */
    pend_t *pends;
    evpos_t *evs;
    size_t npend, nev;

    es_map_t oversized; /* aggregates whose state record was too large: a set (state.c) */
    int32_t *baseline;  /* partitions of <agg>.state that need a baseline (state.c) */
    size_t nbaseline;
    int64_t baseline_due_ms; /* written by then even if commands never pause */
    int32_t nparts;          /* partition count of the aggregate's topics */
    int32_t nparts_res;      /* of <agg>.command-results, which may differ (outcomes go by key) */
    /* per partition, the offset after the last <agg>.state record the open transaction
     * wrote there (-1: none), from the delivery reports; the store keeps it with the
     * transaction's write, and a catch-up reads that partition's records from there on
     * (catchup.c, "the state tail") */
    int64_t *state_next;
    char state_tag; /* its address marks a state record's delivery report */
    /* the commands offsets the open transaction sends (a batch's, a baseline's fence):
     * every <agg>.state record carries its partition's (overlay.c, cs_commands_offset_header) */
    const rd_kafka_topic_partition_list_t *txn_offsets;
    /* the batch's consumed offsets go to the transaction on a thread of their own while
     * its outcomes and states are produced (txn.c, "The offsets' thread") */
    es_handoff_t *offsets_thread;
    bool offsets_unthreaded_said; /* logged once: no thread could be had for them */
    struct { /* its answer: it sends cs->txn_offsets with cs->prod and cs->cons */
        es_txn_rc_t rc;
        char errstr[512];
    } offsets_job;

    atomic_bool ready;
    atomic_int generation; /* bumped on every rebalance */
    /* commands partitions refused at assignment (their group offsets lost or moved
     * back): paused, never decided, while the others go on (readiness.c) */
    bool *refused;
    atomic_int nrefused;
    bool pause_due; /* refused since the last poll: pause them before the next */
    bool fatal;     /* re-create the Kafka clients (service.c) */
    /* the clients were re-created after a failure: a catch-up alone does not
     * make the service ready again, a turn of the loop without the failure
     * does (its baselines written; readiness.c) */
    bool recovering, caught_up;
    bool have_values, topics_checked;
    char fatal_reason[1200];
    volatile sig_atomic_t *stop;
    es_kafka_watch_t *watch; /* is a broker answering? (readiness) */
    pthread_mutex_t why_mu;  /* guards not_ready and refused_why */
    char not_ready[1300];    /* why not ready, for /readyz */
    char refused_why[1300];  /* the last refusal, for /readyz while any stands (why_mu) */

    es_counter_t *c_accepted, *c_replayed, *c_conflict, *c_reused, *c_undecodable, *c_aborts,
        *c_recoveries, *c_caught_up_events, *c_restored_states, *c_baseline_states;
    es_histogram_t *h_commit, *h_batch, *h_wait;
    es_histogram_t *h_step[CS_STEP_COUNT]; /* escqrs_transaction_step_seconds{step} */
    es_gauge_t *g_caught_up, *g_refused, *g_baselines_pending;
};

/* readiness.c */
void cs_set_not_ready(cs_t *cs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cs_set_ready(cs_t *cs);
/* Partitions assigned and caught up: ready, unless recovering from a failure. */
void cs_caught_up(cs_t *cs);
/* A turn of the loop ended: ready once a recovery's turn passed without its failure. */
void cs_turn_passed(cs_t *cs);
/* Refuse commands partition @p p for @p why: it stays assigned (no other instance
 * would decide it better) but paused, and /readyz says @p why while any is refused. */
void cs_refuse_partition(cs_t *cs, int32_t p, const char *why);
/* Pause the partitions refused since the last call (the assignment they came with
 * is applied after the rebalance callback, so they are paused at the next turn). */
void cs_pause_refused(cs_t *cs);
/* Forget the refusals of @p parts (revoked; NULL: all, the consumer is gone). */
void cs_refused_forget(cs_t *cs, const rd_kafka_topic_partition_list_t *parts);
/* Commit the open transaction (@p what names it): an unanswered commit is retried,
 * said on /readyz (ready again once it commits, if it was before) and given up
 * when stopping (ES_TXN_FATAL). */
es_txn_rc_t cs_commit_transaction(cs_t *cs, const char *what, char *errstr, size_t errstr_size);

/* overlay.c */
/* The offsets of <agg>.state records the transaction wrote (cs->state_next) into
 * @p batch, and cleared for the next one. */
void cs_state_put_offsets(cs_t *cs, es_batch_t *batch);
/* Forget the state records' offsets of a transaction that did not commit. */
void cs_state_offsets_clear(cs_t *cs);
/* The header of a <agg>.state record of partition @p p: the commands offset the open
 * transaction commits there (NULL when it sends none).  The last record a catch-up
 * reads says how far the group's offset got; one committed behind it was moved back. */
#define CS_COMMANDS_OFFSET_HEADER "commands-offset"
rd_kafka_headers_t *cs_commands_offset_header(const cs_t *cs, int32_t p);
void cs_headers_destroy(rd_kafka_headers_t *h); /* NULL: nothing */
/* The value of that header in @p m (-1: none, a record written before it was). */
int64_t cs_commands_offset_of(const rd_kafka_message_t *m);
void cs_overlay_init(cs_t *cs);
void cs_overlay_clear(cs_t *cs);
void cs_overlay_free(cs_t *cs);
agg_ent_t *cs_agg_new(cs_t *cs);
void cs_agg_free(agg_ent_t *a);
/* A stored aggregate value (overlay.c's layout) into @p a. */
es_err_t cs_agg_decode(cs_t *cs, agg_ent_t *a, const void *val, size_t len);
es_err_t cs_agg_load(cs_t *cs, const char *id, agg_ent_t **out, char *errstr, size_t errstr_size);
/* Put @p a (now owned by the overlay) in place of aggregate @p id's entry. */
void cs_agg_replace(cs_t *cs, const char *id, agg_ent_t *a);
es_err_t cs_idem_load(cs_t *cs, const char *agg_id, const char *cmd_id, idem_ent_t **out,
                      char *errstr, size_t errstr_size);
/* "i" + agg_id + 0x00 + cmd_id into @p out (2 * ES_ID_MAX + 3 bytes): the store key
 * of a remembered outcome; without the "i", its <agg>.state key.  Returns the length. */
size_t cs_idem_key(char *out, const char *agg_id, const char *cmd_id);
idem_ent_t *cs_idem_insert(cs_t *cs, const char *agg_id, const char *cmd_id, uint64_t fp);
/* @p cmd_id left @p agg_id's window of remembered outcomes: the store forgets it. */
void cs_idem_forget(cs_t *cs, const char *agg_id, const char *cmd_id, size_t cmdlen);
/* Write every dirty entry of the overlay plus the next events-topic offsets of
 * partitions @p parts in one atomic batch (after what @p batch holds already). */
es_err_t cs_overlay_write(cs_t *cs, const int32_t *parts, const int64_t *next_offsets,
                          size_t nparts, char *errstr, size_t errstr_size);
es_err_t cs_overlay_write_with(cs_t *cs, es_batch_t *batch, const int32_t *parts,
                               const int64_t *next_offsets, size_t nparts, char *errstr,
                               size_t errstr_size);

/* state.c */
/* Produce outcome @p o of aggregate @p a, framed as @p result, as its <agg>.state
 * outcome record (and a tombstone for the one it pushes out of the window), inside
 * the open transaction. */
es_err_t cs_state_publish_outcome(cs_t *cs, agg_ent_t *a, uint64_t fp, const es_outcome_t *o,
                                  const es_buf_t *result, char *errstr, size_t errstr_size);
/* Add @p cmd_id, whose outcome record another owner wrote, to @p a's window. */
void cs_state_note_outcome(cs_t *cs, agg_ent_t *a, const char *agg_id, const char *cmd_id);
/* Produce the <agg>.state record of every aggregate the batch changed; ES_ERR_INVALID_ARG
 * when one is larger than the producer takes (it is watched from then on). */
es_err_t cs_state_produce(cs_t *cs, char *errstr, size_t errstr_size);
/* Whether aggregate @p id's state record was once too large: check each command. */
bool cs_state_watched(const cs_t *cs, const char *id);
/* Whether the state record of @p a (aggregate @p id) would be taken by the producer. */
bool cs_state_fits(cs_t *cs, const char *id, const agg_ent_t *a);
/* One record of <agg>.state applied to the overlay; *is_marker for a baseline marker. */
es_err_t cs_state_apply(cs_t *cs, const rd_kafka_message_t *m, int64_t *events_offset,
                        bool *is_marker, char *errstr, size_t errstr_size);
bool cs_state_has_baseline(cs_t *cs, int32_t p);
void cs_state_baseline_mark(es_batch_t *batch, int32_t p);
void cs_state_need_baseline(cs_t *cs, int32_t p);
/* The next partition's baseline, in a transaction of its own (one per call). */
es_txn_rc_t cs_state_write_baseline(cs_t *cs);

/* catchup.c */
void cs_on_rebalance(void *opaque, bool assign, rd_kafka_topic_partition_list_t *parts);
/*
 * Are all of @p parts below the partition count the topics were checked with?
 * If not, partitions were added since: cs->fatal is set, and the clients are
 * re-created after the topics are checked again (counts that now disagree stop
 * the service, as at a start).
 */
bool cs_partitions_known(cs_t *cs, const rd_kafka_topic_partition_list_t *parts);

/* decide.c */
es_err_t cs_decide(cs_t *cs, rd_kafka_message_t *m, char *errstr, size_t errstr_size);
/* Produce outcome @p o to <agg>.command-results with the request's context; its
 * framed CommandResult stays in @p buf (its outcome record reuses it). */
es_err_t cs_produce_outcome(cs_t *cs, const es_outcome_t *o, const cmd_ctx_t *ctx, es_buf_t *buf,
                            char *errstr, size_t errstr_size);
void cs_on_delivery(void *opaque, const rd_kafka_message_t *m);

/* txn.c */
/* One batch in one transaction: ES_TXN_OK (committed and stored), ES_TXN_ABORT
 * (aborted and rewound: back off, the batch is polled again) or ES_TXN_FATAL. */
es_txn_rc_t cs_batch_process(cs_t *cs, rd_kafka_message_t **msgs, size_t n);

/* connect.c */
es_err_t cs_connect(cs_t *cs, char *errstr, size_t errstr_size);
void cs_clients_close(cs_t *cs);

#endif
