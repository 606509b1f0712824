/*
 * auth.c — the authenticator behind auth.h: its configuration, the JWKS it
 * verifies with (a file, or a URL fetched and refreshed), and the check of
 * a bearer token.  The pure parts are apart: the policy (auth_policy.c), the
 * claims (auth_claims.c), and a JWKS document to PEM keys (auth_jwks.c).
 *
 * Order of a verification, each step refusing with a reason for the 401:
 * the header's `alg` must be on the allowlist (RS256/384/512, ES256/384/512:
 * no `none`, no HMAC), the key is chosen by `kid` (or the only key), its
 * type must fit the algorithm, libjwt checks the signature with that key's
 * PEM and must report the same algorithm, then the claims are checked
 * (es_claims_check: issuer, audience, exp, nbf, sub).  The algorithm and the
 * key are chosen here, before libjwt sees the token, because libjwt 1.10
 * accepts `alg: none` and HMAC with any key it is given.
 *
 * A JWKS given by URL is fetched at start, every `auth.jwks.refresh.s`, and
 * at once (at most every `auth.jwks.refetch.min.s`) when a token names a key
 * id it does not know — how an OIDC provider's key rotation reaches us.  One
 * fetch runs at a time: whoever needs keys while one is under way waits for
 * it instead of starting another.  A caller that must not wait (the HTTP
 * event thread) is told ES_ERR_WOULD_BLOCK and hands the request to a
 * worker, so a slow or hostile provider, or tokens with made-up key ids,
 * never stall the event threads (they used to: each such token fetched the
 * JWKS on the event thread, for up to JWKS_FETCH_TIMEOUT_MS, and tokens
 * that came during a slow fetch started fetches of their own).  Keys are
 * swapped under a read-write lock; a failed refresh keeps the old keys, and
 * so does an answer over JWKS_MAX_BYTES (refused as it arrives).  A
 * URL that does not answer at start is not fatal: every token is refused
 * until the refresher loads the keys.
 */
#include "auth_internal.h"
#include "escqrs/http_client.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <jwt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JWKS_FETCH_TIMEOUT_MS 10000   /* one GET of the JWKS URL */
#define JWKS_MAX_BYTES        1048576 /* a JWKS document (providers' are a few KiB) */
#define TOKEN_MAX             16384   /* bytes of a bearer token; longer is not a JWT we issue */
#define BEARER                "Bearer "
#define WHY_MAX               512  /* a reason for a refusal or a start-up error */
#define CONF_STR_MAX          512  /* auth.issuer, auth.audience, a file name */
#define URL_MAX               1024 /* auth.jwks.url */

