/*
 * runner.c — a projector and its runners: what they are made of, how they
 * start and how they stop.
 *
 * pj_new() builds everything that needs neither the broker nor the disk
 * (configuration, the registry client, the DLQ producer, the broker watch,
 * metrics, one runner per projection), so a bad configuration stops the
 * program at once (exit 2) and nothing else does.  pj_start() gives each
 * runner its live loop, which connects the runner by itself (live.c).
 *
 * Stopping: `stop` makes every loop end at its next batch boundary (the
 * store holds whole batches only: kill -9 is as safe as a clean stop), and
 * pj_destroy() joins them.  A rebuild hands its thread over as the live
 * thread when it swaps, possibly while pj_destroy() is joining, so the
 * thread handles are re-read under the runner's mutex until none is left and
 * no thread is joined twice.  A running rebuild keeps its shadow and REBUILD
 * (the next start resumes it); a frozen build is dropped (start it again).
 */
#include "projector.h"

#include "escqrs/modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REGISTRY_RETRIES 3 /* the registry client's own retries per request */
#define MAX_JOINED       4 /* threads a runner can have had: live, rebuild, their hand-over */

pj_runner_t *pj_runner_find(es_projector_t *pj, const char *name)
{
    for (size_t i = 0; i < pj->nrunners; i++) {
        if (strcmp(pj->runners[i].def->name, name) == 0)
            return &pj->runners[i];
    }
    return NULL;
}

