/*
 * readtest.h — harness of the read-side integration tests: a stream of
 * contract events produced to a real topic with their positions and plain
 * values recorded, escqrs-projector run as a subprocess, HTTP GETs, and a
 * projector's RocksDB store compared with the independent model of
 * viewmodel.h (never with the projection's own fold).
 */
#ifndef ESCQRS_TEST_READTEST_H
#define ESCQRS_TEST_READTEST_H

#include "escqrs/conf.h"
#include "escqrs/projection.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "eventgen.h"
#include "viewmodel.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* One produced record and where it landed. */
typedef struct rt_rec_s {
    char *key;
    char *value; /* framed (wire format) bytes */
    size_t len;
    int32_t partition;
    int64_t offset;
    int64_t ts;
    bool poison;          /* not decodable, or refused by the projections, on purpose */
    bool aborted;         /* in an aborted transaction: read_committed never delivers it */
    bool deleted;         /* before its partition's log start (rt_delete_records) */
    vm_event_t *ev;       /* the event's plain values, taken before encoding; NULL for raw bytes */
    char traceparent[56]; /* its `traceparent` header (every record has one, and a
                             `correlation-id` header equal to its key) */
} rt_rec_t;

/* A topic being written by a test. */
typedef struct rt_topic_s {
    char name[249];
    int partitions;
    es_serde_t *serde; /* registered under <name>-value */
    es_registry_t *reg;
    rt_rec_t *recs;
    size_t n, cap;
    void *rk;         /* rd_kafka_t */
    size_t txn_start; /* first record of the open transaction */
} rt_topic_t;

/** @brief Configuration for the test stack (bootstrap, topics.partitions=@p partitions). */
es_conf_t *rt_conf(int partitions);
/** @brief Create topic `<agg>.events` and its serde for schema @p schema ("cart.events"). */
void rt_topic_init(rt_topic_t *tp, es_conf_t *conf, const char *agg, const char *schema);
void rt_topic_free(rt_topic_t *tp);
/** @brief Encode and produce @p value keyed by @p key (recorded; flushed by rt_topic_flush). */
void rt_produce(rt_topic_t *tp, const char *key, avro_value_t *value);
/** @brief Produce the next @p n events of workload model @p sim, then flush. */
void rt_produce_sim(rt_topic_t *tp, es_sim_t *sim, es_evgen_t *g, int n);
/** @brief Produce raw bytes (poison events). */
void rt_produce_raw(rt_topic_t *tp, const char *key, const void *data, size_t len);
/** @brief Wait for every delivery; fails the test on any delivery error. */
void rt_topic_flush(rt_topic_t *tp);
/* Move each partition p's log start to before[p] (Kafka's DeleteRecords); the
 * records before it are marked deleted, and no model counts them. */
void rt_delete_records(rt_topic_t *tp, const int64_t *before);
/** @brief Make @p tp's producer transactional (id @p txn_id), like the command service's. */
void rt_topic_transactional(rt_topic_t *tp, es_conf_t *conf, const char *txn_id);
void rt_txn_begin(rt_topic_t *tp);
/** @brief Commit, or abort and mark the transaction's records aborted. */
void rt_txn_end(rt_topic_t *tp, bool commit);

/** A projector subprocess. */
typedef struct rt_proc_s {
    pid_t pid;
    int port;          /* queries */
    int admin_port;    /* /admin (rt_http sends /admin paths there) */
    const char *token; /* bearer token sent with every request, or NULL */
    bool keep_ports;   /* set: start on port and admin_port as given (advertised URLs) */
    char store[512];
    char log[600];
} rt_proc_t;

/**
 * @brief Start escqrs-projector with the test stack and @p nsets extra
 *        `--set k=v` strings; stderr goes to <store>.log.
 */
void rt_proc_start(rt_proc_t *p, const char *store, const char *prefix, const char *const *sets,
                   size_t nsets);
/** @brief kill -9 and reap. */
void rt_proc_kill9(rt_proc_t *p);
/** @brief SIGTERM and reap; returns the exit status. */
int rt_proc_stop(rt_proc_t *p);
bool rt_proc_alive(rt_proc_t *p);

