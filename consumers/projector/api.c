/*
 * api.c — the projector's HTTP API: the hosted projections' queries with
 * `min_position=` (read-your-writes), `as_of=` (point in time) and `view=`
 * (a frozen view), and the admin endpoints (list, rebuild, digest, freeze,
 * delete a frozen view, checkpoint).
 *
 * A query holds its runner's read lock only while rendering, so a rebuild's
 * swap waits for answers in flight and no answer ever sees a closed store.
 */
#include "projector.h"

#include "escqrs/log.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ROUTES    32   /* query routes */
#define HTTP_MAX_BODY 4096 /* neither listener takes a request body beyond this */

static es_http_route_t routes[MAX_ROUTES];

static const char *req_query(void *opaque, const char *name)
{
    return es_http_req_query(opaque, name);
}

/* "<partition>:<offset>" */
static bool parse_position(const char *s, int32_t *part, int64_t *off)
{
    const char *end;
    int64_t p;
    if (!es_parse_i64_prefix(s, &end, 0, PJ_MAX_PARTITIONS - 1, &p) || *end != ':' ||
        !es_parse_i64(end + 1, 0, INT64_MAX, off))
        return false;
    *part = (int32_t)p;
    return true;
}

static void answer(es_http_resp_t *resp, int st, json_t *body, const char *errstr)
{
    if (st == 404 && !body)
        es_http_resp_error(resp, 404, "not_found", "no such resource");
    else if (st >= 500 && !body)
        es_http_resp_error(resp, st, "internal", "%s", errstr);
    else
        es_http_resp_json(resp, st, body);
}

/* A runner not connected yet (no partitions known, no store open) answers 503. */
static bool runner_up(pj_runner_t *r, es_http_resp_t *resp)
{
    char why[PJ_REASON_MAX];
    if (atomic_load(&r->started))
        return true;
    pj_mutex_lock(&r->mu);
    snprintf(why, sizeof(why), "%s", r->reason);
    pj_mutex_unlock(&r->mu);
    es_http_resp_error(resp, 503, "unavailable", "%s is starting: %s", r->def->name, why);
    return false;
}

/* The runner named by the route's first parameter, started; else answered 404 or 503. */
static pj_runner_t *admin_runner(es_projector_t *pj, es_http_req_t *req, es_http_resp_t *resp)
{
    const char *name = es_http_req_param(req, 0);
    pj_runner_t *r = pj_runner_find(pj, name);
    if (!r) {
        es_http_resp_error(resp, 404, "not_found", "no projection named %s here", name);
        return NULL;
    }
    return runner_up(r, resp) ? r : NULL;
}

/* A query: the route that matched, its runner, its parameters. */
typedef struct query_s {
    pj_runner_t *r;
    const es_proj_query_t *qd;
    size_t t; /* the aggregate topic it reads */
    char params[ES_HTTP_MAX_PARAMS][ES_HTTP_PARAM_MAX];
    const char *pv[ES_HTTP_MAX_PARAMS];
    size_t np;
    es_proj_query_req_t qr; /* points into this struct: never copied */
} query_t;

/* The query route of some runner matching @p path; false when none does. */
static bool match_query(es_projector_t *pj, const char *path, es_http_req_t *req, query_t *q)
{
    q->qd = NULL;
    for (size_t i = 0; i < pj->nrunners && !q->qd; i++) {
        for (size_t k = 0; k < pj->runners[i].def->nqueries && !q->qd; k++) {
            if (es_http_route_match(pj->runners[i].def->queries[k].pattern, path, q->params,
                                    &q->np)) {
                q->r = &pj->runners[i];
                q->qd = &q->r->def->queries[k];
            }
        }
    }
    if (!q->qd)
        return false;
    for (size_t i = 0; i < q->np; i++)
        q->pv[i] = q->params[i];
    q->qr = (es_proj_query_req_t){
        .params = q->pv, .nparams = q->np, .query = req_query, .query_opaque = req};
    q->t = (size_t)q->qd->aggregate_index;
    return true;
}

