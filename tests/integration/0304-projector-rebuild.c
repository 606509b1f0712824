/*
 * 0304-projector-rebuild.c — blue/green rebuilds.
 *
 * 1. Equivalence: with no new events, the store a full rebuild produces is
 *    byte-identical (every key, offsets included) to the live store it
 *    replaces.  The first one is asked for by 8 requests at once: one
 *    starts it, seven are refused 409.
 * 2. No downtime: while events keep arriving, rebuild all three projections;
 *    a client thread queries without pause and must never see a 5xx or a
 *    refused connection through the rebuild and the swap; afterwards every
 *    store answers as the independent model (viewmodel.h, not the folds) of
 *    the events below its own offsets, and the generation moved on.  Progress shows in
 * /admin/projections and /metrics.
 */
#include "account.h"
#include "cart.h"
#include "readtest.h"
#include "testutil.h"

#include "escqrs/store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* the modules' views (not the runtime's history and audit: this test has no results topic) */
static const char *const module_views[] = {"projections=cart_view,item_stats,account_balance"};

static char prefix[128], pfx[200], root[300];
static es_conf_t *conf;
static rt_topic_t cart, accounts;
static es_sim_t sim;
static es_evgen_t *cg, *ag;

static void produce_carts(int n)
{
    rt_produce_sim(&cart, &sim, cg, n);
}

#define RACERS 8 /* rebuild requests sent at once */

typedef struct {
    int fd; /* connected before the barrier: only the send races */
    const char *path;
    pthread_barrier_t *go;
    int status;
} racer_t;

static void *race_rebuild(void *arg)
{
    racer_t *rc = arg;
    char req[512], ans[512];
    int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                     rc->path);
    pthread_barrier_wait(rc->go);
    rc->status = -1;
    if (send(rc->fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        ssize_t r = recv(rc->fd, ans, sizeof(ans) - 1, 0);
        ans[r > 0 ? r : 0] = '\0';
        if (r > 12 && !strncmp(ans, "HTTP/1.1 ", 9))
            rc->status = (int)strtol(ans + 9, NULL, 10);
    }
    close(rc->fd);
    return NULL;
}

/* RACERS requests for one rebuild at the same moment: exactly one starts it,
 * the others are told 409 (two of them used to pass the check together: the
 * second, refused by the new store's lock, answered 500 and deleted the
 * REBUILD marker of the rebuild that ran). */
static void race_rebuilds(const rt_proc_t *proc, const char *path)
{
    pthread_t th[RACERS];
    racer_t rc[RACERS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)proc->admin_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < RACERS; i++) {
        rc[i] = (racer_t){.fd = socket(AF_INET, SOCK_STREAM, 0), .path = path, .go = &go};
        CU_ASSERT_EQUAL_FATAL(connect(rc[i].fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_create(&th[i], NULL, race_rebuild, &rc[i]);
    int started = 0, refused = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        started += rc[i].status == 202;
        refused += rc[i].status == 409;
        if (rc[i].status != 202 && rc[i].status != 409)
            fprintf(stderr, "a rebuild request at the same moment answered %d\n", rc[i].status);
    }
    pthread_barrier_destroy(&go);
    fprintf(stderr, "%d rebuild requests at once: %d started, %d refused 409\n", RACERS, started,
            refused);
    CU_ASSERT_EQUAL(started, 1);
    CU_ASSERT_EQUAL(refused, RACERS - 1);
}

static int generation(const rt_proc_t *p, const char *name, bool *running)
{
    json_t *b = NULL;
    int g = -1;
    rt_http(p, "GET", "/admin/projections", &b);
    json_t *arr = json_object_get(b, "projections");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        if (es_test_str_eq(json_string_value(json_object_get(o, "name")), name)) {
            g = (int)json_integer_value(json_object_get(o, "generation"));
            if (running)
                *running = json_is_true(json_object_get(json_object_get(o, "rebuild"), "running"));
        }
    }
    json_decref(b);
    return g;
}

static bool wait_generation(const rt_proc_t *p, const char *name, int g, int timeout_ms)
{
    for (int w = 0; w < timeout_ms; w += 200) {
        bool running = true;
        if (generation(p, name, &running) >= g && !running)
            return true;
        usleep(200 * 1000);
    }
    return false;
}

