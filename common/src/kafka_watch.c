/*
 * kafka_watch.c — a daemon's view of the cluster for /readyz (see kafka.h).
 *
 * Why a thread with its own handle: readiness must tell the truth while the
 * clients doing the work are stuck (a transaction commit retried against a
 * dead broker, a consumer inside a rebalance callback), and a readiness
 * probe must answer at once.  Every `health.interval.ms` the thread sends a
 * metadata request for no topic (the cheapest request every broker answers)
 * and, when asked to watch groups, DescribeConsumerGroups, and for topics,
 * one metadata request each (their partition counts); readers only read
 * the last results under a mutex.  A broker counts as gone when none
 * answered for `health.broker.timeout.ms`, so one slow answer is not an
 * outage.
 */
#include "kafka_int.h"
#include "escqrs/log.h"
#include "escqrs/util.h"
#include "escqrs/mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Shortest wait for the cluster's answer in a round, however short the interval. */
#define WATCH_MIN_ANSWER_MS 1000
/* Used when the configuration gives no positive value (the tables' defaults). */
#define WATCH_DEFAULT_INTERVAL_MS       2000
#define WATCH_DEFAULT_BROKER_TIMEOUT_MS 10000

const es_conf_def_t es_kafka_watch_conf_defs[] = {
    {.name = "health.interval.ms",
     .type = ES_CONF_INT,
     .defval = "2000",
     .min = 100,
     .max = 60000,
     .desc = "How often the daemon asks the cluster whether a broker answers (and, for the "
             "gateway, whether each aggregate's command service group has members)"},
    {.name = "health.broker.timeout.ms",
     .type = ES_CONF_INT,
     .defval = "10000",
     .min = 500,
     .max = 600000,
     .desc = "/readyz answers 503 once no broker has answered for this long"},
    {.name = NULL},
};

struct es_kafka_watch_s {
    rd_kafka_t *rk;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, wake, asking; /* asking: a round is under way */
    unsigned long rounds;    /* completed rounds, for es_kafka_watch_refresh() */
    pthread_cond_t done_cv;
    int interval_ms, broker_timeout_ms;
    int64_t started_ms, last_ok_ms; /* monotonic */
    char last_error[256];
    char **groups;
    es_group_state_t *states;
    size_t ngroups;
    char **topics;    /* watched topics (es_kafka_watch_topic) */
    int *want, *have; /* the counts the program works with; the cluster's (0: unknown) */
    size_t ntopics;
};

static void count_changed(char *why, size_t whysz, const char *topic, int have, int want)
{
    snprintf(why, whysz,
             "%s has %d partitions, %d when this process started: partitions were added "
             "(docs/operations.md, \"Never add partitions\")",
             topic, have, want);
}

/* The partition count of each watched topic (one metadata request each). */
static void watch_topics(es_kafka_watch_t *w, int timeout_ms)
{
    for (size_t k = 0;; k++) {
        char topic[512];
        pthread_mutex_lock(&w->mu); /* topics may be added between requests */
        bool more = k < w->ntopics;
        if (more)
            snprintf(topic, sizeof(topic), "%s", w->topics[k]);
        pthread_mutex_unlock(&w->mu);
        if (!more)
            return;
        char err[256];
        int cnt = 0;
        if (es_kafka_topic_partitions(w->rk, topic, timeout_ms, &cnt, err, sizeof(err)))
            cnt = 0;
        pthread_mutex_lock(&w->mu);
        if (cnt > 0 && cnt != w->have[k] && cnt != w->want[k]) {
            char why[700];
            count_changed(why, sizeof(why), topic, cnt, w->want[k]);
            es_log_error("kafka", "%s", why);
        }
        if (cnt > 0)
            w->have[k] = cnt; /* a failed look keeps the last answer */
        pthread_mutex_unlock(&w->mu);
    }
}

/*
 * What one listing says of @p group, given what was known before (@p last).
 * A listing is an answer only when every broker gave one: a group that no
 * answer lists with a member is then EMPTY (never had one, or all left).  A
 * member seen in a partial listing (__PARTIAL: some broker did not answer)
 * is a fact, so ACTIVE.  Anything else (the coordinator still loading its
 * groups after a broker start, a timeout, a DescribeGroups error for the
 * group, which librdkafka leaves in its entry only) says nothing new: @p last
 * stands, UNKNOWN only before the first answer.  Why not UNKNOWN on every failed
 * look: the gateway writes a command whose group is UNKNOWN, so a gateway
 * that had just seen no command service would then write commands nobody
 * decides (integration test 0201 on a broker that had just started did).
 */
