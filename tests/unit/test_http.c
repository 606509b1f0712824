/*
 * test_http.c — route matching, and a real server on a free loopback port
 * answering the contract's generic cases: handler JSON, 404, 405, 413,
 * /healthz, /readyz both ways, /metrics; and what hostile or unlucky
 * clients do: framing HTTP says to refuse, requests that never finish
 * arriving, more idle connections than select() could ever watch, a full
 * handler queue, answers deferred to another thread, a stop while a
 * request still waits.
 */
#include "escqrs/http_client.h"
#include "escqrs/http_server.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/trace.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
    char url[1024];
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
    char params[ES_HTTP_MAX_PARAMS][ES_HTTP_PARAM_MAX];
    char path[600], id[300];
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
    /* ids of the documented maximum (128) and beyond reach the handler, which judges them */
    for (size_t len = 127; len <= ES_HTTP_PARAM_MAX; len++) {
        memset(id, 'a', len);
        id[len] = '\0';
        snprintf(path, sizeof(path), "/v1/carts/%s", id);
        bool matched = es_http_route_match("/v1/carts/{id}", path, params, &n);
        CU_ASSERT_EQUAL(matched, len < ES_HTTP_PARAM_MAX);
        if (matched)
            CU_ASSERT_EQUAL(strlen(params[0]), len);
    }
}

/* ------------------------------------------------------ raw-socket clients */

static int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send @p req on a new connection; the status of the answer (0: closed without one). */
static int raw_request(int port, const char *req, char *answer, size_t answersz, int timeout_ms)
{
    int fd = connect_to(port);
    size_t got = 0;
    if (fd < 0)
        return -1;
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (got + 1 < answersz && poll(&pfd, 1, timeout_ms) > 0) {
        ssize_t n = recv(fd, answer + got, answersz - got - 1, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        answer[got] = '\0';
        if (strstr(answer, "\r\n\r\n") && strchr(strstr(answer, "\r\n\r\n"), '}'))
            break;
    }
    answer[got] = '\0';
    close(fd);
    int status = 0;
    if (got > 12)
        sscanf(answer, "HTTP/1.%*d %d", &status);
    return status;
}

/* Milliseconds until the server closes @p fd (or -1 after @p limit_ms). */
static int ms_until_closed(int fd, int limit_ms)
{
    struct timespec t0, t1;
    char buf[512];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int el = (int)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (el > limit_ms)
            return -1;
        if (poll(&pfd, 1, limit_ms - el) > 0 && recv(fd, buf, sizeof(buf), 0) <= 0)
            return el;
    }
}

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void blocking_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    (void)req;
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    es_http_resp_json(resp, 200, json_pack("{s:b}", "waited", 1));
}

static es_http_deferred_t *parked;

static void deferring_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    (void)resp;
    pthread_mutex_lock(&gate_mu);
    parked = es_http_defer(req);
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void *answer_parked(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    while (!parked)
        pthread_cond_wait(&gate_cv, &gate_mu);
    es_http_deferred_t *d = parked;
    parked = NULL;
    pthread_mutex_unlock(&gate_mu);
    usleep(50 * 1000);
    es_http_deferred_json(d, 201, json_pack("{s:s}", "from", "another thread"));
    return NULL;
}

static bool client_done;

/* Defers, answers at once (as the gateway does when a command cannot even be
 * queued), and returns only after the client has its answer and is gone. */
static void self_answering_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    (void)resp;
    es_http_deferred_json(es_http_defer(req), 200, json_pack("{s:s}", "from", "the handler"));
    pthread_mutex_lock(&gate_mu);
    while (!client_done)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    usleep(200 * 1000); /* the server sees the close and lets go of the request */
}

static es_http_server_t *start_hostile(es_http_limits_t limits, int *port)
{
    static const es_http_route_t routes[] = {
        {"POST", "/v1/carts/{id}/{cmd}", echo_handler, "command:carts.{cmd}", false},
        {"GET", "/block", blocking_handler, "query:block", false},
        {"GET", "/defer", deferring_handler, "query:defer", false},
        {"GET", "/defer-self", self_answering_handler, "query:defer-self", false},
    };
    es_http_server_conf_t conf = {.listen = "127.0.0.1:0",
                                  .max_body = 1024,
                                  .routes = routes,
                                  .nroutes = 4,
                                  .limits = limits};
    char errstr[256];
    es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    *port = es_http_server_port(srv);
    return srv;
}

