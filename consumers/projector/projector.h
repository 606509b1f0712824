/*
 * projector.h — escqrs-projector's runtime, shared by its source files.
 *
 * A projector hosts runners, one per projection.  A runner owns the live
 * RocksDB store of its projection (one "generation" directory under
 * <store.path>/<projection>/, named by the CURRENT file), the consume loop
 * that applies events to it, at most one rebuild loop filling a shadow
 * generation, and its frozen views (stores built from offset 0 up to a
 * timestamp under <dir>/frozen-<label>/, never swapped in, served read-only
 * with `view=<label>` once complete).  The three kinds of loop are one loop
 * (loop.c) in three modes (live.c, rebuild.c, frozen.c).
 *
 * Where to start reading: runner.c (what a projector is made of and how it
 * starts and stops), then loop.c (the exactly-once argument, top to bottom).
 *
 * The files and what each owns (each one's top comment says why it works):
 *
 *   runner.c    projector and runner lifecycle: new, start, destroy
 *   live.c      the live loop's start: connect the runner (partitions, DLQ
 *               topics, the store), wait for disk space, resume a rebuild
 *   loop.c      the consume loop: fold a batch, commit a batch, tick; and
 *               its live mode (loop.h: the modes' interface)
 *   writer.c    a loop's writer thread: a batch written while the next folds
 *   rebuild.c   the rebuild mode: shadow generation, hand-over, swap
 *   frozen.c    frozen views: the frozen mode, markers, loading, deleting
 *   consumer.c  the loop's consumer: assignment at stored offsets, positions
 *   offsets.c   applied offsets, high watermarks and lag; min_position waits
 *   dlq.c       dead-letter topics: what is there already, send, flush
 *   gen.c       generation directories, CURRENT and REBUILD files
 *   fold.c      one record into a fold: the event scope, the store reader
 *   state.c     a runner's state and reason (the halting rule below), joins
 *   lock.c      locks that know their owner (lock.h), for the assertions
 *   api.c       the HTTP query and admin API;  asof.c  as_of queries
 *   checkpoint.c  a projection's checkpoint served to a new replica, and a
 *               new replica's start from a peer's (bootstrap.from)
 *   history.c   the built-in projections of every aggregate: its history
 *               (events by version) and its command audit
 *   partitions.c  partitioned mode: owned partitions, their slices of the
 *               views, merged reads;  peers.c  the group's owners,
 *               forwarding, peers' slices
 *
 * Layering (a file calls only files listed after it; scripts/code-shape
 * finds no cycle):
 *
 *   main    -> api, runner
 *   api     -> runner, rebuild, frozen, offsets, asof, fold, state, history,
 *              checkpoint, partitions
 *   runner  -> live, frozen, history
 *   live    -> rebuild, frozen, loop, offsets, gen, state, checkpoint
 *   checkpoint -> state
 *   rebuild -> loop, offsets, gen, state;   frozen -> loop, consumer, state
 *   loop    -> offsets, consumer, dlq, fold, state, writer
 *   consumer -> partitions;   offsets -> consumer, partitions
 *   asof -> fold, history, offsets, partitions;   fold -> history
 *   partitions -> peers, state;   peers -> state
 *   every file -> lock
 *
 * A loop never names its modes: they reach it as a table of hooks
 * (pj_loop_ops_t in loop.h), so loop.c and the mode files do not call each
 * other both ways.
 */
#ifndef ESCQRS_PROJECTOR_H
#define ESCQRS_PROJECTOR_H

#include "lock.h"

#include "escqrs/auth.h"
#include "escqrs/checkpoint.h"
#include "escqrs/conf.h"
#include "escqrs/http_server.h"
#include "escqrs/kafka.h"
#include "escqrs/metrics.h"
#include "escqrs/projection.h"
#include "escqrs/registry.h"
#include "escqrs/store.h"

#include <pthread.h>
#include <stdatomic.h>

/* ------------------------------------------------------------ limits */

