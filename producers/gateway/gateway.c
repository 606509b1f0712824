/*
 * gateway.c — the HTTP command API: validate, produce, wait for the outcome.
 *
 * A request becomes a command record on <agg>.commands (idempotent producer,
 * acks=all, keyed by the aggregate id); the answer is the command's outcome
 * read from <agg>.command-results.  Each gateway reads every partition of the
 * results topics itself (manual assignment from the high watermark at start,
 * read_committed so an aborted transaction's outcome is never seen), and
 * hands each outcome to the requests waiting for its command id in a table
 * of waiters.  Nothing is stored, so replicas scale freely and a restart
 * loses only the answers in flight (clients retry with the same
 * Idempotency-Key and get the first outcome).
 *
 * The waiter is registered before the command is produced, so an outcome
 * can never arrive unseen; the `command-id` header on results lets the
 * reader skip, without decoding, outcomes no request here waits for.
 * A waiting request holds no thread: its answer is deferred (es_http_defer)
 * and given by whoever ends the wait — the results thread (the outcome, or
 * 504 once the deadline passed: waiters are kept in deadline order, as every
 * one has the same timeout) or the delivery report (503 when the command
 * could not be written).
 *
 * Start-up never fails on an absent registry or broker: the schemas, the
 * topics and the results assignment are retried by the results thread
 * (with a back-off) while /readyz says what is missing.  A command for an
 * aggregate whose command-service group has no member is answered 503 at
 * once, without writing it (the cluster watch asks every few seconds).
 */
#include "gateway.h"

#include "domains.h"
#include "escqrs/command.h"
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/log.h"
#include "escqrs/record.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GW_MAX_AGGS 8
#define NBUCKETS    4096

typedef struct waiter_s {
    struct waiter_s *next;          /* bucket chain */
    struct waiter_s *older, *newer; /* deadline order */
    char id[ES_ID_MAX + 1];
    char agg_id[ES_ID_MAX + 1];
    int refs;         /* the table, and the delivery report until it comes (gw->mu) */
    bool done;        /* answered: off the table */
    int64_t deadline; /* monotonic ms */
    int64_t t0;
    es_http_deferred_t *answer;
} waiter_t;

typedef struct gw_agg_s {
    const es_aggregate_def_t *def;
    char name[256], t_cmd[256], t_res[256];
    es_serde_t *cmd_serde;
    avro_value_t value;
    bool have_value;
    pthread_mutex_t mu; /* serde and value */
} gw_agg_t;

struct gw_s {
    const es_conf_t *conf;
    es_metrics_t *metrics;
    gw_agg_t aggs[GW_MAX_AGGS];
    size_t naggs;
    int timeout_ms;
    es_registry_t *reg;
    es_serde_t *res_serde; /* results thread only */
    rd_kafka_t *prod, *results;
    es_kafka_watch_t *watch; /* broker reachable? command services there? */
    es_auth_t *auth;         /* who may send which command */
    pthread_t poll_thr, res_thr;
    bool threads;
    atomic_bool stop, ready;
    pthread_mutex_t why_mu;
    char not_ready[1024];

    pthread_mutex_t mu; /* the waiter table and list */
    waiter_t *waiters[NBUCKETS];
    waiter_t *oldest, *newest;

    es_histogram_t *h_latency;
};

static uint32_t bucket_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++) {
        h ^= (unsigned char)*id;
        h *= 16777619u;
    }
    return h % NBUCKETS;
}

static void set_not_ready(gw_t *gw, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_not_ready(gw_t *gw, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&gw->why_mu);
    va_start(ap, fmt);
    vsnprintf(gw->not_ready, sizeof(gw->not_ready), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&gw->why_mu);
}

static void count_status(gw_t *gw, int status)
{
    char labels[32];
    snprintf(labels, sizeof(labels), "status=\"%d\"", status);
    es_counter_add(es_metrics_counter(gw->metrics, "escqrs_gateway_requests_total",
                                      "Command requests answered, by HTTP status", labels),
                   1);
}

/* Drop one reference (gw->mu held); the last one frees. */
static void waiter_unref(waiter_t *w)
{
    if (--w->refs > 0)
        return;
    free(w);
}

