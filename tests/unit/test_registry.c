/*
 * test_registry.c — the registry client's own behaviour, without a registry:
 * retries with backoff, the registry's message passed on, errors mapped to
 * codes, and caches that keep the hot path off HTTP.
 *
 * A stand-in server on a free loopback port (common/http) answers the few
 * Confluent REST calls with scripted statuses and counts the requests it
 * gets, which a real registry cannot be made to do on demand (fail twice,
 * then answer).  What the real registry says is 0100's business.
 */
#include "escqrs/http_server.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const schema_json =
    "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\"n\",\"type\":\"long\"}]}";

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int id_requests, subject_requests, flaky_failures_left;
static char base[128], errstr[1024];
static es_http_server_t *srv;
static char huge_doc[(9 << 20) + 1]; /* 9 MiB of a JSON string */

static void count(int *counter)
{
    pthread_mutex_lock(&lock);
    (*counter)++;
    pthread_mutex_unlock(&lock);
}

/*
 * GET /schemas/ids/{id}: 5 is T, 6 unknown, 13 not Avro, 21 fails twice then
 * is T, 34 an answer of 9 MiB.
 */
static void schema_by_id(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    const char *id = es_http_req_param(req, 0);
    count(&id_requests);
    if (!strcmp(id, "21")) {
        pthread_mutex_lock(&lock);
        bool fail = flaky_failures_left > 0 && flaky_failures_left--;
        pthread_mutex_unlock(&lock);
        if (fail) {
            es_http_resp_json(resp, 503,
                              json_pack("{s:s,s:i}", "message", "warming up", "error_code", 50003));
            return;
        }
    }
    if (!strcmp(id, "5") || !strcmp(id, "21"))
        es_http_resp_json(resp, 200, json_pack("{s:s}", "schema", schema_json));
    else if (!strcmp(id, "34"))
        es_http_resp_json(resp, 200, json_pack("{s:s}", "schema", huge_doc));
    else if (!strcmp(id, "13"))
        es_http_resp_json(resp, 200, json_pack("{s:s}", "schema", "{\"type\": \"nonsense\"}"));
    else
        es_http_resp_json(
            resp, 404, json_pack("{s:s,s:i}", "message", "Schema not found", "error_code", 40403));
}

/*
 * POST /subjects/{s}/versions: "ok-value" → id 5; "bad-value" → 409;
 * "junk-value" → 422; "wide-id-value", "minus-id-value" and "max-id-value":
 * ids past 4 bytes, below 0, and the last of 4 bytes.
 */
static void register_schema(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    const char *s = es_http_req_param(req, 0);
    count(&subject_requests);
    if (!strcmp(s, "ok-value"))
        es_http_resp_json(resp, 200, json_pack("{s:i}", "id", 5));
    else if (!strcmp(s, "wide-id-value")) /* 2^32 + 5: cast to int, it would be 5 */
        es_http_resp_json(resp, 200, json_pack("{s:I}", "id", (json_int_t)4294967301LL));
    else if (!strcmp(s, "minus-id-value"))
        es_http_resp_json(resp, 200, json_pack("{s:I}", "id", (json_int_t)-1));
    else if (!strcmp(s, "max-id-value"))
        es_http_resp_json(resp, 200, json_pack("{s:I}", "id", (json_int_t)INT32_MAX));
    else if (!strcmp(s, "bad-value"))
        es_http_resp_json(resp, 409,
                          json_pack("{s:s,s:i}", "message",
                                    "Schema being registered is incompatible with an earlier "
                                    "schema: field n changed type",
                                    "error_code", 409));
    else
        es_http_resp_json(resp, 422,
                          json_pack("{s:s,s:i}", "message", "Invalid schema", "error_code", 42201));
}

/* POST /compatibility/subjects/{s}/versions: verbose reasons, Confluent style. */
static void compat(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    const char *s = es_http_req_param(req, 0);
    if (!strcmp(s, "none-value"))
        es_http_resp_json(
            resp, 404, json_pack("{s:s,s:i}", "message", "Subject not found", "error_code", 40401));
    else if (!strcmp(s, "ok-value"))
        es_http_resp_json(resp, 200, json_pack("{s:b}", "is_compatible", 1));
    else
        es_http_resp_json(resp, 200,
                          json_pack("{s:b,s:[s,s]}", "is_compatible", 0, "messages",
                                    "reader field n: type LONG cannot read STRING", "version 1"));
}

