/*
 * projector.h — escqrs-projector's runtime, shared by its source files.
 *
 * A projector hosts runners, one per projection.  A runner owns the live
 * RocksDB store of its projection (one "generation" directory under
 * <store.path>/<projection>/, named by the CURRENT file), the consume loop
 * that applies events to it, and at most one rebuild loop filling a shadow
 * generation.  Both loops are the same code (loop.c) on different stores.
 * A runner also owns its frozen views (frozen.c): stores built by the same
 * loop from offset 0 up to a timestamp under <dir>/frozen-<label>/, never
 * swapped in, served read-only with `view=<label>` once complete.
 */
#ifndef ESCQRS_PROJECTOR_H
#define ESCQRS_PROJECTOR_H

#include "escqrs/auth.h"
#include "escqrs/conf.h"
#include "escqrs/http.h"
#include "escqrs/kafka.h"
#include "escqrs/metrics.h"
#include "escqrs/projection.h"
#include "escqrs/registry.h"
#include "escqrs/store.h"

#include <pthread.h>
#include <stdatomic.h>

#define PJ_MAX_PARTITIONS 1024

typedef struct es_projector_s es_projector_t;

/*
 * A runner's state.  STARTING: the broker, the registry or the store is not
 * there yet (retried; nothing served).  WAITING: running but unable to write
 * (a full disk), or open read-only until space returns: reads are served,
 * /readyz is 503, and it goes on by itself.  HALTED: stopped at a poison
 * event (on_error=halt) or a store failure, until an operator acts.
 * `reason` says why in every state but RUNNING.
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
    char last_error[512];
    int64_t finished_ms;
    int64_t last_duration_ms;
    int64_t last_events;
} pj_rebuild_t;

#define PJ_MAX_FROZEN 16

typedef enum { PJ_FZ_BUILDING, PJ_FZ_READY, PJ_FZ_FAILED } pj_fz_state_t;

/*
 * A frozen view: the projection as of `until_ms`.  The runner's array of
 * them changes only under the runner's write lock (queries hold the read
 * lock while rendering from `st`); the fields under the runner's mutex.
 */
typedef struct pj_frozen_s {
    char label[64];
    char dir[600]; /* <runner dir>/frozen-<label> */
    int64_t until_ms;
    pj_fz_state_t state;
    es_store_t *st; /* queried only when READY */
    int64_t events;
    int64_t lag; /* records left to the final offsets while building (-1 unknown) */
    int64_t started_ms, finished_ms;
    int64_t *high[ES_PROJ_MAX_AGGREGATES];  /* high watermarks when the build began */
    int64_t *final[ES_PROJ_MAX_AGGREGATES]; /* where each partition stopped, -1 not yet */
    char error[512];
    atomic_bool cancel;
    pthread_t thread;
    bool thread_valid;
} pj_frozen_t;

typedef struct pj_runner_s {
    es_projector_t *pj;
    const es_proj_def_t *def;
    size_t ntopics;
    char topic[ES_PROJ_MAX_AGGREGATES][249];
    char dlq[ES_PROJ_MAX_AGGREGATES][249];
    int nparts[ES_PROJ_MAX_AGGREGATES];
    char dir[512]; /* <store.path>/<name> */

    pthread_rwlock_t lock; /* readers of `live` vs. the swap */
    es_store_t *live;      /* NULL until started; read-only while waiting for space */
    bool live_read_only;
    int generation;
    atomic_bool started; /* partitions known and a store open: queries may run */
    bool connected;      /* partitions, arrays and DLQ topics done (live loop only) */
    bool dir_ready;      /* CURRENT read, leftovers removed, frozen views loaded */
    int resume_rebuild;  /* generation of a rebuild to resume after a restart, 0: none */

    pthread_mutex_t mu;                       /* everything below */
    pthread_cond_t cv;                        /* applied offsets moved */
    int64_t *applied[ES_PROJ_MAX_AGGREGATES]; /* next offsets in the live store */
    int64_t *high[ES_PROJ_MAX_AGGREGATES];    /* high watermarks (-1 unknown) */
    pj_state_t state;
    char reason[1024]; /* why the state is not RUNNING */
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
} pj_runner_t;

struct es_projector_s {
    es_conf_t *conf;
    es_registry_t *reg;
    es_kafka_watch_t *watch; /* is a broker answering? (readiness) */
    es_auth_t *auth;         /* who may query and administer */
    es_metrics_t *metrics;
    es_producer_t *dlq_producer;
    pthread_mutex_t dlq_mu; /* the DLQ producer is shared by loops */
    pj_runner_t *runners;
    size_t nrunners;
    atomic_bool stop;
    bool halt_on_error;
    int64_t ready_max_lag;
    int batch_max;
    int wait_max_ms;
    char name[128];
    es_store_opts_t store_opts;
};

