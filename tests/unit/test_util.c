/*
 * test_util.c — the floor of common/: util.h (checked arithmetic, big-endian
 * integers, deadlines and clocks) and mem.h (buffer codecs and their cursor,
 * FNV-1a, the hash map and its hash, reading files, random bytes and UUIDs), each against an
 * independent model or a known answer, at the edges of its types.
 */
#include "escqrs/mem.h"
#include "escqrs/util.h"
#include "testutil.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_checked_arithmetic(void)
{
    int64_t r;
    int32_t r32;
    uint64_t ru;
    CU_ASSERT_TRUE(es_add_i64(INT64_MAX - 1, 1, &r) && r == INT64_MAX);
    CU_ASSERT_FALSE(es_add_i64(INT64_MAX, 1, &r));
    CU_ASSERT_FALSE(es_add_i64(INT64_MIN, -1, &r));
    CU_ASSERT_TRUE(es_sub_i64(0, INT64_MAX, &r) && r == -INT64_MAX);
    CU_ASSERT_FALSE(es_sub_i64(INT64_MIN, 1, &r));
    CU_ASSERT_TRUE(es_mul_i64(INT64_MAX / 2, 2, &r) && r == INT64_MAX - 1);
    CU_ASSERT_FALSE(es_mul_i64(INT64_MAX / 2 + 1, 2, &r));
    CU_ASSERT_FALSE(es_mul_i64(-1, INT64_MIN, &r));
    CU_ASSERT_TRUE(es_add_i32(INT32_MAX - 2, 2, &r32) && r32 == INT32_MAX);
    CU_ASSERT_FALSE(es_add_i32(INT32_MAX, 1, &r32));
    CU_ASSERT_FALSE(es_add_u64(UINT64_MAX, 1, &ru));
    CU_ASSERT_EQUAL(ES_ARRAY_SIZE((int[7]){0}), 7);
}

/* Big-endian by hand: byte i of the encoding is the value shifted by 8*(n-1-i). */
static void test_big_endian(void)
{
    static const uint64_t vals[] = {
        0, 1, 0xff, 0x100, 0x0102030405060708ULL, INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX};
    for (size_t k = 0; k < ES_ARRAY_SIZE(vals); k++) {
        unsigned char b[8];
        es_be64_put(b, vals[k]);
        for (int i = 0; i < 8; i++)
            CU_ASSERT_EQUAL(b[i], (unsigned char)(vals[k] >> (8 * (7 - i))));
        CU_ASSERT_TRUE(es_be64_get(b) == vals[k]);
        uint32_t v32 = (uint32_t)vals[k];
        es_be32_put(b, v32);
        for (int i = 0; i < 4; i++)
            CU_ASSERT_EQUAL(b[i], (unsigned char)(v32 >> (8 * (3 - i))));
        CU_ASSERT_EQUAL(es_be32_get(b), v32);
    }
    /* encoded integers sort as bytes the way they sort as numbers */
    unsigned char a[8], c[8];
    es_be64_put(a, 255);
    es_be64_put(c, 256);
    CU_ASSERT_TRUE(memcmp(a, c, 8) < 0);
}

