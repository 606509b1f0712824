/*
 * 0311-projector-partitioned.c — two instances in partitioned mode share the
 * partitions, survive losing one in the middle of a load, and answer every
 * query from either instance (issue 16; docs/projector.md, "Partitioned
 * mode").
 *
 *  1. 4 partitions of cart events; instances A and B (cart_view, item_stats)
 *     start in partitioned mode and split them through the group.
 *  2. While more events are produced, A is killed with -9 as soon as it has
 *     applied part of its partitions.  B is given every partition after the
 *     session timeout and replays A's partitions from offset 0 (its store has
 *     no slice of them).
 *  3. B alone answers every cart and the item statistics as the workload's
 *     own model says (eventgen.h: counted as the events are made, never by a
 *     projection's fold).
 *  4. A restarts on its old store: the group splits the partitions again
 *     and, A and B being static members (group.instance.id), A is given
 *     its old partitions back and resumes them from its own slices' offsets
 *     (a replay from 0 onto a slice would count item statistics twice).  Then every cart is asked
 * of both instances (half of the answers are forwarded to the owner) and the item statistics merged
 * across the two instances equal the model; the owned sets are disjoint and cover every partition;
 * both forwarded queries.
 *  5. Hostile and edge cases: a forwarded request that lands on a non-owner
 *     again answers 503 moving (one hop); the owner found by murmur2 of the
 *     id owns the partition the producer wrote to; min_position through the
 *     non-owner is waited on by the owner (and its 504 comes back); a rebuild,
 *     a frozen view and a checkpoint are refused with 409; as_of of one cart through the non-owner
 * equals the live answer; a cart's history (cart_history) is one aggregate's query, answered by the
 * owner alone, every version the model made from either.
 */
#include "cart.h"
#include "readtest.h"
#include "testutil.h"
#include "escqrs/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PARTITIONS 4
#define FIRST      6000  /* events before the instances start */
#define LOAD       24000 /* events produced while A is killed */
#define CHUNK      500

/* Static members (group.instance.id): a returning instance is given its old partitions back. */
static void start(rt_proc_t *p, const char *store, const char *prefix, const char *member)
{
    char url[128], admin[128], inst[200];
    snprintf(inst, sizeof(inst), "kafka.group.instance.id=%s-%s", prefix, member);
    snprintf(url, sizeof(url), "projector.advertise.url=http://127.0.0.1:%d", p->port);
    snprintf(admin, sizeof(admin), "projector.advertise.admin_url=http://127.0.0.1:%d",
             p->admin_port);
    const char *sets[] = {"projector.mode=partitioned",
                          url,
                          admin,
                          "projections=cart_view,item_stats,cart_history",
                          "kafka.session.timeout.ms=6000",
                          "kafka.heartbeat.interval.ms=500",
                          inst,
                          "batch.max.events=50",
                          "query.wait.max.ms=1000",
                          "log.level=info"};
    rt_proc_start(p, store, prefix, sets, sizeof(sets) / sizeof(sets[0]));
}

/* Partitions @p p owns of projection @p name: bit i for partition i, current ones in @p cur. */
static unsigned owned(const rt_proc_t *p, const char *name, unsigned *cur, int64_t *applied)
{
    unsigned bits = 0;
    json_t *o = rt_projection(p, name);
    *cur = 0;
    if (applied)
        *applied = 0;
    json_t *own = json_object_get(o, "owned");
    for (size_t k = 0; k < json_array_size(own); k++) {
        json_t *e = json_array_get(own, k);
        int part = (int)json_integer_value(json_object_get(e, "partition"));
        bits |= 1u << part;
        if (json_is_true(json_object_get(e, "current")))
            *cur |= 1u << part;
    }
    json_t *parts = json_object_get(o, "partitions");
    for (size_t k = 0; applied && k < json_array_size(parts); k++) {
        json_t *pp = json_array_get(parts, k);
        int part = (int)json_integer_value(json_object_get(pp, "partition"));
        if (bits & (1u << part))
            *applied += json_integer_value(json_object_get(pp, "applied"));
    }
    json_decref(o);
    return bits;
}

/*
 * Until the instances in @p ps own every partition of the three projections
 * between them, each exactly once, each instance some, all current and
 * caught up to @p total events.
 */
static bool wait_settled(rt_proc_t *const *ps, size_t n, size_t total, int timeout_ms)
{
    static const char *names[] = {"cart_view", "item_stats", "cart_history"};
    for (int waited = 0; waited < timeout_ms; waited += 250) {
        bool ok = true;
        for (int j = 0; j < 3 && ok; j++) {
            unsigned all = 0, cur = 0;
            int64_t applied = 0;
            for (size_t i = 0; i < n && ok; i++) {
                unsigned c;
                int64_t a;
                unsigned o = owned(ps[i], names[j], &c, &a);
                ok = (all & o) == 0 && (o || n == 1); /* every instance in the group has some */
                all |= o;
                cur |= c;
                applied += a;
            }
            ok = ok && all == (1u << PARTITIONS) - 1 && cur == all && applied == (int64_t)total;
        }
        if (ok)
            return true;
        usleep(250 * 1000);
    }
    return false;
}

