/*
 * 0214-partitions-added.c — partitions added to an aggregate's topics under a
 * running gateway, command service and projector, on the real broker: no
 * aggregate's history is split over two partitions, no answer written is
 * missed, and /readyz says what happened.
 *
 * docs/operations.md says never to add partitions (an aggregate's id hashes to
 * another partition then), but Kafka and Strimzi let an operator do it.  The
 * test creates the topics with 3 partitions, decides a command for each of 30
 * carts, then raises every topic of the aggregate to 5 (as raising a
 * KafkaTopic's spec.partitions does) and checks, with clients that never
 * retry:
 *   - commands for 40 new carts are all answered 200, also those whose
 *     commands and outcomes go to the new partitions (the gateway reads the
 *     partitions added to the results topic; the command service, assigned a
 *     partition it did not know, checks its topics again);
 *   - a command for an old cart whose id now hashes to another partition is
 *     not decided: the service refuses that partition (/readyz 503 naming the
 *     cart and both partitions), the client gets no answer, and a command for
 *     an old cart whose partition did not move is still answered 200;
 *   - every cart's events are in one partition of the events topic, each
 *     answered command's events are there, and the refused command wrote none;
 *   - the projector says on /readyz that the events topic has partitions it
 *     does not fold until a restart, and keeps serving the carts it has.
 */
#include "readtest.h"
#include "testutil.h"
#include "writetest.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define OLD_PARTS 3
#define NEW_PARTS 5
#define N_OLD     30
#define N_NEW     40

static const char *const body = "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":100}";

/* The partition the producers' default partitioner (murmur2_random) gives @p id. */
static int32_t partition_of(const char *id, int32_t cnt)
{
    return rd_kafka_msg_partitioner_murmur2_random(NULL, id, strlen(id), cnt, NULL, NULL);
}

/* Raise @p topic to @p total partitions with the Admin API. */
static void add_partitions(const char *topic, int total)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", es_test_bootstrap(), err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(topic, (size_t)total, err, 512);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreatePartitions(rk, &np, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_CreatePartitions_result_t *res = rd_kafka_event_CreatePartitions_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreatePartitions_result_topics(res, &n) : 0;
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(n ? rd_kafka_topic_result_error(tr[0]) : -1, RD_KAFKA_RESP_ERR_NO_ERROR);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static int add_item(const wt_stack_t *st, const char *cart)
{
    char path[300];
    snprintf(path, sizeof(path), "/v1/carts/%s/add-item", cart);
    return wt_post(&st->gw, path, body, strlen(body), NULL, NULL, NULL);
}

/* The partitions cart @p id's events are in, as a bit set; how many of them in @p n. */
static unsigned partitions_of_cart(const wt_event_t *ev, size_t nev, const char *id, int *n)
{
    unsigned set = 0;
    *n = 0;
    for (size_t i = 0; i < nev; i++) {
        if (!strcmp(ev[i].agg_id, id)) {
            set |= 1u << ev[i].partition;
            (*n)++;
        }
    }
    return set;
}

