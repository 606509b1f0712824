/*
 * 0201-write-http-contract.c — the gateway's HTTP contract end to end, and
 * what each answer left in the log.
 *
 * Every request carries its own Idempotency-Key (= command id), so the events
 * topic can be checked against the answers afterwards: each 200 has exactly
 * its event (type, version, position and headers as answered), each rejection,
 * conflict or refusal has none.  Also: five retries with one key give five
 * identical answers and one event; a reused key with another body is 409;
 * If-Match mismatches are 409 with expected and actual.
 */
#include "testutil.h"
#include "writetest.h"

#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SENT 256

typedef struct {
    char key[160];
    int status;
    bool expect_event; /* a 200 from a first attempt */
    char type[32];
    int64_t version;
    char position[48];
} sent_t;

static sent_t sent[MAX_SENT];
static size_t nsent;
static int keyseq;

/* POST with a fresh key; check status (and error code / reason when given). */
static json_t *post(wt_stack_t *st, const char *path, const char *body, const char *if_match,
                    int want_status, const char *want_error, const char *want_reason)
{
    json_t *ans = NULL;
    sent_t *s = &sent[nsent++];
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s-k%d", st->prefix, ++keyseq);
    s->status = wt_post(&st->gw, path, body, strlen(body), s->key, if_match, &ans);
    if (s->status != want_status)
        fprintf(stderr, "POST %s %s: %d, wanted %d: %s\n", path, body, s->status, want_status,
                ans ? json_dumps(ans, JSON_COMPACT) : "(no JSON)");
    CU_ASSERT_EQUAL(s->status, want_status);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ans);
    if (want_error) {
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(ans, "error")), want_error);
        CU_ASSERT(json_is_string(json_object_get(ans, "message")));
    }
    if (want_reason)
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(ans, "reason")), want_reason);
    if (s->status == 200) {
        json_t *ev = json_array_get(json_object_get(ans, "events"), 0);
        s->expect_event = true;
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(ans, "command_id")), s->key);
        CU_ASSERT_EQUAL(json_array_size(json_object_get(ans, "events")), 1);
        snprintf(s->type, sizeof(s->type), "%s",
                 es_test_or_empty(json_string_value(json_object_get(ev, "type"))));
        s->version = json_integer_value(json_object_get(ans, "version"));
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(ev, "version")), s->version);
        snprintf(s->position, sizeof(s->position), "%s",
                 es_test_or_empty(json_string_value(json_object_get(ans, "position"))));
    }
    return ans;
}

static void ok(wt_stack_t *st, const char *path, const char *body, int64_t want_version)
{
    json_t *a = post(st, path, body, NULL, 200, NULL, NULL);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(a, "version")), want_version);
    json_decref(a);
}

static void no(wt_stack_t *st, const char *path, const char *body, int status, const char *error,
               const char *reason)
{
    json_decref(post(st, path, body, NULL, status, error, reason));
}

/* Every 200 has exactly its event; nothing else is in the log. */
static void check_log(wt_stack_t *st)
{
    size_t n = 0, matched = 0;
    wt_event_t *evs = wt_read_events(st, &n);
    for (size_t i = 0; i < nsent; i++) {
        size_t found = 0;
        for (size_t k = 0; k < n; k++) {
            if (strcmp(evs[k].command_id, sent[i].key))
                continue;
            found++;
            char pos[48], ver[24];
            snprintf(pos, sizeof(pos), "%d:%lld", (int)evs[k].partition, (long long)evs[k].offset);
            snprintf(ver, sizeof(ver), "%lld", (long long)evs[k].version);
            ES_ASSERT_STR_EQ(pos, sent[i].position);
            ES_ASSERT_STR_EQ(evs[k].type, sent[i].type);
            CU_ASSERT_EQUAL(evs[k].version, sent[i].version);
            ES_ASSERT_STR_EQ(evs[k].hdr_type, evs[k].type);
            ES_ASSERT_STR_EQ(evs[k].hdr_command, sent[i].key);
            ES_ASSERT_STR_EQ(evs[k].hdr_version, ver);
        }
        if (found != (sent[i].expect_event ? 1u : 0u))
            fprintf(stderr, "command %s (HTTP %d): %zu event(s)\n", sent[i].key, sent[i].status,
                    found);
        CU_ASSERT_EQUAL(found, sent[i].expect_event ? 1u : 0u);
        matched += found;
    }
    CU_ASSERT_EQUAL(matched, n); /* no event without a command that got 200 */
    free(evs);
}

