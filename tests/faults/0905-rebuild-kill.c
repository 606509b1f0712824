/*
 * 0905-rebuild-kill.c — a blue/green rebuild interrupted by kill -9 resumes
 * at the next start and ends with the same store.
 *
 * 60 000 cart events are folded into cart_view; its digest is taken.  A
 * rebuild starts; once it has applied some events (and before it is done)
 * the projector gets SIGKILL.  At the next start the rebuild must be running
 * again from its stored offsets (not from 0, not dropped), `last_error`
 * must say it was interrupted, the live view must keep serving meanwhile,
 * and when the rebuild swaps in, the digest must equal the one before and
 * every cart the test's own model of the events (es_sim): the digest alone
 * compares the projector with itself.
 * Then kill -9 right after that swap: nothing of the new generation may be
 * lost (the shadow is written without RocksDB's log until the swap persists
 * it), so the restarted projector folds nothing again.  Then the same with
 * SIGTERM (a clean stop keeps the rebuild too).
 */
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int generation;
    bool running;
    long long events;
    char last_error[512];
} rb_t;

static bool rebuild_state(rt_proc_t *p, rb_t *out)
{
    json_t *b = NULL;
    bool ok = rt_http(p, "GET", "/admin/projections", &b) == 200;
    json_t *o = json_array_get(json_object_get(b, "projections"), 0);
    json_t *rb = json_object_get(o, "rebuild");
    if (ok && rb) {
        out->generation = (int)json_integer_value(json_object_get(o, "generation"));
        out->running = json_is_true(json_object_get(rb, "running"));
        out->events = json_integer_value(json_object_get(rb, "events"));
        snprintf(out->last_error, sizeof(out->last_error), "%s",
                 es_test_or_empty(json_string_value(json_object_get(rb, "last_error"))));
    }
    json_decref(b);
    return ok && rb;
}

static bool digest(rt_proc_t *p, char *out, size_t outsz)
{
    json_t *b = NULL;
    bool ok = rt_http(p, "GET", "/admin/projections/cart_view/digest", &b) == 200;
    snprintf(out, outsz, "%s/%s",
             es_test_or_empty(json_string_value(json_object_get(b, "views_fnv1a64"))),
             es_test_or_empty(json_string_value(json_object_get(b, "offsets_fnv1a64"))));
    json_decref(b);
    return ok;
}

/* Start a rebuild, interrupt it (kill -9 or SIGTERM), restart: it resumes and swaps in. */
static void interrupt_and_resume(rt_proc_t *p, const char *store, const char *pfx,
                                 const char *const *sets, bool kill9, const char *want_digest,
                                 const char *first_cart, es_sim_t *sim)
{
    rb_t rb = {0};
    CU_ASSERT_EQUAL_FATAL(rt_http(p, "POST", "/admin/projections/cart_view/rebuild", NULL), 202);
    for (int i = 0; i < 600 && rebuild_state(p, &rb) && rb.running && rb.events < 5000; i++)
        usleep(50 * 1000);
    CU_ASSERT_TRUE_FATAL(rb.running); /* interrupted in the middle, not after */
    int g0 = rb.generation;
    if (kill9)
        rt_proc_kill9(p);
    else
        CU_ASSERT_EQUAL(rt_proc_stop(p), 0);
    rt_proc_start(p, store, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_EQUAL(rt_http(p, "GET", first_cart, NULL), 200); /* the live view serves */
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    printf("  after %s: generation %d, rebuild %s, last_error \"%s\"\n",
           kill9 ? "kill -9" : "SIGTERM", rb.generation,
           rb.running ? "running" : (rb.generation > g0 ? "done" : "gone"), rb.last_error);
    CU_ASSERT_TRUE(rb.running || rb.generation > g0);
    CU_ASSERT_PTR_NOT_NULL(strstr(rb.last_error, "interrupted by a restart"));
    for (int i = 0; i < 1200 && rebuild_state(p, &rb) && (rb.running || rb.generation == g0); i++)
        usleep(100 * 1000);
    CU_ASSERT_EQUAL(rb.generation, g0 + 1);
    CU_ASSERT_TRUE(rt_wait_caught_up(p, "cart_view", 60000));
    char d[80];
    CU_ASSERT_TRUE(digest(p, d, sizeof(d)));
    ES_ASSERT_STR_EQ(d, want_digest);
    CU_ASSERT_EQUAL(rt_carts_differing(p, sim, NULL), 0);
}

/*
 * The shadow is written without RocksDB's log; the swap must put it into its
 * files first.  kill -9 right after a swap: the restarted projector serves the
 * new generation and folds nothing again (nothing of it was lost), same digest.
 */
static void kill_after_swap(rt_proc_t *p, const char *store, const char *pfx,
                            const char *const *sets, const char *want_digest, es_sim_t *sim)
{
    rb_t rb = {0};
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    int g = rb.generation;
    rt_proc_kill9(p);
    rt_proc_start(p, store, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_TRUE(rt_wait_caught_up(p, "cart_view", 60000));
    double refolded =
        rt_metric(p, "escqrs_projector_events_applied_total{projection=\"cart_view\"}");
    printf("  kill -9 after the swap to generation %d: %.0f events folded again\n", g, refolded);
    CU_ASSERT_EQUAL(refolded, 0);
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    CU_ASSERT_EQUAL(rb.generation, g);
    char d[80];
    CU_ASSERT_TRUE(digest(p, d, sizeof(d)));
    ES_ASSERT_STR_EQ(d, want_digest);
    CU_ASSERT_EQUAL(rt_carts_differing(p, sim, NULL), 0);
}

static void test_rebuild_kill(void)
{
    char prefix[128], agg[200], root[300], pfx[200], d0[80], first_cart[400];
    es_conf_t *conf = rt_conf(3);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view", "batch.max.events=500"};

    es_test_unique("ft0905", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, 905, 300);
    rt_produce_sim(&cart, &sim, g, 60000);
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 60000));
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(&proc, "cart_view", 120000));
    CU_ASSERT_TRUE_FATAL(digest(&proc, d0, sizeof(d0)));
    size_t differ = rt_carts_differing(&proc, &sim, NULL); /* the digest's own oracle */
    printf("\n  initial build: %zu cart(s) differing from the model", differ);
    CU_ASSERT_EQUAL(differ, 0);
    size_t c = 0;
    while (c + 1 < sim.ncarts && sim.carts[c].version == 0)
        c++; /* a cart with events: it has a view */
    snprintf(first_cart, sizeof(first_cart), "/v1/carts/%s", sim.carts[c].id);
    printf("\n");
    interrupt_and_resume(&proc, root, pfx, sets, true, d0, first_cart, &sim);
    kill_after_swap(&proc, root, pfx, sets, d0, &sim);
    interrupt_and_resume(&proc, root, pfx, sets, false, d0, first_cart, &sim);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a rebuild interrupted by kill -9 or SIGTERM resumes and matches", test_rebuild_kill},
        {NULL, NULL},
    };
    return es_test_run("fault-rebuild-kill", cases);
}
