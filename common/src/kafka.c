/*
 * kafka.c — every librdkafka handle of escqrs is built here; the producer
 * and consumer wrappers.
 *
 * Why wrappers at all: every escqrs client must get the same deliberate
 * defaults and the same log routing, and a program's own settings (static
 * membership, a transactional id, a rebalance callback) must be layered on
 * them the same way everywhere: escqrs' role defaults, the user's `kafka.*`
 * keys, the properties the caller forces, the caller's defaults for what
 * the user left alone (es_kafka_handle_new()).  Everything else is left to
 * librdkafka, whose handle stays reachable.
 *
 * Where the rest lives: the transactional batch in kafka_txn.c, topic
 * settings and the admin client in kafka_admin.c, the readiness watch in
 * kafka_watch.c, reading an assignment to its end in kafka_read.c; all of
 * them get their handles from here.
 */
#include "kafka_int.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const es_conf_def_t es_kafka_conf_defs[] = {
    {.name = "kafka.bootstrap.servers",
     .type = ES_CONF_STRING,
     .defval = "127.0.0.1:9092",
     .min = 1,
     .desc = "Kafka brokers to bootstrap from"},
    {.name = "kafka.enable.idempotence",
     .type = ES_CONF_STRING,
     .defval = "true",
     .desc = "Idempotent producer: no duplicates or reordering on retries",
     .role = ES_CONF_ROLE_PRODUCER},
    {.name = "kafka.acks",
     .type = ES_CONF_STRING,
     .defval = "all",
     .desc = "Wait for all in-sync replicas before a write counts",
     .role = ES_CONF_ROLE_PRODUCER},
    {.name = "kafka.partitioner",
     .type = ES_CONF_ENUM,
     .defval = "murmur2_random",
     .choices = "murmur2_random|murmur2", /* the two agree on every key: Java's murmur2, which
                                           * the projector routes queries by (asof.c); any
                                           * other puts an aggregate where no reader looks */
     .desc = "Java-compatible partitioner, so every client puts a key in the same partition "
             "(librdkafka's others place keys where Java clients and the projector do not)",
     .role = ES_CONF_ROLE_PRODUCER},
    {.name = "kafka.isolation.level",
     .type = ES_CONF_ENUM,
     .defval = "read_committed",
     .choices = "read_committed", /* read_uncommitted: a gateway would answer from open or
                                   * aborted transactions (0914 planted it: 19 of 96 such
                                   * commands answered 200), a projector fold aborted events */
     .desc = "Never read events of aborted or open transactions (the only value: anything "
             "else stops the program at start-up)",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "kafka.enable.auto.commit",
     .type = ES_CONF_STRING,
     .defval = "false",
     .desc = "escqrs commits offsets itself (in transactions or after applying)",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "kafka.auto.offset.reset",
     .type = ES_CONF_STRING,
     .defval = "earliest",
     .desc = "A new reader starts at the beginning of the log",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "aggregate.prefix",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc =
         "Prefix of aggregate names, so topics are <prefix><agg>.commands etc. (tests, tenants)"},
    {.name = "topics.partitions",
     .type = ES_CONF_INT,
     .defval = "3",
     .min = 1,
     .max = 10000,
     .desc = "Partitions of every topic of an aggregate (commands, events, results, DLQ)"},
    {.name = "topics.replication.factor",
     .type = ES_CONF_INT,
     .defval = "1",
     .min = 1,
     .max = 32,
     .desc = "Replicas of every topic (3 in production)"},
    {.name = "topics.min.insync.replicas",
     .type = ES_CONF_INT,
     .defval = "1",
     .min = 1,
     .max = 32,
     .desc = "min.insync.replicas of every topic of an aggregate (2 in production)"},
    {.name = "topics.results.retention.ms",
     .type = ES_CONF_INT,
     .defval = "-1",
     .min = -1,
     .max = 315360000000,
     .desc = "Retention of <agg>.command-results, the source of the command audit "
             "(<agg>_commands): -1 keeps it as long as the events"},
    {.name = NULL},
};

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug */
    es_log_level_t lvl = level <= 3   ? ES_LOG_ERROR
                         : level == 4 ? ES_LOG_WARN
                         : level <= 6 ? ES_LOG_INFO
                                      : ES_LOG_DEBUG;
    es_log(lvl, "rdkafka", "%s: %s", fac, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    es_log_warn("rdkafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

struct build_ctx {
    rd_kafka_conf_t *rkconf;
    char *errstr;
    size_t errstr_size;
    bool failed;
};

static void apply_one(void *opaque, const char *name, const char *value)
{
    struct build_ctx *ctx = opaque;
    char kerr[512];
    if (ctx->failed)
        return;
    if (rd_kafka_conf_set(ctx->rkconf, name, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(ctx->errstr, ctx->errstr_size, "kafka.%s: %s", name, kerr);
        ctx->failed = true;
    }
}

rd_kafka_conf_t *es_kafka_conf_build(const es_conf_t *conf, es_conf_role_t role, char *errstr,
                                     size_t errstr_size)
{
    struct build_ctx ctx = {
        .rkconf = rd_kafka_conf_new(), .errstr = errstr, .errstr_size = errstr_size};
    es_conf_kafka_foreach(conf, role, apply_one, &ctx);
    if (ctx.failed) {
        rd_kafka_conf_destroy(ctx.rkconf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(ctx.rkconf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(ctx.rkconf, kafka_error_cb);
    return ctx.rkconf;
}

es_err_t es_kafka_err(rd_kafka_resp_err_t kerr)
{
    switch (kerr) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return ES_ERR_OK;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
        return ES_ERR_TIMED_OUT;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return ES_ERR_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return ES_ERR_KAFKA_FATAL;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return ES_ERR_NOT_FOUND;
    default:
        return ES_ERR_KAFKA;
    }
}

/* ------------------------------------------------------------------ handles */

static bool set_prop(rd_kafka_conf_t *rkconf, const char *name, const char *value, char *errstr,
                     size_t errstr_size)
{
    return rd_kafka_conf_set(rkconf, name, value, errstr, errstr_size) == RD_KAFKA_CONF_OK;
}

/* The caller's properties: @p props always, @p defaults where the user set nothing. */
static bool apply_props(const es_conf_t *conf, rd_kafka_conf_t *rkconf,
                        const es_kafka_prop_t *props, const es_kafka_prop_t *defaults, char *errstr,
                        size_t errstr_size)
{
    char key[256];
    for (const es_kafka_prop_t *p = props; p && p->name; p++)
        if (!set_prop(rkconf, p->name, p->value, errstr, errstr_size))
            return false;
    for (const es_kafka_prop_t *p = defaults; p && p->name; p++) {
        snprintf(key, sizeof(key), "kafka.%s", p->name);
        if (!es_conf_get(conf, key) && !set_prop(rkconf, p->name, p->value, errstr, errstr_size))
            return false;
    }
    return true;
}

/* {@p name, @p value} followed by @p list (value NULL: @p list alone); free() it. */
static es_kafka_prop_t *props_with(const char *name, const char *value, const es_kafka_prop_t *list)
{
    size_t n = 0, k = 0;
    while (list && list[n].name)
        n++;
    es_kafka_prop_t *out = es_calloc(n + 2, sizeof(*out));
    if (value)
        out[k++] = (es_kafka_prop_t){name, value};
    for (size_t i = 0; i < n; i++)
        out[k++] = list[i];
    return out;
}

rd_kafka_t *es_kafka_handle_new(const es_conf_t *conf, es_conf_role_t role, rd_kafka_type_t type,
                                const es_kafka_handle_opts_t *o, char *errstr, size_t errstr_size)
{
    static const es_kafka_handle_opts_t none = {0};
    rd_kafka_conf_t *rkconf = es_kafka_conf_build(conf, role, errstr, errstr_size);
    rd_kafka_t *rk;

    if (!o)
        o = &none;
    if (!rkconf)
        return NULL;
    if (!apply_props(conf, rkconf, o->props, o->defaults, errstr, errstr_size)) {
        rd_kafka_conf_destroy(rkconf);
        return NULL;
    }
    if (o->quiet) {
        rd_kafka_conf_set_error_cb(rkconf, NULL);
        rd_kafka_conf_set(rkconf, "log_level", "0", NULL, 0);
    }
    if (o->dr_msg_cb)
        rd_kafka_conf_set_dr_msg_cb(rkconf, o->dr_msg_cb);
    if (o->rebalance_cb)
        rd_kafka_conf_set_rebalance_cb(rkconf, o->rebalance_cb);
    rd_kafka_conf_set_opaque(rkconf, o->opaque);
    rk = rd_kafka_new(type, rkconf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(rkconf); /* rd_kafka_new keeps it only on success */
    return rk;
}

/* ---------------------------------------------------------------- producer */

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    es_producer_t *prod = opaque;
    (void)rk;
    if (m->err) {
        int none = 0;
        atomic_compare_exchange_strong(&prod->txn_err, &none, (int)m->err);
        if (atomic_fetch_add(&prod->failed, 1) == 0)
            snprintf(prod->first_failure, sizeof(prod->first_failure), "delivery to %s [%d]: %s",
                     rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
    }
    if (prod->on_delivery)
        prod->on_delivery(prod->opaque, m);
}

es_producer_t *es_producer_new_opts(const es_conf_t *conf, const es_producer_opts_t *opts,
                                    char *errstr, size_t errstr_size)
{
    es_producer_t *prod = es_calloc(1, sizeof(*prod));
    es_kafka_prop_t *props = props_with("transactional.id", opts->transactional_id, opts->props);
    es_kafka_handle_opts_t ho = {
        .props = props,
        .defaults = opts->defaults,
        .dr_msg_cb = producer_dr_cb,
        .opaque = prod,
    };
    prod->rk = es_kafka_handle_new(conf, ES_CONF_ROLE_PRODUCER, RD_KAFKA_PRODUCER, &ho, errstr,
                                   errstr_size);
    free(props);
    if (!prod->rk) {
        free(prod);
        return NULL;
    }
    prod->txn_timeout_ms = opts->txn_timeout_ms > 0 ? opts->txn_timeout_ms : ES_KAFKA_TIMEOUT_MS;
    prod->max_record_bytes = es_kafka_max_record_bytes(prod->rk);
    prod->transactional_id = opts->transactional_id ? es_strdup(opts->transactional_id) : NULL;
    prod->on_delivery = opts->on_delivery;
    prod->opaque = opts->opaque;
    prod->key_partitioner = es_kafka_key_partitioner(prod->rk);
    return prod;
}

es_err_t es_producer_init_transactions(es_producer_t *prod, char *errstr, size_t errstr_size)
{
    rd_kafka_error_t *kerr = rd_kafka_init_transactions(prod->rk, prod->txn_timeout_ms);
    if (!kerr)
        return ES_ERR_OK;
    snprintf(errstr, errstr_size, "init_transactions(%s): %s",
             prod->transactional_id ? prod->transactional_id : "", rd_kafka_error_string(kerr));
    rd_kafka_error_destroy(kerr);
    return ES_ERR_KAFKA;
}

es_producer_t *es_producer_new(const es_conf_t *conf, const char *transactional_id, char *errstr,
                               size_t errstr_size)
{
    es_producer_opts_t opts = {.transactional_id = transactional_id};
    es_producer_t *prod = es_producer_new_opts(conf, &opts, errstr, errstr_size);
    if (prod && transactional_id && es_producer_init_transactions(prod, errstr, errstr_size)) {
        es_producer_destroy_now(prod);
        return NULL;
    }
    return prod;
}

rd_kafka_t *es_producer_rk(es_producer_t *prod)
{
    return prod->rk;
}

static rd_kafka_resp_err_t produce_once(es_producer_t *prod, const es_record_t *r)
{
    /* Two calls: the RD_KAFKA_V_* list has no optional entries. */
    if (r->headers)
        return rd_kafka_producev(
            prod->rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_PARTITION(r->partition),
            RD_KAFKA_V_KEY(r->key, r->keylen), RD_KAFKA_V_VALUE((void *)r->value, r->valuelen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(r->headers),
            RD_KAFKA_V_OPAQUE(r->msg_opaque), RD_KAFKA_V_END);
    return rd_kafka_producev(
        prod->rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_PARTITION(r->partition),
        RD_KAFKA_V_KEY(r->key, r->keylen), RD_KAFKA_V_VALUE((void *)r->value, r->valuelen),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(r->msg_opaque), RD_KAFKA_V_END);
}

es_err_t es_producer_send_record(es_producer_t *prod, const es_record_t *rec, es_send_mode_t mode,
                                 char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t kerr;
    /* The one "local queue full" loop: serve delivery reports to make room. */
    while ((kerr = produce_once(prod, rec)) == RD_KAFKA_RESP_ERR__QUEUE_FULL &&
           mode == ES_SEND_WAIT)
        rd_kafka_poll(prod->rk, ES_KAFKA_QUEUE_FULL_POLL_MS);
    if (kerr) {
        snprintf(errstr, errstr_size, "produce to %s: %s", rec->topic, rd_kafka_err2str(kerr));
        return es_kafka_err(kerr);
    }
    return ES_ERR_OK;
}

es_err_t es_producer_send(es_producer_t *prod, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t valuelen, rd_kafka_headers_t *headers,
                          void *msg_opaque, char *errstr, size_t errstr_size)
{
    es_record_t rec = {
        .topic = topic,
        .partition = RD_KAFKA_PARTITION_UA,
        .key = key,
        .keylen = keylen,
        .value = value,
        .valuelen = valuelen,
        .headers = headers,
        .msg_opaque = msg_opaque,
    };
    return es_producer_send_record(prod, &rec, ES_SEND_WAIT, errstr, errstr_size);
}

void es_producer_poll(es_producer_t *prod, int timeout_ms)
{
    rd_kafka_poll(prod->rk, timeout_ms);
}

es_err_t es_producer_flush(es_producer_t *prod, int timeout_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t kerr = rd_kafka_flush(prod->rk, timeout_ms);
    if (kerr) {
        snprintf(errstr, errstr_size, "flush: %s (%d still queued)", rd_kafka_err2str(kerr),
                 rd_kafka_outq_len(prod->rk));
        return es_kafka_err(kerr);
    }
    unsigned failed = atomic_load(&prod->failed);
    if (failed) {
        snprintf(errstr, errstr_size, "%u record(s) not delivered since start, first: %s", failed,
                 prod->first_failure);
        return ES_ERR_KAFKA;
    }
    return ES_ERR_OK;
}

void es_producer_destroy_now(es_producer_t *prod)
{
    if (!prod)
        return;
    rd_kafka_destroy(prod->rk);
    free(prod->transactional_id);
    free(prod);
}

void es_producer_destroy(es_producer_t *prod)
{
    if (!prod)
        return;
    rd_kafka_flush(prod->rk, ES_KAFKA_CLOSE_FLUSH_MS);
    es_producer_destroy_now(prod);
}

/* ---------------------------------------------------------------- consumer */

/*
 * Let the caller act on a rebalance (e.g. catch up), then apply it the
 * group's way.  librdkafka 2.0.2 refuses an assignment only for a caller's
 * mistake (an invalid start offset, a partition twice, the wrong protocol's
 * call), and takes one after a fatal error as an unassignment, reporting the
 * fatal error through the next poll (where the programs act on it): a
 * refusal is logged as the bug it is.
 */
static void consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    es_consumer_t *cons = opaque;
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    cons->on_rebalance(cons->opaque, assign, parts);
    if (assign && coop)
        e = rd_kafka_incremental_assign(rk, parts);
    else if (assign)
        aerr = rd_kafka_assign(rk, parts);
    else if (coop)
        e = rd_kafka_incremental_unassign(rk, parts);
    else
        aerr = rd_kafka_assign(rk, NULL);
    if (e || aerr)
        es_log_error("kafka", "%s of %d partition(s) refused: %s",
                     assign ? "assignment" : "revocation", parts->cnt,
                     e ? rd_kafka_error_string(e) : rd_kafka_err2str(aerr));
    if (e)
        rd_kafka_error_destroy(e);
}

es_consumer_t *es_consumer_new_opts(const es_conf_t *conf, const es_consumer_opts_t *opts,
                                    char *errstr, size_t errstr_size)
{
    es_consumer_t *cons = es_calloc(1, sizeof(*cons));
    /* librdkafka needs a group.id for a consumer handle even when it only assigns. */
    es_kafka_prop_t *props =
        props_with("group.id", opts->group_id ? opts->group_id : "escqrs-unused", opts->props);
    es_kafka_handle_opts_t ho = {
        .props = props,
        .defaults = opts->defaults,
        .rebalance_cb = opts->on_rebalance ? consumer_rebalance_cb : NULL,
        .opaque = cons,
    };
    cons->on_rebalance = opts->on_rebalance;
    cons->opaque = opts->opaque;
    cons->rk = es_kafka_handle_new(conf, ES_CONF_ROLE_CONSUMER, RD_KAFKA_CONSUMER, &ho, errstr,
                                   errstr_size);
    free(props);
    if (!cons->rk) {
        free(cons);
        return NULL;
    }
    rd_kafka_poll_set_consumer(cons->rk);
    return cons;
}

es_consumer_t *es_consumer_new(const es_conf_t *conf, const char *group_id, char *errstr,
                               size_t errstr_size)
{
    es_consumer_opts_t opts = {.group_id = group_id};
    return es_consumer_new_opts(conf, &opts, errstr, errstr_size);
}

rd_kafka_t *es_consumer_rk(es_consumer_t *cons)
{
    return cons->rk;
}

es_err_t es_consumer_subscribe(es_consumer_t *cons, const char *const *topics, size_t n,
                               char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(tl, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(cons->rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (kerr) {
        snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(kerr));
        return es_kafka_err(kerr);
    }
    return ES_ERR_OK;
}

rd_kafka_message_t *es_consumer_poll(es_consumer_t *cons, int timeout_ms)
{
    return rd_kafka_consumer_poll(cons->rk, timeout_ms);
}

double es_message_age_s(const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(m, &type);
    if (type != RD_KAFKA_TIMESTAMP_CREATE_TIME || ts < 0)
        return -1;
    int64_t age = es_now_ms() - ts;
    return age > 0 ? (double)age / 1000.0 : 0;
}

/* Seek @p tl to the committed offsets it was filled with.  A partition whose look-up
 * failed (an error of its own, the call's clear) has no offset either, and taking that
 * for "nothing committed yet" would seek it to the beginning: nothing is moved then. */
static es_err_t seek_committed(es_consumer_t *cons, rd_kafka_topic_partition_list_t *tl,
                               char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t kerr = rd_kafka_committed(cons->rk, tl, ES_KAFKA_TIMEOUT_MS);
    if (kerr) {
        snprintf(errstr, errstr_size, "committed offsets not known: %s", rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    for (int i = 0; i < tl->cnt; i++)
        if (tl->elems[i].err) {
            snprintf(errstr, errstr_size, "committed offset of %s [%d]: %s", tl->elems[i].topic,
                     (int)tl->elems[i].partition, rd_kafka_err2str(tl->elems[i].err));
            return ES_ERR_KAFKA;
        }
    for (int i = 0; i < tl->cnt; i++)
        if (tl->elems[i].offset < 0)
            tl->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING; /* nothing committed yet */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(cons->rk, tl, ES_KAFKA_TIMEOUT_MS);
    if (e) {
        snprintf(errstr, errstr_size, "seek: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return ES_ERR_KAFKA;
    }
    for (int i = 0; i < tl->cnt; i++)
        if (tl->elems[i].err) {
            snprintf(errstr, errstr_size, "seek %s [%d]: %s", tl->elems[i].topic,
                     (int)tl->elems[i].partition, rd_kafka_err2str(tl->elems[i].err));
            return ES_ERR_KAFKA;
        }
    return ES_ERR_OK;
}

es_err_t es_consumer_rewind(es_consumer_t *cons, const rd_kafka_topic_partition_list_t *parts,
                            char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *tl = NULL;
    es_err_t err = ES_ERR_OK;
    if (parts) {
        tl = rd_kafka_topic_partition_list_copy(parts);
    } else {
        rd_kafka_resp_err_t kerr = rd_kafka_assignment(cons->rk, &tl);
        if (kerr || !tl) {
            snprintf(errstr, errstr_size, "assignment unknown: %s", rd_kafka_err2str(kerr));
            if (tl)
                rd_kafka_topic_partition_list_destroy(tl);
            return ES_ERR_KAFKA;
        }
    }
    if (tl->cnt)
        err = seek_committed(cons, tl, errstr, errstr_size);
    rd_kafka_topic_partition_list_destroy(tl);
    return err;
}

void es_consumer_destroy_now(es_consumer_t *cons)
{
    if (!cons)
        return;
    rd_kafka_destroy_flags(cons->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free(cons);
}

void es_consumer_destroy(es_consumer_t *cons)
{
    if (!cons)
        return;
    rd_kafka_consumer_close(cons->rk);
    rd_kafka_destroy(cons->rk);
    free(cons);
}