/* Take @p w off the table and the deadline list (gw->mu held). */
static void waiter_unlink(gw_t *gw, waiter_t *w)
{
    waiter_t **pp = &gw->waiters[bucket_of(w->id)];
    for (; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    if (w->older)
        w->older->newer = w->newer;
    else
        gw->oldest = w->newer;
    if (w->newer)
        w->newer->older = w->older;
    else
        gw->newest = w->older;
    w->older = w->newer = NULL;
}

/* A finished wait, answered after gw->mu is released (answering takes locks of its own). */
typedef struct {
    es_http_deferred_t *answer;
    int status;
    json_t *body;
    int64_t t0;
} reply_t;

/* End the wait of @p w (gw->mu held) with @p status and @p body (taken). */
static bool waiter_finish(gw_t *gw, waiter_t *w, int status, json_t *body, reply_t *out)
{
    if (w->done) {
        json_decref(body);
        return false;
    }
    w->done = true;
    waiter_unlink(gw, w);
    out->answer = w->answer;
    out->status = status;
    out->body = body;
    out->t0 = w->t0;
    waiter_unref(w); /* the table's reference */
    return true;
}

static void reply(gw_t *gw, reply_t *r)
{
    count_status(gw, r->status);
    es_histogram_observe(gw->h_latency, (double)(es_mono_ms() - r->t0) / 1000.0);
    es_http_deferred_json(r->answer, r->status, r->body);
}

static json_t *unavailable(const char *why)
{
    return json_pack("{s:s, s:s}", "error", "unavailable", "message", why);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    gw_t *gw = opaque;
    waiter_t *w = m->_private;
    reply_t r;
    bool answer = false;
    (void)rk;
    if (!w)
        return;
    pthread_mutex_lock(&gw->mu);
    if (m->err)
        answer = waiter_finish(gw, w, 503, unavailable(rd_kafka_err2str(m->err)), &r);
    waiter_unref(w); /* the delivery report's reference */
    pthread_mutex_unlock(&gw->mu);
    if (answer)
        reply(gw, &r);
}

static void *poll_main(void *arg)
{
    gw_t *gw = arg;
    while (!atomic_load(&gw->stop))
        rd_kafka_poll(gw->prod, 100);
    return NULL;
}

/* Answer 504 to every waiter whose deadline passed (oldest first). */
static void expire_waiters(gw_t *gw)
{
    int64_t now = es_mono_ms();
    for (;;) {
        reply_t r;
        bool answer = false;
        pthread_mutex_lock(&gw->mu);
        waiter_t *w = gw->oldest;
        bool expired = w && w->deadline <= now;
        if (expired) {
            json_t *body = es_http_error_body(
                "timeout", "no outcome before the deadline: the command may or may not be "
                           "applied; retry with the same Idempotency-Key");
            json_object_set_new(body, "command_id", json_string(w->id));
            answer = waiter_finish(gw, w, 504, body, &r);
        }
        pthread_mutex_unlock(&gw->mu);
        if (!expired)
            break;
        if (answer)
            reply(gw, &r);
    }
}

/* Assign every partition of every results topic from its current end. */
static bool results_assign(gw_t *gw)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(16);
    bool ok = true;
    for (size_t a = 0; a < gw->naggs && ok; a++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(gw->results, gw->aggs[a].t_res, NULL);
        rd_kafka_resp_err_t kerr = rd_kafka_metadata(gw->results, 0, rkt, &md, 5000);
        rd_kafka_topic_destroy(rkt);
        if (kerr || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
            set_not_ready(gw, "results topic %s not readable: %s", gw->aggs[a].t_res,
                          kerr ? rd_kafka_err2str(kerr)
                               : rd_kafka_err2str(md->topics[0].err
                                                      ? md->topics[0].err
                                                      : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
            ok = false;
        }
        for (int p = 0; ok && p < md->topics[0].partition_cnt; p++) {
            int64_t lo, hi;
            if (rd_kafka_query_watermark_offsets(gw->results, gw->aggs[a].t_res, p, &lo, &hi,
                                                 5000)) {
                set_not_ready(gw, "end of %s [%d] unknown", gw->aggs[a].t_res, p);
                ok = false;
                break;
            }
            rd_kafka_topic_partition_list_add(tl, gw->aggs[a].t_res, p)->offset = hi;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
    }
    if (ok && rd_kafka_assign(gw->results, tl))
        ok = false;
    rd_kafka_topic_partition_list_destroy(tl);
    return ok;
}

static void results_handle(gw_t *gw, rd_kafka_message_t *m)
{
    char id[ES_ID_MAX + 1], errstr[512];
    avro_value_t *v;
    es_outcome_t o;
    bool wanted = false;
    if (es_header_get(m, "command-id", id, sizeof(id)))
        return;
    pthread_mutex_lock(&gw->mu);
    for (waiter_t *w = gw->waiters[bucket_of(id)]; w && !wanted; w = w->next)
        wanted = !strcmp(w->id, id);
    pthread_mutex_unlock(&gw->mu);
    if (!wanted)
        return;
    if (es_serde_decode(gw->res_serde, m->payload, m->len, &v, errstr, sizeof(errstr)) ||
        es_outcome_from_value(v, &o, errstr, sizeof(errstr))) {
        es_log_warn("gateway", "undecodable outcome for %s: %s", id, errstr);
        return;
    }
    json_t *body = NULL;
    int status = es_outcome_http(&o, &body);
    for (;;) { /* every request waiting for this command (the same key sent twice) */
        reply_t r;
        bool answer = false;
        pthread_mutex_lock(&gw->mu);
        waiter_t *w = gw->waiters[bucket_of(id)];
        while (w && (strcmp(w->id, o.command_id) || strcmp(w->agg_id, o.aggregate_id)))
            w = w->next;
        if (w)
            answer = waiter_finish(gw, w, status, json_deep_copy(body), &r);
        pthread_mutex_unlock(&gw->mu);
        if (!w)
            break;
        if (answer)
            reply(gw, &r);
    }
    json_decref(body);
}

/* Schemas of every aggregate's commands and of the results (once). */
static es_err_t open_serdes(gw_t *gw, char *errstr, size_t errstr_size)
{
    char subj[300];
    es_err_t err;
    for (size_t a = 0; a < gw->naggs; a++) {
        gw_agg_t *ag = &gw->aggs[a];
        if (ag->cmd_serde)
            continue;
        snprintf(subj, sizeof(subj), "%s-value", ag->t_cmd);
        if ((err = es_serde_open(gw->reg, subj, es_schema_text(ag->def->commands_schema), true, 0,
                                 &ag->cmd_serde, errstr, errstr_size)))
            return err;
        pthread_mutex_lock(&ag->mu);
        es_serde_new_value(ag->cmd_serde, &ag->value);
        ag->have_value = true;
        pthread_mutex_unlock(&ag->mu);
    }
    if (!gw->res_serde) {
        snprintf(subj, sizeof(subj), "%s-value", gw->aggs[0].t_res);
        if ((err = es_serde_open(gw->reg, subj, es_schema_text("command-result"), true, 0,
                                 &gw->res_serde, errstr, errstr_size)))
            return err;
    }
    return ES_ERR_OK;
}

static es_err_t create_topics(gw_t *gw, char *errstr, size_t errstr_size)
{
    es_admin_t *adm = es_admin_new(gw->conf, errstr, errstr_size);
    es_err_t err = adm ? ES_ERR_OK : ES_ERR_CONF;
    for (size_t a = 0; a < gw->naggs && !err; a++) {
        es_topic_spec_t specs[3];
        char t_ev[256];
        es_topic_name(gw->aggs[a].name, ES_TOPIC_EVENTS, NULL, t_ev, sizeof(t_ev));
        es_topic_spec_for(gw->conf, ES_TOPIC_COMMANDS, gw->aggs[a].t_cmd, &specs[0]);
        es_topic_spec_for(gw->conf, ES_TOPIC_EVENTS, t_ev, &specs[1]);
        es_topic_spec_for(gw->conf, ES_TOPIC_RESULTS, gw->aggs[a].t_res, &specs[2]);
        err = es_admin_create_topics(adm, specs, 3, 30000, errstr, errstr_size);
    }
    es_admin_destroy(adm);
    return err;
}

/* Everything before the first command, retried until it works. */
static bool get_ready(gw_t *gw)
{
    char errstr[1024];
    es_err_t err;
    int backoff_ms = 500;
    bool topics_done = !es_conf_get_bool(gw->conf, "topics.create");
    while (!atomic_load(&gw->stop)) {
        if ((err = open_serdes(gw, errstr, sizeof(errstr)))) {
            set_not_ready(gw, "schemas: %s", errstr);
        } else if (!topics_done && (err = create_topics(gw, errstr, sizeof(errstr)))) {
            set_not_ready(gw, "topics: %s", errstr);
        } else {
            topics_done = true;
            if (results_assign(gw))
                return true;
        }
        if (err == ES_ERR_INCOMPATIBLE_SCHEMA || err == ES_ERR_SCHEMA || err == ES_ERR_CONF)
            es_log_error("gateway", "%s (needs a fix, not a retry; retrying anyway)", errstr);
        pthread_mutex_lock(&gw->why_mu);
        es_log_warn("gateway", "not ready, retrying in %d ms: %s", backoff_ms, gw->not_ready);
        pthread_mutex_unlock(&gw->why_mu);
        for (int slept = 0; slept < backoff_ms && !atomic_load(&gw->stop); slept += 100)
            rd_kafka_poll(gw->results, 100);
        backoff_ms = backoff_ms >= 15000 ? 30000 : backoff_ms * 2;
    }
    return false;
}

static void *results_main(void *arg)
{
    gw_t *gw = arg;
    if (get_ready(gw)) {
        atomic_store(&gw->ready, true);
        es_log_info("gateway", "reading outcomes from %zu results topic(s)", gw->naggs);
    }
    while (!atomic_load(&gw->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->results, 50);
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    es_log_warn("gateway", "results: %s", rd_kafka_message_errstr(m));
            } else {
                results_handle(gw, m);
            }
            rd_kafka_message_destroy(m);
        }
        expire_waiters(gw);
    }
    return NULL;
}

/* ---------------------------------------------------------------- requests */

static gw_agg_t *agg_by_collection(gw_t *gw, const char *collection)
{
    for (size_t i = 0; i < gw->naggs; i++)
        if (!strcmp(gw->aggs[i].def->collection, collection))
            return &gw->aggs[i];
    return NULL;
}

/* If-Match: a version as digits, optionally quoted as an ETag ("3"). */
static bool parse_if_match(const char *s, int64_t *v)
{
    char buf[32];
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n == 0 || n > 18)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return false;
    *v = strtoll(buf, NULL, 10);
    return true;
}

