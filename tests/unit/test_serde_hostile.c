/*
 * test_serde_hostile.c — hostile bodies for the types the golden CartEvent
 * does not have: enums, arrays and maps (block counts, block byte sizes, map
 * keys) and zero-width items.  Each must get its specific error, and the
 * exact reason and body byte a dead-letter record would carry, and a
 * well-formed record must still decode afterwards.
 * The hostile cases of strings, unions and the wire header are in
 * test_serde.c, next to the golden record they mutate.
 */
#include "escqrs/serde.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#define ID 9

/* Every container type the decoder checks, in one record. */
static const char *const schema_json =
    "{\"type\":\"record\",\"name\":\"H\",\"namespace\":\"io.escqrs.test\",\"fields\":["
    "{\"name\":\"status\",\"type\":{\"type\":\"enum\",\"name\":\"S\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"refs\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"R\",\"fields\":[{\"name\":\"t\",\"type\":\"string\"}]}}},"
    "{\"name\":\"counts\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},"
    "{\"name\":\"nothing\",\"type\":{\"type\":\"array\",\"items\":\"null\"}}]}";

static es_serde_t *serde;
static char errstr[512];

/* A record under construction: the wire header, then body bytes. */
typedef struct {
    uint8_t b[4096];
    size_t n;
} rec_t;

static void rec_init(rec_t *r)
{
    static const uint8_t hdr[] = {0, 0, 0, 0, ID};
    memcpy(r->b, hdr, sizeof(hdr));
    r->n = sizeof(hdr);
}

static void put_byte(rec_t *r, uint8_t v)
{
    r->b[r->n++] = v;
}

/* An Avro long: zigzag, then base-128 varint. */
static void put_long(rec_t *r, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    do {
        uint8_t byte = z & 0x7f;
        z >>= 7;
        put_byte(r, (uint8_t)(byte | (z ? 0x80 : 0)));
    } while (z);
}

static void put_str(rec_t *r, const char *s)
{
    put_long(r, (int64_t)strlen(s));
    memcpy(r->b + r->n, s, strlen(s));
    r->n += strlen(s);
}

static es_err_t decode(const rec_t *r)
{
    avro_value_t *out;
    errstr[0] = '\0';
    return es_serde_decode(serde, r->b, r->n, &out, errstr, sizeof(errstr));
}

/*
 * Decoding @p r is refused with @p err, and the reason is exactly @p what found at body byte
 * @p at: the reason is what a dead-letter record carries, so it must name the fault.
 */
static void expect_refused(const rec_t *r, es_err_t err, const char *what, size_t at)
{
    char want[256];
    snprintf(want, sizeof(want), "schema id %d: %s at body byte %zu", ID, what, at);
    CU_ASSERT_EQUAL(decode(r), err);
    ES_ASSERT_STR_EQ(errstr, want);
}

/* The body bytes written so far: where a fault at the end of them is found. */
static size_t body_len(const rec_t *r)
{
    return r->n - sizeof((uint8_t[]){0, 0, 0, 0, ID});
}

/*
 * status B; refs [{t:"x"}, {t:"yz"}] in one negative-count block whose byte size says
 * @p refs_bytes (5 is true: 02 78 04 79 7a); counts {"k": 5}; nothing: three nulls in a
 * negative-count block whose byte size says @p null_bytes (0 is true).
 */
static void record_with_sizes(rec_t *r, int64_t refs_bytes, int64_t null_bytes)
{
    rec_init(r);
    put_long(r, 1);
    put_long(r, -2);
    put_long(r, refs_bytes);
    put_str(r, "x");
    put_str(r, "yz");
    put_long(r, 0);
    put_long(r, 1);
    put_str(r, "k");
    put_long(r, 5);
    put_long(r, 0);
    put_long(r, -3);
    put_long(r, null_bytes);
    put_long(r, 0);
}

static void valid_record(rec_t *r)
{
    record_with_sizes(r, 5, 0);
}

