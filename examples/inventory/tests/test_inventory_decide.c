/*
 * test_inventory_decide.c — every rule of the inventory aggregate, decide
 * then evolve: the events of accepted commands, each rejection reason, the
 * int32 limits, the bounded state, and random command sequences checked
 * against an independent model (its own int64 arithmetic and an unbounded
 * history of closed reservations, not the code under test).
 */
#include "invtest.h"
#include "escqrs/util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_restock_reserve_release_ship(void)
{
    inv_h_t h;
    inv_h_init(&h);
    inventory_state_t *s = h.state;

    CU_ASSERT_PTR_NULL(inv_restock(&h, 10));
    CU_ASSERT_EQUAL(inv_h_nevents(&h), 1);
    INV_ASSERT_STR_EQ(inv_h_event_type(&h, 0), "Restocked");
    CU_ASSERT_EQUAL(inv_h_event_int(&h, 0, "quantity"), 10);

    CU_ASSERT_PTR_NULL(inv_reserve(&h, "order-1", 3));
    INV_ASSERT_STR_EQ(inv_h_event_type(&h, 0), "StockReserved");
    INV_ASSERT_STR_EQ(inv_h_event_string(&h, 0, "reservation_id"), "order-1");
    CU_ASSERT_EQUAL(inv_h_event_int(&h, 0, "quantity"), 3);
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "order-2", 5));
    CU_ASSERT_EQUAL(s->on_hand, 10);
    CU_ASSERT_EQUAL(s->reserved, 8);
    CU_ASSERT_EQUAL(s->nopen, 2);

    CU_ASSERT_PTR_NULL(inv_release(&h, "order-1")); /* the event carries the quantity held */
    INV_ASSERT_STR_EQ(inv_h_event_type(&h, 0), "ReservationReleased");
    INV_ASSERT_STR_EQ(inv_h_event_string(&h, 0, "reservation_id"), "order-1");
    CU_ASSERT_EQUAL(inv_h_event_int(&h, 0, "quantity"), 3);
    CU_ASSERT_EQUAL(s->on_hand, 10);
    CU_ASSERT_EQUAL(s->reserved, 5);

    CU_ASSERT_PTR_NULL(inv_ship(&h, "order-2"));
    INV_ASSERT_STR_EQ(inv_h_event_type(&h, 0), "ReservationShipped");
    CU_ASSERT_EQUAL(inv_h_event_int(&h, 0, "quantity"), 5);
    CU_ASSERT_EQUAL(s->on_hand, 5);
    CU_ASSERT_EQUAL(s->reserved, 0);
    CU_ASSERT_EQUAL(s->nopen, 0);
    CU_ASSERT_EQUAL(s->nclosed, 2);

    CU_ASSERT_PTR_NULL(inv_reserve(&h, "order-3", 5)); /* exactly what is available */
    CU_ASSERT_PTR_NULL(inv_ship(&h, "order-3"));
    CU_ASSERT_EQUAL(s->on_hand, 0); /* shipped to zero, never below */
    inv_h_free(&h);
}

static void test_insufficient_stock(void)
{
    inv_h_t h;
    inv_h_init(&h);
    INV_ASSERT_REJECTED(inv_reserve(&h, "a", 1), "insufficient_stock"); /* nothing on hand */
    CU_ASSERT_PTR_NULL(inv_restock(&h, 5));
    INV_ASSERT_REJECTED(inv_reserve(&h, "a", 6), "insufficient_stock");
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "a", 4));
    INV_ASSERT_REJECTED(inv_reserve(&h, "b", 2), "insufficient_stock"); /* 1 available */
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "b", 1));
    INV_ASSERT_REJECTED(inv_reserve(&h, "c", 1), "insufficient_stock");
    CU_ASSERT_PTR_NULL(inv_release(&h, "a")); /* released units are available again */
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "c", 4));
    CU_ASSERT_PTR_NULL(inv_ship(&h, "b")); /* shipped units are gone */
    INV_ASSERT_REJECTED(inv_reserve(&h, "d", 1), "insufficient_stock");
    inv_h_free(&h);
}

