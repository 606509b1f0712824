/*
 * readtest.c — the read-side integration harness (see readtest.h).
 *
 * Records are produced with a plain librdkafka producer whose delivery
 * reports record each record's partition and offset, so a test knows
 * exactly which events lie below any stored offset.  Each record also keeps
 * the plain values of the event it carries, taken from the Avro value before
 * encoding: the expected views are modelled from what the test wrote, not
 * from what the projector's serde reads back, and never through a
 * projection's fold (viewmodel.c).
 */
#include "readtest.h"

#include "escqrs/kafka.h"
#include "escqrs/registry.h"
#include "escqrs/store.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static const es_conf_def_t *const rt_tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};

es_conf_t *rt_conf(int partitions)
{
    char err[512], n[16];
    es_conf_t *c = es_conf_new("itread", rt_tables);
    snprintf(n, sizeof(n), "%d", partitions);
    if (es_conf_set(c, "kafka.bootstrap.servers", es_test_bootstrap(), "test", err, sizeof(err)) ||
        es_conf_set(c, "topics.partitions", n, "test", err, sizeof(err))) {
        fprintf(stderr, "rt_conf: %s\n", err);
        abort();
    }
    return c;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rt_topic_t *tp = opaque;
    size_t i = (size_t)(uintptr_t)m->_private;
    if (m->err) {
        fprintf(stderr, "delivery of record %zu failed: %s\n", i, rd_kafka_err2str(m->err));
        tp->recs[i].partition = -1;
        return;
    }
    rd_kafka_timestamp_type_t tst;
    tp->recs[i].partition = m->partition;
    tp->recs[i].offset = m->offset;
    tp->recs[i].ts = rd_kafka_message_timestamp(m, &tst);
}

