/*
 * clone.c — `escqrs clone`: a new projector replica's store from a peer's
 * checkpoint, before the replica starts (the Kubernetes init step; the
 * projector's own `bootstrap.from` does the same at its start).
 *
 * It fetches GET <admin url>/admin/projections/NAME/checkpoint (or a saved
 * stream, file://...), verifies it and installs it as the live generation of
 * <store>/NAME (es_ckpt_clone(), escqrs/checkpoint.h, says what is checked).
 * What it expects of the checkpoint comes from this program and its
 * configuration: the store format of this release, the projection's topics
 * from the loaded modules and aggregate.prefix (a built-in <agg>_history or
 * <agg>_commands reads <agg>.events or <agg>.command-results).  `--all`
 * clones every projection the peer lists that has no store here yet.
 *
 * Exit codes: 0 cloned (or, with --all, nothing left to clone), 1 the
 * transfer failed or the copy did not verify (retry, or start from offset
 * 0), 2 usage, or a checkpoint this replica must not use (another store
 * format, projection or prefix) or a store already there.
 */
#include "cli.h"
#include "escqrs/checkpoint.h"
#include "escqrs/http_client.h"
#include "escqrs/kafka.h"
#include "escqrs/modules.h"
#include "escqrs/util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define CLONE_STALL_MS  600000 /* the peer fingerprints its copy before the first byte */
#define LIST_TIMEOUT_MS 10000
#define CLONE_PATH_MAX  1024
#define CLONE_NAME_MAX  128

/* The topics projection @p name reads, from the loaded modules; 0 when unknown. */
static size_t expected_topics(const es_conf_t *conf, const char *name,
                              char topics[][ES_CKPT_TOPIC_MAX])
{
    const char *prefix = es_conf_get(conf, "aggregate.prefix");
    char agg[ES_CKPT_TOPIC_MAX];
    const es_proj_def_t *def = es_modules_projection(name);
    size_t n = 0;
    if (def) {
        for (size_t i = 0; i < def->naggregates && i < ES_PROJ_MAX_AGGREGATES; i++, n++) {
            snprintf(agg, sizeof(agg), "%s%s", prefix ? prefix : "", def->aggregates[i]);
            es_topic_name(agg, ES_TOPIC_EVENTS, NULL, topics[n], ES_CKPT_TOPIC_MAX);
        }
        return n;
    }
    const char *us = strrchr(name, '_');
    if (!us || (strcmp(us, "_history") && strcmp(us, "_commands")))
        return 0;
    snprintf(agg, sizeof(agg), "%.*s", (int)(us - name), name);
    if (!es_modules_aggregate(agg))
        return 0;
    snprintf(agg, sizeof(agg), "%s%.*s", prefix ? prefix : "", (int)(us - name), name);
    es_topic_name(agg, strcmp(us, "_history") ? ES_TOPIC_RESULTS : ES_TOPIC_EVENTS, NULL, topics[0],
                  ES_CKPT_TOPIC_MAX);
    return 1;
}

static int exit_code(es_err_t err)
{
    return err == ES_ERR_OK                            ? CLI_EXIT_OK
           : err == ES_ERR_CONF || err == ES_ERR_STATE ? CLI_EXIT_USAGE
                                                       : CLI_EXIT_FAILURE;
}

