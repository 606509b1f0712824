/*
 * eventgen.c — builds contract events as Avro values for tests, plus a
 * random workload that keeps its own model of what every cart should look
 * like (independent of the projection code it checks).
 *
 * Schemas are the ones compiled into libescqrs from schemas/ (the one home
 * of every record definition).
 */
#include "eventgen.h"

#include "escqrs/envelope.h"
#include "escqrs/record.h"

#include "escqrs/serde.h"
#include "escqrs/schemas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct es_evgen_s {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
};

static avro_schema_t load_schema(const char *name)
{
    char err[512];
    avro_schema_t s = NULL;
    if (es_schema_parse(name, &s, err, sizeof(err)) != ES_ERR_OK) {
        fprintf(stderr, "eventgen: %s\n", err);
        abort();
    }
    return s;
}

es_evgen_t *es_evgen_new(const char *name)
{
    es_evgen_t *g = es_calloc(1, sizeof(*g));
    g->schema = load_schema(name);
    g->iface = avro_generic_class_from_schema(g->schema);
    avro_generic_value_new(g->iface, &g->value);
    return g;
}

void es_evgen_destroy(es_evgen_t *g)
{
    if (!g)
        return;
    avro_value_decref(&g->value);
    avro_value_iface_decref(g->iface);
    avro_schema_decref(g->schema);
    free(g);
}

avro_schema_t es_evgen_schema(es_evgen_t *g)
{
    return g->schema;
}

static void set_str(avro_value_t *rec, const char *name, const char *v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, name, &f, NULL);
    avro_value_set_string(&f, v);
}

static void set_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, name, &f, NULL);
    avro_value_set_long(&f, v);
}

static void set_int(avro_value_t *rec, const char *name, int32_t v)
{
    avro_value_t f;
    avro_value_get_by_name(rec, name, &f, NULL);
    avro_value_set_int(&f, v);
}

static void set_envelope(es_evgen_t *g, const char *idfield, const char *id, int64_t version,
                         int64_t ts)
{
    static unsigned long long seq;
    char uuid[64];
    avro_value_t f, b;
    seq++;
    snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012llx", seq);
    avro_value_reset(&g->value);
    set_str(&g->value, "event_id", uuid);
    set_str(&g->value, idfield, id);
    set_long(&g->value, "version", version);
    set_long(&g->value, "occurred_at", ts);
    set_str(&g->value, "command_id", uuid);
    avro_value_get_by_name(&g->value, "correlation_id", &f, NULL);
    avro_value_set_branch(&f, 0, &b);
    avro_value_set_null(&b);
    es_principal_set(&g->value, NULL, NULL);           /* null: written with authentication off */
    es_opt_string_set(&g->value, "traceparent", NULL); /* null: as before trace context */
    es_opt_string_set(&g->value, "tracestate", NULL);
}

avro_value_t *es_evgen_cart(es_evgen_t *g, const char *cart_id, int64_t version, int64_t ts,
                            const char *type, const char *sku, int32_t qty, int64_t amount)
{
    avro_value_t p, r;
    set_envelope(g, "cart_id", cart_id, version, ts);
    avro_value_get_by_name(&g->value, "payload", &p, NULL);
    if (strcmp(type, "ItemAdded") == 0) {
        avro_value_set_branch(&p, 0, &r);
        set_str(&r, "sku", sku);
        set_int(&r, "quantity", qty);
        set_long(&r, "unit_price_cents", amount);
    } else if (strcmp(type, "ItemRemoved") == 0) {
        avro_value_set_branch(&p, 1, &r);
        set_str(&r, "sku", sku);
        set_int(&r, "quantity", qty);
    } else {
        avro_value_set_branch(&p, 2, &r);
        set_long(&r, "total_cents", amount);
    }
    return &g->value;
}

avro_value_t *es_evgen_account(es_evgen_t *g, const char *account_id, int64_t version, int64_t ts,
                               const char *type, const char *owner, int64_t amount)
{
    avro_value_t p, r;
    set_envelope(g, "account_id", account_id, version, ts);
    avro_value_get_by_name(&g->value, "payload", &p, NULL);
    if (strcmp(type, "AccountOpened") == 0) {
        avro_value_set_branch(&p, 0, &r);
        set_str(&r, "owner", owner);
    } else {
        avro_value_set_branch(&p, strcmp(type, "Deposited") == 0 ? 1 : 2, &r);
        set_long(&r, "amount_cents", amount);
    }
    return &g->value;
}

