/*
 * 0211-lost-group-offsets.c — the command service's group loses its committed
 * offsets (the broker's offsets.retention.minutes passed while the service
 * was down, or an operator deleted the group): the service must refuse to
 * start the commands partitions from offset 0, say why on /readyz, decide
 * nothing again, and go on once the operator has set the offsets.
 *
 * Why: a commands partition without a committed offset starts from offset 0
 * (auto.offset.reset=earliest).  The service remembers the outcomes of the
 * last state.commands.remembered commands of each aggregate only, so every
 * older command would be decided again: an old deposit accepted twice.
 *
 * Account a1 is opened and given 5 deposits (each its own Idempotency-Key,
 * no retries) with state.commands.remembered=2, the service is stopped and
 * the group deleted (an admin request, retried while the static member's
 * session lasts).  Started again, /readyz must name the lost offsets within
 * 90 s and say 200 in none of the samples of the next 5 s, and a1's events in
 * the log must still be versions 1..6, each once (a service that starts from
 * offset 0 decides the open again, rejected, and the first 3 deposits,
 * accepted: versions 7..9).  The operator's remedy follows: the service is
 * stopped, the group's offsets set to the commands topic's end (what
 * `kafka-consumer-groups.sh --reset-offsets --to-latest` does), the service
 * started; it must be ready and accept a deposit at version 7.  The same
 * again with the offsets reset to 0 instead of deleted (what
 * `--reset-offsets --to-earliest` does): a committed offset behind the one
 * the store's last transaction committed must be refused alike.  And with
 * <agg>.commands deleted and created again: the group has no offset on the
 * new topic, refused as lost; set to the new topic's end, the service must go
 * on (the offsets its store kept belong to the old topic, past the new end).
 * Last, the reset to 0 again, but the service started on an empty store (a
 * new replica, a lost volume): it never decided there, so only the commands
 * offset the last <agg>.state record carries can tell the reset; refused
 * alike (before it, the restore's states and offset 0 decided deposits 1-3
 * again).  And only a1's partition reset to 0: that partition alone is
 * refused (paused, its gauge 1, the clients never re-created) while an
 * account on another partition is given a deposit; a second instance
 * joins, and one of the two refuses it while the other is ready.  In every case the
 * refusing service leaves the group's offsets of the refused partitions as
 * the damage left them.
 */
#include "testutil.h"
#include "writetest.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAMPLE_MS 5000

/* Delete the service's group: refused while its static member's session lasts. */
static bool delete_group(const wt_stack_t *st, int timeout_s)
{
    char group[300], errstr[512];
    wt_command_group(st, group, sizeof(group));
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", es_test_bootstrap(), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    bool deleted = false;
    int64_t t0 = es_mono_ms();
    for (int i = 0; !deleted && es_mono_ms() - t0 < timeout_s * 1000; i++) {
        rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(group);
        rd_kafka_DeleteGroups(rk, &dg, 1, NULL, q);
        rd_kafka_DeleteGroup_destroy(dg);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 5000);
        const rd_kafka_DeleteGroups_result_t *res =
            ev ? rd_kafka_event_DeleteGroups_result(ev) : NULL;
        size_t n = 0;
        const rd_kafka_group_result_t **gr =
            res ? rd_kafka_DeleteGroups_result_groups(res, &n) : NULL;
        const rd_kafka_error_t *e = n ? rd_kafka_group_result_error(gr[0]) : NULL;
        deleted = ev && !rd_kafka_event_error(ev) && n == 1 && !e;
        if (!deleted && i % 5 == 0)
            fprintf(stderr, "  delete group %s: %s\n", group,
                    e    ? rd_kafka_error_string(e)
                    : ev ? rd_kafka_event_error_string(ev)
                         : "no answer");
        if (ev)
            rd_kafka_event_destroy(ev);
        if (!deleted)
            sleep(1);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return deleted;
}

/* Delete <agg>.commands and wait until the broker no longer lists it (the service
 * creates it again at start: topics.create=true). */