/* Every cart asked of @p p answers as the model; the number that did not. */
static int wrong_carts(const rt_proc_t *p, es_sim_t *sim)
{
    int wrong = 0;
    for (size_t i = 0; i < sim->ncarts; i++) {
        char path[300];
        json_t *body = NULL;
        snprintf(path, sizeof(path), "/v1/carts/%s", sim->carts[i].id);
        int st = rt_http(p, "GET", path, &body);
        if (sim->carts[i].version == 0) {
            wrong += st != 404;
        } else {
            char *js = es_sim_cart_json(sim, i);
            json_t *want = json_loads(js, 0, NULL);
            if (st != 200 || !json_equal(body, want)) {
                if (wrong < 3) {
                    char *got = body ? json_dumps(body, JSON_COMPACT) : NULL;
                    fprintf(stderr, "cart %s: %d %s, want %s\n", sim->carts[i].id, st,
                            got ? got : "", js);
                    free(got);
                }
                wrong++;
            }
            json_decref(want);
            free(js);
        }
        json_decref(body);
    }
    return wrong;
}

/* The item statistics asked of @p p equal the model; the number of skus that do not. */
static int wrong_stats(const rt_proc_t *p, const es_sim_t *sim)
{
    json_t *stats = NULL;
    int wrong = 0;
    int st = rt_http(p, "GET", "/v1/stats/items?top=1000", &stats);
    json_t *items = json_object_get(stats, "items");
    if (st != 200 || json_array_size(items) != ES_SIM_SKUS) {
        char *got = stats ? json_dumps(stats, JSON_COMPACT) : NULL;
        fprintf(stderr, "item stats: %d %.300s\n", st, got ? got : "");
        free(got);
        json_decref(stats);
        return ES_SIM_SKUS;
    }
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        int k = (int)strtol(json_string_value(json_object_get(it, "sku")) + 4, NULL, 10);
        wrong += json_integer_value(json_object_get(it, "added")) != sim->stats[k][0] ||
                 json_integer_value(json_object_get(it, "removed")) != sim->stats[k][1] ||
                 json_integer_value(json_object_get(it, "checked_out")) != sim->stats[k][2];
    }
    json_decref(stats);
    return wrong;
}

typedef struct {
    rt_topic_t *tp;
    es_sim_t *sim;
    es_evgen_t *g;
} load_t;

static void *load(void *arg)
{
    load_t *ld = arg;
    for (int i = 0; i < LOAD; i += CHUNK) {
        rt_produce_sim(ld->tp, ld->sim, ld->g, CHUNK);
        rt_topic_flush(ld->tp);
        usleep(100 * 1000);
    }
    return NULL;
}

/* @p path asked of @p p with the hop header set (as a forwarded request): its status. */
static int hop_code(const rt_proc_t *p, const char *path)
{
    char cmd[1200], code[16] = "";
    snprintf(cmd, sizeof(cmd),
             "curl -s -o /dev/null -w '%%{http_code}' -H 'X-Escqrs-Forwarded: 1' "
             "http://127.0.0.1:%d%s",
             p->port, path);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    if (!fgets(code, sizeof(code), f))
        code[0] = '\0';
    pclose(f);
    return (int)strtol(code, NULL, 10);
}

/*
 * How many events cart @p id's history holds, asked of @p p once it has
 * applied @p last, if they are versions 1, 2, ... in order; -1 otherwise.
 */
static long long history_versions(const rt_proc_t *p, const char *id, const rt_rec_t *last)
{
    char path[400];
    json_t *body = NULL;
    snprintf(path, sizeof(path), "/v1/carts/%s/events?limit=1000&min_position=%d:%lld", id,
             (int)last->partition, (long long)last->offset);
    long long n = -1;
    if (rt_http(p, "GET", path, &body) == 200 &&
        json_is_null(json_object_get(body, "next_from_version"))) {
        json_t *events = json_object_get(body, "events");
        n = (long long)json_array_size(events);
        for (size_t i = 0; i < json_array_size(events); i++) {
            json_t *v = json_object_get(json_array_get(events, i), "version");
            if (json_integer_value(v) != (json_int_t)i + 1)
                n = -1;
        }
    }
    json_decref(body);
    return n;
}