#define PJ_MAX_PARTITIONS 1024 /* per topic */
#define PJ_MAX_FROZEN     16   /* frozen views per runner */
#define PJ_TOPIC_MAX      249  /* Kafka's longest topic name */
#define PJ_DIR_MAX        512  /* <store.path>/<projection> */
#define PJ_VIEW_DIR_MAX   600  /* PJ_DIR_MAX + "/frozen-" + a label */
#define PJ_PATH_MAX       1024 /* an entry of PJ_DIR_MAX: g<N>, CURRENT, frozen-<label> */
#define PJ_FILE_MAX       1100 /* a file in such an entry: frozen-<label>/FROZEN.tmp */
#define PJ_ERRSTR_MAX     512  /* error detail kept by a loop, a rebuild or a frozen view */
#define PJ_REASON_MAX     1024 /* a runner's state reason */
#define PJ_LABEL_MAX      64   /* a frozen view's label and its NUL */
#define PJ_TIME_MAX       40   /* RFC 3339 with milliseconds (pj_format_time) */
#define PJ_SUBJECT_MAX    300  /* a registry subject: <topic>-value */
#define PJ_GROUP_MAX      400  /* escqrs-projector.<projector.name>.<projection> */
#define PJ_LABELS_MAX     600  /* the labels of one metric */
#define PJ_URL_MAX        1024 /* an advertised URL (partitioned mode) */

/* The layout of a projector's stores (the reserved keys, the built-in
 * projections' entries), recorded in each store's format record and checked
 * at open and by a clone (checkpoint.c; the value is in escqrs/checkpoint.h,
 * which `escqrs clone` reads too).  Bump it with any change that makes an
 * older store or checkpoint unreadable. */
#define PJ_STORE_FORMAT             ES_PROJECTOR_STORE_FORMAT
#define PJ_STORE_FORMAT_PARTITIONED ES_PROJECTOR_STORE_FORMAT "+partitioned" /* slices */
#define PJ_CHECKPOINT_PREFIX        "checkpoint-" /* <dir>/checkpoint-<n>: a checkpoint being served */

/* ---------------------------------------------------------- timeouts */

#define PJ_METADATA_TIMEOUT_MS  10000 /* metadata, watermark, offsets-for-times, seek */
#define PJ_WATERMARK_QUICK_MS   2000  /* a high watermark librdkafka has not cached yet (lag) */
#define PJ_CREATE_TOPIC_MS      15000 /* creating a DLQ topic */
#define PJ_DLQ_POLL_MS          500   /* reading the DLQ back at a loop's start */
#define PJ_DLQ_FLUSH_TIMEOUT_MS 30000 /* DLQ records delivered before their batch is written */
#define PJ_CONSUME_WAIT_MS      100   /* a loop waits this long for a batch's first event */
#define PJ_TICK_MS              1000  /* lag, gauges and rebuild progress, at most this often */
#define PJ_KAFKA_COMMIT_MS      1000  /* applied offsets to Kafka (lag tools), at most this often */
#define PJ_KAFKA_RECOMMIT_MS    5000  /* ... and all of them again this often (a failed commit) */
#define PJ_REBUILD_LOG_MS       5000  /* a rebuild's progress log line */
#define PJ_NO_SPACE_RETRY_MS    1000  /* a store write or open refused for space is retried */
#define PJ_START_LOG_MS         30000 /* "cannot start yet" is logged at most this often */
#define PJ_SLEEP_SLICE_MS       100   /* sleeps wake this often to see a stop */
#define PJ_ASOF_POLL_MS         1000  /* as_of: one poll of the partition prefix */
#define PJ_ASOF_STALL_MS        10000 /* as_of: a log read with no record nor move this long: 503 */
#define PJ_ASOF_HISTORY_WAIT_MS                                                                    \
    1000                        /* as_of waits this long for the history, then reads the log       \
                                 */
#define PJ_BACKOFF_RAMP     10  /* back-offs grow linearly for this many attempts */
#define PJ_START_BACKOFF_MS 200 /* a loop's start, per attempt (2 s at most) */
#define PJ_RETRY_BACKOFF_MS                                                                        \
    500 /* a batch met a registry outage or a DLQ refusal, per retry (5 s at most) */
#define PJ_SIDE_START_ATTEMPTS 10 /* a rebuild or frozen loop gives up starting after these */
#define PJ_START_LOG_EVERY     15 /* a loop's start failures logged every so many attempts */

/** @brief Linear back-off: @p attempt × @p step_ms, capped at PJ_BACKOFF_RAMP steps. */
static inline int pj_backoff_ms(int attempt, int step_ms)
{
    return (attempt < PJ_BACKOFF_RAMP ? attempt : PJ_BACKOFF_RAMP) * step_ms;
}

