/*
 * service.c — the exactly-once command loop of escqrs-command-service.
 *
 * The service is a consumer group on <agg>.commands; the owner of partition
 * p is the single writer of every aggregate in p, so deciding on the state
 * in the local RocksDB store is enough to keep invariants under any
 * concurrency.  One batch of commands is one Kafka transaction:
 *
 *   begin → for each command: load state, check idempotency and If-Match,
 *   decide, produce its events (to the command's own partition number) →
 *   flush, so delivery reports give every event's offset → produce each
 *   outcome with the position of its last event → send the consumed offsets
 *   with the group metadata (KIP-447: a zombie owner is fenced by the group
 *   generation) → commit → write new states, outcomes and the events-topic
 *   offsets they reflect in one RocksDB batch.
 *
 * Batch state lives in an overlay (two small hash maps) until the commit
 * succeeds, so an aborted batch leaves the store untouched; the consumer is
 * then rewound to the committed offsets and the batch is decided again.
 * A commit whose answer did not arrive is retried, never aborted
 * (KAFKA-17754).  Fenced or fatal → exit non-zero and let the orchestrator
 * restart us.
 *
 * The store is a cache of the log: on every assignment the service reads
 * <agg>.events (read_committed) from the stored offset to the end before it
 * decides anything, rebuilding states and the accepted outcomes of the
 * commands whose events it finds.  So a crash between commit and store
 * write, or a lost store, is only slower, never wrong, and a client retry
 * of such a command still gets its first outcome and writes nothing.
 *
 * Store layout: "s" + id → 8-byte big-endian version + state_encode();
 * "i" + id + 0x00 + command id → 8-byte fingerprint + framed CommandResult
 * (fingerprint 0 when rebuilt from events: the body is not in the log).
 */
#include "service.h"

#include "escqrs/command.h"
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/log.h"
#include "escqrs/record.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 4096

#define ES_CS_KAFKA_TIMEOUT_MS 30000 /* one Kafka request or transactional step */
#define ES_CS_BACKOFF_MIN_MS   500   /* first wait before connecting again */
#define ES_CS_BACKOFF_MAX_MS   30000 /* longest wait between attempts */

typedef struct agg_ent_s {
    struct agg_ent_s *next;
    char id[ES_ID_MAX + 1];
    int64_t version;
    bool dirty;
    void *state;
} agg_ent_t;

typedef struct idem_ent_s {
    struct idem_ent_s *next;
    char key[2 * ES_ID_MAX + 3]; /* "i" id 0x00 cmdid */
    size_t keylen;
    uint64_t fp;
    bool dirty;
    es_outcome_t o;
} idem_ent_t;

typedef struct evpos_s {
    int32_t partition;
    int64_t offset;
    rd_kafka_resp_err_t err;
} evpos_t;

typedef struct pend_s {
    es_outcome_t o;
    int last_ev;          /* index in evpos, -1 when none */
    idem_ent_t *remember; /* entry to complete with the position */
    idem_ent_t *replay;   /* answer with this entry's outcome */
} pend_t;

struct cs_s {
    const es_conf_t *conf;
    const es_aggregate_def_t *def;
    es_metrics_t *metrics;
    char agg[256], t_cmd[256], t_ev[256], t_res[256], group[300], txid[400];
    int batch_max, linger_ms;

    es_registry_t *reg;
    es_serde_t *cmd_serde, *ev_serde, *res_serde;
    avro_value_t ev_value, res_value;
    es_emitter_t *em;
    es_store_t *store;
    rd_kafka_t *cons, *prod, *catchup;

    agg_ent_t *aggs[NBUCKETS];
    idem_ent_t *idems[NBUCKETS];
    pend_t *pends;
    evpos_t *evs;
    size_t npend, nev;
    rd_kafka_resp_err_t deliv_err; /* first delivery error of the transaction */

    atomic_bool ready;
    atomic_int generation; /* bumped on every rebalance */
    bool fatal;            /* re-create the Kafka clients (see recover()) */
    bool have_values, topics_checked;
    char fatal_reason[1200];
    volatile sig_atomic_t *stop;
    es_kafka_watch_t *watch; /* is a broker answering? (readiness) */
    pthread_mutex_t why_mu;  /* guards not_ready */
    char not_ready[1300];    /* why not ready, for /readyz */

    es_counter_t *c_accepted, *c_replayed, *c_conflict, *c_reused, *c_undecodable, *c_aborts,
        *c_recoveries;
    es_histogram_t *h_commit, *h_batch;
    es_gauge_t *g_caught_up;
};

static void set_not_ready(cs_t *cs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ overlay */

static uint32_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h % NBUCKETS;
}

static void overlay_clear(cs_t *cs)
{
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (agg_ent_t *a = cs->aggs[b], *n; a; a = n) {
            n = a->next;
            free(a->state);
            free(a);
        }
        for (idem_ent_t *e = cs->idems[b], *n; e; e = n) {
            n = e->next;
            free(e);
        }
        cs->aggs[b] = NULL;
        cs->idems[b] = NULL;
    }
}

static es_err_t agg_load(cs_t *cs, const char *id, agg_ent_t **out, char *errstr,
                         size_t errstr_size)
{
    uint32_t b = hash_bytes(id, strlen(id));
    es_buf_t key = {0}, val = {0};
    es_err_t err;
    for (agg_ent_t *a = cs->aggs[b]; a; a = a->next)
        if (!strcmp(a->id, id)) {
            *out = a;
            return ES_ERR_OK;
        }
    agg_ent_t *a = es_calloc(1, sizeof(*a));
    a->state = es_calloc(1, cs->def->state_size);
    snprintf(a->id, sizeof(a->id), "%s", id);
    es_buf_append(&key, "s", 1);
    es_buf_append(&key, id, strlen(id));
    err = es_store_get(cs->store, key.data, key.len, &val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        const unsigned char *p = (const unsigned char *)val.data;
        if (val.len < 8 || cs->def->state_decode(a->state, val.data + 8, val.len - 8)) {
            snprintf(errstr, errstr_size, "aggregate %s: stored state does not decode", id);
            err = ES_ERR_DECODE;
            goto fail;
        }
        for (int i = 0; i < 8; i++)
            a->version = (a->version << 8) | p[i];
    } else if (err != ES_ERR_NOT_FOUND) {
        goto fail;
    }
    es_buf_free(&key);
    es_buf_free(&val);
    a->next = cs->aggs[b];
    cs->aggs[b] = a;
    *out = a;
    return ES_ERR_OK;
fail:
    es_buf_free(&key);
    es_buf_free(&val);
    free(a->state);
    free(a);
    return err;
}

static size_t idem_key(char *out, const char *agg_id, const char *cmd_id)
{
    size_t a = strlen(agg_id), c = strlen(cmd_id);
    out[0] = 'i';
    memcpy(out + 1, agg_id, a);
    out[1 + a] = '\0';
    memcpy(out + 2 + a, cmd_id, c);
    return 2 + a + c;
}