static void test_partitioned(void)
{
    char prefix[128], agg[160], root_a[300], root_b[300];
    es_conf_t *conf = rt_conf(PARTITIONS);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    uint64_t rng = (uint64_t)getpid() * 2654435761u + 7;
    rt_proc_t a = {.keep_ports = true}, b = {.keep_ports = true};

    es_test_unique("it0311", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    snprintf(root_a, sizeof(root_a), "/tmp/%s-a", prefix);
    snprintf(root_b, sizeof(root_b), "/tmp/%s-b", prefix);
    mkdir(root_a, 0755);
    mkdir(root_b, 0755);
    snprintf(agg, sizeof(agg), "%s.", prefix);
    es_sim_init(&sim, prefix, rng, 300);
    rt_produce_sim(&cart, &sim, g, FIRST);
    rt_topic_flush(&cart);

    /* 1. two instances split the partitions */
    a.port = es_test_free_port();
    a.admin_port = es_test_free_port();
    b.port = es_test_free_port();
    b.admin_port = es_test_free_port();
    start(&a, root_a, agg, "a");
    start(&b, root_b, agg, "b");
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&a, 30000) && rt_wait_up(&b, 30000));
    rt_proc_t *both[] = {&a, &b};
    CU_ASSERT_TRUE(wait_settled(both, 2, cart.n, 90000));
    unsigned ca, cb;
    unsigned oa = owned(&a, "cart_view", &ca, NULL), ob = owned(&b, "cart_view", &cb, NULL);
    fprintf(stderr, "before the kill: A owns %#x, B owns %#x of cart_view\n", oa, ob);
    CU_ASSERT_TRUE(oa != 0 && ob != 0); /* the group split them */

    /* 2. a load, and A killed with part of it applied */
    load_t ld = {.tp = &cart, .sim = &sim, .g = g};
    pthread_t th;
    pthread_create(&th, NULL, load, &ld);
    int64_t start_applied = 0, now_applied = 0;
    owned(&a, "cart_view", &ca, &start_applied);
    for (int i = 0; i < 600; i++) {
        owned(&a, "cart_view", &ca, &now_applied);
        if (now_applied > start_applied)
            break;
        usleep(50 * 1000);
    }
    CU_ASSERT_TRUE(now_applied > start_applied); /* A was folding the load when it died */
    rt_proc_kill9(&a);
    pthread_join(th, NULL);
    fprintf(stderr, "A killed after applying %lld events of its partitions\n",
            (long long)now_applied);

    /* 3. B takes every partition and answers all */
    rt_proc_t *only_b[] = {&b};
    CU_ASSERT_TRUE_FATAL(wait_settled(only_b, 1, cart.n, 120000));
    CU_ASSERT_EQUAL(wrong_carts(&b, &sim), 0);
    CU_ASSERT_EQUAL(wrong_stats(&b, &sim), 0);

    /* 4. A back on its old store: split again, answers from both */
    rt_produce_sim(&cart, &sim, g, 2000);
    rt_topic_flush(&cart);
    start(&a, root_a, agg, "a");
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&a, 30000));
    CU_ASSERT_TRUE_FATAL(wait_settled(both, 2, cart.n, 120000));
    unsigned oa_before = oa;
    oa = owned(&a, "cart_view", &ca, NULL);
    ob = owned(&b, "cart_view", &cb, NULL);
    fprintf(stderr, "after the restart: A owns %#x, B owns %#x of cart_view\n", oa, ob);
    CU_ASSERT_TRUE(oa != 0 && ob != 0);
    /* A resumed partitions from its own slices (stale while B folded them meanwhile) */
    CU_ASSERT_TRUE((oa & oa_before) != 0);
    CU_ASSERT_EQUAL(wrong_carts(&a, &sim), 0);
    CU_ASSERT_EQUAL(wrong_carts(&b, &sim), 0);
    CU_ASSERT_EQUAL(wrong_stats(&a, &sim), 0);
    CU_ASSERT_EQUAL(wrong_stats(&b, &sim), 0);
    CU_ASSERT_TRUE(rt_metric(&a, "escqrs_projector_forwarded_total") > 0);
    CU_ASSERT_TRUE(rt_metric(&b, "escqrs_projector_forwarded_total") > 0);
    CU_ASSERT_EQUAL(rt_http(&a, "GET", "/readyz", NULL), 200);
    CU_ASSERT_EQUAL(rt_http(&b, "GET", "/readyz", NULL), 200);

    /* 5. one hop only; no rebuild; as_of through the non-owner */
    size_t c0 = 0;
    while (c0 < sim.ncarts && sim.carts[c0].version == 0)
        c0++;
    CU_ASSERT_TRUE_FATAL(c0 < sim.ncarts);
    /* with the hop header set, only the owner answers; the other says 503 moving */
    char path[400];
    int codes[2];
    snprintf(path, sizeof(path), "/v1/carts/%s", sim.carts[c0].id);
    for (int i = 0; i < 2; i++)
        codes[i] = hop_code(both[i], path);
    CU_ASSERT_TRUE((codes[0] == 200 && codes[1] == 503) || (codes[0] == 503 && codes[1] == 200));
    rt_proc_t *other = codes[0] == 503 ? &a : &b, *owner = other == &a ? &b : &a;
    /* the owner by murmur2 of the id is the owner of the partition the producer chose */
    const rt_rec_t *last = NULL;
    for (size_t i = 0; i < cart.n; i++) {
        if (!strcmp(cart.recs[i].key, sim.carts[c0].id))
            last = &cart.recs[i];
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(last);
    CU_ASSERT_TRUE((owned(owner, "cart_view", &ca, NULL) >> last->partition) & 1u);
    /* min_position through the non-owner: waited on by the owner */
    char mp[400];
    json_t *mpb = NULL;
    snprintf(mp, sizeof(mp), "/v1/carts/%s?min_position=%d:%lld", sim.carts[c0].id,
             (int)last->partition, (long long)last->offset);
    CU_ASSERT_EQUAL(rt_http(other, "GET", mp, &mpb), 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(mpb, "version")), sim.carts[c0].version);
    json_decref(mpb);
    snprintf(mp, sizeof(mp), "/v1/carts/%s?min_position=%d:%lld", sim.carts[c0].id,
             (int)last->partition, (long long)last->offset + 1000000);
    CU_ASSERT_EQUAL(rt_http(other, "GET", mp, NULL), 504); /* the owner's timeout, forwarded */
    /* nor a rebuild, a frozen view or a checkpoint: each instance holds only its slices */
    static const char *const whole_store[][2] = {
        {"POST", "/admin/projections/cart_view/rebuild"},
        {"POST", "/admin/projections/cart_view/freeze?until=1"},
        {"GET", "/admin/projections/cart_view/checkpoint"},
    };
    for (size_t i = 0; i < sizeof(whole_store) / sizeof(whole_store[0]); i++) {
        json_t *b = NULL;
        CU_ASSERT_EQUAL(rt_http(&a, whole_store[i][0], whole_store[i][1], &b), 409);
        const char *m = json_string_value(json_object_get(b, "message"));
        CU_ASSERT_TRUE(m && strstr(m, "not available in partitioned mode"));
        json_decref(b);
    }
    /* the peers' slice route: a well-formed ask answers, anything else is a bad request */
    CU_ASSERT_EQUAL(
        rt_http(&a, "GET", "/admin/projections/cart_view/slice?parts=0.0&prefix=", NULL), 200);
    static const char *const bad_parts[] = {
        "0.0,",   ",0.0", "0.0,,0.1", "0.-1", "-0.0",         "0.%2B1",
        "0.%201", "1.0",  "0.4",      "0.1x", "4294967296.0", "0.99999999999999999999",
        ""};
    for (size_t i = 0; i < sizeof(bad_parts) / sizeof(bad_parts[0]); i++) {
        snprintf(mp, sizeof(mp),
                 "/admin/projections/cart_view/slice?parts=%s&prefix=", bad_parts[i]);
        int st = rt_http(&a, "GET", mp, NULL);
        if (st != 400)
            fprintf(stderr, "slice parts=%s answered %d\n", bad_parts[i], st);
        CU_ASSERT_EQUAL(st, 400);
    }
    /* the cart's history is one aggregate's: its owner answers, not a merge of every slice */
    snprintf(path, sizeof(path), "/v1/carts/%s/events", sim.carts[c0].id);
    for (int i = 0; i < 2; i++)
        codes[i] = hop_code(both[i], path);
    fprintf(stderr, "the history with the hop header: A %d, B %d\n", codes[0], codes[1]);
    CU_ASSERT_TRUE((codes[0] == 200 && codes[1] == 503) || (codes[0] == 503 && codes[1] == 200));
    for (int i = 0; i < 2; i++) /* from either instance, every version the model made */
        CU_ASSERT_EQUAL(history_versions(both[i], sim.carts[c0].id, last), sim.carts[c0].version);
    json_t *live = NULL, *asof = NULL;
    snprintf(path, sizeof(path), "/v1/carts/%s", sim.carts[c0].id);
    CU_ASSERT_EQUAL(rt_http(other, "GET", path, &live), 200);
    snprintf(path, sizeof(path), "/v1/carts/%s?as_of=%lld", sim.carts[c0].id,
             (long long)es_now_ms() + 1000);
    CU_ASSERT_EQUAL(rt_http(other, "GET", path, &asof), 200);
    CU_ASSERT_TRUE(json_equal(live, asof));
    json_decref(live);
    json_decref(asof);

    CU_ASSERT_EQUAL(rt_proc_stop(&a), 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&b), 0);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"two partitioned instances, one killed mid-load, answer every query", test_partitioned},
        {NULL, NULL},
    };
    return es_test_run("0311-projector-partitioned", cases);
}
