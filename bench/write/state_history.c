/*
 * state_history.c — history for the command service's cold-start benchmark
 * (bench/write/state-restore.sh): an aggregate's topics with N account
 * events already in <prefix>account.events.
 *
 *   escqrs-bench-state-history --prefix PFX --events N [--accounts A]
 *
 * Creates <prefix>account.{commands,events,command-results,state} with the
 * settings of es_topic_spec_for(), then produces N events over A accounts
 * (default 10 000), round robin: each account's AccountOpened (version 1),
 * then Deposited events (versions 2, 3, ...), each with its own command id.
 * The records are what the command service writes for those commands — the
 * same envelope (tests/eventgen.c), the event headers, key = account id,
 * the partition of Kafka's murmur2 of the key (the gateway's partitioner,
 * whose partition number the service writes the events to) — produced
 * without transactions, which read_committed readers see like committed
 * ones.  Going through the gateway would take hours at 10 M (docs/write-side.md,
 * "Measured"); the catch-up reads these records exactly as it reads the
 * service's own.  The state topic is left empty: the benchmark lets the real
 * command service write its baseline (state.c), so the restore reads records
 * the service made.  Uses ESCQRS_TEST_BOOTSTRAP / ESCQRS_TEST_REGISTRY.
 */
#include "benchkafka.h"
#include "eventgen.h"

#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/util.h"
#include "escqrs/registry.h"
#include "escqrs/schemas.h"
#include "escqrs/serde.h"
#include "shipped.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};

static long failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        failed++;
}

static void create_topics(es_conf_t *conf, const char *agg)
{
    static const es_topic_kind_t kinds[] = {ES_TOPIC_COMMANDS, ES_TOPIC_EVENTS, ES_TOPIC_RESULTS,
                                            ES_TOPIC_STATE};
    es_topic_spec_t specs[4];
    char err[512], name[300];
    for (size_t i = 0; i < 4; i++) {
        es_topic_name(agg, kinds[i], NULL, name, sizeof(name));
        es_topic_spec_for(conf, kinds[i], name, &specs[i]);
    }
    es_admin_t *adm = es_admin_new(conf, err, sizeof(err));
    if (!adm || es_admin_create_topics(adm, specs, 4, 30000, err, sizeof(err)))
        bench_die("create topics", err);
    es_admin_destroy(adm);
}

static void produce(es_conf_t *conf, const char *topic, long n, long accounts)
{
    char err[512], id[32];
    es_registry_t *reg = NULL;
    es_serde_t *serde = bench_serde(topic, "account.events", &reg);
    rd_kafka_t *rk = bench_bulk_producer(conf, dr_cb);
    es_evgen_t *g = es_evgen_new("account.events");
    es_buf_t b = {0};
    double t0 = es_mono_s();
    for (long i = 0; i < n; i++) {
        long acct = i % accounts, version = i / accounts + 1;
        snprintf(id, sizeof(id), "acct-%ld", acct);
        avro_value_t *v =
            es_evgen_account(g, id, version, 1700000000000 + i,
                             version == 1 ? "AccountOpened" : "Deposited", "bench", 1 + i % 1000);
        rd_kafka_headers_t *h = NULL;
        if (es_serde_encode(serde, v, &b, err, sizeof(err)) ||
            es_event_headers_from_value(v, &h, err, sizeof(err)))
            bench_die("encode", err);
        bench_send(rk, topic, id, strlen(id), b.data, b.len, h);
        if (i % 1000000 == 999999)
            fprintf(stderr, "state-history: produced %ld events\n", i + 1);
    }
    rd_kafka_flush(rk, 300000);
    double dt = es_mono_s() - t0;
    if (failed)
        bench_die("produce", "some events were not delivered");
    printf("RESULT phase=history events=%ld accounts=%ld seconds=%.1f\n", n, accounts, dt);
    rd_kafka_destroy(rk);
    es_buf_free(&b);
    es_evgen_destroy(g);
    es_serde_destroy(serde);
    es_registry_destroy(reg);
}

int main(int argc, char **argv, char **envp)
{
    const char *prefix = NULL;
    long n = 0, accounts = 10000;
    char agg[256], topic[300], boot[300];
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--prefix"))
            prefix = argv[i + 1];
        else if (!strcmp(argv[i], "--events"))
            n = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--accounts"))
            accounts = strtol(argv[i + 1], NULL, 10);
    }
    if (!prefix || n <= 0 || accounts <= 0) {
        fprintf(stderr, "usage: escqrs-bench-state-history --prefix PFX --events N "
                        "[--accounts A]\n");
        return 2;
    }
    es_shipped_modules_register();
    snprintf(boot, sizeof(boot), "kafka.bootstrap.servers=%s",
             bench_env_or("ESCQRS_TEST_BOOTSTRAP", "127.0.0.1:19092"));
    char *cargv[] = {argv[0], "--set", boot, NULL};
    int cargc = 3;
    es_conf_t *conf =
        es_conf_load_or_exit("escqrs-bench-state-history", tables, &cargc, cargv, envp);
    snprintf(agg, sizeof(agg), "%saccount", prefix);
    es_topic_name(agg, ES_TOPIC_EVENTS, NULL, topic, sizeof(topic));
    create_topics(conf, agg);
    produce(conf, topic, n, accounts);
    es_conf_destroy(conf);
    return 0;
}