es_group_state_t es_kafka_group_state_from_listing(es_group_state_t last, rd_kafka_resp_err_t err,
                                                   const struct rd_kafka_group_list *gl,
                                                   const char *group)
{
    bool described = true; /* no entry of the group has an error of its own */
    for (int i = 0; gl && i < gl->group_cnt; i++) {
        const struct rd_kafka_group_info *gi = &gl->groups[i];
        if (strcmp(gi->group, group))
            continue;
        if (!gi->err && gi->member_cnt > 0)
            return ES_GROUP_ACTIVE;
        described = described && !gi->err;
    }
    /* Empty, Dead (never had a member) or not listed: nobody consumes */
    return !err && gl && described ? ES_GROUP_EMPTY : last;
}

/*
 * The state of each watched group, with the classic group listing
 * (rd_kafka_list_groups: ListGroups and DescribeGroups), not the Admin API's
 * DescribeConsumerGroups: librdkafka 2.0.2 (and later releases, issues #4605
 * and #3663) aborts on an assertion (rd_kafka_enq_once_del_source_return)
 * when a group Admin request meets a broker restart — fault test 0902 saw it.
 */
static void watch_groups(es_kafka_watch_t *w, int timeout_ms)
{
    for (size_t k = 0; k < w->ngroups; k++) {
        const struct rd_kafka_group_list *gl = NULL;
        rd_kafka_resp_err_t err = rd_kafka_list_groups(w->rk, w->groups[k], &gl, timeout_ms);
        pthread_mutex_lock(&w->mu);
        w->states[k] = es_kafka_group_state_from_listing(w->states[k], err, gl, w->groups[k]);
        pthread_mutex_unlock(&w->mu);
        if (gl)
            rd_kafka_group_list_destroy(gl);
    }
}

static void *watch_main(void *arg)
{
    es_kafka_watch_t *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        w->asking = true;
        pthread_mutex_unlock(&w->mu);
        const struct rd_kafka_metadata *md = NULL;
        int timeout = w->interval_ms < WATCH_MIN_ANSWER_MS ? WATCH_MIN_ANSWER_MS : w->interval_ms;
        rd_kafka_resp_err_t err = rd_kafka_metadata(w->rk, 0, NULL, &md, timeout);
        bool ok = !err && md && md->broker_cnt > 0;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (ok && w->ngroups)
            watch_groups(w, timeout);
        if (ok)
            watch_topics(w, timeout);
        pthread_mutex_lock(&w->mu);
        if (ok) {
            if (w->last_ok_ms && es_mono_ms() - w->last_ok_ms > w->broker_timeout_ms)
                es_log_info("kafka", "a broker answers again");
            w->last_ok_ms = es_mono_ms();
        } else {
            /* the groups keep their last known states: while no broker
             * answers, es_kafka_watch_broker_ok() speaks for them */
            snprintf(w->last_error, sizeof(w->last_error), "%s",
                     err ? rd_kafka_err2str(err) : "no broker in the metadata");
        }
        struct timespec dl = es_deadline_in_ms(w->interval_ms);
        w->rounds++;
        w->asking = false;
        pthread_cond_broadcast(&w->done_cv);
        while (!w->stop && !w->wake && pthread_cond_timedwait(&w->cv, &w->mu, &dl) == 0)
            ;
        w->wake = false;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

es_kafka_watch_t *es_kafka_watch_start(const es_conf_t *conf, const char *const *groups,
                                       size_t ngroups, char *errstr, size_t errstr_size)
{
    es_kafka_watch_t *w = es_calloc(1, sizeof(*w));
    /* A watch that cannot reach the broker must not flood the log (quiet):
     * the daemon's own clients report the outage already. */
    es_kafka_handle_opts_t ho = {.quiet = true};
    if (!(w->rk = es_kafka_handle_new(conf, ES_CONF_ROLE_ANY, RD_KAFKA_PRODUCER, &ho, errstr,
                                      errstr_size)))
        goto fail;
    w->interval_ms = (int)es_conf_get_int(conf, "health.interval.ms");
    w->broker_timeout_ms = (int)es_conf_get_int(conf, "health.broker.timeout.ms");
    if (w->interval_ms <= 0)
        w->interval_ms = WATCH_DEFAULT_INTERVAL_MS;
    if (w->broker_timeout_ms <= 0)
        w->broker_timeout_ms = WATCH_DEFAULT_BROKER_TIMEOUT_MS;
    w->started_ms = es_mono_ms();
    snprintf(w->last_error, sizeof(w->last_error), "no answer yet");
    w->ngroups = ngroups;
    w->groups = es_calloc(ngroups + 1, sizeof(*w->groups));
    w->states = es_calloc(ngroups + 1, sizeof(*w->states));
    for (size_t i = 0; i < ngroups; i++)
        w->groups[i] = es_strdup(groups[i]);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->done_cv, NULL);
    if (pthread_create(&w->thr, NULL, watch_main, w)) {
        snprintf(errstr, errstr_size, "cannot start the cluster watch thread");
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        pthread_cond_destroy(&w->done_cv);
        goto fail;
    }
    return w;
fail:
    if (w->rk)
        rd_kafka_destroy(w->rk);
    for (size_t i = 0; w->groups && i < w->ngroups; i++)
        free(w->groups[i]);
    free(w->groups);
    free(w->states);
    free(w);
    return NULL;
}