/* The projection's own handler over @p be: an HTTP status, *@p body or @p errstr. */
static int render(const void *query, es_proj_backend_t be, json_t **body, char *errstr,
                  size_t errstr_size)
{
    const query_t *q = query;
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    int st = q->qd->handle(rd, &q->qr, body, errstr, errstr_size);
    es_proj_reader_destroy(rd);
    return st;
}

/* view=<label>: answer from a frozen view, under the read lock. */
static void answer_frozen(const query_t *q, const char *view, es_http_resp_t *resp)
{
    pj_runner_t *r = q->r;
    json_t *body = NULL;
    char errstr[PJ_ERRSTR_MAX] = "";
    pj_rwlock_rdlock(&r->lock);
    pj_frozen_t *fz = pj_frozen_find(r, view);
    pj_mutex_lock(&r->mu);
    pj_fz_state_t state = fz ? fz->state : PJ_FZ_FAILED;
    if (fz)
        snprintf(errstr, sizeof(errstr), "%s", fz->error);
    pj_mutex_unlock(&r->mu);
    if (!fz || state != PJ_FZ_READY) {
        pj_rwlock_unlock(&r->lock);
        if (!fz)
            es_http_resp_error(resp, 404, "not_found", "%s has no frozen view %s", r->def->name,
                               view);
        else if (state == PJ_FZ_BUILDING)
            es_http_resp_error(resp, 409, "conflict", "frozen view %s is still building", view);
        else
            es_http_resp_error(resp, 409, "conflict", "frozen view %s failed: %s", view, errstr);
        return;
    }
    int st = render(q, pj_store_backend(fz->st), &body, errstr, sizeof(errstr));
    pj_rwlock_unlock(&r->lock);
    answer(resp, st, body, errstr);
}

/* min_position=<partition>:<offset>: wait until applied; false when answered (400, 504). */
static bool wait_min_position(const query_t *q, const char *minpos, es_http_resp_t *resp)
{
    pj_runner_t *r = q->r;
    int wait_ms = r->pj->wait_max_ms;
    int32_t part;
    int64_t off;
    if (!parse_position(minpos, &part, &off) || part >= r->nparts[q->t]) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "min_position must be <partition>:<offset> with partition < %d",
                           r->nparts[q->t]);
        return false;
    }
    if (pj_wait_applied(r, q->t, part, off, wait_ms) == ES_ERR_TIMED_OUT) {
        es_http_resp_error(resp, 504, "timeout", "position %s not applied by %s within %d ms",
                           minpos, r->def->name, wait_ms);
        return false;
    }
    return true;
}

/* as_of=<time>: fold the aggregate's events up to then into memory and answer from it. */
static void answer_as_of(const query_t *q, const char *asof, const char *path, es_http_resp_t *resp)
{
    json_t *body = NULL;
    char errstr[PJ_ERRSTR_MAX] = "";
    int64_t ts;
    if (!es_parse_time_ms(asof, &ts)) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "as_of must be milliseconds since the epoch or RFC 3339");
        return;
    }
    if (q->qd->aggregate_param < 0 || (size_t)q->qd->aggregate_param >= q->np) {
        es_http_resp_error(resp, 400, "invalid_query", "as_of applies to one aggregate, not to %s",
                           path);
        return;
    }
    if (pj_builtin_kind(q->r->def) != PJ_BUILTIN_NONE) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "as_of does not apply to %s: a history is a record over time already "
                           "(each entry has its timestamp; page it with from_version or from_seq)",
                           path);
        return;
    }
    es_proj_memmap_t *map = es_proj_memmap_new();
    if (pj_fold_as_of(q->r, q->t, q->pv[q->qd->aggregate_param], ts, map, errstr, sizeof(errstr))) {
        es_proj_memmap_destroy(map);
        es_http_resp_error(resp, 503, "unavailable", "as_of: %s", errstr);
        return;
    }
    int st = render(q, es_proj_memmap_backend(map), &body, errstr, sizeof(errstr));
    es_proj_memmap_destroy(map);
    answer(resp, st, body, errstr);
}