static void test_framing_refused(void)
{
    int port;
    char ans[2048];
    es_http_server_t *srv = start_hostile((es_http_limits_t){0}, &port);
    const char *two_lengths = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}";
    CU_ASSERT_EQUAL(raw_request(port, two_lengths, ans, sizeof(ans), 2000), 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "more than one Content-Length"));
    const char *smuggle = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    CU_ASSERT_EQUAL(raw_request(port, smuggle, ans, sizeof(ans), 2000), 400);
    const char *gzip = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                       "Transfer-Encoding: gzip\r\n\r\n";
    CU_ASSERT_EQUAL(raw_request(port, gzip, ans, sizeof(ans), 2000), 501);
    /* more than one Transfer-Encoding: ambiguous between peers, refused */
    const char *twice = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "2\r\n{}\r\n0\r\n\r\n";
    CU_ASSERT_EQUAL(raw_request(port, twice, ans, sizeof(ans), 2000), 501);
    const char *layered = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                          "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "2\r\n{}\r\n0\r\n\r\n";
    CU_ASSERT_EQUAL(raw_request(port, layered, ans, sizeof(ans), 2000), 501);
    const char *fine = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: 2\r\n\r\n{}";
    CU_ASSERT_EQUAL(raw_request(port, fine, ans, sizeof(ans), 2000), 200);
    const char *chunked = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    CU_ASSERT_EQUAL(raw_request(port, chunked, ans, sizeof(ans), 2000), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\"len\":2"));
    es_http_server_stop(srv);
}

static void test_request_deadline(void)
{
    int port;
    es_http_limits_t l = {.request_timeout_ms = 400, .idle_timeout_s = 30};
    es_http_server_t *srv = start_hostile(l, &port);
    /* slow headers: a byte every 100 ms never finishes the request */
    int slow = connect_to(port);
    const char *hdr = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool closed = false;
    for (size_t i = 0; hdr[i] && !closed; i++) {
        closed = send(slow, hdr + i, 1, MSG_NOSIGNAL) < 0;
        usleep(100 * 1000);
        char b;
        closed = closed || recv(slow, &b, 1, MSG_DONTWAIT) == 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CU_ASSERT_TRUE(closed);
    CU_ASSERT_TRUE(el < 2.0);
    close(slow);
    /* a body shorter than its Content-Length */
    int shortb = connect_to(port);
    const char *partial = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 100\r\n\r\n{\"a\":";
    send(shortb, partial, strlen(partial), MSG_NOSIGNAL);
    int ms = ms_until_closed(shortb, 5000);
    CU_ASSERT_TRUE(ms >= 0 && ms < 2000);
    close(shortb);
    /* a chunked body that never ends */
    int endless = connect_to(port);
    const char *chunks = "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n";
    send(endless, chunks, strlen(chunks), MSG_NOSIGNAL);
    ms = ms_until_closed(endless, 5000);
    CU_ASSERT_TRUE(ms >= 0 && ms < 2000);
    close(endless);
    /* garbage */
    int junk = connect_to(port);
    send(junk, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 9, MSG_NOSIGNAL);
    ms = ms_until_closed(junk, 5000);
    CU_ASSERT_TRUE(ms >= 0 && ms < 2000);
    close(junk);
    es_http_server_stop(srv);
}

static void test_many_idle_connections(void)
{
    enum { IDLE = 1500 }; /* more than FD_SETSIZE (1024): select() could not watch them */
    int port, fds[IDLE], opened = 0;
    char ans[2048];
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * IDLE + 64 && rl.rlim_max >= 2 * IDLE + 64) {
        rl.rlim_cur = 2 * IDLE + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    es_http_limits_t l = {.max_connections = 5000, .max_per_client = 5000};
    es_http_server_t *srv = start_hostile(l, &port);
    for (int i = 0; i < IDLE; i++) {
        fds[i] = connect_to(port);
        opened += fds[i] >= 0;
    }
    CU_ASSERT_EQUAL(opened, IDLE);
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 2000), 200);
    CU_ASSERT_EQUAL(raw_request(port,
                                "POST /v1/carts/c1/add-item HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 2\r\n\r\n{}",
                                ans, sizeof(ans), 2000),
                    200);
    for (int i = 0; i < IDLE; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    es_http_server_stop(srv);

    /* past the per-client limit a connection is closed at once, others still served */
    l = (es_http_limits_t){.max_connections = 5000, .max_per_client = 10};
    srv = start_hostile(l, &port);
    for (int i = 0; i < 10; i++)
        fds[i] = connect_to(port);
    int extra = connect_to(port);
    CU_ASSERT_TRUE(extra < 0 || ms_until_closed(extra, 2000) >= 0);
    if (extra >= 0)
        close(extra);
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    usleep(200 * 1000);
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 2000), 200);
    es_http_server_stop(srv);
}

