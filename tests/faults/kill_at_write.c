/*
 * kill_at_write.c — an LD_PRELOAD shim for fault tests: SIGKILL at the first
 * RocksDB write after the test arms it, before the write reaches the store.
 *
 * ESCQRS_TEST_KILL_AT_WRITE names a file; while it exists the shim is armed.
 * The first rocksdb_write() that finds it removes it (unlink decides which
 * thread wins, so exactly one write fires) and kills the process before
 * calling RocksDB, so the store never sees that write.  Every other write
 * goes through to librocksdb unchanged.  In the command service the first
 * write of a ready, steady instance is the one that follows a commit
 * (txn.c write_store), so an armed shim kills it between the Kafka commit
 * and the store write: 0914.  Nothing in the runtime knows of it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct rocksdb_t rocksdb_t;
typedef struct rocksdb_writeoptions_t rocksdb_writeoptions_t;
typedef struct rocksdb_writebatch_t rocksdb_writebatch_t;
typedef void (*write_fn)(rocksdb_t *, const rocksdb_writeoptions_t *, rocksdb_writebatch_t *,
                         char **);

/* rocksdb/c.h's prototype, repeated: the shim does not need RocksDB's headers */
void rocksdb_write(rocksdb_t *db, const rocksdb_writeoptions_t *options,
                   rocksdb_writebatch_t *batch, char **errptr);

__attribute__((visibility("default"))) void rocksdb_write(rocksdb_t *db,
                                                          const rocksdb_writeoptions_t *options,
                                                          rocksdb_writebatch_t *batch,
                                                          char **errptr)
{
    const char *arm = getenv("ESCQRS_TEST_KILL_AT_WRITE");
    if (arm && unlink(arm) == 0)
        raise(SIGKILL);
    write_fn real = (write_fn)dlsym(RTLD_NEXT, "rocksdb_write");
    if (!real)
        abort(); /* no librocksdb behind the shim: nothing sane to do */
    real(db, options, batch, errptr);
}