static void test_buffer_codecs_and_cursor(void)
{
    es_buf_t b = {0};
    es_buf_put_be64(&b, 0x1122334455667788ULL);
    es_buf_put_be32(&b, 0xdeadbeef);
    es_buf_put_str(&b, "sku", 3);
    es_buf_put_str(&b, "", 0);
    CU_ASSERT_EQUAL(b.len, 8 + 4 + 4 + 3 + 4);
    CU_ASSERT_EQUAL(memcmp(b.data, "\x11\x22\x33\x44\x55\x66\x77\x88\xde\xad\xbe\xef", 12), 0);
    es_cursor_t c;
    size_t n;
    es_cursor_init(&c, b.data, b.len);
    CU_ASSERT_TRUE(es_cursor_be64(&c) == 0x1122334455667788ULL);
    CU_ASSERT_EQUAL(es_cursor_be32(&c), 0xdeadbeef);
    const char *s = es_cursor_str(&c, &n);
    CU_ASSERT_TRUE(n == 3 && !memcmp(s, "sku", 3));
    s = es_cursor_str(&c, &n);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_FALSE(c.bad);
    CU_ASSERT_EQUAL(c.left, 0);
    es_buf_t m = {0}; /* the largest values round-trip through the buffer and the cursor */
    es_buf_put_be64(&m, UINT64_MAX);
    es_buf_put_be32(&m, UINT32_MAX);
    es_buf_put_be64(&m, (uint64_t)INT64_MAX + 1);
    es_cursor_t mc;
    es_cursor_init(&mc, m.data, m.len);
    CU_ASSERT_TRUE(es_cursor_be64(&mc) == UINT64_MAX);
    CU_ASSERT_TRUE(es_cursor_be32(&mc) == UINT32_MAX);
    CU_ASSERT_TRUE(es_cursor_be64(&mc) == (uint64_t)INT64_MAX + 1);
    CU_ASSERT_TRUE((unsigned char)m.data[12] == 0x80 && !mc.bad && mc.left == 0);
    es_buf_free(&m);
    /* past the end: bad, zeroes, and it stays bad */
    CU_ASSERT_TRUE(es_cursor_be64(&c) == 0);
    CU_ASSERT_TRUE(c.bad);
    /* a string whose length passes the bytes left */
    es_buf_t h = {0};
    es_buf_put_be32(&h, 1000);
    es_buf_append(&h, "ab", 2);
    es_cursor_init(&c, h.data, h.len);
    s = es_cursor_str(&c, &n);
    CU_ASSERT_TRUE(c.bad && n == 0 && !strcmp(s, ""));
    /* truncated integers */
    for (size_t cut = 0; cut < 8; cut++) {
        es_cursor_init(&c, b.data, cut);
        CU_ASSERT_TRUE(es_cursor_be64(&c) == 0 && c.bad);
    }
    es_buf_free(&b);
    es_buf_free(&h);
}

static void test_hex(void)
{
    es_buf_t b = {0}, d = {0};
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    es_buf_put_hex(&b, "\x00\x01\xab\xff", 4);
    ES_ASSERT_STR_EQ(b.data, "0001abff");
    es_buf_clear(&b);
    es_buf_put_hex(&b, all, sizeof(all)); /* every byte there and back */
    CU_ASSERT_EQUAL(b.len, 512);
    CU_ASSERT_TRUE(es_hex_decode(b.data, &d));
    CU_ASSERT_TRUE(d.len == 256 && !memcmp(d.data, all, 256));
    CU_ASSERT_TRUE(es_hex_decode("ABcd", &d));
    CU_ASSERT_TRUE(d.len == 2 && (unsigned char)d.data[0] == 0xab &&
                   (unsigned char)d.data[1] == 0xcd);
    CU_ASSERT_TRUE(es_hex_decode("", &d) && d.len == 0);
    CU_ASSERT_FALSE(es_hex_decode("abc", &d)); /* odd length */
    CU_ASSERT_FALSE(es_hex_decode("zz", &d));
    CU_ASSERT_FALSE(es_hex_decode("0g", &d));
    es_buf_free(&b);
    es_buf_free(&d);
}

