/*
 * viewmodel.c — the oracle of the read-side tests (see viewmodel.h).
 *
 * Three small models, one per projection, each fed the same plain events:
 *
 * cart_view (ARCHITECTURE.md §6, cart_view.c's header): a cart's items in the
 *   order they were first added — an item whose quantity reaches 0 leaves the
 *   cart, and adding it again puts it at the end, as a new line; the unit
 *   price is the latest ItemAdded's; total_cents is Σ quantity × unit price of
 *   the items now in the cart (CartCheckedOut's own total is not used); status
 *   checked_out after CartCheckedOut; version is the last applied event's.
 *   Refused (documented): a version that does not grow, a non-positive
 *   quantity, removing more than the cart holds, any event after checkout;
 *   a negative unit price (the contract's unit_price_cents >= 0).
 * item_stats (docs/projector.md, item_stats.c's header): per sku, `added` is
 *   the sum of ItemAdded quantities, `removed` the sum of ItemRemoved
 *   quantities, `checked_out` the quantity of the sku in each cart at its
 *   CartCheckedOut.  Refused (item_stats.c's header): a version that does
 *   not grow and any event after checkout, as cart_view refuses them, so an
 *   event written twice is not counted twice; from the events' meaning: a
 *   non-positive quantity and removing more than the cart holds, which
 *   cannot happen to a real cart.
 * account_balance (ARCHITECTURE.md §6, account_balance.c's header): owner
 *   from AccountOpened, balance = deposits − withdrawals, version the last
 *   event's.  Refused (documented): a second AccountOpened, money moving on an
 *   account never opened, a withdrawal below zero, a version that does not
 *   grow; a non-positive amount (the contract's amount_cents > 0).
 *
 * Maps are chained hash tables keyed by id or sku: a 60 000-event workload is
 * re-modelled once per kill round in 0301, so lookups must not be linear.
 */
#include "viewmodel.h"

#include "escqrs/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ maps */

typedef struct vm_ent_s {
    struct vm_ent_s *next;
    char *key;
    void *val;
} vm_ent_t;

typedef struct {
    vm_ent_t **b;
    size_t nb, n;
} vm_map_t;

static uint64_t vm_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void *map_get(const vm_map_t *m, const char *key)
{
    if (!m->nb)
        return NULL;
    for (vm_ent_t *e = m->b[vm_hash(key) % m->nb]; e; e = e->next) {
        if (strcmp(e->key, key) == 0)
            return e->val;
    }
    return NULL;
}

/* The value of @p key, made with calloc(1, @p size) when absent. */
static void *map_upsert(vm_map_t *m, const char *key, size_t size)
{
    void *v = map_get(m, key);
    if (v)
        return v;
    if (m->n >= m->nb * 2) {
        size_t nb = m->nb ? m->nb * 4 : 1024;
        vm_ent_t **b = es_calloc(nb, sizeof(*b));
        for (size_t i = 0; i < m->nb; i++) {
            for (vm_ent_t *e = m->b[i], *next; e; e = next) {
                next = e->next;
                size_t k = vm_hash(e->key) % nb;
                e->next = b[k];
                b[k] = e;
            }
        }
        free(m->b);
        m->b = b;
        m->nb = nb;
    }
    vm_ent_t *e = es_calloc(1, sizeof(*e));
    size_t k = vm_hash(key) % m->nb;
    e->key = es_strdup(key);
    e->val = es_calloc(1, size);
    e->next = m->b[k];
    m->b[k] = e;
    m->n++;
    return e->val;
}

