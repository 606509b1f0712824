/*
 * lock.h — the projector's locks, which know who holds them.
 *
 * projector.h says which lock guards which field and what each entry point
 * expects to hold.  These wrappers make that checkable, after SQLite's
 * `assert(sqlite3_mutex_held(...))`: a mutex records the thread holding
 * it, a read-write lock its writer and, per thread, the locks that thread
 * reads under.  An entry point then states its
 * precondition as code (`pj_assert_locked(&r->mu)`,
 * `pj_assert_unlocked(&r->lock)`) and a wrong call aborts at once, naming
 * the lock, the function and the line, instead of racing on a field or
 * deadlocking on a lock it already holds.
 *
 * The bookkeeping is always there (an atomic store per lock and unlock, a
 * thread-local list for readers: little next to the lock itself) and the
 * struct layout never depends on the build type; the assertions are
 * compiled in every build without NDEBUG (Debug, which
 * `make test` and CI build) and wherever PJ_LOCK_CHECKS is defined (the
 * unit test of the locks links a copy of the runtime built with it, so it
 * checks in every build type).  Release builds assert nothing at entry
 * points; unlocking a lock this thread does not hold aborts in any build.
 *
 * A thread is identified by the address of a thread-local byte: unique among
 * live threads and compared atomically, so asking "do I hold it?" from any
 * thread is race-free.
 *
 * Layering: this header includes only the C library and pthreads.
 */
#ifndef ESCQRS_PROJECTOR_LOCK_H
#define ESCQRS_PROJECTOR_LOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#if !defined(NDEBUG) && !defined(PJ_LOCK_CHECKS)
#define PJ_LOCK_CHECKS 1
#endif

typedef struct pj_mutex_s {
    pthread_mutex_t m;
    atomic_uintptr_t owner; /* the holder's thread tag, 0 when free */
} pj_mutex_t;

typedef struct pj_rwlock_s {
    pthread_rwlock_t l;
    atomic_uintptr_t writer; /* the writer's thread tag, 0 when none */
} pj_rwlock_t;

void pj_mutex_init(pj_mutex_t *m);
void pj_mutex_destroy(pj_mutex_t *m);
void pj_mutex_lock(pj_mutex_t *m);
void pj_mutex_unlock(pj_mutex_t *m);
/** @brief pthread_cond_timedwait() on @p m: the owner is dropped while waiting. */
int pj_cond_timedwait(pthread_cond_t *cv, pj_mutex_t *m, const struct timespec *deadline);

void pj_rwlock_init(pj_rwlock_t *l);
void pj_rwlock_destroy(pj_rwlock_t *l);
void pj_rwlock_rdlock(pj_rwlock_t *l);
void pj_rwlock_wrlock(pj_rwlock_t *l);
void pj_rwlock_unlock(pj_rwlock_t *l);

/** @brief The runtime was built with its assertions (the unit test checks it links one). */
bool pj_lock_checks_on(void);
/** @brief The calling thread holds @p m. */
bool pj_mutex_held(const pj_mutex_t *m);
/** @brief The calling thread does not hold @p m. */
bool pj_mutex_free_here(const pj_mutex_t *m);
/** @brief The calling thread holds @p l, for reading or writing. */
bool pj_rwlock_held(const pj_rwlock_t *l);
/** @brief The calling thread holds @p l for writing. */
bool pj_rwlock_write_held(const pj_rwlock_t *l);
/** @brief The calling thread holds neither mode of @p l. */
bool pj_rwlock_free_here(const pj_rwlock_t *l);

/** @brief Print "lock assertion failed: <lock> <expect> in <func>() at <file>:<line>", abort(). */
_Noreturn void pj_lock_fail(const char *expect, const char *lock, const char *func,
                            const char *file, int line);

#ifdef PJ_LOCK_CHECKS
#define PJ_LOCK_CHECK_(ok, expect, lock)                                                           \
    ((ok) ? (void)0 : pj_lock_fail(expect, lock, __func__, __FILE__, __LINE__))
/** @brief Abort unless this thread holds @p x (a pj_mutex_t *, or a pj_rwlock_t * in any mode). */
#define pj_assert_locked(x)                                                                        \
    PJ_LOCK_CHECK_(_Generic((x), pj_mutex_t *: pj_mutex_held, const pj_mutex_t *: pj_mutex_held,  \
                            pj_rwlock_t *: pj_rwlock_held,                                         \
                            const pj_rwlock_t *: pj_rwlock_held)(x),                               \
                   "must be held", #x)
/** @brief Abort if this thread holds @p x (it is about to take it: that would deadlock). */
#define pj_assert_unlocked(x)                                                                      \
    PJ_LOCK_CHECK_(_Generic((x), pj_mutex_t *: pj_mutex_free_here,                                 \
                            const pj_mutex_t *: pj_mutex_free_here,                                \
                            pj_rwlock_t *: pj_rwlock_free_here,                                    \
                            const pj_rwlock_t *: pj_rwlock_free_here)(x),                          \
                   "must not be held (the function takes it)", #x)
/** @brief Abort unless this thread holds read-write lock @p l for writing. */
#define pj_assert_write_locked(l)                                                                  \
    PJ_LOCK_CHECK_(pj_rwlock_write_held(l), "must be held for writing", #l)
#else
#define pj_assert_locked(x)       ((void)0)
#define pj_assert_unlocked(x)     ((void)0)
#define pj_assert_write_locked(l) ((void)0)
#endif

#endif
