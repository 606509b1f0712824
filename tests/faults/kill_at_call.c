/*
 * kill_at_call.c — an LD_PRELOAD shim for fault tests: SIGKILL at the first
 * call of a chosen library function after the test arms it, before the call
 * reaches the library.
 *
 * Each function has an environment variable naming a file; while that file
 * exists the function is armed.  The first call that finds it removes it
 * (unlink decides which thread wins, so exactly one call fires) and kills
 * the process; every other call goes through unchanged (dlsym RTLD_NEXT).
 *   rocksdb_write                ESCQRS_TEST_KILL_AT_WRITE   the store never sees the write
 *   rd_kafka_commit_transaction  ESCQRS_TEST_KILL_AT_COMMIT  the transaction stays open
 * In a ready, steady command service the first of each after arming is a
 * batch's: its commit (txn.c commit), and the store write that follows the
 * commit (txn.c write_store).  0914 kills at both.  Nothing in the runtime
 * knows of the shim.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* The libraries' types, opaque here: the shim needs none of their headers. */
typedef struct rocksdb_t rocksdb_t;
typedef struct rocksdb_writeoptions_t rocksdb_writeoptions_t;
typedef struct rocksdb_writebatch_t rocksdb_writebatch_t;
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef void (*write_fn)(rocksdb_t *, const rocksdb_writeoptions_t *, rocksdb_writebatch_t *,
                         char **);
typedef rd_kafka_error_t *(*commit_fn)(rd_kafka_t *, int);

/* rocksdb/c.h's and rdkafka.h's prototypes, repeated */
void rocksdb_write(rocksdb_t *db, const rocksdb_writeoptions_t *options,
                   rocksdb_writebatch_t *batch, char **errptr);
rd_kafka_error_t *rd_kafka_commit_transaction(rd_kafka_t *rk, int timeout_ms);

/* SIGKILL when the file @p env names exists; one caller removes it and dies. */
static void kill_if_armed(const char *env)
{
    const char *arm = getenv(env);
    if (arm && unlink(arm) == 0)
        raise(SIGKILL);
}

/* The library's own @p name, behind the shim. */
static void *next_fn(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (!fn)
        abort(); /* no library behind the shim: nothing sane to do */
    return fn;
}

__attribute__((visibility("default"))) void rocksdb_write(rocksdb_t *db,
                                                          const rocksdb_writeoptions_t *options,
                                                          rocksdb_writebatch_t *batch,
                                                          char **errptr)
{
    kill_if_armed("ESCQRS_TEST_KILL_AT_WRITE");
    ((write_fn)next_fn("rocksdb_write"))(db, options, batch, errptr);
}

__attribute__((visibility("default"))) rd_kafka_error_t *rd_kafka_commit_transaction(rd_kafka_t *rk,
                                                                                     int timeout_ms)
{
    kill_if_armed("ESCQRS_TEST_KILL_AT_COMMIT");
    return ((commit_fn)next_fn("rd_kafka_commit_transaction"))(rk, timeout_ms);
}