static void runner_metrics(es_projector_t *pj, pj_runner_t *r)
{
    char labels[PJ_LABELS_MAX];
    snprintf(labels, sizeof(labels), "projection=\"%s\"", r->def->name);
    r->m_applied = es_metrics_counter(pj->metrics, "escqrs_projector_events_applied_total",
                                      "Events applied to the live view", labels);
    r->m_dlq = es_metrics_counter(pj->metrics, "escqrs_projector_dlq_total",
                                  "Poison events sent to the dead-letter topic", labels);
    r->m_batch = es_metrics_histogram(pj->metrics, "escqrs_projector_batch_apply_seconds",
                                      "Time to fold and write one consumed batch", labels,
                                      es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    r->m_rb_active = es_metrics_gauge(pj->metrics, "escqrs_projector_rebuild_running",
                                      "1 while a rebuild runs", labels);
    r->m_rb_rate = es_metrics_gauge(pj->metrics, "escqrs_projector_rebuild_events_per_second",
                                    "Rebuild speed", labels);
    r->m_rb_lag = es_metrics_gauge(pj->metrics, "escqrs_projector_rebuild_lag",
                                   "Events the rebuild still has to apply", labels);
    r->m_rb_eta = es_metrics_gauge(pj->metrics, "escqrs_projector_rebuild_eta_seconds",
                                   "Estimated seconds to the end of the rebuild", labels);
}

/* What a runner is without the broker or the disk: names, metrics, locks. */
static void runner_init(es_projector_t *pj, pj_runner_t *r, const es_proj_def_t *def)
{
    const char *prefix = es_conf_get(pj->conf, "aggregate.prefix");
    const char *root = es_conf_get(pj->conf, "store.path");
    char agg[PJ_TOPIC_MAX];

    r->pj = pj;
    r->def = def;
    r->ntopics = def->naggregates;
    r->state = PJ_STARTING;
    snprintf(r->reason, sizeof(r->reason), "starting");
    pj_rwlock_init(&r->lock);
    pj_mutex_init(&r->mu);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_init(&r->owners_mu, NULL);
    snprintf(r->dir, sizeof(r->dir), "%s/%s", root, def->name);
    r->store_opts = pj->store_opts;
    r->store_opts.write_once = pj_builtin_kind(def) != PJ_BUILTIN_NONE; /* keys never rewritten */
    r->store_opts.scans_only = pj_builtin_kind(def) == PJ_BUILTIN_HISTORY; /* pages, as_of: scans */
    /* a history's fold never reads its store: its rebuild's shadow (wal_off) is written blind */
    r->store_opts.blind_writes = pj_builtin_kind(def) == PJ_BUILTIN_HISTORY;
    runner_metrics(pj, r);
    /* the audit reads the outcomes; every other projection the events */
    es_topic_kind_t kind =
        pj_builtin_kind(def) == PJ_BUILTIN_AUDIT ? ES_TOPIC_RESULTS : ES_TOPIC_EVENTS;
    for (size_t t = 0; t < r->ntopics; t++) {
        snprintf(agg, sizeof(agg), "%s%s", prefix ? prefix : "", def->aggregates[t]);
        es_topic_name(agg, kind, NULL, r->topic[t], sizeof(r->topic[t]));
        es_topic_name(agg, ES_TOPIC_DLQ, pj->name, r->dlq[t], sizeof(r->dlq[t]));
    }
}

/*
 * One runner per name in `projections` (repeats ignored); empty: every
 * loaded projection, then every aggregate's history and command audit.
 */
static es_err_t add_runners(es_projector_t *pj, char *errstr, size_t errstr_size)
{
    char *names = es_strdup(es_conf_get(pj->conf, "projections"));
    es_err_t err = ES_ERR_OK;
    pj_builtins_define();
    size_t cap = 1 + es_modules_projection_count() + pj_builtin_count();
    for (char *c = names; *c; c++)
        cap += *c == ',';
    pj->runners = es_calloc(cap, sizeof(*pj->runners));
    if (!*names) {
        for (size_t i = 0; i < es_modules_projection_count(); i++)
            runner_init(pj, &pj->runners[pj->nrunners++], es_modules_projection_at(i));
        for (size_t i = 0; i < pj_builtin_count(); i++)
            runner_init(pj, &pj->runners[pj->nrunners++], pj_builtin_at(i));
    }
    char *save = NULL;
    for (char *tok = strtok_r(names, ", ", &save); tok && !err; tok = strtok_r(NULL, ", ", &save)) {
        const es_proj_def_t *def = es_modules_projection(tok);
        if (!def)
            def = pj_builtin_find(tok);
        if (!def) {
            snprintf(errstr, errstr_size,
                     "projections: no projection named \"%s\" in the loaded modules, and no "
                     "<aggregate>_history or <aggregate>_commands of a loaded aggregate",
                     tok);
            err = ES_ERR_CONF;
        } else if (!pj_runner_find(pj, tok)) {
            runner_init(pj, &pj->runners[pj->nrunners++], def);
        }
    }
    if (!err && !pj->nrunners) {
        snprintf(errstr, errstr_size, "projections: none given, and no loaded module has one");
        err = ES_ERR_CONF;
    }
    free(names);
    return err;
}

es_projector_t *pj_new(es_conf_t *conf, char *errstr, size_t errstr_size)
{
    es_projector_t *pj = es_calloc(1, sizeof(*pj));

    pj->conf = conf;
    pj_mutex_init(&pj->lookup_mu);
    snprintf(pj->name, sizeof(pj->name), "%s", es_conf_get(conf, "projector.name"));
    pj->halt_on_error = strcmp(es_conf_get(conf, "on_error"), "halt") == 0;
    pj->ready_max_lag = es_conf_get_int(conf, "ready.max.lag");
    pj->batch_max = (int)es_conf_get_int(conf, "batch.max.events");
    pj->wait_max_ms = (int)es_conf_get_int(conf, "query.wait.max.ms");
    es_store_opts_from_conf(conf, &pj->store_opts);
    pj->partitioned = strcmp(es_conf_get(conf, "projector.mode"), "partitioned") == 0;
    snprintf(pj->advertise_url, sizeof(pj->advertise_url), "%s",
             es_conf_get(conf, "projector.advertise.url"));
    snprintf(pj->advertise_admin, sizeof(pj->advertise_admin), "%s",
             es_conf_get(conf, "projector.advertise.admin_url"));
    pj->peer_token = es_conf_get(conf, "projector.peer.token");
    /* every generation, rebuild and frozen view; a partitioned store keeps slices */
    pj->store_opts.format = pj->partitioned ? PJ_STORE_FORMAT_PARTITIONED : PJ_STORE_FORMAT;
    pj->store_opts.format_remedy =
        "rebuild it from the log (move the projection's directory away first)";
    pj->metrics = es_metrics_new();
    pj->m_asof_index = es_metrics_counter(pj->metrics, "escqrs_projector_as_of_total",
                                          "as_of queries answered, by where the events came from",
                                          "path=\"index\"");
    pj->m_asof_log =
        es_metrics_counter(pj->metrics, "escqrs_projector_as_of_total",
                           "as_of queries answered, by where the events came from", "path=\"log\"");
    pj->m_forwarded = es_metrics_counter(pj->metrics, "escqrs_projector_forwarded_total",
                                         "Queries forwarded to the instance owning the partition "
                                         "(partitioned mode)",
                                         NULL);
    if (pj->partitioned && (!*pj->advertise_url || !*pj->advertise_admin)) {
        snprintf(errstr, errstr_size,
                 "%s: projector.mode=partitioned needs the URLs peers reach "
                 "this instance at",
                 !*pj->advertise_url ? "projector.advertise.url" : "projector.advertise.admin_url");
        pj_destroy(pj);
        return NULL;
    }
    if (pj->partitioned && *es_conf_get(conf, "bootstrap.from")) {
        snprintf(errstr, errstr_size,
                 "bootstrap.from: a checkpoint holds every partition; "
                 "projector.mode=partitioned replays the partitions it is given instead");
        pj_destroy(pj);
        return NULL;
    }
    if (!(pj->reg = es_registry_from_conf(conf, REGISTRY_RETRIES, errstr, errstr_size)) ||
        !(pj->watch = es_kafka_watch_start(conf, NULL, 0, errstr, errstr_size)) ||
        !(pj->auth = es_auth_new(conf, errstr, errstr_size)) ||
        pj_builtins_open(pj->reg, errstr, errstr_size) || add_runners(pj, errstr, errstr_size)) {
        pj_destroy(pj);
        return NULL;
    }
    return pj;
}

es_err_t pj_start(es_projector_t *pj, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < pj->nrunners; i++) {
        es_err_t err = pj_live_start(&pj->runners[i], errstr, errstr_size);
        if (err)
            return err;
    }
    return ES_ERR_OK;
}

