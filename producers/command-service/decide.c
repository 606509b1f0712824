/*
 * decide.c — one command of a batch: idempotency, If-Match, decide, and the
 * events it produces; the outcome record.
 *
 * The owner of a partition is the single writer of every aggregate in it,
 * so deciding on the state in the overlay (the store plus what this batch
 * already decided) keeps the aggregate's invariants under any concurrency.
 * Order per command: a known command id answers its first outcome and
 * writes nothing (the same id with another body or If-Match is
 * IDEMPOTENCY_KEY_REUSED, not remembered); then If-Match; then decide; its
 * events are encoded and checked against the largest record the producer
 * takes (decide_one()), applied with evolve, then produced to the command's
 * own partition number of <agg>.events, so the commands after it in the
 * batch see the state they make.
 * A command that cannot be decoded has no id to answer to: it is counted
 * and left in the audit log.  A registry that cannot give the writer
 * schema is not the command's fault: the transaction is aborted and the
 * batch decided again after the back-off (txn.c).
 *
 * Request context: the command's correlation id (its command id when it
 * came without one, Axon's rule, so no event or outcome has it null),
 * traceparent and tracestate go into every event and the outcome, as value
 * fields and headers; the outcome also names the command (command_type)
 * and when the gateway issued it.  While a command is decided, this
 * thread's log lines carry its trace id, and at debug level one line says
 * how it ended.
 */
#include "service_int.h"

#include "escqrs/envelope.h"
#include "escqrs/log.h"
#include "escqrs/record.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool opt_long(avro_value_t *rec, const char *name, int64_t *v)
{
    avro_value_t f, br;
    return !avro_value_get_by_name(rec, name, &f, NULL) && avro_value_get_type(&f) == AVRO_UNION &&
           !avro_value_get_current_branch(&f, &br) && avro_value_get_type(&br) == AVRO_INT64 &&
           !avro_value_get_long(&br, v);
}

/* The event envelope of the command around @p payload; false on an Avro error. */
static bool fill_envelope(cs_t *cs, const char *event_id, const char *agg_id, const char *cmd_id,
                          const cmd_ctx_t *ctx, const es_outcome_t *o, int64_t version,
                          const char *type, avro_value_t *payload)
{
    avro_value_t *env = &cs->ev_value, f, br, pu;
    avro_value_reset(env);
    if (avro_value_get_by_name(env, "event_id", &f, NULL) || avro_value_set_string(&f, event_id) ||
        avro_value_get_by_name(env, cs->def->id_field, &f, NULL) ||
        avro_value_set_string(&f, agg_id) || avro_value_get_by_name(env, "version", &f, NULL) ||
        avro_value_set_long(&f, version) || avro_value_get_by_name(env, "occurred_at", &f, NULL) ||
        avro_value_set_long(&f, es_now_ms()) ||
        avro_value_get_by_name(env, "command_id", &f, NULL) || avro_value_set_string(&f, cmd_id))
        return false;
    if (es_trace_fields_set(env, &ctx->trace)) /* the request that caused it */
        return false;
    if (es_principal_set(env, o->principal, o->principal_client)) /* who sent its command */
        return false;
    if (avro_value_get_by_name(env, "payload", &pu, NULL))
        return false;
    avro_schema_t us = avro_value_get_schema(&pu);
    size_t b, nb = avro_schema_union_size(us);
    for (b = 0; b < nb; b++)
        if (!strcmp(avro_schema_name(avro_schema_union_branch(us, (int)b)), type))
            break;
    return b < nb && !avro_value_set_branch(&pu, (int)b, &br) && !avro_value_copy(&br, payload);
}

/* One event of the command, encoded; produced once every event of it is checked. */
typedef struct {
    es_buf_t value;
    es_record_t rec; /* its headers are ours until the send takes them */
} event_rec_t;

