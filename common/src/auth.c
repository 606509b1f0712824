/*
 * auth.c — bearer JWTs against a JWKS, and the policy (see auth.h).
 *
 * Order of a verification, each step refusing with a reason for the 401:
 * the header's `alg` must be on the allowlist (RS256/384/512, ES256/384/512:
 * no `none`, no HMAC), the key is chosen by `kid` (or the only key), its
 * type must fit the algorithm, libjwt checks the signature with that key's
 * PEM and must report the same algorithm, then the claims are checked here
 * (es_claims_check: issuer, audience, exp, nbf, sub).  Keys: a JWK is turned
 * into a PEM public key with OpenSSL once, when the JWKS is loaded.  A JWKS
 * given by URL is fetched at start, every `auth.jwks.refresh.s`, and at once
 * (at most every 30 s) when a token names a key id it does not know — how
 * an OIDC provider's key rotation reaches us.  Keys are swapped under a
 * read-write lock; a failed refresh keeps the old keys.
 */
#include "escqrs/auth.h"
#include "escqrs/http_client.h"
#include "escqrs/log.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REFETCH_MIN_S 30 /* an unknown kid fetches the JWKS at most this often */

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

/* ---------------------------------------------------------------- policy */

typedef struct {
    enum { WHO_ANY, WHO_SCOPE, WHO_ROLE, WHO_SUB } kind;
    char name[ES_AUTH_NAME_MAX];
    char **actions;
    size_t nactions;
} rule_t;

struct es_policy_s {
    rule_t *rules;
    size_t n;
};

void es_policy_destroy(es_policy_t *pol)
{
    if (!pol)
        return;
    for (size_t i = 0; i < pol->n; i++) {
        for (size_t k = 0; k < pol->rules[i].nactions; k++)
            free(pol->rules[i].actions[k]);
        free(pol->rules[i].actions);
    }
    free(pol->rules);
    free(pol);
}

static bool action_ok(const char *a)
{
    static const char *const kinds[] = {"command:", "query:", "admin:", "metrics", "*"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strncmp(a, kinds[i], strlen(kinds[i])))
            return true;
    return false;
}

es_policy_t *es_policy_parse(const char *text, char *errstr, size_t errstr_size)
{
    es_policy_t *pol = es_calloc(1, sizeof(*pol));
    char *copy = es_strdup(text), *save = NULL;
    int lineno = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#'), *wsave = NULL;
        lineno++;
        if (hash)
            *hash = '\0';
        char *who = strtok_r(line, " \t\r", &wsave);
        if (!who)
            continue;
        rule_t r = {0};
        if (!strcmp(who, "any")) {
            r.kind = WHO_ANY;
        } else if (!strncmp(who, "scope:", 6) || !strncmp(who, "role:", 5) ||
                   !strncmp(who, "sub:", 4)) {
            char *colon = strchr(who, ':');
            r.kind = who[0] == 's' ? (who[1] == 'c' ? WHO_SCOPE : WHO_SUB) : WHO_ROLE;
            if (!colon[1] || strlen(colon + 1) >= sizeof(r.name)) {
                snprintf(errstr, errstr_size, "policy line %d: \"%s\" names nobody", lineno, who);
                goto fail;
            }
            snprintf(r.name, sizeof(r.name), "%s", colon + 1);
        } else {
            snprintf(errstr, errstr_size,
                     "policy line %d: \"%s\" is not any, scope:<name>, role:<name> or sub:<name>",
                     lineno, who);
            goto fail;
        }
        for (char *a = strtok_r(NULL, " \t\r", &wsave); a; a = strtok_r(NULL, " \t\r", &wsave)) {
            if (!action_ok(a)) {
                snprintf(errstr, errstr_size,
                         "policy line %d: \"%s\" is not an action (command:, query:, admin:, "
                         "metrics)",
                         lineno, a);
                for (size_t k = 0; k < r.nactions; k++)
                    free(r.actions[k]);
                free(r.actions);
                goto fail;
            }
            r.actions = es_realloc(r.actions, (r.nactions + 1) * sizeof(*r.actions));
            r.actions[r.nactions++] = es_strdup(a);
        }
        if (!r.nactions) {
            snprintf(errstr, errstr_size, "policy line %d: %s is granted no action", lineno, who);
            goto fail;
        }
        pol->rules = es_realloc(pol->rules, (pol->n + 1) * sizeof(*pol->rules));
        pol->rules[pol->n++] = r;
    }
    free(copy);
    return pol;
