/*
 * write_load.c — load generator for the command path through escqrs-gateway.
 *
 *   write_load -u http://127.0.0.1:8080 -c 16 -d 10 [-r 5000] [-a 1000] [-p prefix]
 *              [-q http://127.0.0.1:8090] [-s started-file] [-w]
 *
 * -c clients (one keep-alive connection each) send deposits to -a accounts
 * (opened first) for -d seconds; -r caps the total rate (commands/s, paced
 * per client: an open-loop schedule, so latency includes queueing when the
 * service falls behind), 0 = as fast as answers come (closed loop).  The
 * clients' schedules are staggered (client i starts i/clients of an interval
 * late), so commands arrive evenly at the rate: without it every client
 * fired at the same instant and "25 % of saturation" was a burst of all the
 * clients every interval, measured as if it were a steady rate.
 * With -q, every accepted command is followed by a query of its account on
 * that projector (a second connection per client) with min_position= the
 * answer's position: the end-to-end latency from sending the command to
 * seeing it in a view.
 * Prints one `RESULT phase=command ...` line: achieved commands/s,
 * p50/p90/p99/p99.9/max latency in ms (and e2e_* with -q), and the count of
 * non-200 answers.  Only 200s count as achieved and have a latency: a
 * refused request (429 past a connection limit, 503) is quick, and counted
 * it once made 512 clients look like 48 692 commands/s.  A connection error
 * or an answer later than 30 s counts as a non-200 too.
 * With -w, the commands are withdrawals of a cent from the (empty) accounts:
 * each is decided and refused (422 insufficient_funds), so the command
 * service's transactions carry outcomes and no event; 422 is then the answer
 * counted as achieved, with its latency.
 * With -s, the file is created when the timed load starts, after the accounts
 * are opened (one client, one command each: seconds of a level's start), so
 * a caller that measures CPU during the load knows when it runs.
 *
 * Why one thread and epoll: with a thread and a libcurl handle per client,
 * 512 clients cost 0.045-0.054 ms of CPU per command, about 15 % of the two
 * cores the whole path is measured on (write-bench.sh's `load=`), taken from
 * the system under test.  Plain HTTP/1.1 is all it speaks: a request written
 * whole, an answer read by its Content-Length (anything else is an error).
 * A benchmark, not a test: it asserts nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_MAX    8192 /* an answer's headers and body; more is an error */
#define REQUEST_MAX   512
#define TIMEOUT_S     30.0 /* an answer later than this is an error */
#define EVENTS_MAX    256
#define ONE_CENT_BODY "{\"amount_cents\":1}" /* a deposit, or a withdrawal (-w) */
#define OPEN_BODY     "{\"owner\":\"bench\"}"
#define POSITION_FROM "\"position\":\""

typedef struct {
    double *v; /* ms */
    size_t n, cap;
} samples_t;

typedef struct {
    struct sockaddr_in addr;
    char host[64]; /* host:port, for the Host header */
} endpoint_t;

typedef struct client client_t;

/* One keep-alive connection and the request on it. */
typedef struct {
    client_t *owner;
    const endpoint_t *ep;
    int fd; /* -1: not connected */
    bool busy;
    char out[REQUEST_MAX];
    size_t outlen, outoff;
    char in[ANSWER_MAX + 1];
    size_t inlen;
} conn_t;

struct client {
    int id;
    conn_t cmd, query;
    double t0;   /* the command's start: its schedule (open loop) or its send */
    double next; /* open loop: when the next command is due */
    double sent; /* for the time-out */
    int account;
    unsigned seed;
    samples_t lat, e2e;
    size_t errors;
};

static const char *prefix = "bench";
static const char *started_file = NULL; /* -s: created when the timed load starts */
static int clients = 16, duration = 10, accounts = 1000;
static double rate = 0;
static bool refused_only = false; /* -w: withdrawals from empty accounts, answered 422 */
static double t_start, t_end;
static int epfd = -1;
static endpoint_t gw_ep, pj_ep;
static bool with_query;

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
        if (!s->v) {
            perror("write_load");
            exit(1);
        }
    }
    s->v[s->n++] = ms;
}

/* "http://HOST:PORT" (an IPv4 address) into @p ep. */
static bool parse_url(const char *url, endpoint_t *ep)
{
    char host[48];
    int port = 0;
    if (sscanf(url, "http://%47[0-9.]:%d", host, &port) != 2 || port <= 0 || port > 65535)
        return false;
    memset(ep, 0, sizeof(*ep));
    ep->addr.sin_family = AF_INET;
    ep->addr.sin_port = htons((uint16_t)port);
    snprintf(ep->host, sizeof(ep->host), "%s:%d", host, port);
    return inet_pton(AF_INET, host, &ep->addr.sin_addr) == 1;
}

