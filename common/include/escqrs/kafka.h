/**
 * @file kafka.h
 * @brief librdkafka wrappers that take escqrs configuration and logging, and
 *        the transactional batch of the command service.
 *
 * Every Kafka client of a program is built here (common/src/kafka.c), through
 * one path: escqrs' deliberate defaults, then the user's `kafka.*` keys
 * verbatim, then the properties the caller forces, then the caller's
 * defaults for keys the user left alone; librdkafka's log is routed through
 * es_log.  The handle stays reachable (es_*_rk()) for the parts of
 * librdkafka a runtime uses in full (assignment, metadata, watermarks), but
 * is never built elsewhere.  Topic settings of the architecture have one
 * home (es_topic_spec_for()).
 *
 * Deliberate defaults (documented in docs/configuration.md):
 * producers `enable.idempotence=true`, `acks=all`, `partitioner=murmur2_random`
 * (Java-compatible, so a command and its events share a partition number);
 * consumers `isolation.level=read_committed`, `enable.auto.commit=false`,
 * `auto.offset.reset=earliest`.
 *
 * Layering: depends on conf.h, err.h and librdkafka; the write side and the
 * read side include it, never the other way round.
 */
#ifndef ESCQRS_KAFKA_H
#define ESCQRS_KAFKA_H

#include "escqrs/conf.h"
#include "escqrs/err.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>

/**
 * The longest wait for one Kafka request or transactional step:
 * init_transactions, send_offsets_to_transaction, one commit attempt, abort,
 * the flush of a transaction, the committed-offsets lookup of a rewind, a
 * seek, an admin request of the daemons.  A step that takes longer is
 * treated as unanswered (a commit is then retried, see es_txn_commit()).
 */
#define ES_KAFKA_TIMEOUT_MS 30000

/** How long es_producer_destroy() waits for records still queued. */
#define ES_KAFKA_CLOSE_FLUSH_MS 5000

/** How long a send waits for delivery reports to make room in a full local queue, per poll. */
#define ES_KAFKA_QUEUE_FULL_POLL_MS 50

/** @brief Declared `kafka.` defaults and `topics.` settings; add to a program's tables. */
extern const es_conf_def_t es_kafka_conf_defs[];

/**
 * @brief librdkafka configuration for a client of @p role from @p conf, with
 *        the log routed to es_log.  @returns NULL with @p errstr on failure.
 * @remark For the clients of tests and benchmarks that need a raw handle;
 *         programs build their clients with es_producer_new_opts() and
 *         es_consumer_new_opts().
 */
rd_kafka_conf_t *es_kafka_conf_build(const es_conf_t *conf, es_conf_role_t role, char *errstr,
                                     size_t errstr_size);

/** @brief Translate a librdkafka error code into es_err_t (fatal/fenced → KAFKA_FATAL). */
es_err_t es_kafka_err(rd_kafka_resp_err_t kerr);

/** @brief One librdkafka property; lists of them end with a NULL name. */
typedef struct es_kafka_prop_s {
    const char *name; /**< librdkafka's name, without the `kafka.` prefix */
    const char *value;
} es_kafka_prop_t;

/* ---------------------------------------------------------------- producer */

typedef struct es_producer_s es_producer_t;
typedef struct es_consumer_s es_consumer_t;

/**
 * @brief Called for every record's delivery report, on the thread that polls
 *        or flushes the producer.  @p m->_private is the record's msg_opaque;
 *        on success @p m carries the record's partition and offset.
 */
typedef void es_delivery_cb_t(void *opaque, const rd_kafka_message_t *m);

typedef struct es_producer_opts_s {
    /** NULL: an idempotent producer; otherwise transactional (see es_producer_init_transactions()).
     */
    const char *transactional_id;
    /** Set whatever the user configured (NULL: none). */
    const es_kafka_prop_t *props;
    /** Set unless the user configured `kafka.<name>` (NULL: none). */
    const es_kafka_prop_t *defaults;
    es_delivery_cb_t *on_delivery; /**< NULL: none */
    void *opaque;                  /**< for on_delivery */
    /** Wait of each transactional step; 0 means ES_KAFKA_TIMEOUT_MS (tests shorten it). */
    int txn_timeout_ms;
} es_producer_opts_t;

