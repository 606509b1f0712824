/*
 * registry.c — Confluent-compatible schema registry client.
 *
 * Every answer the hot path needs (a writer schema by id, our own schema's id)
 * is cached after the first request, so steady-state encoding and decoding
 * never wait on HTTP.  Transient failures (no connection, timeouts, 5xx) are
 * retried with exponential backoff; 4xx answers are final and their
 * `message` is passed on, because it is what an operator needs to read
 * (an incompatible schema, an unknown subject).
 */
#include "escqrs/registry.h"
#include "escqrs/http_client.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const es_conf_def_t es_registry_conf_defs[] = {
    {.name = "registry.url",
     .type = ES_CONF_STRING,
     .defval = "http://127.0.0.1:8081/apis/ccompat/v7",
     .desc = "Confluent-compatible schema registry base URL"},
    {.name = "registry.timeout.ms",
     .type = ES_CONF_INT,
     .defval = "5000",
     .min = 100,
     .max = 600000,
     .desc = "Timeout of one registry request"},
    {.name = "registry.tls.ca.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "CA bundle to check an https registry's certificate with (empty: the system's)"},
    {.name = "registry.tls.cert.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Client certificate (PEM) for a registry that asks for one (mutual TLS)"},
    {.name = "registry.tls.key.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Private key (PEM) of registry.tls.cert.file"},
    {.name = "registry.basic.auth.user",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "User for HTTP basic authentication to the registry"},
    {.name = "registry.basic.auth.password",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Password of registry.basic.auth.user (a secret: ESCQRS_REGISTRY_BASIC_AUTH_PASSWORD "
             "or ..._FILE)"},
    {.name = "registry.bearer.token",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Bearer token for the registry (a secret: ESCQRS_REGISTRY_BEARER_TOKEN or ..._FILE)"},
    {.name = NULL},
};

/*
 * The longest answer read from the registry: a schema of megabytes is already
 * absurd (Kafka's default record limit keeps Confluent's under 1 MB), and a URL
 * that points at something else must not fill the heap.
 */
#define REGISTRY_MAX_ANSWER ((size_t)8 << 20)

typedef struct {
    int id;
    avro_schema_t schema;
} id_entry_t;

typedef struct {
    char *subject;
    char *schema_json;
    int id;
} lookup_entry_t;

struct es_registry_s {
    char *base_url;
    int timeout_ms;
    int retries;
    es_http_client_opts_t http; /* TLS and credentials; strings owned */
    pthread_mutex_t lock;
    id_entry_t *ids;
    size_t nids, capids;
    lookup_entry_t *lookups;
    size_t nlookups, caplookups;
};

es_registry_t *es_registry_new(const char *base_url, int timeout_ms, int retries, char *errstr,
                               size_t errstr_size)
{
    if (!base_url || strncmp(base_url, "http", 4)) {
        snprintf(errstr, errstr_size, "registry URL \"%s\" is not an http(s) URL",
                 base_url ? base_url : "");
        return NULL;
    }
    es_registry_t *reg = es_calloc(1, sizeof(*reg));
    size_t n = strlen(base_url);
    while (n && base_url[n - 1] == '/')
        n--;
    reg->base_url = es_strndup(base_url, n);
    reg->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    reg->retries = retries >= 0 ? retries : 0;
    reg->http.max_body = REGISTRY_MAX_ANSWER;
    pthread_mutex_init(&reg->lock, NULL);
    return reg;
}

/* A copy of a configured string, NULL when empty. */
static const char *conf_copy(const es_conf_t *conf, const char *key)
{
    const char *v = es_conf_get(conf, key);
    return v && *v ? es_strdup(v) : NULL;
}

es_registry_t *es_registry_from_conf(const es_conf_t *conf, int retries, char *errstr,
                                     size_t errstr_size)
{
    es_registry_t *reg = es_registry_new(es_conf_get(conf, "registry.url"),
                                         (int)es_conf_get_int(conf, "registry.timeout.ms"), retries,
                                         errstr, errstr_size);
    if (!reg)
        return NULL;
    reg->http.ca_file = conf_copy(conf, "registry.tls.ca.file");
    reg->http.cert_file = conf_copy(conf, "registry.tls.cert.file");
    reg->http.key_file = conf_copy(conf, "registry.tls.key.file");
    reg->http.basic_user = conf_copy(conf, "registry.basic.auth.user");
    reg->http.basic_password = conf_copy(conf, "registry.basic.auth.password");
    reg->http.bearer_token = conf_copy(conf, "registry.bearer.token");
    return reg;
}

void es_registry_destroy(es_registry_t *reg)
{
    if (!reg)
        return;
    free((char *)reg->http.ca_file);
    free((char *)reg->http.cert_file);
    free((char *)reg->http.key_file);
    free((char *)reg->http.basic_user);
    free((char *)reg->http.basic_password);
    free((char *)reg->http.bearer_token);
    for (size_t i = 0; i < reg->nids; i++)
        avro_schema_decref(reg->ids[i].schema);
    for (size_t i = 0; i < reg->nlookups; i++) {
        free(reg->lookups[i].subject);
        free(reg->lookups[i].schema_json);
    }
    free(reg->ids);
    free(reg->lookups);
    pthread_mutex_destroy(&reg->lock);
    free(reg->base_url);
    free(reg);
}

/* The registry's own error text: {"message": "...", "error_code": N} or the raw body. */
static void registry_message(const es_buf_t *body, char *out, size_t outsz)
{
    json_t *j = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    snprintf(out, outsz, "%s", msg ? msg : (body->len ? body->data : "(empty answer)"));
    json_decref(j);
}

/*
 * One request with retries.  *status is the HTTP status of the final answer;
 * ES_ERR_REGISTRY_UNAVAILABLE when no answer came after every retry.
 */
static es_err_t registry_request_url(es_registry_t *reg, const char *method, const char *url,
                                     const char *content_type, const char *body, long *status,
                                     es_buf_t *resp, char *errstr, size_t errstr_size)
{
    for (int attempt = 0;; attempt++) {
        char neterr[512] = "";
        es_err_t nerr = es_http_fetch_opts(method, url, content_type, NULL, body, reg->timeout_ms,
                                           &reg->http, status, resp, neterr, sizeof(neterr));
        bool transient = nerr != ES_ERR_OK || *status >= 500;
        if (!transient)
            return ES_ERR_OK;
        if (attempt >= reg->retries) {
            if (nerr) {
                snprintf(errstr, errstr_size, "schema registry unreachable: %s", neterr);
                return ES_ERR_REGISTRY_UNAVAILABLE;
            }
            char msg[512];
            registry_message(resp, msg, sizeof(msg));
            snprintf(errstr, errstr_size, "schema registry %s %s: HTTP %ld: %s", method, url,
                     *status, msg);
            return ES_ERR_REGISTRY;
        }
        long backoff_ms = 100L << (attempt < 6 ? attempt : 6);
        es_log_warn("registry", "%s %s failed (%s), retrying in %ld ms", method, url,
                    nerr ? neterr : "server error", backoff_ms);
        struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static es_err_t registry_request(es_registry_t *reg, const char *method, const char *path,
                                 const char *body, long *status, es_buf_t *resp, char *errstr,
                                 size_t errstr_size)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", reg->base_url, path);
    return registry_request_url(reg, method, url, "application/vnd.schemaregistry.v1+json", body,
                                status, resp, errstr, errstr_size);
}

static char *schema_body(const char *schema_json)
{
    json_t *j = json_pack("{s:s}", "schema", schema_json);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static void subject_path(const char *prefix, const char *subject, const char *suffix, char *out,
                         size_t outsz)
{
    char *esc = curl_easy_escape(NULL, subject, 0);
    snprintf(out, outsz, "%s%s%s", prefix, esc ? esc : subject, suffix);
    curl_free(esc);
}

static void cache_lookup_put(es_registry_t *reg, const char *subject, const char *schema_json,
                             int id)
{
    pthread_mutex_lock(&reg->lock);
    if (reg->nlookups == reg->caplookups) {
        reg->caplookups = reg->caplookups ? reg->caplookups * 2 : 8;
        reg->lookups = es_realloc(reg->lookups, reg->caplookups * sizeof(*reg->lookups));
    }
    reg->lookups[reg->nlookups++] =
        (lookup_entry_t){es_strdup(subject), es_strdup(schema_json), id};
    pthread_mutex_unlock(&reg->lock);
}

static bool cache_lookup_get(es_registry_t *reg, const char *subject, const char *schema_json,
                             int *id)
{
    bool found = false;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nlookups && !found; i++) {
        if (!strcmp(reg->lookups[i].subject, subject) &&
            !strcmp(reg->lookups[i].schema_json, schema_json)) {
            *id = reg->lookups[i].id;
            found = true;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return found;
}

/* POST @p path with the schema; parses {"id": N}. */
static es_err_t post_schema_for_id(es_registry_t *reg, const char *path, const char *schema_json,
                                   int *id, long *status, char *errstr, size_t errstr_size)
{
    char *body = schema_body(schema_json);
    es_buf_t resp = {0};
    es_err_t err = registry_request(reg, "POST", path, body, status, &resp, errstr, errstr_size);
    free(body);
    if (err)
        goto out;
    if (*status == 200) {
        json_t *j = json_loadb(resp.data, resp.len, 0, NULL);
        json_t *jid = j ? json_object_get(j, "id") : NULL;
        if (!json_is_integer(jid)) {
            snprintf(errstr, errstr_size, "schema registry answered without an id: %.200s",
                     resp.data ? resp.data : "");
            err = ES_ERR_REGISTRY;
        } else if (json_integer_value(jid) < 0 || json_integer_value(jid) > INT32_MAX) {
            /* the wire format's id is 4 bytes: a cast would name another schema */
            snprintf(errstr, errstr_size,
                     "schema registry answered id %" JSON_INTEGER_FORMAT
                     ", outside the wire format's 0..%d",
                     json_integer_value(jid), INT32_MAX);
            err = ES_ERR_REGISTRY;
        } else {
            *id = (int)json_integer_value(jid);
        }
        json_decref(j);
    } else {
        char msg[512];
        registry_message(&resp, msg, sizeof(msg));
        snprintf(errstr, errstr_size, "schema registry: HTTP %ld: %s", *status, msg);
        err = *status == 409   ? ES_ERR_INCOMPATIBLE_SCHEMA
              : *status == 404 ? ES_ERR_NOT_FOUND
              : *status == 422 ? ES_ERR_SCHEMA
                               : ES_ERR_REGISTRY;
    }
out:
    es_buf_free(&resp);
    return err;
}

/*
 * POST the schema to /subjects/<subject><suffix> for its id, through the
 * look-up cache: "/versions" registers it, "" only looks it up.
 */
static es_err_t subject_schema_id(es_registry_t *reg, const char *subject, const char *suffix,
                                  const char *schema_json, int *id, char *errstr,
                                  size_t errstr_size)
{
    char path[512];
    long status;
    if (cache_lookup_get(reg, subject, schema_json, id))
        return ES_ERR_OK;
    subject_path("/subjects/", subject, suffix, path, sizeof(path));
    es_err_t err = post_schema_for_id(reg, path, schema_json, id, &status, errstr, errstr_size);
    if (!err)
        cache_lookup_put(reg, subject, schema_json, *id);
    return err;
}

es_err_t es_registry_register(es_registry_t *reg, const char *subject, const char *schema_json,
                              int *id, char *errstr, size_t errstr_size)
{
    es_err_t err =
        subject_schema_id(reg, subject, "/versions", schema_json, id, errstr, errstr_size);
    if (!err)
        es_log_info("registry", "schema for %s has id %d", subject, *id);
    return err;
}

es_err_t es_registry_lookup(es_registry_t *reg, const char *subject, const char *schema_json,
                            int *id, char *errstr, size_t errstr_size)
{
    return subject_schema_id(reg, subject, "", schema_json, id, errstr, errstr_size);
}

es_err_t es_registry_schema_by_id(es_registry_t *reg, int id, avro_schema_t *schema, char *errstr,
                                  size_t errstr_size)
{
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nids; i++) {
        if (reg->ids[i].id == id) {
            *schema = reg->ids[i].schema;
            pthread_mutex_unlock(&reg->lock);
            return ES_ERR_OK;
        }
    }
    pthread_mutex_unlock(&reg->lock);

    char path[64];
    long status;
    es_buf_t resp = {0};
    json_t *j = NULL;
    avro_schema_t parsed = NULL;
    snprintf(path, sizeof(path), "/schemas/ids/%d", id);
    es_err_t err = registry_request(reg, "GET", path, NULL, &status, &resp, errstr, errstr_size);
    if (err)
        goto out;
    if (status == 404) {
        snprintf(errstr, errstr_size, "schema id %d is not known to the registry", id);
        err = ES_ERR_UNKNOWN_SCHEMA;
        goto out;
    }
    j = status == 200 ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    const char *text = j ? json_string_value(json_object_get(j, "schema")) : NULL;
    if (!text) {
        char msg[512];
        registry_message(&resp, msg, sizeof(msg));
        snprintf(errstr, errstr_size, "schema id %d: HTTP %ld: %s", id, status, msg);
        err = ES_ERR_REGISTRY;
        goto out;
    }
    if (avro_schema_from_json_length(text, strlen(text), &parsed)) {
        snprintf(errstr, errstr_size, "schema id %d does not parse: %s", id, avro_strerror());
        err = ES_ERR_SCHEMA;
        goto out;
    }
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nids; i++) {
        if (reg->ids[i].id == id) { /* another thread fetched it meanwhile: keep theirs */
            avro_schema_decref(parsed);
            parsed = reg->ids[i].schema;
            pthread_mutex_unlock(&reg->lock);
            *schema = parsed;
            goto out;
        }
    }
    if (reg->nids == reg->capids) {
        reg->capids = reg->capids ? reg->capids * 2 : 8;
        reg->ids = es_realloc(reg->ids, reg->capids * sizeof(*reg->ids));
    }
    reg->ids[reg->nids++] = (id_entry_t){id, parsed};
    pthread_mutex_unlock(&reg->lock);
    *schema = parsed;
out:
    json_decref(j);
    es_buf_free(&resp);
    return err;
}

es_err_t es_registry_set_compatibility(es_registry_t *reg, const char *subject, const char *level,
                                       char *errstr, size_t errstr_size)
{
    char path[512];
    long status;
    es_buf_t resp = {0};
    json_t *jb = json_pack("{s:s}", "compatibility", level);
    char *body = json_dumps(jb, JSON_COMPACT);
    json_decref(jb);
    subject_path("/config/", subject, "", path, sizeof(path));
    es_err_t err = registry_request(reg, "PUT", path, body, &status, &resp, errstr, errstr_size);
    free(body);
    if (!err && status != 200) {
        char msg[512];
        registry_message(&resp, msg, sizeof(msg));
        snprintf(errstr, errstr_size, "set compatibility of %s to %s: HTTP %ld: %s", subject, level,
                 status, msg);
        err = ES_ERR_REGISTRY;
    }
    es_buf_free(&resp);
    return err;
}

es_err_t es_registry_version_count(es_registry_t *reg, const char *subject, size_t *count,
                                   char *errstr, size_t errstr_size)
{
    char path[512];
    long status;
    es_buf_t resp = {0};
    json_t *j = NULL;
    subject_path("/subjects/", subject, "/versions", path, sizeof(path));
    es_err_t err = registry_request(reg, "GET", path, NULL, &status, &resp, errstr, errstr_size);
    if (err)
        goto out;
    j = status == 200 ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    if (json_is_array(j)) {
        *count = json_array_size(j);
    } else if (status == 404) {
        *count = 0;
    } else {
        char msg[512];
        registry_message(&resp, msg, sizeof(msg));
        snprintf(errstr, errstr_size, "versions of %s: HTTP %ld: %s", subject, status, msg);
        err = ES_ERR_REGISTRY;
    }
out:
    json_decref(j);
    es_buf_free(&resp);
    return err;
}

es_err_t es_registry_get_compatibility(es_registry_t *reg, const char *subject, char *level,
                                       size_t level_size, char *errstr, size_t errstr_size)
{
    char path[512];
    long status;
    es_buf_t resp = {0};
    json_t *j = NULL;
    /* defaultToGlobal: Confluent answers 404 for a subject without its own level otherwise */
    subject_path("/config/", subject, "?defaultToGlobal=true", path, sizeof(path));
    es_err_t err = registry_request(reg, "GET", path, NULL, &status, &resp, errstr, errstr_size);
    if (err)
        goto out;
    j = status == 200 ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    const char *lv = j ? json_string_value(json_object_get(j, "compatibilityLevel")) : NULL;
    if (!lv && j) /* some servers answer {"compatibility": ...} */
        lv = json_string_value(json_object_get(j, "compatibility"));
    if (lv) {
        snprintf(level, level_size, "%s", lv);
    } else if (status == 404) {
        snprintf(errstr, errstr_size, "subject %s has no compatibility level", subject);
        err = ES_ERR_NOT_FOUND;
    } else {
        char msg[512];
        registry_message(&resp, msg, sizeof(msg));
        snprintf(errstr, errstr_size, "compatibility level of %s: HTTP %ld: %s", subject, status,
                 msg);
        err = ES_ERR_REGISTRY;
    }
out:
    json_decref(j);
    es_buf_free(&resp);
    return err;
}

/*
 * Apicurio's Confluent-compatible API answers a failed check with a bare
 * {"is_compatible": false}, even with verbose=true.  Its native API gives the
 * reasons for a dry-run new version (registers nothing), so when the base URL
 * is Apicurio's ccompat one, ask that.  Best effort: no reasons on failure.
 */
static void apicurio_reasons(es_registry_t *reg, const char *subject, const char *schema_json,
                             es_buf_t *reasons)
{
    const char *cc = strstr(reg->base_url, "/apis/ccompat/");
    char url[1024];
    long status = 0;
    es_buf_t resp = {0};
    char err[256];
    json_t *j = NULL;
    if (!cc)
        return;
    char *esc = curl_easy_escape(NULL, subject, 0);
    snprintf(url, sizeof(url),
             "%.*s/apis/registry/v3/groups/default/artifacts/%s/versions?dryRun=true",
             (int)(cc - reg->base_url), reg->base_url, esc ? esc : subject);
    curl_free(esc);
    json_t *jb = json_pack("{s:{s:s,s:s}}", "content", "content", schema_json, "contentType",
                           "application/json");
    char *body = json_dumps(jb, JSON_COMPACT);
    json_decref(jb);
    if (registry_request_url(reg, "POST", url, "application/json", body, &status, &resp, err,
                             sizeof(err)) == ES_ERR_OK &&
        status == 409 && (j = json_loadb(resp.data, resp.len, 0, NULL))) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(j, "causes"), i, c)
        {
            const char *d = json_string_value(json_object_get(c, "description"));
            const char *ctx = json_string_value(json_object_get(c, "context"));
            if (d)
                es_buf_appendf(reasons, "%s%s%s%s", reasons->len ? "; " : "", d, ctx ? " at " : "",
                               ctx ? ctx : "");
        }
        const char *detail = json_string_value(json_object_get(j, "detail"));
        if (!reasons->len && detail)
            es_buf_appendf(reasons, "%s", detail);
    }
    json_decref(j);
    free(body);
    es_buf_free(&resp);
}

