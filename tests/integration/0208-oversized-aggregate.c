/*
 * 0208-oversized-aggregate.c — an aggregate whose <agg>.state record would
 * outgrow the largest record the command service's producer takes
 * (kafka.message.max.bytes) costs only the command that grows it that far:
 * that command is rejected as aggregate_too_large, the commands after it are
 * decided, and nothing accepted is lost.
 *
 * Before, librdkafka refused the state record at once on every retry of the
 * batch: the partition's commands waited for good (504s) and the service
 * aborted transactions until an operator raised the limit.
 *
 * The command service runs with kafka.message.max.bytes = 16384 (the least
 * it accepts; 1000 must stop it at start-up naming the key).  One client that
 * never retries fills a cart with items of 63-byte skus, one command each,
 * until one is refused; every other answer must be 200.  The refusal must
 * come at the item the limit decides — by the test's own model of the cart's
 * stored state (examples/cart/cart.c's JSON, its size computed here) and the
 * record's framing (36 bytes, the key, the AggregateState fields around the
 * state bytes, the commands-offset header): not before the state would exceed the limit with the
 * least framing, not after it exceeded it with the least.  Then: a command on another cart, two
 * items removed from the full cart, the refused item added again (it fits now), and the cart filled
 * again until a refusal, bounded the same way (the aggregate is watched now: checked command by
 * command, without a second abort; the check counts its last event's offset at its largest, so it
 * may refuse up to 9 bytes early).  The log's events of the full cart must be exactly the accepted
 * items (versions 1..n, quantities identifying them), its last state record at the last accepted
 * version, each command one outcome; at most one transaction aborted; /readyz 200.
 */
#include "testutil.h"
#include "writetest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LIMIT     16384
#define SKU_LEN   63         /* CART_SKU_MAX - 1 */
#define QTY_BASE  1000000000 /* quantity = QTY_BASE + item number: ten digits, names the item */
#define PRICE     10000000   /* 256 items at these stay under INT64_MAX cents */
#define MAX_ITEMS 256        /* CART_MAX_ITEMS: the limit must bite before */
#define CART      "big-cart"

static wt_stack_t st;

static void sku_of(int i, char *out)
{
    snprintf(out, SKU_LEN + 1, "sku-%04d-", i);
    memset(out + 9, 'x', SKU_LEN - 9);
    out[SKU_LEN] = '\0';
}

static int add_item(const char *cart, int item, json_t **ans)
{
    char path[128], body[256], sku[SKU_LEN + 1];
    sku_of(item, sku);
    snprintf(path, sizeof(path), "/v1/carts/%s/add-item", cart);
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"quantity\":%d,\"unit_price_cents\":%d}", sku,
             QTY_BASE + item, PRICE);
    return wt_post(&st.gw, path, body, strlen(body), NULL, NULL, ans);
}

/* Bytes of cart.c's stored state holding the items @p items[0..n). */
static size_t model_state_bytes(const int *items, int n)
{
    size_t len = strlen("{\"checked_out\":false,\"items\":[]}");
    for (int i = 0; i < n; i++) {
        char one[160];
        len += (size_t)snprintf(one, sizeof(one), "[\"%*s\",%d,%d]", SKU_LEN, "",
                                QTY_BASE + items[i], PRICE) +
               (i ? 1 : 0);
    }
    return len;
}

/* The record's framing around the state bytes, least and most: librdkafka's
 * 36, the key, the wire format's 5, the aggregate id, version, offset, the
 * state's length and an empty `recent` array (Avro varints of 1 to 10 bytes),
 * and the header "commands-offset" (two 1-byte lengths, its 15 bytes, a value
 * of 1 to 19 digits). */
static size_t framing(bool most)
{
    size_t id = strlen(CART);
    size_t header = 1 + 15 + 1 + (most ? 19 : 1);
    return 36 + id + 5 + (1 + id) + (most ? 10 + 10 + 3 : 1 + 1 + 2) + 1 + header;
}

static const char *reason_of(json_t *ans)
{
    const char *r = json_string_value(json_object_get(ans, "reason"));
    return r ? r : "";
}

/* A limit below what the service's own records need stops it at start-up. */
static void test_too_small_limit_refused(void)
{
    wt_stack_t bad;
    wt_stack_init(&bad, "cart");
    const char *sets[] = {"kafka.message.max.bytes=1000"};
    wt_start_service(&bad, sets, 1);
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(bad.cs.pid, &status, 0), bad.cs.pid);
    es_test_child_reaped(bad.cs.pid);
    bad.cs.pid = 0;
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    char line[1024];
    CU_ASSERT_TRUE(wt_log_line(bad.cs.log, "kafka.message.max.bytes", "16384", line, sizeof(line)));
    printf("\n  kafka.message.max.bytes=1000: exit %d: %s", WEXITSTATUS(status), line);
}

/*
 * Add items @p first, @p first + 1, ... to the cart holding @p in_cart[0..*n)
 * until one is refused, each once; every other answer must be 200.  Returns
 * the refused item, after checking the refusal against the model.
 */
