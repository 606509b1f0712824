/*
 * rebuild.c — blue/green rebuilds: the rebuild mode of the loop.
 *
 * A rebuild is a second loop filling generation N+1 from offset 0 into its
 * own store while the live loop serves generation N.  Its store records its
 * offsets like any other, so it is exactly-once for the same reasons
 * (loop.c).
 *
 * The swap, so that reads never go backwards and nothing is applied twice:
 *  1. when the shadow's lag is within one batch, the live loop is asked to
 *     stop (live_stop) and joined: it stops at a batch boundary, so its
 *     applied offsets are exactly what its store holds;
 *  2. the shadow goes on until its next offsets reach those applied
 *     offsets on every partition (caught_up_to_live), so it holds at least
 *     everything the live store did;
 *  3. the shadow, written without RocksDB's log (nothing reads it and a
 *     crash only loses a tail it resumes from), is flushed into its files
 *     and writes with the log from then on (es_store_persist; a history's,
 *     written blind into a vector memtable, is opened again for reads);
 *     CURRENT is rewritten (temporary file, fsync, rename), REBUILD removed,
 *     and the store pointer swapped under the runner's write lock: a query
 *     holds the read lock while rendering one answer, so none sees a closed
 *     store; the old generation is closed and deleted;
 *  4. the rebuild loop carries on as the live loop (pj_loop_become_live),
 *     publishing its offsets as the applied ones.
 * Never while the projector stops: the next start resumes instead.
 *
 * A rebuild survives a restart: REBUILD names its generation from its start
 * to the swap, so the next start opens that generation again and carries on
 * from its stored offsets instead of deleting it (a kill -9 at any instant
 * included; gen.c tidies the directory).  A rebuild that fails or cannot
 * start drops its shadow and REBUILD; the live loop, if it was stopped for
 * the hand-over, has ended, and the runner is halted (projector.h).  A swap
 * that fails (step 3) halts the runner too but keeps both: the shadow holds
 * every batch, so the next start resumes it and swaps at once.
 */
#include "loop.h"

#include "escqrs/util.h"
#include "escqrs/log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG "projector"

#define RATE_KEEP 0.8 /* weight of the previous rate in the smoothed events/s */

/* -------------------------------------------------------- the rebuild mode */

static bool rebuild_start_failed(pj_loop_t *l, int attempt)
{
    return pj_loop_give_up(l, attempt, l->r->rb.last_error, sizeof(l->r->rb.last_error));
}

static void rebuild_started(pj_loop_t *l)
{
    es_log_info(LOG, "%s: rebuild loop started on generation %d", l->r->def->name, l->generation);
}

/* Waiting never touches the runner's state: the live loop owns it. */
static void rebuild_waits(pj_loop_t *l, pj_state_t why, bool first)
{
    pj_runner_t *r = l->r;
    if (!first)
        return;
    es_log_warn(LOG, "%s: %s loop waits: %s", r->def->name, l->ops->kind, l->errstr);
    if (why == PJ_WAITING) {
        pj_mutex_lock(&r->mu);
        snprintf(r->rb.last_error, sizeof(r->rb.last_error), "%s", l->errstr);
        pj_mutex_unlock(&r->mu);
    }
}

static void rebuild_progress(pj_loop_t *l, int64_t lag, int64_t applied_now, double dt)
{
    pj_runner_t *r = l->r;
    pj_mutex_lock(&r->mu);
    if (dt > 0) {
        double inst = (double)applied_now / dt;
        r->rb.rate = r->rb.rate > 0 ? RATE_KEEP * r->rb.rate + (1 - RATE_KEEP) * inst : inst;
    }
    if (lag >= 0)
        r->rb.lag = lag;
    r->rb.eta_s = r->rb.rate > 0 ? (double)r->rb.lag / r->rb.rate : -1;
    pj_mutex_unlock(&r->mu);
    es_gauge_set(r->m_rb_rate, r->rb.rate);
    es_gauge_set(r->m_rb_lag, (double)r->rb.lag);
    es_gauge_set(r->m_rb_eta, r->rb.eta_s);
}

/* Each written batch counts at once, so /admin/projections shows a rebuild's
 * progress batch by batch: its ticks (the rate, the lag, the hand-over) come
 * at most once a second, and a short rebuild was done before its first. */
static void rebuild_written(pj_loop_t *l, const pj_batch_t *b)
{
    pj_runner_t *r = l->r;
    pj_mutex_lock(&r->mu);
    r->rb.events += b->applied + b->dlq;
    pj_mutex_unlock(&r->mu);
}

/* Step 1: stop the live loop at its next batch boundary and wait for it. */
static void stop_live_loop(pj_runner_t *r)
{
    atomic_store(&r->live_stop, true);
    pj_runner_join(r, &r->live_thread, &r->live_thread_valid);
}

