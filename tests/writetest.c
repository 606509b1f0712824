/*
 * writetest.c — see writetest.h.  The daemons' stderr goes to files in the
 * test's directory under /tmp so a failing run can be read afterwards.
 */
#include "writetest.h"

#include "escqrs/envelope.h"
#include "escqrs/record.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void wt_stack_init(wt_stack_t *st, const char *agg)
{
    char u[100];
    memset(st, 0, sizeof(*st));
    es_test_unique("wt", u, sizeof(u));
    snprintf(st->prefix, sizeof(st->prefix), "%s-", u);
    snprintf(st->dir, sizeof(st->dir), "/tmp/escqrs-%s", u);
    snprintf(st->agg, sizeof(st->agg), "%s", agg);
    mkdir(st->dir, 0755);
    curl_global_init(CURL_GLOBAL_ALL);
}

static void start(wt_stack_t *st, wt_proc_t *p, bool service, const char *const *sets, size_t nsets)
{
    char bin[700], a[16][700];
    const char *bd = getenv("ESCQRS_BUILD_DIR");
    char *argv[80];
    size_t n = 0, k = 0;
    if (!p->port)
        p->port = es_test_free_port(); /* a restart keeps its port */
    snprintf(p->log, sizeof(p->log), "%s/%s.log", st->dir, service ? "service" : "gateway");
    snprintf(bin, sizeof(bin), "%s/producers/%s", bd ? bd : "build",
             service ? "command-service/escqrs-command-service" : "gateway/escqrs-gateway");
    argv[n++] = bin;
    snprintf(a[k++], sizeof(a[0]), "kafka.bootstrap.servers=%s", es_test_bootstrap());
    snprintf(a[k++], sizeof(a[0]), "registry.url=%s", es_test_registry());
    snprintf(a[k++], sizeof(a[0]), "http.listen=127.0.0.1:%d", p->port);
    snprintf(a[k++], sizeof(a[0]), "aggregate.prefix=%s", st->prefix);
    snprintf(a[k++], sizeof(a[0]), "topics.create=true");
    if (service) {
        snprintf(a[k++], sizeof(a[0]), "aggregate=%s", st->agg);
        snprintf(a[k++], sizeof(a[0]), "store.path=%s/store", st->dir);
    } else {
        snprintf(a[k++], sizeof(a[0]), "aggregates=%s", st->agg);
    }
    for (size_t i = 0; i < k; i++) {
        argv[n++] = "--set";
        argv[n++] = a[i];
    }
    for (size_t i = 0; i < nsets && n < 76; i++) {
        argv[n++] = "--set";
        argv[n++] = (char *)sets[i];
    }
    argv[n] = NULL;
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

void wt_start_service(wt_stack_t *st, const char *const *sets, size_t nsets)
{
    start(st, &st->cs, true, sets, nsets);
}

void wt_start_gateway(wt_stack_t *st, const char *const *sets, size_t nsets)
{
    start(st, &st->gw, false, sets, nsets);
}

void wt_wait_ready(wt_proc_t *p, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        int st;
        if (wt_get(p, "/readyz", NULL) == 200)
            return;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            fprintf(stderr, "daemon exited early; see %s\n", p->log);
            es_test_child_reaped(p->pid);
            p->pid = 0;
            CU_FAIL_FATAL("daemon exited before it was ready");
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "not ready after %d s; see %s\n", timeout_s, p->log);
    CU_FAIL_FATAL("daemon not ready in time");
}

bool wt_wait_not_ready_because(const wt_proc_t *p, const char *words, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        char *why = NULL;
        bool said = wt_get(p, "/readyz", &why) == 503 && why && strstr(why, words);
        free(why);
        if (said)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

int wt_count_ready(const wt_proc_t *p, int ms, int *asked)
{
    int ready = 0;
    *asked = 0;
    for (int64_t t0 = es_mono_ms(); es_mono_ms() - t0 < ms; ++*asked) {
        ready += wt_get(p, "/readyz", NULL) == 200;
        usleep(100 * 1000);
    }
    return ready;
}

void wt_kill9(wt_proc_t *p)
{
    int st;
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    es_test_child_reaped(p->pid);
    p->pid = 0;
}

bool wt_proc_alive(wt_proc_t *p)
{
    int st;
    return p->pid > 0 && waitpid(p->pid, &st, WNOHANG) == 0;
}

bool wt_log_line(const char *path, const char *a, const char *b, char *line, size_t linesz)
{
    char buf[8192];
    bool found = false;
    FILE *f = fopen(path, "r");
    while (f && !found && fgets(buf, sizeof(buf), f))
        found = strstr(buf, a) && (!b || strstr(buf, b));
    if (f)
        fclose(f);
    if (found && line)
        snprintf(line, linesz, "%s", buf);
    return found;
}

int wt_stop(wt_proc_t *p)
{
    int st = 0;
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            es_test_child_reaped(p->pid);
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(100 * 1000);
    }
    wt_kill9(p);
    return -1;
}