static rd_kafka_t *topic_producer(rt_topic_t *tp, es_conf_t *conf, const char *txn_id)
{
    char err[512];
    rd_kafka_conf_t *kc = es_kafka_conf_build(conf, ES_CONF_ROLE_PRODUCER, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(kc);
    rd_kafka_conf_set(kc, "linger.ms", "20", NULL, 0);
    if (txn_id)
        CU_ASSERT_EQUAL_FATAL(rd_kafka_conf_set(kc, "transactional.id", txn_id, err, sizeof(err)),
                              RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
    rd_kafka_conf_set_opaque(kc, tp);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    return rk;
}

void rt_topic_transactional(rt_topic_t *tp, es_conf_t *conf, const char *txn_id)
{
    rd_kafka_flush(tp->rk, 10000);
    rd_kafka_destroy(tp->rk);
    tp->rk = topic_producer(tp, conf, txn_id);
    rd_kafka_error_t *e = rd_kafka_init_transactions(tp->rk, 30000);
    if (e)
        fprintf(stderr, "init_transactions: %s\n", rd_kafka_error_string(e));
    CU_ASSERT_PTR_NULL_FATAL(e);
}

void rt_txn_begin(rt_topic_t *tp)
{
    rd_kafka_error_t *e = rd_kafka_begin_transaction(tp->rk);
    CU_ASSERT_PTR_NULL_FATAL(e);
    tp->txn_start = tp->n;
}

void rt_txn_end(rt_topic_t *tp, bool commit)
{
    rt_topic_flush(tp);
    rd_kafka_error_t *e = commit ? rd_kafka_commit_transaction(tp->rk, 30000)
                                 : rd_kafka_abort_transaction(tp->rk, 30000);
    if (e)
        fprintf(stderr, "end transaction: %s\n", rd_kafka_error_string(e));
    CU_ASSERT_PTR_NULL_FATAL(e);
    for (size_t i = tp->txn_start; !commit && i < tp->n; i++)
        tp->recs[i].aborted = true;
}

void rt_topic_init(rt_topic_t *tp, es_conf_t *conf, const char *agg, const char *schema)
{
    char err[512], subject[300];
    memset(tp, 0, sizeof(*tp));
    es_topic_name(agg, ES_TOPIC_EVENTS, NULL, tp->name, sizeof(tp->name));
    tp->partitions = (int)es_conf_get_int(conf, "topics.partitions");
    es_admin_t *adm = es_admin_new(conf, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(adm);
    es_topic_spec_t spec;
    es_topic_spec_for(conf, ES_TOPIC_EVENTS, tp->name, &spec);
    CU_ASSERT_EQUAL_FATAL(es_admin_create_topics(adm, &spec, 1, 20000, err, sizeof(err)),
                          ES_ERR_OK);
    es_admin_destroy(adm);

    es_registry_t *reg = tp->reg = es_registry_new(es_test_registry(), 5000, 3, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    snprintf(subject, sizeof(subject), "%s-value", tp->name);
    tp->serde = es_serde_new(reg, subject, es_schema_text(schema), true, 0, err, sizeof(err));
    if (!tp->serde)
        fprintf(stderr, "serde: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tp->serde);

    tp->rk = topic_producer(tp, conf, NULL);
}

void rt_topic_free(rt_topic_t *tp)
{
    if (tp->rk) {
        rd_kafka_flush(tp->rk, 10000);
        rd_kafka_destroy(tp->rk);
    }
    for (size_t i = 0; i < tp->n; i++) {
        free(tp->recs[i].key);
        free(tp->recs[i].value);
        free(tp->recs[i].ev);
    }
    free(tp->recs);
    es_serde_destroy(tp->serde);
    es_registry_destroy(tp->reg); /* after the serde that uses it */
    memset(tp, 0, sizeof(*tp));
}

static void produce_bytes(rt_topic_t *tp, const char *key, const void *data, size_t len,
                          bool poison, vm_event_t *ev)
{
    if (tp->n == tp->cap) {
        tp->cap = tp->cap ? tp->cap * 2 : 1024;
        tp->recs = es_realloc(tp->recs, tp->cap * sizeof(*tp->recs));
    }
    rt_rec_t *r = &tp->recs[tp->n];
    memset(r, 0, sizeof(*r));
    r->key = es_strdup(key);
    r->value = es_malloc(len ? len : 1);
    memcpy(r->value, data, len);
    r->len = len;
    r->partition = -2; /* not delivered yet */
    r->poison = poison;
    r->ev = ev;
    /* a request context per record, as the command service writes (the DLQ keeps it) */
    snprintf(r->traceparent, sizeof(r->traceparent), "00-%032zx-00f067aa0ba902b7-01", tp->n + 1);
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "traceparent", -1, r->traceparent, -1);
        rd_kafka_header_add(h, "correlation-id", -1, r->key, -1);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            tp->rk, RD_KAFKA_V_TOPIC(tp->name), RD_KAFKA_V_KEY(r->key, strlen(r->key)),
            RD_KAFKA_V_VALUE(r->value, r->len), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tp->n), RD_KAFKA_V_END);
        if (e)
            rd_kafka_headers_destroy(h); /* kept by librdkafka only on success */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(tp->rk, 50);
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(e, RD_KAFKA_RESP_ERR_NO_ERROR);
        break;
    }
    tp->n++;
    rd_kafka_poll(tp->rk, 0);
}

void rt_produce(rt_topic_t *tp, const char *key, avro_value_t *value)
{
    es_buf_t b = {0};
    char err[512];
    vm_event_t *ev = es_malloc(sizeof(*ev));
    if (!vm_event_from_value(value, ev)) { /* not a contract event: the model cannot use it */
        free(ev);
        ev = NULL;
    }
    CU_ASSERT_EQUAL_FATAL(es_serde_encode(tp->serde, value, &b, err, sizeof(err)), ES_ERR_OK);
    produce_bytes(tp, key, b.data, b.len, false, ev);
    es_buf_free(&b);
}

void rt_produce_sim(rt_topic_t *tp, es_sim_t *sim, es_evgen_t *g, int n)
{
    const char *id;
    for (int i = 0; i < n; i++) {
        avro_value_t *v = es_sim_next(sim, g, 0, &id);
        rt_produce(tp, id, v);
    }
    rt_topic_flush(tp);
}

void rt_produce_raw(rt_topic_t *tp, const char *key, const void *data, size_t len)
{
    produce_bytes(tp, key, data, len, true, NULL);
}

void rt_topic_flush(rt_topic_t *tp)
{
    CU_ASSERT_EQUAL(rd_kafka_flush(tp->rk, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
    size_t bad = 0;
    for (size_t i = 0; i < tp->n; i++)
        bad += tp->recs[i].partition < 0;
    CU_ASSERT_EQUAL_FATAL(bad, 0);
}

void rt_delete_records(rt_topic_t *tp, const int64_t *before)
{
    es_test_delete_records(tp->rk, tp->name, before, tp->partitions);
    for (size_t i = 0; i < tp->n; i++)
        if (tp->recs[i].offset < before[tp->recs[i].partition])
            tp->recs[i].deleted = true;
}

/* ---------------------------------------------------------- subprocess */

void rt_proc_start(rt_proc_t *p, const char *store, const char *prefix, const char *const *sets,
                   size_t nsets)
{
    char bin[600], a[16][600];
    const char *bd = getenv("ESCQRS_BUILD_DIR"); /* set by ctest */
    char *argv[64];
    size_t n = 0, k = 0;

    snprintf(p->store, sizeof(p->store), "%s", store);
    snprintf(p->log, sizeof(p->log), "%s.log", store);
    if (!p->keep_ports) {
        p->port = es_test_free_port();
        p->admin_port = es_test_free_port();
    }
    snprintf(bin, sizeof(bin), "%s/consumers/projector/escqrs-projector", bd ? bd : "build");
    argv[n++] = bin;
    snprintf(a[k], sizeof(a[k]), "kafka.bootstrap.servers=%s", es_test_bootstrap());
    k++;
    snprintf(a[k], sizeof(a[k]), "registry.url=%s", es_test_registry());
    k++;
    snprintf(a[k], sizeof(a[k]), "store.path=%s", store);
    k++;
    snprintf(a[k], sizeof(a[k]), "http.listen=127.0.0.1:%d", p->port);
    k++;
    snprintf(a[k], sizeof(a[k]), "admin.listen=127.0.0.1:%d", p->admin_port);
    k++;
    snprintf(a[k], sizeof(a[k]), "aggregate.prefix=%s", prefix);
    k++;
    for (size_t i = 0; i < k; i++) {
        argv[n++] = "--set";
        argv[n++] = a[i];
    }
    for (size_t i = 0; i < nsets && n < 60; i++) {
        argv[n++] = "--set";
        argv[n++] = (char *)sets[i];
    }
    argv[n] = NULL;
    /* inherited by the child; set here because the child of a threaded
     * process may only call async-signal-safe functions before exec */
    setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0", 0);
    p->pid = es_test_fork(); /* dies with this test, even by kill -9 */
    if (p->pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, argv);
        _exit(127);
    }
    CU_ASSERT_FATAL(p->pid > 0);
}

/* @p p's process was reaped: forget it (never signal a reused pid). */
static void proc_reaped(rt_proc_t *p)
{
    es_test_child_reaped(p->pid);
    p->pid = 0;
}

bool rt_proc_alive(rt_proc_t *p)
{
    int st;
    if (p->pid <= 0)
        return false;
    if (waitpid(p->pid, &st, WNOHANG) == 0)
        return true;
    proc_reaped(p);
    return false;
}

void rt_proc_kill9(rt_proc_t *p)
{
    int st;
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    proc_reaped(p);
}

int rt_proc_stop(rt_proc_t *p)
{
    int st = 0;
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            proc_reaped(p);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(100 * 1000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    proc_reaped(p);
    return -2;
}

/* ---------------------------------------------------------------- http */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    es_buf_append(ud, ptr, size * nmemb);
    return size * nmemb;
}

int rt_http_raw(const rt_proc_t *p, const char *method, const char *path, es_buf_t *out)
{
    char url[1200];
    long code = 0;
    CURL *c = curl_easy_init();
    /* /admin lives on the admin listener; everything else on the query listener */
    int port = !strncmp(path, "/admin", 6) && p->admin_port ? p->admin_port : p->port;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *hdrs = NULL;
    if (p->token) {
        char h[8300];
        snprintf(h, sizeof(h), "Authorization: Bearer %s", p->token);
        hdrs = curl_slist_append(hdrs, h);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    return (int)code;
}

int rt_http(const rt_proc_t *p, const char *method, const char *path, json_t **body)
{
    es_buf_t b = {0};
    int code = rt_http_raw(p, method, path, &b);
    if (body)
        *body = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    es_buf_free(&b);
    return code;
}

double rt_metric(const rt_proc_t *p, const char *series)
{
    es_buf_t b = {0};
    double v = rt_http_raw(p, "GET", "/metrics", &b) == 200 ? es_test_metric(b.data, series) : -1;
    es_buf_free(&b);
    return v;
}

/* Up: /healthz answers and no projection is still "starting" (its store open). */
static bool serving(const rt_proc_t *p)
{
    json_t *b = NULL;
    bool ok = rt_http(p, "GET", "/healthz", NULL) == 200 &&
              rt_http(p, "GET", "/admin/projections", &b) == 200;
    json_t *arr = json_object_get(b, "projections");
    for (size_t i = 0; ok && i < json_array_size(arr); i++) {
        const char *st = json_string_value(json_object_get(json_array_get(arr, i), "state"));
        ok = st && strcmp(st, "starting") != 0;
    }
    json_decref(b);
    return ok;
}

bool rt_wait_up(const rt_proc_t *p, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (serving(p))
            return true;
        usleep(100 * 1000);
    }
    return false;
}

bool rt_digest(const rt_proc_t *p, const char *name, char *out, size_t outsz)
{
    char path[300];
    json_t *b = NULL;
    snprintf(path, sizeof(path), "/admin/projections/%s/digest", name);
    bool ok = rt_http(p, "GET", path, &b) == 200;
    snprintf(out, outsz, "%s/%lld %s/%lld",
             es_test_or_empty(json_string_value(json_object_get(b, "views_fnv1a64"))),
             (long long)json_integer_value(json_object_get(b, "view_keys")),
             es_test_or_empty(json_string_value(json_object_get(b, "offsets_fnv1a64"))),
             (long long)json_integer_value(json_object_get(b, "offset_keys")));
    json_decref(b);
    return ok;
}

json_t *rt_projection(const rt_proc_t *p, const char *name)
{
    json_t *b = NULL, *found = NULL;
    if (rt_http(p, "GET", "/admin/projections", &b) == 200) {
        json_t *arr = json_object_get(b, "projections");
        for (size_t i = 0; i < json_array_size(arr) && !found; i++) {
            json_t *o = json_array_get(arr, i);
            if (es_test_str_eq(json_string_value(json_object_get(o, "name")), name))
                found = json_incref(o);
        }
    }
    json_decref(b);
    return found;
}

bool rt_wait_caught_up(const rt_proc_t *p, const char *name, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 200) {
        json_t *o = rt_projection(p, name);
        json_t *parts = json_object_get(o, "partitions");
        bool ok = o && json_array_size(parts) > 0 &&
                  !json_is_true(json_object_get(json_object_get(o, "rebuild"), "running"));
        for (size_t k = 0; ok && k < json_array_size(parts); k++) {
            json_t *pp = json_array_get(parts, k);
            json_int_t hi = json_integer_value(json_object_get(pp, "high"));
            json_int_t ap = json_integer_value(json_object_get(pp, "applied"));
            ok = hi >= 0 && ap >= hi;
        }
        json_decref(o);
        if (ok)
            return true;
        usleep(200 * 1000);
    }
    return false;
}

/* --------------------------------------------------------- store checks */

vm_t *rt_model(const rt_topic_t *tp, const int64_t *next, int64_t until_ms, size_t *applied,
               size_t *refused)
{
    vm_t *m = vm_new();
    size_t n = 0, bad = 0;
    for (size_t i = 0; i < tp->n; i++) {
        const rt_rec_t *r = &tp->recs[i];
        if (r->partition < 0 || r->aborted || r->deleted ||
            (next && r->offset >= next[r->partition]) || (until_ms >= 0 && r->ts > until_ms))
            continue;
        n++;
        if (r->poison)
            continue;
        if (!r->ev || vm_apply(m, r->ev) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "  the model refuses record %zu (%d:%lld), not marked poison\n", i,
                        (int)r->partition, (long long)r->offset);
        }
    }
    *applied = n;
    *refused = bad;
    return m;
}