bool es_kafka_watch_broker_ok(es_kafka_watch_t *w, char *why, size_t whysz)
{
    pthread_mutex_lock(&w->mu);
    int64_t now = es_mono_ms();
    int64_t since = w->last_ok_ms ? w->last_ok_ms : w->started_ms;
    bool ok = w->last_ok_ms ? now - since <= w->broker_timeout_ms : false;
    if (!ok)
        snprintf(why, whysz, "no Kafka broker answered for %lld ms (%s)", (long long)(now - since),
                 w->last_error);
    pthread_mutex_unlock(&w->mu);
    return ok;
}

void es_kafka_watch_refresh(es_kafka_watch_t *w, int timeout_ms)
{
    struct timespec dl = es_deadline_in_ms(timeout_ms);
    pthread_mutex_lock(&w->mu);
    /* The round under way may have asked before now: wait for the one after it. */
    unsigned long want = w->rounds + (w->asking ? 2 : 1);
    w->wake = true;
    pthread_cond_signal(&w->cv);
    while (w->rounds < want && !w->stop && pthread_cond_timedwait(&w->done_cv, &w->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&w->mu);
}

es_group_state_t es_kafka_watch_group(es_kafka_watch_t *w, size_t i)
{
    pthread_mutex_lock(&w->mu);
    es_group_state_t st = i < w->ngroups ? w->states[i] : ES_GROUP_UNKNOWN;
    pthread_mutex_unlock(&w->mu);
    return st;
}

void es_kafka_watch_topic(es_kafka_watch_t *w, const char *topic, int count)
{
    pthread_mutex_lock(&w->mu);
    size_t i = 0;
    while (i < w->ntopics && strcmp(w->topics[i], topic))
        i++;
    if (i == w->ntopics) {
        w->topics = es_realloc(w->topics, (i + 1) * sizeof(*w->topics));
        w->want = es_realloc(w->want, (i + 1) * sizeof(*w->want));
        w->have = es_realloc(w->have, (i + 1) * sizeof(*w->have));
        w->topics[i] = es_strdup(topic);
        w->want[i] = count;
        w->have[i] = 0;
        w->ntopics++;
    }
    pthread_mutex_unlock(&w->mu);
}

int es_kafka_watch_topic_partitions(es_kafka_watch_t *w, const char *topic)
{
    int cnt = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->ntopics && !cnt; i++)
        if (!strcmp(w->topics[i], topic))
            cnt = w->have[i];
    pthread_mutex_unlock(&w->mu);
    return cnt;
}

bool es_kafka_watch_topics_ok(es_kafka_watch_t *w, char *why, size_t whysz)
{
    bool ok = true;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->ntopics && ok; i++) {
        if (w->have[i] && w->have[i] != w->want[i]) {
            ok = false;
            count_changed(why, whysz, w->topics[i], w->have[i], w->want[i]);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return ok;
}

void es_kafka_watch_stop(es_kafka_watch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thr, NULL);
    rd_kafka_destroy(w->rk);
    for (size_t i = 0; i < w->ngroups; i++)
        free(w->groups[i]);
    free(w->groups);
    free(w->states);
    for (size_t i = 0; i < w->ntopics; i++)
        free(w->topics[i]);
    free(w->topics);
    free(w->want);
    free(w->have);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->done_cv);
    free(w);
}