static void test_fnv1a64(void)
{
    /* the published FNV-1a 64 test vectors */
    CU_ASSERT_TRUE(es_fnv1a64(ES_FNV1A64_INIT, "", 0) == 0xcbf29ce484222325ULL);
    CU_ASSERT_TRUE(es_fnv1a64(ES_FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    CU_ASSERT_TRUE(es_fnv1a64(ES_FNV1A64_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    /* folding in pieces equals folding at once */
    CU_ASSERT_TRUE(es_fnv1a64(es_fnv1a64(ES_FNV1A64_INIT, "foo", 3), "bar", 3) ==
                   es_fnv1a64(ES_FNV1A64_INIT, "foobar", 6));
}

/*
 * The map's hash fills slots as a random function would: 65 536 keys of
 * one family into 65 536 slots by their low 16 bits leave about 1/e of the
 * slots empty (36.8 %; at most 40 % here) and no slot with more than 12; and
 * one bit flipped anywhere in a key flips about half of the low 16 bits
 * (between 6 and 10 on average).  Families: a counter at the end of a view
 * key, at its start, in the middle of a 40-byte key, and short keys of 3-7
 * bytes (the byte-by-byte path).
 */
/* Key @p i of family @p f (test_map_hash_spreads); its length. */
static size_t family_key(char *key, size_t cap, int f, int i)
{
    switch (f) {
    case 0:
        return (size_t)snprintf(key, cap, "cart_view%c%08d", 0, i);
    case 1:
        return (size_t)snprintf(key, cap, "%08d%c.item_stats.counter", i, 0);
    case 2:
        return (size_t)snprintf(key, cap, "cart%c-history-%08d-ver-0", 0, i);
    default: /* 3-7 bytes, distinct (the first two are i's): the byte-by-byte path */
        memcpy(key, &i, sizeof(i));
        key[4] = key[5] = key[6] = (char)(i >> 3);
        return (size_t)(3 + i % 5);
    }
}

static void test_map_hash_spreads(void)
{
    enum { N = 1 << 16, FAMILIES = 4 };
    static uint8_t load[N];
    for (int f = 0; f < FAMILIES; f++) {
        memset(load, 0, sizeof(load));
        int empty = 0, most = 0;
        for (int i = 0; i < N; i++) {
            char key[64];
            size_t len = family_key(key, sizeof(key), f, i);
            uint8_t *slot = &load[es_map_hash(key, len) & (N - 1)];
            if (*slot < 255)
                (*slot)++;
        }
        for (int i = 0; i < N; i++) {
            empty += load[i] == 0;
            most = load[i] > most ? load[i] : most;
        }
        if (empty > N * 40 / 100 || most > 12)
            printf("\n  family %d: %d empty slots, most %d", f, empty, most);
        CU_ASSERT_TRUE(empty <= N * 40 / 100);
        CU_ASSERT_TRUE(most <= 12);
    }
    char key[40];
    memcpy(key, "cart_view\0cart-00000000000000000000000042", sizeof(key));
    for (size_t len = 1; len <= sizeof(key); len++) {
        uint64_t h = es_map_hash(key, len);
        int flipped = 0;
        for (size_t bit = 0; bit < len * 8; bit++) {
            key[bit / 8] ^= (char)(1 << (bit % 8));
            flipped += __builtin_popcountll((es_map_hash(key, len) ^ h) & 0xffff);
            key[bit / 8] ^= (char)(1 << (bit % 8));
        }
        double mean = (double)flipped / (double)(len * 8);
        if (mean < 6 || mean > 10)
            printf("\n  length %zu: %.2f of 16 low bits flip per input bit", len, mean);
        CU_ASSERT_TRUE(mean >= 6 && mean <= 10);
    }
}

/* xorshift64: a repeatable sequence with no dependency */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The value of @p s by an independent reading: 128-bit, whole string; false if not a number. */
static bool model_parse(const char *s, bool allow_minus, __int128 *v)
{
    bool neg = allow_minus && *s == '-';
    size_t n = strlen(s + neg);
    if (n == 0 || n > 30 || strspn(s + neg, "0123456789") != n)
        return false;
    *v = 0;
    for (const char *p = s + neg; *p; p++)
        *v = *v * 10 + (*p - '0');
    *v = neg ? -*v : *v;
    return true;
}

/*
 * es_parse_i64: known answers at the edges of int64 and every shape strtoll()
 * would have taken (spaces, '+', hex, trailing text, clamped overflow), then
 * 200 000 random strings of digits, signs and junk against a 128-bit model.
 */
static void test_parse_i64(void)
{
    int64_t v = 42;
    const char *end;
    CU_ASSERT_TRUE(es_parse_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v) && v == INT64_MAX);
    CU_ASSERT_TRUE(es_parse_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &v) &&
                   v == INT64_MIN);
    CU_ASSERT_TRUE(es_parse_i64("007", 0, 10, &v) && v == 7);
    CU_ASSERT_TRUE(es_parse_i64("-0", -1, 1, &v) && v == 0);
    static const char *const refused[] = {"9223372036854775808",
                                          "-9223372036854775809",
                                          "99999999999999999999",
                                          "",
                                          "-",
                                          "+1",
                                          " 1",
                                          "1 ",
                                          "0x10",
                                          "1e3",
                                          "1.0",
                                          "--1",
                                          "1-",
                                          "\t1",
                                          "１"};
    v = 42;
    for (size_t i = 0; i < ES_ARRAY_SIZE(refused); i++) {
        if (es_parse_i64(refused[i], INT64_MIN, INT64_MAX, &v))
            printf("\n  took '%s' as %" PRId64, refused[i], v);
        CU_ASSERT_FALSE(es_parse_i64(refused[i], INT64_MIN, INT64_MAX, &v));
    }
    CU_ASSERT_EQUAL(v, 42); /* untouched when refused */
    /* a '-' only where negatives are allowed; the range is inclusive at both ends */
    CU_ASSERT_FALSE(es_parse_i64("-0", 0, 10, &v));
    CU_ASSERT_FALSE(es_parse_i64("-1", 0, 10, &v));
    CU_ASSERT_FALSE(es_parse_i64("11", 0, 10, &v));
    CU_ASSERT_TRUE(es_parse_i64("10", 0, 10, &v) && v == 10);
    CU_ASSERT_TRUE(es_parse_i64("-5", -5, -1, &v) && v == -5);
    CU_ASSERT_FALSE(es_parse_i64("-6", -5, -1, &v));
    CU_ASSERT_FALSE(es_parse_i64("0", 1, INT64_MAX, &v));
    /* the prefix form stops after the digits and says where */
    CU_ASSERT_TRUE(es_parse_i64_prefix("12:34", &end, 0, 99, &v) && v == 12 && *end == ':');
    CU_ASSERT_FALSE(es_parse_i64_prefix(":34", &end, 0, 99, &v));
    CU_ASSERT_FALSE(es_parse_i64_prefix("123456789012345678901:0", &end, 0, INT64_MAX, &v));
    CU_ASSERT_EQUAL(*end, ':'); /* past every digit even when out of range */

    static const char alphabet[] = "0123456789999990-+ x.";
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int agreed = 0;
    for (int i = 0; i < 200000; i++) {
        char s[24];
        size_t n = (size_t)(next_rand(&x) % 22);
        for (size_t k = 0; k < n; k++)
            s[k] = alphabet[next_rand(&x) % (sizeof(alphabet) - 1)];
        s[n] = '\0';
        int64_t lo = next_rand(&x) % 4 ? INT64_MIN : 0, hi = next_rand(&x) % 4 ? INT64_MAX : 1000;
        __int128 m;
        bool want = model_parse(s, lo < 0, &m) && m >= lo && m <= hi;
        bool got = es_parse_i64(s, lo, hi, &v);
        if (got != want || (got && v != (int64_t)m))
            printf("\n  '%s' in [%" PRId64 ", %" PRId64 "]: %s", s, lo, hi,
                   got ? "taken" : "refused");
        else
            agreed++;
    }
    CU_ASSERT_EQUAL(agreed, 200000);
}

static int freed;
static void count_free(void *p)
{
    freed++;
    free(p);
}

/* Key @p i: "k", a byte 0..2 (NUL included), the number. */
static size_t map_key(char *key, size_t cap, int i)
{
    return (size_t)snprintf(key, cap, "k%c%d", (char)(i % 3), i);
}

/* The map against a plain array model: 20 000 keys of varied lengths (the
 * empty key and keys with NUL bytes included), replaced, tombstoned, removed
 * (the probe runs of the keys left behind must stay intact), walked, cleared
 * and reused. */
/*
 * Times as users write them (as_of=, until=, --from-time).  Known values (Python's
 * calendar.timegm), every field's edges, and every day of 1970-2400 at each day of the
 * month 1-31 against glibc's timegm and gmtime_r as the model: a day the month lacks
 * (a 30 February, a 29 February of 2100) is refused, where timegm moves it on.
 */
static void test_parse_time(void)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"0", 0},
        {"9223372036854775807", INT64_MAX},
        {"2026-11-22T10:00:00Z", 1795341600000},
        {"2026-11-22t10:00:00z", 1795341600000},
        {"2026-11-22T11:00:00.250+01:00", 1795341600250},
        {"2026-11-22T09:30:00.25-00:30", 1795341600250},
        {"2024-02-29T23:59:59.9999Z", 1709251199999},
        {"9999-12-31T23:59:59.999Z", 253402300799999},
        {"2016-12-31T23:59:60Z", 1483228800000}, /* a leap second: the next minute's first */
        {"1970-01-01T00:30:00+00:30", 0},
    };
    static const char *const bad[] = {
        "",
        "-1",
        "9223372036854775808",
        "2026-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:61Z",
        "2026-1-01T00:00:00Z",
        "2026-01-01T0:00:00Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00+1:00",
        "2026-01-01T00:00:00+01",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+01:60",
        "2026-01-01T00:00:00Zx",
        " 2026-01-01T00:00:00Z",
        "+2026-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01",
        "20260101T000000Z",
    };
    for (size_t i = 0; i < ES_ARRAY_SIZE(good); i++) {
        int64_t ms = -1;
        bool ok = es_parse_time_ms(good[i].s, &ms);
        if (!ok || ms != good[i].ms)
            printf("\n    %s: %s %lld", good[i].s, ok ? "read as" : "refused", (long long)ms);
        CU_ASSERT_TRUE(ok && ms == good[i].ms);
    }
    for (size_t i = 0; i < ES_ARRAY_SIZE(bad); i++) {
        int64_t ms = -1;
        bool ok = es_parse_time_ms(bad[i], &ms);
        if (ok)
            printf("\n    \"%s\" read as %lld", bad[i], (long long)ms);
        CU_ASSERT_FALSE(ok);
    }
    size_t days = 0, wrong = 0;
    for (int y = 1970; y <= 2400; y++) {
        for (int m = 1; m <= 12; m++) {
            for (int d = 1; d <= 31; d++) {
                char s[32];
                struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12};
                time_t t = timegm(&tm);
                struct tm back;
                gmtime_r(&t, &back);
                bool exists = back.tm_mday == d && back.tm_mon == m - 1;
                int64_t ms = -1;
                snprintf(s, sizeof(s), "%04d-%02d-%02dT12:00:00Z", y, m, d);
                bool ok = es_parse_time_ms(s, &ms);
                days += exists;
                if (ok != exists || (ok && ms != (int64_t)t * 1000)) {
                    if (wrong++ < 5)
                        printf("\n    %s: %s", s, ok ? "read" : "refused");
                }
            }
        }
    }
    CU_ASSERT_EQUAL(days, 157420); /* 431 years: 365 * 431 + 105 leap days */
    CU_ASSERT_EQUAL(wrong, 0);
}

