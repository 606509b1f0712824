/*
 * consumer.c — a loop's Kafka consumer.
 *
 * Replica mode: every loop assigns every partition of its topics itself
 * (no consumer group rebalancing; reads scale by adding replicas, each with
 * a full copy, sharing nothing).  A loop starts each partition at the next
 * offset stored in *its own store*, never at Kafka's committed offsets: the
 * store is the one place where views and offsets change together, so
 * starting anywhere else would skip or repeat events.  The group id is only
 * a name for the offsets committed after each batch for lag tools.
 *
 * The positions and rewinds here are how the loop keeps its next offsets
 * and the consumer in step: after a transient failure the consumer is sent
 * back to the next offsets (what it fetched beyond them is delivered again),
 * and when the queue is idle its position says how far the transaction
 * markers (never delivered) go.
 *
 * Partitioned mode: the live loop subscribes to the group instead, and its
 * rebalance callback starts each partition it is given at the next offset
 * stored for that partition's slice (0 for a partition never folded here),
 * so a partition that moves is replayed by its new owner, that partition
 * only (partitions.c).  A batch in hand when partitions are revoked is still
 * written: the slices it touches stay consistent with their offsets.
 */
#include "loop.h"

#include "escqrs/log.h"
#include "escqrs/schemas.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "projector"

size_t pj_topic_index(const pj_runner_t *r, const char *topic)
{
    for (size_t t = 0; t < r->ntopics; t++) {
        if (strcmp(r->topic[t], topic) == 0)
            return t;
    }
    return SIZE_MAX;
}

/*
 * Where the consumer starts a partition whose next offset is @p next: that
 * offset, 0 included.  Offset 0 is not handed over as "the beginning"
 * (RD_KAFKA_OFFSET_BEGINNING): librdkafka resolves that logical offset with
 * a ListOffsets request, and a new client that asks before it knows the
 * partition's leader retries after 500 ms (measured: every empty store's
 * first record came 0.50-0.55 s after the loop started; with 0, 0.05 s).
 * Should the log no longer start at 0, the broker answers "out of range"
 * and auto.offset.reset (earliest) takes the consumer to its start.
 */
int64_t pj_start_offset(int64_t next)
{
    return next > 0 ? next : 0;
}

/* The reader schema of topic @p t, resolved against the registry. */
static es_err_t open_serde(pj_loop_t *l, size_t t)
{
    pj_runner_t *r = l->r;
    char subject[PJ_SUBJECT_MAX];
    const char *text = es_schema_text(r->def->schemas[t]);
    if (!text) {
        snprintf(l->errstr, sizeof(l->errstr), "no schema named %s", r->def->schemas[t]);
        return ES_ERR_SCHEMA;
    }
    snprintf(subject, sizeof(subject), "%s-value", r->topic[t]);
    l->serde[t] = es_serde_new(r->pj->reg, subject, text, false, 0, l->errstr, sizeof(l->errstr));
    return l->serde[t] ? ES_ERR_OK : ES_ERR_REGISTRY;
}