/*
 * The live view, under the read lock (a swap waits for the answer).
 * Partitioned mode: one aggregate's query reads the slice of its partition
 * (@p part, owned and current here); a query spanning aggregates reads
 * every partition's slice, merged (pj_merged_answer() read-locks each local
 * slice only, never across a peer's request).
 */
static void answer_live(const query_t *q, int32_t part, es_http_resp_t *resp)
{
    json_t *body = NULL;
    char errstr[PJ_ERRSTR_MAX] = "";
    pj_slice_t slice;
    if (q->r->pj->partitioned && q->qd->aggregate_param < 0) {
        pj_merged_answer(q->r, q->t, render, q, resp);
        return;
    }
    pj_rwlock_rdlock(&q->r->lock);
    es_proj_backend_t be = q->r->pj->partitioned
                               ? pj_slice_backend(&slice, pj_runner_live(q->r), q->t, part)
                               : pj_store_backend(pj_runner_live(q->r));
    int st = render(q, be, &body, errstr, sizeof(errstr));
    pj_rwlock_unlock(&q->r->lock);
    if (q->r->pj->partitioned)
        pj_slice_done(&slice);
    answer(resp, st, body, errstr);
}

/*
 * Partitioned mode: the partition a query is about (its aggregate's, else
 * the one min_position names), or -1 for a query spanning aggregates.
 */
static int32_t query_partition(const query_t *q, const char *minpos)
{
    int ap = q->qd->aggregate_param;
    int32_t part;
    int64_t off;
    if (ap >= 0 && (size_t)ap < q->np)
        return pj_partition_of(q->pv[ap], strlen(q->pv[ap]), q->r->nparts[q->t]);
    if (minpos && parse_position(minpos, &part, &off) && part < q->r->nparts[q->t])
        return part;
    return -1;
}

static void query_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    const char *path = es_http_req_path(req);
    query_t q;
    if (!match_query(opaque, path, req, &q)) {
        es_http_resp_error(resp, 404, "not_found", "no such resource: %s", path);
        return;
    }
    if (!runner_up(q.r, resp))
        return;
    const char *minpos = es_http_req_query(req, "min_position");
    const char *asof = es_http_req_query(req, "as_of");
    const char *view = es_http_req_query(req, "view");
    if (view && (minpos || asof)) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "view= is frozen: min_position and as_of do not apply");
        return;
    }
    if (view) {
        answer_frozen(&q, view, resp);
        return;
    }
    int32_t part = q.r->pj->partitioned ? query_partition(&q, minpos) : -1;
    if (q.r->pj->partitioned && !pj_route_here(q.r, q.t, part, req, resp))
        return;
    if (minpos && !wait_min_position(&q, minpos, resp))
        return;
    if (asof)
        answer_as_of(&q, asof, path, resp);
    else
        answer_live(&q, part, resp);
}

