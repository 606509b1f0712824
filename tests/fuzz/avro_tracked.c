/*
 * avro_tracked.c — Avro C's allocations, in a table LeakSanitizer can see,
 * and an exact count of them at exit.
 *
 * Why: Avro C (libavro 1.11) keeps a string's bytes behind an 8-byte header
 * and holds only a pointer past that header.  A fuzz target reuses its
 * decoded values from input to input, so their strings stay alive; when no
 * stale copy of such a block's start happened to lie on the stack,
 * libFuzzer's leak check after an input reported the live strings as
 * "Direct leak ... allocated from realloc in libavro.so.23" (CI on
 * 2026-12-03: 148 bytes in 6 allocations after 58 inputs; reproduced here
 * with `-seed=3062 -runs=150` on the seed corpus: 84 bytes, exactly the
 * event_id, cart_id and command_id strings of the reader value, each
 * pointed to only 8 bytes inside its block).  Whether it fired depended on
 * stack garbage, so the same code passed or failed from run to run.
 *
 * So every block Avro C allocates is recorded here by its start address (in
 * an es_map reachable from a global, hence scanned by LeakSanitizer) and
 * removed when Avro frees it.  What that hides from the checks between inputs, the
 * exit check finds exactly: after the target's own teardown every block
 * Avro allocated since fuzz_avro_track_start() must be gone, or the run
 * fails with the count left.  A value or schema the code under
 * test forgets to release is caught there, whatever lies on the stack.
 */
#include "avro_tracked.h"

#include "escqrs/mem.h"

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * Block start -> the same pointer: the value slots hold the starts where
 * LeakSanitizer scans them (the map's own memory comes from malloc, not
 * from Avro, so it does not track itself).
 */
static es_map_t blocks = ES_MAP_INIT(NULL);

static void *tracked_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    /* a block allocated before tracking started is not in the map */
    if (ptr)
        es_map_remove(&blocks, &ptr, sizeof(ptr));
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    void *q = realloc(ptr, nsize);
    if (!q) {
        if (ptr) /* realloc failed: the old block is still Avro's */
            es_map_set(&blocks, &ptr, sizeof(ptr), ptr);
        return NULL;
    }
    es_map_set(&blocks, &q, sizeof(q), q);
    return q;
}

static void check_none_left(void)
{
    size_t live = es_map_count(&blocks);
    if (live) {
        fprintf(stderr,
                "avro_tracked: %zu Avro C allocation(s) still live after the target's "
                "teardown: a value, class or schema was not released\n",
                live);
        abort();
    }
    es_map_free(&blocks);
}

void fuzz_avro_track_start(void)
{
    avro_set_allocator(tracked_alloc, NULL);
    atexit(check_none_left);
}