static void map_free(vm_map_t *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->nb; i++) {
        for (vm_ent_t *e = m->b[i], *next; e; e = next) {
            next = e->next;
            free_val(e->val);
            free(e->key);
            free(e);
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------- models */

typedef struct {
    char sku[64];
    int64_t qty, price; /* price: cart_view only */
} vm_line_t;

typedef struct {
    vm_line_t *lines;
    size_t n, cap;
} vm_lines_t;

typedef struct {
    bool checked_out;
    int64_t version;
    vm_lines_t items; /* in first-added order */
} vm_cart_t;

typedef struct {
    int64_t c[3]; /* added, removed, checked_out */
} vm_stat_t;

typedef struct {
    char owner[64];
    int64_t balance, version;
} vm_account_t;

struct vm_s {
    vm_map_t carts;    /* cart_view: id -> vm_cart_t */
    vm_map_t stats;    /* item_stats: sku -> vm_stat_t */
    vm_map_t seen;     /* item_stats: id -> vm_cart_t (no prices), the carts it has seen */
    vm_map_t accounts; /* account_balance: id -> vm_account_t */
};

static void lines_free(vm_lines_t *l)
{
    free(l->lines);
    memset(l, 0, sizeof(*l));
}

static void free_cart(void *v)
{
    lines_free(&((vm_cart_t *)v)->items);
    free(v);
}

static vm_line_t *lines_find(vm_lines_t *l, const char *sku)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->lines[i].sku, sku) == 0)
            return &l->lines[i];
    }
    return NULL;
}

static vm_line_t *lines_append(vm_lines_t *l, const char *sku)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->lines = es_realloc(l->lines, l->cap * sizeof(*l->lines));
    }
    vm_line_t *ln = &l->lines[l->n++];
    memset(ln, 0, sizeof(*ln));
    snprintf(ln->sku, sizeof(ln->sku), "%s", sku);
    return ln;
}

/* Remove @p q units of @p sku; false (nothing changed) when the lines hold fewer. */
static bool lines_remove(vm_lines_t *l, const char *sku, int64_t q)
{
    vm_line_t *ln = lines_find(l, sku);
    if (!ln || ln->qty < q)
        return false;
    ln->qty -= q;
    if (ln->qty == 0) { /* the line leaves; the others keep their order */
        size_t at = (size_t)(ln - l->lines);
        memmove(ln, ln + 1, (l->n - at - 1) * sizeof(*ln));
        l->n--;
    }
    return true;
}

vm_t *vm_new(void)
{
    return es_calloc(1, sizeof(vm_t));
}

void vm_destroy(vm_t *m)
{
    if (!m)
        return;
    map_free(&m->carts, free_cart);
    map_free(&m->stats, free);
    map_free(&m->seen, free_cart);
    map_free(&m->accounts, free);
    free(m);
}

static bool cart_view_apply(vm_t *m, const vm_event_t *ev)
{
    vm_cart_t *c = map_get(&m->carts, ev->id);
    int64_t version = c ? c->version : 0;
    if (ev->version <= version || (c && c->checked_out))
        return false;
    switch (ev->type) {
    case VM_ITEM_ADDED:
        if (ev->quantity <= 0 || ev->amount < 0)
            return false;
        break;
    case VM_ITEM_REMOVED:
        if (ev->quantity <= 0 || !c || !lines_find(&c->items, ev->sku) ||
            lines_find(&c->items, ev->sku)->qty < ev->quantity)
            return false;
        break;
    default:
        break;
    }
    c = map_upsert(&m->carts, ev->id, sizeof(*c));
    if (ev->type == VM_ITEM_ADDED) {
        vm_line_t *ln = lines_find(&c->items, ev->sku);
        if (!ln)
            ln = lines_append(&c->items, ev->sku);
        ln->qty += ev->quantity;
        ln->price = ev->amount;
    } else if (ev->type == VM_ITEM_REMOVED) {
        lines_remove(&c->items, ev->sku, ev->quantity);
    } else {
        c->checked_out = true;
    }
    c->version = ev->version;
    return true;
}