bool wt_delete_store(const wt_stack_t *st)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/store'", st->dir);
    return system(cmd) == 0;
}

void wt_stack_stop(wt_stack_t *st)
{
    CU_ASSERT_EQUAL(wt_stop(&st->gw), 0);
    CU_ASSERT_EQUAL(wt_stop(&st->cs), 0);
}

typedef struct {
    char *data;
    size_t len;
} sink_t;

static size_t sink_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    sink_t *s = ud;
    size_t n = size * nmemb;
    s->data = realloc(s->data, s->len + n + 1);
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* Extra request headers and a sink for the answer's headers (both optional). */
typedef struct {
    const char *const *hdrs;
    sink_t *resp_headers;
} extra_t;

static int request(int port, const char *method, const char *path, const char *body, size_t len,
                   const char *idem, const char *if_match, const char *bearer, const extra_t *x,
                   sink_t *out)
{
    char url[1024], h[8300];
    long status = 0;
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (idem) {
        snprintf(h, sizeof(h), "Idempotency-Key: %s", idem);
        hdrs = curl_slist_append(hdrs, h);
    }
    if (if_match) {
        snprintf(h, sizeof(h), "If-Match: %s", if_match);
        hdrs = curl_slist_append(hdrs, h);
    }
    if (bearer) {
        snprintf(h, sizeof(h), "Authorization: Bearer %s", bearer);
        hdrs = curl_slist_append(hdrs, h);
    }
    for (size_t i = 0; x && x->hdrs && x->hdrs[i]; i++)
        hdrs = curl_slist_append(hdrs, x->hdrs[i]);
    if (x && x->resp_headers) {
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink_cb);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, x->resp_headers);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "POST") && strcmp(method, "GET"))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return (int)status;
}

double wt_metric(const wt_proc_t *p, const char *series)
{
    char *m = NULL;
    double v = -1;
    if (wt_get(p, "/metrics", &m) == 200)
        v = es_test_metric(m, series);
    free(m);
    return v;
}

int wt_post(const wt_proc_t *gw, const char *path, const char *body, size_t len, const char *idem,
            const char *if_match, json_t **out)
{
    sink_t s = {0};
    int status = request(gw->port, "POST", path, body, len, idem, if_match, gw->token, NULL, &s);
    if (out)
        *out = s.data ? json_loads(s.data, 0, NULL) : NULL;
    free(s.data);
    return status;
}

int wt_post_with(const wt_proc_t *gw, const char *path, const char *body, const char *const *hdrs,
                 char **resp_headers, json_t **out)
{
    sink_t s = {0}, h = {0};
    extra_t x = {.hdrs = hdrs, .resp_headers = &h};
    int status = request(gw->port, "POST", path, body, strlen(body), NULL, NULL, gw->token, &x, &s);
    if (out)
        *out = s.data ? json_loads(s.data, 0, NULL) : NULL;
    free(s.data);
    if (resp_headers)
        *resp_headers = h.data ? h.data : calloc(1, 1);
    else
        free(h.data);
    return status;
}

void wt_header_value(const char *block, const char *name, char *out, size_t outsz)
{
    size_t n = strlen(name);
    out[0] = '\0';
    for (const char *p = block; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncasecmp(p, name, n) || p[n] != ':')
            continue;
        p += n + 1;
        p += strspn(p, " \t");
        snprintf(out, outsz, "%.*s", (int)strcspn(p, "\r\n"), p);
        return;
    }
}

int wt_call(const wt_proc_t *p, const char *method, const char *path, const char *body,
            const char *bearer, json_t **out)
{
    sink_t s = {0};
    int status =
        request(p->port, method, path, body, body ? strlen(body) : 0, NULL, NULL, bearer, NULL, &s);
    if (out)
        *out = s.data ? json_loads(s.data, 0, NULL) : NULL;
    free(s.data);
    return status;
}

