/*
 * metrics.c — a small Prometheus registry.
 *
 * Values are C11 atomics so updates never take a lock; doubles (gauges,
 * histogram sums) are stored as their bit patterns in atomic 64-bit words and
 * updated with compare-and-swap.  Metrics of one name are rendered together
 * under one HELP/TYPE header, as the exposition format requires.
 */
#include "escqrs/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_kind_t;

struct es_metric_s {
    metric_kind_t kind;
    char *name, *help, *labels;
    _Atomic uint64_t value; /* counter value, or gauge/histogram-sum bits */
    double *bounds;
    size_t nbounds;
    _Atomic uint64_t *buckets; /* nbounds + 1 (+Inf) */
    _Atomic uint64_t count;
    struct es_metric_s *next;
};

struct es_metrics_s {
    pthread_mutex_t lock;
    struct es_metric_s *head, *tail;
};

const double es_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t es_metrics_latency_nbuckets =
    sizeof(es_metrics_latency_buckets) / sizeof(es_metrics_latency_buckets[0]);

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

es_metrics_t *es_metrics_new(void)
{
    es_metrics_t *m = es_calloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void es_metrics_destroy(es_metrics_t *m)
{
    if (!m)
        return;
    for (struct es_metric_s *x = m->head, *next; x; x = next) {
        next = x->next;
        free(x->name);
        free(x->help);
        free(x->labels);
        free(x->bounds);
        free((void *)x->buckets);
        free(x);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct es_metric_s *find_or_add(es_metrics_t *m, metric_kind_t kind, const char *name,
                                       const char *help, const char *labels)
{
    const char *lab = labels ? labels : "";
    pthread_mutex_lock(&m->lock);
    struct es_metric_s *x;
    for (x = m->head; x; x = x->next)
        if (!strcmp(x->name, name) && !strcmp(x->labels, lab))
            goto out;
    x = es_calloc(1, sizeof(*x));
    x->kind = kind;
    x->name = es_strdup(name);
    x->help = es_strdup(help);
    x->labels = es_strdup(lab);
    /* keep metrics of one name adjacent: insert after the last one of that name */
    struct es_metric_s *after = NULL;
    for (struct es_metric_s *y = m->head; y; y = y->next)
        if (!strcmp(y->name, name))
            after = y;
    if (after) {
        x->next = after->next;
        after->next = x;
        if (m->tail == after)
            m->tail = x;
    } else if (m->tail) {
        m->tail->next = x;
        m->tail = x;
    } else {
        m->head = m->tail = x;
    }
out:
    pthread_mutex_unlock(&m->lock);
    return x;
}

es_counter_t *es_metrics_counter(es_metrics_t *m, const char *name, const char *help,
                                 const char *labels)
{
    return find_or_add(m, M_COUNTER, name, help, labels);
}

es_gauge_t *es_metrics_gauge(es_metrics_t *m, const char *name, const char *help,
                             const char *labels)
{
    return find_or_add(m, M_GAUGE, name, help, labels);
}

es_histogram_t *es_metrics_histogram(es_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *bounds, size_t nbounds)
{
    struct es_metric_s *x = find_or_add(m, M_HISTOGRAM, name, help, labels);
    pthread_mutex_lock(&m->lock);
    if (!x->buckets) {
        x->bounds = es_malloc(nbounds * sizeof(double));
        memcpy(x->bounds, bounds, nbounds * sizeof(double));
        x->nbounds = nbounds;
        x->buckets = es_calloc(nbounds + 1, sizeof(*x->buckets));
    }
    pthread_mutex_unlock(&m->lock);
    return x;
}

void es_counter_add(es_counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

uint64_t es_counter_value(const es_counter_t *c)
{
    return atomic_load_explicit(&((es_counter_t *)c)->value, memory_order_relaxed);
}

void es_gauge_set(es_gauge_t *g, double v)
{
    atomic_store_explicit(&g->value, d2u(v), memory_order_relaxed);
}

void es_histogram_observe(es_histogram_t *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->value, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->value, &old, d2u(u2d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

static void render_labels(es_buf_t *out, const char *labels, const char *extra)
{
    bool have = labels && *labels, more = extra && *extra;
    if (!have && !more)
        return;
    es_buf_appendf(out, "{%s%s%s}", have ? labels : "", have && more ? "," : "", more ? extra : "");
}

void es_metrics_render(es_metrics_t *m, es_buf_t *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    const char *last = NULL;
    pthread_mutex_lock(&m->lock);
    for (struct es_metric_s *x = m->head; x; x = x->next) {
        if (!last || strcmp(last, x->name))
            es_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name,
                           types[x->kind]);
        last = x->name;
        uint64_t raw = atomic_load_explicit(&x->value, memory_order_relaxed);
        switch (x->kind) {
        case M_COUNTER:
            es_buf_appendf(out, "%s", x->name);
            render_labels(out, x->labels, NULL);
            es_buf_appendf(out, " %llu\n", (unsigned long long)raw);
            break;
        case M_GAUGE:
            es_buf_appendf(out, "%s", x->name);
            render_labels(out, x->labels, NULL);
            es_buf_appendf(out, " %.17g\n", u2d(raw));
            break;
        case M_HISTOGRAM: {
            uint64_t cum = 0;
            char le[48];
            for (size_t i = 0; i <= x->nbounds; i++) {
                cum += atomic_load_explicit(&x->buckets[i], memory_order_relaxed);
                if (i < x->nbounds)
                    snprintf(le, sizeof(le), "le=\"%g\"", x->bounds[i]);
                else
                    snprintf(le, sizeof(le), "le=\"+Inf\"");
                es_buf_appendf(out, "%s_bucket", x->name);
                render_labels(out, x->labels, le);
                es_buf_appendf(out, " %llu\n", (unsigned long long)cum);
            }
            es_buf_appendf(out, "%s_sum", x->name);
            render_labels(out, x->labels, NULL);
            es_buf_appendf(out, " %.17g\n%s_count", u2d(raw), x->name);
            render_labels(out, x->labels, NULL);
            es_buf_appendf(
                out, " %llu\n",
                (unsigned long long)atomic_load_explicit(&x->count, memory_order_relaxed));
            break;
        }
        }
    }
    pthread_mutex_unlock(&m->lock);
}