static void test_map_against_model(void)
{
    enum { N = 20000 };
    static int model[N]; /* 0: absent; -1: tombstone; else the value */
    es_map_t m = ES_MAP_INIT(count_free);
    uint64_t rng = 42;
    char key[32];
    size_t klen;
    int allocated = 0;
    freed = 0;
    for (int round = 0; round < 3 * N; round++) {
        int i = (int)(next_rand(&rng) % N);
        klen = map_key(key, sizeof(key), i);
        uint64_t what = next_rand(&rng) % 5;
        if (what < 2) {
            int *v = malloc(sizeof(int));
            *v = round + 1;
            allocated++;
            es_map_set(&m, key, klen, v);
            model[i] = round + 1;
        } else if (what == 2) {
            es_map_set(&m, key, klen, NULL);
            model[i] = -1;
        } else if (what == 3) {
            CU_ASSERT_EQUAL(es_map_remove(&m, key, klen), model[i] != 0);
            model[i] = 0;
        } else {
            bool found;
            int *v = es_map_get(&m, key, klen, &found);
            CU_ASSERT_EQUAL(found, model[i] != 0);
            CU_ASSERT_EQUAL(v ? *v : (found ? -1 : 0), model[i]);
        }
    }
    size_t present = 0, pos = 0, walked = 0;
    for (int i = 0; i < N; i++)
        present += model[i] != 0;
    CU_ASSERT_EQUAL(es_map_count(&m), present);
    const void *k;
    size_t kl;
    void **val;
    while (es_map_next(&m, &pos, &k, &kl, &val))
        walked++;
    CU_ASSERT_EQUAL(walked, present);
    for (int i = 0; i < N; i++) {
        bool found;
        klen = map_key(key, sizeof(key), i);
        int *v = es_map_get(&m, key, klen, &found);
        CU_ASSERT_EQUAL(found, model[i] != 0);
        if (model[i] > 0)
            CU_ASSERT_TRUE(v && *v == model[i]);
    }
    /* the empty key is a key */
    es_map_set(&m, "", 0, NULL);
    bool found;
    es_map_get(&m, "", 0, &found);
    CU_ASSERT_TRUE(found);
    /* clear releases every value once and keeps working */
    es_map_clear(&m);
    CU_ASSERT_EQUAL(es_map_count(&m), 0);
    CU_ASSERT_PTR_NULL(es_map_get(&m, "k\0001", 4, &found));
    CU_ASSERT_FALSE(found);
    int *v = malloc(sizeof(int));
    *v = 5;
    allocated++;
    es_map_set(&m, "x", 1, v);
    CU_ASSERT_EQUAL(*(int *)es_map_get(&m, "x", 1, NULL), 5);
    es_map_free(&m);
    /* every value ever stored was released exactly once */
    CU_ASSERT_EQUAL(freed, allocated);
}

