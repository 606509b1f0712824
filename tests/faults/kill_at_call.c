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
 * commit (txn.c write_store).  0914 kills at both.
 *
 * It also refuses threads: while the file ESCQRS_TEST_REFUSE_HANDOFF names
 * exists, pthread_create answers EAGAIN (as at a limit) to es_handoff_give
 * (the start of the command service's offsets thread, of the projector's
 * store writer) and creates "<file>.refused" so the test knows it did (0915).  The caller is found
 * on the call stack, since in a sanitizer build AddressSanitizer's own pthread_create stands
 * between it and the shim; other threads go through. Nothing in the runtime knows of the shim.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

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

/* Whether es_handoff_give is on the call stack (the shim's, ASan's interceptor, then it). */
static bool called_by_handoff(void)
{
    void *frames[8];
    int n = backtrace(frames, 8);
    for (int i = 1; i < n; i++) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_sname &&
            strcmp(info.dli_sname, "es_handoff_give") == 0)
            return true;
    }
    return false;
}

__attribute__((visibility("default"))) int pthread_create(pthread_t *restrict t,
                                                          const pthread_attr_t *restrict a,
                                                          void *(*fn)(void *), void *restrict arg)
{
    const char *arm = getenv("ESCQRS_TEST_REFUSE_HANDOFF");
    if (arm && access(arm, F_OK) == 0 && called_by_handoff()) {
        char said[1100];
        snprintf(said, sizeof(said), "%s.refused", arm);
        int fd = open(said, O_WRONLY | O_CREAT, 0644);
        if (fd >= 0)
            close(fd);
        return EAGAIN;
    }
    return ((create_fn)next_fn("pthread_create"))(t, a, fn, arg);
}
