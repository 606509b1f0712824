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
 * And it kills in the middle of a catch-up: while the file
 * ESCQRS_TEST_KILL_IN_CATCHUP names exists, the second store write after a
 * consumer is assigned a partition of an "<agg>.events" topic (the command
 * service's catch-up, catchup.c, which writes every 2 000 events and at the
 * end) kills the process: the first of its writes went, the rest did not.
 *
 * It also holds a commit: while the file ESCQRS_TEST_HOLD_AT_COMMIT names
 * exists, rd_kafka_commit_transaction waits before the library sees it, and
 * "<file>.held" says that one does (0914 reads the service's gauges meanwhile).
 *
 * And it acts at a store's reopen: the first rocksdb_open after a rocksdb_flush
 * (es_store_persist at a rebuild's swap flushes a store written blind, closes
 * it, and opens it again: store.c), while the file named by
 *   ESCQRS_TEST_KILL_AT_REOPEN exists, kills the process (flushed and closed,
 *                              not opened again), and by
 *   ESCQRS_TEST_FAIL_AT_REOPEN, answers an error instead of opening (0905).
 * Every other open (a start's) goes through unchanged.
 *
 * And it kills a clone from a peer's checkpoint (checkpoint_clone.c) part-way:
 *   ESCQRS_TEST_KILL_IN_CLONE    at the first fsync of a file being
 *                                downloaded into <dir>/clone.tmp/: one file
 *                                of the copy is whole, the others are not
 *   ESCQRS_TEST_KILL_AT_INSTALL  right after the rename of <dir>/clone.tmp
 *                                to <dir>/g1, before CURRENT is written (0916).
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
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The libraries' types, opaque here: the shim needs none of their headers. */
typedef struct rocksdb_t rocksdb_t;
typedef struct rocksdb_writeoptions_t rocksdb_writeoptions_t;
typedef struct rocksdb_writebatch_t rocksdb_writebatch_t;
typedef struct rocksdb_options_t rocksdb_options_t;
typedef struct rocksdb_flushoptions_t rocksdb_flushoptions_t;
typedef rocksdb_t *(*open_fn)(const rocksdb_options_t *, const char *, char **);
typedef void (*flush_fn)(rocksdb_t *, const rocksdb_flushoptions_t *, char **);
typedef void (*write_fn)(rocksdb_t *, const rocksdb_writeoptions_t *, rocksdb_writebatch_t *,
                         char **);
typedef rd_kafka_error_t *(*commit_fn)(rd_kafka_t *, int);
typedef rd_kafka_resp_err_t (*assign_fn)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
typedef int (*fsync_fn)(int);
typedef int (*rename_fn)(const char *, const char *);

#define CLONE_STAGING "clone.tmp" /* ES_CKPT_STAGING (escqrs/checkpoint.h) */

/* rocksdb/c.h's prototypes, repeated */
void rocksdb_write(rocksdb_t *db, const rocksdb_writeoptions_t *options,
                   rocksdb_writebatch_t *batch, char **errptr);
rocksdb_t *rocksdb_open(const rocksdb_options_t *options, const char *name, char **errptr);
void rocksdb_flush(rocksdb_t *db, const rocksdb_flushoptions_t *options, char **errptr);

/* A flush ran since the last open: the next open is a reopen. */
static atomic_bool flushed;

/* Store writes since a consumer was last assigned an events partition; -1: none assigned. */
static atomic_int writes_in_catchup = -1;

/* Whether the file @p env names existed: one caller removes it and is told so. */
static bool fire_if_armed(const char *env)
{
    const char *arm = getenv(env);
    return arm && unlink(arm) == 0;
}

/* SIGKILL when the file @p env names exists; one caller removes it and dies. */
static void kill_if_armed(const char *env)
{
    if (fire_if_armed(env))
        raise(SIGKILL);
}

/* Create "<arm><suffix>": the test's sign that the shim acted. */
static void tell_test(const char *arm, const char *suffix)
{
    char said[1100];
    snprintf(said, sizeof(said), "%s%s", arm, suffix);
    int fd = open(said, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0)
        close(fd);
}

/* While the file @p env names exists, wait, with "<file>.held" created for the test. */
static void hold_while_armed(const char *env)
{
    const char *arm = getenv(env);
    if (!arm || access(arm, F_OK) != 0)
        return;
    tell_test(arm, ".held");
    while (access(arm, F_OK) == 0)
        usleep(10 * 1000);
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
    if (atomic_load(&writes_in_catchup) >= 0 && atomic_fetch_add(&writes_in_catchup, 1) == 1)
        kill_if_armed("ESCQRS_TEST_KILL_IN_CATCHUP");
    ((write_fn)next_fn("rocksdb_write"))(db, options, batch, errptr);
}

__attribute__((visibility("default"))) void
rocksdb_flush(rocksdb_t *db, const rocksdb_flushoptions_t *options, char **errptr)
{
    ((flush_fn)next_fn("rocksdb_flush"))(db, options, errptr);
    atomic_store(&flushed, true);
}

__attribute__((visibility("default"))) rocksdb_t *rocksdb_open(const rocksdb_options_t *options,
                                                               const char *name, char **errptr)
{
    if (atomic_exchange(&flushed, false)) {
        kill_if_armed("ESCQRS_TEST_KILL_AT_REOPEN");
        if (fire_if_armed("ESCQRS_TEST_FAIL_AT_REOPEN")) {
            *errptr =
                strdup("refused by the test's shim (kill_at_call.c)"); /* rocksdb_free frees */
            return NULL;
        }
    }
    return ((open_fn)next_fn("rocksdb_open"))(options, name, errptr);
}

__attribute__((visibility("default"))) rd_kafka_error_t *rd_kafka_commit_transaction(rd_kafka_t *rk,
                                                                                     int timeout_ms)
{
    kill_if_armed("ESCQRS_TEST_KILL_AT_COMMIT");
    hold_while_armed("ESCQRS_TEST_HOLD_AT_COMMIT");
    return ((commit_fn)next_fn("rd_kafka_commit_transaction"))(rk, timeout_ms);
}

/* Whether @p parts holds a partition of a topic named "*.events". */
static bool names_events(const rd_kafka_topic_partition_list_t *parts)
{
    static const char suffix[] = ".events";
    for (int i = 0; parts && i < parts->cnt; i++) {
        size_t n = strlen(parts->elems[i].topic);
        if (n >= sizeof(suffix) - 1 &&
            !strcmp(parts->elems[i].topic + n - (sizeof(suffix) - 1), suffix))
            return true;
    }
    return false;
}

__attribute__((visibility("default"))) rd_kafka_resp_err_t
rd_kafka_assign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions)
{
    atomic_store(&writes_in_catchup, names_events(partitions) ? 0 : -1);
    return ((assign_fn)next_fn("rd_kafka_assign"))(rk, partitions);
}

/* Whether descriptor @p fd is a file under a clone's staging directory. */
static bool in_clone_staging(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    return strstr(path, "/" CLONE_STAGING "/") != NULL;
}

__attribute__((visibility("default"))) int fsync(int fd)
{
    if (getenv("ESCQRS_TEST_KILL_IN_CLONE") && in_clone_staging(fd))
        kill_if_armed("ESCQRS_TEST_KILL_IN_CLONE");
    return ((fsync_fn)next_fn("fsync"))(fd);
}

__attribute__((visibility("default"))) int rename(const char *from, const char *to)
{
    static const char staging[] = "/" CLONE_STAGING;
    int rc = ((rename_fn)next_fn("rename"))(from, to);
    size_t n = strlen(from);
    if (rc == 0 && n >= sizeof(staging) - 1 && !strcmp(from + n - (sizeof(staging) - 1), staging))
        kill_if_armed("ESCQRS_TEST_KILL_AT_INSTALL");
    return rc;
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
        tell_test(arm, ".refused");
        return EAGAIN;
    }
    return ((create_fn)next_fn("pthread_create"))(t, a, fn, arg);
}
