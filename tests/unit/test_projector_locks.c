/*
 * test_projector_locks.c — the projector's lock-ownership assertions (lock.h).
 *
 * projector.h says which lock each runner entry point expects; lock.h makes
 * that executable.  These tests check the owner bookkeeping (held by this
 * thread, not by another one, dropped while waiting on a condition), then
 * make deliberately wrong calls in child processes: entering a function
 * without the lock it needs, or with a lock it is about to take (a
 * self-deadlock).  Each child must die of SIGABRT with a message naming the
 * lock and the function; the same calls made right must not abort.  And a
 * writer must get a read-write lock that readers never leave free (queries
 * that come without a pause must not keep a rebuild's swap waiting).
 *
 * Linked with escqrs_projector_checked: the runtime with lock checks on in
 * every build type, so this test checks in a release build too.
 */
#include "projector.h"
#include "testutil.h"

#include "escqrs/util.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const es_proj_def_t def = {.name = "locktest"};
static int64_t applied0[1] = {5};

/* A runner with its locks and one partition, and nothing else (no broker, no store). */
static void runner_init(pj_runner_t *r)
{
    memset(r, 0, sizeof(*r));
    r->def = &def;
    r->ntopics = 1;
    r->nparts[0] = 1;
    r->applied[0] = applied0;
    pj_rwlock_init(&r->lock);
    pj_mutex_init(&r->mu);
    pthread_cond_init(&r->cv, NULL);
}

/* ------------------------------------------------------- bookkeeping */

typedef struct {
    pj_mutex_t *m;
    pj_rwlock_t *l;
    bool held, free_here;
} probe_t;

static void *probe_thread(void *arg)
{
    probe_t *p = arg;
    p->held = p->m ? pj_mutex_held(p->m) : pj_rwlock_held(p->l);
    p->free_here = p->m ? pj_mutex_free_here(p->m) : pj_rwlock_free_here(p->l);
    return NULL;
}

/* What another thread sees of @p m or @p l. */
static probe_t probe_elsewhere(pj_mutex_t *m, pj_rwlock_t *l)
{
    probe_t p = {.m = m, .l = l};
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, probe_thread, &p) == 0);
    pthread_join(th, NULL);
    return p;
}

static void test_mutex_owner(void)
{
    pj_mutex_t m;
    CU_ASSERT_TRUE(pj_lock_checks_on());
    pj_mutex_init(&m);
    CU_ASSERT_FALSE(pj_mutex_held(&m));
    pj_mutex_lock(&m);
    CU_ASSERT_TRUE(pj_mutex_held(&m));
    CU_ASSERT_FALSE(pj_mutex_free_here(&m));
    probe_t p = probe_elsewhere(&m, NULL); /* held, but not by that thread */
    CU_ASSERT_FALSE(p.held);
    CU_ASSERT_TRUE(p.free_here);
    pj_mutex_unlock(&m);
    CU_ASSERT_FALSE(pj_mutex_held(&m));
    pj_mutex_destroy(&m);
}

static void test_rwlock_owner(void)
{
    pj_rwlock_t l;
    pj_rwlock_init(&l);
    for (int writing = 0; writing < 2; writing++) {
        CU_ASSERT_TRUE(pj_rwlock_free_here(&l));
        if (writing)
            pj_rwlock_wrlock(&l);
        else
            pj_rwlock_rdlock(&l);
        CU_ASSERT_TRUE(pj_rwlock_held(&l));
        CU_ASSERT_EQUAL(pj_rwlock_write_held(&l), writing);
        CU_ASSERT_FALSE(probe_elsewhere(NULL, &l).held); /* held, but not by that thread */
        pj_rwlock_unlock(&l);
    }
    CU_ASSERT_FALSE(pj_rwlock_held(&l));
    pj_rwlock_destroy(&l);
}

typedef struct {
    pj_mutex_t m;
    pthread_cond_t cv;
    bool in, held_by_helper;
} waiter_t;

