/**
 * @file mem.h
 * @brief Allocation that never returns NULL, a growable byte buffer with
 *        big-endian encoding and a cursor to decode it, a byte hash (FNV-1a,
 *        64 bit) for fingerprints that are not security, and one hash map.
 *
 * Out of memory aborts with a message: there is no NOMEM path to forget.
 *
 * The buffer's appends and the cursor's reads are C99 inline definitions:
 * a fold encodes and decodes its view values with them several times per
 * event, and calls through the shared library's PLT were about 14 % of a
 * projector's loop (perf).  mem.c emits the external definitions, so
 * modules built against an older header still link.
 */
#ifndef ESCQRS_MEM_H
#define ESCQRS_MEM_H

#include "escqrs/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *es_malloc(size_t size);
void *es_calloc(size_t nmemb, size_t size);
void *es_realloc(void *ptr, size_t size);
char *es_strdup(const char *s);
char *es_strndup(const char *s, size_t n);

/**
 * @brief Give the C library's free memory back to the kernel.
 *
 * glibc keeps what a thread freed in that thread's arena (up to 8 per core),
 * so a process whose threads take turns allocating (librdkafka's fetchers,
 * RocksDB's flushes and compactions, a fold) holds the free pages of every
 * arena: a projector's peak RSS replaying 10 M events into cart_history had a
 * median of 247 MiB over five runs, 196 MiB trimmed once a second, at the same
 * rate (docs/projector.md, "Benchmark").  Walks every arena, taking each
 * one's lock in turn: call it from a timer, not a hot path.  A no-op on other
 * C libraries, and with jemalloc (linked into escqrs-projector), which gives
 * pages back on its own as they stay unused (docs/projector.md, "Memory
 * allocator").
 */
void es_mem_release_free(void);

/** @brief "jemalloc <version>" when the program runs on jemalloc, else the C library's name. */
const char *es_mem_allocator(char *buf, size_t size);

/** @brief A growable byte buffer; zero-initialise (`es_buf_t b = {0};`) to use. */
typedef struct es_buf_s {
    char *data;
    size_t len;
    size_t cap;
} es_buf_t;

/** @brief Grow @p b to hold at least @p need bytes (es_buf_reserve's slow path). */
void es_buf_grow(es_buf_t *b, size_t need);

/** @brief Make room for at least @p extra more bytes. */
inline void es_buf_reserve(es_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1; /* +1 keeps room for a terminating NUL */
    if (need > b->cap)
        es_buf_grow(b, need);
}
/** @brief Replace the contents with a copy of @p len bytes at @p data. */
void es_buf_set(es_buf_t *b, const void *data, size_t len);
inline void es_buf_append(es_buf_t *b, const void *data, size_t len)
{
    es_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}
