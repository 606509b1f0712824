/*
 * bench_rebuild.c — how fast does escqrs-projector rebuild a view, next to
 * the ceiling of reading the same topic raw with kcat, in the same run?
 *
 *   escqrs-bench-rebuild [--events N] [--partitions P] [--projector PATH]
 *                        [--projection NAME] [--topic-prefix PFX]
 *                        [--prepare-only] [--produce-raw N]
 *   escqrs-bench-rebuild --delete-topics PFX   (every topic named PFX*; PFX
 *                        starts with "bench-": a run's clean-up)
 *
 * 1. produces N valid cart events (the tests' workload model, with the
 *    envelope headers the command service writes: 200-250 bytes a record)
 *    to `<pfx>.cart.events`, unless that topic already holds N records
 *    (--prepare-only stops here: bench/run prepares its topics once);
 * 2. times `kcat -C -e -o beginning -q -f ''` over the topic (raw consume),
 *    after one untimed pass: the first read of a topic may come from the disk
 *    and every later one (the projector's too) from the page cache, and a
 *    cold ceiling flattered the ratio of whichever projection ran first
 *    (2026-12-03-0939: kcat 0.96 M events/s cold against 1.72-2.41 M warm),
 *    and its CPU seconds (user + system) per million events, to compare
 *    with the projector's in hours when kcat's rate is a fraction of its
 *    usual one (4 December: 0.7-1.0 M events/s against 2.2-2.7 M);
 * 3. starts escqrs-projector (build it without sanitizers) on an empty store
 *    and times the initial build until it is caught up;
 * 4. POSTs a blue/green rebuild and takes its duration from the admin API;
 * 5. samples the projector's RSS every 100 ms throughout and reports the
 *    peak (VmHWM) and the RSS at the end of each phase, to show it is flat,
 *    and its CPU seconds (user + system) per million events of each phase;
 * 6. reads the rebuilt store's RocksDB event log (LOG, LOG.old.*) for what the
 *    background threads did during the rebuild: flushes and their wall time,
 *    compactions with their CPU time and bytes written (part of the CPU
 *    above; `rocksdb.stats` is only dumped every 10 minutes), then deletes
 *    the store (ESCQRS_BENCH_KEEP_STORE set: kept) and keeps its log.
 * --produce-raw N instead times the transport's produce ceiling: N records
 * cycling through 10 000 pre-encoded events (same sizes, same headers, same
 * producer settings), to `<pfx>.cart.events-raw`.
 * Every figure is also printed as one `RESULT key=value ...` line for bench/run.
 * Reports events/s of each and the ratios to kcat.  Uses the stack given by
 * ESCQRS_TEST_BOOTSTRAP / ESCQRS_TEST_REGISTRY (default: the test stack).
 */
#include "benchkafka.h"
#include "eventgen.h"
#include "shipped.h"

#include "escqrs/kafka.h"
#include "escqrs/util.h"
#include "escqrs/registry.h"
#include "escqrs/envelope.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};

/* ------------------------------------------------------------- produce */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err) {
        fprintf(stderr, "bench: delivery failed: %s\n", rd_kafka_err2str(m->err));
        exit(1);
    }
}

/* A sample of encoded records, replayed by --produce-raw. */
#define RAW_SAMPLE 10000

#define TOPIC_WAIT_STEP_S 5   /* between looks at a topic the broker cannot count yet */
#define TOPIC_WAIT_MAX_S  900 /* a restarted broker loading 10+ GB of logs takes minutes */
static struct {
    char key[64];
    es_buf_t value;
    rd_kafka_headers_t *headers;
} raw[RAW_SAMPLE];
static long raw_n, raw_count;

static void raw_keep(const char *id, const es_buf_t *b, rd_kafka_headers_t *h)
{
    snprintf(raw[raw_count].key, sizeof(raw[raw_count].key), "%s", id);
    es_buf_set(&raw[raw_count].value, b->data, b->len);
    raw[raw_count].headers = rd_kafka_headers_copy(h);
    raw_count++;
}

/* Produce one record; the producer takes @p h (NULL for none). */