es_err_t es_registry_check_compatible(es_registry_t *reg, const char *subject,
                                      const char *schema_json, char *errstr, size_t errstr_size)
{
    char path[512];
    long status;
    es_buf_t resp = {0};
    json_t *j = NULL;
    char *body = schema_body(schema_json);
    /* Against every registered version: what BACKWARD_TRANSITIVE means. */
    subject_path("/compatibility/subjects/", subject, "/versions?verbose=true", path, sizeof(path));
    es_err_t err = registry_request(reg, "POST", path, body, &status, &resp, errstr, errstr_size);
    free(body);
    if (err)
        goto out;
    if (status == 404) { /* nothing registered yet: anything is compatible */
        err = ES_ERR_OK;
        goto out;
    }
    j = status == 200 ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    json_t *ok = j ? json_object_get(j, "is_compatible") : NULL;
    if (!json_is_boolean(ok)) {
        char msg[512];
        registry_message(&resp, msg, sizeof(msg));
        snprintf(errstr, errstr_size, "compatibility check of %s: HTTP %ld: %s", subject, status,
                 msg);
        err = status == 422 ? ES_ERR_SCHEMA : ES_ERR_REGISTRY;
        goto out;
    }
    if (!json_is_true(ok)) {
        es_buf_t reasons = {0};
        json_t *msgs = json_object_get(j, "messages");
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m)
        {
            if (json_is_string(m))
                es_buf_appendf(&reasons, "%s%s", reasons.len ? "; " : "", json_string_value(m));
        }
        if (!reasons.len)
            apicurio_reasons(reg, subject, schema_json, &reasons);
        snprintf(errstr, errstr_size, "not compatible with the registered versions%s%s",
                 reasons.len ? ": " : "", reasons.len ? reasons.data : "");
        es_buf_free(&reasons);
        err = ES_ERR_INCOMPATIBLE_SCHEMA;
    }
out:
    json_decref(j);
    es_buf_free(&resp);
    return err;
}
