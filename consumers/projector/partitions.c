/*
 * partitions.c — partitioned mode (`projector.mode=partitioned`): the
 * instances of a projector share each projection's consumer group, each
 * folds the partitions the group gives it, and any instance answers any
 * query.
 *
 * Slices.  An instance keeps one store per projection, as in replica mode,
 * but every view key is written behind its partition's prefix
 * (0x01, topic index, partition as BE16: es_proj_txn_set_prefix), so the
 * store holds one independent slice per partition, each consistent with
 * that partition's stored offset (same RocksDB batch).  A partition that
 * moves away leaves its slice behind untouched; if it comes back, folding
 * resumes from the slice's own offset, and a partition never seen starts
 * from offset 0: a rebalance moves a partition by replaying that partition
 * only.  Nothing ever adds up slices of partitions the instance does not
 * own, so a stale slice is never read.
 *
 * Ownership.  The live loop's rebalance callback (consumer.c) marks its
 * partitions owned or not; an owned partition is *moving* until the loop
 * has applied it up to the high watermark seen after the assignment (the
 * live tick records it, offsets.c), and serves queries only then.
 *
 * Queries (api.c decides which): one aggregate's query goes to the owner of
 * its partition (the producers' murmur2 of its id), one hop, forwarded with
 * the caller's credentials and trace context; a query spanning aggregates
 * reads through a merged reader: each partition's slice from its owner (the
 * local store, or a peer's /admin/projections/{name}/slice), combined per
 * key with the projection's `merge`.  peers.c finds the owners and talks to
 * them.
 */
#include "projector.h"

#include "escqrs/log.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ slices */

void pj_slice_prefix(size_t t, int32_t p, char *out)
{
    out[0] = 0x01;
    out[1] = (char)t;
    out[2] = (char)((p >> 8) & 0xff);
    out[3] = (char)(p & 0xff);
}

static es_err_t slice_get(void *opaque, const void *key, size_t keylen, es_buf_t *out, char *errstr,
                          size_t errstr_size)
{
    pj_slice_t *s = opaque;
    es_buf_set(&s->key, s->prefix, PJ_SLICE_PREFIX_LEN);
    es_buf_append(&s->key, key, keylen);
    return es_store_get(s->st, s->key.data, s->key.len, out, errstr, errstr_size);
}

static es_err_t slice_scan(void *opaque, const void *prefix, size_t prefixlen, const void *start,
                           size_t startlen,
                           bool (*cb)(void *, const char *, size_t, const char *, size_t),
                           void *cbopaque, char *errstr, size_t errstr_size)
{
    pj_slice_t *s = opaque;
    es_buf_t from = {0};
    es_buf_set(&s->key, s->prefix, PJ_SLICE_PREFIX_LEN);
    es_buf_append(&s->key, prefix, prefixlen);
    if (start) {
        es_buf_set(&from, s->prefix, PJ_SLICE_PREFIX_LEN);
        es_buf_append(&from, start, startlen);
    }
    es_err_t err = pj_store_scan(s->st, s->key.data, s->key.len, from.data, from.len,
                                 PJ_SLICE_PREFIX_LEN, cb, cbopaque, errstr, errstr_size);
    es_buf_free(&from);
    return err;
}

es_proj_backend_t pj_slice_backend(pj_slice_t *s, es_store_t *st, size_t t, int32_t p)
{
    s->st = st;
    s->key = (es_buf_t){0};
    pj_slice_prefix(t, p, s->prefix);
    es_proj_backend_t be = {.get = slice_get, .scan = slice_scan, .opaque = s};
    return be;
}

void pj_slice_done(pj_slice_t *s)
{
    es_buf_free(&s->key);
}

/* --------------------------------------------------------------- ownership */

void pj_owned_size_locked(pj_runner_t *r)
{
    pj_assert_locked(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++) {
        r->owned[t] = es_calloc((size_t)r->nparts[t], sizeof(bool));
        r->owned_from[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
        for (int p = 0; p < r->nparts[t]; p++)
            r->owned[t][p] = !r->pj->partitioned; /* replica mode: every partition, from 0 */
    }
}

void pj_owned_set(pj_runner_t *r, size_t t, int32_t p, bool owned)
{
    pj_mutex_lock(&r->mu);
    r->owned[t][p] = owned;
    r->owned_from[t][p] = -1; /* the live tick records the high watermark */
    pj_mutex_unlock(&r->mu);
}

/* An owned partition has applied the high watermark seen after its assignment.  Locks: `mu`. */
static bool current_locked(const pj_runner_t *r, size_t t, int32_t p)
{
    return r->owned_from[t][p] >= 0 && r->applied[t][p] >= r->owned_from[t][p];
}

pj_here_t pj_partition_here(pj_runner_t *r, size_t t, int32_t p)
{
    pj_mutex_lock(&r->mu);
    pj_here_t here = PJ_HERE_ELSEWHERE;
    if (r->connected && r->owned[t] && r->owned[t][p])
        here = current_locked(r, t, p) ? PJ_HERE_OWNED : PJ_HERE_MOVING;
    pj_mutex_unlock(&r->mu);
    return here;
}

json_t *pj_owned_json(pj_runner_t *r)
{
    json_t *a = json_array();
    pj_mutex_lock(&r->mu);
    for (size_t t = 0; r->connected && t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (r->owned[t][p])
                json_array_append_new(a, json_pack("{s:s, s:i, s:b}", "topic", r->topic[t],
                                                   "partition", p, "current",
                                                   current_locked(r, t, p)));
        }
    }
    pj_mutex_unlock(&r->mu);
    return a;
}