static void produce(es_conf_t *conf, const char *topic, long n)
{
    char err[512];
    es_registry_t *reg = NULL;
    es_serde_t *serde = bench_serde(topic, "cart.events", &reg);
    rd_kafka_t *rk = bench_bulk_producer(conf, dr_cb);
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    es_sim_init(&sim, "bench", 99, 256);
    es_buf_t b = {0};
    const char *id;
    double t0 = es_mono_s();
    for (long i = 0; i < n; i++) {
        avro_value_t *v = es_sim_next(&sim, g, 0, &id);
        if (es_serde_encode(serde, v, &b, err, sizeof(err)))
            bench_die("encode", err);
        rd_kafka_headers_t *h = NULL;
        if (es_event_headers_from_value(v, &h, err, sizeof(err)))
            bench_die("headers", err);
        if (raw_n > 0) { /* keep a sample of records for the raw produce ceiling */
            raw_keep(id, &b, h);
            rd_kafka_headers_destroy(h);
            if (raw_count == RAW_SAMPLE)
                break;
            continue;
        }
        bench_send(rk, topic, id, strlen(id), b.data, b.len, h);
        if (i % 1000000 == 999999)
            fprintf(stderr, "bench: produced %ld events\n", i + 1);
        if (sim.ncarts > 200000) { /* bound the model's memory */
            es_sim_free(&sim);
            char pfx[32];
            snprintf(pfx, sizeof(pfx), "bench%ld", i);
            es_sim_init(&sim, pfx, (uint64_t)i + 1, 256);
        }
    }
    if (raw_n > 0) { /* the ceiling: replay the sample, nothing else per record */
        char rawtopic[400];
        snprintf(rawtopic, sizeof(rawtopic), "%s-raw", topic);
        long bytes = 0;
        t0 = es_mono_s();
        for (long i = 0; i < raw_n; i++) {
            long k = i % raw_count;
            bytes += (long)(raw[k].value.len + strlen(raw[k].key));
            bench_send(rk, rawtopic, raw[k].key, strlen(raw[k].key), raw[k].value.data,
                       raw[k].value.len, rd_kafka_headers_copy(raw[k].headers));
        }
        rd_kafka_flush(rk, 120000);
        double dt = es_mono_s() - t0;
        printf("raw produce: %ld records in %.1f s (%.0f records/s, %.1f MB/s of keys and "
               "values)\n",
               raw_n, dt, (double)raw_n / dt, (double)bytes / dt / 1e6);
        printf(
            "RESULT phase=produce_raw records=%ld seconds=%.3f records_per_s=%.0f mb_per_s=%.2f\n",
            raw_n, dt, (double)raw_n / dt, (double)bytes / dt / 1e6);
    }
    rd_kafka_flush(rk, 120000);
    double dt = es_mono_s() - t0;
    if (raw_n == 0)
        printf("produce: %ld events in %.1f s (%.0f events/s)\n", n, dt, (double)n / dt);
    rd_kafka_destroy(rk);
    es_buf_free(&b);
    es_sim_free(&sim);
    es_evgen_destroy(g);
    es_serde_destroy(serde);
    es_registry_destroy(reg);
}

/* ------------------------------------------------------------ processes */

static pid_t spawn(char *const argv[], const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            if (!log)
                dup2(fd, 1);
            close(fd);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static long rss_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            v = strtol(line + fl + 1, NULL, 10);
    }
    fclose(f);
    return v;
}

/* CPU seconds (user + system) the process has used so far. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Records in @p topic (sum of high watermarks) once: -1 when it does not exist, -2 when the broker
 * cannot say yet (a partition without a leader or a watermark, as while a
 * restarted broker loads its logs: counting those as 0 would call a full
 * topic empty). */
static long topic_records_once(rd_kafka_t *rk, const char *topic, char *why, size_t whysz)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    long total = -2;
    if (kerr) {
        snprintf(why, whysz, "metadata: %s", rd_kafka_err2str(kerr));
    } else if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        total = -1;
    } else if (md->topics[0].err) {
        snprintf(why, whysz, "%s", rd_kafka_err2str(md->topics[0].err));
    } else {
        total = 0;
        for (int p = 0; p < md->topics[0].partition_cnt && total >= 0; p++) {
            int64_t lo, hi;
            rd_kafka_resp_err_t werr =
                md->topics[0].partitions[p].leader < 0
                    ? RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
                    : rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
            if (werr) {
                snprintf(why, whysz, "partition %d: %s", p, rd_kafka_err2str(werr));
                total = -2;
            } else {
                total += (long)hi;
            }
        }
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return total;
}

