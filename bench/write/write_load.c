/*
 * write_load.c — load generator for the command path through escqrs-gateway.
 *
 *   write_load -u http://127.0.0.1:8080 -c 16 -d 10 [-r 5000] [-a 1000] [-p prefix]
 *              [-q http://127.0.0.1:8090] [-s started-file]
 *
 * -c clients (threads, one keep-alive connection each) send deposits to -a
 * accounts (opened first) for -d seconds; -r caps the total rate (commands/s,
 * paced per client: an open-loop schedule, so latency includes queueing when
 * the service falls behind), 0 = as fast as answers come (closed loop).  The
 * clients' schedules are staggered (client i starts i/clients of an interval
 * late), so commands arrive evenly at the rate: without it every client
 * fired at the same instant and "25 % of saturation" was a burst of all the
 * clients every interval, measured as if it were a steady rate.
 * With -q, every accepted command is followed by a query of its account on
 * that projector with min_position= the answer's position: the end-to-end
 * latency from sending the command to seeing it in a view.
 * Prints one `RESULT phase=command ...` line: achieved commands/s,
 * p50/p90/p99/p99.9/max latency in ms (and e2e_* with -q), and the count of
 * non-200 answers.  Only 200s count as achieved and have a latency: a
 * refused request (429 past a connection limit, 503) is quick, and counted
 * it once made 512 clients look like 48 692 commands/s.
 * With -s, the file is created when the timed load starts, after the accounts
 * are opened (one client, one command each: seconds of a level's start), so
 * a caller that measures CPU during the load knows when it runs.
 * A benchmark, not a test: it asserts nothing.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    double *v; /* ms */
    size_t n, cap;
} samples_t;

typedef struct {
    int id;
    samples_t lat, e2e;
    size_t errors;
} client_t;

typedef struct {
    char data[1024];
    size_t len;
} body_t;

static const char *base = "http://127.0.0.1:8080";
static const char *prefix = "bench";
static const char *query_base = NULL;
static const char *started_file = NULL; /* -s: created when the timed load starts */
static int clients = 16, duration = 10, accounts = 1000;
static double rate = 0;
static double t_start, t_end;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_sample(samples_t *s, double ms)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof(double));
    }
    s->v[s->n++] = ms;
}

static size_t keep(char *p, size_t s, size_t n, void *u)
{
    body_t *b = u;
    size_t take = s * n < sizeof(b->data) - 1 - b->len ? s * n : sizeof(b->data) - 1 - b->len;
    memcpy(b->data + b->len, p, take);
    b->len += take;
    b->data[b->len] = '\0';
    return s * n;
}

/* POST (body) or GET (NULL) @p url; the answer's start lands in @p out. */
static long request(CURL *c, const char *url, const char *body, body_t *out)
{
    long status = 0;
    out->len = 0;
    out->data[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    else
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static long post(CURL *c, const char *path, const char *body, body_t *out)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", base, path);
    return request(c, url, body, out);
}

static CURL *handle(struct curl_slist *hdrs)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    return c;
}