static void test_account_contract(void)
{
    wt_stack_t st;
    json_t *a, *b;
    char path[256], path2[256], big[20000];
    nsent = 0;
    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);

    snprintf(path, sizeof(path), "/v1/accounts/acct-1/deposit");
    no(&st, path, "{\"amount_cents\":5}", 422, "rejected", "account_not_open");
    ok(&st, "/v1/accounts/acct-1/open", "{\"owner\":\"Ada\"}", 1);
    no(&st, "/v1/accounts/acct-1/open", "{\"owner\":\"Bob\"}", 422, "rejected", "account_exists");
    ok(&st, path, "{\"amount_cents\":500}", 2);
    no(&st, "/v1/accounts/acct-1/withdraw", "{\"amount_cents\":501}", 422, "rejected",
       "insufficient_funds");
    ok(&st, "/v1/accounts/acct-1/withdraw", "{\"amount_cents\":500}", 3);
    no(&st, "/v1/accounts/acct-1/withdraw", "{\"amount_cents\":1}", 422, "rejected",
       "insufficient_funds");

    /* malformed requests never reach Kafka */
    no(&st, path, "{\"amount_cents\":", 400, "invalid_json", NULL);
    no(&st, path, "{\"amount_cents\":\"5\"}", 400, "invalid_command", NULL);
    no(&st, path, "{\"amount_cents\":0}", 400, "invalid_command", NULL);
    no(&st, path, "{\"amount_cents\":-3}", 400, "invalid_command", NULL);
    no(&st, path, "{}", 400, "invalid_command", NULL);
    no(&st, path, "{\"amount_cents\":5,\"memo\":\"x\"}", 400, "invalid_command", NULL);
    no(&st, "/v1/accounts/acct-1/open", "{\"owner\":7}", 400, "invalid_command", NULL);
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"amount_cents\":5}", 18);
    big[sizeof(big) - 1] = '\0';
    no(&st, path, big, 413, "payload_too_large", NULL);
    no(&st, "/v1/accounts/acct-1/explode", "{}", 404, "unknown_command", NULL);
    { /* ids of 1..128 characters: 128 works (was 404), 129 is 400 */
        char id[200], p128[300];
        memset(id, 'x', 129);
        id[129] = '\0';
        snprintf(p128, sizeof(p128), "/v1/accounts/%s/open", id);
        no(&st, p128, "{\"owner\":\"o\"}", 400, "invalid_command", NULL);
        id[128] = '\0';
        snprintf(p128, sizeof(p128), "/v1/accounts/%s/open", id);
        json_decref(post(&st, p128, "{\"owner\":\"o\"}", NULL, 200, NULL, NULL));
    }
    /* money past INT64_MAX is refused with a reason, never wrapped */
    json_decref(
        post(&st, "/v1/accounts/acct-max/open", "{\"owner\":\"o\"}", NULL, 200, NULL, NULL));
    json_decref(post(&st, "/v1/accounts/acct-max/deposit", "{\"amount_cents\":9223372036854775807}",
                     NULL, 200, NULL, NULL));
    json_decref(post(&st, "/v1/accounts/acct-max/deposit", "{\"amount_cents\":1}", NULL, 422,
                     "rejected", "amount_too_large"));
    no(&st, "/v1/carts/c-1/checkout", "{}", 404, "unknown_command", NULL); /* not served here */
    json_decref(post(&st, path, "{\"amount_cents\":5}", "v1", 400, "invalid_command", NULL));

    /* If-Match: a version in plain decimal, quoted or not, or a bad request; past int64 is
     * not a version (it was once clamped); the largest int64 is one, of no account yet */
    static const char *const bad_versions[] = {"99999999999999999999",
                                               "9223372036854775808",
                                               "-1",
                                               "+3",
                                               "0x3",
                                               "\"3",
                                               "3\"",
                                               "\"\"",
                                               "3,4",
                                               "\"-3\""};
    for (size_t i = 0; i < ES_ARRAY_SIZE(bad_versions); i++)
        json_decref(
            post(&st, path, "{\"amount_cents\":5}", bad_versions[i], 400, "invalid_command", NULL));
    a = post(&st, path, "{\"amount_cents\":5}", "9223372036854775807", 409, "version_conflict",
             NULL);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(a, "expected")) == INT64_MAX);
    json_decref(a);
    a = post(&st, path, "{\"amount_cents\":5}", "2", 409, "version_conflict", NULL);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(a, "expected")), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(a, "actual")), 3);
    json_decref(a);
    json_decref(post(&st, path, "{\"amount_cents\":5}", "3", 200, NULL, NULL));
    /* the ETag form, quoted, is the same version (docs/write-side.md) */
    a = post(&st, path, "{\"amount_cents\":5}", "\"3\"", 409, "version_conflict", NULL);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(a, "expected")), 3);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(a, "actual")), 4);
    json_decref(a);
    json_decref(post(&st, path, "{\"amount_cents\":5}", "\"4\"", 200, NULL, NULL));

    /* Idempotency: five tries, one key → five identical answers, one event */
    char *first = NULL;
    sent_t *s = &sent[nsent++];
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s-retry", st.prefix);
    for (int i = 0; i < 5; i++) {
        int status = wt_post(&st.gw, path, "{\"amount_cents\":7}", 18, s->key, NULL, &b);
        CU_ASSERT_EQUAL(status, 200);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        char *txt = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
        if (!first) {
            first = txt;
            json_t *ev = json_array_get(json_object_get(b, "events"), 0);
            s->status = 200;
            s->expect_event = true;
            snprintf(s->type, sizeof(s->type), "%s",
                     es_test_or_empty(json_string_value(json_object_get(ev, "type"))));
            s->version = json_integer_value(json_object_get(b, "version"));
            snprintf(s->position, sizeof(s->position), "%s",
                     es_test_or_empty(json_string_value(json_object_get(b, "position"))));
        } else {
            ES_ASSERT_STR_EQ(txt, first);
            free(txt);
        }
        json_decref(b);
    }
    CU_ASSERT_EQUAL(s->version, 6);
    free(first);
    /* the same key with another body is refused and writes nothing */
    int status = wt_post(&st.gw, path, "{\"amount_cents\":8}", 18, s->key, NULL, &b);
    if (status != 409)
        fprintf(stderr, "the same key, another body: %d, wanted 409: %s\n", status,
                b ? json_dumps(b, JSON_COMPACT) : "(no JSON)");
    CU_ASSERT_EQUAL(status, 409);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(b, "error")), "idempotency_key_reused");
    json_decref(b);
    /* and the account moved on only by the first try: version 7 next */
    snprintf(path2, sizeof(path2), "/v1/accounts/acct-1/withdraw");
    ok(&st, path2, "{\"amount_cents\":17}", 7); /* 5 + 5 + 7 = 17: all of it */
    no(&st, path2, "{\"amount_cents\":1}", 422, "rejected", "insufficient_funds");

    char *metrics = NULL;
    CU_ASSERT_EQUAL(wt_get(&st.cs, "/metrics", &metrics), 200);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(metrics, "escqrs_commands_rejected_total{reason=\"insufficient_funds\"} 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(metrics, "escqrs_commands_replayed_total 4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(metrics, "escqrs_transaction_commit_seconds_count"));
    /* every committed transaction had each of its steps timed before its commit, and the
     * store write after it (the last one's may still run: the answer leaves at the commit) */
    double commits = es_test_metric(metrics, "escqrs_transaction_commit_seconds_count");
    CU_ASSERT_TRUE(commits >= 1);
    static const char *const steps[] = {"decide", "events_flush", "outcomes_states", "offsets",
                                        "store"};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char name[96];
        snprintf(name, sizeof(name), "escqrs_transaction_step_seconds_count{step=\"%s\"}",
                 steps[i]);
        double n = es_test_metric(metrics, name);
        double least = commits - (strcmp(steps[i], "store") == 0); /* may still run */
        if (n < least)
            fprintf(stderr, "%s %g, commits %g\n", name, n, commits);
        CU_ASSERT_TRUE(n >= least);
    }
    /* every command polled and every outcome read had its wait measured */
    CU_ASSERT_TRUE(es_test_metric(metrics, "escqrs_command_wait_seconds_count") >= 10);
    free(metrics);
    CU_ASSERT_EQUAL(wt_get(&st.gw, "/metrics", &metrics), 200);
    CU_ASSERT_TRUE(es_test_metric(metrics, "escqrs_gateway_outcome_wait_seconds_count") >= 10);
    free(metrics);
    CU_ASSERT_EQUAL(wt_get(&st.gw, "/healthz", NULL), 200);

    wt_stack_stop(&st);
    check_log(&st);
}

