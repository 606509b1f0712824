/*
 * 0101-foreign-reader.c — records escqrs writes are read by tools it did not write.
 *
 * Produces three cart events (one per payload type) with the serde and the
 * envelope headers to a fresh `<agg>.events` topic on the real broker, its
 * schema registered in the real registry under `<topic>-value`, then runs
 * foreign_reader.py: Python confluent-kafka consumes them, the writer schema
 * is fetched by the id in the value's bytes 1..4, and Apache Avro's Python
 * library decodes the body.  Every field and header must come back as sent.
 */
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/record.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define NEVENTS     3
#define TIMEOUT     20000
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static const es_conf_def_t *const tables[] = {es_conf_common_defs, es_kafka_conf_defs, NULL};
static char errstr[1024], agg[128], topic[160];

typedef struct {
    char event_id[ES_UUID_STR_LEN];
    const char *type;
    int64_t version;
    const char *sku;
} sent_t;

static sent_t sent[NEVENTS];

static void set_str(avro_value_t *rec, const char *field, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_string(&f, v);
}

static void set_long(avro_value_t *rec, const char *field, int64_t v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_set_long(&f, v);
}

static void produce_events(int *schema_id)
{
    es_conf_t *c = es_conf_new("it0101", tables);
    es_conf_set(c, "kafka.bootstrap.servers", es_test_bootstrap(), "test", errstr, 1024);
    es_admin_t *adm = es_admin_new(c, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(adm);
    es_topic_spec_t spec;
    es_topic_spec_for(c, ES_TOPIC_EVENTS, topic, &spec);
    CU_ASSERT_EQUAL_FATAL(es_admin_create_topics(adm, &spec, 1, TIMEOUT, errstr, 1024), ES_ERR_OK);
    es_admin_destroy(adm);

    es_registry_t *reg = es_registry_new(es_test_registry(), 5000, 2, errstr, sizeof(errstr));
    char subject[200];
    snprintf(subject, sizeof(subject), "%s-value", topic);
    es_serde_t *serde =
        es_serde_new(reg, subject, es_schema_text("cart.events"), true, 0, errstr, 1024);
    CU_ASSERT_PTR_NOT_NULL_FATAL(serde);
    *schema_id = es_serde_schema_id(serde);
    es_producer_t *prod = es_producer_new(c, NULL, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(prod);

    static const char *const types[NEVENTS] = {"ItemAdded", "ItemRemoved", "CartCheckedOut"};
    es_buf_t buf = {0};
    for (int i = 0; i < NEVENTS; i++) {
        avro_value_t ev, f, p;
        sent_t *s = &sent[i];
        es_uuid_v4(s->event_id);
        s->type = types[i];
        s->version = i + 1;
        s->sku = i < 2 ? "SKU-\xc3\xa9" : NULL; /* non-ASCII UTF-8 on purpose */
        es_serde_new_value(serde, &ev);
        set_str(&ev, "event_id", s->event_id);
        set_str(&ev, "cart_id", "cart-0101");
        set_long(&ev, "version", s->version);
        set_long(&ev, "occurred_at", 1700000000000LL + i);
        set_str(&ev, "command_id", "cmd-0101");
        avro_value_get_by_name(&ev, "correlation_id", &f, NULL);
        avro_value_set_branch(&f, i == 1 ? 1 : 0, &p);
        if (i == 1)
            avro_value_set_string(&p, "corr-1");
        es_principal_set(&ev, i == 1 ? "alice" : NULL, i == 1 ? "web-app" : NULL);
        es_opt_string_set(&ev, "traceparent", i == 1 ? TRACEPARENT : NULL);
        es_opt_string_set(&ev, "tracestate", NULL);
        avro_value_get_by_name(&ev, "payload", &f, NULL);
        avro_value_set_branch(&f, i, &p);
        if (i < 2) {
            set_str(&p, "sku", s->sku);
            avro_value_get_by_name(&p, "quantity", &f, NULL);
            avro_value_set_int(&f, 2);
        }
        if (i == 0)
            set_long(&p, "unit_price_cents", 250);
        if (i == 2)
            set_long(&p, "total_cents", 500);
        rd_kafka_headers_t *h = NULL;
        CU_ASSERT_EQUAL_FATAL(es_event_headers_from_value(&ev, &h, errstr, 1024), ES_ERR_OK);
        CU_ASSERT_EQUAL_FATAL(es_serde_encode(serde, &ev, &buf, errstr, 1024), ES_ERR_OK);
        CU_ASSERT_EQUAL(es_producer_send(prod, topic, "cart-0101", 9, buf.data, buf.len, h, NULL,
                                         errstr, sizeof(errstr)),
                        ES_ERR_OK);
        avro_value_decref(&ev);
    }
    CU_ASSERT_EQUAL(es_producer_flush(prod, TIMEOUT, errstr, sizeof(errstr)), ES_ERR_OK);
    es_producer_destroy(prod);
    es_buf_free(&buf);
    es_serde_destroy(serde);
    es_registry_destroy(reg);
    es_conf_destroy(c);
}

static void test_python_reads_our_events(void)
{
    int schema_id = -1;
    char cmd[2048], line[8192];
    int got = 0;
    produce_events(&schema_id);
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 '%s/tests/integration/foreign_reader.py' '%s' '%s' '%s' %d",
             getenv("ESCQRS_SOURCE_DIR") ? getenv("ESCQRS_SOURCE_DIR") : ".", es_test_bootstrap(),
             es_test_registry(), topic, NEVENTS);
    pid_t pid = -1;
    FILE *p = es_test_popen(cmd, &pid); /* the reader dies with this test */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    while (fgets(line, sizeof(line), p)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        json_t *v = json_object_get(j, "value"), *h = json_object_get(j, "headers");
        int64_t version = json_integer_value(json_object_get(v, "version"));
        CU_ASSERT_TRUE_FATAL(version >= 1 && version <= NEVENTS);
        sent_t *s = &sent[version - 1];
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(j, "key")), "cart-0101");
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "schema_id")), schema_id);
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(v, "event_id")), s->event_id);
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(v, "cart_id")), "cart-0101");
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(v, "occurred_at")),
                        1700000000000LL + version - 1);
        json_t *corr = json_object_get(v, "correlation_id");
        if (version == 2) {
            ES_ASSERT_STR_EQ(json_string_value(corr), "corr-1");
        } else {
            CU_ASSERT_TRUE(json_is_null(corr));
        }
        json_t *tp = json_object_get(v, "traceparent");
        if (version == 2)
            ES_ASSERT_STR_EQ(json_string_value(tp), TRACEPARENT);
        else
            CU_ASSERT_TRUE(json_is_null(tp));
        CU_ASSERT_TRUE(json_is_null(json_object_get(v, "tracestate")));
        json_t *who = json_object_get(v, "principal"); /* a nested record, or null */
        if (version == 2) {
            ES_ASSERT_STR_EQ(json_string_value(json_object_get(who, "subject")), "alice");
            ES_ASSERT_STR_EQ(json_string_value(json_object_get(who, "client_id")), "web-app");
        } else {
            CU_ASSERT_TRUE(json_is_null(who));
        }
        json_t *payload = json_object_get(v, "payload");
        if (s->sku) {
            ES_ASSERT_STR_EQ(json_string_value(json_object_get(payload, "sku")), s->sku);
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(payload, "quantity")), 2);
        } else {
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(payload, "total_cents")), 500);
        }
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(h, "event-type")), s->type);
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(h, "event-id")), s->event_id);
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(h, "command-id")), "cmd-0101");
        char ver[8];
        snprintf(ver, sizeof(ver), "%d", (int)version);
        ES_ASSERT_STR_EQ(json_string_value(json_object_get(h, "aggregate-version")), ver);
        CU_ASSERT_PTR_NULL(json_object_get(h, "__value_schema_id"));
        json_decref(j);
        got++;
    }
    int st = es_test_pclose(p, pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        fprintf(stderr, "\n    foreign_reader.py failed (needs python3-confluent-kafka and "
                        "python3-avro: scripts/install-deps)\n");
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_EQUAL(got, NEVENTS);
}

int main(void)
{
    es_test_unique("it0101", agg, sizeof(agg));
    es_topic_name(agg, ES_TOPIC_EVENTS, NULL, topic, sizeof(topic));
    static const es_test_case_t cases[] = {
        {"Python confluent-kafka + Apache Avro read our events", test_python_reads_our_events},
        {NULL, NULL},
    };
    return es_test_run("it0101-foreign-reader", cases);
}
