/*
 * 0306-projector-frozen.c — frozen views: a rebuild that stops at a time.
 *
 * Cart events are produced in two phases with a gap; T is a time inside the
 * gap.  Frozen views of cart_view and item_stats at T must answer every cart
 * and the item ranking exactly as the independent model (viewmodel.h, never
 * the projections' folds) of the records stamped <= T (phase A) says, while
 * the live views answer as the model of all records; the frozen answers do
 * not move when more events arrive, survive a projector restart (an
 * incomplete frozen directory is deleted then), and the frozen stores hold
 * exactly phase A's views (checked through the projections' query handlers)
 * at offsets that end phase A.  Unknown labels answer 404, view= with as_of=
 * 400; DELETE removes a view; a 17th view of one projection is refused
 * (409) until one is deleted.
 */
#include "cart.h"
#include "readtest.h"
#include "testutil.h"

#include "escqrs/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char prefix[128], pfx[200], root[300];
static rt_topic_t cart;
static es_sim_t sim;
static es_evgen_t *cg;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void produce_carts(int n)
{
    rt_produce_sim(&cart, &sim, cg, n);
}

/* The model of the records stamped <= until (all records when until < 0). */
static vm_t *model_until(int64_t until)
{
    size_t applied = 0, refused = 0;
    vm_t *m = rt_model(&cart, NULL, until, &applied, &refused);
    CU_ASSERT_EQUAL(refused, 0);
    return m;
}

/*
 * Compare every cart's answer (from frozen view @p carts_view, NULL: live) with
 * model @p carts, and the item ranking (from @p stats_view) with model @p stats
 * unless it is NULL; returns the number of differences.
 */
static int compare_all(const rt_proc_t *p, const char *carts_view, const vm_t *carts,
                       const char *stats_view, const vm_t *stats)
{
    char path[400];
    int diffs = 0;
    for (size_t i = 0; i < sim.ncarts; i++) {
        json_t *got = NULL, *want = vm_cart_json(carts, sim.carts[i].id);
        snprintf(path, sizeof(path), "/v1/carts/%s%s%s", sim.carts[i].id,
                 carts_view ? "?view=" : "", carts_view ? carts_view : "");
        int gs = rt_http(p, "GET", path, &got);
        if (want ? gs != 200 || !json_equal(got, want) : gs != 404) {
            if (diffs++ < 3)
                fprintf(stderr, "%s: HTTP %d, the model %s\n", path, gs, want ? "200" : "404");
        }
        json_decref(got);
        json_decref(want);
    }
    if (!stats)
        return diffs;
    json_t *got = NULL, *want = vm_stats_json(stats, "added", 1000);
    snprintf(path, sizeof(path), "/v1/stats/items?top=1000&by=added%s%s",
             stats_view ? "&view=" : "", stats_view ? stats_view : "");
    int gs = rt_http(p, "GET", path, &got);
    if (gs != 200 || !json_equal(got, want)) {
        fprintf(stderr, "%s: HTTP %d, differs from the model\n", path, gs);
        diffs++;
    }
    json_decref(got);
    json_decref(want);
    return diffs;
}

/* The message of an error answer's body, or "". */
static const char *message_of(json_t *body)
{
    const char *m = json_string_value(json_object_get(body, "message"));
    return m ? m : "";
}

/*
 * At most 16 frozen views per projection (docs/projector.md): with "audit" and 15
 * more, cart_view refuses a 17th with 409 naming the limit, while item_stats, which
 * holds one, still takes one; a view deleted makes room again.  The extra views are
 * deleted again.
 */