/* Encode one event of the command, for partition @p partition, into @p er. */
static es_err_t encode_event(cs_t *cs, const char *agg_id, const char *cmd_id, const cmd_ctx_t *ctx,
                             const es_outcome_t *o, int64_t version, const char *type,
                             avro_value_t *payload, int32_t partition, event_rec_t *er,
                             char *errstr, size_t errstr_size)
{
    char event_id[ES_UUID_STR_LEN];
    es_err_t err;
    es_uuid_v4(event_id);
    if (!fill_envelope(cs, event_id, agg_id, cmd_id, ctx, o, version, type, payload)) {
        snprintf(errstr, errstr_size, "event envelope: %s", avro_strerror());
        return ES_ERR_ENCODE;
    }
    if ((err = es_serde_encode(cs->ev_serde, &cs->ev_value, &er->value, errstr, errstr_size)))
        return err;
    er->rec = (es_record_t){
        .topic = cs->t_ev,
        .partition = partition,
        .key = agg_id,
        .keylen = strlen(agg_id),
        .value = er->value.data,
        .valuelen = er->value.len,
        .headers = es_event_headers(type, event_id, cmd_id, version),
    };
    es_trace_headers_add(er->rec.headers, &ctx->trace);
    return ES_ERR_OK;
}

/* Produce the encoded event @p er; its position comes with the delivery report. */
static es_err_t produce_event(cs_t *cs, event_rec_t *er, char *errstr, size_t errstr_size)
{
    evpos_t *pos = &cs->evs[cs->nev++]; /* filled by the delivery report */
    pos->partition = -1;
    pos->offset = -1;
    pos->err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    er->rec.msg_opaque = pos;
    es_err_t err = es_producer_send_record(cs->prod, &er->rec, ES_SEND_WAIT, errstr, errstr_size);
    if (!err)
        er->rec.headers = NULL; /* librdkafka's now */
    return err;
}

/*
 * The partitions an accepted command's records go to, marked as the
 * transaction's before its first event goes: its events' and its state
 * record's (the command's partition number) and its outcome's (by its key).
 * The outcome and the state are produced only after the events' flush, and
 * each partition is registered with the coordinator on its first record, so
 * they waited for an AddPartitionsToTxn of their own; marked here, the
 * events' registration takes all three (es_txn_add_partitions: a no-op
 * without librdkafka's escqrs fix).  Commands with no event mark nothing:
 * their outcome is produced without a flush before it, and a marked
 * partition would get markers with no record of the transaction.
 */