static void test_reservation_ids(void)
{
    inv_h_t h;
    inv_h_init(&h);
    CU_ASSERT_PTR_NULL(inv_restock(&h, 100));
    INV_ASSERT_REJECTED(inv_release(&h, "nope"), "reservation_not_found");
    INV_ASSERT_REJECTED(inv_ship(&h, "nope"), "reservation_not_found");
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "r1", 1));
    INV_ASSERT_REJECTED(inv_reserve(&h, "r1", 1), "reservation_exists"); /* open */
    CU_ASSERT_PTR_NULL(inv_release(&h, "r1"));
    INV_ASSERT_REJECTED(inv_release(&h, "r1"), "already_released"); /* released at most once */
    INV_ASSERT_REJECTED(inv_ship(&h, "r1"), "already_released");
    INV_ASSERT_REJECTED(inv_reserve(&h, "r1", 1), "reservation_exists"); /* closed, remembered */
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "r2", 2));
    CU_ASSERT_PTR_NULL(inv_ship(&h, "r2"));
    INV_ASSERT_REJECTED(inv_ship(&h, "r2"), "already_shipped");
    INV_ASSERT_REJECTED(inv_release(&h, "r2"), "already_shipped");
    INV_ASSERT_REJECTED(inv_reserve(&h, "r2", 1), "reservation_exists");
    CU_ASSERT_EQUAL(h.state->on_hand, 98);
    CU_ASSERT_EQUAL(h.state->reserved, 0);
    inv_h_free(&h);
}

static void test_invalid_values(void)
{
    inv_h_t h;
    char id[INV_ID_MAX + 1];
    inv_h_init(&h);
    INV_ASSERT_REJECTED(inv_restock(&h, 0), "invalid_command");
    INV_ASSERT_REJECTED(inv_restock(&h, -1), "invalid_command");
    INV_ASSERT_REJECTED(inv_restock(&h, INT32_MIN), "invalid_command");
    CU_ASSERT_PTR_NULL(inv_restock(&h, 10));
    INV_ASSERT_REJECTED(inv_reserve(&h, "a", 0), "invalid_command");
    INV_ASSERT_REJECTED(inv_reserve(&h, "a", INT32_MIN), "invalid_command");
    INV_ASSERT_REJECTED(inv_reserve(&h, "", 1), "invalid_command");
    INV_ASSERT_REJECTED(inv_release(&h, ""), "invalid_command");
    INV_ASSERT_REJECTED(inv_ship(&h, ""), "invalid_command");
    memset(id, 'x', INV_ID_MAX);
    id[INV_ID_MAX] = '\0'; /* 64 bytes: one too many */
    INV_ASSERT_REJECTED(inv_reserve(&h, id, 1), "invalid_command");
    INV_ASSERT_REJECTED(inv_release(&h, id), "invalid_command");
    id[INV_ID_MAX - 1] = '\0'; /* 63 bytes: the longest id */
    CU_ASSERT_PTR_NULL(inv_reserve(&h, id, 1));
    CU_ASSERT_PTR_NULL(inv_ship(&h, id));

    /* a command type the aggregate does not know */
    es_emitter_reset(h.em);
    avro_value_t *c = inv_h_command(&h, "Restock");
    inv_set_int(c, "quantity", 1);
    INV_ASSERT_STR_EQ(inventory_aggregate.decide(h.state, "Explode", c, h.em), "unknown_command");
    CU_ASSERT_EQUAL(es_emitter_count(h.em), 0);
    inv_h_free(&h);
}

