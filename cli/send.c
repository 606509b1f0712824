/*
 * send.c — `escqrs send`: one command through the gateway's HTTP API.
 *
 *   escqrs send AGGREGATE ID VERB [--field NAME=VALUE]... [--json BODY|-]
 *                                 [--idempotency-key KEY] [--if-match VERSION]
 *
 * AGGREGATE is any aggregate of the loaded domain modules (`modules`).
 * The body comes from --field flags, typed by the aggregate's command table
 * (the same es_command_def_t the gateway validates with, so a typo in a field
 * name is caught here with the list of valid ones), or verbatim from --json
 * (`-` reads stdin).  The gateway's answer is printed as one JSON line on
 * stdout, so scripts can pipe it into jq.  Exit codes: 0 accepted, 1 no
 * answer or a 5xx (for 503/504 retry with the same --idempotency-key), 2 usage
 * or configuration error, 3 the command was refused (any 4xx: invalid,
 * rejected by a rule, version conflict).
 */
#include "cli.h"
#include "escqrs/command.h"
#include "escqrs/http_client.h"
#include "escqrs/modules.h"
#include "escqrs/util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEND_TIMEOUT_MS  30000 /* --timeout-ms default: longer than the gateway's own wait (5 s) */
#define KEY_HEADER_MAX   256   /* "Idempotency-Key: " and the key */
#define MATCH_HEADER_MAX 128   /* "If-Match: " and a version */
#define STDIN_CHUNK      4096

#define SEND_USAGE                                                                                 \
    "usage: escqrs send AGGREGATE ID VERB [--field NAME=VALUE]... [--json BODY|-]\n"               \
    "                   [--idempotency-key KEY] [--if-match VERSION] [--timeout-ms N]\n"

static void send_help(FILE *fp)
{
    fprintf(fp, SEND_USAGE
            "\n"
            "Send one command to the gateway at gateway.url and print its answer as one\n"
            "JSON line. AGGREGATE is one of the loaded modules' aggregates (key\n"
            "modules); VERB and fields per aggregate:\n");
    for (size_t a = 0; a < es_modules_aggregate_count(); a++) {
        const es_aggregate_def_t *def = es_modules_aggregate_at(a);
        for (size_t i = 0; i < def->ncommands; i++) {
            fprintf(fp, "  %-8s %-12s", def->name, def->commands[i].verb);
            for (const es_field_def_t *f = def->commands[i].fields; f->name; f++)
                fprintf(fp, " %s=%s", f->name, f->kind == ES_FIELD_INT ? "INT" : "TEXT");
            fputc('\n', fp);
        }
    }
    const es_aggregate_def_t *ex = es_modules_aggregate_at(0); /* the example: its first verb */
    if (ex && ex->ncommands) {
        fprintf(fp, "\nExample: escqrs send %s %s-1 %s", ex->name, ex->name, ex->commands[0].verb);
        for (const es_field_def_t *f = ex->commands[0].fields; f->name; f++)
            fprintf(fp, " --field %s=%s", f->name, f->kind == ES_FIELD_INT ? "1" : "x");
        fprintf(fp, " --idempotency-key demo-1\n");
    }
    fprintf(fp, "Exit codes: 0 accepted, 1 no answer or 5xx (retry with the same\n"
                "--idempotency-key), 2 usage or configuration error, 3 refused (4xx).\n");
}

/* Adds NAME=VALUE to @p body, typed by the command's field table. */
static bool add_field(json_t *body, const es_command_def_t *cmd, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "escqrs send: --field wants NAME=VALUE, got '%s'\n", arg);
        return false;
    }
    size_t namelen = (size_t)(eq - arg);
    for (const es_field_def_t *f = cmd->fields; f->name; f++) {
        if (strlen(f->name) != namelen || strncmp(f->name, arg, namelen))
            continue;
        if (f->kind == ES_FIELD_STRING)
            return json_object_set_new(body, f->name, json_string(eq + 1)) == 0;
        int64_t v;
        if (!es_parse_i64(eq + 1, INT64_MIN, INT64_MAX, &v)) {
            fprintf(stderr, "escqrs send: field %s wants an integer, got '%s'\n", f->name, eq + 1);
            return false;
        }
        return json_object_set_new(body, f->name, json_integer(v)) == 0;
    }
    fprintf(stderr, "escqrs send: %s has no field '%.*s'; its fields:", cmd->verb, (int)namelen,
            arg);
    for (const es_field_def_t *f = cmd->fields; f->name; f++)
        fprintf(stderr, " %s", f->name);
    fputc('\n', stderr);
    return false;
}

static char *read_stdin(void)
{
    es_buf_t buf = {0};
    char chunk[STDIN_CHUNK];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        es_buf_append(&buf, chunk, n);
    es_buf_append(&buf, "", 1);
    return (char *)buf.data;
}

typedef struct {
    const char *json_arg, *key, *if_match; /* --json, --idempotency-key, --if-match */
    int timeout_ms;
    json_t *fields; /* the --field arguments, in order */
    const char *agg, *id, *verb;
} send_opts_t;