static void *get_block(void *arg)
{
    char ans[2048];
    *(int *)arg =
        raw_request(*(int *)arg, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 10000);
    return NULL;
}

static void test_busy_workers(void)
{
    int port, st[3];
    char ans[2048];
    pthread_t th[3];
    es_http_limits_t l = {.workers = 1, .queue_max = 1};
    es_http_server_t *srv = start_hostile(l, &port);
    gate_open = false;
    for (int i = 0; i < 2; i++) { /* one in the worker, one queued */
        st[i] = port;
        pthread_create(&th[i], NULL, get_block, &st[i]);
        usleep(200 * 1000);
    }
    /* the queue is full: 503 at once, and health is still answered */
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 2000), 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "Retry-After"));
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 2000), 200);
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(st[i], 200);
    }
    es_http_server_stop(srv);
}

static int to_worker_passes; /* guarded by gate_mu */

/* A never_waits handler: answers at once, on the event thread. */
static void inline_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    (void)req;
    es_http_resp_json(resp, 200, json_pack("{s:s}", "from", "the event thread"));
}

/* A never_waits handler that finds it must wait: the first pass asks for a worker. */
static void to_worker_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    pthread_mutex_lock(&gate_mu);
    int pass = ++to_worker_passes;
    pthread_mutex_unlock(&gate_mu);
    if (es_http_req_to_worker(req))
        return;
    es_http_resp_json(resp, 200, json_pack("{s:i}", "passes", pass));
}

static void *get_to_worker(void *arg)
{
    char ans[2048];
    int st = raw_request(*(int *)arg, "GET /to-worker HTTP/1.1\r\nHost: x\r\n\r\n", ans,
                         sizeof(ans), 10000);
    *(int *)arg = st == 200 && strstr(ans, "\"passes\":2") ? 200 : st ? st : -1;
    return NULL;
}

/*
 * A never_waits route is answered while the only worker is held by a handler
 * that blocks (it runs on the event thread); one that asks for a worker runs
 * again there, once the worker is free, and answers from its second pass.
 */
static void test_never_waits_routes(void)
{
    static const es_http_route_t routes[] = {
        {"GET", "/block", blocking_handler, "query:block", false},
        {"GET", "/inline", inline_handler, "query:inline", .never_waits = true},
        {"GET", "/to-worker", to_worker_handler, "query:to-worker", .never_waits = true},
    };
    es_http_server_conf_t conf = {.listen = "127.0.0.1:0",
                                  .max_body = 1024,
                                  .routes = routes,
                                  .nroutes = 3,
                                  .limits = {.workers = 1}};
    char errstr[256], ans[2048];
    es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    int port = es_http_server_port(srv), blocked = port, requeued = port;
    pthread_t th_block, th_requeued;
    gate_open = false;
    to_worker_passes = 0;
    pthread_create(&th_block, NULL, get_block, &blocked);
    usleep(200 * 1000); /* the worker is in blocking_handler now */
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /inline HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 2000), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "the event thread"));
    pthread_create(&th_requeued, NULL, get_to_worker, &requeued);
    usleep(200 * 1000);
    pthread_mutex_lock(&gate_mu);
    CU_ASSERT_EQUAL(to_worker_passes, 1); /* its first pass ran; the second waits for the worker */
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    pthread_join(th_block, NULL);
    pthread_join(th_requeued, NULL);
    CU_ASSERT_EQUAL(blocked, 200);
    CU_ASSERT_EQUAL(requeued, 200);
    CU_ASSERT_EQUAL(to_worker_passes, 2);
    es_http_server_stop(srv);
}

static void *stop_server(void *srv)
{
    es_http_server_stop(srv);
    return NULL;
}

