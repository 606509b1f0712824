/*
 * request.c — one command request: validate, encode, wait for the outcome.
 *
 * A request becomes a command record on <agg>.commands (idempotent producer,
 * acks=all, keyed by the aggregate id, so the command service that owns the
 * partition is the aggregate's single writer).  The checks run cheapest and
 * surest first, and nothing is written unless every one passes: the route
 * (404), whether outcomes are read yet, the aggregate id, whether a broker
 * answers and a command service of the aggregate runs (503 at once: a
 * command nobody will decide must not be written and then time out), the
 * Idempotency-Key, If-Match and X-Correlation-Id headers (400), the body
 * (400).  A malformed traceparent is not refused: the W3C spec says to
 * ignore it and start a new trace, which the HTTP server has done.
 *
 * Request context: the command carries the correlation id (X-Correlation-Id,
 * else the command id, so it is never null), the traceparent of this
 * gateway's span and the tracestate the caller sent, as value fields and
 * as headers; the answer carries X-Correlation-Id and traceparent.
 *
 * The waiter is registered before the record is produced, so its outcome
 * cannot arrive unseen; the answer comes from the results thread, the
 * delivery report or the deadline (waiters.c).
 *
 * Nothing here waits (the produce is ES_SEND_NO_WAIT: a full queue is 503),
 * so the route runs on the HTTP event thread (`never_waits`), except to ask
 * once more about a command service group that looks empty, which goes to a
 * worker.  perf of the gateway at 512 clients before: the hand-off to the
 * workers (a condition signal per request, the woken worker waiting for the
 * server's lock) was most of its futex calls.
 */
#include "gateway_int.h"

#include "escqrs/envelope.h"
#include "escqrs/log.h"
#include "escqrs/record.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_REFRESH_MS 3000 /* longest wait for a fresh look at a group that seemed empty */

/* A request on its way to becoming a command record. */
typedef struct {
    gw_agg_t *ag;
    const es_command_def_t *cd;
    const char *agg_id;
    char cmd_id[ES_ID_MAX + 1];
    bool has_expected;
    int64_t expected;
    es_trace_fields_t trace; /* correlation id, traceparent, tracestate */
    es_buf_t rec;
    int64_t t0;
} command_req_t;

static gw_agg_t *agg_by_collection(gw_t *gw, const char *collection)
{
    for (size_t i = 0; i < gw->naggs; i++)
        if (!strcmp(gw->aggs[i].def->collection, collection))
            return &gw->aggs[i];
    return NULL;
}

/* If-Match: a version in decimal digits, optionally quoted as an ETag ("3"). */
static bool parse_if_match(const char *s, int64_t *v)
{
    size_t n = strlen(s);
    bool quoted = n >= 2 && s[0] == '"' && s[n - 1] == '"';
    const char *end;
    return es_parse_i64_prefix(s + quoted, &end, 0, INT64_MAX, v) && end == s + n - quoted;
}

static bool reply_error(gw_t *gw, es_http_resp_t *resp, int status, const char *code,
                        const char *msg)
{
    gw_count_status(gw, status);
    es_http_resp_json(resp, status, es_http_error_body(code, msg));
    return false;
}

/* Fill the command envelope and encode it (agg mutex held). */
static es_err_t build_command(gw_agg_t *ag, const es_command_def_t *cd, const command_req_t *c,
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
    int rc =
        avro_value_get_by_name(v, "command_id", &f, NULL) || avro_value_set_string(&f, c->cmd_id);
    rc = rc || avro_value_get_by_name(v, ag->def->id_field, &f, NULL) ||
         avro_value_set_string(&f, c->agg_id);
    rc = rc || avro_value_get_by_name(v, "issued_at", &f, NULL) ||
         avro_value_set_long(&f, es_now_ms());
    rc = rc || avro_value_get_by_name(v, "expected_version", &f, NULL) ||
         (c->has_expected
              ? avro_value_set_branch(&f, 1, &br) || avro_value_set_long(&br, c->expected)
              : avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br));
    /* the request context: the command service copies it into events and outcome */
    rc = rc || es_trace_fields_set(v, &c->trace) != ES_ERR_OK;
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

/* The aggregate and command of the path: 404 when this gateway serves neither. */
static bool route(gw_t *gw, es_http_req_t *req, es_http_resp_t *resp, command_req_t *c)
{
    const char *collection = es_http_req_param(req, 0), *verb = es_http_req_param(req, 2);
    char msg[512];
    c->agg_id = es_http_req_param(req, 1);
    c->ag = agg_by_collection(gw, collection);
    c->cd = c->ag ? es_command_find(c->ag->def, verb) : NULL;
    if (c->cd)
        return true;
    snprintf(msg, sizeof(msg), "no command %.64s for %.64s here", verb, collection);
    return reply_error(gw, resp, 404, "unknown_command", msg);
}

/*
 * Could the command be decided now?  Known to be unanswerable: say so, write
 * nothing.  A group that looks empty is asked about once more, which waits: on
 * the event thread the request goes to a worker for that (false, no answer).
 */