/**
 * @brief New producer from @p conf and @p opts; contacts no broker.
 * @returns NULL with @p errstr when librdkafka refuses the configuration.
 */
es_producer_t *es_producer_new_opts(const es_conf_t *conf, const es_producer_opts_t *opts,
                                    char *errstr, size_t errstr_size);

/**
 * @brief Initialise the transactions of a transactional producer, fencing
 *        older instances with the same transactional id (and aborting their
 *        open transaction).  Waits at most ES_KAFKA_TIMEOUT_MS.
 * @returns ES_ERR_OK, or ES_ERR_KAFKA with @p errstr (the broker did not
 *          answer in time, or refused): destroy the producer and retry later.
 */
es_err_t es_producer_init_transactions(es_producer_t *prod, char *errstr, size_t errstr_size);

/**
 * @brief New producer with escqrs' defaults: es_producer_new_opts() and, when
 *        @p transactional_id is not NULL, es_producer_init_transactions().
 * @returns NULL with @p errstr when either fails.
 */
es_producer_t *es_producer_new(const es_conf_t *conf, const char *transactional_id, char *errstr,
                               size_t errstr_size);
rd_kafka_t *es_producer_rk(es_producer_t *prod);

/** One record to produce. */
typedef struct es_record_s {
    const char *topic;
    int32_t partition; /**< RD_KAFKA_PARTITION_UA: the partitioner's choice */
    const void *key;
    size_t keylen;
    const void *value;
    size_t valuelen;
    rd_kafka_headers_t *headers; /**< may be NULL; taken on success only */
    void *msg_opaque;            /**< given to the delivery callback */
} es_record_t;

/**
 * @brief The size librdkafka counts for @p rec against the producer's
 *        `message.max.bytes` (rd_kafka_msg_max_wire_size(): the most a v2
 *        record's framing takes, its key, its value and its serialised headers).
 */
size_t es_record_wire_size(const es_record_t *rec);

/**
 * @brief Whether @p prod would take @p rec: false when es_producer_send_record()
 *        would answer "message size too large" (MSG_SIZE_TOO_LARGE) at once,
 *        which no retry changes.
 */
bool es_producer_fits(const es_producer_t *prod, const es_record_t *rec);

/** What a send does while the producer's local queue is full. */
typedef enum {
    ES_SEND_WAIT,    /**< poll (serving delivery reports) until there is room */
    ES_SEND_NO_WAIT, /**< answer ES_ERR_QUEUE_FULL at once: the caller sheds load */
} es_send_mode_t;

/**
 * @brief Enqueue @p rec (key and value are copied).
 * @returns ES_ERR_OK, ES_ERR_QUEUE_FULL (ES_SEND_NO_WAIT only), or the error
 *          with @p errstr; @p rec->headers stay the caller's on failure.
 */
es_err_t es_producer_send_record(es_producer_t *prod, const es_record_t *rec, es_send_mode_t mode,
                                 char *errstr, size_t errstr_size);

/**
 * @brief Enqueue one record to the partitioner's choice of partition.
 *        @p headers (may be NULL) is taken on success only.  Waits (polling)
 *        while the local queue is full.
 */
es_err_t es_producer_send(es_producer_t *prod, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t valuelen, rd_kafka_headers_t *headers,
                          void *msg_opaque, char *errstr, size_t errstr_size);

/** @brief Serve delivery reports for at most @p timeout_ms (a producer's poll thread). */
void es_producer_poll(es_producer_t *prod, int timeout_ms);

/**
 * @brief Wait until every enqueued record is acknowledged, or @p timeout_ms.
 * @returns ES_ERR_OK only when no record of this producer has ever failed
 *          delivery: a producer that lost a record is not trusted again (the
 *          projector halts instead of moving its offsets past a lost DLQ record).
 * @remark Not for transactional producers: they use es_txn_flush(), which
 *         judges one transaction at a time.
 */
