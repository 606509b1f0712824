/*
 * live.c — the live loop's start: connect the runner, then fold.
 *
 * Nothing a runner needs from outside is required when the process starts:
 * the live loop's own thread learns the partitions, creates the DLQ topics,
 * tidies the store directory and opens the store, each part once, retrying
 * with a back-off while the broker, the registry or disk space is missing
 * (state "starting" or "waiting", said on /readyz).  So the HTTP server is
 * up first and the process never crash-loops.
 *
 * A full disk: RocksDB must never run out of space (store.h), so a store
 * open refused with ES_ERR_NO_SPACE opens the live generation read-only
 * instead: its reads are served while the loop waits, and the store is
 * re-opened for writing once space returns.
 *
 * A new replica with `bootstrap.from` set and no live store clones a peer's
 * checkpoint first (checkpoint.c), so the loop starts from its offsets.
 *
 * A rebuild interrupted by a restart (gen.c found REBUILD) is resumed here,
 * after the runner is connected and before it says "running", so a client
 * that waited for "running" sees the rebuild.  Then the thread runs the
 * ordinary loop (loop.c) in the live mode, whose hooks (pj_live_ops, at the
 * bottom) report to the runner: its state, applied offsets, lag, metrics.
 */
#include "loop.h"

#include "escqrs/util.h"
#include "escqrs/log.h"

#include <stdio.h>
#include <unistd.h>

#define LOG "projector"

static es_err_t partitions_of(rd_kafka_t *rk, const char *topic, int *n, char *errstr,
                              size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, PJ_METADATA_TIMEOUT_MS);
    es_err_t err = ES_ERR_OK;
    if (kerr) {
        snprintf(errstr, errstr_size, "metadata of %s: %s", topic, rd_kafka_err2str(kerr));
        err = ES_ERR_KAFKA;
    } else if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        snprintf(errstr, errstr_size, "topic %s does not exist", topic);
        err = ES_ERR_NOT_FOUND;
    } else {
        *n = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return err;
}

/* Partition counts of the runner's topics (at most PJ_MAX_PARTITIONS each). */
static es_err_t count_partitions(pj_runner_t *r, int *nparts, char *errstr, size_t errstr_size)
{
    es_err_t err = ES_ERR_OK;
    es_consumer_t *meta = es_consumer_new(r->pj->conf, NULL, errstr, errstr_size);
    if (!meta)
        return ES_ERR_CONF;
    for (size_t t = 0; t < r->ntopics && !err; t++) {
        err = partitions_of(es_consumer_rk(meta), r->topic[t], &nparts[t], errstr, errstr_size);
        if (!err && nparts[t] > PJ_MAX_PARTITIONS) {
            snprintf(errstr, errstr_size, "%s has too many partitions", r->topic[t]);
            err = ES_ERR_CONF;
        }
    }
    es_consumer_destroy(meta);
    return err;
}

/* The DLQ topics exist before anything is sent to them. */
static es_err_t create_dlq_topics(pj_runner_t *r, const int *nparts, char *errstr,
                                  size_t errstr_size)
{
    es_err_t err = ES_ERR_OK;
    es_admin_t *adm = es_admin_new(r->pj->conf, errstr, errstr_size);
    if (!adm)
        return ES_ERR_CONF;
    for (size_t t = 0; t < r->ntopics && !err; t++) {
        es_topic_spec_t spec;
        es_topic_spec_for(r->pj->conf, ES_TOPIC_DLQ, r->dlq[t], &spec);
        spec.partitions = nparts[t];
        err = es_admin_create_topics(adm, &spec, 1, PJ_CREATE_TOPIC_MS, errstr, errstr_size);
    }
    es_admin_destroy(adm);
    return err;
}

/* The per-partition arrays and gauges.  Locks: `mu`. */
static void size_runner_locked(pj_runner_t *r, const int *nparts)
{
    char labels[PJ_LABELS_MAX];
    pj_assert_locked(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++) {
        r->nparts[t] = nparts[t];
        r->applied[t] = es_calloc((size_t)nparts[t], sizeof(int64_t));
        r->high[t] = es_calloc((size_t)nparts[t], sizeof(int64_t));
        r->m_lag[t] = es_calloc((size_t)nparts[t], sizeof(es_gauge_t *));
        for (int p = 0; p < nparts[t]; p++) {
            r->high[t][p] = -1;
            snprintf(labels, sizeof(labels), "projection=\"%s\",topic=\"%s\",partition=\"%d\"",
                     r->def->name, r->topic[t], p);
            r->m_lag[t][p] = es_metrics_gauge(r->pj->metrics, "escqrs_projector_lag",
                                              "Events not yet applied, per partition", labels);
        }
    }
    pj_owned_size_locked(r);
    r->connected = true;
}