/* Send GET /defer on a new connection (*fd) and take its deferred answer once parked. */
static es_http_deferred_t *park_request(int port, int *fd)
{
    const char *req = "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n";
    *fd = connect_to(port);
    send(*fd, req, strlen(req), MSG_NOSIGNAL);
    pthread_mutex_lock(&gate_mu);
    while (!parked)
        pthread_cond_wait(&gate_cv, &gate_mu);
    es_http_deferred_t *d = parked;
    parked = NULL;
    pthread_mutex_unlock(&gate_mu);
    return d;
}

static long ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_deferred(void)
{
    int port;
    char ans[2048];
    pthread_t th;
    es_http_limits_t l = {.workers = 1};
    es_http_server_t *srv = start_hostile(l, &port);
    pthread_create(&th, NULL, answer_parked, NULL);
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 5000), 201);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "another thread"));
    pthread_join(th, NULL);
    /* a deferred answer nobody gives: the stop answers 503 and does not abort */
    int fd;
    es_http_deferred_t *d = park_request(port, &fd);
    /* the stop waits for that answer; a connection made meanwhile is closed at once, unserved */
    pthread_create(&th, NULL, stop_server, srv);
    usleep(300 * 1000);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char late[512];
    int st = raw_request(port, "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n", late, sizeof(late), 3000);
    long took_ms = ms_since(&t0);
    CU_ASSERT_TRUE(st <= 0); /* refused or closed: never served by a stopping server */
    CU_ASSERT_TRUE(took_ms < 1500);
    pthread_join(th, NULL);
    ssize_t n = recv(fd, ans, sizeof(ans) - 1, 0);
    ans[n > 0 ? n : 0] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, " 503 "));
    close(fd);
    (void)d; /* answered by the stop; the server is gone, so it must not be answered again */
}

/* A handler that answers its own deferred request before it returns: the
 * request may be gone by the time the worker is back from the handler, and
 * the worker must not look at it then (ASan's heap-use-after-free if it does). */
static void test_deferred_answered_by_its_handler(void)
{
    int port;
    char ans[2048];
    es_http_limits_t l = {.workers = 1};
    es_http_server_t *srv = start_hostile(l, &port);
    CU_ASSERT_EQUAL(raw_request(port,
                                "GET /defer-self HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                ans, sizeof(ans), 5000),
                    200);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "the handler"));
    pthread_mutex_lock(&gate_mu);
    client_done = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    usleep(400 * 1000); /* the worker is back */
    CU_ASSERT_EQUAL(raw_request(port,
                                "GET /defer-self HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                ans, sizeof(ans), 5000),
                    200); /* and serves the next one */
    es_http_server_stop(srv);
}

/* A client that hangs up while its request waits for a deferred answer (a
 * gateway client giving up on its outcome): the answer that comes later
 * touches nothing freed, and the server goes on serving. */
static void test_deferred_client_gone(void)
{
    int port, fd;
    char ans[2048];
    es_http_limits_t l = {.workers = 1};
    pthread_mutex_lock(&gate_mu);
    client_done = true; /* /defer-self below returns at once */
    pthread_mutex_unlock(&gate_mu);
    es_http_server_t *srv = start_hostile(l, &port);
    es_http_deferred_t *d = park_request(port, &fd);
    close(fd);
    usleep(200 * 1000); /* the server may see the close now */
    es_http_deferred_json(d, 200, json_pack("{s:s}", "from", "too late"));
    usleep(200 * 1000);
    CU_ASSERT_EQUAL(raw_request(port,
                                "GET /defer-self HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                ans, sizeof(ans), 5000),
                    200);
    es_http_server_stop(srv);
}

/* A deferred answer given while the server stops is delivered, and the stop goes on at
 * once: nothing waits out the grace period (STOP_GRACE_MS, 5 s) once the last suspended
 * request is answered. */
static void test_deferred_answered_during_stop(void)
{
    int port;
    char ans[2048];
    pthread_t th;
    es_http_limits_t l = {.workers = 1};
    es_http_server_t *srv = start_hostile(l, &port);
    int fd;
    es_http_deferred_t *d = park_request(port, &fd);
    pthread_create(&th, NULL, stop_server, srv);
    usleep(300 * 1000); /* the stop is waiting for this answer now */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    es_http_deferred_json(d, 200, json_pack("{s:s}", "from", "the stop's grace"));
    pthread_join(th, NULL);
    long took_ms = ms_since(&t0);
    CU_ASSERT_TRUE(took_ms < 2500); /* not the 5 s grace: the last resume woke the stop */
    ssize_t n = recv(fd, ans, sizeof(ans) - 1, 0);
    ans[n > 0 ? n : 0] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, " 200 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "the stop's grace"));
    close(fd);
}

static void query_string_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    es_buf_t qs = {0};
    (void)opaque;
    es_http_req_query_string(req, &qs);
    json_t *body = json_pack("{s:s}", "qs", qs.data ? qs.data : "");
    if (es_http_req_param(req, 0)) { /* /path/{id}: the id, and the path to send on */
        es_http_req_path_encoded(req, &qs);
        json_object_set_new(body, "id", json_string(es_http_req_param(req, 0)));
        json_object_set_new(body, "path", json_stringn(qs.data, qs.len));
    }
    es_http_resp_json(resp, 200, body);
    es_buf_free(&qs);
}