/** @brief GET http://127.0.0.1:<port><path>; returns the status (0 when unreachable). */
int rt_http(const rt_proc_t *p, const char *method, const char *path, json_t **body);
/** @brief Like rt_http() but the raw body into @p out (for /metrics). */
int rt_http_raw(const rt_proc_t *p, const char *method, const char *path, es_buf_t *out);
/** @brief Value of the metric line starting with @p series in /metrics (-1 if absent). */
double rt_metric(const rt_proc_t *p, const char *series);
/** @brief Wait until the projector answers /healthz and every projection has left
 *         state "starting", i.e. serves queries (or @p timeout_ms). */
bool rt_wait_up(const rt_proc_t *p, int timeout_ms);
/** @brief Wait until projection @p name applied everything up to the topics' ends. */
bool rt_wait_caught_up(const rt_proc_t *p, const char *name, int timeout_ms);
/** @brief /readyz answers @p want (200 or 503) within @p timeout_s; its reason in @p reason. */
bool rt_wait_ready_status(rt_proc_t *p, int want, int timeout_s, char *reason, size_t rsz);
/** @brief The first projection's applied offsets reach the end of every partition of @p tp as
 *         its producer saw it, within @p timeout_s. */
bool rt_wait_applied_to_end(rt_proc_t *p, rt_topic_t *tp, int timeout_s);
/** @brief The same for projection @p name (NULL: the first listed). */
bool rt_wait_projection_at_end(rt_proc_t *p, const char *name, rt_topic_t *tp, int timeout_s);
/** @brief How many carts of @p sim's model @p p answers otherwise than the model (GET
 *         /v1/carts/{id}, of frozen view @p view unless NULL; the first three are printed). */
size_t rt_carts_differing(rt_proc_t *p, es_sim_t *sim, const char *view);
/** @brief Frozen view @p label of projection @p name in GET /admin/projections (a new
 *         reference), or NULL. */
json_t *rt_frozen_entry(const rt_proc_t *p, const char *name, const char *label);
/** @brief Projection @p name's object of GET /admin/projections (a new reference), or NULL. */
json_t *rt_projection(const rt_proc_t *p, const char *name);
/**
 * @brief Projection @p name's digest (GET /admin/projections/{name}/digest) as one
 *        comparable string, "views/view_keys offsets/offset_keys"; false (and a
 *        string of empty fields) when the projector does not answer 200.
 */
bool rt_digest(const rt_proc_t *p, const char *name, char *out, size_t outsz);

/**
 * @brief The model (viewmodel.h) of @p tp's records that a projector must have
 *        applied: delivered, not aborted, not poison, below @p next[partition]
 *        (NULL: every partition to its end) and stamped at or before
 *        @p until_ms (< 0: any time).  Sets *applied to the number of such
 *        records, poison included (they move the offsets too), and *refused to
 *        the number of non-poison ones the model refused or could not read (a
 *        workload the oracle does not cover: callers count it as a failure).
 */
vm_t *rt_model(const rt_topic_t *tp, const int64_t *next, int64_t until_ms, size_t *applied,
               size_t *refused);
/**
 * @brief Compare the views of projection @p def in the RocksDB store at @p dir
 *        (closed by its projector) with model @p m; returns the number of
 *        differences (SIZE_MAX when the store does not open).
 */
size_t rt_compare_views(const char *dir, const es_proj_def_t *def, const vm_t *m);
/**
 * @brief Compare the live store of projection @p def under @p store_root
 *        (closed, the projector being dead) with the model of exactly @p tp's
 *        records below the offsets stored in that same store: an event lost or
 *        applied twice, or a fold that computes a view wrongly, is a
 *        difference.  Every view is read through the projection's query
 *        handler and compared with the model's answer; the store may hold no
 *        other view.  Returns the number of differences and sets *applied to
 *        the number of records below the offsets.  The projection's fold is
 *        never called.
 */
size_t rt_compare_store(const char *store_root, const es_proj_def_t *def, rt_topic_t *tp,
                        size_t *applied);

/* One record of a DLQ topic, from its headers. */
typedef struct rt_dlq_rec_s {
    char src_topic[249];
    int32_t src_partition;
    int64_t src_offset;
    char error[64];
    char projection[64];
    size_t len;                                /* value bytes (the original record) */
    char traceparent[64], correlation_id[160]; /* the original's request context headers */
} rt_dlq_rec_t;

/**
 * @brief Every record of `<agg>.events.dlq.<projector>` (@p agg with its
 *        prefix); returns the count (0 when the topic does not exist).
 */
size_t rt_dlq_read(es_conf_t *conf, const char *agg, const char *projector, rt_dlq_rec_t **out);

#endif