/* ------------------------------------------------------------------ merging */

/* Values of one key from several partitions, combined into a memory map. */
typedef struct merge_s {
    const es_proj_def_t *def;
    es_proj_memmap_t *map;
    es_buf_t old, sum;
    bool bad;
    char errstr[PJ_ERRSTR_MAX];
} merge_t;

static void merge_put(merge_t *mg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    es_proj_backend_t be = es_proj_memmap_backend(mg->map);
    char e[8];
    if (be.get(be.opaque, key, keylen, &mg->old, e, sizeof(e)) != ES_ERR_OK) {
        es_proj_memmap_put(mg->map, key, keylen, val, vallen);
        return;
    }
    if (!mg->def->merge ||
        !mg->def->merge(key, keylen, mg->old.data, mg->old.len, val, vallen, &mg->sum)) {
        mg->bad = true;
        snprintf(mg->errstr, sizeof(mg->errstr),
                 "%s: the partitions' values of a key (%zu bytes) "
                 "cannot be merged",
                 mg->def->name, keylen);
        return;
    }
    es_proj_memmap_put(mg->map, key, keylen, mg->sum.data, mg->sum.len);
}

static bool merge_cb(void *opaque, const char *key, size_t keylen, const char *val, size_t vallen)
{
    merge_put(opaque, key, keylen, val, vallen);
    return !((merge_t *)opaque)->bad;
}

/* What one request reads: a key, or every key under a prefix. */
typedef struct wanted_s {
    const void *key;
    size_t keylen;
    bool scan;
} wanted_t;

/* @p w of the local slice of (t, p) into @p mg.  Locks: the caller holds `lock` (read). */
static es_err_t merge_local(pj_runner_t *r, size_t t, int32_t p, const wanted_t *w, merge_t *mg)
{
    pj_slice_t s;
    es_proj_backend_t be = pj_slice_backend(&s, pj_runner_live(r), t, p);
    es_err_t err;
    if (w->scan) {
        err = be.scan(be.opaque, w->key, w->keylen, NULL, 0, merge_cb, mg, mg->errstr,
                      sizeof(mg->errstr));
    } else {
        es_buf_t v = {0};
        err = be.get(be.opaque, w->key, w->keylen, &v, mg->errstr, sizeof(mg->errstr));
        if (!err)
            merge_put(mg, w->key, w->keylen, v.data, v.len);
        else if (err == ES_ERR_NOT_FOUND)
            err = ES_ERR_OK;
        es_buf_free(&v);
    }
    pj_slice_done(&s);
    return err;
}

/* A merged reader: the runner, and what the last call found wrong. */
typedef struct merged_s {
    pj_runner_t *r;
    size_t t;
    es_err_t err; /* ES_ERR_STATE: some partition is moving */
    char errstr[PJ_ERRSTR_MAX];
} merged_t;

/*
 * Everything of @p w over every partition of topic m->t, each from its
 * owner, merged into @p mg.  Locks: the caller holds none; `lock` is read-held
 * for each local slice only, never across a peer's request or the owners'
 * look-up (with a writer waiting on two instances at once, each one's merged
 * answer holding its lock across a request to the other would hold both until
 * the requests timed out; a waiting writer goes first, lock.c).
 */