/* The query string and the path as forwarded (partitioned projectors): every
 * value as it was meant.  An id holding `?` used to be sent on decoded, so
 * the next server read `a?b` as the path `a` and the query `b`. */
static void test_query_string(void)
{
    static const es_http_route_t routes[] = {
        {"GET", "/qs", query_string_handler, "query:qs", false},
        {"GET", "/path/{id}", query_string_handler, "query:qs", false}};
    es_http_server_conf_t conf = {
        .listen = "127.0.0.1:0", .max_body = 1024, .routes = routes, .nroutes = 2};
    char errstr[256], ans[2048];
    es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    int port = es_http_server_port(srv);
    CU_ASSERT_EQUAL(raw_request(port,
                                "GET /qs?as_of=2026-12-01T10:00:00%2B01:00&b=x%20y&flag&"
                                "e=%C3%A9%26%3D HTTP/1.1\r\nHost: x\r\n\r\n",
                                ans, sizeof(ans), 5000),
                    200);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(ans, "\"qs\":\"as_of=2026-12-01T10:00:00%2B01:00&b=x%20y&flag&e=%C3%A9%26%3D\""));
    CU_ASSERT_EQUAL(
        raw_request(port, "GET /qs HTTP/1.1\r\nHost: x\r\n\r\n", ans, sizeof(ans), 5000), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\"qs\":\"\""));
    CU_ASSERT_EQUAL(raw_request(port, "GET /path/a%3Fb%20c%23d%25e+f HTTP/1.1\r\nHost: x\r\n\r\n",
                                ans, sizeof(ans), 5000),
                    200);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\"id\":\"a?b c#d%e+f\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\"path\":\"/path/a%3Fb%20c%23d%25e+f\""));
    es_http_server_stop(srv);
}

static void test_server(void)
{
    static const es_http_route_t routes[] = {
        {"POST", "/v1/carts/{id}/{cmd}", echo_handler, "command:carts.{cmd}", false},
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
    /* an id past a segment's 255 bytes: no route takes it, and the answer says why */
    char path[400];
    for (int len = 255; len <= 256; len++) {
        snprintf(path, sizeof(path), "/v1/carts/%0*d/add-item", len, 7);
        int st = request(port, "POST", path, "{}", 2, &out);
        CU_ASSERT_EQUAL(st, len == 255 ? 200 : 414);
        if (len == 256)
            CU_ASSERT_PTR_NOT_NULL(
                strstr(out.data, "a path segment of 256 bytes exceeds the limit of 255 bytes"));
    }

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

/* What a handler sees of the trace context, and the log trace of its thread. */
static void trace_handler(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    es_http_resp_json(resp, 200,
                      json_pack("{s:s, s:s, s:s, s:s}", "traceparent", es_http_req_traceparent(req),
                                "tracestate", es_http_req_tracestate(req), "trace_id",
                                es_http_req_trace_id(req), "log_trace", es_log_trace_get()));
}

/* The value of response header @p name (lowercase) in @p answer, or "". */
static void answer_header(const char *answer, const char *name, char *out, size_t outsz)
{
    char pat[64];
    out[0] = '\0';
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    for (const char *p = answer; *p; p++) {
        if (strncasecmp(p, pat, strlen(pat)))
            continue;
        p += strlen(pat);
        snprintf(out, outsz, "%.*s", (int)strcspn(p, "\r\n"), p);
        return;
    }
}

#define TP_A "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
#define TP_B "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
#define ID_A "4bf92f3577b34da6a3ce929d0e0e4736"

/*
 * GET @p path with extra header lines @p hdrs: the status must be @p want
 * and the answer must carry a valid traceparent, read into @p got; the JSON
 * body in *body (caller decrefs; NULL when none).
 */
static void traced_get(int port, const char *path, const char *hdrs, int want,
                       es_traceparent_t *got, json_t **body)
{
    char req[2048], answer[8192], tp[128];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n", path,
             hdrs);
    CU_ASSERT_EQUAL(raw_request(port, req, answer, sizeof(answer), 5000), want);
    answer_header(answer, "traceparent", tp, sizeof(tp));
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(tp, got));
    const char *b = strstr(answer, "\r\n\r\n");
    *body = b ? json_loads(b + 4, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    if (*body && json_object_get(*body, "traceparent")) /* the handler's span is the answer's */
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(*body, "traceparent")), tp);
}

