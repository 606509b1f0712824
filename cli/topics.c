/*
 * topics.c — `escqrs topics create|describe <aggregate>`.
 *
 * Creates an aggregate's commands, events, command-results and state topics (and a
 * projector's DLQ with --dlq NAME) with the settings of es_topic_spec_for(),
 * so operators and the daemons create topics the same way.  Creating is
 * idempotent: existing topics with the right partition count are fine.
 */
#include "cli.h"
#include "escqrs/kafka.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_TIMEOUT_MS 15000 /* one admin request: create, describe */
#define MAX_DLQ          16    /* --dlq given at most this often */
#define TOPIC_NAME_MAX   256   /* a topic name, or <prefix><aggregate> */
#define ERRSTR_MAX       512

/* An aggregate's own topics, in the order they are listed. */
static const es_topic_kind_t kinds[] = {ES_TOPIC_COMMANDS, ES_TOPIC_EVENTS, ES_TOPIC_RESULTS,
                                        ES_TOPIC_STATE};

static void topics_usage(FILE *fp)
{
    fprintf(fp, "usage: escqrs topics create <aggregate> [--dlq PROJECTOR]...\n"
                "       escqrs topics describe <aggregate>\n\n"
                "create    create <agg>.commands, <agg>.events, <agg>.command-results,\n"
                "          <agg>.state (and <agg>.events.dlq.PROJECTOR per --dlq) with\n"
                "          topics.* settings\n"
                "describe  print partitions, retention.ms, cleanup.policy and\n"
                "          min.insync.replicas of each of those topics\n");
}

static int topics_describe(es_admin_t *adm, const char *agg)
{
    static const char *const keys[] = {"retention.ms", "cleanup.policy", "min.insync.replicas"};
    char errstr[ERRSTR_MAX];
    int rc = CLI_EXIT_OK;

    for (size_t k = 0; k < ES_ARRAY_SIZE(kinds); k++) {
        char name[TOPIC_NAME_MAX];
        int parts = 0;
        es_topic_name(agg, kinds[k], NULL, name, sizeof(name));
        if (es_admin_topic_partitions(adm, name, ADMIN_TIMEOUT_MS, &parts, errstr,
                                      sizeof(errstr))) {
            fprintf(stderr, "escqrs topics describe: %s\n", errstr);
            rc = CLI_EXIT_FAILURE;
            continue;
        }
        printf("%s partitions=%d", name, parts);
        for (size_t i = 0; i < ES_ARRAY_SIZE(keys); i++) {
            char *v = NULL;
            if (es_admin_topic_config(adm, name, keys[i], ADMIN_TIMEOUT_MS, &v, errstr,
                                      sizeof(errstr)) == ES_ERR_OK) {
                printf(" %s=%s", keys[i], v);
                free(v);
            }
        }
        printf("\n");
    }
    return rc;
}

static int topics_create(es_conf_t *conf, es_admin_t *adm, const char *agg, char **dlqs,
                         size_t ndlq)
{
    es_topic_spec_t *specs = es_calloc(ES_ARRAY_SIZE(kinds) + ndlq, sizeof(*specs));
    char errstr[ERRSTR_MAX];
    size_t n = 0;

    if (!specs)
        return CLI_EXIT_FAILURE;
    for (size_t k = 0; k < ES_ARRAY_SIZE(kinds); k++, n++) {
        char name[TOPIC_NAME_MAX];
        es_topic_name(agg, kinds[k], NULL, name, sizeof(name));
        es_topic_spec_for(conf, kinds[k], name, &specs[n]);
    }
    for (size_t d = 0; d < ndlq; d++, n++) {
        char name[TOPIC_NAME_MAX];
        es_topic_name(agg, ES_TOPIC_DLQ, dlqs[d], name, sizeof(name));
        es_topic_spec_for(conf, ES_TOPIC_DLQ, name, &specs[n]);
    }
    es_err_t err = es_admin_create_topics(adm, specs, n, ADMIN_TIMEOUT_MS, errstr, sizeof(errstr));
    if (err)
        fprintf(stderr, "escqrs topics create: %s\n", errstr);
    else
        for (size_t i = 0; i < n; i++)
            printf("%s ready (partitions=%d)\n", specs[i].name, specs[i].partitions);
    free(specs);
    return err ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

int cli_topics(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dlq", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'}, {0}};
    char *dlqs[MAX_DLQ];
    size_t ndlq = 0;
    int c;
    char errstr[ERRSTR_MAX];

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (ndlq == ES_ARRAY_SIZE(dlqs)) {
                fprintf(stderr, "escqrs topics: at most %d --dlq\n", MAX_DLQ);
                return CLI_EXIT_USAGE;
            }
            dlqs[ndlq++] = optarg;
            break;
        case 'h':
            topics_usage(stdout);
            return CLI_EXIT_OK;
        default:
            topics_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 2 ||
        (strcmp(argv[optind], "create") && strcmp(argv[optind], "describe"))) {
        topics_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    es_admin_t *adm = es_admin_new(conf, errstr, sizeof(errstr));
    if (!adm) {
        fprintf(stderr, "escqrs topics: %s\n", errstr);
        return CLI_EXIT_FAILURE;
    }
    /* <aggregate.prefix><aggregate>, as every daemon names the topics */
    char agg[TOPIC_NAME_MAX];
    const char *prefix = es_conf_get(conf, "aggregate.prefix");
    snprintf(agg, sizeof(agg), "%s%s", prefix ? prefix : "", argv[optind + 1]);
    int rc = !strcmp(argv[optind], "create") ? topics_create(conf, adm, agg, dlqs, ndlq)
                                             : topics_describe(adm, agg);
    es_admin_destroy(adm);
    return rc;
}