/* Records in @p topic (-1: no such topic), waiting while the broker cannot say. */
static long topic_records(es_conf_t *conf, const char *topic)
{
    char err[1024], why[400] = "";
    es_consumer_t *c = es_consumer_new(conf, NULL, err, sizeof(err));
    if (!c)
        bench_die("consumer", err);
    long total;
    for (int waited_s = 0;
         (total = topic_records_once(es_consumer_rk(c), topic, why, sizeof(why))) == -2;
         waited_s += TOPIC_WAIT_STEP_S) {
        if (waited_s >= TOPIC_WAIT_MAX_S) {
            snprintf(err, sizeof(err), "%s: the broker cannot count it after %d s: %s", topic,
                     waited_s, why);
            bench_die("topic", err);
        }
        fprintf(stderr, "bench: %s: %s; waiting for the broker (loading its logs?)\n", topic, why);
        sleep(TOPIC_WAIT_STEP_S);
    }
    es_consumer_destroy(c);
    return total;
}

static void create_topic(es_conf_t *conf, const char *topic)
{
    char err[512];
    es_admin_t *adm = es_admin_new(conf, err, sizeof(err));
    es_topic_spec_t spec;
    es_topic_spec_for(conf, ES_TOPIC_EVENTS, topic, &spec);
    if (!adm || es_admin_create_topics(adm, &spec, 1, 30000, err, sizeof(err)))
        bench_die("create topic", err);
    es_admin_destroy(adm);
}

static size_t wcb(char *p, size_t s, size_t n, void *ud)
{
    es_buf_append(ud, p, s * n);
    return s * n;
}

static json_t *http(int port, const char *method, const char *path)
{
    char url[512];
    es_buf_t b = {0};
    CURL *c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    json_t *j = NULL;
    if (curl_easy_perform(c) == CURLE_OK && b.data)
        j = json_loadb(b.data, b.len, 0, NULL);
    curl_easy_cleanup(c);
    es_buf_free(&b);
    return j;
}

static json_t *projection(json_t *list, const char *name)
{
    json_t *arr = json_object_get(list, "projections");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0)
            return o;
    }
    return NULL;
}

static bool caught_up(json_t *o)
{
    json_t *parts = json_object_get(o, "partitions");
    if (!json_array_size(parts))
        return false;
    for (size_t k = 0; k < json_array_size(parts); k++) {
        json_t *p = json_array_get(parts, k);
        json_int_t hi = json_integer_value(json_object_get(p, "high"));
        if (hi < 0 || json_integer_value(json_object_get(p, "applied")) < hi)
            return false;
    }
    return true;
}

/* What RocksDB's background threads did for one store, from its own event log. */
typedef struct {
    int flushes, compactions;
    double flush_s;          /* wall time from each flush's start to its end, summed */
    double compaction_cpu_s; /* as RocksDB counts it */
    double compaction_out_mb;
} rocks_work_t;

/* Add the EVENT_LOG_v1 lines of one RocksDB log file at @p path to @p w. */
static bool add_rocks_log(const char *path, rocks_work_t *w)
{
    es_buf_t log = {0};
    if (!es_buf_read_file(&log, path)) {
        es_buf_free(&log);
        return false;
    }
    es_buf_append(&log, "", 1);
    json_t *flush_start = json_object(); /* job number -> start, in microseconds */
    for (char *line = log.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        const char *ev = strstr(line, "EVENT_LOG_v1 ");
        json_t *j = ev ? json_loads(ev + strlen("EVENT_LOG_v1 "), 0, NULL) : NULL;
        const char *what = json_string_value(json_object_get(j, "event"));
        if (!what) {
            json_decref(j);
            continue;
        }
        json_int_t t = json_integer_value(json_object_get(j, "time_micros"));
        char job[32];
        snprintf(job, sizeof(job), "%lld",
                 (long long)json_integer_value(json_object_get(j, "job")));
        json_t *started = json_object_get(flush_start, job);
        if (!strcmp(what, "flush_started")) {
            json_object_set_new(flush_start, job, json_integer(t));
        } else if (!strcmp(what, "flush_finished") && started) {
            w->flushes++;
            w->flush_s += (double)(t - json_integer_value(started)) / 1e6;
        } else if (!strcmp(what, "compaction_finished")) {
            w->compactions++;
            w->compaction_cpu_s +=
                (double)json_integer_value(json_object_get(j, "compaction_time_cpu_micros")) / 1e6;
            w->compaction_out_mb +=
                (double)json_integer_value(json_object_get(j, "total_output_size")) / 1e6;
        }
        json_decref(j);
    }
    json_decref(flush_start);
    es_buf_free(&log);
    return true;
}

