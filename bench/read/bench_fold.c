/*
 * bench_fold.c — what a projection's fold costs per event, without Kafka
 * and RocksDB: the CPU of the fold itself, so that a change to a fold (or to
 * the transaction overlay every fold writes through) can be measured apart
 * from the transport and the store, whose cost on this machine varies by
 * 1.3-1.8x from hour to hour (issue 17).
 *
 *   escqrs-bench-fold [--events N] [--rounds R] [--batch B] --projection NAME
 *                     MODULE.so [MODULE.so ...]
 *
 * Generates N valid cart events once (the tests' workload model:
 * tests/eventgen.c, 256 open carts, 40 skus), then for each of R rounds folds
 * all of them through the projection NAME of each module given, in turn (a
 * module built before a change and one after, side by side in one process,
 * so the machine's state is the same for both): one transaction per B events
 * as the projector does (begin and commit per event, the batch's writes
 * flushed to an in-memory store, the transaction cleared), into a store that
 * starts empty each round.  The thread's CPU time of each pass is taken; the
 * report is each module's median ns per event and its ratio to the first.
 * Prints one `RESULT phase=fold ...` line per module.
 *
 * What it does not show: the events are Avro C's generic values, not the
 * projector's flat ones (common/src/avro_flat.c), so field look-ups by name
 * cost differently here; the store is a hash map, not RocksDB.  Compare
 * builds of one fold with it, not a fold with the projector's figures.
 */
#include "eventgen.h"

#include "escqrs/module.h"
#include "escqrs/projection.h"

#include <avro.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULES_MAX 8
#define ROUNDS_MAX  1000

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-fold: %s: %s\n", what, why);
    exit(2);
}

/*
 * The projection @p name of the module in the shared object @p path (its own
 * copy: RTLD_LOCAL).  The first module loaded is registered, for its schemas
 * (the event generator's); the others would be refused as the same name.
 */
static const es_proj_def_t *load_projection(const char *path, const char *name, bool first)
{
    char errstr[256];
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        die(path, dlerror());
    es_module_entry_fn entry = (es_module_entry_fn)(uintptr_t)dlsym(h, ES_MODULE_ENTRY_SYMBOL);
    if (!entry)
        die(path, "no " ES_MODULE_ENTRY_SYMBOL);
    const es_module_t *mod = entry();
    if (first && es_module_register(mod, errstr, sizeof(errstr)))
        die(path, errstr);
    for (const es_proj_def_t *const *p = mod->projections; p && *p; p++)
        if (!strcmp((*p)->name, name))
            return *p;
    die(path, "no such projection");
    return NULL;
}

/* Fold every event through @p def into an empty store; the thread's CPU seconds. */
static double fold_pass(const es_proj_def_t *def, avro_value_t *events, size_t n, size_t batch)
{
    char errstr[512];
    es_proj_memmap_t *store = es_proj_memmap_new();
    es_proj_backend_t be = es_proj_memmap_backend(store);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    double t0 = thread_cpu_s();
    for (size_t i = 0; i < n; i++) {
        es_proj_event_t ev = {.topic = "cart.events", .value = &events[i]};
        es_proj_txn_begin_event(txn);
        if (def->fold(0, &ev, txn, errstr, sizeof(errstr)))
            die("fold", errstr); /* the workload is valid: a refusal is a bug */
        es_proj_txn_commit_event(txn);
        if ((i + 1) % batch == 0 || i + 1 == n) {
            es_proj_txn_store_into(txn, store);
            es_proj_txn_clear(txn);
        }
    }
    double cpu = thread_cpu_s() - t0;
    es_proj_txn_destroy(txn);
    es_proj_reader_destroy(rd);
    es_proj_memmap_destroy(store);
    return cpu;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t n = 200000, rounds = 7, batch = 1000, nmods = 0;
    const char *pname = NULL, *paths[MODULES_MAX];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--projection") && i + 1 < argc)
            pname = argv[++i];
        else if (argv[i][0] != '-' && nmods < MODULES_MAX)
            paths[nmods++] = argv[i];
        else
            die("usage", "see the comment at the top of bench/read/bench_fold.c");
    }
    if (!pname || !nmods || !n || !batch || !rounds || rounds > ROUNDS_MAX)
        die("usage", "see the comment at the top of bench/read/bench_fold.c");

    const es_proj_def_t *defs[MODULES_MAX];
    for (size_t m = 0; m < nmods; m++)
        defs[m] = load_projection(paths[m], pname, m == 0);

    /* the events, generated once and kept (the model's value is reused per call) */
    es_evgen_t *g = es_evgen_new("cart.events");
    avro_value_iface_t *iface = avro_generic_class_from_schema(es_evgen_schema(g));
    avro_value_t *events = calloc(n, sizeof(*events));
    if (!events)
        die("events", "out of memory");
    es_sim_t sim;
    const char *id;
    es_sim_init(&sim, "bench", 7, 256);
    for (size_t i = 0; i < n; i++) {
        avro_generic_value_new(iface, &events[i]);
        avro_value_copy(&events[i], es_sim_next(&sim, g, (int64_t)i, &id));
    }

    static double cpu[MODULES_MAX][ROUNDS_MAX];
    for (size_t r = 0; r < rounds; r++)
        for (size_t k = 0; k < nmods; k++) {
            size_t m = (r + k) % nmods; /* who goes first alternates */
            cpu[m][r] = fold_pass(defs[m], events, n, batch);
        }
    double base = 0;
    for (size_t m = 0; m < nmods; m++) {
        qsort(cpu[m], rounds, sizeof(double), cmp_double);
        double med = cpu[m][rounds / 2] * 1e9 / (double)n;
        double lo = cpu[m][0] * 1e9 / (double)n, hi = cpu[m][rounds - 1] * 1e9 / (double)n;
        base = m ? base : med;
        printf("%s: %s %.0f ns/event (%.0f-%.0f over %zu rounds), %.2f of the first\n", pname,
               paths[m], med, lo, hi, rounds, med / base);
        printf("RESULT phase=fold projection=%s module=%s events=%zu rounds=%zu ns_per_event=%.0f "
               "min=%.0f max=%.0f ratio_to_first=%.3f\n",
               pname, paths[m], n, rounds, med, lo, hi, med / base);
    }
    for (size_t i = 0; i < n; i++)
        avro_value_decref(&events[i]);
    free(events);
    avro_value_iface_decref(iface);
    es_sim_free(&sim);
    es_evgen_destroy(g);
    return 0;
}
