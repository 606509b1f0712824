/*
 * history.c — the projections every loaded aggregate gets from the runtime:
 * `<agg>_history`, its events in version order, and `<agg>_commands`, the
 * audit of every command outcome (docs/projector.md, "History and audit").
 *
 * Both are ordinary projections to the rest of the projector (a runner, a
 * store, offsets in the same write batch, rebuilds, frozen views, the DLQ),
 * with two differences: they are defined here, per loaded aggregate, not by
 * a module; and their fold gets the record's bytes, which it keeps as they
 * are on the wire, so an entry is what the producer wrote (rendered with its
 * writer schema) and as_of can fold it again with any view's reader schema.
 *
 *   history  reads <agg>.events;  key  <id> 0x00 <version, 8 bytes big-endian>
 *   audit    reads <agg>.command-results (kept as long as the events: the
 *            audit's home, docs/write-side.md);  key  <id> 0x00 <seq, 8 bytes>,
 *            seq = 1, 2, ... per aggregate, counted under key <id> 0x00
 *   entry    1 format byte, partition (4 bytes), offset and record timestamp
 *            (8 bytes each, big-endian), then the record's value.
 *
 * A page is one seek to its first key and a scan of the aggregate's keys
 * from there, whatever the aggregate's size.  Versions count from 1, but an
 * event that went to the DLQ leaves its version out: the scan passes over
 * the gap, and a page's `next_from_version` is the next version present.
 */
#include "projector.h"

#include "escqrs/log.h"
#include "escqrs/modules.h"
#include "escqrs/schemas.h"
#include "escqrs/serde.h"
#include "escqrs/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_FORMAT   1
#define ENTRY_HEADER   21 /* format, partition, offset, timestamp */
#define PAGE_DEFAULT   100
#define PAGE_MAX       1000
#define NAME_MAX_      160
#define PATTERN_MAX    200
#define TRACE_ID_CHARS 32
#define ID_MAX         512 /* an aggregate id in a key */

typedef struct builtin_s {
    es_proj_def_t def;
    pj_builtin_kind_t kind;
    char name[NAME_MAX_];
    char pattern[PATTERN_MAX];
} builtin_t;

static builtin_t *builtins;
static size_t nbuiltins;

/* Entries are rendered with their writer schemas; one decoder for every query. */
static pthread_mutex_t decoder_mu = PTHREAD_MUTEX_INITIALIZER;
static es_serde_t *decoder;

/* ------------------------------------------------------------- keys, values */

/* <id> 0x00 [<n, 8 bytes>] into @p key; false when the id is no key (empty, too long, a NUL). */
static bool entry_key(es_buf_t *key, const char *id, size_t idlen, bool with_n, uint64_t n)
{
    if (idlen == 0 || idlen > ID_MAX || memchr(id, 0, idlen))
        return false;
    es_buf_set(key, id, idlen);
    es_buf_append(key, "", 1);
    if (with_n)
        es_buf_put_be64(key, n);
    return true;
}

bool pj_entry_parse(const char *val, size_t len, pj_entry_t *e)
{
    es_cursor_t c;
    if (len < ENTRY_HEADER || val[0] != ENTRY_FORMAT)
        return false;
    es_cursor_init(&c, val + 1, len - 1);
    e->partition = (int32_t)es_cursor_be32(&c);
    e->offset = (int64_t)es_cursor_be64(&c);
    e->timestamp_ms = (int64_t)es_cursor_be64(&c);
    e->raw = val + ENTRY_HEADER;
    e->rawlen = len - ENTRY_HEADER;
    return true;
}

/* A page's scan: entries counted to the limit, then the next one's number. */
typedef struct page_walk_s {
    size_t prefixlen, limit, count;
    pj_entry_cb cb;
    void *opaque;
    uint64_t next;
    es_err_t err;
    char *errstr;
    size_t errstr_size;
} page_walk_t;

static bool page_walk_cb(void *opaque, const char *key, size_t keylen, const char *val,
                         size_t vallen)
{
    page_walk_t *w = opaque;
    es_cursor_t c;
    pj_entry_t e;
    if (keylen != w->prefixlen + 8)
        return true; /* the audit's count, <id> 0x00 */
    es_cursor_init(&c, key + w->prefixlen, 8);
    uint64_t n = es_cursor_be64(&c);
    if (w->count == w->limit) {
        w->next = n;
        return false;
    }
    if (!pj_entry_parse(val, vallen, &e)) {
        snprintf(w->errstr, w->errstr_size, "history entry %llu: not an entry",
                 (unsigned long long)n);
        w->err = ES_ERR_DECODE;
        return false;
    }
    w->count++;
    return !w->cb || !(w->err = w->cb(w->opaque, n, &e, w->errstr, w->errstr_size));
}