const es_conf_def_t es_auth_conf_defs[] = {
    {.name = "auth.mode",
     .type = ES_CONF_ENUM,
     .defval = "none",
     .choices = "none|jwt",
     .desc = "none: every request is let in (a trusted network only); jwt: every route but "
             "/healthz and /readyz needs a bearer JWT and a policy rule (docs/security.md)"},
    {.name = "auth.jwks.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "JWKS file with the keys tokens are signed with (or auth.jwks.url)"},
    {.name = "auth.jwks.url",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "JWKS URL of an OIDC provider (its jwks_uri); fetched at start and refreshed"},
    {.name = "auth.jwks.refresh.s",
     .type = ES_CONF_INT,
     .defval = "300",
     .min = 10,
     .max = 86400,
     .desc = "How often the JWKS URL is fetched again (also at once for an unknown key id)"},
    {.name = "auth.jwks.refetch.min.s",
     .type = ES_CONF_INT,
     .defval = "30",
     .min = 1,
     .max = 86400,
     .desc = "A token with an unknown key id fetches the JWKS URL again at most this often"},
    {.name = "auth.jwks.ca.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "CA bundle to check the JWKS URL's TLS certificate with (empty: the system's)"},
    {.name = "auth.issuer",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Required `iss` of every token (auth.mode=jwt)"},
    {.name = "auth.audience",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Required `aud` (one of them) of every token (auth.mode=jwt)"},
    {.name = "auth.clock.skew.s",
     .type = ES_CONF_INT,
     .defval = "60",
     .min = 0,
     .max = 3600,
     .desc = "Leeway for `exp` and `nbf` between our clock and the issuer's"},
    {.name = "auth.algorithms",
     .type = ES_CONF_STRING,
     .defval = "RS256,ES256",
     .desc = "Signature algorithms accepted (RS256, RS384, RS512, ES256, ES384, ES512)"},
    {.name = "auth.roles.claim",
     .type = ES_CONF_STRING,
     .defval = "roles",
     .desc = "Claim with the caller's roles, a dotted path (Keycloak: realm_access.roles)"},
    {.name = "auth.policy.file",
     .type = ES_CONF_STRING,
     .defval = "",
     .desc = "Who may do what: `<scope:|role:|sub:>name action...` or `any action...` per "
             "line (auth.mode=jwt; docs/security.md)"},
    {.name = NULL},
};

struct es_auth_s {
    bool enabled;
    char issuer[CONF_STR_MAX], audience[CONF_STR_MAX], ca_file[CONF_STR_MAX];
    char roles_claim[ES_AUTH_NAME_MAX], jwks_url[URL_MAX];
    int skew_s, refresh_s;
    bool alg_ok[JWT_ALG_TERM];
    es_policy_t *policy;
    pthread_rwlock_t lock; /* keys */
    auth_keyset_t *keys;
    int refetch_min_s;
    pthread_mutex_t fetch_mu; /* the fields below */
    pthread_cond_t fetch_cv;  /* a fetch ended */
    bool fetching;            /* one fetch at a time */
    uint64_t fetches;         /* fetches ended */
    es_err_t fetch_err;       /* how the last one ended */
    int64_t last_fetch_s;     /* when the last one began */
    pthread_t refresher;
    bool refresher_started;
    atomic_bool stop;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* The content of @p path (caller frees), or NULL with why. */
static char *read_file(const char *path, size_t *len, char *errstr, size_t errstr_size)
{
    char *text = es_read_file(path);
    if (!text)
        snprintf(errstr, errstr_size, "cannot read %s", path);
    *len = text ? strlen(text) : 0;
    return text;
}

/* GET the JWKS URL and swap the keys in; keeps the old keys on failure. */
static es_err_t fetch_and_swap(es_auth_t *a, char *errstr, size_t errstr_size)
{
    es_buf_t body = {0};
    long status = 0;
    es_http_client_opts_t o = {.ca_file = a->ca_file[0] ? a->ca_file : NULL,
                               .max_body = JWKS_MAX_BYTES};
    es_err_t err = es_http_fetch_opts("GET", a->jwks_url, NULL, NULL, NULL, JWKS_FETCH_TIMEOUT_MS,
                                      &o, &status, &body, errstr, errstr_size);
    auth_keyset_t *ks = NULL;
    if (!err && status != 200) {
        snprintf(errstr, errstr_size, "GET %.400s: HTTP %ld", a->jwks_url, status);
        err = ES_ERR_HTTP;
    }
    if (!err && !(ks = auth_jwks_parse(body.data, body.len, errstr, errstr_size)))
        err = ES_ERR_INVALID_ARG;
    es_buf_free(&body);
    if (err)
        return err;
    pthread_rwlock_wrlock(&a->lock);
    auth_keyset_t *old = a->keys;
    a->keys = ks;
    pthread_rwlock_unlock(&a->lock);
    auth_keyset_free(old);
    return ES_ERR_OK;
}

/* fetch_and_swap(), one at a time: a fetch under way is waited for, not repeated. */
static es_err_t fetch_jwks(es_auth_t *a, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&a->fetch_mu);
    if (a->fetching) {
        for (uint64_t n = a->fetches; a->fetches == n;)
            pthread_cond_wait(&a->fetch_cv, &a->fetch_mu);
        es_err_t err = a->fetch_err;
        pthread_mutex_unlock(&a->fetch_mu);
        if (err)
            snprintf(errstr, errstr_size, "the JWKS fetch under way failed");
        return err;
    }
    a->fetching = true;
    a->last_fetch_s = now_s();
    pthread_mutex_unlock(&a->fetch_mu);
    es_err_t err = fetch_and_swap(a, errstr, errstr_size);
    pthread_mutex_lock(&a->fetch_mu);
    a->fetching = false;
    a->fetches++;
    a->fetch_err = err;
    pthread_cond_broadcast(&a->fetch_cv);
    pthread_mutex_unlock(&a->fetch_mu);
    return err;
}

static void *refresher_main(void *arg)
{
    es_auth_t *a = arg;
    pthread_mutex_lock(&a->stop_mu);
    while (!atomic_load(&a->stop)) {
        struct timespec dl = es_deadline_in_ms((int64_t)a->refresh_s * 1000);
        pthread_cond_timedwait(&a->stop_cv, &a->stop_mu, &dl);
        if (atomic_load(&a->stop))
            break;
        pthread_mutex_unlock(&a->stop_mu);
        char errstr[WHY_MAX];
        if (fetch_jwks(a, errstr, sizeof(errstr)))
            es_log_warn("auth", "JWKS refresh failed, keeping the keys: %s", errstr);
        pthread_mutex_lock(&a->stop_mu);
    }
    pthread_mutex_unlock(&a->stop_mu);
    return NULL;
}

static bool parse_algorithms(es_auth_t *a, const char *list, char *errstr, size_t errstr_size)
{
    char *copy = es_strdup(list), *save = NULL;
    bool ok = true, any = false;
    for (char *w = strtok_r(copy, ", ", &save); w && ok; w = strtok_r(NULL, ", ", &save)) {
        jwt_alg_t alg = jwt_str_alg(w);
        ok = alg >= JWT_ALG_RS256 && alg <= JWT_ALG_ES512;
        if (ok)
            a->alg_ok[alg] = any = true;
        else
            snprintf(errstr, errstr_size,
                     "auth.algorithms: %s is not one of RS256, RS384, RS512, ES256, ES384, "
                     "ES512",
                     w);
    }
    free(copy);
    if (ok && !any)
        snprintf(errstr, errstr_size, "auth.algorithms: none given");
    return ok && any;
}

/* auth.policy.file into a->policy; false with why. */
static bool load_policy(es_auth_t *a, const char *path, char *errstr, size_t errstr_size)
{
    size_t len;
    char why[WHY_MAX];
    char *text = read_file(path, &len, why, sizeof(why));
    if (!text) {
        snprintf(errstr, errstr_size, "auth.policy.file: %s", why);
        return false;
    }
    a->policy = es_policy_parse(text, why, sizeof(why));
    free(text);
    if (!a->policy) {
        snprintf(errstr, errstr_size, "auth.policy.file: %s", why);
        return false;
    }
    return true;
}

/* The keys from auth.jwks.file, or from auth.jwks.url with its refresher; false with why. */
static bool load_keys(es_auth_t *a, const char *file, const char *url, char *errstr,
                      size_t errstr_size)
{
    size_t len;
    char why[WHY_MAX];
    if (file && *file) {
        char *text = read_file(file, &len, why, sizeof(why));
        a->keys = text ? auth_jwks_parse(text, len, why, sizeof(why)) : NULL;
        free(text);
        if (!a->keys) {
            snprintf(errstr, errstr_size, "auth.jwks.file: %s", why);
            return false;
        }
        return true;
    }
    snprintf(a->jwks_url, sizeof(a->jwks_url), "%s", url);
    if (fetch_jwks(a, why, sizeof(why))) /* retried by the refresher; denied meanwhile */
        es_log_warn("auth", "auth.jwks.url: %s (every token is refused until it loads)", why);
    if (pthread_create(&a->refresher, NULL, refresher_main, a)) {
        snprintf(errstr, errstr_size, "cannot start the JWKS refresher");
        return false;
    }
    a->refresher_started = true;
    return true;
}

es_auth_t *es_auth_new(const es_conf_t *conf, char *errstr, size_t errstr_size)
{
    es_auth_t *a = es_calloc(1, sizeof(*a));
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->fetch_mu, NULL);
    pthread_cond_init(&a->fetch_cv, NULL);
    pthread_mutex_init(&a->stop_mu, NULL);
    pthread_cond_init(&a->stop_cv, NULL);
    const char *mode = es_conf_get(conf, "auth.mode");
    a->enabled = mode && !strcmp(mode, "jwt");
    if (!a->enabled)
        return a;
    static const char *const required[] = {"auth.issuer", "auth.audience", "auth.policy.file"};
    for (size_t i = 0; i < ES_ARRAY_SIZE(required); i++) {
        const char *v = es_conf_get(conf, required[i]);
        if (!v || !*v) {
            snprintf(errstr, errstr_size, "%s: required with auth.mode=jwt", required[i]);
            goto fail;
        }
    }
    const char *file = es_conf_get(conf, "auth.jwks.file"),
               *url = es_conf_get(conf, "auth.jwks.url");
    if ((!file || !*file) == (!url || !*url)) {
        snprintf(errstr, errstr_size,
                 "auth.jwks.file or auth.jwks.url: exactly one is required with auth.mode=jwt");
        goto fail;
    }
    snprintf(a->issuer, sizeof(a->issuer), "%s", es_conf_get(conf, "auth.issuer"));
    snprintf(a->audience, sizeof(a->audience), "%s", es_conf_get(conf, "auth.audience"));
    snprintf(a->roles_claim, sizeof(a->roles_claim), "%s", es_conf_get(conf, "auth.roles.claim"));
    const char *ca = es_conf_get(conf, "auth.jwks.ca.file");
    snprintf(a->ca_file, sizeof(a->ca_file), "%s", ca ? ca : "");
    a->skew_s = (int)es_conf_get_int(conf, "auth.clock.skew.s");
    a->refresh_s = (int)es_conf_get_int(conf, "auth.jwks.refresh.s");
    a->refetch_min_s = (int)es_conf_get_int(conf, "auth.jwks.refetch.min.s");
    if (!parse_algorithms(a, es_conf_get(conf, "auth.algorithms"), errstr, errstr_size))
        goto fail;
    if (!load_policy(a, es_conf_get(conf, "auth.policy.file"), errstr, errstr_size) ||
        !load_keys(a, file, url, errstr, errstr_size))
        goto fail;
    es_log_info("auth", "bearer JWTs of %s for %s; %s", a->issuer, a->audience,
                a->jwks_url[0] ? a->jwks_url : file);
    return a;
fail:
    es_auth_destroy(a);
    return NULL;
}

void es_auth_destroy(es_auth_t *a)
{
    if (!a)
        return;
    if (a->refresher_started) {
        pthread_mutex_lock(&a->stop_mu);
        atomic_store(&a->stop, true);
        pthread_cond_signal(&a->stop_cv);
        pthread_mutex_unlock(&a->stop_mu);
        pthread_join(a->refresher, NULL);
    }
    es_policy_destroy(a->policy);
    auth_keyset_free(a->keys);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->fetch_mu);
    pthread_cond_destroy(&a->fetch_cv);
    pthread_mutex_destroy(&a->stop_mu);
    pthread_cond_destroy(&a->stop_cv);
    free(a);
}

bool es_auth_enabled(const es_auth_t *a)
{
    return a && a->enabled;
}

/* The PEM of the key @p kid names (a copy), fetching the JWKS again once if
 * unknown; NULL with why, *@p would_block set when that fetch needs a wait
 * and @p may_wait is false. */
static char *key_for(es_auth_t *a, const char *kid, jwt_alg_t alg, bool may_wait, bool *would_block,
                     char *why, size_t whysz)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        char *pem = NULL;
        bool found = false;
        pthread_rwlock_rdlock(&a->lock);
        for (size_t i = 0; a->keys && i < a->keys->n && !found; i++) {
            const auth_key_t *k = &a->keys->keys[i];
            if (kid ? strcmp(k->kid, kid) != 0 : a->keys->n != 1)
                continue;
            found = true;
            if (auth_key_fits(k, alg))
                pem = es_strdup(k->pem);
            else
                snprintf(why, whysz, "the token's algorithm does not fit its key");
        }
        pthread_rwlock_unlock(&a->lock);
        if (found)
            return pem;
        if (attempt || !a->jwks_url[0])
            break;
        /* an unknown key id: the provider may have rotated its keys */
        pthread_mutex_lock(&a->fetch_mu);
        bool fetch = a->fetching || now_s() - a->last_fetch_s >= a->refetch_min_s;
        pthread_mutex_unlock(&a->fetch_mu);
        if (fetch && !may_wait) {
            *would_block = true;
            snprintf(why, whysz, "the token's key %s is not in the JWKS yet: it is read again",
                     kid ? kid : "(no kid)");
            return NULL;
        }
        char err[WHY_MAX];
        if (!fetch)
            break;
        if (fetch_jwks(a, err, sizeof(err))) {
            es_log_warn("auth", "JWKS fetch for key id %.64s failed, keeping the keys: %s",
                        kid ? kid : "(none)", err);
            break;
        }
    }
    snprintf(why, whysz, "the token's key %s is not in the JWKS", kid ? kid : "(no kid)");
    return NULL;
}