static void test_registry_down(void)
{
    struct timespec t0, t1;
    /* port 9 (discard) on loopback: nothing listens, connections are refused */
    es_registry_t *reg = es_registry_new("http://127.0.0.1:9", 500, 2, errstr, sizeof(errstr));
    avro_schema_t s;
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 5, &s, errstr, sizeof(errstr)),
                    ES_ERR_REGISTRY_UNAVAILABLE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CU_ASSERT_TRUE(secs >= 0.3); /* two retries: 100 ms + 200 ms of backoff */
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "unreachable"));
    es_registry_destroy(reg);
    CU_ASSERT_PTR_NULL(es_registry_new("ftp://x", 500, 0, errstr, sizeof(errstr)));
}

static void test_schema_by_id_cached(void)
{
    es_registry_t *reg = es_registry_new(base, 2000, 0, errstr, sizeof(errstr));
    avro_schema_t a = NULL, b = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    id_requests = 0;
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 5, &a, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 5, &b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(id_requests, 1);
    CU_ASSERT_PTR_EQUAL(a, b);
    CU_ASSERT_EQUAL(avro_typeof(a), AVRO_RECORD);
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 6, &a, errstr, sizeof(errstr)),
                    ES_ERR_UNKNOWN_SCHEMA);
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 13, &a, errstr, sizeof(errstr)), ES_ERR_SCHEMA);
    es_registry_destroy(reg);
}

static void test_transient_failures_retried(void)
{
    avro_schema_t a = NULL;
    es_registry_t *reg = es_registry_new(base, 2000, 3, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    id_requests = 0;
    flaky_failures_left = 2;
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 21, &a, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(id_requests, 3);
    es_registry_destroy(reg);

    /* without retries the 503 is final, and its message is passed on */
    reg = es_registry_new(base, 2000, 0, errstr, sizeof(errstr));
    flaky_failures_left = 1;
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 21, &a, errstr, sizeof(errstr)), ES_ERR_REGISTRY);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "warming up"));
    es_registry_destroy(reg);
}

static void test_register_errors_and_cache(void)
{
    int id = 0;
    es_registry_t *reg = es_registry_new(base, 2000, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    subject_requests = 0;
    CU_ASSERT_EQUAL(es_registry_register(reg, "ok-value", schema_json, &id, errstr, 1024),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(id, 5);
    CU_ASSERT_EQUAL(es_registry_register(reg, "ok-value", schema_json, &id, errstr, 1024),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(subject_requests, 1); /* the second came from the cache */
    CU_ASSERT_EQUAL(es_registry_register(reg, "bad-value", schema_json, &id, errstr, 1024),
                    ES_ERR_INCOMPATIBLE_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "field n changed type"));
    CU_ASSERT_EQUAL(es_registry_register(reg, "junk-value", schema_json, &id, errstr, 1024),
                    ES_ERR_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "Invalid schema"));
    es_registry_destroy(reg);
}

/* A registry's id outside the wire format's 4 bytes is refused, not cast to another. */
static void test_register_id_range(void)
{
    int id = 0;
    es_registry_t *reg = es_registry_new(base, 2000, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    CU_ASSERT_EQUAL(es_registry_register(reg, "wide-id-value", schema_json, &id, errstr, 1024),
                    ES_ERR_REGISTRY);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(errstr, "id 4294967301, outside the wire format's 0..2147483647"));
    CU_ASSERT_EQUAL(es_registry_register(reg, "minus-id-value", schema_json, &id, errstr, 1024),
                    ES_ERR_REGISTRY);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "id -1, outside"));
    subject_requests = 0; /* nothing was cached by the refusal: asked again */
    CU_ASSERT_EQUAL(es_registry_register(reg, "minus-id-value", schema_json, &id, errstr, 1024),
                    ES_ERR_REGISTRY);
    CU_ASSERT_EQUAL(subject_requests, 1);
    CU_ASSERT_EQUAL(es_registry_register(reg, "max-id-value", schema_json, &id, errstr, 1024),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(id, INT32_MAX);
    es_registry_destroy(reg);
}