/* Takes the mutex while the main thread waits on the condition (the wait released it). */
static void *helper_thread(void *arg)
{
    waiter_t *w = arg;
    pj_mutex_lock(&w->m);
    w->held_by_helper = pj_mutex_held(&w->m);
    w->in = true;
    pthread_cond_signal(&w->cv);
    pj_mutex_unlock(&w->m);
    return NULL;
}

static void test_cond_wait_owner(void)
{
    waiter_t w = {.in = false};
    pthread_t th;
    pj_mutex_init(&w.m);
    pthread_cond_init(&w.cv, NULL);
    pj_mutex_lock(&w.m);
    CU_ASSERT_FATAL(pthread_create(&th, NULL, helper_thread, &w) == 0);
    struct timespec dl = es_deadline_in_ms(5000);
    while (!w.in && pj_cond_timedwait(&w.cv, &w.m, &dl) == 0)
        ;
    CU_ASSERT_TRUE(w.in);
    CU_ASSERT_TRUE(w.held_by_helper);
    CU_ASSERT_TRUE(pj_mutex_held(&w.m)); /* ours again after the wait */
    pj_mutex_unlock(&w.m);
    pthread_join(th, NULL);
    pthread_cond_destroy(&w.cv);
    pj_mutex_destroy(&w.m);
}

/* ------------------------------------------------------ writer first */

#define READERS 4

typedef struct {
    pj_rwlock_t l;
    atomic_bool stop;
} readers_t;

/* Read-locks for 2 ms at a time, again and again: with READERS of them, never all out. */
static void *reader_thread(void *arg)
{
    readers_t *rs = arg;
    while (!atomic_load(&rs->stop)) {
        pj_rwlock_rdlock(&rs->l);
        usleep(2000);
        pj_rwlock_unlock(&rs->l);
    }
    return NULL;
}

static void *stopper_thread(void *arg)
{
    readers_t *rs = arg; /* a writer starved 5 s is starved: the readers stop, and it fails */
    for (int i = 0; i < 500 && !atomic_load(&rs->stop); i++)
        usleep(10 * 1000);
    atomic_store(&rs->stop, true);
    return NULL;
}

static void test_writer_not_starved(void)
{
    readers_t rs;
    pthread_t th[READERS], stopper;
    pj_rwlock_init(&rs.l);
    atomic_init(&rs.stop, false);
    for (int i = 0; i < READERS; i++) {
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, reader_thread, &rs) == 0);
        usleep(500); /* staggered: their read locks overlap */
    }
    CU_ASSERT_FATAL(pthread_create(&stopper, NULL, stopper_thread, &rs) == 0);
    usleep(50 * 1000);
    int64_t t0 = es_mono_ms();
    pj_rwlock_wrlock(&rs.l);
    int64_t waited = es_mono_ms() - t0;
    bool readers_on = !atomic_load(&rs.stop);
    pj_rwlock_unlock(&rs.l);
    fprintf(stderr, "\n    the writer waited %lld ms among %d readers", (long long)waited, READERS);
    CU_ASSERT_TRUE(readers_on); /* it got the lock while the readers still came */
    atomic_store(&rs.stop, true);
    for (int i = 0; i < READERS; i++)
        pthread_join(th[i], NULL);
    pthread_join(stopper, NULL);
    pj_rwlock_destroy(&rs.l);
}

/* ------------------------------------------------------ wrong calls */

/*
 * Run @p call in a child with its stderr captured into @p out; returns the
 * child's wait status.
 */
static int in_child(void (*call)(pj_runner_t *), char *out, size_t outsz)
{
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    pid_t pid = es_test_fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        pj_runner_t r;
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        runner_init(&r);
        call(&r);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < outsz && (got = read(fds[0], out + n, outsz - n - 1)) > 0)
        n += (size_t)got;
    out[n] = '\0';
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    es_test_child_reaped(pid);
    return st;
}

/* @p call must abort with a message containing @p lock and @p func. */
static void expect_abort(const char *what, void (*call)(pj_runner_t *), const char *lock,
                         const char *func)
{
    char err[2048];
    int st = in_child(call, err, sizeof(err));
    fprintf(stderr, "\n    %s: %s", what, err[0] ? err : "(no message)\n");
    CU_ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "lock assertion failed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, lock));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, func));
}

