/*
 * main.c — the escqrs command line tool: dispatch to subcommands.  Only
 * that: what subcommands share is in common.c, so no subcommand calls back
 * into this file.
 *
 * Global options (--config, --set, --list-config) are taken out of argv by
 * the configuration system before dispatch, so they may stand anywhere.
 * Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 the
 * gateway refused the command (send only).
 */
#include "cli.h"
#include "escqrs/kafka.h"
#include "escqrs/registry.h"
#include "escqrs/log.h"
#include "escqrs/modules.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <string.h>

/* "token=" and a bearer token: a JWT of up to 8 KiB (the usual header limit) */
#define TOKEN_SET_MAX 8300

extern char **environ;

static const es_conf_def_t cli_conf_defs[] = {
    {.name = "kafka.enable.partition.eof",
     .type = ES_CONF_STRING,
     .defval = "true",
     .desc = "export stops at the end of the committed data, which shows as partition EOF",
     .role = ES_CONF_ROLE_CONSUMER},
    {.name = "gateway.url",
     .type = ES_CONF_STRING,
     .defval = "http://127.0.0.1:8080",
     .desc = "Base URL of the gateway that send posts commands to"},
    {.name = "projector.admin.url",
     .type = ES_CONF_STRING,
     .defval = "http://127.0.0.1:8091",
     .desc = "Base URL of the projector's admin listener (status, rebuild, freeze, clone)"},
    {.name = "projector.url",
     .type = ES_CONF_STRING,
     .defval = "http://127.0.0.1:8090",
     .desc = "Base URL of the projector's query listener (history)"},
    {.name = "token",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Bearer token sent to the gateway and the projector (--token, ESCQRS_TOKEN, or "
             "ESCQRS_TOKEN_FILE)"},
    {.name = "tls.ca.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "CA bundle to check the gateway's and projector's TLS certificates with"},
    {.name = NULL},
};

static const es_conf_def_t *const cli_tables[] = {es_conf_common_defs,   es_kafka_conf_defs,
                                                  es_registry_conf_defs, es_modules_conf_defs,
                                                  cli_conf_defs,         NULL};

static const struct {
    const char *name;
    int (*run)(es_conf_t *conf, int argc, char **argv);
    const char *summary;
} subcommands[] = {
    {"topics", cli_topics, "create or describe an aggregate's topics"},
    {"schemas", cli_schemas, "check schemas against the registry, or register them"},
    {"send", cli_send, "send one command through the gateway"},
    {"export", cli_export, "write a topic's records as JSON lines or CSV, then stop"},
    {"tail", cli_tail, "follow a topic's records as JSON lines or CSV"},
    {"status", cli_status, "each projection's position, lag and state"},
    {"rebuild", cli_rebuild, "rebuild a projection from offset 0, with progress"},
    {"freeze", cli_freeze, "build a read-only view of a projection as of a time"},
    {"auth", cli_auth, "development signing keys and tokens (keygen, token)"},
    {"modules", cli_modules, "the domain modules the configuration loads, and what they bring"},
    {"history", cli_history, "one aggregate's events, or the audit of its commands, in order"},
    {"clone", cli_clone, "a new projector replica's store from a peer's checkpoint"},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: escqrs [--config FILE] [--set key=value]... [--token JWT] <command> "
                "[args]\n"
                "       escqrs --list-config[=markdown]\n\ncommands:\n");
    for (size_t i = 0; i < ES_ARRAY_SIZE(subcommands); i++)
        fprintf(fp, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(fp, "\nRun 'escqrs <command> --help' for a command's options.\n"
                "Exit codes: 0 success, 1 failure, 2 usage or configuration error,\n"
                "3 the command was refused (send).\n");
}

int main(int argc, char **argv)
{
    /* --token JWT is --set token=JWT (before the subcommand) */
    static char tokenset[TOKEN_SET_MAX];
    for (int i = 1; i + 1 < argc && argv[i][0] == '-'; i++)
        if (!strcmp(argv[i], "--token")) {
            snprintf(tokenset, sizeof(tokenset), "token=%s", argv[i + 1]);
            argv[i] = "--set";
            argv[i + 1] = tokenset;
            break;
        }
    es_conf_t *conf = es_conf_load_or_exit("escqrs", cli_tables, &argc, argv, environ);
    int rc = CLI_EXIT_USAGE;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        rc = argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        goto out;
    }
    for (size_t i = 0; i < ES_ARRAY_SIZE(subcommands); i++) {
        if (!strcmp(argv[1], subcommands[i].name)) {
            rc = subcommands[i].run(conf, argc - 1, argv + 1);
            goto out;
        }
    }
    fprintf(stderr, "escqrs: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
out:
    es_conf_destroy(conf);
    return rc;
}