/* An answer past 8 MiB fails as it arrives: a wrong URL must not fill the heap. */
static void test_answer_too_large(void)
{
    avro_schema_t a = NULL;
    es_registry_t *reg = es_registry_new(base, 5000, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 34, &a, errstr, sizeof(errstr)),
                    ES_ERR_REGISTRY_UNAVAILABLE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "the answer is larger than 8388608 bytes"));
    CU_ASSERT_EQUAL(es_registry_schema_by_id(reg, 5, &a, errstr, sizeof(errstr)), ES_ERR_OK);
    es_registry_destroy(reg);
}

static void test_check_compatible(void)
{
    es_registry_t *reg = es_registry_new(base, 2000, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    CU_ASSERT_EQUAL(es_registry_check_compatible(reg, "ok-value", schema_json, errstr, 1024),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_registry_check_compatible(reg, "none-value", schema_json, errstr, 1024),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_registry_check_compatible(reg, "bad-value", schema_json, errstr, 1024),
                    ES_ERR_INCOMPATIBLE_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "type LONG cannot read STRING; version 1"));
    es_registry_destroy(reg);
}

/* The serde fetches a writer schema once, then decodes from its cache. */
static void test_serde_fetches_writer_once(void)
{
    es_registry_t *reg = es_registry_new(base, 2000, 0, errstr, sizeof(errstr));
    static const uint8_t rec[] = {0, 0, 0, 0, 5, 0x54}; /* T{n: 42} */
    avro_value_t *got, f;
    int64_t n = 0;
    es_serde_t *serde = es_serde_new(reg, "ok-value", NULL, false, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    id_requests = 0;
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(es_serde_decode(serde, rec, sizeof(rec), &got, errstr, 1024), ES_ERR_OK);
    CU_ASSERT_EQUAL(id_requests, 1);
    avro_value_get_by_name(got, "n", &f, NULL);
    avro_value_get_long(&f, &n);
    CU_ASSERT_EQUAL(n, 42);
    static const uint8_t unknown[] = {0, 0, 0, 0, 6, 0x54};
    CU_ASSERT_EQUAL(es_serde_decode(serde, unknown, sizeof(unknown), &got, errstr, 1024),
                    ES_ERR_UNKNOWN_SCHEMA);
    es_serde_destroy(serde);

    /*
     * A reader whose schema is not registered has no id of its own (-1); a
     * record claiming id 0xffffffff must not be taken for one of ours.
     */
    serde = es_serde_new(reg, "missing-value", schema_json, false, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    CU_ASSERT_EQUAL(es_serde_schema_id(serde), -1);
    static const uint8_t minus_one[] = {0, 0xff, 0xff, 0xff, 0xff, 0x54};
    CU_ASSERT_EQUAL(es_serde_decode(serde, minus_one, sizeof(minus_one), &got, errstr, 1024),
                    ES_ERR_UNKNOWN_SCHEMA);
    es_serde_destroy(serde);
    es_registry_destroy(reg);
}

int main(void)
{
    static const es_http_route_t routes[] = {
        {"GET", "/schemas/ids/{id}", schema_by_id, "query:schemas", false},
        {"POST", "/subjects/{s}/versions", register_schema, "query:register", false},
        {"POST", "/compatibility/subjects/{s}/versions", compat, "query:compat", false},
    };
    es_http_server_conf_t conf = {.listen = "127.0.0.1:0",
                                  .max_body = 1 << 16,
                                  .routes = routes,
                                  .nroutes = sizeof(routes) / sizeof(routes[0])};
    srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    if (!srv) {
        fprintf(stderr, "stand-in registry: %s\n", errstr);
        return 1;
    }
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/", es_http_server_port(srv));
    memset(huge_doc, 'x', sizeof(huge_doc) - 1);
    static const es_test_case_t cases[] = {
        {"registry down: retried, then unavailable", test_registry_down},
        {"schema by id: fetched once, errors mapped", test_schema_by_id_cached},
        {"transient failures are retried", test_transient_failures_retried},
        {"register: cached, registry's message passed on", test_register_errors_and_cache},
        {"register: an id outside 4 bytes is refused", test_register_id_range},
        {"an answer past 8 MiB is refused", test_answer_too_large},
        {"compatibility check passes the reasons on", test_check_compatible},
        {"serde fetches a writer schema once", test_serde_fetches_writer_once},
        {NULL, NULL},
    };
    int rc = es_test_run("registry", cases);
    es_http_server_stop(srv);
    return rc;
}
