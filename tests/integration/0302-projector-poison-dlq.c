/*
 * 0302-projector-poison-dlq.c — poison events go to the DLQ once, with
 * headers naming where they came from, and every good event is applied.
 *
 * Among 3 000 good cart events sit 30 poison records of three kinds (wrong
 * magic byte, a schema id the registry does not know, a body cut short), 10
 * events the fold refuses (removing an item the cart never held) and 10 good
 * events written a second time, byte for byte, right after the first (a
 * replayed dead letter, a mirrored copy), which both projections refuse since
 * their version does not grow: counted twice, item_stats would differ from the
 * model.  The
 * projector is killed with -9 twice while working and restarted: each
 * poison event must still be in the DLQ exactly once per projection, with
 * source-topic/-partition/-offset and error headers after the original's own
 * (its traceparent and correlation-id kept), the escqrs_projector_
 * dlq_total metric must count them, and the stores must answer as the
 * independent model (viewmodel.h) of the good events.  With on_error=halt the projection stops at
 * the first poison event instead: not ready, state "halted", the process alive, the stored offset
 * just before the poison event.
 */
#include "cart.h"
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char prefix[128], agg[200], root[300];
static es_conf_t *conf;
static rt_topic_t cart;
static size_t npoison_by_kind[4];

static void produce_workload(void)
{
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    const char *id;
    es_buf_t framed = {0};
    char err[256];

    es_sim_init(&sim, prefix, 777, 100);
    for (int i = 0; i < 3000; i++) {
        avro_value_t *v = es_sim_next(&sim, g, 0, &id);
        rt_produce(&cart, id, v);
        if (i % 300 == 150) { /* the same event again */
            rt_produce(&cart, id, v);
            cart.recs[cart.n - 1].poison = true;
            npoison_by_kind[3]++;
        }
        if (i % 75 == 0) {
            int kind = (i / 75) % 4;
            char key[160];
            snprintf(key, sizeof(key), "%s-poison-%d", prefix, i);
            if (kind == 0) { /* wrong magic */
                unsigned char b[16] = {0x01, 0, 0, 0, 1, 2, 3, 4, 5};
                rt_produce_raw(&cart, key, b, sizeof(b));
            } else if (kind == 1) { /* unknown schema id */
                unsigned char b[12] = {0x00, 0x7f, 0xff, 0xff, 0x00, 2, 'x', 0};
                rt_produce_raw(&cart, key, b, sizeof(b));
            } else if (kind == 2) { /* truncated body of a real event */
                avro_value_t *v = es_evgen_cart(g, key, 1, 0, "ItemAdded", "sku-01", 1, 100);
                CU_ASSERT_EQUAL(es_serde_encode(cart.serde, v, &framed, err, sizeof(err)), 0);
                rt_produce_raw(&cart, key, framed.data, framed.len / 2);
            } else { /* a good record the fold refuses */
                rt_produce(&cart, key, es_evgen_cart(g, key, 1, 0, "ItemRemoved", "sku-01", 1, 0));
                cart.recs[cart.n - 1].poison = true; /* for the check below */
            }
            npoison_by_kind[kind]++;
        }
    }
    rt_topic_flush(&cart);
    es_buf_free(&framed);
    es_sim_free(&sim);
    es_evgen_destroy(g);
}

static void check_dlq(const char *projector, size_t nproj, size_t npoison)
{
    rt_dlq_rec_t *d = NULL;
    size_t n = rt_dlq_read(conf, agg, projector, &d);
    /* projections reading cart.events: one DLQ record each per poison event */
    CU_ASSERT_EQUAL(n, nproj * npoison);
    size_t found = 0, dup = 0;
    for (size_t i = 0; i < cart.n; i++) {
        if (!cart.recs[i].poison)
            continue;
        int hits[2] = {0, 0};
        for (size_t k = 0; k < n; k++) {
            if (strcmp(d[k].src_topic, cart.name) == 0 &&
                d[k].src_partition == cart.recs[i].partition &&
                d[k].src_offset == cart.recs[i].offset) {
                hits[strcmp(d[k].projection, "cart_view") == 0 ? 0 : 1]++;
                CU_ASSERT_EQUAL(d[k].len, cart.recs[i].len);
                CU_ASSERT_TRUE(d[k].error[0] != '\0');
                /* the original's headers are kept: the request can still be followed */
                ES_ASSERT_STR_EQ(d[k].traceparent, cart.recs[i].traceparent);
                ES_ASSERT_STR_EQ(d[k].correlation_id, cart.recs[i].key);
            }
        }
        found += hits[0] == 1 && hits[1] == (nproj == 2 ? 1 : 0);
        dup += (hits[0] > 1) + (hits[1] > 1);
    }
    CU_ASSERT_EQUAL(found, npoison);
    CU_ASSERT_EQUAL(dup, 0);
    size_t kinds[5] = {0};
    for (size_t k = 0; k < n; k++) {
        kinds[strcmp(d[k].error, "BAD_MAGIC") == 0        ? 0
              : strcmp(d[k].error, "UNKNOWN_SCHEMA") == 0 ? 1
              : strcmp(d[k].error, "TRUNCATED") == 0      ? 2
              : strcmp(d[k].error, "STATE") == 0          ? 3
                                                          : 4]++;
    }
    fprintf(stderr,
            "DLQ: %zu records: magic %zu, schema %zu, truncated %zu, refused %zu, other %zu\n", n,
            kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]);
    CU_ASSERT_EQUAL(kinds[0], nproj * npoison_by_kind[0]);
    CU_ASSERT_EQUAL(kinds[1], nproj * npoison_by_kind[1]);
    CU_ASSERT_EQUAL(kinds[2] + kinds[4],
                    nproj * npoison_by_kind[2]); /* truncation may read as DECODE */
    /* refused by both: removing from a cart never seen, a version that does not grow */
    CU_ASSERT_EQUAL(kinds[3], nproj * npoison_by_kind[3]);
    free(d);
}