static void too_many_views(rt_proc_t *p)
{
    char path[200];
    json_t *b = NULL;
    for (int i = 1; i <= 15; i++) {
        snprintf(path, sizeof(path), "/admin/projections/cart_view/freeze?until=1&label=many%d", i);
        CU_ASSERT_EQUAL(rt_http(p, "POST", path, NULL), 202);
    }
    static const char more[] = "/admin/projections/cart_view/freeze?until=1&label=many16";
    CU_ASSERT_EQUAL(rt_http(p, "POST", more, &b), 409);
    CU_ASSERT_PTR_NOT_NULL(strstr(message_of(b), "has 16 frozen views already"));
    json_decref(b);
    CU_ASSERT_EQUAL(
        rt_http(p, "POST", "/admin/projections/item_stats/freeze?until=1&label=many16", NULL), 202);
    CU_ASSERT_EQUAL(rt_http(p, "DELETE", "/admin/projections/cart_view/frozen/many1", NULL), 200);
    CU_ASSERT_EQUAL(rt_http(p, "POST", more, NULL), 202);
    for (int i = 2; i <= 16; i++) {
        snprintf(path, sizeof(path), "/admin/projections/cart_view/frozen/many%d", i);
        CU_ASSERT_EQUAL(rt_http(p, "DELETE", path, NULL), 200);
    }
    CU_ASSERT_EQUAL(rt_http(p, "DELETE", "/admin/projections/item_stats/frozen/many16", NULL), 200);
}

static bool wait_ready(const rt_proc_t *p, const char *name, const char *label, int timeout_ms)
{
    for (int w = 0; w < timeout_ms; w += 200) {
        json_t *f = rt_frozen_entry(p, name, label);
        const char *st = f ? json_string_value(json_object_get(f, "state")) : NULL;
        bool ready = st && strcmp(st, "ready") == 0;
        bool failed = st && strcmp(st, "failed") == 0;
        json_decref(f);
        if (ready)
            return true;
        if (failed)
            return false;
        usleep(200 * 1000);
    }
    return false;
}