/* The options into @p o; -1 to go on, else the exit code (usage or help printed). */
static int send_parse(int argc, char **argv, send_opts_t *o)
{
    static const struct option longopts[] = {{"field", required_argument, NULL, 'f'},
                                             {"json", required_argument, NULL, 'j'},
                                             {"idempotency-key", required_argument, NULL, 'k'},
                                             {"if-match", required_argument, NULL, 'm'},
                                             {"timeout-ms", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:j:k:m:t:h", longopts, NULL)) != -1) {
        int64_t ms;
        switch (c) {
        case 'f':
            json_array_append_new(o->fields, json_string(optarg));
            break;
        case 'j':
            o->json_arg = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'm':
            o->if_match = optarg;
            break;
        case 't':
            if (!es_parse_i64(optarg, 1, INT32_MAX, &ms)) {
                fprintf(stderr, "escqrs send: --timeout-ms takes milliseconds >= 1, got '%s'\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            o->timeout_ms = (int)ms;
            break;
        case 'h':
            send_help(stdout);
            return CLI_EXIT_OK;
        default:
            fputs(SEND_USAGE, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 3 || (o->json_arg && json_array_size(o->fields)) || o->timeout_ms <= 0) {
        fputs(SEND_USAGE "(--json and --field exclude each other)\n", stderr);
        return CLI_EXIT_USAGE;
    }
    o->agg = argv[optind];
    o->id = argv[optind + 1];
    o->verb = argv[optind + 2];
    return -1;
}

/* The request body: --json verbatim (or stdin), else the typed --field values; NULL when bad. */
static char *send_body(const send_opts_t *o, const es_command_def_t *cmd)
{
    if (o->json_arg)
        return !strcmp(o->json_arg, "-") ? read_stdin() : strdup(o->json_arg);
    json_t *obj = json_object();
    size_t i;
    json_t *f;
    bool ok = true;
    json_array_foreach(o->fields, i, f) ok = ok && add_field(obj, cmd, json_string_value(f));
    char *body = ok ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return body;
}

/* POST @p body to the gateway and print its answer; the exit code. */
static int send_post(es_conf_t *conf, const es_aggregate_def_t *def, const send_opts_t *o,
                     const char *body)
{
    char url[CLI_URL_MAX], keyhdr[KEY_HEADER_MAX], matchhdr[MATCH_HEADER_MAX],
        errstr[CLI_ERRSTR_MAX];
    const char *headers[3] = {NULL};
    size_t nh = 0;
    int rc;
    if (o->key) {
        snprintf(keyhdr, sizeof(keyhdr), "Idempotency-Key: %s", o->key);
        headers[nh++] = keyhdr;
    }
    if (o->if_match) {
        snprintf(matchhdr, sizeof(matchhdr), "If-Match: %s", o->if_match);
        headers[nh++] = matchhdr;
    }
    snprintf(url, sizeof(url), "%s/v1/%s/%s/%s", es_conf_get(conf, "gateway.url"), def->collection,
             o->id, o->verb);
    long status = 0;
    es_buf_t resp = {0};
    es_http_client_opts_t opts;
    cli_http_opts(conf, &opts);
    if (es_http_fetch_opts("POST", url, "application/json", headers, body, o->timeout_ms, &opts,
                           &status, &resp, errstr, sizeof(errstr))) {
        fprintf(stderr, "escqrs send: %s\n", errstr);
        rc = CLI_EXIT_FAILURE;
    } else {
        fwrite(resp.data, 1, resp.len, stdout);
        if (resp.len && resp.data[resp.len - 1] != '\n')
            fputc('\n', stdout);
        rc = status == 200                   ? CLI_EXIT_OK
             : status >= 400 && status < 500 ? CLI_EXIT_REFUSED
                                             : CLI_EXIT_FAILURE;
        if (status == 503 || status == 504)
            fprintf(stderr,
                    "escqrs send: HTTP %ld: outcome unknown, retry with the same "
                    "--idempotency-key\n",
                    status);
    }
    es_buf_free(&resp);
    return rc;
}

int cli_send(es_conf_t *conf, int argc, char **argv)
{
    send_opts_t o = {.timeout_ms = SEND_TIMEOUT_MS, .fields = json_array()};
    char *body = NULL;
    int rc = cli_modules_load(conf) ? send_parse(argc, argv, &o) : CLI_EXIT_USAGE;
    if (rc >= 0)
        goto out;
    rc = CLI_EXIT_USAGE;
    const es_aggregate_def_t *def = es_modules_aggregate(o.agg);
    const es_command_def_t *cmd = def ? es_command_find(def, o.verb) : NULL;
    if (!cmd) {
        fprintf(stderr, "escqrs send: no command '%s %s' (see escqrs send --help)\n", o.agg,
                o.verb);
        goto out;
    }
    if ((body = send_body(&o, cmd)))
        rc = send_post(conf, def, &o, body);
out:
    json_decref(o.fields);
    free(body);
    return rc;
}