es_err_t pj_entry_page(es_proj_reader_t *rd, const char *id, uint64_t from, size_t limit,
                       pj_entry_cb cb, void *opaque, uint64_t *next, char *errstr,
                       size_t errstr_size)
{
    es_buf_t prefix = {0}, start = {0};
    size_t idlen = strlen(id);
    page_walk_t w = {
        .limit = limit, .cb = cb, .opaque = opaque, .errstr = errstr, .errstr_size = errstr_size};
    es_err_t err = ES_ERR_NOT_FOUND;
    *next = 0;
    if (!entry_key(&prefix, id, idlen, false, 0) || !entry_key(&start, id, idlen, true, from))
        goto out;
    w.prefixlen = prefix.len;
    err = es_proj_reader_scan_from(rd, prefix.data, prefix.len, start.data, start.len, page_walk_cb,
                                   &w, errstr, errstr_size);
    if (!err)
        err = w.err;
    if (!err && w.count == 0 && w.next == 0) {
        /* nothing from `from` on: 404 only if nothing before it either */
        page_walk_t first = {.prefixlen = prefix.len, .errstr = errstr, .errstr_size = errstr_size};
        if (from > 1)
            err = es_proj_reader_scan(rd, prefix.data, prefix.len, page_walk_cb, &first, errstr,
                                      errstr_size);
        if (!err && first.next == 0)
            err = ES_ERR_NOT_FOUND;
    }
    *next = err ? 0 : w.next;
out:
    es_buf_free(&prefix);
    es_buf_free(&start);
    return err;
}

static void put_entry(es_proj_txn_t *txn, const es_buf_t *key, const pj_record_t *rec)
{
    es_buf_t v = {0};
    es_buf_reserve(&v, ENTRY_HEADER + rec->rawlen);
    es_buf_append(&v, (const char[]){ENTRY_FORMAT}, 1);
    es_buf_put_be32(&v, (uint32_t)rec->ev.partition);
    es_buf_put_be64(&v, (uint64_t)rec->ev.offset);
    es_buf_put_be64(&v, (uint64_t)rec->ev.timestamp_ms);
    es_buf_append(&v, rec->raw, rec->rawlen);
    es_proj_put(txn, key->data, key->len, v.data, v.len);
    es_buf_free(&v);
}

static es_err_t bad_key(char *errstr, size_t errstr_size)
{
    snprintf(errstr, errstr_size, "record key: an aggregate id of 1 to %d bytes without NUL",
             ID_MAX);
    return ES_ERR_DECODE;
}

/* ------------------------------------------------------------------ folds */

static es_err_t history_fold(const pj_record_t *rec, es_proj_txn_t *txn, char *errstr,
                             size_t errstr_size)
{
    es_buf_t key = {0};
    int64_t version;
    es_err_t err = es_record_long(rec->ev.value, "version", &version, errstr, errstr_size);
    if (err)
        return err;
    if (version < 1) {
        snprintf(errstr, errstr_size, "version %lld: versions start at 1", (long long)version);
        return ES_ERR_DECODE;
    }
    if (!entry_key(&key, rec->ev.key, rec->ev.keylen, true, (uint64_t)version))
        return bad_key(errstr, errstr_size);
    put_entry(txn, &key, rec);
    es_buf_free(&key);
    return ES_ERR_OK;
}

static es_err_t audit_fold(const pj_record_t *rec, es_proj_txn_t *txn, char *errstr,
                           size_t errstr_size)
{
    es_buf_t key = {0}, cur = {0};
    if (!entry_key(&key, rec->ev.key, rec->ev.keylen, false, 0))
        return bad_key(errstr, errstr_size);
    es_err_t err = es_proj_get(txn, key.data, key.len, &cur, errstr, errstr_size);
    if (!err || err == ES_ERR_NOT_FOUND) {
        es_cursor_t c;
        es_cursor_init(&c, cur.data, err ? 0 : cur.len);
        uint64_t n = err ? 0 : es_cursor_be64(&c);
        es_buf_clear(&cur);
        es_buf_put_be64(&cur, n + 1);
        es_proj_put(txn, key.data, key.len, cur.data, cur.len); /* the aggregate's count */
        es_buf_put_be64(&key, n + 1);
        put_entry(txn, &key, rec);
        err = ES_ERR_OK;
    }
    es_buf_free(&key);
    es_buf_free(&cur);
    return err;
}

