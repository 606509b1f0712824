/*
 * mem.c — allocation wrappers and es_buf_t.
 *
 * A daemon that cannot allocate cannot make progress safely; aborting with a
 * clear message lets the orchestrator restart it, and spares every caller an
 * error path that would never be tested.
 */
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif

static void es_oom(size_t size)
{
    fprintf(stderr, "escqrs: out of memory allocating %zu bytes\n", size);
    abort();
}

void *es_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        es_oom(size);
    return p;
}

void *es_calloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        es_oom(nmemb * size);
    return p;
}

void *es_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        es_oom(size);
    return p;
}

char *es_strdup(const char *s)
{
    return es_strndup(s, strlen(s));
}

/* jemalloc's control call, defined when the program links jemalloc (weak: NULL otherwise). */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

const char *es_mem_allocator(char *buf, size_t size)
{
    const char *version = NULL;
    size_t len = sizeof(version);
    if (mallctl && mallctl("version", &version, &len, NULL, 0) == 0 && version)
        snprintf(buf, size, "jemalloc %s", version);
    else
#if defined(__SANITIZE_ADDRESS__)
        snprintf(buf, size, "AddressSanitizer's malloc");
#elif defined(__GLIBC__)
        snprintf(buf, size, "glibc malloc");
#else
        snprintf(buf, size, "the C library's malloc");
#endif
    return buf;
}

