/*
 * test_auth_jwks.c — a JWKS given by URL (common/src/auth.c): a rotated key
 * reaches the verifier with one fetch, and nothing a token says makes a
 * thread that must not wait wait for the provider.
 *
 * The provider is a small HTTP server on a thread here that counts its GETs,
 * answers each after `delay_ms` (a slow provider) and says while it holds
 * one (`holding`).  Keys and tokens are made with `escqrs auth keygen|token`
 * (RS256, two key ids).  What would catch a regression:
 *   - a token of the rotated key on a thread that may not wait is told
 *     ES_ERR_WOULD_BLOCK and starts no fetch; tokens of a known key, and a
 *     new-key token on such a thread, are answered while the provider still
 *     holds the fetch (they used to fetch the JWKS themselves, each);
 *   - eight threads that may wait, all with the rotated key's token, cause
 *     one fetch and all verify;
 *   - a made-up key id right after a fetch costs no fetch at all;
 *   - through the HTTP server, on a route that runs on the event thread: a
 *     new key's request is moved to a worker and answered 200 after the
 *     fetch, while a known key's request is answered during it;
 *   - a JWKS answer of 2 MiB (valid, with a real new key) is refused and
 *     the old keys kept.
 */
#include "escqrs/auth.h"
#include "escqrs/conf.h"
#include "escqrs/http_server.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ISSUER   "https://issuer.test"
#define AUDIENCE "escqrs-test"
#define REFETCH  "3" /* auth.jwks.refetch.min.s */
#define NWAITERS 8

static char dir[256], errstr[512];

/* ---------------------------------------------------------- the provider */

static struct {
    int fd, port;
    pthread_t thr;
    atomic_bool stop, holding;
    atomic_int gets, delay_ms;
    pthread_mutex_t mu;
    char *jwks; /* served (mu) */
} provider;

static void provider_serve(const char *jwks)
{
    pthread_mutex_lock(&provider.mu);
    free(provider.jwks);
    provider.jwks = es_strdup(jwks);
    pthread_mutex_unlock(&provider.mu);
}

static void *provider_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&provider.stop)) {
        struct pollfd pfd = {.fd = provider.fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int c = accept(provider.fd, NULL, NULL);
        if (c < 0)
            continue;
        char req[4096];
        size_t n = 0;
        ssize_t r;
        while (n < sizeof(req) - 1 && (r = read(c, req + n, sizeof(req) - 1 - n)) > 0) {
            n += (size_t)r;
            req[n] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        atomic_fetch_add(&provider.gets, 1);
        atomic_store(&provider.holding, true);
        usleep((useconds_t)atomic_load(&provider.delay_ms) * 1000);
        pthread_mutex_lock(&provider.mu);
        char head[256];
        int hl = snprintf(head, sizeof(head),
                          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          strlen(provider.jwks));
        /* a client that gave up is no failure of the provider's */
        if (send(c, head, (size_t)hl, MSG_NOSIGNAL) == hl)
            (void)send(c, provider.jwks, strlen(provider.jwks), MSG_NOSIGNAL);
        pthread_mutex_unlock(&provider.mu);
        atomic_store(&provider.holding, false);
        close(c);
    }
    return NULL;
}

static void provider_start(void)
{
    atomic_store(&provider.stop, false);
    atomic_store(&provider.holding, false);
    atomic_store(&provider.gets, 0);
    atomic_store(&provider.delay_ms, 0);
    provider.jwks = NULL;
    pthread_mutex_init(&provider.mu, NULL);
    provider.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    CU_ASSERT_EQUAL_FATAL(bind(provider.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(provider.fd, 16), 0);
    getsockname(provider.fd, (struct sockaddr *)&sa, &sl);
    provider.port = ntohs(sa.sin_port);
    pthread_create(&provider.thr, NULL, provider_main, NULL);
}

static void provider_stop(void)
{
    atomic_store(&provider.stop, true);
    pthread_join(provider.thr, NULL);
    close(provider.fd);
    free(provider.jwks);
    pthread_mutex_destroy(&provider.mu);
}

/* ---------------------------------------------------------- keys, tokens */

static const char *cli(void)
{
    return ESCQRS_CLI;
}

/* The first line `cmd` prints (static). */
static const char *run(const char *cmd)
{
    static char line[8192];
    FILE *p = popen(cmd, "r");
    line[0] = '\0';
    if (p) {
        if (!fgets(line, sizeof(line), p))
            line[0] = '\0';
        pclose(p);
    }
    line[strcspn(line, "\n")] = '\0';
    return line;
}

/* Key @p kid for algorithm @p alg, RS256 or ES256 (once: the tests share them). */
static void keygen_for(const char *kid, const char *alg)
{
    char cmd[1024];
    struct stat sb;
    snprintf(cmd, sizeof(cmd), "%s/%s", dir, kid);
    if (stat(cmd, &sb) == 0)
        return;
    snprintf(cmd, sizeof(cmd), "'%s' auth keygen --dir '%s/%s' --kid %s --alg %s >/dev/null", cli(),
             dir, kid, kid, alg);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
}

static void keygen(const char *kid)
{
    keygen_for(kid, "RS256");
}

/* "Authorization: Bearer" value of a token signed by @p alg with key @p key, naming key id
 * @p kid (caller frees). */
static char *bearer_as(const char *key, const char *kid, const char *alg)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "'%s' auth token --key '%s/%s/signing-key.pem' --kid %s --alg %s --issuer %s "
             "--audience %s --sub tester --scope views.read",
             cli(), dir, key, kid, alg, ISSUER, AUDIENCE);
    const char *t = run(cmd);
    CU_ASSERT_FATAL(strlen(t) > 100);
    size_t n = strlen(t) + 8;
    char *b = malloc(n);
    snprintf(b, n, "Bearer %s", t);
    return b;
}

