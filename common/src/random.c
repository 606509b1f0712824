/*
 * random.c — random bytes for identifiers: the kernel's CSPRNG, a buffer at
 * a time per thread.
 *
 * Every id that must not collide across processes and restarts (command and
 * event UUIDs, trace and span ids) comes from getrandom(2), never from a
 * seeded PRNG.  One system call per id was 2.7 getrandom calls per command in
 * the gateway alone (strace at 512 clients: a trace id, a span id and a
 * command id), and a system call is dear on a virtual machine (1.1-1.4 us
 * each here: a UUID took 1.5 us, a trace and a span id 2.3 us; now 0.12 and
 * 0.19 us); so each thread takes ES_RANDOM_POOL bytes at a time and hands
 * each byte out once.  The
 * bytes are the kernel's, unchanged: nothing is derived or stretched.  They
 * are for identifiers, not for keys (a buffer of future ids sits in memory).
 *
 * A forked child must not hand out the bytes its parent has buffered (both
 * would issue the same ids): pthread_atfork's child handler bumps a
 * generation, and a buffer filled in another generation is thrown away.
 */
#include "escqrs/util.h"
#include "escqrs/mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/types.h>

#define ES_RANDOM_POOL 256 /* bytes a thread takes from the kernel at a time */

static _Thread_local struct {
    uint8_t bytes[ES_RANDOM_POOL];
    size_t left; /* unused bytes at the end of bytes[] */
    unsigned gen;
} pool;

static atomic_uint fork_gen = 1; /* a zeroed pool (gen 0) is never current */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_gen, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* @p len bytes straight from the kernel (getrandom(2) blocks only until it is seeded). */
static void kernel_bytes(uint8_t *b, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(b + got, len - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
}

void es_random_bytes(void *out, size_t len)
{
    unsigned gen = atomic_load(&fork_gen);
    if (pool.gen != gen) {
        pool.left = 0;
        pool.gen = gen;
    }
    if (len > ES_RANDOM_POOL / 4) { /* a large request would drain the pool: ask directly */
        kernel_bytes(out, len);
        return;
    }
    if (pool.left < len) {
        /* a buffer exists from here on, so a fork must be seen from here on */
        pthread_once(&atfork_once, register_atfork);
        kernel_bytes(pool.bytes, ES_RANDOM_POOL);
        pool.left = ES_RANDOM_POOL;
    }
    uint8_t *from = pool.bytes + ES_RANDOM_POOL - pool.left;
    memcpy(out, from, len);
    memset(from, 0, len); /* handed out once: not left behind for a later reader */
    pool.left -= len;
}

void es_uuid_v4(char out[ES_UUID_STR_LEN])
{
    uint8_t b[16];
    char hex[33];
    es_random_bytes(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    es_hex_encode(hex, b, sizeof(b));
    /* 8-4-4-4-12 */
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
}