/*
 * An HTTP/1.1 answer in @p b (@p n bytes, NUL after them): 0 while it is
 * incomplete, -1 when it is malformed or not framed by Content-Length, else
 * its whole length, with its status and where its body starts.
 */
static long parse_answer(const char *b, size_t n, int *status, size_t *body_off)
{
    const char *end = memmem(b, n, "\r\n\r\n", 4);
    if (!end)
        return n >= ANSWER_MAX ? -1 : 0;
    if (strncmp(b, "HTTP/1.", 7) || n < 12)
        return -1;
    *status = (int)strtol(b + 9, NULL, 10);
    size_t head = (size_t)(end - b) + 4;
    long length = -1;
    for (const char *line = strstr(b, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (!strncasecmp(line, "Content-Length:", 15))
            length = strtol(line + 15, NULL, 10);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18))
            return -1;
    }
    if (length < 0 || head + (size_t)length > ANSWER_MAX)
        return -1;
    if (n < head + (size_t)length)
        return 0;
    *body_off = head;
    return (long)(head + (size_t)length);
}

/* Write a request for @p path (POST with @p body, or GET) into c->out. */
static void format_request(conn_t *c, const char *path, const char *body)
{
    int n = body ? snprintf(c->out, sizeof(c->out),
                            "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            path, c->ep->host, strlen(body), body)
                 : snprintf(c->out, sizeof(c->out), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path,
                            c->ep->host);
    c->outlen = n > 0 && (size_t)n < sizeof(c->out) ? (size_t)n : 0;
    c->outoff = 0;
    c->inlen = 0;
}

static int connect_to(const endpoint_t *ep, bool nonblocking)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&ep->addr, sizeof(ep->addr)) && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->busy = false;
}

/* Write what is left of c->out; wait for EPOLLOUT if the socket is full. */
static bool conn_flush(conn_t *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0;
        }
        if (w <= 0)
            return false;
        c->outoff += (size_t)w;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0;
}

/* Send c->out, connecting first when the connection is closed. */
static bool conn_send(conn_t *c)
{
    if (c->fd < 0) {
        c->fd = connect_to(c->ep, true);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        if (c->fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev)) {
            conn_close(c);
            return false;
        }
    }
    c->busy = true;
    return c->outlen > 0 && conn_flush(c);
}

static void client_error(client_t *cl, const char *what, const conn_t *c, int status)
{
    if (cl->errors++ == 0)
        fprintf(stderr, "write_load: %.*s: HTTP %d %.200s\n", (int)strcspn(c->out, "\r"), c->out,
                status, what);
}

/* The next command of an idle client, if one is due. */
static void client_start(client_t *cl, double now)
{
    if (cl->cmd.busy || cl->query.busy || now >= t_end || (rate > 0 && now < cl->next))
        return;
    double interval = rate > 0 ? clients / rate : 0;
    cl->t0 = interval > 0 ? cl->next : now; /* open loop: latency from the schedule */
    cl->next += interval;
    cl->account = rand_r(&cl->seed) % accounts;
    char path[256];
    snprintf(path, sizeof(path), "/v1/accounts/%s-%d/%s", prefix, cl->account,
             refused_only ? "withdraw" : "deposit");
    format_request(&cl->cmd, path, ONE_CENT_BODY);
    cl->sent = now;
    if (!conn_send(&cl->cmd)) {
        client_error(cl, "cannot send", &cl->cmd, 0);
        conn_close(&cl->cmd);
    }
}

/* An answer on @p c is complete: take its figures and send the query after a command. */
static void answered(conn_t *c, int status, const char *body, bool close_after)
{
    client_t *cl = c->owner;
    double now = now_s();
    c->busy = false;
    if (status != (refused_only && c == &cl->cmd ? 422 : 200)) {
        client_error(cl, body, c, status);
    } else if (c == &cl->query) {
        add_sample(&cl->e2e, (now - cl->t0) * 1000.0);
    } else {
        add_sample(&cl->lat, (now - cl->t0) * 1000.0);
        const char *p = strstr(body, POSITION_FROM);
        char pos[64], path[256];
        if (with_query && p && sscanf(p + strlen(POSITION_FROM), "%63[0-9:]", pos) == 1) {
            snprintf(path, sizeof(path), "/v1/accounts/%s-%d?min_position=%s", prefix, cl->account,
                     pos);
            format_request(&cl->query, path, NULL);
            cl->sent = now;
            if (!conn_send(&cl->query)) {
                client_error(cl, "cannot send", &cl->query, 0);
                conn_close(&cl->query);
            }
        }
    }
    if (close_after)
        conn_close(c);
}

