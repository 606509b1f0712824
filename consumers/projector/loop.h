/*
 * loop.h — one consume loop, three modes.
 *
 * loop.c runs the loop (fold a batch, commit a batch, tick) and knows only
 * the live behaviour.  A mode is a table of hooks saying what differs:
 * rebuild.c fills a shadow generation and swaps it in, frozen.c stops at a
 * timestamp.  loop.c calls a mode only through its table, so the files of
 * the modes call loop.c and never the other way round.
 *
 * A loop is created with pj_loop_new(), given its thread with
 * pj_loop_spawn() (or run by a thread of the caller with pj_loop_run()),
 * and frees itself when it ends.
 */
#ifndef ESCQRS_PROJECTOR_LOOP_H
#define ESCQRS_PROJECTOR_LOOP_H

#include "projector.h"

#include "escqrs/handoff.h"
#include "escqrs/serde.h"

#include <sys/types.h>

typedef struct pj_loop_s pj_loop_t;
typedef struct pj_dlq_s pj_dlq_t;

/* What one batch did. */
typedef struct pj_batch_s {
    ssize_t n;       /* records consumed; <= 0: the queue was idle */
    int64_t applied; /* events folded */
    int64_t dlq;     /* poison events sent to the DLQ */
    bool dlq_sent;   /* the DLQ must be flushed before the batch is written */
    bool dlq_failed; /* a DLQ send failed: the batch is dropped and folded again */
    bool retry;      /* a transient failure: the rest of the batch is read again */
    double start_s;  /* monotonic seconds when the records were in hand */
    double seconds;  /* from then to the batch written and visible (settled, if pipelined) */
} pj_batch_t;

/*
 * The loop's writer (writer.c): its thread writes the batch handed to it while
 * the loop folds the next one.  One thread for the loop's life (a handoff);
 * the rest belongs to the writer between hand and wait.
 */
typedef struct pj_writer_s {
    es_handoff_t *thread; /* NULL until the first batch is handed over */
    es_store_t *st;
    es_batch_t *batch;
    es_err_t err;
    char errstr[PJ_ERRSTR_MAX];
} pj_writer_t;

/*
 * A mode.  A NULL hook does nothing (and `start_failed` NULL never gives
 * up, `step` NULL never ends the loop).  Every hook runs on the loop's
 * thread, holding no lock.
 */
typedef struct pj_loop_ops_s {
    const char *kind; /* "live", "rebuild", "frozen": in log lines */
    /* The consumer is assigned: more set-up (ES_ERR_OK, or the start is retried). */
    es_err_t (*opened)(pj_loop_t *l);
    /* Starting failed @p attempt times: true gives up (the loop ends). */
    bool (*start_failed)(pj_loop_t *l, int attempt);
    /* The loop starts folding. */
    void (*started)(pj_loop_t *l);
    /* May record @p m of topic @p t be folded?  false skips it, offset unmoved. */
    bool (*admit)(pj_loop_t *l, size_t t, const rd_kafka_message_t *m);
    /* The batch was dropped (its folds undone, `next` back at `stored`): undo what `admit`
     * decided in it, for it is read again. */
    void (*dropped)(pj_loop_t *l);
    /* A halting failure (the halting rule in projector.h). */
    void (*halt)(pj_loop_t *l, const char *msg);
    /* The loop waits: @p why PJ_WAITING (no space) or PJ_STARTING (registry); @p first time. */
    void (*waits)(pj_loop_t *l, pj_state_t why, bool first);
    /* It waited and goes on. */
    void (*running)(pj_loop_t *l);
    /* A batch is in the store. */
    void (*written)(pj_loop_t *l, const pj_batch_t *b);
    /* After every batch; true ends the loop.  A mode with `step` has no `tick`. */
    bool (*step)(pj_loop_t *l, const pj_batch_t *b);
    /* At most every PJ_TICK_MS, and when idle: @p events since the last, @p dt_s seconds. */
    bool (*tick)(pj_loop_t *l, int64_t events, double dt_s);
    /* The loop ended (stopped, halted or finished): release what the mode owns. */
    void (*finish)(pj_loop_t *l);
    /* When idle, record the consumer's position past transaction markers. */
    bool advance_idle;
} pj_loop_ops_t;

/* The live mode (loop.c): a rebuild's loop takes it on after the swap. */
extern const pj_loop_ops_t pj_live_ops;

struct pj_loop_s {
    pj_runner_t *r;
    const pj_loop_ops_t *ops;
    void *mode;            /* the mode's own object (the frozen view) */
    es_store_t *st;        /* the store it writes */
    int generation;        /* of `st`, for log lines */
    atomic_bool *cancel;   /* ends the loop, also while it starts (a frozen view's delete) */
    atomic_bool *handover; /* ends the loop between batches (the live loop, for a rebuild) */
    int64_t log_ms;        /* a mode's last progress log line */

    /* the consumer and its set-up (consumer.c) */
    es_consumer_t *cons;
    es_serde_t *serde[ES_PROJ_MAX_AGGREGATES];
    int64_t *next[ES_PROJ_MAX_AGGREGATES];     /* next offset to fold, per partition */
    int64_t *stored[ES_PROJ_MAX_AGGREGATES];   /* next offset in the store: what a mode reports */
    int64_t *in_kafka[ES_PROJ_MAX_AGGREGATES]; /* last committed to Kafka by this loop */
    int64_t kafka_commit_ms, kafka_all_ms;     /* when, and when all (offsets.c) */
    pj_dlq_t *dlq;                             /* source positions already in the DLQ */