static void mark_partitions(cs_t *cs, const char *agg_id, int32_t partition)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
    rd_kafka_topic_partition_list_add(parts, cs->t_ev, partition);
    rd_kafka_topic_partition_list_add(parts, cs->t_state, partition);
    int32_t res = es_producer_key_partition(cs->prod, agg_id, strlen(agg_id), cs->nparts_res);
    if (res >= 0)
        rd_kafka_topic_partition_list_add(parts, cs->t_res, res);
    es_txn_add_partitions(cs->prod, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

static void event_rec_free(event_rec_t *er)
{
    if (er->rec.headers)
        rd_kafka_headers_destroy(er->rec.headers);
    es_buf_free(&er->value);
}

void cs_on_delivery(void *opaque, const rd_kafka_message_t *m)
{
    cs_t *cs = opaque;
    evpos_t *ev = m->_private;
    if (ev && m->_private == &cs->state_tag) { /* a state record: where it landed */
        if (!m->err && m->partition >= 0 && m->partition < cs->nparts &&
            m->offset + 1 > cs->state_next[m->partition])
            cs->state_next[m->partition] = m->offset + 1;
    } else if (ev) { /* an event (outcomes carry no position) */
        ev->err = m->err;
        ev->partition = m->partition;
        ev->offset = m->offset;
    }
}

static void count_rejection(cs_t *cs, const char *reason)
{
    char labels[128];
    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    es_counter_add(es_metrics_counter(cs->metrics, "escqrs_commands_rejected_total",
                                      "Commands rejected by the aggregate, by reason", labels),
                   1);
}

static void reject(cs_t *cs, es_outcome_t *o, const char *reason)
{
    o->status = ES_OUTCOME_REJECTED;
    snprintf(o->reason, sizeof(o->reason), "%s", reason);
    count_rejection(cs, o->reason);
}

/*
 * Run decide on aggregate @p a; check, apply and produce its events.  Nothing
 * of a command goes into the transaction before all of it is known to fit:
 * an event record over the producer's message.max.bytes (librdkafka refuses
 * it at once, and would on every retry) rejects the command as
 * event_too_large; on an aggregate whose state record was once too large
 * (state.c), the events are applied to a copy of the state first, and a
 * command that would make the record too large is rejected as
 * aggregate_too_large, the state as it was.
 */
static es_err_t decide_one(cs_t *cs, rd_kafka_message_t *m, pend_t *pd, agg_ent_t *a,
                           const char *type, avro_value_t *pl, char *errstr, size_t errstr_size)
{
    es_outcome_t *o = &pd->o;
    es_err_t err = ES_ERR_OK;
    es_emitter_reset(cs->em);
    const char *reason = cs->def->decide(a->state, type, pl, cs->em);
    if (reason) {
        reject(cs, o, reason);
        return ES_ERR_OK;
    }
    size_t n = es_emitter_count(cs->em), i;
    event_rec_t ers[ES_AGG_MAX_EVENTS] = {0};
    const char *etype[ES_AGG_MAX_EVENTS];
    avro_value_t *ev[ES_AGG_MAX_EVENTS];
    bool watched = cs_state_watched(cs, o->aggregate_id), fits = true;
    void *state = watched ? es_malloc(cs->def->state_size) : a->state;
    if (watched)
        memcpy(state, a->state, cs->def->state_size); /* states are flat (aggregate.h) */
    for (i = 0; i < n && !err; i++) {
        ev[i] = es_emitter_event(cs->em, i, &etype[i]);
        err = encode_event(cs, o->aggregate_id, o->command_id, &pd->ctx, o,
                           a->version + 1 + (int64_t)i, etype[i], ev[i], m->partition, &ers[i],
                           errstr, errstr_size);
        fits = fits && (err || es_producer_fits(cs->prod, &ers[i].rec));
    }
    if (!err && !fits)
        reject(cs, o, "event_too_large");
    for (i = 0; i < n && !err && fits; i++) /* a domain bug if its own event does not apply */
        err = cs->def->evolve(state, etype[i], ev[i], errstr, errstr_size);
    if (!err && fits && watched && n) { /* no event: nothing changes, nothing to measure */
        agg_ent_t after = *a;
        after.state = state;
        after.version = a->version + (int64_t)n;
        if ((fits = cs_state_fits(cs, o->aggregate_id, &after)))
            memcpy(a->state, state, cs->def->state_size);
        else
            reject(cs, o, "aggregate_too_large");
    }
    if (!err && fits && n)
        mark_partitions(cs, o->aggregate_id, m->partition);
    for (i = 0; i < n && !err && fits; i++) {
        if ((err = produce_event(cs, &ers[i], errstr, errstr_size)))
            break;
        a->version++;
        a->dirty = true;
        snprintf(o->events[o->nevents].type, sizeof(o->events[0].type), "%s", etype[i]);
        o->events[o->nevents++].version = a->version;
        pd->last_ev = (int)cs->nev - 1;
    }
    if (!err && fits) {
        o->status = ES_OUTCOME_ACCEPTED;
        o->version = a->version;
        es_counter_add(cs->c_accepted, 1);
    }
    for (i = 0; i < n; i++)
        event_rec_free(&ers[i]);
    if (watched)
        free(state);
    return err;
}

/* A new pending outcome for the command @p v (payload record @p type), in cs->pends. */
static pend_t *pend_new(cs_t *cs, avro_value_t *v, const char *cmd_id, const char *agg_id,
                        const char *type)
{
    char errstr[128];
    pend_t *pd = &cs->pends[cs->npend++];
    memset(pd, 0, sizeof(*pd));
    pd->last_ev = -1;
    es_outcome_t *o = &pd->o;
    snprintf(o->command_id, sizeof(o->command_id), "%s", cmd_id);
    snprintf(o->aggregate_id, sizeof(o->aggregate_id), "%s", agg_id);
    o->has_expected = opt_long(v, "expected_version", &o->expected_version);
    o->processed_at = es_now_ms();
    es_principal_get(v, o->principal, sizeof(o->principal), o->principal_client,
                     sizeof(o->principal_client));
    cmd_ctx_t *ctx = &pd->ctx;
    es_trace_fields_get(v, &ctx->trace);
    if (!ctx->trace.correlation_id[0]) /* a command of an older gateway */
        snprintf(ctx->trace.correlation_id, sizeof(ctx->trace.correlation_id), "%s", cmd_id);
    snprintf(ctx->type, sizeof(ctx->type), "%s", type);
    ctx->has_issued_at = !es_record_long(v, "issued_at", &ctx->issued_at, errstr, sizeof(errstr));
    return pd;
}

/*
 * Decode the command of @p m.  ES_ERR_REGISTRY(_UNAVAILABLE) with @p errstr
 * when its writer schema cannot be fetched now; ES_ERR_DECODE with @p why
 * when it has no id to answer to.
 */
static es_err_t decode_command(cs_t *cs, rd_kafka_message_t *m, avro_value_t **v,
                               const char **cmd_id, const char **agg_id, avro_value_t *pl,
                               const char **type, char *why, size_t whysz, char *errstr,
                               size_t errstr_size)
{
    es_err_t derr = es_serde_decode(cs->cmd_serde, m->payload, m->len, v, why, whysz);
    if (derr == ES_ERR_REGISTRY_UNAVAILABLE || derr == ES_ERR_REGISTRY) {
        snprintf(errstr, errstr_size, "command at %s [%d] @%" PRId64 ": %s", cs->t_cmd,
                 m->partition, m->offset, why);
        return derr;
    }
    if (derr || es_record_string(*v, "command_id", cmd_id, NULL, why, whysz) ||
        es_record_string(*v, cs->def->id_field, agg_id, NULL, why, whysz) ||
        es_record_payload(*v, pl, type, why, whysz) || !es_command_id_valid(*cmd_id) ||
        !es_command_id_valid(*agg_id))
        return ES_ERR_DECODE;
    return ES_ERR_OK;
}

/* Idempotency, If-Match, decide: the outcome of the decoded command @p v in @p pd. */
static es_err_t decide_pending(cs_t *cs, rd_kafka_message_t *m, avro_value_t *v, pend_t *pd,
                               const char *type, avro_value_t *pl, char *errstr, size_t errstr_size)
{
    agg_ent_t *a;
    idem_ent_t *e;
    es_err_t err;
    es_outcome_t *o = &pd->o;
    const char *agg_id = o->aggregate_id, *cmd_id = o->command_id;
    if (m->partition < cs->nparts && cs->refused[m->partition]) { /* left in a fetch */
        snprintf(errstr, errstr_size, "%s [%d] is refused: %s", cs->t_cmd, (int)m->partition,
                 "its commands wait for the operator");
        return ES_ERR_STATE;
    }
    uint64_t fp = es_command_fingerprint(v);
    if ((err = cs_agg_load(cs, agg_id, &a, errstr, errstr_size)) ||
        (err = cs_idem_load(cs, agg_id, cmd_id, &e, errstr, errstr_size)))
        return err;
    if (a->partition >= 0 && a->partition != m->partition) {
        /* Deciding it here would split the aggregate's history over two partitions. */
        snprintf(errstr, errstr_size,
                 "a command for %s arrived in %s [%d], but its events and state are in partition "
                 "%d: the partition count of the aggregate's topics or the producers' "
                 "kafka.partitioner changed (docs/operations.md, \"Never add partitions\")",
                 agg_id, cs->t_cmd, (int)m->partition, (int)a->partition);
        cs_refuse_partition(cs, m->partition, errstr);
        return ES_ERR_STATE;
    }
    pd->agg = a;
    a->partition = m->partition; /* its events and state record go to this number */
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
    case ES_PRECHECK_DECIDE:
        if ((err = decide_one(cs, m, pd, a, type, pl, errstr, errstr_size)))
            return err;
        break;
    }
    pd->remember = cs_idem_insert(cs, agg_id, cmd_id, fp);
    return ES_ERR_OK;
}

