/*
 * peers.c — partitioned mode: where the other instances are, and talking to
 * them (partitions.c holds the slices, the ownership and the merging).
 *
 * Each instance's live consumer carries its advertised query and admin URLs
 * in its client.id ("escqrs-projector <url> <admin url>"); the group's
 * current assignment, with those client ids, comes from the coordinator
 * (DescribeConsumerGroups on the projector's shared look-up handle), cached
 * for PJ_OWNERS_TTL_MS and read again, at most every PJ_OWNERS_MIN_MS, when
 * it names no owner.
 *
 * A query about one aggregate owned elsewhere is forwarded once, with the
 * caller's Authorization and traceparent and the header X-Escqrs-Forwarded;
 * a forwarded query that meets a non-owner again (the partition moved in
 * between) answers 503 moving instead of hopping on.  A peer's slices are
 * read from its admin listener (GET /admin/projections/{name}/slice) with
 * projector.peer.token; keys and values travel as hex (mem.h).
 */
#include "projector.h"

#include "escqrs/http_client.h"
#include "escqrs/log.h"
#include "escqrs/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PJ_OWNERS_TTL_MS    5000  /* the group's assignment is re-read at most this often... */
#define PJ_OWNERS_MIN_MS    500   /* ...or sooner when it names no owner, but not more often */
#define PJ_DESCRIBE_MS      5000  /* one DescribeConsumerGroups request */
#define PJ_FORWARD_EXTRA_MS 5000  /* a forwarded query may take query.wait.max.ms plus this */
#define PJ_SLICE_TIMEOUT_MS 10000 /* one peer's slice entries */
#define PJ_CLIENT_ID_TAG    "escqrs-projector"
#define PJ_FORWARDED_HEADER "X-Escqrs-Forwarded"
#define PJ_HEADER_MAX       4200 /* "Authorization: Bearer <token>" */

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

static size_t topic_index(const pj_runner_t *r, const char *topic)
{
    for (size_t t = 0; t < r->ntopics; t++) {
        if (!strcmp(r->topic[t], topic))
            return t;
    }
    return SIZE_MAX;
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
        size_t t = topic_index(r, tl->elems[i].topic);
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

es_err_t pj_owner_of(pj_runner_t *r, size_t t, int32_t p, char *url, char *admin, char *errstr,
                     size_t errstr_size)
{
    pj_assert_unlocked(&r->lock); /* a look-up may ask the broker: no swap waits for it */
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

void pj_answer_moving(es_http_resp_t *resp, const char *fmt, ...)
{
    char msg[PJ_ERRSTR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    es_http_resp_header(resp, "Retry-After", "1");
    es_http_resp_error(resp, 503, "moving", "%s", msg);
}

void pj_forward(pj_runner_t *r, size_t t, int32_t p, es_http_req_t *req, es_http_resp_t *resp)
{
    char url[PJ_URL_MAX], admin[PJ_URL_MAX], errstr[PJ_ERRSTR_MAX] = "";
    pj_assert_unlocked(&r->lock); /* a request to a peer: no swap waits for it */
    if (es_http_req_header(req, PJ_FORWARDED_HEADER)) { /* one hop: the owner moved meanwhile */
        pj_answer_moving(resp, "%s/%d is not folded here (a rebalance)", r->topic[t], (int)p);
        return;
    }
    if (pj_owner_of(r, t, p, url, admin, errstr, sizeof(errstr))) {
        pj_answer_moving(resp, "%s", errstr);
        return;
    }
    if (!strcmp(url, r->pj->advertise_url)) { /* the group says us, the loop not yet */
        pj_answer_moving(resp, "%s/%d is being assigned here", r->topic[t], (int)p);
        return;
    }
    es_buf_t target = {0}, qs = {0}, body = {0};
    es_http_req_path_encoded(req, &qs); /* the id as sent: `a%3Fb` is not the path `a` */
    es_buf_appendf(&target, "%s%.*s", url, (int)qs.len, qs.data);
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

/* ------------------------------------------------------------ peers' slices */

es_err_t pj_peer_slice(pj_runner_t *r, const char *admin, const char *parts, bool scan,
                       const void *key, size_t keylen, pj_entry_cb_t *cb, void *opaque,
                       char *errstr, size_t errstr_size)
{
    es_buf_t url = {0}, resp = {0}, k = {0}, v = {0};
    pj_assert_unlocked(&r->lock); /* a request to a peer: no swap waits for it */
    es_buf_appendf(&url, "%s/admin/projections/%s/slice?parts=%s&%s=", admin, r->def->name, parts,
                   scan ? "prefix" : "key");
    es_buf_put_hex(&url, key, keylen);
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
                                   &status, &resp, errstr, errstr_size);
    json_t *doc = NULL;
    if (!err) {
        json_error_t je;
        doc = json_loadb(resp.data, resp.len, 0, &je);
        json_t *entries = json_object_get(doc, "entries");
        if (status != 200 || !json_is_array(entries)) {
            snprintf(errstr, errstr_size, "slice of %s from %s: HTTP %ld %.200s", parts, admin,
                     status, resp.data ? resp.data : "");
            err = status == 409 ? ES_ERR_STATE : ES_ERR_HTTP;
        }
        size_t i;
        json_t *e;
        json_array_foreach(err ? NULL : entries, i, e)
        {
            if (!es_hex_decode(json_string_value(json_array_get(e, 0)) ?: "x", &k) ||
                !es_hex_decode(json_string_value(json_array_get(e, 1)) ?: "x", &v)) {
                snprintf(errstr, errstr_size, "slice from %s: a bad entry", admin);
                err = ES_ERR_HTTP;
                break;
            }
            if (!cb(opaque, k.data, k.len, v.data, v.len)) {
                snprintf(errstr, errstr_size, "slice from %s: entries cannot be merged", admin);
                err = ES_ERR_DECODE;
                break;
            }
        }
    }
    json_decref(doc);
    es_buf_free(&url);
    es_buf_free(&resp);
    es_buf_free(&k);
    es_buf_free(&v);
    return err;
}