static void test_poison_to_dlq_once(void)
{
    rt_proc_t proc = {0};
    const char *sets[] = {"batch.max.events=50", "projections=cart_view,item_stats"};
    size_t applied;

    conf = rt_conf(3);
    es_test_unique("it0302", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    rt_topic_init(&cart, conf, agg, "cart.events");
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    produce_workload();
    size_t npoison = 0;
    for (size_t i = 0; i < cart.n; i++)
        npoison += cart.recs[i].poison;
    CU_ASSERT_EQUAL(npoison, 50);

    char pfx[200];
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    for (int k = 0; k < 2; k++) { /* crash while working, twice */
        rt_proc_start(&proc, root, pfx, sets, 2);
        usleep((useconds_t)(1500 + 700 * k) * 1000);
        rt_proc_kill9(&proc);
    }
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 120000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "item_stats", 120000));
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/readyz", NULL), 200);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    check_dlq("projector", 2, npoison);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_cart_view, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_item_stats, &cart, &applied), 0);
    CU_ASSERT_EQUAL(applied, cart.n);

    /* a restart and a full rebuild send nothing again; the metric counts this run's */
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    json_t *b = NULL;
    CU_ASSERT_EQUAL(rt_http(&proc, "POST", "/admin/projections/cart_view/rebuild", &b), 202);
    json_decref(b);
    usleep(500 * 1000);
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 120000));
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    check_dlq("projector", 2, npoison);
    CU_ASSERT_EQUAL(rt_compare_store(root, &es_proj_cart_view, &cart, &applied), 0);
}

static void test_dlq_metric(void)
{
    /* another projector (its own DLQ) on a fresh store: sends every poison
     * event once and counts them in escqrs_projector_dlq_total */
    rt_proc_t proc = {0};
    char r2[400], pfx[200];
    snprintf(r2, sizeof(r2), "%s-metric", root);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    const char *sets[] = {"projections=cart_view", "projector.name=metric"};
    rt_proc_start(&proc, r2, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(rt_wait_caught_up(&proc, "cart_view", 120000));
    CU_ASSERT_EQUAL(rt_metric(&proc, "escqrs_projector_dlq_total{projection=\"cart_view\"}"), 50);
    CU_ASSERT_EQUAL(
        rt_metric(&proc, "escqrs_projector_events_applied_total{projection=\"cart_view\"}"),
        (double)(cart.n - 50));
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    check_dlq("metric", 1, 50);
}

static void test_halt_mode(void)
{
    rt_proc_t proc = {0};
    char r3[400], pfx[200];
    snprintf(r3, sizeof(r3), "%s-halt", root);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    const char *sets[] = {"projections=cart_view", "on_error=halt", "projector.name=halter"};
    rt_proc_start(&proc, r3, pfx, sets, 3);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    json_t *b = NULL;
    const char *state = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(b);
        b = NULL;
        rt_http(&proc, "GET", "/admin/projections", &b);
        state = json_string_value(
            json_object_get(json_array_get(json_object_get(b, "projections"), 0), "state"));
        if (state && strcmp(state, "halted") == 0)
            break;
        usleep(200 * 1000);
    }
    ES_ASSERT_STR_EQ(state ? state : "", "halted");
    json_decref(b);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/readyz", NULL), 503);
    usleep(1000 * 1000);
    CU_ASSERT_TRUE(rt_proc_alive(&proc)); /* never a crash loop */
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    /* the store stops just before the first poison event of some partition */
    size_t applied;
    CU_ASSERT_EQUAL(rt_compare_store(r3, &es_proj_cart_view, &cart, &applied), 0);
    CU_ASSERT_TRUE(applied < cart.n);
    /* the halting projector sent nothing to its DLQ */
    rt_dlq_rec_t *d = NULL;
    CU_ASSERT_EQUAL(rt_dlq_read(conf, agg, "halter", &d), 0);
    free(d);
    rt_topic_free(&cart);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"poison events reach the DLQ once, good events all apply", test_poison_to_dlq_once},
        {"the DLQ metric counts poison events", test_dlq_metric},
        {"on_error=halt stops the projection, not the process", test_halt_mode},
        {NULL, NULL},
    };
    return es_test_run("0302-projector-poison-dlq", cases);
}