static void test_cart_contract(void)
{
    wt_stack_t st;
    nsent = 0;
    wt_stack_init(&st, "cart");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);

    no(&st, "/v1/carts/c-1/checkout", "{}", 422, "rejected", "cart_empty");
    no(&st, "/v1/carts/c-1/remove-item", "{\"sku\":\"A\",\"quantity\":1}", 422, "rejected",
       "item_not_in_cart");
    ok(&st, "/v1/carts/c-1/add-item", "{\"sku\":\"A\",\"quantity\":2,\"unit_price_cents\":150}", 1);
    no(&st, "/v1/carts/c-1/remove-item", "{\"sku\":\"A\",\"quantity\":3}", 422, "rejected",
       "item_not_in_cart");
    ok(&st, "/v1/carts/c-1/remove-item", "{\"sku\":\"A\",\"quantity\":1}", 2);
    no(&st, "/v1/carts/c-1/add-item", "{\"sku\":\"A\",\"quantity\":0,\"unit_price_cents\":1}", 400,
       "invalid_command", NULL);
    no(&st, "/v1/carts/c-1/add-item", "{\"sku\":\"A\",\"quantity\":1}", 400, "invalid_command",
       NULL);
    ok(&st, "/v1/carts/c-1/checkout", "", 3); /* an empty body is {} */
    no(&st, "/v1/carts/c-1/add-item", "{\"sku\":\"B\",\"quantity\":1,\"unit_price_cents\":1}", 422,
       "rejected", "cart_checked_out");
    no(&st, "/v1/carts/c-1/checkout", "{}", 422, "rejected", "cart_checked_out");
    no(&st, "/v1/accounts/a/open", "{\"owner\":\"x\"}", 404, "unknown_command", NULL);

    wt_stack_stop(&st);
    check_log(&st);
}