static bool item_stats_apply(vm_t *m, const vm_event_t *ev)
{
    vm_cart_t *c = map_get(&m->seen, ev->id);
    if (ev->version <= (c ? c->version : 0) || (c && c->checked_out))
        return false;
    if (ev->type != VM_CART_CHECKED_OUT && ev->quantity <= 0)
        return false;
    if (ev->type == VM_ITEM_REMOVED && (!c || !lines_remove(&c->items, ev->sku, ev->quantity)))
        return false;
    c = map_upsert(&m->seen, ev->id, sizeof(*c));
    c->version = ev->version;
    if (ev->type == VM_CART_CHECKED_OUT) {
        for (size_t i = 0; i < c->items.n; i++) {
            vm_stat_t *s = map_upsert(&m->stats, c->items.lines[i].sku, sizeof(*s));
            s->c[2] += c->items.lines[i].qty;
        }
        lines_free(&c->items);
        c->checked_out = true;
        return true;
    }
    if (ev->type == VM_ITEM_ADDED) {
        vm_line_t *ln = lines_find(&c->items, ev->sku);
        if (!ln)
            ln = lines_append(&c->items, ev->sku);
        ln->qty += ev->quantity;
    }
    vm_stat_t *s = map_upsert(&m->stats, ev->sku, sizeof(*s));
    s->c[ev->type == VM_ITEM_ADDED ? 0 : 1] += ev->quantity;
    return true;
}

static bool account_balance_apply(vm_t *m, const vm_event_t *ev)
{
    vm_account_t *a = map_get(&m->accounts, ev->id);
    if (ev->version <= (a ? a->version : 0))
        return false;
    if (ev->type == VM_ACCOUNT_OPENED) {
        if (a)
            return false;
        a = map_upsert(&m->accounts, ev->id, sizeof(*a));
        snprintf(a->owner, sizeof(a->owner), "%s", ev->owner);
    } else {
        if (!a || ev->amount <= 0 || (ev->type == VM_WITHDRAWN && ev->amount > a->balance))
            return false;
        a->balance += ev->type == VM_DEPOSITED ? ev->amount : -ev->amount;
    }
    a->version = ev->version;
    return true;
}

unsigned vm_apply(vm_t *m, const vm_event_t *ev)
{
    unsigned refused = 0;
    if (ev->type >= VM_ACCOUNT_OPENED)
        return account_balance_apply(m, ev) ? 0 : VM_REFUSED_ACCOUNT_BALANCE;
    if (!cart_view_apply(m, ev))
        refused |= VM_REFUSED_CART_VIEW;
    if (!item_stats_apply(m, ev))
        refused |= VM_REFUSED_ITEM_STATS;
    return refused;
}

/* ----------------------------------------------------- events from Avro */

static bool get_str(avro_value_t *rec, const char *name, char *out, size_t outsz)
{
    avro_value_t f;
    const char *s = NULL;
    size_t sz = 0;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, &s, &sz) || !s ||
        strlen(s) >= outsz)
        return false;
    snprintf(out, outsz, "%s", s);
    return true;
}

static bool get_long(avro_value_t *rec, const char *name, int64_t *out)
{
    avro_value_t f;
    return avro_value_get_by_name(rec, name, &f, NULL) == 0 && avro_value_get_long(&f, out) == 0;
}

static bool get_int(avro_value_t *rec, const char *name, int64_t *out)
{
    avro_value_t f;
    int32_t v = 0;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_int(&f, &v))
        return false;
    *out = v;
    return true;
}