static void reply_error(gw_t *gw, es_http_resp_t *resp, int status, const char *code,
                        const char *msg)
{
    count_status(gw, status);
    es_http_resp_json(resp, status, es_http_error_body(code, msg));
}

/* Fill the command envelope and encode it (agg mutex held). */
static es_err_t build_command(gw_agg_t *ag, const es_command_def_t *cd, const char *cmd_id,
                              const char *agg_id, bool has_expected, int64_t expected,
                              const es_principal_t *who, const char *body, size_t len,
                              es_buf_t *out, const char **code, char *msg, size_t msgsz)
{
    avro_value_t *v = &ag->value, f, br;
    char errstr[512];
    avro_value_reset(v);
    *code = "invalid_command";
    if (avro_value_get_by_name(v, "payload", &f, NULL) ||
        es_command_from_json(cd, body, len, &f, code, msg, msgsz))
        return ES_ERR_INVALID_ARG;
    int rc = avro_value_get_by_name(v, "command_id", &f, NULL) || avro_value_set_string(&f, cmd_id);
    rc = rc || avro_value_get_by_name(v, ag->def->id_field, &f, NULL) ||
         avro_value_set_string(&f, agg_id);
    rc = rc || avro_value_get_by_name(v, "issued_at", &f, NULL) ||
         avro_value_set_long(&f, es_now_ms());
    rc = rc || avro_value_get_by_name(v, "expected_version", &f, NULL) ||
         (has_expected ? avro_value_set_branch(&f, 1, &br) || avro_value_set_long(&br, expected)
                       : avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br));
    rc = rc || avro_value_get_by_name(v, "correlation_id", &f, NULL) ||
         avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br);
    /* who sent it: the command service copies it into every event and the outcome */
    rc = rc || es_principal_set(v, who->subject, who->client_id) != ES_ERR_OK;
    if (rc) {
        *code = "internal";
        snprintf(msg, msgsz, "command envelope: %s", avro_strerror());
        return ES_ERR_ENCODE;
    }
    if (es_serde_encode(ag->cmd_serde, v, out, errstr, sizeof(errstr))) {
        *code = "internal";
        snprintf(msg, msgsz, "%s", errstr);
        return ES_ERR_ENCODE;
    }
    return ES_ERR_OK;
}

