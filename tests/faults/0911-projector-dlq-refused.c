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
 * at it: no event is skipped and none after it is applied ahead of it), and
 * a restart meanwhile must start at the poison event again (the store holds
 * no offset of a dropped batch).  The limit is restored: without a restart the projection must
 * apply everything, be ready again, hold the poison event in its DLQ exactly once (source offset
 * and error), and answer every cart as the workload model does (tests/eventgen.c, not the
 * projection's fold).  Before 4 December a DLQ that failed halted the projection until a restart.
 * Prints how long the recovery took.
 *
 * Then a frozen view is built while the DLQ refuses again: 300 more events,
 * a second poison event, the freeze time, one event after it.  Its batch with
 * the poison event is dropped again and again, and with it the stop the
 * build found in that batch: once the DLQ takes the record, the frozen view
 * must be ready with exactly the 900 good events up to the freeze time (the
 * model), not the one after it.  A stop not taken back with its batch would
 * end the build with the events of that batch missing.
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

/* The applied offset of partition @p part of the first projection, -1 if unknown. */
static int64_t applied_offset(rt_proc_t *p, int32_t part)
{
    json_t *b = NULL;
    int64_t v = -1;
    if (rt_http(p, "GET", "/admin/projections", &b) == 200) {
        json_t *parts =
            json_object_get(json_array_get(json_object_get(b, "projections"), 0), "partitions");
        for (size_t i = 0; i < json_array_size(parts); i++) {
            json_t *pp = json_array_get(parts, i);
            if (json_integer_value(json_object_get(pp, "partition")) == part)
                v = json_integer_value(json_object_get(pp, "applied"));
        }
    }
    json_decref(b);
    return v;
}

static char prefix[128], agg[200], root[300], pfx[200], dlq[300];
static es_conf_t *conf;
static rt_topic_t cart;
static es_evgen_t *g;
static es_sim_t sim;
static rt_proc_t proc;
static const char *const sets[] = {"projections=cart_view", "batch.max.events=50"};

/* A poison record (a wrong magic byte) keyed @p name; its offset, its partition in *part. */
static int64_t produce_poison(const char *name, int32_t *part)
{
    static const unsigned char bad_magic[16] = {0x01, 0, 0, 0, 1, 2, 3, 4, 5};
    char key[200];
    snprintf(key, sizeof(key), "%s-%s", prefix, name);
    rt_produce_raw(&cart, key, bad_magic, sizeof(bad_magic));
    rt_topic_flush(&cart); /* its offset is known once delivered */
    *part = cart.recs[cart.n - 1].partition;
    return cart.recs[cart.n - 1].offset;
}

/* The DLQ's records of @p part at @p offset, with BAD_MAGIC; all of its records in *total. */
static size_t dlq_records_at(int32_t part, int64_t offset, size_t *total)
{
    rt_dlq_rec_t *d = NULL;
    size_t at = 0;
    *total = rt_dlq_read(conf, agg, "projector", &d);
    for (size_t i = 0; i < *total; i++)
        at += d[i].src_partition == part && d[i].src_offset == offset &&
              !strcmp(d[i].error, "BAD_MAGIC");
    free(d);
    return at;
}

static void test_dlq_refused(void)
{
    char reason[1024], path[400];
    conf = rt_conf(2); /* a batch of the other partition alone may be written meanwhile */
    g = es_evgen_new("cart.events");
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
    int32_t part;
    int64_t poison_offset = produce_poison("poison", &part);
    rt_produce_sim(&cart, &sim, g, 300);

    CU_ASSERT_TRUE(rt_wait_ready_status(&proc, 503, 30, reason, sizeof(reason)));
    printf("\n  DLQ refused: /readyz 503: %s\n", reason);
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "DLQ"));
    int64_t t_refused = es_mono_s();
    while (es_mono_s() - t_refused < REFUSED_S && rt_proc_alive(&proc))
        usleep(500 * 1000);
    CU_ASSERT_TRUE_FATAL(rt_proc_alive(&proc));
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/healthz", NULL), 200);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 200); /* reads go on */
    int64_t held = applied_offset(&proc, part);
    printf("  after %d s: applied offset %lld of partition %d, the poison event at %lld\n",
           REFUSED_S, (long long)held, (int)part, (long long)poison_offset);
    CU_ASSERT_EQUAL(held, poison_offset); /* nothing skipped, nothing applied past it */
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", "/readyz", NULL), 503);
    /* what the store says, not only the loop's memory: restarted while refused, the projector
     * must start at the poison event again (no offset of a dropped batch was written) */
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE(rt_wait_ready_status(&proc, 503, 30, reason, sizeof(reason)));
    sleep(3);
    int64_t held_after_restart = applied_offset(&proc, part);
    printf("  restarted while refused: applied offset %lld\n", (long long)held_after_restart);
    CU_ASSERT_EQUAL(held_after_restart, poison_offset);

    /* the DLQ takes records again: the projection goes on by itself */
    CU_ASSERT_TRUE_FATAL(es_test_topic_config(dlq, "max.message.bytes", KAFKA_DEFAULT_B));
    int64_t t_restored = es_mono_s();
    CU_ASSERT_TRUE(rt_wait_applied_to_end(&proc, &cart, 60));
    CU_ASSERT_TRUE(rt_wait_ready_status(&proc, 200, 30, reason, sizeof(reason)));
    long long recovered_s = (long long)(es_mono_s() - t_restored);
    CU_ASSERT_EQUAL(rt_metric(&proc, "escqrs_projector_dlq_total{projection=\"cart_view\"}"), 1);
    size_t differ = rt_carts_differing(&proc, &sim, NULL);
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    size_t n, at_poison = dlq_records_at(part, poison_offset, &n);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(at_poison, 1);
    printf("  RESULT dlq_records=%zu at_poison=%zu held_at=%lld poison_at=%lld "
           "applied_after_restore_s=%lld carts_differing=%zu\n",
           n, at_poison, (long long)held, (long long)poison_offset, recovered_s, differ);
}

