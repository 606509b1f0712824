/*
 * test_serde_resolve.c — schema resolution without a registry.
 *
 * Writer schemas are made known by id with es_serde_add_writer(), so the
 * resolution rules are checked here byte for byte, and 0100 only has to show
 * the same against the real registry.  The cart.events v2 (adds a field with
 * a default) and v3 (changes a field's type) files are the ones 0100 uses.
 * Readers that add an optional field (["null", T], default null) — at the
 * envelope's top level, inside a payload record, as an optional record — read
 * old records with the field on the null branch; [T, "null"] defaults are for
 * the first branch; same-named records in two namespaces keep their own
 * defaults.
 */
#include "escqrs/envelope.h"
#include "escqrs/record.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char errstr[512];
static char *v2_text, *v3_text;

/* A file of the source tree into @p b; returns b->data or NULL. */
static char *slurp_len(const char *rel, es_buf_t *b)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", ESCQRS_SOURCE_DIR, rel);
    if (!es_buf_read_file(b, path)) {
        es_buf_free(b);
        return NULL;
    }
    return b->data;
}

static char *slurp(const char *rel)
{
    es_buf_t b = {0};
    return slurp_len(rel, &b);
}

static void set_field_str(avro_value_t *rec, const char *name, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, name, &f, NULL);
    avro_value_set_string(&f, v);
}

static const char *field_str(avro_value_t *rec, const char *name)
{
    avro_value_t f;
    const char *s = NULL;
    size_t sz;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, &s, &sz))
        return NULL;
    return s;
}

