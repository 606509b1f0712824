/*
 * 0303-projector-read-your-writes.c — `min_position=` waits until the view
 * has applied the event, so a client reads its own write.
 *
 * 300 times: produce one more event for a cart, take its position from the
 * delivery report and at once ask the running projector for the cart with
 * min_position=<partition>:<offset>: the answer must already carry that
 * event's version.  A position the log has not reached yet answers 504
 * `timeout` after query.wait.max.ms; a malformed one 400; an unknown cart 404
 * `not_found`.
 */
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_min_position(void)
{
    char prefix[128], agg[200], root[300], pfx[200], path[600];
    es_conf_t *conf = rt_conf(3);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view", "query.wait.max.ms=800"};
    int stale_without = 0, ok = 0;

    es_test_unique("it0303", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));

    for (int i = 1; i <= 300; i++) {
        char id[200];
        snprintf(id, sizeof(id), "%s-c%d", prefix, i % 7);
        int64_t version = (i + 6) / 7;
        rt_produce(&cart, id, es_evgen_cart(g, id, version, 0, "ItemAdded", "sku-1", 1, 10));
        rt_topic_flush(&cart);
        rt_rec_t *r = &cart.recs[cart.n - 1];
        json_t *b = NULL;
        if (i % 10 == 0) { /* how often would a plain read have been stale? */
            snprintf(path, sizeof(path), "/v1/carts/%s", id);
            rt_http(&proc, "GET", path, &b);
            stale_without += json_integer_value(json_object_get(b, "version")) != version;
            json_decref(b);
            b = NULL;
        }
        snprintf(path, sizeof(path), "/v1/carts/%s?min_position=%d:%lld", id, (int)r->partition,
                 (long long)r->offset);
        int st = rt_http(&proc, "GET", path, &b);
        CU_ASSERT_EQUAL(st, 200);
        ok += st == 200 && json_integer_value(json_object_get(b, "version")) == version;
        json_decref(b);
    }
    CU_ASSERT_EQUAL(ok, 300);
    fprintf(stderr, "read-your-writes: %d/300; plain reads stale %d/30\n", ok, stale_without);

    /* a position not reached: 504 after the bounded wait */
    json_t *b = NULL;
    snprintf(path, sizeof(path), "/v1/carts/%s-c1?min_position=0:999999", prefix);
    int64_t t0 = now_ms();
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, &b), 504);
    int64_t waited = now_ms() - t0;
    CU_ASSERT_TRUE(waited >= 700 && waited < 5000);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(b, "error")), "timeout");
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s-c1?min_position=banana", prefix);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, &b), 400);
    json_decref(b);
    /* a position that is not "<partition>:<offset>" in plain decimal is a bad request (400):
     * past int64 it was once read as INT64_MAX and answered 504 after the wait */
    static const char *const bad[] = {"99:1",
                                      "0:99999999999999999999",
                                      "0:%2B5",
                                      "0:%205",
                                      "%200:5",
                                      "-0:5",
                                      "0:-1",
                                      "0:5x",
                                      "0:",
                                      ":5",
                                      "0:0x10",
                                      "4294967296:1",
                                      "0:9223372036854775808",
                                      "0::5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/carts/%s-c1?min_position=%s", prefix, bad[i]);
        int st = rt_http(&proc, "GET", path, &b);
        if (st != 400)
            fprintf(stderr, "min_position=%s answered %d\n", bad[i], st);
        CU_ASSERT_EQUAL(st, 400);
        json_decref(b);
    }
    snprintf(path, sizeof(path), "/v1/carts/%s-c1?min_position=0:9223372036854775807", prefix);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, &b),
                    504); /* the largest offset: valid, unreached */
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s-nope", prefix);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, &b), 404);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(b, "error")), "not_found");
    json_decref(b);

    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"min_position reads your writes", test_min_position},
        {NULL, NULL},
    };
    return es_test_run("0303-projector-read-your-writes", cases);
}
