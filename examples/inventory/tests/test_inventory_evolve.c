/*
 * test_inventory_evolve.c — evolve applies each event, and refuses (leaving
 * the state as it was) every event the write side never emits: a stock past
 * INT32_MAX, a reservation beyond the available stock, twice the same id,
 * releasing what is not open; and the state codec refuses every stored state
 * that breaks the invariant, int64 values included.
 */
#include "invtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char errstr[512];

/* Evolve @p s with one event; a refused event must leave @p s untouched. */
static es_err_t evolve(inv_evgen_t *g, inventory_state_t *s, const char *type, const char *rid,
                       int32_t qty)
{
    inventory_state_t *before = malloc(sizeof(*before));
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    memcpy(before, s, sizeof(*s));
    inv_event(g, "item", 1, type, rid, qty);
    es_err_t err =
        inventory_aggregate.evolve(s, type, inv_event_payload(g), errstr, sizeof(errstr));
    if (err)
        CU_ASSERT_EQUAL(memcmp(before, s, sizeof(*s)), 0);
    free(before);
    return err;
}

static void test_events_apply(void)
{
    inv_evgen_t *g = inv_evgen_new();
    inventory_state_t *s = calloc(1, sizeof(*s));
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, 7), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "a", 3), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "b", 4), ES_ERR_OK);
    CU_ASSERT_EQUAL(s->on_hand, 7);
    CU_ASSERT_EQUAL(s->reserved, 7);
    CU_ASSERT_EQUAL(s->nopen, 2);
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationShipped", "a", 3), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationReleased", "b", 4), ES_ERR_OK);
    CU_ASSERT_EQUAL(s->on_hand, 4);
    CU_ASSERT_EQUAL(s->reserved, 0);
    CU_ASSERT_EQUAL(s->nopen, 0);
    CU_ASSERT_EQUAL(s->nclosed, 2);
    INV_ASSERT_STR_EQ(s->closed[0].id, "a");
    CU_ASSERT_EQUAL(s->closed[0].how, INV_SHIPPED);
    CU_ASSERT_EQUAL(s->closed[1].how, INV_RELEASED);
    free(s);
    inv_evgen_destroy(g);
}

static void test_refused_events(void)
{
    inv_evgen_t *g = inv_evgen_new();
    inventory_state_t *s = calloc(1, sizeof(*s));
    char longid[INV_ID_MAX + 1];
    memset(longid, 'x', INV_ID_MAX);
    longid[INV_ID_MAX] = '\0';

    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, -5), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, INT32_MIN), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "a", 1), ES_ERR_STATE); /* nothing on hand */
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, INT32_MAX - 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, 2), ES_ERR_STATE); /* past INT32_MAX */
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, INT32_MAX), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(s->on_hand, INT32_MAX);

    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "a", 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", longid, 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "a", INT32_MAX - 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "a", 1), ES_ERR_STATE); /* id open */
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "b", 2), ES_ERR_STATE); /* 1 available */
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "b", INT32_MAX), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "b", 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(s->reserved, INT32_MAX);

    CU_ASSERT_EQUAL(evolve(g, s, "ReservationReleased", "zzz", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationReleased", "b", 2), ES_ERR_STATE); /* not its qty */
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationShipped", "b", 0), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationShipped", "b", 1), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationShipped", "b", 1), ES_ERR_STATE); /* twice */
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationReleased", "b", 1), ES_ERR_STATE);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "b", 1), ES_ERR_STATE); /* remembered id */
    CU_ASSERT_EQUAL(s->on_hand, INT32_MAX - 1);
    CU_ASSERT_EQUAL(s->reserved, INT32_MAX - 1);

    /* an unknown event type; a payload without the fields its type needs */
    inv_event(g, "item", 1, "Restocked", NULL, 1);
    CU_ASSERT_EQUAL(inventory_aggregate.evolve(s, "StockExploded", inv_event_payload(g), errstr,
                                               sizeof(errstr)),
                    ES_ERR_DECODE);
    CU_ASSERT_EQUAL(inventory_aggregate.evolve(s, "StockReserved", inv_event_payload(g), errstr,
                                               sizeof(errstr)),
                    ES_ERR_DECODE);
    free(s);
    inv_evgen_destroy(g);
}

static void test_open_reservations_bounded(void)
{
    inv_evgen_t *g = inv_evgen_new();
    inventory_state_t *s = calloc(1, sizeof(*s));
    char id[32];
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, 1000), ES_ERR_OK);
    for (int i = 0; i < INV_MAX_OPEN; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", id, 1), ES_ERR_OK);
    }
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "extra", 1), ES_ERR_STATE);
    free(s);
    inv_evgen_destroy(g);
}

/* ------------------------------------------------------------ state codec */

static es_err_t decode(const char *json)
{
    inventory_state_t *s = malloc(sizeof(*s));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    es_err_t err = inventory_aggregate.state_decode(s, json, strlen(json));
    if (err) { /* a refused state decodes to nothing, never to half of it */
        CU_ASSERT_EQUAL(s->on_hand, 0);
        CU_ASSERT_EQUAL(s->nopen, 0);
    }
    free(s);
    return err;
}