static json_t *runner_json(pj_runner_t *r)
{
    json_t *parts = json_array();
    json_t *frozen = pj_frozen_json(r); /* takes the locks itself */
    int64_t lag = pj_runner_lag(r);
    pj_rwlock_rdlock(&r->lock); /* generation and live_read_only live under `lock` */
    int generation = r->generation;
    bool read_only = r->live_read_only;
    pj_rwlock_unlock(&r->lock);
    pj_mutex_lock(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++)
            json_array_append_new(parts,
                                  json_pack("{s:s, s:i, s:I, s:I}", "topic", r->topic[t],
                                            "partition", p, "applied", (json_int_t)r->applied[t][p],
                                            "high", (json_int_t)r->high[t][p]));
    }
    json_t *rb =
        json_pack("{s:b, s:i, s:I, s:f, s:I, s:f, s:s, s:I, s:I}", "running", r->rb.active,
                  "generation", r->rb.generation, "events", (json_int_t)r->rb.events,
                  "events_per_second", r->rb.rate, "lag", (json_int_t)r->rb.lag, "eta_seconds",
                  r->rb.eta_s, "last_error", r->rb.last_error, "last_duration_ms",
                  (json_int_t)r->rb.last_duration_ms, "last_events", (json_int_t)r->rb.last_events);
    /* "halt_reason" is the reason of every state but running (kept under its old name) */
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:I, s:o, s:o, s:o}", "name", r->def->name,
                          "state", pj_state_name(r->state), "halt_reason", r->reason, "read_only",
                          read_only, "generation", generation, "lag", (json_int_t)lag, "partitions",
                          parts, "rebuild", rb, "frozen", frozen);
    pj_mutex_unlock(&r->mu);
    json_object_set_new(o, "mode", json_string(r->pj->partitioned ? "partitioned" : "replica"));
    if (r->pj->partitioned)
        json_object_set_new(o, "owned", pj_owned_json(r)); /* takes `mu` itself */
    return o;
}

static void admin_list(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    es_projector_t *pj = opaque;
    json_t *arr = json_array();
    for (size_t i = 0; i < pj->nrunners; i++)
        json_array_append_new(arr, runner_json(&pj->runners[i]));
    es_http_resp_json(resp, 200, json_pack("{s:o}", "projections", arr));
}

/* Answers a rebuild or freeze that could not start: 409 while one runs, else 500. */
static bool start_refused(es_http_resp_t *resp, es_err_t err, const char *errstr)
{
    if (err == ES_ERR_STATE)
        es_http_resp_error(resp, 409, "conflict", "%s", errstr);
    else if (err == ES_ERR_NO_SPACE)
        es_http_resp_error(resp, 503, "unavailable", "%s", errstr);
    else if (err)
        es_http_resp_error(resp, 500, "internal", "%s", errstr);
    return err != ES_ERR_OK;
}

static void admin_rebuild(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    char errstr[PJ_ERRSTR_MAX];
    pj_runner_t *r = admin_runner(opaque, req, resp);
    if (!r || pj_partitioned_refused(r, "a rebuild", resp))
        return;
    if (start_refused(resp, pj_rebuild_start(r, errstr, sizeof(errstr)), errstr))
        return;
    es_http_resp_json(resp, 202, runner_json(r));
}

/*
 * POST /admin/projections/{name}/freeze?until=<ms | RFC 3339>[&label=L]:
 * start building a frozen view (202 with its label; 409 if the label exists).
 */
static void admin_freeze(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    es_projector_t *pj = opaque;
    const char *name = es_http_req_param(req, 0);
    const char *until = es_http_req_query(req, "until");
    const char *label = es_http_req_query(req, "label");
    char errstr[PJ_ERRSTR_MAX], deflabel[PJ_LABEL_MAX], when[PJ_TIME_MAX];
    int64_t until_ms;
    pj_runner_t *r = admin_runner(pj, req, resp);
    if (!r || pj_partitioned_refused(r, "a frozen view", resp))
        return;
    if (!until || !es_parse_time_ms(until, &until_ms)) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "until= is required: milliseconds since the epoch or RFC 3339");
        return;
    }
    if (!label) {
        pj_frozen_default_label(until_ms, deflabel, sizeof(deflabel));
        label = deflabel;
    }
    if (!pj_frozen_label_ok(label)) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "label must be 1 to 63 of A-Z a-z 0-9 . _ - (not starting with .)");
        return;
    }
    if (start_refused(resp, pj_freeze_start(r, label, until_ms, errstr, sizeof(errstr)), errstr))
        return;
    pj_format_time(until_ms, when, sizeof(when));
    es_http_resp_json(resp, 202,
                      json_pack("{s:s, s:s, s:I, s:s, s:s}", "name", name, "label", label,
                                "until_ms", (json_int_t)until_ms, "until", when, "state",
                                "building"));
}