/*
 * Read the logs of <store>/<projection>/g<N> of the newest generation N (a
 * rebuild's shadow store): the EVENT_LOG_v1 lines of its flushes and
 * compactions, from LOG and from every LOG.old.* (RocksDB renames LOG when
 * a store is opened again, as a shadow written blind is at its swap).
 * False when there is no log.
 */
static bool rocks_work(const char *store, const char *pname, rocks_work_t *w)
{
    char dir[400], gdir[420], path[700];
    int gen = -1;
    bool found = false;
    memset(w, 0, sizeof(*w));
    snprintf(dir, sizeof(dir), "%s/%s", store, pname);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        int g;
        char tail;
        if (sscanf(e->d_name, "g%d%c", &g, &tail) == 1 && g > gen)
            gen = g;
    }
    if (d)
        closedir(d);
    if (gen < 0)
        return false;
    snprintf(gdir, sizeof(gdir), "%s/g%d", dir, gen);
    d = opendir(gdir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, "LOG") && strncmp(e->d_name, "LOG.old.", 8))
            continue;
        snprintf(path, sizeof(path), "%s/%s", gdir, e->d_name);
        found |= add_rocks_log(path, w);
    }
    if (d)
        closedir(d);
    return found;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The run's store goes with it (a 10 M-event history is about 370 MB); its log stays. */