/* Step 2: the shadow holds at least what the (stopped) live store holds. */
static bool caught_up_to_live(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    bool ok = true;
    pj_mutex_lock(&r->mu);
    for (size_t t = 0; t < r->ntopics && ok; t++)
        for (int p = 0; p < r->nparts[t] && ok; p++)
            ok = l->stored[t][p] >= r->applied[t][p];
    pj_mutex_unlock(&r->mu);
    return ok;
}

/* The rebuild's thread is the live thread now; its figures are final.  Locks: `mu`. */
static void rebuild_done_locked(pj_runner_t *r)
{
    pj_assert_locked(&r->mu);
    r->live_thread = r->rb_thread;
    r->live_thread_valid = true;
    r->rb_thread_valid = false;
    r->rb.active = false;
    r->rb.finished_ms = es_now_ms();
    r->rb.last_duration_ms = r->rb.finished_ms - r->rb.started_ms;
    r->rb.last_events = r->rb.events;
}

/* Steps 3 and 4: make the shadow the live store; the old generation is deleted. */
static es_err_t swap_in(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    char oldpath[PJ_PATH_MAX];
    es_err_t err;

    /* the shadow was written without RocksDB's log: into its files before anyone reads it */
    if ((err = es_store_persist(l->st, l->errstr, sizeof(l->errstr))) ||
        (err = pj_gen_write_current(r->dir, l->generation, l->errstr, sizeof(l->errstr))))
        return err;
    pj_gen_remove_rebuild(r->dir); /* CURRENT names it now: nothing left to resume */
    pj_rwlock_wrlock(&r->lock);
    es_store_t *old = r->live;
    r->live = l->st;
    int oldgen = r->generation;
    r->generation = l->generation;
    pj_rwlock_unlock(&r->lock);
    snprintf(oldpath, sizeof(oldpath), "%s", es_store_path(old));
    es_store_close(old);
    if (es_store_destroy_path(oldpath, l->errstr, sizeof(l->errstr)) == ES_ERR_OK)
        rmdir(oldpath);
    pj_loop_become_live(l);
    pj_mutex_lock(&r->mu);
    rebuild_done_locked(r);
    pj_mutex_unlock(&r->mu);
    atomic_store(&r->live_stop, false);
    es_gauge_set(r->m_rb_active, 0);
    es_log_info(LOG,
                "%s: rebuild done: generation %d replaced %d (%lld events in %.1f s, %.0f "
                "events/s)",
                r->def->name, l->generation, oldgen, (long long)r->rb.last_events,
                (double)r->rb.last_duration_ms / 1000.0,
                r->rb.last_duration_ms
                    ? (double)r->rb.last_events * 1000.0 / (double)r->rb.last_duration_ms
                    : 0.0);
    return ES_ERR_OK;
}

static bool rebuild_tick(pj_loop_t *l, int64_t events, double dt_s)
{
    pj_runner_t *r = l->r;
    es_projector_t *pj = r->pj;
    int64_t lag = pj_refresh_lag(l, false, true);
    rebuild_progress(l, lag, events, dt_s);
    int64_t now = es_now_ms();
    if (now - l->log_ms >= PJ_REBUILD_LOG_MS) {
        l->log_ms = now;
        es_log_info(LOG,
                    "%s: rebuild generation %d: %lld events, %.0f events/s, lag %lld, ETA %.0f s",
                    r->def->name, l->generation, (long long)r->rb.events, r->rb.rate,
                    (long long)r->rb.lag, r->rb.eta_s);
    }
    if (lag >= 0 && lag <= pj->batch_max && !atomic_load(&r->live_stop))
        stop_live_loop(r);
    /* never at shutdown: the next start resumes instead (REBUILD) */
    if (atomic_load(&r->live_stop) && caught_up_to_live(l) && !atomic_load(&pj->stop)) {
        if (swap_in(l)) {
            l->keep_store = true; /* whole, as after a kill -9: the next start resumes it */
            pj_runner_set_state(r, PJ_HALTED,
                                "swap: %s (generation %d is kept: a restart resumes its rebuild)",
                                l->errstr, l->generation);
            return true;
        }
        pj_publish_applied(l);
    }
    return false;
}

/* The rebuild loop ended before its swap. */
static void rebuild_finish(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    if (atomic_load(&r->pj->stop) || l->keep_store) {
        /* stopping, or the swap failed: the shadow and REBUILD stay, the next start resumes it */
        es_store_close(l->st);
        pj_mutex_lock(&r->mu);
        r->rb.active = false;
        pj_mutex_unlock(&r->mu);
        es_gauge_set(r->m_rb_active, 0);
        return;
    }
    /* a failed shadow is dropped; a live loop stopped for the hand-over is not
     * restarted (the runner is halted then: projector.h) */
    char path[PJ_PATH_MAX];
    snprintf(path, sizeof(path), "%s", es_store_path(l->st));
    es_store_close(l->st);
    es_store_destroy_path(path, l->errstr, sizeof(l->errstr));
    rmdir(path);
    pj_gen_remove_rebuild(r->dir);
    pj_mutex_lock(&r->mu);
    r->rb.active = false;
    pj_mutex_unlock(&r->mu);
    es_gauge_set(r->m_rb_active, 0);
}