static void test_state_codec(void)
{
    inv_evgen_t *g = inv_evgen_new();
    inventory_state_t *s = calloc(1, sizeof(*s)), *back = calloc(1, sizeof(*s));
    es_buf_t b = {0}, b2 = {0};
    CU_ASSERT_EQUAL(evolve(g, s, "Restocked", NULL, 10), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "r0", 2), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "StockReserved", "r1", 3), ES_ERR_OK);
    CU_ASSERT_EQUAL(evolve(g, s, "ReservationShipped", "r0", 2), ES_ERR_OK);
    inventory_aggregate.state_encode(s, &b);
    es_buf_append(&b, "", 1);
    INV_ASSERT_STR_EQ(b.data, "{\"on_hand\":8,\"reserved\":3,\"open\":[[\"r1\",3]],"
                              "\"closed\":[[\"r0\",\"shipped\"]]}");
    CU_ASSERT_EQUAL(inventory_aggregate.state_decode(back, b.data, b.len - 1), ES_ERR_OK);
    inventory_aggregate.state_encode(back, &b2);
    CU_ASSERT_TRUE(b2.len == b.len - 1 && !memcmp(b.data, b2.data, b2.len));

    CU_ASSERT_EQUAL(decode("{\"on_hand\":0,\"reserved\":0,\"open\":[],\"closed\":[]}"), ES_ERR_OK);
    CU_ASSERT_EQUAL(decode("{\"on_hand\":2147483647,\"reserved\":2147483647,"
                           "\"open\":[[\"a\",2147483646],[\"b\",1]],\"closed\":[]}"),
                    ES_ERR_OK);
    static const char *const bad[] = {
        "",
        "not json",
        "{\"on_hand\":1,\"reserved\":0,\"open\":[]}",
        "{\"on_hand\":-1,\"reserved\":0,\"open\":[],\"closed\":[]}",
        "{\"on_hand\":2147483648,\"reserved\":0,\"open\":[],\"closed\":[]}",
        "{\"on_hand\":9223372036854775807,\"reserved\":0,\"open\":[],\"closed\":[]}",
        "{\"on_hand\":-9223372036854775808,\"reserved\":0,\"open\":[],\"closed\":[]}",
        "{\"on_hand\":1,\"reserved\":2,\"open\":[[\"a\",2]],\"closed\":[]}",
        "{\"on_hand\":5,\"reserved\":2,\"open\":[[\"a\",3]],\"closed\":[]}",
        "{\"on_hand\":5,\"reserved\":0,\"open\":[[\"a\",0]],\"closed\":[]}",
        "{\"on_hand\":5,\"reserved\":5,\"open\":[[\"a\",-1],[\"b\",6]],\"closed\":[]}",
        "{\"on_hand\":2147483647,\"reserved\":2147483647,"
        "\"open\":[[\"a\",9223372036854775807]],\"closed\":[]}",
        "{\"on_hand\":2147483647,\"reserved\":1,"
        "\"open\":[[\"a\",2147483647],[\"b\",2147483647],[\"c\",3]],\"closed\":[]}",
        "{\"on_hand\":5,\"reserved\":2,\"open\":[[\"a\",1],[\"a\",1]],\"closed\":[]}",
        "{\"on_hand\":5,\"reserved\":1,\"open\":[[\"\",1]],\"closed\":[]}",
        "{\"on_hand\":5,\"reserved\":1,\"open\":[[\"a\",1]],\"closed\":[[\"a\",\"shipped\"]]}",
        "{\"on_hand\":5,\"reserved\":0,\"open\":[],\"closed\":[[\"a\",\"lost\"]]}",
        "{\"on_hand\":5,\"reserved\":0,\"open\":[],\"closed\":[[\"a\",\"shipped\"],[\"a\","
        "\"released\"]]}",
        "{\"on_hand\":5,\"reserved\":0,\"open\":{},\"closed\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (decode(bad[i]) != ES_ERR_DECODE) {
            printf("\n  accepted: %s\n", bad[i]);
            CU_FAIL("a corrupt state decoded");
        }
    }

    /* one id too long; one reservation too many */
    es_buf_clear(&b);
    es_buf_appendf(&b, "{\"on_hand\":1,\"reserved\":1,\"open\":[[\"%0*d\",1]],\"closed\":[]}",
                   INV_ID_MAX, 0);
    CU_ASSERT_EQUAL(decode(b.data), ES_ERR_DECODE);
    es_buf_clear(&b);
    es_buf_appendf(&b, "{\"on_hand\":%d,\"reserved\":%d,\"open\":[", INV_MAX_OPEN + 1,
                   INV_MAX_OPEN + 1);
    for (int i = 0; i <= INV_MAX_OPEN; i++)
        es_buf_appendf(&b, "%s[\"r%d\",1]", i ? "," : "", i);
    es_buf_appendf(&b, "],\"closed\":[]}");
    CU_ASSERT_EQUAL(decode(b.data), ES_ERR_DECODE);

    es_buf_free(&b);
    es_buf_free(&b2);
    free(s);
    free(back);
    inv_evgen_destroy(g);
}

int main(void)
{
    static const inv_case_t cases[] = {
        {"events apply", test_events_apply},
        {"events the write side never emits are refused", test_refused_events},
        {"at most 256 open reservations", test_open_reservations_bounded},
        {"state codec: exact bytes, corrupt states refused", test_state_codec},
        {NULL, NULL},
    };
    return inv_test_run("inventory_evolve", cases);
}
