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
 * The same again for cart_history, whose rebuild writes into a vector
 * memtable until its swap opens the store again (store_tuning.c), in 1 MiB
 * memtables so that sorted tables were flushed before each kill; its oracle
 * is the model's versions of every cart, page by page.
 * And that swap's reopen, through an LD_PRELOAD shim (kill_at_call.c) at the
 * first open after the persist's flush: kill -9 there (flushed and closed, not
 * open) resumes and folds nothing again; an open that fails there halts the
 * projection, with the reason, while the old generation keeps answering, and
 * keeps the shadow: the next start resumes it, folds nothing again and swaps.
 */
#include "readtest.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int generation;
    bool running;
    long long events;
    long long last_events; /* folded by the last rebuild that swapped in */
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
        out->last_events = json_integer_value(json_object_get(rb, "last_events"));
        snprintf(out->last_error, sizeof(out->last_error), "%s",
                 es_test_or_empty(json_string_value(json_object_get(rb, "last_error"))));
    }
    json_decref(b);
    return ok && rb;
}

/* The projection a case rebuilds, and how it is compared with the test's model. */
typedef struct {
    const char *name;
    size_t (*differing)(rt_proc_t *p, es_sim_t *sim);
    long long kill_after;    /* events the rebuild has applied when it is interrupted */
    const char *const *sets; /* the projector's --set flags */
    int nsets;
    int tables_at_kill; /* at least this many tables flushed into the shadow before the kill */
    bool reopens;       /* the swap opens the store again (blind writes: store_tuning.c) */
} target_t;

/* Tables (*.sst) in the store directory of generation @p gen of @p name under @p store. */
static int tables_in(const char *store, const char *name, int gen)
{
    char dir[600];
    int n = 0;
    snprintf(dir, sizeof(dir), "%s/%s/g%d", store, name, gen);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        n += strlen(e->d_name) > 4 && !strcmp(e->d_name + strlen(e->d_name) - 4, ".sst");
    if (d)
        closedir(d);
    return n;
}

static size_t views_differing(rt_proc_t *p, es_sim_t *sim)
{
    return rt_carts_differing(p, sim, NULL);
}

/* Carts whose history is not exactly versions 1 to the model's version, in order. */
static size_t histories_differing(rt_proc_t *p, es_sim_t *sim)
{
    size_t differ = 0;
    for (size_t c = 0; c < sim->ncarts; c++) {
        const es_sim_cart_t *cart = &sim->carts[c];
        if (cart->version == 0)
            continue;
        char path[300];
        json_t *b = NULL;
        snprintf(path, sizeof(path), "/v1/carts/%s/events?limit=1000", cart->id);
        int st = rt_http(p, "GET", path, &b);
        json_t *evs = json_object_get(b, "events");
        bool same = st == 200 && json_array_size(evs) == (size_t)cart->version &&
                    json_is_null(json_object_get(b, "next_from_version"));
        for (size_t i = 0; same && i < json_array_size(evs); i++)
            same = json_integer_value(json_object_get(json_array_get(evs, i), "version")) ==
                   (json_int_t)i + 1;
        if (!same && differ++ == 0)
            printf("  first history differing: %s (status %d, %zu event(s), model %lld)\n",
                   cart->id, st, json_array_size(evs), (long long)cart->version);
        json_decref(b);
    }
    return differ;
}

/* Wait until generation @p want serves (a rebuild swapped it in); then the store must match. */
static void rebuild_swapped_in(rt_proc_t *p, const target_t *t, int want, const char *want_digest,
                               es_sim_t *sim, rb_t *rb)
{
    for (int i = 0; i < 1200 && rebuild_state(p, rb) && rb->generation != want; i++)
        usleep(100 * 1000);
    CU_ASSERT_EQUAL(rb->generation, want);
    CU_ASSERT_TRUE(rt_wait_caught_up(p, t->name, 60000));
    char d[80];
    CU_ASSERT_TRUE(rt_digest(p, t->name, d, sizeof(d)));
    ES_ASSERT_STR_EQ(d, want_digest);
    CU_ASSERT_EQUAL(t->differing(p, sim), 0);
}

