/*
 * test_inventory_http.c — the HTTP commands as the gateway reads them: each
 * verb's JSON body through the aggregate's command table into the command
 * schema's payload union (es_command_from_json, command.h), then decided;
 * the bodies the gateway refuses with 400 before writing a command; and the
 * 422 answer a rejection reason becomes.  This is where a command table that
 * disagrees with the schema (a field name, a type, a bound) shows.
 */
#include "invtest.h"
#include "escqrs/command.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* @p body for @p verb into the harness' next command; NULL when accepted, else the 400 code. */
static const char *from_json(inv_h_t *h, const char *verb, const char *body)
{
    const es_command_def_t *cmd = es_command_find(&inventory_aggregate, verb);
    const char *code = NULL;
    char msg[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
    avro_value_reset(&h->holder);
    if (es_command_from_json(cmd, body, strlen(body), &h->holder, &code, msg, sizeof(msg)))
        return code ? code : "(no code)";
    int branch;
    CU_ASSERT_EQUAL_FATAL(avro_value_get_discriminant(&h->holder, &branch), 0);
    CU_ASSERT_EQUAL_FATAL(avro_value_get_current_branch(&h->holder, &h->payload), 0);
    h->type = cmd->type;
    INV_ASSERT_STR_EQ(avro_schema_name(avro_value_get_schema(&h->payload)), cmd->type);
    return NULL;
}

static void test_bodies_accepted(void)
{
    inv_h_t h;
    inv_h_init(&h);
    CU_ASSERT_PTR_NULL(from_json(&h, "restock", "{\"quantity\": 10}"));
    CU_ASSERT_PTR_NULL(inv_h_run(&h));
    INV_ASSERT_STR_EQ(inv_h_event_type(&h, 0), "Restocked");
    CU_ASSERT_PTR_NULL(from_json(&h, "reserve", "{\"reservation_id\": \"o-1\", \"quantity\": 8}"));
    CU_ASSERT_PTR_NULL(inv_h_run(&h));
    CU_ASSERT_PTR_NULL(from_json(&h, "reserve", "{\"reservation_id\": \"o-2\", \"quantity\": 5}"));
    INV_ASSERT_REJECTED(inv_h_run(&h), "insufficient_stock");
    CU_ASSERT_PTR_NULL(from_json(&h, "release", "{\"reservation_id\": \"o-1\"}"));
    CU_ASSERT_PTR_NULL(inv_h_run(&h));
    CU_ASSERT_PTR_NULL(from_json(&h, "release", "{\"reservation_id\": \"o-1\"}"));
    INV_ASSERT_REJECTED(inv_h_run(&h), "already_released");
    CU_ASSERT_PTR_NULL(from_json(&h, "reserve", "{\"reservation_id\": \"o-2\", \"quantity\": 5}"));
    CU_ASSERT_PTR_NULL(inv_h_run(&h));
    CU_ASSERT_PTR_NULL(from_json(&h, "ship", "{\"reservation_id\": \"o-2\"}"));
    CU_ASSERT_PTR_NULL(inv_h_run(&h));
    CU_ASSERT_EQUAL(h.state->on_hand, 5);
    CU_ASSERT_PTR_NULL(from_json(&h, "restock", "{\"quantity\": 2147483642}")); /* INT32_MAX - 5 */
    CU_ASSERT_PTR_NULL(inv_h_run(&h));
    CU_ASSERT_EQUAL(h.state->on_hand, INT32_MAX);
    CU_ASSERT_PTR_NULL(from_json(&h, "restock", "{\"quantity\": 1}"));
    INV_ASSERT_REJECTED(inv_h_run(&h), "quantity_too_large");
    CU_ASSERT_PTR_NULL(es_command_find(&inventory_aggregate, "steal"));
    inv_h_free(&h);
}

static void test_bodies_refused(void)
{
    static const struct {
        const char *verb, *body, *code;
    } cases[] = {
        {"restock", "{\"quantity\": 0}", "invalid_command"},
        {"restock", "{\"quantity\": -1}", "invalid_command"},
        {"restock", "{\"quantity\": 2147483648}", "invalid_command"},
        {"restock", "{\"quantity\": 9223372036854775807}", "invalid_command"},
        {"restock", "{\"quantity\": \"3\"}", "invalid_command"},
        {"restock", "{\"quantity\": 1.5}", "invalid_command"},
        {"restock", "{\"qty\": 3}", "invalid_command"},
        {"restock", "{}", "invalid_command"},
        {"restock", "not json", "invalid_json"},
        {"reserve", "{\"reservation_id\": \"\", \"quantity\": 1}", "invalid_command"},
        {"reserve", "{\"reservation_id\": \"o\"}", "invalid_command"},
        {"reserve", "{\"reservation_id\": 7, \"quantity\": 1}", "invalid_command"},
        {"release", "{\"reservation_id\": \"o\", \"quantity\": 1}", "invalid_command"},
        {"ship", "{}", "invalid_command"},
    };
    inv_h_t h;
    char body[256];
    inv_h_init(&h);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *code = from_json(&h, cases[i].verb, cases[i].body);
        if (!code || strcmp(code, cases[i].code)) {
            printf("\n  %s %s: %s, expected %s\n", cases[i].verb, cases[i].body,
                   code ? code : "accepted", cases[i].code);
            CU_FAIL("the gateway's reading of a body");
        }
    }
    /* a reservation id of 63 bytes is the longest */
    snprintf(body, sizeof(body), "{\"reservation_id\": \"%0*d\", \"quantity\": 1}", INV_ID_MAX - 1,
             0);
    CU_ASSERT_PTR_NULL(from_json(&h, "reserve", body));
    snprintf(body, sizeof(body), "{\"reservation_id\": \"%0*d\", \"quantity\": 1}", INV_ID_MAX, 0);
    INV_ASSERT_STR_EQ(from_json(&h, "reserve", body), "invalid_command");
    inv_h_free(&h);
}

static void test_rejection_answer(void)
{
    static const char *const reasons[] = {"quantity_too_large",    "insufficient_stock",
                                          "reservation_exists",    "too_many_reservations",
                                          "reservation_not_found", "already_released",
                                          "already_shipped"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        es_outcome_t o = {.status = ES_OUTCOME_REJECTED};
        json_t *body = NULL;
        snprintf(o.reason, sizeof(o.reason), "%s", reasons[i]);
        CU_ASSERT_EQUAL(es_outcome_http(&o, &body), 422);
        INV_ASSERT_STR_EQ(json_string_value(json_object_get(body, "error")), "rejected");
        INV_ASSERT_STR_EQ(json_string_value(json_object_get(body, "reason")), reasons[i]);
        json_decref(body);
    }
}

int main(void)
{
    static const inv_case_t cases[] = {
        {"bodies the gateway accepts, decided", test_bodies_accepted},
        {"bodies the gateway refuses with 400", test_bodies_refused},
        {"a rejection is 422 with its reason", test_rejection_answer},
        {NULL, NULL},
    };
    return inv_test_run("inventory_http", cases);
}
