/*
 * command.c — HTTP bodies to command payloads, outcomes to HTTP answers.
 *
 * Validation is table-driven (the es_command_def_t of each aggregate) and
 * strict: the body must be a JSON object with exactly the declared fields,
 * of the declared JSON types and within bounds, so everything that reaches
 * Kafka is a command the contract allows.  The Avro type of each field is
 * taken from the schema (int or long), never assumed.  The mapping of
 * outcomes to status codes lives here and nowhere else.
 */
#include "escqrs/command.h"
#include "escqrs/contract.h"
#include "escqrs/record.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const es_command_def_t *es_command_find(const es_aggregate_def_t *def, const char *verb)
{
    for (size_t i = 0; i < def->ncommands; i++)
        if (!strcmp(def->commands[i].verb, verb))
            return &def->commands[i];
    return NULL;
}

bool es_command_id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return false;
    for (; id[n]; n++)
        if ((unsigned char)id[n] < 0x21 || (unsigned char)id[n] > 0x7e)
            return false;
    return n >= 1 && n <= ES_ID_MAX;
}

static const es_field_def_t *field_find(const es_command_def_t *cmd, const char *name)
{
    for (size_t i = 0; i < ES_CMD_MAX_FIELDS && cmd->fields[i].name; i++)
        if (!strcmp(cmd->fields[i].name, name))
            return &cmd->fields[i];
    return NULL;
}

static es_err_t set_field(const es_field_def_t *fd, json_t *jv, avro_value_t *rec, char *msg,
                          size_t msgsz)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, fd->name, &f, NULL)) {
        snprintf(msg, msgsz, "field %s is not in the command schema", fd->name);
        return ES_ERR_INVALID_ARG;
    }
    if (fd->kind == ES_FIELD_STRING) {
        if (!json_is_string(jv)) {
            snprintf(msg, msgsz, "%s must be a string", fd->name);
            return ES_ERR_INVALID_ARG;
        }
        size_t len = json_string_length(jv);
        const char *s = json_string_value(jv);
        if (strlen(s) != len) {
            snprintf(msg, msgsz, "%s must not contain NUL characters", fd->name);
            return ES_ERR_INVALID_ARG;
        }
        if ((int64_t)len < fd->min || (int64_t)len > fd->max) {
            snprintf(msg, msgsz, "%s must be %" PRId64 " to %" PRId64 " bytes long", fd->name,
                     fd->min, fd->max);
            return ES_ERR_INVALID_ARG;
        }
        avro_value_set_string_len(&f, s, len + 1);
        return ES_ERR_OK;
    }
    if (!json_is_integer(jv)) {
        snprintf(msg, msgsz, "%s must be an integer", fd->name);
        return ES_ERR_INVALID_ARG;
    }
    json_int_t v = json_integer_value(jv);
    int64_t max = fd->max;
    if (avro_value_get_type(&f) == AVRO_INT32 && max > INT32_MAX)
        max = INT32_MAX;
    if (v < fd->min || v > max) {
        if (max == INT64_MAX)
            snprintf(msg, msgsz, "%s must be at least %" PRId64, fd->name, fd->min);
        else
            snprintf(msg, msgsz, "%s must be between %" PRId64 " and %" PRId64, fd->name, fd->min,
                     max);
        return ES_ERR_INVALID_ARG;
    }
    if (avro_value_get_type(&f) == AVRO_INT32)
        avro_value_set_int(&f, (int32_t)v);
    else
        avro_value_set_long(&f, (int64_t)v);
    return ES_ERR_OK;
}

