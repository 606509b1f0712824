/*
 * test_trace.c — W3C Trace Context, correlation ids, and where they travel.
 *
 * traceparent: the spec's own examples parse; every kind of invalid value
 * (length, format, uppercase hex, all-zero ids, version ff, a version 00
 * with more after it) is refused, which means "start a new trace"; a future
 * version is read by its first 55 characters.  tracestate: the grammar and
 * the limits (512 characters, 32 members, a key once).  A server span keeps
 * the caller's trace id with a new span id, or starts a new trace without
 * tracestate.  Correlation ids: 128 printable bytes yes, 129 or a control
 * byte no.  Log lines carry the thread's trace id; the lines an outsider can
 * cause are limited per window and count what they held back.  The envelope helpers
 * skip fields an older schema lacks, and a record of the schema before
 * trace context reads under the current one with null trace fields.
 */
#include "escqrs/envelope.h"
#include "escqrs/log.h"
#include "escqrs/record.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "escqrs/trace.h"
#include "escqrs/util.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define W3C_TP   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define W3C_TP2  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"

static char errstr[512];

static bool tp_ok(const char *s)
{
    es_traceparent_t tp;
    return es_traceparent_parse(s, &tp);
}

static void test_traceparent_valid(void)
{
    es_traceparent_t tp;
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(W3C_TP, &tp));
    ES_ASSERT_STR_EQ(tp.trace_id, TRACE_ID);
    ES_ASSERT_STR_EQ(tp.parent_id, "00f067aa0ba902b7");
    CU_ASSERT_EQUAL(tp.flags, 0x01);
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(W3C_TP2, &tp));
    ES_ASSERT_STR_EQ(tp.trace_id, "0af7651916cd43dd8448eb211c80319c");
    CU_ASSERT_EQUAL(tp.flags, 0x00);
    /* flags this version does not define are still a valid header */
    CU_ASSERT_TRUE(tp_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"));
    /* a future version: its first 55 characters, then '-' or the end */
    CU_ASSERT_TRUE(tp_ok("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds", &tp));
    ES_ASSERT_STR_EQ(tp.trace_id, TRACE_ID);
    CU_ASSERT_EQUAL(tp.flags, 0x01); /* only the sampled bit of a later version */
    CU_ASSERT_FALSE(tp_ok("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.more"));
}

static void test_traceparent_invalid(void)
{
    static const char *const bad[] = {
        "",
        "00",
        /* all-zero trace id, all-zero parent id */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* uppercase hex */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* the forbidden version */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* version 00 is exactly 55 characters */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
        /* separators and characters */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\x01"
        "1",
    };
    for (size_t i = 0; i < ES_ARRAY_SIZE(bad); i++) {
        if (tp_ok(bad[i]))
            fprintf(stderr, "\n    accepted: \"%s\"", bad[i]);
        CU_ASSERT_FALSE(tp_ok(bad[i]));
    }
    CU_ASSERT_FALSE(tp_ok(NULL));
}

static void test_traceparent_format(void)
{
    char out[ES_TRACEPARENT_LEN + 1];
    es_traceparent_format(out, TRACE_ID, "00f067aa0ba902b7", 1);
    ES_ASSERT_STR_EQ(out, W3C_TP);
    es_traceparent_format(out, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0);
    ES_ASSERT_STR_EQ(out, W3C_TP2);
}