bool vm_event_from_value(avro_value_t *value, vm_event_t *out)
{
    avro_value_t pu, p;
    memset(out, 0, sizeof(*out));
    bool cart = get_str(value, "cart_id", out->id, sizeof(out->id));
    if (!cart && !get_str(value, "account_id", out->id, sizeof(out->id)))
        return false;
    if (!get_long(value, "version", &out->version) ||
        avro_value_get_by_name(value, "payload", &pu, NULL) ||
        avro_value_get_current_branch(&pu, &p))
        return false;
    const char *type = avro_schema_name(avro_value_get_schema(&p));
    if (cart && strcmp(type, "ItemAdded") == 0) {
        out->type = VM_ITEM_ADDED;
        return get_str(&p, "sku", out->sku, sizeof(out->sku)) &&
               get_int(&p, "quantity", &out->quantity) &&
               get_long(&p, "unit_price_cents", &out->amount);
    }
    if (cart && strcmp(type, "ItemRemoved") == 0) {
        out->type = VM_ITEM_REMOVED;
        return get_str(&p, "sku", out->sku, sizeof(out->sku)) &&
               get_int(&p, "quantity", &out->quantity);
    }
    if (cart && strcmp(type, "CartCheckedOut") == 0) {
        out->type = VM_CART_CHECKED_OUT;
        return get_long(&p, "total_cents", &out->amount);
    }
    if (!cart && strcmp(type, "AccountOpened") == 0) {
        out->type = VM_ACCOUNT_OPENED;
        return get_str(&p, "owner", out->owner, sizeof(out->owner));
    }
    if (!cart && (strcmp(type, "Deposited") == 0 || strcmp(type, "Withdrawn") == 0)) {
        out->type = type[0] == 'D' ? VM_DEPOSITED : VM_WITHDRAWN;
        return get_long(&p, "amount_cents", &out->amount);
    }
    return false;
}

/* ------------------------------------------------------- expected answers */

json_t *vm_cart_json(const vm_t *m, const char *id)
{
    const vm_cart_t *c = map_get(&m->carts, id);
    if (!c)
        return NULL;
    json_t *items = json_array();
    int64_t total = 0;
    for (size_t i = 0; i < c->items.n; i++) {
        const vm_line_t *ln = &c->items.lines[i];
        total += ln->qty * ln->price;
        json_array_append_new(items, json_pack("{s:s, s:I, s:I}", "sku", ln->sku, "quantity",
                                               (json_int_t)ln->qty, "unit_price_cents",
                                               (json_int_t)ln->price));
    }
    return json_pack("{s:s, s:s, s:o, s:I, s:I}", "cart_id", id, "status",
                     c->checked_out ? "checked_out" : "open", "items", items, "total_cents",
                     (json_int_t)total, "version", (json_int_t)c->version);
}

json_t *vm_account_json(const vm_t *m, const char *id)
{
    const vm_account_t *a = map_get(&m->accounts, id);
    if (!a)
        return NULL;
    return json_pack("{s:s, s:s, s:I, s:I}", "account_id", id, "owner", a->owner, "balance_cents",
                     (json_int_t)a->balance, "version", (json_int_t)a->version);
}

typedef struct {
    const char *sku;
    const vm_stat_t *s;
} vm_row_t;

static int rank_by; /* qsort has no context argument */

static int row_cmp(const void *a, const void *b)
{
    const vm_row_t *x = a, *y = b;
    if (x->s->c[rank_by] != y->s->c[rank_by])
        return x->s->c[rank_by] > y->s->c[rank_by] ? -1 : 1; /* largest first */
    return strcmp(x->sku, y->sku);                           /* ties by sku */
}

json_t *vm_stats_json(const vm_t *m, const char *by, size_t top)
{
    static const char *const bys[3] = {"added", "removed", "checked_out"};
    vm_row_t *rows = es_calloc(m->stats.n + 1, sizeof(*rows));
    size_t n = 0;
    for (size_t i = 0; i < m->stats.nb; i++) {
        for (vm_ent_t *e = m->stats.b[i]; e; e = e->next)
            rows[n++] = (vm_row_t){e->key, e->val};
    }
    rank_by = 0;
    for (int i = 0; i < 3; i++) {
        if (strcmp(by, bys[i]) == 0)
            rank_by = i;
    }
    qsort(rows, n, sizeof(*rows), row_cmp);
    json_t *items = json_array();
    for (size_t i = 0; i < n && i < top; i++)
        json_array_append_new(items, json_pack("{s:s, s:I, s:I, s:I}", "sku", rows[i].sku, "added",
                                               (json_int_t)rows[i].s->c[0], "removed",
                                               (json_int_t)rows[i].s->c[1], "checked_out",
                                               (json_int_t)rows[i].s->c[2]));
    free(rows);
    return json_pack("{s:s, s:o}", "by", bys[rank_by], "items", items);
}

