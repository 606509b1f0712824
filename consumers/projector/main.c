/*
 * main.c — escqrs-projector: hosts projections, serves their queries.
 *
 * Configuration is the table below (plus the common and Kafka tables); the
 * projections come from the domain modules loaded at start-up (modules.h);
 * SIGINT/SIGTERM stop the loops at a batch boundary and close the stores.
 * kill -9 is just as safe: the stores hold their own offsets.
 */
#include "projector.h"

#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/modules.h"
#include "escqrs/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef ESCQRS_JEMALLOC
/*
 * jemalloc's options, read at its first allocation (MALLOC_CONF in the
 * environment is applied after them).  Its defaults hold freed pages for 10 s
 * in up to 8 arenas: cart_history's replay peaked at 264 MiB.  A background
 * thread giving back pages unused for 1 s keeps it at 201-206 MiB (glibc with
 * malloc_trim once a second: 204-205) for a fifth less CPU per event than
 * glibc (docs/projector.md, "Memory allocator").
 */
extern const char *malloc_conf;
const char *malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
#endif

static const es_conf_def_t projector_defs[] = {
    {.name = "http.listen",
     .type = ES_CONF_STRING,
     .defval = "127.0.0.1:8090",
     .desc = "Address of the query API (port 0 picks a free port)"},
    {.name = "admin.listen",
     .type = ES_CONF_STRING,
     .defval = "127.0.0.1:8091",
     .desc = "Address of the admin API (/admin: rebuild, freeze, digest, ...), /healthz, "
             "/readyz and /metrics; keep it off the public network (port 0: a free port)"},
    {.name = "store.path",
     .type = ES_CONF_STRING,
     .defval = "./data/projector",
     .min = 1,
     .desc = "Directory of the projections' RocksDB stores (one subdirectory each)"},
    {.name = "projections",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Comma-separated projections this process hosts; empty: every projection of the "
             "loaded modules"},
    {.name = "projector.name",
     .type = ES_CONF_STRING,
     .defval = "projector",
     .min = 1,
     .desc = "Name in DLQ topics (<agg>.events.dlq.<name>) and consumer group ids"},
    {.name = "on_error",
     .type = ES_CONF_ENUM,
     .defval = "dlq",
     .choices = "dlq|halt",
     .desc = "Poison events: send to the DLQ and go on, or halt the projection"},
    {.name = "ready.max.lag",
     .type = ES_CONF_INT,
     .defval = "1000",
     .min = 0,
     .max = INT64_MAX,
     .desc = "/readyz answers 200 only while every projection's total lag is at most this"},
    {.name = "batch.max.events",
     .type = ES_CONF_INT,
     .defval = "2000",
     .min = 1,
     .max = 100000,
     .desc = "Most events folded into one RocksDB write batch"},
    /* The prefetch bounds the projector's RSS whatever the topic size.  Once a
     * consumer's queue is past either threshold librdkafka stops fetching it;
     * the librdkafka escqrs builds (scripts/build-librdkafka) looks again after
     * 10 ms, so 8 MiB keeps a replay's rate (peak RSS 163-191 MiB against
     * 827-831 with 64 MiB).  Debian's unfixed 2.0.2 waits up to a second
     * instead, and 8 MiB costs it a third of the rate (docs/architecture.md). */
    {.name = "kafka.queued.min.messages",
     .type = ES_CONF_STRING,
     .defval = "100000",
     .desc = "Prefetched events per consumer before librdkafka pauses fetching",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "kafka.queued.max.messages.kbytes",
     .type = ES_CONF_STRING,
     .defval = "8192",
     .desc = "Prefetched KiB per consumer (a rebuild runs two) before librdkafka pauses "
             "fetching: bounds RSS whatever the topic size",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "bootstrap.from",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Admin URL of a peer projector (http://host:8091): a projection with no store "
             "yet starts from the peer's checkpoint and catches up from its offsets instead "
             "of from offset 0; a refused or failed clone falls back to offset 0 (empty: off)"},
    {.name = "bootstrap.token",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Bearer token sent to the bootstrap.from peer (a JWT granting admin:checkpoint; "
             "ESCQRS_BOOTSTRAP_TOKEN_FILE reads it from a file)"},
    {.name = "bootstrap.tls.ca.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "CA bundle to check the bootstrap.from peer's TLS certificate with"},
    {.name = "bootstrap.stall.ms",
     .type = ES_CONF_INT,
     .defval = "600000",
     .min = 1000,
     .max = 86400000,
     .desc = "A checkpoint download fails when no byte came for this long (the peer "
             "fingerprints its copy before the first byte)"},
    {.name = "projector.mode",
     .type = ES_CONF_ENUM,
     .defval = "replica",
     .choices = "replica|partitioned",
     .desc = "replica: every instance folds every partition (reads scale); partitioned: the "
             "instances share each projection's consumer group, each folds the partitions it "
             "is given, and any instance answers any query (docs/projector.md)"},
    {.name = "projector.advertise.url",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Partitioned mode: the query URL peers forward this instance's aggregates' "
             "queries to (http://host:8090); required there"},
    {.name = "projector.advertise.admin_url",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Partitioned mode: the admin URL peers read this instance's slices from when "
             "they merge a view spanning aggregates (http://host:8091); required there"},
    {.name = "projector.peer.token",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Partitioned mode: Bearer token sent to peers' slice routes (a JWT granting "
             "admin:slice; empty: none)"},
    {.name = "query.wait.max.ms",
     .type = ES_CONF_INT,
     .defval = "5000",
     .min = 0,
     .max = 600000,
     .desc = "Longest a query with min_position= waits before answering 504 timeout"},
    {.name = "memory.release.interval.ms",
     .type = ES_CONF_INT,
     .defval = "1000",
     .min = 0,
     .max = 3600000,
     .desc = "Give the C library's free memory back to the kernel this often (glibc keeps "
             "each thread's freed pages; 0: never): peak RSS replaying 10 M events into "
             "cart_history, median of five runs, 247 -> 196 MiB at the same rate.  Only "
             "with glibc's malloc: a projector built with jemalloc (the default) leaves it "
             "to jemalloc's own background thread"},
    {.name = NULL},
};

static const es_conf_def_t *const tables[] = {es_conf_common_defs,      es_kafka_conf_defs,
                                              es_kafka_watch_conf_defs, es_registry_conf_defs,
                                              es_store_conf_defs,       es_http_conf_defs,
                                              es_auth_conf_defs,        es_modules_conf_defs,
                                              projector_defs,           NULL};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

int main(int argc, char **argv, char **envp)
{
    char errstr[1024];
    es_conf_t *conf = es_conf_load_or_exit("escqrs-projector", tables, &argc, argv, envp);
    es_modules_load_or_exit(conf, "projector");
    es_projector_t *pj = NULL;
    es_http_server_t *srv = NULL, *admin = NULL;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    pj = pj_new(conf, errstr, sizeof(errstr));
    if (!pj) {
        es_log_error("projector", "%s", errstr);
        rc = 2; /* configuration: a restart does not help */
        goto out;
    }
    srv = pj_http_start(pj, errstr, sizeof(errstr));
    if (!srv) {
        es_log_error("projector", "http: %s", errstr);
        goto out;
    }
    admin = pj_admin_start(pj, errstr, sizeof(errstr));
    if (!admin) {
        es_log_error("projector", "admin.listen: %s", errstr);
        goto out;
    }
    if (pj_start(pj, errstr, sizeof(errstr))) {
        es_log_error("projector", "%s", errstr);
        goto out;
    }
    char allocator[128];
    es_log_info("projector", "serving on port %d, admin on port %d (%zu projection(s), %s)",
                es_http_server_port(srv), es_http_server_port(admin), pj->nrunners,
                es_mem_allocator(allocator, sizeof(allocator)));
    int64_t release_every = es_conf_get_int(conf, "memory.release.interval.ms");
    int64_t released_at = es_mono_ms();
    while (!stop_signal) {
        usleep(PJ_SLEEP_SLICE_MS * 1000); /* the signal may land on any thread: poll the flag */
        if (release_every && es_mono_ms() - released_at >= release_every) {
            es_mem_release_free();
            released_at = es_mono_ms();
        }
    }
    es_log_info("projector", "signal %d: stopping", (int)stop_signal);
    /* the loops first: a rebuild must not swap in while the listeners drain */
    atomic_store(&pj->stop, true);
    rc = 0;
out:
    es_http_server_stop(admin);
    es_http_server_stop(srv);
    pj_destroy(pj);
    es_conf_destroy(conf);
    return rc;
}