fail:
    free(copy);
    es_policy_destroy(pol);
    return NULL;
}

/* "command:accounts.*" matches "command:accounts.deposit"; "*" anything. */
static bool pattern_matches(const char *pat, const char *action)
{
    size_t n = strlen(pat);
    if (n && pat[n - 1] == '*')
        return !strncmp(pat, action, n - 1);
    return !strcmp(pat, action);
}

static bool has(char list[][ES_AUTH_NAME_MAX], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], name))
            return true;
    return false;
}

bool es_policy_allows(const es_policy_t *pol, const es_principal_t *p, const char *action)
{
    if (!p->authenticated)
        return false;
    for (size_t i = 0; i < pol->n; i++) {
        const rule_t *r = &pol->rules[i];
        bool applies =
            r->kind == WHO_ANY ||
            (r->kind == WHO_SCOPE &&
             has((char(*)[ES_AUTH_NAME_MAX])p->scopes, p->nscopes, r->name)) ||
            (r->kind == WHO_ROLE && has((char(*)[ES_AUTH_NAME_MAX])p->roles, p->nroles, r->name)) ||
            (r->kind == WHO_SUB && !strcmp(p->subject, r->name));
        for (size_t k = 0; applies && k < r->nactions; k++)
            if (pattern_matches(r->actions[k], action))
                return true;
    }
    return false;
}

/* ---------------------------------------------------------------- claims */

static void add_name(char list[][ES_AUTH_NAME_MAX], size_t *n, const char *name)
{
    if (*n < ES_AUTH_MAX_GRANTS && *name && strlen(name) < ES_AUTH_NAME_MAX)
        snprintf(list[(*n)++], ES_AUTH_NAME_MAX, "%s", name);
}

/* A string of space-separated names, or an array of strings. */
static void add_names(json_t *v, char list[][ES_AUTH_NAME_MAX], size_t *n)
{
    if (json_is_string(v)) {
        char *copy = es_strdup(json_string_value(v)), *save = NULL;
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
            add_name(list, n, w);
        free(copy);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (json_is_string(e))
                add_name(list, n, json_string_value(e));
        }
    }
}

static json_t *dotted(json_t *obj, const char *path)
{
    char *copy = es_strdup(path), *save = NULL;
    json_t *v = obj;
    for (char *k = strtok_r(copy, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    free(copy);
    return v;
}

static bool aud_has(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return !strcmp(json_string_value(aud), want);
    size_t i;
    json_t *e;
    json_array_foreach(aud, i, e)
    {
        if (json_is_string(e) && !strcmp(json_string_value(e), want))
            return true;
    }
    return false;
}

es_err_t es_claims_check(const char *payload_json, const es_claims_rules_t *rules,
                         es_principal_t *p, char *why, size_t whysz)
{
    json_t *c = json_loads(payload_json, JSON_REJECT_DUPLICATES, NULL);
    es_err_t err = ES_ERR_INVALID_ARG;
    memset(p, 0, sizeof(*p));
    if (!json_is_object(c)) {
        snprintf(why, whysz, "the token's claims are not a JSON object");
        goto out;
    }
    json_t *iss = json_object_get(c, "iss"), *aud = json_object_get(c, "aud"),
           *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf"),
           *sub = json_object_get(c, "sub");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), rules->issuer)) {
        snprintf(why, whysz, "the token was not issued by %s", rules->issuer);
        goto out;
    }
    if (!aud_has(aud, rules->audience)) {
        snprintf(why, whysz, "the token is not for the audience %s", rules->audience);
        goto out;
    }
    if (!json_is_number(exp)) {
        snprintf(why, whysz, "the token has no expiry (exp)");
        goto out;
    }
    if ((int64_t)json_number_value(exp) + rules->skew_s < rules->now_s) {
        snprintf(why, whysz, "the token expired");
        goto out;
    }
    if (nbf &&
        (!json_is_number(nbf) || (int64_t)json_number_value(nbf) - rules->skew_s > rules->now_s)) {
        snprintf(why, whysz, "the token is not valid yet (nbf)");
        goto out;
    }
    if (!json_is_string(sub) || !*json_string_value(sub) ||
        strlen(json_string_value(sub)) >= sizeof(p->subject)) {
        snprintf(why, whysz, "the token names no subject (sub)");
        goto out;
    }
    snprintf(p->subject, sizeof(p->subject), "%s", json_string_value(sub));
    json_t *client = json_object_get(c, "azp");
    if (!json_is_string(client))
        client = json_object_get(c, "client_id");
    if (json_is_string(client) && strlen(json_string_value(client)) < sizeof(p->client_id))
        snprintf(p->client_id, sizeof(p->client_id), "%s", json_string_value(client));
    add_names(json_object_get(c, "scope"), p->scopes, &p->nscopes);
    add_names(json_object_get(c, "scp"), p->scopes, &p->nscopes);
    if (rules->roles_claim && *rules->roles_claim)
        add_names(dotted(c, rules->roles_claim), p->roles, &p->nroles);
    p->authenticated = true;
    err = ES_ERR_OK;
