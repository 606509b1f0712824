/**
 * @file util.h
 * @brief Small helpers with no dependency but the C library: checked integer
 *        arithmetic, strict decimal and time parsing, array sizes, big-endian
 *        integers, deadlines and clocks, random bytes and UUIDs.
 *
 * Layering: this header is the floor of common/; it includes no other escqrs
 * header and any file, pure or not, may include it.
 *
 * Checked arithmetic: money and quantities are int64 (cents) or int32
 * (pieces) on the wire; a sum that does not fit must be refused with a
 * reason, never wrapped (a balance of INT64_MAX + 1 cents must not become
 * negative in the permanent log).  Each helper stores the result and
 * returns true only when it fits.
 */
#ifndef ESCQRS_UTIL_H
#define ESCQRS_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ES_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/** @brief *out = a + b; false (and *out unspecified) when it does not fit an int64. */
static inline bool es_add_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/** @brief *out = a - b; false when it does not fit an int64. */
static inline bool es_sub_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_sub_overflow(a, b, out);
}

/** @brief *out = a × b; false when it does not fit an int64. */
static inline bool es_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/** @brief *out = a + b; false when it does not fit an int32. */
static inline bool es_add_i32(int32_t a, int32_t b, int32_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/** @brief *out = a + b; false when it does not fit a uint64. */
static inline bool es_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/**
 * @brief Read a decimal integer at the start of @p s: ASCII digits, after a
 *        '-' only when @p min is negative; nothing before them (no space, no
 *        '+', no "0x").  *end is set after the last digit read.  False when no
 *        digit comes first or the value lies outside [@p min, @p max]; a value
 *        past int64 is out of range, never clamped.  *out is written only
 *        when true.
 *
 * The one home of numbers read from outside: HTTP query strings and headers,
 * configuration, command lines.  strtoll() skips spaces, takes a '+' and
 * clamps an overflow to INT64_MAX with only errno to tell, so that
 * "0:99999999999999999999" read as a position far away instead of a bad one.
 */
static inline bool es_parse_i64_prefix(const char *s, const char **end, int64_t min, int64_t max,
                                       int64_t *out)
{
    bool neg = min < 0 && *s == '-';
    const char *p = s + neg;
    int64_t v = 0; /* negated while read: -INT64_MIN does not fit */
    bool fits = true;
    *end = s;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++)
        fits = fits && es_mul_i64(v, 10, &v) && es_sub_i64(v, *p - '0', &v);
    *end = p;
    if (!fits || (!neg && v == INT64_MIN))
        return false;
    v = neg ? v : -v;
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/** @brief es_parse_i64_prefix() over the whole of @p s: nothing may follow the digits.
 *         *out is left alone when false (it may hold a default). */
static inline bool es_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *end;
    int64_t v;
    if (!es_parse_i64_prefix(s, &end, min, max, &v) || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* Big-endian integers: stored keys and values sort and read the same on
 * every machine (RocksDB compares keys as bytes). */

/*
 * One unaligned load or store and a byte swap each: a loop of byte stores
 * followed by a wider load of the same bytes stalls on store forwarding,
 * and the cart_view fold spent more than half its own time there (perf
 * annotate, issue 17).  ES_BE64/ES_BE32 swap between the machine's order and
 * big-endian (either way: a swap is its own inverse); macros over compiler
 * built-ins, so mem.h's extern inline functions may use them too (C11
 * 6.7.4p3 forbids those to call a static function such as glibc's htobe64).
 */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ES_BE64(v) ((uint64_t)(v))
#define ES_BE32(v) ((uint32_t)(v))
#else
#define ES_BE64(v) __builtin_bswap64((uint64_t)(v))
#define ES_BE32(v) __builtin_bswap32((uint32_t)(v))
#endif

/** @brief Write @p v at @p p as 8 bytes, most significant first. */
static inline void es_be64_put(void *p, uint64_t v)
{
    v = ES_BE64(v);
    memcpy(p, &v, sizeof(v));
}

/** @brief Read 8 bytes at @p p, most significant first. */
static inline uint64_t es_be64_get(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return ES_BE64(v);
}

/** @brief Write @p v at @p p as 4 bytes, most significant first. */
static inline void es_be32_put(void *p, uint32_t v)
{
    v = ES_BE32(v);
    memcpy(p, &v, sizeof(v));
}

/** @brief Read 4 bytes at @p p, most significant first. */
static inline uint32_t es_be32_get(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return ES_BE32(v);
}

/**
 * @brief The CLOCK_REALTIME instant @p ms milliseconds from now, for
 *        pthread_cond_timedwait() (whose default clock it is).
 */
static inline struct timespec es_deadline_in_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/** @brief Milliseconds of CLOCK_MONOTONIC: for durations and timeouts, never dates. */
static inline int64_t es_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** @brief Seconds of CLOCK_MONOTONIC with nanoseconds: a short duration for a histogram. */
static inline double es_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/** @brief Milliseconds since the Unix epoch (wall clock): for dates, never durations. */
static inline int64_t es_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/**
 * @brief A time as users write it: milliseconds since the epoch (digits only,
 *        up to INT64_MAX), or an RFC 3339 date-time such as
 *        "2026-11-22T10:00:00Z", "2026-11-22T11:00:00.250+01:00" (every field
 *        at its width, the day within its month, fractions past milliseconds
 *        cut).  False for anything else or a time before 1970 (timeparse.c).
 */
bool es_parse_time_ms(const char *s, int64_t *ms);

#define ES_UUID_STR_LEN 37 /* 36 characters and a NUL */

/** @brief A random (version 4) UUID in its canonical text form (es_random_bytes()). */
void es_uuid_v4(char out[ES_UUID_STR_LEN]);

/** @brief @p len bytes of the kernel's CSPRNG (getrandom(2)), each handed out once, through a
 *         per-thread buffer (random.c): for identifiers, not for keys. */
void es_random_bytes(void *out, size_t len);

/** @brief The wait after @p ms in a doubling back-off: twice as long, at most @p max_ms. */
static inline int es_backoff_next(int ms, int max_ms)
{
    return ms > max_ms / 2 ? max_ms : ms * 2;
}

#endif
