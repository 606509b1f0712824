/*
 * 0204-auth-matrix.c — every HTTP route of the gateway and the projector,
 * against every kind of credential, with authentication on.
 *
 * Keys and tokens are made with `escqrs auth keygen|token` (RS256, as an OIDC
 * provider signs); hostile tokens are made here: signed by another key that
 * claims the same key id, expired, not yet valid, from another issuer, for
 * another audience, `alg: none`, and HS256 "signed" with the public key as
 * the HMAC secret (the key-confusion forgery).  For every route:
 *   - no token, and each hostile token → 401 `unauthorized` with a reason;
 *   - a valid token the policy does not permit → 403 `forbidden`;
 *   - a permitted token → the route's usual answer;
 *   - /healthz and /readyz answer without a token; the projector's query
 *     listener has no /admin at all (404), its admin listener has them all.
 * Then the log: the event and the outcome of the writer's deposit carry the
 * writer token's subject and client id, and an event written before (with
 * authentication off) decodes with a null principal.  Last, no token and no
 * private key appears in any daemon's log or in --list-config.
 */
#include "escqrs/record.h"
#include "readtest.h"
#include "testutil.h"
#include "writetest.h"

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ISSUER   "https://idp.test"
#define AUDIENCE "escqrs"

static char dir[600], cli[700];

/* Run @p cmd and return its first output line (a token), or "". */
static char *run(const char *cmd)
{
    static char out[16][8192];
    static int k;
    char *line = out[k++ % 16]; /* more tokens than this would overwrite */
    FILE *p = popen(cmd, "r");
    line[0] = '\0';
    if (p) {
        if (!fgets(line, 8192, p))
            line[0] = '\0';
        pclose(p);
    }
    line[strcspn(line, "\n")] = '\0';
    return line;
}

static char *token(const char *key_dir, const char *sub, const char *extra)
{
    char cmd[4000];
    snprintf(cmd, sizeof(cmd),
             "'%s' auth token --key '%s/signing-key.pem' --issuer %s --audience %s --sub %s %s",
             cli, key_dir, ISSUER, AUDIENCE, sub, extra);
    return run(cmd);
}

