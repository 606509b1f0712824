/*
 * export.c — `escqrs export` and `escqrs tail`: a topic as JSON lines or CSV.
 *
 * What an analyst pipes into their tools: every record of a topic decoded
 * through the schema registry with its own writer schema (so nothing is lost
 * to an older reader schema), with its partition, offset, timestamp, key and
 * headers.  `export` reads every partition from a start position (offset or
 * time) to the end of what is committed and stops; `tail` keeps following.
 * Reads are read_committed: events of aborted transactions never appear.
 * A record that does not decode is still written, with an "error" field in
 * place of its value, and counted on stderr: an export never silently skips.
 */
#include "cli.h"
#include "escqrs/envelope.h"
#include "escqrs/kafka.h"
#include "escqrs/log.h"
#include "escqrs/serde.h"
#include "escqrs/util.h"

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT_TIMEOUT_MS 10000 /* metadata and offsets-for-times requests */
#define EXPORT_POLL_MS    500   /* one poll; a signal is noticed within it */
#define DECODE_ERR_MAX    512   /* why a record did not decode, in its "error" field */
#define EVENT_TYPE_MAX    128   /* the event-type header in a CSV row */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void export_usage(FILE *fp, const char *cmd)
{
    fprintf(fp,
            "usage: escqrs %s --topic TOPIC [--from-offset N | --from-time TIME]\n"
            "                     [--format jsonl|csv] [--output FILE]\n\n"
            "Decodes every record of TOPIC through the schema registry (registry.url) with\n"
            "its own writer schema and writes one line per record: topic, partition, offset,\n"
            "timestamp (ms), key, headers, schema_id and the value as Avro JSON.\n"
            "%s\n\n"
            "--from-offset N   start every partition at offset N (default: the beginning)\n"
            "--from-time TIME  start at the first record at or after TIME: milliseconds since\n"
            "                  the epoch, or RFC 3339 as 2026-11-22T10:00:00Z or\n"
            "                  2026-11-22T11:00:00.250+01:00\n"
            "--format          jsonl (default) or csv (value as a JSON column)\n"
            "--output FILE     write to FILE instead of standard output\n"
            "Exit codes: 0 done, 1 failure, 2 usage or configuration error.\n",
            cmd,
            !strcmp(cmd, "tail") ? "tail follows the topic until interrupted (Ctrl-C)."
                                 : "export stops at the end of what is committed.");
}

static void csv_field(FILE *out, const char *s, bool last)
{
    fputc('"', out);
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
    fputc(last ? '\n' : ',', out);
}

static json_t *headers_json(const rd_kafka_message_t *m)
{
    json_t *h = json_object();
    rd_kafka_headers_t *hdrs = NULL;
    const char *name;
    const void *val;
    size_t len;
    if (rd_kafka_message_headers(m, &hdrs))
        return h;
    for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &len); i++)
        json_object_set_new(h, name, json_stringn(val ? val : "", val ? len : 0));
    return h;
}

