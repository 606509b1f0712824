/*
 * test_serde_flat.c — the one-pass decoder (common/src/avro_flat.c) against
 * Avro C's own reader as the oracle.
 *
 * Every value here is read twice from the same bytes: by es_serde_decode()
 * and by Avro C's generic avro_value_read(), which shares no code with the
 * decoder under test.  The two must be equal (avro_value_equal_fast), render
 * the same JSON (avro_value_to_json, which walks types, branches, sizes and
 * names), and copy into a generic value that again equals the oracle
 * (avro_value_copy, which uses the grab_* methods).  The values come from a
 * seeded generator over a schema with every Avro type (a recursive list, an
 * empty record, extremes of int and long, NaN-free floats), from hand-built
 * bytes Avro C never writes (negative block counts with byte sizes, many
 * blocks, repeated map keys on both sides of the hash threshold, a record
 * large enough to need a second arena chunk), and from random mutations of
 * valid records: whenever the decoder accepts mutated bytes, Avro C must
 * read the same value from them.
 */
#include "avro_flat.h"
#include "escqrs/serde.h"
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID 5

static const char *const schema_json =
    "{\"type\":\"record\",\"name\":\"All\",\"namespace\":\"io.escqrs.test\",\"fields\":["
    "{\"name\":\"n\",\"type\":\"null\"},"
    "{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"i\",\"type\":\"int\"},"
    "{\"name\":\"l\",\"type\":\"long\"},"
    "{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"by\",\"type\":\"bytes\"},"
    "{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F4\",\"size\":4}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\",\"C\"]}},"
    "{\"name\":\"u\",\"type\":[\"null\",\"string\",\"long\","
    "{\"type\":\"record\",\"name\":\"P\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}]},"
    "{\"name\":\"recs\",\"type\":{\"type\":\"array\",\"items\":\"P\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},"
    "{\"name\":\"grid\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":"
    "\"int\"}}},"
    "{\"name\":\"mu\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"E\"]}},"
    "{\"name\":\"list\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"Node\",\"fields\":["
    "{\"name\":\"v\",\"type\":\"int\"},{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}]},"
    "{\"name\":\"empty\",\"type\":{\"type\":\"record\",\"name\":\"Z\",\"fields\":[]}},"
    "{\"name\":\"flags\",\"type\":{\"type\":\"array\",\"items\":\"boolean\"}}]}";

/* A small record of arrays and maps for hand-built bytes. */
static const char *const blocks_json =
    "{\"type\":\"record\",\"name\":\"Blk\",\"namespace\":\"io.escqrs.test\",\"fields\":["
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}}]}";

static char errstr[512];

typedef struct {
    es_serde_t *serde;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t oracle, copy;
    avro_reader_t reader;
} subject_t;

static void subject_open(subject_t *t, const char *json)
{
    t->serde = es_serde_new(NULL, "flat-value", json, false, ID, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->serde);
    CU_ASSERT_FATAL(!avro_schema_from_json_length(json, strlen(json), &t->schema));
    t->iface = avro_generic_class_from_schema(t->schema);
    avro_generic_value_new(t->iface, &t->oracle);
    avro_generic_value_new(t->iface, &t->copy);
    t->reader = avro_reader_memory("", 0);
}

static void subject_close(subject_t *t)
{
    avro_reader_free(t->reader);
    avro_value_decref(&t->oracle);
    avro_value_decref(&t->copy);
    avro_value_iface_decref(t->iface);
    avro_schema_decref(t->schema);
    es_serde_destroy(t->serde);
}

static char *to_json(avro_value_t *v)
{
    char *s = NULL;
    return avro_value_to_json(v, 1, &s) ? NULL : s;
}

/* @p v Avro C-encoded into @p out. */
static void encode(avro_value_t *v, es_buf_t *out)
{
    size_t size = 0;
    CU_ASSERT_FATAL(avro_value_sizeof(v, &size) == 0);
    es_buf_clear(out);
    es_buf_reserve(out, size + 1);
    avro_writer_t w = avro_writer_memory(out->data, (int64_t)size);
    CU_ASSERT_FATAL(avro_value_write(w, v) == 0);
    out->len = size;
    avro_writer_free(w);
}

