/*
 * 0912-command-registry-outage.c — commands written with a schema version
 * the command service has not seen yet arrive while the registry is down:
 * they wait, none is lost or decided twice, and the service neither dies
 * nor re-creates its Kafka clients.
 *
 * A registry of its own (scripts/stack, profile "fault": 127.0.0.1:28081),
 * the test stack's broker.  A newer gateway's writer schema is played by
 * this test: cart.commands with one more optional field, registered while
 * the registry is up.  The registry is killed and 20 AddItem commands
 * encoded with it are written to <agg>.commands (as a gateway would,
 * nobody retrying them).  The command service cannot fetch their writer
 * schema: /readyz must turn 503 naming the registry, the process stay up,
 * and escqrs_command_service_recoveries_total stay where it was.  Before,
 * the decide step took the registry's silence for a store failure: the
 * clients were re-created (fencing the producer, leaving and rejoining the
 * group, catching the store up) with a back-off that doubled to 30 s,
 * which the commands then waited out after the registry was back.  Now the
 * transaction is aborted and the batch decided again after the abort
 * back-off (at most 5 s).  The registry starts again: each command must
 * have exactly one outcome, ACCEPTED, and its cart exactly one ItemAdded
 * event; /readyz 200.  Prints how long the decisions took after the
 * registry was back.
 */
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "testutil.h"
#include "writetest.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REGISTRY "http://127.0.0.1:28081/apis/ccompat/v7"
#define NEW      20
#define WINDOW_S 8 /* the outage the service must sit out */

static wt_stack_t st;

static int stack(const char *verb)
{
    return es_test_stack("fault", verb, "registry");
}

static void stack_down_at_exit(void)
{
    stack("down");
}

/* schemas/cart.commands.avsc with an optional `channel` field more: a newer writer. */
static char *commands_v2(void)
{
    char path[600];
    const char *src = getenv("ESCQRS_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/schemas/cart.commands.avsc", src ? src : ".");
    json_t *s = json_load_file(path, 0, NULL);
    if (!s)
        return NULL;
    json_array_append_new(
        json_object_get(s, "fields"),
        json_pack("{s:s, s:[s, s], s:n}", "name", "channel", "type", "null", "string", "default"));
    char *text = json_dumps(s, JSON_COMPACT);
    json_decref(s);
    return text;
}

/* AddItem of 2 × "v2-sku" at 300 to @p cart, command id @p cmd_id. */
static void fill_command(avro_value_t *v, const char *cmd_id, const char *cart)
{
    avro_value_t f, br, payload;
    avro_value_reset(v);
    avro_value_get_by_name(v, "command_id", &f, NULL);
    avro_value_set_string(&f, cmd_id);
    avro_value_get_by_name(v, "cart_id", &f, NULL);
    avro_value_set_string(&f, cart);
    avro_value_get_by_name(v, "issued_at", &f, NULL);
    avro_value_set_long(&f, (int64_t)time(NULL) * 1000);
    const char *nulls[] = {"expected_version", "correlation_id", "principal",
                           "traceparent",      "tracestate",     "channel"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
        avro_value_get_by_name(v, nulls[i], &f, NULL);
        avro_value_set_branch(&f, 0, &br);
        avro_value_set_null(&br);
    }
    avro_value_get_by_name(v, "payload", &f, NULL);
    avro_value_set_branch(&f, 0, &payload); /* AddItem */
    avro_value_get_by_name(&payload, "sku", &f, NULL);
    avro_value_set_string(&f, "v2-sku");
    avro_value_get_by_name(&payload, "quantity", &f, NULL);
    avro_value_set_int(&f, 2);
    avro_value_get_by_name(&payload, "unit_price_cents", &f, NULL);
    avro_value_set_long(&f, 300);
}

/* Outcomes of this test's commands: how many, and how many of them ACCEPTED once each. */
static size_t decided(size_t *accepted_once)
{
    size_t nout = 0, n = 0;
    int seen[NEW] = {0};
    wt_outcome_t *outs = wt_read_outcomes(&st, &nout);
    for (size_t i = 0; i < nout; i++) {
        int k;
        if (sscanf(outs[i].command_id, "v2-command-%d", &k) != 1 || k < 0 || k >= NEW)
            continue;
        n++;
        seen[k] += strcmp(outs[i].status, "ACCEPTED") == 0 ? 1 : 100;
    }
    free(outs);
    *accepted_once = 0;
    for (int k = 0; k < NEW; k++)
        *accepted_once += seen[k] == 1;
    return n;
}