/* Join the runner's live and rebuild threads, each once, whatever hands over to what. */
static void join_loops(pj_runner_t *r)
{
    pthread_t joined[MAX_JOINED];
    size_t njoined = 0;
    for (;;) {
        pj_mutex_lock(&r->mu);
        bool rv = r->rb_thread_valid, lv = r->live_thread_valid;
        pthread_t rt = r->rb_thread, lt = r->live_thread;
        r->rb_thread_valid = false;
        r->live_thread_valid = false;
        pj_mutex_unlock(&r->mu);
        if (!rv && !lv)
            break;
        for (size_t k = 0; k < njoined; k++) {
            rv = rv && !pthread_equal(rt, joined[k]);
            lv = lv && !pthread_equal(lt, joined[k]);
        }
        if (rv && njoined < MAX_JOINED) {
            pthread_join(rt, NULL);
            joined[njoined++] = rt;
        }
        if (lv && !(rv && pthread_equal(lt, rt)) && njoined < MAX_JOINED) {
            pthread_join(lt, NULL);
            joined[njoined++] = lt;
        }
    }
}

static void runner_destroy(pj_runner_t *r)
{
    join_loops(r);
    pj_frozen_close_all(r);
    es_store_close(r->live);
    for (size_t t = 0; t < r->ntopics; t++) {
        free(r->applied[t]);
        free(r->high[t]);
        free(r->m_lag[t]);
        free(r->owned[t]);
        free(r->owned_from[t]);
    }
    pj_owners_destroy(r);
    pj_rwlock_destroy(&r->lock);
    pj_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

void pj_destroy(es_projector_t *pj)
{
    if (!pj)
        return;
    atomic_store(&pj->stop, true);
    for (size_t i = 0; i < pj->nrunners; i++)
        runner_destroy(&pj->runners[i]);
    free(pj->runners);
    es_kafka_watch_stop(pj->watch);
    es_auth_destroy(pj->auth);
    es_consumer_destroy(pj->lookup);
    pj_builtins_close();
    es_registry_destroy(pj->reg);
    es_metrics_destroy(pj->metrics);
    pj_mutex_destroy(&pj->lookup_mu);
    free(pj);
}