/* Partition counts, the DLQ topics, the per-partition arrays and gauges. */
static es_err_t runner_connect_kafka(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    int nparts[ES_PROJ_MAX_AGGREGATES] = {0};
    es_err_t err = count_partitions(r, nparts, errstr, errstr_size);
    if (!err)
        err = create_dlq_topics(r, nparts, errstr, errstr_size);
    if (err)
        return err;
    pj_mutex_lock(&r->mu);
    size_runner_locked(r, nparts);
    pj_mutex_unlock(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++) /* partitions added later: /readyz says so */
        es_kafka_watch_topic(r->pj->watch, r->topic[t], nparts[t]);
    return ES_ERR_OK;
}

/* The store directory: CURRENT, a rebuild to resume, leftovers, frozen views. */
static es_err_t runner_prepare_dir(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    if (!r->bootstrapped) { /* a new replica may start from a peer's checkpoint, once */
        r->bootstrapped = true;
        pj_checkpoint_bootstrap(r);
    }
    es_err_t err = pj_gen_prepare(r, errstr, errstr_size);
    if (!err)
        err = pj_frozen_load(r, errstr, errstr_size);
    if (!err)
        r->dir_ready = true;
    return err;
}

/* Make @p st the live store (under the write lock: queries may be reading). */
static void set_live(pj_runner_t *r, es_store_t *st, bool read_only)
{
    pj_rwlock_wrlock(&r->lock);
    es_store_t *old = r->live;
    r->live = st;
    r->live_read_only = read_only;
    pj_rwlock_unlock(&r->lock);
    es_store_close(old);
    atomic_store(&r->started, true);
}

/* No space to open for writing: serve the store read-only meanwhile (once). */
static void open_read_only(pj_runner_t *r, const char *path, const char *why_rw)
{
    es_store_opts_t ro = r->store_opts;
    es_store_t *st = NULL;
    char why[PJ_ERRSTR_MAX];
    ro.read_only = true;
    if (!es_store_open_err(path, &ro, &st, why, sizeof(why)) &&
        !pj_load_applied(r, st, why, sizeof(why))) {
        set_live(r, st, true); /* serve what is there while space is missing */
        es_log_warn(LOG, "%s: store opened read-only: %s", r->def->name, why_rw);
    } else {
        es_store_close(st);
    }
}

/*
 * Everything of a runner that needs the broker or the disk, each part once.
 * ES_ERR_NO_SPACE after opening the store read-only (reads are served) or
 * with nothing open; the caller retries until ES_ERR_OK.
 */
static es_err_t runner_connect(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    char path[PJ_PATH_MAX];
    es_err_t err;
    if (!r->connected && (err = runner_connect_kafka(r, errstr, errstr_size)))
        return err;
    if (!r->dir_ready && (err = runner_prepare_dir(r, errstr, errstr_size)))
        return err;
    pj_gen_path(r, r->generation, path, sizeof(path));
    es_store_t *st = NULL;
    err = es_store_open_err(path, &r->store_opts, &st, errstr, errstr_size);
    if (err == ES_ERR_NO_SPACE && !r->live) {
        open_read_only(r, path, errstr);
        return ES_ERR_NO_SPACE;
    }
    if (err)
        return err;
    if ((err = pj_load_applied(r, st, errstr, errstr_size))) {
        es_store_close(st);
        return err;
    }
    set_live(r, st, false);
    return ES_ERR_OK;
}

/* Connect the runner, retrying with a back-off; false when the projector stops. */
static bool live_connect(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    int64_t last_log = 0;
    for (int attempt = 1; !atomic_load(&r->pj->stop); attempt++) {
        es_err_t err = runner_connect(r, l->errstr, sizeof(l->errstr));
        if (!err) {
            l->st = r->live;
            l->generation = r->generation;
            return true;
        }
        pj_runner_set_state(r, err == ES_ERR_NO_SPACE ? PJ_WAITING : PJ_STARTING, "%s", l->errstr);
        if (es_now_ms() - last_log >= PJ_START_LOG_MS) {
            es_log_warn(LOG, "%s: cannot start yet (attempt %d, retrying): %s", r->def->name,
                        attempt, l->errstr);
            last_log = es_now_ms();
        }
        if (pj_loop_sleep(r, pj_backoff_ms(attempt, PJ_START_BACKOFF_MS)))
            return false;
    }
    return false;
}