es_err_t pj_builtin_fold(const es_proj_def_t *def, const pj_record_t *rec, es_proj_txn_t *txn,
                         char *errstr, size_t errstr_size)
{
    const builtin_t *b = (const builtin_t *)def;
    return b->kind == PJ_BUILTIN_HISTORY ? history_fold(rec, txn, errstr, errstr_size)
                                         : audit_fold(rec, txn, errstr, errstr_size);
}

/* --------------------------------------------------------------- queries */

/* The trace id of a W3C traceparent "00-<trace id>-<span id>-<flags>", or NULL. */
static json_t *trace_id_json(json_t *traceparent)
{
    const char *tp = json_string_value(traceparent);
    if (!tp || strlen(tp) < 3 + TRACE_ID_CHARS || tp[2] != '-')
        return json_null();
    return json_stringn(tp + 3, TRACE_ID_CHARS);
}

/* One entry as JSON, decoded with its writer schema.  Locks: decoder_mu. */
static json_t *entry_json(pj_builtin_kind_t kind, const pj_entry_t *e, uint64_t seq, es_err_t *err,
                          char *errstr, size_t errstr_size)
{
    avro_value_t *v = NULL;
    *err = es_serde_decode(decoder, e->raw, e->rawlen, &v, errstr, errstr_size);
    if (*err)
        return NULL;
    json_t *o = es_avro_to_json(v);
    if (kind == PJ_BUILTIN_HISTORY) {
        avro_value_t payload;
        const char *type = NULL;
        char ignored[128];
        if (!es_record_payload(v, &payload, &type, ignored, sizeof(ignored))) {
            json_object_set_new(o, "type", json_string(type));
            json_object_set_new(o, "payload", es_avro_to_json(&payload));
        }
    } else {
        json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    }
    static const char *const always[] = {"correlation_id", "traceparent", "principal"};
    for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++) {
        if (!json_object_get(o, always[i]))
            json_object_set_new(o, always[i], json_null()); /* written before the field existed */
    }
    json_object_set_new(o, "trace_id", trace_id_json(json_object_get(o, "traceparent")));
    char pos[64];
    snprintf(pos, sizeof(pos), "%d:%lld", (int)e->partition, (long long)e->offset);
    json_object_set_new(o, kind == PJ_BUILTIN_HISTORY ? "position" : "record_position",
                        json_string(pos));
    json_object_set_new(o, "timestamp", json_integer((json_int_t)e->timestamp_ms));
    return o;
}

static json_t *registry_unavailable(const char *detail)
{
    char msg[PJ_ERRSTR_MAX];
    snprintf(msg, sizeof(msg), "schema registry: %s", detail);
    return json_pack("{s:s, s:s}", "error", "unavailable", "message", msg);
}

typedef struct page_s {
    pj_builtin_kind_t kind;
    json_t *items;
} page_t;

/* One entry of a page rendered; the decoder is shared, held for one entry at a time. */
static es_err_t page_entry(void *opaque, uint64_t n, const pj_entry_t *e, char *errstr,
                           size_t errstr_size)
{
    page_t *pg = opaque;
    es_err_t err;
    pthread_mutex_lock(&decoder_mu);
    json_t *o = entry_json(pg->kind, e, n, &err, errstr, errstr_size);
    pthread_mutex_unlock(&decoder_mu);
    if (o)
        json_array_append_new(pg->items, o);
    return o ? ES_ERR_OK : err;
}

/*
 * A page of @p kind's entries of the aggregate in the route: `from_version`
 * (history) or `from_seq` (audit), default 1; `limit`, 1 to PAGE_MAX,
 * default PAGE_DEFAULT.
 */
static int page_query(pj_builtin_kind_t kind, es_proj_reader_t *rd, const es_proj_query_req_t *req,
                      json_t **body, char *errstr, size_t errstr_size)
{
    const char *from_name = kind == PJ_BUILTIN_HISTORY ? "from_version" : "from_seq";
    const char *from_s = req->query(req->query_opaque, from_name);
    const char *limit_s = req->query(req->query_opaque, "limit");
    const char *id = req->params[0];
    int64_t from = 1, limit = PAGE_DEFAULT;
    char msg[200];
    if (from_s && !es_parse_i64(from_s, 1, INT64_MAX, &from)) {
        snprintf(msg, sizeof(msg), "%s must be an integer from 1 to %lld", from_name,
                 (long long)INT64_MAX);
        *body = es_proj_bad_request(msg);
        return 400;
    }
    if (limit_s && !es_parse_i64(limit_s, 1, PAGE_MAX, &limit)) {
        snprintf(msg, sizeof(msg), "limit must be an integer from 1 to %d", PAGE_MAX);
        *body = es_proj_bad_request(msg);
        return 400;
    }
    page_t pg = {.kind = kind, .items = json_array()};
    uint64_t next;
    es_err_t err = pj_entry_page(rd, id, (uint64_t)from, (size_t)limit, page_entry, &pg, &next,
                                 errstr, errstr_size);
    if (err) {
        json_decref(pg.items);
        if (err == ES_ERR_REGISTRY_UNAVAILABLE || err == ES_ERR_REGISTRY) {
            *body = registry_unavailable(errstr);
            return 503;
        }
        return err == ES_ERR_NOT_FOUND ? 404 : 500;
    }
    *body = json_pack("{s:s, s:o, s:o}", "aggregate_id", id,
                      kind == PJ_BUILTIN_HISTORY ? "events" : "commands", pg.items,
                      kind == PJ_BUILTIN_HISTORY ? "next_from_version" : "next_from_seq",
                      next ? json_integer((json_int_t)next) : json_null());
    return 200;
}

