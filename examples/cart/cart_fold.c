/*
 * cart_fold.c — stack keys and borrowed-sku line lists for the cart
 * projections' folds (cart_fold.h says why they allocate so little).
 */
#include "cart_fold.h"
#include "escqrs/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cart_key_set(cart_key_t *k, const char *prefix, const char *name, size_t namelen)
{
    size_t plen = strlen(prefix);
    k->len = plen + namelen;
    k->p = k->len <= sizeof(k->small) ? k->small : es_malloc(k->len);
    memcpy(k->p, prefix, plen);
    memcpy(k->p + plen, name, namelen);
}

void cart_key_free(cart_key_t *k)
{
    if (k->p != k->small)
        free(k->p);
    k->p = NULL;
}

void cart_lines_init(cart_lines_t *c)
{
    c->lines = c->small;
    c->n = 0;
    c->cap = CART_LINES_SMALL;
}

void cart_lines_free(cart_lines_t *c)
{
    if (c->lines != c->small)
        free(c->lines);
    cart_lines_init(c);
}

cart_line_t *cart_lines_add(cart_lines_t *c)
{
    if (c->n == c->cap) {
        c->cap *= 2;
        if (c->lines == c->small) {
            c->lines = es_calloc(c->cap, sizeof(*c->lines));
            memcpy(c->lines, c->small, c->n * sizeof(*c->lines));
        } else {
            c->lines = es_realloc(c->lines, c->cap * sizeof(*c->lines));
        }
    }
    cart_line_t *ln = &c->lines[c->n++];
    memset(ln, 0, sizeof(*ln));
    return ln;
}

cart_line_t *cart_lines_find(cart_lines_t *c, const char *sku, size_t skulen)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->lines[i].skulen == skulen && memcmp(c->lines[i].sku, sku, skulen) == 0)
            return &c->lines[i];
    return NULL;
}

void cart_lines_remove(cart_lines_t *c, cart_line_t *ln)
{
    size_t at = (size_t)(ln - c->lines);
    memmove(ln, ln + 1, (c->n - at - 1) * sizeof(*ln));
    c->n--;
}

es_err_t cart_event_in_order(const char *id, size_t idlen, const char *type, int64_t version,
                             int64_t last_version, bool checked_out, char *errstr,
                             size_t errstr_size)
{
    if (version <= last_version) {
        snprintf(errstr, errstr_size, "cart %.*s: event version %lld not after %lld", (int)idlen,
                 id, (long long)version, (long long)last_version);
        return ES_ERR_STATE;
    }
    if (checked_out) {
        snprintf(errstr, errstr_size, "cart %.*s: %s after checkout", (int)idlen, id, type);
        return ES_ERR_STATE;
    }
    return ES_ERR_OK;
}