static char *bearer(const char *kid)
{
    return bearer_as(kid, kid, "RS256");
}

/* The JWKS of the keys named (NULL-terminated), as text (caller frees). */
static char *jwks_of(const char *const *kids)
{
    json_t *all = json_array();
    for (; *kids; kids++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s/jwks.json", dir, *kids);
        json_t *doc = json_load_file(path, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
        json_array_extend(all, json_object_get(doc, "keys"));
        json_decref(doc);
    }
    json_t *doc = json_pack("{s:o}", "keys", all);
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    return text;
}

/*
 * A verifier for ISSUER and AUDIENCE with the policy "scope:views.read query:*" and the keys
 * of @p jwks_key (auth.jwks.url or auth.jwks.file) = @p jwks, plus @p nextra more settings.
 */
static es_auth_t *auth_from(const char *jwks_key, const char *jwks, const char *const extra[][2],
                            size_t nextra)
{
    static const es_conf_def_t *const tables[] = {es_auth_conf_defs, NULL};
    char policy[512];
    snprintf(policy, sizeof(policy), "%s/policy", dir);
    FILE *f = fopen(policy, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("scope:views.read query:*\n", f);
    fclose(f);
    es_conf_t *conf = es_conf_new("t", tables);
    const char *sets[][2] = {{"auth.mode", "jwt"},
                             {jwks_key, jwks},
                             {"auth.issuer", ISSUER},
                             {"auth.audience", AUDIENCE},
                             {"auth.policy.file", policy}};
    for (size_t i = 0; i < ES_ARRAY_SIZE(sets) + nextra; i++) {
        const char *const *kv = i < ES_ARRAY_SIZE(sets) ? sets[i] : extra[i - ES_ARRAY_SIZE(sets)];
        CU_ASSERT_EQUAL_FATAL(es_conf_set(conf, kv[0], kv[1], "test", errstr, sizeof(errstr)),
                              ES_ERR_OK);
    }
    es_auth_t *a = es_auth_new(conf, errstr, sizeof(errstr));
    es_conf_destroy(conf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    return a;
}

/* The verifier of the tests with the provider: keys by URL, refetched after REFETCH s. */
static es_auth_t *auth_new(void)
{
    static const char *const extra[][2] = {{"auth.jwks.refetch.min.s", REFETCH},
                                           {"auth.jwks.refresh.s", "3600"}};
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/jwks", provider.port);
    return auth_from("auth.jwks.url", url, extra, ES_ARRAY_SIZE(extra));
}

/* ---------------------------------------------------------------- tests */

static es_err_t verify(es_auth_t *a, const char *authorization, bool may_wait)
{
    es_principal_t p;
    char why[512];
    return es_auth_verify(a, authorization, may_wait, &p, why, sizeof(why));
}

typedef struct {
    es_auth_t *a;
    const char *authorization;
    es_err_t err;
} waiter_t;

static void *wait_verify(void *arg)
{
    waiter_t *w = arg;
    w->err = verify(w->a, w->authorization, true);
    return NULL;
}

static void test_rotation_one_fetch_no_stall(void)
{
    static const char *const first[] = {"a", NULL}, *const rotated[] = {"a", "b", NULL};
    provider_start();
    keygen("a");
    keygen("b");
    char *jwks = jwks_of(first), *tok_a = bearer("a"), *tok_b = bearer("b"),
         *tok_made_up = bearer("a");
    provider_serve(jwks);
    free(jwks);
    es_auth_t *a = auth_new();
    CU_ASSERT_EQUAL(atomic_load(&provider.gets), 1); /* the fetch at start */
    CU_ASSERT_EQUAL(verify(a, tok_a, false), ES_ERR_OK);

    /* the provider rotates, and is slow */
    jwks = jwks_of(rotated);
    provider_serve(jwks);
    free(jwks);
    atomic_store(&provider.delay_ms, 1500);
    usleep(3500 * 1000); /* a refetch is due: auth.jwks.refetch.min.s=3 */

    /* a thread that must not wait: told so, and nothing fetched */
    CU_ASSERT_EQUAL(verify(a, tok_b, false), ES_ERR_WOULD_BLOCK);
    CU_ASSERT_EQUAL(atomic_load(&provider.gets), 1);

    /* threads that may wait: one fetch for them all */
    pthread_t thr[NWAITERS];
    waiter_t w[NWAITERS];
    for (int i = 0; i < NWAITERS; i++) {
        w[i] = (waiter_t){.a = a, .authorization = tok_b, .err = ES_ERR_STATE};
        pthread_create(&thr[i], NULL, wait_verify, &w[i]);
    }
    for (int i = 0; i < 500 && !atomic_load(&provider.holding); i++)
        usleep(10 * 1000);
    CU_ASSERT_TRUE_FATAL(atomic_load(&provider.holding));
    /* while the provider holds the fetch, a non-waiting thread is answered */
    CU_ASSERT_EQUAL(verify(a, tok_a, false), ES_ERR_OK);
    CU_ASSERT_EQUAL(verify(a, tok_b, false), ES_ERR_WOULD_BLOCK);
    CU_ASSERT_TRUE(atomic_load(&provider.holding)); /* none of them waited for it */
    for (int i = 0; i < NWAITERS; i++) {
        pthread_join(thr[i], NULL);
        CU_ASSERT_EQUAL(w[i].err, ES_ERR_OK);
    }
    printf("\n    JWKS GETs: %d (1 at start, 1 for %d waiting tokens of the rotated key)\n",
           atomic_load(&provider.gets), NWAITERS);
    CU_ASSERT_EQUAL(atomic_load(&provider.gets), 2);
    CU_ASSERT_EQUAL(verify(a, tok_b, false), ES_ERR_OK); /* the new key is known now */

    /* a made-up key id right after a fetch: refused at once, nothing fetched */
    char *dot = strchr(tok_made_up, '.');
    static const char hdr[] = "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6Inp6eiJ9";
    size_t n = strlen(hdr) + strlen(dot) + 1;
    char *forged = malloc(n); /* {"alg":"RS256",..,"kid":"zzz"} */
    snprintf(forged, n, "%s%s", hdr, dot);
    CU_ASSERT_EQUAL(verify(a, forged, true), ES_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(verify(a, forged, false), ES_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(atomic_load(&provider.gets), 2);
    free(forged);
    es_auth_destroy(a);
    free(tok_a);
    free(tok_b);
    free(tok_made_up);
    provider_stop();
}

/* A provider that answers more than a JWKS could need: refused as it
 * arrives, the keys kept (it used to be read whole, however large). */
static void test_oversized_jwks_refused(void)
{
    static const char *const first[] = {"a", NULL}, *const rotated[] = {"a", "d", NULL};
    provider_start();
    keygen("a");
    keygen("d");
    char *jwks = jwks_of(first), *tok_a = bearer("a"), *tok_d = bearer("d");
    provider_serve(jwks);
    free(jwks);
    es_auth_t *a = auth_new();
    /* the rotated keys, padded to 2 MiB: valid JSON, a real new key */
    jwks = jwks_of(rotated);
    size_t pad = 2u << 20, n = strlen(jwks) + pad + 32;
    char *big = malloc(n);
    int head = snprintf(big, n, "{\"padding\":\"");
    memset(big + head, 'x', pad);
    snprintf(big + head + pad, n - (size_t)head - pad, "\",%s", jwks + 1); /* jwks without its { */
    provider_serve(big);
    free(big);
    free(jwks);
    usleep(3500 * 1000);                                         /* a refetch is due */
    CU_ASSERT_EQUAL(verify(a, tok_d, true), ES_ERR_INVALID_ARG); /* the fetch was refused */
    CU_ASSERT_EQUAL(atomic_load(&provider.gets), 2);
    CU_ASSERT_EQUAL(verify(a, tok_a, false), ES_ERR_OK); /* the old keys stay */
    es_auth_destroy(a);
    free(tok_a);
    free(tok_d);
    provider_stop();
}

/* ------------------------------------------------- through the server */

static void whoami(void *opaque, es_http_req_t *req, es_http_resp_t *resp)
{
    (void)opaque;
    es_http_resp_json(resp, 200, json_pack("{s:s}", "sub", es_http_req_principal(req)->subject));
}

typedef struct {
    int port;
    const char *authorization;
    int status;
} get_t;

/* GET /whoami with @p g->authorization: the status, or -1. */
static void *get_whoami(void *arg)
{
    get_t *g = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)g->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char req[8192], ans[4096];
    int n =
        snprintf(req, sizeof(req), "GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n",
                 g->authorization);
    g->status = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        ssize_t r = read(fd, ans, sizeof(ans) - 1);
        ans[r > 0 ? r : 0] = '\0';
        if (r > 12 && !strncmp(ans, "HTTP/1.1 ", 9))
            g->status = (int)strtol(ans + 9, NULL, 10);
    }
    close(fd);
    return NULL;
}

static void test_event_thread_never_fetches(void)
{
    static const char *const first[] = {"a", NULL}, *const rotated[] = {"a", "c", NULL};
    provider_start();
    keygen("a");
    keygen("c");
    char *jwks = jwks_of(first), *tok_a = bearer("a"), *tok_c = bearer("c");
    provider_serve(jwks);
    free(jwks);
    es_auth_t *a = auth_new();
    static const es_http_route_t routes[] = {
        {"GET", "/whoami", whoami, "query:whoami", .never_waits = true}};
    es_http_server_conf_t conf = {.listen = "127.0.0.1:0",
                                  .max_body = 1024,
                                  .routes = routes,
                                  .nroutes = 1,
                                  .auth = a,
                                  .limits = {.threads = 1, .workers = 2}};
    es_http_server_t *srv = es_http_server_start(&conf, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    int port = es_http_server_port(srv);
    jwks = jwks_of(rotated);
    provider_serve(jwks);
    free(jwks);
    atomic_store(&provider.delay_ms, 1500);
    usleep(3500 * 1000); /* a refetch is due */

    get_t new_key = {.port = port, .authorization = tok_c};
    pthread_t thr;
    pthread_create(&thr, NULL, get_whoami, &new_key);
    for (int i = 0; i < 500 && !atomic_load(&provider.holding); i++)
        usleep(10 * 1000);
    CU_ASSERT_TRUE_FATAL(atomic_load(&provider.holding));
    get_t known = {.port = port, .authorization = tok_a};
    get_whoami(&known);
    CU_ASSERT_EQUAL(known.status, 200);
    CU_ASSERT_TRUE(atomic_load(&provider.holding)); /* answered during the fetch */
    pthread_join(thr, NULL);
    CU_ASSERT_EQUAL(new_key.status, 200);
    CU_ASSERT_EQUAL(atomic_load(&provider.gets), 2);
    es_http_server_stop(srv);
    es_auth_destroy(a);
    free(tok_a);
    free(tok_c);
    provider_stop();
}

/*
 * What auth.mode=jwt refuses at start-up, each naming its key: a missing issuer, audience
 * or policy file; neither or both JWKS sources; an algorithm that is not RS* or ES* (none
 * and HMAC above all: an HMAC "key" would be the public key's text); no algorithm; a JWKS
 * with no usable key.  The same configuration with none of the faults starts.
 */
/*
 * ES256 end to end: keys from `escqrs auth keygen --alg ES256` in the JWKS file beside an
 * RSA key; a token one of them signs verifies, naming its subject.  Refused: the same
 * claims signed by another P-256 key that claims the key id (a forgery), an RS256 token
 * claiming the EC key's id, an ES256 token claiming the RSA key's id (keys of another
 * kind), and the good token with one character of its signature changed.
 */
static void test_es256_end_to_end(void)
{
    static const char *const in_jwks[] = {"e1", "r1", NULL};
    static const char *const extra[][2] = {{"auth.algorithms", "RS256,ES256"}};
    char jwks_path[512];
    keygen_for("e1", "ES256");
    keygen_for("e2", "ES256");
    keygen("r1");
    snprintf(jwks_path, sizeof(jwks_path), "%s/es-jwks.json", dir);
    char *jwks = jwks_of(in_jwks);
    FILE *f = fopen(jwks_path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(jwks, f);
    fclose(f);
    free(jwks);
    es_auth_t *a = auth_from("auth.jwks.file", jwks_path, extra, ES_ARRAY_SIZE(extra));

    es_principal_t p;
    char why[512];
    char *good = bearer_as("e1", "e1", "ES256");
    CU_ASSERT_EQUAL(es_auth_verify(a, good, false, &p, why, sizeof(why)), ES_ERR_OK);
    ES_ASSERT_STR_EQ(p.subject, "tester");
    CU_ASSERT_TRUE(es_auth_allows(a, &p, "query:cart_view"));
    char *hostile[] = {
        bearer_as("e2", "e1", "ES256"), /* another P-256 key claiming e1 */
        bearer_as("r1", "e1", "RS256"), /* an RSA signature for the EC key */
        bearer_as("e1", "r1", "ES256"), /* an EC signature for the RSA key */
        es_strdup(good),
    };
    char *sig = strrchr(hostile[3], '.') + 5; /* a character inside the signature */
    *sig = *sig == 'A' ? 'B' : 'A';
    for (size_t i = 0; i < ES_ARRAY_SIZE(hostile); i++) {
        why[0] = '\0';
        es_err_t err = es_auth_verify(a, hostile[i], false, &p, why, sizeof(why));
        if (err == ES_ERR_OK)
            printf("\n    hostile token %zu verified", i);
        CU_ASSERT_NOT_EQUAL(err, ES_ERR_OK);
        CU_ASSERT_TRUE(why[0] != '\0');
        free(hostile[i]);
    }
    free(good);
    es_auth_destroy(a);
}

static void test_startup_refusals(void)
{
    static const es_conf_def_t *const tables[] = {es_auth_conf_defs, NULL};
    char jwks[512], empty[512], policy[512];
    keygen("s");
    snprintf(jwks, sizeof(jwks), "%s/s/jwks.json", dir);
    snprintf(empty, sizeof(empty), "%s/empty-jwks.json", dir);
    snprintf(policy, sizeof(policy), "%s/policy-s", dir);
    FILE *f = fopen(empty, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("{\"keys\":[]}\n", f);
    fclose(f);
    f = fopen(policy, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("scope:views.read query:*\n", f);
    fclose(f);
    static const struct {
        const char *key, *value; /* the fault: this key set so (NULL: unset) */
        const char *named;       /* what the refusal names; NULL: it starts */
    } cases[] = {
        {NULL, NULL, NULL},
        {"auth.issuer", NULL, "auth.issuer: required with auth.mode=jwt"},
        {"auth.audience", NULL, "auth.audience: required with auth.mode=jwt"},
        {"auth.policy.file", NULL, "auth.policy.file: required with auth.mode=jwt"},
        {"auth.jwks.file", NULL, "auth.jwks.file or auth.jwks.url: exactly one"},
        {"auth.jwks.url", "http://127.0.0.1:1/jwks",
         "auth.jwks.file or auth.jwks.url: exactly one"},
        {"auth.algorithms", "HS256", "auth.algorithms: HS256 is not one of"},
        {"auth.algorithms", "none", "auth.algorithms: none is not one of"},
        {"auth.algorithms", "RS256,HS512", "auth.algorithms: HS512 is not one of"},
        {"auth.algorithms", ",", "auth.algorithms: none given"},
        {"auth.jwks.file", "EMPTY", "auth.jwks.file"},
    };
    for (size_t i = 0; i < ES_ARRAY_SIZE(cases); i++) {
        const char *sets[][2] = {{"auth.mode", "jwt"},         {"auth.jwks.file", jwks},
                                 {"auth.issuer", ISSUER},      {"auth.audience", AUDIENCE},
                                 {"auth.policy.file", policy}, {"auth.algorithms", "RS256,ES256"},
                                 {"auth.jwks.url", NULL}};
        es_conf_t *conf = es_conf_new("t", tables);
        for (size_t k = 0; k < ES_ARRAY_SIZE(sets); k++) {
            const char *v = sets[k][1];
            if (cases[i].key && !strcmp(cases[i].key, sets[k][0]))
                v = cases[i].value && !strcmp(cases[i].value, "EMPTY") ? empty : cases[i].value;
            if (v)
                CU_ASSERT_EQUAL_FATAL(
                    es_conf_set(conf, sets[k][0], v, "test", errstr, sizeof(errstr)), ES_ERR_OK);
        }
        errstr[0] = '\0';
        es_auth_t *a = es_auth_new(conf, errstr, sizeof(errstr));
        es_conf_destroy(conf);
        if (!cases[i].named) {
            CU_ASSERT_PTR_NOT_NULL(a);
        } else {
            CU_ASSERT_PTR_NULL(a);
            if (!strstr(errstr, cases[i].named))
                printf("\n    %s=%s: \"%s\"", cases[i].key, cases[i].value ? cases[i].value : "",
                       errstr);
            CU_ASSERT_PTR_NOT_NULL(strstr(errstr, cases[i].named));
        }
        es_auth_destroy(a);
    }
}

int main(void)
{
    es_test_unique("/tmp/escqrs-test-auth-jwks", dir, sizeof(dir));
    mkdir(dir, 0700);
    static const es_test_case_t cases[] = {
        {"a rotated key: one fetch for every waiting token, no wait where none is allowed",
         test_rotation_one_fetch_no_stall},
        {"the HTTP server takes a request that must wait for keys off the event thread",
         test_event_thread_never_fetches},
        {"a JWKS answer over 1 MiB is refused as it arrives, the keys kept",
         test_oversized_jwks_refused},
        {"start-up refuses what it must, naming the key", test_startup_refusals},
        {"ES256: a P-256 key's token verifies; forgeries and other kinds do not",
         test_es256_end_to_end},
        {NULL, NULL},
    };
    int rc = es_test_run("auth-jwks", cases);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) ? 1 : rc;
}