static const char *body_str(json_t *b, const char *name)
{
    return json_string_value(json_object_get(b, name));
}

/*
 * Every answer carries a traceparent: the caller's trace continued with a
 * new span, or a new trace when the header is absent, invalid or repeated;
 * the handler sees the same span and logs with its trace id; an answer of
 * the event thread (404) carries one too.
 */
static void test_trace_context(void)
{
    static const es_http_route_t routes[] = {
        {"GET", "/trace", trace_handler, "query:trace", false}};
    es_http_server_conf_t conf = {
        .listen = "127.0.0.1:0", .max_body = 1024, .routes = routes, .nroutes = 1};
    char errstr[256];
    json_t *b = NULL;
    es_traceparent_t got;
    es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    int port = es_http_server_port(srv);

    traced_get(port, "/trace",
               TP_A "tracestate: rojo=00f067aa0ba902b7\r\ntracestate: congo=t61rcWkgMzE\r\n", 200,
               &got, &b);
    ES_ASSERT_STR_EQ(got.trace_id, ID_A);
    CU_ASSERT_STRING_NOT_EQUAL(got.parent_id, "00f067aa0ba902b7"); /* our own span */
    /* both tracestate headers, in order */
    ES_ASSERT_STR_EQ(body_str(b, "tracestate"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    ES_ASSERT_STR_EQ(body_str(b, "log_trace"), ID_A);
    json_decref(b);

    /* invalid (uppercase): ignored, a new trace, tracestate dropped */
    traced_get(port, "/trace",
               "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n"
               "tracestate: rojo=1\r\n",
               200, &got, &b);
    CU_ASSERT_STRING_NOT_EQUAL(got.trace_id, ID_A);
    ES_ASSERT_STR_EQ(body_str(b, "trace_id"), got.trace_id);
    ES_ASSERT_STR_EQ(body_str(b, "tracestate"), "");
    json_decref(b);

    /* two traceparent headers: neither is trusted */
    traced_get(port, "/trace", TP_A TP_B, 200, &got, &b);
    CU_ASSERT_STRING_NOT_EQUAL(got.trace_id, ID_A);
    CU_ASSERT_STRING_NOT_EQUAL(got.trace_id, "0af7651916cd43dd8448eb211c80319c");
    json_decref(b);

    /* answers of the event thread; this thread's log trace was never set */
    traced_get(port, "/nowhere", TP_A, 404, &got, &b);
    ES_ASSERT_STR_EQ(got.trace_id, ID_A);
    json_decref(b);
    traced_get(port, "/healthz", "", 200, &got, &b);
    json_decref(b);
    ES_ASSERT_STR_EQ(es_log_trace_get(), "");
    es_http_server_stop(srv);
}

/* A second server on a port in use is refused: two daemons must never share one port (with
 * SO_REUSEPORT the kernel split connections between them, and half the requests went astray). */
static void test_port_in_use(void)
{
    int port;
    es_http_server_t *first = start_hostile((es_http_limits_t){0}, &port);
    char listen[64], errstr[256];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    es_http_server_conf_t conf = {.listen = listen, .max_body = 1024};
    es_http_server_t *second = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NULL(second);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, listen));
    if (second)
        es_http_server_stop(second);
    es_buf_t out = {0};
    CU_ASSERT_EQUAL(request(port, "GET", "/healthz", NULL, 0, &out), 200); /* the first serves */
    es_buf_free(&out);
    es_http_server_stop(first);
}