out:
    json_decref(c);
    return err;
}

/* ------------------------------------------------------------------ keys */

typedef struct {
    char kid[ES_AUTH_NAME_MAX];
    bool rsa;
    int ec_bits; /* 256, 384, 521 for EC keys */
    char *pem;
} key_t_;

typedef struct {
    key_t_ *keys;
    size_t n;
} keyset_t;

static void keyset_free(keyset_t *ks)
{
    for (size_t i = 0; ks && i < ks->n; i++)
        free(ks->keys[i].pem);
    if (ks)
        free(ks->keys);
    free(ks);
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* base64url without padding (RFC 7515) into @p out; false on a bad character. */
static bool b64url_decode(const char *in, size_t len, es_buf_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    es_buf_clear(out);
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=')
            break;
        int v = b64url_val(in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char b = (unsigned char)(acc >> bits);
            es_buf_append(out, &b, 1);
        }
    }
    return true;
}

static bool jwk_bytes(json_t *jwk, const char *field, es_buf_t *out)
{
    const char *s = json_string_value(json_object_get(jwk, field));
    return s && b64url_decode(s, strlen(s), out) && out->len > 0;
}

/* A PEM SubjectPublicKeyInfo of an RSA or EC JWK, or NULL. */
static char *jwk_to_pem(json_t *jwk, bool *rsa, int *ec_bits, char *why, size_t whysz)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    es_buf_t a = {0}, b = {0};
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    BIO *bio = NULL;
    char *pem = NULL;
    if (kty && !strcmp(kty, "RSA")) {
        if (!jwk_bytes(jwk, "n", &a) || !jwk_bytes(jwk, "e", &b)) {
            snprintf(why, whysz, "RSA key without n or e");
            goto out;
        }
        n = BN_bin2bn((const unsigned char *)a.data, (int)a.len, NULL);
        e = BN_bin2bn((const unsigned char *)b.data, (int)b.len, NULL);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        *rsa = true;
    } else if (kty && !strcmp(kty, "EC")) {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        const char *group = crv && !strcmp(crv, "P-256")   ? "prime256v1"
                            : crv && !strcmp(crv, "P-384") ? "secp384r1"
                            : crv && !strcmp(crv, "P-521") ? "secp521r1"
                                                           : NULL;
        size_t coord = crv && !strcmp(crv, "P-256") ? 32 : crv && !strcmp(crv, "P-384") ? 48 : 66;
        if (!group || !jwk_bytes(jwk, "x", &a) || !jwk_bytes(jwk, "y", &b) || a.len != coord ||
            b.len != coord) {
            snprintf(why, whysz, "EC key with an unknown curve or bad coordinates");
            goto out;
        }
        es_buf_t pt = {0};
        unsigned char four = 4; /* uncompressed point */
        es_buf_append(&pt, &four, 1);
        es_buf_append(&pt, a.data, a.len);
        es_buf_append(&pt, b.data, b.len);
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt.data, pt.len);
        params = OSSL_PARAM_BLD_to_param(bld);
        es_buf_free(&pt);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        *rsa = false;
        *ec_bits = coord == 32 ? 256 : coord == 48 ? 384 : 521;
    } else {
        snprintf(why, whysz, "key type %s is not RSA or EC", kty ? kty : "(none)");
        goto out;
    }
    if (!params)
        params = OSSL_PARAM_BLD_to_param(bld);
    if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        snprintf(why, whysz, "OpenSSL refused the key");
        goto out;
    }
    bio = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PUBKEY(bio, pkey) != 1) {
        snprintf(why, whysz, "OpenSSL cannot write the key");
        goto out;
    }
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    pem = es_strndup(data, (size_t)len);
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    es_buf_free(&a);
    es_buf_free(&b);
    return pem;
}