/* The remembered outcome of (agg_id, cmd_id): *out NULL when there is none. */
static es_err_t idem_load(cs_t *cs, const char *agg_id, const char *cmd_id, idem_ent_t **out,
                          char *errstr, size_t errstr_size)
{
    char key[2 * ES_ID_MAX + 3];
    size_t keylen = idem_key(key, agg_id, cmd_id);
    uint32_t b = hash_bytes(key, keylen);
    es_buf_t val = {0};
    avro_value_t *v;
    *out = NULL;
    for (idem_ent_t *e = cs->idems[b]; e; e = e->next)
        if (e->keylen == keylen && !memcmp(e->key, key, keylen)) {
            *out = e;
            return ES_ERR_OK;
        }
    es_err_t err = es_store_get(cs->store, key, keylen, &val, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        return ES_ERR_OK;
    if (err)
        return err;
    idem_ent_t *e = es_calloc(1, sizeof(*e));
    memcpy(e->key, key, keylen);
    e->keylen = keylen;
    const unsigned char *p = (const unsigned char *)val.data;
    if (val.len < 8 ||
        (err =
             es_serde_decode(cs->res_serde, val.data + 8, val.len - 8, &v, errstr, errstr_size)) ||
        (err = es_outcome_from_value(v, &e->o, errstr, errstr_size))) {
        es_buf_free(&val);
        free(e);
        return err ? err : ES_ERR_DECODE;
    }
    for (int i = 0; i < 8; i++)
        e->fp = (e->fp << 8) | p[i];
    es_buf_free(&val);
    e->next = cs->idems[b];
    cs->idems[b] = e;
    *out = e;
    return ES_ERR_OK;
}

static idem_ent_t *idem_insert(cs_t *cs, const char *agg_id, const char *cmd_id, uint64_t fp)
{
    idem_ent_t *e = es_calloc(1, sizeof(*e));
    e->keylen = idem_key(e->key, agg_id, cmd_id);
    e->fp = fp;
    e->dirty = true;
    uint32_t b = hash_bytes(e->key, e->keylen);
    e->next = cs->idems[b];
    cs->idems[b] = e;
    return e;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

/* Write every dirty entry of the overlay plus the next events-topic offsets of
 * partitions @p parts in one atomic batch. */
static es_err_t overlay_write(cs_t *cs, const int32_t *parts, const int64_t *next_offsets,
                              size_t nparts, char *errstr, size_t errstr_size)
{
    es_batch_t *batch = es_batch_new();
    es_buf_t key = {0}, val = {0};
    es_err_t err = ES_ERR_OK;
    unsigned char be[8];
    for (size_t b = 0; b < NBUCKETS && !err; b++) {
        for (agg_ent_t *a = cs->aggs[b]; a; a = a->next) {
            if (!a->dirty)
                continue;
            es_buf_clear(&key);
            es_buf_append(&key, "s", 1);
            es_buf_append(&key, a->id, strlen(a->id));
            cs->def->state_encode(a->state, &val);
            es_buf_t rec = {0};
            put_be64(be, (uint64_t)a->version);
            es_buf_append(&rec, be, 8);
            es_buf_append(&rec, val.data, val.len);
            es_batch_put(batch, key.data, key.len, rec.data, rec.len);
            es_buf_free(&rec);
            a->dirty = false;
        }
        for (idem_ent_t *e = cs->idems[b]; e && !err; e = e->next) {
            if (!e->dirty)
                continue;
            if ((err = es_outcome_to_value(&e->o, &cs->res_value, errstr, errstr_size)) ||
                (err = es_serde_encode(cs->res_serde, &cs->res_value, &val, errstr, errstr_size)))
                break;
            es_buf_t rec = {0};
            put_be64(be, e->fp);
            es_buf_append(&rec, be, 8);
            es_buf_append(&rec, val.data, val.len);
            es_batch_put(batch, e->key, e->keylen, rec.data, rec.len);
            es_buf_free(&rec);
            e->dirty = false;
        }
    }
    for (size_t i = 0; i < nparts && !err; i++)
        es_batch_put_offset(batch, cs->t_ev, parts[i], next_offsets[i]);
    if (!err)
        err = es_store_write(cs->store, batch, errstr, errstr_size);
    es_batch_destroy(batch);
    es_buf_free(&key);
    es_buf_free(&val);
    return err;
}

/* --------------------------------------------------------------- catch-up */

static int64_t now_ms(void)
{
    return es_now_ms();
}

/* Apply one committed event of partition @p p to the overlay. */
static es_err_t catchup_apply(cs_t *cs, rd_kafka_message_t *m, char *errstr, size_t errstr_size)
{
    avro_value_t *v, pl;
    const char *agg_id, *cmd_id, *type;
    int64_t version = 0, occurred = 0;
    agg_ent_t *a;
    idem_ent_t *e;
    es_err_t err;
    if ((err = es_serde_decode(cs->ev_serde, m->payload, m->len, &v, errstr, errstr_size)) ||
        (err = es_record_string(v, cs->def->id_field, &agg_id, NULL, errstr, errstr_size)) ||
        (err = es_record_string(v, "command_id", &cmd_id, NULL, errstr, errstr_size)) ||
        (err = es_record_long(v, "version", &version, errstr, errstr_size)) ||
        (err = es_record_long(v, "occurred_at", &occurred, errstr, errstr_size)) ||
        (err = es_record_payload(v, &pl, &type, errstr, errstr_size)))
        return err;
    if (!es_command_id_valid(agg_id) || !es_command_id_valid(cmd_id)) {
        snprintf(errstr, errstr_size, "event at %d:%" PRId64 " has an invalid id", m->partition,
                 m->offset);
        return ES_ERR_DECODE;
    }
    if ((err = agg_load(cs, agg_id, &a, errstr, errstr_size)))
        return err;
    if (version <= a->version)
        return ES_ERR_OK; /* already in the stored state */
    if (version != a->version + 1)
        es_log_warn("command-service", "aggregate %s: event version %" PRId64 " after %" PRId64,
                    agg_id, version, a->version);
    if ((err = cs->def->evolve(a->state, type, &pl, errstr, errstr_size)))
        return err;
    a->version = version;
    a->dirty = true;

    if ((err = idem_load(cs, agg_id, cmd_id, &e, errstr, errstr_size)))
        return err;
    if (!e) {
        e = idem_insert(cs, agg_id, cmd_id, 0);
        snprintf(e->o.command_id, sizeof(e->o.command_id), "%s", cmd_id);
        snprintf(e->o.aggregate_id, sizeof(e->o.aggregate_id), "%s", agg_id);
        e->o.status = ES_OUTCOME_ACCEPTED;
        e->o.actual_version = version - 1;
    } else if (e->o.status != ES_OUTCOME_ACCEPTED || e->o.version >= version ||
               e->o.nevents == ES_AGG_MAX_EVENTS) {
        return ES_ERR_OK; /* its outcome already covers this event */
    }
    e->dirty = true;
    snprintf(e->o.events[e->o.nevents].type, sizeof(e->o.events[0].type), "%s", type);
    e->o.events[e->o.nevents++].version = version;
    e->o.version = version;
    snprintf(e->o.position, sizeof(e->o.position), "%d:%" PRId64, (int)m->partition, m->offset);
    e->o.processed_at = occurred;
    es_principal_get(v, e->o.principal, sizeof(e->o.principal), e->o.principal_client,
                     sizeof(e->o.principal_client));
    return ES_ERR_OK;
}

/* Bring the store up to the end of <agg>.events partition @p p. */
static es_err_t catch_up(cs_t *cs, int32_t p, char *errstr, size_t errstr_size)
{
    int64_t start = RD_KAFKA_OFFSET_BEGINNING, next = -1;
    int64_t t0 = now_ms();
    size_t applied = 0, since_write = 0;
    es_err_t err = es_store_get_offset(cs->store, cs->t_ev, p, &start, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        start = RD_KAFKA_OFFSET_BEGINNING;
    else if (err)
        return err;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, cs->t_ev, p)->offset = start;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(cs->catchup, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (kerr) {
        snprintf(errstr, errstr_size, "catch-up assign %s [%d]: %s", cs->t_ev, p,
                 rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    overlay_clear(cs);
    err = ES_ERR_OK;
    for (;;) {
        if (*cs->stop) {
            snprintf(errstr, errstr_size, "stopped during catch-up");
            err = ES_ERR_STATE;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cs->catchup, 500);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        if (m->err) {
            es_log_warn("command-service", "catch-up %s [%d]: %s", cs->t_ev, p,
                        rd_kafka_message_errstr(m));
            bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
            rd_kafka_message_destroy(m);
            if (fatal) {
                snprintf(errstr, errstr_size, "catch-up consumer failed");
                err = ES_ERR_KAFKA_FATAL;
                break;
            }
            continue;
        }
        err = catchup_apply(cs, m, errstr, errstr_size);
        next = m->offset + 1;
        rd_kafka_message_destroy(m);
        if (err)
            break;
        applied++;
        if (++since_write >= 2000) { /* bounded memory: write as we go */
            if ((err = overlay_write(cs, &p, &next, 1, errstr, errstr_size)))
                break;
            overlay_clear(cs);
            since_write = 0;
        }
    }
    if (!err && next >= 0)
        err = overlay_write(cs, &p, &next, 1, errstr, errstr_size);
    overlay_clear(cs);
    rd_kafka_assign(cs->catchup, NULL);
    if (!err)
        es_log_info("command-service", "caught up %s [%d]: %zu event(s) from %s in %" PRId64 " ms",
                    cs->t_ev, p, applied, start < 0 ? "the beginning" : "the stored offset",
                    now_ms() - t0);
    return err;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    cs_t *cs = opaque;
    char errstr[512];
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    atomic_fetch_add(&cs->generation, 1);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        set_not_ready(cs, "catching up %d partition(s) of %s", parts->cnt, cs->t_ev);
        for (int i = 0; i < parts->cnt && !cs->fatal; i++) {
            if (catch_up(cs, parts->elems[i].partition, errstr, sizeof(errstr)) && !*cs->stop) {
                cs->fatal = true;
                snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "catch-up: %s", errstr);
            }
        }
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, parts);
        }
        es_log_info("command-service", "assigned %d partition(s) of %s", parts->cnt, cs->t_cmd);
        if (!cs->fatal) {
            atomic_store(&cs->ready, true);
            es_gauge_set(cs->g_caught_up, 1);
        }
    } else {
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        es_log_info("command-service", "revoked %d partition(s) of %s", parts->cnt, cs->t_cmd);
    }
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    cs_t *cs = opaque;
    evpos_t *ev = m->_private;
    if (m->err && !cs->deliv_err)
        cs->deliv_err = m->err;
    if (ev) {
        ev->err = m->err;
        ev->partition = m->partition;
        ev->offset = m->offset;
    }
}

/* --------------------------------------------------------------- the batch */

static const char *opt_string(avro_value_t *rec, const char *name)
{
    avro_value_t f, br;
    const char *s = NULL;
    size_t len;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_UNION ||
        avro_value_get_current_branch(&f, &br) || avro_value_get_type(&br) != AVRO_STRING ||
        avro_value_get_string(&br, &s, &len))
        return NULL;
    return s;
}