es_err_t es_evgen_fold(const es_proj_def_t *def, es_proj_memmap_t *map, avro_value_t *value,
                       char *errstr, size_t errstr_size)
{
    es_proj_backend_t be = es_proj_memmap_backend(map);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_txn_t *txn = es_proj_txn_new(rd);
    es_proj_event_t ev = {.topic = "t", .value = value};
    es_proj_txn_begin_event(txn);
    es_err_t err = def->fold(0, &ev, txn, errstr, errstr_size);
    if (err)
        es_proj_txn_rollback_event(txn);
    else
        es_proj_txn_commit_event(txn);
    es_proj_txn_store_into(txn, map);
    es_proj_txn_destroy(txn);
    es_proj_reader_destroy(rd);
    return err;
}

/* ------------------------------------------------------------- workload */

uint64_t es_sim_rand(uint64_t *state)
{
    uint64_t x = *state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

static size_t sim_new_cart(es_sim_t *s)
{
    if (s->ncarts == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->carts = es_realloc(s->carts, s->cap * sizeof(*s->carts));
    }
    es_sim_cart_t *c = &s->carts[s->ncarts];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s-%zu", s->prefix, s->ncarts);
    return s->ncarts++;
}

void es_sim_init(es_sim_t *s, const char *prefix, uint64_t seed, size_t open_carts)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    s->rng = seed ? seed : 88172645463325252ULL;
    if (open_carts > 256)
        open_carts = 256;
    for (size_t i = 0; i < open_carts; i++)
        s->live[s->nlive++] = sim_new_cart(s);
}

void es_sim_free(es_sim_t *s)
{
    free(s->carts);
    memset(s, 0, sizeof(*s));
}

avro_value_t *es_sim_next(es_sim_t *s, es_evgen_t *g, int64_t ts, const char **cart_id)
{
    size_t slot = es_sim_rand(&s->rng) % s->nlive;
    es_sim_cart_t *c = &s->carts[s->live[slot]];
    unsigned roll = (unsigned)(es_sim_rand(&s->rng) % 100);
    char sku[32];
    avro_value_t *v;

    snprintf(s->last_id, sizeof(s->last_id), "%s", c->id);
    *cart_id = s->last_id;
    c->version++;
    if (roll < 15 && c->norder > 0) { /* checkout */
        int64_t total = 0;
        for (int i = 0; i < c->norder; i++) {
            int k = c->order[i];
            total += c->qty[k] * c->price[k];
            s->stats[k][2] += c->qty[k];
        }
        c->checked_out = true;
        v = es_evgen_cart(g, c->id, c->version, ts, "CartCheckedOut", NULL, 0, total);
        s->live[slot] = sim_new_cart(s); /* may move s->carts: c is dead */
        return v;
    }
    if (roll < 40 && c->norder > 0) { /* remove */
        int k = c->order[es_sim_rand(&s->rng) % (uint64_t)c->norder];
        int32_t q = (int32_t)(1 + es_sim_rand(&s->rng) % (uint64_t)c->qty[k]);
        c->qty[k] -= q;
        s->stats[k][1] += q;
        if (c->qty[k] == 0) {
            int j = 0;
            for (int i = 0; i < c->norder; i++) {
                if (c->order[i] != k)
                    c->order[j++] = c->order[i];
            }
            c->norder = j;
        }
        snprintf(sku, sizeof(sku), "sku-%02d", k);
        return es_evgen_cart(g, c->id, c->version, ts, "ItemRemoved", sku, q, 0);
    }
    int k = (int)(es_sim_rand(&s->rng) % ES_SIM_SKUS);
    int32_t q = (int32_t)(1 + es_sim_rand(&s->rng) % 5);
    int64_t price = 100 + (int64_t)(es_sim_rand(&s->rng) % 5000);
    if (c->qty[k] == 0)
        c->order[c->norder++] = k;
    c->qty[k] += q;
    c->price[k] = price;
    s->stats[k][0] += q;
    snprintf(sku, sizeof(sku), "sku-%02d", k);
    return es_evgen_cart(g, c->id, c->version, ts, "ItemAdded", sku, q, price);
}

char *es_sim_cart_json(const es_sim_t *s, size_t i)
{
    const es_sim_cart_t *c = &s->carts[i];
    es_buf_t b = {0};
    int64_t total = 0;
    es_buf_appendf(&b, "{\"cart_id\":\"%s\",\"status\":\"%s\",\"items\":[", c->id,
                   c->checked_out ? "checked_out" : "open");
    for (int j = 0; j < c->norder; j++) {
        int k = c->order[j];
        total += c->qty[k] * c->price[k];
        es_buf_appendf(&b, "%s{\"sku\":\"sku-%02d\",\"quantity\":%lld,\"unit_price_cents\":%lld}",
                       j ? "," : "", k, (long long)c->qty[k], (long long)c->price[k]);
    }
    es_buf_appendf(&b, "],\"total_cents\":%lld,\"version\":%lld}", (long long)total,
                   (long long)c->version);
    return b.data;
}
