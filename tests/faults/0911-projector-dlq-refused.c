/*
 * 0911-projector-dlq-refused.c — a dead-letter topic that refuses its
 * records: the projection waits at the poison event, skips nothing, says
 * why, and goes on by itself once the DLQ takes the record, which is then
 * there exactly once.
 *
 * 300 good cart events are folded; then the DLQ topic's max.message.bytes is
 * lowered (AlterConfigs) to 64 bytes, below any DLQ record, and a poison
 * record (wrong magic byte) arrives followed by 300 more good events.  For
 * 10 s the projection must say "DLQ" on /readyz (503), stay alive and serve
 * reads, and apply nothing past the poison event (its applied offset stays
 * at it: no event is skipped and none after it is applied ahead of it).  The
 * limit is restored: without a restart the projection must apply everything,
 * be ready again, hold the poison event in its DLQ exactly once (source
 * offset and error), and answer every cart as the workload model does
 * (tests/eventgen.c, not the projection's fold).  Before 4 December a DLQ
 * that failed halted the projection until a restart.  Prints how long the
 * recovery took.
 */
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REFUSED_S       10
#define KAFKA_DEFAULT_B "1048588" /* the broker's default max.message.bytes */

/* The applied offset of partition 0 of the first projection, -1 if unknown. */
static int64_t applied_offset(rt_proc_t *p)
{
    json_t *b = NULL;
    int64_t v = -1;
    if (rt_http(p, "GET", "/admin/projections", &b) == 200) {
        json_t *parts =
            json_object_get(json_array_get(json_object_get(b, "projections"), 0), "partitions");
        json_t *p0 = json_array_get(parts, 0);
        if (p0)
            v = json_integer_value(json_object_get(p0, "applied"));
    }
    json_decref(b);
    return v;
}

static void test_dlq_refused(void)
{
    char prefix[128], agg[200], root[300], pfx[200], dlq[300], reason[1024], path[400];
    es_conf_t *conf = rt_conf(1);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view", "batch.max.events=50"};

    es_test_unique("ft0911", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    snprintf(dlq, sizeof(dlq), "%s.events.dlq.projector", agg);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, 911, 50);
    rt_produce_sim(&cart, &sim, g, 300);
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_applied_to_end(&proc, &cart, 60)); /* its DLQ topic exists */
    snprintf(path, sizeof(path), "/v1/carts/%s", sim.carts[0].id);

    /* the DLQ refuses every record; a poison event and more good ones arrive */
    CU_ASSERT_TRUE_FATAL(es_test_topic_config(dlq, "max.message.bytes", "64"));
    static const unsigned char bad_magic[16] = {0x01, 0, 0, 0, 1, 2, 3, 4, 5};
    char key[200];
    snprintf(key, sizeof(key), "%s-poison", prefix);
    rt_produce_raw(&cart, key, bad_magic, sizeof(bad_magic));
    rt_topic_flush(&cart); /* its offset is known once delivered */
    int64_t poison_offset = cart.recs[cart.n - 1].offset;
    rt_produce_sim(&cart, &sim, g, 300);

    CU_ASSERT_TRUE(rt_wait_ready_status(&proc, 503, 30, reason, sizeof(reason)));
    printf("\n  DLQ refused: /readyz 503: %s\n", reason);
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "DLQ"));
    int64_t t_refused = es_test_now_s();
    while (es_test_now_s() - t_refused < REFUSED_S && rt_proc_alive(&proc))
        usleep(500 * 1000);
    CU_ASSERT_TRUE_FATAL(rt_proc_alive(&proc));
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/healthz", NULL), 200);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 200); /* reads go on */
    int64_t held = applied_offset(&proc);
    printf("  after %d s: applied offset %lld, the poison event at %lld\n", REFUSED_S,
           (long long)held, (long long)poison_offset);
    CU_ASSERT_EQUAL(held, poison_offset); /* nothing skipped, nothing applied past it */
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/readyz", NULL), 503);

    /* the DLQ takes records again: the projection goes on by itself */
    CU_ASSERT_TRUE_FATAL(es_test_topic_config(dlq, "max.message.bytes", KAFKA_DEFAULT_B));
    int64_t t_restored = es_test_now_s();
    CU_ASSERT_TRUE(rt_wait_applied_to_end(&proc, &cart, 60));
    CU_ASSERT_TRUE(rt_wait_ready_status(&proc, 200, 30, reason, sizeof(reason)));
    long long recovered_s = (long long)(es_test_now_s() - t_restored);
    CU_ASSERT_EQUAL(rt_metric(&proc, "escqrs_projector_dlq_total{projection=\"cart_view\"}"), 1);
    size_t differ = rt_carts_differing(&proc, &sim);
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    rt_dlq_rec_t *d = NULL;
    size_t n = rt_dlq_read(conf, agg, "projector", &d);
    size_t at_poison = 0;
    for (size_t i = 0; i < n; i++)
        at_poison += d[i].src_offset == poison_offset && !strcmp(d[i].error, "BAD_MAGIC");
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(at_poison, 1);
    printf("  RESULT dlq_records=%zu at_poison=%zu held_at=%lld poison_at=%lld "
           "applied_after_restore_s=%lld carts_differing=%zu\n",
           n, at_poison, (long long)held, (long long)poison_offset, recovered_s, differ);
    free(d);
    rt_topic_free(&cart);
    es_sim_free(&sim);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a DLQ that refuses: the projection waits, skips nothing, goes on", test_dlq_refused},
        {NULL, NULL},
    };
    return es_test_run("fault-projector-dlq-refused", cases);
}