/* Readable: read, and finish the answer once it is whole. */
static void conn_read(conn_t *c)
{
    ssize_t r = recv(c->fd, c->in + c->inlen, ANSWER_MAX - c->inlen, 0);
    if (r < 0 && errno == EAGAIN)
        return;
    if (r <= 0 || !c->busy) { /* closed, failed, or bytes nobody asked for */
        if (c->busy)
            client_error(c->owner, "connection closed", c, 0);
        conn_close(c);
        return;
    }
    c->inlen += (size_t)r;
    c->in[c->inlen] = '\0';
    int status = 0;
    size_t body = 0;
    long len = parse_answer(c->in, c->inlen, &status, &body);
    if (len < 0) {
        client_error(c->owner, "malformed answer", c, status);
        conn_close(c);
    } else if (len > 0) {
        c->in[len] = '\0';
        const char *head_end = c->in + body;
        bool close_after = memmem(c->in, (size_t)(head_end - c->in), "Connection: close", 17);
        answered(c, status, c->in + body, close_after);
    }
}

/* Answers later than TIMEOUT_S are errors; their connections are dropped. */
static void expire(client_t *cl, double now)
{
    conn_t *c = cl->cmd.busy ? &cl->cmd : cl->query.busy ? &cl->query : NULL;
    if (c && now - cl->sent > TIMEOUT_S) {
        client_error(cl, "no answer in 30 s", c, 0);
        conn_close(c);
    }
}

/* Run every client until the end, then until their last answers are in. */
static void run_clients(client_t *cl)
{
    struct epoll_event evs[EVENTS_MAX];
    double last_expire = now_s();
    for (;;) {
        double now = now_s(), due = t_end;
        bool busy = false;
        for (int i = 0; i < clients; i++) {
            client_start(&cl[i], now);
            busy = busy || cl[i].cmd.busy || cl[i].query.busy;
            if (rate > 0 && !cl[i].cmd.busy && !cl[i].query.busy && cl[i].next < due)
                due = cl[i].next;
        }
        if (!busy && now >= t_end)
            return;
        if (now - last_expire > 0.1) {
            for (int i = 0; i < clients; i++)
                expire(&cl[i], now);
            last_expire = now;
        }
        double wait = 0.1; /* the time-outs' turn at the latest */
        if (rate > 0 && now < t_end && due - now < wait)
            wait = due > now ? due - now : 0; /* the next idle client's schedule */
        struct timespec ts = {0, wait > 0 ? (long)(wait * 1e9) : 0};
        int n = epoll_pwait2(epfd, evs, EVENTS_MAX, &ts, NULL);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT && c->outoff < c->outlen && !conn_flush(c)) {
                client_error(c->owner, "cannot send", c, 0);
                conn_close(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(c);
        }
    }
}

/* One blocking request on @p fd; its status, or 0 on a connection error. */
static int roundtrip(int fd, conn_t *c)
{
    for (size_t off = 0; off < c->outlen;) {
        ssize_t w = send(fd, c->out + off, c->outlen - off, MSG_NOSIGNAL);
        if (w <= 0)
            return 0;
        off += (size_t)w;
    }
    int status = 0;
    size_t body;
    long len = 0;
    while (len == 0) {
        ssize_t r = recv(fd, c->in + c->inlen, ANSWER_MAX - c->inlen, 0);
        if (r <= 0)
            return 0;
        c->inlen += (size_t)r;
        c->in[c->inlen] = '\0';
        len = parse_answer(c->in, c->inlen, &status, &body);
    }
    return len > 0 ? status : 0;
}

