/*
 * 0206-trace-context.c — a request followed from the HTTP call to its
 * command, events and outcome (issue 15), and the hostile inputs.
 *
 * Sent to a real gateway and command service (account aggregate, debug
 * logs):
 *   k1  open, with a W3C traceparent and tracestate and an X-Correlation-Id;
 *   k2  deposit with a malformed (uppercase) traceparent, a tracestate, no
 *       correlation id: accepted, a new trace, tracestate dropped, the
 *       command id as correlation id;
 *   k3  deposit with a 129-byte X-Correlation-Id: 400, nothing written;
 *   k4  a withdrawal the account refuses (422), in another trace;
 *   k1  again with another traceparent: the first outcome, with the retry's
 *       own request context.
 * Then the log: the command record, every event and every outcome carry
 * the same correlation id, traceparent and tracestate as value fields and
 * as headers; the outcome names the command and its issued_at; the
 * answer's traceparent is the gateway's span in the caller's trace; both
 * daemons' log lines carry the trace id.
 */
#include "testutil.h"
#include "writetest.h"

#include "escqrs/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_ID  "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_CALLER "traceparent: 00-" TRACE_ID "-00f067aa0ba902b7-01"
#define TRACE_ID2 "0af7651916cd43dd8448eb211c80319c"
#define TP_OTHER  "traceparent: 00-" TRACE_ID2 "-b7ad6b7169203331-01"
#define TRACE_ID3 "11111111111111111111111111111111"
#define TP_RETRY  "traceparent: 00-" TRACE_ID3 "-2222222222222222-00"

typedef struct {
    int status;
    char traceparent[128], correlation[256];
    json_t *body;
} answer_t;

static void post(wt_stack_t *st, const char *path, const char *body, const char *const *hdrs,
                 int want, answer_t *a)
{
    char *block = NULL;
    a->status = wt_post_with(&st->gw, path, body, hdrs, &block, &a->body);
    wt_header_value(block, "traceparent", a->traceparent, sizeof(a->traceparent));
    wt_header_value(block, "X-Correlation-Id", a->correlation, sizeof(a->correlation));
    if (a->status != want)
        fprintf(stderr, "\n    POST %s: %d, wanted %d: %s", path, a->status, want,
                a->body ? json_dumps(a->body, JSON_COMPACT) : "(no JSON)");
    CU_ASSERT_EQUAL(a->status, want);
    free(block);
}

/* The record's value fields and headers agree and are @p corr, @p tp, @p ts. */
static void check_trace(const char *what, const es_trace_fields_t *v, const es_trace_fields_t *h,
                        const char *corr, const char *tp, const char *ts)
{
    if (strcmp(v->traceparent, tp) || strcmp(v->correlation_id, corr))
        fprintf(stderr, "\n    %s: correlation %s traceparent %s, wanted %s %s", what,
                v->correlation_id, v->traceparent, corr, tp);
    ES_ASSERT_STR_EQ(v->correlation_id, corr);
    ES_ASSERT_STR_EQ(v->traceparent, tp);
    ES_ASSERT_STR_EQ(v->tracestate, ts);
    ES_ASSERT_STR_EQ(h->correlation_id, corr);
    ES_ASSERT_STR_EQ(h->traceparent, tp);
    ES_ASSERT_STR_EQ(h->tracestate, ts);
}

/* The answer's traceparent: valid, a span of its own, in trace @p trace_id (NULL: a new one). */
static void check_span(const answer_t *a, const char *trace_id, const char *caller_span)
{
    es_traceparent_t tp;
    CU_ASSERT_TRUE_FATAL(es_traceparent_parse(a->traceparent, &tp));
    if (trace_id)
        ES_ASSERT_STR_EQ(tp.trace_id, trace_id);
    else
        CU_ASSERT_TRUE(strcmp(tp.trace_id, TRACE_ID) && strcmp(tp.trace_id, TRACE_ID2));
    CU_ASSERT_STRING_NOT_EQUAL(tp.parent_id, caller_span);
}

static const wt_command_t *command_of(const wt_command_t *cs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cs[i].command_id, id))
            return &cs[i];
    return NULL;
}

/* Does the log file @p path have a line with trace id @p trace_id and @p text? */
static bool log_has(const char *path, const char *trace_id, const char *text)
{
    char want[64];
    snprintf(want, sizeof(want), "\"trace_id\":\"%s\"", trace_id);
    return wt_log_line(path, want, text, NULL, 0);
}