static void test_tracestate(void)
{
    char members[600];
    size_t o = 0;
    CU_ASSERT_TRUE(es_tracestate_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    CU_ASSERT_TRUE(es_tracestate_valid("rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE"));
    CU_ASSERT_TRUE(es_tracestate_valid("fw529a3039@dt=abc,x_y-z*/1=a b"));
    CU_ASSERT_TRUE(es_tracestate_valid("a=1,,b=2")); /* empty members are allowed */
    CU_ASSERT_TRUE(es_tracestate_valid(""));
    CU_ASSERT_FALSE(es_tracestate_valid(NULL));
    CU_ASSERT_FALSE(es_tracestate_valid("Rojo=1"));        /* uppercase key */
    CU_ASSERT_FALSE(es_tracestate_valid("1rojo=1"));       /* a simple key starts with a letter */
    CU_ASSERT_FALSE(es_tracestate_valid("rojo"));          /* no value */
    CU_ASSERT_FALSE(es_tracestate_valid("rojo="));         /* empty value */
    CU_ASSERT_FALSE(es_tracestate_valid("rojo=a=b"));      /* '=' in a value */
    CU_ASSERT_FALSE(es_tracestate_valid("rojo=1,rojo=2")); /* a key twice */
    CU_ASSERT_FALSE(es_tracestate_valid("rojo=\x01"));     /* a control byte */
    CU_ASSERT_FALSE(es_tracestate_valid("rojo=caf\xc3\xa9")); /* not ASCII */
    CU_ASSERT_FALSE(es_tracestate_valid("a@=1"));             /* empty system id */
    /* 32 members yes, 33 no */
    for (int i = 0; i < 33; i++)
        o += (size_t)snprintf(members + o, sizeof(members) - o, "%sk%d=v", i ? "," : "", i);
    CU_ASSERT_FALSE(es_tracestate_valid(members));
    *strrchr(members, ',') = '\0';
    CU_ASSERT_TRUE(es_tracestate_valid(members));
    /* 512 characters yes, 513 no */
    char longest[ES_TRACESTATE_MAX + 2];
    memset(longest, 'v', sizeof(longest));
    memcpy(longest, "k=", 2);
    longest[ES_TRACESTATE_MAX] = '\0';
    /* one member's value is at most 256 characters: three of them */
    longest[170] = ',';
    memcpy(longest + 171, "j=", 2);
    longest[340] = ',';
    memcpy(longest + 341, "m=", 2);
    CU_ASSERT_TRUE(es_tracestate_valid(longest));
    longest[ES_TRACESTATE_MAX] = 'v';
    longest[ES_TRACESTATE_MAX + 1] = '\0';
    CU_ASSERT_FALSE(es_tracestate_valid(longest));
}

static bool hex_nonzero(const char *s, size_t n)
{
    bool nz = false;
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!strchr("0123456789abcdef", s[i]))
            return false;
        nz = nz || s[i] != '0';
    }
    return nz;
}

static void test_server_span(void)
{
    es_trace_ctx_t a, b;
    es_traceparent_t tp;
    /* continued: same trace, a new span, the caller's sampled flag, its tracestate */
    es_trace_ctx_start(&a, W3C_TP, "congo=t61rcWkgMzE");
    CU_ASSERT_TRUE(a.continued);
    ES_ASSERT_STR_EQ(a.trace_id, TRACE_ID);
    CU_ASSERT_TRUE(hex_nonzero(a.span_id, ES_SPAN_ID_LEN));
    CU_ASSERT_STRING_NOT_EQUAL(a.span_id, "00f067aa0ba902b7");
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(a.traceparent, &tp));
    ES_ASSERT_STR_EQ(tp.trace_id, TRACE_ID);
    ES_ASSERT_STR_EQ(tp.parent_id, a.span_id);
    CU_ASSERT_EQUAL(tp.flags, 0x01);
    ES_ASSERT_STR_EQ(a.tracestate, "congo=t61rcWkgMzE");
    es_trace_ctx_start(&a, W3C_TP2, "bad key=1");
    CU_ASSERT_TRUE(a.continued);
    CU_ASSERT_EQUAL(strcmp(a.traceparent + 53, "00"), 0); /* not sampled stays so */
    ES_ASSERT_STR_EQ(a.tracestate, "");                   /* an invalid tracestate is dropped */
    /* invalid or absent: a new trace, sampled, no tracestate */
    es_trace_ctx_start(&a, "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                       "congo=t61rcWkgMzE");
    es_trace_ctx_start(&b, NULL, NULL);
    CU_ASSERT_FALSE(a.continued);
    CU_ASSERT_FALSE(b.continued);
    CU_ASSERT_TRUE(hex_nonzero(a.trace_id, ES_TRACE_ID_LEN));
    CU_ASSERT_STRING_NOT_EQUAL(a.trace_id, b.trace_id);
    ES_ASSERT_STR_EQ(a.tracestate, "");
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(b.traceparent, &tp));
    ES_ASSERT_STR_EQ(tp.trace_id, b.trace_id);
    CU_ASSERT_EQUAL(tp.flags, ES_TRACE_FLAG_SAMPLED);
    /* ids from getrandom do not repeat */
    for (int i = 0; i < 1000; i++) {
        char x[ES_TRACE_ID_LEN + 1], y[ES_TRACE_ID_LEN + 1];
        es_trace_id_new(x);
        es_trace_id_new(y);
        CU_ASSERT_TRUE(hex_nonzero(x, ES_TRACE_ID_LEN) && strcmp(x, y) != 0);
    }
    char id[ES_TRACE_ID_LEN + 1];
    es_trace_id_of(W3C_TP, id);
    ES_ASSERT_STR_EQ(id, TRACE_ID);
    es_trace_id_of("00-nope", id);
    ES_ASSERT_STR_EQ(id, "");
    es_trace_id_of(NULL, id);
    ES_ASSERT_STR_EQ(id, "");
}