/* Open the accounts, one command at a time (422 account_exists on a rerun is fine). */
static bool open_accounts(void)
{
    static conn_t c = {.ep = &gw_ep};
    int fd = connect_to(&gw_ep, false);
    for (int a = 0; fd >= 0 && a < accounts; a++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/accounts/%s-%d/open", prefix, a);
        format_request(&c, path, OPEN_BODY);
        int st = roundtrip(fd, &c);
        if (st != 200 && st != 422) {
            fprintf(stderr, "open %s: HTTP %d\n", path, st);
            close(fd);
            return false;
        }
        if (strcasestr(c.in, "Connection: close")) { /* the server ended the keep-alive */
            close(fd);
            fd = connect_to(&gw_ep, false);
        }
    }
    if (fd < 0)
        fprintf(stderr, "write_load: cannot connect to %s\n", gw_ep.host);
    else
        close(fd);
    return fd >= 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define PCT(s, p) ((s).n ? (s).v[(size_t)((double)((s).n - 1) * (p))] : 0.0)

static void report(client_t *cl, double elapsed)
{
    samples_t lat = {0}, e2e = {0};
    size_t errors = 0;
    for (int i = 0; i < clients; i++) {
        for (size_t k = 0; k < cl[i].lat.n; k++)
            add_sample(&lat, cl[i].lat.v[k]);
        for (size_t k = 0; k < cl[i].e2e.n; k++)
            add_sample(&e2e, cl[i].e2e.v[k]);
        errors += cl[i].errors;
        free(cl[i].lat.v);
        free(cl[i].e2e.v);
    }
    qsort(lat.v, lat.n, sizeof(double), cmp);
    qsort(e2e.v, e2e.n, sizeof(double), cmp);
    printf("RESULT phase=command clients=%d target_rate=%.0f achieved=%.0f p50=%.2f p90=%.2f "
           "p99=%.2f p999=%.2f max=%.2f non200=%zu n=%zu",
           clients, rate, (double)lat.n / elapsed, PCT(lat, 0.50), PCT(lat, 0.90), PCT(lat, 0.99),
           PCT(lat, 0.999), lat.n ? lat.v[lat.n - 1] : 0.0, errors, lat.n);
    if (with_query)
        printf(" e2e_p50=%.2f e2e_p99=%.2f e2e_p999=%.2f e2e_n=%zu", PCT(e2e, 0.50), PCT(e2e, 0.99),
               PCT(e2e, 0.999), e2e.n);
    struct rusage ru; /* this load generator's own CPU: a share of the machine too */
    getrusage(RUSAGE_SELF, &ru);
    printf(" load_cpu_s=%.2f\n", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    free(lat.v);
    free(e2e.v);
}

int main(int argc, char **argv)
{
    const char *base = "http://127.0.0.1:8080", *query_base = NULL;
    int o;
    while ((o = getopt(argc, argv, "u:c:d:r:a:p:q:s:w")) != -1) {
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
        case 'w':
            refused_only = true;
            break;
        default:
            fprintf(stderr,
                    "usage: %s -u URL -c clients -d seconds [-r rate] [-a accounts] "
                    "[-p id-prefix] [-q projector-URL] [-s started-file] [-w]\n",
                    argv[0]);
            return 2;
        }
    }
    with_query = query_base != NULL;
    if (clients < 1 || duration < 1 || accounts < 1 || (refused_only && query_base) ||
        !parse_url(base, &gw_ep) || (with_query && !parse_url(query_base, &pj_ep))) {
        fprintf(stderr, "write_load: bad arguments (URLs are http://IPv4:port)\n");
        return 2;
    }
    struct rlimit rl; /* two sockets a client */
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < (rlim_t)(2 * clients + 64)) {
        rlim_t want = (rlim_t)(2 * clients + 64);
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    if (!open_accounts())
        return 1;

    epfd = epoll_create1(0);
    client_t *cl = calloc((size_t)clients, sizeof(*cl));
    if (epfd < 0 || !cl) {
        perror("write_load");
        return 1;
    }
    if (started_file) {
        FILE *f = fopen(started_file, "w");
        if (f)
            fclose(f);
    }
    t_start = now_s();
    t_end = t_start + duration;
    double interval = rate > 0 ? clients / rate : 0;
    for (int i = 0; i < clients; i++) {
        cl[i].id = i;
        cl[i].seed = (unsigned)i * 7919u + 1;
        cl[i].next = t_start + interval * i / clients; /* staggered: see the top */
        cl[i].cmd = (conn_t){.owner = &cl[i], .ep = &gw_ep, .fd = -1};
        cl[i].query = (conn_t){.owner = &cl[i], .ep = &pj_ep, .fd = -1};
    }
    run_clients(cl);
    report(cl, now_s() - t_start);
    for (int i = 0; i < clients; i++) {
        conn_close(&cl[i].cmd);
        conn_close(&cl[i].query);
    }
    free(cl);
    close(epfd);
    return 0;
}
