/*
 * kafka_int.h — internals of the Kafka wrappers, shared by kafka.c (which
 * builds every librdkafka handle), kafka_txn.c, kafka_admin.c and
 * kafka_watch.c.  Private to libescqrs (and its unit tests): programs
 * include escqrs/kafka.h.
 */
#ifndef ESCQRS_KAFKA_INT_H
#define ESCQRS_KAFKA_INT_H

#include "escqrs/kafka.h"

#include <stdatomic.h>
#include <stdbool.h>

/** What a handle needs beyond the configuration of its role. */
typedef struct es_kafka_handle_opts_s {
    const es_kafka_prop_t *props;    /* set whatever the user configured */
    const es_kafka_prop_t *defaults; /* set unless the user configured kafka.<name> */
    bool quiet; /* no error callback and no log: a watch must not flood the log */
    void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
    void *opaque; /* for the callbacks above */
} es_kafka_handle_opts_t;

/**
 * @brief The one place a librdkafka handle is made: the configuration of
 *        @p role (es_kafka_conf_build()), then @p o's properties, callbacks
 *        and opaque.  @p o may be NULL.  @returns NULL with @p errstr.
 */
rd_kafka_t *es_kafka_handle_new(const es_conf_t *conf, es_conf_role_t role, rd_kafka_type_t type,
                                const es_kafka_handle_opts_t *o, char *errstr, size_t errstr_size);

/**
 * @brief What one rd_kafka_list_groups() answer (@p err, @p gl) says of the
 *        group @p group, @p last being what was known before (kafka_watch.c).
 */
es_group_state_t es_kafka_group_state_from_listing(es_group_state_t last, rd_kafka_resp_err_t err,
                                                   const struct rd_kafka_group_list *gl,
                                                   const char *group);

/** A librdkafka partitioner function (rd_kafka_msg_partitioner_murmur2 and the like). */
typedef int32_t es_key_partitioner_t(const rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                                     int32_t partition_cnt, void *rkt_opaque, void *msg_opaque);

/** librdkafka's function for the partitioner @p rk was configured with, when it places
 *  a keyed record by its key alone; NULL otherwise (kafka_record.c). */
es_key_partitioner_t *es_kafka_key_partitioner(rd_kafka_t *rk);

/** The partition count of @p topic, asked of the cluster through handle @p rk
 *  (kafka_admin.c; es_admin_topic_partitions() and the watch use it). */
es_err_t es_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                   int *partitions, char *errstr, size_t errstr_size);

/** The producer @p rk's message.max.bytes (kafka_record.c). */
size_t es_kafka_max_record_bytes(rd_kafka_t *rk);

struct es_producer_s {
    rd_kafka_t *rk;
    /* Deliveries that failed: rd_kafka_flush() succeeds once the queue is
     * empty, delivered or not, so failures are counted here, for good. */
    atomic_uint failed;
    char first_failure[256]; /* written by the first failure only (failed 0 -> 1) */
    /* The first delivery error of the open transaction (0: none); reset when
     * a transaction begins, so an aborted one does not condemn the next. */
    atomic_int txn_err;
    int txn_timeout_ms;
    size_t max_record_bytes; /* its message.max.bytes: librdkafka refuses a larger record */
    char *transactional_id;  /* NULL: not transactional */
    es_delivery_cb_t *on_delivery;
    void *opaque;
    /* librdkafka's partitioner function of kafka.partitioner (NULL: not a keyed one) */
    es_key_partitioner_t *key_partitioner;
};

struct es_consumer_s {
    rd_kafka_t *rk;
    es_rebalance_cb_t *on_rebalance;
    void *opaque;
};

#endif
