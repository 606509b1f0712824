/*
 * 0313-projector-lag-truth.c — /admin/projections never shows a partition
 * applied past its high watermark.
 *
 * The live loop used to refresh high watermarks once a second while it
 * published applied offsets after every batch, so for up to a second a
 * partition read "applied 7, high 1" and lag 0 while events were pending.
 * Here a caught-up projector gets 25 small bursts of events; between bursts
 * the admin API is polled every 5 ms until the views hold the burst, and
 * every answer must have applied <= high on every partition whose high is
 * known.  The old loop fails this in nearly every burst.
 *
 * Then the offsets committed to Kafka for lag tools: at most one commit a
 * second, so the last bursts' batches are held back, and only the live
 * loop's tick sends them.  With the projector still running and no more
 * events, the group must reach the end of every partition within seconds
 * (a loop that dropped what the rate limit held back fails this unless its
 * last burst happened to open a new second; a commit refused while the
 * coordinator loads, after a broker restart, is sent again).  And after a
 * kill -9 right after one more burst, whose commit was held back: the
 * restarted projector, with nothing new to fold, must commit what its store
 * holds.
 */
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define BURSTS     25
#define BURST_SIZE 20

/* Applied summed over partitions; counts answers with a partition applied past its high. */
static int64_t poll_once(rt_proc_t *proc, int *behind, int *answers)
{
    json_t *pj = rt_projection(proc, "cart_view");
    int64_t applied = 0;
    size_t i;
    json_t *part;
    if (!pj)
        return -1;
    (*answers)++;
    json_array_foreach(json_object_get(pj, "partitions"), i, part)
    {
        json_int_t a = json_integer_value(json_object_get(part, "applied"));
        json_int_t h = json_integer_value(json_object_get(part, "high"));
        applied += a;
        if (h >= 0 && a > h) {
            if (*behind < 3)
                printf("\n  partition %zu: applied %lld, high %lld", i, (long long)a, (long long)h);
            (*behind)++;
        }
    }
    json_decref(pj);
    return applied;
}

/* A burst of events, polled every 5 ms until applied (or 10 s): the events applied. */
static int64_t one_burst(rt_topic_t *cart, es_sim_t *sim, es_evgen_t *g, rt_proc_t *proc,
                         int *behind, int *answers)
{
    rt_produce_sim(cart, sim, g, BURST_SIZE);
    rt_topic_flush(cart);
    int64_t applied = 0;
    for (int waited = 0; waited < 10000 && applied < (int64_t)cart->n; waited += 5) {
        applied = poll_once(proc, behind, answers);
        usleep(5000);
    }
    return applied;
}

/* Whether @p group's committed offsets reach the end of @p topic's 3 partitions within 12 s
 * (a failed commit is sent again within PJ_KAFKA_RECOMMIT_MS, 5 s). */
static bool group_at_end(const char *group, const char *topic, const char *when)
{
    int64_t committed[3], end[3];
    int parts = 0, at_end = -1;
    for (int waited = 0; waited <= 12000 && at_end != parts; waited += 100) {
        usleep(100 * 1000);
        parts = es_test_group_offsets(group, topic, committed, end, 3);
        at_end = 0;
        for (int p = 0; p < parts; p++)
            at_end += committed[p] == end[p];
    }
    printf("\n  %s:", when);
    for (int p = 0; p < parts; p++)
        printf(" partition %d committed %lld of %lld;", p, (long long)committed[p],
               (long long)end[p]);
    return parts == 3 && at_end == parts;
}

static void test_high_never_behind_applied(void)
{
    char prefix[128], agg[200], root[300], pfx[200];
    es_conf_t *conf = rt_conf(3);
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    rt_proc_t proc = {0};
    char name_set[200];
    const char *sets[] = {"projections=cart_view", name_set};
    int behind = 0, answers = 0;

    es_test_unique("it0313", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    /* a group of its own: test 0311's partitioned projectors may still hold the shared one */
    snprintf(name_set, sizeof(name_set), "projector.name=%s", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, 13, 16);
    rt_produce_sim(&cart, &sim, g, BURST_SIZE);
    rt_topic_flush(&cart);

    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(&proc, "cart_view", 30000));
    for (int burst = 0; burst < BURSTS; burst++)
        CU_ASSERT_EQUAL(one_burst(&cart, &sim, g, &proc, &behind, &answers), (int64_t)cart.n);
    printf("\n  %d answers over %d bursts, %d with a partition applied past its high\n", answers,
           BURSTS, behind);
    CU_ASSERT_EQUAL(behind, 0);

    char group[300];
    snprintf(group, sizeof(group), "escqrs-projector.%s.cart_view", prefix);
    CU_ASSERT_TRUE(group_at_end(group, cart.name, "running, no more events"));

    /* One more burst, killed as soon as it is applied: within a second of the
     * commit above, so its commit is still held back.  The restarted loop has
     * nothing new to fold; its first commit must send what the store holds. */
    CU_ASSERT_EQUAL(one_burst(&cart, &sim, g, &proc, &behind, &answers), (int64_t)cart.n);
    rt_proc_kill9(&proc);
    rt_proc_start(&proc, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 30000));
    CU_ASSERT_TRUE(group_at_end(group, cart.name, "restarted after kill -9, no more events"));
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);

    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a partition is never shown applied past its high watermark",
         test_high_never_behind_applied},
        {NULL, NULL},
    };
    return es_test_run("0313-projector-lag-truth", cases);
}