/* Start a rebuild, interrupt it (kill -9 or SIGTERM), restart: it resumes and swaps in. */
static void interrupt_and_resume(rt_proc_t *p, const target_t *t, const char *store,
                                 const char *pfx, bool kill9, const char *want_digest,
                                 const char *first_cart, es_sim_t *sim)
{
    rb_t rb = {0};
    char path[200];
    snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", t->name);
    CU_ASSERT_EQUAL_FATAL(rt_http(p, "POST", path, NULL), 202);
    for (int i = 0; i < 600 && rebuild_state(p, &rb) && rb.running && rb.events < t->kill_after;
         i++)
        usleep(50 * 1000);
    CU_ASSERT_TRUE_FATAL(rb.running); /* interrupted in the middle, not after */
    int g0 = rb.generation;
    if (kill9) {
        rt_proc_kill9(p);
        int tables = tables_in(store, t->name, g0 + 1);
        printf("  kill -9 after %lld event(s) of the rebuild: %d table(s) flushed\n", rb.events,
               tables);
        CU_ASSERT_TRUE(tables >= t->tables_at_kill);
    } else {
        CU_ASSERT_EQUAL(rt_proc_stop(p), 0);
    }
    rt_proc_start(p, store, pfx, t->sets, t->nsets);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_EQUAL(rt_http(p, "GET", first_cart, NULL), 200); /* the live view serves */
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    printf("  after %s: generation %d, rebuild %s, last_error \"%s\"\n",
           kill9 ? "kill -9" : "SIGTERM", rb.generation,
           rb.running ? "running" : (rb.generation > g0 ? "done" : "gone"), rb.last_error);
    CU_ASSERT_TRUE(rb.running || rb.generation > g0);
    CU_ASSERT_PTR_NOT_NULL(strstr(rb.last_error, "interrupted by a restart"));
    rebuild_swapped_in(p, t, g0 + 1, want_digest, sim, &rb);
}

/*
 * The shadow is written without RocksDB's log; the swap must put it into its
 * files first.  kill -9 right after a swap: the restarted projector serves the
 * new generation and folds nothing again (nothing of it was lost), same digest.
 */
static void kill_after_swap(rt_proc_t *p, const target_t *t, const char *store, const char *pfx,
                            const char *want_digest, es_sim_t *sim)
{
    char series[200];
    rb_t rb = {0};
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    int g = rb.generation;
    rt_proc_kill9(p);
    rt_proc_start(p, store, pfx, t->sets, t->nsets);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_TRUE(rt_wait_caught_up(p, t->name, 60000));
    snprintf(series, sizeof(series), "escqrs_projector_events_applied_total{projection=\"%s\"}",
             t->name);
    double refolded = rt_metric(p, series);
    printf("  kill -9 after the swap to generation %d: %.0f events folded again\n", g, refolded);
    CU_ASSERT_EQUAL(refolded, 0);
    rebuild_swapped_in(p, t, g, want_digest, sim, &rb); /* the same generation, whole */
}

/* Restart @p p under the shim with @p env naming @p arm, then arm it and start a rebuild. */
static int rebuild_under_shim(rt_proc_t *p, const target_t *t, const char *store, const char *pfx,
                              const char *env, const char *arm)
{
    rb_t rb = {0};
    char path[200];
    CU_ASSERT_EQUAL(rt_proc_stop(p), 0);
    setenv(env, arm, 1);
    es_test_preload(KILL_AT_CALL_SO);
    rt_proc_start(p, store, pfx, t->sets, t->nsets);
    es_test_preload(NULL);
    unsetenv(env);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(p, t->name, 60000));
    CU_ASSERT_TRUE_FATAL(rebuild_state(p, &rb));
    FILE *f = fopen(arm, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", t->name);
    CU_ASSERT_EQUAL_FATAL(rt_http(p, "POST", path, NULL), 202);
    return rb.generation;
}

/*
 * kill -9 at the swap's reopen: the shadow is flushed and closed, CURRENT still
 * names the old generation and REBUILD the new one.  The next start resumes the
 * rebuild from the flushed shadow's offsets, at the end: it folds nothing again.
 */
static void kill_at_reopen(rt_proc_t *p, const target_t *t, const char *store, const char *pfx,
                           const char *want_digest, es_sim_t *sim)
{
    char arm[600];
    rb_t rb = {0};
    snprintf(arm, sizeof(arm), "%s.kill-at-reopen", store);
    int g0 = rebuild_under_shim(p, t, store, pfx, "ESCQRS_TEST_KILL_AT_REOPEN", arm);
    for (int i = 0; i < 1200 && rt_proc_alive(p); i++)
        usleep(100 * 1000);
    bool died = !rt_proc_alive(p), fired = access(arm, F_OK) != 0;
    printf("  kill -9 at the swap's reopen: projector %s, shim %s, %d table(s) in generation %d\n",
           died ? "killed" : "ALIVE", fired ? "fired" : "NOT FIRED",
           tables_in(store, t->name, g0 + 1), g0 + 1);
    CU_ASSERT_TRUE_FATAL(died && fired);
    rt_proc_start(p, store, pfx, t->sets, t->nsets);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    CU_ASSERT_PTR_NOT_NULL(strstr(rb.last_error, "interrupted by a restart"));
    rebuild_swapped_in(p, t, g0 + 1, want_digest, sim, &rb);
    printf("  resumed and swapped in: %lld event(s) folded again\n", (long long)rb.last_events);
    CU_ASSERT_EQUAL(rb.last_events, 0);
}

/*
 * The swap's reopen fails: the projection halts and says why, its old
 * generation keeps answering, /readyz says 503, a rebuild is refused, and the
 * shadow is kept (it holds every batch): the next start resumes its rebuild,
 * which folds nothing again and swaps.
 */