static bool collect_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    es_proj_memmap_put(opaque, key, keylen, val, vallen);
    return true;
}

/* The view keys (not the reserved 0x00 ones) of an open store. */
static es_proj_memmap_t *store_views(es_store_t *st)
{
    es_proj_memmap_t *views = es_proj_memmap_new();
    es_store_iter_t *it = es_store_iter_prefix(st, "", 0);
    const char *k, *v;
    size_t kl, vl;
    while (es_store_iter_next(it, &k, &kl, &v, &vl)) {
        if (kl > 0 && k[0] != '\0')
            collect_cb(views, k, kl, v, vl);
    }
    es_store_iter_destroy(it);
    return views;
}

static es_store_t *open_store(const char *dir)
{
    char err[512];
    es_store_opts_t so = {.block_cache_mb = 16, .write_buffer_mb = 4};
    es_store_t *st = es_store_open(dir, &so, err, sizeof(err));
    if (!st)
        fprintf(stderr, "open store %s: %s\n", dir, err);
    return st;
}

size_t rt_compare_views(const char *dir, const es_proj_def_t *def, const vm_t *m)
{
    es_store_t *st = open_store(dir);
    if (!st)
        return SIZE_MAX;
    es_proj_memmap_t *views = store_views(st);
    size_t d = vm_compare_views(m, def, views);
    es_proj_memmap_destroy(views);
    es_store_close(st);
    return d;
}