es_err_t es_producer_flush(es_producer_t *prod, int timeout_ms, char *errstr, size_t errstr_size);

/** @brief Flush (at most ES_KAFKA_CLOSE_FLUSH_MS) and destroy; NULL is a no-op. */
void es_producer_destroy(es_producer_t *prod);

/**
 * @brief Destroy without flushing or waiting for a broker that may be gone;
 *        NULL is a no-op.  An open transaction is left to the next instance
 *        with the same transactional id, whose init_transactions aborts it:
 *        the only safe way out of a commit of unknown outcome (KAFKA-17754).
 */
void es_producer_destroy_now(es_producer_t *prod);

/* ------------------------------------------------------------ transactions */

/*
 * The transactional batch of an exactly-once consume-transform-produce loop
 * (the command service):
 *
 *   es_txn_begin → es_producer_send_record (to explicit partitions) →
 *   es_txn_flush (delivery reports give each record's offset) → more sends →
 *   es_txn_send_offsets (the consumer's group metadata of now) →
 *   es_txn_commit
 *
 * and on ES_TXN_ABORT from any step, es_txn_abort, which also rewinds the
 * consumer to its committed offsets so the batch is consumed again.
 * es_txn_send_offsets may run on another thread while this one sends and
 * flushes (librdkafka serves one transactional call beside produces), but
 * never beside another es_txn_* call: wait for it before the commit or the
 * abort.  Each
 * step answers what the caller must do next: a class, not a message to
 * search.
 */

/** What a transactional step leaves the caller to do; the graver, the larger. */
typedef enum {
    ES_TXN_OK,    /**< go on */
    ES_TXN_ABORT, /**< abortable: es_txn_abort(), then process the batch again */
    /**
     * Fatal or fenced (including FENCED_INSTANCE_ID, which a broker restart
     * can cause for a static member), or an error librdkafka does not call
     * abortable: destroy the clients with es_producer_destroy_now() and
     * es_consumer_destroy_now() (never abort: the commit's outcome may be
     * unknown) and create them again.
     */
    ES_TXN_FATAL,
} es_txn_rc_t;

/** @brief begin_transaction; resets the transaction's delivery failures. */
es_txn_rc_t es_txn_begin(es_producer_t *prod, char *errstr, size_t errstr_size);

/**
 * @brief Mark @p parts as part of the open transaction before any record goes
 *        to them, so the coordinator registers them together, in one
 *        AddPartitionsToTxn, instead of each on its first record.  Needs
 *        librdkafka's escqrs fix (scripts/build-librdkafka,
 *        fix_txn_add_partitions), looked up at run time: without it, or for a
 *        partition the producer does not know yet, the first record registers
 *        the partition as before.  Mark only partitions the transaction will
 *        write to: every marked one gets the commit's markers (one that no
 *        record follows, say after its topic grew, costs that and nothing more:
 *        unit.test_kafka_txn).
 * @returns true if the partitions were marked.
 */
bool es_txn_add_partitions(es_producer_t *prod, const rd_kafka_topic_partition_list_t *parts);

/**
 * @brief The partition the producer's partitioner (kafka.partitioner) gives
 *        @p key in a topic of @p partition_cnt partitions, or -1 when it is
 *        not a keyed partitioner librdkafka exports.
 */
int32_t es_producer_key_partition(const es_producer_t *prod, const void *key, size_t keylen,
                                  int32_t partition_cnt);

/**
 * @brief Wait until every record of the transaction has its delivery report.
 * @returns ES_TXN_OK when all were delivered; ES_TXN_ABORT when one failed
 *          or the flush timed out; ES_TXN_FATAL when the producer is fatal.
 */
es_txn_rc_t es_txn_flush(es_producer_t *prod, char *errstr, size_t errstr_size);

