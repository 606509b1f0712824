/*
 * 0910-corrupt-command-store.c — a stored aggregate state that does not
 * decode: the command service stops its baseline and says why, instead of
 * writing a baseline marker that claims the aggregate.
 *
 * Why it matters: a partition of <agg>.state is trusted for a restore once it
 * holds a baseline marker, written after a record of every aggregate of the
 * partition (docs/write-side.md, "State restore").  A marker written past an
 * aggregate it skipped makes a later restore bring that aggregate back at
 * version 0 while skipping its events: its next command is decided against
 * an empty state.  The baseline used to skip an undecodable stored state.
 *
 * Three accounts are opened (one per partition, by luck of the hash, or
 * not: the check does not depend on it), and the service writes its
 * baselines: one marker per partition of <agg>.state.  The service is
 * stopped; the test opens its RocksDB store, overwrites acct-0's state with
 * two bytes and deletes the store's notes that the baselines were written
 * (layout "command-service/3", producers/command-service/overlay.c), so the
 * next start writes them again.  Started again, the service must say on
 * /readyz that acct-0's stored state does not decode, stay alive, and write
 * no marker (the topic holds as many as before, 15 s later).
 */
#include "deposits.h"
#include "testutil.h"

#include "escqrs/store.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCOUNTS   3
#define PARTITIONS 3
#define MARKER     "\001baseline"
#define HOLD_S     15 /* the service holds on, saying why, this long */

static wt_stack_t st;
static dp_load_t load;

static size_t markers(void)
{
    size_t n = 0, k = 0;
    wt_state_t *s = wt_read_states(&st, &n);
    for (size_t i = 0; i < n; i++)
        k += !strcmp(s[i].key, MARKER);
    free(s);
    return k;
}

/* acct-0's state becomes two bytes; the notes of written baselines go. */
static void corrupt_store(void)
{
    char path[600], errstr[512];
    es_store_opts_t o = {0};
    snprintf(path, sizeof(path), "%s/store", st.dir);
    es_store_t *store = es_store_open(path, &o, errstr, sizeof(errstr));
    if (!store)
        fprintf(stderr, "open %s: %s\n", path, errstr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(store);
    es_batch_t *b = es_batch_new();
    es_batch_put(b, "sacct-0", 7, "\x00\x01", 2);
    for (int32_t p = 0; p < PARTITIONS; p++) {
        char key[5] = {'b'};
        es_be32_put(key + 1, (uint32_t)p);
        es_batch_delete(b, key, sizeof(key));
    }
    CU_ASSERT_EQUAL(es_store_write(store, b, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(b);
    es_store_close(store);
}

static void test_corrupt_state(void)
{
    wt_stack_init(&st, "account");
    dp_start(&load, &st, NULL, 0, ACCOUNTS, 1);
    size_t before = 0;
    for (int i = 0; i < 60 && (before = markers()) < PARTITIONS; i++)
        sleep(1);
    CU_ASSERT_EQUAL_FATAL(before, PARTITIONS);
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);

    corrupt_store();
    wt_start_service(&st, NULL, 0);
    bool said = wt_wait_not_ready_because(&st.cs, "stored state does not decode", 60);
    if (!said)
        fprintf(stderr, "the service never named the undecodable state; see %s\n", st.cs.log);
    CU_ASSERT_TRUE(said);
    int ready_answers = 0, samples = 0; /* /readyz must not say ready between attempts */
    for (double t0 = es_mono_s(); es_mono_s() - t0 < HOLD_S; samples++) {
        ready_answers += wt_get(&st.cs, "/readyz", NULL) == 200;
        usleep(50 * 1000);
    }
    size_t after = markers();
    CU_ASSERT_EQUAL(ready_answers, 0);
    CU_ASSERT_TRUE(wt_proc_alive(&st.cs));
    CU_ASSERT_EQUAL(wt_get(&st.cs, "/healthz", NULL), 200);
    CU_ASSERT_EQUAL(after, before);
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0);
    wt_stop(&st.gw);
    printf("\n  RESULT markers_before=%zu markers_after_corruption=%zu said_why=%d "
           "readyz_200=%d of %d\n",
           before, after, said, ready_answers, samples);
    dp_free(&load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"an undecodable stored state: no baseline marker claims it, /readyz says why",
         test_corrupt_state},
        {NULL, NULL},
    };
    return es_test_run("fault-corrupt-command-store", cases);
}