/* loop.c */
es_projector_t *pj_new(es_conf_t *conf, char *errstr, size_t errstr_size);
es_err_t pj_start(es_projector_t *pj, char *errstr, size_t errstr_size);
void pj_destroy(es_projector_t *pj);
pj_runner_t *pj_runner_find(es_projector_t *pj, const char *name);
/** @brief "starting", "running", "waiting" or "halted". */
const char *pj_state_name(pj_state_t state);
/** @brief Start a rebuild of @p r from offset 0 (ES_ERR_STATE if one runs). */
es_err_t pj_rebuild_start(pj_runner_t *r, char *errstr, size_t errstr_size);
/** @brief Wait until partition @p part of topic @p t has applied @p offset. */
es_err_t pj_wait_applied(pj_runner_t *r, size_t t, int32_t part, int64_t offset, int timeout_ms);
/** @brief Sum of lags over every partition; -1 while a high watermark is unknown. */
int64_t pj_runner_lag(pj_runner_t *r);
int64_t pj_now_ms(void);
/** @brief Reader backend over a store (get and prefix scan). */
es_proj_backend_t pj_store_backend(es_store_t *st);

/**
 * @brief Start building frozen view @p label of @p r: the projection as of
 *        @p until_ms (ES_ERR_STATE if the label exists or too many views).
 */
es_err_t pj_freeze_start(pj_runner_t *r, const char *label, int64_t until_ms, char *errstr,
                         size_t errstr_size);

/* frozen.c */
/** @brief A label is 1..63 of [A-Za-z0-9._-], not starting with '.'. */
bool pj_frozen_label_ok(const char *label);
/** @brief Default label of a freeze at @p until_ms: "20261201T052431.123Z" (UTC). */
void pj_frozen_default_label(int64_t until_ms, char *out, size_t outsz);
/** @brief New view (state BUILDING, no store), sized for @p r's partitions. */
pj_frozen_t *pj_frozen_new(pj_runner_t *r, const char *label, int64_t until_ms);
/** @brief Free @p fz (its store must be closed). */
void pj_frozen_free(pj_runner_t *r, pj_frozen_t *fz);
/** @brief The view named @p label (caller holds r->lock), or NULL. */
pj_frozen_t *pj_frozen_find(pj_runner_t *r, const char *label);
/** @brief Write the FROZEN marker of a complete view (temporary file, fsync, rename). */
es_err_t pj_frozen_write_marker(pj_runner_t *r, pj_frozen_t *fz, char *errstr, size_t errstr_size);
/** @brief Remove a view's directory (marker first, then the RocksDB files). */
void pj_frozen_remove_dir(const char *dir);
/** @brief At start-up: re-open complete frozen views, delete incomplete ones. */
es_err_t pj_frozen_load(pj_runner_t *r, char *errstr, size_t errstr_size);
/** @brief Stop (if building), close and delete view @p label (ES_ERR_NOT_FOUND). */
es_err_t pj_frozen_delete(pj_runner_t *r, const char *label, char *errstr, size_t errstr_size);
/** @brief Stop every view's build and close every store (at shutdown). */
void pj_frozen_close_all(pj_runner_t *r);
/** @brief The views of @p r for GET /admin/projections. */
json_t *pj_frozen_json(pj_runner_t *r);
/** @brief RFC 3339 UTC with milliseconds. */
void pj_format_time(int64_t ms, char *out, size_t outsz);

/* api.c */
/** @brief The query listener (http.listen): the projections' query routes. */
es_http_server_t *pj_http_start(es_projector_t *pj, char *errstr, size_t errstr_size);
/** @brief The admin listener (admin.listen): /admin routes, health and metrics. */
es_http_server_t *pj_admin_start(es_projector_t *pj, char *errstr, size_t errstr_size);

/* asof.c */
/** @brief Fold aggregate @p id's events up to @p ts_ms into @p map. */
es_err_t pj_fold_as_of(pj_runner_t *r, size_t t, const char *id, int64_t ts_ms,
                       es_proj_memmap_t *map, char *errstr, size_t errstr_size);
/** @brief Java-compatible partition of @p key (murmur2, like the producers). */
int32_t pj_partition_of(const char *key, size_t keylen, int nparts);

#endif