static int history_query(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body,
                         char *errstr, size_t errstr_size)
{
    return page_query(PJ_BUILTIN_HISTORY, rd, req, body, errstr, errstr_size);
}

static int audit_query(es_proj_reader_t *rd, const es_proj_query_req_t *req, json_t **body,
                       char *errstr, size_t errstr_size)
{
    return page_query(PJ_BUILTIN_AUDIT, rd, req, body, errstr, errstr_size);
}

/* ------------------------------------------------------------ definitions */

static void define(builtin_t *b, const es_aggregate_def_t *agg, pj_builtin_kind_t kind)
{
    bool history = kind == PJ_BUILTIN_HISTORY;
    b->kind = kind;
    snprintf(b->name, sizeof(b->name), "%s_%s", agg->name, history ? "history" : "commands");
    snprintf(b->pattern, sizeof(b->pattern), "/v1/%s/{id}/%s", agg->collection,
             history ? "events" : "commands");
    b->def.name = b->name;
    b->def.aggregates[0] = agg->name;
    b->def.schemas[0] = history ? agg->events_schema : "command-result";
    b->def.naggregates = 1;
    b->def.fold = NULL; /* pj_builtin_fold: it needs the record's bytes */
    b->def.queries[0] = (es_proj_query_t){.pattern = b->pattern,
                                          .handle = history ? history_query : audit_query,
                                          /* one aggregate's: its partition's owner answers */
                                          .aggregate_param = 0,
                                          .aggregate_index = 0};
    b->def.nqueries = 1;
}

void pj_builtins_define(void)
{
    if (builtins)
        return; /* the loaded modules never change */
    size_t n = es_modules_aggregate_count();
    builtins = es_calloc(2 * n + 1, sizeof(*builtins));
    for (size_t i = 0; i < n; i++) {
        const es_aggregate_def_t *agg = es_modules_aggregate_at(i);
        if (!agg->collection)
            continue;
        define(&builtins[nbuiltins++], agg, PJ_BUILTIN_HISTORY);
        define(&builtins[nbuiltins++], agg, PJ_BUILTIN_AUDIT);
    }
}

size_t pj_builtin_count(void)
{
    return nbuiltins;
}

const es_proj_def_t *pj_builtin_at(size_t i)
{
    return i < nbuiltins ? &builtins[i].def : NULL;
}

const es_proj_def_t *pj_builtin_find(const char *name)
{
    for (size_t i = 0; i < nbuiltins; i++) {
        if (!strcmp(builtins[i].name, name))
            return &builtins[i].def;
    }
    return NULL;
}

pj_builtin_kind_t pj_builtin_kind(const es_proj_def_t *def)
{
    for (size_t i = 0; i < nbuiltins; i++) {
        if (def == &builtins[i].def)
            return builtins[i].kind;
    }
    return PJ_BUILTIN_NONE;
}

pj_runner_t *pj_history_runner(es_projector_t *pj, const char *aggregate)
{
    for (size_t i = 0; i < pj->nrunners; i++) {
        pj_runner_t *r = &pj->runners[i];
        if (pj_builtin_kind(r->def) == PJ_BUILTIN_HISTORY &&
            !strcmp(r->def->aggregates[0], aggregate))
            return r;
    }
    return NULL;
}

es_err_t pj_builtins_open(es_registry_t *reg, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&decoder_mu);
    es_err_t err = ES_ERR_OK;
    if (!decoder && !(decoder = es_serde_new(reg, "history", NULL, false, 0, errstr, errstr_size)))
        err = ES_ERR_REGISTRY;
    pthread_mutex_unlock(&decoder_mu);
    return err;
}

void pj_builtins_close(void)
{
    pthread_mutex_lock(&decoder_mu);
    es_serde_destroy(decoder);
    decoder = NULL;
    pthread_mutex_unlock(&decoder_mu);
}