static void test_valid_record_decodes(void)
{
    rec_t r;
    avro_value_t *out, f, item, t;
    const char *s = NULL;
    size_t sz = 0;
    int sym = -1;
    valid_record(&r);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(serde, r.b, r.n, &out, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    avro_value_get_by_name(out, "status", &f, NULL);
    avro_value_get_enum(&f, &sym);
    CU_ASSERT_EQUAL(sym, 1);
    avro_value_get_by_name(out, "nothing", &f, NULL);
    avro_value_get_size(&f, &sz);
    CU_ASSERT_EQUAL(sz, 3);
    avro_value_get_by_name(out, "refs", &f, NULL);
    avro_value_get_size(&f, &sz);
    CU_ASSERT_EQUAL(sz, 2);
    avro_value_get_by_index(&f, 1, &item, NULL);
    avro_value_get_by_name(&item, "t", &t, NULL);
    avro_value_get_string(&t, &s, &sz);
    ES_ASSERT_STR_EQ(s, "yz");
}

static void test_enum_index_out_of_range(void)
{
    rec_t r;
    rec_init(&r);
    put_long(&r, 2); /* only 0 and 1 exist */
    expect_refused(&r, ES_ERR_DECODE, "enum index out of range", 1);
    rec_init(&r);
    put_long(&r, -1);
    expect_refused(&r, ES_ERR_DECODE, "enum index out of range", 1);
    /* ten bytes with the continuation bit are as long as a varint may be */
    rec_init(&r);
    for (int i = 0; i < 10; i++)
        put_byte(&r, 0xff);
    put_byte(&r, 0x01);
    expect_refused(&r, ES_ERR_DECODE, "varint longer than its type allows", 10);
}

static void test_array_block_counts(void)
{
    rec_t r;
    size_t at;
    /* a count far beyond what the bytes can hold */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, (int64_t)1 << 40);
    expect_refused(&r, ES_ERR_BAD_LENGTH,
                   "more array or map items than the record's bytes can hold", body_len(&r));
    /* INT64_MIN cannot be negated into a count */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, INT64_MIN);
    expect_refused(&r, ES_ERR_BAD_LENGTH, "block count out of range", body_len(&r));
    /* negative count followed by a negative block byte size */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, -1);
    put_long(&r, -7);
    expect_refused(&r, ES_ERR_BAD_LENGTH, "block byte size is negative or runs past the end",
                   body_len(&r));
    /* negative count whose block byte size runs past the end */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, -1);
    put_long(&r, 1000);
    at = body_len(&r);
    put_str(&r, "x");
    expect_refused(&r, ES_ERR_TRUNCATED, "block byte size is negative or runs past the end", at);
    /* a plausible count whose items are missing */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 3);
    put_str(&r, "x");
    expect_refused(&r, ES_ERR_TRUNCATED, "varint runs past the end", body_len(&r));
    /* an array item's string length is negative */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, -3);
    expect_refused(&r, ES_ERR_BAD_LENGTH, "negative or oversized length", body_len(&r));
}

/*
 * A string's length at the edges: INT32_MAX is a length the decoder takes (the record is
 * too short for it), one more is not; a length one byte past the end, after other bytes,
 * is found where the string would start.
 */
static void test_string_lengths_at_their_edges(void)
{
    rec_t r;
    size_t at;
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, INT32_MAX);
    expect_refused(&r, ES_ERR_TRUNCATED, "length runs past the end", body_len(&r));
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, (int64_t)INT32_MAX + 1);
    expect_refused(&r, ES_ERR_BAD_LENGTH, "negative or oversized length", body_len(&r));
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, 3);
    at = body_len(&r);
    put_byte(&r, 'a');
    put_byte(&r, 'b');
    expect_refused(&r, ES_ERR_TRUNCATED, "length runs past the end", at);
}

/*
 * A negative-count block's byte size must be the bytes its items take, as the spec says:
 * a reader that skips the block by it would otherwise land elsewhere than one that reads
 * the items.  Zero is the true size of a block of nulls.
 */