/* A cart event (ItemRemoved) in a value of any cart.events version. */
static void fill_event(avro_value_t *ev, const char *version_as_text)
{
    avro_value_t f, br, p;
    set_field_str(ev, "event_id", "00000000-0000-4000-8000-000000000002");
    set_field_str(ev, "cart_id", "c9");
    avro_value_get_by_name(ev, "version", &f, NULL);
    if (version_as_text)
        avro_value_set_string(&f, version_as_text);
    else
        avro_value_set_long(&f, 4);
    avro_value_get_by_name(ev, "occurred_at", &f, NULL);
    avro_value_set_long(&f, 1700000000123LL);
    set_field_str(ev, "command_id", "k9");
    avro_value_get_by_name(ev, "correlation_id", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_string(&br, "corr-1");
    es_principal_set(ev, "u1", "app"); /* every version since the principal has it */
    /* the trace context, in the versions that have it */
    es_opt_string_set(ev, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    es_opt_string_set(ev, "tracestate", NULL);
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_set_branch(&f, 1, &p);
    set_field_str(&p, "sku", "SKU-1");
    avro_value_get_by_name(&p, "quantity", &f, NULL);
    avro_value_set_int(&f, 3);
}

/* Encode one event with @p schema_json under @p id (registry-less serde). */
static void encode_with(const char *schema_json, int id, const char *version_as_text,
                        const char *channel, es_buf_t *out)
{
    avro_value_t ev, f;
    es_serde_t *w =
        es_serde_new(NULL, "cart.events-value", schema_json, false, id, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    es_serde_new_value(w, &ev);
    fill_event(&ev, version_as_text);
    if (channel) {
        avro_value_get_by_name(&ev, "channel", &f, NULL);
        avro_value_set_string(&f, channel);
    }
    CU_ASSERT_EQUAL(es_serde_encode(w, &ev, out, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&ev);
    es_serde_destroy(w);
}

static void check_common_fields(avro_value_t *got)
{
    avro_value_t f, p;
    int64_t v = 0;
    ES_ASSERT_STR_EQ(field_str(got, "cart_id"), "c9");
    avro_value_get_by_name(got, "version", &f, NULL);
    avro_value_get_long(&f, &v);
    CU_ASSERT_EQUAL(v, 4);
    avro_value_get_by_name(got, "payload", &f, NULL);
    avro_value_get_current_branch(&f, &p);
    ES_ASSERT_STR_EQ(avro_schema_name(avro_value_get_schema(&p)), "ItemRemoved");
    ES_ASSERT_STR_EQ(field_str(&p, "sku"), "SKU-1");
    avro_value_get_by_name(got, "correlation_id", &f, NULL);
    avro_value_get_current_branch(&f, &p);
    const char *s = NULL;
    size_t sz;
    avro_value_get_string(&p, &s, &sz);
    ES_ASSERT_STR_EQ(s, "corr-1");
}

static void test_old_record_new_reader_gets_default(void)
{
    es_buf_t rec = {0};
    avro_value_t *got = NULL;
    encode_with(es_schema_text("cart.events"), 1, NULL, NULL, &rec);
    es_serde_t *v2 = es_serde_new(NULL, "cart.events-value", v2_text, false, 2, errstr, 512);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2);
    CU_ASSERT_EQUAL(es_serde_add_writer(v2, 1, es_schema_text("cart.events"), errstr, 512),
                    ES_ERR_OK);
    for (int i = 0; i < 3; i++) { /* reused writer entry, no leak (ASan) */
        CU_ASSERT_EQUAL_FATAL(es_serde_decode(v2, rec.data, rec.len, &got, errstr, 512), ES_ERR_OK);
        check_common_fields(got);
        ES_ASSERT_STR_EQ(field_str(got, "channel"), "web");
    }
    es_serde_destroy(v2);
    es_buf_free(&rec);
}

/* Two writers resolved by one reader, alternately: each pair of record
 * schemas keeps its own plan (resolve.c), so neither borrows the other's
 * field positions or defaults. */
static void encode_r(const char *schema, int id, int a, const char *c, es_buf_t *out)
{
    avro_value_t v, f;
    es_serde_t *w = es_serde_new(NULL, "r-value", schema, false, id, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    es_serde_new_value(w, &v);
    avro_value_get_by_name(&v, "a", &f, NULL);
    avro_value_set_int(&f, a);
    if (c)
        set_field_str(&v, "c", c);
    CU_ASSERT_EQUAL(es_serde_encode(w, &v, out, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&v);
    es_serde_destroy(w);
}

static void test_two_writers_alternate(void)
{
    static const char *only_a = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                "{\"name\":\"a\",\"type\":\"int\"}]}";
    static const char *c_then_a = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                  "{\"name\":\"c\",\"type\":\"string\"},"
                                  "{\"name\":\"a\",\"type\":\"int\"}]}";
    static const char *reader = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                "{\"name\":\"a\",\"type\":\"long\"},"
                                "{\"name\":\"c\",\"type\":\"string\",\"default\":\"d\"}]}";
    es_buf_t one = {0}, two = {0};
    avro_value_t *got = NULL, f;
    encode_r(only_a, 21, 7, NULL, &one);
    encode_r(c_then_a, 22, 8, "given", &two);
    es_serde_t *r = es_serde_new(NULL, "r-value", reader, false, 23, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 21, only_a, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 22, c_then_a, errstr, sizeof(errstr)), ES_ERR_OK);
    for (int i = 0; i < 6; i++) {
        es_buf_t *rec = i % 2 ? &two : &one;
        int64_t a = 0;
        CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, rec->data, rec->len, &got, errstr, 512),
                              ES_ERR_OK);
        avro_value_get_by_name(got, "a", &f, NULL);
        avro_value_get_long(&f, &a);
        CU_ASSERT_EQUAL(a, i % 2 ? 8 : 7);
        ES_ASSERT_STR_EQ(field_str(got, "c"), i % 2 ? "given" : "d");
    }
    es_serde_destroy(r);
    es_buf_free(&one);
    es_buf_free(&two);
}

static void test_new_record_old_reader_ignores_field(void)
{
    es_buf_t rec = {0};
    avro_value_t *got = NULL;
    encode_with(v2_text, 2, NULL, "mobile", &rec);
    es_serde_t *v1 = es_serde_new(NULL, "cart.events-value", es_schema_text("cart.events"), false,
                                  1, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v1);
    /* before the writer is known: a specific error, not a guess */
    CU_ASSERT_EQUAL(es_serde_decode(v1, rec.data, rec.len, &got, errstr, 512),
                    ES_ERR_UNKNOWN_SCHEMA);
    CU_ASSERT_EQUAL(es_serde_add_writer(v1, 2, v2_text, errstr, 512), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_serde_add_writer(v1, 2, v2_text, errstr, 512), ES_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(v1, rec.data, rec.len, &got, errstr, 512), ES_ERR_OK);
    check_common_fields(got);
    CU_ASSERT_PTR_NULL(field_str(got, "channel"));
    es_serde_destroy(v1);
    es_buf_free(&rec);
}

static void test_incompatible_writer_is_refused(void)
{
    es_buf_t rec = {0};
    avro_value_t *got = NULL;
    encode_with(v3_text, 3, "four", NULL, &rec);
    es_serde_t *v1 = es_serde_new(NULL, "cart.events-value", es_schema_text("cart.events"), false,
                                  1, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v1);
    CU_ASSERT_EQUAL(es_serde_add_writer(v1, 3, v3_text, errstr, 512), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_serde_decode(v1, rec.data, rec.len, &got, errstr, 512), ES_ERR_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "string"));
    CU_ASSERT_EQUAL(es_serde_add_writer(v1, 4, "{\"type\":", errstr, 512), ES_ERR_SCHEMA);
    es_serde_destroy(v1);
    es_buf_free(&rec);
}

/* Promotions, enum symbols by name, union branches by name or promotion,
 * reordered fields, and a record-typed default. */
static void test_spec_rules(void)
{
    static const char *writer =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        "{\"name\":\"gone\",\"type\":\"string\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\",\"Y\"]}},"
        "{\"name\":\"a\",\"type\":\"int\"},"
        "{\"name\":\"u\",\"type\":[\"null\",\"int\"]},"
        "{\"name\":\"s\",\"type\":\"string\"}]}";
    static const char *reader =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        "{\"name\":\"a\",\"type\":\"long\"},"
        "{\"name\":\"u\",\"type\":[\"null\",\"double\"]},"
        "{\"name\":\"s\",\"type\":\"bytes\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"Z\",\"Y\",\"X\"]"
        "}},"
        "{\"name\":\"extra\",\"type\":{\"type\":\"record\",\"name\":\"X\",\"fields\":["
        "{\"name\":\"q\",\"type\":\"int\"},{\"name\":\"tags\",\"type\":{\"type\":\"array\","
        "\"items\":\"string\"}}]},\"default\":{\"q\":7,\"tags\":[\"t1\",\"t2\"]}}]}";
    es_buf_t rec = {0};
    avro_value_t v, f, br, *got = NULL;
    es_serde_t *w = es_serde_new(NULL, "r-value", writer, false, 11, errstr, sizeof(errstr));
    es_serde_t *r = es_serde_new(NULL, "r-value", reader, false, 12, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    es_serde_new_value(w, &v);
    set_field_str(&v, "gone", "bye");
    avro_value_get_by_name(&v, "e", &f, NULL);
    avro_value_set_enum(&f, 0); /* X */
    avro_value_get_by_name(&v, "a", &f, NULL);
    avro_value_set_int(&f, -5);
    avro_value_get_by_name(&v, "u", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_int(&br, 41);
    set_field_str(&v, "s", "hi");
    CU_ASSERT_EQUAL_FATAL(es_serde_encode(w, &v, &rec, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&v);

    CU_ASSERT_EQUAL(es_serde_add_writer(r, 11, writer, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, rec.data, rec.len, &got, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    int64_t a = 0;
    double d = 0;
    int sym = -1, disc = -1;
    int32_t q = 0;
    const void *bytes = NULL;
    size_t n = 0;
    avro_value_get_by_name(got, "a", &f, NULL);
    avro_value_get_long(&f, &a);
    CU_ASSERT_EQUAL(a, -5);
    avro_value_get_by_name(got, "u", &f, NULL);
    avro_value_get_discriminant(&f, &disc);
    CU_ASSERT_EQUAL(disc, 1);
    avro_value_get_current_branch(&f, &br);
    avro_value_get_double(&br, &d);
    CU_ASSERT_DOUBLE_EQUAL(d, 41.0, 1e-9);
    avro_value_get_by_name(got, "s", &f, NULL);
    avro_value_get_bytes(&f, &bytes, &n);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_TRUE(n == 2 && !memcmp(bytes, "hi", 2));
    avro_value_get_by_name(got, "e", &f, NULL);
    avro_value_get_enum(&f, &sym);
    CU_ASSERT_EQUAL(sym, 2); /* X is the reader's third symbol */
    avro_value_get_by_name(got, "extra", &f, NULL);
    avro_value_get_by_name(&f, "q", &br, NULL);
    avro_value_get_int(&br, &q);
    CU_ASSERT_EQUAL(q, 7);
    avro_value_get_by_name(&f, "tags", &br, NULL);
    avro_value_get_size(&br, &n);
    CU_ASSERT_EQUAL(n, 2);
    es_serde_destroy(w);
    es_serde_destroy(r);
    es_buf_free(&rec);
}

/* Arrays and maps are copied item by item, each item promoted like a field. */
static void test_array_and_map_items(void)
{
    static const char *writer =
        "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
        "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}}]}";
    static const char *reader =
        "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"bytes\"}},"
        "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"double\"}}]}";
    es_serde_t *w = es_serde_new(NULL, "c-value", writer, false, 31, errstr, sizeof(errstr));
    es_serde_t *r = es_serde_new(NULL, "c-value", reader, false, 32, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    es_buf_t rec = {0};
    avro_value_t v, f, item, *got = NULL;
    es_serde_new_value(w, &v);
    avro_value_get_by_name(&v, "a", &f, NULL);
    for (int i = 1; i <= 3; i++) {
        avro_value_append(&f, &item, NULL);
        avro_value_set_int(&item, i * 10);
    }
    avro_value_get_by_name(&v, "m", &f, NULL);
    avro_value_add(&f, "k1", &item, NULL, NULL);
    avro_value_set_string(&item, "v1");
    avro_value_add(&f, "k2", &item, NULL, NULL);
    avro_value_set_string(&item, "v2");
    CU_ASSERT_EQUAL_FATAL(es_serde_encode(w, &v, &rec, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&v);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 31, writer, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, rec.data, rec.len, &got, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    size_t n = 0;
    double d = 0;
    const void *bytes = NULL;
    avro_value_get_by_name(got, "a", &f, NULL);
    avro_value_get_size(&f, &n);
    CU_ASSERT_EQUAL(n, 3);
    for (size_t i = 0; i < n; i++) {
        avro_value_get_by_index(&f, i, &item, NULL);
        avro_value_get_double(&item, &d);
        CU_ASSERT_DOUBLE_EQUAL(d, (double)(i + 1) * 10, 1e-9);
    }
    avro_value_get_by_name(got, "m", &f, NULL);
    avro_value_get_size(&f, &n);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL_FATAL(avro_value_get_by_name(&f, "k2", &item, NULL), 0);
    CU_ASSERT_EQUAL(avro_value_get_bytes(&item, &bytes, &n), 0);
    CU_ASSERT_TRUE(n == 2 && !memcmp(bytes, "v2", 2));
    es_serde_destroy(w);
    es_serde_destroy(r);
    es_buf_free(&rec);
}

/* A record with one field "f" of @p type. */
static void one_field_schema(const char *type, char *out, size_t outsz)
{
    snprintf(out, outsz,
             "{\"type\":\"record\",\"name\":\"M\",\"fields\":[{\"name\":\"f\",\"type\":"
             "\"%s\"}]}",
             type);
}

/* Field "f" of a value of @p type, set to seven in that type. */
static void set_seven(avro_value_t *rec, avro_type_t type)
{
    avro_value_t f;
    avro_value_get_by_name(rec, "f", &f, NULL);
    switch (type) {
    case AVRO_NULL:
        avro_value_set_null(&f);
        break;
    case AVRO_BOOLEAN:
        avro_value_set_boolean(&f, 1);
        break;
    case AVRO_INT32:
        avro_value_set_int(&f, 7);
        break;
    case AVRO_INT64:
        avro_value_set_long(&f, 7);
        break;
    case AVRO_FLOAT:
        avro_value_set_float(&f, 7.0f);
        break;
    case AVRO_DOUBLE:
        avro_value_set_double(&f, 7.0);
        break;
    case AVRO_STRING:
        avro_value_set_string(&f, "7");
        break;
    default:
        avro_value_set_bytes(&f, "7", 1);
        break;
    }
}

/* Does field "f" of @p rec (of @p type) hold what set_seven() wrote, converted? */
static bool is_seven(avro_value_t *rec, avro_type_t type)
{
    avro_value_t f;
    int b = 0;
    int32_t i = 0;
    int64_t l = 0;
    float fl = 0;
    double d = 0;
    const void *p = NULL;
    const char *s = NULL;
    size_t n = 0;
    avro_value_get_by_name(rec, "f", &f, NULL);
    if (avro_value_get_type(&f) != type)
        return false;
    switch (type) {
    case AVRO_NULL:
        return true;
    case AVRO_BOOLEAN:
        return !avro_value_get_boolean(&f, &b) && b;
    case AVRO_INT32:
        return !avro_value_get_int(&f, &i) && i == 7;
    case AVRO_INT64:
        return !avro_value_get_long(&f, &l) && l == 7;
    case AVRO_FLOAT:
        return !avro_value_get_float(&f, &fl) && fl == 7.0f;
    case AVRO_DOUBLE:
        return !avro_value_get_double(&f, &d) && d == 7.0;
    case AVRO_STRING:
        return !avro_value_get_string(&f, &s, &n) && n == 2 && !strcmp(s, "7");
    default:
        return !avro_value_get_bytes(&f, &p, &n) && n == 1 && !memcmp(p, "7", 1);
    }
}

/*
 * Every primitive writer type against every primitive reader type: read
 * when the types are the same or the spec promotes one to the other (int to
 * long, float, double; long to float, double; float to double; string and
 * bytes both ways), with the value converted; refused otherwise.
 */
static void test_primitive_matrix(void)
{
    static const struct {
        const char *name;
        avro_type_t type;
    } types[] = {
        {"null", AVRO_NULL},     {"boolean", AVRO_BOOLEAN}, {"int", AVRO_INT32},
        {"long", AVRO_INT64},    {"float", AVRO_FLOAT},     {"double", AVRO_DOUBLE},
        {"string", AVRO_STRING}, {"bytes", AVRO_BYTES},
    };
    static const char *const promotions[] = {"int>long",     "int>float",   "int>double",
                                             "long>float",   "long>double", "float>double",
                                             "string>bytes", "bytes>string"};
    const size_t nt = sizeof(types) / sizeof(types[0]);
    int id = 100;
    for (size_t w = 0; w < nt; w++) {
        for (size_t r = 0; r < nt; r++, id += 2) {
            char ws[256], rs[256], pair[32];
            bool readable = w == r;
            snprintf(pair, sizeof(pair), "%s>%s", types[w].name, types[r].name);
            for (size_t k = 0; k < sizeof(promotions) / sizeof(promotions[0]); k++)
                readable = readable || !strcmp(pair, promotions[k]);
            one_field_schema(types[w].name, ws, sizeof(ws));
            one_field_schema(types[r].name, rs, sizeof(rs));
            es_serde_t *ws_ = es_serde_new(NULL, "m-value", ws, false, id, errstr, sizeof(errstr));
            es_serde_t *rs_ =
                es_serde_new(NULL, "m-value", rs, false, id + 1, errstr, sizeof(errstr));
            CU_ASSERT_PTR_NOT_NULL_FATAL(ws_);
            CU_ASSERT_PTR_NOT_NULL_FATAL(rs_);
            es_buf_t rec = {0};
            avro_value_t v, *got = NULL;
            es_serde_new_value(ws_, &v);
            set_seven(&v, types[w].type);
            CU_ASSERT_EQUAL_FATAL(es_serde_encode(ws_, &v, &rec, errstr, sizeof(errstr)),
                                  ES_ERR_OK);
            avro_value_decref(&v);
            CU_ASSERT_EQUAL(es_serde_add_writer(rs_, id, ws, errstr, sizeof(errstr)), ES_ERR_OK);
            es_err_t err = es_serde_decode(rs_, rec.data, rec.len, &got, errstr, sizeof(errstr));
            if (readable != (err == ES_ERR_OK) || (readable && !is_seven(got, types[r].type)))
                fprintf(stderr, "\n    %s: %s", pair, err ? errstr : "read, value wrong");
            CU_ASSERT_EQUAL(err, readable ? ES_ERR_OK : ES_ERR_SCHEMA);
            if (readable && !err)
                CU_ASSERT_TRUE(is_seven(got, types[r].type));
            if (!readable)
                CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "cannot be read as"));
            es_serde_destroy(ws_);
            es_serde_destroy(rs_);
            es_buf_free(&rec);
        }
    }
}

/*
 * The way the project's own schemas evolve: a reader adds an optional field,
 * ["null", T] with "default": null, at the envelope's top level and inside a
 * payload record (a branch of the payload union).  An old record must read
 * with that field on the null branch (index 0) and every other field intact,
 * also when the reader value last held a record with the field set (the
 * serde reuses one reader value across decodes).
 */

/* cart.events with @p field (JSON) added to the top level or to record @p in. */
static char *cart_events_plus(const char *field_json, const char *in)
{
    json_t *root = json_loads(es_schema_text("cart.events"), 0, NULL);
    json_t *field = json_loads(field_json, 0, NULL);
    json_t *fields = json_object_get(root, "fields");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_PTR_NOT_NULL_FATAL(field);
    if (in) {
        size_t i, k;
        json_t *f, *br;
        json_array_foreach(json_object_get(root, "fields"), i, f)
        {
            if (!es_test_str_eq(json_string_value(json_object_get(f, "name")), "payload"))
                continue;
            json_array_foreach(json_object_get(f, "type"), k, br)
            {
                if (es_test_str_eq(json_string_value(json_object_get(br, "name")), in))
                    fields = json_object_get(br, "fields");
            }
        }
    }
    json_array_append_new(fields, field);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* The union field @p name of @p rec: its branch index, and the string on it (or NULL). */
static int union_branch(avro_value_t *rec, const char *name, const char **str)
{
    avro_value_t f, br;
    int disc = -1;
    size_t sz;
    *str = NULL;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_type(&f) != AVRO_UNION ||
        avro_value_get_discriminant(&f, &disc) || avro_value_get_current_branch(&f, &br))
        return -1;
    if (avro_value_get_type(&br) == AVRO_STRING)
        avro_value_get_string(&br, str, &sz);
    else if (avro_value_get_type(&br) != AVRO_NULL)
        return -2;
    return disc;
}

/* The payload record of @p ev. */
static void payload_of(avro_value_t *ev, avro_value_t *p)
{
    avro_value_t f;
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_get_current_branch(&f, p);
}

/* Encode an event of the reader schema @p reader_json with the added field set to "set". */
static void encode_new_with_field(const char *reader_json, const char *name, bool in_payload,
                                  es_buf_t *out)
{
    avro_value_t ev, f, br, p;
    es_serde_t *w =
        es_serde_new(NULL, "cart.events-value", reader_json, false, 22, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    es_serde_new_value(w, &ev);
    fill_event(&ev, NULL);
    if (in_payload) {
        payload_of(&ev, &p);
        avro_value_get_by_name(&p, name, &f, NULL);
    } else {
        avro_value_get_by_name(&ev, name, &f, NULL);
    }
    CU_ASSERT_EQUAL(avro_value_set_branch(&f, 1, &br), 0);
    avro_value_set_string(&br, "set");
    CU_ASSERT_EQUAL(es_serde_encode(w, &ev, out, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&ev);
    es_serde_destroy(w);
}

static void check_optional_field_added(const char *field_json, const char *name, const char *in)
{
    es_buf_t old = {0}, cur = {0};
    avro_value_t *got = NULL, p;
    const char *s = NULL;
    char *reader_json = cart_events_plus(field_json, in);
    encode_with(es_schema_text("cart.events"), 1, NULL, NULL, &old);
    encode_new_with_field(reader_json, name, in != NULL, &cur);
    es_serde_t *r =
        es_serde_new(NULL, "cart.events-value", reader_json, false, 22, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 1, es_schema_text("cart.events"), errstr, 512),
                    ES_ERR_OK);
    for (int round = 0; round < 2; round++) {
        /* a current record first: the reader value holds the field on branch 1 */
        CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, cur.data, cur.len, &got, errstr, 512), ES_ERR_OK);
        if (in)
            payload_of(got, &p);
        CU_ASSERT_EQUAL(union_branch(in ? &p : got, name, &s), 1);
        ES_ASSERT_STR_EQ(s, "set");
        /* then the old record: the field is the null branch, the rest as written */
        if (es_serde_decode(r, old.data, old.len, &got, errstr, 512) != ES_ERR_OK)
            fprintf(stderr, "\n    old record under the reader adding %s: %s", name, errstr);
        CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, old.data, old.len, &got, errstr, 512), ES_ERR_OK);
        check_common_fields(got);
        payload_of(got, &p);
        int32_t q = 0;
        avro_value_t f;
        avro_value_get_by_name(&p, "quantity", &f, NULL);
        avro_value_get_int(&f, &q);
        CU_ASSERT_EQUAL(q, 3);
        int disc = union_branch(in ? &p : got, name, &s);
        if (disc != 0)
            fprintf(stderr, "\n    %s: branch %d (%s), want 0 (null)", name, disc, s ? s : "");
        CU_ASSERT_EQUAL(disc, 0);
        CU_ASSERT_PTR_NULL(s);
    }
    es_serde_destroy(r);
    es_buf_free(&old);
    es_buf_free(&cur);
    free(reader_json);
}

static void test_optional_field_top_level(void)
{
    check_optional_field_added(
        "{\"name\":\"tenant\",\"type\":[\"null\",\"string\"],\"default\":null}", "tenant", NULL);
}

static void test_optional_field_in_payload(void)
{
    check_optional_field_added(
        "{\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null}", "note",
        "ItemRemoved");
}

/* An optional nested record, ["null", {record}] with default null. */
static void test_optional_record_field(void)
{
    es_buf_t old = {0};
    avro_value_t *got = NULL;
    const char *s;
    char *reader_json = cart_events_plus(
        "{\"name\":\"meta\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"Meta\","
        "\"fields\":[{\"name\":\"ip\",\"type\":\"string\"}]}],\"default\":null}",
        NULL);
    encode_with(es_schema_text("cart.events"), 1, NULL, NULL, &old);
    es_serde_t *r =
        es_serde_new(NULL, "cart.events-value", reader_json, false, 23, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 1, es_schema_text("cart.events"), errstr, 512),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, old.data, old.len, &got, errstr, 512), ES_ERR_OK);
    check_common_fields(got);
    CU_ASSERT_EQUAL(union_branch(got, "meta", &s), 0);
    es_serde_destroy(r);
    es_buf_free(&old);
    free(reader_json);
}

/*
 * The resolver follows the Avro spec's rule that a union's default is for
 * its first branch (resolve.c set_from_json): [T, "null"] with a default of
 * type T is read as branch 0 with that value; a null default on such a
 * union is not a value of its first branch, so the record is refused with
 * a schema error rather than read onto a guessed branch.
 */
static void test_first_branch_default(void)
{
    es_buf_t old = {0};
    avro_value_t *got = NULL;
    const char *s = NULL;
    char *reader_json = cart_events_plus(
        "{\"name\":\"source\",\"type\":[\"string\",\"null\"],\"default\":\"legacy\"}", NULL);
    encode_with(es_schema_text("cart.events"), 1, NULL, NULL, &old);
    es_serde_t *r =
        es_serde_new(NULL, "cart.events-value", reader_json, false, 24, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 1, es_schema_text("cart.events"), errstr, 512),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, old.data, old.len, &got, errstr, 512), ES_ERR_OK);
    check_common_fields(got);
    CU_ASSERT_EQUAL(union_branch(got, "source", &s), 0);
    ES_ASSERT_STR_EQ(s, "legacy");
    es_serde_destroy(r);
    free(reader_json);

    reader_json = cart_events_plus(
        "{\"name\":\"source\",\"type\":[\"string\",\"null\"],\"default\":null}", NULL);
    r = es_serde_new(NULL, "cart.events-value", reader_json, false, 25, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 1, es_schema_text("cart.events"), errstr, 512),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(es_serde_decode(r, old.data, old.len, &got, errstr, 512), ES_ERR_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "source"));
    es_serde_destroy(r);
    es_buf_free(&old);
    free(reader_json);
}