int wt_get(const wt_proc_t *p, const char *path, char **raw)
{
    sink_t s = {0};
    int status = request(p->port, "GET", path, NULL, 0, NULL, NULL, p->token, NULL, &s);
    if (raw)
        *raw = s.data;
    else
        free(s.data);
    return status;
}

static void header(const rd_kafka_message_t *m, const char *name, char *out, size_t outsz)
{
    if (es_header_get(m, name, out, outsz))
        out[0] = '\0';
}

/* The request context of a record: its value fields and its headers. */
static void read_trace(const rd_kafka_message_t *m, avro_value_t *v, es_trace_fields_t *trace,
                       es_trace_fields_t *hdr)
{
    es_trace_fields_get(v, trace);
    header(m, "correlation-id", hdr->correlation_id, sizeof(hdr->correlation_id));
    header(m, "traceparent", hdr->traceparent, sizeof(hdr->traceparent));
    header(m, "tracestate", hdr->tracestate, sizeof(hdr->tracestate));
}

/* A serde reading <prefix><agg>.<kind> with the built-in schema @p schema. */
static es_serde_t *topic_serde(const char *topic, const char *schema, es_registry_t **reg)
{
    char errstr[512], subj[320];
    snprintf(subj, sizeof(subj), "%s-value", topic);
    *reg = es_registry_new(es_test_registry(), 5000, 3, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(*reg);
    es_serde_t *serde =
        es_serde_new(*reg, subj, es_schema_text(schema), false, 0, errstr, sizeof(errstr));
    if (!serde)
        fprintf(stderr, "serde: %s\n", errstr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    return serde;
}

/* Every committed record of @p topic, partition by partition in offset order, to @p cb. */
static void read_topic(const char *topic, void (*cb)(void *opaque, rd_kafka_message_t *m),
                       void *opaque)
{
    rd_kafka_t *rk = es_test_consumer("wt-reader");
    int parts = es_test_partition_count(rk, topic);
    CU_ASSERT_FATAL(parts > 0);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(tl, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    int eofs = 0, idle = 0;
    while (eofs < parts && idle < 300) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eofs++;
        else if (!m->err)
            cb(opaque, m);
        rd_kafka_message_destroy(m);
    }
    CU_ASSERT_EQUAL(eofs, parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

typedef struct {
    const wt_stack_t *st;
    es_serde_t *serde;
    void *items;
    size_t n, cap, size;
} reading_t;

static void *next_item(reading_t *r)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->items = realloc(r->items, r->cap * r->size);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r->items);
    }
    void *it = (char *)r->items + r->n++ * r->size;
    memset(it, 0, r->size);
    return it;
}

static void copy_str(avro_value_t *rec, const char *name, char *out, size_t outsz)
{
    const char *s;
    char errstr[256];
    if (!es_record_string(rec, name, &s, NULL, errstr, sizeof(errstr)))
        snprintf(out, outsz, "%s", s);
}

static void event_cb(void *opaque, rd_kafka_message_t *m)
{
    reading_t *r = opaque;
    char errstr[512], idf[40];
    avro_value_t *v, pl, f;
    const char *type;
    wt_event_t *e = next_item(r);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r->serde, m->payload, m->len, &v, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    snprintf(idf, sizeof(idf), "%s_id", r->st->agg);
    copy_str(v, idf, e->agg_id, sizeof(e->agg_id));
    copy_str(v, "command_id", e->command_id, sizeof(e->command_id));
    es_record_long(v, "version", &e->version, errstr, sizeof(errstr));
    if (!es_record_payload(v, &pl, &type, errstr, sizeof(errstr))) {
        snprintf(e->type, sizeof(e->type), "%s", type);
        int32_t q;
        if (!avro_value_get_by_name(&pl, "amount_cents", &f, NULL))
            avro_value_get_long(&f, &e->amount);
        else if (!avro_value_get_by_name(&pl, "quantity", &f, NULL) && !avro_value_get_int(&f, &q))
            e->amount = q;
    }
    e->partition = m->partition;
    e->offset = m->offset;
    header(m, "event-type", e->hdr_type, sizeof(e->hdr_type));
    header(m, "command-id", e->hdr_command, sizeof(e->hdr_command));
    header(m, "aggregate-version", e->hdr_version, sizeof(e->hdr_version));
    es_principal_get(v, e->principal, sizeof(e->principal), e->principal_client,
                     sizeof(e->principal_client));
    read_trace(m, v, &e->trace, &e->hdr_trace);
}

/* <prefix><agg>.<suffix> of @p st. */
static void stack_topic(const wt_stack_t *st, const char *suffix, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s%s.%s", st->prefix, st->agg, suffix);
}

static void *read_decoded(const wt_stack_t *st, const char *suffix, const char *schema, size_t size,
                          void (*cb)(void *, rd_kafka_message_t *), size_t *n)
{
    char topic[300];
    es_registry_t *reg = NULL;
    stack_topic(st, suffix, topic, sizeof(topic));
    reading_t r = {.st = st, .serde = topic_serde(topic, schema, &reg), .size = size};
    read_topic(topic, cb, &r);
    es_serde_destroy(r.serde);
    es_registry_destroy(reg);
    *n = r.n;
    return r.items ? r.items : calloc(1, size);
}

wt_event_t *wt_read_events(const wt_stack_t *st, size_t *n)
{
    char schema[64];
    snprintf(schema, sizeof(schema), "%s.events", st->agg);
    return read_decoded(st, "events", schema, sizeof(wt_event_t), event_cb, n);
}

void wt_assert_versions(const wt_stack_t *st, const char *agg_id, int64_t last)
{
    size_t n = 0, seen = 0;
    wt_event_t *evs = wt_read_events(st, &n);
    bool *at = calloc((size_t)last + 1, sizeof(bool));
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i].agg_id, agg_id))
            continue;
        seen++;
        if (evs[i].version >= 1 && evs[i].version <= last && !at[evs[i].version])
            at[evs[i].version] = true;
        else
            fprintf(stderr, "  %s: version %lld again or out of range\n", agg_id,
                    (long long)evs[i].version);
    }
    printf("  RESULT %s has %zu event(s) in the log, %lld expected\n", agg_id, seen,
           (long long)last);
    CU_ASSERT_EQUAL(seen, (size_t)last);
    for (int64_t v = 1; v <= last; v++)
        CU_ASSERT_TRUE(at[v]);
    free(at);
    free(evs);
}