static const char *const status_names[] = {"ACCEPTED", "REJECTED", "VERSION_CONFLICT",
                                           "IDEMPOTENCY_KEY_REUSED"};

/* Decide one command; queue its outcome in cs->pends. */
es_err_t cs_decide(cs_t *cs, rd_kafka_message_t *m, char *errstr, size_t errstr_size)
{
    avro_value_t *v, pl;
    const char *cmd_id = NULL, *agg_id = NULL, *type;
    char why[256] = "", trace_id[ES_TRACE_ID_LEN + 1];
    es_err_t err = decode_command(cs, m, &v, &cmd_id, &agg_id, &pl, &type, why, sizeof(why), errstr,
                                  errstr_size);
    if (err == ES_ERR_REGISTRY_UNAVAILABLE || err == ES_ERR_REGISTRY)
        return err; /* not the command's fault: decide nothing of this batch, try again later */
    if (err) {
        /* No id to answer to: count it, keep it in the audit log, go on. */
        es_log_warn("command-service", "undecodable command at %s [%d] @%" PRId64 ": %s", cs->t_cmd,
                    m->partition, m->offset, why);
        es_counter_add(cs->c_undecodable, 1);
        return ES_ERR_OK;
    }
    pend_t *pd = pend_new(cs, v, cmd_id, agg_id, type);
    es_trace_id_of(pd->ctx.trace.traceparent, trace_id);
    es_log_trace_set(trace_id); /* this command's log lines carry its trace */
    err = decide_pending(cs, m, v, pd, type, &pl, errstr, errstr_size);
    if (!err) {
        const es_outcome_t *o = pd->replay ? &pd->replay->o : &pd->o;
        es_log_debug("command-service", "command %s (%s) for %s: %s%s%s%s", pd->o.command_id,
                     pd->ctx.type, pd->o.aggregate_id, status_names[o->status],
                     o->reason[0] ? " " : "", o->reason,
                     pd->replay ? " (a retry: first outcome)" : "");
    }
    es_log_trace_set(NULL);
    return err;
}