static es_err_t merged_read(merged_t *m, const wanted_t *w, merge_t *mg)
{
    pj_runner_t *r = m->r;
    size_t t = m->t;
    int n = r->nparts[t];
    char(*admins)[PJ_URL_MAX] = es_calloc((size_t)n, sizeof(*admins));
    bool *done = es_calloc((size_t)n, sizeof(bool));
    es_err_t err = ES_ERR_OK;
    for (int p = 0; p < n && !err; p++) {
        pj_here_t here = pj_partition_here(r, t, p);
        char url[PJ_URL_MAX];
        if (here == PJ_HERE_OWNED) {
            pj_rwlock_rdlock(&r->lock);
            err = merge_local(r, t, p, w, mg);
            pj_rwlock_unlock(&r->lock);
            done[p] = true;
        } else if (here == PJ_HERE_MOVING) {
            snprintf(mg->errstr, sizeof(mg->errstr), "%s/%d is moving here", r->topic[t], p);
            err = ES_ERR_STATE;
        } else if ((err = pj_owner_of(r, t, p, url, admins[p], mg->errstr, sizeof(mg->errstr)))) {
            err = ES_ERR_STATE;
        } else if (!strcmp(url, r->pj->advertise_url)) {
            snprintf(mg->errstr, sizeof(mg->errstr), "%s/%d is being assigned here", r->topic[t],
                     p);
            err = ES_ERR_STATE;
        }
    }
    for (int p = 0; p < n && !err; p++) { /* one request per peer */
        if (done[p])
            continue;
        es_buf_t parts = {0};
        for (int q = p; q < n; q++) {
            if (!done[q] && !strcmp(admins[q], admins[p])) {
                es_buf_appendf(&parts, "%s%d.%d", parts.len ? "," : "", (int)t, q);
                done[q] = true;
            }
        }
        es_buf_append(&parts, "", 1);
        err = pj_peer_slice(r, admins[p], parts.data, w->scan, w->key, w->keylen, merge_cb, mg,
                            mg->errstr, sizeof(mg->errstr));
        es_buf_free(&parts);
    }
    if (!err && mg->bad)
        err = ES_ERR_DECODE; /* values that cannot be combined: not a move */
    free(admins);
    free(done);
    return err;
}

static es_err_t merged_run(merged_t *m, const wanted_t *w, es_proj_memmap_t *map, char *errstr,
                           size_t errstr_size)
{
    merge_t mg = {.def = m->r->def, .map = map};
    es_err_t err = merged_read(m, w, &mg);
    if (err) {
        m->err = err;
        snprintf(m->errstr, sizeof(m->errstr), "%s", mg.errstr);
        snprintf(errstr, errstr_size, "%s", mg.errstr);
    }
    es_buf_free(&mg.old);
    es_buf_free(&mg.sum);
    return err;
}

static es_err_t merged_get(void *opaque, const void *key, size_t keylen, es_buf_t *out,
                           char *errstr, size_t errstr_size)
{
    es_proj_memmap_t *map = es_proj_memmap_new();
    wanted_t w = {.key = key, .keylen = keylen};
    es_err_t err = merged_run(opaque, &w, map, errstr, errstr_size);
    if (!err) {
        es_proj_backend_t be = es_proj_memmap_backend(map);
        err = be.get(be.opaque, key, keylen, out, errstr, errstr_size);
    }
    es_proj_memmap_destroy(map);
    return err;
}

static es_err_t merged_scan(void *opaque, const void *prefix, size_t prefixlen, const void *start,
                            size_t startlen,
                            bool (*cb)(void *, const char *, size_t, const char *, size_t),
                            void *cbopaque, char *errstr, size_t errstr_size)
{
    es_proj_memmap_t *map = es_proj_memmap_new();
    wanted_t w = {.key = prefix, .keylen = prefixlen, .scan = true};
    es_err_t err = merged_run(opaque, &w, map, errstr, errstr_size);
    if (!err) {
        es_proj_backend_t be = es_proj_memmap_backend(map);
        err = be.scan(be.opaque, prefix, prefixlen, start, startlen, cb, cbopaque, errstr,
                      errstr_size);
    }
    es_proj_memmap_destroy(map);
    return err;
}

void pj_merged_answer(pj_runner_t *r, size_t t,
                      int (*render)(const void *q, es_proj_backend_t be, json_t **body,
                                    char *errstr, size_t errstr_size),
                      const void *q, es_http_resp_t *resp)
{
    merged_t m = {.r = r, .t = t};
    es_proj_backend_t be = {.get = merged_get, .scan = merged_scan, .opaque = &m};
    json_t *body = NULL;
    char errstr[PJ_ERRSTR_MAX] = "";
    int st = render(q, be, &body, errstr, sizeof(errstr)); /* locks per local slice */
    if (m.err) { /* the handler saw a failed read: say why, not what it made of it */
        json_decref(body);
        if (m.err == ES_ERR_STATE) {
            pj_answer_moving(resp, "%s", m.errstr);
        } else {
            es_http_resp_error(resp, 503, "unavailable", "%s", m.errstr);
        }
        return;
    }
    if (body)
        es_http_resp_json(resp, st, body);
    else if (st == 404)
        es_http_resp_error(resp, 404, "not_found", "not found");
    else
        es_http_resp_error(resp, st >= 400 ? st : 500, "internal", "%s", errstr);
}

/* ------------------------------------------------------------------ routing */

