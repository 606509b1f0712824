/*
 * test_serde.c — the Confluent wire format, byte for byte.
 *
 * The golden record below is written out by hand from the Avro spec (it is
 * the worked example in docs/wire-format.md), not produced by our encoder:
 * encoding the same event must give exactly these bytes, and decoding them
 * must give the event back.  Hostile records each get their specific error.
 */
#include "escqrs/record.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "shipped.h"
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define GOLDEN_ID 7

/* CartEvent{event_id "00000000-0000-4000-8000-000000000001", cart_id "c1", version 1,
 *           occurred_at 1700000000000, command_id "k1", correlation_id "k1",
 *           payload ItemAdded{sku "A", quantity 2, unit_price_cents 250},
 *           principal {subject "u1", client_id null},
 *           traceparent "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 *           tracestate null} with schema id 7 */
static const uint8_t golden[] = {
    0x00, 0x00, 0x00, 0x00, 0x07,                                     /* magic, id 7 */
    0x48, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x2d, 0x30, /* event_id (36) */
    0x30, 0x30, 0x30, 0x2d, 0x34, 0x30, 0x30, 0x30, 0x2d, 0x38, 0x30, 0x30, 0x30, 0x2d, 0x30,
    0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31, 0x04, 0x63, 0x31, /* cart_id
                                                                                           "c1" */
    0x02,                               /* version 1 */
    0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, /* occurred_at 1700000000000 */
    0x04, 0x6b, 0x31,                   /* command_id "k1" */
    0x02, 0x04, 0x6b, 0x31,             /* correlation_id: branch 1, "k1" */
    0x00,                               /* payload: branch 0, ItemAdded */
    0x02, 0x41,                         /* sku "A" */
    0x04,                               /* quantity 2 */
    0xf4, 0x03,                         /* unit_price_cents 250 */
    0x02,                               /* principal: branch 1, Principal */
    0x04, 0x75, 0x31,                   /* subject "u1" */
    0x00,                               /* client_id: null branch */
    0x02, 0x6e,                         /* traceparent: branch 1, length 55 */
    0x30, 0x30, 0x2d, 0x34, 0x62, 0x66, 0x39, 0x32, 0x66, 0x33, 0x35, 0x37, 0x37, 0x62, 0x33,
    0x34, 0x64, 0x61, 0x36, 0x61, 0x33, 0x63, 0x65, 0x39, 0x32, 0x39, 0x64, 0x30, 0x65, 0x30,
    0x65, 0x34, 0x37, 0x33, 0x36, 0x2d, 0x30, 0x30, 0x66, 0x30, 0x36, 0x37, 0x61, 0x61, 0x30,
    0x62, 0x61, 0x39, 0x30, 0x32, 0x62, 0x37, 0x2d, 0x30, 0x31, /* "00-4bf9...-01" */
    0x00,                                                       /* tracestate: null branch */
};

static es_serde_t *serde;
static char errstr[512];

static void set_str(avro_value_t *rec, const char *field, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_string(&f, v);
}