static void test_correlation_id(void)
{
    char s[ES_CORRELATION_ID_MAX + 2];
    memset(s, 'a', sizeof(s));
    s[ES_CORRELATION_ID_MAX] = '\0';
    CU_ASSERT_TRUE(es_correlation_id_valid(s)); /* 128 bytes */
    s[ES_CORRELATION_ID_MAX] = 'a';
    s[ES_CORRELATION_ID_MAX + 1] = '\0';
    CU_ASSERT_FALSE(es_correlation_id_valid(s)); /* 129 */
    CU_ASSERT_TRUE(es_correlation_id_valid("!"));
    CU_ASSERT_TRUE(es_correlation_id_valid("order-42/~x"));
    CU_ASSERT_FALSE(es_correlation_id_valid(""));
    CU_ASSERT_FALSE(es_correlation_id_valid(NULL));
    CU_ASSERT_FALSE(es_correlation_id_valid("a b"));
    CU_ASSERT_FALSE(es_correlation_id_valid("a\tb"));
    CU_ASSERT_FALSE(es_correlation_id_valid("a\x7f"));
    CU_ASSERT_FALSE(es_correlation_id_valid("a\x01"));
    CU_ASSERT_FALSE(es_correlation_id_valid("a\r\nX-Injected: 1"));
    CU_ASSERT_FALSE(es_correlation_id_valid("caf\xc3\xa9"));
}

/* ------------------------------------------------------------------- logs */

static char sink_trace[64];
static int sink_lines;

static void capture_sink(void *opaque, es_log_level_t level, const char *component, const char *msg)
{
    (void)opaque;
    (void)level;
    (void)component;
    (void)msg;
    snprintf(sink_trace, sizeof(sink_trace), "%s", es_log_trace_get());
    sink_lines++;
}

/* One line through the default sink, as written to stderr. */
static char *default_line(const char *msg)
{
    char *line = calloc(1, 4096);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    CU_ASSERT_FATAL(tmp && saved >= 0 && line);
    fflush(stderr);
    dup2(fileno(tmp), 2);
    es_log_info("test", "%s", msg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    if (!fgets(line, 4096, tmp))
        line[0] = '\0';
    fclose(tmp);
    return line;
}

static void test_log_trace(void)
{
    ES_ASSERT_STR_EQ(es_log_trace_get(), "");
    char *line = default_line("no trace");
    CU_ASSERT_PTR_NULL(strstr(line, "trace_id"));
    free(line);
    es_log_trace_set(TRACE_ID);
    line = default_line("traced");
    json_t *j = json_loads(line, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j); /* still one JSON object per line */
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(j, "trace_id")), TRACE_ID);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(j, "msg")), "traced");
    json_decref(j);
    free(line);
    /* a sink of one's own reads it on the logging thread */
    es_log_set_sink(capture_sink, NULL);
    es_log_info("test", "x");
    ES_ASSERT_STR_EQ(sink_trace, TRACE_ID);
    es_log_trace_set("");
    es_log_info("test", "x");
    ES_ASSERT_STR_EQ(sink_trace, "");
    es_log_trace_set(TRACE_ID);
    es_log_trace_set(NULL);
    ES_ASSERT_STR_EQ(es_log_trace_get(), "");
    es_log_set_sink(NULL, NULL);
    CU_ASSERT_EQUAL(sink_lines, 2);
}

