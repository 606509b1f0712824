/*
 * test_command.c — JSON bodies to commands (every rule of the HTTP contract),
 * CommandResult values to and from outcomes, outcomes to HTTP answers, and
 * fingerprints that tell a retry from a reused Idempotency-Key.
 */
#include "account.h"
#include "cart.h"
#include "escqrs/command.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <string.h>

typedef struct {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t cmd, payload;
} cmdv_t;

static void cmdv_init(cmdv_t *c, const char *schema)
{
    char errstr[256];
    CU_ASSERT_EQUAL_FATAL(es_schema_parse(schema, &c->schema, errstr, sizeof(errstr)), ES_ERR_OK);
    c->iface = avro_generic_class_from_schema(c->schema);
    avro_generic_value_new(c->iface, &c->cmd);
    avro_value_get_by_name(&c->cmd, "payload", &c->payload, NULL);
}

static void cmdv_free(cmdv_t *c)
{
    avro_value_decref(&c->cmd);
    avro_value_iface_decref(c->iface);
    avro_schema_decref(c->schema);
}

/* Parse @p body for verb @p verb of @p def; returns the error code or NULL. */
static const char *parse(cmdv_t *c, const es_aggregate_def_t *def, const char *verb,
                         const char *body)
{
    const char *code = NULL;
    char msg[256] = "";
    const es_command_def_t *cd = es_command_find(def, verb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cd);
    es_err_t err =
        es_command_from_json(cd, body, strlen(body), &c->payload, &code, msg, sizeof(msg));
    if (err) {
        CU_ASSERT(msg[0] != '\0'); /* every refusal says why */
        return code;
    }
    return NULL;
}

static void test_cart_bodies(void)
{
    cmdv_t c;
    avro_value_t rec, f;
    const char *s;
    size_t len;
    int32_t q;
    int64_t p;
    cmdv_init(&c, "cart.commands");

    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_cart, "add-item",
                             "{\"sku\":\"A-1\",\"quantity\":2,\"unit_price_cents\":0}"));
    avro_value_get_current_branch(&c.payload, &rec);
    ES_ASSERT_STR_EQ(avro_schema_name(avro_value_get_schema(&rec)), "AddItem");
    avro_value_get_by_name(&rec, "sku", &f, NULL);
    avro_value_get_string(&f, &s, &len);
    ES_ASSERT_STR_EQ(s, "A-1");
    CU_ASSERT_EQUAL(len, sizeof("A-1")); /* Avro C's size counts the NUL */
    avro_value_get_by_name(&rec, "quantity", &f, NULL);
    avro_value_get_int(&f, &q);
    CU_ASSERT_EQUAL(q, 2);
    avro_value_get_by_name(&rec, "unit_price_cents", &f, NULL);
    avro_value_get_long(&f, &p);
    CU_ASSERT_EQUAL(p, 0);

    CU_ASSERT_PTR_NULL(
        parse(&c, &es_domain_cart, "remove-item", "{\"sku\":\"A-1\",\"quantity\":1}"));
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_cart, "checkout", "{}"));
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_cart, "checkout", "")); /* empty body is {} */
    avro_value_get_current_branch(&c.payload, &rec);
    ES_ASSERT_STR_EQ(avro_schema_name(avro_value_get_schema(&rec)), "Checkout");

    /* malformed JSON */
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "checkout", "{"), "invalid_json");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item", "{\"sku\":\"a\",\"sku\":\"b\"}"),
                     "invalid_json");
    /* not an object */
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "checkout", "[]"), "invalid_command");
    /* missing fields, wrong types, bounds, unknown fields */
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item", "{\"sku\":\"A\",\"quantity\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\",\"quantity\":\"1\",\"unit_price_cents\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\",\"quantity\":1.5,\"unit_price_cents\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\",\"quantity\":0,\"unit_price_cents\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":-1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\",\"quantity\":2147483648,\"unit_price_cents\":1}"),
                     "invalid_command"); /* beyond the schema's int */
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"\",\"quantity\":1,\"unit_price_cents\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\\u0000B\",\"quantity\":1,\"unit_price_cents\":1}"),
                     "invalid_json"); /* jansson refuses NUL in strings */
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item",
                           "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":1,\"x\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "checkout", "{\"force\":true}"), "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "remove-item", "{\"sku\":null,\"quantity\":1}"),
                     "invalid_command");
    char longsku[200];
    memset(longsku, 'x', sizeof(longsku));
    longsku[CART_SKU_MAX] = '\0'; /* one byte more than fits */
    char body[400];
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"quantity\":1}", longsku);
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "remove-item", body), "invalid_command");
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"quantity\":1,\"unit_price_cents\":1}", longsku);
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "add-item", body), "invalid_command");
    longsku[CART_SKU_MAX - 1] = '\0';
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"quantity\":1,\"unit_price_cents\":1}", longsku);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_cart, "add-item", body));
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"quantity\":1}", longsku);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_cart, "remove-item", body));
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "remove-item", "{\"sku\":\"\",\"quantity\":1}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_cart, "remove-item", "{\"sku\":\"A\",\"quantity\":0}"),
                     "invalid_command");
    CU_ASSERT_PTR_NULL(es_command_find(&es_domain_cart, "explode"));
    cmdv_free(&c);
}