static void build_golden_event(avro_value_t *ev)
{
    avro_value_t f, branch, payload;
    es_serde_new_value(serde, ev);
    set_str(ev, "event_id", "00000000-0000-4000-8000-000000000001");
    set_str(ev, "cart_id", "c1");
    avro_value_get_by_name(ev, "version", &f, NULL);
    avro_value_set_long(&f, 1);
    avro_value_get_by_name(ev, "occurred_at", &f, NULL);
    avro_value_set_long(&f, 1700000000000LL);
    set_str(ev, "command_id", "k1");
    avro_value_get_by_name(ev, "correlation_id", &f, NULL);
    avro_value_set_branch(&f, 1, &branch);
    avro_value_set_string(&branch, "k1");
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_set_branch(&f, 0, &payload);
    set_str(&payload, "sku", "A");
    avro_value_get_by_name(&payload, "quantity", &f, NULL);
    avro_value_set_int(&f, 2);
    avro_value_get_by_name(&payload, "unit_price_cents", &f, NULL);
    avro_value_set_long(&f, 250);
    es_principal_set(ev, "u1", NULL);
    avro_value_get_by_name(ev, "traceparent", &f, NULL);
    avro_value_set_branch(&f, 1, &branch);
    avro_value_set_string(&branch, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    avro_value_get_by_name(ev, "tracestate", &f, NULL);
    avro_value_set_branch(&f, 0, &branch);
    avro_value_set_null(&branch);
}

static void test_encode_golden(void)
{
    avro_value_t ev;
    es_buf_t out = {0};
    build_golden_event(&ev);
    CU_ASSERT_EQUAL_FATAL(es_serde_encode(serde, &ev, &out, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(out.len, sizeof(golden));
    CU_ASSERT_EQUAL(memcmp(out.data, golden, sizeof(golden)), 0);
    es_buf_free(&out);
    avro_value_decref(&ev);
}

static void test_decode_golden(void)
{
    avro_value_t *got = NULL, expect, f, payload;
    int32_t qty = 0;
    size_t disc = 99;
    const char *sku = NULL;
    size_t sz;
    CU_ASSERT_EQUAL_FATAL(
        es_serde_decode(serde, golden, sizeof(golden), &got, errstr, sizeof(errstr)), ES_ERR_OK);
    build_golden_event(&expect);
    CU_ASSERT_TRUE(avro_value_equal(&expect, got));
    avro_value_get_by_name(got, "payload", &f, NULL);
    avro_value_get_discriminant(&f, (int *)&disc);
    CU_ASSERT_EQUAL(disc, 0);
    avro_value_get_current_branch(&f, &payload);
    avro_value_get_by_name(&payload, "sku", &f, NULL);
    avro_value_get_string(&f, &sku, &sz);
    ES_ASSERT_STR_EQ(sku, "A");
    avro_value_get_by_name(&payload, "quantity", &f, NULL);
    avro_value_get_int(&f, &qty);
    CU_ASSERT_EQUAL(qty, 2);
    avro_value_decref(&expect);
    int id = 0;
    CU_ASSERT_EQUAL(es_wire_schema_id(golden, sizeof(golden), &id), ES_ERR_OK);
    CU_ASSERT_EQUAL(id, GOLDEN_ID);
}

static es_err_t decode_bytes(const uint8_t *b, size_t len)
{
    avro_value_t *got;
    errstr[0] = '\0';
    return es_serde_decode(serde, b, len, &got, errstr, sizeof(errstr));
}

static void test_hostile(void)
{
    uint8_t b[sizeof(golden) + 16];

    /* wrong magic byte */
    memcpy(b, golden, sizeof(golden));
    b[0] = 0x01;
    CU_ASSERT_EQUAL(decode_bytes(b, sizeof(golden)), ES_ERR_BAD_MAGIC);
    /* empty and header-only records */
    CU_ASSERT_EQUAL(decode_bytes(golden, 0), ES_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(decode_bytes(golden, 3), ES_ERR_TRUNCATED);
    /* unknown schema id */
    memcpy(b, golden, sizeof(golden));
    b[4] = 0x63;
    CU_ASSERT_EQUAL(decode_bytes(b, sizeof(golden)), ES_ERR_UNKNOWN_SCHEMA);
    /* truncated body: every proper prefix of the body fails, none crashes */
    for (size_t n = ES_WIRE_HEADER_SIZE; n < sizeof(golden); n++) {
        es_err_t err = decode_bytes(golden, n);
        CU_ASSERT_TRUE(err == ES_ERR_TRUNCATED || err == ES_ERR_BAD_LENGTH);
    }
    /* negative string length (zigzag 0x01 = -1) for event_id */
    memcpy(b, golden, sizeof(golden));
    b[5] = 0x01;
    CU_ASSERT_EQUAL(decode_bytes(b, sizeof(golden)), ES_ERR_BAD_LENGTH);
    /* huge string length: 2^62 as a 9-byte varint */
    static const uint8_t huge[] = {0,    0,    0,    0,    GOLDEN_ID, 0x80, 0x80,
                                   0x80, 0x80, 0x80, 0x80, 0x80,      0x80, 0x7f};
    CU_ASSERT_EQUAL(decode_bytes(huge, sizeof(huge)), ES_ERR_BAD_LENGTH);
    /* length that runs past the end */
    memcpy(b, golden, sizeof(golden));
    b[5] = 0xfe; /* 255 (zigzag 0x1fe, two bytes) > bytes left */
    b[6] = 0x03;
    CU_ASSERT_EQUAL(decode_bytes(b, sizeof(golden)), ES_ERR_TRUNCATED);
    /* union branch out of range for payload */
    memcpy(b, golden, sizeof(golden));
    b[59] = 0x06; /* branch 3 of 3 */
    CU_ASSERT_EQUAL(decode_bytes(b, sizeof(golden)), ES_ERR_DECODE);
    /* varint that never ends */
    static const uint8_t endless[] = {0,    0,    0,    0,    GOLDEN_ID, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff,      0xff, 0xff, 0x01};
    CU_ASSERT_EQUAL(decode_bytes(endless, sizeof(endless)), ES_ERR_DECODE);
    /* trailing garbage */
    memcpy(b, golden, sizeof(golden));
    b[sizeof(golden)] = 0x00;
    CU_ASSERT_EQUAL(decode_bytes(b, sizeof(golden) + 1), ES_ERR_DECODE);
    /* and the golden record still decodes after all that */
    CU_ASSERT_EQUAL(decode_bytes(golden, sizeof(golden)), ES_ERR_OK);
}

/* The worked example in docs/wire-format.md: the hex dump after "is these N bytes". */
static size_t docs_example_bytes(uint8_t *out, size_t cap)
{
    char path[1024], line[512];
    size_t n = 0;
    int state = 0; /* 0 before the example, 1 before its code fence, 2 inside it */
    snprintf(path, sizeof(path), "%s/docs/wire-format.md", ESCQRS_SOURCE_DIR);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    while (fgets(line, sizeof(line), fp) && state < 3) {
        if (state == 0 && strstr(line, "is these ") && strstr(line, " bytes"))
            state = 1;
        else if (state == 1 && !strncmp(line, "```", 3))
            state = 2;
        else if (state == 2 && !strncmp(line, "```", 3))
            state = 3;
        else if (state == 2) {
            char *save = NULL;
            for (char *tok = strtok_r(line, " \t\n", &save); tok;
                 tok = strtok_r(NULL, " \t\n", &save)) {
                unsigned v;
                if (strlen(tok) != 2 || !isxdigit((unsigned char)tok[0]) ||
                    !isxdigit((unsigned char)tok[1]) || sscanf(tok, "%2x", &v) != 1)
                    break; /* the rest of the line is commentary */
                if (n < cap)
                    out[n] = (uint8_t)v;
                n++;
            }
        }
    }
    fclose(fp);
    return n;
}

/* The documentation and the encoder cannot drift apart: same bytes. */
static void test_docs_example_is_golden(void)
{
    uint8_t doc[256];
    size_t n = docs_example_bytes(doc, sizeof(doc));
    CU_ASSERT_EQUAL(n, sizeof(golden));
    CU_ASSERT_TRUE(n == sizeof(golden) && !memcmp(doc, golden, n));
}

static void test_embedded_schemas(void)
{
    static const char *const names[] = {"cart.commands", "cart.events", "account.commands",
                                        "account.events", "command-result"};
    for (size_t i = 0; i < 5; i++) {
        avro_schema_t s = NULL;
        CU_ASSERT_EQUAL(es_schema_parse(names[i], &s, errstr, sizeof(errstr)), ES_ERR_OK);
        if (s)
            avro_schema_decref(s);
    }
    CU_ASSERT_PTR_NULL(es_schema_text("no.such"));
    CU_ASSERT_PTR_NOT_NULL(strstr(es_schema_text("cart.events"), "\"logicalType\": \"uuid\""));
}

/* es_avro_to_json: every Avro type as plain JSON (unions unwrapped, enums by symbol). */
static void test_plain_json(void)
{
    static const char *const sch =
        "{\"type\":\"record\",\"name\":\"All\",\"fields\":["
        "{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"b\",\"type\":\"bytes\"},"
        "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"F2\",\"size\":2}},"
        "{\"name\":\"i\",\"type\":\"int\"},{\"name\":\"l\",\"type\":\"long\"},"
        "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"t\",\"type\":\"boolean\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
        "{\"name\":\"u0\",\"type\":[\"null\",\"string\"]},{\"name\":\"u1\",\"type\":[\"null\","
        "\"long\"]},"
        "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
        "{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":\"In\",\"fields\":"
        "[{\"name\":\"q\",\"type\":\"long\"}]}}]}";
    avro_schema_t schema;
    CU_ASSERT_EQUAL_FATAL(avro_schema_from_json_length(sch, strlen(sch), &schema), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t v, f, br, el;
    avro_generic_value_new(iface, &v);
    avro_value_get_by_name(&v, "s", &f, NULL);
    avro_value_set_string(&f, "h\"i");
    avro_value_get_by_name(&v, "b", &f, NULL);
    avro_value_set_bytes(&f, "\x00\xff", 2);
    avro_value_get_by_name(&v, "x", &f, NULL);
    avro_value_set_fixed(&f, "\x12\xab", 2);
    avro_value_get_by_name(&v, "i", &f, NULL);
    avro_value_set_int(&f, INT32_MIN);
    avro_value_get_by_name(&v, "l", &f, NULL);
    avro_value_set_long(&f, INT64_MAX);
    avro_value_get_by_name(&v, "d", &f, NULL);
    avro_value_set_double(&f, 0.5);
    avro_value_get_by_name(&v, "t", &f, NULL);
    avro_value_set_boolean(&f, 1);
    avro_value_get_by_name(&v, "e", &f, NULL);
    avro_value_set_enum(&f, 1);
    avro_value_get_by_name(&v, "u0", &f, NULL);
    avro_value_set_branch(&f, 0, &br);
    avro_value_set_null(&br);
    avro_value_get_by_name(&v, "u1", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_long(&br, -7);
    avro_value_get_by_name(&v, "a", &f, NULL);
    avro_value_append(&f, &el, NULL);
    avro_value_set_int(&el, 3);
    avro_value_get_by_name(&v, "m", &f, NULL);
    avro_value_add(&f, "k", &el, NULL, NULL);
    avro_value_set_string(&el, "v");
    avro_value_get_by_name(&v, "r", &f, NULL);
    avro_value_get_by_name(&f, "q", &el, NULL);
    avro_value_set_long(&el, 9);
    json_t *got = es_avro_to_json(&v);
    json_t *want = json_loads("{\"s\":\"h\\\"i\",\"b\":\"00ff\",\"x\":\"12ab\","
                              "\"i\":-2147483648,\"l\":9223372036854775807,\"d\":0.5,"
                              "\"t\":true,\"e\":\"B\",\"u0\":null,\"u1\":-7,\"a\":[3],"
                              "\"m\":{\"k\":\"v\"},\"r\":{\"q\":9}}",
                              0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    char *g = json_dumps(got, JSON_COMPACT);
    CU_ASSERT_TRUE(json_equal(got, want));
    if (!json_equal(got, want))
        fprintf(stderr, "got %s\n", g);
    free(g);
    json_decref(got);
    json_decref(want);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
}

int main(void)
{
    es_shipped_modules_register(); /* before es_test_run(): the serde below needs cart.events */
    serde = es_serde_new(NULL, "cart.events-value", es_schema_text("cart.events"), false, GOLDEN_ID,
                         errstr, sizeof(errstr));
    if (!serde) {
        fprintf(stderr, "serde: %s\n", errstr);
        return 1;
    }
    static const es_test_case_t cases[] = {
        {"encode gives the golden bytes", test_encode_golden},
        {"golden bytes decode to the event", test_decode_golden},
        {"hostile records get specific errors", test_hostile},
        {"docs/wire-format.md shows the golden bytes", test_docs_example_is_golden},
        {"schemas are embedded", test_embedded_schemas},
        {"values as plain JSON", test_plain_json},
        {NULL, NULL},
    };
    int rc = es_test_run("serde", cases);
    es_serde_destroy(serde);
    return rc;
}
