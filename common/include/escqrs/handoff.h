/**
 * @file handoff.h
 * @brief One job at a time on a thread of its own, while the caller goes on:
 *        the caller gives a job, does other work, then waits for the job.
 *
 * Users: the projector's writer (a RocksDB batch written while the next one
 * folds) and the command service's offsets (send_offsets_to_transaction
 * while the batch's outcomes and states are produced).
 *
 * The thread is started at the first job and lives until es_handoff_destroy:
 * a thread per job costs its start (and, for RocksDB, its per-thread set-up)
 * every time.  At most one job is in flight; the caller must wait for it
 * before it gives the next one, and before it touches anything the job uses.
 * The job's results travel in the job's own struct: the wait is the
 * happens-before edge that makes them visible to the caller.
 */
#ifndef ESCQRS_HANDOFF_H
#define ESCQRS_HANDOFF_H

#include <stdbool.h>

typedef struct es_handoff_s es_handoff_t;

/** @brief A job run on the handoff's thread with the @p arg given with it. */
typedef void es_handoff_job_fn(void *arg);

/** @brief A handoff with no thread yet (started by the first job). */
es_handoff_t *es_handoff_new(void);

/**
 * @brief Run @p job(@p arg) on the handoff's thread.  No job may be in
 *        flight (es_handoff_wait first).
 * @returns false when the thread cannot be started: nothing runs, and the
 *          caller runs the job itself.
 */
bool es_handoff_give(es_handoff_t *h, es_handoff_job_fn *job, void *arg);

/** @brief Wait until the job given last has returned; at once when none is in flight. */
void es_handoff_wait(es_handoff_t *h);

/** @brief Wait for the job in flight, end the thread and free; NULL is a no-op. */
void es_handoff_destroy(es_handoff_t *h);

#endif /* ESCQRS_HANDOFF_H */