static int fill(int *in_cart, int *n, int first, int *commands, int *adds)
{
    int refused_at = -1;
    for (int i = first; *n < MAX_ITEMS && refused_at < 0; i++) {
        json_t *ans = NULL;
        int s = add_item(CART, i, &ans);
        (*commands)++;
        if (s == 200) {
            in_cart[(*n)++] = i;
            (*adds)++;
        } else {
            CU_ASSERT_EQUAL_FATAL(s, 422); /* 504 here: the partition waits, the old defect */
            ES_ASSERT_STR_EQ(reason_of(ans), "aggregate_too_large");
            refused_at = i;
        }
        json_decref(ans);
    }
    CU_ASSERT_FATAL(refused_at >= 0);
    int grown[MAX_ITEMS + 1];
    memcpy(grown, in_cart, sizeof(int) * (size_t)*n);
    grown[*n] = refused_at;
    size_t fit = model_state_bytes(in_cart, *n), over = model_state_bytes(grown, *n + 1);
    printf("\n  item %d refused (%d in the cart): its state would be %zu bytes (%zu before), "
           "limit %d",
           refused_at, *n, over, fit, LIMIT);
    CU_ASSERT_TRUE(over + framing(true) > LIMIT);  /* not refused early */
    CU_ASSERT_TRUE(fit + framing(false) <= LIMIT); /* not accepted past the limit */
    return refused_at;
}

static void test_oversized_aggregate(void)
{
    wt_stack_init(&st, "cart");
    const char *sets[] = {"kafka.message.max.bytes=16384"};
    wt_start_service(&st, sets, 1);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    double aborts0 = wt_metric(&st.cs, "escqrs_transactions_aborted_total");

    int in_cart[MAX_ITEMS], n = 0, commands = 0, adds = 0;
    int refused_at = fill(in_cart, &n, 0, &commands, &adds);

    /* The partition goes on: another cart, then the full one shrinks and grows again. */
    json_t *ans = NULL;
    CU_ASSERT_EQUAL(add_item("small-cart", 0, &ans), 200);
    json_decref(ans);
    for (int k = 0; k < 2; k++) { /* room for the refused item, whatever the framing */
        char body[160], sku[SKU_LEN + 1];
        sku_of(in_cart[0], sku);
        snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"quantity\":%d}", sku,
                 QTY_BASE + in_cart[0]);
        CU_ASSERT_EQUAL(
            wt_post(&st.gw, "/v1/carts/" CART "/remove-item", body, strlen(body), NULL, NULL, NULL),
            200);
        commands++;
        memmove(in_cart, in_cart + 1, sizeof(int) * (size_t)--n);
    }
    CU_ASSERT_EQUAL(add_item(CART, refused_at, NULL), 200);
    commands++;
    adds++;
    in_cart[n++] = refused_at;
    /* watched now: refused again where the limit says, without an abort */
    int refused_again = fill(in_cart, &n, MAX_ITEMS, &commands, &adds);
    int64_t versions = adds + 2; /* and the two removals */

    double aborts = wt_metric(&st.cs, "escqrs_transactions_aborted_total") - aborts0;
    double rejected =
        wt_metric(&st.cs, "escqrs_commands_rejected_total{reason=\"aggregate_too_large\"}");
    printf("\n  aborted transactions %.0f, aggregate_too_large %.0f", aborts, rejected);
    CU_ASSERT_TRUE(aborts <= 1); /* one to learn the aggregate is too large, then none */
    CU_ASSERT_EQUAL(rejected, 2);
    CU_ASSERT_EQUAL(wt_get(&st.cs, "/readyz", NULL), 200);

    /* The log: the full cart's events are the accepted commands, in order. */
    size_t nev = 0, nout = 0, nst = 0;
    wt_event_t *evs = wt_read_events(&st, &nev);
    int64_t next = 1;
    int added = 0, removes = 0, bad = 0, readded = 0;
    for (size_t i = 0; i < nev; i++) {
        if (strcmp(evs[i].agg_id, CART))
            continue;
        if (evs[i].version != next++)
            bad++;
        if (!strcmp(evs[i].type, "ItemAdded"))
            added++;
        else if (!strcmp(evs[i].type, "ItemRemoved"))
            removes++;
        if (evs[i].amount == QTY_BASE + refused_again)
            bad++; /* the item refused last */
        if (evs[i].amount == QTY_BASE + refused_at)
            readded++; /* once: when it fitted */
    }
    printf("\n  %s: %" PRId64 " events (%d added, %d removed), %d out of order or refused", CART,
           next - 1, added, removes, bad);
    CU_ASSERT_EQUAL(next - 1, versions);
    CU_ASSERT_EQUAL(added, adds);
    CU_ASSERT_EQUAL(removes, 2);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(readded, 1);
    free(evs);
    wt_outcome_t *outs = wt_read_outcomes(&st, &nout);
    CU_ASSERT_EQUAL(nout, (size_t)commands + 1); /* + the small cart's */
    free(outs);
    wt_state_t *sts = wt_read_states(&st, &nst);
    int64_t last = -1;
    for (size_t i = 0; i < nst; i++)
        if (!sts[i].tombstone && !sts[i].cmd_id[0] && !strcmp(sts[i].agg_id, CART))
            last = sts[i].version;
    printf("\n  its last state record: version %" PRId64, last);
    CU_ASSERT_EQUAL(last, versions);
    free(sts);
    wt_stack_stop(&st);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a record limit below the service's own records stops it at start-up",
         test_too_small_limit_refused},
        {"a command that would make its aggregate's state record too large is rejected alone",
         test_oversized_aggregate},
        {NULL, NULL},
    };
    return es_test_run("oversized_aggregate", cases);
}
