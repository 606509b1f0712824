/*
 * state.c — a runner's state and reason, its live store pointer, joining
 * its threads; the projector's shared look-up handle.
 *
 * The state is what operators see (GET /admin/projections, /readyz): it
 * changes under the runner's mutex, broadcasts the runner's condition, and
 * is logged only when it or its reason changes, so a loop retrying every
 * second does not fill the log.  Which failure leads to which state is the
 * halting rule written in projector.h; the loops apply it through their
 * mode's hooks (loop.h).
 *
 * A thread handle is taken (and marked invalid) under the mutex and joined
 * outside it, so whoever gets it first joins it, exactly once, and the
 * thread being joined can still take the mutex on its way out.
 */
#include "projector.h"

#include "escqrs/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG "projector"

const char *pj_state_name(pj_state_t state)
{
    switch (state) {
    case PJ_STARTING:
        return "starting";
    case PJ_RUNNING:
        return "running";
    case PJ_WAITING:
        return "waiting";
    default:
        return "halted";
    }
}

void pj_runner_set_state(pj_runner_t *r, pj_state_t state, const char *fmt, ...)
{
    char msg[PJ_REASON_MAX];
    va_list ap;
    pj_assert_unlocked(&r->mu);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pj_mutex_lock(&r->mu);
    bool changed = r->state != state || strcmp(r->reason, msg) != 0;
    r->state = state;
    snprintf(r->reason, sizeof(r->reason), "%s", msg);
    pthread_cond_broadcast(&r->cv);
    pj_mutex_unlock(&r->mu);
    if (!changed)
        return;
    if (state == PJ_HALTED)
        es_log_error(LOG, "%s: halted: %s", r->def->name, msg);
    else if (state == PJ_RUNNING)
        es_log_info(LOG, "%s: running", r->def->name);
    else
        es_log_warn(LOG, "%s: %s: %s", r->def->name, pj_state_name(state), msg);
}

void pj_runner_join(pj_runner_t *r, pthread_t *th, bool *valid)
{
    pj_assert_unlocked(&r->mu);
    pj_mutex_lock(&r->mu);
    bool v = *valid;
    pthread_t t = *th;
    *valid = false;
    pj_mutex_unlock(&r->mu);
    if (v)
        pthread_join(t, NULL);
}

es_store_t *pj_runner_live(pj_runner_t *r)
{
    pj_assert_locked(&r->lock);
    return r->live;
}

/* The shared handle for watermarks, offsets-for-times and group descriptions, made at first use. */
rd_kafka_t *pj_lookup_rk(es_projector_t *pj, char *errstr, size_t errstr_size)
{
    pj_mutex_lock(&pj->lookup_mu);
    if (!pj->lookup)
        pj->lookup = es_consumer_new(pj->conf, NULL, errstr, errstr_size);
    rd_kafka_t *rk = pj->lookup ? es_consumer_rk(pj->lookup) : NULL;
    pj_mutex_unlock(&pj->lookup_mu);
    return rk;
}