static size_t b64url(const char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = tab[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = tab[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* A token whose header says alg "none", with the claims of @p valid and no signature. */
static char *alg_none(const char *valid)
{
    static char t[8192];
    char hdr[256];
    const char *h = "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"escqrs-dev-1\"}";
    b64url(h, strlen(h), hdr);
    const char *dot1 = strchr(valid, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    snprintf(t, sizeof(t), "%s.%.*s.", hdr, dot2 ? (int)(dot2 - dot1 - 1) : 0,
             dot1 ? dot1 + 1 : "");
    return t;
}

/* HS256 with the public key's PEM as the HMAC secret: the key-confusion forgery. */
static char *hs256_with_public_key(void)
{
    static char t[8192];
    char cmd[1400], path[700];
    snprintf(path, sizeof(path), "%s/public.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl rsa -in '%s/keys/signing-key.pem' -pubout -out '%s' 2>/dev/null", dir, path);
    CU_ASSERT_EQUAL(system(cmd), 0);
    FILE *f = fopen(path, "r");
    char pem[4096] = "";
    size_t n = f ? fread(pem, 1, sizeof(pem) - 1, f) : 0;
    if (f)
        fclose(f);
    pem[n] = '\0';
    jwt_t *jwt = NULL;
    jwt_new(&jwt);
    jwt_add_grant(jwt, "iss", ISSUER);
    jwt_add_grant(jwt, "aud", AUDIENCE);
    jwt_add_grant(jwt, "sub", "mallory");
    jwt_add_grant(jwt, "scope", "commands.write views.read");
    jwt_add_grant_int(jwt, "exp", (long)time(NULL) + 600);
    jwt_add_header(jwt, "kid", "escqrs-dev-1");
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)pem, (int)strlen(pem));
    char *s = jwt_encode_str(jwt);
    snprintf(t, sizeof(t), "%s", s ? s : "");
    free(s);
    jwt_free(jwt);
    return t;
}

/* One credential tried on a route, and what it must get. */
typedef struct {
    const char *what, *tok;
    int want;
    const char *error;
} try_t;

typedef struct {
    const char *name;
    const char *method;
    int port_kind; /* 0 gateway, 1 projector queries, 2 projector admin */
    const char *path;
    const char *body;
    const char *who; /* the permitted role: "writer", "reader", "admin" */
    int ok;          /* the status a permitted caller gets */
} route_t;

static void test_auth_matrix(void)
{
    char cmd[4000], store[700], pfx[200];
    wt_stack_t st;
    rt_proc_t proj = {0};
    const char *bd = getenv("ESCQRS_BUILD_DIR");
    snprintf(cli, sizeof(cli), "%s/cli/escqrs", bd ? bd : "build");

    wt_stack_init(&st, "account");
    snprintf(dir, sizeof(dir), "%s/auth", st.dir);
    mkdir(dir, 0700);
    snprintf(cmd, sizeof(cmd),
             "'%s' auth keygen --dir '%s/keys' >/dev/null && '%s' auth keygen "
             "--dir '%s/other' >/dev/null",
             cli, dir, cli, dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/policy", dir);
    FILE *f = fopen(cmd, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("scope:commands.write command:accounts.* command:carts.*\n"
          "scope:views.read     query:*\n"
          "role:escqrs-admin    admin:* metrics\n",
          f);
    fclose(f);
    char keys[700], other[700];
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    snprintf(other, sizeof(other), "%s/other", dir);
    char *writer = token(keys, "writer-1", "--scope commands.write --client web-app");
    char *reader = token(keys, "reader-1", "--scope views.read");
    char *admin = token(keys, "admin-1", "--role escqrs-admin");
    char *nobody = token(keys, "nobody-1", "--scope something.else");
    struct {
        const char *what;
        const char *tok;
    } bad[] = {
        {"another key, same kid", token(other, "writer-1", "--scope commands.write")},
        {"expired", token(keys, "writer-1", "--scope commands.write --ttl -300")},
        {"not yet valid", token(keys, "writer-1", "--scope commands.write --not-before 900")},
        {"another issuer", ""}, /* both set below */
        {"another audience", ""},
        {"alg none", alg_none(writer)},
        {"HS256 with the public key", hs256_with_public_key()},
        {"garbage", "not.a.jwt"},
    };
    snprintf(cmd, sizeof(cmd),
             "'%s' auth token --key '%s/signing-key.pem' --issuer https://evil --audience %s "
             "--sub writer-1 --scope commands.write",
             cli, keys, AUDIENCE);
    bad[3].tok = run(cmd);
    snprintf(cmd, sizeof(cmd),
             "'%s' auth token --key '%s/signing-key.pem' --issuer %s --audience other "
             "--sub writer-1 --scope commands.write",
             cli, keys, ISSUER);
    bad[4].tok = run(cmd);
    CU_ASSERT_FATAL(strlen(writer) > 100 && strlen(bad[0].tok) > 100);
    for (size_t i = 0; i < 5; i++) /* minted tokens: a CLI that refused one would test nothing */
        CU_ASSERT_TRUE(strlen(bad[i].tok) > 100);

    char sets[6][800];
    snprintf(sets[0], sizeof(sets[0]), "auth.mode=jwt");
    snprintf(sets[1], sizeof(sets[1]), "auth.jwks.file=%s/keys/jwks.json", dir);
    snprintf(sets[2], sizeof(sets[2]), "auth.issuer=%s", ISSUER);
    snprintf(sets[3], sizeof(sets[3]), "auth.audience=%s", AUDIENCE);
    snprintf(sets[4], sizeof(sets[4]), "auth.policy.file=%s/policy", dir);
    snprintf(sets[5], sizeof(sets[5]), "projections=account_balance,cart_view,item_stats");
    const char *auth_sets[] = {sets[0], sets[1], sets[2], sets[3], sets[4], sets[5]};

    /* an event from before authentication: its principal is null */
    wt_start_service(&st, NULL, 0);
    wt_start_gateway(&st, NULL, 0);
    wt_wait_ready(&st.cs, 60);
    wt_wait_ready(&st.gw, 60);
    CU_ASSERT_EQUAL(
        wt_post(&st.gw, "/v1/accounts/acct-old/open", "{\"owner\":\"o\"}", 13, NULL, NULL, NULL),
        200);
    CU_ASSERT_EQUAL(wt_stop(&st.gw), 0);
    wt_start_gateway(&st, auth_sets, 5);
    wt_wait_ready(&st.gw, 60);
    snprintf(store, sizeof(store), "%s/projector", st.dir);
    snprintf(pfx, sizeof(pfx), "%s", st.prefix);
    /* the cart topics too: cart_view and item_stats read them */
    snprintf(cmd, sizeof(cmd),
             "'%s' --set kafka.bootstrap.servers=%s --set aggregate.prefix=%s --set log.level=warn "
             "topics create cart >/dev/null",
             cli, es_test_bootstrap(), st.prefix);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    rt_proc_start(&proj, store, pfx, auth_sets, 6);
    proj.token = admin; /* rt_wait_up reads /admin/projections */
    CU_ASSERT_TRUE_FATAL(rt_wait_up(&proj, 60000));

    /* the writer's deposit first, so the queries have something to answer */
    st.gw.token = writer;
    json_t *ans = NULL;
    CU_ASSERT_EQUAL_FATAL(
        wt_post(&st.gw, "/v1/accounts/acct-1/open", "{\"owner\":\"o\"}", 13, NULL, NULL, NULL),
        200);
    CU_ASSERT_EQUAL_FATAL(wt_post(&st.gw, "/v1/accounts/acct-1/deposit", "{\"amount_cents\":5}", 18,
                                  "dep-1", NULL, &ans),
                          200);
    json_decref(ans);
    st.gw.token = NULL;
    CU_ASSERT_TRUE_FATAL(rt_wait_caught_up(&proj, "account_balance", 60000));

    static const route_t routes[] = {
        {"open", "POST", 0, "/v1/accounts/acct-2/open", "{\"owner\":\"o\"}", "writer", 200},
        {"deposit", "POST", 0, "/v1/accounts/acct-1/deposit", "{\"amount_cents\":1}", "writer",
         200},
        {"add-item (not served by this gateway)", "POST", 0, "/v1/carts/c-1/add-item",
         "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":5}", "writer", 404},
        {"gateway metrics", "GET", 0, "/metrics", NULL, "admin", 200},
        {"account", "GET", 1, "/v1/accounts/acct-1", NULL, "reader", 200},
        {"cart", "GET", 1, "/v1/carts/c-unknown", NULL, "reader", 404},
        {"stats", "GET", 1, "/v1/stats/items?top=3", NULL, "reader", 200},
        {"projector metrics", "GET", 1, "/metrics", NULL, "admin", 200},
        {"admin list", "GET", 2, "/admin/projections", NULL, "admin", 200},
        {"admin digest", "GET", 2, "/admin/projections/account_balance/digest", NULL, "admin", 200},
        {"admin checkpoint", "GET", 2, "/admin/projections/account_balance/checkpoint", NULL,
         "admin", 200},
        {"admin rebuild", "POST", 2, "/admin/projections/item_stats/rebuild", NULL, "admin", 202},
        {"admin freeze", "POST", 2, "/admin/projections/cart_view/freeze?until=1&label=audit", NULL,
         "admin", 202},
        {"admin frozen delete", "DELETE", 2, "/admin/projections/cart_view/frozen/audit", NULL,
         "admin", 200},
    };
    size_t checks = 0, wrong = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const route_t *r = &routes[i];
        wt_proc_t p = {.port = r->port_kind == 0   ? st.gw.port
                               : r->port_kind == 1 ? proj.port
                                                   : proj.admin_port};
        const char *permitted = !strcmp(r->who, "writer")   ? writer
                                : !strcmp(r->who, "reader") ? reader
                                                            : admin;
        const char *others[] = {writer, reader, admin, nobody};
        try_t tries[32];
        size_t nt = 0;
        tries[nt++] = (try_t){"anonymous", NULL, 401, "unauthorized"};
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
            tries[nt++] = (try_t){bad[b].what, bad[b].tok, 401, "unauthorized"};
        for (size_t o = 0; o < 4; o++)
            if (others[o] != permitted)
                tries[nt++] = (try_t){"valid, not permitted", others[o], 403, "forbidden"};
        tries[nt++] = (try_t){"permitted", permitted, r->ok, NULL};
        for (size_t k = 0; k < nt; k++) {
            json_t *b = NULL;
            int st_code = wt_call(&p, r->method, r->path, r->body, tries[k].tok, &b);
            const char *err = json_string_value(json_object_get(b, "error"));
            bool ok = st_code == tries[k].want &&
                      (!tries[k].error || (err && !strcmp(err, tries[k].error)));
            if (!ok) {
                fprintf(stderr, "\n  %s %s with %s: %d %s, want %d %s", r->method, r->path,
                        tries[k].what, st_code, err ? err : "", tries[k].want,
                        tries[k].error ? tries[k].error : "");
                wrong++;
            }
            checks++;
            json_decref(b);
        }
    }
    /* open to all, and /admin absent from the query listener */
    wt_proc_t gw = {.port = st.gw.port}, q = {.port = proj.port}, ad = {.port = proj.admin_port};
    CU_ASSERT_EQUAL(wt_call(&gw, "GET", "/healthz", NULL, NULL, NULL), 200);
    CU_ASSERT_EQUAL(wt_call(&q, "GET", "/healthz", NULL, NULL, NULL), 200);
    CU_ASSERT_TRUE(wt_call(&q, "GET", "/readyz", NULL, NULL, NULL) != 401);
    CU_ASSERT_EQUAL(wt_call(&ad, "GET", "/metrics", NULL, NULL, NULL), 200); /* network-protected */
    CU_ASSERT_EQUAL(wt_call(&q, "GET", "/admin/projections", NULL, admin, NULL), 404);
    CU_ASSERT_EQUAL(wt_call(&q, "POST", "/admin/projections/item_stats/rebuild", NULL, admin, NULL),
                    404);
    printf("\n  %zu route x credential checks, %zu wrong\n", checks, wrong);
    CU_ASSERT_EQUAL(wrong, 0);

    /* who did it, in the log */
    size_t n = 0, no = 0;
    wt_event_t *evs = wt_read_events(&st, &n);
    wt_outcome_t *os = wt_read_outcomes(&st, &no);
    size_t signed_events = 0, old_null = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(evs[i].command_id, "dep-1")) {
            ES_ASSERT_STR_EQ(evs[i].principal, "writer-1");
            ES_ASSERT_STR_EQ(evs[i].principal_client, "web-app");
            signed_events++;
        }
        if (!strcmp(evs[i].agg_id, "acct-old"))
            old_null += evs[i].principal[0] == '\0';
    }
    for (size_t i = 0; i < no; i++)
        if (!strcmp(os[i].command_id, "dep-1"))
            ES_ASSERT_STR_EQ(os[i].principal, "writer-1");
    CU_ASSERT_EQUAL(signed_events, 1);
    CU_ASSERT_EQUAL(old_null, 1);
    free(evs);
    free(os);

    proj.token = NULL;
    CU_ASSERT_EQUAL(rt_proc_stop(&proj), 0);
    wt_stack_stop(&st);

    /* no secret in any log, nor in --list-config */
    snprintf(cmd, sizeof(cmd),
             "cat '%s'/*.log '%s' > '%s/all.log' 2>/dev/null; '%s' --set "
             "token=%s --list-config >> '%s/all.log'",
             st.dir, proj.log, dir, cli, writer, dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/all.log", dir);
    f = fopen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static char all[8 << 20];
    size_t len = fread(all, 1, sizeof(all) - 1, f);
    fclose(f);
    all[len] = '\0';
    const char *secrets[] = {writer, reader, admin, nobody, "PRIVATE KEY"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        const char *sig = strrchr(secrets[i], '.'); /* a token's signature part */
        CU_ASSERT_PTR_NULL(strstr(all, sig && strlen(sig) > 20 ? sig + 1 : secrets[i]));
    }
    printf("  %zu bytes of logs and --list-config searched: no token, no private key\n", len);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"every route x every credential: 401, 403 or the usual answer", test_auth_matrix},
        {NULL, NULL},
    };
    return es_test_run("auth-matrix", cases);
}
