/*
 * test_handoff.c — a handoff runs its job on a thread of its own while the
 * caller goes on, and the job's results are the caller's after the wait.
 */
#include "escqrs/handoff.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct {
    atomic_bool go_on; /* set by the caller after the give */
    bool saw_go_on;    /* the job saw it: it ran while the caller went on */
    pthread_t ran_on;  /* the thread the job ran on */
    long count;        /* plain, not atomic: the wait must publish it */
} job_t;

static void waiting_job(void *arg)
{
    job_t *j = arg;
    j->ran_on = pthread_self();
    struct timespec nap = {0, 1000000};
    for (int i = 0; i < 5000 && !atomic_load(&j->go_on); i++)
        nanosleep(&nap, NULL);
    j->saw_go_on = atomic_load(&j->go_on);
}

static void counting_job(void *arg)
{
    ((job_t *)arg)->count++;
}

static void test_the_job_runs_beside_the_caller(void)
{
    es_handoff_t *h = es_handoff_new();
    job_t j = {0};
    CU_ASSERT_TRUE_FATAL(es_handoff_give(h, waiting_job, &j));
    atomic_store(&j.go_on, true); /* a job run in line would have given up waiting first */
    es_handoff_wait(h);
    CU_ASSERT_TRUE(j.saw_go_on);
    CU_ASSERT_FALSE(pthread_equal(j.ran_on, pthread_self()));
    es_handoff_destroy(h);
}

static void test_jobs_one_after_another(void)
{
    es_handoff_t *h = es_handoff_new();
    job_t j = {0};
    pthread_t first = 0;
    for (int i = 0; i < 1000; i++) {
        CU_ASSERT_TRUE_FATAL(es_handoff_give(h, counting_job, &j));
        es_handoff_wait(h);
        CU_ASSERT_EQUAL_FATAL(j.count, i + 1); /* every result seen, none lost */
    }
    /* one thread for them all */
    j.go_on = true;
    CU_ASSERT_TRUE_FATAL(es_handoff_give(h, waiting_job, &j));
    es_handoff_wait(h);
    first = j.ran_on;
    CU_ASSERT_TRUE_FATAL(es_handoff_give(h, waiting_job, &j));
    es_handoff_wait(h);
    CU_ASSERT_TRUE(pthread_equal(first, j.ran_on));
    es_handoff_destroy(h);
}

static void test_idle_handoffs(void)
{
    es_handoff_t *h = es_handoff_new();
    es_handoff_wait(h); /* nothing in flight, no thread: at once */
    es_handoff_destroy(h);
    es_handoff_destroy(NULL);
    h = es_handoff_new();
    job_t j = {0};
    CU_ASSERT_TRUE_FATAL(es_handoff_give(h, counting_job, &j));
    es_handoff_destroy(h); /* waits for the job in flight */
    CU_ASSERT_EQUAL(j.count, 1);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"the job runs beside the caller", test_the_job_runs_beside_the_caller},
        {"jobs one after another, on one thread", test_jobs_one_after_another},
        {"idle handoffs", test_idle_handoffs},
        {NULL, NULL},
    };
    return es_test_run("handoff", cases);
}
