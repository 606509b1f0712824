/*
 * 0213-start-up-refusals.c — topics a command service cannot work with stop it
 * at start-up with exit 2 and a reason naming the topics, on the real broker,
 * instead of being retried for ever as a broker outage would be.
 *
 * The command service sends an event, its state and its outcome to the
 * partition number of its command, so `<agg>.commands`, `<agg>.events` and
 * `<agg>.state` must have one partition count (docs/write-side.md).  Each case
 * creates the aggregate's topics itself, one of them with a count of its own,
 * then starts the service:
 * - with topics.create=false: commands or state differing from events, each
 *   refused naming both topics and counts; no topics at all, refused naming
 *   the remedy (`escqrs topics create`);
 * - with topics.create=true on topics that exist with another count: refused
 *   naming the topic, both counts (the service creates nothing of its own then).
 * A case whose counts agree starts and answers /readyz 200, so the refusals are
 * the counts' and not the test's set-up.
 */
#include "escqrs/kafka.h"
#include "readtest.h"
#include "testutil.h"
#include "writetest.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 30000

/* Create the topics of @p st's aggregate, kind k with parts[k] partitions (0: not made). */
static void make_topics(const wt_stack_t *st, const int parts[ES_TOPIC_STATE + 1])
{
    static const es_topic_kind_t kinds[] = {ES_TOPIC_COMMANDS, ES_TOPIC_EVENTS, ES_TOPIC_RESULTS,
                                            ES_TOPIC_STATE};
    char agg[300], err[1024];
    es_topic_spec_t specs[4];
    size_t n = 0;
    es_conf_t *conf = rt_conf(1);
    snprintf(agg, sizeof(agg), "%s%s", st->prefix, st->agg);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (!parts[kinds[i]])
            continue;
        char name[400];
        es_topic_name(agg, kinds[i], NULL, name, sizeof(name));
        es_topic_spec_for(conf, kinds[i], name, &specs[n]);
        specs[n++].partitions = parts[kinds[i]];
    }
    es_admin_t *adm = n ? es_admin_new(conf, err, sizeof(err)) : NULL;
    if (!n) {
        es_conf_destroy(conf);
        return;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(adm);
    CU_ASSERT_EQUAL(es_admin_create_topics(adm, specs, n, TIMEOUT_MS, err, sizeof(err)), ES_ERR_OK);
    es_admin_destroy(adm);
    es_conf_destroy(conf);
}

/*
 * Start the service on topics made with @p parts and topics.create=@p create; it
 * must exit 2 within 60 s with a log line holding @p a and @p b.
 */
static void refused(const int parts[ES_TOPIC_STATE + 1], bool create, const char *a, const char *b)
{
    wt_stack_t st;
    wt_stack_init(&st, "cart");
    make_topics(&st, parts);
    const char *sets[] = {create ? "topics.create=true" : "topics.create=false"};
    wt_start_service(&st, sets, 1);
    int status = -1;
    pid_t got = 0;
    for (int i = 0; i < 600 && got == 0; i++) { /* 60 s: a retried error would never end */
        got = waitpid(st.cs.pid, &status, WNOHANG);
        if (got == 0)
            usleep(100 * 1000);
    }
    if (got != st.cs.pid) {
        CU_FAIL("the service did not stop within 60 s");
        wt_kill9(&st.cs);
        return;
    }
    es_test_child_reaped(st.cs.pid);
    st.cs.pid = 0;
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    char line[2048] = "";
    CU_ASSERT_TRUE(wt_log_line(st.cs.log, a, b, line, sizeof(line)));
    printf("\n  exit %d: %.300s", WIFEXITED(status) ? WEXITSTATUS(status) : -1, line);
}

static void test_counts_differ(void)
{
    /* indexed by es_topic_kind_t: commands, events, results, dlq, state */
    const int commands[] = {3, 2, 2, 0, 2}, state[] = {2, 2, 2, 0, 3};
    refused(commands, false, "cart.commands has 3 partitions but", "cart.events has 2");
    refused(state, false, "cart.state has 3 partitions but", "cart.events has 2");
}

static void test_no_topics(void)
{
    const int none[] = {0, 0, 0, 0, 0};
    refused(none, false, "cart missing: create them", "(escqrs topics create ");
}

static void test_create_finds_other_count(void)
{
    const int events[] = {0, 5, 0, 0, 0};
    refused(events, true, "cart.events exists with 5 partitions, not", "same partition count");
}

/* The same set-up with counts that agree: the service starts. */
static void test_counts_agree(void)
{
    const int agree[] = {2, 2, 3, 0, 2}; /* the outcomes' topic may differ */
    wt_stack_t st;
    wt_stack_init(&st, "cart");
    make_topics(&st, agree);
    const char *sets[] = {"topics.create=false"};
    wt_start_service(&st, sets, 1);
    wt_wait_ready(&st.cs, 60);
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"partition counts that differ: exit 2 naming both", test_counts_differ},
        {"no topics and topics.create=false: exit 2 naming the remedy", test_no_topics},
        {"topics.create=true on another count: exit 2", test_create_finds_other_count},
        {"partition counts that agree: ready", test_counts_agree},
        {NULL, NULL},
    };
    return es_test_run("start_up_refusals", cases);
}
