/*
 * history.c — `escqrs history <aggregate> <id>`: one aggregate's events in
 * version order, or with --commands the audit of its commands, from the
 * projector's query listener (GET /v1/<collection>/{id}/events|commands,
 * docs/projector.md).  Pages are followed to the end (or to --limit
 * entries); the output is a table or JSON lines, one entry per line.
 */
#include "cli.h"
#include "escqrs/command.h"
#include "escqrs/http_client.h"
#include "escqrs/log.h"
#include "escqrs/modules.h"
#include "escqrs/util.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HISTORY_TIMEOUT_MS 30000               /* one page */
#define PAGE_SIZE          1000                /* the projector's largest page */
#define ID_ESCAPED_MAX     (3 * ES_ID_MAX + 1) /* an aggregate id, percent-encoded */
#define HISTORY_URL_MAX    2048                /* a page request: base URL, collection, id, query */

typedef struct page_spec_s {
    const char *resource; /* "events" or "commands" */
    const char *from;     /* its cursor parameter */
    const char *next;     /* the answer's next cursor */
    const char *items;
    const char *header;
    void (*row)(json_t *e);
} page_spec_t;

static const char *str_or_dash(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : "-";
}

static void time_text(json_t *ms, char *out, size_t outsz)
{
    if (!json_is_integer(ms)) {
        snprintf(out, outsz, "-");
        return;
    }
    es_format_utc_ms((int64_t)json_integer_value(ms), false, out, outsz);
}

static const char *principal_text(json_t *e)
{
    return str_or_dash(json_object_get(e, "principal"), "subject");
}

static void event_row(json_t *e)
{
    char at[40];
    time_text(json_object_get(e, "occurred_at"), at, sizeof(at));
    printf("%-7" JSON_INTEGER_FORMAT " %-22s %-24s %-36s %-16s %-32s %s\n",
           json_integer_value(json_object_get(e, "version")), str_or_dash(e, "type"), at,
           str_or_dash(e, "command_id"), principal_text(e), str_or_dash(e, "trace_id"),
           str_or_dash(e, "position"));
}

static void command_row(json_t *e)
{
    char at[40];
    time_text(json_object_get(e, "processed_at"), at, sizeof(at));
    printf("%-5" JSON_INTEGER_FORMAT " %-22s %-16s %-20s %-7" JSON_INTEGER_FORMAT
           " %-24s %-16s %-32s %s\n",
           json_integer_value(json_object_get(e, "seq")), str_or_dash(e, "status"),
           str_or_dash(e, "command_type"), str_or_dash(e, "reason"),
           json_integer_value(json_object_get(e, "version")), at, principal_text(e),
           str_or_dash(e, "trace_id"), str_or_dash(e, "command_id"));
}

static const page_spec_t events_spec = {
    "events",
    "from_version",
    "next_from_version",
    "events",
    "VERSION TYPE                   OCCURRED_AT              COMMAND_ID                           "
    "PRINCIPAL        TRACE_ID                         POSITION",
    event_row};
static const page_spec_t commands_spec = {
    "commands",
    "from_seq",
    "next_from_seq",
    "commands",
    "SEQ   STATUS                 COMMAND          REASON               VERSION "
    "PROCESSED_AT             PRINCIPAL        TRACE_ID                         COMMAND_ID",
    command_row};

static int usage(FILE *fp, int rc)
{
    fprintf(fp, "usage: escqrs history <aggregate> <id> [--commands] [--format table|jsonl]\n"
                "                      [--from N] [--limit N]\n\n"
                "One aggregate's events in version order (type, version, command, principal,\n"
                "trace id, position), or with --commands the audit of every command sent to it\n"
                "(accepted, rejected, conflicts) in the order they were decided, from the\n"
                "projector at projector.url.\n\n"
                "--commands  the command audit instead of the events\n"
                "--format    table (default) or jsonl: one JSON object per entry\n"
                "--from      the first version (or audit seq) to print, default 1\n"
                "--limit     at most this many entries (default: all)\n");
    return rc;
}