static void command_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    gw_t *gw = opaque;
    const char *collection = es_http_req_param(req, 0), *agg_id = es_http_req_param(req, 1),
               *verb = es_http_req_param(req, 2);
    char msg[512], cmd_id[ES_ID_MAX + 1];
    const char *code;
    int64_t expected = 0, t0 = es_mono_ms();
    bool has_expected = false;
    es_buf_t rec = {0};
    size_t len;
    const char *body = es_http_req_body(req, &len);

    gw_agg_t *ag = agg_by_collection(gw, collection);
    const es_command_def_t *cd = ag ? es_command_find(ag->def, verb) : NULL;
    if (!cd) {
        snprintf(msg, sizeof(msg), "no command %.64s for %.64s here", verb, collection);
        reply_error(gw, resp, 404, "unknown_command", msg);
        return;
    }
    if (!atomic_load(&gw->ready)) {
        reply_error(gw, resp, 503, "unavailable", "not reading outcomes yet; retry shortly");
        return;
    }
    if (!es_command_id_valid(agg_id)) {
        reply_error(gw, resp, 400, "invalid_command",
                    "the aggregate id must be 1 to 128 printable ASCII characters");
        return;
    }
    /* Known to be unanswerable: say so now, and write nothing. */
    char why[512];
    if (!es_kafka_watch_broker_ok(gw->watch, why, sizeof(why))) {
        snprintf(msg, sizeof(msg), "%.400s; nothing was written, retry later", why);
        reply_error(gw, resp, 503, "unavailable", msg);
        return;
    }
    size_t ai = (size_t)(ag - gw->aggs);
    if (es_kafka_watch_group(gw->watch, ai) == ES_GROUP_EMPTY) /* stale? ask once more */
        es_kafka_watch_refresh(gw->watch, 3000);
    if (es_kafka_watch_group(gw->watch, ai) == ES_GROUP_EMPTY) {
        snprintf(msg, sizeof(msg),
                 "no command service for %.64s is running; nothing was written, retry later",
                 ag->def->name);
        reply_error(gw, resp, 503, "unavailable", msg);
        return;
    }
    const char *key = es_http_req_header(req, "Idempotency-Key");
    if (key) {
        if (!es_command_id_valid(key)) {
            reply_error(gw, resp, 400, "invalid_command",
                        "Idempotency-Key must be 1 to 128 printable ASCII characters");
            return;
        }
        snprintf(cmd_id, sizeof(cmd_id), "%s", key);
    } else {
        es_uuid_v4(cmd_id);
    }
    const char *im = es_http_req_header(req, "If-Match");
    if (im) {
        if (!parse_if_match(im, &expected)) {
            reply_error(gw, resp, 400, "invalid_command",
                        "If-Match must be an aggregate version (a non-negative integer)");
            return;
        }
        has_expected = true;
    }
    pthread_mutex_lock(&ag->mu);
    es_err_t err =
        build_command(ag, cd, cmd_id, agg_id, has_expected, expected, es_http_req_principal(req),
                      body, len, &rec, &code, msg, sizeof(msg));
    pthread_mutex_unlock(&ag->mu);
    if (err) {
        reply_error(gw, resp, err == ES_ERR_INVALID_ARG ? 400 : 500, code, msg);
        es_buf_free(&rec);
        return;
    }

    waiter_t *w = es_calloc(1, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", cmd_id);
    snprintf(w->agg_id, sizeof(w->agg_id), "%s", agg_id);
    w->refs = 2; /* the table's and the delivery report's */
    w->t0 = t0;
    w->deadline = es_mono_ms() + gw->timeout_ms;
    w->answer = es_http_defer(req);
    pthread_mutex_lock(&gw->mu);
    uint32_t b = bucket_of(w->id);
    w->next = gw->waiters[b];
    gw->waiters[b] = w;
    w->older = gw->newest;
    if (gw->newest)
        gw->newest->newer = w;
    else
        gw->oldest = w;
    gw->newest = w;
    pthread_mutex_unlock(&gw->mu);

    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        gw->prod, RD_KAFKA_V_TOPIC(ag->t_cmd), RD_KAFKA_V_KEY(agg_id, strlen(agg_id)),
        RD_KAFKA_V_VALUE(rec.data, rec.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_END);
    es_buf_free(&rec);
    if (kerr) {
        reply_t r;
        pthread_mutex_lock(&gw->mu);
        w->refs--; /* no delivery report will come */
        bool answer = waiter_finish(gw, w, 503, unavailable(rd_kafka_err2str(kerr)), &r);
        pthread_mutex_unlock(&gw->mu);
        if (answer)
            reply(gw, &r);
    }
    /* The answer comes from the results thread, the delivery report or the deadline. */
}

