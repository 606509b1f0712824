/*
 * cart_fold.h — what the cart projections' folds share: store keys built on
 * the stack, a cart's lines that borrow their skus, and the rule that says
 * whether an event may apply to a cart at all.
 *
 * Why: malloc and free were about a fifth of a rebuild's fold thread when
 * every event allocated a key, a value, a line array and a copy of every
 * sku.  A key fits on the stack up to CART_KEY_SMALL bytes; a cart's lines
 * point into the bytes read from the store or into the event being folded
 * (both outlive the fold call), and the line array is on the stack up to
 * CART_LINES_SMALL lines.  Internal to the cart module: only its
 * projections and their tests include it.
 */
#ifndef ESCQRS_EXAMPLE_CART_FOLD_H
#define ESCQRS_EXAMPLE_CART_FOLD_H

#include "escqrs/err.h"
#include "escqrs/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CART_KEY_SMALL   128
#define CART_LINES_SMALL 16

/** A store key, prefix + name: on the stack, or on the heap when longer. */
typedef struct {
    char small[CART_KEY_SMALL];
    char *p; /**< small or the heap; NULL until cart_key_set() */
    size_t len;
} cart_key_t;

/** @brief Set @p k to @p prefix followed by @p name (namelen bytes). */
void cart_key_set(cart_key_t *k, const char *prefix, const char *name, size_t namelen);

/** @brief Free what cart_key_set() took from the heap; a key never set is a no-op. */
void cart_key_free(cart_key_t *k);

/** One line of a cart; @c sku is borrowed (the stored bytes or the event). */
typedef struct {
    const char *sku;
    size_t skulen;
    int64_t qty;
    int64_t price; /**< unit price in cents (cart_view; item_stats leaves it 0) */
} cart_line_t;

/** A cart's lines in the order they were first added. */
typedef struct {
    cart_line_t small[CART_LINES_SMALL];
    cart_line_t *lines; /**< small, or the heap past CART_LINES_SMALL */
    size_t n, cap;
} cart_lines_t;

/** @brief An empty line list (no allocation). */
void cart_lines_init(cart_lines_t *c);

/** @brief Free the heap array if any; the list is empty again. */
void cart_lines_free(cart_lines_t *c);

/** @brief Room for one more line at the end, zeroed. */
cart_line_t *cart_lines_add(cart_lines_t *c);

/** @brief The line of @p sku, or NULL. */
cart_line_t *cart_lines_find(cart_lines_t *c, const char *sku, size_t skulen);

/** @brief Remove @p ln (a line of @p c), keeping the others' order. */
void cart_lines_remove(cart_lines_t *c, cart_line_t *ln);

/**
 * @brief May an event of @p type and @p version apply to cart @p id, last
 *        folded at @p last_version (0: never) and @p checked_out?  Only a
 *        version past the last and never after checkout: the write side
 *        never emits anything else, so an event written to the topic twice
 *        or forged is refused alike by every cart projection.
 * @returns ES_ERR_OK, or ES_ERR_STATE with the reason in @p errstr.
 */
es_err_t cart_event_in_order(const char *id, size_t idlen, const char *type, int64_t version,
                             int64_t last_version, bool checked_out, char *errstr,
                             size_t errstr_size);

#endif
