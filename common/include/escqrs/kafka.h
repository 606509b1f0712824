/**
 * @file kafka.h
 * @brief Thin librdkafka wrappers that take escqrs configuration and logging.
 *
 * The wrappers own the rd_kafka_t handle and expose it (es_*_rk()) for the
 * parts of librdkafka a runtime needs in full (transactions, assignment);
 * what they add is the configuration — escqrs' deliberate defaults, then the
 * user's `kafka.*` keys verbatim — librdkafka's log routed through es_log, and
 * the topic settings of the architecture in one place (es_topic_spec_for()).
 *
 * Deliberate defaults (documented in docs/configuration.md):
 * producers `enable.idempotence=true`, `acks=all`, `partitioner=murmur2_random`
 * (Java-compatible, so a command and its events share a partition number);
 * consumers `isolation.level=read_committed`, `enable.auto.commit=false`,
 * `auto.offset.reset=earliest`.
 */
#ifndef ESCQRS_KAFKA_H
#define ESCQRS_KAFKA_H

#include "escqrs/conf.h"
#include "escqrs/err.h"

#include <librdkafka/rdkafka.h>

/** @brief Declared `kafka.` defaults and `topics.` settings; add to a program's tables. */
extern const es_conf_def_t es_kafka_conf_defs[];

/**
 * @brief librdkafka configuration for a client of @p role from @p conf, with
 *        the log routed to es_log.  @returns NULL with @p errstr on failure.
 */
rd_kafka_conf_t *es_kafka_conf_build(const es_conf_t *conf, es_conf_role_t role, char *errstr,
                                     size_t errstr_size);

/** @brief Translate a librdkafka error code into es_err_t (fatal/fenced → KAFKA_FATAL). */
es_err_t es_kafka_err(rd_kafka_resp_err_t kerr);

/* ---------------------------------------------------------------- producer */

typedef struct es_producer_s es_producer_t;

/**
 * @brief New producer.  @p transactional_id NULL for a plain idempotent producer;
 *        otherwise the producer is transactional and its transactions are
 *        initialised (fencing older instances with the same id).
 */
es_producer_t *es_producer_new(const es_conf_t *conf, const char *transactional_id, char *errstr,
                               size_t errstr_size);
rd_kafka_t *es_producer_rk(es_producer_t *prod);

/**
 * @brief Enqueue one record.  @p headers (may be NULL) is taken on success only.
 *        Waits (polling) while the local queue is full.
 */
es_err_t es_producer_send(es_producer_t *prod, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t valuelen, rd_kafka_headers_t *headers,
                          void *msg_opaque, char *errstr, size_t errstr_size);

/**
 * @brief Wait until every enqueued record is acknowledged, or @p timeout_ms.
 * @returns ES_ERR_OK only when no record of this producer has ever failed
 *          delivery: a producer that lost a record is not trusted again (the
 *          projector halts instead of moving its offsets past a lost DLQ record).
 */
es_err_t es_producer_flush(es_producer_t *prod, int timeout_ms, char *errstr, size_t errstr_size);

/** @brief Flush (bounded) and destroy; NULL is a no-op. */
void es_producer_destroy(es_producer_t *prod);

/* ---------------------------------------------------------------- consumer */

typedef struct es_consumer_s es_consumer_t;

/**
 * @brief New consumer.  @p group_id may be NULL for a consumer that only
 *        assigns partitions manually and never commits.
 */
es_consumer_t *es_consumer_new(const es_conf_t *conf, const char *group_id, char *errstr,
                               size_t errstr_size);
rd_kafka_t *es_consumer_rk(es_consumer_t *cons);

/** @brief Subscribe to @p n topics (group consumers). */
es_err_t es_consumer_subscribe(es_consumer_t *cons, const char *const *topics, size_t n,
                               char *errstr, size_t errstr_size);

/** @brief Next message or NULL on timeout; destroy it with rd_kafka_message_destroy(). */
rd_kafka_message_t *es_consumer_poll(es_consumer_t *cons, int timeout_ms);

/** @brief Close (leaving the group at once) and destroy; NULL is a no-op. */
void es_consumer_destroy(es_consumer_t *cons);

/* ------------------------------------------------------------------- admin */

