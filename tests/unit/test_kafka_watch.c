/*
 * test_kafka_watch.c — what the cluster watch makes of one group listing
 * (es_kafka_group_state_from_listing(), common/src/kafka_watch.c).
 *
 * The gateway refuses a command at once when its command service's group
 * is EMPTY and writes it otherwise, so the rule decides whether a command
 * nobody will decide gets written.  The case that broke: a look that got no
 * answer (a broker that had just started answers ListGroups with "Coordinator
 * load in progress") turned a group just seen EMPTY into UNKNOWN, and the
 * gateway wrote the command, which then timed out.  librdkafka's mock
 * cluster answers no ListGroups, so the listings here are built by hand,
 * in the shape rd_kafka_list_groups() gives them.
 */
#include "kafka_int.h"
#include "testutil.h"

#include <CUnit/CUnit.h>

#define G "cs-group"

static struct rd_kafka_group_info info(const char *group, int members, rd_kafka_resp_err_t err)
{
    return (struct rd_kafka_group_info){
        .group = (char *)group, .err = err, .state = (char *)"Stable", .member_cnt = members};
}

/* A listing of @p n groups. */
static struct rd_kafka_group_list listing(struct rd_kafka_group_info *groups, int n)
{
    return (struct rd_kafka_group_list){.groups = groups, .group_cnt = n};
}

static es_group_state_t after(es_group_state_t last, rd_kafka_resp_err_t err,
                              const struct rd_kafka_group_list *gl)
{
    return es_kafka_group_state_from_listing(last, err, gl, G);
}

static void test_a_full_answer_decides(void)
{
    struct rd_kafka_group_info none[] = {info("other", 3, 0)};
    struct rd_kafka_group_info idle[] = {info("other", 3, 0), info(G, 0, 0)};
    struct rd_kafka_group_info busy[] = {info(G, 2, 0)};
    struct rd_kafka_group_list not_listed = listing(none, 1), empty = listing(idle, 2),
                               active = listing(busy, 1), nothing = listing(NULL, 0);
    for (es_group_state_t last = ES_GROUP_UNKNOWN; last <= ES_GROUP_ACTIVE; last++) {
        /* another group's members are not this one's */
        CU_ASSERT_EQUAL(after(last, 0, &not_listed), ES_GROUP_EMPTY);
        CU_ASSERT_EQUAL(after(last, 0, &nothing), ES_GROUP_EMPTY);
        CU_ASSERT_EQUAL(after(last, 0, &empty), ES_GROUP_EMPTY);
        CU_ASSERT_EQUAL(after(last, 0, &active), ES_GROUP_ACTIVE);
    }
}

static void test_no_answer_keeps_the_last_one(void)
{
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                        RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT};
    for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
        /* rd_kafka_list_groups() gives no list with these */
        CU_ASSERT_EQUAL(after(ES_GROUP_EMPTY, errs[e], NULL), ES_GROUP_EMPTY);
        CU_ASSERT_EQUAL(after(ES_GROUP_ACTIVE, errs[e], NULL), ES_GROUP_ACTIVE);
        CU_ASSERT_EQUAL(after(ES_GROUP_UNKNOWN, errs[e], NULL), ES_GROUP_UNKNOWN);
    }
}

static void test_a_partial_answer_tells_only_members(void)
{
    /* some broker did not answer: the group may be listed by that one */
    struct rd_kafka_group_info busy[] = {info("other", 1, 0), info(G, 1, 0)};
    struct rd_kafka_group_info idle[] = {info(G, 0, 0)};
    struct rd_kafka_group_list active = listing(busy, 2), empty = listing(idle, 1);
    CU_ASSERT_EQUAL(after(ES_GROUP_EMPTY, RD_KAFKA_RESP_ERR__PARTIAL, &active), ES_GROUP_ACTIVE);
    CU_ASSERT_EQUAL(after(ES_GROUP_ACTIVE, RD_KAFKA_RESP_ERR__PARTIAL, &empty), ES_GROUP_ACTIVE);
    CU_ASSERT_EQUAL(after(ES_GROUP_EMPTY, RD_KAFKA_RESP_ERR__PARTIAL, &empty), ES_GROUP_EMPTY);
    CU_ASSERT_EQUAL(after(ES_GROUP_UNKNOWN, RD_KAFKA_RESP_ERR__PARTIAL, &empty), ES_GROUP_UNKNOWN);
}

static void test_a_group_entry_in_error_says_nothing(void)
{
    /* DescribeGroups failed for this group: librdkafka puts the error in its
     * entry only, and its member count means nothing */
    struct rd_kafka_group_info failed[] = {
        info("other", 0, 0), info(G, 4, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS)};
    struct rd_kafka_group_list gl = listing(failed, 2);
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR__PARTIAL};
    for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
        CU_ASSERT_EQUAL(after(ES_GROUP_EMPTY, errs[e], &gl), ES_GROUP_EMPTY);
        CU_ASSERT_EQUAL(after(ES_GROUP_ACTIVE, errs[e], &gl), ES_GROUP_ACTIVE);
        CU_ASSERT_EQUAL(after(ES_GROUP_UNKNOWN, errs[e], &gl), ES_GROUP_UNKNOWN);
    }
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a full answer decides, whatever was known", test_a_full_answer_decides},
        {"no answer keeps the last one", test_no_answer_keeps_the_last_one},
        {"a partial answer tells only of members", test_a_partial_answer_tells_only_members},
        {"a group entry in error says nothing", test_a_group_entry_in_error_says_nothing},
        {NULL, NULL},
    };
    return es_test_run("kafka_watch", cases);
}