es_err_t es_auth_verify(es_auth_t *a, const char *authorization, bool may_wait, es_principal_t *p,
                        char *why, size_t whysz)
{
    memset(p, 0, sizeof(*p));
    if (!a || !a->enabled) {
        p->authenticated = true; /* nobody is checked: everyone is let in */
        return ES_ERR_OK;
    }
    if (!authorization || strncasecmp(authorization, BEARER, strlen(BEARER))) {
        snprintf(why, whysz, "a bearer token is required (Authorization: Bearer <JWT>)");
        return ES_ERR_INVALID_ARG;
    }
    const char *token = authorization + strlen(BEARER);
    while (*token == ' ')
        token++;
    const char *dot = strchr(token, '.');
    if (!dot || strlen(token) > TOKEN_MAX) {
        snprintf(why, whysz, "the bearer token is not a JWT");
        return ES_ERR_INVALID_ARG;
    }
    es_buf_t hdr = {0};
    json_t *h = NULL;
    char *pem = NULL, *claims = NULL;
    jwt_t *jwt = NULL;
    es_err_t err = ES_ERR_INVALID_ARG;
    if (!auth_b64url_decode(token, (size_t)(dot - token), &hdr) ||
        !(h = json_loadb(hdr.data ? hdr.data : "", hdr.len, 0, NULL))) {
        snprintf(why, whysz, "the token's header is not base64url JSON");
        goto out;
    }
    const char *algname = json_string_value(json_object_get(h, "alg"));
    jwt_alg_t alg = algname ? jwt_str_alg(algname) : JWT_ALG_INVAL;
    if (alg <= JWT_ALG_NONE || alg >= JWT_ALG_TERM || !a->alg_ok[alg]) {
        snprintf(why, whysz, "the token's algorithm %s is not accepted",
                 algname ? algname : "(none)");
        goto out;
    }
    bool would_block = false;
    if (!(pem = key_for(a, json_string_value(json_object_get(h, "kid")), alg, may_wait,
                        &would_block, why, whysz))) {
        if (would_block)
            err = ES_ERR_WOULD_BLOCK;
        goto out;
    }
    if (jwt_decode(&jwt, token, (const unsigned char *)pem, (int)strlen(pem)) || !jwt ||
        jwt_get_alg(jwt) != alg) {
        snprintf(why, whysz, "the token's signature does not verify");
        goto out;
    }
    claims = jwt_get_grants_json(jwt, NULL);
    es_claims_rules_t rules = {.issuer = a->issuer,
                               .audience = a->audience,
                               .now_s = now_s(),
                               .skew_s = a->skew_s,
                               .roles_claim = a->roles_claim};
    err = claims ? es_claims_check(claims, &rules, p, why, whysz) : ES_ERR_INVALID_ARG;
    if (!claims)
        snprintf(why, whysz, "the token has no claims");
out:
    free(claims);
    if (jwt)
        jwt_free(jwt);
    free(pem);
    json_decref(h);
    es_buf_free(&hdr);
    return err;
}

bool es_auth_allows(const es_auth_t *a, const es_principal_t *p, const char *action)
{
    if (!a || !a->enabled)
        return true;
    return es_policy_allows(a->policy, p, action);
}