/*
 * 0903-slow-clients.c — 2 000 connections that never finish a request, held
 * against the gateway while a normal client keeps working.
 *
 * The attack comes from 100 loopback addresses (127.0.0.2 ... 127.0.0.101,
 * 20 connections each, under the per-client limit), as a botnet would:
 * slowloris connections that send one more header byte every 2 s, requests
 * whose Content-Length promises more than is ever sent, chunked bodies that
 * never end, and garbage.  The attacker re-opens whatever the server
 * closes, so about 2 000 connections are held for the whole attack.  One
 * more address opens 400 connections at once: at most
 * http.max.connections.per.client (256) may stay open.
 *
 * Meanwhile a normal client (127.0.0.1) sends deposits one after another
 * and asks /healthz and /readyz: every one must be answered (a command 200,
 * health 200), and its latency is printed next to the same client's
 * latency before the attack.  The gateway's thread count must stay bounded
 * (no thread per connection) and its log must not grow with every refused
 * connection (rate-limited lines).
 */
#include "testutil.h"
#include "writetest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADDRS      100
#define PER_ADDR   20
#define ATTACK_S   25
#define NORMAL_MAX 4000

typedef enum { SLOWLORIS, SHORT_BODY, ENDLESS_CHUNKS, GARBAGE } kind_t;

typedef struct {
    int fd;
    kind_t kind;
    int addr;
    size_t sent; /* bytes of its script sent */
} conn_t;

static wt_stack_t st;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int open_from(int addr_last_octet, int port)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)addr_last_octet);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) ||
        connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* What each kind of attacker sends first, then byte by byte. */
static const char *script(kind_t k)
{
    switch (k) {
    case SLOWLORIS:
        return "POST /v1/accounts/a/deposit HTTP/1.1\r\nHost: x\r\nX-Slow: "
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    case SHORT_BODY:
        return "POST /v1/accounts/a/deposit HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
               "{\"amount_cents\":1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    case ENDLESS_CHUNKS:
        return "POST /v1/accounts/a/deposit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               "\r\n1\r\na\r\n1\r\na\r\n1\r\na\r\n1\r\na\r\n1\r\na\r\n1\r\na\r\n1\r\na\r\n1\r\na\r"
               "\n";
    default:
        return "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage garbage garbage garbage";
    }
}

static bool alive(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* One attacker step: reopen what was closed, send each connection one more byte. */
static size_t attack_step(conn_t *cs, size_t n, int port, size_t *reopened)
{
    size_t held = 0;
    for (size_t i = 0; i < n; i++) {
        conn_t *c = &cs[i];
        if (c->fd >= 0 && !alive(c->fd)) {
            close(c->fd);
            c->fd = -1;
        }
        if (c->fd < 0) {
            c->fd = open_from(2 + c->addr, port);
            c->sent = 0;
            *reopened += c->fd >= 0;
            if (c->fd < 0)
                continue;
            /* all but the last byte of a first chunk at once: the server has work to do */
            size_t first = strlen(script(c->kind)) / 2;
            send(c->fd, script(c->kind), first, MSG_NOSIGNAL | MSG_DONTWAIT);
            c->sent = first;
        }
        const char *s = script(c->kind);
        if (c->sent < strlen(s)) {
            if (send(c->fd, s + c->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                c->sent++;
        }
        held++;
    }
    return held;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n)
        return -1;
    qsort(v, n, sizeof(*v), cmp_double);
    return v[(size_t)((double)(n - 1) * p)];
}

/* One normal deposit; its latency in ms, or -1 when it did not get a 200. */
static double normal_deposit(int i)
{
    char key[200];
    snprintf(key, sizeof(key), "%sn-%d", st.prefix, i);
    double t0 = now_ms();
    int status =
        wt_post(&st.gw, "/v1/accounts/normal/deposit", "{\"amount_cents\":5}", 18, key, NULL, NULL);
    return status == 200 ? now_ms() - t0 : -1;
}

static long threads_of(pid_t pid)
{
    char path[64], line[256];
    long n = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "Threads:", 8))
            n = strtol(line + 8, NULL, 10);
    if (f)
        fclose(f);
    return n;
}

static long lines_of(const char *path)
{
    long n = 0;
    int ch;
    FILE *f = fopen(path, "r");
    while (f && (ch = fgetc(f)) != EOF)
        n += ch == '\n';
    if (f)
        fclose(f);
    return n;
}