static void test_frozen_view(void)
{
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view,item_stats"};
    es_conf_t *conf = rt_conf(2);
    char agg[200], path[700];
    json_t *b = NULL;

    cg = es_evgen_new("cart.events");
    es_test_unique("it0306", prefix, sizeof(prefix));
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, 306, 60);

    produce_carts(1500); /* phase A */
    size_t na = cart.n;
    usleep(100 * 1000);
    int64_t until = now_ms();
    usleep(100 * 1000);
    produce_carts(700);                 /* phase B */
    for (size_t i = 0; i < cart.n; i++) /* the gap separates the phases by timestamp */
        CU_ASSERT_TRUE_FATAL(i < na ? cart.recs[i].ts <= until : cart.recs[i].ts > until);

    rt_proc_start(&proc, root, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 60000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "item_stats", 60000));

    snprintf(path, sizeof(path), "/admin/projections/cart_view/freeze?until=%lld&label=audit",
             (long long)until);
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", path, &b), 202);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(b, "label")), "audit");
    json_decref(b);
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", path, NULL), 409); /* the label exists */
    /* item_stats with the default label and the time in RFC 3339 */
    char rfc[64], deflabel[64];
    time_t s = (time_t)(until / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(rfc, sizeof(rfc), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(rfc + n, sizeof(rfc) - n, ".%03dZ", (int)(until % 1000));
    n = strftime(deflabel, sizeof(deflabel), "%Y%m%dT%H%M%S", &tm);
    snprintf(deflabel + n, sizeof(deflabel) - n, ".%03dZ", (int)(until % 1000));
    snprintf(path, sizeof(path), "/admin/projections/item_stats/freeze?until=%s", rfc);
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", path, &b), 202);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(b, "label")), deflabel);
    json_decref(b);
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", "/admin/projections/cart_view/freeze", NULL), 400);
    CU_ASSERT_TRUE_FATAL(wait_ready(&proc, "cart_view", "audit", 60000));
    CU_ASSERT_TRUE_FATAL(wait_ready(&proc, "item_stats", deflabel, 60000));

    json_t *f = rt_frozen_entry(&proc, "cart_view", "audit");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(f, "events")), (json_int_t)na);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(f, "until_ms")), until);
    json_decref(f);

    vm_t *model_a = model_until(until), *model_all = model_until(-1);
    CU_ASSERT_EQUAL(compare_all(&proc, "audit", model_a, deflabel, model_a), 0);
    /* the live views include phase B, and phase B changed something */
    CU_ASSERT_EQUAL(compare_all(&proc, NULL, model_all, NULL, model_all), 0);
    CU_ASSERT_TRUE(compare_all(&proc, NULL, model_a, NULL, model_a) > 0);

    /* errors */
    snprintf(path, sizeof(path), "/v1/carts/%s?view=nope", sim.carts[0].id);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 404);
    snprintf(path, sizeof(path), "/v1/carts/%s?view=audit&as_of=1", sim.carts[0].id);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 400);
    snprintf(path, sizeof(path), "/v1/carts/%s?view=audit&min_position=0:1", sim.carts[0].id);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 400);
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", "/admin/projections/nope/freeze?until=1", NULL), 404);
    CU_ASSERT_EQUAL(
        rt_http(&proc, "POST", "/admin/projections/cart_view/freeze?until=1&label=../x", NULL),
        400);

    /* more events: the live view moves, the frozen one does not */
    produce_carts(300);
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 60000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "item_stats", 60000));
    vm_destroy(model_all);
    model_all = model_until(-1);
    CU_ASSERT_EQUAL(compare_all(&proc, "audit", model_a, deflabel, model_a), 0);
    CU_ASSERT_EQUAL(compare_all(&proc, NULL, model_all, NULL, model_all), 0);

    /* a throwaway view, deleted again */
    CU_ASSERT_EQUAL(
        rt_http(&proc, "POST", "/admin/projections/cart_view/freeze?until=1&label=gone", NULL),
        202);
    CU_ASSERT_TRUE(wait_ready(&proc, "cart_view", "gone", 60000));
    snprintf(path, sizeof(path), "/v1/carts/%s?view=gone", sim.carts[0].id);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 404); /* nothing before time 1 */
    CU_ASSERT_EQUAL(rt_http(&proc, "DELETE", "/admin/projections/cart_view/frozen/gone", NULL),
                    200);
    CU_ASSERT_EQUAL(rt_http(&proc, "DELETE", "/admin/projections/cart_view/frozen/gone", NULL),
                    404);
    snprintf(path, sizeof(path), "%s/cart_view/frozen-gone", root);
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);

    /* deleted at once, most likely while it builds: stopped, its directory gone */
    CU_ASSERT_EQUAL(
        rt_http(&proc, "POST", "/admin/projections/cart_view/freeze?until=9&label=racing", NULL),
        202);
    CU_ASSERT_EQUAL(rt_http(&proc, "DELETE", "/admin/projections/cart_view/frozen/racing", NULL),
                    200);
    snprintf(path, sizeof(path), "%s/cart_view/frozen-racing", root);
    CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);

    too_many_views(&proc);

    /* restart: complete views come back, an incomplete one is deleted */
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    snprintf(path, sizeof(path), "%s/cart_view/frozen-broken", root);
    mkdir(path, 0755);
    rt_proc_start(&proc, root, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);
    f = rt_frozen_entry(&proc, "cart_view", "audit");
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(f, "state")), "ready");
    json_decref(f);
    CU_ASSERT_EQUAL(compare_all(&proc, "audit", model_a, deflabel, model_a), 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    /* the frozen stores themselves: exactly phase A's views, offsets at the end of phase A */
    char err[256];
    snprintf(path, sizeof(path), "%s/cart_view/frozen-audit", root);
    CU_ASSERT_EQUAL(rt_compare_views(path, &es_proj_cart_view, model_a), 0);
    snprintf(path, sizeof(path), "%s/item_stats/frozen-%s", root, deflabel);
    CU_ASSERT_EQUAL(rt_compare_views(path, &es_proj_item_stats, model_a), 0);
    snprintf(path, sizeof(path), "%s/cart_view/frozen-audit", root);
    es_store_opts_t so = {.block_cache_mb = 8, .write_buffer_mb = 4};
    es_store_t *st = es_store_open(path, &so, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    int64_t end[2] = {-1, -1}; /* each partition stops at its first phase-B record */
    for (size_t i = na; i < na + 700; i++) {
        int32_t p = cart.recs[i].partition;
        if (end[p] < 0 || cart.recs[i].offset < end[p])
            end[p] = cart.recs[i].offset;
    }
    for (int p = 0; p < 2; p++) {
        int64_t off = -1;
        CU_ASSERT_EQUAL(es_store_get_offset(st, cart.name, p, &off, err, sizeof(err)), ES_ERR_OK);
        CU_ASSERT_EQUAL(off, end[p]);
    }
    es_store_close(st);

    vm_destroy(model_a);
    vm_destroy(model_all);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(cg);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a frozen view is the projection as of a time", test_frozen_view},
        {NULL, NULL},
    };
    return es_test_run("0306-projector-frozen", cases);
}