es_err_t es_command_from_json(const es_command_def_t *cmd, const char *body, size_t len,
                              avro_value_t *payload, const char **code, char *msg, size_t msgsz)
{
    json_error_t jerr;
    json_t *j = NULL, *jv;
    const char *key;
    avro_value_t rec;
    es_err_t err = ES_ERR_INVALID_ARG;
    size_t b, nb;
    avro_schema_t u = avro_value_get_schema(payload);

    *code = "invalid_command";
    if (len == 0) {
        body = "{}";
        len = 2;
    }
    j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!j) {
        *code = "invalid_json";
        snprintf(msg, msgsz, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        goto out;
    }
    if (!json_is_object(j)) {
        snprintf(msg, msgsz, "the body must be a JSON object");
        goto out;
    }
    json_object_foreach(j, key, jv)
    {
        if (!field_find(cmd, key)) {
            snprintf(msg, msgsz, "unknown field %.64s for %s", key, cmd->verb);
            goto out;
        }
    }
    for (b = 0, nb = avro_schema_union_size(u); b < nb; b++)
        if (!strcmp(avro_schema_name(avro_schema_union_branch(u, (int)b)), cmd->type))
            break;
    if (b == nb) {
        snprintf(msg, msgsz, "command %s is not in the command schema", cmd->type);
        goto out;
    }
    avro_value_set_branch(payload, (int)b, &rec);
    for (size_t i = 0; i < ES_CMD_MAX_FIELDS && cmd->fields[i].name; i++) {
        const es_field_def_t *fd = &cmd->fields[i];
        jv = json_object_get(j, fd->name);
        if (!jv) {
            snprintf(msg, msgsz, "missing field %s", fd->name);
            goto out;
        }
        if (set_field(fd, jv, &rec, msg, msgsz))
            goto out;
    }
    err = ES_ERR_OK;
out:
    json_decref(j);
    return err;
}

static uint64_t hash_value(uint64_t h, avro_value_t *v)
{
    size_t sz = 0;
    if (avro_value_sizeof(v, &sz))
        return h;
    char *buf = es_malloc(sz ? sz : 1);
    avro_writer_t w = avro_writer_memory(buf, (int64_t)sz);
    if (!avro_value_write(w, v))
        h = es_fnv1a64(h, buf, sz);
    avro_writer_free(w);
    free(buf);
    return h;
}

uint64_t es_command_fingerprint(avro_value_t *command)
{
    uint64_t h = ES_FNV1A64_INIT;
    avro_value_t f;
    if (!avro_value_get_by_name(command, "payload", &f, NULL))
        h = hash_value(h, &f);
    h = es_fnv1a64(h, "|", 1);
    if (!avro_value_get_by_name(command, "expected_version", &f, NULL))
        h = hash_value(h, &f);
    return h ? h : 1;
}

es_precheck_t es_command_precheck(bool known, uint64_t known_fp, uint64_t fp, bool has_expected,
                                  int64_t expected, int64_t version)
{
    if (known) /* a known id is answered from memory, whatever the version is now */
        return known_fp == 0 || known_fp == fp ? ES_PRECHECK_REPLAY : ES_PRECHECK_REUSED;
    if (has_expected && expected != version)
        return ES_PRECHECK_CONFLICT;
    return ES_PRECHECK_DECIDE;
}

static void set_opt_string(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f, br;
    avro_value_get_by_name(rec, name, &f, NULL);
    if (s && *s) {
        avro_value_set_branch(&f, 1, &br);
        avro_value_set_string(&br, s);
    } else {
        avro_value_set_branch(&f, 0, &br);
        avro_value_set_null(&br);
    }
}

/*
 * Fields of a newer CommandResult that es_outcome_t does not hold (the
 * request context, set by the command service after this): null here, so
 * every field of the record is set, whichever schema version it has.
 */
static const char *const context_fields[] = {"correlation_id", "traceparent", "tracestate",
                                             "command_type", "issued_at"};

