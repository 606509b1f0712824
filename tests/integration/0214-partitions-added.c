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
 *     does not fold until a restart, and keeps serving the carts it has;
 *     started again, it waits, naming its DLQ topic, still of 3 partitions;
 *     once that is raised too, it goes on by itself and serves every cart.
 * A second case runs the remedy docs/operations.md gives, a migration to new
 * topics of 5 partitions, every event copied unchanged by its key: the
 * command service, started on its old store with the new prefix, takes a
 * command for every old cart (200, version 2), none refused for the
 * partition its store knew.
 */
#include "readtest.h"
#include "testutil.h"
#include "writetest.h"

#include "escqrs/kafka.h"

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
    const char *psets[] = {"projections=cart_view", "projector.name=pa",
                           "kafka.topic.metadata.refresh.interval.ms=1000"};
    rt_proc_start(&proj, root, st.prefix, psets, 3);
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
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "folded after a restart, with the projection's DLQ"));
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

    /* the projector again: it waits for its DLQ topic, then folds every partition */
    char dlq[300];
    CU_ASSERT_EQUAL(rt_proc_stop(&proj), 0);
    rt_proc_start(&proj, root, st.prefix, psets, 3);
    snprintf(dlq, sizeof(dlq), "%scart.events.dlq.pa", st.prefix);
    CU_ASSERT_TRUE(rt_wait_ready_status(&proj, 503, 60, reason, sizeof(reason)));
    for (int i = 0; i < 300 && !strstr(reason, "exists with 3 partitions, not 5"); i++) {
        usleep(100 * 1000);
        rt_wait_ready_status(&proj, 503, 1, reason, sizeof(reason));
    }
    printf("\n  projector started again: %.300s", reason);
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, dlq));
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "exists with 3 partitions, not 5"));
    add_partitions(dlq, NEW_PARTS);
    CU_ASSERT_TRUE(rt_wait_ready_status(&proj, 200, 90, reason, sizeof(reason)));
    int served = 0;
    for (int i = 0; i < N_NEW; i++) {
        json_t *cart = NULL;
        snprintf(id, sizeof(id), "/v1/carts/new-%d", i);
        served += rt_http(&proj, "GET", id, &cart) == 200 &&
                  json_integer_value(json_object_get(cart, "version")) == 1;
        json_decref(cart);
    }
    printf("\n  new carts served at version 1 after the restart: %d of %d", served, N_NEW);
    CU_ASSERT_EQUAL(served, N_NEW);
    CU_ASSERT_EQUAL(rt_proc_stop(&proj), 0);
    wt_stack_stop(&st);
}

/* Every committed record of @p src (its @p nparts partitions) produced to @p dst by its key,
 * unchanged, with the producers' partitioner (the migration's copier). */