static void test_trace_end_to_end(void)
{
    wt_stack_t st;
    answer_t a1, a2, a3, a4, a5;
    char longid[ES_CORRELATION_ID_MAX + 2], hdr_long[200];
    static const char *const debug[] = {"log.level=debug"};
    wt_stack_init(&st, "account");
    wt_start_service(&st, debug, 1);
    wt_start_gateway(&st, debug, 1);
    wt_wait_ready(&st.cs, 120);
    wt_wait_ready(&st.gw, 120);

    const char *h1[] = {"Idempotency-Key: k1", TP_CALLER, "tracestate: congo=t61rcWkgMzE",
                        "X-Correlation-Id: corr-0206", NULL};
    post(&st, "/v1/accounts/a1/open", "{\"owner\":\"Ada\"}", h1, 200, &a1);
    check_span(&a1, TRACE_ID, "00f067aa0ba902b7");
    ES_ASSERT_STR_EQ(a1.correlation, "corr-0206");

    /* malformed traceparent: the spec says ignore it (a new trace), never refuse */
    const char *h2[] = {"Idempotency-Key: k2",
                        "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                        "tracestate: congo=t61rcWkgMzE", NULL};
    post(&st, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", h2, 200, &a2);
    check_span(&a2, NULL, "00f067aa0ba902b7");
    ES_ASSERT_STR_EQ(a2.correlation, "k2"); /* the command id correlates */

    /* an over-long correlation id: 400, nothing written */
    memset(longid, 'c', sizeof(longid));
    longid[ES_CORRELATION_ID_MAX + 1] = '\0';
    snprintf(hdr_long, sizeof(hdr_long), "X-Correlation-Id: %s", longid);
    const char *h3[] = {"Idempotency-Key: k3", TP_CALLER, hdr_long, NULL};
    post(&st, "/v1/accounts/a1/deposit", "{\"amount_cents\":100}", h3, 400, &a3);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(a3.body, "error")), "invalid_command");
    CU_ASSERT_PTR_NOT_NULL(
        strstr(es_test_or_empty(json_string_value(json_object_get(a3.body, "message"))),
               "X-Correlation-Id"));
    check_span(&a3, TRACE_ID, "00f067aa0ba902b7"); /* even a refusal says its trace */
    ES_ASSERT_STR_EQ(a3.correlation, "");          /* a refused id is not echoed */

    /* refused by the aggregate, in another trace */
    const char *h4[] = {"Idempotency-Key: k4", TP_OTHER, NULL};
    post(&st, "/v1/accounts/a1/withdraw", "{\"amount_cents\":1000}", h4, 422, &a4);
    check_span(&a4, TRACE_ID2, "b7ad6b7169203331");

    /* a retry of k1: the first outcome, with the retry's own context */
    const char *h5[] = {"Idempotency-Key: k1", TP_RETRY, NULL};
    post(&st, "/v1/accounts/a1/open", "{\"owner\":\"Ada\"}", h5, 200, &a5);
    check_span(&a5, TRACE_ID3, "2222222222222222");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(a5.body, "version")), 1);
    CU_ASSERT_TRUE(strcmp(a5.traceparent + 53, "00") == 0); /* not sampled stays so */

    wt_stack_stop(&st);

    /* the command records: k3 never written */
    size_t ncmd = 0, nev = 0, nres = 0;
    wt_command_t *cmds = wt_read_commands(&st, &ncmd);
    CU_ASSERT_EQUAL(ncmd, 4); /* k1, k2, k4, k1 again */
    CU_ASSERT_PTR_NULL(command_of(cmds, ncmd, "k3"));
    const wt_command_t *c1 = command_of(cmds, ncmd, "k1"), *c2 = command_of(cmds, ncmd, "k2"),
                       *c4 = command_of(cmds, ncmd, "k4");
    CU_ASSERT_FATAL(c1 && c2 && c4);
    check_trace("command k1", &c1->trace, &c1->hdr_trace, "corr-0206", a1.traceparent,
                "congo=t61rcWkgMzE");
    check_trace("command k2", &c2->trace, &c2->hdr_trace, "k2", a2.traceparent, "");
    check_trace("command k4", &c4->trace, &c4->hdr_trace, "k4", a4.traceparent, "");

    /* every event carries its command's context */
    wt_event_t *evs = wt_read_events(&st, &nev);
    CU_ASSERT_EQUAL(nev, 2);
    for (size_t i = 0; i < nev; i++) {
        const wt_command_t *c = command_of(cmds, ncmd, evs[i].command_id);
        CU_ASSERT_FATAL(c != NULL);
        check_trace(evs[i].type, &evs[i].trace, &evs[i].hdr_trace, c->trace.correlation_id,
                    c->trace.traceparent, c->trace.tracestate);
    }

    /* every outcome: the context, the command's type and issued_at */
    wt_outcome_t *res = wt_read_outcomes(&st, &nres);
    CU_ASSERT_EQUAL(nres, 4);
    int k1_seen = 0;
    for (size_t i = 0; i < nres; i++) {
        wt_outcome_t *o = &res[i];
        if (!strcmp(o->command_id, "k1") && k1_seen++) { /* the retry */
            check_trace("retried k1", &o->trace, &o->hdr_trace, "k1", a5.traceparent, "");
            ES_ASSERT_STR_EQ(o->status, "ACCEPTED");
            ES_ASSERT_STR_EQ(o->command_type, "OpenAccount");
            continue;
        }
        const wt_command_t *c = command_of(cmds, ncmd, o->command_id);
        CU_ASSERT_FATAL(c != NULL);
        check_trace(o->command_id, &o->trace, &o->hdr_trace, c->trace.correlation_id,
                    c->trace.traceparent, c->trace.tracestate);
        ES_ASSERT_STR_EQ(o->command_type, c->type);
        CU_ASSERT_EQUAL(o->issued_at, c->issued_at);
        CU_ASSERT_TRUE(o->issued_at > 0);
    }
    CU_ASSERT_EQUAL(k1_seen, 2);

    /* both daemons' log lines for the request carry its trace id */
    CU_ASSERT_TRUE(log_has(st.gw.log, TRACE_ID, "command k1"));
    CU_ASSERT_TRUE(log_has(st.gw.log, TRACE_ID, "/v1/accounts/a1/open"));
    CU_ASSERT_TRUE(log_has(st.cs.log, TRACE_ID, "command k1"));
    CU_ASSERT_TRUE(log_has(st.cs.log, TRACE_ID2, "REJECTED insufficient_funds"));
    CU_ASSERT_TRUE(log_has(st.cs.log, TRACE_ID3, "first outcome"));

    free(cmds);
    free(evs);
    free(res);
    json_decref(a1.body);
    json_decref(a2.body);
    json_decref(a3.body);
    json_decref(a4.body);
    json_decref(a5.body);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"trace context from the request to command, events and outcome", test_trace_end_to_end},
        {NULL, NULL},
    };
    return es_test_run("trace-context", cases);
}
