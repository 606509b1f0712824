/*
 * test_handoff.c — a handoff runs its job on a thread of its own while the
 * caller goes on, and the job's results are the caller's after the wait.
 * When no thread can be had, give says so and runs nothing, so its caller
 * runs the job in line (the command service's offsets, the projector's store
 * write); the next give tries again.  The test's own pthread_create refuses
 * threads when told to.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include "escqrs/handoff.h"
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct {
    atomic_bool go_on; /* set by the caller after the give */
    bool saw_go_on;    /* the job saw it: it ran while the caller went on */
    pthread_t ran_on;  /* the thread the job ran on */
    long count;        /* plain, not atomic: the wait must publish it */
} job_t;

/* pthread_create, refused while `refuse_threads` is set (EAGAIN, as at a limit).  This
 * program's definition comes before libc's for libescqrs too: it is exported
 * (ENABLE_EXPORTS, tests/CMakeLists.txt) and an executable is first in the lookup. */
typedef int create_fn(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static atomic_int refuse_threads, threads_refused;

__attribute__((visibility("default"))) int pthread_create(pthread_t *restrict t,
                                                          const pthread_attr_t *restrict a,
                                                          void *(*fn)(void *), void *restrict arg)
{
    if (atomic_load(&refuse_threads)) {
        atomic_fetch_add(&threads_refused, 1);
        return EAGAIN;
    }
    create_fn *next = (create_fn *)dlsym(RTLD_NEXT, "pthread_create");
    return next ? next(t, a, fn, arg) : ENOSYS;
}

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

static void test_no_thread_to_be_had(void)
{
    es_handoff_t *h = es_handoff_new();
    job_t j = {0};
    atomic_store(&refuse_threads, 1);
    CU_ASSERT_FALSE(es_handoff_give(h, counting_job, &j)); /* the caller runs it in line */
    CU_ASSERT_EQUAL(atomic_load(&threads_refused), 1);
    es_handoff_wait(h); /* nothing in flight: at once */
    CU_ASSERT_EQUAL(j.count, 0);
    CU_ASSERT_FALSE(es_handoff_give(h, counting_job, &j)); /* asked again, refused again */
    CU_ASSERT_EQUAL(atomic_load(&threads_refused), 2);
    atomic_store(&refuse_threads, 0);
    CU_ASSERT_TRUE_FATAL(es_handoff_give(h, waiting_job, &j)); /* a thread now */
    atomic_store(&j.go_on, true);
    es_handoff_wait(h);
    CU_ASSERT_TRUE(j.saw_go_on);
    CU_ASSERT_FALSE(pthread_equal(j.ran_on, pthread_self()));
    es_handoff_destroy(h);
    h = es_handoff_new(); /* never started: destroyed without a join */
    atomic_store(&refuse_threads, 1);
    CU_ASSERT_FALSE(es_handoff_give(h, counting_job, &j));
    atomic_store(&refuse_threads, 0);
    es_handoff_destroy(h);
    CU_ASSERT_EQUAL(j.count, 0);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"the job runs beside the caller", test_the_job_runs_beside_the_caller},
        {"jobs one after another, on one thread", test_jobs_one_after_another},
        {"idle handoffs", test_idle_handoffs},
        {"no thread to be had: nothing runs, the next give tries again", test_no_thread_to_be_had},
        {NULL, NULL},
    };
    return es_test_run("handoff", cases);
}
