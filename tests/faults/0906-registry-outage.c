/*
 * 0906-registry-outage.c — events written with a schema version the
 * projector has not seen yet arrive while the registry is down: they wait,
 * they are not poison.
 *
 * A registry of its own (scripts/stack, profile "fault": 127.0.0.1:28081),
 * the test stack's broker.  The projector (cart_view) folds 50 events of
 * schema v1.  Then v2 of the cart events (tests/data/evolution/v2: a field
 * with a default added) is registered, the registry is killed, and 20 events
 * written with v2 arrive: the projector cannot fetch their writer schema.
 * It must not send them to the DLQ nor skip them: /readyz answers 503 naming
 * the registry, earlier carts are still served, the new carts are not there
 * yet.  The registry starts again: every v2 event is applied (each new cart
 * answers with its item), the DLQ is empty, /readyz is 200.  Prints how long
 * the projector took to go on after the registry was back.
 */
#include "escqrs/record.h"
#include "readtest.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REGISTRY "http://127.0.0.1:28081/apis/ccompat/v7"
#define NEW      20

static int stack(const char *verb)
{
    return es_test_stack("fault", verb, "registry");
}

static void stack_down_at_exit(void)
{
    stack("down");
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    static char buf[65536];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return n ? buf : NULL;
}

/* A v2 CartEvent: ItemAdded of 3 × "v2-sku" at 250 to @p cart, channel "mobile". */
static void fill_v2(avro_value_t *ev, const char *cart)
{
    avro_value_t f, br, payload;
    avro_value_reset(ev);
    avro_value_get_by_name(ev, "event_id", &f, NULL);
    avro_value_set_string(&f, "6f1c2a38-0d6f-4a8e-9d3c-1b2a3c4d5e6f");
    avro_value_get_by_name(ev, "cart_id", &f, NULL);
    avro_value_set_string(&f, cart);
    avro_value_get_by_name(ev, "version", &f, NULL);
    avro_value_set_long(&f, 1);
    avro_value_get_by_name(ev, "occurred_at", &f, NULL);
    avro_value_set_long(&f, 1700000000000LL);
    avro_value_get_by_name(ev, "command_id", &f, NULL);
    avro_value_set_string(&f, cart);
    avro_value_get_by_name(ev, "correlation_id", &f, NULL);
    avro_value_set_branch(&f, 0, &br);
    avro_value_get_by_name(ev, "channel", &f, NULL);
    avro_value_set_string(&f, "mobile");
    es_principal_set(ev, NULL, NULL);
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_set_branch(&f, 0, &payload); /* ItemAdded */
    avro_value_get_by_name(&payload, "sku", &f, NULL);
    avro_value_set_string(&f, "v2-sku");
    avro_value_get_by_name(&payload, "quantity", &f, NULL);
    avro_value_set_int(&f, 3);
    avro_value_get_by_name(&payload, "unit_price_cents", &f, NULL);
    avro_value_set_long(&f, 250);
}

static int ready_status(rt_proc_t *p, char *reason, size_t rsz)
{
    json_t *b = NULL;
    int st = rt_http(p, "GET", "/readyz", &b);
    snprintf(reason, rsz, "%s", es_test_or_empty(json_string_value(json_object_get(b, "reason"))));
    json_decref(b);
    return st;
}