/*
 * Ready while the outcomes are read and a broker answers.  A served
 * aggregate without a command service does not make the gateway unready
 * (its commands get 503 at once, the others still work) unless it is the
 * only kind there is: then the gateway can do nothing (docs/operations.md).
 */
static bool gw_ready(void *opaque, char *why, size_t whysz)
{
    gw_t *gw = opaque;
    if (!es_kafka_watch_broker_ok(gw->watch, why, whysz))
        return false;
    if (!atomic_load(&gw->ready)) {
        pthread_mutex_lock(&gw->why_mu);
        snprintf(why, whysz, "%s", gw->not_ready);
        pthread_mutex_unlock(&gw->why_mu);
        return false;
    }
    size_t served = 0;
    for (size_t a = 0; a < gw->naggs; a++)
        served += es_kafka_watch_group(gw->watch, a) != ES_GROUP_EMPTY;
    if (!served) {
        snprintf(why, whysz, "no command service is running for any of the %zu aggregate(s)",
                 gw->naggs);
        return false;
    }
    return true;
}

es_http_server_t *gw_http_start(gw_t *gw, char *errstr, size_t errstr_size)
{
    static const es_http_route_t routes[] = {
        {"POST", "/v1/{collection}/{id}/{command}", command_handler,
         "command:{collection}.{command}"},
    };
    es_http_server_conf_t hc = {
        .max_body = (size_t)es_conf_get_int(gw->conf, "http.max.body"),
        .routes = routes,
        .nroutes = 1,
        .opaque = gw,
        .metrics = gw->metrics,
        .ready = gw_ready,
        .auth = gw->auth,
    };
    es_http_server_conf_from(gw->conf, &hc);
    return es_http_server_start(&hc, errstr, errstr_size);
}