/*
 * A gateway whose aggregate has never had a command service (a fresh
 * deployment, the service not started yet): not ready, and a command is
 * refused at once with 503 and never written, instead of waiting for an
 * outcome nobody will produce.
 */
static void test_no_command_service_ever(void)
{
    wt_stack_t gst;
    json_t *b = NULL;
    wt_stack_init(&gst, "account");
    wt_start_gateway(&gst, NULL, 0);
    /* Until the gateway reads its outcomes, /readyz gives other reasons
     * (starting, no broker answered yet, results topics): wait for this one. */
    CU_ASSERT_TRUE(wt_wait_not_ready_because(&gst.gw, "no command service", 30));
    int status = wt_post(&gst.gw, "/v1/accounts/a1/open", "{\"owner\":\"o\"}", 13, NULL, NULL, &b);
    CU_ASSERT_EQUAL(status, 503);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(b, "error")), "unavailable");
    json_decref(b);
    CU_ASSERT_EQUAL(wt_stop(&gst.gw), 0); /* the only daemon of this stack */
    size_t ncmd = 0;
    free(wt_read_commands(&gst, &ncmd));
    CU_ASSERT_EQUAL(ncmd, 0); /* nothing was written */
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a gateway with no command service ever: 503, nothing written",
         test_no_command_service_ever},
        {"account: rules, validation, If-Match, idempotency, log", test_account_contract},
        {"cart: rules, validation, log", test_cart_contract},
        {NULL, NULL},
    };
    return es_test_run("write-http-contract", cases);
}