size_t rt_compare_store(const char *store_root, const es_proj_def_t *def, rt_topic_t *tp,
                        size_t *applied)
{
    char path[700], cur[32] = {0}, err[512];
    snprintf(path, sizeof(path), "%s/%s/CURRENT", store_root, def->name);
    FILE *f = fopen(path, "r");
    int gen = 1;
    if (f) {
        if (fgets(cur, sizeof(cur), f))
            gen = (int)strtol(cur, NULL, 10);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/%s/g%d", store_root, def->name, gen);
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) { /* killed before it made its store */
        *applied = 0;                              /* nothing applied: no view, no offset */
        return 0;
    }
    es_store_t *st = open_store(path);
    if (!st)
        return SIZE_MAX;
    int64_t next[1024] = {0};
    for (int p = 0; p < tp->partitions && p < 1024; p++) {
        if (es_store_get_offset(st, tp->name, p, &next[p], err, sizeof(err)) != ES_ERR_OK)
            next[p] = 0;
    }
    size_t refused = 0;
    vm_t *m = rt_model(tp, next, -1, applied, &refused);
    es_proj_memmap_t *views = store_views(st);
    es_store_close(st);
    size_t d = vm_compare_views(m, def, views) + refused;
    es_proj_memmap_destroy(views);
    vm_destroy(m);
    return d;
}

