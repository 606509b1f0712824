/*
 * avro_tracked.h — Avro C's allocations in a table of their own for the fuzz
 * targets (avro_tracked.c says why).
 */
#ifndef ESCQRS_FUZZ_AVRO_TRACKED_H
#define ESCQRS_FUZZ_AVRO_TRACKED_H

/*
 * Route every Avro C allocation from now on through the table, and check at
 * exit that none is left.  Call it first in LLVMFuzzerInitialize, before
 * anything Avro is built, and register the target's own teardown with
 * atexit() after it, so the teardown runs before the check.
 */
void fuzz_avro_track_start(void);

#endif