/* Equal by Avro C's comparison (false for NaN), so also by the bytes they encode to. */
static void assert_same(avro_value_t *want, avro_value_t *have)
{
    es_buf_t a = {0}, b = {0};
    encode(want, &a);
    encode(have, &b);
    CU_ASSERT(a.len == b.len && !memcmp(a.data, b.data, a.len));
    es_buf_free(&a);
    es_buf_free(&b);
}

/*
 * Decode the body @p body of @p len bytes with the serde; when it succeeds,
 * Avro C must read the same value from the same bytes: equal (by Avro C's
 * comparison when @p exact, and by re-encoding always: a mutated float may be
 * NaN), the same JSON where Avro C can render it, and the same again after
 * avro_value_copy into a generic value.  Returns the serde's answer.
 */
static es_err_t check_body(subject_t *t, const uint8_t *body, size_t len, bool exact)
{
    uint8_t *rec = malloc(len + ES_WIRE_HEADER_SIZE);
    avro_value_t *got = NULL;
    rec[0] = ES_WIRE_MAGIC;
    rec[1] = rec[2] = rec[3] = 0;
    rec[4] = ID;
    if (len)
        memcpy(rec + ES_WIRE_HEADER_SIZE, body, len);
    es_err_t err =
        es_serde_decode(t->serde, rec, len + ES_WIRE_HEADER_SIZE, &got, errstr, sizeof(errstr));
    if (!err) {
        avro_value_reset(&t->oracle);
        avro_reader_memory_set_source(t->reader, (const char *)rec + ES_WIRE_HEADER_SIZE,
                                      (int64_t)len);
        CU_ASSERT_FATAL(avro_value_read(t->reader, &t->oracle) == 0);
        if (exact)
            CU_ASSERT(avro_value_equal_fast(&t->oracle, got));
        assert_same(&t->oracle, got);
        char *want = to_json(&t->oracle), *have = to_json(got);
        if (want) /* Avro C cannot render NaN or bytes that are not UTF-8 */
            ES_ASSERT_STR_EQ(have ? have : "(none)", want);
        free(want);
        free(have);
        avro_value_reset(&t->copy);
        CU_ASSERT(avro_value_copy(&t->copy, got) == 0);
        assert_same(&t->oracle, &t->copy);
    }
    free(rec);
    return err;
}

/* ------------------------------------------------------- random values */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int64_t rnd_long(void)
{
    static const int64_t edges[] = {0,  1,         -1,        63,        -64,
                                    64, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};
    return rnd() % 3 ? edges[rnd() % (sizeof(edges) / sizeof(edges[0]))] : (int64_t)rnd();
}

static void rnd_text(char *s, size_t cap)
{
    size_t n = rnd() % 3 ? rnd() % 12 : rnd() % (cap - 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + rnd() % 26);
    s[n] = '\0';
}