static const pj_loop_ops_t rebuild_ops = {
    .kind = "rebuild",
    .start_failed = rebuild_start_failed,
    .started = rebuild_started,
    .halt = pj_loop_halt_runner,
    .waits = rebuild_waits,
    .written = rebuild_written,
    .tick = rebuild_tick,
    .finish = rebuild_finish,
    .advance_idle = true,
};

/* ----------------------------------------------------------- starting one */

/* Reset the progress for generation @p g.  Locks: `mu`. */
static void rebuild_begin_locked(pj_runner_t *r, int g, bool resume)
{
    pj_assert_locked(&r->mu);
    memset(&r->rb, 0, sizeof(r->rb));
    r->rb.active = true;
    r->rb.generation = g;
    r->rb.started_ms = es_now_ms();
    r->rb.lag = -1;
    r->rb.eta_s = -1;
    if (resume)
        snprintf(r->rb.last_error, sizeof(r->rb.last_error),
                 "the rebuild of generation %d was interrupted by a restart; resumed from its "
                 "stored offsets",
                 g);
}

/*
 * Start the rebuild loop filling generation @p g: from offset 0, or, when
 * @p resume, from the offsets its store recorded before a restart.
 */
static es_err_t rebuild_start(pj_runner_t *r, int g, bool resume, char *errstr, size_t errstr_size)
{
    char path[PJ_PATH_MAX];
    es_err_t err;
    pj_gen_path(r, g, path, sizeof(path));
    if (!resume)
        es_store_destroy_path(path, errstr, errstr_size); /* a leftover of a crash */
    if ((err = pj_gen_write_rebuild(r->dir, g, errstr, errstr_size)))
        return err;
    es_store_t *st = NULL;
    es_store_opts_t opts = r->store_opts;
    opts.wal_off = true; /* nothing reads the shadow before the swap persists it */
    if ((err = es_store_open_err(path, &opts, &st, errstr, errstr_size))) {
        pj_gen_remove_rebuild(r->dir);
        return err;
    }
    pj_loop_t *l = pj_loop_new(r, &rebuild_ops, st, g);
    pj_mutex_lock(&r->mu);
    rebuild_begin_locked(r, g, resume);
    if (!pj_loop_spawn(l, &r->rb_thread)) {
        r->rb.active = false;
        pj_mutex_unlock(&r->mu);
        pj_loop_free(l);
        es_store_close(st);
        pj_gen_remove_rebuild(r->dir);
        snprintf(errstr, errstr_size, "cannot start the rebuild thread");
        return ES_ERR_STATE;
    }
    r->rb_thread_valid = true;
    pj_mutex_unlock(&r->mu);
    es_gauge_set(r->m_rb_active, 1);
    es_log_info(LOG, "%s: rebuild into generation %d %s", r->def->name, g,
                resume ? "resumed after a restart" : "started");
    return ES_ERR_OK;
}

es_err_t pj_rebuild_start(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    pj_assert_unlocked(&r->mu);
    pj_mutex_lock(&r->mu);
    if (r->rb.active || r->rb_thread_valid) {
        pj_mutex_unlock(&r->mu);
        snprintf(errstr, errstr_size, "a rebuild of %s is already running", r->def->name);
        return ES_ERR_STATE;
    }
    if (r->state == PJ_HALTED) { /* a rebuild may run while the live loop starts or waits */
        pj_mutex_unlock(&r->mu);
        snprintf(errstr, errstr_size, "%s is halted: %s", r->def->name, r->reason);
        return ES_ERR_STATE;
    }
    int g = r->generation + 1;
    /* claimed before the lock is let go: a second request at the same moment
     * is refused 409 here, instead of re-making the same generation's REBUILD
     * marker and store and, refused by the store's lock, deleting the marker
     * of the rebuild that runs */
    r->rb.active = true;
    r->rb.generation = g;
    pj_mutex_unlock(&r->mu);
    es_err_t err = rebuild_start(r, g, false, errstr, errstr_size);
    if (err) {
        pj_mutex_lock(&r->mu);
        r->rb.active = false;
        pj_mutex_unlock(&r->mu);
    }
    return err;
}

es_err_t pj_rebuild_resume(pj_runner_t *r, int g, char *errstr, size_t errstr_size)
{
    pj_assert_unlocked(&r->mu);
    return rebuild_start(r, g, true, errstr, errstr_size);
}