/**
 * @brief send_offsets_to_transaction of @p offsets (the next offset to
 *        consume of each partition) with the group metadata of @p cons as it
 *        is now: its member id and generation are what fence a zombie owner
 *        after a rebalance (KIP-447).
 */
es_txn_rc_t es_txn_send_offsets(es_producer_t *prod, es_consumer_t *cons,
                                const rd_kafka_topic_partition_list_t *offsets, char *errstr,
                                size_t errstr_size);

/**
 * @brief Before a commit whose answer did not arrive is tried again:
 *        @p why is librdkafka's message.  @returns false to stop retrying
 *        (the process is stopping).
 */
typedef bool es_txn_retry_cb_t(void *opaque, int attempt, const char *why);

/**
 * @brief commit_transaction.  A retriable error (the answer did not arrive)
 *        is retried, never aborted (KAFKA-17754: an abort after a commit of
 *        unknown outcome can lose the commit's records or double them).
 *        @p on_retry (may be NULL) is called before each retry.
 * @returns ES_TXN_OK once committed; ES_TXN_FATAL when @p on_retry said stop
 *          (the open transaction is left to the next instance) or the
 *          producer is fatal or fenced; ES_TXN_ABORT when abortable.
 */
es_txn_rc_t es_txn_commit(es_producer_t *prod, es_txn_retry_cb_t *on_retry, void *opaque,
                          char *errstr, size_t errstr_size);

/**
 * @brief abort_transaction, then es_consumer_rewind() of @p cons over the
 *        partitions of @p offsets, so the aborted batch is consumed again.
 * @returns ES_TXN_OK, or ES_TXN_FATAL when the abort (INVALID_TXN_STATE after
 *          a broker restart) or the rewind failed: re-created clients start
 *          from the committed offsets by construction.
 */
es_txn_rc_t es_txn_abort(es_producer_t *prod, es_consumer_t *cons,
                         const rd_kafka_topic_partition_list_t *offsets, char *errstr,
                         size_t errstr_size);

/* ---------------------------------------------------------------- consumer */

/**
 * @brief Called inside a rebalance, before the wrapper applies it (assigns
 *        @p parts when @p assign, else revokes them; eager or cooperative as
 *        the group's protocol says).  Work done here — catching a store up to
 *        the assigned partitions — happens before any of their records is
 *        polled.  On assign, it may set each partition's offset: where its
 *        consumption starts (left as it is: the group's committed offset).
 */
typedef void es_rebalance_cb_t(void *opaque, bool assign, rd_kafka_topic_partition_list_t *parts);

typedef struct es_consumer_opts_s {
    /** NULL: a consumer that only assigns partitions manually and never commits. */
    const char *group_id;
    /** Set whatever the user configured (NULL: none). */
    const es_kafka_prop_t *props;
    /** Set unless the user configured `kafka.<name>` (NULL: none). */
    const es_kafka_prop_t *defaults;
    es_rebalance_cb_t *on_rebalance; /**< NULL: librdkafka assigns by itself */
    void *opaque;                    /**< for on_rebalance */
} es_consumer_opts_t;

/** @brief New consumer from @p conf and @p opts.  @returns NULL with @p errstr. */
es_consumer_t *es_consumer_new_opts(const es_conf_t *conf, const es_consumer_opts_t *opts,
                                    char *errstr, size_t errstr_size);

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
/**
 * @brief Seconds since @p m was produced (its CreateTime), 0 when that is in the future
 *        (clock skew), -1 when it has none; meaningful across hosts only as far as
 *        their clocks agree.
 */
double es_message_age_s(const rd_kafka_message_t *m);