/* ------------------------------------------------------------------ DLQ */

static void hdr(rd_kafka_headers_t *h, const char *name, char *out, size_t outsz)
{
    const void *v;
    size_t len;
    out[0] = '\0';
    if (h && rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (len >= outsz)
            len = outsz - 1;
        memcpy(out, v, len);
        out[len] = '\0';
    }
}

size_t rt_dlq_read(es_conf_t *conf, const char *agg, const char *projector, rt_dlq_rec_t **out)
{
    char topic[300], err[512];
    size_t n = 0, cap = 16;
    *out = es_calloc(cap, sizeof(**out));
    es_topic_name(agg, ES_TOPIC_DLQ, projector, topic, sizeof(topic));
    es_consumer_t *c = es_consumer_new(conf, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    rd_kafka_t *rk = es_consumer_rk(c);
    int nparts = es_test_partition_count(rk, topic);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(nparts + 1);
    int64_t remaining = 0;
    for (int p = 0; p < nparts; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        remaining += hi - lo;
        rd_kafka_topic_partition_list_add(tl, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    if (nparts)
        rd_kafka_assign(rk, tl);
    for (int idle = 0; remaining > 0 && idle < 100;) {
        rd_kafka_message_t *m = es_consumer_poll(c, 200);
        if (!m) {
            idle++;
            continue;
        }
        if (!m->err) {
            rd_kafka_headers_t *h = NULL;
            char buf[64];
            rd_kafka_message_headers(m, &h);
            if (n == cap) {
                cap *= 2;
                *out = es_realloc(*out, cap * sizeof(**out));
            }
            rt_dlq_rec_t *r = &(*out)[n++];
            memset(r, 0, sizeof(*r));
            hdr(h, "source-topic", r->src_topic, sizeof(r->src_topic));
            hdr(h, "source-partition", buf, sizeof(buf));
            r->src_partition = (int32_t)strtol(buf, NULL, 10);
            hdr(h, "source-offset", buf, sizeof(buf));
            r->src_offset = strtoll(buf, NULL, 10);
            hdr(h, "error", r->error, sizeof(r->error));
            hdr(h, "projection", r->projection, sizeof(r->projection));
            hdr(h, "traceparent", r->traceparent, sizeof(r->traceparent));
            hdr(h, "correlation-id", r->correlation_id, sizeof(r->correlation_id));
            r->len = m->len;
            remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tl);
    es_consumer_destroy(c);
    return n;
}

/* /readyz answers @p want (200 or 503) within @p timeout_s; its body in *reason. */
bool rt_wait_ready_status(rt_proc_t *p, int want, int timeout_s, char *reason, size_t rsz)
{
    for (int i = 0; i < timeout_s * 5; i++) {
        json_t *b = NULL;
        int st = rt_http(p, "GET", "/readyz", &b);
        const char *r = json_string_value(json_object_get(b, "reason"));
        snprintf(reason, rsz, "%s", r ? r : "");
        json_decref(b);
        if (st == want)
            return true;
        if (!rt_proc_alive(p))
            return false;
        usleep(200 * 1000);
    }
    return false;
}

/* Every record produced is applied: projection @p name's (NULL: the first
 * listed) applied offsets reach the end of every partition as the producer
 * saw it (the projector's own high watermarks may be stale while it waits:
 * "applied = high" right after a rebuild's swap, events still to come). */
bool rt_wait_projection_at_end(rt_proc_t *p, const char *name, rt_topic_t *tp, int timeout_s)
{
    int64_t end[64] = {0};
    for (size_t i = 0; i < tp->n; i++)
        if (tp->recs[i].offset + 1 > end[tp->recs[i].partition])
            end[tp->recs[i].partition] = tp->recs[i].offset + 1;
    for (int i = 0; i < timeout_s * 5; i++) {
        json_t *b = NULL;
        bool done = false;
        if (name) {
            b = rt_projection(p, name);
        } else if (rt_http(p, "GET", "/admin/projections", &b) != 200) {
            json_decref(b);
            b = NULL;
        }
        if (b) {
            json_t *o = name ? b : json_array_get(json_object_get(b, "projections"), 0);
            json_t *parts = json_object_get(o, "partitions");
            done = json_array_size(parts) == (size_t)tp->partitions;
            for (size_t k = 0; k < json_array_size(parts); k++) {
                json_t *pp = json_array_get(parts, k);
                int part = (int)json_integer_value(json_object_get(pp, "partition"));
                done = done && part < 64 &&
                       json_integer_value(json_object_get(pp, "applied")) >= end[part];
            }
        }
        json_decref(b);
        if (done)
            return true;
        usleep(200 * 1000);
    }
    return false;
}

bool rt_wait_applied_to_end(rt_proc_t *p, rt_topic_t *tp, int timeout_s)
{
    return rt_wait_projection_at_end(p, NULL, tp, timeout_s);
}

size_t rt_carts_differing(rt_proc_t *p, es_sim_t *sim, const char *view)
{
    size_t differ = 0;
    for (size_t i = 0; i < sim->ncarts; i++) {
        char path[300];
        if (sim->carts[i].version == 0)
            continue; /* created by the model, no event yet: no view */
        json_t *got = NULL;
        char *want_text = es_sim_cart_json(sim, i);
        json_t *want = json_loads(want_text, 0, NULL);
        snprintf(path, sizeof(path), "/v1/carts/%s%s%s", sim->carts[i].id, view ? "?view=" : "",
                 view ? view : "");
        int st = rt_http(p, "GET", path, &got);
        if (st != 200 || !json_equal(got, want)) {
            if (differ < 3) {
                char *g = got ? json_dumps(got, JSON_COMPACT) : NULL;
                fprintf(stderr, "cart %s: %d %s, want %s\n", sim->carts[i].id, st, g ? g : "",
                        want_text);
                free(g);
            }
            differ++;
        }
        json_decref(got);
        json_decref(want);
        free(want_text);
    }
    return differ;
}

/* The frozen view's entry in GET /admin/projections (a new reference), or NULL. */
json_t *rt_frozen_entry(const rt_proc_t *p, const char *name, const char *label)
{
    json_t *b = NULL, *found = NULL;
    rt_http(p, "GET", "/admin/projections", &b);
    json_t *arr = json_object_get(b, "projections");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        if (!es_test_str_eq(json_string_value(json_object_get(o, "name")), name))
            continue;
        json_t *fz = json_object_get(o, "frozen");
        for (size_t k = 0; k < json_array_size(fz); k++) {
            json_t *f = json_array_get(fz, k);
            if (es_test_str_eq(json_string_value(json_object_get(f, "label")), label))
                found = json_incref(f);
        }
    }
    json_decref(b);
    return found;
}
