/*
 * lock.c — pthread locks that record who holds them (see lock.h).
 *
 * Mutex and writer ownership are one atomic word per lock, set after the
 * lock is taken and cleared before it is released, so only the holder ever
 * finds its own tag there.  Readers are many, so a reader is recorded on its
 * own side: a short thread-local list of the read-write locks this thread
 * reads under (a projector thread holds at most two at once; the list
 * overflowing is itself a lock error).  pthread_cond_timedwait() releases
 * and re-takes the mutex, so the owner is cleared around the wait.
 *
 * Releasing a lock this thread does not hold aborts in every build: that is
 * undefined behaviour for pthreads, and the bookkeeping is there anyway.  So
 * does read-locking a read-write lock this thread holds already: the locks
 * prefer a waiting writer (pj_rwlock_init), which makes that a deadlock.
 */
#include "lock.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_READ_HELD 8

static _Thread_local char self_tag;
static _Thread_local const pj_rwlock_t *read_held[MAX_READ_HELD];
static _Thread_local size_t nread_held;

static uintptr_t self(void)
{
    return (uintptr_t)&self_tag;
}

static bool reading(const pj_rwlock_t *l)
{
    for (size_t i = 0; i < nread_held; i++) {
        if (read_held[i] == l)
            return true;
    }
    return false;
}

void pj_lock_fail(const char *expect, const char *lock, const char *func, const char *file,
                  int line)
{
    fprintf(stderr, "lock assertion failed: %s %s in %s() at %s:%d\n", lock, expect, func, file,
            line);
    abort();
}

/* Clear owner word @p w of a lock this thread must hold. */
static void disown(atomic_uintptr_t *w, const char *what, const char *func)
{
    if (atomic_load(w) != self())
        pj_lock_fail(what, "mutex", func, __FILE__, __LINE__);
    atomic_store(w, 0);
}

bool pj_lock_checks_on(void)
{
#ifdef PJ_LOCK_CHECKS
    return true;
#else
    return false;
#endif
}

void pj_mutex_init(pj_mutex_t *m)
{
    pthread_mutex_init(&m->m, NULL);
    atomic_init(&m->owner, 0);
}

void pj_mutex_destroy(pj_mutex_t *m)
{
    pthread_mutex_destroy(&m->m);
}

void pj_mutex_lock(pj_mutex_t *m)
{
    pthread_mutex_lock(&m->m);
    atomic_store(&m->owner, self());
}

void pj_mutex_unlock(pj_mutex_t *m)
{
    disown(&m->owner, "must be held by the thread unlocking it", __func__);
    pthread_mutex_unlock(&m->m);
}

int pj_cond_timedwait(pthread_cond_t *cv, pj_mutex_t *m, const struct timespec *deadline)
{
    disown(&m->owner, "must be held to wait on its condition", __func__);
    int rc = pthread_cond_timedwait(cv, &m->m, deadline);
    atomic_store(&m->owner, self());
    return rc;
}

void pj_rwlock_init(pj_rwlock_t *l)
{
    /* A waiting writer goes before readers that come after it: glibc's default prefers
     * readers, so queries arriving without a pause kept a rebuild's swap waiting for as
     * long as they came.  The price: a thread must never read-lock one lock twice (a
     * writer waiting in between would deadlock it), so pj_rwlock_rdlock() refuses that. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&l->l, &attr);
    pthread_rwlockattr_destroy(&attr);
    atomic_init(&l->writer, 0);
}

void pj_rwlock_destroy(pj_rwlock_t *l)
{
    pthread_rwlock_destroy(&l->l);
}

void pj_rwlock_rdlock(pj_rwlock_t *l)
{
    if (reading(l) || atomic_load(&l->writer) == self())
        pj_lock_fail("must not be taken again by a thread holding it (a waiting writer goes "
                     "first: that would deadlock)",
                     "rwlock", __func__, __FILE__, __LINE__);
    pthread_rwlock_rdlock(&l->l);
    if (nread_held == MAX_READ_HELD)
        pj_lock_fail("must be read-locked fewer times at once", "rwlock", __func__, __FILE__,
                     __LINE__);
    read_held[nread_held++] = l;
}

void pj_rwlock_wrlock(pj_rwlock_t *l)
{
    pthread_rwlock_wrlock(&l->l);
    atomic_store(&l->writer, self());
}

void pj_rwlock_unlock(pj_rwlock_t *l)
{
    if (atomic_load(&l->writer) == self()) {
        atomic_store(&l->writer, 0);
    } else {
        size_t i = 0;
        while (i < nread_held && read_held[i] != l)
            i++;
        if (i == nread_held)
            pj_lock_fail("must be held by the thread unlocking it", "rwlock", __func__, __FILE__,
                         __LINE__);
        read_held[i] = read_held[--nread_held];
    }
    pthread_rwlock_unlock(&l->l);
}

bool pj_mutex_held(const pj_mutex_t *m)
{
    return atomic_load(&m->owner) == self();
}

bool pj_mutex_free_here(const pj_mutex_t *m)
{
    return !pj_mutex_held(m);
}

bool pj_rwlock_write_held(const pj_rwlock_t *l)
{
    return atomic_load(&l->writer) == self();
}

bool pj_rwlock_held(const pj_rwlock_t *l)
{
    return pj_rwlock_write_held(l) || reading(l);
}

bool pj_rwlock_free_here(const pj_rwlock_t *l)
{
    return !pj_rwlock_held(l);
}