/**
 * @brief The next record of a consumer that reads its assignment to the end
 *        (enable.partition.eof=true), with a stall limit.
 *
 * librdkafka's fetcher can stop for good after a broker restart (upstream
 * issue 5153): no record, no end, no error.  A reader that waits for the
 * end would wait for ever, so this one gives up after @p stall_ms without
 * either, and the caller re-creates the consumer (kafka_read.c).  A
 * read_committed end that stops short of the high watermark (a transaction
 * open after it, whose records may still commit) is not the end: it waits
 * on for the transaction, within the same @p stall_ms.
 *
 * @returns ES_ERR_OK with @p *out set (destroy it with
 *          rd_kafka_message_destroy()), ES_ERR_OK with @p *out NULL at the
 *          end of a partition, ES_ERR_TIMED_OUT after @p stall_ms without
 *          either (@p errstr names the positions), ES_ERR_KAFKA_FATAL, or
 *          ES_ERR_STATE once @p *stop is set (@p stop may be NULL).
 *          Other consumer errors are logged and waited through.
 */
es_err_t es_consumer_next_to_end(es_consumer_t *cons, const volatile sig_atomic_t *stop,
                                 int stall_ms, rd_kafka_message_t **out, char *errstr,
                                 size_t errstr_size);

/**
 * @brief Seek the partitions of @p parts (NULL: every partition assigned now)
 *        back to the group's committed offsets (the beginning where nothing
 *        is committed), so what was polled after them is polled again.
 * @returns ES_ERR_OK, or ES_ERR_KAFKA with @p errstr when the assignment,
 *          the committed offsets or the seek failed: the consumer's position
 *          is then unknown, and only a new consumer (which starts from the
 *          committed offsets) is safe.
 */
es_err_t es_consumer_rewind(es_consumer_t *cons, const rd_kafka_topic_partition_list_t *parts,
                            char *errstr, size_t errstr_size);

/** @brief Close (leaving the group at once) and destroy; NULL is a no-op. */
void es_consumer_destroy(es_consumer_t *cons);

/**
 * @brief Destroy without leaving the group or waiting for a broker that may
 *        be gone (a static member's partitions stay its own until its
 *        session times out); NULL is a no-op.
 */
void es_consumer_destroy_now(es_consumer_t *cons);

/* ------------------------------------------------------------------- admin */

typedef enum {
    ES_TOPIC_COMMANDS, /**< <agg>.commands: every command ever sent, kept forever */
    ES_TOPIC_EVENTS,   /**< <agg>.events: the source of truth, kept forever, never compacted */
    ES_TOPIC_RESULTS,  /**< <agg>.command-results: short retention */
    ES_TOPIC_DLQ,      /**< <agg>.events.dlq.<projector>: kept forever */
    ES_TOPIC_STATE,    /**< <agg>.state: latest state per aggregate, compacted (write side) */
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
 *        `<agg>.events`, `<agg>.command-results`, `<agg>.events.dlq.<projector>`,
 *        `<agg>.state` (@p projector is only used for ES_TOPIC_DLQ).
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
 * whether a broker answered lately, whether consumer groups have members, and
 * the partition counts of the topics it works with.
 * A thread of its own asks every `health.interval.ms` with its own handle, so
 * the answer never waits on, or disturbs, the clients doing the work.
 */
typedef struct es_kafka_watch_s es_kafka_watch_t;

typedef enum {
    ES_GROUP_UNKNOWN, /**< no answer yet (a failed look keeps the last answer) */
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

/**
 * @brief Also watch the partition count of @p topic, which this program works
 *        with @p count partitions of (a topic watched already keeps the count
 *        it was first given).  Kafka lets an operator add partitions to a
 *        topic under a running program (docs/operations.md, "Never add
 *        partitions").
 */
void es_kafka_watch_topic(es_kafka_watch_t *w, const char *topic, int count);

/** @brief The partition count of watched @p topic the cluster last gave (0: none yet). */
int es_kafka_watch_topic_partitions(es_kafka_watch_t *w, const char *topic);

/**
 * @brief Do the watched topics still have the partition counts given?  On
 *        false, @p why names the first that does not.
 */
bool es_kafka_watch_topics_ok(es_kafka_watch_t *w, char *why, size_t whysz);

/** @brief Stop the thread and free; NULL is a no-op. */
void es_kafka_watch_stop(es_kafka_watch_t *w);

#endif