static bool opt_long(avro_value_t *rec, const char *name, int64_t *v)
{
    avro_value_t f, br;
    return !avro_value_get_by_name(rec, name, &f, NULL) && avro_value_get_type(&f) == AVRO_UNION &&
           !avro_value_get_current_branch(&f, &br) && avro_value_get_type(&br) == AVRO_INT64 &&
           !avro_value_get_long(&br, v);
}

/* Build, encode and produce event @p i of the emitter for the command. */
static es_err_t produce_event(cs_t *cs, const char *agg_id, const char *cmd_id,
                              const char *correlation, const es_outcome_t *o, int64_t version,
                              const char *type, avro_value_t *payload, int32_t partition,
                              char *errstr, size_t errstr_size)
{
    avro_value_t *env = &cs->ev_value, f, br, pu;
    char event_id[ES_UUID_STR_LEN];
    es_buf_t buf = {0};
    es_err_t err = ES_ERR_ENCODE;
    es_uuid_v4(event_id);
    avro_value_reset(env);
    if (avro_value_get_by_name(env, "event_id", &f, NULL) || avro_value_set_string(&f, event_id) ||
        avro_value_get_by_name(env, cs->def->id_field, &f, NULL) ||
        avro_value_set_string(&f, agg_id) || avro_value_get_by_name(env, "version", &f, NULL) ||
        avro_value_set_long(&f, version) || avro_value_get_by_name(env, "occurred_at", &f, NULL) ||
        avro_value_set_long(&f, now_ms()) || avro_value_get_by_name(env, "command_id", &f, NULL) ||
        avro_value_set_string(&f, cmd_id) ||
        avro_value_get_by_name(env, "correlation_id", &f, NULL))
        goto avro_fail;
    if (correlation ? avro_value_set_branch(&f, 1, &br) || avro_value_set_string(&br, correlation)
                    : avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br))
        goto avro_fail;
    if (es_principal_set(env, o->principal, o->principal_client)) /* who sent its command */
        goto avro_fail;
    if (avro_value_get_by_name(env, "payload", &pu, NULL))
        goto avro_fail;
    avro_schema_t us = avro_value_get_schema(&pu);
    size_t b, nb = avro_schema_union_size(us);
    for (b = 0; b < nb; b++)
        if (!strcmp(avro_schema_name(avro_schema_union_branch(us, (int)b)), type))
            break;
    if (b == nb || avro_value_set_branch(&pu, (int)b, &br) || avro_value_copy(&br, payload))
        goto avro_fail;
    if ((err = es_serde_encode(cs->ev_serde, env, &buf, errstr, errstr_size)))
        goto out;
    evpos_t *pos = &cs->evs[cs->nev++];
    pos->partition = -1;
    pos->offset = -1;
    pos->err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_headers_t *h = es_event_headers(type, event_id, cmd_id, version);
    rd_kafka_resp_err_t kerr;
    for (;;) {
        kerr = rd_kafka_producev(
            cs->prod, RD_KAFKA_V_TOPIC(cs->t_ev), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(agg_id, strlen(agg_id)), RD_KAFKA_V_VALUE(buf.data, buf.len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(pos),
            RD_KAFKA_V_END);
        if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(cs->prod, 50);
    }
    if (kerr) {
        rd_kafka_headers_destroy(h);
        snprintf(errstr, errstr_size, "produce to %s: %s", cs->t_ev, rd_kafka_err2str(kerr));
        err = es_kafka_err(kerr);
        goto out;
    }
    err = ES_ERR_OK;
    goto out;
avro_fail:
    snprintf(errstr, errstr_size, "event envelope: %s", avro_strerror());
    err = ES_ERR_ENCODE;
out:
    es_buf_free(&buf);
    return err;
}