/* Every key and value of the store at root/name (closed). */
static es_proj_memmap_t *dump_store(const char *dir, const char *name)
{
    char path[700], cur[32] = {0}, err[256];
    snprintf(path, sizeof(path), "%s/%s/CURRENT", dir, name);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL(fgets(cur, sizeof(cur), f));
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s/g%ld", dir, name, strtol(cur, NULL, 10));
    es_store_opts_t so = {.block_cache_mb = 8, .write_buffer_mb = 4};
    es_store_t *st = es_store_open(path, &so, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_proj_memmap_t *m = es_proj_memmap_new();
    es_store_iter_t *it = es_store_iter_prefix(st, "", 0);
    const char *k, *v;
    size_t kl, vl;
    while (es_store_iter_next(it, &k, &kl, &v, &vl))
        es_proj_memmap_put(m, k, kl, v, vl);
    es_store_iter_destroy(it);
    es_store_close(st);
    return m;
}

typedef struct {
    es_proj_memmap_t *other;
    size_t diffs;
} eq_t;

static bool eq_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    eq_t *e = opaque;
    es_buf_t b = {0};
    char err[64];
    es_proj_backend_t be = es_proj_memmap_backend(e->other);
    if (be.get(be.opaque, key, keylen, &b, err, sizeof(err)) != ES_ERR_OK || b.len != vallen ||
        memcmp(b.data, val, vallen) != 0)
        e->diffs++;
    es_buf_free(&b);
    return true;
}

static size_t store_diff(es_proj_memmap_t *a, es_proj_memmap_t *b)
{
    eq_t e = {.other = b};
    char err[64];
    es_proj_backend_t be = es_proj_memmap_backend(a);
    be.scan(be.opaque, "", 0, NULL, 0, eq_cb, &e, err, sizeof(err));
    return e.diffs + (es_proj_memmap_count(a) != es_proj_memmap_count(b));
}