static void fill(avro_value_t *v, int depth)
{
    char text[300];
    avro_value_t child;
    size_t n;
    switch (avro_value_get_type(v)) {
    case AVRO_BOOLEAN:
        avro_value_set_boolean(v, (int)(rnd() & 1));
        break;
    case AVRO_INT32:
        avro_value_set_int(v, (int32_t)rnd_long());
        break;
    case AVRO_INT64:
        avro_value_set_long(v, rnd_long());
        break;
    case AVRO_FLOAT:
        avro_value_set_float(v, (float)(int32_t)rnd() / 7.0f);
        break;
    case AVRO_DOUBLE:
        avro_value_set_double(v, (double)(int64_t)rnd() / 3.0);
        break;
    case AVRO_STRING:
        rnd_text(text, sizeof(text));
        avro_value_set_string(v, text);
        break;
    case AVRO_BYTES:
        rnd_text(text, sizeof(text));
        n = strlen(text);
        if (n > 2)
            text[1] = '\0'; /* bytes may hold a NUL */
        avro_value_set_bytes(v, text, n);
        break;
    case AVRO_FIXED:
        avro_value_set_fixed(v, "\x01\x00\xff\x7f", 4);
        break;
    case AVRO_ENUM:
        avro_value_set_enum(v, (int)(rnd() % 3));
        break;
    case AVRO_UNION: {
        size_t branches = avro_schema_union_size(avro_value_get_schema(v));
        int b = depth > 4 ? 0 : (int)(rnd() % branches); /* branch 0 is null where it recurses */
        avro_value_set_branch(v, b, &child);
        fill(&child, depth + 1);
        break;
    }
    case AVRO_RECORD:
        avro_value_get_size(v, &n);
        for (size_t i = 0; i < n; i++) {
            avro_value_get_by_index(v, i, &child, NULL);
            fill(&child, depth + 1);
        }
        break;
    case AVRO_ARRAY:
        n = rnd() % 6;
        for (size_t i = 0; i < n; i++) {
            avro_value_append(v, &child, NULL);
            fill(&child, depth + 1);
        }
        break;
    case AVRO_MAP:
        n = rnd() % 5;
        for (size_t i = 0; i < n; i++) {
            char key[16];
            snprintf(key, sizeof(key), "k%u", (unsigned)(rnd() % 8)); /* repeats collapse */
            avro_value_add(v, key, &child, NULL, NULL);
            fill(&child, depth + 1);
        }
        break;
    default:
        break;
    }
}

/* A random value of @p t's schema, Avro C-encoded into @p out (no header). */
static void random_body(subject_t *t, es_buf_t *out)
{
    avro_value_t v;
    avro_generic_value_new(t->iface, &v);
    fill(&v, 0);
    encode(&v, out);
    avro_value_decref(&v);
}

static void test_random_values_equal_avro_c(void)
{
    subject_t t;
    es_buf_t body = {0};
    subject_open(&t, schema_json);
    for (int i = 0; i < 3000; i++) {
        random_body(&t, &body);
        CU_ASSERT_EQUAL_FATAL(check_body(&t, (const uint8_t *)body.data, body.len, true),
                              ES_ERR_OK);
    }
    es_buf_free(&body);
    subject_close(&t);
}

/*
 * Mutated records: a flipped, dropped, inserted or overwritten byte.  When
 * the decoder accepts the bytes, Avro C must read the same value (check_body);
 * Avro C only reads what the decoder accepted, since it trusts lengths.
 */
static void test_mutations_accepted_only_when_avro_c_agrees(void)
{
    subject_t t;
    es_buf_t body = {0};
    int accepted = 0, refused = 0;
    subject_open(&t, schema_json);
    for (int i = 0; i < 20000; i++) {
        random_body(&t, &body);
        es_buf_reserve(&body, body.len + 1);
        size_t at = body.len ? rnd() % body.len : 0;
        switch (rnd() % 4) {
        case 0:
            if (body.len)
                body.data[at] ^= (char)(1u << (rnd() % 8));
            break;
        case 1:
            if (body.len) {
                memmove(body.data + at, body.data + at + 1, body.len - at - 1);
                body.len--;
            }
            break;
        case 2:
            memmove(body.data + at + 1, body.data + at, body.len - at);
            body.data[at] = (char)rnd();
            body.len++;
            break;
        default:
            if (body.len)
                body.data[at] = (char)rnd();
            break;
        }
        if (check_body(&t, (const uint8_t *)body.data, body.len, false) == ES_ERR_OK)
            accepted++;
        else
            refused++;
    }
    /* both sides of the check ran: neither all accepted nor all refused */
    CU_ASSERT(accepted > 100);
    CU_ASSERT(refused > 100);
    es_buf_free(&body);
    subject_close(&t);
}

/* ------------------------------------------------------ hand-built bytes */

static void put_long(es_buf_t *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    do {
        uint8_t byte = z & 0x7f;
        z >>= 7;
        es_buf_append(b, &(char){(char)(byte | (z ? 0x80 : 0))}, 1);
    } while (z);
}

static void put_str(es_buf_t *b, const char *s)
{
    put_long(b, (int64_t)strlen(s));
    es_buf_append(b, s, strlen(s));
}