/* The outcome record's request context: fields a CommandResult schema lacks are skipped. */
static es_err_t outcome_ctx_set(avro_value_t *res, const cmd_ctx_t *ctx, char *errstr,
                                size_t errstr_size)
{
    if (es_trace_fields_set(res, &ctx->trace) ||
        es_opt_string_set(res, "command_type", ctx->type) ||
        es_opt_long_set(res, "issued_at", ctx->has_issued_at, ctx->issued_at)) {
        snprintf(errstr, errstr_size, "CommandResult context: %s", avro_strerror());
        return ES_ERR_ENCODE;
    }
    return ES_ERR_OK;
}

es_err_t cs_produce_outcome(cs_t *cs, const es_outcome_t *o, const cmd_ctx_t *ctx, es_buf_t *buf,
                            char *errstr, size_t errstr_size)
{
    es_err_t err;
    es_buf_clear(buf);
    if ((err = es_outcome_to_value(o, &cs->res_value, errstr, errstr_size)) ||
        (err = outcome_ctx_set(&cs->res_value, ctx, errstr, errstr_size)) ||
        (err = es_serde_encode(cs->res_serde, &cs->res_value, buf, errstr, errstr_size)))
        return err;
    /* the partition mark_partitions() added to the transaction, whatever the
     * producer's metadata says now: the count the service checked */
    int32_t part = es_producer_key_partition(cs->prod, o->aggregate_id, strlen(o->aggregate_id),
                                             cs->nparts_res);
    es_record_t rec = {
        .topic = cs->t_res,
        .partition = part >= 0 ? part : RD_KAFKA_PARTITION_UA,
        .key = o->aggregate_id,
        .keylen = strlen(o->aggregate_id),
        .value = buf->data,
        .valuelen = buf->len,
        .headers = rd_kafka_headers_new(4),
    };
    /* The gateway skips, without decoding, outcomes no request of its waits for. */
    rd_kafka_header_add(rec.headers, "command-id", -1, o->command_id, -1);
    es_trace_headers_add(rec.headers, &ctx->trace);
    if ((err = es_producer_send_record(cs->prod, &rec, ES_SEND_WAIT, errstr, errstr_size)))
        rd_kafka_headers_destroy(rec.headers);
    return err;
}