static bool delete_commands_topic(const wt_stack_t *st, int timeout_s)
{
    char topic[300], errstr[512];
    snprintf(topic, sizeof(topic), "%s%s.commands", st->prefix, st->agg);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", es_test_bootstrap(), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    bool asked = ev && !rd_kafka_event_error(ev);
    if (ev)
        rd_kafka_event_destroy(ev);
    bool gone = false;
    for (int64_t t0 = es_mono_ms(); asked && !gone && es_mono_ms() - t0 < timeout_s * 1000;) {
        gone = es_test_partition_count(rk, topic) == 0;
        if (!gone)
            usleep(200 * 1000);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return gone;
}

/* Commit the commands topic's end (@p to_end) or offset 0 for the group, as an operator's
 * reset to the latest or to the earliest does. */
static bool commit_offsets(const wt_stack_t *st, bool to_end, int timeout_s)
{
    int64_t committed[64], end[64], zero[64] = {0};
    int parts = wt_command_offsets(st, committed, end, 64);
    CU_ASSERT_FATAL(parts > 0);
    return wt_commit_group_offsets(st, to_end ? end : zero, parts, timeout_s);
}

static int post(const wt_stack_t *st, const char *path, const char *body, const char *key,
                int64_t *version)
{
    json_t *ans = NULL;
    int status = wt_post(&st->gw, path, body, strlen(body), key, NULL, &ans);
    if (version)
        *version = json_integer_value(json_object_get(ans, "version"));
    json_decref(ans);
    return status;
}

/* The service (@p sets) and the gateway started, a1 opened and given 5 deposits. */
static void start_with_a1(wt_stack_t *st, const char *const *sets)
{
    wt_stack_init(st, "account");
    wt_start_service(st, sets, 1);
    wt_start_gateway(st, NULL, 0);
    wt_wait_ready(&st->cs, 90);
    wt_wait_ready(&st->gw, 90);
    CU_ASSERT_EQUAL(post(st, "/v1/accounts/a1/open", "{\"owner\":\"o\"}", "open-1", NULL), 200);
    for (int i = 1; i <= 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "deposit-%d", i);
        CU_ASSERT_EQUAL(post(st, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", key, NULL),
                        200);
    }
}

/* How the group's offsets are damaged while the service is down. */
typedef enum { GROUP_DELETED, RESET_TO_ZERO, TOPIC_RECREATED, RESET_ON_A_NEW_STORE } damage_t;

/*
 * a1 opened and given 5 deposits; the service stopped and the group's offsets
 * damaged (@p damage); started, it must say @p words on /readyz, never 200,
 * and decide nothing again; the offsets set to the end, it goes on.
 */
static void refused_then_reset(damage_t damage, const char *words)
{
    wt_stack_t st;
    const char *sets[] = {"state.commands.remembered=2"};
    start_with_a1(&st, sets);
    char why[256] = "";
    CU_ASSERT_TRUE(wt_wait_group_at_end(&st, 30, why, sizeof(why)));
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);

    if (damage == TOPIC_RECREATED) { /* the gateway's producer would hold the old one */
        CU_ASSERT_EQUAL(wt_stop(&st.gw), 0);
        CU_ASSERT_TRUE_FATAL(delete_commands_topic(&st, 90));
    } else {
        if (damage == RESET_ON_A_NEW_STORE)
            CU_ASSERT_TRUE_FATAL(wt_delete_store(&st));
        CU_ASSERT_TRUE_FATAL(damage == GROUP_DELETED ? delete_group(&st, 90)
                                                     : commit_offsets(&st, false, 90));
        int64_t committed[64], end[64];
        int parts = wt_command_offsets(&st, committed, end, 64);
        for (int p = 0; p < parts; p++) /* the offsets are gone, or back at 0 */
            CU_ASSERT_EQUAL(committed[p], damage == GROUP_DELETED ? RD_KAFKA_OFFSET_INVALID : 0);
    }

    wt_start_service(&st, sets, 1);
    bool said = wt_wait_not_ready_because(&st.cs, words, 90);
    printf("\n  RESULT /readyz said \"%s\": %s\n", words, said ? "yes" : "no");
    CU_ASSERT_TRUE(said);
    int asked = 0, ready = wt_count_ready(&st.cs, SAMPLE_MS, &asked);
    printf("  RESULT /readyz meanwhile: %d of %d said 200\n", ready, asked);
    CU_ASSERT_EQUAL(ready, 0);
    wt_assert_versions(&st, "a1", 6); /* nothing decided again */
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);
    int64_t committed[64], end[64];
    int parts = wt_command_offsets(&st, committed, end, 64), moved = 0;
    for (int p = 0; p < parts; p++) /* a refused partition's offset is the operator's */
        moved +=
            committed[p] !=
            (damage == GROUP_DELETED || damage == TOPIC_RECREATED ? RD_KAFKA_OFFSET_INVALID : 0);
    printf("  RESULT group offsets the refusing service moved: %d of %d\n", moved, parts);
    CU_ASSERT(parts > 0);
    CU_ASSERT_EQUAL(moved, 0);

    /* the operator's remedy: the offsets set to the end while the service is down */
    CU_ASSERT_TRUE_FATAL(commit_offsets(&st, true, 90));
    wt_start_service(&st, sets, 1);
    wt_wait_ready(&st.cs, 90);
    if (damage == TOPIC_RECREATED) {
        wt_start_gateway(&st, NULL, 0);
        wt_wait_ready(&st.gw, 90);
    }
    int64_t version = 0;
    CU_ASSERT_EQUAL(
        post(&st, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", "deposit-6", &version), 200);
    printf("  RESULT after the reset to the end: a deposit at version %lld\n", (long long)version);
    CU_ASSERT_EQUAL(version, 7);
    wt_assert_versions(&st, "a1", 7);
    wt_stack_stop(&st);
}

/* The partition of aggregate @p agg_id's events (-1: none read). */
static int32_t partition_of(const wt_stack_t *st, const char *agg_id)
{
    size_t n = 0;
    wt_event_t *ev = wt_read_events(st, &n);
    int32_t p = -1;
    for (size_t i = 0; i < n && p < 0; i++)
        if (!strcmp(ev[i].agg_id, agg_id))
            p = ev[i].partition;
    free(ev);
    return p;
}

/*
 * A second instance B (its own store and transactional id) joins while a1's
 * partition is refused: the partitions are shared, and whichever holds a1's
 * refuses it (one refusal between them, the other instance ready), neither
 * re-creates its clients (a refusal used to, and the partition went round the
 * group), and @p other is given another deposit.  B then stops.
 */
static void second_instance_joins(wt_stack_t *st, const char *const *sets, const char *other)
{
    wt_stack_t b = *st;
    char txid[300], path[96];
    snprintf(b.dir, sizeof(b.dir), "%.500s/b", st->dir);
    mkdir(b.dir, 0755);
    memset(&b.cs, 0, sizeof(b.cs));
    snprintf(txid, sizeof(txid), "transactional.id=%sservice-b", st->prefix);
    const char *bsets[] = {sets[0], txid};
    wt_start_service(&b, bsets, 2);
    double refused = -1, recoveries = -1;
    int ready_a = 0, ready_b = 0, asked = 0;
    bool shared = false;
    for (int i = 0; i < 120 && (!shared || refused != 1 || ready_a + ready_b != 1); i++) {
        sleep(1); /* until the group shared the partitions and both caught up */
        refused = wt_metric(&st->cs, "escqrs_command_service_partitions_refused") +
                  wt_metric(&b.cs, "escqrs_command_service_partitions_refused");
        ready_a = wt_count_ready(&st->cs, 200, &asked) > 0;
        ready_b = wt_count_ready(&b.cs, 200, &asked) > 0;
        /* B logs its assignment once its callback is done: the refusal comes before */
        shared = wt_log_line(b.cs.log, "assigned", "partition(s) of", NULL, 0) &&
                 !wt_log_line(b.cs.log, "assigned 0 partition(s)", NULL, NULL, 0);
    }
    int64_t version = 0;
    snprintf(path, sizeof(path), "/v1/accounts/%s/deposit", other);
    int status = post(st, path, "{\"amount_cents\":100}", "deposit-other-2", &version);
    recoveries = wt_metric(&st->cs, "escqrs_command_service_recoveries_total") +
                 wt_metric(&b.cs, "escqrs_command_service_recoveries_total");
    printf("  RESULT two instances: B assigned a share %s; %g refused, ready %d + %d, %g "
           "recoveries; %s's deposit %d at version %lld\n",
           shared ? "yes" : "no", refused, ready_a, ready_b, recoveries, other, status,
           (long long)version);
    CU_ASSERT_TRUE(shared);
    CU_ASSERT_EQUAL(refused, 1);
    CU_ASSERT_EQUAL(ready_a + ready_b, 1);
    CU_ASSERT_EQUAL(recoveries, 0);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_EQUAL(version, 3);
    CU_ASSERT_EQUAL(wt_stop(&b.cs), 0);
}

/*
 * Only a1's partition moved back to 0: it is refused and named, and the
 * other partitions go on deciding, without the clients re-created (they were
 * re-created with each back-off, deciding nothing anywhere, and with several
 * instances the refused partition went round the group).
 */
static void test_one_partition_moved_back(void)
{
    wt_stack_t st;
    const char *sets[] = {"state.commands.remembered=2"};
    start_with_a1(&st, sets);
    char other[16] = "", path[96], why[256] = "";
    int32_t pa = partition_of(&st, "a1");
    CU_ASSERT_FATAL(pa >= 0);
    for (int i = 1; i <= 12 && !*other; i++) { /* an account on another partition */
        char id[16], key[32];
        snprintf(id, sizeof(id), "b%d", i);
        snprintf(path, sizeof(path), "/v1/accounts/%s/open", id);
        snprintf(key, sizeof(key), "open-%s", id);
        CU_ASSERT_EQUAL(post(&st, path, "{\"owner\":\"o\"}", key, NULL), 200);
        if (partition_of(&st, id) != pa)
            snprintf(other, sizeof(other), "%s", id);
    }
    CU_ASSERT_FATAL(*other);
    CU_ASSERT_TRUE(wt_wait_group_at_end(&st, 30, why, sizeof(why)));
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);

    int64_t committed[64], end[64];
    int parts = wt_command_offsets(&st, committed, end, 64);
    CU_ASSERT_FATAL(parts > pa);
    end[pa] = 0; /* only a1's partition moved back */
    CU_ASSERT_TRUE_FATAL(wt_commit_group_offsets(&st, end, parts, 90));

    wt_start_service(&st, sets, 1);
    char words[64];
    snprintf(words, sizeof(words), ".commands [%d] is 0", (int)pa);
    bool said = wt_wait_not_ready_because(&st.cs, words, 90);
    printf("\n  RESULT /readyz named partition %d moved back: %s\n", (int)pa, said ? "yes" : "no");
    CU_ASSERT_TRUE(said);
    int64_t version = 0;
    snprintf(path, sizeof(path), "/v1/accounts/%s/deposit", other);
    int status = post(&st, path, "{\"amount_cents\":100}", "deposit-other", &version);
    printf("  RESULT a deposit to %s on another partition: %d, version %lld\n", other, status,
           (long long)version);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_EQUAL(version, 2);
    int asked = 0, ready = wt_count_ready(&st.cs, SAMPLE_MS, &asked);
    double recoveries = wt_metric(&st.cs, "escqrs_command_service_recoveries_total");
    double refused = wt_metric(&st.cs, "escqrs_command_service_partitions_refused");
    double caught_up = wt_metric(&st.cs, "escqrs_command_service_caught_up");
    printf("  RESULT /readyz meanwhile: %d of %d said 200; %g recoveries, %g refused, caught up "
           "%g\n",
           ready, asked, recoveries, refused, caught_up);
    CU_ASSERT_EQUAL(ready, 0);
    CU_ASSERT_EQUAL(recoveries, 0);
    CU_ASSERT_EQUAL(refused, 1);
    CU_ASSERT_EQUAL(caught_up, 0); /* the refused partition is not */
    second_instance_joins(&st, sets, other);
    wt_assert_versions(&st, "a1", 6); /* nothing decided again */
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);
    CU_ASSERT_EQUAL(wt_command_offsets(&st, committed, end, 64), parts);
    CU_ASSERT_EQUAL(committed[pa], 0); /* the refused partition's offset is the operator's */

    CU_ASSERT_TRUE_FATAL(commit_offsets(&st, true, 90));
    wt_start_service(&st, sets, 1);
    wt_wait_ready(&st.cs, 90);
    CU_ASSERT_EQUAL(
        post(&st, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", "deposit-6", &version), 200);
    CU_ASSERT_EQUAL(version, 7);
    wt_assert_versions(&st, "a1", 7);
    wt_stack_stop(&st);
}

static void test_lost_offsets(void)
{
    refused_then_reset(GROUP_DELETED, "offsets were lost");
}

static void test_offsets_moved_back(void)
{
    refused_then_reset(RESET_TO_ZERO, "was moved back");
}

/* A new replica's store never decided on the partitions: the state records tell. */
static void test_moved_back_on_a_new_store(void)
{
    refused_then_reset(RESET_ON_A_NEW_STORE, "was moved back");
}

/* The store's kept offsets belong to the old topic: once the offsets are set to the new
 * topic's end, the service must go on (not take them for a reset behind its own). */
static void test_commands_topic_recreated(void)
{
    refused_then_reset(TOPIC_RECREATED, "offsets were lost");
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"lost group offsets: refused and named, nothing decided again, the reset goes on",
         test_lost_offsets},
        {"group offsets moved back to 0: refused and named, nothing decided again",
         test_offsets_moved_back},
        {"commands topic created again: refused as lost, goes on from the new topic's end",
         test_commands_topic_recreated},
        {"group offsets moved back, the service on an empty store: refused all the same",
         test_moved_back_on_a_new_store},
        {"one partition moved back: refused alone, the others decided, no clients re-created",
         test_one_partition_moved_back},
        {NULL, NULL},
    };
    return es_test_run("0211-lost-group-offsets", cases);
}