static void test_account_bodies(void)
{
    cmdv_t c;
    cmdv_init(&c, "account.commands");
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "open", "{\"owner\":\"Ada\"}"));
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":100}"));
    CU_ASSERT_PTR_NULL(
        parse(&c, &es_domain_account, "withdraw", "{\"amount_cents\":9223372036854775807}"));
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "withdraw", "{\"amount_cents\":0}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":0}"),
                     "invalid_command");
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":1}"));
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":true}"),
                     "invalid_command");
    ES_ASSERT_STR_EQ(
        parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":99999999999999999999}"),
        "invalid_json"); /* jansson refuses integers beyond int64 */
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "open", "{}"), "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "open", "\"Ada\""), "invalid_command");
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "open", "{\"owner\":\"\"}"), "invalid_command");
    char owner[sizeof(((account_state_t *)0)->owner) + 1], body[300];
    memset(owner, 'o', sizeof(owner) - 1); /* one byte past what the state holds */
    owner[sizeof(owner) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"owner\":\"%s\"}", owner);
    ES_ASSERT_STR_EQ(parse(&c, &es_domain_account, "open", body), "invalid_command");
    owner[sizeof(owner) - 2] = '\0';
    snprintf(body, sizeof(body), "{\"owner\":\"%s\"}", owner);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "open", body));
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "open", "{\"owner\":\"A\"}")); /* shortest */
    cmdv_free(&c);
}

static void test_ids(void)
{
    CU_ASSERT(es_command_id_valid("cart-1"));
    CU_ASSERT(!es_command_id_valid(""));
    CU_ASSERT(!es_command_id_valid("a b"));
    CU_ASSERT(!es_command_id_valid("\x01"));
    CU_ASSERT(!es_command_id_valid(NULL));
    CU_ASSERT(es_command_id_valid("a"));          /* the shortest */
    CU_ASSERT(es_command_id_valid("!~"));         /* the first and last printable bytes */
    CU_ASSERT(!es_command_id_valid("a\x7f"));     /* DEL */
    CU_ASSERT(!es_command_id_valid("a\xc3\xa9")); /* not ASCII */
    char id[ES_ID_MAX + 2];
    memset(id, 'a', sizeof(id));
    id[ES_ID_MAX] = '\0';
    CU_ASSERT(es_command_id_valid(id));
    id[ES_ID_MAX] = 'a';
    id[ES_ID_MAX + 1] = '\0';
    CU_ASSERT(!es_command_id_valid(id));
}

static void test_fingerprint(void)
{
    cmdv_t c;
    avro_value_t ev, br;
    cmdv_init(&c, "account.commands");
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":100}"));
    uint64_t a = es_command_fingerprint(&c.cmd);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":100}"));
    CU_ASSERT_EQUAL(es_command_fingerprint(&c.cmd), a);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":101}"));
    CU_ASSERT_NOT_EQUAL(es_command_fingerprint(&c.cmd), a);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "withdraw", "{\"amount_cents\":100}"));
    CU_ASSERT_NOT_EQUAL(es_command_fingerprint(&c.cmd), a);
    CU_ASSERT_PTR_NULL(parse(&c, &es_domain_account, "deposit", "{\"amount_cents\":100}"));
    avro_value_get_by_name(&c.cmd, "expected_version", &ev, NULL);
    avro_value_set_branch(&ev, 1, &br);
    avro_value_set_long(&br, 3);
    CU_ASSERT_NOT_EQUAL(es_command_fingerprint(&c.cmd), a); /* If-Match is part of the ask */
    CU_ASSERT_NOT_EQUAL(es_command_fingerprint(&c.cmd), 0);
    cmdv_free(&c);
}

