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
 * Where the others are.  Each instance's consumer carries its advertised
 * query and admin URLs in its client.id; the group's current assignment,
 * with those client ids, comes from the coordinator (DescribeConsumerGroups
 * on the projector's shared lookup handle), cached for PJ_OWNERS_TTL_MS and
 * re-read when it does not name an owner.
 *
 * Queries (api.c decides which): one aggregate's query goes to the owner of
 * its partition (the producers' murmur2 of its id), one hop, forwarded with
 * the caller's credentials and trace context; a query spanning aggregates
 * reads through a merged reader: each partition's slice from its owner (the
 * local store, or a peer's /admin/projections/{name}/slice), combined per
 * key with the projection's `merge`.
 */
#include "loop.h"

#include "escqrs/http_client.h"
#include "escqrs/log.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG                 "projector"
#define PJ_OWNERS_TTL_MS    5000 /* the group's assignment is re-read at most this often... */
#define PJ_OWNERS_MIN_MS    500  /* ...or sooner when it names no owner, but not more often */
#define PJ_DESCRIBE_MS      5000 /* one DescribeConsumerGroups request */
#define PJ_FORWARD_EXTRA_MS 5000 /* a forwarded query may take query.wait.max.ms plus this */
#define PJ_SLICE_TIMEOUT_MS 10000
#define PJ_CLIENT_ID_TAG    "escqrs-projector"
#define PJ_FORWARDED_HEADER "X-Escqrs-Forwarded"
#define PJ_HEADER_MAX       4200 /* "Authorization: Bearer <token>" */

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

static es_err_t slice_scan(void *opaque, const void *prefix, size_t prefixlen,
                           bool (*cb)(void *, const char *, size_t, const char *, size_t),
                           void *cbopaque, char *errstr, size_t errstr_size)
{
    pj_slice_t *s = opaque;
    es_buf_set(&s->key, s->prefix, PJ_SLICE_PREFIX_LEN);
    es_buf_append(&s->key, prefix, prefixlen);
    es_store_iter_t *it = es_store_iter_prefix(s->st, s->key.data, s->key.len);
    const char *k, *v;
    size_t kl, vl;
    while (es_store_iter_next(it, &k, &kl, &v, &vl)) {
        if (!cb(cbopaque, k + PJ_SLICE_PREFIX_LEN, kl - PJ_SLICE_PREFIX_LEN, v, vl))
            break;
    }
    es_store_iter_destroy(it);
    return ES_ERR_OK;
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

pj_here_t pj_partition_here(pj_runner_t *r, size_t t, int32_t p)
{
    pj_mutex_lock(&r->mu);
    pj_here_t here = PJ_HERE_ELSEWHERE;
    if (r->connected && r->owned[t] && r->owned[t][p])
        here = r->owned_from[t][p] >= 0 && r->applied[t][p] >= r->owned_from[t][p] ? PJ_HERE_OWNED
                                                                                   : PJ_HERE_MOVING;
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
                json_array_append_new(
                    a,
                    json_pack("{s:s, s:i, s:b}", "topic", r->topic[t], "partition", p, "current",
                              r->owned_from[t][p] >= 0 && r->applied[t][p] >= r->owned_from[t][p]));
        }
    }
    pj_mutex_unlock(&r->mu);
    return a;
}

void pj_client_id(const es_projector_t *pj, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s %s %s", PJ_CLIENT_ID_TAG, pj->advertise_url, pj->advertise_admin);
}

/* ------------------------------------------------------------------ owners */

/* Where every partition of one runner's topics is folded, from the group. */
struct pj_owners_s {
    int64_t read_ms;
    char **url[ES_PROJ_MAX_AGGREGATES];   /* per partition: query URL, NULL none */
    char **admin[ES_PROJ_MAX_AGGREGATES]; /* per partition: admin URL */
};

static void owners_free(pj_runner_t *r, pj_owners_t *o)
{
    if (!o)
        return;
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; o->url[t] && p < r->nparts[t]; p++) {
            free(o->url[t][p]);
            free(o->admin[t][p]);
        }
        free(o->url[t]);
        free(o->admin[t]);
    }
    free(o);
}

void pj_owners_destroy(pj_runner_t *r)
{
    owners_free(r, r->owners);
    r->owners = NULL;
    pthread_mutex_destroy(&r->owners_mu);
}