/* DELETE /admin/projections/{name}/frozen/{label}: stop its build, drop its store. */
static void admin_frozen_delete(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    es_projector_t *pj = opaque;
    const char *name = es_http_req_param(req, 0);
    const char *label = es_http_req_param(req, 1);
    char errstr[PJ_ERRSTR_MAX];
    pj_runner_t *r = pj_runner_find(pj, name);
    if (r && !runner_up(r, resp))
        return;
    if (!r || pj_frozen_delete(r, label, errstr, sizeof(errstr))) {
        es_http_resp_error(resp, 404, "not_found", "no frozen view %s of %s here", label, name);
        return;
    }
    es_http_resp_json(resp, 200, json_pack("{s:s, s:s}", "name", name, "deleted", label));
}

/*
 * GET /admin/projections/{name}/digest: a fingerprint of the live store, so an
 * operator (and the demo) can check that a rebuild produced the same views.
 * Views and applied offsets are hashed separately (FNV-1a 64 over each key and
 * value with their lengths, in key order): equal views at equal offsets mean
 * byte-identical stores.  Holds the read lock for the scan, like a query.
 */
static void admin_digest(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    const char *name = es_http_req_param(req, 0);
    pj_runner_t *r = admin_runner(opaque, req, resp);
    if (!r)
        return;
    es_store_digest_t d;
    char errstr[PJ_ERRSTR_MAX];
    pj_rwlock_rdlock(&r->lock);
    int generation = r->generation;
    es_err_t err = es_store_digest(pj_runner_live(r), &d, errstr, sizeof(errstr));
    pj_rwlock_unlock(&r->lock);
    if (err) {
        es_http_resp_error(resp, 500, "internal", "%s", errstr);
        return;
    }
    es_http_resp_json(resp, 200, pj_digest_json(name, generation, &d));
}

/*
 * GET /admin/projections/{name}/checkpoint: a consistent copy of the live
 * store for a new replica (checkpoint.c), streamed as a tar with its manifest.
 */
static void admin_checkpoint(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    pj_runner_t *r = admin_runner(opaque, req, resp);
    if (r && !pj_partitioned_refused(r, "a checkpoint", resp))
        pj_checkpoint_serve(r, resp);
}

/* GET /admin/projections/{name}/slice: this instance's slices for a peer's merge (partitions.c). */
static void admin_slice(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    pj_runner_t *r = admin_runner(opaque, req, resp);
    if (r)
        pj_slice_serve(r, req, resp);
}

/*
 * Ready while a broker answers, the events topics have the partitions the
 * projections were sized for, and every projection runs with a lag within
 * ready.max.lag.  A projector that cannot reach the broker cannot know its
 * lag, so it says not ready (its reads still answer, from what it applied);
 * one whose topics got partitions added folds none of the new ones until it
 * starts again, so it says that.
 */
static bool ready(void *opaque, char *why, size_t whysz)
{
    es_projector_t *pj = opaque;
    if (!es_kafka_watch_broker_ok(pj->watch, why, whysz))
        return false;
    if (!es_kafka_watch_topics_ok(pj->watch, why, whysz)) {
        size_t n = strlen(why);
        snprintf(why + n, whysz - n,
                 "; the new partitions are folded after a restart, with the projection's DLQ "
                 "topics raised to the same count");
        return false;
    }
    for (size_t i = 0; i < pj->nrunners; i++) {
        pj_runner_t *r = &pj->runners[i];
        pj_mutex_lock(&r->mu);
        pj_state_t state = r->state;
        if (state != PJ_RUNNING)
            snprintf(why, whysz, "%s is %s: %s", r->def->name, pj_state_name(state), r->reason);
        pj_mutex_unlock(&r->mu);
        if (state != PJ_RUNNING)
            return false;
        int64_t lag = pj_runner_lag(r);
        if (lag < 0) {
            snprintf(why, whysz, "%s: high watermarks not known yet", r->def->name);
            return false;
        }
        if (lag > pj->ready_max_lag) {
            snprintf(why, whysz, "%s: lag %lld > ready.max.lag %lld", r->def->name, (long long)lag,
                     (long long)pj->ready_max_lag);
            return false;
        }
    }
    return true;
}