typedef struct es_projector_s es_projector_t;
typedef struct pj_owners_s pj_owners_t;

/*
 * A runner's state.  STARTING: the broker, the registry or the store is not
 * there yet (retried; nothing served).  WAITING: running but unable to write
 * (a full disk), or open read-only until space returns: reads are served,
 * /readyz is 503, and it goes on by itself.  HALTED: stopped until an
 * operator acts (below).  `reason` says why in every state but RUNNING.
 *
 * The halting rule — what halts, what waits, what halts only a frozen view:
 *
 *  - HALTED (the failing loop ends; its partitions' offsets stay before the
 *    record it could not handle, so nothing is skipped; the live store is
 *    still served; /readyz is 503; a rebuild is refused; a restart resumes
 *    from the stored offsets):
 *      . a fold returns ES_ERR_STORE: the projector's own store failed, not
 *        the event, so the event is neither applied nor sent to the DLQ;
 *      . a poison event (undecodable, unknown schema, refused by the fold)
 *        with on_error=halt;
 *      . a store write fails with anything but ES_ERR_NO_SPACE (unless the
 *        projector is stopping);
 *      . a rebuild's swap fails.
 *    A rebuild loop that halts sets the runner HALTED too, and its shadow
 *    generation is dropped; but for a failed swap: that shadow holds every
 *    batch (flushed, or as a kill -9 leaves it), so it and REBUILD stay and
 *    the next start resumes the rebuild, which swaps at once.
 *  - WAITING or STARTING (the loop retries by itself, never halts, never
 *    crashes): ES_ERR_NO_SPACE on a write (the same batch is written again,
 *    WAITING) or at the store's open (read-only meanwhile, WAITING); the
 *    registry unreachable while decoding (the rest of the batch is read
 *    again after a back-off, STARTING); a DLQ send or flush that fails
 *    (nothing of the batch is written, its offsets neither: it is folded
 *    again and its poison events sent again, STARTING); the broker, the
 *    registry or the store missing at start-up (STARTING; WAITING when it
 *    is disk space).  A rebuild or frozen loop
 * waits the same way without touching the runner's state, and gives up starting after
 * PJ_SIDE_START_ATTEMPTS (the live view keeps serving).
 *  - A frozen build never halts the runner: every HALTED cause above fails
 *    only that view (state failed, its directory deleted).
 */
typedef enum { PJ_STARTING, PJ_RUNNING, PJ_WAITING, PJ_HALTED } pj_state_t;

/* Progress of a rebuild, for logs, /metrics and GET /admin/projections. */
typedef struct pj_rebuild_s {
    bool active;
    int generation;
    int64_t started_ms;
    int64_t events;
    double rate;  /* events/s, smoothed */
    int64_t lag;  /* events left to the high watermarks */
    double eta_s; /* lag / rate */
    char last_error[PJ_ERRSTR_MAX];
    int64_t finished_ms;
    int64_t last_duration_ms;
    int64_t last_events;
} pj_rebuild_t;

typedef enum { PJ_FZ_BUILDING, PJ_FZ_READY, PJ_FZ_FAILED } pj_fz_state_t;

/*
 * A frozen view: the projection as of `until_ms`.  The runner's array of
 * them changes only under the runner's write lock (queries hold the read
 * lock while rendering from `st`); the fields under the runner's mutex, but
 * label, dir and until_ms, which never change.
 */
typedef struct pj_frozen_s {
    char label[PJ_LABEL_MAX];
    char dir[PJ_VIEW_DIR_MAX]; /* <runner dir>/frozen-<label> */
    int64_t until_ms;
    pj_fz_state_t state;
    es_store_t *st; /* queried only when READY */
    int64_t events;
    int64_t lag; /* records left to the final offsets while building (-1 unknown) */
    int64_t started_ms, finished_ms;
    int64_t *high[ES_PROJ_MAX_AGGREGATES];  /* high watermarks when the build began */
    int64_t *final[ES_PROJ_MAX_AGGREGATES]; /* where each partition stopped, -1 not yet */
    char error[PJ_ERRSTR_MAX];
    atomic_bool cancel;
    pthread_t thread;
    bool thread_valid;
} pj_frozen_t;