/* l->next[t] from the store, and each partition of topic @p t into @p tl there. */
static es_err_t stored_offsets(pj_loop_t *l, size_t t, rd_kafka_topic_partition_list_t *tl)
{
    pj_runner_t *r = l->r;
    l->next[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
    l->stored[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
    l->in_kafka[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
    l->writing.next[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
    for (int p = 0; p < r->nparts[t]; p++) {
        int64_t off = 0;
        es_err_t err =
            es_store_get_offset(l->st, r->topic[t], p, &off, l->errstr, sizeof(l->errstr));
        if (err == ES_ERR_NOT_FOUND)
            off = 0;
        else if (err)
            return err;
        l->next[t][p] = l->stored[t][p] = off;
        rd_kafka_topic_partition_list_add(tl, r->topic[t], p)->offset = pj_start_offset(off);
    }
    return ES_ERR_OK;
}

/* Partitioned mode: the group gives or takes partitions (on the loop's thread). */
static void on_rebalance(void *opaque, bool assign, rd_kafka_topic_partition_list_t *parts)
{
    pj_loop_t *l = opaque;
    pj_runner_t *r = l->r;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *e = &parts->elems[i];
        size_t t = pj_topic_index(r, e->topic);
        if (t == SIZE_MAX || e->partition >= r->nparts[t])
            continue;
        if (assign)
            e->offset = pj_start_offset(l->next[t][e->partition]);
        pj_owned_set(r, t, e->partition, assign);
        es_log_info(LOG, "%s: partition %s/%d %s%s", r->def->name, e->topic, (int)e->partition,
                    assign ? "assigned here, from offset " : "revoked",
                    assign ? (l->next[t][e->partition] > 0 ? "stored" : "0") : "");
    }
}

/* Partitioned mode: join the group; partitions come through on_rebalance. */
static es_err_t subscribe(pj_loop_t *l)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
    for (size_t t = 0; t < l->r->ntopics; t++)
        rd_kafka_topic_partition_list_add(topics, l->r->topic[t], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(es_consumer_rk(l->cons), topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        snprintf(l->errstr, sizeof(l->errstr), "subscribe: %s", rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    return ES_ERR_OK;
}

static bool loop_partitioned(const pj_loop_t *l)
{
    return l->r->pj->partitioned && l->ops == &pj_live_ops;
}

es_err_t pj_consumer_open(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    char group[PJ_GROUP_MAX], client_id[3 * PJ_URL_MAX];
    es_err_t err = ES_ERR_OK;

    snprintf(group, sizeof(group), "escqrs-projector.%s.%s", r->pj->name, r->def->name);
    pj_client_id(r->pj, client_id, sizeof(client_id));
    es_kafka_prop_t props[] = {{"client.id", client_id}, {NULL, NULL}};
    es_consumer_opts_t opts = {.group_id = group};
    if (loop_partitioned(l))
        opts = (es_consumer_opts_t){
            .group_id = group, .props = props, .on_rebalance = on_rebalance, .opaque = l};
    l->cons = es_consumer_new_opts(r->pj->conf, &opts, l->errstr, sizeof(l->errstr));
    if (!l->cons)
        return ES_ERR_KAFKA;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(16);
    for (size_t t = 0; t < r->ntopics && !err; t++) {
        err = open_serde(l, t);
        if (!err)
            err = stored_offsets(l, t, tl);
    }
    if (!err && loop_partitioned(l)) {
        err = subscribe(l);
    } else if (!err) {
        rd_kafka_resp_err_t kerr = rd_kafka_assign(es_consumer_rk(l->cons), tl);
        if (kerr) {
            snprintf(l->errstr, sizeof(l->errstr), "assign: %s", rd_kafka_err2str(kerr));
            err = ES_ERR_KAFKA;
        }
    }
    rd_kafka_topic_partition_list_destroy(tl);
    return err;
}

void pj_consumer_close(pj_loop_t *l)
{
    for (size_t t = 0; t < ES_PROJ_MAX_AGGREGATES; t++) {
        free(l->next[t]);
        free(l->stored[t]);
        free(l->in_kafka[t]);
        free(l->writing.next[t]);
        l->next[t] = l->stored[t] = l->in_kafka[t] = l->writing.next[t] = NULL;
        es_serde_destroy(l->serde[t]);
        l->serde[t] = NULL;
    }
    es_consumer_destroy(l->cons);
    l->cons = NULL;
}

/* Every partition the loop consumes (partitioned: those owned), at @p next offsets if given. */
static rd_kafka_topic_partition_list_t *all_partitions(pj_loop_t *l, bool at_next)
{
    pj_runner_t *r = l->r;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(16);
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (loop_partitioned(l) && pj_partition_here(r, t, p) == PJ_HERE_ELSEWHERE)
                continue;
            rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(tl, r->topic[t], p);
            if (at_next)
                e->offset = pj_start_offset(l->next[t][p]);
        }
    }
    return tl;
}

rd_kafka_topic_partition_list_t *pj_consumer_positions(pj_loop_t *l)
{
    rd_kafka_topic_partition_list_t *tl = all_partitions(l, false);
    rd_kafka_position(es_consumer_rk(l->cons), tl);
    return tl;
}

void pj_consumer_rewind(pj_loop_t *l)
{
    rd_kafka_topic_partition_list_t *tl = all_partitions(l, true);
    rd_kafka_error_t *e =
        rd_kafka_seek_partitions(es_consumer_rk(l->cons), tl, PJ_METADATA_TIMEOUT_MS);
    if (e) {
        es_log_warn(LOG, "%s: seek back: %s", l->r->def->name, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(tl);
}

void pj_consumer_pause(pj_loop_t *l, size_t t, int32_t p, bool paused)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, l->r->topic[t], p);
    if (paused)
        rd_kafka_pause_partitions(es_consumer_rk(l->cons), tl);
    else
        rd_kafka_resume_partitions(es_consumer_rk(l->cons), tl);
    rd_kafka_topic_partition_list_destroy(tl);
}