/* Decide one command; queue its outcome in cs->pends. */
static es_err_t handle_command(cs_t *cs, rd_kafka_message_t *m, char *errstr, size_t errstr_size)
{
    avro_value_t *v, pl;
    const char *cmd_id, *agg_id, *type;
    char why[256];
    agg_ent_t *a;
    idem_ent_t *e;
    es_err_t err;

    es_err_t derr = es_serde_decode(cs->cmd_serde, m->payload, m->len, &v, why, sizeof(why));
    if (derr == ES_ERR_REGISTRY_UNAVAILABLE || derr == ES_ERR_REGISTRY) {
        /* Not the command's fault: its writer schema cannot be fetched now.  Deciding
         * nothing of this batch and trying again later loses nothing. */
        snprintf(errstr, errstr_size, "command at %s [%d] @%" PRId64 ": %s", cs->t_cmd,
                 m->partition, m->offset, why);
        return derr;
    }
    if (derr || es_record_string(v, "command_id", &cmd_id, NULL, why, sizeof(why)) ||
        es_record_string(v, cs->def->id_field, &agg_id, NULL, why, sizeof(why)) ||
        es_record_payload(v, &pl, &type, why, sizeof(why)) || !es_command_id_valid(cmd_id) ||
        !es_command_id_valid(agg_id)) {
        /* No id to answer to: count it, keep it in the audit log, go on. */
        es_log_warn("command-service", "undecodable command at %s [%d] @%" PRId64 ": %s", cs->t_cmd,
                    m->partition, m->offset, why);
        es_counter_add(cs->c_undecodable, 1);
        return ES_ERR_OK;
    }
    pend_t *pd = &cs->pends[cs->npend++];
    memset(pd, 0, sizeof(*pd));
    pd->last_ev = -1;
    es_outcome_t *o = &pd->o;
    snprintf(o->command_id, sizeof(o->command_id), "%s", cmd_id);
    snprintf(o->aggregate_id, sizeof(o->aggregate_id), "%s", agg_id);
    o->has_expected = opt_long(v, "expected_version", &o->expected_version);
    o->processed_at = now_ms();
    es_principal_get(v, o->principal, sizeof(o->principal), o->principal_client,
                     sizeof(o->principal_client));
    uint64_t fp = es_command_fingerprint(v);

    if ((err = agg_load(cs, agg_id, &a, errstr, errstr_size)) ||
        (err = idem_load(cs, agg_id, cmd_id, &e, errstr, errstr_size)))
        return err;
    o->actual_version = o->version = a->version;
    switch (es_command_precheck(e != NULL, e ? e->fp : 0, fp, o->has_expected, o->expected_version,
                                a->version)) {
    case ES_PRECHECK_REPLAY:
        pd->replay = e; /* the first outcome, nothing new written */
        es_counter_add(cs->c_replayed, 1);
        return ES_ERR_OK;
    case ES_PRECHECK_REUSED:
        o->status = ES_OUTCOME_IDEMPOTENCY_KEY_REUSED; /* not remembered */
        es_counter_add(cs->c_reused, 1);
        return ES_ERR_OK;
    case ES_PRECHECK_CONFLICT:
        o->status = ES_OUTCOME_VERSION_CONFLICT;
        es_counter_add(cs->c_conflict, 1);
        break;
    case ES_PRECHECK_DECIDE: {
        es_emitter_reset(cs->em);
        const char *reason = cs->def->decide(a->state, type, &pl, cs->em);
        if (reason) {
            o->status = ES_OUTCOME_REJECTED;
            snprintf(o->reason, sizeof(o->reason), "%s", reason);
            char labels[128];
            snprintf(labels, sizeof(labels), "reason=\"%s\"", o->reason);
            es_counter_add(es_metrics_counter(cs->metrics, "escqrs_commands_rejected_total",
                                              "Commands rejected by the aggregate, by reason",
                                              labels),
                           1);
        } else {
            const char *correlation = opt_string(v, "correlation_id");
            for (size_t i = 0; i < es_emitter_count(cs->em); i++) {
                const char *etype;
                avro_value_t *ev = es_emitter_event(cs->em, i, &etype);
                int64_t ver = a->version + 1;
                if ((err = produce_event(cs, agg_id, cmd_id, correlation, o, ver, etype, ev,
                                         m->partition, errstr, errstr_size)))
                    return err;
                if ((err = cs->def->evolve(a->state, etype, ev, errstr, errstr_size)))
                    return err; /* a domain bug: its own event does not apply */
                a->version = ver;
                a->dirty = true;
                snprintf(o->events[o->nevents].type, sizeof(o->events[0].type), "%s", etype);
                o->events[o->nevents++].version = ver;
                pd->last_ev = (int)cs->nev - 1;
            }
            o->status = ES_OUTCOME_ACCEPTED;
            o->version = a->version;
            es_counter_add(cs->c_accepted, 1);
        }
        break;
    }
    }
    e = idem_insert(cs, agg_id, cmd_id, fp);
    pd->remember = e;
    return ES_ERR_OK;
}

static es_err_t produce_outcome(cs_t *cs, const es_outcome_t *o, char *errstr, size_t errstr_size)
{
    es_buf_t buf = {0};
    es_err_t err;
    if ((err = es_outcome_to_value(o, &cs->res_value, errstr, errstr_size)) ||
        (err = es_serde_encode(cs->res_serde, &cs->res_value, &buf, errstr, errstr_size)))
        goto out;
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "command-id", -1, o->command_id, -1);
    rd_kafka_resp_err_t kerr;
    for (;;) {
        kerr = rd_kafka_producev(cs->prod, RD_KAFKA_V_TOPIC(cs->t_res),
                                 RD_KAFKA_V_KEY(o->aggregate_id, strlen(o->aggregate_id)),
                                 RD_KAFKA_V_VALUE(buf.data, buf.len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_END);
        if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(cs->prod, 50);
    }
    if (kerr) {
        rd_kafka_headers_destroy(h);
        snprintf(errstr, errstr_size, "produce to %s: %s", cs->t_res, rd_kafka_err2str(kerr));
        err = es_kafka_err(kerr);
    }
out:
    es_buf_free(&buf);
    return err;
}

typedef enum { TXN_OK, TXN_ABORT, TXN_FATAL } txn_rc_t;