typedef enum {
    ES_TOPIC_COMMANDS, /**< <agg>.commands: every command ever sent, kept forever */
    ES_TOPIC_EVENTS,   /**< <agg>.events: the source of truth, kept forever, never compacted */
    ES_TOPIC_RESULTS,  /**< <agg>.command-results: short retention */
    ES_TOPIC_DLQ,      /**< <agg>.events.dlq.<projector>: kept forever */
} es_topic_kind_t;

#define ES_TOPIC_MAX_CONFIGS 4

typedef struct es_topic_spec_s {
    char name[249]; /* Kafka's own limit on topic names */
    int partitions;
    int replication_factor;
    size_t nconfigs;
    const char *config_names[ES_TOPIC_MAX_CONFIGS];
    char config_values[ES_TOPIC_MAX_CONFIGS][32];
} es_topic_spec_t;

/**
 * @brief The topic name of @p kind for aggregate @p agg: `<agg>.commands`,
 *        `<agg>.events`, `<agg>.command-results`, `<agg>.events.dlq.<projector>`
 *        (@p projector is only used for ES_TOPIC_DLQ).
 */
void es_topic_name(const char *agg, es_topic_kind_t kind, const char *projector, char *out,
                   size_t outsz);

/** @brief The architecture's settings for a topic of @p kind named @p name. */
void es_topic_spec_for(const es_conf_t *conf, es_topic_kind_t kind, const char *name,
                       es_topic_spec_t *out);

typedef struct es_admin_s es_admin_t;

es_admin_t *es_admin_new(const es_conf_t *conf, char *errstr, size_t errstr_size);
void es_admin_destroy(es_admin_t *adm);

/**
 * @brief Create the topics; one that exists already is fine (idempotent), but a
 *        partition count that differs from the spec is reported as ES_ERR_STATE.
 */
es_err_t es_admin_create_topics(es_admin_t *adm, const es_topic_spec_t *specs, size_t n,
                                int timeout_ms, char *errstr, size_t errstr_size);

/** @brief The value of topic config @p key (caller frees) or ES_ERR_NOT_FOUND. */
es_err_t es_admin_topic_config(es_admin_t *adm, const char *topic, const char *key, int timeout_ms,
                               char **value, char *errstr, size_t errstr_size);

/** @brief Partition count of @p topic, or ES_ERR_NOT_FOUND when it does not exist. */
es_err_t es_admin_topic_partitions(es_admin_t *adm, const char *topic, int timeout_ms,
                                   int *partitions, char *errstr, size_t errstr_size);

/* ------------------------------------------------------------------- watch */

/**
 * What a daemon knows of the cluster, for /readyz and for answering quickly:
 * whether a broker answered lately, and whether consumer groups have members.
 * A thread of its own asks every `health.interval.ms` with its own handle, so
 * the answer never waits on, or disturbs, the clients doing the work.
 */
typedef struct es_kafka_watch_s es_kafka_watch_t;

typedef enum {
    ES_GROUP_UNKNOWN, /**< not asked yet, or the broker did not answer */
    ES_GROUP_EMPTY,   /**< no member: nobody consumes (e.g. no command service runs) */
    ES_GROUP_ACTIVE,  /**< members, stable or rebalancing */
} es_group_state_t;

/** @brief `health.*` keys; add to a program's tables when it uses a watch. */
extern const es_conf_def_t es_kafka_watch_conf_defs[];

/**
 * @brief Start watching the cluster of @p conf and the @p ngroups consumer
 *        groups named in @p groups (copied; may be 0).
 * @returns NULL with @p errstr when no client can be made (a bad `kafka.*`).
 */
es_kafka_watch_t *es_kafka_watch_start(const es_conf_t *conf, const char *const *groups,
                                       size_t ngroups, char *errstr, size_t errstr_size);

/**
 * @brief Did a broker answer within `health.broker.timeout.ms`?  On false,
 *        @p why says since when none did.
 */
bool es_kafka_watch_broker_ok(es_kafka_watch_t *w, char *why, size_t whysz);

/** @brief The last known state of group @p i (order of es_kafka_watch_start()). */
es_group_state_t es_kafka_watch_group(es_kafka_watch_t *w, size_t i);

/**
 * @brief Ask again now and wait (at most @p timeout_ms) until a round that
 *        began after this call has finished: before acting on a state
 *        that may be stale (a group that looked empty a second ago).
 */
void es_kafka_watch_refresh(es_kafka_watch_t *w, int timeout_ms);

/** @brief Stop the thread and free; NULL is a no-op. */
void es_kafka_watch_stop(es_kafka_watch_t *w);

#endif