static void *run(void *arg)
{
    client_t *cl = arg;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    CURL *c = handle(hdrs), *q = query_base ? handle(NULL) : NULL;
    char path[256], url[512], pos[64];
    body_t answer;
    unsigned seed = (unsigned)cl->id * 7919u + 1;
    double interval = rate > 0 ? clients / rate : 0;
    double next = t_start + interval * cl->id / clients; /* staggered: see the top */
    while (now_s() < t_end) {
        if (interval > 0) {
            double w = next - now_s();
            if (w > 0)
                usleep((useconds_t)(w * 1e6));
        }
        double t0 = interval > 0 ? next : now_s(); /* open loop: latency from the schedule */
        next += interval;
        int account = rand_r(&seed) % accounts;
        snprintf(path, sizeof(path), "/v1/accounts/%s-%d/deposit", prefix, account);
        long st = post(c, path, "{\"amount_cents\":1}", &answer);
        if (st != 200) {
            if (cl->errors++ == 0)
                fprintf(stderr, "write_load: POST %s: HTTP %ld %.200s\n", path, st, answer.data);
            continue;
        }
        add_sample(&cl->lat, (now_s() - t0) * 1000.0);
        const char *p = strstr(answer.data, "\"position\":\"");
        if (q && st == 200 && p && sscanf(p + 12, "%63[0-9:]", pos) == 1) {
            snprintf(url, sizeof(url), "%s/v1/accounts/%s-%d?min_position=%s", query_base, prefix,
                     account, pos);
            long qst = request(q, url, NULL, &answer);
            if (qst == 200) {
                add_sample(&cl->e2e, (now_s() - t0) * 1000.0);
            } else {
                if (cl->errors++ == 0)
                    fprintf(stderr, "write_load: GET %s: HTTP %ld %.200s\n", url, qst, answer.data);
            }
        }
    }
    curl_easy_cleanup(c);
    if (q)
        curl_easy_cleanup(q);
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
    while ((o = getopt(argc, argv, "u:c:d:r:a:p:q:s:")) != -1) {
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
        case 'q':
            query_base = optarg;
            break;
        case 's':
            started_file = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: %s -u URL -c clients -d seconds [-r rate] [-a accounts] "
                    "[-p id-prefix] [-q projector-URL] [-s started-file]\n",
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
    body_t answer;
    for (int a = 0; a < accounts; a++) {
        snprintf(path, sizeof(path), "/v1/accounts/%s-%d/open", prefix, a);
        long st = post(c, path, "{\"owner\":\"bench\"}", &answer);
        if (st != 200 && st != 422) {
            fprintf(stderr, "open %s: HTTP %ld\n", path, st);
            return 1;
        }
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);

    client_t *cl = calloc((size_t)clients, sizeof(*cl));
    pthread_t *th = calloc((size_t)clients, sizeof(*th));
    if (started_file) {
        FILE *f = fopen(started_file, "w");
        if (f)
            fclose(f);
    }
    double t0 = now_s();
    t_start = t0;
    t_end = t0 + duration;
    for (int i = 0; i < clients; i++) {
        cl[i].id = i;
        pthread_create(&th[i], NULL, run, &cl[i]);
    }
    size_t errors = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        errors += cl[i].errors;
    }
    double elapsed = now_s() - t0;
    samples_t lat = {0}, e2e = {0};
    for (int i = 0; i < clients; i++) {
        for (size_t k = 0; k < cl[i].lat.n; k++)
            add_sample(&lat, cl[i].lat.v[k]);
        for (size_t k = 0; k < cl[i].e2e.n; k++)
            add_sample(&e2e, cl[i].e2e.v[k]);
        free(cl[i].lat.v);
        free(cl[i].e2e.v);
    }
    qsort(lat.v, lat.n, sizeof(double), cmp);
    qsort(e2e.v, e2e.n, sizeof(double), cmp);
#define PCT(s, p) ((s).n ? (s).v[(size_t)((double)((s).n - 1) * (p))] : 0.0)
    printf("RESULT phase=command clients=%d target_rate=%.0f achieved=%.0f p50=%.2f p90=%.2f "
           "p99=%.2f p999=%.2f max=%.2f non200=%zu n=%zu",
           clients, rate, (double)lat.n / elapsed, PCT(lat, 0.50), PCT(lat, 0.90), PCT(lat, 0.99),
           PCT(lat, 0.999), lat.n ? lat.v[lat.n - 1] : 0.0, errors, lat.n);
    if (query_base)
        printf(" e2e_p50=%.2f e2e_p99=%.2f e2e_p999=%.2f e2e_n=%zu", PCT(e2e, 0.50), PCT(e2e, 0.99),
               PCT(e2e, 0.999), e2e.n);
    struct rusage ru; /* this load generator's own CPU: a share of the machine too */
    getrusage(RUSAGE_SELF, &ru);
    printf(" load_cpu_s=%.2f\n", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    free(lat.v);
    free(e2e.v);
    free(cl);
    free(th);
    curl_global_cleanup();
    return 0;
}