/* One member: its client.id's URLs on every partition it is assigned. */
static void owners_add_member(pj_runner_t *r, pj_owners_t *o, const rd_kafka_MemberDescription_t *m)
{
    const char *cid = rd_kafka_MemberDescription_client_id(m);
    char tag[32], url[PJ_URL_MAX], admin[PJ_URL_MAX];
    if (!cid || sscanf(cid, "%31s %1023s %1023s", tag, url, admin) != 3 ||
        strcmp(tag, PJ_CLIENT_ID_TAG) != 0)
        return;
    const rd_kafka_MemberAssignment_t *as = rd_kafka_MemberDescription_assignment(m);
    const rd_kafka_topic_partition_list_t *tl =
        as ? rd_kafka_MemberAssignment_partitions(as) : NULL;
    for (int i = 0; tl && i < tl->cnt; i++) {
        size_t t = pj_topic_index(r, tl->elems[i].topic);
        int p = tl->elems[i].partition;
        if (t == SIZE_MAX || p < 0 || p >= r->nparts[t])
            continue;
        free(o->url[t][p]);
        free(o->admin[t][p]);
        o->url[t][p] = es_strdup(url);
        o->admin[t][p] = es_strdup(admin);
    }
}

/* The group's current assignment, from its coordinator. */
static pj_owners_t *owners_read(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    char group[PJ_GROUP_MAX];
    rd_kafka_t *rk = pj_lookup_rk(r->pj, errstr, errstr_size);
    if (!rk)
        return NULL;
    snprintf(group, sizeof(group), "escqrs-projector.%s.%s", r->pj->name, r->def->name);
    const char *groups[1] = {group};
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_AdminOptions_set_request_timeout(ao, PJ_DESCRIBE_MS, NULL, 0);
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, PJ_DESCRIBE_MS + 1000);
    pj_owners_t *o = NULL;
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **gs =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
    const rd_kafka_error_t *gerr = n == 1 ? rd_kafka_ConsumerGroupDescription_error(gs[0]) : NULL;
    if (!ev || rd_kafka_event_error(ev) || n != 1 || gerr) {
        snprintf(errstr, errstr_size, "describe group %s: %s", group,
                 !ev                        ? "timed out"
                 : rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                 : gerr                     ? rd_kafka_error_string(gerr)
                                            : "no answer");
    } else {
        o = es_calloc(1, sizeof(*o));
        for (size_t t = 0; t < r->ntopics; t++) {
            o->url[t] = es_calloc((size_t)r->nparts[t], sizeof(char *));
            o->admin[t] = es_calloc((size_t)r->nparts[t], sizeof(char *));
        }
        for (size_t i = 0; i < rd_kafka_ConsumerGroupDescription_member_count(gs[0]); i++)
            owners_add_member(r, o, rd_kafka_ConsumerGroupDescription_member(gs[0], i));
        o->read_ms = es_now_ms();
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    return o;
}

/*
 * The query and admin URLs of the owner of partition @p p of topic @p t
 * (ES_ERR_NOT_FOUND: the group names none, a rebalance is under way).
 */
static es_err_t owner_of(pj_runner_t *r, size_t t, int32_t p, char *url, char *admin, char *errstr,
                         size_t errstr_size)
{
    pthread_mutex_lock(&r->owners_mu);
    int64_t now = es_now_ms();
    pj_owners_t *o = r->owners;
    bool missing = !o || !o->url[t][p];
    if (!o || now - o->read_ms > PJ_OWNERS_TTL_MS ||
        (missing && now - o->read_ms > PJ_OWNERS_MIN_MS)) {
        pj_owners_t *fresh = owners_read(r, errstr, errstr_size);
        if (fresh) {
            owners_free(r, r->owners);
            r->owners = o = fresh;
        }
    }
    es_err_t err = ES_ERR_NOT_FOUND;
    if (o && o->url[t][p]) {
        snprintf(url, PJ_URL_MAX, "%s", o->url[t][p]);
        snprintf(admin, PJ_URL_MAX, "%s", o->admin[t][p]);
        err = ES_ERR_OK;
    } else if (o) {
        snprintf(errstr, errstr_size, "no instance owns %s/%d now (a rebalance?)", r->topic[t], p);
    }
    pthread_mutex_unlock(&r->owners_mu);
    return err;
}

/* ---------------------------------------------------------------- forward */