/*
 * Two records with the same name in different namespaces (na.Meta, nb.Meta),
 * each adding a field with its own default: each must get its own.  A reader
 * field's default is looked up by the record's full name; a bare-name match
 * is only a fallback for namespaces Avro C did not report.
 *
 * Fails today: resolve.c field_default() takes the first record whose bare
 * name matches, so nb.Meta.x gets na.Meta's default ("A", not "B").
 */
static void test_defaults_by_full_name(void)
{
    static const char *writer =
        "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n0\",\"fields\":["
        "{\"name\":\"a\",\"type\":{\"type\":\"record\",\"name\":\"Meta\",\"namespace\":\"na\","
        "\"fields\":[{\"name\":\"k\",\"type\":\"int\"}]}},"
        "{\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"Meta\",\"namespace\":\"nb\","
        "\"fields\":[{\"name\":\"k\",\"type\":\"int\"}]}}]}";
    static const char *reader =
        "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n0\",\"fields\":["
        "{\"name\":\"a\",\"type\":{\"type\":\"record\",\"name\":\"Meta\",\"namespace\":\"na\","
        "\"fields\":[{\"name\":\"k\",\"type\":\"int\"},"
        "{\"name\":\"x\",\"type\":[\"string\",\"null\"],\"default\":\"A\"}]}},"
        "{\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"Meta\",\"namespace\":\"nb\","
        "\"fields\":[{\"name\":\"k\",\"type\":\"int\"},"
        "{\"name\":\"x\",\"type\":[\"string\",\"null\"],\"default\":\"B\"}]}}]}";
    es_buf_t rec = {0};
    avro_value_t v, f, k, *got = NULL;
    const char *s = NULL;
    es_serde_t *w = es_serde_new(NULL, "m-value", writer, false, 31, errstr, sizeof(errstr));
    es_serde_t *r = es_serde_new(NULL, "m-value", reader, false, 32, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    es_serde_new_value(w, &v);
    avro_value_get_by_name(&v, "a", &f, NULL);
    avro_value_get_by_name(&f, "k", &k, NULL);
    avro_value_set_int(&k, 1);
    avro_value_get_by_name(&v, "b", &f, NULL);
    avro_value_get_by_name(&f, "k", &k, NULL);
    avro_value_set_int(&k, 2);
    CU_ASSERT_EQUAL_FATAL(es_serde_encode(w, &v, &rec, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&v);
    CU_ASSERT_EQUAL(es_serde_add_writer(r, 31, writer, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(r, rec.data, rec.len, &got, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    avro_value_get_by_name(got, "a", &f, NULL);
    CU_ASSERT_EQUAL(union_branch(&f, "x", &s), 0);
    ES_ASSERT_STR_EQ(s, "A");
    avro_value_get_by_name(got, "b", &f, NULL);
    CU_ASSERT_EQUAL(union_branch(&f, "x", &s), 0);
    ES_ASSERT_STR_EQ(s, "B");
    es_serde_destroy(w);
    es_serde_destroy(r);
    es_buf_free(&rec);
}

/*
 * The fuzz seeds are golden records: each decodes without error under the
 * fuzz target's set-up (cart.events ids 7 and 8, command-result id 9), so
 * the fuzzer starts from inputs that reach the deepest code.
 */
static void test_fuzz_seeds_decode(void)
{
    char dir[1024];
    int nseeds = 0;
    es_serde_t *events =
        es_serde_new(NULL, "e", es_schema_text("cart.events"), false, 7, errstr, sizeof(errstr));
    es_serde_t *results =
        es_serde_new(NULL, "r", es_schema_text("command-result"), false, 9, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(events);
    CU_ASSERT_PTR_NOT_NULL_FATAL(results);
    CU_ASSERT_EQUAL(es_serde_add_writer(events, 8, v2_text, errstr, sizeof(errstr)), ES_ERR_OK);
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/serde", ESCQRS_SOURCE_DIR);
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (struct dirent *de; (de = readdir(d));) {
        char rel[512];
        if (de->d_name[0] == '.')
            continue;
        snprintf(rel, sizeof(rel), "tests/fuzz/corpus/serde/%s", de->d_name);
        es_buf_t b = {0};
        char *data = slurp_len(rel, &b);
        int id = -1;
        avro_value_t *got;
        CU_ASSERT_PTR_NOT_NULL_FATAL(data);
        CU_ASSERT_EQUAL(es_wire_schema_id(b.data, b.len, &id), ES_ERR_OK);
        es_err_t err = es_serde_decode(id == 9 ? results : events, b.data, b.len, &got, errstr,
                                       sizeof(errstr));
        if (err)
            fprintf(stderr, "\n    seed %s: %s", de->d_name, errstr);
        CU_ASSERT_EQUAL(err, ES_ERR_OK);
        es_buf_free(&b);
        nseeds++;
    }
    closedir(d);
    CU_ASSERT_TRUE(nseeds >= 6);
    es_serde_destroy(events);
    es_serde_destroy(results);
}

int main(void)
{
    v2_text = slurp("tests/data/evolution/v2/cart.events.avsc");
    v3_text = slurp("tests/data/evolution/v3/cart.events.avsc");
    if (!v2_text || !v3_text) {
        fprintf(stderr, "cannot read tests/data/evolution under %s\n", ESCQRS_SOURCE_DIR);
        return 1;
    }
    static const es_test_case_t cases[] = {
        {"v1 record, v2 reader: default filled in", test_old_record_new_reader_gets_default},
        {"v2 record, v1 reader: added field ignored", test_new_record_old_reader_ignores_field},
        {"two writers alternately: each keeps its own plan", test_two_writers_alternate},
        {"v3 record (type changed) is refused", test_incompatible_writer_is_refused},
        {"promotions, enums, unions, defaults", test_spec_rules},
        {"every primitive writer type against every reader type", test_primitive_matrix},
        {"array items and map values are promoted one by one", test_array_and_map_items},
        {"old record, reader adds [null, T] at the top: null branch",
         test_optional_field_top_level},
        {"old record, reader adds [null, T] in a payload record: null branch",
         test_optional_field_in_payload},
        {"old record, reader adds [null, record]: null branch", test_optional_record_field},
        {"[T, null] defaults are for the first branch", test_first_branch_default},
        {"same-named records in two namespaces keep their own defaults",
         test_defaults_by_full_name},
        {"every fuzz seed is a valid record", test_fuzz_seeds_decode},
        {NULL, NULL},
    };
    int rc = es_test_run("serde-resolve", cases);
    free(v2_text);
    free(v3_text);
    return rc;
}