static void test_rebuild_is_byte_identical(void)
{
    rt_proc_t proc = {0};
    const char *names[3] = {"cart_view", "item_stats", "account_balance"};
    char agg[200];

    conf = rt_conf(4);
    cg = es_evgen_new("cart.events");
    ag = es_evgen_new("account.events");
    es_test_unique("it0304", prefix, sizeof(prefix));
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    snprintf(agg, sizeof(agg), "%s.account", prefix);
    rt_topic_init(&accounts, conf, agg, "account.events");
    es_sim_init(&sim, prefix, 4242, 150);
    produce_carts(20000);
    int64_t balance[30] = {0};
    for (int i = 0; i < 300; i++) { /* 30 accounts: opened, then deposits and withdrawals */
        char id[200];
        int a = i % 30, round = i / 30;
        bool withdraw = round % 3 == 0 && balance[a] >= i / 2;
        snprintf(id, sizeof(id), "%s-acc-%d", prefix, a);
        rt_produce(&accounts, id,
                   round == 0 ? es_evgen_account(ag, id, 1, 0, "AccountOpened", "o", 0)
                   : withdraw ? es_evgen_account(ag, id, round + 1, 0, "Withdrawn", NULL, i / 2)
                              : es_evgen_account(ag, id, round + 1, 0, "Deposited", NULL, i));
        balance[a] += round == 0 ? 0 : withdraw ? -(i / 2) : i;
    }
    rt_topic_flush(&accounts);

    rt_proc_start(&proc, root, pfx, module_views, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    for (int i = 0; i < 3; i++)
        CU_ASSERT_TRUE(rt_wait_caught_up(&proc, names[i], 120000));
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    es_proj_memmap_t *before[3];
    for (int i = 0; i < 3; i++)
        before[i] = dump_store(root, names[i]);

    rt_proc_start(&proc, root, pfx, module_views, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    for (int i = 0; i < 3; i++) {
        char path[200];
        int g0 = generation(&proc, names[i], NULL);
        snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", names[i]);
        if (i == 0)
            race_rebuilds(&proc, path);
        else
            CU_ASSERT_EQUAL(rt_http(&proc, "POST", path, NULL), 202);
        CU_ASSERT_TRUE(wait_generation(&proc, names[i], g0 + 1, 120000));
    }
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", "/admin/projections/nope/rebuild", NULL), 404);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    for (int i = 0; i < 3; i++) {
        es_proj_memmap_t *after = dump_store(root, names[i]);
        size_t d = store_diff(before[i], after);
        fprintf(stderr, "%s: %zu keys before, %zu after the rebuild, %zu differences\n", names[i],
                es_proj_memmap_count(before[i]), es_proj_memmap_count(after), d);
        CU_ASSERT_EQUAL(d, 0);
        CU_ASSERT_TRUE(es_proj_memmap_count(after) > 0);
        es_proj_memmap_destroy(after);
        es_proj_memmap_destroy(before[i]);
    }
}

typedef struct {
    rt_proc_t *proc;
    atomic_bool stop;
    atomic_long ok, bad;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    char path[300];
    long i = 0;
    while (!atomic_load(&h->stop)) {
        const char *paths[3];
        snprintf(path, sizeof(path), "/v1/carts/%s", sim.carts[i % sim.ncarts].id);
        paths[0] = path;
        paths[1] = "/v1/stats/items?top=5";
        char apath[300];
        snprintf(apath, sizeof(apath), "/v1/accounts/%s-acc-%ld", prefix, i % 30);
        paths[2] = apath;
        int st = rt_http(h->proc, "GET", paths[i % 3], NULL);
        if (st == 200 || st == 404)
            atomic_fetch_add(&h->ok, 1);
        else {
            atomic_fetch_add(&h->bad, 1);
            fprintf(stderr, "query %s answered %d during the rebuild\n", paths[i % 3], st);
        }
        i++;
    }
    return NULL;
}

static void test_rebuild_without_downtime(void)
{
    rt_proc_t proc = {0};
    const char *names[3] = {"cart_view", "item_stats", "account_balance"};
    int g0[3];
    hammer_t h = {.proc = &proc};
    pthread_t th;

    rt_proc_start(&proc, root, pfx, module_views, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 60000));
    pthread_create(&th, NULL, hammer, &h);
    json_int_t carts_at_start = (json_int_t)cart.n; /* flushed: in the log before the POSTs */
    for (int i = 0; i < 3; i++) {
        char path[200];
        g0[i] = generation(&proc, names[i], NULL);
        snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", names[i]);
        CU_ASSERT_EQUAL(rt_http(&proc, "POST", path, NULL), 202);
    }
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", "/admin/projections/cart_view/rebuild", NULL), 409);
    /* events keep arriving while the shadows fill */
    bool saw_progress = false;
    for (int k = 0; k < 10; k++) {
        produce_carts(1000);
        json_t *b = NULL;
        rt_http(&proc, "GET", "/admin/projections", &b);
        json_t *rb =
            json_object_get(json_array_get(json_object_get(b, "projections"), 0), "rebuild");
        saw_progress |= json_integer_value(json_object_get(rb, "events")) > 0 ||
                        json_integer_value(json_object_get(rb, "last_events")) > 0;
        json_decref(b);
    }
    for (int i = 0; i < 3; i++)
        CU_ASSERT_TRUE(wait_generation(&proc, names[i], g0[i] + 1, 180000));
    for (int i = 0; i < 3; i++) /* not rt_wait_caught_up: right after a swap the new live
                                 * loop's high watermark may be its last fetch's, events still
                                 * to come (a release build stopped cart_view short: 6 December) */
        CU_ASSERT_TRUE(rt_wait_projection_at_end(&proc, names[i], i < 2 ? &cart : &accounts, 120));
    /* The finished rebuilds report what they did: a shadow folds every event
     * that was in the log when its rebuild began, and at most every event
     * produced since (those after its swap go to it as the live store).  Until
     * 4 December this was "all but 5 000", which a release build whose rebuild
     * swapped early in the 10 batches above failed. */
    json_t *b = NULL;
    rt_http(&proc, "GET", "/admin/projections", &b);
    for (size_t i = 0; i < 3; i++) {
        json_t *rb =
            json_object_get(json_array_get(json_object_get(b, "projections"), i), "rebuild");
        json_int_t least = i < 2 ? carts_at_start : (json_int_t)accounts.n;
        json_int_t most = i < 2 ? (json_int_t)cart.n : (json_int_t)accounts.n;
        json_int_t folded = json_integer_value(json_object_get(rb, "last_events"));
        if (folded < least || folded > most)
            fprintf(stderr, "rebuild %zu folded %lld events, not within %lld..%lld\n", i,
                    (long long)folded, (long long)least, (long long)most);
        CU_ASSERT_TRUE(folded >= least && folded <= most);
        CU_ASSERT_TRUE(json_integer_value(json_object_get(rb, "last_duration_ms")) > 0);
    }
    json_decref(b);
    fprintf(stderr, "rebuild progress seen while running: %s\n", saw_progress ? "yes" : "no");
    CU_ASSERT_TRUE(rt_metric(&proc, "escqrs_projector_rebuild_running{projection=\"cart_view\"}") ==
                   0);
    atomic_store(&h.stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "queries during rebuilds: %ld answered, %ld failed\n", (long)h.ok, (long)h.bad);
    CU_ASSERT_EQUAL(h.bad, 0);
    CU_ASSERT_TRUE(h.ok > 50);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    size_t applied;
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_cart_view, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_item_stats, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_account_balance, &accounts, &applied), 0);
    CU_ASSERT_EQUAL(applied, accounts.n);
    /* the old generations are gone */
    for (int i = 0; i < 3; i++) {
        char path[600];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s/g%d", root, names[i], g0[i]);
        CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);
    }
    rt_topic_free(&cart);
    rt_topic_free(&accounts);
    es_sim_free(&sim);
    es_evgen_destroy(cg);
    es_evgen_destroy(ag);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a rebuild is byte-identical to the live store", test_rebuild_is_byte_identical},
        {"rebuild and swap while serving and consuming", test_rebuild_without_downtime},
        {NULL, NULL},
    };
    return es_test_run("0304-projector-rebuild", cases);
}