/* One record to @p out; returns false when its value did not decode. */
static bool write_record(FILE *out, bool csv, es_serde_t *serde, const rd_kafka_message_t *m)
{
    char errstr[DECODE_ERR_MAX];
    avro_value_t *value = NULL;
    int schema_id = -1;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    es_err_t err = es_serde_decode(serde, m->payload, m->len, &value, errstr, sizeof(errstr));
    char *value_json = NULL;
    json_t *value_obj = NULL;

    es_wire_schema_id(m->payload, m->len, &schema_id);
    if (!err && avro_value_to_json(value, 1, &value_json)) {
        snprintf(errstr, sizeof(errstr), "to JSON: %s", avro_strerror());
        err = ES_ERR_DECODE;
    }
    if (!err)
        value_obj = json_loads(value_json, JSON_DECODE_ANY, NULL);
    json_t *rec =
        json_pack("{s:s, s:i, s:I, s:I, s:s%, s:o, s:i}", "topic", rd_kafka_topic_name(m->rkt),
                  "partition", (int)m->partition, "offset", (json_int_t)m->offset, "timestamp",
                  (json_int_t)ts, "key", m->key ? (const char *)m->key : "",
                  m->key ? m->key_len : 0, "headers", headers_json(m), "schema_id", schema_id);
    if (value_obj)
        json_object_set_new(rec, "value", value_obj);
    else
        json_object_set_new(rec, "error",
                            json_pack("{s:s, s:s}", "code", es_err2name(err ? err : ES_ERR_DECODE),
                                      "message", err ? errstr : "value is not JSON"));
    if (csv) {
        char part[16], off[24], tsbuf[24], sid[16];
        char et[EVENT_TYPE_MAX] = "";
        char *hv = json_dumps(json_object_get(rec, value_obj ? "value" : "error"),
                              JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(part, sizeof(part), "%d", (int)m->partition);
        snprintf(off, sizeof(off), "%lld", (long long)m->offset);
        snprintf(tsbuf, sizeof(tsbuf), "%lld", (long long)ts);
        snprintf(sid, sizeof(sid), "%d", schema_id);
        es_header_get(m, "event-type", et, sizeof(et));
        csv_field(out, rd_kafka_topic_name(m->rkt), false);
        csv_field(out, part, false);
        csv_field(out, off, false);
        csv_field(out, tsbuf, false);
        csv_field(out, json_string_value(json_object_get(rec, "key")), false);
        csv_field(out, et, false);
        csv_field(out, sid, false);
        csv_field(out, value_obj ? "" : "error", false);
        csv_field(out, hv, true);
        free(hv);
    } else {
        json_dumpf(rec, out, JSON_COMPACT);
        fputc('\n', out);
    }
    json_decref(rec);
    free(value_json);
    return value_obj != NULL;
}

typedef struct {
    const char *cmd; /* "export" or "tail" */
    const char *topic, *output;
    int64_t from_offset, from_time; /* from_time < 0: start at from_offset */
    bool csv, follow;
} export_opts_t;

/* The options into @p o; -1 to go on, else the exit code (usage or help printed). */
static int export_parse(int argc, char **argv, export_opts_t *o)
{
    static const struct option longopts[] = {{"topic", required_argument, NULL, 't'},
                                             {"from-offset", required_argument, NULL, 'o'},
                                             {"from-time", required_argument, NULL, 'T'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"output", required_argument, NULL, 'O'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->topic = optarg;
            break;
        case 'o':
            if (!es_parse_i64(optarg, 0, INT64_MAX, &o->from_offset)) {
                fprintf(stderr, "escqrs %s: --from-offset takes an offset >= 0\n", o->cmd);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'T':
            if (!es_parse_time_ms(optarg, &o->from_time)) {
                fprintf(stderr,
                        "escqrs %s: --from-time takes milliseconds or an RFC 3339 time "
                        "(YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)), not %s\n",
                        o->cmd, optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'f':
            if (strcmp(optarg, "jsonl") && strcmp(optarg, "csv")) {
                fprintf(stderr, "escqrs %s: --format is jsonl or csv\n", o->cmd);
                return CLI_EXIT_USAGE;
            }
            o->csv = !strcmp(optarg, "csv");
            break;
        case 'O':
            o->output = optarg;
            break;
        case 'h':
            export_usage(stdout, o->cmd);
            return CLI_EXIT_OK;
        default:
            export_usage(stderr, o->cmd);
            return CLI_EXIT_USAGE;
        }
    }
    if (!o->topic || optind != argc) {
        export_usage(stderr, o->cmd);
        return CLI_EXIT_USAGE;
    }
    return -1;
}

/* Assign every partition of the topic, from the start offset or time; *nparts says how many. */
static es_err_t export_assign(es_conf_t *conf, es_consumer_t *cons, const export_opts_t *o,
                              int *nparts, char *errstr, size_t errstr_size)
{
    es_admin_t *adm = es_admin_new(conf, errstr, errstr_size);
    es_err_t err = adm ? es_admin_topic_partitions(adm, o->topic, EXPORT_TIMEOUT_MS, nparts, errstr,
                                                   errstr_size)
                       : ES_ERR_KAFKA;
    es_admin_destroy(adm);
    if (err)
        return err;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(*nparts);
    for (int p = 0; p < *nparts; p++)
        rd_kafka_topic_partition_list_add(parts, o->topic, p)->offset =
            o->from_time >= 0 ? o->from_time : o->from_offset;
    if (o->from_time >= 0) {
        rd_kafka_resp_err_t kerr =
            rd_kafka_offsets_for_times(es_consumer_rk(cons), parts, EXPORT_TIMEOUT_MS);
        if (kerr) {
            snprintf(errstr, errstr_size, "offsets for time: %s", rd_kafka_err2str(kerr));
            err = ES_ERR_KAFKA;
            goto out;
        }
        for (int i = 0; i < parts->cnt; i++) /* -1: no record that late: start at the end */
            if (parts->elems[i].offset < 0)
                parts->elems[i].offset = RD_KAFKA_OFFSET_END;
    }
    if (rd_kafka_assign(es_consumer_rk(cons), parts)) {
        snprintf(errstr, errstr_size, "cannot assign the partitions of %s", o->topic);
        err = ES_ERR_KAFKA;
    }
out:
    rd_kafka_topic_partition_list_destroy(parts);
    return err;
}

/*
 * Write records until every partition is at its end (export) or a signal
 * (tail), then the count on stderr.  A topic or partition that does not
 * exist stops it: ES_ERR_KAFKA with the reason in @p errstr.
 */
static es_err_t export_copy(es_consumer_t *cons, es_serde_t *serde, FILE *out,
                            const export_opts_t *o, int nparts, char *errstr, size_t errstr_size)
{
    long records = 0, undecodable = 0;
    int at_eof = 0;
    if (o->csv)
        fprintf(out, "topic,partition,offset,timestamp,key,event_type,schema_id,status,value\n");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stop_requested && (o->follow || at_eof < nparts)) {
        rd_kafka_message_t *m = es_consumer_poll(cons, EXPORT_POLL_MS);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            at_eof++;
        } else if (m->err) {
            bool gone = m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
            if (gone) { /* export_run prints it */
                snprintf(errstr, errstr_size, "%s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                return ES_ERR_KAFKA;
            }
            fprintf(stderr, "escqrs %s: %s\n", o->cmd, rd_kafka_message_errstr(m));
        } else {
            records++;
            undecodable += !write_record(out, o->csv, serde, m);
            if (o->follow)
                fflush(out);
        }
        rd_kafka_message_destroy(m);
    }
    fflush(out);
    fprintf(stderr, "escqrs %s: %ld records from %s%s", o->cmd, records, o->topic,
            undecodable ? "" : "\n");
    if (undecodable)
        fprintf(stderr, ", %ld did not decode (see their \"error\" field)\n", undecodable);
    return ES_ERR_OK;
}

static int export_run(es_conf_t *conf, int argc, char **argv, bool follow)
{
    export_opts_t o = {.cmd = follow ? "tail" : "export",
                       .from_offset = RD_KAFKA_OFFSET_BEGINNING,
                       .from_time = -1,
                       .follow = follow};
    char errstr[CLI_ERRSTR_MAX];
    int nparts = 0, rc = export_parse(argc, argv, &o);
    es_registry_t *reg = NULL;
    es_serde_t *serde = NULL;
    es_consumer_t *cons = NULL;
    FILE *out = stdout;

    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_FAILURE;
    /* The end of the committed data shows as a partition EOF (read_committed):
     * kafka.enable.partition.eof defaults to true for the CLI's consumers. */
    reg = es_registry_from_conf(conf, CLI_REGISTRY_RETRIES, errstr, sizeof(errstr));
    if (!reg || !(serde = es_serde_new(reg, o.topic, NULL, false, 0, errstr, sizeof(errstr))))
        goto out;
    if (!(cons = es_consumer_new(conf, NULL, errstr, sizeof(errstr))))
        goto out;
    if (export_assign(conf, cons, &o, &nparts, errstr, sizeof(errstr)))
        goto out;
    if (o.output && !(out = fopen(o.output, "w"))) {
        snprintf(errstr, sizeof(errstr), "--output %s: cannot open for writing", o.output);
        out = stdout;
        goto out;
    }
    if (export_copy(cons, serde, out, &o, nparts, errstr, sizeof(errstr)) == ES_ERR_OK)
        rc = CLI_EXIT_OK;
out:
    if (rc != CLI_EXIT_OK)
        fprintf(stderr, "escqrs %s: %s\n", o.cmd, errstr);
    if (out != stdout)
        fclose(out);
    es_consumer_destroy(cons);
    es_serde_destroy(serde);
    es_registry_destroy(reg);
    return rc;
}

int cli_export(es_conf_t *conf, int argc, char **argv)
{
    return export_run(conf, argc, argv, false);
}

int cli_tail(es_conf_t *conf, int argc, char **argv)
{
    return export_run(conf, argc, argv, true);
}