/*
 * A runner.  Which lock guards what (checked by pj_assert_locked() in debug
 * and test builds, see lock.h):
 *
 *  - set once before `started` and never changed: pj, def, ntopics, topic,
 *    dlq, dir; nparts once `connected` (written under `mu`).
 *  - `lock` (read-write): the `live` store pointer and the `frozen` array.
 *    Queries hold it for reading while rendering one answer; the swap, the
 *    read-only re-open and adding or removing a frozen view write.
 *    `generation` and `live_read_only` are written under it once the
 *    runner has started (before, by the live loop's thread alone).
 *  - `mu`: everything from `applied` to `rb`, and the fields of each frozen
 *    view; `cv` is broadcast when the applied offsets or the state move.
 *  - atomics: `started`, `live_stop`.
 *  - the live loop's thread only: `dir_ready`, `resume_rebuild`.
 *
 * Lock order: `lock` before `mu`; `mu` is never held while waiting for I/O,
 * Kafka or another thread.
 */
typedef struct pj_runner_s {
    es_projector_t *pj;
    const es_proj_def_t *def;
    size_t ntopics;
    char topic[ES_PROJ_MAX_AGGREGATES][PJ_TOPIC_MAX];
    char dlq[ES_PROJ_MAX_AGGREGATES][PJ_TOPIC_MAX];
    int nparts[ES_PROJ_MAX_AGGREGATES];
    char dir[PJ_DIR_MAX];       /* <store.path>/<name> */
    es_store_opts_t store_opts; /* the projector's, write_once for a history or an audit */

    pj_rwlock_t lock; /* readers of `live` and `frozen` vs. the swap */
    es_store_t *live; /* NULL until started; read-only while waiting for space */
    bool live_read_only;
    int generation;
    atomic_bool started; /* partitions known and a store open: queries may run */
    bool connected;      /* partitions, arrays and DLQ topics done (live loop only) */
    bool dir_ready;      /* CURRENT read, leftovers removed, frozen views loaded */
    int resume_rebuild;  /* generation of a rebuild to resume after a restart, 0: none */
    bool bootstrapped;   /* bootstrap.from was tried (live loop only) */

    pj_mutex_t mu;                            /* everything below */
    pthread_cond_t cv;                        /* applied offsets or the state moved */
    int64_t *applied[ES_PROJ_MAX_AGGREGATES]; /* next offsets in the live store */
    int64_t *high[ES_PROJ_MAX_AGGREGATES];    /* high watermarks (-1 unknown) */
    pj_state_t state;
    char reason[PJ_REASON_MAX]; /* why the state is not RUNNING */
    pthread_t live_thread;
    bool live_thread_valid;
    pthread_t rb_thread;
    bool rb_thread_valid;
    pj_rebuild_t rb;
    atomic_bool live_stop; /* the live loop stops at its next batch boundary */

    pj_frozen_t *frozen[PJ_MAX_FROZEN]; /* see pj_frozen_t for the locking */
    size_t nfrozen;

    es_counter_t *m_applied, *m_dlq;
    es_histogram_t *m_batch;
    es_gauge_t **m_lag[ES_PROJ_MAX_AGGREGATES];
    es_gauge_t *m_rb_rate, *m_rb_lag, *m_rb_eta, *m_rb_active;

    /* partitioned mode (partitions.c); in replica mode every partition is owned, from 0 */
    bool *owned[ES_PROJ_MAX_AGGREGATES]; /* under `mu`: the group gave it to this instance */
    int64_t *owned_from[ES_PROJ_MAX_AGGREGATES]; /* under `mu`: current once applied reaches it */
    pthread_mutex_t owners_mu;                   /* `owners`: a cache of the group's assignment */
    pj_owners_t *owners;
} pj_runner_t;