/* ------------------------------------------------------------ comparison */

typedef struct {
    const char *by;
} vm_query_t;

static const char *vm_query(void *opaque, const char *name)
{
    const vm_query_t *q = opaque;
    if (strcmp(name, "top") == 0)
        return "1000";
    if (strcmp(name, "by") == 0)
        return q->by;
    return NULL;
}

/* What @p def's query handler answers over @p views for aggregate @p id (or a ranking). */
static int render(const es_proj_def_t *def, es_proj_memmap_t *views, const char *id, const char *by,
                  json_t **out)
{
    char err[512];
    const char *params[1] = {id};
    vm_query_t q = {.by = by};
    es_proj_backend_t be = es_proj_memmap_backend(views);
    es_proj_reader_t *rd = es_proj_reader_new(&be);
    es_proj_query_req_t req = {
        .params = params, .nparams = id ? 1 : 0, .query = vm_query, .query_opaque = &q};
    *out = NULL;
    int st = def->queries[0].handle(rd, &req, out, err, sizeof(err));
    if (st != 200 && st != 404)
        fprintf(stderr, "  %s handler: %d %s\n", def->name, st, err);
    es_proj_reader_destroy(rd);
    return st;
}

typedef struct {
    const vm_t *m;
    const char *projection;
    size_t diffs;
    size_t nviews;  /* keys of the projection's main view kind */
    size_t ncopies; /* item_stats' copies of carts */
} vm_scan_t;

static void diff(vm_scan_t *s, const char *what)
{
    if (s->diffs++ < 5)
        fprintf(stderr, "  %s differs from the model: %s\n", s->projection, what);
}

/* Compare item_stats' copy of a cart ("k/<id>") with the model's: lines, version, status. */
static void check_cart_copy(vm_scan_t *s, const char *id, const char *val, size_t vallen)
{
    es_cursor_t cur;
    vm_lines_t got = {0};
    es_cursor_init(&cur, val, vallen);
    uint32_t n = es_cursor_be32(&cur);
    for (uint32_t i = 0; i < n && !cur.bad; i++) {
        size_t len = 0;
        char sku[64];
        const char *p = es_cursor_str(&cur, &len);
        snprintf(sku, sizeof(sku), "%.*s", (int)(len < 63 ? len : 63), p ? p : "");
        lines_append(&got, sku)->qty = (int64_t)es_cursor_be64(&cur);
    }
    int64_t version = (int64_t)es_cursor_be64(&cur);
    uint32_t status = es_cursor_be32(&cur);
    const vm_cart_t *want = map_get(&s->m->seen, id);
    bool same = !cur.bad && cur.left == 0 && want && got.n == want->items.n &&
                version == want->version && status == (want->checked_out ? 1u : 0u);
    for (size_t i = 0; same && i < got.n; i++) {
        const vm_line_t *w = lines_find((vm_lines_t *)&want->items, got.lines[i].sku);
        same = w && w->qty == got.lines[i].qty;
    }
    if (!same) {
        char what[700];
        snprintf(what, sizeof(what), "its copy of cart %s is not the model's", id);
        diff(s, what);
    }
    s->ncopies++;
    lines_free(&got);
}

