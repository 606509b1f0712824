/*
 * 0310-projector-checkpoint.c — projector replicas from checkpoints.
 *
 * 1. A replica from a checkpoint equals a rebuild: projector A catches up on
 *    N cart events; its checkpoint (GET /admin/projections/cart_view/
 *    checkpoint) is a tar whose manifest carries A's digest and offsets;
 *    replica B starts on an empty store with bootstrap.from=<A's admin URL>
 *    and must not replay: it applies none of the N events, only the M
 *    produced after it started; then B's digest equals A's, and both equal
 *    the digest of A after a blue/green rebuild from offset 0, and B's carts
 *    equal the test's own model of the events (es_sim, not the fold).
 * 2. `escqrs clone` from the saved stream (file://): installs a store that
 *    a projector C catches up from (same digest again); a second clone into
 *    the same directory, a checkpoint of another projection, a manifest of
 *    another store format (exit 2, naming both formats) and a byte flipped
 *    inside a table file (exit 1, nothing installed) are refused.
 * 3. bootstrap.from pointing at no projector: the replica builds from
 *    offset 0 instead (it applies every event), with a warning.
 */
#include "readtest.h"
#include "testutil.h"

#include "escqrs/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_BEFORE 6000 /* events before the checkpoint */
#define M_AFTER  1500 /* events after B started */

static char prefix[128], pfx[200];
static es_conf_t *conf;
static rt_topic_t cart;
static es_sim_t sim;
static es_evgen_t *cg;

/* Wait until cart_view on @p p has applied @p total events (the sum of its offsets). */
static bool wait_applied(const rt_proc_t *p, int64_t total)
{
    for (int waited = 0; waited < 120000; waited += 200) {
        json_t *b = NULL, *o;
        int64_t sum = 0;
        size_t i;
        rt_http(p, "GET", "/admin/projections", &b);
        json_array_foreach(
            json_object_get(json_array_get(json_object_get(b, "projections"), 0), "partitions"), i,
            o) sum += json_integer_value(json_object_get(o, "applied"));
        json_decref(b);
        if (sum >= total)
            return rt_wait_caught_up(p, "cart_view", 120000);
        usleep(200 * 1000);
    }
    return false;
}

static double applied_of(const rt_proc_t *p)
{
    return rt_metric(p, "escqrs_projector_events_applied_total{projection=\"cart_view\"}");
}

/* One entry of a tar: where its data starts and how long it is. */
typedef struct {
    char name[101];
    size_t data, size;
} tar_entry_t;

static size_t tar_entries(const es_buf_t *t, tar_entry_t *out, size_t max)
{
    size_t n = 0;
    for (size_t off = 0; off + 512 <= t->len && n < max;) {
        const char *h = t->data + off;
        if (!h[0])
            break;
        memcpy(out[n].name, h, 100);
        out[n].name[100] = '\0';
        out[n].size = (size_t)strtoull(h + 124, NULL, 8);
        out[n].data = off + 512;
        off += 512 + (out[n].size + 511) / 512 * 512;
        n++;
    }
    return n;
}

static void write_file(const char *path, const es_buf_t *b)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(b->data, 1, b->len, f), b->len);
    fclose(f);
}