static void test_precheck(void)
{
    /* new command: If-Match decides between deciding and a conflict */
    CU_ASSERT_EQUAL(es_command_precheck(false, 0, 42, false, 0, 7), ES_PRECHECK_DECIDE);
    CU_ASSERT_EQUAL(es_command_precheck(false, 0, 42, true, 7, 7), ES_PRECHECK_DECIDE);
    CU_ASSERT_EQUAL(es_command_precheck(false, 0, 42, true, 6, 7), ES_PRECHECK_CONFLICT);
    CU_ASSERT_EQUAL(es_command_precheck(false, 0, 42, true, 0, 0), ES_PRECHECK_DECIDE);
    /* known id: same command → replay even when the version moved on since */
    CU_ASSERT_EQUAL(es_command_precheck(true, 42, 42, true, 3, 9), ES_PRECHECK_REPLAY);
    CU_ASSERT_EQUAL(es_command_precheck(true, 42, 43, false, 0, 9), ES_PRECHECK_REUSED);
    CU_ASSERT_EQUAL(es_command_precheck(true, 42, 43, true, 9, 9), ES_PRECHECK_REUSED);
    /* rebuilt from the log: the body is unknown, so it counts as a retry */
    CU_ASSERT_EQUAL(es_command_precheck(true, 0, 43, false, 0, 9), ES_PRECHECK_REPLAY);
}

#define CONTEXT_NULL                                                                               \
    "\"correlation_id\": null, \"traceparent\": null, \"tracestate\": null, \"command_type\": "    \
    "null, \"issued_at\": null"

/* The record as other readers of the topic see it (Avro's JSON form), field by field. */
static void assert_wire(avro_value_t *v, const char *want)
{
    char *wire = NULL;
    CU_ASSERT_EQUAL_FATAL(avro_value_to_json(v, 1, &wire), 0);
    ES_ASSERT_STR_EQ(wire, want);
    free(wire);
}

/*
 * An outcome at the edges of its record: every status, the most events a command may
 * produce (each one read back, in order, and each one in the HTTP answer), every
 * string field at its longest; one byte more in a field on the wire is refused.
 */
static void test_outcome_edges(void)
{
    char errstr[256];
    avro_schema_t s;
    CU_ASSERT_EQUAL_FATAL(es_schema_parse("command-result", &s, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_iface_t *iface = avro_generic_class_from_schema(s);
    avro_value_t v, f, br;
    avro_generic_value_new(iface, &v);
    es_outcome_t o, back;
    for (int st = ES_OUTCOME_ACCEPTED; st <= ES_OUTCOME_IDEMPOTENCY_KEY_REUSED; st++) {
        memset(&o, 0, sizeof(o));
        memset(o.command_id, 'c', ES_ID_MAX);
        memset(o.aggregate_id, 'a', ES_ID_MAX);
        memset(o.reason, 'r', sizeof(o.reason) - 1);
        memset(o.position, '9', sizeof(o.position) - 1);
        o.status = (es_outcome_status_t)st;
        o.version = INT64_MAX;
        o.nevents = ES_AGG_MAX_EVENTS;
        for (size_t i = 0; i < ES_AGG_MAX_EVENTS; i++) {
            memset(o.events[i].type, 'A' + (int)i, sizeof(o.events[i].type) - 1);
            o.events[i].version = (int64_t)i + 1;
        }
        CU_ASSERT_EQUAL(es_outcome_to_value(&o, &v, errstr, sizeof(errstr)), ES_ERR_OK);
        CU_ASSERT_EQUAL(es_outcome_from_value(&v, &back, errstr, sizeof(errstr)), ES_ERR_OK);
        CU_ASSERT_EQUAL(memcmp(&o, &back, sizeof(o)), 0);
    }
    json_t *body = NULL;
    o.status = ES_OUTCOME_ACCEPTED;
    CU_ASSERT_EQUAL(es_outcome_http(&o, &body), 200);
    json_t *events = json_object_get(body, "events");
    CU_ASSERT_EQUAL_FATAL(json_array_size(events), ES_AGG_MAX_EVENTS);
    for (size_t i = 0; i < ES_AGG_MAX_EVENTS; i++)
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(events, i), "version")),
                        (json_int_t)i + 1);
    json_decref(body);

    char longer[sizeof(o.reason) + 1];
    memset(longer, 'r', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    avro_value_get_by_name(&v, "reason", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_string(&br, longer);
    CU_ASSERT_EQUAL(es_outcome_from_value(&v, &back, errstr, sizeof(errstr)), ES_ERR_DECODE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "reason"));
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(s);
}