/* Clone projection @p name from @p from into @p store; the exit code. */
static int clone_one(const es_conf_t *conf, const char *from, const char *name, const char *store,
                     bool quiet_if_present)
{
    char url[CLI_URL_MAX], dir[CLONE_PATH_MAX], errstr[CLI_ERRSTR_MAX];
    char topics[ES_PROJ_MAX_AGGREGATES][ES_CKPT_TOPIC_MAX];
    const char *tp[ES_PROJ_MAX_AGGREGATES];
    es_ckpt_manifest_t m;
    es_http_client_opts_t opts;
    size_t n = strlen(from);
    if (!strncmp(from, "file://", 7))
        snprintf(url, sizeof(url), "%s", from);
    else
        snprintf(url, sizeof(url), "%.*s/admin/projections/%s/checkpoint",
                 (int)(n && from[n - 1] == '/' ? n - 1 : n), from, name);
    snprintf(dir, sizeof(dir), "%s/%s", store, name);
    size_t nt = expected_topics(conf, name, topics);
    for (size_t i = 0; i < nt; i++)
        tp[i] = topics[i];
    if (!nt)
        fprintf(stderr,
                "escqrs clone: %s is not a projection of the loaded modules: its topics "
                "are not checked\n",
                name);
    es_ckpt_expect_t x = {
        .projection = name, .format = ES_PROJECTOR_STORE_FORMAT, .topics = tp, .ntopics = nt};
    cli_http_opts(conf, &opts);
    int64_t t0 = es_mono_ms();
    es_err_t err = es_ckpt_clone(url, &x, &opts, CLONE_STALL_MS, dir, &m, errstr, sizeof(errstr));
    if (err == ES_ERR_STATE && quiet_if_present) {
        printf("%s: a store is there already, not cloned\n", name);
        return CLI_EXIT_OK;
    }
    if (err) {
        fprintf(stderr, "escqrs clone: %s: %s\n", name, errstr);
        return exit_code(err);
    }
    long long events = 0;
    for (size_t i = 0; i < m.noffsets; i++)
        events += m.offsets[i].next > 0 ? m.offsets[i].next : 0;
    printf("%s: cloned into %s in %.1f s: %lld view keys, digest %016llx, offsets summing to "
           "%lld (the replica catches up from there)\n",
           name, dir, (double)(es_mono_ms() - t0) / 1000.0, (long long)m.digest.view_keys,
           (unsigned long long)m.digest.views, events);
    es_ckpt_manifest_clear(&m);
    return CLI_EXIT_OK;
}

/* --all: every projection the peer lists. */
static int clone_all(const es_conf_t *conf, const char *from, const char *store)
{
    char url[CLI_URL_MAX], errstr[CLI_ERRSTR_MAX];
    es_buf_t body = {0};
    es_http_client_opts_t opts;
    long status = 0;
    int rc = CLI_EXIT_OK;
    cli_http_opts(conf, &opts);
    snprintf(url, sizeof(url), "%s/admin/projections", from);
    if (es_http_fetch_opts("GET", url, NULL, NULL, NULL, LIST_TIMEOUT_MS, &opts, &status, &body,
                           errstr, sizeof(errstr)) ||
        status != 200) {
        fprintf(stderr, "escqrs clone: %s: %s\n", url, status ? "not 200" : errstr);
        es_buf_free(&body);
        return CLI_EXIT_FAILURE;
    }
    json_t *list = json_loadb(body.data, body.len, 0, NULL), *p;
    size_t i;
    json_array_foreach(json_object_get(list, "projections"), i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));
        int one = name ? clone_one(conf, from, name, store, true) : CLI_EXIT_FAILURE;
        rc = one > rc ? one : rc;
    }
    json_decref(list);
    es_buf_free(&body);
    return rc;
}

static int usage(FILE *fp, int rc)
{
    fprintf(fp, "usage: escqrs clone [--from URL] (--projection NAME | --all) --store DIR\n\n"
                "Install a peer projector's checkpoint of a projection as the store of a new\n"
                "replica (DIR is its store.path; DIR/NAME must have no store yet), so it catches\n"
                "up from the checkpoint's offsets instead of replaying from offset 0.\n\n"
                "  --from URL        the peer's admin listener (default projector.admin.url), or\n"
                "                    file://PATH of a saved checkpoint stream\n"
                "  --projection NAME the projection to clone\n"
                "  --all             every projection the peer lists that has no store here\n"
                "  --store DIR       the new replica's store.path\n\n"
                "Exit 0 cloned, 1 transfer or verification failed, 2 usage, a checkpoint of\n"
                "another store format, projection or prefix, or a store already there.\n");
    return rc;
}

int cli_clone(es_conf_t *conf, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},  {"projection", required_argument, NULL, 'p'},
        {"store", required_argument, NULL, 's'}, {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    const char *from = es_conf_get(conf, "projector.admin.url"), *name = NULL, *store = NULL;
    bool all = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:p:s:ah", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            from = optarg;
            break;
        case 'p':
            name = optarg;
            break;
        case 's':
            store = optarg;
            break;
        case 'a':
            all = true;
            break;
        case 'h':
            return usage(stdout, CLI_EXIT_OK);
        default:
            return usage(stderr, CLI_EXIT_USAGE);
        }
    }
    if (optind != argc || !store || !*store || (!name) == !all ||
        (all && !strncmp(from, "file://", 7)))
        return usage(stderr, CLI_EXIT_USAGE);
    if (!cli_modules_load(conf))
        return CLI_EXIT_USAGE;
    return all ? clone_all(conf, from, store) : clone_one(conf, from, name, store, false);
}