/* Run `escqrs clone` with @p args; its exit code, its output in @p out. */
static int run_clone(const char *args, char *out, size_t outsz)
{
    char cmd[2048], line[1024];
    const char *bd = getenv("ESCQRS_BUILD_DIR");
    pid_t pid;
    snprintf(cmd, sizeof(cmd), "%s/cli/escqrs --set aggregate.prefix=%s clone %s 2>&1",
             bd ? bd : "build", pfx, args);
    FILE *f = es_test_popen(cmd, &pid);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f))
        snprintf(out + strlen(out), outsz - strlen(out), "%s", line);
    int st = es_test_pclose(f, pid);
    fprintf(stderr, "escqrs clone %s -> %d: %s", args, WEXITSTATUS(st), out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_replica_from_checkpoint(void)
{
    char root_a[300], root_b[300], root_c[300], root_d[300], path[700], out[8192];
    char dig_a[200], dig_b[200], dig_c[200], dig_rebuilt[200], sets_b[400], sets_d[200];
    rt_proc_t a = {0}, b = {0}, c = {0}, d = {0};
    const char *sets[2] = {"projections=cart_view", NULL};

    conf = rt_conf(2);
    cg = es_evgen_new("cart.events");
    es_test_unique("it0310", prefix, sizeof(prefix));
    snprintf(pfx, sizeof(pfx), "%s.", prefix);
    snprintf(path, sizeof(path), "%s.cart", prefix);
    rt_topic_init(&cart, conf, path, "cart.events");
    es_sim_init(&sim, prefix, 310, 200);
    rt_produce_sim(&cart, &sim, cg, N_BEFORE);
    snprintf(root_a, sizeof(root_a), "/tmp/%s-a", prefix);
    snprintf(root_b, sizeof(root_b), "/tmp/%s-b", prefix);
    snprintf(root_c, sizeof(root_c), "/tmp/%s-c", prefix);
    snprintf(root_d, sizeof(root_d), "/tmp/%s-d", prefix);

    /* A catches up; its checkpoint describes exactly its store */
    rt_proc_start(&a, root_a, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&a, 30000));
    CU_ASSERT_TRUE_FATAL(wait_applied(&a, N_BEFORE));
    rt_digest(&a, "cart_view", dig_a, sizeof(dig_a));
    es_buf_t tar = {0};
    CU_ASSERT_EQUAL_FATAL(rt_http_raw(&a, "GET", "/admin/projections/cart_view/checkpoint", &tar),
                          200);
    tar_entry_t e[64];
    size_t ne = tar_entries(&tar, e, 64);
    CU_ASSERT_TRUE_FATAL(ne > 2);
    CU_ASSERT_STRING_EQUAL(e[0].name, ES_CKPT_MANIFEST_NAME);
    es_ckpt_manifest_t m;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(
        es_ckpt_manifest_parse(tar.data + e[0].data, e[0].size, &m, err, sizeof(err)), ES_ERR_OK);
    char dig_m[200];
    snprintf(dig_m, sizeof(dig_m), "%016llx/%lld %016llx/%lld", (unsigned long long)m.digest.views,
             (long long)m.digest.view_keys, (unsigned long long)m.digest.offsets,
             (long long)m.digest.offset_keys);
    CU_ASSERT_STRING_EQUAL(dig_m, dig_a);
    CU_ASSERT_STRING_EQUAL(m.projection, "cart_view");
    CU_ASSERT_STRING_EQUAL(m.format, ES_PROJECTOR_STORE_FORMAT);
    int64_t sum = 0;
    for (size_t i = 0; i < m.noffsets; i++)
        sum += m.offsets[i].next;
    CU_ASSERT_EQUAL(m.noffsets, 2);
    CU_ASSERT_EQUAL(sum, N_BEFORE);
    es_ckpt_manifest_clear(&m);
    snprintf(path, sizeof(path), "/tmp/%s-ckpt.tar", prefix);
    write_file(path, &tar);
    CU_ASSERT_EQUAL(rt_http(&a, "GET", "/admin/projections/nope/checkpoint", NULL), 404);

    /* B starts from A's checkpoint and applies only what came after it */
    snprintf(sets_b, sizeof(sets_b), "bootstrap.from=http://127.0.0.1:%d", a.admin_port);
    const char *sb[] = {"projections=cart_view", sets_b};
    rt_proc_start(&b, root_b, pfx, sb, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&b, 60000));
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(&b, "cart_view", 120000));
    double b_start = applied_of(&b);
    rt_produce_sim(&cart, &sim, cg, M_AFTER);
    CU_ASSERT_TRUE(wait_applied(&a, N_BEFORE + M_AFTER));
    CU_ASSERT_TRUE(wait_applied(&b, N_BEFORE + M_AFTER));
    double b_applied = applied_of(&b);
    fprintf(stderr,
            "replica B applied %.0f events at its start, %.0f in all (%d before the "
            "checkpoint, %d after)\n",
            b_start, b_applied, N_BEFORE, M_AFTER);
    CU_ASSERT_EQUAL(b_start, 0);
    CU_ASSERT_EQUAL(b_applied, M_AFTER);
    rt_digest(&a, "cart_view", dig_a, sizeof(dig_a));
    rt_digest(&b, "cart_view", dig_b, sizeof(dig_b));
    CU_ASSERT_STRING_EQUAL(dig_a, dig_b);
    /* the digests compare the projector with itself; the model is the test's own */
    size_t b_differ = rt_carts_differing(&b, &sim, NULL);
    fprintf(stderr, "replica B: %zu cart(s) differing from the model of the %d events\n", b_differ,
            N_BEFORE + M_AFTER);
    CU_ASSERT_EQUAL(b_differ, 0);

    /* ... and equals a rebuild of A from offset 0 */
    CU_ASSERT_EQUAL(rt_http(&a, "POST", "/admin/projections/cart_view/rebuild", NULL), 202);
    CU_ASSERT_TRUE(rt_wait_caught_up(&a, "cart_view", 180000));
    json_t *lst = NULL;
    rt_http(&a, "GET", "/admin/projections", &lst);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(
                        json_array_get(json_object_get(lst, "projections"), 0), "generation")),
                    2);
    json_decref(lst);
    rt_digest(&a, "cart_view", dig_rebuilt, sizeof(dig_rebuilt));
    fprintf(stderr, "digests: A %s, B %s, A rebuilt %s\n", dig_a, dig_b, dig_rebuilt);
    CU_ASSERT_STRING_EQUAL(dig_rebuilt, dig_b);
    CU_ASSERT_EQUAL(rt_proc_stop(&b), 0);

    /* escqrs clone from the saved stream; C catches up the M events from it */
    char args[1200];
    snprintf(args, sizeof(args), "--from file://%s --projection cart_view --store %s", path,
             root_c);
    CU_ASSERT_EQUAL(run_clone(args, out, sizeof(out)), 0);
    CU_ASSERT_EQUAL(run_clone(args, out, sizeof(out)), 2); /* a store is there now */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "already has a live store"));
    rt_proc_start(&c, root_c, pfx, sets, 1);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&c, 30000));
    CU_ASSERT_TRUE(wait_applied(&c, N_BEFORE + M_AFTER));
    CU_ASSERT_EQUAL(applied_of(&c), M_AFTER);
    rt_digest(&c, "cart_view", dig_c, sizeof(dig_c));
    CU_ASSERT_STRING_EQUAL(dig_c, dig_rebuilt);
    CU_ASSERT_EQUAL(rt_carts_differing(&c, &sim, NULL), 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&c), 0);

    /* refusals: another projection, another store format, a damaged transfer */
    char bad[700], root_x[400];
    snprintf(root_x, sizeof(root_x), "%s-x", root_c);
    snprintf(args, sizeof(args), "--from file://%s --projection item_stats --store %s", path,
             root_x);
    CU_ASSERT_EQUAL(run_clone(args, out, sizeof(out)), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "projection cart_view, not of item_stats"));

    es_buf_t other = {0};
    es_buf_set(&other, tar.data, tar.len);
    char *fmt = memmem(other.data + e[0].data, e[0].size, ES_PROJECTOR_STORE_FORMAT,
                       strlen(ES_PROJECTOR_STORE_FORMAT));
    CU_ASSERT_PTR_NOT_NULL_FATAL(fmt);
    fmt[strlen(ES_PROJECTOR_STORE_FORMAT) - 1] = '9'; /* escqrs-projector/9 */
    snprintf(bad, sizeof(bad), "/tmp/%s-format.tar", prefix);
    write_file(bad, &other);
    snprintf(args, sizeof(args), "--from file://%s --projection cart_view --store %s", bad, root_x);
    CU_ASSERT_EQUAL(run_clone(args, out, sizeof(out)), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "escqrs-projector/9"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, ES_PROJECTOR_STORE_FORMAT));

    size_t big = 0; /* a byte in the middle of the largest table file */
    for (size_t i = 1; i < ne; i++)
        if (strstr(e[i].name, ".sst") && e[i].size > e[big].size)
            big = i;
    CU_ASSERT_TRUE_FATAL(big > 0);
    es_buf_set(&other, tar.data, tar.len);
    other.data[e[big].data + e[big].size / 2] ^= 0x20;
    snprintf(bad, sizeof(bad), "/tmp/%s-flipped.tar", prefix);
    write_file(bad, &other);
    snprintf(args, sizeof(args), "--from file://%s --projection cart_view --store %s", bad, root_x);
    CU_ASSERT_EQUAL(run_clone(args, out, sizeof(out)), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "damaged in transfer")); /* the file's checksum */
    snprintf(path, sizeof(path), "%s/cart_view/CURRENT", root_x);
    CU_ASSERT_FALSE(es_test_exists(path));
    snprintf(path, sizeof(path), "%s/cart_view/%s", root_x, ES_CKPT_STAGING);
    CU_ASSERT_FALSE(es_test_exists(path));
    es_buf_free(&other);
    es_buf_free(&tar);

    /* bootstrap.from at no projector: from offset 0, every event */
    snprintf(sets_d, sizeof(sets_d), "bootstrap.from=http://127.0.0.1:%d", es_test_free_port());
    const char *sd[] = {"projections=cart_view", sets_d};
    rt_proc_start(&d, root_d, pfx, sd, 2);
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&d, 30000));
    CU_ASSERT_TRUE(wait_applied(&d, N_BEFORE + M_AFTER));
    CU_ASSERT_EQUAL(applied_of(&d), N_BEFORE + M_AFTER);
    rt_digest(&d, "cart_view", dig_c, sizeof(dig_c));
    CU_ASSERT_STRING_EQUAL(dig_c, dig_rebuilt);
    CU_ASSERT_EQUAL(rt_proc_stop(&d), 0);
    CU_ASSERT_EQUAL(rt_proc_stop(&a), 0);

    es_sim_free(&sim);
    rt_topic_free(&cart);
    es_evgen_destroy(cg);
    es_conf_destroy(conf);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a replica from a checkpoint equals a rebuild (digest)", test_replica_from_checkpoint},
        {NULL, NULL},
    };
    return es_test_run("0310-projector-checkpoint", cases);
}