static bool answerable(gw_t *gw, es_http_req_t *req, es_http_resp_t *resp, command_req_t *c)
{
    char msg[512], why[512];
    if (!atomic_load(&gw->ready))
        return reply_error(gw, resp, 503, "unavailable", "not reading outcomes yet; retry shortly");
    if (!es_command_id_valid(c->agg_id))
        return reply_error(gw, resp, 400, "invalid_command",
                           "the aggregate id must be 1 to 128 printable ASCII characters");
    if (!es_kafka_watch_broker_ok(gw->watch, why, sizeof(why))) {
        snprintf(msg, sizeof(msg), "%.400s; nothing was written, retry later", why);
        return reply_error(gw, resp, 503, "unavailable", msg);
    }
    size_t ai = (size_t)(c->ag - gw->aggs);
    if (es_kafka_watch_group(gw->watch, ai) == ES_GROUP_EMPTY) { /* stale? ask once more */
        if (es_http_req_to_worker(req))
            return false;
        es_kafka_watch_refresh(gw->watch, GROUP_REFRESH_MS);
    }
    if (es_kafka_watch_group(gw->watch, ai) == ES_GROUP_EMPTY) {
        snprintf(msg, sizeof(msg),
                 "no command service for %.64s is running; nothing was written, retry later",
                 c->ag->def->name);
        return reply_error(gw, resp, 503, "unavailable", msg);
    }
    return true;
}

/* Idempotency-Key (or a new id), If-Match, X-Correlation-Id (or the command id). */
static bool read_headers(gw_t *gw, es_http_req_t *req, es_http_resp_t *resp, command_req_t *c)
{
    const char *key = es_http_req_header(req, "Idempotency-Key");
    const char *im = es_http_req_header(req, "If-Match");
    const char *corr = es_http_req_header(req, "X-Correlation-Id");
    if (corr && !es_correlation_id_valid(corr))
        return reply_error(gw, resp, 400, "invalid_command",
                           "X-Correlation-Id must be 1 to 128 printable ASCII characters");
    if (key && !es_command_id_valid(key))
        return reply_error(gw, resp, 400, "invalid_command",
                           "Idempotency-Key must be 1 to 128 printable ASCII characters");
    if (key)
        snprintf(c->cmd_id, sizeof(c->cmd_id), "%s", key);
    else
        es_uuid_v4(c->cmd_id);
    if (im && !parse_if_match(im, &c->expected))
        return reply_error(gw, resp, 400, "invalid_command",
                           "If-Match must be an aggregate version (a non-negative integer)");
    c->has_expected = im != NULL;
    /* Axon's rule: without one, the originating message's id correlates */
    snprintf(c->trace.correlation_id, sizeof(c->trace.correlation_id), "%s",
             corr ? corr : c->cmd_id);
    snprintf(c->trace.traceparent, sizeof(c->trace.traceparent), "%s",
             es_http_req_traceparent(req));
    snprintf(c->trace.tracestate, sizeof(c->trace.tracestate), "%s", es_http_req_tracestate(req));
    es_http_resp_header(resp, "X-Correlation-Id", c->trace.correlation_id);
    return true;
}

/* The command record in c->rec: 400 for a bad body, 500 when it cannot be encoded. */
static bool encode(gw_t *gw, es_http_req_t *req, es_http_resp_t *resp, command_req_t *c)
{
    char msg[512];
    const char *code;
    size_t len;
    const char *body = es_http_req_body(req, &len);
    pthread_mutex_lock(&c->ag->mu);
    es_err_t err = build_command(c->ag, c->cd, c, es_http_req_principal(req), body, len, &c->rec,
                                 &code, msg, sizeof(msg));
    pthread_mutex_unlock(&c->ag->mu);
    return err ? reply_error(gw, resp, err == ES_ERR_INVALID_ARG ? 400 : 500, code, msg) : true;
}

/* Register the waiter, then produce: the outcome cannot arrive unseen. */
static void send_command(gw_t *gw, es_http_req_t *req, command_req_t *c)
{
    char errstr[512];
    waiter_t *w = gw_waiter_add(gw, c->ag, c->cmd_id, c->agg_id, c->t0, es_http_defer(req));
    if (!w)
        return; /* the gateway is stopping: answered 503 */
    es_record_t rec = {
        .topic = c->ag->t_cmd,
        .partition = RD_KAFKA_PARTITION_UA,
        .key = c->agg_id,
        .keylen = strlen(c->agg_id),
        .value = c->rec.data,
        .valuelen = c->rec.len,
        .headers = rd_kafka_headers_new(3),
        .msg_opaque = w,
    };
    es_trace_headers_add(rec.headers, &c->trace);
    es_log_debug("gateway", "command %s for %s %s: sent", c->cmd_id, c->ag->def->name, c->agg_id);
    /* A full local queue is load to shed (503), not to wait for. */
    if (es_producer_send_record(gw->prod, &rec, ES_SEND_NO_WAIT, errstr, sizeof(errstr))) {
        rd_kafka_headers_destroy(rec.headers); /* kept by the producer only on success */
        gw_waiter_fail(gw, w, gw_unavailable(errstr));
    }
    /* The answer comes from the results thread, the delivery report or the deadline. */
}

void gw_command_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    gw_t *gw = opaque;
    command_req_t c = {.t0 = es_mono_ms()};
    if (route(gw, req, resp, &c) && answerable(gw, req, resp, &c) &&
        read_headers(gw, req, resp, &c) && encode(gw, req, resp, &c))
        send_command(gw, req, &c);
    es_buf_free(&c.rec);
}