/* The lines a limited logger let through, in order. */
static char limited_lines[64][160];
static int nlimited;

static void limited_sink(void *opaque, es_log_level_t level, const char *component, const char *msg)
{
    (void)opaque;
    (void)level;
    (void)component;
    if (nlimited < 64)
        snprintf(limited_lines[nlimited], sizeof(limited_lines[0]), "%s", msg);
    nlimited++;
}

/*
 * A line an outsider can cause at will (a refused token, a slow client) is limited: 100
 * calls in one window let 20 through, in order; once the window has passed, the next line
 * says how many were held back, and the count starts again.
 */
static void test_log_limited(void)
{
    es_log_limit_t lim = {.burst = 20, .window_ms = 1000}; /* 100 calls take microseconds */
    es_log_set_sink(limited_sink, NULL);
    for (int i = 0; i < 100; i++)
        es_log_limited(&lim, ES_LOG_WARN, "test", "refused %d", i);
    CU_ASSERT_EQUAL(nlimited, 20);
    ES_ASSERT_STR_EQ(limited_lines[0], "refused 0");
    ES_ASSERT_STR_EQ(limited_lines[19], "refused 19");
    usleep(1100 * 1000);
    es_log_limited(&lim, ES_LOG_WARN, "test", "refused %d", 100);
    CU_ASSERT_EQUAL(nlimited, 21);
    ES_ASSERT_STR_EQ(limited_lines[20], "refused 100 (80 similar line(s) suppressed)");
    es_log_limited(&lim, ES_LOG_WARN, "test", "refused %d", 101);
    ES_ASSERT_STR_EQ(limited_lines[21], "refused 101");
    es_log_set_sink(NULL, NULL);
}

/* -------------------------------------------------------------- envelopes */

/*
 * cart.events with (@p with) or without the trace fields at its end: the
 * schema after and before they were added, whichever the tree ships.
 */
static char *cart_events_schema(bool with)
{
    json_t *s = json_loads(es_schema_text("cart.events"), 0, NULL);
    json_t *fields = json_object_get(s, "fields");
    for (size_t i = json_array_size(fields); i-- > 0;) {
        const char *n = json_string_value(json_object_get(json_array_get(fields, i), "name"));
        if (!strcmp(n, "traceparent") || !strcmp(n, "tracestate"))
            json_array_remove(fields, i);
    }
    for (int i = 0; with && i < 2; i++)
        json_array_append_new(fields, json_pack("{s:s, s:[s,s], s:n}", "name",
                                                i ? "tracestate" : "traceparent", "type", "null",
                                                "string", "default"));
    char *text = json_dumps(s, JSON_COMPACT);
    json_decref(s);
    return text;
}

static void fill_cart_event(avro_value_t *ev)
{
    avro_value_t f, br, p;
    const char *strs[][2] = {{"event_id", "00000000-0000-4000-8000-000000000009"},
                             {"cart_id", "c1"},
                             {"command_id", "k1"}};
    for (size_t i = 0; i < ES_ARRAY_SIZE(strs); i++) {
        avro_value_get_by_name(ev, strs[i][0], &f, NULL);
        avro_value_set_string(&f, strs[i][1]);
    }
    avro_value_get_by_name(ev, "version", &f, NULL);
    avro_value_set_long(&f, 1);
    avro_value_get_by_name(ev, "occurred_at", &f, NULL);
    avro_value_set_long(&f, 1700000000000LL);
    es_principal_set(ev, NULL, NULL);
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_set_branch(&f, 2, &br); /* CartCheckedOut */
    avro_value_get_by_name(&br, "total_cents", &p, NULL);
    avro_value_set_long(&p, 5);
}