/* Classify a transactional API error; destroys it. */
static txn_rc_t txn_error(cs_t *cs, const char *what, rd_kafka_error_t *e)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    txn_rc_t rc = rd_kafka_error_is_fatal(e) || code == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                      ? TXN_FATAL /* fenced: another instance owns our identity */
                  : rd_kafka_error_txn_requires_abort(e) ? TXN_ABORT
                                                         : TXN_FATAL;
    snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "%s: %s", what, rd_kafka_error_string(e));
    es_log(rc == TXN_FATAL ? ES_LOG_ERROR : ES_LOG_WARN, "command-service", "%s", cs->fatal_reason);
    rd_kafka_error_destroy(e);
    return rc;
}

/*
 * Seek the partitions of @p parts back to the group's committed offsets, so
 * the commands at and after them are polled, and decided, again.  Without it
 * the consumer's position stays past commands nobody decided, and the next
 * commit moves the group past them for good.  false when the committed
 * offsets or the seek failed: the caller must then re-create the consumer
 * (a new one starts from the committed offsets by construction).
 */
static bool rewind_to_committed(cs_t *cs, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t kerr = rd_kafka_committed(cs->cons, tl, ES_CS_KAFKA_TIMEOUT_MS);
    bool ok = kerr == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (ok) {
        for (int i = 0; i < tl->cnt; i++)
            if (tl->elems[i].offset < 0)
                tl->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING; /* nothing committed yet */
        rd_kafka_error_t *e = rd_kafka_seek_partitions(cs->cons, tl, ES_CS_KAFKA_TIMEOUT_MS);
        if (e) {
            es_log_warn("command-service", "rewind: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            ok = false;
        }
        for (int i = 0; i < tl->cnt && ok; i++)
            if (tl->elems[i].err) {
                es_log_warn("command-service", "rewind %s [%d]: %s", tl->elems[i].topic,
                            tl->elems[i].partition, rd_kafka_err2str(tl->elems[i].err));
                ok = false;
            }
    } else {
        es_log_warn("command-service", "rewind: committed offsets not known: %s",
                    rd_kafka_err2str(kerr));
    }
    rd_kafka_topic_partition_list_destroy(tl);
    return ok;
}

static txn_rc_t process_batch(cs_t *cs, rd_kafka_message_t **msgs, size_t n)
{
    char errstr[1024];
    rd_kafka_error_t *e;
    txn_rc_t rc = TXN_OK;
    int64_t *next_ev = NULL;
    int32_t *ev_parts = NULL;
    size_t nevparts = 0;
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new((int)n);

    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
            offsets, rd_kafka_topic_name(msgs[i]->rkt), msgs[i]->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(offsets, rd_kafka_topic_name(msgs[i]->rkt),
                                                   msgs[i]->partition);
        tp->offset = msgs[i]->offset + 1;
    }
    cs->npend = cs->nev = 0;
    cs->deliv_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if ((e = rd_kafka_begin_transaction(cs->prod))) {
        rc = txn_error(cs, "begin_transaction", e);
        rc = TXN_FATAL; /* nothing was produced; but a producer that cannot begin is broken */
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (handle_command(cs, msgs[i], errstr, sizeof(errstr))) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "command: %s", errstr);
            es_log_error("command-service", "%s", cs->fatal_reason);
            rc = TXN_FATAL; /* store or domain failure: never answer from a broken state */
            goto out;
        }
    }
    /* Events first: their offsets become the outcomes' positions. */
    if (cs->nev) {
        rd_kafka_resp_err_t kerr = rd_kafka_flush(cs->prod, ES_CS_KAFKA_TIMEOUT_MS);
        if (kerr || cs->deliv_err) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "event delivery: %s",
                     rd_kafka_err2str(kerr ? kerr : cs->deliv_err));
            es_log_warn("command-service", "%s", cs->fatal_reason);
            rc = rd_kafka_fatal_error(cs->prod, NULL, 0) ? TXN_FATAL : TXN_ABORT;
            goto done;
        }
    }
    /* The next events-topic offset of every partition this batch wrote to. */
    next_ev = es_calloc(cs->nev + 1, sizeof(*next_ev));
    ev_parts = es_calloc(cs->nev + 1, sizeof(*ev_parts));
    for (size_t i = 0; i < cs->nev; i++) {
        size_t k;
        for (k = 0; k < nevparts && ev_parts[k] != cs->evs[i].partition; k++)
            ;
        if (k == nevparts) {
            ev_parts[nevparts++] = cs->evs[i].partition;
            next_ev[k] = -1;
        }
        if (cs->evs[i].offset + 1 > next_ev[k])
            next_ev[k] = cs->evs[i].offset + 1;
    }
    for (size_t i = 0; i < cs->npend; i++) {
        pend_t *pd = &cs->pends[i];
        if (pd->last_ev >= 0)
            snprintf(pd->o.position, sizeof(pd->o.position), "%d:%" PRId64,
                     (int)cs->evs[pd->last_ev].partition, cs->evs[pd->last_ev].offset);
        if (pd->remember)
            pd->remember->o = pd->o;
        const es_outcome_t *o = pd->replay ? &pd->replay->o : &pd->o;
        if (produce_outcome(cs, o, errstr, sizeof(errstr))) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "outcome: %s", errstr);
            rc = TXN_ABORT;
            goto done;
        }
    }
    /* The group metadata of now: its generation and member id are what fence a zombie. */
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(cs->cons);
    e = rd_kafka_send_offsets_to_transaction(cs->prod, offsets, cgmd, ES_CS_KAFKA_TIMEOUT_MS);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    if (e) {
        rc = txn_error(cs, "send_offsets_to_transaction", e);
        goto done;
    }
    int64_t t0 = now_ms();
    for (int attempt = 1;; attempt++) {
        e = rd_kafka_commit_transaction(cs->prod, ES_CS_KAFKA_TIMEOUT_MS);
        if (!e)
            break;
        if (rd_kafka_error_is_retriable(e)) {
            /* The answer did not arrive: retry the commit, never abort (KAFKA-17754). */
            es_log_warn("command-service", "commit_transaction (attempt %d): %s; retrying", attempt,
                        rd_kafka_error_string(e));
            set_not_ready(cs, "commit of a transaction of %zu command(s) not answered: %s", n,
                          rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            if (*cs->stop) {
                /* Stopping: leave the outcome to the next epoch (its init aborts it). */
                snprintf(cs->fatal_reason, sizeof(cs->fatal_reason),
                         "stopped while a commit was unanswered");
                rc = TXN_FATAL;
                goto out;
            }
            continue;
        }
        rc = txn_error(cs, "commit_transaction", e);
        goto done;
    }
    if (!atomic_load(&cs->ready)) {
        atomic_store(&cs->ready, true);
        es_gauge_set(cs->g_caught_up, 1);
    }
    es_histogram_observe(cs->h_commit, (double)(now_ms() - t0) / 1000.0);
    es_histogram_observe(cs->h_batch, (double)n);
    /* Committed: the store follows (a crash before this only costs a catch-up). */
    if (overlay_write(cs, ev_parts, next_ev, nevparts, errstr, sizeof(errstr))) {
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "store: %s", errstr);
        es_log_error("command-service", "%s", cs->fatal_reason);
        rc = TXN_FATAL;
    }
    goto out;