/*
 * "query:carts" for "/v1/carts/{id}": the collection is the segment after
 * /v1/.  The command audit says who did what: "audit:carts".
 */
static const char *query_action(const es_proj_def_t *def, const char *pattern, char *out,
                                size_t outsz)
{
    const char *c = !strncmp(pattern, "/v1/", 4) ? pattern + 4 : pattern + 1;
    size_t n = strcspn(c, "/");
    snprintf(out, outsz, "%s:%.*s", pj_builtin_kind(def) == PJ_BUILTIN_AUDIT ? "audit" : "query",
             (int)n, c);
    return out;
}

es_http_server_t *pj_http_start(es_projector_t *pj, char *errstr, size_t errstr_size)
{
    static char actions[MAX_ROUTES][128];
    size_t n = 0;
    for (size_t i = 0; i < pj->nrunners; i++) {
        for (size_t k = 0; k < pj->runners[i].def->nqueries && n < MAX_ROUTES; k++) {
            const char *pat = pj->runners[i].def->queries[k].pattern;
            bool dup = false;
            for (size_t j = 0; j < n; j++)
                dup |= strcmp(routes[j].pattern, pat) == 0;
            if (!dup) {
                routes[n] = (es_http_route_t){
                    "GET", pat, query_handler,
                    query_action(pj->runners[i].def, pat, actions[n], sizeof(actions[n])), false};
                n++;
            }
        }
    }
    es_http_server_conf_t hc = {
        .max_body = HTTP_MAX_BODY,
        .routes = routes,
        .nroutes = n,
        .opaque = pj,
        .metrics = pj->metrics,
        .ready = ready,
        .auth = pj->auth,
    };
    es_http_server_conf_from(pj->conf, &hc);
    return es_http_server_start(&hc, errstr, errstr_size);
}

/*
 * The admin listener (admin.listen, loopback by default): the admin routes,
 * each behind its own admin:<operation> action, and health and metrics
 * (open: the network, not a token, protects this port).  The query
 * listener never serves /admin.
 */
es_http_server_t *pj_admin_start(es_projector_t *pj, char *errstr, size_t errstr_size)
{
    static const es_http_route_t admin_routes[] = {
        {"GET", "/admin/projections", admin_list, "admin:list", false},
        {"POST", "/admin/projections/{name}/rebuild", admin_rebuild, "admin:rebuild", false},
        {"GET", "/admin/projections/{name}/digest", admin_digest, "admin:digest", false},
        {"GET", "/admin/projections/{name}/checkpoint", admin_checkpoint, "admin:checkpoint",
         false},
        {"GET", "/admin/projections/{name}/slice", admin_slice, "admin:slice", false},
        {"POST", "/admin/projections/{name}/freeze", admin_freeze, "admin:freeze", false},
        {"DELETE", "/admin/projections/{name}/frozen/{label}", admin_frozen_delete,
         "admin:frozen-delete", false},
    };
    es_http_server_conf_t hc = {
        .max_body = HTTP_MAX_BODY,
        .routes = admin_routes,
        .nroutes = sizeof(admin_routes) / sizeof(admin_routes[0]),
        .opaque = pj,
        .metrics = pj->metrics,
        .ready = ready,
        .auth = pj->auth,
        .metrics_open = true,
    };
    es_http_server_conf_from(pj->conf, &hc);
    hc.listen = es_conf_get(pj->conf, "admin.listen");
    return es_http_server_start(&hc, errstr, errstr_size);
}