/* TLS and mutual TLS with certificates made here by openssl(1). */
static void test_tls(void)
{
    char dir[] = "/tmp/escqrs-tls-XXXXXX", cmd[4096], url[256], cert[300], key[300], ca[300],
         ccert[300], ckey[300];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
             "-days 1 -subj /CN=test-ca 2>/dev/null && "
             "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj "
             "/CN=127.0.0.1 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1\n' > ext && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
             "-days 1 -extfile ext 2>/dev/null && "
             "openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=client "
             "2>/dev/null && openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key "
             "-CAcreateserial -out cli.pem -days 1 2>/dev/null",
             dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(cert, sizeof(cert), "%s/srv.pem", dir);
    snprintf(key, sizeof(key), "%s/srv.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(ccert, sizeof(ccert), "%s/cli.pem", dir);
    snprintf(ckey, sizeof(ckey), "%s/cli.key", dir);
    static const es_http_route_t routes[] = {
        {"POST", "/v1/carts/{id}/{cmd}", echo_handler, "command:carts.{cmd}", false},
    };
    for (int mutual = 0; mutual < 2; mutual++) {
        es_http_server_conf_t conf = {.listen = "127.0.0.1:0",
                                      .max_body = 1024,
                                      .routes = routes,
                                      .nroutes = 1,
                                      .tls_cert_file = cert,
                                      .tls_key_file = key,
                                      .tls_client_ca_file = mutual ? ca : NULL};
        char errstr[256];
        es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
        CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/v1/carts/c1/add-item",
                 es_http_server_port(srv));
        es_buf_t out = {0};
        long st;
        es_http_client_opts_t trusted = {.ca_file = ca},
                              with_cert = {.ca_file = ca, .cert_file = ccert, .key_file = ckey};
        /* plain HTTP to a TLS port, and an untrusted server certificate: no answer */
        char plain[256];
        snprintf(plain, sizeof(plain), "http://127.0.0.1:%d/healthz", es_http_server_port(srv));
        es_http_fetch_opts("GET", plain, NULL, NULL, NULL, 2000, NULL, &st, &out, errstr,
                           sizeof(errstr));
        CU_ASSERT_NOT_EQUAL(st, 200);
        CU_ASSERT_EQUAL(es_http_fetch_opts("POST", url, "application/json", NULL, "{}", 5000, NULL,
                                           &st, &out, errstr, sizeof(errstr)),
                        ES_ERR_HTTP);
        es_http_fetch_opts("POST", url, "application/json", NULL, "{}", 5000, &trusted, &st, &out,
                           errstr, sizeof(errstr));
        CU_ASSERT_EQUAL(st, mutual ? 403 : 200); /* mutual TLS: no client certificate */
        CU_ASSERT_EQUAL(es_http_fetch_opts("POST", url, "application/json", NULL, "{}", 5000,
                                           &with_cert, &st, &out, errstr, sizeof(errstr)),
                        ES_ERR_OK);
        CU_ASSERT_EQUAL(st, 200);
        es_buf_free(&out);
        es_http_server_stop(srv);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static const es_test_case_t cases[] = {
        {"route match", test_route_match},
        {"server answers the generic cases", test_server},
        {"framing HTTP says to refuse is refused", test_framing_refused},
        {"requests that never finish arriving are cut off", test_request_deadline},
        {"1500 idle connections, and a per-client limit", test_many_idle_connections},
        {"a full handler queue answers 503, health still answers", test_busy_workers},
        {"a never_waits route runs on the event thread, or asks for a worker",
         test_never_waits_routes},
        {"answers deferred to another thread, and at stop", test_deferred},
        {"a deferred answer given by its own handler", test_deferred_answered_by_its_handler},
        {"a deferred answer after its client hung up", test_deferred_client_gone},
        {"a deferred answer given during a stop ends it at once",
         test_deferred_answered_during_stop},
        {"the query string and the path again, percent-encoded", test_query_string},
        {"TLS, and mutual TLS", test_tls},
        {"a second server on a port in use is refused", test_port_in_use},
        {"trace context: every answer carries a traceparent", test_trace_context},
        {NULL, NULL},
    };
    int rc = es_test_run("http", cases);
    curl_global_cleanup();
    return rc;
}