static void test_int32_limits(void)
{
    inv_h_t h;
    inv_h_init(&h);
    inventory_state_t *s = h.state;
    CU_ASSERT_PTR_NULL(inv_restock(&h, INT32_MAX - 5));
    INV_ASSERT_REJECTED(inv_restock(&h, 6), "quantity_too_large");
    INV_ASSERT_REJECTED(inv_restock(&h, INT32_MAX), "quantity_too_large");
    CU_ASSERT_PTR_NULL(inv_restock(&h, 5)); /* exactly INT32_MAX fits */
    CU_ASSERT_EQUAL(s->on_hand, INT32_MAX);
    INV_ASSERT_REJECTED(inv_restock(&h, 1), "quantity_too_large");
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "all-but-one", INT32_MAX - 1));
    INV_ASSERT_REJECTED(inv_reserve(&h, "two", 2), "insufficient_stock");
    INV_ASSERT_REJECTED(inv_reserve(&h, "max", INT32_MAX), "insufficient_stock");
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "last", 1));
    CU_ASSERT_EQUAL(s->reserved, INT32_MAX);
    INV_ASSERT_REJECTED(inv_restock(&h, 1), "quantity_too_large"); /* reserved units count */
    CU_ASSERT_PTR_NULL(inv_ship(&h, "all-but-one"));
    CU_ASSERT_EQUAL(s->on_hand, 1);
    CU_ASSERT_EQUAL(s->reserved, 1);
    CU_ASSERT_PTR_NULL(inv_restock(&h, INT32_MAX - 1));
    CU_ASSERT_PTR_NULL(inv_ship(&h, "last"));
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "whole", INT32_MAX - 1));
    CU_ASSERT_PTR_NULL(inv_ship(&h, "whole"));
    CU_ASSERT_EQUAL(s->on_hand, 0);
    CU_ASSERT_EQUAL(s->reserved, 0);
    inv_h_free(&h);
}

static void test_bounded_open_reservations(void)
{
    inv_h_t h;
    char id[32];
    inv_h_init(&h);
    CU_ASSERT_PTR_NULL(inv_restock(&h, 1000));
    for (int i = 0; i < INV_MAX_OPEN; i++) {
        snprintf(id, sizeof(id), "r-%d", i);
        CU_ASSERT_PTR_NULL(inv_reserve(&h, id, 1));
    }
    INV_ASSERT_REJECTED(inv_reserve(&h, "one-too-many", 1), "too_many_reservations");
    INV_ASSERT_REJECTED(inv_reserve(&h, "r-7", 1), "reservation_exists"); /* checked first */
    CU_ASSERT_PTR_NULL(inv_release(&h, "r-0"));
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "one-too-many", 1)); /* room again */
    CU_ASSERT_EQUAL(h.state->nopen, INV_MAX_OPEN);
    CU_ASSERT_EQUAL(h.state->reserved, INV_MAX_OPEN);
    inv_h_free(&h);
}

static void test_closed_memory_window(void)
{
    inv_h_t h;
    char id[32];
    inv_h_init(&h);
    CU_ASSERT_PTR_NULL(inv_restock(&h, 1000));
    for (int i = 0; i <= INV_MAX_CLOSED; i++) { /* one more close than remembered */
        snprintf(id, sizeof(id), "c-%d", i);
        CU_ASSERT_PTR_NULL(inv_reserve(&h, id, 1));
        CU_ASSERT_PTR_NULL(i % 2 ? inv_ship(&h, id) : inv_release(&h, id));
    }
    CU_ASSERT_EQUAL(h.state->nclosed, INV_MAX_CLOSED);
    /* c-0 is forgotten: not found, and its id may be used again; its units were freed once */
    INV_ASSERT_REJECTED(inv_release(&h, "c-0"), "reservation_not_found");
    INV_ASSERT_REJECTED(inv_reserve(&h, "c-1", 1), "reservation_exists");
    INV_ASSERT_REJECTED(inv_release(&h, "c-1"), "already_shipped");
    INV_ASSERT_REJECTED(inv_ship(&h, "c-2"), "already_released");
    CU_ASSERT_EQUAL(h.state->reserved, 0);
    CU_ASSERT_EQUAL(h.state->on_hand, 1000 - INV_MAX_CLOSED / 2);
    CU_ASSERT_PTR_NULL(inv_reserve(&h, "c-0", 1));
    CU_ASSERT_EQUAL(h.state->reserved, 1);
    inv_h_free(&h);
}

/* ------------------------------------------------------ the random model */

/*
 * The model keeps the rules as the top comment of inventory.c states them,
 * with its own representation: int64 sums compared with INT32_MAX, open
 * reservations in an array, and every closed reservation ever (unbounded),
 * of which the newest INV_MAX_CLOSED count as remembered.
 */
typedef struct {
    char id[24];
    int64_t qty;
} m_open_t;

typedef struct {
    char id[24];
    bool shipped;
} m_closed_t;

typedef struct {
    int64_t on_hand, reserved;
    m_open_t open[INV_MAX_OPEN + 1];
    size_t nopen;
    m_closed_t *history;
    size_t nhistory, caphistory;
} model_t;