/* The frozen view "refused"'s state ("building", "ready", "failed"), or "" when absent. */
static void frozen_state(char *out, size_t outsz, json_int_t *events)
{
    json_t *f = rt_frozen_entry(&proc, "cart_view", "refused");
    snprintf(out, outsz, "%s", f ? json_string_value(json_object_get(f, "state")) : "");
    *events = json_integer_value(json_object_get(f, "events"));
    json_decref(f);
}

static void test_frozen_build_refused(void)
{
    char reason[1024], path[400], state[32] = "", key[200];
    json_int_t events = 0;
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_applied_to_end(&proc, &cart, 60));
    CU_ASSERT_TRUE_FATAL(es_test_topic_config(dlq, "max.message.bytes", "64"));
    rt_produce_sim(&cart, &sim, g, 300);
    int32_t part;
    int64_t poison_offset = produce_poison("poison2", &part);
    usleep(50 * 1000);
    int64_t until = es_now_ms();
    usleep(50 * 1000);
    snprintf(key, sizeof(key), "%s-after", prefix); /* a cart the model does not hold */
    rt_produce(&cart, key, es_evgen_cart(g, key, 1, 0, "ItemAdded", "sku-01", 1, 100));
    rt_topic_flush(&cart);
    CU_ASSERT_TRUE(rt_wait_ready_status(&proc, 503, 30, reason, sizeof(reason)));

    snprintf(path, sizeof(path), "/admin/projections/cart_view/freeze?until=%lld&label=refused",
             (long long)until);
    CU_ASSERT_EQUAL_FATAL(rt_http(&proc, "POST", path, NULL), 202);
    sleep(5);
    frozen_state(state, sizeof(state), &events);
    printf("\n  frozen view after 5 s of refusals: %s, %lld events\n", state, (long long)events);
    ES_ASSERT_STR_EQ(state, "building");

    CU_ASSERT_TRUE_FATAL(es_test_topic_config(dlq, "max.message.bytes", KAFKA_DEFAULT_B));
    for (int i = 0; i < 300 && strcmp(state, "building") == 0; i++) {
        usleep(200 * 1000);
        frozen_state(state, sizeof(state), &events);
    }
    ES_ASSERT_STR_EQ(state, "ready");
    CU_ASSERT_EQUAL(events, 900);
    size_t differ = rt_carts_differing(&proc, &sim, "refused");
    CU_ASSERT_EQUAL(differ, 0);
    snprintf(path, sizeof(path), "/v1/carts/%s?view=refused", key);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 404); /* after the freeze time */
    CU_ASSERT_TRUE(rt_wait_applied_to_end(&proc, &cart, 60));
    snprintf(path, sizeof(path), "/v1/carts/%s", key);
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", path, NULL), 200); /* the live view has it */
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    /* the live loop and the frozen build each send it once: the build read the DLQ at its
     * start, while the live loop's record was refused */
    size_t n, at_poison = dlq_records_at(part, poison_offset, &n);
    CU_ASSERT_TRUE(at_poison >= 1 && at_poison <= 2);
    printf("  RESULT frozen_state=%s frozen_events=%lld carts_differing=%zu dlq_at_poison2=%zu\n",
           state, (long long)events, differ, at_poison);
    rt_topic_free(&cart);
    es_sim_free(&sim);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a DLQ that refuses: the projection waits, skips nothing, goes on", test_dlq_refused},
        {"a frozen build meanwhile: its stop is taken back with its batch",
         test_frozen_build_refused},
        {NULL, NULL},
    };
    return es_test_run("fault-projector-dlq-refused", cases);
}