/* ------------------------------------------------------------------ set-up */

gw_t *gw_new(const es_conf_t *conf, es_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    gw_t *gw = es_calloc(1, sizeof(*gw));
    const char *prefix = es_conf_get(conf, "aggregate.prefix");
    char *list = es_strdup(es_conf_get(conf, "aggregates")), *save = NULL;
    const char *groups[GW_MAX_AGGS];
    char group_names[GW_MAX_AGGS][300];
    rd_kafka_conf_t *pc = NULL, *cc = NULL;

    gw->conf = conf;
    gw->metrics = metrics;
    gw->timeout_ms = (int)es_conf_get_int(conf, "request.timeout.ms");
    pthread_mutex_init(&gw->mu, NULL);
    pthread_mutex_init(&gw->why_mu, NULL);
    set_not_ready(gw, "starting");
    gw->h_latency = es_metrics_histogram(metrics, "escqrs_gateway_request_seconds",
                                         "Time from request to outcome", NULL,
                                         es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    gw->reg = es_registry_from_conf(conf, 5, errstr, errstr_size);
    if (!gw->reg)
        goto fail;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        const es_aggregate_def_t *def = es_domain_find(tok);
        if (!def) {
            snprintf(errstr, errstr_size, "aggregates: no aggregate named %s", tok);
            goto fail;
        }
        if (gw->naggs == GW_MAX_AGGS) {
            snprintf(errstr, errstr_size, "aggregates: at most %d", GW_MAX_AGGS);
            goto fail;
        }
        gw_agg_t *ag = &gw->aggs[gw->naggs];
        ag->def = def;
        snprintf(ag->name, sizeof(ag->name), "%s%s", prefix ? prefix : "", def->name);
        es_topic_name(ag->name, ES_TOPIC_COMMANDS, NULL, ag->t_cmd, sizeof(ag->t_cmd));
        es_topic_name(ag->name, ES_TOPIC_RESULTS, NULL, ag->t_res, sizeof(ag->t_res));
        snprintf(group_names[gw->naggs], sizeof(group_names[0]), "%s.command-service", ag->name);
        groups[gw->naggs] = group_names[gw->naggs];
        pthread_mutex_init(&ag->mu, NULL);
        gw->naggs++;
    }
    if (gw->naggs == 0) {
        snprintf(errstr, errstr_size, "aggregates: none configured");
        goto fail;
    }
    if (!(gw->watch = es_kafka_watch_start(conf, groups, gw->naggs, errstr, errstr_size)))
        goto fail;
    if (!(gw->auth = es_auth_new(conf, errstr, errstr_size)))
        goto fail;

    if (!(pc = es_kafka_conf_build(conf, ES_CONF_ROLE_PRODUCER, errstr, errstr_size)))
        goto fail;
    if (!es_conf_get(conf, "kafka.linger.ms") &&
        rd_kafka_conf_set(pc, "linger.ms", "1", errstr, errstr_size))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_opaque(pc, gw);
    if (!(gw->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, errstr_size)))
        goto fail;
    pc = NULL;

    if (!(cc = es_kafka_conf_build(conf, ES_CONF_ROLE_CONSUMER, errstr, errstr_size)))
        goto fail;
    if (rd_kafka_conf_set(cc, "group.id", "escqrs-gateway-unused", errstr, errstr_size) ||
        (!es_conf_get(conf, "kafka.fetch.wait.max.ms") &&
         rd_kafka_conf_set(cc, "fetch.wait.max.ms", "10", errstr, errstr_size)))
        goto fail;
    if (!(gw->results = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, errstr_size)))
        goto fail;
    cc = NULL;
    rd_kafka_poll_set_consumer(gw->results);

    if (pthread_create(&gw->poll_thr, NULL, poll_main, gw)) {
        snprintf(errstr, errstr_size, "cannot start the producer thread");
        goto fail;
    }
    if (pthread_create(&gw->res_thr, NULL, results_main, gw)) {
        atomic_store(&gw->stop, true);
        pthread_join(gw->poll_thr, NULL);
        snprintf(errstr, errstr_size, "cannot start the results thread");
        goto fail;
    }
    gw->threads = true;
    free(list);
    return gw;