static int m_find_open(const model_t *m, const char *id)
{
    for (size_t i = 0; i < m->nopen; i++)
        if (!strcmp(m->open[i].id, id))
            return (int)i;
    return -1;
}

/* The remembered close of @p id (newest first), or NULL. */
static const m_closed_t *m_find_closed(const model_t *m, const char *id)
{
    size_t oldest = m->nhistory > INV_MAX_CLOSED ? m->nhistory - INV_MAX_CLOSED : 0;
    for (size_t i = m->nhistory; i > oldest; i--)
        if (!strcmp(m->history[i - 1].id, id))
            return &m->history[i - 1];
    return NULL;
}

/* Apply a command to the model: the expected reason, or NULL (*qty: the event's quantity). */
static const char *m_apply(model_t *m, int op, const char *id, int64_t q, int64_t *qty)
{
    *qty = q;
    if (op == 0) { /* restock */
        if (q <= 0)
            return "invalid_command";
        if (m->on_hand + q > INT32_MAX)
            return "quantity_too_large";
        m->on_hand += q;
        return NULL;
    }
    if (op == 1) { /* reserve */
        if (q <= 0 || !*id)
            return "invalid_command";
        if (m_find_open(m, id) >= 0 || m_find_closed(m, id))
            return "reservation_exists";
        if (m->nopen == INV_MAX_OPEN)
            return "too_many_reservations";
        if (m->reserved + q > m->on_hand)
            return "insufficient_stock";
        snprintf(m->open[m->nopen].id, sizeof(m->open[0].id), "%s", id);
        m->open[m->nopen++].qty = q;
        m->reserved += q;
        return NULL;
    }
    /* release (2) or ship (3) */
    if (!*id)
        return "invalid_command";
    int i = m_find_open(m, id);
    if (i < 0) {
        const m_closed_t *c = m_find_closed(m, id);
        return !c ? "reservation_not_found" : c->shipped ? "already_shipped" : "already_released";
    }
    *qty = m->open[i].qty;
    m->reserved -= *qty;
    if (op == 3)
        m->on_hand -= *qty;
    if (m->nhistory == m->caphistory) {
        m->caphistory = m->caphistory ? 2 * m->caphistory : 1024;
        m->history = realloc(m->history, m->caphistory * sizeof(*m->history));
        CU_ASSERT_PTR_NOT_NULL_FATAL(m->history);
    }
    snprintf(m->history[m->nhistory].id, sizeof(m->history[0].id), "%s", id);
    m->history[m->nhistory++].shipped = op == 3;
    memmove(&m->open[i], &m->open[i + 1], (m->nopen - (size_t)i - 1) * sizeof(m->open[0]));
    m->nopen--;
    return NULL;
}

/* A quantity for a command: mostly small, often an int32 edge, sometimes invalid. */
static int32_t pick_qty(uint64_t *rng, bool restock)
{
    static const int32_t edges[] = {1, 2,  INT32_MAX, INT32_MAX - 1, INT32_MAX / 2,
                                    0, -1, INT32_MIN};
    uint64_t r = inv_rand(rng) % 100;
    if (r < (restock ? 20u : 8u))
        return edges[inv_rand(rng) % ES_ARRAY_SIZE(edges)];
    return 1 + (int32_t)(inv_rand(rng) % (restock ? 1000 : 40));
}