void es_mem_release_free(void)
{
    if (mallctl)
        return; /* jemalloc gives pages back on its own decay (its background thread) */
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

char *es_strndup(const char *s, size_t n)
{
    char *p = es_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* The external definitions of mem.h's inline ones. */
extern inline void es_buf_reserve(es_buf_t *b, size_t extra);
extern inline void es_buf_append(es_buf_t *b, const void *data, size_t len);
extern inline void es_buf_put_be64(es_buf_t *b, uint64_t v);
extern inline void es_buf_put_be32(es_buf_t *b, uint32_t v);
extern inline void es_buf_put_str(es_buf_t *b, const char *s, size_t len);
extern inline const unsigned char *es_cursor_take(es_cursor_t *c, size_t n);
extern inline uint64_t es_cursor_be64(es_cursor_t *c);
extern inline uint32_t es_cursor_be32(es_cursor_t *c);

void es_buf_grow(es_buf_t *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = es_realloc(b->data, cap);
    b->cap = cap;
}

void es_buf_set(es_buf_t *b, const void *data, size_t len)
{
    b->len = 0;
    es_buf_append(b, data, len);
}

void es_buf_appendf(es_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    es_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void es_buf_clear(es_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void es_buf_free(es_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int es_bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

uint64_t es_fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

bool es_buf_read_file(es_buf_t *b, const char *path)
{
    FILE *f = fopen(path, "rb");
    char chunk[8192];
    size_t n;
    es_buf_clear(b);
    if (!f)
        return false;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        es_buf_append(b, chunk, n);
    bool ok = !ferror(f);
    fclose(f);
    es_buf_append(b, "", 1); /* the NUL, not counted */
    b->len--;
    return ok;
}

char *es_read_file(const char *path)
{
    es_buf_t b = {0};
    if (es_buf_read_file(&b, path))
        return b.data;
    es_buf_free(&b);
    return NULL;
}

void es_hex_encode(char *out, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
}

void es_buf_put_hex(es_buf_t *b, const void *data, size_t len)
{
    es_buf_reserve(b, 2 * len);
    es_hex_encode(b->data + b->len, data, len);
    b->len += 2 * len;
    b->data[b->len] = '\0';
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

bool es_hex_decode(const char *s, es_buf_t *out)
{
    size_t n = strlen(s);
    es_buf_clear(out);
    if (n % 2)
        return false;
    es_buf_reserve(out, n / 2);
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out->data[out->len++] = (char)(hi << 4 | lo);
        out->data[out->len] = '\0';
    }
    return true;
}

void es_cursor_init(es_cursor_t *c, const void *data, size_t len)
{
    c->p = data;
    c->left = len;
    c->bad = false;
}

const char *es_cursor_str(es_cursor_t *c, size_t *len)
{
    uint32_t n = es_cursor_be32(c);
    const unsigned char *p = c->bad ? NULL : es_cursor_take(c, n);
    *len = p ? n : 0;
    return p ? (const char *)p : "";
}

/* ------------------------------------------------------------- hash map */

struct es_map_slot_s {
    char *key; /* NULL: empty slot */
    size_t keylen;
    void *val;
};

static struct es_map_slot_s *map_find_hashed(struct es_map_slot_s *slots, size_t cap,
                                             const void *key, size_t keylen, uint64_t hash)
{
    size_t i = (size_t)hash & (cap - 1);
    for (;;) {
        struct es_map_slot_s *s = &slots[i];
        if (!s->key || (s->keylen == keylen && !memcmp(s->key, key, keylen)))
            return s;
        i = (i + 1) & (cap - 1);
    }
}

static struct es_map_slot_s *map_find(struct es_map_slot_s *slots, size_t cap, const void *key,
                                      size_t keylen)
{
    return map_find_hashed(slots, cap, key, keylen, es_map_hash(key, keylen));
}

static void map_grow(es_map_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    struct es_map_slot_s *ns = es_calloc(ncap, sizeof(*ns));
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            *map_find(ns, ncap, m->slots[i].key, m->slots[i].keylen) = m->slots[i];
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
}

void *es_map_get(const es_map_t *m, const void *key, size_t keylen, bool *found)
{
    return es_map_get_hashed(m, key, keylen, m->cap ? es_map_hash(key, keylen) : 0, found);
}

void *es_map_get_hashed(const es_map_t *m, const void *key, size_t keylen, uint64_t hash,
                        bool *found)
{
    struct es_map_slot_s *s = m->cap ? map_find_hashed(m->slots, m->cap, key, keylen, hash) : NULL;
    if (found)
        *found = s && s->key;
    return s && s->key ? s->val : NULL;
}

void **es_map_slot(es_map_t *m, const void *key, size_t keylen, bool *added)
{
    if ((m->used + 1) * 4 > m->cap * 3) /* at most 3/4 full: probes stay short */
        map_grow(m);
    struct es_map_slot_s *s = map_find(m->slots, m->cap, key, keylen);
    if (added)
        *added = !s->key;
    if (!s->key) {
        s->key = es_malloc(keylen ? keylen : 1);
        memcpy(s->key, key, keylen);
        s->keylen = keylen;
        s->val = NULL;
        m->used++;
    }
    return &s->val;
}

void es_map_set(es_map_t *m, const void *key, size_t keylen, void *val)
{
    void **slot = es_map_slot(m, key, keylen, NULL);
    if (*slot && m->free_val)
        m->free_val(*slot);
    *slot = val;
}

bool es_map_next(const es_map_t *m, size_t *pos, const void **key, size_t *keylen, void ***val)
{
    for (; *pos < m->cap; (*pos)++) {
        struct es_map_slot_s *s = &m->slots[*pos];
        if (s->key) {
            (*pos)++;
            *key = s->key;
            *keylen = s->keylen;
            *val = &s->val;
            return true;
        }
    }
    return false;
}

bool es_map_remove(es_map_t *m, const void *key, size_t keylen)
{
    if (!m->cap)
        return false;
    size_t mask = m->cap - 1;
    struct es_map_slot_s *s = map_find(m->slots, m->cap, key, keylen);
    if (!s->key)
        return false;
    free(s->key);
    if (s->val && m->free_val)
        m->free_val(s->val);
    /* Close the hole: a later entry of the probe run moves into it when the
     * hole lies between the entry's home slot and the slot it is in. */
    size_t hole = (size_t)(s - m->slots);
    for (size_t j = (hole + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = (size_t)es_map_hash(m->slots[j].key, m->slots[j].keylen) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = (struct es_map_slot_s){0};
    m->used--;
    return true;
}

size_t es_map_count(const es_map_t *m)
{
    return m->used;
}

void es_map_clear(es_map_t *m)
{
    if (!m->used)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        struct es_map_slot_s *s = &m->slots[i];
        if (!s->key)
            continue;
        free(s->key);
        if (s->val && m->free_val)
            m->free_val(s->val);
    }
    memset(m->slots, 0, m->cap * sizeof(*m->slots));
    m->used = 0;
}

void es_map_free(es_map_t *m)
{
    es_map_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}
