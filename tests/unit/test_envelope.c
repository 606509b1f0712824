/*
 * test_envelope.c — event headers, UUIDs and the clock.
 *
 * Headers built from a CartEvent and an AccountEvent value carry exactly the
 * four names of the contract with the values of the body; never a
 * `__value_schema_id`.  A value that lacks a field they come from, or has it
 * of another type, is refused naming the field.  (UUIDs and the clock are
 * tested in test_util.c.)
 */
#include "escqrs/envelope.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char errstr[512];

static char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t bufsz)
{
    const void *v;
    size_t len;
    if (rd_kafka_header_get_last(h, name, &v, &len))
        return NULL;
    snprintf(buf, bufsz, "%.*s", (int)len, (const char *)v);
    return buf;
}

static void set_str(avro_value_t *rec, const char *field, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_string(&f, v);
}

/* An event value of schema @p name with payload branch @p branch. */
static void new_event(const char *name, int branch, es_serde_t **serde, avro_value_t *ev)
{
    avro_value_t f, p;
    *serde = es_serde_new(NULL, name, es_schema_text(name), false, 1, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(*serde);
    es_serde_new_value(*serde, ev);
    set_str(ev, "event_id", "6f1c2a38-0d6f-4a8e-9d3c-1b2a3c4d5e6f");
    set_str(ev, "command_id", "cmd-42");
    avro_value_get_by_name(ev, "version", &f, NULL);
    avro_value_set_long(&f, 1234567890123LL);
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_set_branch(&f, branch, &p);
}

static void check_headers(const char *schema, int branch, const char *type)
{
    es_serde_t *serde = NULL;
    avro_value_t ev;
    rd_kafka_headers_t *h = NULL;
    char buf[128];
    new_event(schema, branch, &serde, &ev);
    CU_ASSERT_EQUAL_FATAL(es_event_headers_from_value(&ev, &h, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(rd_kafka_header_cnt(h), 4);
    ES_ASSERT_STR_EQ(header(h, "event-type", buf, sizeof(buf)), type);
    ES_ASSERT_STR_EQ(header(h, "event-id", buf, sizeof(buf)),
                     "6f1c2a38-0d6f-4a8e-9d3c-1b2a3c4d5e6f");
    ES_ASSERT_STR_EQ(header(h, "command-id", buf, sizeof(buf)), "cmd-42");
    ES_ASSERT_STR_EQ(header(h, "aggregate-version", buf, sizeof(buf)), "1234567890123");
    CU_ASSERT_PTR_NULL(header(h, "__value_schema_id", buf, sizeof(buf)));
    rd_kafka_headers_destroy(h);
    avro_value_decref(&ev);
    es_serde_destroy(serde);
}

static void test_headers_from_cart_event(void)
{
    check_headers("cart.events", 0, "ItemAdded");
    check_headers("cart.events", 2, "CartCheckedOut");
}

static void test_headers_from_account_event(void)
{
    check_headers("account.events", 2, "Withdrawn");
}

static void test_not_an_event(void)
{
    es_serde_t *serde = NULL;
    avro_value_t cmd, f, p;
    rd_kafka_headers_t *h = NULL;
    /* a command has no event_id */
    serde = es_serde_new(NULL, "c", es_schema_text("cart.commands"), false, 1, errstr, 512);
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    es_serde_new_value(serde, &cmd);
    avro_value_get_by_name(&cmd, "payload", &f, NULL);
    avro_value_set_branch(&f, 0, &p);
    CU_ASSERT_EQUAL(es_event_headers_from_value(&cmd, &h, errstr, sizeof(errstr)),
                    ES_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "event_id"));
    CU_ASSERT_PTR_NULL(h);
    avro_value_decref(&cmd);
    es_serde_destroy(serde);
}

/* A record of the envelope's fields with @p version_type and @p payload_type, in JSON. */
static es_serde_t *envelope_like(const char *command_id_type, const char *version_type,
                                 const char *payload_type)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"type\":\"record\",\"name\":\"E\",\"namespace\":\"io.escqrs.test\",\"fields\":["
             "{\"name\":\"event_id\",\"type\":\"string\"},"
             "{\"name\":\"command_id\",\"type\":%s},"
             "{\"name\":\"version\",\"type\":%s},"
             "{\"name\":\"payload\",\"type\":%s}]}",
             command_id_type, version_type, payload_type);
    es_serde_t *serde = es_serde_new(NULL, "e", json, false, 1, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    return serde;
}

#define REC "{\"type\":\"record\",\"name\":\"Done\",\"fields\":[]}"

/*
 * Each field the headers come from, missing or of the wrong type, is named in the refusal:
 * a command id that is not a string, a version that is an int, a payload that is a record
 * rather than a union, a union whose branch is null or not set.
 */
static void test_each_field_checked(void)
{
    static const struct {
        const char *command_id, *version, *payload;
        int branch; /* -1: leave the payload as it is */
        const char *missing;
    } cases[] = {
        {"\"int\"", "\"long\"", "[" REC "]", 0, "command_id (string)"},
        {"\"string\"", "\"int\"", "[" REC "]", 0, "version (long)"},
        {"\"string\"", "\"long\"", REC, -1, "payload (a union of records, with a branch set)"},
        {"\"string\"", "\"long\"", "[\"null\"," REC "]", 0,
         "payload (a union of records, with a branch set)"},
        {"\"string\"", "\"long\"", "[" REC "]", -1,
         "payload (a union of records, with a branch set)"},
        {"\"string\"", "\"long\"", "[\"null\"," REC "]", 1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        es_serde_t *serde = envelope_like(cases[i].command_id, cases[i].version, cases[i].payload);
        avro_value_t ev, f, br;
        rd_kafka_headers_t *h = NULL;
        char want[128], buf[64];
        es_serde_new_value(serde, &ev);
        set_str(&ev, "event_id", "id-1");
        avro_value_get_by_name(&ev, "command_id", &f, NULL);
        if (avro_value_get_type(&f) == AVRO_STRING)
            avro_value_set_string(&f, "cmd-1");
        avro_value_get_by_name(&ev, "version", &f, NULL);
        if (avro_value_get_type(&f) == AVRO_INT64)
            avro_value_set_long(&f, INT64_MIN);
        avro_value_get_by_name(&ev, "payload", &f, NULL);
        if (cases[i].branch >= 0)
            avro_value_set_branch(&f, cases[i].branch, &br);
        es_err_t err = es_event_headers_from_value(&ev, &h, errstr, sizeof(errstr));
        if (cases[i].missing) {
            snprintf(want, sizeof(want), "event envelope has no %s", cases[i].missing);
            CU_ASSERT_EQUAL(err, ES_ERR_INVALID_ARG);
            ES_ASSERT_STR_EQ(errstr, want);
            CU_ASSERT_PTR_NULL(h);
        } else { /* the one that is whole: the version at its most negative, all 20 chars */
            CU_ASSERT_EQUAL_FATAL(err, ES_ERR_OK);
            ES_ASSERT_STR_EQ(header(h, "aggregate-version", buf, sizeof(buf)),
                             "-9223372036854775808");
            ES_ASSERT_STR_EQ(header(h, "event-type", buf, sizeof(buf)), "Done");
            rd_kafka_headers_destroy(h);
        }
        avro_value_decref(&ev);
        es_serde_destroy(serde);
    }
}

/* The branch of union field @p name of @p rec: 0 is null. */
static int branch_of(avro_value_t *rec, const char *name)
{
    avro_value_t f;
    int disc = -1;
    avro_value_get_by_name(rec, name, &f, NULL);
    avro_value_get_discriminant(&f, &disc);
    return disc;
}

/*
 * An optional field set to "" or to nothing is null on the wire, not an empty string or
 * a 0; set, it is the value.  The trace headers are added only for what is set, each
 * whole, down to a correlation id of one byte.
 */
static void test_optional_fields_and_trace_headers(void)
{
    es_serde_t *serde = NULL;
    avro_value_t ev, f, br;
    int64_t l = 0;
    serde = es_serde_new(NULL, "r", es_schema_text("command-result"), false, 1, errstr, 512);
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    es_serde_new_value(serde, &ev);
    CU_ASSERT_EQUAL(es_opt_string_set(&ev, "correlation_id", ""), ES_ERR_OK);
    CU_ASSERT_EQUAL(branch_of(&ev, "correlation_id"), 0);
    CU_ASSERT_EQUAL(es_opt_string_set(&ev, "correlation_id", NULL), ES_ERR_OK);
    CU_ASSERT_EQUAL(branch_of(&ev, "correlation_id"), 0);
    CU_ASSERT_EQUAL(es_opt_string_set(&ev, "correlation_id", "c"), ES_ERR_OK);
    CU_ASSERT_EQUAL(branch_of(&ev, "correlation_id"), 1);
    ES_ASSERT_STR_EQ(es_opt_string_get(&ev, "correlation_id"), "c");
    CU_ASSERT_EQUAL(es_opt_long_set(&ev, "issued_at", false, 7), ES_ERR_OK);
    CU_ASSERT_EQUAL(branch_of(&ev, "issued_at"), 0);
    CU_ASSERT_EQUAL(es_opt_long_set(&ev, "issued_at", true, 0), ES_ERR_OK);
    CU_ASSERT_EQUAL(branch_of(&ev, "issued_at"), 1);
    avro_value_get_by_name(&ev, "issued_at", &f, NULL);
    avro_value_get_current_branch(&f, &br);
    avro_value_get_long(&br, &l);
    CU_ASSERT_EQUAL(l, 0);
    CU_ASSERT_EQUAL(es_opt_long_set(&ev, "no_such_field", true, 1), ES_ERR_OK); /* skipped */
    avro_value_decref(&ev);
    es_serde_destroy(serde);

    static const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    es_trace_fields_t all, none;
    memset(&all, 0, sizeof(all));
    memset(&none, 0, sizeof(none));
    snprintf(all.correlation_id, sizeof(all.correlation_id), "%s", "c");
    snprintf(all.traceparent, sizeof(all.traceparent), "%s", tp);
    snprintf(all.tracestate, sizeof(all.tracestate), "%s", "congo=t61rcWkgMzE");
    char buf[128];
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    es_trace_headers_add(h, &all);
    CU_ASSERT_EQUAL(rd_kafka_header_cnt(h), 3);
    ES_ASSERT_STR_EQ(header(h, "traceparent", buf, sizeof(buf)), tp);
    ES_ASSERT_STR_EQ(header(h, "tracestate", buf, sizeof(buf)), "congo=t61rcWkgMzE");
    ES_ASSERT_STR_EQ(header(h, "correlation-id", buf, sizeof(buf)), "c");
    rd_kafka_headers_destroy(h);
    h = rd_kafka_headers_new(4);
    es_trace_headers_add(h, &none);
    CU_ASSERT_EQUAL(rd_kafka_header_cnt(h), 0);
    rd_kafka_headers_destroy(h);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"headers from a CartEvent value", test_headers_from_cart_event},
        {"headers from an AccountEvent value", test_headers_from_account_event},
        {"a command is not an event", test_not_an_event},
        {"each field the headers come from is checked", test_each_field_checked},
        {"optional fields and trace headers", test_optional_fields_and_trace_headers},
        {NULL, NULL},
    };
    return es_test_run("envelope", cases);
}