static void test_block_byte_sizes(void)
{
    rec_t r;
    record_with_sizes(&r, 5, 0);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_OK);
    record_with_sizes(&r, 4, 0); /* refs' items end at body byte 8 */
    expect_refused(&r, ES_ERR_DECODE, "block byte size does not match its items", 8);
    record_with_sizes(&r, 6, 0);
    expect_refused(&r, ES_ERR_DECODE, "block byte size does not match its items", 8);
    record_with_sizes(&r, 0, 0); /* 0 is a size like any other */
    expect_refused(&r, ES_ERR_DECODE, "block byte size does not match its items", 8);
    record_with_sizes(&r, 5, 1); /* the nulls take nothing: they end where they start, byte 16 */
    expect_refused(&r, ES_ERR_DECODE, "block byte size does not match its items", 16);
    /* a size of every byte after it is not past the end; one more is */
    size_t rest = body_len(&r) - 3;
    record_with_sizes(&r, (int64_t)rest, 0);
    expect_refused(&r, ES_ERR_DECODE, "block byte size does not match its items", 8);
    record_with_sizes(&r, (int64_t)rest + 1, 0);
    expect_refused(&r, ES_ERR_TRUNCATED, "block byte size is negative or runs past the end", 3);
}

static void test_map_keys_and_values(void)
{
    rec_t r;
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, -5); /* key length */
    expect_refused(&r, ES_ERR_BAD_LENGTH, "negative or oversized length", body_len(&r));
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, (int64_t)1 << 50); /* key length beyond any record */
    expect_refused(&r, ES_ERR_BAD_LENGTH, "negative or oversized length", body_len(&r));
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, 1000); /* key length past the end */
    expect_refused(&r, ES_ERR_TRUNCATED, "length runs past the end", body_len(&r));
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_str(&r, "k"); /* value missing */
    expect_refused(&r, ES_ERR_TRUNCATED, "varint runs past the end", body_len(&r));
}

/*
 * Nulls take no bytes, so one byte of count can claim many of them.  A few
 * thousand are fine; blocks that add up to more than the record's bytes plus
 * a fixed allowance (65 536) are refused, however they are split: here at the
 * second block, 120 000 nulls in a body of 13 bytes.
 */
static void test_zero_width_items_are_bounded(void)
{
    rec_t r;
    size_t at = 0;
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 5000);
    put_long(&r, 0);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_OK);
    /* the allowance's edge: a body of 7 bytes holds 7 + 65536 nulls, not one more */
    for (int64_t n = 65543; n <= 65544; n++) {
        rec_init(&r);
        put_long(&r, 0);
        put_long(&r, 0);
        put_long(&r, 0);
        put_long(&r, n);
        put_long(&r, 0);
        CU_ASSERT_EQUAL_FATAL(body_len(&r), 7);
        if (n == 65543) {
            CU_ASSERT_EQUAL(decode(&r), ES_ERR_OK);
        } else {
            expect_refused(&r, ES_ERR_BAD_LENGTH,
                           "more array or map items than the record's bytes can hold", 6);
        }
    }

    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 0);
    for (int i = 0; i < 3; i++) {
        put_long(&r, 60000); /* 180000 nulls in 9 bytes */
        if (i == 1)
            at = body_len(&r);
    }
    put_long(&r, 0);
    expect_refused(&r, ES_ERR_BAD_LENGTH,
                   "more array or map items than the record's bytes can hold", at);
}

static void test_still_decodes_after_hostile_input(void)
{
    rec_t r;
    valid_record(&r);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_OK);
    /* and every proper prefix of it is refused without a crash */
    for (size_t n = ES_WIRE_HEADER_SIZE; n < r.n; n++) {
        rec_t p = r;
        p.n = n;
        es_err_t err = decode(&p);
        CU_ASSERT_TRUE(err == ES_ERR_TRUNCATED || err == ES_ERR_BAD_LENGTH);
    }
}

int main(void)
{
    serde = es_serde_new(NULL, "test-value", schema_json, false, ID, errstr, sizeof(errstr));
    if (!serde) {
        fprintf(stderr, "serde: %s\n", errstr);
        return 1;
    }
    static const es_test_case_t cases[] = {
        {"a valid record of every container decodes", test_valid_record_decodes},
        {"enum index out of range", test_enum_index_out_of_range},
        {"array block counts and byte sizes", test_array_block_counts},
        {"string lengths at their edges", test_string_lengths_at_their_edges},
        {"block byte sizes match their items", test_block_byte_sizes},
        {"map key lengths and missing values", test_map_keys_and_values},
        {"zero-width items are bounded per record", test_zero_width_items_are_bounded},
        {"still decodes after hostile input", test_still_decodes_after_hostile_input},
        {NULL, NULL},
    };
    int rc = es_test_run("serde-hostile", cases);
    es_serde_destroy(serde);
    return rc;
}