static void test_partitions_added(void)
{
    wt_stack_t st;
    char id[200], root[700], reason[1024];
    rt_proc_t proj = {0};
    wt_stack_init(&st, "cart");
    /*
     * Every client learns the new count within a second; outcomes wait 20 s.  The
     * gateway creates the topics; the service runs with topics.create=false, as
     * with topics an operator manages (with true it would stop at its check,
     * exit 2: the topics no longer have topics.partitions partitions).
     */
    const char *sets[] = {"kafka.topic.metadata.refresh.interval.ms=1000", "topics.create=false",
                          "request.timeout.ms=20000"};
    const char *gw_sets[] = {sets[0], sets[2]};
    wt_start_gateway(&st, gw_sets, 2);
    char line[1024];
    for (int i = 0; i < 600 && !wt_log_line(st.gw.log, "reading outcomes from", NULL, line, 1024);
         i++)
        usleep(100 * 1000); /* its topics are there (ready only once a service runs) */
    wt_start_service(&st, sets, 2);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);

    /* 30 old carts; one whose partition moves, one whose does not (and differs from it) */
    const char *moved = NULL, *stays = NULL;
    static char old[N_OLD][64];
    for (int i = 0; i < N_OLD; i++) {
        snprintf(old[i], sizeof(old[i]), "old-%d", i);
        CU_ASSERT_EQUAL(add_item(&st, old[i]), 200);
        int32_t was = partition_of(old[i], OLD_PARTS), now = partition_of(old[i], NEW_PARTS);
        if (!moved && was != now)
            moved = old[i];
    }
    for (int i = 0; i < N_OLD && moved; i++) {
        int32_t now = partition_of(old[i], NEW_PARTS);
        if (now == partition_of(old[i], OLD_PARTS) && now != partition_of(moved, NEW_PARTS))
            stays = old[i];
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(moved);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stays);
    snprintf(root, sizeof(root), "%s/projector", st.dir);
    const char *psets[] = {"projections=cart_view",
                           "kafka.topic.metadata.refresh.interval.ms=1000"};
    rt_proc_start(&proj, root, st.prefix, psets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_ready_status(&proj, 200, 60, reason, sizeof(reason)));

    static const char *const kinds[] = {"commands", "events", "command-results", "state"};
    for (size_t k = 0; k < ES_ARRAY_SIZE(kinds); k++) {
        char topic[300];
        snprintf(topic, sizeof(topic), "%scart.%s", st.prefix, kinds[k]);
        add_partitions(topic, NEW_PARTS);
    }
    CU_ASSERT_TRUE(rt_wait_ready_status(&proj, 503, 30, reason, sizeof(reason)));
    printf("\n  projector /readyz: %s", reason);
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "cart.events has 5 partitions, 3 when this process"));
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "folded after a restart"));
    snprintf(id, sizeof(id), "/v1/carts/%s", old[0]); /* reads go on */
    CU_ASSERT_EQUAL(rt_http(&proj, "GET", id, NULL), 200);
    sleep(3); /* the gateway's producer and the service's group see 5 partitions by now */

    int ok = 0, on_new = 0;
    for (int i = 0; i < N_NEW; i++) {
        snprintf(id, sizeof(id), "new-%d", i);
        ok += add_item(&st, id) == 200;
        on_new += partition_of(id, NEW_PARTS) >= OLD_PARTS;
    }
    printf("\n  new carts: %d of %d answered 200 (%d of them in the new partitions)", ok, N_NEW,
           on_new);
    CU_ASSERT_EQUAL(ok, N_NEW);
    CU_ASSERT_TRUE(on_new > 0);

    /* a moved cart's command is refused, not decided in its new partition */
    int moved_status = add_item(&st, moved);
    printf("\n  %s (partition %d, now %d): %d", moved, partition_of(moved, OLD_PARTS),
           partition_of(moved, NEW_PARTS), moved_status);
    CU_ASSERT_NOT_EQUAL(moved_status, 200);
    char words[200];
    snprintf(words, sizeof(words), "a command for %s arrived in", moved);
    CU_ASSERT_TRUE(wt_wait_not_ready_because(&st.cs, words, 30));
    char *why = NULL;
    wt_get(&st.cs, "/readyz", &why);
    printf("\n  command service /readyz: %.400s", why ? why : "");
    CU_ASSERT_PTR_NOT_NULL(why && strstr(why, "Never add partitions"));
    free(why);
    CU_ASSERT_EQUAL(add_item(&st, stays), 200); /* the other partitions go on */

    /* the durable promise: no cart's events in two partitions */
    size_t nev = 0;
    wt_event_t *ev = wt_read_events(&st, &nev);
    int split = 0, count = 0, on_added = 0;
    for (int i = 0; i < N_OLD; i++) {
        unsigned set = partitions_of_cart(ev, nev, old[i], &count);
        split += __builtin_popcount(set) != 1;
        CU_ASSERT_EQUAL(count, old[i] == stays ? 2 : 1);
    }
    for (int i = 0; i < N_NEW; i++) {
        snprintf(id, sizeof(id), "new-%d", i);
        unsigned set = partitions_of_cart(ev, nev, id, &count);
        split += __builtin_popcount(set) != 1;
        on_added += (set >> OLD_PARTS) != 0;
        CU_ASSERT_EQUAL(count, 1);
    }
    printf("\n  %zu events, carts split over two partitions: %d, new carts in the added "
           "partitions: %d",
           nev, split, on_added);
    CU_ASSERT_EQUAL(split, 0);
    CU_ASSERT_EQUAL(on_added, on_new);
    free(ev);
    CU_ASSERT_EQUAL(rt_proc_stop(&proj), 0);
    wt_stack_stop(&st);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"partitions added: refused, not split; answers read; /readyz says so",
         test_partitions_added},
        {NULL, NULL},
    };
    return es_test_run("partitions_added", cases);
}