done:
    if (rc == TXN_ABORT) {
        es_counter_add(cs->c_aborts, 1);
        if ((e = rd_kafka_abort_transaction(cs->prod, ES_CS_KAFKA_TIMEOUT_MS))) {
            rc = txn_error(cs, "abort_transaction", e);
            rc = TXN_FATAL;
        } else if (!rewind_to_committed(cs, offsets)) {
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason),
                     "cannot rewind to the committed offsets after an abort");
            rc = TXN_FATAL; /* re-created clients start from the committed offsets */
        }
    }
out:
    overlay_clear(cs);
    free(next_ev);
    free(ev_parts);
    rd_kafka_topic_partition_list_destroy(offsets);
    return rc;
}

/* ----------------------------------------------------------- running state */

/* Not ready, and why: what /readyz says until the service is ready again. */
static void set_not_ready(cs_t *cs, const char *fmt, ...)
{
    va_list ap;
    atomic_store(&cs->ready, false);
    pthread_mutex_lock(&cs->why_mu);
    va_start(ap, fmt);
    vsnprintf(cs->not_ready, sizeof(cs->not_ready), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&cs->why_mu);
    es_gauge_set(cs->g_caught_up, 0);
}

/* Sleep @p ms unless asked to stop. */
static void nap(cs_t *cs, int ms)
{
    for (int slept = 0; slept < ms && !*cs->stop; slept += 100)
        usleep(100 * 1000);
}

/* Errors that time, or another process, can fix: wait and try again. */
static bool transient(es_err_t err)
{
    switch (err) {
    case ES_ERR_KAFKA:
    case ES_ERR_KAFKA_FATAL:
    case ES_ERR_TIMED_OUT:
    case ES_ERR_REGISTRY:
    case ES_ERR_REGISTRY_UNAVAILABLE:
    case ES_ERR_STORE:
    case ES_ERR_IO:
        return true;
    default:
        return false;
    }
}

static void clients_close(cs_t *cs);
static es_err_t connect_all(cs_t *cs, char *errstr, size_t errstr_size);

/* Poll one batch: the first command, then what arrives within the linger. */
static size_t poll_batch(cs_t *cs, rd_kafka_message_t **msgs)
{
    size_t n = 0;
    int64_t linger_until = 0;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(cs->cons, 100);
    while (m) {
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                es_log_warn("command-service", "consume: %s", rd_kafka_message_errstr(m));
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                char reason[512];
                rd_kafka_fatal_error(cs->cons, reason, sizeof(reason));
                cs->fatal = true;
                snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "consumer: %s", reason);
            }
            rd_kafka_message_destroy(m);
        } else {
            msgs[n++] = m;
        }
        if (n == (size_t)cs->batch_max || cs->fatal)
            break;
        /* Linger a little once a batch has begun: fuller transactions under load. */
        if (n && !linger_until)
            linger_until = now_ms() + cs->linger_ms;
        int64_t left = n ? linger_until - now_ms() : 0;
        m = rd_kafka_consumer_poll(cs->cons, left > 0 ? (int)left : 0);
    }
    return n;
}

/*
 * A rebalance ran inside one of the polls of this batch.  Commands polled
 * before it may be of partitions that are no longer ours; commands of
 * partitions we kept or got were polled past, so the consumer's position is
 * beyond them.  Deciding none of them and seeking every partition we own now
 * back to its committed offset gives each command to its current owner, from
 * the committed position: nothing is skipped, nothing decided twice.
 */
static void drop_batch_after_rebalance(cs_t *cs, size_t n)
{
    rd_kafka_topic_partition_list_t *owned = NULL;
    es_log_info("command-service",
                "a rebalance ran while %zu command(s) were polled: deciding them again from the "
                "committed offsets",
                n);
    if (rd_kafka_assignment(cs->cons, &owned) || !owned) {
        cs->fatal = true;
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "assignment unknown after rebalance");
    } else if (owned->cnt && !rewind_to_committed(cs, owned)) {
        cs->fatal = true;
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason),
                 "cannot rewind to the committed offsets after a rebalance");
    }
    if (owned)
        rd_kafka_topic_partition_list_destroy(owned);
}

/*
 * Re-create every Kafka client after a fatal or fenced client, instead of
 * exiting: a broker restart can fence a static member or leave the producer
 * in a state only a new one leaves.  Destroying the producer without abort
 * is the KAFKA-17754-safe way out of a transaction of unknown outcome; the
 * new producer's init_transactions fences the old epoch and aborts its open
 * transaction, and the new consumer starts from the committed offsets.
 */
static void recover(cs_t *cs, int *backoff_ms)
{
    es_log_error("command-service", "re-creating the Kafka clients in %d ms after: %s", *backoff_ms,
                 cs->fatal_reason);
    set_not_ready(cs, "recovering after: %s", cs->fatal_reason);
    es_counter_add(cs->c_recoveries, 1);
    clients_close(cs);
    cs->fatal = false;
    nap(cs, *backoff_ms);
    *backoff_ms = *backoff_ms * 2 > ES_CS_BACKOFF_MAX_MS ? ES_CS_BACKOFF_MAX_MS : *backoff_ms * 2;
}

int cs_run(cs_t *cs, volatile sig_atomic_t *stop)
{
    rd_kafka_message_t **msgs = es_calloc((size_t)cs->batch_max, sizeof(*msgs));
    int rc = 0, aborts = 0, backoff_ms = ES_CS_BACKOFF_MIN_MS;
    char errstr[1024];
    cs->stop = stop;
    while (!*stop) {
        if (!cs->prod) {
            es_err_t err = connect_all(cs, errstr, sizeof(errstr));
            if (err && !transient(err)) {
                es_log_error("command-service", "%s", errstr);
                rc = 2;
                break;
            }
            if (err) {
                es_log_warn("command-service", "not ready, retrying in %d ms: %s", backoff_ms,
                            errstr);
                set_not_ready(cs, "%s", errstr);
                clients_close(cs);
                nap(cs, backoff_ms);
                backoff_ms =
                    backoff_ms * 2 > ES_CS_BACKOFF_MAX_MS ? ES_CS_BACKOFF_MAX_MS : backoff_ms * 2;
                continue;
            }
        }
        if (cs->fatal) {
            recover(cs, &backoff_ms);
            continue;
        }
        int gen = atomic_load(&cs->generation);
        size_t n = poll_batch(cs, msgs);
        if (n && atomic_load(&cs->generation) != gen) {
            drop_batch_after_rebalance(cs, n);
        } else if (n && !cs->fatal) {
            txn_rc_t t = process_batch(cs, msgs, n);
            if (t == TXN_FATAL)
                cs->fatal = true;
            else if (t == TXN_OK)
                backoff_ms = ES_CS_BACKOFF_MIN_MS;
            /* Back off while transactions keep failing (broker trouble), not while they work. */
            aborts = t == TXN_ABORT ? aborts + 1 : 0;
            if (aborts)
                nap(cs, (aborts < 50 ? aborts : 50) * 100);
        }
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
    }
    atomic_store(&cs->ready, false);
    free(msgs);
    return rc;
}