struct es_projector_s {
    es_conf_t *conf;
    es_registry_t *reg;
    es_kafka_watch_t *watch; /* is a broker answering? (readiness) */
    es_auth_t *auth;         /* who may query and administer */
    es_metrics_t *metrics;
    pj_mutex_t lookup_mu;  /* guards creating `lookup` */
    es_consumer_t *lookup; /* offsets-for-times of as_of queries, made at the first one */
    es_counter_t *m_asof_index, *m_asof_log; /* as_of answered from the history, from the log */
    pj_runner_t *runners;
    size_t nrunners;
    atomic_bool stop;
    bool halt_on_error;
    int64_t ready_max_lag;
    int batch_max;
    int wait_max_ms;
    char name[128];
    es_store_opts_t store_opts;
    bool partitioned;                 /* projector.mode=partitioned */
    char advertise_url[PJ_URL_MAX];   /* where peers forward queries to us */
    char advertise_admin[PJ_URL_MAX]; /* where peers read our slices */
    const char *peer_token;           /* Bearer token for peers' slice routes ("" none) */
    es_counter_t *m_forwarded;        /* queries forwarded to the owner */
};

/*
 * Entry points.  "Locks: none" means the caller holds neither `lock` nor
 * `mu` of the runner (the function takes them); the assertion turns a
 * self-deadlock into an abort naming the call.
 */

/* runner.c */
/** @brief A projector for configuration @p conf (not started).  Locks: none. */
es_projector_t *pj_new(es_conf_t *conf, char *errstr, size_t errstr_size);
/** @brief Start every runner's live loop (it connects by itself).  Locks: none. */
es_err_t pj_start(es_projector_t *pj, char *errstr, size_t errstr_size);
/** @brief Stop every loop at a batch boundary, close every store, free.  Locks: none. */
void pj_destroy(es_projector_t *pj);
/** @brief The runner of projection @p name, or NULL (the array never changes). */
pj_runner_t *pj_runner_find(es_projector_t *pj, const char *name);

/* state.c */
/** @brief "starting", "running", "waiting" or "halted". */
const char *pj_state_name(pj_state_t state);
/**
 * @brief Set @p r's state and reason, wake waiters; logged only when they
 *        change.  Locks: none.
 */