static size_t copy_topic(const char *src, int nparts, const char *dst)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", es_test_bootstrap(), err, sizeof(err));
    rd_kafka_conf_set(c, "group.id", "it0214-copier", err, sizeof(err));
    rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err));
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", es_test_bootstrap(), err, sizeof(err));
    rd_kafka_conf_set(pc, "enable.idempotence", "true", err, sizeof(err));
    rd_kafka_conf_set(pc, "partitioner", "murmur2_random", err, sizeof(err));
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    CU_ASSERT_FATAL(cons && prod);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(nparts);
    int64_t end[8] = {0}; /* each partition's end: transactions' markers are read past too */
    CU_ASSERT_FATAL(nparts <= 8);
    for (int p = 0; p < nparts; p++) {
        rd_kafka_query_watermark_offsets(cons, src, p, &(int64_t){0}, &end[p], 10000);
        rd_kafka_topic_partition_list_add(tl, src, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(cons, tl);
    size_t copied = 0;
    for (int idle = 0; idle < 100;) {
        rd_kafka_position(cons, tl);
        bool done = true;
        for (int p = 0; p < nparts; p++)
            done = done && tl->elems[p].offset >= end[p];
        if (done)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 100);
        if (!m) {
            idle++;
            continue;
        }
        if (!m->err) {
            rd_kafka_headers_t *h = NULL;
            rd_kafka_message_headers(m, &h);
            rd_kafka_resp_err_t e = rd_kafka_producev(
                prod, RD_KAFKA_V_TOPIC(dst), RD_KAFKA_V_KEY(m->key, m->key_len),
                RD_KAFKA_V_VALUE(m->payload, m->len),
                RD_KAFKA_V_HEADERS(h ? rd_kafka_headers_copy(h) : rd_kafka_headers_new(0)),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            CU_ASSERT_EQUAL(e, RD_KAFKA_RESP_ERR_NO_ERROR);
            copied++;
        }
        rd_kafka_message_destroy(m);
    }
    CU_ASSERT_EQUAL(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(prod);
    return copied;
}

static void test_migration(void)
{
    wt_stack_t st;
    char id[64], path[200], src[300], dst[300];
    wt_stack_init(&st, "cart");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    int moved = 0;
    for (int i = 0; i < N_OLD; i++) {
        snprintf(id, sizeof(id), "m-%d", i);
        CU_ASSERT_EQUAL(add_item(&st, id), 200);
        moved += partition_of(id, OLD_PARTS) != partition_of(id, NEW_PARTS);
    }
    wt_stack_stop(&st);

    /* the new topics (5 partitions), the events copied, the same store, the new prefix */
    char old_prefix[sizeof(st.prefix)];
    snprintf(old_prefix, sizeof(old_prefix), "%s", st.prefix);
    snprintf(st.prefix, sizeof(st.prefix), "%.60sv2-", old_prefix);
    es_conf_t *conf = rt_conf(NEW_PARTS);
    char agg[300], names[4][300], err[1024];
    es_topic_spec_t specs[4];
    static const es_topic_kind_t kinds[] = {ES_TOPIC_COMMANDS, ES_TOPIC_EVENTS, ES_TOPIC_RESULTS,
                                            ES_TOPIC_STATE};
    snprintf(agg, sizeof(agg), "%scart", st.prefix);
    for (int k = 0; k < 4; k++) {
        es_topic_name(agg, kinds[k], NULL, names[k], sizeof(names[k]));
        es_topic_spec_for(conf, kinds[k], names[k], &specs[k]);
    }
    es_admin_t *adm = es_admin_new(conf, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(adm);
    CU_ASSERT_EQUAL_FATAL(es_admin_create_topics(adm, specs, 4, 30000, err, sizeof(err)), 0);
    es_admin_destroy(adm);
    es_conf_destroy(conf);
    snprintf(src, sizeof(src), "%scart.events", old_prefix);
    snprintf(dst, sizeof(dst), "%scart.events", st.prefix);
    size_t copied = copy_topic(src, OLD_PARTS, dst);
    CU_ASSERT_EQUAL(copied, N_OLD);
    const char *sets[] = {"topics.partitions=5"};
    wt_start_service(&st, sets, 1);
    wt_start_gateway(&st, sets, 1);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    int ok = 0;
    for (int i = 0; i < N_OLD; i++) {
        json_t *j = NULL;
        snprintf(id, sizeof(id), "m-%d", i);
        snprintf(path, sizeof(path), "/v1/carts/%s/add-item", id);
        ok += wt_post(&st.gw, path, body, strlen(body), NULL, NULL, &j) == 200 &&
              json_integer_value(json_object_get(j, "version")) == 2;
        json_decref(j);
    }
    printf("\n  migrated: %zu events copied; %d of %d carts (%d of them in another partition "
           "now) took a command at version 2",
           copied, ok, N_OLD, moved);
    CU_ASSERT_EQUAL(ok, N_OLD);
    CU_ASSERT_TRUE(moved > 0);
    wt_stack_stop(&st);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"partitions added: refused, not split; answers read; /readyz says so",
         test_partitions_added},
        {"the migration to new topics: every old aggregate decided in its new partition",
         test_migration},
        {NULL, NULL},
    };
    return es_test_run("partitions_added", cases);
}