void pj_forward(pj_runner_t *r, size_t t, int32_t p, es_http_req_t *req, es_http_resp_t *resp)
{
    char url[PJ_URL_MAX], admin[PJ_URL_MAX], errstr[PJ_ERRSTR_MAX] = "";
    if (es_http_req_header(req, PJ_FORWARDED_HEADER)) { /* one hop: the owner moved meanwhile */
        es_http_resp_header(resp, "Retry-After", "1");
        es_http_resp_error(resp, 503, "moving", "%s/%d is not folded here (a rebalance)",
                           r->topic[t], (int)p);
        return;
    }
    if (owner_of(r, t, p, url, admin, errstr, sizeof(errstr))) {
        es_http_resp_header(resp, "Retry-After", "1");
        es_http_resp_error(resp, 503, "moving", "%s", errstr);
        return;
    }
    if (!strcmp(url, r->pj->advertise_url)) { /* the group says us, the loop not yet */
        es_http_resp_header(resp, "Retry-After", "1");
        es_http_resp_error(resp, 503, "moving", "%s/%d is being assigned here", r->topic[t],
                           (int)p);
        return;
    }
    es_buf_t target = {0}, qs = {0}, body = {0};
    es_buf_appendf(&target, "%s%s", url, es_http_req_path(req));
    es_http_req_query_string(req, &qs);
    if (qs.len)
        es_buf_appendf(&target, "?%.*s", (int)qs.len, qs.data);
    es_buf_append(&target, "", 1);
    char h_auth[PJ_HEADER_MAX], h_tp[128], h_fw[64];
    const char *headers[4];
    size_t nh = 0;
    const char *auth = es_http_req_header(req, "Authorization");
    if (auth && strlen(auth) < sizeof(h_auth) - 32) {
        snprintf(h_auth, sizeof(h_auth), "Authorization: %s", auth);
        headers[nh++] = h_auth;
    }
    snprintf(h_tp, sizeof(h_tp), "traceparent: %s", es_http_req_traceparent(req));
    headers[nh++] = h_tp;
    snprintf(h_fw, sizeof(h_fw), "%s: 1", PJ_FORWARDED_HEADER);
    headers[nh++] = h_fw;
    headers[nh] = NULL;
    long status = 0;
    es_err_t err = es_http_fetch_with_headers("GET", target.data, NULL, headers, NULL,
                                              r->pj->wait_max_ms + PJ_FORWARD_EXTRA_MS, &status,
                                              &body, errstr, sizeof(errstr));
    es_counter_add(r->pj->m_forwarded, 1);
    if (err) {
        pthread_mutex_lock(&r->owners_mu); /* read the group again next time */
        if (r->owners)
            r->owners->read_ms = 0;
        pthread_mutex_unlock(&r->owners_mu);
        es_http_resp_header(resp, "Retry-After", "1");
        es_http_resp_error(resp, 503, "unavailable", "the owner of %s/%d (%s) did not answer: %s",
                           r->topic[t], (int)p, url, errstr);
    } else {
        es_http_resp_text(resp, (int)status, "application/json", body.data ? body.data : "",
                          body.len);
    }
    es_buf_free(&target);
    es_buf_free(&qs);
    es_buf_free(&body);
}

/* ------------------------------------------------------------ hex entries */