/* A full disk at start-up: the store is read-only; wait for space, reads go on. */
static bool wait_for_space(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    es_log_warn(LOG, "%s: waiting for disk space before folding", r->def->name);
    while (runner_connect(r, l->errstr, sizeof(l->errstr)) && !atomic_load(&r->pj->stop)) {
        pj_runner_set_state(r, PJ_WAITING, "%s", l->errstr);
        usleep(PJ_NO_SPACE_RETRY_MS * 1000);
    }
    if (atomic_load(&r->pj->stop))
        return false;
    l->st = r->live;
    return true;
}

static bool live_prepare(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    if (!live_connect(l))
        return false;
    if (r->live_read_only && !wait_for_space(l))
        return false;
    if (r->resume_rebuild) { /* before "running": a client that waited sees it */
        char why[PJ_ERRSTR_MAX];
        int g = r->resume_rebuild;
        r->resume_rebuild = 0;
        if (pj_rebuild_resume(r, g, why, sizeof(why)))
            es_log_error(LOG, "%s: cannot resume the rebuild of generation %d: %s", r->def->name, g,
                         why);
    }
    pj_runner_set_state(r, PJ_RUNNING, "%s", "");
    return true;
}

static void *live_main(void *arg)
{
    pj_loop_t *l = arg;
    if (live_prepare(l))
        pj_loop_run(l);
    else
        pj_loop_end(l);
    return NULL;
}

es_err_t pj_live_start(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    pj_loop_t *l = pj_loop_new(r, &pj_live_ops, NULL, 0); /* it connects the runner first */
    pj_assert_unlocked(&r->mu);
    pj_mutex_lock(&r->mu);
    if (pthread_create(&r->live_thread, NULL, live_main, l) != 0) {
        pj_mutex_unlock(&r->mu);
        pj_loop_free(l);
        snprintf(errstr, errstr_size, "cannot start a thread");
        return ES_ERR_STATE;
    }
    r->live_thread_valid = true;
    pj_mutex_unlock(&r->mu);
    return ES_ERR_OK;
}

/* ------------------------------------------------------------ live mode */

static bool live_start_failed(pj_loop_t *l, int attempt)
{
    pj_runner_set_state(l->r, PJ_STARTING, "%s", l->errstr); /* reads go on; /readyz says why */
    return false;
}

static void live_started(pj_loop_t *l)
{
    pj_runner_set_state(l->r, PJ_RUNNING, "%s", "");
    es_log_info(LOG, "%s: live loop started on generation %d", l->r->def->name, l->generation);
}

static void live_waits(pj_loop_t *l, pj_state_t why, bool first)
{
    pj_runner_set_state(l->r, why, "%s", l->errstr);
}

static void live_running(pj_loop_t *l)
{
    pj_runner_set_state(l->r, PJ_RUNNING, "%s", "");
}

/*
 * High watermarks first, from the fetches that delivered this batch, then
 * the applied offsets: a reader never sees a partition applied past its
 * high watermark, and lag counts what is pending now, not at the last tick.
 */
static void live_written(pj_loop_t *l, const pj_batch_t *b)
{
    pj_runner_t *r = l->r;
    pj_refresh_lag(l, true, false);
    pj_publish_applied(l);
    es_counter_add(r->m_applied, (uint64_t)b->applied);
    es_counter_add(r->m_dlq, (uint64_t)b->dlq);
    if (b->n > 0)
        es_histogram_observe(r->m_batch, b->seconds);
}

static bool live_tick(pj_loop_t *l, int64_t events, double dt_s)
{
    pj_refresh_lag(l, true, true);
    pj_commit_to_kafka(l); /* what the last batches' rate limit held back */
    return false;
}

const pj_loop_ops_t pj_live_ops = {
    .kind = "live",
    .start_failed = live_start_failed,
    .started = live_started,
    .halt = pj_loop_halt_runner,
    .waits = live_waits,
    .running = live_running,
    .written = live_written,
    .tick = live_tick,
    .advance_idle = true,
};
