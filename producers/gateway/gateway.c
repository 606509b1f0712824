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
 */
#include "gateway.h"

#include "domains.h"
#include "escqrs/command.h"
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/log.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GW_MAX_AGGS 8
#define NBUCKETS    4096

typedef struct waiter_s {
    struct waiter_s *next;
    char id[ES_ID_MAX + 1];
    char agg_id[ES_ID_MAX + 1];
    int refs; /* the request, and the delivery report until it comes */
    bool done;
    int status;
    json_t *body;
    pthread_cond_t cv;
} waiter_t;

typedef struct gw_agg_s {
    const es_aggregate_def_t *def;
    char t_cmd[256], t_res[256];
    es_serde_t *cmd_serde;
    avro_value_t value;
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
    pthread_t poll_thr, res_thr;
    bool threads;
    atomic_bool stop, ready;

    pthread_mutex_t mu;
    waiter_t *waiters[NBUCKETS];

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

/* Drop one reference (table mutex held); the last one frees. */
static void waiter_unref(waiter_t *w)
{
    if (--w->refs > 0)
        return;
    pthread_cond_destroy(&w->cv);
    json_decref(w->body);
    free(w);
}

static void waiter_unlink(gw_t *gw, waiter_t *w)
{
    waiter_t **pp = &gw->waiters[bucket_of(w->id)];
    for (; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            return;
        }
}

static void waiter_finish(waiter_t *w, int status, json_t *body)
{
    if (w->done) {
        json_decref(body);
        return;
    }
    w->done = true;
    w->status = status;
    w->body = body;
    pthread_cond_broadcast(&w->cv);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    gw_t *gw = opaque;
    waiter_t *w = m->_private;
    if (!w)
        return;
    pthread_mutex_lock(&gw->mu);
    if (m->err)
        waiter_finish(
            w, 503,
            json_pack("{s:s, s:s}", "error", "unavailable", "message", rd_kafka_err2str(m->err)));
    waiter_unref(w);
    pthread_mutex_unlock(&gw->mu);
}

static void *poll_main(void *arg)
{
    gw_t *gw = arg;
    while (!atomic_load(&gw->stop))
        rd_kafka_poll(gw->prod, 100);
    return NULL;
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
            es_log_warn("gateway", "results topic %s not there yet: %s", gw->aggs[a].t_res,
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
        wanted = !strcmp(w->id, id) && !w->done;
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
    pthread_mutex_lock(&gw->mu);
    for (waiter_t *w = gw->waiters[bucket_of(id)]; w; w = w->next)
        if (!strcmp(w->id, o.command_id) && !strcmp(w->agg_id, o.aggregate_id) && !w->done)
            waiter_finish(w, status, json_deep_copy(body));
    pthread_mutex_unlock(&gw->mu);
    json_decref(body);
}

static void *results_main(void *arg)
{
    gw_t *gw = arg;
    while (!atomic_load(&gw->stop) && !results_assign(gw))
        for (int i = 0; i < 10 && !atomic_load(&gw->stop); i++)
            rd_kafka_poll(gw->results, 100);
    if (!atomic_load(&gw->stop)) {
        atomic_store(&gw->ready, true);
        es_log_info("gateway", "reading outcomes from %zu results topic(s)", gw->naggs);
    }
    while (!atomic_load(&gw->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->results, 100);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                es_log_warn("gateway", "results: %s", rd_kafka_message_errstr(m));
        } else {
            results_handle(gw, m);
        }
        rd_kafka_message_destroy(m);
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

static void count_status(gw_t *gw, int status)
{
    char labels[32];
    snprintf(labels, sizeof(labels), "status=\"%d\"", status);
    es_counter_add(es_metrics_counter(gw->metrics, "escqrs_gateway_requests_total",
                                      "Command requests answered, by HTTP status", labels),
                   1);
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
                              const char *body, size_t len, es_buf_t *out, const char **code,
                              char *msg, size_t msgsz)
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
    int64_t expected = 0, t0 = es_now_ms();
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
    es_err_t err = build_command(ag, cd, cmd_id, agg_id, has_expected, expected, body, len, &rec,
                                 &code, msg, sizeof(msg));
    pthread_mutex_unlock(&ag->mu);
    if (err) {
        reply_error(gw, resp, err == ES_ERR_INVALID_ARG ? 400 : 500, code, msg);
        es_buf_free(&rec);
        return;
    }

    waiter_t *w = es_calloc(1, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", cmd_id);
    snprintf(w->agg_id, sizeof(w->agg_id), "%s", agg_id);
    pthread_cond_init(&w->cv, NULL);
    w->refs = 2;
    pthread_mutex_lock(&gw->mu);
    uint32_t b = bucket_of(w->id);
    w->next = gw->waiters[b];
    gw->waiters[b] = w;
    pthread_mutex_unlock(&gw->mu);

    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        gw->prod, RD_KAFKA_V_TOPIC(ag->t_cmd), RD_KAFKA_V_KEY(agg_id, strlen(agg_id)),
        RD_KAFKA_V_VALUE(rec.data, rec.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_END);
    es_buf_free(&rec);

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += gw->timeout_ms / 1000;
    dl.tv_nsec += (long)(gw->timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&gw->mu);
    if (kerr) {
        w->refs--; /* no delivery report will come */
        waiter_finish(
            w, 503,
            json_pack("{s:s, s:s}", "error", "unavailable", "message", rd_kafka_err2str(kerr)));
    }
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &gw->mu, &dl) == ETIMEDOUT)
            break;
    int status = 504;
    json_t *answer = NULL;
    if (w->done) {
        status = w->status;
        answer = w->body;
        w->body = NULL;
    }
    waiter_unlink(gw, w);
    waiter_unref(w);
    pthread_mutex_unlock(&gw->mu);
    if (!answer) {
        answer = es_http_error_body("timeout", "no outcome before the deadline: the command may "
                                               "or may not be applied; retry with the same "
                                               "Idempotency-Key");
        json_object_set_new(answer, "command_id", json_string(cmd_id));
    }
    count_status(gw, status);
    es_histogram_observe(gw->h_latency, (double)(es_now_ms() - t0) / 1000.0);
    es_http_resp_json(resp, status, answer);
}

static bool gw_ready(void *opaque, char *why, size_t whysz)
{
    gw_t *gw = opaque;
    if (atomic_load(&gw->ready))
        return true;
    snprintf(why, whysz, "results topics not assigned yet");
    return false;
}

es_http_server_t *gw_http_start(gw_t *gw, char *errstr, size_t errstr_size)
{
    static const es_http_route_t routes[] = {
        {"POST", "/v1/{collection}/{id}/{command}", command_handler},
    };
    es_http_server_conf_t hc = {
        .listen = es_conf_get(gw->conf, "http.listen"),
        .max_body = (size_t)es_conf_get_int(gw->conf, "http.max.body"),
        .routes = routes,
        .nroutes = 1,
        .opaque = gw,
        .metrics = gw->metrics,
        .ready = gw_ready,
    };
    return es_http_server_start(&hc, errstr, errstr_size);
}

/* ------------------------------------------------------------------ set-up */

gw_t *gw_new(const es_conf_t *conf, es_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    gw_t *gw = es_calloc(1, sizeof(*gw));
    const char *prefix = es_conf_get(conf, "aggregate.prefix");
    char *list = es_strdup(es_conf_get(conf, "aggregates")), *save = NULL, subj[300], agg[256];
    rd_kafka_conf_t *pc = NULL, *cc = NULL;

    gw->conf = conf;
    gw->metrics = metrics;
    gw->timeout_ms = (int)es_conf_get_int(conf, "request.timeout.ms");
    pthread_mutex_init(&gw->mu, NULL);
    gw->h_latency = es_metrics_histogram(metrics, "escqrs_gateway_request_seconds",
                                         "Time from request to outcome", NULL,
                                         es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    gw->reg =
        es_registry_new(es_conf_get(conf, "registry.url"),
                        (int)es_conf_get_int(conf, "registry.timeout.ms"), 5, errstr, errstr_size);
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
        snprintf(agg, sizeof(agg), "%s%s", prefix ? prefix : "", def->name);
        es_topic_name(agg, ES_TOPIC_COMMANDS, NULL, ag->t_cmd, sizeof(ag->t_cmd));
        es_topic_name(agg, ES_TOPIC_RESULTS, NULL, ag->t_res, sizeof(ag->t_res));
        snprintf(subj, sizeof(subj), "%s-value", ag->t_cmd);
        ag->cmd_serde = es_serde_new(gw->reg, subj, es_schema_text(def->commands_schema), true, 0,
                                     errstr, errstr_size);
        if (!ag->cmd_serde)
            goto fail;
        es_serde_new_value(ag->cmd_serde, &ag->value);
        pthread_mutex_init(&ag->mu, NULL);
        gw->naggs++;
        if (!gw->res_serde) {
            snprintf(subj, sizeof(subj), "%s-value", ag->t_res);
            gw->res_serde = es_serde_new(gw->reg, subj, es_schema_text("command-result"), true, 0,
                                         errstr, errstr_size);
            if (!gw->res_serde)
                goto fail;
        }
        if (es_conf_get_bool(conf, "topics.create")) {
            es_topic_spec_t specs[3];
            char t_ev[256];
            es_topic_name(agg, ES_TOPIC_EVENTS, NULL, t_ev, sizeof(t_ev));
            es_topic_spec_for(conf, ES_TOPIC_COMMANDS, ag->t_cmd, &specs[0]);
            es_topic_spec_for(conf, ES_TOPIC_EVENTS, t_ev, &specs[1]);
            es_topic_spec_for(conf, ES_TOPIC_RESULTS, ag->t_res, &specs[2]);
            es_admin_t *adm = es_admin_new(conf, errstr, errstr_size);
            if (!adm)
                goto fail;
            es_err_t err = es_admin_create_topics(adm, specs, 3, 30000, errstr, errstr_size);
            es_admin_destroy(adm);
            if (err)
                goto fail;
        }
    }
    if (gw->naggs == 0) {
        snprintf(errstr, errstr_size, "aggregates: none configured");
        goto fail;
    }

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

void gw_destroy(gw_t *gw)
{
    if (!gw)
        return;
    atomic_store(&gw->stop, true);
    if (gw->threads) {
        pthread_join(gw->res_thr, NULL);
        pthread_join(gw->poll_thr, NULL);
    }
    if (gw->prod) {
        rd_kafka_flush(gw->prod, 5000);
        rd_kafka_destroy(gw->prod); /* delivery reports of the flush release the waiters */
    }
    if (gw->results) {
        rd_kafka_consumer_close(gw->results);
        rd_kafka_destroy(gw->results);
    }
    for (size_t i = 0; i < gw->naggs; i++) {
        avro_value_decref(&gw->aggs[i].value);
        es_serde_destroy(gw->aggs[i].cmd_serde);
        pthread_mutex_destroy(&gw->aggs[i].mu);
    }
    es_serde_destroy(gw->res_serde);
    es_registry_destroy(gw->reg);
    for (size_t b = 0; b < NBUCKETS; b++)
        for (waiter_t *w = gw->waiters[b], *n; w; w = n) {
            n = w->next;
            pthread_cond_destroy(&w->cv);
            json_decref(w->body);
            free(w);
        }
    pthread_mutex_destroy(&gw->mu);
    free(gw);
}