static void state_cb(void *opaque, rd_kafka_message_t *m)
{
    reading_t *r = opaque;
    char errstr[512];
    avro_value_t *v, f;
    size_t n = 0;
    wt_state_t *s = next_item(r);
    const char *key = m->key, *nul = memchr(key, '\0', m->key_len);
    size_t idlen = nul ? (size_t)(nul - key) : m->key_len;
    snprintf(s->key, sizeof(s->key), "%.*s", (int)idlen, key);
    if (nul)
        snprintf(s->cmd_id, sizeof(s->cmd_id), "%.*s", (int)(m->key_len - idlen - 1), nul + 1);
    s->partition = m->partition;
    s->offset = m->offset;
    s->tombstone = !m->payload;
    if (s->tombstone)
        return;
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r->serde, m->payload, m->len, &v, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    copy_str(v, "aggregate_id", s->agg_id, sizeof(s->agg_id));
    es_record_long(v, "version", &s->version, errstr, sizeof(errstr));
    es_record_long(v, "events_offset", &s->events_offset, errstr, sizeof(errstr));
    if (!avro_value_get_by_name(v, "recent", &f, NULL) && !avro_value_get_size(&f, &n))
        s->nrecent = n;
}

wt_state_t *wt_read_states(const wt_stack_t *st, size_t *n)
{
    return read_decoded(st, "state", "aggregate-state", sizeof(wt_state_t), state_cb, n);
}

static void command_cb(void *opaque, rd_kafka_message_t *m)
{
    reading_t *r = opaque;
    char errstr[512], idf[40];
    avro_value_t *v, pl, f;
    const char *type;
    wt_command_t *c = next_item(r);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r->serde, m->payload, m->len, &v, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    snprintf(idf, sizeof(idf), "%s_id", r->st->agg);
    copy_str(v, idf, c->agg_id, sizeof(c->agg_id));
    copy_str(v, "command_id", c->command_id, sizeof(c->command_id));
    if (!es_record_payload(v, &pl, &type, errstr, sizeof(errstr))) {
        snprintf(c->type, sizeof(c->type), "%s", type);
        if (!avro_value_get_by_name(&pl, "amount_cents", &f, NULL))
            avro_value_get_long(&f, &c->amount);
    }
    c->partition = m->partition;
    c->offset = m->offset;
    es_record_long(v, "issued_at", &c->issued_at, errstr, sizeof(errstr));
    read_trace(m, v, &c->trace, &c->hdr_trace);
}