bool cs_ready(cs_t *cs, char *why, size_t whysz)
{
    if (!es_kafka_watch_broker_ok(cs->watch, why, whysz))
        return false;
    if (atomic_load(&cs->ready))
        return true;
    pthread_mutex_lock(&cs->why_mu);
    snprintf(why, whysz, "%s", cs->not_ready);
    pthread_mutex_unlock(&cs->why_mu);
    return false;
}

/* ----------------------------------------------------------------- set-up */

static rd_kafka_t *consumer_new(cs_t *cs, const char *group, bool eof, char *errstr,
                                size_t errstr_size)
{
    rd_kafka_conf_t *c = es_kafka_conf_build(cs->conf, ES_CONF_ROLE_CONSUMER, errstr, errstr_size);
    if (!c)
        return NULL;
    if (rd_kafka_conf_set(c, "group.id", group, errstr, errstr_size) ||
        rd_kafka_conf_set(c, "enable.partition.eof", eof ? "true" : "false", errstr, errstr_size) ||
        (!es_conf_get(cs->conf, "kafka.fetch.wait.max.ms") &&
         rd_kafka_conf_set(c, "fetch.wait.max.ms", "10", errstr, errstr_size))) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    /* Static membership: a restarted instance (same transactional.id) takes its
     * partitions back at once instead of waiting out the dead member's session. */
    if (!eof && ((!es_conf_get(cs->conf, "kafka.group.instance.id") &&
                  rd_kafka_conf_set(c, "group.instance.id", cs->txid, errstr, errstr_size)) ||
                 (!es_conf_get(cs->conf, "kafka.session.timeout.ms") &&
                  rd_kafka_conf_set(c, "session.timeout.ms", "10000", errstr, errstr_size)))) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    if (!eof) {
        rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
        rd_kafka_conf_set_opaque(c, cs);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Create the topics if asked, and check their partition counts agree. */
static es_err_t check_topics(cs_t *cs, char *errstr, size_t errstr_size)
{
    int pc_cmd = 0, pc_ev = 0, pc_res = 0;
    es_admin_t *adm = es_admin_new(cs->conf, errstr, errstr_size);
    es_err_t err = ES_ERR_OK;
    if (!adm)
        return ES_ERR_CONF;
    if (es_conf_get_bool(cs->conf, "topics.create")) {
        es_topic_spec_t specs[3];
        es_topic_spec_for(cs->conf, ES_TOPIC_COMMANDS, cs->t_cmd, &specs[0]);
        es_topic_spec_for(cs->conf, ES_TOPIC_EVENTS, cs->t_ev, &specs[1]);
        es_topic_spec_for(cs->conf, ES_TOPIC_RESULTS, cs->t_res, &specs[2]);
        err = es_admin_create_topics(adm, specs, 3, ES_CS_KAFKA_TIMEOUT_MS, errstr, errstr_size);
    }
    /* Events go to the partition number of their command: the counts must agree. */
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_cmd, ES_CS_KAFKA_TIMEOUT_MS, &pc_cmd, errstr,
                                        errstr_size);
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_ev, ES_CS_KAFKA_TIMEOUT_MS, &pc_ev, errstr,
                                        errstr_size);
    if (!err)
        err = es_admin_topic_partitions(adm, cs->t_res, ES_CS_KAFKA_TIMEOUT_MS, &pc_res, errstr,
                                        errstr_size);
    es_admin_destroy(adm);
    if (err == ES_ERR_NOT_FOUND) {
        snprintf(errstr, errstr_size,
                 "topics of %s missing: create them (escqrs topics create %s, or "
                 "topics.create=true)",
                 cs->agg, cs->agg);
        return ES_ERR_CONF;
    }
    if (!err && pc_cmd != pc_ev) {
        snprintf(errstr, errstr_size,
                 "%s has %d partitions but %s has %d: they must be equal (events go to the "
                 "partition number of their command)",
                 cs->t_cmd, pc_cmd, cs->t_ev, pc_ev);
        return ES_ERR_CONF;
    }
    return err;
}

/* The registry's schemas of the three topics, and the values built from them. */
static es_err_t open_serdes(cs_t *cs, char *errstr, size_t errstr_size)
{
    struct {
        es_serde_t **serde;
        const char *topic, *schema;
    } want[] = {
        {&cs->cmd_serde, cs->t_cmd, cs->def->commands_schema},
        {&cs->ev_serde, cs->t_ev, cs->def->events_schema},
        {&cs->res_serde, cs->t_res, "command-result"},
    };
    char subj[300];
    es_err_t err;
    if (!cs->reg && !(cs->reg = es_registry_from_conf(cs->conf, 5, errstr, errstr_size)))
        return ES_ERR_CONF;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (*want[i].serde)
            continue;
        snprintf(subj, sizeof(subj), "%s-value", want[i].topic);
        if ((err = es_serde_open(cs->reg, subj, es_schema_text(want[i].schema), true, 0,
                                 want[i].serde, errstr, errstr_size)))
            return err;
    }
    if (!cs->em && !(cs->em = es_emitter_new(cs->def->events_schema, errstr, errstr_size)))
        return ES_ERR_SCHEMA;
    es_serde_new_value(cs->ev_serde, &cs->ev_value);
    es_serde_new_value(cs->res_serde, &cs->res_value);
    cs->have_values = true;
    return ES_ERR_OK;
}

