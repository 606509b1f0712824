/*
 * mem.c — allocation wrappers and es_buf_t.
 *
 * A daemon that cannot allocate cannot make progress safely; aborting with a
 * clear message lets the orchestrator restart it, and spares every caller an
 * error path that would never be tested.
 */
#include "escqrs/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

char *es_strndup(const char *s, size_t n)
{
    char *p = es_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void es_buf_reserve(es_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1; /* +1 keeps room for a terminating NUL */
    if (need <= b->cap)
        return;
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

void es_buf_append(es_buf_t *b, const void *data, size_t len)
{
    es_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
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

int es_buf_load_file(es_buf_t *b, const char *path)
{
    char chunk[8192];
    size_t n;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    es_buf_set(b, "", 0);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        es_buf_append(b, chunk, n);
    int failed = ferror(fp);
    fclose(fp);
    return failed ? -1 : 0;
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