static void test_blocks_and_repeated_keys(void)
{
    subject_t t;
    es_buf_t b = {0};
    avro_value_t *got, f;
    size_t n = 0;
    subject_open(&t, blocks_json);

    /* a: a negative-count block with its byte size, then 40 blocks of one item */
    put_long(&b, -2);
    put_long(&b, 2);
    put_long(&b, 1);
    put_long(&b, 2);
    for (int i = 0; i < 40; i++) {
        put_long(&b, 1);
        put_long(&b, 3 + i);
    }
    put_long(&b, 0);
    /*
     * m: k0..k29, then k15..k24 again with new values, in blocks of 7: keys
     * past the 16th are looked up by hash, and k16.. entered it as they came
     */
    for (int i = 0; i < 40; i++) {
        char key[8], val[8];
        if (i % 7 == 0)
            put_long(&b, 40 - i < 7 ? 40 - i : 7);
        snprintf(key, sizeof(key), "k%d", i < 30 ? i : i - 15);
        snprintf(val, sizeof(val), "v%d", i);
        put_str(&b, key);
        put_str(&b, val);
    }
    /* the first key again, by hash; a key with a NUL inside is the part before it: k1 */
    put_long(&b, 2);
    put_str(&b, "k0");
    put_str(&b, "v40");
    put_long(&b, 5);
    es_buf_append(&b, "k1\0zz", 5);
    put_str(&b, "v41");
    put_long(&b, 0);
    CU_ASSERT_EQUAL_FATAL(check_body(&t, (const uint8_t *)b.data, b.len, true), ES_ERR_OK);

    /* independently of the oracle: 42 items, 30 keys, a repeated key holds its last value */
    es_buf_t rec = {0};
    es_buf_append(&rec, (const char[]){0, 0, 0, 0, ID}, 5);
    es_buf_append(&rec, b.data, b.len);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(t.serde, rec.data, rec.len, &got, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    avro_value_get_by_name(got, "a", &f, NULL);
    avro_value_get_size(&f, &n);
    CU_ASSERT_EQUAL(n, 42);
    avro_value_get_by_name(got, "m", &f, NULL);
    avro_value_get_size(&f, &n);
    CU_ASSERT_EQUAL(n, 30);
    avro_value_t v;
    const char *s = NULL, *key = NULL;
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(&f, "k20", &v, NULL), 0);
    avro_value_get_string(&v, &s, &n);
    ES_ASSERT_STR_EQ(s, "v35");
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(&f, "k0", &v, NULL), 0);
    avro_value_get_string(&v, &s, &n);
    ES_ASSERT_STR_EQ(s, "v40");
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(&f, "k1", &v, NULL), 0);
    avro_value_get_string(&v, &s, &n);
    ES_ASSERT_STR_EQ(s, "v41");
    CU_ASSERT_EQUAL(avro_value_get_by_index(&f, 29, &v, &key), 0);
    ES_ASSERT_STR_EQ(key, "k29");
    CU_ASSERT_EQUAL(avro_value_get_by_index(&f, 29, &v, NULL), 0); /* no key asked for */
    avro_value_get_string(&v, &s, &n);
    ES_ASSERT_STR_EQ(s, "v29");
    CU_ASSERT_NOT_EQUAL(avro_value_get_by_index(&f, 30, &v, &key), 0);
    CU_ASSERT_NOT_EQUAL(avro_value_get_by_name(&f, "k30", &v, NULL), 0);
    CU_ASSERT_NOT_EQUAL(avro_value_get_long(&v, &(int64_t){0}), 0); /* a string is not a long */
    es_buf_free(&rec);
    es_buf_free(&b);
    subject_close(&t);
}