static void remove_store(const char *store)
{
    if (getenv("ESCQRS_BENCH_KEEP_STORE"))
        return;
    if (nftw(store, remove_entry, 16, FTW_DEPTH | FTW_PHYS))
        fprintf(stderr, "could not remove the run's store %s\n", store);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    long n = 5000000;
    int partitions = 4;
    const char *projector = "build-bench/consumers/projector/escqrs-projector";
    const char *pname = "cart_view";
    char prefix[128] = "";
    char err[512], topic[300], agg[200];
    bool prepare_only = false;
    const char *delete_prefix = NULL;

    es_shipped_modules_register();

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prepare-only")) {
            prepare_only = true;
            memmove(&argv[i], &argv[i + 1], sizeof(char *) * (size_t)(argc - i));
            argc--;
            i--;
        }
    }

    for (int i = 1; i < argc; i += 2) {
        /* a flag without its value, or --help: not a benchmark of the defaults */
        if (i + 1 == argc)
            bench_die("usage", "see the comment at the top of bench/read/bench_rebuild.c");
        if (!strcmp(argv[i], "--events"))
            n = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--partitions"))
            partitions = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--projector"))
            projector = argv[i + 1];
        else if (!strcmp(argv[i], "--projection"))
            pname = argv[i + 1];
        else if (!strcmp(argv[i], "--topic-prefix"))
            snprintf(prefix, sizeof(prefix), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--produce-raw"))
            raw_n = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--delete-topics"))
            delete_prefix = argv[i + 1];
        else
            bench_die("usage", "see the comment at the top of bench/read/bench_rebuild.c");
    }
    const char *bootstrap = bench_env_or("ESCQRS_TEST_BOOTSTRAP", "127.0.0.1:19092");
    es_conf_t *conf = es_conf_new("bench", tables);
    char np[16];
    snprintf(np, sizeof(np), "%d", partitions);
    if (es_conf_set(conf, "kafka.bootstrap.servers", bootstrap, "bench", err, sizeof(err)) ||
        es_conf_set(conf, "topics.partitions", np, "bench", err, sizeof(err)))
        bench_die("conf", err);

    if (delete_prefix) {
        bench_delete_topics(conf, delete_prefix);
        es_conf_destroy(conf);
        return 0;
    }
    if (!prefix[0])
        snprintf(prefix, sizeof(prefix), "bench-%ld", (long)time(NULL));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    es_topic_name(agg, ES_TOPIC_EVENTS, NULL, topic, sizeof(topic));
    if (raw_n > 0) {
        char rawtopic[400];
        snprintf(rawtopic, sizeof(rawtopic), "%s-raw", topic);
        create_topic(conf, rawtopic);
        produce(conf, topic, RAW_SAMPLE);
        es_conf_destroy(conf);
        return 0;
    }
    long have = topic_records(conf, topic);
    if (have < 0) {
        create_topic(conf, topic);
        produce(conf, topic, n);
    } else if (have < n) {
        fprintf(stderr, "bench: %s holds %ld records, fewer than %ld: use another prefix\n", topic,
                have, n);
        return 1;
    } else {
        n = have;
    }
    printf("topic: %s (%d partitions, %ld events)\n", topic, partitions, n);
    if (prepare_only) {
        es_conf_destroy(conf);
        return 0;
    }

    /* raw consume ceiling */
    char *kcat[] = {"kcat", "-C", "-b", (char *)bootstrap, "-t",
                    topic,  "-e", "-o", "beginning",       "-q",
                    "-f",   "",   NULL};
    double t0 = 0, kcat_s = 0, kcat_cpu_s = 0;
    for (int pass = 0; pass < 2; pass++) { /* the first warms the page cache, untimed */
        int st;
        struct rusage ru;
        t0 = es_mono_s();
        pid_t kp = spawn(kcat, NULL);
        wait4(kp, &st, 0, &ru);
        kcat_s = es_mono_s() - t0;
        kcat_cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bench_die("kcat", "failed");
    }
    double kcat_rate = (double)n / kcat_s, kcat_cpu_per_m = kcat_cpu_s * 1e6 / (double)n;
    printf("kcat raw consume: %.2f s, %.0f events/s, %.2f CPU s per million events\n", kcat_s,
           kcat_rate, kcat_cpu_per_m);
    printf("RESULT phase=kcat events=%ld seconds=%.3f events_per_s=%.0f cpu_s_per_m=%.3f\n", n,
           kcat_s, kcat_rate, kcat_cpu_per_m);

    /* initial build and a blue/green rebuild */
    char store[300], log[400], a[7][400];
    int port = free_port(); /* the admin listener: /admin lives there only */
    snprintf(store, sizeof(store), "/tmp/%s-store-%ld", prefix, (long)time(NULL)); /* empty */
    snprintf(log, sizeof(log), "%s.log", store);
    snprintf(a[0], sizeof(a[0]), "kafka.bootstrap.servers=%s", bootstrap);
    snprintf(a[1], sizeof(a[1]), "registry.url=%s",
             bench_env_or("ESCQRS_TEST_REGISTRY", "http://127.0.0.1:18081/apis/ccompat/v7"));
    snprintf(a[2], sizeof(a[2]), "store.path=%s", store);
    snprintf(a[3], sizeof(a[3]), "admin.listen=127.0.0.1:%d", port);
    snprintf(a[4], sizeof(a[4]), "aggregate.prefix=%s.", prefix);
    snprintf(a[5], sizeof(a[5]), "projections=%s", pname);
    snprintf(a[6], sizeof(a[6]), "http.listen=127.0.0.1:0"); /* queries: not used here */
    char *pargv[] = {
        (char *)projector, "--set", a[0],    "--set", a[1],    "--set", a[2], "--set", a[3],
        "--set",           a[4],    "--set", a[5],    "--set", a[6],    NULL};
    t0 = es_mono_s();
    pid_t pp = spawn(pargv, log);
    long peak = 0, rss_build = 0, rss_rebuild = 0;
    double build_s = -1;
    for (;;) {
        usleep(100 * 1000);
        long r = rss_kb(pp, "VmRSS");
        if (r < 0)
            bench_die("projector", "exited; see its log");
        peak = r > peak ? r : peak;
        json_t *j = http(port, "GET", "/admin/projections");
        json_t *o = projection(j, pname);
        bool done = o && caught_up(o);
        json_decref(j);
        if (done) {
            build_s = es_mono_s() - t0;
            rss_build = r;
            break;
        }
    }
    double cpu_build = cpu_s(pp);
    printf("projector initial build (%s): %.2f s, %.0f events/s (incl. start-up), %.2f CPU s per "
           "million events\n",
           pname, build_s, (double)n / build_s, cpu_build * 1e6 / (double)n);

    char path[200];
    snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", pname);
    json_t *started = http(port, "POST", path);
    json_t *refused = json_object_get(started, "error");
    if (!started || refused)
        bench_die("rebuild refused", refused
                                         ? json_string_value(json_object_get(started, "message"))
                                         : "no answer to the POST");
    json_decref(started);
    json_int_t dur = 0, events = 0;
    for (;;) {
        usleep(100 * 1000);
        long r = rss_kb(pp, "VmRSS");
        peak = r > peak ? r : peak;
        rss_rebuild = r;
        json_t *j = http(port, "GET", "/admin/projections");
        json_t *rb = json_object_get(projection(j, pname), "rebuild");
        bool running = json_is_true(json_object_get(rb, "running"));
        dur = json_integer_value(json_object_get(rb, "last_duration_ms"));
        events = json_integer_value(json_object_get(rb, "last_events"));
        const char *failed = json_string_value(json_object_get(rb, "last_error"));
        if (!running && failed && *failed)
            bench_die("rebuild failed", failed);
        json_decref(j);
        if (!running && dur > 0)
            break;
    }
    long hwm = rss_kb(pp, "VmHWM");
    double cpu_rebuild = cpu_s(pp) - cpu_build;
    rocks_work_t rw;
    bool have_rw = rocks_work(store, pname, &rw); /* the rebuilt store's, to the rebuild's end */
    kill(pp, SIGTERM);
    waitpid(pp, NULL, 0);
    double rebuild_rate = (double)events * 1000.0 / (double)dur;
    printf("projector rebuild (%s, shadow store while live serves): %lld events in %.2f s, "
           "%.0f events/s\n",
           pname, (long long)events, (double)dur / 1000.0, rebuild_rate);
    printf("ratio rebuild / kcat: %.2f   initial build / kcat: %.2f\n", rebuild_rate / kcat_rate,
           ((double)n / build_s) / kcat_rate);
    printf("projector RSS: peak (VmHWM) %.1f MiB, sampled peak %.1f MiB, after build %.1f MiB, "
           "at end of rebuild %.1f MiB\n",
           (double)hwm / 1024.0, (double)peak / 1024.0, (double)rss_build / 1024.0,
           (double)rss_rebuild / 1024.0);
    double per_m = 1e6 / (double)(events ? events : 1);
    char rocks[160] = ""; /* the RESULT keys of RocksDB's work; none without its log */
    if (have_rw) {
        printf("RocksDB in the rebuilt store: %d flushes, %.2f s; %d compactions, %.2f CPU s, "
               "%.0f MB written (%.2f s per million events in all)\n",
               rw.flushes, rw.flush_s, rw.compactions, rw.compaction_cpu_s, rw.compaction_out_mb,
               (rw.flush_s + rw.compaction_cpu_s) * per_m);
        snprintf(rocks, sizeof(rocks),
                 " rebuild_flush_s_per_m=%.3f rebuild_compaction_cpu_s_per_m=%.3f "
                 "rebuild_compaction_out_mb=%.0f",
                 rw.flush_s * per_m, rw.compaction_cpu_s * per_m, rw.compaction_out_mb);
    } else {
        printf("RocksDB in the rebuilt store: no LOG under %s/%s\n", store, pname);
    }
    printf("RESULT phase=projector projection=%s events=%ld build_events_per_s=%.0f "
           "build_cpu_s_per_m=%.2f rebuild_events=%lld rebuild_events_per_s=%.0f "
           "rebuild_cpu_s_per_m=%.2f peak_rss_mib=%.1f kcat_events_per_s=%.0f "
           "kcat_cpu_s_per_m=%.3f%s\n",
           pname, n, (double)n / build_s, cpu_build * 1e6 / (double)n, (long long)events,
           rebuild_rate, cpu_rebuild * per_m, (double)hwm / 1024.0, kcat_rate, kcat_cpu_per_m,
           rocks);
    remove_store(store);
    es_conf_destroy(conf);
    return 0;
}