/* One page into @p out; the HTTP status, 0 when the request failed. */
static long fetch_page(es_conf_t *conf, const char *url, json_t **out, char *errstr,
                       size_t errstr_size)
{
    es_http_client_opts_t opts;
    es_buf_t resp = {0};
    long status = 0;
    cli_http_opts(conf, &opts);
    *out = NULL;
    if (es_http_fetch_opts("GET", url, "application/json", NULL, NULL, HISTORY_TIMEOUT_MS, &opts,
                           &status, &resp, errstr, errstr_size) == ES_ERR_OK) {
        *out = json_loadb(resp.data, resp.len, 0, NULL);
        if (!*out)
            snprintf(errstr, errstr_size, "GET %.400s: HTTP %ld, not JSON", url, status);
    } else {
        status = 0;
    }
    es_buf_free(&resp);
    return status;
}

static int print_pages(es_conf_t *conf, const char *collection, const char *id,
                       const page_spec_t *spec, bool jsonl, long long from, long long limit)
{
    char eid[ID_ESCAPED_MAX], url[HISTORY_URL_MAX], errstr[CLI_ERRSTR_MAX];
    long long printed = 0;
    if (strlen(id) > ES_ID_MAX || !cli_url_escape(id, eid, sizeof(eid))) {
        fprintf(stderr, "escqrs history: an aggregate id has at most %d bytes\n", ES_ID_MAX);
        return CLI_EXIT_USAGE;
    }
    if (!jsonl)
        printf("%s\n", spec->header);
    while (from > 0 && (limit < 0 || printed < limit)) {
        long long want = limit < 0 || limit - printed > PAGE_SIZE ? PAGE_SIZE : limit - printed;
        snprintf(url, sizeof(url), "%s/v1/%s/%s/%s?%s=%lld&limit=%lld",
                 es_conf_get(conf, "projector.url"), collection, eid, spec->resource, spec->from,
                 from, want);
        json_t *page = NULL;
        long st = fetch_page(conf, url, &page, errstr, sizeof(errstr));
        if (st != 200) {
            if (st)
                fprintf(stderr, "escqrs history: GET %s: HTTP %ld: %s\n", url, st,
                        page ? str_or_dash(page, "message") : errstr);
            else
                fprintf(stderr, "escqrs history: %s\n", errstr);
            json_decref(page);
            return CLI_EXIT_FAILURE;
        }
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(page, spec->items), i, e)
        {
            if (jsonl) {
                json_dumpf(e, stdout, JSON_COMPACT);
                putchar('\n');
            } else {
                spec->row(e);
            }
            printed++;
        }
        json_t *next = json_object_get(page, spec->next);
        from = json_is_integer(next) ? json_integer_value(next) : 0;
        json_decref(page);
    }
    return CLI_EXIT_OK;
}

int cli_history(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"commands", no_argument, NULL, 'c'},   {"format", required_argument, NULL, 'f'},
        {"from", required_argument, NULL, 'F'}, {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    bool commands = false, jsonl = false;
    int64_t from = 1, limit = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            commands = true;
            break;
        case 'f':
            if (strcmp(optarg, "table") && strcmp(optarg, "jsonl"))
                return usage(stderr, CLI_EXIT_USAGE);
            jsonl = !strcmp(optarg, "jsonl");
            break;
        case 'F':
            if (!es_parse_i64(optarg, 1, INT64_MAX, &from))
                return usage(stderr, CLI_EXIT_USAGE);
            break;
        case 'l':
            if (!es_parse_i64(optarg, 1, INT64_MAX, &limit))
                return usage(stderr, CLI_EXIT_USAGE);
            break;
        case 'h':
            return usage(stdout, CLI_EXIT_OK);
        default:
            return usage(stderr, CLI_EXIT_USAGE);
        }
    }
    if (argc - optind != 2)
        return usage(stderr, CLI_EXIT_USAGE);
    if (!cli_modules_load(conf))
        return CLI_EXIT_USAGE;
    const es_aggregate_def_t *agg = es_modules_aggregate(argv[optind]);
    if (!agg || !agg->collection) {
        fprintf(stderr, "escqrs history: no aggregate named %s in the loaded modules\n",
                argv[optind]);
        return CLI_EXIT_USAGE;
    }
    return print_pages(conf, agg->collection, argv[optind + 1],
                       commands ? &commands_spec : &events_spec, jsonl, from, limit);
}