es_err_t es_outcome_to_value(const es_outcome_t *o, avro_value_t *result, char *errstr,
                             size_t errstr_size)
{
    avro_value_t f, br, el, ef;
    int rc = 0;
    avro_value_reset(result);
    rc |= avro_value_get_by_name(result, "command_id", &f, NULL) ||
          avro_value_set_string(&f, o->command_id);
    rc |= avro_value_get_by_name(result, "aggregate_id", &f, NULL) ||
          avro_value_set_string(&f, o->aggregate_id);
    rc |= avro_value_get_by_name(result, "status", &f, NULL) ||
          avro_value_set_enum(&f, (int)o->status);
    set_opt_string(result, "reason", o->reason);
    rc |= avro_value_get_by_name(result, "expected_version", &f, NULL);
    if (!rc && o->has_expected)
        rc |= avro_value_set_branch(&f, 1, &br) || avro_value_set_long(&br, o->expected_version);
    else if (!rc)
        rc |= avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br);
    rc |= avro_value_get_by_name(result, "actual_version", &f, NULL) ||
          avro_value_set_long(&f, o->actual_version);
    rc |=
        avro_value_get_by_name(result, "version", &f, NULL) || avro_value_set_long(&f, o->version);
    rc |= avro_value_get_by_name(result, "events", &f, NULL);
    for (size_t i = 0; !rc && i < o->nevents; i++) {
        rc |= avro_value_append(&f, &el, NULL);
        rc |= avro_value_get_by_name(&el, "type", &ef, NULL) ||
              avro_value_set_string(&ef, o->events[i].type);
        rc |= avro_value_get_by_name(&el, "version", &ef, NULL) ||
              avro_value_set_long(&ef, o->events[i].version);
    }
    set_opt_string(result, "position", o->position);
    rc |= avro_value_get_by_name(result, "processed_at", &f, NULL) ||
          avro_value_set_long(&f, o->processed_at);
    rc |= es_principal_set(result, o->principal, o->principal_client) != ES_ERR_OK;
    for (size_t i = 0; !rc && i < sizeof(context_fields) / sizeof(context_fields[0]); i++)
        if (!avro_value_get_by_name(result, context_fields[i], &f, NULL))
            rc |= avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br);
    if (rc) {
        snprintf(errstr, errstr_size, "CommandResult: %s", avro_strerror());
        return ES_ERR_ENCODE;
    }
    return ES_ERR_OK;
}

static es_err_t get_str(avro_value_t *rec, const char *name, char *out, size_t outsz, bool opt,
                        char *errstr, size_t errstr_size)
{
    avro_value_t f, br;
    const char *s = NULL;
    size_t len = 0;
    out[0] = '\0';
    if (avro_value_get_by_name(rec, name, &f, NULL))
        goto bad;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, &br))
            goto bad;
        if (avro_value_get_type(&br) == AVRO_NULL && opt)
            return ES_ERR_OK;
        f = br;
    }
    if (avro_value_get_type(&f) != AVRO_STRING || avro_value_get_string(&f, &s, &len) || !s)
        goto bad;
    if (len > outsz) /* len counts the NUL */
        goto bad;
    snprintf(out, outsz, "%s", s);
    return ES_ERR_OK;
bad:
    snprintf(errstr, errstr_size, "CommandResult field %s missing, mistyped or too long", name);
    return ES_ERR_DECODE;
}

static es_err_t get_long(avro_value_t *rec, const char *name, int64_t *v, bool *present,
                         char *errstr, size_t errstr_size)
{
    avro_value_t f, br;
    if (present)
        *present = false;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        goto bad;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, &br))
            goto bad;
        if (avro_value_get_type(&br) == AVRO_NULL && present)
            return ES_ERR_OK;
        f = br;
    }
    if (avro_value_get_type(&f) != AVRO_INT64 || avro_value_get_long(&f, v))
        goto bad;
    if (present)
        *present = true;
    return ES_ERR_OK;
bad:
    snprintf(errstr, errstr_size, "CommandResult field %s missing or mistyped", name);
    return ES_ERR_DECODE;
}

