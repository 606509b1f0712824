/*
 * 0305-projector-as-of.c — point-in-time queries (`as_of=`).
 *
 * A cart gets 12 events 40 ms apart (other carts' events interleaved in the
 * same topic); for each event, as_of=<its record timestamp> must answer the
 * cart as it was right after that event (version i), in both accepted time
 * formats; before the first event the cart does not exist (404); a query
 * spanning aggregates refuses as_of (400).  Twice: by a projector without
 * the history index (the partition is re-read) and by one hosting
 * cart_history (the index); the as_of metric must show which path answered
 * every query.
 */
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* queries below that fold: 12 events, one RFC 3339 in Z and one at +01:30, one before the
 * first, one at the largest time (INT64_MAX ms) */
#define AS_OF_FOLDS 16

/* @p ts (ms) as RFC 3339's date and time without zone, on a clock @p east_min minutes east. */
static void local_time(char *out, size_t cap, int64_t ts, int east_min)
{
    time_t s = (time_t)(ts / 1000) + east_min * 60;
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03d", (int)(ts % 1000));
}

/*
 * The instant @p ts (the 6th event's) in RFC 3339: in "Z" and 90 minutes east
 * ("+01:30") it answers version 6; an offset not exactly "+HH:MM" (hours to
 * 23, minutes to 59) is a bad value (400), never read past the string's end
 * (the old reader took "+1:00" and skipped six characters).
 */
static void ask_rfc3339(rt_proc_t *proc, const char *id, int64_t ts)
{
    static const char *const bad[] = {"%2B1:00",    "%2B24:00", "%2B01:60", "%2B01:00x",
                                      "%2B01",      "%2B0100",  "-1:30",    "%2B%2B1:00",
                                      "%2B%201:00", "%2B01:-1", "%2B-1:00", ""};
    char utc[64], east[64], path[600];
    json_t *b = NULL;
    local_time(utc, sizeof(utc), ts, 0);
    local_time(east, sizeof(east), ts, 90);
    for (int z = 0; z < 2; z++) {
        snprintf(path, sizeof(path), "/v1/carts/%s?as_of=%s%s", id, z ? east : utc,
                 z ? "%2B01:30" : "Z");
        CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 200);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(b, "version")), 6);
        json_decref(b);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/carts/%s?as_of=%s%s", id, east, bad[i]);
        int st = rt_http(proc, "GET", path, &b);
        if (st != 400)
            fprintf(stderr, "as_of=%s%s answered %d\n", east, bad[i], st);
        CU_ASSERT_EQUAL(st, 400);
        json_decref(b);
    }
}

static void ask_as_of(rt_proc_t *proc, rt_topic_t *cart, const char *id, const size_t *idx,
                      bool history)
{
    char path[600];
    for (int i = 0; i < 12; i++) {
        json_t *b = NULL;
        int64_t ts = cart->recs[idx[i]].ts;
        snprintf(path, sizeof(path), "/v1/carts/%s?as_of=%lld", id, (long long)ts);
        CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 200);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(b, "version")), i + 1);
        json_t *it0 = json_array_get(json_object_get(b, "items"), 0);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it0, "quantity")), i + 1);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(it0, "unit_price_cents")), 100 + i);
        json_decref(b);
        if (i == 5)
            ask_rfc3339(proc, id, ts);
    }
    json_t *b = NULL;
    snprintf(path, sizeof(path), "/v1/carts/%s?as_of=%lld", id,
             (long long)cart->recs[idx[0]].ts - 1);
    CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 404);
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s", id);
    CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(b, "version")), 12);
    json_decref(b);
    CU_ASSERT_EQUAL(rt_http(proc, "GET", "/v1/stats/items?as_of=1", &b), 400);
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s?as_of=yesterday", id);
    CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 400);
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s?as_of=9223372036854775807", id); /* INT64_MAX */
    CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 200); /* after every event */
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(b, "version")), 12);
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s?as_of=99999999999999999999", id); /* > int64 */
    CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), 400);                        /* was 503 */
    json_decref(b);
    snprintf(path, sizeof(path), "/v1/carts/%s/events?as_of=1", id); /* the history has none */
    CU_ASSERT_EQUAL(rt_http(proc, "GET", path, &b), history ? 400 : 404);
    json_decref(b);
}

static void test_as_of(void)
{
    char prefix[128], agg[200], root[300], pfx[200], id[200], other[200];
    es_conf_t *conf = rt_conf(2);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    const char *sets[2][1] = {{"projections=cart_view,item_stats"},
                              {"projections=cart_view,item_stats,cart_history"}};
    const char *series[2] = {"escqrs_projector_as_of_total{path=\"log\"}",
                             "escqrs_projector_as_of_total{path=\"index\"}"};
    size_t idx[12];

    es_test_unique("it0305", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    snprintf(id, sizeof(id), "%s-audited", prefix);
    for (int i = 0; i < 12; i++) {
        snprintf(other, sizeof(other), "%s-other-%d", prefix, i);
        rt_produce(&cart, other, es_evgen_cart(g, other, 1, 0, "ItemAdded", "z", 1, 1));
        rt_produce(&cart, id, es_evgen_cart(g, id, i + 1, 0, "ItemAdded", "sku-a", 1, 100 + i));
        idx[i] = cart.n - 1;
        rt_topic_flush(&cart);
        usleep(40 * 1000);
    }
    for (int path = 0; path < 2; path++) {
        rt_proc_t proc = {0};
        snprintf(root, sizeof(root), "/tmp/%s-%s", prefix, path ? "index" : "log");
        mkdir(root, 0755);
        rt_proc_start(&proc, root, pfx, sets[path], 1);
        CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
        CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 60000));
        if (path)
            CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_history", 60000));
        double m0[2] = {rt_metric(&proc, series[0]), rt_metric(&proc, series[1])};
        ask_as_of(&proc, &cart, id, idx, path == 1);
        double m1[2] = {rt_metric(&proc, series[0]), rt_metric(&proc, series[1])};
        printf("  %s: log path %.0f, index path %.0f\n", path ? "with cart_history" : "without",
               m1[0] - m0[0], m1[1] - m0[1]);
        CU_ASSERT_EQUAL(m1[path] - m0[path], AS_OF_FOLDS);
        CU_ASSERT_EQUAL(m1[!path] - m0[!path], 0);
        CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    }
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"as_of answers the aggregate as it was", test_as_of},
        {NULL, NULL},
    };
    return es_test_run("0305-projector-as-of", cases);
}