    /* the working set of a run (loop.c) */
    es_proj_reader_t *rd;
    es_proj_txn_t *txn;
    es_batch_t *batch;
    rd_kafka_message_t **msgs;
    rd_kafka_queue_t *queue;
    bool *touched[ES_PROJ_MAX_AGGREGATES];
    bool halted;     /* a halting failure: the loop ends after this batch */
    bool keep_store; /* the mode's finish keeps the store for the next start (a failed swap) */
    /* the batch being written while the loop folds the next (loop.c, "Pipelined") */
    pj_writer_t writer;
    struct {
        bool pending;  /* a batch was handed over and not settled */
        bool threaded; /* ... to the writer (else it was written in line) */
        es_batch_t *batch;
        pj_batch_t b;
        int64_t *next[ES_PROJ_MAX_AGGREGATES]; /* the offsets it writes */
    } writing;
    int retries;
    int64_t last_tick_ms, since_tick;

    char errstr[PJ_ERRSTR_MAX];
};

/** @brief A loop of @p r in mode @p ops on store @p st (NULL: the mode opens one first). */
pj_loop_t *pj_loop_new(pj_runner_t *r, const pj_loop_ops_t *ops, es_store_t *st, int generation);
/** @brief Free a loop that never ran. */
void pj_loop_free(pj_loop_t *l);
/** @brief Run @p l on a new thread (*@p th); on failure the caller still owns @p l. */
bool pj_loop_spawn(pj_loop_t *l, pthread_t *th);
/** @brief Run @p l on this thread until it ends; frees it. */
void pj_loop_run(pj_loop_t *l);
/** @brief End @p l without running it further: log, the mode's `finish`, free. */
void pj_loop_end(pj_loop_t *l);
/**
 * @brief For a mode's `start_failed`: after PJ_SIDE_START_ATTEMPTS, copy the
 *        reason into @p error (under the runner's mutex), log it, give up.
 */
bool pj_loop_give_up(pj_loop_t *l, int attempt, char *error, size_t errorsz);
/** @brief The loop goes on in the live mode (a rebuild after its swap). */
void pj_loop_become_live(pj_loop_t *l);
/** @brief The `halt` hook of the live and rebuild modes: the runner is HALTED with @p msg. */
void pj_loop_halt_runner(pj_loop_t *l, const char *msg);
/** @brief Sleep @p ms in slices, returning early (true) when the projector stops. */
bool pj_loop_sleep(const pj_runner_t *r, int ms);

/* consumer.c */
/** @brief Consumer, serdes and assignment at the offsets stored in l->st. */
es_err_t pj_consumer_open(pj_loop_t *l);
/** @brief Drop what pj_consumer_open() and the DLQ set-up built (to retry or to finish). */
void pj_consumer_close(pj_loop_t *l);
/** @brief The consumer's position on every partition (destroy the list). */
rd_kafka_topic_partition_list_t *pj_consumer_positions(pj_loop_t *l);
/** @brief Seek every partition back to the loop's next offsets. */
void pj_consumer_rewind(pj_loop_t *l);
/** @brief Stop (@p paused) or resume fetching partition @p p of topic @p t. */
void pj_consumer_pause(pj_loop_t *l, size_t t, int32_t p, bool paused);
/** @brief The index of @p topic among @p r's topics, SIZE_MAX when none. */
size_t pj_topic_index(const pj_runner_t *r, const char *topic);

/* offsets.c */
/** @brief Publish the loop's offsets as the live applied offsets; commit them to Kafka when due. */
void pj_publish_applied(pj_loop_t *l);
/** @brief Commit to Kafka the live offsets it does not have yet, if PJ_KAFKA_COMMIT_MS have passed.
 */
void pj_commit_to_kafka(pj_loop_t *l);
/**
 * @brief Refresh high watermarks and the total lag (-1 unknown); with
 *        @p publish, into the runner's `high` and lag gauges (the live loop).
 * @param query ask the broker for a high watermark librdkafka has not cached
 *        (blocks up to PJ_WATERMARK_QUICK_MS); without it, such a partition
 *        stays unknown (the per-batch refresh: never a wait on the hot path).
 */
int64_t pj_refresh_lag(pj_loop_t *l, bool publish, bool query);
/** @brief Idle: put the consumer's positions past our offsets into @p b (markers). */
bool pj_advance_past_markers(pj_loop_t *l, es_batch_t *b);

/* writer.c */
/** @brief Hand @p batch to @p w to write into @p st; false: no thread to be had, write it in line.
 */
bool pj_writer_hand(pj_writer_t *w, es_store_t *st, es_batch_t *batch);
/** @brief Wait for the batch handed over; its write's result (w->errstr says why). */
es_err_t pj_writer_wait(pj_writer_t *w);
/** @brief End the writer thread, if it runs (no batch may be in hand). */
void pj_writer_stop(pj_writer_t *w);

/* dlq.c */
/** @brief Read @p r's DLQ topics up to their ends: the positions already sent. */
es_err_t pj_dlq_load(pj_runner_t *r, pj_dlq_t **out, char *errstr, size_t errstr_size);
void pj_dlq_destroy(pj_dlq_t *d);
/** @brief Send poison record @p m of topic @p t unless it is there; *@p sent says if it was. */
es_err_t pj_dlq_send(pj_dlq_t *d, size_t t, const rd_kafka_message_t *m, es_err_t why,
                     const char *msg, bool *sent, char *errstr, size_t errstr_size);
/**
 * @brief Wait until every DLQ record sent is acknowledged.  On failure the
 *        records sent since the last good flush count as not sent (they are
 *        sent again when their events are folded again) and the producer is
 *        dropped (the next send makes a new one).
 */
es_err_t pj_dlq_flush(pj_dlq_t *d, char *errstr, size_t errstr_size);

#endif