static void test_registry_outage(void)
{
    char prefix[128], agg[200], root[300], pfx[200], path[600], reason[1024], errstr[1024];
    char subject[300], v1_cart[400];
    rt_topic_t cart;
    es_evgen_t *g = es_evgen_new("cart.events");
    es_sim_t sim;
    rt_proc_t proc = {0};
    const char *sets[] = {"projections=cart_view"};

    setenv("ESCQRS_TEST_REGISTRY", REGISTRY, 1); /* every helper below uses this registry */
    atexit(stack_down_at_exit);
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);
    es_conf_t *conf = rt_conf(3);

    es_test_unique("ft0906", prefix, sizeof(prefix));
    snprintf(agg, sizeof(agg), "%s.cart", prefix);
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(root, sizeof(root), "/tmp/%s", prefix);
    mkdir(root, 0755);
    rt_topic_init(&cart, conf, agg, "cart.events");
    es_sim_init(&sim, prefix, 906, 20);
    rt_produce_sim(&cart, &sim, g, 50);
    rt_proc_start(&proc, root, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proc, 60000));
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(&proc, "cart_view", 60000));
    size_t c = 0;
    while (c + 1 < sim.ncarts && sim.carts[c].version == 0)
        c++;
    snprintf(v1_cart, sizeof(v1_cart), "/v1/carts/%s", sim.carts[c].id);

    /* v2 registered while the registry is up; the projector has not seen its id */
    const char *src = getenv("ESCQRS_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/data/evolution/v2/cart.events.avsc", src ? src : ".");
    char *v2_text = read_text(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2_text);
    snprintf(subject, sizeof(subject), "%s-value", cart.name);
    es_serde_t *v2 = es_serde_new(cart.reg, subject, v2_text, true, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2);
    avro_value_t ev;
    es_serde_new_value(v2, &ev);

    CU_ASSERT_EQUAL_FATAL(stack("kill"), 0);
    es_serde_t *v1 = cart.serde;
    cart.serde = v2;
    for (int i = 0; i < NEW; i++) {
        char id[200];
        snprintf(id, sizeof(id), "%s-v2-%d", prefix, i);
        fill_v2(&ev, id);
        rt_produce(&cart, id, &ev);
    }
    rt_topic_flush(&cart);
    cart.serde = v1;

    int st = 0;
    for (int i = 0; i < 50 && (st = ready_status(&proc, reason, sizeof(reason))) != 503; i++)
        usleep(200 * 1000);
    sleep(2);
    st = ready_status(&proc, reason, sizeof(reason));
    printf("\n  registry down: /readyz %d: %s\n", st, reason);
    CU_ASSERT_EQUAL(st, 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "registry"));
    CU_ASSERT_EQUAL(rt_http(&proc, "GET", v1_cart, NULL), 200); /* what it has is served */
    rt_dlq_rec_t *dlq = NULL;
    size_t ndlq = rt_dlq_read(conf, agg, "projector", &dlq);
    free(dlq);
    CU_ASSERT_EQUAL(ndlq, 0); /* not poison */

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL_FATAL(stack("up"), 0);
    size_t applied = 0;
    for (int w = 0; w < 450 && applied < NEW; w++) { /* 90 s at most */
        if (w)
            usleep(200 * 1000);
        applied = 0;
        for (int i = 0; i < NEW; i++) {
            char p2[300];
            json_t *b = NULL;
            snprintf(p2, sizeof(p2), "/v1/carts/%s-v2-%d", prefix, i);
            if (rt_http(&proc, "GET", p2, &b) == 200) {
                json_t *item = json_array_get(json_object_get(b, "items"), 0);
                applied += json_integer_value(json_object_get(item, "quantity")) == 3;
            }
            json_decref(b);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    dlq = NULL;
    ndlq = rt_dlq_read(conf, agg, "projector", &dlq);
    free(dlq);
    for (int i = 0; i < 50 && ready_status(&proc, reason, sizeof(reason)) != 200; i++)
        usleep(200 * 1000);
    st = ready_status(&proc, reason, sizeof(reason));
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("  RESULT registry_outage_events=%d applied=%zu dlq=%zu ready=%d "
           "caught_up_s_after_registry_start=%.1f\n",
           NEW, applied, ndlq, st, secs);
    CU_ASSERT_EQUAL(applied, NEW);
    CU_ASSERT_EQUAL(ndlq, 0);
    CU_ASSERT_EQUAL(st, 200);
    CU_ASSERT_EQUAL(rt_proc_stop(&proc), 0);
    avro_value_decref(&ev);
    es_serde_destroy(v2);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"new writer schema while the registry is down: waits, not poison", test_registry_outage},
        {NULL, NULL},
    };
    return es_test_run("fault-registry-outage", cases);
}