/** @brief Append a printf-formatted string (no NUL counted in len, but data stays terminated). */
void es_buf_appendf(es_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void es_buf_clear(es_buf_t *b);
/** @brief Free the storage; the buffer may be reused afterwards. */
void es_buf_free(es_buf_t *b);
/**
 * @brief Replace @p b with the whole content of file @p path, NUL-terminated
 *        (the NUL not counted in b->len).
 * @returns false (b empty, errno set) when the file cannot be read.
 */
bool es_buf_read_file(es_buf_t *b, const char *path);
/** @brief The whole content of file @p path, NUL-terminated (caller frees), or NULL. */
char *es_read_file(const char *path);

/* Compact, deterministic encodings (stored views, keys): big-endian
 * integers and u32-length-prefixed strings. */
inline void es_buf_put_be64(es_buf_t *b, uint64_t v)
{
    uint64_t be = ES_BE64(v);
    es_buf_reserve(b, 8);
    memcpy(b->data + b->len, &be, 8);
    b->len += 8;
    b->data[b->len] = '\0';
}

inline void es_buf_put_be32(es_buf_t *b, uint32_t v)
{
    uint32_t be = ES_BE32(v);
    es_buf_reserve(b, 4);
    memcpy(b->data + b->len, &be, 4);
    b->len += 4;
    b->data[b->len] = '\0';
}

/** @brief A u32 length, then @p len bytes. */
inline void es_buf_put_str(es_buf_t *b, const char *s, size_t len)
{
    es_buf_put_be32(b, (uint32_t)len);
    es_buf_append(b, s, len);
}
/** @brief @p len bytes of @p data as 2 * @p len lowercase hex digits into @p out (no NUL). */
void es_hex_encode(char *out, const void *data, size_t len);
/** @brief Append @p data as lowercase hex to @p b. */
void es_buf_put_hex(es_buf_t *b, const void *data, size_t len);
/** @brief Set @p out to the bytes of hex string @p s (either case); false when it is not hex. */
bool es_hex_decode(const char *s, es_buf_t *out);

/** @brief A cursor over an encoded value; any overrun sets `bad` and reads zeroes. */
typedef struct es_cursor_s {
    const unsigned char *p;
    size_t left;
    bool bad;
} es_cursor_t;

void es_cursor_init(es_cursor_t *c, const void *data, size_t len);

/** @brief The next @p n bytes, or NULL (and the cursor bad) when fewer are left. */
inline const unsigned char *es_cursor_take(es_cursor_t *c, size_t n)
{
    if (c->bad || c->left < n) {
        c->bad = true;
        c->left = 0;
        return NULL;
    }
    const unsigned char *p = c->p;
    c->p += n;
    c->left -= n;
    return p;
}

inline uint64_t es_cursor_be64(es_cursor_t *c)
{
    const unsigned char *p = es_cursor_take(c, 8);
    uint64_t be = 0;
    if (p)
        memcpy(&be, p, 8);
    return ES_BE64(be);
}

inline uint32_t es_cursor_be32(es_cursor_t *c)
{
    const unsigned char *p = es_cursor_take(c, 4);
    uint32_t be = 0;
    if (p)
        memcpy(&be, p, 4);
    return ES_BE32(be);
}
/** @brief A length-prefixed string (borrowed, not NUL-terminated; "" when bad). */
const char *es_cursor_str(es_cursor_t *c, size_t *len);

/** @brief Byte order of two byte strings (a prefix first), as RocksDB orders keys: <0, 0, >0. */
int es_bytes_cmp(const void *a, size_t alen, const void *b, size_t blen);

#define ES_FNV1A64_INIT 0xcbf29ce484222325ULL
/** @brief Fold @p len bytes into FNV-1a hash @p h (start from ES_FNV1A64_INIT). */
uint64_t es_fnv1a64(uint64_t h, const void *data, size_t len);

/**
 * @brief A hash map from byte strings (copied in) to values the map owns
 *        (released with @p free_val on replace, clear and destroy; may be
 *        NULL).  Open addressing with linear probing, es_map_hash.  A NULL value
 *        is a value (callers use it as a tombstone); es_map_remove() takes a
 *        key out (backward-shift deletion: no markers left behind).
 *        Zero-initialise with ES_MAP_INIT(free_val) to use.
 */
typedef struct es_map_s {
    struct es_map_slot_s *slots;
    size_t cap, used; /* cap: 0 or a power of two */
    void (*free_val)(void *);
} es_map_t;

#define ES_MAP_INIT(free_fn)                                                                       \
    {                                                                                              \
        .slots = NULL, .cap = 0, .used = 0, .free_val = (free_fn)                                  \
    }

/** @brief The value of @p key, or NULL; *found (may be NULL) says whether it is there. */
void *es_map_get(const es_map_t *m, const void *key, size_t keylen, bool *found);
/** @brief MurmurHash3's 64-bit finaliser: every input bit reaches every output bit. */
static inline uint64_t es_hash_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/**
 * @brief The hash an es_map files @p key under: hash a key once for several look-ups.
 *
 * In memory only (never stored: es_fnv1a64 is the stored one).  Eight bytes per
 * multiply, the last word overlapping the one before, then es_hash_mix64, so the low
 * bits that pick a slot depend on every byte.  FNV-1a's multiply per byte was 2-3 % of a
 * rebuild's samples (view keys are 20-60 bytes).
 */
static inline uint64_t es_map_hash(const void *key, size_t keylen)
{
    const unsigned char *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ keylen, w = 0;
    if (keylen < 8) {
        for (size_t i = 0; i < keylen; i++)
            w |= (uint64_t)p[i] << (8 * i);
        return es_hash_mix64(h ^ w);
    }
    for (size_t i = 0; i + 8 < keylen; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    memcpy(&w, p + keylen - 8, 8);
    return es_hash_mix64(h ^ w);
}
/** @brief es_map_get() with @p hash = es_map_hash(key, keylen) already computed. */
void *es_map_get_hashed(const es_map_t *m, const void *key, size_t keylen, uint64_t hash,
                        bool *found);
/**
 * @brief The value slot of @p key, added (holding NULL) when missing.
 * @param added set (may be NULL) to whether the key was new.  The slot
 *        stays valid until the next insertion; replacing its value is the
 *        caller's business (release the old one first).
 */
void **es_map_slot(es_map_t *m, const void *key, size_t keylen, bool *added);
/** @brief Set @p key to @p val, releasing a previous value. */
void es_map_set(es_map_t *m, const void *key, size_t keylen, void *val);
/**
 * @brief Walk the entries: start with *pos = 0; false at the end.
 * @param val the entry's value slot (the caller may take the value and store NULL).
 */
bool es_map_next(const es_map_t *m, size_t *pos, const void **key, size_t *keylen, void ***val);
/** @brief Remove @p key, releasing its value; false when it was not there.  Slots and
 *         entries of es_map_next() walks in progress move: restart a walk after it. */
bool es_map_remove(es_map_t *m, const void *key, size_t keylen);
/** @brief Number of keys. */
size_t es_map_count(const es_map_t *m);
/** @brief Remove every entry, keeping the slot array for reuse. */
void es_map_clear(es_map_t *m);
/** @brief Remove every entry and free the slot array; the map may be reused. */
void es_map_free(es_map_t *m);

#endif