static void test_registry_outage(void)
{
    char errstr[1024], subject[320], topic[300];
    setenv("ESCQRS_TEST_REGISTRY", REGISTRY, 1); /* the service and every reader below */
    atexit(stack_down_at_exit);
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);
    wt_stack_init(&st, "cart");
    wt_start_service(&st, NULL, 0);
    wt_wait_ready(&st.cs, 90);

    /* the newer writer, registered while the registry is up */
    char *v2_text = commands_v2();
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2_text);
    es_registry_t *reg = es_registry_new(REGISTRY, 5000, 1, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    snprintf(topic, sizeof(topic), "%scart.commands", st.prefix);
    snprintf(subject, sizeof(subject), "%s-value", topic);
    es_serde_t *v2 = es_serde_new(reg, subject, v2_text, true, 0, errstr, sizeof(errstr));
    if (!v2)
        printf("\n  v2: %s", errstr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2);
    avro_value_t cmd;
    es_serde_new_value(v2, &cmd);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", es_test_bootstrap(), NULL, 0);
    rd_kafka_conf_set(pc, "enable.idempotence", "true", NULL, 0);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(prod);
    double recoveries0 = wt_metric(&st.cs, "escqrs_command_service_recoveries_total");

    CU_ASSERT_EQUAL_FATAL(stack("kill"), 0);
    for (int i = 0; i < NEW; i++) {
        char id[64], cart[64];
        es_buf_t buf = {0};
        snprintf(id, sizeof(id), "v2-command-%d", i);
        snprintf(cart, sizeof(cart), "v2-cart-%d", i);
        fill_command(&cmd, id, cart);
        CU_ASSERT_EQUAL_FATAL(es_serde_encode(v2, &cmd, &buf, errstr, sizeof(errstr)), ES_ERR_OK);
        CU_ASSERT_EQUAL(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic),
                                          RD_KAFKA_V_KEY(cart, strlen(cart)),
                                          RD_KAFKA_V_VALUE(buf.data, buf.len),
                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                        RD_KAFKA_RESP_ERR_NO_ERROR);
        es_buf_free(&buf);
    }
    CU_ASSERT_EQUAL(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

    bool said = wt_wait_not_ready_because(&st.cs, "registry", 30);
    sleep(WINDOW_S);
    double recoveries = wt_metric(&st.cs, "escqrs_command_service_recoveries_total") - recoveries0;
    char *ready = NULL;
    int rs = wt_get(&st.cs, "/readyz", &ready);
    printf("\n  registry down: /readyz %d: %s\n  re-created clients: %.0f", rs, ready ? ready : "",
           recoveries);
    free(ready);
    CU_ASSERT_TRUE(said);
    CU_ASSERT_EQUAL(rs, 503);
    CU_ASSERT_TRUE(wt_proc_alive(&st.cs));
    CU_ASSERT_EQUAL(recoveries, 0);

    double t0 = es_mono_s();
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);
    double up = es_mono_s() - t0;
    size_t once = 0, n = 0;
    for (int w = 0; w < 90 && (n = decided(&once)) < NEW; w++)
        sleep(1);
    double took = es_mono_s() - t0 - up;
    n = decided(&once);
    size_t nev = 0, items = 0;
    wt_event_t *evs = wt_read_events(&st, &nev);
    for (size_t i = 0; i < nev; i++)
        items += strncmp(evs[i].agg_id, "v2-cart-", 8) == 0 && !strcmp(evs[i].type, "ItemAdded") &&
                 evs[i].amount == 2;
    free(evs);
    recoveries = wt_metric(&st.cs, "escqrs_command_service_recoveries_total") - recoveries0;
    wt_wait_ready(&st.cs, 30);
    printf("\n  RESULT commands=%d outcomes=%zu accepted_once=%zu item_events=%zu recoveries=%.0f "
           "registry_start_s=%.1f decided_s_after_registry_start=%.1f",
           NEW, n, once, items, recoveries, up, took);
    CU_ASSERT_EQUAL(n, NEW);
    CU_ASSERT_EQUAL(once, NEW);
    CU_ASSERT_EQUAL(items, NEW);
    CU_ASSERT_EQUAL(recoveries, 0);

    rd_kafka_destroy(prod);
    avro_value_decref(&cmd);
    es_serde_destroy(v2);
    es_registry_destroy(reg);
    free(v2_text);
    wt_stop(&st.cs);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"commands of a new writer schema while the registry is down: they wait, nothing is lost",
         test_registry_outage},
        {NULL, NULL},
    };
    return es_test_run("fault-command-registry-outage", cases);
}