static void fail_at_reopen(rt_proc_t *p, const target_t *t, const char *store, const char *pfx,
                           const char *want_digest, const char *first_cart, es_sim_t *sim)
{
    char arm[600], reason[512] = "", ready[512] = "", path[700];
    rb_t rb = {0};
    snprintf(arm, sizeof(arm), "%s.fail-at-reopen", store);
    int g0 = rebuild_under_shim(p, t, store, pfx, "ESCQRS_TEST_FAIL_AT_REOPEN", arm);
    for (int i = 0; i < 1200 && !strstr(reason, "halted"); i++) {
        json_t *o = rt_projection(p, t->name);
        snprintf(reason, sizeof(reason), "%s: %s",
                 es_test_or_empty(json_string_value(json_object_get(o, "state"))),
                 es_test_or_empty(json_string_value(json_object_get(o, "halt_reason"))));
        json_decref(o);
        if (!strstr(reason, "halted"))
            usleep(100 * 1000);
    }
    printf("  the swap's reopen refused: \"%s\"\n", reason);
    CU_ASSERT_TRUE(access(arm, F_OK) != 0); /* the shim fired */
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "swap: rocksdb open"));
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "refused by the test's shim"));
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "a restart resumes its rebuild"));
    CU_ASSERT_TRUE_FATAL(rt_proc_alive(p));
    CU_ASSERT_EQUAL(rt_http(p, "GET", first_cart, NULL), 200); /* the old generation answers */
    CU_ASSERT_TRUE(rt_wait_ready_status(p, 503, 10, ready, sizeof(ready)));
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    CU_ASSERT_EQUAL(rb.generation, g0);
    CU_ASSERT_FALSE(rb.running);
    snprintf(path, sizeof(path), "%s/%s/g%d", store, t->name, g0 + 1);
    CU_ASSERT_EQUAL(access(path, F_OK), 0); /* the shadow is kept */
    snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", t->name);
    CU_ASSERT_EQUAL(rt_http(p, "POST", path, NULL), 409); /* halted */
    CU_ASSERT_EQUAL(rt_proc_stop(p), 0);

    rt_proc_start(p, store, pfx, t->sets, t->nsets);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(p, 60000));
    CU_ASSERT_TRUE(rebuild_state(p, &rb));
    CU_ASSERT_PTR_NOT_NULL(strstr(rb.last_error, "interrupted by a restart"));
    rebuild_swapped_in(p, t, g0 + 1, want_digest, sim, &rb);
    printf("  restarted: resumed and swapped in, %lld event(s) folded again\n",
           (long long)rb.last_events);
    CU_ASSERT_EQUAL(rb.last_events, 0);
}

/* Build @p t from 60 000 events, then interrupt its rebuild three ways (above). */
static void rebuild_kill(const target_t *t)
{
    char prefix[128], agg[200], root[300], pfx[200], d0[80], first_cart[400];
    es_conf_t *conf = rt_conf(3);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    rt_proc_t proc = {0};

    es_test_unique("ft0905", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, 905, 300);
    rt_produce_sim(&cart, &sim, g, 60000);
    rt_proc_start(&proc, root, pfx, t->sets, t->nsets);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 60000));
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(&proc, t->name, 120000));
    CU_ASSERT_TRUE_FATAL(rt_digest(&proc, t->name, d0, sizeof(d0)));
    size_t differ = t->differing(&proc, &sim); /* the digest's own oracle */
    printf("\n  initial build of %s: %zu cart(s) differing from the model", t->name, differ);
    CU_ASSERT_EQUAL(differ, 0);
    size_t c = 0;
    while (c + 1 < sim.ncarts && sim.carts[c].version == 0)
        c++; /* a cart with events: it has a view and a history */
    snprintf(first_cart, sizeof(first_cart), "/v1/carts/%s%s", sim.carts[c].id,
             t->differing == histories_differing ? "/events" : "");
    printf("\n");
    interrupt_and_resume(&proc, t, root, pfx, true, d0, first_cart, &sim);
    kill_after_swap(&proc, t, root, pfx, d0, &sim);
    interrupt_and_resume(&proc, t, root, pfx, false, d0, first_cart, &sim);
    if (t->reopens) {
        kill_at_reopen(&proc, t, root, pfx, d0, &sim);
        fail_at_reopen(&proc, t, root, pfx, d0, first_cart, &sim);
    }
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

static void test_rebuild_kill(void)
{
    static const char *const sets[] = {"projections=cart_view", "batch.max.events=500"};
    static const target_t view = {"cart_view", views_differing, 5000, sets, 2, 0, false};
    rebuild_kill(&view);
}

static void test_history_rebuild_kill(void)
{
    static const char *const sets[] = {"projections=cart_history", "batch.max.events=500",
                                       "store.write.buffer.mb=1"};
    static const target_t history = {"cart_history", histories_differing, 20000, sets, 3, 1, true};
    rebuild_kill(&history);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a rebuild interrupted by kill -9 or SIGTERM resumes and matches", test_rebuild_kill},
        {"a history's rebuild (a vector memtable) interrupted resumes and matches",
         test_history_rebuild_kill},
        {NULL, NULL},
    };
    return es_test_run("fault-rebuild-kill", cases);
}