fail:
    if (pc)
        rd_kafka_conf_destroy(pc);
    if (cc)
        rd_kafka_conf_destroy(cc);
    free(list);
    gw_destroy(gw);
    return NULL;
}

void gw_shutdown(gw_t *gw)
{
    if (!gw)
        return;
    atomic_store(&gw->stop, true);
    if (gw->threads) {
        pthread_join(gw->res_thr, NULL);
        pthread_join(gw->poll_thr, NULL);
        gw->threads = false;
    }
    /* Every request still waiting gets its answer before the HTTP server stops. */
    for (;;) {
        reply_t r;
        bool answer = false;
        pthread_mutex_lock(&gw->mu);
        waiter_t *w = gw->oldest;
        if (w) {
            json_t *body = es_http_error_body(
                "timeout", "the gateway is stopping: the command may or may not be applied; "
                           "retry with the same Idempotency-Key");
            json_object_set_new(body, "command_id", json_string(w->id));
            answer = waiter_finish(gw, w, 504, body, &r);
        }
        pthread_mutex_unlock(&gw->mu);
        if (!w)
            break;
        if (answer)
            reply(gw, &r);
    }
}

void gw_destroy(gw_t *gw)
{
    if (!gw)
        return;
    gw_shutdown(gw);
    if (gw->prod) {
        rd_kafka_flush(gw->prod, 5000);
        rd_kafka_destroy(gw->prod); /* the delivery reports release the waiters' last refs */
    }
    if (gw->results) {
        rd_kafka_consumer_close(gw->results);
        rd_kafka_destroy(gw->results);
    }
    es_kafka_watch_stop(gw->watch);
    es_auth_destroy(gw->auth);
    for (size_t i = 0; i < gw->naggs; i++) {
        if (gw->aggs[i].have_value)
            avro_value_decref(&gw->aggs[i].value);
        es_serde_destroy(gw->aggs[i].cmd_serde);
        pthread_mutex_destroy(&gw->aggs[i].mu);
    }
    es_serde_destroy(gw->res_serde);
    es_registry_destroy(gw->reg);
    pthread_mutex_destroy(&gw->mu);
    pthread_mutex_destroy(&gw->why_mu);
    free(gw);
}