void pj_runner_set_state(pj_runner_t *r, pj_state_t state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/**
 * @brief Join the thread *@p th if *@p valid (both guarded by `mu`), clearing
 *        *@p valid first so that no one joins it twice.  Locks: none.
 */
void pj_runner_join(pj_runner_t *r, pthread_t *th, bool *valid);
/** @brief The live store.  Locks: the caller holds `lock` (read or write) until done with it. */
es_store_t *pj_runner_live(pj_runner_t *r);
/** @brief The projector's shared handle for look-ups (offsets for times, group descriptions). */
rd_kafka_t *pj_lookup_rk(es_projector_t *pj, char *errstr, size_t errstr_size);

/* live.c */
/** @brief Start @p r's live loop: it connects the runner, then folds.  Locks: none. */
es_err_t pj_live_start(pj_runner_t *r, char *errstr, size_t errstr_size);

/* rebuild.c */
/** @brief Start a rebuild of @p r from offset 0 (ES_ERR_STATE if one runs).  Locks: not `mu`. */
es_err_t pj_rebuild_start(pj_runner_t *r, char *errstr, size_t errstr_size);
/** @brief Resume the rebuild of generation @p g from its stored offsets.  Locks: not `mu`. */
es_err_t pj_rebuild_resume(pj_runner_t *r, int g, char *errstr, size_t errstr_size);

/* offsets.c */
/** @brief Wait until partition @p part of topic @p t has applied @p offset.  Locks: none. */
es_err_t pj_wait_applied(pj_runner_t *r, size_t t, int32_t part, int64_t offset, int timeout_ms);
/** @brief Sum of lags over every partition; -1 while a high watermark is unknown.  Locks: none. */
int64_t pj_runner_lag(pj_runner_t *r);
/** @brief Load the applied offsets of live store @p st (at connect).  Locks: none. */
es_err_t pj_load_applied(pj_runner_t *r, es_store_t *st, char *errstr, size_t errstr_size);

/* gen.c */
/** @brief <dir>/g<g>: the directory of generation @p g. */
void pj_gen_path(const pj_runner_t *r, int g, char *out, size_t outsz);
/**
 * @brief At start-up, from the live loop: create the directory, read CURRENT
 *        (generation 1 when none), find a rebuild to resume, remove leftovers.
 */
es_err_t pj_gen_prepare(pj_runner_t *r, char *errstr, size_t errstr_size);
/** @brief CURRENT := @p g (temporary file, fsync, rename). */
es_err_t pj_gen_write_current(const char *dir, int g, char *errstr, size_t errstr_size);
/** @brief REBUILD := @p g, the generation a rebuild fills (temporary file, fsync, rename). */
es_err_t pj_gen_write_rebuild(const char *dir, int g, char *errstr, size_t errstr_size);
/** @brief Remove REBUILD: nothing to resume. */
void pj_gen_remove_rebuild(const char *dir);

/* fold.c */
/** One record as the runtime folds it: the event a fold sees, and the record's value bytes. */
typedef struct pj_record_s {
    es_proj_event_t ev;
    const void *raw; /* the record's value as on the wire (built-in folds keep it) */
    size_t rawlen;
} pj_record_t;

/** @brief Reader backend over a store (get and prefix scan). */
es_proj_backend_t pj_store_backend(es_store_t *st);
/* Every key of @p st under @p prefix (from @p start on, unless NULL) to @p cb
 * (its first @p strip bytes cut), until @p cb says stop; ES_ERR_STORE when
 * the store could not be read to the end (a scan must not pass for complete). */
es_err_t pj_store_scan(es_store_t *st, const void *prefix, size_t prefixlen, const void *start,
                       size_t startlen, size_t strip,
                       bool (*cb)(void *, const char *, size_t, const char *, size_t),
                       void *cbopaque, char *errstr, size_t errstr_size);
/**
 * @brief Fold decoded record @p m (value @p value) of topic @p t into @p txn
 *        in its own event scope: a refused event leaves nothing behind.
 */
es_err_t pj_fold_record(pj_runner_t *r, size_t t, const rd_kafka_message_t *m, avro_value_t *value,
                        es_proj_txn_t *txn, char *errstr, size_t errstr_size);
/** @brief pj_fold_record() of a record that is not a Kafka message (as_of from the history). */
es_err_t pj_fold_event(pj_runner_t *r, size_t t, const pj_record_t *rec, es_proj_txn_t *txn,
                       char *errstr, size_t errstr_size);

/* frozen.c */
/**
 * @brief Start building frozen view @p label of @p r: the projection as of
 *        @p until_ms (ES_ERR_STATE if the label exists or too many views).
 *        Locks: none.
 */
es_err_t pj_freeze_start(pj_runner_t *r, const char *label, int64_t until_ms, char *errstr,
                         size_t errstr_size);
/** @brief A label is 1..63 of [A-Za-z0-9._-], not starting with '.'. */
bool pj_frozen_label_ok(const char *label);
/** @brief Default label of a freeze at @p until_ms: "20261201T052431.123Z" (UTC). */
void pj_frozen_default_label(int64_t until_ms, char *out, size_t outsz);
/** @brief The view named @p label, or NULL.  Locks: the caller holds `lock` (read or write). */
pj_frozen_t *pj_frozen_find(pj_runner_t *r, const char *label);
/** @brief At start-up: re-open complete frozen views, delete incomplete ones.  Locks: none. */
es_err_t pj_frozen_load(pj_runner_t *r, char *errstr, size_t errstr_size);
/** @brief Stop (if building), close and delete view @p label (ES_ERR_NOT_FOUND).  Locks: none. */
es_err_t pj_frozen_delete(pj_runner_t *r, const char *label, char *errstr, size_t errstr_size);
/** @brief Stop every view's build and close every store (at shutdown).  Locks: none. */
void pj_frozen_close_all(pj_runner_t *r);
/** @brief The views of @p r for GET /admin/projections.  Locks: none. */
json_t *pj_frozen_json(pj_runner_t *r);
/** @brief RFC 3339 UTC with milliseconds. */
void pj_format_time(int64_t ms, char *out, size_t outsz);

/* api.c */
/** @brief The query listener (http.listen): the projections' query routes. */
es_http_server_t *pj_http_start(es_projector_t *pj, char *errstr, size_t errstr_size);
/** @brief The admin listener (admin.listen): /admin routes, health and metrics. */
es_http_server_t *pj_admin_start(es_projector_t *pj, char *errstr, size_t errstr_size);

/* checkpoint.c */
/**
 * @brief Answer GET /admin/projections/{name}/checkpoint: a consistent copy
 *        of @p r's live store as a tar stream with its manifest
 *        (escqrs/checkpoint.h).  Locks: none (takes `lock` to copy).
 */
void pj_checkpoint_serve(pj_runner_t *r, es_http_resp_t *resp);
/** @brief The digest of a store as GET .../digest answers it. */
json_t *pj_digest_json(const char *name, int generation, const es_store_digest_t *d);
/**
 * @brief At the live loop's start, before the directory is prepared: with
 *        `bootstrap.from` set and no live store yet, clone the peer's
 *        checkpoint as the live generation; a failure is logged and the
 *        replica builds from offset 0.  Locks: none.
 */
void pj_checkpoint_bootstrap(pj_runner_t *r);

/* history.c */
typedef enum { PJ_BUILTIN_NONE, PJ_BUILTIN_HISTORY, PJ_BUILTIN_AUDIT } pj_builtin_kind_t;

/** An entry of the history or the audit: where its record was, and the record's value. */
typedef struct pj_entry_s {
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const char *raw; /* borrowed from the stored value */
    size_t rawlen;
} pj_entry_t;

/** @brief Define `<agg>_history` and `<agg>_commands` for every loaded aggregate (once). */
void pj_builtins_define(void);
size_t pj_builtin_count(void);
const es_proj_def_t *pj_builtin_at(size_t i);
/** @brief The built-in projection named @p name, or NULL. */
const es_proj_def_t *pj_builtin_find(const char *name);
/** @brief What @p def is: PJ_BUILTIN_NONE for a module's projection. */
pj_builtin_kind_t pj_builtin_kind(const es_proj_def_t *def);
/** @brief Fold @p rec into built-in projection @p def (it keeps the record's bytes). */
es_err_t pj_builtin_fold(const es_proj_def_t *def, const pj_record_t *rec, es_proj_txn_t *txn,
                         char *errstr, size_t errstr_size);
/** @brief The runner of @p aggregate's history in @p pj, or NULL when not hosted. */
pj_runner_t *pj_history_runner(es_projector_t *pj, const char *aggregate);
/** @brief Parse a stored entry; false when it is not one. */
bool pj_entry_parse(const char *val, size_t len, pj_entry_t *e);
/** What a page hands each entry to; an error ends the page with it. */
typedef es_err_t (*pj_entry_cb)(void *opaque, uint64_t n, const pj_entry_t *e, char *errstr,
                                size_t errstr_size);
/**
 * @brief The entries of aggregate @p id numbered @p from and up, at most
 *        @p limit, to @p cb in order.  A missing number (its event went to
 *        the DLQ) is passed over, not taken for the end: *next is the number
 *        of the first entry after the page, 0 when there is none.
 * @returns ES_ERR_NOT_FOUND when @p id has no entry at all; ES_ERR_DECODE
 *          for a stored value that is not an entry; @p cb's or the reader's error.
 */
es_err_t pj_entry_page(es_proj_reader_t *rd, const char *id, uint64_t from, size_t limit,
                       pj_entry_cb cb, void *opaque, uint64_t *next, char *errstr,
                       size_t errstr_size);
/** @brief The decoder queries render entries with (writer-schema mode, over @p reg). */
es_err_t pj_builtins_open(es_registry_t *reg, char *errstr, size_t errstr_size);
void pj_builtins_close(void);

/* asof.c */
/** @brief Fold aggregate @p id's events up to @p ts_ms into @p map. */
es_err_t pj_fold_as_of(pj_runner_t *r, size_t t, const char *id, int64_t ts_ms,
                       es_proj_memmap_t *map, char *errstr, size_t errstr_size);
/** @brief Java-compatible partition of @p key (murmur2, like the producers). */
int32_t pj_partition_of(const char *key, size_t keylen, int nparts);

/* partitions.c */
#define PJ_SLICE_PREFIX_LEN 4
/** A partition's slice of a store, read with the prefix its keys are stored behind. */
typedef struct pj_slice_s {
    es_store_t *st;
    char prefix[PJ_SLICE_PREFIX_LEN];
    es_buf_t key;
} pj_slice_t;
/** Where partition (t, p) of a runner is folded, seen from this instance. */
typedef enum { PJ_HERE_OWNED, PJ_HERE_MOVING, PJ_HERE_ELSEWHERE } pj_here_t;

/** @brief The key prefix of the slice of partition @p p of topic @p t (PJ_SLICE_PREFIX_LEN bytes).
 */
void pj_slice_prefix(size_t t, int32_t p, char *out);
/** @brief A reader backend over the slice (t, p) of store @p st; pj_slice_done() after. */
es_proj_backend_t pj_slice_backend(pj_slice_t *s, es_store_t *st, size_t t, int32_t p);
void pj_slice_done(pj_slice_t *s);
/** @brief Size the ownership arrays (every partition owned in replica mode).  Locks: `mu`. */
void pj_owned_size_locked(pj_runner_t *r);
/** @brief The rebalance gave (@p owned) or took partition (t, p).  Locks: none. */
void pj_owned_set(pj_runner_t *r, size_t t, int32_t p, bool owned);
/** @brief Owned and current, owned but still catching up, or folded elsewhere.  Locks: none. */
pj_here_t pj_partition_here(pj_runner_t *r, size_t t, int32_t p);
/** @brief The owned partitions for GET /admin/projections.  Locks: none. */
json_t *pj_owned_json(pj_runner_t *r);
/**
 * @brief Answer a query spanning aggregates: @p render (called with @p q)
 *        over a reader merging every partition's slice from its owner.
 *        Locks: none (takes `lock` for each local slice, never across a peer's
 *        request: a swap waiting on two instances would hold both).
 */
void pj_merged_answer(pj_runner_t *r, size_t t,
                      int (*render)(const void *q, es_proj_backend_t be, json_t **body,
                                    char *errstr, size_t errstr_size),
                      const void *q, es_http_resp_t *resp);
/**
 * @brief Partitioned mode: true when a query about partition @p part (-1:
 *        none, it spans aggregates) of topic @p t is answered here; else it
 *        is answered: forwarded to the owner, or 503 moving.
 */
bool pj_route_here(pj_runner_t *r, size_t t, int32_t part, es_http_req_t *req,
                   es_http_resp_t *resp);
/** @brief In partitioned mode, answer 409: @p what is not built there (yet); true then. */
bool pj_partitioned_refused(const pj_runner_t *r, const char *what, es_http_resp_t *resp);
/** @brief GET /admin/projections/{name}/slice: our current slices' entries for a peer. */
void pj_slice_serve(pj_runner_t *r, es_http_req_t *req, es_http_resp_t *resp);

/* peers.c */
/** One entry of a slice; false stops (the entries cannot be used). */
typedef bool pj_entry_cb_t(void *opaque, const char *key, size_t keylen, const char *val,
                           size_t vallen);
/** @brief The client.id of a partitioned live consumer: it names our URLs to the group. */
void pj_client_id(const es_projector_t *pj, char *out, size_t outsz);
/**
 * @brief The query and admin URLs (PJ_URL_MAX each) of the owner of (t, p),
 *        from the group (ES_ERR_NOT_FOUND: none now, a rebalance).  Locks: none.
 */
es_err_t pj_owner_of(pj_runner_t *r, size_t t, int32_t p, char *url, char *admin, char *errstr,
                     size_t errstr_size);
/** @brief Free the cache of the group's owners (at destroy). */
void pj_owners_destroy(pj_runner_t *r);
/** @brief 503 `moving` with Retry-After: a partition changes hands (printf-style reason). */
void pj_answer_moving(es_http_resp_t *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** @brief Answer @p req from the owner of (t, p): one hop, with the caller's credentials.
 *        Locks: none (no swap waits for a peer). */
void pj_forward(pj_runner_t *r, size_t t, int32_t p, es_http_req_t *req, es_http_resp_t *resp);
/**
 * @brief The entries of a peer's slices @p parts ("t.p,t.p") under @p key
 *        (or, @p scan, every key with that prefix), each to @p cb.
 *        ES_ERR_STATE: the peer does not own them now.  Locks: none (no swap
 *        waits for a peer).
 */
es_err_t pj_peer_slice(pj_runner_t *r, const char *admin, const char *parts, bool scan,
                       const void *key, size_t keylen, pj_entry_cb_t *cb, void *opaque,
                       char *errstr, size_t errstr_size);

/* Where a consumer starts a partition whose next offset is @p next: the offset itself,
 * 0 included, never librdkafka's logical beginning (consumer.c says why). */
int64_t pj_start_offset(int64_t next);

#endif