/* The transactional producer and the two consumers, subscribed. */
static es_err_t clients_open(cs_t *cs, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *pc = es_kafka_conf_build(cs->conf, ES_CONF_ROLE_PRODUCER, errstr, errstr_size);
    if (!pc)
        return ES_ERR_CONF;
    /* Delivery reports carry the events' offsets. */
    if (rd_kafka_conf_set(pc, "transactional.id", cs->txid, errstr, errstr_size) ||
        (!es_conf_get(cs->conf, "kafka.transaction.timeout.ms") &&
         rd_kafka_conf_set(pc, "transaction.timeout.ms", "10000", errstr, errstr_size)) ||
        (!es_conf_get(cs->conf, "kafka.linger.ms") &&
         rd_kafka_conf_set(pc, "linger.ms", "1", errstr, errstr_size))) {
        rd_kafka_conf_destroy(pc);
        return ES_ERR_CONF;
    }
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_opaque(pc, cs);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, errstr_size);
    if (!prod) {
        rd_kafka_conf_destroy(pc);
        return ES_ERR_CONF;
    }
    rd_kafka_error_t *ke = rd_kafka_init_transactions(prod, ES_CS_KAFKA_TIMEOUT_MS);
    if (ke) {
        snprintf(errstr, errstr_size, "init_transactions(%s): %s", cs->txid,
                 rd_kafka_error_string(ke));
        rd_kafka_error_destroy(ke);
        rd_kafka_destroy(prod);
        return ES_ERR_KAFKA;
    }
    cs->prod = prod;
    if (!(cs->catchup = consumer_new(cs, "escqrs-catchup-unused", true, errstr, errstr_size)) ||
        !(cs->cons = consumer_new(cs, cs->group, false, errstr, errstr_size)))
        return ES_ERR_CONF;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, cs->t_cmd, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(cs->cons, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (kerr) {
        snprintf(errstr, errstr_size, "subscribe %s: %s", cs->t_cmd, rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    set_not_ready(cs, "waiting for partitions of %s (group %s)", cs->t_cmd, cs->group);
    return ES_ERR_OK;
}

/* Tear the Kafka clients down without waiting for a broker that may be gone. */
static void clients_close(cs_t *cs)
{
    if (cs->cons)
        rd_kafka_destroy_flags(cs->cons, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (cs->catchup)
        rd_kafka_destroy_flags(cs->catchup, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (cs->prod)
        rd_kafka_destroy(cs->prod); /* an open transaction is aborted by the next epoch */
    cs->cons = cs->catchup = cs->prod = NULL;
    overlay_clear(cs);
}

/*
 * Everything the loop needs, each part once: topics, schemas, store, Kafka
 * clients.  Parts already there are kept, so a retry after a registry or
 * broker outage picks up where it stopped.
 */
static es_err_t connect_all(cs_t *cs, char *errstr, size_t errstr_size)
{
    es_err_t err;
    if (!cs->topics_checked) {
        set_not_ready(cs, "checking the topics of %s", cs->agg);
        if ((err = check_topics(cs, errstr, errstr_size)))
            return err;
        cs->topics_checked = true;
    }
    if (!cs->have_values) {
        set_not_ready(cs, "registering the schemas of %s", cs->agg);
        if ((err = open_serdes(cs, errstr, errstr_size)))
            return err;
    }
    if (!cs->store) {
        es_store_opts_t so;
        es_store_opts_from_conf(cs->conf, &so);
        if (!(cs->store =
                  es_store_open(es_conf_get(cs->conf, "store.path"), &so, errstr, errstr_size)))
            return ES_ERR_STORE;
    }
    set_not_ready(cs, "connecting to Kafka as %s", cs->txid);
    if ((err = clients_open(cs, errstr, errstr_size)))
        return err;
    es_log_info("command-service", "aggregate %s: %s → %s, %s (group %s, transactional.id %s)",
                cs->def->name, cs->t_cmd, cs->t_ev, cs->t_res, cs->group, cs->txid);
    return ES_ERR_OK;
}

cs_t *cs_new(const es_conf_t *conf, const es_aggregate_def_t *def, es_metrics_t *metrics,
             char *errstr, size_t errstr_size)
{
    cs_t *cs = es_calloc(1, sizeof(*cs));
    const char *prefix = es_conf_get(conf, "aggregate.prefix");
    char host[128] = "localhost";

    cs->conf = conf;
    cs->def = def;
    cs->metrics = metrics;
    pthread_mutex_init(&cs->why_mu, NULL);
    snprintf(cs->not_ready, sizeof(cs->not_ready), "starting");
    cs->batch_max = (int)es_conf_get_int(conf, "batch.max");
    cs->linger_ms = (int)es_conf_get_int(conf, "batch.linger.ms");
    snprintf(cs->agg, sizeof(cs->agg), "%s%s", prefix ? prefix : "", def->name);
    es_topic_name(cs->agg, ES_TOPIC_COMMANDS, NULL, cs->t_cmd, sizeof(cs->t_cmd));
    es_topic_name(cs->agg, ES_TOPIC_EVENTS, NULL, cs->t_ev, sizeof(cs->t_ev));
    es_topic_name(cs->agg, ES_TOPIC_RESULTS, NULL, cs->t_res, sizeof(cs->t_res));
    snprintf(cs->group, sizeof(cs->group), "%s.command-service", cs->agg);
    const char *txid = es_conf_get(conf, "transactional.id");
    if (txid && *txid) {
        snprintf(cs->txid, sizeof(cs->txid), "%s", txid);
    } else {
        gethostname(host, sizeof(host) - 1);
        /* %.100s: a host name longer than that is cut, the id stays unique enough */
        snprintf(cs->txid, sizeof(cs->txid), "%.*s-%.100s", (int)(sizeof(cs->txid) - 102),
                 cs->group, host);
    }
    cs->pends = es_calloc((size_t)cs->batch_max, sizeof(*cs->pends));
    cs->evs = es_calloc((size_t)cs->batch_max * ES_AGG_MAX_EVENTS, sizeof(*cs->evs));

    cs->c_accepted = es_metrics_counter(metrics, "escqrs_commands_accepted_total",
                                        "Commands accepted (events written)", NULL);
    cs->c_replayed = es_metrics_counter(metrics, "escqrs_commands_replayed_total",
                                        "Retried commands answered with their first outcome", NULL);
    cs->c_conflict = es_metrics_counter(metrics, "escqrs_commands_version_conflict_total",
                                        "Commands whose If-Match version did not match", NULL);
    cs->c_reused = es_metrics_counter(metrics, "escqrs_commands_idempotency_key_reused_total",
                                      "Idempotency keys reused for a different command", NULL);
    cs->c_undecodable = es_metrics_counter(metrics, "escqrs_commands_undecodable_total",
                                           "Command records that could not be decoded", NULL);
    cs->c_aborts = es_metrics_counter(metrics, "escqrs_transactions_aborted_total",
                                      "Transactions aborted and retried", NULL);
    cs->c_recoveries =
        es_metrics_counter(metrics, "escqrs_command_service_recoveries_total",
                           "Kafka clients re-created after a fatal or fenced client", NULL);
    cs->h_commit = es_metrics_histogram(metrics, "escqrs_transaction_commit_seconds",
                                        "Latency of commit_transaction", NULL,
                                        es_metrics_latency_buckets, es_metrics_latency_nbuckets);
    static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000};
    cs->h_batch =
        es_metrics_histogram(metrics, "escqrs_batch_commands", "Commands per transaction", NULL,
                             batch_bounds, sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    cs->g_caught_up = es_metrics_gauge(metrics, "escqrs_command_service_caught_up",
                                       "1 once the assigned partitions are caught up", NULL);
    if (!(cs->watch = es_kafka_watch_start(conf, NULL, 0, errstr, errstr_size))) {
        cs_destroy(cs);
        return NULL;
    }
    return cs;
}

void cs_destroy(cs_t *cs)
{
    if (!cs)
        return;
    if (cs->cons) {
        rd_kafka_consumer_close(cs->cons); /* a clean stop leaves the group */
        rd_kafka_destroy(cs->cons);
        cs->cons = NULL;
    }
    clients_close(cs);
    es_kafka_watch_stop(cs->watch);
    es_store_close(cs->store);
    es_emitter_destroy(cs->em);
    if (cs->have_values) {
        avro_value_decref(&cs->ev_value);
        avro_value_decref(&cs->res_value);
    }
    es_serde_destroy(cs->cmd_serde);
    es_serde_destroy(cs->ev_serde);
    es_serde_destroy(cs->res_serde);
    es_registry_destroy(cs->reg);
    pthread_mutex_destroy(&cs->why_mu);
    free(cs->pends);
    free(cs->evs);
    free(cs);
}