static void test_envelope_fields(void)
{
    avro_value_t ev, *got;
    es_buf_t rec = {0};
    es_trace_fields_t in = {.correlation_id = "order-42",
                            .traceparent = W3C_TP,
                            .tracestate = "congo=t61rcWkgMzE"},
                      out;
    char *old_text = cart_events_schema(false), *cur_text = cart_events_schema(true);
    es_serde_t *cur = es_serde_new(NULL, "e", cur_text, false, 1, errstr, sizeof(errstr));
    es_serde_t *old = es_serde_new(NULL, "e", old_text, false, 2, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cur);
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);

    /* the schema with the fields: set and read back */
    es_serde_new_value(cur, &ev);
    fill_cart_event(&ev);
    CU_ASSERT_EQUAL(es_trace_fields_set(&ev, &in), ES_ERR_OK);
    es_trace_fields_get(&ev, &out);
    ES_ASSERT_STR_EQ(out.correlation_id, "order-42");
    ES_ASSERT_STR_EQ(out.traceparent, W3C_TP);
    ES_ASSERT_STR_EQ(out.tracestate, "congo=t61rcWkgMzE");
    CU_ASSERT_EQUAL(es_serde_encode(cur, &ev, &rec, errstr, sizeof(errstr)), ES_ERR_OK);
    /* a forged record's bad values read as "" (never into a header or a log line) */
    es_opt_string_set(&ev, "traceparent", "00-" TRACE_ID "-0000000000000000-01");
    es_opt_string_set(&ev, "correlation_id", "a\nb");
    es_trace_fields_get(&ev, &out);
    ES_ASSERT_STR_EQ(out.traceparent, "");
    ES_ASSERT_STR_EQ(out.tracestate, ""); /* only with a valid traceparent */
    ES_ASSERT_STR_EQ(out.correlation_id, "");
    avro_value_decref(&ev);

    /* the schema before the fields: setting skips them, reading gives "" */
    es_serde_new_value(old, &ev);
    fill_cart_event(&ev);
    CU_ASSERT_EQUAL(es_trace_fields_set(&ev, &in), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_opt_long_set(&ev, "issued_at", true, 1), ES_ERR_OK);
    es_trace_fields_get(&ev, &out);
    ES_ASSERT_STR_EQ(out.correlation_id, "order-42"); /* that one it always had */
    ES_ASSERT_STR_EQ(out.traceparent, "");
    es_buf_free(&rec);
    CU_ASSERT_EQUAL(es_serde_encode(old, &ev, &rec, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&ev);
    /* and its record reads under the current schema with null trace fields */
    CU_ASSERT_EQUAL(es_serde_add_writer(cur, 2, old_text, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(cur, rec.data, rec.len, &got, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    CU_ASSERT_PTR_NULL(es_opt_string_get(got, "traceparent"));
    CU_ASSERT_PTR_NULL(es_opt_string_get(got, "tracestate"));
    ES_ASSERT_STR_EQ(es_opt_string_get(got, "correlation_id"), "order-42");

    /* headers: the three names, and none for an empty value */
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    const void *v;
    size_t len;
    in.tracestate[0] = '\0';
    es_trace_headers_add(h, &in);
    CU_ASSERT_EQUAL(rd_kafka_header_get_last(h, "traceparent", &v, &len), 0);
    CU_ASSERT_TRUE(len == strlen(W3C_TP) && !memcmp(v, W3C_TP, len));
    CU_ASSERT_EQUAL(rd_kafka_header_get_last(h, "correlation-id", &v, &len), 0);
    CU_ASSERT_TRUE(len == 8 && !memcmp(v, "order-42", len));
    CU_ASSERT_NOT_EQUAL(rd_kafka_header_get_last(h, "tracestate", &v, &len), 0);
    rd_kafka_headers_destroy(h);

    es_buf_free(&rec);
    es_serde_destroy(cur);
    es_serde_destroy(old);
    free(old_text);
    free(cur_text);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"traceparent: the spec's valid examples, future versions", test_traceparent_valid},
        {"traceparent: invalid values are refused", test_traceparent_invalid},
        {"traceparent: formatted as version 00", test_traceparent_format},
        {"tracestate: grammar and limits", test_tracestate},
        {"a server span continues or starts a trace", test_server_span},
        {"correlation ids: 1 to 128 printable bytes", test_correlation_id},
        {"log lines carry the thread's trace id", test_log_trace},
        {"lines an outsider can cause are limited", test_log_limited},
        {"envelope fields and headers, older schemas", test_envelope_fields},
        {NULL, NULL},
    };
    return es_test_run("trace", cases);
}
