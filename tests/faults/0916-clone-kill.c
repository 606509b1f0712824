/*
 * 0916-clone-kill.c — a replica killed while it clones a peer's checkpoint
 * (bootstrap.from) starts again on its own and ends with the peer's views.
 *
 * The promise (docs/projector.md, "Replicas from checkpoints"): the copy is
 * downloaded into <dir>/clone.tmp/, renamed to <dir>/g1, and CURRENT is
 * written last, so a crash before CURRENT leaves no live store; the next
 * start tidies what is left and clones again (or, with the peer gone, builds
 * what it can).  Projector A folds N cart events; replica B starts on an
 * empty directory with bootstrap.from=A under an LD_PRELOAD shim
 * (kill_at_call.c) that sends it SIGKILL
 *   1. in the middle of the download: at the first fsync of a file in
 *      clone.tmp/ (one file whole, the rest not yet there);
 *   2. right after clone.tmp/ became g1/, before CURRENT.
 * Each time the test checks what the kill left (no CURRENT; clone.tmp/ or
 * g1/) and starts B again without the shim: with A there, B must clone again
 * and fold nothing (0 events applied), and with A gone (case 2 again, the
 * peer's URL now a closed port) it must build from offset 0 (all N events
 * folded): a g1/ without CURRENT is never live, since a second clone killed
 * while clearing it would leave it half removed (case 2 once more, with the
 * copy's table files removed before the restart).  Every time B's digest
 * must equal A's and its carts the test's own model of the events (es_sim,
 * not the fold).
 */
#include "readtest.h"
#include "testutil.h"

#include "escqrs/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_EVENTS 20000

static char prefix[128], pfx[200];
static rt_topic_t cart;
static es_sim_t sim;

typedef struct {
    const char *name;  /* the replica's directory suffix */
    const char *env;   /* the shim's variable */
    const char *left;  /* what the kill leaves in the runner's directory */
    bool peer_back;    /* A answers at the restart */
    bool half_removed; /* then the copy's table files removed, as a second clone's clearing */
} kill_case_t;

/* Start B under the shim (armed by @p c), see it killed, then start it again. */
static void clone_killed(const rt_proc_t *a, const kill_case_t *c, const char *want_digest)
{
    char root[300], arm[400], path[700], from[100], got[200];
    rt_proc_t b = {0};
    snprintf(root, sizeof(root), "/tmp/%s-%s", prefix, c->name);
    snprintf(arm, sizeof(arm), "%s.arm", root);
    snprintf(from, sizeof(from), "bootstrap.from=http://127.0.0.1:%d", a->admin_port);
    const char *sets[] = {"projections=cart_view", from};
    FILE *f = fopen(arm, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    setenv(c->env, arm, 1);
    es_test_preload(KILL_AT_CALL_SO);
    rt_proc_start(&b, root, pfx, sets, 2);
    es_test_preload(NULL);
    unsetenv(c->env);
    for (int i = 0; i < 600 && rt_proc_alive(&b); i++)
        usleep(100 * 1000);
    if (rt_proc_alive(&b)) {
        CU_FAIL("the replica was not killed while it cloned; see its log");
        fprintf(stderr, "  %s: not killed; log %s\n", c->name, b.log);
        rt_proc_kill9(&b);
        return;
    }
    CU_ASSERT_FALSE(es_test_exists(arm)); /* the shim fired: the kill was the test's */
    snprintf(path, sizeof(path), "%s/cart_view/CURRENT", root);
    CU_ASSERT_FALSE(es_test_exists(path));
    snprintf(path, sizeof(path), "%s/cart_view/%s", root, c->left);
    CU_ASSERT_TRUE(es_test_exists(path));

    if (c->half_removed) { /* a second clone killed while it removed g1/, file by file */
        char cmd[800];
        snprintf(cmd, sizeof(cmd), "rm -f %s/cart_view/g1/*.sst", root);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
    if (!c->peer_back) /* a closed port: nothing listens there now */
        snprintf(from, sizeof(from), "bootstrap.from=http://127.0.0.1:%d", es_test_free_port());
    rt_proc_start(&b, root, pfx, sets, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&b, 60000));
    CU_ASSERT_TRUE(rt_wait_applied_to_end(&b, &cart, 120));
    double applied =
        rt_metric(&b, "escqrs_projector_events_applied_total{projection=\"cart_view\"}");
    rt_digest(&b, "cart_view", got, sizeof(got));
    size_t differ = rt_carts_differing(&b, &sim, NULL);
    printf("\n  %s: killed with %s left; after the restart (%s) %.0f events folded, "
           "digest %s, %zu cart(s) differ from the model",
           c->name, c->left, c->peer_back ? "peer there" : "peer gone", applied, got, differ);
    /* cloned again, nothing replayed; or, with the peer gone, built from offset 0 */
    CU_ASSERT_EQUAL(applied, c->peer_back ? 0 : N_EVENTS);
    CU_ASSERT_STRING_EQUAL(got, want_digest);
    CU_ASSERT_EQUAL(differ, 0);
    snprintf(path, sizeof(path), "%s/cart_view/%s", root, ES_CKPT_STAGING);
    CU_ASSERT_FALSE(es_test_exists(path));
    CU_ASSERT_EQUAL(rt_proc_stop(&b), 0);
}

static void test_clone_killed(void)
{
    char path[300], want[200];
    rt_proc_t a = {0};
    const char *sets[] = {"projections=cart_view"};
    es_conf_t *conf = rt_conf(2);
    es_evgen_t *g = es_evgen_new("cart.events");
    es_test_unique("ft0916", prefix, sizeof(prefix));
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(path, sizeof(path), "%s.cart", prefix);
    rt_topic_init(&cart, conf, path, "cart.events");
    es_sim_init(&sim, prefix, 916, 300);
    rt_produce_sim(&cart, &sim, g, N_EVENTS);
    snprintf(path, sizeof(path), "/tmp/%s-a", prefix);
    rt_proc_start(&a, path, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&a, 30000));
    CU_ASSERT_TRUE_FATAL(rt_wait_applied_to_end(&a, &cart, 120));
    rt_digest(&a, "cart_view", want, sizeof(want));
    CU_ASSERT_EQUAL(rt_carts_differing(&a, &sim, NULL), 0);

    static const kill_case_t cases[] = {
        {"mid-download", "ESCQRS_TEST_KILL_IN_CLONE", ES_CKPT_STAGING, true, false},
        {"before-current", "ESCQRS_TEST_KILL_AT_INSTALL", "g1", true, false},
        {"before-current-peer-gone", "ESCQRS_TEST_KILL_AT_INSTALL", "g1", false, false},
        {"half-removed-peer-gone", "ESCQRS_TEST_KILL_AT_INSTALL", "g1", false, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        clone_killed(&a, &cases[i], want);

    CU_ASSERT_EQUAL(rt_proc_stop(&a), 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf /tmp/%s-*", prefix);
    CU_ASSERT_EQUAL(system(cmd), 0);
    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(g);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a clone killed mid-way: the next start ends with the peer's views", test_clone_killed},
        {NULL, NULL},
    };
    return es_test_run("clone_kill", cases);
}