bool pj_route_here(pj_runner_t *r, size_t t, int32_t part, es_http_req_t *req, es_http_resp_t *resp)
{
    if (part < 0)
        return true; /* spans aggregates: merged here */
    switch (pj_partition_here(r, t, part)) {
    case PJ_HERE_OWNED:
        return true;
    case PJ_HERE_MOVING:
        pj_answer_moving(resp, "%s/%d is catching up here after a rebalance", r->topic[t],
                         (int)part);
        return false;
    case PJ_HERE_ELSEWHERE:
        pj_forward(r, t, part, req, resp);
        return false;
    }
    return false;
}

bool pj_partitioned_refused(const pj_runner_t *r, const char *what, es_http_resp_t *resp)
{
    if (!r->pj->partitioned)
        return false;
    es_http_resp_error(resp, 409, "conflict",
                       "%s is not available in partitioned mode: each instance holds only the "
                       "slices of its partitions (docs/projector.md)",
                       what);
    return true;
}

/* -------------------------------------------------------- the slice route */

static bool parse_parts(pj_runner_t *r, const char *s, int32_t *tp, size_t *n, size_t max)
{
    *n = 0; /* "<topic>.<partition>[,...]": no empty entry, no trailing comma */
    while (s && *n < max) {
        const char *end;
        int64_t t, p;
        if (!es_parse_i64_prefix(s, &end, 0, (int64_t)r->ntopics - 1, &t) || *end != '.' ||
            !es_parse_i64_prefix(end + 1, &end, 0, r->nparts[t] - 1, &p) || (*end && *end != ','))
            return false;
        tp[2 * *n] = (int32_t)t;
        tp[2 * *n + 1] = (int32_t)p;
        (*n)++;
        s = *end ? end + 1 : NULL;
    }
    return *n > 0 && !s;
}

static bool entries_json_cb(void *opaque, const char *key, size_t keylen, const char *val,
                            size_t vallen)
{
    es_buf_t k = {0}, v = {0};
    es_buf_put_hex(&k, key, keylen);
    es_buf_put_hex(&v, val, vallen);
    json_array_append_new(
        opaque, json_pack("[s#, s#]", k.data ? k.data : "", k.len, v.data ? v.data : "", v.len));
    es_buf_free(&k);
    es_buf_free(&v);
    return true;
}

void pj_slice_serve(pj_runner_t *r, es_http_req_t *req, es_http_resp_t *resp)
{
    int32_t tp[2 * PJ_MAX_PARTITIONS];
    size_t n;
    const char *key = es_http_req_query(req, "key"), *prefix = es_http_req_query(req, "prefix");
    es_buf_t want = {0};
    if (!r->pj->partitioned) {
        es_http_resp_error(resp, 409, "conflict", "this projector runs in replica mode");
        return;
    }
    if (!parse_parts(r, es_http_req_query(req, "parts"), tp, &n, PJ_MAX_PARTITIONS) ||
        !(key || prefix) || (key && prefix) || !es_hex_decode(key ? key : prefix, &want)) {
        es_http_resp_error(resp, 400, "invalid_query",
                           "parts=<topic index>.<partition>,... and key= or prefix= in hex");
        es_buf_free(&want);
        return;
    }
    merge_t mg = {.def = r->def, .map = es_proj_memmap_new()};
    es_err_t err = ES_ERR_OK;
    pj_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < n && !err; i++) {
        if (pj_partition_here(r, (size_t)tp[2 * i], tp[2 * i + 1]) != PJ_HERE_OWNED) {
            snprintf(mg.errstr, sizeof(mg.errstr), "%s/%d is not current here", r->topic[tp[2 * i]],
                     (int)tp[2 * i + 1]);
            err = ES_ERR_STATE;
            break;
        }
        wanted_t w = {.key = want.data ? want.data : "", .keylen = want.len, .scan = !!prefix};
        err = merge_local(r, (size_t)tp[2 * i], tp[2 * i + 1], &w, &mg);
    }
    pj_rwlock_unlock(&r->lock);
    if (!err && mg.bad)
        err = ES_ERR_DECODE;
    if (err) {
        es_http_resp_error(resp, err == ES_ERR_STATE ? 409 : 500,
                           err == ES_ERR_STATE ? "not_owner" : "internal", "%s", mg.errstr);
    } else {
        json_t *entries = json_array();
        es_proj_backend_t be = es_proj_memmap_backend(mg.map);
        be.scan(be.opaque, "", 0, NULL, 0, entries_json_cb, entries, mg.errstr, sizeof(mg.errstr));
        es_http_resp_json(resp, 200, json_pack("{s:o}", "entries", entries));
    }
    es_proj_memmap_destroy(mg.map);
    es_buf_free(&mg.old);
    es_buf_free(&mg.sum);
    es_buf_free(&want);
}