wt_command_t *wt_read_commands(const wt_stack_t *st, size_t *n)
{
    char schema[64];
    snprintf(schema, sizeof(schema), "%s.commands", st->agg);
    return read_decoded(st, "commands", schema, sizeof(wt_command_t), command_cb, n);
}

static void outcome_cb(void *opaque, rd_kafka_message_t *m)
{
    reading_t *r = opaque;
    char errstr[512];
    avro_value_t *v, f, br;
    wt_outcome_t *o = next_item(r);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r->serde, m->payload, m->len, &v, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    header(m, "command-id", o->hdr_command, sizeof(o->hdr_command));
    copy_str(v, "command_id", o->command_id, sizeof(o->command_id));
    if (!avro_value_get_by_name(v, "status", &f, NULL)) {
        int sym = -1;
        avro_value_get_enum(&f, &sym);
        const char *name = avro_schema_enum_get(avro_value_get_schema(&f), sym);
        snprintf(o->status, sizeof(o->status), "%s", name ? name : "");
    }
    if (!avro_value_get_by_name(v, "reason", &f, NULL) && !avro_value_get_current_branch(&f, &br) &&
        avro_value_get_type(&br) == AVRO_STRING) {
        const char *s = NULL;
        size_t sz;
        avro_value_get_string(&br, &s, &sz);
        snprintf(o->reason, sizeof(o->reason), "%s", s ? s : "");
    }
    es_record_long(v, "actual_version", &o->actual_version, errstr, sizeof(errstr));
    es_principal_get(v, o->principal, sizeof(o->principal), o->principal_client,
                     sizeof(o->principal_client));
    es_record_long(v, "version", &o->version, errstr, sizeof(errstr));
    o->partition = m->partition;
    o->offset = m->offset;
    read_trace(m, v, &o->trace, &o->hdr_trace);
    const char *ct = es_opt_string_get(v, "command_type");
    snprintf(o->command_type, sizeof(o->command_type), "%s", ct ? ct : "");
    if (!avro_value_get_by_name(v, "issued_at", &f, NULL) &&
        !avro_value_get_current_branch(&f, &br) && avro_value_get_type(&br) == AVRO_INT64)
        avro_value_get_long(&br, &o->issued_at);
}

wt_outcome_t *wt_read_outcomes(const wt_stack_t *st, size_t *n)
{
    return read_decoded(st, "command-results", "command-result", sizeof(wt_outcome_t), outcome_cb,
                        n);
}

void wt_command_group(const wt_stack_t *st, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s%s.command-service", st->prefix, st->agg);
}

int wt_command_offsets(const wt_stack_t *st, int64_t *committed, int64_t *end, int max)
{
    char topic[300], group[300];
    stack_topic(st, "commands", topic, sizeof(topic));
    wt_command_group(st, group, sizeof(group));
    return es_test_group_offsets(group, topic, committed, end, max);
}

bool wt_commit_group_offsets(const wt_stack_t *st, const int64_t *offsets, int n, int timeout_s)
{
    char topic[300], group[300];
    stack_topic(st, "commands", topic, sizeof(topic));
    wt_command_group(st, group, sizeof(group));
    rd_kafka_t *rk = es_test_consumer(group); /* never subscribes: a simple commit */
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(tl, topic, p)->offset = offsets[p];
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__FAIL;
    int64_t t0 = es_mono_ms(); /* refused while a member's session lasts */
    while (err && es_mono_ms() - t0 < timeout_s * 1000)
        if ((err = rd_kafka_commit(rk, tl, 0)))
            sleep(1);
    if (err)
        fprintf(stderr, "  commit for %s: %s\n", group, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_destroy(rk);
    return !err;
}

bool wt_wait_group_at_end(const wt_stack_t *st, int timeout_s, char *why, size_t whysz)
{
    int64_t committed[64], end[64];
    for (int i = 0; i < timeout_s * 2; i++) {
        int parts = wt_command_offsets(st, committed, end, 64);
        bool at_end = parts > 0;
        for (int p = 0; p < parts && at_end; p++) {
            int64_t c = committed[p] < 0 && committed[p] != -2 ? 0 : committed[p];
            if (c < end[p]) {
                snprintf(why, whysz, "partition %d: committed %lld, end %lld", p, (long long)c,
                         (long long)end[p]);
                at_end = false;
            }
        }
        if (at_end)
            return true;
        usleep(500 * 1000);
    }
    return false;
}