/* The keys of a JWKS document; keys for other uses than signing are left out. */
static keyset_t *jwks_parse(const char *text, size_t len, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    json_t *keys = json_object_get(doc, "keys");
    keyset_t *ks = es_calloc(1, sizeof(*ks));
    size_t i;
    json_t *jwk;
    if (!json_is_array(keys)) {
        snprintf(errstr, errstr_size, "not a JWKS (no \"keys\" array)%s%s", doc ? "" : ": ",
                 doc ? "" : jerr.text);
        goto fail;
    }
    json_array_foreach(keys, i, jwk)
    {
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        char why[256];
        key_t_ k = {0};
        if (use && strcmp(use, "sig"))
            continue;
        if (!(k.pem = jwk_to_pem(jwk, &k.rsa, &k.ec_bits, why, sizeof(why)))) {
            es_log_warn("auth", "JWKS key %s left out: %s", kid ? kid : "(no kid)", why);
            continue;
        }
        snprintf(k.kid, sizeof(k.kid), "%s", kid ? kid : "");
        ks->keys = es_realloc(ks->keys, (ks->n + 1) * sizeof(*ks->keys));
        ks->keys[ks->n++] = k;
    }
    if (!ks->n) {
        snprintf(errstr, errstr_size, "the JWKS holds no usable signing key");
        goto fail;
    }
    json_decref(doc);
    return ks;
fail:
    json_decref(doc);
    keyset_free(ks);
    return NULL;
}

/* ------------------------------------------------------------ the object */

