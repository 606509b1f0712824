/*
 * test_metrics.c — Prometheus text rendering of counters, gauges, histograms.
 */
#include "escqrs/metrics.h"
#include "testutil.h"

#include <string.h>

static void test_render(void)
{
    es_metrics_t *m = es_metrics_new();
    es_counter_t *a = es_metrics_counter(m, "escqrs_commands_total", "Commands", "result=\"ok\"");
    es_gauge_t *g = es_metrics_gauge(m, "escqrs_lag", "Lag", NULL);
    es_counter_t *b =
        es_metrics_counter(m, "escqrs_commands_total", "Commands", "result=\"rejected\"");
    static const double bounds[] = {0.01, 0.1};
    es_histogram_t *h =
        es_metrics_histogram(m, "escqrs_latency_seconds", "Latency", NULL, bounds, 2);

    CU_ASSERT_PTR_EQUAL(
        a, es_metrics_counter(m, "escqrs_commands_total", "Commands", "result=\"ok\""));
    es_counter_add(a, 3);
    es_counter_add(b, 1);
    es_gauge_set(g, 12.5);
    es_histogram_observe(h, 0.005);
    es_histogram_observe(h, 0.05);
    es_histogram_observe(h, 5);
    CU_ASSERT_EQUAL(es_counter_value(a), 3);

    es_buf_t out = {0};
    es_metrics_render(m, &out);
    const char *expect = "# HELP escqrs_commands_total Commands\n"
                         "# TYPE escqrs_commands_total counter\n"
                         "escqrs_commands_total{result=\"ok\"} 3\n"
                         "escqrs_commands_total{result=\"rejected\"} 1\n"
                         "# HELP escqrs_lag Lag\n"
                         "# TYPE escqrs_lag gauge\n"
                         "escqrs_lag 12.5\n"
                         "# HELP escqrs_latency_seconds Latency\n"
                         "# TYPE escqrs_latency_seconds histogram\n"
                         "escqrs_latency_seconds_bucket{le=\"0.01\"} 1\n"
                         "escqrs_latency_seconds_bucket{le=\"0.1\"} 2\n"
                         "escqrs_latency_seconds_bucket{le=\"+Inf\"} 3\n"
                         "escqrs_latency_seconds_sum 5.0549999999999997\n"
                         "escqrs_latency_seconds_count 3\n";
    ES_ASSERT_STR_EQ(out.data, expect);
    es_buf_free(&out);
    es_metrics_destroy(m);
}

int main(void)
{
    static const es_test_case_t cases[] = {{"render", test_render}, {NULL, NULL}};
    return es_test_run("metrics", cases);
}