/* A record bigger than the arena's first chunk, then a small one, then big again. */
static void test_large_then_small(void)
{
    subject_t t;
    es_buf_t big = {0}, small = {0};
    subject_open(&t, blocks_json);
    put_long(&big, 5000);
    for (int i = 0; i < 5000; i++)
        put_long(&big, (int64_t)i * 1000003);
    put_long(&big, 0);
    put_long(&big, 3000);
    for (int i = 0; i < 3000; i++) {
        char key[16];
        snprintf(key, sizeof(key), "key-%d", i);
        put_str(&big, key);
        put_str(&big, "a value long enough to take some room in the arena");
    }
    put_long(&big, 0);
    put_long(&small, 0);
    put_long(&small, 0);
    for (int round = 0; round < 3; round++) {
        CU_ASSERT_EQUAL(check_body(&t, (const uint8_t *)big.data, big.len, true), ES_ERR_OK);
        CU_ASSERT_EQUAL(check_body(&t, (const uint8_t *)small.data, small.len, true), ES_ERR_OK);
    }
    es_buf_free(&big);
    es_buf_free(&small);
    subject_close(&t);
}

/*
 * The arena the decoder reads values into is reset at every read, so it holds what the
 * largest recent record needed, never the sum of all of them: 10 000 small records after
 * one of 5 000 longs leave it as the big one left it, and after a record that needed
 * 6 MiB the next small one leaves at most 1 MiB (the reset's cap).  Dropping the reset
 * survived every other test (scripts/mutate): the projector's memory would have grown
 * with every event until its reader was destroyed.
 */
static void test_arena_bounded(void)
{
    avro_schema_t schema;
    avro_value_t out;
    const char *what;
    size_t pos;
    CU_ASSERT_FATAL(!avro_schema_from_json_length(blocks_json, strlen(blocks_json), &schema));
    es_flat_t *f = es_flat_new(schema);
    es_buf_t big = {0}, huge = {0}, small = {0};
    put_long(&small, 1);
    put_long(&small, 7);
    put_long(&small, 0);
    put_long(&small, 0);
    for (int n = 0; n < 2; n++) { /* 5 000 longs, then 200 000 */
        es_buf_t *b = n ? &huge : &big;
        int count = n ? 200000 : 5000;
        put_long(b, count);
        for (int i = 0; i < count; i++)
            put_long(b, i);
        put_long(b, 0);
        put_long(b, 0);
    }
    size_t start = es_flat_held(f);
    CU_ASSERT_EQUAL(es_flat_read(f, big.data, big.len, &out, &what, &pos), ES_ERR_OK);
    size_t after_big = es_flat_held(f);
    CU_ASSERT_TRUE(after_big > start);
    for (int i = 0; i < 10000; i++)
        CU_ASSERT_EQUAL_FATAL(es_flat_read(f, small.data, small.len, &out, &what, &pos), ES_ERR_OK);
    size_t after_small = es_flat_held(f);
    CU_ASSERT_TRUE(after_small <= after_big);
    CU_ASSERT_EQUAL(es_flat_read(f, huge.data, huge.len, &out, &what, &pos), ES_ERR_OK);
    size_t after_huge = es_flat_held(f);
    CU_ASSERT_EQUAL(es_flat_read(f, small.data, small.len, &out, &what, &pos), ES_ERR_OK);
    size_t then = es_flat_held(f);
    printf("\n  arena: %zu bytes at first, %zu after 5 000 longs, %zu after 10 000 small "
           "records, %zu after 200 000 longs, %zu after one more small record",
           start, after_big, after_small, after_huge, then);
    CU_ASSERT_TRUE(after_huge > (6u << 20));
    CU_ASSERT_TRUE(then <= (1u << 20));
    es_buf_free(&big);
    es_buf_free(&huge);
    es_buf_free(&small);
    es_flat_destroy(f);
    avro_schema_decref(schema);
}

/* A record of schema_json with every field at its smallest, boolean byte @p b, @p nodes in list. */
static void small_all(es_buf_t *body, uint8_t b, int nodes)
{
    es_buf_clear(body);
    es_buf_append(body, (const char *)&b, 1);                                    /* b */
    es_buf_append(body, "\x00\x00", 2);                                          /* i, l */
    es_buf_append(body, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 12); /* f, d */
    es_buf_append(body, "\x00\x00", 2);                                          /* by, s */
    es_buf_append(body, "\x01\x02\x03\x04", 4);                                  /* fx */
    es_buf_append(body, "\x00\x00", 2);                                          /* e, u */
    es_buf_append(body, "\x00\x00\x00\x00", 4); /* recs, m, grid, mu: empty */
    for (int i = 0; i < nodes; i++) {           /* list: branch 1, v, next ... */
        put_long(body, 1);
        put_long(body, i);
    }
    put_long(body, 0);              /* the last next: null */
    es_buf_append(body, "\x00", 1); /* flags: empty */
}