static void test_outcome_roundtrip_and_http(void)
{
    char errstr[256];
    avro_schema_t s;
    CU_ASSERT_EQUAL_FATAL(es_schema_parse("command-result", &s, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_iface_t *iface = avro_generic_class_from_schema(s);
    avro_value_t v;
    avro_generic_value_new(iface, &v);

    es_outcome_t o = {.command_id = "c1",
                      .aggregate_id = "acct-1",
                      .status = ES_OUTCOME_ACCEPTED,
                      .actual_version = 4,
                      .version = 5,
                      .nevents = 1,
                      .position = "2:17",
                      .processed_at = 1700000000000};
    snprintf(o.events[0].type, sizeof(o.events[0].type), "Withdrawn");
    o.events[0].version = 5;
    es_outcome_t back;
    CU_ASSERT_EQUAL(es_outcome_to_value(&o, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_outcome_from_value(&v, &back, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(memcmp(&o, &back, sizeof(o)), 0);
    assert_wire(&v,
                "{\"command_id\": \"c1\", \"aggregate_id\": \"acct-1\", \"status\": "
                "\"ACCEPTED\", \"reason\": null, \"expected_version\": null, \"actual_version\": "
                "4, \"version\": 5, \"events\": [{\"type\": \"Withdrawn\", \"version\": 5}], "
                "\"position\": {\"string\": \"2:17\"}, \"processed_at\": 1700000000000, "
                "\"principal\": null, " CONTEXT_NULL "}");

    json_t *body = NULL;
    CU_ASSERT_EQUAL(es_outcome_http(&back, &body), 200);
    char *txt = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    ES_ASSERT_STR_EQ(txt, "{\"aggregate_id\":\"acct-1\",\"command_id\":\"c1\",\"events\":"
                          "[{\"type\":\"Withdrawn\",\"version\":5}],\"position\":\"2:17\","
                          "\"version\":5}");
    free(txt);
    json_decref(body);

    /* rejected: 422 with the reason; value reused, so reset must clear the events */
    es_outcome_t r = {.command_id = "c2",
                      .aggregate_id = "acct-1",
                      .status = ES_OUTCOME_REJECTED,
                      .reason = "insufficient_funds",
                      .actual_version = 5,
                      .version = 5};
    CU_ASSERT_EQUAL(es_outcome_to_value(&r, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_outcome_from_value(&v, &back, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(back.nevents, 0);
    ES_ASSERT_STR_EQ(back.position, "");
    CU_ASSERT_EQUAL(es_outcome_http(&back, &body), 422);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(body, "error")), "rejected");
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(body, "reason")), "insufficient_funds");
    CU_ASSERT(json_is_string(json_object_get(body, "message")));
    json_decref(body);

    es_outcome_t vc = {.command_id = "c3",
                       .aggregate_id = "acct-1",
                       .status = ES_OUTCOME_VERSION_CONFLICT,
                       .has_expected = true,
                       .expected_version = 2,
                       .actual_version = 5,
                       .version = 5};
    avro_value_t ctx, br; /* the command service sets the context on the value it reuses */
    avro_value_get_by_name(&v, "correlation_id", &ctx, NULL);
    avro_value_set_branch(&ctx, 1, &br);
    avro_value_set_string(&br, "corr-1");
    CU_ASSERT_EQUAL(es_outcome_to_value(&vc, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    assert_wire(&v, "{\"command_id\": \"c3\", \"aggregate_id\": \"acct-1\", \"status\": "
                    "\"VERSION_CONFLICT\", \"reason\": null, \"expected_version\": {\"long\": 2}, "
                    "\"actual_version\": 5, \"version\": 5, \"events\": [], \"position\": null, "
                    "\"processed_at\": 0, \"principal\": null, " CONTEXT_NULL "}");
    CU_ASSERT_EQUAL(es_outcome_from_value(&v, &back, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT(back.has_expected);
    CU_ASSERT_EQUAL(es_outcome_http(&back, &body), 409);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(body, "error")), "version_conflict");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "expected")), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(body, "actual")), 5);
    json_decref(body);

    es_outcome_t k = {
        .command_id = "c4", .aggregate_id = "acct-1", .status = ES_OUTCOME_IDEMPOTENCY_KEY_REUSED};
    CU_ASSERT_EQUAL(es_outcome_http(&k, &body), 409);
    ES_ASSERT_STR_EQ(json_string_value(json_object_get(body, "error")), "idempotency_key_reused");
    json_decref(body);
    es_outcome_t ic = {.status = ES_OUTCOME_REJECTED, .reason = "invalid_command"};
    CU_ASSERT_EQUAL(es_outcome_http(&ic, &body), 400);
    json_decref(body);

    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(s);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"cart bodies", test_cart_bodies},
        {"account bodies", test_account_bodies},
        {"ids", test_ids},
        {"fingerprint", test_fingerprint},
        {"idempotency and If-Match precheck", test_precheck},
        {"outcome round trip and HTTP", test_outcome_roundtrip_and_http},
        {"an outcome at the edges of its record", test_outcome_edges},
        {NULL, NULL},
    };
    return es_test_run("command", cases);
}