static void test_slow_clients(void)
{
    static double before[NORMAL_MAX], during[NORMAL_MAX];
    size_t nbefore = 0, nduring = 0, failed = 0, health_ok = 0, health_total = 0;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max; /* the attacker needs a few thousand descriptors */
    setrlimit(RLIMIT_NOFILE, &rl);

    wt_stack_init(&st, "account");
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    CU_ASSERT_EQUAL_FATAL(
        wt_post(&st.gw, "/v1/accounts/normal/open", "{\"owner\":\"n\"}", 13, NULL, NULL, NULL),
        200);
    for (int i = 0; i < 100; i++) { /* the same client, before the attack */
        double ms = normal_deposit(i);
        if (ms >= 0)
            before[nbefore++] = ms;
    }
    long threads_before = threads_of(st.gw.pid), log_before = lines_of(st.gw.log);

    /* 400 at once from one more address: the per-client limit */
    int crowd[400], crowd_open = 0;
    for (int i = 0; i < 400; i++)
        crowd[i] = open_from(2 + ADDRS, st.gw.port);
    usleep(1000 * 1000);
    for (int i = 0; i < 400; i++) {
        crowd_open += crowd[i] >= 0 && alive(crowd[i]);
        if (crowd[i] >= 0)
            close(crowd[i]);
    }

    conn_t *cs = calloc(ADDRS * PER_ADDR, sizeof(*cs));
    size_t n = ADDRS * PER_ADDR, reopened = 0, held = 0, held_min = n;
    for (size_t i = 0; i < n; i++) {
        cs[i].fd = -1;
        cs[i].addr = (int)(i % ADDRS);
        cs[i].kind = i % 10 < 7 ? SLOWLORIS : (kind_t)(1 + i % 3);
    }
    attack_step(cs, n, st.gw.port, &reopened);
    reopened = 0;
    double start = now_ms(), last_step = start;
    long threads_max = 0;
    int i = 100;
    while (now_ms() - start < ATTACK_S * 1000.0 && nduring < NORMAL_MAX) {
        if (now_ms() - last_step >= 2000) {
            held = attack_step(cs, n, st.gw.port, &reopened);
            held_min = held < held_min ? held : held_min;
            last_step = now_ms();
        }
        double ms = normal_deposit(i++);
        if (ms >= 0)
            during[nduring++] = ms;
        else
            failed++;
        if (i % 10 == 0) {
            health_total += 2;
            health_ok += wt_get(&st.gw, "/healthz", NULL) == 200;
            health_ok += wt_get(&st.gw, "/readyz", NULL) == 200;
            long t = threads_of(st.gw.pid);
            threads_max = t > threads_max ? t : threads_max;
        }
    }
    double attack_s = (now_ms() - start) / 1000.0;
    long log_lines = lines_of(st.gw.log) - log_before;
    for (size_t k = 0; k < n; k++)
        if (cs[k].fd >= 0)
            close(cs[k].fd);
    free(cs);

    double b50 = pct(before, nbefore, 0.5), b99 = pct(before, nbefore, 0.99);
    double d50 = pct(during, nduring, 0.5), d99 = pct(during, nduring, 0.99);
    printf("\n  attack: %zu slow connections held (at least %zu at each step), %zu re-opened "
           "after the server closed them; %d of 400 from one address stayed open\n",
           held, held_min, reopened, crowd_open);
    printf("  normal client: before p50 %.1f ms p99 %.1f ms (%zu); during p50 %.1f ms p99 %.1f "
           "ms (%zu ok, %zu failed); health %zu/%zu\n",
           b50, b99, nbefore, d50, d99, nduring, failed, health_ok, health_total);
    printf("  gateway threads %ld before, at most %ld during; %ld log line(s) during the "
           "attack\n",
           threads_before, threads_max, log_lines);
    printf("  RESULT slow_connections=%zu normal_ok=%zu normal_failed=%zu p50_ms=%.1f "
           "p99_ms=%.1f health_ok=%zu/%zu\n",
           held_min, nduring, failed, d50, d99, health_ok, health_total);
    CU_ASSERT(held_min >= (size_t)(ADDRS * PER_ADDR * 9 / 10));
    CU_ASSERT(crowd_open <= 256);
    /* the request deadline (http.request.timeout.ms, 10 s) cut every slow request */
    if (attack_s > 12.0)
        CU_ASSERT(reopened >= (size_t)(ADDRS * PER_ADDR * 9 / 10));
    CU_ASSERT(nduring >= 50);
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT_EQUAL(health_ok, health_total);
    CU_ASSERT(threads_max < threads_before + 16); /* no thread per connection */
    CU_ASSERT(log_lines < 200);                   /* rate-limited, not a line per connection */
    wt_stack_stop(&st);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"2000 slow connections held, a normal client still served", test_slow_clients},
        {NULL, NULL},
    };
    return es_test_run("fault-slow-clients", cases);
}