static void hex_append(es_buf_t *b, const char *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        char two[2] = {digits[(unsigned char)data[i] >> 4], digits[(unsigned char)data[i] & 15]};
        es_buf_append(b, two, 2);
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool hex_decode(const char *s, es_buf_t *out)
{
    size_t n = strlen(s);
    es_buf_clear(out);
    if (n % 2)
        return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        char c = (char)(hi << 4 | lo);
        es_buf_append(out, &c, 1);
    }
    return true;
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
        err = be.scan(be.opaque, w->key, w->keylen, merge_cb, mg, mg->errstr, sizeof(mg->errstr));
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

/* @p w of a peer's slices (@p parts "t.p,t.p") into @p mg. */
static es_err_t merge_remote(pj_runner_t *r, const char *admin, const char *parts,
                             const wanted_t *w, merge_t *mg)
{
    es_buf_t url = {0}, resp = {0}, k = {0}, v = {0};
    es_buf_appendf(&url, "%s/admin/projections/%s/slice?parts=%s&%s=", admin, r->def->name, parts,
                   w->scan ? "prefix" : "key");
    hex_append(&url, w->key, w->keylen);
    es_buf_append(&url, "", 1);
    char h_auth[PJ_HEADER_MAX];
    const char *headers[2] = {NULL, NULL};
    if (*r->pj->peer_token) {
        snprintf(h_auth, sizeof(h_auth), "Authorization: Bearer %s", r->pj->peer_token);
        headers[0] = h_auth;
    }
    long status = 0;
    es_err_t err =
        es_http_fetch_with_headers("GET", url.data, NULL, headers, NULL, PJ_SLICE_TIMEOUT_MS,
                                   &status, &resp, mg->errstr, sizeof(mg->errstr));
    json_t *doc = NULL;
    if (!err) {
        json_error_t je;
        doc = json_loadb(resp.data, resp.len, 0, &je);
        json_t *entries = json_object_get(doc, "entries");
        if (status != 200 || !json_is_array(entries)) {
            snprintf(mg->errstr, sizeof(mg->errstr), "slice of %s from %s: HTTP %ld %.200s", parts,
                     admin, status, resp.data ? resp.data : "");
            err = status == 409 ? ES_ERR_STATE : ES_ERR_HTTP;
        }
        size_t i;
        json_t *e;
        json_array_foreach(err ? NULL : entries, i, e)
        {
            if (!hex_decode(json_string_value(json_array_get(e, 0)) ?: "x", &k) ||
                !hex_decode(json_string_value(json_array_get(e, 1)) ?: "x", &v)) {
                snprintf(mg->errstr, sizeof(mg->errstr), "slice from %s: a bad entry", admin);
                err = ES_ERR_HTTP;
                break;
            }
            merge_put(mg, k.data, k.len, v.data, v.len);
        }
    }
    json_decref(doc);
    es_buf_free(&url);
    es_buf_free(&resp);
    es_buf_free(&k);
    es_buf_free(&v);
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
 * owner, merged into @p mg.  Locks: the caller holds `lock` (read).
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
            err = merge_local(r, t, p, w, mg);
            done[p] = true;
        } else if (here == PJ_HERE_MOVING) {
            snprintf(mg->errstr, sizeof(mg->errstr), "%s/%d is moving here", r->topic[t], p);
            err = ES_ERR_STATE;
        } else if ((err = owner_of(r, t, p, url, admins[p], mg->errstr, sizeof(mg->errstr)))) {
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
        err = merge_remote(r, admins[p], parts.data, w, mg);
        es_buf_free(&parts);
    }
    if (!err && mg->bad)
        err = ES_ERR_STATE;
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

static es_err_t merged_scan(void *opaque, const void *prefix, size_t prefixlen,
                            bool (*cb)(void *, const char *, size_t, const char *, size_t),
                            void *cbopaque, char *errstr, size_t errstr_size)
{
    es_proj_memmap_t *map = es_proj_memmap_new();
    wanted_t w = {.key = prefix, .keylen = prefixlen, .scan = true};
    es_err_t err = merged_run(opaque, &w, map, errstr, errstr_size);
    if (!err) {
        es_proj_backend_t be = es_proj_memmap_backend(map);
        err = be.scan(be.opaque, prefix, prefixlen, cb, cbopaque, errstr, errstr_size);
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
    pj_rwlock_rdlock(&r->lock);
    int st = render(q, be, &body, errstr, sizeof(errstr));
    pj_rwlock_unlock(&r->lock);
    if (m.err) { /* the handler saw a failed read: say why, not what it made of it */
        json_decref(body);
        if (m.err == ES_ERR_STATE && !strstr(m.errstr, "merged")) {
            es_http_resp_header(resp, "Retry-After", "1");
            es_http_resp_error(resp, 503, "moving", "%s", m.errstr);
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

/* -------------------------------------------------------- the slice route */

static bool parse_parts(pj_runner_t *r, const char *s, int32_t *tp, size_t *n, size_t max)
{
    *n = 0;
    while (s && *s && *n < max) {
        char *end;
        long t = strtol(s, &end, 10);
        if (*end != '.' || t < 0 || (size_t)t >= r->ntopics)
            return false;
        long p = strtol(end + 1, &end, 10);
        if (p < 0 || p >= r->nparts[t] || (*end && *end != ','))
            return false;
        tp[2 * *n] = (int32_t)t;
        tp[2 * *n + 1] = (int32_t)p;
        (*n)++;
        s = *end ? end + 1 : end;
    }
    return *n > 0 && (!s || !*s);
}

static bool entries_json_cb(void *opaque, const char *key, size_t keylen, const char *val,
                            size_t vallen)
{
    es_buf_t k = {0}, v = {0};
    hex_append(&k, key, keylen);
    hex_append(&v, val, vallen);
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
        !(key || prefix) || (key && prefix) || !hex_decode(key ? key : prefix, &want)) {
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
        err = ES_ERR_STATE;
    if (err) {
        es_http_resp_error(resp, err == ES_ERR_STATE ? 409 : 500,
                           err == ES_ERR_STATE ? "not_owner" : "internal", "%s", mg.errstr);
    } else {
        json_t *entries = json_array();
        es_proj_backend_t be = es_proj_memmap_backend(mg.map);
        be.scan(be.opaque, "", 0, entries_json_cb, entries, mg.errstr, sizeof(mg.errstr));
        es_http_resp_json(resp, 200, json_pack("{s:o}", "entries", entries));
    }
    es_proj_memmap_destroy(mg.map);
    es_buf_free(&mg.old);
    es_buf_free(&mg.sum);
    es_buf_free(&want);
}
