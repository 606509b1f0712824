/*
 * write_load.c — load generator for the command path through escqrs-gateway.
 *
 *   write_load -u http://127.0.0.1:8080 -c 16 -d 10 [-r 5000] [-a 1000] [-p prefix]
 *
 * -c clients (threads, one keep-alive connection each) send deposits to -a
 * accounts (opened first) for -d seconds; -r caps the total rate (commands/s,
 * paced per client: an open-loop schedule, so latency includes queueing when
 * the service falls behind), 0 = as fast as answers come (closed loop).
 * Prints one line: achieved commands/s, p50/p90/p99/max latency in ms, and
 * the count of non-200 answers.  A benchmark, not a test: it asserts nothing.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int id;
    double *lat; /* ms */
    size_t n, cap;
    size_t errors;
} client_t;

static const char *base = "http://127.0.0.1:8080";
static const char *prefix = "bench";
static int clients = 16, duration = 10, accounts = 1000;
static double rate = 0;
static double t_end;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static long post(CURL *c, const char *path, const char *body)
{
    char url[512];
    long status = 0;
    snprintf(url, sizeof(url), "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static CURL *handle(struct curl_slist *hdrs)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    return c;
}

static void *run(void *arg)
{
    client_t *cl = arg;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    CURL *c = handle(hdrs);
    char path[256];
    unsigned seed = (unsigned)cl->id * 7919u + 1;
    double interval = rate > 0 ? clients / rate : 0, next = now_s();
    while (now_s() < t_end) {
        if (interval > 0) {
            double w = next - now_s();
            if (w > 0)
                usleep((useconds_t)(w * 1e6));
        }
        double t0 = interval > 0 ? next : now_s(); /* open loop: latency from the schedule */
        next += interval;
        snprintf(path, sizeof(path), "/v1/accounts/%s-%d/deposit", prefix,
                 rand_r(&seed) % accounts);
        long st = post(c, path, "{\"amount_cents\":1}");
        if (st != 200)
            cl->errors++;
        if (cl->n == cl->cap) {
            cl->cap = cl->cap ? cl->cap * 2 : 4096;
            cl->lat = realloc(cl->lat, cl->cap * sizeof(double));
        }
        cl->lat[cl->n++] = (now_s() - t0) * 1000.0;
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int o;
    while ((o = getopt(argc, argv, "u:c:d:r:a:p:")) != -1) {
        switch (o) {
        case 'u':
            base = optarg;
            break;
        case 'c':
            clients = (int)strtol(optarg, NULL, 10);
            break;
        case 'd':
            duration = (int)strtol(optarg, NULL, 10);
            break;
        case 'r':
            rate = strtod(optarg, NULL);
            break;
        case 'a':
            accounts = (int)strtol(optarg, NULL, 10);
            break;
        case 'p':
            prefix = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: %s -u URL -c clients -d seconds [-r rate] [-a accounts] "
                    "[-p id-prefix]\n",
                    argv[0]);
            return 2;
        }
    }
    if (clients < 1 || duration < 1 || accounts < 1)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);

    /* open the accounts (once per prefix; 422 account_exists on a rerun is fine) */
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *c = handle(hdrs);
    char path[256];
    for (int a = 0; a < accounts; a++) {
        snprintf(path, sizeof(path), "/v1/accounts/%s-%d/open", prefix, a);
        long st = post(c, path, "{\"owner\":\"bench\"}");
        if (st != 200 && st != 422) {
            fprintf(stderr, "open %s: HTTP %ld\n", path, st);
            return 1;
        }
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);

    client_t *cl = calloc((size_t)clients, sizeof(*cl));
    pthread_t *th = calloc((size_t)clients, sizeof(*th));
    double t0 = now_s();
    t_end = t0 + duration;
    for (int i = 0; i < clients; i++) {
        cl[i].id = i;
        pthread_create(&th[i], NULL, run, &cl[i]);
    }
    size_t n = 0, errors = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        n += cl[i].n;
        errors += cl[i].errors;
    }
    double elapsed = now_s() - t0;
    double *all = malloc((n ? n : 1) * sizeof(double));
    size_t k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, cl[i].lat, cl[i].n * sizeof(double));
        k += cl[i].n;
        free(cl[i].lat);
    }
    qsort(all, n, sizeof(double), cmp);
#define PCT(p) (n ? all[(size_t)((double)(n - 1) * (p))] : 0.0)
    printf("clients=%d target_rate=%s%.0f achieved=%.0f cmd/s p50=%.2f p90=%.2f p99=%.2f "
           "max=%.2f ms non200=%zu n=%zu\n",
           clients, rate > 0 ? "" : "max/", rate, (double)n / elapsed, PCT(0.50), PCT(0.90),
           PCT(0.99), n ? all[n - 1] : 0.0, errors, n);
    free(all);
    free(cl);
    free(th);
    curl_global_cleanup();
    return 0;
}