/* A list nested past the decoder's depth limit is refused; one inside it reads. */
static void test_recursion_depth(void)
{
    subject_t t;
    es_buf_t body = {0};
    subject_open(&t, schema_json);
    small_all(&body, 1, 5);
    CU_ASSERT_EQUAL(check_body(&t, (const uint8_t *)body.data, body.len, true), ES_ERR_OK);
    small_all(&body, 1, 60);
    CU_ASSERT_EQUAL(check_body(&t, (const uint8_t *)body.data, body.len, true), ES_ERR_DECODE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "nesting too deep"));
    es_buf_free(&body);
    subject_close(&t);
}

/*
 * Nesting through arrays counts as well: a record whose one field is an array
 * of itself, one item per level.  Each level is a record, an array and the
 * link back to the record (three steps of depth), so 21 levels read and 22
 * are refused where the 22nd item starts; 100 000 levels (a 200 kB body) are
 * refused at the same byte instead of exhausting the stack.
 */
static void test_recursion_through_arrays(void)
{
    static const char *const tree_json =
        "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"io.escqrs.test\",\"fields\":["
        "{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"T\"}}]}";
    static const struct {
        int levels;
        es_err_t want;
    } cases[] = {{0, ES_ERR_OK}, {21, ES_ERR_OK}, {22, ES_ERR_DECODE}, {100000, ES_ERR_DECODE}};
    subject_t t;
    es_buf_t body = {0};
    subject_open(&t, tree_json);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        es_buf_clear(&body);
        for (int i = 0; i < cases[c].levels; i++)
            put_long(&body, 1); /* a block of one item: the next level */
        for (int i = 0; i <= cases[c].levels; i++)
            put_long(&body, 0); /* each level's array ends */
        es_err_t err = check_body(&t, (const uint8_t *)body.data, body.len, true);
        CU_ASSERT_EQUAL(err, cases[c].want);
        if (cases[c].want)
            ES_ASSERT_STR_EQ(errstr, "schema id 5: nesting too deep at body byte 22");
    }
    es_buf_free(&body);
    subject_close(&t);
}

/*
 * The spec's boolean is one byte, 0 or 1.  Avro C keeps any other byte as
 * true and Java reads it as false, so such a record is refused rather than
 * folded one way here and another way by an analyst's tool.
 */
static void test_boolean_bytes(void)
{
    subject_t t;
    es_buf_t body = {0};
    subject_open(&t, schema_json);
    for (int b = 0; b < 256; b++) {
        small_all(&body, (uint8_t)b, 0);
        es_err_t err = check_body(&t, (const uint8_t *)body.data, body.len, true);
        CU_ASSERT_EQUAL(err, b <= 1 ? ES_ERR_OK : ES_ERR_DECODE);
        if (b > 1)
            CU_ASSERT_PTR_NOT_NULL(
                strstr(errstr, "boolean byte is neither 0 nor 1 at body byte 0"));
    }
    es_buf_free(&body);
    subject_close(&t);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"random values equal Avro C's", test_random_values_equal_avro_c},
        {"mutations accepted only when Avro C agrees",
         test_mutations_accepted_only_when_avro_c_agrees},
        {"blocks and repeated keys", test_blocks_and_repeated_keys},
        {"large then small records", test_large_then_small},
        {"the arena holds what the largest recent record needed, never more", test_arena_bounded},
        {"recursion depth", test_recursion_depth},
        {"recursion through arrays", test_recursion_through_arrays},
        {"boolean bytes", test_boolean_bytes},
        {NULL, NULL},
    };
    return es_test_run("serde_flat", cases);
}
