/*
 * test_http.c — route matching, and a real server on a free loopback port
 * answering the contract's generic cases: handler JSON, 404, 405, 413,
 * /healthz, /readyz both ways, /metrics.
 */
#include "escqrs/http.h"
#include "escqrs/mem.h"
#include "testutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static bool is_ready;

static void echo_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    size_t len;
    const char *body = es_http_req_body(req, &len);
    const char *q = es_http_req_query(req, "x");
    const char *h = es_http_req_header(req, "if-match");
    (void)opaque;
    es_http_resp_json(resp, 200,
                      json_pack("{s:s, s:s, s:i, s:s?, s:s?}", "id", es_http_req_param(req, 0),
                                "cmd", es_http_req_param(req, 1), "len", (int)len, "x", q,
                                "if_match", h));
    (void)body;
}

static bool ready_cb(void *opaque, char *why, size_t whysz)
{
    (void)opaque;
    if (!is_ready)
        snprintf(why, whysz, "catching up");
    return is_ready;
}

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    es_buf_append(ud, p, sz * n);
    return sz * n;
}

static long request(int port, const char *method, const char *path, const char *body,
                    size_t bodylen, es_buf_t *out)
{
    char url[256];
    long code = 0;
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "If-Match: 7");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    es_buf_clear(out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)bodylen);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return code;
}

static void test_route_match(void)
{
    char params[ES_HTTP_MAX_PARAMS][128];
    size_t n;
    CU_ASSERT_TRUE(
        es_http_route_match("/v1/carts/{id}/{cmd}", "/v1/carts/c1/add-item", params, &n));
    CU_ASSERT_EQUAL(n, 2);
    ES_ASSERT_STR_EQ(params[0], "c1");
    ES_ASSERT_STR_EQ(params[1], "add-item");
    CU_ASSERT_FALSE(es_http_route_match("/v1/carts/{id}", "/v1/carts/", params, &n));
    CU_ASSERT_FALSE(es_http_route_match("/v1/carts/{id}", "/v1/carts/a/b", params, &n));
    CU_ASSERT_FALSE(es_http_route_match("/v1/carts/{id}", "/v1/cart/a", params, &n));
    CU_ASSERT_TRUE(es_http_route_match("/admin/projections", "/admin/projections", params, &n));
    CU_ASSERT_EQUAL(n, 0);
}

static void test_server(void)
{
    static const es_http_route_t routes[] = {
        {"POST", "/v1/carts/{id}/{cmd}", echo_handler},
    };
    es_metrics_t *m = es_metrics_new();
    es_counter_add(es_metrics_counter(m, "escqrs_test_total", "t", NULL), 5);
    es_http_server_conf_t conf = {.listen = "127.0.0.1:0",
                                  .max_body = 1024,
                                  .routes = routes,
                                  .nroutes = 1,
                                  .metrics = m,
                                  .ready = ready_cb};
    char errstr[256];
    es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    int port = es_http_server_port(srv);
    CU_ASSERT_TRUE(port > 0);
    es_buf_t out = {0};

    CU_ASSERT_EQUAL(request(port, "POST", "/v1/carts/c9/add-item?x=y", "{\"a\":1}", 7, &out), 200);
    ES_ASSERT_STR_EQ(
        out.data, "{\"id\":\"c9\",\"cmd\":\"add-item\",\"len\":7,\"x\":\"y\",\"if_match\":\"7\"}");
    CU_ASSERT_EQUAL(request(port, "GET", "/v1/carts/c9/add-item", NULL, 0, &out), 405);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\"error\":\"method_not_allowed\""));
    CU_ASSERT_EQUAL(request(port, "GET", "/nowhere", NULL, 0, &out), 404);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\"error\":\"not_found\""));

    static char big[200000];
    memset(big, 'x', sizeof(big));
    CU_ASSERT_EQUAL(request(port, "POST", "/v1/carts/c9/add-item", big, sizeof(big), &out), 413);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "\"error\":\"payload_too_large\""));

    CU_ASSERT_EQUAL(request(port, "GET", "/healthz", NULL, 0, &out), 200);
    is_ready = false;
    CU_ASSERT_EQUAL(request(port, "GET", "/readyz", NULL, 0, &out), 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "catching up"));
    is_ready = true;
    CU_ASSERT_EQUAL(request(port, "GET", "/readyz", NULL, 0, &out), 200);
    CU_ASSERT_EQUAL(request(port, "GET", "/metrics", NULL, 0, &out), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "escqrs_test_total 5\n"));

    es_buf_free(&out);
    es_http_server_stop(srv);
    es_metrics_destroy(m);

    conf.listen = "not-an-address";
    CU_ASSERT_PTR_NULL(es_http_server_start(&conf, errstr, sizeof(errstr)));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "not-an-address"));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static const es_test_case_t cases[] = {
        {"route match", test_route_match},
        {"server answers the generic cases", test_server},
        {NULL, NULL},
    };
    int rc = es_test_run("http", cases);
    curl_global_cleanup();
    return rc;
}