es_err_t es_outcome_from_value(avro_value_t *result, es_outcome_t *o, char *errstr,
                               size_t errstr_size)
{
    avro_value_t f, el;
    int status = 0;
    size_t n = 0;
    es_err_t err;
    memset(o, 0, sizeof(*o));
    if ((err = get_str(result, "command_id", o->command_id, sizeof(o->command_id), false, errstr,
                       errstr_size)) ||
        (err = get_str(result, "aggregate_id", o->aggregate_id, sizeof(o->aggregate_id), false,
                       errstr, errstr_size)) ||
        (err =
             get_str(result, "reason", o->reason, sizeof(o->reason), true, errstr, errstr_size)) ||
        (err = get_long(result, "expected_version", &o->expected_version, &o->has_expected, errstr,
                        errstr_size)) ||
        (err = get_long(result, "actual_version", &o->actual_version, NULL, errstr, errstr_size)) ||
        (err = get_long(result, "version", &o->version, NULL, errstr, errstr_size)) ||
        (err = get_str(result, "position", o->position, sizeof(o->position), true, errstr,
                       errstr_size)) ||
        (err = get_long(result, "processed_at", &o->processed_at, NULL, errstr, errstr_size)))
        return err;
    if (avro_value_get_by_name(result, "status", &f, NULL) ||
        avro_value_get_type(&f) != AVRO_ENUM || avro_value_get_enum(&f, &status) || status < 0 ||
        status > ES_OUTCOME_IDEMPOTENCY_KEY_REUSED) {
        snprintf(errstr, errstr_size, "CommandResult status missing or unknown");
        return ES_ERR_DECODE;
    }
    o->status = (es_outcome_status_t)status;
    es_principal_get(result, o->principal, sizeof(o->principal), o->principal_client,
                     sizeof(o->principal_client));
    if (avro_value_get_by_name(result, "events", &f, NULL) ||
        avro_value_get_type(&f) != AVRO_ARRAY || avro_value_get_size(&f, &n) ||
        n > ES_AGG_MAX_EVENTS) {
        snprintf(errstr, errstr_size, "CommandResult events missing or more than %d",
                 ES_AGG_MAX_EVENTS);
        return ES_ERR_DECODE;
    }
    for (size_t i = 0; i < n; i++) {
        if (avro_value_get_by_index(&f, i, &el, NULL) ||
            (err = get_str(&el, "type", o->events[i].type, sizeof(o->events[i].type), false, errstr,
                           errstr_size)) ||
            (err = get_long(&el, "version", &o->events[i].version, NULL, errstr, errstr_size)))
            return err ? err : ES_ERR_DECODE;
    }
    o->nevents = n;
    return ES_ERR_OK;
}

int es_outcome_http(const es_outcome_t *o, json_t **body)
{
    char msg[256];
    json_t *j;
    switch (o->status) {
    case ES_OUTCOME_ACCEPTED: {
        json_t *evs = json_array();
        for (size_t i = 0; i < o->nevents; i++)
            json_array_append_new(evs, json_pack("{s:s, s:I}", "type", o->events[i].type, "version",
                                                 (json_int_t)o->events[i].version));
        j = json_pack("{s:s, s:s, s:I, s:o, s:o}", "command_id", o->command_id, "aggregate_id",
                      o->aggregate_id, "version", (json_int_t)o->version, "events", evs, "position",
                      o->position[0] ? json_string(o->position) : json_null());
        *body = j;
        return 200;
    }
    case ES_OUTCOME_REJECTED:
        if (!strcmp(o->reason, "invalid_command")) {
            *body = es_http_error_body("invalid_command", "the aggregate refused the command "
                                                          "as invalid");
            return 400;
        }
        if (!strcmp(o->reason, "unknown_command")) {
            *body = es_http_error_body("unknown_command", "the aggregate has no such command");
            return 404;
        }
        snprintf(msg, sizeof(msg), "command rejected: %s", o->reason);
        j = es_http_error_body("rejected", msg);
        json_object_set_new(j, "reason", json_string(o->reason));
        *body = j;
        return 422;
    case ES_OUTCOME_VERSION_CONFLICT:
        snprintf(msg, sizeof(msg), "expected version %" PRId64 " but the aggregate is at %" PRId64,
                 o->expected_version, o->actual_version);
        j = es_http_error_body("version_conflict", msg);
        json_object_set_new(j, "expected", json_integer((json_int_t)o->expected_version));
        json_object_set_new(j, "actual", json_integer((json_int_t)o->actual_version));
        *body = j;
        return 409;
    case ES_OUTCOME_IDEMPOTENCY_KEY_REUSED:
    default:
        *body = es_http_error_body("idempotency_key_reused",
                                   "this Idempotency-Key was used for a different command");
        return 409;
    }
}
