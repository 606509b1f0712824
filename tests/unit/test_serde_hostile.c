/*
 * test_serde_hostile.c — hostile bodies for the types the golden CartEvent
 * does not have: enums, arrays and maps (block counts, block byte sizes, map
 * keys) and zero-width items.  Each must get its specific error before Avro
 * C sees the bytes, and a well-formed record must still decode afterwards.
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

/* status B, refs [{t:"x"}, {t:"yz"}] in one negative-count block, counts {"k": 5}, nothing [] */
static void valid_record(rec_t *r)
{
    rec_init(r);
    put_long(r, 1);
    put_long(r, -2); /* a block of 2 items ... */
    put_long(r, 5);  /* ... that takes 5 bytes: 02 78 04 79 7a */
    put_str(r, "x");
    put_str(r, "yz");
    put_long(r, 0);
    put_long(r, 1);
    put_str(r, "k");
    put_long(r, 5);
    put_long(r, 0);
    put_long(r, 0);
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
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_DECODE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "enum"));
    rec_init(&r);
    put_long(&r, -1);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_DECODE);
}

static void test_array_block_counts(void)
{
    rec_t r;
    /* a count far beyond what the bytes can hold */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, (int64_t)1 << 40);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
    /* INT64_MIN cannot be negated into a count */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, INT64_MIN);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
    /* negative count followed by a negative block byte size */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, -1);
    put_long(&r, -7);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
    /* negative count whose block byte size runs past the end */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, -1);
    put_long(&r, 1000);
    put_str(&r, "x");
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_TRUNCATED);
    /* a plausible count whose items are missing */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 3);
    put_str(&r, "x");
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_TRUNCATED);
    /* an array item's string length is negative */
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, -3);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
}

static void test_map_keys_and_values(void)
{
    rec_t r;
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, -5); /* key length */
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, (int64_t)1 << 50); /* key length beyond any record */
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_long(&r, 1000); /* key length past the end */
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_TRUNCATED);
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 1);
    put_str(&r, "k"); /* value missing */
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_TRUNCATED);
}

/*
 * Nulls take no bytes, so one byte of count can claim many of them.  A few
 * thousand are fine; blocks that add up to more than the record's bytes plus
 * a fixed allowance are refused, however they are split.
 */
static void test_zero_width_items_are_bounded(void)
{
    rec_t r;
    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 5000);
    put_long(&r, 0);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_OK);

    rec_init(&r);
    put_long(&r, 0);
    put_long(&r, 0);
    put_long(&r, 0);
    for (int i = 0; i < 3; i++)
        put_long(&r, 60000); /* 180000 nulls in 9 bytes */
    put_long(&r, 0);
    CU_ASSERT_EQUAL(decode(&r), ES_ERR_BAD_LENGTH);
    printf("\n    %s", errstr);
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
        {"map key lengths and missing values", test_map_keys_and_values},
        {"zero-width items are bounded per record", test_zero_width_items_are_bounded},
        {"still decodes after hostile input", test_still_decodes_after_hostile_input},
        {NULL, NULL},
    };
    int rc = es_test_run("serde-hostile", cases);
    es_serde_destroy(serde);
    return rc;
}