static void test_deadline_and_clock(void)
{
    struct timespec now, d;
    for (int64_t ms = 0; ms < 2500; ms += 137) {
        clock_gettime(CLOCK_REALTIME, &now);
        d = es_deadline_in_ms(ms);
        CU_ASSERT_TRUE(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
        int64_t diff =
            ((int64_t)d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
        CU_ASSERT_TRUE(diff >= ms && diff <= ms + 50);
    }
    int64_t a = es_mono_ms();
    usleep(20 * 1000);
    int64_t b = es_mono_ms();
    CU_ASSERT_TRUE(b - a >= 20);
}

static bool is_uuid_v4(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_uuid_v4(void)
{
    enum { N = 2000 };
    static char ids[N][ES_UUID_STR_LEN];
    for (int i = 0; i < N; i++) {
        es_uuid_v4(ids[i]);
        CU_ASSERT_TRUE(is_uuid_v4(ids[i]));
    }
    qsort(ids, N, ES_UUID_STR_LEN, cmp_str);
    int dups = 0;
    for (int i = 1; i < N; i++)
        dups += !strcmp(ids[i - 1], ids[i]);
    CU_ASSERT_EQUAL(dups, 0);
}

static int cmp_16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Repeated 16-byte chunks in @p n chunks (sorted in place). */
static int repeated_chunks(uint8_t *chunks, size_t n)
{
    qsort(chunks, n, 16, cmp_16);
    int dups = 0;
    for (size_t i = 1; i < n; i++)
        dups += !memcmp(chunks + 16 * (i - 1), chunks + 16 * i, 16);
    return dups;
}

static void *draw_chunks(void *arg)
{
    uint8_t *out = arg;
    for (int i = 0; i < 1000; i++)
        es_random_bytes(out + 16 * i, 16);
    return NULL;
}

/*
 * es_random_bytes hands each byte of the kernel's out once: a stream drawn in
 * sizes that straddle the per-thread buffer's refills has no repeated 16-byte
 * chunk and half its bits set; two threads draw nothing in common; and a
 * forked child does not draw what its parent had buffered (both would issue
 * the same ids).
 */
static void test_random_bytes(void)
{
    enum { STREAM = 64 * 1024 };
    static const size_t sizes[] = {3, 16, 41, 64, 1, 65, 300};
    uint8_t *stream = es_malloc(STREAM + 300);
    size_t got = 0;
    for (size_t i = 0; got < STREAM; i++) {
        size_t n = sizes[i % ES_ARRAY_SIZE(sizes)];
        es_random_bytes(stream + got, n);
        got += n;
    }
    size_t bits = 0;
    for (size_t i = 0; i < STREAM; i++)
        bits += (size_t)__builtin_popcount(stream[i]);
    double share = (double)bits / (8.0 * STREAM);
    CU_ASSERT_TRUE(share > 0.49 && share < 0.51);
    CU_ASSERT_EQUAL(repeated_chunks(stream, STREAM / 16), 0);

    uint8_t *two = es_malloc(2 * 16 * 1000);
    pthread_t a, b;
    pthread_create(&a, NULL, draw_chunks, two);
    pthread_create(&b, NULL, draw_chunks, two + 16 * 1000);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CU_ASSERT_EQUAL(repeated_chunks(two, 2 * 1000), 0);

    uint8_t before[16], mine[16], childs[16] = {0};
    es_random_bytes(before, sizeof(before)); /* the buffer holds more than this now */
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        es_random_bytes(childs, sizeof(childs));
        _exit(write(fds[1], childs, sizeof(childs)) == (ssize_t)sizeof(childs) ? 0 : 1);
    }
    es_random_bytes(mine, sizeof(mine));
    CU_ASSERT_EQUAL(read(fds[0], childs, sizeof(childs)), (ssize_t)sizeof(childs));
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_NOT_EQUAL(memcmp(mine, childs, sizeof(mine)), 0);
    free(stream);
    free(two);
}

static void test_now_ms(void)
{
    int64_t a = es_now_ms();
    int64_t t = (int64_t)time(NULL) * 1000;
    int64_t b = es_now_ms();
    CU_ASSERT_TRUE(b >= a);
    CU_ASSERT_TRUE(a > t - 2000 && a < t + 2000);
}

static void test_read_file(void)
{
    char path[256];
    es_test_unique("/tmp/escqrs-test-util", path, sizeof(path));
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite("a\0b", 1, 3, f);
    fclose(f);
    es_buf_t b = {0};
    CU_ASSERT_TRUE(es_buf_read_file(&b, path));
    CU_ASSERT_TRUE(b.len == 3 && !memcmp(b.data, "a\0b", 3) && b.data[3] == '\0');
    char *s = es_read_file(path);
    CU_ASSERT_TRUE(s && !strcmp(s, "a"));
    free(s);
    unlink(path);
    CU_ASSERT_FALSE(es_buf_read_file(&b, path));
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_PTR_NULL(es_read_file(path));
    es_buf_free(&b);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"checked arithmetic at the edges of int32, int64, uint64", test_checked_arithmetic},
        {"strict decimal parsing against a 128-bit model", test_parse_i64},
        {"times as users write them, every day of 1970-2400 against timegm", test_parse_time},
        {"big-endian integers, byte by byte", test_big_endian},
        {"buffer codecs and a cursor that never reads past the end", test_buffer_codecs_and_cursor},
        {"hex there and back, and what is not hex", test_hex},
        {"FNV-1a 64 test vectors", test_fnv1a64},
        {"the hash map against a model", test_map_against_model},
        {"the map's hash spreads keys over slots, every bit counts", test_map_hash_spreads},
        {"deadlines and the monotonic clock", test_deadline_and_clock},
        {"reading whole files", test_read_file},
        {"uuids are canonical v4 and unique", test_uuid_v4},
        {"random bytes are handed out once, across threads and forks", test_random_bytes},
        {"now_ms is the wall clock in ms", test_now_ms},
        {NULL, NULL},
    };
    return es_test_run("util", cases);
}
