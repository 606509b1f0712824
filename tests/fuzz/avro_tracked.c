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
 * So every block Avro C allocates is recorded here by its start address (a
 * table reachable from a global, hence scanned by LeakSanitizer) and removed
 * when Avro frees it.  What that hides from the checks between inputs, the
 * exit check finds exactly: after the target's own teardown every block
 * Avro allocated since fuzz_avro_track_start() must be gone, or the run
 * fails with the count and the bytes left.  A value or schema the code under
 * test forgets to release is caught there, whatever lies on the stack.
 */
#include "avro_tracked.h"

#include <avro.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    void *p;
    size_t size;
} block_t;

/* Open addressing, linear probing, deletion by backward shift. */
static block_t *table;
static size_t cap, live;
static size_t live_bytes;

static size_t slot_of(const void *p)
{
    uintptr_t h = (uintptr_t)p;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (cap - 1);
}

static void put(void *p, size_t size);

static void grow(void)
{
    block_t *old = table;
    size_t oldcap = cap;
    cap = cap ? cap * 2 : 1024;
    table = calloc(cap, sizeof(*table));
    if (!table)
        abort();
    live = 0;
    live_bytes = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].p)
            put(old[i].p, old[i].size);
    free(old);
}

static void put(void *p, size_t size)
{
    if ((live + 1) * 2 > cap)
        grow();
    size_t i = slot_of(p);
    while (table[i].p)
        i = (i + 1) & (cap - 1);
    table[i] = (block_t){p, size};
    live++;
    live_bytes += size;
}

/* Forget @p; a block allocated before tracking started is not in the table. */
static void drop(void *p)
{
    if (!cap)
        return;
    size_t i = slot_of(p);
    while (table[i].p && table[i].p != p)
        i = (i + 1) & (cap - 1);
    if (!table[i].p)
        return;
    live--;
    live_bytes -= table[i].size;
    table[i].p = NULL;
    /* shift the entries after it back over the hole they probed past */
    for (size_t j = (i + 1) & (cap - 1); table[j].p; j = (j + 1) & (cap - 1)) {
        size_t home = slot_of(table[j].p);
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            table[i] = table[j];
            table[j].p = NULL;
            i = j;
        }
    }
}

static void *tracked_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (ptr)
        drop(ptr);
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    void *q = realloc(ptr, nsize);
    if (q)
        put(q, nsize);
    else if (ptr)
        put(ptr, osize); /* realloc failed: the old block is still Avro's */
    return q;
}

static void check_none_left(void)
{
    if (live) {
        fprintf(stderr,
                "avro_tracked: %zu Avro C allocation(s), %zu bytes, still live after the "
                "target's teardown: a value, class or schema was not released\n",
                live, live_bytes);
        abort();
    }
}

void fuzz_avro_track_start(void)
{
    avro_set_allocator(tracked_alloc, NULL);
    atexit(check_none_left);
}