static bool inventory_cb(void *opaque, const char *key, size_t keylen, const char *val,
                         size_t vallen)
{
    vm_scan_t *s = opaque;
    char id[512];
    bool known = false;
    snprintf(id, sizeof(id), "%.*s", (int)(keylen > 2 ? keylen - 2 : 0), keylen > 2 ? key + 2 : "");
    if (keylen < 2 || key[1] != '/') {
        known = false;
    } else if (strcmp(s->projection, "cart_view") == 0 && key[0] == 'c') {
        known = map_get(&s->m->carts, id) != NULL;
        s->nviews++;
    } else if (strcmp(s->projection, "account_balance") == 0 && key[0] == 'a') {
        known = map_get(&s->m->accounts, id) != NULL;
        s->nviews++;
    } else if (strcmp(s->projection, "item_stats") == 0 && key[0] == 's') {
        known = map_get(&s->m->stats, id) != NULL;
        s->nviews++;
    } else if (strcmp(s->projection, "item_stats") == 0 && key[0] == 'k') {
        check_cart_copy(s, id, val, vallen);
        return true;
    }
    if (!known) {
        char what[700];
        snprintf(what, sizeof(what), "the store holds key %.*s, the model no such view",
                 (int)(keylen < 500 ? keylen : 500), key);
        diff(s, what);
    }
    return true;
}

static void compare_json(vm_scan_t *s, const char *what, int got_status, json_t *got, json_t *want)
{
    if (want ? got_status == 200 && json_equal(got, want) : got_status == 404)
        return;
    char *g = got ? json_dumps(got, JSON_COMPACT) : NULL;
    char *w = want ? json_dumps(want, JSON_COMPACT) : NULL;
    char buf[200];
    snprintf(buf, sizeof(buf), "%s: the store answers %d", what, got_status);
    if (s->diffs++ < 5)
        fprintf(stderr, "  %s differs from the model: %s %.600s\n    the model: %.600s\n",
                s->projection, buf, g ? g : "(no body)", w ? w : "404");
    free(g);
    free(w);
}

size_t vm_compare_views(const vm_t *m, const es_proj_def_t *def, es_proj_memmap_t *views)
{
    vm_scan_t s = {.m = m, .projection = def->name};
    char err[256];
    size_t want_views = 0;
    bool carts = strcmp(def->name, "cart_view") == 0;
    bool accounts = strcmp(def->name, "account_balance") == 0;
    if (carts || accounts) {
        const vm_map_t *map = carts ? &m->carts : &m->accounts;
        want_views = map->n;
        for (size_t i = 0; i < map->nb; i++) {
            for (vm_ent_t *e = map->b[i]; e; e = e->next) {
                json_t *got = NULL;
                json_t *want = carts ? vm_cart_json(m, e->key) : vm_account_json(m, e->key);
                int st = render(def, views, e->key, NULL, &got);
                compare_json(&s, e->key, st, got, want);
                json_decref(got);
                json_decref(want);
            }
        }
    } else if (strcmp(def->name, "item_stats") == 0) {
        static const char *const bys[3] = {"added", "removed", "checked_out"};
        want_views = m->stats.n;
        for (int i = 0; i < 3; i++) {
            json_t *got = NULL, *want = vm_stats_json(m, bys[i], 1000);
            char what[64];
            snprintf(what, sizeof(what), "stats by %s", bys[i]);
            int st = render(def, views, NULL, bys[i], &got);
            compare_json(&s, what, st, got, want);
            json_decref(got);
            json_decref(want);
        }
    } else {
        fprintf(stderr, "  vm_compare_views: no model of projection %s\n", def->name);
        return 1;
    }
    /* nothing in the store that the model lacks */
    es_proj_backend_t be = es_proj_memmap_backend(views);
    be.scan(be.opaque, "", 0, NULL, 0, inventory_cb, &s, err, sizeof(err));
    if (s.nviews != want_views) {
        fprintf(stderr, "  %s: the store holds %zu views, the model %zu\n", def->name, s.nviews,
                want_views);
        s.diffs++;
    }
    if (strcmp(def->name, "item_stats") == 0 && s.ncopies != m->seen.n) {
        fprintf(stderr, "  item_stats: the store holds copies of %zu carts, the model %zu\n",
                s.ncopies, m->seen.n);
        s.diffs++;
    }
    return s.diffs;
}