static void test_random_against_model(void)
{
    static const char *const ops[] = {"restock", "reserve", "release", "ship"};
    static const char *const reasons[] = {"invalid_command",    "quantity_too_large",
                                          "reservation_exists", "too_many_reservations",
                                          "insufficient_stock", "reservation_not_found",
                                          "already_released",   "already_shipped"};
    unsigned long seen[ES_ARRAY_SIZE(reasons)] = {0};
    uint64_t rng = inv_seed("random decide");
    unsigned long long fresh = 0;
    char recent[64][24] = {{0}};
    unsigned long counts[4][2] = {{0}};

    for (int item = 0; item < 4; item++) {
        inv_h_t h;
        model_t m = {0};
        inv_h_init(&h);
        inventory_state_t *s = h.state;
        for (int step = 0; step < 6000; step++) {
            /* odd items hoard: few closes and fresh ids, so the open reservations fill up */
            bool hoard = item % 2;
            uint64_t r = inv_rand(&rng) % 100;
            int op = r < 15 ? 0 : r < (hoard ? 95u : 60u) ? 1 : r % 2 ? 2 : 3;
            char id[24];
            uint64_t pick = inv_rand(&rng) % 100;
            if (op >= 2 && m.nopen && pick < 50)
                snprintf(id, sizeof(id), "%s", m.open[inv_rand(&rng) % m.nopen].id);
            else if (pick >= 90 && m.nhistory > INV_MAX_CLOSED + 2) /* at the memory's edge */
                snprintf(id, sizeof(id), "%s",
                         m.history[m.nhistory - INV_MAX_CLOSED - 2 + inv_rand(&rng) % 5].id);
            else if (pick < (hoard ? 10u : 60u))
                snprintf(id, sizeof(id), "%s", recent[inv_rand(&rng) % 64]);
            else
                snprintf(id, sizeof(id), "n%llu", ++fresh);
            if (op == 1)
                snprintf(recent[inv_rand(&rng) % 64], sizeof(recent[0]), "%s", id);
            int32_t q = op < 2 ? pick_qty(&rng, op == 0) : 0;

            int64_t want_qty;
            const char *want = m_apply(&m, op, id, q, &want_qty);
            const char *got = op == 0   ? inv_restock(&h, q)
                              : op == 1 ? inv_reserve(&h, id, q)
                              : op == 2 ? inv_release(&h, id)
                                        : inv_ship(&h, id);
            counts[op][got == NULL]++;
            for (size_t k = 0; got && k < ES_ARRAY_SIZE(reasons); k++)
                seen[k] += !strcmp(got, reasons[k]);
            if (!(got == want || (got && want && !strcmp(got, want)))) {
                printf("\n  step %d: %s %s %d: got %s, model %s\n", step, ops[op], id, q,
                       got ? got : "(accepted)", want ? want : "(accepted)");
                CU_FAIL("decide disagrees with the model");
                break;
            }
            if (!got) {
                CU_ASSERT_EQUAL(inv_h_nevents(&h), 1);
                CU_ASSERT_EQUAL(inv_h_event_int(&h, 0, "quantity"), want_qty);
                if (op)
                    INV_ASSERT_STR_EQ(inv_h_event_string(&h, 0, "reservation_id"), id);
            }
            /* the invariant, and the state equals the model's */
            CU_ASSERT_TRUE(0 <= s->reserved && s->reserved <= s->on_hand);
            if (s->on_hand != m.on_hand || s->reserved != m.reserved ||
                (size_t)s->nopen != m.nopen) {
                printf("\n  step %d: state %d/%d/%d, model %lld/%lld/%zu\n", step, s->on_hand,
                       s->reserved, s->nopen, (long long)m.on_hand, (long long)m.reserved, m.nopen);
                CU_FAIL("state differs from the model");
                break;
            }
        }
        free(m.history);
        inv_h_free(&h);
    }
    printf("  accepted/refused:");
    for (int op = 0; op < 4; op++)
        printf(" %s %lu/%lu", ops[op], counts[op][1], counts[op][0]);
    printf("\n  refusals:");
    for (size_t k = 0; k < ES_ARRAY_SIZE(reasons); k++)
        printf(" %s %lu", reasons[k], seen[k]);
    printf("\n");
    for (int op = 0; op < 4; op++) /* the sequences reach both answers of every command */
        CU_ASSERT_TRUE(counts[op][0] > 0 && counts[op][1] > 0);
    for (size_t k = 0; k < ES_ARRAY_SIZE(reasons); k++) /* and every rule */
        CU_ASSERT_TRUE(seen[k] > 0);
}

int main(void)
{
    static const inv_case_t cases[] = {
        {"restock, reserve, release, ship", test_restock_reserve_release_ship},
        {"insufficient stock", test_insufficient_stock},
        {"reservation ids: exists, not found, released once", test_reservation_ids},
        {"invalid values and unknown commands", test_invalid_values},
        {"int32 limits of the stock", test_int32_limits},
        {"at most 256 open reservations", test_bounded_open_reservations},
        {"the 256 newest closed reservations are remembered", test_closed_memory_window},
        {"random commands against a model", test_random_against_model},
        {NULL, NULL},
    };
    return inv_test_run("inventory_decide", cases);
}