struct es_auth_s {
    bool enabled;
    char issuer[512], audience[512], roles_claim[256], jwks_url[1024], ca_file[512];
    int skew_s, refresh_s;
    bool alg_ok[JWT_ALG_TERM];
    es_policy_t *policy;
    pthread_rwlock_t lock; /* keys */
    keyset_t *keys;
    pthread_mutex_t fetch_mu;
    int64_t last_fetch_s;
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

/* Fetch the JWKS URL and swap the keys in; keeps the old keys on failure. */
static es_err_t fetch_jwks(es_auth_t *a, char *errstr, size_t errstr_size)
{
    es_buf_t body = {0};
    long status = 0;
    es_http_client_opts_t o = {.ca_file = a->ca_file[0] ? a->ca_file : NULL};
    es_err_t err = es_http_fetch_opts("GET", a->jwks_url, NULL, NULL, NULL, 10000, &o, &status,
                                      &body, errstr, errstr_size);
    keyset_t *ks = NULL;
    pthread_mutex_lock(&a->fetch_mu);
    a->last_fetch_s = now_s();
    pthread_mutex_unlock(&a->fetch_mu);
    if (!err && status != 200) {
        snprintf(errstr, errstr_size, "GET %.400s: HTTP %ld", a->jwks_url, status);
        err = ES_ERR_HTTP;
    }
    if (!err && !(ks = jwks_parse(body.data, body.len, errstr, errstr_size)))
        err = ES_ERR_INVALID_ARG;
    es_buf_free(&body);
    if (err)
        return err;
    pthread_rwlock_wrlock(&a->lock);
    keyset_t *old = a->keys;
    a->keys = ks;
    pthread_rwlock_unlock(&a->lock);
    keyset_free(old);
    return ES_ERR_OK;
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
        char errstr[512];
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

es_auth_t *es_auth_new(const es_conf_t *conf, char *errstr, size_t errstr_size)
{
    es_auth_t *a = es_calloc(1, sizeof(*a));
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->fetch_mu, NULL);
    pthread_mutex_init(&a->stop_mu, NULL);
    pthread_cond_init(&a->stop_cv, NULL);
    const char *mode = es_conf_get(conf, "auth.mode");
    a->enabled = mode && !strcmp(mode, "jwt");
    if (!a->enabled)
        return a;
    static const char *const required[] = {"auth.issuer", "auth.audience", "auth.policy.file"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
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
    if (!parse_algorithms(a, es_conf_get(conf, "auth.algorithms"), errstr, errstr_size))
        goto fail;
    size_t len;
    char why[512];
    char *text = read_file(es_conf_get(conf, "auth.policy.file"), &len, why, sizeof(why));
    if (!text) {
        snprintf(errstr, errstr_size, "auth.policy.file: %s", why);
        goto fail;
    }
    a->policy = es_policy_parse(text, why, sizeof(why));
    free(text);
    if (!a->policy) {
        snprintf(errstr, errstr_size, "auth.policy.file: %s", why);
        goto fail;
    }
    if (file && *file) {
        text = read_file(file, &len, why, sizeof(why));
        a->keys = text ? jwks_parse(text, len, why, sizeof(why)) : NULL;
        free(text);
        if (!a->keys) {
            snprintf(errstr, errstr_size, "auth.jwks.file: %s", why);
            goto fail;
        }
    } else {
        snprintf(a->jwks_url, sizeof(a->jwks_url), "%s", url);
        if (fetch_jwks(a, why, sizeof(why))) /* retried by the refresher; denied meanwhile */
            es_log_warn("auth", "auth.jwks.url: %s (every token is refused until it loads)", why);
        if (pthread_create(&a->refresher, NULL, refresher_main, a)) {
            snprintf(errstr, errstr_size, "cannot start the JWKS refresher");
            goto fail;
        }
        a->refresher_started = true;
    }
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
    keyset_free(a->keys);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->fetch_mu);
    pthread_mutex_destroy(&a->stop_mu);
    pthread_cond_destroy(&a->stop_cv);
    free(a);
}

bool es_auth_enabled(const es_auth_t *a)
{
    return a && a->enabled;
}

static bool key_fits(const key_t_ *k, jwt_alg_t alg)
{
    if (alg >= JWT_ALG_RS256 && alg <= JWT_ALG_RS512)
        return k->rsa;
    return !k->rsa && ((alg == JWT_ALG_ES256 && k->ec_bits == 256) ||
                       (alg == JWT_ALG_ES384 && k->ec_bits == 384) ||
                       (alg == JWT_ALG_ES512 && k->ec_bits == 521));
}

/* The PEM of the key @p kid names (a copy), fetching the JWKS again once if unknown. */
static char *key_for(es_auth_t *a, const char *kid, jwt_alg_t alg, char *why, size_t whysz)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        char *pem = NULL;
        bool found = false;
        pthread_rwlock_rdlock(&a->lock);
        for (size_t i = 0; a->keys && i < a->keys->n && !found; i++) {
            const key_t_ *k = &a->keys->keys[i];
            if (kid ? strcmp(k->kid, kid) != 0 : a->keys->n != 1)
                continue;
            found = true;
            if (key_fits(k, alg))
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
        bool due = now_s() - a->last_fetch_s >= REFETCH_MIN_S;
        pthread_mutex_unlock(&a->fetch_mu);
        char err[256];
        if (!due || fetch_jwks(a, err, sizeof(err)))
            break;
    }
    snprintf(why, whysz, "the token's key %s is not in the JWKS", kid ? kid : "(no kid)");
    return NULL;
}

es_err_t es_auth_verify(es_auth_t *a, const char *authorization, es_principal_t *p, char *why,
                        size_t whysz)
{
    memset(p, 0, sizeof(*p));
    if (!a || !a->enabled) {
        p->authenticated = true; /* nobody is checked: everyone is let in */
        return ES_ERR_OK;
    }
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) {
        snprintf(why, whysz, "a bearer token is required (Authorization: Bearer <JWT>)");
        return ES_ERR_INVALID_ARG;
    }
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    const char *dot = strchr(token, '.');
    if (!dot || strlen(token) > 16384) {
        snprintf(why, whysz, "the bearer token is not a JWT");
        return ES_ERR_INVALID_ARG;
    }
    es_buf_t hdr = {0};
    json_t *h = NULL;
    char *pem = NULL, *claims = NULL;
    jwt_t *jwt = NULL;
    es_err_t err = ES_ERR_INVALID_ARG;
    if (!b64url_decode(token, (size_t)(dot - token), &hdr) ||
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
    if (!(pem = key_for(a, json_string_value(json_object_get(h, "kid")), alg, why, whysz)))
        goto out;
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