/* @p call must end normally. */
static void expect_no_abort(void (*call)(pj_runner_t *))
{
    char err[2048];
    int st = in_child(call, err, sizeof(err));
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ES_ASSERT_STR_EQ(err, "");
}

static void find_without_lock(pj_runner_t *r)
{
    pj_frozen_find(r, "audit"); /* the frozen array is guarded by r->lock */
}

static void find_under_read_lock(pj_runner_t *r)
{
    pj_rwlock_rdlock(&r->lock);
    if (pj_frozen_find(r, "audit"))
        _exit(3);
    pj_rwlock_unlock(&r->lock);
}

static void live_without_lock(pj_runner_t *r)
{
    pj_runner_live(r); /* the store could be swapped and closed under us */
}

static void live_under_read_lock(pj_runner_t *r)
{
    pj_rwlock_rdlock(&r->lock);
    if (pj_runner_live(r))
        _exit(3);
    pj_rwlock_unlock(&r->lock);
}

static void wait_holding_mu(pj_runner_t *r)
{
    pj_mutex_lock(&r->mu);
    pj_wait_applied(r, 0, 0, 1, 10); /* would deadlock on r->mu */
}

static void wait_right(pj_runner_t *r)
{
    if (pj_wait_applied(r, 0, 0, 1, 10) != ES_ERR_OK) /* offset 1 < applied 5 */
        _exit(3);
}

static void rebuild_holding_mu(pj_runner_t *r)
{
    pj_mutex_lock(&r->mu);
    pj_rebuild_start(r, NULL, 0); /* would deadlock on r->mu */
}

static void freeze_while_reading(pj_runner_t *r)
{
    pj_rwlock_rdlock(&r->lock); /* a query rendering: its write lock would never come */
    pj_freeze_start(r, "audit", 0, NULL, 0);
}

static void set_state_holding_mu(pj_runner_t *r)
{
    pj_mutex_lock(&r->mu);
    pj_runner_set_state(r, PJ_HALTED, "%s", "store: broken");
}

static void read_lock_twice(pj_runner_t *r)
{
    pj_rwlock_rdlock(&r->lock);
    pj_rwlock_rdlock(&r->lock); /* a writer waiting in between would deadlock it */
}

static void unlock_not_held(pj_runner_t *r)
{
    pj_mutex_unlock(&r->mu);
}

static void test_wrong_calls_abort(void)
{
    expect_abort("pj_frozen_find without the lock", find_without_lock, "&r->lock",
                 "pj_frozen_find()");
    expect_abort("pj_runner_live without the lock", live_without_lock, "&r->lock",
                 "pj_runner_live()");
    expect_abort("pj_wait_applied holding mu", wait_holding_mu, "&r->mu", "pj_wait_applied()");
    expect_abort("pj_rebuild_start holding mu", rebuild_holding_mu, "&r->mu", "pj_rebuild_start()");
    expect_abort("pj_freeze_start holding the read lock", freeze_while_reading, "&r->lock",
                 "pj_freeze_start()");
    expect_abort("pj_runner_set_state holding mu", set_state_holding_mu, "&r->mu",
                 "pj_runner_set_state()");
    expect_abort("unlocking a mutex not held", unlock_not_held, "mutex", "pj_mutex_unlock()");
    expect_abort("read-locking a lock twice", read_lock_twice, "rwlock", "pj_rwlock_rdlock()");
}

static void test_right_calls_pass(void)
{
    expect_no_abort(find_under_read_lock);
    expect_no_abort(live_under_read_lock);
    expect_no_abort(wait_right);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"mutex owner", test_mutex_owner},
        {"rwlock owner", test_rwlock_owner},
        {"cond wait keeps the owner", test_cond_wait_owner},
        {"wrong calls abort", test_wrong_calls_abort},
        {"right calls pass", test_right_calls_pass},
        {"a writer is not starved by readers", test_writer_not_starved},
        {NULL, NULL}};
    return es_test_run("projector_locks", cases);
}
